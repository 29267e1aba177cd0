#!/usr/bin/env bash
# Put the Kubernetes provider we built into Pulumi's plugin cache (PULUMI_HOME),
# so the engine finds the exact version the Python SDK asks for without any
# download. Idempotent: reinstalls only when the built binary changed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ "${ROLLING_SYSTEM_PULUMI:-}" = 1 ] && exit 0
bin=$("$here/toolchain.sh" --bin)
version=$(sed -n 's/^provider_version=//p' "$here/toolchain.sh")
home=${PULUMI_HOME:-$HOME/.pulumi}
installed=$home/plugins/resource-kubernetes-v$version/pulumi-resource-kubernetes
if [ -f "$installed" ] && cmp -s "$installed" "$bin/pulumi-resource-kubernetes"; then
  exit 0
fi
PULUMI_HOME=$home "$bin/pulumi" plugin install resource kubernetes "v$version" \
  --file "$bin/pulumi-resource-kubernetes" --reinstall >/dev/null
echo "toolchain: registered pulumi-resource-kubernetes v$version in $home" >&2
