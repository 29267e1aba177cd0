"""The config contract: every bad value is refused by key, every documented form accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import LocalSettings, Settings, SettingsError, declarations
from tests.unit.samples.settings import NON_DEFAULT

BASE = {"target": "local", "imageTag": "1.16.1"}
EKS = {"target": "eks", "imageTag": "1.16.1"}


def refused(values: dict[str, object]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_values(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("imageTag", "latest", "'latest' is not allowed"),
        ("imageTag", "LATEST", "'LATEST' is not allowed"),
        ("imageTag", "1.16 1", "is not a Docker tag"),
        ("imageTag", "nginx/1.16", "is not a Docker tag"),
        ("imageTag", ".1", "is not a Docker tag"),
        ("imageTag", "-1", "is not a Docker tag"),
        ("imageTag", "a" * 129, "at most 128"),
        ("imageDigest", "sha256:abc", "is not a digest"),
        ("imageDigest", "md5:" + "a" * 64, "is not a digest"),
        ("imageDigest", "sha256:" + "A" * 64, "is not a digest"),
        ("imageRepository", "Nginx", "is not a repository reference"),
        ("imageRepository", "nginx:1.16.1", "carries a tag"),
        ("imageRepository", "nginx@sha256:" + "a" * 64, "carries a digest"),
        ("replicas", "0", "too small"),
        ("replicas", "-1", "too small"),
        ("replicas", "abc", "not a whole number"),
        ("maxUnavailable", "101%", "over 100%"),
        ("maxSurge", "-1", "negative"),
        ("maxSurge", "many", "not a whole number or a percentage"),
        ("namespace", "Web_App", "not a DNS-1123 label"),
        ("namespace", "a" * 64, "not a DNS-1123 label"),
        ("target", "gke", "'gke' is not accepted; use one of: eks, local"),
        ("progressDeadlineSeconds", "-1", "too small"),
        ("minReadySeconds", "-5", "too small"),
        ("cpu", "lots", "not a cpu quantity"),
        ("memory", "512MB", "not a memory quantity"),
        ("kubeconfig", "/nonexistent/kubeconfig", "neither kubeconfig text nor a file"),
        ("clusterName", "-rolling", "not an EKS cluster name"),
        ("kubernetesVersion", "1.3", "not a Kubernetes minor version"),
        ("vpcCidr", "10.0.0.0/8", "use /16 to /20"),
        ("vpcCidr", "10.0.0.1/16", "not an IPv4 network"),
        ("azCount", "1", "out of range"),
        ("natGateways", "none", "use one of: single, perAz"),
        ("clusterLogTypes", "api,kubelet", "'kubelet' not known"),
        ("containerPort", "0", "out of range; use 1 to 65535"),
        ("containerPort", "http", "not a whole number"),
        ("imageNeedsRoot", "yes", "'yes' is not accepted; use true or false"),
        ("clusterAdmins", "Admin", "'Admin' is not an IAM role or user ARN"),
        ("clusterAdmins", "arn:aws:iam::1234:role/Admin", "is not an IAM role or user ARN"),
        ("clusterAdmins", "arn:aws:iam::123456789012:group/Admins", "is not an IAM role or user ARN"),
        # What `aws sts get-caller-identity` prints inside CI: the session, not the role.
        (
            "clusterAdmins",
            "arn:aws:sts::123456789012:assumed-role/Deploy/gh-run-7",
            "name the role itself: arn:aws:iam::123456789012:role/Deploy",
        ),
        ("deployRoleArn", "arn:aws:iam::123456789012:user/alice", "is not an IAM role ARN"),
        ("previewRoleArn", "arn:aws:iam::123456789012:role/", "is not an IAM role ARN"),
        ("publicAccessCidrs", "203.0.113.1/24", "'203.0.113.1/24' is not an IPv4 network"),
        ("apiEndpoint", "none", "use one of: public, private"),
        ("clusterLogRetentionDays", "31", "31 is not a retention CloudWatch accepts"),
        ("ecrOnDestroy", "keep", "use one of: delete, retain"),
        ("upgradePolicy", "never", "use one of: standard, extended"),
        ("corednsVersion", "1.13.2", "is not an EKS add-on version"),
    ],
)
def test_bad_value_is_refused_naming_key_and_value(key: str, value: str, says: str) -> None:
    message = refused({**BASE, key: value})
    assert f"rolling:{key}" in message
    assert says in message


def test_a_privileged_port_needs_an_image_that_starts_as_root() -> None:
    message = refused({**BASE, "containerPort": "80"})
    assert "rolling:containerPort 80 is a privileged port" in message
    assert "imageNeedsRoot true" in message
    settings = Settings.from_values({**BASE, "containerPort": "80", "imageNeedsRoot": "True"})
    assert (settings.container_port, settings.image_needs_root) == (80, True)
    assert Settings.from_values({**BASE, "imageNeedsRoot": False}).image_needs_root is False


def test_unset_tag_keeps_the_running_image() -> None:
    kept = Settings.from_values({"target": "local"})
    assert kept.image_tag is None and kept.keeps_running_image
    assert kept.image == "nginxinc/nginx-unprivileged:1.30.6-alpine"  # only a new Deployment starts it
    named = Settings.from_values({"target": "local", "imageTag": "1.16.1"})
    assert not named.keeps_running_image and named.image == "nginxinc/nginx-unprivileged:1.16.1"
    digest = "sha256:" + "a" * 64
    assert not Settings.from_values({"target": "local", "imageDigest": digest}).keeps_running_image
    message = refused({"target": "local", "bootstrapImage": "nginx"})
    assert "rolling:bootstrapImage 'nginx' names no tag or digest" in message


def test_both_zero_surge_and_unavailable_refused() -> None:
    message = refused({**BASE, "maxSurge": "0", "maxUnavailable": "0%"})
    assert "rolling:maxSurge/maxUnavailable" in message
    assert "both 0" in message


@pytest.mark.parametrize(
    ("cpu", "memory", "says"),
    [("300m", "256Mi", "not a Fargate vCPU size"), ("250m", "4Gi", "does not fit a Fargate size")],
)
def test_cpu_memory_pair_fargate_cannot_run(cpu: str, memory: str, says: str) -> None:
    message = refused({**EKS, "cpu": cpu, "memory": memory})
    assert f"rolling:cpu/memory {cpu}/{memory}" in message
    assert says in message


def test_local_target_takes_sizes_fargate_does_not_offer() -> None:
    settings = Settings.from_values({**BASE, "cpu": "100m", "memory": "64Mi"})
    assert (settings.cpu, settings.memory) == ("100m", "64Mi")


def test_deadline_must_exceed_min_ready() -> None:
    message = refused({**BASE, "minReadySeconds": "30", "progressDeadlineSeconds": "30"})
    assert "rolling:progressDeadlineSeconds 30 must be greater than minReadySeconds 30" in message


def test_eks_namespace_outside_fargate_profile_refused() -> None:
    message = refused({**EKS, "namespace": "web", "fargateNamespaces": "default,batch"})
    assert "rolling:fargateNamespaces 'default,batch' does not select namespace 'web'" in message


def test_kubeconfig_refused_on_eks() -> None:
    message = refused({**EKS, "kubeconfig": "apiVersion: v1\nkind: Config\n"})
    assert "rolling:kubeconfig is only read by target local" in message


def test_unknown_key_refused() -> None:
    assert "rolling:imagetag is not a setting" in refused({**BASE, "imagetag": "1.0"})


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_values({"target": "local", "imageTag": "latest", "replicas": "0", "namespace": "X"})
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("tag", ["1.16.1", "v2", "a1b2c3d", "1.25-alpine", "_x", "A" * 128, "latest-1"])
def test_accepted_tags(tag: str) -> None:
    assert Settings.from_values({**BASE, "imageTag": tag}).image == f"nginxinc/nginx-unprivileged:{tag}"


def test_digest_pins_the_image() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    settings = Settings.from_values({**BASE, "imageDigest": digest})
    assert settings.image == f"nginxinc/nginx-unprivileged@{digest}"


@pytest.mark.parametrize(
    "repository",
    ["nginx", "library/nginx", "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/web", "localhost:5000/a/b-c"],
)
def test_accepted_repositories(repository: str) -> None:
    assert Settings.from_values({**BASE, "imageRepository": repository}).image == f"{repository}:1.16.1"


def test_defaults() -> None:
    settings = Settings.from_values(EKS)
    assert settings.replicas == 3
    assert (settings.rollout.max_surge, settings.rollout.max_unavailable) == (1, 0)
    assert settings.namespace == "rolling"
    # The figures the README's settings table and docs/rollouts.md give users.
    assert settings.progress_deadline_seconds == 600
    assert settings.await_timeout_seconds == 630
    assert settings.eks is not None
    assert settings.eks.fargate_namespaces == ("rolling", "kube-system")
    assert settings.eks.cluster_log_types == ("api", "audit", "authenticator")
    assert Settings.from_values(BASE).progress_deadline_seconds == 60
    assert Settings.from_values(BASE).await_timeout_seconds == 70


def test_local_target_carries_no_eks_settings() -> None:
    assert Settings.from_values(BASE).eks is None


@pytest.mark.parametrize("key", [d.key for d in declarations() if d.eks_only])
def test_eks_only_key_set_on_local_is_refused(key: str) -> None:
    message = refused({**BASE, key: NON_DEFAULT[key]})
    assert f"rolling:{key} is only read by target eks; target local does not use it" in message


def test_numbers_from_yaml_are_accepted() -> None:
    settings = Settings.from_values({**BASE, "replicas": 5, "maxSurge": 2, "maxUnavailable": "25%"})
    assert (settings.replicas, settings.rollout.max_surge, settings.rollout.max_unavailable) == (5, 2, 1)


def test_kubeconfig_path_and_text(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\n")
    assert Settings.from_values({**BASE, "kubeconfig": str(path)}).local == LocalSettings(str(path))
    text = "apiVersion: v1\nkind: Config\n"
    assert Settings.from_values({**BASE, "kubeconfig": text}).local == LocalSettings(text)


def test_schema_unset_values_mean_unset() -> None:
    settings = Settings.from_values({**BASE, "imageDigest": "", "kubeconfig": "", "progressDeadlineSeconds": 0})
    assert settings.image_digest is None
    assert settings.local == LocalSettings(None)
    assert settings.progress_deadline_seconds == 60


@pytest.mark.parametrize(
    ("key", "value"), [("ecrRepository", "Rolling"), ("ecrRepository", "a"), ("ecrKeepImages", "0")]
)
def test_registry_settings_refused(key: str, value: str) -> None:
    assert f"rolling:{key}" in refused({**EKS, key: value})


def test_drain_defaults_per_target_and_grace_period_covers_it() -> None:
    eks, local = Settings.from_values(EKS), Settings.from_values(BASE)
    assert (eks.drain_seconds, eks.termination_grace_period_seconds) == (30, 45)
    assert (local.drain_seconds, local.termination_grace_period_seconds) == (5, 20)
    tuned = Settings.from_values({**BASE, "drainSeconds": "10", "terminationGracePeriodSeconds": "11"})
    assert (tuned.drain_seconds, tuned.termination_grace_period_seconds) == (10, 11)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"drainSeconds": "20", "terminationGracePeriodSeconds": "20"},
            "rolling:terminationGracePeriodSeconds 20 must be greater than drainSeconds 20",
        ),
        ({"terminationGracePeriodSeconds": "5"}, "must be greater than drainSeconds 30"),
        ({"kubernetesVersion": "1.29"}, "rolling:kubernetesVersion 1.29 has no preStop sleep action"),
        ({"drainSeconds": "-2"}, "rolling:drainSeconds -2 is out of range; use 0 to 3600"),
    ],
)
def test_combinations_that_cannot_drain_are_refused(values: dict[str, str], says: str) -> None:
    assert says in refused({**EKS, **values})


def test_behind_an_alb_pods_must_drain() -> None:
    # Locally a pod may stop at once (the traffic tests show what that costs); behind an ALB it may not.
    assert Settings.from_values({**BASE, "drainSeconds": "0"}).drain_seconds == 0
    message = refused({**EKS, "drainSeconds": "0", "deregistrationDelaySeconds": "0"})
    assert "rolling:drainSeconds 0 is shorter than deregistrationDelaySeconds 0 plus the 5 s" in message
    message = refused({**EKS, "drainSeconds": "24"})
    assert "use drainSeconds 25 or more, or a shorter deregistrationDelaySeconds" in message
    tuned = Settings.from_values({**EKS, "drainSeconds": "15", "deregistrationDelaySeconds": "10"})
    assert tuned.eks is not None and (tuned.drain_seconds, tuned.eks.deregistration_delay_seconds) == (15, 10)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("albScheme", "public", "'public' is not accepted; use one of: internet-facing, internal"),
        ("certificateArn", "arn:aws:acm:ap-northeast-2:1234:certificate/x", "is not an ACM certificate ARN"),
        ("certificateArn", "arn:aws:iam::123456789012:server-certificate/x", "is not an ACM certificate ARN"),
        ("deregistrationDelaySeconds", "3601", "out of range; use 0 to 3600"),
        ("namespace", "default", "'default' cannot be used on eks"),
    ],
)
def test_load_balancer_settings_refused(key: str, value: str, says: str) -> None:
    message = refused({**EKS, key: value})
    assert f"rolling:{key}" in message and says in message


def test_load_balancer_defaults_and_certificate() -> None:
    eks = Settings.from_values(EKS).eks
    assert eks is not None
    assert (eks.alb_scheme, eks.certificate_arn, eks.deregistration_delay_seconds) == ("internet-facing", None, 20)
    arn = "arn:aws:acm:ap-northeast-2:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"
    with_tls = Settings.from_values({**EKS, "certificateArn": arn}).eks
    assert with_tls is not None and with_tls.certificate_arn == arn
    assert Settings.from_values({**BASE, "namespace": "default"}).namespace == "default"


def test_principal_arns_in_other_partitions_and_paths_accepted() -> None:
    values = {
        **EKS,
        "clusterAdmins": "arn:aws-us-gov:iam::123456789012:role/a/b/Admin, arn:aws:iam::123456789012:user/bob",
        "deployRoleArn": "arn:aws-cn:iam::123456789012:role/ci/deploy",
    }
    eks = Settings.from_values(values).eks
    assert eks is not None
    assert eks.cluster_admins == (
        "arn:aws-us-gov:iam::123456789012:role/a/b/Admin",
        "arn:aws:iam::123456789012:user/bob",
    )
    assert eks.deploy_role_arn == "arn:aws-cn:iam::123456789012:role/ci/deploy"


def test_addon_builds_default_for_the_default_version_only() -> None:
    eks = Settings.from_values(EKS).eks
    assert eks is not None
    assert (eks.kubernetes_version, eks.kube_proxy_version) == ("1.35", "v1.35.0-eksbuild.2")
    message = refused({**EKS, "kubernetesVersion": "1.36", "corednsVersion": "v1.13.2-eksbuild.1"})
    assert "rolling:kubernetesVersion 1.36 has no pinned add-on builds" in message
    assert "set kubeProxyVersion, vpcCniVersion" in message


def test_fargate_profile_takes_five_selectors() -> None:
    assert Settings.from_values({**EKS, "fargateNamespaces": "rolling,a,b,c"}).eks is not None
    message = refused({**EKS, "fargateNamespaces": "rolling,a,b,c,d"})
    assert "rolling:fargateNamespaces selects 6 namespaces with kube-system" in message


def test_eks_reads_no_local_key_and_local_no_eks_key() -> None:
    eks = Settings.from_values(EKS)
    assert eks.local is None and eks.eks is not None
    local = Settings.from_values(BASE)
    assert local.eks is None and local.local is not None


def test_derived_values_do_not_depend_on_the_order_of_the_rules() -> None:
    # The rules only check: in reverse order they find the same problems and the same settings come out.
    from infra.settings import read, rules

    values = {**EKS, "namespace": "web", "drainSeconds": 40, "deregistrationDelaySeconds": 30}
    forward = Settings.from_values(values)
    bad = {**EKS, "namespace": "web", "fargateNamespaces": "default,batch", "deregistrationDelaySeconds": 30}
    with pytest.raises(SettingsError) as first:
        Settings.from_values(bad)
    backwards = tuple(reversed(rules.RULES))
    assert read.read(values, Settings, backwards) == forward
    with pytest.raises(SettingsError) as second:
        read.read(bad, Settings, backwards)
    assert sorted(first.value.problems) == sorted(second.value.problems)
    assert forward.eks is not None and forward.eks.fargate_namespaces == ("web", "kube-system")
    assert forward.termination_grace_period_seconds == 55  # drainSeconds + 15


def test_keepalive_defaults_per_target_fit_the_drain_and_the_alb() -> None:
    local, eks = Settings.from_values({"target": "local"}), Settings.from_values({"target": "eks"})
    assert (local.keep_alive_seconds, local.connection_max_seconds, local.drain_seconds) == (2, 2, 5)
    assert (eks.keep_alive_seconds, eks.connection_max_seconds) == (75, 20)
    # Unset, they shrink to fit a shorter local drain.
    short = Settings.from_values({"target": "local", "drainSeconds": "3"})
    assert (short.keep_alive_seconds, short.connection_max_seconds) == (1, 1)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"target": "local", "keepAliveSeconds": "3"},
            "rolling:keepAliveSeconds 3 plus connectionMaxSeconds 2 must be at most drainSeconds 5 - 1",
        ),
        ({"target": "local", "drainSeconds": "2"}, "use drainSeconds 3 or more"),
        ({"target": "eks", "keepAliveSeconds": "60"}, "rolling:keepAliveSeconds 60 is not longer than the ALB's idle"),
        ({"target": "local", "connectionMaxSeconds": "0"}, "rolling:connectionMaxSeconds 0 is not accepted"),
    ],
)
def test_keepalive_limits_that_contradict_the_drain_or_the_alb_are_refused(values: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_values(values)
    assert says in str(refused.value)


def test_keepalive_limits_that_fit_are_taken() -> None:
    fits = Settings.from_values(
        {"target": "local", "drainSeconds": "30", "keepAliveSeconds": "20", "connectionMaxSeconds": "9"}
    )
    assert (fits.keep_alive_seconds, fits.connection_max_seconds) == (20, 9)
    # On eks the clients' connections are the ALB's, which stops using a pod once it deregisters it.
    assert Settings.from_values({"target": "eks", "keepAliveSeconds": "120"}).keep_alive_seconds == 120


def test_analysis_defaults_per_target() -> None:
    local, eks = Settings.from_values({"target": "local"}), Settings.from_values({"target": "eks"})
    assert (local.analysis, local.analysis_rate, local.min_requests, local.max_p99_ms) == (True, 10, 50, 1000)
    assert local.max_error_ratio == pytest.approx(0.02)
    assert (local.bake_seconds, eks.bake_seconds) == (5, 60)
    assert Settings.from_values({"target": "eks", "bakeSeconds": "0"}).bake_seconds == 0


@pytest.mark.parametrize(("text", "ratio"), [("2%", 0.02), ("0.5%", 0.005), ("0.02", 0.02), ("0", 0.0), ("100%", 1.0)])
def test_max_error_ratio_takes_a_percentage_or_a_decimal(text: str, ratio: float) -> None:
    assert Settings.from_values({"target": "local", "maxErrorRatio": text}).max_error_ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"maxErrorRatio": "2"}, "rolling:maxErrorRatio '2' is out of range; use 0% to 100% (0 to 1)"),
        ({"maxErrorRatio": "two"}, "rolling:maxErrorRatio 'two' is not a share; use a percentage such as 2%"),
        ({"analysisRate": "0"}, "rolling:analysisRate 0 is out of range; use 1 to 50"),
        ({"minRequests": "0"}, "rolling:minRequests 0 is out of range"),
        ({"bakeSeconds": "-2"}, "rolling:bakeSeconds -2 is out of range"),
        ({"analysis": "yes"}, "rolling:analysis 'yes' is not accepted; use true or false"),
    ],
)
def test_analysis_settings_out_of_range_are_refused(values: dict[str, str], says: str) -> None:
    assert says in refused({**BASE, **values})


def test_canary_settings() -> None:
    none = Settings.from_values({"target": "local", "imageTag": "1.14.2"})
    assert (none.canary_tag, none.canary_image, none.canary_replicas) == (None, None, 1)
    assert (none.canary_seconds, Settings.from_values({"target": "eks"}).canary_seconds) == (15, 120)
    one = Settings.from_values({"target": "local", "imageTag": "1.14.2", "canaryTag": "1.16.1", "canaryReplicas": "2"})
    assert one.canary_image == "nginxinc/nginx-unprivileged:1.16.1" and one.canary_replicas == 2
    assert "rolling:canaryTag 'latest' is not allowed" in refused({**BASE, "canaryTag": "latest"})


def test_a_rule_reading_a_field_it_does_not_declare_fails_instead_of_passing_silently() -> None:
    from infra.settings import rules

    @rules.rule("replicas")
    def _misspelt(parsed: rules.Reads, target: str | None) -> str | None:
        return "too many" if (parsed.get("replica") or 0) > 1 else None

    with pytest.raises(rules.UndeclaredReadError, match="misspelt reads 'replica'"):
        _misspelt({"replicas": 3}, "local")


def test_a_rule_declaring_a_field_the_settings_lack_stops_the_module_loading() -> None:
    from infra.settings import rules

    @rules.rule("replica")
    def _misspelt(parsed: rules.Reads, target: str | None) -> str | None:
        return None

    with pytest.raises(TypeError, match=r"rule misspelt declares \['replica'\]"):
        rules.check_declared((*rules.RULES, _misspelt), {d.field for d in declarations()})


def test_a_canary_gets_its_share_by_weights_on_eks_and_by_pods_elsewhere() -> None:
    eks = {"target": "eks", "imageTag": "1.16.1"}
    assert Settings.from_values(eks).canary_traffic == "weights"
    assert Settings.from_values(BASE).canary_traffic == "pods"
    # The ALB's metrics judge the app's target group: a canary judged by them stays behind it.
    assert Settings.from_values({**eks, "analysisSource": "cloudwatch"}).canary_traffic == "pods"
    # On local, weights are asked for (the load balancer is the stand-in on the machine), with eks's steps.
    local = Settings.from_values({**BASE, "canaryTraffic": "weights", "canarySteps": "10,50"})
    assert (local.canary_traffic, local.canary_steps) == ("weights", (10, 50))
    assert "rolling:canarySteps '50,10' must grow" in refused(
        {**BASE, "canaryTraffic": "weights", "canarySteps": "50,10"}
    )
    said = refused({**eks, "analysisSource": "cloudwatch", "canaryTraffic": "weights"})
    assert "rolling:canaryTraffic weights gives the canary a target group of its own" in said


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"canaryWeight": "5"}, "rolling:canaryWeight 5 sends 5 % of users' requests to the canary, but canaryTag"),
        ({"canaryWeight": "5", "canaryTag": "1.2", "canaryTraffic": "pods"}, "which canaryTraffic pods has none of"),
        ({"canarySteps": "25,5"}, "rolling:canarySteps '25,5' must grow at every step"),
        ({"canarySteps": "5,5"}, "rolling:canarySteps '5,5' must grow at every step"),
        ({"canarySteps": "5,100"}, "rolling:canarySteps 100 is out of range; use 1 to 99"),
        ({"canarySteps": "1,2,3,4,5,6"}, "has 6 steps; use at most 5"),
        ({"canaryWeight": "101", "canaryTag": "1.2"}, "rolling:canaryWeight 101"),
    ],
)
def test_a_weighted_canarys_settings_are_checked(values: dict[str, str], says: str) -> None:
    assert says in refused({"target": "eks", "imageTag": "1.16.1", **values})
    assert Settings.from_values({"target": "eks", "canaryTag": "1.2", "canaryWeight": "5"}).eks is not None
