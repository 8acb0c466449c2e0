/*
 * standalone.c - a main() that replays inputs through a fuzz target
 * without libFuzzer.
 *
 * Linked with any fuzz_*.c instead of -fsanitize=fuzzer, it runs
 * LLVMFuzzerTestOneInput once for each file named on the command line, so a
 * corpus or a crash found elsewhere can be replayed with plain gcc and the
 * sanitizers. Each input is handed over in a buffer of exactly its size,
 * as libFuzzer does, so that a read past its end is an ASan report here too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the target on one file. 0, or -1 when the file cannot be read. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL, *exact;
	size_t n = 0, cap = 0, got;
	int rc = -1;

	if (f == NULL) {
		perror(path);
		return -1;
	}
	do {
		if (n == cap) {
			cap = cap == 0 ? 4096 : cap * 2;
			uint8_t *bigger = realloc(data, cap);
			if (bigger == NULL)
				goto err_after_open;
			data = bigger;
		}
		got = fread(data + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		perror(path);
		goto err_after_open;
	}
	exact = malloc(n == 0 ? 1 : n);
	if (exact == NULL)
		goto err_after_open;
	if (n > 0)
		memcpy(exact, data, n);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	rc = 0;
err_after_open:
	free(data);
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	int failed = 0;

	for (int i = 1; i < argc; i++)
		if (run_file(argv[i]) < 0)
			failed = 1;
	printf("%d file(s) run\n", argc - 1);
	return failed;
}
