#!/usr/bin/env bash
# Set a stack's imageRepository and imageTag to the image it runs now (its
# `image` output), so that previews and rollouts in CI start from what is
# deployed rather than from the tag committed in Pulumi.<stack>.yaml.
# Usage: scripts/sync-deployed-image.sh STACK. A stack never deployed is left as it is.
set -euo pipefail
stack=${1:?usage: $0 STACK}
image=$(pulumi stack output image --stack "$stack" 2>/dev/null || true)
if [ -z "$image" ]; then
  echo "sync-deployed-image: $stack has no image output yet; keeping its config" >&2
  exit 0
fi
case $image in
  *@*) echo "sync-deployed-image: $stack runs $image, pinned by digest; keeping its config" >&2; exit 0 ;;
esac
pulumi config set imageRepository "${image%:*}" --stack "$stack"
pulumi config set imageTag "${image##*:}" --stack "$stack"
echo "sync-deployed-image: $stack config now names $image" >&2
