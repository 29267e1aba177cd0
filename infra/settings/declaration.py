"""How a `rolling:` key is declared (``setting(...)`` on a dataclass field) and read back as a ``Declaration``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from infra.settings.defaults import TARGETS


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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _declared(cls: type) -> Iterator[Declaration]:
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            yield Declaration(key=_camel(f.name), field=f.name, **f.metadata["setting"])
