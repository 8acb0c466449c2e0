/*
 * args.c - the one parser of memtracectl's command lines: a command's
 * options and operands as its entry declares them (struct args_spec), plus
 * the global options every command takes. See client.h.
 *
 * getopt_long does the splitting, so abbreviations ("--lim 3"), "--opt=value",
 * clusters of short options and "--" behave as users of other tools expect;
 * its option table and optstring are built here from the declaration. Nothing
 * is printed: every error goes through client_opt_error, which keeps the
 * first, so the order of the checks below is the order in which errors win.
 */
#include "client.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "xalloc.h"

/* getopt_long's value for a global option is ARGS_VAL_COMMON + its index,
 * for an option of the command ARGS_VAL_CMD + its index, unless the option
 * has a letter, which is then the value. Both are above every letter. */
#define ARGS_VAL_COMMON 0x100
#define ARGS_VAL_CMD    0x200

enum {
	COMMON_HELP,
	COMMON_TABLE,
	COMMON_SOCKET,
	COMMON_RUNTIME_DIR,
	NCOMMON,
};

/* The global options, accepted before the command and after it; they set
 * struct client, not struct args. */
static const struct args_option common_options[NCOMMON] = {
    [COMMON_HELP] = {"help", 'h', ARGS_FLAG},
    [COMMON_TABLE] = {"table", 0, ARGS_FLAG},
    [COMMON_SOCKET] = {"socket", 0, ARGS_PATH},
    [COMMON_RUNTIME_DIR] = {"runtime-dir", 0, ARGS_DIR},
};

static size_t spec_noptions(const struct args_spec *spec)
{
	size_t n = 0;

	while (spec->options != NULL && spec->options[n].name != NULL)
		n++;
	return n;
}

static int option_val(const struct args_option *o, int base, size_t i)
{
	return o->letter != 0 ? o->letter : base + (int)i;
}

static void add_getopt_option(struct option *lo, const struct args_option *o, int val)
{
	*lo = (struct option){
	    .name = o->name,
	    .has_arg = o->kind == ARGS_FLAG ? no_argument : required_argument,
	    .val = val,
	};
}

/* getopt_long's table: the command's options, then the global ones. An
 * abbreviation that could be either ("--s" in stats: --snapshot, --socket)
 * is refused as unrecognized. */
static struct option *build_options(const struct args_spec *spec, size_t n)
{
	struct option *lo = xcalloc(n + NCOMMON + 1, sizeof(*lo));

	for (size_t i = 0; i < n; i++)
		add_getopt_option(&lo[i], &spec->options[i],
		                  option_val(&spec->options[i], ARGS_VAL_CMD, i));
	for (size_t i = 0; i < NCOMMON; i++)
		add_getopt_option(&lo[n + i], &common_options[i],
		                  option_val(&common_options[i], ARGS_VAL_COMMON, i));
	return lo;
}

/*
 * '+': the first operand ends the options (run's PROG keeps its own), or '-':
 * operands come back in order as 1, so that options may follow them (compare
 * A B --limit 3). ':' makes a missing value its own error. Then the letters.
 */
static char *build_optstring(const struct args_spec *spec, size_t n)
{
	char *s = xmalloc(3 + 2 * (n + NCOMMON) + 1);
	size_t len = 0;

	s[len++] = spec->interleaved ? '-' : '+';
	s[len++] = ':';
	for (size_t i = 0; i < NCOMMON + n; i++) {
		const struct args_option *o =
		    i < NCOMMON ? &common_options[i] : &spec->options[i - NCOMMON];

		if (o->letter == 0)
			continue;
		s[len++] = o->letter;
		if (o->kind != ARGS_FLAG)
			s[len++] = ':';
	}
	s[len] = '\0';
	return s;
}

/* How an option is named in errors: by its letter when it has one ("-o"). */
static void option_label(const struct args_option *o, char *buf, size_t cap)
{
	if (o->letter != 0)
		snprintf(buf, cap, "-%c", o->letter);
	else
		snprintf(buf, cap, "--%s", o->name);
}

/* The checks a value gets when it is met, by its kind. ARGS_PID and
 * ARGS_SNAPREF are the exec's to check: whether one is wrong depends on
 * the other (snapref_choose). */
static void check_value(struct client *c, const struct args_option *o, const char *arg)
{
	enum query_key key;
	enum query_sort sort;
	char label[64];
	int count;

	option_label(o, label, sizeof(label));
	switch (o->kind) {
	case ARGS_PATH:
		if (arg[0] == '\0')
			client_opt_error(c, "%s needs a path", label);
		break;
	case ARGS_DIR:
		if (arg[0] == '\0')
			client_opt_error(c, "%s needs a directory", label);
		break;
	case ARGS_FILE:
		if (arg[0] == '\0')
			client_opt_error(c, "%s needs a file name", label);
		break;
	case ARGS_COUNT:
		client_opt_count(c, label, arg, &count);
		break;
	case ARGS_KEY:
		if (query_key_parse(arg, &key) < 0)
			client_opt_error(c,
			                 "%s must be lineno, filename, function or traceback, "
			                 "not '%s'",
			                 label, arg);
		break;
	case ARGS_SORT:
		if (query_sort_parse(arg, &sort) < 0)
			client_opt_error(c,
			                 "%s must be size, count, allocations, allocated or "
			                 "temporary, not '%s'",
			                 label, arg);
		break;
	case ARGS_FLAG:
	case ARGS_STRING:
	case ARGS_PID:
	case ARGS_SNAPREF:
		break;
	}
}

static void take_common(struct client *c, size_t i, char *arg)
{
	check_value(c, &common_options[i], arg);
	switch (i) {
	case COMMON_HELP:
		c->help = true;
		break;
	case COMMON_TABLE:
		c->table = true;
		break;
	case COMMON_SOCKET:
		c->socket_opt = arg;
		break;
	case COMMON_RUNTIME_DIR:
		c->runtime_dir_opt = arg;
		break;
	}
}

/* An option getopt_long has matched: a global one sets c, one of the
 * command's is checked by its kind and kept in a. */
static void take_option(struct client *c, const struct args_spec *spec, size_t n, struct args *a,
                        int ch, char *arg)
{
	for (size_t i = 0; i < NCOMMON; i++) {
		if (ch == option_val(&common_options[i], ARGS_VAL_COMMON, i)) {
			take_common(c, i, arg);
			return;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct args_option *o = &spec->options[i];

		if (ch == option_val(o, ARGS_VAL_CMD, i)) {
			check_value(c, o, arg);
			a->values[a->nvalues++] = (struct args_value){.option = o, .arg = arg};
			return;
		}
	}
}

/*
 * The option getopt has just refused. For a long option that is the argv
 * element it consumed; for a short one inside a cluster ("-hx") optopt
 * names it better.
 */
static void opt_culprit(char *const *argv, char *buf, size_t cap)
{
	const char *arg = argv[optind - 1];

	if (optopt > 0 && optopt < 0x80 && arg[0] == '-' && arg[1] != '-')
		snprintf(buf, cap, "-%c", optopt);
	else
		snprintf(buf, cap, "%s", arg);
}

static bool spec_has(const struct args_spec *spec, const char *name)
{
	for (const struct args_option *o = spec->options; o != NULL && o->name != NULL; o++)
		if (strcmp(o->name, name) == 0)
			return true;
	return false;
}

static void refused(struct client *c, const struct args_spec *spec, int ch, char *const *argv)
{
	char name[64];

	opt_culprit(argv, name, sizeof(name));
	/* A command of live processes only (reset-peak, snapshot, detach,
	 * where) given a stored snapshot: say why, not only that the option
	 * is unknown. */
	if (ch != ':' && spec_has(spec, "pid") && !spec_has(spec, "snapshot") &&
	    strncmp(name, "--snapshot", strlen("--snapshot")) == 0 &&
	    (name[10] == '\0' || name[10] == '='))
		client_opt_error(
		    c, "--snapshot: this command works on a live process (--pid P), not on "
		       "a stored snapshot");
	else if (ch == ':')
		client_opt_error(c, "option %s needs a value", name);
	/* getopt also refuses "--flag=value" for a flag it knows. */
	else if (optopt != 0 && strncmp(name, "--", 2) == 0 && strchr(name, '=') != NULL)
		client_opt_error(c, "option %.*s takes no value", (int)(strchr(name, '=') - name),
		                 name);
	else
		client_opt_error(c, "unrecognized option '%s'", name);
}

/* An operand met among the options (interleaved) or after them. */
static void take_operand(struct client *c, const struct args_spec *spec, struct args *a,
                         size_t *seen, char *arg)
{
	if (spec->upper < 0 || *seen < (size_t)spec->upper)
		a->operands[a->noperands++] = arg;
	else if (*seen == (size_t)spec->upper)
		client_opt_error(c, "unexpected argument '%s'", arg);
	(*seen)++;
}

void args_parse(struct client *c, const struct args_spec *spec, int argc, char **argv,
                struct args *a)
{
	size_t n = spec_noptions(spec), seen = 0;
	struct option *lo = build_options(spec, n);
	char *optstring = build_optstring(spec, n);
	int ch;

	*a = (struct args){
	    .values = xcalloc(argc > 0 ? (size_t)argc : 1, sizeof(*a->values)),
	    .operands = xcalloc((size_t)argc + 1, sizeof(*a->operands)),
	};
	/* 0, not 1: glibc then also forgets the state of the previous argv. */
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, optstring, lo, NULL)) != -1) {
		if (ch == 1)
			take_operand(c, spec, a, &seen, optarg);
		else if (ch == '?' || ch == ':')
			refused(c, spec, ch, argv);
		else
			take_option(c, spec, n, a, ch, optarg);
	}
	/* After "--", or from the first operand on: operands, even "-x". */
	for (; optind < argc; optind++)
		take_operand(c, spec, a, &seen, argv[optind]);
	if (seen < (size_t)spec->lower)
		client_opt_error(c, "%s", spec->missing);
	free(optstring);
	free(lo);
}

void args_free(struct args *a)
{
	free(a->values);
	free(a->operands);
	*a = (struct args){0};
}

/* The last value of option `name`, as options given twice mean the last. */
static const struct args_value *args_last(const struct args *a, const char *name)
{
	for (size_t i = a->nvalues; i > 0; i--)
		if (strcmp(a->values[i - 1].option->name, name) == 0)
			return &a->values[i - 1];
	return NULL;
}

bool args_has(const struct args *a, const char *name)
{
	return args_last(a, name) != NULL;
}

const char *args_get(const struct args *a, const char *name)
{
	const struct args_value *v = args_last(a, name);

	return v != NULL ? v->arg : NULL;
}

int args_count(const struct args *a, const char *name, int def)
{
	const char *arg = args_get(a, name);
	unsigned long v;

	/* Checked when it was met; a bad one left an error, so exec never asks. */
	if (arg == NULL || client_parse_ulong(arg, INT_MAX, &v) < 0)
		return def;
	return (int)v;
}

int client_pid_arg(struct client *c, const struct args *a, const char *cmd, int *out)
{
	const char *opt = args_get(a, "pid");
	const char *arg = a->noperands > 0 ? a->operands[0] : opt;
	unsigned long v;

	if (a->noperands > 0 && opt != NULL) {
		client_opt_error(c, "give the pid once: memtracectl %s PID", cmd);
		return -EINVAL;
	}
	if (arg == NULL) {
		client_opt_error(c, "%s needs a pid: memtracectl %s PID", cmd, cmd);
		return -EINVAL;
	}
	int rc = client_parse_ulong(arg, INT_MAX, &v);
	if (rc < 0 || v == 0) {
		client_opt_error(c, "the pid must be a positive integer up to %d, not '%s'",
		                 INT_MAX, arg);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}
