#!/usr/bin/env bash
# snapshot_bench.sh - what a snapshot of a process with 100,000 distinct live
# stacks costs: how long `memtracectl snapshot --pid P` (and with -o FILE)
# takes end to end, and how long memtraced's loop is blocked meanwhile.
#
# bench/stacks holds one block from each of N distinct stacks under the agent.
# A probe sends {"cmd":"status"} over control.sock in a tight loop, one request
# at a time, and records each response's latency: a loop that is blocked for
# X ms shows as one response taking about X ms. The probe runs alone first
# (idle), then around each snapshot; the table gives the latencies of the
# requests that were in flight while the snapshot command ran.
#
# The script starts its own memtraced (--snapshot-interval 0, so nothing else
# is written meanwhile) on a temporary directory and stops it at the end.
set -u

usage() {
	cat <<EOF
Usage: bench/snapshot_bench.sh [OPTIONS]
Time 'memtracectl snapshot --pid P' of a process with N distinct stacks and
measure the daemon loop's response latency during it versus idle.

  --builddir DIR   build tree (default: \$MEMTRACE_BUILDDIR, else ../build
                   beside this script); bench/stacks from 'make bench' there,
                   else it is compiled with cc from bench/stacks.c
  -n N             distinct stacks (default 100000)
  -r, --repeat R   snapshots per kind, the median is reported (default 3)
  --idle S         seconds of idle probing (default 2)
  --no-file        skip the 'snapshot -o FILE' runs
  --keep           keep the temporary directory (daemon log, database)
  -h, --help       this text
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
nstacks=100000
repeat=3
idle=2
with_file=1
keep=0

die() {
	echo "snapshot_bench.sh: $*" >&2
	exit 1
}

need_arg() {
	[ $# -ge 2 ] || die "$1 needs a value"
}

while [ $# -gt 0 ]; do
	case $1 in
	--builddir) need_arg "$@"; builddir=$2; shift 2 ;;
	--builddir=*) builddir=${1#*=}; shift ;;
	-n) need_arg "$@"; nstacks=$2; shift 2 ;;
	-r | --repeat) need_arg "$@"; repeat=$2; shift 2 ;;
	--idle) need_arg "$@"; idle=$2; shift 2 ;;
	--no-file) with_file=0; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
for v in nstacks repeat idle; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[ "$repeat" -ge 1 ] || die "--repeat must be at least 1"
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the probe"

[ -d "$builddir" ] || die "no build directory '$builddir' (use --builddir or MEMTRACE_BUILDDIR)"
builddir=$(cd "$builddir" && pwd)
agent=$builddir/agent/.libs/libmemtrace.so
daemon=$builddir/daemon/memtraced
ctl=$builddir/client/memtracectl
for f in "$agent" "$daemon" "$ctl"; do
	[ -e "$f" ] || die "$f is missing: run 'make' in $builddir"
done

unset MEMTRACE_SOCKET MEMTRACE_SAMPLE MEMTRACE_ON_FULL MEMTRACE_FOLLOW_FORK \
	MEMTRACE_UNWIND MEMTRACE_NFRAMES MEMTRACE_RUNTIME_DIR MEMTRACE_STATE_DIR LD_PRELOAD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-snapbench.XXXXXX") || die "cannot make a temporary directory"
daemon_pid=
stacks_pid=

cleanup() {
	exec 7>&- 2>/dev/null
	if [ -n "$stacks_pid" ]; then
		kill -KILL "$stacks_pid" 2>/dev/null
		wait "$stacks_pid" 2>/dev/null
	fi
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null
		for _ in $(seq 100); do
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

stacks=$builddir/bench/stacks
if [ ! -x "$stacks" ]; then
	stacks=$tmp/stacks
	${CC:-cc} -std=gnu11 -O0 -g -fno-omit-frame-pointer -o "$stacks" "$script_dir/stacks.c" ||
		die "cannot compile $script_dir/stacks.c"
fi

# json_field JSON NAME: a number or string field's value, "" when absent.
json_field() {
	grep -o "\"$2\":[[:space:]]*\(\"[^\"]*\"\|[-0-9.]*\|null\)" <<<"$1" | head -1 |
		sed 's/^[^:]*:[[:space:]]*//; s/"//g'
}

# ---- memtraced and the traced program ----

mkdir -p "$tmp/run" "$tmp/state"
"$daemon" --runtime-dir "$tmp/run" --state-dir "$tmp/state" --snapshot-interval 0 \
	2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	[ -S "$tmp/run/agent.sock" ] && [ -S "$tmp/run/control.sock" ] && break
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.1
done
[ -S "$tmp/run/control.sock" ] || {
	cat "$tmp/daemon.log" >&2
	die "memtraced did not start"
}

mkfifo "$tmp/stacks.in"
LD_PRELOAD=$agent MEMTRACE_RUNTIME_DIR=$tmp/run "$stacks" -n "$nstacks" \
	<"$tmp/stacks.in" >"$tmp/stacks.out" 2>"$tmp/stacks.err" &
stacks_pid=$!
exec 7>"$tmp/stacks.in" # its stdin stays open until cleanup

t_start=$EPOCHREALTIME
for _ in $(seq 1200); do
	grep -q '^ready' "$tmp/stacks.out" 2>/dev/null && break
	kill -0 "$stacks_pid" 2>/dev/null || die "stacks ended early: $(cat "$tmp/stacks.err")"
	sleep 0.1
done
grep -q '^ready' "$tmp/stacks.out" || die "stacks never said ready"

# The daemon must have taken in every block and stack before we start.
ctl_() { "$ctl" --runtime-dir "$tmp/run" "$@"; }
for _ in $(seq 1200); do
	js=$(ctl_ stats --pid "$stacks_pid" 2>/dev/null)
	b=$(json_field "$js" blocks)
	s=$(json_field "$js" stacks)
	[ -n "$b" ] && [ -n "$s" ] && [ "$b" -ge "$nstacks" ] && [ "$s" -ge "$nstacks" ] && break
	sleep 0.1
done
[ -n "$b" ] && [ "$b" -ge "$nstacks" ] && [ "$s" -ge "$nstacks" ] ||
	die "the daemon has $b blocks and $s stacks of pid $stacks_pid, expected $nstacks"
t_ready=$EPOCHREALTIME

echo "memtrace snapshot benchmark"
echo "  build:    $builddir"
echo "  machine:  $(nproc) cpus, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  process:  bench/stacks -n $nstacks, pid $stacks_pid: $b live blocks, $s stacks" \
	"($(awk -v a="$t_start" -v b="$t_ready" 'BEGIN { printf "%.1f", b - a }') s to start and ingest)"
echo "  daemon:   memtraced pid $daemon_pid, state in $tmp/state"
echo

# ---- the probe and the snapshots ----

cat >"$tmp/probe.py" <<'EOF'
import socket, statistics, subprocess, sys, threading, time

sock_path, ctl, rundir, pid, repeat, idle, with_file, tmp = sys.argv[1:9]
repeat, idle, with_file = int(repeat), float(idle), with_file == "1"
REQ = b'{"cmd":"status"}\n'


class Probe(threading.Thread):
    """One connection, one status request at a time: (sent, answered)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stopping = False
        self.error = None

    def run(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            f = s.makefile("rb")
            while not self.stopping:
                t0 = time.perf_counter()
                s.sendall(REQ)
                line = f.readline()
                t1 = time.perf_counter()
                if not line:
                    self.error = "the daemon closed the probe's connection"
                    return
                self.samples.append((t0, t1))
        except OSError as e:
            self.error = str(e)


def stats(samples, lo=None, hi=None):
    """Latencies (ms) of the requests in flight at some moment of [lo, hi]."""
    lat = sorted((b - a) * 1e3 for a, b in samples
                 if lo is None or (a <= hi and b >= lo))
    if not lat:
        return 0, float("nan"), float("nan"), float("nan")
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))]
    return len(lat), p(0.50), p(0.99), lat[-1]


def probed(cmd):
    """Runs cmd with the probe around it: (wall ms, probe stats, output)."""
    pr = Probe()
    pr.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    t1 = time.perf_counter()
    time.sleep(0.3)
    pr.stopping = True
    pr.join(10)
    if pr.error:
        sys.exit("probe: " + pr.error)
    if out.returncode != 0:
        sys.exit("%s failed: %s %s" % (" ".join(cmd), out.stdout, out.stderr))
    return (t1 - t0) * 1e3, stats(pr.samples, t0, t1), out.stdout


rows = []
pr = Probe()
pr.start()
time.sleep(idle)
pr.stopping = True
pr.join(10)
if pr.error:
    sys.exit("probe: " + pr.error)
idle_stats = stats(pr.samples)

kinds = [("snapshot", [])]
if with_file:
    kinds.append(("snapshot -o FILE", ["-o", tmp + "/snap.json"]))
results = {}
for name, extra in kinds:
    results[name] = []
    for i in range(repeat):
        wall, st, out = probed([ctl, "--runtime-dir", rundir, "snapshot", "--pid", pid] + extra)
        results[name].append((wall, st))

fmt = "%-26s %10s %9s %9s %9s %9s"
print(fmt % ("", "wall ms", "requests", "p50 ms", "p99 ms", "max ms"))
n, p50, p99, mx = idle_stats
print(fmt % ("idle (%.0f s)" % idle, "-", n, "%.3f" % p50, "%.3f" % p99, "%.3f" % mx))
for name, _ in kinds:
    for i, (wall, (n, p50, p99, mx)) in enumerate(results[name]):
        label = "%s, run %d%s" % (name, i + 1, " (new stacks)" if i == 0 and name == "snapshot" else "")
        print(fmt % (label, "%.1f" % wall, n, "%.3f" % p50, "%.3f" % p99, "%.3f" % mx))
    walls = [w for w, _ in results[name]]
    worst = max(st[3] for _, st in results[name])
    worst99 = max(st[2] for _, st in results[name])
    print(fmt % ("%s, median" % name, "%.1f" % statistics.median(walls), "",
                 "", "%.3f" % worst99, "%.3f" % worst))
print()
print("wall: memtracectl snapshot end to end; requests: status requests in flight")
print("during it (idle: all of the idle period); max: the longest any one waited,")
print("an upper bound on how long the loop was blocked. Median rows: median wall,")
print("worst p99 and max over the runs.")
EOF

python3 "$tmp/probe.py" "$tmp/run/control.sock" "$ctl" "$tmp/run" "$stacks_pid" "$repeat" \
	"$idle" "$with_file" "$tmp" || die "the probe failed"
echo
db=$tmp/state/memtrace.db
size=$(du -cb "$db"* 2>/dev/null | tail -1 | cut -f1)
echo "database after $((repeat * (1 + with_file))) snapshots: $((size / 1048576)) MiB (memtrace.db with -wal, -shm)"
grep -i 'snapshot\|slow\|warn' "$tmp/daemon.log" | grep -v '^<6>memtraced: snapshots in' | head -5
