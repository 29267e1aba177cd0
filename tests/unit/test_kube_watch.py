"""The live view that the program's wait and the rollout command share: it finds a definitive failure
among the new image's pods and says the events that explain it, reading only those pods and the
namespace's Warning events, so its cost does not grow with old pods or with the Normal events every
rollout leaves behind (the API server filters; the fake below filters as it does)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes import client

from infra.identity import LABELS
from infra.kube.status import Verdict
from infra.kube.watch import Progress
from tests.unit.loopback import API_VERSION, send_json, serving

NEW, OLD = "registry/app:2", "registry/app:1"
EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def replica_set(name: str, image: str, hash_: str, replicas: int, age: int) -> client.V1ReplicaSet:
    labels = {**LABELS, "pod-template-hash": hash_}
    return client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, creation_timestamp=EPOCH + datetime.timedelta(seconds=age)
        ),
        spec=client.V1ReplicaSetSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image=image)]),
            ),
        ),
        status=client.V1ReplicaSetStatus(replicas=replicas, ready_replicas=0),
    )


def pod(name: str, image: str, hash_: str, crashing: bool = False) -> client.V1Pod:
    state = client.V1ContainerState(
        waiting=client.V1ContainerStateWaiting(reason="CrashLoopBackOff", message="back-off 20s") if crashing else None
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={**LABELS, "pod-template-hash": hash_}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image=image)]),
        status=client.V1PodStatus(
            container_statuses=[
                client.V1ContainerStatus(
                    name="nginx", image=image, image_id="", ready=False, restart_count=3 if crashing else 0, state=state
                )
            ]
        ),
    )


def event(n: int, pod_name: str, reason: str, type_: str, message: str) -> client.CoreV1Event:
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"e{n}", uid=f"uid-{n}"),
        involved_object=client.V1ObjectReference(kind="Pod", name=pod_name),
        reason=reason,
        type=type_,
        message=message,
    )


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality and set-based label selectors, as the API server reads them (enough of them for this test)."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(selector[start:i].strip())
            start = i + 1
    for term in terms:
        if " in (" in term:
            key, values = term.split(" in (")
            if labels.get(key) not in values.rstrip(")").split(","):
                return False
        else:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


class Namespace:
    """A namespace's objects behind the two client APIs; counts how many objects each read returns."""

    def __init__(self, sets: list[Any], pods: list[Any], events: list[Any]) -> None:
        self.sets, self.pods, self.events = sets, pods, events
        self.returned = 0

    def _items(self, items: list[Any]) -> Any:
        self.returned += len(items)
        return type("List", (), {"items": items})()

    def list_namespaced_replica_set(self, namespace: str, label_selector: str = "", **_: Any) -> Any:
        return self._items([rs for rs in self.sets if matches(label_selector, rs.metadata.labels)])

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **_: Any) -> Any:
        return self._items([p for p in self.pods if matches(label_selector, p.metadata.labels)])

    def list_namespaced_event(self, namespace: str, field_selector: str = "", **_: Any) -> Any:
        wanted = dict(term.split("=") for term in field_selector.split(",") if term)
        assert set(wanted) <= {"type"}, field_selector
        return self._items([e for e in self.events if all(getattr(e, k) == v for k, v in wanted.items())])


def view(namespace: Namespace, said: list[str], verdict: Verdict | None = None) -> Progress:
    progress = Progress(client.ApiClient(), "app", said.append, verdict=verdict)
    progress.apps = progress.core = namespace
    return progress


def busy_namespace(crashing: bool) -> Namespace:
    """A rollout from OLD to NEW at 100 replicas: 100 old pods, 2 new ones, and the Normal events that
    earlier rollouts left (three per pod)."""
    sets = [replica_set("app-old", OLD, "old", 100, age=0), replica_set("app-new", NEW, "new", 2, age=60)]
    pods = [pod(f"app-old-{i}", OLD, "old") for i in range(100)]
    pods += [pod(f"app-new-{i}", NEW, "new", crashing=crashing) for i in range(2)]
    events = [event(i, f"app-old-{i % 100}", "Scheduled", "Normal", "assigned") for i in range(1500)]
    return Namespace(sets, pods, events)


def test_a_new_pod_that_keeps_exiting_is_a_verdict_and_its_warning_is_said() -> None:
    namespace = busy_namespace(crashing=True)
    said: list[str] = []
    verdict = Verdict(image=NEW, fargate=False, act=lambda: None)
    progress = view(namespace, said, verdict)
    progress.begin()  # what entering does, without the polling thread
    namespace.events.append(event(9999, "app-new-0", "BackOff", "Warning", "Back-off restarting failed container"))
    progress.poll()
    assert verdict.reason is not None and "keeps exiting" in verdict.reason
    assert any("app-new-0: BackOff: Back-off restarting failed container" in line for line in said), said


def test_a_poll_reads_the_new_pods_and_the_warnings_not_the_whole_namespace() -> None:
    namespace = busy_namespace(crashing=False)
    said: list[str] = []
    verdict = Verdict(image=NEW, fargate=False, act=lambda: None)
    progress = view(namespace, said, verdict)
    progress.poll()
    assert verdict.reason is None
    # 2 ReplicaSets and 2 new pods; none of the 100 old pods, none of the 1,500 Normal events.
    assert namespace.returned == 4
    assert any(f"{NEW} ready 0/2   {OLD} ready 0/100" in line for line in said), said


def test_before_the_new_replica_set_exists_no_pod_is_read() -> None:
    namespace = busy_namespace(crashing=False)
    namespace.sets = namespace.sets[:1]
    progress = view(namespace, [], Verdict(image=NEW, fargate=False, act=lambda: None))
    assert progress.pods_of(NEW) == []


def test_the_mitigations_patch_as_kubectl_does_a_strategic_merge_and_the_scale_subresource() -> None:
    # The old image back in the template must merge into the container by name (a JSON merge patch would
    # replace the whole container list with name and image alone): the client sends a dict as a strategic
    # merge patch (kubernetes/client/rest.py), which this holds on the wire.
    import http.server
    import json as json_

    from infra.kube.watch import LiveCluster

    seen: list[tuple[str, str, str, dict[str, Any]]] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = json_.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.command, self.path, self.headers["Content-Type"], body))
            send_json(self, body)  # the object as patched, as far as the client reads it

        def log_message(self, *_: object) -> None:
            pass

    with serving(Api) as url:
        live = LiveCluster(client.ApiClient(client.Configuration(host=url)))
        live.set_image("rolling", "nginx-deployment", "nginx", "app:1.0")
        live.scale("rolling", "nginx-canary", 0)
    template = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "app:1.0"}]}}}}
    assert seen == [
        (
            "PATCH",
            "/apis/apps/v1/namespaces/rolling/deployments/nginx-deployment",
            "application/strategic-merge-patch+json",
            template,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/rolling/deployments/nginx-canary/scale",
            "application/strategic-merge-patch+json",
            {"spec": {"replicas": 0}},
        ),
    ]


def test_the_clusters_clock_is_its_api_servers_date() -> None:
    import http.server

    from infra.kube.watch import LiveCluster

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path == "/version/"
            send_json(self, API_VERSION)  # with the Date header, as every HTTP server

        def log_message(self, *_: object) -> None:
            pass

    with serving(Api) as url:
        said = LiveCluster(client.ApiClient(client.Configuration(host=url))).server_time()
    assert said is not None and abs((said - datetime.datetime.now(datetime.UTC)).total_seconds()) < 2


class Apps:
    """The apps API as a retirement reads it: the Deployment (the controller takes in its template on the
    ``observed_on``-th read; 5 replicas, maxUnavailable 1), its ReplicaSets (whose ready pods ``ready`` says,
    read by read), and the scales patched."""

    def __init__(self, sets: list[Any], template_image: str, observed_on: int = 1) -> None:
        self.sets, self.template_image, self.observed_on = sets, template_image, observed_on
        self.reads = 0
        self.scaled: list[tuple[str, int]] = []
        self.ready: list[dict[str, int]] = []

    def read_namespaced_deployment(self, name: str, namespace: str, **_: Any) -> Any:
        self.reads += 1
        if self.ready:
            for rs in self.sets:
                rs.status.ready_replicas = self.ready[0].get(rs.metadata.name, rs.status.ready_replicas)
            if len(self.ready) > 1:
                self.ready.pop(0)
        observed = 2 if self.reads >= self.observed_on else 1
        return client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name, generation=2),
            spec=client.V1DeploymentSpec(
                replicas=5,
                selector=client.V1LabelSelector(match_labels=LABELS),
                strategy=client.V1DeploymentStrategy(
                    type="RollingUpdate", rolling_update=client.V1RollingUpdateDeployment(max_unavailable=1)
                ),
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image=self.template_image)])
                ),
            ),
            status=client.V1DeploymentStatus(observed_generation=observed),
        )

    def list_namespaced_replica_set(self, namespace: str, label_selector: str = "", **_: Any) -> Any:
        return type("List", (), {"items": [rs for rs in self.sets if matches(label_selector, rs.metadata.labels)]})()

    def patch_namespaced_replica_set_scale(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.scaled.append((name, body["spec"]["replicas"]))


def owned(rs: client.V1ReplicaSet, ready: int) -> client.V1ReplicaSet:
    rs.metadata.owner_references = [
        client.V1OwnerReference(api_version="apps/v1", kind="Deployment", name="nginx-deployment", uid="u")
    ]
    rs.status.ready_replicas = ready
    return rs


def retired(monkeypatch: pytest.MonkeyPatch, apps: Apps, within_s: float = 60.0) -> bool:
    from infra.kube import watch

    monkeypatch.setattr(client, "AppsV1Api", lambda api: apps)
    monkeypatch.setattr(watch, "RETIRE_EVERY_S", 0.001)
    monkeypatch.setattr(watch, "RETIRE_WITHIN_S", within_s)
    return watch.LiveCluster(client.ApiClient()).retire("rolling", "nginx-deployment", NEW)


def rollout_sets(old_ready: int, new_ready: int) -> list[client.V1ReplicaSet]:
    return [
        owned(replica_set("old", OLD, "old", 3, 0), old_ready),
        owned(replica_set("new", NEW, "new", 2, 1), new_ready),
    ]


def test_a_failed_versions_pods_leave_the_service_once_the_old_template_is_taken_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mid-rollout: 2 old pods ready, 2 new ones serving errors; the old image is back in the template, which
    # the controller takes in on its second read.
    apps = Apps(rollout_sets(2, 2), OLD, observed_on=2)
    assert retired(monkeypatch, apps) is True
    assert apps.scaled == [("new", 0)], "only the failed version's ReplicaSet, once the controller took the template in"
    assert apps.reads == 2


def test_the_failed_pods_go_once_an_old_one_is_ready_to_take_their_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rollout was complete: no old pod is ready yet; the Deployment brings them back, one, then two.
    apps = Apps(rollout_sets(0, 2), OLD)
    apps.ready = [{"old": 0}, {"old": 0}, {"old": 1}, {"old": 2}]
    assert retired(monkeypatch, apps) is True
    assert apps.scaled == [("new", 0)] and apps.reads == 3, "as soon as an old pod was ready, not before"
    # Never while no old pod can take them, within the bound: the failing pods are all there is.
    apps = Apps(rollout_sets(0, 2), OLD)
    assert retired(monkeypatch, apps, within_s=0.05) is False and apps.scaled == []


def test_nothing_is_taken_out_while_the_template_still_names_the_failed_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apps = Apps(rollout_sets(3, 2), NEW)
    assert retired(monkeypatch, apps) is False and apps.scaled == []
