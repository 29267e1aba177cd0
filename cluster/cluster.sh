#!/usr/bin/env bash
# The local control plane: real kube-apiserver, etcd, kube-controller-manager and
# kube-scheduler, with kwok standing in for kubelets. Everything on 127.0.0.1.
#
#   cluster/cluster.sh up          start it (idempotent) and wait for ready nodes
#   cluster/cluster.sh down        stop it; no process or port is left behind
#   cluster/cluster.sh status      say whether it runs, with nodes and components
#   cluster/cluster.sh kubeconfig  print the kubeconfig path
#
# Knobs (environment): ROLLING_CLUSTER (name, default rolling), ROLLING_NODES (3),
# ROLLING_POD_CREATE_MS (500): scheduled -> ContainerCreating; ROLLING_POD_READY_MS (1000),
# plus up to ROLLING_POD_JITTER_MS (500) more at random: ContainerCreating -> Ready;
# ROLLING_POD_DELETE_MS (500): a deleted pod goes away.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
name=${ROLLING_CLUSTER:-rolling}
nodes=${ROLLING_NODES:-3}
export KWOK_WORKDIR=${KWOK_WORKDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rolling/kwok}
clusterdir=$KWOK_WORKDIR/clusters/$name
kubeconfig=$clusterdir/kubeconfig.yaml

bin=$("$root/tools/toolchain.sh" --bin)
export PATH=$bin:$PATH

need_toolchain() {
  if ! "$root/tools/toolchain.sh" --check; then
    echo "cluster: the toolchain is not built; run 'make toolchain' first" >&2
    exit 1
  fi
}

fill() {
  # fill FILE KEY=VALUE...: replace @KEY@ placeholders.
  local file=$1 expr=() kv
  shift
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" "$file"
}

running() {
  [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

up() {
  need_toolchain
  if running; then
    echo "cluster: $name already running ($kubeconfig)" >&2
    return 0
  fi
  # A cluster left half-made (a crash, a killed shell) is removed first.
  kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
  local start kube_version config
  start=$(date +%s)
  kube_version=$(kube-apiserver --version | awk '{print $2}')
  mkdir -p "$KWOK_WORKDIR"
  config=$KWOK_WORKDIR/$name.yaml
  local ready=${ROLLING_POD_READY_MS:-1000}
  {
    fill "$here/kwokctl.yaml" "BIN=$bin" "KUBE_VERSION=$kube_version"
    echo "---"
    # kwok reads a jitter as the upper bound of the whole delay, not as an extra.
    fill "$here/stages.yaml" \
      "CREATE_MS=${ROLLING_POD_CREATE_MS:-500}" "READY_MS=$ready" \
      "READY_MAX_MS=$((ready + ${ROLLING_POD_JITTER_MS:-500}))" "DELETE_MS=${ROLLING_POD_DELETE_MS:-500}"
  } >"$config"
  if ! kwokctl create cluster --name "$name" --config "$config" --kubeconfig "" --wait 60s >"$KWOK_WORKDIR/$name-create.log" 2>&1; then
    cat "$KWOK_WORKDIR/$name-create.log" >&2
    echo "cluster: kwokctl create cluster failed; logs: kwokctl logs <component> --name $name" >&2
    kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
    exit 1
  fi
  local i
  for ((i = 0; i < nodes; i++)); do
    fill "$here/nodes.yaml" "INDEX=$i" "ZONE=$((i % 3))"
    echo "---"
  done | kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null
  kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=60s >/dev/null
  # The default ServiceAccount must exist before pods can be created.
  for ((i = 0; i < 60; i++)); do
    kubectl --kubeconfig "$kubeconfig" get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.5
  done
  echo "cluster: $name up in $(($(date +%s) - start)) s; kubeconfig: $kubeconfig" >&2
}

down() {
  if [ ! -d "$clusterdir" ]; then
    echo "cluster: $name is not there" >&2
    return 0
  fi
  kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
  # kwokctl stops what it started; make sure nothing it ran from this workdir survives.
  local pids=()
  mapfile -t pids < <(pgrep -f -- "$clusterdir" || true)
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    sleep 1
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$clusterdir"
  echo "cluster: $name down" >&2
}

status() {
  if running; then
    echo "cluster: $name running; kubeconfig: $kubeconfig"
    kubectl --kubeconfig "$kubeconfig" get nodes
    kwokctl get components --name "$name" 2>/dev/null | tr '\n' ' ' || true
    echo
  else
    echo "cluster: $name not running"
    return 1
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  kubeconfig) echo "$kubeconfig" ;;
  *) echo "usage: $0 up|down|status|kubeconfig" >&2; exit 2 ;;
esac
