"""Drive real stacks with pulumi.automation and watch the real cluster with the kubernetes client."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi.automation as auto
from kubernetes import client

from infra.identity import DEPLOYMENT, SERVICE
from infra.kube import access as kube_access
from infra.kube import watch
from rigs import load, node, offline, timeline
from rigs.project import copy_project
from tests.e2e.images import REPOSITORY

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


def api_client() -> client.ApiClient:
    return kube_access.api_client(os.environ["KUBECONFIG"])


class RolloutWatch(timeline.RolloutWatch):
    """The package's watcher, its timelines saved under tests/artifacts."""

    def save(self, name: str) -> Path:  # type: ignore[override]
        return super().save(ARTIFACTS / f"{name}.json")


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
def local_stack(tmp_path: Path, beside: LocalStack | None = None, **values: object) -> Iterator[LocalStack]:
    """A new stack with a file backend in ``tmp_path`` (or in ``beside``'s project and backend, as a second
    stack of the same project: dev and prod); destroyed and removed afterwards, pass or fail."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    if beside is None:
        project = copy_project(tmp_path / "project")
        backend = tmp_path / "state"
        backend.mkdir()
        env = offline.scratch_backend(backend, "e2e")
    else:
        project, env = beside.workdir, beside.env
    stack = auto.create_stack(
        name,
        work_dir=str(project),
        opts=auto.LocalWorkspaceOptions(env_vars=env, secrets_provider="passphrase"),
    )
    handle = LocalStack(stack, name, project, env)
    # The app image built from app/ in the node's registry. minReadySeconds 1, as the local stack
    # file has it, keeps each rollout step short; small pods, so two tests' rollouts fit the node.
    defaults = {"imageRepository": REPOSITORY, "minReadySeconds": 1, "cpu": "100m", "memory": "64Mi"}
    handle.set(target="local", namespace=name, **{**defaults, **values})
    try:
        yield handle
    finally:
        with contextlib.suppress(auto.CommandError):  # nothing was running
            stack.cancel()
        try:
            stack.destroy(color="never")
        finally:
            stack.workspace.remove_stack(name)


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def rollout_complete(stack: LocalStack, timeout: float = 60) -> float:
    """When the stack's rollout was seen complete, as `kubectl rollout status` judges it (a plain `pulumi up`
    returns once it is: infra/rollout_wait.py)."""
    api = api_client()
    wait_for(lambda: watch.health(api, stack.namespace, DEPLOYMENT).complete, timeout, "the rollout to complete", 0.1)
    return time.time()


def service_url(stack: LocalStack, path: str = "/") -> str:
    """The app's Service, reached from this machine through the node; refuses any address outside its range."""
    ip = client.CoreV1Api(api_client()).read_namespaced_service(SERVICE, stack.namespace).spec.cluster_ip
    return node.service_url(ip, path)


# Traffic in the tests: at least 50 requests a second, as the project promises; every load is bounded
# by LOAD_DURATION_S and stops when its block ends.
LOAD_RATE = 60
LOAD_DURATION_S = 150


def ready_to_serve(stack: LocalStack, version: str = "1.14.2") -> str:
    """The Service's version page, once it answers with ``version``."""
    url = service_url(stack, "/version.txt")
    # kube-proxy programs a Service's endpoints up to a second after its pods are Ready.
    wait_for(lambda: load.fetch_version(url) == version, 15, "the Service to route")
    return url


def traffic(url: str, name: str, *, keepalive: bool) -> load.Load:
    """vegeta at LOAD_RATE against ``url``; its responses go to tests/artifacts/traffic-NAME.jsonl."""
    return load.Load(url, LOAD_RATE, LOAD_DURATION_S, ARTIFACTS / f"traffic-{name}.jsonl", keepalive=keepalive)


def plain_traffic(url: str, name: str, *, keepalive: bool) -> load.PlainLoad:
    """A client that never re-sends a request, at LOAD_RATE against ``url`` (beside vegeta, which does):
    its responses go to tests/artifacts/plain-NAME.jsonl."""
    return load.PlainLoad(url, LOAD_RATE, LOAD_DURATION_S, ARTIFACTS / f"plain-{name}.jsonl", keepalive=keepalive)
