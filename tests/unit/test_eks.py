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
    assert cluster["version"] == "1.34"
    assert cluster["createOidcProvider"] is True
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    namespaces = [s["namespace"] for s in cluster["fargate"]["selectors"]]
    assert namespaces == ["rolling", "kube-system"]


def test_fargate_selects_the_app_namespace() -> None:
    cluster = run(namespace="web", kubernetesVersion="1.35").mocks.one(CLUSTER).inputs
    assert [s["namespace"] for s in cluster["fargate"]["selectors"]] == ["web", "kube-system"]
    assert cluster["version"] == "1.35"


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
