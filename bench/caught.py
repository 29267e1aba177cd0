"""make bench, the verdict on the real node: bad releases of each kind, RUNS times each, and healthy releases in
a row whose every version answers bursts of errors at the same moments (part of `make bench-traffic`, or
`python -m bench.traffic --only analysis-caught`).

Each bad release is shipped from OLD with `rollout` (the first row with `--canary 1`), users beside it at RATE
requests a second, a new connection each, never re-sent (bench/analysis.py `bad_release`): whether it was
caught (exit 15), the bad responses users got, and the time from the first to the old version answering every
request again; the spread over the runs. Then BURSTS: RELEASES judged releases in a row between two versions
that both fail half their users' requests for the same 2 s of every 100 s (cluster/images.sh's bursts kind):
none may be aborted. Writes bench/results/analysis-caught.{json,md}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis
from bench.run import RESULTS, Stack, progress
from infra.rollout.review import JUDGED_WITHIN_S

STEM = "analysis-caught"
RUNS = 5
# Healthy releases answering shared bursts (cluster/images.sh's bursts kind), RELEASES of them in a row.
BURSTS = ("1.0.0-bursts", "1.1.0-bursts")
BURSTS_KIND = "bursts"


@dataclass(frozen=True)
class Bad:
    """A row: a bad release ``tag`` of cluster/images.sh's ``kind``, shipped with ``args``."""

    name: str
    tag: str
    kind: str
    args: tuple[str, ...] = ()
    slow_ms: int | None = None

    def shape(self) -> analysis.Shape:
        return analysis.Shape(STEM, whole=False, bad=self.tag, kind=self.kind, slow_ms=self.slow_ms)


ROWS = (
    Bad("Ready, every answer 500, --canary 1", "1.1.0-errors", "errors", ("--canary", "1")),
    Bad("Ready, every answer 500", "1.1.0-errors", "errors"),
    Bad("5 % of answers 500", "1.1.0-partial", "partial"),
    Bad("3 % of answers 500", "1.1.0-partial3", "partial3"),
    Bad("10 % of connections closed unanswered", "1.1.0-resets", "resets"),
    Bad("pages in about 2 s", "1.1.0-slow", "slow", slow_ms=1000),
)


def images() -> list[tuple[str, str]]:
    """Every image the part needs, with its kind ("" for the app itself: the old version)."""
    return [(analysis.OLD, ""), *((row.tag, row.kind) for row in ROWS), *((tag, BURSTS_KIND) for tag in BURSTS)]


def measure(workdir: Path, repository: str, url_of: Callable[[str], str], runs: int = RUNS) -> dict[str, Any]:
    """Every row ``runs`` times on one stack of the app, then the bursts on another."""
    (workdir / "bad").mkdir()
    stack = Stack(workdir / "bad", "analysis", analysis.NAMESPACE)
    stack.configure(
        target="local",
        namespace=analysis.NAMESPACE,
        imageRepository=repository,
        imageTag=analysis.OLD,
        minReadySeconds=JUDGED_WITHIN_S,
        replicas=analysis.STANDARD.replicas,
    )
    stack.up()
    rows: list[dict[str, Any]] = []
    try:
        url = url_of(analysis.NAMESPACE)
        for row in ROWS:
            found = []
            for number in range(runs):
                progress(f"{row.name}: {number + 1} of {runs}")
                way = analysis.bad_release(stack, url, row.name, *row.args, shape=row.shape())
                found.append({k: v for k, v in way.items() if k != "responses"})
            rows.append({"name": row.name, "tag": row.tag, "runs": found})
    finally:
        stack.destroy()
    (workdir / "bursts").mkdir()
    bursts = analysis.noisy(workdir / "bursts", repository, url_of, versions=BURSTS, what="shared bursts")
    return {"rate": analysis.RATE, "replicas": analysis.STANDARD.replicas, "rows": rows, "bursts": bursts}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def cells(runs: list[dict[str, Any]]) -> str:
    """A row's caught (exit 15), bad responses and first bad to the old version everywhere, over its runs."""
    caught = sum(r["exit"] == 15 for r in runs)
    restored = [r["first_bad_to_restored_s"] for r in runs if r["first_bad_to_restored_s"] is not None]
    never = "" if len(restored) == len(runs) else f" ({len(runs) - len(restored)} never)"
    return f"{caught} of {len(runs)} | {spread([r['bad_responses'] for r in runs])} | {spread(restored)} s{never}"


def markdown(found: dict[str, Any]) -> str:
    lines = [
        f"# Bad releases, {found['replicas']} replicas, users at {found['rate']} requests a second (new connections,"
        " never re-sent)",
        "",
        "| release | caught (exit 15) | bad responses users got | first bad to the old version everywhere | command |",
        "|---|---|---|---|---|",
    ]
    for row in found["rows"]:
        lines.append(f"| {row['name']} | {cells(row['runs'])} | {spread([r['command_s'] for r in row['runs']])} s |")
    bursts = found["bursts"]
    lines += ["", analysis.noisy_markdown(bursts, "shared bursts (half their answers 500, 2 s in every 100)")]
    return "\n".join(lines).rstrip() + "\n"


def write(found: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{STEM}.md").write_text(markdown(found))
    (RESULTS / f"{STEM}.json").write_text(json.dumps(found, indent=1))
