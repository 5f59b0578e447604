#!/usr/bin/env bash
# Device run: bench/load.sh at workers 4 and 8 with the load tools carried
# in bundle.tgz (wrk, ab, nginx, haproxy, curl and their libraries, run
# through the bundled loader) and prebuilt pace/backend/refproxy.
set -u
cd "$(dirname "$0")/.." || exit 2
DUR=${DUR:-4s} ROUNDS=${ROUNDS:-3} WS=${WS:-"4 8"}
B=/tmp/devbundle
rm -rf "$B"; mkdir -p "$B" && tar xzf .devbench/bundle.tgz -C "$B" || exit 2
export PATH=$B/bin:$PATH BENCH_BIN_DIR=$B/go
{
	echo "cpus $(nproc)"; uname -a; grep -m1 'model name' /proc/cpuinfo
	echo "nofile hard $(ulimit -Hn)"; head -2 /etc/os-release
	nginx -v 2>&1; haproxy -v 2>&1 | head -1; wrk -v 2>&1 | head -1
	[ -r "/proc/$$/task/$$/children" ] && echo "proc children: yes" || echo "proc children: no"
	date -u
} >"$OUT/info.txt" 2>&1
cat "$OUT/info.txt"
for w in $WS; do
	echo "=== workers $w"
	bash bench/load.sh --workers "$w" --wrk-threads 4 --backend-loops 2 \
		--duration "$DUR" --rounds "$ROUNDS" --out "/tmp/o$w" >"$OUT/log$w.txt" 2>&1
	echo "load.sh exit $?"
	grep -v '^   ' "$OUT/log$w.txt" | grep -v '^== round'
	cp "/tmp/o$w/results.md" "$OUT/w$w.md"; cp "/tmp/o$w/results.tsv" "$OUT/w$w.tsv"
done
date -u
