"""The cluster a stack runs on, as the rollout command and the program's own rollout wait read it: the
Deployment's state and a live view of its rollout (watch.LiveCluster; fakes in the unit tests)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from infra.kube import access as kube_access
from infra.kube.revisions import Revision
from infra.kube.status import Health, Verdict

if TYPE_CHECKING:
    from infra.kube.lease import Holder, LeaseRecord
    from infra.kube.logs import PodLogs


class LiveView(AbstractContextManager["LiveView"], Protocol):
    """The rollout's progress while the engine updates (printed as it goes), and the wait after it."""

    def wait_complete(self, timeout: float) -> str | None: ...


class Watched(Protocol):
    """A cluster as a rollout's wait reads it (the program's own wait needs no more); ``name`` says which,
    for people (its API server's address)."""

    name: str

    def health(self, namespace: str, name: str) -> Health: ...
    def progress(self, namespace: str, say: Callable[[str], None], verdict: Verdict | None = None) -> LiveView: ...
    def server_time(self) -> datetime.datetime | None:
        """The API server's clock now, to the second (its Date header); None when it does not say."""
        ...


class Cluster(Watched, Protocol):
    """The cluster a stack runs on, as the rollout command reads and mitigates it (watch.LiveCluster;
    fakes in tests)."""

    def revisions(self, namespace: str, name: str) -> list[Revision]: ...

    # Mitigation: what the rollout command does to a failing release at once, before Pulumi reconciles.
    def scale(self, namespace: str, name: str, replicas: int) -> None: ...
    def set_image(self, namespace: str, name: str, container: str, image: str) -> None: ...
    def retire(self, namespace: str, name: str, image: str) -> bool: ...
    def annotate_ingress(self, namespace: str, name: str, annotations: dict[str, str]) -> None: ...

    # The app's pods' logs: users' own requests, for the analysis (infra/kube/logs.py).
    def logs(self, namespace: str) -> PodLogs: ...

    # The run's lease on its stack, held for the block (infra/kube/lease.py), and as it stands.
    def lease(self, namespace: str, stack: str, holder: Holder, seconds: int = ...) -> Held: ...
    def lease_of(self, namespace: str, stack: str) -> LeaseRecord | None: ...

    # The zones the app's ready pods run in, and how many in each (`rollout status`).
    def zones(self, namespace: str) -> dict[str, int]: ...

    # The watchdog over a judged release (infra/kube/watchdog.py): its Job started, what keeps its pod from
    # running (None: nothing known), and the Job removed with its pod.
    def start_job(self, namespace: str, manifest: dict[str, Any]) -> None: ...
    def job_problem(self, namespace: str, name: str) -> str | None: ...
    def delete_job(self, namespace: str, name: str) -> None: ...


class Held(AbstractContextManager["Held"], Protocol):
    """A run's lease while it is held; ``lost`` is the lease of a run before it that was gone, and why;
    ``since`` when this run took it; ``overtaken`` what the cluster's watchdog did should it have found this
    run lost while it still ran. Its annotations carry the watchdog's plan and its word that it watches."""

    lost: LeaseRecord | None
    lost_why: str | None
    since: float
    overtaken: str | None

    def annotate(self, key: str, value: str | None) -> None: ...
    def annotations(self) -> dict[str, str]: ...
    def keep(self) -> None: ...


# A kubeconfig (a path or the file's text; None: the ambient one) to the cluster it names.
ClusterReader = Callable[[str | None], Cluster]


def live_cluster(kubeconfig: str | None) -> Cluster:
    """The cluster through the Kubernetes API (imported here: the library is slow to import)."""
    from infra.kube import watch

    return watch.LiveCluster(kube_access.api_client(kubeconfig))


def unread(err: Exception, where: str, cluster: str) -> tuple[bool, str]:
    """Why the Deployment ``where`` could not be read from ``cluster``, in a line, and whether it is absent.
    Absent: the cluster answered that it has no such Deployment (the stack's state lists one: drift).
    Otherwise the cluster could not be read: it refused the credentials (401, 403), or was not reached."""
    status = getattr(err, "status", None)  # the Kubernetes client's ApiException
    if status == 404:
        return True, (
            f"Deployment {where} is not in the cluster at {cluster}, though the stack's state lists it (was the "
            "cluster made again?): `pulumi up --refresh` creates it again"
        )
    if isinstance(status, int) and status:
        said = f"{status} {getattr(err, 'reason', '') or ''}".strip()
        return False, f"the cluster at {cluster} refused to let Deployment {where} be read: {said} (credentials?)"
    return False, f"cannot reach the cluster at {cluster} to read Deployment {where}: {short(err)}"


# The operating system's words inside a connection error: "[Errno 111] Connection refused".
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def short(err: Exception) -> str:
    """An error in one line: the system's reason when a connection failed, else its first line."""
    text = str(err)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    lines = text.strip().splitlines()
    return f"{err.__class__.__name__}: {lines[0] if lines else ''}"[:300]
