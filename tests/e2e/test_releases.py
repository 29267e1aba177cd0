"""Releases on the real engine and node: a stack's history as `kubectl rollout history` tells it, undo to a
revision, and promotion from one stack to another by digest (two stacks of one project in two namespaces,
the node's registry standing in for ECR: dev pulls from localhost:5000/rolling-app, prod from its own
repository), through the promote workflow's own step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from infra.identity import DEPLOYMENT, SELECTOR
from infra.rollout.exits import Exit
from rigs import load
from tests.e2e.harness import ROOT, LocalStack, api_client, local_stack, service_url
from tests.e2e.images import MISSING, image
from tests.e2e.test_pipeline import running_image
from tests.e2e.test_rollout import ready_pods_by_image

PROD_REPOSITORY = "localhost:5000/rolling-app-prod"


def python(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the stacks' project, with their backend, as CI runs the project's steps."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=stack.workdir,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def command(stack: LocalStack, *args: str) -> tuple[int, dict[str, Any], str]:
    """`python -m infra.rollout ARGS --json`."""
    done = python(stack, "-m", "infra.rollout", *args, "--json")
    return done.returncode, json.loads(done.stdout), done.stderr


def ship(stack: LocalStack, tag: str, expected: Exit = Exit.OK) -> dict[str, Any]:
    code, result, err = command(stack, "--stack", stack.stack.name, "--tag", tag, "--yes")
    assert code == expected, err
    return result


def kubectl_history(stack: LocalStack) -> dict[int, str]:
    """`kubectl rollout history` of the stack's Deployment: each revision it lists, with its change-cause."""
    done = subprocess.run(
        ["kubectl", "rollout", "history", f"deployment/{DEPLOYMENT}", "-n", stack.namespace],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("REVISION"))
    listed = {}
    for line in lines[header + 1 :]:
        number, _, cause = line.strip().partition(" ")
        listed[int(number)] = cause.strip()
    return listed


def registry_digest(reference: str) -> str:
    done = subprocess.run(
        [str(ROOT / "cluster" / "images.sh"), "digest", reference], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_history_tells_each_release_as_kubectl_does_and_undo_puts_one_back(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2", replicas=2) as dev:
        dev.up()
        ship(dev, "1.15.0")
        ship(dev, MISSING, Exit.ROLLED_BACK)
        code, listed, err = command(dev, "history", "--stack", dev.stack.name)
        assert code == Exit.OK, err
        releases = listed["releases"]
        assert [(r["revision"], r["tag"], r["verb"], r["outcome"]) for r in releases] == [
            (4, "1.15.0", "rollback", "restored"),
            (3, MISSING, "ship", "rolled back"),
            (2, "1.15.0", "ship", "shipped"),
            (1, "1.14.2", "up", "shipped"),
        ]
        assert releases[1]["durations"]["untilRestored"] is not None
        # kubectl lists each template once (1.15.0's moved to revision 4 when the rollback used it again),
        # each with the cause the release wrote: the same story.
        kubectl = kubectl_history(dev)
        assert set(kubectl) == {1, 3, 4}
        assert kubectl == {r["revision"]: r["cause"] for r in releases if r["revision"] in kubectl}
        assert kubectl[3].startswith(f"ship {image(MISSING)} by ")

        code, result, err = command(dev, "undo", "--stack", dev.stack.name, "--to", "1", "--yes")
        assert code == Exit.OK, err
        assert (result["oldImage"], result["newImage"]) == (image("1.15.0"), image("1.14.2"))
        assert ready_pods_by_image(dev) == {image("1.14.2"): 2}
        # Done the IaC way: the stack's config says what runs, so the next preview changes nothing.
        preview = dev.preview()
        assert set(preview.change_summary) <= {"same"}, preview.change_summary
        _, after, _ = command(dev, "history", "--stack", dev.stack.name)
        newest = after["releases"][0]
        assert (newest["revision"], newest["tag"], newest["verb"], newest["note"]) == (
            5,
            "1.14.2",
            "undo",
            "to revision 1",
        )
        assert kubectl_history(dev)[5] == newest["cause"]


def test_promote_ships_the_digest_dev_runs_and_refuses_what_did_not_ship_or_soak(tmp_path: Path) -> None:
    with (
        local_stack(tmp_path, imageTag="1.14.2", replicas=2) as dev,
        # As Pulumi.prod.yaml: its own repository, no image named (it runs what was promoted to it).
        local_stack(
            tmp_path,
            beside=dev,
            imageRepository=PROD_REPOSITORY,
            bootstrapImage=image("1.14.2"),
            replicas=2,
            soakSeconds=3600,
        ) as prod,
    ):
        dev.up()
        prod.up()
        ship(dev, "1.15.0")
        before = running_image(prod)
        promote = ("promote", "--from", dev.stack.name, "--to", prod.stack.name, "--yes")

        code, result, err = command(prod, *promote)
        assert code == Exit.NOT_PROMOTABLE, err
        assert "has run" in result["error"] and "soakSeconds" in result["error"], result
        assert running_image(prod) == before, "nothing was changed"

        # The promote workflow's one step, as it runs it.
        prod.set(soakSeconds=0)
        summary = tmp_path / "promotion.md"
        done = python(
            prod,
            *("-m", "infra.pipeline", "promote", "--from", dev.stack.name, "--to", prod.stack.name),
            *("--url-timeout", "30", "--summary", str(summary)),
        )
        assert done.returncode == Exit.OK, done.stderr
        digest = registry_digest(image("1.15.0"))
        # Prod runs exactly repository@digest, copied into its own repository byte for byte.
        assert running_image(prod) == f"{PROD_REPOSITORY}@{digest}"
        assert registry_digest(f"{PROD_REPOSITORY}:1.15.0") == digest
        pods = client.CoreV1Api(api_client()).list_namespaced_pod(prod.namespace, label_selector=SELECTOR).items
        assert pods and all(
            digest in p.status.container_statuses[0].image_id for p in pods if p.status.container_statuses
        )
        assert load.fetch_version(service_url(prod, "/version.txt")) == "1.15.0"
        text = summary.read_text()
        assert text.startswith(f"## Promotion of {dev.stack.name}'s release to {prod.stack.name}: ok")
        assert f"{PROD_REPOSITORY}@{digest}" in text

        ship(dev, MISSING, Exit.ROLLED_BACK)
        code, result, err = command(prod, *promote)
        assert code == Exit.NOT_PROMOTABLE, err
        assert f"its last release was {image(MISSING)}, which was rolled back" in result["error"]
        assert running_image(prod) == f"{PROD_REPOSITORY}@{digest}", "nothing was changed"
