"""The CI workflows users run: the steps that keep a deploy safe are there and pinned."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
SHA_PIN = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return dict(document)


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    """The step that uses ``action`` with inputs (a bare `uses` only installs a tool)."""
    (found,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@") and s.get("with")]
    return dict(found)


@pytest.mark.parametrize("name", ["pull-request.yml", "deploy.yml"])
def test_every_action_pinned_by_commit(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert SHA_PIN.fullmatch(step["uses"]), f"{step['uses']} is not pinned by a commit SHA"


@pytest.mark.parametrize("name", ["pull-request.yml", "deploy.yml"])
def test_least_permissions_and_no_stored_keys(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {"contents": "read"}
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for job in workflow["jobs"].values():
        uses_aws = any(
            str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for s in job["steps"]
        )
        if uses_aws:
            assert job["permissions"]["id-token"] == "write", "AWS credentials come by OIDC"
            assert job["environment"] == "dev", "secrets come from the stack's environment"
            aws = step_using(job, "aws-actions/configure-aws-credentials")
            assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
        else:
            assert "id-token" not in job.get("permissions", {})


def test_pull_requests_are_tested_and_previewed_with_policy() -> None:
    workflow = load("pull-request.yml")
    assert workflow["on"] == {"pull_request": {"branches": ["main"]}}
    test_job = workflow["jobs"]["test"]
    assert any("make lint lint-workflows test-unit" in s.get("run", "") for s in test_job["steps"])
    preview = workflow["jobs"]["preview"]
    assert preview["needs"] == "test"
    pulumi = step_using(preview, "pulumi/actions")["with"]
    assert pulumi["command"] == "preview"
    assert pulumi["stack-name"] == "dev"
    assert pulumi["diff"] is True
    assert pulumi["policyPacks"] == "policy"
    assert pulumi["comment-on-pr"] is True
    assert preview["permissions"]["pull-requests"] == "write"
    order = [s.get("run") or s.get("with", {}).get("command") for s in preview["steps"]]
    assert order.index("scripts/sync-deployed-image.sh dev") < order.index("preview"), "preview what runs"


def test_merges_build_tag_by_sha_push_and_roll_one_at_a_time() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"] == {"group": "deploy-dev", "cancel-in-progress": False}
    (job,) = workflow["jobs"].values()
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "tag=$(git rev-parse --short HEAD)" in runs
    assert 'docker push "$repository:$tag"' in runs
    assert 'rollout --stack dev --tag "$TAG" --yes --json' in runs
    assert runs.index("scripts/sync-deployed-image.sh dev") < runs.index("rollout --stack dev"), "roll back to what ran"
    assert "GITHUB_STEP_SUMMARY" in runs
    assert 'exit "$status"' in runs, "a failed rollout fails the job"
    names = [str(s.get("uses", "")).split("@")[0] for s in job["steps"]]
    assert names.index("aws-actions/configure-aws-credentials") < names.index("aws-actions/amazon-ecr-login")
    # After the rollout, the ALB must serve the new tag (bounded), or the job fails.
    last = job["steps"][-1]
    assert 'scripts/wait-for-version.sh "$url" "$TAG" 300' in last["run"]
    assert "pulumi stack output url --stack dev" in last["run"] and 'exit "$status"' in last["run"]
    assert "GITHUB_STEP_SUMMARY" in last["run"]


@pytest.fixture
def version_server() -> Iterator[str]:
    """A server on loopback whose /version.txt answers 'abc1234'."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"abc1234\n" if self.path == "/version.txt" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


SCRIPT = WORKFLOWS.parents[1] / "scripts" / "wait-for-version.sh"


def test_wait_for_version_returns_once_served(version_server: str) -> None:
    done = subprocess.run(
        [str(SCRIPT), version_server, "abc1234", "10"], check=False, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert "serves abc1234 (after 1 request(s))" in done.stdout


def test_wait_for_version_fails_when_never_served(version_server: str) -> None:
    env = {**os.environ, "WAIT_INTERVAL_S": "1"}
    done = subprocess.run(
        [str(SCRIPT), version_server, "def5678", "3"], check=False, capture_output=True, text=True, timeout=20, env=env
    )
    assert done.returncode == 1
    assert "did not serve def5678 within 3s" in done.stderr and "last: 'abc1234'" in done.stderr
    refused = subprocess.run([str(SCRIPT), "example.com", "x"], check=False, capture_output=True, text=True, timeout=20)
    assert refused.returncode == 2 and "is not an http(s) URL" in refused.stderr


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            "123.dkr.ecr.ap-northeast-2.amazonaws.com/rolling:ab12cd3",
            ("123.dkr.ecr.ap-northeast-2.amazonaws.com/rolling", "ab12cd3"),
        ),
        ("localhost:5000/web:1.2", ("localhost:5000/web", "1.2")),
        ("", None),
        ("nginx@sha256:" + "a" * 64, None),
    ],
)
def test_sync_deployed_image(tmp_path: Path, image: str, expected: tuple[str, str] | None) -> None:
    """CI previews and rolls from the image that runs; the script sets exactly that."""
    log = tmp_path / "calls"
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "stack output" ]; then [ -n "{image}" ] && echo "{image}" && exit 0; exit 1; fi\n'
        f'echo "$@" >> {log}\n'
    )
    fake.chmod(0o755)
    script = WORKFLOWS.parents[1] / "scripts" / "sync-deployed-image.sh"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    subprocess.run([str(script), "dev"], env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines() if log.exists() else []
    if expected is None:
        assert calls == []
    else:
        assert calls == [
            f"config set imageRepository {expected[0]} --stack dev",
            f"config set imageTag {expected[1]} --stack dev",
        ]
