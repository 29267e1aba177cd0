"""What a pipeline run says for people: its lines, the rollout's evidence, GitHub's step summary."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from infra.rollout.exits import Exit
from infra.rollout.report import Evidence, Report


@dataclass
class Summary:
    """What the deploy did, for the summary and for CI."""

    stack: str
    tag: str
    lines: list[str] = field(default_factory=list)
    rollout: Report | None = None
    kind: str = "Deploy"

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(f"{self.kind.lower()}: {line}", file=sys.stderr, flush=True)

    def markdown(self, exit_code: Exit) -> str:
        title = f"## {self.kind} of {self.tag} to {self.stack}: {exit_code.name.lower().replace('_', ' ')}"
        body = [title, "", *(f"- {line}" for line in self.lines)]
        if self.rollout is not None and self.rollout.analysis:
            body += ["", *analysis_markdown(self.rollout.analysis)]
        if self.rollout is not None:
            body += ["", "```json", json.dumps(self.rollout.as_dict(), indent=2), "```"]
        return "\n".join(body) + "\n"


def analysis_markdown(analysis: Evidence) -> list[str]:
    """The analysis's verdict for the summary: the verdict, then the responses by version and status."""
    p99 = analysis.get("p99Ms")
    lines = [
        f"### Analysis: {analysis.get('state')}",
        "",
        f"{analysis.get('version')}: {analysis.get('requests')} responses, {analysis.get('errors')} errors, "
        f"p99 {'-' if p99 is None else f'{p99} ms'} over {analysis.get('windowSeconds')} s: {analysis.get('reason')}",
        "",
    ]
    if analysis.get("source") == "cloudwatch":
        # The ALB's metrics: its target group's minutes, both versions in one until the rollout completed.
        lines += ["| minute (UTC) | requests | errors | p99 ms |", "|---|---|---|---|"]
        for minute in analysis.get("minutes") or []:
            lines.append(f"| {minute['start']} | {minute['requests']:g} | {minute['errors']:g} | {minute['p99Ms']} |")
        return lines
    lines += ["| version | status | responses |", "|---|---|---|"]
    for version, statuses in (analysis.get("responses") or {}).items():
        for status, count in statuses.items():
            lines.append(f"| {version} | {'no response' if status == '0' else status} | {count} |")
    return lines


def write_summary(path: str | None, markdown: str) -> None:
    summary = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown)
