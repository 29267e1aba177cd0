"""One run of `rollout`: its request, its streams and report, and what every action reads through it (the
stack's engine, config and outputs, its cluster, registries and metrics), each passed in by tests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from infra import eks_versions, release
from infra.identity import DEPLOYMENT_TYPE
from infra.kube.cluster import Cluster, ClusterReader, Held, live_cluster, short, unread
from infra.kube.lease import Holder, LeaseHeldError, LeaseRecord, gone
from infra.kube.status import Health
from infra.kube.watchdog import ACTED, Acted, Plan
from infra.rollout import cloudwatch
from infra.rollout.analysis import Sample
from infra.rollout.command.outcome import Outcome, Stop
from infra.rollout.command.request import PromoteFrom, Request
from infra.rollout.engine import Engine, EngineError, EngineMissingError, StackBusyError, StackEngine
from infra.rollout.registry import Registry, registry_for
from infra.rollout.report import Report
from infra.settings import Settings, SettingsError, keys


class Guarding(Protocol):
    """The cluster's watchdog over the release a run judges, as the release's record tells it each stage
    (infra/rollout/command/guard.py ``Guard``)."""

    def check(self) -> None: ...
    def watch(self, plan: Plan) -> None: ...
    def clear(self) -> None: ...


class UnconfirmedError(Exception):
    """The engine's update succeeded, but the cluster could not be read after it to confirm the rollout."""


class Session:
    """What one run works with; every action reads the stack through it, and ends through ``end``."""

    def __init__(
        self,
        request: Request,
        out: TextIO,
        err: TextIO,
        stdin: TextIO,
        *,
        engine: StackEngine | None = None,
        cluster_reader: ClusterReader = live_cluster,
        source_engine: StackEngine | None = None,
        registries: Callable[[str], Registry] = registry_for,
        metrics_runner: Callable[[str | None], cloudwatch.Run] = cloudwatch.aws_cli,
    ) -> None:
        self.request = request
        self.out, self.err, self.stdin = out, err, stdin
        self.report = Report(stack=request.stack)
        self.project = Path(request.cwd).resolve()
        self.engine: StackEngine = engine or Engine(self.project, request.stack)
        self.source_engine = source_engine or (
            Engine(self.project, request.source) if isinstance(request, PromoteFrom) else None
        )
        self.cluster_reader, self.registries, self.metrics_runner = cluster_reader, registries, metrics_runner
        # The stack's rolling: config as the command found it (kept as it changes: a canary added), and its
        # AWS region (for the metrics).
        self.configured: dict[str, str] = {}
        self.region: str | None = None
        # Every response the analysis recorded in this run, for --record.
        self.evidence: list[Sample] = []
        # Whether this run aborted a release an earlier run left unjudged (a change, whatever comes after).
        self.recovered = False
        self._outputs: dict[str, Any] | None = None
        self._tags: dict[str, str] | None = None
        # A failed release's pods being taken out beside the rollback (ship.undo_in_cluster), if any.
        self.retiring: threading.Thread | None = None
        # The lease of the run before this one, when that run was gone (lost) as this one took the stack.
        self.lost: LeaseRecord | None = None
        # This run's lease while it holds the stack, and who it says it is on it; the cluster's watchdog over
        # the release it judges (infra/rollout/command/guard.py), while there is one.
        self.held: Held | None = None
        self.holder: Holder | None = None
        self.guard: Guarding | None = None

    def say(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def end(self, outcome: Outcome, message: str | None = None) -> Outcome:
        """Fill the report with how the run ended, say its error, and write its evidence (--record)."""
        if self.retiring is not None:
            # Done by now (the rollback waited for the old version), or given up at its own bound.
            self.retiring.join(timeout=5)
        self.report.exit, self.report.outcome = outcome.exit, outcome.word
        self.report.changed = None if outcome.change.value == "unknown" else not outcome.changed_nothing
        said = outcome.message(message) if message else None
        if self.recovered and outcome.changed_nothing:
            # The unfinished release this run aborted first was a change.
            self.report.changed, said = True, message
        self.report.error = said
        if self.report.error:
            self.say(f"rollout: {self.report.error}")
        if self.request.record and self.evidence:
            with open(self.request.record, "w", encoding="utf-8") as record:
                record.writelines(json.dumps(dataclasses.asdict(s)) + "\n" for s in self.evidence)
        return outcome

    def read_config(self) -> dict[str, str]:
        """The stack's rolling: settings as its config has them (``configured``); the outputs are read beside."""
        if not (self.project / "Pulumi.yaml").is_file():
            raise Stop(Outcome.REFUSED, f"--cwd {self.project} holds no Pulumi.yaml")
        # What the look before the preview needs is read while the config is: the stack's outputs, and
        # the Kubernetes client (the library takes a good part of a second to import).
        early = threading.Thread(target=self._read_early, daemon=True)
        early.start()
        try:
            with self.report.timed("config"):
                config = self.engine.config()
        except EngineMissingError as err:
            raise Stop(Outcome.REFUSED, err.summary) from None
        except EngineError as err:
            raise Stop(Outcome.REFUSED, f"--stack {self.request.stack}: {err.summary}") from None
        self.configured = keys.strip(config)
        self.region = config.get("aws:region") or None
        with self.report.timed("outputs"):
            early.join()
        return self.configured

    def reread_config(self) -> dict[str, str]:
        """The config, outputs and tags again, as an update of this run left them."""
        self._outputs, self._tags = None, None
        return self.read_config()

    def _read_early(self) -> None:
        self.outputs  # noqa: B018 (read once, here)
        with contextlib.suppress(EngineError):  # said where they are used
            self.tags()
        with contextlib.suppress(ImportError):  # said where it is used
            import infra.kube.watch  # noqa: F401 (the live cluster's module, imported ahead of its use)

    @property
    def outputs(self) -> dict[str, Any]:
        """The stack's outputs before the update (its Deployment's name and namespace, its kubeconfig, the
        image it runs), read once; none for a stack never deployed."""
        if self._outputs is None:
            try:
                self._outputs = self.engine.outputs()
            except EngineError:
                self._outputs = {}
        return self._outputs

    def tags(self) -> dict[str, str]:
        """The stack's tags (where a release under judgement is recorded), read once: EngineError when they
        cannot be."""
        if self._tags is None:
            self._tags = self.engine.tags()
        return self._tags

    def cluster(self, settings: Settings) -> Cluster:
        """The cluster: through the stack's own kubeconfig output on eks, the configured or ambient one locally."""
        if settings.target == "eks":
            return self.cluster_reader(str(self.outputs["kubeconfig"]))
        return self.cluster_reader(settings.local.kubeconfig if settings.local else None)

    def deployment(self, settings: Settings) -> tuple[str, str]:
        """The namespace and name of the stack's Deployment."""
        return str(self.outputs.get("namespace") or settings.namespace), str(self.outputs["deploymentName"])

    def look(self, settings: Settings) -> Health:
        """The stack's Deployment as the cluster has it, read before anything is previewed: what runs, not
        what a file says. A cluster that cannot be read, or that has no such Deployment, stops the run."""
        namespace, name = self.deployment(settings)
        try:
            cluster = self.cluster(settings)
        except Exception as err:
            raise Stop(
                Outcome.UNREADABLE,
                f"cannot read the kubeconfig of stack {self.request.stack}'s cluster: {short(err)}",
            ) from None
        try:
            return cluster.health(namespace, name)
        except Exception as err:
            absent, why = unread(err, f"{namespace}/{name}", cluster.name)
        raise Stop(Outcome.DRIFTED if absent else Outcome.UNREADABLE, why)

    def health(self, settings: Settings) -> Health:
        """The Deployment after an update that succeeded (UnconfirmedError when it cannot be read)."""
        namespace, name = self.deployment(settings)
        try:
            cluster = self.cluster(settings)
        except Exception as err:
            raise UnconfirmedError(
                f"the update succeeded, but the kubeconfig could not be read: {short(err)}"
            ) from None
        try:
            return cluster.health(namespace, name)
        except Exception as err:
            raise UnconfirmedError(
                f"the update succeeded, but {unread(err, f'{namespace}/{name}', cluster.name)[1]}"
            ) from None

    def refresh_deployment(self) -> None:
        """Read the Deployment back into the stack's state (after an update cut short, or a change outside)."""
        urns = [r["urn"] for r in self.engine.resources() if r.get("type") == DEPLOYMENT_TYPE]
        if urns:
            self.engine.refresh(urns)

    def restore_config(self, config: dict[str, str]) -> None:
        """Put the keys of ``config`` back as the command found them (`up --config` wrote them before it failed)."""
        for key in config:
            before = self.configured.get(key.split(":", 1)[1])
            if before:
                self.engine.run("config", "set", key, before, "--plaintext")
            else:
                self.engine.run("config", "rm", key)

    @contextlib.contextmanager
    def holding(self, values: dict[str, str]) -> Iterator[None]:
        """Hold the stack's lease (infra/kube/lease.py) for the block, and remove a lock a lost run left (its
        holder provably gone) when the engine finds one. A stack never deployed has no cluster to hold it in;
        a cluster that will not hold it is said, and the run goes on as before (a lock it leaves then waits
        for `pulumi cancel`)."""
        stack = self.request.stack
        holder = Holder.this(release.who())
        try:
            settings = Settings.from_values(values)
            namespace, _ = self.deployment(settings)
            held = self.cluster(settings).lease(namespace, stack, holder, settings.watchdog_seconds)
        except (KeyError, SettingsError):
            yield  # never deployed (no outputs yet), or settings the run refuses next
            return
        except Exception as err:
            self.say(f"rollout: no lease on stack {stack} ({short(err)}): should this run be lost, its lock stays")
            yield
            return
        try:
            held.__enter__()
        except LeaseHeldError as err:
            raise Stop(Outcome.BUSY, str(err)) from None
        except Exception as err:
            # A cluster that cannot be read at all is said by the look that comes next, in one line; one that
            # reads but will not hold a lease (no access to leases) is said here.
            if getattr(err, "status", None) == 403:
                self.say(f"rollout: no lease on stack {stack} ({short(err)}): should this run be lost, its lock stays")
            yield
            return
        self.engine.on_busy = self.recover_lock
        self.held, self.holder = held, holder
        try:
            if held.lost is not None:
                self.lost = held.lost
                self.say(f"rollout: the run that held stack {stack} before this one is gone: {held.lost_why}")
                acted = Acted.parse(held.lost.annotations.get(ACTED))
                if acted is not None:
                    self.say(f"rollout: the cluster's watchdog acted for it {acted.line()}")
                    self.report.watchdog_acted = dataclasses.asdict(acted)
                self.after_lost_run()
            yield
        finally:
            self.engine.on_busy = None
            self.held = None
            held.__exit__(None, None, None)

    def after_lost_run(self) -> None:
        """Before anything is previewed: read the Deployment back (the lost run may have changed it), which meets
        first any lock the lost run left (removed by ``recover_lock`` when provably abandoned, with what it was
        creating taken into the state), so that the preview and its plan start from what the cluster runs."""
        try:
            self.refresh_deployment()
        except StackBusyError:
            raise Stop(Outcome.BUSY, f"another update holds stack {self.request.stack}") from None
        except EngineError as err:
            self.say(f"rollout: could not read the Deployment back after the lost run ({err.summary})")

    def recover_lock(self, busy: StackBusyError) -> bool:
        """Remove the stack's lock when every process that took it is provably gone (``lease.gone``): True once
        removed; False when any may be live (a person's `pulumi up`, another run), or the backend names none."""
        owners = busy.owners
        if not owners or self.report.lost is not None:
            return False
        here, now = socket.gethostname(), time.time()
        whys = [gone(owner, self.lost, now, here) for owner in owners]
        if any(why is None for why in whys):
            return False
        stack = self.request.stack
        for owner, why in zip(owners, whys, strict=True):
            taken = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(owner.taken))
            self.say(
                f"rollout: stack {stack} was locked by {owner.user}@{owner.host} (pid {owner.pid}) at {taken}: {why}"
            )
        self.engine.cancel()
        self.say(f"rollout: removed stack {stack}'s lock (`pulumi cancel`); going on")
        adopted = self.engine.adopt_pending_creates()
        if adopted:
            names = ", ".join(urn.rsplit("::", 1)[-1] for urn in adopted)
            self.say(f"rollout: the lost run was creating {names}: taken into the state as the cluster has it")
        self.report.lost = {
            "locks": [
                {
                    "user": o.user,
                    "host": o.host,
                    "pid": o.pid,
                    "taken": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.taken)),
                }
                for o in owners
            ],
            "why": "; ".join(str(w) for w in whys),
            "run": str(self.lost.holder) if self.lost is not None and self.lost.holder is not None else None,
            "adopted": adopted,
        }
        return True

    def engine_failed(self, err: EngineError, what: str, outcome: Outcome = Outcome.FAILED) -> Stop:
        """How a failed engine command ends the run: another update holding the stack, or ``outcome``."""
        if isinstance(err, StackBusyError):
            return Stop(Outcome.BUSY, f"another update holds stack {self.request.stack}")
        ahead = [line for line in str(err).splitlines() if eks_versions.AHEAD in line]
        if ahead:
            # The program refuses any update of a cluster EKS upgraded past the settings (infra/stack.py).
            return Stop(Outcome.CLUSTER_AHEAD, f"{what} refused: {ahead[0].strip().removeprefix('error: ')}")
        return Stop(outcome, f"{what} failed: {err.summary}")
