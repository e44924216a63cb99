/*
 * test_it_orders: the orders consumer end to end on a simulated sale, against the real
 * `flashstream broker` process and a real redis-server, with the shipped models.
 * The consumer is SIGKILLed three times mid-stream and restarted; afterwards, for
 * every sku:warehouse of the simulator's orders.csv (counted here, independently of
 * the consumer's code):
 *  - stock equals receipts - placed + cancelled + refunded and is never negative,
 *    nothing is oversold (the simulator only sells what it has);
 *  - lifetime units sold (u_placed) equals the file's sum, per key and in total;
 *  - every restock signal decodes with its schema, is keyed sku:warehouse and carries
 *    a deterministic id from the orders topic.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "testutil.h"

#define NPART 6

static fls_tenv_t env;

static void setup(void)
{
        const char *e = fls_t_start(&env, NPART);
        cr_assert_null(e, "%s", e);
}

static void teardown(void)
{
        fls_t_fini(&env);
}

TestSuite(it_orders, .init = setup, .fini = teardown, .timeout = 400);

static long applied(void)
{
        return fls_t_emitted(&env, "orders", NPART);
}

static pid_t consume(void)
{
        char log[400];
        const char *args[] = {"consume",
                              "orders",
                              "--batch.max_messages=300",
                              "--batch.max_ms=20",
                              "--kafka.session.timeout.ms=6000",
                              "--metrics.port=-1",
                              NULL};
        snprintf(log, sizeof(log), "%s/orders.log", env.dir);
        return fls_t_spawn(&env, log, args);
}

struct cell {
        char key[48];
        long stock, placed;
};

#define HCAP (1 << 18)

/* Expected stock and units placed per sku:warehouse, from orders.csv (an open
 * addressing table of HCAP cells; the run has far fewer keys). */
static struct cell *expected(size_t *n, long *lines, long *units_total)
{
        char path[400], line[2048];
        struct cell *cs = calloc(HCAP, sizeof(*cs));
        size_t nc = 0, w = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/sim/orders.csv", env.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        cr_assert_not_null(cs);
        cr_assert_not_null(fgets(line, sizeof(line), fp));
        *lines = 0;
        *units_total = 0;
        while (fgets(line, sizeof(line), fp)) {
                char *f[7], *save = NULL, *s = line, key[48];
                uint64_t h = 1469598103934665603ULL;
                struct cell *c;
                int k = 0;
                long q;
                for (; k < 7 && (f[k] = strtok_r(s, ",", &save)); k++)
                        s = NULL;
                (*lines)++;
                /* STOCK_RECEIPT lines have empty order and user: strtok skips them. */
                if (strcmp(f[1], "STOCK_RECEIPT") == 0) {
                        snprintf(key, sizeof(key), "%s:%s", f[2], f[3]);
                        q = atol(f[4]);
                } else {
                        cr_assert_eq(k, 7);
                        snprintf(key, sizeof(key), "%s:%s", f[4], f[5]);
                        q = atol(f[6]);
                }
                for (const char *p = key; *p; p++)
                        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
                for (size_t i = h & (HCAP - 1);; i = (i + 1) & (HCAP - 1)) {
                        c = &cs[i];
                        if (!c->key[0]) {
                                snprintf(c->key, sizeof(c->key), "%s", key);
                                nc++;
                                break;
                        }
                        if (strcmp(c->key, key) == 0)
                                break;
                }
                cr_assert_lt(nc, HCAP / 2);
                if (strcmp(f[1], "PLACED") == 0) {
                        c->stock -= q;
                        c->placed += q;
                        *units_total += q;
                } else {
                        c->stock += q;
                }
        }
        fclose(fp);
        /* Compact the used cells to the front. */
        for (size_t i = 0; i < HCAP; i++)
                if (cs[i].key[0])
                        cs[w++] = cs[i];
        *n = nc;
        return cs;
}

static void check_state(void)
{
        size_t n;
        long lines, units, total = 0;
        struct cell *cs = expected(&n, &lines, &units);
        redisContext *rc = redisConnect("127.0.0.1", env.redis_port);

        cr_assert(rc && !rc->err, "redis connect");
        cr_assert_gt(n, 100, "too few sku:warehouse keys");
        for (size_t i = 0; i < n; i++)
                for (int p = 0; p < NPART; p++)
                        redisAppendCommand(
                            rc, "HMGET fs:{orders.%d}:sw:%s stock u_placed oversold", p,
                            cs[i].key);
        for (size_t i = 0; i < n; i++) {
                int found = 0;
                for (int p = 0; p < NPART; p++) {
                        redisReply *r = NULL;
                        cr_assert_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
                        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                            r->element[0]->type == REDIS_REPLY_STRING) {
                                long stock = atol(r->element[0]->str);
                                long placed = r->element[1]->type == REDIS_REPLY_STRING
                                                  ? atol(r->element[1]->str)
                                                  : 0;
                                long over = r->element[2]->type == REDIS_REPLY_STRING
                                                ? atol(r->element[2]->str)
                                                : 0;
                                found++;
                                cr_expect_geq(stock, 0, "%s: negative stock", cs[i].key);
                                cr_expect_eq(stock, cs[i].stock,
                                             "%s: stock %ld, %ld expected", cs[i].key,
                                             stock, cs[i].stock);
                                cr_expect_eq(placed, cs[i].placed,
                                             "%s: u_placed %ld, %ld", cs[i].key, placed,
                                             cs[i].placed);
                                cr_expect_eq(over, 0, "%s: oversold %ld", cs[i].key,
                                             over);
                                total += placed;
                        }
                        freeReplyObject(r);
                }
                cr_expect_eq(found, 1, "%s: in %d partitions", cs[i].key, found);
        }
        cr_assert_eq(total, units, "units sold: %ld in Redis, %ld in orders.csv", total,
                     units);
        redisFree(rc);
        free(cs);
}

static long check_signals(void)
{
        char err[512];
        fls_codec_t *sc = fls_codec_new(FLS_SCHEMA_DIR, "restock-signals-value", 0,
                                        1 << 20, err, sizeof(err));
        rd_kafka_conf_t *cc = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPART);
        rd_kafka_t *rk;
        long got = 0, kinds[3] = {0};
        int idle = 0;

        cr_assert_not_null(sc, "%s", err);
        rd_kafka_conf_set(cc, "bootstrap.servers", env.bootstrap, err, sizeof(err));
        rd_kafka_conf_set(cc, "group.id", "test-signals", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        for (int p = 0; p < NPART; p++)
                rd_kafka_topic_partition_list_add(l, "restock-signals", p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        while (idle < 30) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                char detail[256], key[128];
                size_t il, sl, wl;
                const char *id, *sku, *wh;
                if (!m) {
                        idle++;
                        continue;
                }
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                idle = 0;
                cr_assert_eq(
                    fls_codec_decode(sc, m->payload, m->len, &v, detail, sizeof(detail)),
                    FLS_BAD_NONE, "signal does not decode: %s", detail);
                id = fls_avro_str(v, fls_codec_field(sc, "signal_id"), &il);
                sku = fls_avro_str(v, fls_codec_field(sc, "sku"), &sl);
                wh = fls_avro_str(v, fls_codec_field(sc, "warehouse_id"), &wl);
                cr_assert(il > 7 && strncmp(id, "orders/", 7) == 0, "id %.*s", (int)il,
                          id);
                snprintf(key, sizeof(key), "%.*s:%.*s", (int)sl, sku, (int)wl, wh);
                cr_assert(m->key_len == strlen(key) &&
                              memcmp(m->key, key, m->key_len) == 0,
                          "keyed by sku:warehouse");
                cr_assert_geq(fls_avro_long(v, fls_codec_field(sc, "on_hand")), 0);
                kinds[fls_avro_enum(v, fls_codec_field(sc, "kind"))]++;
                got++;
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        fls_codec_destroy(sc);
        cr_log_info("signals: %ld restock, %ld overstock, %ld resolved", kinds[0],
                    kinds[1], kinds[2]);
        return kinds[0];
}

Test(it_orders, sigkill_restart_keeps_stock_exact_and_signals_decode)
{
        char ts[64], out[400];
        char *o = NULL;
        long want, nlines, units;
        size_t n;
        pid_t c;
        int rc;
        struct cell *cs;

        snprintf(ts, sizeof(ts), "--sim.start_ts=%" PRId64,
                 ((int64_t)time(NULL) - 600) / 60 * 60000);
        snprintf(out, sizeof(out), "--sim.out_dir=%s/sim", env.dir);
        {
                const char *args[] = {"simulate",
                                      "--sim.realtime=false",
                                      "--sim.duration_s=90",
                                      "--sim.sale_start_s=20",
                                      ts,
                                      out,
                                      "--sim.users=3000",
                                      "--sim.progress_ms=0",
                                      NULL};
                rc = fls_t_run(&env, &o, args);
        }
        free(o);
        cr_assert_eq(rc, 0, "simulate exited %d", rc);
        cs = expected(&n, &nlines, &units);
        free(cs);
        want = nlines;
        c = consume();
        for (int k = 0; k < 3; k++) {
                long at = want * (k + 1) / 5;
                for (int i = 0; i < 1500 && applied() < at; i++)
                        usleep(20000);
                kill(c, SIGKILL);
                fls_t_wait(c, 5000);
                cr_assert_lt(applied(), want, "the kill came too late");
                c = consume();
        }
        for (int i = 0; i < 3000 && applied() < want; i++)
                usleep(50000);
        cr_assert_eq(applied(), want, "%ld of %ld order events done", applied(), want);
        kill(c, SIGTERM);
        cr_assert_eq(fls_t_wait(c, 5000), 0, "consumer did not exit 0");
        check_state();
        cr_assert_gt(check_signals(), 0, "no restock signal on a sale with stock-outs");
}

/* Redis restarting while a consumer starts is not a configuration error: set-up
 * waits for it (runner.c, store_open) instead of exiting 1. */
Test(it_orders, start_waits_for_redis_to_come_back)
{
        char log[400];
        pid_t c;
        int up = 0;

        fls_t_redis_stop(&env, SIGKILL);
        c = consume();
        usleep(1500000);
        cr_assert_eq(waitpid(c, NULL, WNOHANG), 0, "the consumer exited with Redis down");
        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start again");
        snprintf(log, sizeof(log), "cat %s/orders.log", env.dir);
        for (int i = 0; i < 250 * fls_t_slowdown() && !up; i++) {
                FILE *p = popen(log, "r");
                char line[1024];
                while (p && fgets(line, sizeof(line), p))
                        up |= strstr(line, "consumer started") != NULL;
                if (p)
                        pclose(p);
                if (!up)
                        usleep(40000);
        }
        cr_assert(up, "the consumer did not start once Redis was back");
        kill(c, SIGTERM);
        cr_assert_eq(fls_t_wait(c, 10000), 0, "consumer did not exit 0");
}
