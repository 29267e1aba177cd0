"""FargateCluster (eks): an EKS cluster with no nodes, Fargate profiles, OIDC and control-plane logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra import access


@dataclass(frozen=True)
class AddonVersions:
    """The EKS add-on builds the cluster runs: pinned, so a new build from AWS changes nothing by itself."""

    coredns: str
    kube_proxy: str
    vpc_cni: str


def log_group_name(cluster_name: str) -> str:
    """The log group EKS writes control-plane logs to (it creates one, without retention, if it is missing:
    https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html)."""
    return f"/aws/eks/{cluster_name}/cluster"


def access_owner() -> str:
    """The value of the access entries' owner tag: this project and stack."""
    return f"{pulumi.get_project()}/{pulumi.get_stack()}"


def access_entry_args(entry: access.Entry, owner: str) -> eks.AccessEntryArgs:
    policies = {
        grant.policy: eks.AccessPolicyAssociationArgs(
            policy_arn=grant.policy_arn(entry.partition),
            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(
                type="namespace" if grant.namespaces else "cluster",
                namespaces=list(grant.namespaces) or None,
            ),
        )
        for grant in entry.grants
    }
    # Tagged with the stack that made it: the preflight tells the stack's own entries from others'.
    return eks.AccessEntryArgs(
        principal_arn=entry.principal_arn, access_policies=policies, tags={access.OWNER_TAG: owner}
    )


@dataclass(frozen=True)
class FargateClusterArgs:
    """Inputs of the cluster: plain settings, and the network's ids as Inputs."""

    cluster_name: str
    kubernetes_version: str
    fargate_namespaces: tuple[str, ...]
    log_types: tuple[str, ...]
    log_retention_days: int
    # "standard" or "extended": what EKS does when the version leaves standard support.
    upgrade_policy: str
    addons: AddonVersions
    access_entries: tuple[access.Entry, ...]
    public_access_cidrs: tuple[str, ...]
    public_endpoint: bool
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]


class FargateCluster(pulumi.ComponentResource):
    """The EKS cluster and a Kubernetes provider built from its kubeconfig."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    # The cluster's OIDC provider, which IAM roles for service accounts trust.
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]

    def __init__(self, name: str, args: FargateClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rolling:index:FargateCluster", name, None, opts)
        # Made before the cluster, with a retention, so EKS does not make one that keeps logs forever;
        # deleted with the stack.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=log_group_name(args.cluster_name),
            retention_in_days=args.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            # Fargate only: no EC2 node group at all. Its pods run in the private subnets.
            skip_default_node_group=True,
            fargate=eks.FargateProfileArgs(
                selectors=[aws.eks.FargateProfileSelectorArgs(namespace=ns) for ns in args.fargate_namespaces],
                subnet_ids=args.private_subnet_ids,
            ),
            # IAM roles for service accounts.
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            # Only its access entries reach the API server; the creator's own is pulumi-eks' default.
            access_entries={entry.name: access_entry_args(entry, access_owner()) for entry in args.access_entries}
            or None,
            enabled_cluster_log_types=list(args.log_types),
            endpoint_public_access=args.public_endpoint,
            public_access_cidrs=list(args.public_access_cidrs) if args.public_endpoint else None,
            endpoint_private_access=True,
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=args.upgrade_policy.upper()),
            # Pinned add-on builds: unset, pulumi-eks takes the most recent one at every preview, and the
            # next build AWS publishes becomes an unreviewed change to the cluster.
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(version=args.addons.coredns),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(version=args.addons.kube_proxy),
            vpc_cni_options=eks.VpcCniOptionsArgs(addon_version=args.addons.vpc_cni),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        # pulumi-eks passes `name` through unchanged; tie the output to the cluster
        # so it resolves only once the cluster exists.
        self.cluster_name = cluster.urn.apply(lambda _: args.cluster_name)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.oidc_provider_arn = cluster.oidc_provider_arn
        self.oidc_issuer = cluster.oidc_issuer
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"clusterName": self.cluster_name, "kubeconfig": self.kubeconfig})
