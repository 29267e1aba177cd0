"""The documents made from the declarations: Pulumi.yaml's schema, the tables in docs/configuration.md and
the README."""

from __future__ import annotations

import os

from infra.settings.model import declarations

# The documents made from the declarations: the whole table in docs/configuration.md, the keys a
# newcomer sets first in the README.
TABLE_BEGIN = "<!-- settings table: made by `python -m infra.settings` from infra/settings/ -->"
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
