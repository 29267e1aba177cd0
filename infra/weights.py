"""A canary's share of users' requests on eks (canaryTraffic weights): the ALB listener's forward action that
weighs the app's target group against the canary's, as the program declares it on the Ingress and as the
ALB reports it back. No Pulumi and no AWS SDK here: the program, the rollout command and the tests share it.

The load balancer controller turns the Ingress's annotation ``alb.ingress.kubernetes.io/actions.weighted``
into the listener's default action when the Ingress's default backend names ``weighted`` with the port
``use-annotation`` (its docs/guide/ingress/annotations.md, "actions"; pkg/ingress/model_build_listener.go
builds the default actions through the same backend builder as the rules'). It names each target group
``k8s-<namespace>-<service>-<hash>``, both names stripped of everything but letters and digits and cut to 8
characters, then a hash (pkg/ingress/model_build_target_group.go, buildTargetGroupName): how a target group
read back from the ALB is told to be the app's or the canary's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.identity import CANARY_SERVICE, SERVICE

ACTION = "weighted"
ACTION_ANNOTATION = f"alb.ingress.kubernetes.io/actions.{ACTION}"
USE_ANNOTATION = "use-annotation"
# The Services' port the target groups send to (the app's Service and the canary's name it alike).
PORT = "http"


class WeightsError(Exception):
    """The ALB's weights cannot be read, or are not what the Ingress asks for."""


def forward_action(canary_weight: int, stable: str = SERVICE, canary: str = CANARY_SERVICE) -> str:
    """The forward action's JSON: both target groups always, the canary's at weight 0 when it takes nothing,
    so its target group, and the readiness gates of the pods behind it, exist before its first pod. No
    stickiness: a user's requests follow the weights, so the canary's share is a share of requests."""
    groups = [
        {"serviceName": stable, "servicePort": PORT, "weight": 100 - canary_weight},
        {"serviceName": canary, "servicePort": PORT, "weight": canary_weight},
    ]
    forward = {"targetGroups": groups, "targetGroupStickinessConfig": {"enabled": False}}
    return json.dumps({"type": "forward", "forwardConfig": forward}, separators=(",", ":"))


_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def name_part(name: str) -> str:
    """A namespace's or Service's name as the controller writes it into a target group's name."""
    return _NOT_ALNUM.sub("", name)[:8]


def service_of(target_group_name: str) -> str | None:
    """Which of the app's Services (SERVICE or CANARY_SERVICE) a target group the controller made serves;
    None for another's."""
    parts = target_group_name.split("-")
    if len(parts) != 4 or parts[0] != "k8s":
        return None
    return next((service for service in (SERVICE, CANARY_SERVICE) if parts[2] == name_part(service)), None)


@dataclass(frozen=True)
class Listener:
    """One listener's default action as the ALB reports it: ``weights``, the percent of requests each of the
    app's Services gets (None: the listener forwards nowhere, such as HTTP redirecting to HTTPS)."""

    port: int
    weights: Mapping[str, float] | None


def listener(port: int, rules: Iterable[Mapping[str, Any]], groups: Mapping[str, str]) -> Listener:
    """The default rule of a listener (DescribeRules' ``Rules``), its target groups' ARNs named by ``groups``
    (ARN -> target group name, from DescribeTargetGroups)."""
    for rule in rules:
        if not rule.get("IsDefault"):
            continue
        for action in rule.get("Actions") or []:
            if action.get("Type") != "forward":
                continue
            weighted = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
                {"TargetGroupArn": action.get("TargetGroupArn"), "Weight": 1}
            ]
            total = sum(float(g.get("Weight", 1)) for g in weighted) or 1.0
            shares: dict[str, float] = {}
            for group in weighted:
                service = service_of(groups.get(str(group.get("TargetGroupArn")), ""))
                if service is None:
                    raise WeightsError(f"listener {port} forwards to {group.get('TargetGroupArn')}, not the app's")
                shares[service] = shares.get(service, 0.0) + 100 * float(group.get("Weight", 1)) / total
            return Listener(port, shares)
    return Listener(port, None)


def canary_share(listeners: Iterable[Listener]) -> float | None:
    """The canary's share of requests, in percent, when every forwarding listener gives it the same; None
    when they differ (the controller is between two of them) or none forwards."""
    shares = {round(lst.weights.get(CANARY_SERVICE, 0.0), 3) for lst in listeners if lst.weights is not None}
    return shares.pop() if len(shares) == 1 else None
