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

enum {
	OPT_VERSION = CLIENT_OPT_CMD,
};

static const struct cmd_entry *const cmd_table[] = {
    &cmd_status_entry,  &cmd_list_entry,      &cmd_stats_entry,    &cmd_reset_peak_entry,
    &cmd_top_entry,     &cmd_traceback_entry, &cmd_snapshot_entry, &cmd_snapshots_entry,
    &cmd_compare_entry, &cmd_run_entry,
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

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"version", no_argument, NULL, OPT_VERSION},
	    CLIENT_COMMON_OPTIONS,
	};
	const struct cmd_entry *e;
	struct client c;
	bool version = false;
	int ch, rc;

	xalloc_cjson_hooks();
	client_init(&c);

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		if (ch == OPT_VERSION)
			version = true;
		else
			client_opt_common(&c, ch, argv);
	}
	if (c.help) {
		rc = main_help();
		goto out;
	}
	if (version) {
		printf("memtracectl (memtrace) %s\n", PACKAGE_VERSION);
		rc = CLIENT_EXIT_OK;
		goto out;
	}
	if (c.usage_error != NULL) {
		rc = client_usage_error(&c);
		goto out;
	}
	if (optind >= argc) {
		rc = client_error(&c, CLIENT_EXIT_USAGE, "bad_request",
		                  "no command given; 'memtracectl --help' lists them");
		goto out;
	}
	e = cmd_find(argv[optind]);
	if (e == NULL) {
		rc = client_error(&c, CLIENT_EXIT_USAGE, "unknown_command",
		                  "unknown command '%s'; 'memtracectl --help' lists them",
		                  argv[optind]);
		goto out;
	}
	rc = e->exec(&c, argc - optind, argv + optind);
out:
	client_close(&c);
	/* Output that never reached its file is a failure, not a success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "memtracectl: cannot write the output\n");
		if (rc == CLIENT_EXIT_OK)
			rc = CLIENT_EXIT_ERROR;
	}
	return rc;
}
