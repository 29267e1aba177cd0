"""The cluster's watchdog over the release this run judges (infra/kube/watchdog.py): its Job started before the
release changes anything, told what undoing each stage takes as the stage starts, and removed when the run ends.

The run refuses the release (exit 18, nothing changed) when the watchdog cannot be started, or has not said on
the Lease that it watches it within START_WITHIN_S: a release is never judged unguarded. Should the watchdog
have undone a stage while this run still ran (its renewals did not reach the cluster for watchdogSeconds), the
run does not go on as if it had not: it ends UNCONFIRMED, the release left recorded for the next run to settle.
A run that ends alive with its release unsettled (interrupted, crashed, its rollback failed: the release left
recorded) hands it over instead of removing the watchdog: it stops renewing its Lease, leaves it and the Job, and
marks the Lease (HANDOVER) so that the watchdog undoes the stage at once rather than after watchdogSeconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from infra.kube import watchdog
from infra.kube.cluster import Cluster, Held, short
from infra.kube.lease import lease_name
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session
from infra.rollout.evidence import REAL_CLOCK, Clock
from infra.settings import Settings

# How often the run looks for the watchdog's word while it starts.
LOOK_EVERY_S = 0.25


class Guard:
    """The watchdog of one run's release: ``start`` its Job, ``watch`` each stage's plan, ``clear`` once the
    release is settled, ``stop`` when the run ends."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        held: Held,
        cluster: Cluster,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.session, self.held, self.cluster, self.clock = session, held, cluster, clock
        self._never = threading.Event()
        self.namespace, _ = session.deployment(settings)
        self.within = watchdog.START_WITHIN_S[settings.target]
        self.seconds = settings.watchdog_seconds
        stack = session.request.stack
        image = settings.watchdog_ref
        assert image is not None, "guarded() refuses a stack with no watchdog image first"
        holder = session.holder.identity() if session.holder is not None else ""
        self.manifest = watchdog.job(
            self.namespace, image, lease=lease_name(stack), holder=holder, since=held.since, stack=stack
        )
        self.name = str(self.manifest["metadata"]["name"])
        self.started_at: float | None = None
        self.watching = False
        self.plan: watchdog.Plan | None = None

    def start(self) -> None:
        """Start the watchdog's Job (it starts while the preview runs); Stop when the cluster refuses it."""
        try:
            self.cluster.start_job(self.namespace, self.manifest)
        except Exception as err:
            raise Stop(
                Outcome.UNGUARDED,
                f"could not start the cluster's watchdog (Job {self.namespace}/{self.name}): {short(err)}; a "
                "release is not judged unguarded (rolling:watchdog false judges it without one)",
            ) from None
        self.started_at = self.clock.now()

    def watch(self, plan: watchdog.Plan) -> None:
        """``plan`` is what undoing the stage about to start takes: wait (the first time) until the watchdog
        says it watches, then write the plan on the Lease. Stop when it never says so in time."""
        if not self.watching:
            self._await_watching()
        try:
            self.held.annotate(watchdog.PLAN, plan.text())
        except Exception as err:
            if self.plan is None:
                raise Stop(
                    Outcome.UNGUARDED,
                    f"could not tell the cluster's watchdog what undoing {plan.release} takes ({short(err)})",
                ) from None
            self.session.say(
                f"rollout: could not tell the cluster's watchdog about the {plan.stage} ({short(err)}); it "
                f"still holds the plan of the {self.plan.stage}: {self.plan.line()}"
            )
            return
        self.plan = plan
        self.session.report.watchdog = {"job": self.name, "stage": plan.stage, "plan": plan.line()}

    def _await_watching(self) -> None:
        start = self.started_at if self.started_at is not None else self.clock.now()
        while True:
            try:
                said = self.held.annotations().get(watchdog.WATCHING) or ""
                if json.loads(said or "{}").get("job") == self.name:
                    break
            except (ValueError, AttributeError):
                pass  # not the watchdog's word (yet)
            except Exception as err:  # the lease could not be read: look again until the bound
                self.session.say(f"rollout: could not read the stack's lease ({short(err)})")
            if self.clock.now() - start > self.within:
                try:
                    problem = self.cluster.job_problem(self.namespace, self.name) or "no reason given"
                except Exception as err:
                    problem = f"its pod could not be read: {short(err)}"
                raise Stop(
                    Outcome.UNGUARDED,
                    f"the cluster's watchdog (Job {self.namespace}/{self.name}) did not start watching within "
                    f"{self.within:.0f}s ({problem}); a release is not judged unguarded (rolling:watchdog false "
                    "judges it without one)",
                )
            self.clock.wait(self._never, LOOK_EVERY_S)
        self.watching = True
        self.session.say(
            f"rollout: the cluster's watchdog (Job {self.name}) watches this run: should it stop renewing its "
            f"lease for {self.seconds}s, the watchdog undoes the release's stage"
        )

    def check(self) -> None:
        """Stop (UNCONFIRMED: the release stays recorded for the next run) should the watchdog have found this run
        lost and undone the release's stage while it still ran."""
        acted = watchdog.Acted.parse(self.held.overtaken)
        if acted is None:
            return
        raise Stop(
            Outcome.UNCONFIRMED,
            f"the cluster's watchdog undid the release while this run could not renew its lease ({acted.line()}); "
            "the release stays recorded as unfinished: the next `rollout` on the stack settles it",
        )

    def clear(self) -> None:
        """The release is settled: nothing is left for the watchdog to undo."""
        if self.plan is None:
            return
        try:
            self.held.annotate(watchdog.PLAN, None)
            self.plan = None
        except Exception as err:  # the run ends next and deletes the lease: the watchdog ends with it
            self.session.say(f"rollout: could not clear the watchdog's plan ({short(err)})")

    def hand_over(self, why: str) -> bool:
        """The run ends with the release's stage under way and unsettled (``why``): leave the stage to the
        watchdog, which undoes it at once. Whether there was one to hand over (else the Job is to be removed)."""
        if self.plan is None or not self.plan.steps or not self.watching or self.held.overtaken is not None:
            return False  # nothing under way, or the watchdog has already undone it
        self.held.keep()
        try:
            self.held.annotate(watchdog.HANDOVER, json.dumps({"job": self.name, "why": why}))
            when = "now"
        except Exception as err:  # it acts anyway once the lease runs out
            self.session.say(f"rollout: could not mark the lease handed over ({short(err)})")
            when = f"within {self.seconds}s"
        self.session.say(
            f"rollout: {self.plan.release} is left to the cluster's watchdog (Job {self.namespace}/{self.name}), "
            f"which undoes its {self.plan.stage} {when}: {self.plan.line()}; `rollout status` says what it did"
        )
        return True

    def stop(self) -> None:
        try:
            self.cluster.delete_job(self.namespace, self.name)
        except Exception as err:
            self.session.say(
                f"rollout: could not remove the watchdog's Job {self.name} ({short(err)}); it ends with this run's "
                f"lease, and the cluster removes it {watchdog.KEPT_AFTER_S // 60} minutes after"
            )


@contextmanager
def guarded(session: Session, settings: Settings, clock: Clock = REAL_CLOCK) -> Iterator[Guard | None]:
    """The watchdog over the release ``settings`` ships, for the block (None when the release is not judged,
    rolling:watchdog is false, or the run holds no lease: a stack never deployed has no cluster yet)."""
    if not (settings.analysis and settings.watchdog) or session.held is None:
        yield None
        return
    if settings.watchdog_ref is None:
        raise Stop(
            Outcome.REFUSED,
            "rolling:watchdogImage is unset: on eks a judged release is guarded by the cluster's watchdog, whose "
            "image is pinned by digest in a registry the cluster pulls from (docs/rollouts.md, the watchdog); set "
            "it, or rolling:watchdog false to judge without one",
        )
    guard = Guard(session, settings, session.held, session.cluster(settings), clock)
    guard.start()
    session.guard = guard
    handed = False
    try:
        yield guard
    except BaseException as ended:
        # A settled release cleared its plan (unfinished.recorded, inside this block); one still planned is
        # left recorded as unfinished: the watchdog undoes it now rather than leave it for the next run.
        handed = guard.hand_over(ending(ended))
        raise
    finally:
        session.guard = None
        if not handed:
            guard.stop()


def ending(ended: BaseException) -> str:
    """How a run ended, for the watchdog's Event."""
    if isinstance(ended, Stop):
        return f"the run ended {ended.outcome.word}: {ended.message}"[:300]
    if isinstance(ended, KeyboardInterrupt):
        return "the run was interrupted"
    return f"the run failed: {ended.__class__.__name__}: {ended}"[:300]
