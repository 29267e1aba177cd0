"""The way in on eks: the AWS Load Balancer Controller, and an Ingress it turns into an ALB.

Fargate pods are reachable only by IP: an ALB whose target group registers pod IPs (target type
``ip``). Instance-mode and classic load balancers need nodes, and Fargate has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import address
from infra.weights import ACTION, ACTION_ANNOTATION, USE_ANNOTATION, forward_action

# The controller, pinned: its Helm chart (chart and app versions are the same since 3.0) and the IAM
# permissions its documentation publishes for that version, kept as data beside this file:
# docs/install/iam_policy.json at tag v3.5.0 of github.com/kubernetes-sigs/aws-load-balancer-controller.
CONTROLLER_VERSION = "3.5.0"
CHART = "aws-load-balancer-controller"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
IAM_POLICY = Path(__file__).parent / "data" / f"aws-load-balancer-controller-v{CONTROLLER_VERSION}-iam-policy.json"
# The controller runs in kube-system (on Fargate: the profile selects it) as this service account,
# the only identity its role trusts.
CONTROLLER_NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
INGRESS_CLASS = "alb"
# The namespace label that makes the controller's webhook add a readiness gate to each new pod behind
# an ALB target group: the pod counts as ready only once the ALB reports its target healthy.
READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"
# How the ALB checks a target: the page the readiness probe reads, often, so a new pod is taken into
# service (and its readiness gate opens) within seconds.
HEALTH_CHECK = {"interval-seconds": "5", "timeout-seconds": "2", "healthy-threshold-count": "2"}


def iam_policy_document() -> dict[str, Any]:
    return dict(json.loads(IAM_POLICY.read_text()))


def trust_policy(oidc_provider_arn: str, oidc_issuer: str) -> str:
    """Only the controller's service account, through the cluster's OIDC provider, for STS, may assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{oidc_issuer}:sub": f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{SERVICE_ACCOUNT}",
                            f"{oidc_issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        },
        indent=2,
    )


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    # The OIDC issuer without https://, as IAM conditions name it.
    oidc_issuer: pulumi.Input[str]


class LoadBalancerController(pulumi.ComponentResource):
    """The controller's IAM role (IRSA) and its Helm release, ready before anything depends on it."""

    role_arn: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rolling:index:LoadBalancerController", name, None, opts)
        aws_child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description=f"AWS Load Balancer Controller {CONTROLLER_VERSION} (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
                lambda parts: trust_policy(parts[0], parts[1])
            ),
            opts=aws_child,
        )
        policy = aws.iam.Policy(
            f"{name}-policy",
            description=f"What the AWS Load Balancer Controller {CONTROLLER_VERSION} needs (its published policy)",
            policy=json.dumps(iam_policy_document()),
            opts=aws_child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-policy-attachment", role=role.name, policy_arn=policy.arn, opts=aws_child
        )
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=CHART,
            chart=CHART,
            version=CONTROLLER_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=CONTROLLER_NAMESPACE,
            values=controller_values(args.cluster_name, region, args.vpc_id, role.arn),
            # Helm waits for the controller's pods and its webhook to be ready: the Ingress and the
            # app's pods (whose readiness gates the webhook adds) are created only after that.
            skip_await=False,
            timeout=600,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})


def controller_values(
    cluster_name: pulumi.Input[str],
    region: pulumi.Input[str],
    vpc_id: pulumi.Input[str],
    role_arn: pulumi.Input[str],
) -> dict[str, Any]:
    return {
        # Fargate has no instance metadata: the controller is told where it is.
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "serviceAccount": {
            "create": True,
            "name": SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        # The chart makes the webhook's certificate when it renders; keep the one in the cluster, so
        # an `up` with no change is no change (and the webhook is never briefly untrusted).
        "keepTLSSecret": True,
        # Only Ingresses: the controller must not take over Services of type LoadBalancer.
        "enableServiceMutatorWebhook": False,
        "createIngressClassResource": True,
        "ingressClass": INGRESS_CLASS,
    }


@dataclass(frozen=True)
class Weights:
    """Users' requests split between the app's Service and the canary's, each a target group of the ALB:
    ``canary`` percent to the canary, the rest to the app (canaryTraffic weights)."""

    canary_service: pulumi.Input[str]
    canary: int


@dataclass(frozen=True)
class AppIngressArgs:
    namespace: pulumi.Input[str]
    service_name: pulumi.Input[str]
    service_port: str
    health_check_path: str
    scheme: str
    deregistration_delay_seconds: int
    certificate_arn: str | None
    # None: the app's Service alone, as the Ingress's default backend.
    weights: Weights | None = None


def ingress_annotations(args: AppIngressArgs) -> dict[str, str]:
    prefix = "alb.ingress.kubernetes.io/"
    annotations = {
        "scheme": args.scheme,
        # Pod IPs: the only targets Fargate has.
        "target-type": "ip",
        "healthcheck-path": args.health_check_path,
        **{f"healthcheck-{key}": value for key, value in HEALTH_CHECK.items()},
        "success-codes": "200",
        # How long a stopping pod's target keeps its open connections; the pod's drain outlasts it.
        "target-group-attributes": f"deregistration_delay.timeout_seconds={args.deregistration_delay_seconds}",
    }
    if args.certificate_arn:
        annotations |= {
            "certificate-arn": args.certificate_arn,
            "listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}], separators=(",", ":")),
            "ssl-redirect": "443",
            "ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        }
    else:
        annotations["listen-ports"] = json.dumps([{"HTTP": 80}], separators=(",", ":"))
    return {prefix + key: value for key, value in annotations.items()}


def weighted_annotations(args: AppIngressArgs) -> dict[str, pulumi.Input[str]]:
    """With weights, the forward action, from both Services' names (so the Ingress follows both)."""
    weights = args.weights
    if weights is None:
        return {}
    action = pulumi.Output.all(args.service_name, weights.canary_service).apply(
        lambda names: forward_action(weights.canary, names[0], names[1])
    )
    return {ACTION_ANNOTATION: action}


def default_backend(args: AppIngressArgs) -> k8s.networking.v1.IngressBackendArgs:
    """The app's Service, or with weights the forward action that splits requests between the two."""
    if args.weights is None:
        name, port = args.service_name, args.service_port
    else:
        name, port = ACTION, USE_ANNOTATION
    return k8s.networking.v1.IngressBackendArgs(
        service=k8s.networking.v1.IngressServiceBackendArgs(
            name=name, port=k8s.networking.v1.ServiceBackendPortArgs(name=port)
        )
    )


# The provider's annotation that forces its Server-Side Apply over fields another manager holds.
PATCH_FORCE = "pulumi.com/patchForce"


class AppIngress(pulumi.ComponentResource):
    """An Ingress of class alb in front of the app's Service; its ALB's address is ``url``."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: AppIngressArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rolling:index:AppIngress", name, None, opts)
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name,
                namespace=args.namespace,
                annotations={
                    **ingress_annotations(args),
                    **weighted_annotations(args),
                    # A breach sets the canary's weight to 0 on this Ingress through the Kubernetes API at
                    # once (infra/rollout/command/weighted.py), which makes that client a manager of the
                    # annotation; the next `up` applies its own weight with Server-Side Apply, which only
                    # takes a field another manager holds when forced (pulumi-kubernetes pkg/await
                    # ssaUpdate at v4.25.0). The program owns the Ingress: every update takes it back.
                    PATCH_FORCE: "true",
                },
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=INGRESS_CLASS, default_backend=default_backend(args)
            ),
            # Created once the controller is ready. On destroy the provider waits until the Ingress is
            # gone, which is when the controller has deleted the ALB (its finalizer): only then may the
            # controller, the cluster and the VPC go.
            opts=pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None),
        )
        scheme = "https" if args.certificate_arn else "http"
        # The provider waits for the ALB's address before it reports the Ingress created.
        self.url = ingress.status.apply(lambda status: address.url(scheme, _hostname(status)))
        self.register_outputs({"url": self.url})


def _hostname(status: Any) -> str:
    """The load balancer's address as the Ingress's status has it: the ALB's DNS name, or the address of the
    stand-in on the local target (an IP; Kubernetes refuses an IP as a hostname there)."""
    try:
        found = status.load_balancer.ingress[0]
    except (AttributeError, IndexError, TypeError):
        return ""
    return str(getattr(found, "hostname", None) or getattr(found, "ip", None) or "")
