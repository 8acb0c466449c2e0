/* run_unit.c - the one runner of every unit suite (see suites.h). */
#include <stdlib.h>

#include "suites.h"
#include "xalloc_cjson.h"

int main(void)
{
	/* As memtraced and memtracectl do: the modules under test rely on it. */
	xalloc_cjson_hooks();
	SRunner *sr = srunner_create(proto_suite());
	srunner_add_suite(sr, paths_suite());
	srunner_add_suite(sr, query_suite());
	srunner_add_suite(sr, symbols_suite());
	srunner_add_suite(sr, heap_suite());
	srunner_add_suite(sr, sampling_suite());
	srunner_add_suite(sr, exports_suite());
	srunner_add_suite(sr, snapshot_suite());
	srunner_add_suite(sr, store_suite());
	srunner_add_suite(sr, ring_suite());
	srunner_add_suite(sr, drain_suite());
	srunner_add_suite(sr, stacktab_suite());
	srunner_add_suite(sr, ctlwire_suite());
	srunner_add_suite(sr, session_suite());
	srunner_add_suite(sr, lineage_suite());
	srunner_add_suite(sr, sampleset_suite());
	srunner_add_suite(sr, gotpatch_suite());
	srunner_add_suite(sr, useraccess_suite());
	srunner_add_suite(sr, jsonout_suite());
	srunner_add_suite(sr, capture_suite());
	srunner_add_suite(sr, modmap_suite());
	srunner_add_suite(sr, formats_suite());
	srunner_add_suite(sr, yield_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
