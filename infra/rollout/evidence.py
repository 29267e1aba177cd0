"""Where the analysis's evidence comes from, behind one interface: the command's own prober with the users'
own requests as the pods log them, or the ALB's metrics (analysisSource cloudwatch). The gate
(infra/rollout/gate.py) judges whichever it is given; tests give it one of their own, on a clock of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from infra.rollout import cloudwatch
from infra.rollout.analysis import Judgement, Sample, Tally, Thresholds, judge_tally
from infra.rollout.prober import USER_AGENT, Prober

if TYPE_CHECKING:
    from infra.kube.logs import PodLogs, Request

# The requests in the pods' logs that are not users': the prober's own (counted as it records them, with
# the ones that got no answer; their server time is judged), the kubelet's probes and the ALB's health checks.
NOT_USERS = (USER_AGENT, "kube-probe/", "ELB-HealthChecker/")
# The status nginx logs for a connection it closed without a response: the client got none.
NO_RESPONSE = 444
# A running pod's log unread for longer than this (refused, or its stream ended and could not be followed
# again) is evidence gone missing: the release stops, undecided.
LOG_GAP_S = 10.0

# With a warm-up, the prober's answers wait this long before they are judged: until the pods' list (read
# every second: infra/kube/logs.py LIST_EVERY_S) says whether a pod was warming up when each was sent.
WARMUP_HOLD_S = 2.0

# Before the update, the prober must get this many answers from the stack's url within this long (it runs
# while the preview does), or the command stops: an analysis that cannot reach the url would judge
# nothing, or blame the network on the release.
REACH_ANSWERS = 3
REACH_WITHIN_S = 10.0


class Clock(Protocol):
    """Time as the analysis reads it and waits on it (monotonic seconds)."""

    def now(self) -> float: ...
    def wait(self, event: threading.Event, seconds: float) -> bool: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


REAL_CLOCK = RealClock()


class Evidence(Protocol):
    """What the gate judges. Entered for each judged release (the canary's, then the rollout's)."""

    # How often it is worth judging, and how long after the bake's end its last evidence is complete.
    every_s: float
    settle_s: float

    def unreachable(self) -> str | None:
        """None when the evidence can be had from here; else why not, in a sentence (before any update)."""
        ...

    def __enter__(self) -> object: ...
    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def alone(self) -> None:
        """The new version now serves alone (the ALB's metrics judge its minutes from here on alone)."""
        ...

    def judgement(self, version: str, thresholds: Thresholds, *, final: bool = True) -> Judgement:
        """The verdict so far (``final``: at the window's end; else only what already decides it)."""
        ...

    def samples(self) -> list[Sample]:
        """The responses recorded since it was entered (none for evidence that is not per request)."""
        ...


@dataclass(frozen=True)
class Warmup:
    """What ``seconds`` of warm-up (analysisWarmupSeconds) leave out of the evidence, given since when each
    pod has been ready (epoch seconds, ``ready``): a pod's own answers until it has been ready that long;
    and answers that name no pod (the prober's) sent while any pod warms up. 0 leaves nothing out."""

    seconds: float
    ready: Mapping[str, float]

    def counts_pod(self, pod: str, started: float) -> bool:
        """Whether ``pod``'s answer to a request ``started`` (epoch) counts: not before its warm-up ended,
        nor from a pod not yet seen ready (whose warm-up cannot be told)."""
        if self.seconds <= 0:
            return True
        since = self.ready.get(pod)
        return since is not None and started >= since + self.seconds

    def counts_any(self, started: float) -> bool:
        """Whether an answer that names no pod, to a request ``started`` (epoch), counts: no pod warming then."""
        return self.seconds <= 0 or not any(since <= started < since + self.seconds for since in self.ready.values())


def user_samples(requests: list[Request], since: float, warmup: Warmup | None = None) -> list[Sample]:
    """Users' ``requests`` (the kubelet's and the load balancer's health checks left out) as samples on this
    process's monotonic clock, those started at or after ``since`` (monotonic), each timed by the server;
    one the server closed unanswered is no response. The prober's own requests are there for their server
    time alone (the prober counts them itself, with the ones no server saw)."""
    offset = time.monotonic() - time.time()
    found = []
    for r in requests:
        probe = r.agent.startswith(USER_AGENT)
        if (r.agent.startswith(NOT_USERS) and not probe) or (probe and r.status == NO_RESPONSE):
            continue
        if warmup is not None and not warmup.counts_pod(r.pod, r.started):
            continue
        status = 0 if r.status == NO_RESPONSE else r.status
        found.append(Sample(r.started + offset, status, r.seconds, r.version, server=True, counted=not probe))
    return [s for s in found if s.t >= since]


class Probe:
    """The command's own requests to ``url``, ``rate`` a second, each on a new connection, never re-sent;
    and with ``users``, every request the app's pods log (users' own) while it runs. Each look counts only
    what came since the last one (``Tally``): its cost does not grow with the window."""

    every_s = 0.5
    settle_s = 0.0

    def __init__(
        self,
        url: str,
        rate: float,
        *,
        most_s: float,
        reach_within_s: float = REACH_WITHIN_S,
        users: PodLogs | None = None,
        say: Callable[[str], None] = lambda _: None,
        log_gap_s: float = LOG_GAP_S,
        warmup_s: float = 0.0,
    ) -> None:
        self.url, self.rate, self.most_s, self.reach_within_s = url, rate, most_s, reach_within_s
        self.users, self.say, self.log_gap_s, self.warmup_s = users, say, log_gap_s, warmup_s
        self._hold_s = WARMUP_HOLD_S if warmup_s > 0 else 0.0
        self._held: list[Sample] = []
        self._alone_from: float | None = None
        self._said_users = False
        self._prober: Prober | None = None
        self._started = 0.0
        self._lock = threading.Lock()
        self._tally: Tally | None = None
        self._probed = self._logged = 0

    def unreachable(self) -> str | None:
        with Prober(self.url, REACH_ANSWERS * 2, most_s=self.reach_within_s) as prober:
            answered = prober.wait_answers(REACH_ANSWERS, self.reach_within_s)
            tried = prober.samples()
        if len(answered) >= REACH_ANSWERS:
            return None
        errors = sorted({s.error for s in tried if s.error})
        return (
            f"{len(answered)} of {len(tried)} requests answered in {self.reach_within_s:.0f}s"
            f"{': ' + errors[0] if errors else ''}"
        )

    def __enter__(self) -> Probe:
        self._prober = Prober(self.url, self.rate, most_s=self.most_s)
        self._started = time.monotonic()
        with self._lock:
            self._tally, self._probed, self._logged, self._held = None, 0, 0, []
            self._alone_from = None
        if self.users is not None:
            self.users.__enter__()
        self._prober.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._prober is not None:
            self._prober.__exit__(kind, err, tb)
        if self.users is not None:
            self.users.__exit__(kind, err, tb)

    def alone(self) -> None:
        """From now on nothing runs beside the new version to tell a shared cause by (analysis.FORGIVEN_S)."""
        with self._lock:
            self._alone_from = time.monotonic()

    def judgement(self, version: str, thresholds: Thresholds, *, final: bool = True) -> Judgement:
        with self._lock:
            if self._tally is None or (self._tally.version, self._tally.thresholds) != (version, thresholds):
                timed = self.users is not None  # the servers' own time, from their logs
                self._tally, self._probed, self._logged = Tally(version, thresholds, server_times=timed), 0, 0
            tally, warmup = self._tally, self.warmup()
            tally.alone_from = self._alone_from
            if self._prober is not None:
                probed = self._prober.recorded_from(self._probed)
                self._probed += len(probed)
                tally.extend(self._warmed([*self._held, *(s for s in probed if s.t >= self._started)], warmup))
            if self.users is not None:
                logged = self.users.requests_from(self._logged)
                self._logged += len(logged)
                tally.extend(user_samples(logged, self._started, warmup))
            return judge_tally(tally, final=final, gaps=self.gaps())

    def warmup(self) -> Warmup | None:
        """The warm-up now, from the pods' ready times; without the pods' logs, from the stage's start."""
        if self.warmup_s <= 0:
            return None
        if self.users is None:
            return Warmup(self.warmup_s, {"": self._started - time.monotonic() + time.time()})
        return Warmup(self.warmup_s, self.users.ready_since())

    def _warmed(self, probed: list[Sample], warmup: Warmup | None) -> list[Sample]:
        """The prober's answers that count: all without a warm-up; else those old enough to tell (the rest
        held to the next look), sent while no pod warmed up."""
        if warmup is None:
            return probed
        now, offset = time.monotonic(), time.time() - time.monotonic()
        self._held = [s for s in probed if s.t > now - self._hold_s]
        return [s for s in probed if s.t <= now - self._hold_s and warmup.counts_any(s.t + offset)]

    def gaps(self) -> tuple[str, ...]:
        """The evidence that went missing: the logs of running pods unread for longer than ``log_gap_s``."""
        if self.users is None:
            return ()
        self._say_users()
        return tuple(self.users.unread(self.log_gap_s))

    def _say_users(self) -> None:
        if self.users is not None and self.users.problem is not None and not self._said_users:
            self._said_users = True
            self.say(
                f"analysis: users' requests cannot be read from the pods' logs ({self.users.problem}); following "
                f"again, and stopping the release should it last {self.log_gap_s:.0f}s"
            )

    def samples(self) -> list[Sample]:
        probed = [] if self._prober is None else self._prober.samples(since=self._started)
        if self.users is None:
            return probed
        self._say_users()
        return sorted(probed + user_samples(self.users.requests(), self._started), key=lambda s: s.t)


class AlbMetrics:
    """The ALB's per-minute metrics of the target group behind the url (infra/rollout/cloudwatch.py), read
    every READ_EVERY_S and judged against the old version's baseline; its last minute settles SETTLE_S."""

    every_s = float(cloudwatch.READ_EVERY_S)
    settle_s = float(cloudwatch.SETTLE_S)

    def __init__(self, metrics: cloudwatch.Metrics, say: Callable[[str], None]) -> None:
        self.metrics, self.say = metrics, say
        self._checked = False
        # Set when the new version serves alone (wall-clock, as CloudWatch's minutes are), and once the
        # metrics could not be read and it was said.
        self._alone_at: float | None = None
        self._said_unread = False

    def unreachable(self) -> str | None:
        """Find the ALB and read its last minutes (the baseline), once: after a canary this run made, the
        baseline read before it stands (the old version alone)."""
        if self._checked:
            return None
        try:
            self.metrics.check()
        except cloudwatch.MetricsError as err:
            return str(err)
        self._checked = True
        before, group = self.metrics.before, self.metrics.group
        self.say(
            f"analysis: reading the ALB's metrics ({group.target_group if group else ''}); the old version's "
            f"last {cloudwatch.BASELINE_MINUTES} minutes: {before.requests:.0f} requests, "
            f"{before.error_ratio:.1%} errors"
        )
        return None

    def __enter__(self) -> AlbMetrics:
        self._alone_at = None
        self.metrics.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.metrics.__exit__(kind, err, tb)

    def alone(self) -> None:
        self._alone_at = self.metrics.clock()

    def judgement(self, version: str, thresholds: Thresholds, *, final: bool = True) -> Judgement:
        # A minute's counts are judged as they are reported (CloudWatch's own periods), final or not.
        try:
            minutes = self.metrics.minutes()
        except cloudwatch.MetricsError as err:
            if not self._said_unread:
                self._said_unread = True
                self.say(f"analysis: the ALB's metrics cannot be read just now ({err}); trying again")
            minutes = []
        return cloudwatch.judge_minutes(minutes, self.metrics.before, version, thresholds, alone_since=self._alone_at)

    def samples(self) -> list[Sample]:
        return []
