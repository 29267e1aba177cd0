"""`pulumi up` returns when the rollout is complete, and fails within seconds of a definitive failure.

The Kubernetes provider's own wait for a Deployment ends when its Progressing condition says
`NewReplicaSetAvailable`, and right after a template change that condition can still be the previous
rollout's: `up` then returned with old pods still running. It also waits out the whole progress
deadline for a release that can never get ready. So the Deployment carries `pulumi.com/skipAwait`
(the provider applies it and returns: pulumi-kubernetes pkg/await/await.go, newLegacyReadyCondition;
the annotation since pull request #417) and the program waits itself, once the provider has applied
it, with the one definition of "complete" and of "definitive failure" (infra/rollout/status.py) that
the rollout command, the benchmarks and the tests use. A failure ends the update with the cause as the
engine's error; the old pods keep serving (maxUnavailable holds) and the state records what the
cluster was told, so the next `up` with the old tag restores it. It works with any provider build:
the annotation is the official provider's.

Previews never wait, and neither does an `up` that did not apply the Deployment (an infrastructure change,
a `--target` elsewhere, a refresh, nothing to do): it reads the Deployment once and says how it is, as a
warning when it is not complete or not what the stack says, and never fails for it. An infrastructure change
is not held hostage by the app's health. Whether this update applied it is read from the Deployment's
managed fields: the provider's field manager (`pulumi-kubernetes-…`, pkg/provider/provider.go
fieldManagerName) gets a new time whenever it changes a field (ObjectMeta.managedFields, "the timestamp will
also be updated if a field is added, the manager changes any of the owned fields value or removes a
field"), and the provider checkpoints the live object, managed fields included, as the outputs.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pulumi

from infra.identity import DEPLOYMENT
from infra.kube.status import Health, Verdict

if TYPE_CHECKING:
    import pulumi_kubernetes as k8s

    from infra.kube.cluster import Watched

# The annotation that turns the provider's own wait off for the Deployment.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# The provider's Server-Side Apply field manager names start so (pkg/provider/provider.go, fieldManagerName;
# "pulumi-kubernetes" alone in client-side apply mode).
FIELD_MANAGER = "pulumi-kubernetes"
# The managed fields' times and the API server's Date header are whole seconds, read a moment apart: an
# apply this close before the update began counts as the update's (it is waited for, as before).
MARGIN = datetime.timedelta(seconds=2)


def last_applied(managed_fields: Sequence[Any] | None) -> datetime.datetime | None:
    """When the provider last changed the object whose ``managed_fields`` these are (the cluster's clock);
    None when they do not say (an object never read back, a time that does not parse)."""
    times = []
    for entry in managed_fields or []:
        manager, when = _field(entry, "manager"), _field(entry, "time")
        if isinstance(manager, str) and manager.startswith(FIELD_MANAGER) and isinstance(when, str):
            try:
                times.append(datetime.datetime.fromisoformat(when.replace("Z", "+00:00")))
            except ValueError:
                return None
    return max(times) if times else None


def applied_since(last: datetime.datetime | None, started: datetime.datetime) -> bool:
    """Whether an apply at ``last`` was this update's, which began at ``started`` (both the cluster's clock);
    True when ``last`` is not known: wait."""
    return last is None or last >= started - MARGIN


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


class Settle(Protocol):
    """How the program waits for its rollout: ``settle`` below, reading the cluster (the program's default),
    or a recorder under rigs/offline.py's mocks, where there is no cluster."""

    def __call__(
        self,
        namespace: str,
        image: str,
        kubeconfig: str | None,
        *,
        timeout: float,
        fargate: bool,
        say: Callable[[str], None],
        keeps_running: bool = False,
        started: datetime.datetime | None = None,
        last_applied: datetime.datetime | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> str: ...


class RolloutFailed(pulumi.RunError):
    """The rollout did not complete; the engine prints the message alone, as the update's error."""


def wait_for_rollout(
    deployment: k8s.apps.v1.Deployment,
    namespace: pulumi.Input[str],
    image: pulumi.Input[str],
    kubeconfig: pulumi.Input[str] | None,
    *,
    timeout: int,
    fargate: bool,
    settle: Settle,
    keeps_running: bool = False,
) -> pulumi.Output[str] | None:
    """After ``deployment`` is applied, wait for its rollout by ``settle`` (``timeout`` seconds at most); the
    Output fails the update with the cause if it does not complete. None in a preview."""
    if pulumi.runtime.is_dry_run():
        return None
    started = datetime.datetime.now(datetime.UTC)
    loop = asyncio.get_event_loop()

    # The engine's log is written from the program's event loop, not the waiting thread.
    def say(message: str) -> None:
        loop.call_soon_threadsafe(lambda: pulumi.log.info(message, resource=deployment))

    def warn(message: str) -> None:
        loop.call_soon_threadsafe(lambda: pulumi.log.warn(message, resource=deployment))

    async def wait(values: list[Any]) -> str:
        ns, running, config, _, metadata = values
        applied_at = last_applied(_field(metadata, "managed_fields") or _field(metadata, "managedFields"))
        return await asyncio.to_thread(
            lambda: settle(
                ns,
                running,
                config or None,
                timeout=timeout,
                fargate=fargate,
                say=say,
                keeps_running=keeps_running,
                started=started,
                last_applied=applied_at,
                warn=warn,
            )
        )

    # The Deployment's id orders the wait after the provider applied it; its metadata says whether it did.
    # Nothing need hold the Output: the SDK awaits every Output before the program ends, so its failure fails
    # the update.
    return pulumi.Output.all(namespace, image, kubeconfig or "", deployment.id, deployment.metadata).apply(wait)


def settle(
    namespace: str,
    image: str,
    kubeconfig: str | None,
    *,
    timeout: float,
    fargate: bool,
    say: Callable[[str], None],
    keeps_running: bool = False,
    started: datetime.datetime | None = None,
    last_applied: datetime.datetime | None = None,
    warn: Callable[[str], None] | None = None,
    reader: Callable[[str | None], Watched] | None = None,
) -> str:
    """Wait until the app's Deployment in ``namespace`` is complete on ``image``; its summary, or
    RolloutFailed naming why not: a definitive failure, the deadline, an absent Deployment, or a
    cluster that cannot be read. When the update began at ``started`` (this machine's clock) and the
    provider last applied the Deployment at ``last_applied`` (the cluster's), before it: read once, said by
    ``warn``, never a failure. ``reader`` makes the cluster from the kubeconfig (the Kubernetes API)."""
    from infra.kube.cluster import live_cluster, short, unread  # a preview never loads the Kubernetes client

    where = f"{namespace}/{DEPLOYMENT}"
    try:
        cluster = (reader or live_cluster)(kubeconfig)
    except Exception as err:
        raise RolloutFailed(
            f"cannot read the cluster's kubeconfig to wait for Deployment {where}: {short(err)}"
        ) from None
    if (
        started is not None
        and last_applied is not None
        and not applied_since(last_applied, on_cluster(cluster, started))
    ):
        tell = warn or say
        unchanged = f"this update did not change Deployment {where} and does not wait for it"
        try:
            found = read_app(cluster, namespace, image, keeps_running=keeps_running)
        except RolloutFailed as failed:
            tell(f"{unchanged}; {failed}")
            return f"not changed by this update: {failed}"
        if not found.complete:
            tell(f"{unchanged}; its rollout is not complete: {found}")
        return f"not changed by this update: {found}"
    first = read_app(cluster, namespace, image, keeps_running=keeps_running)
    if first.complete:
        return f"complete: {first}"
    verdict = Verdict(image=image, fargate=fargate, act=lambda: None)
    try:
        with cluster.progress(namespace, say, verdict=verdict) as view:
            reason = view.wait_complete(timeout)
        state = cluster.health(namespace, DEPLOYMENT)
    except Exception as err:
        raise RolloutFailed(f"lost sight of the rollout: {unread(err, where, cluster.name)[1]}") from None
    if reason is not None:
        raise RolloutFailed(
            f"the rollout of Deployment {where} to {image} failed: {reason}. The old pods keep serving; set "
            "the previous imageTag and run `pulumi up` to go back (the `rollout` command does so by itself)"
        )
    if state.image != image:
        raise RolloutFailed(f"Deployment {where} was changed to {state.image} during its rollout to {image}")
    return f"complete: {state}"


def on_cluster(cluster: Watched, at: datetime.datetime) -> datetime.datetime:
    """``at`` (this machine's clock) on ``cluster``'s clock: shifted by how far apart the two are now, as the
    API server's Date says (not shifted when it says nothing)."""
    try:
        server = cluster.server_time()
    except Exception:
        server = None
    return at if server is None else at + (server - datetime.datetime.now(datetime.UTC))


def read_app(cluster: Watched, namespace: str, image: str, *, keeps_running: bool) -> Health:
    """The app's Deployment in ``cluster``, running ``image``; RolloutFailed when it cannot be read, is
    absent, or runs another image (changed outside Pulumi, with what puts it right)."""
    from infra.kube.cluster import unread  # a preview never loads the Kubernetes client

    where = f"{namespace}/{DEPLOYMENT}"
    try:
        first = cluster.health(namespace, DEPLOYMENT)
    except Exception as err:
        raise RolloutFailed(unread(err, where, cluster.name)[1]) from None
    if first.image != image:
        # The provider applied the image (the spec says it at once) or, with nothing to apply, left what
        # something else set: drift, which only an update that reads the cluster first puts back.
        if keeps_running:
            # The stack names no image (ignoreChanges on it): a refresh takes what runs, nothing puts the
            # state's image back.
            advice = (
                f"the stack names no image and keeps what runs: `pulumi up --refresh` takes {first.image} as "
                "what runs; set imageTag and run `pulumi up` (or `rollout`) to ship another"
            )
        else:
            advice = f"`pulumi up --refresh` puts {image} back"
        raise RolloutFailed(
            f"Deployment {where} runs {first.image}, but the stack says {image}: changed outside Pulumi (a "
            f"`kubectl set image`?); {advice}"
        )
    return first
