/*
 * xalloc_cjson.h - cJSON allocating through the xmalloc family.
 *
 * memtraced, memtracectl and the unit tests build cJSON trees everywhere,
 * and each cJSON_Create*, cJSON_Add* or cJSON_Print* call could return NULL
 * for want of memory. With these hooks installed cJSON allocates with xmalloc
 * instead, which aborts like the rest of the daemon and the client
 * (xalloc.h), so those calls never return NULL and callers check nothing but
 * what can really fail: cJSON_Parse* of bad input and cJSON_Get* lookups.
 *
 * The hooks are global to the process: install them once, at the top of
 * main, before any cJSON call and before any thread starts. Kept apart from
 * xalloc.c so that a program that links libcommon without using cJSON does
 * not need cJSON to link.
 */
#ifndef MEMTRACE_XALLOC_CJSON_H
#define MEMTRACE_XALLOC_CJSON_H

void xalloc_cjson_hooks(void);

#endif
