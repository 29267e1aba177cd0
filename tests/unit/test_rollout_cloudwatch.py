"""The analysis from the ALB's metrics (analysisSource cloudwatch): the judgement over a target group's
minutes that never blames the old version, the AWS CLI calls and the shapes they answer in, and the
command's choice of source. No AWS here: the answers are in the shapes the CloudWatch and ELBv2 API
references give (GetMetricData, DescribeLoadBalancers, DescribeTargetGroups), as the AWS CLI prints them."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from infra.rollout import cloudwatch
from infra.rollout.analysis import State, Thresholds
from infra.rollout.cloudwatch import Baseline, MetricsError, Minute, judge_minutes
from infra.rollout.command.judging import Judging
from infra.rollout.evidence import AlbMetrics, Probe
from infra.rollout.gate import Gate
from infra.settings import Settings, SettingsError
from tests.unit.rollout_fakes import session

LIMITS = Thresholds(max_error_ratio=0.02, max_p99_ms=1000, min_requests=50)
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60
OLD_ALONE = Baseline(requests=6000, errors=60, p99_ms=120.0)  # 1 % errors before the update

# The ARNs' shapes, from "CloudWatch metrics for your Application Load Balancer" (its dimensions' examples).
ARN = "arn:aws:elasticloadbalancing:us-west-2:123456789012:"
LB_ARN = ARN + "loadbalancer/app/k8s-rolling-app-5c1f3e9a2b/50dc6c495c0c9188"
# Named as the load balancer controller names them: k8s-<namespace>-<service>-<hash>, each cut to 8.
TG_NAME = "k8s-rolling-nginx-8d3c1e0a1b"
TG_ARN = ARN + f"targetgroup/{TG_NAME}/73e2d6bc24d8a067"
CANARY_TG = {
    "TargetGroupArn": ARN + "targetgroup/k8s-rolling-nginxcan-0f9e8d7c6b/1e2d",
    "TargetGroupName": "k8s-rolling-nginxcan-0f9e8d7c6b",
}
HOST = "k8s-rolling-app-5c1f3e9a2b-1234567890.us-west-2.elb.amazonaws.com"


def minutes(*figures: tuple[float, float, float | None]) -> list[Minute]:
    return [Minute(T0 + 60 * i, requests, errors, p99) for i, (requests, errors, p99) in enumerate(figures)]


def test_an_old_version_that_errs_as_it_always_did_is_not_blamed_on_the_new_one() -> None:
    # Both versions behind the target group, 1 % errors as before the update: the new one passes.
    during = minutes((600, 6, 130.0), (600, 6, 125.0), (600, 7, 140.0))
    verdict = judge_minutes(during, OLD_ALONE, "1.1.0", LIMITS, alone_since=None)
    assert verdict.state is State.PASS, verdict.reason
    # Judged from the whole target group alone, the same minutes would be 1.06 % errors, within 2 %; the
    # same old version at 3 % would breach 2 % though it is the old one: the baseline keeps it out.
    noisy = Baseline(6000, 180, 120.0)
    worse = minutes((600, 18, 130.0), (600, 19, 125.0), (600, 18, 140.0))
    assert judge_minutes(worse, noisy, "1.1.0", LIMITS, alone_since=None).state is State.PASS


def test_a_canary_that_answers_errors_breaches_through_the_shared_target_group() -> None:
    # One canary pod in four answering every request 500: about a quarter of the target group's requests.
    during = minutes((600, 6 + 150, 130.0), (600, 6 + 150, 130.0))
    verdict = judge_minutes(during, OLD_ALONE, "1.1.0", LIMITS, alone_since=None)
    assert verdict.breached
    assert verdict.errors == 300  # 312 errors, 12 of them the old version's 1 %
    assert "beyond the old version's own 1.0% before the update" in verdict.reason
    assert "beyond doubt" in verdict.reason
    assert verdict.as_json()["source"] == "cloudwatch"
    assert [m["requests"] for m in verdict.minutes] == [600, 600]


def test_once_the_new_version_serves_alone_every_error_is_its_own() -> None:
    # A shared minute, then minutes after the rollout completed: 8 % errors where the old version had 1 %.
    alone_at = T0 + 60 + 20
    during = minutes((600, 6, 130.0), (600, 6, 130.0), (600, 48, 130.0), (600, 48, 130.0))
    verdict = judge_minutes(during, OLD_ALONE, "1.1.0", LIMITS, alone_since=alone_at)
    # The minute the rollout completed in is shared; the two after it are the new version's: 96 errors of
    # theirs in 1200, and none beyond the old version's 1 % in the shared ones.
    assert verdict.breached and verdict.errors == 96, verdict.reason
    assert "above maxErrorRatio 0.02 beyond doubt" in verdict.reason
    calm = minutes((600, 6, 130.0), (600, 6, 130.0), (600, 6, 130.0), (600, 6, 130.0))
    assert judge_minutes(calm, OLD_ALONE, "1.1.0", LIMITS, alone_since=alone_at).state is State.PASS
    # 2.5 % where the old version had 1 %: between good (1 % more than it) and bad (6 % more), the test's
    # indifferent zone; these minutes clear it, as the probe's answers would (docs/rollouts.md).
    between = minutes((600, 6, 130.0), (600, 6, 130.0), (600, 15, 130.0), (600, 15, 130.0))
    assert judge_minutes(between, OLD_ALONE, "1.1.0", LIMITS, alone_since=alone_at).state is State.PASS


def test_too_few_requests_never_clear_a_release_and_errors_beyond_doubt_condemn_it_at_any_count() -> None:
    # 20 requests, none failing: too few to clear (minRequests 50); a 20-request minute's p99 is little more
    # than its slowest, and not judged.
    verdict = judge_minutes(minutes((20, 0, 5000.0)), OLD_ALONE, "1.1.0", LIMITS, alone_since=T0)
    assert verdict.state is State.PENDING and verdict.p99_ms is None, verdict
    assert "20 of the 50 minRequests" in verdict.reason
    assert judge_minutes([], OLD_ALONE, "1.1.0", LIMITS, alone_since=None).state is State.PENDING
    # 20 of 20 failing is beyond doubt, as 4 of 4 of the prober's answers are.
    assert judge_minutes(minutes((20, 20, None)), OLD_ALONE, "1.1.0", LIMITS, alone_since=T0).breached


def test_a_minutes_p99_is_judged_from_a_hundred_requests() -> None:
    # A p99 means one answer in a hundred: from 100 requests in the minute it is judged, below it is not.
    judged = judge_minutes(minutes((100, 0, 5000.0)), OLD_ALONE, "1.1.0", LIMITS, alone_since=T0)
    assert judged.state is State.BREACH and "p99 latency 5000 ms" in judged.reason, judged
    unjudged = judge_minutes(minutes((99, 0, 5000.0)), OLD_ALONE, "1.1.0", LIMITS, alone_since=T0)
    assert unjudged.state is not State.BREACH and unjudged.p99_ms is None, unjudged


def test_latency_is_held_against_the_new_version_only_where_the_old_one_kept_within_it() -> None:
    slow_shared = minutes((600, 0, 1400.0), (600, 0, 200.0))
    verdict = judge_minutes(slow_shared, OLD_ALONE, "1.1.0", LIMITS, alone_since=None)
    assert verdict.breached and "1400 ms" in verdict.reason
    # The old version was already slower than maxP99Ms: a shared minute says nothing about the new one...
    slow_old = Baseline(6000, 0, 1500.0)
    assert judge_minutes(slow_shared, slow_old, "1.1.0", LIMITS, alone_since=None).state is State.PASS
    # ...a minute of the new version alone does.
    slow_alone = minutes((600, 0, 1400.0), (600, 0, 1300.0))
    assert judge_minutes(slow_alone, slow_old, "1.1.0", LIMITS, alone_since=T0 + 30).breached


def test_the_dimensions_are_the_arns_resource_parts() -> None:
    assert cloudwatch.arn_suffix(LB_ARN, "LoadBalancer") == "app/k8s-rolling-app-5c1f3e9a2b/50dc6c495c0c9188"
    assert cloudwatch.arn_suffix(TG_ARN, "TargetGroup") == f"targetgroup/{TG_NAME}/73e2d6bc24d8a067"


class FakeAws:
    """The AWS CLI's answers, by service and operation; records every call."""

    def __init__(self, balancers: list[dict[str, Any]] | None = None, groups: int = 1, canary: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.balancers = balancers if balancers is not None else [{"DNSName": HOST, "LoadBalancerArn": LB_ARN}]
        self.groups, self.canary = groups, canary
        self.metrics: dict[str, Any] = {"MetricDataResults": []}
        self.fail: str | None = None

    def __call__(self, args: Sequence[str]) -> Any:
        self.calls.append(list(args))
        if self.fail is not None:
            raise MetricsError(self.fail)
        if args[:2] == ["elbv2", "describe-load-balancers"]:
            return {"LoadBalancers": self.balancers}
        if args[:2] == ["elbv2", "describe-target-groups"]:
            app = {"TargetGroupArn": TG_ARN, "TargetGroupName": TG_NAME, "LoadBalancerArns": [LB_ARN]}
            return {"TargetGroups": [app] * self.groups + ([CANARY_TG] if self.canary else [])}
        if args[:2] == ["cloudwatch", "get-metric-data"]:
            return self.metrics
        raise AssertionError(args)


def test_the_target_group_is_found_from_the_stacks_url() -> None:
    aws = FakeAws(
        balancers=[
            {"DNSName": "other.elb.amazonaws.com", "LoadBalancerArn": "x"},
            {"DNSName": HOST.upper(), "LoadBalancerArn": LB_ARN},
        ]
    )
    found = cloudwatch.find_target_group(aws, f"http://{HOST}")
    assert found == cloudwatch.TargetGroup(
        "app/k8s-rolling-app-5c1f3e9a2b/50dc6c495c0c9188", f"targetgroup/{TG_NAME}/73e2d6bc24d8a067"
    )
    # With canaryTraffic weights the canary's target group is on the same ALB: the app's is still the one read.
    assert cloudwatch.find_target_group(FakeAws(canary=True), f"http://{HOST}") == found
    assert aws.calls[1] == ["elbv2", "describe-target-groups", "--load-balancer-arn", LB_ARN]
    with pytest.raises(MetricsError, match=r"no load balancer .* has the DNS name"):
        cloudwatch.find_target_group(FakeAws(balancers=[]), f"http://{HOST}")
    with pytest.raises(MetricsError, match="has 2 target groups of the app's Service"):
        cloudwatch.find_target_group(FakeAws(groups=2), f"https://{HOST}")


def test_the_metrics_read_are_the_target_groups_per_minute() -> None:
    group = cloudwatch.TargetGroup("app/a/1", "targetgroup/t/2")
    queries = cloudwatch.queries(group)
    # GetMetricData: each query's Id starts with a lowercase letter (letters, digits, underscores).
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", q["Id"]) for q in queries)
    assert {q["MetricStat"]["Metric"]["MetricName"]: q["MetricStat"]["Stat"] for q in queries} == {
        "RequestCount": "Sum",
        "HTTPCode_Target_5XX_Count": "Sum",
        "TargetConnectionErrorCount": "Sum",
        "TargetResponseTime": "p99",
    }
    for q in queries:
        assert q["MetricStat"]["Metric"]["Namespace"] == "AWS/ApplicationELB"
        assert q["MetricStat"]["Period"] == 60
        assert q["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "LoadBalancer", "Value": "app/a/1"},
            {"Name": "TargetGroup", "Value": "targetgroup/t/2"},
        ]


def stamp(i: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + 60 * i, UTC).isoformat()  # the CLI prints +00:00


def test_minutes_are_read_from_get_metric_data_as_the_cli_prints_it() -> None:
    aws = FakeAws()
    # ELB reports a metric only when it has data: no 5xx figure in a minute without errors, no minute at all
    # without requests.
    aws.metrics = {
        "MetricDataResults": [
            {"Id": "requests", "Timestamps": [stamp(0), stamp(1)], "Values": [600.0, 590.0], "StatusCode": "Complete"},
            {"Id": "target5xx", "Timestamps": [stamp(1)], "Values": [12.0], "StatusCode": "Complete"},
            {"Id": "connectionErrors", "Timestamps": [stamp(1)], "Values": [3.0], "StatusCode": "Complete"},
            {"Id": "p99", "Timestamps": [stamp(0), stamp(1)], "Values": [0.131, 0.2], "StatusCode": "Complete"},
        ]
    }
    group = cloudwatch.TargetGroup("app/a/1", "targetgroup/t/2")
    read = cloudwatch.read_minutes(aws, group, T0, T0 + 180)
    assert [(m.start, m.requests, m.errors) for m in read] == [(T0, 600.0, 0.0), (T0 + 60, 590.0, 15.0)]
    assert [m.p99_ms for m in read] == pytest.approx([131.0, 200.0])
    call = aws.calls[0]
    assert call[:2] == ["cloudwatch", "get-metric-data"]
    assert (
        call[call.index("--start-time") + 1].endswith("Z") and call[call.index("--scan-by") + 1] == "TimestampAscending"
    )
    assert json.loads(call[call.index("--metric-data-queries") + 1]) == cloudwatch.queries(group)


def test_the_aws_cli_is_run_in_the_stacks_region_and_its_error_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls"
    fake = tmp_path / "aws"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'case "$1" in\n'
        "  elbv2) echo '{\"LoadBalancers\": []}' ;;\n"
        "  sts) echo 'Unable to locate credentials. You can configure credentials by running aws configure.' ;;\n"
        '  *) echo "An error occurred (AccessDenied) when calling the GetMetricData operation" >&2; exit 254 ;;\n'
        "esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    run = cloudwatch.aws_cli("eu-west-1")
    assert run(["elbv2", "describe-load-balancers"]) == {"LoadBalancers": []}
    with pytest.raises(MetricsError, match=r"`aws cloudwatch get-metric-data` failed: .*AccessDenied"):
        run(["cloudwatch", "get-metric-data"])
    with pytest.raises(MetricsError, match=r"`aws sts get-caller-identity` printed no JSON: 'Unable to locate"):
        run(["sts", "get-caller-identity"])
    assert log.read_text().splitlines()[0] == "elbv2 describe-load-balancers --output json --region eu-west-1"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(MetricsError, match=r"AWS CLI .* is not on PATH"):
        cloudwatch.aws_cli(None)(["elbv2", "describe-load-balancers"])


def test_the_gate_judges_the_minutes_from_when_the_new_version_serves_alone() -> None:
    aws = FakeAws()
    clock = [T0 + 5]
    metrics = cloudwatch.Metrics(aws, f"http://{HOST}", clock=lambda: clock[0])
    metrics.check()
    assert metrics.before.requests == 0  # no baseline minutes in the fake's answer: none blamed on anyone
    said: list[str] = []
    evidence = AlbMetrics(metrics, said.append)
    gate = Gate(evidence, "1.1.0", LIMITS, say=said.append, on_breach=said.append)
    evidence.__enter__()
    aws.metrics = {
        "MetricDataResults": [
            {"Id": "requests", "Timestamps": [stamp(0), stamp(1)], "Values": [600.0, 600.0]},
            {"Id": "target5xx", "Timestamps": [stamp(1)], "Values": [90.0]},
        ]
    }
    assert gate.judgement().breached  # no baseline: every error of a shared minute is held against it
    clock[0] = T0 + 30
    gate.alone()
    assert gate.judgement().errors == 90
    assert evidence.every_s == cloudwatch.READ_EVERY_S
    # A bake's last minute is reported once it has ended and CloudWatch has it: the bake waits past its own
    # end for more than a whole period (a settle time of 0 would judge without the last minute).
    assert evidence.settle_s > cloudwatch.PERIOD_S
    # CloudWatch unreadable for a moment: the last minutes read stand.
    aws.fail = "throttled"
    assert gate.judgement().errors == 90 and gate.judgement().errors == 90
    assert sum("cannot be read just now" in line for line in said) == 0, "the minutes read before stand"


def eks_settings(**values: str) -> Settings:
    return Settings.from_values({"target": "eks", "imageTag": "1.1.0", **values})


def test_the_command_reads_the_metrics_instead_of_probing_when_the_stack_says_so() -> None:
    aws = FakeAws()
    regions: list[str | None] = []

    def runner(region: str | None) -> cloudwatch.Run:
        regions.append(region)
        return aws

    s = session(["--stack", "prod", "--tag", "1.1.0"], metrics_runner=runner)
    s.region = "us-west-2"
    settings = eks_settings(analysisSource="cloudwatch")
    judging = Judging(s)
    assert judging.unreachable(f"http://{HOST}", settings) is None
    assert regions == ["us-west-2"]
    assert not any(call[0] == "http" for call in aws.calls)
    assert isinstance(judging.evidence(f"http://{HOST}", settings), AlbMetrics)
    assert isinstance(Judging(s).evidence(f"http://{HOST}", eks_settings()), Probe)

    aws.fail = "An error occurred (AccessDenied) when calling the DescribeLoadBalancers operation"
    refused = Judging(s).unreachable(f"http://{HOST}", settings)
    assert refused is not None and "AccessDenied" in refused
    assert "rolling:analysisSource probe" in refused


def test_the_metrics_source_needs_whole_minutes_and_the_eks_target() -> None:
    chosen = eks_settings(analysisSource="cloudwatch")
    assert (chosen.bake_seconds, chosen.canary_seconds) == (300, 300)
    assert (eks_settings().bake_seconds, eks_settings().canary_seconds) == (60, 120)
    with pytest.raises(SettingsError, match=r"rolling:bakeSeconds 60 is too short for analysisSource cloudwatch"):
        eks_settings(analysisSource="cloudwatch", bakeSeconds="60")
    with pytest.raises(SettingsError, match=r"rolling:canarySeconds 90 is too short"):
        eks_settings(analysisSource="cloudwatch", canarySeconds="90")
    # No analysis, nothing to judge: no minimum.
    assert eks_settings(analysisSource="cloudwatch", analysis="false", bakeSeconds="0").bake_seconds == 0
    # The ALB's minutes name no pod: a warm-up cannot be kept with them.
    with pytest.raises(SettingsError, match=r"rolling:analysisWarmupSeconds 30 .* cannot do \(the ALB's minutes"):
        eks_settings(analysisSource="cloudwatch", analysisWarmupSeconds="30")
    assert eks_settings(analysisWarmupSeconds="30").analysis_warmup_seconds == 30
    with pytest.raises(SettingsError, match=r"rolling:maxErrorsOverOld 3 .* do not tell the versions apart"):
        eks_settings(analysisSource="cloudwatch", maxErrorsOverOld="3")
    with pytest.raises(SettingsError, match="analysisSource is only read by target eks"):
        Settings.from_values({"target": "local", "analysisSource": "cloudwatch"})
    with pytest.raises(SettingsError, match="'alarms' is not accepted; use one of: probe, cloudwatch"):
        eks_settings(analysisSource="alarms")
