/*
 * test_it_pipeline: the whole platform end to end, against the real `flashstream
 * broker` process and a real redis-server. A seeded simulated sale is produced, the
 * three consumers run over it, and the test checks, from the simulator's own event
 * files and independently of the consumers' code:
 *  - every dispatch decision decodes with its schema, one per created shipment, with
 *    the deterministic id of its source event;
 *  - users' and stock features equal a count over the events file;
 *  - a consumer SIGKILLed several times mid-stream and restarted leaves every feature
 *    exactly as one clean pass would (exactly-once features).
 * Under deploy/valgrind.sh ($FLS_VALGRIND set) every consumer runs under memcheck, 20-50x
 * slower: each wait and the suite's time-out grow by fls_t_slowdown(), and the simulated
 * sale is half as dense (sim_rate()). The four tests then take 9-14 min on 2 shared
 * cores; at the normal density the first one alone needed over 5 min. What the tests
 * assert is the same in both runs.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/internal/ordered-set.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "testutil.h"

static fls_tenv_t env;

static void setup(void)
{
        const char *e = fls_t_start(&env, 6);
        cr_assert_null(e, "%s", e);
}

static void teardown(void)
{
        fls_t_fini(&env);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 600);

FLS_T_SCALE_TIMEOUTS()

/* Baseline click events per simulated second. Under memcheck half the simulator's
 * default: 29k click events instead of 58k for the full run, still 146 created
 * shipments (decisions) and 95 of the first 100 users with views. */
static const char *sim_rate(void)
{
        return fls_t_slowdown() > 1 ? "--sim.rate=250" : "--sim.rate=500";
}

static int64_t start_ts(void)
{
        /* Ten minutes ago, on a minute boundary: inside input.max_future_ms and
         * fixed for the run. */
        return ((int64_t)time(NULL) - 600) / 60 * 60000;
}

static void simulate(const char *extra_duration, int64_t t0)
{
        char ts[64], out[400];
        char *o = NULL;
        int rc;

        snprintf(ts, sizeof(ts), "--sim.start_ts=%" PRId64, t0);
        snprintf(out, sizeof(out), "--sim.out_dir=%s/sim", env.dir);
        {
                const char *args[] = {"simulate",
                                      "--sim.realtime=false",
                                      extra_duration,
                                      ts,
                                      out,
                                      "--sim.users=2000",
                                      sim_rate(),
                                      "--sim.progress_ms=0",
                                      NULL};
                rc = fls_t_run(&env, &o, args);
        }
        free(o);
        cr_assert_eq(rc, 0, "simulate exited %d", rc);
}

static pid_t consume_log(const char *name, const char *logname, const char *const *extra)
{
        char log[400];
        const char *args[16] = {"consume", name, "--batch.max_ms=20",
                                "--kafka.session.timeout.ms=6000", "--metrics.port=-1"};
        int n = 5;

        for (int i = 0; extra && extra[i] && n < 15; i++)
                args[n++] = extra[i];
        args[n] = NULL;
        snprintf(log, sizeof(log), "%s/%s.log", env.dir, logname);
        return fls_t_spawn(&env, log, args);
}

static pid_t consume(const char *name, const char *const *extra)
{
        return consume_log(name, name, extra);
}

/* Rows of a simulator CSV. */
static long count_lines(const char *file)
{
        char path[400];
        long n;
        snprintf(path, sizeof(path), "%s/sim/%s", env.dir, file);
        n = fls_t_csv_rows(path);
        cr_assert_geq(n, 0, "%s", path);
        return n;
}

static long applied(const char *topic)
{
        return fls_t_emitted(&env, topic, 6);
}

static void wait_applied(const char *topic, long want)
{
        long got = 0;
        for (int i = 0; i < 3000 * fls_t_slowdown() && (got = applied(topic)) < want; i++)
                usleep(100000);
        cr_assert_eq(got, want, "%s: %ld of %ld messages done", topic, got, want);
}

static void stop(pid_t pid)
{
        kill(pid, SIGTERM);
        /* fls_t_wait allows 10x under memcheck, which also checks leaks at exit. */
        cr_assert_eq(fls_t_wait(pid, 5000), 0, "consumer did not exit 0 within 5 s");
}

/* ---- independent expectations from the events files ------------------------ */

struct user {
        char id[32];
        long n[6];
};

static const char *const ctypes[] = {"VIEW",     "CLICK",       "SEARCH",
                                     "ADD_CART", "REMOVE_CART", "PURCHASE"};
static const char *const cfields[] = {"n_view",     "n_click",       "n_search",
                                      "n_cart_add", "n_cart_remove", "n_purchase"};

/* Counts event types for users u1..u<nu> from clickstream.csv. */
static void count_users(struct user *us, int nu)
{
        char path[400], line[2048];
        FILE *fp;

        for (int i = 0; i < nu; i++) {
                memset(&us[i], 0, sizeof(us[i]));
                snprintf(us[i].id, sizeof(us[i].id), "u%d", i + 1);
        }
        snprintf(path, sizeof(path), "%s/sim/clickstream.csv", env.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        cr_assert_not_null(fgets(line, sizeof(line), fp));
        while (fgets(line, sizeof(line), fp)) {
                char *f[4], *save = NULL, *s = line;
                int k = 0, u;
                for (; k < 4 && (f[k] = strtok_r(s, ",", &save)); k++)
                        s = NULL;
                if (k < 4 || f[1][0] != 'u')
                        continue;
                u = atoi(f[1] + 1);
                if (u < 1 || u > nu)
                        continue;
                for (int t = 0; t < 6; t++)
                        if (strcmp(f[3], ctypes[t]) == 0)
                                us[u - 1].n[t]++;
        }
        fclose(fp);
}

static long json_num(const char *json, const char *field)
{
        char pat[64];
        const char *p;
        snprintf(pat, sizeof(pat), "\"%s\":", field);
        p = strstr(json, pat);
        return p ? atol(p + strlen(pat)) : 0;
}

static void check_users(int nu)
{
        struct user *us = calloc((size_t)nu, sizeof(*us));
        int checked = 0;

        count_users(us, nu);
        for (int i = 0; i < nu; i++) {
                const char *args[] = {"features", "user", us[i].id, NULL};
                char *out = NULL;
                int rc = fls_t_run(&env, &out, args);
                cr_assert_eq(rc, 0, "features user %s exited %d", us[i].id, rc);
                for (int t = 0; t < 6; t++)
                        cr_assert_eq(json_num(out, cfields[t]), us[i].n[t],
                                     "user %s %s: %ld in Redis, %ld in the events\n%s",
                                     us[i].id, cfields[t], json_num(out, cfields[t]),
                                     us[i].n[t], out);
                checked += us[i].n[0] > 0;
                free(out);
        }
        cr_assert_gt(checked, nu / 2, "too few users had events to compare");
        free(us);
}

/* Units placed per sku:warehouse for a few keys, against orders.csv. */
static void check_stock(void)
{
        char path[400], line[2048], keys[5][64];
        long want[5] = {0};
        int nk = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/sim/orders.csv", env.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        cr_assert_not_null(fgets(line, sizeof(line), fp));
        /* event_id,type,order_id,user_id,sku,warehouse_id,quantity,... */
        while (fgets(line, sizeof(line), fp)) {
                char *f[7], *save = NULL, *s = line, key[64];
                int k = 0, j;
                for (; k < 7 && (f[k] = strtok_r(s, ",", &save)); k++)
                        s = NULL;
                if (k < 7 || strcmp(f[1], "PLACED") != 0)
                        continue;
                snprintf(key, sizeof(key), "%s:%s", f[4], f[5]);
                for (j = 0; j < nk && strcmp(keys[j], key); j++)
                        ;
                if (j == nk && nk < 5)
                        snprintf(keys[nk++], sizeof(keys[0]), "%s", key);
                if (j < nk)
                        want[j] += atol(f[6]);
        }
        fclose(fp);
        cr_assert_gt(nk, 0, "no PLACED order lines");
        for (int j = 0; j < nk; j++) {
                const char *args[] = {"features", "stock", keys[j], NULL};
                char *out = NULL;
                cr_assert_eq(fls_t_run(&env, &out, args), 0);
                cr_assert_eq(json_num(out, "u_placed"), want[j], "%s: %s", keys[j], out);
                free(out);
        }
}

/* Consumes dispatch-decisions and decodes every record with the schema. */
static void check_decisions(long want)
{
        char err[512];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        fls_codec_t *codec = fls_codec_new(FLS_SCHEMA_DIR, "dispatch-decisions-value", 0,
                                           1 << 20, err, sizeof(err));
        rd_kafka_t *rk;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(6);
        long got = 0, idle = 0;
        int id_idx, order_idx;

        cr_assert_not_null(codec, "%s", err);
        id_idx = fls_codec_field(codec, "decision_id");
        order_idx = fls_codec_field(codec, "order_id");
        rd_kafka_conf_set(kc, "bootstrap.servers", env.bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "test-reader", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        for (int p = 0; p < 6; p++)
                rd_kafka_topic_partition_list_add(l, "dispatch-decisions", p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        while (idle < 30) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                char detail[256];
                size_t len, olen;
                const char *id;
                if (!m) {
                        idle++;
                        continue;
                }
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                idle = 0;
                cr_assert_eq(fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                              sizeof(detail)),
                             FLS_BAD_NONE, "decision does not decode: %s", detail);
                id = fls_avro_str(v, id_idx, &len);
                cr_assert(len > 0 && strncmp(id, "shipments/", 10) == 0, "id %.*s",
                          (int)len, id);
                fls_avro_str(v, order_idx, &olen);
                cr_assert(m->key_len == olen, "keyed by order");
                got++;
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        fls_codec_destroy(codec);
        cr_assert_eq(got, want, "%ld decisions for %ld created shipments", got, want);
}

static long created_shipments(void)
{
        char path[400], line[2048];
        long n = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/sim/shipments.csv", env.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        while (fgets(line, sizeof(line), fp))
                n += strstr(line, ",CREATED,") != NULL;
        fclose(fp);
        return n;
}

Test(pipeline, full_run_features_and_decisions)
{
        pid_t c[3];
        const char *names[] = {"clickstream", "orders", "shipments"};

        simulate("--sim.duration_s=20", start_ts());
        cr_assert_gt(created_shipments(), 0, "no shipment created: no decision to check");
        for (int i = 0; i < 3; i++)
                c[i] = consume(names[i], NULL);
        wait_applied("clickstream", count_lines("clickstream.csv"));
        wait_applied("orders", count_lines("orders.csv"));
        wait_applied("shipments", count_lines("shipments.csv"));
        /* SIGHUP reloads the models without a restart. Each consumer serves it between
         * batches: wait for all three (under memcheck a reload takes seconds). */
        for (int i = 0; i < 3; i++)
                kill(c[i], SIGHUP);
        for (int i = 0;
             i < 100 * fls_t_slowdown() &&
             (fls_t_log_count(&env, "orders", "SIGHUP: models reloaded") == 0 ||
              fls_t_log_count(&env, "clickstream", "SIGHUP: models reloaded") == 0 ||
              fls_t_log_count(&env, "shipments", "SIGHUP: models reloaded") == 0);
             i++)
                usleep(50000);
        cr_assert_eq(fls_t_log_count(&env, "orders", "SIGHUP: models reloaded"), 1);
        cr_assert_eq(fls_t_log_count(&env, "clickstream", "SIGHUP: models reloaded"), 1);
        cr_assert_eq(fls_t_log_count(&env, "shipments", "SIGHUP: models reloaded"), 1);
        for (int i = 0; i < 3; i++)
                stop(c[i]);
        check_users(100);
        check_stock();
        check_decisions(created_shipments());
}

Test(pipeline, sigkill_mid_stream_keeps_features_exact)
{
        const char *small[] = {"--batch.max_messages=300", NULL};
        long want;
        pid_t c;

        simulate("--sim.duration_s=15", start_ts());
        want = count_lines("clickstream.csv");
        c = consume("clickstream", small);
        /* Three kills at different points of the stream, each followed by a restart
         * of the same consumer (same group, same Redis). */
        for (int k = 0; k < 3; k++) {
                long at = want * (k + 1) / 5, got;
                for (int i = 0;
                     i < 3000 * fls_t_slowdown() && (got = applied("clickstream")) < at;
                     i++)
                        usleep(20000);
                kill(c, SIGKILL);
                fls_t_wait(c, 5000);
                cr_assert_lt(applied("clickstream"), want, "the kill came too late");
                c = consume("clickstream", small);
        }
        wait_applied("clickstream", want);
        stop(c);
        check_users(150);
}

Test(pipeline, two_instances_share_partitions_and_rebalance)
{
        const char *small[] = {"--batch.max_messages=200", NULL};
        long want;
        pid_t a, b;

        simulate("--sim.duration_s=25", start_ts());
        want = count_lines("clickstream.csv");
        /* Two instances of one consumer share the partitions; the second leaves
         * mid-stream and the rebalance gives its partitions to the first. */
        a = consume_log("clickstream", "a", small);
        b = consume_log("clickstream", "b", small);
        for (int i = 0; i < 1500 * fls_t_slowdown() &&
                        fls_t_log_count(&env, "b", "assigned clickstream") == 0;
             i++)
                usleep(20000);
        cr_assert_gt(fls_t_log_count(&env, "b", "assigned clickstream"), 0,
                     "b never got partitions");
        cr_assert_lt(applied("clickstream"), want, "the stream ended before b left");
        stop(b);
        wait_applied("clickstream", want);
        stop(a);
        cr_assert_gt(fls_t_log_count(&env, "a", "assigned clickstream"), 0);
        cr_assert_gt(fls_t_log_count(&env, "a", "assigned clickstream") +
                         fls_t_log_count(&env, "b", "assigned clickstream"),
                     6, "no partition changed hands");
        check_users(150);
}

Test(pipeline, redis_killed_and_restarted_mid_stream)
{
        const char *small[] = {"--batch.max_messages=300", "--redis.retry_max_ms=200",
                               NULL};
        long want;
        pid_t c;

        simulate("--sim.duration_s=15", start_ts());
        want = count_lines("clickstream.csv");
        c = consume("clickstream", small);
        for (int k = 0; k < 2; k++) {
                long at = want * (k + 1) / 4;
                for (int i = 0;
                     i < 3000 * fls_t_slowdown() && applied("clickstream") < at; i++)
                        usleep(20000);
                /* appendfsync everysec: the restarted Redis may have lost the last
                 * second of batches; the consumer must notice and replay them. */
                fls_t_redis_stop(&env, SIGKILL);
                usleep(500000);
                cr_assert_eq(fls_t_redis_start(&env), 0);
        }
        wait_applied("clickstream", want);
        stop(c);
        check_users(150);
}
