"""The promote workflow's pipeline (`python -m infra.pipeline promote --from A --to B`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.pipeline.steps import (
    infrastructure_workflow,
    reaches_url,
    run_promotion,
    said_lost,
    said_unfinished,
    unasked,
    until_unlocked,
    wait_served,
)
from infra.pipeline.summary import Summary
from infra.rollout.engine import Engine
from infra.rollout.exits import Exit
from infra.rollout.report import Report
from infra.settings import Settings, keys


@dataclass
class Promote:
    """The promote workflow's steps: ship the release ``source`` runs to ``stack`` (by digest, through the
    rollout command's checks and safe path), then make sure ``stack``'s url serves it."""

    source: str
    stack: str
    project: Path
    url_timeout: int
    lock_wait: int
    engine: Engine
    rollout: Callable[[Path, str, str], tuple[int, Report]] = run_promotion
    wait_served: Callable[[str, str, int], tuple[bool, str]] = wait_served
    sleep: Callable[[float], None] = time.sleep
    report: Summary = field(init=False)

    def __post_init__(self) -> None:
        self.report = Summary(self.stack, f"{self.source}'s release", kind="Promotion")

    def run(self) -> Exit:
        code, result = until_unlocked(
            lambda: self.rollout(self.project, self.source, self.stack), self.lock_wait, self.report, self.sleep
        )
        self.report.rollout = result
        exit_code = Exit(code) if code in {int(e) for e in Exit} else Exit.FAILED
        said_unfinished(result, self.report)
        said_lost(result, self.report)
        if exit_code == Exit.INFRA_CHANGES:
            self.report.add(
                f"infrastructure changes are pending on {self.stack}, and a promotion ships only the image: "
                f"{result.error or ''}".rstrip()
            )
            self.report.add(
                f"they are applied by {self.stack}'s infrastructure workflow ({infrastructure_workflow(self.stack)}) "
                "after review; run this promotion again once they are. Nothing was changed"
            )
            return exit_code
        if exit_code != Exit.OK:
            self.report.add(f"rollout: {result.outcome}: {result.error}")
            return exit_code
        settings = Settings.from_values(keys.strip(self.engine.config()))
        outputs = self.engine.outputs()
        tag = settings.image_tag or ""
        self.report.add(
            f"{self.stack} runs {result.new_image} (tag {tag}), the image {self.source} runs, byte for byte: "
            f"{result.outcome}"
        )
        if not reaches_url(settings):
            return unasked(self.report, tag)
        ok, said = self.wait_served(str(outputs.get("url", "")), tag, self.url_timeout)
        self.report.add(said or "the url was not asked")
        return Exit.OK if ok else Exit.NOT_SERVED
