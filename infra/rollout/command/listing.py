"""A stack's releases (`rollout history`), and the reading `undo` shares: the update history, numbered
from the Deployment's revisions where the cluster can be read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from infra.kube.cluster import short
from infra.kube.revisions import Revision
from infra.rollout import history
from infra.rollout.command import unfinished
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.engine import EngineError, StackEngine
from infra.settings import Settings, SettingsError


def releases(session: Session, values: dict[str, str]) -> list[history.Release]:
    """The stack's releases from its update history, numbered from its Deployment's revisions when its
    cluster can be read; the history alone otherwise (said). Stop when the history cannot be read."""
    settings, found = updates_of(
        session.engine,
        values,
        lambda err: Stop(Outcome.NOT_READ, f"the stack's history could not be read: {err.summary}"),
    )
    revisions: list[Revision] = []
    if session.outputs.get("deploymentName"):
        try:
            revisions = session.cluster(settings).revisions(*session.deployment(settings))
        except Exception as err:
            session.say(f"rollout: no revision numbers: the cluster could not be read ({short(err)})")
    return history.releases(found, revisions)


def updates_of(
    engine: StackEngine, values: dict[str, str], unread: Callable[[EngineError], Stop]
) -> tuple[Settings, list[history.Update]]:
    """The settings ``values`` make and ``engine``'s stack's updates (its history alone: no config read);
    Stop for bad settings, or as ``unread`` says when the history cannot be read."""
    try:
        return Settings.from_values(values), history.updates(engine.history())
    except SettingsError as err:
        raise Stop(Outcome.REFUSED, str(err)) from None
    except EngineError as err:
        raise unread(err) from None


def run(session: Session, values: dict[str, str]) -> Outcome:
    """`rollout history`: the stack's releases, newest first (a table; --json: `releases`)."""
    rows = releases(session, values)
    left = unfinished.of(session)
    if left is not None and rows and rows[0].image == left.image and left.stage == "bake":
        # Its update succeeded, but its judgement never finished: not shipped.
        rows[0] = dataclasses.replace(rows[0], outcome="unjudged")
        session.report.unfinished = left.as_json()
    session.report.releases = [r.as_json() for r in rows]
    if not session.request.json:
        print(history.table(rows, datetime.now(UTC)), file=session.out)
    return Outcome.LISTED
