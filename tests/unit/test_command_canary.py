"""A canary (infra/rollout/command/canary.py, promote.py, abort.py): N pods judged beside the old ones,
then the rest rolled in the same run, or a pause and `promote` or `abort` from another run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from infra import release
from infra.identity import CANARY_DEPLOYMENT
from infra.rollout.command.judging import canary_window
from infra.rollout.exits import Exit
from infra.settings import Settings
from tests.unit.rollout_fakes import FakeCluster, FakeEngine, ServedEngine, run, said, session, shipped


def test_a_canary_that_passes_is_promoted_in_the_same_run(tmp_path: Path) -> None:
    record = tmp_path / "analysis.jsonl"
    engine = ServedEngine()
    code, s = shipped("--canary", "1", "--record", str(record), engine=engine)
    assert code == Exit.OK
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
    assert {"canary", "canaryAnalysis", "up", "bake"} <= set(s.report.durations)
    assert "Canary plan for stack dev" in said(s)


def test_a_canary_whose_users_bring_min_requests_is_judged_for_canary_seconds_not_the_probes_window() -> None:
    # One probe request a second, a canary of 1 pod in 4: the probe alone would need 60 s for 10 answers.
    # Users' requests (40 a second here) bring them at once: the window ends at canarySeconds.
    engine = ServedEngine(analysisRate="1", canarySeconds="2")
    code, s = shipped("--canary", "1", engine=engine)
    assert code == Exit.OK
    assert "baking 1.16.1 for 60s, or from 2s once 10 responses of it are in" in said(s)
    passed = said(s).split("analysis: the canary passed: 1.16.1: ", 1)[1]
    assert 10 <= int(passed.split(" requests", 1)[0]) < 100, passed[:80]


def test_a_bad_canary_is_removed_and_the_deployment_never_touched() -> None:
    engine = ServedEngine()
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster, statuses={"1.16.1": 500})
    assert code == Exit.ABORTED
    # Mitigated first: the canary scaled to no pods the moment the analysis found it failing, then removed
    # through Pulumi; the Deployment itself never touched.
    assert cluster.changed == [("scale", CANARY_DEPLOYMENT, "0")]
    assert "failureToMitigated" in s.report.durations
    assert said(s).index("canary scaled to 0 pods") < said(s).index("removing the canary;")
    assert engine.ups == ["canary:1.16.1", "canary:-"]
    assert engine.tag == "1.14.2" and engine.canary is None
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "breach" and evidence["version"] == "1.16.1"
    # The old version's answers in the window were all good, and are not the canary's.
    responses = cast(dict[str, Any], evidence["responses"])
    assert responses["1.14.2"].keys() == {"200"} and responses["1.16.1"].keys() == {"500"}


def test_a_canary_needs_the_analysis() -> None:
    engine = ServedEngine(analysis="false")
    code, s = shipped("--canary", "1", engine=engine)
    assert code == Exit.USAGE and engine.ups == []
    assert "a canary is judged by the analysis" in str(s.report.error)


def action(verb: str, engine: Any) -> Exit:
    return run(session([verb, "--stack", "dev", "--yes"], engine=engine))


def test_pause_then_promote_from_another_run() -> None:
    engine = ServedEngine()
    code, first = shipped("--canary", "1", "--pause", engine=engine)
    assert code == Exit.OK and first.report.outcome == "paused"
    assert engine.ups == ["canary:1.16.1"] and engine.canary == "1.16.1"
    assert "rollout promote --stack dev" in said(first)
    assert action("promote", engine) == Exit.OK
    assert engine.ups == ["canary:1.16.1", "1.16.1"]
    assert engine.canary is None and engine.tag == "1.16.1"


def test_pause_then_abort_from_another_run() -> None:
    engine = ServedEngine()
    assert shipped("--canary", "2", "--pause", engine=engine)[0] == Exit.OK
    assert engine.up_configs[0]["rolling:canaryReplicas"] == "2"
    later = session(["abort", "--stack", "dev", "--yes"], engine=engine)
    assert run(later) == Exit.OK and later.report.outcome == "canary removed"
    assert engine.ups == ["canary:1.16.1", "canary:-"]
    assert engine.canary is None and engine.tag == "1.14.2"


@pytest.mark.parametrize("verb", ["promote", "abort"])
def test_promote_or_abort_without_a_canary_changes_nothing(verb: str) -> None:
    engine = FakeEngine()
    s = session([verb, "--stack", "dev", "--yes"], engine=engine)
    assert run(s) == Exit.USAGE
    assert engine.ups == []
    assert f"stack dev has no canary to {verb}" in str(s.report.error) and s.report.changed is False


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
    assert canary_window(settings) == seconds
