"""The config contract: every ``rolling:`` key, declared once, read and validated in one place.

Each key is one field of ``Settings`` (read by every target) or ``EksSettings`` (read by ``eks`` only),
declared with ``setting(...)``: its parser, default, description and the text the docs show. The
defaults, the validation, the ``Pulumi.yaml`` schema and the tables in docs/configuration.md and the
README all come from those declarations (``python -m infra.settings`` rewrites them; a unit test holds
them equal).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infra import eks_versions, fargate, images, kube_access, release, strategy

NAMESPACE = "rolling"
TARGETS = ("eks", "local")
NAT_MODES = ("single", "perAz")
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# progressDeadlineSeconds, when unset, depends on the target: Fargate takes a minute
# or more to start a pod, the local cluster a few seconds.
PROGRESS_DEADLINE_DEFAULTS = {"eks": 600, "local": 60}
# How long `up` may wait past the progress deadline before it gives up on a rollout: on EKS a
# Fargate pod can take a minute to start; a local node starts one in seconds.
AWAIT_MARGIN_SECONDS = {"eks": 30, "local": 10}
# drainSeconds, when unset: how long a stopping pod keeps serving after it leaves the Service's
# endpoints. Locally kube-proxy drops an endpoint within about a second; on EKS the ALB takes its
# target out over the deregistration delay and its own propagation, which the drain must outlast.
DRAIN_DEFAULTS = {"eks": 30, "local": 5}
# What a stopping pod's grace period allows past the drain: nginx's graceful stop (SIGQUIT)
# finishing the requests it has accepted.
STOP_SECONDS = 15
# How long an ALB takes to stop sending new requests to a target once it starts deregistering it:
# a stopping pod's drain covers this and the deregistration delay.
ALB_PROPAGATION_SECONDS = 5
# Keep-alive limits the app's server applies (app/nginx.conf reads them from a ConfigMap the program
# mounts). keepAliveSeconds: how long an idle connection stays open. On EKS the ALB's connections to the
# pods must stay open longer than the ALB's own idle timeout, or the ALB reuses one the pod has just
# closed and answers 502 ("configure the idle timeout of your application to be larger than the idle
# timeout configured for the load balancer":
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html#connection-idle-timeout).
KEEPALIVE_DEFAULTS = {"eks": 75, "local": 2}
# The ALB's idle timeout (the load balancer attribute idle_timeout.timeout_seconds; AWS's default, which
# the program does not change).
ALB_IDLE_TIMEOUT_SECONDS = 60
# connectionMaxSeconds: how long one connection may carry requests; the response after that says
# `Connection: close` and the server closes it, the one clean way to end an HTTP/1.1 connection. Short
# enough locally that every connection to a stopping pod ends that way during its drain.
CONNECTION_MAX_DEFAULTS = {"eks": 20, "local": 2}
# How long kube-proxy takes to stop sending new connections to a pod that left the endpoints (the local
# node's; measured within about a second): a connection to a stopping pod can start until then.
SERVICE_PROPAGATION_SECONDS = 1
# bakeSeconds, when unset: how long the rollout command goes on analysing a release after its rollout
# completes, before it calls it shipped. On EKS a release meets real traffic through the ALB and its
# faults can take a minute to show; locally the prober alone sends traffic.
BAKE_DEFAULTS = {"eks": 60, "local": 5}
# canarySeconds, when unset: how long the rollout command analyses a canary before it rolls the rest.
CANARY_DEFAULTS = {"eks": 120, "local": 15}
# Where the analysis's evidence comes from (analysisSource). The ALB reports its metrics a minute at a
# time: with cloudwatch, a bake or a canary needs one whole minute of what it judges, wherever in a
# minute it starts, and defaults to five.
ANALYSIS_SOURCES = ("probe", "cloudwatch")
METRICS_LEAST_WINDOW_S = 120
METRICS_WINDOW_S = 300
# soakSeconds, when unset: how long a release must have run on the stack it is promoted from before
# `rollout promote --from` ships it here (an hour of real traffic on eks; a minute locally).
SOAK_DEFAULTS = {"eks": 3600, "local": 60}
# What a new stack runs until its first deploy when no imageTag is set: the base app/Dockerfile builds on.
BOOTSTRAP_IMAGE = "nginxinc/nginx-unprivileged:1.30.6-alpine"
# The first minor version whose kubelet runs a preStop `sleep` by default (beta in 1.30, GA in 1.34).
SLEEP_ACTION_SINCE = (1, 30)
# A Fargate profile takes at most five selectors ("You can have up to five selectors in a Fargate
# profile": https://docs.aws.amazon.com/eks/latest/userguide/fargate-profile.html).
MAX_FARGATE_SELECTORS = 5
# The retention periods CloudWatch Logs accepts (PutRetentionPolicy's retentionInDays).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
ECR_ON_DESTROY = ("delete", "retain")
# Ports below this one need root (or CAP_NET_BIND_SERVICE) to bind.
PRIVILEGED_PORTS_BELOW = 1024
UPGRADE_POLICIES = ("standard", "extended")


def _per_target(values: Mapping[str, int], unit: str = "") -> str:
    """A per-target figure as the descriptions say it: "600 on eks, 60 on local"."""
    return ", ".join(f"{values[target]}{unit} on {target}" for target in TARGETS)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Declaration:
    """One ``rolling:`` key: how it is parsed, its default, who reads it and how the docs describe it."""

    key: str
    field: str
    parse: Callable[[str], object]
    default: str | int | bool | _Required
    description: str
    accepted: str
    targets: tuple[str, ...]
    # Pulumi wants a schema default for every optional key; with unset=True that
    # default means "not set" and the field is None (or derived from other keys).
    unset: bool
    shown_default: str | None
    example: str | None

    @property
    def required(self) -> bool:
        return isinstance(self.default, _Required)

    @property
    def schema_type(self) -> str:
        if isinstance(self.default, bool):
            return "boolean"
        return "integer" if isinstance(self.default, int) else "string"

    @property
    def eks_only(self) -> bool:
        return self.targets == ("eks",)

    def schema(self) -> dict[str, object]:
        """This key's entry under ``config:`` in ``Pulumi.yaml``."""
        entry: dict[str, object] = {"type": self.schema_type}
        if not self.required:
            entry["default"] = self.default
        prefix = "" if self.targets == TARGETS else f"target {'/'.join(self.targets)} only: "
        entry["description"] = prefix + self.description
        return entry

    def table_row(self) -> str:
        """This key's row in the README's configuration table."""
        if self.shown_default is not None:
            default = self.shown_default
        elif self.required:
            default = "required"
        elif self.unset:
            default = "unset"
        elif isinstance(self.default, bool):
            default = f"`{str(self.default).lower()}`"
        else:
            default = f"`{self.default}`"
        where = "" if self.targets == TARGETS else f"{'/'.join(self.targets)} only: "
        return f"| `{self.key}` | {default} | {where}{self.accepted} |"


def setting(
    parse: Callable[[str], object],
    *,
    default: str | int | bool | _Required,
    description: str,
    accepted: str,
    targets: tuple[str, ...] = TARGETS,
    unset: bool = False,
    shown_default: str | None = None,
    example: str | None = None,
) -> Any:
    """Declare the dataclass field below as a ``rolling:`` key (camelCase of the field's name)."""
    return dataclasses.field(
        metadata={
            "setting": {
                "parse": parse,
                "default": default,
                "description": description,
                "accepted": accepted,
                "targets": targets,
                "unset": unset,
                "shown_default": shown_default,
                "example": example,
            }
        }
    )


class SettingsError(ValueError):
    """One or more config values are not acceptable; the message lists each, by key.

    Not a Pulumi error, so that tools which only check settings (the rollout command) need not load
    the Pulumi SDK; `Settings.load` turns it into one for the engine."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


# Parsers: each takes the config text and returns the value, or raises ValueError
# saying what is wrong and what is accepted (the key is added in front).


def _pinned_image(value: str) -> str:
    try:
        _, tag, digest = images.parse(value.strip())
        if digest:
            images.check_digest(digest)
        elif tag is None:
            raise images.ImageError(f"'{value}' names no tag or digest: pin one, such as nginx:1.30.6")
        else:
            images.check_tag(tag)
    except images.ImageError as err:
        raise ValueError(str(err)) from None
    return value.strip()


def _choice(accepted: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"'{value}' is not accepted; use one of: {', '.join(accepted)}")
        return value

    return parse


_INT_RE = re.compile(r"[+-]?[0-9]+")


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


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"'{value}' is not accepted; use true or false")
    return text == "true"


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


def _ratio(value: str) -> float:
    """A share of requests: a percentage such as 2% or 0.5%, or a decimal from 0 to 1 such as 0.02."""
    text = value.strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"'{value}' is not a share; use a percentage such as 2% or a decimal such as 0.02") from None
    if not 0 <= ratio <= 1:
        raise ValueError(f"'{value}' is out of range; use 0% to 100% (0 to 1)")
    return ratio


_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _cause(value: str) -> str:
    return release.check(value.strip())


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


def _kubeconfig(value: str) -> str:
    if kube_access.is_text(value):
        return value
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise ValueError(f"'{value}' is neither kubeconfig text nor a file that exists")
    return path


_CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _cluster_name(value: str) -> str:
    if not _CLUSTER_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not an EKS cluster name: letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 100 characters"
        )
    return value


_K8S_VERSION_RE = re.compile(r"1\.[0-9]{2}")


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


_ECR_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")


def _ecr_name(value: str) -> str:
    if not 2 <= len(value) <= 256 or not _ECR_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not an ECR repository name: lowercase letters and digits, "
            "separated by '.', '_', '-' or '/', 2 to 256 characters"
        )
    return value


_CERTIFICATE_RE = re.compile(r"arn:aws(?:-[a-z]+)*:acm:[a-z]{2}(?:-[a-z]+)+-[0-9]:[0-9]{12}:certificate/[0-9a-f-]{36}")


def _certificate_arn(value: str) -> str:
    if not _CERTIFICATE_RE.fullmatch(value.strip()):
        raise ValueError(
            f"'{value}' is not an ACM certificate ARN: "
            "arn:aws:acm:<region>:<12-digit account>:certificate/<36-character id>"
        )
    return value.strip()


# An IAM role or user ARN, as EKS access entries take them: any partition, a 12-digit account, an
# optional path (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns).
_PRINCIPAL_RE = re.compile(
    r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:(?:role|user)/(?:[\x21-\x7e]+/)?[A-Za-z0-9+=,.@_-]{1,128}"
)
_ROLE_RE = re.compile(r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/(?:[\x21-\x7e]+/)?[A-Za-z0-9+=,.@_-]{1,64}")


def _principal_problem(value: str, pattern: re.Pattern[str], what: str) -> str | None:
    if pattern.fullmatch(value):
        return None
    if ":sts::" in value and ":assumed-role/" in value:
        # What `aws sts get-caller-identity` prints in CI: a session, which an access entry cannot name.
        role = value.split(":assumed-role/", 1)[1].split("/", 1)[0]
        account = value.split(":sts::", 1)[1].split(":", 1)[0]
        return (
            f"'{value}' is an assumed-role session, which changes on every login; "
            f"name the role itself: arn:aws:iam::{account}:role/{role}"
        )
    return f"'{value}' is not {what}"


def _role_arn(value: str) -> str:
    value = value.strip()
    problem = _principal_problem(value, _ROLE_RE, "an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
    if problem:
        raise ValueError(problem)
    return value


def _principal_list(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not names:
        raise ValueError("is empty; list IAM role or user ARNs separated by commas")
    for name in names:
        problem = _principal_problem(
            name, _PRINCIPAL_RE, "an IAM role or user ARN: arn:aws:iam::<12-digit account>:role/<name> or :user/<name>"
        )
        if problem:
            raise ValueError(problem)
    return names


def _cidr_list(value: str) -> tuple[str, ...]:
    cidrs = tuple(part.strip() for part in value.split(",") if part.strip())
    if not cidrs:
        raise ValueError("is empty; list IPv4 networks such as 203.0.113.0/24, separated by commas")
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except ValueError:
            raise ValueError(f"'{cidr}' is not an IPv4 network such as 203.0.113.0/24") from None
    return cidrs


_ADDON_VERSION_RE = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+(?:-[a-z]+)?-eksbuild\.[0-9]+")


def _addon_version(value: str) -> str:
    if not _ADDON_VERSION_RE.fullmatch(value.strip()):
        raise ValueError(
            f"'{value}' is not an EKS add-on version such as v1.35.0-eksbuild.2 "
            "(`aws eks describe-addon-versions --addon-name NAME --kubernetes-version 1.NN` lists them)"
        )
    return value.strip()


def _retention(value: str) -> int:
    days = _int(value)
    if days not in LOG_RETENTION_DAYS:
        accepted = ", ".join(map(str, LOG_RETENTION_DAYS))
        raise ValueError(f"{days} is not a retention CloudWatch accepts; use one of {accepted}")
    return days


def _log_types(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [name for name in names if name not in LOG_TYPES]
    if bad:
        raise ValueError(f"'{','.join(bad)}' not known; use any of: {', '.join(LOG_TYPES)}")
    return names


@dataclass(frozen=True)
class EksSettings:
    """What only the ``eks`` target reads: the cluster, its network and its registry."""

    cluster_name: str = setting(
        _cluster_name,
        default="rolling",
        description="the EKS cluster name.",
        accepted="an EKS cluster name",
        targets=("eks",),
    )
    kubernetes_version: str = setting(
        _k8s_version,
        default=eks_versions.DEFAULT,
        description="the pinned Kubernetes minor version of the cluster (quote it). A preview warns "
        f"{eks_versions.WARN_DAYS} days before it leaves EKS standard support.",
        accepted="`1.NN`; quote it in YAML",
        targets=("eks",),
    )
    upgrade_policy: str = setting(
        _choice(UPGRADE_POLICIES),
        default="standard",
        description="what EKS does when kubernetesVersion leaves standard support: standard (AWS upgrades the "
        "control plane) or extended (it stays, at the extended-support hourly rate).",
        accepted="`standard` or `extended`",
        targets=("eks",),
    )
    coredns_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the coredns EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.13.2-eksbuild.1`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    kube_proxy_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the kube-proxy EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.35.0-eksbuild.2`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    vpc_cni_version: str | None = setting(
        _addon_version,
        default="",
        unset=True,
        description="the vpc-cni EKS add-on build; unset picks the one pinned for kubernetesVersion.",
        accepted="an add-on build such as `v1.21.1-eksbuild.3`",
        shown_default="pinned per `kubernetesVersion`",
        targets=("eks",),
    )
    cluster_admins: tuple[str, ...] = setting(
        _principal_list,
        default="",
        unset=True,
        description="IAM role or user ARNs, comma-separated, given cluster admin (an EKS access entry with "
        "AmazonEKSClusterAdminPolicy); the principal that created the cluster keeps admin too.",
        accepted="comma-separated IAM role or user ARNs (not `assumed-role` sessions)",
        shown_default="none",
        targets=("eks",),
    )
    deploy_role_arn: str | None = setting(
        _role_arn,
        default="",
        unset=True,
        description="the IAM role the deploy workflow assumes: an access entry with edit rights in the app "
        "namespace and read-only rights elsewhere.",
        accepted="an IAM role ARN",
        targets=("eks",),
    )
    preview_role_arn: str | None = setting(
        _role_arn,
        default="",
        unset=True,
        description="the IAM role pull-request previews assume: an access entry with read-only rights.",
        accepted="an IAM role ARN",
        targets=("eks",),
    )
    public_access_cidrs: tuple[str, ...] = setting(
        _cidr_list,
        default="0.0.0.0/0",
        description="IPv4 networks, comma-separated, that may reach the cluster's public API endpoint "
        "(still authenticated by IAM). Narrow it to your offices and self-hosted runners.",
        accepted="comma-separated IPv4 networks",
        targets=("eks",),
    )
    api_endpoint: str = setting(
        _choice(("public", "private")),
        default="public",
        description="public (the API endpoint is reachable from publicAccessCidrs and from the VPC) or private "
        "(from the VPC only: CI then needs a runner in or peered with the VPC).",
        accepted="`public` or `private`",
        targets=("eks",),
    )
    vpc_cidr: str = setting(
        _vpc_cidr,
        default="10.0.0.0/16",
        description="the VPC's IPv4 range, /16 to /20.",
        accepted="an IPv4 network, /16 to /20",
        targets=("eks",),
    )
    az_count: int = setting(
        _int_between(2, 6),
        default=2,
        description="availability zones to spread subnets over, 2 to 6.",
        accepted="2 to 6, no more than the region has",
        targets=("eks",),
    )
    nat_gateways: str = setting(
        _choice(NAT_MODES),
        default="single",
        description="single (one NAT gateway) or perAz (one per availability zone, survives an AZ outage).",
        accepted="`single` or `perAz`",
        targets=("eks",),
    )
    cluster_log_types: tuple[str, ...] = setting(
        _log_types,
        default="api,audit,authenticator",
        description="control-plane log types sent to CloudWatch, comma-separated "
        "(api, audit, authenticator, controllerManager, scheduler).",
        accepted="any of api, audit, authenticator, controllerManager, scheduler",
        targets=("eks",),
    )
    cluster_log_retention_days: int = setting(
        _retention,
        default=30,
        description="days CloudWatch keeps the control-plane logs (the log group the stack creates and "
        "deletes on destroy).",
        accepted="a retention CloudWatch accepts: 1, 3, 5, 7, 14, 30, 60, 90, … 3653",
        targets=("eks",),
    )
    fargate_namespaces: tuple[str, ...] = setting(
        _label_list,
        default="",
        unset=True,
        description="namespaces the Fargate profile selects, comma-separated; must include namespace. "
        "Default the app namespace; kube-system is always added.",
        accepted="comma-separated; must include `namespace`; `kube-system` is always added",
        shown_default="the app namespace",
        targets=("eks",),
    )
    ecr_repository: str = setting(
        _ecr_name,
        default="rolling",
        description="the ECR repository the deploy workflow pushes images to (immutable tags, scanned on push).",
        accepted="the ECR repository name",
        targets=("eks",),
    )
    ecr_on_destroy: str = setting(
        _choice(ECR_ON_DESTROY),
        default="delete",
        description="what `pulumi destroy` does with the ECR repository: delete (with every image in it) or "
        "retain (it stays in the account, images and all, and the stack forgets it).",
        accepted="`delete` (with its images) or `retain`",
        targets=("eks",),
    )
    ecr_keep_images: int = setting(
        _int_between(1, 1000),
        default=30,
        description="how many of the newest images the ECR lifecycle policy keeps, 1 to 1000.",
        accepted="1 to 1000 newest images kept",
        targets=("eks",),
    )
    alb_scheme: str = setting(
        _choice(("internet-facing", "internal")),
        default="internet-facing",
        description="internet-facing (an ALB in the public subnets, reachable from anywhere) or internal "
        "(private subnets, reachable from the VPC and what is peered with it).",
        accepted="`internet-facing` or `internal`",
        targets=("eks",),
    )
    certificate_arn: str | None = setting(
        _certificate_arn,
        default="",
        unset=True,
        description="an ACM certificate ARN in the stack's region; when set the ALB serves HTTPS on 443 and "
        "redirects HTTP to it.",
        accepted="`arn:aws:acm:<region>:<account>:certificate/<id>`; turns on HTTPS with a redirect",
        targets=("eks",),
    )
    deregistration_delay_seconds: int = setting(
        _int_between(0, 3600),
        default=20,
        description="seconds the ALB keeps a stopping pod's open connections; drainSeconds must outlast it by "
        f"{ALB_PROPAGATION_SECONDS} s.",
        accepted=f"0 to 3600; at most `drainSeconds` - {ALB_PROPAGATION_SECONDS}",
        targets=("eks",),
    )
    analysis_source: str = setting(
        _choice(ANALYSIS_SOURCES),
        default="probe",
        description="Where the rollout command's analysis gets its evidence: probe (requests of its own to the "
        "stack's url, which must be reachable from where it runs) or cloudwatch (the ALB's metrics for the app's "
        "target group, read with the AWS CLI, for a runner that cannot reach the ALB: judged a minute at a time "
        f"against the old version's last minutes; bake and canary at least {METRICS_LEAST_WINDOW_S} s, "
        f"{METRICS_WINDOW_S} s when unset).",
        accepted="`probe` or `cloudwatch`",
        targets=("eks",),
    )


@dataclass(frozen=True)
class LocalSettings:
    """The keys only the local target reads."""

    kubeconfig: str | None = setting(
        _kubeconfig,
        default="",
        unset=True,
        description="a kubeconfig path or its text; unset uses KUBECONFIG or ~/.kube/config.",
        accepted="a kubeconfig path or its text",
        targets=("local",),
    )


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from stack config, validated. ``eks`` is None on other targets."""

    target: str = setting(
        _choice(TARGETS),
        default="eks",
        description="Where the app runs, eks (a Fargate EKS cluster this stack creates) "
        "or local (the cluster a kubeconfig names).",
        accepted="`eks` or `local`",
    )
    image_repository: str = setting(
        images.check_repository,
        default="nginxinc/nginx-unprivileged",
        description="Registry and repository of the container image, without tag or digest. The default is "
        "nginx built to run unprivileged (port 8080); the deploy workflow sets the stack's ECR repository.",
        accepted="a registry/repository without tag or digest",
    )
    image_tag: str | None = setting(
        images.check_tag,
        default="",
        unset=True,
        example="1.16.1",
        description="The image tag to run (Docker tag grammar; latest is refused). Changing it is a rolling "
        "update. Unset, the app keeps the image it runs (what the deploy pipeline shipped), so an `up` from a "
        "clean checkout never rolls the app back; a new stack starts bootstrapImage.",
        accepted="a Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; `latest` is refused",
        shown_default="unset: keep the image that runs",
    )
    bootstrap_image: str = setting(
        _pinned_image,
        default=BOOTSTRAP_IMAGE,
        description="The image a new stack's Deployment starts with when imageTag is unset (the deploy "
        "pipeline then ships the app); the default is the base the app image is built on.",
        accepted="a pinned image reference, `repository:tag` or `repository@sha256:…`",
    )
    image_digest: str | None = setting(
        images.check_digest,
        default="",
        unset=True,
        description="Optional sha256:<64 hex> digest; when set the pod runs repository@digest.",
        accepted="`sha256:` + 64 hex; the pod then runs `repository@digest`",
    )
    replicas: int = setting(
        _int_at_least(1),
        default=3,
        description="Pods of the Deployment, at least 1.",
        accepted="≥ 1",
    )
    max_surge: strategy.IntOrPercent = setting(
        _int_or_percent,
        default="1",
        description="Pods above replicas a rollout may add, a whole number or a percentage such as 25%.",
        accepted="a whole number or `N%`",
    )
    max_unavailable: strategy.IntOrPercent = setting(
        _unavailable,
        default="0",
        description="Pods below replicas a rollout may take down, a whole number or a percentage up to 100%. "
        "0 keeps every replica serving.",
        accepted="a whole number or `N%` up to 100%; not 0 when `maxSurge` is 0",
    )
    min_ready_seconds: int = setting(
        _int_at_least(0),
        default=5,
        description="Seconds a new pod must stay ready before the rollout counts it available.",
        accepted="≥ 0",
    )
    progress_deadline_seconds: int = setting(
        _int_at_least(1),
        default=0,
        unset=True,
        description="Seconds without progress after which a rollout counts as failed; "
        f"`up` waits at most this plus {_per_target(AWAIT_MARGIN_SECONDS, ' s')}. "
        f"0 picks {_per_target(PROGRESS_DEADLINE_DEFAULTS)}.",
        accepted="≥ 1, more than `minReadySeconds`",
        shown_default=f"`0` ({_per_target(PROGRESS_DEADLINE_DEFAULTS)})",
    )
    drain_seconds: int = setting(
        _int_between(0, 3600),
        default=-1,
        unset=True,
        description="Seconds a stopping pod keeps serving after it leaves the Service (a preStop sleep), "
        f"so no request is routed to a server that has stopped. -1 picks {DRAIN_DEFAULTS['eks']} on eks "
        f"(outlasting the load balancer's deregistration), {DRAIN_DEFAULTS['local']} on local (kube-proxy's "
        "update); 0 stops at once, which the policy pack's drains-before-stopping refuses (for experiments "
        "such as the one that shows what the drain saves).",
        accepted="0 to 3600; less than `terminationGracePeriodSeconds`",
        shown_default=f"`-1` ({_per_target(DRAIN_DEFAULTS)})",
    )
    keep_alive_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds the app's server keeps an idle keep-alive connection open (nginx's keepalive_timeout; "
        f"its Keep-Alive header says one less). -1 picks {_per_target(KEEPALIVE_DEFAULTS)}: on eks longer than "
        f"the ALB's idle timeout ({ALB_IDLE_TIMEOUT_SECONDS} s), as AWS advises, so the ALB never reuses a "
        "connection the pod closed; locally short enough to end in the drain.",
        accepted=f"1 to 3600; on eks more than {ALB_IDLE_TIMEOUT_SECONDS}; locally, with `connectionMaxSeconds`, "
        f"at most `drainSeconds` - {SERVICE_PROPAGATION_SECONDS}",
        shown_default=f"`-1` ({_per_target(KEEPALIVE_DEFAULTS)})",
    )
    connection_max_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds one connection may carry requests (nginx's keepalive_time): the response after that "
        "says `Connection: close` and the server closes the connection cleanly, so every connection to a "
        "stopping pod ends during its drain and a client that does not retry loses nothing. "
        f"-1 picks {_per_target(CONNECTION_MAX_DEFAULTS)}.",
        accepted=f"1 to 3600; locally, with `keepAliveSeconds`, at most `drainSeconds` - {SERVICE_PROPAGATION_SECONDS}",
        shown_default=f"`-1` ({_per_target(CONNECTION_MAX_DEFAULTS)})",
    )
    termination_grace_period_seconds: int = setting(
        _int_between(1, 3600),
        default=0,
        unset=True,
        description="Seconds Kubernetes gives a stopping pod before it kills it: the drain, then nginx's "
        f"graceful stop. 0 picks drainSeconds + {STOP_SECONDS}.",
        accepted="more than `drainSeconds`",
        shown_default=f"`0` (`drainSeconds` + {STOP_SECONDS})",
    )
    namespace: str = setting(
        _label,
        default="rolling",
        description="Namespace of the app (a DNS-1123 label), created by the stack with the restricted Pod "
        "Security Standard unless it is default; on eks it is selected by the Fargate profile.",
        accepted="a DNS-1123 label",
    )
    container_port: int = setting(
        _int_between(1, 65535),
        default=8080,
        description="Port the image's server listens on (the Service's port 80 reaches it). "
        f"Below {PRIVILEGED_PORTS_BELOW} only with imageNeedsRoot.",
        accepted=f"1 to 65535; below {PRIVILEGED_PORTS_BELOW} only with `imageNeedsRoot`",
    )
    image_needs_root: bool = setting(
        _bool,
        default=False,
        description="Whether the image must start as root (the stock nginx image binds port 80 as root, then "
        "drops to a worker user). false runs the pod as uid 10001 with every capability dropped; true lets it "
        "start as root with the four capabilities nginx uses, and the policy pack warns.",
        accepted="`true` or `false`; `true` weakens the pod's security context",
    )
    cpu: str = setting(
        _quantity(fargate.parse_cpu),
        default="250m",
        description="CPU request and limit of the container, one of Fargate's vCPU sizes (250m, 500m, 1, 2, 4, 8, 16).",
        accepted="a Fargate vCPU size; with `memory`, a pair Fargate can run",
    )
    memory: str = setting(
        _quantity(fargate.parse_memory),
        default="256Mi",
        description="Memory request and limit of the container, in Mi or Gi; "
        "on eks, with Fargate's 256Mi overhead, it must fit a size offered with the cpu.",
        accepted="`Mi` or `Gi`; on eks, with `cpu`, a pair Fargate can run",
    )
    # What the rollout command's analysis holds a release to (infra/rollout/analysis.py). The program
    # does not read these; the command reads them from the same config, checked with the rest.
    analysis: bool = setting(
        _bool,
        default=True,
        description="Whether the rollout command measures what the new version serves (a prober sending "
        "analysisRate requests a second to the stack's url) during the rollout and bakeSeconds after it, and "
        "rolls back a release that breaks maxErrorRatio or maxP99Ms. The url must be reachable from where "
        "the command runs; false ships on readiness alone.",
        accepted="`true` or `false`",
    )
    analysis_rate: int = setting(
        _int_between(1, 50),
        default=10,
        description="Requests a second the analysis's prober sends to the stack's url, each on a new connection.",
        accepted="1 to 50",
    )
    max_error_ratio: float = setting(
        _ratio,
        default="2%",
        description="The most of the new version's responses that may be errors (5xx, or no response once the "
        "new version serves alone) before the release is rolled back.",
        accepted="a percentage such as `2%`, or a decimal from 0 to 1 such as `0.02`",
    )
    max_p99_ms: int = setting(
        _int_between(1, 60000),
        default=1000,
        description="The slowest the new version's 99th-percentile response (whole response, at the prober) may "
        "be before the release is rolled back, in milliseconds.",
        accepted="1 to 60000",
    )
    min_requests: int = setting(
        _int_between(1, 100000),
        default=50,
        description="Responses of the new version the analysis needs before it judges: with fewer it reports "
        "not enough evidence and never rolls back.",
        accepted="1 to 100000",
    )
    bake_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds the analysis goes on after the rollout completes before the release counts as "
        f"shipped. -1 picks {_per_target(BAKE_DEFAULTS)}; 0 ends the analysis with the rollout.",
        accepted="0 to 3600",
        shown_default=f"`-1` ({_per_target(BAKE_DEFAULTS)})",
    )
    canary_tag: str | None = setting(
        images.check_tag,
        default="",
        unset=True,
        description="The tag a canary runs: canaryReplicas pods of it beside the Deployment's, behind the same "
        "Service. The rollout command's `--canary` sets it and removes it (promote or abort); unset, no canary.",
        accepted="a Docker tag, as imageTag",
        shown_default="unset: no canary",
    )
    canary_replicas: int = setting(
        _int_between(1, 100),
        default=1,
        description="Pods of the canary (the rollout command's `--canary N` sets it).",
        accepted="1 to 100",
    )
    canary_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds the rollout command analyses a canary before it rolls the rest of the replicas. "
        f"-1 picks {_per_target(CANARY_DEFAULTS)}.",
        accepted="0 to 3600",
        shown_default=f"`-1` ({_per_target(CANARY_DEFAULTS)})",
    )
    change_cause: str | None = setting(
        _cause,
        default="",
        unset=True,
        description="Why the image runs, one line: the Deployment's kubernetes.io/change-cause, which `kubectl "
        "rollout history` shows. The rollout command sets it on every release (`ship IMAGE by WHO`); a plain "
        "`pulumi up` that changes the image writes `up IMAGE` when it names another image.",
        accepted=f"one line of printable text, at most {release.MAX_CAUSE} characters",
        shown_default="unset: set by the rollout command",
    )
    soak_seconds: int = setting(
        _int_between(-1, 604800),
        default=-1,
        unset=True,
        description="Seconds a release must have run on the stack it is promoted from before `rollout promote "
        f"--from` ships it to this one. -1 picks {_per_target(SOAK_DEFAULTS)}; 0 promotes at once.",
        accepted="0 to 604800 (a week)",
        shown_default=f"`-1` ({_per_target(SOAK_DEFAULTS)})",
    )
    # The keys one target alone reads; None on the other target.
    local: LocalSettings | None = None
    eks: EksSettings | None = None

    @property
    def keeps_running_image(self) -> bool:
        """No image named: the Deployment keeps the one it runs (a new one starts ``bootstrap_image``)."""
        return self.image_tag is None and self.image_digest is None

    @property
    def image(self) -> str:
        """The reference the container runs: the one named, or the bootstrap image when none is."""
        if self.keeps_running_image:
            return self.bootstrap_image
        return images.reference(self.image_repository, self.image_tag or "", self.image_digest)

    @property
    def canary_image(self) -> str | None:
        """The canary's image (the Deployment's repository at canaryTag), or None when there is none."""
        return None if self.canary_tag is None else images.reference(self.image_repository, self.canary_tag, None)

    @property
    def rollout(self) -> strategy.RollingUpdate:
        return strategy.plan(self.replicas, self.max_surge, self.max_unavailable)

    @property
    def pod_size(self) -> fargate.PodSize:
        return fargate.pod_size(fargate.parse_cpu(self.cpu), fargate.parse_memory(self.memory))

    @property
    def await_timeout_seconds(self) -> int:
        """The most `up` waits for a rollout to complete before it fails."""
        return self.progress_deadline_seconds + AWAIT_MARGIN_SECONDS[self.target]

    @classmethod
    def load(cls) -> Settings:
        """Read the ``rolling:`` keys of the current stack; bad values stop the program before any resource,
        with the message alone (a `pulumi.RunError` is shown without a traceback)."""
        import pulumi

        config = pulumi.Config(NAMESPACE)
        values = {d.key: value for d in declarations() if (value := config.get(d.key)) is not None}
        try:
            return cls.from_values(values)
        except SettingsError as err:
            raise pulumi.RunError(str(err)) from None

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> Settings:
        """Validate raw config values (strings, or numbers from YAML), all of them at once."""
        return _read(values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _declared(cls: type) -> Iterator[Declaration]:
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            yield Declaration(key=_camel(f.name), field=f.name, **f.metadata["setting"])


def declarations() -> tuple[Declaration, ...]:
    """Every ``rolling:`` key, in the order the docs list them."""
    return (*_declared(Settings), *_declared(LocalSettings), *_declared(EksSettings))


def _parse_one(d: Declaration, text: str | None, target: str | None, parsed: dict[str, Any]) -> str | None:
    """Parse one key's text into ``parsed``; return the problem with it, if any."""
    if target is not None and target not in d.targets:
        # A key this target never reads: say what is wrong with its value, or else refuse
        # a value other than the default, since whoever set it expects an effect.
        if text is None or str(text) == str(d.default):
            return None
        try:
            d.parse(text)
        except ValueError as err:
            return f"{NAMESPACE}:{d.key} {err}"
        return (
            f"{NAMESPACE}:{d.key} is only read by target {'/'.join(d.targets)}; "
            f"target {target} does not use it: remove it from this stack's config"
        )
    if text is None:
        if d.required:
            return f"{NAMESPACE}:{d.key} is not set: run `pulumi config set {d.key} {d.example}`"
        parsed[d.field] = None
        return None
    try:
        parsed[d.field] = d.parse(text)
    except ValueError as err:
        return f"{NAMESPACE}:{d.key} {err}"
    return None


def _read(values: Mapping[str, object]) -> Settings:
    """Parse every key, then check the rules between keys; raise one error listing every problem."""
    decls = declarations()
    known = [d.key for d in decls]
    problems = [
        f"{NAMESPACE}:{key} is not a setting of this program; known keys: {', '.join(known)}"
        for key in sorted(set(values) - set(known))
    ]
    raw: dict[str, str | None] = {}
    for d in decls:
        value = values.get(d.key, None if d.required else d.default)
        if value is None or (d.unset and str(value) == str(d.default)):
            raw[d.key] = None
        else:
            raw[d.key] = str(value)

    target = raw["target"] if raw["target"] in TARGETS else None
    parsed: dict[str, Any] = {}
    for d in decls:
        problem = _parse_one(d, raw[d.key], target, parsed)
        if problem:
            problems.append(problem)

    if target is not None:
        _derive(parsed, target)
    for rule in _RULES:
        problem = rule(parsed, target)
        if problem:
            problems.append(problem)
    if problems or target is None:
        raise SettingsError(problems)

    def part(cls: type[Any], of: str) -> Any:
        return cls(**{d.field: parsed.get(d.field) for d in _declared(cls)}) if target == of else None

    fields: dict[str, Any] = {d.field: parsed.get(d.field) for d in _declared(Settings)}
    return Settings(**fields, local=part(LocalSettings, "local"), eks=part(EksSettings, "eks"))


def _derive(parsed: dict[str, Any], target: str) -> None:
    """Fill in what an unset key means, from the target and other keys, before any rule reads them. A key
    whose own value was refused is absent from ``parsed``; what depends on it stays unfilled."""
    if parsed.get("progress_deadline_seconds", 0) is None:
        parsed["progress_deadline_seconds"] = PROGRESS_DEADLINE_DEFAULTS[target]
    if "drain_seconds" in parsed and parsed["drain_seconds"] is None:
        parsed["drain_seconds"] = DRAIN_DEFAULTS[target]
    for key, defaults in (
        ("keep_alive_seconds", KEEPALIVE_DEFAULTS),
        ("connection_max_seconds", CONNECTION_MAX_DEFAULTS),
    ):
        if key in parsed and parsed[key] in (None, -1):
            parsed[key] = defaults[target]
            drain = parsed.get("drain_seconds")
            if target == "local" and drain:
                # Unset, both fit a shorter drain than the default: each half of what it leaves.
                parsed[key] = max(1, min(parsed[key], (drain - SERVICE_PROPAGATION_SECONDS) // 2))
    metrics = parsed.get("analysis_source") == "cloudwatch"
    for key, per_target in (
        ("bake_seconds", BAKE_DEFAULTS),
        ("canary_seconds", CANARY_DEFAULTS),
        ("soak_seconds", SOAK_DEFAULTS),
    ):
        if parsed.get(key, 0) in (None, -1):
            parsed[key] = METRICS_WINDOW_S if metrics and key != "soak_seconds" else per_target[target]
    if parsed.get("drain_seconds") is not None and parsed.get("termination_grace_period_seconds", 0) is None:
        parsed["termination_grace_period_seconds"] = parsed["drain_seconds"] + STOP_SECONDS
    if target != "eks":
        return
    if "namespace" in parsed and "fargate_namespaces" in parsed:
        # Unset: the app's namespace. CoreDNS runs in kube-system and must run on Fargate too.
        names = parsed["fargate_namespaces"] or (parsed["namespace"],)
        parsed["fargate_namespaces"] = tuple(dict.fromkeys((*names, "kube-system")))
    pinned = eks_versions.ADDONS.get(parsed.get("kubernetes_version") or "")
    for name in _ADDON_FIELDS:
        if pinned is not None and name in parsed and parsed[name] is None:
            parsed[name] = getattr(pinned, name.removesuffix("_version"))


# Rules between keys, run after _derive, in any order: each reads the parsed values (a key whose own
# value was refused is absent) and returns a problem or None. None changes a value.
Rule = Callable[[dict[str, Any], str | None], str | None]


def _rollout_possible(parsed: dict[str, Any], target: str | None) -> str | None:
    if not {"replicas", "max_surge", "max_unavailable"} <= parsed.keys():
        return None
    try:
        strategy.plan(parsed["replicas"], parsed["max_surge"], parsed["max_unavailable"])
    except strategy.StrategyError as err:
        return f"{NAMESPACE}:maxSurge/maxUnavailable: {err}"
    return None


def _deadline_after_min_ready(parsed: dict[str, Any], target: str | None) -> str | None:
    deadline, min_ready = parsed.get("progress_deadline_seconds"), parsed.get("min_ready_seconds")
    if deadline is not None and min_ready is not None and deadline <= min_ready:
        return f"{NAMESPACE}:progressDeadlineSeconds {deadline} must be greater than minReadySeconds {min_ready}"
    return None


def _fargate_size(parsed: dict[str, Any], target: str | None) -> str | None:
    # Where Fargate runs the pods only: a local cluster takes any size its nodes have room for.
    if target != "eks" or "cpu" not in parsed or "memory" not in parsed:
        return None
    cpu, memory = parsed["cpu"], parsed["memory"]
    try:
        fargate.pod_size(fargate.parse_cpu(cpu), fargate.parse_memory(memory))
    except fargate.SizeError as err:
        return f"{NAMESPACE}:cpu/memory {cpu}/{memory}: {err}"
    return None


def _fargate_selects_namespace(parsed: dict[str, Any], target: str | None) -> str | None:
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


def _fargate_selector_limit(parsed: dict[str, Any], target: str | None) -> str | None:
    # _derive added kube-system.
    names = parsed.get("fargate_namespaces")
    if target != "eks" or names is None or len(names) <= MAX_FARGATE_SELECTORS:
        return None
    return (
        f"{NAMESPACE}:fargateNamespaces selects {len(names)} namespaces with kube-system ({','.join(names)}); "
        f"a Fargate profile takes at most {MAX_FARGATE_SELECTORS} selectors: list at most "
        f"{MAX_FARGATE_SELECTORS - 1} besides kube-system"
    )


_ADDON_FIELDS = {
    "coredns_version": "corednsVersion",
    "kube_proxy_version": "kubeProxyVersion",
    "vpc_cni_version": "vpcCniVersion",
}


def _addons_pinned(parsed: dict[str, Any], target: str | None) -> str | None:
    version = parsed.get("kubernetes_version")
    if target != "eks" or version is None:
        return None
    # _derive filled every unset build it has a pin for.
    missing = [key for name, key in _ADDON_FIELDS.items() if name in parsed and parsed[name] is None]
    if not missing:
        return None
    return (
        f"{NAMESPACE}:kubernetesVersion {version} has no pinned add-on builds in this program "
        f"(it pins them for {', '.join(sorted(eks_versions.ADDONS))}): set {', '.join(missing)} to builds that "
        f"`aws eks describe-addon-versions --kubernetes-version {version}` lists"
    )


def _port_needs_root(parsed: dict[str, Any], target: str | None) -> str | None:
    port, root = parsed.get("container_port"), parsed.get("image_needs_root")
    if port is None or root is None or port >= PRIVILEGED_PORTS_BELOW or root:
        return None
    return (
        f"{NAMESPACE}:containerPort {port} is a privileged port, which the pod's non-root user cannot bind: "
        "use an image that listens on 1024 or above (the app image listens on 8080), "
        "or set imageNeedsRoot true for an image that starts as root"
    )


def _drain_fits_grace_period(parsed: dict[str, Any], target: str | None) -> str | None:
    drain, grace = parsed.get("drain_seconds"), parsed.get("termination_grace_period_seconds")
    if target is None or drain is None or grace is None:
        return None
    if grace <= drain:
        return (
            f"{NAMESPACE}:terminationGracePeriodSeconds {grace} must be greater than drainSeconds {drain}: "
            f"the pod would be killed while it drains; use at least {drain + STOP_SECONDS}, or unset it"
        )
    return None


def _drain_outlasts_deregistration(parsed: dict[str, Any], target: str | None) -> str | None:
    drain, delay = parsed.get("drain_seconds"), parsed.get("deregistration_delay_seconds")
    if target != "eks" or drain is None or delay is None or drain >= delay + ALB_PROPAGATION_SECONDS:
        return None
    return (
        f"{NAMESPACE}:drainSeconds {drain} is shorter than deregistrationDelaySeconds {delay} plus the "
        f"{ALB_PROPAGATION_SECONDS} s the ALB takes to stop routing: a stopping pod would close while the ALB "
        f"still sends it requests; use drainSeconds {delay + ALB_PROPAGATION_SECONDS} or more, "
        "or a shorter deregistrationDelaySeconds"
    )


def _eks_namespace_of_its_own(parsed: dict[str, Any], target: str | None) -> str | None:
    if target != "eks" or parsed.get("namespace") != "default":
        return None
    return (
        f"{NAMESPACE}:namespace 'default' cannot be used on eks: the program labels the app's namespace "
        "(ALB readiness gates, Pod Security) and owns it; pick a namespace of the app's own, such as rolling"
    )


def _sleep_action_available(parsed: dict[str, Any], target: str | None) -> str | None:
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


def _keepalive_positive(parsed: dict[str, Any], target: str | None) -> str | None:
    for key, name in (("keep_alive_seconds", "keepAliveSeconds"), ("connection_max_seconds", "connectionMaxSeconds")):
        if parsed.get(key) == 0:
            return f"{NAMESPACE}:{name} 0 is not accepted: 1 to 3600 seconds, or -1 for the target's default"
    return None


def _keepalive_outlasts_alb(parsed: dict[str, Any], target: str | None) -> str | None:
    idle = parsed.get("keep_alive_seconds")
    if target != "eks" or not idle or idle > ALB_IDLE_TIMEOUT_SECONDS:
        return None
    return (
        f"{NAMESPACE}:keepAliveSeconds {idle} is not longer than the ALB's idle timeout "
        f"({ALB_IDLE_TIMEOUT_SECONDS} s): the ALB would reuse connections the pods have closed and answer 502; "
        f"use {ALB_IDLE_TIMEOUT_SECONDS + 15} or more (AWS advises the target's timeout be the longer)"
    )


def _keepalive_ends_in_drain(parsed: dict[str, Any], target: str | None) -> str | None:
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


def _metrics_need_whole_minutes(parsed: dict[str, Any], target: str | None) -> str | None:
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


_RULES: tuple[Rule, ...] = (
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
)


# The documents made from the declarations: the whole table in docs/configuration.md, the keys a
# newcomer sets first in the README.
TABLE_BEGIN = "<!-- settings table: made by `python -m infra.settings` from infra/settings.py -->"
TABLE_END = "<!-- end of settings table -->"
TABLE_DOC = "docs/configuration.md"
EXCERPT_KEYS = ("target", "imageTag", "replicas", "maxSurge", "maxUnavailable", "drainSeconds", "deployRoleArn")


def readme_table(keys: tuple[str, ...] | None = None) -> str:
    """The settings table between its markers: every key, or only ``keys`` in declaration order."""
    chosen = [d for d in declarations() if keys is None or d.key in keys]
    rows = ["| key | default | accepted |", "|---|---|---|", *(d.table_row() for d in chosen)]
    return "\n".join([TABLE_BEGIN, *rows, TABLE_END])


def schema_yaml() -> str:
    """The ``config:`` block of ``Pulumi.yaml``."""
    lines = ["config:"]
    for d in declarations():
        lines.append(f"  {d.key}:")
        for name, value in d.schema().items():
            text = (
                _yaml_string(value)
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else value
            )
            lines.append(f"    {name}: {text}")
    return "\n".join(lines) + "\n"


def _yaml_string(value: str) -> str:
    import yaml  # only when writing or checking the documents

    return str(yaml.safe_dump(value, width=1 << 16)).removesuffix("\n").removesuffix("\n...")


def write_documents(root: str) -> None:
    """Rewrite the schema in Pulumi.yaml and the tables in docs/configuration.md and README.md from
    the declarations."""
    project = os.path.join(root, "Pulumi.yaml")
    with open(project, encoding="utf-8") as f:
        text = f.read()
    head = text[: text.index("\nconfig:\n") + 1] if "\nconfig:\n" in text else text
    with open(project, "w", encoding="utf-8") as f:
        f.write(head + schema_yaml())
    for name, table in ((TABLE_DOC, readme_table()), ("README.md", readme_table(EXCERPT_KEYS))):
        path = os.path.join(root, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:start] + table + text[end:])


if __name__ == "__main__":
    write_documents(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
