module memtrace/tests/progs/gocgo

go 1.19
