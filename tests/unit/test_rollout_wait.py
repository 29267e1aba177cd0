"""The program's own wait for its rollout (infra/rollout_wait.py), over clusters that answer as recorded."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from infra.identity import DEPLOYMENT
from infra.kube.cluster import short
from infra.kube.revisions import Revision
from infra.kube.status import Health, Verdict
from infra.rollout_wait import MARGIN, RolloutFailed, applied_since, last_applied, settle

OLD = "localhost:5000/rolling-app:1.14.2"
NEW = "localhost:5000/rolling-app:1.16.1"


def state(image: str, updated: int, available: int, total: int, current: bool = True) -> Health:
    return Health(image, 3, available, updated, available, current, total)


class View:
    """A live view whose wait reads the recorded states in turn, or ends on a verdict found on the way."""

    def __init__(self, cluster: Recorded, verdict: Verdict | None) -> None:
        self.cluster, self.verdict = cluster, verdict

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_complete(self, timeout: float) -> str | None:
        while self.cluster.states:
            current = self.cluster.read()
            if current.complete:
                return None
            if self.cluster.verdict_after is not None and len(self.cluster.states) <= self.cluster.verdict_after:
                assert self.verdict is not None
                self.verdict.decide("pod p: container nginx keeps exiting (2 restarts)")
                return self.verdict.reason
        return f"the rollout did not complete within {timeout:.0f}s"


class Recorded:
    """A cluster whose Deployment goes through ``states`` (the last one stays), or that fails to answer."""

    name = "https://127.0.0.1:6443"

    def __init__(
        self,
        *states: Health,
        error: Exception | None = None,
        verdict_after: int | None = None,
        clock: datetime.datetime | None = None,
    ) -> None:
        self.states = list(states)
        # The API server's clock (its Date header); None: it does not say.
        self.clock = clock
        self.error = error
        self.verdict_after = verdict_after
        self.reads = 0
        self.views: list[View] = []

    def read(self) -> Health:
        self.reads += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def health(self, namespace: str, name: str) -> Health:
        assert (namespace, name) == ("rolling", DEPLOYMENT)
        if self.error is not None:
            raise self.error
        return self.read()

    def revisions(self, namespace: str, name: str) -> list[Revision]:
        return []

    def server_time(self) -> datetime.datetime | None:
        return self.clock

    def progress(self, namespace: str, say: Any, verdict: Verdict | None = None) -> View:
        self.views.append(View(self, verdict))
        return self.views[-1]


def wait(cluster: Recorded, image: str = NEW) -> str:
    return settle("rolling", image, None, timeout=60, fargate=False, say=lambda _: None, reader=lambda _: cluster)


def test_an_up_that_changed_nothing_reads_once_and_succeeds_only_on_a_complete_deployment() -> None:
    cluster = Recorded(state(OLD, 3, 3, 3))
    assert wait(cluster, OLD).startswith("complete")
    assert cluster.reads == 1 and cluster.views == []


def test_waits_through_the_stale_condition_sequence_until_no_old_pod_is_left() -> None:
    # What the provider's own wait took for done: the new pods ready, two old ones still running.
    cluster = Recorded(
        state(NEW, 0, 0, 3, current=False),
        state(NEW, 3, 3, 5),
        state(NEW, 3, 3, 4),
        state(NEW, 3, 3, 3),
    )
    assert wait(cluster) == f"complete: {state(NEW, 3, 3, 3)}"
    assert len(cluster.views) == 1


def test_a_definitive_failure_fails_up_with_its_cause() -> None:
    cluster = Recorded(state(NEW, 1, 0, 4), state(NEW, 1, 0, 4), state(NEW, 1, 0, 4), verdict_after=2)
    with pytest.raises(RolloutFailed) as failed:
        wait(cluster)
    message = str(failed.value)
    assert f"the rollout of Deployment rolling/{DEPLOYMENT} to {NEW} failed" in message
    assert "keeps exiting (2 restarts)" in message
    assert "The old pods keep serving" in message


def test_an_absent_deployment_is_a_failure_that_names_the_repair() -> None:
    with pytest.raises(RolloutFailed) as failed:
        wait(Recorded(error=ApiException(status=404, reason="Not Found")))
    assert "is not in the cluster" in str(failed.value)
    assert "pulumi up --refresh" in str(failed.value)


def test_a_cluster_that_says_no_differs_from_one_not_reached() -> None:
    with pytest.raises(RolloutFailed) as refused:
        wait(Recorded(error=ApiException(status=403, reason="Forbidden")))
    assert str(refused.value) == (
        f"the cluster at {Recorded.name} refused to let Deployment rolling/{DEPLOYMENT} be read: "
        "403 Forbidden (credentials?)"
    )
    with pytest.raises(RolloutFailed) as unreached:
        wait(Recorded(error=ConnectionRefusedError(111, "Connection refused")))
    assert str(unreached.value) == (
        f"cannot reach the cluster at {Recorded.name} to read Deployment rolling/{DEPLOYMENT}: "
        "[Errno 111] Connection refused"
    )


def test_a_bad_kubeconfig_is_said_as_such() -> None:
    def reader(_: str | None) -> Recorded:
        raise ValueError("the kubeconfig text is not a kubeconfig document")

    with pytest.raises(RolloutFailed) as failed:
        settle("rolling", NEW, "x\ny", timeout=60, fargate=False, say=lambda _: None, reader=reader)
    assert "cannot read the cluster's kubeconfig" in str(failed.value)
    assert "not a kubeconfig document" in str(failed.value)


def test_another_image_is_drift_said_at_once_or_a_change_during_the_rollout() -> None:
    # `kubectl set image` after the last `up`: the stack says NEW, nothing to apply, the cluster runs OLD.
    drifted = Recorded(state(OLD, 3, 3, 3))
    with pytest.raises(RolloutFailed) as failed:
        wait(drifted)
    assert f"runs {OLD}, but the stack says {NEW}" in str(failed.value)
    assert f"`pulumi up --refresh` puts {NEW} back" in str(failed.value)
    assert drifted.views == []
    # A stack that names no image keeps what runs (ignoreChanges on the image): a refresh adopts it,
    # nothing puts NEW back, and the advice says so.
    with pytest.raises(RolloutFailed) as kept:
        settle(
            "rolling",
            NEW,
            None,
            timeout=60,
            fargate=False,
            say=lambda _: None,
            keeps_running=True,
            reader=lambda _: Recorded(state(OLD, 3, 3, 3)),
        )
    assert f"`pulumi up --refresh` takes {OLD} as what runs" in str(kept.value) and "puts" not in str(kept.value)
    changed = Recorded(state(NEW, 0, 0, 3, current=False), state(OLD, 3, 3, 3))
    with pytest.raises(RolloutFailed) as failed:
        wait(changed)
    assert f"was changed to {OLD} during its rollout to {NEW}" in str(failed.value)


def test_a_connection_error_is_said_by_the_systems_reason() -> None:
    # What the Kubernetes client raises when nothing listens: urllib3's retries, wrapping the reason.
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    inner = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    err = MaxRetryError(None, "/apis/apps/v1/namespaces/rolling/deployments/x", inner)  # type: ignore[arg-type]
    assert short(err) == "[Errno 111] Connection refused"
    assert short(ValueError("first line\nsecond")) == "ValueError: first line"


NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def entry(manager: str, at: datetime.datetime) -> dict[str, str]:
    return {"manager": manager, "operation": "Apply", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_when_the_provider_last_applied_is_its_field_managers_latest_time() -> None:
    long_ago = NOW - datetime.timedelta(days=3)
    ours = [entry("pulumi-kubernetes-1f2e3d4c", long_ago), entry("pulumi-kubernetes-1f2e3d4c", NOW)]
    assert last_applied(ours) == NOW
    # Another manager's change since (`kubectl set image`, the HPA) is not the provider's.
    assert last_applied([entry("pulumi-kubernetes-1f2e3d4c", long_ago), entry("kubectl", NOW)]) == long_ago
    # Client-side apply's manager; the Kubernetes SDK's typed entries.
    assert last_applied([entry("pulumi-kubernetes", NOW)]) == NOW
    assert last_applied([SimpleNamespace(manager="pulumi-kubernetes-9", time=entry("x", NOW)["time"])]) == NOW
    # Fields that say nothing.
    assert last_applied(None) is None and last_applied([entry("kubectl", NOW)]) is None
    assert last_applied([{"manager": "pulumi-kubernetes-1", "time": "yesterday"}]) is None


def test_an_apply_since_the_update_began_is_the_updates() -> None:
    assert applied_since(NOW, NOW - datetime.timedelta(seconds=5))
    assert applied_since(NOW - MARGIN, NOW), "the same second, read a moment apart"
    assert not applied_since(NOW - datetime.timedelta(seconds=10), NOW)
    assert applied_since(None, NOW), "not known: waited for"


def not_applied(cluster: Recorded, said: list[str]) -> str:
    """The wait of an update that began now, whose Deployment the provider last changed an hour ago."""
    return settle(
        "rolling",
        NEW,
        None,
        timeout=60,
        fargate=False,
        say=lambda line: pytest.fail(f"said as information: {line}"),
        warn=said.append,
        started=datetime.datetime.now(datetime.UTC),
        last_applied=NOW - datetime.timedelta(hours=1),
        reader=lambda _: cluster,
    )


@pytest.mark.parametrize(
    ("cluster", "said"),
    [
        (Recorded(state(OLD, 3, 3, 3)), f"runs {OLD}, but the stack says {NEW}: changed outside Pulumi"),
        (Recorded(state(NEW, 1, 2, 4)), "its rollout is not complete"),
        (Recorded(state(NEW, 3, 3, 3), error=ApiException(status=503, reason="Service Unavailable")), "503"),
    ],
)
def test_an_update_that_did_not_apply_the_deployment_warns_how_the_app_is_and_never_fails_for_it(
    cluster: Recorded, said: str
) -> None:
    lines: list[str] = []
    assert not_applied(cluster, lines).startswith("not changed by this update")
    assert len(lines) == 1 and said in lines[0], lines
    assert "this update did not change Deployment rolling/nginx-deployment and does not wait for it" in lines[0]
    assert cluster.views == [], "nothing waited"


def test_an_update_that_did_not_apply_a_complete_deployment_says_nothing() -> None:
    lines: list[str] = []
    assert not_applied(Recorded(state(NEW, 3, 3, 3)), lines) == f"not changed by this update: {state(NEW, 3, 3, 3)}"
    assert lines == []


def test_the_update_began_on_the_clusters_clock() -> None:
    # The update began a minute ago by this machine's clock and the provider applied the Deployment 30 s ago
    # by the cluster's, whose clock is 5 minutes behind: the apply was before the update, on one clock.
    behind = datetime.timedelta(minutes=5)
    began = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    lines: list[str] = []
    cluster = Recorded(state(NEW, 1, 2, 4), state(NEW, 3, 3, 3), clock=datetime.datetime.now(datetime.UTC) - behind)
    summary = settle(
        "rolling",
        NEW,
        None,
        timeout=60,
        fargate=False,
        say=lines.append,
        started=began,
        last_applied=datetime.datetime.now(datetime.UTC) - behind - datetime.timedelta(seconds=30),
        reader=lambda _: cluster,
    )
    assert summary.startswith("complete"), "the apply was this update's: waited for"
    assert cluster.views, "it waited"
