"""A release under judgement is recorded in the stack (its tags) while a run judges it; a run that ends before
the judgement does leaves it there, and the next run on the stack aborts it before anything else."""

from __future__ import annotations

import _thread
import json
import threading
import time

import pytest

from infra.kube.lease import Holder, LeaseRecord
from infra.rollout.command.outcome import Outcome
from infra.rollout.command.unfinished import IMAGE, JUDGING, MOST_CHARS, PREVIOUS, decode, encode
from infra.rollout.engine import EngineError
from infra.rollout.exits import Exit
from infra.rollout.report import Report
from tests.unit.rollout_fakes import FakeCluster, FakeEngine, ServedEngine, run, said, session, shipped

OLD = "nginxinc/nginx-unprivileged:1.14.2"
NEW = "nginxinc/nginx-unprivileged:1.16.1"
RECORD = [f"tag {JUDGING}"]
REMOVED = [f"untag {JUDGING}"]


def left(stage: str, image: str = NEW, previous: str = OLD) -> dict[str, str]:
    """The tags a run that died at ``stage`` leaves."""
    return encode(stage, "2026-12-05T10:00:00Z", "ci (run 7)", image, previous)


def after_a_dead_run(stage: str, failing: frozenset[str] = frozenset()) -> ServedEngine:
    """A stack a run left at ``stage`` of 1.16.1 (over 1.14.2): its canary, or its Deployment, runs it."""
    engine = ServedEngine(failing)
    if stage == "canary":
        engine.canary = "1.16.1"
    else:
        engine.tag = "1.16.1"
    engine.stack_tags = left(stage)
    return engine


def test_a_release_is_recorded_before_its_update_and_removed_once_it_shipped() -> None:
    engine = ServedEngine()
    code, _ = shipped(engine=engine)
    assert code == Exit.OK
    assert engine.steps == [*RECORD, "up", *REMOVED]
    assert engine.stack_tags == {}


def test_a_canary_is_recorded_as_such_then_as_a_bake_when_the_rest_rolls() -> None:
    engine = ServedEngine()
    seen: list[str] = []
    set_tag = engine.set_tag

    def recording(name: str, value: str) -> None:
        set_tag(name, value)
        if name == JUDGING:
            seen.append(json.loads(value)["stage"])

    engine.set_tag = recording  # type: ignore[method-assign]
    code, _ = shipped("--canary", "1", engine=engine)
    assert code == Exit.OK
    assert seen == ["canary", "bake"]
    assert engine.steps == [*RECORD, "up", f"tag {JUDGING}", "up", *REMOVED]


def test_a_run_that_ends_before_its_judgement_leaves_the_release_recorded() -> None:
    engine = ServedEngine(bakeSeconds="600")
    s = session(["--stack", "dev", "--tag", "1.16.1", "--yes"], engine=engine)
    interrupt = threading.Timer(0.3, _thread.interrupt_main)  # Ctrl-C, during the bake (12 s here)
    interrupt.start()
    try:
        code = run(s)
    finally:
        interrupt.cancel()
    assert code == Exit.FAILED and s.report.outcome == "interrupted"
    record = json.loads(engine.stack_tags[JUDGING])
    assert (record["stage"], record["image"], record["previous"]) == ("bake", NEW, OLD)
    assert "stays recorded as unfinished" in said(s)


@pytest.mark.parametrize("statuses", [{"1.16.1": 500}, {}])
def test_a_release_judged_either_way_leaves_no_record(statuses: dict[str, int]) -> None:
    engine = ServedEngine()
    code, _ = shipped(engine=engine, statuses=statuses)
    assert code in (Exit.OK, Exit.ABORTED)
    assert engine.stack_tags == {}


def test_a_run_that_changes_nothing_writes_no_record() -> None:
    engine = FakeEngine()
    s = session(["--stack", "dev", "--tag", "1.16.1"], engine=engine)  # no --yes, no terminal: not confirmed
    assert run(s) == Exit.NOT_CONFIRMED
    assert [step for step in engine.steps if "tag" in step] == []


def test_the_next_run_puts_back_what_ran_before_a_release_cut_short_in_its_bake_then_ships() -> None:
    engine = ServedEngine()
    engine.tag = "1.16.1"  # the dead run's update went through
    engine.stack_tags = left("bake")
    code, s = shipped(tag="1.17.0", engine=engine)
    assert code == Exit.OK, said(s)
    assert engine.ups == ["1.14.2", "1.17.0"], "the unfinished release gave way first"
    assert engine.up_configs[0]["rolling:canaryTag"] == ""
    assert "rollback" in engine.up_configs[0]["rolling:changeCause"]
    steps = [step for step in engine.steps if step != "refresh"]  # the Deployment read back first
    assert steps[: steps.index("up") + 2] == ["up", *REMOVED]
    assert engine.refreshed, "the Deployment was read back first: the dead run may have been cut short"
    assert "1.16.1 was in its bake since 2026-12-05T10:00:00Z (by ci (run 7))" in said(s)
    assert s.report.unfinished is not None and s.report.unfinished["image"] == NEW
    assert engine.stack_tags == {}


def test_a_rerun_of_the_same_release_judges_it_from_the_start() -> None:
    engine = after_a_dead_run("bake")
    code, s = shipped(tag="1.16.1", engine=engine)
    assert code == Exit.OK, said(s)
    assert engine.ups == ["1.14.2", "1.16.1"]
    assert s.report.analysis is not None and s.report.analysis["state"] == "pass"


def test_the_next_run_removes_a_canary_left_unjudged() -> None:
    engine = after_a_dead_run("canary")
    code, s = shipped(tag="1.17.0", engine=engine)
    assert code == Exit.OK, said(s)
    assert engine.up_configs[0] == {"rolling:canaryTag": ""}
    assert engine.ups[0] == "canary:-" and engine.ups[-1] == "1.17.0"


def test_abort_aborts_an_unfinished_release_and_nothing_else() -> None:
    engine = FakeEngine(tag="1.16.1")
    engine.stack_tags = left("bake")
    s = session(["abort", "--stack", "dev", "--yes", "--json"], engine=engine)
    assert run(s) == Exit.OK
    assert s.report.outcome == Outcome.UNFINISHED_ABORTED.word and s.report.changed is True
    assert engine.ups == ["1.14.2"] and engine.stack_tags == {}


def test_a_run_that_changes_nothing_more_after_the_abort_still_says_it_changed_the_stack() -> None:
    engine = after_a_dead_run("bake")
    code, s = shipped(tag="1.14.2", engine=engine)  # what the abort put back
    assert code == Exit.OK and s.report.outcome == "unchanged"
    assert s.report.changed is True
    assert "nothing was changed" not in said(s)


def test_an_abort_that_fails_keeps_the_record_and_goes_no_further() -> None:
    engine = after_a_dead_run("bake", failing=frozenset({"1.14.2"}))
    code, s = shipped(tag="1.17.0", engine=engine)
    assert code == Exit.ROLLBACK_FAILED, said(s)
    assert engine.ups == ["1.14.2"], "nothing shipped on top of it"
    assert JUDGING in engine.stack_tags


def test_a_record_without_what_it_restores_is_refused_with_what_to_do() -> None:
    engine = ServedEngine()
    engine.stack_tags = {
        JUDGING: json.dumps({"stage": "bake", "since": "2026-12-05T10:00:00Z", "by": "ci", "image": NEW})
    }
    code, s = shipped(tag="1.17.0", engine=engine)
    assert code == Exit.USAGE and engine.ups == []
    assert f"pulumi stack tag rm {JUDGING} --stack dev" in said(s)


def test_tags_that_cannot_be_read_stop_the_run_before_anything() -> None:
    engine = ServedEngine()

    def unreadable() -> dict[str, str]:
        raise EngineError(["stack", "tag", "ls"], 255, "", "error: AccessDenied")

    engine.tags = unreadable  # type: ignore[method-assign]
    code, s = shipped(engine=engine)
    assert code == Exit.FAILED and engine.ups == []
    assert "could not read stack dev's tags" in said(s) and "nothing was changed" in said(s)


def test_status_shows_what_runs_and_the_unfinished_release() -> None:
    engine = FakeEngine(tag="1.16.1")
    engine.stack_tags = left("bake")
    s = session(["status", "--stack", "dev"], engine=engine)
    assert run(s) == Exit.OK
    shown = s.out.getvalue()  # type: ignore[attr-defined]
    assert f"stack dev runs {NEW}: 3/3 ready" in shown
    assert "unfinished: nginxinc/nginx-unprivileged:1.16.1 was in its bake" in shown
    assert "judged by nobody: it goes on serving, unjudged, until the next `rollout` on dev aborts it" in shown
    assert "`rollout abort --stack dev` aborts it now" in shown
    assert engine.ups == [] and engine.stack_tags, "status changes nothing"
    s = session(["status", "--stack", "dev", "--json"], engine=engine)
    run(s)
    report = Report.from_json(s.report.as_json())
    assert s.out.getvalue() == ""  # type: ignore[attr-defined]
    judge = {
        "who": "nobody",
        "holder": None,
        "since": None,
        "renewed": None,
        "watchdog": None,
        "then": "it goes on serving unjudged until the next `rollout` on the stack aborts it",
    }
    zones = {"ap-northeast-2a": 2, "ap-northeast-2c": 1}
    shape = {"deployed": True, "image": NEW, "replicas": 3, "ready": 3, "complete": True, "zones": zones}
    shape["canary"] = None
    assert report.status == {**shape, "judge": judge}
    assert report.unfinished is not None and report.unfinished["stage"] == "bake"


def test_status_says_a_live_run_judges_the_release_and_since_when() -> None:
    # A run on another machine holds the stack's lease and renewed it a second ago: it judges the release.
    engine = FakeEngine(tag="1.16.1")
    engine.stack_tags = left("bake")
    cluster = FakeCluster(engine=engine)
    now = time.time()
    runner = Holder("runner-3", 4242, "https://github.com/o/r/actions/runs/9")
    cluster.current = LeaseRecord(runner, now - 30, now - 1, 20)
    s = session(["status", "--stack", "dev"], engine=engine, cluster=cluster)
    assert run(s) == Exit.OK
    shown = s.out.getvalue()  # type: ignore[attr-defined]
    assert "unfinished: nginxinc/nginx-unprivileged:1.16.1 is in its bake since" in shown
    assert f"judged now by the run {runner}, since " in shown and "should that run be lost" in shown
    # Once its lease has run out, nobody judges it.
    cluster.current = LeaseRecord(runner, now - 90, now - 60, 20)
    s = session(["status", "--stack", "dev", "--json"], engine=engine, cluster=cluster)
    run(s)
    assert s.report.status is not None and s.report.status["judge"]["who"] == "nobody"
    assert s.report.status["judge"]["holder"] == str(runner)


def test_history_does_not_count_an_unjudged_release_as_shipped() -> None:
    engine = FakeEngine(tag="1.16.1")
    engine.stack_tags = left("bake")
    ended = {"kind": "update", "result": "succeeded", "startTime": "2026-12-05T10:00:00.000Z"}
    engine.history = lambda: [  # type: ignore[method-assign]
        {**ended, "version": 2, "message": f"ship {NEW} by ci", "config": {"rolling:imageTag": {"value": "1.16.1"}}},
        {**ended, "version": 1, "message": f"ship {OLD} by ci", "config": {"rolling:imageTag": {"value": "1.14.2"}}},
    ]
    s = session(["history", "--stack", "dev", "--json"], engine=engine)
    assert run(s) == Exit.OK
    assert s.report.releases is not None and s.report.releases[0]["outcome"] == "unjudged"


def test_a_long_record_keeps_its_images_apart_each_tag_within_the_length_tags_are_held_to() -> None:
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rolling-prod@sha256:" + "d" * 64
    tags = encode("bake", "2026-12-05T10:00:00Z", "x" * 300, ecr, ecr.replace("d", "e"))
    assert list(tags) == [PREVIOUS, IMAGE, JUDGING], "the record's own tag last"
    assert all(len(value.encode()) <= MOST_CHARS for value in tags.values())
    assert json.loads(tags[JUDGING])["by"].endswith("...")
    found = decode(tags, "prod")
    assert found is not None and (found.image, found.previous) == (ecr, ecr.replace("d", "e"))


def test_a_long_record_is_written_and_removed_whole() -> None:
    engine = ServedEngine()
    long_by = "someone-with-a-very-long-name " * 8
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("infra.release.who", lambda: long_by)
        code, _ = shipped("--canary", "1", engine=engine)
    assert code == Exit.OK
    assert [step for step in engine.steps if "tag" in step] == [
        f"tag {PREVIOUS}",
        f"tag {IMAGE}",
        f"tag {JUDGING}",
        f"tag {JUDGING}",
        f"untag {JUDGING}",
        f"untag {PREVIOUS}",
        f"untag {IMAGE}",
    ]
    assert engine.stack_tags == {}


def test_status_names_the_canary_the_state_holds_though_the_checkout_does_not() -> None:
    engine = FakeEngine()
    engine.stack_tags = left("canary")
    engine.outputs = lambda: {"deploymentName": "nginx-deployment", "image": OLD, "canaryImage": NEW}  # type: ignore[method-assign]
    s = session(["status", "--stack", "dev"], engine=engine)
    assert run(s) == Exit.OK
    assert s.report.status is not None and s.report.status["canary"] == NEW
    assert f"canary: {NEW}, unjudged" in s.out.getvalue()  # type: ignore[attr-defined]
