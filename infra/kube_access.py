"""Kubeconfig handling in one place: a setting that is a path or the file's text, and clients built from it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes import client


def is_text(value: str) -> bool:
    """Whether a kubeconfig value holds the file's text (YAML over lines, or JSON) rather than a path."""
    return "\n" in value or value.lstrip().startswith("{")


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A Kubernetes client for a kubeconfig path or text, or the ambient KUBECONFIG / ~/.kube/config.

    Text is parsed in memory: credentials are never written to a file.
    """
    # Imported here: only the rollout command and the tests talk to a cluster this way.
    import yaml
    from kubernetes import config

    if kubeconfig and is_text(kubeconfig):
        document = yaml.safe_load(kubeconfig)  # JSON is YAML too
        if not isinstance(document, dict):
            raise ValueError("the kubeconfig text is not a kubeconfig document")
        return config.new_client_from_config_dict(document)
    return config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
