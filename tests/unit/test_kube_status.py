"""When a rollout is complete (kubectl's test), which pod states end it at once (waiting cannot mend them),
which get the progress deadline, and the wait that uses both."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from infra.kube.status import Health, Verdict, definitive_failure, pending_cause, wait_complete

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
    first = verdict.at
    verdict.decide("pod y: keeps exiting")
    assert acted == ["interrupt"], "decided once: the engine is asked to cancel once, never killed"
    assert verdict.at == first and verdict.reason == "pod x: the registry has no registry/app:2"


def health_of(ready: int, updated: int, available: int, total: int, current: bool = True, replicas: int = 3) -> Health:
    return Health(NEW, replicas, ready, updated, available, current, total)


@pytest.mark.parametrize(
    ("state", "complete"),
    [
        (health_of(3, 3, 3, 3), True),
        # The new pods are all ready and available, but two old ones still run: not done (kubectl agrees).
        (health_of(3, 3, 3, 5), False),
        (health_of(3, 3, 2, 3), False),  # one new pod not yet available for minReadySeconds
        (health_of(3, 2, 2, 3), False),  # one replica not updated yet
        (health_of(3, 3, 3, 3, current=False), False),  # the controller has not seen the change yet
        (health_of(0, 0, 0, 0, replicas=0), True),  # scaled to zero: nothing to wait for
    ],
)
def test_complete_is_kubectl_rollout_status(state: Health, complete: bool) -> None:
    assert state.complete is complete


def deployment(
    generation: int, observed: int, replicas: int, updated: int, available: int, total: int, reason: str = ""
) -> client.V1Deployment:
    conditions = [client.V1DeploymentCondition(type="Progressing", status="False", reason=reason)] if reason else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d", generation=generation),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(),
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image=NEW)])
            ),
        ),
        status=client.V1DeploymentStatus(
            observed_generation=observed,
            replicas=total,
            updated_replicas=updated,
            available_replicas=available,
            ready_replicas=available,
            conditions=conditions,
        ),
    )


def test_health_of_a_deployment_object() -> None:
    state = Health.of(deployment(4, 4, 3, 3, 3, 3))
    assert (state.image, state.replicas, state.complete) == (NEW, 3, True)
    assert not Health.of(deployment(5, 4, 3, 3, 3, 3)).complete
    timed_out = Health.of(deployment(5, 5, 3, 1, 1, 3, reason="ProgressDeadlineExceeded"))
    assert timed_out.failed is not None and "progress deadline" in timed_out.failed
    assert Health.of(deployment(5, 5, 3, 1, 1, 3)).failed is None


def test_health_names_the_old_pods_still_running() -> None:
    assert str(health_of(3, 3, 3, 5)).endswith("3 available, 2 old still running")


def test_waiting_returns_once_complete_and_says_it_waits_once() -> None:
    # The stale-condition sequence: the engine's wait ended with the new pods ready but old ones running.
    states = iter([health_of(3, 3, 2, 5), health_of(3, 3, 3, 4), health_of(3, 3, 3, 3)])
    behind: list[Health] = []
    assert wait_complete(lambda: next(states), timeout=5, behind=behind.append, poll=0.01) is None
    assert behind == [health_of(3, 3, 2, 5)]


def test_a_rollout_already_complete_is_not_waited_for() -> None:
    behind: list[Health] = []
    assert wait_complete(lambda: health_of(3, 3, 3, 3), timeout=5, behind=behind.append) is None
    assert behind == []


def test_waiting_ends_on_a_verdict_the_deadline_or_the_timeout() -> None:
    stuck = health_of(3, 3, 2, 5)
    said = wait_complete(lambda: stuck, timeout=0, poll=0.01)
    assert said is not None and "did not complete within 0s" in said

    verdict = Verdict(NEW, fargate=False, act=lambda: None)
    verdict.decide("pod x: container nginx keeps exiting (2 restarts)")
    assert wait_complete(lambda: stuck, timeout=5, verdict=verdict, poll=0.01) == verdict.reason

    deadline = Health(NEW, 3, 1, 1, 1, True, 3, deadline_exceeded=True)
    said = wait_complete(lambda: deadline, timeout=5, poll=0.01)
    assert said is not None and "exceeded its progress deadline" in said


def test_a_deadline_names_why_the_new_pods_are_not_ready() -> None:
    # Pods that do not fit the node sit Pending: the deadline's own message says only that time ran out.
    pending = pod()
    pending.status.conditions = [
        client.V1PodCondition(
            type="PodScheduled",
            status="False",
            reason="Unschedulable",
            message="0/1 nodes are available: 1 Insufficient cpu.",
        )
    ]
    cause = pending_cause([pod(image=OLD), pending], [], NEW)
    assert cause == "pod app-new-1 is not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
    deadline = Health(NEW, 3, 1, 1, 1, True, 3, deadline_exceeded=True)
    said = wait_complete(lambda: deadline, timeout=5, poll=0.01, explain=lambda: cause)
    assert said is not None and said.endswith(f"; {cause}") and "exceeded its progress deadline" in said
    said = wait_complete(lambda: health_of(3, 3, 2, 5), timeout=0, poll=0.01, explain=lambda: cause)
    assert said is not None and "did not complete within 0s" in said and "Insufficient cpu" in said


@pytest.mark.parametrize(
    ("pods", "events", "says"),
    [
        ([pod(waiting=("ImagePullBackOff", "Back-off pulling"))], [], "waits: ImagePullBackOff: Back-off pulling"),
        (
            [pod()],
            [event("app-new-1", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")],
            "Readiness probe failed",
        ),
        ([pod(waiting=("ContainerCreating", ""))], [], None),  # nothing to say yet
        ([pod(image=OLD, waiting=("ImagePullBackOff", "x"))], [], None),  # not the new image's pod
    ],
)
def test_the_cause_of_a_pending_rollout(pods: list[Any], events: list[Any], says: str | None) -> None:
    cause = pending_cause(pods, events, NEW)
    assert (cause is None) if says is None else (cause is not None and says in cause)
