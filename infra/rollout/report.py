"""The rollout command's report: what `rollout --json` prints as its last line, and how readers take it back.

One type for both ends: the command fills a ``Report`` and prints ``as_json()``; the deploy pipeline and the
benchmarks read the line with ``Report.from_json`` and then read fields, never keys. The analysis's
evidence keeps its wire names (``Evidence``, a TypedDict the type checker holds every reader to).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from infra.rollout.exits import Exit


class MinuteEvidence(TypedDict):
    """One minute of the ALB's metrics (analysisSource cloudwatch)."""

    start: str
    requests: float
    errors: float
    p99Ms: float | None


class Evidence(TypedDict, total=False):
    """The analysis's last verdict on the new version, as the report carries it."""

    state: str
    version: str
    requests: int | float
    errors: int | float
    p99Ms: float | None
    reason: str
    windowSeconds: float
    # Responses by version, then by status ("0": no response).
    responses: dict[str, dict[str, int]]
    # Answers slower than maxP99Ms, and evidence that went missing (the prober and users' requests).
    slow: int
    gaps: list[str]
    # Whose time the latency is ("server": the pods' logs; "prober"), and the prober's p99 beside it.
    timedBy: str
    networkP99Ms: float
    source: str
    minutes: list[MinuteEvidence]


@dataclass
class Report:
    """What happened, for people and for CI (--json)."""

    stack: str
    old_image: str = ""
    new_image: str = ""
    outcome: str = "not started"
    exit: Exit = Exit.FAILED
    rolled_back: bool = False
    # Whether the run changed the stack: False is the guarantee that it did not; None, not known (the
    # command was interrupted or broke while an update it started may have run).
    changed: bool | None = None
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    restored: str | None = None
    # The analysis's last verdict on the new version (its evidence), when it ran.
    analysis: Evidence | None = None
    # `rollout history`: the stack's releases, newest first.
    releases: list[dict[str, Any]] | None = None
    # A release an earlier run left unjudged (stage, image, previous, since, by): found by this run, which
    # aborted it first (or, `rollout status`, showed it).
    unfinished: dict[str, str] | None = None
    # `rollout status`: what the stack runs now.
    status: dict[str, Any] | None = None
    # A lock a lost run left on the stack, removed by this run: who took it, when, and why it was gone.
    lost: dict[str, Any] | None = None
    # The cluster's watchdog over this run's release (its Job, the stage it guards and what it would undo); and
    # what a watchdog did for the lost run before this one, found by this run.
    watchdog: dict[str, Any] | None = None
    watchdog_acted: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **({"releases": self.releases} if self.releases is not None else {}),
            "stack": self.stack,
            "oldImage": self.old_image,
            "newImage": self.new_image,
            "outcome": self.outcome,
            "exitCode": int(self.exit),
            "rolledBack": self.rolled_back,
            "changed": self.changed,
            "durations": {k: round(v, 1) for k, v in self.durations.items()},
            "error": self.error,
            "restored": self.restored,
            "analysis": self.analysis,
            "unfinished": self.unfinished,
            "lostRun": self.lost,
            "watchdog": self.watchdog,
            "watchdogActed": self.watchdog_acted,
            **({"status": self.status} if self.status is not None else {}),
        }

    def as_json(self) -> str:
        return json.dumps(self.as_dict())

    @classmethod
    def from_json(cls, text: str) -> Report:
        """The report in the last line of ``text`` (the command's stdout); ValueError when there is none."""
        lines = text.strip().splitlines()
        if not lines:
            raise ValueError("the rollout command printed no report")
        found = json.loads(lines[-1])
        if not isinstance(found, Mapping) or "stack" not in found:
            raise ValueError(f"not a rollout report: {lines[-1][:200]}")
        code = int(found.get("exitCode", int(Exit.FAILED)))
        return cls(
            stack=str(found["stack"]),
            old_image=str(found.get("oldImage") or ""),
            new_image=str(found.get("newImage") or ""),
            outcome=str(found.get("outcome") or ""),
            exit=Exit(code) if code in {int(e) for e in Exit} else Exit.FAILED,
            rolled_back=bool(found.get("rolledBack")),
            changed=found.get("changed"),
            durations={str(k): float(v) for k, v in (found.get("durations") or {}).items()},
            error=found.get("error"),
            restored=found.get("restored"),
            analysis=cast(Evidence | None, found.get("analysis")),
            releases=found.get("releases"),
            unfinished=found.get("unfinished"),
            status=found.get("status"),
            lost=found.get("lostRun"),
            watchdog=found.get("watchdog"),
            watchdog_acted=found.get("watchdogActed"),
        )

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Record how long the block took under ``name``, whether it ends well or not."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = time.monotonic() - start
