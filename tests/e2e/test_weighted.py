"""The weighted canary (canaryTraffic weights, eks's default) on the real API server, through the same code as
eks: the Ingress and the canary's Service from the program, the load balancer stand-in on this machine
(tools/aws-emulator/alb.py) honouring the forward action a few seconds after each change, the command
reading each weight back through the ELBv2 API. Users' requests go through the stand-in throughout."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from infra.identity import INGRESS
from infra.kube import watchdog
from infra.rollout.exits import Exit
from infra.weights import ACTION_ANNOTATION
from rigs import alb, load
from tests.e2e.harness import ARTIFACTS, LocalStack, api_client, local_stack, plain_traffic, wait_for
from tests.e2e.images import ERRORS, image
from tests.e2e.test_analysis import QUICK, no_canary, pods_of, runner_lost_during
from tests.e2e.test_rollout import ready_pods_by_image
from tests.e2e.test_rollout_command import rollout, tag
from tests.e2e.test_watchdog import BOUND_S, LEASE_S

# The stand-in's delay before a new weight takes effect: the command waits for it before judging a share.
PROPAGATION_S = 2.0
# A lost run's weighted canary is gone within the lease's bound plus the watchdog's wait for the weight.
BOUND = BOUND_S + watchdog.WEIGHT_SETTLES_S


@pytest.fixture
def weighted(tmp_path: Path) -> Iterator[LocalStack]:
    """The app at 1.14.2, 3 replicas, behind the stand-in's load balancer, canaries stepped 10 then 50 %."""
    with local_stack(tmp_path, imageTag="1.14.2", canaryTraffic="weights", canarySteps="10,50") as stack:
        log = ARTIFACTS / f"alb-{stack.namespace}.log"
        with alb.running([stack.namespace], log, propagation_s=PROPAGATION_S) as standin:
            stack.env.update(standin.env())
            stack.up()
            yield stack


def canary_weight_on_ingress(stack: LocalStack) -> int:
    annotations = (
        client.NetworkingV1Api(api_client()).read_namespaced_ingress(INGRESS, stack.namespace).metadata.annotations
    )
    groups = json.loads(annotations[ACTION_ANNOTATION])["forwardConfig"]["targetGroups"]
    return int(next(g["weight"] for g in groups if g["serviceName"].endswith("-canary")))


def test_a_weighted_canary_that_breaches_is_turned_away_and_the_next_release_ships_by_weights(
    weighted: LocalStack,
) -> None:
    weighted.set(**QUICK, canarySeconds=10)
    url = str(weighted.stack.outputs()["url"].value)
    assert url.startswith("http://127.77."), url
    wait_for(lambda: load.fetch_version(url + "/version.txt") == "1.14.2", 15, "the load balancer to answer")
    with plain_traffic(url + "/version.txt", "weighted-breach", keepalive=False) as users:
        code, result, err = rollout(weighted, "--tag", ERRORS, "--canary", "1", "--yes")
    assert code == Exit.ABORTED, err
    # Judged from the weight's update on: the canary may be condemned before the ALB's read-back confirms it.
    assert "the canary of localhost:5000/rolling-app:1.16.1-errors takes 10 % of requests" in err, err
    assert result["analysis"]["state"] == "breach" and result["analysis"]["version"] == ERRORS, result
    wait_for(lambda: pods_of(weighted, image(ERRORS)) == 0 and no_canary(weighted), 30, "the canary to go")
    assert canary_weight_on_ingress(weighted) == 0
    assert tag(weighted) == "1.14.2" and ready_pods_by_image(weighted) == {image("1.14.2"): 3}
    assert set(weighted.preview().change_summary) == {"same"}, "the state is the cluster's"
    # Users met the canary's errors only, within its 10 % share, and every request was answered.
    failed = [r for r in users.responses if r.failed]
    assert {(r.status, r.version) for r in failed} <= {(500, ERRORS)}, failed[:5]
    assert len(failed) < len(users.responses) / 10, (len(failed), len(users.responses))

    # The release after the breach: Pulumi takes back the weight the breach set through the Kubernetes API
    # (the Ingress's patchForce), steps the canary through 10 and 50 %, and ships.
    with plain_traffic(url + "/version.txt", "weighted-after-breach", keepalive=False) as users:
        code, result, err = rollout(weighted, "--tag", "1.16.1", "--canary", "1", "--yes")
    assert code == Exit.OK, err
    assert result["outcome"] == "succeeded" and result["newImage"] == image("1.16.1"), result
    for share in (10, 50):
        assert f"the ALB gives the canary {share} % of requests" in err, err
        assert f"the canary passed at {share} %" in err, err
    wait_for(lambda: no_canary(weighted) and pods_of(weighted, image("1.14.2")) == 0, 30, "the canary to go")
    assert ready_pods_by_image(weighted) == {image("1.16.1"): 3}
    assert tag(weighted) == "1.16.1" and canary_weight_on_ingress(weighted) == 0
    assert set(weighted.preview().change_summary) == {"same"}
    failed = [r for r in users.responses if r.failed]
    assert not failed, failed[:5]
    assert {r.version for r in users.responses} == {"1.14.2", "1.16.1"}


def test_a_runner_lost_during_a_weighted_canary_has_the_watchdog_turn_it_away_on_the_ingress(
    weighted: LocalStack,
) -> None:
    # The watchdog's plan for a weighted canary (infra/kube/watchdog.py weighted_canary): its weight to 0 on
    # the Ingress, time for the load balancer to apply it, then its pods away; so users never meet a canary
    # pod that is going. Run in the cluster's Job against the stand-in, which applies the weight 2 s late.
    weighted.set(**QUICK, canarySeconds=120, watchdogSeconds=LEASE_S)
    url = str(weighted.stack.outputs()["url"].value)
    wait_for(lambda: load.fetch_version(url + "/version.txt") == "1.14.2", 15, "the load balancer to answer")
    with plain_traffic(url + "/version.txt", "weighted-watchdog", keepalive=False) as users:
        killed = runner_lost_during(
            weighted, "--tag", "1.16.1", "--canary", "1", reached=lambda: canary_weight_on_ingress(weighted) == 10
        )
        wait_for(lambda: pods_of(weighted, image("1.16.1")) == 0, BOUND + 30, "the watchdog to take the canary away")
        gone = time.time()
    assert canary_weight_on_ingress(weighted) == 0
    assert gone - killed < BOUND, f"the canary went {gone - killed:.1f}s after the runner was lost"
    assert "1.16.1" in {r.version for r in users.responses}, "the canary had its share before the runner was lost"
    assert [r for r in users.responses if r.failed] == []
    said = watchdog.Acted.parse(weighted.deployment().metadata.annotations[watchdog.WATCHING])
    assert said is not None and said.failed is None and "weight set to 0" in said.did[0], said
    # The next run settles the stack through Pulumi, which takes the Ingress's weight back as its own.
    code, result, err = rollout(weighted, "abort", "--yes")
    assert code == Exit.OK and result["outcome"] == "unfinished aborted", err
    wait_for(lambda: no_canary(weighted), 30, "the canary's Deployment to go")
    assert tag(weighted) == "1.14.2" and ready_pods_by_image(weighted) == {image("1.14.2"): 3}
    assert set(weighted.preview().change_summary) == {"same"}
