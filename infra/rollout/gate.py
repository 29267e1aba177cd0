"""The analysis as the rollout command runs it: evidence about a release, judged as it goes.

While the rollout runs, a breach of the thresholds (or evidence gone missing) is acted on at once
(``on_breach``: the command interrupts the engine's update, as for a definitive failure); after it
completes, the bake goes on judging for its seconds, then until the evidence decides. Every few
seconds the live view hears how the new version is doing. Where the
evidence comes from (the prober, the ALB's metrics) is the ``Evidence`` it is given (infra/rollout/evidence.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from infra.rollout.analysis import Judgement, Sample, State, Thresholds
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
        pause_undecided: bool = False,
    ) -> None:
        self.evidence, self.version, self.thresholds = evidence, version, thresholds
        self.say, self.on_breach, self.clock = say, on_breach, clock
        self.breach: Judgement | None = None
        # With ``pause_undecided`` (a canary under analysisUndecided pause), a verdict that cannot decide (the
        # window ended, or evidence went missing) ends the judgement without acting on it: kept here.
        self.pause_undecided = pause_undecided
        self.undecided: Judgement | None = None
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

    def bake(self, seconds: float, *, longest: float | None = None) -> Judgement:
        """Go on judging for at least ``seconds``, then until the evidence clears or condemns the release, at
        most ``longest`` seconds in all (the stage's longest window); its verdict, the breach at once. A stage
        still pending at its longest is undecided, and stops the release as a breach does. Evidence that is
        judged by the minute after it settles (the ALB's) adds its settling to both."""
        settle_s = self.evidence.settle_s if seconds > 0 else 0.0
        start = self.clock.now()
        least = start + seconds + settle_s
        most = least if longest is None else max(least, start + longest + settle_s)
        if seconds > 0 or most > least:
            settle = f" (and {settle_s:.0f}s for its last minute to be reported)" if settle_s else ""
            then = f", then until its evidence decides (at most {most - start:.0f}s)" if most > least else ""
            self.say(f"analysis: judging {self.version} for {seconds:.0f}s{then}{settle}")
        while self.ended() is None and self.clock.now() < most:
            if self.clock.now() >= least:
                verdict = self.judgement(final=False)
                if verdict.state is State.PASS:
                    return verdict
                if verdict.fails:
                    self._failed(verdict)
                    break
            self.clock.wait(self._stop, min(self.evidence.every_s, max(0.0, most - self.clock.now())))
        if (ended := self.ended()) is not None:
            return ended
        verdict = self.judgement().ended()
        if verdict.fails:
            self._failed(verdict)
        return self.ended() or verdict

    def ended(self) -> Judgement | None:
        """The verdict that ended the judgement early: a breach, or (when pausing) an undecided one."""
        return self.breach or self.undecided

    def _failed(self, verdict: Judgement) -> None:
        """Act on a verdict that stops the release: a breach always; an undecided one, unless pausing."""
        if verdict.state is State.UNDECIDED and self.pause_undecided:
            with self._lock:
                if self.undecided is None and self.breach is None:
                    self.undecided = verdict
                    self.say(f"analysis: {verdict.line()}")
            return
        self._breached(verdict)

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
            if verdict.fails:
                self._failed(verdict)
                return
            if self.clock.now() - said >= SAY_EVERY_S:
                said = self.clock.now()
                self.say(f"analysis: {verdict.line()}")
