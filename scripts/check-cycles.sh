#!/bin/sh
# check-cycles.sh - report cycles of includes and calls between source files.
#
# Usage: scripts/check-cycles.sh [BUILD_DIR]
#
# Calls and includes must go one way between modules (STYLE.md, "No
# cycles"). A module is a source file without its extension, so daemon/jobs
# stands for daemon/jobs.c and daemon/jobs.h: a.c including b.h while b.c
# includes a.h is a cycle of modules even though no header includes itself.
#
# The include graph is read from the `#include "..."` lines of agent/,
# analysis/, client/, common/, daemon/ and proto/, resolved as the compiler
# does with the Makefile's -I list (the including file's folder, then
# common/, proto/ and analysis/). With a BUILD_DIR, the call graph is read
# from its object files with nm: an object that leaves a symbol undefined
# depends on the object that defines it. Objects built from one source for
# several programs count as that one source.
#
# Every cycle is printed as its strongly connected component, one line per
# component. The exit status is 0 without cycles, 1 with some, 2 on usage
# errors.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-}
if [ -n "$build" ] && [ ! -d "$build" ]; then
	echo "check-cycles.sh: no build directory $build" >&2
	exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Edges "from to" between modules, one a line; reads them on stdin and
# prints each strongly connected component of more than one module
# (Tarjan's algorithm, iteratively: awk has no local arrays for recursion).
components() {
	awk '
	$1 != $2 {
		if (!(($1, $2) in seen)) {
			seen[$1, $2] = 1
			adj[$1, ++deg[$1]] = $2
		}
		node[$1] = 1
		node[$2] = 1
	}
	END {
		n = 0; sp = 0; found = 0
		for (v in node) {
			if (v in index_of)
				continue
			# an explicit call stack of (vertex, next edge)
			cs = 1; cv[1] = v; ce[1] = 0
			index_of[v] = low[v] = n++; stack[++sp] = v; on[v] = 1
			while (cs > 0) {
				u = cv[cs]
				if (ce[cs] < deg[u]) {
					w = adj[u, ++ce[cs]]
					if (!(w in index_of)) {
						index_of[w] = low[w] = n++
						stack[++sp] = w; on[w] = 1
						cv[++cs] = w; ce[cs] = 0
					} else if (on[w] && index_of[w] < low[u]) {
						low[u] = index_of[w]
					}
					continue
				}
				if (low[u] == index_of[u]) {
					line = ""; k = 0
					do {
						w = stack[sp--]; on[w] = 0
						line = w (k++ ? " " : "") line
					} while (w != u)
					if (k > 1) {
						print line
						found = 1
					}
				}
				cs--
				if (cs > 0 && low[u] < low[cv[cs]])
					low[cv[cs]] = low[u]
			}
		}
		exit found
	}'
}

# ---- includes ----
cd "$top"
for f in $(find agent analysis client common daemon proto -name '*.[ch]' | sort); do
	dir=$(dirname "$f")
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
	while read -r inc; do
		for cand in "$dir/$inc" "$inc" "common/$inc" "proto/$inc" "analysis/$inc"; do
			if [ -f "$cand" ]; then
				echo "${f%.*} $(echo "${cand%.*}" | sed 's|^\./||')"
				break
			fi
		done
	done
done >"$tmp/includes"

status=0
if ! components <"$tmp/includes" >"$tmp/include-cycles"; then
	echo "include cycles between modules:"
	sed 's/^/  /' "$tmp/include-cycles"
	status=1
else
	echo "includes: no cycles ($(wc -l <"$tmp/includes") include lines)"
fi

# ---- calls ----
[ -n "$build" ] || exit $status
cd "$build"
# "source symbol" for what each object defines and leaves undefined. The
# object daemon/.libs/libmemtraced_la-jobs.o (or daemon/memtraced-main.o)
# was built from daemon/jobs.c (daemon/main.c).
find agent analysis client common daemon proto -name '*.o' 2>/dev/null | sort |
while read -r o; do
	base=$(basename "$o" .o)
	dir=$(dirname "$o" | sed 's|/\.libs$||')
	# a per-target object is named TARGET-SOURCE.o
	if [ -f "$top/$dir/$base.c" ]; then src=$dir/$base; else src=$dir/${base#*-}; fi
	nm -g --defined-only "$o" | awk -v s="$src" 'NF == 3 { print s, $3 }' >>"$tmp/defs"
	nm -u "$o" | awk -v s="$src" '{ print s, $NF }' >>"$tmp/uses"
done
[ -s "$tmp/defs" ] || {
	echo "check-cycles.sh: no object files in $build (build it first)" >&2
	exit 2
}
awk 'NR == FNR { def[$2] = $1; next } ($2 in def) { print $1, def[$2] }' \
	"$tmp/defs" "$tmp/uses" | sort -u >"$tmp/calls"
if ! components <"$tmp/calls" >"$tmp/call-cycles"; then
	echo "call cycles between modules:"
	sed 's/^/  /' "$tmp/call-cycles"
	status=1
else
	echo "calls: no cycles ($(wc -l <"$tmp/calls") module dependencies)"
fi
exit $status
