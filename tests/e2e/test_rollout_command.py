"""The rollout command on the real engine and cluster: success, automatic rollback, no prompt, --no-rollback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from infra.identity import DEPLOYMENT
from infra.kube import watch
from infra.rollout.engine import Engine, EngineError
from infra.rollout.exits import Exit
from rigs import load
from tests.e2e.harness import LocalStack, api_client, plain_traffic, ready_to_serve, traffic
from tests.e2e.images import CRASHING, MISSING, image
from tests.e2e.test_rollout import ready_pods_by_image, set_image_outside_pulumi


def rollout(stack: LocalStack, *args: str, stdin: str | None = None) -> tuple[int, dict[str, Any], str]:
    """`python -m infra.rollout` in the stack's project, as CI runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "infra.rollout", "--stack", stack.stack.name, "--json", *args],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def tag(stack: LocalStack) -> str:
    return str(stack.stack.get_config("rolling:imageTag").value)


def test_ships_a_tag(deployed: LocalStack) -> None:
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.OK, err
    assert result["outcome"] == "succeeded"
    assert (result["oldImage"], result["newImage"]) == (image("1.14.2"), image("1.16.1"))
    assert f"{image('1.14.2')} -> {image('1.16.1')}" in err  # the plan
    assert f"{image('1.16.1')} ready 3/3" in err  # live progress
    assert tag(deployed) == "1.16.1"
    # The command returns once the rollout is complete, not only once the engine's wait has ended.
    assert watch.health(api_client(), deployed.namespace, DEPLOYMENT).complete
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}


def test_missing_image_rolls_back_automatically(deployed: LocalStack) -> None:
    # The default progress deadline (60 s here): the registry's "not found" ends the wait at once.
    url = ready_to_serve(deployed)
    # Under load, with keep-alive connections: the failure and the rollback fail no request.
    with traffic(url, "rollback", keepalive=True) as sent, plain_traffic(url, "rollback", keepalive=True) as plain:
        code, result, err = rollout(deployed, "--tag", MISSING, "--yes")
        ended = time.time()
    assert code == Exit.ROLLED_BACK, err
    assert load.problems(sent.responses, {"1.14.2"}) == []
    assert load.problems(plain.responses, {"1.14.2"}) == []
    assert result["rolledBack"] is True
    assert "nginx-deployment" in result["error"]
    # The pod events that explain the delay, as the node reported them.
    assert "ErrImagePull" in err or "ImagePullBackOff" in err or "Failed to pull image" in err, err
    assert f"the registry has no {image(MISSING)}" in result["error"]
    # Ended at once by whichever saw the failure first: the command's live view ("it cannot succeed; ending
    # the wait") or the program's own wait in the same `up`, which fails it with the same cause (seen once in
    # 2 full tiers). The durations below hold the "at once" either way.
    assert "it cannot succeed; ending the wait" in err or f"to {image(MISSING)} failed: pod" in result["error"], err
    # From the failure known to the old version ready on every replica, and the whole wait, both well
    # inside the deadline it no longer waits out.
    assert result["durations"]["failureToRestored"] <= 15, result
    assert result["durations"]["up"] < 30, result
    # The same, timed from outside: from the node's first report of the failure to the command's end (by
    # then the old version is ready on every replica). 15 s, plus the second event times are cut to, plus
    # the live view's poll interval (it reads the report at most a second later).
    assert ended - first_failure_reported(deployed, image(MISSING)) <= 15 + 1 + 1
    assert tag(deployed) == "1.14.2"
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
    assert deployed.preview().change_summary == {"same": 12}


def first_failure_reported(stack: LocalStack, reference: str) -> float:
    """When the node first reported that pulling ``reference`` failed (time.time())."""
    events = client.CoreV1Api(api_client()).list_namespaced_event(stack.namespace).items
    times: list[float] = [
        (event.first_timestamp or event.metadata.creation_timestamp).timestamp()
        for event in events
        if event.reason == "Failed" and reference in (event.message or "")
    ]
    assert times, "the node reported the failed pull"
    return min(times)


def test_a_container_that_keeps_exiting_rolls_back_before_the_deadline(deployed: LocalStack) -> None:
    code, result, err = rollout(deployed, "--tag", CRASHING, "--yes")
    assert code == Exit.ROLLED_BACK, err
    assert "keeps exiting" in result["error"]
    assert result["durations"]["failureToRestored"] <= 15, result
    assert result["durations"]["up"] < 60, result  # the progress deadline
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
    assert deployed.preview().change_summary == {"same": 12}


def test_without_terminal_or_yes_nothing_changes(deployed: LocalStack) -> None:
    before = deployed.deployment().metadata.resource_version
    code, result, err = rollout(deployed, "--tag", "1.16.1", stdin="y\n")
    assert code == Exit.NOT_CONFIRMED, err
    assert "pass --yes" in err
    assert result["outcome"] == "not confirmed"
    assert tag(deployed) == "1.14.2"
    assert deployed.deployment().metadata.resource_version == before


def test_no_rollback_leaves_the_failure(deployed: LocalStack) -> None:
    deployed.set(progressDeadlineSeconds=5)
    deployed.up()
    code, result, err = rollout(deployed, "--tag", MISSING, "--yes", "--no-rollback")
    assert code == Exit.FAILED, err
    assert result["rolledBack"] is False
    assert tag(deployed) == MISSING
    # Left as it failed: the cluster asks for the failed tag, and the old pods still serve.
    assert deployed.deployment().spec.template.spec.containers[0].image == image(MISSING)
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}


def test_infra_changes_are_refused(deployed: LocalStack) -> None:
    deployed.set(namespace=f"{deployed.namespace}-moved")
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.INFRA_CHANGES, err
    assert result["outcome"] == "refused"
    assert "--allow-infra-changes" in err
    assert tag(deployed) == "1.14.2"
    deployed.set(namespace=deployed.namespace)


def test_the_update_does_only_what_was_previewed(deployed: LocalStack, tmp_path: Path) -> None:
    """The command's update runs under the plan its preview saved: a config that changed in between
    (here another tag) fails the update before it changes anything."""
    engine = Engine(deployed.workdir, deployed.stack.name, deployed.env)
    stack_file = deployed.workdir / f"Pulumi.{deployed.stack.name}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["rolling:imageTag"] = "1.16.1"
    previewed = tmp_path / "previewed.yaml"
    previewed.write_text(yaml.safe_dump(document))
    steps = engine.preview(previewed, tmp_path / "plan.json")
    assert [(s.op, s.name) for s in steps if s.op != "same"] == [("update", "nginx-deployment")]
    before = deployed.deployment().metadata.resource_version
    with pytest.raises(EngineError) as caught:
        engine.up({"rolling:imageTag": "1.17.0"}, tmp_path / "plan.json")
    assert "violates plan" in str(caught.value)
    assert deployed.deployment().metadata.resource_version == before
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}


def test_an_update_that_breaks_its_plan_is_said_in_a_line_or_two(deployed: LocalStack, tmp_path: Path) -> None:
    # What a tag read one way by the preview and another by the update used to cause: the engine's
    # refusal, said shortly (the engine prints both specs, several kilobytes).
    from infra.rollout import stackfile

    engine = Engine(deployed.workdir, deployed.stack.name, deployed.env)
    document = stackfile.read(deployed.workdir / f"Pulumi.{deployed.stack.name}.yaml")
    config = tmp_path / "preview.yaml"
    config.write_text(stackfile.dumps(stackfile.with_config(document, {"rolling:imageTag": "1.15.0"})))
    plan = tmp_path / "plan.json"
    engine.preview(config, plan)
    with pytest.raises(EngineError) as caught:
        engine.up({"rolling:imageTag": "1.16.1"}, plan)
    assert len(str(caught.value)) > 1000
    said = caught.value.summary
    assert len(said) < 600, said
    assert DEPLOYMENT in said
    assert f"the container image was {image('1.15.0')} in the preview, {image('1.16.1')} now" in said
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}, "nothing was applied"


def test_an_image_set_outside_pulumi_is_read_back_and_replaced(deployed: LocalStack) -> None:
    # `kubectl set image` after the last update: the state and config still say 1.14.2. Asked for 1.14.2,
    # the command compares with what runs (not the state: its preview would be empty), reads the
    # Deployment back and ships 1.14.2; the stack's preview is empty afterwards.
    set_image_outside_pulumi(deployed, image("1.15.0"))
    code, result, err = rollout(deployed, "--tag", "1.14.2", "--yes")
    assert (code, result["outcome"]) == (Exit.OK, "succeeded"), err
    assert f"the cluster runs {image('1.15.0')}, but stack {deployed.stack.name}'s state says" in err
    assert (result["oldImage"], result["newImage"]) == (image("1.15.0"), image("1.14.2"))
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
    assert deployed.preview().change_summary == {"same": 12}


def test_a_deployment_the_cluster_lost_is_never_success(deployed: LocalStack) -> None:
    # The cluster made again, in small: the state lists the Deployment, the cluster has none. Neither
    # "unchanged" (the stack's own tag) nor a rollout (another tag) may say it runs.
    subprocess.run(
        ["kubectl", "-n", deployed.namespace, "delete", "deployment", DEPLOYMENT, "--wait=true"],
        check=True,
        capture_output=True,
    )
    for wanted in ("1.14.2", "1.16.1"):
        code, result, err = rollout(deployed, "--tag", wanted, "--yes")
        assert (code, result["outcome"]) == (Exit.DRIFTED, "drifted"), err
        assert "is not in the cluster" in result["error"] and "pulumi up --refresh" in result["error"]
        assert "Traceback" not in err
    assert tag(deployed) == "1.14.2"
    # The repair the command names.
    deployed.up(refresh=True)
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}


def unreadable_kubeconfig(tmp_path: Path, how: str) -> Path:
    """The test cluster's kubeconfig made unreadable: its server's port closed, or its credentials wrong."""
    document = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    if how == "unreachable":
        with socket.socket() as probe:  # a loopback port nothing listens on once closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for entry in document["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    else:
        for entry in document["users"]:
            entry["user"] = {"token": "not-a-token"}
    path = tmp_path / f"{how}.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(("how", "said"), [("unreachable", "Connection refused"), ("refused", "(credentials?)")])
def test_a_cluster_that_cannot_be_read_stops_the_command_before_the_update(
    deployed: LocalStack, tmp_path: Path, how: str, said: str
) -> None:
    updates = len(deployed.stack.history())
    deployed.set(kubeconfig=unreadable_kubeconfig(tmp_path, how))
    try:
        code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    finally:
        deployed.stack.remove_config("rolling:kubeconfig")
    assert (code, result["outcome"]) == (Exit.UNREADABLE, "unreadable"), err
    # One line, naming the cluster and why; no plan shown, no update, no traceback.
    assert err.count("\n") == 1 and err.startswith("rollout: "), err
    assert "the cluster at https://127.0.0.1:" in err and said in err and "nothing was changed" in err
    assert len(deployed.stack.history()) == updates
    assert tag(deployed) == "1.14.2"
    assert ready_pods_by_image(deployed) == {image("1.14.2"): 3}
