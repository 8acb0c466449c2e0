#!/usr/bin/env bash
# depth.sh - what a stack's depth costs the agent: nanoseconds per event of
# bench/depth (C, -O2 without frame pointers) with stacks 10, 30 and 60
# frames deep (the last cut at MEMTRACE_NFRAMES=32), each from a stack that
# repeats and from stacks whose outer frames change at every allocation
# (the walk goes all the way up), and of bench/depth_cxx (C++, 40 nested
# template frames above std::string and std::vector), traced with the
# default settings; each case plain and traced R times, interleaved, medians.
#
# ns/event = (traced CPU - plain CPU) / events: the process's own CPU, the
# agent's sender thread included, not its wall time, which in lossless mode
# would measure how fast the daemon reads (these programs do almost nothing
# but allocate). Events are the program's allocator calls (bench/depth counts its own; depth_cxx's are
# the daemon's count of allocations and frees). The script starts its own
# memtraced and stops it at the end.
set -u

usage() {
	cat <<EOF
Usage: bench/depth.sh [--builddir DIR] [-r R] [-n N]
  --builddir DIR  build tree (default: \$MEMTRACE_BUILDDIR, else ../build);
                  needs 'make bench' done in it
  -r R            runs per case, the median is reported (default 3)
  -n N            allocations per C case (default 1000000)
EOF
}

die() {
	echo "depth.sh: $*" >&2
	exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
repeat=3
n=1000000
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) builddir=$2; shift 2 ;;
	-r) repeat=$2; shift 2 ;;
	-n) n=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
[[ $repeat =~ ^[0-9]+$ && $n =~ ^[0-9]+$ ]] || die "-r and -n take numbers"
builddir=$(cd "$builddir" && pwd) || die "no build directory"
agent=$builddir/agent/.libs/libmemtrace.so
daemon=$builddir/daemon/memtraced
ctl=$builddir/client/memtracectl
for f in "$builddir/bench/depth" "$builddir/bench/depth_cxx"; do
	[ -x "$f" ] || die "$f is missing: run 'make bench' in $builddir"
done

unset MEMTRACE_SOCKET MEMTRACE_SAMPLE MEMTRACE_ON_FULL MEMTRACE_FOLLOW_FORK \
	MEMTRACE_UNWIND MEMTRACE_NFRAMES LD_PRELOAD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-depth.XXXXXX") || die "no temporary directory"
chmod 0755 "$tmp"
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/run" "$tmp/state"
"$daemon" --runtime-dir "$tmp/run" --state-dir "$tmp/state" --metrics-listen off \
	--snapshot-interval 0 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	[ -S "$tmp/run/agent.sock" ] && break
	sleep 0.1
done
[ -S "$tmp/run/agent.sock" ] || die "memtraced did not start"

median() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) printf "%.6f", v[(NR + 1) / 2];
		      else printf "%.6f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field LINE KEY: KEY=value of a program's line.
field() {
	grep -o "\\b$2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2
}

# The daemon's allocations + frees of the last exited process named NAME.
daemon_events() {
	local pid=$1 js a f
	for _ in $(seq 100); do
		js=$(MEMTRACE_RUNTIME_DIR=$tmp/run "$ctl" stats --pid "$pid" 2>/dev/null)
		grep -q '"state":[[:space:]]*"exited"' <<<"$js" && break
		sleep 0.1
	done
	a=$(grep -o '"allocations":[[:space:]]*[0-9]*' <<<"$js" | grep -o '[0-9]*$')
	f=$(grep -o '"frees":[[:space:]]*[0-9]*' <<<"$js" | grep -o '[0-9]*$')
	echo $((${a:-0} + ${f:-0}))
}

# case NAME CMD...: plain and traced, R times, interleaved.
printf '%-26s %10s %12s %12s %12s\n' case events "plain cpu s" "traced cpu s" "ns/event"
run_case() {
	local name=$1 plain="" traced="" events="" line pid
	shift
	for _ in $(seq "$repeat"); do
		line=$("$@")
		plain="$plain $(field "$line" cpu_s)"
		events=$(field "$line" events)
		line=$(env LD_PRELOAD="$agent" MEMTRACE_RUNTIME_DIR="$tmp/run" "$@" &
			pid=$!
			wait $pid
			echo " pid=$pid")
		traced="$traced $(field "$line" cpu_s)"
		if [ -z "$events" ]; then
			events=$(daemon_events "$(field "$line" pid)")
		fi
	done
	local p t
	p=$(median "$plain")
	t=$(median "$traced")
	awk -v n="$name" -v e="$events" -v p="$p" -v t="$t" 'BEGIN {
		printf "%-26s %10d %12.3f %12.3f %12.1f\n", n, e, p, t, (t - p) / e * 1e9 }'
}

for d in 10 30 60; do
	for m in repeat fresh; do
		run_case "C, $d frames, $m" "$builddir/bench/depth" -d "$d" -n "$n" -m "$m"
	done
done
run_case "C++, 40 template frames" "$builddir/bench/depth_cxx" -n $((n / 3))
echo
echo "traced: default settings (MEMTRACE_UNWIND=cfi, MEMTRACE_NFRAMES=32, lossless);"
echo "medians of $repeat; events are allocator calls (an allocation and its free are two)."
