"""The config contract: every ``rolling:`` key, read and validated in one place."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import pulumi

from infra import fargate, images, strategy

NAMESPACE = "rolling"
TARGETS = ("eks", "local")
NAT_MODES = ("single", "perAz")
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")

# Defaults; Pulumi.yaml declares the same ones (a unit test holds them equal).
DEFAULTS: dict[str, object] = {
    "target": "eks",
    "imageRepository": "nginx",
    "replicas": 3,
    "maxSurge": "1",
    "maxUnavailable": "0",
    "minReadySeconds": 5,
    "namespace": "default",
    "cpu": "250m",
    "memory": "256Mi",
    "clusterName": "rolling",
    "kubernetesVersion": "1.34",
    "vpcCidr": "10.0.0.0/16",
    "azCount": 2,
    "natGateways": "single",
    "clusterLogTypes": "api,audit,authenticator",
    "ecrRepository": "rolling",
    "ecrKeepImages": 30,
}
# Optional keys: Pulumi requires a schema default for every key it does not
# require, so each has one that means "unset".
UNSET: dict[str, object] = {
    "imageDigest": "",
    "progressDeadlineSeconds": 0,
    "kubeconfig": "",
    "fargateNamespaces": "",
}
# Unset, progressDeadlineSeconds depends on the target (Fargate takes a minute
# or more to start a pod; the local cluster a few seconds).
PROGRESS_DEADLINE_DEFAULTS = {"eks": 600, "local": 60}
# How long `up` may wait past the progress deadline before it gives up on a rollout.
AWAIT_MARGIN_SECONDS = 30
REQUIRED = ("imageTag",)
KEYS = tuple(DEFAULTS) + REQUIRED + tuple(UNSET)

_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_K8S_VERSION_RE = re.compile(r"1\.[0-9]{2}")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_ECR_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")

T = TypeVar("T")


class SettingsError(pulumi.RunError):
    """One or more config values are not acceptable; the message lists each, by key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from stack config, validated."""

    target: str
    image_repository: str
    image_tag: str
    image_digest: str | None
    replicas: int
    max_surge: strategy.IntOrPercent
    max_unavailable: strategy.IntOrPercent
    progress_deadline_seconds: int
    min_ready_seconds: int
    namespace: str
    cpu: str
    memory: str
    kubeconfig: str | None
    cluster_name: str
    kubernetes_version: str
    vpc_cidr: str
    az_count: int
    nat_gateways: str
    cluster_log_types: tuple[str, ...]
    fargate_namespaces: tuple[str, ...]
    ecr_repository: str
    ecr_keep_images: int

    @property
    def image(self) -> str:
        """The reference the container runs."""
        return images.reference(self.image_repository, self.image_tag, self.image_digest)

    @property
    def rollout(self) -> strategy.Rollout:
        return strategy.plan(self.replicas, self.max_surge, self.max_unavailable)

    @property
    def pod_size(self) -> fargate.PodSize:
        return fargate.pod_size(fargate.parse_cpu(self.cpu), fargate.parse_memory(self.memory))

    @property
    def await_timeout_seconds(self) -> int:
        """The most `up` waits for a rollout to complete before it fails."""
        return self.progress_deadline_seconds + AWAIT_MARGIN_SECONDS

    @classmethod
    def load(cls) -> Settings:
        """Read the ``rolling:`` keys of the current stack."""
        config = pulumi.Config(NAMESPACE)
        values = {key: value for key in KEYS if (value := config.get(key)) is not None}
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> Settings:
        """Validate raw config values (strings, or numbers from YAML), all of them at once."""
        return _Reader(values).settings()


class _Reader:
    """Reads each key once, collecting every problem rather than stopping at the first."""

    def __init__(self, values: Mapping[str, object]) -> None:
        unknown = sorted(set(values) - set(KEYS))
        self.values = values
        self.problems: list[str] = [
            f"{NAMESPACE}:{key} is not a setting of this program; known keys: {', '.join(KEYS)}" for key in unknown
        ]

    def raw(self, key: str) -> str | None:
        value = self.values.get(key, DEFAULTS.get(key))
        if value is None or (key in UNSET and str(value) == str(UNSET[key])):
            return None
        return str(value)

    def check(self, key: str, parse: Callable[[str], T], fallback: T) -> T:
        value = self.raw(key)
        if value is None:
            return fallback
        try:
            return parse(value)
        except ValueError as err:
            self.problems.append(f"{NAMESPACE}:{key} {err}")
            return fallback

    def settings(self) -> Settings:
        target = self.check("target", _choice(TARGETS), "eks")
        if self.raw("imageTag") is None:
            self.problems.append(
                f"{NAMESPACE}:imageTag is not set: run `pulumi config set imageTag 1.16.1` (a pinned version)"
            )
        tag = self.check("imageTag", images.check_tag, "")
        repository = self.check("imageRepository", images.check_repository, "nginx")
        digest = self.check("imageDigest", images.check_digest, None)
        replicas = self.check("replicas", _int_at_least(1), 1)
        one: strategy.IntOrPercent = 1
        zero: strategy.IntOrPercent = 0
        surge = self.check("maxSurge", _int_or_percent, one)
        unavailable = self.check("maxUnavailable", _unavailable, zero)
        self._check_rollout(replicas, surge, unavailable)
        min_ready = self.check("minReadySeconds", _int_at_least(0), 0)
        deadline = self.check("progressDeadlineSeconds", _int_at_least(1), PROGRESS_DEADLINE_DEFAULTS[target])
        if deadline <= min_ready:
            self.problems.append(
                f"{NAMESPACE}:progressDeadlineSeconds {deadline} must be greater than minReadySeconds {min_ready}"
            )
        namespace = self.check("namespace", _label, "default")
        cpu = self.check("cpu", _quantity(fargate.parse_cpu), "250m")
        memory = self.check("memory", _quantity(fargate.parse_memory), "256Mi")
        self._check_size(cpu, memory)
        kubeconfig = self.check("kubeconfig", _kubeconfig, None)
        if kubeconfig is not None and target != "local":
            self.problems.append(f"{NAMESPACE}:kubeconfig is only read by target local; target {target} builds its own")
        cluster_name = self.check("clusterName", _cluster_name, "rolling")
        version = self.check("kubernetesVersion", _k8s_version, "1.34")
        cidr = self.check("vpcCidr", _vpc_cidr, "10.0.0.0/16")
        az_count = self.check("azCount", _int_between(2, 6), 2)
        nat = self.check("natGateways", _choice(NAT_MODES), "single")
        no_logs: tuple[str, ...] = ()
        log_types = self.check("clusterLogTypes", _log_types, no_logs)
        fargate_namespaces = self._fargate_namespaces(namespace, target)
        ecr_repository = self.check("ecrRepository", _ecr_name, "rolling")
        ecr_keep = self.check("ecrKeepImages", _int_between(1, 1000), 30)
        if self.problems:
            raise SettingsError(self.problems)
        return Settings(
            target=target,
            image_repository=repository,
            image_tag=tag,
            image_digest=digest,
            replicas=replicas,
            max_surge=surge,
            max_unavailable=unavailable,
            progress_deadline_seconds=deadline,
            min_ready_seconds=min_ready,
            namespace=namespace,
            cpu=cpu,
            memory=memory,
            kubeconfig=kubeconfig,
            cluster_name=cluster_name,
            kubernetes_version=version,
            vpc_cidr=cidr,
            az_count=az_count,
            nat_gateways=nat,
            cluster_log_types=log_types,
            fargate_namespaces=fargate_namespaces,
            ecr_repository=ecr_repository,
            ecr_keep_images=ecr_keep,
        )

    def _check_rollout(self, replicas: int, surge: strategy.IntOrPercent, unavailable: strategy.IntOrPercent) -> None:
        try:
            strategy.plan(replicas, surge, unavailable)
        except strategy.StrategyError as err:
            self.problems.append(f"{NAMESPACE}:maxSurge/maxUnavailable: {err}")

    def _check_size(self, cpu: str, memory: str) -> None:
        try:
            fargate.pod_size(fargate.parse_cpu(cpu), fargate.parse_memory(memory))
        except fargate.SizeError as err:
            self.problems.append(f"{NAMESPACE}:cpu/memory {cpu}/{memory}: {err}")

    def _fargate_namespaces(self, namespace: str, target: str) -> tuple[str, ...]:
        names = self.check("fargateNamespaces", _label_list, None)
        if names is None:
            names = (namespace,)
        elif target == "eks" and namespace not in names:
            self.problems.append(
                f"{NAMESPACE}:fargateNamespaces '{','.join(names)}' does not select namespace '{namespace}': "
                "pods there would never be scheduled on Fargate; add it to the list"
            )
        # CoreDNS runs in kube-system and must run on Fargate too.
        return tuple(dict.fromkeys((*names, "kube-system")))


def _choice(accepted: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"'{value}' is not accepted; use one of: {', '.join(accepted)}")
        return value

    return parse


def _int(value: str) -> int:
    if not _INT_RE.fullmatch(value.strip()):
        raise ValueError(f"'{value}' is not a whole number")
    return int(value)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = _int(value)
        if number < low:
            raise ValueError(f"{number} is too small; use {low} or more")
        return number

    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = _int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range; use {low} to {high}")
        return number

    return parse


def _int_or_percent(value: str) -> strategy.IntOrPercent:
    try:
        return strategy.parse_int_or_percent(value)
    except strategy.StrategyError as err:
        raise ValueError(str(err)) from None


def _unavailable(value: str) -> strategy.IntOrPercent:
    parsed = _int_or_percent(value)
    if isinstance(parsed, str) and int(parsed[:-1]) > 100:
        raise ValueError(f"'{value}' is over 100%")
    return parsed


def _label(value: str) -> str:
    if len(value) > 63 or not _LABEL_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def _label_list(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise ValueError("is empty; list namespaces separated by commas")
    return tuple(_label(name) for name in names)


def _quantity(parse: Callable[[str], int]) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            parse(value)
        except fargate.SizeError as err:
            raise ValueError(str(err)) from None
        return value.strip()

    return check


def is_kubeconfig_text(value: str) -> bool:
    """Whether a kubeconfig setting holds the file's text (YAML over lines, or JSON) rather than a path."""
    return "\n" in value or value.lstrip().startswith("{")


def _kubeconfig(value: str) -> str:
    if is_kubeconfig_text(value):
        return value
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise ValueError(f"'{value}' is neither kubeconfig text nor a file that exists")
    return path


def _cluster_name(value: str) -> str:
    if not _CLUSTER_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not an EKS cluster name: letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 100 characters"
        )
    return value


def _k8s_version(value: str) -> str:
    if not _K8S_VERSION_RE.fullmatch(value):
        raise ValueError(f"'{value}' is not a Kubernetes minor version such as 1.34 (quote it in YAML)")
    return value


def _vpc_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4 network such as 10.0.0.0/16") from None
    if not 16 <= network.prefixlen <= 20:
        raise ValueError(f"'{value}' has prefix /{network.prefixlen}; use /16 to /20 (EKS needs room for pods)")
    return value


def _ecr_name(value: str) -> str:
    if not 2 <= len(value) <= 256 or not _ECR_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not an ECR repository name: lowercase letters and digits, "
            "separated by '.', '_', '-' or '/', 2 to 256 characters"
        )
    return value


def _log_types(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [name for name in names if name not in LOG_TYPES]
    if bad:
        raise ValueError(f"'{','.join(bad)}' not known; use any of: {', '.join(LOG_TYPES)}")
    return names
