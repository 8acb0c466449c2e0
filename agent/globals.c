/* globals.c - definitions of the agent state declared in globals.h. */
#include "globals.h"

_Thread_local struct agent_tls agent_tls __attribute__((tls_model("initial-exec")));

_Atomic int g_state = AGENT_UNINIT;
struct agent_config g_cfg;
pid_t g_pid;
pid_t g_parent_pid;
uint64_t g_fork_seq;
_Atomic int g_connecting;
bool g_bypassed;
bool g_late;
bool g_attached;
_Atomic uint32_t g_epoch;
uintptr_t g_self_lo, g_self_hi;
struct agent_real g_real;
_Atomic int g_real_ready;
