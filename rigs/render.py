"""The app's Kubernetes manifests as YAML files, rendered by the real engine and provider without a cluster.

    python -m rigs.render --target eks out/          # the eks defaults
    python -m rigs.render --target local out/ imageNeedsRoot=true

The program's own workload code runs against a Kubernetes provider in render mode
(``renderYamlToDirectory``), so reviewers and scanners read exactly what `up` would apply. Only the
Kubernetes objects of the app (and its Ingress on eks) are rendered: the AWS resources and the load
balancer controller's Helm release are not manifests of the app. For eks, `eks-cluster.json` beside them
says what the cluster is made with (who may reach its API, the pinned add-ons, the log group, the
endpoint), from the program run under the unit tier's mocks.
The stack lives in a temporary file backend and is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi.automation as auto

from infra.settings import TARGETS, SettingsError
from rigs import offline

# A tag for the rendered Deployment when none is given: any valid one will do.
SAMPLE_TAG = "1.0.0"


def render(target: str, directory: Path, values: Mapping[str, object] | None = None) -> list[Path]:
    """Write the manifests of ``target`` with ``values`` over its defaults to ``directory``; return the files."""
    import pulumi_kubernetes as k8s

    from infra import stack
    from infra.settings import Settings

    config = {"target": target, "imageTag": SAMPLE_TAG, **(values or {})}
    settings = Settings.from_values(config)  # bad values fail here, before the engine starts
    directory = directory.resolve()

    def program() -> None:
        # Rendering reads no cluster. Left unset, the SDK fills kubeconfig from an ambient KUBECONFIG
        # (`eval "$(make -s env)"` sets one), which the provider refuses beside renderYamlToDirectory.
        provider = k8s.Provider("render", render_yaml_to_directory=str(directory), kubeconfig="")
        eks = settings.eks

        def alb_first(
            namespace: pulumi.Input[str], service_name: pulumi.Output[str], canary: pulumi.Output[str] | None
        ) -> list[pulumi.Resource]:
            opts = pulumi.ResourceOptions(providers=[provider])
            # On local, an Ingress only for a weighted canary (the load balancer stand-in's).
            if eks is None and canary is None:
                return []
            return [stack.ingress(settings, namespace, service_name, canary, opts)]

        stack.workload(settings, provider, stack.namespace_labels(settings), before_pods=alb_first)

    with tempfile.TemporaryDirectory(prefix="rolling-render-") as work:
        # The provider plugin reads KUBECONFIG too (for a client it does not need here): empty is unset.
        env = {**offline.scratch_backend(Path(work), "render"), "KUBECONFIG": ""}
        workspace = auto.LocalWorkspaceOptions(
            work_dir=work,
            env_vars=env,
            project_settings=auto.ProjectSettings(name="rolling-render", runtime="python"),
            secrets_provider="passphrase",
        )
        rendered = auto.create_stack(f"render-{target}", project_name="rolling-render", program=program, opts=workspace)
        rendered.up(color="never")
    return sorted(directory.rglob("*.yaml"))


def cluster_summary(values: Mapping[str, object] | None = None) -> dict[str, object]:
    """What the eks cluster is made with, as the program registers it (no AWS, no engine)."""
    mocks = offline.run_program({"target": "eks", "imageTag": SAMPLE_TAG, **(values or {})}).mocks
    cluster = mocks.one("eks:index:Cluster").inputs
    (logs,) = mocks.of_type("aws:cloudwatch/logGroup:LogGroup")
    (repository,) = mocks.of_type("aws:ecr/repository:Repository")
    return {
        "version": cluster["version"],
        "upgradePolicy": cluster["upgradePolicy"],
        "authenticationMode": cluster["authenticationMode"],
        "accessEntries": {
            entry["principalArn"]: sorted(entry["accessPolicies"])
            for entry in (cluster.get("accessEntries") or {}).values()
        },
        "addons": {
            "coredns": cluster["corednsAddonOptions"]["version"],
            "kube-proxy": cluster["kubeProxyAddonOptions"]["version"],
            "vpc-cni": cluster["vpcCniOptions"]["addonVersion"],
        },
        "controlPlaneLogs": {
            "types": cluster["enabledClusterLogTypes"],
            "group": logs.inputs["name"],
            "retentionDays": logs.inputs["retentionInDays"],
        },
        "endpoint": {
            "public": cluster["endpointPublicAccess"],
            "publicAccessCidrs": cluster.get("publicAccessCidrs", []),
            "private": cluster["endpointPrivateAccess"],
        },
        "ecr": {"name": repository.inputs["name"], "deletedWithImages": repository.inputs["forceDelete"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rigs.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("directory", type=Path, help="where the YAML files go (made if missing)")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE", help="rolling: settings over the defaults")
    args = parser.parse_args(argv)
    values = {}
    for item in args.values:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"'{item}' is not KEY=VALUE")
        values[key] = value
    try:
        summary = cluster_summary(values) if args.target == "eks" else None
        files = render(args.target, args.directory, values)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    if summary is not None:
        path = args.directory.resolve() / "eks-cluster.json"
        path.write_text(json.dumps(summary, indent=2) + "\n")
        files.append(path)
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
