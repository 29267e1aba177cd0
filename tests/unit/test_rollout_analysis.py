"""The analysis: the verdict on recorded responses (thresholds, the evidence guard, per-version
attribution), the prober against a server on loopback, and the gate that acts on a breach."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.rollout.analysis import Judgement, Sample, State, Tally, Thresholds, judge, judge_tally, p99_ms
from infra.rollout.gate import Gate
from infra.rollout.prober import VERSION_HEADER, Prober, leaves_by
from infra.rollout.sequential import llr_over_old
from tests.unit import loopback
from tests.unit.rollout_fakes import AppEvidence, FastClock

THRESHOLDS = Thresholds(max_error_ratio=0.02, max_p99_ms=1000, min_requests=50, stages=2)


def answers(
    version: str | None, count: int, *, status: int = 200, latency_s: float = 0.005, t0: float = 0.0
) -> list[Sample]:
    return [Sample(t0 + i * 0.1, status, latency_s, version) for i in range(count)]


def test_a_few_errors_among_few_answers_leave_the_stage_pending_and_undecided_at_its_end() -> None:
    # 1 error in 2, or 2 in 49, at maxErrorRatio 2 %: neither boundary is crossed; the stage goes on, and a
    # stage that ends so is undecided, which is never a pass.
    for mixed in (
        answers("1.1", 1, status=500) + answers("1.1", 1),
        answers("1.1", 2, status=500) + answers("1.1", 47),
    ):
        running = judge(mixed, "1.1", THRESHOLDS, final=False)
        assert running.state is State.PENDING and "not decided yet" in running.reason, running
        ended = judge(mixed, "1.1", THRESHOLDS)
        assert ended.state is State.UNDECIDED and ended.fails, ended
        assert "its window ended before the evidence decided" in ended.reason


@pytest.mark.parametrize(("errors", "responses"), [(4, 4), (10, 10), (6, 49)])
def test_errors_beyond_doubt_breach_at_any_look(errors: int, responses: int) -> None:
    failing = answers("1.1", errors, status=500) + answers("1.1", responses - errors)
    verdict = judge(failing, "1.1", THRESHOLDS, final=False)
    assert verdict.state is State.BREACH and "beyond doubt" in verdict.reason, verdict
    assert (verdict.requests, verdict.errors) == (responses, errors)


def test_a_clean_stage_is_cleared_once_both_tests_clear_and_min_requests_are_in() -> None:
    # The error test clears after 89 clean answers, the latency test after 112 (a release of two stages).
    assert judge(answers("1.1", 111), "1.1", THRESHOLDS, final=False).state is State.PENDING
    cleared = judge(answers("1.1", 112), "1.1", THRESHOLDS, final=False)
    assert cleared.state is State.PASS and "beyond doubt" in cleared.reason
    # minRequests above that holds the clearing back, never a breach.
    assert judge(answers("1.1", 150), "1.1", Thresholds(0.02, 1000, 200), final=False).state is State.PENDING


def test_a_release_at_half_the_limit_clears_and_one_at_three_times_it_is_condemned() -> None:
    # 1 % errors (half of 2 %) over 600 answers, spread evenly; 6 % (three times it) over as many.
    good = [Sample(i * 0.1, 500 if i % 100 == 50 else 200, 0.005, "1.1") for i in range(600)]
    bad = [Sample(i * 0.1, 500 if i % 50 in (10, 30, 45) else 200, 0.005, "1.1") for i in range(600)]
    assert judge(good, "1.1", THRESHOLDS).state is State.PASS
    verdict = judge(bad, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and "maxErrorRatio 0.02" in verdict.reason


def test_only_5xx_count_as_errors() -> None:
    fine = answers("1.1", 150, status=404)
    assert judge(fine, "1.1", THRESHOLDS).state is State.PASS


def test_latency_is_the_share_of_slow_answers_never_the_slowest_of_a_few() -> None:
    # One answer in a hundred slower than maxP99Ms is what a p99 within it allows; one among fewer than a
    # hundred used to be the "p99" itself and abort the release.
    few = answers("1.1", 60) + answers("1.1", 1, latency_s=3.0, t0=20)
    assert judge(few, "1.1", THRESHOLDS, final=False).state is State.PENDING
    spread = [Sample(i * 0.1, 200, 3.0 if i % 500 == 7 else 0.01, "1.1") for i in range(1000)]  # 0.2 % slow
    verdict = judge(spread, "1.1", THRESHOLDS)
    assert verdict.state is State.PASS and verdict.slow == 2, verdict
    # 10 % of them slow: condemned, and the p99 said with it is the slow answers'.
    slow = [Sample(i * 0.1, 200, 2.1 if i % 10 == 0 else 0.01, "1.1") for i in range(100)]
    verdict = judge(slow, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and "maxP99Ms 1000" in verdict.reason
    assert verdict.p99_ms == pytest.approx(2100, rel=0.011)


def test_a_p99_at_the_limit_clears_and_three_times_as_many_slow_answers_are_condemned() -> None:
    # maxP99Ms is a p99: 1 answer in 100 may be slower. 1 % slow over 1,000 answers, spread evenly, clears;
    # 3 % slow (three times what a p99 allows) is condemned, as an error ratio at three times its limit is.
    at_limit = [Sample(i * 0.1, 200, 1.5 if i % 100 == 50 else 0.01, "1.1") for i in range(1000)]
    assert judge(at_limit, "1.1", THRESHOLDS).state is State.PASS
    three_times = [Sample(i * 0.1, 200, 1.5 if i % 100 in (10, 40, 70) else 0.01, "1.1") for i in range(1000)]
    verdict = judge(three_times, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and "maxP99Ms 1000" in verdict.reason


def served(version: str, count: int, *, client_s: float, server_s: float, t0: float = 0.0) -> list[Sample]:
    """``count`` answers as the prober timed them (``client_s``, the network's time with the server's) and
    as the server logged the same requests (``server_s``): counted once, timed by the server."""
    return [
        sample
        for i in range(count)
        for sample in (
            Sample(t0 + i * 0.1, 200, client_s, version),
            Sample(t0 + i * 0.1, 200, server_s, version, server=True, counted=False),
        )
    ]


def test_with_the_servers_logs_latency_is_their_own_time_and_the_network_is_said_apart() -> None:
    # A prober across a slow network from the service (a runner far from the load balancer) meets 1.5 s
    # where the pods serve in 20 ms: the release is within maxP99Ms, and the network's time is said.
    far = served("1.1", 200, client_s=1.5, server_s=0.02)
    verdict = judge(far, "1.1", THRESHOLDS)
    assert (verdict.state, verdict.requests, verdict.slow, verdict.timed_by) == (State.PASS, 200, 0, "server")
    assert verdict.p99_ms == pytest.approx(20, rel=0.011)
    assert verdict.network_p99_ms == pytest.approx(1500, rel=0.011)
    assert verdict.as_json()["networkP99Ms"] == pytest.approx(1500, rel=0.011)
    # Without the servers' logs the prober's time is all there is, and it condemns.
    alone = judge([s for s in far if s.counted], "1.1", THRESHOLDS)
    assert (alone.state, alone.timed_by) == (State.BREACH, "prober")
    # A release slow on its own servers is condemned on their time, and the reason says whose time it is.
    slow = judge(served("1.1", 20, client_s=2.2, server_s=2.1), "1.1", THRESHOLDS, final=False)
    assert slow.state is State.BREACH and "(the servers' own time)" in slow.reason, slow
    # A user's request as a pod logged it is an answer, timed by the server.
    users = served("1.1", 100, client_s=1.5, server_s=0.02) + [
        Sample(20 + i * 0.1, 200, 0.03, "1.1", server=True) for i in range(100)
    ]
    verdict = judge(users, "1.1", THRESHOLDS)
    assert (verdict.requests, verdict.state) == (200, State.PASS)


def test_slow_answers_beyond_doubt_breach_at_any_look_as_errors_do() -> None:
    verdict = judge(answers("1.1", 5, latency_s=2.1), "1.1", THRESHOLDS, final=False)
    assert verdict.state is State.BREACH
    assert verdict.reason.startswith("5 of its 5 answers took longer than maxP99Ms 1000 ms")
    # One slow answer in two, or three of three, proves nothing yet.
    one = answers("1.1", 1) + answers("1.1", 1, latency_s=2.1)
    assert judge(one, "1.1", THRESHOLDS, final=False).state is State.PENDING
    assert judge(answers("1.1", 3, latency_s=2.1), "1.1", THRESHOLDS, final=False).state is State.PENDING
    # The old version's slowness is its own.
    beside = answers("1.0", 20, latency_s=2.1) + answers("1.1", 5)
    assert judge(beside, "1.1", THRESHOLDS, final=False).state is State.PENDING


def test_the_old_versions_errors_are_not_blamed_on_the_new_one() -> None:
    samples = answers("1.0", 200, status=500) + answers("1.1", 150, t0=5)
    verdict = judge(samples, "1.1", THRESHOLDS)
    assert verdict.state is State.PASS
    assert verdict.requests == 150 and verdict.errors == 0
    assert verdict.counts == {"1.0": {500: 200}, "1.1": {200: 150}}


def test_answers_with_no_version_count_against_the_release_under_judgement() -> None:
    # A load balancer's 502s or a dropped connection name no version: while a release is judged they are its,
    # whichever pods they were meant for. Missing evidence is never a pass.
    new = answers("1.1", 150)
    dropped = [Sample(1 + i / 10, 0, 5.0, None, "TimeoutError: timed out") for i in range(8)]
    verdict = judge(new + dropped, "1.1", THRESHOLDS)
    assert verdict.state is State.BREACH and "8 of them with no version" in verdict.reason, verdict
    assert (verdict.requests, verdict.errors) == (158, 8)
    assert verdict.p99_ms == pytest.approx(5, rel=0.011)  # the latency of responses only
    unanswered = answers("1.1", 150) + answers(None, 8, status=502, t0=3)
    assert judge(unanswered, "1.1", THRESHOLDS).state is State.BREACH
    # Judged without them, the same answers clear it.
    assert judge(new, "1.1", THRESHOLDS).state is State.PASS
    # An answer with no version that is not an error (not the app's) says nothing.
    assert judge(new + answers(None, 30, status=200), "1.1", THRESHOLDS).state is State.PASS


def test_a_burst_of_errors_both_versions_answer_at_once_is_not_held_against_the_new_one() -> None:
    # Half a second in which a dependency failed half the answers of both versions: the new version's errors
    # are judged beside the old one's at the same time. The same errors with the old version fine condemn it.
    def stage(old_status: int) -> list[Sample]:
        before = [Sample(i * 0.05, 200, 0.005, "1.1") for i in range(40)]
        burst = [Sample(5.0 + i * 0.01, 500, 0.005, "1.1") for i in range(6)]
        old = [Sample(5.0 + i * 0.005, old_status if i % 2 else 200, 0.005, "1.0") for i in range(80)]
        return sorted(before + burst + old, key=lambda s: s.t)

    assert judge(stage(500), "1.1", THRESHOLDS, final=False).state is State.PENDING
    verdict = judge(stage(200), "1.1", THRESHOLDS, final=False)
    assert verdict.state is State.BREACH and "the old version's 0 of 80 at the same time" in verdict.reason


def beside_old(seconds: int, new_fails_every: int, old_fails_every: int, *, shared_burst: bool = False) -> list[Sample]:
    """A canary's answers: 10 a second of the new version (1.1) beside 30 of the old (1.0), the new one
    failing one answer in ``new_fails_every`` and the old one in ``old_fails_every`` (0: never); with
    ``shared_burst`` both fail every answer for one second in ten."""
    found = []
    for i in range(seconds * 40):
        t, new = i / 40, i % 4 == 0
        k = i // 4 if new else i - i // 4
        every = new_fails_every if new else old_fails_every
        bad = (bool(every) and k % every == every - 1) or (shared_burst and int(t) % 10 == 5)
        found.append(Sample(t, 500 if bad else 200, 0.005, "1.1" if new else "1.0"))
    return found


def test_max_errors_over_old_condemns_a_release_clearly_worse_than_the_old_one_though_within_the_limit() -> None:
    # The new version fails 1.5 % of its answers, the old one 0.1 %: both within maxErrorRatio 2 %.
    worse = beside_old(300, 67, 1000)
    assert judge(worse, "1.1", THRESHOLDS).state is not State.BREACH  # the limit alone lets it by
    compared = Thresholds(0.02, 1000, 50, stages=2, over_old=3)
    verdict = judge(worse, "1.1", compared, final=False)
    assert verdict.state is State.BREACH and "maxErrorsOverOld 3 times" in verdict.reason, verdict
    assert "against the old version's" in verdict.reason
    # As good as the old version (both at 1 %), or a burst both share: never condemned by it.
    alike = judge(beside_old(300, 100, 100), "1.1", compared)
    assert alike.state is State.PASS, alike
    burst = judge(beside_old(300, 0, 0, shared_burst=True), "1.1", compared, final=False)
    assert burst.state is not State.BREACH, burst
    # The comparison takes its share of the release's false-abort budget: a third test a stage.
    assert compared.tests == 6 and THRESHOLDS.tests == 4


def test_the_comparison_with_the_old_version_says_nothing_without_both_versions_or_errors() -> None:
    assert llr_over_old(3, 0, 0, 10, 1) == 0.0 and llr_over_old(3, 10, 1, 0, 0) == 0.0
    assert llr_over_old(3, 10, 0, 30, 0) == 0.0
    # An error of the new version where a quarter of the answers are its own: evidence it is worse; one of
    # the old version's: evidence it is not.
    assert llr_over_old(3, 10, 1, 30, 0) == pytest.approx(math.log(0.5 / 0.25))
    assert llr_over_old(3, 10, 0, 30, 1) == pytest.approx(math.log(0.5 / 0.75))


def alone_tally(samples: list[Sample]) -> Judgement:
    tally = Tally("1.1", THRESHOLDS)
    tally.alone_from = 0.0  # the bake: nothing runs beside the new version
    return judge_tally(tally.extend(samples), final=False)


def at(version: str, start_s: float, seconds: float, rate: int, status: int = 200) -> list[Sample]:
    return [Sample(start_s + i / rate, status, 0.005, version) for i in range(int(seconds * rate))]


def test_alone_a_burst_shorter_than_the_forgiven_stretch_does_not_condemn_a_release_that_goes_on_failing_does() -> None:
    # 100 answers a second; a 2-s burst failing every answer, then clean answers: with nothing beside it to
    # tell a shared cause by, the worst 5 s are left out of what condemns (never of what clears).
    burst = at("1.1", 0, 10, 100) + at("1.1", 10, 2, 100, status=500) + at("1.1", 12, 10, 100)
    assert alone_tally(burst).state is State.PENDING
    # Clearing weighs all of it: the 200 errors take about 70 s of clean answers to outweigh.
    assert alone_tally(burst + at("1.1", 22, 60, 100)).state is State.PASS
    # The same burst while the release was judged from its first answers beside nothing marked alone (the
    # recorded answers of a canary stage): condemned.
    assert judge(burst, "1.1", THRESHOLDS, final=False).state is State.BREACH
    # Failing on past the stretch: condemned, about 5 s later than otherwise.
    failing = at("1.1", 0, 10, 100) + at("1.1", 10, 5.6, 100, status=500)
    assert alone_tally(failing).state is State.BREACH
    assert alone_tally(at("1.1", 0, 10, 100) + at("1.1", 10, 4.5, 100, status=500)).state is State.PENDING
    # Two bursts: only one is forgiven.
    twice = burst + at("1.1", 22, 2, 100, status=500)
    assert alone_tally(twice).state is State.BREACH


def test_evidence_that_went_missing_stops_the_release_unless_it_is_already_condemned() -> None:
    gap = ("the log of pod nginx-1 was not read for 12s (403 Forbidden)",)
    verdict = judge(answers("1.1", 150), "1.1", THRESHOLDS, final=False, gaps=gap)
    assert verdict.state is State.UNDECIDED and verdict.fails and "403 Forbidden" in verdict.reason
    assert verdict.as_json()["gaps"] == list(gap)
    assert judge(answers("1.1", 5, status=500), "1.1", THRESHOLDS, final=False, gaps=gap).state is State.BREACH


def test_a_look_judges_running_counts_and_a_tally_fed_in_parts_says_what_one_fed_at_once_does() -> None:
    samples = [
        Sample(i * 0.02, 500 if i % 37 == 0 else 200, 0.001 * (i % 50), "1.1" if i % 3 else "1.0") for i in range(3000)
    ]
    whole = judge_tally(Tally("1.1", THRESHOLDS).extend(samples))
    parts = Tally("1.1", THRESHOLDS)
    for start in range(0, 3000, 250):
        parts.extend(reversed(samples[start : start + 250]))  # as they are recorded: not in order
        judge_tally(parts, final=False)
    again = judge_tally(parts)
    assert (again.state, again.requests, again.errors, again.slow, again.p99_ms) == (
        whole.state,
        whole.requests,
        whole.errors,
        whole.slow,
        whole.p99_ms,
    )
    assert parts.error_llr == pytest.approx(Tally("1.1", THRESHOLDS).extend(samples).error_llr)


def test_p99_by_nearest_rank() -> None:
    assert p99_ms([]) is None
    assert p99_ms([0.001]) == pytest.approx(1)
    assert p99_ms([i / 1000 for i in range(1, 101)]) == pytest.approx(99)
    assert p99_ms([i / 1000 for i in range(1, 201)]) == pytest.approx(198)


def test_the_evidence_is_said_for_json() -> None:
    verdict = judge(answers("1.0", 3) + answers("1.1", 2, status=500, t0=1), "1.1", THRESHOLDS)
    assert verdict.as_json() == {
        "state": "undecided",
        "version": "1.1",
        "requests": 2,
        "errors": 2,
        "p99Ms": 5.0,
        "reason": "its window ended before the evidence decided (errors 2 of 2, slow 0 of 2, 2 of the 50 minRequests)",
        "windowSeconds": 1.1,
        "responses": {"1.0": {"200": 3}, "1.1": {"500": 2}},
        "slow": 0,
        "gaps": [],
        "timedBy": "prober",
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


def gate(evidence: AppEvidence, breaches: list[str], *, pause_undecided: bool = False, **thresholds: Any) -> Gate:
    said: list[str] = []
    limits = Thresholds(**{"max_error_ratio": 0.02, "max_p99_ms": 1000, "min_requests": 10, **thresholds})
    return Gate(
        evidence,
        "1.1",
        limits,
        say=said.append,
        on_breach=breaches.append,
        clock=evidence.clock,
        pause_undecided=pause_undecided,
    )


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
        verdict = watching.bake(1.0, longest=30)
    assert verdict.state is State.PASS and breaches == []

    with gate(serving(latency_s=0.05), breaches, max_p99_ms=20) as watching:
        start = watching.clock.now()
        verdict = watching.bake(30)
        took = watching.clock.now() - start
    assert verdict.state is State.BREACH and "maxP99Ms 20" in verdict.reason
    assert took < 5, "on the gate's clock: a 30 s bake ended by its first judgement"
    assert len(breaches) == 1


def test_a_stage_lasts_its_least_seconds_then_until_the_evidence_decides_at_most_its_longest() -> None:
    # 40 answers a second clear a healthy release within seconds: the stage still lasts its least seconds
    # (canarySeconds, bakeSeconds), then ends at the first look that finds it cleared.
    def window(least: float, **thresholds: Any) -> tuple[Judgement, float]:
        with gate(serving(), [], **thresholds) as watching:
            start = watching.clock.now()
            verdict = watching.bake(least, longest=60)
            return verdict, watching.clock.now() - start

    verdict, took = window(15)
    assert verdict.state is State.PASS and verdict.requests >= 112
    assert 15 <= took < 16, took
    verdict, took = window(0)
    assert verdict.state is State.PASS and took < 5, took
    # Evidence that never decides: the longest window, then undecided, which stops the release.
    breaches: list[str] = []
    with gate(serving(), breaches, min_requests=100_000) as watching:
        start = watching.clock.now()
        verdict = watching.bake(15, longest=60)
        took = watching.clock.now() - start
    assert verdict.state is State.UNDECIDED and 60 <= took < 65, took
    assert breaches and "its window ended before the evidence decided" in breaches[0]
    # A canary under analysisUndecided pause: the same window ends undecided and nothing is acted on.
    with gate(serving(), breaches, min_requests=100_000, pause_undecided=True) as watching:
        verdict = watching.bake(15, longest=60)
    assert verdict.state is State.UNDECIDED and watching.undecided is verdict and watching.breach is None
    assert len(breaches) == 1, "the pausing gate acted on nothing"
    # A breach is acted on all the same.
    with gate(serving({"1.1": 500}), breaches, pause_undecided=True) as watching:
        assert watching.bake(15, longest=60).state is State.BREACH and len(breaches) == 2
    # Minutes that settle after they are read (the ALB's): the least window and its settling, then until the
    # evidence decides.
    evidence = serving()
    evidence.settle_s = 1.0
    with gate(evidence, []) as watching:
        start = watching.clock.now()
        watching.bake(30, longest=600)
        assert 31 <= watching.clock.now() - start < 32
    undecided = serving()
    undecided.settle_s = 1.0
    with gate(undecided, [], min_requests=100_000) as watching:
        start = watching.clock.now()
        assert watching.bake(30, longest=60).state is State.UNDECIDED
        assert 61 <= watching.clock.now() - start < 62


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
    verdict = judge(samples, "1.16.1-errors", THRESHOLDS)
    assert verdict.state is State.BREACH and "maxErrorRatio" in verdict.reason
    assert verdict.counts["1.14.2"].keys() == {200}
    # Judged as the old version, the same responses are not condemned: nothing of the new one is blamed on
    # it (too few of them to clear it, which is another matter).
    assert judge(samples, "1.14.2", THRESHOLDS).state is not State.BREACH
    # Whatever minRequests says, its errors are beyond doubt: the sequential test needs no least number.
    early = judge(samples, "1.16.1-errors", Thresholds(0.02, 1000, 10_000))
    assert early.state is State.BREACH and "beyond doubt" in early.reason


def test_recorded_slow_release_breaches_on_p99_not_on_errors() -> None:
    samples = recorded("analysis-slow.jsonl")
    verdict = judge(samples, "1.16.1-slow", THRESHOLDS)
    assert verdict.state is State.BREACH and "maxP99Ms" in verdict.reason and verdict.errors == 0
    assert verdict.p99_ms is not None and verdict.p99_ms > 1000
    # A looser latency threshold does not condemn it.
    assert judge(samples, "1.16.1-slow", Thresholds(0.02, 10_000, 20)).state is not State.BREACH
