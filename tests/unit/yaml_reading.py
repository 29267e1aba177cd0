"""How the engine (Go, YAML 1.2's core schema) reads a stack file's scalars: the helpers the stack-file and
the rollout command's tests share."""

from __future__ import annotations

import re

import yaml

# The YAML 1.2 core schema's plain scalars that are not strings (https://yaml.org/spec/1.2.2/#1032-tag-resolution):
# what the engine (Go, YAML 1.2) would read as null, a boolean, an integer or a float.
CORE_NOT_STRING = re.compile(
    r"null|Null|NULL|~|true|True|TRUE|false|False|FALSE"
    r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN"
)


def plain_scalars(text: str) -> list[str]:
    """The scalars of a YAML text that carry no quotes: the only ones a schema resolves to a type."""
    return [t.value for t in yaml.scan(text) if isinstance(t, yaml.ScalarToken) and t.plain]


def engine_reads(text: str, key: str) -> object:
    """What a YAML 1.2 core-schema reader makes of ``key``'s value in ``text`` (a string unless plain and typed)."""
    value = yaml.safe_load(text)["config"][key]
    plain = set(plain_scalars(text))
    if isinstance(value, str) and value in plain and CORE_NOT_STRING.fullmatch(value):
        return float(value) if any(c in value for c in ".eE") else value
    return value
