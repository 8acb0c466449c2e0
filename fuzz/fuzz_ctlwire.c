/*
 * fuzz_ctlwire.c - libFuzzer target for the framing of control.sock
 * (common/ctlwire.h), the first thing the daemon and memtracectl do with
 * bytes from a peer.
 *
 * The first input byte picks the line limit (`max`, 0 to 255, or the real
 * request limit when it is 255); the rest is what a peer wrote before
 * closing its end. It goes into one end of a Unix socket pair and
 * ctlwire_recv reads lines from the other until it returns an error. A
 * reference reader written here, which looks at the whole input at once,
 * says what each call must give: the next line (without its '\n') when it
 * is at most `max` bytes and has no NUL, else -EMSGSIZE for a line longer
 * than `max`, -EBADMSG for a NUL, and -ECONNRESET when the input ends
 * without a '\n'. Any difference, or a byte consumed past a '\n' (the next
 * line would then come out wrong), is an abort().
 *
 * Inputs are kept below the socket buffer's size (see fuzz/README.md), so
 * the writes never block. fuzz/standalone.c replays inputs
 * without libFuzzer (see README.md).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctlwire.h"

#define MAX_INPUT 65536 /* well below a Unix socket's default buffer */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the reference reader expects of the next ctlwire_recv at `pos`:
 * 0 and the line's length in *len, or a negative errno. The reader takes
 * the line's bytes chunk by chunk, checking each chunk for a NUL as it
 * takes it, and gives up once it holds max + 1 bytes without a '\n': so a
 * line longer than max is -EBADMSG if a NUL is among its first max + 1
 * bytes and -EMSGSIZE otherwise. */
static int expect_next(const uint8_t *in, size_t n, size_t pos, size_t max, size_t *len)
{
	const uint8_t *nl = memchr(in + pos, '\n', n - pos);
	size_t seen = (nl != NULL ? (size_t)(nl - in) : n) - pos;

	if (seen > max)
		return memchr(in + pos, '\0', max + 1) != NULL ? -EBADMSG : -EMSGSIZE;
	if (memchr(in + pos, '\0', seen) != NULL)
		return -EBADMSG;
	if (nl == NULL)
		return -ECONNRESET;
	*len = seen;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	size_t max, pos = 0;

	if (size < 1 || size > MAX_INPUT + 1)
		return 0;
	max = data[0] == 255 ? CTLWIRE_MAX_REQUEST : data[0];
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (size > 0 && send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort();
	shutdown(sv[0], SHUT_WR);

	for (;;) {
		char *line = NULL;
		size_t len = 0;
		int want = expect_next(data, size, pos, max, &len);
		int got = ctlwire_recv(sv[1], &line, max);

		if (got != want)
			abort();
		if (got < 0) {
			if (line != NULL)
				abort();
			break;
		}
		if (line == NULL || strlen(line) != len || memcmp(line, data + pos, len) != 0)
			abort();
		free(line);
		pos += len + 1;
	}
	close(sv[0]);
	close(sv[1]);
	return 0;
}
