/*
 * log.h - the daemon's one place to speak: lines on stderr, systemd style.
 *
 * Each line starts with a sd-daemon priority prefix ("<3>" error, "<4>"
 * warning, "<6>" info, "<7>" debug) that journald turns into a priority and
 * that a terminal shows harmlessly. Library modules never log; they return
 * errors, and the daemon's callers log them here with the reason.
 */
#ifndef MEMTRACE_LOG_H
#define MEMTRACE_LOG_H

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };

void log_set_level(enum log_level max);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
