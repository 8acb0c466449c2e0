/*
 * cmd-where.c - `memtracectl where --pid P ADDRESS`: which live block of a
 * process holds an address, and where it was allocated - tracemalloc's
 * get_object_traceback for native code. A pointer pasted from a debugger
 * (0x hexadecimal, or decimal) names the block it points into, with the
 * offset from the block's start.
 */
#include "client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int cmd_where_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_where_entry = {
    .name = "where",
    .usage = "--pid P ADDRESS",
    .summary = "which live block holds an address, and the traceback of its allocation",
    .help = "Print the live block of process P that holds ADDRESS (a pointer as gdb\n"
            "prints it: 0x hexadecimal, or decimal): its start, its size, how far into\n"
            "it ADDRESS is (offset), and the traceback of its allocation, most recent\n"
            "call first - tracemalloc's get_object_traceback(). An address in no live\n"
            "block (freed, never allocated with malloc and friends, allocated before an\n"
            "attach, or in sampled mode not sampled) is the error no_such_block. Live\n"
            "processes only.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}},
             .lower = 1,
             .upper = 1,
             .interleaved = true,
             .missing = "where needs an address: memtracectl where --pid P ADDRESS"},
    .exec = cmd_where_exec,
};

static int cmd_where_exec(struct client *c, const struct args *a)
{
	const char *addr = a->operands[0];
	cJSON *req;
	int pid = 0;

	if (client_opt_pid(c, args_get(a, "pid"), &pid) < 0)
		return client_usage_error(c);
	/* The daemon parses it again; what it would refuse is said here in
	 * the user's words: 0x and hexadecimal digits, or decimal digits, up
	 * to 2^64 - 1 (a pointer without its 0x would read as decimal). */
	bool hex = addr[0] == '0' && (addr[1] == 'x' || addr[1] == 'X');
	const char *digits = hex ? addr + 2 : addr;
	const char *set = hex ? "0123456789abcdefABCDEF" : "0123456789";
	char *end = NULL;
	errno = 0;
	if (digits[0] == '\0' || strspn(digits, set) != strlen(digits) ||
	    (strtoull(digits, &end, hex ? 16 : 10), errno == ERANGE)) {
		client_opt_error(c,
		                 "ADDRESS must be a pointer as 0x and hexadecimal digits, or a "
		                 "decimal number, below 2^64; not '%s'",
		                 addr);
		return client_usage_error(c);
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "where");
	cJSON_AddNumberToObject(req, "pid", pid);
	cJSON_AddStringToObject(req, "address", addr);
	return client_request(c, req, table_where);
}
