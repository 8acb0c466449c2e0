/*
 * xalloc.h - allocation for the daemon and the client.
 *
 * Out of memory in memtraced or memtracectl is not recoverable in any useful
 * way, so these abort with a message instead of returning NULL. The agent
 * never uses them (it must not allocate through what it interposes) and
 * neither does proto/ (it returns -ENOMEM).
 */
#ifndef MEMTRACE_XALLOC_H
#define MEMTRACE_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* a copy of n bytes at p */
void *xmemdup(const void *p, size_t n);
/* printf into a new string */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
