/*
 * test_store: the Redis feature store against a real redis-server. Checks what the
 * consumers' exactly-once claim rests on: the ring windows against a brute-force
 * count, coalescing, the offset fence that refuses stale or rewound batches, read-only
 * replays, and recovery after Redis is killed and restarted.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store.h"
#include "testutil.h"

static fls_tenv_t env;
static const char *const feats[] = {"a", "b", NULL};
static const fls_family_t fams[] = {
    {"w", 1000, 10000, feats, 0},
    {"seq", 0, 3, NULL, 0},
    {"hist", 0, 3, NULL, -1}, /* TTL from the deferred pushes only */
    {NULL, 0, 0, NULL, 0},
};
#define LATENESS 3000

static void setup(void)
{
        cr_assert_eq(fls_t_init(&env), 0);
        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start");
}

static void teardown(void)
{
        fls_t_fini(&env);
}

static fls_store_t *store(void)
{
        char err[256];
        fls_store_t *st = fls_store_new("127.0.0.1", env.redis_port, 2000, "t", fams,
                                        LATENESS, err, sizeof(err));
        cr_assert_not_null(st, "%s", err);
        /* ctest runs the suite twice: as is, and answering reads from the mirror */
        if (getenv("FLS_T_MIRROR"))
                fls_store_mirror(st, 64 << 20, 0);
        return st;
}

static void apply1(fls_store_t *st, fls_batch_t *b)
{
        char err[256];
        cr_assert_eq(fls_store_apply(st, &b, 1, err, sizeof(err)), 0, "%s", err);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

Test(store, counters_coalesce_and_read_back)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        int e, r;

        fls_batch_begin(b, "t", 0, 0);
        e = fls_batch_entity(b, "u:1", 3);
        for (int i = 0; i < 1000; i++)
                fls_batch_incr(b, e, "n", 1);
        fls_batch_set(b, e, "s", "first", 5);
        fls_batch_set(b, e, "s", "last", 4);
        fls_batch_setmax(b, e, "m", 5);
        fls_batch_setmax(b, e, "m", 3);
        fls_batch_incrf(b, e, "f", 0.25);
        fls_batch_incrf(b, e, "f", 0.5);
        cr_assert_eq(fls_batch_entity(b, "u:1", 3), e, "one entity, one key");
        r = fls_batch_read(b, e, -1);
        fls_batch_offsets(b, -1, 41, -1, 1000, 0);
        apply1(st, b);
        cr_assert_not(fls_batch_stale(b));
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "n", 0), 1000);
        cr_assert_str_eq(fls_hash_get(fls_batch_reply(b, r), "s"), "last");
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "m", 0), 5);
        cr_assert_float_eq(fls_hash_dbl(fls_batch_reply(b, r), "f", 0), 0.75, 1e-9);
        {
                char *v = fls_t_redis_cli(&env, "HGET 't:{t.0}:meta' offset");
                cr_assert_eq(atoi(v), 41, "meta offset is %s", v);
                free(v);
        }

        /* Several MAX fields of one key in one batch: each keeps its own maximum. */
        fls_batch_begin(b, "t", 0, 0);
        e = fls_batch_entity(b, "u:1", 3);
        fls_batch_setmax(b, e, "m", 4);
        fls_batch_setmax(b, e, "m2", 9);
        fls_batch_setmax(b, e, "m3", -2);
        r = fls_batch_read(b, e, -1);
        fls_batch_offsets(b, 41, 42, -1, 1000, 0);
        apply1(st, b);
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "m", 0), 5, "kept the larger");
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "m2", 0), 9, "new field set");
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "m3", 0), -2, "new field set");
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, fence_refuses_stale_and_rewound_batches)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        const fls_hash_t *h;
        char err[256], key[128];
        int e;

        fls_batch_begin(b, "t", 1, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, -1, 10, -1, 0, 0);
        apply1(st, b);
        cr_assert_not(fls_batch_stale(b));

        /* A second writer that still believes nothing was applied. */
        fls_batch_begin(b, "t", 1, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, -1, 10, -1, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));

        /* A writer ahead of Redis (Redis lost writes): also refused. */
        fls_batch_begin(b, "t", 1, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, 20, 30, -1, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));

        /* The right one goes through. */
        fls_batch_begin(b, "t", 1, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, 10, 11, 10, 0, 0);
        apply1(st, b);
        cr_assert_not(fls_batch_stale(b));

        fls_store_key(st, "t", 1, "x", NULL, key, sizeof(key));
        cr_assert_eq(fls_store_hgetall(st, key, &h, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(fls_hash_int(h, "n", 0), 2, "applied once per good batch");
        {
                fls_meta_t m;
                int32_t p = 1;
                cr_assert_eq(fls_store_meta(st, "t", &p, 1, &m, err, sizeof(err)), 0);
                cr_assert_eq(m.offset, 11);
                cr_assert_eq(m.emitted, 10);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* One EXPIRE per key while its TTL is fresh: the second batch must not send one
 * (the TTL cut by hand stays cut); a new TTL value, a key first touched by a
 * read-only batch or only read, and anything after a stale batch must. */
static int ttl_of(const char *key)
{
        char cmd[160], *v;
        int t;

        snprintf(cmd, sizeof(cmd), "TTL '%s'", key);
        v = fls_t_redis_cli(&env, cmd);
        t = atoi(v);
        free(v);
        return t;
}

static void cut_ttl(const char *key)
{
        char cmd[160];

        snprintf(cmd, sizeof(cmd), "EXPIRE '%s' 50", key);
        free(fls_t_redis_cli(&env, cmd));
}

static void touch(fls_store_t *st, fls_batch_t *b, int read_only, const char *ent,
                  int64_t ttl, int64_t expect, int64_t last)
{
        int e;

        fls_batch_begin(b, "t", 5, read_only);
        e = fls_batch_entity(b, ent, strlen(ent));
        fls_batch_incr(b, e, "n", 1);
        fls_batch_expire(b, e, ttl);
        fls_batch_offsets(b, expect, last, -1, 0, 0);
        apply1(st, b);
}

Test(store, ttl_refresh_is_throttled_until_stale)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);

        touch(st, b, 1, "k2", 1000, -1, -1); /* read-only: nothing set */
        touch(st, b, 0, "k", 1000, -1, 1);
        cr_assert(ttl_of("t:{t.5}:k") > 900);
        touch(st, b, 0, "k2", 1000, 1, 2);
        cr_assert(ttl_of("t:{t.5}:k2") > 900, "a read-only EXPIRE counted as set");

        cut_ttl("t:{t.5}:k");
        touch(st, b, 0, "k", 1000, 2, 3);
        cr_assert_not(fls_batch_stale(b));
        cr_assert(ttl_of("t:{t.5}:k") <= 50, "a fresh TTL was sent again");
        touch(st, b, 0, "k", 2000, 3, 4);
        cr_assert(ttl_of("t:{t.5}:k") > 1900, "a new TTL value was not sent");

        cut_ttl("t:{t.5}:k");
        touch(st, b, 0, "k", 2000, 99, 100);
        cr_assert(fls_batch_stale(b));
        touch(st, b, 0, "k", 2000, 4, 5);
        cr_assert_not(fls_batch_stale(b));
        cr_assert(ttl_of("t:{t.5}:k") > 1900, "the TTL cache outlived a stale batch");

        /* A ring only read gets no TTL (it does not exist); the batch that then
         * creates it must send one. */
        for (int w = 0; w < 2; w++) {
                int e;
                fls_batch_begin(b, "t", 5, 0);
                e = fls_batch_entity(b, "k3", 2);
                if (w)
                        fls_batch_window(b, e, 0, 0, 5000, 1);
                fls_batch_read(b, e, 0);
                fls_batch_offsets(b, 5 + w, 6 + w, -1, 0, 0);
                apply1(st, b);
        }
        cr_assert(ttl_of("t:{t.5}:k3:w") > 0, "a ring was created without a TTL");
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* Replies are built in the batch's arena: a value larger than a chunk, many
 * fields over several chunks, and the same again after the arena is reused. */
Test(store, large_replies_read_back_whole)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        static char big[200001];
        static char names[3000][8];

        memset(big, 'x', sizeof(big) - 1);
        big[7] = 'y';
        for (int i = 0; i < 3000; i++)
                snprintf(names[i], sizeof(names[i]), "f%d", i);
        for (int round = 0; round < 2; round++) {
                const fls_hash_t *h1, *h2;
                int e1, e2, r1, r2;
                fls_batch_begin(b, "t", 9, 0);
                e1 = fls_batch_entity(b, "big", 3);
                fls_batch_set(b, e1, "v", big, sizeof(big) - 1);
                e2 = fls_batch_entity(b, "wide", 4);
                for (int i = 0; i < 3000; i++)
                        fls_batch_incr(b, e2, names[i], i + round);
                r1 = fls_batch_read(b, e1, -1);
                r2 = fls_batch_read(b, e2, -1);
                fls_batch_offsets(b, round - 1, round, -1, 0, 0);
                apply1(st, b);
                cr_assert_not(fls_batch_stale(b));
                h1 = fls_batch_reply(b, r1);
                h2 = fls_batch_reply(b, r2);
                cr_assert_eq(strlen(fls_hash_get(h1, "v")), sizeof(big) - 1);
                cr_assert_eq(fls_hash_get(h1, "v")[7], 'y');
                cr_assert_eq(h2->n, 3000);
                for (int i = 0; i < 3000; i += 7)
                        cr_assert_eq(fls_hash_int(h2, names[i], -1),
                                     round ? 2 * i + 1 : i, "round %d field %d", round,
                                     i);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, read_only_batch_writes_nothing)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        int e, r;

        fls_batch_begin(b, "t", 2, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 7);
        fls_batch_offsets(b, -1, 5, -1, 0, 0);
        apply1(st, b);

        fls_batch_begin(b, "t", 2, 1);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 100);
        fls_batch_window(b, e, 0, 0, 5000, 1);
        r = fls_batch_read(b, e, -1);
        fls_batch_offsets(b, -1, -1, 5, 0, 0);
        apply1(st, b);
        cr_assert_not(fls_batch_stale(b));
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "n", 0), 7);
        {
                char *v = fls_t_redis_cli(&env, "HGET 't:{t.2}:meta' emitted");
                cr_assert_eq(atoi(v), 5, "emitted is recorded by a read-only batch");
                free(v);
                v = fls_t_redis_cli(&env, "EXISTS 't:{t.2}:x:w'");
                cr_assert_eq(atoi(v), 0, "no ring written on replay");
                free(v);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* The ring against a brute-force count: random events (in bounded disorder, as the
 * runner lets through within the lateness), applied in batches of random size. */
Test(store, ring_windows_match_brute_force)
{
        enum { N = 3000 };
        static int64_t ts[N];
        static int feat[N];
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        const fls_hash_t *h;
        char err[256], key[128];
        int64_t t = 1000000, wm = 0, applied = -1;
        unsigned seed = 7;

        for (int i = 0; i < N; i++) {
                t += rand_r(&seed) % 60;
                /* some events up to the allowed lateness behind */
                ts[i] = t - (rand_r(&seed) % 4 == 0 ? rand_r(&seed) % LATENESS : 0);
                feat[i] = rand_r(&seed) % 2;
        }
        for (int i = 0; i < N;) {
                int n = 1 + rand_r(&seed) % 200, e;
                fls_batch_begin(b, "t", 3, 0);
                e = fls_batch_entity(b, "r", 1);
                for (int k = 0; k < n && i < N; k++, i++) {
                        fls_batch_window(b, e, 0, feat[i], ts[i], 1);
                        if (ts[i] > wm)
                                wm = ts[i];
                }
                fls_batch_offsets(b, applied, i - 1, -1, wm, 0);
                applied = i - 1;
                apply1(st, b);
                cr_assert_not(fls_batch_stale(b));
        }
        fls_store_key(st, "t", 3, "r", "w", key, sizeof(key));
        cr_assert_eq(fls_store_hgetall(st, key, &h, err, sizeof(err)), 0, "%s", err);
        for (int64_t win = 1000; win <= 10000; win += 3000) {
                for (int f = 0; f < 2; f++) {
                        int64_t want = 0, ref = wm / 1000;
                        for (int i = 0; i < N; i++)
                                if (feat[i] == f && ts[i] / 1000 > ref - win / 1000 &&
                                    ts[i] / 1000 <= ref)
                                        want++;
                        cr_assert_eq(fls_ring_sum(st, h, 0, f, wm, win), want,
                                     "feature %d window %lld", f, (long long)win);
                }
        }
        cr_assert_leq((int64_t)h->n, 2 * 3 * fls_store_family_slots(st, 0),
                      "the ring is bounded");
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, survives_redis_restart)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        char err[256];
        int e, rc;

        fls_batch_begin(b, "t", 4, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, -1, 0, -1, 0, 0);
        apply1(st, b);

        fls_t_redis_stop(&env, SIGKILL);
        fls_batch_begin(b, "t", 4, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, 0, 1, -1, 0, 0);
        rc = fls_store_apply(st, &b, 1, err, sizeof(err));
        cr_assert_neq(rc, 0, "Redis is down: the apply must fail");

        cr_assert_eq(fls_t_redis_start(&env), 0);
        /* The context was dropped; the same batch goes through once Redis is back,
         * with the script loaded again. The AOF may or may not hold the first batch
         * (everysec), so the outcome is either applied or refused as stale. */
        rc = fls_store_apply(st, &b, 1, err, sizeof(err));
        cr_assert_eq(rc, 0, "%s", err);
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, deferred_writes_apply_unless_stale)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        int e;

        fls_batch_begin(b, "t", 5, 0);
        fls_batch_offsets(b, -1, 3, -1, 0, 0);
        apply1(st, b);
        /* In a read-only batch (the idle "emitted" record) they still apply. */
        fls_batch_begin(b, "t", 5, 1);
        e = fls_batch_entity(b, "sig", 3);
        fls_batch_defer(b, e, FLS_DEFER_SET, "state", 0, "HIGH");
        fls_batch_defer(b, e, FLS_DEFER_INCR, "n", 2, NULL);
        fls_batch_offsets(b, -1, -1, 3, 0, 0);
        apply1(st, b);
        {
                char *v = fls_t_redis_cli(&env, "HGET 't:{t.5}:sig' state");
                cr_assert(strncmp(v, "HIGH", 4) == 0, "state is '%s'", v);
                free(v);
        }
        /* The same batch again (Redis ran it, its reply was lost): Redis holds its
         * "emitted" mark, so the counter does not go up twice. */
        apply1(st, b);
        cr_assert(!fls_batch_stale(b));
        {
                char *v = fls_t_redis_cli(&env, "HGET 't:{t.5}:sig' n");
                cr_assert(strncmp(v, "2", 1) == 0 && v[1] != '0', "n is '%s'", v);
                free(v);
        }
        /* A stale batch applies none of them. */
        fls_batch_begin(b, "t", 5, 0);
        e = fls_batch_entity(b, "sig", 3);
        fls_batch_defer(b, e, FLS_DEFER_SET, "state", 0, "LOW");
        fls_batch_offsets(b, 99, 100, -1, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));
        {
                char *v = fls_t_redis_cli(&env, "HMGET 't:{t.5}:sig' state n");
                cr_assert(strncmp(v, "HIGH\n2", 6) == 0, "got '%s'", v);
                free(v);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, deferred_pushes_keep_order_cap_and_ttl_unless_stale)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        const fls_hash_t *h;
        char *v;
        int e, r;

        fls_batch_begin(b, "t", 7, 0);
        fls_batch_offsets(b, -1, 3, -1, 0, 0);
        apply1(st, b);
        /* Read-only (a replay): deferred pushes still apply, in order, capped. */
        fls_batch_begin(b, "t", 7, 1);
        e = fls_batch_entity(b, "u", 1);
        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 600, "p1");
        fls_batch_defer(b, e, FLS_DEFER_SET, "state", 0, "x");
        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 900, "p2");
        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 600, "p3");
        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 600, "p4");
        r = fls_batch_read(b, e, 2);
        fls_batch_offsets(b, -1, -1, 3, 0, 0);
        apply1(st, b);
        h = fls_batch_reply(b, r);
        cr_assert_eq(h->n, 3);
        cr_assert_str_eq(h->fields[0], "p2");
        cr_assert_str_eq(h->fields[2], "p4");
        /* The largest TTL asked, and no family default over it. */
        v = fls_t_redis_cli(&env, "TTL 't:{t.7}:u:hist'");
        cr_assert(atoi(v) > 600 && atoi(v) <= 900, "TTL %s", v);
        free(v);
        /* A read of the family in a writing batch sets no TTL of its own. */
        fls_batch_begin(b, "t", 7, 0);
        e = fls_batch_entity(b, "u", 1);
        fls_batch_read(b, e, 2);
        fls_batch_offsets(b, 3, 4, -1, 0, 0);
        apply1(st, b);
        v = fls_t_redis_cli(&env, "TTL 't:{t.7}:u:hist'");
        cr_assert(atoi(v) > 600 && atoi(v) <= 900, "TTL %s", v);
        free(v);
        /* A stale batch pushes nothing. */
        fls_batch_begin(b, "t", 7, 0);
        e = fls_batch_entity(b, "u", 1);
        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 600, "p5");
        fls_batch_offsets(b, 99, 100, -1, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));
        v = fls_t_redis_cli(&env, "LRANGE 't:{t.7}:u:hist' 0 -1");
        cr_assert(strncmp(v, "p2\np3\np4", 8) == 0, "got '%s'", v);
        free(v);
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, claims_never_exceed_the_limit_and_replay_identically)
{
        fls_store_t *st = store();
        fls_claims_t *c = fls_claims_new();
        char err[256];
        int64_t used;

        fls_claims_add(c, "budget:x", "a", NULL, 0, 4, 10);
        fls_claims_add(c, "budget:x", "b", NULL, 0, 4, 10);
        fls_claims_add(c, "budget:x", "c", NULL, 0, 4, 10);
        fls_claims_add(c, "budget:x", "d", NULL, 0, 2, 10);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(fls_claims_granted(c, 0), 4);
        cr_assert_eq(fls_claims_granted(c, 1), 4);
        cr_assert_eq(fls_claims_granted(c, 2), 0, "over the limit");
        cr_assert_eq(fls_claims_granted(c, 3), 2);
        cr_assert_eq(fls_claims_used(c, 3), 10);

        /* A replay of the same decisions: same outcome, nothing spent again; "c"
         * stays refused. */
        fls_claims_reset(c);
        fls_claims_add(c, "budget:x", "c", NULL, 0, 4, 100);
        fls_claims_add(c, "budget:x", "a", NULL, 0, 4, 10);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(fls_claims_granted(c, 0), 0);
        cr_assert_eq(fls_claims_granted(c, 1), 4);
        cr_assert_eq(fls_store_counter(st, "budget:x", &used, err, sizeof(err)), 0);
        cr_assert_eq(used, 10);
        fls_claims_destroy(c);
        fls_store_destroy(st);
}

/* Whether Redis holds a record of claim id on counter "budget:y" (one was run there). */
static int claim_recorded(const char *id)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "HEXISTS 't:{budget:y}:ids' %s", id);
        char *v = fls_t_redis_cli(&env, cmd);
        int yes = v && atoi(v) == 1;
        free(v);
        return yes;
}

/* One claim on "budget:y" from stream "s/0" at position pos; returns the grant. */
static int64_t run1(fls_store_t *st, fls_claims_t *c, const char *id, int64_t pos,
                    int64_t amount, int64_t limit)
{
        char err[256];
        fls_claims_reset(c);
        fls_claims_add(c, "budget:y", id, "s/0", pos, amount, limit);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        return fls_claims_granted(c, 0);
}

/* Claims that the counter's last seen value refuses, past every position granted, are
 * refused without a round trip; anything else still goes to Redis, so a claim granted
 * once is granted again, whoever asks. */
Test(store, claims_a_spent_counter_refuses_stay_local)
{
        fls_store_t *st = store();
        fls_claims_t *c = fls_claims_new(), *other = fls_claims_new();
        char err[256];

        cr_assert_eq(run1(st, c, "a", 1, 6, 10), 6, "nothing seen yet: Redis grants");
        cr_assert_eq(run1(st, c, "b", 2, 6, 10), 0);
        cr_assert_not(claim_recorded("b"), "refused here, never sent");
        cr_assert_eq(fls_claims_used(c, 0), 6);
        cr_assert_eq(fls_claims_local(c), 1);
        cr_assert_eq(run1(st, c, "c", 3, 4, 10), 4, "fits: asked and granted");
        cr_assert_eq(run1(st, c, "d", 4, 4, 20), 4, "a higher limit: asked");
        cr_assert_eq(fls_claims_local(c), 1);

        /* Replays (positions granted before) ask Redis: the same answers. */
        cr_assert_eq(run1(st, c, "a", 1, 6, 10), 6);
        cr_assert_eq(run1(st, c, "b", 2, 6, 10), 0);
        cr_assert(claim_recorded("b"));
        cr_assert_eq(fls_claims_local(c), 1);

        /* Another stream spends meanwhile: the value seen (14) is a lower bound, so a
         * claim it would let through is asked, and Redis refuses it (17 + 6 > 20). */
        fls_claims_add(other, "budget:y", "e", "s/1", 1, 3, 100);
        cr_assert_eq(fls_claims_run(st, other, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(run1(st, c, "f", 5, 6, 20), 0);
        cr_assert(claim_recorded("f"));
        cr_assert_eq(fls_claims_used(c, 0), 17);
        cr_assert_eq(run1(st, c, "g", 6, 100, 10), 0);
        cr_assert_not(claim_recorded("g"));

        /* A reply for another stream of the counter (18 now) counts for s/0 too. */
        fls_claims_reset(c);
        fls_claims_add(c, "budget:y", "m", "s/2", 1, 1, 100);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(run1(st, c, "n", 11, 3, 20), 0);
        cr_assert_not(claim_recorded("n"), "17 + 3 fits, 18 + 3 does not");

        /* A new process replaying s/0 from the start (its partitions' state wiped):
         * it learns the highest position granted, so "d" (17 + 4 > 20 now) is asked
         * and granted again. */
        fls_claims_t *again = fls_claims_new();
        cr_assert_eq(run1(st, again, "x", 7, 100, 10), 0);
        cr_assert_eq(run1(st, again, "d", 4, 4, 20), 4);
        fls_claims_destroy(again);

        /* Forgotten values (another owner, lost writes) are asked for again. */
        fls_claims_forget(c);
        cr_assert_eq(run1(st, c, "h", 8, 100, 10), 0);
        cr_assert(claim_recorded("h"));

        /* So are values seen on a connection that has since failed. */
        free(fls_t_redis_cli(&env, "SET 't:{budget:z}' x"));
        fls_claims_reset(c);
        fls_claims_add(c, "budget:z", "i", "s/0", 9, 1, 10);
        cr_assert_neq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0);
        cr_assert_eq(run1(st, c, "j", 10, 100, 10), 0);
        cr_assert(claim_recorded("j"));

        /* Without a stream, always asked. */
        fls_claims_reset(c);
        fls_claims_add(c, "budget:y", "k", NULL, 0, 100, 10);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert(claim_recorded("k"));
        cr_assert_eq(fls_claims_local(c), 3);
        fls_claims_destroy(other);
        fls_claims_destroy(c);
        fls_store_destroy(st);
}

/* The values seen are kept for the SEEN_MAX (256) pairs used last: an older pair is
 * asked about again, a recent one is not. */
Test(store, claims_forget_the_pairs_used_least_recently)
{
        fls_store_t *st = store();
        fls_claims_t *c = fls_claims_new();
        char err[256], stream[32];

        for (int i = 0; i < 300; i++) {
                fls_claims_reset(c);
                snprintf(stream, sizeof(stream), "s/%d", i);
                fls_claims_add(c, "budget:y", stream, stream, 1, 1, 1000);
                cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
                cr_assert_eq(fls_claims_granted(c, 0), 1);
        }
        fls_claims_reset(c);
        fls_claims_add(c, "budget:y", "old", "s/0", 5, 2000, 1000);
        fls_claims_add(c, "budget:y", "recent", "s/299", 5, 2000, 1000);
        cr_assert_eq(fls_claims_run(st, c, 3600, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(fls_claims_granted(c, 0), 0);
        cr_assert_eq(fls_claims_granted(c, 1), 0);
        cr_assert(claim_recorded("old"), "s/0's pair was replaced: asked");
        cr_assert_not(claim_recorded("recent"));
        cr_assert_eq(fls_claims_local(c), 1);
        fls_claims_destroy(c);
        fls_store_destroy(st);
}

Test(store, lists_keep_the_last_items_in_order)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        const fls_hash_t *h;
        int e, r;

        fls_batch_begin(b, "t", 6, 0);
        e = fls_batch_entity(b, "u", 1);
        fls_batch_push(b, e, 1, "a", 1);
        fls_batch_push(b, e, 1, "b", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_push(b, e, 1, "c", 1);
        fls_batch_push(b, e, 1, "d", 1);
        r = fls_batch_read(b, e, 1);
        fls_batch_offsets(b, -1, 0, -1, 0, 0);
        apply1(st, b);
        h = fls_batch_reply(b, r);
        cr_assert_eq(h->n, 3);
        cr_assert_str_eq(h->fields[0], "b");
        cr_assert_str_eq(h->fields[1], "c");
        cr_assert_str_eq(h->fields[2], "d");

        /* More pushes than one RPUSH carries: still in order. */
        fls_batch_begin(b, "t", 6, 0);
        e = fls_batch_entity(b, "u", 1);
        for (int k = 0; k < 2500; k++) {
                char v[16];
                int n = snprintf(v, sizeof(v), "%d", k);
                fls_batch_push(b, e, 1, v, (size_t)n);
        }
        r = fls_batch_read(b, e, 1);
        fls_batch_offsets(b, 0, 1, -1, 0, 0);
        apply1(st, b);
        h = fls_batch_reply(b, r);
        cr_assert_eq(h->n, 3);
        cr_assert_str_eq(h->fields[0], "2497");
        cr_assert_str_eq(h->fields[2], "2499");
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, stock_never_negative_and_gives_back_what_was_taken)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        int e, r;

        fls_batch_begin(b, "t", 7, 0);
        e = fls_batch_entity(b, "sw:s1:w1", 8);
        fls_batch_stock(b, e, FLS_STOCK_TAKE, "on_hand", "o1", 2, 3, "oversold");
        fls_batch_stock(b, e, FLS_STOCK_ADD, "on_hand", "", 0, 9, NULL);
        fls_batch_stock(b, e, FLS_STOCK_TAKE, "on_hand", "o2", 2, 4, "oversold");
        fls_batch_stock(b, e, FLS_STOCK_TAKE, "on_hand", "o3", 2, 2, "oversold");
        fls_batch_stock(b, e, FLS_STOCK_TAKE, "on_hand", "o2", 2, 2, "oversold");
        fls_batch_stock(b, e, FLS_STOCK_TAKE, "on_hand", "o2", 2, 4, "oversold");
        fls_batch_stock(b, e, FLS_STOCK_GIVE, "on_hand", "o1", 2, 3, NULL);
        fls_batch_stock(b, e, FLS_STOCK_GIVE, "on_hand", "o2", 2, 2, NULL);
        fls_batch_stock(b, e, FLS_STOCK_GIVE, "on_hand", "o2", 2, 9, NULL);
        fls_batch_stock(b, e, FLS_STOCK_GIVE, "on_hand", "o2", 2, 1, NULL);
        r = fls_batch_read(b, e, -1);
        fls_batch_offsets(b, -1, 0, -1, 0, 0);
        apply1(st, b);
        /* o1: 3 oversold at 0 on hand; +9; o2 takes 4 (5 left); o3 takes 2 (3 left);
         * o2 takes 2 more (1 left); o2's 4 more oversold; o1 gives back nothing (it
         * holds nothing); o2 gives back 2, then the 4 it still holds of the 9 asked,
         * then nothing: 1 + 2 + 4 = 7 on hand, 3 + 4 = 7 oversold. */
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "on_hand", -1), 7);
        cr_assert_eq(fls_hash_int(fls_batch_reply(b, r), "oversold", -1), 7);
        {
                char *v = fls_t_redis_cli(&env, "HGETALL 't:{t.7}:sw:s1:w1:ledger'");
                cr_assert(strncmp(v, "o3\n2\n", 6) == 0, "ledger is '%s'", v);
                free(v);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

Test(store, read_only_batch_cannot_mark_emitted_past_applied)
{
        fls_store_t *st = store();
        fls_batch_t *b = fls_batch_new(st);
        int e;

        fls_batch_begin(b, "t", 8, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        fls_batch_offsets(b, -1, 10, -1, 0, 0);
        apply1(st, b);
        /* A process that believes it emitted up to 20 (Redis lost the writes since):
         * refused, and its deferred writes with it. */
        fls_batch_begin(b, "t", 8, 1);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_defer(b, e, FLS_DEFER_SET, "mark", 0, "late");
        fls_batch_offsets(b, -1, -1, 20, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));
        {
                char *v = fls_t_redis_cli(&env, "HMGET 't:{t.8}:meta' emitted offset");
                cr_assert(strncmp(v, "\n10", 3) == 0, "meta is '%s'", v);
                free(v);
                v = fls_t_redis_cli(&env, "HGET 't:{t.8}:x' mark");
                cr_assert(v[0] == '\n', "mark is '%s'", v);
                free(v);
        }
        /* One that believes 12 was applied (Redis lost offsets 11-12, and with them
         * the writes of decisions up to 9): refused too, though 9 <= 10. Recording
         * the mark would skip those writes for good. */
        fls_batch_begin(b, "t", 8, 1);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_defer(b, e, FLS_DEFER_SET, "mark", 0, "lost");
        fls_batch_offsets(b, 12, -1, 9, 0, 0);
        apply1(st, b);
        cr_assert(fls_batch_stale(b));
        {
                char *v = fls_t_redis_cli(&env, "HMGET 't:{t.8}:meta' emitted offset");
                cr_assert(strncmp(v, "\n10", 3) == 0, "meta is '%s'", v);
                free(v);
        }
        /* With what Redis holds, the mark and its writes go in. */
        fls_batch_offsets(b, 10, -1, 9, 0, 0);
        apply1(st, b);
        cr_assert(!fls_batch_stale(b));
        {
                char *v = fls_t_redis_cli(&env, "HMGET 't:{t.8}:x' mark");
                cr_assert(strncmp(v, "lost", 4) == 0, "mark is '%s'", v);
                free(v);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* The runner sends each partition's script as soon as it is built and reads the
 * replies later: the replies must land in their own batches, a synchronous call in
 * between must not take an owed reply for its own, and a connection lost with replies
 * owed must fail their recv rather than hand back stale or missing state. */
Test(store, pipelined_batches_get_their_own_replies)
{
        fls_store_t *st = store();
        fls_batch_t *b[3];
        int r[3];
        char err[256];

        for (int k = 0; k < 3; k++) {
                int e;
                b[k] = fls_batch_new(st);
                fls_batch_begin(b[k], "t", 20 + k, 0);
                e = fls_batch_entity(b[k], "x", 1);
                fls_batch_incr(b[k], e, "n", 10 * (k + 1));
                r[k] = fls_batch_read(b[k], e, -1);
                fls_batch_offsets(b[k], -1, 5, -1, 0, 0);
                cr_assert_eq(fls_store_send(st, b[k], err, sizeof(err)), 0, "%s", err);
        }
        {
                /* Reads the owed replies first, then its own. */
                fls_meta_t m;
                int32_t p = 21;
                cr_assert_eq(fls_store_meta(st, "t", &p, 1, &m, err, sizeof(err)), 0,
                             "%s", err);
                cr_assert_eq(m.offset, 5);
        }
        for (int k = 2; k >= 0; k--) {
                cr_assert_eq(fls_store_recv(st, b[k], err, sizeof(err)), 0, "%s", err);
                cr_assert_not(fls_batch_stale(b[k]));
                cr_assert_eq(fls_hash_int(fls_batch_reply(b[k], r[k]), "n", 0),
                             10 * (k + 1), "batch %d got another batch's reply", k);
        }

        /* Owed replies lost with the connection: Redis is stopped before the sends, so
         * that neither reply can have arrived before the kill. */
        kill(env.redis_pid, SIGSTOP);
        for (int k = 0; k < 2; k++) {
                int e;
                fls_batch_begin(b[k], "t", 20 + k, 0);
                e = fls_batch_entity(b[k], "x", 1);
                fls_batch_incr(b[k], e, "n", 1);
                fls_batch_offsets(b[k], 5, 6, -1, 0, 0);
                cr_assert_eq(fls_store_send(st, b[k], err, sizeof(err)), 0, "%s", err);
        }
        fls_t_redis_stop(&env, SIGKILL);
        cr_assert_neq(fls_store_recv(st, b[0], err, sizeof(err)), 0,
                      "Redis died with the reply owed: recv must fail");
        cr_assert_neq(fls_store_recv(st, b[1], err, sizeof(err)), 0,
                      "the second reply was lost with the same connection");
        cr_assert_eq(fls_t_redis_start(&env), 0);
        /* Applied again: each batch either went through before the kill (stale now)
         * or goes through now, never twice. */
        cr_assert_eq(fls_store_apply(st, b, 2, err, sizeof(err)), 0, "%s", err);
        for (int k = 0; k < 3; k++)
                fls_batch_destroy(b[k]);
        fls_store_destroy(st);
}

/* ---- the mirror (mirror.h) against Redis ------------------------------------ */

static fls_store_t *mirrored(void)
{
        fls_store_t *st = store();
        fls_store_mirror(st, 64 << 20, 0);
        return st;
}

/* Does view h (a read served by the store) hold what Redis holds under key? */
static void assert_same_as_redis(redisContext *rc, const char *key, int list,
                                 const fls_hash_t *h, int batch)
{
        redisReply *r = redisCommand(rc, list ? "LRANGE %s 0 -1" : "HGETALL %s", key);

        cr_assert(r && r->type == REDIS_REPLY_ARRAY, "%s", key);
        if (list) {
                cr_assert_eq(h->n, r->elements, "batch %d, %s: %zu items, Redis %zu",
                             batch, key, h->n, r->elements);
                for (size_t i = 0; i < h->n; i++)
                        cr_assert_str_eq(h->fields[i], r->element[i]->str,
                                         "batch %d, %s item %zu", batch, key, i);
        } else {
                cr_assert_eq(h->n * 2, r->elements, "batch %d, %s: %zu fields, Redis %zu",
                             batch, key, h->n, r->elements / 2);
                for (size_t i = 0; i < r->elements; i += 2) {
                        const char *v = fls_hash_get(h, r->element[i]->str);
                        cr_assert_not_null(v, "batch %d, %s: no field %s", batch, key,
                                           r->element[i]->str);
                        cr_assert_str_eq(v, r->element[i + 1]->str, "batch %d, %s.%s",
                                         batch, key, r->element[i]->str);
                }
        }
        freeReplyObject(r);
}

/* Do keys a and b hold the same in Redis (hash fields in any order, list items in
 * order)? */
static void assert_redis_same(redisContext *rc, const char *a, const char *b, int list,
                              int batch)
{
        redisReply *ra = redisCommand(rc, list ? "LRANGE %s 0 -1" : "HGETALL %s", a);
        redisReply *rb = redisCommand(rc, list ? "LRANGE %s 0 -1" : "HGETALL %s", b);

        cr_assert(ra && rb && ra->type == REDIS_REPLY_ARRAY &&
                  rb->type == REDIS_REPLY_ARRAY);
        cr_assert_eq(ra->elements, rb->elements, "batch %d: %s has %zu, %s %zu", batch, a,
                     ra->elements, b, rb->elements);
        for (size_t i = 0; i < ra->elements; i += list ? 1 : 2) {
                size_t j = i;
                if (!list)
                        for (j = 0; j < rb->elements &&
                                    strcmp(rb->element[j]->str, ra->element[i]->str) != 0;
                             j += 2)
                                ;
                cr_assert_lt(j, rb->elements, "batch %d: %s.%s missing in %s", batch, a,
                             ra->element[i]->str, b);
                cr_assert_str_eq(ra->element[i + !list]->str, rb->element[j + !list]->str,
                                 "batch %d: %s and %s differ at %s", batch, a, b,
                                 ra->element[i]->str);
        }
        freeReplyObject(ra);
        freeReplyObject(rb);
}

/* One random batch for the mirror test: writes of every kind to u:0..u:3, deferred
 * ones with a mark that does or does not apply, reads of every key. The same seed
 * gives the same batch on any partition. */
struct rnd_batch {
        int ent[4], rd[4][3], lf[4];
        int64_t last, mark;
};
static void random_batch(fls_batch_t *b, int32_t p, unsigned seed, int64_t applied,
                         int64_t emitted, int64_t *ts, struct rnd_batch *r)
{
        static const char *const fields[] = {"a", "b", "c"};
        int nops;
        char v[40];

        srand(seed);
        nops = 1 + rand() % 25;
        r->last = applied + 1 + rand() % 5;
        r->mark = emitted;
        fls_batch_begin(b, "t", p, 0);
        for (int u = 0; u < 4; u++) {
                char name[8];
                int n = snprintf(name, sizeof(name), "u:%d", u);
                r->ent[u] = fls_batch_entity(b, name, (size_t)n);
        }
        for (int i = 0; i < nops; i++) {
                int e = r->ent[rand() % 4];
                int n = snprintf(v, sizeof(v), "v%u-%d", seed, rand() % 1000);
                switch (rand() % 9) {
                case 0:
                case 1:
                        fls_batch_incr(b, e, fields[rand() % 3], rand() % 11 - 5);
                        break;
                case 2:
                        fls_batch_set(b, e, "s", v, (size_t)n);
                        break;
                case 3:
                        fls_batch_setmax(b, e, "m", rand() % 2000 - 1000);
                        break;
                case 4:
                case 5:
                        /* mostly forward, sometimes back beyond the ring */
                        *ts += rand() % 900;
                        fls_batch_window(b, e, 0, rand() % 2,
                                         *ts - (rand() % 8 == 0 ? 20000 : 0),
                                         1 + rand() % 3);
                        break;
                case 6:
                        fls_batch_push(b, e, 1, v, (size_t)n);
                        break;
                case 7:
                        if (rand() % 2)
                                fls_batch_defer(b, e, FLS_DEFER_SET, "s", 0, v);
                        else
                                fls_batch_defer(b, e, FLS_DEFER_MAX, "m", rand() % 500,
                                                NULL);
                        break;
                default:
                        fls_batch_defer(b, e, FLS_DEFER_PUSH, "hist", 3600, v);
                        break;
                }
        }
        /* The mark moves on most batches; when it does not, Redis holds it already
         * and the deferred writes are not applied (as after a lost reply). */
        if (rand() % 4)
                r->mark = applied;
        for (int u = 0; u < 4; u++) {
                r->lf[u] = 1 + rand() % 2;
                r->rd[u][0] = fls_batch_read(b, r->ent[u], -1);
                r->rd[u][1] = fls_batch_read(b, r->ent[u], 0);
                r->rd[u][2] = fls_batch_read(b, r->ent[u], r->lf[u]);
        }
        fls_batch_offsets(b, applied, r->last, r->mark, *ts, 0);
}

/* The same random batches go to partition 7 through a store with the copy (reads
 * answered from it, writes sent as their result) and to partition 17 through one
 * without. After every batch: each read the first store answers equals what Redis
 * holds, and every key of partition 7 equals its twin of partition 17. */
Test(store, mirror_answers_and_writes_what_redis_would_hold)
{
        fls_store_t *st = mirrored(), *plain = store();
        fls_batch_t *b = fls_batch_new(st), *bp = fls_batch_new(plain);
        redisContext *rc = redisConnect("127.0.0.1", env.redis_port);
        int64_t applied = -1, emitted = -1, ts = 1700000000000;
        fls_mirror_stats_t ms;
        char err[256];

        if (getenv("FLS_T_MIRROR"))
                fls_store_mirror(plain, 0, 0);
        cr_assert(rc && !rc->err);
        for (int batch = 0; batch < 300; batch++) {
                struct rnd_batch r, rp;
                int64_t ts0 = ts;
                random_batch(bp, 17, 1000u + (unsigned)batch, applied, emitted, &ts, &rp);
                cr_assert_eq(fls_store_apply(plain, &bp, 1, err, sizeof(err)), 0, "%s",
                             err);
                ts = ts0;
                random_batch(b, 7, 1000u + (unsigned)batch, applied, emitted, &ts, &r);
                cr_assert_eq(fls_store_apply(st, &b, 1, err, sizeof(err)), 0, "%s", err);
                cr_assert_not(fls_batch_stale(b), "batch %d", batch);
                cr_assert_not(fls_batch_stale(bp), "batch %d", batch);
                applied = r.last;
                if (r.mark > emitted)
                        emitted = r.mark;
                for (int u = 0; u < 4; u++) {
                        static const char *const sfx[] = {"", ":w", ":seq", ":hist"};
                        char key[64], twin[64];
                        for (int k = 0; k < 4; k++) {
                                snprintf(key, sizeof(key), "t:{t.7}:u:%d%s", u, sfx[k]);
                                snprintf(twin, sizeof(twin), "t:{t.17}:u:%d%s", u,
                                         sfx[k]);
                                assert_redis_same(rc, key, twin, k >= 2, batch);
                                if (k == 0 || k == 1)
                                        assert_same_as_redis(
                                            rc, key, 0, fls_batch_reply(b, r.rd[u][k]),
                                            batch);
                                else if (k == r.lf[u] + 1)
                                        assert_same_as_redis(
                                            rc, key, 1, fls_batch_reply(b, r.rd[u][2]),
                                            batch);
                        }
                }
        }
        fls_store_mirror_stats(st, &ms);
        cr_assert_gt(ms.hits, 2000, "reads answered from memory: %lld (misses %lld)",
                     (long long)ms.hits, (long long)ms.misses);
        redisFree(rc);
        fls_batch_destroy(b);
        fls_batch_destroy(bp);
        fls_store_destroy(st);
        fls_store_destroy(plain);
}

/* One batch on partition p of entity x: n += 1, read back; returns n as read. */
static int64_t bump_x(fls_store_t *st, fls_batch_t *b, int32_t p, int64_t expect,
                      int64_t ttl_s, int *stale)
{
        char err[256];
        int e, r;

        fls_batch_begin(b, "t", p, 0);
        e = fls_batch_entity(b, "x", 1);
        fls_batch_incr(b, e, "n", 1);
        if (ttl_s > 0)
                fls_batch_expire(b, e, ttl_s);
        r = fls_batch_read(b, e, -1);
        fls_batch_offsets(b, expect, expect + 1, -1, 0, 0);
        cr_assert_eq(fls_store_apply(st, &b, 1, err, sizeof(err)), 0, "%s", err);
        *stale = fls_batch_stale(b);
        return fls_hash_int(fls_batch_reply(b, r), "n", -1);
}

/* Another instance wrote the partition (its offset fence moved): the copy of that
 * partition must go with the stale batch, or the next batch would build on it. */
Test(store, mirror_drops_a_partition_another_writer_fenced)
{
        fls_store_t *st = mirrored();
        fls_batch_t *b = fls_batch_new(st);
        fls_mirror_stats_t m0, m1;
        int stale;

        cr_assert_eq(bump_x(st, b, 8, -1, 0, &stale), 1);
        fls_store_mirror_stats(st, &m0);
        cr_assert_eq(bump_x(st, b, 8, 0, 0, &stale), 2);
        fls_store_mirror_stats(st, &m1);
        cr_assert_eq(m1.hits, m0.hits + 1, "the second read comes from memory");

        free(fls_t_redis_cli(&env, "HSET 't:{t.8}:x' n 100"));
        free(fls_t_redis_cli(&env, "HSET 't:{t.8}:meta' offset 50"));
        bump_x(st, b, 8, 1, 0, &stale);
        cr_assert(stale);
        cr_assert_eq(bump_x(st, b, 8, 50, 0, &stale), 101,
                     "read from Redis after the fence, not from the old copy");
        cr_assert_not(stale);
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* A key Redis may expire before the read would run is read from Redis. */
Test(store, mirror_never_answers_for_a_key_about_to_expire)
{
        fls_store_t *st = mirrored();
        fls_batch_t *b = fls_batch_new(st);
        fls_mirror_stats_t m0, m1;
        int stale;

        bump_x(st, b, 9, -1, 5, &stale);
        fls_store_mirror_stats(st, &m0);
        cr_assert_eq(bump_x(st, b, 9, 0, 5, &stale), 2);
        fls_store_mirror_stats(st, &m1);
        cr_assert_eq(m1.hits, m0.hits, "a 5 s TTL is inside the grace: from Redis");
        cr_assert_eq(bump_x(st, b, 9, 1, 3600, &stale), 3);
        fls_store_mirror_stats(st, &m0);
        cr_assert_eq(bump_x(st, b, 9, 2, 3600, &stale), 4);
        fls_store_mirror_stats(st, &m1);
        cr_assert_eq(m1.hits, m0.hits + 1, "an hour's TTL: from memory");
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* With the copy, a batch leaves out an EXPIRE of a key it does not write when the
 * EXPIRE would change nothing: the key does not exist (y), or its TTL was set lately
 * (z; cut by hand here so that the one left out shows). */
Test(store, mirror_leaves_out_expires_that_change_nothing)
{
        fls_store_t *st = mirrored();
        fls_batch_t *b = fls_batch_new(st);
        char *v;

        for (int i = 0; i < 2; i++) {
                int y, z;
                fls_batch_begin(b, "t", 12, 0);
                y = fls_batch_entity(b, "y", 1);
                z = fls_batch_entity(b, "z", 1);
                if (i == 0)
                        fls_batch_incr(b, z, "n", 1);
                fls_batch_expire(b, y, 1000);
                fls_batch_expire(b, z, 1000);
                fls_batch_read(b, y, -1);
                fls_batch_read(b, z, -1);
                fls_batch_offsets(b, i - 1, i, -1, 0, 0);
                if (i == 1) {
                        cut_ttl("t:{t.12}:z");
                        free(fls_t_redis_cli(&env, "CONFIG RESETSTAT"));
                }
                apply1(st, b);
                cr_assert_not(fls_batch_stale(b));
        }
        v = fls_t_redis_cli(&env, "INFO commandstats");
        cr_assert(strstr(v, "cmdstat_evalsha:"), "%s", v);
        cr_assert_null(strstr(v, "cmdstat_expire:"), "%s", v);
        free(v);
        cr_assert(ttl_of("t:{t.12}:z") <= 50, "an EXPIRE of a fresh TTL was sent");
        cr_assert_eq(ttl_of("t:{t.12}:y"), -2);
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* Redis restarted from its AOF may have lost the last second of writes: the copy
 * goes with the connection and the next read is Redis's. */
Test(store, mirror_goes_with_the_connection)
{
        fls_store_t *st = mirrored();
        fls_batch_t *b = fls_batch_new(st);
        fls_mirror_stats_t m;
        char err[256];
        int stale;

        bump_x(st, b, 10, -1, 0, &stale);
        bump_x(st, b, 10, 0, 0, &stale);
        fls_store_mirror_stats(st, &m);
        cr_assert_gt(m.keys, 0);
        fls_t_redis_stop(&env, SIGKILL);
        cr_assert_neq(fls_store_apply(st, &b, 1, err, sizeof(err)), 0);
        fls_store_mirror_stats(st, &m);
        cr_assert_eq(m.keys, 0, "dropped with the connection");
        cr_assert_eq(fls_t_redis_start(&env), 0);
        {
                int64_t applied = -1;
                char *v = fls_t_redis_cli(&env, "HGET 't:{t.10}:meta' offset");
                char *n = fls_t_redis_cli(&env, "HGET 't:{t.10}:x' n");
                int64_t before;
                if (v && *v)
                        applied = strtoll(v, NULL, 10);
                before = n && *n ? strtoll(n, NULL, 10) : 0;
                cr_assert_eq(bump_x(st, b, 10, applied, 0, &stale), before + 1);
                cr_assert_not(stale);
                free(v);
                free(n);
        }
        fls_batch_destroy(b);
        fls_store_destroy(st);
}

/* A partition this process gave up and got back: another instance may have written
 * it in between, moving its offsets on as a rightful owner does, so no batch comes
 * back stale. The runner forgets the copy on every assignment and revocation. */
Test(store, mirror_forgets_a_partition_on_reassignment)
{
        fls_store_t *st = mirrored();
        fls_batch_t *b = fls_batch_new(st);
        int stale;

        bump_x(st, b, 11, -1, 0, &stale);
        cr_assert_eq(bump_x(st, b, 11, 0, 0, &stale), 2);
        fls_store_forget(st, "t", 11);
        free(fls_t_redis_cli(&env, "HSET 't:{t.11}:x' n 100"));
        free(fls_t_redis_cli(&env, "HSET 't:{t.11}:meta' offset 50"));
        cr_assert_eq(bump_x(st, b, 11, 50, 0, &stale), 101, "not the copy's 3");
        cr_assert_not(stale);
        fls_batch_destroy(b);
        fls_store_destroy(st);
}
