"""rollout --stack STACK --tag TAG: preview, confirm, roll out with live progress, roll back on failure."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from infra import images, release
from infra.identity import DEPLOYMENT_TYPE
from infra.rollout import cloudwatch, history, stackfile
from infra.rollout.analysis import Judgement, Sample, State, Thresholds
from infra.rollout.cluster import Cluster, ClusterReader, LiveView, live_cluster, short, unread
from infra.rollout.engine import (
    CAUSE_KEY,
    Engine,
    EngineError,
    EngineMissingError,
    StackBusyError,
    StackEngine,
    interruptible_children,
)
from infra.rollout.exits import Exit
from infra.rollout.gate import Gate, MetricsGate
from infra.rollout.prober import Prober, leaves_by
from infra.rollout.registry import Registry, RegistryError, registry_for
from infra.rollout.report import Report
from infra.rollout.review import CanarySummary, RolloutSummary, describe, unexpected_steps
from infra.rollout.status import Health, Verdict
from infra.settings import NAMESPACE, Settings, SettingsError

TAG_KEY = f"{NAMESPACE}:imageTag"
CANARY_TAG_KEY = f"{NAMESPACE}:canaryTag"
CANARY_REPLICAS_KEY = f"{NAMESPACE}:canaryReplicas"


class IncompleteRolloutError(Exception):
    """The engine's update succeeded, but the rollout did not complete (or cannot) after it."""


class UnconfirmedError(Exception):
    """The engine's update succeeded, but the cluster could not be read after it to confirm the rollout."""


class BreachError(Exception):
    """The analysis found the new version serving errors, or slowly, after its rollout completed (the bake)."""


# Before the update, the analysis's prober must get this many answers from the stack's url within this
# long (it runs while the preview does), or the command stops: an analysis that cannot reach the url
# would judge nothing, or blame the network on the release.
REACH_ANSWERS = 3
REACH_WITHIN_S = 10.0
# How long the prober may run past the rollout's own limit and the bake, at most.
PROBE_MARGIN_S = 60


def summary(err: Exception) -> str:
    """What went wrong, in a line or a few: the engine's parsed diagnostics, or the error's own text."""
    return err.summary if isinstance(err, EngineError) else str(err)


ACTIONS = ("promote", "abort", "history", "undo")
# The options that take a value.
VALUED = frozenset({"--stack", "--tag", "--canary", "--record", "--cwd", "--to", "--from"})
DESCRIPTIONS = {
    "ship": "Ship an image tag to a stack: preview, confirm, roll out, roll back if it fails.",
    "promote": "Roll the rest of a stack's replicas to its canary's tag and remove the canary (--stack S); "
    "or ship the image another stack runs, by digest, to this one (--from A --to B).",
    "abort": "Remove a stack's canary; the Deployment's own pods stay as they are.",
    "history": "A stack's releases, newest first: revision, image, outcome, when, how long, who.",
    "undo": "Ship a stack's previous release again (or revision --to N), through the same safe path.",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """`rollout --stack S --tag T [--canary N [--pause]]`; `rollout promote|abort --stack S` to go on from a
    paused canary; `rollout promote --from A --to B`; `rollout history --stack S`; `rollout undo --stack S`."""
    given = list(sys.argv[1:] if argv is None else argv)
    action = "ship"
    for at, word in enumerate(given):
        # The action's word, wherever it stands (`rollout --stack dev promote` too), but not as an option's value.
        if word in ACTIONS and (at == 0 or given[at - 1] not in VALUED):
            action = given.pop(at)
            break
    shipping = action == "ship"
    parser = argparse.ArgumentParser(
        prog="rollout" if shipping else f"rollout {action}",
        description=DESCRIPTIONS[action],
        epilog=None
        if not shipping
        else "rollout promote|abort --stack S go on from a paused canary; rollout promote --from A --to B, "
        "rollout history --stack S and rollout undo --stack S [--to N] work with releases",
    )
    promoting = action == "promote" and any(g == "--from" or g.startswith("--from=") for g in given)
    if promoting:
        parser.add_argument("--from", dest="source", required=True, help="the stack whose release to promote")
        parser.add_argument("--to", dest="stack", required=True, help="the stack to ship it to")
    else:
        parser.add_argument("--stack", required=True, help="the stack to roll, such as dev or local")
    if shipping:
        parser.add_argument("--tag", required=True, help="the image tag to ship, such as 1.16.1")
        parser.add_argument(
            "--canary",
            type=_canary_pods,
            metavar="N",
            help="first run N pods of the tag beside the old ones and analyse them for canarySeconds",
        )
        parser.add_argument("--pause", action="store_true", help="with --canary: stop once the canary passes")
    if action == "undo":
        parser.add_argument("--to", dest="revision", type=_revision, metavar="N", help="the revision to put back")
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    if action != "history":
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (for CI)")
        parser.add_argument("--no-rollback", action="store_true", help="leave a failed rollout as it failed")
        parser.add_argument(
            "--allow-infra-changes",
            action="store_true",
            help="go on when the preview changes more than the Deployment",
        )
        parser.add_argument(
            "--record",
            metavar="FILE",
            help="write every response the analysis recorded to FILE, one JSON object a line (its evidence)",
        )
    args = parser.parse_args(given)
    args.action = action
    for name, default in (
        ("tag", ""),
        ("canary", None),
        ("pause", False),
        ("source", None),
        ("revision", None),
        ("yes", False),
        ("no_rollback", False),
        ("allow_infra_changes", False),
        ("record", None),
    ):
        if not hasattr(args, name):
            setattr(args, name, default)
    if shipping and args.pause and not args.canary:
        parser.error("--pause stops after a canary: pass --canary N too")
    if promoting and args.source == args.stack:
        parser.error(f"--from and --to name the same stack ({args.stack}): promote between two stacks")
    return args


def _revision(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a revision: a number from 1, as `rollout history` shows")
    return int(text)


def _canary_pods(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 100:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of pods from 1 to 100")
    return count


class RolloutRun:
    """One run of the command. Every path that changes nothing says so."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: TextIO,
        err: TextIO,
        stdin: TextIO,
        *,
        engine: StackEngine | None = None,
        cluster_reader: ClusterReader = live_cluster,
        source_engine: StackEngine | None = None,
        registries: Callable[[str], Registry] = registry_for,
        metrics_runner: Callable[[str | None], cloudwatch.Run] = cloudwatch.aws_cli,
        reach_within_s: float = REACH_WITHIN_S,
    ) -> None:
        self.args = args
        # How long the url may take to answer its first requests before the command stops, nothing changed.
        self.reach_within_s = reach_within_s
        self.out = out
        self.err = err
        self.stdin = stdin
        self.result = Report(stack=args.stack)
        self.verdict: Verdict | None = None
        # The stack's rolling: config as the command found it.
        self.configured: dict[str, str] = {}
        self.engine: StackEngine = engine or Engine(Path(args.cwd).resolve(), args.stack)
        self.cluster_reader = cluster_reader
        self.registries = registries
        # analysisSource cloudwatch: how the AWS CLI is run (in the stack's aws:region), and the metrics
        # found before the update.
        self.metrics_runner = metrics_runner
        self.region: str | None = None
        self.metrics: cloudwatch.Metrics | None = None
        # `promote --from`: the stack whose release is promoted.
        self.source_engine = source_engine or (
            Engine(Path(args.cwd).resolve(), args.source) if getattr(args, "source", None) else None
        )
        # What the release puts in place (beside the stack's config), and why: the release's cause. A tag
        # ships that tag: a digest the config pins (a promoted release) no longer applies.
        self.target_values: dict[str, str] = {"imageTag": args.tag, "imageDigest": ""}
        self.verb, self.note = "ship", ""
        self._outputs: dict[str, Any] | None = None
        self.gate: Gate | None = None
        # What the analysis recorded during a canary that passed (the rollout after it records its own).
        self.canary_samples: list[Sample] = []

    def say(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def finish(self, exit_code: Exit, outcome: str, error: str | None = None) -> Exit:
        self.result.exit = exit_code
        self.result.outcome = outcome
        self.result.error = error
        if error:
            self.say(f"rollout: {error}")
        samples = self.canary_samples + (self.gate.samples() if self.gate is not None else [])
        if self.args.record and samples:
            with open(self.args.record, "w", encoding="utf-8") as record:
                record.writelines(json.dumps(dataclasses.asdict(s)) + "\n" for s in samples)
        return exit_code

    def run(self) -> Exit:
        if self.args.action == "ship":
            try:
                images.check_tag(self.args.tag)
            except images.ImageError as err:
                return self.finish(Exit.USAGE, "refused", f"--tag {err}")
        project = Path(self.args.cwd).resolve()
        if not (project / "Pulumi.yaml").is_file():
            return self.finish(Exit.USAGE, "refused", f"--cwd {project} holds no Pulumi.yaml")
        # What the look before the preview needs is read while the config is: the stack's outputs, and
        # the Kubernetes client (the library takes a good part of a second to import).
        early = threading.Thread(target=self._read_early, daemon=True)
        early.start()
        try:
            with self.result.timed("config"):
                config = self.engine.config()
        except EngineMissingError as err:
            return self.finish(Exit.USAGE, "refused", err.summary)
        except EngineError as err:
            return self.finish(Exit.USAGE, "refused", f"--stack {self.args.stack}: {err.summary}")

        values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
        self.configured = values
        self.region = config.get("aws:region") or None
        with self.result.timed("outputs"):
            early.join()
        if self.args.action == "history":
            return self.history(values)
        stopped = self.choose(project, values)
        if stopped is not None:
            return stopped
        versions = self.versions(values)
        if isinstance(versions, Exit):
            return versions
        return self.ship(project, *versions)

    def choose(self, project: Path, values: dict[str, str]) -> Exit | None:
        """What this run ships, by its action (None: ``target_values`` say it), or how it ends here."""
        if self.args.action == "undo":
            return self.undo_target(values)
        if self.args.source:
            return self.promotion(values)
        if self.args.action == "ship":
            return None
        canary = values.get("canaryTag")
        if not canary:
            return self.finish(
                Exit.USAGE,
                "refused",
                f"stack {self.args.stack} has no canary to {self.args.action} (rolling:canaryTag is not set); "
                f"start one with `rollout --stack {self.args.stack} --tag TAG --canary 1 --pause`. "
                "Nothing was changed",
            )
        if self.args.action == "abort":
            return self.abort(project, values)
        self.args.tag = canary
        self.target_values = {"imageTag": canary, "imageDigest": ""}
        return None

    def releases(self, engine: StackEngine, settings: Settings | None) -> list[history.Release]:
        """A stack's releases from its update history, numbered from its Deployment's revisions when
        ``settings`` (its cluster) can be read; the history alone otherwise (said)."""
        found = history.updates(engine.history())
        revisions: list[history.Revision] = []
        if settings is not None and self.outputs.get("deploymentName"):
            namespace = str(self.outputs.get("namespace") or settings.namespace)
            try:
                revisions = self.cluster(settings).revisions(namespace, str(self.outputs["deploymentName"]))
            except Exception as err:
                self.say(f"rollout: no revision numbers: the cluster could not be read ({short(err)})")
        return history.releases(found, revisions)

    def history(self, values: dict[str, str]) -> Exit:
        """`rollout history`: the stack's releases, newest first (a table; --json: `releases`)."""
        try:
            settings = Settings.from_values(values)
            rows = self.releases(self.engine, settings)
        except SettingsError as err:
            return self.finish(Exit.USAGE, "refused", str(err))
        except EngineError as err:
            return self.finish(Exit.FAILED, "failed", f"the stack's history could not be read: {err.summary}")
        self.result.releases = [r.as_json() for r in rows]
        if not self.args.json:
            print(history.table(rows, datetime.now(UTC)), file=self.out)
        return self.finish(Exit.OK, "listed")

    def undo_target(self, values: dict[str, str]) -> Exit | None:
        """`rollout undo`: the release to put back (its image becomes what this run ships), or how the command
        ends here, with nothing changed."""
        try:
            rows = self.releases(self.engine, Settings.from_values(values))
        except SettingsError as err:
            return self.finish(Exit.USAGE, "refused", str(err))
        except EngineError as err:
            return self.finish(Exit.FAILED, "failed", f"the stack's history could not be read: {err.summary}")
        chosen = history.undo_target(rows, self.args.revision)
        if isinstance(chosen, str):
            return self.finish(Exit.USAGE, "refused", f"stack {self.args.stack}: {chosen}; nothing was changed")
        self.release_values(chosen.image, chosen.tag)
        self.verb = "undo"
        when = f"the release of {chosen.started:%F %T}Z"
        self.note = f"to revision {chosen.revision}" if chosen.revision else f"to {when}"
        return None

    def promotion(self, values: dict[str, str]) -> Exit | None:
        """`rollout promote --from A --to B`: A's last release, if it shipped and has soaked, by digest, in B's
        repository (copied there when B pulls from another); or how the command ends here, nothing changed."""
        source = str(self.args.source)
        assert self.source_engine is not None

        def refused(why: str) -> Exit:
            why = f"not promoting {source} to {self.args.stack}: {why}; nothing was changed"
            return self.finish(Exit.NOT_PROMOTABLE, "refused", why)

        try:
            settings = Settings.from_values(values)
            # The source's update history alone (no config read): its secrets, under another passphrase or
            # key than this stack's, are neither needed nor shown.
            updates = history.updates(self.source_engine.history())
            rows = history.releases(updates)
        except SettingsError as err:
            return self.finish(Exit.USAGE, "refused", str(err))
        except EngineError as err:
            return self.finish(Exit.USAGE, "refused", f"--from {source}: {err.summary}")
        chosen = history.promotable(rows, settings.soak_seconds, datetime.now(UTC))
        if isinstance(chosen, str):
            return refused(f"stack {source}: {chosen}")
        repository, tag, digest = images.parse(chosen.image)
        tag = chosen.tag or tag
        if not tag:
            return refused(f"{chosen.image} was shipped without a tag, which the app's version header would say")
        source_target = updates[-1].target if updates else settings.target
        if source_target != settings.target:
            return refused(f"{source} runs on {source_target} and {self.args.stack} on {settings.target}")
        destination = str(self.outputs.get("repositoryUrl") or settings.image_repository)
        registry = self.registries(settings.target)
        try:
            with self.result.timed("registry"):
                digest = digest or registry.digest(images.reference(repository, tag))
                if digest is None:
                    return refused(f"{images.reference(repository, tag)} is not in its registry any more")
                if destination != repository and registry.digest(f"{destination}@{digest}") is None:
                    self.say(f"rollout: copying {repository}@{digest} to {destination}:{tag}, digest unchanged")
                    registry.copy(f"{repository}@{digest}", images.reference(destination, tag))
                    if registry.digest(f"{destination}@{digest}") != digest:
                        return refused(f"{destination}@{digest} is not there after the copy")
        except RegistryError as err:
            return refused(f"the image could not be put in {destination}, which {self.args.stack} pulls from: {err}")
        self.target_values = {"imageRepository": destination, "imageTag": tag, "imageDigest": digest}
        self.verb, self.note = "promote", f"from {source}"
        self.say(f"rollout: promoting {repository}:{tag} ({digest}) from {source}, where it shipped {chosen.ended}")
        return None

    def release_values(self, image: str, tag: str | None) -> None:
        """Ship ``image`` (shipped before as ``tag``) in this run."""
        repository, named_tag, digest = images.parse(image)
        self.target_values = {
            "imageRepository": repository,
            "imageTag": tag or named_tag or "",
            "imageDigest": digest or "",
        }

    def versions(self, values: dict[str, str]) -> tuple[Settings, Settings] | Exit:
        """The version that runs and the one to ship, from what the cluster runs where it can be read;
        or how the command ends here (bad settings, a cluster that cannot be read, nothing to do)."""
        try:
            new = Settings.from_values({**values, **self.target_values})
            old = Settings.from_values(self.running_values(values))
        except (SettingsError, images.ImageError) as err:
            return self.finish(Exit.USAGE, "refused", str(err))
        live: Health | None = None
        if self.outputs.get("deploymentName"):
            with self.result.timed("look"):
                looked = self.look(new)
            if isinstance(looked, Exit):
                return looked
            live = looked
            if live.image != old.image:
                # What runs is the old version (the config may name a tag never shipped); an image the
                # stack's state does not know was set outside Pulumi and is read back first.
                if self.outputs.get("image") and live.image != self.outputs["image"]:
                    self.drifted(live)
                old = Settings.from_values(self.running_values(values, live.image))
        self.result.old_image, self.result.new_image = old.image, new.image
        if old.image == new.image:
            if live is not None and not live.complete:
                return self.finish(
                    Exit.FAILED,
                    "incomplete",
                    f"{self.args.stack} already names {new.image}, but its rollout is not complete ({live}): "
                    "ship another tag, or run `pulumi up` to wait for this one",
                )
            self.say(f"rollout: {self.args.stack} already runs {old.image}; nothing to do")
            return self.finish(Exit.OK, "unchanged")
        return old, new

    def ship(self, project: Path, old: Settings, new: Settings) -> Exit:
        """Preview, confirm, update; roll back to ``old`` if the rollout of ``new`` fails. A canary of
        ``new`` (``--canary``) runs and passes its analysis first."""
        if self.args.canary:
            stopped = self.canary(project, new)
            if stopped is not None:
                return stopped
        # Promoting a canary removes it in the same update that rolls the rest.
        cause = release.Cause(self.verb, new.image, release.who(), self.note).text()
        config = {**image_config(new, self.configured), **self.canary_removed(), CAUSE_KEY: cause}
        with tempfile.TemporaryDirectory(prefix="rollout-") as scratch, ThreadPoolExecutor(2) as background:
            summary_text = RolloutSummary(self.args.stack, old.image, new.image, new, cause).render()
            ready = self.prepare(project, Path(scratch), background, new, config=config, plan_text=summary_text)
            if isinstance(ready, Exit):
                return ready
            watching, url, plan = ready
            try:
                with ExitStack() as analysing:
                    if url:
                        self.gate = analysing.enter_context(self.analyse(url, new))
                    with self.result.timed("up"):
                        self.up(new, watching.result(), plan, config)
                    if self.gate is not None:
                        with self.result.timed("bake"):
                            self.bake(self.gate, new)
            except StackBusyError as err:
                self.restore_config(config)
                return self.command_failed(err, "up")
            except (EngineError, IncompleteRolloutError, BreachError) as err:
                return self.recover(old, new, self.failure_reason() or summary(err))
            except UnconfirmedError as err:
                return self.finish(Exit.UNCONFIRMED, "unconfirmed", str(err))
        self.say(f"rollout: {self.args.stack} runs {new.image} on all {new.replicas} replicas")
        return self.finish(Exit.OK, "succeeded")

    def prepare(
        self,
        project: Path,
        scratch: Path,
        background: ThreadPoolExecutor,
        new: Settings,
        *,
        config: dict[str, str],
        plan_text: str,
        canary: bool = False,
    ) -> tuple[Future[LiveView | None], str | None, Path] | Exit:
        """Everything before an update: preview ``config`` (nothing written), refuse steps beyond the
        Deployment's image (the canary's own, for ``canary``), make sure the analysis reaches the url,
        show the plan and confirm. The live view being made, the url to analyse, and the saved update
        plan; or how the command ends here, with nothing changed."""
        # The live view's client (the Kubernetes library is slow to import) is made while the preview
        # runs, and the analysis makes sure it reaches the stack's url.
        watching = background.submit(self.watch_rollout, new)
        url = self.analysis_url(new)
        reaching = background.submit(self.reach, url, new) if url else None
        # Preview from a copy of the stack's config: nothing is written yet. The update plan it saves
        # holds the update to what was previewed and confirmed.
        plan = scratch / "plan.json"
        try:
            with self.result.timed("preview"):
                steps = self.engine.preview(self.preview_config(project, scratch, config), plan)
        except EngineError as err:
            return self.command_failed(err, "preview")
        unexpected = unexpected_steps(steps, canary=canary or bool(self.canary_removed()))
        if unexpected and not self.args.allow_infra_changes:
            return self.finish(
                Exit.INFRA_CHANGES,
                "refused",
                "the preview changes more than the Deployment's image; nothing was changed:\n"
                f"{describe(unexpected)}\nreview it with `pulumi preview --diff`, then pass --allow-infra-changes",
            )
        unreached = reaching.result() if reaching is not None else None
        if unreached is not None:
            return self.finish(Exit.NOT_PROBED, "refused", unreached)
        self.say(plan_text)
        if not self.confirmed():
            return self.result.exit
        return watching, url, plan

    def canary(self, project: Path, new: Settings) -> Exit | None:
        """Run ``--canary`` pods of ``new`` beside the old ones and analyse them for canarySeconds: None when
        they pass (the rest rolls next), else how the command ends (removed on a failure, or paused)."""
        replicas = int(self.args.canary)
        config = {CANARY_TAG_KEY: str(new.image_tag), CANARY_REPLICAS_KEY: str(replicas)}
        canary = Settings.from_values(
            {**self.configured, "canaryTag": str(new.image_tag), "canaryReplicas": str(replicas)}
        )
        if not new.analysis or self.analysis_url(new) is None:
            return self.finish(
                Exit.USAGE,
                "refused",
                "a canary is judged by the analysis, which this stack cannot run (rolling:analysis is false, or "
                "the stack has no url yet); ship without --canary. Nothing was changed",
            )
        with tempfile.TemporaryDirectory(prefix="rollout-") as scratch, ThreadPoolExecutor(2) as background:
            seconds = canary_window(canary)
            plan_text = CanarySummary(self.args.stack, canary, seconds).render()
            ready = self.prepare(
                project, Path(scratch), background, new, config=config, plan_text=plan_text, canary=True
            )
            if isinstance(ready, Exit):
                return ready
            watching, url, plan = ready
            assert url is not None
            try:
                with ExitStack() as analysing:
                    self.gate = analysing.enter_context(self.analyse(url, new))
                    with self.result.timed("canary"):
                        self.up(new, watching.result(), plan, config)
                    with self.result.timed("canaryAnalysis"):
                        verdict = self.gate.bake(seconds)
                    self.result.analysis = verdict.as_json()
                    if verdict.breached:
                        raise BreachError(f"the analysis found {verdict.line()}")
            except StackBusyError as err:
                self.restore_config(config)
                return self.command_failed(err, "up")
            except (EngineError, IncompleteRolloutError, BreachError) as err:
                return self.remove_canary(new, self.failure_reason() or summary(err))
            except UnconfirmedError as err:
                return self.finish(Exit.UNCONFIRMED, "unconfirmed", str(err))
        if verdict.state is State.INSUFFICIENT:
            self.say(f"analysis: the canary gave {verdict.line()}; going on: the rollout and its bake are analysed too")
        else:
            self.say(f"analysis: the canary passed: {verdict.line()}")
        self.configured = {**self.configured, "canaryTag": str(new.image_tag), "canaryReplicas": str(replicas)}
        self.canary_samples = self.gate.samples()
        self.gate = None
        if self.args.pause:
            self.say(
                f"rollout: paused with {replicas} canary pod(s) of {new.image}: `rollout promote --stack "
                f"{self.args.stack}` rolls the rest, `rollout abort --stack {self.args.stack}` removes the canary"
            )
            return self.finish(Exit.OK, "paused")
        return None

    def canary_removed(self) -> dict[str, str]:
        """The config that removes the stack's canary, when it has one."""
        return {CANARY_TAG_KEY: ""} if self.configured.get("canaryTag") else {}

    def remove_canary(self, new: Settings, error: str) -> Exit:
        """The canary failed: remove it (the Deployment's own pods were never touched)."""
        known = self.failure_known_at()
        breach = self.breach()
        if breach is not None:
            self.result.analysis = breach.as_json()
        self.say(f"rollout: the canary of {new.image} failed: {error}")
        self.say("rollout: removing the canary; the Deployment's pods were not changed")
        try:
            with self.result.timed("rollback"):
                if self.failure_reason() is not None:
                    self.refresh_deployment()
                self.engine.up({CANARY_TAG_KEY: ""})
        except EngineError as err:
            return self.finish(
                Exit.ROLLBACK_FAILED,
                "rollback failed",
                f"{error}; removing the canary failed too: {summary(err)}; "
                f"run `rollout abort --stack {self.args.stack}`",
            )
        self.result.rolled_back = True
        self.result.durations["failureToRestored"] = time.monotonic() - known
        return self.finish(
            Exit.ABORTED if breach is not None else Exit.ROLLED_BACK, "aborted" if breach else "rolled back", error
        )

    def abort(self, project: Path, values: dict[str, str]) -> Exit:
        """`rollout abort`: remove the stack's canary through the same preview, plan and confirmation."""
        config = {CANARY_TAG_KEY: ""}
        # Removing a canary serves nothing new: there is nothing to analyse.
        settings = Settings.from_values({**values, "analysis": "false"})
        with tempfile.TemporaryDirectory(prefix="rollout-") as scratch, ThreadPoolExecutor(2) as background:
            plan_text = (
                f"Remove the canary of stack {self.args.stack}: {settings.canary_replicas} pod(s) of "
                f"{settings.canary_image}; the Deployment's pods stay as they are"
            )
            ready = self.prepare(
                project, Path(scratch), background, settings, config=config, plan_text=plan_text, canary=True
            )
            if isinstance(ready, Exit):
                return ready
            _, _, plan = ready
            try:
                with self.result.timed("up"):
                    self.engine.up(config, plan)
            except EngineError as err:
                if not isinstance(err, StackBusyError):
                    self.restore_config(config)
                return self.command_failed(err, "up")
        self.say(f"rollout: removed the canary of stack {self.args.stack}; the Deployment's pods were not changed")
        return self.finish(Exit.OK, "canary removed")

    def analysis_url(self, settings: Settings) -> str | None:
        """The url the analysis probes, or None (said) when there is no analysis for this release."""
        if not settings.analysis:
            return None
        url = str(self.outputs.get("url") or "")
        if not url:
            self.say(f"rollout: no analysis: stack {self.args.stack} has no url output yet (its first deploy)")
            return None
        if not settings.image_tag:
            self.say("rollout: no analysis: the release names no tag, which the app's X-App-Version header would say")
            return None
        return url

    def reach(self, url: str, settings: Settings) -> str | None:
        """Whether the prober gets answers from ``url`` here: None when it does, else why not (said whole).
        On the local target the url is a cluster address that only a node on this machine's own links
        serves; one the default route would carry is not probed at all (it would leave the machine).
        With analysisSource cloudwatch: whether the ALB's metrics can be read instead."""
        if uses_metrics(settings):
            return self.reach_metrics(url)
        leaves = leaves_by(url) if settings.target == "local" else None
        if leaves is not None:
            return (
                f"the analysis will not send requests to stack {self.args.stack}'s url {url}: on the local target "
                f"it must be served on this machine's own links, and it would leave by the default route "
                f"({leaves}); nothing was changed. Set rolling:analysis false to ship on readiness alone"
            )
        with Prober(url, REACH_ANSWERS * 2, most_s=self.reach_within_s) as prober:
            answered = prober.wait_answers(REACH_ANSWERS, self.reach_within_s)
            tried = prober.samples()
        if len(answered) >= REACH_ANSWERS:
            return None
        errors = sorted({s.error for s in tried if s.error})
        return (
            f"the analysis cannot reach stack {self.args.stack}'s url {url} from here "
            f"({len(answered)} of {len(tried)} requests answered in {self.reach_within_s:.0f}s"
            f"{': ' + errors[0] if errors else ''}); nothing was changed. Run where the url is reachable, "
            "or set rolling:analysis false to ship on readiness alone"
        )

    def reach_metrics(self, url: str) -> str | None:
        """Find the ALB behind ``url`` and read its target group's last minutes (the baseline), or say why not.
        After a canary this command ran, the baseline read before the canary stands (the old version alone)."""
        if self.metrics is not None:
            return None
        metrics = cloudwatch.Metrics(self.metrics_runner(self.region), url)
        try:
            metrics.check()
        except cloudwatch.MetricsError as err:
            return (
                f"the analysis cannot read the ALB's metrics for stack {self.args.stack}'s url {url}: {err}; nothing "
                "was changed. It needs the AWS CLI and cloudwatch:GetMetricData, elasticloadbalancing:"
                "DescribeLoadBalancers and DescribeTargetGroups (docs/iam/deploy-policy.json), or set "
                "rolling:analysisSource probe where the url is reachable"
            )
        self.metrics = metrics
        before = metrics.before
        self.say(
            f"analysis: reading the ALB's metrics ({metrics.group.target_group if metrics.group else ''}); "
            f"the old version's last {cloudwatch.BASELINE_MINUTES} minutes: {before.requests:.0f} requests, "
            f"{before.error_ratio:.1%} errors"
        )
        return None

    def analyse(self, url: str, settings: Settings) -> Gate:
        """The analysis of ``settings``'s release, from the update's start to the bake's end."""
        most = settings.await_timeout_seconds + settings.bake_seconds + PROBE_MARGIN_S
        thresholds = Thresholds(settings.max_error_ratio, settings.max_p99_ms, settings.min_requests)
        if uses_metrics(settings):
            metrics = self.metrics or cloudwatch.Metrics(self.metrics_runner(self.region), url)
            return MetricsGate(metrics, str(settings.image_tag), thresholds, say=self.say, on_breach=self.breached)
        return Gate(
            Prober(url, settings.analysis_rate, most_s=most),
            str(settings.image_tag),
            thresholds,
            say=self.say,
            on_breach=self.breached,
        )

    def breached(self, reason: str) -> None:
        """The analysis found the new version failing its users during the rollout: stop it as for a
        definitive failure (the engine's update is interrupted, then rolled back)."""
        if self.verdict is not None:
            self.verdict.decide(reason)
        else:
            self.engine.interrupt()

    def bake(self, gate: Gate, settings: Settings) -> None:
        """The new version serves alone: go on judging it for bakeSeconds (BreachError on a breach)."""
        gate.alone()
        verdict = gate.bake(settings.bake_seconds)
        self.result.analysis = verdict.as_json()
        if verdict.breached:
            raise BreachError(f"the analysis found {verdict.line()}")
        self.say(f"analysis: {verdict.line()}")

    def _read_early(self) -> None:
        self.outputs  # noqa: B018 (read once, here)
        with contextlib.suppress(ImportError):  # said where it is used
            import infra.rollout.watch  # noqa: F401 (the live cluster's module, imported ahead of its use)

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

    def running_values(self, values: dict[str, str], running: str = "") -> dict[str, str]:
        """The settings of what runs now: ``running`` when the cluster said it; else with an image named in
        the config, that one; with none (the app keeps what the last deploy shipped), the stack's `image`
        output, or the bootstrap image of a stack never deployed, named explicitly so that a rollback
        restores exactly it."""
        if not running and (values.get("imageTag") or values.get("imageDigest")):
            return values
        running = running or str(self.outputs.get("image") or "") or Settings.from_values(values).image
        repository, tag, digest = images.parse(running)
        named = {"imageRepository": repository, "imageTag": tag or "", "imageDigest": digest or ""}
        return {**{k: v for k, v in values.items() if k not in named}, **{k: v for k, v in named.items() if v}}

    def look(self, settings: Settings) -> Health | Exit:
        """The stack's Deployment as the cluster has it, read before anything is previewed: what runs, not
        what a file says. A cluster that cannot be read, or that has no such Deployment, stops the command
        here, in a line, with nothing changed."""
        namespace = str(self.outputs.get("namespace") or settings.namespace)
        name = str(self.outputs["deploymentName"])
        try:
            cluster = self.cluster(settings)
        except Exception as err:
            return self.finish(
                Exit.UNREADABLE,
                "unreadable",
                f"cannot read the kubeconfig of stack {self.args.stack}'s cluster: {short(err)}; nothing was changed",
            )
        try:
            return cluster.health(namespace, name)
        except Exception as err:
            absent, why = unread(err, f"{namespace}/{name}", cluster.name)
        if absent:
            return self.finish(Exit.DRIFTED, "drifted", f"{why}; nothing was changed")
        return self.finish(Exit.UNREADABLE, "unreadable", f"{why}; nothing was changed")

    def drifted(self, live: Health) -> None:
        """The cluster runs another image than the stack's state says (a `kubectl set image`): read the
        Deployment back into the state, so that the preview and the update start from what runs."""
        self.say(
            f"rollout: the cluster runs {live.image}, but stack {self.args.stack}'s state says "
            f"{self.outputs['image']} (changed outside Pulumi); reading the Deployment back first"
        )
        with self.result.timed("refresh"):
            self.refresh_deployment()

    def preview_config(self, project: Path, scratch: Path, config: dict[str, str]) -> Path:
        """A copy of the stack's config file with ``config`` set, for the preview (`--config` would save it),
        written so that the engine reads each value as the update will (a string, whatever its shape)."""
        document = stackfile.read(project / f"Pulumi.{self.args.stack}.yaml")
        path = scratch / "config.yaml"
        path.write_text(stackfile.dumps(stackfile.with_config(document, config)))
        return path

    def confirmed(self) -> bool:
        if self.args.yes:
            return True
        if not self.stdin.isatty():
            self.finish(
                Exit.NOT_CONFIRMED,
                "not confirmed",
                "no terminal to ask for confirmation on; pass --yes to roll out unattended. Nothing was changed.",
            )
            return False
        self.err.write(f"Roll {self.args.stack} to {self.result.new_image}? [y/N] ")
        self.err.flush()
        if self.stdin.readline().strip().lower() in ("y", "yes"):
            return True
        self.finish(Exit.NOT_CONFIRMED, "not confirmed", "declined; nothing was changed")
        return False

    def up(
        self,
        settings: Settings,
        progress: LiveView | None,
        plan: Path | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        """Write ``config`` (by default, what runs the settings' image) to the stack's config and update, with
        the live view when there is one; then make sure the Deployment's rollout is complete, not only the
        engine's wait (raises IncompleteRolloutError)."""
        with ExitStack() as scope:
            if progress is not None:
                try:
                    scope.enter_context(progress)
                except Exception as err:  # a watcher must never stop the rollout it reports on
                    self.say(f"rollout: no live progress ({short(err)})")
                    progress = None
            self.engine.up(config if config is not None else image_config(settings, self.configured), plan)
            if progress is None:
                # The program's own wait (infra/rollout_wait.py) saw the rollout complete before `up` returned.
                return
            try:
                problem = progress.wait_complete(settings.await_timeout_seconds)
            except Exception as err:
                raise UnconfirmedError(
                    f"the update succeeded, but the cluster could not be read after it to confirm the rollout: "
                    f"{short(err)}"
                ) from None
            if problem is not None:
                raise IncompleteRolloutError(problem)

    def restore_config(self, config: dict[str, str]) -> None:
        """Put the keys of ``config`` back as the command found them (`up --config` wrote them before it failed)."""
        for key in config:
            before = self.configured.get(key.split(":", 1)[1])
            if before:
                self.engine.run("config", "set", key, before, "--plaintext")
            else:
                self.engine.run("config", "rm", key)

    def cluster_kubeconfig(self, settings: Settings) -> str | None:
        """The cluster's kubeconfig: the stack's own output on eks, the configured or ambient one locally."""
        if settings.target == "eks":
            return str(self.outputs["kubeconfig"])
        return settings.local.kubeconfig if settings.local else None

    def watch_rollout(self, settings: Settings) -> LiveView | None:
        """The live view of the rollout to ``settings``, which also watches for a failure that waiting
        cannot mend (no such image, a container that keeps exiting): on one it interrupts the engine's
        update at once, rather than after the progress deadline with capacity reduced all that time."""
        self.verdict = Verdict(settings.image, fargate=settings.target == "eks", act=self.engine.interrupt)
        return self.progress(settings, self.verdict)

    def failure_reason(self) -> str | None:
        return None if self.verdict is None else self.verdict.reason

    def failure_known_at(self) -> float:
        """When the failure being recovered from was known (monotonic): when the watch decided it, or else
        now, as the update returns failing (the program's own wait, or the engine, saw it first)."""
        if self.verdict is not None and self.verdict.at is not None:
            return self.verdict.at
        return time.monotonic()

    def breach(self) -> Judgement | None:
        return None if self.gate is None else self.gate.breach

    def cluster(self, settings: Settings) -> Cluster:
        return self.cluster_reader(self.cluster_kubeconfig(settings))

    def progress(self, settings: Settings, verdict: Verdict | None = None) -> LiveView | None:
        """The live view; a rollout goes on without it when the cluster cannot be reached from here."""
        try:
            return self.cluster(settings).progress(settings.namespace, self.say, verdict)
        except Exception as err:
            self.say(f"rollout: no live progress ({err.__class__.__name__}: {err})")
            return None

    def recover(self, old: Settings, new: Settings, error: str) -> Exit:
        known = self.failure_known_at()
        breach = self.breach()
        if breach is not None:
            self.result.analysis = breach.as_json()
        self.say(f"rollout: {new.image} failed: {error}")
        if self.args.no_rollback:
            self.say("rollout: --no-rollback: leaving it as it failed; the old pods that were serving still serve")
            return self.finish(Exit.FAILED, "failed", error)
        self.say(f"rollout: rolling back to the last good tag {old.image_tag}")
        try:
            with self.result.timed("rollback"):
                if self.failure_reason() is not None:
                    # The update was cut short: the state may still hold the old template while the
                    # cluster runs the new one. Read the Deployment back first, so the rollback sees it.
                    self.refresh_deployment()
                undone = f"{new.image} {'aborted' if breach is not None else 'rolled back'}: {error}"
                cause = release.Cause("rollback", old.image, release.who(), undone).text()
                self.up(old, self.progress(old), config={**image_config(old, self.configured), CAUSE_KEY: cause})
            state = self.health(old)
        except (EngineError, IncompleteRolloutError) as err:
            return self.finish(
                Exit.ROLLBACK_FAILED, "rollback failed", f"{error}; the rollback failed too: {summary(err)}"
            )
        except UnconfirmedError as err:
            return self.finish(Exit.UNCONFIRMED, "rollback unconfirmed", f"{error}; the rollback: {err}")
        self.result.rolled_back = True
        if not state.complete or state.image != old.image:
            return self.finish(
                Exit.ROLLBACK_FAILED,
                "rollback failed",
                f"{error}; after the rollback the Deployment is not healthy: {state}",
            )
        self.result.restored = str(state)
        # From the moment the failure was known to the old version serving on every replica.
        self.result.durations["failureToRestored"] = time.monotonic() - known
        self.say(f"rollout: restored {state}")
        if breach is not None:
            return self.finish(Exit.ABORTED, "aborted", error)
        return self.finish(Exit.ROLLED_BACK, "rolled back", error)

    def refresh_deployment(self) -> None:
        urns = [r["urn"] for r in self.engine.resources() if r.get("type") == DEPLOYMENT_TYPE]
        if urns:
            self.engine.refresh(urns)

    def health(self, settings: Settings) -> Health:
        """The Deployment after an update that succeeded (UnconfirmedError when it cannot be read)."""
        namespace = str(self.outputs.get("namespace") or settings.namespace)
        name = str(self.outputs["deploymentName"])
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

    def command_failed(self, err: EngineError, what: str) -> Exit:
        if isinstance(err, StackBusyError):
            return self.finish(Exit.BUSY, "busy", f"another update holds stack {self.args.stack}; nothing was changed")
        return self.finish(Exit.FAILED, "failed", f"{what} failed: {err.summary}")


def canary_window(settings: Settings) -> int:
    """How long a canary is analysed: canarySeconds, or longer when the prober's share of requests that
    reach the canary (its pods among all: the Service spreads connections evenly) could not bring
    minRequests responses in that time, with half as many again to spare."""
    share = settings.canary_replicas / (settings.canary_replicas + settings.replicas)
    needed = math.ceil(1.5 * settings.min_requests / (settings.analysis_rate * share))
    return max(settings.canary_seconds, needed)


def uses_metrics(settings: Settings) -> bool:
    """Whether the analysis reads the ALB's metrics (analysisSource cloudwatch) rather than probing the url."""
    return settings.eks is not None and settings.eks.analysis_source == "cloudwatch"


def image_config(settings: Settings, configured: dict[str, str]) -> dict[str, str]:
    """The config keys `up` writes to run ``settings.image``: the tag, and the repository and digest where
    they differ from the stack's config (a rollback to an image the config does not name)."""
    config = {TAG_KEY: str(settings.image_tag)} if settings.image_tag else {}
    if settings.image_repository != Settings.from_values(configured).image_repository:
        config[f"{NAMESPACE}:imageRepository"] = settings.image_repository
    if (settings.image_digest or "") != configured.get("imageDigest", ""):
        # A digest pins the image; an image without one must not keep the last one's.
        config[f"{NAMESPACE}:imageDigest"] = settings.image_digest or ""
    return config


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO = sys.stdin,
    runner: Callable[[RolloutRun], Exit] = RolloutRun.run,
) -> int:
    args = parse_args(argv)
    interruptible_children()
    # The Kubernetes client's HTTP library says each retry of a failed connection as a warning; the
    # command says what failed once, in its own words.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    rollout = RolloutRun(args, out, err, stdin)
    try:
        code = runner(rollout)
    except KeyboardInterrupt:
        code = rollout.finish(Exit.FAILED, "interrupted", "interrupted; run `pulumi cancel` if the stack stays locked")
    except Exception as crash:  # a bug or a broken environment: said, with its own exit code and JSON
        traceback.print_exc(file=err)
        code = rollout.finish(
            Exit.CRASHED,
            "crashed",
            f"the command failed: {crash.__class__.__name__}: {crash}; run `pulumi cancel` if the stack stays locked",
        )
    if args.json:
        print(rollout.result.as_json(), file=out)
    return int(code)
