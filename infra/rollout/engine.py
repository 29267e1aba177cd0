"""The `pulumi` CLI for one stack, one process per command, and no more processes than a rollout needs.

The Automation API would run three more for each update (its version check, the stack's outputs twice
and its history) and one to select the stack: about a second of a rollout spent on answers the
command never reads. Here each call is the command a user would type, with `--stack` on it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from infra.kube.lease import LockOwner, lock_owners
from infra.rollout.review import Step
from infra.settings.keys import CHANGE_CAUSE

# The config key of a release's cause (infra/release.py), said as the update's message as well.
CAUSE_KEY = CHANGE_CAUSE.full
# What the engine prints when another update holds the stack: a file backend's lock, Pulumi Cloud's 409.
BUSY_MARKERS = ("the stack is currently locked by", "Another update is currently in progress")


def interruptible_children() -> None:
    """Start child processes with SIGINT's default action, even when this process was started ignoring it.

    A process started ignoring SIGINT (a background job of a non-interactive shell, `nohup`, some CI
    agents) passes that on to everything it starts, and the engine stops each plugin it is done with by
    sending SIGINT and waiting up to 5 seconds before killing it (pulumi sdk/go/common/resource/plugin/
    plugin.go, the plugin's kill: cmdutil.InterruptChildren, then a 5-second wait). A language host that
    ignores SIGINT holds every preview and update those 5 seconds. Python keeps an inherited ignore
    (its own handler is installed only when the parent left SIGINT alone); installing that handler
    makes children start with the default action (a caught signal is reset by exec, an ignored one is
    not). The engine itself reacts to SIGINT either way (it installs its own handler), so a Ctrl-C
    reaches it as before; this process now stops on one too, through its KeyboardInterrupt path.
    Only the main thread can set a handler; elsewhere this does nothing."""
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)


class EngineError(Exception):
    """A `pulumi` command failed. The text holds its error diagnostics and output, for a log; ``summary``
    says what went wrong in a line or a few, for people and for --json (parsed here, once)."""

    def __init__(self, args: Sequence[str], code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        # A `--json` command's output is its JSON document: its error diagnostics say it all.
        said = diagnostics(stdout) or stdout
        super().__init__(f"`pulumi {' '.join(args)}` exited with {code}\n{said}\n{stderr}")
        self.summary = summarize(str(self))


class EngineMissingError(EngineError):
    """There is no `pulumi` to run: nothing was changed."""


class StackBusyError(EngineError):
    """Another update holds the stack's lock: this command changed nothing."""

    @property
    def owners(self) -> list[LockOwner]:
        """Who took each lock, when the backend says (a file or S3 backend); none when it does not."""
        return lock_owners(str(self))


def diagnostics(stdout: str) -> str:
    """The error messages of a `--json` command's output, one per line ("error: ..."), or nothing."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    messages = [str(d.get("message", "")) for d in document.get("diagnostics") or [] if d.get("severity") == "error"]
    return "".join(m if m.endswith("\n") else m + "\n" for m in messages)


# The engine's words when an update would do other than its saved plan (pkg/resource/deploy/step_generator.go and
# plan.go at v3.260.0): "resource URN violates plan: properties changed: ~~spec[{planned}!={now}], ...", where
# each change is the planned and the actual operation, then the top-level property.
_VIOLATION_RE = re.compile(r"resource (\S+) violates plan: (.*)")
_CHANGE_RE = re.compile(r"(?:^|, )[-+~=]{2}([A-Za-z_$][\w$]*)\[")
_IMAGE_RE = re.compile(r"image:\{?([^\s{}\[\]]+)")


def plan_violation(text: str) -> str | None:
    """One or two lines for an update that broke its saved plan, or None when ``text`` tells of none."""
    found = _VIOLATION_RE.search(text)
    if not found:
        return None
    urn, detail = found.groups()
    name = urn.rsplit("::", 1)[-1]
    changes = detail.split("properties changed: ", 1)[-1]
    starts = list(_CHANGE_RE.finditer(changes))
    fields = list(dict.fromkeys(m.group(1) for m in starts))
    what = f"{name}'s {', '.join(fields)}" if fields else name
    line = f"the update would change {what} otherwise than the preview you confirmed, so nothing more was applied"
    # Each property's change is its own `planned!=now`: the image is in spec's (metadata's may come first).
    spans = {
        m.group(1): changes[m.end() : (starts[i + 1].start() if i + 1 < len(starts) else len(changes))]
        for i, m in enumerate(starts)
    }
    planned, _, now = spans.get("spec", detail).partition("!=")
    before, after = _IMAGE_RE.findall(planned)[-1:], _IMAGE_RE.findall(now)[:1]
    if before and after and before != after:
        line += f" (the container image was {before[0]} in the preview, {after[0]} now)"
    return (
        line + "; a config value read differently by the two, or a change to the stack between them: "
        "check the stack's config (quote every value), then run the command again"
    )


# Lines that only say that something failed: kept only when nothing more specific was said.
GENERIC = frozenset({"error: update failed", "error: preview failed"})


def summarize(text: str) -> str:
    """The engine's error diagnostics in ``text``, each with its bullet points; an update held to a plan
    it would break is said in a line or two instead of both resource specs."""
    violation = plan_violation(text)
    if violation:
        return violation
    lines = text.splitlines()
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
    text = text.strip()
    return text.splitlines()[-1] if text else "unknown error"


def preview_steps(stdout: str) -> list[Step]:
    """The steps of a `pulumi preview --json`: what the update would do to each resource."""
    steps = []
    for step in json.loads(stdout).get("steps") or []:
        state = step.get("newState") or step.get("oldState") or {}
        # detailedDiff: the provider's property paths; diffReasons: top-level names only (too coarse to
        # tell an image change from any other change of spec), so a step without the first has None.
        detailed = step.get("detailedDiff")
        changes = tuple(sorted(detailed)) if isinstance(detailed, dict) else None
        steps.append(Step(str(step["op"]), str(state.get("type", "")), str(step["urn"]), changes))
    return steps


class StackEngine(Protocol):
    """What the rollout command asks of the engine, one stack's worth: the seam its tests fill with fakes."""

    def run(self, *args: str) -> str: ...
    def config(self) -> dict[str, str]: ...
    def preview(self, config_file: Path, plan: Path) -> list[Step]: ...
    def up(self, config: dict[str, str], plan: Path | None = None) -> None: ...
    def refresh(self, urns: Sequence[str]) -> None: ...
    def resources(self) -> list[dict[str, Any]]: ...
    def outputs(self) -> dict[str, Any]: ...
    def history(self) -> list[dict[str, Any]]: ...
    def tags(self) -> dict[str, str]: ...
    def set_tag(self, name: str, value: str) -> None: ...
    def remove_tag(self, name: str) -> None: ...
    def interrupt(self) -> None: ...
    def cancel(self) -> None: ...
    def adopt_pending_creates(self) -> list[str]: ...

    # Called with the error when another update holds the stack: True when it removed that lock (its holder
    # provably gone), and the command is run once more.
    on_busy: Callable[[StackBusyError], bool] | None


class Engine:
    """`pulumi` on one stack of the project in ``project``; ``env`` is added to this process's environment."""

    def __init__(self, project: Path, stack: str, env: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.stack = stack
        self.env = dict(env or {})
        self._running: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.on_busy: Callable[[StackBusyError], bool] | None = None

    def run(self, *args: str) -> str:
        """`pulumi ARGS --stack S`: its output; EngineError when it fails. When another update holds the stack
        and ``on_busy`` removes that lock (its holder provably gone), the command runs once more."""
        try:
            return self._run(*args)
        except StackBusyError as busy:
            if self.on_busy is None or args[:1] == ("cancel",) or not self.on_busy(busy):
                raise
        return self._run(*args)

    def cancel(self) -> None:
        """Remove the stack's lock (`pulumi cancel`: on a file or S3 backend, every lock file of the stack)."""
        self._run("cancel", "--yes")

    def _run(self, *args: str) -> str:
        command = ["--non-interactive", *args, "--stack", self.stack]
        pipe = subprocess.PIPE
        env = {**os.environ, **self.env}
        # Started and recorded under the lock: an interrupt that comes while the command starts waits for
        # it and reaches it, rather than finding nothing running and being lost.
        with self._lock:
            try:
                started = subprocess.Popen(
                    ["pulumi", *command], cwd=self.project, env=env, stdout=pipe, stderr=pipe, text=True
                )
            except FileNotFoundError:
                said = (
                    'error: the pulumi CLI is not on PATH: install it, or run `eval "$(make -s env)"` in this checkout'
                )
                raise EngineMissingError(command, 127, "", said) from None
            self._running = started
        with started as process:
            try:
                stdout, stderr = process.communicate()
            except KeyboardInterrupt:
                # The engine got the same Ctrl-C: let it cancel cleanly (stop waiting, record what it
                # applied, release the lock) rather than kill it. A second Ctrl-C stops it at once.
                process.communicate()
                raise
            finally:
                with self._lock:
                    self._running = None
        if process.returncode != 0:
            kind = StackBusyError if any(m in stderr + stdout for m in BUSY_MARKERS) else EngineError
            raise kind(command, process.returncode, stdout, stderr)
        return stdout

    def interrupt(self) -> None:
        """Ctrl-C for the command running now, if any: the engine cancels an update cleanly (the provider
        stops waiting, the state records what was applied, the lock is released) and the command fails."""
        with self._lock:
            if self._running is not None and self._running.poll() is None:
                self._running.send_signal(signal.SIGINT)

    def config(self) -> dict[str, str]:
        """The stack's config, every key with its value (secrets decrypted: they are settings too)."""
        document = json.loads(self.run("config", "--json", "--show-secrets"))
        return {key: str(entry.get("value", "")) for key, entry in document.items()}

    def preview(self, config_file: Path, plan: Path) -> list[Step]:
        """Preview with the config in ``config_file`` (nothing is written); save the update plan to ``plan``."""
        return preview_steps(self.run("preview", "--json", "--config-file", str(config_file), "--save-plan", str(plan)))

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        """Write ``config`` to the stack's config and update; with ``plan``, no step beyond the plan's. A
        release's cause (rolling:changeCause) is the update's message too, in `pulumi stack history`."""
        args = ["up", "--yes", "--skip-preview", "--color", "never"]
        for key, value in config.items():
            args += ["--config", f"{key}={value}"]
        if config.get(CAUSE_KEY):
            args += ["--message", config[CAUSE_KEY]]
        if plan is not None:
            args += ["--plan", str(plan)]
        self.run(*args)

    def refresh(self, urns: Sequence[str]) -> None:
        """Read these resources back from the cluster into the state."""
        targets = [arg for urn in urns for arg in ("--target", urn)]
        self.run("refresh", "--yes", "--skip-preview", "--color", "never", *targets)

    def adopt_pending_creates(self) -> list[str]:
        """Take into the state what a killed update was creating (its pending CREATE operations, which the
        engine keeps and warns of on every later update, and which `pulumi refresh` clears only when asked
        interactively): each Kubernetes object such an operation names goes into the state with its provider
        ID (namespace/name), then is read back from the cluster (`refresh --target`: one the cluster does not
        have leaves the state). The URNs taken in; none when there was no such operation."""
        document = json.loads(self.run("stack", "export"))
        deployment = document.get("deployment") or {}
        pending = list(deployment.get("pending_operations") or [])
        adopted = []
        for op in pending:
            resource = op.get("resource") or {}
            metadata = (resource.get("inputs") or {}).get("metadata") or {}
            name, namespace = metadata.get("name"), metadata.get("namespace")
            if op.get("type") != "creating" or not str(resource.get("type", "")).startswith("kubernetes:") or not name:
                continue
            deployment.setdefault("resources", []).append(
                {**resource, "id": f"{namespace}/{name}" if namespace else name}
            )
            adopted.append(op)
        if not adopted:
            return []
        deployment["pending_operations"] = [op for op in pending if op not in adopted]
        urns = [str(op["resource"]["urn"]) for op in adopted]
        with tempfile.TemporaryDirectory() as folder:
            state = Path(folder) / "state.json"
            state.write_text(json.dumps(document))
            self.run("stack", "import", "--file", str(state))
        self.refresh(urns)
        return urns

    def resources(self) -> list[dict[str, Any]]:
        """The resources in the stack's state."""
        deployment = json.loads(self.run("stack", "export")).get("deployment") or {}
        return list(deployment.get("resources") or [])

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.run("stack", "output", "--json", "--show-secrets")))

    def history(self) -> list[dict[str, Any]]:
        """The stack's updates, newest first, as `pulumi stack history --json` gives them: kind, result,
        start and end, message, environment (git, CI) and the config each ran with (secrets hidden)."""
        return list(json.loads(self.run("stack", "history", "--json")) or [])

    def tags(self) -> dict[str, str]:
        """The stack's tags: metadata kept with the stack in its backend, beside its state (not in its config
        file, nor in any checkout)."""
        return {str(k): str(v) for k, v in (json.loads(self.run("stack", "tag", "ls", "--json")) or {}).items()}

    def set_tag(self, name: str, value: str) -> None:
        self.run("stack", "tag", "set", name, value)

    def remove_tag(self, name: str) -> None:
        self.run("stack", "tag", "rm", name)
