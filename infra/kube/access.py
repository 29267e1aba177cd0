"""Kubeconfig handling in one place: a setting that is a path or the file's text, and clients built from it."""

from __future__ import annotations

import base64
import copy
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes import client

# The fields that embed credentials or a CA, base64 encoded, by the kind of entry that holds them.
_EMBEDDED = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key")),
}
# Files in memory stay open for the process's life: the client reopens them for each new connection.
_OPEN: dict[bytes, int] = {}


def is_text(value: str) -> bool:
    """Whether a kubeconfig value holds the file's text (YAML over lines, or JSON) rather than a path."""
    return "\n" in value or value.lstrip().startswith("{")


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A Kubernetes client for a kubeconfig path or text, or the ambient KUBECONFIG / ~/.kube/config.

    Text is parsed in memory, and the credentials and CA it embeds (`client-key-data` and the like), which
    the Kubernetes library would write to temporary files for TLS, go to files in memory instead
    (Linux's memfd_create): nothing of a kubeconfig text is written to disk. Where the system has no
    files in memory (macOS), the library's temporary files are used, readable by this user only and
    removed when the process exits.
    """
    # Imported here: only the rollout command and the tests talk to a cluster this way.
    import yaml
    from kubernetes import config

    if kubeconfig and is_text(kubeconfig):
        document = yaml.safe_load(kubeconfig)  # JSON is YAML too
        if not isinstance(document, dict):
            raise ValueError("the kubeconfig text is not a kubeconfig document")
        return config.new_client_from_config_dict(in_memory(document))
    return config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))


def in_memory(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a kubeconfig document whose embedded data fields name files in memory instead."""
    if not hasattr(os, "memfd_create"):
        return document
    document = copy.deepcopy(document)
    for section, (kind, fields) in _EMBEDDED.items():
        for entry in document.get(section) or []:
            body = entry.get(kind) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for field in fields:
                data = body.pop(f"{field}-data", None)
                if data:
                    body[field] = _memory_file(base64.standard_b64decode(data))
    return document


def _memory_file(content: bytes) -> str:
    """A path to a file in memory holding ``content`` (one per distinct content, for the process's life)."""
    if content not in _OPEN:
        fd = os.memfd_create("kubeconfig", os.MFD_CLOEXEC)
        os.write(fd, content)
        _OPEN[content] = fd
    return f"/proc/self/fd/{_OPEN[content]}"
