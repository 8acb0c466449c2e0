/*
 * memtracectl.c - main: the global options and the command table.
 *
 * Everything a command does is in its own client/cmd-NAME.c; adding a command
 * is a new file and one line in cmd_table below.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc_cjson.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The global options come before the command, whose name is the first
 * operand; what follows it is the command's to parse. */
static const struct args_spec main_args = {
    .options = (const struct args_option[]){{"version", 0, ARGS_FLAG}, {NULL}},
    .lower = 1,
    .upper = -1,
    .missing = "no command given; 'memtracectl --help' lists them",
};

static const struct cmd_entry *const cmd_table[] = {
    &cmd_status_entry,  &cmd_list_entry,      &cmd_stats_entry,      &cmd_reset_peak_entry,
    &cmd_top_entry,     &cmd_traceback_entry, &cmd_snapshot_entry,   &cmd_snapshots_entry,
    &cmd_compare_entry, &cmd_export_entry,    &cmd_flamegraph_entry, &cmd_history_entry,
    &cmd_run_entry,     &cmd_ui_entry,        &cmd_attach_entry,     &cmd_detach_entry,
    &cmd_where_entry,
};

static const struct cmd_entry *cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	}
	return NULL;
}

static int main_help(void)
{
	fputs("usage: memtracectl [GLOBAL OPTIONS] COMMAND [OPTIONS]\n\n"
	      "Ask memtraced where the memory of traced processes goes. Answers are\n"
	      "printed as the daemon's JSON, or for people with --table.\n\n"
	      "Commands:\n",
	      stdout);
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		printf("  %-12s %s\n", cmd_table[i]->name, cmd_table[i]->summary);
	fputs("\n'memtracectl COMMAND --help' describes the options of COMMAND.\n\n", stdout);
	client_help_options();
	fputs("  --version           print the version and exit\n\n"
	      "Exit status: 0 on success, 1 when memtraced reports an error or cannot be\n"
	      "reached, 2 for a bad command line; run exits as its program does.\n",
	      stdout);
	return CLIENT_EXIT_OK;
}

/* Parses the command's part of the command line (argv[0] is its name) and
 * runs it: --help first, then the first usage error, else its exec. */
static int cmd_invoke(struct client *c, const struct cmd_entry *e, int argc, char **argv)
{
	struct args a;
	int rc;

	args_parse(c, &e->args, argc, argv, &a);
	if (c->help)
		rc = client_help(e);
	else if (c->usage_error != NULL)
		rc = client_usage_error(c);
	else
		rc = e->exec(c, &a);
	args_free(&a);
	return rc;
}

int main(int argc, char **argv)
{
	const struct cmd_entry *e;
	struct client c;
	struct args a;
	int rc;

	xalloc_cjson_hooks();
	client_init(&c);

	args_parse(&c, &main_args, argc, argv, &a);
	if (c.help) {
		rc = main_help();
		goto out;
	}
	if (args_has(&a, "version")) {
		printf("memtracectl (memtrace) %s\n", PACKAGE_VERSION);
		rc = CLIENT_EXIT_OK;
		goto out;
	}
	if (c.usage_error != NULL) {
		rc = client_usage_error(&c);
		goto out;
	}
	e = cmd_find(a.operands[0]);
	if (e == NULL) {
		rc = client_error(&c, CLIENT_EXIT_USAGE, "unknown_command",
		                  "unknown command '%s'; 'memtracectl --help' lists them",
		                  a.operands[0]);
		goto out;
	}
	rc = cmd_invoke(&c, e, (int)a.noperands, a.operands);
out:
	args_free(&a);
	client_close(&c);
	/* Output that never reached its file is a failure, not a success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "memtracectl: cannot write the output\n");
		if (rc == CLIENT_EXIT_OK)
			rc = CLIENT_EXIT_ERROR;
	}
	return rc;
}
