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


@dataclass(frozen=True)
class Health:
    """A Deployment's rollout state, as `kubectl rollout status` judges it."""

    image: str
    replicas: int
    ready: int
    updated: int
    available: int
    current: bool

    @property
    def healthy(self) -> bool:
        return self.current and self.ready == self.updated == self.available == self.replicas

    def __str__(self) -> str:
        return f"{self.image}: {self.ready}/{self.replicas} ready, {self.updated} updated, {self.available} available"


def health(api: client.ApiClient, namespace: str, name: str) -> Health:
    deployment: Any = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    status = deployment.status
    return Health(
        image=deployment.spec.template.spec.containers[0].image,
        replicas=deployment.spec.replicas,
        ready=status.ready_replicas or 0,
        updated=status.updated_replicas or 0,
        available=status.available_replicas or 0,
        current=(status.observed_generation or 0) >= deployment.metadata.generation,
    )


class Progress:
    """Prints a line whenever a ReplicaSet's ready count changes, and each explaining event once."""

    def __init__(self, api: client.ApiClient, namespace: str, say: Callable[[str], None], interval: float = 1.0):
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.say = say
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: set[str] = set()
        self._last = ""
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        # Events from before the rollout are not news.
        self._seen = {e.metadata.uid for e in self.core.list_namespaced_event(self.namespace).items}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

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
        for event in self.core.list_namespaced_event(self.namespace).items:
            if event.metadata.uid in self._seen or event.reason not in EXPLAINING:
                continue
            self._seen.add(event.metadata.uid)
            self.say(
                f"{self._stamp()} {event.involved_object.kind.lower()} {event.involved_object.name}: "
                f"{event.reason}: {event.message}"
            )
