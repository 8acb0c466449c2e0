/*
 * statargs.c - the options of tracemalloc-style statistics, shared by `top`
 * (sent to the daemon, or computed here from a snapshot file) and `compare`
 * (always computed here). See client.h.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "xalloc.h"

/* The daemon's default for "limit" (daemon/CONTROL.md), used when the client
 * computes the answer itself, so that both answers have the same length. */
#define STATARGS_DEFAULT_LIMIT 10

void statargs_init(struct statargs *a, struct client *c, const struct args *args)
{
	*a = (struct statargs){
	    .key = args_get(args, "key"),
	    .sort_by = args_get(args, "sort-by"),
	    .at_peak = args_get(args, "at") != NULL && strcmp(args_get(args, "at"), "peak") == 0,
	    .raw_frames = args_has(args, "raw-frames"),
	    .limit_arg = args_get(args, "limit"),
	    .limit = args_count(args, "limit", STATARGS_DEFAULT_LIMIT),
	    .cumulative = args_has(args, "cumulative"),
	    .all_frames = args_has(args, "all-frames"),
	    .filters = xcalloc(args->nvalues > 0 ? args->nvalues : 1, sizeof(*a->filters)),
	};
	/* --include and --exclude in the order given, which is the order the
	 * request and query.c list them in. */
	for (size_t i = 0; i < args->nvalues; i++) {
		const char *name = args->values[i].option->name;
		bool inclusive = strcmp(name, "include") == 0;

		if (!inclusive && strcmp(name, "exclude") != 0)
			continue;
		a->filters[a->nfilters].pattern = args->values[i].arg;
		a->filters[a->nfilters].inclusive = inclusive;
		a->nfilters++;
	}
	const char *at = args_get(args, "at");
	if (at != NULL && strcmp(at, "peak") != 0 && strcmp(at, "now") != 0)
		client_opt_error(c, "--at must be peak or now, not '%s'", at);
	/* As in tracemalloc: a traceback is already the whole stack. */
	if (a->cumulative && a->key != NULL && strcmp(a->key, "traceback") == 0)
		client_opt_error(c, "--cumulative cannot be used with --key traceback");
}

void statargs_close(struct statargs *a)
{
	free(a->filters);
	free(a->qfilters);
	a->filters = NULL;
	a->qfilters = NULL;
}

void statargs_request(const struct statargs *a, cJSON *req)
{
	if (a->key != NULL)
		cJSON_AddStringToObject(req, "key", a->key);
	if (a->sort_by != NULL)
		cJSON_AddStringToObject(req, "sort_by", a->sort_by);
	if (a->at_peak)
		cJSON_AddStringToObject(req, "at", "peak");
	if (a->raw_frames)
		cJSON_AddTrueToObject(req, "raw_frames");
	if (a->cumulative)
		cJSON_AddTrueToObject(req, "cumulative");
	if (a->limit_arg != NULL)
		cJSON_AddNumberToObject(req, "limit", a->limit);
	if (a->nfilters == 0)
		return;
	cJSON *arr = cJSON_AddArrayToObject(req, "filters");
	for (size_t i = 0; i < a->nfilters; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "pattern", a->filters[i].pattern);
		cJSON_AddBoolToObject(o, "inclusive", a->filters[i].inclusive);
		cJSON_AddBoolToObject(o, "all_frames", a->all_frames);
		cJSON_AddItemToArray(arr, o);
	}
}

void statargs_opts(struct statargs *a, struct query_opts *o)
{
	*o = (struct query_opts){.key = QUERY_KEY_LINENO, .cumulative = a->cumulative};
	/* Checked while parsing; an unknown key cannot reach here. */
	if (a->key != NULL)
		query_key_parse(a->key, &o->key);
	if (a->sort_by != NULL)
		query_sort_parse(a->sort_by, &o->sort_by);
	o->at_peak = a->at_peak;
	o->raw_frames = a->raw_frames;
	o->limit = (size_t)a->limit;
	free(a->qfilters);
	a->qfilters = xcalloc(a->nfilters > 0 ? a->nfilters : 1, sizeof(*a->qfilters));
	for (size_t i = 0; i < a->nfilters; i++) {
		a->qfilters[i].pattern = a->filters[i].pattern;
		a->qfilters[i].inclusive = a->filters[i].inclusive;
		a->qfilters[i].all_frames = a->all_frames;
	}
	o->filters = a->qfilters;
	o->nfilters = a->nfilters;
}
