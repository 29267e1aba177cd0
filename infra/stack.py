"""build(settings): pick the target, wire the components, return the stack outputs."""

from __future__ import annotations

import pulumi

from infra import app
from infra.settings import Settings


def build(settings: Settings) -> dict[str, object]:
    """Create every resource of the stack; return the outputs to export."""
    outputs: dict[str, object] = {}
    if settings.target == "eks":
        # Imported here: the local target must not pay for (or need) the AWS SDKs.
        from infra import cluster, network, registry

        vpc = network.Vpc(
            "rolling",
            network.VpcArgs(
                cluster_name=settings.cluster_name,
                cidr=settings.vpc_cidr,
                zones=network.zones(settings.az_count),
                nat_per_zone=settings.nat_gateways == "perAz",
            ),
        )
        eks_cluster = cluster.FargateCluster(
            "rolling",
            cluster.FargateClusterArgs(
                cluster_name=settings.cluster_name,
                kubernetes_version=settings.kubernetes_version,
                fargate_namespaces=settings.fargate_namespaces,
                log_types=settings.cluster_log_types,
            ),
            vpc_id=vpc.vpc_id,
            public_subnet_ids=vpc.public_subnet_ids,
            private_subnet_ids=vpc.private_subnet_ids,
        )
        images = registry.Registry(
            "rolling",
            registry.RegistryArgs(repository_name=settings.ecr_repository, keep_images=settings.ecr_keep_images),
        )
        provider = eks_cluster.provider
        outputs["clusterName"] = eks_cluster.cluster_name
        outputs["kubeconfig"] = eks_cluster.kubeconfig
        outputs["repositoryUrl"] = images.repository_url
    else:
        from infra import local

        provider = local.provider(settings.kubeconfig)

    web = app.WebApp(
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
        ),
        provider=provider,
    )
    outputs.update(
        image=pulumi.Output.from_input(settings.image),
        namespace=web.namespace,
        deploymentName=web.deployment_name,
        serviceName=web.service_name,
    )
    return outputs
