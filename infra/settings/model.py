"""The keys every target reads (``Settings``), and ``declarations()``: every key of every target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from infra import fargate, images, release, strategy
from infra.identity import LOCAL_WATCHDOG_IMAGE
from infra.settings.declaration import Declaration, SettingsError, _declared, setting
from infra.settings.defaults import (
    ALB_IDLE_TIMEOUT_SECONDS,
    ANALYSIS_UNDECIDED,
    AWAIT_MARGIN_SECONDS,
    BAKE_DEFAULTS,
    BOOTSTRAP_IMAGE,
    CANARY_DEFAULTS,
    CANARY_TRAFFIC,
    CONNECTION_MAX_DEFAULTS,
    DRAIN_DEFAULTS,
    KEEPALIVE_DEFAULTS,
    NAMESPACE,
    PRIVILEGED_PORTS_BELOW,
    PROGRESS_DEADLINE_DEFAULTS,
    SERVICE_PROPAGATION_SECONDS,
    SOAK_DEFAULTS,
    STOP_SECONDS,
    TARGETS,
    _per_target,
)
from infra.settings.eks import EksSettings
from infra.settings.local import LocalSettings
from infra.settings.parsers import (
    _bool,
    _cause,
    _choice,
    _int_at_least,
    _int_between,
    _int_or_percent,
    _label,
    _percent_steps,
    _pinned_image,
    _quantity,
    _ratio,
    _times_or_off,
    _unavailable,
)
from infra.settings.read import read
from infra.settings.rules import RULES, check_declared


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from stack config, validated. ``eks`` is None on other targets."""

    target: str = setting(
        _choice(TARGETS),
        default="eks",
        description="Where the app runs, eks (a Fargate EKS cluster this stack creates) "
        "or local (the cluster a kubeconfig names).",
        accepted="`eks` or `local`",
    )
    image_repository: str = setting(
        images.check_repository,
        default="nginxinc/nginx-unprivileged",
        description="Registry and repository of the container image, without tag or digest. The default is "
        "nginx built to run unprivileged (port 8080); the deploy workflow sets the stack's ECR repository.",
        accepted="a registry/repository without tag or digest",
    )
    image_tag: str | None = setting(
        images.check_tag,
        default="",
        unset=True,
        example="1.16.1",
        description="The image tag to run (Docker tag grammar; latest is refused). Changing it is a rolling "
        "update. Unset, the app keeps the image it runs (what the deploy pipeline shipped), so an `up` from a "
        "clean checkout never rolls the app back; a new stack starts bootstrapImage.",
        accepted="a Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; `latest` is refused",
        shown_default="unset: keep the image that runs",
    )
    bootstrap_image: str = setting(
        _pinned_image,
        default=BOOTSTRAP_IMAGE,
        description="The image a new stack's Deployment starts with when imageTag is unset (the deploy "
        "pipeline then ships the app); the default is the base the app image is built on.",
        accepted="a pinned image reference, `repository:tag` or `repository@sha256:…`",
    )
    image_digest: str | None = setting(
        images.check_digest,
        default="",
        unset=True,
        description="Optional sha256:<64 hex> digest; when set the pod runs repository@digest.",
        accepted="`sha256:` + 64 hex; the pod then runs `repository@digest`",
    )
    replicas: int = setting(
        _int_at_least(1),
        default=3,
        description="Pods of the Deployment, at least 1.",
        accepted="≥ 1",
    )
    max_surge: strategy.IntOrPercent = setting(
        _int_or_percent,
        default="1",
        description="Pods above replicas a rollout may add, a whole number or a percentage such as 25%.",
        accepted="a whole number or `N%`",
    )
    max_unavailable: strategy.IntOrPercent = setting(
        _unavailable,
        default="0",
        description="Pods below replicas a rollout may take down, a whole number or a percentage up to 100%. "
        "0 keeps every replica serving.",
        accepted="a whole number or `N%` up to 100%; not 0 when `maxSurge` is 0",
    )
    min_ready_seconds: int = setting(
        _int_at_least(0),
        default=5,
        description="Seconds a new pod must stay ready before the rollout counts it available and goes on; "
        "with the analysis, long enough for it to judge each step (the rollout plan says when it is not).",
        accepted="≥ 0",
    )
    progress_deadline_seconds: int = setting(
        _int_at_least(1),
        default=0,
        unset=True,
        description="Seconds without progress after which a rollout counts as failed; "
        f"`up` waits at most this plus {_per_target(AWAIT_MARGIN_SECONDS, ' s')}. "
        f"0 picks {_per_target(PROGRESS_DEADLINE_DEFAULTS)}.",
        accepted="≥ 1, more than `minReadySeconds`",
        shown_default=f"`0` ({_per_target(PROGRESS_DEADLINE_DEFAULTS)})",
    )
    drain_seconds: int = setting(
        _int_between(0, 3600),
        default=-1,
        unset=True,
        description="Seconds a stopping pod keeps serving after it leaves the Service (a preStop sleep), "
        f"so no request is routed to a server that has stopped. -1 picks {DRAIN_DEFAULTS['eks']} on eks "
        f"(outlasting the load balancer's deregistration), {DRAIN_DEFAULTS['local']} on local (kube-proxy's "
        "update); 0 stops at once, which the policy pack's drains-before-stopping refuses (for experiments "
        "such as the one that shows what the drain saves).",
        accepted="0 to 3600; less than `terminationGracePeriodSeconds`",
        shown_default=f"`-1` ({_per_target(DRAIN_DEFAULTS)})",
    )
    keep_alive_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds the app's server keeps an idle keep-alive connection open (nginx's keepalive_timeout; "
        f"its Keep-Alive header says one less). -1 picks {_per_target(KEEPALIVE_DEFAULTS)}: on eks longer than "
        f"the ALB's idle timeout ({ALB_IDLE_TIMEOUT_SECONDS} s), as AWS advises, so the ALB never reuses a "
        "connection the pod closed; locally short enough to end in the drain.",
        accepted=f"1 to 3600; on eks more than {ALB_IDLE_TIMEOUT_SECONDS}; locally, with `connectionMaxSeconds`, "
        f"at most `drainSeconds` - {SERVICE_PROPAGATION_SECONDS}",
        shown_default=f"`-1` ({_per_target(KEEPALIVE_DEFAULTS)})",
    )
    connection_max_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="Seconds one connection may carry requests (nginx's keepalive_time): the response after that "
        "says `Connection: close` and the server closes the connection cleanly, so every connection to a "
        "stopping pod ends during its drain and a client that does not retry loses nothing. "
        f"-1 picks {_per_target(CONNECTION_MAX_DEFAULTS)}.",
        accepted=f"1 to 3600; locally, with `keepAliveSeconds`, at most `drainSeconds` - {SERVICE_PROPAGATION_SECONDS}",
        shown_default=f"`-1` ({_per_target(CONNECTION_MAX_DEFAULTS)})",
    )
    termination_grace_period_seconds: int = setting(
        _int_between(1, 3600),
        default=0,
        unset=True,
        description="Seconds Kubernetes gives a stopping pod before it kills it: the drain, then nginx's "
        f"graceful stop. 0 picks drainSeconds + {STOP_SECONDS}.",
        accepted="more than `drainSeconds`",
        shown_default=f"`0` (`drainSeconds` + {STOP_SECONDS})",
    )
    namespace: str = setting(
        _label,
        default="rolling",
        description="Namespace of the app (a DNS-1123 label), created by the stack with the restricted Pod "
        "Security Standard unless it is default; on eks it is selected by the Fargate profile.",
        accepted="a DNS-1123 label",
    )
    container_port: int = setting(
        _int_between(1, 65535),
        default=8080,
        description="Port the image's server listens on (the Service's port 80 reaches it). "
        f"Below {PRIVILEGED_PORTS_BELOW} only with imageNeedsRoot.",
        accepted=f"1 to 65535; below {PRIVILEGED_PORTS_BELOW} only with `imageNeedsRoot`",
    )
    image_needs_root: bool = setting(
        _bool,
        default=False,
        description="Whether the image must start as root (the stock nginx image binds port 80 as root, then "
        "drops to a worker user). false runs the pod as uid 10001 with every capability dropped; true lets it "
        "start as root with the four capabilities nginx uses, and the policy pack warns.",
        accepted="`true` or `false`; `true` weakens the pod's security context",
    )
    cpu: str = setting(
        _quantity(fargate.parse_cpu),
        default="250m",
        description="CPU request and limit of the container, one of Fargate's vCPU sizes (250m, 500m, 1, 2, 4, 8, 16).",
        accepted="a Fargate vCPU size; with `memory`, a pair Fargate can run",
    )
    memory: str = setting(
        _quantity(fargate.parse_memory),
        default="256Mi",
        description="Memory request and limit of the container, in Mi or Gi; "
        "on eks, with Fargate's 256Mi overhead, it must fit a size offered with the cpu.",
        accepted="`Mi` or `Gi`; on eks, with `cpu`, a pair Fargate can run",
    )
    # What the rollout command's analysis holds a release to (infra/rollout/analysis.py). The program
    # does not read these; the command reads them from the same config, checked with the rest.
    analysis: bool = setting(
        _bool,
        default=True,
        description="Whether the rollout command measures what the new version serves (a prober sending "
        "analysisRate requests a second to the stack's url) during the rollout and bakeSeconds after it, and "
        "rolls back a release that breaks maxErrorRatio or maxP99Ms. The url must be reachable from where "
        "the command runs; false ships on readiness alone.",
        accepted="`true` or `false`",
    )
    analysis_rate: int = setting(
        _int_between(1, 50),
        default=10,
        description="Requests a second the analysis's prober sends to the stack's url, each on a new connection.",
        accepted="1 to 50",
    )
    max_error_ratio: float = setting(
        _ratio,
        default="2%",
        description="The error ratio the new version's responses are held to (5xx, or no response, or a load "
        "balancer's 5xx while it is judged). A release at half of it or less is aborted at most 1 % of the time, "
        "one at three times it or more ships at most 1 % of the time, its stages combined (a sequential test: "
        "docs/rollouts.md).",
        accepted="a percentage such as `2%`, or a decimal from 0 to 1 such as `0.02`",
    )
    max_errors_over_old: int = setting(
        _times_or_off,
        default=0,
        description="Hold the new version to the old one as well: a release whose answers fail at least this many "
        "times as often as the old version's at the same time (beyond doubt) is condemned, though both are within "
        "maxErrorRatio. A release as good as the old one is aborted by it at most 1 % of the time (shared with the "
        "other tests); one with errors where the old version has none is clearly worse. 0 judges against "
        "maxErrorRatio alone.",
        accepted="0 (off), or a whole number from 2 to 100",
    )
    max_p99_ms: int = setting(
        _int_between(1, 60000),
        default=1000,
        description="The slowest the new version's 99th-percentile response may be, in milliseconds: judged as "
        "the share of answers slower than it, good at 1 % (a p99 within it), bad at 5 %, by the same sequential "
        "test as the errors.",
        accepted="1 to 60000",
    )
    min_requests: int = setting(
        _int_between(1, 100000),
        default=50,
        description="The fewest responses of the new version a stage of the analysis must have before it may "
        "clear the release (a breach needs none: errors beyond doubt stop it at once).",
        accepted="1 to 100000",
    )
    bake_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="The least seconds the analysis goes on after the rollout completes; then until its evidence "
        f"clears or condemns the release (at most analysisMaxSeconds). -1 picks {_per_target(BAKE_DEFAULTS)}; "
        "0 lets a rollout the evidence already cleared end with it.",
        accepted="0 to 3600",
        shown_default=f"`-1` ({_per_target(BAKE_DEFAULTS)})",
    )
    analysis_max_seconds: int = setting(
        _int_between(10, 7200),
        default=600,
        description="The longest a stage of the analysis (each share of a canary, the rollout with its bake) goes "
        "on while its evidence has not decided; a stage still undecided then aborts the release (a release is "
        "never shipped on too little evidence).",
        accepted="10 to 7200",
    )
    analysis_undecided: str = setting(
        _choice(ANALYSIS_UNDECIDED),
        default="abort",
        description="What a canary does when the analysis cannot decide on it (its evidence too little to clear "
        "or condemn it by analysisMaxSeconds, or gone missing, such as a pod's log that cannot be read): abort "
        "removes it, as a breach does; pause leaves it serving its share, unjudged, and the run ends with exit 20 "
        "for a person to `rollout promote` or `rollout abort`. Never ships it. The rollout's own stage aborts "
        "either way (nothing is left to pause once every pod runs the new version).",
        accepted="`abort` or `pause`",
    )
    analysis_warmup_seconds: int = setting(
        _int_between(0, 600),
        default=0,
        description="How long a new pod serves before its answers count as evidence: for an app that is slow or "
        "fails while it warms up (a JIT, caches being filled) and should not be judged by it. Answers that cannot "
        "be told from a warming pod's (the prober's, which name no pod) are left out while any pod of the app "
        "warms up. 0 counts every answer from the first.",
        accepted="0 to 600",
    )
    watchdog: bool = setting(
        _bool,
        default=True,
        description="Whether a judged release is guarded in the cluster: a Job started with the release watches "
        "the run's Lease and, should the run stop renewing it for watchdogSeconds (a CI runner lost, a killed "
        "process), undoes the release's current stage there as a breach does (the canary's weight to 0 and its "
        "pods away, or the previous image put back) and says so in an Event and an annotation on the Deployment. "
        "A release whose watchdog cannot start in time is refused before any change. false judges without it: "
        "a lost run's release then waits for the next `rollout` on the stack.",
        accepted="`true` or `false`",
    )
    watchdog_image: str | None = setting(
        _pinned_image,
        default="",
        unset=True,
        description="The watchdog's image (watchdog/: one static binary, nothing else). Unset on local: the one "
        "`make cluster-up` builds into the node's registry. On eks it is needed while watchdog and analysis are "
        "on: the image in a registry the cluster pulls from, pinned by digest (docs/rollouts.md says how to "
        "build and push it).",
        accepted="an image reference with a tag or a digest; a digest on eks",
        shown_default="unset: localhost:5000/rolling-watchdog:rolling on local, none on eks",
    )
    watchdog_seconds: int = setting(
        _int_between(10, 60),
        default=20,
        description="How long a run's Lease on its stack lasts unrenewed (the run renews it every quarter of "
        "that): after this long without a renewal the cluster's watchdog undoes the release's stage, and the "
        "next `rollout` may take the stack over. Users' requests meet a lost run's release for at most this "
        "plus a few seconds.",
        accepted="10 to 60",
    )
    canary_tag: str | None = setting(
        images.check_tag,
        default="",
        unset=True,
        description="The tag a canary runs: canaryReplicas pods of it beside the Deployment's, behind the same "
        "Service. The rollout command's `--canary` sets it and removes it (promote or abort); unset, no canary.",
        accepted="a Docker tag, as imageTag",
        shown_default="unset: no canary",
    )
    canary_replicas: int = setting(
        _int_between(1, 100),
        default=1,
        description="Pods of the canary (the rollout command's `--canary N` sets it).",
        accepted="1 to 100",
    )
    canary_seconds: int = setting(
        _int_between(-1, 3600),
        default=-1,
        unset=True,
        description="The least seconds the rollout command analyses a canary (at each of its shares), then until its "
        f"evidence clears or condemns it (at most analysisMaxSeconds). -1 picks {_per_target(CANARY_DEFAULTS)}.",
        accepted="0 to 3600",
        shown_default=f"`-1` ({_per_target(CANARY_DEFAULTS)})",
    )
    canary_traffic: str = setting(
        _choice(CANARY_TRAFFIC),
        default="",
        unset=True,
        description="How a canary gets its share of users' requests: weights (a Service and ALB target group "
        "of its own, weighted in the listener's forward action and stepped through canarySteps, each weight read "
        "back from the ALB before it is judged; on eks readiness gates from its first pod; on local the ALB is "
        "the stand-in `python rigs/alb.py` runs on this machine, docs/upstream.md) or pods (its pods behind the "
        "app's one Service, so its share is its share of the pods).",
        accepted="`weights` (not with analysisSource cloudwatch) or `pods`",
        shown_default="weights on eks (pods with analysisSource cloudwatch), pods on local",
    )
    canary_steps: tuple[int, ...] = setting(
        _percent_steps,
        default="5,25",
        description="The canary's shares of users' requests, in percent, each judged for canarySeconds before "
        "the next (canaryTraffic weights); after the last the canary's share goes back to 0 and the rest of the "
        "replicas roll.",
        accepted="1 to 5 percentages from 1 to 99, each larger than the last, comma-separated",
    )
    canary_weight: int = setting(
        _int_between(0, 100),
        default=0,
        description="The canary target group's weight in percent, the app's the rest (canaryTraffic weights). "
        "The rollout command sets it through canarySteps and puts it back to 0 before the canary goes.",
        accepted="0 to 100; more than 0 only while canaryTag is set",
    )
    change_cause: str | None = setting(
        _cause,
        default="",
        unset=True,
        description="Why the image runs, one line: the Deployment's kubernetes.io/change-cause, which `kubectl "
        "rollout history` shows. The rollout command sets it on every release (`ship IMAGE by WHO`); a plain "
        "`pulumi up` that changes the image writes `up IMAGE` when it names another image.",
        accepted=f"one line of printable text, at most {release.MAX_CAUSE} characters",
        shown_default="unset: set by the rollout command",
    )
    soak_seconds: int = setting(
        _int_between(-1, 604800),
        default=-1,
        unset=True,
        description="Seconds a release must have run on the stack it is promoted from before `rollout promote "
        f"--from` ships it to this one. -1 picks {_per_target(SOAK_DEFAULTS)}; 0 promotes at once.",
        accepted="0 to 604800 (a week)",
        shown_default=f"`-1` ({_per_target(SOAK_DEFAULTS)})",
    )
    # The keys one target alone reads; None on the other target.
    local: LocalSettings | None = None
    eks: EksSettings | None = None

    @property
    def keeps_running_image(self) -> bool:
        """No image named: the Deployment keeps the one it runs (a new one starts ``bootstrap_image``)."""
        return self.image_tag is None and self.image_digest is None

    @property
    def image(self) -> str:
        """The reference the container runs: the one named, or the bootstrap image when none is."""
        if self.keeps_running_image:
            return self.bootstrap_image
        return images.reference(self.image_repository, self.image_tag or "", self.image_digest)

    @property
    def watchdog_ref(self) -> str | None:
        """The watchdog's image: watchdogImage, else the local node's own; None on eks when unset."""
        if self.watchdog_image:
            return self.watchdog_image
        return LOCAL_WATCHDOG_IMAGE if self.target == "local" else None

    @property
    def canary_image(self) -> str | None:
        """The canary's image (the Deployment's repository at canaryTag), or None when there is none."""
        return None if self.canary_tag is None else images.reference(self.image_repository, self.canary_tag, None)

    @property
    def rollout(self) -> strategy.RollingUpdate:
        return strategy.plan(self.replicas, self.max_surge, self.max_unavailable)

    @property
    def pod_size(self) -> fargate.PodSize:
        return fargate.pod_size(fargate.parse_cpu(self.cpu), fargate.parse_memory(self.memory))

    @property
    def await_timeout_seconds(self) -> int:
        """The most `up` waits for a rollout to complete before it fails."""
        return self.progress_deadline_seconds + AWAIT_MARGIN_SECONDS[self.target]

    @classmethod
    def load(cls) -> Settings:
        """Read the ``rolling:`` keys of the current stack; bad values stop the program before any resource,
        with the message alone (a `pulumi.RunError` is shown without a traceback)."""
        import pulumi

        config = pulumi.Config(NAMESPACE)
        values = {d.key: value for d in declarations() if (value := config.get(d.key)) is not None}
        try:
            return cls.from_values(values)
        except SettingsError as err:
            raise pulumi.RunError(str(err)) from None

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> Settings:
        """Validate raw config values (strings, or numbers from YAML), all of them at once."""
        return read(values, cls)


def declarations() -> tuple[Declaration, ...]:
    """Every ``rolling:`` key, in the order the docs list them."""
    return (*_declared(Settings), *_declared(LocalSettings), *_declared(EksSettings))


check_declared(RULES, {d.field for d in declarations()})
