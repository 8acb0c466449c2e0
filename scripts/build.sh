#!/bin/sh
# Configures and builds memtrace in DIR (default build/) with extra configure
# arguments; reconfigures only when needed.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/build}
shift || true
cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ]; then
	"$top/configure" "$@" >/dev/null
fi
make -j"$(nproc)" >/dev/null
