"""What the bad-release benchmark counts as a bad response users got (bench/analysis.py)."""

from __future__ import annotations

from bench import analysis
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
