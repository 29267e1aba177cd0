"""The analysis: the verdict on recorded responses (thresholds, the evidence guard, per-version
attribution), the prober against a server on loopback, and the gate that acts on a breach."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.rollout.analysis import Judgement, Sample, State, Thresholds, beyond_doubt, judge, p99_ms
from infra.rollout.gate import Gate
from infra.rollout.prober import VERSION_HEADER, Prober, leaves_by
from tests.unit import loopback
from tests.unit.rollout_fakes import AppEvidence, FastClock

THRESHOLDS = Thresholds(max_error_ratio=0.02, max_p99_ms=1000, min_requests=50)


def answers(
    version: str | None, count: int, *, status: int = 200, latency_s: float = 0.005, t0: float = 0.0
) -> list[Sample]:
    return [Sample(t0 + i * 0.1, status, latency_s, version) for i in range(count)]


def test_below_min_requests_a_few_errors_are_not_enough_evidence() -> None:
    # 1 error in 2, or 5 in 49 at maxErrorRatio 2 %: the ratio says little yet.
    for mixed in (
        answers("1.1", 1, status=500) + answers("1.1", 1),
        answers("1.1", 5, status=500) + answers("1.1", 44),
    ):
        verdict = judge(mixed, "1.1", THRESHOLDS)
        assert verdict.state is State.INSUFFICIENT and "not enough evidence" in verdict.reason, verdict


@pytest.mark.parametrize(("errors", "responses"), [(5, 5), (10, 10), (6, 49)])
def test_errors_beyond_doubt_breach_before_min_requests(errors: int, responses: int) -> None:
    failing = answers("1.1", errors, status=500) + answers("1.1", responses - errors)
    verdict = judge(failing, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and "beyond doubt, before minRequests" in verdict.reason, verdict
    assert (verdict.requests, verdict.errors) == (responses, errors)


def test_the_sequential_test_never_aborts_on_one_error_in_two_nor_on_four_of_four() -> None:
    assert not beyond_doubt(2, 1, 0.02) and not beyond_doubt(4, 4, 0.02) and beyond_doubt(5, 5, 0.02)
    assert beyond_doubt(1, 1, 0.0), "a ratio of 0: one error is a breach no later answer can undo"
    assert not beyond_doubt(100, 100, 0.6), "above 50 %, nothing before the window's end"
    assert not beyond_doubt(10, 0, 0.02)


def test_exactly_min_requests_is_enough_evidence_to_judge() -> None:
    verdict = judge(answers("1.1", 50, status=500), "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and verdict.requests == 50
    assert judge(answers("1.1", 50), "1.1", THRESHOLDS).state is State.PASS


def test_error_ratio_above_the_threshold_is_a_breach_and_at_it_is_not() -> None:
    at = answers("1.1", 98) + answers("1.1", 2, status=503, t0=20)
    assert judge(at, "1.1", THRESHOLDS).state is State.PASS  # 2 of 100: exactly 2 %
    over = at + answers("1.1", 1, status=500, t0=30)
    verdict = judge(over, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH
    assert "maxErrorRatio 0.02" in verdict.reason


def test_only_5xx_count_as_errors() -> None:
    fine = answers("1.1", 60, status=404)
    assert judge(fine, "1.1", THRESHOLDS).state is State.PASS


def test_slow_responses_breach_on_p99() -> None:
    samples = answers("1.1", 90) + answers("1.1", 10, latency_s=2.1, t0=20)
    verdict = judge(samples, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH
    assert verdict.p99_ms == pytest.approx(2100)
    assert "maxP99Ms 1000" in verdict.reason


def test_one_slow_response_in_a_hundred_is_within_p99() -> None:
    samples = answers("1.1", 99) + answers("1.1", 1, latency_s=3.0, t0=20)
    assert judge(samples, "1.1", THRESHOLDS).state is State.PASS


def test_slow_answers_beyond_doubt_breach_before_min_requests_as_errors_do() -> None:
    # A p99 within maxP99Ms leaves at most 1 % of the answers above it: five slow answers of the first five
    # cannot be that, however few they are; while the window runs they end it.
    verdict = judge(answers("1.1", 5, latency_s=2.1), "1.1", THRESHOLDS, final=False)
    assert verdict.state is State.BREACH
    assert verdict.reason.startswith("5 of its 5 answers took longer than maxP99Ms 1000 ms")
    assert "before minRequests" in verdict.reason
    # One slow answer in two, or four of four, proves nothing yet.
    assert judge(answers("1.1", 1) + answers("1.1", 1, latency_s=2.1), "1.1", THRESHOLDS, final=False).state is (
        State.INSUFFICIENT
    )
    assert judge(answers("1.1", 4, latency_s=2.1), "1.1", THRESHOLDS, final=False).state is State.INSUFFICIENT
    # The old version's slowness is its own.
    assert judge(answers("1.0", 20, latency_s=2.1) + answers("1.1", 5), "1.1", THRESHOLDS, final=False).state is (
        State.INSUFFICIENT
    )


def test_the_old_versions_errors_are_not_blamed_on_the_new_one() -> None:
    samples = answers("1.0", 200, status=500) + answers("1.1", 60, t0=5) + answers(None, 30, status=502, t0=9)
    verdict = judge(samples, "1.1", THRESHOLDS)
    assert verdict.state is State.PASS
    assert verdict.requests == 60 and verdict.errors == 0
    assert verdict.counts == {"1.0": {500: 200}, "1.1": {200: 60}, "-": {502: 30}}


def test_no_response_counts_against_the_release_only_once_it_serves_alone() -> None:
    new = answers("1.1", 60)
    dropped = [Sample(t, 0, 5.0, None, "TimeoutError: timed out") for t in (1.0, 2.0, 11.0, 12.0)]
    samples = sorted(new + dropped, key=lambda s: s.t)
    assert judge(samples, "1.1", THRESHOLDS).state is State.PASS  # during the rollout: anyone's
    verdict = judge(samples, "1.1", THRESHOLDS, alone_since=10.0)
    assert verdict.state is State.BREACH  # 2 of 62 after the new version serves alone
    assert verdict.requests == 62 and verdict.errors == 2
    assert verdict.p99_ms == pytest.approx(5)  # the latency of responses only


def test_p99_by_nearest_rank() -> None:
    assert p99_ms([]) is None
    assert p99_ms([0.001]) == pytest.approx(1)
    assert p99_ms([i / 1000 for i in range(1, 101)]) == pytest.approx(99)
    assert p99_ms([i / 1000 for i in range(1, 201)]) == pytest.approx(198)


def test_the_evidence_is_said_for_json() -> None:
    verdict = judge(answers("1.0", 3) + answers("1.1", 2, status=500, t0=1), "1.1", THRESHOLDS)
    assert verdict.as_json() == {
        "state": "insufficient",
        "version": "1.1",
        "requests": 2,
        "errors": 2,
        "p99Ms": 5.0,
        "reason": "not enough evidence yet (2 of the 50 responses minRequests asks for)",
        "windowSeconds": 1.1,
        "responses": {"1.0": {"200": 3}, "1.1": {"500": 2}},
    }


class App(http.server.BaseHTTPRequestHandler):
    """The app as the prober sees it: the version in a header, ``status`` after ``delay_s``."""

    version = "1.1"
    status = 200
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        body = b"rolling"
        self.send_response(self.status)
        self.send_header(VERSION_HEADER, self.version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def app(**attrs: Any) -> Iterator[str]:
    with loopback.serving(type("Handler", (App,), attrs)) as base:
        yield f"{base}/"


def test_the_prober_records_each_answer_with_its_version_on_a_new_connection() -> None:
    with app(version="1.16.1", status=503) as url, Prober(url, 20, most_s=5) as prober:
        answered = prober.wait_answers(5, 5)
    assert len(answered) >= 5
    assert {(s.version, s.status) for s in answered} == {("1.16.1", 503)}
    assert all(0 <= s.latency_s < 1 for s in answered)


def test_the_prober_records_a_refused_connection_as_no_response() -> None:
    with app() as url:
        pass  # the port is closed again
    with Prober(url, 20, most_s=5) as prober:
        wait(lambda: len(prober.samples()) >= 3, 5)
        tried = prober.samples()
    assert tried and all(s.status == 0 and s.bad and "Connection" in s.error for s in tried)


def test_the_prober_stops_by_itself_at_its_limit() -> None:
    with app() as url, Prober(url, 50, most_s=0.2) as prober:
        time.sleep(0.4)
        count = len(prober.samples())
        time.sleep(0.2)
        assert len(prober.samples()) == count
    assert 5 <= count <= 12


def test_the_prober_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="an http:// or https:// URL"):
        Prober("10.0.0.1", 1, most_s=1)


def gate(evidence: AppEvidence, breaches: list[str], **thresholds: Any) -> Gate:
    said: list[str] = []
    limits = Thresholds(**{"max_error_ratio": 0.02, "max_p99_ms": 1000, "min_requests": 10, **thresholds})
    return Gate(evidence, "1.1", limits, say=said.append, on_breach=breaches.append, clock=evidence.clock)


def serving(statuses: dict[str, int] | None = None, latency_s: float = 0.002) -> AppEvidence:
    """Version 1.1 answering 40 requests a second as ``statuses`` say, on a fast clock."""
    return AppEvidence(SimpleNamespace(tag="1.1", canary=None), FastClock(), statuses or {}, latency_s=latency_s)


def test_the_gate_acts_once_on_a_breach_during_the_rollout() -> None:
    breaches: list[str] = []
    with gate(serving({"1.1": 500}), breaches) as watching:
        wait(lambda: watching.breach is not None, 5)
        watching.clock.wait(threading.Event(), 2.0)  # it goes on running, on the gate's clock
    assert len(breaches) == 1
    assert breaches[0].startswith("the analysis found 1.1:") and "maxErrorRatio" in breaches[0]
    assert watching.breach is not None and watching.breach.errors >= 10


class HeldSource:
    """Evidence whose first read is held until ``release`` is set, then says the new version answers 500s."""

    every_s = 0.5
    settle_s = 0.0

    def __init__(self) -> None:
        self.reading, self.release = threading.Event(), threading.Event()

    def unreachable(self) -> str | None:
        return None

    def __enter__(self) -> HeldSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def alone(self) -> None:
        pass

    def judgement(self, version: str, thresholds: Thresholds, *, final: bool = True) -> Judgement:
        return judge(self.samples(), version, thresholds, final=final)

    def samples(self) -> list[Sample]:
        self.reading.set()
        self.release.wait(5)
        return answers("1.1", 20, status=500)


def test_a_judgement_that_ends_after_its_gate_acts_on_nothing() -> None:
    # The block ended (the rollout and its bake are over, or the command moved on) while a judgement was
    # being made: its breach must not interrupt whatever the command does next. The held read is let go
    # just after the block starts ending, while the gate waits for its thread (up to 2 s at every_s 0.5).
    source = HeldSource()
    breaches: list[str] = []
    limits = Thresholds(max_error_ratio=0.02, max_p99_ms=1000, min_requests=10)
    with Gate(source, "1.1", limits, say=lambda _: None, on_breach=breaches.append) as gate:
        assert source.reading.wait(5)
        threading.Timer(0.05, source.release.set).start()
    assert breaches == [] and gate.breach is None


def test_the_gate_passes_a_healthy_bake_and_ends_a_bad_one_at_once() -> None:
    breaches: list[str] = []
    with gate(serving(), breaches) as watching:
        watching.alone()
        verdict = watching.bake(1.0)
    assert verdict.state is State.PASS and breaches == []

    with gate(serving(latency_s=0.05), breaches, max_p99_ms=20) as watching:
        start = watching.clock.now()
        verdict = watching.bake(30)
        took = watching.clock.now() - start
    assert verdict.state is State.BREACH and "maxP99Ms 20" in verdict.reason
    assert took < 5, "on the gate's clock: a 30 s bake ended by its first judgement"
    assert len(breaches) == 1


def test_a_window_may_end_once_its_least_seconds_are_past_and_min_requests_are_in() -> None:
    # A canary's window: canarySeconds at least, then as soon as minRequests responses of it are in, at most
    # the window the prober's share alone would need. 40 answers a second bring the 10 asked for at once.
    def window(**thresholds: Any) -> tuple[Judgement, float]:
        with gate(serving(), [], **thresholds) as watching:
            start = watching.clock.now()
            verdict = watching.bake(60, enough_after=15)
            return verdict, watching.clock.now() - start

    verdict, took = window()
    assert verdict.state is State.PASS and verdict.requests >= 10
    assert 15 <= took < 17, took
    # Evidence that does not come: the whole window, and not enough said at its end.
    verdict, took = window(min_requests=100_000)
    assert verdict.state is State.INSUFFICIENT and took >= 60
    # Minutes that settle after they are read (the ALB's) never end a window early.
    evidence = serving()
    evidence.settle_s = 1.0
    with gate(evidence, []) as watching:
        start = watching.clock.now()
        watching.bake(60, enough_after=15)
        assert watching.clock.now() - start >= 61


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_url_the_default_route_carries_is_told_apart_from_one_on_this_machines_links() -> None:
    # This machine's routes as `ip -j` says them: the default route by eth0, a local node's ranges through
    # the node's end of a link of their own (a gateway too, on another interface).
    routes = {
        "10.0.0.136": '[{"dst":"10.0.0.136","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.2"}]',
        "198.18.63.2": '[{"dst":"198.18.63.2","gateway":"198.18.255.6","dev":"rolling1","prefsrc":"198.18.255.5"}]',
        "127.0.0.1": '[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1"}]',
    }
    asked: list[tuple[str, ...]] = []

    def ip(*args: str) -> str | None:
        asked.append(args)
        if args == ("route", "show", "default"):
            return '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]'
        return routes.get(args[-1])

    assert leaves_by("http://10.0.0.136", ip) == "192.0.2.1"
    assert leaves_by("http://198.18.63.2/", ip) is None
    assert leaves_by("http://127.0.0.1:8080/", ip) is None
    assert asked[0] == ("route", "get", "10.0.0.136")
    assert leaves_by("http://127.0.0.1/") is None  # this machine's own routes: loopback stays here


SAMPLES = Path(__file__).parent / "samples"


def recorded(name: str) -> list[Sample]:
    """Responses the prober recorded on the real node (`rollout --record`, the end-to-end tier's analysis tests)."""
    return [Sample(**json.loads(line)) for line in (SAMPLES / name).read_text().splitlines()]


def test_recorded_errors_release_breaches_on_its_own_answers_alone() -> None:
    samples = recorded("analysis-errors.jsonl")
    versions = {s.version for s in samples}
    assert versions == {"1.14.2", "1.16.1-errors"}
    verdict = judge(samples, "1.16.1-errors", Thresholds(0.02, 1000, 20))
    assert verdict.state is State.BREACH and "maxErrorRatio" in verdict.reason
    assert verdict.counts["1.14.2"].keys() == {200}
    # Judged as the old version, the same responses are healthy: nothing of the new one is blamed on it.
    assert judge(samples, "1.14.2", Thresholds(0.02, 1000, 20)).state is State.PASS
    # With fewer than minRequests of them, its errors are still beyond doubt: the sequential test says so.
    early = judge(samples, "1.16.1-errors", Thresholds(0.02, 1000, 10_000))
    assert early.state is State.BREACH and "beyond doubt" in early.reason


def test_recorded_slow_release_breaches_on_p99_not_on_errors() -> None:
    samples = recorded("analysis-slow.jsonl")
    verdict = judge(samples, "1.16.1-slow", Thresholds(0.02, 1000, 20))
    assert verdict.state is State.BREACH and "maxP99Ms" in verdict.reason and verdict.errors == 0
    assert verdict.p99_ms is not None and verdict.p99_ms > 1000
    # A looser latency threshold passes it.
    assert judge(samples, "1.16.1-slow", Thresholds(0.02, 10_000, 20)).state is State.PASS


def test_while_the_window_runs_only_errors_beyond_doubt_end_it_and_the_ratio_decides_at_its_end() -> None:
    # 3 errors in 100 (3 % > maxErrorRatio 2 %): not beyond doubt, so the window goes on; at its end the
    # ratio over the whole window breaches. The ratio looked at every moment aborts good releases (a 1 %
    # release passes 2 % early on a third of the time: docs/benchmarks.md).
    some = answers("1.1", 3, status=500) + answers("1.1", 97)
    running = judge(some, "1.1", THRESHOLDS, final=False)
    assert running.state is State.PASS and running.reason.endswith("so far")
    ended = judge(some, "1.1", THRESHOLDS)
    assert ended.state is State.BREACH and "3.0% of its responses were errors" in ended.reason
