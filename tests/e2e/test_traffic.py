"""No request fails while the version changes: rollouts on the real node under a fixed load.

vegeta sends RATE requests a second to the app's Service, from this machine through the node, for the
whole rollout; every response is recorded (tests/artifacts/traffic-*.jsonl) and judged by infra.load.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra import load
from tests.e2e.harness import ARTIFACTS, LocalStack, RolloutWatch, local_stack, service_url, wait_for
from tests.e2e.images import MISSING, NEVER_READY
from tests.e2e.test_rollout_command import rollout

# At least 50 requests a second, as the project promises; every loop below is bounded by DURATION_S.
RATE = 60
DURATION_S = 150
DRAIN_S = 5  # the local target's default drainSeconds
OLD, NEW = "1.14.2", "1.16.1"


def ready_to_serve(stack: LocalStack) -> str:
    url = service_url(stack, "/version.txt")
    # kube-proxy programs a Service's endpoints up to a second after its pods are Ready.
    wait_for(lambda: load.parse_version(url) == OLD, 15, "the Service to route")
    return url


def traffic(stack: LocalStack, url: str, name: str, keepalive: bool) -> load.Load:
    return load.Load(url, RATE, DURATION_S, ARTIFACTS / f"traffic-{name}.jsonl", keepalive=keepalive)


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connections", "keep-alive"])
@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [(3, 1, 0), (5, 2, 1), (6, "25%", "25%")])
def test_no_request_fails_through_a_rollout(
    tmp_path: Path, replicas: int, surge: int | str, unavailable: int | str, keepalive: bool
) -> None:
    name = f"{replicas}-{surge}-{unavailable}-{'keepalive' if keepalive else 'new'}".replace("%", "pct")
    with local_stack(tmp_path, imageTag=OLD, replicas=replicas, maxSurge=surge, maxUnavailable=unavailable) as stack:
        stack.up()
        url = ready_to_serve(stack)
        stack.set(imageTag=NEW)
        with traffic(stack, url, name, keepalive) as sent:
            time.sleep(2)  # traffic before the rollout starts
            with RolloutWatch(stack.namespace) as watcher:
                stack.up()
                complete = time.time()  # `up` returns once the new ReplicaSet is complete
            time.sleep(DRAIN_S + 3)  # the old pods drain, stop, and traffic goes on
        watcher.save(f"traffic-{name}")

    responses = sent.responses
    assert len(responses) >= RATE * 10, load.summary(responses)
    # After the old pods' drain has ended, nothing may name the old version.
    assert load.problems(responses, {OLD, NEW}, only_after=(NEW, complete + DRAIN_S + 2)) == []
    versions = load.summary(responses)["by_version"]
    assert isinstance(versions, dict) and versions.get(OLD) and versions.get(NEW), versions


def test_without_the_drain_the_same_load_loses_requests(tmp_path: Path) -> None:
    """The load above is one where the naive way fails: the same rollout with drainSeconds 0 (no preStop,
    as a plain deployment.yaml has it) sends requests to pods that have stopped."""
    with local_stack(tmp_path, imageTag=OLD, drainSeconds=0) as stack:
        stack.up()
        url = ready_to_serve(stack)
        stack.set(imageTag=NEW)
        with traffic(stack, url, "without-drain", keepalive=False) as sent:
            time.sleep(2)
            stack.up()
            time.sleep(3)
    failed = [r for r in sent.responses if r.failed]
    assert failed, "no request failed without the drain: this load proves nothing; raise RATE"
    assert all(r.status == 0 for r in failed), {r.error for r in failed}  # refused or reset, never an answer


def test_a_rollout_that_cannot_succeed_fails_no_request(tmp_path: Path) -> None:
    import pulumi.automation as auto

    with local_stack(tmp_path, imageTag=OLD, progressDeadlineSeconds=10) as stack:
        stack.up()
        url = ready_to_serve(stack)
        stack.set(imageTag=NEVER_READY)
        with traffic(stack, url, "never-ready", keepalive=False) as sent, pytest.raises(auto.CommandError):
            stack.up()
    assert load.problems(sent.responses, {OLD}) == []


def test_the_rollout_commands_rollback_fails_no_request(deployed: LocalStack) -> None:
    deployed.set(progressDeadlineSeconds=10)
    deployed.up()
    url = ready_to_serve(deployed)
    with traffic(deployed, url, "rollback", keepalive=True) as sent:
        code, result, err = rollout(deployed, "--tag", MISSING, "--yes")
    assert code == 3 and result["rolledBack"] is True, err
    assert load.problems(sent.responses, {OLD}) == []
