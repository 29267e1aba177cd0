"""FargateCluster (eks): an EKS cluster with no nodes, Fargate profiles, OIDC and control-plane logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class FargateClusterArgs:
    """Inputs of the cluster: plain settings, and the network's ids as Inputs."""

    cluster_name: str
    kubernetes_version: str
    fargate_namespaces: tuple[str, ...]
    log_types: tuple[str, ...]
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
            enabled_cluster_log_types=list(args.log_types),
            endpoint_public_access=True,
            endpoint_private_access=True,
            opts=pulumi.ResourceOptions(parent=self),
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
