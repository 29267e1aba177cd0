"""A canary (infra/rollout/command/canary.py, promote.py, abort.py): N pods judged beside the old ones,
then the rest rolled in the same run, or a pause and `promote` or `abort` from another run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from infra import release
from infra.identity import CANARY_DEPLOYMENT
from infra.rollout.command.judging import thresholds
from infra.rollout.exits import Exit
from infra.rollout.review import canary_window_text
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


def test_a_canary_is_judged_for_canary_seconds_then_only_until_its_evidence_clears_it() -> None:
    # Answers at 40 a second, one in four the canary's: 10 a second, which clear it in about 11 s; canarySeconds
    # is 2. The window ends at the first look that finds it cleared, long before its longest (600 s).
    engine = ServedEngine(canarySeconds="2")
    code, s = shipped("--canary", "1", engine=engine)
    assert code == Exit.OK
    assert "judging 1.16.1 for 2s, then until its evidence decides (at most 600s)" in said(s)
    passed = said(s).split("analysis: the canary passed: 1.16.1: ", 1)[1]
    assert 112 <= int(passed.split(" requests", 1)[0]) < 140, passed[:80]
    assert s.report.durations["canaryAnalysis"] < 60


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


@pytest.mark.parametrize("undecided", ["abort", "pause"])
def test_a_canary_the_evidence_cannot_decide_is_removed_or_paused_by_the_setting_never_shipped(undecided: str) -> None:
    engine = ServedEngine(minRequests="100000", analysisMaxSeconds="10", analysisUndecided=undecided)
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster)
    evidence = s.report.analysis
    assert evidence is not None and evidence["state"] == "undecided", evidence
    assert engine.tag == "1.14.2", "never shipped"
    if undecided == "abort":
        assert code == Exit.ABORTED and engine.canary is None
        assert engine.ups == ["canary:1.16.1", "canary:-"]
        return
    # Paused: the canary left serving, untouched (no mitigation), for a person; the run says how to go on,
    # and a later promote rolls the rest, judged.
    assert (code, s.report.outcome) == (Exit.UNDECIDED, "paused undecided"), said(s)
    assert engine.ups == ["canary:1.16.1"] and engine.canary == "1.16.1" and cluster.changed == []
    assert "could not decide on the canary" in said(s) and "rollout promote --stack dev" in said(s)
    engine.extra["minRequests"] = "10"  # the person decides; the rest is judged as any rollout is
    assert action("promote", engine) == Exit.OK
    assert engine.canary is None and engine.tag == "1.16.1"


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
    ("values", "stages"),
    [
        ({"target": "local"}, 2),  # the canary pod, then the rollout
        ({"target": "eks"}, 3),  # 5 %, 25 %, then the rollout
        ({"target": "eks", "canarySteps": "1,5,25,50"}, 5),
        ({"target": "eks", "canaryTraffic": "pods"}, 2),
    ],
)
def test_a_release_shares_its_error_rates_among_the_stages_it_is_judged_in(values: dict[str, str], stages: int) -> None:
    settings = Settings.from_values({"imageTag": "1.0", "canaryTag": "1.1", **values})
    limits = thresholds(settings)
    assert limits.stages == stages
    # Each stage runs two tests (errors, latency): each may condemn a good release at most 1 % / (2 x stages).
    error_test = limits.error_test()
    assert error_test is not None and error_test.alpha == pytest.approx(0.01 / (2 * stages))
    assert limits.latency_test().alpha == pytest.approx(0.01 / (2 * stages))


def test_the_plan_says_how_long_a_canary_is_judged() -> None:
    settings = Settings.from_values({"target": "local", "imageTag": "1.0", "canaryTag": "1.1"})
    assert canary_window_text(settings) == "15s, then until its evidence decides (at most 600s)"
    longer = Settings.from_values({"target": "local", "imageTag": "1.0", "canarySeconds": "900"})
    assert canary_window_text(longer) == "900s, then until its evidence decides (at most 900s)"
