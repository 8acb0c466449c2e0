/*
 * ctorlib.h - what libctorlib (ctorlib.c) tells the program it is linked
 * into about the blocks its constructor made before main.
 */
#ifndef MEMTRACE_CTORLIB_H
#define MEMTRACE_CTORLIB_H

#define CTORLIB_BLOCKS 3
#define CTORLIB_SIZE0  100000
#define CTORLIB_SIZE1  50000
#define CTORLIB_SIZE2  30000
#define CTORLIB_BYTES  (CTORLIB_SIZE0 + CTORLIB_SIZE1 + CTORLIB_SIZE2)

/* Block i's site: returns its line and sets its file, function and size, or
 * returns -1 when there is no such block (the allocation failed). */
int ctorlib_site(int i, const char **file, const char **func, long *bytes);
/* How many blocks the constructor allocated and freed (CTORLIB_CHURN). */
long ctorlib_churned(void);

#endif
