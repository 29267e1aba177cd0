"""`rollout status`: what a stack runs now (its Deployment as the cluster has it, its canary), and a release an
earlier run left unjudged, which the next `rollout` (or `rollout abort`) on the stack aborts first."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from infra.kube import watchdog
from infra.kube.cluster import short
from infra.kube.lease import holder_gone
from infra.kube.status import UNKNOWN_ZONE
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
        shown["zones"], said = zones(session, settings)
        lines.append(said)
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
        judge, said = who_judges(session, settings)
        shown["judge"] = judge
        lines.append(f"unfinished: {left.line() if judge['who'] == 'nobody' else left.judged_line()}")
        lines.append(said)
    session.report.status = shown
    if not session.request.json:
        print("\n".join(lines), file=session.out)
    return Outcome.LISTED


def zones(session: Session, settings: Settings) -> tuple[dict[str, int] | None, str]:
    """The zones the app's ready pods run in (None when they cannot be read), and a line. On eks the pods are
    asked to spread over zones, which Fargate does not honour (docs/rollouts.md): this says where they are."""
    try:
        namespace, _ = session.deployment(settings)
        found = session.cluster(settings).zones(namespace)
    except Exception as err:  # the Deployment was read above: the zones are a detail
        return None, f"zones: the pods could not be read ({short(err)})"
    if not found:
        return found, "zones: no ready pod"
    spread = ", ".join(f"{zone} {count}" for zone, count in found.items())
    one = len([zone for zone in found if zone != UNKNOWN_ZONE]) == 1 and sum(found.values()) > 1
    warning = "; every ready pod is in one zone, which a zone's outage takes whole" if one else ""
    return found, f"zones: {spread} (ready pods){warning}"


def who_judges(session: Session, settings: Settings) -> tuple[dict[str, Any], str]:
    """Who judges the stack's unfinished release now (a run that holds the stack's lease, or nobody), since
    when, and what happens if nothing does: for --json, and in a line."""
    stack = session.request.stack
    lease = None
    try:
        namespace, _ = session.deployment(settings)
        lease = session.cluster(settings).lease_of(namespace, stack)
    except Exception as err:  # the cluster said above whether it can be read; the lease is a detail
        session.say(f"rollout: the stack's lease could not be read ({short(err)})")
    now = time.time()
    notes = lease.annotations if lease is not None else {}
    acted = watchdog.Acted.parse(notes.get(watchdog.ACTED))
    # A run that ended alive with its release unsettled handed it to the watchdog: it renews its lease no more,
    # though the lease has not run out yet (its holder's machine may be another).
    handed = watchdog.HANDOVER in notes
    if (
        lease is not None
        and lease.holder is not None
        and not handed
        and holder_gone(lease, now, socket.gethostname()) is None
    ):
        left = lease.renewed + lease.seconds - now
        guard = watching(notes)
        if guard is not None:
            if_lost = (
                f"the cluster's watchdog (Job {guard['job']}) acts {lease.seconds}s after its last renewal: "
                f"{guard['plan']}"
            )
        else:
            if_lost = f"the next `rollout` on {stack} aborts it"
        return (
            {
                "who": "run",
                "holder": str(lease.holder),
                "since": iso(lease.acquired),
                "renewed": iso(lease.renewed),
                "watchdog": guard,
                "then": f"that run ends it; should it be lost, {if_lost}",
            },
            f"judged now by the run {lease.holder}, since {iso(lease.acquired)} (its lease renewed "
            f"{now - lease.renewed:.0f}s ago, good {left:.0f}s more); should that run be lost, {if_lost}",
        )
    if acted is None and handed:
        return (
            {
                "who": "watchdog",
                "holder": None if lease is None or lease.holder is None else str(lease.holder),
                "since": None,
                "renewed": None if lease is None else iso(lease.renewed),
                "watchdog": {"handedOver": notes[watchdog.HANDOVER]},
                "then": "the cluster's watchdog undoes it now; the next `rollout` aborts it through Pulumi",
            },
            f"its run ended without settling it and handed it to the cluster's watchdog, which undoes it now; the "
            f"next `rollout` on {stack} aborts it through Pulumi",
        )
    if acted is not None:
        then = (
            "the cluster's watchdog undid it; the next `rollout` on the stack aborts it through Pulumi, which "
            "then says what runs"
        )
        return (
            {
                "who": "watchdog",
                "holder": acted.run,
                "since": acted.at,
                "renewed": None if lease is None else iso(lease.renewed),
                "watchdog": {"acted": acted.line()},
                "then": then,
            },
            f"its run was lost, and the cluster's watchdog acted {acted.line()}; the next `rollout` on {stack} "
            f"aborts it through Pulumi (`rollout abort --stack {stack}` does now)",
        )
    return (
        {
            "who": "nobody",
            "holder": None if lease is None or lease.holder is None else str(lease.holder),
            "since": None,
            "renewed": None if lease is None else iso(lease.renewed),
            "watchdog": None,
            "then": "it goes on serving unjudged until the next `rollout` on the stack aborts it",
        },
        f"judged by nobody: it goes on serving, unjudged, until the next `rollout` on {stack} aborts it before "
        f"anything else; `rollout abort --stack {stack}` aborts it now",
    )


def watching(notes: dict[str, str]) -> dict[str, str] | None:
    """The watchdog that watches the run holding the lease, and what it would undo (None: none watches)."""
    try:
        job = str(json.loads(notes.get(watchdog.WATCHING) or "{}").get("job") or "")
        plan = watchdog.Plan.parse(notes[watchdog.PLAN]).line() if notes.get(watchdog.PLAN) else None
    except (ValueError, AttributeError):
        return None
    if not job:
        return None
    return {"job": job, "plan": plan or "nothing (no stage of a release is under way)"}


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
