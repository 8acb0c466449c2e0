/* cfi.c - .eh_frame rules compiled per address, a per-thread cache (see cfi.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cfi.h"

#include <limits.h>
#include <link.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__)

/* DWARF register numbers of x86-64 (the psABI's table). */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA  16

/* Pointer encodings of .eh_frame (DW_EH_PE_*, LSB's "Exception Frames"). */
#define PE_OMIT    0xff
#define PE_FORMAT  0x0f
#define PE_APPLY   0x70
#define PE_ABSPTR  0x00
#define PE_ULEB128 0x01
#define PE_UDATA2  0x02
#define PE_UDATA4  0x03
#define PE_UDATA8  0x04
#define PE_SLEB128 0x09
#define PE_SDATA2  0x0a
#define PE_SDATA4  0x0b
#define PE_SDATA8  0x0c
#define PE_PCREL   0x10
#define PE_DATAREL 0x30

/* Entries of a thread's table: 64 KiB, direct-mapped by address. */
#define CACHE_BITS 12
#define CACHE_N    (1u << CACHE_BITS)

/* How many DW_CFA_remember_state may nest. */
#define MAX_STATES 8

enum rule_kind {
	RULE_EMPTY = 0, /* a free cache entry */
	RULE_STEP,      /* the caller's registers follow from this frame's */
	RULE_END,       /* the return address is undefined: the outermost frame */
	RULE_NONE,      /* something this walker does not handle */
};

struct rule {
	int32_t cfa_off; /* the CFA is (cfa_rbp ? RBP : RSP) + cfa_off */
	int16_t rbp_off; /* RBP was saved at CFA + rbp_off; 0: RBP is unchanged */
	uint8_t cfa_rbp;
	uint8_t kind; /* enum rule_kind */
};

struct entry {
	uintptr_t addr;
	struct rule r;
};

/* A frame of a walk: its registers, and how the step from it went. The
 * step from F[i] read the return address at F[i+1].sp - 8 (the CFA is the
 * caller's SP) and, when rbp_off is not 0, the caller's RBP at
 * F[i+1].sp + rbp_off. */
struct frame {
	uintptr_t ip, sp, bp;
	int16_t rbp_off;
	bool cfa_rbp; /* the step read RBP for the CFA */
	bool bp_dep;  /* the rest of the walk reads this frame's RBP */
};

/* Frames a walk may take: AGENT_MAX_FRAMES, the agent's own, the last. */
#define MAX_STEPS 272

/* The walk memo: MEMO_SETS sets of 2 whole walks, each with the stack id it
 * was interned as and the stack slots it read (at most MEMO_CHECKS). */
#define MEMO_SETS   32
#define MEMO_CHECKS 72

/* A remembered walk. It was a function of its start (ip, sp, and bp where
 * the walk read it) and of the words it read: chk[i].val was read at
 * chk[i].at, an address at or above sp (a hit has the same sp, so the same
 * addresses). The key comes first, so that a probe reads one cache line
 * before the checks. */
struct memo {
	uintptr_t ip; /* 0: empty (a start's ip, a return address, never is) */
	uintptr_t sp;
	uintptr_t bp;      /* the start's RBP, masked with bp_mask */
	uintptr_t bp_mask; /* all ones when the walk read the start's RBP, else 0 */
	uint32_t id;
	int16_t max;
	uint8_t nchecks;
	struct memo_chk {
		uintptr_t at, val;
	} chk[MEMO_CHECKS];
};

struct cfi_cache {
	unsigned gen; /* g_gen when the table and the last walk were made */
	struct entry e[CACHE_N];
	/* The thread's last walk, outermost frame first: rev[m] is F[N - m],
	 * so that the frames two walks share keep their place. */
	struct frame rev[MAX_STEPS + 1];
	int N;                           /* the index of its last frame; -1: no walk */
	int last_max;                    /* the max it was asked for */
	bool last_end;                   /* it ended at an undefined return address, not at max */
	struct frame tmp[MAX_STEPS + 1]; /* the frames a walk makes */
	uint8_t mru[MEMO_SETS];          /* the way of each set used last */
	struct memo memo[MEMO_SETS][2];
};

/* Bumped by cfi_forget: a table of an older generation is stale. */
static _Atomic unsigned g_gen = 1;

/* ---- reading .eh_frame ---- */

struct cursor {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t get_uleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (c->p < c->end) {
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if ((b & 0x80) == 0)
			return v;
	}
	c->bad = true;
	return 0;
}

static int64_t get_sleb(struct cursor *c)
{
	int64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0x80;

	while (c->p < c->end && (b & 0x80) != 0) {
		b = *c->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
	}
	if ((b & 0x80) != 0) {
		c->bad = true;
		return 0;
	}
	if (shift < 64 && (b & 0x40) != 0)
		v |= (int64_t)(~(uint64_t)0 << shift);
	return v;
}

static uint64_t get_fixed(struct cursor *c, size_t n)
{
	uint64_t v = 0;

	if ((size_t)(c->end - c->p) < n) {
		c->bad = true;
		return 0;
	}
	memcpy(&v, c->p, n); /* little-endian */
	c->p += n;
	return v;
}

/* A pointer in encoding enc; datarel is the base of DW_EH_PE_datarel (the
 * .eh_frame_hdr section in that table). Indirect and other bases are not
 * emitted by the toolchains for what we read: refused. */
static uintptr_t get_encoded(struct cursor *c, uint8_t enc, uintptr_t datarel)
{
	uintptr_t at = (uintptr_t)c->p, v;

	switch (enc & PE_FORMAT) {
	case PE_ABSPTR:
	case PE_UDATA8:
	case PE_SDATA8:
		v = (uintptr_t)get_fixed(c, 8);
		break;
	case PE_UDATA2:
		v = (uintptr_t)get_fixed(c, 2);
		break;
	case PE_SDATA2:
		v = (uintptr_t)(intptr_t)(int16_t)get_fixed(c, 2);
		break;
	case PE_UDATA4:
		v = (uintptr_t)get_fixed(c, 4);
		break;
	case PE_SDATA4:
		v = (uintptr_t)(intptr_t)(int32_t)get_fixed(c, 4);
		break;
	case PE_ULEB128:
		v = (uintptr_t)get_uleb(c);
		break;
	case PE_SLEB128:
		v = (uintptr_t)get_sleb(c);
		break;
	default:
		c->bad = true;
		return 0;
	}
	switch (enc & PE_APPLY) {
	case 0:
		return v;
	case PE_PCREL:
		return v + at;
	case PE_DATAREL:
		return v + datarel;
	default:
		c->bad = true;
		return 0;
	}
}

/* ---- finding the FDE of an address ---- */

struct find {
	uintptr_t addr;
	const uint8_t *hdr; /* its object's .eh_frame_hdr */
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct find *f = data;
	const ElfW(Phdr) *eh = NULL;
	bool inside = false;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && f->addr >= lo && f->addr < lo + ph->p_memsz)
			inside = true;
		else if (ph->p_type == PT_GNU_EH_FRAME)
			eh = ph;
	}
	if (!inside)
		return 0;
	if (eh != NULL)
		f->hdr = (const uint8_t *)(info->dlpi_addr + eh->p_vaddr);
	return 1;
}

/* The FDE covering addr through the binary search table of .eh_frame_hdr,
 * or NULL. */
static const uint8_t *find_fde(uintptr_t addr)
{
	struct find f = {addr, NULL};
	struct cursor c;
	uintptr_t base, count;
	const int32_t *table;
	size_t lo, hi;

	dl_iterate_phdr(find_cb, &f);
	if (f.hdr == NULL || f.hdr[0] != 1)
		return NULL;
	base = (uintptr_t)f.hdr;
	c = (struct cursor){f.hdr + 4, f.hdr + 4 + 16, false};
	(void)get_encoded(&c, f.hdr[1], base); /* eh_frame_ptr */
	if (f.hdr[2] == PE_OMIT || f.hdr[3] != (PE_DATAREL | PE_SDATA4))
		return NULL;
	count = get_encoded(&c, f.hdr[2], base);
	if (c.bad || count == 0)
		return NULL;
	table = (const int32_t *)c.p;
	/* The last entry whose initial location is <= addr. */
	lo = 0;
	hi = count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (base + (intptr_t)table[2 * mid] <= addr)
			lo = mid;
		else
			hi = mid;
	}
	if (base + (intptr_t)table[2 * lo] > addr)
		return NULL;
	return (const uint8_t *)(base + (intptr_t)table[2 * lo + 1]);
}

/* ---- running the CFA program ---- */

enum reg_how { HOW_SAME = 0, HOW_OFFSET, HOW_UNDEFINED, HOW_OTHER };

struct row {
	uint64_t cfa_reg;
	int64_t cfa_off;
	bool cfa_expr;
	uint8_t rbp, ra; /* enum reg_how */
	int64_t rbp_off, ra_off;
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	bool has_aug_data;
	bool signal;
	struct cursor instr;
};

static void set_reg(struct row *r, uint64_t reg, uint8_t how, int64_t off)
{
	if (reg == REG_RBP) {
		r->rbp = how;
		r->rbp_off = off;
	} else if (reg == REG_RA) {
		r->ra = how;
		r->ra_off = off;
	}
}

static void restore_reg(struct row *r, const struct row *init, uint64_t reg)
{
	if (reg == REG_RBP) {
		r->rbp = init->rbp;
		r->rbp_off = init->rbp_off;
	} else if (reg == REG_RA) {
		r->ra = init->ra;
		r->ra_off = init->ra_off;
	}
}

/* Runs instructions from c over row r, starting at location loc, until a
 * row would begin past `until`. init is the CIE's row (DW_CFA_restore).
 * false for what this walker does not read. */
static bool run(struct cursor *c, const struct cie *ci, struct row *r, const struct row *init,
                uintptr_t loc, uintptr_t until)
{
	struct row saved[MAX_STATES];
	int nsaved = 0;

	while (c->p < c->end && !c->bad) {
		uint8_t op = *c->p++;
		uint64_t reg, delta = 0;
		int64_t off;

		switch (op >> 6) {
		case 1: /* DW_CFA_advance_loc */
			delta = (op & 0x3f) * ci->code_align;
			goto advance;
		case 2: /* DW_CFA_offset */
			off = (int64_t)get_uleb(c) * ci->data_align;
			set_reg(r, op & 0x3f, HOW_OFFSET, off);
			continue;
		case 3: /* DW_CFA_restore */
			restore_reg(r, init, op & 0x3f);
			continue;
		default:
			break;
		}
		switch (op) {
		case 0x00: /* DW_CFA_nop */
			continue;
		case 0x01: /* DW_CFA_set_loc */
			return false;
		case 0x02: /* DW_CFA_advance_loc1 */
			delta = get_fixed(c, 1) * ci->code_align;
			goto advance;
		case 0x03: /* DW_CFA_advance_loc2 */
			delta = get_fixed(c, 2) * ci->code_align;
			goto advance;
		case 0x04: /* DW_CFA_advance_loc4 */
			delta = get_fixed(c, 4) * ci->code_align;
			goto advance;
		case 0x05: /* DW_CFA_offset_extended */
			reg = get_uleb(c);
			off = (int64_t)get_uleb(c) * ci->data_align;
			set_reg(r, reg, HOW_OFFSET, off);
			continue;
		case 0x06: /* DW_CFA_restore_extended */
			restore_reg(r, init, get_uleb(c));
			continue;
		case 0x07: /* DW_CFA_undefined */
			set_reg(r, get_uleb(c), HOW_UNDEFINED, 0);
			continue;
		case 0x08: /* DW_CFA_same_value */
			set_reg(r, get_uleb(c), HOW_SAME, 0);
			continue;
		case 0x09: /* DW_CFA_register */
			reg = get_uleb(c);
			(void)get_uleb(c);
			set_reg(r, reg, HOW_OTHER, 0);
			continue;
		case 0x0a: /* DW_CFA_remember_state */
			if (nsaved == MAX_STATES)
				return false;
			saved[nsaved++] = *r;
			continue;
		case 0x0b: /* DW_CFA_restore_state */
			if (nsaved == 0)
				return false;
			*r = saved[--nsaved];
			continue;
		case 0x0c: /* DW_CFA_def_cfa */
			r->cfa_reg = get_uleb(c);
			r->cfa_off = (int64_t)get_uleb(c);
			r->cfa_expr = false;
			continue;
		case 0x0d: /* DW_CFA_def_cfa_register */
			r->cfa_reg = get_uleb(c);
			r->cfa_expr = false;
			continue;
		case 0x0e: /* DW_CFA_def_cfa_offset */
			r->cfa_off = (int64_t)get_uleb(c);
			continue;
		case 0x0f: /* DW_CFA_def_cfa_expression */
			r->cfa_expr = true;
			c->p += get_uleb(c);
			continue;
		case 0x10: /* DW_CFA_expression */
		case 0x16: /* DW_CFA_val_expression */
			reg = get_uleb(c);
			c->p += get_uleb(c);
			set_reg(r, reg, HOW_OTHER, 0);
			continue;
		case 0x11: /* DW_CFA_offset_extended_sf */
			reg = get_uleb(c);
			off = get_sleb(c) * ci->data_align;
			set_reg(r, reg, HOW_OFFSET, off);
			continue;
		case 0x12: /* DW_CFA_def_cfa_sf */
			r->cfa_reg = get_uleb(c);
			r->cfa_off = get_sleb(c) * ci->data_align;
			r->cfa_expr = false;
			continue;
		case 0x13: /* DW_CFA_def_cfa_offset_sf */
			r->cfa_off = get_sleb(c) * ci->data_align;
			continue;
		case 0x14: /* DW_CFA_val_offset */
		case 0x15: /* DW_CFA_val_offset_sf */
			reg = get_uleb(c);
			(void)(op == 0x14 ? (int64_t)get_uleb(c) : get_sleb(c));
			set_reg(r, reg, HOW_OTHER, 0);
			continue;
		case 0x2e: /* DW_CFA_GNU_args_size */
			(void)get_uleb(c);
			continue;
		case 0x2f: /* DW_CFA_GNU_negative_offset_extended */
			reg = get_uleb(c);
			off = -(int64_t)get_uleb(c) * ci->data_align;
			set_reg(r, reg, HOW_OFFSET, off);
			continue;
		default:
			return false;
		}
	advance:
		if (loc + delta > until)
			return !c->bad;
		loc += delta;
	}
	return !c->bad;
}

/* Reads the CIE at p (its length field). */
static bool read_cie(const uint8_t *p, struct cie *ci)
{
	uint32_t len;
	struct cursor c;
	const char *aug;
	uint8_t version;

	memcpy(&len, p, 4);
	if (len == 0 || len == 0xffffffffu)
		return false;
	c = (struct cursor){p + 4, p + 4 + len, false};
	if (get_fixed(&c, 4) != 0) /* a CIE's id */
		return false;
	version = (uint8_t)get_fixed(&c, 1);
	if (version != 1 && version != 3)
		return false;
	aug = (const char *)c.p;
	c.p += strnlen(aug, (size_t)(c.end - c.p)) + 1;
	if (c.p > c.end || (aug[0] != '\0' && aug[0] != 'z'))
		return false;
	memset(ci, 0, sizeof(*ci));
	ci->fde_enc = PE_ABSPTR;
	ci->code_align = get_uleb(&c);
	ci->data_align = get_sleb(&c);
	ci->ra_reg = version == 1 ? get_fixed(&c, 1) : get_uleb(&c);
	if (aug[0] == 'z') {
		uint64_t n = get_uleb(&c);
		const uint8_t *end = c.p + n;
		ci->has_aug_data = true;
		for (const char *a = aug + 1; *a != '\0' && !c.bad; a++) {
			switch (*a) {
			case 'R':
				ci->fde_enc = (uint8_t)get_fixed(&c, 1);
				break;
			case 'L':
				(void)get_fixed(&c, 1);
				break;
			case 'P': {
				uint8_t enc = (uint8_t)get_fixed(&c, 1);
				(void)get_encoded(&c, enc & 0x7f, 0);
				break;
			}
			case 'S':
				ci->signal = true;
				break;
			default:
				return false;
			}
		}
		if (c.bad || end > c.end)
			return false;
		c.p = end;
	}
	ci->instr = c;
	return !c.bad && ci->ra_reg == REG_RA;
}

/* The rule of the frame whose (adjusted) address is addr. */
static struct rule compile(uintptr_t addr)
{
	struct rule none = {0, 0, 0, RULE_NONE}, out = {0, 0, 0, RULE_STEP};
	const uint8_t *fde = find_fde(addr);
	struct cie ci;
	struct row init, row;
	struct cursor c;
	uint32_t len;
	int32_t cie_off;
	uintptr_t begin, range;

	if (fde == NULL)
		return none;
	memcpy(&len, fde, 4);
	memcpy(&cie_off, fde + 4, 4);
	if (len == 0 || len == 0xffffffffu || cie_off == 0)
		return none;
	if (!read_cie(fde + 4 - cie_off, &ci) || ci.signal)
		return none;
	c = (struct cursor){fde + 8, fde + 4 + len, false};
	begin = get_encoded(&c, ci.fde_enc, 0);
	range = get_encoded(&c, ci.fde_enc & PE_FORMAT, 0);
	if (c.bad || addr < begin || addr - begin >= range)
		return none;
	if (ci.has_aug_data)
		c.p += get_uleb(&c);
	memset(&init, 0, sizeof(init));
	init.cfa_reg = REG_RSP;
	if (!run(&ci.instr, &ci, &init, &init, begin, UINTPTR_MAX))
		return none;
	row = init;
	if (!run(&c, &ci, &row, &init, begin, addr))
		return none;
	if (row.ra == HOW_UNDEFINED) {
		out.kind = RULE_END;
		return out;
	}
	if (row.cfa_expr || (row.cfa_reg != REG_RSP && row.cfa_reg != REG_RBP) ||
	    row.cfa_off <= 0 || row.cfa_off > INT32_MAX || row.ra != HOW_OFFSET ||
	    row.ra_off != -8 || (row.rbp != HOW_SAME && row.rbp != HOW_OFFSET) ||
	    row.rbp_off < INT16_MIN || row.rbp_off > INT16_MAX ||
	    (row.rbp == HOW_OFFSET && row.rbp_off == 0))
		return none;
	out.cfa_off = (int32_t)row.cfa_off;
	out.cfa_rbp = row.cfa_reg == REG_RBP;
	out.rbp_off = row.rbp == HOW_OFFSET ? (int16_t)row.rbp_off : 0;
	return out;
}

/* ---- the walk ---- */

static struct cfi_cache *cache_get(struct cfi_cache **slot)
{
	struct cfi_cache *c = *slot;
	unsigned gen = atomic_load_explicit(&g_gen, memory_order_acquire);

	if (c == NULL) {
		void *m = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		c = m;
		c->gen = gen;
		c->N = -1;
		*slot = c;
	} else if (c->gen != gen) {
		memset(c->e, 0, sizeof(c->e));
		for (unsigned i = 0; i < MEMO_SETS; i++)
			c->memo[i][0].ip = c->memo[i][1].ip = 0;
		c->N = -1;
		c->gen = gen;
	}
	return c;
}

static inline struct rule lookup(struct cfi_cache *c, uintptr_t addr)
{
	struct entry *e = &c->e[(addr ^ (addr >> CACHE_BITS)) & (CACHE_N - 1)];

	if (e->addr != addr || e->r.kind == RULE_EMPTY) {
		e->r = compile(addr);
		e->addr = addr;
	}
	return e->r;
}

/* Whether the steps of the last walk from its frame rev[m] outwards would
 * be taken again: each read the same stack slots and found the same values
 * there. A walk is a function of a frame's registers and of what it reads,
 * so a frame equal to rev[m] whose reads are unchanged has the callers that
 * walk found. */
static bool still_valid(const struct cfi_cache *c, int m, int *bad)
{
	/* A step found changed fails every candidate outside it: the
	 * candidates of one walk come outward (m falls), so each step is
	 * checked at most once a walk, not once a candidate. */
	if (m >= *bad)
		return false;
	for (int x = m; x > 0; x--) {
		const struct frame *f = &c->rev[x], *up = &c->rev[x - 1];
		if (*(const uintptr_t *)(up->sp - 8) != up->ip ||
		    (f->rbp_off != 0 &&
		     *(const uintptr_t *)(up->sp + (intptr_t)f->rbp_off) != up->bp)) {
			*bad = x;
			return false;
		}
	}
	return true;
}

int cfi_backtrace(struct cfi_cache **cache, uintptr_t stack_lo, uintptr_t stack_hi,
                  const struct cfi_regs *start, uintptr_t *out, int max)
{
	struct cfi_cache *c = cache_get(cache);
	uintptr_t ip = start->ip, sp = start->sp, bp = start->bp;
	int k = 0, m, reused = 0, N, bad = INT_MAX;
	bool end = false, matched = false;

	if (c == NULL || stack_hi <= stack_lo || max < 1 || max > MAX_STEPS - 1 || sp < stack_lo ||
	    sp > stack_hi)
		return -1;
	if (c->last_max != max)
		c->N = -1;
	m = c->N;
	/* F[k] is (ip, sp, bp): a frame whose return address ip is the walk's
	 * output k. */
	for (;;) {
		struct frame *f = &c->tmp[k];

		f->ip = ip;
		f->sp = sp;
		f->bp = bp;
		f->rbp_off = 0;
		f->cfa_rbp = false;
		/* The last walk's frame at this SP, if any: its frames rise
		 * as ours do. Its RBP matters only if a later step reads it
		 * before it is restored; a walk that stopped at max is reused
		 * only as far as it went. */
		while (m >= 0 && c->rev[m].sp < sp)
			m--;
		if (m >= 0 && c->rev[m].sp == sp && c->rev[m].ip == ip &&
		    (c->rev[m].bp == bp || !c->rev[m].bp_dep) &&
		    (c->last_end || k + m + 1 >= max) && still_valid(c, m, &bad)) {
			reused = m + 1 < max - k ? m + 1 : max - k;
			for (int i = 0; i < reused; i++)
				out[k + i] = c->rev[m - i].ip;
			end = c->last_end && reused == m + 1;
			matched = true;
			break;
		}
		out[k] = ip;
		if (k + 1 == max)
			break;

		/* Inside the call instruction: a call may be the last
		 * instruction of a function whose rules then are not ours. */
		struct rule r = lookup(c, ip - 1);
		uintptr_t cfa;

		if (r.kind == RULE_END) {
			end = true;
			break;
		}
		if (r.kind != RULE_STEP)
			return -1;
		cfa = (r.cfa_rbp ? bp : sp) + (uintptr_t)(intptr_t)r.cfa_off;
		/* The caller's frame is above this one, on this thread's stack:
		 * every read is between this frame's SP and the stack's top,
		 * which is mapped (a walk on an alternate signal stack fails
		 * here and goes to libunwind). */
		if (cfa < sp + 8 || cfa > stack_hi)
			return -1;
		f->cfa_rbp = r.cfa_rbp;
		if (r.rbp_off != 0) {
			uintptr_t at = cfa + (uintptr_t)(intptr_t)r.rbp_off;
			if (at < sp || at + 8 > cfa)
				return -1;
			bp = *(const uintptr_t *)at;
			f->rbp_off = r.rbp_off;
		}
		ip = *(const uintptr_t *)(cfa - 8);
		sp = cfa;
		if (ip == 0)
			return -1;
		k++;
	}
	/* This walk becomes the next one's "last", outermost first. Frames
	 * shared with the last walk are in place already (F[k] is rev[m]); a
	 * reuse cut short by max moves them so that the walk's last frame is
	 * rev[0]. */
	if (matched) {
		int last = reused - 1; /* outputs past F[k] */
		if (last < m) {
			memmove(&c->rev[0], &c->rev[m - last],
			        (size_t)(last + 1) * sizeof(c->rev[0]));
			c->rev[0].bp_dep = false;
		}
		N = k + last;
		for (int i = 0; i < k; i++)
			c->rev[N - i] = c->tmp[i];
	} else {
		N = k;
		for (int i = 0; i <= k; i++)
			c->rev[N - i] = c->tmp[i];
		c->rev[0].bp_dep = false;
	}
	/* Which new frames' RBP the rest of the walk reads (shared frames
	 * keep what they had). */
	for (int x = N - k + 1; x <= N; x++) {
		struct frame *f = &c->rev[x];
		f->bp_dep = f->cfa_rbp || (f->rbp_off == 0 && c->rev[x - 1].bp_dep);
	}
	c->N = N;
	c->last_max = max;
	c->last_end = end;
	return matched ? k + reused : k + 1;
}

/* ---- the walk memo ---- */

static inline unsigned memo_set(uintptr_t ip, uintptr_t sp)
{
	uint64_t h = ((uint64_t)ip ^ ((uint64_t)sp << 17)) * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 59) & (MEMO_SETS - 1);
}

/* Whether remembered walk w holds for start: its key and every word it read.
 * The words are read from the start's frame up and the first that differs
 * ends the check: past a frame that is not the remembered one, nothing says
 * the next word is still there to read (a program may have protected a page
 * of its stack since). Every word is at or above the start's SP and below
 * the stack's top: the walk that made them checked so, from this SP. Two
 * words a turn: the count and the pointer move half as often. */
static inline bool memo_holds(const struct memo *w, const struct cfi_regs *start, int max)
{
	if (w->ip != start->ip || w->sp != start->sp || (start->bp & w->bp_mask) != w->bp ||
	    w->max != max)
		return false;
	const struct memo_chk *k = w->chk;
	unsigned n = w->nchecks;
	for (; n >= 2; n -= 2, k += 2)
		if (*(const uintptr_t *)k[0].at != k[0].val ||
		    *(const uintptr_t *)k[1].at != k[1].val)
			return false;
	return n == 0 || *(const uintptr_t *)k[0].at == k[0].val;
}

uint32_t cfi_recall(struct cfi_cache *c, const struct cfi_regs *start, int max)
{
	if (c == NULL || c->gen != atomic_load_explicit(&g_gen, memory_order_acquire) ||
	    start->ip == 0)
		return 0;
	unsigned s = memo_set(start->ip, start->sp);
	const struct memo *w = c->memo[s];
	if (memo_holds(&w[0], start, max)) {
		c->mru[s] = 0;
		return w[0].id;
	}
	if (memo_holds(&w[1], start, max)) {
		c->mru[s] = 1;
		return w[1].id;
	}
	return 0;
}

void cfi_unlearn(struct cfi_cache *c, const struct cfi_regs *start, int max)
{
	if (c == NULL || start->ip == 0)
		return;
	struct memo *w = c->memo[memo_set(start->ip, start->sp)];
	for (unsigned way = 0; way < 2; way++)
		if (memo_holds(&w[way], start, max))
			w[way].ip = 0; /* each that holds */
}

/* The words the step from F[k] = rev[x] to F[k+1] = rev[x - 1] read that
 * count: F[k+1]'s return address and, when rbp_off is set, its RBP when
 * the rest of the walk reads it. */
static inline unsigned step_reads(const struct frame *f, const struct frame *up)
{
	return f->rbp_off != 0 && up->bp_dep ? 2 : 1;
}

void cfi_remember(struct cfi_cache *c, uint32_t id)
{
	if (c == NULL || c->N < 0 || id == 0)
		return;
	const struct frame *f0 = &c->rev[c->N];
	unsigned s = memo_set(f0->ip, f0->sp), way = c->mru[s] ^ 1u, n = 0;

	/* A walk too deep to remember leaves the set as it was. */
	for (int x = c->N; x > 0; x--)
		n += step_reads(&c->rev[x], &c->rev[x - 1]);
	if (n > MEMO_CHECKS)
		return;
	if (c->memo[s][0].ip == 0)
		way = 0;
	struct memo *w = &c->memo[s][way];
	w->ip = 0;
	n = 0;
	for (int x = c->N; x > 0; x--) {
		const struct frame *f = &c->rev[x], *up = &c->rev[x - 1];
		uintptr_t at[2] = {up->sp - 8, up->sp + (uintptr_t)(intptr_t)f->rbp_off};
		uintptr_t val[2] = {up->ip, up->bp};
		for (unsigned r = 0; r < step_reads(f, up); r++) {
			/* memo_holds reads from the start's SP up; an entry
			 * keeps addresses, so no offset from SP has to fit. */
			if (at[r] < f0->sp)
				return;
			w->chk[n].at = at[r];
			w->chk[n++].val = val[r];
		}
	}
	w->sp = f0->sp;
	w->bp_mask = f0->bp_dep ? UINTPTR_MAX : 0;
	w->bp = f0->bp & w->bp_mask;
	w->max = (int16_t)c->last_max;
	w->nchecks = (uint8_t)n;
	w->id = id;
	w->ip = f0->ip; /* last: the entry is whole */
	c->mru[s] = (uint8_t)way;
}

void cfi_cache_free(struct cfi_cache *cache)
{
	if (cache != NULL)
		munmap(cache, sizeof(*cache));
}

void cfi_forget(void)
{
	atomic_fetch_add_explicit(&g_gen, 1, memory_order_acq_rel);
}

#else /* not x86-64: always libunwind */

int cfi_backtrace(struct cfi_cache **cache, uintptr_t stack_lo, uintptr_t stack_hi,
                  const struct cfi_regs *start, uintptr_t *out, int max)
{
	(void)cache;
	(void)stack_lo;
	(void)stack_hi;
	(void)start;
	(void)out;
	(void)max;
	return -1;
}

uint32_t cfi_recall(struct cfi_cache *c, const struct cfi_regs *start, int max)
{
	(void)c;
	(void)start;
	(void)max;
	return 0;
}

void cfi_remember(struct cfi_cache *c, uint32_t id)
{
	(void)c;
	(void)id;
}

void cfi_unlearn(struct cfi_cache *c, const struct cfi_regs *start, int max)
{
	(void)c;
	(void)start;
	(void)max;
}

void cfi_cache_free(struct cfi_cache *cache)
{
	(void)cache;
}

void cfi_forget(void)
{
}

#endif
