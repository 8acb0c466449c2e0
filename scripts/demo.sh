#!/bin/sh
# The main job: install what is needed, build, start memtraced, run an example
# program traced, and print what it holds while it runs and when it ends.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/deps.sh"
sh "$top/scripts/build.sh" "$top/build"
cd "$top/build"
make examples >/dev/null
rt=$(mktemp -d /tmp/memtrace-demo.XXXXXX)
export MEMTRACE_RUNTIME_DIR="$rt" MEMTRACE_STATE_DIR="$rt/state"
./daemon/memtraced 2>"$rt/memtraced.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$rt"' EXIT
i=0
while [ ! -S "$rt/control.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -S "$rt/control.sock" ]; then
	echo "memtraced did not start; its log:" >&2
	cat "$rt/memtraced.log" >&2
	exit 1
fi
ctl=./client/memtracectl
$ctl run -- ./examples/leaky 4 &
prog=$!
sleep 2
pid=$($ctl list | sed -n 's/.*"pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
echo "== memtracectl top --pid $pid --table (while leaky runs)"
$ctl --table top --pid "$pid" --limit 5
a=$($ctl snapshot --pid "$pid" | sed -n 's/.*"id":[[:space:]]*\([0-9][0-9]*\).*/\1/p')
sleep 1
b=$($ctl snapshot --pid "$pid" | sed -n 's/.*"id":[[:space:]]*\([0-9][0-9]*\).*/\1/p')
echo "== memtracectl compare $a $b --table (what grew in one second)"
$ctl --table compare "$a" "$b" --limit 3
echo "== memtracectl stats --pid $pid"
$ctl stats --pid "$pid"
echo "== memtracectl top --pid $pid --key traceback --limit 1"
$ctl top --pid "$pid" --key traceback --limit 1
wait $prog
echo "== after exit: memtracectl top --pid $pid --table (what it still held: its leaks and cache)"
$ctl --table top --pid "$pid" --limit 5
