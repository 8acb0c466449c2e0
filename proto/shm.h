/*
 * shm.h - the memory the agent shares with memtraced: one memfd per traced
 * process image, holding its event rings and its stack table.
 *
 * The agent creates the memfd when tracing starts, sizes it (SHM_SIZE,
 * sparse: only what is written takes memory), seals it against shrinking and
 * growing, maps it shared and passes the descriptor to the daemon with HELLO
 * (SCM_RIGHTS). From then on every event goes into the memory, never into
 * the socket: the daemon reads the rings itself, on its timer, when the
 * agent says a ring is filling (WAKE), before it answers a query, and once
 * more after the process is gone (its socket closed), so what a process
 * recorded reaches the daemon however it ended: exit, _exit, exit_group, a
 * signal, SIGKILL, the OOM killer. No thread of the process has to survive.
 *
 * This header is the single definition of the layout; PROTOCOL.md describes
 * it for people. Offsets are fixed constants (the daemon never takes a size
 * or offset from the memory), integers are native (the two ends are on one
 * host).
 *
 * To the daemon, everything in the memory is hostile: another user's process
 * can write anything into it at any moment. The daemon copies the header,
 * the records and the stacks out with pread (which never faults and never
 * allocates the memfd's holes) and validates the copy; through its mapping
 * it reads each ring's control fields (head, tail, pending, waiters: once
 * each, atomically) and writes only the consumer's (tail, wake_sent,
 * tail_futex). The memfd must carry F_SEAL_SHRINK and
 * F_SEAL_GROW and live on tmpfs (not hugetlbfs), so that no access can fault
 * with SIGBUS.
 */
#ifndef MEMTRACE_PROTO_SHM_H
#define MEMTRACE_PROTO_SHM_H

#include <stdint.h>

#define SHM_MAGIC     UINT64_C(0x314d48534543544d) /* "MTCESHM1" */
#define SHM_RING_CAP  131072u                      /* records per ring, a power of two */
#define SHM_NRINGS    1024u                        /* rings: threads recording at once */
#define SHM_STACK_CAP (1u << 20)                   /* stack ids 1 .. SHM_STACK_CAP */
#define SHM_ARENA     (UINT64_C(512) << 20)        /* bytes of stack entries */

/* One event record: 32 bytes. seq_kind is seq << PROTO_EV_KIND_BITS | kind
 * (proto.h); size and stack are 0 for a free. */
struct shm_ev {
	uint64_t seq_kind;
	uint64_t addr;
	uint64_t size;
	uint32_t stack;
	uint32_t pad;
};

/*
 * One ring: written by one thread of the process (the producer: head, the
 * records, pending), read by the daemon (the consumer: tail). Record i
 * (head > i >= tail) is ev[i % SHM_RING_CAP]; head - tail <= SHM_RING_CAP.
 * `pending` is a lower bound of a sequence number the thread has taken but
 * whose record is not in the ring yet (UINT64_MAX: none), so the daemon never
 * merges past a record still in flight (see the watermark in PROTOCOL.md).
 * A producer that finds the ring full in lossless mode waits on tail_futex
 * (a shared futex), counted in `waiters`; the daemon bumps it and wakes them
 * after it moved tail.
 */
struct shm_ring {
	_Alignas(64) _Atomic uint64_t head;
	_Atomic uint32_t wake_sent; /* producer: WAKE asked for since the last drain */
	_Alignas(64) _Atomic uint64_t tail;
	_Atomic uint32_t tail_futex;
	_Atomic uint32_t waiters;
	_Alignas(64) _Atomic uint64_t pending;
	_Atomic uint32_t state; /* agent's own bookkeeping (enum ring_state) */
	uint32_t tid;
	_Alignas(64) struct shm_ev ev[SHM_RING_CAP];
};

/*
 * The first page. `seq` is the process's next sequence number (every record
 * numbered below it has been taken); `nrings` the rings handed out so far
 * (ring slots 0 .. nrings-1 may hold records). `lost` counts every record
 * the agent could not write (drop mode, no ring free, or lossless mode after
 * it stopped waiting): `lost_allocs` of them allocations, of `lost_bytes`
 * bytes in all, `lost_frees` frees, the rest FORK marks. `nostack` counts
 * events recorded without a stack (table full). `gave_up` is 1 once
 * lossless mode stopped waiting for the daemon (MEMTRACE_BLOCK_TIMEOUT) and
 * drops what does not fit from then on. `exiting` is set when the process
 * runs its exit handlers (a clean exit); a process that dies without it was
 * killed or called _exit.
 */
struct shm_header {
	uint64_t magic;
	uint32_t version; /* PROTO_VERSION */
	uint32_t pad;
	_Alignas(64) _Atomic uint64_t seq;
	_Alignas(64) _Atomic uint64_t lost;
	_Atomic uint64_t nostack;
	_Atomic uint32_t nrings;
	_Atomic uint32_t exiting;
	_Atomic uint64_t lost_allocs;
	_Atomic uint64_t lost_bytes;
	_Atomic uint64_t lost_frees;
	_Atomic uint32_t gave_up;
};

/*
 * The stack table. Stack id i (1 .. SHM_STACK_CAP) is ready when
 * states[i] == SHM_STACK_READY; its entry is at arena + offsets[i]: a
 * struct shm_stack followed by nframes u64 return addresses, most recent
 * call first. Entries are written once, before the id is used in a record.
 */
enum { SHM_STACK_PENDING = 0, SHM_STACK_READY = 1, SHM_STACK_DEAD = 2 };

struct shm_stack {
	uint64_t hash;
	uint32_t nframes; /* 1 .. PROTO_MAX_FRAMES */
	uint32_t pad;
};

#define SHM_PAGE        UINT64_C(4096)
#define SHM_ALIGN(x)    (((x) + SHM_PAGE - 1) & ~(SHM_PAGE - 1))
#define SHM_OFF_OFFSETS SHM_PAGE
#define SHM_OFF_STATES  SHM_ALIGN(SHM_OFF_OFFSETS + 8 * ((uint64_t)SHM_STACK_CAP + 1))
#define SHM_OFF_ARENA   SHM_ALIGN(SHM_OFF_STATES + (uint64_t)SHM_STACK_CAP + 1)
#define SHM_OFF_RINGS   (SHM_OFF_ARENA + SHM_ARENA)
#define SHM_SIZE        (SHM_OFF_RINGS + (uint64_t)SHM_NRINGS * sizeof(struct shm_ring))
#define SHM_OFF_RING(i) (SHM_OFF_RINGS + (uint64_t)(i) * sizeof(struct shm_ring))

#endif
