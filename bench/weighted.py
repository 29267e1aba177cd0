"""make bench-weighted, the weighted canary's bad releases on the real node (canaryTraffic weights, through the
load balancer stand-in tools/aws-emulator/alb.py): a release whose every answer is 500 shipped with `--canary
1`, RUNS times for each first share (canarySteps) and each delay the stand-in takes to apply a new weight
(its `--propagation-seconds`, the part of the ALB the command cannot hurry). Users at RATE requests a second
through the stand-in, a new connection each, never re-sent (bench/analysis.py `bad_release`): whether it
was caught (exit 15), the bad responses users got, from the first to the old version answering every request
again, and the mitigation's time as the command measured it (the weight to 0 on the Ingress, read back from
the load balancer). Writes bench/results/analysis-weighted.{json,md}.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis
from bench.caught import cells, spread
from bench.run import RESULTS, Stack, progress
from infra.rollout.review import JUDGED_WITHIN_S
from rigs import alb, load

STEM = "analysis-weighted"
RUNS = 5
BAD = "1.1.0-errors"
KIND = "errors"
NAMESPACE = "bench-weighted"


@dataclass(frozen=True)
class Row:
    """The canary's first share (percent) and the stand-in's delay before a weight takes effect (seconds)."""

    steps: str
    propagation_s: float

    @property
    def name(self) -> str:
        return f"first share {self.steps.split(',')[0]} %, weights applied {self.propagation_s:g} s late"


ROWS = tuple(Row(steps, delay) for delay in (2.0, 10.0) for steps in ("5,25", "25,50"))


def images() -> list[tuple[str, str]]:
    return [(analysis.OLD, ""), (BAD, KIND)]


def measure(workdir: Path, repository: str, runs: int = RUNS) -> dict[str, Any]:
    """Every row ``runs`` times, each delay on a stand-in of its own, one stack throughout."""
    stack = Stack(workdir, "weighted", NAMESPACE)
    stack.configure(
        target="local",
        namespace=NAMESPACE,
        imageRepository=repository,
        imageTag=analysis.OLD,
        minReadySeconds=JUDGED_WITHIN_S,
        replicas=analysis.STANDARD.replicas,
        canaryTraffic="weights",
    )
    rows: list[dict[str, Any]] = []
    shape = analysis.Shape(STEM, whole=False, bad=BAD, kind=KIND)
    try:
        for delay in sorted({row.propagation_s for row in ROWS}):
            with alb.running([NAMESPACE], RESULTS / "raw" / f"{STEM}-alb-{delay:g}s.log", propagation_s=delay) as lb:
                stack.env.update(lb.env())
                stack.up()
                url = stack.pulumi("stack", "output", "url").stdout.strip() + "/version.txt"
                answering(url)
                for row in (r for r in ROWS if r.propagation_s == delay):
                    stack.configure(canarySteps=row.steps)
                    found = []
                    for number in range(runs):
                        progress(f"{row.name}: {number + 1} of {runs}")
                        way = analysis.bad_release(stack, url, row.name, "--canary", "1", shape=shape)
                        found.append({k: v for k, v in way.items() if k != "responses"})
                    rows.append({"name": row.name, "steps": row.steps, "propagation_s": delay, "runs": found})
                    write(result(rows))  # each row as it ends: a part that fails later keeps the rows before
    finally:
        stack.destroy()
    return result(rows)


def answering(url: str, within_s: float = 20.0) -> None:
    """Wait until the load balancer at ``url`` answers with the old version (its stand-in has just started)."""
    deadline = time.monotonic() + within_s
    while load.fetch_version(url) != analysis.OLD:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer {analysis.OLD} within {within_s:.0f} s")
        time.sleep(0.5)


def result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rate": analysis.RATE, "replicas": analysis.STANDARD.replicas, "rows": rows}


def markdown(found: dict[str, Any]) -> str:
    lines = [
        f"# A weighted canary whose every answer is 500, {found['replicas']} replicas, users at {found['rate']} "
        "requests a second through the load balancer stand-in (new connections, never re-sent)",
        "",
        "| canary | caught (exit 15) | bad responses users got | first bad to the old version everywhere | "
        "breach to weight 0 read back | command |",
        "|---|---|---|---|---|---|",
    ]
    for row in found["rows"]:
        runs = row["runs"]
        mitigated = [r["mitigated_s"] for r in runs if r.get("mitigated_s") is not None]
        command = spread([r["command_s"] for r in runs])
        lines.append(f"| {row['name']} | {cells(runs)} | {spread(mitigated)} s | {command} s |")
    return "\n".join(lines).rstrip() + "\n"


def write(found: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{STEM}.md").write_text(markdown(found))
    (RESULTS / f"{STEM}.json").write_text(json.dumps(found, indent=1))
