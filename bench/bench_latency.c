/*
 * bench_latency.c: end-to-end latency probe of bench/consumer-bench.sh, at the very
 * end of Kafka -> Avro -> Redis -> model -> Kafka. It consumes a consumer's output
 * topic and, for every decision, records the wall clock when the decision became
 * visible minus the decision's event_ts (the triggering event's time; in the
 * simulator's realtime mode that is the wall clock when the event was made). So the
 * figure holds the simulator's produce, the broker, the consumer's batch and Redis
 * round trips, the decision's produce and this probe's own fetch (fetch.wait.max.ms
 * from the project's defaults).
 *
 * Decisions whose event_ts is earlier than the first one seen plus bench.warmup_ms are
 * left out (group join and the first fetches). It stops bench.idle_s after the last
 * decision (once one was seen) or after bench.max_s, and prints one line:
 *   latency topic=T decisions=N skipped=W p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..
 *
 *   bench_latency --bootstrap.file=F --bench.topic=marketing-actions
 *                 --bench.subject=marketing-actions-value [--bench.warmup_ms=2000]
 * Cost: 8 bytes per decision kept, grown by doubling; decode into the codec's value.
 */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "settings.h"

static const fls_conf_def_t bench_conf[] = {
    {"bench.topic", FLS_CONF_STR, "marketing-actions", 1, 0, "Output topic to read.",
     NULL},
    {"bench.subject", FLS_CONF_STR, "marketing-actions-value", 1, 0,
     "Registry subject of the topic's values.", NULL},
    {"bench.ts_field", FLS_CONF_STR, "event_ts", 1, 0,
     "The record's event-time field (ms). \"ts\" on an input topic measures the "
     "transport alone: simulator, broker and this probe, no consumer.",
     NULL},
    {"bench.warmup_ms", FLS_CONF_INT, "2000", 0, 3600000,
     "Leave out decisions of events earlier than the first one's time plus this.", NULL},
    {"bench.idle_s", FLS_CONF_INT, "5", 1, 3600,
     "Stop this long after the last decision, once one was seen.", NULL},
    {"bench.max_s", FLS_CONF_INT, "900", 1, 86400, "Stop after this long in any case.",
     NULL},
    {NULL, 0, NULL, 0, 0, NULL, NULL}};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static double mono_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v. */
static double pct(const double *v, size_t n, double p)
{
        size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
        if (i < 1)
                i = 1;
        if (i > n)
                i = n;
        return v[i - 1];
}

static int run(const fls_conf_t *conf, char *errstr, size_t errstr_size)
{
        const char *topic = fls_conf_str(conf, "bench.topic");
        double warmup = (double)fls_conf_int(conf, "bench.warmup_ms");
        double idle = (double)fls_conf_int(conf, "bench.idle_s");
        double max_s = (double)fls_conf_int(conf, "bench.max_s");
        char group[256], err[256];
        int rv = -1, ts_idx;
        rd_kafka_t *rk = NULL;
        rd_kafka_queue_t *q = NULL;
        fls_codec_t *codec = NULL;
        enum { BATCH = 1000 };
        rd_kafka_message_t *msgs[BATCH];
        double *lat = NULL, first_ts = -1, t_start = mono_s(), t_lastmsg = 0;
        size_t n_lat = 0, cap = 0, skipped = 0, bad = 0;

        if (*fls_conf_str(conf, "consumer.group"))
                snprintf(group, sizeof(group), "%s",
                         fls_conf_str(conf, "consumer.group"));
        else
                snprintf(group, sizeof(group), "bench-latency-%ld", (long)getpid());
        codec = fls_codec_new(fls_conf_str(conf, "schema.dir"),
                              fls_conf_str(conf, "bench.subject"), 0, 16 << 20, errstr,
                              errstr_size);
        if (!codec)
                goto out;
        ts_idx = fls_codec_field(codec, fls_conf_str(conf, "bench.ts_field"));
        if (ts_idx < 0) {
                snprintf(errstr, errstr_size, "%s has no field %s",
                         fls_conf_str(conf, "bench.subject"),
                         fls_conf_str(conf, "bench.ts_field"));
                goto out;
        }
        {
                rd_kafka_conf_t *kc =
                    fls_kafka_conf(conf, FLS_KAFKA_CONSUMER, group, errstr, errstr_size);
                if (!kc)
                        goto out;
                rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
                if (!rk) {
                        rd_kafka_conf_destroy(kc);
                        snprintf(errstr, errstr_size, "consumer: %s", err);
                        goto out;
                }
        }
        rd_kafka_poll_set_consumer(rk);
        q = rd_kafka_queue_get_consumer(rk);
        {
                rd_kafka_topic_partition_list_t *sub =
                    rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
                rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
                rd_kafka_topic_partition_list_destroy(sub);
                if (e) {
                        snprintf(errstr, errstr_size, "subscribe %s: %s", topic,
                                 rd_kafka_err2str(e));
                        goto out;
                }
        }
        /* Tells the script the probe is subscribed before the traffic starts. */
        fprintf(stderr, "bench_latency: subscribed to %s\n", topic);

        while (!stop) {
                double t = mono_s();
                if (t - t_start > max_s || (t_lastmsg > 0 && t - t_lastmsg > idle))
                        break;
                /* A short wait: the probe must not add its own batching delay. */
                ssize_t n = rd_kafka_consume_batch_queue(q, 5, msgs, BATCH);
                if (n < 0) {
                        snprintf(errstr, errstr_size, "consume: %s",
                                 rd_kafka_err2str(rd_kafka_last_error()));
                        goto out;
                }
                double now = wall_ms();
                for (ssize_t k = 0; k < n; k++) {
                        rd_kafka_message_t *m = msgs[k];
                        avro_value_t *v;
                        char detail[256];
                        if (!m->err &&
                            fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                             sizeof(detail)) == FLS_BAD_NONE) {
                                double ts = (double)fls_avro_long(v, ts_idx);
                                t_lastmsg = mono_s();
                                if (first_ts < 0)
                                        first_ts = ts;
                                if (ts < first_ts + warmup) {
                                        skipped++;
                                } else {
                                        if (n_lat == cap) {
                                                size_t nc = cap ? cap * 2 : 65536;
                                                double *nl =
                                                    realloc(lat, nc * sizeof(*nl));
                                                if (!nl) {
                                                        snprintf(errstr, errstr_size,
                                                                 "out of memory");
                                                        goto out;
                                                }
                                                lat = nl;
                                                cap = nc;
                                        }
                                        lat[n_lat++] = now - ts;
                                }
                        } else if (!m->err) {
                                bad++;
                        }
                        rd_kafka_message_destroy(m);
                }
        }
        if (n_lat == 0) {
                snprintf(errstr, errstr_size,
                         "no decisions on %s after the warm-up (%zu skipped, %zu bad)",
                         topic, skipped, bad);
                goto out;
        }
        qsort(lat, n_lat, sizeof(*lat), cmp_double);
        printf(
            "latency topic=%s decisions=%zu skipped=%zu bad=%zu p50_ms=%.1f p99_ms=%.1f "
            "p999_ms=%.1f max_ms=%.1f\n",
            topic, n_lat, skipped, bad, pct(lat, n_lat, 50), pct(lat, n_lat, 99),
            pct(lat, n_lat, 99.9), lat[n_lat - 1]);
        fflush(stdout);
        rv = 0;
out:
        if (rk)
                rd_kafka_consumer_close(rk);
        if (q)
                rd_kafka_queue_destroy(q);
        if (rk)
                rd_kafka_destroy(rk);
        fls_codec_destroy(codec);
        free(lat);
        return rv;
}

int main(int argc, char **argv)
{
        const fls_conf_def_t *tables[] = {fls_settings_conf, bench_conf, NULL};
        char errstr[512];
        int help = 0;
        fls_conf_t *conf = fls_conf_new(tables, errstr, sizeof(errstr));
        if (!conf) {
                fprintf(stderr, "bench_latency: %s\n", errstr);
                return 1;
        }
        if (fls_conf_load_args(conf, &argc, argv, &help, errstr, sizeof(errstr)) ||
            argc > 1) {
                fprintf(stderr, "bench_latency: %s\n",
                        argc > 1 ? "unexpected argument" : errstr);
                fls_conf_destroy(conf);
                return 2;
        }
        if (help) {
                printf("usage: bench_latency [options]\n");
                fls_conf_print_help(conf, NULL, stdout);
                fls_conf_destroy(conf);
                return 0;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        int rv = run(conf, errstr, sizeof(errstr));
        if (rv)
                fprintf(stderr, "bench_latency: %s\n", errstr);
        fls_conf_destroy(conf);
        return rv ? 1 : 0;
}
