"""The policy pack's rules: plain functions over resource types and input properties (no Pulumi here).

Each rule returns the violations it finds, each a message that says how to fix it. Properties are the
engine's wire form: camelCase keys, numbers as ints or floats.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra import boundary, fargate, images, strategy
from infra.identity import ANALYSIS_ANNOTATION, DEPLOYMENT_TYPE

DEPLOYMENT = DEPLOYMENT_TYPE
WORKLOADS = {DEPLOYMENT, "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet"}
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SERVICE = "kubernetes:core/v1:Service"
EKS_CLUSTER = "eks:index:Cluster"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NAMESPACE = "kubernetes:core/v1:Namespace"
ALB_PREFIX = "alb.ingress.kubernetes.io/"
READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"


@dataclass(frozen=True)
class Resource:
    """A resource as the rules see it."""

    type: str
    name: str
    props: Mapping[str, Any]


def _containers(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    pod = (((props.get("spec") or {}).get("template") or {}).get("spec")) or {}
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def _name(props: Mapping[str, Any], fallback: str) -> str:
    return str((props.get("metadata") or {}).get("name") or fallback)


def image_pinned(image: str) -> str | None:
    """Why ``image`` is not pinned, or None when it is (a tag other than latest, or a digest)."""
    try:
        _, tag, digest = images.parse(image)
    except images.ImageError as err:
        return f"is not an image reference: repository {err}"
    if digest is not None:
        return None if images.DIGEST_RE.fullmatch(digest) else f"digest '{digest}' is not sha256:<64 hex>"
    if tag is None:
        return "has no tag, so it means latest"
    try:
        images.check_tag(tag)
    except images.ImageError as err:
        return f"tag {err}"
    return None


def pinned_images(resource: Resource) -> list[str]:
    if resource.type not in WORKLOADS:
        return []
    found = []
    for container in _containers(resource.props):
        image = str(container.get("image") or "")
        why = image_pinned(image)
        if why:
            found.append(
                f"container '{container.get('name')}' image '{image}' {why}: pin a version (rolling:imageTag 1.16.1) "
                "or a digest (rolling:imageDigest sha256:...)"
            )
    return found


def readiness_probes(resource: Resource) -> list[str]:
    if resource.type not in WORKLOADS:
        return []
    pod = ((resource.props.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [
        f"container '{c.get('name')}' has no readinessProbe: without one a rollout counts a pod ready as soon as "
        "it starts; add an httpGet probe on the serving port"
        for c in pod.get("containers") or []
        if not c.get("readinessProbe")
    ]


def requests_equal_limits(resource: Resource, on_fargate: bool) -> list[str]:
    """Requests equal to limits for cpu and memory; on Fargate, at a size Fargate can run."""
    if resource.type not in WORKLOADS:
        return []
    found = []
    for container in _containers(resource.props):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        name = container.get("name")
        for key in ("cpu", "memory"):
            if key not in requests or requests.get(key) != limits.get(key):
                found.append(
                    f"container '{name}' {key} request {requests.get(key)!r} and limit {limits.get(key)!r} differ: "
                    "set both to the same value (rolling:cpu, rolling:memory)"
                )
        if on_fargate and "cpu" in requests and "memory" in requests:
            try:
                fargate.pod_size(fargate.parse_cpu(str(requests["cpu"])), fargate.parse_memory(str(requests["memory"])))
            except fargate.SizeError as err:
                found.append(f"container '{name}': {err}")
    return found


def least_privilege(resource: Resource) -> list[str]:
    """Containers that may run as root, add capabilities, escalate or write their root filesystem."""
    if resource.type not in WORKLOADS:
        return []
    pod = ((resource.props.get("spec") or {}).get("template") or {}).get("spec") or {}
    pod_security = pod.get("securityContext") or {}
    found = []
    for container in _containers(resource.props):
        security = container.get("securityContext") or {}
        name = f"container '{container.get('name')}'"
        # A container's own field wins over the pod's.
        effective = {**pod_security, **security}
        if effective.get("runAsNonRoot") is not True or effective.get("runAsUser") == 0:
            found.append(
                f"{name} may run as root (rolling:imageNeedsRoot is true, or runAsNonRoot is unset): a process that "
                "escapes the container is root on the node; use an image that runs unprivileged "
                "(the app image, nginx-unprivileged) and set rolling:imageNeedsRoot false"
            )
        added = (security.get("capabilities") or {}).get("add") or []
        if added:
            found.append(
                f"{name} adds capabilities {', '.join(map(str, added))} (rolling:imageNeedsRoot true): "
                "an unprivileged image needs none"
            )
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name} may gain privileges (setuid binaries): set allowPrivilegeEscalation false")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name} can write its root filesystem: set readOnlyRootFilesystem true")
    return found


def _replicas(props: Mapping[str, Any]) -> int:
    value = (props.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def keeps_serving(resource: Resource) -> list[str]:
    """A RollingUpdate strategy that keeps at least one pod serving when replicas > 1."""
    if resource.type != DEPLOYMENT:
        return []
    spec = resource.props.get("spec") or {}
    replicas = _replicas(resource.props)
    deployment_strategy = spec.get("strategy") or {}
    kind = deployment_strategy.get("type", "RollingUpdate")
    if kind != "RollingUpdate":
        return [f"strategy {kind} takes every pod down at once: use RollingUpdate (rolling:maxUnavailable 0)"]
    if replicas <= 1:
        return []
    rolling = deployment_strategy.get("rollingUpdate") or {}
    try:
        surge = strategy.parse_int_or_percent(rolling.get("maxSurge", "25%"))
        unavailable = strategy.parse_int_or_percent(rolling.get("maxUnavailable", "25%"))
        plan = strategy.plan(replicas, surge, unavailable)
    except strategy.StrategyError as err:
        return [f"rollingUpdate is not valid: {err}"]
    if plan.min_ready < 1:
        return [
            f"maxUnavailable {unavailable} lets a rollout take all {replicas} pods down: "
            f"use at most {replicas - 1} (rolling:maxUnavailable)"
        ]
    return []


def _selected(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def disruption_budgets(resources: Sequence[Resource]) -> list[str]:
    """Every Deployment with more than one replica has a policy/v1 PodDisruptionBudget over its pods."""
    budgets = [r for r in resources if r.type == PDB]
    found = []
    for deployment in (r for r in resources if r.type == DEPLOYMENT and _replicas(r.props) > 1):
        metadata = deployment.props.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        labels = ((((deployment.props.get("spec") or {}).get("template") or {}).get("metadata")) or {}).get(
            "labels"
        ) or {}
        covered = any(
            ((b.props.get("metadata") or {}).get("namespace") or "default") == namespace
            and _selected((b.props.get("spec") or {}).get("selector") or {}, labels)
            for b in budgets
        )
        if not covered:
            found.append(
                f"Deployment '{_name(deployment.props, deployment.name)}' runs {_replicas(deployment.props)} replicas "
                "with no policy/v1 PodDisruptionBudget selecting its pods: node drains could take them all at once"
            )
    return found


def _pre_stop_seconds(container: Mapping[str, Any]) -> int | None:
    """Seconds a container's preStop hook holds it (a sleep), 0 for another kind of hook, None without one."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if not pre_stop:
        return None
    return int((pre_stop.get("sleep") or {}).get("seconds") or 0)


def drains_before_stopping(resources: Sequence[Resource]) -> list[str]:
    """A Deployment behind a Service keeps serving after it leaves the endpoints, within its grace period."""
    services = [r for r in resources if r.type == SERVICE]
    found = []
    for deployment in (r for r in resources if r.type == DEPLOYMENT):
        namespace = (deployment.props.get("metadata") or {}).get("namespace") or "default"
        template = (deployment.props.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        behind = any(
            ((s.props.get("metadata") or {}).get("namespace") or "default") == namespace
            and _selected({"matchLabels": (s.props.get("spec") or {}).get("selector") or {}}, labels)
            for s in services
        )
        if not behind:
            continue
        name = _name(deployment.props, deployment.name)
        grace = int((template.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
        for container in _containers(deployment.props):
            seconds = _pre_stop_seconds(container)
            if seconds is None:
                found.append(
                    f"Deployment '{name}' container '{container.get('name')}' is behind a Service but has no preStop "
                    "hook: it stops the moment it leaves the endpoints, while requests are still routed to it; "
                    "set rolling:drainSeconds (a preStop sleep)"
                )
            elif seconds >= grace:
                found.append(
                    f"Deployment '{name}' drains for {seconds}s but is killed after {grace}s "
                    "(terminationGracePeriodSeconds): raise rolling:terminationGracePeriodSeconds above the drain"
                )
    return found


def eks_cluster(resource: Resource) -> list[str]:
    """The EKS cluster: Kubernetes version pinned, control-plane logging on, a Fargate profile."""
    if resource.type != EKS_CLUSTER:
        return []
    props = resource.props
    found = []
    if not props.get("version"):
        found.append("no Kubernetes version: AWS would pick one and upgrade on its own; set rolling:kubernetesVersion")
    if not props.get("enabledClusterLogTypes"):
        found.append("control-plane logging is off: set rolling:clusterLogTypes (api,audit,authenticator)")
    if not props.get("fargate"):
        found.append(
            "no Fargate profile: pods would have nowhere to run; the cluster must select namespaces for Fargate"
        )
    return found


def bounded_roles(resource: Resource) -> list[str]:
    """Every IAM role carries the account's permissions boundary (infra/boundary.py): the infrastructure role
    may make and change no other, and one without it is the way to more rights than that role has."""
    if resource.type != boundary.ROLE_TYPE:
        return []
    given = str(resource.props.get(boundary.PROPERTY) or "")
    if given.endswith(f":policy/{boundary.NAME}"):
        return []
    what = f"permissions boundary {given}" if given else "no permissions boundary"
    return [
        f"IAM role {resource.name} has {what}: every role of the stack must carry policy/{boundary.NAME} "
        "(docs/aws.md, the first day; infra/boundary.py)"
    ]


def alb_ingresses(resources: Sequence[Resource]) -> list[str]:
    """On Fargate, an ALB Ingress targets pod IPs, and its namespace turns on the controller's readiness gates."""
    if not on_fargate(resources):
        return []
    gated = {
        _name(r.props, r.name)
        for r in resources
        if r.type == NAMESPACE
        and ((r.props.get("metadata") or {}).get("labels") or {}).get(READINESS_GATE_LABEL) == "enabled"
    }
    found = []
    for ingress in (r for r in resources if r.type == INGRESS):
        metadata = ingress.props.get("metadata") or {}
        spec = ingress.props.get("spec") or {}
        if spec.get("ingressClassName") != "alb":
            continue
        name, namespace = _name(ingress.props, ingress.name), metadata.get("namespace") or "default"
        target_type = (metadata.get("annotations") or {}).get(ALB_PREFIX + "target-type", "instance")
        if target_type != "ip":
            found.append(
                f"Ingress '{name}' has target type '{target_type}': Fargate pods have no node port an ALB could "
                f"reach; annotate {ALB_PREFIX}target-type: ip"
            )
        if namespace not in gated:
            found.append(
                f"Ingress '{name}': namespace '{namespace}' lacks the label {READINESS_GATE_LABEL}: enabled, so a "
                "new pod counts as ready before the ALB sends it traffic and a rollout can remove the old pods "
                "before the new ones are in service"
            )
    return found


def analysed_on_eks(resources: Sequence[Resource]) -> list[str]:
    """On EKS, releases are analysed: a Deployment whose releases ship on readiness alone is named (the
    program says so with the rolling/analysis annotation)."""
    if not on_fargate(resources):
        return []
    found = []
    for r in resources:
        annotations = (r.props.get("metadata") or {}).get("annotations") or {}
        if r.type == DEPLOYMENT and annotations.get(ANALYSIS_ANNOTATION) == "false":
            found.append(
                f"Deployment '{_name(r.props, r.name)}' ships releases without analysis: one whose pods get ready "
                "but answer errors or slowly goes to every replica and stays; set rolling:analysis true "
                "(docs/rollouts.md, the analysis)"
            )
    return found


def on_fargate(resources: Sequence[Resource]) -> bool:
    return any(r.type == EKS_CLUSTER for r in resources)
