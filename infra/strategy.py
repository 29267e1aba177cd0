"""Rolling-update arithmetic, as the Deployment controller does it (no Pulumi here)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_PERCENT_RE = re.compile(r"(\d+)%")
_INT_RE = re.compile(r"-?\d+")

IntOrPercent = int | str


class StrategyError(ValueError):
    """A surge or unavailability value Kubernetes would not accept."""


def parse_int_or_percent(value: object) -> IntOrPercent:
    """An ``int`` ≥ 0 or a string ``'N%'``, from config text or a number."""
    if isinstance(value, bool):
        raise StrategyError(f"'{value}' is not a whole number or a percentage")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # numbers cross the engine's wire as floats
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if _PERCENT_RE.fullmatch(text):
            return text
        if not _INT_RE.fullmatch(text):
            raise StrategyError(f"'{value}' is not a whole number or a percentage such as 25%")
        number = int(text)
    if number < 0:
        raise StrategyError(f"'{value}' is negative; use 0 or more")
    return number


def resolve(value: IntOrPercent, replicas: int, *, round_up: bool) -> int:
    """Pods that ``value`` stands for at ``replicas``; percentages round as the controller rounds them."""
    if isinstance(value, int):
        return value
    percent = int(value[:-1])
    exact = percent * replicas / 100
    return math.ceil(exact) if round_up else math.floor(exact)


@dataclass(frozen=True)
class RollingUpdate:
    """What a rolling update of ``replicas`` pods does, with surge and unavailability resolved."""

    replicas: int
    max_surge: int
    max_unavailable: int

    @property
    def min_ready(self) -> int:
        """Ready pods the controller keeps at every moment of the rollout."""
        return max(self.replicas - self.max_unavailable, 0)

    @property
    def max_pods(self) -> int:
        """Pods the controller asks for at once during the rollout. Pods shutting down come on top, and
        for a moment so can an old pod its ReplicaSet has been told to remove but has not yet deleted."""
        return self.replicas + self.max_surge

    @property
    def steps(self) -> int:
        """Waves of new pods the rollout needs when every pod gets ready in the same time."""
        return math.ceil(self.replicas / (self.max_surge + self.max_unavailable))

    @property
    def disruption_budget(self) -> int:
        """maxUnavailable for the PodDisruptionBudget: what a rollout may take down, and never 0,
        since a budget of 0 would block node drains and Fargate's own patching for good."""
        return max(self.max_unavailable, 1)


def plan(replicas: int, max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> RollingUpdate:
    """Resolve a RollingUpdate strategy the way the Deployment controller does."""
    if replicas < 1:
        raise StrategyError(f"replicas must be at least 1, not {replicas}")
    if isinstance(max_unavailable, str) and int(max_unavailable[:-1]) > 100:
        raise StrategyError(f"maxUnavailable '{max_unavailable}' is over 100%")
    if max_surge in (0, "0%") and max_unavailable in (0, "0%"):
        raise StrategyError("maxSurge and maxUnavailable are both 0, so no pod could ever be replaced")
    surge = resolve(max_surge, replicas, round_up=True)
    unavailable = min(resolve(max_unavailable, replicas, round_up=False), replicas)
    if surge == 0 and unavailable == 0:
        # The controller's own rule: progress must be possible.
        unavailable = 1
    return RollingUpdate(replicas, surge, unavailable)
