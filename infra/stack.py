"""build(settings): pick the target, wire the components, return the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import app
from infra.settings import EksSettings, Settings


def build(settings: Settings) -> dict[str, object]:
    """Create every resource of the stack; return the outputs to export."""
    outputs: dict[str, object] = {}
    provider: k8s.Provider
    if settings.eks is not None:
        provider = _eks(settings.eks, outputs)
    else:
        # Imported here like the eks modules, so each target loads only what it uses.
        from infra import local

        provider = local.provider(settings.kubeconfig)

    web = workload(settings, provider)
    outputs.update(
        image=pulumi.Output.from_input(settings.image),
        imageTag=pulumi.Output.from_input(settings.image_tag),
        namespace=web.namespace,
        deploymentName=web.deployment_name,
        serviceName=web.service_name,
    )
    return outputs


def workload(settings: Settings, provider: k8s.Provider) -> app.WebApp:
    """The app's Kubernetes resources through ``provider``: what `python -m infra.render` writes out."""
    return app.WebApp(
        "nginx",
        app.WebAppArgs(
            image=settings.image,
            namespace=settings.namespace,
            rollout=settings.rollout,
            min_ready_seconds=settings.min_ready_seconds,
            progress_deadline_seconds=settings.progress_deadline_seconds,
            await_timeout_seconds=settings.await_timeout_seconds,
            cpu=settings.cpu,
            memory=settings.memory,
            drain_seconds=settings.drain_seconds,
            termination_grace_period_seconds=settings.termination_grace_period_seconds,
            container_port=settings.container_port,
            needs_root=settings.image_needs_root,
        ),
        pulumi.ResourceOptions(providers=[provider]),
    )


def _eks(eks: EksSettings, outputs: dict[str, object]) -> k8s.Provider:
    """The network, the Fargate cluster and the registry; the cluster's Kubernetes provider."""
    # Imported here: the local target must not pay for (or need) the AWS SDKs.
    from infra import eks as eks_cluster
    from infra import network, registry

    vpc = network.Vpc(
        "rolling",
        network.VpcArgs(
            cluster_name=eks.cluster_name,
            cidr=eks.vpc_cidr,
            zones=network.zones(eks.az_count),
            nat_per_zone=eks.nat_gateways == "perAz",
        ),
    )
    fargate_cluster = eks_cluster.FargateCluster(
        "rolling",
        eks_cluster.FargateClusterArgs(
            cluster_name=eks.cluster_name,
            kubernetes_version=eks.kubernetes_version,
            fargate_namespaces=eks.fargate_namespaces,
            log_types=eks.cluster_log_types,
            vpc_id=vpc.vpc_id,
            public_subnet_ids=vpc.public_subnet_ids,
            private_subnet_ids=vpc.private_subnet_ids,
        ),
    )
    ecr = registry.Registry(
        "rolling",
        registry.RegistryArgs(repository_name=eks.ecr_repository, keep_images=eks.ecr_keep_images),
    )
    outputs["clusterName"] = fargate_cluster.cluster_name
    outputs["kubeconfig"] = fargate_cluster.kubeconfig
    outputs["repositoryUrl"] = ecr.repository_url
    return fargate_cluster.provider
