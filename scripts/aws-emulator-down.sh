#!/usr/bin/env bash
# Stops AWS emulators the aws tests left running (a test killed before its teardown): each one's pid is
# in FOLDER/*.pid while it runs. Safe to run twice.
set -euo pipefail
folder=${1:?usage: aws-emulator-down.sh FOLDER}
[ -d "$folder" ] || exit 0
for pidfile in "$folder"/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # Only an emulator (tools/aws-emulator/server.py): a pid may have been reused since.
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q aws-emulator/server.py; then
    kill "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
