"""The cluster a stack runs on, as the rollout command and the program's own rollout wait read it: the
Deployment's state and a live view of its rollout (watch.LiveCluster; fakes in the unit tests)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from infra import kube_access
from infra.rollout.status import Health, Verdict


class LiveView(AbstractContextManager["LiveView"], Protocol):
    """The rollout's progress while the engine updates (printed as it goes), and the wait after it."""

    def wait_complete(self, timeout: float) -> str | None: ...


class Cluster(Protocol):
    """The cluster a stack runs on, as the command reads it (watch.LiveCluster; fakes in tests)."""

    def health(self, namespace: str, name: str) -> Health: ...
    def progress(self, namespace: str, say: Callable[[str], None], verdict: Verdict | None = None) -> LiveView: ...


# A kubeconfig (a path or the file's text; None: the ambient one) to the cluster it names.
ClusterReader = Callable[[str | None], Cluster]


def live_cluster(kubeconfig: str | None) -> Cluster:
    """The cluster through the Kubernetes API (imported here: the library is slow to import)."""
    from infra.rollout import watch

    return watch.LiveCluster(kube_access.api_client(kubeconfig))
