"""The deploy pipeline the workflows run (python -m infra.pipeline), on the local target with the node's
registry standing in for ECR: a first deploy, re-runs, SHA-shaped tags, pending infrastructure, a busy
stack, and git never rolling the app back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pulumi.automation as auto
import pytest
from kubernetes import client

from infra.identity import DEPLOYMENT
from infra.rollout.exits import Exit
from tests.e2e.harness import ROOT, LocalStack, api_client, local_stack
from tests.e2e.images import image
from tests.e2e.test_rollout import ready_pods_by_image


def pipeline(stack: LocalStack, tag: str, revision: str, tmp_path: Path) -> tuple[int, str, str]:
    """The deploy workflow's one step, as it runs it (a canary pod first); returns the exit code, the summary
    and stderr."""
    summary = tmp_path / f"summary-{tag}-{time.monotonic_ns()}.md"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "infra.pipeline", "--stack", stack.stack.name),
            *("--tag", tag, "--revision", revision, "--url-timeout", "30", "--lock-wait", "120"),
            *("--summary", str(summary), "--canary", "1"),
        ],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode, summary.read_text() if summary.exists() else "", done.stderr


def revision(tag: str) -> str:
    """A full commit SHA for a short one."""
    return (tag + "0" * 40)[:40]


def configured_tag(stack: LocalStack) -> str:
    """The stack's imageTag ("" when its stack file names none: the schema's default)."""
    config = stack.stack.get_all_config()
    return config["rolling:imageTag"].value if "rolling:imageTag" in config else ""


def running_image(stack: LocalStack) -> str:
    return str(stack.deployment().spec.template.spec.containers[0].image)


@pytest.fixture
def ci_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A stack as CI drives it: its stack file names no image (the app keeps what the pipeline shipped), first
    deployed by the infrastructure step with the bootstrap image."""
    # A short canary and bake: these tests are about the pipeline, the analysis has tests of its own.
    with local_stack(
        tmp_path, bootstrapImage=image("1.14.2"), canarySeconds=2, bakeSeconds=2, minRequests=10, analysisRate=40
    ) as stack:
        stack.up()
        assert running_image(stack) == image("1.14.2")
        yield stack


def test_a_stack_never_deployed_stops_at_once_naming_what_to_run(tmp_path: Path) -> None:
    with local_stack(tmp_path, bootstrapImage=image("1.14.2")) as stack:
        code, summary, err = pipeline(stack, "1234567", revision("1234567"), tmp_path)
        assert code == Exit.NOT_BOOTSTRAPPED, err
        assert "has not been deployed yet" in summary
        assert ".github/workflows/infrastructure.yml" in summary and f"pulumi up --stack {stack.stack.name}" in summary
        names = [ns.metadata.name for ns in client.CoreV1Api(api_client()).list_namespace().items]
        assert stack.namespace not in names, "nothing was created"


def test_sha_tags_ship_a_rerun_changes_nothing_and_git_does_not_roll_back(ci_stack: LocalStack, tmp_path: Path) -> None:
    # 12345e7 is a float to YAML 1.2, 0123456 an integer with a leading zero, 1234567 an integer: each must
    # reach the pods exactly as written.
    for tag in ("12345e7", "0123456", "1234567", "deadbee"):
        code, summary, err = pipeline(ci_stack, tag, revision(tag), tmp_path)
        assert code == Exit.OK, f"{tag}: {summary}\n{err[-3000:]}"
        # Built and pushed, or (the node's registry outlived an earlier run) this commit's build reused.
        assert f"built localhost:5000/rolling-app:{tag} from {revision(tag)} and pushed it" in summary or (
            f"built from {revision(tag)}: not built again" in summary
        )
        assert ready_pods_by_image(ci_stack) == {image(tag): 3}, tag
        assert f"serves {tag}" in summary
    # The same commit again (a re-run of the job): its image is reused, the rollout changes nothing.
    generation = ci_stack.deployment().metadata.generation
    code, summary, err = pipeline(ci_stack, "deadbee", revision("deadbee"), tmp_path)
    assert code == Exit.OK, f"{summary}\n{err[-3000:]}"
    assert "not built again" in summary and '"outcome": "unchanged"' in summary
    assert ci_stack.deployment().metadata.generation == generation
    # Another commit whose short SHA names an image already there: refused, nothing changed.
    code, summary, _ = pipeline(ci_stack, "deadbee", "f" * 40, tmp_path)
    assert code == Exit.TAG_CONFLICT
    assert f"already exists built from {revision('deadbee')}" in summary
    assert ci_stack.deployment().metadata.generation == generation

    # A person runs `pulumi up` from a clean checkout, whose stack file names no image (nor why it runs):
    # what the pipeline shipped keeps running (git does not roll the app back), and so does its cause.
    cause = ci_stack.deployment().metadata.annotations["kubernetes.io/change-cause"]
    assert cause.startswith(f"ship {image('deadbee')} by "), cause
    ci_stack.stack.remove_all_config(["rolling:imageTag", "rolling:changeCause"])
    assert configured_tag(ci_stack) == ""
    preview = ci_stack.preview(diff=True)
    assert preview.change_summary.get(auto.OpType.UPDATE, 0) == 0, preview.stdout
    ci_stack.up()
    assert running_image(ci_stack) == image("deadbee")
    assert ci_stack.deployment().metadata.generation == generation
    assert ci_stack.stack.outputs()["image"].value == image("deadbee")
    assert ci_stack.deployment().metadata.annotations["kubernetes.io/change-cause"] == cause
    # An explicit tag still rolls.
    ci_stack.set(imageTag="1.16.1")
    ci_stack.up()
    assert ready_pods_by_image(ci_stack) == {image("1.16.1"): 3}


def test_pending_infrastructure_is_named_until_applied(ci_stack: LocalStack, tmp_path: Path) -> None:
    # A merged change to the infrastructure (here: one more replica) that nobody has applied yet.
    ci_stack.set(replicas=4)
    code, summary, err = pipeline(ci_stack, "7654321", revision("7654321"), tmp_path)
    assert code == Exit.INFRA_CHANGES, f"{summary}\n{err[-3000:]}"
    assert "infra changes" in summary.splitlines()[0]
    assert "kubernetes:apps/v1:Deployment" in summary or "replicas" in summary
    assert "applied by the infrastructure workflow (.github/workflows/infrastructure.yml)" in summary
    assert running_image(ci_stack) == image("1.14.2"), "nothing was shipped"
    # The infrastructure job applies it (its stack file names no image: the app keeps what runs) ...
    assert configured_tag(ci_stack) == ""
    ci_stack.up()
    assert running_image(ci_stack) == image("1.14.2")
    assert ci_stack.deployment().spec.replicas == 4
    # ... and the deploy ships.
    code, summary, err = pipeline(ci_stack, "7654321", revision("7654321"), tmp_path)
    assert code == Exit.OK, f"{summary}\n{err[-3000:]}"
    assert ready_pods_by_image(ci_stack) == {image("7654321"): 4}


def test_a_deploy_waits_for_another_update_and_a_preview_does_not_block_it(
    ci_stack: LocalStack, tmp_path: Path
) -> None:
    # Another update holds the stack's lock when the deploy starts: the file backend's lock, as the engine
    # writes it (pkg/backend/diy/lock.go), released 45 s later (the deploy's own preview comes first, and
    # takes a while on a busy machine).
    # The image first, so the deploy reaches its update while the lock is still held.
    subprocess.run(
        [str(ROOT / "cluster" / "images.sh"), "push", image("fedcba9"), "fedcba9", revision("fedcba9")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    locks = tmp_path / "state" / ".pulumi" / "locks" / "organization" / "rolling" / ci_stack.stack.name
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / "e2e-holder.json"
    lock.write_text(json.dumps({"pid": 1, "username": "ci", "hostname": "runner", "timestamp": "2026-01-01T00:00:00Z"}))
    release = threading.Timer(45, lock.unlink)
    release.start()
    try:
        # A pull request's preview meanwhile: a preview takes no lock on this backend, so it runs, and
        # does not hold up the deploy.
        previewed = ci_stack.preview()
        assert lock.exists(), "the preview ran while the lock was held"
        assert previewed.change_summary.get(auto.OpType.SAME, 0) > 0
        start = time.monotonic()
        code, summary, err = pipeline(ci_stack, "fedcba9", revision("fedcba9"), tmp_path)
    finally:
        release.cancel()
        lock.unlink(missing_ok=True)
    assert code == Exit.OK, f"{summary}\n{err[-3000:]}"
    assert "another update holds the stack's lock" in summary
    assert time.monotonic() - start >= 10
    assert ready_pods_by_image(ci_stack) == {image("fedcba9"): 3}
    assert ci_stack.deployment().metadata.name == DEPLOYMENT
