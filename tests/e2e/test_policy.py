"""The policy pack, run by the real engine on the local stack."""

from __future__ import annotations

from pathlib import Path

import pulumi.automation as auto
import pytest

from tests.e2e.harness import ROOT, local_stack

POLICY = str(ROOT / "policy")


def test_defaults_pass_every_policy(tmp_path: Path) -> None:
    with local_stack(tmp_path, imageTag="1.14.2") as stack:
        result = stack.preview(policy_packs=[POLICY])
        assert result.change_summary == {"create": 8}
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
