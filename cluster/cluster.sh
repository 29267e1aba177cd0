#!/usr/bin/env bash
# The local control plane: real kube-apiserver, etcd, kube-controller-manager and
# kube-scheduler on 127.0.0.1, and its nodes: with ROLLING_NODE=real, one real node
# (cluster/node.sh: kubelet, kube-proxy, containerd, a registry, in namespaces of
# its own); with ROLLING_NODE=kwok, fake nodes that kwok runs.
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
mode=${ROLLING_NODE:-real}
case $mode in real | kwok) ;; *) echo "cluster: ROLLING_NODE '$mode' is not accepted; use real or kwok" >&2; exit 2 ;; esac
export KWOK_WORKDIR=${KWOK_WORKDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rolling/kwok}
clusterdir=$KWOK_WORKDIR/clusters/$name
kubeconfig=$clusterdir/kubeconfig.yaml

bin=$("$root/tools/toolchain.sh" --bin)
export PATH=$bin:$PATH
# kubectl's discovery cache stays in the cache folder, not in ~/.kube.
export KUBECACHEDIR=${KUBECACHEDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rolling/kubectl}

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
    if [ "$mode" = kwok ] || "$here/node.sh" status >/dev/null 2>&1; then
      echo "cluster: $name already running ($kubeconfig)" >&2
      return 0
    fi
    # The control plane runs, but the node does not (a daemon exited: its supervisor stopped it).
    "$here/node.sh" status >&2 || true
    echo "cluster: $name's node is not running; making the cluster again" >&2
    down
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
    if [ "$mode" = real ]; then
      local node_env
      "$here/node.sh" claim >/dev/null
      node_env=$("$here/node.sh" env)
      # shellcheck disable=SC2086  # KEY=VALUE words
      fill "$here/kwokctl-realnode.yaml" $node_env "PKI=$clusterdir/pki" "FLEX=$clusterdir/flex-volumes"
    else
      echo "---"
      # kwok reads a jitter as the upper bound of the whole delay, not as an extra.
      fill "$here/stages.yaml" \
        "CREATE_MS=${ROLLING_POD_CREATE_MS:-500}" "READY_MS=$ready" \
        "READY_MAX_MS=$((ready + ${ROLLING_POD_JITTER_MS:-500}))" "DELETE_MS=${ROLLING_POD_DELETE_MS:-500}"
    fi
  } >"$config"
  if ! kwokctl create cluster --name "$name" --config "$config" --kubeconfig "" --wait 60s >"$KWOK_WORKDIR/$name-create.log" 2>&1; then
    cat "$KWOK_WORKDIR/$name-create.log" >&2
    echo "cluster: kwokctl create cluster failed; logs: kwokctl logs <component> --name $name" >&2
    kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
    exit 1
  fi
  local i
  if [ "$mode" = real ]; then
    local port
    port=$(kubectl --kubeconfig "$kubeconfig" config view -o jsonpath='{.clusters[0].cluster.server}')
    if ! "$here/node.sh" up "$bin" "${port##*:}" || ! "$here/images.sh" pause || ! "$here/images.sh" watchdog || ! services_routed; then
      down
      echo "cluster: the real node did not start; its logs, kept: $("$here/node.sh" env NODE_LAST_LOGS)" >&2
      exit 1
    fi
  else
    for ((i = 0; i < nodes; i++)); do
      fill "$here/nodes.yaml" "INDEX=$i" "ZONE=$((i % 3))"
      echo "---"
    done | kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null
  fi
  for ((i = 0; i < 120; i++)); do
    [ -n "$(kubectl --kubeconfig "$kubeconfig" get nodes -o name 2>/dev/null)" ] && break
    sleep 0.5
  done
  kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=60s >/dev/null
  # The default ServiceAccount must exist before pods can be created.
  for ((i = 0; i < 60; i++)); do
    kubectl --kubeconfig "$kubeconfig" get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.5
  done
  echo "cluster: $name up in $(($(date +%s) - start)) s; kubeconfig: $kubeconfig" >&2
}

services_routed() {
  # Traffic to a Service address must go into the node: refuse a cluster whose
  # Service range is not the node's (it would leave by the default route).
  local ip
  ip=$(kubectl --kubeconfig "$kubeconfig" get service kubernetes -o jsonpath='{.spec.clusterIP}')
  "$here/node.sh" routes "$ip"
}

down() {
  # The node first (it may be there without the control plane, after a crash).
  "$here/node.sh" down >/dev/null 2>&1 || true
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
    kubectl --kubeconfig "$kubeconfig" get nodes -o wide
    kwokctl get components --name "$name" 2>/dev/null | tr '\n' ' ' || true
    echo
    # The real node's processes (runtime, kubelet, kube-proxy) and its registry's images.
    [ "$mode" = kwok ] || "$here/node.sh" status
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
