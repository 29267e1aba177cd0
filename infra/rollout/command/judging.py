"""The analysis of a run's releases: whether there is one, whether its evidence can be had from here, and
the gate that judges each release (the canary's, then the rollout's and its bake)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from infra.kube.cluster import short
from infra.rollout import cloudwatch
from infra.rollout.analysis import Thresholds
from infra.rollout.command.session import Session
from infra.rollout.evidence import REACH_WITHIN_S, REAL_CLOCK, AlbMetrics, Clock, Evidence, Probe
from infra.rollout.gate import Gate
from infra.rollout.prober import leaves_by
from infra.settings import Settings

if TYPE_CHECKING:
    from infra.kube.logs import PodLogs

# How long the prober may run past the rollout's own limit and the bake, at most.
PROBE_MARGIN_S = 60

# The evidence about ``url`` for a release to ``settings``.
EvidenceFor = Callable[[str, Settings], Evidence]


def uses_metrics(settings: Settings) -> bool:
    """Whether the analysis reads the ALB's metrics (analysisSource cloudwatch) rather than probing the url."""
    return settings.eks is not None and settings.eks.analysis_source == "cloudwatch"


def judged_stages(settings: Settings) -> int:
    """The stages a release of this stack with a canary is judged in: each share of a weighted canary, or the
    pod canary's one, and the rollout with its bake. They share the release's error rates (Thresholds), and a
    release without a canary is held to the same share of them: a margin, never less."""
    weights = settings.canary_traffic == "weights"
    return (len(settings.canary_steps) if weights else 1) + 1


def thresholds(settings: Settings) -> Thresholds:
    """What ``settings``'s release is held to, in each of its stages."""
    return Thresholds(
        settings.max_error_ratio,
        settings.max_p99_ms,
        settings.min_requests,
        judged_stages(settings),
        over_old=settings.max_errors_over_old,
    )


class Judging:
    """The analysis of ``session``'s releases, on evidence ``evidence_for`` makes (the prober or the ALB's
    metrics by default) and ``clock``'s time."""

    def __init__(
        self,
        session: Session,
        *,
        evidence_for: EvidenceFor | None = None,
        clock: Clock = REAL_CLOCK,
        reach_within_s: float = REACH_WITHIN_S,
    ) -> None:
        self.session, self.clock, self.reach_within_s = session, clock, reach_within_s
        self.evidence_for = evidence_for or self.default_evidence
        # One source of evidence a run: the canary's baseline (the ALB's minutes before it) stands for the
        # rollout after it.
        self._evidence: Evidence | None = None

    def default_evidence(self, url: str, settings: Settings) -> Evidence:
        if uses_metrics(settings):
            metrics = cloudwatch.Metrics(self.session.metrics_runner(self.session.region), url)
            return AlbMetrics(metrics, self.session.say)
        most = settings.await_timeout_seconds + settings.bake_seconds + PROBE_MARGIN_S
        return Probe(
            url,
            settings.analysis_rate,
            most_s=most,
            reach_within_s=self.reach_within_s,
            users=self.users(settings),
            say=self.session.say,
            warmup_s=settings.analysis_warmup_seconds,
        )

    def users(self, settings: Settings) -> PodLogs | None:
        """Users' own requests, from the pods' logs; None (said) when the cluster cannot be read from here."""
        try:
            return self.session.cluster(settings).logs(self.session.deployment(settings)[0])
        except Exception as err:
            self.session.say(f"analysis: users' requests cannot be read from the pods' logs ({short(err)})")
            return None

    def evidence(self, url: str, settings: Settings) -> Evidence:
        if self._evidence is None:
            self._evidence = self.evidence_for(url, settings)
        return self._evidence

    def url(self, settings: Settings) -> str | None:
        """The url the analysis judges, or None (said) when there is no analysis for this release."""
        if not settings.analysis:
            return None
        stack = self.session.request.stack
        url = str(self.session.outputs.get("url") or "")
        if not url:
            self.session.say(f"rollout: no analysis: stack {stack} has no url output yet (its first deploy)")
            return None
        if not settings.image_tag:
            self.session.say(
                "rollout: no analysis: the release names no tag, which the app's X-App-Version header would say"
            )
            return None
        return url

    def unreachable(self, url: str, settings: Settings) -> str | None:
        """None when the analysis can have its evidence about ``url`` from here; else why not, and what to do.
        On the local target the url is a cluster address that only a node on this machine's own links
        serves; one the default route would carry is not probed at all (it would leave the machine)."""
        stack = self.session.request.stack
        if uses_metrics(settings):
            why = self.evidence(url, settings).unreachable()
            return (
                None
                if why is None
                else (
                    f"the analysis cannot read the ALB's metrics for stack {stack}'s url {url}: {why}. It needs the "
                    "AWS CLI and cloudwatch:GetMetricData, elasticloadbalancing:DescribeLoadBalancers and "
                    "DescribeTargetGroups (docs/iam/deploy-policy.json), or set rolling:analysisSource probe where "
                    "the url is reachable"
                )
            )
        leaves = leaves_by(url) if settings.target == "local" else None
        if leaves is not None:
            return (
                f"the analysis will not send requests to stack {stack}'s url {url}: on the local target it must "
                f"be served on this machine's own links, and it would leave by the default route ({leaves}). "
                "Set rolling:analysis false to ship on readiness alone"
            )
        why = self.evidence(url, settings).unreachable()
        return (
            None
            if why is None
            else (
                f"the analysis cannot reach stack {stack}'s url {url} from here ({why}). Run where the url is "
                "reachable, or set rolling:analysis false to ship on readiness alone"
            )
        )

    @contextmanager
    def gate(
        self, url: str, settings: Settings, on_breach: Callable[[str], None], *, pause_undecided: bool = False
    ) -> Iterator[Gate]:
        """The judgement of ``settings``'s release for the block; its responses join the run's evidence.
        ``pause_undecided``: a verdict that cannot decide ends it without acting (a canary to pause)."""
        evidence = self.evidence(url, settings)
        gate = Gate(
            evidence,
            str(settings.image_tag),
            thresholds(settings),
            say=self.session.say,
            on_breach=on_breach,
            clock=self.clock,
            pause_undecided=pause_undecided,
        )
        try:
            with gate:
                yield gate
        finally:
            self.session.evidence.extend(gate.samples())
