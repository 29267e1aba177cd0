"""The app's names in the cluster, in one place: what the program creates, what the rollout command,
the policy pack, the benchmarks and the tests look for. Fixed, as in the kubectl commands users know."""

from __future__ import annotations

APP = "nginx"
# The label every object of the app carries and every selector matches.
LABELS = {"app": APP}
SELECTOR = ",".join(f"{key}={value}" for key, value in LABELS.items())
DEPLOYMENT = f"{APP}-deployment"
CONTAINER = APP
SERVICE = APP
# `kubectl set image deployment/DEPLOYMENT CONTAINER=...`
DEPLOYMENT_REF = f"deployment/{DEPLOYMENT}"
# The engine's type token of a Deployment.
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
