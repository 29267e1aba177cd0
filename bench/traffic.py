"""make bench, traffic: the same load through the same kind of rollout, three ways, on the real node.

1. this program's `pulumi up` (readiness probe, preStop drain, graceful stop);
2. the seed's plain deployment.yaml (no probe, no preStop) rolled with `kubectl set image`;
3. kubectl on this program's Deployment (`kubectl set image` on the same spec).

vegeta sends RATE requests a second, a new connection each (the way a rollout without a drain loses
requests here), and beside it a keep-alive client that never re-sends a request (the way one without the
keep-alive limits does), from before the rollout until after it. Before them, steady-state keep-alive
traffic with the limits and from an image that ignores them: what the limits cost. Writes
bench/results/traffic.{json,md} and bench/results/traffic.png. Needs a cluster with a real node
(KUBECONFIG, ROLLING_CLUSTER).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import analysis, caught, in_a_row, phases, weighted
from bench.run import RESULTS, ROOT, Stack, kubectl, progress, run, summary
from infra import fargate, strategy
from infra.identity import CONTAINER, DEPLOYMENT, DEPLOYMENT_REF, LABELS, SERVICE
from infra.rollout.engine import interruptible_children
from infra.settings import Settings
from rigs import load, node
from rigs.timeline import DeploymentPhases, RolloutWatch

RATE = 60
OLD, NEW = "1.0.0", "1.1.0"
# The app as an image that ignores the stack's keep-alive limits (cluster/images.sh's unlimited kind).
UNLIMITED = "1.0.0-unlimited"
STEADY: list[dict[str, Any]] = []
REPOSITORY = "localhost:5000/rolling-app"
BEFORE_S, AFTER_S = 3.0, 8.0
# The real node's own figures, next to their budgets.
NODE: dict[str, Any] = {}

# The seed's manifest, as users write it by hand: no probe, no preStop, the default grace period.
SEED = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: {deployment}, namespace: {ns}, labels: {labels}}}
spec:
  replicas: 3
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers:
      - name: {container}
        image: {image}
        ports: [{{containerPort: 8080}}]  # the app image serves unprivileged, on 8080
---
apiVersion: v1
kind: Service
metadata: {{name: {service}, namespace: {ns}, labels: {labels}}}
spec:
  selector: {labels}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def service_url(namespace: str) -> str:
    ip = kubectl("get", "service", SERVICE, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    return node.service_url(ip, "/version.txt")


def wait_routed(url: str, version: str) -> None:
    deadline = time.monotonic() + 20
    while load.fetch_version(url) != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} does not serve {version}")
        time.sleep(0.2)


def measure(name: str, namespace: str, roll: Any) -> dict[str, Any]:
    """Load through one rollout: ``roll()`` changes the version and returns when the rollout is complete."""
    progress(f"traffic through a rollout: {name}")
    url = service_url(namespace)
    wait_routed(url, OLD)
    out = RESULTS / "raw" / f"traffic-{name}.jsonl"
    plain_out = RESULTS / "raw" / f"plain-{name}.jsonl"
    # Beside vegeta (a new connection each), a keep-alive client that never re-sends a request.
    with (
        load.Load(url, RATE, 180, out, keepalive=False) as sent,
        load.PlainLoad(url, RATE, 180, plain_out, keepalive=True) as plain,
    ):
        time.sleep(BEFORE_S)
        with DeploymentPhases(namespace, DEPLOYMENT) as watched:
            start = time.time()
            with RolloutWatch(namespace) as watcher:
                roll()
                done = time.time()
        # The tool's own time: before the Deployment's template changed, and after its rollout completed.
        own = watched.phases(start, done)
        time.sleep(AFTER_S)
    responses = sent.responses
    before = [r for r in responses if r.t < start]
    during = [r for r in responses if start <= r.t <= done + AFTER_S]
    return {
        "name": name,
        "complete_s": round(done - start, 1),
        "own_s": {"before": own.before, "after": own.after},
        "before": load.summary(before),
        "during": load.summary(during),
        "failed": sum(r.failed for r in responses),
        "requests": len(responses),
        "plain_failed": sum(r.failed for r in plain.responses),
        "plain_requests": len(plain.responses),
        "start": start,
        "responses": [(round(r.t - start, 3), r.version if not r.failed else "failed") for r in responses],
        "ready": [{"t": s.t, "ready_by_revision": s.ready_by_revision} for s in watcher.samples],
    }


def gone(image: str, namespace: str, most_s: float = 120.0) -> None:
    """Wait until no pod of ``image`` is left in ``namespace``, terminating ones included."""
    deadline = time.monotonic() + most_s
    while True:
        pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
        if not any(c["image"] == image for pod in pods for c in pod["spec"]["containers"]):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods of {image} are still in {namespace} after {most_s:.0f}s")
        time.sleep(1.0)


def seed_way(workdir: Path) -> dict[str, Any]:
    ns = "bench-seed"
    kubectl("create", "namespace", ns)
    manifest = workdir / "seed.yaml"
    manifest.write_text(
        SEED.format(
            ns=ns,
            image=f"{REPOSITORY}:{OLD}",
            deployment=DEPLOYMENT,
            service=SERVICE,
            container=CONTAINER,
            labels="{" + ", ".join(f"{k}: {v}" for k, v in LABELS.items()) + "}",
        )
    )
    created = time.monotonic()
    kubectl("apply", "-f", str(manifest))
    kubectl("rollout", "status", DEPLOYMENT_REF, "-n", ns, "--timeout=120s")
    NODE["three_pods_ready_s"] = round(time.monotonic() - created, 1)

    def roll() -> None:
        kubectl("set", "image", DEPLOYMENT_REF, f"{CONTAINER}={REPOSITORY}:{NEW}", "-n", ns)
        kubectl("rollout", "status", DEPLOYMENT_REF, "-n", ns, "--timeout=300s")

    try:
        return measure("seed deployment.yaml + kubectl set image", ns, roll)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


STEADY_RATE, STEADY_S = 300, 15


def steady(namespace: str, version: str) -> dict[str, Any]:
    """No rollout: keep-alive traffic at STEADY_RATE with vegeta and at RATE with the plain client, side by
    side, for STEADY_S: what the keep-alive limits cost when nothing changes (connections reopened)."""
    url = service_url(namespace)
    wait_routed(url, version)
    raw = RESULTS / "raw"
    with (
        load.Load(url, STEADY_RATE, STEADY_S, raw / f"steady-{version}.jsonl", keepalive=True) as sent,
        load.PlainLoad(url, RATE, STEADY_S, raw / f"steady-plain-{version}.jsonl", keepalive=True) as plain,
    ):
        time.sleep(STEADY_S + 1)
    fast, slow = load.summary(sent.responses), load.summary(plain.responses)
    answered = sum(not r.failed for r in sent.responses)
    return {"version": version, "vegeta": fast, "plain": slow, "answered_per_s": round(answered / STEADY_S, 1)}


def program_ways(workdir: Path) -> list[dict[str, Any]]:
    stack = Stack(workdir, "traffic", "bench-traffic")
    stack.configure(
        target="local", namespace="bench-traffic", imageRepository=REPOSITORY, imageTag=OLD, minReadySeconds=1
    )
    stack.up()
    results = []
    try:
        # Steady state with the keep-alive limits, and from an image that ignores them.
        STEADY.append(steady("bench-traffic", OLD))
        stack.configure(imageTag=UNLIMITED)
        stack.up()
        STEADY.append(steady("bench-traffic", UNLIMITED))
        stack.configure(imageTag=OLD)
        stack.up()
        # The unlimited pods keep their keep-alive connections open through their drain (that is what they
        # show): the rollouts measured next start once they are gone, so that no failure is theirs.
        gone(f"{REPOSITORY}:{UNLIMITED}", "bench-traffic")
        stack.configure(imageTag=NEW)
        results.append(measure("this program: pulumi up", "bench-traffic", stack.up))
        # kubectl on the same Deployment spec: back to the old version first, then the same change.
        stack.configure(imageTag=OLD)
        stack.up()

        def roll() -> None:
            kubectl("set", "image", DEPLOYMENT_REF, f"{CONTAINER}={REPOSITORY}:{NEW}", "-n", "bench-traffic")
            kubectl("rollout", "status", DEPLOYMENT_REF, "-n", "bench-traffic", "--timeout=300s")

        results.append(measure("this program's Deployment + kubectl set image", "bench-traffic", roll))
    finally:
        stack.destroy()
    return results


# Scale on the real node: sizes up to the most the node holds with the rollout's surge, each timed
# SCALE_RUNS times by `pulumi up` and by `kubectl set image` on the same Deployment, alternating.
SCALE_SURGE, SCALE_RUNS = "25%", 2
SCALE: list[dict[str, Any]] = []


def most_replicas(cpu_m: int, surge: str) -> int:
    """The most replicas whose rollout fits the node's free cpu, with its surge (requests at ``cpu_m``)."""
    listed = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    allocatable = sum(fargate.parse_cpu(n["status"]["allocatable"]["cpu"]) for n in listed)
    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    requested = sum(
        fargate.parse_cpu(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
        for pod in pods
        if pod["status"].get("phase") in ("Pending", "Running")
        for c in pod["spec"]["containers"]
    )
    replicas = 1
    while strategy.plan(replicas + 1, surge, 0).max_pods * cpu_m <= allocatable - requested:
        replicas += 1
    return replicas


def scale_ways(workdir: Path) -> None:
    """A tag change at 1, 3 and the most replicas the real node holds: the tools' own time by size, with
    real pods (the speed bench's fake ones go to 100)."""
    stack = Stack(workdir, "scale", "bench-scale")
    stack.configure(
        target="local", namespace="bench-scale", imageRepository=REPOSITORY, imageTag=OLD, minReadySeconds=1
    )
    stack.up()
    try:
        cpu_m = fargate.parse_cpu(str(Settings.from_values({"target": "local"}).cpu))
        most = most_replicas(cpu_m, SCALE_SURGE)
        running = OLD
        for replicas in sorted({1, 3, most}):
            progress(f"scale on the real node: {replicas} replicas, pulumi up and kubectl set image")
            # The resize keeps what runs (kubectl's last tag, which the refresh read back).
            stack.configure(replicas=replicas, maxSurge=SCALE_SURGE, imageTag=running)
            stack.up()
            samples: dict[str, list[float]] = {}
            for _ in range(SCALE_RUNS):
                running = NEW if running == OLD else OLD
                stack.configure(imageTag=running)
                seconds, own = phases.timed_phases("bench-scale", stack.up)
                samples.setdefault("pulumi_up_s", []).append(seconds)
                samples.setdefault("pulumi_up_own_s", []).append(own.overhead)
                running = NEW if running == OLD else OLD

                def roll(tag: str = running) -> None:
                    kubectl("set", "image", DEPLOYMENT_REF, f"{CONTAINER}={REPOSITORY}:{tag}", "-n", "bench-scale")
                    kubectl("rollout", "status", DEPLOYMENT_REF, "-n", "bench-scale", "--timeout=300s")

                seconds, own = phases.timed_phases("bench-scale", roll)
                samples.setdefault("kubectl_s", []).append(seconds)
                samples.setdefault("kubectl_own_s", []).append(own.overhead)
                # The state reads back what kubectl ran, so that the next `up` changes it again.
                stack.pulumi("refresh", "--yes", "--skip-preview", "--stack", stack.name)
            sized = {name: summary(values) for name, values in samples.items()}
            SCALE.append({"replicas": replicas, "most": replicas == most, **sized})
    finally:
        stack.destroy()


def scale_lines() -> list[str]:
    if not SCALE:
        return []
    lines = [
        f"## Scale on the real node (maxSurge {SCALE_SURGE}, {SCALE_RUNS} tag changes each way at each size, "
        "alternating, medians)",
        "",
        "| replicas | kubectl set image s | pulumi up s | kubectl's own s | pulumi up's own s |",
        "|---|---|---|---|---|",
    ]
    for row in SCALE:
        label = f"{row['replicas']} (the most the node holds with the surge)" if row["most"] else row["replicas"]
        lines.append(
            f"| {label} | {row['kubectl_s']['median']:.1f} | {row['pulumi_up_s']['median']:.1f} | "
            f"{row['kubectl_own_s']['median']:.2f} | {row['pulumi_up_own_s']['median']:.2f} |"
        )
    lines += [
        "",
        "The same Deployment of this program, rolled by each tool in turn (a `pulumi refresh` after kubectl's, "
        "untimed). The rest of each time is the node's: pulls, starts, readiness probes.",
        "",
    ]
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {OLD: "tab:blue", NEW: "tab:green", "failed": "tab:red"}
    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 5), dpi=100, sharex=True)
    for col, result in enumerate(results):
        top, bottom = axes[0][col], axes[1][col]
        for version, colour in colours.items():
            times = [t for t, v in result["responses"] if v == version]
            top.scatter(times, [1 if version != "failed" else 0] * len(times), s=4, c=colour, label=version)
        top.set_yticks([0, 1], ["failed", "answered"])
        top.set_title(f"{result['name']}\n{result['failed']} of {result['requests']} failed", fontsize=8)
        revisions = list(dict.fromkeys(r for s in result["ready"] for r in s["ready_by_revision"]))
        for label, revision in zip(("old ReplicaSet", "new ReplicaSet"), revisions, strict=False):
            bottom.step(
                [s["t"] for s in result["ready"]],
                [s["ready_by_revision"].get(revision, 0) for s in result["ready"]],
                where="post",
                label=label,
            )
        bottom.set_xlabel("seconds since the rollout started")
        bottom.set_ylabel("ready pods")
    axes[0][0].legend(loc="lower left", fontsize=7)
    axes[1][0].legend(loc="center left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        f"# Traffic through a rollout ({RATE} requests/s, a new connection each; 3 replicas, "
        "maxSurge 1, maxUnavailable 0)",
        "",
        "| way | failed requests | keep-alive client that does not retry: failed | p50 / p99 before (ms) | "
        "p50 / p99 during (ms) | rollout complete | tool's own time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b, d = r["before"], r["during"]
        own = r.get("own_s")
        own_text = f"{own['before'] + own['after']:.2f} s" if own else ""
        lines.append(
            f"| {r['name']} | {r['failed']} of {r['requests']} | {r.get('plain_failed')} of "
            f"{r.get('plain_requests')} | {b['p50_ms']} / {b['p99_ms']} | "
            f"{d['p50_ms']} / {d['p99_ms']} | {r['complete_s']} s | {own_text} |"
        )
    lines += [
        "",
        "Beside vegeta (a new connection for each request), a keep-alive client that never re-sends a request "
        f"(`rigs.load.PlainLoad`: five persistent connections, {RATE} requests/s in all) ran through the same "
        "rollout.",
    ]
    if STEADY:
        lines += [
            "",
            f"## Steady state, keep-alive, no rollout ({STEADY_S} s; vegeta at {STEADY_RATE}/s and the plain "
            f"client at {RATE}/s side by side)",
            "",
            "| image | answered/s (vegeta) | vegeta p50 / p99 (ms) | failed | plain client p50 / p99 (ms) | failed |",
            "|---|---|---|---|---|---|",
        ]
        for row in STEADY:
            v, c = row["vegeta"], row["plain"]
            label = "with the keep-alive limits" if row["version"] == OLD else "ignoring them (nginx's defaults)"
            lines.append(
                f"| {row['version']} ({label}) | {row['answered_per_s']} | {v['p50_ms']} / {v['p99_ms']} | "
                f"{v['failed']} | {c['p50_ms']} / {c['p99_ms']} | {c['failed']} |"
            )
    lines += [
        "",
        "Rollout complete: the command's whole time; one run each, so the readiness probe's 5 s period "
        "shows in it. The tool's own time is the part before the Deployment's template changed plus the part "
        "after its rollout completed: what the tool adds, whatever the node and probes take.",
        "",
        "![Requests by the version that answered, and ready pods](traffic.png)",
        "",
        *scale_lines(),
        "| the real node | measured | budget |",
        "|---|---|---|",
        f"| warm `cluster-up`, node Ready | {NODE.get('cluster_up_s')} s | 20 s |",
        f"| 3 pods ready after the Deployment is created | {NODE.get('three_pods_ready_s')} s | 10 s |",
        f"| base image, cold (debootstrap + image) | {NODE.get('base_image_s')} s | 120 s |",
        "",
    ]
    return "\n".join(lines)


def base_image_seconds() -> int | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rolling" / "images"
    found = sorted(cache.glob("base-*/build-seconds"))
    return int(found[-1].read_text()) if found else None


def caught_part(workdir: Path) -> None:
    """bench/caught.py: its images, its runs, its report."""
    for version, kind in caught.images():
        run([str(ROOT / "cluster" / "images.sh"), "app", version, kind])
    (workdir / caught.STEM).mkdir()
    caught.write(caught.measure(workdir / caught.STEM, REPOSITORY, service_url))
    print((RESULTS / f"{caught.STEM}.md").read_text())


def weighted_part(workdir: Path) -> None:
    """bench/weighted.py: its images, its runs, its report."""
    for version, kind in weighted.images():
        run([str(ROOT / "cluster" / "images.sh"), "app", version, kind])
    weighted.write(weighted.measure(workdir, REPOSITORY))
    print((RESULTS / f"{weighted.STEM}.md").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster-start-s", type=float, default=0.0)
    parser.add_argument(
        "--only",
        choices=("all", *analysis.SHAPES, analysis.NOISY_STEM, caught.STEM, weighted.STEM),
        default="all",
        help="analysis: the bad release's part alone; analysis-large: the same on 9 replicas, users at 120/s; "
        "analysis-slow: a release that answers in about 2 s; analysis-noisy: 20 healthy releases answering 0.5 %% "
        "errors; analysis-caught: each kind of bad release 5 times, and 20 healthy releases answering shared bursts; "
        "analysis-weighted: a weighted canary's bad release through the load balancer stand-in",
    )
    args = parser.parse_args()
    if args.only == weighted.STEM:
        weighted_part(Path(tempfile.mkdtemp(prefix="rolling-traffic-")))
        return 0
    if args.only == caught.STEM:
        caught_part(Path(tempfile.mkdtemp(prefix="rolling-traffic-")))
        return 0
    if args.only == analysis.NOISY_STEM:
        for version in analysis.NOISY:
            run([str(ROOT / "cluster" / "images.sh"), "app", version, analysis.NOISY_KIND])
        with tempfile.TemporaryDirectory(prefix="rolling-traffic-") as tmp:
            analysis.write_noisy(analysis.noisy(Path(tmp), REPOSITORY, service_url))
        print((RESULTS / f"{analysis.NOISY_STEM}.md").read_text())
        return 0
    if args.only != "all":
        shape = analysis.SHAPES[args.only]
        for version in (OLD, NEW):
            run([str(ROOT / "cluster" / "images.sh"), "app", version])
        run([str(ROOT / "cluster" / "images.sh"), "app", shape.bad, shape.kind])
        with tempfile.TemporaryDirectory(prefix="rolling-traffic-") as tmp:
            analysis.write(analysis.measure(Path(tmp), REPOSITORY, service_url, shape), shape)
        print((RESULTS / f"{shape.stem}.md").read_text())
        return 0
    NODE["cluster_up_s"] = args.cluster_start_s
    progress(f"building the app image {OLD} and {NEW}")
    for version in (OLD, NEW):
        run([str(ROOT / "cluster" / "images.sh"), "app", version])
    run([str(ROOT / "cluster" / "images.sh"), "app", UNLIMITED, "unlimited"])
    run([str(ROOT / "cluster" / "images.sh"), "app", analysis.BAD, "errors"])
    run([str(ROOT / "cluster" / "images.sh"), "app", analysis.SLOW.bad, analysis.SLOW.kind])
    NODE["base_image_s"] = base_image_seconds()
    with tempfile.TemporaryDirectory(prefix="rolling-traffic-") as tmp:
        workdir = Path(tmp)
        results = program_ways(workdir)
        (workdir / "scale").mkdir()
        scale_ways(workdir / "scale")
        results.append(seed_way(workdir))
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(results, RESULTS / "traffic.png")
        (RESULTS / "traffic.md").write_text(markdown(results))
        slim = [{k: v for k, v in r.items() if k not in ("responses", "ready")} for r in results]
        (RESULTS / "traffic.json").write_text(
            json.dumps({"rate": RATE, "node": NODE, "results": slim, "steady": STEADY, "scale": SCALE}, indent=1)
        )
        print((RESULTS / "traffic.md").read_text())
        # The analysis: a stack of its own, in a folder of its own.
        (workdir / "analysis").mkdir()
        analysis.write(analysis.measure(workdir / "analysis", REPOSITORY, service_url))
        print((RESULTS / "analysis.md").read_text())
        (workdir / "analysis-large").mkdir()
        analysis.write(
            analysis.measure(workdir / "analysis-large", REPOSITORY, service_url, analysis.LARGE), analysis.LARGE
        )
        print((RESULTS / "analysis-large.md").read_text())
        (workdir / "analysis-slow").mkdir()
        analysis.write(
            analysis.measure(workdir / "analysis-slow", REPOSITORY, service_url, analysis.SLOW), analysis.SLOW
        )
        print((RESULTS / "analysis-slow.md").read_text())
        (workdir / analysis.NOISY_STEM).mkdir()
        for version in analysis.NOISY:
            run([str(ROOT / "cluster" / "images.sh"), "app", version, analysis.NOISY_KIND])
        analysis.write_noisy(analysis.noisy(workdir / analysis.NOISY_STEM, REPOSITORY, service_url))
        print((RESULTS / f"{analysis.NOISY_STEM}.md").read_text())
        caught_part(workdir)
        (workdir / "in-a-row").mkdir()
        rows = in_a_row.measure(workdir / "in-a-row", REPOSITORY)
        print(f"plain ups in a row: {len(rows['incomplete_at_return'])} of {rows['rollouts']} returned incomplete")
    return 0


if __name__ == "__main__":
    interruptible_children()  # else, started in the background, every engine run here waits 5 s more
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "bench")
    raise SystemExit(main())
