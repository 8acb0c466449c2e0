/*
 * idle.c - a program that allocates nothing: it says "waiting" with write(2)
 * and reads one line from stdin (also raw), so the test can ask memtrace
 * about it while it has made no allocation at all. Exits 0.
 */
#include <unistd.h>

int main(void)
{
	char c;

	if (write(1, "waiting\n", 8) != 8)
		return 1;
	while (read(0, &c, 1) == 1 && c != '\n')
		;
	return 0;
}
