/*
 * paths.h - where memtrace's sockets and state live.
 *
 * The daemon, the agent and the client must agree on the runtime directory
 * without talking to each other, so the rule lives here, once:
 * MEMTRACE_RUNTIME_DIR (resp. MEMTRACE_STATE_DIR) wins; otherwise root uses
 * /run/memtrace and /var/lib/memtrace, everybody else $XDG_RUNTIME_DIR/memtrace
 * (else /tmp/memtrace-$UID) and $XDG_STATE_HOME/memtrace (else
 * ~/.local/state/memtrace). Clients and agents of ordinary users also try the
 * system daemon's /run/memtrace when their own directory has no socket.
 *
 * Everything writes into caller buffers and never allocates: the agent calls
 * this from its constructor, possibly inside malloc. It reads the environment,
 * so call it at start-up, never on a hot path. Returns 0 or -ENAMETOOLONG.
 */
#ifndef MEMTRACE_PATHS_H
#define MEMTRACE_PATHS_H

#include <stddef.h>

#define PATHS_SYSTEM_RUNTIME_DIR "/run/memtrace"
#define PATHS_SYSTEM_STATE_DIR   "/var/lib/memtrace"
#define PATHS_AGENT_SOCK         "agent.sock"
#define PATHS_CONTROL_SOCK       "control.sock"

int paths_runtime_dir(char *buf, size_t cap);
int paths_state_dir(char *buf, size_t cap);
/* dir + "/" + name */
int paths_join(char *buf, size_t cap, const char *dir, const char *name);

#endif
