"""The policy pack's rules, on the resources the program really registers and on broken variants."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policy import rules
from tests.unit.harness import run_program


def program_resources(target: str, **extra: object) -> list[rules.Resource]:
    mocks = run_program({"target": target, "imageTag": "1.14.2", **extra}).mocks
    return [rules.Resource(r.type, r.name, r.inputs) for r in mocks.resources]


def all_violations(resources: list[rules.Resource]) -> list[str]:
    fargate = rules.on_fargate(resources)
    found = rules.disruption_budgets(resources) + rules.drains_before_stopping(resources)
    found += rules.alb_ingresses(resources) + rules.analysed_on_eks(resources)
    for r in resources:
        found += rules.pinned_images(r) + rules.readiness_probes(r) + rules.keeps_serving(r)
        found += rules.requests_equal_limits(r, fargate) + rules.eks_cluster(r) + rules.least_privilege(r)
        found += rules.bounded_roles(r)
    return found


@pytest.mark.parametrize("target", ["local", "eks"])
def test_the_program_passes_every_rule(target: str) -> None:
    assert all_violations(program_resources(target)) == []


@pytest.mark.parametrize("traffic", ["weights", "pods"])
def test_a_canary_of_two_pods_passes_every_rule_either_way(traffic: str) -> None:
    # A weighted canary's pods carry an app label of their own: their budget and port rule are their own too.
    resources = program_resources("eks", canaryTag="1.16.1", canaryReplicas=2, canaryTraffic=traffic)
    assert all_violations(resources) == []


def deployment(**changes: Any) -> rules.Resource:
    (found,) = [r for r in program_resources("local") if r.type == rules.DEPLOYMENT]
    props = copy.deepcopy(dict(found.props))
    container = props["spec"]["template"]["spec"]["containers"][0]
    for key, value in changes.items():
        if key in ("image", "readinessProbe", "resources"):
            container[key] = value
        else:
            props["spec"][key] = value
    return rules.Resource(found.type, found.name, props)


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("nginx", "has no tag"),
        ("nginx:latest", "'latest' is not allowed"),
        ("registry:5000/nginx", "has no tag"),
        ("nginx@sha256:abc", "is not sha256"),
    ],
)
def test_unpinned_images(image: str, says: str) -> None:
    (message,) = rules.pinned_images(deployment(image=image))
    assert says in message and "rolling:imageTag" in message


@pytest.mark.parametrize("image", ["nginx:1.16.1", "registry:5000/nginx:v2", "nginx@sha256:" + "a" * 64])
def test_pinned_images(image: str) -> None:
    assert rules.pinned_images(deployment(image=image)) == []


def test_readiness_probe_required() -> None:
    (message,) = rules.readiness_probes(deployment(readinessProbe=None))
    assert "has no readinessProbe" in message


def test_requests_must_equal_limits() -> None:
    bad = deployment(resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m"}})
    messages = rules.requests_equal_limits(bad, on_fargate=False)
    assert len(messages) == 2 and "set both to the same value" in messages[0]


def test_fargate_size_checked_on_eks_only() -> None:
    odd = {"cpu": "300m", "memory": "256Mi"}
    bad = deployment(resources={"requests": odd, "limits": odd})
    assert rules.requests_equal_limits(bad, on_fargate=False) == []
    (message,) = rules.requests_equal_limits(bad, on_fargate=True)
    assert "not a Fargate vCPU size" in message


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"strategy": {"type": "Recreate"}}, "Recreate takes every pod down"),
        (
            {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}},
            },
            "take all 2 pods down",
        ),
        ({"replicas": 4, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"}}}, "take all 4"),
    ],
)
def test_rollouts_must_keep_serving(spec: dict[str, Any], says: str) -> None:
    (message,) = rules.keeps_serving(deployment(**spec))
    assert says in message


def test_single_replica_may_roll_with_unavailability() -> None:
    spec = {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}
    assert rules.keeps_serving(deployment(**spec)) == []


def test_replicated_deployment_needs_a_budget() -> None:
    resources = [r for r in program_resources("local") if r.type != rules.PDB]
    (message,) = rules.disruption_budgets(resources)
    assert "nginx-deployment" in message and "PodDisruptionBudget" in message
    single = [r for r in program_resources("local", replicas=1) if r.type != rules.PDB]
    assert rules.disruption_budgets(single) == []


def test_budget_in_another_namespace_does_not_count() -> None:
    resources = program_resources("local")
    moved = [
        rules.Resource(r.type, r.name, {**r.props, "metadata": {**r.props["metadata"], "namespace": "other"}})
        if r.type == rules.PDB
        else r
        for r in resources
    ]
    assert len(rules.disruption_budgets(moved)) == 1


@pytest.mark.parametrize(
    ("drop", "says"),
    [("version", "no Kubernetes version"), ("enabledClusterLogTypes", "logging is off"), ("fargate", "no Fargate")],
)
def test_eks_cluster_rules(drop: str, says: str) -> None:
    (cluster,) = [r for r in program_resources("eks") if r.type == rules.EKS_CLUSTER]
    props = {k: v for k, v in cluster.props.items() if k != drop}
    (message,) = rules.eks_cluster(rules.Resource(cluster.type, cluster.name, props))
    assert says in message


def with_pod_spec(resources: list[rules.Resource], change: Any) -> list[rules.Resource]:
    changed = []
    for r in resources:
        if r.type != rules.DEPLOYMENT:
            changed.append(r)
            continue
        props = copy.deepcopy(dict(r.props))
        change(props["spec"]["template"]["spec"])
        changed.append(rules.Resource(r.type, r.name, props))
    return changed


def test_a_deployment_behind_a_service_must_drain() -> None:
    resources = program_resources("local")
    assert rules.drains_before_stopping(resources) == []
    no_hook = with_pod_spec(resources, lambda spec: spec["containers"][0].pop("lifecycle"))
    (message,) = rules.drains_before_stopping(no_hook)
    assert "no preStop hook" in message and "rolling:drainSeconds" in message
    # Without a Service in front, nothing routes to it: no drain is needed.
    alone = [r for r in no_hook if r.type != rules.SERVICE]
    assert rules.drains_before_stopping(alone) == []


def test_a_drain_longer_than_the_grace_period_is_refused() -> None:
    def short(spec: dict[str, Any]) -> None:
        spec["terminationGracePeriodSeconds"] = 5

    (message,) = rules.drains_before_stopping(with_pod_spec(program_resources("local"), short))
    assert "drains for 5s but is killed after 5s" in message


def _least_privilege(target: str, **extra: object) -> list[str]:
    (found,) = [r for r in program_resources(target, **extra) if r.type == rules.DEPLOYMENT]
    return rules.least_privilege(found)


@pytest.mark.parametrize("target", ["local", "eks"])
def test_an_image_that_needs_root_is_warned_naming_the_setting(target: str) -> None:
    warnings = _least_privilege(target, imageNeedsRoot="true", containerPort=80)
    assert len(warnings) == 2
    assert "may run as root" in warnings[0] and "rolling:imageNeedsRoot" in warnings[0]
    assert "adds capabilities CHOWN, SETGID, SETUID, NET_BIND_SERVICE (rolling:imageNeedsRoot true)" in warnings[1]


def test_escalation_and_a_writable_root_are_reported() -> None:
    changed = deployment()
    container = changed.props["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"capabilities": {"drop": ["ALL"]}}
    changed.props["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    warnings = rules.least_privilege(changed)
    assert [w.split(" ", 2)[2][:20] for w in warnings] == [
        "may run as root (rol",
        "may gain privileges ",
        "can write its root f",
    ]


def _eks_with(change: str) -> list[rules.Resource]:
    resources = [rules.Resource(r.type, r.name, copy.deepcopy(dict(r.props))) for r in program_resources("eks")]
    for r in resources:
        if change == "instance" and r.type == rules.INGRESS:
            r.props["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] = "instance"
        if change == "no-gates" and r.type == rules.NAMESPACE:
            del r.props["metadata"]["labels"][rules.READINESS_GATE_LABEL]
    return resources


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("instance", "has target type 'instance': Fargate pods have no node port"),
        ("no-gates", "lacks the label elbv2.k8s.aws/pod-readiness-gate-inject: enabled"),
    ],
)
def test_an_alb_on_fargate_targets_pods_through_readiness_gates(change: str, says: str) -> None:
    assert rules.alb_ingresses(program_resources("eks")) == []
    (message,) = rules.alb_ingresses(_eks_with(change))
    assert message.startswith("Ingress 'nginx'") and says in message


def test_releases_without_analysis_are_named_on_eks_only() -> None:
    assert rules.analysed_on_eks(program_resources("local", analysis="false")) == []
    (message,) = rules.analysed_on_eks(program_resources("eks", analysis="false"))
    assert message.startswith("Deployment 'nginx-deployment' ships releases without analysis")
    assert "set rolling:analysis true" in message


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (None, "has no permissions boundary"),
        (
            "arn:aws:iam::123456789012:policy/someone-elses",
            "has permissions boundary arn:aws:iam::123456789012:policy/someone-elses",
        ),
    ],
)
def test_a_role_without_the_accounts_boundary_is_refused(given: str | None, says: str) -> None:
    role = rules.Resource("aws:iam/role:Role", "eksRole", {} if given is None else {"permissionsBoundary": given})
    (message,) = rules.bounded_roles(role)
    assert says in message and "policy/rolling-boundary" in message
    bounded = rules.Resource(
        "aws:iam/role:Role", "r", {"permissionsBoundary": "arn:aws:iam::1:policy/rolling-boundary"}
    )
    assert rules.bounded_roles(bounded) == []
