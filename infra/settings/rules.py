"""Rules between keys, each declared with the fields it reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infra import eks_versions, fargate, strategy
from infra.settings.defaults import (
    ADDON_FIELDS,
    ALB_IDLE_TIMEOUT_SECONDS,
    ALB_PROPAGATION_SECONDS,
    MAX_FARGATE_SELECTORS,
    METRICS_LEAST_WINDOW_S,
    METRICS_WINDOW_S,
    NAMESPACE,
    PRIVILEGED_PORTS_BELOW,
    SERVICE_PROPAGATION_SECONDS,
    SLEEP_ACTION_SINCE,
    STOP_SECONDS,
)


class UndeclaredReadError(RuntimeError):
    """A rule read a field it does not declare: a mistake in the rule, not in the stack's config (not a
    KeyError, which Mapping.get would take for a missing value)."""


class Reads(Mapping[str, Any]):
    """The parsed values a rule may read: the fields it declares, those whose own value was accepted. Reading
    any other field raises, so a misspelt or forgotten field fails the tests instead of turning the rule off."""

    def __init__(self, parsed: Mapping[str, Any], fields: frozenset[str], rule: str) -> None:
        self._parsed, self._fields, self._rule = parsed, fields, rule

    def _allowed(self, field: object) -> str:
        if field not in self._fields:
            raise UndeclaredReadError(f"rule {self._rule} reads {field!r}, which it does not declare")
        return str(field)

    def __getitem__(self, field: str) -> Any:
        return self._parsed[self._allowed(field)]

    def __contains__(self, field: object) -> bool:
        return self._allowed(field) in self._parsed

    def __iter__(self) -> Iterator[str]:
        return (field for field in self._parsed if field in self._fields)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class Rule:
    """A check between keys, run after the unset keys are derived, in any order: it reads the fields it
    declares (a field whose own value was refused is absent) and returns a problem or None. None changes a
    value."""

    name: str
    fields: frozenset[str]
    body: Callable[[Reads, str | None], str | None]

    def __call__(self, parsed: Mapping[str, Any], target: str | None) -> str | None:
        return self.body(Reads(parsed, self.fields, self.name), target)


def rule(*fields: str) -> Callable[[Callable[[Reads, str | None], str | None]], Rule]:
    """Declare a rule and the fields it reads (checked against the declarations when this module loads)."""

    def declare(body: Callable[[Reads, str | None], str | None]) -> Rule:
        return Rule(body.__name__.lstrip("_"), frozenset(fields), body)

    return declare


@rule("replicas", "max_surge", "max_unavailable")
def _rollout_possible(parsed: Reads, target: str | None) -> str | None:
    if not {"replicas", "max_surge", "max_unavailable"} <= parsed.keys():
        return None
    try:
        strategy.plan(parsed["replicas"], parsed["max_surge"], parsed["max_unavailable"])
    except strategy.StrategyError as err:
        return f"{NAMESPACE}:maxSurge/maxUnavailable: {err}"
    return None


@rule("progress_deadline_seconds", "min_ready_seconds")
def _deadline_after_min_ready(parsed: Reads, target: str | None) -> str | None:
    deadline, min_ready = parsed.get("progress_deadline_seconds"), parsed.get("min_ready_seconds")
    if deadline is not None and min_ready is not None and deadline <= min_ready:
        return f"{NAMESPACE}:progressDeadlineSeconds {deadline} must be greater than minReadySeconds {min_ready}"
    return None


@rule("cpu", "memory")
def _fargate_size(parsed: Reads, target: str | None) -> str | None:
    # Where Fargate runs the pods only: a local cluster takes any size its nodes have room for.
    if target != "eks" or "cpu" not in parsed or "memory" not in parsed:
        return None
    cpu, memory = parsed["cpu"], parsed["memory"]
    try:
        fargate.pod_size(fargate.parse_cpu(cpu), fargate.parse_memory(memory))
    except fargate.SizeError as err:
        return f"{NAMESPACE}:cpu/memory {cpu}/{memory}: {err}"
    return None


@rule("namespace", "fargate_namespaces")
def _fargate_selects_namespace(parsed: Reads, target: str | None) -> str | None:
    if target != "eks" or "namespace" not in parsed or "fargate_namespaces" not in parsed:
        return None
    namespace, names = parsed["namespace"], parsed["fargate_namespaces"]
    if namespace in names:
        return None
    listed = ",".join(name for name in names if name != "kube-system")
    return (
        f"{NAMESPACE}:fargateNamespaces '{listed}' does not select namespace '{namespace}': "
        "pods there would never be scheduled on Fargate; add it to the list"
    )


@rule("fargate_namespaces")
def _fargate_selector_limit(parsed: Reads, target: str | None) -> str | None:
    # read.derive added kube-system.
    names = parsed.get("fargate_namespaces")
    if target != "eks" or names is None or len(names) <= MAX_FARGATE_SELECTORS:
        return None
    return (
        f"{NAMESPACE}:fargateNamespaces selects {len(names)} namespaces with kube-system ({','.join(names)}); "
        f"a Fargate profile takes at most {MAX_FARGATE_SELECTORS} selectors: list at most "
        f"{MAX_FARGATE_SELECTORS - 1} besides kube-system"
    )


@rule("kubernetes_version", "coredns_version", "kube_proxy_version", "vpc_cni_version")
def _addons_pinned(parsed: Reads, target: str | None) -> str | None:
    version = parsed.get("kubernetes_version")
    if target != "eks" or version is None:
        return None
    # read.derive filled every unset build it has a pin for.
    missing = [key for name, key in ADDON_FIELDS.items() if name in parsed and parsed[name] is None]
    if not missing:
        return None
    return (
        f"{NAMESPACE}:kubernetesVersion {version} has no pinned add-on builds in this program "
        f"(it pins them for {', '.join(sorted(eks_versions.ADDONS))}): set {', '.join(missing)} to builds that "
        f"`aws eks describe-addon-versions --kubernetes-version {version}` lists"
    )


@rule("container_port", "image_needs_root")
def _port_needs_root(parsed: Reads, target: str | None) -> str | None:
    port, root = parsed.get("container_port"), parsed.get("image_needs_root")
    if port is None or root is None or port >= PRIVILEGED_PORTS_BELOW or root:
        return None
    return (
        f"{NAMESPACE}:containerPort {port} is a privileged port, which the pod's non-root user cannot bind: "
        "use an image that listens on 1024 or above (the app image listens on 8080), "
        "or set imageNeedsRoot true for an image that starts as root"
    )


@rule("drain_seconds", "termination_grace_period_seconds")
def _drain_fits_grace_period(parsed: Reads, target: str | None) -> str | None:
    drain, grace = parsed.get("drain_seconds"), parsed.get("termination_grace_period_seconds")
    if target is None or drain is None or grace is None:
        return None
    if grace <= drain:
        return (
            f"{NAMESPACE}:terminationGracePeriodSeconds {grace} must be greater than drainSeconds {drain}: "
            f"the pod would be killed while it drains; use at least {drain + STOP_SECONDS}, or unset it"
        )
    return None


@rule("drain_seconds", "deregistration_delay_seconds")
def _drain_outlasts_deregistration(parsed: Reads, target: str | None) -> str | None:
    drain, delay = parsed.get("drain_seconds"), parsed.get("deregistration_delay_seconds")
    if target != "eks" or drain is None or delay is None or drain >= delay + ALB_PROPAGATION_SECONDS:
        return None
    return (
        f"{NAMESPACE}:drainSeconds {drain} is shorter than deregistrationDelaySeconds {delay} plus the "
        f"{ALB_PROPAGATION_SECONDS} s the ALB takes to stop routing: a stopping pod would close while the ALB "
        f"still sends it requests; use drainSeconds {delay + ALB_PROPAGATION_SECONDS} or more, "
        "or a shorter deregistrationDelaySeconds"
    )


@rule("namespace")
def _eks_namespace_of_its_own(parsed: Reads, target: str | None) -> str | None:
    if target != "eks" or parsed.get("namespace") != "default":
        return None
    return (
        f"{NAMESPACE}:namespace 'default' cannot be used on eks: the program labels the app's namespace "
        "(ALB readiness gates, Pod Security) and owns it; pick a namespace of the app's own, such as rolling"
    )


@rule("kubernetes_version", "drain_seconds")
def _sleep_action_available(parsed: Reads, target: str | None) -> str | None:
    version = parsed.get("kubernetes_version")
    if target != "eks" or not parsed.get("drain_seconds") or version is None:
        return None
    if tuple(int(part) for part in version.split(".")) < SLEEP_ACTION_SINCE:
        since = ".".join(map(str, SLEEP_ACTION_SINCE))
        return (
            f"{NAMESPACE}:kubernetesVersion {version} has no preStop sleep action (on by default since {since}), "
            f"which drainSeconds {parsed['drain_seconds']} needs (the ALB routes to a stopping pod for a while): "
            f"use {since} or newer"
        )
    return None


@rule("keep_alive_seconds", "connection_max_seconds")
def _keepalive_positive(parsed: Reads, target: str | None) -> str | None:
    for key, name in (("keep_alive_seconds", "keepAliveSeconds"), ("connection_max_seconds", "connectionMaxSeconds")):
        if parsed.get(key) == 0:
            return f"{NAMESPACE}:{name} 0 is not accepted: 1 to 3600 seconds, or -1 for the target's default"
    return None


@rule("keep_alive_seconds")
def _keepalive_outlasts_alb(parsed: Reads, target: str | None) -> str | None:
    idle = parsed.get("keep_alive_seconds")
    if target != "eks" or not idle or idle > ALB_IDLE_TIMEOUT_SECONDS:
        return None
    return (
        f"{NAMESPACE}:keepAliveSeconds {idle} is not longer than the ALB's idle timeout "
        f"({ALB_IDLE_TIMEOUT_SECONDS} s): the ALB would reuse connections the pods have closed and answer 502; "
        f"use {ALB_IDLE_TIMEOUT_SECONDS + 15} or more (AWS advises the target's timeout be the longer)"
    )


@rule("drain_seconds", "keep_alive_seconds", "connection_max_seconds")
def _keepalive_ends_in_drain(parsed: Reads, target: str | None) -> str | None:
    # Locally clients reach the pods through the Service: a connection can start until kube-proxy drops
    # the stopping pod, then serves requests until connectionMaxSeconds (the response closes it) and
    # idles until keepAliveSeconds. Both within the drain, none is open when the server stops. (On eks
    # the clients' connections are the ALB's, which stops using a target once it deregisters it.)
    drain, idle, most = (parsed.get(k) for k in ("drain_seconds", "keep_alive_seconds", "connection_max_seconds"))
    if target != "local" or not drain or not idle or not most:
        return None
    if idle + most <= drain - SERVICE_PROPAGATION_SECONDS:
        return None
    return (
        f"{NAMESPACE}:keepAliveSeconds {idle} plus connectionMaxSeconds {most} must be at most drainSeconds {drain} "
        f"- {SERVICE_PROPAGATION_SECONDS}: a stopping pod would still hold keep-alive connections when its server "
        f"stops, and a client that sends on one then gets no answer; shorten them, or use drainSeconds "
        f"{idle + most + SERVICE_PROPAGATION_SECONDS} or more"
    )


@rule("bake_seconds", "canary_seconds", "analysis_source", "analysis")
def _metrics_need_whole_minutes(parsed: Reads, target: str | None) -> str | None:
    if parsed.get("analysis_source") != "cloudwatch" or not parsed.get("analysis", True):
        return None
    for key, field in (("bakeSeconds", "bake_seconds"), ("canarySeconds", "canary_seconds")):
        seconds = parsed.get(field)
        if seconds is not None and seconds < METRICS_LEAST_WINDOW_S:
            return (
                f"{NAMESPACE}:{key} {seconds} is too short for analysisSource cloudwatch: the ALB reports its "
                f"metrics a minute at a time, and the analysis needs one whole minute of what it judges; use "
                f"{METRICS_LEAST_WINDOW_S} or more (unset: {METRICS_WINDOW_S}), or analysisSource probe"
            )
    return None


@rule("analysis_warmup_seconds", "max_errors_over_old", "analysis_source")
def _needs_answers_by_pod_and_version(parsed: Reads, target: str | None) -> str | None:
    if parsed.get("analysis_source") != "cloudwatch":
        return None
    seconds, times = parsed.get("analysis_warmup_seconds"), parsed.get("max_errors_over_old")
    if seconds:
        return (
            f"{NAMESPACE}:analysisWarmupSeconds {seconds} leaves out a new pod's answers until it has served that "
            "long, which analysisSource cloudwatch cannot do (the ALB's minutes name no pod): use 0 with it, or "
            "analysisSource probe"
        )
    if times:
        return (
            f"{NAMESPACE}:maxErrorsOverOld {times} compares the new version's answers with the old one's at the "
            "same time, which analysisSource cloudwatch cannot do (the ALB's minutes do not tell the versions "
            "apart): use 0 with it, or analysisSource probe"
        )
    return None


@rule("canary_weight", "canary_tag", "canary_traffic", "analysis_source")
def _weight_needs_a_canary(parsed: Reads, target: str | None) -> str | None:
    if parsed.get("canary_traffic") == "weights" and parsed.get("analysis_source") == "cloudwatch":
        return (
            f"{NAMESPACE}:canaryTraffic weights gives the canary a target group of its own, whose requests "
            "analysisSource cloudwatch does not read (it judges the app's target group): use canaryTraffic pods "
            "with it (unset picks pods), or analysisSource probe"
        )
    weight = parsed.get("canary_weight")
    if not weight:
        return None
    if parsed.get("canary_traffic") == "pods":
        return (
            f"{NAMESPACE}:canaryWeight {weight} weights a canary target group, which canaryTraffic pods has "
            "none of; set canaryWeight 0, or canaryTraffic weights"
        )
    if not parsed.get("canary_tag"):
        return (
            f"{NAMESPACE}:canaryWeight {weight} sends {weight} % of users' requests to the canary, but canaryTag "
            "is unset: there is no canary, and those requests would fail; set canaryWeight 0"
        )
    return None


@rule("watchdog_image")
def _watchdog_pinned_on_eks(parsed: Reads, target: str | None) -> str | None:
    image = parsed.get("watchdog_image")
    if target == "eks" and image and "@" not in image:
        return (
            f"{NAMESPACE}:watchdogImage {image} names a tag; on eks the watchdog runs in every judged release with "
            "rights over the app's Deployments, so it is pinned by digest: name it as REPOSITORY@sha256:..."
        )
    return None


RULES: tuple[Rule, ...] = (
    _keepalive_positive,
    _keepalive_outlasts_alb,
    _keepalive_ends_in_drain,
    _rollout_possible,
    _deadline_after_min_ready,
    _fargate_size,
    _fargate_selects_namespace,
    _fargate_selector_limit,
    _addons_pinned,
    _port_needs_root,
    _drain_fits_grace_period,
    _drain_outlasts_deregistration,
    _eks_namespace_of_its_own,
    _sleep_action_available,
    _metrics_need_whole_minutes,
    _needs_answers_by_pod_and_version,
    _weight_needs_a_canary,
    _watchdog_pinned_on_eks,
)


def check_declared(rules: tuple[Rule, ...], known: set[str]) -> None:
    """Every rule declares fields, and only ``known`` ones (the settings' fields): a typo stops the program
    loading (model.py checks RULES once its classes exist)."""
    for each in rules:
        unknown = sorted(each.fields - known)
        if unknown or not each.fields:
            raise TypeError(f"rule {each.name} declares {unknown or 'no fields'}: not fields of the settings")
