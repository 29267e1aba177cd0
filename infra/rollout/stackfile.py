"""Stack config files the command writes for the engine, in a form the engine reads back unchanged.

The engine reads `Pulumi.<stack>.yaml` as YAML 1.2 (core schema), where a plain `12345e7` is the number
1.2345e+11; PyYAML writes YAML 1.1, where it is a string, and leaves it unquoted. A short commit SHA is
such a string about once in 54 commits. JSON is YAML 1.2 with every string quoted, so what this module
writes is read as written by any YAML reader (https://yaml.org/spec/1.2.2/#chapter-10-recommended-schemas:
only plain scalars are resolved by schema).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def read(path: Path) -> dict[str, Any]:
    """A stack file's document (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    document = yaml.safe_load(path.read_text())
    return dict(document or {})


def dumps(document: Mapping[str, Any]) -> str:
    """The document as text for the engine: JSON, so every string is quoted."""
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def with_config(document: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A copy of a stack file's document with ``values`` set in its config (as strings)."""
    config = dict(document.get("config") or {})
    config.update({key: str(value) for key, value in values.items()})
    return {**document, "config": config}
