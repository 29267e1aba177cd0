"""The keys only the local target reads."""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings.declaration import setting
from infra.settings.parsers import _kubeconfig


@dataclass(frozen=True)
class LocalSettings:
    """The keys only the local target reads."""

    kubeconfig: str | None = setting(
        _kubeconfig,
        default="",
        unset=True,
        description="a kubeconfig path or its text; unset uses KUBECONFIG or ~/.kube/config.",
        accepted="a kubeconfig path or its text",
        targets=("local",),
    )
