#!/usr/bin/env bash
# Build the toolchain the local target and the end-to-end tests run on: the
# Pulumi CLI and Python language host, the Kubernetes provider plugin, the
# Kubernetes control-plane and node binaries, etcd, kwok and kwokctl, the pod
# sandbox's pause process, the vegeta load generator; and actionlint, which
# checks the GitHub workflows. Every piece is
# built with the ordinary `go` command from the versions pinned in tools/*/go.mod.
#
#   tools/toolchain.sh            build what is missing, then print the bin folder
#   tools/toolchain.sh --bin      print the bin folder only (builds nothing)
#   tools/toolchain.sh --check    exit 0 when every piece is built
#   tools/toolchain.sh --piece P  build piece P only (if missing), then print its folder
#   tools/toolchain.sh --module-dir P M  download module M at the version piece P pins; print its folder
#
# Each piece lands in ${XDG_CACHE_HOME:-~/.cache}/rolling/toolchain/pieces/<piece>-<hash>,
# the hash taken over that piece's pins, so changing one pin rebuilds one piece.
# The bin folder, keyed by all the hashes, holds hard links to every binary.
#
# ROLLING_SYSTEM_PULUMI=1 uses the `pulumi` already on PATH, with its own plugins,
# instead of building the CLI, the language host and the provider.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rolling/toolchain
# Bump when a build recipe below changes in a way the pins do not show.
recipe=1

pulumi_version=v3.260.0
provider_version=4.25.0
kube_version=v1.36.3

pieces=(pulumi langhost kubernetes-provider kubernetes etcd kwok pause vegeta actionlint)
if [ "${ROLLING_SYSTEM_PULUMI:-}" = 1 ]; then
  pieces=(kubernetes etcd kwok pause vegeta actionlint)
fi

piece_hash() {
  local dir=$here/$1
  {
    echo "recipe=$recipe piece=$1"
    cat "$dir/go.mod" "$dir/go.sum"
    find "$dir" -maxdepth 1 -name '*.go' -print0 | sort -z | xargs -0 -r cat
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -c1-12
}

piece_dir() { echo "$cache/pieces/$1-$(piece_hash "$1")"; }

bin_dir() {
  local all=""
  for p in "${pieces[@]}"; do all+="$(piece_hash "$p")"; done
  echo "$cache/$(echo "$all" | sha256sum | cut -c1-12)/bin"
}

# module_dir PIECE MODULE: the folder of MODULE, at the version PIECE pins, in the
# module cache. `go list -m` alone prints an empty folder for a module that is
# not downloaded yet, so fetch it first and refuse to go on without its files.
module_dir() {
  local dir
  if ! dir=$(cd "$here/$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2"); then
    echo "toolchain: could not download $2 (pinned in tools/$1/go.mod)" >&2
    return 1
  fi
  if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
    echo "toolchain: $2 (pinned in tools/$1/go.mod) is not in the module cache: '$dir' holds no go.mod" >&2
    return 1
  fi
  echo "$dir"
}

build_piece() {
  local p=$1 out=$2
  cd "$here/$p"
  case $p in
    pulumi)
      go build -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$pulumi_version" \
        -o "$out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
      ;;
    langhost)
      go build -ldflags "-X main.version=${pulumi_version#v}" -o "$out/pulumi-language-python" .
      # The executor script the host runs Python through, from the SDK release
      # that matches the Python package pinned in requirements.txt.
      local sdk
      sdk=$(module_dir langhost github.com/pulumi/pulumi/sdk/v3)
      install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$out/"
      ;;
    kubernetes-provider)
      local src
      src=$(module_dir "$p" github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
      python3 "$here/gen_provider_embeds.py" "$src" "$here/$p" "$provider_version"
      go build -ldflags "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$provider_version" \
        -o "$out/pulumi-resource-kubernetes" .
      ;;
    kubernetes)
      local minor=${kube_version#v1.}
      minor=${minor%%.*}
      local ld="" pkg
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      # -pgo=off: kube-apiserver's profile would make its packages build apart
      # from the other three commands' copies of them.
      go build -pgo=off -ldflags "$ld" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
      ;;
    etcd)
      go build -o "$out/etcd" go.etcd.io/etcd/server/v3
      ;;
    kwok)
      go build -o "$out/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
      ;;
    pause)
      # Static: it runs alone in an image of its own.
      CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/pause" .
      ;;
    vegeta)
      go build -o "$out/vegeta" github.com/tsenart/vegeta/v12
      ;;
    actionlint)
      go build -o "$out/actionlint" github.com/rhysd/actionlint/cmd/actionlint
      ;;
  esac
}

complete() {
  local p
  for p in "${pieces[@]}"; do [ -f "$(piece_dir "$p")/.done" ] || return 1; done
  [ -f "$(bin_dir)/.done" ]
}

# Seconds each piece took in a cold build on a 2-core machine (make fresh-check, 2026-11-26,
# the build cache shared between pieces).
# A build of the same piece recorded in this cache is used instead when there is one.
declare -A typical=([pulumi]=230 [langhost]=19 [kubernetes-provider]=404 [kubernetes]=344
  [etcd]=21 [kwok]=75 [pause]=5 [vegeta]=8 [actionlint]=3)

expected_seconds() {
  local f hash latest=""
  for f in "$cache/pieces/$1"-*/.build-seconds; do
    hash=${f#"$cache/pieces/$1"-}
    hash=${hash%/.build-seconds}
    # kubernetes-* also matches kubernetes-provider-*: only a bare hash is this piece's.
    [[ $hash =~ ^[0-9a-f]{12}$ ]] && [ -f "$f" ] && latest=$(cat "$f")
  done
  echo "${latest:-${typical[$1]:-0}}"
}

human() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# progress LABEL START EXPECTED: while a piece builds, its elapsed and expected time:
# one line rewritten every second on a terminal, a line a minute otherwise (CI logs).
progress() {
  local every=60 sleeper=""
  [ -t 2 ] && every=1
  # Stopped by the build (TERM): its sleep goes with it, so nothing holds the output open.
  trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM
  # Ends with the build, or with this script if it is killed.
  while kill -0 "$$" 2>/dev/null; do
    sleep "$every" &
    sleeper=$!
    wait "$sleeper" || true
    if [ -t 2 ]; then
      printf '\r\033[Ktoolchain: %s: %s elapsed of about %s' "$1" "$(human $((SECONDS - $2)))" "$(human "$3")" >&2
    else
      echo "toolchain: $1: $(human $((SECONDS - $2))) elapsed of about $(human "$3")" >&2
    fi
  done
}

only=""
case ${1:-} in
  --bin) bin_dir; exit 0 ;;
  --check) complete; exit $? ;;
  --piece)
    only=${2:?--piece needs a name: ${pieces[*]}}
    [ -d "$here/$only" ] || { echo "toolchain: no piece '$only'; pieces: ${pieces[*]}" >&2; exit 2; }
    pieces=("$only")
    ;;
  --module-dir)
    # The recipes' module lookup on its own (the tests use it).
    export GOMODCACHE=$cache/go/mod GOFLAGS="${GOFLAGS:-} -modcacherw" GOTOOLCHAIN=local
    module_dir "${2:?--module-dir needs PIECE MODULE}" "${3:?--module-dir needs PIECE MODULE}"
    exit $?
    ;;
  "") ;;
  *) echo "usage: $0 [--bin|--check|--piece NAME|--module-dir PIECE MODULE]" >&2; exit 2 ;;
esac

# The newest `go` line of the pieces' go.mod files is the least Go that builds them all; with
# GOTOOLCHAIN=local (below) an older go refuses rather than downloading a newer one.
go_needed=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$here"/*/go.mod | sort -V | tail -1)
command -v go >/dev/null || { echo "toolchain: the go command is needed (Go $go_needed or newer)" >&2; exit 1; }
go_have=$(GOTOOLCHAIN=local go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$go_needed" "$go_have" | sort -V | head -1)" != "$go_needed" ]; then
  echo "toolchain: Go $go_have is on PATH ($(command -v go)); the pinned modules need Go $go_needed or newer" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "toolchain: python3 is needed (it writes the provider's embedded schema)" >&2; exit 1; }
mkdir -p "$cache/pieces"
# Go's caches of our own, so the user's are left alone and ours can be trimmed:
# the module cache stays (a changed pin rebuilds from it); the build cache is
# shared by the pieces of one run (the standard library and the modules they pin
# alike are compiled once: a cold build 17 min instead of 23), but it is most of
# the disk a build takes (15 GiB at the peak if kept throughout), so it is
# emptied after a piece that leaves it above ROLLING_GOCACHE_CAP_MIB (5 GiB: in
# practice after the Kubernetes provider), and when the run ends.
# -buildvcs=false: a piece is built from module versions, not from this repository's commit.
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOFLAGS="${GOFLAGS:-} -modcacherw -buildvcs=false" GOTOOLCHAIN=local

todo=()
for p in "${pieces[@]}"; do
  [ -f "$(piece_dir "$p")/.done" ] || todo+=("$p")
done
ticker=""
trap '[ -z "$ticker" ] || kill "$ticker" 2>/dev/null || true' EXIT
all_start=$SECONDS
n=0
for p in "${todo[@]}"; do
  n=$((n + 1))
  dir=$(piece_dir "$p")
  expect=$(expected_seconds "$p")
  label="[$n/${#todo[@]}] $p"
  echo "toolchain: $label: building (about $(human "$expect") on 2 cores) ..." >&2
  start=$SECONDS
  tmp="$dir.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  progress "$label" "$start" "$expect" &
  ticker=$!
  # Not `if ! (...)`: errexit is off inside a command that is tested, so a
  # failed step in a recipe would go on to the next one. Here it stops it.
  set +e
  (set -e; build_piece "$p" "$tmp") >"$tmp.log" 2>&1
  status=$?
  set -e
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  ticker=""
  [ -t 2 ] && printf '\r\033[K' >&2
  if [ "$status" -ne 0 ]; then
    tail -n 30 "$tmp.log" >&2
    echo "toolchain: building $p failed; full log: $tmp.log" >&2
    echo "toolchain: the failing recipe is build_piece $p in $here/toolchain.sh" >&2
    rm -rf "$tmp"
    go clean -cache  # a failed run leaves no build cache behind either
    exit 1
  fi
  rm -f "$tmp.log"
  # How long this piece took: the next build's expectation and the benchmarks' table.
  echo "$((SECONDS - start))" >"$tmp/.build-seconds"
  touch "$tmp/.done"
  rm -rf "$dir" && mv "$tmp" "$dir"
  echo "toolchain: $label: built in $(human $((SECONDS - start)))" >&2
  cache_mib=$(du -sm "$GOCACHE" 2>/dev/null | cut -f1)
  if [ "${cache_mib:-0}" -gt "${ROLLING_GOCACHE_CAP_MIB:-5120}" ]; then
    go clean -cache
  fi
done
if [ ${#todo[@]} -gt 0 ]; then
  go clean -cache
  echo "toolchain: built ${#todo[@]} piece(s) in $(human $((SECONDS - all_start)))" >&2
fi
if [ -n "$only" ]; then
  piece_dir "$only"
  exit 0
fi

bin=$(bin_dir)
if [ ! -f "$bin/.done" ]; then
  rm -rf "$bin" && mkdir -p "$bin"
  for p in "${pieces[@]}"; do
    for f in "$(piece_dir "$p")"/*; do
      # Hard links, not symlinks: the language host finds its executor script
      # next to its own resolved path, and the CLI finds the host next to itself.
      ln "$f" "$bin/" 2>/dev/null || cp -p "$f" "$bin/"
    done
  done
  touch "$bin/.done"
fi
echo "$bin"
