"""What the settings fall back on: the targets, per-target defaults, and the limits the rules check."""

from __future__ import annotations

from collections.abc import Mapping

NAMESPACE = "rolling"
TARGETS = ("eks", "local")
NAT_MODES = ("single", "perAz")
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# progressDeadlineSeconds, when unset, depends on the target: Fargate takes a minute
# or more to start a pod, the local cluster a few seconds.
PROGRESS_DEADLINE_DEFAULTS = {"eks": 600, "local": 60}
# How long `up` may wait past the progress deadline before it gives up on a rollout: on EKS a
# Fargate pod can take a minute to start; a local node starts one in seconds.
AWAIT_MARGIN_SECONDS = {"eks": 30, "local": 10}
# drainSeconds, when unset: how long a stopping pod keeps serving after it leaves the Service's
# endpoints. Locally kube-proxy drops an endpoint within about a second; on EKS the ALB takes its
# target out over the deregistration delay and its own propagation, which the drain must outlast.
DRAIN_DEFAULTS = {"eks": 30, "local": 5}
# What a stopping pod's grace period allows past the drain: nginx's graceful stop (SIGQUIT)
# finishing the requests it has accepted.
STOP_SECONDS = 15
# How long an ALB takes to stop sending new requests to a target once it starts deregistering it:
# a stopping pod's drain covers this and the deregistration delay.
ALB_PROPAGATION_SECONDS = 5
# Keep-alive limits the app's server applies (app/nginx.conf reads them from a ConfigMap the program
# mounts). keepAliveSeconds: how long an idle connection stays open. On EKS the ALB's connections to the
# pods must stay open longer than the ALB's own idle timeout, or the ALB reuses one the pod has just
# closed and answers 502 ("configure the idle timeout of your application to be larger than the idle
# timeout configured for the load balancer":
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html#connection-idle-timeout).
KEEPALIVE_DEFAULTS = {"eks": 75, "local": 2}
# The ALB's idle timeout (the load balancer attribute idle_timeout.timeout_seconds; AWS's default, which
# the program does not change).
ALB_IDLE_TIMEOUT_SECONDS = 60
# connectionMaxSeconds: how long one connection may carry requests; the response after that says
# `Connection: close` and the server closes it, the one clean way to end an HTTP/1.1 connection. Short
# enough locally that every connection to a stopping pod ends that way during its drain.
CONNECTION_MAX_DEFAULTS = {"eks": 20, "local": 2}
# How long kube-proxy takes to stop sending new connections to a pod that left the endpoints (the local
# node's; measured within about a second): a connection to a stopping pod can start until then.
SERVICE_PROPAGATION_SECONDS = 1
# bakeSeconds, when unset: how long the rollout command goes on analysing a release after its rollout
# completes, before it calls it shipped. On EKS a release meets real traffic through the ALB and its
# faults can take a minute to show; locally the prober alone sends traffic.
BAKE_DEFAULTS = {"eks": 60, "local": 5}
# canarySeconds, when unset: how long the rollout command analyses a canary before it rolls the rest.
CANARY_DEFAULTS = {"eks": 120, "local": 15}
# Where the analysis's evidence comes from (analysisSource). The ALB reports its metrics a minute at a
# time: with cloudwatch, a bake or a canary needs one whole minute of what it judges, wherever in a
# minute it starts, and defaults to five.
ANALYSIS_SOURCES = ("probe", "cloudwatch")
METRICS_LEAST_WINDOW_S = 120
METRICS_WINDOW_S = 300
# soakSeconds, when unset: how long a release must have run on the stack it is promoted from before
# `rollout promote --from` ships it here (an hour of real traffic on eks; a minute locally).
SOAK_DEFAULTS = {"eks": 3600, "local": 60}
# What a new stack runs until its first deploy when no imageTag is set: the base app/Dockerfile builds on.
BOOTSTRAP_IMAGE = "nginxinc/nginx-unprivileged:1.30.6-alpine"
# The first minor version whose kubelet runs a preStop `sleep` by default (beta in 1.30, GA in 1.34).
SLEEP_ACTION_SINCE = (1, 30)
# A Fargate profile takes at most five selectors ("You can have up to five selectors in a Fargate
# profile": https://docs.aws.amazon.com/eks/latest/userguide/fargate-profile.html).
MAX_FARGATE_SELECTORS = 5
# The retention periods CloudWatch Logs accepts (PutRetentionPolicy's retentionInDays).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
ECR_ON_DESTROY = ("delete", "retain")
# How a canary on eks gets its share of users' requests: by the ALB's target-group weights (a Service and
# target group of its own, its share stepped through canarySteps), or by its share of the pods behind the
# one Service (what the local target always does).
CANARY_TRAFFIC = ("weights", "pods")
# What a canary stage the analysis could not decide does: aborted (removed), or paused where it stands.
ANALYSIS_UNDECIDED = ("abort", "pause")
MAX_CANARY_STEPS = 5
# Ports below this one need root (or CAP_NET_BIND_SERVICE) to bind.
PRIVILEGED_PORTS_BELOW = 1024
UPGRADE_POLICIES = ("standard", "extended")


def _per_target(values: Mapping[str, int], unit: str = "") -> str:
    """A per-target figure as the descriptions say it: "600 on eks, 60 on local"."""
    return ", ".join(f"{values[target]}{unit} on {target}" for target in TARGETS)


ADDON_FIELDS = {
    "coredns_version": "corednsVersion",
    "kube_proxy_version": "kubeProxyVersion",
    "vpc_cni_version": "vpcCniVersion",
}
