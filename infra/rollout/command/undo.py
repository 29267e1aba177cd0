"""`rollout undo`: ship the stack's previous release again (or revision --to N), through the same safe path."""

from __future__ import annotations

from infra.rollout import history
from infra.rollout.command import listing
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.request import Undo
from infra.rollout.command.session import Session
from infra.rollout.command.ship import Target


def target(session: Session, request: Undo, values: dict[str, str]) -> Target:
    """The release to put back, or Stop (nothing changed) when there is none to."""
    chosen = history.undo_target(listing.releases(session, values), request.revision)
    if isinstance(chosen, str):
        raise Stop(Outcome.REFUSED, f"stack {request.stack}: {chosen}")
    note = f"to revision {chosen.revision}" if chosen.revision else f"to the release of {chosen.started:%F %T}Z"
    return Target.image(chosen.image, chosen.tag, verb="undo", note=note)
