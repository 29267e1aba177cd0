"""Ship a release: the version that runs and the one to ship (read from the cluster), an optional canary
first, then the update judged through its bake, rolled back when it fails. `ship`, `undo`, `promote` and
`promote --from` all end here, each with the ``Target`` it chose."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from infra import images, release
from infra.identity import CONTAINER
from infra.kube import watchdog
from infra.kube.cluster import short
from infra.kube.status import Health
from infra.rollout.analysis import Judgement
from infra.rollout.command import canary, guard, unfinished, weighted
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.command.steps import Steps, image_config
from infra.rollout.command.unfinished import Record
from infra.rollout.engine import CAUSE_KEY
from infra.rollout.gate import Gate
from infra.rollout.review import RolloutSummary
from infra.settings import Settings, SettingsError
from infra.settings.keys import IMAGE_DIGEST, IMAGE_REPOSITORY, IMAGE_TAG


@dataclass(frozen=True)
class Target:
    """What a release puts in place beside the stack's config (``values``: repository, tag, digest), and
    why: the verb and note its cause records. A tag alone clears a digest the config pins."""

    values: dict[str, str]
    verb: str = "ship"
    note: str = ""
    # --canary N (and --pause): N pods of it judged first.
    canary: int | None = None
    pause: bool = False

    @classmethod
    def tag(cls, tag: str, *, canary: int | None = None, pause: bool = False) -> Target:
        """Ship ``tag`` of the stack's repository."""
        return cls({IMAGE_TAG.name: tag, IMAGE_DIGEST.name: ""}, canary=canary, pause=pause)

    @classmethod
    def image(cls, image: str, tag: str | None, *, verb: str, note: str) -> Target:
        """Ship ``image`` again (shipped before as ``tag``)."""
        repository, named_tag, digest = images.parse(image)
        values = {
            IMAGE_REPOSITORY.name: repository,
            IMAGE_TAG.name: tag or named_tag or "",
            IMAGE_DIGEST.name: digest or "",
        }
        return cls(values, verb=verb, note=note)


def running_values(session: Session, values: dict[str, str], running: str = "") -> dict[str, str]:
    """The settings of what runs now: ``running`` when the cluster said it; else with an image named in the
    config, that one; with none (the app keeps what the last deploy shipped), the stack's `image` output,
    or the bootstrap image of a stack never deployed, named explicitly so that a rollback restores it."""
    if not running and (values.get(IMAGE_TAG.name) or values.get(IMAGE_DIGEST.name)):
        return values
    running = running or str(session.outputs.get("image") or "") or Settings.from_values(values).image
    repository, tag, digest = images.parse(running)
    named = {IMAGE_REPOSITORY.name: repository, IMAGE_TAG.name: tag or "", IMAGE_DIGEST.name: digest or ""}
    return {**{k: v for k, v in values.items() if k not in named}, **{k: v for k, v in named.items() if v}}


def versions(session: Session, values: dict[str, str], target: Target) -> tuple[Settings, Settings, Health | None]:
    """The version that runs, the one to ship, and the Deployment as the cluster has it (None for a stack
    never deployed); Stop for bad settings or a cluster that cannot be read."""
    try:
        new = Settings.from_values({**values, **target.values})
        old = Settings.from_values(running_values(session, values))
    except (SettingsError, images.ImageError) as err:
        raise Stop(Outcome.REFUSED, str(err)) from None
    live: Health | None = None
    if session.outputs.get("deploymentName"):
        with session.report.timed("look"):
            live = session.look(new)
        if live.image != old.image:
            # What runs is the old version (the config may name a tag never shipped); an image the stack's
            # state does not know was set outside Pulumi and is read back first.
            if session.outputs.get("image") and live.image != session.outputs["image"]:
                session.say(
                    f"rollout: the cluster runs {live.image}, but stack {session.request.stack}'s state says "
                    f"{session.outputs['image']} (changed outside Pulumi); reading the Deployment back first"
                )
                with session.report.timed("refresh"):
                    session.refresh_deployment()
            old = Settings.from_values(running_values(session, values, live.image))
    session.report.old_image, session.report.new_image = old.image, new.image
    return old, new, live


def undo_in_cluster(session: Session, old: Settings, new: Settings) -> None:
    """The release failed its analysis: put the old image back in the Deployment's template at once, as
    `kubectl rollout undo` would. The template is the old one again (it depends on nothing but the image),
    so the Deployment brings the old ReplicaSet back; the new version's pods leave the Service at once
    while old ones are ready to serve (else at the Deployment's pace). The rollback through Pulumi that
    follows finds it done and makes the state say so."""
    namespace, name = session.deployment(new)
    cluster = session.cluster(new)
    cluster.set_image(namespace, name, CONTAINER, old.image)
    session.say(f"rollout: the Deployment's template is {old.image} again; restoring it through Pulumi")

    def retire() -> None:
        # Beside the rollback: the new pods go as soon as enough old ones are ready to take their requests.
        try:
            if cluster.retire(namespace, name, new.image):
                session.say(f"rollout: the pods of {new.image} are out of the Service (their ReplicaSet at 0 pods)")
        except Exception as err:  # the rollback through Pulumi restores the old version anyway
            session.say(f"rollout: could not take the pods of {new.image} out at once ({short(err)})")

    session.retiring = threading.Thread(target=retire, name="retire", daemon=True)
    session.retiring.start()


def ship(session: Session, steps: Steps, values: dict[str, str], target: Target) -> Outcome:
    """Ship ``target``: Stop unless it ends well (succeeded, paused after its canary, or nothing to do)."""
    old, new, live = versions(session, values, target)
    stack = session.request.stack
    if old.image == new.image:
        if live is not None and not live.complete:
            raise Stop(
                Outcome.INCOMPLETE,
                f"{stack} already names {new.image}, but its rollout is not complete ({live}): "
                "ship another tag, or run `pulumi up` to wait for this one",
            )
        session.say(f"rollout: {stack} already runs {old.image}; nothing to do")
        return Outcome.UNCHANGED
    with guard.guarded(session, new, steps.judging.clock), unfinished.recorded(session, new.image, old.image) as record:
        return judged(session, steps, old, new, target, record=record)


def judged(session: Session, steps: Steps, old: Settings, new: Settings, target: Target, *, record: Record) -> Outcome:
    """Ship ``new`` in place of ``old``, each stage under ``record``."""
    stack = session.request.stack
    if target.canary:
        (weighted if new.canary_traffic == "weights" else canary).run(session, steps, new, target.canary, record)
        if target.pause:
            session.say(
                f"rollout: paused with {target.canary} canary pod(s) of {new.image}: `rollout promote --stack "
                f"{stack}` rolls the rest, `rollout abort --stack {stack}` removes the canary"
            )
            return Outcome.PAUSED
    # Promoting a canary removes it in the same update that rolls the rest; a weighted one first takes no
    # more requests, so none is sent to pods being removed.
    weighted.to_zero(session, steps, new)
    cause = release.Cause(target.verb, new.image, release.who(), target.note).text()
    config = {**image_config(new, session.configured), **steps.canary_removed(), CAUSE_KEY: cause}
    plan_text = RolloutSummary(stack, old.image, new.image, new, cause).render()
    with steps.prepared(new, config=config, plan_text=plan_text) as prepared:

        def bake(gate: Gate) -> Judgement:
            """The new version serves alone: go on judging it for bakeSeconds."""
            gate.alone()
            with session.report.timed("bake"):
                return gate.bake(new.bake_seconds, longest=new.analysis_max_seconds)

        steps.judged_update(
            prepared,
            new,
            config,
            stage="up",
            judge=bake,
            recover=lambda error, breach, p: steps.roll_back(old, new, error, breach, p),
            mitigate=lambda: undo_in_cluster(session, old, new),
            record=record,
            plan=watchdog.in_place(new.image, old.image),
        )
    session.say(f"rollout: {stack} runs {new.image} on all {new.replicas} replicas")
    return Outcome.SUCCEEDED
