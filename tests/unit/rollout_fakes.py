"""The rollout command's world, faked: a stack's engine, its cluster and live view, its registry, and the
analysis's evidence on a fast clock. The command's tests pass them into a Session; the real ones are tested
in test_rollout_engine.py, test_kube_status.py, test_kube_watch.py and test_rollout_analysis.py."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import yaml

from infra.identity import CANARY_DEPLOYMENT, CANARY_SERVICE, DEPLOYMENT, DEPLOYMENT_TYPE, INGRESS_TYPE
from infra.images import CONTAINER_IMAGE_PATH as IMAGE
from infra.kube import watchdog
from infra.kube.lease import Holder, LeaseRecord
from infra.kube.revisions import Revision
from infra.kube.status import Health, Verdict
from infra.rollout.analysis import Judgement, Sample, Tally, Thresholds, judge_tally
from infra.rollout.command.judging import Judging
from infra.rollout.command.request import parse
from infra.rollout.command.run import execute
from infra.rollout.command.session import Session
from infra.rollout.engine import EngineError
from infra.rollout.exits import Exit
from infra.rollout.review import WEIGHT_PATHS, Step
from infra.weights import ACTION_ANNOTATION

ROOT = Path(__file__).resolve().parents[2]
OLD_IMAGE = "nginxinc/nginx-unprivileged:1.14.2"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeEngine:
    """A stack at ``tag``: records config writes, ups, refreshes and interrupts; fails the ups it is told to."""

    def __init__(self, failing: frozenset[str] | set[str] = frozenset(), tag: str = "1.14.2", **config: str) -> None:
        self.tag = tag
        self.canary: str | None = None
        self.failing = failing
        self.extra = config
        self.ups: list[str] = []
        self.up_configs: list[dict[str, str]] = []
        self.previewed: list[tuple[str, Path]] = []
        self.plans: list[Path | None] = []
        self.commands: list[tuple[str, ...]] = []
        self.refreshed: list[list[str]] = []
        self.interrupts = 0
        self.preview_texts: list[str] = []
        # The stack's tags, kept in the backend; and what the engine was asked to do, in order.
        self.stack_tags: dict[str, str] = {}
        self.steps: list[str] = []
        self.on_busy: Any = None
        # A lock another update left on the stack, met by the next up (StackBusyError).
        self.locked: Any = None

    def run(self, *args: str) -> str:
        self.commands.append(args)
        return ""

    def cancel(self) -> None:
        self.commands.append(("cancel", "--yes"))

    def adopt_pending_creates(self) -> list[str]:
        self.commands.append(("adopt pending creates",))
        return []

    def config(self) -> dict[str, str]:
        return {
            "rolling:target": "local",
            "rolling:imageTag": self.tag,
            **({"rolling:canaryTag": self.canary} if self.canary else {}),
            **{f"rolling:{k}": v for k, v in self.extra.items()},
        }

    def preview(self, config_file: Path, plan: Path) -> list[Step]:
        text = config_file.read_text()
        self.preview_texts.append(text)
        config = cast(dict[str, Any], yaml.safe_load(text))["config"]
        previewed = config.get("rolling:imageTag", "")
        self.previewed.append((previewed, plan))
        plan.write_text("{}")
        steps = []
        if previewed != self.tag:
            urn = f"urn:pulumi:dev::rolling::x${DEPLOYMENT_TYPE}::{DEPLOYMENT}"
            steps.append(Step("update", DEPLOYMENT_TYPE, urn, (IMAGE,)))
        canary = config.get("rolling:canaryTag") or None
        if canary != self.canary:
            op = "delete" if canary is None else "create" if self.canary is None else "update"
            urn = f"urn:pulumi:dev::rolling::x${DEPLOYMENT_TYPE}::{CANARY_DEPLOYMENT}"
            steps.append(Step(op, DEPLOYMENT_TYPE, urn, (IMAGE,) if op == "update" else None))
        return steps

    def _meet_lock(self) -> None:
        """Another update's lock, as Engine.run meets it in a command that locks: removed only when on_busy
        says its holder is gone."""
        if self.locked is not None:
            busy = self.locked
            if self.on_busy is None or not self.on_busy(busy):
                raise busy
            self.locked = None

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        assert plan is None or plan.is_file(), "the plan is there while the update runs"
        self._meet_lock()
        self.steps.append("up")
        self.plans.append(plan)
        self.up_configs.append(config)
        if "rolling:canaryTag" in config:
            self.canary = config["rolling:canaryTag"] or None
        if "rolling:imageTag" in config:
            self.tag = config["rolling:imageTag"]
            self.ups.append(self.tag)
        else:
            self.ups.append(f"canary:{self.canary or '-'}")
        if self.tag in self.failing or (self.canary is not None and self.canary in self.failing):
            raise EngineError(["up"], 255, "", f"error: rollout of {self.tag} failed")

    def refresh(self, urns: Any) -> None:
        self._meet_lock()
        self.steps.append("refresh")
        self.refreshed.append(list(urns))

    def resources(self) -> list[dict[str, Any]]:
        return [{"type": DEPLOYMENT_TYPE, "urn": f"urn::{DEPLOYMENT}"}]

    def history(self) -> list[dict[str, Any]]:
        return []

    @property
    def image(self) -> str:
        return f"nginxinc/nginx-unprivileged:{self.tag}"

    def outputs(self) -> dict[str, Any]:
        return {"deploymentName": DEPLOYMENT, "image": self.image}

    def interrupt(self) -> None:
        self.interrupts += 1

    def tags(self) -> dict[str, str]:
        return dict(self.stack_tags)

    def set_tag(self, name: str, value: str) -> None:
        self.steps.append(f"tag {name}")
        self.stack_tags[name] = value

    def remove_tag(self, name: str) -> None:
        self.steps.append(f"untag {name}")
        self.stack_tags.pop(name, None)


class ServedEngine(FakeEngine):
    """A stack with a url (so its releases are analysed), with quick analysis settings."""

    URL = "http://127.0.0.1:9/"

    def __init__(self, failing: frozenset[str] | set[str] = frozenset(), **analysis: str) -> None:
        quick = {"bakeSeconds": "1", "canarySeconds": "2", "minRequests": "10", "analysisRate": "40"}
        super().__init__(failing, **{**quick, **analysis})

    def outputs(self) -> dict[str, Any]:
        return {**super().outputs(), "url": self.URL}


# The watchdog's image an eks stack names (pinned by digest, as eks requires).
WATCHDOG_IMAGE = "registry.example/rolling-watchdog@sha256:" + "b" * 64


class AlbEngine(ServedEngine):
    """An eks stack whose canary gets its share by the ALB's weights (canaryTraffic weights): the weight its
    config declares, and the one the ALB applies (``applied``), which follows each update unless ``stuck``
    (the load balancer controller is down); the cluster's Ingress annotation sets it too (a mitigation)."""

    def __init__(self, failing: frozenset[str] | set[str] = frozenset(), *, stuck: bool = False, **config: str) -> None:
        super().__init__(failing, target="eks", canarySteps="5,25", **{"watchdogImage": WATCHDOG_IMAGE, **config})
        self.weight = 0
        self.applied = 0
        self.stuck = stuck
        self.weights: list[int] = []

    def config(self) -> dict[str, str]:
        return {**super().config(), **({"rolling:canaryWeight": str(self.weight)} if self.weight else {})}

    def outputs(self) -> dict[str, Any]:
        return {**super().outputs(), "kubeconfig": "{}", "namespace": "rolling"}

    def preview(self, config_file: Path, plan: Path) -> list[Step]:
        steps = super().preview(config_file, plan)
        config = cast(dict[str, Any], yaml.safe_load(config_file.read_text()))["config"]
        if int(config.get("rolling:canaryWeight") or 0) != self.weight:
            urn = f"urn:pulumi:dev::rolling::x${INGRESS_TYPE}::nginx-ingress"
            steps.append(Step("update", INGRESS_TYPE, urn, tuple(WEIGHT_PATHS)))
        return steps

    def up(self, config: dict[str, str], plan: Path | None = None) -> None:
        if "rolling:canaryWeight" in config:
            self.weight = int(config["rolling:canaryWeight"] or 0)
            self.weights.append(self.weight)
            if not self.stuck:
                self.applied = self.weight
        super().up(config, plan)


class FakeAlb:
    """The AWS CLI's answers about ``engine``'s ALB: its listener forwards to the app's target group and the
    canary's at the weight the ALB applied."""

    APP, CANARY = "arn:aws:elasticloadbalancing:tg/app", "arn:aws:elasticloadbalancing:tg/canary"

    def __init__(self, engine: AlbEngine) -> None:
        self.engine = engine
        self.reads = 0

    def __call__(self, args: Any) -> Any:
        operation = list(args[:2])
        if operation == ["elbv2", "describe-load-balancers"]:
            return {"LoadBalancers": [{"DNSName": "127.0.0.1", "LoadBalancerArn": "arn:lb"}]}
        if operation == ["elbv2", "describe-target-groups"]:
            return {
                "TargetGroups": [
                    {"TargetGroupArn": self.APP, "TargetGroupName": "k8s-rolling-nginx-0123456789"},
                    {"TargetGroupArn": self.CANARY, "TargetGroupName": "k8s-rolling-nginxcan-9876543210"},
                ]
            }
        if operation == ["elbv2", "describe-listeners"]:
            return {"Listeners": [{"ListenerArn": "arn:listener/80", "Port": 80}]}
        if operation == ["elbv2", "describe-rules"]:
            self.reads += 1
            weight = self.engine.applied
            groups = [
                {"TargetGroupArn": self.APP, "Weight": 100 - weight},
                {"TargetGroupArn": self.CANARY, "Weight": weight},
            ]
            forward = {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}
            return {"Rules": [{"IsDefault": True, "Actions": [forward]}]}
        raise AssertionError(args)


class FakeView:
    """A live view whose rollout completes, or not (``problem``), once the engine's update returns; with
    ``finding``, the watch finds a failure waiting cannot mend as it starts (twice: decided once)."""

    def __init__(self, problem: str | None = None, verdict: Verdict | None = None, finding: str | None = None):
        self.problem, self.verdict, self.finding = problem, verdict, finding
        self.waited: list[float] = []

    def __enter__(self) -> FakeView:
        if self.finding and self.verdict is not None:
            self.verdict.decide(self.finding)
            self.verdict.decide(self.finding + " (again)")
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_complete(self, timeout: float) -> str | None:
        self.waited.append(timeout)
        if isinstance(self.problem, Exception):
            raise self.problem
        return self.problem


class FakeHeld:
    """A run's lease on a fake cluster: ``lost``, the lease of a run before it that was gone; its annotations
    are the cluster's (``FakeCluster.lease_notes``), where the fake watchdog says it watches."""

    def __init__(self, lost: LeaseRecord | None, notes: dict[str, str], written: list[tuple[str, str | None]]) -> None:
        self.lost = lost
        self.lost_why = None if lost is None else f"the run that held it ({lost.holder}) stopped renewing its lease"
        self.since = 1000.0
        self.overtaken: str | None = None
        self.notes, self.written = notes, written
        self.kept = False

    def annotate(self, key: str, value: str | None) -> None:
        self.written.append((key, value))
        if value is None:
            self.notes.pop(key, None)
        else:
            self.notes[key] = value

    def annotations(self) -> dict[str, str]:
        return dict(self.notes)

    def keep(self) -> None:
        self.kept = True

    def __enter__(self) -> FakeHeld:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeCluster:
    """A cluster whose Deployment is ``state``, or runs what ``engine`` last shipped on 3 replicas, complete;
    each live view waits as ``problems`` say, in turn (an exception: the cluster is lost), and the first
    finds ``finding``; ``error`` is what reading the Deployment raises."""

    name = "https://127.0.0.1:6443"

    def __init__(
        self,
        state: Health | None = None,
        problems: list[Any] | None = None,
        *,
        engine: Any = None,
        error: Exception | None = None,
        finding: str | None = None,
    ) -> None:
        self.state, self.engine, self.error, self.finding = state, engine, error, finding
        self.problems = list(problems or [])
        self.views: list[FakeView] = []
        self.kubeconfigs: list[str | None] = []
        self.revision_list: list[Revision] = []
        # What the command changed in the cluster itself (its mitigation of a failing release).
        self.changed: list[tuple[str, str, str]] = []
        # The stack's lease: who held it before a run takes it (gone), and the runs that held it.
        self.lost: LeaseRecord | None = None
        self.held: list[str] = []
        # The stack's lease as `rollout status` reads it.
        self.current: LeaseRecord | None = None
        # The lease's annotations, and what the run wrote there in turn (the watchdog's plans).
        self.lease_notes: dict[str, str] = {}
        self.lease_written: list[tuple[str, str | None]] = []
        self.leases: list[FakeHeld] = []
        # The watchdog's Jobs: started (their manifests), removed (names); whether a started one says it
        # watches (else its problem is ``job_trouble``).
        self.jobs: list[dict[str, Any]] = []
        self.jobs_removed: list[str] = []
        self.watchdog_starts = True
        self.job_trouble: str | None = None
        self.held_leases: list[FakeHeld] = []
        # The app's ready pods by zone, as `rollout status` reads them; an exception: they cannot be read.
        self.pod_zones: dict[str, int] | Exception = {"ap-northeast-2a": 2, "ap-northeast-2c": 1}

    def read(self, kubeconfig: str | None) -> FakeCluster:
        self.kubeconfigs.append(kubeconfig)
        return self

    def zones(self, namespace: str) -> dict[str, int]:
        if isinstance(self.pod_zones, Exception):
            raise self.pod_zones
        return dict(self.pod_zones)

    def health(self, namespace: str, name: str) -> Health:
        assert name == DEPLOYMENT
        if self.error is not None:
            raise self.error
        if self.state is not None:
            return self.state
        image = self.engine.image if self.engine is not None else OLD_IMAGE
        return Health(image, 3, 3, 3, 3, True, 3)

    def revisions(self, namespace: str, name: str) -> list[Revision]:
        assert name == DEPLOYMENT
        return list(self.revision_list)

    def lease_of(self, namespace: str, stack: str) -> LeaseRecord | None:
        return self.current

    def lease(self, namespace: str, stack: str, holder: Holder, seconds: int = 20) -> FakeHeld:
        self.held.append(f"{namespace}/{stack}: {holder}")
        held = FakeHeld(self.lost, self.lease_notes, self.lease_written)
        self.leases.append(held)
        self.held_leases.append(held)
        return held

    def start_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.jobs.append(manifest)
        if self.watchdog_starts:
            self.lease_notes[watchdog.WATCHING] = json.dumps({"job": manifest["metadata"]["name"]})

    def job_problem(self, namespace: str, name: str) -> str | None:
        return self.job_trouble

    def delete_job(self, namespace: str, name: str) -> None:
        self.jobs_removed.append(name)

    def plans(self) -> list[str]:
        """The stages the watchdog was told about, in turn ("-" when the plan was cleared)."""
        return [watchdog.Plan.parse(v).stage if v else "-" for k, v in self.lease_written if k == watchdog.PLAN]

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.changed.append(("scale", name, str(replicas)))

    def set_image(self, namespace: str, name: str, container: str, image: str) -> None:
        self.changed.append(("set image", name, f"{container}={image}"))

    def retire(self, namespace: str, name: str, image: str) -> bool:
        self.changed.append(("retire", name, image))
        return True

    def annotate_ingress(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.changed.extend(("annotate ingress", name, f"{key}={value}") for key, value in annotations.items())
        action = annotations.get(ACTION_ANNOTATION)
        if isinstance(self.engine, AlbEngine) and action and not self.engine.stuck:
            # The controller applies the Ingress's weights to the ALB.
            groups = json.loads(action)["forwardConfig"]["targetGroups"]
            self.engine.applied = next(g["weight"] for g in groups if g["serviceName"] == CANARY_SERVICE)

    def server_time(self) -> None:
        return None

    def logs(self, namespace: str) -> Any:
        raise AssertionError("the command's tests give the analysis its evidence (AppEvidence)")

    def progress(self, namespace: str, say: Any, verdict: Verdict | None = None) -> FakeView:
        finding, self.finding = self.finding, None
        self.views.append(FakeView(self.problems.pop(0) if self.problems else None, verdict, finding))
        return self.views[-1]


class FakeRegistry:
    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = dict(digests)
        self.copies: list[tuple[str, str]] = []

    def revision(self, reference: str) -> str | None:
        raise AssertionError("not asked in a promotion")

    def push(self, reference: str, version: str, revision: str) -> None:
        raise AssertionError("a promotion builds nothing")

    def digest(self, reference: str) -> str | None:
        return self.digests.get(reference)

    def copy(self, source: str, destination: str) -> None:
        self.copies.append((source, destination))
        digest = self.digests[source]
        self.digests[destination] = digest
        self.digests[f"{destination.rsplit(':', 1)[0]}@{digest}"] = digest


class FastClock:
    """Monotonic time running ``factor`` times faster than the machine's: a 60 s bake takes 60/factor s."""

    def __init__(self, factor: float = 50.0) -> None:
        self.factor = factor

    def now(self) -> float:
        return time.monotonic() * self.factor

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds / self.factor)


class AppEvidence:
    """The stack's app as users would meet it, ``rate`` requests a second on ``clock``: each answered after
    ``latency_s`` by the version ``engine`` runs (its ``tag``), one in four by its canary when it has one,
    with ``statuses`` by version (200 otherwise); judged by the real ``judge``. ``reachable`` False: no answer
    before the update."""

    every_s = 0.5
    settle_s = 0.0

    def __init__(
        self,
        engine: Any,
        clock: FastClock,
        statuses: dict[str, int],
        *,
        rate: float = 40.0,
        reachable: bool = True,
        latency_s: float = 0.002,
    ) -> None:
        self.engine, self.clock, self.statuses, self.rate, self.reachable = engine, clock, statuses, rate, reachable
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._sent = 0
        self._since = 0.0
        self._alone: float | None = None
        # Judged as the command's Probe judges: running counts, fed what came since the last look.
        self._tally: Tally | None = None
        self._fed = 0

    def unreachable(self) -> str | None:
        return None if self.reachable else "0 of 6 requests answered in 10s: [Errno 111] Connection refused"

    def __enter__(self) -> AppEvidence:
        self._samples, self._sent, self._since, self._alone = [], 0, self.clock.now(), None
        self._tally, self._fed = None, 0
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def alone(self) -> None:
        self._alone = self.clock.now()

    def _record(self) -> list[Sample]:
        with self._lock:
            due = int((self.clock.now() - self._since) * self.rate)
            while self._sent < due:
                self._sent += 1
                canary = self.engine.canary
                # By the ALB's weight when the canary has one (canaryTraffic weights), else one in four.
                share = getattr(self.engine, "applied", None)
                to_canary = self._sent % 100 < share if share is not None else self._sent % 4 == 0
                version = canary if canary and to_canary else self.engine.tag
                status = self.statuses.get(version, 200)
                self._samples.append(Sample(self._since + self._sent / self.rate, status, self.latency_s, version))
            return list(self._samples)

    def judgement(self, version: str, thresholds: Thresholds, *, final: bool = True) -> Judgement:
        recorded = self._record()
        with self._lock:
            if self._tally is None or (self._tally.version, self._tally.thresholds) != (version, thresholds):
                self._tally, self._fed = Tally(version, thresholds), 0
            self._tally.extend(recorded[self._fed :])
            self._fed = len(recorded)
            return judge_tally(self._tally, final=final)

    def samples(self) -> list[Sample]:
        return self._record()


def session(
    argv: list[str],
    *,
    engine: Any = None,
    cluster: FakeCluster | None = None,
    stdin: io.StringIO | None = None,
    **services: Any,
) -> Session:
    """A Session of ``argv`` (in this project's folder) on ``engine`` and ``cluster``."""
    engine = engine or FakeEngine()
    cluster = cluster or FakeCluster(engine=engine)
    if cluster.engine is None and cluster.state is None:
        cluster.engine = engine
    request = parse([*argv, "--cwd", str(ROOT)])
    out, err = io.StringIO(), io.StringIO()
    return Session(request, out, err, stdin or io.StringIO(), engine=engine, cluster_reader=cluster.read, **services)


def said(s: Session) -> str:
    return cast(io.StringIO, s.err).getvalue()


def shipped(
    *extra: str,
    tag: str = "1.16.1",
    engine: Any = None,
    cluster: FakeCluster | None = None,
    statuses: dict[str, int] | None = None,
    reachable: bool = True,
) -> tuple[Exit, Session]:
    """`rollout --stack dev --tag TAG --yes EXTRA` run to its end, its app answering as ``statuses`` say (the
    ALB's answers from FakeAlb for an AlbEngine)."""
    services: dict[str, Any] = (
        {"metrics_runner": lambda region: FakeAlb(engine)} if isinstance(engine, AlbEngine) else {}
    )
    s = session(["--stack", "dev", "--tag", tag, "--yes", *extra], engine=engine, cluster=cluster, **services)
    clock = FastClock()
    # A weighted canary's first share is 5 %: at 40 answers a second it would take a minute of the fake clock
    # to bring the ~112 answers that clear it; its users are taken to be busier.
    rate = 400.0 if isinstance(engine, AlbEngine) else 40.0
    evidence = AppEvidence(s.engine, clock, statuses or {}, reachable=reachable, rate=rate)
    return execute(s, Judging(s, evidence_for=lambda url, settings: evidence, clock=clock)), s


def run(s: Session) -> Exit:
    """Run ``s`` to its end on a fast clock, its app answering 200 (for releases with no analysis, or none)."""
    clock = FastClock()
    evidence = AppEvidence(s.engine, clock, {})
    return execute(s, Judging(s, evidence_for=lambda url, settings: evidence, clock=clock))
