"""What a rollout will do, decided from settings and a preview's steps (no Pulumi engine here)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from infra import images
from infra.settings import Settings

DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
# Steps that change nothing.
QUIET_OPS = frozenset({"same", "read", "refresh"})


class Exit(enum.IntEnum):
    """The command's exit codes; CI can tell each outcome apart."""

    OK = 0
    FAILED = 1  # the rollout failed and was left as it failed (--no-rollback), or an unexpected error
    USAGE = 2  # bad arguments or tag: nothing changed
    ROLLED_BACK = 3  # the rollout failed; the last good tag was restored and is healthy
    ROLLBACK_FAILED = 4  # the rollout failed and so did the rollback: act by hand
    BUSY = 5  # another update holds the stack: nothing changed
    NOT_CONFIRMED = 6  # declined, or no terminal to ask on and no --yes: nothing changed
    INFRA_CHANGES = 7  # the preview changes more than the Deployment: nothing changed
    # The deploy pipeline's own outcomes (python -m infra.pipeline); it passes the ones above through.
    NOT_BOOTSTRAPPED = 8  # the stack was never deployed: its infrastructure comes first; nothing changed
    TAG_CONFLICT = 9  # the image tag exists, built from another commit: nothing changed
    NOT_SERVED = 10  # the rollout succeeded, but the stack's url did not serve the tag in time


@dataclass(frozen=True)
class Step:
    """One step of a preview: the operation, the resource it applies to, and the properties it changes
    (the provider's detailed diff: paths such as spec.replicas; None when the engine gave none)."""

    op: str
    type: str
    urn: str
    changes: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def image_only(self) -> bool:
        """An in-place update of the Deployment that changes its container image and nothing else."""
        return (
            self.op == "update"
            and self.type == DEPLOYMENT_TYPE
            and self.changes is not None
            and set(self.changes) <= {images.CONTAINER_IMAGE_PATH}
        )


def unexpected_steps(steps: Iterable[Step]) -> list[Step]:
    """Every step other than a change of the Deployment's container image (or no change at all): a
    Deployment update that also changes its replicas or its strategy is an infrastructure change too."""
    return [step for step in steps if step.op not in QUIET_OPS and not step.image_only]


@dataclass(frozen=True)
class RolloutPlan:
    """The rollout as a person reads it before saying yes."""

    stack: str
    old_image: str
    new_image: str
    settings: Settings

    def render(self) -> str:
        rollout = self.settings.rollout
        lines = [
            f"Rollout plan for stack {self.stack}",
            f"  image        {self.old_image} -> {self.new_image}",
            f"  replicas     {rollout.replicas} in namespace {self.settings.namespace}",
            f"  strategy     maxSurge {rollout.max_surge}, maxUnavailable {rollout.max_unavailable}: "
            f"at least {rollout.min_ready} ready and at most {rollout.max_pods} pods asked for at any time",
            f"  steps        {rollout.steps} (each: start new pods, wait until ready "
            f"{self.settings.min_ready_seconds}s, retire old ones)",
            f"  deadline     {self.settings.progress_deadline_seconds}s without progress fails the rollout",
        ]
        if self.settings.target == "eks":
            lines.append(
                f"  pod size     {self.settings.pod_size} on Fargate ({self.settings.cpu} / {self.settings.memory})"
            )
        return "\n".join(lines)


def describe(steps: Iterable[Step]) -> str:
    """Unexpected steps, one a line, for the refusal message (with the properties an update changes)."""
    lines = []
    for step in steps:
        line = f"  {step.op:<8} {step.type} {step.name}"
        if step.op == "update":
            line += f" ({', '.join(step.changes)})" if step.changes else " (properties not known)"
        lines.append(line)
    return "\n".join(lines)
