/*
 * report: `flashstream report clickstream|orders`, what a consumer decided on real
 * traffic (tools/import.c), read back from the end of the flow (Kafka -> here): its
 * input topic (events in, distinct keys), its output topic (every decision, decoded)
 * and its dead-letter topic. Real traffic has no ground truth, so this describes
 * rather than judges (tools/judge_*.c judge the simulator's runs). Prints a table and
 * one JSON line; reads Redis only for the clickstream's capped-users counters.
 */
#ifndef FLS_REPORT_H
#define FLS_REPORT_H

#include "conf.h"

/* argv[0] is "clickstream" or "orders". Returns the exit status. */
int fls_report(fls_conf_t *conf, int argc, char **argv);

#endif
