"""WebApp: the app's namespace, the nginx Deployment, its Service, PodDisruptionBudget and NetworkPolicy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra import images, release, strategy
from infra.identity import (
    ANALYSIS_ANNOTATION,
    APP,
    CANARY_DEPLOYMENT,
    CANARY_LABELS,
    CONTAINER,
    DEPLOYMENT,
    LABELS,
    SERVICE,
)
from infra.rollout_wait import SKIP_AWAIT

# The Service's port; the container's is a setting (8080 for the unprivileged app image).
SERVICE_PORT = 80
REVISION_HISTORY = 5
# The container image's place in the Deployment's inputs (one container).
IMAGE_PATH = images.CONTAINER_IMAGE_PATH
# The page the probes read (and, on eks, the ALB's health check).
PROBE_PATH = "/"
# The uid and gid the pod runs as unless the image needs root: fixed, not root, and above the
# range a host's own users and system accounts take (so a process that escapes owns nothing there).
APP_UID = 10001
# The four capabilities the stock nginx image uses when it starts as root: chown its cache, switch to
# its worker user and group, bind port 80.
ROOT_CAPABILITIES = ["CHOWN", "SETGID", "SETUID", "NET_BIND_SERVICE"]
# Reviewers' scanners (checkov) read these inline skips; each gives its reason.
DIGEST_SKIP = (
    "CKV_K8S_43=the tag is pinned (latest refused) and ECR tags are immutable; "
    "the deploy workflow can pin a digest with rolling:imageDigest"
)
# Writable paths nginx needs under a read-only root filesystem, each with the most it may hold: nginx
# writes request bodies too large for memory and its pid file there, nothing else. Over its limit the
# kubelet evicts the pod, rather than let it fill the node's (or Fargate's 20 GiB) disk.
SCRATCH = {"cache": "/var/cache/nginx", "run": "/var/run", "tmp": "/tmp"}
SCRATCH_LIMITS = {"cache": "64Mi", "run": "1Mi", "tmp": "64Mi"}
# What the container asks of the pod's ephemeral storage (its logs go to the container's output, which
# the kubelet counts too), and the most it may use: the scratch volumes and a margin for logs. On
# Fargate every pod has 20 GiB included, and storage is added only for requests beyond it ("sum of all
# requests + 10% + 5 GiB": https://aws.amazon.com/blogs/containers/amazon-eks-fargate-adds-support-for-larger-ephemeral-volumes/),
# so these cost nothing there.
EPHEMERAL_STORAGE = {"request": "64Mi", "limit": "256Mi"}
# The well-known node label of a node's zone (Fargate nodes carry it too).
ZONE_LABEL = "topology.kubernetes.io/zone"
# Where the app's server (app/nginx.conf) reads its keep-alive limits from: the program's
# ConfigMap, mounted read-only. An image that does not read it (the bootstrap image) ignores it.
KEEPALIVE_DIR = "/etc/nginx/keepalive.d"
KEEPALIVE_FILE = "keepalive.conf"


def keepalive_conf(idle_seconds: int, connection_max_seconds: int) -> str:
    """The nginx directives of the keep-alive limits: an idle connection closes after ``idle_seconds`` (the
    Keep-Alive header tells clients a second less, so those that honour it close first), and the first
    response after ``connection_max_seconds`` says `Connection: close` and ends the connection cleanly
    (nginx's keepalive_time, since 1.19.10: https://nginx.org/en/docs/http/ngx_http_core_module.html#keepalive_time)."""
    hint = idle_seconds - 1 if idle_seconds > 1 else idle_seconds
    return f"keepalive_timeout {idle_seconds}s {hint}s;\nkeepalive_time {connection_max_seconds}s;\n"


@dataclass(frozen=True)
class WebAppArgs:
    """What the app needs from settings: plain values only."""

    image: str
    namespace: str
    rollout: strategy.RollingUpdate
    min_ready_seconds: int
    progress_deadline_seconds: int
    cpu: str
    memory: str
    # Seconds a stopping pod keeps serving after it leaves the Service's endpoints (0: none),
    # and the grace period that covers the drain and nginx's graceful stop.
    drain_seconds: int
    termination_grace_period_seconds: int
    # Keep-alive limits of the app's server (settings: keepAliveSeconds, connectionMaxSeconds).
    keep_alive_seconds: int
    connection_max_seconds: int
    # The port the image serves on, and whether it must start as root (the stock nginx image).
    container_port: int
    needs_root: bool
    # Namespace labels another component reads (on eks: the ALB controller's readiness-gate label).
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    # No image named in settings: the Deployment keeps the image it runs (``image`` only starts a new one).
    keep_running_image: bool = False
    # A canary: ``canary_replicas`` pods of ``canary_image`` beside the Deployment's (the rollout
    # command's `--canary`); None when there is none.
    canary_image: str | None = None
    canary_replicas: int = 1
    # Whether the rollout command analyses releases (said on the Deployment for the policy pack).
    analysis: bool = True
    # Why the image runs (kubernetes.io/change-cause, infra/release.py); None: not said.
    change_cause: str | None = None

    @property
    def pinned_by_digest(self) -> bool:
        return "@" in self.image


class WebApp(pulumi.ComponentResource):
    """Namespace (unless default), Deployment, ClusterIP Service, PodDisruptionBudget and NetworkPolicy."""

    namespace: pulumi.Output[str]
    # The image the Deployment's pods run, as the engine last applied it (kept or named).
    image: pulumi.Output[str]
    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    # The Service's cluster address: on the local node, this machine reaches it directly.
    cluster_ip: pulumi.Output[str]
    # The canary Deployment, when the settings ask for one.
    canary: k8s.apps.v1.Deployment | None

    def __init__(
        self,
        name: str,
        args: WebAppArgs,
        opts: pulumi.ResourceOptions | None = None,
        before_pods: Callable[[pulumi.Input[str], pulumi.Output[str]], Sequence[pulumi.Resource]] | None = None,
    ) -> None:
        # The Kubernetes provider arrives in opts (providers=[...]) and reaches
        # every child through parent=self.
        super().__init__("rolling:index:WebApp", name, None, opts)
        # What the component waits for, its resources wait for: a component's dependencies are not
        # its children's unless passed on.
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)

        namespace: pulumi.Input[str] = args.namespace
        if args.namespace != "default":
            # The cluster itself refuses a pod that asks for more than the Pod Security Standard allows:
            # restricted for the unprivileged app, baseline for an image that must start as root.
            level = "baseline" if args.needs_root else "restricted"
            ns = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.namespace,
                    labels={
                        **{f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")},
                        **args.namespace_labels,
                    },
                ),
                opts=child,
            )
            namespace = ns.metadata.name

        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SERVICE,
                namespace=namespace,
                labels=LABELS,
                # The provider's wait for a new Service lasts until a pod backs it, 10 minutes at most
                # (pulumi-kubernetes pkg/await/service.go): a first deploy whose pods can never start held
                # `up` that long although the program's own wait knew in seconds. The program's wait for the
                # Deployment is the one judge of ready pods, and so of a Service with endpoints.
                annotations=SKIP_AWAIT,
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=LABELS,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http", protocol="TCP")],
            ),
            opts=child,
        )
        # The keep-alive limits, named by their content: a change makes a new ConfigMap, which changes
        # the pod template, so the pods restart with it (nginx reads its configuration at start).
        conf = keepalive_conf(args.keep_alive_seconds, args.connection_max_seconds)
        keepalive = k8s.core.v1.ConfigMap(
            f"{name}-keepalive",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{APP}-keepalive-{hashlib.sha256(conf.encode()).hexdigest()[:10]}",
                namespace=namespace,
                labels=LABELS,
            ),
            data={KEEPALIVE_FILE: conf},
            immutable=True,
            opts=child,
        )
        # What must exist before the first pods do (on eks, the ALB Ingress: the load balancer controller
        # injects readiness gates only into pods created after it has bound the Service's target group).
        # A dependency orders creation only: a new tag still changes the Deployment alone.
        gates = list(before_pods(namespace, service.metadata.name)) if before_pods else []
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEPLOYMENT,
                namespace=namespace,
                labels=LABELS,
                annotations={
                    # The provider applies the Deployment and returns; the program waits for the
                    # rollout itself (infra/rollout_wait.py: complete as kubectl judges it, or failed
                    # within seconds, with the cause).
                    **SKIP_AWAIT,
                    # The program owns this Deployment: an out-of-band `kubectl set image`
                    # is drift that the next `up` overwrites, not a field conflict.
                    "pulumi.com/patchForce": "true",
                    ANALYSIS_ANNOTATION: str(args.analysis).lower(),
                    # The controller copies it to the ReplicaSet of each template: `kubectl rollout
                    # history` shows it beside each revision.
                    **({release.CHANGE_CAUSE: args.change_cause} if args.change_cause else {}),
                    **({} if args.pinned_by_digest else {"checkov.io/skip1": DIGEST_SKIP}),
                },
            ),
            spec=_deployment_spec(args, keepalive.metadata.name),
            # With no image named, `up` keeps the one the Deployment runs: the engine diffs with the
            # image from the stack's state in place of the program's (Pulumi's ignoreChanges), so
            # git never rolls the app back to what the stack file last said. Why it runs goes with it:
            # a stack file that names no image names no cause either.
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    ignore_changes=[IMAGE_PATH, release.CHANGE_CAUSE_PATH] if args.keep_running_image else None,
                    depends_on=gates,
                ),
            ),
        )
        # The canary: the same pod as the Deployment's but for its image and one label, so it is
        # judged on what the new version does, not on a different setup. Created and removed by
        # updates of their own (the rollout command's canary steps); the provider waits for it to be
        # ready, and the rollout command's live view ends that wait on a definitive failure.
        self.canary = None
        if args.canary_image is not None:
            self.canary = k8s.apps.v1.Deployment(
                f"{name}-canary",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=CANARY_DEPLOYMENT,
                    namespace=namespace,
                    labels=CANARY_LABELS,
                    annotations={
                        "pulumi.com/patchForce": "true",
                        **({} if "@" in args.canary_image else {"checkov.io/skip1": DIGEST_SKIP}),
                    },
                ),
                spec=_deployment_spec(
                    args,
                    keepalive.metadata.name,
                    image=args.canary_image,
                    replicas=args.canary_replicas,
                    labels=CANARY_LABELS,
                ),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=gates)),
            )
        # Only the serving port takes connections (where the cluster enforces NetworkPolicy: Fargate
        # and the local node do not). Egress is the app's own business and stays open.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DEPLOYMENT, namespace=namespace, labels=LABELS),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=args.container_port, protocol="TCP")]
                    )
                ],
            ),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DEPLOYMENT, namespace=namespace, labels=LABELS),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=args.rollout.disruption_budget,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
            ),
            opts=child,
        )

        self.namespace = pulumi.Output.from_input(namespace)
        self.deployment = deployment
        self.image = deployment.spec.apply(_running_image)
        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.cluster_ip = service.spec.cluster_ip
        self.register_outputs(
            {
                "namespace": self.namespace,
                "deploymentName": self.deployment_name,
                "serviceName": self.service_name,
            }
        )


def _running_image(spec: k8s.apps.v1.outputs.DeploymentSpec) -> str:
    pod = spec.template.spec
    assert pod is not None, "the Deployment's pod template has a spec"
    return str(pod.containers[0].image)


def _deployment_spec(
    args: WebAppArgs,
    keepalive: pulumi.Input[str],
    *,
    image: str | None = None,
    replicas: int | None = None,
    labels: Mapping[str, str] = LABELS,
) -> k8s.apps.v1.DeploymentSpecArgs:
    """The Deployment's spec (the canary's with its ``image``, ``replicas`` and ``labels``). The pod
    template depends on nothing but args, so a new tag changes the image alone: no timestamps, no
    random values."""
    probe = k8s.core.v1.HTTPGetActionArgs(path=PROBE_PATH, port="http")
    resources = {"cpu": args.cpu, "memory": args.memory}
    storage = EPHEMERAL_STORAGE
    container = k8s.core.v1.ContainerArgs(
        name=CONTAINER,
        image=image or args.image,
        # Fargate pulls every pod's image anyway; Always makes the local node check the registry too,
        # so a pod never runs an image its credentials could no longer pull.
        image_pull_policy="Always",
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=args.container_port, protocol="TCP")],
        # Readiness: can this pod serve now? A pod that answers slowly (2 s) three times in a row leaves
        # the Service's endpoints until it answers again: load moves to the others, nothing restarts.
        readiness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=5, timeout_seconds=2, failure_threshold=3),
        # Liveness: is the server stuck for good? Only a server that has not answered within 10 s for a
        # whole minute is restarted: a busy pod is the readiness probe's business, and restarting busy pods
        # under load takes capacity away when it is needed most.
        liveness_probe=k8s.core.v1.ProbeArgs(
            http_get=probe, initial_delay_seconds=10, period_seconds=10, timeout_seconds=10, failure_threshold=6
        ),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={**resources, "ephemeral-storage": storage["request"]},
            limits={**resources, "ephemeral-storage": storage["limit"]},
        ),
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            # Nothing at all for the unprivileged app; an image that must start as root gets back
            # only the four capabilities the stock nginx image uses.
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"], add=ROOT_CAPABILITIES if args.needs_root else None),
        ),
        volume_mounts=[
            *(k8s.core.v1.VolumeMountArgs(name=key, mount_path=path) for key, path in SCRATCH.items()),
            k8s.core.v1.VolumeMountArgs(name="keepalive", mount_path=KEEPALIVE_DIR, read_only=True),
        ],
        # Kubernetes removes a stopping pod from the Service's endpoints at the moment it signals
        # the container: the sleep keeps the server up until every proxy and load balancer has
        # stopped sending it requests; then the image's stop signal (SIGQUIT for nginx: the app's
        # Dockerfile declares it) lets it finish the ones it has.
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                sleep=k8s.core.v1.SleepActionArgs(seconds=args.drain_seconds),
            )
        )
        if args.drain_seconds > 0
        else None,
    )
    return k8s.apps.v1.DeploymentSpecArgs(
        replicas=args.rollout.replicas if replicas is None else replicas,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels)),
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                max_surge=args.rollout.max_surge,
                max_unavailable=args.rollout.max_unavailable,
            ),
        ),
        min_ready_seconds=args.min_ready_seconds,
        progress_deadline_seconds=args.progress_deadline_seconds,
        revision_history_limit=REVISION_HISTORY,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(labels)),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[container],
                automount_service_account_token=False,
                # Across zones where the scheduler can: a preference (ScheduleAnyway), never a pod left
                # Pending, counted per revision (pod-template-hash) so a rollout's new pods spread too.
                # On EKS, Fargate's own scheduler places each pod in one of the profile's private subnets
                # (one per zone here); AWS documents that affinity rules do not apply there and is silent
                # on spread constraints, so this costs nothing there and holds where the default
                # scheduler places the pods (docs/rollouts.md).
                topology_spread_constraints=[
                    k8s.core.v1.TopologySpreadConstraintArgs(
                        max_skew=1,
                        topology_key=ZONE_LABEL,
                        when_unsatisfiable="ScheduleAnyway",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
                        match_label_keys=["pod-template-hash"],
                    )
                ],
                termination_grace_period_seconds=args.termination_grace_period_seconds,
                security_context=_pod_security(args.needs_root),
                volumes=[
                    *(
                        k8s.core.v1.VolumeArgs(
                            name=key, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=SCRATCH_LIMITS[key])
                        )
                        for key in SCRATCH
                    ),
                    k8s.core.v1.VolumeArgs(
                        name="keepalive", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=keepalive)
                    ),
                ],
            ),
        ),
    )


def _pod_security(needs_root: bool) -> k8s.core.v1.PodSecurityContextArgs:
    """The runtime's seccomp profile always; a fixed non-root user unless the image must start as root."""
    seccomp = k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
    if needs_root:
        return k8s.core.v1.PodSecurityContextArgs(seccomp_profile=seccomp)
    return k8s.core.v1.PodSecurityContextArgs(
        seccomp_profile=seccomp, run_as_non_root=True, run_as_user=APP_UID, run_as_group=APP_UID
    )
