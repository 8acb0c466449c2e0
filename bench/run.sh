#!/usr/bin/env bash
# run.sh - what tracing costs a malloc-heavy program: bench/workload run plain,
# under libmemtrace.so with a running memtraced (the default CFI walker,
# libunwind, frame pointers, and sampled with the default walker), and under
# heaptrack when it is installed; each mode R times, interleaved, the median
# kept. See bench/README.md for what the figures mean.
#
# The script starts its own memtraced on a temporary runtime directory and
# stops it at the end; it never touches a memtraced that is already running.
set -u

usage() {
	cat <<EOF
Usage: bench/run.sh [OPTIONS]
Run bench/workload plain, under memtrace (libunwind, fp) and under heaptrack,
and print wall and CPU time, ratios to the plain run and ns per event.

  --builddir DIR   build tree (default: \$MEMTRACE_BUILDDIR, else ../build
                   beside this script); needs 'make bench' done in it
  -r, --repeat R   runs per mode, the median is reported (default 3)
  -t THREADS       workload threads (default 2)
  -n ITERATIONS    workload requests per thread (default 40000)
  -d DEPTH         workload extra stack depth (default 4)
  -w WORK          workload passes over each response (default 1; 0 = more
                   malloc-bound)
  --nframes N      MEMTRACE_NFRAMES for the traced modes (default 32)
  --modes LIST     comma-separated subset of plain,memtrace,memtrace-libunwind,
                   memtrace-fp,memtrace-sample,memtrace-drop,heaptrack
                   (default: all; plain always runs); memtrace is the default
                   settings (the CFI walker, lossless), memtrace-sample
                   MEMTRACE_SAMPLE=--sample, memtrace-drop
                   MEMTRACE_ON_FULL=drop
  --sample BYTES   MEMTRACE_SAMPLE of memtrace-sample (default 524288)
  --no-heaptrack   skip heaptrack even when it is installed
  --keep           keep the temporary directory (daemon log, heaptrack files)
  --no-drain-yield run the daemon with --no-drain-yield (every pass of reading
                   at its own priority; memtraced(8))
  -h, --help       this text
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
repeat=3
threads=2
iters=40000
depth=4
work=1
nframes=32
modes=plain,memtrace,memtrace-libunwind,memtrace-fp,memtrace-sample,memtrace-drop,heaptrack
sample=524288
keep=0

die() {
	echo "run.sh: $*" >&2
	exit 1
}

need_arg() {
	[ $# -ge 2 ] || die "$1 needs a value"
}

daemon_args=()
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) need_arg "$@"; builddir=$2; shift 2 ;;
	--builddir=*) builddir=${1#*=}; shift ;;
	-r | --repeat) need_arg "$@"; repeat=$2; shift 2 ;;
	-t) need_arg "$@"; threads=$2; shift 2 ;;
	-n) need_arg "$@"; iters=$2; shift 2 ;;
	-d) need_arg "$@"; depth=$2; shift 2 ;;
	-w) need_arg "$@"; work=$2; shift 2 ;;
	--nframes) need_arg "$@"; nframes=$2; shift 2 ;;
	--modes) need_arg "$@"; modes=$2; shift 2 ;;
	--sample) need_arg "$@"; sample=$2; shift 2 ;;
	--no-heaptrack) modes=${modes//heaptrack/}; shift ;;
	--keep) keep=1; shift ;;
	--no-drain-yield) daemon_args+=(--no-drain-yield); shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
for v in repeat threads iters depth work nframes sample; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[ "$repeat" -ge 1 ] || die "--repeat must be at least 1"

[ -d "$builddir" ] || die "no build directory '$builddir' (use --builddir or MEMTRACE_BUILDDIR)"
builddir=$(cd "$builddir" && pwd)
# The workload is built -O2 without frame pointers, as production code is;
# memtrace-fp needs frame pointers, so it runs workload_fp (the same source
# with them) and is compared with a plain run of that build (plain-fp).
workload=$builddir/bench/workload
workload_fp=$builddir/bench/workload_fp
agent=$builddir/agent/.libs/libmemtrace.so
daemon=$builddir/daemon/memtraced
ctl=$builddir/client/memtracectl
[ -x "$workload" ] || die "$workload is missing: run 'make bench' in $builddir"
[ -x "$workload_fp" ] || die "$workload_fp is missing: run 'make bench' in $builddir"

# The mode list, in run order; plain is the reference and always runs.
mode_list=(plain)
want() { [[ ,$modes, == *,$1,* ]]; }
for m in memtrace memtrace-libunwind memtrace-fp memtrace-sample memtrace-drop; do
	want "$m" || continue
	[ -f "$agent" ] || die "$agent is missing: run 'make' in $builddir"
	[ -x "$daemon" ] || die "$daemon is missing: run 'make' in $builddir"
	[ "$m" = memtrace-fp ] && mode_list+=(plain-fp)
	mode_list+=("$m")
done
heaptrack_note=
if want heaptrack; then
	if command -v heaptrack >/dev/null 2>&1; then
		mode_list+=(heaptrack)
	else
		heaptrack_note="heaptrack: not installed, skipped"
	fi
fi
uses_daemon=0
[[ " ${mode_list[*]} " == *" memtrace"* ]] && uses_daemon=1

# Nothing from the caller's environment may change how the agent traces.
unset MEMTRACE_SOCKET MEMTRACE_SAMPLE MEMTRACE_ON_FULL MEMTRACE_FOLLOW_FORK \
	MEMTRACE_UNWIND MEMTRACE_NFRAMES LD_PRELOAD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-bench.XXXXXX") || die "cannot make a temporary directory"
daemon_pid=

cleanup() {
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null
		for _ in $(seq 50); do
			kill -0 "$daemon_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	if [ "$keep" = 1 ]; then
		echo "kept: $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# ---- helpers ----

clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)

# CPU seconds (user+sys) a running process has used so far.
proc_cpu() {
	local stat f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# The fields after "(comm) " (comm may hold spaces); utime and stime
	# are fields 14 and 15 of the line, 11 and 12 (from 0) here.
	read -r -a f <<<"${stat##*) }"
	echo "${f[11]} ${f[12]} $clk_tck" | awk '{ printf "%.3f", ($1 + $2) / $3 }'
}

# CPU seconds the whole machine has spent busy (user, nice, system, irq,
# softirq, steal) since boot, and the time now, as "BUSY NOW".
sys_busy() {
	local f
	read -r -a f </proc/stat
	echo "${f[1]} ${f[2]} ${f[3]} ${f[6]} ${f[7]} ${f[8]} $clk_tck $EPOCHREALTIME" |
		awk '{ printf "%.3f %s", ($1 + $2 + $3 + $4 + $5 + $6) / $7, $8 }'
}

# "0m1.234s" (bash times) -> 1.234
tsec() {
	echo "$1" | awk -F'[ms]' '{ printf "%.3f", $1 * 60 + $2 }'
}

# measure OUT ERR CMD...: runs CMD with its output in OUT and ERR and sets
# M_WALL, M_CPU (user+sys of CMD and every descendant it waited for), M_RC
# and M_PID. `times` in the subshell reports exactly the CMD's children time.
measure() {
	local out=$1 err=$2 res
	shift 2
	res=$(
		t0=$EPOCHREALTIME
		"$@" >"$out" 2>"$err" &
		pid=$!
		wait "$pid"
		rc=$?
		t1=$EPOCHREALTIME
		echo "$pid $rc $t0 $t1"
		times
	)
	local l1 l3
	l1=$(sed -n 1p <<<"$res")
	l3=$(sed -n 3p <<<"$res")
	read -r M_PID M_RC t0 t1 <<<"$l1"
	M_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	local u s
	read -r u s <<<"$l3"
	M_CPU=$(awk -v a="$(tsec "$u")" -v b="$(tsec "$s")" 'BEGIN { printf "%.3f", a + b }')
}

# ctl_request JSON: one request on the daemon's control socket, one line back.
ctl_request() {
	local sock=$tmp/run/control.sock
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
sys.stdout.write(buf.decode())
EOF
	elif command -v socat >/dev/null 2>&1; then
		printf '%s\n' "$1" | socat -t 10 - "UNIX-CONNECT:$sock"
	else
		return 1
	fi
}

# stats PID: the daemon's stats for PID as JSON, through memtracectl when
# it is built, else straight over the control socket.
stats() {
	if [ -x "$ctl" ]; then
		MEMTRACE_RUNTIME_DIR=$tmp/run "$ctl" stats --pid "$1" 2>/dev/null && return 0
	fi
	ctl_request "{\"cmd\": \"stats\", \"pid\": $1}"
}

# json_field JSON NAME: a number or string field's value, "" when absent.
json_field() {
	grep -o "\"$2\":[[:space:]]*\(\"[^\"]*\"\|[-0-9.]*\|null\)" <<<"$1" | head -1 |
		sed 's/^[^:]*:[[:space:]]*//; s/"//g'
}

# kv LINE KEY: the value of KEY=... in the workload's output line.
kv() {
	grep -o "\\b$2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2
}

# median "V1 V2 ...": the median of a space-separated list.
median() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2];
		      else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Waits until the daemon has applied everything PID sent: its session is
# "exited" and the daemon's CPU clock has stopped moving.
settle_daemon() {
	local pid=$1 js st i prev cur
	for i in $(seq 300); do
		js=$(stats "$pid" 2>/dev/null) || break
		st=$(json_field "$js" state)
		[ "$st" = exited ] && break
		[ -n "$(json_field "$js" code)" ] && break
		sleep 0.1
	done
	prev=$(proc_cpu "$daemon_pid")
	for i in $(seq 100); do
		sleep 0.1
		cur=$(proc_cpu "$daemon_pid")
		[ "$cur" = "$prev" ] && break
		prev=$cur
	done
}

# ---- start memtraced ----

if [ "$uses_daemon" = 1 ]; then
	mkdir -p "$tmp/run" "$tmp/state"
	nice -n "${MEMTRACE_BENCH_NICE:-0}" "$daemon" --runtime-dir "$tmp/run" --state-dir "$tmp/state" \
		"${daemon_args[@]}" 2>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do
		[ -S "$tmp/run/agent.sock" ] && [ -S "$tmp/run/control.sock" ] && break
		kill -0 "$daemon_pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -S "$tmp/run/agent.sock" ] || {
		cat "$tmp/daemon.log" >&2
		die "memtraced did not start"
	}
fi

wargs=(-t "$threads" -n "$iters" -d "$depth" -w "$work")

# run_mode MODE I: one run; appends to the per-mode result arrays.
declare -A WALL CPU DCPU NOTE FIRSTFAIL
events=
workload_line=
run_mode() {
	local mode=$1 i=$2 out=$tmp/$1.$2.out err=$tmp/$1.$2.err d0=0 d1=0 dm=0 s0 s1
	s0=$(sys_busy)
	local prog=$workload
	[[ $mode == *-fp ]] && prog=$workload_fp
	case $mode in
	plain*)
		measure "$out" "$err" "$prog" "${wargs[@]}"
		s1=$(sys_busy)
		;;
	memtrace*)
		local unwind=cfi rate=0 full=block
		[ "$mode" = memtrace-libunwind ] && unwind=libunwind
		[ "$mode" = memtrace-fp ] && unwind=fp
		[ "$mode" = memtrace-sample ] && rate=$sample
		[ "$mode" = memtrace-drop ] && full=drop
		d0=$(proc_cpu "$daemon_pid")
		measure "$out" "$err" env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" \
			MEMTRACE_NFRAMES="$nframes" MEMTRACE_UNWIND="$unwind" MEMTRACE_SAMPLE="$rate" \
			MEMTRACE_ON_FULL="$full" "$prog" "${wargs[@]}"
		s1=$(sys_busy)
		dm=$(proc_cpu "$daemon_pid")
		settle_daemon "$M_PID"
		d1=$(proc_cpu "$daemon_pid")
		;;
	heaptrack)
		measure "$out" "$err" heaptrack -o "$tmp/heaptrack.$i" "$workload" "${wargs[@]}"
		s1=$(sys_busy)
		;;
	esac
	local line
	line=$(grep '^workload ' "$out" | head -1)
	if [ "$M_RC" != 0 ] || [ -z "$line" ]; then
		local why="exit status $M_RC"
		[ "$M_RC" -gt 128 ] 2>/dev/null && why="killed by signal $((M_RC - 128))"
		local said
		said=$(grep -hi 'segmentation fault\|crash\|abort\|core dumped' "$out" "$err" 2>/dev/null |
			head -1 | cut -c1-120)
		[ -n "$said" ] && why="$why: $said"
		NOTE[$mode]="${NOTE[$mode]:-}run $i failed ($why); "
		[ -n "${FIRSTFAIL[$mode]:-}" ] || FIRSTFAIL[$mode]=$why
		printf '  %-18s run %d: FAILED (%s)\n' "$mode" "$i" "$why"
		return
	fi
	[ -z "$events" ] && events=$(kv "$line" events) && workload_line=$line
	local dcpu
	dcpu=$(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.3f", b - a }')
	WALL[$mode]="${WALL[$mode]:-} $M_WALL"
	CPU[$mode]="${CPU[$mode]:-} $M_CPU"
	DCPU[$mode]="${DCPU[$mode]:-} $dcpu"
	# What other processes kept busy meanwhile, in CPUs on average.
	# The daemon's share inside the window is d0..dm (dm is 0 without it).
	local others
	others=$(awk -v a="$s0" -v b="$s1" -v c="$M_CPU" -v d0="$d0" -v dm="$dm" 'BEGIN {
		split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
		o = (t > 0) ? (y[1] - x[1] - c - (dm - d0)) / t : 0
		printf "%.2f", o < 0 ? 0 : o }')
	OTHERS="$OTHERS $others"
	if [[ $mode == memtrace* ]]; then
		local js
		js=$(stats "$M_PID" 2>/dev/null)
		local a f lost
		a=$(json_field "$js" allocations)
		f=$(json_field "$js" frees)
		lost=$(json_field "$js" lost_events)
		if [ -z "$a" ]; then
			NOTE[$mode]="${NOTE[$mode]:-}run $i: daemon has no session for pid $M_PID (not traced?); "
		else
			local wa wr
			wa=$(kv "$line" allocs)
			wr=$(kv "$line" releases)
			est=
			[ "$mode" = memtrace-sample ] && est=" (sampled: estimates)"
			KEPT[$mode]="${KEPT[$mode]:-}    run $i:$est daemon saw allocations=$a (workload made $wa) frees=$f (workload made $wr) lost_events=$lost; daemon cpu ${dcpu}s = $(awk -v a="$dcpu" -v b="$M_WALL" 'BEGIN { printf "%.0f", 100 * a / b }')% of the run's wall"$'\n'
			# Sampled, the figures are estimates: only lost events count;
			# drop mode loses what does not fit, and counts it.
			if [ "$mode" = memtrace-drop ]; then
				:
			elif [ "$lost" != 0 ] || { [ "$mode" != memtrace-sample ] &&
				{ [ "$a" -lt "$wa" ] || [ "$f" -lt "$wr" ]; }; }; then
				NOTE[$mode]="${NOTE[$mode]:-}run $i: daemon missed events; "
			fi
		fi
		if grep -q 'memtrace' "$err"; then
			NOTE[$mode]="${NOTE[$mode]:-}run $i agent said: $(grep memtrace "$err" | head -1); "
		fi
	fi
	printf '  %-18s run %d: wall %6.3fs  cpu %6.3fs' "$mode" "$i" "$M_WALL" "$M_CPU"
	[[ $mode == memtrace* ]] && printf '  daemon cpu %6.3fs' "$dcpu"
	printf '  (others busy: %s cpus)\n' "$others"
}
OTHERS=
declare -A KEPT

echo "memtrace overhead benchmark"
echo "  build:    $builddir"
echo "  workload: ${wargs[*]} (x$repeat per mode, interleaved, median reported)"
echo "  machine:  $(nproc) cpus, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$uses_daemon" = 1 ] && echo "  agent:    MEMTRACE_NFRAMES=$nframes, memtraced pid $daemon_pid on $tmp/run"
[ -n "$heaptrack_note" ] && echo "  $heaptrack_note"
echo

# One untimed plain run warms the page cache and the CPU frequency.
"$workload" "${wargs[@]}" >/dev/null 2>&1

for i in $(seq "$repeat"); do
	for m in "${mode_list[@]}"; do
		run_mode "$m" "$i"
	done
done
echo

[ -n "$workload_line" ] || die "the plain workload never completed"
echo "$workload_line"
echo

pw=$(median "${WALL[plain]}")
pc=$(median "${CPU[plain]}")
printf '%-18s %8s %8s %9s %9s %7s %7s %10s %10s\n' mode "wall s" "cpu s" "daemon s" "total s" \
	"wall x" "cpu x" "ns/ev wall" "ns/ev cpu"
for m in "${mode_list[@]}"; do
	if [ -z "${WALL[$m]:-}" ]; then
		printf '%-18s FAILED in all %d runs (%s)\n' "$m" "$repeat" "${FIRSTFAIL[$m]:-?}"
		continue
	fi
	w=$(median "${WALL[$m]}")
	c=$(median "${CPU[$m]}")
	d=$(median "${DCPU[$m]}")
	bw=$pw bc=$pc
	if [ "$m" = memtrace-fp ] && [ -n "${WALL[plain-fp]:-}" ]; then
		bw=$(median "${WALL[plain-fp]}")
		bc=$(median "${CPU[plain-fp]}")
	fi
	awk -v m="$m" -v w="$w" -v c="$c" -v d="$d" -v pw="$bw" -v pc="$bc" -v ev="$events" '
	BEGIN {
		t = c + d
		ds = (m ~ /^memtrace/) ? sprintf("%.3f", d) : "-"
		if (m ~ /^plain/)
			printf "%-18s %8.3f %8.3f %9s %9.3f %7.2f %7.2f %10s %10s\n", m, w, c, ds, t, 1, 1, "-", "-"
		else
			printf "%-18s %8.3f %8.3f %9s %9.3f %7.2f %7.2f %10.0f %10.0f\n", m, w, c, ds, t,
			    w / pw, t / pc, (w - pw) / ev * 1e9, (t - pc) / ev * 1e9
	}'
done
echo
echo "cpu s = the traced program's user+sys (for heaptrack: its script, the program and"
echo "heaptrack_interpret); daemon s = memtraced's user+sys during the run; cpu x and"
echo "ns/ev cpu use total = cpu + daemon. ns/ev = (traced - plain) / $events events."
echo "The workload is built without frame pointers; memtrace-fp runs the build with"
echo "them (workload_fp) and its x and ns/ev are against plain-fp, the plain run of it."
if [ -n "${DCPU[memtrace]:-}" ]; then
	awk -v d="$(median "${DCPU[memtrace]}")" -v ev="$events" 'BEGIN {
		if (d > 0) printf "daemon: %.1f million events applied per second of its CPU (memtrace mode)\n", ev / d / 1e6 }'
fi

# The daemon's memory per live block (issue 10 item 7): tests/progs/churn
# (make tests/progs/churn, or make check) holds 1 million blocks of 32 bytes from one site,
# then 2,181,200 (just past a growth of the block table from 2,908,160 to
# 4,362,240 slots, the worst case: the table is half full), then 3.2
# million (near 3/4 full, the best); stats' model_bytes over its blocks.
churn=$builddir/tests/progs/churn
if [ "$uses_daemon" = 1 ] && [ -x "$churn" ]; then
	coproc CHURN { exec env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" \
		MEMTRACE_TRUTH="$tmp/churn.book" "$churn" 2>/dev/null; }
	read -r -t 30 _ <&"${CHURN[0]}"
	printf 'daemon memory per live block (model_bytes / blocks):'
	for m in 1000000 1181200 1018800; do
		echo "hold $m 32" >&"${CHURN[1]}"
		read -r -t 60 _ <&"${CHURN[0]}"
		sleep 0.5
		js=$(stats "$CHURN_PID")
		awk -v b="$(json_field "$js" blocks)" -v m="$(json_field "$js" model_bytes)" \
			'BEGIN { if (b > 0) printf "  %d blocks: %.1f B", b, m / b }'
	done
	echo
	echo exit >&"${CHURN[1]}"
	wait "$CHURN_PID" 2>/dev/null
elif [ "$uses_daemon" = 1 ]; then
	echo "daemon memory per live block: skipped (make tests/progs/churn in $builddir builds it)"
fi

busiest=$(tr ' ' '\n' <<<"$OTHERS" | grep . | sort -g | tail -1)
if awk -v o="${busiest:-0}" 'BEGIN { exit !(o > 0.25) }'; then
	echo
	echo "WARNING: other processes kept up to $busiest of the $(nproc) cpus busy during the runs:"
	echo "the wall columns depend on how the scheduler shared the cpus and are not reliable;"
	echo "the cpu columns are. Run again on a quiet machine for wall figures."
fi

for m in "${mode_list[@]}"; do
	if [ -n "${NOTE[$m]:-}" ] && [ -n "${WALL[$m]:-}" ]; then
		echo "$m: ${NOTE[$m]}"
	fi
done
if [ "$uses_daemon" = 1 ]; then
	echo
	echo "did the daemon keep up? (lossless mode: a slow daemon shows as a slower program, not lost events)"
	for m in "${mode_list[@]}"; do
		[[ $m == memtrace* ]] || continue
		echo "  $m:"
		printf '%s' "${KEPT[$m]:-    no stats (no control socket client: python3 or socat)$'\n'}"
	done
fi
exit 0
