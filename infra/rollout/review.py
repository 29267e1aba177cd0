"""What a rollout will do, reviewed before it runs: the preview's steps, which of them a rollout may take,
and the summary a person reads before saying yes (no Pulumi engine here).

"Plan" in this package means one thing only: the update plan the engine saves with a preview
(`--save-plan`) and holds the update to (`--plan`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from infra import images
from infra.identity import CANARY_DEPLOYMENT, DEPLOYMENT_TYPE, INGRESS_TYPE
from infra.release import CHANGE_CAUSE_PATH
from infra.settings import Settings
from infra.weights import ACTION_ANNOTATION

# Steps that change nothing.
QUIET_OPS = frozenset({"same", "read", "refresh"})
# What a release changes on the Deployment: its container image, and two annotations that follow it (why
# it runs, and the scanner's note on an image not pinned by digest), as the engine names them.
RELEASE_PATHS = frozenset({images.CONTAINER_IMAGE_PATH, CHANGE_CAUSE_PATH, 'metadata.annotations["checkov.io/skip1"]'})
# What a weighted canary's step changes on the Ingress: the forward action's weights.
WEIGHT_PATHS = frozenset({f'metadata.annotations["{ACTION_ANNOTATION}"]'})


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
        """An in-place update of the Deployment that changes its container image (and the annotations that
        follow it) and nothing else."""
        return (
            self.op == "update"
            and self.type == DEPLOYMENT_TYPE
            and self.changes is not None
            and set(self.changes) <= RELEASE_PATHS
        )

    @property
    def canary(self) -> bool:
        """A step on the canary Deployment (creating it, removing it, or changing its image), or one that
        changes the canary's weight on the Ingress and nothing else (canaryTraffic weights)."""
        weight_only = (
            self.op == "update"
            and self.type == INGRESS_TYPE
            and self.changes is not None
            and set(self.changes) <= WEIGHT_PATHS
        )
        return weight_only or (
            self.type == DEPLOYMENT_TYPE
            and self.name == CANARY_DEPLOYMENT
            and (self.op in ("create", "delete") or self.image_only)
        )


def unexpected_steps(steps: Iterable[Step], *, canary: bool = False) -> list[Step]:
    """Every step other than a change of the Deployment's container image (or no change at all), and,
    with ``canary``, of the canary's own: a Deployment update that also changes its replicas or its
    strategy is an infrastructure change too."""
    return [step for step in steps if step.op not in QUIET_OPS and not step.image_only and not (canary and step.canary)]


# How long after a new pod is ready the analysis has judged users' requests to it, on the node: the Service's
# routes take it in (about 1 s), users' answers reach the pod's log and the gate's next look (every 0.5 s).
# minReadySeconds at least this holds each step of the rolling update until its pods are judged: the
# controller retires no more old pods before the new ones count as available.
JUDGED_WITHIN_S = 3


def unheld_steps(settings: Settings) -> str | None:
    """Why a bad release may reach every pod before the analysis stops it, when it may; else None.

    The analysis judges the new version's pods while they serve, and a breach puts the old version back
    at once; the old pods still running take the requests again within a second. A step counts as done
    minReadySeconds after its pods are ready: shorter than the analysis needs, and the next steps retire
    the old pods before the verdict, so every request fails until old pods have started again (measured on 9
    replicas at maxUnavailable 50 %: hundreds of failed requests at minReadySeconds 1, a few dozen at 3;
    docs/benchmarks.md). The ALB's metrics judge by the minute: no step is held that long."""
    if not settings.analysis or settings.rollout.steps <= 1 or settings.min_ready_seconds >= JUDGED_WITHIN_S:
        return None
    if settings.eks is not None and settings.eks.analysis_source == "cloudwatch":
        return None
    return (
        f"minReadySeconds {settings.min_ready_seconds} lets a step end before the analysis has judged its pods "
        f"(about {JUDGED_WITHIN_S}s): a bad release may replace every pod before it is stopped. "
        f"minReadySeconds {JUDGED_WITHIN_S} or more holds each step until it is judged"
    )


@dataclass(frozen=True)
class RolloutSummary:
    """The rollout as a person reads it before saying yes."""

    stack: str
    old_image: str
    new_image: str
    settings: Settings
    # Why: the cause the release writes (kubernetes.io/change-cause, the update's message).
    cause: str = ""

    def render(self) -> str:
        rollout = self.settings.rollout
        lines = [
            f"Rollout plan for stack {self.stack}",
            f"  image        {self.old_image} -> {self.new_image}",
            *([f"  release      {self.cause}"] if self.cause else []),
            f"  replicas     {rollout.replicas} in namespace {self.settings.namespace}",
            f"  strategy     maxSurge {rollout.max_surge}, maxUnavailable {rollout.max_unavailable}: "
            f"at least {rollout.min_ready} ready and at most {rollout.max_pods} pods asked for at any time",
            f"  steps        {rollout.steps} (each: start new pods, wait until ready "
            f"{self.settings.min_ready_seconds}s, retire old ones)",
            f"  deadline     {self.settings.progress_deadline_seconds}s without progress fails the rollout",
        ]
        unheld = unheld_steps(self.settings)
        if unheld:
            lines.append(f"  note         {unheld}")
        if self.settings.target == "eks":
            lines.append(
                f"  pod size     {self.settings.pod_size} on Fargate ({self.settings.cpu} / {self.settings.memory})"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CanarySummary:
    """A canary as a person reads it before saying yes."""

    stack: str
    settings: Settings
    # canaryTraffic weights: the shares of requests it takes in turn (percent), each judged as a stage of its
    # own; empty: its share is by its pods, judged once.
    shares: tuple[int, ...] = ()

    def render(self) -> str:
        s = self.settings
        if self.shares:
            where = (
                "behind a target group of its own, at weight 0 until ready; then "
                + ", ".join(f"{share} %" for share in self.shares)
                + " of requests in turn, each read back from the ALB and judged"
            )
        else:
            where = "behind the same Service"
        window = canary_window_text(s) + (" at each share" if self.shares else "")
        return "\n".join(
            [
                f"Canary plan for stack {self.stack}",
                f"  canary       {s.canary_replicas} pod(s) of {s.canary_image} beside the {s.replicas} of {s.image}, "
                + where,
                f"  analysis     {s.analysis_rate} requests a second to the stack's url and users' own, for {window}"
                f": errors held to maxErrorRatio {s.max_error_ratio:.1%} and p99 to {s.max_p99_ms} ms, cleared on "
                f"{s.min_requests} responses or more",
                "  then         the rest of the replicas roll to it and the canary goes (or, with --pause, wait for "
                "`rollout promote` / `rollout abort`); on a breach, or no decision, the canary goes and nothing else "
                "changes",
            ]
        )


def canary_window_text(settings: Settings) -> str:
    """A canary's window, as people read it: canarySeconds, then until its evidence clears or condemns it, at
    most analysisMaxSeconds (undecided then: aborted)."""
    least, most = settings.canary_seconds, max(settings.canary_seconds, settings.analysis_max_seconds)
    return f"{least}s, then until its evidence decides (at most {most}s)"


def describe(steps: Iterable[Step]) -> str:
    """Unexpected steps, one a line, for the refusal message (with the properties an update changes)."""
    lines = []
    for step in steps:
        line = f"  {step.op:<8} {step.type} {step.name}"
        if step.op == "update":
            line += f" ({', '.join(step.changes)})" if step.changes else " (properties not known)"
        lines.append(line)
    return "\n".join(lines)
