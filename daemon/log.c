/* log.c - stderr logging with sd-daemon priority prefixes (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level max_level = LOG_INFO;

void log_set_level(enum log_level max)
{
	max_level = max;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (lvl > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "<%d>memtraced: %s\n", (int)lvl, line);
}
