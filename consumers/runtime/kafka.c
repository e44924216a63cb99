/*
 * kafka: librdkafka configuration and producing with back-pressure.
 *
 * Where the project's defaults differ from librdkafka's, the reason is a measurement
 * in ../shared/NOTES.md: without queued.min.messages raised the high-level consumer
 * stalls fetching (~5x slower), and the default fetch.wait.max.ms holds empty fetches
 * for 500 ms, which is the whole latency budget of a flash-sale decision; and with
 * Nagle's algorithm on, every flush waited ~40 ms for a delayed ACK (measured: 42 ms
 * per batch whatever its size).
 */
#include "kafka.h"

#include <stdio.h>
#include <string.h>

#include "settings.h"

static int set(rd_kafka_conf_t *kc, const char *name, const char *value, char *errstr,
               size_t errstr_size)
{
        char err[512];
        if (rd_kafka_conf_set(kc, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "kafka.%s=%s: %s", name, value, err);
                return -1;
        }
        return 0;
}

struct apply {
        rd_kafka_conf_t *kc;
        char *errstr;
        size_t errstr_size;
};

static int apply_one(const char *name, const char *value, void *opaque)
{
        struct apply *a = opaque;
        return set(a->kc, name, value, a->errstr, a->errstr_size);
}

rd_kafka_conf_t *fls_kafka_conf(const fls_conf_t *conf, fls_kafka_role_t role,
                                const char *group_id, char *errstr, size_t errstr_size)
{
        static const char *const consumer_defaults[][2] = {
            {"queued.min.messages", "1000000"},
            /* The prefetch queue's cap, payload bytes for the whole consumer queue.
             * It costs several times its size in the broker threads' malloc arenas
             * (an op per message, the fetch buffers, overshoot by one fetch),
             * and glibc keeps that resident after the queue drains; measured on the
             * clickstream RSS run: 65536 (librdkafka's default) ~290 MiB, 32768
             * ~230 MiB, 8192 ~100 MiB. But a full queue stops fetching until the
             * broker thread next wakes (2.0.2 has no fetch.queue.backoff.ms), so a
             * fast reader is held to a rate proportional to the cap: the ceiling
             * probe (bench_ceiling, 1M events) took 3.1x as long at 8192, 1.5x at
             * 16384 and no longer at 32768, the smallest cap tried that did not slow
             * it (issue 7's speed target is half that probe's rate). */
            {"queued.max.messages.kbytes", "32768"},
            {"fetch.wait.max.ms", "10"},
            /* Eager, not cooperative-sticky: librdkafka 2.0.2 (Debian 12) aborts
             * closing a cooperative-sticky consumer that has no assignment yet
             * (rdkafka_sticky_assignor.c: "assertion assignor_state failed",
             * librdkafka issue 4312, fixed in later releases; seen here on SIGTERM during
             * the first rebalance) and can hang one that receives an assignment
             * while closing (issue 4527). The cost: a rebalance pauses every
             * member's partitions, not only those that move. */
            {"partition.assignment.strategy", "range,roundrobin"},
            {"enable.auto.offset.store", "false"},
            {"enable.auto.commit", "true"},
            {"auto.commit.interval.ms", "1000"},
            {"auto.offset.reset", "earliest"},
            {"session.timeout.ms", "10000"},
            {"heartbeat.interval.ms", "1000"},
            {"reconnect.backoff.max.ms", "1000"},
            {"socket.nagle.disable", "true"},
            {NULL, NULL},
        };
        static const char *const producer_defaults[][2] = {
            {"enable.idempotence", "true"},
            {"linger.ms", "2"},
            {"reconnect.backoff.max.ms", "1000"},
            /* Nagle plus delayed ACKs held every produce acknowledgement ~40 ms,
             * which is the whole batch when outputs are flushed per batch. */
            {"socket.nagle.disable", "true"},
            {NULL, NULL},
        };
        const char *const(*defs)[2] =
            role == FLS_KAFKA_CONSUMER ? consumer_defaults : producer_defaults;
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        struct apply a = {kc, errstr, errstr_size};
        char bootstrap[1024];

        for (int i = 0; defs[i][0]; i++)
                if (set(kc, defs[i][0], defs[i][1], errstr, errstr_size))
                        goto fail;
        if (role == FLS_KAFKA_CONSUMER &&
            set(kc, "group.id", group_id, errstr, errstr_size))
                goto fail;
        if (fls_settings_bootstrap(conf, bootstrap, sizeof(bootstrap), errstr,
                                   errstr_size))
                goto fail;
        if (*bootstrap && set(kc, "bootstrap.servers", bootstrap, errstr, errstr_size))
                goto fail;
        if (fls_conf_kafka_foreach(conf, apply_one, &a))
                goto fail;
        return kc;
fail:
        rd_kafka_conf_destroy(kc);
        return NULL;
}

int fls_kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                      const void *value, size_t len, rd_kafka_headers_t *hdrs,
                      int timeout_ms, char *errstr, size_t errstr_size)
{
        int waited = 0;

        for (;;) {
                rd_kafka_resp_err_t err;
                if (hdrs)
                        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                                RD_KAFKA_V_KEY(key, keylen),
                                                RD_KAFKA_V_VALUE((void *)value, len),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
                else
                        err = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                            RD_KAFKA_V_VALUE((void *)value, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (!err)
                        return 0;
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= timeout_ms) {
                        snprintf(errstr, errstr_size, "produce to %s: %s", topic,
                                 rd_kafka_err2str(err));
                        return -1;
                }
                /* The local queue is full: serve delivery reports, which frees it. */
                rd_kafka_poll(rk, 10);
                waited += 10;
        }
}
