"""Working with releases (infra/rollout/command/listing.py, undo.py, promote.py): `rollout history`,
`rollout undo` and `rollout promote --from A --to B`, from the stacks' update histories."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra import release
from infra.kube import revisions as kube_revisions
from infra.rollout.command import unfinished
from infra.rollout.command.session import Session
from infra.rollout.engine import EngineError
from infra.rollout.exits import Exit
from tests.unit.rollout_fakes import FakeCluster, FakeEngine, FakeRegistry, run, said, session
from tests.unit.samples.releases import HISTORY, REPLICA_SETS
from tests.unit.samples.releases import REPO as RELEASE_REPO

PROD_REPO = "localhost:5000/rolling-prod"
DIGEST = "sha256:" + "d" * 64


class ReleasedEngine(FakeEngine):
    """A stack of ``repository`` with an update history, running ``tag``."""

    def __init__(self, entries: list[dict[str, Any]], tag: str, repository: str = RELEASE_REPO, **config: str):
        super().__init__(frozenset(), tag, imageRepository=repository, **config)
        self.entries, self.repository = entries, repository

    def history(self) -> list[dict[str, Any]]:
        return self.entries

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


def release_run(argv: list[str], engine: Any, source: Any = None, registry: FakeRegistry | None = None) -> Session:
    cluster = FakeCluster(engine=engine)
    cluster.revision_list = kube_revisions.revisions(REPLICA_SETS)
    return session(
        argv, engine=engine, cluster=cluster, source_engine=source, registries=lambda _: registry or FakeRegistry({})
    )


def test_history_lists_the_releases_newest_first() -> None:
    listed = release_run(["history", "--stack", "dev", "--json"], ReleasedEngine(HISTORY, "1.1.0"))
    assert run(listed) == Exit.OK
    releases = json.loads(listed.report.as_json())["releases"]
    assert [(r["revision"], r["tag"], r["outcome"]) for r in releases] == [
        (4, "1.1.0", "restored"),
        (3, "1.2.0", "rolled back"),
        (2, "1.1.0", "shipped"),
        (1, "1.0.0", "shipped"),
    ]
    table = release_run(["history", "--stack", "dev"], ReleasedEngine(HISTORY, "1.1.0"))
    assert run(table) == Exit.OK
    assert "restored *" in table.out.getvalue()  # type: ignore[attr-defined]


def test_undo_ships_the_release_before_through_the_same_path() -> None:
    engine = ReleasedEngine(HISTORY, "1.1.0")
    undo = release_run(["undo", "--stack", "dev", "--yes"], engine)
    assert run(undo) == Exit.OK, said(undo)
    assert engine.previewed and engine.up_configs == [
        {
            "rolling:imageTag": "1.0.0",
            "rolling:changeCause": f"undo {RELEASE_REPO}:1.0.0 by {release.who()}; to revision 1",
        }
    ]
    assert f"release      undo {RELEASE_REPO}:1.0.0" in said(undo)


def test_undo_to_a_release_that_never_served_changes_nothing() -> None:
    engine = ReleasedEngine(HISTORY, "1.1.0")
    undo = release_run(["undo", "--stack", "dev", "--to", "3", "--yes"], engine)
    assert run(undo) == Exit.USAGE
    assert "never served: it was rolled back" in str(undo.report.error)
    assert engine.ups == [] and engine.previewed == []


def shipped_dev() -> ReleasedEngine:
    return ReleasedEngine(HISTORY[-3:], "1.1.0")


def lately(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``history`` moved in time so that its newest update ended an hour ago: a soak of a week is then never
    over, whatever day the tests run (the samples' dates are fixed)."""

    def when(text: str) -> datetime:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)

    shift = datetime.now(UTC) - timedelta(hours=1) - max(when(e["endTime"]) for e in history)
    moved = []
    for e in history:
        start, end = when(e["startTime"]) + shift, when(e["endTime"]) + shift
        moved.append({**e, "startTime": f"{start:%Y-%m-%dT%H:%M:%S}.000Z", "endTime": f"{end:%Y-%m-%dT%H:%M:%S}.000Z"})
    return moved


PROMOTE = ["promote", "--from", "dev", "--to", "prod", "--yes"]


def test_promote_copies_the_digest_dev_runs_and_ships_it() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{RELEASE_REPO}@{DIGEST}": DIGEST})
    promoted = release_run(PROMOTE, prod, shipped_dev(), registry)
    assert run(promoted) == Exit.OK, said(promoted)
    assert registry.copies == [(f"{RELEASE_REPO}@{DIGEST}", f"{PROD_REPO}:1.1.0")]
    assert prod.up_configs == [
        {
            "rolling:imageTag": "1.1.0",
            "rolling:imageDigest": DIGEST,
            "rolling:changeCause": f"promote {PROD_REPO}@{DIGEST} by {release.who()}; from dev",
        }
    ]
    assert promoted.report.new_image == f"{PROD_REPO}@{DIGEST}"


class LockedEngine(ReleasedEngine):
    """A stack whose config cannot be read here: its secrets are under another passphrase than this one's."""

    def config(self) -> dict[str, str]:
        raise EngineError(["config"], 255, "", "error: incorrect passphrase")


def test_promote_needs_only_the_source_stacks_history_not_its_secrets() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{PROD_REPO}@{DIGEST}": DIGEST})
    promoted = release_run(PROMOTE, prod, LockedEngine(HISTORY[-3:], "1.1.0"), registry)
    assert run(promoted) == Exit.OK, promoted.report.error


def test_promote_refuses_between_targets() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO, target="eks", clusterName="x")
    promoted = release_run(PROMOTE, prod, shipped_dev(), FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST}))
    assert run(promoted) == Exit.NOT_PROMOTABLE
    assert "dev runs on local and prod on eks" in str(promoted.report.error)


def test_promote_does_not_copy_what_is_there() -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST, f"{PROD_REPO}@{DIGEST}": DIGEST})
    assert run(release_run(PROMOTE, prod, shipped_dev(), registry)) == Exit.OK
    assert registry.copies == []


@pytest.mark.parametrize(
    ("source", "soak", "why"),
    [
        (ReleasedEngine(HISTORY, "1.1.0"), "0", "which was rolled back"),
        (ReleasedEngine(lately(HISTORY[-3:]), "1.1.0"), "604800", "has run"),
        (ReleasedEngine([], "1.1.0"), "0", "it has no release"),
    ],
)
def test_promote_refuses_what_did_not_ship_or_soak(source: ReleasedEngine, soak: str, why: str) -> None:
    prod = ReleasedEngine([], "1.0.0", PROD_REPO, soakSeconds=soak)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST})
    promoted = release_run([*PROMOTE, "--json"], prod, source, registry)
    assert run(promoted) == Exit.NOT_PROMOTABLE
    assert why in str(promoted.report.error) and str(promoted.report.error).endswith("; nothing was changed")
    assert prod.ups == [] and prod.previewed == [] and registry.copies == []


def test_promote_refuses_an_image_gone_from_the_registry() -> None:
    promoted = release_run(PROMOTE, ReleasedEngine([], "1.0.0", PROD_REPO), shipped_dev(), FakeRegistry({}))
    assert run(promoted) == Exit.NOT_PROMOTABLE
    assert "is not in its registry any more" in str(promoted.report.error)


def test_promote_refuses_a_release_whose_judgement_never_finished() -> None:
    # dev's last update went through, but the run judging it died in its bake: not shipped, whatever the
    # history says.
    dev = shipped_dev()
    dev.stack_tags = unfinished.encode(
        "bake", "2026-12-05T10:00:00Z", "ci", f"{RELEASE_REPO}:1.1.0", f"{RELEASE_REPO}:1.0.0"
    )
    prod = ReleasedEngine([], "1.0.0", PROD_REPO)
    registry = FakeRegistry({f"{RELEASE_REPO}:1.1.0": DIGEST})
    promoted = release_run(PROMOTE, prod, dev, registry)
    assert run(promoted) == Exit.NOT_PROMOTABLE
    assert "its judgement never finished" in str(promoted.report.error)
    assert prod.ups == [] and registry.copies == []
