"""Pulumi CrossGuard entry point: `pulumi preview --policy-pack policy`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules

Report = Callable[[str, str | None], None]


def resource_policy(
    name: str,
    description: str,
    rule: Callable[[rules.Resource], list[str]],
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: Report) -> None:
        for message in rule(rules.Resource(args.resource_type, args.name, args.props)):
            report(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=level)


def stack_policy(
    name: str,
    description: str,
    rule: Callable[[list[rules.Resource]], list[str]],
    level: EnforcementLevel | None = None,
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: Report) -> None:
        resources = [rules.Resource(r.resource_type, r.name, r.props) for r in args.resources]
        for message in rule(resources):
            report(message, None)

    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=level)


def fargate_sizes(resources: list[rules.Resource]) -> list[str]:
    fargate = rules.on_fargate(resources)
    return [m for r in resources for m in rules.requests_equal_limits(r, fargate)]


def eks(resources: list[rules.Resource]) -> list[str]:
    return [m for r in resources for m in rules.eks_cluster(r)]


POLICIES: list[Any] = [
    resource_policy(
        "images-pinned", "Container images are pinned by a tag other than latest, or a digest.", rules.pinned_images
    ),
    resource_policy("readiness-probe", "Every container has a readiness probe.", rules.readiness_probes),
    # A warning, not a refusal: an image that must start as root is a choice made by setting
    # rolling:imageNeedsRoot, and the warning names it on every preview.
    resource_policy(
        "least-privilege",
        "Containers run as a non-root user with no added capability, no privilege escalation and a read-only root.",
        rules.least_privilege,
        EnforcementLevel.ADVISORY,
    ),
    resource_policy(
        "rolling-update-keeps-serving",
        "Deployments roll with RollingUpdate and keep a pod serving when replicas > 1.",
        rules.keeps_serving,
    ),
    stack_policy(
        "requests-equal-limits",
        "Containers request what they are limited to, at a size Fargate can run (on EKS).",
        fargate_sizes,
    ),
    resource_policy(
        "iam-roles-bounded",
        "Every IAM role carries the account's permissions boundary, rolling-boundary.",
        rules.bounded_roles,
    ),
    stack_policy(
        "pod-disruption-budget",
        "Every Deployment with more than one replica has a policy/v1 PodDisruptionBudget.",
        rules.disruption_budgets,
    ),
    stack_policy(
        "drains-before-stopping",
        "A Deployment behind a Service has a preStop drain shorter than its grace period.",
        rules.drains_before_stopping,
    ),
    stack_policy(
        "alb-ingress",
        "On EKS, an ALB Ingress targets pod IPs and its namespace turns on the ALB readiness gates.",
        rules.alb_ingresses,
    ),
    stack_policy(
        "eks-cluster", "The EKS cluster pins its version, logs its control plane and has a Fargate profile.", eks
    ),
    # A warning: shipping on readiness alone is a choice (rolling:analysis false, say for an internal ALB
    # the deploying runner cannot reach), named on every preview.
    stack_policy(
        "rollout-analysis",
        "On EKS, the rollout command analyses what each release serves and rolls back one that fails its users.",
        rules.analysed_on_eks,
        EnforcementLevel.ADVISORY,
    ),
]

PolicyPack(name="rolling", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
