"""The rollout command's report: what --json prints is what its readers (the pipeline, the bench) get back."""

from __future__ import annotations

import pytest

from infra.rollout.analysis import Judgement, State
from infra.rollout.exits import Exit
from infra.rollout.report import Report


def test_a_report_read_back_from_the_commands_last_line_is_the_report_printed() -> None:
    breached = "maxErrorRatio 2 % breached"
    verdict = Judgement(State.BREACH, "1.16.1", 40, 12, 812.04, breached, {"1.16.1": {500: 12}}, 9.96)
    printed = Report(
        stack="dev",
        old_image="app:1.14.2",
        new_image="app:1.16.1",
        outcome="aborted",
        exit=Exit.ABORTED,
        rolled_back=True,
        durations={"up": 12.04, "bake": 3.0},
        error="the analysis found 1.16.1: ...",
        restored="app:1.14.2",
        analysis=verdict.as_json(),
    )
    stdout = "rollout: a line a person reads\n" + printed.as_json() + "\n"
    read = Report.from_json(stdout)
    assert read.as_dict() == printed.as_dict()
    assert read.exit is Exit.ABORTED and read.analysis is not None and read.analysis["p99Ms"] == 812.0
    assert read.durations == {"up": 12.0, "bake": 3.0}, "printed to a tenth of a second"


@pytest.mark.parametrize("stdout", ["", "rollout: no report here\n", '{"outcome": "x"}\n'])
def test_output_without_a_report_is_an_error_the_reader_says(stdout: str) -> None:
    with pytest.raises(ValueError):
        Report.from_json(stdout)
