"""Reading config values into settings (``model.Settings``, passed in): every key parsed, unset keys
derived, the rules checked, every problem said at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from infra import eks_versions
from infra.settings.declaration import Declaration, SettingsError, _declared
from infra.settings.defaults import (
    ADDON_FIELDS,
    BAKE_DEFAULTS,
    CANARY_DEFAULTS,
    CONNECTION_MAX_DEFAULTS,
    DRAIN_DEFAULTS,
    KEEPALIVE_DEFAULTS,
    METRICS_WINDOW_S,
    NAMESPACE,
    PROGRESS_DEADLINE_DEFAULTS,
    SERVICE_PROPAGATION_SECONDS,
    SOAK_DEFAULTS,
    STOP_SECONDS,
    TARGETS,
)
from infra.settings.eks import EksSettings
from infra.settings.local import LocalSettings
from infra.settings.rules import RULES, Rule

S = TypeVar("S")


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


def read(values: Mapping[str, object], settings: type[S], rules: tuple[Rule, ...] = RULES) -> S:
    """Parse every key, then check the rules between keys; raise one error listing every problem."""
    decls = (*_declared(settings), *_declared(LocalSettings), *_declared(EksSettings))
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
        derive(parsed, target)
    for rule in rules:
        problem = rule(parsed, target)
        if problem:
            problems.append(problem)
    if problems or target is None:
        raise SettingsError(problems)

    def part(cls: type[Any], of: str) -> Any:
        return cls(**{d.field: parsed.get(d.field) for d in _declared(cls)}) if target == of else None

    fields: dict[str, Any] = {d.field: parsed.get(d.field) for d in _declared(settings)}
    make: Callable[..., S] = settings  # a dataclass whose fields are the declarations'
    return make(**fields, local=part(LocalSettings, "local"), eks=part(EksSettings, "eks"))


def _derive_canary_traffic(parsed: dict[str, Any], target: str) -> None:
    # Unset: the ALB's weights where there is an ALB, unless the analysis reads the ALB's metrics, which judge
    # the app's target group alone (a canary behind it, by its pods, is judged there).
    if "canary_traffic" in parsed and not parsed["canary_traffic"]:
        weighs = target == "eks" and parsed.get("analysis_source") != "cloudwatch"
        parsed["canary_traffic"] = "weights" if weighs else "pods"


def derive(parsed: dict[str, Any], target: str) -> None:
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
    _derive_canary_traffic(parsed, target)
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
    for name in ADDON_FIELDS:
        if pinned is not None and name in parsed and parsed[name] is None:
            parsed[name] = getattr(pinned, name.removesuffix("_version"))
