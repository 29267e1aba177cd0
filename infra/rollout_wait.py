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

Previews never wait. An `up` that changes nothing still reads the cluster once: it succeeds only if
the Deployment is there and complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pulumi

from infra.identity import DEPLOYMENT
from infra.kube.status import Verdict

if TYPE_CHECKING:
    from infra.kube.cluster import Watched

# The annotation that turns the provider's own wait off for the Deployment.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


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
    ) -> str: ...


class RolloutFailed(pulumi.RunError):
    """The rollout did not complete; the engine prints the message alone, as the update's error."""


def wait_for_rollout(
    deployment: pulumi.CustomResource,
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
    loop = asyncio.get_event_loop()

    def say(message: str) -> None:
        # The engine's log is written from the program's event loop, not the waiting thread.
        loop.call_soon_threadsafe(lambda: pulumi.log.info(message, resource=deployment))

    async def wait(values: list[Any]) -> str:
        ns, running, config = values
        return await asyncio.to_thread(
            lambda: settle(
                ns, running, config or None, timeout=timeout, fargate=fargate, say=say, keeps_running=keeps_running
            )
        )

    # The Deployment's id orders the wait after the provider applied it. Nothing need hold the Output:
    # the SDK awaits every Output before the program ends, so its failure fails the update.
    return pulumi.Output.all(namespace, image, kubeconfig or "", deployment.id).apply(lambda v: wait(v[:3]))


def settle(
    namespace: str,
    image: str,
    kubeconfig: str | None,
    *,
    timeout: float,
    fargate: bool,
    say: Callable[[str], None],
    keeps_running: bool = False,
    reader: Callable[[str | None], Watched] | None = None,
) -> str:
    """Wait until the app's Deployment in ``namespace`` is complete on ``image``; its summary, or
    RolloutFailed naming why not: a definitive failure, the deadline, an absent Deployment, or a
    cluster that cannot be read. ``reader`` makes the cluster from the kubeconfig (the Kubernetes API)."""
    from infra.kube.cluster import live_cluster, short, unread  # a preview never loads the Kubernetes client

    where = f"{namespace}/{DEPLOYMENT}"
    try:
        cluster = (reader or live_cluster)(kubeconfig)
    except Exception as err:
        raise RolloutFailed(
            f"cannot read the cluster's kubeconfig to wait for Deployment {where}: {short(err)}"
        ) from None
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
