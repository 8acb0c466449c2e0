// gocgo is a Go program whose C code allocates, and which ends the way every
// Go program does: os.Exit makes the raw exit_group system call, so neither
// libc's exit, nor its atexit handlers, nor the agent's destructor run.
//
// The C code is the cgo preamble below. cgo_alloc mallocs at one line and
// books the block there in the program's ground truth (tests/progs/truth.h,
// compiled into the preamble); cgo_free frees and books that. main calls
// them from Go with known sizes, frees a quarter of the blocks again, writes
// the book (MEMTRACE_TRUTH) and calls os.Exit(0) at once, while the agent
// still holds the last events. Go's own heap is not malloc's, and what the
// Go runtime mallocs in C (runtime/cgo, when it starts threads) is at sites
// in other files, which the test counts as "other".
//
// Built by Makefile.am with the standard library only (no network), when
// configure found go; the C code without optimisation, so that the site
// keeps its own frame and line.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/.. -O0 -g -fno-omit-frame-pointer
#pragma GCC optimize("O0")
#include <stdlib.h>
#include "truth.h"

static int cgo_rec = -1;

// The call and its booking share a line on purpose (the book's line must be
// the call's line).
static void *cgo_alloc(size_t n)
{
	void *p = malloc(n); cgo_rec = TRUTH_ALLOC(n);
	return p;
}

static void cgo_free(void *p, size_t n)
{
	free(p); truth_adjust(cgo_rec, -(long long)n, -1);
}

static void cgo_book(void)
{
	truth_write();
}
*/
import "C"

import (
	"os"
	"unsafe"
)

const nblocks = 400

func main() {
	held := make([]unsafe.Pointer, 0, nblocks)
	for i := 0; i < nblocks; i++ {
		n := C.size_t(1000 + (i%9)*24)
		p := C.cgo_alloc(n)
		if p == nil {
			os.Exit(2)
		}
		if i%4 == 0 {
			C.cgo_free(p, n)
		} else {
			held = append(held, p)
		}
	}
	C.cgo_book()
	// The blocks stay allocated: they are what the exit statistics hold.
	_ = held
	os.Exit(0)
}
