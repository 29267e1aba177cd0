"""The analysis as the rollout command runs it: the prober through a release, judged as it goes.

While the rollout runs, a breach of the thresholds is acted on at once (``on_breach``: the command
interrupts the engine's update, as for a definitive failure); after it completes, the bake goes on
judging for its seconds. Every few seconds the live view hears how the new version is doing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from infra.rollout.analysis import Judgement, Sample, Thresholds, judge
from infra.rollout.cloudwatch import READ_EVERY_S, SETTLE_S, Metrics, MetricsError, judge_minutes

# How often the judgement is made, and how often the live view hears it.
JUDGE_EVERY_S = 0.5
SAY_EVERY_S = 5.0


class Source(Protocol):
    """Where the evidence comes from while the gate's block runs."""

    def __enter__(self) -> object: ...

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def samples(self, since: float = 0.0) -> list[Sample]: ...


class Gate:
    """Judge ``version``'s responses from ``prober`` against ``thresholds`` from the block's start to its end."""

    # How often the judgement is made, and how long after the bake's end its evidence is complete.
    every_s = JUDGE_EVERY_S
    settle_s = 0.0

    def __init__(
        self,
        prober: Source,
        version: str,
        thresholds: Thresholds,
        *,
        say: Callable[[str], None],
        on_breach: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prober, self.version, self.thresholds = prober, version, thresholds
        self.say, self.on_breach, self.clock = say, on_breach, clock
        self.breach: Judgement | None = None
        self._alone_since: float | None = None
        self._started = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Gate:
        self._started = self.clock()
        self.prober.__enter__()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            # A judgement in flight (a CloudWatch read) is not waited for long: it acts on nothing after this.
            self._thread.join(timeout=min(self.every_s * 4, 5.0))
        self.prober.__exit__(kind, err, tb)

    def alone(self) -> None:
        """The new version now serves alone (its rollout is complete): a request without a response from
        here on is its failure."""
        self._alone_since = self.clock()

    def judgement(self) -> Judgement:
        """The verdict on everything recorded so far."""
        return judge(self.samples(), self.version, self.thresholds, alone_since=self._alone_since)

    def samples(self) -> list[Sample]:
        return self.prober.samples(since=self._started)

    def bake(self, seconds: float) -> Judgement:
        """Go on judging for ``seconds`` after the rollout; the verdict at the end, or the breach at once."""
        end = self.clock() + seconds + (self.settle_s if seconds > 0 else 0.0)
        if seconds > 0:
            settle = f" (and {self.settle_s:.0f}s for its last minute to be reported)" if self.settle_s else ""
            self.say(f"analysis: baking {self.version} for {seconds:.0f}s{settle}")
        while self.breach is None and self.clock() < end:
            self._stop.wait(min(self.every_s, max(0.0, end - self.clock())))
        if self.breach is not None:
            return self.breach
        verdict = self.judgement()
        if verdict.breached:
            self._breached(verdict)
        return self.breach or verdict

    def _breached(self, verdict: Judgement) -> bool:
        """Record the first breach and act on it; False when one was recorded already."""
        with self._lock:
            if self.breach is not None:
                return False
            self.breach = verdict
        self.say(f"analysis: {verdict.line()}")
        self.on_breach(f"the analysis found {verdict.line()}")
        return True

    def _watch(self) -> None:
        said = self.clock()
        while not self._stop.wait(self.every_s):
            verdict = self.judgement()
            if self._stop.is_set():
                return  # the block ended while judging: whatever follows it is not this gate's to stop
            if verdict.breached:
                self._breached(verdict)
                return
            if self.clock() - said >= SAY_EVERY_S:
                said = self.clock()
                self.say(f"analysis: {verdict.line()}")


class MetricsGate(Gate):
    """The gate over the ALB's metrics (infra/rollout/cloudwatch.py): read and judged every READ_EVERY_S
    against the old version's baseline; the bake waits SETTLE_S past its end for its last minute."""

    every_s = READ_EVERY_S
    settle_s = float(SETTLE_S)

    # Set when the new version serves alone (wall-clock, as CloudWatch's minutes are), and once the
    # metrics could not be read and it was said.
    _alone_at: float | None = None
    _said_unread = False

    @property
    def metrics(self) -> Metrics:
        assert isinstance(self.prober, Metrics), "a MetricsGate judges Metrics"
        return self.prober

    def alone(self) -> None:
        super().alone()
        self._alone_at = self.metrics.clock()

    def judgement(self) -> Judgement:
        try:
            minutes = self.metrics.minutes()
        except MetricsError as err:
            if not self._said_unread:
                self._said_unread = True
                self.say(f"analysis: the ALB's metrics cannot be read just now ({err}); trying again")
            minutes = []
        return judge_minutes(minutes, self.metrics.before, self.version, self.thresholds, alone_since=self._alone_at)
