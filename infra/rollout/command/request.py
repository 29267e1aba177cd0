"""What a run of `rollout` is asked to do: one frozen request type per action, built by argparse's subcommands.

`rollout --stack S --tag T` ships (the `ship` word may be left out); `rollout promote|abort --stack S` goes on
from a paused canary; `rollout promote --from A --to B` promotes A's release to B; `rollout history` lists a
stack's releases and `rollout undo` ships one again. The action's word may stand anywhere among the options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Request:
    """What every action takes: the stack, the project folder, and how to run."""

    stack: str
    cwd: Path = Path(".")
    json: bool = False
    yes: bool = False
    no_rollback: bool = False
    allow_infra_changes: bool = False
    record: Path | None = None

    @property
    def action(self) -> str:
        return ACTION_OF[type(self)]


@dataclass(frozen=True, kw_only=True)
class Ship(Request):
    """Ship ``tag``; with ``canary``, N pods of it judged first (and a stop there with ``pause``)."""

    tag: str
    canary: int | None = None
    pause: bool = False


@dataclass(frozen=True, kw_only=True)
class Promote(Request):
    """Roll the rest of the stack's replicas to its canary's tag and remove the canary."""


@dataclass(frozen=True, kw_only=True)
class PromoteFrom(Request):
    """Ship ``source``'s last release, by digest, to ``stack``."""

    source: str


@dataclass(frozen=True, kw_only=True)
class Abort(Request):
    """Remove the stack's canary."""


@dataclass(frozen=True, kw_only=True)
class History(Request):
    """List the stack's releases."""


@dataclass(frozen=True, kw_only=True)
class Status(Request):
    """Show what the stack runs now, and a release an earlier run left unjudged."""


@dataclass(frozen=True, kw_only=True)
class Undo(Request):
    """Ship the stack's previous release again, or ``revision``."""

    revision: int | None = None


ACTION_OF: dict[type[Request], str] = {
    Ship: "ship",
    Promote: "promote",
    PromoteFrom: "promote",
    Abort: "abort",
    History: "history",
    Status: "status",
    Undo: "undo",
}
DESCRIPTIONS = {
    "ship": "Ship an image tag to a stack: preview, confirm, roll out, roll back if it fails.",
    "promote": "Roll the rest of a stack's replicas to its canary's tag and remove the canary (--stack S); "
    "or ship the image another stack runs, by digest, to this one (--from A --to B).",
    "abort": "Remove a stack's canary; the Deployment's own pods stay as they are.",
    "history": "A stack's releases, newest first: revision, image, outcome, when, how long, who.",
    "undo": "Ship a stack's previous release again (or revision --to N), through the same safe path.",
    "status": "What a stack runs now: its Deployment, its canary, and a release an earlier run left unjudged "
    "(which the next rollout, or abort, aborts first).",
}
EPILOG = (
    "rollout promote|abort --stack S go on from a paused canary; rollout promote --from A --to B, "
    "rollout history --stack S and rollout undo --stack S [--to N] work with releases; rollout status --stack S "
    "shows what runs"
)


def parse(argv: Sequence[str] | None = None) -> Request:
    """The request ``argv`` makes (argparse's usage error, exit 2, for one it cannot)."""
    given = _action_first(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args = parser.parse_args(given)
    common = {
        "stack": args.stack,
        "cwd": Path(args.cwd),
        "json": args.json,
        "yes": getattr(args, "yes", False),
        "no_rollback": getattr(args, "no_rollback", False),
        "allow_infra_changes": getattr(args, "allow_infra_changes", False),
        "record": Path(args.record) if getattr(args, "record", None) else None,
    }
    if args.action == "ship":
        if args.pause and not args.canary:
            args.error("--pause stops after a canary: pass --canary N too")
        return Ship(**common, tag=args.tag, canary=args.canary, pause=args.pause)
    if args.action == "promote":
        if args.source is None:
            return Promote(**common)
        if args.source == args.stack:
            args.error(f"--from and --to name the same stack ({args.stack}): promote between two stacks")
        return PromoteFrom(**common, source=args.source)
    if args.action == "undo":
        return Undo(**common, revision=args.revision)
    if args.action == "status":
        return Status(**common)
    return Abort(**common) if args.action == "abort" else History(**common)


def _action_first(given: list[str]) -> list[str]:
    """``given`` with its action's word first: found wherever it stands (`rollout --stack dev promote`),
    but not as an option's value (`--stack abort` names a stack); `ship` when there is none."""
    for at, word in enumerate(given):
        if word in DESCRIPTIONS and (at == 0 or given[at - 1] not in _VALUED):
            return [word, *given[:at], *given[at + 1 :]]
    return ["ship", *given]


# The options that take a value: the word after one is its value, never the action.
_VALUED = frozenset({"--stack", "--tag", "--canary", "--record", "--cwd", "--to", "--from"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollout", description=DESCRIPTIONS["ship"], epilog=EPILOG)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, description in DESCRIPTIONS.items():
        sub = actions.add_parser(action, prog="rollout" if action == "ship" else f"rollout {action}")
        sub.description, sub.epilog = description, EPILOG if action == "ship" else None
        sub.set_defaults(error=sub.error)
        if action == "promote":
            sub.add_argument("--from", dest="source", help="with --to: the stack whose release to promote")
            sub.add_argument("--stack", "--to", dest="stack", required=True, help="the stack to roll")
        else:
            sub.add_argument("--stack", required=True, help="the stack to roll, such as dev or local")
        if action == "ship":
            sub.add_argument("--tag", required=True, help="the image tag to ship, such as 1.16.1")
            sub.add_argument(
                "--canary",
                type=_canary_pods,
                metavar="N",
                help="first run N pods of the tag beside the old ones and analyse them for canarySeconds",
            )
            sub.add_argument("--pause", action="store_true", help="with --canary: stop once the canary passes")
        if action == "undo":
            sub.add_argument("--to", dest="revision", type=_revision, metavar="N", help="the revision to put back")
        sub.add_argument("--json", action="store_true", help="print one JSON result on stdout")
        sub.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
        if action not in ("history", "status"):
            _changing_options(sub)
    return parser


def _changing_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation (for CI)")
    sub.add_argument("--no-rollback", action="store_true", help="leave a failed rollout as it failed")
    sub.add_argument(
        "--allow-infra-changes", action="store_true", help="go on when the preview changes more than the Deployment"
    )
    sub.add_argument(
        "--record",
        metavar="FILE",
        help="write every response the analysis recorded to FILE, one JSON object a line (its evidence)",
    )


def _revision(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a revision: a number from 1, as `rollout history` shows")
    return int(text)


def _canary_pods(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 100:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of pods from 1 to 100")
    return count
