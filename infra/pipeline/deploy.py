"""The deploy workflow's pipeline (`python -m infra.pipeline --stack S --tag T --revision SHA`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra import images
from infra.pipeline.steps import (
    infrastructure_workflow,
    reaches_url,
    run_rollout,
    said_lost,
    said_unfinished,
    unasked,
    until_unlocked,
    wait_served,
)
from infra.pipeline.summary import Summary
from infra.rollout.engine import Engine, EngineError
from infra.rollout.exits import Exit
from infra.rollout.registry import Registry, registry_for
from infra.rollout.report import Report
from infra.settings import Settings, SettingsError, keys

REVISION_LABEL = "org.opencontainers.image.revision"


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
                f"({infrastructure_workflow(self.stack)}). Nothing was changed."
            )
            return Exit.NOT_BOOTSTRAPPED
        if not outputs.get("image"):
            self.report.add(
                f"stack {self.stack} has not been deployed yet (it has no outputs): its infrastructure comes first. "
                f"Run the infrastructure workflow ({infrastructure_workflow(self.stack)}), "
                f"or `pulumi up --stack {self.stack}` with the rights to create it, then deploy again. "
                "Nothing was changed."
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
        said_unfinished(result, self.report)
        said_lost(result, self.report)
        if exit_code == Exit.INFRA_CHANGES:
            self.report.add(
                f"infrastructure changes are pending on {self.stack}, and a deploy ships only the image: "
                f"{result.error or ''}".rstrip()
            )
            self.report.add(
                f"they are applied by the infrastructure workflow ({infrastructure_workflow(self.stack)}) "
                "after review; this commit ships once they are (re-run this deploy, or the next merge ships)"
            )
        elif exit_code == Exit.CLUSTER_AHEAD:
            self.report.add(f"EKS upgraded {self.stack}'s cluster itself: {result.error or ''}".rstrip())
            self.report.add(
                f"set the version and its add-on builds, and apply them through the infrastructure workflow "
                f"({infrastructure_workflow(self.stack)}); until then no deploy can change the stack"
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
