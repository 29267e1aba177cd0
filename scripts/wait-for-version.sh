#!/usr/bin/env bash
# Poll URL/version.txt until it names VERSION, for at most TIMEOUT seconds (default 300), one
# request every 5 s at most: after a rollout, the proof that the load balancer serves the new
# version. Exit 0 once it does; 1 (saying what it saw last) when it never did.
# Usage: scripts/wait-for-version.sh URL VERSION [TIMEOUT]
set -euo pipefail
url=${1:?usage: $0 URL VERSION [TIMEOUT]}
version=${2:?usage: $0 URL VERSION [TIMEOUT]}
timeout=${3:-300}
interval=${WAIT_INTERVAL_S:-5}
case $url in
  http://?*|https://?*) ;;
  *) echo "wait-for-version: '$url' is not an http(s) URL" >&2; exit 2 ;;
esac
deadline=$((SECONDS + timeout))
seen="no answer"
attempts=0
while :; do
  attempts=$((attempts + 1))
  if body=$(curl --silent --show-error --fail --max-time 5 "${url%/}/version.txt" 2>&1); then
    seen="'$body'"
    if [ "$body" = "$version" ]; then
      echo "wait-for-version: $url serves $version (after $attempts request(s))"
      exit 0
    fi
  else
    seen="an error: $body"
  fi
  if [ $((SECONDS + interval)) -gt "$deadline" ]; then
    echo "wait-for-version: $url did not serve $version within ${timeout}s ($attempts requests); last: $seen" >&2
    exit 1
  fi
  sleep "$interval"
done
