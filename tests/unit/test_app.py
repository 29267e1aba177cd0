"""The app's resources, on both targets, as the engine would receive them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path

import pytest

from infra.identity import WATCHDOG
from infra.kube.lease import lease_name
from infra.rollout_wait import applied_since
from infra.settings import Settings
from infra.stack import build
from rigs.offline import ALB_HOSTNAME, APPLIED_NOW
from tests.unit.harness import Recorder, Run, run_program

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
TARGETS = {
    "local": {"target": "local", "imageTag": "1.14.2"},
    "eks": {"target": "eks", "imageTag": "1.14.2"},
}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(target: str, **extra: object) -> Run:
    return run_program({**TARGETS[target], **extra})


def test_deployment_names_labels_and_image(target: str) -> None:
    mocks = run(target).mocks
    deployment = mocks.one(DEPLOYMENT).inputs
    assert deployment["metadata"]["name"] == "nginx-deployment"
    assert deployment["metadata"]["labels"] == {"app": "nginx"}
    spec = deployment["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "nginx"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "nginx"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginxinc/nginx-unprivileged:1.14.2"


def test_rolling_update_strategy_from_settings(target: str) -> None:
    spec = run(target, replicas=5, maxSurge=2, maxUnavailable=1, minReadySeconds=3).mocks.one(DEPLOYMENT).inputs["spec"]
    assert spec["replicas"] == 5
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}
    assert spec["minReadySeconds"] == 3
    assert spec["revisionHistoryLimit"] == 5


def test_up_waits_for_the_rollout_itself_bounded_by_the_progress_deadline(target: str) -> None:
    result = run(target, imageTag="1.16.1", progressDeadlineSeconds=45)
    deployment = result.mocks.one(DEPLOYMENT).inputs
    assert deployment["spec"]["progressDeadlineSeconds"] == 45
    # The provider's own wait is off (it trusts a condition that can be the last rollout's); the program
    # waits once the Deployment is applied, for the image it applied, the deadline and a margin at most.
    assert deployment["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert "pulumi.com/timeoutSeconds" not in deployment["metadata"]["annotations"]
    (wait,) = result.mocks.waits
    margin = {"eks": 30, "local": 10}[target]
    assert wait["timeout"] == 45 + margin
    assert wait["fargate"] is (target == "eks")
    assert wait["namespace"] == "rolling"
    assert wait["image"].endswith(":1.16.1")
    assert wait["keeps_running"] is False, "a stack naming its tag puts it back after a drift"
    no_tag = {k: v for k, v in TARGETS[target].items() if k != "imageTag"}
    (kept,) = run_program(no_tag).mocks.waits  # names no tag: keeps what runs
    assert kept["keeps_running"] is True


@pytest.mark.parametrize(("applied_at", "waits"), [("now", True), ("2026-01-05T10:00:00Z", False), (None, True)])
def test_an_update_that_did_not_apply_the_deployment_does_not_wait_for_it(
    target: str, applied_at: str | None, waits: bool
) -> None:
    # The Deployment's managed fields say when the provider last changed it: this update (now), an update
    # long ago (an infrastructure change, a --target elsewhere, nothing to do), or nothing (wait: the safe side).
    def program(mocks: Recorder) -> Mapping[str, object]:
        mocks.deployment_applied_at = APPLIED_NOW if applied_at == "now" else applied_at
        return build(Settings.load(), mocks.settle)

    (wait,) = run_program(TARGETS[target], program).mocks.waits
    assert wait["started"] <= datetime.datetime.now(datetime.UTC)
    assert applied_since(wait["last_applied"], wait["started"]) is waits


def test_program_owns_the_deployment(target: str) -> None:
    annotations = run(target).mocks.one(DEPLOYMENT).inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/patchForce"] == "true"


def test_probes_resources_and_security(target: str) -> None:
    pod = run(target, cpu="500m", memory="1Gi").mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["imagePullPolicy"] == "Always"
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    # Liveness asks the server's port, never the page: a failing page sheds pods through readiness and
    # must not restart them all (kube-score's container-probes-identical).
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in container["livenessProbe"]
    # Readiness sheds a slow pod from the endpoints within 15 s; liveness restarts only a server that has
    # not accepted a connection within 10 s for a minute, never a busy one that readiness already took out.
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] == 15 and ready["timeoutSeconds"] == 2
    assert live["periodSeconds"] * live["failureThreshold"] == 60 and live["timeoutSeconds"] == 10
    resources = container["resources"]
    assert {k: resources["requests"][k] for k in ("cpu", "memory")} == {"cpu": "500m", "memory": "1Gi"}
    assert {k: resources["limits"][k] for k in ("cpu", "memory")} == {"cpu": "500m", "memory": "1Gi"}
    assert (resources["requests"]["ephemeral-storage"], resources["limits"]["ephemeral-storage"]) == ("64Mi", "256Mi")
    limits = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert limits == {"cache": "64Mi", "run": "1Mi", "tmp": "64Mi"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/cache/nginx", "/var/run", "/tmp"} <= mounted
    assert {v["name"] for v in pod["volumes"]} == {m["name"] for m in container["volumeMounts"]}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
    }


def test_an_image_that_needs_root_gets_the_four_capabilities_nginx_uses(target: str) -> None:
    result = run(target, imageNeedsRoot="true", containerPort=80)
    pod = result.mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == 80
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["CHOWN", "SETGID", "SETUID", "NET_BIND_SERVICE"],
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    labels = result.mocks.one(NAMESPACE).inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"


def test_only_the_serving_port_takes_connections(target: str) -> None:
    policy = run(target, containerPort=9000).mocks.one(NETWORK_POLICY, "nginx-network-policy").inputs
    assert policy["metadata"]["namespace"] == "rolling"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app": "nginx"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": 9000, "protocol": "TCP"}]}],
    }


def test_digest_skip_is_annotated_only_without_a_digest(target: str) -> None:
    annotations = run(target).mocks.one(DEPLOYMENT).inputs["metadata"]["annotations"]
    assert annotations["checkov.io/skip1"].startswith("CKV_K8S_43=")
    assert "rolling:imageDigest" in annotations["checkov.io/skip1"]
    pinned = run(target, imageDigest="sha256:" + "ab" * 32).mocks.one(DEPLOYMENT).inputs["metadata"]["annotations"]
    assert "checkov.io/skip1" not in pinned


def test_service_is_cluster_ip_on_port_80(target: str) -> None:
    service = run(target).mocks.one(SERVICE, "nginx-service").inputs
    assert service["metadata"]["name"] == "nginx"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": "nginx"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    # Not held by the provider until a pod backs it: the program's wait for the Deployment judges that.
    assert service["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


@pytest.mark.parametrize(("extra", "budget"), [({}, 1), ({"replicas": 10, "maxUnavailable": "30%"}, 3)])
def test_disruption_budget_follows_rollout(target: str, extra: dict[str, object], budget: int) -> None:
    pdb = run(target, **extra).mocks.one(PDB, "nginx-pdb").inputs
    assert pdb["spec"]["maxUnavailable"] == budget
    assert pdb["spec"]["selector"] == {"matchLabels": {"app": "nginx"}}


def test_namespace_of_its_own_unless_default(target: str) -> None:
    if target == "local":  # on eks the program must own the namespace (a settings rule)
        assert run(target, namespace="default").mocks.of_type(NAMESPACE) == []
    namespace = run(target).mocks.one(NAMESPACE).inputs["metadata"]
    assert namespace["name"] == "rolling"
    gates = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"} if target == "eks" else {}
    assert namespace["labels"] == {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        **gates,
    }
    result = run(target, namespace="web")
    assert result.mocks.one(NAMESPACE).inputs["metadata"]["name"] == "web"
    for typ in (DEPLOYMENT, SERVICE, PDB, NETWORK_POLICY):
        for resource in result.mocks.of_type(typ):
            assert resource.inputs["metadata"]["namespace"] == "web"
    assert result.outputs["namespace"] == "web"


def test_every_kubernetes_resource_uses_the_explicit_provider(target: str) -> None:
    mocks = run(target, namespace="web").mocks
    (provider,) = mocks.of_type("pulumi:providers:kubernetes")
    kubernetes = [r for r in mocks.resources if r.type.startswith("kubernetes:")]
    # The app's six (namespace, keep-alive ConfigMap, Deployment, Service, PodDisruptionBudget,
    # NetworkPolicy) and the watchdog's three (ServiceAccount, Role, RoleBinding); on eks the controller's
    # Helm release, the Ingress, and the canary's Service, NetworkPolicy and PodDisruptionBudget
    # (canaryTraffic weights) too.
    assert len(kubernetes) == {"local": 9, "eks": 14}[target]
    for resource in kubernetes:
        assert resource.provider is not None
        assert (
            resource.provider.startswith("urn:pulumi:unit::rolling::") and f"::{provider.name}::" in resource.provider
        )


def test_outputs(target: str) -> None:
    outputs = run(target).outputs
    assert outputs["image"] == "nginxinc/nginx-unprivileged:1.14.2"
    assert outputs["deploymentName"] == "nginx-deployment"
    assert outputs["serviceName"] == "nginx"
    assert outputs["namespace"] == "rolling"
    url = {"local": "http://198.18.16.10", "eks": f"http://{ALB_HOSTNAME}"}[target]
    assert outputs["url"] == url


def test_a_preview_that_creates_the_stack_leaves_its_url_to_the_update(target: str) -> None:
    # The provider has no address for a Service or an Ingress it only plans. A guess said as known
    # ("http://None") goes into a saved plan, and the update that finds the real address then differs
    # from its plan in a stack output: the engine fails it after making everything, with no message
    # (pulumi/pulumi#16670). The infrastructure workflows apply saved plans, so the url stays unknown.
    previewed = run_program(TARGETS[target], preview=True)
    assert "url" in previewed.unknown_outputs
    assert previewed.outputs["image"] == "nginxinc/nginx-unprivileged:1.14.2"
    assert previewed.unknown_outputs.isdisjoint({"image", "deploymentName", "serviceName", "namespace"})
    assert "url" not in run(target).unknown_outputs


def test_digest_pins_the_container(target: str) -> None:
    digest = "sha256:" + "ab" * 32
    deployment = run(target, imageDigest=digest).mocks.one(DEPLOYMENT).inputs
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"nginxinc/nginx-unprivileged@{digest}"


@pytest.mark.parametrize("text", ['{"apiVersion": "v1", "kind": "Config"}', "apiVersion: v1\nkind: Config\n"])
def test_local_kubeconfig_text_stays_secret(text: str) -> None:
    (provider,) = run("local", kubeconfig=text).mocks.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == text
    assert "kubeconfig" in provider.secrets


def test_local_kubeconfig_path_is_passed_as_is(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\n")
    (provider,) = run("local", kubeconfig=str(path)).mocks.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == str(path)


@pytest.mark.parametrize(("target", "drain", "grace"), [("eks", 30, 45), ("local", 5, 20)])
def test_pods_drain_before_they_stop_by_default(target: str, drain: int, grace: int) -> None:
    pod = run(target).mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": drain}}}
    assert pod["terminationGracePeriodSeconds"] == grace


def test_drain_and_grace_period_from_settings(target: str) -> None:
    pod = run(target, drainSeconds=32, terminationGracePeriodSeconds=60).mocks.one(DEPLOYMENT).inputs["spec"]
    assert pod["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 32
    assert pod["template"]["spec"]["terminationGracePeriodSeconds"] == 60


def test_pods_may_stop_at_once_where_no_alb_routes_to_them() -> None:
    stopped_at_once = run("local", drainSeconds=0).mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    assert "lifecycle" not in stopped_at_once["containers"][0]
    assert stopped_at_once["terminationGracePeriodSeconds"] == 15


def test_a_named_image_is_applied(target: str) -> None:
    result = run(target)
    (deployment,) = result.mocks.of_type(DEPLOYMENT)
    assert result.mocks.ignored[deployment.name] == []
    assert result.outputs["image"] == "nginxinc/nginx-unprivileged:1.14.2"
    assert result.outputs["imageTag"] == "1.14.2"


def test_with_no_image_named_the_running_one_is_kept(target: str) -> None:
    # An `up` from a clean checkout (no imageTag in the stack file) must not roll back what the deploy
    # pipeline shipped: the engine keeps the image in the stack's state; only a new Deployment starts
    # the bootstrap image.
    config = {k: v for k, v in TARGETS[target].items() if k != "imageTag"}
    result = run_program({**config, "bootstrapImage": "localhost:5000/rolling-app:1.14.2"})
    (deployment,) = result.mocks.of_type(DEPLOYMENT)
    # Why it runs goes with it: a stack file that names no image names no cause either.
    assert result.mocks.ignored[deployment.name] == [
        "spec.template.spec.containers[0].image",
        'metadata.annotations["kubernetes.io/change-cause"]',
    ]
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost:5000/rolling-app:1.14.2"
    # The outputs say what the Deployment runs (here, under mocks, what it was created with).
    assert result.outputs["image"] == "localhost:5000/rolling-app:1.14.2"


def test_a_new_stack_starts_the_base_the_app_image_builds_on() -> None:
    from infra.settings import BOOTSTRAP_IMAGE

    dockerfile = (Path(__file__).resolve().parents[2] / "app" / "Dockerfile").read_text()
    assert f"ARG BASE={BOOTSTRAP_IMAGE}\n" in dockerfile


CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


@pytest.mark.parametrize(("target", "idle", "most"), [("eks", 75, 20), ("local", 2, 2)])
def test_the_server_gets_its_keepalive_limits_by_default(target: str, idle: int, most: int) -> None:
    mocks = run(target).mocks
    keepalive = mocks.one(CONFIG_MAP).inputs
    assert keepalive["data"] == {"keepalive.conf": f"keepalive_timeout {idle}s {idle - 1}s;\nkeepalive_time {most}s;\n"}
    assert keepalive["immutable"] is True
    pod = mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "keepalive")
    assert volume["configMap"]["name"] == keepalive["metadata"]["name"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "keepalive")
    assert mount == {"name": "keepalive", "mountPath": "/etc/nginx/keepalive.d", "readOnly": True}


def test_new_keepalive_limits_are_a_new_config_map_and_restart_the_pods() -> None:
    # nginx reads its configuration at start: the pods must be replaced to apply new limits, so the
    # ConfigMap's name (which the pod template names) changes with its content; the same limits, the same name.
    def name(**values: object) -> str:
        return str(run("local", **values).mocks.one(CONFIG_MAP).inputs["metadata"]["name"])

    assert name() == name(imageTag="1.16.1")
    assert name() != name(keepAliveSeconds=1)
    assert name().startswith("nginx-keepalive-")


def test_pods_prefer_to_spread_across_zones_never_waiting_for_it(target: str) -> None:
    pod = run(target).mocks.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "nginx"}},
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]


def test_no_canary_unless_the_settings_name_one(target: str) -> None:
    result = run(target)
    assert [r.inputs["metadata"]["name"] for r in result.mocks.of_type(DEPLOYMENT)] == ["nginx-deployment"]
    assert "canaryImage" not in result.outputs


def test_a_canary_is_the_same_pod_but_for_its_image_and_track_label(target: str) -> None:
    result = run(target, canaryTag="1.16.1", canaryReplicas=2, canaryTraffic="pods")
    deployments = {r.inputs["metadata"]["name"]: r.inputs for r in result.mocks.of_type(DEPLOYMENT)}
    main, canary = deployments["nginx-deployment"], deployments["nginx-canary"]
    canary_labels = {"app": "nginx", "track": "canary"}
    assert canary["metadata"]["labels"] == canary_labels
    assert canary["spec"]["selector"] == {"matchLabels": canary_labels}
    assert canary["spec"]["template"]["metadata"]["labels"] == canary_labels
    assert canary["spec"]["replicas"] == 2
    (container,) = canary["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginxinc/nginx-unprivileged:1.16.1"
    # The main Deployment is untouched: its image, replicas and pods are as without a canary.
    assert main == run(target, canaryTraffic="pods").mocks.one(DEPLOYMENT).inputs
    # Everything else of the pod is the main Deployment's: what is judged is the new version alone.
    main_pod = main["spec"]["template"]["spec"]
    canary_pod = canary["spec"]["template"]["spec"]
    assert {**canary_pod, "containers": None} == {**main_pod, "containers": None}
    assert {**container, "image": None} == {**main_pod["containers"][0], "image": None}
    # The Service routes to both: its selector is the labels both carry.
    service = result.mocks.one(SERVICE).inputs
    assert service["spec"]["selector"].items() <= canary_labels.items()
    assert result.outputs["canaryImage"] == "nginxinc/nginx-unprivileged:1.16.1"


def test_a_weighted_canary_has_a_service_of_its_own_and_the_apps_service_not_its_pods() -> None:
    # canaryTraffic weights (eks's default): the ALB weighs two target groups, one per Service, so a pod must
    # be behind one of them only. The canary's pods carry an app label of their own.
    result = run("eks", canaryTag="1.16.1", canaryReplicas=2)
    canary = result.mocks.one(DEPLOYMENT, "nginx-canary").inputs
    labels = {"app": "nginx-canary", "track": "canary"}
    assert canary["metadata"]["labels"] == canary["spec"]["template"]["metadata"]["labels"] == labels
    assert canary["spec"]["selector"] == {"matchLabels": labels}
    app_service = result.mocks.one(SERVICE, "nginx-service").inputs["spec"]["selector"]
    canary_service = result.mocks.one(SERVICE, "nginx-canary-service").inputs
    assert not app_service.items() <= labels.items(), "the app's Service must not select the canary's pods"
    assert canary_service["metadata"]["name"] == "nginx-canary"
    assert canary_service["spec"]["selector"] == labels
    assert canary_service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    # The Deployment's own selector does not match them either; the same rule covers their port.
    main = result.mocks.one(DEPLOYMENT, "nginx-deployment").inputs
    assert not main["spec"]["selector"]["matchLabels"].items() <= labels.items()
    policy = result.mocks.one(NETWORK_POLICY, "nginx-canary-network-policy").inputs["spec"]
    assert policy["podSelector"] == {"matchLabels": labels}
    budget = result.mocks.one(PDB, "nginx-canary-pdb").inputs["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": labels}}
    # Everything else of the pod is still the main Deployment's.
    assert {**canary["spec"]["template"]["spec"], "containers": None} == {
        **main["spec"]["template"]["spec"],
        "containers": None,
    }


def test_the_canarys_service_is_there_before_any_canary_and_after_it() -> None:
    # Its target group, and so the readiness gates of the canary's first pod, exist before the first canary.
    result = run("eks")
    assert result.mocks.one(SERVICE, "nginx-canary-service").inputs["metadata"]["name"] == "nginx-canary"
    assert [r.name for r in result.mocks.of_type(DEPLOYMENT)] == ["nginx-deployment"]
    pods_way = run("eks", canaryTraffic="pods").mocks
    assert [r.name for r in pods_way.of_type(SERVICE)] == ["nginx-service"]


def test_the_watchdogs_account_may_touch_the_stacks_lease_and_app_and_the_ingress_only_when_weighted(
    target: str,
) -> None:
    # The rollout command starts the watchdog's Job under this account with each judged release
    # (infra/kube/watchdog.py); the deploy role, which may not grant RBAC, needs none of it.
    mocks = run(target).mocks
    (role,) = mocks.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    (binding,) = mocks.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    (account,) = mocks.of_type("kubernetes:core/v1:ServiceAccount")
    assert role.inputs["metadata"]["name"] == account.inputs["metadata"]["name"] == WATCHDOG
    assert binding.inputs["roleRef"]["name"] == WATCHDOG and binding.inputs["subjects"][0]["name"] == WATCHDOG
    resources = {res: rule for rule in role.inputs["rules"] for res in rule["resources"]}
    assert resources["leases"]["resourceNames"] == [lease_name("unit")]  # the stack the mocks run
    # eks's default canary is weighted: the watchdog sets its weight to 0 on the Ingress.
    assert ("ingresses" in resources) is (target == "eks")
    assert "ingresses" not in {
        res
        for rule in run(target, canaryTraffic="pods")
        .mocks.one("kubernetes:rbac.authorization.k8s.io/v1:Role")
        .inputs["rules"]
        for res in rule["resources"]
    }
