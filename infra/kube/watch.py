"""The cluster as the rollout command reads it: the Deployment's state, and a live view that prints
ReplicaSet ready counts and the events that explain a delay, and watches for a definitive failure."""

from __future__ import annotations

import datetime
import email.utils
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from infra.identity import DEPLOYMENT, PODS_SELECTOR, SELECTOR, ZONE_LABEL
from infra.kube.lease import LEASE_SECONDS, Holder, LeaseRecord, RunLease, read_lease
from infra.kube.logs import PodLogs
from infra.kube.revisions import Revision, revisions
from infra.kube.status import UNKNOWN_ZONE, Health, Verdict, definitive_failure, pending_cause, wait_complete
from infra.kube.watchdog import RETIRE_WITHIN_S

# How long one read of the Deployment may take: seconds to connect, seconds to answer. Without it a
# cluster that drops packets (a private endpoint seen from outside its network) holds the command for
# the system's whole TCP timeout.
READ_TIMEOUT = (5, 30)

# Event reasons worth a line: why pods do not start or get ready.
EXPLAINING = frozenset({"Failed", "BackOff", "FailedScheduling", "FailedCreate", "Unhealthy", "FailedMount"})

# The events the view reads: Warnings only, filtered by the API server. Every reason the view or the
# failure rules (status.py) use is recorded as a Warning by its component (kubelet: a failed pull, a
# crash loop's back-off, a failing probe, a failed mount; the scheduler's FailedScheduling; the
# ReplicaSet controller's FailedCreate); only the kubelet's "Back-off pulling image" is Normal, and the
# Warning "Failed" of the same pull already says why. The namespace's Normal events (a Scheduled, a
# SuccessfulCreate, a SuccessfulDelete for every pod of every rollout, kept an hour) grow with each
# rollout and the replica count: reading them every second is what made the wait's end grow with size.
WARNINGS = "type=Warning"
# A mitigation (a canary scaled away, an image put back) holds the engine's interruption until it
# returns: it gets a few seconds, then the rollback through Pulumi does the same anyway.
MITIGATE_TIMEOUT = (3, 5)
# How often a retirement looks at the ReplicaSets (at most RETIRE_WITHIN_S).
RETIRE_EVERY_S = 0.1


def health(api: client.ApiClient, namespace: str, name: str = DEPLOYMENT) -> Health:
    """The Deployment ``name`` (the app's, by default: by name, since a canary carries the app's labels too)."""
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace, _request_timeout=READ_TIMEOUT)
    return Health.of(deployment)


def _image(replica_set: Any) -> str:
    return str(replica_set.spec.template.spec.containers[0].image)


class LiveCluster:
    """One cluster, read through the Kubernetes API (the rollout command's default cluster reader)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.name = str(api.configuration.host)

    def health(self, namespace: str, name: str) -> Health:
        return health(self.api, namespace, name)

    def _own_sets(self, namespace: str, name: str) -> list[Any]:
        """Deployment ``name``'s own ReplicaSets (not a canary's, which carry its labels)."""
        sets = client.AppsV1Api(self.api).list_namespaced_replica_set(
            namespace, label_selector=SELECTOR, _request_timeout=READ_TIMEOUT
        )
        return [
            rs
            for rs in sets.items
            if any(o.kind == "Deployment" and o.name == name for o in rs.metadata.owner_references or [])
        ]

    def revisions(self, namespace: str, name: str) -> list[Revision]:
        """The revisions of Deployment ``name``."""
        return revisions(self._own_sets(namespace, name))

    def retire(self, namespace: str, name: str, image: str) -> bool:
        """Take the pods of ``image`` out of Deployment ``name``'s Service: their ReplicaSet to no pods (they
        leave the endpoints as they start to stop, their drain ending what they have). Only once the
        Deployment controller has taken in a template that no longer names ``image`` (it scales an old
        ReplicaSet down, never up: its rolling update's reconcileOldReplicaSets), and once the other
        ReplicaSets have a ready pod to take the requests: however few, their answers are better than a
        failing version's (they are busier until the Deployment brings the rest back). Waits for both up to
        RETIRE_WITHIN_S; whether it retired any."""
        apps = client.AppsV1Api(self.api)
        deadline = time.monotonic() + RETIRE_WITHIN_S
        while True:
            deployment = apps.read_namespaced_deployment(name, namespace, _request_timeout=MITIGATE_TIMEOUT)
            if deployment.spec.template.spec.containers[0].image == image:
                return False
            sets = self._own_sets(namespace, name)
            retiring = [rs for rs in sets if _image(rs) == image and (rs.spec.replicas or 0) > 0]
            if not retiring:
                return False
            observed = (deployment.status.observed_generation or 0) >= (deployment.metadata.generation or 0)
            ready = sum(rs.status.ready_replicas or 0 for rs in sets if _image(rs) != image)
            if observed and ready > 0:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(RETIRE_EVERY_S)
        for rs in retiring:
            apps.patch_namespaced_replica_set_scale(
                rs.metadata.name,
                namespace,
                {"spec": {"replicas": 0}},
                _request_timeout=MITIGATE_TIMEOUT,
                _preload_content=False,
            )
        return True

    def progress(self, namespace: str, say: Callable[[str], None], verdict: Verdict | None = None) -> Progress:
        return Progress(self.api, namespace, say, verdict=verdict)

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Deployment ``name`` to ``replicas`` pods (its scale subresource, as `kubectl scale` does)."""
        body = {"spec": {"replicas": replicas}}
        client.AppsV1Api(self.api).patch_namespaced_deployment_scale(
            name, namespace, body, _request_timeout=MITIGATE_TIMEOUT, _preload_content=False
        )

    def annotate_ingress(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Set ``annotations`` on Ingress ``name`` (a merge patch, as `kubectl annotate --overwrite` does)."""
        body = {"metadata": {"annotations": annotations}}
        client.NetworkingV1Api(self.api).patch_namespaced_ingress(
            name, namespace, body, _request_timeout=MITIGATE_TIMEOUT, _preload_content=False
        )

    def server_time(self) -> datetime.datetime | None:
        _, _, headers = client.VersionApi(self.api).get_code_with_http_info(_request_timeout=READ_TIMEOUT)
        date = (headers or {}).get("Date")
        return email.utils.parsedate_to_datetime(date) if date else None

    def logs(self, namespace: str) -> PodLogs:
        return PodLogs(self.api, namespace)

    def lease(self, namespace: str, stack: str, holder: Holder, seconds: int = LEASE_SECONDS) -> RunLease:
        return RunLease(self.api, namespace, stack, holder, seconds=seconds)

    def start_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        client.BatchV1Api(self.api).create_namespaced_job(namespace, manifest, _request_timeout=READ_TIMEOUT)

    def job_problem(self, namespace: str, name: str) -> str | None:
        """Why Job ``name``'s pod does not run yet, as its status says (None when it says nothing)."""
        pods = client.CoreV1Api(self.api).list_namespaced_pod(
            namespace, label_selector=f"job-name={name}", _request_timeout=READ_TIMEOUT
        )
        if not pods.items:
            return "no pod was created for it (a quota, an admission webhook, or no Fargate profile for it?)"
        pod = pods.items[0]
        for state in pod.status.container_statuses or ():
            waiting = state.state.waiting if state.state is not None else None
            if waiting is not None and waiting.reason not in (None, "ContainerCreating"):
                said = (waiting.message or "").strip()[:200]
                return f"pod {pod.metadata.name}: {waiting.reason}" + (f": {said}" if said else "")
            terminated = state.state.terminated if state.state is not None else None
            if terminated is not None:
                return f"pod {pod.metadata.name} ended: {terminated.reason} (exit {terminated.exit_code})"
        for condition in pod.status.conditions or ():
            if condition.status != "True" and condition.reason:
                return f"pod {pod.metadata.name}: {condition.reason}: {(condition.message or '').strip()[:200]}"
        return f"pod {pod.metadata.name} is {pod.status.phase}"

    def delete_job(self, namespace: str, name: str) -> None:
        client.BatchV1Api(self.api).delete_namespaced_job(
            name, namespace, propagation_policy="Background", _request_timeout=READ_TIMEOUT
        )

    def lease_of(self, namespace: str, stack: str) -> LeaseRecord | None:
        return read_lease(self.api, namespace, stack)

    def zones(self, namespace: str) -> dict[str, int]:
        """The app's ready pods (the Deployment's and a canary's) by the zone each runs in: the pod's own zone
        label (the API server copies its node's onto it from Kubernetes 1.35), else its node's when the node
        can be read; UNKNOWN_ZONE for a pod whose zone neither says."""
        core = client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(namespace, label_selector=PODS_SELECTOR, _request_timeout=READ_TIMEOUT)
        nodes: dict[str, str] = {}

        def node_zone(name: str) -> str:
            if name not in nodes:
                try:
                    labels = core.read_node(name, _request_timeout=READ_TIMEOUT).metadata.labels or {}
                except client.ApiException:  # not allowed to read nodes (eks's deploy role), or gone
                    labels = {}
                nodes[name] = labels.get(ZONE_LABEL, UNKNOWN_ZONE)
            return nodes[name]

        found: dict[str, int] = {}
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None or not _ready(pod):
                continue
            zone = (pod.metadata.labels or {}).get(ZONE_LABEL) or (
                node_zone(pod.spec.node_name) if pod.spec.node_name else UNKNOWN_ZONE
            )
            found[zone] = found.get(zone, 0) + 1
        return dict(sorted(found.items()))

    def set_image(self, namespace: str, name: str, container: str, image: str) -> None:
        """``container`` of Deployment ``name`` to ``image``, as `kubectl set image` does (a strategic merge
        patch of the pod template): a template the Deployment had before brings its ReplicaSet back."""
        body = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
        client.AppsV1Api(self.api).patch_namespaced_deployment(
            name, namespace, body, _request_timeout=MITIGATE_TIMEOUT, _preload_content=False
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
        self._sets: list[Any] = []
        self._last = ""
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        self.begin()
        self._thread.start()
        return self

    def begin(self) -> None:
        """Start the view's clock; the warnings already there are not news (entering does this, then polls)."""
        self._seen = {e.metadata.uid for e in self._warnings()}
        self._start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # The update can end between two polls: show where it ended.
        try:
            self._report()
        except Exception as err:  # a watcher must never break the rollout it reports on
            self.say(f"(progress unavailable: {err.__class__.__name__})")

    def wait_complete(self, timeout: float) -> str | None:
        """Wait until the rollout is complete (status.Health.complete); None once it is, or why it is not.
        After the rollout command's update (whose program waits for the same) the first look finds it
        complete; the program's own wait starts right after the Deployment is applied."""

        def behind(state: Health) -> None:
            self.say(f"{self._stamp()} waiting for the rollout to complete: {state.waiting_for} ({state})")

        def explain() -> str | None:
            try:
                deployment = health(self.apps.api_client, self.namespace)
                pods = self.pods_of(deployment.image)
                events = self._warnings()
            except Exception:  # the failure is said anyway; its cause only when the cluster gives it
                return None
            return pending_cause(pods, sorted(events, key=_when), deployment.image)

        return wait_complete(
            lambda: health(self.apps.api_client, self.namespace),
            timeout,
            verdict=self.verdict,
            behind=behind,
            explain=explain,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as err:  # a watcher must never break the rollout it reports on
                self.say(f"(progress unavailable: {err.__class__.__name__})")
                return
            self._stop.wait(self.interval)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._start:5.1f}s]"

    def poll(self) -> None:
        """One look: say what changed, and decide the verdict on a failure waiting cannot mend."""
        events = self._report()
        if self.verdict is not None and self.verdict.reason is None:
            pods = self.pods_of(self.verdict.image)
            reason = definitive_failure(pods, events, self.verdict.image, self.verdict.fargate)
            if reason is not None:
                self.say(f"{self._stamp()} {reason}: it cannot succeed; ending the wait")
                self.verdict.decide(reason)

    def _report(self) -> list[Any]:
        """Print the ReplicaSets' ready pods if they changed, and each new explaining event; return the events."""
        sets = self.apps.list_namespaced_replica_set(self.namespace, label_selector=SELECTOR).items
        self._sets = sets
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
        events = self._warnings()
        for event in events:
            if event.metadata.uid in self._seen or event.reason not in EXPLAINING:
                continue
            self._seen.add(event.metadata.uid)
            self.say(
                f"{self._stamp()} {event.involved_object.kind.lower()} {event.involved_object.name}: "
                f"{event.reason}: {event.message}"
            )
        return list(events)

    def _warnings(self) -> list[Any]:
        return list(self.core.list_namespaced_event(self.namespace, field_selector=WARNINGS).items)

    def pods_of(self, image: str) -> list[Any]:
        """The pods of the ReplicaSets whose template runs ``image`` (by their pod-template-hash label), as
        the ReplicaSets were last read; none before such a ReplicaSet exists. Not every pod of the app:
        old pods are no verdict's concern and their number grows with the replica count."""
        if not self._sets:
            self._sets = self.apps.list_namespaced_replica_set(self.namespace, label_selector=SELECTOR).items
        hashes = sorted(
            {
                (rs.metadata.labels or {}).get("pod-template-hash", "")
                for rs in self._sets
                if image in [c.image for c in rs.spec.template.spec.containers]
            }
            - {""}
        )
        if not hashes:
            return []
        selector = f"{SELECTOR},pod-template-hash in ({','.join(hashes)})"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)


def _when(event: Any) -> float:
    """When an event last happened, for ordering (its count's last time, else its creation)."""
    stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return stamp.timestamp() if stamp is not None else 0.0


def _ready(pod: Any) -> bool:
    """Whether the pod's Ready condition is True (it takes requests)."""
    status = pod.status
    return any(c.type == "Ready" and c.status == "True" for c in (status.conditions if status else None) or ())
