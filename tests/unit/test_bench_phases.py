"""The benchmark's split of a command's time, read from the engine's log and the Deployment's watch."""

from __future__ import annotations

import json
from typing import Any

from bench import phases


def line(t: str, msg: str) -> str:
    return json.dumps({"time": f"2026-11-26T20:17:{t}Z", "level": "INFO", "msg": msg})


# Lines as `pulumi up -v=7 --logtostderr` prints them (trimmed), with others in between.
LOG = "\n".join(
    [
        line("00.100000", "langhost[python].GetPluginInfo() executing"),
        line("00.300000", "*** Starting Update(preview=false) ***"),
        line("00.350000", "langhost[python].Run(pwd=/p,root=/p, program=/p, entryPoint=.,dryrun=false) executing"),
        "not a JSON line",
        line("00.750000", "ResourceMonitor.RegisterResource received: t=pulumi:pulumi:Stack, name=rolling-x"),
        line("00.900000", "Provider[0x8b0c5128140].GetPluginInfo() executing"),
        line(
            "01.100000",
            "Provider[0x8b0c5128140].Update(ns/nginx,urn:...$kubernetes:apps/v1:Deployment::nginx) executing",
        ),
        line("19.000000", "StepExecutor worker(-1): StepExecutor.waitForCompletion(): worker threads all exited"),
        line("19.020000", "Program exited with no error"),
        line("19.030000", "langhost[python].Run(pwd=/p,root=/p, program=/p, entryPoint=.,dryrun=false) success"),
    ]
)


class Watched:
    changed = 1795724221.2  # 20:17:01.2
    complete = 1795724238.9  # 20:17:18.9


def test_the_engines_log_marks_each_stretch_once() -> None:
    marks = phases.log_times(LOG)
    assert list(marks) == ["update", "program", "registering", "provider", "apply", "steps_done", "program_exited"]
    assert round(marks["program"] - marks["update"], 3) == 0.05  # the first Run line, not the second


def test_stretches_follow_in_time_and_add_up_to_the_whole() -> None:
    marks = phases.log_times(LOG)
    start, end = marks["update"] - 0.5, marks["program_exited"] + 0.08
    stretches: dict[str, Any] = phases.split(start, end, marks, Watched())  # type: ignore[arg-type]
    assert list(stretches) == [
        "cli",
        "update",
        "program",
        "registering",
        "provider",
        "apply",
        "rollout",
        "complete",
        "steps_done",
        "program_exited",
    ]
    assert stretches["program"] == 0.4
    assert stretches["rollout"] == 17.7
    assert round(sum(stretches.values()), 3) == round(end - start, 3)
    assert set(stretches) <= set(phases.STRETCHES)
