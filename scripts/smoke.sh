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
fail() {
	echo "smoke.sh: $*"
	echo "--- start_all.sh output:"
	cat "$log"
	exit 1
}
PACE_URL=$url bash scripts/test_proxy.sh && kill -0 "$pid" 2>/dev/null || fail "test_proxy.sh failed"

# Stopping twice, as an impatient Ctrl-C does: the second signal comes while
# pace drains a slow request. start_all.sh must still stop every process it
# started (it used to die there, leaving the backends on their ports), and
# not wait out the drain (8 s here): it used to, when the second signal
# came within the 0.5 s in which pace takes one for the same request.
children=$(sed -n 's|^ *[a-z0-9]*  *pid \([0-9]*\) .*|\1|p' "$log")
[ -n "$children" ] || fail "no pids in start_all.sh's output"
# From another loopback address: 127.0.0.1's quota went to test_proxy.sh.
curl -s -o /dev/null --max-time 15 --interface 127.0.0.7 "http://127.0.0.7:${url##*:}/delay?ms=8000" &
slow=$!
sleep 0.5
kill -TERM "$pid"
sleep 0.2
kill -TERM "$pid"
t0=$SECONDS
took=
for _ in $(seq 1 75); do # 15 s
	kill -0 "$pid" 2>/dev/null || { took=$((SECONDS - t0)); break; }
	sleep 0.2
done
[ -n "$took" ] || fail "start_all.sh still running 15 s after it was stopped twice"
[ "$took" -lt 5 ] || fail "start_all.sh took ${took}s to stop after the second signal: it waited out pace's drain"
wait "$slow" 2>/dev/null
left=
for c in $children; do
	kill -0 "$c" 2>/dev/null && left+=" $c"
done
if [ -n "$left" ]; then
	kill -KILL $left 2>/dev/null
	fail "still running after start_all.sh was stopped twice: pids$left"
fi
echo "smoke.sh: stopped twice, nothing left running"
exit 0
