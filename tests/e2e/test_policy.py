"""The policy pack, run by the real engine on the local stack."""

from __future__ import annotations

from pathlib import Path

import pulumi.automation as auto
import pytest

from rigs import offline
from tests.e2e.harness import ROOT, local_stack

POLICY = str(ROOT / "policy")


def test_defaults_pass_every_policy(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2") as stack:
        result = stack.preview(policy_packs=[POLICY])
        assert result.change_summary == {"create": 12}
        assert "rolling@v0.0.1" in result.stdout
        assert "least-privilege" not in result.stdout


def test_an_image_that_needs_root_is_a_warning_naming_the_setting(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2", imageNeedsRoot="true") as stack:
        result = stack.preview(policy_packs=[POLICY])  # advisory: the preview passes
        assert "[advisory]  least-privilege" in result.stdout
        assert "rolling:imageNeedsRoot" in result.stdout


def test_a_violation_fails_the_preview_naming_the_rule(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2", replicas=2, maxSurge=0, maxUnavailable=2) as stack:
        with pytest.raises(auto.CommandError) as caught:
            stack.preview(policy_packs=[POLICY])
        message = str(caught.value)
        assert "[mandatory]  rolling-update-keeps-serving" in message
        assert "use at most 1 (rolling:maxUnavailable)" in message
        stack.up()  # without the pack the same stack deploys: the rule, not the program, refused it


def test_a_stack_that_does_not_drain_fails_the_whole_stack_rule(tmp_path: Path) -> None:
    # drainSeconds 0 is accepted (it stops pods at once: the proof that the drain matters uses it), and
    # the pack refuses it: a whole-stack rule, seen firing through the real engine's resource shapes.
    with local_stack(tmp_path, imageTag="1.14.2", drainSeconds=0) as stack:
        with pytest.raises(auto.CommandError) as caught:
            stack.preview(policy_packs=[POLICY])
        message = str(caught.value)
        assert "[mandatory]  drains-before-stopping" in message
        assert "has no preStop hook" in message and "rolling:drainSeconds" in message


def test_whole_stack_rules_fire_on_what_the_engine_hands_them(tmp_path: Path) -> None:
    # The program cannot break these two (it always makes a budget, requests equal limits), so a program
    # of this test's own does, in render mode (no cluster): the rules must see the engine's shapes.
    import pulumi
    import pulumi_kubernetes as k8s

    def program() -> None:
        provider = k8s.Provider("render", render_yaml_to_directory=str(tmp_path / "out"), kubeconfig="")
        labels = {"app": "broken"}
        container = k8s.core.v1.ContainerArgs(
            name="web",
            image="nginx:1.27.0",
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path="/", port=80)),
            lifecycle=k8s.core.v1.LifecycleArgs(
                pre_stop=k8s.core.v1.LifecycleHandlerArgs(sleep=k8s.core.v1.SleepActionArgs(seconds=5))
            ),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "200m", "memory": "64Mi"}
            ),
        )
        k8s.apps.v1.Deployment(
            "broken",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="broken", namespace="default"),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=2,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(containers=[container]),
                ),
            ),
            opts=pulumi.ResourceOptions(provider=provider),
        )

    work = tmp_path / "work"
    work.mkdir()
    stack = auto.create_stack(
        "policy",
        project_name="rolling-policy",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(work),
            env_vars={**offline.scratch_backend(work, "policy"), "KUBECONFIG": ""},
            project_settings=auto.ProjectSettings(name="rolling-policy", runtime="python"),
            secrets_provider="passphrase",
        ),
    )
    with pytest.raises(auto.CommandError) as caught:
        stack.preview(policy_packs=[POLICY], color="never")
    message = str(caught.value)
    assert "[mandatory]  pod-disruption-budget" in message
    assert "Deployment 'broken' runs 2 replicas with no policy/v1 PodDisruptionBudget" in message
    assert "[mandatory]  requests-equal-limits" in message
    assert "container 'web' cpu request '100m' and limit '200m' differ" in message
