"""The keys only the eks target reads."""

from __future__ import annotations

from dataclasses import dataclass

from infra import eks_versions
from infra.settings.declaration import setting
from infra.settings.defaults import (
    ALB_PROPAGATION_SECONDS,
    ANALYSIS_SOURCES,
    ECR_ON_DESTROY,
    METRICS_LEAST_WINDOW_S,
    METRICS_WINDOW_S,
    NAT_MODES,
    UPGRADE_POLICIES,
)
from infra.settings.parsers import (
    _addon_version,
    _certificate_arn,
    _choice,
    _cidr_list,
    _cluster_name,
    _ecr_name,
    _int_between,
    _k8s_version,
    _label_list,
    _log_types,
    _principal_list,
    _retention,
    _role_arn,
    _vpc_cidr,
)


@dataclass(frozen=True)
class EksSettings:
    """What only the ``eks`` target reads: the cluster, its network and its registry."""

    cluster_name: str = setting(
        _cluster_name,
        default="rolling",
        description="the EKS cluster name.",
        accepted="an EKS cluster name",
        targets=("eks",),
    )
    kubernetes_version: str = setting(
        _k8s_version,
        default=eks_versions.DEFAULT,
        description="the pinned Kubernetes minor version of the cluster (quote it). A preview warns "
        f"{eks_versions.WARN_DAYS} days before it leaves EKS standard support.",
        accepted="`1.NN`; quote it in YAML",
        targets=("eks",),
    )
    upgrade_policy: str = setting(
        _choice(UPGRADE_POLICIES),
        default="standard",
        description="what EKS does when kubernetesVersion leaves standard support: standard (AWS upgrades the "
        "control plane) or extended (it stays, at the extended-support hourly rate).",
        accepted="`standard` or `extended`",
        targets=("eks",),
    )
    coredns_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the coredns EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.13.2-eksbuild.1`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    kube_proxy_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the kube-proxy EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.35.0-eksbuild.2`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    vpc_cni_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the vpc-cni EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.21.1-eksbuild.3`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    cluster_admins: tuple[str, ...] = setting(
        _principal_list,
        default="",
        unset=True,
        description="IAM role or user ARNs, comma-separated, given cluster admin (an EKS access entry with "
        "AmazonEKSClusterAdminPolicy); the principal that created the cluster keeps admin too.",
        accepted="comma-separated IAM role or user ARNs (not `assumed-role` sessions)",
        shown_default="none",
        targets=("eks",),
    )
    deploy_role_arn: str | None = setting(
        _role_arn,
        default="",
        unset=True,
        description="the IAM role the deploy workflow assumes: an access entry with edit rights in the app "
        "namespace and read-only rights elsewhere.",
        accepted="an IAM role ARN",
        targets=("eks",),
    )
    preview_role_arn: str | None = setting(
        _role_arn,
        default="",
        unset=True,
        description="the IAM role pull-request previews assume: an access entry with read-only rights.",
        accepted="an IAM role ARN",
        targets=("eks",),
    )
    public_access_cidrs: tuple[str, ...] = setting(
        _cidr_list,
        default="0.0.0.0/0",
        description="IPv4 networks, comma-separated, that may reach the cluster's public API endpoint "
        "(still authenticated by IAM). Narrow it to your offices and self-hosted runners.",
        accepted="comma-separated IPv4 networks",
        targets=("eks",),
    )
    api_endpoint: str = setting(
        _choice(("public", "private")),
        default="public",
        description="public (the API endpoint is reachable from publicAccessCidrs and from the VPC) or private "
        "(from the VPC only: CI then needs a runner in or peered with the VPC).",
        accepted="`public` or `private`",
        targets=("eks",),
    )
    vpc_cidr: str = setting(
        _vpc_cidr,
        default="10.0.0.0/16",
        description="the VPC's IPv4 range, /16 to /20.",
        accepted="an IPv4 network, /16 to /20",
        targets=("eks",),
    )
    az_count: int = setting(
        _int_between(2, 6),
        default=2,
        description="availability zones to spread subnets over, 2 to 6.",
        accepted="2 to 6, no more than the region has",
        targets=("eks",),
    )
    nat_gateways: str = setting(
        _choice(NAT_MODES),
        default="single",
        description="single (one NAT gateway) or perAz (one per availability zone, survives an AZ outage).",
        accepted="`single` or `perAz`",
        targets=("eks",),
    )
    cluster_log_types: tuple[str, ...] = setting(
        _log_types,
        default="api,audit,authenticator",
        description="control-plane log types sent to CloudWatch, comma-separated "
        "(api, audit, authenticator, controllerManager, scheduler).",
        accepted="any of api, audit, authenticator, controllerManager, scheduler",
        targets=("eks",),
    )
    cluster_log_retention_days: int = setting(
        _retention,
        default=30,
        description="days CloudWatch keeps the control-plane logs (the log group the stack creates and "
        "deletes on destroy).",
        accepted="a retention CloudWatch accepts: 1, 3, 5, 7, 14, 30, 60, 90, … 3653",
        targets=("eks",),
    )
    fargate_namespaces: tuple[str, ...] = setting(
        _label_list,
        default="",
        unset=True,
        description="namespaces the Fargate profile selects, comma-separated; must include namespace. "
        "Default the app namespace; kube-system is always added.",
        accepted="comma-separated; must include `namespace`; `kube-system` is always added",
        shown_default="the app namespace",
        targets=("eks",),
    )
    ecr_repository: str = setting(
        _ecr_name,
        default="rolling",
        description="the ECR repository the deploy workflow pushes images to (immutable tags, scanned on push).",
        accepted="the ECR repository name",
        targets=("eks",),
    )
    ecr_on_destroy: str = setting(
        _choice(ECR_ON_DESTROY),
        default="delete",
        description="what `pulumi destroy` does with the ECR repository: delete (with every image in it) or "
        "retain (it stays in the account, images and all, and the stack forgets it; a stack made again takes "
        "it over instead of failing on it).",
        accepted="`delete` (with its images) or `retain`",
        targets=("eks",),
    )
    ecr_keep_images: int = setting(
        _int_between(1, 1000),
        default=30,
        description="how many of the newest images the ECR lifecycle policy keeps, 1 to 1000.",
        accepted="1 to 1000 newest images kept",
        targets=("eks",),
    )
    alb_scheme: str = setting(
        _choice(("internet-facing", "internal")),
        default="internet-facing",
        description="internet-facing (an ALB in the public subnets, reachable from anywhere) or internal "
        "(private subnets, reachable from the VPC and what is peered with it).",
        accepted="`internet-facing` or `internal`",
        targets=("eks",),
    )
    certificate_arn: str | None = setting(
        _certificate_arn,
        default="",
        unset=True,
        description="an ACM certificate ARN in the stack's region; when set the ALB serves HTTPS on 443 and "
        "redirects HTTP to it.",
        accepted="`arn:aws:acm:<region>:<account>:certificate/<id>`; turns on HTTPS with a redirect",
        targets=("eks",),
    )
    deregistration_delay_seconds: int = setting(
        _int_between(0, 3600),
        default=20,
        description="seconds the ALB keeps a stopping pod's open connections; drainSeconds must outlast it by "
        f"{ALB_PROPAGATION_SECONDS} s.",
        accepted=f"0 to 3600; at most `drainSeconds` - {ALB_PROPAGATION_SECONDS}",
        targets=("eks",),
    )
    analysis_source: str = setting(
        _choice(ANALYSIS_SOURCES),
        default="probe",
        description="Where the rollout command's analysis gets its evidence: probe (requests of its own to the "
        "stack's url, which must be reachable from where it runs) or cloudwatch (the ALB's metrics for the app's "
        "target group, read with the AWS CLI, for a runner that cannot reach the ALB: judged a minute at a time "
        f"against the old version's last minutes; bake and canary at least {METRICS_LEAST_WINDOW_S} s, "
        f"{METRICS_WINDOW_S} s when unset).",
        accepted="`probe` or `cloudwatch`",
        targets=("eks",),
    )
