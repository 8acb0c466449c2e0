#!/bin/sh
# man_pages.sh - the man pages as a person reads them.
#
# Pinned: each page of man/ renders at 80 columns without a single warning
# of man --warnings (groff's: a line it cannot adjust, a bad request),
# mandoc -T lint -W style says nothing, lexgrog finds its NAME line; and
# memtracectl(1), rendered, has an entry for every command that
# `memtracectl --help` lists, each at the start of its own line.
srcdir=${srcdir:-.}
build=${MEMTRACE_BUILDDIR:-.}
status=0
passes=0
fails=0

check() { # what, output (empty: pass)
	if [ -z "$2" ]; then
		passes=$((passes + 1))
	else
		echo "FAIL $1:"
		echo "$2" | sed 's/^/    /'
		fails=$((fails + 1))
		status=1
	fi
}

for tool in man mandoc lexgrog; do
	command -v "$tool" >/dev/null || { echo "FAIL $tool is missing (sh scripts/deps.sh test)"; exit 1; }
done
n=0
for page in "$srcdir"/man/*.[1-8]; do
	n=$((n + 1))
	name=$(basename "$page")
	check "$name: man --warnings" "$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)"
	check "$name: mandoc -T lint" "$(mandoc -T lint -W style "$page" 2>&1)"
	check "$name: lexgrog" "$(lexgrog "$page" >/dev/null 2>&1 || echo "no NAME line lexgrog can read")"
done
[ "$n" -gt 0 ] || check "man pages" "none found in $srcdir/man"

ctl="$build/client/memtracectl"
page=$(MANWIDTH=80 LC_ALL=C.UTF-8 man -E UTF-8 -l "$srcdir/man/memtracectl.1" 2>/dev/null)
cmds=$("$ctl" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 && $1 != "Commands:" { print $1 }')
[ -n "$cmds" ] || check "memtracectl --help" "lists no command"
for cmd in $cmds; do
	missing=$(printf '%s\n' "$page" | grep -q "^       $cmd\( \|$\)" || echo "no entry for '$cmd'")
	check "memtracectl.1: $cmd" "$missing"
done

total=$((passes + fails))
# A summary in Check's words, so that CI's summary lists this test too.
echo "$((total > 0 ? passes * 100 / total : 0))%: Checks: $total, Failures: $fails, Errors: 0"
exit $status
