"""The analysis's verdict over simulated releases: how often a whole release is aborted, shipped or left
undecided, and how long its judgement takes, by what the release does and the traffic it gets (python -m
bench.verdict, part of `make bench`).

A release is judged in stages, as `rollout --canary 1` runs it with the defaults: on eks (weights) the
canary at 5 % of the requests, then at 25 %, then the rollout with its bake; on local (pods) one canary pod
beside three, then the rollout. Each stage sees its share of the traffic: users' requests a second (the
rows' "traffic") plus the prober's 10, arriving at random (Poisson), judged every 0.5 s as the gate looks;
a stage lasts at least its least window (canarySeconds 120 and bakeSeconds 60 on eks, 15 and 5 on local)
and at most analysisMaxSeconds (600). Each answer is an error with the release's error rate and slow
(beyond maxP99Ms) with its slow rate, independently; "bursts" rows put errors in 2-second bursts shared by
both versions, averaging the rate. The boundaries are the code's own (``Thresholds``, ``RateTest``); a unit
test holds these vectorised looks to ``judge_tally`` on the same counts.

A release is good when its rates are at most half maxErrorRatio and within a p99 (1 % slow); bad at three
times maxErrorRatio or 5 % slow. Aborting a good one, or shipping a bad one, is the verdict's error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from infra.rollout.analysis import FORGIVEN_S, Sample, Tally, Thresholds, judge_tally
from infra.rollout.sequential import RateTest

RESULTS = Path(__file__).resolve().parent / "results"

LOOK_S = 0.5  # the gate's look (infra/rollout/evidence.py Probe.every_s)
PROBE_RATE = 10  # analysisRate's default
MAX_ERROR_RATIO = 0.02  # the default
MIN_REQUESTS = 50  # the default
LONGEST_S = 600  # analysisMaxSeconds' default
BURST_S = 2.0  # how long a shared burst of errors lasts
BURST_ERRORS = 0.5  # the share of answers a burst fails


@dataclass(frozen=True)
class Way:
    """A way a release is judged: its stages' shares of the requests and least windows (seconds)."""

    name: str
    shares: tuple[float, ...]
    least_s: tuple[float, ...]


WAYS = (
    Way("eks: weights 5 %, 25 %, rollout", (0.05, 0.25, 1.0), (120, 120, 60)),
    Way("local: 1 canary pod of 4, rollout", (0.25, 1.0), (15, 5)),
)
ERROR_RATES = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.1, 1.0)
SLOW_RATES = (0.001, 0.005, 0.01, 0.02, 0.05)
BURST_RATES = (0.005,)
TRAFFIC = (1, 10, 100, 1000)
# Releases beside an old version that fails too: (the new version's rate, the old one's, maxErrorsOverOld).
BESIDE_OLD = ((0.01, 0.01, 3), (0.015, 0.001, 0), (0.015, 0.001, 3))


@dataclass(frozen=True)
class Row:
    way: str
    kind: str  # errors, slow or bursts
    rate: float
    traffic: int
    runs: int
    old_rate: float  # the old version's steady error rate (errors rows)
    over_old: int  # maxErrorsOverOld (0: off)
    aborted: float  # condemned at some stage
    undecided: float  # a stage ended undecided (aborted too)
    shipped: float
    median_s: float | None  # the whole judgement, every stage, among shipped releases
    median_abort_s: float | None  # from the first stage's start to the abort, among aborted releases


def beside(test: RateTest, n: np.ndarray, k: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``llr_beside`` (infra/rollout/sequential.py) of each look's answers, for arrays."""
    good = np.minimum(test.good + base, 1 - 1e-6)
    bad = np.minimum(test.bad + base, (1 + good) / 2)
    found: np.ndarray = np.where(k > 0, k * np.log(bad / good), 0.0) + (n - k) * np.log((1 - bad) / (1 - good))
    return found


@dataclass(frozen=True)
class Draws:
    """What ``runs`` releases answer in one stage, look by look (arrays of runs x looks): the new version's
    answers, its errors and its slow answers, the old version's answers and errors."""

    answers: np.ndarray
    errors: np.ndarray
    slow: np.ndarray
    old: np.ndarray
    old_errors: np.ndarray


def draw(rng: np.random.Generator, runs: int, release: Release, share: float) -> Draws:
    """One stage at ``share`` of the requests. The old version takes the rest (none at a share of 1), its
    errors at ``release.old_errors``; answers arrive at random (Poisson), each look's are one slot."""
    looks = int(LONGEST_S / LOOK_S)
    rate = release.traffic + PROBE_RATE
    error_rate = release.errors(rng, runs, looks)
    answers = rng.poisson(share * rate * LOOK_S, size=(runs, looks))
    errors = rng.binomial(answers, error_rate)
    slow = rng.binomial(answers - errors, release.slow)
    old = rng.poisson((1 - share) * rate * LOOK_S, size=(runs, looks))
    return Draws(answers, errors, slow, old, rng.binomial(old, release.old_errors(error_rate)))


def forgiven(per_look: np.ndarray) -> np.ndarray:
    """``Tally.forgiven`` at each look: the largest sum of at most FORGIVEN_S of consecutive looks' ratios so
    far (0 at least)."""
    runs, looks = per_look.shape
    width = round(FORGIVEN_S / LOOK_S)
    sums = np.concatenate([np.zeros((runs, 1)), per_look.cumsum(axis=1)], axis=1)
    least_before = sums[:, :looks].copy()  # the least sum before a look that may start a stretch ending here
    for back in range(1, width):
        earlier = np.concatenate([np.full((runs, back), np.inf), sums[:, : looks - back]], axis=1)
        least_before = np.minimum(least_before, earlier)
    found: np.ndarray = np.maximum(np.maximum.accumulate(sums[:, 1:] - least_before, axis=1), 0.0)
    return found


def over_old(times: int, draws: Draws) -> np.ndarray:
    """``llr_over_old`` (infra/rollout/sequential.py) of each look's answers, for arrays."""
    both = (draws.answers > 0) & (draws.old > 0)
    share = np.where(both, draws.answers / np.maximum(draws.answers + draws.old, 1), 0.5)
    worse = times * share / (times * share + 1 - share)
    found: np.ndarray = np.where(
        both, draws.errors * np.log(worse / share) + draws.old_errors * np.log((1 - worse) / (1 - share)), 0.0
    )
    return found


def decide(draws: Draws, limits: Thresholds, least_s: float, *, alone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each run's decision in the stage (1 cleared, -1 condemned, 0 undecided) and when (seconds), judged at
    every look as the gate judges (``judge_tally``; a unit test holds the two to the same decisions); with
    ``alone`` (the new version serves alone: the bake) the worst FORGIVEN_S is left out of what condemns."""
    looks = draws.answers.shape[1]
    on_errors, on_latency = limits.error_test(), limits.latency_test()
    assert on_errors is not None
    # Errors here are answered 5xx: every answer has a latency.
    per_look = beside(on_errors, draws.answers, draws.errors, draws.old_errors / (draws.old + 1))
    llr_e = per_look.cumsum(axis=1)
    n, s = draws.answers.cumsum(axis=1), draws.slow.cumsum(axis=1)
    llr_s = np.where(s > 0, s * on_latency.per_bad, 0.0) + (n - s) * on_latency.per_good
    condemn_e = llr_e - (forgiven(per_look) if alone else 0.0)
    condemn = (condemn_e >= on_errors.upper) | (llr_s >= on_latency.upper)
    bound = limits.over_old_bound()
    if bound is not None:
        condemn |= over_old(limits.over_old, draws).cumsum(axis=1) >= bound
    at = np.arange(1, looks + 1) * LOOK_S
    clear = (llr_e <= on_errors.lower) & (llr_s <= on_latency.lower) & (n >= limits.min_requests) & (at >= least_s)
    first_condemn = np.where(condemn.any(axis=1), condemn.argmax(axis=1), looks)
    first_clear = np.where(clear.any(axis=1), clear.argmax(axis=1), looks)
    decision = np.where(first_condemn < first_clear, -1, np.where(first_clear < looks, 1, 0))
    when = (np.minimum(np.minimum(first_condemn, first_clear), looks - 1) + 1) * LOOK_S
    return decision, when


@dataclass(frozen=True)
class Release:
    """What a simulated release does: its ``kind`` of fault at ``rate``, with users' ``traffic`` a second."""

    way: Way
    kind: str  # errors, slow or bursts
    rate: float
    traffic: int
    old_rate: float = 0.0  # the old version's steady error rate
    over_old: int = 0  # maxErrorsOverOld

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(MAX_ERROR_RATIO, 1000, MIN_REQUESTS, stages=len(self.way.shares), over_old=self.over_old)

    @property
    def slow(self) -> float:
        return self.rate if self.kind == "slow" else 0.0

    def errors(self, rng: np.random.Generator, runs: int, looks: int) -> np.ndarray:
        """The new version's error rate at each look of each run: bursts of BURST_S failing BURST_ERRORS of
        the answers, starting at random, ``rate`` of them on average; else a steady rate."""
        if self.kind != "bursts":
            return np.full((runs, looks), self.rate if self.kind == "errors" else 0.0)
        per_look = self.rate / BURST_ERRORS * LOOK_S / BURST_S  # the chance a burst starts at a look
        starts = (rng.random((runs, looks)) < per_look).astype(float)
        width = int(BURST_S / LOOK_S)
        on = np.zeros((runs, looks))
        for shift in range(width):
            on[:, shift:] += starts[:, : looks - shift]
        return np.where(on > 0, BURST_ERRORS, 0.0)

    def old_errors(self, new_errors: np.ndarray) -> np.ndarray:
        """The old version's error rate at each look: the bursts are shared; otherwise it is healthy."""
        return new_errors if self.kind == "bursts" else np.full_like(new_errors, self.old_rate)


def row(release: Release, runs: int, seed: int = 1) -> Row:
    way = release.way
    kinds = ("errors", "slow", "bursts")
    rng = np.random.default_rng(
        [seed, WAYS.index(way), kinds.index(release.kind), int(release.rate * 1e4), release.traffic]
        + ([int(release.old_rate * 1e4), release.over_old] if release.old_rate or release.over_old else [])
    )
    alive = np.ones(runs, dtype=bool)
    outcome = np.ones(runs, dtype=int)  # 1 shipped, -1 condemned, 0 undecided
    elapsed = np.zeros(runs)
    for share, least in zip(way.shares, way.least_s, strict=True):
        decision, when = decide(draw(rng, runs, release, share), release.thresholds, least, alone=share == 1.0)
        elapsed += np.where(alive, when, 0.0)
        ended = alive & (decision != 1)
        outcome[ended] = decision[ended]
        alive &= decision == 1
    shipped, aborted, undecided = outcome == 1, outcome == -1, outcome == 0

    def median(mask: np.ndarray) -> float | None:
        return round(float(statistics.median(elapsed[mask].tolist())), 1) if mask.any() else None

    return Row(
        way.name,
        release.kind,
        release.rate,
        release.traffic,
        runs,
        release.old_rate,
        release.over_old,
        round(float(aborted.mean()), 4),
        round(float(undecided.mean()), 4),
        round(float(shipped.mean()), 4),
        median(shipped),
        median(~shipped),
    )


def simulate(runs: int = 1000) -> list[Row]:
    rows = []
    for way in WAYS:
        for kind, rates in (("errors", ERROR_RATES), ("slow", SLOW_RATES), ("bursts", BURST_RATES)):
            rows += [row(Release(way, kind, rate, traffic), runs) for rate in rates for traffic in TRAFFIC]
        rows += [
            row(Release(way, "errors", rate, traffic, old_rate, times), runs)
            for rate, old_rate, times in BESIDE_OLD
            for traffic in TRAFFIC
        ]
    return rows


# What arrives between two looks at 1,000 answers a second.
ARRIVE_PER_LOOK = 500


def look_cost(sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)) -> list[dict[str, float]]:
    """What one look costs with a window of each size: the half second's new answers (ARRIVE_PER_LOOK)
    counted and the running counts judged (now), against counting every answer again (what a look did
    before the counts were kept), in milliseconds (best of 5)."""
    return [_cost(size) for size in sizes]


def _cost(size: int) -> dict[str, float]:
    limits = Thresholds(MAX_ERROR_RATIO, 1000, MIN_REQUESTS, stages=3)
    samples = [Sample(i / 1000, 500 if i % 97 == 0 else 200, 0.01, "1.1") for i in range(size)]
    tally = Tally("1.1", limits).extend(samples)
    half_second = samples[:ARRIVE_PER_LOOK]

    def now() -> None:
        tally.extend(half_second)
        judge_tally(tally, final=False)

    def before() -> None:
        judge_tally(Tally("1.1", limits).extend(samples), final=False)

    return {"samples": size, "look_ms": best_ms(now), "recount_ms": best_ms(before)}


def best_ms(work: Callable[[], None], tries: int = 5) -> float:
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return round(min(times) * 1000, 3)


def pct(x: float) -> str:
    return f"{x:.1%}"


def table(rows: list[Row]) -> str:
    def when(x: float | None) -> str:
        return "-" if x is None else f"{x:g} s"

    lines = []
    for way in WAYS:
        lines += [
            f"**{way.name}**",
            "",
            "| release | users' requests a second | aborted | of them undecided | shipped | median judgement "
            "(shipped) | median to the abort |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r.way != way.name:
                continue
            what = {"errors": "errors", "slow": "slower than maxP99Ms", "bursts": "errors in shared bursts"}[r.kind]
            if r.old_rate or r.over_old:
                what += f", the old version {r.old_rate:.1%}, maxErrorsOverOld {r.over_old}"
            lines.append(
                f"| {r.rate:.1%} {what} | {r.traffic} | {pct(r.aborted + r.undecided)} | {pct(r.undecided)} | "
                f"{pct(r.shipped)} | {when(r.median_s)} | {when(r.median_abort_s)} |"
            )
        lines.append("")
    return "\n".join(lines).strip()


def cost_table(costs: list[dict[str, float]]) -> str:
    lines = [
        f"| answers in the window | a look now ({ARRIVE_PER_LOOK} new answers) | counting them all again (before) |",
        "|---|---|---|",
    ]
    lines += [f"| {c['samples']:,} | {c['look_ms']:g} ms | {c['recount_ms']:g} ms |" for c in costs]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verdict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    rows = simulate(args.runs)
    costs = look_cost()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "verdict.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "look_cost": costs}, indent=1) + "\n"
    )
    (RESULTS / "verdict.md").write_text(table(rows) + "\n")
    (RESULTS / "verdict-cost.md").write_text(cost_table(costs) + "\n")
    print(table(rows))
    print()
    print(cost_table(costs))


if __name__ == "__main__":
    main()
