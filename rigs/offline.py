"""The program without a cloud: under pulumi.runtime mocks, fresh each time, recording what it registered
(python -m rigs.render's cluster summary, the unit tests, the benchmarks); and the environment of a
stack in a scratch file backend (render, the end-to-end tests, the benchmarks)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor

SECRET_SIG = "4dabf18193072939515e22adb298388d"
ZONES = ["ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c", "ap-northeast-2d"]
FAKE_KUBECONFIG = {"apiVersion": "v1", "clusters": [{"name": "mock"}]}
# What the cloud would fill in: an account, the cluster's OIDC issuer, a Service's address, an ALB's name.
ACCOUNT = "123456789012"
OIDC_ISSUER = "oidc.eks.ap-northeast-2.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
SERVICE_IP = "198.18.16.10"
ALB_HOSTNAME = "k8s-rolling-nginx-0123456789-1234567890.ap-northeast-2.elb.amazonaws.com"
# Who runs the update, as `sts get-caller-identity` says in CI: a session of the infrastructure role.
# Mocks.deployment_applied_at: the Deployment applied when it is registered.
APPLIED_NOW = "now"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/rolling-ci-infrastructure/GitHubActions"


def scratch_backend(folder: Path, passphrase: str) -> dict[str, str]:
    """The environment for the engine to keep stacks in ``folder`` (a file backend, no login), offline:
    no update check, no plugin downloads, plugins from the plugin cache only."""
    return {
        "PULUMI_BACKEND_URL": f"file://{folder}",
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    }


@dataclass
class Resource:
    """One resource the program registered, as the engine would have seen it."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    secrets: set[str] = field(default_factory=set)


def unwrap(value: Any) -> Any:
    """The plain value inside the wire form of a secret, recursively."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return unwrap(value["value"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Mocks that echo inputs back as outputs and record every registration."""

    resources: list[Resource] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # The stack transforms the program registered (pulumi.runtime.register_resource_transform), run here on
    # each registration as the engine runs them (the SDK's mock monitor does not).
    transforms: list[Any] = field(default_factory=list)
    # The URNs each resource (by name) was registered to depend on: the engine creates it after
    # them and deletes it before them.
    dependencies: dict[str, set[str]] = field(default_factory=dict)
    # The names of resources registered with retain_on_delete: `pulumi destroy` leaves them in the cloud.
    retained: set[str] = field(default_factory=set)
    # The properties each resource was registered to ignore changes to (by name).
    ignored: dict[str, list[str]] = field(default_factory=dict)
    # The ID each resource was registered to import (the `import` option), by name.
    imported: dict[str, str] = field(default_factory=dict)
    # The ECR repositories the account has (aws.ecr.get_repositories).
    repositories: tuple[str, ...] = ()
    # The access entries the stack's cluster has (aws.eks.get_access_entry): each principal's tags.
    access_entries: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # The filters the program asked availability zones with.
    zone_filters: list[Any] = field(default_factory=list)
    # The rollout waits the program asked for after applying the Deployment (infra/rollout_wait.py).
    waits: list[dict[str, Any]] = field(default_factory=list)
    # The ARN aws.get_caller_identity() answers: the principal running the update.
    caller_arn: str = CALLER_ARN
    # The Kubernetes version the stack's EKS cluster runs (aws.eks.get_cluster); None: no cluster yet.
    cluster_version: str | None = None
    # What reading that cluster fails with instead (a denied or throttled DescribeCluster), when set.
    cluster_error: str | None = None
    # When the provider last applied the Deployment, as its managed fields say (RFC 3339); APPLIED_NOW: when
    # it is registered here, as by this update; None: they say nothing (an object never read back).
    deployment_applied_at: str | None = None
    # A preview that creates the stack: the provider gives no address yet (the Service's IP, the ALB's
    # hostname), which the update does; said as known and empty (the pinned provider's Service, seen on
    # the local target: spec without clusterIP), the harder case for the program.
    previewing: bool = False

    def settle(self, namespace: str, image: str, kubeconfig: str | None, **how: Any) -> str:
        """Stands in for the wait on a cluster: records what was asked, finds the rollout complete."""
        self.waits.append({"namespace": namespace, "image": image, "kubeconfig": kubeconfig} | how)
        return "complete (mocked)"

    def register_transform(self, transform: Any) -> None:
        self.transforms.append(transform)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        for transform in self.transforms:
            given = pulumi.ResourceTransformArgs(True, args.typ, args.name, dict(args.inputs), pulumi.ResourceOptions())
            result = transform(given)
            if result is not None:
                args.inputs = dict(result.props)
        secrets = {k for k, v in args.inputs.items() if isinstance(v, dict) and SECRET_SIG in v}
        inputs = {k: unwrap(v) for k, v in args.inputs.items()}
        self.resources.append(Resource(args.typ, args.name, inputs, args.provider, secrets))
        outputs = dict(args.inputs)
        if args.typ == "eks:index:Cluster":
            outputs["kubeconfigJson"] = json.dumps(FAKE_KUBECONFIG)
            outputs["oidcProviderArn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_ISSUER}"
            outputs["oidcIssuer"] = OIDC_ISSUER
        if args.typ.startswith("aws:iam/"):
            kind = args.typ.rsplit(":", 1)[1][0].lower() + args.typ.rsplit(":", 1)[1][1:]
            outputs.setdefault("arn", f"arn:aws:iam::{ACCOUNT}:{kind}/{args.name}")
            outputs.setdefault("name", args.name)
        if args.typ == "kubernetes:core/v1:Service" and not self.previewing:
            outputs["spec"] = {**dict(outputs.get("spec") or {}), "clusterIP": SERVICE_IP}
        if args.typ == "kubernetes:networking.k8s.io/v1:Ingress":
            # Previewing, a status with no address yet (as the API server makes a new Ingress's), said known.
            ingress = [] if self.previewing else [{"hostname": ALB_HOSTNAME}]
            outputs["status"] = {"loadBalancer": {"ingress": ingress}}
        if args.typ.startswith("kubernetes:") and "metadata" in outputs:
            metadata = dict(outputs["metadata"])
            metadata.setdefault("namespace", "default")
            if args.typ == "kubernetes:apps/v1:Deployment" and self.deployment_applied_at is not None:
                applied = {"manager": "pulumi-kubernetes-1f2e3d4c", "operation": "Apply"}
                at = self.deployment_applied_at
                if at == APPLIED_NOW:
                    at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                metadata["managedFields"] = [{**applied, "time": at}]
            outputs["metadata"] = metadata
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": "ap-northeast-2", "name": "ap-northeast-2", "id": "ap-northeast-2"}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.caller_arn.split(":")[4],
                "arn": self.caller_arn,
                "userId": "AROAEXAMPLE:GitHubActions",
                "id": self.caller_arn.split(":")[4],
            }, []
        if args.token == "aws:eks/getCluster:getCluster":
            name = args.args.get("name")
            if self.cluster_error is not None:
                return {}, [("name", f"reading EKS Cluster ({name}): {self.cluster_error}")]
            if self.cluster_version is None:  # the invoke fails, as the provider answers for a cluster not made yet
                return {}, [("name", f"reading EKS Cluster ({name}): couldn't find resource")]
            return {"name": args.args.get("name"), "version": self.cluster_version}, []
        if args.token == "aws:eks/getAccessEntry:getAccessEntry":
            principal = str(args.args.get("principalArn"))
            if principal not in self.access_entries:  # as the provider's data source answers a missing one
                return {}, [("principalArn", f"reading EKS Access Entry ({principal}): couldn't find resource")]
            tags = dict(self.access_entries[principal])
            return {"principalArn": principal, "tags": tags, "tagsAll": tags, "id": principal}, []
        if args.token == "aws:ecr/getRepositories:getRepositories":
            return {"names": list(self.repositories), "id": "ap-northeast-2"}, []
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            self.zone_filters = list(args.args.get("filters") or [])
            return {
                "names": ZONES,
                "zoneIds": [f"apne2-az{i + 1}" for i in range(len(ZONES))],
                "id": "ap-northeast-2",
            }, []
        return {}, []

    def depends_on(self, name: str, other: str) -> bool:
        """Whether resource ``name`` was registered depending on the resource named ``other``."""
        return any(urn.endswith(f"::{other}") for urn in self.dependencies.get(name, set()))

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Resource:
        """The one resource of ``typ`` (named ``name``, when given)."""
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ}{f' named {name}' if name else ''}, got {[r.name for r in found]}"
        return found[0]


class _Monitor(MockMonitor):
    """The SDK's mock monitor, also recording each registration's dependencies."""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        recorder = self.mocks
        assert isinstance(recorder, Recorder)
        recorder.dependencies[request.name] = set(request.dependencies)
        if request.retainOnDelete:
            recorder.retained.add(request.name)
        recorder.ignored[request.name] = list(request.ignoreChanges)
        if request.importId:
            recorder.imported[request.name] = request.importId
        for urns in request.propertyDependencies.values():
            recorder.dependencies[request.name] |= set(urns.urns)
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


@dataclass
class Run:
    """What one program run registered and exported."""

    mocks: Recorder
    outputs: dict[str, Any]
    secret_outputs: set[str]
    # The outputs a preview leaves to the update (unknown; their value above is None).
    unknown_outputs: set[str] = field(default_factory=set)


@contextmanager
def fresh_runtime(
    config: Mapping[str, object],
    stack: str = "unit",
    caller_arn: str = CALLER_ARN,
    cluster_version: str | None = None,
    *,
    preview: bool = False,
    repositories: tuple[str, ...] = (),
    access_entries: Mapping[str, Mapping[str, str]] | None = None,
    cluster_error: str | None = None,
) -> Iterator[Recorder]:
    """A new event loop, new mocks and new config (a preview's, when ``preview``); everything reset
    afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = Recorder(
        caller_arn=caller_arn,
        cluster_version=cluster_version,
        cluster_error=cluster_error,
        previewing=preview,
        repositories=repositories,
        access_entries=dict(access_entries or {}),
    )
    # A key with a namespace of its own (aws:region) is set as it is.
    pulumi.runtime.set_all_config({(k if ":" in k else f"rolling:{k}"): str(v) for k, v in config.items()})
    runtime_settings.reset_options()
    pulumi.runtime.set_mocks(mocks, project="rolling", stack=stack, preview=preview, monitor=_Monitor(mocks))
    try:
        yield mocks
    finally:
        runtime_settings.reset_options()
        pulumi.runtime.set_all_config({})
        loop.close()
        asyncio.set_event_loop(None)


def run_program(
    config: Mapping[str, object],
    program: Callable[[Recorder], Mapping[str, Any]] | None = None,
    caller_arn: str = CALLER_ARN,
    cluster_version: str | None = None,
    *,
    preview: bool = False,
    repositories: tuple[str, ...] = (),
    access_entries: Mapping[str, Mapping[str, str]] | None = None,
    cluster_error: str | None = None,
) -> Run:
    """Run ``program`` (by default load + build, the rollout's wait recorded by the mocks) under mocks, as
    ``caller_arn``, with an EKS cluster running
    ``cluster_version`` (None: none made yet; reading it fails with ``cluster_error`` when set) with
    ``access_entries`` (principal: tags), and the ECR
    ``repositories``, as an update or (``preview``) a preview that creates the stack; resolve every output."""
    from infra.settings import Settings
    from infra.stack import build

    body = program or (lambda mocks: build(Settings.load(), mocks.settle))
    resolved: dict[str, Any] = {}
    secrets: set[str] = set()
    unknown: set[str] = set()

    facts: dict[str, Any] = {"cluster_version": cluster_version, "repositories": repositories}
    facts |= {"access_entries": access_entries, "preview": preview, "cluster_error": cluster_error}
    with fresh_runtime(config, caller_arn=caller_arn, **facts) as mocks:

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def execute() -> pulumi.Output[Any]:
            outputs = body(mocks)

            async def settle() -> None:
                for key, value in outputs.items():
                    out = pulumi.Output.from_input(value)
                    resolved[key] = await out.future()
                    if await out.is_secret():
                        secrets.add(key)
                    # Unknown to the engine: not known, or known to hold an unknown (pulumi.UNKNOWN).
                    if not await out.is_known() or pulumi.output.contains_unknowns(resolved[key]):
                        unknown.add(key)
                        resolved[key] = None

            return pulumi.Output.from_input(asyncio.ensure_future(settle()))

        execute()
    return Run(mocks, resolved, secrets, unknown)
