/*
 * cxxsites.cc - known C++ allocation sites (new and new[]).
 *
 * new and new[] reach malloc through libstdc++'s operator new; memtrace must
 * report the line of the new-expression in this file, not operator new and
 * not the agent. Sites, each in its own function: new of a class with a
 * constructor, new[] of a trivial type (the request is n * sizeof(T)), new[]
 * of a class with a destructor (the Itanium C++ ABI prepends an array cookie
 * of sizeof(size_t) bytes, so the request is n * sizeof(T) + sizeof(size_t)),
 * nothrow new, and new of an over-aligned type (operator new(size_t,
 * align_val_t), which libstdc++ serves with aligned_alloc).
 *
 * Like sites.c it allocates nothing outside its booked sites: no iostream,
 * no std::string; output goes through truth.h's write(2). libstdc++ allocates
 * its exception emergency pool before main; that is libstdc++'s site, not
 * ours, and the test treats it as such.
 *
 * "ready" after the allocations; any command then deletes everything and the
 * program exits 0.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation and its TRUTH_ALLOC share one source line on
 * purpose (the book's line must be the call's line); clang-format would
 * split them. */
/* clang-format off */
#include <cstddef>
#include <cstdint>
#include <new>

#include "truth.h"

struct Widget {
	explicit Widget(int v) : value(v) { memset(pad, v, sizeof pad); }
	int value;
	char pad[44];
};

struct Gadget { /* non-trivial destructor: new[] stores an array cookie */
	Gadget() : id(7) {}
	~Gadget() { id = 0; }
	long id;
	char pad[24];
};

struct alignas(128) Aligned {
	char data[200];
};

static Widget *widgets[5];
static int widget_rec;
static int *ints[3];
static size_t int_n[3];
static int int_rec;
static Gadget *gadgets[2];
static int gadget_rec;
static double *nothrows[4];
static int nothrow_rec;
static Aligned *aligneds[2];
static int aligned_rec;

/* Itanium C++ ABI 2.7: the cookie is max(sizeof(size_t), alignof(T)) bytes. */
static const size_t cookie = sizeof(size_t) > alignof(Gadget) ? sizeof(size_t) : alignof(Gadget);

static void make_widgets()
{
	for (int i = 0; i < 5; i++) {
		widgets[i] = new Widget(i); widget_rec = TRUTH_ALLOC(sizeof(Widget));
	}
	delete widgets[3]; truth_adjust(widget_rec, -(long long)sizeof(Widget), -1);
	widgets[3] = nullptr;
}

static void make_int_arrays()
{
	for (int i = 0; i < 3; i++) {
		int_n[i] = 10 * (i + 1);
		ints[i] = new int[int_n[i]]; int_rec = TRUTH_ALLOC(int_n[i] * sizeof(int));
	}
}

static void make_gadget_arrays()
{
	for (int i = 0; i < 2; i++) {
		gadgets[i] = new Gadget[3]; gadget_rec = TRUTH_ALLOC(3 * sizeof(Gadget) + cookie);
	}
}

static void make_nothrow()
{
	for (int i = 0; i < 4; i++) {
		nothrows[i] = new (std::nothrow) double[16]; nothrow_rec = TRUTH_ALLOC(16 * sizeof(double));
	}
}

static void make_aligned()
{
	for (int i = 0; i < 2; i++) {
		aligneds[i] = new Aligned; aligned_rec = TRUTH_ALLOC(sizeof(Aligned));
	}
}

static void build_all()
{
	TRUTH_CALL(make_widgets());
	TRUTH_CALL(make_int_arrays());
	TRUTH_CALL(make_gadget_arrays());
	TRUTH_CALL(make_nothrow());
	TRUTH_CALL(make_aligned());
}

int main()
{
	char cmd[64];

	TRUTH_CALL(build_all());
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	for (Widget *w : widgets)
		delete w;
	truth_adjust(widget_rec, -4 * (long long)sizeof(Widget), -4);
	for (int i = 0; i < 3; i++)
		delete[] ints[i];
	truth_adjust(int_rec, -60 * (long long)sizeof(int), -3);
	for (Gadget *g : gadgets)
		delete[] g;
	truth_adjust(gadget_rec, -2 * (long long)(3 * sizeof(Gadget) + cookie), -2);
	for (double *d : nothrows)
		delete[] d;
	truth_adjust(nothrow_rec, -64 * (long long)sizeof(double), -4);
	for (Aligned *a : aligneds)
		delete a;
	truth_adjust(aligned_rec, -2 * (long long)sizeof(Aligned), -2);
	truth_write();
	return 0;
}
