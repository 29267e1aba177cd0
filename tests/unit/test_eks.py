"""The eks target's wiring: network, Fargate-only cluster, provider and secret kubeconfig."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from infra import network
from tests.unit.harness import FAKE_KUBECONFIG, ZONES, Run, run_program

CLUSTER = "eks:index:Cluster"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
BASE = {"target": "eks", "imageTag": "1.14.2"}


def run(**extra: object) -> Run:
    return run_program({**BASE, **extra})


@pytest.fixture(scope="module")
def default_run() -> Run:
    return run()


def subnets(result: Run, role: str) -> list[dict[str, Any]]:
    """The subnets of one role in zone order (their names end in the zone's index; resources
    register concurrently, so the order they were recorded in means nothing)."""
    found = [r for r in result.mocks.of_type(SUBNET) if f"kubernetes.io/role/{role}" in r.inputs["tags"]]
    return [r.inputs for r in sorted(found, key=lambda r: int(r.name.rsplit("-", 1)[1]))]


def test_cluster_gets_private_subnets_and_no_node_group(default_run: Run) -> None:
    cluster = default_run.mocks.one(CLUSTER).inputs
    private_ids = {f"{r.name}-id" for r in default_run.mocks.of_type(SUBNET) if "-private-" in r.name}
    public_ids = {f"{r.name}-id" for r in default_run.mocks.of_type(SUBNET) if "-public-" in r.name}
    assert len(private_ids) == len(public_ids) == 2
    assert set(cluster["privateSubnetIds"]) == private_ids
    assert set(cluster["publicSubnetIds"]) == public_ids
    assert set(cluster["fargate"]["subnetIds"]) == private_ids
    assert cluster["skipDefaultNodeGroup"] is True
    assert "nodeGroupOptions" not in cluster and "instanceType" not in cluster


def test_fargate_selectors_version_oidc_logs(default_run: Run) -> None:
    cluster = default_run.mocks.one(CLUSTER).inputs
    assert cluster["name"] == "rolling"
    assert cluster["version"] == "1.35"
    assert cluster["createOidcProvider"] is True
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    namespaces = [s["namespace"] for s in cluster["fargate"]["selectors"]]
    assert namespaces == ["rolling", "kube-system"]


def test_fargate_selects_the_app_namespace() -> None:
    addons = {"corednsVersion": "v1.12.1-eksbuild.2", "kubeProxyVersion": "v1.34.1-eksbuild.1"}
    cluster = run(namespace="web", kubernetesVersion="1.34", vpcCniVersion="v1.20.1-eksbuild.1", **addons)
    inputs = cluster.mocks.one(CLUSTER).inputs
    assert [s["namespace"] for s in inputs["fargate"]["selectors"]] == ["web", "kube-system"]
    assert inputs["version"] == "1.34"


def test_subnets_span_zones_with_elb_tags(default_run: Run) -> None:
    public, private = subnets(default_run, "elb"), subnets(default_run, "internal-elb")
    assert [s["availabilityZone"] for s in public] == ZONES[:2]
    assert [s["availabilityZone"] for s in private] == ZONES[:2]
    for subnet in public + private:
        assert subnet["tags"]["kubernetes.io/cluster/rolling"] == "shared"
    cidrs = [ipaddress.IPv4Network(str(s["cidrBlock"])) for s in public + private]
    assert all(a == b or not a.overlaps(b) for a in cidrs for b in cidrs)
    assert all(c.subnet_of(ipaddress.IPv4Network("10.0.0.0/16")) for c in cidrs)


def test_private_subnets_route_through_nat(default_run: Run) -> None:
    (nat,) = default_run.mocks.of_type(NAT)
    tables = [r.inputs for r in default_run.mocks.of_type("aws:ec2/routeTable:RouteTable") if "-private-" in r.name]
    assert len(tables) == 2
    assert all(t["routes"][0]["natGatewayId"] == f"{nat.name}-id" for t in tables)


def test_nat_per_zone() -> None:
    result = run(natGateways="perAz", azCount=3)
    assert len(result.mocks.of_type(NAT)) == 3
    assert len(subnets(result, "internal-elb")) == 3


def test_too_many_zones_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="rolling:azCount 6 is more than the 4 zones"):
        run(azCount=6)


def test_kubernetes_provider_from_cluster_kubeconfig(default_run: Run) -> None:
    (provider,) = default_run.mocks.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeconfig"]) == FAKE_KUBECONFIG
    assert "kubeconfig" in provider.secrets


def test_outputs_kubeconfig_only_as_secret(default_run: Run) -> None:
    assert default_run.outputs["clusterName"] == "rolling"
    assert "kubeconfig" in default_run.secret_outputs
    assert json.loads(default_run.outputs["kubeconfig"]) == FAKE_KUBECONFIG
    assert "clusterName" not in default_run.secret_outputs


def test_subnet_cidrs_fill_halves() -> None:
    public, private = network.subnet_cidrs("10.0.0.0/16", 2)
    assert public == ["10.0.0.0/20", "10.0.16.0/20"]
    assert private == ["10.0.128.0/20", "10.0.144.0/20"]


def test_ecr_repository_immutable_scanned_and_trimmed() -> None:
    result = run(ecrRepository="web/app", ecrKeepImages=12)
    repository = result.mocks.one("aws:ecr/repository:Repository").inputs
    assert repository["name"] == "web/app"
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = json.loads(result.mocks.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])
    (rule,) = policy["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 12}
    assert rule["action"] == {"type": "expire"}
    assert "repositoryUrl" in result.outputs


def test_local_target_has_no_registry() -> None:
    result = run_program({"target": "local", "imageTag": "1.14.2"})
    assert result.mocks.of_type("aws:ecr/repository:Repository") == []
    assert "repositoryUrl" not in result.outputs


ADMIN = "arn:aws:iam::123456789012:role/platform/Admin"
DEPLOY = "arn:aws:iam::123456789012:role/rolling-deploy"
PREVIEW = "arn:aws:iam::123456789012:role/rolling-preview"
POLICY = "arn:aws:eks::aws:cluster-access-policy/"


def test_ci_roles_reach_the_cluster_through_access_entries() -> None:
    # API authentication mode trusts access entries only: without these, only the principal that created the
    # cluster could reach the API server, and the deploy workflow's role would be refused (401).
    inputs = run(clusterAdmins=ADMIN, deployRoleArn=DEPLOY, previewRoleArn=PREVIEW).mocks.one(CLUSTER).inputs
    assert inputs["authenticationMode"] == "API"
    entries = {e["principalArn"]: e["accessPolicies"] for e in inputs["accessEntries"].values()}
    assert set(entries) == {ADMIN, DEPLOY, PREVIEW}
    assert entries[ADMIN] == {
        "AmazonEKSClusterAdminPolicy": {
            "policyArn": POLICY + "AmazonEKSClusterAdminPolicy",
            "accessScope": {"type": "cluster"},
        }
    }
    # The deploy role edits the app's namespace only, and reads elsewhere (what previews of the stack read).
    assert entries[DEPLOY] == {
        "AmazonEKSEditPolicy": {
            "policyArn": POLICY + "AmazonEKSEditPolicy",
            "accessScope": {"type": "namespace", "namespaces": ["rolling"]},
        },
        "AmazonEKSViewPolicy": {"policyArn": POLICY + "AmazonEKSViewPolicy", "accessScope": {"type": "cluster"}},
    }
    assert entries[PREVIEW] == {
        "AmazonEKSViewPolicy": {"policyArn": POLICY + "AmazonEKSViewPolicy", "accessScope": {"type": "cluster"}}
    }


def test_no_access_entries_unless_configured(default_run: Run) -> None:
    assert "accessEntries" not in default_run.mocks.one(CLUSTER).inputs


def test_addons_pinned_so_a_new_aws_build_changes_nothing(default_run: Run) -> None:
    # Unset, pulumi-eks asks AWS for the most recent build at every preview: a new build would be an add-on
    # update in the next deploy's preview, which the rollout command refuses.
    inputs = default_run.mocks.one(CLUSTER).inputs
    assert inputs["corednsAddonOptions"]["version"] == "v1.13.2-eksbuild.1"
    assert inputs["kubeProxyAddonOptions"]["version"] == "v1.35.0-eksbuild.2"
    assert inputs["vpcCniOptions"]["addonVersion"] == "v1.21.1-eksbuild.3"
    assert "aws:eks/getAddonVersion:getAddonVersion" not in default_run.mocks.calls
    pinned = run(corednsVersion="v1.13.9-eksbuild.9").mocks.one(CLUSTER).inputs
    assert pinned["corednsAddonOptions"]["version"] == "v1.13.9-eksbuild.9"


def test_control_plane_logs_kept_30_days_in_a_group_made_first(default_run: Run) -> None:
    (group,) = default_run.mocks.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/aws/eks/rolling/cluster"
    assert group.inputs["retentionInDays"] == 30
    (cluster,) = default_run.mocks.of_type(CLUSTER)
    assert default_run.mocks.depends_on(cluster.name, group.name)
    assert run(clusterLogRetentionDays=90).mocks.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 90


def test_api_endpoint_cidrs_and_upgrade_policy(default_run: Run) -> None:
    inputs = default_run.mocks.one(CLUSTER).inputs
    assert inputs["endpointPublicAccess"] is True
    assert inputs["publicAccessCidrs"] == ["0.0.0.0/0"]
    assert inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    narrow = run(publicAccessCidrs="203.0.113.0/24, 198.51.100.7/32", upgradePolicy="extended")
    inputs = narrow.mocks.one(CLUSTER).inputs
    assert inputs["publicAccessCidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert inputs["upgradePolicy"] == {"supportType": "EXTENDED"}
    private = run(apiEndpoint="private").mocks.one(CLUSTER).inputs
    assert private["endpointPublicAccess"] is False
    assert private["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in private


def test_zones_exclude_opt_in_zones(default_run: Run) -> None:
    # Local and Wavelength Zones are listed as available too; they cannot hold the cluster's subnets.
    assert "aws:index/getAvailabilityZones:getAvailabilityZones" in default_run.mocks.calls
    assert default_run.mocks.zone_filters == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def test_certificate_from_another_region_is_refused_before_any_resource() -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12
    with pytest.raises(Exception, match="is in us-east-1, but the stack's aws:region is ap-northeast-2"):
        run(**{"certificateArn": arn, "aws:region": "ap-northeast-2"})


def test_ecr_repository_deleted_with_its_images_on_destroy(default_run: Run) -> None:
    # ECR refuses to delete a repository that holds images unless force_delete is set: without it
    # `pulumi destroy` fails once the deploy workflow has pushed an image.
    (repository,) = default_run.mocks.of_type("aws:ecr/repository:Repository")
    assert repository.inputs["forceDelete"] is True
    assert repository.name not in default_run.mocks.retained


def test_ecr_repository_retained_when_asked() -> None:
    result = run(ecrOnDestroy="retain")
    (repository,) = result.mocks.of_type("aws:ecr/repository:Repository")
    assert repository.inputs["forceDelete"] is False
    assert repository.name in result.mocks.retained


def test_a_stack_made_again_takes_over_the_repository_its_destroy_left() -> None:
    # `ecrOnDestroy: retain` leaves the repository, images and all, and the stack forgets it: made again,
    # it would fail creating a repository of the same name (RepositoryAlreadyExistsException). It imports
    # it instead, by name (the repository's import ID), and holds it as before.
    left = run_program({**BASE, "ecrOnDestroy": "retain"}, repositories=("other", "rolling"))
    (repository,) = left.mocks.of_type("aws:ecr/repository:Repository")
    assert left.mocks.imported == {repository.name: "rolling"}
    assert repository.name in left.mocks.retained
    # A first stack (no such repository yet) creates it.
    assert run_program({**BASE, "ecrOnDestroy": "retain"}, repositories=("other",)).mocks.imported == {}


def test_a_repository_the_stack_would_delete_is_never_taken_over() -> None:
    # Whoever made a repository of that name, a stack that deletes its repository with the images on
    # destroy must not adopt it: creating it fails, naming it, and nothing of it is lost.
    found = run_program(BASE, repositories=("rolling",))
    assert found.mocks.imported == {}
    assert "aws:ecr/getRepositories:getRepositories" not in found.mocks.calls


def test_the_render_says_what_the_cluster_is_made_with() -> None:
    from rigs.render import cluster_summary

    summary = cluster_summary({"deployRoleArn": DEPLOY, "publicAccessCidrs": "203.0.113.0/24"})
    assert summary["accessEntries"] == {DEPLOY: ["AmazonEKSEditPolicy", "AmazonEKSViewPolicy"]}
    assert summary["addons"] == {
        "coredns": "v1.13.2-eksbuild.1",
        "kube-proxy": "v1.35.0-eksbuild.2",
        "vpc-cni": "v1.21.1-eksbuild.3",
    }
    assert summary["controlPlaneLogs"] == {
        "types": ["api", "audit", "authenticator"],
        "group": "/aws/eks/rolling/cluster",
        "retentionDays": 30,
    }
    assert summary["endpoint"] == {"public": True, "publicAccessCidrs": ["203.0.113.0/24"], "private": True}
    assert summary["ecr"] == {"name": "rolling", "deletedWithImages": True}


INFRA_ROLE = "arn:aws:iam::123456789012:role/rolling-ci-infrastructure"


@pytest.mark.parametrize(
    ("caller", "listed"),
    [
        # What configure-aws-credentials gives CI: a session of the role; the session ARN drops the role's path.
        ("arn:aws:sts::123456789012:assumed-role/rolling-ci-infrastructure/GitHubActions", INFRA_ROLE),
        ("arn:aws:sts::123456789012:assumed-role/Admin/alice", ADMIN),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
    ],
)
def test_the_principal_running_up_in_cluster_admins_is_refused_before_any_resource(caller: str, listed: str) -> None:
    # EKS gives the cluster's creator an access entry itself (pulumi-eks always sets
    # bootstrapClusterCreatorAdminPermissions); a second entry for the same principal fails with
    # ResourceInUseException about 12 minutes into the first `up`, and in every `up` after.
    with pytest.raises(Exception, match=r"rolling:clusterAdmins names .* the IAM principal running this update"):
        run_program({**BASE, "clusterAdmins": f"{listed},{PREVIEW}"}, caller_arn=caller)
    # The same on the cluster it created: EKS's entry for it is not this stack's.
    with pytest.raises(Exception, match=r"already has an access entry for it that this stack did not make"):
        run_program(
            {**BASE, "clusterAdmins": f"{listed},{PREVIEW}"}, caller_arn=caller, cluster_version="1.35",
            access_entries={listed: {}},
        )  # fmt: skip


ADMIN_SESSION = "arn:aws:sts::123456789012:assumed-role/Admin/alice"


def test_an_admin_listed_may_run_up_on_a_cluster_another_principal_created() -> None:
    # A person listed in clusterAdmins runs `pulumi up` on a cluster the infrastructure role created: EKS
    # has no entry for them yet (the stack makes it), or the one this stack made (tagged with it).
    config = {**BASE, "clusterAdmins": ADMIN}
    made = run_program(config, caller_arn=ADMIN_SESSION, cluster_version="1.35")
    entries = made.mocks.one(CLUSTER).inputs["accessEntries"]
    assert {e["principalArn"] for e in entries.values()} == {ADMIN}
    # Every entry the stack makes carries the stack's name: what tells it from the creator's.
    assert all(e["tags"] == {"rolling:stack": "rolling/unit"} for e in entries.values())
    ours = {ADMIN: {"rolling:stack": "rolling/unit"}}
    again = run_program(config, caller_arn=ADMIN_SESSION, cluster_version="1.35", access_entries=ours)
    assert {e["principalArn"] for e in again.mocks.one(CLUSTER).inputs["accessEntries"].values()} == {ADMIN}
    assert "aws:eks/getAccessEntry:getAccessEntry" in again.mocks.calls


@pytest.mark.parametrize("tags", [{}, {"rolling:stack": "rolling/other"}], ids=["by-eks-or-by-hand", "another-stack"])
def test_an_admin_listed_whose_entry_this_stack_did_not_make_is_refused_before_any_resource(
    tags: dict[str, str],
) -> None:
    # The creator's entry (EKS made it, untagged) or one made by hand: the stack's would be a second.
    with pytest.raises(Exception, match=r"EKS already has an access entry for it that this stack did not make"):
        run_program(
            {**BASE, "clusterAdmins": ADMIN}, caller_arn=ADMIN_SESSION, cluster_version="1.35",
            access_entries={ADMIN: tags},
        )  # fmt: skip


def test_other_principals_in_cluster_admins_are_kept() -> None:
    # Another account's role of the same name is another principal.
    other = "arn:aws:iam::210987654321:role/rolling-ci-infrastructure"
    result = run_program({**BASE, "clusterAdmins": f"{other},{ADMIN}"})
    entries = {e["principalArn"] for e in result.mocks.one(CLUSTER).inputs["accessEntries"].values()}
    assert entries == {other, ADMIN}


def test_a_cluster_eks_upgraded_past_the_settings_is_refused_before_any_resource_saying_what_to_set() -> None:
    # Under upgradePolicy standard EKS upgrades the control plane itself when its version leaves standard
    # support; the settings still naming the old version would plan a downgrade, which EKS refuses mid-update.
    ahead = r"cluster rolling runs Kubernetes 1.36, a newer Kubernetes version than rolling:kubernetesVersion \(1.35\)"
    with pytest.raises(Exception, match=ahead) as caught:
        run_program({**BASE, "kubernetesVersion": "1.35"}, cluster_version="1.36")
    assert "Set rolling:kubernetesVersion 1.36" in str(caught.value)
    assert "--kubernetes-version 1.36" in str(caught.value)


@pytest.mark.parametrize("running", [None, "1.35", "1.34"])
def test_a_new_cluster_or_an_upgrade_by_the_settings_goes_on(running: str | None) -> None:
    result = run_program({**BASE, "kubernetesVersion": "1.35"}, cluster_version=running)
    assert result.mocks.one(CLUSTER).inputs["version"] == "1.35"


DENIED = (
    "operation error EKS: DescribeCluster, https response error StatusCode: 403, RequestID: 0f1e, "
    "AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/rolling-ci-infrastructure/GitHubActions "
    "is not authorized to perform: eks:DescribeCluster on resource: "
    "arn:aws:eks:ap-northeast-2:123456789012:cluster/rolling"
)
THROTTLED = (
    "operation error EKS: DescribeCluster, exceeded maximum number of attempts, 25, ThrottlingException: Rate exceeded"
)


@pytest.mark.parametrize("error", [DENIED, THROTTLED], ids=["denied", "throttled"])
def test_a_cluster_that_cannot_be_read_stops_the_update_instead_of_passing_for_none(error: str) -> None:
    # Taken for "no cluster yet", a denied or throttled DescribeCluster would skip the running-version check and
    # refuse a listed admin with a false "this update creates the cluster".
    with pytest.raises(Exception, match=r"cannot read EKS cluster rolling to check the Kubernetes version") as caught:
        run_program({**BASE, "clusterAdmins": ADMIN}, caller_arn=ADMIN_SESSION, cluster_error=error)
    said = str(caught.value)
    assert "needs eks:DescribeCluster" in said and error.rsplit(", ", maxsplit=1)[-1] in said
    assert "creates the cluster" not in said


def test_every_iam_role_of_the_stack_carries_the_accounts_permissions_boundary() -> None:
    # The infrastructure role may change only roles bounded by rolling-boundary (docs/iam/infrastructure-
    # policy.json): a role without it could not be made, and one with it can do no IAM, whatever it is given.
    from infra import boundary

    result = run_program(BASE)
    roles = result.mocks.of_type("aws:iam/role:Role")
    assert roles, "the stack makes roles (the load balancer controller's at least)"
    expected = "arn:aws:iam::123456789012:policy/rolling-boundary"
    assert {r.name: r.inputs.get("permissionsBoundary") for r in roles} == {r.name: expected for r in roles}
    # pulumi-eks's own roles are the component's children, which the mocks do not run: the same transform
    # gives them the boundary, as its rule does here for a role like theirs, and keeps a boundary one names.
    eks_role = {"assumeRolePolicy": "{}", "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]}
    assert boundary.bounded_props("aws:iam/role:Role", eks_role, expected) == {
        **eks_role,
        "permissionsBoundary": expected,
    }
    assert boundary.bounded_props("aws:iam/role:Role", {"permissionsBoundary": "x"}, expected) is None
    assert boundary.bounded_props("aws:iam/policy:Policy", {}, expected) is None
