"""A canary by the ALB's weights (canaryTraffic weights, on eks): its pods first, at weight 0, ready behind a
target group of their own (their readiness gates open once the ALB finds them healthy); then each share of
canarySteps in turn: the weight through Pulumi, read back from the ALB (the load balancer controller applies
it in its own time), judged for the canary's window. On a breach the weight goes back to 0 on the Ingress at
once, the ALB stops sending the canary requests within seconds, and Pulumi removes the canary. After the
last step the weight goes back to 0 before the rest rolls: no request is sent to a canary being removed."""

from __future__ import annotations

from infra.identity import CANARY_DEPLOYMENT, INGRESS
from infra.kube import watchdog
from infra.kube.cluster import short
from infra.rollout import listener
from infra.rollout.analysis import Judgement
from infra.rollout.command import canary
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.command.steps import IncompleteRolloutError, Prepared, Steps
from infra.rollout.command.unfinished import Record
from infra.rollout.engine import EngineError
from infra.rollout.evidence import Clock
from infra.rollout.review import CanarySummary, canary_window_text
from infra.settings import Settings
from infra.settings.keys import CANARY_REPLICAS, CANARY_TAG, CANARY_WEIGHT, strip
from infra.weights import ACTION_ANNOTATION, WeightsError, forward_action

# How long a breach waits for the ALB to stop sending the canary requests before it scales the canary away.
MITIGATE_WITHIN_S = 30.0


def weight_of(session: Session) -> int:
    """The canary's weight the stack's config says (0: none)."""
    return int(session.configured.get(CANARY_WEIGHT.name) or 0)


def run(session: Session, steps: Steps, new: Settings, replicas: int, record: Record | None = None) -> None:
    """Run ``replicas`` pods of ``new`` and judge them at each share of canarySteps: returns when they pass
    (the canary back at weight 0, the rest to roll next), else Stop once the canary is removed."""
    url = steps.judging.url(new)
    if not new.analysis or url is None:
        raise Stop(
            Outcome.REFUSED,
            "a canary is judged by the analysis, which this stack cannot run (rolling:analysis is false, or the "
            "stack has no url yet); ship without --canary",
        )
    added = {CANARY_TAG.name: str(new.image_tag), CANARY_REPLICAS.name: str(replicas), CANARY_WEIGHT.name: "0"}
    config = {CANARY_TAG.full: added[CANARY_TAG.name], CANARY_REPLICAS.full: added[CANARY_REPLICAS.name]}
    canary = Settings.from_values({**session.configured, **added})
    shares = new.canary_steps
    plan_text = CanarySummary(session.request.stack, canary, shares).render()
    if record is not None:
        # From here a canary may exist: a run that dies leaves it recorded, to be finished or removed.
        record.stage("canary", guard_plan(new))
    with steps.prepared(new, config=config, plan_text=plan_text, canary=True) as prepared:
        try:
            with session.report.timed("canary"):
                steps.update(new, prepared.view.result(), prepared.plan, config)
        except (EngineError, IncompleteRolloutError) as err:
            raise remove(session, steps, new, prepared.verdict.reason or str(err), None, prepared=prepared) from None
    session.configured = {**session.configured, **added}
    session.say(f"rollout: {replicas} canary pod(s) of {new.image} ready behind their own target group, at weight 0")
    for share in shares:
        verdict = step(session, steps, new, url=url, share=share, record=record)
        if verdict is not None:
            session.say(f"analysis: the canary passed at {share} %: {verdict.line()}")


def step(
    session: Session, steps: Steps, new: Settings, *, url: str, share: int, record: Record | None
) -> Judgement | None:
    """Give the canary ``share`` percent of requests and judge it for its window there."""
    config = {CANARY_WEIGHT.full: str(share)}
    said = f"rollout: the canary of {new.image} takes {share} % of requests, judged for {canary_window_text(new)}"
    with steps.prepared(new, config=config, plan_text=said, canary=True, ask=False) as prepared:

        def applied() -> None:
            """The share is judged only once the ALB has it; a breach found meanwhile (the canary is judged from
            the update on) has taken the share away, and ends the wait."""
            runner, clock = session.metrics_runner(session.region), steps.judging.clock
            try:
                took = listener.await_share(runner, url, share, clock, stop=prepared.breach_found.is_set)
            except WeightsError as err:
                raise IncompleteRolloutError(str(err)) from None
            if took is not None:
                session.say(f"rollout: the ALB gives the canary {share} % of requests ({took:.0f}s after the update)")

        verdict = steps.judged_canary(
            prepared,
            new,
            config,
            recover=lambda error, breach, p: remove(session, steps, new, error, breach, prepared=p),
            mitigate=lambda: turn_away(session, new, url, steps.judging.clock),
            record=record,
            plan=guard_plan(new),
            first=applied,
        )
    session.configured = {**session.configured, CANARY_WEIGHT.name: str(share)}
    return verdict


def guard_plan(new: Settings) -> watchdog.Plan:
    """What the cluster's watchdog undoes should the run be lost while the canary serves: as ``turn_away``."""
    return watchdog.weighted_canary(new.image, {ACTION_ANNOTATION: forward_action(0)})


def turn_away(session: Session, new: Settings, url: str, clock: Clock) -> None:
    """The canary failed its analysis: its weight to 0 on the Ingress at once (the controller applies it to
    the ALB within seconds); Pulumi, which declared the weight, is brought back to the same next. Should the
    ALB not say so in time, the canary is scaled away as well."""
    namespace, _ = session.deployment(new)
    cluster = session.cluster(new)
    cluster.annotate_ingress(namespace, INGRESS, {ACTION_ANNOTATION: forward_action(0)})
    session.say("rollout: the canary's weight is 0 on the Ingress: the ALB stops sending it requests")
    try:
        listener.await_share(session.metrics_runner(session.region), url, 0, clock, MITIGATE_WITHIN_S)
    except WeightsError as err:
        session.say(f"rollout: {err}; scaling the canary to 0 pods")
        cluster.scale(namespace, CANARY_DEPLOYMENT, 0)


def to_zero(session: Session, steps: Steps, new: Settings) -> None:
    """Before the canary goes (promoted, aborted, or removed after a failure), its weight back to 0 through
    Pulumi, read back from the ALB: no request is then sent to pods being removed. A failure is said, not
    raised: the canary goes anyway."""
    if weight_of(session) == 0:
        return
    config = {CANARY_WEIGHT.full: "0"}
    said = f"rollout: the canary's share back to 0 before it is removed (it had {weight_of(session)} %)"
    try:
        with steps.prepared(new, config=config, plan_text=said, canary=True, ask=False) as prepared:
            steps.update(new, None, prepared.plan, config)
        session.configured = {**session.configured, CANARY_WEIGHT.name: "0"}
        url = str(session.outputs.get("url") or "")
        if url:
            listener.await_share(session.metrics_runner(session.region), url, 0, steps.judging.clock)
    except (EngineError, IncompleteRolloutError, WeightsError, Stop) as err:
        session.say(f"rollout: could not take the canary's share to 0 first ({short(err)}); removing it anyway")


def remove(
    session: Session, steps: Steps, new: Settings, error: str, breach: Judgement | None, *, prepared: Prepared
) -> Stop:
    """The canary failed: its share to 0 first, then the canary removed (the Deployment's pods untouched)."""

    def give_back() -> dict[str, str]:
        # The failed update wrote its weight to the stack's config before it ran: read what it says now.
        session.configured = strip(session.engine.config())
        to_zero(session, steps, new)
        return steps.canary_removed()

    return canary.remove(session, new, error, breach, prepared, give_back=give_back)
