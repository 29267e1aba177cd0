"""`rollout abort`: remove the stack's canary through the same preview, plan and confirmation; the
Deployment's own pods stay as they are."""

from __future__ import annotations

from infra.rollout.command import weighted
from infra.rollout.command.outcome import Outcome
from infra.rollout.command.promote import canary_tag
from infra.rollout.command.session import Session
from infra.rollout.command.steps import Steps
from infra.rollout.engine import EngineError, StackBusyError
from infra.settings import Settings
from infra.settings.keys import ANALYSIS, CANARY_TAG


def run(session: Session, steps: Steps, values: dict[str, str]) -> Outcome:
    canary_tag(session.request, values)
    # Removing a canary serves nothing new: there is nothing to analyse.
    settings = Settings.from_values({**values, ANALYSIS.name: "false"})
    stack = session.request.stack
    plan_text = (
        f"Remove the canary of stack {stack}: {settings.canary_replicas} pod(s) of {settings.canary_image}; "
        "the Deployment's pods stay as they are"
    )
    remove_canary(session, steps, settings, plan_text)
    session.say(f"rollout: removed the canary of stack {stack}; the Deployment's pods were not changed")
    return Outcome.CANARY_REMOVED


def remove_canary(session: Session, steps: Steps, settings: Settings, plan_text: str) -> None:
    """Remove the stack's canary (``plan_text`` says which) through a preview, plan and confirmation; or Stop."""
    weighted.to_zero(session, steps, settings)
    config = {CANARY_TAG.full: "", **steps.canary_removed()}
    with steps.prepared(settings, config=config, plan_text=plan_text, canary=True) as prepared:
        try:
            with session.report.timed("up"):
                session.engine.up(config, prepared.plan)
        except EngineError as err:
            if not isinstance(err, StackBusyError):
                session.restore_config(config)
            raise session.engine_failed(err, "up") from None
