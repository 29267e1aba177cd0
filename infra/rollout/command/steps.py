"""The steps every changing action shares, written once: prepare an update (preview, refuse, reach the
evidence, confirm), run it under watch and judgement, and restore what served when it fails."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra import release
from infra.kube.cluster import LiveView, short
from infra.kube.status import Verdict
from infra.kube.watchdog import Plan
from infra.rollout import stackfile
from infra.rollout.analysis import Judgement, State
from infra.rollout.command.judging import Judging
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.session import Session, UnconfirmedError
from infra.rollout.command.unfinished import Record
from infra.rollout.engine import CAUSE_KEY, EngineError, StackBusyError
from infra.rollout.gate import Gate
from infra.rollout.review import describe, unexpected_steps
from infra.settings import Settings
from infra.settings.keys import CANARY_TAG, CANARY_WEIGHT, IMAGE_DIGEST, IMAGE_REPOSITORY, IMAGE_TAG


class IncompleteRolloutError(Exception):
    """The engine's update succeeded, but the rollout did not complete (or cannot) after it."""


class BreachError(Exception):
    """The analysis found the new version serving errors, or slowly (the canary's judgement, or the bake)."""


def summary(err: Exception) -> str:
    """What went wrong, in a line or a few: the engine's parsed diagnostics, or the error's own text."""
    return err.summary if isinstance(err, EngineError) else str(err)


def image_config(settings: Settings, configured: dict[str, str]) -> dict[str, str]:
    """The config keys `up` writes to run ``settings.image``: the tag, and the repository and digest where
    they differ from the stack's config (a rollback to an image the config does not name)."""
    config = {IMAGE_TAG.full: str(settings.image_tag)} if settings.image_tag else {}
    if settings.image_repository != Settings.from_values(configured).image_repository:
        config[IMAGE_REPOSITORY.full] = settings.image_repository
    if (settings.image_digest or "") != configured.get(IMAGE_DIGEST.name, ""):
        # A digest pins the image; an image without one must not keep the last one's.
        config[IMAGE_DIGEST.full] = settings.image_digest or ""
    return config


# How long a breach's mitigation may take before the recovery starts anyway: the longest mitigation (a weighted
# canary's weight read back, weighted.MITIGATE_WITHIN_S, or the failing pods retired) and a margin.
ACT_WITHIN_S = 120.0


@dataclass
class Prepared:
    """An update previewed and confirmed: its live view (being made), the watch's verdict (which interrupts
    the engine on a failure waiting cannot mend), the url to analyse (None: no analysis), the saved plan."""

    view: Future[LiveView | None]
    verdict: Verdict
    url: str | None
    plan: Path
    # An analysis breach: found (its mitigation under way), and acted on (mitigated, the engine interrupted).
    # Both happen on the analysis's own thread while this one may be waiting on something else.
    breach_found: threading.Event = field(default_factory=threading.Event)
    breach_acted: threading.Event = field(default_factory=threading.Event)

    def known_at(self) -> float:
        """When the failure being recovered from was known (monotonic): when the watch decided it, or now, as
        the update returns failing (the program's own wait, or the engine, saw it first)."""
        return self.verdict.at if self.verdict.at is not None else time.monotonic()


# How a failed update is recovered from: given why, the analysis's breach if it found one, and the Prepared.
Recovery = Callable[[str, Judgement | None, Prepared], Stop]


class Steps:
    def __init__(self, session: Session, judging: Judging) -> None:
        self.session, self.judging = session, judging

    @contextmanager
    def prepared(
        self, new: Settings, *, config: dict[str, str], plan_text: str, canary: bool = False, ask: bool = True
    ) -> Iterator[Prepared]:
        """Everything before an update: preview ``config`` (nothing written), refuse steps beyond the
        Deployment's image (the canary's own, for ``canary``), make sure the analysis has its evidence,
        show the plan and confirm (Stop otherwise; not ``ask``: a step of what was confirmed, such as a
        canary's next share). The plan is there for the block."""
        s = self.session
        with tempfile.TemporaryDirectory(prefix="rollout-") as scratch, ThreadPoolExecutor(2) as background:
            # The live view's client (the Kubernetes library is slow to import) is made while the preview
            # runs, and the analysis makes sure it has its evidence.
            verdict = Verdict(new.image, fargate=new.target == "eks", act=s.engine.interrupt)
            view = background.submit(self.live_view, new, verdict)
            url = self.judging.url(new)
            reaching = background.submit(self.judging.unreachable, url, new) if url else None
            # Preview from a copy of the stack's config: nothing is written yet. The update plan it saves
            # holds the update to what was previewed and confirmed.
            plan = Path(scratch) / "plan.json"
            try:
                with s.report.timed("preview"):
                    steps = s.engine.preview(self.preview_config(Path(scratch), config), plan)
            except EngineError as err:
                raise s.engine_failed(err, "preview", Outcome.NOT_READ) from None
            unexpected = unexpected_steps(steps, canary=canary or bool(self.canary_removed()))
            if unexpected and not s.request.allow_infra_changes:
                raise Stop(
                    Outcome.INFRA_CHANGES,
                    f"the preview changes more than the Deployment's image:\n{describe(unexpected)}\n"
                    "review it with `pulumi preview --diff`, then pass --allow-infra-changes",
                )
            unreached = reaching.result() if reaching is not None else None
            if unreached is not None:
                raise Stop(Outcome.NOT_PROBED, unreached)
            s.say(plan_text)
            if ask:
                self.confirm()
            yield Prepared(view, verdict, url, plan)

    def preview_config(self, scratch: Path, config: dict[str, str]) -> Path:
        """A copy of the stack's config file with ``config`` set, for the preview (`--config` would save it),
        written so that the engine reads each value as the update will (a string, whatever its shape)."""
        document = stackfile.read(self.session.project / f"Pulumi.{self.session.request.stack}.yaml")
        path = scratch / "config.yaml"
        path.write_text(stackfile.dumps(stackfile.with_config(document, config)))
        return path

    def confirm(self) -> None:
        s = self.session
        if s.request.yes:
            return
        if not s.stdin.isatty():
            raise Stop(
                Outcome.NOT_CONFIRMED,
                "no terminal to ask for confirmation on; pass --yes to roll out unattended",
            )
        s.err.write(f"Roll {s.request.stack} to {s.report.new_image}? [y/N] ")
        s.err.flush()
        if s.stdin.readline().strip().lower() not in ("y", "yes"):
            raise Stop(Outcome.NOT_CONFIRMED, "declined")

    def canary_removed(self) -> dict[str, str]:
        """The config that removes the stack's canary, when it has one (and its weight, when it has one)."""
        configured = self.session.configured
        weighted = {CANARY_WEIGHT.full: "0"} if configured.get(CANARY_WEIGHT.name, "0") not in ("", "0") else {}
        return {CANARY_TAG.full: "", **weighted} if configured.get(CANARY_TAG.name) else weighted

    def live_view(self, settings: Settings, verdict: Verdict | None = None) -> LiveView | None:
        """The live view; a rollout goes on without it when the cluster cannot be reached from here."""
        s = self.session
        try:
            return s.cluster(settings).progress(settings.namespace, s.say, verdict)
        except Exception as err:
            s.say(f"rollout: no live progress ({err.__class__.__name__}: {err})")
            return None

    def update(self, settings: Settings, view: LiveView | None, plan: Path | None, config: dict[str, str]) -> None:
        """Write ``config`` to the stack's config and update, with the live view when there is one; then make
        sure the Deployment's rollout is complete, not only the engine's wait (IncompleteRolloutError)."""
        s = self.session
        with ExitStack() as scope:
            if view is not None:
                try:
                    scope.enter_context(view)
                except Exception as err:  # a watcher must never stop the rollout it reports on
                    s.say(f"rollout: no live progress ({short(err)})")
                    view = None
            s.engine.up(config, plan)
            if view is None:
                # The program's own wait (infra/rollout_wait.py) saw the rollout complete before `up` returned.
                return
            try:
                problem = view.wait_complete(settings.await_timeout_seconds)
            except Exception as err:
                raise UnconfirmedError(
                    f"the update succeeded, but the cluster could not be read after it to confirm the rollout: "
                    f"{short(err)}"
                ) from None
            if problem is not None:
                raise IncompleteRolloutError(problem)

    def judged_update(
        self,
        prepared: Prepared,
        new: Settings,
        config: dict[str, str],
        *,
        stage: str,
        judge: Callable[[Gate], Judgement],
        recover: Recovery,
        mitigate: Callable[[], None] | None = None,
        record: Record | None = None,
        plan: Plan | None = None,
    ) -> Judgement | None:
        """The update ``prepared``, judged from its start to the end of ``judge`` (the bake, or the canary's
        window) when there is analysis; its verdict. A failure is recovered from by ``recover``, whose Stop
        ends the run; a busy stack has its config put back; an update not confirmed is never a success.
        On a breach ``mitigate`` runs first, at once: the failing pods stop taking requests before the
        engine is interrupted and the stack reconciled. ``record`` is moved to this stage before the update
        starts, so that a run that dies from here on leaves the release recorded as unfinished, and the cluster's
        watchdog told ``plan``: what it undoes should the run be lost from here on (``mitigate``, done there)."""
        s = self.session
        gate: Gate | None = None

        def breached(reason: str) -> None:
            prepared.breach_found.set()
            try:
                if mitigate is not None:
                    self.mitigated(mitigate)
                prepared.verdict.decide(reason)
            finally:
                prepared.breach_acted.set()

        if record is not None:
            record.stage("canary" if stage == "canary" else "bake", plan)
        pausing = stage == "canary" and new.analysis_undecided == "pause"
        try:
            with ExitStack() as analysing:
                if prepared.url:
                    gate = analysing.enter_context(
                        self.judging.gate(prepared.url, new, breached, pause_undecided=pausing)
                    )
                with s.report.timed(stage):
                    self.update(new, prepared.view.result(), prepared.plan, config)
                if gate is None:
                    return None
                verdict = judge(gate)
                s.report.analysis = verdict.as_json()
                if verdict.state is State.UNDECIDED and pausing:
                    stack = s.request.stack
                    raise Stop(
                        Outcome.UNDECIDED_PAUSED,
                        f"the analysis could not decide on the canary of {new.image} ({verdict.line()}); paused there "
                        f"(rolling:analysisUndecided pause), serving its share unjudged: `rollout promote --stack "
                        f"{stack}` rolls the rest, `rollout abort --stack {stack}` removes it",
                    )
                if verdict.fails:
                    raise BreachError(f"the analysis found {verdict.line()}")
                return verdict
        except StackBusyError as err:
            s.restore_config(config)
            raise s.engine_failed(err, "up") from None
        except (EngineError, IncompleteRolloutError, BreachError) as err:
            breach = gate.breach if gate is not None else None
            if breach is not None:
                s.report.analysis = breach.as_json()
                # The analysis's thread may still be mitigating (a weighted canary's weight waits for the load
                # balancer): its interrupt, which follows, must not meet the recovery's own updates.
                if prepared.breach_found.is_set() and not prepared.breach_acted.wait(ACT_WITHIN_S):
                    s.say(f"rollout: the breach's mitigation did not end within {ACT_WITHIN_S:.0f}s; recovering")
            raise recover(prepared.verdict.reason or summary(err), breach, prepared) from None
        except UnconfirmedError as err:
            raise Stop(Outcome.UNCONFIRMED, str(err)) from None

    def judged_canary(
        self,
        prepared: Prepared,
        new: Settings,
        config: dict[str, str],
        *,
        recover: Recovery,
        mitigate: Callable[[], None],
        record: Record | None,
        plan: Plan,
        first: Callable[[], None] | None = None,
    ) -> Judgement | None:
        """The canary's update ``prepared``, judged once ``first`` (if any) has run: for canarySeconds, then until
        its evidence decides (at most analysisMaxSeconds); its verdict."""

        def judge(gate: Gate) -> Judgement:
            if first is not None:
                first()
            with self.session.report.timed("canaryAnalysis"):
                return gate.bake(new.canary_seconds, longest=new.analysis_max_seconds)

        return self.judged_update(
            prepared,
            new,
            config,
            stage="canary",
            judge=judge,
            recover=recover,
            mitigate=mitigate,
            record=record,
            plan=plan,
        )

    def mitigated(self, mitigate: Callable[[], None]) -> None:
        """Run ``mitigate`` (once: later breaches find it done), timed; a failure is said, never raised: the
        reconciliation through Pulumi that follows restores the old version anyway."""
        s = self.session
        if "failureToMitigated" in s.report.durations:
            return
        start = time.monotonic()
        try:
            mitigate()
        except Exception as err:
            s.say(f"rollout: could not take the failing pods out at once ({short(err)}); restoring through Pulumi")
            return
        s.report.durations["failureToMitigated"] = time.monotonic() - start

    def roll_back(self, old: Settings, new: Settings, error: str, breach: Judgement | None, prepared: Prepared) -> Stop:
        """``new`` failed: put ``old`` back through a second update (unless --no-rollback) and say how it went."""
        s = self.session
        known = prepared.known_at()
        s.say(f"rollout: {new.image} failed: {error}")
        if s.request.no_rollback:
            s.say("rollout: --no-rollback: leaving it as it failed; the old pods that were serving still serve")
            return Stop(Outcome.FAILED, error)
        s.say(f"rollout: rolling back to the last good tag {old.image_tag}")
        try:
            with s.report.timed("rollback"):
                if prepared.verdict.reason is not None:
                    # The update was cut short: the state may still hold the old template while the
                    # cluster runs the new one. Read the Deployment back first, so the rollback sees it.
                    s.refresh_deployment()
                undone = f"{new.image} {'aborted' if breach is not None else 'rolled back'}: {error}"
                cause = release.Cause("rollback", old.image, release.who(), undone).text()
                config = {**image_config(old, s.configured), CAUSE_KEY: cause}
                self.update(old, self.live_view(old), None, config)
            state = s.health(old)
        except (EngineError, IncompleteRolloutError) as err:
            return Stop(Outcome.ROLLBACK_FAILED, f"{error}; the rollback failed too: {summary(err)}")
        except UnconfirmedError as err:
            return Stop(Outcome.ROLLBACK_UNCONFIRMED, f"{error}; the rollback: {err}")
        s.report.rolled_back = True
        if not state.complete or state.image != old.image:
            return Stop(Outcome.ROLLBACK_FAILED, f"{error}; after the rollback the Deployment is not healthy: {state}")
        s.report.restored = str(state)
        # From the moment the failure was known to the old version serving on every replica.
        s.report.durations["failureToRestored"] = time.monotonic() - known
        s.say(f"rollout: restored {state}")
        return Stop(Outcome.ABORTED if breach is not None else Outcome.ROLLED_BACK, error)
