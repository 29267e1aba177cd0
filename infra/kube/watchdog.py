"""The cluster's watchdog over a judged release: what undoing the release takes at each stage, as data (a
``Plan``), and the short-lived Job that carries it out should the run judging the release be lost.

A run of the rollout command holds its stack's Lease (infra/kube/lease.py) and renews it. While it judges a
release, a Job in the app's namespace runs watchdog/main.go, which watches that Lease. As each stage of the
release starts, the run writes on the Lease what undoing that stage takes (the ``PLAN`` annotation):

- a canary by pod share: its Deployment to 0 pods (as a breach does: ``canary.scale_away``);
- a canary by the ALB's weights: its weight to 0 on the Ingress, then, once the controller has had time to
  apply it, its pods away (``weighted.turn_away``);
- the rollout and its bake: the previous image back in the Deployment's template, as `kubectl rollout undo`
  does (``ship.undo_in_cluster``), any canary's pods away, and the release's pods out of the Service one for
  one as the previous version's become ready (``Retire``: sooner than the Deployment, which waits
  minReadySeconds; never fewer ready pods than replicas, since a lost run's release is not known to fail).

When the run stops renewing the Lease for the Lease's duration (``watchdogSeconds``), as the watchdog's own
clock counts, or hands the release over as it ends alive but unsettled (``HANDOVER``), it carries out the
plan the Lease holds, records an Event (reason ``RunLost``) and an annotation (``WATCHING``) on the
Deployment, marks the Lease (``ACTED``) and ends. When the run ends as it should, it
deletes the Lease and the Job: the watchdog ends with it, and nothing of it runs between releases. What it may
do is the Role the stack's program gives its service account (``role_rules``): nothing else.

The plan's steps are the watchdog's whole vocabulary; the Go side reads exactly these fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.identity import CANARY_DEPLOYMENT, CONTAINER, DEPLOYMENT, INGRESS, WATCHDOG

SERVICE_ACCOUNT = WATCHDOG
ROLE = WATCHDOG
# On the Lease: the plan (the run writes it), the watchdog's word that it watches (it writes it once it has
# read the Lease), and what it did once the run was lost. On the Deployment: what it did, for `kubectl describe`.
PLAN = "rolling/mitigation"
WATCHING = "rolling/watchdog"
ACTED = "rolling/watchdog-acted"
# On the Lease: a run that ends alive with its release unsettled (interrupted, crashed, its rollback failed)
# hands the release over: the watchdog carries out the plan at once instead of after the Lease's duration.
HANDOVER = "rolling/handover"
# The Event's reasons (RunLostMitigationFailed when a step failed: the Job then tries again).
REASONS = ("RunLost", "RunLostMitigationFailed")
LABELS = {"app.kubernetes.io/name": SERVICE_ACCOUNT, "app.kubernetes.io/part-of": "rolling"}
# How long the run waits for the watchdog to say it watches before a release's first change: on the local
# node its pod starts in about a second; on Fargate a pod takes about a minute to be scheduled and started.
START_WITHIN_S = {"local": 30.0, "eks": 180.0}
# Between a weighted canary's weight going to 0 and its pods going away: the load balancer controller
# applies the Ingress's change to the ALB within seconds (weighted.MITIGATE_WITHIN_S bounds the run's wait).
WEIGHT_SETTLES_S = 10.0
# How long a retirement (the run's, infra/kube/watch.py, or the watchdog's ``Retire``) waits for the Deployment
# controller to take in the template put back and for the previous version's pods to be ready, at most.
RETIRE_WITHIN_S = 60.0
# The longest a watchdog lives, whatever happens: longer than any run (the deploy workflow's jobs stop at
# 120 minutes), so that a watchdog whose run is stuck but alive still ends by itself.
LIVES_AT_MOST_S = 6 * 3600
# A finished Job (and its pod) is removed by the cluster this long after, should its run not have done it.
KEPT_AFTER_S = 600


# Reviewers' scanners (checkov) read these inline skips on the Job; each gives its reason.
SCANNER_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_38=the watchdog reads and patches the API: its pod needs its service account's token",
    "checkov.io/skip2": "CKV2_K8S_6=the watchdog takes no connection (it only calls the API server); NetworkPolicy "
    "is not enforced on Fargate",
}


@dataclass(frozen=True)
class Scale:
    """Deployment ``deployment`` to ``replicas`` pods (its scale subresource)."""

    deployment: str
    says: str
    replicas: int = 0
    do: str = field(default="scale", init=False)


@dataclass(frozen=True)
class Annotate:
    """``annotations`` on Ingress ``ingress`` (a merge patch)."""

    ingress: str
    annotations: dict[str, str]
    says: str
    do: str = field(default="annotate", init=False)


@dataclass(frozen=True)
class SetImage:
    """``container`` of Deployment ``deployment`` to ``image`` (a strategic merge patch of its template)."""

    deployment: str
    container: str
    image: str
    says: str
    do: str = field(default="image", init=False)


@dataclass(frozen=True)
class Retire:
    """Deployment ``deployment``'s pods of ``image`` out, one for each ready pod of its other ReplicaSets, once
    its template no longer names ``image``; at most ``seconds``, then the Deployment goes on at its pace."""

    deployment: str
    image: str
    says: str
    seconds: float = RETIRE_WITHIN_S
    do: str = field(default="retire", init=False)


@dataclass(frozen=True)
class Wait:
    """``seconds`` before the next step."""

    seconds: float
    says: str
    do: str = field(default="wait", init=False)


Step = Scale | Annotate | SetImage | Retire | Wait
_KINDS: dict[str, type[Step]] = {
    "scale": Scale,
    "annotate": Annotate,
    "image": SetImage,
    "retire": Retire,
    "wait": Wait,
}


@dataclass(frozen=True)
class Plan:
    """What undoing ``release`` takes at ``stage`` ("canary" or "bake"); no steps: nothing to undo."""

    stage: str
    release: str
    steps: tuple[Step, ...] = ()

    def text(self) -> str:
        """The plan as the Lease's annotation holds it (JSON)."""
        return json.dumps(
            {"stage": self.stage, "release": self.release, "steps": [asdict(s) for s in self.steps]},
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str) -> Plan:
        """A plan from the annotation's text (ValueError for text this module did not write)."""
        try:
            data = json.loads(text)
            steps = []
            for raw in data["steps"]:
                kind = _KINDS[raw["do"]]
                steps.append(kind(**{k: v for k, v in raw.items() if k != "do"}))
            return cls(str(data["stage"]), str(data["release"]), tuple(steps))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"not a watchdog plan: {text[:200]!r} ({err})") from None

    def line(self) -> str:
        """What the plan does, in a line."""
        return "; ".join(s.says for s in self.steps if not isinstance(s, Wait)) or "nothing (no change to undo)"


def pods_canary(release: str) -> Plan:
    """A canary by pod share: its Deployment to 0 pods."""
    return Plan("canary", release, (Scale(CANARY_DEPLOYMENT, f"the canary ({CANARY_DEPLOYMENT}) scaled to 0 pods"),))


def weighted_canary(release: str, zero_weight: dict[str, str]) -> Plan:
    """A canary by the ALB's weights: ``zero_weight`` (its weight 0) on the Ingress, then its pods away."""
    return Plan(
        "canary",
        release,
        (
            Annotate(INGRESS, zero_weight, f"the canary's weight set to 0 on Ingress {INGRESS}"),
            Wait(WEIGHT_SETTLES_S, "the ALB given time to apply it"),
            Scale(CANARY_DEPLOYMENT, f"the canary ({CANARY_DEPLOYMENT}) scaled to 0 pods"),
        ),
    )


def in_place(release: str, previous: str) -> Plan:
    """The rollout and its bake: ``previous`` back in the Deployment's template, any canary's pods away, and
    the release's pods out as the previous version's become ready."""
    return Plan(
        "bake",
        release,
        (
            SetImage(DEPLOYMENT, CONTAINER, previous, f"Deployment {DEPLOYMENT}'s template put back to {previous}"),
            Scale(CANARY_DEPLOYMENT, f"the canary ({CANARY_DEPLOYMENT}) scaled to 0 pods"),
            Retire(DEPLOYMENT, release, f"the pods of {release} out of the Service as those of {previous} got ready"),
        ),
    )


def role_rules(lease: str, *, ingress: bool) -> list[dict[str, Any]]:
    """The watchdog's Role: read and annotate its stack's Lease, read and patch the app's two Deployments
    (their template and scale) and, with a weighted canary, the Ingress, list the namespace's ReplicaSets and
    scale them, and create Events. Nothing else: no delete, no other object. RBAC limits by name all but
    create and list, and a ReplicaSet's name (its Deployment's, with its template's hash) is not known before
    the release runs: those two rights hold for the namespace, which holds the app alone."""
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [DEPLOYMENT, CANARY_DEPLOYMENT],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": [DEPLOYMENT, CANARY_DEPLOYMENT],
            "verbs": ["patch"],
        },
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["replicasets/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    if ingress:
        rules.append(
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["ingresses"],
                "resourceNames": [INGRESS],
                "verbs": ["patch"],
            }
        )
    return rules


def job_name(holder: str, since: float) -> str:
    """The Job's name for the run ``holder`` (its identity on the Lease) that took it at ``since``: one per
    run, a DNS-1123 label."""
    return f"{SERVICE_ACCOUNT}-{hashlib.sha256(f'{holder}@{since}'.encode()).hexdigest()[:10]}"


def job(namespace: str, image: str, *, lease: str, holder: str, since: float, stack: str) -> dict[str, Any]:
    """The Job that watches ``holder``'s Lease ``lease``: one pod, not root, no capability, read-only."""
    name = job_name(holder, since)
    labels = {**LABELS, "rolling/stack": lease.removeprefix("rolling-run-")}
    container = {
        "name": "watchdog",
        "image": image,
        "args": [
            f"--namespace={namespace}",
            f"--lease={lease}",
            f"--holder={holder}",
            f"--job={name}",
            f"--deployment={DEPLOYMENT}",
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # Fargate sizes a pod from its requests (0.25 vCPU and 0.5 GB at least).
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"rolling/stack": stack, **SCANNER_SKIPS},
        },
        "spec": {
            # A watchdog that crashes is started again in its pod; one that failed a step tries again.
            "backoffLimit": 3,
            "activeDeadlineSeconds": LIVES_AT_MOST_S,
            "ttlSecondsAfterFinished": KEPT_AFTER_S,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": True,
                    "restartPolicy": "OnFailure",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


@dataclass(frozen=True)
class Acted:
    """What a watchdog did once its run was lost (the Lease's and the Deployment's ``ACTED``/``WATCHING``)."""

    at: str
    run: str
    why: str
    stage: str
    release: str
    did: tuple[str, ...]
    failed: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Acted | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                str(data["at"]),
                str(data.get("run") or ""),
                str(data.get("why") or ""),
                str(data.get("stage") or ""),
                str(data.get("release") or ""),
                tuple(str(d) for d in data.get("did") or ()),
                str(data["failed"]) if data.get("failed") else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def line(self) -> str:
        did = "; ".join(self.did) or "nothing to undo"
        return f"at {self.at}, {self.why}: {self.release or 'the release'} at its {self.stage or 'start'}: {did}" + (
            f"; FAILED: {self.failed}" if self.failed else ""
        )
