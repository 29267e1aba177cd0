"""The cluster's watchdog over a judged release, from the run's side (infra/rollout/command/guard.py): started
before the release changes anything, told each stage's undoing before the stage starts, cleared once the
release is settled, removed when the run ends; a release it cannot guard is refused before any change; a run
it found lost never reports success."""

from __future__ import annotations

import json

import pytest

from infra.kube import watchdog
from infra.kube.lease import Holder, LeaseRecord
from infra.rollout.command.unfinished import JUDGING, encode
from infra.rollout.exits import Exit
from tests.unit.rollout_fakes import AlbEngine, FakeCluster, FakeHeld, ServedEngine, run, said, session, shipped

NEW = "nginxinc/nginx-unprivileged:1.16.1"
OLD = "nginxinc/nginx-unprivileged:1.14.2"


def told(cluster: FakeCluster) -> list[watchdog.Plan | None]:
    """The plans the run wrote on its lease, in turn (None: cleared)."""
    return [watchdog.Plan.parse(v) if v else None for k, v in cluster.lease_written if k == watchdog.PLAN]


def test_a_canary_release_is_guarded_at_each_stage_and_its_watchdog_removed_at_the_end() -> None:
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster)
    assert code == Exit.OK, said(s)
    (job,) = cluster.jobs
    assert cluster.jobs_removed == [job["metadata"]["name"]]
    plans = told(cluster)
    assert [p.stage if p else None for p in plans] == ["canary", "bake", None]
    canary, bake = plans[0], plans[1]
    assert canary is not None and canary == watchdog.pods_canary(NEW)
    assert bake is not None and bake == watchdog.in_place(NEW, OLD)
    # Each plan was told before its stage's update: the first before any change at all.
    assert "watches this run" in said(s)
    assert s.report.watchdog is not None and s.report.watchdog["job"] == job["metadata"]["name"]


def test_each_share_of_a_weighted_canary_is_guarded_by_its_weight_going_back_to_0() -> None:
    engine = AlbEngine()
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster)
    assert code == Exit.OK, said(s)
    plans = told(cluster)
    stages = [p.stage if p else None for p in plans]
    assert stages == ["canary", "canary", "canary", "bake", None], stages
    assert all(p == watchdog.weighted_canary(NEW, p.steps[0].annotations) for p in plans[:3] if p)  # type: ignore[union-attr]
    # The watchdog's Job runs the image the stack names, pinned by digest.
    assert cluster.jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example/")


def test_a_release_whose_watchdog_never_says_it_watches_is_refused_before_any_change() -> None:
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    cluster.watchdog_starts = False
    cluster.job_trouble = "pod rolling-watchdog-x: ImagePullBackOff: not found"
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.UNGUARDED
    assert s.report.changed is False and "nothing was changed" in said(s)
    assert "did not start watching within 30s (pod rolling-watchdog-x: ImagePullBackOff" in said(s)
    assert "up" not in engine.steps and JUDGING not in engine.stack_tags
    assert len(cluster.jobs_removed) == 1, "the Job that never ran is removed"


def test_a_cluster_that_refuses_the_watchdogs_job_refuses_the_release() -> None:
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)

    def refused(namespace: str, manifest: dict[str, object]) -> None:
        raise RuntimeError("jobs.batch is forbidden")

    cluster.start_job = refused  # type: ignore[method-assign]
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.UNGUARDED and "could not start the cluster's watchdog" in said(s)
    assert "up" not in engine.steps


def test_an_eks_stack_with_no_watchdog_image_is_refused_with_what_to_set() -> None:
    engine = AlbEngine(watchdogImage="")
    code, s = shipped("--canary", "1", engine=engine, cluster=FakeCluster(engine=engine))
    assert code == Exit.USAGE
    assert "rolling:watchdogImage is unset" in said(s) and "rolling:watchdog false" in said(s)
    assert "up" not in engine.steps


@pytest.mark.parametrize("config", [{"watchdog": "false"}, {"analysis": "false"}])
def test_no_watchdog_when_the_stack_asks_for_none_or_nothing_is_judged(config: dict[str, str]) -> None:
    engine = ServedEngine(frozenset(), **config)
    cluster = FakeCluster(engine=engine)
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.OK, said(s)
    assert cluster.jobs == [] and told(cluster) == []


def test_a_run_the_watchdog_found_lost_never_reports_success_and_leaves_the_release_recorded() -> None:
    # The run's renewals did not reach the cluster for watchdogSeconds: the watchdog put the old image back.
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    acted = {"at": "2026-12-07T10:00:00Z", "run": "h/1/x", "why": "no renewal for 21s", "stage": "bake"}
    lease = cluster.lease

    def overtaken_in_its_bake(namespace: str, stack: str, holder: Holder, seconds: int = 20) -> FakeHeld:
        held = lease(namespace, stack, holder, seconds)
        annotate = held.annotate

        def telling(key: str, value: str | None) -> None:
            annotate(key, value)
            if value and watchdog.Plan.parse(value).stage == "bake":
                held.overtaken = json.dumps({**acted, "release": NEW, "did": ["put back"]})

        held.annotate = telling  # type: ignore[method-assign]
        return held

    cluster.lease = overtaken_in_its_bake  # type: ignore[method-assign]
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.UNCONFIRMED, said(s)
    assert "the cluster's watchdog undid the release while this run could not renew its lease" in said(s)
    assert JUDGING in engine.stack_tags, "left for the next run to settle"


def test_the_next_run_says_what_the_watchdog_did_for_the_lost_one() -> None:
    engine = ServedEngine()
    engine.canary = "1.16.1"
    engine.stack_tags = encode("canary", "2026-12-07T10:00:00Z", "ci", NEW, OLD)
    cluster = FakeCluster(engine=engine)
    did = {"at": "2026-12-07T10:00:30Z", "run": "h/1/ci", "why": "lost", "stage": "canary", "release": NEW}
    annotations = {watchdog.ACTED: json.dumps({**did, "did": ["the canary scaled to 0 pods"]})}
    cluster.lost = LeaseRecord(Holder("h", 1, "ci"), 0.0, 10.0, 20, annotations)
    s = session(["abort", "--stack", "dev", "--yes"], engine=engine, cluster=cluster)
    assert run(s) == Exit.OK, said(s)
    assert "the cluster's watchdog acted for it at 2026-12-07T10:00:30Z" in said(s)
    assert s.report.watchdog_acted is not None and s.report.watchdog_acted["did"] == ("the canary scaled to 0 pods",)


def test_status_says_the_watchdog_watches_the_live_run_and_what_it_would_undo() -> None:
    import time

    engine = ServedEngine(tag="1.16.1")
    engine.stack_tags = encode("bake", "2026-12-07T10:00:00Z", "ci", NEW, OLD)
    cluster = FakeCluster(engine=engine)
    now = time.time()
    notes = {
        watchdog.WATCHING: json.dumps({"job": "rolling-watchdog-abc"}),
        watchdog.PLAN: watchdog.in_place(NEW, OLD).text(),
    }
    cluster.current = LeaseRecord(Holder("runner", 7, "ci"), now - 30, now - 1, 20, notes)
    s = session(["status", "--stack", "dev", "--json"], engine=engine, cluster=cluster)
    assert run(s) == Exit.OK
    assert s.report.status is not None
    judge = s.report.status["judge"]
    assert judge["who"] == "run" and judge["watchdog"]["job"] == "rolling-watchdog-abc"
    assert f"put back to {OLD}" in judge["watchdog"]["plan"] and "20s after its last renewal" in judge["then"]


def test_a_run_interrupted_during_its_canary_hands_the_canary_to_the_watchdog_at_once() -> None:
    # Ctrl-C (or a CI job cancelled) while the canary's update runs: the run ends alive, its release unsettled.
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    up = engine.up

    def interrupted(config: dict[str, str], plan: object = None) -> None:
        up(config, plan)  # type: ignore[arg-type]
        if engine.canary is not None:
            raise KeyboardInterrupt

    engine.up = interrupted  # type: ignore[method-assign]
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster)
    assert code == Exit.FAILED and s.report.outcome == "interrupted", said(s)
    # The Job and the lease are left to the watchdog, the lease marked so that it acts now, not in 20 s.
    assert cluster.jobs_removed == [] and cluster.leases[-1].kept
    handover = json.loads(cluster.lease_notes[watchdog.HANDOVER])
    assert handover == {"job": cluster.jobs[0]["metadata"]["name"], "why": "the run was interrupted"}
    assert told(cluster)[-1] == watchdog.pods_canary(NEW), "the canary's plan stays for it to carry out"
    assert "left to the cluster's watchdog" in said(s) and "undoes its canary now" in said(s)
    assert JUDGING in engine.stack_tags, "recorded as unfinished all the same, for the next run"


def test_a_failed_rollback_hands_the_bake_over_and_a_settled_release_removes_the_watchdog() -> None:
    engine = ServedEngine({"1.16.1", "1.14.2"})  # the release fails, and so does the rollback to the old tag
    cluster = FakeCluster(engine=engine)
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.ROLLBACK_FAILED, said(s)
    assert cluster.jobs_removed == [] and cluster.leases[-1].kept
    assert "rollback failed" in json.loads(cluster.lease_notes[watchdog.HANDOVER])["why"]
    # A release that failed and was rolled back is settled: nothing is handed over.
    engine = ServedEngine({"1.16.1"})
    cluster = FakeCluster(engine=engine)
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.ROLLED_BACK, said(s)
    assert len(cluster.jobs_removed) == 1 and not cluster.leases[-1].kept
    assert watchdog.HANDOVER not in cluster.lease_notes


def test_status_says_the_watchdog_has_a_release_its_run_handed_over_though_the_lease_has_not_run_out() -> None:
    import time

    engine = ServedEngine(tag="1.16.1")
    engine.stack_tags = encode("canary", "2026-12-07T10:00:00Z", "ci", NEW, OLD)
    cluster = FakeCluster(engine=engine)
    now = time.time()
    handed = json.dumps({"job": "rolling-watchdog-abc", "why": "the run was interrupted"})
    notes = {watchdog.WATCHING: json.dumps({"job": "rolling-watchdog-abc"}), watchdog.HANDOVER: handed}
    # Another machine's run (its process cannot be looked for here), renewed a second ago: not run out.
    cluster.current = LeaseRecord(Holder("runner", 7, "ci"), now - 30, now - 1, 20, notes)
    s = session(["status", "--stack", "dev", "--json"], engine=engine, cluster=cluster)
    assert run(s) == Exit.OK
    assert s.report.status is not None
    judge = s.report.status["judge"]
    assert judge["who"] == "watchdog" and "undoes it now" in judge["then"], judge
