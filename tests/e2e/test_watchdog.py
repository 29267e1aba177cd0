"""The cluster's watchdog over a judged release, on the real node: a run killed (SIGKILL of its whole process
group, as a CI runner is lost) while its canary or its bake is judged has that stage undone in the cluster
within watchdogSeconds of its last renewal, said in an Event and in annotations; the next run settles the stack
through Pulumi. A watchdog that cannot start refuses the release before any change; its Role allows what it
does and nothing else."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from kubernetes import client

from infra.identity import CANARY_DEPLOYMENT, DEPLOYMENT, INGRESS, WATCHDOG
from infra.kube import watchdog
from infra.kube.lease import lease_name
from infra.release import CHANGE_CAUSE
from infra.rollout.exits import Exit
from tests.e2e.harness import LocalStack, api_client, plain_traffic, ready_to_serve, wait_for
from tests.e2e.images import ERRORS, image
from tests.e2e.test_analysis import QUICK, assert_restored, no_canary, pods_of, runner_lost_during, stopped_during
from tests.e2e.test_rollout import ready_pods_by_image
from tests.e2e.test_rollout_command import rollout

# The lease's duration in these tests; the watchdog acts once it has seen no renewal for that long, so the
# release is undone at most this, its one-second look and the API's answer after the runner is lost.
LEASE_S = 10
BOUND_S = LEASE_S + 5


def run_lost_events(stack: LocalStack) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(api_client()).list_namespaced_event(stack.namespace).items
    return [e for e in events if e.reason in watchdog.REASONS and e.involved_object.name == DEPLOYMENT]


def template_image(stack: LocalStack) -> str:
    return str(stack.deployment().spec.template.spec.containers[0].image)


def watchdog_jobs(stack: LocalStack) -> list[str]:
    jobs = client.BatchV1Api(api_client()).list_namespaced_job(stack.namespace).items
    return [j.metadata.name for j in jobs if (j.metadata.labels or {}).get("app.kubernetes.io/name") == WATCHDOG]


def test_a_runner_lost_during_the_canary_has_the_watchdog_take_it_away_within_the_bound(deployed: LocalStack) -> None:
    deployed.set(**QUICK, canarySeconds=120, watchdogSeconds=LEASE_S)
    url = ready_to_serve(deployed)
    canary_ready = lambda: ready_pods_by_image(deployed).get(image("1.16.1")) == 1  # noqa: E731
    # Users that never re-send a request: the canary's pod leaves the Service as it goes, draining what it has.
    with plain_traffic(url, "watchdog-canary", keepalive=False) as users:
        killed = runner_lost_during(deployed, "--tag", "1.16.1", "--canary", "1", reached=canary_ready)
        wait_for(lambda: pods_of(deployed, image("1.16.1")) == 0, BOUND_S + 30, "the watchdog to take the canary away")
        gone = time.time()
    assert gone - killed < BOUND_S, f"the canary went {gone - killed:.1f}s after the runner was lost"
    assert [r for r in users.responses if r.failed] == []
    # Said where a person looks: an Event on the Deployment and its annotation (`kubectl describe`).
    (event,) = run_lost_events(deployed)
    assert event.reason == "RunLost" and event.type == "Warning", event.message
    assert lease_name(deployed.stack.name) in event.message and "the canary" in event.message, event.message
    said = watchdog.Acted.parse(deployed.deployment().metadata.annotations[watchdog.WATCHING])
    assert said is not None and said.stage == "canary" and said.release == image("1.16.1"), said
    assert said.failed is None and any("scaled to 0 pods" in d for d in said.did), said
    # The Deployment's own pods were never touched (its annotation alone changed: Kubernetes counts that as a
    # new generation of a Deployment, with no new ReplicaSet).
    assert template_image(deployed) == image("1.14.2")
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
    # The watchdog's Job ended with its work; `rollout status` says who acted.
    code, result, err = rollout(deployed, "status")
    assert code == Exit.OK, err
    assert result["status"]["judge"]["who"] == "watchdog", result["status"]
    # The next run settles the stack through Pulumi: the canary removed from the state too.
    code, result, err = rollout(deployed, "abort", "--yes")
    assert code == Exit.OK and result["outcome"] == "unfinished aborted", err
    assert result["watchdogActed"]["stage"] == "canary", result
    wait_for(lambda: no_canary(deployed), 30, "the canary's Deployment to go")
    assert_restored(deployed)


def test_a_run_interrupted_during_the_canary_hands_it_to_the_watchdog_at_once(deployed: LocalStack) -> None:
    # The default lease (20 s): the hand-over does not wait for it to run out.
    deployed.set(**QUICK, canarySeconds=120)
    canary_ready = lambda: ready_pods_by_image(deployed).get(image("1.16.1")) == 1  # noqa: E731
    interrupted, code, err = stopped_during(
        deployed, "--tag", "1.16.1", "--canary", "1", reached=canary_ready, sig=signal.SIGINT
    )
    assert code == Exit.FAILED and "left to the cluster's watchdog" in err, err
    wait_for(lambda: pods_of(deployed, image("1.16.1")) == 0, 30, "the watchdog to take the canary away")
    assert time.time() - interrupted < 10, "the canary went only as the lease ran out"
    (event,) = run_lost_events(deployed)
    assert "handed its release over as it ended (the run was interrupted)" in event.message, event.message
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
    # The next run on this machine takes the stack at once (the interrupted process has ended) and settles it.
    code, result, err = rollout(deployed, "abort", "--yes")
    assert code == Exit.OK and result["outcome"] == "unfinished aborted", err
    assert result["watchdogActed"]["stage"] == "canary", result
    wait_for(lambda: no_canary(deployed), 30, "the canary's Deployment to go")
    assert_restored(deployed)


def test_a_runner_lost_during_the_bake_has_the_watchdog_put_the_previous_image_back(deployed: LocalStack) -> None:
    deployed.set(**QUICK, bakeSeconds=120, watchdogSeconds=LEASE_S)
    baking = lambda: ready_pods_by_image(deployed) == {image("1.16.1"): 3}  # noqa: E731
    killed = runner_lost_during(deployed, "--tag", "1.16.1", reached=baking)
    wait_for(lambda: template_image(deployed) == image("1.14.2"), BOUND_S + 30, "the previous image back")
    assert time.time() - killed < BOUND_S + 1  # a look every 0.5 s here
    # The release's pods out one for one as the previous version's get ready, not minReadySeconds after.
    wait_for(lambda: pods_of(deployed, image("1.16.1")) == 0, 60, "the release's pods gone")
    assert time.time() - killed < BOUND_S + 10, f"the release's pods went {time.time() - killed:.1f}s after the kill"
    wait_for(lambda: ready_pods_by_image(deployed) == {image("1.14.2"): 3}, 90, "the previous version everywhere")
    (event,) = run_lost_events(deployed)
    assert f"put back to {image('1.14.2')}" in event.message, event.message
    # The release's pods left as the previous version's became ready, not minReadySeconds after each.
    assert f"the pods of {image('1.16.1')} out of the Service" in event.message, event.message
    assert "not done" not in event.message, event.message
    # The re-run: the stack settled first (the state read back, the release recorded as aborted), then the
    # release shipped again and judged from the start.
    deployed.set(bakeSeconds=3)
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.OK and result["outcome"] == "succeeded", err
    assert result["watchdogActed"]["release"] == image("1.16.1"), result
    assert result["analysis"]["state"] == "pass", result
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}
    assert template_image(deployed) == image("1.16.1")
    assert deployed.preview().change_summary == {"same": 12}
    # The re-run's watchdog was removed with it; the lost run's ended by itself once it had acted.
    ran = result["watchdog"]["job"]
    wait_for(lambda: ran not in watchdog_jobs(deployed), 30, "the re-run's watchdog to go")
    assert all(
        j.status.succeeded for j in client.BatchV1Api(api_client()).list_namespaced_job(deployed.namespace).items
    )


def test_a_release_whose_watchdog_cannot_start_is_refused_before_any_change(deployed: LocalStack) -> None:
    # An image the node's registry does not have: the watchdog's pod never runs (ErrImagePull).
    deployed.set(**QUICK, watchdogImage="localhost:5000/rolling-watchdog:missing")
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.UNGUARDED, err
    assert result["changed"] is False and "nothing was changed" in err
    assert "did not start watching within 30s" in err and ("ErrImagePull" in err or "ImagePullBackOff" in err), err
    wait_for(lambda: watchdog_jobs(deployed) == [], 30, "the Job that could not start to be removed")
    code, result, _ = rollout(deployed, "status")
    assert result["unfinished"] is None
    assert_restored(deployed)


def review(stack: LocalStack, verb: str, resource: str, name: str = "", group: str = "", sub: str = "") -> bool:
    """Whether the watchdog's service account may ``verb`` ``resource`` (named ``name``) in the stack's namespace."""
    attributes = client.V1ResourceAttributes(
        namespace=stack.namespace, verb=verb, resource=resource, name=name or None, group=group, subresource=sub or None
    )
    body = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{stack.namespace}:{WATCHDOG}", resource_attributes=attributes
        )
    )
    return bool(client.AuthorizationV1Api(api_client()).create_subject_access_review(body).status.allowed)


def test_the_watchdog_may_do_what_it_does_and_nothing_else(deployed: LocalStack) -> None:
    lease = lease_name(deployed.stack.name)
    may = [
        ("get", "leases", lease, "coordination.k8s.io", ""),
        ("patch", "leases", lease, "coordination.k8s.io", ""),
        ("patch", "deployments", DEPLOYMENT, "apps", ""),
        ("patch", "deployments", CANARY_DEPLOYMENT, "apps", "scale"),
        ("get", "deployments", DEPLOYMENT, "apps", ""),
        ("list", "replicasets", "", "apps", ""),
        ("patch", "replicasets", "nginx-deployment-5d4f8b7c9", "apps", "scale"),
        ("create", "events", "", "", ""),
    ]
    may_not = [
        ("get", "leases", "rolling-run-another-stack", "coordination.k8s.io", ""),
        ("delete", "leases", lease, "coordination.k8s.io", ""),
        ("list", "leases", "", "coordination.k8s.io", ""),
        ("delete", "deployments", DEPLOYMENT, "apps", ""),
        ("patch", "deployments", "another-app", "apps", ""),
        ("create", "deployments", "", "apps", ""),
        ("get", "secrets", "", "", ""),
        ("patch", "replicasets", "nginx-deployment-5d4f8b7c9", "apps", ""),  # its scale alone
        ("delete", "replicasets", "nginx-deployment-5d4f8b7c9", "apps", ""),
        ("list", "pods", "", "", ""),
        ("create", "pods", "", "", ""),
        ("patch", "ingresses", INGRESS, "networking.k8s.io", ""),  # no weighted canary on local
        ("patch", "roles", WATCHDOG, "rbac.authorization.k8s.io", ""),
    ]
    assert [a for a in may if not review(deployed, *a)] == []
    assert [a for a in may_not if review(deployed, *a)] == []


def lease_annotations(stack: LocalStack) -> dict[str, str]:
    try:
        lease = client.CoordinationV1Api(api_client()).read_namespaced_lease(
            lease_name(stack.stack.name), stack.namespace
        )
    except client.ApiException:
        return {}
    return dict(lease.metadata.annotations or {})


def change_cause(stack: LocalStack) -> str:
    return str((stack.deployment().metadata.annotations or {}).get(CHANGE_CAUSE) or "")


# Each phase a run can be lost in, beside the canary's and the bake's above: the release, the run's arguments,
# when the cluster shows the phase, and what the next run of the same release ends as.
PHASES: dict[str, tuple[str, tuple[str, ...], Callable[[LocalStack], bool], str]] = {
    # The watchdog watches, no stage has begun: nothing changed, nothing to undo.
    "preview": ("1.16.1", ("--canary", "1"), lambda s: watchdog.WATCHING in lease_annotations(s)
                and not lease_annotations(s).get(watchdog.PLAN), "succeeded"),
    # The canary's `up` holds the stack's lock; its pod is made, not ready.
    "canary up": ("1.16.1", ("--canary", "1"), lambda s: pods_of(s, image("1.16.1")) == 1
                  and ready_pods_by_image(s).get(image("1.16.1"), 0) == 0, "succeeded"),
    # The rollout's `up`: the new template, not every pod of it ready.
    "rollout": ("1.16.1", (), lambda s: template_image(s) == image("1.16.1")
                and ready_pods_by_image(s).get(image("1.16.1"), 0) < 3, "succeeded"),
    # A release that answers every user 500, aborted: its rollback through Pulumi under way.
    "rollback": (ERRORS, (), lambda s: change_cause(s).startswith("rollback "), "aborted"),
}  # fmt: skip


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_runner_lost_at_any_phase_is_undone_in_the_cluster_and_the_next_run_needs_no_person(
    deployed: LocalStack, phase: str
) -> None:
    release, args, reached, next_outcome = PHASES[phase]
    deployed.set(**QUICK, canarySeconds=60, bakeSeconds=60, watchdogSeconds=LEASE_S)
    url = ready_to_serve(deployed)
    with plain_traffic(url, f"watchdog-{phase.replace(' ', '-')}", keepalive=False) as users:
        killed = runner_lost_during(deployed, "--tag", release, *args, reached=lambda: reached(deployed))
        # Undone in the cluster by the watchdog alone, within the bound: the canary's pod away, or the previous
        # image back in the template; then the release's pods out as the previous version's get ready.
        if phase == "canary up":
            wait_for(lambda: pods_of(deployed, image(release)) == 0, BOUND_S + 30, "the canary taken away")
        else:
            wait_for(lambda: template_image(deployed) == image("1.14.2"), BOUND_S + 30, "the previous image back")
        assert time.time() - killed < BOUND_S + 1, f"undone {time.time() - killed:.1f}s after the kill"
        wait_for(lambda: pods_of(deployed, image(release)) == 0, 60, "the release's pods gone")
        undone = time.time()
        assert undone - killed < BOUND_S + 10, f"the release's pods went {undone - killed:.1f}s after the kill"
        wait_for(lambda: ready_pods_by_image(deployed) == {image("1.14.2"): 3}, 90, "the previous version everywhere")
    lost = [r for r in users.responses if r.failed and r.t >= killed]
    if release == "1.16.1":
        assert [r for r in users.responses if r.failed] == [], "a good release cost users a request"
    else:
        assert all(r.t - killed < BOUND_S for r in lost), f"bad answers {max(r.t for r in lost) - killed:.1f}s after"
    if phase == "preview":
        assert undone - killed < 5, "nothing had changed, and nothing was undone"
    # The re-run of the same release, as the pipeline's: no `pulumi cancel` by anyone, the lost run's lock (the
    # canary's and the rollout's `up` held it) recovered, the release judged from the start.
    deployed.set(canarySeconds=3, bakeSeconds=3)
    code, result, err = rollout(deployed, "--tag", release, *args, "--yes")
    assert result["outcome"] == next_outcome, err
    assert code == (Exit.OK if next_outcome == "succeeded" else Exit.ABORTED), err
    if next_outcome == "succeeded":
        assert ready_pods_by_image(deployed) == {image(release): 3}
    else:
        assert_restored(deployed)
