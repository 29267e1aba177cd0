#!/usr/bin/env bash
# The local cluster's real node: kubelet, kube-proxy (iptables mode), containerd
# with runc and the CNI bridge, and an image registry, all in a network
# namespace and a mount namespace of their own, as a kind node lives in a
# container. The machine's own namespace gets one veth link, two routes into the
# node for the pod and Service ranges (cluster/network.env), a relay from the
# link to the API server, and a cgroup folder per hierarchy; `down` removes them
# all, and the node's iptables rules, kernel settings and files go with its
# namespaces.
#
# Everything the node runs (the relay, its supervisor, the four daemons, the
# containerd shims and every pod) lives in one cgroup tree, rolling-NAME in each
# hierarchy: `down` ends that tree. The supervisor waits on its daemons; when one
# exits, it writes which one and why to the node's state (`status` says it), and
# stops the node rather than leave a half node that tests find only by timing out.
#
#   cluster/node.sh up          start the node (the control plane must be up)
#   cluster/node.sh down        stop it and remove everything it made
#   cluster/node.sh status      processes, node condition, registry; fails when the node is not whole
#   cluster/node.sh claim       take a slot for the node (its addresses) and print it
#   cluster/node.sh env [KEY]   the node's addresses, as shell assignments (or KEY's value alone)
#   cluster/node.sh routes IP   succeed if IP is in the node's Service or pod range (traffic to it
#                               goes into the node); otherwise say so and fail
#   cluster/node.sh exec CMD    run CMD in the node's network namespace
#
# Called by cluster/cluster.sh; ROLLING_CLUSTER names the cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=${ROLLING_CLUSTER:-rolling}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rolling
state=$cache/node/$name
# Where `down` keeps the logs of the node it removed (a failed start is read after its cleanup).
last_logs=$cache/node/$name.last-logs
# The registry's images, kept across `down`: a cluster made again runs the images its stacks name
# (`pulumi up --refresh` brings a stack back with no image built again).
registry_data=$cache/registry/$name
clusterdir=${KWOK_WORKDIR:-$cache/kwok}/clusters/$name
# shellcheck disable=SC1091  # KEY=VALUE lines
. "$here/network.env"

# A node holds its slot (its addresses, below) for as long as its state lives: the slot
# network.env names for its cluster when that one is free, else the lowest free one. Slots are
# claimed machine-wide, so any clusters (other checkouts' and caches' included) run side by side:
# a claim is a file in $claims naming the state folder that holds it, free again once that
# folder is gone. `claim` (cluster.sh, before it configures the control plane with `env`) and `up`
# claim; the other commands use the slot the state records, and `env` of a node without one names no
# addresses.
claims=/run/rolling-slots
claim_slot() {
  mkdir -p "$claims" "$state"
  (
    flock 9
    local var="SLOT_${name//-/_}" c holder
    for c in ${!var:-} $(seq 0 "$SLOTS_MAX"); do
      holder=$(cat "$claims/$c" 2>/dev/null) || holder=""
      [ -n "$holder" ] && [ "$holder" != "$state" ] && [ -d "$holder" ] && continue
      # A link of that slot without a claim: a node that some other way still runs.
      [ "$holder" != "$state" ] && ip link show "rolling$c" >/dev/null 2>&1 && continue
      echo "$state" >"$claims/$c"
      echo "$c" >"$state/slot"
      echo "$c"
      return 0
    done
    echo "node: all $((SLOTS_MAX + 1)) slots are held ($(cat "$claims"/[0-9]* | paste -sd' ')); stop a cluster first" >&2
    return 1
  ) 9>"$claims/.lock"
}
if [ -f "$state/slot" ]; then
  s=$(cat "$state/slot")
elif [ "${1:-}" = up ] || [ "${1:-}" = claim ]; then
  s=$(claim_slot)
else
  s=""  # no node: nothing at any address
fi
if [ -n "$s" ]; then
  host_addr=$NET_PREFIX.255.$((4 * s + 1))
  node_addr=$NET_PREFIX.255.$((4 * s + 2))
  pod_cidr=$NET_PREFIX.$((32 * s)).0/20
  service_cidr=$NET_PREFIX.$((32 * s + 16)).0/20
else
  host_addr="" node_addr="" pod_cidr="" service_cidr=""
fi
netns=rolling-$name
veth_host=rolling$s
veth_node=rolling$s-n
node_name=rolling-node
# What kubelet writes to /proc/sys; in the node's mount namespace these are plain files.
kernel_files=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops)

in_node() { nsenter --net="/run/netns/$netns" -- "$@"; }

# The node's daemons, in the order they start (and stop in reverse).
daemons=(registry containerd kubelet kube-proxy)

pid_alive() { [ -f "$state/pids/$1" ] && kill -0 "$(cat "$state/pids/$1")" 2>/dev/null; }

# How the node fits this machine's cgroups (v1 or v2, systemd as PID 1 or not): cluster/host.py decides
# from the machine's mounts and PID 1 and prints the plan (CGROUP_*, KUBELET_FAIL_CGROUP_V1).
plan=$(python3 "$here/host.py" plan "$name") || exit 1
eval "$plan"

cgroup_dirs() {
  # The node's tree in every hierarchy (each v1 controller's and the unified one; v2: the one).
  local h
  for h in $CGROUP_HIERARCHIES; do
    echo "$h/$CGROUP_ROOT"
  done
}

write_configs() {
  local bin=$1 apiport=$2 ca=$clusterdir/pki/ca.crt
  mkdir -p "$state"/{pids,logs,cni/net.d,kubelet/pki,registry,fs} "$state/containerd/certs.d/localhost:$REGISTRY_PORT"
  cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster: {server: "https://$host_addr:6443", certificate-authority: "$ca"}
users:
- name: node
  user: {client-certificate: "$clusterdir/pki/admin.crt", client-key: "$clusterdir/pki/admin.key"}
contexts:
- name: node
  context: {cluster: $name, user: node}
current-context: node
EOF
  cat >"$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$state/containerd/containerd.sock"
[ttrpc]
  address = "$state/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost:$REGISTRY_PORT/pause:rolling"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj would fail every sandbox.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$state/containerd/certs.d"
EOF
  cat >"$state/containerd/certs.d/localhost:$REGISTRY_PORT/hosts.toml" <<EOF
server = "http://localhost:$REGISTRY_PORT"
[host."http://localhost:$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$state/cni/net.d/10-rolling.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "rolling", "plugins": [
  {"type": "bridge", "bridge": "rolling0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "dataDir": "$state/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  cat >"$state/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: "$registry_data"}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$REGISTRY_PORT"}
EOF
  cat >"$state/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v$CGROUP_VERSION$([ "$CGROUP_SYSTEMD" = 1 ] && echo ", systemd's delegated scope $CGROUP_SCOPE"): cluster/host.py.
failCgroupV1: $KUBELET_FAIL_CGROUP_V1
cgroupDriver: $CGROUP_DRIVER
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix://$state/containerd/containerd.sock
address: $node_addr
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$ca"}
authorization: {mode: Webhook}
resolvConf: ""
failSwapOn: false
oomScoreAdj: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$state/kubeconfig"}
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$node_addr/32"]
oomScoreAdj: 0
# 0: leave the machine's conntrack table sizes and timeouts as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
  echo "$bin" >"$state/bin"
  echo "$apiport" >"$state/apiport"
}

net_up() {
  ip netns add "$netns"
  ip link add "$veth_host" type veth peer name "$veth_node"
  ip link set "$veth_node" netns "$netns"
  ip addr add "$host_addr/30" dev "$veth_host"
  ip link set "$veth_host" up
  in_node ip link set lo up
  in_node ip addr add "$node_addr/30" dev "$veth_node"
  in_node ip link set "$veth_node" up
  # The pod and Service ranges go into the node, never out by the default route.
  ip route add "$pod_cidr" via "$node_addr" dev "$veth_host"
  ip route add "$service_cidr" via "$node_addr" dev "$veth_host"
  # Inside the node only: forwarding for the bridge, iptables for bridged traffic (the latter is the
  # br_netfilter module's: loaded here if it is not; `make preflight` says so beforehand).
  [ -d /proc/sys/net/bridge ] || modprobe br_netfilter || {
    echo "node: the kernel module br_netfilter is not loaded and cannot be: run 'modprobe br_netfilter' as root" >&2
    return 1
  }
  in_node sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

cgroups_up() {
  local d parent pid c
  [ -z "$CGROUP_NOTES" ] || echo "node: $CGROUP_NOTES" >&2
  if [ -n "$CGROUP_SCOPE" ]; then
    # systemd owns the unified tree; the node gets a subtree of its own from it: a transient scope with
    # Delegate=yes (systemd.resource-control(5)), held open by one process until `down`.
    systemd-run --quiet --scope --unit="$CGROUP_SCOPE" --slice="$CGROUP_SLICE" -p Delegate=yes -- \
      sleep infinity </dev/null >/dev/null 2>&1 &
    echo $! >"$state/pids/scope"
    wait_for "the node's systemd scope $CGROUP_SCOPE" 10 test -d "/sys/fs/cgroup/$CGROUP_ROOT"
  fi
  for c in $CGROUP_ENABLE_IN; do
    # cgroup v2 without systemd: the controllers the node needs, enabled from the root down.
    enable_controllers "/sys/fs/cgroup/${c#.}"
  done
  for d in $(cgroup_dirs); do
    # The tree's root (kubelet's cgroupRoot: pods go below it) and "node" for the node's own processes.
    mkdir -p "$d/node"
    parent=$(dirname "$d")
    if [ "$CGROUP_VERSION" = 1 ] && [ -f "$parent/cpuset.cpus" ]; then
      cat "$parent/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$parent/cpuset.mems" >"$d/cpuset.mems"
      cat "$parent/cpuset.cpus" >"$d/node/cpuset.cpus"
      cat "$parent/cpuset.mems" >"$d/node/cpuset.mems"
    fi
    if [ "$CGROUP_VERSION" = 2 ]; then
      # No processes in a cgroup whose children get controllers ("no internal processes"): the scope's
      # holder moves into the leaf first.
      while read -r pid; do echo "$pid" >"$d/node/cgroup.procs"; done <"$d/cgroup.procs"
      enable_controllers "$d"
    fi
  done
}

# cgroup v2: enable the plan's controllers for the children of $1 (those it offers; each said if refused).
enable_controllers() {
  local c
  for c in $CGROUP_CONTROLLERS; do
    grep -qw "$c" "$1/cgroup.controllers" || continue
    grep -qw "$c" "$1/cgroup.subtree_control" && continue
    echo "+$c" >"$1/cgroup.subtree_control" || echo "node: cannot enable the $c controller in $1" >&2
  done
}

# Put process $1 in the node's cgroup in every hierarchy; what it starts later is born there.
join_node_cgroup() {
  local d
  for d in $(cgroup_dirs); do
    echo "$1" >"$d/node/cgroup.procs"
  done
}

# Every process in the node's cgroup tree but $1 (the caller itself, or nothing).
tree_pids() {
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u | grep -vx -- "${1:-}" || true
}

# SIGKILL everything in the tree but $1, until nothing is left (processes may fork while we kill).
kill_tree() {
  local pids i
  for ((i = 0; i < 20; i++)); do
    pids=$(tree_pids "${1:-}")
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086  # a list of pids
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
}

# Runs inside the node's namespaces (see up): the node's file system view, then its processes.
inside() {
  local bin dir f
  bin=$(cat "$state/bin")
  # Copy-on-write views of the folders kubelet, containerd and CNI write to
  # whatever their flags say; the machine's own stay untouched.
  for dir in /var/lib /var/log /run; do
    f=$state/fs/${dir//\//_}
    mkdir -p "$f/upper" "$f/work" "$dir"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$f/upper,workdir=$f/work" "$dir"
  done
  for f in "${kernel_files[@]}"; do
    cat "/proc/sys/$f" >"$state/fs/sysctl-${f//\//_}"
    mount --bind "$state/fs/sysctl-${f//\//_}" "/proc/sys/$f"
  done
  start registry /usr/bin/docker-registry serve "$state/registry/config.yml"
  start containerd /usr/bin/containerd --config "$state/containerd/config.toml"
  wait_for "containerd" 30 test -S "$state/containerd/containerd.sock"
  start kubelet "$bin/kubelet" --config "$state/kubelet/config.yaml" --kubeconfig "$state/kubeconfig" \
    --root-dir "$state/kubelet/root" --cert-dir "$state/kubelet/pki" --node-ip "$node_addr" \
    --hostname-override "$node_name" --volume-plugin-dir "$state/kubelet/volume-plugins" --v=1
  start kube-proxy "$bin/kube-proxy" --config "$state/kube-proxy.yaml" --v=1
  supervise
}

# Wait for any daemon to exit. One that exits is a node that no longer works: say which, with its
# status and last log lines (in $state/stopped, which `status` shows), and stop the rest, pods and
# all. A TERM (from `down`) stops the daemons in order and ends quietly.
supervise() {
  local -A named=()
  local what pid died code
  for what in "${daemons[@]}"; do
    named[$(cat "$state/pids/$what")]=$what
  done
  trap 'stop_daemons; exit 0' TERM
  set +e
  wait -n -p died "${!named[@]}"
  code=$?
  set -e
  what=${named[$died]:-a daemon}
  {
    echo "node: $what (pid $died) exited with status $code at $(date -u +%FT%TZ); the node was stopped"
    echo "node: the last lines of $state/logs/$what.log:"
    tail -n 5 "$state/logs/$what.log" 2>/dev/null | sed 's/^/    /'
  } | tee "$state/stopped" >&2
  stop_daemons
  kill_tree "$$"
  exit 1
}

stop_daemons() {
  local i pid what
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    what=${daemons[i]}
    pid=$(cat "$state/pids/$what" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    for _ in {1..50}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

start() {
  local what=$1
  shift
  "$@" >"$state/logs/$what.log" 2>&1 &
  echo $! >"$state/pids/$what"
}

wait_for() {
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node: $what not ready after ${seconds}s; logs: $state/logs" >&2
  return 1
}

up() {
  local bin=$1 apiport=$2
  if pid_alive inside && ip netns list | grep -qw "$netns"; then
    echo "node: $node_name of $name already running" >&2
    return 0
  fi
  down keep-slot >/dev/null 2>&1 || true
  "$here/node-packages.sh" >&2
  write_configs "$bin" "$apiport"
  net_up
  cgroups_up
  # The API server listens on 127.0.0.1; the node reaches it at its link's other end: the kubelet at port
  # 6443, pods through the `kubernetes` Service, whose endpoint is that address at the API server's own port.
  socat "TCP-LISTEN:6443,bind=$host_addr,fork,reuseaddr" "TCP:127.0.0.1:$apiport" \
    >"$state/logs/relay.log" 2>&1 &
  echo $! >"$state/pids/relay"
  join_node_cgroup "$(cat "$state/pids/relay")"
  if [ "$apiport" != 6443 ]; then
    socat "TCP-LISTEN:$apiport,bind=$host_addr,fork,reuseaddr" "TCP:127.0.0.1:$apiport" \
      >"$state/logs/relay-pods.log" 2>&1 &
    echo $! >"$state/pids/relay-pods"
    join_node_cgroup "$(cat "$state/pids/relay-pods")"
  fi
  # A mount namespace of its own (slave: the machine's mounts show inside, none go out). The
  # supervisor joins the node's cgroup first thing (_inside), so all it starts is born there.
  nsenter --net="/run/netns/$netns" -- unshare --mount --propagation slave -- \
    env ROLLING_CLUSTER="$name" XDG_CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}" KWOK_WORKDIR="${KWOK_WORKDIR:-}" \
    setsid "$here/node.sh" _inside >"$state/logs/inside.log" 2>&1 </dev/null &
  echo $! >"$state/pids/inside"
  wait_for "the registry" 30 in_node curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/"
}

down() {
  local pid d keep=${1:-}
  # The supervisor stops its daemons in order (kubelet before containerd); then the cgroup tree ends
  # whatever is left: pods, shims, the relay.
  if pid_alive inside; then
    pid=$(cat "$state/pids/inside")
    kill "$pid" 2>/dev/null || true
    for _ in {1..100}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  kill_tree
  # The node's cgroups, deepest first; the systemd scope ends once empty (stopped, to be sure).
  for d in $(cgroup_dirs); do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  [ -z "$CGROUP_SCOPE" ] || systemctl stop "$CGROUP_SCOPE" >/dev/null 2>&1 || true
  if [ -n "$s" ]; then
    ip route del "$pod_cidr" 2>/dev/null || true
    ip route del "$service_cidr" 2>/dev/null || true
    ip link del "$veth_host" 2>/dev/null || true
    [ -z "$keep" ] && [ "$(cat "$claims/$s" 2>/dev/null)" = "$state" ] && rm -f "$claims/$s"
  fi
  ip netns del "$netns" 2>/dev/null || true
  if [ -d "$state/logs" ]; then
    rm -rf "$last_logs"
    mv "$state/logs" "$last_logs"
  fi
  rm -rf "$state"
  # `up` starts from nothing but keeps the slot `env` gave the control plane.
  if [ -n "$keep" ] && [ -n "$s" ]; then mkdir -p "$state" && echo "$s" >"$state/slot"; fi
  echo "node: $node_name of $name down; its logs: $last_logs" >&2
}

status() {
  local p whole=0
  if [ -f "$state/stopped" ]; then
    echo "node: STOPPED"
    cat "$state/stopped"
    whole=1
  fi
  for p in relay inside "${daemons[@]}"; do
    if pid_alive "$p"; then
      echo "node: $p running (pid $(cat "$state/pids/$p"))"
    else
      echo "node: $p NOT running"
      whole=1
    fi
  done
  if in_node curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/_catalog" 2>/dev/null; then echo; else echo "node: registry not answering"; whole=1; fi
  return "$whole"
}

# Whether traffic to address $1 goes into the node: it is in the node's Service or pod range.
routes() {
  local ip=$1
  [ -n "$s" ] || { echo "node: $node_name of $name is not up: it has no ranges" >&2; return 1; }
  if python3 - "$ip" "$service_cidr" "$pod_cidr" <<'PY'; then return 0; fi
import ipaddress, sys
ip = ipaddress.ip_address(sys.argv[1])
sys.exit(not any(ip in ipaddress.ip_network(net) for net in sys.argv[2:]))
PY
  echo "node: $ip is outside the node's ranges ($service_cidr, $pod_cidr): traffic to it would leave by the default route" >&2
  return 1
}

node_env() {
  local all="NODE_NETNS=$netns NODE_STATE=$state NODE_NAME=$node_name NODE_CGROUP=$CGROUP_ROOT NODE_LAST_LOGS=$last_logs"
  if [ -n "$s" ]; then
    all="NODE_ADDR=$node_addr HOST_ADDR=$host_addr POD_CIDR=$pod_cidr SERVICE_CIDR=$service_cidr NODE_VETH=$veth_host
$all"
  fi
  if [ -z "${1:-}" ]; then
    echo "$all"
  else
    tr ' ' '\n' <<<"$all" | sed -n "s/^$1=//p" | grep . || { echo "node: no $1 in the node's env" >&2; return 2; }
  fi
}

case ${1:-} in
  up) up "${2:?up needs the bin folder}" "${3:?up needs the API server port}" ;;
  down) down ;;
  status) status ;;
  env) node_env "${2:-}" ;;
  claim) echo "$s" ;;
  routes) routes "${2:?routes needs an address}" ;;
  exec) shift; in_node "$@" ;;
  _inside) join_node_cgroup "$$"; inside ;;
  *) echo "usage: $0 up BIN APIPORT|down|status|env [KEY]|routes IP|exec CMD..." >&2; exit 2 ;;
esac
