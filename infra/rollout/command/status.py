"""`rollout status`: what a stack runs now (its Deployment as the cluster has it, its canary), and a release an
earlier run left unjudged, which the next `rollout` (or `rollout abort`) on the stack aborts first."""

from __future__ import annotations

from typing import Any

from infra.rollout.command import unfinished
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.settings import Settings, SettingsError
from infra.settings.keys import CANARY_REPLICAS, CANARY_TAG, CANARY_WEIGHT


def run(session: Session, values: dict[str, str]) -> Outcome:
    stack = session.request.stack
    left = unfinished.of(session)
    try:
        settings = Settings.from_values(values)
    except SettingsError as err:
        raise Stop(Outcome.REFUSED, str(err)) from None
    shown: dict[str, Any] = {"deployed": bool(session.outputs.get("deploymentName"))}
    lines = []
    if shown["deployed"]:
        health = session.look(settings)
        shown.update(image=health.image, replicas=health.replicas, ready=health.ready, complete=health.complete)
        lines.append(f"stack {stack} runs {health}{'' if health.complete else ' (its rollout is not complete)'}")
    else:
        lines.append(f"stack {stack} has not been deployed")
    # The canary the state holds (the config in this checkout may not name it: a run that died left it).
    canary = str(session.outputs.get("canaryImage") or "") or (
        settings.canary_image if values.get(CANARY_TAG.name) else ""
    )
    shown["canary"] = canary or None
    weight = values.get(CANARY_WEIGHT.name) or ""
    share = f", {weight} % of requests by the ALB's weights" if weight not in ("", "0") else ""
    if canary and left is None:
        lines.append(
            f"canary: {values.get(CANARY_REPLICAS.name) or 1} pod(s) of {canary}{share} (`rollout promote --stack "
            f"{stack}` rolls the rest, `rollout abort --stack {stack}` removes it)"
        )
    elif canary:
        lines.append(f"canary: {canary}, unjudged")
    if left is not None:
        session.report.unfinished = left.as_json()
        lines.append(
            f"unfinished: {left.line()}. The next `rollout` on {stack} aborts it before anything else; "
            f"`rollout abort --stack {stack}` aborts it now"
        )
    session.report.status = shown
    if not session.request.json:
        print("\n".join(lines), file=session.out)
    return Outcome.LISTED
