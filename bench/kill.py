"""make bench-kill: the kill matrix. A run of `rollout` killed with SIGKILL (its whole process group, as a CI
runner is lost) at each phase of a release, RUNS times each, on the real node, with users sending RATE requests
a second that are never re-sent; then the next `rollout` as the re-run of the pipeline would run it.

Phases (each reached as the cluster shows it, then killed at once):
- preview: the run's watchdog watches and no stage has started (nothing changed yet);
- canary up: the canary's Deployment exists, its pod not ready (the canary's `up` holds the stack's lock);
- canary judged: the canary's pod ready and under judgement for 2 s;
- rollout: the Deployment's template is the new one, not every pod of it ready;
- bake: every pod is the new version, judged for 2 s;
- rollback: a release that gets ready but answers every user 500 (cluster/images.sh's errors kind), aborted,
  and its rollback through Pulumi applied (the Deployment carries its cause);
- canary interrupted: as canary judged, but SIGINT (Ctrl-C, a CI job cancelled) instead of SIGKILL: the run
  ends alive and hands its canary to the watchdog, which takes it away at once, not after watchdogSeconds;
and the same canary-up kill of that bad release: nobody judges it once the run is lost, so its damage is
bounded by the watchdog alone.

For each run: the stage undone in the cluster (the canary's pods gone, or the old version back on every
replica) and how long after the kill; what users got (failed responses, and the last bad one after the kill);
the next run's outcome, how soon it started (its own watchdog's Job created, from its launch) and whether it
needed a person (`pulumi cancel`: never run here). Writes bench/results/kill.{json,md}. Needs a cluster with a
real node (KUBECONFIG, ROLLING_CLUSTER).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.run import RESULTS, ROOT, Stack, progress, run
from infra.identity import CANARY_DEPLOYMENT, DEPLOYMENT, WATCHDOG
from infra.kube import access, watchdog
from infra.kube.lease import lease_name
from infra.release import CHANGE_CAUSE
from rigs import load, node

RATE = 40
RUNS = 5
LEASE_S = 10
OLD, NEW, BAD = "1.0.0", "1.1.0", "1.1.0-errors"
REPOSITORY = "localhost:5000/rolling-app"
NAMESPACE = "bench-kill"
# The judgement a kill lands in (long enough to be in it), and the re-run's (short: not what is measured).
LONG = {"canarySeconds": 60, "bakeSeconds": 60}
QUICK = {"canarySeconds": 3, "bakeSeconds": 3}
# How long the cluster gets to undo a stage, and the next run to finish, at most (bounded loops).
UNDONE_WITHIN_S, NEXT_WITHIN_S = 90.0, 300.0


class Cluster:
    def __init__(self) -> None:
        api = access.api_client(os.environ["KUBECONFIG"])
        self.apps, self.core, self.batch = client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    def pods(self) -> dict[str, tuple[int, int]]:
        """Image -> (pods not being deleted, of them ready)."""
        found: dict[str, tuple[int, int]] = {}
        for pod in self.core.list_namespaced_pod(NAMESPACE, label_selector="app in (nginx, nginx-canary)").items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            image = pod.spec.containers[0].image.rsplit(":", 1)[-1]
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
            have, up = found.get(image, (0, 0))
            found[image] = (have + 1, up + int(ready))
        return found

    def canary(self) -> bool:
        names = [d.metadata.name for d in self.apps.list_namespaced_deployment(NAMESPACE).items]
        return CANARY_DEPLOYMENT in names

    def template(self) -> str:
        deployment = self.apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
        return str(deployment.spec.template.spec.containers[0].image).rsplit(":", 1)[-1]

    def cause(self) -> str:
        deployment = self.apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
        return str((deployment.metadata.annotations or {}).get(CHANGE_CAUSE) or "")

    def planned(self, stack: str) -> str | None:
        try:
            lease = self.coordination.read_namespaced_lease(lease_name(stack), NAMESPACE)
        except client.ApiException:
            return None
        notes = lease.metadata.annotations or {}
        if watchdog.WATCHING not in notes:
            return None
        text = notes.get(watchdog.PLAN)
        return watchdog.Plan.parse(text).stage if text else ""

    def jobs(self) -> list[client.V1Job]:
        jobs = self.batch.list_namespaced_job(NAMESPACE).items
        return [j for j in jobs if (j.metadata.labels or {}).get("app.kubernetes.io/name") == WATCHDOG]


def wait(check: Callable[[], bool], within_s: float) -> float | None:
    """When ``check`` first held (epoch seconds), polled every 0.1 s for at most ``within_s``; None if never."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(0.1)
    return None


def phases(cluster: Cluster, stack: str, tag: str) -> dict[str, tuple[list[str], Callable[[], bool], float]]:
    """Each phase: the command's arguments, when it is reached, and how long to wait into it before the kill."""
    before = cluster.cause()
    return {
        "preview": (["--canary", "1"], lambda: cluster.planned(stack) == "", 0.0),
        "canary up": (["--canary", "1"], lambda: cluster.pods().get(tag, (0, 0)) == (1, 0), 0.0),
        "canary judged": (["--canary", "1"], lambda: cluster.pods().get(tag, (0, 0))[1] == 1, 2.0),
        "rollout": ([], lambda: cluster.template() == tag and cluster.pods().get(tag, (0, 0))[1] < 3, 0.0),
        "bake": ([], lambda: cluster.pods() == {tag: (3, 3)}, 2.0),
        # A bad release's rollback through Pulumi: the Deployment carries this rollback's cause (not one an earlier
        # run left).
        "rollback": ([], lambda: cluster.cause().startswith("rollback ") and cluster.cause() != before, 0.0),
        "canary interrupted": (["--canary", "1"], lambda: cluster.pods().get(tag, (0, 0))[1] == 1, 2.0),
    }


# The phases whose run gets SIGINT (and ends by itself) rather than SIGKILL.
INTERRUPTED = {"canary interrupted"}


def rollout(stack: Stack, *args: str) -> tuple[int, dict[str, Any], float]:
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "infra.rollout", "--stack", stack.name, "--json", "--yes", *args],
        cwd=stack.project,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=NEXT_WITHIN_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, start


def killed_run(stack: Stack, cluster: Cluster, phase: str, tag: str, url: str) -> dict[str, Any]:
    args, reached, into = phases(cluster, stack.name, tag)[phase]
    out = RESULTS / "raw" / f"kill-{phase.replace(' ', '-')}-{tag}.jsonl"
    with load.PlainLoad(url, RATE, 600, out, keepalive=False, timeout_s=5.0, connections=RATE * 3) as users:
        time.sleep(1)
        command = [sys.executable, "-m", "infra.rollout", "--stack", stack.name, "--json", "--yes", "--tag", tag, *args]
        with subprocess.Popen(
            command, cwd=stack.project, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        ) as running:  # fmt: skip
            try:
                at = wait(reached, 180)
                if at is None:
                    raise RuntimeError(f"{phase}: never reached")
                time.sleep(into)
            finally:
                os.killpg(running.pid, signal.SIGINT if phase in INTERRUPTED else signal.SIGKILL)
                kill = time.time()
            running.wait(timeout=120)
        canary_phase = phase.startswith(("canary", "preview"))
        if phase == "preview":
            undone: float | None = kill  # nothing had changed
        elif canary_phase:
            undone = wait(lambda: tag not in cluster.pods(), UNDONE_WITHIN_S)
        else:
            undone = wait(lambda: cluster.template() == OLD and cluster.pods() == {OLD: (3, 3)}, UNDONE_WITHIN_S)
        time.sleep(3)
        # The re-run, as the pipeline's would run it: the same release shipped again, judged from the start (the
        # bad one aborted); how soon it started: its own watchdog's Job created. Judged briefly: its time is not
        # what is measured.
        stack.configure(**QUICK)
        before = {j.metadata.name for j in cluster.jobs()}
        seen: list[float] = []
        done = threading.Event()

        def look() -> None:  # the re-run's Job is removed when it ends: seen while it runs
            while not done.wait(0.2) and not seen:
                if any(j.metadata.name not in before for j in cluster.jobs()):
                    seen.append(time.time())

        looking = threading.Thread(target=look, daemon=True)
        launched = time.time()
        looking.start()
        code, report, _ = rollout(stack, "--tag", tag, *args)
        done.set()
        looking.join(timeout=5)
        started = [t - launched for t in seen]
        time.sleep(2)
    after_kill = [r for r in users.responses if r.failed and kill <= r.t < launched]
    row = {
        "phase": phase,
        "release": tag,
        "undone_after_kill_s": None if undone is None else round(undone - kill, 1),
        "failed": sum(r.failed for r in users.responses if r.t < launched),
        "failed_after_kill": len(after_kill),
        "last_bad_after_kill_s": round(max(r.t for r in after_kill) - kill, 1) if after_kill else None,
        "requests": sum(r.t < launched for r in users.responses),
        "next_exit": code,
        "next_outcome": report.get("outcome"),
        "next_lost_run": bool(report.get("lostRun")),
        "next_watchdog_acted": bool(report.get("watchdogActed")),
        "next_started_s": round(min(started), 1) if started else None,
    }
    # Back to OLD for the next run (the re-run shipped the good release; the bad one was aborted), then the long
    # judgement the kills land in.
    if cluster.template() != OLD:
        rollout(stack, "--tag", OLD)
    stack.configure(**LONG)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# The kill matrix (make bench-kill)",
        "",
        f"`rollout` killed with SIGKILL (its whole process group) at each phase, {RUNS} runs each, on the real "
        "node (the interrupted phase: SIGINT, as Ctrl-C or a cancelled CI job; the run ends by itself); "
        f"3 replicas; users at {RATE} requests a second, never re-sent; `watchdogSeconds` {LEASE_S}. "
        "Undone: the canary's pods gone, or the old version back on every replica, after the kill. Next: the "
        "re-run of the same release (`rollout --tag T`), its outcome and how soon it started (its watchdog's Job "
        "created, from its launch). No `pulumi cancel` was run by hand in any of them.",
        "",
        "| phase | release | runs | undone after the kill (s), median [min-max] | users' failed requests | "
        "after the kill (last, s) | next run | next started (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["phase"], r["release"]) for r in rows}, key=lambda k: [r["phase"] for r in rows].index(k[0]))
    for phase, release in keys:
        group = [r for r in rows if (r["phase"], r["release"]) == (phase, release)]
        undone = [r["undone_after_kill_s"] for r in group if r["undone_after_kill_s"] is not None]
        spread = f"{statistics.median(undone):.1f} [{min(undone):.1f}-{max(undone):.1f}]" if undone else "never"
        if len(undone) < len(group):
            spread += f" ({len(group) - len(undone)} never)"
        failed = "/".join(str(r["failed"]) for r in group)
        last = [r["last_bad_after_kill_s"] for r in group if r["last_bad_after_kill_s"] is not None]
        after = "/".join(str(r["failed_after_kill"]) for r in group) + (f" ({max(last):.1f})" if last else "")
        outcomes = sorted({f"{r['next_outcome']} ({r['next_exit']})" for r in group})
        started = [r["next_started_s"] for r in group if r["next_started_s"] is not None]
        when = f"{statistics.median(started):.1f} [{min(started):.1f}-{max(started):.1f}]" if started else "-"
        lines.append(
            f"| {phase} | {release} | {len(group)} | {spread} | {failed} | {after} | {', '.join(outcomes)} | {when} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--phase", action="append", help="only these phases (default: all)")
    args = parser.parse_args()
    for version in (OLD, NEW):
        run([str(ROOT / "cluster" / "images.sh"), "app", version])
    run([str(ROOT / "cluster" / "images.sh"), "app", BAD, "errors"])
    run([str(ROOT / "cluster" / "images.sh"), "watchdog"])
    cluster = Cluster()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rolling-kill-") as tmp:
        stack = Stack(Path(tmp), "kill", NAMESPACE)
        stack.configure(
            target="local", namespace=NAMESPACE, imageRepository=REPOSITORY, imageTag=OLD, watchdogSeconds=LEASE_S,
            analysisRate=20, minRequests=20, **LONG,
        )  # fmt: skip
        stack.up()
        try:
            ip = cluster.core.read_namespaced_service("nginx", NAMESPACE).spec.cluster_ip
            url = node.service_url(ip, "/version.txt")
            good = [p for p in phases(cluster, stack.name, NEW) if p != "rollback"]
            matrix = [(p, NEW) for p in good] + [("canary up", BAD), ("rollback", BAD)]
            for phase, tag in matrix:
                if args.phase and phase not in args.phase:
                    continue
                for n in range(args.runs):
                    progress(f"kill during {phase} of {tag}: run {n + 1} of {args.runs}")
                    rows.append(killed_run(stack, cluster, phase, tag, url))
                    progress(f"  {rows[-1]}")
        finally:
            stack.destroy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.phase and (RESULTS / "kill.json").exists():
        # A part run again replaces its rows among the last whole run's.
        ran = {(r["phase"], r["release"]) for r in rows}
        last = json.loads((RESULTS / "kill.json").read_text())["rows"]
        kept = [r for r in last if (r["phase"], r["release"]) not in ran]
        rows = kept + rows
    (RESULTS / "kill.json").write_text(json.dumps({"rate": RATE, "lease_s": LEASE_S, "rows": rows}, indent=1))
    (RESULTS / "kill.md").write_text(markdown(rows))
    print((RESULTS / "kill.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
