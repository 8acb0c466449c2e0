/* xalloc_cjson.c - cJSON's allocation hooks on xmalloc (see xalloc_cjson.h). */
#include "xalloc_cjson.h"

#include <stdlib.h>

#include <cjson/cJSON.h>

#include "xalloc.h"

void xalloc_cjson_hooks(void)
{
	/* cJSON then mallocs and copies where it would realloc, since the
	 * hooks are not libc's own; its output is the same. */
	cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};

	cJSON_InitHooks(&hooks);
}
