#!/usr/bin/env bash
# The whole flow on the local stack and the real node: build two versions of the
# app image, deploy the first, ask the stack's url which version answers, change
# the tag, preview the diff, roll it out while watching the ReplicaSets, ask again.
# Run through `make demo`, which builds the toolchain and starts the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

old=1.0.0
new=1.1.0
repository=localhost:5000/rolling-app

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

watch_rollout() {
  # One line a second: each ReplicaSet's image and ready/desired pods.
  local start=$SECONDS
  while true; do
    printf '%3ds  ' $((SECONDS - start))
    kubectl -n "$namespace" get rs -l app=nginx --no-headers \
      -o custom-columns='IMAGE:.spec.template.spec.containers[0].image,READY:.status.readyReplicas,DESIRED:.spec.replicas' \
      2>/dev/null | awk '{printf "%s ready %s/%s   ", $1, ($2 == "<none>" ? 0 : $2), $3}'
    echo
    sleep 1
  done
}

ask_service() {
  # The stack's url: the Service's address, reached from this machine through the node (and
  # only if it is the node's). kube-proxy programs a change of the Service's endpoints up to a
  # second after the pods change, and a stopping pod answers while it drains: ask until the
  # version $1 answers, for at most 10 s.
  local url answer=""
  url=$(pulumi stack output url)
  cluster/node.sh routes "${url#http://}"
  for _ in $(seq 20); do
    answer=$(curl -sf -m 3 "$url/version.txt" || true)
    [ "$answer" = "$1" ] && break
    sleep 0.5
  done
  echo "curl \$(pulumi stack output url)/version.txt -> $answer"
  [ "$answer" = "$1" ]
}

step "two versions of the app image (app/Dockerfile), pushed to the node's registry"
cluster/images.sh app "$old"
cluster/images.sh app "$new"

step "stack local (file backend: ${PULUMI_BACKEND_URL})"
case $PULUMI_BACKEND_URL in file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;; esac
pulumi stack select --create local --secrets-provider passphrase

step "first deploy: $repository:$old, 3 replicas"
pulumi config set imageRepository "$repository"
pulumi config set imageTag "$old"
# --refresh: the state is read against the cluster first, so a stack whose cluster was made again
# (make cluster-down, make cluster-up) recreates what is gone instead of failing on it.
pulumi up --yes --skip-preview --refresh
namespace=$(pulumi stack output namespace)
kubectl -n "$namespace" get deploy,rs,pods -l app=nginx -o wide
ask_service "$old"

step "ship a version: pulumi config set imageTag $new"
pulumi config set imageTag "$new"

step "pulumi preview --diff: one update in place, the container image"
pulumi preview --diff

step "pulumi up: Kubernetes replaces the pods a few at a time"
watch_rollout &
watcher=$!
trap 'kill $watcher 2>/dev/null || true' EXIT
pulumi up --yes --skip-preview --suppress-progress
kill $watcher 2>/dev/null || true

step "done"
kubectl -n "$namespace" get deploy,rs,pods -l app=nginx
ask_service "$new"
