"""The manifests the program renders, for both targets, judged by checkov's Kubernetes rules.

A failure is either fixed in the program or skipped inline, on the resource, with its reason; a new
failure, or a skip without a reason, fails this test. `make test-manifests` installs the pinned checkov.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.kube import watchdog
from infra.kube.lease import lease_name
from rigs.render import render

# The only skip the defaults carry, and why (infra/app.py DIGEST_SKIP).
JUSTIFIED = {"CKV_K8S_43"}
FILES = {
    "namespace",
    "configmap",
    "deployment",
    "service",
    "poddisruptionbudget",
    "networkpolicy",
    # The watchdog's account, its Role and their binding (infra/kube/watchdog.py).
    "serviceaccount",
    "role",
    "rolebinding",
}
# What checkov has rules for among them (the Deployment's pod template is checked as a Pod too).
CHECKED = {"ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount", "Role", "RoleBinding"}
# On eks, the ALB's Ingress too.
EXTRA = {"local": (set(), set()), "eks": ({"ingress"}, {"Ingress"})}


def checkov(directory: Path) -> dict[str, Any]:
    binary = os.environ.get("ROLLING_CHECKOV", "")
    if not os.access(binary, os.X_OK):
        raise pytest.UsageError("checkov is installed by `make test-manifests` (ROLLING_CHECKOV names it)")
    # --skip-download: the rules ship with the package; nothing is fetched.
    # Files, not -d: checkov skips a folder under a hidden one (a TMPDIR in ~/.cache would be).
    files = [str(path) for path in sorted(directory.rglob("*.yaml"))]
    command = [binary, "--framework", "kubernetes", "--skip-download", "-o", "json", "-f", *files]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: some check failed; anything else: checkov broke
    report = json.loads(done.stdout)
    assert report["check_type"] == "kubernetes", report
    results = report["results"]
    return {key: results.get(key, []) for key in ("passed_checks", "failed_checks", "skipped_checks")}


def kinds(results: dict[str, Any]) -> set[str]:
    checks = results["passed_checks"] + results["failed_checks"] + results["skipped_checks"]
    return {check["resource"].split(".")[0] for check in checks}


@pytest.mark.parametrize("target", ["local", "eks"])
def test_defaults_have_no_unjustified_failure(tmp_path: Path, target: str) -> None:
    files = render(target, tmp_path)
    extra_files, extra_kinds = EXTRA[target]
    assert {path.name.split("-")[1] for path in files} == FILES | extra_files
    results = checkov(tmp_path)
    assert kinds(results) == CHECKED | extra_kinds  # the resources were read: not an empty folder
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    skipped = {c["check_id"]: c["check_result"]["suppress_comment"] for c in results["skipped_checks"]}
    assert set(skipped) == JUSTIFIED
    assert all(len(reason) > 20 for reason in skipped.values()), skipped
    assert len(results["passed_checks"]) >= 80


def test_a_digest_needs_no_skip(tmp_path: Path) -> None:
    render("eks", tmp_path, {"imageDigest": "sha256:" + "0" * 64})
    results = checkov(tmp_path)
    assert results["failed_checks"] == [] and results["skipped_checks"] == []


def test_an_image_that_needs_root_is_reported(tmp_path: Path) -> None:
    # What imageNeedsRoot costs, as a reviewer's scanner sees it: the checks stay, and fail.
    render("local", tmp_path, {"imageNeedsRoot": "true", "containerPort": "80"})
    failed = {c["check_id"] for c in checkov(tmp_path)["failed_checks"]}
    assert failed == {"CKV_K8S_23", "CKV_K8S_25", "CKV_K8S_40"}


def test_render_ignores_the_ambient_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # After `eval "$(make -s env)"` a KUBECONFIG names the local cluster; rendering reads no cluster and
    # must not hand it to the provider (which refuses a kubeconfig beside renderYamlToDirectory).
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    files = render("local", tmp_path / "out")
    assert {path.name.split("-")[1] for path in files} == FILES


def test_the_watchdogs_job_has_no_failure(tmp_path: Path) -> None:
    # The Job the rollout command starts with each judged release (not rendered by the program): on eks its image
    # is pinned by digest, as the settings require there.
    manifest = watchdog.job(
        "rolling",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rolling-watchdog@sha256:" + "e" * 64,
        lease=lease_name("prod"),
        holder="runner/7/ci",
        since=0.0,
        stack="prod",
    )
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(manifest))
    results = checkov(tmp_path)
    assert kinds(results) == {"Job", "Pod"}  # its pod template is checked as a Pod too
    assert [(c["check_id"], c["check_name"]) for c in results["failed_checks"]] == []
    skipped = {c["check_id"]: c["check_result"]["suppress_comment"] for c in results["skipped_checks"]}
    # Its token (it calls the API) and no NetworkPolicy (it takes no connection), each with its reason.
    assert set(skipped) == {"CKV_K8S_38", "CKV2_K8S_6"}, skipped
    assert all(len(reason) > 20 for reason in skipped.values()), skipped
    assert len(results["passed_checks"]) >= 80
