#!/bin/sh
# The whole test suite: install what is needed, build with -Werror, run every
# unit and end-to-end test (tests/unit/run_unit, the fuzz corpora, the man
# pages, every example of the docs (tests/docs/examples.sh), tests/e2e/e2e_live,
# e2e_snapshots, e2e_service, e2e_hostile, e2e_limits),
# build the fuzz targets when clang is there,
# then the unit tests again under ASan+UBSan, then make distcheck. Exits
# non-zero if anything fails; ends with Check's summary lines.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
status=0
sh "$top/scripts/deps.sh" test || exit 1
cd "$top"
autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; exit 1; }

run() { # dir, make target, configure args...
	dir=$1 target=$2
	shift 2
	rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" &&
		"$top/configure" --enable-werror "$@" >configure.out 2>&1 &&
		make -j"$(nproc)" >make.out 2>&1 &&
		make -j1 $target
	rc=$?
	cd "$top"
	return $rc
}

echo "== clang-format (the committed .clang-format)"
if command -v clang-format >/dev/null 2>&1; then
	clang-format --dry-run --Werror $(git ls-files '*.c' '*.h' '*.cc' 2>/dev/null || find . -name '*.[ch]') ||
		{ echo "clang-format: files differ from .clang-format"; status=1; }
else
	echo "clang-format is not installed"; status=1
fi
echo "== build with -Werror and run every test"
run "$top/build-test" check || status=1
echo "== no cycles of includes or calls between modules"
sh "$top/scripts/check-cycles.sh" "$top/build-test" || status=1
echo "== fuzz targets (clang, libFuzzer): build, and run each for 10 s"
(cd "$top/build-test" && make fuzz-run FUZZ_TIME=10 >fuzz.out 2>&1) ||
	{ echo "make fuzz-run failed:"; tail -40 "$top/build-test/fuzz.out"; status=1; }
echo "== unit tests under ASan+UBSan"
run "$top/build-asan" "check TESTS=tests/unit/run_unit" --enable-sanitize=address,undefined || status=1
echo "== make distcheck"
(cd "$top/build-test" && make distcheck >distcheck.out 2>&1) || { echo "make distcheck failed:"; tail -40 "$top/build-test/distcheck.out"; status=1; }

echo "== summary"
for f in "$top"/build-test/tests/*/*.log "$top"/build-asan/tests/*/*.log; do
	[ -f "$f" ] || continue
	case "$f" in */test-suite.log) continue ;; esac
	line=$(grep -E '^[0-9]+%: Checks: ' "$f" | tail -n 1)
	echo "${f#$top/}: ${line:-no Check summary}"
	[ -n "$line" ] || status=1
done
[ $status -eq 0 ] && echo "memtrace: all tests passed" || echo "memtrace: TESTS FAILED"
exit $status
