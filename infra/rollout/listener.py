"""The canary's share of requests as the ALB applies it (canaryTraffic weights): read back through the AWS CLI
(DescribeLoadBalancers, DescribeTargetGroups, DescribeListeners, DescribeRules), and waited for after each
change, since the load balancer controller applies an Ingress's change to the ALB after Kubernetes accepted
it, in its own time. A weight is judged only once the ALB has it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from infra.rollout.cloudwatch import MetricsError, Run
from infra.rollout.evidence import Clock
from infra.weights import Listener, WeightsError, canary_share, listener

# How long the controller may take to apply a weight, at most, and how often the ALB is asked meanwhile.
APPLY_WITHIN_S = 90.0
READ_EVERY_S = 2.0


def read(run: Run, url: str) -> list[Listener]:
    """The listeners of the ALB whose DNS name ``url`` has, with the share each gives the app's Services."""
    host = (urlsplit(url).hostname or "").lower()
    try:
        balancers = run(["elbv2", "describe-load-balancers"]).get("LoadBalancers", [])
        found = [b for b in balancers if str(b.get("DNSName", "")).lower() == host]
        if not found:
            raise WeightsError(f"no load balancer in this account and region has the DNS name {host}")
        arn = str(found[0]["LoadBalancerArn"])
        groups = {
            str(g["TargetGroupArn"]): str(g.get("TargetGroupName", ""))
            for g in run(["elbv2", "describe-target-groups", "--load-balancer-arn", arn]).get("TargetGroups", [])
        }
        listeners = []
        for each in run(["elbv2", "describe-listeners", "--load-balancer-arn", arn]).get("Listeners", []):
            rules = run(["elbv2", "describe-rules", "--listener-arn", str(each["ListenerArn"])]).get("Rules", [])
            listeners.append(listener(int(each.get("Port", 0)), rules, groups))
    except MetricsError as err:
        raise WeightsError(str(err)) from None
    return listeners


def await_share(
    run: Run,
    url: str,
    percent: int,
    clock: Clock,
    within_s: float | None = None,
    *,
    stop: Callable[[], bool] | None = None,
) -> float | None:
    """Wait until every forwarding listener of the ALB gives the canary ``percent`` of requests; how long it
    took (seconds). WeightsError when it does not within ``within_s`` (APPLY_WITHIN_S), saying what the ALB
    has; None as soon as ``stop`` holds (a breach took the share away while it was being read back)."""
    within_s = APPLY_WITHIN_S if within_s is None else within_s
    start = clock.now()
    never = threading.Event()
    last: list[Listener] = []
    while True:
        if stop is not None and stop():
            return None
        last = read(run, url)
        share = canary_share(last)
        if share is not None and abs(share - percent) < 0.5:
            return clock.now() - start
        if clock.now() - start >= within_s:
            seen = ", ".join(f"{lst.port}: {dict(lst.weights or {})}" for lst in last) or "no listeners"
            raise WeightsError(
                f"the ALB did not give the canary {percent} % of requests within {within_s:.0f}s (its listeners: "
                f"{seen}): is the load balancer controller running? `kubectl -n kube-system logs "
                "deployment/aws-load-balancer-controller` says why"
            )
        clock.wait(never, READ_EVERY_S)
