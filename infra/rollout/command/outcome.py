"""How a run of `rollout` ends: one ``Outcome`` per way, each with its word (--json's `outcome`), its exit
code, and whether it changed the stack; ``Stop`` ends a run from any step, caught once by the command."""

from __future__ import annotations

import enum

from infra.rollout.exits import Exit


class Change(enum.Enum):
    """What an ending did to the stack and its cluster."""

    NOTHING = "nothing"  # the guarantee: said with the message, and as --json's `changed: false`
    MADE = "made"
    UNKNOWN = "unknown"  # the command was interrupted or broke: an update it started may have run


@enum.unique  # two members with one value would be one outcome under two names
class Outcome(enum.Enum):
    """Every way a run ends. The word is not unique (four refusals have four exit codes), the whole is."""

    SUCCEEDED = ("succeeded", Exit.OK, Change.MADE)
    PAUSED = ("paused", Exit.OK, Change.MADE)
    # A canary the analysis could not decide on, left serving for a person (analysisUndecided pause).
    UNDECIDED_PAUSED = ("paused undecided", Exit.UNDECIDED, Change.MADE)
    CANARY_REMOVED = ("canary removed", Exit.OK, Change.MADE)
    # `rollout abort` on a stack an earlier run left with a release unjudged: that release aborted.
    UNFINISHED_ABORTED = ("unfinished aborted", Exit.OK, Change.MADE)
    LISTED = ("listed", Exit.OK, Change.NOTHING)
    UNCHANGED = ("unchanged", Exit.OK, Change.NOTHING)
    REFUSED = ("refused", Exit.USAGE, Change.NOTHING)
    INFRA_CHANGES = ("refused", Exit.INFRA_CHANGES, Change.NOTHING)
    NOT_PROBED = ("refused", Exit.NOT_PROBED, Change.NOTHING)
    NOT_PROMOTABLE = ("refused", Exit.NOT_PROMOTABLE, Change.NOTHING)
    UNGUARDED = ("refused", Exit.UNGUARDED, Change.NOTHING)
    CLUSTER_AHEAD = ("refused", Exit.CLUSTER_AHEAD, Change.NOTHING)
    NOT_CONFIRMED = ("not confirmed", Exit.NOT_CONFIRMED, Change.NOTHING)
    BUSY = ("busy", Exit.BUSY, Change.NOTHING)
    UNREADABLE = ("unreadable", Exit.UNREADABLE, Change.NOTHING)
    DRIFTED = ("drifted", Exit.DRIFTED, Change.NOTHING)
    INCOMPLETE = ("incomplete", Exit.FAILED, Change.NOTHING)
    NOT_READ = ("failed", Exit.FAILED, Change.NOTHING)  # the history, or the preview, could not be read
    FAILED = ("failed", Exit.FAILED, Change.MADE)  # left as it failed (--no-rollback), or the update failed
    ROLLED_BACK = ("rolled back", Exit.ROLLED_BACK, Change.MADE)
    ABORTED = ("aborted", Exit.ABORTED, Change.MADE)
    ROLLBACK_FAILED = ("rollback failed", Exit.ROLLBACK_FAILED, Change.MADE)
    UNCONFIRMED = ("unconfirmed", Exit.UNCONFIRMED, Change.MADE)
    ROLLBACK_UNCONFIRMED = ("rollback unconfirmed", Exit.UNCONFIRMED, Change.MADE)
    INTERRUPTED = ("interrupted", Exit.FAILED, Change.UNKNOWN)
    CRASHED = ("crashed", Exit.CRASHED, Change.UNKNOWN)

    @property
    def word(self) -> str:
        return str(self.value[0])

    @property
    def exit(self) -> Exit:
        return Exit(self.value[1])

    @property
    def change(self) -> Change:
        return Change(self.value[2])

    @property
    def changed_nothing(self) -> bool:
        return self.change is Change.NOTHING

    def message(self, text: str) -> str:
        """``text`` with what the ending did to the stack, when it did nothing (said once, here)."""
        return f"{text}; nothing was changed" if self.changed_nothing else text


class Stop(Exception):  # noqa: N818 (an end of the run, not always an error: paused ends by it too)
    """End the run here as ``outcome``, saying ``message`` (the command adds whether anything changed)."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome, self.message = outcome, message
