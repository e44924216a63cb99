/*
 * topic: reads an output topic from its beginning to its current end, for the tools
 * that judge decisions after a run (the end of the flow: Kafka -> here).
 */
#ifndef FLS_TOPIC_H
#define FLS_TOPIC_H

#include <librdkafka/rdkafka.h>

#include "conf.h"

/* Called for each message; a non-zero return stops the read and is returned. */
typedef int (*fls_topic_fn)(void *opaque, const rd_kafka_message_t *m);

/* Gives every message of topic, from the beginning of each partition up to its high
 * watermark at the call, to fn. Returns 0, fn's non-zero return, or -1 with errstr on
 * a Kafka error or 10 s without a message before the end. Reads without a group
 * commit, so it can run while the consumers run. */
int fls_topic_read(fls_conf_t *conf, const char *topic, fls_topic_fn fn, void *opaque,
                   char *errstr, size_t errstr_size);

#endif
