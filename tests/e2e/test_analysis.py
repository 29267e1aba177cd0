"""The analysis on the real node: a release whose pods get Ready but serve errors, or slowly, is aborted and
rolled back while the old version keeps serving; a healthy release at a low request rate is not. The
canary: aborted during its analysis, paused and promoted or aborted from another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from infra.identity import CANARY_DEPLOYMENT
from infra.rollout.exits import Exit
from infra.settings import SERVICE_PROPAGATION_SECONDS
from rigs import load
from tests.e2e.harness import ARTIFACTS, LocalStack, api_client, plain_traffic, ready_to_serve, wait_for
from tests.e2e.images import COLD, ERRORS, NEVER_READY, PARTIAL, RESETS, SLOW, image
from tests.e2e.test_rollout import ready_pods_by_image
from tests.e2e.test_rollout_command import rollout, tag

# Enough evidence for the tests' short rollouts; the defaults (50 responses, 10 a second) are for users.
QUICK = {"analysisRate": 20, "minRequests": 20}


def record(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"analysis-{name}.jsonl"


def recorded(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_restored(stack: LocalStack) -> None:
    """The old version on every replica, the stack's config and state as before the release."""
    assert tag(stack) == "1.14.2"
    assert ready_pods_by_image(stack) == {image("1.14.2"): 3}
    assert stack.preview().change_summary == {"same": 12}


def test_a_release_that_serves_errors_is_aborted_and_the_old_version_serves_throughout(deployed: LocalStack) -> None:
    deployed.set(**QUICK)
    url = ready_to_serve(deployed)
    # Users beside the analysis: a client that never re-sends a request, a new connection each.
    with plain_traffic(url, "analysis-errors", keepalive=False) as users:
        code, result, err = rollout(deployed, "--tag", ERRORS, "--yes", "--record", str(record("errors")))
        returned = time.time()
        time.sleep(3)
    assert code == Exit.ABORTED, err
    assert result["outcome"] == "aborted" and result["rolledBack"] is True
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and evidence["version"] == ERRORS, evidence
    assert "maxErrorRatio" in evidence["reason"]
    # The evidence names each version's answers: the old version's were all good.
    assert set(evidence["responses"]["1.14.2"]) == {"200"}, evidence
    assert set(evidence["responses"][ERRORS]) == {"500"}, evidence
    assert "analysis: " in err  # the live view said how it went
    # What users got: every error came from the new version's pods, none from the old ones, and no
    # request went unanswered. Once the command returned, the old version alone answered, after the
    # time kube-proxy takes to stop sending requests to the bad pods that were still draining.
    failed = [r for r in users.responses if r.failed]
    assert failed, "users met the bad release (the analysis needs evidence)"
    assert {(r.status, r.version) for r in failed} == {(500, ERRORS)}
    settled = returned + SERVICE_PROPAGATION_SECONDS
    assert load.problems([r for r in users.responses if r.t > settled], {"1.14.2"}) == []
    assert_restored(deployed)
    # The prober's own record says the same, request by request.
    samples = recorded(record("errors"))
    assert {(s["version"], s["status"]) for s in samples} == {("1.14.2", 200), (ERRORS, 500)}


def test_users_own_requests_stop_a_bad_release_the_probe_alone_would_judge_slowly(deployed: LocalStack) -> None:
    # The probe at one request a second would need minRequests (50) seconds; the users' own requests, as the
    # pods log them, are judged beside it.
    deployed.set(analysisRate=1)
    url = ready_to_serve(deployed)
    with plain_traffic(url, "analysis-users", keepalive=False) as users:
        code, result, err = rollout(deployed, "--tag", ERRORS, "--yes")
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and evidence["version"] == ERRORS, evidence
    # More answers than the probe could have met in the window (one a second, and one more at its edges): the
    # users' requests, as the pods logged them, were judged beside it. (How much sooner they stop a release is
    # measured in make bench-traffic; here, with the other tests beside it, the log reader may come late.)
    answers = sum(sum(by_status.values()) for by_status in evidence["responses"].values())
    assert answers > int(evidence["windowSeconds"]) + 1, (evidence, err[-3000:])
    failed = [r for r in users.responses if r.failed]
    assert {(r.status, r.version) for r in failed} == {(500, ERRORS)}
    assert_restored(deployed)


def test_a_slow_release_is_aborted_on_latency(deployed: LocalStack) -> None:
    deployed.set(**QUICK)
    code, result, err = rollout(deployed, "--tag", SLOW, "--yes", "--record", str(record("slow")))
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and "maxP99Ms 1000" in evidence["reason"], evidence
    assert evidence["p99Ms"] > 1000 and evidence["errors"] == 0, evidence
    # Judged on the pods' own time, as nginx logged each answer: the slowness is the server's.
    assert evidence["timedBy"] == "server", evidence
    assert_restored(deployed)


def test_a_release_its_evidence_cannot_decide_is_aborted_never_shipped(deployed: LocalStack) -> None:
    # One request a second and no users: far too few answers to clear it within analysisMaxSeconds. Missing
    # evidence is never a pass: the stage ends undecided and the release is rolled back.
    deployed.set(analysisRate=1, bakeSeconds=3, analysisMaxSeconds=10)
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "undecided" and evidence["errors"] == 0, evidence
    assert "its window ended before the evidence decided" in evidence["reason"]
    assert_restored(deployed)


def test_a_canary_its_evidence_cannot_decide_is_paused_for_a_person_with_analysis_undecided_pause(
    deployed: LocalStack,
) -> None:
    deployed.set(analysisRate=1, canarySeconds=3, analysisMaxSeconds=10, analysisUndecided="pause")
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--canary", "1", "--yes")
    assert (code, result["outcome"]) == (Exit.UNDECIDED, "paused undecided"), err[-3000:]
    assert result["analysis"]["state"] == "undecided", result["analysis"]
    # Left serving beside the old version, nothing of it recorded as unjudged: a person decides.
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3, image("1.16.1"): 1}
    code, status, err = rollout(deployed, "status")
    assert code == Exit.OK and not status.get("unfinished"), status
    # The ready pods by zone, the canary's too (the local node carries no zone label).
    assert status["status"]["zones"] == {"unknown": 4}, status["status"]
    code, result, err = rollout(deployed, "abort", "--yes")
    assert (code, result["outcome"]) == (Exit.OK, "canary removed"), err
    wait_for(lambda: no_canary(deployed) and pods_of(deployed, image("1.16.1")) == 0, 30, "the canary to go")
    assert_restored(deployed)


@pytest.mark.parametrize(("release", "status"), [(PARTIAL, 500), (RESETS, 0)])
def test_a_release_failing_a_share_of_its_requests_is_aborted(deployed: LocalStack, release: str, status: int) -> None:
    # 5 % of users' requests answered 500, or 10 % of their connections closed with no answer: no single look
    # gives either away, the sequential test does. Users send requests that are never re-sent.
    deployed.set(**QUICK)
    url = ready_to_serve(deployed)
    with plain_traffic(url, f"analysis-{release}", keepalive=False) as users:
        code, result, err = rollout(deployed, "--tag", release, "--yes")
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and evidence["version"] == release, evidence
    assert "maxErrorRatio" in evidence["reason"], evidence
    # What users met of it: errors of the new version only (500s), or connections it closed (no status).
    failed = {(r.status, r.version) for r in users.responses if r.failed}
    assert failed <= ({(500, release)} if status else {(0, "")}), failed
    assert_restored(deployed)


def test_a_release_that_fails_while_it_warms_up_ships_with_a_warm_up_and_is_aborted_without(
    deployed: LocalStack,
) -> None:
    # Its pods answer users 500 for their first 10 s. Judged from the first answer it is condemned; with
    # analysisWarmupSeconds 15 each pod is judged once it has been ready that long, and it ships.
    deployed.set(**QUICK)
    code, result, err = rollout(deployed, "--tag", COLD, "--yes")
    assert code == Exit.ABORTED, err
    assert result["analysis"]["state"] == "breach" and result["analysis"]["version"] == COLD, result["analysis"]
    assert_restored(deployed)
    deployed.set(analysisWarmupSeconds=15)
    code, result, err = rollout(deployed, "--tag", COLD, "--yes")
    assert (code, result["outcome"]) == (Exit.OK, "succeeded"), err[-3000:]
    evidence = result["analysis"]
    assert evidence["state"] == "pass" and evidence["errors"] == 0, evidence
    assert tag(deployed) == COLD
    assert ready_pods_by_image(deployed) == {image(COLD): 3}


def without_pod_logs(name: str) -> dict[str, object]:
    """A ClusterRole that may do everything the API server serves but read a pod's log (RBAC only allows:
    every resource and subresource discovery lists, ``pods/log`` left out)."""
    rules: list[dict[str, object]] = [{"nonResourceURLs": ["*"], "verbs": ["*"]}]
    groups = [("", "/api/v1")]
    listed = json.loads(subprocess.run(["kubectl", "get", "--raw", "/apis"], check=True, capture_output=True).stdout)
    groups += [(g["name"], f"/apis/{g['preferredVersion']['groupVersion']}") for g in listed["groups"]]
    for group, path in groups:
        found = json.loads(subprocess.run(["kubectl", "get", "--raw", path], check=True, capture_output=True).stdout)
        names = sorted({r["name"] for r in found["resources"]} - {"pods/log"})
        rules.append({"apiGroups": [group], "resources": names, "verbs": ["*"]})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    }


def kubectl_apply(document: dict[str, object]) -> None:
    subprocess.run(
        ["kubectl", "apply", "-f", "-"], input=json.dumps(document), text=True, check=True, capture_output=True
    )


def test_a_release_whose_pods_logs_cannot_be_read_stops_undecided_never_ships(
    deployed: LocalStack, tmp_path: Path
) -> None:
    # The run's identity may do everything but read the pods' logs (a 403 on pods/log, as where a cluster's
    # RBAC leaves it out): the users' requests and the servers' own times cannot be had, and missing
    # evidence is never a pass. A healthy release is stopped, undecided, with the gap named.
    name = f"rolling-e2e-no-logs-{deployed.namespace}"
    kubectl_apply(without_pod_logs(name))
    kubectl_apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "default"}})
    kubectl_apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
        }
    )
    token = subprocess.run(
        ["kubectl", "-n", "default", "create", "token", name, "--duration", "1h"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    document = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    for entry in document["users"]:
        entry["user"] = {"token": token}
    kubeconfig = tmp_path / "no-logs.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document))
    asked = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            deployed.namespace,
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource",
            "log",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert asked.stdout.strip() == "no", asked
    deployed.set(kubeconfig=kubeconfig, **QUICK)
    try:
        deployed.up()  # the stack's provider on these credentials: the release changes nothing else
        code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    finally:
        deployed.stack.remove_config("rolling:kubeconfig")
        deployed.up()  # the provider on the test's own credentials again, before they are taken away
        for kind in ("clusterrolebinding", "clusterrole"):
            subprocess.run(["kubectl", "delete", kind, name], check=False, capture_output=True)
        subprocess.run(["kubectl", "-n", "default", "delete", "serviceaccount", name], check=False, capture_output=True)
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "undecided" and evidence["version"] == "1.16.1", evidence
    assert evidence["gaps"] and all("was not read" in gap for gap in evidence["gaps"]), evidence
    assert "cannot be read from the pods' logs" in err, err[-3000:]
    assert_restored(deployed)


def pods_of(stack: LocalStack, reference: str) -> int:
    """Pods of ``reference`` that exist, ready or not, not being deleted."""
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(stack.namespace).items
    return sum(p.spec.containers[0].image == reference and p.metadata.deletion_timestamp is None for p in pods)


def no_canary(stack: LocalStack) -> bool:
    names = [d.metadata.name for d in client.AppsV1Api(api_client()).list_namespaced_deployment(stack.namespace).items]
    return CANARY_DEPLOYMENT not in names


def test_a_bad_canary_is_aborted_during_the_canary_and_the_deployment_is_never_touched(deployed: LocalStack) -> None:
    deployed.set(**QUICK, canarySeconds=20)
    generation = deployed.deployment().metadata.generation
    url = ready_to_serve(deployed)
    with plain_traffic(url, "canary-errors", keepalive=False) as users:
        code, result, err = rollout(deployed, "--tag", ERRORS, "--canary", "1", "--yes")
    assert code == Exit.ABORTED, err
    assert "Canary plan for stack" in err
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and evidence["version"] == ERRORS, evidence
    assert set(evidence["responses"]["1.14.2"]) == {"200"}, evidence
    # Afterwards no pod of the new version exists and the Deployment was never changed.
    wait_for(lambda: pods_of(deployed, image(ERRORS)) == 0 and no_canary(deployed), 30, "the canary to go")
    assert deployed.deployment().metadata.generation == generation
    assert_restored(deployed)
    # Users met the canary's errors only, a share of one pod in four, and no request went unanswered.
    failed = [r for r in users.responses if r.failed]
    assert {(r.status, r.version) for r in failed} <= {(500, ERRORS)}
    assert len(failed) < len(users.responses) / 4, (len(failed), len(users.responses))


def test_pause_then_promote_from_another_process(deployed: LocalStack) -> None:
    deployed.set(**QUICK, canarySeconds=3)
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--canary", "1", "--pause", "--yes")
    assert code == Exit.OK and result["outcome"] == "paused", err
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3, image("1.16.1"): 1}
    assert deployed.preview().change_summary == {"same": 13}, "the state holds the canary too"
    code, result, err = rollout(deployed, "promote", "--yes")
    assert code == Exit.OK, err
    assert result["newImage"] == image("1.16.1") and result["analysis"]["state"] == "pass", result
    wait_for(lambda: no_canary(deployed) and pods_of(deployed, image("1.14.2")) == 0, 30, "the canary to go")
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}
    assert tag(deployed) == "1.16.1"
    assert deployed.preview().change_summary == {"same": 12}


def stopped_during(
    stack: LocalStack, *args: str, reached: Callable[[], bool], sig: signal.Signals = signal.SIGKILL
) -> tuple[float, int, str]:
    """`rollout ARGS` sent ``sig`` with every process it started (its process group) once ``reached`` holds:
    SIGKILL as a runner is lost (no handler runs, and its checkout goes with it: the stack file is put back as
    it was before the run), SIGINT as Ctrl-C in a terminal. When (epoch seconds), its exit code and what it
    said on stderr."""
    stack_file = stack.workdir / f"Pulumi.{stack.stack.name}.yaml"
    checkout = stack_file.read_text()
    command = [sys.executable, "-m", "infra.rollout", "--stack", stack.stack.name, *args, "--yes"]
    with (
        tempfile.TemporaryFile("w+") as err,
        subprocess.Popen(
            command,
            cwd=stack.workdir,
            env={**os.environ, **stack.env},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        ) as running,
    ):
        try:
            wait_for(reached, 90, "the run to reach its judgement")
            time.sleep(2)  # into it
        finally:
            os.killpg(running.pid, sig)
            stopped = time.time()
        code = running.wait(timeout=60)
        err.seek(0)
        said = err.read()
    stack_file.write_text(checkout)
    return stopped, code, said


def runner_lost_during(stack: LocalStack, *args: str, reached: Callable[[], bool]) -> float:
    """`rollout ARGS` killed with SIGKILL once ``reached`` holds (a CI runner lost); when."""
    return stopped_during(stack, "--json", *args, reached=reached)[0]


def test_a_runner_lost_during_the_canary_leaves_it_recorded_and_the_next_run_removes_it(deployed: LocalStack) -> None:
    deployed.set(**QUICK, canarySeconds=120)
    generation = deployed.deployment().metadata.generation
    canary_ready = lambda: ready_pods_by_image(deployed).get(image("1.16.1")) == 1  # noqa: E731
    runner_lost_during(deployed, "--tag", "1.16.1", "--canary", "1", reached=canary_ready)
    code, result, err = rollout(deployed, "status")
    assert code == Exit.OK, err
    assert result["unfinished"]["stage"] == "canary" and result["unfinished"]["image"] == image("1.16.1")
    assert result["status"]["canary"] == image("1.16.1"), "the state has it, though the checkout's config does not"
    # The next run on the stack removes the canary before anything else.
    code, result, err = rollout(deployed, "abort", "--yes")
    assert code == Exit.OK and result["outcome"] == "unfinished aborted", err
    assert "its judgement never finished" in err
    wait_for(lambda: no_canary(deployed) and pods_of(deployed, image("1.16.1")) == 0, 30, "the canary to go")
    assert deployed.deployment().metadata.generation == generation
    assert_restored(deployed)
    code, result, _ = rollout(deployed, "status")
    assert result["unfinished"] is None


def test_a_runner_lost_inside_an_update_leaves_a_lock_the_next_run_removes_by_itself(deployed: LocalStack) -> None:
    # The canary never gets ready, so its `up` is still waiting on it, holding the stack's lock, when the runner
    # is lost. The next run finds the lock, proves its holder gone (its lease's run and the `pulumi` that took
    # it have ended), removes it, aborts the canary left unjudged and ships: no `pulumi cancel` by a person.
    deployed.set(**QUICK)
    created = lambda: pods_of(deployed, image(NEVER_READY)) == 1  # noqa: E731
    runner_lost_during(deployed, "--tag", NEVER_READY, "--canary", "1", reached=created)
    started = time.monotonic()
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.OK, err
    lost = result["lostRun"]
    assert lost is not None and lost["locks"] and "has ended" in lost["why"], result
    assert "removed stack" in err and "(`pulumi cancel`); going on" in err
    assert result["unfinished"]["stage"] == "canary", result
    wait_for(lambda: no_canary(deployed) and pods_of(deployed, image(NEVER_READY)) == 0, 30, "the canary to go")
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}
    assert time.monotonic() - started < 180
    # The state says what runs, with no lock or pending operation left.
    assert deployed.preview().change_summary == {"same": 12}


def settle(stack: LocalStack, summary: Path) -> subprocess.CompletedProcess[str]:
    """The workflows' settle step, as they run it."""
    return subprocess.run(
        [sys.executable, "-m", "infra.pipeline", "settle", "--stack", stack.stack.name, "--summary", str(summary)],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_failed_deploy_job_has_its_settle_step_abort_the_canary_it_left(deployed: LocalStack, tmp_path: Path) -> None:
    # The deploy job's runner lost while its canary was judged: the workflow's settle job runs its step as
    # written (python -m infra.pipeline settle --stack S) and the canary goes at once, said in the summary.
    deployed.set(**QUICK, canarySeconds=120)
    canary_ready = lambda: ready_pods_by_image(deployed).get(image("1.16.1")) == 1  # noqa: E731
    runner_lost_during(deployed, "--tag", "1.16.1", "--canary", "1", reached=canary_ready)
    summary = tmp_path / "summary.md"
    done = settle(deployed, summary)
    assert done.returncode == Exit.OK, done.stderr
    said = summary.read_text()
    assert said.startswith(f"## Settle of {image('1.16.1')} to {deployed.stack.name}: ok"), said
    assert f"a release was lost: {image('1.16.1')}, in its canary since" in said
    assert f"settled: {image('1.16.1')} aborted; {image('1.14.2')} serves" in said
    wait_for(lambda: no_canary(deployed) and pods_of(deployed, image("1.16.1")) == 0, 30, "the canary to go")
    assert_restored(deployed)
    # Run again, it finds nothing to settle and changes nothing.
    again = settle(deployed, summary)
    assert again.returncode == Exit.OK and "nothing to settle" in summary.read_text(), again.stderr


def test_a_runner_lost_during_the_bake_never_counts_as_shipped_and_the_rerun_judges_it_again(
    deployed: LocalStack,
) -> None:
    deployed.set(**QUICK, bakeSeconds=120)
    baking = lambda: ready_pods_by_image(deployed) == {image("1.16.1"): 3}  # noqa: E731
    runner_lost_during(deployed, "--tag", "1.16.1", reached=baking)
    code, result, err = rollout(deployed, "history")
    assert code == Exit.OK, err
    assert result["releases"][0]["outcome"] == "unjudged", result["releases"][0]
    assert result["unfinished"]["stage"] == "bake"
    # The pipeline's re-run: the release is put back first, then shipped again and judged from the start.
    deployed.set(bakeSeconds=3)
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.OK and result["outcome"] == "succeeded", err
    assert f"Put {image('1.14.2')} back" in err
    assert result["unfinished"]["image"] == image("1.16.1")
    assert result["oldImage"] == image("1.14.2") and result["analysis"]["state"] == "pass", result
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}
    assert deployed.preview().change_summary == {"same": 12}
