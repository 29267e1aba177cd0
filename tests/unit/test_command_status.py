"""`rollout status` (infra/rollout/command/status.py): where the app's ready pods run. On eks the pods are asked to
spread over zones, which Fargate does not honour: a person sees where they landed."""

from __future__ import annotations

from kubernetes.client import ApiException

from infra.rollout.exits import Exit
from infra.rollout.report import Report
from tests.unit.rollout_fakes import FakeCluster, FakeEngine, run, session


def status(cluster: FakeCluster, *flags: str) -> tuple[str, Report]:
    engine = FakeEngine(tag="1.16.1")
    cluster.engine = engine
    s = session(["status", "--stack", "dev", *flags], engine=engine, cluster=cluster)
    assert run(s) == Exit.OK
    return s.out.getvalue(), Report.from_json(s.report.as_json())  # type: ignore[attr-defined]


def test_status_says_the_zones_the_ready_pods_run_in() -> None:
    cluster = FakeCluster()
    shown, _ = status(cluster)
    assert "zones: ap-northeast-2a 2, ap-northeast-2c 1 (ready pods)\n" in shown
    _, report = status(cluster, "--json")
    assert report.status is not None and report.status["zones"] == {"ap-northeast-2a": 2, "ap-northeast-2c": 1}


def test_pods_all_in_one_zone_are_said_to_be_one_outage_away() -> None:
    cluster = FakeCluster()
    cluster.pod_zones = {"ap-northeast-2a": 3}
    assert "every ready pod is in one zone, which a zone's outage takes whole" in status(cluster)[0]
    cluster.pod_zones = {"unknown": 3}
    assert "zones: unknown 3 (ready pods)\n" in status(cluster)[0], "no warning without a known zone"


def test_pods_that_cannot_be_read_leave_the_zones_unknown_and_the_status_whole() -> None:
    cluster = FakeCluster()
    cluster.pod_zones = ApiException(status=403, reason="Forbidden")
    shown, _ = status(cluster)
    assert "zones: the pods could not be read" in shown and "stack dev runs" in shown
    _, report = status(cluster, "--json")
    assert report.status is not None and report.status["zones"] is None
