"""Before anything else a run does to a stack: abort the release an earlier run left unjudged (its record in
the stack's tags, infra/rollout/command/unfinished.py). Its canary is removed; a release cut short in its bake
gives way to the version that ran before it, through the same preview, plan and confirmation as any update."""

from __future__ import annotations

from infra import release
from infra.rollout.command import abort, unfinished, weighted
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session, UnconfirmedError
from infra.rollout.command.ship import Target
from infra.rollout.command.steps import IncompleteRolloutError, Steps, image_config, summary
from infra.rollout.engine import CAUSE_KEY, EngineError
from infra.settings import Settings, SettingsError
from infra.settings.keys import ANALYSIS, CANARY_TAG


def run(session: Session, steps: Steps, values: dict[str, str]) -> Outcome | None:
    """Abort the stack's unfinished release, if it has one: how that ended (None when there was none).
    Stop when it cannot be aborted: the record is kept, and the run goes no further."""
    found = unfinished.of(session)
    if found is None:
        return None
    stack = session.request.stack
    session.report.unfinished = found.as_json()
    session.say(f"rollout: stack {stack}: {found.line()}; aborting it before anything else")
    if found.stage == "canary":
        settings = Settings.from_values({**values, ANALYSIS.name: "false"})
        plan_text = (
            f"Remove the canary of stack {stack} ({found.image}), left unjudged since {found.since}; "
            "the Deployment's pods stay as they are"
        )
        abort.remove_canary(session, steps, settings, plan_text)
    else:
        put_back(session, steps, values, found)
    unfinished.clear(session, session.tags())
    session.recovered = True
    session.say(f"rollout: aborted {found.image}; stack {stack} is as it was before it")
    return Outcome.UNFINISHED_ABORTED


def put_back(session: Session, steps: Steps, values: dict[str, str], found: unfinished.Unfinished) -> None:
    """Put back the version that ran before ``found`` (its canary removed too), or Stop."""
    stack = session.request.stack
    if not found.previous:
        raise Stop(
            Outcome.REFUSED,
            f"the record of {found.image} in stack {stack} does not say what ran before it "
            f"({unfinished.PREVIOUS} is missing): ship the version to run with `rollout --stack {stack} --tag TAG`, "
            f"then remove the record with `pulumi stack tag rm {unfinished.JUDGING} --stack {stack}`",
        )
    note = f"{found.image} aborted: its judgement never finished"
    target = Target.image(found.previous, None, verb="rollback", note=note)
    try:
        old = Settings.from_values({**values, **target.values, ANALYSIS.name: "false"})
    except SettingsError as err:
        raise Stop(Outcome.REFUSED, f"cannot put {found.previous} back: {err}") from None
    session.report.old_image, session.report.new_image = found.image, old.image
    cause = release.Cause("rollback", old.image, release.who(), note).text()
    config = {**image_config(old, session.configured), CANARY_TAG.full: "", **steps.canary_removed(), CAUSE_KEY: cause}
    plan_text = f"Put {old.image} back on stack {stack} in place of {found.image}, whose judgement never finished"
    # The run that died may have been cut short in its update: the state may not say what the cluster runs.
    session.refresh_deployment()
    # A weighted canary it left takes no more requests before it goes.
    weighted.to_zero(session, steps, old)
    with steps.prepared(old, config=config, plan_text=plan_text, canary=True) as prepared:
        try:
            with session.report.timed("rollback"):
                steps.update(old, prepared.view.result(), prepared.plan, config)
            state = session.health(old)
        except (EngineError, IncompleteRolloutError) as err:
            raise Stop(Outcome.ROLLBACK_FAILED, f"putting {old.image} back failed: {summary(err)}") from None
        except UnconfirmedError as err:
            raise Stop(Outcome.ROLLBACK_UNCONFIRMED, f"putting {old.image} back: {err}") from None
    if not state.complete or state.image != old.image:
        raise Stop(Outcome.ROLLBACK_FAILED, f"after putting {old.image} back the Deployment is not healthy: {state}")
    session.report.rolled_back = True
    session.report.restored = str(state)
