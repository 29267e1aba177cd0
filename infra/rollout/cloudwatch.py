"""The analysis's other source, on eks: the ALB's own metrics for the app's target group, from CloudWatch.

For users whose CI runner cannot reach the ALB (an internal scheme, a runner outside the VPC), the
command reads what the ALB measured instead of sending requests of its own: per minute, the target
group's RequestCount, HTTPCode_Target_5XX_Count and TargetConnectionErrorCount (Sum) and
TargetResponseTime (p99). Elastic Load Balancing sends them in 60-second intervals, and only while
requests flow; health checks are not counted ("CloudWatch metrics for your Application Load Balancer",
docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).

A target group's metrics do not say which version answered: until the rollout is complete, the old and
the new pods are its targets together. So the judgement (`judge_minutes`, pure) holds against the new
version only what the old one cannot explain. Before the update it reads the target group's last
minutes, the old version alone: its error ratio ``b`` and its p99. The errors are judged by the
analysis's sequential test, each minute's counts against its rates raised by ``b``: a minute the old
version alone could have given (at ``b``) never weighs toward condemning the new one, and the test's
stated error rates hold (a target group at a mix of the two versions fails no more often than a new
version at its rate plus ``b``). A minute's p99 above maxP99Ms, when the old version's was within it,
means more than 1 % of the new version's responses were slower; a minute of fewer than LEAST_FOR_P99
requests is not judged on it. Once the new version serves alone (its rollout complete and the old
targets draining) every error and the whole p99 are its own.

It reads through the AWS CLI (`aws`, v2 on GitHub's hosted runners; credentials as the CLI finds them):
the pinned Kubernetes client needs python-dateutil 3 or newer and botocore pins it below 3, so the SDK
cannot share the command's environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from infra.identity import SERVICE
from infra.rollout.analysis import Judgement, State, Thresholds
from infra.rollout.report import MinuteEvidence
from infra.rollout.sequential import Decision, llr_beside
from infra.weights import service_of

PERIOD_S = 60
# The old version alone, before the update: its error ratio and p99 are the baseline.
BASELINE_MINUTES = 10
# How long after a minute ends its figures are taken to be in CloudWatch: the bake waits this long past
# its own end, so that its last minute is counted.
SETTLE_S = 150
# A minute's p99 with fewer requests than this is little more than its slowest: not judged.
LEAST_FOR_P99 = 100
# How often the metrics are read and judged while a rollout runs (each read is one GetMetricData request).
READ_EVERY_S = 30.0

Run = Callable[[Sequence[str]], Any]


class MetricsError(Exception):
    """The metrics cannot be read (the CLI, credentials, permissions, or the ALB not found)."""


@dataclass(frozen=True)
class Minute:
    """One minute of the target group, from ``start`` (epoch seconds)."""

    start: float
    requests: float
    errors: float
    p99_ms: float | None

    def as_json(self) -> MinuteEvidence:
        return {
            "start": datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "requests": self.requests,
            "errors": self.errors,
            "p99Ms": None if self.p99_ms is None else round(self.p99_ms, 1),
        }


@dataclass(frozen=True)
class Baseline:
    """The old version alone, before the update."""

    requests: float
    errors: float
    p99_ms: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def baseline(minutes: Sequence[Minute]) -> Baseline:
    p99s = [m.p99_ms for m in minutes if m.p99_ms is not None]
    return Baseline(sum(m.requests for m in minutes), sum(m.errors for m in minutes), max(p99s) if p99s else None)


def judge_minutes(
    minutes: Sequence[Minute], before: Baseline, version: str, thresholds: Thresholds, *, alone_since: float | None
) -> Judgement:
    """The new ``version`` judged from the target group's ``minutes`` (module docstring): the error rate by the
    analysis's sequential test (infra/rollout/sequential.py), each minute's requests and errors against the
    test's rates raised by the old version's error ratio ``before`` the update, so that only errors it cannot
    explain count; condemned at any minute the evidence is beyond doubt, cleared once it is and minRequests
    requests are in. A minute's p99 counts only with LEAST_FOR_P99 requests or more (below, it is little more
    than its slowest): above maxP99Ms where the old version kept within it, or from ``alone_since`` on,
    the new version alone, it is a breach."""
    alone = [m for m in minutes if alone_since is not None and m.start >= alone_since]
    shared = [m for m in minutes if not (alone_since is not None and m.start >= alone_since)]
    shared_requests = sum(m.requests for m in shared)
    excess = max(0.0, sum(m.errors for m in shared) - before.error_ratio * shared_requests)
    alone_requests, alone_errors = sum(m.requests for m in alone), sum(m.errors for m in alone)
    requests, errors = shared_requests + alone_requests, excess + alone_errors
    timed = [m for m in minutes if m.p99_ms is not None and m.requests >= LEAST_FOR_P99]
    judged = [m for m in timed if m in alone or before.p99_ms is None or before.p99_ms <= thresholds.max_p99_ms]
    p99 = max((m.p99_ms for m in judged if m.p99_ms is not None), default=None)
    span = (minutes[-1].start + PERIOD_S - minutes[0].start) if minutes else 0.0
    evidence = tuple(m.as_json() for m in minutes)
    test, base = thresholds.error_test(), before.error_ratio
    llr = sum(llr_beside(test, round(m.requests), round(m.errors), base) for m in minutes) if test else 0.0
    on_errors = Decision.CLEAR if test is None else test.decide_llr(llr)

    def verdict(state: State, reason: str) -> Judgement:
        return Judgement(
            state, version, round(requests), round(errors), p99, reason, {}, span, source="cloudwatch", minutes=evidence
        )

    beyond = f", beyond the old version's own {base:.1%} before the update" if before.requests else ""
    if on_errors is Decision.CONDEMN:
        return verdict(
            State.BREACH,
            f"at least {errors:.0f} of its {requests:.0f} responses were errors (the target group's minutes{beyond}): "
            f"above maxErrorRatio {thresholds.max_error_ratio:g} beyond doubt",
        )
    if p99 is not None and p99 > thresholds.max_p99_ms:
        return verdict(
            State.BREACH, f"the target group's p99 latency {p99:.0f} ms is above maxP99Ms {thresholds.max_p99_ms}"
        )
    if on_errors is Decision.CLEAR and requests >= thresholds.min_requests:
        return verdict(State.PASS, "within maxErrorRatio and maxP99Ms beyond doubt (the target group's minutes)")
    pending = [
        *([] if on_errors is Decision.CLEAR else [f"errors {errors:.0f} of {requests:.0f}"]),
        *(
            []
            if requests >= thresholds.min_requests
            else [f"{requests:.0f} of the {thresholds.min_requests} minRequests"]
        ),
    ]
    return verdict(State.PENDING, f"not decided yet ({', '.join(pending)}, in the target group's minutes)")


def aws_cli(region: str | None) -> Run:
    """Run `aws ARGS --output json` (in ``region``) and return its JSON; MetricsError with its message."""
    executable = shutil.which("aws")

    def run(args: Sequence[str]) -> Any:
        if executable is None:
            raise MetricsError("the AWS CLI (`aws`) is not on PATH; analysisSource cloudwatch reads metrics with it")
        command = [executable, *args, "--output", "json", *(["--region", region] if region else [])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            raise MetricsError(f"`aws {' '.join(args[:2])}` did not answer within 60s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise MetricsError(f"`aws {' '.join(args[:2])}` failed: {lines[-1] if lines else done.returncode}")
        try:
            return json.loads(done.stdout or "{}")
        except ValueError:
            raise MetricsError(f"`aws {' '.join(args[:2])}` printed no JSON: {done.stdout[:200]!r}") from None

    return run


def arn_suffix(arn: str, kind: str) -> str:
    """The metrics' dimension value of a load balancer's or a target group's ARN: the resource part after
    ``loadbalancer/`` (app/NAME/ID), or from ``targetgroup/`` on (targetgroup/NAME/ID)."""
    resource = arn.split(":", 5)[-1]
    if kind == "LoadBalancer":
        return resource.removeprefix("loadbalancer/")
    return resource


@dataclass(frozen=True)
class TargetGroup:
    load_balancer: str  # the LoadBalancer dimension: app/NAME/ID
    target_group: str  # the TargetGroup dimension: targetgroup/NAME/ID


def find_target_group(run: Run, url: str) -> TargetGroup:
    """The target group behind the stack's ``url``: the ALB whose DNS name it is, and the target group of the
    app's Service (with canaryTraffic weights, the canary's is there too)."""
    host = (urlsplit(url).hostname or "").lower()
    balancers = run(["elbv2", "describe-load-balancers"]).get("LoadBalancers", [])
    found = [b for b in balancers if str(b.get("DNSName", "")).lower() == host]
    if not found:
        raise MetricsError(f"no load balancer in this account and region has the DNS name {host}")
    arn = str(found[0]["LoadBalancerArn"])
    groups = run(["elbv2", "describe-target-groups", "--load-balancer-arn", arn]).get("TargetGroups", [])
    if len(groups) > 1:
        # With canaryTraffic weights the canary's target group is there too: the app's is its Service's.
        groups = [g for g in groups if service_of(str(g.get("TargetGroupName", ""))) == SERVICE]
    if len(groups) != 1:
        raise MetricsError(f"the load balancer {arn} has {len(groups)} target groups of the app's Service; it has one")
    return TargetGroup(arn_suffix(arn, "LoadBalancer"), arn_suffix(str(groups[0]["TargetGroupArn"]), "TargetGroup"))


# What is read for each minute: id -> (metric, statistic).
METRICS = {
    "requests": ("RequestCount", "Sum"),
    "target5xx": ("HTTPCode_Target_5XX_Count", "Sum"),
    "connectionErrors": ("TargetConnectionErrorCount", "Sum"),
    "p99": ("TargetResponseTime", "p99"),
}


def queries(group: TargetGroup) -> list[dict[str, Any]]:
    dimensions = [
        {"Name": "LoadBalancer", "Value": group.load_balancer},
        {"Name": "TargetGroup", "Value": group.target_group},
    ]
    return [
        {
            "Id": key,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": metric, "Dimensions": dimensions},
                "Period": PERIOD_S,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for key, (metric, stat) in METRICS.items()
    ]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_minutes(run: Run, group: TargetGroup, start: float, end: float) -> list[Minute]:
    """The target group's minutes from ``start`` to ``end`` (epoch seconds, whole minutes), oldest first. A
    minute with no requests is not reported at all; one with requests and no errors has no error figure."""
    answer = run(
        [
            "cloudwatch",
            "get-metric-data",
            "--metric-data-queries",
            json.dumps(queries(group), separators=(",", ":")),
            "--start-time",
            _iso(start),
            "--end-time",
            _iso(end),
            "--scan-by",
            "TimestampAscending",
        ]
    )
    series: dict[str, dict[float, float]] = {}
    for result in answer.get("MetricDataResults", []):
        values = series.setdefault(str(result["Id"]), {})
        for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            values[datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()] = float(value)
    requests = series.get("requests", {})
    minutes = []
    for at in sorted(requests):
        p99_s = series.get("p99", {}).get(at)
        minutes.append(
            Minute(
                at,
                requests[at],
                series.get("target5xx", {}).get(at, 0.0) + series.get("connectionErrors", {}).get(at, 0.0),
                None if p99_s is None else p99_s * 1000,
            )
        )
    return minutes


def minute_floor(epoch: float) -> float:
    return epoch - epoch % PERIOD_S


class Metrics:
    """The target group behind the stack's url, its baseline, and its minutes since the block started."""

    def __init__(self, run: Run, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.run, self.url, self.clock = run, url, clock
        self.group: TargetGroup | None = None
        self.before = Baseline(0, 0, None)
        self.started = 0.0
        self._minutes: list[Minute] = []

    def check(self) -> None:
        """Find the target group and read the baseline: MetricsError when either cannot be done."""
        self.group = find_target_group(self.run, self.url)
        end = minute_floor(self.clock())
        self.before = baseline(read_minutes(self.run, self.group, end - BASELINE_MINUTES * PERIOD_S, end))

    def __enter__(self) -> Metrics:
        if self.group is None:
            self.check()
        # The minute the update starts in is shared by both versions from its start.
        self.started = minute_floor(self.clock())
        self._minutes = []
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def minutes(self) -> list[Minute]:
        """The minutes since the start, read now; the last ones read when CloudWatch cannot be read just now
        (MetricsError only when it never could)."""
        assert self.group is not None, "entered"
        try:
            self._minutes = read_minutes(self.run, self.group, self.started, minute_floor(self.clock()) + PERIOD_S)
        except MetricsError:
            if not self._minutes:
                raise
        return list(self._minutes)
