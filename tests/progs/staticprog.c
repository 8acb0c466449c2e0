/*
 * staticprog.c - a statically linked program: it has no dynamic loader, so
 * LD_PRELOAD (and with it the agent) never enters it. Usage: staticprog
 * CODE [wait]. It allocates, prints "staticprog: CODE" and exits with
 * CODE, so the test can see that it ran unchanged; with "wait", only once
 * its standard input ends (a static process that stays, for attach).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int code = argc > 1 ? atoi(argv[1]) : 0;
	char *s = malloc(64);

	if (s == NULL)
		return 1;
	snprintf(s, 64, "staticprog: %d", code);
	puts(s);
	fflush(stdout);
	free(s);
	if (argc > 2 && strcmp(argv[2], "wait") == 0) {
		char buf[8];
		while (read(0, buf, sizeof buf) > 0)
			;
	}
	return code;
}
