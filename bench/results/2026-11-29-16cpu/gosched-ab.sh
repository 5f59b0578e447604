#!/usr/bin/env bash
# A/B: gnet's Gosched after an empty poll (cur) vs none (nogs), each with
# GOMAXPROCS default (all CPUs) and workers+1 (p); nginx for reference.
set -u
cd "$(dirname "$0")/.." || exit 2
B=/tmp/devbundle
[ -d $B/go ] || { mkdir -p $B && tar xzf .devbench/bundle.tgz -C $B; }
export PATH=$B/bin:$PATH
G=$B/go
cp .devbench/pace-nogs $G/pace-nogs
ulimit -n 20000
$G/backend -fast -loops 2 -listen 127.0.0.1:29001 -name backend1 -quiet </dev/null >/dev/null 2>&1 & K1=$!
$G/backend -fast -loops 2 -listen 127.0.0.1:29002 -name backend2 -quiet </dev/null >/dev/null 2>&1 & K2=$!
trap 'kill $K1 $K2 2>/dev/null' EXIT
mkdir -p /tmp/ng
conf() { # workers
cat >/tmp/p.toml <<T
[server]
listen = "127.0.0.1:29080"
workers = $1
max_connections = 9000
access_log = false
[upstreams]
backends = ["http://127.0.0.1:29001", "http://127.0.0.1:29002"]
max_idle = 1024
[rate_limit]
enabled = false
T
cat >/tmp/ng/nginx.conf <<T
user root; daemon off; master_process on; worker_processes $1;
pid /tmp/ng/nginx.pid; error_log /tmp/ng/error.log warn;
events { worker_connections 9000; }
http { access_log off; keepalive_timeout 60s; keepalive_requests 1000000000;
 client_body_temp_path /tmp/ng/cb; proxy_temp_path /tmp/ng/pt; fastcgi_temp_path /tmp/ng/ft; uwsgi_temp_path /tmp/ng/ut; scgi_temp_path /tmp/ng/st;
 upstream backends { server 127.0.0.1:29001; server 127.0.0.1:29002; keepalive 1024; keepalive_requests 1000000000; }
 server { listen 127.0.0.1:29080 backlog=65535; location / { proxy_pass http://backends; proxy_http_version 1.1;
  proxy_set_header Connection ""; proxy_set_header X-Proxy pace; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  add_header X-Backend \$upstream_addr always; } } }
T
}
ticks() { local s=0 p; for p in $(pgrep -f "$1"); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
one() { # round workers variant
	local r=$1 w=$2 v=$3 pat
	case $v in
	cur) $G/pace -config /tmp/p.toml -log-level error & pat="$G/pace -config" ;;
	cur-p) GOMAXPROCS=$((w + 1)) $G/pace -config /tmp/p.toml -log-level error & pat="$G/pace -config" ;;
	nogs) $G/pace-nogs -config /tmp/p.toml -log-level error & pat="pace-nogs" ;;
	nogs-p) GOMAXPROCS=$((w + 1)) $G/pace-nogs -config /tmp/p.toml -log-level error & pat="pace-nogs" ;;
	nginx) nginx -p /tmp/ng/ -c /tmp/ng/nginx.conf -e /tmp/ng/error.log & pat="nginx:" ;;
	esac
	local pid=$!
	sleep 0.4
	ab -q -n 2000 -c 50 http://127.0.0.1:29080/ >/dev/null 2>&1
	local t0 t1 n rps p99
	t0=$(ticks "$pat"); ab -q -n 40000 -c 50 http://127.0.0.1:29080/ >/tmp/ab.txt 2>&1; t1=$(ticks "$pat")
	rps=$(awk '/^Requests per second/ {print $4}' /tmp/ab.txt)
	echo "R $r $w $v ab $rps $(awk -v t=$((t1 - t0)) 'BEGIN{printf "%.1f", t*1e4/40000}') $(awk '/ 99% / {print $2}' /tmp/ab.txt)"
	for c in 50 1000; do
		t0=$(ticks "$pat"); wrk -t 4 -c $c -d 4s --latency http://127.0.0.1:29080/ >/tmp/wrk.txt 2>&1; t1=$(ticks "$pat")
		n=$(awk '/requests in/ {print $1}' /tmp/wrk.txt); rps=$(awk '/^Requests\/sec/ {print $2}' /tmp/wrk.txt)
		echo "R $r $w $v c$c $rps $(awk -v t=$((t1 - t0)) -v n=$n 'BEGIN{printf "%.1f", t*1e4/n}') $(awk '/ 99% / {print $2}' /tmp/wrk.txt)"
	done
	kill -TERM $pid; wait $pid 2>/dev/null; sleep 0.3
}
for r in ${RS:-1 2}; do for w in ${WS:-4 8}; do conf $w
	for v in cur nogs cur-p nogs-p nginx; do one $r $w $v; done
done; done 2>&1 | tee "$OUT/gs.txt" | grep '^R'
echo "== medians (req/s, cpu us/req) per workers variant scenario"
grep '^R' "$OUT/gs.txt" | awk '{k=$3" "$4" "$5; r[k]=r[k]" "$6; c[k]=c[k]" "$7} END {for (k in r) print k, r[k], "|", c[k]}' | sort
