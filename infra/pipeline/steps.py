"""The steps both pipelines share: the rollout command run as a user would, the wait for another update's
lock, and the check that the stack's url serves the release."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from infra.pipeline.summary import Summary
from infra.rollout.exits import Exit
from infra.rollout.report import Report
from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# The workflows that apply a stack's infrastructure changes, after review; a deploy or a promotion names
# its stack's when it finds some pending. Dev's is the one for any stack not listed.
INFRASTRUCTURE_WORKFLOW = ".github/workflows/infrastructure.yml"
INFRASTRUCTURE_WORKFLOWS = {"prod": ".github/workflows/infrastructure-prod.yml"}


def infrastructure_workflow(stack: str) -> str:
    """The workflow that applies ``stack``'s infrastructure."""
    return INFRASTRUCTURE_WORKFLOWS.get(stack, INFRASTRUCTURE_WORKFLOW)


def rollout_command(project: Path, *args: str, asks: bool = True) -> tuple[int, Report]:
    """The rollout command with ``args``, as a user would run it (`--json` added, and `--yes` to a verb that
    ``asks`` for confirmation): its exit code and its report (its stderr passed on)."""
    done = subprocess.run(
        [sys.executable, "-m", "infra.rollout", *args, *(("--yes",) if asks else ()), "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(done.stderr)
    try:
        return done.returncode, Report.from_json(done.stdout)
    except ValueError:
        return done.returncode, Report(stack="", outcome="", error=(done.stdout + done.stderr).strip()[-2000:])


def run_rollout(project: Path, stack: str, tag: str, canary: int) -> tuple[int, Report]:
    """`rollout --stack STACK --tag TAG` (``canary`` pods first, when not 0)."""
    return rollout_command(project, "--stack", stack, "--tag", tag, *(("--canary", str(canary)) if canary else ()))


def run_promotion(project: Path, source: str, stack: str) -> tuple[int, Report]:
    """`rollout promote --from SOURCE --to STACK`."""
    return rollout_command(project, "promote", "--from", source, "--to", stack)


def wait_served(url: str, tag: str, timeout: int) -> tuple[bool, str]:
    """Whether ``url`` serves ``tag`` within ``timeout`` seconds (scripts/wait-for-version.sh), and what it said."""
    script = ROOT / "scripts" / "wait-for-version.sh"
    done = subprocess.run([str(script), url, tag, str(timeout)], capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def until_unlocked(
    rollout: Callable[[], tuple[int, Report]], lock_wait: int, report: Summary, sleep: Callable[[float], None]
) -> tuple[int, Report]:
    """Run the rollout command; while another update holds the stack's lock, wait and run it again, for
    ``lock_wait`` seconds at most."""
    deadline = time.monotonic() + lock_wait
    while True:
        code, result = rollout()
        if code != Exit.BUSY or time.monotonic() >= deadline:
            return code, result
        report.add("another update holds the stack's lock (a preview, or another deploy): waiting")
        sleep(min(10.0, max(0.0, deadline - time.monotonic())))


def reaches_url(settings: Settings) -> bool:
    """Whether this runner is taken to reach the stack's url: not where its analysis reads the ALB's metrics
    instead (rolling:analysisSource cloudwatch, chosen for a runner that cannot reach the ALB)."""
    return settings.eks is None or settings.eks.analysis_source != "cloudwatch"


def unasked(report: Summary, tag: str) -> Exit:
    report.add(
        f"the url was not asked for {tag}: this stack's analysis reads the ALB's metrics (rolling:analysisSource "
        "cloudwatch) because the runner does not reach the ALB; the rollout confirmed the tag on every replica"
    )
    return Exit.OK


def said_unfinished(result: Report, summary: Summary) -> None:
    """Say in ``summary`` the release an earlier run left unjudged, which the command aborted first."""
    if result.unfinished:
        left = result.unfinished
        summary.add(
            f"first, {left.get('image')} was aborted: an earlier run left it unjudged in its {left.get('stage')} "
            f"(since {left.get('since')}, by {left.get('by')})"
        )


def said_lost(result: Report, summary: Summary) -> None:
    """Say in ``summary`` the lock a lost run left on the stack, which the command removed."""
    if result.lost:
        run = result.lost.get("run") or "a run of this machine"
        summary.add(f"the stack's lock, left by a lost run ({run}), was removed: {result.lost.get('why')}")
