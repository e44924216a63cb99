/*
 * produce: replays an event file (CSV whose header names the schema's fields, as the
 * simulator and `flashstream convert` write) into an input topic, in file order. The
 * start of the flow: here -> Kafka -> Avro -> Redis -> model -> Kafka.
 */
#ifndef FLS_PRODUCE_H
#define FLS_PRODUCE_H

#include "conf.h"

/* Produces every row of path to the topic of input ("clickstream", "orders" or
 * "shipments") and waits for every delivery. *count: rows accepted by the producer.
 * A row that does not fit the schema stops it with "path:line: reason". */
int fls_produce_file(fls_conf_t *conf, const char *input, const char *path, long *count,
                     char *errstr, size_t errstr_size);

/* `flashstream produce INPUT FILE`; returns the exit status. */
int fls_produce_cmd(fls_conf_t *conf, int argc, char **argv);

#endif
