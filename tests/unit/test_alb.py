"""The way in on eks: the load balancer controller (role, policy, chart), the Ingress, readiness gates, order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from infra import alb
from rigs.offline import ACCOUNT, OIDC_ISSUER
from tests.unit.harness import Run, run_program

ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
RELEASE = "kubernetes:helm.sh/v3:Release"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NAMESPACE = "kubernetes:core/v1:Namespace"
ARN = "arn:aws:acm:ap-northeast-2:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"


def run(**extra: object) -> Run:
    return run_program({"target": "eks", "imageTag": "1.14.2", **extra})


@pytest.fixture(scope="module")
def default_run() -> Run:
    return run()


def alb_annotations(result: Run) -> dict[str, str]:
    metadata = result.mocks.one(INGRESS).inputs["metadata"]
    prefix = "alb.ingress.kubernetes.io/"
    return {k.removeprefix(prefix): v for k, v in metadata["annotations"].items() if k.startswith(prefix)}


def test_role_trusts_only_the_controller_service_account(default_run: Run) -> None:
    trust = json.loads(default_run.mocks.one(ROLE).inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_ISSUER}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                f"{OIDC_ISSUER}:sub": "system:serviceaccount:kube-system:aws-load-balancer-controller",
                f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
            }
        },
    }


# sha256 of docs/install/iam_policy.json at tag v3.5.0 (commit 11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4) of
# github.com/kubernetes-sigs/aws-load-balancer-controller, the file as AWS publishes it.
UPSTREAM_POLICY_SHA256 = "16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a"


def test_the_committed_policy_is_the_published_file_byte_for_byte() -> None:
    path = Path(alb.__file__).parent / "data" / "aws-load-balancer-controller-v3.5.0-iam-policy.json"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == UPSTREAM_POLICY_SHA256


def test_role_gets_the_published_policy_of_the_pinned_version(default_run: Run) -> None:
    policy = default_run.mocks.one(POLICY).inputs
    document = json.loads(policy["policy"])
    assert document == alb.iam_policy_document()
    assert "3.5.0" in policy["description"]
    actions = {
        a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    # What the controller does for an Ingress with IP targets.
    assert {
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DeleteLoadBalancer",
        "ec2:CreateSecurityGroup",
    } <= actions
    attachment = default_run.mocks.one(ATTACHMENT).inputs
    assert attachment["role"] == "alb-controller-role"
    assert attachment["policyArn"] == f"arn:aws:iam::{ACCOUNT}:policy/alb-controller-policy"


def test_chart_pinned_with_the_values_fargate_needs(default_run: Run) -> None:
    release = default_run.mocks.one(RELEASE).inputs
    assert (release["chart"], release["version"], release["namespace"]) == (
        "aws-load-balancer-controller",
        "3.5.0",
        "kube-system",
    )
    assert release["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    assert release["skipAwait"] is False
    values = release["values"]
    assert values["clusterName"] == "rolling"
    assert values["region"] == "ap-northeast-2"
    assert values["vpcId"] == "rolling-vpc-id"
    assert values["serviceAccount"] == {
        "create": True,
        "name": "aws-load-balancer-controller",
        "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/alb-controller-role"},
    }
    assert values["keepTLSSecret"] is True  # the webhook's certificate is not remade on every up
    assert values["enableServiceMutatorWebhook"] is False
    assert values["ingressClass"] == "alb"


def test_kube_system_runs_on_fargate(default_run: Run) -> None:
    cluster = default_run.mocks.one("eks:index:Cluster").inputs
    assert "kube-system" in [s["namespace"] for s in cluster["fargate"]["selectors"]]


def test_ingress_targets_pod_ips_and_checks_the_probe_page(default_run: Run) -> None:
    ingress = default_run.mocks.one(INGRESS).inputs
    assert ingress["metadata"]["namespace"] == "rolling"
    # canaryTraffic weights (the default): the listener's default action is the forward action the
    # annotation below declares, named in place of a Service with the port `use-annotation`.
    assert ingress["spec"] == {
        "ingressClassName": "alb",
        "defaultBackend": {"service": {"name": "weighted", "port": {"name": "use-annotation"}}},
    }
    assert {k: v for k, v in alb_annotations(default_run).items() if not k.startswith("actions.")} == {
        "scheme": "internet-facing",
        "target-type": "ip",
        "healthcheck-path": "/",
        "healthcheck-interval-seconds": "5",
        "healthcheck-timeout-seconds": "2",
        "healthcheck-healthy-threshold-count": "2",
        "success-codes": "200",
        "target-group-attributes": "deregistration_delay.timeout_seconds=20",
        "listen-ports": '[{"HTTP":80}]',
    }


def forward(result: Run) -> dict[str, Any]:
    return dict(json.loads(alb_annotations(result)["actions.weighted"]))


def test_every_request_goes_to_the_apps_target_group_until_a_canary_takes_a_share(default_run: Run) -> None:
    # Both target groups always (the canary's at weight 0), so the canary's target group, and the readiness
    # gates of its pods, exist before its first pod; no stickiness, so the share is a share of requests.
    assert forward(default_run) == {
        "type": "forward",
        "forwardConfig": {
            "targetGroups": [
                {"serviceName": "nginx", "servicePort": "http", "weight": 100},
                {"serviceName": "nginx-canary", "servicePort": "http", "weight": 0},
            ],
            "targetGroupStickinessConfig": {"enabled": False},
        },
    }
    assert default_run.mocks.depends_on("nginx-ingress", "nginx-canary-service")


def test_the_canarys_weight_is_its_share_of_requests() -> None:
    result = run(canaryTag="1.16.1", canaryWeight=25)
    groups = forward(result)["forwardConfig"]["targetGroups"]
    assert [(g["serviceName"], g["weight"]) for g in groups] == [("nginx", 75), ("nginx-canary", 25)]
    # Its pods are made after the Ingress that binds its target group: they get readiness gates.
    assert result.mocks.depends_on("nginx-canary", "nginx-ingress")


def test_every_object_the_command_changes_outside_pulumi_is_one_pulumi_takes_back() -> None:
    # A breach's mitigation goes through the Kubernetes API (infra/kube/watch.py LiveCluster): the canary's
    # weight on the Ingress, the Deployment's image, the canary's pods. The next `up` applies each back with
    # Server-Side Apply, which takes a field another manager holds only when forced: each object carries
    # the provider's patchForce. (ReplicaSets the command scales are the controller's, not Pulumi's.)
    result = run(canaryTag="1.16.1", canaryWeight=25)
    deployment = "kubernetes:apps/v1:Deployment"
    for typ, name in ((INGRESS, "nginx-ingress"), (deployment, "nginx-deployment"), (deployment, "nginx-canary")):
        annotations = result.mocks.one(typ, name).inputs["metadata"]["annotations"]
        assert annotations.get("pulumi.com/patchForce") == "true", name


def test_canary_traffic_by_pods_keeps_the_apps_service_as_the_default_backend() -> None:
    result = run(canaryTraffic="pods")
    ingress = result.mocks.one(INGRESS).inputs
    assert ingress["spec"]["defaultBackend"] == {"service": {"name": "nginx", "port": {"name": "http"}}}
    assert not [k for k in alb_annotations(result) if k.startswith("actions.")]


def test_scheme_and_deregistration_delay_from_settings() -> None:
    found = alb_annotations(run(albScheme="internal", deregistrationDelaySeconds=40, drainSeconds=45))
    assert found["scheme"] == "internal"
    assert found["target-group-attributes"] == "deregistration_delay.timeout_seconds=40"


def test_a_certificate_turns_on_https_with_a_redirect() -> None:
    result = run(certificateArn=ARN)
    found = alb_annotations(result)
    assert found["certificate-arn"] == ARN
    assert json.loads(found["listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert found["ssl-redirect"] == "443"
    assert found["ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert result.outputs["url"].startswith("https://")


def test_new_pods_wait_for_the_alb_through_readiness_gates(default_run: Run) -> None:
    labels = default_run.mocks.one(NAMESPACE).inputs["metadata"]["labels"]
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    strategy = default_run.mocks.one("kubernetes:apps/v1:Deployment").inputs["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("name", ["nginx-ingress", "nginx-deployment", "nginx-namespace"])
def test_the_controller_is_ready_first_and_deleted_last(default_run: Run, name: str) -> None:
    # Created after the Helm release (which waits for the controller and its webhook); so, on destroy,
    # deleted before it: the Ingress's ALB is gone before the controller, the cluster and the VPC are.
    assert default_run.mocks.depends_on(name, "alb-controller-release")
    assert default_run.mocks.depends_on("alb-controller-release", "alb-controller-policy-attachment")


def test_ingress_follows_the_service_and_the_release_follows_the_cluster(default_run: Run) -> None:
    assert default_run.mocks.depends_on("nginx-ingress", "nginx-service")
    assert default_run.mocks.depends_on("alb-controller-release", "rolling-eks")
    # The rollout's Deployment is not the Ingress's dependency: a new tag changes the image alone.
    assert not default_run.mocks.depends_on("nginx-ingress", "nginx-deployment")


def test_the_first_pods_are_made_after_the_ingress_so_they_get_readiness_gates(default_run: Run) -> None:
    # The controller injects readiness gates only into pods created once it has bound the Service's
    # target group (while reconciling the Ingress, before the Ingress gets its address, which the
    # provider's Ingress wait waits for): pods made earlier would count as ready before the ALB
    # routes to them. A dependency orders creation (and deletion) only.
    assert default_run.mocks.depends_on("nginx-deployment", "nginx-ingress")


def test_url_is_the_albs_address(default_run: Run) -> None:
    url: Any = default_run.outputs["url"]
    assert url.startswith("http://k8s-rolling-nginx-") and url.endswith(".elb.amazonaws.com")


def test_local_target_has_no_controller_and_no_ingress() -> None:
    mocks = run_program({"target": "local", "imageTag": "1.14.2"}).mocks
    assert mocks.of_type(RELEASE) == mocks.of_type(INGRESS) == mocks.of_type(ROLE) == []


def test_local_weights_put_the_same_ingress_in_front_for_the_load_balancer_stand_in() -> None:
    # canaryTraffic weights on local: the Ingress eks has (the same forward action, forced, before the canary's
    # pods), which the stand-in on the machine (rigs/alb.py) serves; no controller, no AWS; the stack's url is
    # the address the stand-in gives the Ingress.
    values = {"imageTag": "1.14.2", "canaryTraffic": "weights", "canaryTag": "1.16.1", "canaryWeight": 25}
    local, eks = run_program({"target": "local", **values}), run(**values)
    ingress, on_eks = local.mocks.one(INGRESS).inputs, eks.mocks.one(INGRESS).inputs
    assert ingress["spec"] == on_eks["spec"]
    action = "alb.ingress.kubernetes.io/actions.weighted"
    assert ingress["metadata"]["annotations"][action] == on_eks["metadata"]["annotations"][action]
    assert ingress["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    assert local.mocks.depends_on("nginx-canary", "nginx-ingress")
    assert local.mocks.of_type(RELEASE) == local.mocks.of_type(ROLE) == []
    assert local.outputs["url"] == eks.outputs["url"]  # the mocks give both Ingresses the same address
    assert run_program({"target": "local", "imageTag": "1.14.2"}).outputs["url"] != local.outputs["url"]
