#!/usr/bin/env bash
# Images for the real node, made here without Docker Hub or a Docker engine, and
# pushed to the node's registry (localhost:5000 inside the node):
#
#   cluster/images.sh pause               localhost:5000/pause:rolling, the pod sandbox (tools/pause)
#   cluster/images.sh base                localhost:5000/rolling-base:<hash>: nginx on a minimal
#                                         Debian root filesystem (debootstrap), cached by its inputs
#   cluster/images.sh app VERSION [KIND]  localhost:5000/rolling-app:VERSION, built by buildah from
#                                         app/Dockerfile itself on that base; KIND makes a broken one:
#                                         never-ready (the server never answers), crash (exits at start);
#                                         unlimited serves, ignoring the stack's keep-alive limits;
#                                         errors and slow pass their probes, but answer users 500, or
#                                         slowly (about 2 s a page); flaky answers 0.5 % of users 500,
#                                         partial 5 %; resets closes 10 % of users' connections with
#                                         no response at all; cold answers users 500 for its first 10 s;
#                                         partial3 fails 3.1 %; bursts fails half of them 2 s in every 100
#   cluster/images.sh watchdog            localhost:5000/rolling-watchdog:rolling, the cluster's watchdog over a
#                                         judged release (watchdog/: one static binary), cached by its source
#   cluster/images.sh base-ref            print the base image's reference
#   cluster/images.sh revision REF        print the revision label of REF in the node's registry
#                                         (empty when it has none); exit 3 when REF is not there
#   cluster/images.sh push REF VERSION REV  the app as REF (localhost:5000/rolling-app:VERSION),
#                                         labelled with the commit REV: scripts/registry.sh's verbs
#   cluster/images.sh digest REF          print REF's manifest digest; exit 3 when REF is not there
#   cluster/images.sh copy SRC DST        copy SRC to DST in the node's registry, digest unchanged
#                                         (a promotion between two stacks' repositories)
#
# REVISION, when set, labels an app image with the commit it was built from
# (org.opencontainers.image.revision), as the deploy pipeline does.
# ROLLING_CLUSTER names the cluster whose node gets the images.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rolling
images=$cache/images
# shellcheck disable=SC1091  # KEY=VALUE lines
. "$here/network.env"
registry=localhost:$REGISTRY_PORT
suite=bookworm
# What goes into the base image; a change here makes a new one.
base_packages=nginx-light
base_recipe=3

# buildah and skopeo keep their storage under the cache, not in /var/lib/containers,
# and reach the registry from inside the node's network namespace.
export TMPDIR=$images/tmp
storage=(--root "$images/storage" --runroot "$images/run" --storage-driver vfs)
node() { "$here/node.sh" exec "$@"; }
buildah_() { buildah "${storage[@]}" "$@"; }

mirror() {
  # ROLLING_DEBIAN_MIRROR when set (a machine whose apt is not Debian's: Ubuntu's has no bookworm); else
  # the Debian archive this machine's apt uses (the only one it may reach).
  if [ -n "${ROLLING_DEBIAN_MIRROR:-}" ]; then echo "$ROLLING_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}

base_hash() {
  # The recipe below and its inputs, not the rest of this file.
  { echo "$suite $base_packages $base_recipe"; declare -f base; } | sha256sum | cut -c1-12
}

base_ref() { echo "$registry/rolling-base:$(base_hash)"; }

push_layout() {
  # push_layout OCI_DIR:TAG REF: copy an image from an OCI layout to the node's registry.
  node skopeo copy --quiet --dest-tls-verify=false "oci:$1" "docker://$2"
}

pause() {
  local bin ctr layout=$images/pause-oci
  bin=$("$root/tools/toolchain.sh" --bin)
  if [ ! -f "$layout/.done" ] || ! cmp -s "$bin/pause" "$layout/pause"; then
    rm -rf "$layout" && mkdir -p "$layout" "$TMPDIR"
    ctr=$(buildah_ from scratch)
    buildah_ copy "$ctr" "$bin/pause" /pause >/dev/null
    buildah_ config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    buildah_ commit --quiet "$ctr" "oci:$layout/oci:pause" >/dev/null
    buildah_ rm "$ctr" >/dev/null
    cp "$bin/pause" "$layout/pause"
    touch "$layout/.done"
  fi
  push_layout "$layout/oci:pause" "$registry/pause:rolling"
}

watchdog() {
  # One static binary in an image of its own, as the pause image; rebuilt when its source or Go changes.
  local hash dir ctr
  hash=$({ cat "$root/watchdog/go.mod" "$root/watchdog/"*.go; go env GOVERSION; } | sha256sum | cut -c1-12)
  dir=$images/watchdog-$hash
  if [ ! -f "$dir/.done" ]; then
    rm -rf "$dir" && mkdir -p "$dir" "$TMPDIR"
    (cd "$root/watchdog" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$dir/rolling-watchdog" .)
    ctr=$(buildah_ from scratch)
    buildah_ copy "$ctr" "$dir/rolling-watchdog" /rolling-watchdog >/dev/null
    buildah_ config --entrypoint '["/rolling-watchdog"]' --user 65532:65532 "$ctr"
    buildah_ commit --quiet "$ctr" "oci:$dir/oci:watchdog" >/dev/null
    buildah_ rm "$ctr" >/dev/null
    touch "$dir/.done"
    find "$images" -maxdepth 1 -name 'watchdog-*' ! -name "watchdog-$hash" -exec rm -rf {} +
  fi
  push_layout "$dir/oci:watchdog" "$registry/rolling-watchdog:rolling"
}

base() {
  local hash dir ctr
  hash=$(base_hash)
  dir=$images/base-$hash
  if [ ! -f "$dir/.done" ]; then
    echo "images: building the base image (debootstrap $suite, $base_packages) ..." >&2
    local start=$SECONDS
    rm -rf "$dir" && mkdir -p "$dir" "$TMPDIR"
    local keyring=()
    # Debian's signing keys, where this machine's own are another distribution's (debian-archive-keyring).
    [ -f /etc/debian_version ] && grep -qx 'ID=debian' /etc/os-release 2>/dev/null ||
      keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    debootstrap --variant=minbase "${keyring[@]}" --include="$base_packages" "$suite" "$dir/rootfs" "$(mirror)" \
      >"$dir/debootstrap.log" 2>&1 || { tail -n 20 "$dir/debootstrap.log" >&2; exit 1; }
    # What an image does not need: package lists, docs, man pages, locales.
    rm -rf "$dir"/rootfs/var/lib/apt/lists/* "$dir"/rootfs/usr/share/{doc,man,locale,info}/* \
      "$dir"/rootfs/var/cache/apt/*.bin "$dir"/rootfs/var/log/*
    # Serve as nginx-unprivileged does: /usr/share/nginx/html on port 8080 as a
    # user that is not root (no `user` line: the master never switches), logs to the
    # container's output, temporary files and the pid file in /tmp (writable by any
    # user, so the image also runs without the pod's scratch folders), and with a
    # read-only root filesystem and no capability under the program's pod spec.
    # (sites-enabled/default is an absolute symlink: remove it rather than write through it.)
    rm -f "$dir/rootfs/etc/nginx/sites-enabled/default"
    mkdir -p "$dir/rootfs/usr/share/nginx/html" "$dir/rootfs/var/cache/nginx" "$dir/rootfs/var/log/nginx"
    ln -sf /dev/stdout "$dir/rootfs/var/log/nginx/access.log"
    ln -sf /dev/stderr "$dir/rootfs/var/log/nginx/error.log"
    cat >"$dir/rootfs/etc/nginx/nginx.conf" <<'CONF'
worker_processes 1;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log /dev/stdout;
    keepalive_timeout 65;
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    server {
        listen 8080;
        root /usr/share/nginx/html;
        index index.html;
    }
}
CONF
    ctr=$(buildah_ from scratch)
    tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
    buildah_ add "$ctr" "$dir/rootfs.tar" / >/dev/null
    # No stop signal, as Debian's nginx declares none: the app image declares nginx's graceful one
    # itself (app/Dockerfile), which an end-to-end test reads from the image it builds.
    buildah_ config --cmd '["nginx", "-g", "daemon off;"]' --port 8080 --user 10001:10001 "$ctr"
    buildah_ commit --quiet "$ctr" "oci:$dir/oci:base" >/dev/null
    buildah_ rm "$ctr" >/dev/null
    rm -rf "$dir/rootfs" "$dir/rootfs.tar"
    echo $((SECONDS - start)) >"$dir/build-seconds"  # for the benchmarks' report
    touch "$dir/.done"
    # Bases made from other inputs are not used any more.
    find "$images" -maxdepth 1 -name 'base-*' ! -name "base-$hash" -exec rm -rf {} +
  fi
  push_layout "$dir/oci:base" "$(base_ref)"
}

app() {
  local version=$1 kind=${2:-} context
  base
  context=$(mktemp -d "$TMPDIR/app.XXXXXX")
  cp -r "$root/app/." "$context/"
  case $kind in
    "") ;;
    never-ready)
      # Starts and stays up, but answers nothing on the port the probes use; stops when told to.
      printf 'FROM app\nCMD ["sh", "-c", "trap \\"exit 0\\" TERM QUIT INT; sleep 3600 & wait"]\n' >>"$context/Dockerfile" ;;
    crash)
      printf 'FROM app\nCMD ["sh", "-c", "echo broken build >&2; exit 1"]\n' >>"$context/Dockerfile" ;;
    unlimited)
      # Serves like the app, but ignores the stack's keep-alive limits, as an image with its own
      # nginx configuration (the stock one) does: the proof that the limits matter.
      sed -i '/keepalive\.d/d' "$context/nginx.conf" ;;
    errors)
      # Ready (the kubelet's probes get the page) while every user gets a server error: an app whose
      # health check passes and whose real work fails, as behind a shallow health check. ($… is nginx's.)
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($http_user_agent !~ "^kube-probe/") { return 500; }|' "$context/nginx.conf" ;;
    slow)
      # Ready (the probes are answered at full speed) while every user's response trickles out at 150
      # bytes a second: about 2 s for the page and its headers.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map $http_user_agent $app_rate { "~^kube-probe/" 0; default 150; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1limit_rate $app_rate;|' "$context/nginx.conf" ;;
    flaky)
      # Ready, and serves users well but for 1 request in 200 (328 of the 65,536 values of the last four
      # hex digits of nginx's random request id), answered 500: the background errors of a healthy
      # service, which the analysis must never blame on a release.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map "$http_user_agent/$request_id" $app_fail { "~^kube-probe/" 0; "~/[0-9a-f]{28}(00[0-9a-f]{2}\|01[0-3][0-9a-f]\|014[0-7])$" 1; default 0; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($app_fail) { return 500; }|' "$context/nginx.conf" ;;
    partial)
      # Ready, and fails 1 user request in 20 (13 of the 256 values of the last two hex digits of nginx's
      # random request id, 5.1 %): a release worse than maxErrorRatio that no single look gives away.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map "$http_user_agent/$request_id" $app_fail { "~^kube-probe/" 0; "~/[0-9a-f]{30}0[0-9a-c]$" 1; default 0; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($app_fail) { return 500; }|' "$context/nginx.conf" ;;
    resets)
      # Ready, and closes 1 user connection in 10 (26 of 256 values, 10.2 %) without a response (nginx's
      # 444): the client sees the connection end, no status and no version.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map "$http_user_agent/$request_id" $app_drop { "~^kube-probe/" 0; "~/[0-9a-f]{30}([01][0-9a-f]\|2[0-9])$" 1; default 0; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($app_drop) { return 444; }|' "$context/nginx.conf" ;;
    partial3)
      # As partial, failing 8 of the 256 values (3.1 %): a release at 1.5 times maxErrorRatio.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map "$http_user_agent/$request_id" $app_fail { "~^kube-probe/" 0; "~/[0-9a-f]{30}0[0-7]$" 1; default 0; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($app_fail) { return 500; }|' "$context/nginx.conf" ;;
    bursts)
      # Ready, and fails half its users' requests (by nginx's random request id) for the 2 s of every 100 s
      # whose clock seconds end in 00 or 01: a cause every version built with it shares at the same moment
      # (a dependency down), 1 % of requests on average.
      # shellcheck disable=SC2016
      sed -i 's|^http {|&\n    map "$http_user_agent/$msec/$request_id" $app_fail { "~^kube-probe/" 0; "~/[0-9]*0[01][.][0-9]+/[0-9a-f]{31}[0-7]$" 1; default 0; }|' "$context/nginx.conf"
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1if ($app_fail) { return 500; }|' "$context/nginx.conf" ;;
    cold)
      # Ready at once (the probes get the page), but answers users 500 until it has run 10 s (until
      # /tmp/warm exists): an app that fails while it warms up (a JIT, caches being filled).
      # shellcheck disable=SC2016
      sed -i 's|^\( *\)index index.html;|&\n\1set $app_cold "";\n\1if (!-f /tmp/warm) { set $app_cold 1; }\n\1if ($http_user_agent ~ "^kube-probe/") { set $app_cold ""; }\n\1if ($app_cold) { return 500; }|' "$context/nginx.conf"
      printf 'FROM app\nCMD ["sh", "-c", "(sleep 10; : > /tmp/warm) & exec nginx -g \\"daemon off;\\""]\n' >>"$context/Dockerfile" ;;
    *) echo "images: unknown kind '$kind'; use never-ready, crash, unlimited, errors, slow, flaky, partial, partial3, resets, cold or bursts" >&2; exit 2 ;;
  esac
  case $kind in
    # A second stage on the app's image: name the first one.
    never-ready | crash | cold) sed -i '0,/^FROM \(.*\)$/s//FROM \1 AS app/' "$context/Dockerfile" ;;
  esac
  local label=()
  [ -z "${REVISION:-}" ] || label=(--label "org.opencontainers.image.revision=$REVISION")
  node buildah "${storage[@]}" bud --quiet --isolation chroot --layers --tls-verify=false \
    --build-arg "BASE=$(base_ref)" --build-arg "VERSION=$version" "${label[@]}" \
    -t "$registry/rolling-app:$version" "$context" >/dev/null
  node buildah "${storage[@]}" push --quiet --tls-verify=false "$registry/rolling-app:$version" >/dev/null
  rm -rf "$context"
  echo "$registry/rolling-app:$version"
}

digest() {
  # The sha256 of the manifest's bytes as the registry serves them (scripts/registry.sh says why).
  local ref=$1 out
  if ! out=$(node skopeo inspect --tls-verify=false --raw "docker://$ref" 2>&1); then
    case $out in
      *"manifest unknown"*|*"not found"*|*"name unknown"*) exit 3 ;;
    esac
    echo "images: cannot inspect $ref: $out" >&2
    exit 1
  fi
  node skopeo inspect --tls-verify=false --raw "docker://$ref" | sha256sum | awk '{print "sha256:" $1}'
}

copy() {
  node skopeo copy --quiet --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$1" "docker://$2"
}

revision() {
  local ref=$1 out
  if ! out=$(node skopeo inspect --tls-verify=false --no-tags \
      --format '{{index .Labels "org.opencontainers.image.revision"}}' "docker://$ref" 2>&1); then
    case $out in
      *"manifest unknown"*|*"not found"*|*"name unknown"*) exit 3 ;;
    esac
    echo "images: cannot inspect $ref: $out" >&2
    exit 1
  fi
  [ "$out" = "<no value>" ] && out=""
  echo "$out"
}

case ${1:-} in
  pause) pause ;;
  watchdog) watchdog ;;
  revision) revision "${2:?revision needs an image reference}" ;;
  digest) digest "${2:?digest needs an image reference}" ;;
  copy) copy "${2:?copy needs SRC DST}" "${3:?copy needs SRC DST}" ;;
  push)
    [ "${2:-}" = "$registry/rolling-app:${3:-}" ] || {
      echo "images: push makes $registry/rolling-app:VERSION only, not '${2:-}'" >&2; exit 2; }
    REVISION=${4:?push needs REF VERSION REV} app "$3" ;;
  base) base ;;
  base-ref) base_ref ;;
  app) app "${2:?app needs a VERSION}" "${3:-}" ;;
  *) echo "usage: $0 pause|watchdog|base|base-ref|revision REF|digest REF|copy SRC DST|push REF VERSION REV|app VERSION [never-ready|crash|unlimited|errors|slow|flaky|partial|partial3|resets|cold|bursts]" >&2
     exit 2 ;;
esac
