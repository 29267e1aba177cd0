"""A release under judgement, recorded in the stack itself so that it outlives the run judging it.

A run writes the record (a stack tag, kept by the backend beside the state: not in the config file, not in
any checkout) before its canary or update starts, moves it from "canary" to "bake" when the rest rolls, and
removes it once the release is judged and settled: shipped, paused after a passed canary, rolled back or
removed. A run that ends before that (the CI runner lost, Ctrl-C twice, SIGKILL, a rollback that failed)
leaves it; the next run on the stack finds it and aborts that release before anything else (its canary
removed, or the version that ran before it put back), and `rollout status` shows it. Meanwhile the cluster's
watchdog (infra/rollout/command/guard.py), told each stage's undoing as the stage starts (``Record.stage``),
has undone it within watchdogSeconds of the run's last renewal. So a canary is never left serving unjudged
for longer than that, and a release whose bake was cut short never counts as shipped.

Tags rather than config: a config change lives in the runner's checkout and is lost with it. Each tag value
stays within 256 bytes, the limit the Pulumi Cloud backend holds tags to (pkg/util/validation/stack.go): a
record longer than that (two long image references) keeps its images in two tags of their own. Each tag
is one engine command (about 0.2 s on a file backend), and the engine rewrites the stack's whole tags file
for each, so they are written one after another, never at once.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from infra import release
from infra.kube.watchdog import Plan
from infra.rollout.command.outcome import Change, Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.engine import EngineError, StackEngine

# The record (JSON): its stage, since when, by whom, the release's image and the image that ran before it;
# the images in tags of their own when the whole would be too long. The record is written last and removed
# first: whoever finds it finds the others.
JUDGING = "rolling:judging"
IMAGE = "rolling:judging-image"
PREVIOUS = "rolling:judging-previous"
MOST_CHARS = 256

# The endings after which the release is judged and nothing is left to do for it.
SETTLED = frozenset(
    {
        Outcome.SUCCEEDED,
        Outcome.PAUSED,
        Outcome.UNDECIDED_PAUSED,
        Outcome.CANARY_REMOVED,
        Outcome.FAILED,
        Outcome.ROLLED_BACK,
        Outcome.ABORTED,
    }
)


@dataclass(frozen=True)
class Unfinished:
    """A release whose judgement had begun: its stage ("canary" or "bake"), its image, the image that ran
    before it (what aborting it puts back), since when (UTC, ISO 8601) and by whom."""

    stage: str
    image: str
    previous: str
    since: str
    by: str

    def line(self) -> str:
        return (
            f"{self.image} was in its {self.stage} since {self.since} (by {self.by}) and its judgement never "
            f"finished; before it, {self.previous} ran"
        )

    def judged_line(self) -> str:
        """The release while a live run judges it."""
        return f"{self.image} is in its {self.stage} since {self.since} (by {self.by}); before it, {self.previous} ran"

    def as_json(self) -> dict[str, str]:
        return {"stage": self.stage, "image": self.image, "previous": self.previous, "since": self.since, "by": self.by}


def read(engine: StackEngine, stack: str) -> Unfinished | None:
    """``stack``'s unfinished release, if a run left one; Stop when the stack's tags cannot be read."""
    try:
        tags = engine.tags()
    except EngineError as err:
        raise Stop(Outcome.NOT_READ, f"could not read stack {stack}'s tags: {err.summary}") from None
    return decode(tags, stack)


def of(session: Session) -> Unfinished | None:
    """The unfinished release of the session's stack, if a run left one (its tags as read at the start)."""
    try:
        tags = session.tags()
    except EngineError as err:
        raise Stop(Outcome.NOT_READ, f"could not read stack {session.request.stack}'s tags: {err.summary}") from None
    return decode(tags, session.request.stack)


def decode(tags: dict[str, str], stack: str) -> Unfinished | None:
    """The unfinished release ``tags`` record, if any; Stop for a record this command did not write."""
    if JUDGING not in tags:
        return None
    try:
        record = json.loads(tags[JUDGING])
        image = str(record.get("image") or tags.get(IMAGE) or "an image not recorded")
        previous = str(record.get("previous") or tags.get(PREVIOUS) or "")
        return Unfinished(str(record["stage"]), image, previous, str(record["since"]), str(record["by"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Stop(
            Outcome.REFUSED,
            f"stack {stack}'s tag {JUDGING} is not a record this command wrote ({tags[JUDGING]!r}); "
            f"remove it with `pulumi stack tag rm {JUDGING} --stack {stack}`",
        ) from None


def encode(stage: str, since: str, by: str, image: str, previous: str) -> dict[str, str]:
    """The record's tags, each within MOST_CHARS bytes: one, or with the images apart when the whole is longer
    (and who shortened when even that is); the record's own tag last."""
    whole = json.dumps(
        {"stage": stage, "since": since, "by": by, "image": image, "previous": previous}, separators=(",", ":")
    )
    if len(whole.encode()) <= MOST_CHARS:
        return {JUDGING: whole}
    fields = {"stage": stage, "since": since, "by": by}
    text = json.dumps(fields, separators=(",", ":"))
    if len(text.encode()) > MOST_CHARS:
        fields["by"] = by[: max(0, len(by) - (len(text.encode()) - MOST_CHARS) - 3)] + "..."
        text = json.dumps(fields, separators=(",", ":"))
    return {PREVIOUS: previous, IMAGE: image, JUDGING: text}


class Record:
    """The record of one release while this run judges it."""

    def __init__(self, session: Session, image: str, previous: str) -> None:
        self.session, self.image, self.previous = session, image, previous
        self.since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.by = release.who()
        # The tags written so far, in order.
        self.written: list[str] = []

    def stage(self, stage: str, plan: Plan | None = None) -> None:
        """Record the release at ``stage``: written before the update that starts it (the images once). The
        cluster's watchdog, when there is one, is told ``plan`` first: what undoing the stage takes."""
        guard = self.session.guard
        if guard is not None:
            guard.check()
            if plan is not None:
                guard.watch(plan)
        engine = self.session.engine
        tags = encode(stage, self.since, self.by, self.image, self.previous)
        try:
            for name, value in tags.items():
                if name in self.written and name != JUDGING:
                    continue  # an image, written at the first stage
                engine.set_tag(name, value)
                if name not in self.written:
                    self.written.append(name)
        except EngineError as err:
            raise Stop(
                Outcome.NOT_READ if not self.written else Outcome.FAILED,
                f"could not record the release in stack {self.session.request.stack}'s tags: {err.summary}",
            ) from None

    def remove(self) -> None:
        if self.session.guard is not None:
            self.session.guard.clear()
        try:
            remove_tags(self.session.engine, self.written)
        except EngineError as err:
            self.session.say(
                f"rollout: could not remove the record of {self.image} from stack {self.session.request.stack}'s "
                f"tags ({err.summary}): the next run will take it for unfinished and roll it back; remove it with "
                f"`pulumi stack tag rm {JUDGING} --stack {self.session.request.stack}`"
            )


@contextmanager
def recorded(session: Session, image: str, previous: str) -> Iterator[Record]:
    """The record of ``image`` for the block, written at each stage's start (``Record.stage``); removed when
    the block ends with the release settled (or nothing changed), kept when it ends any other way, for the
    next run to abort."""
    record = Record(session, image, previous)
    try:
        yield record
    except BaseException as ended:
        if isinstance(ended, Stop) and (ended.outcome in SETTLED or ended.outcome.change is Change.NOTHING):
            record.remove()
        elif record.written:
            session.say(
                f"rollout: {image} stays recorded as unfinished in stack {session.request.stack}: the next "
                "`rollout` on it aborts it first (`rollout status` shows it)"
            )
        raise
    if session.guard is not None:
        # Judged by this run, but undone by the cluster's watchdog meanwhile: left for the next run to settle.
        session.guard.check()
    record.remove()


def remove_tags(engine: StackEngine, names: Iterable[str]) -> None:
    """Remove the record's tags among ``names``, its own first: a reader never finds it without the others."""
    for name in sorted((n for n in names if n in (JUDGING, IMAGE, PREVIOUS)), key=lambda n: n != JUDGING):
        engine.remove_tag(name)


def clear(session: Session, tags: dict[str, str]) -> None:
    """Remove the record in ``tags`` (the stack's) of a release aborted by this run."""
    try:
        remove_tags(session.engine, tags)
    except EngineError as err:
        raise Stop(
            Outcome.FAILED,
            f"aborted the unfinished release, but could not remove its record from stack "
            f"{session.request.stack}'s tags: {err.summary}",
        ) from None
