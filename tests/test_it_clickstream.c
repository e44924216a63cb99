/*
 * test_it_clickstream: the clickstream consumer end to end, against the real
 * `flashstream broker` process and a real redis-server, on a seeded simulated sale:
 *  - two instances share the partitions and are SIGKILLed and restarted mid-stream
 *    (replays of the last batch): the coupon budget counter never exceeds the budget,
 *    equals the coupons actually sent (counted once per action id), and a replayed
 *    action id always carries the identical record;
 *  - a full replay of the topic from scratch (partition state dropped, budget kept, new
 *    group) produces exactly the same set of action ids and spends nothing more;
 *  - the frequency cap holds across restarts: no user gets two actions closer than
 *    clickstream.cap_s in event time, and no user two coupons of the campaign;
 *  - the "inactive since the sale began" sweep (inactive_after_s = 1: with 2000 users
 *    a few hundred users active before the sale have no event in its first second)
 *    sends reminders, at most one reminder of any kind per user, under the same
 *    kills, replays and caps.
 * Under deploy/valgrind.sh ($FLS_VALGRIND set) every consumer runs under memcheck,
 * 20-50x slower: the waits and the suite's time-out grow by fls_t_slowdown(); what the
 * test asserts is the same.
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
#include "store.h"
#include "testutil.h"

#define NPART  6
#define MODELS FLS_TEST_DATA "/../../models"

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

TestSuite(it_clickstream, .init = setup, .fini = teardown, .timeout = 400);

FLS_T_SCALE_TIMEOUTS()

static void simulate(void)
{
        char ts[64], out[400];
        char *o = NULL;
        /* Ten minutes ago on a minute boundary: inside input.max_future_ms. */
        int64_t t0 = ((int64_t)time(NULL) - 600) / 60 * 60000;
        snprintf(ts, sizeof(ts), "--sim.start_ts=%" PRId64, t0);
        snprintf(out, sizeof(out), "--sim.out_dir=%s/sim", env.dir);
        const char *args[] = {"simulate",
                              "--sim.realtime=false",
                              "--sim.duration_s=40",
                              "--sim.sale_start_s=10",
                              ts,
                              out,
                              "--sim.users=2000",
                              "--sim.progress_ms=0",
                              NULL};
        cr_assert_eq(fls_t_run(&env, &o, args), 0, "simulate failed");
        free(o);
}

static const char *const common[] = {
    "--clickstream.intent_model=" MODELS "/intent_sim.flsm",
    "--clickstream.participation_model=" MODELS "/participation.flsm",
    "--clickstream.coupon_budget=60",
    "--clickstream.sale_duration_s=30",
    "--clickstream.coupon_min_intent=0.05",
    "--clickstream.cap_s=15",
    "--clickstream.inactive_after_s=1",
    "--batch.max_messages=300",
    "--batch.max_ms=20",
    "--kafka.session.timeout.ms=6000",
    "--metrics.port=-1",
    NULL};

static pid_t consume(const char *log, const char *group)
{
        char path[400], g[128];
        const char *args[20] = {"consume", "clickstream"};
        int n = 2;
        for (int i = 0; common[i]; i++)
                args[n++] = common[i];
        if (group) {
                snprintf(g, sizeof(g), "--consumer.group=%s", group);
                args[n++] = g;
        }
        args[n] = NULL;
        snprintf(path, sizeof(path), "%s/%s.log", env.dir, log);
        return fls_t_spawn(&env, path, args);
}

static long applied(void)
{
        return fls_t_emitted(&env, "clickstream", NPART);
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

static void wait_applied(long want)
{
        long got = 0;
        for (int i = 0; i < 1800 * fls_t_slowdown() && (got = applied()) < want; i++)
                usleep(100000);
        cr_assert_eq(got, want, "%ld of %ld click events done", got, want);
}

static void stop(pid_t pid)
{
        double t0 = fls_t_mono_ms() / 1e3;
        int rc;
        kill(pid, SIGTERM);
        rc = fls_t_wait(pid, 10000);
        cr_log_info("consumer %d exited %d after SIGTERM in %.2f s", (int)pid, rc,
                    fls_t_mono_ms() / 1e3 - t0);
        cr_assert_eq(rc, 0,
                     "consumer %d exited %d after SIGTERM (-1: still running %d s "
                     "after it)",
                     (int)pid, rc, 10 * fls_t_slowdown());
}

/* ---- reading marketing-actions ------------------------------------------------ */

struct action {
        char id[160], user[32];
        int kind;
        double value;
        int64_t ts;
        uint64_t hash; /* of the record bytes */
};

typedef struct {
        struct action *a;
        size_t n, cap;
        long dups, dup_mismatch;
} actions_t;

static uint64_t fnv(const void *p, size_t n)
{
        const unsigned char *b = p;
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * 1099511628211ULL;
        return h;
}

/* Reads every partition from from[p] (or the beginning) to its high watermark; each
 * action id once; a repeated id must carry the same bytes. high[] gets the ends. */
static void read_actions(const int64_t *from, int64_t *high, actions_t *out)
{
        char err[512];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        fls_codec_t *codec = fls_codec_new(FLS_SCHEMA_DIR, "marketing-actions-value", 0,
                                           1 << 20, err, sizeof(err));
        rd_kafka_t *rk;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPART);
        int left = 0, ii, iu, ik, iv, it;

        cr_assert_not_null(codec, "%s", err);
        ii = fls_codec_field(codec, "action_id");
        iu = fls_codec_field(codec, "user_id");
        ik = fls_codec_field(codec, "kind");
        iv = fls_codec_field(codec, "coupon_value");
        it = fls_codec_field(codec, "event_ts");
        rd_kafka_conf_set(kc, "bootstrap.servers", env.bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "test-reader", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        memset(out, 0, sizeof(*out));
        for (int p = 0; p < NPART; p++) {
                int64_t lo;
                cr_assert_eq(rd_kafka_query_watermark_offsets(rk, "marketing-actions", p,
                                                              &lo, &high[p], 10000),
                             RD_KAFKA_RESP_ERR_NO_ERROR);
                if (from && from[p] > lo)
                        lo = from[p];
                left += high[p] > lo;
                rd_kafka_topic_partition_list_add(l, "marketing-actions", p)->offset = lo;
        }
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (int idle = 0; left > 0 && idle < 100;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                char detail[256];
                size_t len, k;
                const char *s;
                struct action a;
                if (!m) {
                        idle++;
                        continue;
                }
                idle = 0;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (m->offset + 1 == high[m->partition])
                        left--;
                cr_assert_eq(fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                              sizeof(detail)),
                             FLS_BAD_NONE, "action does not decode: %s", detail);
                memset(&a, 0, sizeof(a));
                s = fls_avro_str(v, ii, &len);
                cr_assert(len > 0 && len < sizeof(a.id));
                memcpy(a.id, s, len);
                s = fls_avro_str(v, iu, &len);
                cr_assert(len > 0 && len < sizeof(a.user));
                cr_assert(m->key_len == len && memcmp(m->key, s, len) == 0,
                          "keyed by user");
                memcpy(a.user, s, len);
                a.kind = fls_avro_enum(v, ik);
                a.value = fls_avro_double(v, iv);
                a.ts = fls_avro_long(v, it);
                a.hash = fnv(m->payload, m->len);
                rd_kafka_message_destroy(m);
                for (k = 0; k < out->n && strcmp(out->a[k].id, a.id); k++)
                        ;
                if (k < out->n) {
                        out->dups++;
                        if (out->a[k].hash != a.hash) {
                                out->dup_mismatch++;
                                cr_log_warn(
                                    "replayed %s: kind %d/%d ts %" PRId64 "/%" PRId64,
                                    a.id, out->a[k].kind, a.kind, out->a[k].ts, a.ts);
                        }
                        continue;
                }
                if (out->n == out->cap) {
                        out->cap = out->cap ? out->cap * 2 : 1024;
                        out->a = realloc(out->a, out->cap * sizeof(*out->a));
                        cr_assert_not_null(out->a);
                }
                out->a[out->n++] = a;
        }
        cr_assert_eq(left, 0, "marketing-actions not read to its end");
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        fls_codec_destroy(codec);
}

static int64_t budget_used(void)
{
        char err[256];
        int64_t used = -1;
        fls_store_t *st = fls_store_new("127.0.0.1", env.redis_port, 2000, "fs", NULL, 0,
                                        err, sizeof(err));
        cr_assert_not_null(st, "%s", err);
        cr_assert_eq(
            fls_store_counter(st, "budget:flash-sale-1", &used, err, sizeof(err)), 0,
            "%s", err);
        fls_store_destroy(st);
        return used;
}

static int cmp_action(const void *x, const void *y)
{
        const struct action *a = x, *b = y;
        int c = strcmp(a->user, b->user);
        return c ? c : (a->ts > b->ts) - (a->ts < b->ts);
}

/* No user has two actions within 15 s (the cap set above), two coupons or two
 * reminders. */
static void check_caps(actions_t *as)
{
        int coupons = 0, reminders = 0;
        qsort(as->a, as->n, sizeof(*as->a), cmp_action);
        for (size_t i = 0; i < as->n; i++) {
                int same_user = i > 0 && strcmp(as->a[i].user, as->a[i - 1].user) == 0;
                coupons = (same_user ? coupons : 0) + (as->a[i].kind == 0);
                reminders = (same_user ? reminders : 0) + (as->a[i].kind == 1);
                cr_assert_leq(coupons, 1, "user %s: two coupons", as->a[i].user);
                cr_assert_leq(reminders, 1, "user %s: two reminders", as->a[i].user);
        }
        for (size_t i = 1; i < as->n; i++) {
                if (strcmp(as->a[i].user, as->a[i - 1].user))
                        continue;
                cr_assert_geq(llabs(as->a[i].ts - as->a[i - 1].ts), 15000,
                              "user %s: actions %s and %s closer than the cap",
                              as->a[i].user, as->a[i - 1].id, as->a[i].id);
        }
}

Test(it_clickstream, budget_caps_and_ids_with_two_instances_kills_and_replay)
{
        long want;
        pid_t a, b;
        actions_t first, second;
        int64_t high1[NPART], high2[NPART], used1, used2;
        long coupons = 0, kinds[3] = {0}, inactive = 0;
        double spent = 0;

        simulate();
        want = count_lines("clickstream.csv");
        a = consume("a", NULL);
        b = consume("b", NULL);
        /* Kill and restart each instance once mid-stream: the batch in flight is
         * replayed read-only by whoever owns the partition next. */
        for (int k = 0; k < 2; k++) {
                long at = want * (k + 1) / 4;
                for (int i = 0; i < 1500 * fls_t_slowdown() && applied() < at; i++)
                        usleep(20000);
                cr_assert_lt(applied(), want, "the stream ended before kill %d", k);
                kill(k == 0 ? a : b, SIGKILL);
                fls_t_wait(k == 0 ? a : b, 5000);
                if (k == 0)
                        a = consume("a2", NULL);
                else
                        b = consume("b2", NULL);
        }
        wait_applied(want);
        stop(a);
        stop(b);

        read_actions(NULL, high1, &first);
        cr_assert_eq(first.dup_mismatch, 0, "a replayed action id changed its record");
        for (size_t i = 0; i < first.n; i++) {
                kinds[first.a[i].kind]++;
                inactive += strstr(first.a[i].id, "/inactive:") != NULL;
                if (first.a[i].kind == 0) {
                        coupons++;
                        spent += first.a[i].value;
                }
        }
        used1 = budget_used();
        /* Info, not warn: Criterion exits non-zero after any warning. */
        cr_log_info("first pass: %zu actions (%ld coupons, %ld reminders, %ld "
                    "recommendations), %ld duplicate records, budget used %" PRId64
                    " cents",
                    first.n, kinds[0], kinds[1], kinds[2], first.dups, used1);
        cr_assert_gt(coupons, 0, "no coupon at all: the test proves nothing");
        cr_assert_gt(kinds[2], 0, "no recommendation at all");
        cr_log_info("inactive since the sale: %ld reminders", inactive);
        cr_assert_gt(inactive, 0, "no inactive-since-sale reminder at all");
        cr_assert_leq(used1, 6000, "budget exceeded: %" PRId64 " cents", used1);
        cr_assert_eq(used1, (int64_t)(spent * 100 + 0.5),
                     "budget counter %" PRId64 " != coupons sent %.2f", used1, spent);
        check_caps(&first);

        /* Replay everything from scratch: partition state gone, budget claims kept,
         * a new group starting at the beginning of the topic. */
        free(fls_t_redis_cli(&env, "EVAL \"for _,k in ipairs(redis.call('KEYS', "
                                   "'fs:{clickstream.*')) do redis.call('DEL', k) end "
                                   "return 1\" 0"));
        cr_assert_eq(applied(), 0);
        a = consume("replay", "replay-group");
        wait_applied(want);
        stop(a);
        read_actions(high1, high2, &second);
        used2 = budget_used();
        cr_assert_eq(used2, used1, "the replay spent budget: %" PRId64 " -> %" PRId64,
                     used1, used2);
        for (size_t i = 0; i < second.n; i++) {
                size_t k;
                for (k = 0; k < first.n && strcmp(first.a[k].id, second.a[i].id); k++)
                        ;
                if (k == first.n)
                        cr_log_warn("only in the replay: %s %s ts %" PRId64,
                                    second.a[i].id, second.a[i].user, second.a[i].ts);
        }
        for (size_t i = 0; i < first.n; i++) {
                size_t k;
                for (k = 0; k < second.n && strcmp(first.a[i].id, second.a[k].id); k++)
                        ;
                if (k == second.n)
                        cr_log_warn("only in the first pass: %s %s ts %" PRId64,
                                    first.a[i].id, first.a[i].user, first.a[i].ts);
        }
        for (size_t i = 0; i < second.n; i++) {
                size_t k;
                for (k = 0; k < first.n && strcmp(first.a[k].id, second.a[i].id); k++)
                        ;
                cr_assert_lt(k, first.n, "replay made action %s the first pass did not",
                             second.a[i].id);
                cr_assert_eq(first.a[k].hash, second.a[i].hash, "action %s differs",
                             second.a[i].id);
        }
        cr_assert_eq(second.n, first.n, "replay: %zu actions, first pass %zu", second.n,
                     first.n);
        free(first.a);
        free(second.a);
}
