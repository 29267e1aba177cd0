"""Live rollout progress from the cluster: ReplicaSet ready counts and the events that explain a delay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

SELECTOR = "app=nginx"
# Event reasons worth a line: why pods do not start or get ready.
EXPLAINING = frozenset({"Failed", "BackOff", "FailedScheduling", "FailedCreate", "Unhealthy", "FailedMount"})
# Why a new pod will never get ready, however long the wait: the registry has no such image, the
# container keeps exiting, its configuration cannot run, or (on Fargate, where no node will ever be
# added) nothing can schedule it. A slow pull, one restart or a slow start are not verdicts: those get
# the progress deadline.
NOT_FOUND = ("not found", "manifest unknown", "name unknown")
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"})
RESTARTS_TO_GIVE_UP = 2


def definitive_failure(pods: list[Any], events: list[Any], image: str, fargate: bool) -> str | None:
    """Why the pods that run ``image`` can never become ready, or None while they still might."""
    names = set()
    for pod in pods:
        if image not in [c.image for c in pod.spec.containers]:
            continue
        name = pod.metadata.name
        names.add(name)
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


def _not_found(message: str) -> bool:
    return any(marker in message.lower() for marker in NOT_FOUND)


@dataclass(frozen=True)
class Health:
    """A Deployment's rollout state, as `kubectl rollout status` judges it."""

    image: str
    replicas: int
    ready: int
    updated: int
    available: int
    current: bool
    # Pods of all its ReplicaSets that are not shutting down: more than ``updated`` while old ones remain.
    total: int

    @property
    def healthy(self) -> bool:
        return self.current and self.ready == self.updated == self.available == self.total == self.replicas

    def __str__(self) -> str:
        text = f"{self.image}: {self.ready}/{self.replicas} ready, {self.updated} updated, {self.available} available"
        if self.total > self.updated:
            text += f", {self.total - self.updated} old still running"
        return text


def health(api: client.ApiClient, namespace: str, name: str | None = None) -> Health:
    """The Deployment ``name``, or the app's one in ``namespace`` (found by its label) when no name is given."""
    apps = client.AppsV1Api(api)
    deployment: Any
    if name is not None:
        deployment = apps.read_namespaced_deployment(name, namespace)
    else:
        found = apps.list_namespaced_deployment(namespace, label_selector=SELECTOR).items
        if len(found) != 1:
            raise LookupError(f"{len(found)} Deployments labelled {SELECTOR} in namespace {namespace}, not 1")
        deployment = found[0]
    status = deployment.status
    return Health(
        image=deployment.spec.template.spec.containers[0].image,
        replicas=deployment.spec.replicas,
        ready=status.ready_replicas or 0,
        updated=status.updated_replicas or 0,
        available=status.available_replicas or 0,
        current=(status.observed_generation or 0) >= deployment.metadata.generation,
        total=status.replicas or 0,
    )


class Progress:
    """Prints a line whenever a ReplicaSet's ready count changes, and each explaining event once."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        say: Callable[[str], None],
        interval: float = 1.0,
        verdict: Verdict | None = None,
    ):
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.say = say
        self.interval = interval
        self.verdict = verdict
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: set[str] = set()
        self._last = ""
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        # Events from before the rollout are not news.
        self._seen = {e.metadata.uid for e in self.core.list_namespaced_event(self.namespace).items}
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # The update can end between two polls: show where it ended.
        try:
            self._report()
        except Exception as err:  # a watcher must never break the rollout it reports on
            self.say(f"(progress unavailable: {err.__class__.__name__})")

    def wait_complete(self, timeout: float, poll: float = 0.5) -> str | None:
        """Wait until the rollout is complete as `kubectl rollout status` judges it; None once it is, or
        why it is not. The Kubernetes provider's wait trusts the Deployment's Progressing condition, and
        right after a template change that can still name the previous ReplicaSet as available: its wait
        then ends once the first new pods are ready, while the controller is still replacing the rest.
        Usually the first look finds the rollout complete."""
        end = time.monotonic() + timeout
        told = False
        while True:
            state = health(self.apps.api_client, self.namespace)
            if state.healthy:
                return None
            if not told:
                self.say(f"{self._stamp()} the update returned before the rollout completed ({state}); waiting for it")
                told = True
            if self.verdict is not None and self.verdict.reason is not None:
                return self.verdict.reason
            if time.monotonic() >= end:
                return f"the rollout did not complete within {timeout:.0f}s of the update: {state}"
            time.sleep(poll)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as err:  # a watcher must never break the rollout it reports on
                self.say(f"(progress unavailable: {err.__class__.__name__})")
                return
            self._stop.wait(self.interval)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._start:5.1f}s]"

    def _poll(self) -> None:
        events = self._report()
        if self.verdict is not None and self.verdict.reason is None:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items
            reason = definitive_failure(pods, events, self.verdict.image, self.verdict.fargate)
            if reason is not None:
                self.say(f"{self._stamp()} {reason}: it cannot succeed; ending the wait")
                self.verdict.decide(reason)

    def _report(self) -> list[Any]:
        """Print the ReplicaSets' ready pods if they changed, and each new explaining event; return the events."""
        sets = self.apps.list_namespaced_replica_set(self.namespace, label_selector=SELECTOR).items
        active = sorted(
            (rs for rs in sets if (rs.spec.replicas or 0) > 0 or (rs.status.replicas or 0) > 0),
            key=lambda rs: rs.metadata.creation_timestamp,
            reverse=True,
        )
        line = "   ".join(
            f"{rs.spec.template.spec.containers[0].image} ready {rs.status.ready_replicas or 0}/{rs.spec.replicas or 0}"
            for rs in active
        )
        if line != self._last:
            self._last = line
            self.say(f"{self._stamp()} {line}")
        events = self.core.list_namespaced_event(self.namespace).items
        for event in events:
            if event.metadata.uid in self._seen or event.reason not in EXPLAINING:
                continue
            self._seen.add(event.metadata.uid)
            self.say(
                f"{self._stamp()} {event.involved_object.kind.lower()} {event.involved_object.name}: "
                f"{event.reason}: {event.message}"
            )
        return list(events)


@dataclass
class Verdict:
    """The rollout of ``image`` cannot succeed: ``reason``, found at ``at`` (monotonic), acted on by ``act``."""

    image: str
    fargate: bool
    act: Callable[[], None]
    reason: str | None = None
    at: float | None = None

    def decide(self, reason: str) -> None:
        self.reason, self.at = reason, time.monotonic()
        self.act()
