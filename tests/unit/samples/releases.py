"""A stack's update history and its Deployment's ReplicaSets, as the engine and the cluster give them: the
samples the release history's tests and the rollout command's tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from infra import release
from infra.kube import revisions as kube_revisions

REPO = "localhost:5000/rolling-app"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def entry(
    version: int,
    tag: str | None,
    cause: str = "",
    result: str = "succeeded",
    minutes: int = 0,
    seconds: int = 30,
    kind: str = "update",
    digest: str = "",
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One entry of `pulumi stack history --json`, as pkg/cmd/pulumi/stack/stack_history.go writes it."""
    started = T0 + timedelta(minutes=minutes)
    config: dict[str, Any] = {"rolling:target": {"value": "local", "secret": False}}
    config["rolling:imageRepository"] = {"value": REPO, "secret": False}
    if tag is not None:
        config["rolling:imageTag"] = {"value": tag, "secret": False}
    if digest:
        config["rolling:imageDigest"] = {"value": digest, "secret": False}
    if cause:
        config["rolling:changeCause"] = {"value": cause, "secret": False}
    config["rolling:passphraseSecret"] = {"secret": True}  # a secret's value is not shown
    return {
        "version": version,
        "kind": kind,
        "startTime": started.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "message": cause,
        "environment": environment or {"exec.kind": "cli"},
        "config": config,
        "result": result,
        "endTime": (started + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "resourceChanges": {"update": 1},
    }


def ship(tag: str, who: str = "alice") -> str:
    return release.Cause("ship", f"{REPO}:{tag}", who).text()


def rollback(to: str, failed: str, how: str = "rolled back") -> str:
    return release.Cause("rollback", f"{REPO}:{to}", "alice", f"{REPO}:{failed} {how}: it failed").text()


def replica_set(revision: int, tag: str, cause: str, earlier: str = "") -> Any:
    annotations = {kube_revisions.REVISION: str(revision), release.CHANGE_CAUSE: cause}
    if earlier:
        annotations[kube_revisions.REVISION_HISTORY] = earlier
    container = SimpleNamespace(image=f"{REPO}:{tag}")
    return SimpleNamespace(
        metadata=SimpleNamespace(annotations=annotations),
        spec=SimpleNamespace(template=SimpleNamespace(spec=SimpleNamespace(containers=[container]))),
    )


# Ship 1.0.0 (a plain `up`), ship 1.1.0, ship 1.2.0 that fails and is rolled back; an infrastructure `up` and a
# refresh between them are not releases. Newest first, as the engine gives them.
HISTORY = [
    entry(6, "1.1.0", rollback("1.1.0", "1.2.0"), minutes=21),
    entry(5, "1.2.0", ship("1.2.0"), result="failed", minutes=20),
    entry(4, "1.1.0", ship("1.1.0"), minutes=12, kind="refresh"),
    entry(3, "1.1.0", ship("1.1.0"), minutes=11),
    entry(2, "1.1.0", ship("1.1.0"), minutes=10, environment={"ci.build.url": "https://ci/runs/7"}),
    entry(1, "1.0.0", minutes=0),
]
# What the Deployment controller made of it: 1.1.0's template used again for the rollback moved to revision 4.
REPLICA_SETS = [
    replica_set(1, "1.0.0", f"up {REPO}:1.0.0"),
    replica_set(3, "1.2.0", ship("1.2.0")),
    replica_set(4, "1.1.0", rollback("1.1.0", "1.2.0"), earlier="2"),
]
