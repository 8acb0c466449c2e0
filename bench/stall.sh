#!/usr/bin/env bash
# stall.sh - the longest time memtraced's loop runs without a pause, per
# attack: how long every other client (a traced program in lossless mode, a
# query, a scrape) may have had to wait. Each attack runs against a fresh
# memtraced of the build tree; the figures are its memtrace_loop_stall_max_seconds
# gauge (daemon/loopwatch.h) read from /metrics after the attack, the loop
# iterations over 50 ms, the longest a `status` asked every 5 ms by a probe
# client waited for its answer meanwhile (the same figure seen from outside;
# it needs no gauge, so --daemon can point at an older memtraced), and the
# daemon's peak RSS (VmHWM). A baseline (bench/workload traced, a normal
# malloc-heavy program) comes first.
#
# The attacks (the issue's findings; see bench/README.md):
#   huge-blocks      300,000 live blocks of 1 TiB from a real traced program
#                    (tests/progs/hugeblocks over libfakebig.so), all freed,
#                    then the exit snapshot
#   hash-pattern     262,144 blocks at addresses i << 40: the pattern that an
#                    unkeyed multiplicative hash piles onto one probe chain
#   modules          a hostile agent announcing 65,536 objects
#   exit-snapshots   2,000 short traced programs (tests/progs/leaker), 50 at once
#   control          16 control clients sending 20,000 requests each and
#                    reading nothing
#   final-drain      a hostile agent whose 1,024 rings are full (134 M
#                    records) says hello and closes: the daemon reads them
#                    all after the end
#   wake-flood       a hostile agent whose 1,024 rings always have a record
#                    in flight sends WAKE frames for 5 s
#   many-blocks      a hostile agent with 8,000,000 live blocks (its block
#                    table doubles up to 16 Mi slots), held 3 s, then gone
#   fork-images      a hostile agent with 30,000 live blocks and 1,000 FORK
#                    records no child claims
#   many-blocks-query  a hostile agent with 8,000,000 live blocks asks for
#                    them (traceback, top, snapshot: each a capture that
#                    searches its largest blocks) 30 times
#   fork-big         a hostile agent with 4,000,000 live blocks and 8 FORK
#                    records no child claims, each followed by 100,000 frees
#                    spread over the heap (each fork copies the heap; the
#                    frees write into what the copies share)
#   many-stacks      a hostile agent with 600,000 live blocks on as many
#                    stacks of 32 frames and 4 FORK records no child claims:
#                    what stays linear on the loop is in stacks (a
#                    capture visits every stack; a fork image shares them)
#   query-drain      200 agent connections of another user (uid 65534 when
#                    run as root) on one region whose 64 rings never empty,
#                    and 2 pipelined `list` requests of that user for 10 s
#                    (each `list` reads every session)
#   memfd-close      another user passes 2 memfds of 1 GiB (pages allocated)
#                    on an agent connection, 3 times: the daemon's close is
#                    the last and frees the pages
#   slowloris        80 slow HTTP connections from 127.0.0.2-11 (as uid 65534
#                    when run as root), and a scrape of ours meanwhile
#   scrape-modules   another user's 200 forged agents with 8,192 modules (2 MiB
#                    of paths) each, then 5 scrapes of /metrics
#                    (bench/attacks/scrape_modules.c: each capture copied every
#                    module path on the loop)
#   control-parse    another user's 15 control connections sending requests
#                    of the largest size, all numbers, for 8 s
#                    (bench/attacks/control_parse.c)
#
# Needs `make bench` and `make check` (its programs) done in the build tree.
set -u

usage() {
	cat <<EOF
Usage: bench/stall.sh [--builddir DIR] [--daemon PATH] [--attacks LIST] [--keep]
Run each attack against a fresh memtraced and print the loop's longest stall.

  --builddir DIR  build tree (default: \$MEMTRACE_BUILDDIR, else ../build
                  beside this script); needs 'make bench' and 'make check'
  --daemon PATH   the memtraced to attack (default: the build tree's); one
                  without the stall gauge or the limits' options still
                  gets the probe's figure
  --attacks LIST  comma-separated subset of baseline,huge-blocks,hash-pattern,
                  modules,exit-snapshots,control,final-drain,wake-flood,many-blocks,fork-images,
                  many-blocks-query,fork-big,many-stacks,query-drain,memfd-close,
                  slowloris,scrape-modules,control-parse
                  (default: all)
  --keep          keep the temporary directory (daemon logs)
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builddir=${MEMTRACE_BUILDDIR:-$script_dir/../build}
attacks=baseline,huge-blocks,hash-pattern,modules,exit-snapshots,control,final-drain,wake-flood,many-blocks,fork-images,many-blocks-query,fork-big,many-stacks,query-drain,memfd-close,slowloris,scrape-modules,control-parse
keep=0
daemon=
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) builddir=$2; shift 2 ;;
	--attacks) attacks=$2; shift 2 ;;
	--daemon) daemon=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
builddir=$(cd "$builddir" && pwd) || exit 2
daemon=${daemon:-$builddir/daemon/memtraced}
agent=$builddir/agent/.libs/libmemtrace.so
for f in "$daemon" "$agent" "$builddir/bench/hostile" "$builddir/bench/workload" \
	"$builddir/tests/progs/hugeblocks" "$builddir/tests/progs/.libs/libfakebig.so" \
	"$builddir/tests/progs/leaker"; do
	if [ ! -e "$f" ]; then
		echo "stall.sh: $f is missing: run 'make bench tests/progs/hugeblocks tests/progs/leaker tests/progs/libfakebig.la' in $builddir" >&2
		exit 2
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-stall.XXXXXX")
# Attacks of another user: as uid 65534 when we are root (who may reach
# the daemon's sockets through $tmp), else as ourselves.
as_other=()
nice_daemon=()
[ "$(id -u)" = 0 ] && nice_daemon=(nice -n -10)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	as_other=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	chmod 0711 "$tmp"
fi
dpid=
ppid_=
cleanup() {
	[ -n "$ppid_" ] && kill "$ppid_" 2>/dev/null
	if [ -n "$dpid" ]; then
		kill "$dpid" 2>/dev/null
		wait "$dpid" 2>/dev/null
	fi
	if [ "$keep" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# A fresh daemon in $tmp/$1; sets dpid, run (runtime dir) and port.
start_daemon() {
	local dir=$tmp/$1
	mkdir -p "$dir"
	chmod 0711 "$dir"
	run=$dir/run
	# As the systemd unit does (Nice=-10): ahead of the attacker's busy
	# processes, which would otherwise measure the scheduler, not the loop.
	"${nice_daemon[@]}" "$daemon" --runtime-dir "$run" --state-dir "$dir/state" \
		--metrics-listen 127.0.0.1:0 >"$dir/log" 2>&1 &
	dpid=$!
	port=
	for _ in $(seq 200); do
		port=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$dir/log")
		[ -n "$port" ] && [ -S "$run/control.sock" ] && return 0
		sleep 0.05
	done
	echo "stall.sh: memtraced did not start; log:" >&2
	cat "$dir/log" >&2
	exit 1
}

# Waits until no traced process is live (their last events are in).
settle() {
	for _ in $(seq 600); do
		if ! "$builddir/client/memtracectl" --runtime-dir "$run" list 2>/dev/null |
			grep -q '"state":[[:space:]]*"live"'; then
			break
		fi
		sleep 0.1
	done
	sleep 0.5
}

metric() {
	curl -s -m 15 "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"
}

start_probe() {
	"$builddir/bench/hostile" probe "$run" >"$tmp/probe" &
	ppid_=$!
	sleep 0.2
}

report() {
	local stall slow hwm probe
	kill -TERM "$ppid_"
	wait "$ppid_"
	ppid_=
	probe=$(cat "$tmp/probe")
	stall=$(metric memtrace_loop_stall_max_seconds)
	slow=$(metric memtrace_loop_slow_iterations_total)
	hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$dpid/status")
	if [ -n "$stall" ]; then
		stall=$(printf '%.1f' "$(echo "$stall * 1000" | bc -l)")
	else
		stall=-
		slow=-
	fi
	printf '%-16s %10s %10s %10s %10s\n' "$1" "$stall" "$slow" "${probe:--}" \
		"$((hwm / 1024))"
	kill -TERM "$dpid"
	wait "$dpid"
	dpid=
}

traced() {
	env LD_PRELOAD="$agent${PRELOAD_MORE:+:$PRELOAD_MORE}" MEMTRACE_RUNTIME_DIR="$run" \
		MEMTRACE_TRUTH="$tmp/truth" "$@"
}

printf '%-16s %10s %10s %10s %10s\n' attack "stall ms" "slow>50ms" "probe ms" "RSS MiB"
for a in ${attacks//,/ }; do
	start_daemon "$a"
	start_probe
	case $a in
	baseline)
		traced "$builddir/bench/workload" -t 2 -n 40000 >/dev/null
		;;
	huge-blocks)
		printf 'next\nexit\n' | PRELOAD_MORE=$builddir/tests/progs/.libs/libfakebig.so \
			traced "$builddir/tests/progs/hugeblocks" 300000 >/dev/null
		;;
	hash-pattern)
		printf 'next\nexit\n' | PRELOAD_MORE=$builddir/tests/progs/.libs/libfakebig.so \
			FAKEBIG_MIN=65536 FAKEBIG_SHIFT=40 \
			traced "$builddir/tests/progs/hugeblocks" 262144 65536 >/dev/null
		;;
	modules)
		"$builddir/bench/hostile" modules "$run" 65536 >/dev/null
		;;
	exit-snapshots)
		for _ in $(seq 40); do
			pids=()
			for _ in $(seq 50); do
				traced "$builddir/tests/progs/leaker" >/dev/null 2>&1 &
				pids+=($!)
			done
			wait "${pids[@]}" # not the daemon
		done
		;;
	control)
		"$builddir/bench/hostile" control "$run" 16 20000 >/dev/null
		;;
	final-drain)
		"$builddir/bench/hostile" final "$run" 1024 >/dev/null
		;;
	wake-flood)
		"$builddir/bench/hostile" wake "$run" 5 >/dev/null
		;;
	many-blocks)
		"$builddir/bench/hostile" forks "$run" 8000000 0 >/dev/null
		;;
	fork-images)
		"$builddir/bench/hostile" forks "$run" 30000 1000 >/dev/null
		;;
	many-blocks-query)
		note=$("$builddir/bench/hostile" blocks "$run" 8000000 30)
		;;
	fork-big)
		"$builddir/bench/hostile" forks "$run" 4000000 8 100000 >/dev/null
		;;
	many-stacks)
		"$builddir/bench/hostile" forks "$run" 600000 4 0 600000 >/dev/null
		;;
	scrape-modules | control-parse)
		src=$script_dir/attacks/${a//-/_}.c
		cc -O2 -I"$script_dir/../proto" -I"$script_dir/attacks" -o "$tmp/$a.bin" "$src" \
			"$builddir/.libs/libproto.a" || exit 1
		chmod 0755 "$tmp/$a.bin"
		if [ "$a" = scrape-modules ]; then
			note=$("${as_other[@]}" "$tmp/$a.bin" "$run" "$port" 200 8192 | tail -1)
		else
			note=$("${as_other[@]}" "$tmp/$a.bin" "$run" "$port" 15 8 | tail -1)
		fi
		;;
	query-drain)
		note=$("${as_other[@]}" "$builddir/bench/hostile" query-drain "$run" 200 64 2 10)
		;;
	memfd-close)
		"${as_other[@]}" "$builddir/bench/hostile" memfd "$run" 2 1024 3 >/dev/null
		;;
	slowloris)
		# Another user's attack when we are root: each local user is one
		# origin, and the scrape below is ours.
		"${as_other[@]}" "$builddir/bench/hostile" slowloris "$port" 10 8 12 >/dev/null &
		hp=$!
		sleep 2
		code=$(curl -s -m 15 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")
		note="a scrape from 127.0.0.1 during the slowloris: HTTP ${code:-none}"
		wait "$hp"
		;;
	*)
		echo "stall.sh: unknown attack $a" >&2
		exit 2
		;;
	esac
	settle
	report "$a"
	if [ -n "${note:-}" ]; then
		echo "  ($note)"
		note=
	fi
done
