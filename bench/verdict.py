"""The analysis's verdict over simulated releases: how often it aborts a release, and how soon, by the
release's error rate and the rate of the evidence (python -m bench.verdict, part of `make bench`).

Each simulated release answers ``rate`` responses a second for the window (60 s: the eks bake), each an
error with the release's probability, independently. The verdict is the analysis's own (`judge` in
infra/rollout/analysis.py) as the gate applies it, at every response, an upper bound on how often the
gate (every 0.5 s) would act: before minRequests, errors beyond doubt (the sequential test); from
minRequests on, more errors than maxErrorRatio allows. "Before" is the same without the sequential test
(the rule until this change). Deterministic: each cell on a generator seeded by the cell.

A release at or below maxErrorRatio that is aborted is a false abort; one above it that ships is a false
ship. Errors arrive by geometric gaps, so a run costs its errors, not its responses.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.rollout.analysis import beyond_doubt, breaches_ratio

RESULTS = Path(__file__).resolve().parent / "results"
ERROR_RATES = (0.0, 0.005, 0.01, 0.02, 0.05, 1.0)
TRAFFIC = (1, 10, 100, 1000)
WINDOW_S = 60
MAX_ERROR_RATIO = 0.02  # the default
MIN_REQUESTS = 50  # the default


@dataclass(frozen=True)
class Cell:
    error_rate: float
    traffic: int
    runs: int
    aborted: float  # the share of runs aborted
    median_s: float | None  # seconds to the abort, among aborted runs
    aborted_before: float  # the same without the sequential test
    median_s_before: float | None


def first_abort(errors_at: list[int], total: int, *, sequential: bool) -> int | None:
    """The response (1-based) at which the verdict aborts, given which of ``total`` responses were errors.

    ``sequential``: the rule now: errors beyond doubt end the window at any response; at its end, the
    ratio over the whole window, once. Otherwise the rule before it: nothing before minRequests, then the
    ratio at every look."""
    for count, at in enumerate(errors_at, start=1):
        if sequential:
            if beyond_doubt(at, count, MAX_ERROR_RATIO):
                return at
        elif at >= MIN_REQUESTS and breaches_ratio(at, count, MAX_ERROR_RATIO):
            return at
    if sequential and total >= MIN_REQUESTS and breaches_ratio(total, len(errors_at), MAX_ERROR_RATIO):
        return total
    return None


def errors_in(total: int, error_rate: float, rng: random.Random) -> list[int]:
    """The 1-based positions of the errors among ``total`` responses."""
    if error_rate <= 0:
        return []
    if error_rate >= 1:
        return list(range(1, total + 1))
    found: list[int] = []
    at, log_q = 0, math.log(1 - error_rate)
    while True:
        at += 1 + int(math.log(1 - rng.random()) / log_q)
        if at > total:
            return found
        found.append(at)


def cell(error_rate: float, traffic: int, runs: int, rng: random.Random) -> Cell:
    total = traffic * WINDOW_S
    now, before = [], []
    for _ in range(runs):
        at = errors_in(total, error_rate, rng)
        now.append(first_abort(at, total, sequential=True))
        before.append(first_abort(at, total, sequential=False))

    def share(found: list[int | None]) -> float:
        return sum(f is not None for f in found) / runs

    def median(found: list[int | None]) -> float | None:
        times = [f / traffic for f in found if f is not None]
        return round(statistics.median(times), 2) if times else None

    return Cell(error_rate, traffic, runs, share(now), median(now), share(before), median(before))


def simulate(runs: int = 1000, seed: int = 1) -> list[Cell]:
    """Every cell, each on a generator seeded by itself (a cell can be run again alone, alike)."""
    return [cell(e, t, runs, random.Random(f"{seed}-{e}-{t}")) for e in ERROR_RATES for t in TRAFFIC]


def table(cells: list[Cell]) -> str:
    def pct(x: float) -> str:
        return f"{x:.1%}"

    def when(x: float | None) -> str:
        return "-" if x is None else f"{x:g} s"

    lines = [
        "| release's error rate | evidence a second | aborted | median time to abort "
        "| before: aborted | before: median |",
        "|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c.error_rate:.1%} | {c.traffic} | {pct(c.aborted)} | {when(c.median_s)} | "
            f"{pct(c.aborted_before)} | {when(c.median_s_before)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verdict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    cells = simulate(args.runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "verdict.json").write_text(json.dumps([asdict(c) for c in cells], indent=1) + "\n")
    (RESULTS / "verdict.md").write_text(table(cells) + "\n")
    print(table(cells))


if __name__ == "__main__":
    main()
