"""When a rollout is complete, and when it has definitively failed: one definition of each, used by the
rollout command, the benchmarks' watchers and the tests.

Complete is what `kubectl rollout status` waits for (kubectl's pkg/polymorphichelpers/rollout_status.go,
DeploymentStatusViewer.Status): the controller has observed the current spec; every replica is updated;
no old replica is left; every updated replica is available. A definitive failure is one that waiting
cannot mend: the progress deadline passed (the controller's own verdict), or a pod of the new image
shows a cause that no retry fixes (definitive_failure below).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The reason the Deployment controller sets on its Progressing condition once the progress deadline
# passes (k8s.io/kubernetes pkg/controller/deployment/util: TimedOutReason).
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

# A ready pod whose zone neither it nor its node says (or whose node this identity may not read).
UNKNOWN_ZONE = "unknown"


@dataclass(frozen=True)
class Health:
    """A Deployment's rollout state, from its spec and status."""

    image: str
    replicas: int
    ready: int
    updated: int
    available: int
    # The controller has observed the current generation of the spec.
    current: bool
    # Pods of all its ReplicaSets that are not shutting down: more than ``updated`` while old ones remain.
    total: int
    # The Progressing condition says the progress deadline passed.
    deadline_exceeded: bool = False

    @classmethod
    def of(cls, deployment: Any) -> Health:
        """The state of a Deployment as the Kubernetes client returns it."""
        status = deployment.status
        conditions = status.conditions or []
        return cls(
            image=deployment.spec.template.spec.containers[0].image,
            replicas=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
            ready=status.ready_replicas or 0,
            updated=status.updated_replicas or 0,
            available=status.available_replicas or 0,
            current=(status.observed_generation or 0) >= (deployment.metadata.generation or 0),
            total=status.replicas or 0,
            deadline_exceeded=any(c.type == "Progressing" and c.reason == DEADLINE_EXCEEDED for c in conditions),
        )

    @property
    def waiting_for(self) -> str | None:
        """What the rollout still waits for, in kubectl's order; None once it is complete."""
        if not self.current:
            return "the spec update to be observed"
        if self.updated < self.replicas:
            return f"{self.updated} of {self.replicas} new replicas updated"
        if self.total > self.updated:
            return f"{self.total - self.updated} old replicas pending termination"
        if self.available < self.updated:
            return f"{self.available} of {self.updated} updated replicas available"
        return None

    @property
    def complete(self) -> bool:
        """The rollout is complete: `kubectl rollout status` would say "successfully rolled out"."""
        return self.waiting_for is None

    @property
    def failed(self) -> str | None:
        """The controller's own verdict: the progress deadline passed (kubectl fails on it too)."""
        if self.current and self.deadline_exceeded and not self.complete:
            return f"the rollout exceeded its progress deadline ({self})"
        return None

    def __str__(self) -> str:
        text = f"{self.image}: {self.ready}/{self.replicas} ready, {self.updated} updated, {self.available} available"
        if self.total > self.updated:
            text += f", {self.total - self.updated} old still running"
        return text


# Why a new pod will never get ready, however long the wait: the registry has no such image, the
# container keeps exiting, its configuration cannot run, or (on Fargate, where no node will ever be
# added) nothing can schedule it. A slow pull, one restart or a slow start are not verdicts: those get
# the progress deadline.
NOT_FOUND = ("not found", "manifest unknown", "name unknown")
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"})
RESTARTS_TO_GIVE_UP = 2


def definitive_failure(pods: list[Any], events: list[Any], image: str, fargate: bool) -> str | None:
    """Why the pods that run ``image`` can never become ready, or None while they still might."""
    running = _running(pods, image)
    names = {pod.metadata.name for pod in running}
    for pod in running:
        name = pod.metadata.name
        for condition in pod.status.conditions or []:
            if fargate and (condition.type, condition.status, condition.reason) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ):
                return (
                    f"pod {name} cannot be scheduled ({condition.message}): "
                    "does a Fargate profile select its namespace?"
                )
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            reason, message = (waiting.reason or "", waiting.message or "") if waiting else ("", "")
            if reason == "ErrImagePull" and _not_found(message):
                return f"pod {name}: the registry has no {image}: {message}"
            if reason in CONFIG_ERRORS:
                return f"pod {name}: {reason}: {message}"
            if reason == "CrashLoopBackOff" and (status.restart_count or 0) >= RESTARTS_TO_GIVE_UP:
                return f"pod {name}: container {status.name} keeps exiting ({status.restart_count} restarts)"
    # A pull error stays in a pod's status only until the next retry; the node's event stays.
    for event in events:
        if event.involved_object.name in names and event.reason == "Failed" and _not_found(event.message or ""):
            return f"pod {event.involved_object.name}: the registry has no {image}: {event.message}"
    return None


def pending_cause(pods: list[Any], events: list[Any], image: str) -> str | None:
    """Why a pod that runs ``image`` is not ready yet, as the cluster last said it (a pod not scheduled
    and why, a container waiting and why, a failing probe), or None when no pod says: the cause a
    deadline failure names, since the deadline's own message says only that time ran out."""
    running = _running(pods, image)
    names = {pod.metadata.name for pod in running}
    for pod in running:
        name = pod.metadata.name
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return f"pod {name} is not scheduled: {condition.reason}: {condition.message}"
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason and waiting.reason != "ContainerCreating":
                detail = f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
                return f"pod {name}: container {status.name} waits: {detail}"
    probes = [e for e in events if e.involved_object.name in names and e.reason == "Unhealthy"]
    if probes:
        return f"pod {probes[-1].involved_object.name}: {probes[-1].message}"
    return None


def _running(pods: list[Any], image: str) -> list[Any]:
    """The pods with a container that runs ``image``."""
    return [pod for pod in pods if image in [c.image for c in pod.spec.containers]]


def _not_found(message: str) -> bool:
    return any(marker in message.lower() for marker in NOT_FOUND)


@dataclass
class Verdict:
    """The rollout of ``image`` cannot succeed: ``reason``, found at ``at`` (monotonic), acted on by ``act``
    (the rollout command interrupts the engine's update). Decided once: a second finding changes nothing,
    so the engine is asked to cancel once and is never killed half-way."""

    image: str
    fargate: bool
    act: Callable[[], None]
    reason: str | None = None
    at: float | None = None

    def decide(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason, self.at = reason, time.monotonic()
        self.act()


def wait_complete(
    read: Callable[[], Health],
    timeout: float,
    *,
    verdict: Verdict | None = None,
    behind: Callable[[Health], None] | None = None,
    explain: Callable[[], str | None] | None = None,
    poll: float = 0.5,
) -> str | None:
    """Wait until the Deployment ``read`` returns is complete; None once it is, or why it will not be:
    a ``verdict``, the controller's deadline, or ``timeout`` seconds passing (``explain`` adds why the
    new pods are not ready, as the cluster says it). ``behind`` hears the first state that is not
    complete yet (the caller says it is waiting)."""
    end = time.monotonic() + timeout
    told = False
    while True:
        state = read()
        if state.complete:
            return None
        if not told and behind is not None:
            behind(state)
            told = True
        if verdict is not None and verdict.reason is not None:
            return verdict.reason
        failed = state.failed
        if failed is None and time.monotonic() >= end:
            failed = f"the rollout did not complete within {timeout:.0f}s: {state}"
        if failed is not None:
            cause = explain() if explain is not None else None
            return f"{failed}; {cause}" if cause else failed
        time.sleep(poll)
