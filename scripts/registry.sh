#!/usr/bin/env bash
# The image registry as the deploy pipeline uses it on eks (ECR, logged in by docker):
#
#   scripts/registry.sh revision REF          print REF's revision label (empty when it has none);
#                                             exit 3 when REF is not in the registry
#   scripts/registry.sh push REF VERSION REV  build app/ as REF (VERSION in the page, REV as the
#                                             org.opencontainers.image.revision label) and push it
#   scripts/registry.sh digest REF            print REF's manifest digest (sha256:...); exit 3 when absent
#   scripts/registry.sh copy SRC DST          copy SRC to DST, every platform and layer, the manifest's
#                                             bytes unchanged (DST has SRC's digest): a promotion between
#                                             two stacks' repositories
#
# The local target has the same two verbs in cluster/images.sh (the node's registry).
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
  revision)
    ref=${2:?usage: $0 revision REF}
    # skopeo reads docker's credentials (amazon-ecr-login writes them).
    if ! out=$(skopeo inspect --no-tags --format '{{index .Labels "org.opencontainers.image.revision"}}' \
        "docker://$ref" 2>&1); then
      case $out in
        *"manifest unknown"*|*"not found"*|*"name unknown"*|*"ImageNotFound"*) exit 3 ;;
      esac
      echo "registry: cannot inspect $ref: $out" >&2
      exit 1
    fi
    [ "$out" = "<no value>" ] && out=""
    echo "$out"
    ;;
  push)
    ref=${2:?usage: $0 push REF VERSION REV}
    version=${3:?usage: $0 push REF VERSION REV}
    revision=${4:?usage: $0 push REF VERSION REV}
    docker build --quiet --build-arg "VERSION=$version" \
      --label "org.opencontainers.image.revision=$revision" -t "$ref" app >/dev/null
    docker push --quiet "$ref" >/dev/null
    echo "$ref"
    ;;
  digest)
    ref=${2:?usage: $0 digest REF}
    # The digest is the sha256 of the manifest's bytes as the registry serves them (the OCI distribution
    # spec's content digest); --raw gives those bytes, a list's own for a multi-platform image.
    if ! out=$(skopeo inspect --raw "docker://$ref" 2>&1); then
      case $out in
        *"manifest unknown"*|*"not found"*|*"name unknown"*|*"ImageNotFound"*) exit 3 ;;
      esac
      echo "registry: cannot inspect $ref: $out" >&2
      exit 1
    fi
    skopeo inspect --raw "docker://$ref" | sha256sum | awk '{print "sha256:" $1}'
    ;;
  copy)
    src=${2:?usage: $0 copy SRC DST}
    dst=${3:?usage: $0 copy SRC DST}
    skopeo copy --quiet --all --preserve-digests "docker://$src" "docker://$dst"
    ;;
  *) echo "usage: $0 revision REF | push REF VERSION REV | digest REF | copy SRC DST" >&2; exit 2 ;;
esac
