"""What the README promises, on the real engine, provider and control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pulumi.automation as auto
import pytest
from kubernetes import client

from infra import images, strategy
from infra.identity import CONTAINER, DEPLOYMENT, DEPLOYMENT_REF, SELECTOR
from infra.kube import status, watch
from infra.rollout.engine import Engine, preview_steps
from rigs import load
from rigs.timeline import RequestedPods
from tests.e2e.harness import (
    LocalStack,
    RolloutWatch,
    api_client,
    local_stack,
    ready_to_serve,
    rollout_complete,
    traffic,
    wait_for,
)
from tests.e2e.images import CRASHING, MISSING, NEVER_READY, image

REVISION = "deployment.kubernetes.io/revision"


def ready_pods_by_image(stack: LocalStack) -> dict[str, int]:
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(stack.namespace, label_selector=SELECTOR).items
    counts: dict[str, int] = {}
    for pod in pods:
        if pod.metadata.deletion_timestamp is None and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        ):
            image = pod.spec.containers[0].image
            counts[image] = counts.get(image, 0) + 1
    return counts


def replica_sets(stack: LocalStack) -> dict[str, client.V1ReplicaSet]:
    items = client.AppsV1Api(api_client()).list_namespaced_replica_set(stack.namespace, label_selector=SELECTOR).items
    return {rs.spec.template.spec.containers[0].image: rs for rs in items}


def resources(stack: LocalStack) -> Any:
    """The resources of the stack's last checkpoint, as the backend holds them."""
    deployment = stack.stack.export_stack().deployment
    assert deployment is not None
    return deployment["resources"]


def test_first_deploy(deployed: LocalStack) -> None:
    deployment = deployed.deployment()
    assert deployment.spec.template.spec.containers[0].image == image("1.14.2")
    assert deployment.status.ready_replicas == deployment.status.available_replicas == 3
    core = client.CoreV1Api(api_client())
    assert core.read_namespaced_service("nginx", deployed.namespace).spec.type == "ClusterIP"
    pdb = client.PolicyV1Api(api_client()).read_namespaced_pod_disruption_budget(DEPLOYMENT, deployed.namespace)
    assert pdb.spec.max_unavailable == 1
    outputs = {k: v.value for k, v in deployed.stack.outputs().items()}
    assert outputs == {
        "image": image("1.14.2"),
        "imageTag": "1.14.2",
        "namespace": deployed.namespace,
        "deploymentName": DEPLOYMENT,
        "serviceName": "nginx",
        "url": f"http://{core.read_namespaced_service('nginx', deployed.namespace).spec.cluster_ip}",
    }
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}


def test_tag_change_previews_as_one_in_place_update(deployed: LocalStack) -> None:
    before = deployed.deployment().metadata.resource_version
    deployed.set(imageTag="1.16.1")
    result = deployed.preview(diff=True)
    assert result.change_summary == {"same": 11, "update": 1}
    assert image("1.14.2") in result.stdout and image("1.16.1") in result.stdout
    # The provider's field-level diff: the container image and why it runs (the change-cause a plain `up`
    # writes), nothing else of the Deployment.
    engine = Engine(deployed.workdir, deployed.stack.name, deployed.env)
    steps = [step for step in preview_steps(engine.run("preview", "--json")) if step.op != "same"]
    assert [(step.op, step.name, step.changes) for step in steps] == [
        ("update", DEPLOYMENT, ('metadata.annotations["kubernetes.io/change-cause"]', images.CONTAINER_IMAGE_PATH))
    ]
    assert all(step.image_only for step in steps), "the rollout command takes it for a release"
    assert deployed.deployment().metadata.resource_version == before


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [(3, 1, 0), (5, 2, 1)])
def test_rolling_update_keeps_capacity(tmp_path: Path, replicas: int, surge: int, unavailable: int) -> None:
    with local_stack(
        tmp_path, imageTag="1.14.2", replicas=replicas, maxSurge=surge, maxUnavailable=unavailable
    ) as stack:
        stack.up()
        revision = int(stack.deployment().metadata.annotations[REVISION])
        stack.set(imageTag="1.16.1")
        with RolloutWatch(stack.namespace) as watcher, RequestedPods(stack.namespace) as requested:
            result = stack.up()
            done, new_set = stack.deployment(), replica_sets(stack)[image("1.16.1")]  # the moment `up` returns
            rollout_complete(stack)  # at once: the watchers have seen the whole rollout
        watcher.save(f"rollout-{replicas}-{surge}-{unavailable}")

        assert result.summary.resource_changes == {"same": 11, "update": 1}
        plan = strategy.plan(replicas, surge, unavailable)
        for sample in watcher.samples:
            assert sample.ready >= plan.min_ready, f"capacity dropped: {sample}"
        # maxSurge bounds the pods the controller asks for; the pods running can be more for a moment,
        # between an old ReplicaSet's scale-down and its pods' deletion.
        assert max(requested.totals) == plan.max_pods, f"pods asked for: {requested.totals}"
        revisions = {r for s in watcher.samples for r in s.ready_by_revision}
        assert len(revisions) == 2, "the rollout went through exactly one new ReplicaSet"
        assert len(watcher.samples) > replicas, "the rollout took several observable steps"

        # `up` returned once the rollout was complete as `kubectl rollout status` judges it: every
        # replica updated and available, no old one left, not merely once the change was applied.
        assert status.Health.of(done).complete, status.Health.of(done)
        assert int(done.metadata.annotations[REVISION]) == revision + 1
        assert new_set.metadata.annotations[REVISION] == str(revision + 1)
        assert new_set.status.ready_replicas == replicas
        sets = replica_sets(stack)
        assert sets[image("1.16.1")].status.ready_replicas == replicas
        assert sets[image("1.14.2")].spec.replicas == 0
        assert ready_pods_by_image(stack) == {image("1.16.1"): replicas}


# A few here; `make bench` runs 40 (bench/in_a_row.py) and says how many returned incomplete.
ROLLOUTS_IN_A_ROW = 4


def test_every_plain_up_returns_with_the_rollout_complete(tmp_path: Path) -> None:
    # The provider's own wait returned now and then with old pods still running (a Progressing condition
    # left from the last rollout). Many rollouts in a row, with a core kept busy beside them (the
    # controller's status writes then lag, as they did under load in CI): at every return of a plain
    # `up`, the Deployment is complete as `kubectl rollout status` judges it.
    with local_stack(tmp_path, imageTag="1.14.2", replicas=2, maxSurge=2, minReadySeconds=0, drainSeconds=3) as stack:
        stack.up()
        busy = subprocess.Popen(  # bounded: it stops by itself after 10 minutes
            ["python3", "-c", "import time\nend = time.time() + 600\nwhile time.time() < end: pass"]
        )
        try:
            for n in range(ROLLOUTS_IN_A_ROW):
                tag = ("1.15.0", "1.14.2")[n % 2]
                stack.set(imageTag=tag)
                stack.up()
                returned = status.Health.of(stack.deployment())
                assert returned.complete and returned.image == image(tag), f"rollout {n + 1}: {returned}"
        finally:
            busy.kill()
            busy.wait()


def test_refused_config_changes_nothing(deployed: LocalStack) -> None:
    before = deployed.deployment().metadata.resource_version
    state_before = resources(deployed)
    deployed.set(imageTag="latest")
    for run in (deployed.preview, deployed.up):
        with pytest.raises(auto.CommandError) as caught:
            run()
        assert "rolling:imageTag 'latest' is not allowed" in str(caught.value)
    assert deployed.deployment().metadata.resource_version == before
    assert resources(deployed) == state_before
    assert deployed.stack.outputs()["image"].value == image("1.14.2")


class FirstVerdict:
    """When the rollout to ``tag`` first showed a definitive failure (status.definitive_failure, or the
    controller's deadline), polled from outside the program every half second."""

    def __init__(self, stack: LocalStack, tag: str) -> None:
        self.stack, self.image = stack, image(tag)
        self.at: float | None = None
        self.reason: str | None = None
        self.errors: list[str] = []  # a poll that failed is said, not fatal: the next one tries again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FirstVerdict:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def catch_up(self, seconds: float) -> None:
        """Give a poll that a busy machine delayed a moment to land (a late one only flatters `up`)."""
        deadline = time.monotonic() + seconds
        while self.at is None and time.monotonic() < deadline:
            time.sleep(0.1)

    def _run(self) -> None:
        api = api_client()
        core = client.CoreV1Api(api)
        while not self._stop.is_set() and self.at is None:
            try:
                pods = core.list_namespaced_pod(self.stack.namespace, label_selector=SELECTOR).items
                events = core.list_namespaced_event(self.stack.namespace).items
                reason = status.definitive_failure(pods, events, self.image, fargate=False)
                reason = reason or watch.health(api, self.stack.namespace, DEPLOYMENT).failed
            except Exception as err:
                self.errors.append(f"{err.__class__.__name__}: {err}"[:200])
                reason = None
            if reason is not None:
                self.at, self.reason = time.monotonic(), reason
            self._stop.wait(0.5)


@pytest.mark.parametrize(
    ("tag", "deadline", "says"),
    [
        (MISSING, 60, "the registry has no"),
        (NEVER_READY, 10, "progress deadline"),
        (CRASHING, 60, "keeps exiting"),
    ],
    ids=["not-in-registry", "never-ready", "exits-at-start"],
)
def test_failed_rollout_fails_up_with_its_cause_within_seconds_and_keeps_old_pods(
    tmp_path: Path, tag: str, deadline: int, says: str
) -> None:
    # A plain `pulumi up`: no rollout command around it. The deadline is long where a pod's own state
    # is the verdict (a missing image, a crash loop): `up` must not wait for it.
    with local_stack(tmp_path, imageTag="1.14.2", progressDeadlineSeconds=deadline) as stack:
        stack.up()
        url = ready_to_serve(stack)
        stack.set(imageTag=tag)
        # Under load: while the new pods fail, the old ones answer every request.
        with (
            traffic(url, f"failed-{tag}", keepalive=False) as sent,
            RolloutWatch(stack.namespace) as watcher,
            FirstVerdict(stack, tag) as verdict,
        ):
            with pytest.raises(auto.CommandError) as caught:
                stack.up()
            failed_at = time.monotonic()
            verdict.catch_up(5)
        watcher.save(f"rollout-failed-{tag}")
        assert load.problems(sent.responses, {"1.14.2"}) == []
        assert all(s.ready >= 3 for s in watcher.samples), "the old pods stopped serving"
        assert ready_pods_by_image(stack) == {image("1.14.2"): 3}
        # The engine's error names the Deployment and the cause, within 15 s of the first sign of it.
        message = str(caught.value)
        assert DEPLOYMENT in message and says in message, message
        assert verdict.at is not None, f"the cluster never showed why (polls: {verdict.errors[-3:]}): {message}"
        assert failed_at - verdict.at <= 15, f"`up` failed {failed_at - verdict.at:.1f}s after {verdict.reason}"

        # The state says what the cluster was told; the next `up` with the old tag restores it.
        stack.set(imageTag="1.14.2")
        stack.up()
        assert watch.health(api_client(), stack.namespace, DEPLOYMENT).complete
        assert ready_pods_by_image(stack) == {image("1.14.2"): 3}


def test_a_first_deploy_that_cannot_start_fails_within_seconds_naming_why(tmp_path: Path) -> None:
    # A new stack (or one brought back onto a cluster made again, the README's recovery) whose image the
    # registry lacks: `up` fails as fast as a tag change does, not after the provider's 10-minute wait for
    # the new Service to get endpoints.
    with local_stack(tmp_path, imageTag=MISSING, progressDeadlineSeconds=60) as stack:
        start = time.monotonic()
        with pytest.raises(auto.CommandError) as caught:
            stack.up()
        took = time.monotonic() - start
        assert "the registry has no" in str(caught.value), str(caught.value)[-2000:]
        assert took < 90, f"`up` failed after {took:.0f} s"


def test_pods_that_do_not_fit_the_node_fail_up_naming_why(tmp_path: Path) -> None:
    # More CPU than the node has: the new pod sits Pending. A cluster that may get room is not a verdict,
    # so `up` fails at the deadline, and the error says what the scheduler said, not only that time ran out.
    with local_stack(tmp_path, imageTag="1.14.2", progressDeadlineSeconds=10) as stack:
        stack.up()
        stack.set(imageTag="1.16.1", cpu="16")  # the node has 2
        with pytest.raises(auto.CommandError) as caught:
            stack.up()
        message = str(caught.value)
        assert "progress deadline" in message and "Insufficient cpu" in message, message
        assert ready_pods_by_image(stack) == {image("1.14.2"): 3}
        stack.set(imageTag="1.14.2", cpu="100m")
        stack.up()
        assert ready_pods_by_image(stack) == {image("1.14.2"): 3}


def set_image_outside_pulumi(stack: LocalStack, reference: str) -> None:
    """`kubectl set image` on the stack's Deployment, as a user would, and its rollout to the end."""
    for args in (
        ["set", "image", DEPLOYMENT_REF, f"{CONTAINER}={reference}"],
        ["rollout", "status", DEPLOYMENT_REF, "--timeout=60s"],
    ):
        subprocess.run(["kubectl", "-n", stack.namespace, *args], check=True, capture_output=True)


def test_drift_is_reported_and_repaired(deployed: LocalStack) -> None:
    set_image_outside_pulumi(deployed, image("1.15.0"))
    # What users type. A plain `up` compares the config with the stack's state, not with the cluster, and
    # has nothing to apply: it does not fail for an app it did not change (an infrastructure change is not
    # held hostage by the app), but the program reads the cluster and warns, naming the drift and the
    # repair (docs/rollouts.md), rather than claim the stack's image runs.
    plain = deployed.up()
    said = f"runs {image('1.15.0')}, but the stack says {image('1.14.2')}"
    assert said in plain.stdout and f"`pulumi up --refresh` puts {image('1.14.2')} back" in plain.stdout, plain.stdout
    assert "this update did not change Deployment" in plain.stdout
    assert deployed.deployment().spec.template.spec.containers[0].image == image("1.15.0")
    # With --refresh the engine reads the cluster first: the preview shows the drift, the update undoes it.
    preview = deployed.preview(refresh=True, diff=True)
    assert preview.change_summary.get(auto.OpType.UPDATE) == 1, preview.stdout
    assert image("1.15.0") in preview.stdout
    deployed.up(refresh=True)
    assert deployed.deployment().spec.template.spec.containers[0].image == image("1.14.2")
    wait_for(lambda: ready_pods_by_image(deployed) == {image("1.14.2"): 3}, 60, "the declared image to serve again")


def test_concurrent_update_fails_fast(deployed: LocalStack) -> None:
    # A rollout that cannot finish holds the stack's lock until its progress deadline, so the second
    # update surely meets the first (a first update that succeeds can end before the second starts:
    # the provider's wait sometimes ends with the first new pods ready, docs/rollouts.md).
    deployed.set(imageTag=NEVER_READY, progressDeadlineSeconds=30)
    first: dict[str, object] = {}

    def run_first() -> None:
        try:
            first["result"] = deployed.up()
        except BaseException as err:
            first["error"] = err

    thread = threading.Thread(target=run_first)
    thread.start()
    wait_for(lambda: image(NEVER_READY) in replica_sets(deployed), 60, "the first update to start rolling")
    start = time.monotonic()
    with pytest.raises(auto.CommandError) as caught:
        deployed.another_workspace().up(color="never")
    assert time.monotonic() - start < 20, "the second update did not fail fast"
    assert "locked" in str(caught.value)
    assert thread.is_alive(), "the first update ended before the second was refused: the test proves nothing"
    thread.join(timeout=180)
    assert isinstance(first.get("error"), auto.CommandError), first  # the first failed at its deadline
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}


def test_destroy_removes_everything(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2") as stack:
        stack.up()
        stack.stack.destroy(color="never")
        apps, core = client.AppsV1Api(api_client()), client.CoreV1Api(api_client())
        assert apps.list_namespaced_deployment(stack.namespace).items == []
        assert core.list_namespaced_service(stack.namespace).items == []
        assert client.PolicyV1Api(api_client()).list_namespaced_pod_disruption_budget(stack.namespace).items == []
        namespaces = {ns.metadata.name for ns in core.list_namespace().items if ns.status.phase == "Active"}
        assert stack.namespace not in namespaces
        wait_for(lambda: core.list_namespaced_pod(stack.namespace).items == [], 60, "the pods to go")


def start_cli_up(stack: LocalStack) -> subprocess.Popen[str]:
    """`pulumi up` as a user runs it, so it can be signalled like one."""
    return subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--stack", stack.stack.name, "--color", "never"],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", *args, "--stack", stack.stack.name, "--color", "never"],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        check=False,
    )


def app_objects(stack: LocalStack) -> dict[str, list[str]]:
    apps, core = client.AppsV1Api(api_client()), client.CoreV1Api(api_client())
    policy = client.PolicyV1Api(api_client())
    networking = client.NetworkingV1Api(api_client())
    return {
        "deployments": [d.metadata.name for d in apps.list_namespaced_deployment(stack.namespace).items],
        "services": [s.metadata.name for s in core.list_namespaced_service(stack.namespace).items],
        "pdbs": [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(stack.namespace).items],
        "networkpolicies": [n.metadata.name for n in networking.list_namespaced_network_policy(stack.namespace).items],
    }


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_update_recovers(deployed: LocalStack, sig: signal.Signals) -> None:
    # minReadySeconds slows the rollout so the signal lands in the middle of it.
    deployed.set(imageTag="1.16.1", minReadySeconds=4)
    process = start_cli_up(deployed)
    wait_for(lambda: image("1.16.1") in replica_sets(deployed), 60, "the rollout to start")
    assert process.poll() is None, "`up` had ended before the signal: nothing was interrupted"
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    if sig == signal.SIGKILL:
        # Killed before it finished: the lock and any pending operations are left behind. The documented
        # recovery: cancel (drops the lock), refresh (clears the pending operations), up.
        assert process.returncode == -signal.SIGKILL, output
        cancel = cli(deployed, "cancel", "--yes")
        assert cancel.returncode == 0 or "no lock" in cancel.stdout.lower() + cancel.stderr.lower(), cancel
        refresh = cli(deployed, "refresh", "--yes", "--clear-pending-creates")
        assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    else:
        # Ctrl-C once: the engine cancels and ends on its own, the lock released. The documented
        # recovery is nothing but `pulumi up` again.
        assert process.returncode not in (0, None), output
    again = cli(deployed, "up", "--yes", "--skip-preview")
    assert again.returncode == 0, again.stdout + again.stderr

    assert app_objects(deployed) == {
        "deployments": [DEPLOYMENT],
        "services": ["nginx"],
        "pdbs": [DEPLOYMENT],
        "networkpolicies": [DEPLOYMENT],
    }
    urns = [r["urn"] for r in resources(deployed)]
    assert len(urns) == len(set(urns)) == 12, urns  # stack, provider, component, 9 Kubernetes objects
    assert not (deployed.stack.export_stack().deployment or {}).get("pending_operations")
    wait_for(lambda: ready_pods_by_image(deployed) == {image("1.16.1"): 3}, 60, "the new pods only")
    assert deployed.stack.preview().change_summary == {"same": 12}
