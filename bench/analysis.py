"""make bench, analysis: a release whose pods get ready but answer errors, shipped three ways on the real node.

1. `rollout --canary 1`: one pod of it beside the old ones, judged, then removed;
2. `rollout`: the analysis during the rollout and the bake, then the rollback;
3. `rollout` with `analysis: false`: readiness alone, as before: the release ships and stays.

Users' traffic beside it: RATE requests a second, a new connection each, never re-sent, and never held
back by slow answers (up to USERS_WAIT_S of them in flight at once). For each way:
how many bad responses users got, and the time from the first one to the old version answering every
request again (or to the end of the window, when it never does). And what the analysis costs a good
release: the same `rollout` of a healthy tag without analysis, with it (the bake), and with a canary.
Writes bench/results/analysis.{json,md} and bench/results/analysis.png.

LARGE, the same bad release on 9 replicas (maxSurge 25 %, maxUnavailable 50 %) with users at 120 requests
a second, with a canary and without: the damage must not grow with replicas or traffic. And once more
without a canary at minReadySeconds 1, which lets each step end before the analysis has judged it (the
rollout plan's note): what that costs. Writes bench/results/analysis-large.{json,md,png}.

Every shape's stack holds each step of a rolling update minReadySeconds JUDGED_WITHIN_S (3), what the
rollout plan asks of a stack with the analysis (infra/rollout/review.py).

SLOW, a release that answers every page correctly but in about 2 s (cluster/images.sh's slow kind), with a
canary and without: a bad response is then one slower than maxP99Ms (1 s) as well as a failed one. Writes
bench/results/analysis-slow.{json,md,png}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import RESULTS, Stack, progress
from infra.rollout.report import Report
from infra.rollout.review import JUDGED_WITHIN_S
from rigs import load

RATE = 60
OLD, GOOD = "1.0.0", "1.1.0"
# Ready, but every user gets a server error (cluster/images.sh's errors kind).
BAD = "1.1.0-errors"
# Users' traffic goes on this long after the command returns: a release that stays shows it.
AFTER_S = 10.0
# Users' requests are sent on time whatever the answers take, up to this long each: a slow release does not
# slow the users down (closed-loop clients would send fewer requests and hide part of its damage).
USERS_WAIT_S = 3
NAMESPACE = "bench-analysis"


@dataclass(frozen=True)
class Shape:
    """The stack and its users: replicas, the rolling update's surge and unavailability, users' rate."""

    stem: str
    replicas: int = 3
    settings: dict[str, str] = field(default_factory=dict)
    rate: int = RATE
    # The three ways and the costs of a healthy release; else the two ways with the analysis alone.
    whole: bool = True
    # The bad release: its tag and cluster/images.sh's kind; a response slower than ``slow_ms`` is bad too.
    bad: str = BAD
    kind: str = "errors"
    slow_ms: int | None = None
    # The ways beside the canary and the rollout: a name and the settings it changes for that way alone.
    extra: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def is_bad(self, response: load.Response) -> bool:
        return response.failed or (self.slow_ms is not None and response.latency_s * 1000 > self.slow_ms)


STANDARD = Shape("analysis")
# Nine pods of the default size (0.25 CPU) and their surge do not fit the node's two cores: smaller pods, the
# same server.
LARGE = Shape(
    "analysis-large",
    replicas=9,
    settings={"maxSurge": "25%", "maxUnavailable": "50%", "cpu": "125m", "memory": "128Mi"},
    rate=120,
    whole=False,
    extra=(("no canary, minReadySeconds 1", (("minReadySeconds", "1"),)),),
)
SLOW = Shape("analysis-slow", whole=False, bad="1.1.0-slow", kind="slow", slow_ms=1000)
SHAPES = {shape.stem: shape for shape in (STANDARD, LARGE, SLOW)}

# NOISY: healthy releases of a service that answers 0.5 % of its users 500 in every version (cluster/images.sh's
# flaky kind), RELEASES of them in a row, each judged: the analysis must ship every one (no false abort).
# Writes bench/results/analysis-noisy.{json,md}.
NOISY_STEM = "analysis-noisy"
NOISY = ("1.0.0-flaky", "1.1.0-flaky")
NOISY_KIND = "flaky"
RELEASES = 20


def rollout(stack: Stack, *args: str) -> tuple[int, Report, float]:
    """The rollout command on the stack: its exit code, its report and how long it took. The ways turn
    rolling:analysis on and off, which the Deployment's rolling/analysis annotation records: an update
    beyond the image, allowed here."""
    start = time.monotonic()
    command = [sys.executable, "-m", "infra.rollout", "--stack", stack.name, "--json", "--yes"]
    done = subprocess.run(
        [*command, "--allow-infra-changes", *args],
        cwd=stack.project,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.monotonic() - start
    try:
        result = Report.from_json(done.stdout)
    except ValueError:
        raise RuntimeError(f"rollout {' '.join(args)} printed no result: {done.stderr[-2000:]}") from None
    LAST_SAID[:] = [line for line in done.stderr.splitlines() if line.startswith("rollout: ")]
    return done.returncode, result, took


# The command's own account of its last run (its `rollout:` lines): what it did to the failing pods.
LAST_SAID: list[str] = []


def bad_release(stack: Stack, url: str, name: str, *args: str, shape: Shape = STANDARD) -> dict[str, Any]:
    """Ship the shape's bad release with users' traffic beside it; what users got, then back to OLD."""
    progress(f"a release that answers {shape.kind}: {name} ({shape.replicas} replicas, users at {shape.rate}/s)")
    out = RESULTS / "raw" / f"{shape.stem}-{name.replace(' ', '-')}.jsonl"
    with load.PlainLoad(
        url, shape.rate, 400, out, keepalive=False, timeout_s=5.0, connections=shape.rate * USERS_WAIT_S
    ) as users:
        time.sleep(2)
        start = time.time()
        code, result, took = rollout(stack, "--tag", shape.bad, *args)
        time.sleep(AFTER_S)
        end = time.time()
    # The release's damage: what failed from the moment the command started. A failure before it (the load's
    # first connection racing the node's route to a Service made a moment earlier) is said apart.
    bad = [r for r in users.responses if shape.is_bad(r) and r.t >= start]
    before = sum(1 for r in users.responses if shape.is_bad(r) and r.t < start)
    first = min((r.t for r in bad), default=None)
    last = max((r.t for r in bad), default=None)
    # Restored: the old version answered every request from the last bad one to the window's end.
    restored = last is not None and last < end - AFTER_S / 2
    row = {
        "name": name,
        "exit": code,
        "outcome": result.outcome,
        "command_s": round(took, 1),
        "bad_responses": len(bad),
        "requests": len(users.responses),
        "first_bad_to_restored_s": round(last - first, 1) if restored and first is not None and last else None,
        "bad_from_old_version": sum(r.version == OLD for r in bad),
        "bad_before_the_command": before,
        "mitigation": [line for line in LAST_SAID if "out of the Service" in line or "scaled to 0" in line],
        "mitigated_s": result.durations.get("failureToMitigated"),
        "analysis": result.analysis,
        "start": start,
        "responses": [(round(r.t - start, 3), "failed" if shape.is_bad(r) else r.version) for r in users.responses],
    }
    if code == 0:  # shipped and stayed: put the old version back for the next way
        stack.configure(analysis="false")
        rollout(stack, "--tag", OLD)
        stack.configure(analysis="true")
    return row


def costs(stack: Stack) -> list[dict[str, Any]]:
    """A healthy release, OLD to GOOD and back, three ways: the command's time for each."""
    rows = []
    for name, analysis, args in (
        ("no analysis", "false", ()),
        ("analysis (rollout, bake)", "true", ()),
        ("canary 1, analysis", "true", ("--canary", "1")),
    ):
        progress(f"a healthy release: {name}")
        stack.configure(analysis=analysis)
        code, result, took = rollout(stack, "--tag", GOOD, *args)
        if code != 0:
            raise RuntimeError(f"{name}: rollout exited {code}: {result.error}")
        rows.append({"name": name, "command_s": round(took, 1), "durations": result.durations})
        stack.configure(analysis="false")
        rollout(stack, "--tag", OLD)
    stack.configure(analysis="true")
    return rows


def measure(workdir: Path, repository: str, url_of: Callable[[str], str], shape: Shape = STANDARD) -> dict[str, Any]:
    """The ways (and the costs) of ``shape``, on a stack of the app from ``repository``; ``url_of`` gives the
    users' url of a namespace's Service."""
    stack = Stack(workdir, "analysis", NAMESPACE)
    configured: dict[str, object] = {
        "target": "local",
        "namespace": NAMESPACE,
        "imageRepository": repository,
        "imageTag": OLD,
        "minReadySeconds": JUDGED_WITHIN_S,
        "replicas": shape.replicas,
        **shape.settings,
    }
    stack.configure(**configured)
    stack.up()
    try:
        url = url_of(NAMESPACE)
        ways = [
            bad_release(stack, url, "canary 1", "--canary", "1", shape=shape),
            bad_release(stack, url, "no canary", shape=shape),
        ]
        for name, changes in shape.extra:
            stack.configure(**dict(changes))
            ways.append(bad_release(stack, url, name, shape=shape))
            stack.configure(**{key: configured[key] for key, _ in changes})
        if not shape.whole:
            return {"rate": shape.rate, "replicas": shape.replicas, "kind": shape.kind, "ways": ways, "costs": []}
        stack.configure(analysis="false")
        ways.append(bad_release(stack, url, "no analysis", shape=shape))
        stack.configure(analysis="true")
        return {"rate": shape.rate, "replicas": shape.replicas, "ways": ways, "costs": costs(stack)}
    finally:
        stack.destroy()


def noisy(
    workdir: Path,
    repository: str,
    url_of: Callable[[str], str],
    *,
    versions: tuple[str, str] = NOISY,
    what: str = "0.5 % errors",
) -> dict[str, Any]:
    """RELEASES judged releases in a row between two ``versions`` (NOISY's by default) whose every answer
    fails as ``what`` says, users' traffic beside them all: each outcome, what the analysis counted, and the
    error ratio users met from each version."""
    stack = Stack(workdir, "analysis", NAMESPACE)
    stack.configure(
        target="local",
        namespace=NAMESPACE,
        imageRepository=repository,
        imageTag=versions[0],
        minReadySeconds=JUDGED_WITHIN_S,
        replicas=STANDARD.replicas,
    )
    stack.up()
    releases = []
    try:
        url = url_of(NAMESPACE)
        out = RESULTS / "raw" / f"{NOISY_STEM if versions == NOISY else versions[0]}.jsonl"
        with load.PlainLoad(
            url,
            RATE,
            RELEASES * 60,
            out,
            keepalive=False,
            connections=RATE * USERS_WAIT_S,
        ) as users:
            time.sleep(2)
            for number in range(RELEASES):
                tag = versions[(number + 1) % 2]
                progress(f"a healthy release answering {what}, {number + 1} of {RELEASES}: {tag}")
                code, result, took = rollout(stack, "--tag", tag)
                releases.append(
                    {
                        "tag": tag,
                        "exit": code,
                        "outcome": result.outcome,
                        "command_s": round(took, 1),
                        "analysis": result.analysis,
                    }
                )
        by_version: dict[str, list[int]] = {}
        for r in users.responses:
            counted = by_version.setdefault(r.version or "-", [0, 0])
            counted[0] += 1
            counted[1] += r.failed
    finally:
        stack.destroy()
    return {
        "rate": RATE,
        "replicas": STANDARD.replicas,
        "versions": list(versions),
        "releases": releases,
        "shipped": sum(r["exit"] == 0 for r in releases),
        "users": {v: {"requests": n, "failed": bad} for v, (n, bad) in sorted(by_version.items())},
    }


def noisy_markdown(found: dict[str, Any], what: str = "0.5 % errors") -> str:
    judged = [r["analysis"] or {} for r in found["releases"]]
    versions = found.get("versions", NOISY)
    requests = [j.get("requests", 0) for j in judged]
    errors = [j.get("errors", 0) for j in judged]
    users = ", ".join(
        f"{v}: {c['failed']} of {c['requests']} ({c['failed'] / c['requests']:.2%})"
        for v, c in found["users"].items()
        if v in versions and c["requests"]
    )
    return (
        "\n".join(
            [
                f"# Healthy releases that answer {what}, old and new, {found['replicas']} replicas, users at "
                f"{found['rate']} requests a second",
                "",
                f"{found['shipped']} of {len(found['releases'])} shipped; each judged on {min(requests)} to "
                f"{max(requests)} "
                f"responses of the new version, {min(errors)} to {max(errors)} of them errors; users met {users}.",
            ]
        )
        + "\n"
    )


def write_noisy(found: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{NOISY_STEM}.md").write_text(noisy_markdown(found))
    (RESULTS / f"{NOISY_STEM}.json").write_text(json.dumps(found, indent=1))


def plot(found: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = found["ways"]
    fig, axes = plt.subplots(len(ways), 1, figsize=(10, 2.4 * len(ways)), sharex=True)
    colours = {OLD: "tab:blue", "failed": "tab:red"}
    for ax, way in zip(axes, ways, strict=True):
        for version, colour in colours.items():
            points = [t for t, v in way["responses"] if v == version]
            ax.scatter(points, [version] * len(points), s=4, c=colour)
        other = [(t, v) for t, v in way["responses"] if v not in colours]
        ax.scatter([t for t, _ in other], [v for _, v in other], s=4, c="tab:green")
        ax.set_title(f"{way['name']}: {way['bad_responses']} bad of {way['requests']}", fontsize=9)
    axes[-1].set_xlabel("seconds since the command started")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(found: dict[str, Any]) -> str:
    answers = "slowly (a bad response: failed, or slower than 1 s)" if found.get("kind") == "slow" else "errors"
    lines = [
        f"# A release that answers {answers}, {found.get('replicas', 3)} replicas, users at {found['rate']} "
        "requests a second (new connections)",
        "",
        "| way | outcome | bad responses users got | first bad to old version everywhere | command |",
        "|---|---|---|---|---|",
    ]
    for w in found["ways"]:
        restored = "never (it stays)" if w["first_bad_to_restored_s"] is None else f"{w['first_bad_to_restored_s']} s"
        lines.append(
            f"| {w['name']} | {w['outcome']} (exit {w['exit']}) | {w['bad_responses']} of {w['requests']} | "
            f"{restored} | {w['command_s']} s |"
        )
    if found["costs"]:
        lines += ["", "# What it costs a healthy release", "", "| way | command |", "|---|---|"]
        lines += [f"| {c['name']} | {c['command_s']} s |" for c in found["costs"]]
    return "\n".join(lines) + "\n"


def write(found: dict[str, Any], shape: Shape = STANDARD) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(found, RESULTS / f"{shape.stem}.png")
    (RESULTS / f"{shape.stem}.md").write_text(markdown(found))
    slim = {**found, "ways": [{k: v for k, v in w.items() if k != "responses"} for w in found["ways"]]}
    (RESULTS / f"{shape.stem}.json").write_text(json.dumps(slim, indent=1))
