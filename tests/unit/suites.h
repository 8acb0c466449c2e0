/* suites.h - every unit suite, one per module; run_unit.c runs them all. */
#ifndef MEMTRACE_TEST_SUITES_H
#define MEMTRACE_TEST_SUITES_H

#include <check.h>

Suite *proto_suite(void);
Suite *paths_suite(void);
Suite *query_suite(void);
Suite *symbols_suite(void);
Suite *heap_suite(void);
Suite *sampling_suite(void);
Suite *exports_suite(void);
Suite *snapshot_suite(void);
Suite *store_suite(void);
Suite *ring_suite(void);
Suite *drain_suite(void);
Suite *stacktab_suite(void);
Suite *ctlwire_suite(void);
Suite *session_suite(void);
Suite *lineage_suite(void);
Suite *sampleset_suite(void);
Suite *gotpatch_suite(void);
Suite *useraccess_suite(void);
Suite *jsonout_suite(void);
Suite *capture_suite(void);
Suite *modmap_suite(void);
Suite *formats_suite(void);
Suite *yield_suite(void);

#endif
