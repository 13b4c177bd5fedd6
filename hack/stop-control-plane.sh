#!/usr/bin/env bash
# Stop what hack/start-control-plane.sh DIR started (by the pids it recorded), leaving DIR for inspection.
source "$(dirname "$0")/lib.sh"
D="${1:?usage: $0 DIR}"
for name in controller-manager apiserver etcd; do
  pidfile="$D/$name.pid"
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
