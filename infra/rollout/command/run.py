"""`rollout`: parse the request, run its action, end once. Every action ends by returning its Outcome or
raising Stop; this is the one place either becomes the report, the exit code and the message."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from infra import images
from infra.rollout.command import abort, listing, promote, recover, ship, status, undo
from infra.rollout.command.judging import Judging
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.request import Abort, History, Promote, PromoteFrom, Request, Ship, Status, Undo, parse
from infra.rollout.command.session import Session
from infra.rollout.command.steps import Steps
from infra.rollout.engine import interruptible_children
from infra.rollout.exits import Exit


def act(session: Session, judging: Judging | None = None) -> Outcome:
    """Run ``session``'s request to its end (Stop for every end but the good ones)."""
    request = session.request
    if isinstance(request, Ship):
        try:
            images.check_tag(request.tag)
        except images.ImageError as err:
            raise Stop(Outcome.REFUSED, f"--tag {err}") from None
    values = session.read_config()
    steps = Steps(session, judging or Judging(session))
    if isinstance(request, History):
        return listing.run(session, values)
    if isinstance(request, Status):
        return status.run(session, values)
    # Every action that changes the stack holds its lease (a lost run's lock is then removed when found).
    with session.holding(values):
        return changed(session, steps, values, request)


def changed(session: Session, steps: Steps, values: dict[str, str], request: Request) -> Outcome:
    """Run an action that changes the stack."""
    # Every action that changes the stack aborts a release an earlier run left unjudged, first.
    recovered = recover.run(session, steps, values)
    if recovered is not None:
        # `abort` asked for no more; nor did `undo` when the aborted release was the Deployment's own.
        bake = (session.report.unfinished or {}).get("stage") == "bake"
        if isinstance(request, Abort) or (isinstance(request, Undo) and request.revision is None and bake):
            return recovered
        values = session.reread_config()
    target: ship.Target
    match request:
        case Abort():
            return abort.run(session, steps, values)
        case Ship():
            target = ship.Target.tag(request.tag, canary=request.canary, pause=request.pause)
        case Undo():
            target = undo.target(session, request, values)
        case PromoteFrom():
            target = promote.from_stack(session, request, values)
        case Promote():
            target = ship.Target.tag(promote.canary_tag(request, values))
        case _:
            raise AssertionError(f"no action for {request!r}")
    return ship.ship(session, steps, values, target)


def execute(session: Session, judging: Judging | None = None) -> Exit:
    """Run ``session`` and end it: the outcome in its report, its message said; the exit code."""
    try:
        outcome = act(session, judging)
        return session.end(outcome).exit
    except Stop as stop:
        return session.end(stop.outcome, stop.message).exit
    except KeyboardInterrupt:
        return session.end(Outcome.INTERRUPTED, "interrupted; run `pulumi cancel` if the stack stays locked").exit
    except Exception as crash:  # a bug or a broken environment: said, with its own exit code and JSON
        traceback.print_exc(file=session.err)
        said = f"the command failed: {crash.__class__.__name__}: {crash}; run `pulumi cancel` if the stack stays locked"
        return session.end(Outcome.CRASHED, said).exit


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO = sys.stdin,
    runner: Callable[[Session], Exit] = execute,
) -> int:
    request = parse(argv)
    interruptible_children()
    # The Kubernetes client's HTTP library says each retry of a failed connection as a warning; the
    # command says what failed once, in its own words.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    session = Session(request, out, err, stdin)
    code = runner(session)
    if request.json:
        print(session.report.as_json(), file=out)
    return int(code)
