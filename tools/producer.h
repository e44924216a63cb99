/*
 * producer: the producing half of the tools that feed the input topics (`flashstream
 * import`, `flashstream produce`), the start of the flow: here -> Kafka -> Avro ->
 * Redis -> model -> Kafka. One librdkafka producer configured the project's way
 * (fls_kafka_conf, then the Java client's murmur2 partitioner whatever kafka.* says,
 * as the README's topic contract requires), QUEUE_FULL served by polling, delivery
 * reports counted, and a close that flushes and says how many messages were lost.
 * Also the murmur2 partition function, so that any tool can tell where a key lives.
 */
#ifndef FLS_PRODUCER_H
#define FLS_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct fls_producer fls_producer_t;

/* A connected producer; client_id names it to the brokers. NULL with errstr. */
fls_producer_t *fls_producer_new(fls_conf_t *conf, const char *client_id, char *errstr,
                                 size_t errstr_size);
/* Produces a copy of key and value; waits up to timeout_ms while the local queue is
 * full. -1 with errstr when it cannot be queued or the producer hit a fatal error. */
int fls_producer_send(fls_producer_t *p, const char *topic, const void *key,
                      size_t keylen, const void *value, size_t len, int timeout_ms,
                      char *errstr, size_t errstr_size);
/* Flushes for up to timeout_ms. *delivered and *failed count delivery reports (a
 * message still queued at the end counts as failed). 0 when every message sent was
 * delivered, else -1 with errstr naming the first error. */
int fls_producer_close(fls_producer_t *p, int timeout_ms, uint64_t *delivered,
                       uint64_t *failed, char *errstr, size_t errstr_size);
/* Safe on NULL; drops what is not delivered (call fls_producer_close first). */
void fls_producer_destroy(fls_producer_t *p);

/* The partition of key under Kafka's murmur2 partitioner (the Java client's, and
 * librdkafka's murmur2_random for non-empty keys). */
int32_t fls_producer_partition(const char *key, size_t len, int32_t partitions);

#endif
