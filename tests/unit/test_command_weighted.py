"""A canary by the ALB's weights (infra/rollout/command/weighted.py): its pods at weight 0 first, then each
share of canarySteps through Pulumi, read back from the ALB before it is judged; a breach turns the canary's
weight to 0 on the Ingress at once; the share goes back to 0 before any canary is removed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.identity import INGRESS
from infra.rollout import listener
from infra.rollout.command.judging import thresholds
from infra.rollout.command.unfinished import encode
from infra.rollout.exits import Exit
from infra.settings import Settings
from infra.weights import ACTION_ANNOTATION
from tests.unit.rollout_fakes import OLD_IMAGE, ROOT, AlbEngine, FakeAlb, FakeCluster, run, said, session, shipped


def gave_back_then_removed(engine: AlbEngine) -> bool:
    """Whether the canary's share went back to 0 in an update of its own, before the one that removed it."""
    configs = engine.up_configs
    removed = next(i for i, c in enumerate(configs) if c.get("rolling:canaryTag") == "")
    return configs[removed - 1] == {"rolling:canaryWeight": "0"} and "rolling:canaryWeight" not in configs[removed]


def test_a_canary_that_passes_takes_each_share_in_turn_then_none_before_the_rest_rolls() -> None:
    engine = AlbEngine()
    code, s = shipped("--canary", "1", engine=engine)
    assert code == Exit.OK, said(s)
    # Its pods first, at weight 0 (no request before its readiness gates open), then 5 %, 25 %, then 0 again
    # before the update that rolls the rest removes it.
    assert engine.up_configs[0] == {"rolling:canaryTag": "1.16.1", "rolling:canaryReplicas": "1"}
    assert engine.weights == [5, 25, 0]
    assert gave_back_then_removed(engine)
    assert engine.up_configs[-1]["rolling:imageTag"] == "1.16.1"
    assert engine.up_configs[-1]["rolling:canaryTag"] == ""
    assert engine.canary is None and engine.tag == "1.16.1" and engine.applied == 0
    # Each share was read back from the ALB before it was judged.
    text = said(s)
    assert text.index("the ALB gives the canary 5 % of requests") < text.index("the canary passed at 5 %")
    assert text.index("the canary passed at 5 %") < text.index("the ALB gives the canary 25 % of requests")
    assert "behind a target group of its own, at weight 0 until ready; then 5 %, 25 % of requests" in text


def test_a_bad_canary_is_turned_away_on_the_ingress_at_once_then_removed() -> None:
    engine = AlbEngine()
    cluster = FakeCluster(engine=engine)
    code, s = shipped("--canary", "1", engine=engine, cluster=cluster, statuses={"1.16.1": 500})
    assert code == Exit.ABORTED, said(s)
    # Mitigated first: the canary's weight to 0 on the Ingress (the ALB applied it), no pod scaled away.
    (change,) = cluster.changed
    kind, name, annotation = change
    assert (kind, name) == ("annotate ingress", INGRESS)
    key, _, value = annotation.partition("=")
    groups = json.loads(value)["forwardConfig"]["targetGroups"]
    assert key == ACTION_ANNOTATION and [g["weight"] for g in groups] == [100, 0]
    assert "failureToMitigated" in s.report.durations
    # Judged at its first share and no further; then Pulumi is brought back to weight 0 and the canary goes.
    assert engine.weights == [5, 0] and gave_back_then_removed(engine)
    assert engine.canary is None and engine.tag == "1.14.2", "the Deployment was never touched"
    assert s.report.analysis is not None and s.report.analysis["state"] == "breach"


def test_a_weight_the_alb_never_applies_is_never_judged_and_the_canary_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The load balancer controller is down: the Ingress says 5 %, the ALB still sends the canary nothing.
    monkeypatch.setattr(listener, "APPLY_WITHIN_S", 9.0)
    engine = AlbEngine(stuck=True)
    code, s = shipped("--canary", "1", engine=engine)
    assert code == Exit.ROLLED_BACK, said(s)
    assert "the ALB did not give the canary 5 % of requests within 9s" in str(s.report.error)
    assert "aws-load-balancer-controller" in str(s.report.error)
    assert "the canary passed" not in said(s)
    assert engine.canary is None and engine.tag == "1.14.2"


def later(verb: str, engine: AlbEngine) -> Any:
    return session([verb, "--stack", "dev", "--yes"], engine=engine, metrics_runner=lambda region: FakeAlb(engine))


def test_a_paused_canary_keeps_its_share_and_gives_it_back_before_promote_rolls_the_rest() -> None:
    engine = AlbEngine()
    code, first = shipped("--canary", "1", "--pause", engine=engine)
    assert code == Exit.OK and first.report.outcome == "paused"
    assert engine.weights == [5, 25] and engine.canary == "1.16.1"
    assert run(later("promote", engine)) == Exit.OK
    assert engine.weights == [5, 25, 0] and gave_back_then_removed(engine)
    assert engine.canary is None and engine.tag == "1.16.1"


def test_abort_gives_the_canarys_share_back_before_it_removes_it() -> None:
    engine = AlbEngine()
    assert shipped("--canary", "1", "--pause", engine=engine)[0] == Exit.OK
    s = later("abort", engine)
    assert run(s) == Exit.OK and s.report.outcome == "canary removed"
    assert engine.weights == [5, 25, 0] and gave_back_then_removed(engine)
    assert engine.up_configs[-1] == {"rolling:canaryTag": ""}
    assert engine.canary is None and engine.tag == "1.14.2"


def test_a_weighted_canary_a_dead_run_left_gives_its_share_back_before_the_next_run_removes_it() -> None:
    # The runner died while the canary had 25 % of requests: the next run on the stack finds the record.
    engine = AlbEngine()
    engine.canary, engine.weight, engine.applied = "1.16.1", 25, 25
    engine.stack_tags = encode(
        "canary", "2026-12-05T10:00:00Z", "ci (run 7)", OLD_IMAGE.replace("1.14.2", "1.16.1"), OLD_IMAGE
    )
    code, s = shipped(tag="1.17.0", engine=engine)
    assert code == Exit.OK, said(s)
    assert engine.up_configs[:2] == [{"rolling:canaryWeight": "0"}, {"rolling:canaryTag": ""}]
    assert engine.applied == 0 and engine.tag == "1.17.0" and engine.stack_tags == {}


def test_each_share_is_judged_as_a_stage_of_its_own_as_the_docs_say() -> None:
    settings = Settings.from_values({"target": "eks", "imageTag": "1.14.2", "canaryTag": "1.16.1"})
    assert thresholds(settings).stages == 3
    docs = " ".join((ROOT / "docs" / "rollouts.md").read_text().split())
    assert "each share is a stage of its own: `canarySeconds` (120 s), then until its evidence decides" in docs
