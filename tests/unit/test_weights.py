"""The ALB's weights as the Ingress declares them and as the ALB reports them back (infra/weights.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from infra import weights
from infra.rollout import listener as listener_reads
from infra.weights import Listener, WeightsError, canary_share, listener

APP_TG = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/k8s-rolling-nginx-6b1f3e9a2c/1a2b"
CANARY_TG = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/k8s-rolling-nginxcan-0c9d8e7f6a/3c4d"
GROUPS = {APP_TG: "k8s-rolling-nginx-6b1f3e9a2c", CANARY_TG: "k8s-rolling-nginxcan-0c9d8e7f6a"}


def default_rule(*actions: Mapping[str, object]) -> list[dict[str, object]]:
    # DescribeRules lists the listener's rules, its default one (IsDefault) among them.
    return [{"RuleArn": "arn:rule/1", "Priority": "default", "IsDefault": True, "Actions": list(actions)}]


def forward(app: int, canary: int) -> dict[str, object]:
    groups = [{"TargetGroupArn": APP_TG, "Weight": app}, {"TargetGroupArn": CANARY_TG, "Weight": canary}]
    return {"Type": "forward", "Order": 1, "ForwardConfig": {"TargetGroups": groups}}


def test_the_forward_action_weighs_the_apps_service_against_the_canarys() -> None:
    action = json.loads(weights.forward_action(25))
    assert action["type"] == "forward"
    assert action["forwardConfig"]["targetGroups"] == [
        {"serviceName": "nginx", "servicePort": "http", "weight": 75},
        {"serviceName": "nginx-canary", "servicePort": "http", "weight": 25},
    ]
    assert action["forwardConfig"]["targetGroupStickinessConfig"] == {"enabled": False}


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("k8s-rolling-nginx-6b1f3e9a2c", "nginx"),
        ("k8s-rolling-nginxcan-0c9d8e7f6a", "nginx-canary"),
        # Namespaces and Services are cut to 8 letters or digits in the name.
        ("k8s-rollingw-nginx-6b1f3e9a2c", "nginx"),
        ("k8s-rolling-other-6b1f3e9a2c", None),
        ("my-own-target-group", None),
    ],
)
def test_a_target_group_is_told_by_the_name_the_controller_gives_it(name: str, service: str | None) -> None:
    assert weights.service_of(name) == service


def test_the_listeners_default_rule_gives_each_service_its_share() -> None:
    found = listener(80, [{"IsDefault": False, "Actions": [forward(0, 1)]}, *default_rule(forward(95, 5))], GROUPS)
    assert found == Listener(80, {"nginx": 95.0, "nginx-canary": 5.0})
    # Weights are relative: 19 to 1 is a 5 % share too.
    assert listener(80, default_rule(forward(19, 1)), GROUPS).weights == {"nginx": 95.0, "nginx-canary": 5.0}
    # Before weights, the default action forwards to the app's target group alone.
    single = {"Type": "forward", "TargetGroupArn": APP_TG}
    assert listener(80, default_rule(single), GROUPS).weights == {"nginx": 100.0}


def test_a_listener_that_redirects_forwards_nowhere() -> None:
    redirect = {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
    assert listener(80, default_rule(redirect), GROUPS) == Listener(80, None)


def test_a_listener_forwarding_elsewhere_is_refused() -> None:
    with pytest.raises(WeightsError, match="not the app's"):
        listener(80, default_rule({"Type": "forward", "TargetGroupArn": "arn:other"}), GROUPS)


def test_the_canarys_share_is_known_only_when_every_forwarding_listener_agrees() -> None:
    https = Listener(443, {"nginx": 75.0, "nginx-canary": 25.0})
    assert canary_share([Listener(80, None), https]) == 25.0
    assert canary_share([https, Listener(8443, {"nginx": 95.0, "nginx-canary": 5.0})]) is None
    assert canary_share([Listener(80, {"nginx": 100.0})]) == 0.0
    assert canary_share([Listener(80, None)]) is None


class SteppedClock:
    """Time that moves only when waited on."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.t += seconds
        return False


class Alb:
    """The AWS CLI's answers about an ALB whose controller applies a 5 % share on its ``lag``-th read."""

    def __init__(self, lag: int | None) -> None:
        self.lag, self.reads = lag, 0

    def __call__(self, args: Sequence[str]) -> Any:
        operation = list(args[:2])
        if operation == ["elbv2", "describe-load-balancers"]:
            return {"LoadBalancers": [{"DNSName": "alb.example", "LoadBalancerArn": "arn:lb"}]}
        if operation == ["elbv2", "describe-target-groups"]:
            return {"TargetGroups": [{"TargetGroupArn": arn, "TargetGroupName": name} for arn, name in GROUPS.items()]}
        if operation == ["elbv2", "describe-listeners"]:
            return {"Listeners": [{"ListenerArn": "arn:listener", "Port": 80}]}
        assert operation == ["elbv2", "describe-rules"] and list(args[2:]) == ["--listener-arn", "arn:listener"]
        self.reads += 1
        applied = self.lag is not None and self.reads >= self.lag
        return {"Rules": default_rule(forward(95, 5) if applied else forward(100, 0))}


def test_a_share_is_waited_for_until_the_alb_applies_it() -> None:
    alb, clock = Alb(lag=4), SteppedClock()
    took = listener_reads.await_share(alb, "http://alb.example/", 5, clock)
    assert alb.reads == 4 and took == 3 * listener_reads.READ_EVERY_S


def test_the_wait_for_a_share_ends_when_a_breach_took_it_away() -> None:
    # The canary is judged from its weight's update on: a breach meanwhile turns its weight to 0, and the share
    # being waited for will never come (seen on the real API server: the wait ran out its 90 s before the
    # canary was removed).
    alb = Alb(lag=None)
    took = listener_reads.await_share(alb, "http://alb.example/", 5, SteppedClock(), stop=lambda: alb.reads >= 2)
    assert took is None and alb.reads == 2


def test_a_share_the_alb_never_applies_is_an_error_saying_what_it_has() -> None:
    with pytest.raises(WeightsError) as caught:
        listener_reads.await_share(Alb(lag=None), "http://alb.example/", 5, SteppedClock(), within_s=10)
    assert "did not give the canary 5 % of requests within 10s" in str(caught.value)
    assert "80: {'nginx': 100.0, 'nginx-canary': 0.0}" in str(caught.value)
    with pytest.raises(WeightsError, match=r"no load balancer .* has the DNS name other\.example"):
        listener_reads.read(Alb(lag=1), "http://other.example/")
