"""Drive real stacks with pulumi.automation and watch the real cluster with the kubernetes client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi.automation as auto
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "infra")
DEPLOYMENT = "nginx-deployment"
SELECTOR = "app=nginx"


def api_client() -> client.ApiClient:
    return config.new_client_from_config(config_file=os.environ["KUBECONFIG"])


def copy_project(dest: Path) -> Path:
    """A copy of the program, so stack files and state never land in the repository."""
    dest.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


@dataclass
class LocalStack:
    """One stack of the real program on the local cluster, in its own namespace."""

    stack: auto.Stack
    namespace: str
    workdir: Path
    env: dict[str, str]

    def set(self, **values: object) -> None:
        self.stack.set_all_config({f"rolling:{k}": auto.ConfigValue(str(v)) for k, v in values.items()})

    def up(self, **kwargs: Any) -> auto.UpResult:
        return self.stack.up(color="never", **kwargs)

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        return self.stack.preview(color="never", **kwargs)

    def another_workspace(self) -> auto.Stack:
        """The same stack through a second workspace, as a second CLI user would see it."""
        return auto.select_stack(
            self.stack.name, work_dir=str(self.workdir), opts=auto.LocalWorkspaceOptions(env_vars=self.env)
        )

    def deployment(self) -> client.V1Deployment:
        return client.AppsV1Api(api_client()).read_namespaced_deployment(DEPLOYMENT, self.namespace)


@contextmanager
def local_stack(tmp_path: Path, **values: object) -> Iterator[LocalStack]:
    """A new stack with a file backend in ``tmp_path``; destroyed and removed afterwards, pass or fail."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    project = copy_project(tmp_path / "project")
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    }
    stack = auto.create_stack(
        name,
        work_dir=str(project),
        opts=auto.LocalWorkspaceOptions(env_vars=env, secrets_provider="passphrase"),
    )
    handle = LocalStack(stack, name, project, env)
    # minReadySeconds 1, as the local stack file has it, keeps each rollout step short.
    handle.set(target="local", namespace=name, **{"minReadySeconds": 1, **values})
    try:
        yield handle
    finally:
        with contextlib.suppress(auto.CommandError):  # nothing was running
            stack.cancel()
        try:
            stack.destroy(color="never")
        finally:
            stack.workspace.remove_stack(name)


@dataclass
class PodState:
    ready: bool
    revision: str
    terminating: bool


@dataclass
class Sample:
    """The pods of the app at one moment of the watch."""

    t: float
    ready_by_revision: dict[str, int]
    ready: int
    pods: int


@dataclass
class RolloutWatch:
    """Every pod event in a namespace, from a consistent start, as a timeline of samples."""

    namespace: str
    samples: list[Sample] = field(default_factory=list)
    _pods: dict[str, PodState] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None
    _start: float = 0.0

    def __enter__(self) -> RolloutWatch:
        core = client.CoreV1Api(api_client())
        listing = core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
        self._start = time.monotonic()
        for pod in listing.items:
            self._apply("ADDED", pod)
        self._record()
        self._thread = threading.Thread(target=self._run, args=(core, listing.metadata.resource_version), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # let the last events arrive
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._error:
            raise self._error

    def _run(self, core: client.CoreV1Api, resource_version: str) -> None:
        stream = watch.Watch()
        try:
            while not self._stop.is_set():
                for event in stream.stream(
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=resource_version,
                    timeout_seconds=1,
                ):
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    self._apply(event["type"], pod)
                    self._record()
                    if self._stop.is_set():
                        break
        except BaseException as err:  # surfaced in __exit__
            self._error = err

    def _apply(self, kind: str, pod: client.V1Pod) -> None:
        name = pod.metadata.name
        if kind == "DELETED":
            self._pods.pop(name, None)
            return
        conditions = pod.status.conditions or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        self._pods[name] = PodState(
            ready=ready,
            revision=(pod.metadata.labels or {}).get("pod-template-hash", "?"),
            terminating=pod.metadata.deletion_timestamp is not None,
        )

    def _record(self) -> None:
        live = [p for p in self._pods.values() if not p.terminating]
        by_revision: dict[str, int] = {}
        for pod in live:
            by_revision.setdefault(pod.revision, 0)
            if pod.ready:
                by_revision[pod.revision] += 1
        self.samples.append(
            Sample(
                t=round(time.monotonic() - self._start, 3),
                ready_by_revision=by_revision,
                ready=sum(p.ready for p in live),
                pods=len(live),
            )
        )

    def save(self, name: str) -> Path:
        """Write the timeline as JSON for the docs and benchmarks."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.json"
        path.write_text(json.dumps([s.__dict__ for s in self.samples], indent=1))
        return path


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
