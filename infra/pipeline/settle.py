"""`python -m infra.pipeline settle --stack S`: what a workflow runs when its deploy or promotion failed or was
cancelled. A run lost with its runner leaves its release unjudged (a canary serving, a bake cut short) and
maybe the stack's lock: this step aborts that release at once (`rollout abort`, which removes a lock whose
holder is provably gone first), rather than leaving it until the next push. A stack with nothing left
unjudged is left alone: a paused canary, or a release the run itself settled, are not this step's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.pipeline.steps import rollout_command, said_lost
from infra.pipeline.summary import Summary
from infra.rollout.exits import Exit
from infra.rollout.report import Report


@dataclass
class Settle:
    """Settle ``stack``'s unfinished release, through ``command`` (the rollout command, as a user runs it)."""

    stack: str
    project: Path
    command: Callable[..., tuple[int, Report]] = field(default=rollout_command)

    def __post_init__(self) -> None:
        self.report = Summary(self.stack, "its unfinished release", kind="Settle")

    def run(self) -> Exit:
        code, status = self.command(self.project, "status", "--stack", self.stack, asks=False)
        if code != Exit.OK:
            self.report.add(f"could not read stack {self.stack}: {status.error}")
            return Exit(code) if code in {int(e) for e in Exit} else Exit.FAILED
        left = status.unfinished
        if not left:
            self.report.add(f"nothing to settle: no release was left unjudged on stack {self.stack}")
            return Exit.OK
        self.report.tag = str(left.get("image"))
        self.report.add(
            f"a release was lost: {left.get('image')}, in its {left.get('stage')} since {left.get('since')} "
            f"(by {left.get('by')}), its judgement never finished; aborting it"
        )
        code, result = self.command(self.project, "abort", "--stack", self.stack)
        self.report.rollout = result
        said_lost(result, self.report)
        if code == Exit.OK:
            self.report.add(f"settled: {left.get('image')} aborted; {left.get('previous') or 'what ran before'} serves")
        else:
            self.report.add(f"settling failed ({result.outcome}): {result.error}")
        return Exit(code) if code in {int(e) for e in Exit} else Exit.FAILED
