"""A run holds its stack's lease, and removes a lock a lost run left only when that run is provably gone
(infra/kube/lease.py): the command's side, on fakes of the engine and the cluster."""

from __future__ import annotations

import time

from infra.kube.lease import Holder, LeaseRecord
from infra.rollout.engine import StackBusyError
from infra.rollout.exits import Exit
from tests.unit.rollout_fakes import FakeCluster, FakeEngine, run, said, session, shipped

LOST_RUN = Holder("runner-3", 4242, "https://github.com/o/r/actions/runs/9")


def locked_by(host: str, pid: int, taken: float) -> StackBusyError:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(taken))
    text = (
        "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete "
        f"the lock file with `pulumi cancel`.\n  file:///s/.pulumi/locks/o/rolling/dev/a.json: created by "
        f"runner@{host} (pid {pid}) at {when}"
    )
    return StackBusyError(["up"], 255, "", text)


def test_a_lock_a_lost_run_left_is_removed_and_the_release_goes_on() -> None:
    # The run before this one, on another machine, stopped renewing its lease a minute ago, holding the lock.
    now = time.time()
    engine = FakeEngine()
    engine.locked = locked_by("runner-3", 4300, now - 100)
    cluster = FakeCluster(engine=engine)
    cluster.lost = LeaseRecord(LOST_RUN, now - 120, now - 80, 20)
    code, s = shipped(engine=engine, cluster=cluster)
    assert code == Exit.OK, said(s)
    assert ("cancel", "--yes") in engine.commands and engine.tag == "1.16.1"
    # The lock is met, and removed, by reading the Deployment back before anything is previewed: the preview
    # and its plan start from what the cluster runs.
    assert engine.steps[0] == "refresh" and engine.steps.index("up") > 0, engine.steps
    assert engine.commands.index(("cancel", "--yes")) < engine.commands.index(("adopt pending creates",))
    assert s.report.lost is not None and s.report.lost["run"] == str(LOST_RUN)
    assert s.report.lost["locks"][0]["pid"] == 4300
    assert f"the run that held stack dev before this one is gone: the run that held it ({LOST_RUN})" in said(s)
    assert "removed stack dev's lock (`pulumi cancel`); going on" in said(s)
    assert cluster.held and cluster.held[0].startswith("rolling/dev: pid ")
    assert s.report.as_dict()["lostRun"] == s.report.lost


def test_a_lock_no_lost_run_explains_is_left_alone_and_the_run_is_busy() -> None:
    # A person's `pulumi up` on another machine: nothing says it is gone.
    engine = FakeEngine()
    engine.locked = locked_by("laptop", 77, time.time() - 5)
    code, s = shipped(engine=engine, cluster=FakeCluster(engine=engine))
    assert code == Exit.BUSY, said(s)
    assert ("cancel", "--yes") not in engine.commands and engine.tag == "1.14.2"
    assert s.report.lost is None and "another update holds stack dev" in str(s.report.error)


def test_reading_the_stack_holds_no_lease() -> None:
    for verb in ("status", "history"):
        cluster = FakeCluster(engine=FakeEngine())
        s = session([verb, "--stack", "dev"], cluster=cluster)
        assert run(s) == Exit.OK, said(s)
        assert cluster.held == [], verb
