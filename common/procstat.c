/* procstat.c - the fields of /proc/PID/stat (see procstat.h). */
#include "procstat.h"

#include <stdio.h>
#include <string.h>

int procstat_read(pid_t pid, struct procstat *out)
{
	char path[64], buf[1024];
	unsigned long long start = 0;
	size_t n;
	FILE *f;

	if (pid == 0)
		snprintf(path, sizeof path, "/proc/self/stat");
	else
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command may contain spaces and parentheses: field 3 comes
	 * after its last ')'. */
	const char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1,
	                        " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
	                        "%*d %*d %*d %llu %lu %ld",
	                        &out->utime, &out->stime, &start, &out->vsize, &out->rss) != 5)
		return -1;
	out->start_time = start;
	return 0;
}

uint64_t procstat_start_time(pid_t pid)
{
	struct procstat st;

	return procstat_read(pid, &st) == 0 ? st.start_time : 0;
}
