#!/usr/bin/env bash
# The machine packages a real node needs, from Debian's archive: the container
# runtime (containerd, runc), the CNI plugins, iptables and conntrack for
# kube-proxy, a registry, and the image tools (debootstrap, buildah, skopeo,
# umoci). Idempotent: installs only what is missing, and says why it cannot.
#
#   cluster/node-packages.sh           install what is missing (root, Debian 12)
#   cluster/node-packages.sh --check   exit 0 when everything is installed
set -euo pipefail

# Debian 12 (bookworm) versions this was built and tested with; a newer point
# release of the same package is accepted (security updates replace them).
packages=(
  containerd        # 1.6.20
  runc              # 1.1.5
  containernetworking-plugins  # 1.1.1: bridge, host-local, loopback, portmap
  iptables          # 1.8.9 (nft backend), kube-proxy's iptables mode
  conntrack         # 1.4.7
  iproute2          # ip netns, veth
  socat             # relays the API server (on 127.0.0.1) to the node's side of its link
  docker-registry   # 2.8.2: the node's image registry
  debootstrap       # the base image's root filesystem
  buildah           # builds app/Dockerfile without a Docker engine
  skopeo            # copies images into the registry
  umoci             # turns a root filesystem into an OCI image
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${1:-}" = --check ]; then
  [ ${#missing[@]} -eq 0 ] || { echo "node-packages: missing: ${missing[*]}" >&2; exit 1; }
  exit 0
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
  echo "node-packages: the real node needs Debian's packages (${missing[*]}); this machine has no apt-get." >&2
  echo "node-packages: install the equivalents by hand, or use ROLLING_NODE=kwok for fake nodes." >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "node-packages: installing ${missing[*]} needs root: run 'sudo $0', or use ROLLING_NODE=kwok." >&2
  exit 1
fi
echo "node-packages: installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: the packages' services are not started (the node runs its own, in its namespaces).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
[ "$made_policy" = 1 ] && rm -f "$policy"
[ "$status" = 0 ] || { echo "node-packages: apt-get install failed ($status)" >&2; exit "$status"; }
echo "node-packages: installed ${missing[*]}" >&2
