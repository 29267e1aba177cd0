"""The ``rolling:`` config keys code names, each derived from its declaration: a key that no setting
declares fails at import, not as a value silently never read."""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings.defaults import NAMESPACE
from infra.settings.model import declarations


@dataclass(frozen=True)
class ConfigKey:
    """A ``rolling:`` key: ``name`` as Settings.from_values takes it, ``full`` as Pulumi's config has it."""

    name: str

    @property
    def full(self) -> str:
        return f"{NAMESPACE}:{self.name}"


def config_key(field: str) -> ConfigKey:
    """The key of the setting declared as the Settings field ``field`` (KeyError when none is)."""
    for d in declarations():
        if d.field == field:
            return ConfigKey(d.key)
    raise KeyError(f"no rolling: setting is declared as the field {field!r}")


def strip(config: dict[str, str]) -> dict[str, str]:
    """The ``rolling:`` keys of a stack's whole config, without their namespace (as from_values takes them)."""
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}


TARGET = config_key("target")
IMAGE_REPOSITORY = config_key("image_repository")
IMAGE_TAG = config_key("image_tag")
IMAGE_DIGEST = config_key("image_digest")
CANARY_TAG = config_key("canary_tag")
CANARY_REPLICAS = config_key("canary_replicas")
CANARY_WEIGHT = config_key("canary_weight")
CANARY_TRAFFIC = config_key("canary_traffic")
ANALYSIS = config_key("analysis")
CHANGE_CAUSE = config_key("change_cause")
