#!/usr/bin/env bash
# scripts/smoke.sh — start the stack with scripts/start_all.sh, run
# scripts/test_proxy.sh against it, stop everything. Used by CI so that the
# README's quick-start commands are exercised exactly as users run them.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp)
bash scripts/start_all.sh >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
	curl -s -o /dev/null http://127.0.0.1:8080/metrics && break
	sleep 0.2
done
if bash scripts/test_proxy.sh; then
	exit 0
fi
echo "--- start_all.sh output:"
cat "$log"
exit 1
