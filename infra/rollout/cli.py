"""rollout --stack STACK --tag TAG: preview, confirm, roll out with live progress, roll back on failure."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from infra import images, kube_access
from infra.rollout import stackfile
from infra.rollout.engine import Engine, EngineError, StackBusyError, plan_violation
from infra.rollout.plan import Exit, RolloutPlan, describe, unexpected_steps
from infra.settings import NAMESPACE, Settings, SettingsError

TAG_KEY = f"{NAMESPACE}:imageTag"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"


class IncompleteRolloutError(Exception):
    """The engine's update succeeded, but the rollout did not complete (or cannot) after it."""


@dataclass
class Result:
    """What happened, for people and for CI (--json)."""

    stack: str
    old_image: str = ""
    new_image: str = ""
    outcome: str = "not started"
    exit: Exit = Exit.FAILED
    rolled_back: bool = False
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    restored: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "stack": self.stack,
                "oldImage": self.old_image,
                "newImage": self.new_image,
                "outcome": self.outcome,
                "exitCode": int(self.exit),
                "rolledBack": self.rolled_back,
                "durations": {k: round(v, 1) for k, v in self.durations.items()},
                "error": self.error,
                "restored": self.restored,
            }
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rollout",
        description="Ship an image tag to a stack: preview, confirm, roll out, roll back if it fails.",
    )
    parser.add_argument("--stack", required=True, help="the stack to roll, such as dev or local")
    parser.add_argument("--tag", required=True, help="the image tag to ship, such as 1.16.1")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (for CI)")
    parser.add_argument("--no-rollback", action="store_true", help="leave a failed rollout as it failed")
    parser.add_argument(
        "--allow-infra-changes",
        action="store_true",
        help="go on when the preview changes more than the Deployment",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    parser.add_argument("--cwd", default=".", help="the Pulumi project folder (default: the current one)")
    return parser.parse_args(argv)


class RolloutRun:
    """One run of the command. Every path that changes nothing says so."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.stdin = stdin
        self.result = Result(stack=args.stack)
        self.verdict: Any = None
        # The stack's rolling: config as the command found it.
        self.configured: dict[str, str] = {}
        self.engine = Engine(Path(args.cwd).resolve(), args.stack)

    def say(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def finish(self, exit_code: Exit, outcome: str, error: str | None = None) -> Exit:
        self.result.exit = exit_code
        self.result.outcome = outcome
        self.result.error = error
        if error:
            self.say(f"rollout: {error}")
        return exit_code

    def run(self) -> Exit:
        try:
            images.check_tag(self.args.tag)
        except images.ImageError as err:
            return self.finish(Exit.USAGE, "refused", f"--tag {err}")
        project = Path(self.args.cwd).resolve()
        if not (project / "Pulumi.yaml").is_file():
            return self.finish(Exit.USAGE, "refused", f"--cwd {project} holds no Pulumi.yaml")
        start = time.monotonic()
        try:
            config = self.engine.config()
        except EngineError as err:
            return self.finish(Exit.USAGE, "refused", f"--stack {self.args.stack}: {last_error(err)}")
        self.result.durations["config"] = time.monotonic() - start

        values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
        self.configured = values
        try:
            old = Settings.from_values(self.running_values(values))
            new = Settings.from_values({**values, "imageTag": self.args.tag})
        except (SettingsError, images.ImageError) as err:
            return self.finish(Exit.USAGE, "refused", str(err))
        self.result.old_image, self.result.new_image = old.image, new.image
        if old.image == new.image:
            self.say(f"rollout: {self.args.stack} already runs {old.image}; nothing to do")
            return self.finish(Exit.OK, "unchanged")

        with tempfile.TemporaryDirectory(prefix="rollout-") as scratch, ThreadPoolExecutor(1) as background:
            # The live view's client (the Kubernetes library is slow to import) is made while the preview runs.
            watching = background.submit(self.watch_rollout, new)
            # Preview with the new tag from a copy of the stack's config: nothing is written yet. The
            # update plan it saves holds the update to what was previewed and confirmed.
            plan = Path(scratch, "plan.json")
            start = time.monotonic()
            try:
                steps = self.engine.preview(self.preview_config(project, Path(scratch)), plan)
            except EngineError as err:
                return self.command_failed(err, "preview")
            self.result.durations["preview"] = time.monotonic() - start
            unexpected = unexpected_steps(steps)
            if unexpected and not self.args.allow_infra_changes:
                return self.finish(
                    Exit.INFRA_CHANGES,
                    "refused",
                    "the preview changes more than the Deployment's image; nothing was changed:\n"
                    f"{describe(unexpected)}\nreview it with `pulumi preview --diff`, then pass --allow-infra-changes",
                )

            self.say(RolloutPlan(self.args.stack, old.image, new.image, new).render())
            if not self.confirmed():
                return self.result.exit

            start = time.monotonic()
            try:
                self.up(new, watching.result(), plan)
            except StackBusyError as err:
                self.result.durations["up"] = time.monotonic() - start
                self.restore_tag()
                return self.command_failed(err, "up")
            except EngineError as err:
                self.result.durations["up"] = time.monotonic() - start
                return self.recover(old, new, self.failure_reason() or last_error(err))
            except IncompleteRolloutError as err:
                self.result.durations["up"] = time.monotonic() - start
                return self.recover(old, new, str(err))
        self.result.durations["up"] = time.monotonic() - start
        self.say(f"rollout: {self.args.stack} runs {new.image} on all {new.replicas} replicas")
        return self.finish(Exit.OK, "succeeded")

    def running_values(self, values: dict[str, str]) -> dict[str, str]:
        """The settings of what runs now. With an image named in the config, that one; with none (the app
        keeps what the last deploy shipped), the stack's `image` output, or the bootstrap image of a stack
        never deployed, named explicitly so that a rollback restores exactly it."""
        if values.get("imageTag") or values.get("imageDigest"):
            return values
        try:
            running = str(self.engine.outputs().get("image") or "")
        except EngineError:
            running = ""
        if not running:
            running = Settings.from_values(values).image
        repository, tag, digest = images.parse(running)
        named = {"imageRepository": repository, "imageTag": tag or "", "imageDigest": digest or ""}
        return {**values, **{k: v for k, v in named.items() if v}}

    def preview_config(self, project: Path, scratch: Path) -> Path:
        """A copy of the stack's config file with the new tag, for the preview (`--config` would save it),
        written so that the engine reads the tag as the update will (a string, whatever its shape)."""
        document = stackfile.read(project / f"Pulumi.{self.args.stack}.yaml")
        path = scratch / "config.yaml"
        path.write_text(stackfile.dumps(stackfile.with_config(document, {TAG_KEY: self.args.tag})))
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

    def up(self, settings: Settings, progress: Any, plan: Path | None = None) -> None:
        """Write the settings' tag to the stack's config and update, with the live view when there is one;
        then make sure the rollout is complete, not only the engine's wait (raises IncompleteRolloutError)."""
        with ExitStack() as scope:
            if progress is not None:
                scope.enter_context(progress)
            self.engine.up(image_config(settings, self.configured), plan)
            if progress is None:
                return  # the cluster cannot be read from here: the engine's word stands
            try:
                problem = progress.wait_complete(settings.await_timeout_seconds)
            except Exception as err:  # a watcher must never break the rollout it reports on
                self.say(f"rollout: could not confirm that the rollout completed ({err.__class__.__name__}: {err})")
                return
            if problem is not None:
                raise IncompleteRolloutError(problem)

    def restore_tag(self) -> None:
        """Put the stack's image config back as it was (`up --config` wrote the new tag before it failed)."""
        if self.configured.get("imageTag"):
            self.engine.run("config", "set", TAG_KEY, self.configured["imageTag"], "--plaintext")
        else:
            self.engine.run("config", "rm", TAG_KEY)

    def cluster_kubeconfig(self, settings: Settings) -> str | None:
        """The cluster's kubeconfig: the stack's own output on eks, the configured or ambient one locally."""
        if settings.target == "eks":
            return str(self.engine.outputs()["kubeconfig"])
        return settings.kubeconfig

    def watch_rollout(self, settings: Settings) -> Any:
        """The live view of the rollout to ``settings``, which also watches for a failure that waiting
        cannot mend (no such image, a container that keeps exiting): on one it ends the update at once,
        rather than after the progress deadline with capacity reduced all that time."""
        self.verdict = watch_verdict(settings)
        return self.progress(settings, self.verdict)

    def failure_reason(self) -> str | None:
        return None if self.verdict is None else self.verdict.reason

    def progress(self, settings: Settings, verdict: Any = None) -> Any:
        """The live view; a rollout goes on without it when the cluster cannot be reached from here."""
        from infra.rollout import watch

        try:
            api = kube_access.api_client(self.cluster_kubeconfig(settings))
            return watch.Progress(api, settings.namespace, self.say, verdict=verdict)
        except Exception as err:
            self.say(f"rollout: no live progress ({err.__class__.__name__}: {err})")
            return None

    def recover(self, old: Settings, new: Settings, error: str) -> Exit:
        self.say(f"rollout: {new.image} failed: {error}")
        if self.args.no_rollback:
            self.say("rollout: --no-rollback: leaving it as it failed; the old pods that were serving still serve")
            return self.finish(Exit.FAILED, "failed", error)
        self.say(f"rollout: rolling back to the last good tag {old.image_tag}")
        start = time.monotonic()
        try:
            if self.failure_reason() is not None:
                # The update was cut short: the state may still hold the old template while the
                # cluster runs the new one. Read the Deployment back first, so the rollback sees it.
                self.refresh_deployment()
            self.up(old, self.progress(old))
        except (EngineError, IncompleteRolloutError) as err:
            self.result.durations["rollback"] = time.monotonic() - start
            return self.finish(
                Exit.ROLLBACK_FAILED, "rollback failed", f"{error}; the rollback failed too: {last_error(err)}"
            )
        self.result.durations["rollback"] = time.monotonic() - start
        self.result.rolled_back = True
        state = self.health(old)
        if state is None or not state.healthy or state.image != old.image:
            return self.finish(
                Exit.ROLLBACK_FAILED,
                "rollback failed",
                f"{error}; after the rollback the Deployment is not healthy: {state}",
            )
        self.result.restored = str(state)
        if self.verdict is not None and self.verdict.at is not None:
            # From the moment the failure was known to the old version serving on every replica.
            self.result.durations["failureToRestored"] = time.monotonic() - self.verdict.at
        self.say(f"rollout: restored {state}")
        return self.finish(Exit.ROLLED_BACK, "rolled back", error)

    def refresh_deployment(self) -> None:
        urns = [r["urn"] for r in self.engine.resources() if r.get("type") == DEPLOYMENT_TYPE]
        if urns:
            self.engine.refresh(urns)

    def health(self, settings: Settings) -> Any:
        from infra.rollout import watch

        name = self.engine.outputs()["deploymentName"]
        return watch.health(kube_access.api_client(self.cluster_kubeconfig(settings)), settings.namespace, name)

    def command_failed(self, err: Exception, what: str) -> Exit:
        if isinstance(err, StackBusyError):
            return self.finish(Exit.BUSY, "busy", f"another update holds stack {self.args.stack}; nothing was changed")
        return self.finish(Exit.FAILED, "failed", f"{what} failed: {last_error(err)}")


def image_config(settings: Settings, configured: dict[str, str]) -> dict[str, str]:
    """The config keys `up` writes to run ``settings.image``: the tag, and the repository and digest where
    they differ from the stack's config (a rollback to an image the config does not name)."""
    config = {TAG_KEY: str(settings.image_tag)}
    if settings.image_repository != Settings.from_values(configured).image_repository:
        config[f"{NAMESPACE}:imageRepository"] = settings.image_repository
    if settings.image_digest and settings.image_digest != configured.get("imageDigest"):
        config[f"{NAMESPACE}:imageDigest"] = settings.image_digest
    return config


def watch_verdict(settings: Settings) -> Any:
    """Watch for a failure of ``settings.image`` that waiting cannot mend; on one, interrupt the engine."""
    from infra.rollout import watch

    return watch.Verdict(settings.image, fargate=settings.target == "eks", act=interrupt_engine)


def interrupt_engine() -> None:
    """Ctrl-C for the `pulumi` this process runs: the engine cancels the update cleanly (the provider stops
    waiting, the state records what was applied, the lock is released) and the command fails."""
    found = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-x", "pulumi"], capture_output=True, text=True, check=False
    )
    for pid in found.stdout.split():
        os.kill(int(pid), signal.SIGINT)


GENERIC = frozenset({"error: update failed", "error: preview failed"})


def last_error(err: Exception) -> str:
    """The engine's error diagnostics from a failed command, each with its bullet points; an update held
    to a plan it would break is said in a line or two instead of both resource specs."""
    violation = plan_violation(str(err))
    if violation:
        return violation
    lines = str(err).splitlines()
    blocks: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip().startswith("error:"):
            continue
        block = [line.strip()]
        for following in lines[i + 1 :]:
            if not following.strip().startswith(("* ", "- ")):
                break
            block.append(following.strip())
        blocks.append(" ".join(block))
    unique = list(dict.fromkeys(blocks))
    specific = [b for b in unique if b not in GENERIC] or unique
    if specific:
        return "; ".join(specific)
    text = str(err).strip()
    return text.splitlines()[-1] if text else "unknown error"


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO = sys.stdin,
    runner: Callable[[RolloutRun], Exit] = RolloutRun.run,
) -> int:
    args = parse_args(argv)
    rollout = RolloutRun(args, out, err, stdin)
    try:
        code = runner(rollout)
    except KeyboardInterrupt:
        code = rollout.finish(Exit.FAILED, "interrupted", "interrupted; run `pulumi cancel` if the stack stays locked")
    if args.json:
        print(rollout.result.as_json(), file=out)
    return int(code)
