"""`rollout promote --stack S`: roll the rest of S to its canary's tag (removing the canary in the same
update); `rollout promote --from A --to B`: ship A's last release, if it shipped and has soaked, by digest,
in B's repository (copied there when B pulls from another)."""

from __future__ import annotations

from datetime import UTC, datetime

from infra import images
from infra.rollout import history
from infra.rollout.command import unfinished
from infra.rollout.command.listing import updates_of
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.request import PromoteFrom, Request
from infra.rollout.command.session import Session
from infra.rollout.command.ship import Target
from infra.rollout.registry import RegistryError
from infra.settings.keys import CANARY_TAG, IMAGE_DIGEST, IMAGE_REPOSITORY, IMAGE_TAG


def canary_tag(request: Request, values: dict[str, str]) -> str:
    """The stack's canary's tag, or Stop when it has none (for promote and abort)."""
    canary = values.get(CANARY_TAG.name)
    if not canary:
        raise Stop(
            Outcome.REFUSED,
            f"stack {request.stack} has no canary to {request.action} ({CANARY_TAG.full} is not set); start one "
            f"with `rollout --stack {request.stack} --tag TAG --canary 1 --pause`",
        )
    return canary


def from_stack(session: Session, request: PromoteFrom, values: dict[str, str]) -> Target:
    """The release of ``request.source`` to ship to this stack, in its repository; or Stop."""
    source = request.source
    assert session.source_engine is not None

    def refused(why: str) -> Stop:
        return Stop(Outcome.NOT_PROMOTABLE, f"not promoting {source} to {request.stack}: {why}")

    # A release whose judgement never finished has not shipped, whatever the history says.
    left = unfinished.read(session.source_engine, source)
    if left is not None:
        raise refused(f"stack {source}: {left.line()}; the next rollout on {source} aborts it")
    # The source's update history alone (no config read): its secrets, under another passphrase or key
    # than this stack's, are neither needed nor shown.
    settings, updates = updates_of(
        session.source_engine, values, lambda err: Stop(Outcome.REFUSED, f"--from {source}: {err.summary}")
    )
    chosen = history.promotable(history.releases(updates), settings.soak_seconds, datetime.now(UTC))
    if isinstance(chosen, str):
        raise refused(f"stack {source}: {chosen}")
    repository, tag, digest = images.parse(chosen.image)
    tag = chosen.tag or tag
    if not tag:
        raise refused(f"{chosen.image} was shipped without a tag, which the app's version header would say")
    source_target = updates[-1].target if updates else settings.target
    if source_target != settings.target:
        raise refused(f"{source} runs on {source_target} and {request.stack} on {settings.target}")
    destination = str(session.outputs.get("repositoryUrl") or settings.image_repository)
    registry = session.registries(settings.target)
    try:
        with session.report.timed("registry"):
            digest = digest or registry.digest(images.reference(repository, tag))
            if digest is None:
                raise refused(f"{images.reference(repository, tag)} is not in its registry any more")
            if destination != repository and registry.digest(f"{destination}@{digest}") is None:
                session.say(f"rollout: copying {repository}@{digest} to {destination}:{tag}, digest unchanged")
                registry.copy(f"{repository}@{digest}", images.reference(destination, tag))
                if registry.digest(f"{destination}@{digest}") != digest:
                    raise refused(f"{destination}@{digest} is not there after the copy")
    except RegistryError as err:
        raise refused(f"the image could not be put in {destination}, which {request.stack} pulls from: {err}") from None
    session.say(f"rollout: promoting {repository}:{tag} ({digest}) from {source}, where it shipped {chosen.ended}")
    values = {IMAGE_REPOSITORY.name: destination, IMAGE_TAG.name: tag, IMAGE_DIGEST.name: digest}
    return Target(values, verb="promote", note=f"from {source}")
