"""Which preview steps a rollout may take, and the summary a person reads before saying yes."""

from __future__ import annotations

import pytest

from infra.identity import DEPLOYMENT, DEPLOYMENT_TYPE, INGRESS_TYPE
from infra.images import CONTAINER_IMAGE_PATH as IMAGE
from infra.rollout.review import CanarySummary, RolloutSummary, Step, unexpected_steps
from infra.settings import Settings

D = f"u::{DEPLOYMENT}"


@pytest.mark.parametrize(
    ("steps", "unexpected"),
    [
        ([Step("same", "pulumi:pulumi:Stack", "u::s"), Step("update", DEPLOYMENT_TYPE, D, (IMAGE,))], []),
        # A release says why on the Deployment, and a digest drops the scanner's note on tags: both follow the image.
        (
            [
                Step(
                    "update",
                    DEPLOYMENT_TYPE,
                    D,
                    (
                        IMAGE,
                        'metadata.annotations["kubernetes.io/change-cause"]',
                        'metadata.annotations["checkov.io/skip1"]',
                    ),
                )
            ],
            [],
        ),
        ([Step("update", DEPLOYMENT_TYPE, D, ('metadata.annotations["rolling/analysis"]', IMAGE))], [DEPLOYMENT]),
        # The Deployment changes more than its image: an infrastructure change, not a rollout.
        ([Step("update", DEPLOYMENT_TYPE, D, (IMAGE, "spec.replicas"))], [DEPLOYMENT]),
        ([Step("update", DEPLOYMENT_TYPE, D, ("spec.strategy.rollingUpdate.maxUnavailable",))], [DEPLOYMENT]),
        # No detailed diff: what changes cannot be told, so it is not taken for an image change.
        ([Step("update", DEPLOYMENT_TYPE, D)], [DEPLOYMENT]),
        ([Step("update", "kubernetes:core/v1:Service", "u::nginx-service")], ["nginx-service"]),
        ([Step("replace", DEPLOYMENT_TYPE, D)], [DEPLOYMENT]),
        (
            [Step("create-replacement", DEPLOYMENT_TYPE, "u::d"), Step("delete-replaced", DEPLOYMENT_TYPE, "u::d")],
            ["d", "d"],
        ),
        ([Step("update", "eks:index:Cluster", "u::rolling-eks")], ["rolling-eks"]),
        ([Step("create", "aws:ec2/subnet:Subnet", "u::s3")], ["s3"]),
    ],
)
def test_only_an_in_place_deployment_update_is_expected(steps: list[Step], unexpected: list[str]) -> None:
    assert [s.name for s in unexpected_steps(steps)] == unexpected


def test_summary_rendering() -> None:
    settings = Settings.from_values({"target": "eks", "imageTag": "1.16.1", "replicas": 4, "maxSurge": "50%"})
    text = RolloutSummary("dev", "nginxinc/nginx-unprivileged:1.14.2", settings.image, settings).render()
    assert "nginxinc/nginx-unprivileged:1.14.2 -> nginxinc/nginx-unprivileged:1.16.1" in text
    assert "replicas     4" in text
    assert "maxSurge 2, maxUnavailable 0: at least 4 ready and at most 6 pods asked for" in text
    assert "steps        2" in text
    assert "0.25 vCPU / 0.5 GB on Fargate" in text
    local = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert "Fargate" not in RolloutSummary("local", "a", "b", local).render()


def test_canary_steps_are_expected_only_in_a_canary_step() -> None:
    canary = f"urn:pulumi:dev::rolling::rolling:index:WebApp${DEPLOYMENT_TYPE}::nginx-canary"
    main = f"urn:pulumi:dev::rolling::rolling:index:WebApp${DEPLOYMENT_TYPE}::nginx-deployment"
    steps = [
        Step("create", DEPLOYMENT_TYPE, canary),
        Step("delete", DEPLOYMENT_TYPE, canary),
        Step("update", DEPLOYMENT_TYPE, canary, (IMAGE,)),
        Step("update", DEPLOYMENT_TYPE, main, (IMAGE,)),
    ]
    assert unexpected_steps(steps, canary=True) == []
    # A canary's image changing is an image change like the Deployment's; creating or removing it is not.
    assert unexpected_steps(steps) == steps[:2]
    # Anything else of the canary, or the main Deployment created or deleted, is not a canary step.
    others = [
        Step("update", DEPLOYMENT_TYPE, canary, ("spec.replicas",)),
        Step("delete", DEPLOYMENT_TYPE, main),
        Step("create", "kubernetes:core/v1:Service", canary.replace(DEPLOYMENT_TYPE, "kubernetes:core/v1:Service")),
    ]
    assert unexpected_steps(others, canary=True) == others


def test_a_weighted_canarys_share_on_the_ingress_is_a_canary_step_and_nothing_more() -> None:
    ingress = f"urn:pulumi:dev::rolling::rolling:index:AppIngress${INGRESS_TYPE}::nginx-ingress"
    share = Step(
        "update", INGRESS_TYPE, ingress, ('metadata.annotations["alb.ingress.kubernetes.io/actions.weighted"]',)
    )
    assert unexpected_steps([share], canary=True) == []
    assert unexpected_steps([share]) == [share], "outside a canary's steps, its share is an infrastructure change"
    # Anything else of the Ingress (its scheme, a certificate, its backend) is not the canary's.
    others = [
        Step("update", INGRESS_TYPE, ingress, ('metadata.annotations["alb.ingress.kubernetes.io/scheme"]',)),
        Step("update", INGRESS_TYPE, ingress, ("spec.defaultBackend",)),
        Step("update", INGRESS_TYPE, ingress, None),
        Step("replace", INGRESS_TYPE, ingress, share.changes),
    ]
    assert unexpected_steps(others, canary=True) == others


def test_a_weighted_canarys_summary_says_each_share() -> None:
    settings = Settings.from_values({"target": "eks", "imageTag": "1.14.2", "canaryTag": "1.16.1"})
    text = CanarySummary("dev", settings, (5, 25)).render()
    assert "behind a target group of its own, at weight 0 until ready; then 5 %, 25 % of requests in turn" in text
    assert (
        "and users' own, for 120s, then until its evidence decides (at most 600s) at each share: errors held to "
        "maxErrorRatio 2.0% and p99 to 1000 ms" in text
    )
    assert "behind the same Service" in CanarySummary("dev", settings).render()


def test_a_canarys_window_is_canary_seconds_then_until_its_evidence_decides() -> None:
    local = Settings.from_values({"target": "local", "imageTag": "1.14.2", "canaryTag": "1.16.1"})
    assert local.canary_seconds == 15
    text = CanarySummary("local", local).render()
    assert "for 15s, then until its evidence decides (at most 600s): errors held to" in text
    assert "on a breach, or no decision, the canary goes" in text


def test_the_plan_says_when_a_step_may_end_before_the_analysis_judges_it() -> None:
    def plan(**values: object) -> str:
        settings = Settings.from_values({"target": "local", "imageTag": "1.16.1", "replicas": 9, **values})
        return RolloutSummary("local", "a", "b", settings).render()

    short = plan(minReadySeconds=1, maxUnavailable="50%")
    assert "minReadySeconds 1 lets a step end before the analysis has judged its pods" in short
    # 3 s, as measured (docs/benchmarks.md: a bad release stopped within about 3 s of its first pod's answers),
    # and as the docs tell users; not the code's own constant read back.
    assert "minReadySeconds 3 or more holds each step" in short and "(about 3s)" in short
    assert "minReadySeconds 2 lets a step end" in plan(minReadySeconds=2, maxUnavailable="50%")
    assert "note" not in plan(minReadySeconds=3)
    # Nothing to hold without the analysis, or when one step replaces every pod.
    assert "note" not in plan(minReadySeconds=1, analysis="false")
    assert "note" not in plan(minReadySeconds=1, replicas=1, maxSurge="1")
    # The ALB's minutes judge no step: the note would promise what no minReadySeconds gives.
    eks = Settings.from_values(
        {"target": "eks", "imageTag": "1.16.1", "replicas": 9, "minReadySeconds": 1, "analysisSource": "cloudwatch"}
    )
    assert "note" not in RolloutSummary("dev", "a", "b", eks).render()
