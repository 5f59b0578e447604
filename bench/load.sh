#!/usr/bin/env bash
# bench/load.sh - side-by-side load harness: pace against nginx, HAProxy,
# Go's httputil.ReverseProxy (bench/refproxy) and the bare backend.
#
# Every proxy does the same work: listen on the same 127.0.0.1 port with the
# same worker count, round robin over the same two bench/backend processes,
# keep upstream connections alive, add "X-Proxy: pace" (and X-Forwarded-For
# / X-Forwarded-Proto) on the way in and "X-Backend: <host:port>" on the way
# out; with --deferred on, all three accept with TCP_DEFER_ACCEPT (pace's
# deferred_accept, nginx's "listen ... deferred", HAProxy's "bind ...
# defer-accept"). The proxies take turns (A B C A B C ...) over several rounds, because
# the machine is shared and noisy: within a round each scenario runs every
# proxy back to back from a fresh start, in an order that rotates from
# round to round. The table reports medians over rounds and each proxy's
# req/s as a ratio to pace's in the same round and scenario.
#
# Usage: bench/load.sh [options]      (bench/README.md has the details)
#   --quick               3s, 1 round, 50 conns, no ab: under a minute
#   --duration 6s         wrk duration per measurement      (BENCH_DURATION)
#   --warmup 1s           unrecorded load before each measurement, to
#                         fill pools and grow heaps; 0 skips it (BENCH_WARMUP)
#   --conns 50,1000       wrk connection counts             (BENCH_CONNS)
#   --wrk-threads 2       wrk threads (at most the connection count)
#                                                           (BENCH_WRK_THREADS)
#   --rounds 5            rounds of A B C ...               (BENCH_ROUNDS)
#   --workers 2           worker processes/threads/loops    (BENCH_WORKERS)
#   --proxies pace,nginx,haproxy,refproxy,direct            (BENCH_PROXIES)
#   --ratelimit off|on    pace's rate limiter; "on" admits every request
#                                                           (BENCH_RATELIMIT)
#   --ab on|off           also run the manual's "ab -n 10000 -c 50"  (BENCH_AB)
#   --deferred on|off     TCP_DEFER_ACCEPT on every proxy's listener (BENCH_DEFERRED)
#   --backend fast|nethttp  the backends: gnet event loops (bench/backend
#                         -fast, default) or the net/http test server,
#                         which costs ~2x the CPU per request  (BENCH_BACKEND)
#   --backend-loops 1     event loops per -fast backend; raise it with
#                         --workers on a many-core machine, so that the
#                         two backends are not the bottleneck (BENCH_BACKEND_LOOPS)
#   --c10k                also 10,000 busy keep-alive connections    (BENCH_C10K=1)
#   --out DIR             where results.md/.tsv and raw logs go (bench/out)
#   BENCH_PACE_BIN=FILE   measure this pace binary instead of building one
#   BENCH_BIN_DIR=DIR     take pace, backend and refproxy prebuilt from DIR
#                         (no Go toolchain needed: for a machine without one)
#
# Only 127.0.0.1 is used. Every process started here is stopped on exit.
# Exit status: 0 when every selected, installed proxy passed its checks,
# 1 when one failed a check (its rows are missing from the table), 2 on
# usage or setup errors.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INSTALL_HINT="apt-get install -y nginx-light haproxy wrk apache2-utils"

die() { echo "load.sh: $*" >&2; exit 2; }
note() { echo "== $*"; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# ---- options ---------------------------------------------------------------
QUICK=0
DURATION=${BENCH_DURATION:-}
CONNS=${BENCH_CONNS:-}
ROUNDS=${BENCH_ROUNDS:-}
WORKERS=${BENCH_WORKERS:-2}
PROXIES=${BENCH_PROXIES:-pace,nginx,haproxy,refproxy,direct}
RATELIMIT=${BENCH_RATELIMIT:-off}
AB=${BENCH_AB:-}
DEFERRED=${BENCH_DEFERRED:-off}
C10K=${BENCH_C10K:-0}
BACKEND=${BENCH_BACKEND:-fast}
BACKEND_LOOPS=${BENCH_BACKEND_LOOPS:-1}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
BIN_DIR=${BENCH_BIN_DIR:-}
WARMUP=${BENCH_WARMUP:-1s}
OUT=${BENCH_OUT:-$ROOT/bench/out}

# needval "$@": take the option's value from --opt=value or the next word.
needval() {
	if [ -z "$val" ]; then
		[ $# -ge 2 ] || die "$opt needs a value"
		val=$2
		SHIFT=2
	fi
}
while [ $# -gt 0 ]; do
	opt=$1 val=
	case $opt in
	--*=*) val=${opt#*=} opt=${opt%%=*} ;;
	esac
	SHIFT=1
	case $opt in
	-h | --help) usage; exit 0 ;;
	--quick) QUICK=1 ;;
	--c10k) C10K=1 ;;
	--duration) needval "$@"; DURATION=$val ;;
	--conns) needval "$@"; CONNS=$val ;;
	--rounds) needval "$@"; ROUNDS=$val ;;
	--workers) needval "$@"; WORKERS=$val ;;
	--proxies) needval "$@"; PROXIES=$val ;;
	--ratelimit) needval "$@"; RATELIMIT=$val ;;
	--ab) needval "$@"; AB=$val ;;
	--deferred) needval "$@"; DEFERRED=$val ;;
	--backend) needval "$@"; BACKEND=$val ;;
	--backend-loops) needval "$@"; BACKEND_LOOPS=$val ;;
	--wrk-threads) needval "$@"; WRK_THREADS=$val ;;
	--warmup) needval "$@"; WARMUP=$val ;;
	--out) needval "$@"; OUT=$val ;;
	*) usage >&2; die "unknown option $opt" ;;
	esac
	shift "$SHIFT"
done
if [ "$QUICK" = 1 ]; then
	: "${DURATION:=3s}" "${CONNS:=50}" "${ROUNDS:=1}" "${AB:=off}"
else
	: "${DURATION:=6s}" "${CONNS:=50,1000}" "${ROUNDS:=5}" "${AB:=on}"
fi
[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || die "--duration: want e.g. 10s, got $DURATION"
[[ $WARMUP =~ ^[0-9]+[smh]?$ ]] || die "--warmup: want e.g. 1s or 0, got $WARMUP"
[[ $CONNS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--conns: want e.g. 50,1000, got $CONNS"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds: want a positive integer, got $ROUNDS"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers: want a positive integer, got $WORKERS"
[[ $BACKEND_LOOPS =~ ^[1-9][0-9]*$ ]] || die "--backend-loops: want a positive integer, got $BACKEND_LOOPS"
[[ $WRK_THREADS =~ ^[1-9][0-9]*$ ]] || die "--wrk-threads: want a positive integer, got $WRK_THREADS"
case $RATELIMIT in on | off) ;; *) die "--ratelimit: want on or off, got $RATELIMIT" ;; esac
case $AB in on | off) ;; *) die "--ab: want on or off, got $AB" ;; esac
case $DEFERRED in
on) PACE_DEFERRED=true NGINX_DEFERRED=" deferred" HAPROXY_DEFERRED=" defer-accept" ;;
off) PACE_DEFERRED=false NGINX_DEFERRED="" HAPROXY_DEFERRED="" ;;
*) die "--deferred: want on or off, got $DEFERRED" ;;
esac
case $BACKEND in fast) BACKEND_FLAGS=(-fast -loops "$BACKEND_LOOPS") ;; nethttp) BACKEND_FLAGS=() ;; *) die "--backend: want fast or nethttp, got $BACKEND" ;; esac
IFS=, read -r -a PROXY_LIST <<<"$PROXIES"
for p in "${PROXY_LIST[@]}"; do
	case $p in pace | nginx | haproxy | refproxy | direct) ;; *) die "--proxies: unknown proxy $p" ;; esac
done

# ---- cleanup ---------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pace-bench.XXXXXX") || die "mktemp failed"
PIDS=()       # long-lived processes (backends)
PROXY_PID=""  # the proxy under test
SAMPLER_PID=""

stop_pid() { # pid: TERM, wait up to 5s, then KILL
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	trap - EXIT INT TERM
	stop_pid "$SAMPLER_PID"
	stop_pid "$PROXY_PID"
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&2; exit 130' INT TERM

# ---- helpers ---------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

USED_PORTS=" "
free_port() { # prints a port nobody listens on (and we have not handed out)
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if ! port_open "$p"; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_port() { # port pid what: wait until port accepts, while pid lives
	local port=$1 pid=$2 what=$3 i
	for ((i = 0; i < 100; i++)); do
		port_open "$port" && return 0
		kill -0 "$pid" 2>/dev/null || { echo "load.sh: $what exited before listening on $port" >&2; return 1; }
		sleep 0.1
	done
	echo "load.sh: $what did not listen on 127.0.0.1:$port within 10s" >&2
	return 1
}

wait_port_closed() {
	local i
	for ((i = 0; i < 50; i++)); do
		port_open "$1" || return 0
		sleep 0.1
	done
}

# Some kernels (gVisor's, or Linux without CONFIG_PROC_CHILDREN) have no
# /proc/PID/task/TID/children; there the process tree comes from the
# parent field of every /proc/PID/stat instead.
HAVE_CHILDREN=0
[ -r "/proc/$$/task/$$/children" ] && HAVE_CHILDREN=1
children_of() { # pid: sets KIDS to pid's children
	local t st
	KIDS=()
	if [ "$HAVE_CHILDREN" = 1 ]; then
		local -a k
		for t in /proc/"$1"/task/*/children; do
			[ -r "$t" ] || continue
			k=()
			read -r -a k <"$t" 2>/dev/null
			KIDS+=("${k[@]}")
		done
		return 0
	fi
	for t in /proc/[0-9]*/stat; do
		st=$(cat "$t" 2>/dev/null) || continue
		st=${st##*) } # state, then ppid
		st=${st#* }
		[ "${st%% *}" = "$1" ] && { t=${t#/proc/}; KIDS+=("${t%/stat}"); }
	done
	return 0
}

TREE=()
tree_pids() { # sets TREE to pid and all its descendants
	local -a queue=("$@")
	local p
	TREE=()
	while [ ${#queue[@]} -gt 0 ]; do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		[ -r "/proc/$p/stat" ] || continue
		TREE+=("$p")
		children_of "$p"
		[ ${#KIDS[@]} -gt 0 ] && queue+=("${KIDS[@]}")
	done
}

RSS_KB=0
rss_tree_kb() { # sets RSS_KB to the VmRSS sum of pid and all its descendants
	local p k v
	RSS_KB=0
	tree_pids "$@"
	for p in "${TREE[@]}"; do
		while read -r k v _; do
			if [ "$k" = "VmRSS:" ]; then RSS_KB=$((RSS_KB + v)); break; fi
		done <"/proc/$p/status" 2>/dev/null
	done
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
CPU_TICKS=0
CPU_SYS=0
cpu_tree_ticks() { # sets CPU_TICKS to the user+system CPU of pid and all its descendants, CPU_SYS to the system part
	local p st
	CPU_TICKS=0
	CPU_SYS=0
	tree_pids "$@"
	for p in "${TREE[@]}"; do
		st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		st=${st##*) } # fields after "pid (comm) ": state is field 3, utime 14, stime 15
		read -r -a st <<<"$st"
		CPU_TICKS=$((CPU_TICKS + st[11] + st[12]))
		CPU_SYS=$((CPU_SYS + st[12]))
	done
}

sample_rss() { # pid outfile: writes the peak tree RSS (KiB) until killed
	local pid=$1 out=$2 peak=0
	trap 'exit 0' TERM
	while kill -0 "$pid" 2>/dev/null; do
		rss_tree_kb "$pid"
		if [ "$RSS_KB" -gt "$peak" ]; then peak=$RSS_KB; echo "$peak" >"$out"; fi
		sleep 0.1
	done
}

# ---- tools and builds --------------------------------------------------------
command -v wrk >/dev/null || die "wrk is not installed: $INSTALL_HINT"
command -v curl >/dev/null || die "curl is not installed: apt-get install -y curl"
if [ "$AB" = on ] && ! command -v ab >/dev/null; then
	note "skip ab: not installed ($INSTALL_HINT)"
	AB=off
fi

if ! ulimit -n 65536 2>/dev/null; then
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
fi
NOFILE=$(ulimit -n)
if [ "$C10K" = 1 ] && [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 65536 ]; then
	note "note: ulimit -n is $NOFILE (hard limit; 65536 wanted), c10k runs close to the fd limit"
fi

cd "$ROOT" || die "cannot cd to $ROOT"
if [ -n "$BIN_DIR" ]; then
	note "taking pace, backend and refproxy from $BIN_DIR"
	for b in pace backend refproxy; do
		[ -x "$BIN_DIR/$b" ] || die "BENCH_BIN_DIR=$BIN_DIR has no executable $b"
		cp "$BIN_DIR/$b" "$TMP/$b" || die "cannot copy $BIN_DIR/$b"
	done
	BENCH_PACE_BIN=$TMP/pace
else
	note "building bench/backend and bench/refproxy into $TMP"
	go build -o "$TMP/backend" ./bench/backend || die "go build ./bench/backend failed"
	go build -o "$TMP/refproxy" ./bench/refproxy || die "go build ./bench/refproxy failed"
fi

SELECTED=()
for p in "${PROXY_LIST[@]}"; do
	case $p in
	pace)
		if [ -n "${BENCH_PACE_BIN:-}" ]; then
			[ "$BENCH_PACE_BIN" = "$TMP/pace" ] || cp "$BENCH_PACE_BIN" "$TMP/pace" ||
				die "cannot copy BENCH_PACE_BIN=$BENCH_PACE_BIN"
			SELECTED+=(pace)
		elif go build -o "$TMP/pace" . >"$TMP/pace-build.log" 2>&1; then
			SELECTED+=(pace)
		else
			note "skip pace: 'go build -o pace .' does not build yet:"
			head -n 5 "$TMP/pace-build.log" | sed 's/^/     /'
		fi
		;;
	nginx)
		if command -v nginx >/dev/null; then SELECTED+=(nginx); else note "skip nginx: not installed ($INSTALL_HINT)"; fi
		;;
	haproxy)
		if command -v haproxy >/dev/null; then SELECTED+=(haproxy); else note "skip haproxy: not installed ($INSTALL_HINT)"; fi
		;;
	*) SELECTED+=("$p") ;;
	esac
done
[ ${#SELECTED[@]} -gt 0 ] || die "nothing to measure"

# ---- backends ----------------------------------------------------------------
B1=$(free_port)
B2=$(free_port)
PORT=$(free_port)
"$TMP/backend" "${BACKEND_FLAGS[@]}" -listen "127.0.0.1:$B1" -name backend1 -quiet &
PIDS+=($!)
wait_port "$B1" "$!" backend1 || die "backend1 did not start"
"$TMP/backend" "${BACKEND_FLAGS[@]}" -listen "127.0.0.1:$B2" -name backend2 -quiet &
PIDS+=($!)
wait_port "$B2" "$!" backend2 || die "backend2 did not start"
note "backends ($BACKEND, $BACKEND_LOOPS loop(s)) on 127.0.0.1:$B1 (backend1) and 127.0.0.1:$B2 (backend2); proxies on 127.0.0.1:$PORT; workers $WORKERS"

# ---- proxy configs -------------------------------------------------------------
write_configs() {
	local rl_enabled=false
	[ "$RATELIMIT" = on ] && rl_enabled=true
	cat >"$TMP/pace.toml" <<EOF
# written by bench/load.sh
[server]
listen = "127.0.0.1:$PORT"
workers = $WORKERS
max_connections = 20000
idle_timeout = "60s"
access_log = false
deferred_accept = $PACE_DEFERRED

[upstreams]
backends = ["http://127.0.0.1:$B1", "http://127.0.0.1:$B2"]
max_idle = 1024

[rate_limit]
enabled = $rl_enabled
# high enough that every request of the benchmark is admitted
max_requests = 1000000000
window_seconds = 60
key_extractor = "client_ip"

[metrics]
enabled = true
endpoint = "/metrics"
EOF

	mkdir -p "$TMP/nginx"
	cat >"$TMP/nginx/nginx.conf" <<EOF
# written by bench/load.sh
user root;
daemon off;
master_process on;
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events {
    worker_connections $NOFILE;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000000;
    upstream backends {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
        keepalive 1024;
        keepalive_requests 1000000000;
    }
    server {
        listen 127.0.0.1:$PORT backlog=65535$NGINX_DEFERRED;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Proxy pace;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            add_header X-Backend \$upstream_addr always;
        }
    }
}
EOF

	local maxconn=$(((${NOFILE/unlimited/131072} - 200) / 2))
	cat >"$TMP/haproxy.cfg" <<EOF
# written by bench/load.sh
global
    nbthread $WORKERS
    maxconn $maxconn
defaults
    mode http
    maxconn $maxconn
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:$PORT$HAPROXY_DEFERRED
    http-request set-header X-Proxy pace
    http-request set-header X-Forwarded-Proto http
    default_backend be
backend be
    balance roundrobin
    http-response set-header X-Backend %si:%sp
    server backend1 127.0.0.1:$B1
    server backend2 127.0.0.1:$B2
EOF
}
write_configs

start_proxy() { # name: sets PROXY_PID and TARGET_PORT; returns 1 on failure
	local name=$1 log=$TMP/$1.log
	TARGET_PORT=$PORT
	PROXY_PID=""
	case $name in
	direct)
		TARGET_PORT=$B1
		return 0
		;;
	pace)
		"$TMP/pace" -config "$TMP/pace.toml" -log-level warn >"$log" 2>&1 &
		;;
	nginx)
		nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" >"$log" 2>&1 &
		;;
	haproxy)
		haproxy -db -f "$TMP/haproxy.cfg" >"$log" 2>&1 &
		;;
	refproxy)
		GOMAXPROCS=$WORKERS "$TMP/refproxy" -listen "127.0.0.1:$PORT" \
			-backends "http://127.0.0.1:$B1,http://127.0.0.1:$B2" -quiet >"$log" 2>&1 &
		;;
	esac
	PROXY_PID=$!
	if ! wait_port "$PORT" "$PROXY_PID" "$name"; then
		sed 's/^/     /' "$log" >&2
		[ "$name" = nginx ] && sed 's/^/     /' "$TMP/nginx/error.log" >&2
		stop_proxy
		return 1
	fi
}

stop_proxy() {
	if [ -n "$PROXY_PID" ]; then
		stop_pid "$PROXY_PID"
		PROXY_PID=""
		wait_port_closed "$PORT"
	fi
}

# verify name port: a sample response must come from a backend, carry
# X-Backend (proxies) and show that the backend saw X-Proxy: pace.
verify() {
	local name=$1 port=$2 code h=$TMP/verify.h b=$TMP/verify.b why=""
	code=$(curl -sS -m 5 -D "$h" -o "$b" -w '%{http_code}' "http://127.0.0.1:$port/" 2>"$TMP/verify.err")
	if [ "$code" != 200 ]; then
		why="status $code, want 200 ($(cat "$TMP/verify.err"))"
	elif ! grep -q '^hello from backend[12]$' "$b"; then
		why="body does not come from a bench backend"
	elif [ "$name" != direct ] && ! grep -qi '^x-backend: *127\.0\.0\.1:[0-9]' "$h"; then
		why="response has no X-Backend: 127.0.0.1:<port> header"
	elif [ "$name" != direct ] && ! grep -q '^x-proxy: pace$' "$b"; then
		why="backend did not see X-Proxy: pace"
	fi
	if [ -n "$why" ]; then
		echo "!! FAIL $name: $why" >&2
		echo "!! response headers:" >&2
		sed 's/^/!!   /' "$h" >&2
		echo "!! response body:" >&2
		sed 's/^/!!   /' "$b" >&2
		return 1
	fi
	if [ "$name" != direct ]; then
		# Four requests on one connection should reach both backends.
		local seen
		seen=$(curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:$port/"{,,,} |
			tr -d '\r' | awk 'tolower($1) == "x-backend:" { print $2 }' | sort -u | wc -l)
		[ "$seen" -ge 2 ] || echo "!! warning $name: 4 requests on one connection all went to one backend" >&2
	fi
	return 0
}

# ---- measurements ----------------------------------------------------------
cat >"$TMP/report.lua" <<'EOF'
-- prints one machine-readable line; latencies in microseconds
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PACE_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    math.floor(latency:percentile(99.9)),
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

RAW=$OUT/raw
mkdir -p "$OUT" || die "cannot create $OUT"
rm -rf "$RAW"
mkdir -p "$RAW"
RESULTS=$OUT/results.tsv
printf 'round\tproxy\tscenario\trps\tp50_us\tp99_us\tp999_us\terrors\trss_kb\tcpu_us_per_req\tsys_pct\n' >"$RESULTS"

SCENARIOS=()
IFS=, read -r -a conns_list <<<"$CONNS"
for c in "${conns_list[@]}"; do SCENARIOS+=("wrk-c$c"); done
[ "$AB" = on ] && SCENARIOS+=("ab-c50")
[ "$C10K" = 1 ] && SCENARIOS+=("wrk-c10k")

start_sampler() { # pid
	echo 0 >"$TMP/rss"
	if [ -n "$1" ]; then
		sample_rss "$1" "$TMP/rss" &
		SAMPLER_PID=$!
	fi
}
stop_sampler() {
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=""
	RSS=$(cat "$TMP/rss")
	[ -n "$PROXY_PID" ] || RSS=-
}

# cpu_mark: remembers the proxy's CPU ticks; cpu_ticks_since: sets TICKS to
# the ticks used since and SYSPCT to the kernel's share of them in percent,
# both "-" when there is no proxy process (direct) or no ticks.
cpu_mark() {
	CPU_MARK=-
	[ -n "$PROXY_PID" ] || return 0
	cpu_tree_ticks "$PROXY_PID"
	CPU_MARK=$CPU_TICKS
	SYS_MARK=$CPU_SYS
}
cpu_ticks_since() {
	TICKS=-
	SYSPCT=-
	[ "$CPU_MARK" != - ] || return 0
	cpu_tree_ticks "$PROXY_PID"
	TICKS=$((CPU_TICKS - CPU_MARK))
	[ "$TICKS" -gt 0 ] && SYSPCT=$(((CPU_SYS - SYS_MARK) * 100 / TICKS))
	return 0
}

measure() { # round name scenario port
	local round=$1 name=$2 sc=$3 port=$4 log="$RAW/r$1-$2-$3.txt" conns line
	local url="http://127.0.0.1:$port/"
	start_sampler "$PROXY_PID"
	case $sc in
	wrk-c*)
		conns=${sc#wrk-c}
		[ "$conns" = 10k ] && conns=10000
		local threads=$WRK_THREADS
		[ "$conns" -lt "$threads" ] && threads=$conns
		[ "${WARMUP%[smh]}" != 0 ] && wrk -t "$threads" -c "$conns" -d "$WARMUP" --timeout 10s "$url" >/dev/null 2>&1
		cpu_mark
		wrk -t "$threads" -c "$conns" -d "$DURATION" --timeout 10s --latency \
			-s "$TMP/report.lua" "$url" >"$log" 2>&1
		cpu_ticks_since
		stop_sampler
		line=$(grep '^PACE_RESULT' "$log")
		if [ -z "$line" ]; then
			echo "!! $name $sc: wrk printed no result, see $log" >&2
			printf '%s\t%s\t%s\t0\t-\t-\t-\t-\t%s\t-\t-\n' "$round" "$name" "$sc" "$RSS" >>"$RESULTS"
			return
		fi
		echo "$line" | awk -v r="$round" -v n="$name" -v s="$sc" -v rss="$RSS" -v ticks="$TICKS" -v sys="$SYSPCT" -v hz="$CLK_TCK" '{
			for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			rps = f["duration_us"] > 0 ? f["requests"] / (f["duration_us"] / 1e6) : 0
			err = f["connect"] + f["read"] + f["write"] + f["status"] + f["timeout"]
			cpu = ticks == "-" || f["requests"] == 0 ? "-" : sprintf("%.1f", ticks * 1e6 / hz / f["requests"])
			printf "%s\t%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", r, n, s, rps, f["p50_us"], f["p99_us"], f["p999_us"], err, rss, cpu, sys
		}' >>"$RESULTS"
		;;
	ab-c50)
		[ "${WARMUP%[smh]}" != 0 ] && ab -q -n 2000 -c 50 "$url" >/dev/null 2>&1
		cpu_mark
		ab -q -n 10000 -c 50 "$url" >"$log" 2>&1
		cpu_ticks_since
		stop_sampler
		awk -v r="$round" -v n="$name" -v s="$sc" -v rss="$RSS" -v ticks="$TICKS" -v sys="$SYSPCT" -v hz="$CLK_TCK" '
			/^Requests per second:/ { rps = $4 }
			/^Failed requests:/ { err += $3 }
			/^Non-2xx responses:/ { err += $3 }
			/^Complete requests:/ { done = $3 }
			/^ *50% / { p50 = $2 * 1000 }
			/^ *99% / { p99 = $2 * 1000 }
			END {
				if (rps == "") { rps = 0; err = 10000 - done }
				cpu = ticks == "-" || done == 0 ? "-" : sprintf("%.1f", ticks * 1e6 / hz / done)
				printf "%s\t%s\t%s\t%.1f\t%s\t%s\t-\t%d\t%s\t%s\t%s\n", r, n, s, rps, p50 == "" ? "-" : p50, p99 == "" ? "-" : p99, err, rss, cpu, sys
			}' "$log" >>"$RESULTS"
		;;
	esac
	tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "   %-9s %-9s %10s req/s  p50 %s us  p99 %s us  errors %s  rss %s KiB  cpu %s us/req%s\n", $2, $3, $4, $5, $6, $8, $9, $10, $11 == "-" ? "" : " (" $11 "% kernel)" }'
}

FAILED=""
is_failed() { case " $FAILED " in *" $1 "*) return 0 ;; esac; return 1; }

note "proxies: ${SELECTED[*]}; scenarios: ${SCENARIOS[*]}; $ROUNDS round(s) of $DURATION"
# Each scenario runs every proxy back to back, from a fresh start, so that
# the numbers compared with each other are taken within a minute; the
# order rotates every round so that no proxy always goes first.
for name in "${SELECTED[@]}"; do
	[ "$name" = pace ] || continue
	if ! "$TMP/pace" -check -config "$TMP/pace.toml" >"$TMP/pace-check.log" 2>&1; then
		echo "!! FAIL pace: -check rejects the harness config:" >&2
		sed 's/^/!!   /' "$TMP/pace-check.log" >&2
		FAILED+=" pace"
	fi
done
NSEL=${#SELECTED[@]}
for ((round = 1; round <= ROUNDS; round++)); do
	note "round $round/$ROUNDS"
	for sc in "${SCENARIOS[@]}"; do
		for ((i = 0; i < NSEL; i++)); do
			name=${SELECTED[$(((i + round - 1) % NSEL))]}
			is_failed "$name" && continue
			if ! start_proxy "$name"; then
				echo "!! FAIL $name: did not start" >&2
				FAILED+=" $name"
				continue
			fi
			if ! verify "$name" "$TARGET_PORT"; then
				FAILED+=" $name"
				stop_proxy
				continue
			fi
			measure "$round" "$name" "$sc" "$TARGET_PORT"
			stop_proxy
		done
	done
done

# ---- report ------------------------------------------------------------------
# Medians over rounds; errors summed; RSS the peak over rounds; ratio is the
# median over rounds of rps / pace's rps in the same round and scenario.
aggregate() {
	awk -F'\t' '
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		if (n == 0) return ""
		for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function ms(v) { return v == "" ? "-" : sprintf("%.2f", v / 1000) }
	NR == 1 { next }
	{
		k = $2 SUBSEP $3
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
		rps[k] = rps[k] " " $4
		if ($5 != "-") p50[k] = p50[k] " " $5
		if ($6 != "-") p99[k] = p99[k] " " $6
		if ($7 != "-") p999[k] = p999[k] " " $7
		if ($8 != "-") err[k] += $8
		if ($9 != "-" && $9 + 0 > rss[k] + 0) rss[k] = $9
		if ($9 == "-" && !(k in rss)) rss[k] = "-"
		if ($10 != "-" && $10 != "") cpu[k] = cpu[k] " " $10
		if ($11 != "-" && $11 != "") sys[k] = sys[k] " " $11
		row[NR] = $0
		if ($2 == "pace") pace[$1 SUBSEP $3] = $4
	}
	END {
		for (i in row) {
			split(row[i], f, "\t")
			pk = f[1] SUBSEP f[3]
			if ((pk in pace) && pace[pk] > 0) ratio[f[2] SUBSEP f[3]] = ratio[f[2] SUBSEP f[3]] " " f[4] / pace[pk]
		}
		for (i = 1; i <= nk; i++) {
			k = order[i]
			split(k, nm, SUBSEP)
			r = median(ratio[k])
			c = median(cpu[k])
			y = median(sys[k])
			printf "%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", nm[1], nm[2], median(rps[k]),
				ms(median(p50[k])), ms(median(p99[k])), ms(median(p999[k])), err[k],
				rss[k] == "-" || rss[k] == "" ? "-" : sprintf("%.1f", rss[k] / 1024),
				c == "" ? "-" : sprintf("%.1f", c),
				y == "" ? "-" : sprintf("%.0f", y),
				r == "" ? "-" : sprintf("%.2f", r)
		}
	}' "$RESULTS"
}

SUMMARY=$(aggregate)
HEADER="proxy	scenario	req/s	p50 ms	p99 ms	p99.9 ms	errors	peak RSS MiB	CPU us/req	kernel %	vs pace"
echo
note "results (median of $ROUNDS round(s), $DURATION each, workers $WORKERS, wrk threads $WRK_THREADS, rate limit $RATELIMIT, deferred accept $DEFERRED, backend $BACKEND)"
{ echo "$HEADER"; echo "$SUMMARY"; } | awk -F'\t' 'NF { printf "%-9s %-9s %9s %8s %8s %9s %7s %13s %11s %9s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'

{
	echo "# pace load results"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M:%SZ') on $(nproc) CPUs ($(uname -r)); $ROUNDS round(s) of $DURATION;" \
		"workers $WORKERS; rate limit $RATELIMIT; deferred accept $DEFERRED; backends $BACKEND; ulimit -n $NOFILE."
	echo "wrk threads $WRK_THREADS, keep-alive; backend event loops $BACKEND_LOOPS each (fast); ab-c50 is \`ab -n 10000 -c 50\` without keep-alive."
	echo "req/s and latencies are medians over rounds; errors are summed (HTTP status >= 400 for wrk, non-2xx for ab, plus socket errors);"
	echo "peak RSS is the proxy's process tree; CPU us/req is that tree's user+system CPU time during the measured run ÷ requests"
	echo "kernel % is the system part of that time (median over rounds): mostly the loopback TCP stack and waking the peers, which no proxy avoids;"
	echo "(the load tool and the backends share the same cores, so req/s ratios are smaller than CPU ratios);"
	echo "\"vs pace\" is the median over rounds of req/s ÷ pace's req/s in that round."
	[ -n "$FAILED" ] && echo && echo "**Failed checks:**$FAILED (no rows)."
	echo
	echo "| ${HEADER//	/ | } |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	echo "$SUMMARY" | awk -F'\t' 'NF { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
} >"$OUT/results.md"
note "wrote $OUT/results.md, $RESULTS and raw logs in $RAW"

if [ -n "$FAILED" ]; then
	echo "!! FAILED:$FAILED" >&2
	exit 1
fi
exit 0
