"""Whether a release serves its users well: the new version's answers, judged as they come.

A pure verdict over running counts (``Tally``, ``judge``), tested on answers really recorded on the node.
Each answer names the version that gave it (the app's `X-App-Version` header, set on every response,
errors included: app/nginx.conf), so an old version answering errors is never blamed on the new one. An
answer that names no version (a refused or reset connection, a timeout, a load balancer's own 502, 503 or
504) is held against the release under judgement, whichever pods it was meant for: missing evidence is
a finding, never a pass.

Two rates decide, each by a sequential test with two boundaries (infra/rollout/sequential.py): the share
of answers that are errors (5xx, or none), against ``maxErrorRatio``, and the share slower than
``maxP99Ms``, against the 1 % a p99 leaves above it. Either test condemning is a breach at once; the stage
is cleared only when both have cleared it (and ``minRequests`` answers are in); until then it is pending,
and a stage that ends pending is undecided, which aborts the release. The error rates are the whole
release's: ``Thresholds.stages`` shares the false-abort budget among its stages' tests. What they come to
over simulated releases is in docs/benchmarks.md (bench/verdict.py).

A look costs the same at a hundred answers and at a million: the counts are kept as the answers come
(``Tally.add``), and the p99 said with the verdict comes from a histogram of 1 % wide buckets.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from infra.rollout.report import Evidence, MinuteEvidence
from infra.rollout.sequential import ALPHA, Decision, RateTest, latency_test, limit_test, llr_beside, llr_over_old

# The p99 said with a verdict is the largest answer in its bucket: within this share of the true one.
BUCKET_WIDTH = 0.01
# The stretch of time whose errors are judged beside the other versions' errors in it (the gate's look).
SLOT_S = 0.5
# Once the new version serves alone (the bake), a shared cause (a dependency down for a moment, a burst)
# cannot be told from the release by any comparison: the worst stretch of this long of its evidence from
# then on is left out of what condemns the release (never of what clears it). A burst shorter than this is
# forgiven once; a release failing every answer alone is stopped this much later.
FORGIVEN_S = 5.0


@dataclass(frozen=True)
class Sample:
    """One answer: sent at ``t`` (seconds), answered with ``status`` by ``version`` (None when the response
    named none) after ``latency_s``; status 0 is no response (``error`` says why). ``server``: the latency is
    the server's own time (its access log), not a client's, which adds the network's. ``counted``: False for
    an answer already counted another way (the prober's own request as the pod logged it), whose server
    time alone is evidence."""

    t: float
    status: int
    latency_s: float
    version: str | None = None
    error: str = ""
    server: bool = False
    counted: bool = True

    @property
    def answered(self) -> bool:
        return self.status != 0

    @property
    def bad(self) -> bool:
        """What users count as an error: no response, or a server error (5xx)."""
        return not self.answered or self.status >= 500


@dataclass(frozen=True)
class Thresholds:
    """What the new version must keep to (the settings maxErrorRatio, maxP99Ms, minRequests), and how many
    stages the release is judged in (a canary's shares and the rollout): they share its error rates."""

    max_error_ratio: float
    max_p99_ms: int
    min_requests: int
    stages: int = 1
    # maxErrorsOverOld: the multiple of the old version's error rate that condemns the new one (0: off).
    over_old: int = 0

    @property
    def tests(self) -> int:
        """The tests a release runs in all: errors and latency in each stage, and beside the old version when
        maxErrorsOverOld asks for it."""
        return (3 if self.over_old else 2) * self.stages

    def over_old_bound(self) -> float | None:
        """The log likelihood ratio at which the new version is beyond doubt ``over_old`` times worse than
        the old one (None when off): the test's share of the release's false-abort budget."""
        return math.log(self.tests / ALPHA) if self.over_old else None

    def error_test(self) -> RateTest | None:
        """The test of the error rate (None with maxErrorRatio 100 %: errors never abort)."""
        return None if self.max_error_ratio >= 1 else limit_test(self.max_error_ratio, tests=self.tests)

    def latency_test(self) -> RateTest:
        return latency_test(tests=self.tests)


class State(enum.Enum):
    PASS = "pass"  # cleared: the evidence says the release is within its limits
    BREACH = "breach"  # condemned: beyond a limit, beyond doubt
    PENDING = "pending"  # not decided yet: the stage goes on
    UNDECIDED = "undecided"  # the stage ended undecided, or its evidence went missing: the release stops


@dataclass
class _Version:
    """One version's running counts."""

    answers: int = 0  # answers it gave, of any status
    bad: int = 0  # of them, errors
    answered: int = 0  # with a response (a latency)
    slow: int = 0  # of them, slower than the tally's limit
    # Latency histogram: bucket -> [answers, the slowest in it (seconds)].
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def p99_ms(self) -> float | None:
        """The 99th percentile by nearest rank, as the slowest answer in its bucket (BUCKET_WIDTH)."""
        if not self.answered:
            return None
        rank, seen = math.ceil(0.99 * self.answered), 0
        for bucket in sorted(self.buckets):
            seen += int(self.buckets[bucket][0])
            if seen >= rank:
                return self.buckets[bucket][1] * 1000
        return None


def _bucket(latency_s: float) -> int:
    return int(math.log1p(max(0.0, latency_s) * 1000) / math.log1p(BUCKET_WIDTH))


class Tally:
    """Every answer of a stage, counted as it comes: by version and status, what the tests need of the judged
    ``version``, and the error test's log likelihood ratio, each half second of answers (SLOT_S, by when
    they were sent) judged beside the error rate the other versions showed in it.

    ``server_times``: the latency judged is the servers' own (their access logs), so that the network
    between the prober and the service (a CI runner across the internet from the load balancer) is not held
    against the release; the prober's own timings are then told apart (``network``), not judged."""

    def __init__(self, version: str, thresholds: Thresholds, *, server_times: bool = False) -> None:
        self.version, self.thresholds, self.server_times = version, thresholds, server_times
        # The judged version's answers as the prober timed them, when the servers' times are judged.
        self.network = _Version()
        self.slow_ms = thresholds.max_p99_ms
        self.error_test = thresholds.error_test()
        self.counts: dict[str, dict[int, int]] = {}
        self.versions: dict[str, _Version] = {}
        # Errors that named no version (no response, or a load balancer's 5xx): held against the release.
        self.unversioned_bad = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        # Each half second: [the judged version's answers, its errors, the others' answers, their errors].
        self._slots: dict[int, list[int]] = {}
        self.error_llr = 0.0
        # maxErrorsOverOld's test: the new version's errors against the old version's, half second by half second.
        self.over_old_llr = 0.0
        # From when (a sample's time) the new version serves alone, and from then on the log likelihood ratio
        # of each half second.
        self.alone_from: float | None = None
        self._alone: dict[int, float] = {}

    def _time(self, into: _Version, latency_s: float) -> None:
        into.answered += 1
        into.slow += latency_s * 1000 > self.slow_ms
        bucket = into.buckets.setdefault(_bucket(latency_s), [0, 0.0])
        bucket[0] += 1
        bucket[1] = max(bucket[1], latency_s)

    def add(self, sample: Sample) -> None:
        timed = sample.answered and sample.version is not None and sample.server == self.server_times
        if not sample.counted:
            if timed:
                self._time(self.versions.setdefault(str(sample.version), _Version()), sample.latency_s)
            return
        by = self.counts.setdefault(sample.version or "-", {})
        by[sample.status] = by.get(sample.status, 0) + 1
        self.first_t = sample.t if self.first_t is None else min(self.first_t, sample.t)
        self.last_t = sample.t if self.last_t is None else max(self.last_t, sample.t)
        if sample.version is None:
            self.unversioned_bad += sample.bad
        else:
            mine = self.versions.setdefault(sample.version, _Version())
            mine.answers += 1
            mine.bad += sample.bad
            if timed:
                self._time(mine, sample.latency_s)
            elif sample.answered and sample.version == self.version:
                self._time(self.network, sample.latency_s)
        if sample.version is None and not sample.bad:
            return  # an answer of no version that is not an error (not the app's) says nothing
        index = math.floor(sample.t / SLOT_S)
        slot = self._slots.setdefault(index, [0, 0, 0, 0])
        before, before_old = self._slot_llr(slot), self._slot_over_old(slot)
        judged = sample.version is None or sample.version == self.version
        slot[0 if judged else 2] += 1
        slot[1 if judged else 3] += sample.bad
        now = self._slot_llr(slot)
        self.error_llr += now - before
        self.over_old_llr += self._slot_over_old(slot) - before_old
        if self.alone_from is not None and index >= math.floor(self.alone_from / SLOT_S):
            self._alone[index] = now

    def forgiven(self) -> float:
        """The most that any FORGIVEN_S of consecutive half seconds since the new version serves alone add to
        the error test's log likelihood ratio (0 when none adds anything): the largest sum of at most that
        many consecutive half seconds' ratios."""
        if not self._alone:
            return 0.0
        width = round(FORGIVEN_S / SLOT_S)
        prefix, worst = 0.0, 0.0
        # The sums before each half second that may start a stretch ending at the current one, least first.
        starts: collections.deque[tuple[int, float]] = collections.deque()
        for index in range(min(self._alone), max(self._alone) + 1):
            while starts and starts[-1][1] >= prefix:
                starts.pop()
            starts.append((index, prefix))
            while starts[0][0] <= index - width:
                starts.popleft()
            prefix += self._alone.get(index, 0.0)
            worst = max(worst, prefix - starts[0][1])
        return worst

    def error_decision(self) -> Decision:
        """The error test's decision: it clears on all the evidence; it condemns only on what remains beyond
        doubt without the worst FORGIVEN_S the new version answered alone (``forgiven``)."""
        if self.error_test is None:
            return Decision.CLEAR
        found = self.error_test.decide_llr(self.error_llr)
        if found is Decision.CONDEMN and self.error_test.decide_llr(self.error_llr - self.forgiven()) is not found:
            return Decision.OPEN
        return found

    def _slot_over_old(self, slot: list[int]) -> float:
        times = self.thresholds.over_old
        return llr_over_old(times, slot[0], slot[1], slot[2], slot[3]) if times else 0.0

    def _slot_llr(self, slot: list[int]) -> float:
        if self.error_test is None or slot[0] == 0:
            return 0.0
        # The others' error rate in the same half second, a little low (one answer more) where they are few.
        return llr_beside(self.error_test, slot[0], slot[1], slot[3] / (slot[2] + 1))

    def extend(self, samples: Iterable[Sample]) -> Tally:
        for sample in samples:
            self.add(sample)
        return self

    def others(self) -> tuple[int, int]:
        """The other versions' answers and errors."""
        found = [v for name, v in self.versions.items() if name != self.version]
        return sum(v.answers for v in found), sum(v.bad for v in found)

    @property
    def span_s(self) -> float:
        return 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t


@dataclass(frozen=True)
class Judgement:
    """The verdict on the new version's answers so far, with its evidence."""

    state: State
    version: str
    requests: int
    errors: int
    p99_ms: float | None
    reason: str
    # Every answer of the window by the version that gave it ("-" for none) and its status (0 for no
    # response): the evidence, for people and for --json.
    counts: dict[str, dict[int, int]]
    window_s: float
    # Where the evidence came from: the command's own prober and users' requests, or the ALB's metrics
    # (infra/rollout/cloudwatch.py), whose minutes are the evidence then.
    source: str = "probe"
    minutes: tuple[MinuteEvidence, ...] = ()
    # Answers slower than maxP99Ms, of the ones that had a response.
    slow: int = 0
    # Evidence that went missing (a pod's log that could not be read): each one a finding.
    gaps: tuple[str, ...] = ()
    # Whose time the latency is: the servers' own (their access logs) or the prober's (with the network's).
    timed_by: str = "prober"
    # With the servers' time judged, the p99 the prober met (the network's time added): said, not judged.
    network_p99_ms: float | None = None

    @property
    def breached(self) -> bool:
        return self.state is State.BREACH

    @property
    def fails(self) -> bool:
        """Whether the release stops on it: condemned, or undecided."""
        return self.state in (State.BREACH, State.UNDECIDED)

    def ended(self) -> Judgement:
        """The verdict at the stage's end: what is still pending there is undecided."""
        if self.state is not State.PENDING:
            return self
        return dataclasses.replace(
            self, state=State.UNDECIDED, reason=f"its window ended before the evidence decided ({self.detail})"
        )

    @property
    def detail(self) -> str:
        """The reason's figures, in its brackets (or the whole reason)."""
        return self.reason[self.reason.find("(") + 1 : -1] if self.reason.endswith(")") else self.reason

    def line(self) -> str:
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.0f} ms"
        return f"{self.version}: {self.requests} requests, {self.errors} errors, p99 {p99}: {self.reason}"

    def as_json(self) -> Evidence:
        found: Evidence = {
            "state": self.state.value,
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "p99Ms": None if self.p99_ms is None else round(self.p99_ms, 1),
            "reason": self.reason,
            "windowSeconds": round(self.window_s, 1),
            "responses": {v: {str(s): n for s, n in sorted(by.items())} for v, by in sorted(self.counts.items())},
        }
        if self.source == "probe":
            found["slow"], found["gaps"], found["timedBy"] = self.slow, list(self.gaps), self.timed_by
            if self.network_p99_ms is not None:
                found["networkP99Ms"] = round(self.network_p99_ms, 1)
        else:
            found["source"], found["minutes"] = self.source, list(self.minutes)
        return found


def p99_ms(latencies_s: Iterable[float]) -> float | None:
    """The 99th percentile by nearest rank (the smallest value at least 99 % of the values do not exceed)."""
    ordered = sorted(latencies_s)
    if not ordered:
        return None
    return ordered[math.ceil(0.99 * len(ordered)) - 1] * 1000


def judge_tally(tally: Tally, *, final: bool = True, gaps: tuple[str, ...] = ()) -> Judgement:
    """The judged version's answers in ``tally`` against its thresholds (module docstring); ``final``: at the
    stage's end, where pending is undecided; ``gaps``: evidence that went missing, which stops the release
    unless it is already condemned."""
    version, thresholds = tally.version, tally.thresholds
    mine = tally.versions.get(version, _Version())
    requests, errors = mine.answers + tally.unversioned_bad, mine.bad + tally.unversioned_bad
    slow_test = thresholds.latency_test()
    on_errors = tally.error_decision()
    on_latency = slow_test.decide(mine.answered, mine.slow)

    def verdict(state: State, reason: str) -> Judgement:
        return Judgement(
            state,
            version,
            requests,
            errors,
            mine.p99_ms(),
            reason,
            tally.counts,
            tally.span_s,
            slow=mine.slow,
            gaps=gaps,
            timed_by="server" if tally.server_times else "prober",
            network_p99_ms=tally.network.p99_ms() if tally.server_times else None,
        )

    unversioned = f" ({tally.unversioned_bad} of them with no version)" if tally.unversioned_bad else ""
    if on_errors is Decision.CONDEMN:
        answers, bad = tally.others()
        beside = f", the old version's {bad} of {answers} at the same time" if answers else ""
        return verdict(
            State.BREACH,
            f"{errors} of its {requests} responses were errors{unversioned}: above maxErrorRatio "
            f"{thresholds.max_error_ratio:g} beyond doubt{beside}",
        )
    bound = thresholds.over_old_bound()
    if bound is not None and tally.over_old_llr >= bound:
        answers, bad = tally.others()
        return verdict(
            State.BREACH,
            f"{errors} of its {requests} responses were errors{unversioned}, against the old version's {bad} of "
            f"{answers} at the same time: at least maxErrorsOverOld {thresholds.over_old} times as many, beyond "
            "doubt",
        )
    if on_latency is Decision.CONDEMN:
        whose = " (the servers' own time)" if tally.server_times else ""
        return verdict(
            State.BREACH,
            f"{mine.slow} of its {mine.answered} answers took longer than maxP99Ms {thresholds.max_p99_ms} ms"
            f"{whose}: more than a p99 allows, beyond doubt",
        )
    if gaps:
        return verdict(State.UNDECIDED, "its evidence went missing: " + "; ".join(gaps))
    cleared = on_errors is Decision.CLEAR and on_latency is Decision.CLEAR
    if cleared and requests >= thresholds.min_requests:
        return verdict(State.PASS, "within maxErrorRatio and maxP99Ms beyond doubt")
    pending = [
        *([] if on_errors is Decision.CLEAR else [f"errors {errors} of {requests}"]),
        *([] if on_latency is Decision.CLEAR else [f"slow {mine.slow} of {mine.answered}"]),
        *([] if requests >= thresholds.min_requests else [f"{requests} of the {thresholds.min_requests} minRequests"]),
    ]
    found = verdict(State.PENDING, f"not decided yet ({', '.join(pending)})")
    return found.ended() if final else found


def judge(
    samples: Iterable[Sample],
    version: str,
    thresholds: Thresholds,
    *,
    final: bool = True,
    gaps: tuple[str, ...] = (),
) -> Judgement:
    """``judge_tally`` over ``samples`` counted anew (for recorded answers and tests): on the servers' own
    times where the samples hold them (a run that read the pods' logs)."""
    found = list(samples)
    tally = Tally(version, thresholds, server_times=any(s.server for s in found))
    return judge_tally(tally.extend(found), final=final, gaps=gaps)
