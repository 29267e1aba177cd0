"""The config contract: every ``rolling:`` key, declared once, read and validated in one place.

Each key is one field of ``Settings`` (read by every target), ``LocalSettings`` or ``EksSettings`` (read by
one target), declared with ``setting(...)``: its parser, default, description and the text the docs show.
The defaults, the validation, the ``Pulumi.yaml`` schema and the tables in docs/configuration.md and the
README all come from those declarations (``python -m infra.settings`` rewrites them; a unit test holds
them equal).

The package, from the bottom: ``defaults`` (targets and per-target defaults), ``declaration`` (``setting``
and ``Declaration``), ``parsers``, ``rules`` (between keys, each declared with the fields it reads),
``local`` and ``eks`` (one target's keys), ``read`` (parse, derive, check), ``model`` (``Settings`` and
every declaration), ``docs`` (the documents).
"""

from infra.settings.declaration import Declaration, SettingsError, setting
from infra.settings.defaults import (
    BOOTSTRAP_IMAGE,
    NAMESPACE,
    SERVICE_PROPAGATION_SECONDS,
    TARGETS,
)
from infra.settings.docs import (
    EXCERPT_KEYS,
    TABLE_BEGIN,
    TABLE_DOC,
    TABLE_END,
    readme_table,
    schema_yaml,
    write_documents,
)
from infra.settings.eks import EksSettings
from infra.settings.local import LocalSettings
from infra.settings.model import Settings, declarations

__all__ = [
    "BOOTSTRAP_IMAGE",
    "EXCERPT_KEYS",
    "NAMESPACE",
    "SERVICE_PROPAGATION_SECONDS",
    "TABLE_BEGIN",
    "TABLE_DOC",
    "TABLE_END",
    "TARGETS",
    "Declaration",
    "EksSettings",
    "LocalSettings",
    "Settings",
    "SettingsError",
    "declarations",
    "readme_table",
    "schema_yaml",
    "setting",
    "write_documents",
]
