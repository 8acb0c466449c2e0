/*
 * staticprog.c - a statically linked program: it has no dynamic loader, so
 * LD_PRELOAD (and with it the agent) never enters it. Usage: staticprog
 * CODE. It allocates, prints "staticprog: CODE" and exits with CODE, so the
 * test can see that it ran unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	int code = argc > 1 ? atoi(argv[1]) : 0;
	char *s = malloc(64);

	if (s == NULL)
		return 1;
	snprintf(s, 64, "staticprog: %d", code);
	puts(s);
	free(s);
	return code;
}
