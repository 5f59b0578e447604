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
# Wait for start_all.sh to report the stack running, and take pace's
# address from it: a pace (or anything) already on the port must not pass
# for the one just built, so the script has to still be running too.
url=
for _ in $(seq 1 900); do # start_all.sh may build ./bin/backend first
	kill -0 "$pid" 2>/dev/null || break
	url=$(sed -n 's|^ *pace  *pid [0-9]*  *\(http://[^ ]*\)/ .*|\1|p' "$log")
	[ -n "$url" ] && break
	sleep 0.2
done
if [ -z "$url" ] || ! kill -0 "$pid" 2>/dev/null; then
	echo "smoke.sh: scripts/start_all.sh did not start the stack:"
	cat "$log"
	exit 1
fi
if PACE_URL=$url bash scripts/test_proxy.sh && kill -0 "$pid" 2>/dev/null; then
	exit 0
fi
echo "--- start_all.sh output:"
cat "$log"
exit 1
