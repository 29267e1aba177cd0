"""make bench: what a rollout costs, against kubectl on the same cluster, in one run.

Runs on a cluster of its own (started by `make bench`) whose pods take a fixed time to get ready, so
the controllers' share of a rollout is known and Pulumi's overhead shows. Writes
bench/results/latest.{json,md} and bench/results/rollout-timeline.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import phases
from infra import strategy
from infra.identity import CONTAINER, DEPLOYMENT, DEPLOYMENT_REF
from infra.rollout.engine import interruptible_children
from infra.rollout.report import Report
from infra.settings import Settings
from rigs import offline
from rigs.project import copy_project
from rigs.timeline import RolloutWatch

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
# What each figure should reach (the speed issue's targets), printed beside it.
TARGETS = {"pulumi_up": 1.05, "rollout": 1.15, "preview_s": 1.0}
# The rollout command's own durations (its --json), in the order it runs them.
ROLLOUT_PHASES = ("config", "outputs", "look", "preview", "up")
_tags = iter(range(1, 10_000))


_STARTED = time.monotonic()


def progress(line: str) -> None:
    """One line of where the bench is, on stderr (the report goes to stdout and bench/results/)."""
    print(f"bench [{time.monotonic() - _STARTED:6.0f}s] {line}", file=sys.stderr, flush=True)


def next_tag() -> str:
    """A tag not used before in this run, so every deploy is a real rollout (kwok needs no real image)."""
    return f"1.25.{next(_tags)}"


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def timed(action: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "runs": len(samples),
    }


class Stack:
    """A bench stack of the real program, driven by the CLI as a user drives it."""

    def __init__(self, workdir: Path, name: str, namespace: str) -> None:
        backend = workdir / "state"
        backend.mkdir()
        self.project = copy_project(workdir / "project")
        self.name = name
        self.namespace = namespace
        self.env = {**os.environ, **offline.scratch_backend(backend, "bench")}
        self.pulumi("stack", "init", name, "--secrets-provider", "passphrase")

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["pulumi", *args, "--color", "never"], cwd=self.project, env=self.env)

    def up_args(self) -> list[str]:
        return ["up", "--yes", "--skip-preview", "--stack", self.name]

    def configure(self, **values: object) -> None:
        for key, value in values.items():
            self.pulumi("config", "set", f"rolling:{key}", str(value), "--stack", self.name)

    def up(self) -> None:
        self.pulumi(*self.up_args())

    def preview(self) -> None:
        self.pulumi("preview", "--stack", self.name)

    def rollout(self, tag: str) -> dict[str, float]:
        """Run the command; return the phases it reports (preview, up) and its whole time ("total")."""
        start = time.perf_counter()
        done = run(
            [sys.executable, "-m", "infra.rollout", "--stack", self.name, "--tag", tag, "--yes", "--json"],
            cwd=self.project,
            env=self.env,
        )
        phases = Report.from_json(done.stdout).durations
        return {**phases, "total": time.perf_counter() - start}

    def destroy(self) -> None:
        self.pulumi("destroy", "--yes", "--stack", self.name)


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["kubectl", *args])


def clone_deployment(source_namespace: str, namespace: str) -> Path:
    """The same Deployment, applied by kubectl in another namespace: the seed's way, same spec."""
    live = json.loads(kubectl("get", "deployment", DEPLOYMENT, "-n", source_namespace, "-o", "json").stdout)
    metadata = {
        "name": DEPLOYMENT,
        "namespace": namespace,
        "labels": live["metadata"].get("labels", {}),
    }
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": live["spec"]}
    kubectl("create", "namespace", namespace)
    path = Path(tempfile.mkstemp(suffix=".json")[1])
    path.write_text(json.dumps(manifest))
    kubectl("apply", "-f", str(path))
    kubectl("rollout", "status", DEPLOYMENT_REF, "-n", namespace, "--timeout=300s")
    return path


def kubectl_deploy(namespace: str, tag: str) -> None:
    kubectl("set", "image", DEPLOYMENT_REF, f"{CONTAINER}=nginx:{tag}", "-n", namespace)
    kubectl("rollout", "status", DEPLOYMENT_REF, "-n", namespace, "--timeout=300s")


def kubectl_diff(manifest: Path, tag: str) -> None:
    document = json.loads(manifest.read_text())
    document["spec"]["template"]["spec"]["containers"][0]["image"] = f"nginx:{tag}"
    changed = manifest.with_suffix(".diff.json")
    changed.write_text(json.dumps(document))
    done = subprocess.run(["kubectl", "diff", "-f", str(changed)], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):  # 1 means "differences found"
        raise RuntimeError(done.stderr)


# Replicas of the scale runs. The bench cluster's fake nodes (ROLLING_NODES in the Makefile) must hold
# the largest with its surge, for the program's Deployment and kubectl's copy at once: 2 x (100 + 25) pods
# at 250m is 62.5 CPUs, so it runs eight 8-CPU nodes (on three, the resize stalled at the scheduler).
SCALE = (3, 30, 100)
# A tag kwok's stages fail to pull (cluster/stages.yaml): the registry says it has no such image.
BROKEN_SUFFIX = "-broken"


def failing_up(stack: Stack, runs: int) -> dict[str, Any]:
    """Plain `pulumi up` to a tag the registry does not have: seconds until it fails with the cause, where
    it used to wait out the progress deadline and a margin. The stack goes back to a good tag after each."""
    seconds = []
    for _ in range(min(runs, 3)):
        stack.configure(imageTag=next_tag() + BROKEN_SUFFIX)
        start = time.perf_counter()
        try:
            stack.up()
        except RuntimeError as err:
            seconds.append(time.perf_counter() - start)
            if "the registry has no" not in str(err):
                raise RuntimeError(f"`pulumi up` failed without naming the missing image:\n{err}") from None
        else:
            raise RuntimeError("`pulumi up` succeeded with a tag the registry does not have")
        stack.configure(imageTag=next_tag())
        stack.up()
    settings = Settings.from_values({"target": "local"})
    return {
        "pulumi_up_s": summary(seconds),
        "pull_fails_after_s": int(os.environ["ROLLING_POD_READY_MS"]) / 1000,
        "deadline_s": settings.progress_deadline_seconds,
        "deadline_and_margin_s": settings.await_timeout_seconds,
    }


def floor_seconds(steps: int, delays: dict[str, float]) -> float:
    """What the controllers cannot beat: each step waits for a new pod to be created and get ready.

    minReadySeconds adds up to its value per step too, but the controller compares it against
    whole-second timestamps, so part of it can vanish; it is left out of the floor."""
    return round(steps * (delays["create"] + delays["ready"]), 2)


def evaluation() -> dict[str, Any]:
    """Program evaluation under mocks, per target: import time and build time, and what the local one imports."""
    code = (
        "import time, sys, json\n"
        "t0 = time.perf_counter()\n"
        "from rigs.offline import run_program\n"
        "t1 = time.perf_counter()\n"
        "run_program({'target': sys.argv[1], 'imageTag': '1.14.2'})\n"
        "t2 = time.perf_counter()\n"
        "aws = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi_aws', 'pulumi_eks'))\n"
        "print(json.dumps({'import': t1 - t0, 'build': t2 - t1, 'aws_modules': len(aws)}))\n"
    )
    found: dict[str, Any] = {}
    for target in ("local", "eks"):
        runs = [json.loads(run([sys.executable, "-c", code, target], cwd=ROOT).stdout) for _ in range(3)]
        found[target] = {
            "import_s": round(statistics.median(r["import"] for r in runs), 3),
            "build_s": round(statistics.median(r["build"] for r in runs), 3),
            "total_s": round(statistics.median(r["import"] + r["build"] for r in runs), 3),
            "aws_modules_loaded": runs[0]["aws_modules"],
        }
    trace = run([sys.executable, "-X", "importtime", "-c", "import infra.stack, infra.local"], cwd=ROOT).stderr
    imports = []
    for line in trace.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        # The program's modules and what they import directly: where the time goes.
        if match and len(match.group(2)) <= 2 and match.group(3).split(".")[0] not in ("site", "encodings"):
            imports.append((int(match.group(1)), match.group(3)))
    found["local_top_imports_ms"] = [
        {"module": name, "ms": round(us / 1000, 1)} for us, name in sorted(imports, reverse=True)[:8]
    ]
    return found


def toolchain() -> dict[str, Any]:
    bin_dir = Path(run([str(ROOT / "tools" / "toolchain.sh"), "--bin"]).stdout.strip())
    pieces: dict[str, int | None] = {}
    for done in sorted((Path(os.environ["ROLLING_TOOLCHAIN_CACHE"]) / "pieces").glob("*/.done")):
        piece = done.parent
        # Only the pieces the current pins use (the bin folder links their files).
        if not any(
            (bin_dir / f.name).exists() and (bin_dir / f.name).samefile(f)
            for f in piece.iterdir()
            if f.is_file() and not f.name.startswith(".")
        ):
            continue
        seconds = piece / ".build-seconds"
        pieces[piece.name.rsplit("-", 1)[0]] = int(seconds.read_text()) if seconds.exists() else None
    warm = [timed(run, [str(ROOT / "tools" / "toolchain.sh")]) for _ in range(3)]
    return {"cold_build_s_by_piece": pieces, "warm_check_s": summary(warm)}


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    revisions = list(dict.fromkeys(r for s in samples for r in s["ready_by_revision"]))
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for label, revision in zip(("old ReplicaSet", "new ReplicaSet"), revisions, strict=False):
        ax.step(
            [s["t"] for s in samples],
            [s["ready_by_revision"].get(revision, 0) for s in samples],
            where="post",
            label=label,
        )
    ax.step([s["t"] for s in samples], [s["ready"] for s in samples], where="post", label="ready in all", ls="--")
    ax.set_xlabel("seconds since `pulumi up` started")
    ax.set_ylabel("ready pods")
    ax.set_title("A tag change rolled by pulumi up: 3 replicas, maxSurge 1, maxUnavailable 0")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def split_table(deploy: dict[str, Any]) -> list[str]:
    if "split" not in deploy:
        return []
    lines = [
        "",
        "Where each path's time goes (medians, s), split at what the cluster saw: before the Deployment's pod "
        "template changes, the rollout until it is complete (`kubectl rollout status`'s test), and after:",
        "",
        "| path | before | rollout | after | own time (before + after) |",
        "|---|---|---|---|---|",
    ]
    for path in ("kubectl", "pulumi_up", "rollout"):
        parts = deploy["split"][path]
        own = parts["before"]["median"] + parts["after"]["median"]
        lines.append(
            f"| {path.replace('_', ' ')} | {parts['before']['median']} | {parts['rollout']['median']} | "
            f"{parts['after']['median']} | {own:.2f} |"
        )
    return lines


def stretch_table(title: str, logged: dict[str, Any]) -> list[str]:
    lines = [f"{title} ({logged['total_s']:.2f} s in all; the log adds a little):", "", "| stretch | s |", "|---|---|"]
    for name, seconds in logged["stretches"].items():
        lines.append(f"| {phases.STRETCHES.get(name, name)} | {seconds:.3f} |")
    return lines


def failure_lines(failure: dict[str, Any] | None) -> list[str]:
    if not failure:
        return []
    up = failure["pulumi_up_s"]
    return [
        "## A release that cannot start: plain `pulumi up` to its error",
        "",
        f"A tag the registry does not have (the fake nodes' pull fails {failure.get('pull_fails_after_s', 5.0)} s "
        f"after the pod is created): `pulumi up` failed naming the missing image after {up['median']} s "
        f"(median of {up['runs']}; min {up['min']}, max {up['max']}). Before the program waited for its own "
        f"rollout it waited out the progress deadline and its margin, {failure['deadline_and_margin_s']} s "
        f"(71.6 s measured); `kubectl rollout status` fails at the deadline, {failure['deadline_s']} s.",
        "",
    ]


def scale_lines(scale: list[dict[str, Any]]) -> list[str]:
    runs = scale[0]["runs"] if scale else 0
    lines = [
        f"## Scale (maxSurge 25 %, {runs} tag changes each way at each size, alternating; medians)",
        "",
        "| replicas | kubectl s | pulumi up s | pulumi - kubectl s | kubectl's own s | pulumi up: before s | "
        "pulumi up: after s | pulumi up's own s | floor s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in scale:
        kubectl_s, up_s = row["kubectl_s"]["median"], row["pulumi_up_s"]["median"]
        before, after = row["pulumi_up_before_s"]["median"], row["pulumi_up_after_s"]["median"]
        kubectl_own = row["kubectl_before_s"]["median"] + row["kubectl_after_s"]["median"]
        lines.append(
            f"| {row['replicas']} | {kubectl_s} | {up_s} | {up_s - kubectl_s:.1f} | {kubectl_own:.2f} | "
            f"{before} | {after} | {before + after:.2f} | {row['floor_s']} |"
        )
    lines += [
        "",
        "Own time: before the Deployment's template changes plus after its rollout completes; the rollout "
        "itself varies with the controllers. One more `pulumi up` at each size ran with the engine's log on; "
        "its own stretches (s), by size:",
        "",
        "| stretch | " + " | ".join(str(row["replicas"]) for row in scale) + " |",
        "|---|" + "---|" * len(scale),
    ]
    names = list(dict.fromkeys(name for row in scale for name in row["stretches"] if name != "rollout"))
    for name in names:
        cells = " | ".join(f"{row['stretches'].get(name, 0.0):.3f}" for row in scale)
        lines.append(f"| {phases.STRETCHES.get(name, name)} | {cells} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    deploy = report["deploy"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {report['date']} on {report['machine']}; pods get ready {report['delays']['ready']} s after "
        f"creation ({report['delays']['create']} s to create), minReadySeconds {report['min_ready_seconds']}.",
        "",
        f"## Tag change to rollout complete (3 replicas, maxSurge 1, maxUnavailable 0, {deploy['kubectl']['runs']} "
        "runs each, alternating)",
        "",
        "| path | median s | min s | max s | vs kubectl | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, target in (
        ("kubectl", "`kubectl set image` + `kubectl rollout status`", ""),
        ("pulumi_up", "`pulumi up --yes --skip-preview`", f"≤ {TARGETS['pulumi_up']:.2f}x"),
        ("rollout", "`rollout --yes` (preview, up, checks)", f"≤ {TARGETS['rollout']:.2f}x"),
    ):
        d = deploy[key]
        ratio = d["median"] / deploy["kubectl"]["median"]
        lines.append(f"| {label} | {d['median']} | {d['min']} | {d['max']} | {ratio:.2f}x | {target} |")
    lines += split_table(deploy)
    rollout_phases = deploy.get("rollout_phases")
    if rollout_phases:
        lines += [
            "",
            "`rollout`'s own durations (medians): "
            + ", ".join(
                f"{name} {rollout_phases[name]['median']} s"
                for name in (*ROLLOUT_PHASES, "other")
                if name in rollout_phases
            )
            + " (config: reading the stack's config; outputs: the rest of reading the stack's outputs, which "
            "starts beside the config; look: reading the Deployment from the cluster; other: Python starting, "
            "the preview's config file, the plan printed, the live view stopped). Its preview and its up are each "
            "a whole engine run: the program, the provider and the engine start twice.",
        ]
    if "logged_up" in deploy:
        lines += ["", *stretch_table("One `pulumi up` with the engine's log on", deploy["logged_up"])]
    lines += [
        "",
        f"The controllers' floor is {deploy['floor_s']} s (steps x (create + ready)). "
        f"Overhead over that floor: kubectl {deploy['kubectl']['median'] - deploy['floor_s']:.1f} s, "
        f"pulumi up {deploy['pulumi_up']['median'] - deploy['floor_s']:.1f} s, "
        f"rollout {deploy['rollout']['median'] - deploy['floor_s']:.1f} s. "
        f"Pulumi's overhead over the kubectl path: {deploy['pulumi_overhead_pct']:.1f} % "
        f"(target ≤ {100 * (TARGETS['pulumi_up'] - 1):.0f} %).",
        "",
        "## Preview of a tag change",
        "",
        "| command | median s | min s | max s |",
        "|---|---|---|---|",
        f"| `pulumi preview` | {report['preview']['pulumi']['median']} | {report['preview']['pulumi']['min']} | "
        f"{report['preview']['pulumi']['max']} |",
        f"| `kubectl diff` | {report['preview']['kubectl']['median']} | {report['preview']['kubectl']['min']} | "
        f"{report['preview']['kubectl']['max']} |",
        "",
        f"Target: `pulumi preview` ≤ {TARGETS['preview_s']} s; where it goes, below.",
        "",
        *(
            stretch_table("One `pulumi preview` with the engine's log on", report["preview"]["logged"])
            if "logged" in report["preview"]
            else []
        ),
        "",
        *failure_lines(report.get("failure")),
        *scale_lines(report["scale"]),
    ]
    ev = report["evaluation"]
    lines += [
        "",
        "## Program evaluation under mocks",
        "",
        "| target | import s | build s | total s | AWS SDK modules loaded |",
        "|---|---|---|---|---|",
    ]
    for target in ("local", "eks"):
        e = ev[target]
        lines.append(f"| {target} | {e['import_s']} | {e['build_s']} | {e['total_s']} | {e['aws_modules_loaded']} |")
    lines += [
        "",
        "Top imports of the local target (cumulative ms): "
        + ", ".join(f"{i['module']} {i['ms']}" for i in ev["local_top_imports_ms"])
        + ".",
    ]
    tc = report["toolchain"]
    lines += [
        "",
        "## Toolchain",
        "",
        "| piece | cold build s (when built here) |",
        "|---|---|",
    ]
    lines += [
        f"| {piece} | {'not recorded (built before build times were kept)' if seconds is None else seconds} |"
        for piece, seconds in tc["cold_build_s_by_piece"].items()
    ]
    lines += [
        "",
        "Pieces built before build times were kept have no figure here; the README gives a full cold build's.",
        "",
        f"Warm `tools/toolchain.sh` (everything built): median {tc['warm_check_s']['median']} s. "
        f"Control plane start: {report['cluster_start_s']} s.",
        "",
        "![rollout timeline](rollout-timeline.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cluster-start-s", type=float, default=0.0)
    parser.add_argument("--scale-runs", type=int, default=3, help="tag changes timed at each size, per tool")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite latest.md and the chart from latest.json, measuring only evaluation and toolchain again",
    )
    args = parser.parse_args()
    if args.render_only:
        saved: dict[str, Any] = json.loads((RESULTS / "latest.json").read_text())
        saved["deploy"]["floor_s"] = floor_seconds(3, saved["delays"])
        for row in saved["scale"]:
            row["floor_s"] = floor_seconds(strategy.plan(row["replicas"], "25%", 0).steps, saved["delays"])
        saved["evaluation"] = evaluation()
        saved["toolchain"] = toolchain()
        write(saved)
        return 0
    delays = {
        "create": int(os.environ["ROLLING_POD_CREATE_MS"]) / 1000,
        "ready": int(os.environ["ROLLING_POD_READY_MS"]) / 1000,
    }
    min_ready = 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "delays": delays,
        "min_ready_seconds": min_ready,
        "cluster_start_s": args.cluster_start_s,
    }
    with tempfile.TemporaryDirectory() as scratch:
        progress("deploying the program's stack and the same Deployment by kubectl")
        stack = Stack(Path(scratch), "bench", "bench-pulumi")
        # kwok's fake pods serve nothing: the rollout command is timed on readiness alone, as kubectl is.
        stack.configure(
            target="local", namespace="bench-pulumi", imageTag="1.14.2", minReadySeconds=min_ready, analysis="false"
        )
        stack.up()
        manifest = clone_deployment("bench-pulumi", "bench-kubectl")
        try:
            samples: dict[str, list[float]] = {"kubectl": [], "pulumi_up": [], "rollout": []}
            # Each path's time split at what the cluster saw (bench.phases): before, rollout, after.
            split: dict[str, dict[str, list[float]]] = {k: {} for k in samples}
            timeline: list[dict[str, Any]] = []
            rollout_phases: dict[str, list[float]] = {}

            def record(path: str, seconds: float, times: Any) -> None:
                samples[path].append(seconds)
                for name in ("before", "rollout", "after"):
                    split[path].setdefault(name, []).append(getattr(times, name))

            for i in range(args.runs):
                progress(f"tag change {i + 1} of {args.runs}: kubectl, pulumi up, rollout")
                tag = next_tag()
                record(
                    "kubectl",
                    *phases.timed_phases("bench-kubectl", functools.partial(kubectl_deploy, "bench-kubectl", tag)),
                )
                stack.configure(imageTag=next_tag())
                with RolloutWatch("bench-pulumi") as watcher:
                    record("pulumi_up", *phases.timed_phases("bench-pulumi", stack.up))
                if i == 0:
                    timeline = [s.__dict__ for s in watcher.samples]
                durations: dict[str, float] = {}
                tag = next_tag()

                def ship(t: str = tag, into: dict[str, float] = durations) -> None:
                    into.update(stack.rollout(t))

                record("rollout", *phases.timed_phases("bench-pulumi", ship))
                # One after the other: the config; the rest of the stack's outputs (read beside it); the
                # look at the cluster; the preview; the update.
                for phase in ROLLOUT_PHASES:
                    rollout_phases.setdefault(phase, []).append(durations.get(phase, 0.0))
                # What the command does besides: start Python, write the preview's config, print the plan,
                # stop the live view, exit.
                rollout_phases.setdefault("other", []).append(
                    durations["total"] - sum(durations.get(phase, 0.0) for phase in ROLLOUT_PHASES)
                )
            deploy: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
            deploy["split"] = {path: {k: summary(v) for k, v in parts.items()} for path, parts in split.items()}
            # One more `pulumi up` with the engine's log on, to see inside its before and after.
            stack.configure(imageTag=next_tag())
            deploy["logged_up"] = phases.logged(stack.pulumi, "bench-pulumi", *stack.up_args())
            deploy["floor_s"] = floor_seconds(3, delays)
            deploy["pulumi_overhead_pct"] = round(
                100 * (deploy["pulumi_up"]["median"] / deploy["kubectl"]["median"] - 1), 1
            )
            deploy["rollout_phases"] = {k: summary(v) for k, v in rollout_phases.items()}
            report["deploy"] = deploy

            progress(f"previews: pulumi preview and kubectl diff, {args.runs} each")
            previews: dict[str, list[float]] = {"pulumi": [], "kubectl": []}
            for _ in range(args.runs):
                tag = next_tag()
                stack.configure(imageTag=tag)
                previews["pulumi"].append(timed(stack.preview))
                previews["kubectl"].append(timed(kubectl_diff, manifest, tag))
            report["preview"] = {k: summary(v) for k, v in previews.items()}
            # Where a preview's time goes: the CLI starting (pulumi version), the program (below, under
            # mocks), and the rest: the engine, the language host and the provider starting, the diff.
            report["preview"]["cli_start"] = summary([timed(stack.pulumi, "version") for _ in range(args.runs)])
            stack.configure(imageTag=next_tag())
            report["preview"]["logged"] = phases.logged(stack.pulumi, None, "preview", "--stack", stack.name)

            report["failure"] = failing_up(stack, args.runs)

            scale = []
            surge = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
            for replicas in SCALE:
                progress(f"scale: {args.scale_runs} tag changes at {replicas} replicas each, kubectl and pulumi up")
                # Resize both first (untimed), then time tag changes on each, alternating.
                stack.configure(replicas=replicas, maxSurge="25%", imageTag=next_tag())
                stack.up()
                kubectl("scale", DEPLOYMENT_REF, f"--replicas={replicas}", "-n", "bench-kubectl")
                kubectl(
                    "patch",
                    DEPLOYMENT_REF,
                    "-n",
                    "bench-kubectl",
                    "-p",
                    json.dumps({"spec": {"strategy": surge}}),
                )
                kubectl_deploy("bench-kubectl", next_tag())
                sized: dict[str, list[float]] = {}
                for _ in range(args.scale_runs):
                    kubectl_seconds, kubectl_times = phases.timed_phases(
                        "bench-kubectl", functools.partial(kubectl_deploy, "bench-kubectl", next_tag())
                    )
                    stack.configure(imageTag=next_tag())
                    pulumi_seconds, pulumi_times = phases.timed_phases("bench-pulumi", stack.up)
                    for name, value in (
                        ("kubectl_s", kubectl_seconds),
                        ("kubectl_before_s", kubectl_times.before),
                        ("kubectl_after_s", kubectl_times.after),
                        ("pulumi_up_s", pulumi_seconds),
                        ("pulumi_up_before_s", pulumi_times.before),
                        ("pulumi_up_after_s", pulumi_times.after),
                    ):
                        sized.setdefault(name, []).append(value)
                # One more with the engine's log on: which stretch of its own time moves with the size.
                stack.configure(imageTag=next_tag())
                logged = phases.logged(stack.pulumi, "bench-pulumi", *stack.up_args())
                steps = strategy.plan(replicas, "25%", 0).steps
                scale.append(
                    {
                        "replicas": replicas,
                        "runs": args.scale_runs,
                        **{name: summary(values) for name, values in sized.items()},
                        "stretches": logged["stretches"],
                        "floor_s": floor_seconds(steps, delays),
                    }
                )
            report["scale"] = scale
        finally:
            stack.destroy()
            subprocess.run(
                ["kubectl", "delete", "namespace", "bench-kubectl", "--wait=false"], capture_output=True, check=False
            )

    report["timeline"] = timeline
    progress("the program under mocks and the toolchain's build times")
    report["evaluation"] = evaluation()
    report["toolchain"] = toolchain()
    write(report)
    return 0


def write(report: dict[str, Any]) -> None:
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    if report.get("timeline"):
        plot(report["timeline"], RESULTS / "rollout-timeline.png")
    (RESULTS / "latest.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    interruptible_children()  # else, started in the background, every engine run here waits 5 s more
    sys.exit(main())
