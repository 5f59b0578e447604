#!/usr/bin/env bash
# scripts/start_all.sh - run the local stack: test backends and pace.
#
#   bash scripts/start_all.sh            # then, in another terminal:
#   curl -s localhost:8080/ | grep backend
#   bash scripts/test_proxy.sh
#
# Builds what is missing or out of date (./pace with `go build -o pace .`,
# ./bin/backend from bench/backend), then a test backend on each loopback
# address (127.0.0.1, localhost, [::1]) in the config's [upstreams] backends
# (backendN for the N-th; 127.0.0.1:8000 and :8001 in ./proxy.toml), then
# pace with $PACE_CONFIG (default ./proxy.toml, else ./config/proxy.toml)
# and log level $PACE_LOG (default info). It waits until every port
# answers, prints what runs where, and
# stays in the foreground: Ctrl-C or SIGTERM stops everything it started.
# A backend that exits (say, killed to watch failover) is reported and the
# rest keep running; if pace exits on its own, the backends are stopped
# too and the script exits non-zero.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

die() { echo "start_all.sh: $*" >&2; exit 1; }

PIDS=()
NAMES=()
STOPPING= # the pid stop_all waits for
# hurry: Ctrl-C (or TERM) again while stopping. A second signal makes pace
# exit at once, unless it comes within 0.5 s of the first (pace then takes
# it for the same stop request), so one comes again after that; stop_all
# then stops the backends as before. Dying here instead would leave them
# running in their sessions.
hurry() {
	echo " (again: not waiting for it)"
	[ -n "$STOPPING" ] || return 0
	kill -TERM "$STOPPING" 2>/dev/null
	(sleep 0.6 && kill -TERM "$STOPPING" 2>/dev/null) &
}
stop_all() {
	trap - EXIT
	trap hurry INT TERM
	local i pid
	# Newest first, one at a time: pace drains its in-flight requests (for
	# up to shutdown_timeout) while the backends are still there to answer.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		if kill -0 "$pid" 2>/dev/null; then
			echo "stopping ${NAMES[i]} (pid $pid)"
			STOPPING=$pid
			kill -TERM "$pid" 2>/dev/null
			# A trapped signal ends wait early: wait until it is gone.
			while kill -0 "$pid" 2>/dev/null; do
				wait "$pid" 2>/dev/null
			done
		fi
	done
	STOPPING=
}
trap stop_all EXIT
# Ctrl-C or a TERM is how this is meant to stop: a clean stop exits 0
# (make would report "Error 130" otherwise).
trap 'echo; exit 0' INT
trap 'exit 0' TERM

port_open() { # host port
	local host=${1#[}
	(exec 3<>"/dev/tcp/${host%]}/$2") 2>/dev/null
}

wait_port() { # host port pid name
	local i
	for ((i = 0; i < 100; i++)); do
		port_open "$1" "$2" && return 0
		kill -0 "$3" 2>/dev/null || die "$4 exited before listening on $1:$2"
		sleep 0.1
	done
	die "$4 is not listening on $1:$2 after 10s"
}

# stale FILE PKG...: true when FILE is missing or older than a .go file in PKG
stale() {
	local bin=$1
	shift
	[ -x "$bin" ] || return 0
	[ -n "$(find "$@" -name '*.go' -newer "$bin" -print -quit 2>/dev/null)" ]
}

# ---- build -----------------------------------------------------------------
if stale ./pace . ; then
	echo "building ./pace"
	go build -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o pace . ||
		die "go build -o pace . failed"
fi
mkdir -p bin
if stale ./bin/backend ./bench/backend; then
	echo "building ./bin/backend"
	go build -o bin/backend ./bench/backend || die "go build ./bench/backend failed"
fi

CONFIG=${PACE_CONFIG:-}
if [ -z "$CONFIG" ]; then
	for c in ./proxy.toml ./config/proxy.toml; do
		[ -f "$c" ] && CONFIG=$c && break
	done
fi
[ -n "$CONFIG" ] || die "no config: set PACE_CONFIG or create ./proxy.toml (e.g. cp deploy/proxy.toml proxy.toml)"
if [ "$CONFIG" = ./proxy.toml ] && [ -z "${PACE_CONFIG:-}" ] && [ -f ./config/proxy.toml ]; then
	echo "note: using ./proxy.toml; the original manual's config/proxy.toml is not read (PACE_CONFIG=config/proxy.toml for that one)"
fi
[ -f "$CONFIG" ] || die "config $CONFIG does not exist"

CHECK=$(./pace -check -config "$CONFIG") || die "pace -check rejects $CONFIG"
echo "$CHECK"

# The port pace listens on and the backends, as pace itself reads them.
LISTEN=$(awk '$1 == "listen" {print $2; exit}' <<<"$CHECK")
PACE_PORT=${LISTEN##*:}
[[ $PACE_PORT =~ ^[0-9]+$ ]] || die "cannot tell pace's port from: $LISTEN"
PACE_HOST=${LISTEN%:*}
case $PACE_HOST in
"" | 0.0.0.0) PACE_HOST=127.0.0.1 ;;
"[::]") PACE_HOST="[::1]" ;; # pace's [::] is IPv6 only, as nginx's
esac
BACKENDS=()   # host:port of the test backends to start (loopback ones)
BNAMES=()     # backendN, N its place in the config's list
n=0
for addr in $(awk '$1 == "backend" {print $2}' <<<"$CHECK"); do
	n=$((n + 1))
	case ${addr%:*} in
	127.0.0.1 | localhost | "[::1]") BACKENDS+=("$addr") BNAMES+=("backend$n") ;;
	*) echo "start_all.sh: backend $addr is not one this script starts (127.0.0.1, localhost or [::1]); start it yourself" >&2 ;;
	esac
done

seen=" "
for addr in ${BACKENDS[@]+"${BACKENDS[@]}"} "$PACE_HOST:$PACE_PORT"; do
	port=${addr##*:}
	case $seen in *" $port "*) die "port $port is named twice (backends and listen must use distinct ports)" ;; esac
	seen+="$port "
	if port_open "${addr%:*}" "$port"; then
		die "port $port is already in use (find it with: lsof -i :$port, or ss -ltnp | grep :$port)"
	fi
done

# ---- start -----------------------------------------------------------------
start() { # name host:port command...
	local name=$1 addr=$2
	shift 2
	# A session of its own: Ctrl-C reaches only this script, which then sends
	# one SIGTERM (pace treats a second signal as "exit now, no draining").
	setsid "$@" &
	PIDS+=($!)
	NAMES+=("$name")
	wait_port "${addr%:*}" "${addr##*:}" "$!" "$name"
}
for ((i = 0; i < ${#BACKENDS[@]}; i++)); do
	start "${BNAMES[i]}" "${BACKENDS[i]}" ./bin/backend -listen "${BACKENDS[i]}" -name "${BNAMES[i]}" -quiet
done
PACE_LOG=${PACE_LOG:-info}
export PACE_LOG
start pace "$PACE_HOST:$PACE_PORT" ./pace -config "$CONFIG" -log-level "$PACE_LOG"

cat <<EOF

running (Ctrl-C stops all):
$(for ((i = 0; i < ${#BACKENDS[@]}; i++)); do echo "  ${BNAMES[i]}  pid ${PIDS[i]}  http://${BACKENDS[i]}/"; done)
  pace      pid ${PIDS[-1]}  http://localhost:$PACE_PORT/  (config $CONFIG, log $PACE_LOG)

try:
  curl -s http://localhost:$PACE_PORT/ | grep backend
  curl -s http://localhost:$PACE_PORT/metrics
  PACE_URL=http://localhost:$PACE_PORT bash scripts/test_proxy.sh
EOF

# Wait until pace exits on its own (or a signal arrives); report backends
# that exit meanwhile, since pace fails over to the one left. (Plain
# `wait -n` on any child and kill -0: `wait -p` and pid lists for
# `wait -n` need bash 5.1.)
live=("${!PIDS[@]}")
while :; do
	wait -n
	rc=$?
	next=()
	for i in "${live[@]}"; do
		if kill -0 "${PIDS[i]}" 2>/dev/null; then
			next+=("$i")
		elif [ "${NAMES[i]}" = pace ]; then
			echo "start_all.sh: pace exited (status $rc); stopping the backends" >&2
			exit 1
		else
			echo "start_all.sh: ${NAMES[i]} exited (status $rc); pace keeps running and fails over to any backend left (Ctrl-C stops all)" >&2
		fi
	done
	live=("${next[@]}")
done
