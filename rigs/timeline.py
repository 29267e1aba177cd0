"""A rollout as a timeline: every pod event in a namespace, sampled as ready pods per ReplicaSet revision,
and the pods its ReplicaSets ask for."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from kubernetes import client, watch

from infra.identity import SELECTOR
from infra.kube import access as kube_access
from infra.kube.status import Health


@dataclass
class PodState:
    ready: bool
    revision: str
    terminating: bool


@dataclass
class Sample:
    """The pods of the app at one moment of the watch."""

    t: float
    ready_by_revision: dict[str, int]
    ready: int
    pods: int


@dataclass
class NamespaceWatch:
    """Every event of one kind of object in a namespace (the app's, by label), from a consistent start:
    the listing's objects first, then the watch from its resourceVersion, each applied and recorded in
    order, so every record is the namespace at one resourceVersion."""

    namespace: str
    # A client for the cluster; by default the ambient KUBECONFIG's.
    api: client.ApiClient | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None
    _start: float = 0.0

    def _lister(self, api: client.ApiClient) -> Any:
        """The client's list function for the watched kind (the watch streams from it too)."""
        raise NotImplementedError

    def _apply(self, kind: str, obj: Any) -> None:
        raise NotImplementedError

    def _record(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        lister = self._lister(self.api or kube_access.api_client(None))
        listing = lister(self.namespace, label_selector=SELECTOR)
        self._start = time.monotonic()
        for obj in listing.items:
            self._apply("ADDED", obj)
        self._record()
        self._thread = threading.Thread(target=self._run, args=(lister, listing.metadata.resource_version), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # let the last events arrive
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._error:
            raise self._error

    def _run(self, lister: Callable[..., Any], resource_version: str) -> None:
        stream = watch.Watch()
        try:
            while not self._stop.is_set():
                for event in stream.stream(
                    lister,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=resource_version,
                    timeout_seconds=1,
                ):
                    obj = event["object"]
                    resource_version = obj.metadata.resource_version
                    self._apply(event["type"], obj)
                    self._record()
                    if self._stop.is_set():
                        break
        except BaseException as err:  # surfaced in __exit__
            self._error = err


@dataclass
class RolloutWatch(NamespaceWatch):
    """Every pod event in a namespace as a timeline of samples."""

    samples: list[Sample] = field(default_factory=list)
    _pods: dict[str, PodState] = field(default_factory=dict)

    def _lister(self, api: client.ApiClient) -> Any:
        return client.CoreV1Api(api).list_namespaced_pod

    def _apply(self, kind: str, obj: Any) -> None:
        pod: client.V1Pod = obj
        name = pod.metadata.name
        if kind == "DELETED":
            self._pods.pop(name, None)
            return
        conditions = pod.status.conditions or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        self._pods[name] = PodState(
            ready=ready,
            revision=(pod.metadata.labels or {}).get("pod-template-hash", "?"),
            terminating=pod.metadata.deletion_timestamp is not None,
        )

    def _record(self) -> None:
        live = [p for p in self._pods.values() if not p.terminating]
        by_revision: dict[str, int] = {}
        for pod in live:
            by_revision.setdefault(pod.revision, 0)
            if pod.ready:
                by_revision[pod.revision] += 1
        self.samples.append(
            Sample(
                t=round(time.monotonic() - self._start, 3),
                ready_by_revision=by_revision,
                ready=sum(p.ready for p in live),
                pods=len(live),
            )
        )

    def save(self, path: Path) -> Path:
        """Write the timeline as JSON for the docs and benchmarks."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([s.__dict__ for s in self.samples], indent=1))
        return path


@dataclass
class RequestedPods(NamespaceWatch):
    """The pods the Deployment controller asks for, the sum of its ReplicaSets' ``spec.replicas``, after
    every ReplicaSet event: what maxSurge bounds. Running pods can briefly be more (between an old
    ReplicaSet's scale-down and its pods' deletion), and pods shutting down are not counted by
    Kubernetes at all."""

    totals: list[int] = field(default_factory=list)
    _specs: dict[str, int] = field(default_factory=dict)

    def _lister(self, api: client.ApiClient) -> Any:
        return client.AppsV1Api(api).list_namespaced_replica_set

    def _apply(self, kind: str, obj: Any) -> None:
        if kind == "DELETED":
            self._specs.pop(obj.metadata.name, None)
        else:
            self._specs[obj.metadata.name] = obj.spec.replicas or 0

    def _record(self) -> None:
        self.totals.append(sum(self._specs.values()))


@dataclass(frozen=True)
class PhaseTimes:
    """Where one command's time went, split at what the cluster saw: the Deployment's spec changing and
    its rollout completing. ``before`` and ``after`` are the tool's own cost; ``rollout`` is the controllers'."""

    before: float
    rollout: float
    after: float

    @property
    def overhead(self) -> float:
        return self.before + self.after


@dataclass
class DeploymentPhases:
    """Watches one Deployment while a command changes its pod template and waits for the rollout.

    Complete is infra.kube.status's definition, the one `kubectl rollout status` waits for."""

    namespace: str
    name: str
    api: client.ApiClient | None = None
    _changed: float | None = None
    _complete: float | None = None
    _generation: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def __enter__(self) -> Self:
        apps = client.AppsV1Api(self.api or kube_access.api_client(None))
        listing = apps.list_namespaced_deployment(self.namespace, field_selector=f"metadata.name={self.name}")
        if not listing.items:
            raise LookupError(f"no Deployment {self.name} in namespace {self.namespace}")
        self._generation = listing.items[0].metadata.generation
        self._thread = threading.Thread(target=self._run, args=(apps, listing.metadata.resource_version), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The command saw the rollout complete: the same event is at most moments away here.
        deadline = time.monotonic() + 2
        while self._complete is None and self._error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._error:
            raise self._error

    @property
    def changed(self) -> float | None:
        """When the new pod template reached the cluster (time.time())."""
        return self._changed

    @property
    def complete(self) -> float | None:
        """When the rollout completed (time.time())."""
        return self._complete

    def phases(self, start: float, end: float) -> PhaseTimes:
        """The split of a command that ran from ``start`` to ``end`` (time.time())."""
        if self._changed is None or self._complete is None:
            raise RuntimeError(f"the Deployment {self.name} was not rolled out while watched")
        return PhaseTimes(
            before=round(self._changed - start, 3),
            rollout=round(self._complete - self._changed, 3),
            after=round(end - self._complete, 3),
        )

    def _run(self, apps: client.AppsV1Api, resource_version: str) -> None:
        stream = watch.Watch()
        try:
            while not self._stop.is_set() and self._complete is None:
                for event in stream.stream(
                    apps.list_namespaced_deployment,
                    self.namespace,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=resource_version,
                    timeout_seconds=1,
                ):
                    now = time.time()  # wall clock: benchmarks line it up with the engine's log
                    deployment = event["object"]
                    resource_version = deployment.metadata.resource_version
                    self._observe(deployment, now)
                    if self._stop.is_set() or self._complete is not None:
                        break
        except BaseException as err:  # surfaced in __exit__
            self._error = err

    def _observe(self, deployment: client.V1Deployment, now: float) -> None:
        generation = deployment.metadata.generation
        if self._changed is None and generation > self._generation:
            self._changed = now
        if self._changed is None or self._complete is not None:
            return
        if Health.of(deployment).complete:
            self._complete = now
