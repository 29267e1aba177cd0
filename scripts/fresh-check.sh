#!/usr/bin/env bash
# The fresh-machine check: the README's two commands as a new user runs them.
# Clones this repository's HEAD (committed work only) into a temporary folder,
# points XDG_CACHE_HOME at an empty folder there, strips this checkout's tools
# and settings from the environment, and runs `make demo` then `make test`, on
# clusters named rolling-fresh and rolling-fresh-e2e (its own clusters).
# Prints each toolchain piece's cold build time, the disk peak and the totals,
# and writes them to report.md in that folder.
#
#   scripts/fresh-check.sh [--keep]    (or: make fresh-check)
#
# --keep leaves the folder (the clone and its cache) for a look afterwards;
# without it the folder is removed at the end, whatever the outcome.
# It takes as long as a cold build plus both commands: it is not part of `make test`.
set -euo pipefail

keep=0
case ${1:-} in
  --keep) keep=1 ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/rolling-fresh.XXXXXX")
clone=$work/rolling
cache=$work/cache
report=$work/report.md
mkdir -p "$cache"

sampler=""
# Cluster names of its own: a demo or a test run of this checkout goes on beside it.
demo_cluster=rolling-fresh
e2e_cluster=rolling-fresh-e2e
# shellcheck disable=SC2329  # run by the EXIT trap below
cleanup() {
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
  # A cluster the commands left running in the clone is stopped before its folder goes.
  if [ -d "$clone" ]; then
    for c in "$demo_cluster" "$e2e_cluster"; do
      (cd "$clone" && XDG_CACHE_HOME=$cache ROLLING_CLUSTER=$c make -s cluster-down >/dev/null 2>&1) || true
    done
  fi
  if [ "$keep" = 1 ]; then
    echo "fresh-check: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

git clone --quiet --no-hardlinks "$root" "$clone"
echo "fresh-check: $(git -C "$clone" log -1 --format='%h %s') in $clone, cache $cache" >&2

# PATH without anything this checkout or its cache put there (make exports both).
clean_path=$(tr ':' '\n' <<<"$PATH" | grep -v -e "^$root/" -e '/rolling/toolchain/' | paste -sd: -)
fresh() {
  env -u PULUMI_HOME -u PULUMI_BACKEND_URL -u PULUMI_CONFIG_PASSPHRASE -u KUBECONFIG \
    -u ROLLING_SYSTEM_PULUMI -u ROLLING_CLUSTER -u KWOK_WORKDIR -u VIRTUAL_ENV \
    -u GOMODCACHE -u GOCACHE -u GOFLAGS -u MAKEFLAGS -u MAKELEVEL \
    PATH="$clean_path" XDG_CACHE_HOME="$cache" "$@"
}

# The disk the folder takes, sampled every 20 s; the largest figure is the peak.
(
  peak=0
  while kill -0 "$$" 2>/dev/null; do
    now=$(du -sxk "$work" 2>/dev/null | cut -f1) || now=0
    [ "${now:-0}" -gt "$peak" ] && peak=$now && echo "$peak" >"$work/disk-peak-kib"
    sleep 20
  done
) &
sampler=$!

status=0
declare -A took
for cmd in demo test; do
  echo "fresh-check: make $cmd ..." >&2
  start=$SECONDS
  if ! (cd "$clone" && fresh ROLLING_CLUSTER="$demo_cluster" make "$cmd" E2E_CLUSTER="$e2e_cluster") 2>&1 |
    tee "$work/make-$cmd.log"; then
    status=1
  fi
  took[$cmd]=$((SECONDS - start))
  [ "$status" = 0 ] || { echo "fresh-check: make $cmd FAILED; log: $work/make-$cmd.log" >&2; keep=1; break; }
done

{
  echo "# Fresh-machine check, $(date -u +%Y-%m-%d), $(nproc) cores"
  echo
  echo "commit $(git -C "$clone" log -1 --format='%h %s')"
  echo
  echo "| step | seconds |"
  echo "|---|---|"
  for f in "$cache"/rolling/toolchain/pieces/*/.build-seconds; do
    [ -f "$f" ] || continue
    piece=$(basename "$(dirname "$f")")
    echo "| toolchain piece ${piece%-*} | $(cat "$f") |"
  done
  for cmd in demo test; do
    [ -n "${took[$cmd]:-}" ] && echo "| make $cmd (whole command) | ${took[$cmd]} |"
  done
  echo
  echo "disk peak of the clone and its cache: $(( $(cat "$work/disk-peak-kib" 2>/dev/null || echo 0) / 1024 / 1024 )) GiB;" \
    "after: $(du -sxh "$cache" | cut -f1) in the cache"
  echo
  if [ "$status" = 0 ]; then echo "result: both commands passed"; else echo "result: FAILED (see the logs in $work)"; fi
} | tee "$report"
exit "$status"
