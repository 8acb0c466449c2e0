/* modules.c - module map reporting with dl_iterate_phdr (see modules.h). */
#include "modules.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "globals.h"
#include "proto.h"

static unsigned long long seen_adds, seen_subs;

struct self_ctx {
	uintptr_t addr;
};

/* The span of an object's PT_LOAD segments in memory; hi is 0 if none. */
static void load_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi)
{
	*lo = UINTPTR_MAX;
	*hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < *lo)
			*lo = a;
		if (a + ph->p_memsz > *hi)
			*hi = a + ph->p_memsz;
	}
}

static int find_self_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct self_ctx *c = data;
	uintptr_t lo, hi;
	(void)size;

	load_range(info, &lo, &hi);
	if (c->addr >= lo && c->addr < hi) {
		g_self_lo = lo;
		g_self_hi = hi;
		return 1;
	}
	return 0;
}

void modules_find_self(void)
{
	struct self_ctx c = {(uintptr_t)&modules_find_self};
	dl_iterate_phdr(find_self_cb, &c);
}

static int counters_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	unsigned long long *out = data;
	if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
		return 1;
	out[0] = info->dlpi_adds;
	out[1] = info->dlpi_subs;
	return 1; /* the first object carries the counters; stop there */
}

int modules_changed(void)
{
	unsigned long long c[2] = {0, 0};
	dl_iterate_phdr(counters_cb, c);
	return c[0] != seen_adds || c[1] != seen_subs;
}

/* Finds the GNU build-id note in the object's PT_NOTE segments. */
static uint32_t build_id_of(struct dl_phdr_info *info, const uint8_t **out)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
		const uint8_t *end = p + ph->p_memsz;
		while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			size_t namesz = (nh->n_namesz + 3u) & ~3u;
			size_t descsz = (nh->n_descsz + 3u) & ~3u;
			const uint8_t *name = p + sizeof(*nh);
			const uint8_t *desc = name + namesz;
			if ((size_t)(end - name) < namesz || (size_t)(end - desc) < descsz)
				break;
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= PROTO_MAX_BUILD_ID) {
				*out = desc;
				return nh->n_descsz;
			}
			p = desc + descsz;
		}
	}
	return 0;
}

struct enc_ctx {
	uint8_t *buf;
	size_t cap, used;
	char exe[PROTO_MAX_PATH];
	size_t exe_len;
};

static int encode_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct enc_ctx *c = data;
	struct proto_module m;
	uintptr_t lo, hi;
	(void)size;

	load_range(info, &lo, &hi);
	if (hi == 0)
		return 0;
	memset(&m, 0, sizeof(m));
	m.bias = info->dlpi_addr;
	m.lo = lo;
	m.hi = hi;
	m.build_id_len = build_id_of(info, &m.build_id);
	const char *name = info->dlpi_name;
	if (name == NULL || name[0] == '\0') {
		/* The main program has no name here; use its real path. */
		name = c->exe;
		m.path_len = (uint32_t)c->exe_len;
	} else {
		size_t l = strlen(name);
		m.path_len = (uint32_t)(l > PROTO_MAX_PATH ? PROTO_MAX_PATH : l);
	}
	m.path = name;
	ssize_t w = proto_module_encode(c->buf + c->used, c->cap - c->used, &m);
	if (w > 0)
		c->used += (size_t)w;
	return 0;
}

size_t modules_encode(uint8_t *buf, size_t cap)
{
	struct enc_ctx c;
	unsigned long long cnt[2] = {0, 0};

	c.buf = buf;
	c.cap = cap;
	c.used = 0;
	ssize_t l = readlink("/proc/self/exe", c.exe, sizeof(c.exe));
	c.exe_len = l > 0 ? (size_t)l : 0;
	dl_iterate_phdr(counters_cb, cnt);
	seen_adds = cnt[0];
	seen_subs = cnt[1];
	dl_iterate_phdr(encode_cb, &c);
	return c.used;
}
