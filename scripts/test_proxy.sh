#!/usr/bin/env bash
# scripts/test_proxy.sh - the manual's checks against a running stack
# (scripts/start_all.sh: pace on :8080 in front of backend1 and backend2).
#
#   bash scripts/test_proxy.sh
#   PACE_URL=http://127.0.0.1:9090 bash scripts/test_proxy.sh
#
# Environment:
#   PACE_URL        base URL of pace (default http://localhost:8080)
#   PACE_LIMIT      rate limit max_requests (default 10)
#   PACE_WINDOW     rate limit window_seconds (default 60)
#   PACE_NO_WAIT=1  when the client's rate-limit window is already in use,
#                   fail instead of waiting PACE_WINDOW seconds for it
#
# Checks, in this order (the order matters, see "rate limit" below):
#   1. load balancing: 6 requests alternate between backend1 and backend2
#   2. every one of those responses carries X-Backend: <host:port>
#   3. the backend saw X-Proxy: pace
#   4. the backend saw X-Forwarded-For
#   5. rate limit: with 10 requests per 60 s, the 11th request is the first
#      to get 429 (with Retry-After)
#   6. /metrics has http_requests_duration_seconds_bucket, and answers 200
#      even though this client is now over its limit (never rate limited)
# Prints PASS/FAIL per check and "N passed, M failed"; exits 1 on a failure.
#
# Rate limit: every request counts against the client's window, including
# the 6 of checks 1-4. So checks 1-4 run first on a fresh window, and check 5
# then sends 15 more and expects exactly PACE_LIMIT - 6 of them to pass
# before the first 429: the 11th request overall. A window that is not fresh
# (this script ran less than PACE_WINDOW seconds ago, or other requests came
# from this address) shows up as a 429 among the first 6 or, when pace sends
# a RateLimit header with the remaining quota, as fewer remaining than
# expected; the script then waits for the window to pass and starts over
# (once), unless PACE_NO_WAIT=1.

set -uo pipefail

URL=${PACE_URL:-http://localhost:8080}
URL=${URL%/}
LIMIT=${PACE_LIMIT:-10}
WINDOW=${PACE_WINDOW:-60}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pace-test.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT

PASSED=0
FAILED=0
pass() { echo "PASS  $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL  $1"; FAILED=$((FAILED + 1)); }

# get N PATH: one request; sets CODE and leaves headers in $TMP/N.h, body in
# $TMP/N.b (header names lower-cased, CRs removed).
get() {
	local n=$1 path=$2
	CODE=$(curl -s -m 5 -D "$TMP/$n.raw" -o "$TMP/$n.b" -w '%{http_code}' "$URL$path")
	tr -d '\r' <"$TMP/$n.raw" | awk 'BEGIN { FS = OFS = ":" } NR > 1 { $1 = tolower($1) } { print }' >"$TMP/$n.h"
}
header() { sed -n "s/^$2: *//p" "$TMP/$1.h" | head -n 1; } # n name(lower-case)

# remaining N: the remaining quota from a RateLimit header in response N,
# for either draft format ("limit=10, remaining=9, reset=60" or
# "\"default\";r=9;t=60"); empty when there is none.
remaining() {
	header "$1" ratelimit | grep -oE '(remaining=|(^|[;, ])r=)[0-9]+' | head -n 1 | grep -oE '[0-9]+$'
}

# ---- checks 1-4: six requests on a fresh window --------------------------------
declare -a CODES
fresh_window() { # requests 1..6; true when the window was fresh
	local i r limited=0
	for i in 1 2 3 4 5 6; do
		get "$i" /
		CODES[i]=$CODE
		if [ "$CODE" = 000 ]; then
			fail "pace answers at $URL (is it running? bash scripts/start_all.sh)"
			echo "$PASSED passed, $FAILED failed"
			exit 1
		fi
		[ "$CODE" = 429 ] && limited=1
	done
	[ "$limited" = 0 ] || return 1
	# After request 1 of a fresh window, LIMIT-1 requests remain.
	r=$(remaining 1)
	[ -z "$r" ] || [ "$r" -ge $((LIMIT - 1)) ]
}
if ! fresh_window; then
	if [ "${PACE_NO_WAIT:-0}" = 1 ]; then
		echo "note: this client's rate-limit window is already in use (PACE_NO_WAIT=1, not waiting)"
	else
		echo "note: this client's rate-limit window is already in use; waiting ${WINDOW}s for it to pass (PACE_NO_WAIT=1 skips)"
		sleep $((WINDOW + 1))
		fresh_window || echo "note: the window is still in use after waiting; is something else sending requests?"
	fi
fi
USED=6

s=()
for i in 1 2 3 4 5 6; do
	name=$(grep -o -m 1 'backend[0-9][0-9]*' "$TMP/$i.b" | head -n 1)
	s+=("${name:-status-${CODES[i]}}")
done
alternates=1
for i in 1 2 3 4 5; do
	[ "${s[i]}" != "${s[i - 1]}" ] || alternates=0
done
[[ ${s[0]} == backend* && ${s[1]} == backend* ]] || alternates=0
if [ "$alternates" = 1 ]; then
	pass "load balancing alternates over 6 requests: ${s[*]}"
else
	fail "load balancing alternates over 6 requests: got ${s[*]}"
fi

missing=""
for i in 1 2 3 4 5 6; do
	[[ $(header "$i" x-backend) =~ ^[^[:space:]]+:[0-9]+$ ]] || missing+=" $i"
done
if [ -z "$missing" ]; then
	pass "X-Backend header in every response ($(header 1 x-backend), $(header 2 x-backend))"
else
	fail "X-Backend header in every response: missing or not host:port in response(s)$missing"
fi

if grep -q '^x-proxy: pace$' "$TMP/1.b"; then
	pass "backend saw X-Proxy: pace"
else
	fail "backend saw X-Proxy: pace: body was: $(tr '\n' '|' <"$TMP/1.b")"
fi

xff=$(sed -n 's/^x-forwarded-for: //p' "$TMP/1.b")
if [ -n "$xff" ] && [ "$xff" != - ]; then
	pass "backend saw X-Forwarded-For: $xff"
else
	fail "backend saw X-Forwarded-For: body was: $(tr '\n' '|' <"$TMP/1.b")"
fi

# ---- check 5: the (LIMIT+1)th request of the window gets 429 -------------------
codes=""
first429=0
retry_after=""
for i in $(seq 1 15); do
	get "r$i" /
	codes+="$CODE "
	if [ "$CODE" = 429 ] && [ "$first429" = 0 ]; then
		first429=$((USED + i))
		retry_after=$(header "r$i" retry-after)
	fi
done
codes=${codes% }
# After the first 429, every later request of the burst must be refused too.
late200=$(echo "$codes" | awk '{ for (i = 1; i <= NF; i++) { if ($i == 429) seen = 1; else if (seen) bad++ } } END { print bad + 0 }')
want=$((LIMIT + 1))
if [ "$first429" = "$want" ] && [ "$late200" = 0 ] && [ -n "$retry_after" ]; then
	pass "rate limit: request $want of the window is the first 429 (Retry-After: $retry_after)"
elif [ "$first429" = 0 ]; then
	fail "rate limit: no 429 in 15 requests after $USED (limit $LIMIT): $codes"
else
	fail "rate limit: first 429 at request $first429 of the window, want $want; Retry-After '${retry_after:-}'; statuses after the first $USED: $codes (requests from this address in the last ${WINDOW}s count too: wait or restart pace)"
fi

# ---- check 6: /metrics, never rate limited -----------------------------------
get m /metrics
if [ "$CODE" = 200 ] && grep -q '^http_requests_duration_seconds_bucket{' "$TMP/m.b"; then
	pass "/metrics has http_requests_duration_seconds_bucket (200 while over the limit)"
else
	fail "/metrics has http_requests_duration_seconds_bucket: status $CODE, $(grep -c . "$TMP/m.b") lines"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
