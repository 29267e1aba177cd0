"""Which pod states end a rollout at once (waiting cannot mend them) and which get the progress deadline."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from infra.rollout.watch import Verdict, definitive_failure

NEW, OLD = "registry/app:2", "registry/app:1"


def pod(
    image: str = NEW,
    waiting: tuple[str, str] | None = None,
    restarts: int = 0,
    unschedulable: bool = False,
    name: str = "app-new-1",
) -> client.V1Pod:
    reason, message = waiting or ("", "")
    state = client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=reason, message=message))
    statuses = [
        client.V1ContainerStatus(
            name="nginx", image=image, image_id="", ready=False, restart_count=restarts, state=state
        )
    ]
    conditions = [
        client.V1PodCondition(
            type="PodScheduled", status="False", reason="Unschedulable", message="0/0 nodes are available"
        )
    ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image=image)]),
        status=client.V1PodStatus(
            container_statuses=statuses if waiting else None, conditions=conditions if unschedulable else None
        ),
    )


def event(pod_name: str, reason: str, message: str) -> client.CoreV1Event:
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="e"),
        involved_object=client.V1ObjectReference(kind="Pod", name=pod_name),
        reason=reason,
        message=message,
    )


MISSING = 'failed to resolve reference "registry/app:2": registry/app:2: not found'


@pytest.mark.parametrize(
    ("pods", "events", "fargate", "says"),
    [
        ([pod(waiting=("ErrImagePull", MISSING))], [], False, "the registry has no registry/app:2"),
        ([pod(waiting=("ErrImagePull", "manifest unknown: Requested image not found"))], [], True, "has no"),
        # The pod now backs off; the node's event still says why.
        (
            [pod(waiting=("ImagePullBackOff", 'Back-off pulling image "registry/app:2"'))],
            [event("app-new-1", "Failed", f"Failed to pull image: {MISSING}")],
            False,
            "the registry has no registry/app:2",
        ),
        ([pod(waiting=("CrashLoopBackOff", "back-off 20s"), restarts=2)], [], False, "keeps exiting (2 restarts)"),
        (
            [pod(waiting=("CreateContainerConfigError", "container has runAsNonRoot and image will run as root"))],
            [],
            False,
            "CreateContainerConfigError: container has runAsNonRoot",
        ),
        ([pod(unschedulable=True)], [], True, "does a Fargate profile select its namespace?"),
    ],
)
def test_failures_that_waiting_cannot_mend(pods: list[Any], events: list[Any], fargate: bool, says: str) -> None:
    reason = definitive_failure(pods, events, NEW, fargate)
    assert reason is not None and reason.startswith("pod app-new-1") and says in reason


@pytest.mark.parametrize(
    ("pods", "events", "fargate"),
    [
        ([pod()], [], False),  # still starting
        ([pod(waiting=("ErrImagePull", "dial tcp 10.0.0.1:443: i/o timeout"))], [], False),  # a slow registry
        ([pod(waiting=("ContainerCreating", ""))], [], True),
        ([pod(waiting=("CrashLoopBackOff", "back-off 10s"), restarts=1)], [], False),  # one restart
        ([pod(unschedulable=True)], [], False),  # a local node may get room
        ([pod(image=OLD, waiting=("ErrImagePull", MISSING))], [], False),  # not the new image's pod
        ([pod()], [event("other-pod", "Failed", MISSING)], False),  # another pod's event
    ],
)
def test_transient_states_get_the_deadline(pods: list[Any], events: list[Any], fargate: bool) -> None:
    assert definitive_failure(pods, events, NEW, fargate) is None


def test_a_verdict_acts_once_with_its_time() -> None:
    acted: list[str] = []
    verdict = Verdict(NEW, fargate=False, act=lambda: acted.append("interrupt"))
    verdict.decide("pod x: the registry has no registry/app:2")
    assert acted == ["interrupt"] and verdict.at is not None and verdict.reason is not None
