"""Parsers: each takes a key's config text and returns its value, or raises ValueError saying what is wrong
and what is accepted (the key is added in front)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Callable

from infra import fargate, images, release, strategy
from infra.kube import access as kube_access
from infra.settings.defaults import LOG_RETENTION_DAYS, LOG_TYPES, MAX_CANARY_STEPS


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


def _times_or_off(value: str) -> int:
    """0 (off), or a whole multiple from 2 to 100."""
    number = _int(value)
    if number != 0 and not 2 <= number <= 100:
        raise ValueError(f"{number} is out of range; use 0 (off) or 2 to 100")
    return number


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


def _percent_steps(value: str) -> tuple[int, ...]:
    """Shares of users' requests, in percent, each larger than the last: ``5,25``."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("is empty; list percentages separated by commas, such as 5,25")
    steps = tuple(_int_between(1, 99)(part) for part in parts)
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"'{value}' must grow at every step, such as 5,25")
    if len(steps) > MAX_CANARY_STEPS:
        raise ValueError(f"'{value}' has {len(steps)} steps; use at most {MAX_CANARY_STEPS}")
    return steps


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
