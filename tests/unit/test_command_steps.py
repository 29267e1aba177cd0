"""The steps every changing action shares (infra/rollout/command/steps.py): confirmation, the preview and
its plan, the update and its wait, the config put back on a busy stack, and the rollback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra import release
from infra.identity import DEPLOYMENT
from infra.kube.status import Health
from infra.rollout.analysis import Judgement, State
from infra.rollout.command.judging import Judging
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import UnconfirmedError
from infra.rollout.command.steps import IncompleteRolloutError, Steps, image_config
from infra.rollout.engine import StackBusyError
from infra.rollout.exits import Exit
from infra.settings import Settings
from tests.unit.rollout_fakes import (
    OLD_IMAGE,
    TTY,
    FakeCluster,
    FakeEngine,
    FakeView,
    said,
    session,
    shipped,
)
from tests.unit.yaml_reading import engine_reads, plain_scalars

ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling"
NEW = Settings.from_values({"target": "local", "imageTag": "1.16.1"})


def steps(*argv: str, stdin: object = None) -> Steps:
    s = session(["--stack", "dev", "--tag", "1.16.1", *argv], stdin=stdin)  # type: ignore[arg-type]
    return Steps(s, Judging(s))


def test_no_terminal_and_no_yes_changes_nothing() -> None:
    with pytest.raises(Stop) as stopped:
        steps().confirm()
    assert stopped.value.outcome.exit == Exit.NOT_CONFIRMED and "pass --yes" in stopped.value.message


@pytest.mark.parametrize(("answer", "confirmed"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)])
def test_terminal_confirmation(answer: str, confirmed: bool) -> None:
    asking = steps(stdin=TTY(answer))
    if confirmed:
        asking.confirm()
    else:
        with pytest.raises(Stop) as stopped:
            asking.confirm()
        assert stopped.value.outcome.exit == Exit.NOT_CONFIRMED
    assert "Roll dev to" in said(asking.session)


def test_yes_skips_the_question() -> None:
    # With a terminal that would say no: --yes neither asks nor reads it.
    terminal = TTY("n\n")
    unattended = steps("--yes", stdin=terminal)
    unattended.confirm()
    assert "Roll dev to" not in said(unattended.session)
    assert terminal.readline() == "n\n", "the answer was left unread"


def test_an_update_that_returns_before_the_rollout_completes_is_waited_for() -> None:
    waiting = steps("--yes")
    view = FakeView(None)
    waiting.update(NEW, view, None, {"rolling:imageTag": "1.16.1"})
    assert view.waited == [NEW.await_timeout_seconds]
    engine = waiting.session.engine
    assert engine.up_configs[-1] == {"rolling:imageTag": "1.16.1"}  # type: ignore[attr-defined]
    # What the wait found is the run's failure, whatever its words; a cluster that cannot be read after an
    # update that succeeded is no failure of the release, and is said apart.
    with pytest.raises(IncompleteRolloutError) as incomplete:
        waiting.update(NEW, FakeView("pod p: ImagePullBackOff"), None, {})
    assert str(incomplete.value) == "pod p: ImagePullBackOff"
    with pytest.raises(UnconfirmedError, match="the update succeeded, but the cluster could not be read"):
        waiting.update(NEW, FakeView(ConnectionError("refused")), None, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failing", "flags", "exit_code", "ups"),
    [
        ({"1.16.1"}, [], Exit.ROLLED_BACK, ["1.16.1", "1.14.2"]),
        ({"1.16.1"}, ["--no-rollback"], Exit.FAILED, ["1.16.1"]),
        ({"1.16.1", "1.14.2"}, [], Exit.ROLLBACK_FAILED, ["1.16.1", "1.14.2"]),
    ],
)
def test_rollback_flow(failing: set[str], flags: list[str], exit_code: Exit, ups: list[str]) -> None:
    engine = FakeEngine(failing)
    code, s = shipped(*flags, engine=engine)
    assert code == exit_code
    assert engine.ups == ups
    assert s.report.rolled_back is (exit_code == Exit.ROLLED_BACK)
    if exit_code == Exit.ROLLED_BACK:
        assert s.report.restored == f"{OLD_IMAGE}: 3/3 ready, 3 updated, 3 available"
        assert "rollback" in s.report.durations
        cause = engine.up_configs[1]["rolling:changeCause"]
        assert cause.startswith(f"rollback {OLD_IMAGE} by {release.who()}; nginxinc/nginx-unprivileged:1.16.1 rolled")


def test_rollback_that_leaves_an_unhealthy_deployment_is_a_failure() -> None:
    unhealthy = FakeCluster(Health(OLD_IMAGE, 3, 2, 3, 2, True, 3))
    code, s = shipped(engine=FakeEngine({"1.16.1"}), cluster=unhealthy)
    assert code == Exit.ROLLBACK_FAILED
    assert "not healthy" in (s.report.error or "")


def test_run_rolls_back_a_rollout_that_does_not_complete_after_the_update() -> None:
    # Its update returns, the live view finds the rollout incomplete, the command rolls back through a
    # second update and confirms the old version on every replica.
    engine = FakeEngine()
    cluster = FakeCluster(problems=["the rollout did not complete within 70s"])
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.ROLLED_BACK
    assert engine.ups == ["1.16.1", "1.14.2"]
    assert s.report.error == "the rollout did not complete within 70s"
    assert [len(view.waited) for view in cluster.views] == [1, 1], "the rollback is waited for too"
    assert set(s.report.durations) == {"config", "outputs", "look", "preview", "up", "rollback", "failureToRestored"}


def test_an_update_failed_by_the_program_before_the_watch_saw_it_still_times_the_restore() -> None:
    # The program's own wait (or the engine) can find the failure first: the update fails with no verdict
    # from the live view. The time to restore runs from when the command learned it, not from nowhere.
    cluster = FakeCluster()
    code, s = shipped(engine=FakeEngine({"1.16.1"}), cluster=cluster)
    assert code == Exit.ROLLED_BACK
    verdict = cluster.views[0].verdict
    assert verdict is not None and verdict.at is None, "the watch decided nothing"
    assert 0 <= s.report.durations["failureToRestored"] <= s.report.durations["rollback"] + 1


def test_a_definitive_failure_interrupts_the_engine_once_and_the_rollback_refreshes_first() -> None:
    engine = FakeEngine({"1.16.1"})
    cluster = FakeCluster(finding="pod x: the registry has no nginx:1.16.1")
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.ROLLED_BACK
    assert engine.interrupts == 1, "a second finding must not signal the engine again"
    assert s.report.error == "pod x: the registry has no nginx:1.16.1", "the watch's reason, not the engine's"
    assert engine.refreshed == [[f"urn::{DEPLOYMENT}"]], "the state reads the Deployment back before the rollback"
    assert "failureToRestored" in s.report.durations


def test_a_cluster_lost_after_the_update_is_unconfirmed_never_success() -> None:
    engine = FakeEngine()
    cluster = FakeCluster(problems=[ConnectionRefusedError(111, "Connection refused")])
    code, s = shipped(engine=engine, cluster=cluster)
    assert (code, s.report.outcome, s.report.changed) == (Exit.UNCONFIRMED, "unconfirmed", True)
    assert engine.ups == ["1.16.1"], "nothing is rolled back on a rollout not known to have failed"
    assert "could not be read after it to confirm the rollout: [Errno 111] Connection refused" in str(s.report.error)


def test_the_update_runs_under_the_plan_its_preview_saved() -> None:
    engine = FakeEngine()
    code, _ = shipped(engine=engine)
    assert code == Exit.OK
    assert [tag for tag, _ in engine.previewed] == ["1.16.1"]
    assert engine.plans == [engine.previewed[0][1]]
    plan = engine.plans[0]
    assert plan is not None and not plan.exists(), "the plan is a temporary file"


def test_a_sha_shaped_tag_reaches_the_preview_as_a_string() -> None:
    # A short SHA such as 12345e7 is a number in YAML 1.2, which the engine reads: the preview's config file
    # must quote it, or the preview and the update ship different tags and the plan is violated.
    engine = FakeEngine()
    code, _ = shipped(tag="12345e7", engine=engine)
    assert code == Exit.OK
    (text,) = engine.preview_texts
    assert plain_scalars(text) == []
    assert engine_reads(text, "rolling:imageTag") == "12345e7"


class BusyEngine(FakeEngine):
    """Another update holds the stack when this one starts."""

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        super().up(config, plan)
        raise StackBusyError(["up"], 255, "", "error: the stack is currently locked by 1 lock(s)")


class KeepingBusyEngine(BusyEngine):
    """A busy stack whose config names no tag (it keeps what runs)."""

    def config(self) -> dict[str, str]:
        return {k: v for k, v in super().config().items() if k != "rolling:imageTag"}


@pytest.mark.parametrize(
    ("engine", "restored"),
    [
        (KeepingBusyEngine, ("config", "rm", "rolling:imageTag")),
        (BusyEngine, ("config", "set", "rolling:imageTag", "1.14.2", "--plaintext")),
    ],
)
def test_a_busy_stack_gets_its_image_config_back(engine: type[BusyEngine], restored: tuple[str, ...]) -> None:
    # `up --config` wrote the new tag before the lock refused the update: the config is put back as it was
    # (no tag: the stack keeps what runs), nothing was changed, and nothing is rolled back.
    busy = engine()
    code, s = shipped(engine=busy)
    assert code == Exit.BUSY
    assert busy.commands == [restored, ("config", "rm", "rolling:changeCause")]
    assert busy.ups == ["1.16.1"], "no rollback"
    assert s.report.error == "another update holds stack dev; nothing was changed" and s.report.changed is False


def test_an_image_from_another_repository_is_named_whole_in_the_config() -> None:
    # A rollback to the bootstrap image (Docker Hub) of a stack that ships ECR images names its repository.
    old = Settings.from_values({"target": "local", "imageRepository": "nginxinc/nginx-unprivileged", "imageTag": "1"})
    assert image_config(old, {"target": "local", "imageRepository": ECR}) == {
        "rolling:imageTag": "1",
        "rolling:imageRepository": "nginxinc/nginx-unprivileged",
    }
    pinned = {"target": "local", "imageTag": "1", "imageDigest": "sha256:" + "a" * 64}
    assert image_config(Settings.from_values({"target": "local", "imageTag": "2"}), pinned) == {
        "rolling:imageTag": "2",
        "rolling:imageDigest": "",
    }, "an image without a digest must not keep the last one's"


class UpgradedClusterEngine(FakeEngine):
    """A stack on a cluster EKS upgraded past the settings: the program refuses every preview (infra/stack.py)."""

    def preview(self, config_file: Path, plan: Path) -> list[Any]:
        from infra.eks_versions import ahead_of_settings
        from infra.rollout.engine import EngineError

        refused = ahead_of_settings("1.35", "1.36", "rolling")
        raise EngineError(["preview"], 255, "", f"error: Program failed with an unhandled exception:\n{refused}")


def test_a_cluster_eks_upgraded_itself_stops_the_release_with_its_own_exit_code() -> None:
    engine = UpgradedClusterEngine()
    code, s = shipped(engine=engine)
    assert code == Exit.CLUSTER_AHEAD, said(s)
    assert s.report.changed is False and "nothing was changed" in said(s)
    assert "preview refused" in said(s) and "runs Kubernetes 1.36" in said(s)
    assert "up" not in engine.steps


class OtherThreadGate:
    """A gate whose analysis finds a breach on a thread of its own (as Gate's watcher does) while the run's
    thread is judging: ``breach`` set at once, its ``on_breach`` (the mitigation, then the interrupt) run there."""

    def __init__(self, on_breach: Any) -> None:
        self.on_breach = on_breach
        self.breach: Judgement | None = None
        self.found = threading.Event()

    def find(self) -> None:
        self.breach = Judgement(State.BREACH, "1.16.1", 5, 5, 1.0, "5 of its 5 answers were errors", {}, 1.0)
        self.found.set()
        self.on_breach("the analysis found it")


def test_the_recovery_starts_once_the_breachs_mitigation_and_interrupt_are_done() -> None:
    # The run's thread sees the breach at once and recovers; the analysis's thread is still mitigating (a
    # weighted canary's weight waited for from the load balancer: seconds, or ten and more on AWS) and then
    # interrupts the engine. Were the recovery's updates to start meanwhile, that interrupt would cut the first
    # of them short (seen through the load balancer stand-in with a 10-s delay: "rollback failed" every time).
    s = steps("--yes")
    order: list[str] = []
    s.session.engine.interrupt = lambda: order.append("interrupt")  # type: ignore[method-assign]
    made: list[OtherThreadGate] = []

    @contextmanager
    def gate(url: str, settings: Settings, on_breach: Any, *, pause_undecided: bool = False) -> Iterator[Any]:
        made.append(OtherThreadGate(on_breach))
        yield made[0]

    s.judging.gate = gate  # type: ignore[method-assign]

    def judge(found: Any) -> Judgement:
        threading.Thread(target=found.find, daemon=True).start()
        found.found.wait(5)
        breach: Judgement | None = found.breach
        assert breach is not None
        return breach

    def recover(error: str, breach: Any, prepared: Any) -> Stop:
        order.append("recover")
        return Stop(Outcome.ABORTED, error)

    def mitigate() -> None:
        time.sleep(0.3)
        order.append("mitigated")

    with s.prepared(NEW, config={"rolling:imageTag": "1.16.1"}, plan_text="", canary=True, ask=False) as prepared:
        prepared.url = "http://app.example"
        with pytest.raises(Stop):
            s.judged_update(prepared, NEW, {}, stage="canary", judge=judge, recover=recover, mitigate=mitigate)
    assert order == ["mitigated", "interrupt", "recover"]
