#!/usr/bin/env bash
# attach.sh - memtracectl attach on a busy multi-threaded service: Debian's
# redis-server (jemalloc, its bio threads) under redis-benchmark -P 16.
#
# 1. redis starts plain; redis-benchmark runs; one second in, memtracectl
#    attach loads the agent. Printed: the pause, the benchmark's own
#    figures (every request answered, its exit status), and that redis
#    still answers PING.
# 2. The same benchmark again on the attached redis, and once on a redis
#    started under the agent (memtracectl run): the allocations the daemon
#    counted per request in each, which must agree (the attached process is
#    traced as fully as one started traced), and lost events (0).
# 3. On the attached redis, under the same benchmark: memtracectl detach,
#    attach again, detach again, a few tenths of a second apart. Printed:
#    each command's outcome and time, the benchmark's figures, PING.
# Exits non-zero when a request went unanswered, redis died, an event was
# lost, the two counts differ by more than 1 %, or a detach or attach
# failed.
#
# Its own memtraced and redis-servers on a temporary directory; needs
# redis-server and redis-tools (scripts/deps.sh bench).
set -u

usage() {
	cat <<EOF
Usage: bench/attach.sh [OPTIONS]
  --builddir DIR   build tree (default: \$MEMTRACE_BUILDDIR, else ../build)
  -n REQUESTS      requests per test (default 2000000)
  --keep           keep the temporary directory (logs)
EOF
}
die() {
	echo "attach.sh: $*" >&2
	exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
requests=2000000
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) builddir=$2; shift 2 ;;
	-n) requests=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
[[ $requests =~ ^[0-9]+$ ]] || die "-n must be a number"
command -v redis-server >/dev/null || die "redis-server is missing (sh scripts/deps.sh bench)"
command -v redis-benchmark >/dev/null || die "redis-benchmark is missing (sh scripts/deps.sh bench)"
builddir=$(cd "$builddir" && pwd) || die "no build directory"
daemon=$builddir/daemon/memtraced
ctl=$builddir/client/memtracectl
[ -x "$daemon" ] && [ -x "$ctl" ] || die "build memtrace first (make in $builddir)"

unset MEMTRACE_SOCKET MEMTRACE_SAMPLE MEMTRACE_ON_FULL MEMTRACE_FOLLOW_FORK \
	MEMTRACE_UNWIND MEMTRACE_NFRAMES LD_PRELOAD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-attach.XXXXXX") || die "no temporary directory"
chmod 0755 "$tmp"
daemon_pid=
redis_pid=
sock=$tmp/redis.sock

stop_redis() {
	[ -n "$redis_pid" ] || return 0
	redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || kill -TERM "$redis_pid" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$redis_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$redis_pid" 2>/dev/null
	wait "$redis_pid" 2>/dev/null
	redis_pid=
}
cleanup() {
	stop_redis
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	if [ "$keep" = 1 ]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/run" "$tmp/state"
"$daemon" --runtime-dir "$tmp/run" --state-dir "$tmp/state" --metrics-listen off \
	--snapshot-interval 0 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	[ -S "$tmp/run/control.sock" ] && break
	sleep 0.1
done
[ -S "$tmp/run/control.sock" ] || die "memtraced did not start: $(cat "$tmp/daemon.log")"
ctl() { "$ctl" --runtime-dir "$tmp/run" "$@"; }

# start_redis [run]: plain, or under memtracectl run
start_redis() {
	rm -f "$sock"
	if [ "${1:-}" = run ]; then
		ctl run -- redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no \
			>"$tmp/redis.log" 2>&1 &
	else
		redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no \
			>"$tmp/redis.log" 2>&1 &
	fi
	for _ in $(seq 100); do
		redis-cli -s "$sock" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis_pid=$(pgrep -n -x redis-server) || die "redis did not start"
}

# bench NAME: redis-benchmark, its exit status and per-test figures
bench() {
	redis-benchmark -s "$sock" -P 16 -t set,get -n "$requests" -d 3 -q --csv \
		>"$tmp/$1.csv" 2>"$tmp/$1.err"
}
# the completed requests per second of a test in a CSV, or "-"
rps() { awk -F'"' -v t="$2" '$2 == t { print $4 }' "$tmp/$1.csv" | head -1; }
stat() { ctl stats --pid "$redis_pid" | awk -F'[:,]' -v k="\"$1\"" '$1 ~ k { gsub(/[ \t]/, "", $2); print $2 }'; }

status=0
echo "== 1. attach during the benchmark"
start_redis
bench during &
bench_pid=$!
sleep 1
ctl attach "$redis_pid" >"$tmp/attach.json" 2>&1 || { cat "$tmp/attach.json"; die "attach failed"; }
wait "$bench_pid"
brc=$?
pause=$(awk -F': *' '/pause_ms/ { gsub(/[,\t ]/, "", $2); print $2 }' "$tmp/attach.json")
pong=$(redis-cli -s "$sock" ping 2>&1)
printf 'attach pause %s ms; redis-benchmark exit %d, SET %s/s, GET %s/s; PING: %s\n' \
	"$pause" "$brc" "$(rps during SET)" "$(rps during GET)" "$pong"
[ "$brc" = 0 ] && [ "$pong" = PONG ] || status=1

echo "== 2. allocations per request: attached, and started under the agent"
a0=$(stat allocations)
bench attached || status=1
sleep 1
a1=$(stat allocations)
lost_a=$(stat lost_events)
unknown=$(stat unknown_frees)

echo "== 3. detach, attach again, detach again during the benchmark"
bench cycle &
bench_pid=$!
cycle=""
for step in detach attach detach; do
	sleep 0.3
	t0=$(date +%s%N)
	if ctl "$step" "$redis_pid" >"$tmp/$step.json" 2>&1; then
		cycle="$cycle $step ok ($(( ($(date +%s%N) - t0) / 1000000 )) ms);"
	else
		cycle="$cycle $step FAILED;"
		cat "$tmp/$step.json" >&2
		status=1
	fi
done
wait "$bench_pid"
brc=$?
pong=$(redis-cli -s "$sock" ping 2>&1)
printf '%s redis-benchmark exit %d, SET %s/s, GET %s/s; PING: %s\n' "$cycle" "$brc" \
	"$(rps cycle SET)" "$(rps cycle GET)" "$pong"
[ "$brc" = 0 ] && [ "$pong" = PONG ] || status=1
stop_redis
start_redis run
r0=$(stat allocations)
bench started || status=1
sleep 1
r1=$(stat allocations)
lost_r=$(stat lost_events)
stop_redis
awk -v a="$((a1 - a0))" -v r="$((r1 - r0))" -v n="$((2 * requests))" -v la="$lost_a" \
	-v lr="$lost_r" -v u="$unknown" 'BEGIN {
	printf "attached: %d allocations for %d requests (%.4f a request), lost %d, unknown_frees %d\n", a, n, a / n, la, u
	printf "started under the agent: %d allocations (%.4f a request), lost %d\n", r, r / n, lr
	d = a > r ? a - r : r - a
	printf "difference %.3f %%\n", 100 * d / (r > 0 ? r : 1)
	exit (d * 100 > r || la != 0 || lr != 0) ? 1 : 0
}' || status=1
[ "$status" = 0 ] && echo "attach.sh: ok" || echo "attach.sh: FAILED"
exit $status
