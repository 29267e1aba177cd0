"""build(settings): pick the target, wire the components, return the stack outputs."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import access, address, app, boundary, eks_versions, images, release, rollout_wait
from infra.settings import EksSettings, Settings


def build(settings: Settings, settle: rollout_wait.Settle = rollout_wait.settle) -> dict[str, object]:
    """Create every resource of the stack, its rollout waited for by ``settle``; return the outputs to export."""
    outputs: dict[str, object] = {}
    if settings.eks is not None:
        _build_eks(settings, settings.eks, outputs, settle)
    else:
        # Imported here like the eks modules, so each target loads only what it uses.
        from infra import local

        kubeconfig = settings.local.kubeconfig if settings.local else None
        provider = local.provider(kubeconfig)
        made: list[Any] = []

        def standin_first(
            namespace: pulumi.Input[str],
            service_name: pulumi.Output[str],
            canary_service_name: pulumi.Output[str] | None,
        ) -> list[pulumi.Resource]:
            # With canaryTraffic weights, the same Ingress as on eks, for the load balancer stand-in on this
            # machine (rigs/alb.py), which gives it its address.
            if canary_service_name is None:
                return []
            made.append(
                ingress(
                    settings, namespace, service_name, canary_service_name, pulumi.ResourceOptions(providers=[provider])
                )
            )
            return [made[0]]

        web = workload(settings, provider, before_pods=standin_first)
        wait_for_rollout(settings, web, kubeconfig, settle)
        _app_outputs(settings, web, outputs)
        # The Service's address, which this machine routes to the local node; or the stand-in's.
        outputs["url"] = made[0].url if made else web.cluster_ip.apply(lambda ip: address.url("http", ip))
    return outputs


def workload(
    settings: Settings,
    provider: k8s.Provider,
    namespace_labels: Mapping[str, str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    before_pods: app.BeforePods | None = None,
) -> app.WebApp:
    """The app's Kubernetes resources through ``provider``: what `python -m rigs.render` writes out."""
    return app.WebApp(
        "nginx",
        app.WebAppArgs(
            image=settings.image,
            namespace=settings.namespace,
            rollout=settings.rollout,
            min_ready_seconds=settings.min_ready_seconds,
            progress_deadline_seconds=settings.progress_deadline_seconds,
            cpu=settings.cpu,
            memory=settings.memory,
            drain_seconds=settings.drain_seconds,
            termination_grace_period_seconds=settings.termination_grace_period_seconds,
            keep_alive_seconds=settings.keep_alive_seconds,
            connection_max_seconds=settings.connection_max_seconds,
            container_port=settings.container_port,
            needs_root=settings.image_needs_root,
            namespace_labels=dict(namespace_labels or {}),
            keep_running_image=settings.keeps_running_image,
            canary_image=settings.canary_image,
            canary_replicas=settings.canary_replicas,
            weighted_canary=settings.canary_traffic == "weights",
            analysis=settings.analysis,
            change_cause=release.annotation(settings.change_cause, settings.image, settings.keeps_running_image),
        ),
        pulumi.ResourceOptions(providers=[provider], depends_on=list(depends_on)),
        before_pods=before_pods,
    )


def wait_for_rollout(
    settings: Settings, web: app.WebApp, kubeconfig: pulumi.Input[str] | None, settle: rollout_wait.Settle
) -> None:
    """`up` returns once the app's rollout is complete, or fails with its cause (infra/rollout_wait.py)."""
    rollout_wait.wait_for_rollout(
        web.deployment,
        web.namespace,
        web.image,
        kubeconfig,
        timeout=settings.await_timeout_seconds,
        fargate=settings.eks is not None,
        settle=settle,
        keeps_running=settings.keeps_running_image,
    )


def namespace_labels(settings: Settings) -> dict[str, str]:
    """Labels the app's namespace carries for other components: on eks, the ALB readiness gates."""
    if settings.eks is None:
        return {}
    from infra.alb import READINESS_GATE_LABEL

    return {READINESS_GATE_LABEL: "enabled"}


def ingress(
    settings: Settings,
    namespace: pulumi.Input[str],
    service_name: pulumi.Input[str],
    canary_service_name: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions,
) -> Any:
    """The ALB Ingress in front of the app's Service, and the canary's with canaryTraffic weights. On local
    (weights only) the load balancer is the stand-in on this machine, which reads the forward action alone: an
    internal scheme, no deregistration delay of its own (kube-proxy's), HTTP."""
    from infra import alb

    eks = settings.eks
    weights = None if canary_service_name is None else alb.Weights(canary_service_name, settings.canary_weight)
    return alb.AppIngress(
        "nginx",
        alb.AppIngressArgs(
            namespace=namespace,
            service_name=service_name,
            service_port="http",
            health_check_path=app.PROBE_PATH,
            scheme=eks.alb_scheme if eks else "internal",
            deregistration_delay_seconds=eks.deregistration_delay_seconds if eks else 0,
            certificate_arn=eks.certificate_arn if eks else None,
            weights=weights,
        ),
        opts,
    )


def _app_outputs(settings: Settings, web: app.WebApp, outputs: dict[str, object]) -> None:
    outputs.update(
        # What runs, from the Deployment: with no image named, the one the stack kept.
        image=web.image,
        imageTag=web.image.apply(lambda image: images.parse(image)[1] or ""),
        namespace=web.namespace,
        deploymentName=web.deployment_name,
        serviceName=web.service_name,
    )
    if web.canary is not None:
        # The canary beside it (the rollout command's --canary), while there is one.
        outputs["canaryImage"] = settings.canary_image


def _preflight(eks: EksSettings, owner: str) -> str:
    """Refuse what AWS would refuse later, mid-update (an ACM certificate must be in the ALB's region, one
    access entry a principal), and warn in every preview when the Kubernetes version nears the end of
    standard support. ``owner``: the tag value of the access entries this stack makes. Returns the account
    the update runs in."""
    import pulumi_aws as aws

    region = aws.config.region
    if eks.certificate_arn and region and eks.certificate_arn.split(":")[3] != region:
        raise pulumi.RunError(
            f"rolling:certificateArn {eks.certificate_arn} is in {eks.certificate_arn.split(':')[3]}, but the "
            f"stack's aws:region is {region}: an ALB takes certificates from ACM in its own region; "
            "request or import the certificate there"
        )
    caller = aws.get_caller_identity().arn
    listed = access.listed_caller(caller, eks.cluster_admins or ())
    running = _running_version(eks.cluster_name)
    if listed:
        tags = _access_entry_tags(eks.cluster_name, listed) if running else None
        refusal = access.caller_entry_refusal(listed, caller, running is not None, tags, owner)
        if refusal:
            raise pulumi.RunError(refusal)
    ahead = eks_versions.ahead_of_settings(eks.kubernetes_version, running, eks.cluster_name)
    if ahead:
        raise pulumi.RunError(ahead)
    warning = eks_versions.support_warning(eks.kubernetes_version, datetime.date.today())
    if warning:
        pulumi.log.warn(warning)
    if not eks.cluster_admins and not eks.deploy_role_arn:
        pulumi.log.warn(
            "neither rolling:clusterAdmins nor rolling:deployRoleArn is set: only the IAM principal that created "
            "the cluster can reach its API, so the deploy workflow cannot (docs/aws.md, the first day)"
        )
    return str(caller.split(":")[4])


def _not_found(err: Exception) -> bool:
    """Whether the AWS provider's data source said the object is not there. Its find functions wrap
    ResourceNotFoundException in the plugin SDK's retry.NotFoundError, whose text is "couldn't find resource"
    (terraform-plugin-sdk v2 helper/retry/error.go); a provider that passes AWS's own error on names the
    exception. A throttled or denied call says something else, and is no answer."""
    text = str(err)
    return "couldn't find resource" in text or "ResourceNotFoundException" in text


def _access_entry_tags(cluster_name: str, principal_arn: str) -> dict[str, str] | None:
    """The tags of the access entry the cluster has for ``principal_arn``, or None when it has none."""
    import pulumi_aws as aws

    try:
        found = aws.eks.get_access_entry(cluster_name=cluster_name, principal_arn=principal_arn)
    except Exception as err:
        if _not_found(err):
            return None
        raise pulumi.RunError(
            f"cannot tell whether {principal_arn}, listed in rolling:clusterAdmins and running this update, "
            f"already has an access entry in {cluster_name} ({err}); it needs eks:DescribeAccessEntry"
        ) from err
    return dict(found.tags or {})


def _running_version(cluster_name: str) -> str | None:
    """The Kubernetes version the stack's cluster runs, or None when there is no such cluster (not made yet).
    Any other failure stops the update: a throttled or denied call is no evidence that the cluster is not
    there, and taking it for that would skip the version check and misjudge the access entries."""
    import pulumi_aws as aws

    try:
        return str(aws.eks.get_cluster(name=cluster_name).version)
    except Exception as err:
        if _not_found(err):
            return None
        raise pulumi.RunError(
            f"cannot read EKS cluster {cluster_name} to check the Kubernetes version it runs ({err}); the "
            "principal running this update needs eks:DescribeCluster on it (a throttled call: run the update "
            "again); nothing was changed"
        ) from err


def _build_eks(settings: Settings, eks: EksSettings, outputs: dict[str, object], settle: rollout_wait.Settle) -> None:
    """The network, the Fargate cluster, the registry, the load balancer controller, the app and its ALB."""
    # Imported here: the local target must not pay for (or need) the AWS SDKs.
    from infra import alb, network, registry
    from infra import eks as eks_cluster

    account = _preflight(eks, eks_cluster.access_owner())
    # Every IAM role of the stack, pulumi-eks's own included, carries the account's permissions boundary.
    pulumi.runtime.register_resource_transform(boundary.transform(boundary.arn(account)))

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
            log_retention_days=eks.cluster_log_retention_days,
            upgrade_policy=eks.upgrade_policy,
            addons=eks_cluster.AddonVersions(
                coredns=str(eks.coredns_version),
                kube_proxy=str(eks.kube_proxy_version),
                vpc_cni=str(eks.vpc_cni_version),
            ),
            access_entries=tuple(
                access.entries(eks.cluster_admins or (), eks.deploy_role_arn, eks.preview_role_arn, settings.namespace)
            ),
            public_access_cidrs=eks.public_access_cidrs,
            public_endpoint=eks.api_endpoint == "public",
            vpc_id=vpc.vpc_id,
            public_subnet_ids=vpc.public_subnet_ids,
            private_subnet_ids=vpc.private_subnet_ids,
        ),
    )
    ecr = registry.Registry(
        "rolling",
        registry.RegistryArgs(
            repository_name=eks.ecr_repository,
            keep_images=eks.ecr_keep_images,
            delete_images_on_destroy=eks.ecr_on_destroy == "delete",
            adopt_existing=registry.adopts(eks.ecr_repository, eks.ecr_on_destroy == "delete"),
        ),
    )
    provider = fargate_cluster.provider
    controller = alb.LoadBalancerController(
        "alb-controller",
        alb.LoadBalancerControllerArgs(
            cluster_name=fargate_cluster.cluster_name,
            vpc_id=vpc.vpc_id,
            oidc_provider_arn=fargate_cluster.oidc_provider_arn,
            oidc_issuer=fargate_cluster.oidc_issuer,
        ),
        pulumi.ResourceOptions(providers=[provider]),
    )
    # After the controller: its webhook adds the readiness gates to the app's pods as they are made,
    # and on destroy the app and its Ingress (with the ALB) go before the controller does.
    made: list[Any] = []

    def alb_first(
        namespace: pulumi.Input[str], service_name: pulumi.Output[str], canary_service_name: pulumi.Output[str] | None
    ) -> list[pulumi.Resource]:
        # Before the pods: the controller binds the target groups while reconciling the Ingress, and
        # injects readiness gates only into pods created after that.
        opts = pulumi.ResourceOptions(providers=[provider], depends_on=[controller])
        made.append(ingress(settings, namespace, service_name, canary_service_name, opts))
        return [made[0]]

    web = workload(settings, provider, namespace_labels(settings), depends_on=[controller], before_pods=alb_first)
    wait_for_rollout(settings, web, fargate_cluster.kubeconfig, settle)
    url = made[0].url
    _app_outputs(settings, web, outputs)
    outputs["clusterName"] = fargate_cluster.cluster_name
    outputs["kubeconfig"] = fargate_cluster.kubeconfig
    outputs["repositoryUrl"] = ecr.repository_url
    outputs["url"] = url
