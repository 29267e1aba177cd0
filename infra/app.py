"""WebApp: the app's namespace, the nginx Deployment (its pod: infra/pod.py), its Service, PodDisruptionBudget
and NetworkPolicy."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import images, release
from infra.identity import (
    ANALYSIS_ANNOTATION,
    APP,
    CANARY_DEPLOYMENT,
    CANARY_LABELS,
    CANARY_SERVICE,
    DEPLOYMENT,
    LABELS,
    SERVICE,
    WATCHDOG,
    WEIGHTED_CANARY_LABELS,
)
from infra.kube.lease import lease_name
from infra.kube.watchdog import LABELS as WATCHDOG_LABELS
from infra.kube.watchdog import role_rules
from infra.pod import KEEPALIVE_FILE, PROBE_PATH, WebAppArgs, deployment_spec, keepalive_conf
from infra.rollout_wait import SKIP_AWAIT

__all__ = ["PROBE_PATH", "BeforePods", "WebApp", "WebAppArgs"]

# What must exist before the first pods, made from the namespace, the app's Service's name and the canary's
# (None without canaryTraffic weights): on eks, the ALB Ingress.
BeforePods = Callable[[pulumi.Input[str], pulumi.Output[str], pulumi.Output[str] | None], Sequence[pulumi.Resource]]

# The Service's port; the container's is a setting (8080 for the unprivileged app image).
SERVICE_PORT = 80
# The container image's place in the Deployment's inputs (one container).
IMAGE_PATH = images.CONTAINER_IMAGE_PATH
# Reviewers' scanners (checkov) read these inline skips; each gives its reason.
DIGEST_SKIP = (
    "CKV_K8S_43=the tag is pinned (latest refused) and ECR tags are immutable; "
    "the deploy workflow can pin a digest with rolling:imageDigest"
)


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
        before_pods: BeforePods | None = None,
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

        service = _service(f"{name}-service", SERVICE, LABELS, namespace, child)
        _watchdog_access(name, namespace, weighted=args.weighted_canary, opts=child)
        # With canaryTraffic weights, the canary's Service (and so its target group) always, its pods or not:
        # the load balancer controller injects readiness gates only into pods made after it has bound their
        # Service's target group, so a canary's first pod must find it there.
        canary_service = _weighted_canary(name, args, namespace, child) if args.weighted_canary else None
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
        canary_name = canary_service.metadata.name if canary_service is not None else None
        gates = list(before_pods(namespace, service.metadata.name, canary_name)) if before_pods else []
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
            spec=deployment_spec(args, keepalive.metadata.name),
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
        canary_labels = WEIGHTED_CANARY_LABELS if args.weighted_canary else CANARY_LABELS
        if args.canary_image is not None:
            self.canary = k8s.apps.v1.Deployment(
                f"{name}-canary",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=CANARY_DEPLOYMENT,
                    namespace=namespace,
                    labels=canary_labels,
                    annotations={
                        "pulumi.com/patchForce": "true",
                        **({} if "@" in args.canary_image else {"checkov.io/skip1": DIGEST_SKIP}),
                    },
                ),
                spec=deployment_spec(
                    args,
                    keepalive.metadata.name,
                    image=args.canary_image,
                    replicas=args.canary_replicas,
                    labels=canary_labels,
                ),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=gates)),
            )
        # Only the serving port takes connections (where the cluster enforces NetworkPolicy: Fargate
        # and the local node do not). Egress is the app's own business and stays open.
        _network_policy(
            f"{name}-network-policy", DEPLOYMENT, LABELS, port=args.container_port, namespace=namespace, opts=child
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


def _service(
    name: str, service: str, labels: dict[str, str], namespace: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=service,
            namespace=namespace,
            labels=labels,
            # The provider's wait for a new Service lasts until a pod backs it, 10 minutes at most
            # (pulumi-kubernetes pkg/await/service.go): a first deploy whose pods can never start held
            # `up` that long although the program's own wait knew in seconds. The program's wait for the
            # Deployment is the one judge of ready pods, and so of a Service with endpoints.
            annotations=SKIP_AWAIT,
        ),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http", protocol="TCP")],
        ),
        opts=opts,
    )


def _weighted_canary(
    name: str, args: WebAppArgs, namespace: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    """What a weighted canary's pods have of their own, since the app's objects select by its app label: their
    Service (the ALB's second target group), the same port rule, and a disruption budget."""
    _network_policy(
        f"{name}-canary-network-policy",
        CANARY_DEPLOYMENT,
        WEIGHTED_CANARY_LABELS,
        port=args.container_port,
        namespace=namespace,
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-canary-pdb",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=CANARY_DEPLOYMENT, namespace=namespace, labels=WEIGHTED_CANARY_LABELS),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=WEIGHTED_CANARY_LABELS)
        ),
        opts=opts,
    )
    return _service(f"{name}-canary-service", CANARY_SERVICE, WEIGHTED_CANARY_LABELS, namespace, opts)


def _watchdog_access(name: str, namespace: pulumi.Input[str], *, weighted: bool, opts: pulumi.ResourceOptions) -> None:
    """What the cluster's watchdog over a judged release may do (infra/kube/watchdog.py): its service account,
    bound to a Role that reads and annotates this stack's Lease, patches the app's Deployments (and, with a
    weighted canary, the Ingress) and creates Events. The rollout command starts the watchdog's Job with each
    judged release under this account: the deploy role itself, whose `edit` access may not grant RBAC, needs
    none of it."""
    labels = {**LABELS, **WATCHDOG_LABELS}
    meta = k8s.meta.v1.ObjectMetaArgs(name=WATCHDOG, namespace=namespace, labels=labels)
    account = k8s.core.v1.ServiceAccount(f"{name}-watchdog", metadata=meta, opts=opts)
    role = k8s.rbac.v1.Role(
        f"{name}-watchdog-role",
        metadata=meta,
        rules=[
            k8s.rbac.v1.PolicyRuleArgs(**_snake(rule))
            for rule in role_rules(lease_name(pulumi.get_stack()), ingress=weighted)
        ],
        opts=opts,
    )
    k8s.rbac.v1.RoleBinding(
        f"{name}-watchdog-binding",
        metadata=meta,
        role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
        subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=namespace)],
        opts=opts,
    )


def _snake(rule: dict[str, Any]) -> dict[str, Any]:
    """A Role rule's fields as the SDK's arguments name them (apiGroups: api_groups)."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in rule.items()}


def _network_policy(
    name: str,
    policy: str,
    labels: dict[str, str],
    *,
    port: int,
    namespace: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> None:
    # Only the serving port takes connections (where the cluster enforces NetworkPolicy: Fargate
    # and the local node do not). Egress is the app's own business and stays open.
    k8s.networking.v1.NetworkPolicy(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=policy, namespace=namespace, labels=labels),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")]
                )
            ],
        ),
        opts=opts,
    )


def _running_image(spec: k8s.apps.v1.outputs.DeploymentSpec) -> str:
    pod = spec.template.spec
    assert pod is not None, "the Deployment's pod template has a spec"
    return str(pod.containers[0].image)
