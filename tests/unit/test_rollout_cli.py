"""The rollout command's decisions: arguments, plan, confirmation, exit codes, rollback flow."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, cast

import pytest

from infra.rollout import cli
from infra.rollout.plan import Exit, RolloutPlan, Step, unexpected_steps
from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = "kubernetes:apps/v1:Deployment"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv: list[str], stdin: io.StringIO | None = None, runner: Any = cli.RolloutRun.run) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, stdin=stdin or io.StringIO(), runner=runner)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("tag", ["latest", "", "1.16 1", "-x", "a" * 129])
def test_bad_tag_is_refused_before_anything(tag: str) -> None:
    code, out, err = run(["--stack", "local", f"--tag={tag}", "--json", "--cwd", str(ROOT)])
    assert code == Exit.USAGE
    assert "--tag" in err
    result = json.loads(out)
    assert result["outcome"] == "refused"
    assert result["exitCode"] == 2


def test_project_folder_must_hold_pulumi_yaml(tmp_path: Path) -> None:
    code, _, err = run(["--stack", "local", "--tag", "1.16.1", "--cwd", str(tmp_path)])
    assert code == Exit.USAGE
    assert "holds no Pulumi.yaml" in err


def test_arguments_are_required() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(["--tag", "1.0"])
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("steps", "unexpected"),
    [
        ([Step("same", "pulumi:pulumi:Stack", "u::s"), Step("update", DEPLOY, "u::nginx-deployment")], []),
        ([Step("update", "kubernetes:core/v1:Service", "u::nginx-service")], ["nginx-service"]),
        ([Step("replace", DEPLOY, "u::nginx-deployment")], ["nginx-deployment"]),
        ([Step("create-replacement", DEPLOY, "u::d"), Step("delete-replaced", DEPLOY, "u::d")], ["d", "d"]),
        ([Step("update", "eks:index:Cluster", "u::rolling-eks")], ["rolling-eks"]),
        ([Step("create", "aws:ec2/subnet:Subnet", "u::s3")], ["s3"]),
    ],
)
def test_only_an_in_place_deployment_update_is_expected(steps: list[Step], unexpected: list[str]) -> None:
    assert [s.name for s in unexpected_steps(steps)] == unexpected


def test_plan_rendering() -> None:
    settings = Settings.from_values({"target": "eks", "imageTag": "1.16.1", "replicas": 4, "maxSurge": "50%"})
    text = RolloutPlan("dev", "nginxinc/nginx-unprivileged:1.14.2", settings.image, settings).render()
    assert "nginxinc/nginx-unprivileged:1.14.2 -> nginxinc/nginx-unprivileged:1.16.1" in text
    assert "replicas     4" in text
    assert "maxSurge 2, maxUnavailable 0: at least 4 ready and at most 6 pods" in text
    assert "steps        2" in text
    assert "0.25 vCPU / 0.5 GB on Fargate" in text
    local = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert "Fargate" not in RolloutPlan("local", "a", "b", local).render()


def rollout(*extra: str, stdin: io.StringIO | None = None) -> cli.RolloutRun:
    args = cli.parse_args(["--stack", "dev", "--tag", "1.16.1", *extra])
    return cli.RolloutRun(args, io.StringIO(), io.StringIO(), stdin or io.StringIO())


def test_no_terminal_and_no_yes_changes_nothing() -> None:
    command = rollout()
    assert command.confirmed() is False
    assert command.result.exit == Exit.NOT_CONFIRMED
    assert "pass --yes" in command.err.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("answer", "expected"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)])
def test_terminal_confirmation(answer: str, expected: bool) -> None:
    command = rollout(stdin=TTY(answer))
    assert command.confirmed() is expected
    if not expected:
        assert command.result.exit == Exit.NOT_CONFIRMED


def test_yes_skips_the_question() -> None:
    assert rollout("--yes").confirmed() is True


class FakeStack:
    """Records config writes and ups; fails the ups it is told to."""

    def __init__(self, failing: set[str]) -> None:
        self.tag = "1.14.2"
        self.failing = failing
        self.ups: list[str] = []

    def set_config(self, key: str, value: Any) -> None:
        assert key == "rolling:imageTag"
        self.tag = value.value

    def up(self, **_: Any) -> None:
        import pulumi.automation as auto

        self.ups.append(self.tag)
        if self.tag in self.failing:
            raise auto.CommandError(auto.CommandResult("", f"error: rollout of {self.tag} failed", 255))

    def outputs(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize(
    ("failing", "flags", "exit_code", "tag_after", "ups"),
    [
        ({"1.16.1-broken"}, [], Exit.ROLLED_BACK, "1.14.2", ["1.14.2"]),
        ({"1.16.1-broken"}, ["--no-rollback"], Exit.FAILED, "1.16.1-broken", []),
        ({"1.16.1-broken", "1.14.2"}, [], Exit.ROLLBACK_FAILED, "1.14.2", ["1.14.2"]),
    ],
)
def test_rollback_flow(
    monkeypatch: pytest.MonkeyPatch,
    failing: set[str],
    flags: list[str],
    exit_code: Exit,
    tag_after: str,
    ups: list[str],
) -> None:
    from infra.rollout import watch

    command = rollout(*flags)
    stack = FakeStack(failing)
    stack.tag = "1.16.1-broken"
    old = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1-broken"})
    healthy = watch.Health("nginxinc/nginx-unprivileged:1.14.2", 3, 3, 3, 3, True)
    monkeypatch.setattr(command, "health", lambda *_: healthy)
    monkeypatch.setattr(command, "progress", lambda *_: None)
    assert command.recover(cast(Any, stack), old, new, "timed out") == exit_code
    assert stack.tag == tag_after
    assert stack.ups == ups
    assert command.result.rolled_back is (exit_code == Exit.ROLLED_BACK)
    if exit_code == Exit.ROLLED_BACK:
        assert command.result.restored == "nginxinc/nginx-unprivileged:1.14.2: 3/3 ready, 3 updated, 3 available"


def test_rollback_that_leaves_an_unhealthy_deployment_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.rollout import watch

    command = rollout()
    old = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    monkeypatch.setattr(
        command, "health", lambda *_: watch.Health("nginxinc/nginx-unprivileged:1.14.2", 3, 2, 3, 2, True)
    )
    monkeypatch.setattr(command, "progress", lambda *_: None)
    assert command.recover(cast(Any, FakeStack(set())), old, new, "timed out") == Exit.ROLLBACK_FAILED


def test_json_result_shape() -> None:
    def runner(command: cli.RolloutRun) -> Exit:
        command.result.old_image, command.result.new_image = "nginx:1", "nginx:2"
        command.result.durations = {"preview": 1.234, "up": 10.0}
        return command.finish(Exit.OK, "succeeded")

    code, out, _ = run(["--stack", "dev", "--tag", "2", "--json"], runner=runner)
    assert code == 0
    assert json.loads(out) == {
        "stack": "dev",
        "oldImage": "nginx:1",
        "newImage": "nginx:2",
        "outcome": "succeeded",
        "exitCode": 0,
        "rolledBack": False,
        "durations": {"preview": 1.2, "up": 10.0},
        "error": None,
        "restored": None,
    }


ENGINE_FAILURE = """Updating (local):
    pulumi:pulumi:Stack rolling-local running error: update failed
Diagnostics:
  pulumi:pulumi:Stack (rolling-local):
    error: update failed

  kubernetes:apps/v1:Deployment (nginx-deployment):
    error: 2 errors occurred:
    \t* [ProgressDeadlineExceeded] ReplicaSet "nginx-deployment-687fcb955f" has timed out progressing.
    \t* [Pod nginx-deployment-687fcb955f-sx892]: [ImagePullBackOff] Back-off pulling image "nginx:1-broken"

Resources:
    2 errored
"""


def test_last_error_keeps_the_engine_errors_with_their_details() -> None:
    import pulumi.automation as auto

    err = auto.CommandError(auto.CommandResult("", ENGINE_FAILURE, 255))
    assert cli.last_error(err) == (
        "error: 2 errors occurred: "
        '* [ProgressDeadlineExceeded] ReplicaSet "nginx-deployment-687fcb955f" has timed out progressing. '
        '* [Pod nginx-deployment-687fcb955f-sx892]: [ImagePullBackOff] Back-off pulling image "nginx:1-broken"'
    )


def test_exit_codes_are_distinct() -> None:
    assert len({int(code) for code in Exit}) == len(Exit)


def test_a_locked_stack_is_busy_and_says_nothing_changed() -> None:
    import pulumi.automation as auto
    from pulumi.automation.errors import create_command_error

    # The errors the SDK raises for a held stack, on a file backend and on Pulumi Cloud.
    for stderr in (
        "error: the stack is currently locked by 1 lock(s). Either wait for the other",
        "error: [409] Conflict: Another update is currently in progress.",
    ):
        command = rollout()
        held = create_command_error(auto.CommandResult("", stderr, 255))
        assert isinstance(held, auto.ConcurrentUpdateError)
        assert command.command_failed(held, "up") == Exit.BUSY
    assert command.result.outcome == "busy"
    assert "nothing was changed" in (command.result.error or "")
    other = auto.CommandError(auto.CommandResult("", "error: boom", 255))
    assert rollout().command_failed(other, "preview") == Exit.FAILED
