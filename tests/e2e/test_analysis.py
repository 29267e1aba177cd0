"""The analysis on the real node: a release whose pods get Ready but serve errors, or slowly, is aborted and
rolled back while the old version keeps serving; a healthy release at a low request rate is not."""

from __future__ import annotations

import json
import time
from pathlib import Path

from infra.rollout.exits import Exit
from rigs import load
from tests.e2e.harness import ARTIFACTS, LocalStack, plain_traffic, ready_to_serve
from tests.e2e.images import ERRORS, SLOW, image
from tests.e2e.test_rollout import ready_pods_by_image
from tests.e2e.test_rollout_command import rollout, tag

# Enough evidence for the tests' short rollouts; the defaults (50 responses, 10 a second) are for users.
QUICK = {"analysisRate": 20, "minRequests": 20}


def record(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"analysis-{name}.jsonl"


def recorded(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_restored(stack: LocalStack) -> None:
    """The old version on every replica, the stack's config and state as before the release."""
    assert tag(stack) == "1.14.2"
    assert ready_pods_by_image(stack) == {image("1.14.2"): 3}
    assert stack.preview().change_summary == {"same": 9}


def test_a_release_that_serves_errors_is_aborted_and_the_old_version_serves_throughout(deployed: LocalStack) -> None:
    deployed.set(**QUICK)
    url = ready_to_serve(deployed)
    # Users beside the analysis: a client that never re-sends a request, a new connection each.
    with plain_traffic(url, "analysis-errors", keepalive=False) as users:
        code, result, err = rollout(deployed, "--tag", ERRORS, "--yes", "--record", str(record("errors")))
        returned = time.time()
        time.sleep(2)
    assert code == Exit.ABORTED, err
    assert result["outcome"] == "aborted" and result["rolledBack"] is True
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and evidence["version"] == ERRORS, evidence
    assert "maxErrorRatio" in evidence["reason"]
    # The evidence names each version's answers: the old version's were all good.
    assert set(evidence["responses"]["1.14.2"]) == {"200"}, evidence
    assert set(evidence["responses"][ERRORS]) == {"500"}, evidence
    assert "analysis: " in err  # the live view said how it went
    # What users got: every error came from the new version's pods, none from the old ones, and no
    # request went unanswered; once the command returned, the old version alone answered.
    failed = [r for r in users.responses if r.failed]
    assert failed, "users met the bad release (the analysis needs evidence)"
    assert {(r.status, r.version) for r in failed} == {(500, ERRORS)}
    assert load.problems([r for r in users.responses if r.t > returned], {"1.14.2"}) == []
    assert_restored(deployed)
    # The prober's own record says the same, request by request.
    samples = recorded(record("errors"))
    assert {(s["version"], s["status"]) for s in samples} == {("1.14.2", 200), (ERRORS, 500)}


def test_a_slow_release_is_aborted_on_latency(deployed: LocalStack) -> None:
    deployed.set(**QUICK)
    code, result, err = rollout(deployed, "--tag", SLOW, "--yes", "--record", str(record("slow")))
    assert code == Exit.ABORTED, err
    evidence = result["analysis"]
    assert evidence["state"] == "breach" and "maxP99Ms 1000" in evidence["reason"], evidence
    assert evidence["p99Ms"] > 1000 and evidence["errors"] == 0, evidence
    assert_restored(deployed)


def test_a_healthy_release_at_a_low_rate_is_not_aborted(deployed: LocalStack) -> None:
    # One request a second: too few responses to judge by (minRequests 50), which is never a reason to
    # roll back.
    deployed.set(analysisRate=1, bakeSeconds=3)
    code, result, err = rollout(deployed, "--tag", "1.16.1", "--yes")
    assert code == Exit.OK, err
    evidence = result["analysis"]
    assert evidence["state"] == "insufficient" and evidence["errors"] == 0, evidence
    assert "not enough evidence" in err
    assert ready_pods_by_image(deployed) == {image("1.16.1"): 3}
