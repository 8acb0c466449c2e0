#!/bin/sh
# fuzz.sh - builds the libFuzzer targets of fuzz/ and runs each for a given
# time, then says how many inputs each one ran and what it found.
#
# Usage: scripts/fuzz.sh [-b BUILDDIR] [-t SECONDS] [-w WORKERS] [-n NICE] [-m] [TARGET...]
#   -b BUILDDIR  a configured build directory (default: the current one)
#   -t SECONDS   run time of each target (default 60)
#   -w WORKERS   parallel fuzzing processes per target (libFuzzer -fork=N;
#                default 1, run in-process)
#   -n NICE      niceness of the fuzzers (default 19)
#   -m           merge: add the inputs that reach new coverage to the
#                committed corpus fuzz/corpus/NAME (libFuzzer -merge=1, which
#                keeps only inputs that add features, so it stays small)
#   TARGET       proto, ctlwire, snapshot, session, region, control (default: all)
#
# Each target starts from its committed corpus and the one it grew in
# earlier runs (BUILDDIR/fuzz/fuzz_NAME.corpus, kept between runs). A
# finding (crash, sanitizer report, broken property, leak, hang over 25 s,
# over 2 GiB) is written as BUILDDIR/fuzz/fuzz_NAME-crash-* (or leak-,
# timeout-, oom-); replay one with BUILDDIR/fuzz/fuzz_NAME FILE. The table
# at the end gives each target's executions as libFuzzer counted them
# (stat::number_of_executed_units, or the last status line with -w > 1) and
# the findings; the exit status is 1 when anything was found or a target
# could not run. The logs are BUILDDIR/fuzz/fuzz_NAME.log.
set -u

build=.
secs=60
workers=1
niceness=19
merge=0
while getopts b:t:w:n:m opt; do
	case $opt in
	b) build=$OPTARG ;;
	t) secs=$OPTARG ;;
	w) workers=$OPTARG ;;
	n) niceness=$OPTARG ;;
	m) merge=1 ;;
	*)
		sed -n '4,12p' "$0" >&2
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
targets=${*:-proto ctlwire snapshot session region control}

cd "$build" || exit 2
[ -f Makefile ] || {
	echo "fuzz.sh: $build is not a configured build directory (-b)" >&2
	exit 2
}
top=$(sed -n 's/^abs_top_srcdir = //p' Makefile)
bins=
for t in $targets; do bins="$bins fuzz/fuzz_$t"; done
mkdir -p fuzz
# shellcheck disable=SC2086
nice -n "$niceness" make -j1 $bins >fuzz/build.log 2>&1 || {
	tail -30 fuzz/build.log
	echo "fuzz.sh: building the targets failed (clang with libFuzzer is needed)" >&2
	exit 2
}

status=0
total=0
summary=fuzz/summary.tsv
printf 'target\tseconds\texecutions\texec_per_s\tcorpus_files\tfindings\n' >"$summary"
for t in $targets; do
	bin=fuzz/fuzz_$t
	seed=$top/fuzz/corpus/$t
	work=fuzz/fuzz_$t.corpus
	log=fuzz/fuzz_$t.log
	mkdir -p "$work"
	before=$(ls fuzz/ | grep -c "^fuzz_$t-\(crash\|leak\|timeout\|oom\)-")
	if [ "$workers" -gt 1 ]; then
		par="-fork=$workers -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1"
	else
		par=
	fi
	echo "== $t: $secs s, $workers worker(s), nice $niceness"
	start=$(date +%s)
	# shellcheck disable=SC2086
	nice -n "$niceness" "./$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=25 \
		-rss_limit_mb=2048 $par \
		-artifact_prefix="fuzz/fuzz_$t-" "$work" "$seed" >"$log" 2>&1
	rc=$?
	elapsed=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ -z "$execs" ]; then
		# -fork: the last status line, "#EXECS: cov: ..."
		execs=$(sed -n 's/^#\([0-9][0-9]*\)[:	 ].*/\1/p' "$log" | tail -1)
	fi
	execs=${execs:-0}
	after=$(ls fuzz/ | grep -c "^fuzz_$t-\(crash\|leak\|timeout\|oom\)-")
	found=$((after - before))
	if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then
		echo "fuzz.sh: fuzz_$t exited with $rc and wrote no artifact; see $log" >&2
		tail -20 "$log" >&2
		status=1
	fi
	[ "$found" -eq 0 ] || {
		status=1
		ls fuzz/ | grep "^fuzz_$t-\(crash\|leak\|timeout\|oom\)-" | sed 's|^|  finding: fuzz/|'
	}
	if [ "$merge" -eq 1 ]; then
		# Only what adds coverage to the committed seeds goes in.
		nice -n "$niceness" "./$bin" -merge=1 "$seed" "$work" \
			>"fuzz/fuzz_$t.merge.log" 2>&1 ||
			{
				echo "fuzz.sh: merging fuzz_$t failed; see fuzz/fuzz_$t.merge.log" >&2
				status=1
			}
	fi
	files=$(find "$seed" -maxdepth 1 -type f | wc -l)
	rate=$((execs / (elapsed > 0 ? elapsed : 1)))
	total=$((total + execs))
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$elapsed" "$execs" "$rate" "$files" "$found" >>"$summary"
done

echo
column -t -s '	' "$summary" 2>/dev/null || cat "$summary"
echo "total executions: $total (table in $build/$summary)"
exit $status
