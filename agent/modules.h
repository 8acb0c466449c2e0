/*
 * modules.h - the traced process's loaded objects, as the daemon needs them.
 *
 * The agent never symbolizes. It reports each loaded object's path, load
 * bias, address range and GNU build-id (read from the PT_NOTE segment already
 * in memory, so no file is opened), and the daemon symbolizes remotely.
 * dl_iterate_phdr's adds/subs counters tell when dlopen or dlclose changed
 * the set; the sender then sends the list again. Called from the constructor
 * and the sender thread only, never from a hook.
 */
#ifndef MEMTRACE_AGENT_MODULES_H
#define MEMTRACE_AGENT_MODULES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Finds the agent's own text range (g_self_lo, g_self_hi). */
void modules_find_self(void);
/* 1 if objects were loaded or unloaded since the last modules_encode. */
int modules_changed(void);
/* Appends one MODULE frame per loaded object to buf; returns the bytes
 * written. Objects that do not fit are left out (and 0 stays possible). */
size_t modules_encode(uint8_t *buf, size_t cap);

#endif
