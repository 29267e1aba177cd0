"""Which pod states end a rollout at once (waiting cannot mend them), which get the progress deadline, and
when a rollout is complete."""

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


def health_of(ready: int, updated: int, available: int, total: int, current: bool = True) -> Any:
    from infra.rollout.watch import Health

    return Health(NEW, 3, ready, updated, available, current, total)


@pytest.mark.parametrize(
    ("state", "healthy"),
    [
        (health_of(3, 3, 3, 3), True),
        # The new pods are all ready and available, but two old ones still run: not done (kubectl agrees).
        (health_of(3, 3, 3, 5), False),
        (health_of(3, 3, 2, 3), False),  # one new pod not yet ready for minReadySeconds
        (health_of(3, 3, 3, 3, current=False), False),  # the controller has not seen the change yet
    ],
)
def test_health_is_kubectl_rollout_status(state: Any, healthy: bool) -> None:
    assert state.healthy is healthy


def test_health_names_the_old_pods_still_running() -> None:
    assert str(health_of(3, 3, 3, 5)).endswith("3 available, 2 old still running")


@pytest.fixture
def progress() -> Any:
    from infra.rollout import watch

    said: list[str] = []
    view = watch.Progress(client.ApiClient(), "app", said.append)
    view.said = said  # type: ignore[attr-defined]
    return view


def test_waiting_for_completion_returns_once_complete(progress: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.rollout import watch

    states = iter([health_of(3, 3, 2, 5), health_of(3, 3, 3, 3)])
    monkeypatch.setattr(watch, "health", lambda *_: next(states))
    assert progress.wait_complete(timeout=5, poll=0.01) is None
    assert len(progress.said) == 1 and "returned before the rollout completed" in progress.said[0]


def test_a_rollout_already_complete_is_not_waited_for(progress: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.rollout import watch

    monkeypatch.setattr(watch, "health", lambda *_: health_of(3, 3, 3, 3))
    assert progress.wait_complete(timeout=5) is None
    assert progress.said == []


def test_waiting_for_completion_ends_on_a_verdict_or_the_timeout(
    progress: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.rollout import watch

    behind = health_of(3, 3, 2, 5)
    monkeypatch.setattr(watch, "health", lambda *_: behind)
    assert "did not complete within 0s" in progress.wait_complete(timeout=0, poll=0.01)

    progress.verdict = Verdict(NEW, fargate=False, act=lambda: None)
    progress.verdict.decide("pod x: container nginx keeps exiting (2 restarts)")
    assert progress.wait_complete(timeout=5, poll=0.01) == "pod x: container nginx keeps exiting (2 restarts)"
