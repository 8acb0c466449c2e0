/*
 * execer.c - a hostile target for `memtracectl attach`, run as another
 * user: the calls attach makes in it are its own to answer.
 *
 * It rewrites the first bytes of its libc's dlopen into a jump to hijack(),
 * so the dlopen that attach calls in it runs another program instead: a
 * shell that ignores SIGSEGV, sends itself one and exits 7. Were the
 * program a setuid one, the registers attach saved (the attacker's) put
 * back into it, or its memory written, would be the attacker's code in a
 * privileged program. memtracectl must see the exec and let the new program
 * go untouched: then the shell exits 7; registers put back would crash it.
 *
 * Prints "ready" once dlopen is rewritten; then waits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void hijack(void)
{
	execl("/bin/sh", "sh", "-c", "trap '' SEGV; kill -SEGV $$; exit 7", (char *)NULL);
	_exit(99);
}

int main(void)
{
	uint8_t *fn = dlsym(RTLD_DEFAULT, "dlopen");
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t lo = (uintptr_t)fn & ~(uintptr_t)(page - 1);
	uint64_t target = (uint64_t)(uintptr_t)hijack;

	if (fn == NULL ||
	    mprotect((void *)lo, (size_t)page * 2, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
		perror("execer: mprotect");
		return 1;
	}
	/* movabs $hijack, %rax; jmp *%rax */
	fn[0] = 0x48;
	fn[1] = 0xb8;
	memcpy(fn + 2, &target, sizeof target);
	fn[10] = 0xff;
	fn[11] = 0xe0;
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
