"""The app's pod, as the Deployment (and its canary) run it: the component's arguments, the container with
its probes, security, scratch space and keep-alive limits, and the Deployment's spec made of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra import strategy
from infra.identity import CONTAINER, LABELS, ZONE_LABEL

REVISION_HISTORY = 5
# The page the probes read (and, on eks, the ALB's health check).
PROBE_PATH = "/"
# The uid and gid the pod runs as unless the image needs root: fixed, not root, and above the
# range a host's own users and system accounts take (so a process that escapes owns nothing there).
APP_UID = 10001
# The four capabilities the stock nginx image uses when it starts as root: chown its cache, switch to
# its worker user and group, bind port 80.
ROOT_CAPABILITIES = ["CHOWN", "SETGID", "SETUID", "NET_BIND_SERVICE"]
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
    # canaryTraffic weights: the canary has a Service (an ALB target group) of its own, its pods their own
    # app label; else its pods are behind the app's Service.
    weighted_canary: bool = False
    # Whether the rollout command analyses releases (said on the Deployment for the policy pack).
    analysis: bool = True
    # Why the image runs (kubernetes.io/change-cause, infra/release.py); None: not said.
    change_cause: str | None = None

    @property
    def pinned_by_digest(self) -> bool:
        return "@" in self.image


def deployment_spec(
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
        # Liveness: is the server gone for good? It asks the server's port, not the page: a page that fails
        # (a missing file, a dependency of the page's) takes the pod out of the endpoints through readiness
        # and must not restart healthy servers everywhere at once. The port is the server's own: every
        # image the stack may run (the bootstrap image too) listens on it, whatever pages it has. Only a
        # server that has not accepted a connection within 10 s for a whole minute is restarted: a busy
        # pod is the readiness probe's business, and restarting busy pods under load takes capacity away
        # when it is needed most.
        liveness_probe=k8s.core.v1.ProbeArgs(
            tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="http"),
            initial_delay_seconds=10,
            period_seconds=10,
            timeout_seconds=10,
            failure_threshold=6,
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
                # On EKS, Fargate places each pod in one of the profile's private subnets (one per zone here)
                # by its own choice: AWS's Fargate profile page says affinity rules do not apply there, and
                # Fargate ignores spread constraints too (aws/containers-roadmap#824 and #1324, both open), so
                # its pods may all land in one zone. This holds where the default scheduler places the pods,
                # and costs nothing on Fargate (docs/rollouts.md).
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
                security_context=pod_security(args.needs_root),
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


def pod_security(needs_root: bool) -> k8s.core.v1.PodSecurityContextArgs:
    """The runtime's seccomp profile always; a fixed non-root user unless the image must start as root."""
    seccomp = k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
    if needs_root:
        return k8s.core.v1.PodSecurityContextArgs(seccomp_profile=seccomp)
    return k8s.core.v1.PodSecurityContextArgs(
        seccomp_profile=seccomp, run_as_non_root=True, run_as_user=APP_UID, run_as_group=APP_UID
    )
