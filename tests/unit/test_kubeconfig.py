"""Kubeconfig values: a path or the file's text; clients are built from text in memory."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from infra import kube_access

DOCUMENT = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
    "users": [{"name": "u", "user": {"token": "secret-token-value"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}


@pytest.mark.parametrize(
    ("value", "text"),
    [("/home/me/.kube/config", False), ("apiVersion: v1\nkind: Config\n", True), ('  {"apiVersion": "v1"}', True)],
)
def test_text_or_path(value: str, text: bool) -> None:
    assert kube_access.is_text(value) is text


@pytest.mark.parametrize("render", [json.dumps, lambda d: json.dumps(d, indent=1)])
def test_client_from_text_is_built_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, render: object) -> None:
    # Any temporary file would land here: none may.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    api = kube_access.api_client(render(DOCUMENT))  # type: ignore[operator]
    assert api.configuration.host == "https://127.0.0.1:6443"
    assert api.configuration.api_key["BearerToken"] == "Bearer secret-token-value"
    assert list(tmp_path.iterdir()) == []


def test_client_from_path(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(DOCUMENT))
    assert kube_access.api_client(str(path)).configuration.host == "https://127.0.0.1:6443"


def test_text_that_is_not_a_kubeconfig_is_refused() -> None:
    with pytest.raises(ValueError, match="not a kubeconfig document"):
        kube_access.api_client("just\ntext")
