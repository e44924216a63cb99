/*
 * producer: see producer.h. A tool's producer, not a consumer's: the consumers'
 * outputs go through the runner (consumers/runtime/runner.c), which ties them to
 * offsets. Cost per message: one copy into librdkafka and a poll every 1024 sends.
 */
#include "producer.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"

#define COMP "producer"

struct fls_producer {
        rd_kafka_t *rk;
        uint64_t sent, ok, failed;
        int fatal;
        char first_err[256];
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        fls_producer_t *p = opaque;
        (void)rk;
        if (!m->err) {
                p->ok++;
                return;
        }
        if (!p->failed++)
                snprintf(p->first_err, sizeof(p->first_err), "%s: %s",
                         rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        fls_producer_t *p = opaque;
        char fatal[256];
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
                fls_log(FLS_LOG_ERROR, COMP, "fatal producer error: %s", fatal);
                p->fatal = 1;
                return;
        }
        /* Transient (a broker down, a transport error): librdkafka retries. */
        fls_log(FLS_LOG_WARN, COMP, "kafka: %s: %s", rd_kafka_err2name(err), reason);
}

fls_producer_t *fls_producer_new(fls_conf_t *conf, const char *client_id, char *errstr,
                                 size_t errstr_size)
{
        fls_producer_t *p = calloc(1, sizeof(*p));
        rd_kafka_conf_t *kc;

        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        kc = fls_kafka_conf(conf, FLS_KAFKA_PRODUCER, NULL, errstr, errstr_size);
        if (!kc) {
                free(p);
                return NULL;
        }
        if (rd_kafka_conf_set(kc, "partitioner", "murmur2_random", errstr, errstr_size) !=
                RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(kc, "client.id", client_id, errstr, errstr_size) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(kc);
                free(p);
                return NULL;
        }
        rd_kafka_conf_set_opaque(kc, p);
        rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
        rd_kafka_conf_set_error_cb(kc, on_error);
        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
        if (!p->rk) {
                rd_kafka_conf_destroy(kc);
                free(p);
                return NULL;
        }
        return p; /* kc is owned by p->rk now */
}

int fls_producer_send(fls_producer_t *p, const char *topic, const void *key,
                      size_t keylen, const void *value, size_t len, int timeout_ms,
                      char *errstr, size_t errstr_size)
{
        if (p->fatal) {
                snprintf(errstr, errstr_size, "fatal producer error (logged)");
                return -1;
        }
        if (fls_kafka_produce(p->rk, topic, key, keylen, value, len, NULL, timeout_ms,
                              errstr, errstr_size) != 0)
                return -1;
        if ((++p->sent & 1023) == 0)
                rd_kafka_poll(p->rk, 0);
        return 0;
}

int fls_producer_close(fls_producer_t *p, int timeout_ms, uint64_t *delivered,
                       uint64_t *failed, char *errstr, size_t errstr_size)
{
        int left;
        rd_kafka_flush(p->rk, timeout_ms);
        left = rd_kafka_outq_len(p->rk);
        if (left > 0 && !p->failed)
                snprintf(p->first_err, sizeof(p->first_err), "not delivered within %d ms",
                         timeout_ms);
        /* Never delivered: as lost as a failed delivery report. */
        p->failed += left > 0 ? (uint64_t)left : 0;
        *delivered = p->ok;
        *failed = p->failed;
        if (p->failed) {
                snprintf(errstr, errstr_size,
                         "%" PRIu64 " of %" PRIu64 " messages lost (%s)", p->failed,
                         p->sent, p->first_err);
                return -1;
        }
        return 0;
}

void fls_producer_destroy(fls_producer_t *p)
{
        if (!p)
                return;
        rd_kafka_destroy(p->rk);
        free(p);
}

int32_t fls_producer_partition(const char *key, size_t len, int32_t partitions)
{
        /* Kafka's murmur2: seed 0x9747b28c, m 0x5bd1e995, r 24; the Java client takes
         * (hash & 0x7fffffff) % partitions. */
        const uint32_t m = 0x5bd1e995;
        const unsigned char *d = (const unsigned char *)key;
        uint32_t h = 0x9747b28cU ^ (uint32_t)len;
        size_t n = len;

        while (n >= 4) {
                uint32_t k = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
                             (uint32_t)d[3] << 24;
                k *= m;
                k ^= k >> 24;
                k *= m;
                h *= m;
                h ^= k;
                d += 4;
                n -= 4;
        }
        switch (n) {
        case 3:
                h ^= (uint32_t)d[2] << 16;
                /* fall through */
        case 2:
                h ^= (uint32_t)d[1] << 8;
                /* fall through */
        case 1:
                h ^= d[0];
                h *= m;
        }
        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return (int32_t)((h & 0x7fffffff) % (uint32_t)partitions);
}
