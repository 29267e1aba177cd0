"""Shipping a tag (infra/rollout/command/ship.py): what runs read from the cluster before anything is
previewed, what the release is, and its analysis through the rollout and the bake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from infra import release
from infra.identity import DEPLOYMENT
from infra.kube.status import Health
from infra.rollout.command.run import execute
from infra.rollout.command.ship import running_values
from infra.rollout.exits import Exit
from infra.settings import Settings
from tests.unit.rollout_fakes import (
    OLD_IMAGE,
    FakeCluster,
    FakeEngine,
    ServedEngine,
    said,
    session,
    shipped,
)

ECR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/rolling"


class KeepingEngine(FakeEngine):
    """A stack whose config names no image (it keeps what runs), running ``running``."""

    def __init__(self, running: str, configured: dict[str, str]) -> None:
        super().__init__()
        self.running, self.configured = running, configured

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", **{f"rolling:{k}": v for k, v in self.configured.items()}}

    @property
    def image(self) -> str:
        return self.running if not self.ups else f"{self.running.rsplit(':', 1)[0].split('@')[0]}:{self.tag}"

    def outputs(self) -> dict[str, Any]:
        return {"image": self.running, "deploymentName": DEPLOYMENT} if self.running else {}


def test_with_no_image_in_the_config_the_running_one_is_the_old_one() -> None:
    engine = KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR})
    code, s = shipped(tag="def5678", engine=engine)
    assert code == Exit.OK
    assert (s.report.old_image, s.report.new_image) == (f"{ECR}:abc1234", f"{ECR}:def5678")
    cause = f"ship {ECR}:def5678 by {release.who()}"
    assert engine.up_configs == [{"rolling:imageTag": "def5678", "rolling:changeCause": cause}]
    # Asked again for what runs, it says so and changes nothing.
    code, again = shipped(tag="abc1234", engine=KeepingEngine(f"{ECR}:abc1234", {"imageRepository": ECR}))
    assert (code, again.report.outcome, again.report.changed) == (Exit.OK, "unchanged", False)


def test_a_stack_never_deployed_runs_the_bootstrap_image_named_whole() -> None:
    # The first deploy of a new stack runs the bootstrap image (Docker Hub) while the pipeline ships ECR
    # images: the rollback target is the bootstrap image itself, not <ecr>:<its tag>, which does not exist.
    configured = {"target": "local", "imageRepository": ECR}
    s = session(["--stack", "dev", "--tag", "def5678"], engine=KeepingEngine("", configured))
    old = Settings.from_values(running_values(s, configured))
    assert old.image == "nginxinc/nginx-unprivileged:1.30.6-alpine"


def test_a_stack_never_deployed_is_not_looked_for() -> None:
    engine = KeepingEngine("", {"imageRepository": ECR})
    code, _ = shipped(tag="def5678", engine=engine, cluster=FakeCluster(error=AssertionError("no Deployment")))
    assert code == Exit.OK, "its Deployment is not read: there is none yet"


def test_a_tag_ships_on_a_stack_whose_config_pins_a_digest() -> None:
    # prod after a promotion: its config names repository, tag and digest. `--tag` ships that tag, and the
    # digest no longer pins the pod (else the command said "unchanged" and shipped nothing).
    digest = "sha256:" + "a" * 64
    configured = {"imageRepository": ECR, "imageTag": "abc1234", "imageDigest": digest}
    engine = KeepingEngine(f"{ECR}:abc1234@{digest}", configured)
    code, s = shipped(tag="def5678", engine=engine)
    assert code == Exit.OK and s.report.outcome == "succeeded"
    assert s.report.new_image == f"{ECR}:def5678"
    assert engine.up_configs[0]["rolling:imageTag"] == "def5678"
    assert engine.up_configs[0]["rolling:imageDigest"] == ""


@pytest.mark.parametrize(
    ("error", "message"),
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
def test_a_cluster_that_cannot_be_read_stops_the_command_before_the_preview(error: Exception, message: str) -> None:
    engine = FakeEngine()
    code, s = shipped(engine=engine, cluster=FakeCluster(error=error))
    assert (code, s.report.outcome, s.report.changed) == (Exit.UNREADABLE, "unreadable", False)
    assert s.report.error == message
    assert engine.previewed == [] and engine.ups == [] and engine.refreshed == []
    assert said(s) == f"rollout: {message}\n"


def test_a_kubeconfig_that_cannot_be_read_stops_the_command_too() -> None:
    engine = FakeEngine()
    s = session(["--stack", "dev", "--tag", "1.16.1", "--yes"], engine=engine)

    def reader(_: str | None) -> FakeCluster:
        raise FileNotFoundError(2, "No such file or directory")

    s.cluster_reader = reader
    assert execute(s) == Exit.UNREADABLE
    assert "cannot read the kubeconfig of stack dev's cluster: [Errno 2] No such file or directory" in str(
        s.report.error
    )
    assert engine.previewed == [] and engine.ups == []


def test_a_deployment_the_cluster_does_not_have_is_drift_never_success() -> None:
    # The cluster was made again: the state lists the Deployment, the cluster has none.
    engine = FakeEngine()
    code, s = shipped(tag="1.14.2", engine=engine, cluster=FakeCluster(error=ApiException(404, "Not Found")))
    assert (code, s.report.outcome) == (Exit.DRIFTED, "drifted")
    assert "is not in the cluster" in str(s.report.error)
    assert "`pulumi up --refresh` creates it again; nothing was changed" in str(s.report.error)
    assert engine.previewed == [] and engine.ups == []


def test_unchanged_only_when_the_cluster_runs_the_image_on_every_replica() -> None:
    engine = FakeEngine()
    code, s = shipped(tag="1.14.2", engine=engine)
    assert (code, s.report.outcome) == (Exit.OK, "unchanged")
    assert engine.previewed == []
    code, s = shipped(tag="1.14.2", cluster=FakeCluster(Health(OLD_IMAGE, 3, 1, 3, 1, True, 5)))
    assert (code, s.report.outcome) == (Exit.FAILED, "incomplete")
    assert f"its rollout is not complete ({OLD_IMAGE}: 1/3 ready" in str(s.report.error)


def test_an_image_set_outside_pulumi_is_read_back_then_replaced() -> None:
    # `kubectl set image` ran 1.13.0; the stack's state and config say 1.14.2. Asked for 1.14.2, the command
    # reads the Deployment back (so the preview has something to do) and ships it; 1.13.0 is what a
    # rollback would return to, since it is what served.
    engine = FakeEngine()
    code, s = shipped(
        tag="1.14.2",
        engine=engine,
        cluster=FakeCluster(Health("nginxinc/nginx-unprivileged:1.13.0", 3, 3, 3, 3, True, 3)),
    )
    assert code == Exit.OK
    assert engine.refreshed == [[f"urn::{DEPLOYMENT}"]]
    assert [tag for tag, _ in engine.previewed] == ["1.14.2"] and engine.ups == ["1.14.2"]
    assert s.report.old_image == "nginxinc/nginx-unprivileged:1.13.0"
    assert "the cluster runs nginxinc/nginx-unprivileged:1.13.0, but stack dev's state says" in said(s)


class ConfigAheadEngine(FakeEngine):
    """A stack whose config names a tag never shipped (`pulumi config set` without `up`)."""

    def config(self) -> dict[str, str]:
        return {"rolling:target": "local", "rolling:imageTag": "1.15.0"}


def test_a_tag_in_the_config_never_shipped_is_not_what_runs_nor_drift() -> None:
    engine = ConfigAheadEngine()
    code, s = shipped(engine=engine, cluster=FakeCluster(Health(OLD_IMAGE, 3, 3, 3, 3, True, 3)))
    assert code == Exit.OK
    assert s.report.old_image == OLD_IMAGE, "a rollback returns to what served"
    assert engine.refreshed == [], "the state already says what runs"
    assert "changed outside Pulumi" not in said(s)


# The analysis: the app answers as the version the engine last shipped does (ServedEngine and AppEvidence,
# on a fast clock; test_rollout_analysis.py holds the real prober against a real server).
def test_a_release_that_serves_errors_after_its_rollout_is_aborted_and_rolled_back(tmp_path: Path) -> None:
    record = tmp_path / "analysis.jsonl"
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--record", str(record), engine=engine, cluster=cluster, statuses={"1.16.1": 500})
    assert code == Exit.ABORTED
    # Mitigated first, once: the old image back in the template at once (as `kubectl rollout undo`), the new
    # version's pods out of the Service, then the rollback through Pulumi, which reads the Deployment back
    # before it runs.
    new_image = OLD_IMAGE.replace("1.14.2", "1.16.1")
    assert cluster.changed == [("set image", DEPLOYMENT, f"nginx={OLD_IMAGE}"), ("retire", DEPLOYMENT, new_image)]
    assert f"the pods of {new_image} are out of the Service" in said(s)
    assert engine.refreshed == [[f"urn::{DEPLOYMENT}"]]
    recorded = [json.loads(line) for line in record.read_text().splitlines()]
    assert {(r["version"], r["status"]) for r in recorded} == {("1.16.1", 500)}
    assert engine.ups == ["1.16.1", "1.14.2"], "rolled back through a second update"
    assert s.report.outcome == "aborted" and s.report.rolled_back
    assert s.report.error is not None and s.report.error.startswith("the analysis found 1.16.1:")
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "breach"
    assert evidence["version"] == "1.16.1" and cast(int, evidence["errors"]) >= 10
    assert cast(dict[str, Any], evidence["responses"])["1.16.1"].keys() == {"500"}
    assert "bake" in s.report.durations and "failureToRestored" in s.report.durations


def test_a_healthy_release_passes_its_bake_and_says_so() -> None:
    code, s = shipped(engine=ServedEngine(), statuses={"1.14.2": 500})  # the old version's errors are not the new one's
    assert code == Exit.OK, s.report.analysis
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "pass" and evidence["errors"] == 0
    assert "analysis: judging 1.16.1 for 1s, then until its evidence decides (at most 600s)" in said(s)


def test_a_release_its_evidence_never_decides_is_undecided_and_rolled_back_never_shipped() -> None:
    engine = ServedEngine(minRequests="100000", analysisMaxSeconds="10")
    code, s = shipped(engine=engine)
    assert code == Exit.ABORTED, said(s)
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "undecided"
    assert "its window ended before the evidence decided" in str(evidence["reason"])
    assert s.report.rolled_back and engine.tag == "1.14.2"


def test_a_url_the_analysis_cannot_reach_stops_the_command_before_the_update() -> None:
    engine = ServedEngine()
    code, s = shipped(engine=engine, reachable=False)
    assert code == Exit.NOT_PROBED
    assert engine.ups == [] and engine.commands == []
    assert f"cannot reach stack dev's url {ServedEngine.URL} from here (0 of 6 requests answered" in str(s.report.error)
    assert "rolling:analysis false" in str(s.report.error) and s.report.changed is False


def test_analysis_off_ships_on_readiness_alone() -> None:
    code, s = shipped(engine=ServedEngine(analysis="false"), statuses={"1.16.1": 500})
    assert code == Exit.OK
    assert s.report.analysis is None and "bake" not in s.report.durations


def test_a_release_failing_every_answer_is_stopped_in_its_first_responses_whatever_min_requests() -> None:
    engine = ServedEngine(minRequests="5000")
    code, s = shipped(engine=engine, statuses={"1.16.1": 500})
    assert code == Exit.ABORTED and engine.ups == ["1.16.1", "1.14.2"]
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "breach" and "beyond doubt" in str(evidence["reason"])
    assert cast(int, evidence["requests"]) < 50, "judged on its first responses, not 5,000"
