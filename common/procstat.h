/*
 * procstat.h - the fields memtrace reads from /proc/PID/stat.
 *
 * The daemon names a traced process by its pid and its start time (a pid
 * alone is reused), memtracectl run asks the daemon for a session of its
 * child's very start time, and memtraced reports its own CPU, memory and
 * start under the Prometheus process_* names: all from one parse of the
 * same line, whose second field (the command, in parentheses) may itself
 * hold spaces and parentheses, so fields are counted after its last ')'.
 * The agent reads its own with raw system calls (agent/lineage.c) and does
 * not use this.
 */
#ifndef MEMTRACE_PROCSTAT_H
#define MEMTRACE_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct procstat {
	unsigned long utime, stime; /* fields 14, 15: clock ticks of CPU */
	uint64_t start_time;        /* field 22: clock ticks since boot */
	unsigned long vsize;        /* field 23: bytes of virtual memory */
	long rss;                   /* field 24: resident pages */
};

/* Reads /proc/PID/stat (pid 0: /proc/self/stat). 0, or -1 when the file
 * cannot be read or parsed (the process is gone, or never was). */
int procstat_read(pid_t pid, struct procstat *out);

/* procstat_read's start_time, or 0. */
uint64_t procstat_start_time(pid_t pid);

#endif
