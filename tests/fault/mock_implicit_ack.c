/*
 * mock_implicit_ack: shows, outside flashstream, why the fault suite lost decisions
 * (README, "Faults"). It plays the producing end of the flow Kafka -> Avro -> Redis ->
 * model -> Kafka against librdkafka's own mock cluster: an idempotent producer writes
 * bursts of numbered messages to one partition, with one injected Produce error before
 * each burst, then reads the partition back. The mock appends a request that follows a
 * failed one (it checks idempotent sequences only for transactional producers), so
 * librdkafka reports the failed messages delivered without an offset (its "implicit
 * ack") although the log never got them. Prints the delivery reports and what the log
 * holds; exit status 1 when a message reported delivered is missing.
 *   cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -o mia tests/fault/mock_implicit_ack.c \
 *      $(pkg-config --cflags --libs rdkafka)
 *   ./mia [IDEMPOTENCE=true] [MAX_IN_FLIGHT=5] [ERROR_CODE=6] [MESSAGES=30000] [ERRORS=1]
 * (6 NOT_LEADER_FOR_PARTITION, 7 REQUEST_TIMED_OUT). Takes ~10 s; timing decides how
 * many requests are in flight, so a run loses 0 to a few messages.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long dr_ok, dr_err, dr_no_offset;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        if (m->err)
                dr_err++;
        else if (m->offset < 0)
                dr_no_offset++;
        else
                dr_ok++;
}

static void nap_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static int produce(rd_kafka_t *p, int i)
{
        char v[16];
        int l = snprintf(v, sizeof(v), "%d", i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_PARTITION(0),
                                      RD_KAFKA_V_VALUE(v, (size_t)l),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(p, 1);
        return e ? -1 : 0;
}

int main(int argc, char **argv)
{
        const char *idem = argc > 1 ? argv[1] : "true";
        const char *inflight = argc > 2 ? argv[2] : "5";
        int code = argc > 3 ? atoi(argv[3]) : RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
        int n = argc > 4 ? atoi(argv[4]) : 30000;
        int nerr = argc > 5 ? atoi(argv[5]) : 1; /* errors before each burst */
        char err[512], boot[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new(), *cc;
        rd_kafka_t *p, *co;
        rd_kafka_mock_cluster_t *mc;
        rd_kafka_topic_partition_list_t *l;
        char *seen;
        long got = 0, lost = 0;

        if (n < 1 || !(seen = calloc((size_t)n, 1)))
                return 2;
        if (rd_kafka_conf_set(c, "test.mock.num.brokers", "1", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "enable.idempotence", idem, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "max.in.flight", inflight, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "linger.ms", "0", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "batch.num.messages", "50", err, sizeof(err))) {
                fprintf(stderr, "conf: %s\n", err);
                return 2;
        }
        rd_kafka_conf_set_dr_msg_cb(c, on_dr);
        if (!(p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err)))) {
                fprintf(stderr, "producer: %s\n", err);
                return 2;
        }
        mc = rd_kafka_handle_mock_cluster(p);
        rd_kafka_mock_topic_create(mc, "t", 1, 1);
        snprintf(boot, sizeof(boot), "%s", rd_kafka_mock_cluster_bootstraps(mc));
        for (int i = 0; i < n; i++) {
                if (i % 1000 == 0) {
                        /* Idle, then errors for the first requests of the burst:
                         * the burst's next requests go out while they are in flight. */
                        rd_kafka_flush(p, 10000);
                        nap_ms(50);
                        for (int k = 0; k < nerr; k++)
                                rd_kafka_mock_push_request_errors(mc, 0 /* Produce */, 1,
                                                                  code);
                }
                if (produce(p, i))
                        return 2;
                rd_kafka_poll(p, 0);
        }
        rd_kafka_flush(p, 30000);

        cc = rd_kafka_conf_new();
        if (rd_kafka_conf_set(cc, "bootstrap.servers", boot, err, sizeof(err)) ||
            rd_kafka_conf_set(cc, "group.id", "mock_implicit_ack", err, sizeof(err)) ||
            rd_kafka_conf_set(cc, "enable.partition.eof", "true", err, sizeof(err)) ||
            !(co = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err)))) {
                fprintf(stderr, "consumer: %s\n", err);
                return 2;
        }
        rd_kafka_poll_set_consumer(co);
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, "t", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(co, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(co, 5000);
                int eof;
                if (!m)
                        break;
                eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
                if (!m->err && m->len > 0 && m->len < 16) {
                        char b[16];
                        int i;
                        memcpy(b, m->payload, m->len);
                        b[m->len] = '\0';
                        i = atoi(b);
                        if (i >= 0 && i < n && !seen[i]++)
                                got++;
                }
                rd_kafka_message_destroy(m);
                if (eof)
                        break;
        }
        for (int i = 0; i < n; i++)
                if (!seen[i] && ++lost <= 10)
                        printf("lost: message %d\n", i);
        printf("librdkafka %s, enable.idempotence=%s, max.in.flight=%s, injected %s: "
               "%d produced; delivered %ld with an offset, %ld without, %ld failed; "
               "the log holds %ld, lost %ld\n",
               rd_kafka_version_str(), idem, inflight,
               rd_kafka_err2name((rd_kafka_resp_err_t)code), n, dr_ok, dr_no_offset,
               dr_err, got, lost);
        rd_kafka_consumer_close(co);
        rd_kafka_destroy(co);
        rd_kafka_destroy(p);
        free(seen);
        return lost > 0 && dr_err == 0 ? 1 : 0;
}
