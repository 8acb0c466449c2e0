#!/usr/bin/env bash
# redis.sh - what tracing costs a real service: Debian's redis-server under
# `redis-benchmark -P 16 -t set,get`, plain, traced by memtrace (default
# settings: every allocation, the CFI walker, 32 frames, lossless), traced
# sampled (MEMTRACE_SAMPLE=524288) and under heaptrack when it is installed,
# in one invocation; each mode R times in rounds (plain first, the order of
# the others turning by one each round), the median throughput printed, and
# the median over rounds of the ratio to that round's plain run.
#
# memtrace-noyield is the memtrace mode against a second daemon started with
# --no-drain-yield: every pass of reading at the daemon's own priority, as
# before passes yielded (memtraced(8)); against memtrace it shows what
# yielding buys when the traced program and its clients keep the cores busy.
#
# One more mode, memtrace-agent, is a diagnosis, not a way to run: the agent
# alone, with the daemon stopped (SIGSTOP) while the benchmark runs and
# MEMTRACE_ON_FULL=drop, so the agent walks, numbers and writes every event
# until its ring is full and then counts the rest as lost. Against the
# memtrace mode it tells what redis loses to the agent's work in its own
# thread and what to the daemon's CPU on the same cores.
#
# The script starts its own memtraced on a temporary runtime directory and
# its own redis-servers on a Unix socket there; it never touches a running
# memtraced or redis. Needs redis-server and redis-tools (scripts/deps.sh
# bench installs them).
set -u

usage() {
	cat <<EOF
Usage: bench/redis.sh [OPTIONS]
Throughput of redis-server plain, under memtrace (full and sampled) and under
heaptrack, with redis-benchmark -P 16 -t set,get.

  --builddir DIR   build tree (default: \$MEMTRACE_BUILDDIR, else ../build)
  -r, --repeat R   rounds (each mode once per round, plain first, the others'
                   order turning by one each round); the median
                   throughput and the median of the per-round ratios to plain
                   are reported (default 3; 5 or more on a shared machine)
  -n REQUESTS      requests per test (default 2000000)
  -d BYTES         value size (redis-benchmark -d, default 3)
  --no-heaptrack   skip heaptrack even when it is installed
  --keep           keep the temporary directory (logs)
  -h, --help       this text
EOF
}

die() {
	echo "redis.sh: $*" >&2
	exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
repeat=3
requests=2000000
size=3
heaptrack=1
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) builddir=$2; shift 2 ;;
	-r | --repeat) repeat=$2; shift 2 ;;
	-n) requests=$2; shift 2 ;;
	-d) size=$2; shift 2 ;;
	--no-heaptrack) heaptrack=0; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
for v in repeat requests size; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
command -v redis-server >/dev/null || die "redis-server is missing (sh scripts/deps.sh bench)"
command -v redis-benchmark >/dev/null || die "redis-benchmark is missing (sh scripts/deps.sh bench)"
builddir=$(cd "$builddir" && pwd) || die "no build directory"
agent=$builddir/agent/.libs/libmemtrace.so
daemon=$builddir/daemon/memtraced
ctl=$builddir/client/memtracectl
[ -f "$agent" ] && [ -x "$daemon" ] || die "build memtrace first (make in $builddir)"

unset MEMTRACE_SOCKET MEMTRACE_SAMPLE MEMTRACE_ON_FULL MEMTRACE_FOLLOW_FORK \
	MEMTRACE_UNWIND MEMTRACE_NFRAMES LD_PRELOAD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-redis.XXXXXX") || die "no temporary directory"
chmod 0755 "$tmp"
daemon_pid=
daemon2_pid=
redis_pid=

stop_redis() {
	[ -n "$redis_pid" ] || return 0
	redis-cli -s "$tmp/redis.sock" shutdown nosave >/dev/null 2>&1 || kill -TERM "$redis_pid" 2>/dev/null
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
	if [ -n "$daemon_pid" ]; then
		kill -CONT "$daemon_pid" 2>/dev/null # memtrace-agent stops it
		kill -TERM "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	if [ -n "$daemon2_pid" ]; then
		kill -TERM "$daemon2_pid" 2>/dev/null
		wait "$daemon2_pid" 2>/dev/null
	fi
	if [ "$keep" = 1 ]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/run" "$tmp/state" "$tmp/run2" "$tmp/state2"
"$daemon" --runtime-dir "$tmp/run" --state-dir "$tmp/state" --metrics-listen off \
	--snapshot-interval 0 2>"$tmp/daemon.log" &
daemon_pid=$!
"$daemon" --runtime-dir "$tmp/run2" --state-dir "$tmp/state2" --metrics-listen off \
	--snapshot-interval 0 --no-drain-yield 2>"$tmp/daemon2.log" &
daemon2_pid=$!
for _ in $(seq 100); do
	[ -S "$tmp/run/agent.sock" ] && [ -S "$tmp/run2/agent.sock" ] && break
	sleep 0.1
done
[ -S "$tmp/run/agent.sock" ] || die "memtraced did not start: $(cat "$tmp/daemon.log")"
[ -S "$tmp/run2/agent.sock" ] || die "memtraced did not start: $(cat "$tmp/daemon2.log")"

modes=(plain memtrace memtrace-noyield memtrace-sample memtrace-agent)
if [ "$heaptrack" = 1 ]; then
	if command -v heaptrack >/dev/null; then
		modes+=(heaptrack)
	else
		echo "heaptrack: not installed, skipped"
	fi
fi

redis_args=(--port 0 --unixsocket "$tmp/redis.sock" --save "" --appendonly no --daemonize no)

# start_redis MODE I: redis-server under MODE, ready on its socket.
start_redis() {
	local log=$tmp/redis.$1.$2.log
	rm -f "$tmp/redis.sock"
	case $1 in
	plain) redis-server "${redis_args[@]}" >"$log" 2>&1 & ;;
	memtrace)
		env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" \
			redis-server "${redis_args[@]}" >"$log" 2>&1 &
		;;
	memtrace-noyield)
		env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run2" \
			redis-server "${redis_args[@]}" >"$log" 2>&1 &
		;;
	memtrace-agent)
		env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" MEMTRACE_ON_FULL=drop \
			redis-server "${redis_args[@]}" >"$log" 2>&1 &
		;;
	memtrace-sample)
		env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" MEMTRACE_SAMPLE=524288 \
			redis-server "${redis_args[@]}" >"$log" 2>&1 &
		;;
	heaptrack) heaptrack -o "$tmp/heaptrack.$2" redis-server "${redis_args[@]}" >"$log" 2>&1 & ;;
	esac
	redis_pid=$!
	for _ in $(seq 200); do
		redis-cli -s "$tmp/redis.sock" ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.05
	done
	die "redis-server ($1) did not start: $(tail -5 "$log")"
}

# daemon_cpu: the user+sys seconds so far of the memtraced that serves the
# mode being run (the second one for memtrace-noyield).
daemon_cpu() {
	local p=$daemon_pid
	[ "${m:-}" = memtrace-noyield ] && p=$daemon2_pid
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' \
		"/proc/$p/stat" 2>/dev/null || echo 0
}

# daemon_settle: waits (10 s at most) until memtraced's CPU stops moving: a
# traced redis that exits leaves it a last snapshot to write, which must not
# run into the next mode's benchmark.
daemon_settle() {
	local a b
	a=$(daemon_cpu)
	for _ in $(seq 50); do
		sleep 0.2
		b=$(daemon_cpu)
		[ "$a" = "$b" ] && return 0
		a=$b
	done
}

declare -A SET GET RSET RGET RS RG
others=("${modes[@]:1}")
nothers=${#others[@]}
for i in $(seq "$repeat"); do
	# Plain first, then the other modes, their order turning by one each
	# round: whichever mode ran right after plain came out slower (three
	# identical memtrace modes in a fixed order read 0.72, 0.88 and 0.78
	# of plain, the first of them right after plain), so a fixed order
	# would charge one mode with it every round.
	order=(plain)
	for ((k = 0; k < nothers; k++)); do
		order+=("${others[$(((k + i - 1) % nothers))]}")
	done
	echo "  round $i: ${order[*]}"
	for m in "${order[@]}"; do
		d0=$(daemon_cpu)
		start_redis "$m" "$i"
		[ "$m" = memtrace-agent ] && kill -STOP "$daemon_pid"
		out=$(redis-benchmark -s "$tmp/redis.sock" -P 16 -t set,get -n "$requests" \
			-d "$size" -q --csv 2>/dev/null)
		[ "$m" = memtrace-agent ] && kill -CONT "$daemon_pid"
		set_rps=$(grep '^"SET"' <<<"$out" | cut -d'"' -f4)
		get_rps=$(grep '^"GET"' <<<"$out" | cut -d'"' -f4)
		if [ "$m" = memtrace ] || [ "$m" = memtrace-noyield ] || [ "$m" = memtrace-sample ]; then
			# What the daemon saw of it, while it runs.
			pid=$(pgrep -n -f "redis-server.*$tmp/redis.sock")
			rd=$tmp/run
			[ "$m" = memtrace-noyield ] && rd=$tmp/run2
			st=$(MEMTRACE_RUNTIME_DIR=$rd "$ctl" stats --pid "${pid:-0}" 2>/dev/null)
			lost=$(grep -o '"lost_events":[[:space:]]*[0-9]*' <<<"$st" | grep -o '[0-9]*$')
			ev=$(grep -o '"allocations":[[:space:]]*[0-9]*' <<<"$st" | grep -o '[0-9]*$')
			fr=$(grep -o '"frees":[[:space:]]*[0-9]*' <<<"$st" | head -1 | grep -o '[0-9]*$')
			dc=$(awk -v a="$d0" -v b="$(daemon_cpu)" 'BEGIN { printf "%.2f", b - a }')
			# Sampled, the counts are estimates, not records read.
			rate=
			[ "$m" != memtrace-sample ] && rate=" ($(awk -v e="$((${ev:-0} + ${fr:-0}))" -v c="$dc" \
				'BEGIN { if (c > 0) printf "%.1f", e / c / 1e6; else printf "?" }') M events per second of it)"
			est=
			[ "$m" = memtrace-sample ] && est=" (sampled: estimates)"
			NOTE="${NOTE:-}  $m run $i:$est daemon counted ${ev:-?} allocations, ${fr:-?} frees, lost_events ${lost:-?}; daemon cpu ${dc} s${rate}"$'\n'
		fi
		stop_redis
		daemon_settle
		[ -n "$set_rps" ] && [ -n "$get_rps" ] || die "redis-benchmark gave no figures ($m)"
		SET[$m]="${SET[$m]:-} $set_rps"
		GET[$m]="${GET[$m]:-} $get_rps"
		RS[$m]=$set_rps
		RG[$m]=$get_rps
		printf '  %-16s run %d: SET %10.0f/s  GET %10.0f/s\n' "$m" "$i" "$set_rps" "$get_rps"
	done
	# Against this round's plain run: the neighbours of a shared machine
	# drift between rounds.
	for m in "${modes[@]}"; do
		RSET[$m]="${RSET[$m]:-} $(awk -v a="${RS[$m]}" -v b="${RS[plain]}" 'BEGIN { printf "%.4f", a / b }')"
		RGET[$m]="${RGET[$m]:-} $(awk -v a="${RG[$m]}" -v b="${RG[plain]}" 'BEGIN { printf "%.4f", a / b }')"
	done
done

median() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) printf "%.4f", v[(NR + 1) / 2];
		      else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "redis-benchmark -P 16 -t set,get -n $requests -d $size, $(nproc) cpus, medians of $repeat"
printf '%-16s %12s %12s %8s %8s\n' mode "SET/s" "GET/s" "SET x" "GET x"
for m in "${modes[@]}"; do
	awk -v m="$m" -v s="$(median "${SET[$m]}")" -v g="$(median "${GET[$m]}")" \
		-v rs="$(median "${RSET[$m]}")" -v rg="$(median "${RGET[$m]}")" \
		'BEGIN { printf "%-16s %12.0f %12.0f %8.2f %8.2f\n", m, s, g, rs, rg }'
done
echo
echo "x = throughput / plain throughput of the same round (1.00 = no cost), median of rounds."
echo "Each round runs plain first, then the other modes in an order that turns by one each round."
echo "memtrace-noyield: a daemon with --no-drain-yield (every pass at its own priority)."
echo "memtrace-agent: the agent's work alone (daemon stopped, events past a full ring dropped)."
# Whether the first daemon's passes yielded (they need CAP_SYS_NICE or an
# RLIMIT_NICE that allows the daemon's nice value), and how many.
echo "memtrace's daemon: $(MEMTRACE_RUNTIME_DIR=$tmp/run "$ctl" status 2>/dev/null |
	tr -d ' \t\n' | grep -o '"drain":{[^}]*}')"
printf '%s' "${NOTE:-}"
