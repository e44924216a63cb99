/*
 * bench_ceiling.c: the ceiling probe of bench/consumer-bench.sh. It does the part of a
 * consumer's work that every consumer must do and nothing else: Kafka -> Avro ->
 * Redis, with no features, no model, no decisions and no outputs. The consumer's
 * sustained rate divided by this one says how much of the machine the consumer's own
 * work takes.
 *
 * Same pieces as the runtime: a high-level consumer built by fls_kafka_conf (the
 * project's librdkafka defaults), rd_kafka_consume_batch_queue with batch.max_messages
 * and batch.max_ms, fls_codec_decode into the codec's reused value, then one
 * HINCRBY per event (the event's key under the partition's hash tag, like a
 * per-user counter), appended to one hiredis pipeline per batch and read back before
 * the next batch. It stops after bench.events messages and prints one line:
 *   ceiling topic=T events=N seconds=S events_per_s=R cpu_s=C bad=B
 * timed from the first message consumed to the last one's Redis reply.
 *
 *   bench_ceiling --bootstrap.file=F --redis.port=P --bench.events=N
 *                 [--bench.topic=clickstream --bench.subject=clickstream-value]
 *                 [--consumer.group=G] [--batch.max_messages=2000] [kafka.*=...]
 * Cost: one core for the loop plus librdkafka's threads; the HINCRBY keys
 * (bench:{topic.partition}:<key>) stay in Redis: use a throwaway Redis.
 */
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "settings.h"

static const fls_conf_def_t bench_conf[] = {
    {"bench.topic", FLS_CONF_STR, "clickstream", 1, 0, "Input topic to read.", NULL},
    {"bench.subject", FLS_CONF_STR, "clickstream-value", 1, 0,
     "Registry subject of the topic's values.", NULL},
    {"bench.events", FLS_CONF_INT, "0", 0, 1e12,
     "Stop after this many messages (required: the events pre-produced).", NULL},
    {"bench.timeout_s", FLS_CONF_INT, "600", 1, 86400,
     "Give up (exit 1) after this long without reaching bench.events.", NULL},
    {NULL, 0, NULL, 0, 0, NULL, NULL}};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* Reads the replies of n appended commands; -1 on a dead context or an error reply. */
static int drain(redisContext *rc, int n, char *errstr, size_t errstr_size)
{
        for (int i = 0; i < n; i++) {
                redisReply *rep = NULL;
                if (redisGetReply(rc, (void **)&rep) != REDIS_OK || !rep) {
                        snprintf(errstr, errstr_size, "redis: %s", rc->errstr);
                        return -1;
                }
                int bad = rep->type == REDIS_REPLY_ERROR;
                if (bad)
                        snprintf(errstr, errstr_size, "redis: %s", rep->str);
                freeReplyObject(rep);
                if (bad)
                        return -1;
        }
        return 0;
}

static int run(const fls_conf_t *conf, char *errstr, size_t errstr_size)
{
        const char *topic = fls_conf_str(conf, "bench.topic");
        int64_t want = fls_conf_int(conf, "bench.events");
        int max_msgs = (int)fls_conf_int(conf, "batch.max_messages");
        int max_ms = (int)fls_conf_int(conf, "batch.max_ms");
        double timeout = (double)fls_conf_int(conf, "bench.timeout_s");
        char group[256], err[256];
        int rv = -1;
        rd_kafka_t *rk = NULL;
        rd_kafka_queue_t *q = NULL;
        redisContext *rc = NULL;
        fls_codec_t *codec = NULL;
        rd_kafka_message_t **msgs = calloc((size_t)max_msgs, sizeof(*msgs));
        int64_t seen = 0, bad = 0;
        double t_first = 0, t_last = 0, t_start = now_s(), c_first = 0, c_last = 0;

        if (!msgs) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        if (*fls_conf_str(conf, "consumer.group"))
                snprintf(group, sizeof(group), "%s",
                         fls_conf_str(conf, "consumer.group"));
        else
                snprintf(group, sizeof(group), "bench-ceiling-%ld", (long)getpid());
        codec = fls_codec_new(
            fls_conf_str(conf, "schema.dir"), fls_conf_str(conf, "bench.subject"), 0,
            (size_t)fls_conf_int(conf, "input.max_message_bytes"), errstr, errstr_size);
        if (!codec)
                goto out;
        {
                struct timeval tv = {
                    (time_t)(fls_conf_int(conf, "redis.timeout_ms") / 1000),
                    (suseconds_t)(fls_conf_int(conf, "redis.timeout_ms") % 1000 * 1000)};
                rc = redisConnectWithTimeout(fls_conf_str(conf, "redis.host"),
                                             (int)fls_conf_int(conf, "redis.port"), tv);
                if (!rc || rc->err) {
                        snprintf(errstr, errstr_size, "redis connect: %s",
                                 rc ? rc->errstr : "out of memory");
                        goto out;
                }
                redisSetTimeout(rc, tv);
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

        while (seen < want && !stop) {
                if (now_s() - t_start > timeout) {
                        snprintf(errstr, errstr_size,
                                 "timeout: %lld of %lld messages after %.0f s",
                                 (long long)seen, (long long)want, timeout);
                        goto out;
                }
                ssize_t n =
                    rd_kafka_consume_batch_queue(q, max_ms, msgs, (size_t)max_msgs);
                if (n < 0) {
                        snprintf(errstr, errstr_size, "consume: %s",
                                 rd_kafka_err2str(rd_kafka_last_error()));
                        goto out;
                }
                int pending = 0;
                for (ssize_t k = 0; k < n; k++) {
                        rd_kafka_message_t *m = msgs[k];
                        avro_value_t *v;
                        char detail[256];
                        if (m->err) {
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (seen++ == 0) {
                                t_first = now_s();
                                c_first = cpu_s();
                        }
                        if (fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                             sizeof(detail)) != FLS_BAD_NONE) {
                                bad++;
                        } else {
                                char tag[160];
                                int tl =
                                    snprintf(tag, sizeof(tag), "bench:{%s.%d}:", topic,
                                             (int)m->partition);
                                /* key = tag + message key; "%b%b" avoids a copy. */
                                redisAppendCommand(rc, "HINCRBY %b%b n 1", tag,
                                                   (size_t)tl,
                                                   m->key ? (const char *)m->key : "",
                                                   m->key ? m->key_len : 0);
                                pending++;
                        }
                        rd_kafka_message_destroy(m);
                }
                if (pending && drain(rc, pending, errstr, errstr_size))
                        goto out;
                if (n > 0 && seen) {
                        t_last = now_s();
                        c_last = cpu_s();
                }
        }
        if (seen < want) {
                snprintf(errstr, errstr_size, "stopped after %lld of %lld messages",
                         (long long)seen, (long long)want);
                goto out;
        }
        printf("ceiling topic=%s events=%lld seconds=%.3f events_per_s=%.0f cpu_s=%.2f "
               "bad=%lld\n",
               topic, (long long)seen, t_last - t_first,
               t_last > t_first ? (double)seen / (t_last - t_first) : 0.0,
               c_last - c_first, (long long)bad);
        fflush(stdout);
        rv = 0;
out:
        if (rk)
                rd_kafka_consumer_close(rk);
        if (q)
                rd_kafka_queue_destroy(q);
        if (rk)
                rd_kafka_destroy(rk);
        if (rc)
                redisFree(rc);
        fls_codec_destroy(codec);
        free(msgs);
        return rv;
}

int main(int argc, char **argv)
{
        const fls_conf_def_t *tables[] = {fls_settings_conf, bench_conf, NULL};
        char errstr[512];
        int help = 0;
        fls_conf_t *conf = fls_conf_new(tables, errstr, sizeof(errstr));
        if (!conf) {
                fprintf(stderr, "bench_ceiling: %s\n", errstr);
                return 1;
        }
        if (fls_conf_load_args(conf, &argc, argv, &help, errstr, sizeof(errstr)) ||
            argc > 1) {
                fprintf(stderr, "bench_ceiling: %s\n",
                        argc > 1 ? "unexpected argument" : errstr);
                fls_conf_destroy(conf);
                return 2;
        }
        if (help || fls_conf_int(conf, "bench.events") < 1) {
                fprintf(help ? stdout : stderr,
                        "usage: bench_ceiling --bench.events=N [options]\n");
                fls_conf_print_help(conf, NULL, help ? stdout : stderr);
                fls_conf_destroy(conf);
                return help ? 0 : 2;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        int rv = run(conf, errstr, sizeof(errstr));
        if (rv)
                fprintf(stderr, "bench_ceiling: %s\n", errstr);
        fls_conf_destroy(conf);
        return rv ? 1 : 0;
}
