"""The analysis as the rollout command runs it: evidence about a release, judged as it goes.

While the rollout runs, a breach of the thresholds is acted on at once (``on_breach``: the command
interrupts the engine's update, as for a definitive failure); after it completes, the bake goes on
judging for its seconds. Every few seconds the live view hears how the new version is doing. Where the
evidence comes from (the prober, the ALB's metrics) is the ``Evidence`` it is given (infra/rollout/evidence.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from infra.rollout.analysis import Judgement, Sample, Thresholds
from infra.rollout.evidence import REAL_CLOCK, Clock, Evidence

# How often the live view hears the judgement.
SAY_EVERY_S = 5.0


class Gate:
    """Judge ``version`` on ``evidence`` against ``thresholds`` from the block's start to its end."""

    def __init__(
        self,
        evidence: Evidence,
        version: str,
        thresholds: Thresholds,
        *,
        say: Callable[[str], None],
        on_breach: Callable[[str], None],
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.evidence, self.version, self.thresholds = evidence, version, thresholds
        self.say, self.on_breach, self.clock = say, on_breach, clock
        self.breach: Judgement | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Gate:
        self.evidence.__enter__()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            # A judgement in flight (a CloudWatch read) is not waited for long: it acts on nothing after this.
            self._thread.join(timeout=min(self.evidence.every_s * 4, 5.0))
        self.evidence.__exit__(kind, err, tb)

    def alone(self) -> None:
        """The new version now serves alone (its rollout is complete)."""
        self.evidence.alone()

    def judgement(self, *, final: bool = True) -> Judgement:
        """The verdict on everything recorded so far (``final``: as at the window's end)."""
        return self.evidence.judgement(self.version, self.thresholds, final=final)

    def samples(self) -> list[Sample]:
        return self.evidence.samples()

    def bake(self, seconds: float, *, enough_after: float | None = None) -> Judgement:
        """Go on judging for ``seconds`` after the rollout; the verdict at the end, or the breach at once.
        With ``enough_after``, the window may end sooner: from that many seconds on, as soon as minRequests
        responses of the version are in (a canary whose users bring the evidence faster than the prober's
        share would). Their count alone ends it, never their errors, so the ratio at the end is judged as
        at a fixed window's. Only for evidence complete when recorded (not the ALB's minutes)."""
        settle_s = self.evidence.settle_s if seconds > 0 else 0.0
        start = self.clock.now()
        end = start + seconds + settle_s
        early = enough_after is not None and enough_after < seconds and not self.evidence.settle_s
        if seconds > 0:
            settle = f" (and {settle_s:.0f}s for its last minute to be reported)" if settle_s else ""
            sooner = (
                f", or from {enough_after:.0f}s once {self.thresholds.min_requests} responses of it are in"
                if early
                else ""
            )
            self.say(f"analysis: baking {self.version} for {seconds:.0f}s{sooner}{settle}")
        while self.breach is None and self.clock.now() < end:
            if early and self.clock.now() - start >= (enough_after or 0.0) and self._enough():
                break
            self.clock.wait(self._stop, min(self.evidence.every_s, max(0.0, end - self.clock.now())))
        if self.breach is not None:
            return self.breach
        verdict = self.judgement()
        if verdict.breached:
            self._breached(verdict)
        return self.breach or verdict

    def _enough(self) -> bool:
        return self.judgement(final=False).requests >= self.thresholds.min_requests

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
        said = self.clock.now()
        while not self.clock.wait(self._stop, self.evidence.every_s):
            verdict = self.judgement(final=False)
            if self._stop.is_set():
                return  # the block ended while judging: whatever follows it is not this gate's to stop
            if verdict.breached:
                self._breached(verdict)
                return
            if self.clock.now() - said >= SAY_EVERY_S:
                said = self.clock.now()
                self.say(f"analysis: {verdict.line()}")
