"""A Deployment's revisions, read from its ReplicaSets as `kubectl rollout history` reads them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infra import release

# The annotations the Deployment controller keeps on each ReplicaSet (k8s.io/kubernetes pkg/controller/
# deployment/util/deployment_util.go: RevisionAnnotation, RevisionHistoryAnnotation).
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"


@dataclass(frozen=True)
class Revision:
    """One ReplicaSet of the Deployment: its revision, the numbers its template had before (a template used
    again moves to the newest revision: kubectl lists it once), its image and its change-cause."""

    number: int
    image: str
    cause: str
    earlier: tuple[int, ...] = ()


def revisions(replica_sets: Iterable[Any]) -> list[Revision]:
    """The Deployment's revisions from its ReplicaSets (the Kubernetes client's V1ReplicaSet objects)."""
    found = []
    for rs in replica_sets:
        annotations = rs.metadata.annotations or {}
        if REVISION not in annotations:
            continue
        earlier = tuple(int(n) for n in str(annotations.get(REVISION_HISTORY, "")).split(",") if n.strip().isdigit())
        found.append(
            Revision(
                number=int(annotations[REVISION]),
                image=str(rs.spec.template.spec.containers[0].image),
                cause=str(annotations.get(release.CHANGE_CAUSE, "")),
                earlier=earlier,
            )
        )
    return sorted(found, key=lambda r: r.number)
