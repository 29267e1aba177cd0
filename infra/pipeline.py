"""deploy --stack STACK --tag TAG --revision SHA: the deploy workflow's steps, the same on every target;
`promote --from A --to B`: the promote workflow's.

1. the stack must exist (its infrastructure comes first, from the infrastructure workflow);
2. the image: pushed if its tag is absent; an earlier push of the same commit is reused (a re-run);
   a tag that names another build is refused, since the registry's tags are immutable;
3. the rollout command ships the tag (preview, plan, rollout, rollback), waiting a bounded time for
   another update's lock to go;
4. the stack's url must serve the tag;
5. a summary for people (GitHub's step summary when there is one), and an exit code per outcome.

On eks the registry is ECR (scripts/registry.sh); on local it is the node's (cluster/images.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import images
from infra.rollout.engine import Engine, EngineError, interruptible_children
from infra.rollout.exits import Exit
from infra.rollout.registry import Registry, RegistryError, registry_for
from infra.rollout.report import Evidence, Report
from infra.settings import Settings, SettingsError, keys

ROOT = Path(__file__).resolve().parents[1]
REVISION_LABEL = "org.opencontainers.image.revision"
# The workflow that applies infrastructure changes; the deploy names it when it finds some pending.
INFRASTRUCTURE_WORKFLOW = ".github/workflows/infrastructure.yml"


def rollout_command(project: Path, *args: str) -> tuple[int, Report]:
    """The rollout command with ``args``, as a user would run it (`--yes --json` added): its exit code and
    its report (its stderr passed on)."""
    done = subprocess.run(
        [sys.executable, "-m", "infra.rollout", *args, "--yes", "--json"],
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


def wait_served(url: str, tag: str, timeout: int) -> tuple[bool, str]:
    """Whether ``url`` serves ``tag`` within ``timeout`` seconds (scripts/wait-for-version.sh), and what it said."""
    script = ROOT / "scripts" / "wait-for-version.sh"
    done = subprocess.run([str(script), url, tag, str(timeout)], capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


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


@dataclass
class Deploy:
    """One run of the pipeline on one stack."""

    stack: str
    tag: str
    revision: str
    project: Path
    url_timeout: int
    lock_wait: int
    engine: Engine
    # Canary pods the rollout runs first (0: none); none where the stack turned the analysis off.
    canary: int = 0
    registry_for: Callable[[str], Registry] = registry_for
    rollout: Callable[[Path, str, str, int], tuple[int, Report]] = run_rollout
    wait_served: Callable[[str, str, int], tuple[bool, str]] = wait_served
    sleep: Callable[[float], None] = time.sleep
    report: Summary = field(init=False)

    def __post_init__(self) -> None:
        self.report = Summary(self.stack, self.tag)

    def run(self) -> Exit:
        try:
            images.check_tag(self.tag)
        except images.ImageError as err:
            self.report.add(f"--tag {err}")
            return Exit.USAGE
        try:
            outputs = self.engine.outputs()
            config = self.engine.config()
        except EngineError as err:
            said = " ".join(line for line in str(err).splitlines()[1:] if line.strip())
            self.report.add(
                f"stack {self.stack} cannot be read ({said.strip() or err}): create it first "
                f"(`pulumi stack init {self.stack}`, docs/aws.md), then run the infrastructure workflow "
                f"({INFRASTRUCTURE_WORKFLOW}). Nothing was changed."
            )
            return Exit.NOT_BOOTSTRAPPED
        if not outputs.get("image"):
            self.report.add(
                f"stack {self.stack} has not been deployed yet (it has no outputs): its infrastructure comes first. "
                f"Run the infrastructure workflow ({INFRASTRUCTURE_WORKFLOW}), or `pulumi up --stack {self.stack}` "
                "with the rights to create it, then deploy again. Nothing was changed."
            )
            return Exit.NOT_BOOTSTRAPPED
        values = keys.strip(config)
        try:
            settings = Settings.from_values(values)
        except SettingsError as err:
            self.report.add(f"stack {self.stack}'s settings: {err}; nothing was changed")
            return Exit.USAGE
        # The repository the stack names (its ECR repository on eks), never the bootstrap image's default.
        repository = str(outputs.get("repositoryUrl") or values.get(keys.IMAGE_REPOSITORY.name, ""))
        if not repository:
            self.report.add(
                f"stack {self.stack} names no image repository (rolling:imageRepository); nothing was changed"
            )
            return Exit.USAGE
        reference = images.reference(repository, self.tag)
        exit_code = self.publish(self.registry_for(settings.target), reference)
        if exit_code is not None:
            return exit_code
        if values.get(keys.IMAGE_REPOSITORY.name) != repository:
            self.engine.run("config", "set", keys.IMAGE_REPOSITORY.full, repository)
        if self.canary and not settings.analysis:
            self.report.add("no canary: the stack ships on readiness alone (rolling:analysis false)")
            self.canary = 0
        exit_code = self.ship()
        if exit_code != Exit.OK:
            return exit_code
        # A rollout changes the image, not the url: the one read before it stands.
        return self.served(str(outputs.get("url", ""))) if reaches_url(settings) else unasked(self.report, self.tag)

    def publish(self, registry: Registry, reference: str) -> Exit | None:
        """Push the image unless this commit's build is there already; refuse a tag that names another build."""
        found = registry.revision(reference)
        if found is None:
            registry.push(reference, self.tag, self.revision)
            self.report.add(f"built {reference} from {self.revision} and pushed it")
            return None
        if found == self.revision:
            self.report.add(f"{reference} is there already, built from {self.revision}: not built again")
            return None
        what = f"built from {found}" if found else f"with no {REVISION_LABEL} label"
        self.report.add(
            f"{reference} already exists {what}, not from {self.revision}; the registry's tags are immutable, "
            "so shipping this tag would not ship this commit. Nothing was changed: tag this build otherwise "
            "(a longer SHA), or remove the other image if it is a mistake."
        )
        return Exit.TAG_CONFLICT

    def ship(self) -> Exit:
        code, result = until_unlocked(
            lambda: self.rollout(self.project, self.stack, self.tag, self.canary),
            self.lock_wait,
            self.report,
            self.sleep,
        )
        self.report.rollout = result
        exit_code = Exit(code) if code in {int(e) for e in Exit} else Exit.FAILED
        if exit_code == Exit.INFRA_CHANGES:
            self.report.add(
                f"infrastructure changes are pending on {self.stack}, and a deploy ships only the image: "
                f"{result.error or ''}".rstrip()
            )
            self.report.add(
                f"they are applied by the infrastructure workflow ({INFRASTRUCTURE_WORKFLOW}) after review; "
                "this commit ships once they are (re-run this deploy, or the next merge ships)"
            )
        elif exit_code == Exit.OK:
            self.report.add(f"rollout: {result.outcome} ({result.old_image} -> {result.new_image})")
        else:
            self.report.add(f"rollout: {result.outcome}: {result.error}")
        return exit_code

    def served(self, url: str) -> Exit:
        ok, said = self.wait_served(url, self.tag, self.url_timeout)
        self.report.add(said or f"{url} was not asked")
        return Exit.OK if ok else Exit.NOT_SERVED


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


def run_promotion(project: Path, source: str, stack: str) -> tuple[int, Report]:
    """`rollout promote --from SOURCE --to STACK`."""
    return rollout_command(project, "promote", "--from", source, "--to", stack)


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


def promote_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="promote", description="Ship the release one stack runs to another (rollout promote), check the url."
    )
    parser.add_argument("--from", dest="source", required=True, help="the stack whose release to promote, such as dev")
    parser.add_argument("--to", dest="stack", required=True, help="the stack to promote it to, such as prod")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    parser.add_argument("--url-timeout", type=int, default=300, help="seconds the url has to serve the release")
    parser.add_argument("--lock-wait", type=int, default=600, help="seconds to wait for another update's lock")
    parser.add_argument("--summary", help="append the summary (Markdown) here (default: $GITHUB_STEP_SUMMARY)")
    args = parser.parse_args(argv)
    project = Path(args.cwd).resolve()
    promote = Promote(args.source, args.stack, project, args.url_timeout, args.lock_wait, Engine(project, args.stack))
    try:
        code = promote.run()
    except (RuntimeError, EngineError, OSError, subprocess.SubprocessError) as err:
        promote.report.add(f"failed: {err.__class__.__name__}: {err}")
        code = Exit.FAILED
    write_summary(args.summary, promote.report.markdown(code))
    return int(code)


def write_summary(path: str | None, markdown: str) -> None:
    summary = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy", description="Build and push the app image if absent, ship it with rollout, check the url."
    )
    parser.add_argument("--stack", required=True, help="the stack to deploy to, such as dev")
    parser.add_argument("--tag", required=True, help="the image tag, such as the short commit SHA")
    parser.add_argument("--revision", required=True, help="the full commit SHA the image is built from")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    parser.add_argument("--url-timeout", type=int, default=300, help="seconds the url has to serve the tag")
    parser.add_argument("--lock-wait", type=int, default=600, help="seconds to wait for another update's lock")
    parser.add_argument(
        "--canary", type=int, default=0, metavar="N", help="run N canary pods first and analyse them (rollout --canary)"
    )
    parser.add_argument("--summary", help="append the summary (Markdown) here (default: $GITHUB_STEP_SUMMARY)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    interruptible_children()
    if given[:1] == ["promote"]:
        return promote_main(given[1:])
    args = parse_args(given)
    project = Path(args.cwd).resolve()
    deploy = Deploy(
        stack=args.stack,
        tag=args.tag,
        revision=args.revision,
        project=project,
        url_timeout=args.url_timeout,
        lock_wait=args.lock_wait,
        engine=Engine(project, args.stack),
        canary=args.canary,
    )
    try:
        code = deploy.run()
    except (RegistryError, RuntimeError, EngineError, OSError, subprocess.SubprocessError) as err:
        deploy.report.add(f"failed: {err.__class__.__name__}: {err}")
        code = Exit.FAILED
    write_summary(args.summary, deploy.report.markdown(code))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
