/*
 * kafka: librdkafka handles configured the project's way, and producing with
 * back-pressure. The entry and exit of every consumer (Kafka -> ... -> Kafka).
 *
 * Defaults come from ../shared/NOTES.md measurements (queued.min.messages, a short
 * fetch.wait.max.ms, the idempotent producer) and from librdkafka 2.0.2's bugs (eager
 * assignment); every kafka.* configuration key is applied after them, so a deployment
 * can override any.
 */
#ifndef FLS_KAFKA_H
#define FLS_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "conf.h"

typedef enum { FLS_KAFKA_CONSUMER, FLS_KAFKA_PRODUCER } fls_kafka_role_t;

/* A new rd_kafka_conf_t (caller owns it until rd_kafka_new takes it). group_id is
 * used for consumers only. */
rd_kafka_conf_t *fls_kafka_conf(const fls_conf_t *conf, fls_kafka_role_t role,
                                const char *group_id, char *errstr, size_t errstr_size);

/* Produces a copy of key and value. QUEUE_FULL is not an error: the producer is
 * polled (serving delivery reports) and the call retried until timeout_ms. On success
 * librdkafka owns hdrs; on failure the caller still does. */
int fls_kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                      const void *value, size_t len, rd_kafka_headers_t *hdrs,
                      int timeout_ms, char *errstr, size_t errstr_size);

#endif
