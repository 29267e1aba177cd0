"""A sequential test of a rate with two boundaries, valid at every look: the arithmetic of the verdict.

A release's answers are judged as they come, every half second, for as long as a stage lasts. A rule that
compares the observed ratio with a limit at each look (or once, at a window's end) is a point estimate: it
aborts good releases and ships bad ones by chance, at rates nobody stated. This is Wald's sequential
probability ratio test (A. Wald, Sequential Analysis, 1947) of a rate ``good`` against a rate ``bad``: the
log of the likelihood ratio of the answers so far, ``k`` bad of ``n``, is

    llr(n, k) = k * ln(bad / good) + (n - k) * ln((1 - bad) / (1 - good))

and the test **condemns** once it reaches ``ln(1 / alpha)`` and **clears** once it falls to ``ln(beta)``;
between the two it goes on. The boundaries are Ville's (J. Ville, 1939): the likelihood ratio is a
martingale, so a release at ``good`` (or better) ever reaches the condemning boundary with probability at
most ``alpha``, and one at ``bad`` (or worse) ever reaches the clearing one with probability at most
``beta``, however often it is looked at and however long it runs. That is what lets a stage look every
half second, wait out a least duration, and stop at a longest one without spending its error rates.

Between ``good`` and ``bad`` lies the zone the test is indifferent to: a release there may go either way,
or (more often) stay undecided until the stage's longest window, which is not a pass.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Decision(enum.Enum):
    CLEAR = "clear"
    CONDEMN = "condemn"
    OPEN = "open"


@dataclass(frozen=True)
class RateTest:
    """Tell a rate at most ``good`` from one at least ``bad``: condemn a ``good`` one at most ``alpha`` of the
    time, clear a ``bad`` one at most ``beta`` of the time. ``good`` 0 means any bad answer condemns."""

    good: float
    bad: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not 0 <= self.good < self.bad < 1:
            raise ValueError(f"a rate test needs 0 <= good < bad < 1, not good {self.good} and bad {self.bad}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError(f"alpha and beta are probabilities, not {self.alpha} and {self.beta}")

    @property
    def per_bad(self) -> float:
        """What one bad answer adds to the log likelihood ratio (infinite when ``good`` is 0)."""
        return math.inf if self.good == 0 else math.log(self.bad / self.good)

    @property
    def per_good(self) -> float:
        """What one good answer adds (negative)."""
        return math.log((1 - self.bad) / (1 - self.good))

    @property
    def upper(self) -> float:
        """The condemning boundary."""
        return math.log(1 / self.alpha)

    @property
    def lower(self) -> float:
        """The clearing boundary."""
        return math.log(self.beta)

    def llr(self, n: int, k: int) -> float:
        """The log likelihood ratio of ``k`` bad answers among ``n``."""
        if k <= 0:
            return n * self.per_good
        return k * self.per_bad + (n - k) * self.per_good

    def decide(self, n: int, k: int) -> Decision:
        return self.decide_llr(self.llr(n, k))

    def decide_llr(self, ratio: float) -> Decision:
        """The decision at log likelihood ratio ``ratio``."""
        if ratio >= self.upper:
            return Decision.CONDEMN
        if ratio <= self.lower:
            return Decision.CLEAR
        return Decision.OPEN

    def fewest_to_clear(self) -> int:
        """The fewest answers, none bad, that clear a release."""
        return math.ceil(self.lower / self.per_good - 1e-9)

    def fewest_to_condemn(self) -> int:
        """The fewest bad answers, none good, that condemn a release."""
        return 1 if self.good == 0 else math.ceil(self.upper / self.per_bad - 1e-9)


# The error rates of a whole release: a good one (its rates at most half its limits) is aborted at most
# ALPHA of the time, a bad one (three times a limit or more) ships at most BETA of the time, every stage of
# it combined (docs/rollouts.md; measured over simulated releases by bench/verdict.py).
ALPHA = 0.01
BETA = 0.01
# The rates the test tells apart, as multiples of a limit: at most GOOD_SHARE of it is good, BAD_TIMES it
# or more is bad.
GOOD_SHARE = 0.5
BAD_TIMES = 3.0
# With a limit of 0 no bad answer is good; the smallest rate then told apart from none.
LEAST_BAD = 0.01
# The share of answers a p99 leaves above it. Latency is the rate of answers slower than maxP99Ms: a p99
# within maxP99Ms (at most OVER_P99 of them) is good, as the setting says; SLOW_TIMES as many is bad.
OVER_P99 = 0.01
SLOW_TIMES = 5.0


def limit_test(limit: float, *, tests: int, alpha: float = ALPHA, beta: float = BETA) -> RateTest:
    """The test of a rate against ``limit`` for one of ``tests`` tests a release runs in all: good at most
    GOOD_SHARE of the limit, bad BAD_TIMES it (halfway to 1 at most). A release is aborted when any one test
    condemns it, so each gets an equal share of ``alpha`` (the union bound); it ships only when every stage
    clears it, so each keeps the whole ``beta``."""
    if tests < 1:
        raise ValueError(f"a release runs at least one test, not {tests}")
    good = GOOD_SHARE * limit
    bad = max(BAD_TIMES * limit, LEAST_BAD) if limit > 0 else LEAST_BAD
    bad = min(bad, (1 + limit) / 2)
    return RateTest(good, bad, alpha / tests, beta)


def latency_test(*, tests: int, alpha: float = ALPHA, beta: float = BETA) -> RateTest:
    """The test of the rate of answers slower than maxP99Ms: good at OVER_P99 (a p99 within the limit), bad at
    SLOW_TIMES that; ``alpha`` shared among ``tests`` as in ``limit_test``."""
    if tests < 1:
        raise ValueError(f"a release runs at least one test, not {tests}")
    return RateTest(OVER_P99, SLOW_TIMES * OVER_P99, alpha / tests, beta)


def llr_beside(test: RateTest, n: int, k: int, base: float) -> float:
    """The log likelihood ratio of ``k`` bad answers among ``n`` given at a time when what already runs gave
    bad answers at rate ``base``: the test's rates raised by it, so that a cause both versions share (a
    dependency down, a burst) is not held against the new one. With ``base`` 0 it is ``test.llr``. Each
    stretch of time is judged against its own raised rates; the product of their likelihood ratios is still
    a martingale under the raised null, so ``test``'s boundaries keep their meaning."""
    if base <= 0:
        return test.llr(n, k)
    good = min(test.good + base, 1 - 1e-6)
    bad = min(test.bad + base, (1 + good) / 2)
    return k * math.log(bad / good) + (n - k) * math.log((1 - bad) / (1 - good))


def llr_over_old(times: float, mine: int, my_bad: int, theirs: int, their_bad: int) -> float:
    """The log likelihood ratio, from one stretch of time, that the new version's answers fail ``times`` as
    often as the old version's rather than as often, from ``my_bad`` errors of its ``mine`` answers and
    ``their_bad`` of the old version's ``theirs``. Given how many errors both gave then, each is the new
    version's with the probability of its share of the answers if they fail alike, and a larger one if not
    (the binomial split of two Poisson counts, conditioned on their sum): whatever rate both share that
    stretch (a burst, a dependency down) cancels, and so does the rate itself. No answers of either, or no
    errors, say nothing. A release as good as the old one reaches ``ln(1 / alpha)`` with probability at
    most ``alpha`` (Ville's bound, as for ``RateTest``)."""
    if mine == 0 or theirs == 0 or my_bad + their_bad == 0:
        return 0.0
    share = mine / (mine + theirs)
    worse = times * share / (times * share + 1 - share)
    return my_bad * math.log(worse / share) + their_bad * math.log((1 - worse) / (1 - share))
