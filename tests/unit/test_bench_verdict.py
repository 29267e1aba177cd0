"""The verdict bench (bench/verdict.py) judges as the command does: its looks over arrays decide what
``judge_tally`` decides, look by look, on the same answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench import verdict
from infra.rollout.analysis import Sample, State, Tally, judge_tally


def judged_look_by_look(
    draws: verdict.Draws, run: int, release: verdict.Release, least_s: float, *, alone: bool
) -> tuple[int, float]:
    """The run's decision and when, by the analysis itself: each look's answers added to a Tally (sent in
    that look's half second), then judged as the gate's look judges; ``alone``: serving alone throughout."""
    tally = Tally("new", release.thresholds)
    tally.alone_from = 0.0 if alone else None
    for look in range(draws.answers.shape[1]):
        t = look * verdict.LOOK_S + verdict.LOOK_S / 2
        errors, slow = int(draws.errors[run, look]), int(draws.slow[run, look])
        fine = int(draws.answers[run, look]) - errors - slow
        old_errors = int(draws.old_errors[run, look])
        tally.extend(
            [Sample(t, 500, 0.01, "new")] * errors
            + [Sample(t, 200, 2.0, "new")] * slow
            + [Sample(t, 200, 0.01, "new")] * fine
            + [Sample(t, 500, 0.01, "old")] * old_errors
            + [Sample(t, 200, 0.01, "old")] * (int(draws.old[run, look]) - old_errors)
        )
        at = (look + 1) * verdict.LOOK_S
        state = judge_tally(tally, final=False).state
        if state is State.BREACH:
            return -1, at
        if state is State.PASS and at >= least_s:
            return 1, at
    return 0, at


@pytest.mark.parametrize(
    ("kind", "rate", "traffic", "share", "old_rate", "over_old"),
    [
        ("errors", 0.01, 10, 0.25, 0.0, 0),
        ("errors", 0.06, 10, 1.0, 0.0, 0),
        ("slow", 0.05, 100, 0.05, 0.0, 0),
        ("bursts", 0.005, 100, 0.25, 0.0, 0),
        ("bursts", 0.02, 100, 1.0, 0.0, 0),
        ("errors", 1.0, 10, 1.0, 0.0, 0),
        ("errors", 0.015, 100, 0.25, 0.001, 3),
        ("errors", 0.01, 100, 0.25, 0.01, 3),
    ],
)
def test_the_benchs_looks_decide_what_the_analysis_decides(
    kind: str, rate: float, traffic: int, share: float, old_rate: float, over_old: int
) -> None:
    release = verdict.Release(verdict.WAYS[0], kind, rate, traffic, old_rate, over_old)
    draws = verdict.draw(np.random.default_rng(7), 6, release, share)
    alone = share == 1.0
    decision, when = verdict.decide(draws, release.thresholds, least_s=5.0, alone=alone)
    for run in range(6):
        assert judged_look_by_look(draws, run, release, 5.0, alone=alone) == (decision[run], when[run]), run
