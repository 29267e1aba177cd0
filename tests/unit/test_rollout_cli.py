"""The rollout command's decisions: arguments, plan, confirmation, exit codes, rollback flow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from infra.rollout import cli
from infra.rollout.engine import Engine, EngineError, StackBusyError, preview_steps
from infra.rollout.plan import Exit, RolloutPlan, Step, unexpected_steps
from infra.settings import Settings
from tests.unit import test_stackfile

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = "kubernetes:apps/v1:Deployment"
IMAGE = "spec.template.spec.containers[0].image"


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
        ([Step("same", "pulumi:pulumi:Stack", "u::s"), Step("update", DEPLOY, "u::nginx-deployment", (IMAGE,))], []),
        # The Deployment changes more than its image: an infrastructure change, not a rollout.
        ([Step("update", DEPLOY, "u::nginx-deployment", (IMAGE, "spec.replicas"))], ["nginx-deployment"]),
        (
            [Step("update", DEPLOY, "u::nginx-deployment", ("spec.strategy.rollingUpdate.maxUnavailable",))],
            ["nginx-deployment"],
        ),
        # No detailed diff: what changes cannot be told, so it is not taken for an image change.
        ([Step("update", DEPLOY, "u::nginx-deployment")], ["nginx-deployment"]),
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
    assert "maxSurge 2, maxUnavailable 0: at least 4 ready and at most 6 pods asked for" in text
    assert "steps        2" in text
    assert "0.25 vCPU / 0.5 GB on Fargate" in text
    local = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert "Fargate" not in RolloutPlan("local", "a", "b", local).render()


def rollout(*extra: str, stdin: io.StringIO | None = None, tag: str = "1.16.1") -> cli.RolloutRun:
    args = cli.parse_args(["--stack", "dev", "--tag", tag, *extra])
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


class FakeEngine:
    """Records config writes and ups; fails the ups it is told to."""

    def __init__(self, failing: set[str]) -> None:
        self.tag = "1.14.2"
        self.failing = failing
        self.ups: list[str] = []

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        assert list(config) == ["rolling:imageTag"]
        self.tag = config["rolling:imageTag"]
        self.ups.append(self.tag)
        if self.tag in self.failing:
            raise EngineError(["up"], 255, "", f"error: rollout of {self.tag} failed")

    def outputs(self) -> dict[str, Any]:
        return {"deploymentName": "nginx-deployment"}


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
    engine = FakeEngine(failing)
    engine.tag = "1.16.1-broken"
    command.engine = cast(Any, engine)
    old = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1-broken"})
    healthy = watch.Health("nginxinc/nginx-unprivileged:1.14.2", 3, 3, 3, 3, True, 3)
    monkeypatch.setattr(command, "health", lambda *_: healthy)
    monkeypatch.setattr(command, "progress", lambda *_: None)
    assert command.recover(old, new, "timed out") == exit_code
    assert engine.tag == tag_after
    assert engine.ups == ups
    assert command.result.rolled_back is (exit_code == Exit.ROLLED_BACK)
    if exit_code == Exit.ROLLED_BACK:
        assert command.result.restored == "nginxinc/nginx-unprivileged:1.14.2: 3/3 ready, 3 updated, 3 available"


def test_rollback_that_leaves_an_unhealthy_deployment_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.rollout import watch

    command = rollout()
    old = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    monkeypatch.setattr(
        command, "health", lambda *_: watch.Health("nginxinc/nginx-unprivileged:1.14.2", 3, 2, 3, 2, True, 3)
    )
    monkeypatch.setattr(command, "progress", lambda *_: None)
    command.engine = cast(Any, FakeEngine(set()))
    assert command.recover(old, new, "timed out") == Exit.ROLLBACK_FAILED


class FakeProgress:
    """A live view whose rollout completes, or not, once the engine's update returns."""

    def __init__(self, problem: str | None) -> None:
        self.problem = problem
        self.waited: list[float] = []

    def __enter__(self) -> FakeProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_complete(self, timeout: float) -> str | None:
        self.waited.append(timeout)
        return self.problem


def test_an_update_that_returns_before_the_rollout_completes_is_waited_for() -> None:
    command = rollout("--yes")
    command.engine = cast(Any, FakeEngine(set()))
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    progress = FakeProgress(None)
    command.up(new, progress)
    assert progress.waited == [new.await_timeout_seconds]

    stuck = FakeProgress("the rollout did not complete within 70s of the update")
    with pytest.raises(cli.IncompleteRolloutError, match="did not complete within 70s"):
        command.up(new, stuck)


def test_a_rollout_that_does_not_complete_after_the_update_is_rolled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.rollout import watch

    command = rollout("--yes")
    engine = FakeEngine(set())
    command.engine = cast(Any, engine)
    old = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    monkeypatch.setattr(command, "progress", lambda *_: FakeProgress(None))
    monkeypatch.setattr(command, "health", lambda *_: watch.Health(old.image, 3, 3, 3, 3, True, 3))
    with pytest.raises(cli.IncompleteRolloutError) as caught:
        command.up(new, FakeProgress("the rollout did not complete within 70s of the update"))
    assert command.recover(old, new, str(caught.value)) == Exit.ROLLED_BACK
    assert engine.ups == ["1.16.1", "1.14.2"]


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
    err = EngineError(["up"], 255, ENGINE_FAILURE, "")
    assert cli.last_error(err) == (
        "error: 2 errors occurred: "
        '* [ProgressDeadlineExceeded] ReplicaSet "nginx-deployment-687fcb955f" has timed out progressing. '
        '* [Pod nginx-deployment-687fcb955f-sx892]: [ImagePullBackOff] Back-off pulling image "nginx:1-broken"'
    )


def test_exit_codes_are_distinct() -> None:
    assert len({int(code) for code in Exit}) == len(Exit)


def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, stderr: str, code: int) -> Path:
    """A `pulumi` on PATH that records its arguments and answers as told."""
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\ncat {tmp_path}/out\ncat {tmp_path}/err >&2\nexit {code}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return tmp_path / "args"


@pytest.mark.parametrize(
    "stderr",
    [
        # A file backend's lock, and Pulumi Cloud's answer.
        "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end",
        "error: [409] Conflict: Another update is currently in progress.",
    ],
)
def test_a_locked_stack_is_busy_and_says_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    fake_pulumi(tmp_path, monkeypatch, "", stderr, 255)
    with pytest.raises(StackBusyError) as caught:
        Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"})
    command = rollout()
    assert command.command_failed(caught.value, "up") == Exit.BUSY
    assert command.result.outcome == "busy"
    assert "nothing was changed" in (command.result.error or "")
    assert rollout().command_failed(EngineError(["preview"], 255, "", "error: boom"), "preview") == Exit.FAILED


def test_engine_commands_name_the_stack_and_hold_the_update_to_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = fake_pulumi(tmp_path, monkeypatch, "", "", 0)
    Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"}, tmp_path / "plan.json")
    assert args.read_text().split("\n")[:-1] == [
        "--non-interactive",
        "up",
        "--yes",
        "--skip-preview",
        "--color",
        "never",
        "--config",
        "rolling:imageTag=1.16.1",
        "--plan",
        str(tmp_path / "plan.json"),
        "--stack",
        "dev",
    ]


PREVIEW = {
    "steps": [
        {
            "op": "same",
            "urn": "urn:pulumi:dev::rolling::pulumi:pulumi:Stack::rolling-dev",
            "newState": {"type": "pulumi:pulumi:Stack"},
        },
        {
            "op": "update",
            "urn": "urn:pulumi:dev::rolling::x$kubernetes:apps/v1:Deployment::nginx-deployment",
            "newState": {"type": DEPLOY},
            "diffReasons": ["spec"],
            "detailedDiff": {IMAGE: {"kind": "update", "inputDiff": True}},
        },
        {
            "op": "delete",
            "urn": "urn:pulumi:dev::rolling::x$kubernetes:core/v1:Service::nginx-service",
            "oldState": {"type": "kubernetes:core/v1:Service"},
        },
    ],
    "changeSummary": {"same": 6, "update": 1, "delete": 1},
}


def test_preview_steps_come_from_the_engines_json() -> None:
    steps = preview_steps(json.dumps(PREVIEW))
    assert [(s.op, s.type, s.name) for s in steps] == [
        ("same", "pulumi:pulumi:Stack", "rolling-dev"),
        ("update", DEPLOY, "nginx-deployment"),
        ("delete", "kubernetes:core/v1:Service", "nginx-service"),
    ]
    assert [s.name for s in unexpected_steps(steps)] == ["nginx-service"]


def test_a_failed_json_command_says_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {
        "steps": [],
        "diagnostics": [
            {
                "message": "error: invalid stack configuration (1 problem(s)):\n"
                "  - rolling:replicas 0 is too small; use 1 or more\n",
                "severity": "error",
            },
            {"message": "warning: something else\n", "severity": "warning"},
        ],
    }
    fake_pulumi(tmp_path, monkeypatch, json.dumps(failed), "", 255)
    with pytest.raises(EngineError) as caught:
        Engine(tmp_path, "dev").preview(tmp_path / "config.yaml", tmp_path / "plan.json")
    assert not isinstance(caught.value, StackBusyError)
    assert '"steps"' not in str(caught.value)  # the errors, not the whole document
    assert cli.last_error(caught.value) == (
        "error: invalid stack configuration (1 problem(s)): - rolling:replicas 0 is too small; use 1 or more"
    )


def test_the_command_starts_without_the_pulumi_sdk_or_the_kubernetes_library() -> None:
    """Both take a good part of a second to import; the rollout needs neither before its first engine command."""
    code = "import sys, infra.rollout.cli; print(sorted({'pulumi', 'kubernetes'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


class PreviewingEngine(FakeEngine):
    """A stack at 1.14.2 whose preview updates the Deployment only and saves a plan."""

    def __init__(self) -> None:
        super().__init__(set())
        self.previewed: list[tuple[str, Path]] = []
        self.plans: list[Path] = []

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", "rolling:imageTag": self.tag}

    def preview(self, config_file: Path, plan: Path) -> list[Step]:
        previewed = cast(dict[str, Any], yaml.safe_load(config_file.read_text()))["config"]["rolling:imageTag"]
        self.previewed.append((previewed, plan))
        plan.write_text("{}")
        urn = "urn:pulumi:dev::rolling::x$kubernetes:apps/v1:Deployment::nginx-deployment"
        return [Step("update", DEPLOY, urn, (IMAGE,))]

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        assert plan is not None and plan.is_file(), "the plan is there while the update runs"
        self.plans.append(plan)
        super().up(config, plan)


def test_the_update_runs_under_the_plan_its_preview_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    command = rollout("--yes", "--cwd", str(ROOT))
    engine = PreviewingEngine()
    command.engine = cast(Any, engine)
    monkeypatch.setattr(command, "watch_rollout", lambda *_: None)
    assert command.run() == Exit.OK
    assert [tag for tag, _ in engine.previewed] == ["1.16.1"]
    assert engine.plans == [engine.previewed[0][1]]
    assert engine.ups == ["1.16.1"]
    assert not engine.plans[0].exists(), "the plan is a temporary file"


def test_a_sha_shaped_tag_reaches_the_preview_as_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short SHA such as 12345e7 is a number in YAML 1.2, which the engine reads: the preview's config file
    # must quote it, or the preview and the update ship different tags and the plan is violated.
    command = rollout("--yes", "--cwd", str(ROOT), tag="12345e7")
    engine = PreviewingEngine()
    command.engine = cast(Any, engine)
    seen: list[str] = []
    original = engine.preview

    def preview(config_file: Path, plan: Path) -> list[Step]:
        seen.append(config_file.read_text())
        return original(config_file, plan)

    engine.preview = preview  # type: ignore[method-assign]
    monkeypatch.setattr(command, "watch_rollout", lambda *_: None)
    assert command.run() == Exit.OK
    (text,) = seen
    assert test_stackfile.plain_scalars(text) == []
    assert test_stackfile.engine_reads(text, "rolling:imageTag") == "12345e7"


def test_a_plan_violation_is_said_in_a_line_or_two() -> None:
    planned = "{map[template:{map[spec:{map[containers:{[{map[image:{r/app:12345e7} name:{nginx}]}]}]}]}]}"
    now = planned.replace("12345e7", "1.2345e+11")
    stdout = (
        "Updating (dev):\n"
        + "  pulumi:pulumi:Stack rolling-dev  "
        + "x" * 4000
        + "\n"
        + "error: resource urn:pulumi:dev::rolling::rolling:index:WebApp$kubernetes:apps/v1:Deployment::"
        + f"nginx-deployment violates plan: properties changed: ~~spec[{planned}!={now}]\n"
    )
    said = cli.last_error(EngineError(["up"], 255, stdout, ""))
    assert len(said) < 400
    assert "nginx-deployment's spec" in said
    assert "the container image was r/app:12345e7 in the preview, r/app:1.2345e+11 now" in said


ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling"


class KeepingEngine(PreviewingEngine):
    """A stack whose config names no image (it keeps what runs), running ``running``; records up's config."""

    def __init__(self, running: str, configured: dict[str, str]) -> None:
        super().__init__()
        self.running = running
        self.configured = configured
        self.up_configs: list[dict[str, str]] = []
        self.commands: list[tuple[str, ...]] = []

    def run(self, *args: str) -> str:
        self.commands.append(args)
        return ""

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", **{f"rolling:{k}": v for k, v in self.configured.items()}}

    def outputs(self) -> dict[str, Any]:
        return {"image": self.running, "deploymentName": "nginx-deployment"} if self.running else {}

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        self.up_configs.append(config)
        self.ups.append(config["rolling:imageTag"])


def test_with_no_image_in_the_config_the_running_one_is_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    command = rollout("--yes", "--cwd", str(ROOT), tag="def5678")
    engine = KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR})
    command.engine = cast(Any, engine)
    monkeypatch.setattr(command, "watch_rollout", lambda *_: None)
    assert command.run() == Exit.OK
    assert (command.result.old_image, command.result.new_image) == (f"{ECR}:abc1234", f"{ECR}:def5678")
    assert engine.up_configs == [{"rolling:imageTag": "def5678"}]
    # Asked again for what runs, it says so and changes nothing.
    again = rollout("--yes", "--cwd", str(ROOT), tag="abc1234")
    again.engine = cast(Any, KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR}))
    assert again.run() == Exit.OK and again.result.outcome == "unchanged"


def test_a_rollback_names_the_image_that_ran_even_from_another_repository() -> None:
    # The first deploy of a new stack: it runs the bootstrap image (Docker Hub) while the pipeline ships ECR
    # images; the rollback target is the bootstrap image itself, not <ecr>:<its tag>, which does not exist.
    configured = {"imageRepository": ECR}
    command = rollout(tag="def5678")
    command.engine = cast(Any, KeepingEngine("", configured))
    old = Settings.from_values(command.running_values({"target": "local", **configured}))
    assert old.image == "nginxinc/nginx-unprivileged:1.30.6-alpine"
    assert cli.image_config(old, {"target": "local", **configured}) == {
        "rolling:imageTag": "1.30.6-alpine",
        "rolling:imageRepository": "nginxinc/nginx-unprivileged",
    }


def test_a_busy_stack_gets_its_image_config_back() -> None:
    command = rollout(tag="def5678")
    engine = KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR})
    calls = engine.commands
    command.engine = cast(Any, engine)
    command.configured = {"imageRepository": ECR}
    command.restore_tag()
    assert calls == [("config", "rm", "rolling:imageTag")], "no tag was configured: the stack keeps what runs"
    command.configured = {"imageRepository": ECR, "imageTag": "abc1234"}
    command.restore_tag()
    assert calls[-1] == ("config", "set", "rolling:imageTag", "abc1234", "--plaintext")
