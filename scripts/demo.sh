#!/bin/sh
# The main job: install what is needed, build, install memtrace (to
# /usr/local: memtraced, memtracectl, the agent, the man pages), start
# memtraced, run an example program traced, and print what it holds while it
# runs and when it ends.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/deps.sh"
sh "$top/scripts/build.sh" "$top/build"
cd "$top/build"
make install >/dev/null
make examples >/dev/null
# From here on, what a shell finds on PATH: the installed programs.
PATH=/usr/local/sbin:/usr/local/bin:$PATH
rt=$(mktemp -d /tmp/memtrace-demo.XXXXXX)
export MEMTRACE_RUNTIME_DIR="$rt" MEMTRACE_STATE_DIR="$rt/state"
memtraced 2>"$rt/memtraced.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$rt"' EXIT
i=0
while [ ! -S "$rt/control.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -S "$rt/control.sock" ]; then
	echo "memtraced did not start; its log:" >&2
	cat "$rt/memtraced.log" >&2
	exit 1
fi
memtracectl run --pid-file "$rt/leaky.pid" -- ./examples/leaky 4 &
prog=$!
until [ -s "$rt/leaky.pid" ]; do sleep 0.1; done
pid=$(cat "$rt/leaky.pid")
sleep 2
echo "== memtracectl top --pid $pid --table (while leaky runs)"
memtracectl --table top --pid "$pid" --limit 5
a=$(memtracectl snapshot --pid "$pid" | sed -n 's/.*"id":[[:space:]]*\([0-9][0-9]*\).*/\1/p')
sleep 1
b=$(memtracectl snapshot --pid "$pid" | sed -n 's/.*"id":[[:space:]]*\([0-9][0-9]*\).*/\1/p')
echo "== memtracectl compare $a $b --table (what grew in one second)"
memtracectl --table compare "$a" "$b" --limit 3
echo "== memtracectl stats --pid $pid"
memtracectl stats --pid "$pid"
echo "== memtracectl top --pid $pid --key traceback --limit 1"
memtracectl top --pid "$pid" --key traceback --limit 1
wait $prog
echo "== after exit: memtracectl top --pid $pid --table (what it still held: its leaks and cache)"
memtracectl --table top --pid "$pid" --limit 5
echo "== installed: $(command -v memtraced), $(command -v memtracectl), $(memtracectl --version);"
echo "   the agent /usr/local/lib/memtrace/libmemtrace.so; man memtracectl, man memtraced, man libmemtrace"
