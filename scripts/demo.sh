#!/usr/bin/env bash
# The whole flow on the local stack: deploy nginx 1.14.2, change the tag to
# 1.16.1, preview the diff, roll it out while watching the ReplicaSets.
# Run through `make demo`, which builds the toolchain and starts the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

watch_rollout() {
  # One line a second: each ReplicaSet's image and ready/desired pods.
  local start=$SECONDS
  while true; do
    printf '%3ds  ' $((SECONDS - start))
    kubectl get rs -l app=nginx --no-headers \
      -o custom-columns='IMAGE:.spec.template.spec.containers[0].image,READY:.status.readyReplicas,DESIRED:.spec.replicas' \
      2>/dev/null | awk '{printf "%s ready %s/%s   ", $1, ($2 == "<none>" ? 0 : $2), $3}'
    echo
    sleep 1
  done
}

step "stack local (file backend: ${PULUMI_BACKEND_URL})"
case $PULUMI_BACKEND_URL in file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;; esac
pulumi stack select --create local --secrets-provider passphrase

step "first deploy: nginx 1.14.2, 3 replicas"
pulumi config set imageTag 1.14.2
pulumi up --yes --skip-preview
kubectl get deploy,rs,pods -l app=nginx

step "ship a version: pulumi config set imageTag 1.16.1"
pulumi config set imageTag 1.16.1

step "pulumi preview --diff: one update in place, the container image"
pulumi preview --diff

step "pulumi up: Kubernetes replaces the pods a few at a time"
watch_rollout &
watcher=$!
trap 'kill $watcher 2>/dev/null || true' EXIT
pulumi up --yes --skip-preview --suppress-progress
kill $watcher 2>/dev/null || true

step "done"
kubectl get deploy,rs,pods -l app=nginx
