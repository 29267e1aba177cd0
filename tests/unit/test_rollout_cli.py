"""The rollout command's decisions: arguments, confirmation, exit codes, the rollback flow; its engine and
cluster are fakes passed in (tests/unit/test_rollout_engine.py and test_rollout_status.py test the real ones)."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from infra import release
from infra.identity import CANARY_DEPLOYMENT, DEPLOYMENT, DEPLOYMENT_TYPE
from infra.images import CONTAINER_IMAGE_PATH as IMAGE
from infra.rollout import cli, history
from infra.rollout.engine import EngineError, StackBusyError
from infra.rollout.exits import Exit
from infra.rollout.history import Revision
from infra.rollout.review import Step
from infra.rollout.status import Health, Verdict
from infra.settings import Settings
from tests.unit import test_release_history, test_rollout_analysis, test_stackfile

ROOT = Path(__file__).resolve().parents[2]


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


class FakeEngine:
    """A stack at ``tag``: records config writes, ups, refreshes and interrupts; fails the ups it is told to."""

    def __init__(self, failing: set[str] = frozenset(), tag: str = "1.14.2") -> None:  # type: ignore[assignment]
        self.tag = tag
        self.canary: str | None = None
        self.failing = failing
        self.ups: list[str] = []
        self.up_configs: list[dict[str, str]] = []
        self.previewed: list[tuple[str, Path]] = []
        self.plans: list[Path | None] = []
        self.commands: list[tuple[str, ...]] = []
        self.refreshed: list[list[str]] = []
        self.interrupts = 0
        self.preview_texts: list[str] = []

    def run(self, *args: str) -> str:
        self.commands.append(args)
        return ""

    def config(self) -> dict[str, str]:
        return {
            "rolling:target": "local",
            "rolling:imageTag": self.tag,
            **({"rolling:canaryTag": self.canary} if self.canary else {}),
        }

    def preview(self, config_file: Path, plan: Path) -> list[Step]:
        text = config_file.read_text()
        self.preview_texts.append(text)
        config = cast(dict[str, Any], yaml.safe_load(text))["config"]
        previewed = config.get("rolling:imageTag", "")
        self.previewed.append((previewed, plan))
        plan.write_text("{}")
        steps = []
        if previewed != self.tag:
            urn = f"urn:pulumi:dev::rolling::x${DEPLOYMENT_TYPE}::{DEPLOYMENT}"
            steps.append(Step("update", DEPLOYMENT_TYPE, urn, (IMAGE,)))
        canary = config.get("rolling:canaryTag") or None
        if canary != self.canary:
            op = "delete" if canary is None else "create" if self.canary is None else "update"
            urn = f"urn:pulumi:dev::rolling::x${DEPLOYMENT_TYPE}::{CANARY_DEPLOYMENT}"
            steps.append(Step(op, DEPLOYMENT_TYPE, urn, (IMAGE,) if op == "update" else None))
        return steps

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        assert plan is None or plan.is_file(), "the plan is there while the update runs"
        self.plans.append(plan)
        self.up_configs.append(config)
        if "rolling:canaryTag" in config:
            self.canary = config["rolling:canaryTag"] or None
        if "rolling:imageTag" in config:
            self.tag = config["rolling:imageTag"]
            self.ups.append(self.tag)
        else:
            self.ups.append(f"canary:{self.canary or '-'}")
        if self.tag in self.failing or (self.canary is not None and self.canary in self.failing):
            raise EngineError(["up"], 255, "", f"error: rollout of {self.tag} failed")

    def refresh(self, urns: Any) -> None:
        self.refreshed.append(list(urns))

    def resources(self) -> list[dict[str, Any]]:
        return [{"type": DEPLOYMENT_TYPE, "urn": f"urn::{DEPLOYMENT}"}]

    @property
    def image(self) -> str:
        return f"nginxinc/nginx-unprivileged:{self.tag}"

    def outputs(self) -> dict[str, Any]:
        return {"deploymentName": DEPLOYMENT, "image": self.image}

    def interrupt(self) -> None:
        self.interrupts += 1


class FakeView:
    """A live view whose rollout completes, or not (``problem``), once the engine's update returns."""

    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self.waited: list[float] = []

    def __enter__(self) -> FakeView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_complete(self, timeout: float) -> str | None:
        self.waited.append(timeout)
        return self.problem


class FakeCluster:
    """A cluster whose Deployment is ``state``, or runs what ``engine`` last shipped on 3 replicas, complete;
    each live view waits as ``problems`` say, in turn; ``error`` is what reading the Deployment raises."""

    name = "https://127.0.0.1:6443"

    def __init__(
        self,
        state: Health | None = None,
        problems: list[str | None] | None = None,
        *,
        engine: Any = None,
        error: Exception | None = None,
    ) -> None:
        self.state = state
        self.engine = engine
        self.error = error
        self.problems = list(problems or [])
        self.views: list[FakeView] = []
        self.kubeconfigs: list[str | None] = []
        self.revision_list: list[Revision] = []

    def read(self, kubeconfig: str | None) -> FakeCluster:
        self.kubeconfigs.append(kubeconfig)
        return self

    def health(self, namespace: str, name: str) -> Health:
        assert name == DEPLOYMENT
        if self.error is not None:
            raise self.error
        if self.state is not None:
            return self.state
        image = self.engine.image if self.engine is not None else "nginxinc/nginx-unprivileged:1.14.2"
        return Health(image, 3, 3, 3, 3, True, 3)

    def revisions(self, namespace: str, name: str) -> list[Revision]:
        assert name == DEPLOYMENT
        return list(self.revision_list)

    def progress(self, namespace: str, say: Any, verdict: Verdict | None = None) -> FakeView:
        self.views.append(FakeView(self.problems.pop(0) if self.problems else None))
        return self.views[-1]


def rollout(
    *extra: str,
    stdin: io.StringIO | None = None,
    tag: str = "1.16.1",
    engine: Any = None,
    cluster: FakeCluster | None = None,
    reach_within_s: float = cli.REACH_WITHIN_S,
) -> cli.RolloutRun:
    args = cli.parse_args(["--stack", "dev", "--tag", tag, *extra])
    engine = engine or FakeEngine()
    cluster = cluster or FakeCluster(engine=engine)
    if cluster.engine is None and cluster.state is None:
        cluster.engine = engine
    return cli.RolloutRun(
        args,
        io.StringIO(),
        io.StringIO(),
        stdin or io.StringIO(),
        engine=engine,
        cluster_reader=cluster.read,
        reach_within_s=reach_within_s,
    )


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


OLD = Settings.from_values({"target": "local", "imageTag": "1.14.2"})


@pytest.mark.parametrize(
    ("failing", "flags", "exit_code", "tag_after", "ups"),
    [
        ({"1.16.1-broken"}, [], Exit.ROLLED_BACK, "1.14.2", ["1.14.2"]),
        ({"1.16.1-broken"}, ["--no-rollback"], Exit.FAILED, "1.16.1-broken", []),
        ({"1.16.1-broken", "1.14.2"}, [], Exit.ROLLBACK_FAILED, "1.14.2", ["1.14.2"]),
    ],
)
def test_rollback_flow(failing: set[str], flags: list[str], exit_code: Exit, tag_after: str, ups: list[str]) -> None:
    engine = FakeEngine(failing, tag="1.16.1-broken")
    command = rollout(*flags, engine=engine)
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1-broken"})
    assert command.recover(OLD, new, "timed out") == exit_code
    assert engine.tag == tag_after
    assert engine.ups == ups
    assert command.result.rolled_back is (exit_code == Exit.ROLLED_BACK)
    if exit_code == Exit.ROLLED_BACK:
        assert command.result.restored == "nginxinc/nginx-unprivileged:1.14.2: 3/3 ready, 3 updated, 3 available"
        assert "rollback" in command.result.durations


def test_rollback_that_leaves_an_unhealthy_deployment_is_a_failure() -> None:
    unhealthy = FakeCluster(Health("nginxinc/nginx-unprivileged:1.14.2", 3, 2, 3, 2, True, 3))
    command = rollout(cluster=unhealthy)
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert command.recover(OLD, new, "timed out") == Exit.ROLLBACK_FAILED
    assert "not healthy" in (command.result.error or "")


def test_an_update_that_returns_before_the_rollout_completes_is_waited_for() -> None:
    command = rollout("--yes")
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    view = FakeView(None)
    command.up(new, view)
    assert view.waited == [new.await_timeout_seconds]

    stuck = FakeView("the rollout did not complete within 70s")
    with pytest.raises(cli.IncompleteRolloutError, match="did not complete within 70s"):
        command.up(new, stuck)


def test_run_rolls_back_a_rollout_that_does_not_complete_after_the_update() -> None:
    # The whole command: its update returns, the live view finds the rollout incomplete, the command
    # rolls back through a second update and confirms the old version on every replica.
    engine = FakeEngine()
    cluster = FakeCluster(problems=["the rollout did not complete within 70s"])
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine, cluster=cluster)
    assert command.run() == Exit.ROLLED_BACK
    assert engine.ups == ["1.16.1", "1.14.2"]
    assert command.result.error == "the rollout did not complete within 70s"
    assert [len(view.waited) for view in cluster.views] == [1, 1], "the rollback is waited for too"
    assert set(command.result.durations) == {
        "config",
        "outputs",
        "look",
        "preview",
        "up",
        "rollback",
        "failureToRestored",
    }


def test_an_update_failed_by_the_program_before_the_watch_saw_it_still_times_the_restore() -> None:
    # The program's own wait (or the engine) can find the failure first: the update fails with no verdict
    # from the live view. The time to restore runs from when the command learned it, not nowhere.
    engine = FakeEngine({"1.16.1"})
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
    assert command.run() == Exit.ROLLED_BACK
    assert command.verdict is not None and command.verdict.at is None, "the watch decided nothing"
    assert engine.ups == ["1.16.1", "1.14.2"]
    assert 0 <= command.result.durations["failureToRestored"] <= command.result.durations["rollback"] + 1


def test_a_definitive_failure_interrupts_the_engine_once_and_the_rollback_refreshes_first() -> None:
    engine = FakeEngine({"1.16.1"})
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
    verdict = command.watch_rollout(Settings.from_values({"target": "local", "imageTag": "1.16.1"}))
    assert verdict is not None and command.verdict is not None
    command.verdict.decide("pod x: the registry has no nginx:1.16.1")
    command.verdict.decide("pod y: the registry has no nginx:1.16.1")
    assert engine.interrupts == 1, "a second finding must not signal the engine again"
    new = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert command.recover(OLD, new, command.failure_reason() or "") == Exit.ROLLED_BACK
    assert engine.refreshed == [[f"urn::{DEPLOYMENT}"]], "the state reads the Deployment back before the rollback"
    assert "failureToRestored" in command.result.durations


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
        "analysis": None,
    }


def test_exit_codes_are_distinct() -> None:
    # Iterating an IntEnum skips aliases (a second name for a value already taken); __members__ lists them.
    names = Exit.__members__
    assert len({int(code) for code in names.values()}) == len(names), "two outcomes share an exit code"


def test_the_command_starts_without_the_pulumi_sdk_or_the_kubernetes_library() -> None:
    """Both take a good part of a second to import; the rollout needs neither before its first engine command."""
    code = "import sys, infra.rollout.cli; print(sorted({'pulumi', 'kubernetes'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_the_update_runs_under_the_plan_its_preview_saved() -> None:
    engine = FakeEngine()
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
    assert command.run() == Exit.OK
    assert [tag for tag, _ in engine.previewed] == ["1.16.1"]
    assert engine.plans == [engine.previewed[0][1]]
    assert engine.ups == ["1.16.1"]
    plan = engine.plans[0]
    assert plan is not None and not plan.exists(), "the plan is a temporary file"


def test_a_sha_shaped_tag_reaches_the_preview_as_a_string() -> None:
    # A short SHA such as 12345e7 is a number in YAML 1.2, which the engine reads: the preview's config file
    # must quote it, or the preview and the update ship different tags and the plan is violated.
    engine = FakeEngine()
    command = rollout("--yes", "--cwd", str(ROOT), tag="12345e7", engine=engine)
    assert command.run() == Exit.OK
    (text,) = engine.preview_texts
    assert test_stackfile.plain_scalars(text) == []
    assert test_stackfile.engine_reads(text, "rolling:imageTag") == "12345e7"


ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling"


class KeepingEngine(FakeEngine):
    """A stack whose config names no image (it keeps what runs), running ``running``."""

    def __init__(self, running: str, configured: dict[str, str]) -> None:
        super().__init__()
        self.running = running
        self.configured = configured

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", **{f"rolling:{k}": v for k, v in self.configured.items()}}

    @property
    def image(self) -> str:
        return self.running if not self.ups else f"{self.running.rsplit(':', 1)[0]}:{self.tag}"

    def outputs(self) -> dict[str, Any]:
        return {"image": self.running, "deploymentName": DEPLOYMENT} if self.running else {}


def test_with_no_image_in_the_config_the_running_one_is_the_old_one() -> None:
    engine = KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR})
    command = rollout("--yes", "--cwd", str(ROOT), tag="def5678", engine=engine)
    assert command.run() == Exit.OK
    assert (command.result.old_image, command.result.new_image) == (f"{ECR}:abc1234", f"{ECR}:def5678")
    cause = f"ship {ECR}:def5678 by {release.who()}"
    assert engine.up_configs == [{"rolling:imageTag": "def5678", "rolling:changeCause": cause}]
    # Asked again for what runs, it says so and changes nothing.
    again = rollout(
        "--yes", "--cwd", str(ROOT), tag="abc1234", engine=KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR})
    )
    assert again.run() == Exit.OK and again.result.outcome == "unchanged"


def test_a_rollback_names_the_image_that_ran_even_from_another_repository() -> None:
    # The first deploy of a new stack: it runs the bootstrap image (Docker Hub) while the pipeline ships ECR
    # images; the rollback target is the bootstrap image itself, not <ecr>:<its tag>, which does not exist.
    configured = {"imageRepository": ECR}
    command = rollout(tag="def5678", engine=KeepingEngine("", configured))
    old = Settings.from_values(command.running_values({"target": "local", **configured}))
    assert old.image == "nginxinc/nginx-unprivileged:1.30.6-alpine"
    assert cli.image_config(old, {"target": "local", **configured}) == {
        "rolling:imageTag": "1.30.6-alpine",
        "rolling:imageRepository": "nginxinc/nginx-unprivileged",
    }


class BusyEngine(KeepingEngine):
    """Another update holds the stack when this one starts."""

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        super().up(config, plan)
        raise StackBusyError(["up"], 255, "", "error: the stack is currently locked by 1 lock(s)")


@pytest.mark.parametrize(
    ("configured", "restored"),
    [
        ({"imageRepository": ECR}, ("config", "rm", "rolling:imageTag")),
        (
            {"imageRepository": ECR, "imageTag": "abc1234"},
            ("config", "set", "rolling:imageTag", "abc1234", "--plaintext"),
        ),
    ],
)
def test_a_busy_stack_gets_its_image_config_back(configured: dict[str, str], restored: tuple[str, ...]) -> None:
    # `up --config` wrote the new tag before the lock refused the update: run() puts the config back as it
    # was (no tag: the stack keeps what runs), says nothing changed, and does not roll back.
    engine = BusyEngine(f"{ECR}:abc1234", configured)
    command = rollout("--yes", "--cwd", str(ROOT), tag="def5678", engine=engine)
    assert command.run() == Exit.BUSY
    assert engine.commands == [restored, ("config", "rm", "rolling:changeCause")]
    assert engine.ups == ["def5678"], "no rollback: nothing was changed"
    assert "nothing was changed" in (command.result.error or "")


def test_a_crash_has_its_own_exit_code_and_still_prints_json() -> None:
    def runner(command: cli.RolloutRun) -> Exit:
        raise RuntimeError("something broke")

    code, out, err = run(["--stack", "dev", "--tag", "2", "--json"], runner=runner)
    assert code == 11 and int(Exit.CRASHED) == 11
    result = json.loads(out)
    assert (result["outcome"], result["exitCode"]) == ("crashed", 11)
    assert "RuntimeError: something broke" in result["error"]
    assert "Traceback" in err  # for whoever has to fix it


def test_without_pulumi_on_path_the_command_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run(["--stack", "dev", "--tag", "2", "--json", "--cwd", str(ROOT)])
    assert code == Exit.USAGE
    assert "the pulumi CLI is not on PATH" in json.loads(out)["error"]
    assert "Traceback" not in err


# What runs, read before anything is previewed.
def looked(cluster: FakeCluster, tag: str = "1.16.1", engine: FakeEngine | None = None) -> cli.RolloutRun:
    command = rollout("--yes", "--cwd", str(ROOT), tag=tag, engine=engine or FakeEngine(), cluster=cluster)
    command.run()
    return command


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            f"cannot reach the cluster at {FakeCluster.name} to read Deployment rolling/{DEPLOYMENT}: "
            "[Errno 111] Connection refused; nothing was changed",
        ),
        (
            ApiException(status=401, reason="Unauthorized"),
            f"the cluster at {FakeCluster.name} refused to let Deployment rolling/{DEPLOYMENT} be read: "
            "401 Unauthorized (credentials?); nothing was changed",
        ),
    ],
)
def test_a_cluster_that_cannot_be_read_stops_the_command_before_the_preview(error: Exception, said: str) -> None:
    engine = FakeEngine()
    command = looked(FakeCluster(error=error), engine=engine)
    assert (command.result.exit, command.result.outcome) == (Exit.UNREADABLE, "unreadable")
    assert command.result.error == said
    assert engine.previewed == [] and engine.ups == [] and engine.refreshed == []
    assert command.err.getvalue() == f"rollout: {said}\n"  # type: ignore[attr-defined]


def test_a_kubeconfig_that_cannot_be_read_stops_the_command_too() -> None:
    engine = FakeEngine()
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine)

    def reader(_: str | None) -> FakeCluster:
        raise FileNotFoundError(2, "No such file or directory")

    command.cluster_reader = reader
    assert command.run() == Exit.UNREADABLE
    assert "cannot read the kubeconfig of stack dev's cluster: [Errno 2] No such file or directory" in str(
        command.result.error
    )
    assert engine.previewed == [] and engine.ups == []


def test_a_deployment_the_cluster_does_not_have_is_drift_never_success() -> None:
    # The cluster was made again: the state lists the Deployment, the cluster has none.
    engine = FakeEngine()
    command = looked(FakeCluster(error=ApiException(status=404, reason="Not Found")), tag="1.14.2", engine=engine)
    assert (command.result.exit, command.result.outcome) == (Exit.DRIFTED, "drifted")
    assert "is not in the cluster" in str(command.result.error)
    assert "`pulumi up --refresh` creates it again; nothing was changed" in str(command.result.error)
    assert engine.previewed == [] and engine.ups == []


def test_unchanged_only_when_the_cluster_runs_the_image_on_every_replica() -> None:
    engine = FakeEngine()
    command = looked(FakeCluster(engine=engine), tag="1.14.2", engine=engine)
    assert (command.result.exit, command.result.outcome) == (Exit.OK, "unchanged")
    assert engine.previewed == []

    half = Health("nginxinc/nginx-unprivileged:1.14.2", 3, 1, 3, 1, True, 5)
    command = looked(FakeCluster(half), tag="1.14.2")
    assert (command.result.exit, command.result.outcome) == (Exit.FAILED, "incomplete")
    assert "its rollout is not complete (nginxinc/nginx-unprivileged:1.14.2: 1/3 ready" in str(command.result.error)


def test_an_image_set_outside_pulumi_is_read_back_then_replaced() -> None:
    # `kubectl set image` ran 1.13.0; the stack's state and config say 1.14.2. Asked for 1.14.2, the command
    # reads the Deployment back (so the preview has something to do) and ships it; 1.13.0 is what a
    # rollback would return to, since it is what served.
    engine = FakeEngine()
    cluster = FakeCluster(Health("nginxinc/nginx-unprivileged:1.13.0", 3, 3, 3, 3, True, 3))
    command = looked(cluster, tag="1.14.2", engine=engine)
    assert engine.refreshed == [[f"urn::{DEPLOYMENT}"]]
    assert [tag for tag, _ in engine.previewed] == ["1.14.2"] and engine.ups == ["1.14.2"]
    assert command.result.old_image == "nginxinc/nginx-unprivileged:1.13.0"
    assert "the cluster runs nginxinc/nginx-unprivileged:1.13.0, but stack dev's state says" in command.err.getvalue()  # type: ignore[attr-defined]


def test_a_stack_never_deployed_is_not_looked_for() -> None:
    engine = KeepingEngine("", {"imageRepository": ECR})
    cluster = FakeCluster(error=AssertionError("no Deployment to look for"))
    command = looked(cluster, tag="def5678", engine=engine)
    assert command.result.exit == Exit.OK, "its Deployment is not read: there is none yet"


class UnreadableView(FakeView):
    def wait_complete(self, timeout: float) -> str | None:
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_cluster_lost_after_the_update_is_unconfirmed_never_success() -> None:
    engine = FakeEngine()
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
    cluster = cast(FakeCluster, command.cluster_reader(None))
    cluster.progress = lambda *_, **__: UnreadableView()  # type: ignore[method-assign]
    assert command.run() == Exit.UNCONFIRMED
    assert command.result.outcome == "unconfirmed"
    assert engine.ups == ["1.16.1"], "nothing is rolled back on a rollout not known to have failed"
    assert "could not be read after it to confirm the rollout: [Errno 111] Connection refused" in str(
        command.result.error
    )


class ConfigAheadEngine(FakeEngine):
    """A stack whose config names a tag never shipped (`pulumi config set` without `up`)."""

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", "rolling:imageTag": "1.15.0"}


def test_a_tag_in_the_config_never_shipped_is_not_what_runs_nor_drift() -> None:
    engine = ConfigAheadEngine()
    command = looked(FakeCluster(Health("nginxinc/nginx-unprivileged:1.14.2", 3, 3, 3, 3, True, 3)), engine=engine)
    assert command.result.exit == Exit.OK
    assert command.result.old_image == "nginxinc/nginx-unprivileged:1.14.2", "a rollback returns to what served"
    assert engine.refreshed == [], "the state already says what runs"
    assert "changed outside Pulumi" not in command.err.getvalue()  # type: ignore[attr-defined]


class ServedEngine(FakeEngine):
    """A stack whose url answers as the version it last shipped does: ``statuses`` by tag (200 otherwise),
    with the analysis settings ``analysis`` adds to its config."""

    def __init__(self, url: str, statuses: dict[str, int], **analysis: str) -> None:
        super().__init__()
        self.url, self.statuses = url, statuses
        self.analysis = {
            "bakeSeconds": "1",
            "canarySeconds": "2",
            "minRequests": "10",
            "analysisRate": "40",
            **analysis,
        }

    def config(self) -> dict[str, str]:
        return {**super().config(), **{f"rolling:{k}": v for k, v in self.analysis.items()}}

    def outputs(self) -> dict[str, Any]:
        return {**super().outputs(), "url": self.url}


@contextmanager
def served(statuses: dict[str, int], **analysis: str) -> Iterator[ServedEngine]:
    """A ServedEngine and its app on loopback."""
    engine: ServedEngine | None = None

    answered = itertools.count()

    class Live(test_rollout_analysis.App):
        def do_GET(self) -> None:  # noqa: N802 (the library's name)
            assert engine is not None
            # A canary answers one request in four, as one pod beside three would.
            version = engine.canary if engine.canary and next(answered) % 4 == 0 else engine.tag
            self.version, self.status = version, engine.statuses.get(version, 200)
            super().do_GET()

    server = test_rollout_analysis.Server(("127.0.0.1", 0), Live)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = ServedEngine(f"http://127.0.0.1:{server.server_address[1]}/", statuses, **analysis)
        yield engine
    finally:
        server.shutdown()
        server.server_close()


def test_a_release_that_serves_errors_after_its_rollout_is_aborted_and_rolled_back(tmp_path: Path) -> None:
    record = tmp_path / "analysis.jsonl"
    with served({"1.16.1": 500}) as engine:
        command = rollout("--yes", "--cwd", str(ROOT), "--record", str(record), engine=engine)
        assert command.run() == Exit.ABORTED
    recorded = [json.loads(line) for line in record.read_text().splitlines()]
    assert {(r["version"], r["status"]) for r in recorded} >= {("1.14.2", 200), ("1.16.1", 500)}
    assert engine.ups == ["1.16.1", "1.14.2"], "rolled back through a second update"
    assert command.result.outcome == "aborted" and command.result.rolled_back
    assert command.result.error is not None and command.result.error.startswith("the analysis found 1.16.1:")
    evidence = command.result.analysis
    assert evidence is not None and evidence["state"] == "breach"
    assert evidence["version"] == "1.16.1" and cast(int, evidence["errors"]) >= 10
    assert cast(dict[str, Any], evidence["responses"])["1.16.1"].keys() == {"500"}
    assert "bake" in command.result.durations and "failureToRestored" in command.result.durations


def test_a_healthy_release_passes_its_bake_and_says_so() -> None:
    with served({"1.14.2": 500}) as engine:  # the old version's errors are not the new one's
        command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
        assert command.run() == Exit.OK, command.result.analysis
    assert engine.ups == ["1.16.1"]
    evidence = command.result.analysis
    assert evidence is not None and evidence["state"] == "pass" and evidence["errors"] == 0
    assert "analysis: 1.16.1:" in command.err.getvalue()  # type: ignore[attr-defined]


def test_too_few_responses_are_not_enough_evidence_and_the_release_ships() -> None:
    with served({"1.16.1": 500}, analysisRate="2", minRequests="50") as engine:
        command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
        assert command.run() == Exit.OK
    assert engine.ups == ["1.16.1"]
    evidence = command.result.analysis
    assert evidence is not None and evidence["state"] == "insufficient"
    assert "not enough evidence" in str(evidence["reason"])


def test_a_url_the_analysis_cannot_reach_stops_the_command_before_the_update() -> None:
    with served({}) as engine:
        pass  # its app has stopped
    command = rollout("--yes", "--cwd", str(ROOT), engine=engine, reach_within_s=1.0)
    assert command.run() == Exit.NOT_PROBED
    assert engine.ups == [] and engine.commands == []
    assert "cannot reach stack dev's url" in (command.result.error or "")
    assert "rolling:analysis false" in (command.result.error or "")


def test_analysis_off_ships_on_readiness_alone() -> None:
    with served({"1.16.1": 500}, analysis="false") as engine:
        command = rollout("--yes", "--cwd", str(ROOT), engine=engine)
        assert command.run() == Exit.OK
    assert command.result.analysis is None and "bake" not in command.result.durations


def test_a_canary_that_passes_is_promoted_in_the_same_run(tmp_path: Path) -> None:
    record = tmp_path / "analysis.jsonl"
    with served({}) as engine:
        command = rollout("--yes", "--canary", "1", "--cwd", str(ROOT), "--record", str(record), engine=engine)
        assert command.run() == Exit.OK
    # The record holds the canary's analysis too: the canary's answers among the old version's, before the rest.
    versions = [json.loads(line)["version"] for line in record.read_text().splitlines()]
    last_old = len(versions) - 1 - versions[::-1].index("1.14.2")
    assert versions[:last_old].count("1.16.1") >= 5
    assert engine.ups == ["canary:1.16.1", "1.16.1"], "the canary first, then the rest"
    assert engine.up_configs[0] == {"rolling:canaryTag": "1.16.1", "rolling:canaryReplicas": "1"}
    assert engine.up_configs[1] == {
        "rolling:imageTag": "1.16.1",
        "rolling:canaryTag": "",
        "rolling:changeCause": f"ship nginxinc/nginx-unprivileged:1.16.1 by {release.who()}",
    }, "the canary goes"
    assert engine.canary is None and engine.tag == "1.16.1"
    assert {"canary", "canaryAnalysis", "up", "bake"} <= set(command.result.durations)
    assert "Canary plan for stack dev" in command.err.getvalue()  # type: ignore[attr-defined]


def test_a_bad_canary_is_removed_and_the_deployment_never_touched() -> None:
    with served({"1.16.1": 500}) as engine:
        command = rollout("--yes", "--canary", "1", "--cwd", str(ROOT), engine=engine)
        assert command.run() == Exit.ABORTED
    assert engine.ups == ["canary:1.16.1", "canary:-"]
    assert engine.tag == "1.14.2" and engine.canary is None
    evidence = command.result.analysis
    assert evidence is not None and evidence["state"] == "breach" and evidence["version"] == "1.16.1"
    # The old version's answers in the window were all good, and are not the canary's.
    responses = cast(dict[str, Any], evidence["responses"])
    assert responses["1.14.2"].keys() == {"200"} and responses["1.16.1"].keys() == {"500"}


def test_pause_then_promote_from_another_run() -> None:
    with served({}) as engine:
        first = rollout("--yes", "--canary", "1", "--pause", "--cwd", str(ROOT), engine=engine)
        assert first.run() == Exit.OK and first.result.outcome == "paused"
        assert engine.ups == ["canary:1.16.1"] and engine.canary == "1.16.1"
        assert "rollout promote --stack dev" in first.err.getvalue()  # type: ignore[attr-defined]
        later = action("promote", engine)
        assert later.run() == Exit.OK
    assert engine.ups == ["canary:1.16.1", "1.16.1"]
    assert engine.canary is None and engine.tag == "1.16.1"


def test_pause_then_abort_from_another_run() -> None:
    with served({}) as engine:
        assert rollout("--yes", "--canary", "2", "--pause", "--cwd", str(ROOT), engine=engine).run() == Exit.OK
        assert engine.up_configs[0]["rolling:canaryReplicas"] == "2"
        later = action("abort", engine)
        assert later.run() == Exit.OK and later.result.outcome == "canary removed"
    assert engine.ups == ["canary:1.16.1", "canary:-"]
    assert engine.canary is None and engine.tag == "1.14.2"


@pytest.mark.parametrize("verb", ["promote", "abort"])
def test_promote_or_abort_without_a_canary_changes_nothing(verb: str) -> None:
    engine = FakeEngine()
    command = action(verb, engine)
    assert command.run() == Exit.USAGE
    assert engine.ups == []
    assert f"stack dev has no canary to {verb}" in (command.result.error or "")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--stack", "dev", "--tag", "1.0", "--pause"], "--pause stops after a canary"),
        (["--stack", "dev", "--tag", "1.0", "--canary", "0"], "'0' is not a number of pods from 1 to 100"),
        (["promote", "--stack", "dev", "--tag", "1.0"], "unrecognized arguments: --tag 1.0"),
    ],
)
def test_canary_arguments_are_checked(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(argv)
    assert caught.value.code == 2
    assert says in capsys.readouterr().err


def action(verb: str, engine: Any) -> cli.RolloutRun:
    """`rollout promote|abort --stack dev --yes` on ``engine``."""
    args = cli.parse_args([verb, "--stack", "dev", "--yes", "--cwd", str(ROOT)])
    cluster = FakeCluster(engine=engine)
    return cli.RolloutRun(args, io.StringIO(), io.StringIO(), io.StringIO(), engine=engine, cluster_reader=cluster.read)


@pytest.mark.parametrize(
    ("values", "seconds"),
    [
        ({"canarySeconds": "120"}, 120),  # 10 a second, 1 pod in 4: 300 responses, enough
        ({}, 30),  # local's 15 s would bring about 37 of the 50 minRequests
        ({"canaryReplicas": "3", "replicas": "3"}, 15),
        ({"analysisRate": "1", "minRequests": "10"}, 60),
    ],
)
def test_a_canary_is_analysed_long_enough_to_reach_min_requests(values: dict[str, str], seconds: int) -> None:
    settings = Settings.from_values({"target": "local", "imageTag": "1.0", "canaryTag": "1.1", **values})
    assert cli.canary_window(settings) == seconds


@pytest.mark.parametrize(
    "argv",
    [["promote", "--stack", "dev"], ["--stack", "dev", "promote"], ["--json", "--stack", "dev", "promote", "--yes"]],
)
def test_the_action_word_may_stand_anywhere(argv: list[str]) -> None:
    args = cli.parse_args(argv)
    assert (args.action, args.stack, args.tag) == ("promote", "dev", "")


def test_a_stack_named_like_an_action_is_a_stack() -> None:
    args = cli.parse_args(["--stack", "abort", "--tag", "1.0"])
    assert (args.action, args.stack) == ("ship", "abort")


# Releases: history, undo and promotion, from the stack's update history (tests/unit/test_release_history.py
# has the same history read in detail).
RELEASE_REPO = test_release_history.REPO
PROD_REPO = "localhost:5000/rolling-prod"
DIGEST = "sha256:" + "d" * 64


class ReleasedEngine(FakeEngine):
    """A stack of ``repository`` with an update history, running ``tag``."""

    def __init__(self, entries: list[dict[str, Any]], tag: str, repository: str = RELEASE_REPO, **config: str):
        super().__init__(tag=tag)
        self.entries = entries
        self.repository = repository
        self.extra = config

    def config(self) -> dict[str, str]:
        return {
            **super().config(),
            "rolling:imageRepository": self.repository,
            **{f"rolling:{k}": v for k, v in self.extra.items()},
        }

    def history(self) -> list[dict[str, Any]]:
        return self.entries

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


class FakeRegistry:
    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = dict(digests)
        self.copies: list[tuple[str, str]] = []

    def revision(self, reference: str) -> str | None:
        raise AssertionError("not asked in a promotion")

    def push(self, reference: str, version: str, revision: str) -> None:
        raise AssertionError("a promotion builds nothing")

    def digest(self, reference: str) -> str | None:
        return self.digests.get(reference)

    def copy(self, source: str, destination: str) -> None:
        self.copies.append((source, destination))
        digest = self.digests[source]
        self.digests[destination] = digest
        self.digests[f"{destination.rsplit(':', 1)[0]}@{digest}"] = digest


def release_run(
    argv: list[str], engine: Any, source: Any = None, registry: FakeRegistry | None = None
) -> cli.RolloutRun:
    cluster = FakeCluster(engine=engine)
    cluster.revision_list = history.revisions(test_release_history.REPLICA_SETS)
    return cli.RolloutRun(
        cli.parse_args([*argv, "--cwd", str(ROOT)]),
        io.StringIO(),
        io.StringIO(),
        io.StringIO(),
        engine=engine,
        cluster_reader=cluster.read,
        source_engine=source,
        registries=lambda target: registry or FakeRegistry({}),
    )


def test_history_lists_the_releases_newest_first() -> None:
    command = release_run(
        ["history", "--stack", "dev", "--json"], ReleasedEngine(test_release_history.HISTORY, "1.1.0")
    )
    assert command.run() == Exit.OK
    releases = json.loads(command.result.as_json())["releases"]
    assert [(r["revision"], r["tag"], r["outcome"]) for r in releases] == [
        (4, "1.1.0", "restored"),
        (3, "1.2.0", "rolled back"),
        (2, "1.1.0", "shipped"),
        (1, "1.0.0", "shipped"),
    ]
    table = release_run(["history", "--stack", "dev"], ReleasedEngine(test_release_history.HISTORY, "1.1.0"))
    assert table.run() == Exit.OK
    assert "restored *" in table.out.getvalue()  # type: ignore[attr-defined]


def test_undo_ships_the_release_before_through_the_same_path() -> None:
    engine = ReleasedEngine(test_release_history.HISTORY, "1.1.0")
    command = release_run(["undo", "--stack", "dev", "--yes"], engine)
    assert command.run() == Exit.OK, command.err.getvalue()  # type: ignore[attr-defined]
    assert engine.previewed and engine.up_configs == [
        {
            "rolling:imageTag": "1.0.0",
            "rolling:changeCause": f"undo {RELEASE_REPO}:1.0.0 by {release.who()}; to revision 1",
        }
    ]
    assert f"release      undo {RELEASE_REPO}:1.0.0" in command.err.getvalue()  # type: ignore[attr-defined]


def test_undo_to_a_release_that_never_served_changes_nothing() -> None:
    engine = ReleasedEngine(test_release_history.HISTORY, "1.1.0")
    command = release_run(["undo", "--stack", "dev", "--to", "3", "--yes"], engine)
    assert command.run() == Exit.USAGE
    assert "never served: it was rolled back" in (command.result.error or "")
    assert engine.ups == [] and engine.previewed == []


def shipped_dev() -> ReleasedEngine:
    return ReleasedEngine(test_release_history.HISTORY[-3:], "1.1.0")


def test_promote_copies_the_digest_dev_runs_and_ships_it() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{RELEASE_REPO}@{DIGEST}": DIGEST})
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes"], prod, shipped_dev(), registry)
    assert command.run() == Exit.OK, command.err.getvalue()  # type: ignore[attr-defined]
    assert registry.copies == [(f"{RELEASE_REPO}@{DIGEST}", f"{PROD_REPO}:1.1.0")]
    assert prod.up_configs == [
        {
            "rolling:imageTag": "1.1.0",
            "rolling:imageDigest": DIGEST,
            "rolling:changeCause": f"promote {PROD_REPO}@{DIGEST} by {release.who()}; from dev",
        }
    ]
    assert command.result.new_image == f"{PROD_REPO}@{DIGEST}"


class LockedEngine(ReleasedEngine):
    """A stack whose config cannot be read here: its secrets are under another passphrase than this one's."""

    def config(self) -> dict[str, str]:
        raise EngineError(["config"], 255, "", "error: incorrect passphrase")


def test_promote_needs_only_the_source_stacks_history_not_its_secrets() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{PROD_REPO}@{DIGEST}": DIGEST})
    dev = LockedEngine(test_release_history.HISTORY[-3:], "1.1.0")
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes"], prod, dev, registry)
    assert command.run() == Exit.OK, command.result.error


def test_promote_refuses_between_targets() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO, target="eks", clusterName="x")
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST})
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes"], prod, shipped_dev(), registry)
    assert command.run() == Exit.NOT_PROMOTABLE
    assert "dev runs on local and prod on eks" in (command.result.error or "")


def test_promote_does_not_copy_what_is_there() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{PROD_REPO}@{DIGEST}": DIGEST})
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes"], prod, shipped_dev(), registry)
    assert command.run() == Exit.OK
    assert registry.copies == []


@pytest.mark.parametrize(
    ("source", "soak", "why"),
    [
        (ReleasedEngine(test_release_history.HISTORY, "1.1.0"), "0", "which was rolled back"),
        (shipped_dev(), "604800", "has run"),
        (ReleasedEngine([], "1.1.0"), "0", "it has no release"),
    ],
)
def test_promote_refuses_what_did_not_ship_or_soak(source: ReleasedEngine, soak: str, why: str) -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO, soakSeconds=soak)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST})
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes", "--json"], prod, source, registry)
    assert command.run() == Exit.NOT_PROMOTABLE
    assert why in (command.result.error or "") and "nothing was changed" in (command.result.error or "")
    assert prod.ups == [] and prod.previewed == [] and registry.copies == []


def test_promote_refuses_an_image_gone_from_the_registry() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    command = release_run(["promote", "--from", "dev", "--to", "prod", "--yes"], prod, shipped_dev(), FakeRegistry({}))
    assert command.run() == Exit.NOT_PROMOTABLE
    assert "is not in its registry any more" in (command.result.error or "")


def test_promote_between_one_stack_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["promote", "--from", "dev", "--to", "dev"])


def test_a_tag_ships_on_a_stack_whose_config_pins_a_digest() -> None:
    # prod after a promotion: its config names repository, tag and digest. `--tag` ships that tag, and the
    # digest no longer pins the pod (else the command said "unchanged" and shipped nothing).
    digest = "sha256:" + "a" * 64
    configured = {"imageRepository": ECR, "imageTag": "abc1234", "imageDigest": digest}
    engine = KeepingEngine(f"{ECR}:abc1234@{digest}", configured)
    command = rollout("--yes", "--cwd", str(ROOT), tag="def5678", engine=engine)
    assert command.run() == Exit.OK
    assert command.result.outcome != "unchanged"
    assert command.result.new_image == f"{ECR}:def5678"
    assert engine.up_configs[0]["rolling:imageTag"] == "def5678"
    assert engine.up_configs[0]["rolling:imageDigest"] == ""
