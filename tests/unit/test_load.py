"""The load checker, on responses vegeta really recorded: it passes clean traffic and names every failure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rigs import load

SAMPLES = Path(__file__).parent / "samples"


def recorded(name: str) -> list[load.Response]:
    return load.parse((SAMPLES / f"vegeta-{name}.jsonl").read_text().splitlines())


def test_clean_traffic_passes() -> None:
    responses = recorded("ok")
    assert len(responses) == 5
    assert {r.version for r in responses} == {"1.14.2"}
    assert load.problems(responses, {"1.14.2", "1.16.1"}) == []
    assert load.summary(responses)["failed"] == 0


def test_refused_connections_are_failures() -> None:
    found = load.problems(recorded("ok") + recorded("refused"), {"1.14.2"})
    assert len(found) == 3
    assert all("connection refused" in line for line in found)


def test_non_2xx_is_a_failure() -> None:
    found = load.problems(recorded("404"), {"1.14.2"})
    assert len(found) == 2 and all("status 404" in line for line in found)


def test_a_version_nobody_deployed_is_a_failure() -> None:
    found = load.problems(recorded("ok"), {"1.16.1"})
    assert len(found) == 5 and "answered by version '1.14.2'" in found[0]


def test_the_old_version_after_the_rollout_completed_is_a_failure() -> None:
    responses = recorded("ok")
    cut = responses[2].t
    newer = [r if r.t <= cut else dataclasses.replace(r, version="1.16.1") for r in responses]
    assert load.problems(newer, {"1.14.2", "1.16.1"}, only_after=("1.16.1", cut)) == []
    (late,) = load.problems(responses, {"1.14.2", "1.16.1"}, only_after=("1.16.1", cut))
    assert "2 request(s) after" in late and "'1.14.2'" in late


def test_no_traffic_at_all_is_a_failure() -> None:
    assert load.problems([], {"1.14.2"}) == ["no request was sent"]


def test_a_rollout_without_a_drain_is_caught() -> None:
    """Recorded on the real node: a 3/1/0 rollout with drainSeconds 0, at 60 new connections a second."""
    responses = recorded("rollout-without-drain")
    found = load.problems(responses, {"1.14.2", "1.16.1"})
    failed = sum(r.failed for r in responses)
    assert failed and len(found) == failed
    assert all("connection refused" in line for line in found)
    assert load.summary(responses)["failed"] == failed
