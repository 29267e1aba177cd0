"""A canary: N pods of the new version beside the old ones, judged for canarySeconds and then until its
evidence decides, before the rest rolls; removed when it fails, the Deployment's own pods untouched."""

from __future__ import annotations

import time
from collections.abc import Callable

from infra.identity import CANARY_DEPLOYMENT
from infra.kube import watchdog
from infra.rollout.analysis import Judgement
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.command.steps import Prepared, Steps, summary
from infra.rollout.command.unfinished import Record
from infra.rollout.engine import EngineError
from infra.rollout.review import CanarySummary
from infra.settings import Settings
from infra.settings.keys import CANARY_REPLICAS, CANARY_TAG


def run(session: Session, steps: Steps, new: Settings, replicas: int, record: Record | None = None) -> None:
    """Run ``replicas`` pods of ``new`` and judge them: returns when they pass (the rest rolls next, or the
    run pauses), else Stop once the canary is removed. ``record`` says the canary is under judgement."""
    added = {CANARY_TAG.name: str(new.image_tag), CANARY_REPLICAS.name: str(replicas)}
    config = {CANARY_TAG.full: added[CANARY_TAG.name], CANARY_REPLICAS.full: added[CANARY_REPLICAS.name]}
    canary = Settings.from_values({**session.configured, **added})
    if not new.analysis or steps.judging.url(new) is None:
        raise Stop(
            Outcome.REFUSED,
            "a canary is judged by the analysis, which this stack cannot run (rolling:analysis is false, or the "
            "stack has no url yet); ship without --canary",
        )
    plan_text = CanarySummary(session.request.stack, canary).render()
    with steps.prepared(new, config=config, plan_text=plan_text, canary=True) as prepared:
        verdict = steps.judged_canary(
            prepared,
            new,
            config,
            recover=lambda error, breach, p: remove(session, new, error, breach, p),
            mitigate=lambda: scale_away(session, new),
            record=record,
            plan=watchdog.pods_canary(new.image),
        )
    if verdict is not None:
        session.say(f"analysis: the canary passed: {verdict.line()}")
    session.configured = {**session.configured, **added}


def scale_away(session: Session, new: Settings) -> None:
    """The canary failed its analysis: its Deployment to no pods at once. Terminating pods leave the
    Service's endpoints as they stop (their preStop drain ends the requests they have), so the canary
    takes no new requests within about a second; Pulumi removes it next."""
    namespace, _ = session.deployment(new)
    session.cluster(new).scale(namespace, CANARY_DEPLOYMENT, 0)
    session.say("rollout: the canary scaled to 0 pods: it takes no more requests; removing it through Pulumi")


def remove(
    session: Session,
    new: Settings,
    error: str,
    breach: Judgement | None,
    prepared: Prepared,
    *,
    give_back: Callable[[], dict[str, str]] | None = None,
) -> Stop:
    """The canary failed: remove it (the Deployment's own pods were never touched); ``give_back`` first, which
    says what else the removal sets (a weighted canary's share, once given back)."""
    known = prepared.known_at()
    session.say(f"rollout: the canary of {new.image} failed: {error}")
    session.say("rollout: removing the canary; the Deployment's pods were not changed")
    try:
        with session.report.timed("rollback"):
            if prepared.verdict.reason is not None:
                session.refresh_deployment()
            session.engine.up({CANARY_TAG.full: "", **(give_back() if give_back is not None else {})})
    except EngineError as err:
        return Stop(
            Outcome.ROLLBACK_FAILED,
            f"{error}; removing the canary failed too: {summary(err)}; "
            f"run `rollout abort --stack {session.request.stack}`",
        )
    session.report.rolled_back = True
    session.report.durations["failureToRestored"] = time.monotonic() - known
    return Stop(Outcome.ABORTED if breach is not None else Outcome.ROLLED_BACK, error)
