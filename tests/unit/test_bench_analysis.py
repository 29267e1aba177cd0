"""What the bad-release benchmark counts as a bad response users got (bench/analysis.py)."""

from __future__ import annotations

from bench import analysis, caught
from rigs.load import Response


def response(status: int = 200, latency_s: float = 0.01, error: str = "") -> Response:
    return Response(0.0, status, latency_s, error, "1.1.0")


def test_a_slow_release_counts_pages_slower_than_the_p99_bound_as_bad() -> None:
    slow = analysis.SLOW
    assert slow.bad == "1.1.0-slow" and slow.kind == "slow"
    assert slow.is_bad(response(latency_s=2.1)) and slow.is_bad(response(status=502))
    assert not slow.is_bad(response(latency_s=0.2))
    # An erring release's bad responses are its failures alone, however slow a good answer.
    assert not analysis.STANDARD.is_bad(response(latency_s=2.1))
    assert analysis.STANDARD.is_bad(response(error="connection reset by peer"))
    assert set(analysis.SHAPES) == {"analysis", "analysis-large", "analysis-slow"}


def test_the_real_node_verdict_report_gives_each_rows_spread_over_its_runs() -> None:
    def run(code: int, bad: int, restored: float | None) -> dict[str, object]:
        return {"exit": code, "bad_responses": bad, "first_bad_to_restored_s": restored, "command_s": 30.0}

    found = {
        "rate": 60,
        "replicas": 3,
        "rows": [
            {"name": "5 % of answers 500", "tag": "t", "runs": [run(15, 9, 4.1), run(15, 14, 6.0), run(0, 30, None)]}
        ],
        "bursts": {
            "rate": 60,
            "replicas": 3,
            "versions": list(caught.BURSTS),
            "releases": [{"exit": 0, "analysis": {"requests": 700, "errors": 3}}],
            "shipped": 1,
            "users": {caught.BURSTS[0]: {"requests": 1000, "failed": 10}},
        },
    }
    text = caught.markdown(found)
    assert "| 5 % of answers 500 | 2 of 3 | 9 to 30 | 4.1 to 6 s (1 never) | 30 s |" in text, text
    assert "1 of 1 shipped" in text and "shared bursts" in text
