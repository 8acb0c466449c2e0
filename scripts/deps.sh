#!/bin/sh
# Installs the Debian 12 packages memtrace needs to build; with "test", also
# what the test suite drives (a real Prometheus and promtool, systemd-analyze
# and man for the unit checks, jemalloc for the test of an allocator preloaded
# before the agent, Go for the test of a cgo program that ends with os.Exit,
# make and strace for the test of a traced make that counts its processes,
# headless Chromium for the tests of the pages memtrace writes, binutils'
# objcopy for the tests of stripped programs with separate debug files, curl
# and iproute2 for the docs' examples that tests/docs/examples.sh runs);
# with "bench", what the benchmarks compare with (heaptrack, redis).
set -e
pkgs="build-essential autoconf automake libtool pkg-config \
libuv1-dev libcjson-dev libsqlite3-dev check libunwind-dev libdw-dev libelf-dev \
libmicrohttpd-dev zlib1g-dev"
if [ "${1:-}" = bench ]; then
	pkgs="$pkgs heaptrack redis-server redis-tools"
fi
if [ "${1:-}" = test ]; then
	pkgs="$pkgs prometheus systemd man-db mandoc binutils clang-format clang libclang-rt-14-dev libjemalloc2 golang-go make strace chromium curl iproute2"
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "memtrace: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing >/dev/null
fi
