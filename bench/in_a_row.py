"""Many plain `pulumi up`s in a row on the real node, a core kept busy beside them: at each return, is the
Deployment complete as `kubectl rollout status` judges it? (The provider's own wait once returned now and
then with old pods running, a Progressing condition left from the rollout before.) The end-to-end tier
runs a few in a row; this part runs many, and times each: bench/results/in-a-row.json."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.run import RESULTS, Stack, progress
from infra.identity import DEPLOYMENT
from infra.kube.cluster import live_cluster

ROLLOUTS = 40
TAGS = ("1.1.0", "1.0.0")
NAMESPACE = "bench-in-a-row"


def measure(workdir: Path, repository: str, count: int = ROLLOUTS) -> dict[str, Any]:
    stack = Stack(workdir, "in-a-row", NAMESPACE)
    stack.configure(
        target="local", namespace=NAMESPACE, imageRepository=repository, imageTag=TAGS[1], replicas=2,
        maxSurge=2, minReadySeconds=0, drainSeconds=3,
    )  # fmt: skip
    stack.up()
    incomplete: list[dict[str, Any]] = []
    seconds: list[float] = []
    # Bounded: the busy loop stops by itself after 20 minutes, and is killed when the runs end.
    busy = subprocess.Popen(["python3", "-c", "import time\nend = time.time() + 1200\nwhile time.time() < end: pass"])
    try:
        for n in range(count):
            tag = TAGS[n % 2]
            stack.configure(imageTag=tag)
            start = time.perf_counter()
            stack.up()
            seconds.append(round(time.perf_counter() - start, 2))
            returned = live_cluster(None).health(NAMESPACE, DEPLOYMENT)
            if not (returned.complete and returned.image == f"{repository}:{tag}"):
                incomplete.append({"run": n + 1, "health": str(returned)})
            progress(f"in a row: {n + 1}/{count} in {seconds[-1]} s{'' if not incomplete else ', incomplete'}")
    finally:
        busy.kill()
        busy.wait()
        stack.destroy()
    found = {
        "rollouts": count,
        "incomplete_at_return": incomplete,
        "up_s": {"median": statistics.median(seconds), "max": max(seconds), "min": min(seconds)},
        "each_s": seconds,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "in-a-row.json").write_text(json.dumps(found, indent=1) + "\n")
    return found
