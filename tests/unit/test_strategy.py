"""Rollout arithmetic, as the Deployment controller resolves it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra import strategy


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (3, 1, 0, (1, 0)),
        (10, "25%", "25%", (3, 2)),
        (3, "10%", "10%", (1, 0)),
        (3, 0, "10%", (0, 1)),
        (3, 0, 5, (0, 3)),
    ],
)
def test_resolution(
    replicas: int, surge: strategy.IntOrPercent, unavailable: strategy.IntOrPercent, expected: tuple[int, int]
) -> None:
    plan = strategy.plan(replicas, surge, unavailable)
    assert (plan.max_surge, plan.max_unavailable) == expected


def test_both_zero_refused() -> None:
    with pytest.raises(strategy.StrategyError, match="both 0"):
        strategy.plan(3, "0%", 0)


values = st.one_of(st.integers(0, 50), st.integers(0, 100).map(lambda n: f"{n}%"))


@given(st.integers(1, 200), values, values)
def test_rollout_can_always_progress(
    replicas: int, surge: strategy.IntOrPercent, unavailable: strategy.IntOrPercent
) -> None:
    try:
        plan = strategy.plan(replicas, surge, unavailable)
    except strategy.StrategyError:
        assert surge in (0, "0%") and unavailable in (0, "0%")
        return
    assert plan.max_surge + plan.max_unavailable >= 1
    assert 0 <= plan.min_ready <= replicas
    assert plan.max_pods >= replicas
    assert 1 <= plan.steps <= replicas
    assert plan.disruption_budget >= 1


def test_parse_int_or_percent() -> None:
    assert strategy.parse_int_or_percent("25%") == "25%"
    assert strategy.parse_int_or_percent(" 2 ") == 2
    assert strategy.parse_int_or_percent(3) == 3
    assert strategy.parse_int_or_percent(3.0) == 3
    for bad in ("-1", "x", True, "2.5", 2.5):
        with pytest.raises(strategy.StrategyError):
            strategy.parse_int_or_percent(bad)
