"""Where a command's time goes: split at what the cluster saw, and inside the engine by its own log.

Every path is timed with the Deployment watched (rigs.timeline.DeploymentPhases): the time
before its pod template changes and after its rollout completes is the tool's own; the time between
is the controllers', the same whichever tool asked. One extra `pulumi up` and `pulumi preview` run
with the engine's log on (`-v=7 --logtostderr`, JSON lines with wall-clock times) to split the
engine's part further; the log costs a little, so those runs are reported as themselves.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from infra.identity import DEPLOYMENT
from rigs.timeline import DeploymentPhases, PhaseTimes

# The engine's log lines that start each stretch of an update or a preview, in order.
MARKERS = {
    "update": re.compile(r"\*\*\* Starting Update\("),
    "program": re.compile(r"^langhost\[python\]\.Run\(.*executing"),
    "registering": re.compile(r"RegisterResource received: t=pulumi:pulumi:Stack"),
    "provider": re.compile(r"^Provider\[[^\]]+\]\.GetPluginInfo\(\) executing"),
    "apply": re.compile(r"^Provider\[[^\]]+\]\.Update\(.*Deployment.*executing"),
    "steps_done": re.compile(r"worker threads all exited"),
    "program_exited": re.compile(r"^Program exited"),
}

# What each stretch is, from the marker that starts it to the next one present.
STRETCHES = {
    "cli": "the CLI: reading the project, the stack and its secrets",
    "update": "the engine starting the language host",
    "program": "Python starting: the interpreter, the Pulumi SDK and the program's imports",
    "registering": "the program registering resources, up to the provider's start",
    "provider": "the Kubernetes provider: configure, checks and diffs, up to the Deployment's update",
    "apply": "the Deployment's update request (a dry run in a preview), until the cluster has the new template",
    "rollout": "the controllers rolling the pods (the same for every tool)",
    "complete": "after the rollout completes: the program's wait sees it (a half-second poll), the engine "
    "records the step",
    "steps_done": "the program's process ending after the last step",
    "program_exited": "the CLI writing the state and exiting",
}


def timed_phases(namespace: str, action: Callable[[], object]) -> tuple[float, PhaseTimes]:
    """Run ``action`` (which changes the Deployment and waits for its rollout) with the Deployment watched."""
    with DeploymentPhases(namespace, DEPLOYMENT) as watched:
        start = time.time()
        action()
        end = time.time()
    return end - start, watched.phases(start, end)


def log_times(stderr: str) -> dict[str, float]:
    """The wall-clock time of the first line matching each marker in the engine's JSON log."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = str(record.get("msg", ""))
        for name, pattern in MARKERS.items():
            if name not in found and pattern.search(message):
                found[name] = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
    return found


def split(start: float, end: float, marks: dict[str, float], watched: DeploymentPhases | None) -> dict[str, float]:
    """Seconds in each stretch of one logged command, in order (``STRETCHES``), from ``start`` to ``end``."""
    points = dict(marks)
    if watched is not None and watched.changed is not None and watched.complete is not None:
        points["rollout"] = watched.changed
        points["complete"] = watched.complete
    ordered = [("cli", start), *sorted(((k, v) for k, v in points.items()), key=lambda kv: kv[1])]
    stretches: dict[str, float] = {}
    for (name, at), (_, following) in zip(ordered, [*ordered[1:], ("end", end)], strict=True):
        stretches[name] = round(following - at, 3)
    return stretches


def logged(run: Callable[..., Any], namespace: str | None, *args: str) -> dict[str, Any]:
    """One `pulumi` command with the engine's log on; with ``namespace``, the Deployment watched too."""
    flags = ["-v=7", "--logtostderr"]
    if namespace is None:
        start = time.time()
        done = run(*args, *flags)
        end = time.time()
        return {"total_s": round(end - start, 3), "stretches": split(start, end, log_times(done.stderr), None)}
    with DeploymentPhases(namespace, DEPLOYMENT) as watched:
        start = time.time()
        done = run(*args, *flags)
        end = time.time()
    return {"total_s": round(end - start, 3), "stretches": split(start, end, log_times(done.stderr), watched)}
