"""No request fails while the version changes: rollouts on the real node under a fixed load.

Two clients each send LOAD_RATE requests a second to the app's Service, from this machine through the
node, for the whole rollout: vegeta, and rigs.load.PlainLoad, which never re-sends a request (vegeta
re-sends one whose reused connection turned out closed, and so hides what such clients meet). Every
response is recorded (tests/artifacts/traffic-*.jsonl, plain-*.jsonl) and judged by rigs.load. The
failed rollouts and the rollout command's rollback run under the same loads in test_rollout.py and
test_rollout_command.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rigs import load
from tests.e2e.harness import (
    LOAD_RATE,
    RolloutWatch,
    local_stack,
    plain_traffic,
    ready_to_serve,
    rollout_complete,
    traffic,
)
from tests.e2e.images import UNLIMITED

DRAIN_S = 5  # the local target's default drainSeconds
OLD, NEW = "1.14.2", "1.16.1"


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
        with traffic(url, name, keepalive=keepalive) as sent, plain_traffic(url, name, keepalive=keepalive) as plain:
            time.sleep(2)  # traffic before the rollout starts
            with RolloutWatch(stack.namespace) as watcher:
                stack.up()
                complete = rollout_complete(stack)
            time.sleep(DRAIN_S + 3)  # the old pods drain, stop, and traffic goes on
        watcher.save(f"traffic-{name}")

    for responses in (sent.responses, plain.responses):
        assert len(responses) >= LOAD_RATE * 10, load.summary(responses)
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
        with traffic(url, "without-drain", keepalive=False) as sent:
            time.sleep(2)
            stack.up()
            time.sleep(3)
    failed = [r for r in sent.responses if r.failed]
    assert failed, "no request failed without the drain: this load proves nothing; raise LOAD_RATE"
    assert all(r.status == 0 for r in failed), {r.error for r in failed}  # refused or reset, never an answer


def test_without_keepalive_limits_a_client_that_does_not_retry_loses_requests(tmp_path: Path) -> None:
    """The keep-alive load above is one where the limits matter: from an image that ignores them (its own
    nginx configuration), the same rollout stops old pods with keep-alive connections still open, and the
    request a client sends on one at that moment gets no answer. vegeta's client re-sends it; this one,
    like most, does not."""
    with local_stack(tmp_path, imageTag=UNLIMITED) as stack:
        stack.up()
        url = ready_to_serve(stack, UNLIMITED)
        stack.set(imageTag=NEW)
        with plain_traffic(url, "without-keepalive-limits", keepalive=True) as plain:
            time.sleep(2)
            stack.up()
            time.sleep(DRAIN_S + 3)
    failed = [r for r in plain.responses if r.failed]
    assert failed, "no keep-alive request failed without the limits: this load proves nothing"
    assert all(r.status == 0 for r in failed), {r.error for r in failed}  # closed without an answer
