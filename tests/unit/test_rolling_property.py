"""A tag change is an in-place image update: nothing else in any resource changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.harness import run_program


def inputs_by_resource(config: Mapping[str, object]) -> dict[tuple[str, str], dict[str, Any]]:
    mocks = run_program(config).mocks
    return {(r.type, r.name): r.inputs for r in mocks.resources}


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Every path where two input trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += differences(old.get(key), new.get(key), f"{path}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [path]


@pytest.mark.parametrize("target", ["local", "eks"])
def test_only_the_container_image_changes(target: str) -> None:
    before = inputs_by_resource({"target": target, "imageTag": "1.14.2", "namespace": "web"})
    after = inputs_by_resource({"target": target, "imageTag": "1.16.1", "namespace": "web"})
    assert before.keys() == after.keys()
    changed = {key: diff for key in before if (diff := differences(before[key], after[key]))}
    # The image, and why it runs: the cause `kubectl rollout history` shows (a plain `up` says so).
    assert changed == {
        ("kubernetes:apps/v1:Deployment", "nginx-deployment"): [
            ".metadata.annotations.kubernetes.io/change-cause",
            ".spec.template.spec.containers[0].image",
        ]
    }
    deployment = after[("kubernetes:apps/v1:Deployment", "nginx-deployment")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginxinc/nginx-unprivileged:1.16.1"
    cause = deployment["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert cause == "up nginxinc/nginx-unprivileged:1.16.1"


def test_a_release_cause_is_the_change_cause_only_for_its_own_image() -> None:
    """The rollout command's cause goes on the Deployment with its image; a plain `up` that names another
    image is said as such, so the annotation never tells of an image the template does not run."""
    shipped = "ship nginxinc/nginx-unprivileged:1.16.1 by alice"
    deployment = ("kubernetes:apps/v1:Deployment", "nginx-deployment")
    same = inputs_by_resource({"target": "local", "imageTag": "1.16.1", "changeCause": shipped})[deployment]
    assert same["metadata"]["annotations"]["kubernetes.io/change-cause"] == shipped
    other = inputs_by_resource({"target": "local", "imageTag": "1.17.0", "changeCause": shipped})[deployment]
    assert other["metadata"]["annotations"]["kubernetes.io/change-cause"] == "up nginxinc/nginx-unprivileged:1.17.0"


def test_two_runs_with_the_same_config_are_identical() -> None:
    config = {"target": "local", "imageTag": "1.14.2"}
    assert inputs_by_resource(config) == inputs_by_resource(config)
