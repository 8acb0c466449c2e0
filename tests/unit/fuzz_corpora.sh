#!/bin/sh
# fuzz_corpora.sh - replays every committed fuzz corpus file through its
# target's entry point (fuzz/replay_NAME: fuzz/fuzz_NAME.c linked with
# fuzz/standalone.c by this build, with its compiler and sanitizers).
#
# Pinned: each fuzz/fuzz_NAME.c has a replay program and a non-empty
# fuzz/corpus/NAME; every file of it runs through LLVMFuzzerTestOneInput
# without a crash, a sanitizer report or a broken property (the targets
# abort() on those). A target without a corpus, or a corpus without a
# target, fails the test.
srcdir=${srcdir:-.}
build=${MEMTRACE_BUILDDIR:-.}
status=0
count=0
passes=0
fails=0

for src in "$srcdir"/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	replay="$build/fuzz/replay_$name"
	corpus="$srcdir/fuzz/corpus/$name"
	if [ ! -x "$replay" ]; then
		echo "FAIL $name: no replay program $replay"
		status=1; fails=$((fails + 1))
		continue
	fi
	n=$(find "$corpus" -maxdepth 1 -type f 2>/dev/null | wc -l)
	if [ "$n" -eq 0 ]; then
		echo "FAIL $name: no corpus in $corpus"
		status=1; fails=$((fails + 1))
		continue
	fi
	# The inputs in a fixed order, so a failure replays the same way.
	if find "$corpus" -maxdepth 1 -type f -print0 | sort -z |
		xargs -0 "$replay" >"$build/fuzz/replay_$name.log" 2>&1; then
		echo "PASS $name: $n corpus files"
		passes=$((passes + 1))
	else
		echo "FAIL $name: replaying $corpus (log: $build/fuzz/replay_$name.log)"
		tail -20 "$build/fuzz/replay_$name.log"
		status=1; fails=$((fails + 1))
	fi
	count=$((count + 1))
done
for dir in "$srcdir"/fuzz/corpus/*/; do
	name=$(basename "$dir")
	if [ ! -f "$srcdir/fuzz/fuzz_$name.c" ]; then
		echo "FAIL corpus $dir has no target fuzz/fuzz_$name.c"
		status=1; fails=$((fails + 1))
	fi
done
[ "$count" -gt 0 ] || { echo "FAIL no fuzz target found in $srcdir/fuzz"; status=1; fails=$((fails + 1)); }
# A summary in Check's words, so that CI's summary lists this test too.
total=$((passes + fails))
echo "$((total > 0 ? passes * 100 / total : 0))%: Checks: $total, Failures: $fails, Errors: 0"
exit $status
