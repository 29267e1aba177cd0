"""A stack's releases, newest first, read back from what keeps them: the stack's own update history
(`pulumi stack history --json`: when, the result, the config each update ran with, its CI run) and the
Deployment's ReplicaSets (the revision numbers `kubectl rollout history` shows, each with the cause
the release wrote: infra/release.py). No engine or cluster here: both are read by the caller.

A release is an update that put an image in place: the rollout command's `ship`, `promote`, `undo`
and `rollback`, or a plain `pulumi up` that changed the image. An update that changed only
infrastructure, or a canary's own steps, is not one. A release's outcome:

- shipped      the update succeeded and nothing undid it (the newest such one is what runs);
- rolled back  it failed (or its rollout did), and the command restored the one before;
- aborted      the analysis found it failing its users, and the command restored the one before;
- failed       its update failed and nothing was restored (`--no-rollback`, or the rollback failed too);
- restored     a rollback's own update: the earlier release running again;
- running      its update has not ended (or was cut off without a record of its end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra import images, release
from infra.kube.revisions import Revision
from infra.settings import NAMESPACE, Settings, SettingsError
from infra.settings.keys import CHANGE_CAUSE, IMAGE_DIGEST, IMAGE_REPOSITORY, IMAGE_TAG, TARGET

# The CI run an update came from, as the engine records it (pulumi pkg/backend/updates.go).
CI_RUN_URL = "ci.build.url"


@dataclass(frozen=True)
class Update:
    """One `pulumi up` of the stack, as its history has it."""

    version: int
    result: str  # succeeded, failed, in-progress
    started: datetime
    ended: datetime | None
    image: str | None  # what the config named; None when it named none (the running image kept)
    tag: str | None  # the tag the config named (an image pinned by digest runs without it)
    cause: str  # rolling:changeCause as it was configured for this update ("" none)
    environment: Mapping[str, str] = field(default_factory=dict)
    target: str = "eks"  # rolling:target


@dataclass
class Release:
    """A release of the stack, for people and for CI (``as_json``)."""

    verb: str
    image: str  # what the pods run: repository:tag, or repository@digest
    tag: str | None  # the tag it was shipped as
    who: str
    note: str
    cause: str
    version: int
    started: datetime
    ended: datetime | None
    outcome: str
    revision: int | None = None
    run_url: str = ""
    # When a later rollback undid this release: how long from its start until the one before served again.
    restored_after: float | None = None

    @property
    def digest(self) -> str | None:
        return images.parse(self.image)[2]

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else (self.ended - self.started).total_seconds()

    def as_json(self) -> dict[str, Any]:
        repository, _, digest = images.parse(self.image)
        return {
            "revision": self.revision,
            "image": self.image,
            "repository": repository,
            "tag": self.tag,
            "digest": digest,
            "verb": self.verb,
            "outcome": self.outcome,
            "started": self.started.isoformat(),
            "ended": None if self.ended is None else self.ended.isoformat(),
            "who": self.who,
            "runUrl": self.run_url or None,
            "note": self.note or None,
            "cause": self.cause,
            "update": self.version,
            "durations": {
                "update": None if self.seconds is None else round(self.seconds, 1),
                "untilRestored": None if self.restored_after is None else round(self.restored_after, 1),
            },
        }


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _image(values: Mapping[str, str]) -> str | None:
    """The image an update's config named, or None when it named none (or not one the settings accept)."""
    if not (values.get(IMAGE_TAG.name) or values.get(IMAGE_DIGEST.name)):
        return None
    named = (TARGET.name, IMAGE_REPOSITORY.name, IMAGE_TAG.name, IMAGE_DIGEST.name)
    try:
        return Settings.from_values({k: values[k] for k in named if values.get(k)}).image
    except (SettingsError, images.ImageError):
        return None


def updates(history: Iterable[Mapping[str, Any]]) -> list[Update]:
    """The stack's updates from `pulumi stack history --json` (newest first there), oldest first; previews,
    refreshes and destroys are not updates."""
    found = []
    for entry in history:
        if entry.get("kind") != "update":
            continue
        config = entry.get("config") or {}
        values = {
            key.split(":", 1)[1]: str((config[key] or {}).get("value") or "")
            for key in config
            if key.startswith(f"{NAMESPACE}:")
        }
        started = _when(entry.get("startTime"))
        if started is None:
            continue
        found.append(
            Update(
                version=int(entry.get("version") or 0),
                result=str(entry.get("result") or "in-progress"),
                started=started,
                ended=_when(entry.get("endTime")),
                image=_image(values),
                tag=values.get(IMAGE_TAG.name) or None,
                cause=values.get(CHANGE_CAUSE.name, ""),
                environment=dict(entry.get("environment") or {}),
                target=values.get(TARGET.name) or "eks",
            )
        )
    return sorted(found, key=lambda u: (u.started, u.version))


def releases(stack_updates: Iterable[Update], stack_revisions: Iterable[Revision] = ()) -> list[Release]:
    """The releases among ``stack_updates`` (oldest first), newest first, each with its outcome and, where
    the Deployment still has it, its revision."""
    rows: list[Release] = []
    image: str | None = None  # what the updates so far put in place
    tag: str | None = None
    cause = ""
    for update in stack_updates:
        said = release.parse(update.cause)
        named = update.image
        if named is None and said is not None and update.result != "failed":
            named = image  # the stack names no image: the running one, whose cause the config holds
        changed = named is not None and named != image
        new_cause = said is not None and update.cause != cause and said.image == named
        if not (changed or new_cause):
            continue
        assert named is not None
        verb, who, note = ("up", "", "") if said is None or said.image != named else (said.verb, said.who, said.note)
        row = Release(
            verb=verb,
            image=named,
            tag=update.tag if update.image is not None else tag,
            who=who,
            note=note,
            cause=update.cause if said is not None and said.image == named else release.Cause("up", named).text(),
            version=update.version,
            started=update.started,
            ended=update.ended,
            outcome={"succeeded": "shipped", "failed": "failed"}.get(update.result, "running"),
            run_url=update.environment.get(CI_RUN_URL, ""),
        )
        if verb == "rollback":
            row.outcome = "restored" if update.result == "succeeded" else "failed"
            undone = next((r for r in reversed(rows) if r.verb != "rollback"), None)
            if undone is not None and note.startswith(f"{undone.image} "):
                undone.outcome = "aborted" if note.startswith(f"{undone.image} aborted") else "rolled back"
                if row.ended is not None:
                    undone.restored_after = (row.ended - undone.started).total_seconds()
        rows.append(row)
        image, tag, cause = named, row.tag, update.cause
    _number(rows, list(stack_revisions))
    return list(reversed(rows))


def _number(rows: list[Release], stack_revisions: list[Revision]) -> None:
    """Give each release the revision the Deployment gave its template: the ReplicaSet whose change-cause is
    the release's, newest first; a template used again keeps its earlier numbers (revision-history) for the
    earlier releases of the same image."""
    for revision in reversed(stack_revisions):
        unnumbered = [r for r in reversed(rows) if r.revision is None and r.image == revision.image]
        mine = next((r for r in unnumbered if r.cause == revision.cause), None)
        if mine is None:
            continue
        mine.revision = revision.number
        before = [r for r in unnumbered if r is not mine and r.started <= mine.started]
        for number, row in zip(sorted(revision.earlier, reverse=True), before, strict=False):
            row.revision = number


def current(rows: list[Release]) -> Release | None:
    """The release that runs: the newest one shipped or restored (rows newest first)."""
    return next((r for r in rows if r.outcome in ("shipped", "restored")), None)


def undo_target(rows: list[Release], revision: int | None) -> Release | str:
    """The release `rollout undo` puts back: the one with ``revision``, or by default the newest one before
    what runs that shipped another image; or why there is none (rows newest first)."""
    running = current(rows)
    good = ("shipped", "restored")
    if revision is not None:
        numbered = [r for r in rows if r.revision == revision]
        if not numbered:
            known = sorted({r.revision for r in rows if r.revision is not None})
            return f"there is no revision {revision}; the Deployment has {', '.join(map(str, known)) or 'none'}"
        chosen = numbered[0]
        if chosen.outcome not in good and not any(r.image == chosen.image and r.outcome in good for r in rows):
            return f"revision {revision} ({chosen.image}) never served: it was {chosen.outcome}"
        return chosen
    if running is None:
        return "no release has shipped yet"
    older = rows[rows.index(running) + 1 :]
    chosen_or_none = next((r for r in older if r.outcome in good and r.image != running.image), None)
    if chosen_or_none is None:
        return f"no release before the one that runs ({running.image}) shipped another image"
    return chosen_or_none


def promotable(rows: list[Release], soak_seconds: int, now: datetime) -> Release | str:
    """The release a stack may promote: its last one, if it shipped and has run for ``soak_seconds``; or
    why not (rows newest first)."""
    last = next(iter(rows), None)
    if last is None:
        return "it has no release"
    if last.outcome != "shipped":
        undone = next((r for r in rows[1:] if r.verb != "rollback"), None)
        if last.verb == "rollback" and undone is not None:
            what = f"{undone.image}, which was {undone.outcome} ({last.image} serves again)"
        else:
            what = f"{last.image}, which {'was ' if last.outcome != 'failed' else ''}{last.outcome}"
        return f"its last release was {what}: promote once a release ships there"
    assert last.ended is not None
    ran = (now - last.ended).total_seconds()
    if ran < soak_seconds:
        return (
            f"its release {last.image} has run {ran:.0f}s; releases are promoted once they have run "
            f"{soak_seconds}s (rolling:soakSeconds of the stack promoted to): try again in {soak_seconds - ran:.0f}s"
        )
    return last


def table(rows: list[Release], now: datetime) -> str:
    """The releases as a person reads them, newest first."""
    lines = [f"{'REVISION':<9}{'IMAGE':<58}{'OUTCOME':<13}{'WHEN':<17}{'TOOK':>6}  BY"]
    running = current(rows)
    for row in rows:
        took = "" if row.seconds is None else f"{row.seconds:.0f}s"
        when = _ago((now - row.started).total_seconds())
        outcome = row.outcome + (" *" if row is running else "")
        by = row.verb + (f" by {row.who}" if row.who else "") + (f"; {row.note}" if row.note else "")
        number = "-" if row.revision is None else str(row.revision)
        lines.append(f"{number:<9}{row.image:<58}{outcome:<13}{when:<17}{took:>6}  {by}")
    lines.append("* runs now. REVISION as `kubectl rollout history` numbers it; - when the Deployment has it no more")
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(0, seconds):.0f}s ago"
