"""The app's names in the cluster, in one place: what the program creates, what the rollout command,
the policy pack, the benchmarks and the tests look for. Fixed, as in the kubectl commands users know."""

from __future__ import annotations

APP = "nginx"
# The label every object of the app carries and every selector matches.
LABELS = {"app": APP}
SELECTOR = ",".join(f"{key}={value}" for key, value in LABELS.items())
DEPLOYMENT = f"{APP}-deployment"
# The canary: a few pods of a new version beside the Deployment's, behind the same Service (its pods carry
# LABELS too, so the Service routes to them), told apart by one more label. The Deployment's selector
# matches them as well; Kubernetes leaves them alone since they are another controller's (each
# ReplicaSet selects by its own pod-template-hash), and every reader of "the Deployment's pods" here
# goes through its ReplicaSets or its status.
CANARY_DEPLOYMENT = f"{APP}-canary"
CANARY_LABELS = {**LABELS, "track": "canary"}
# With canaryTraffic weights (eks) the canary has a Service, and so an ALB target group, of its own, whose
# weight in the listener's forward action is its share of users' requests. Its pods must then not be behind
# the app's Service (whose target group takes the rest): they carry an app label of their own. The
# Deployment's selector does not match them either.
CANARY_SERVICE = CANARY_DEPLOYMENT
WEIGHTED_CANARY_LABELS = {"app": CANARY_SERVICE, "track": "canary"}
# Every pod of the app, a canary's under either way: what the reader of users' requests follows.
PODS_SELECTOR = f"app in ({APP},{CANARY_SERVICE})"
CONTAINER = APP
# The Ingress in front of the app on eks (its ALB).
INGRESS = APP
SERVICE = APP
# `kubectl set image deployment/DEPLOYMENT CONTAINER=...`
DEPLOYMENT_REF = f"deployment/{DEPLOYMENT}"
# Whether the rollout command analyses this Deployment's releases (the setting rolling:analysis, "true" or
# "false"), on the Deployment itself where the policy pack and `kubectl describe` see it.
ANALYSIS_ANNOTATION = "rolling/analysis"
# The engine's type token of a Deployment.
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
INGRESS_TYPE = "kubernetes:networking.k8s.io/v1:Ingress"
# The cluster's watchdog over a judged release (infra/kube/watchdog.py): its service account and Role, and the
# image the local node's registry holds (cluster/images.sh watchdog, pushed with every `make cluster-up`).
WATCHDOG = "rolling-watchdog"
LOCAL_WATCHDOG_IMAGE = "localhost:5000/rolling-watchdog:rolling"
# The well-known label of a node's zone (Fargate's nodes carry it too); since Kubernetes 1.35 (beta,
# KEP-4742: the PodTopologyLabels admission) the API server copies it onto each pod as the pod is bound.
ZONE_LABEL = "topology.kubernetes.io/zone"
