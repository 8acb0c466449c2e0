#!/bin/sh
# Installs the Debian 12 packages memtrace needs to build, test and benchmark.
set -e
pkgs="build-essential autoconf automake libtool pkg-config \
libuv1-dev libcjson-dev libsqlite3-dev check libunwind-dev libdw-dev libelf-dev \
libmicrohttpd-dev \
prometheus systemd man-db"
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
