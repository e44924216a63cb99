/*
 * test_mirror: the consumer's copy of Redis keys (consumers/runtime/mirror.c) on its
 * own, without Redis: that each write means what the Redis command means, that
 * integers are read as strictly as Redis reads them, and what leaves the copy
 * (budget, expiry, broken entries, a partition's prefix). test_store checks the copy
 * against a real redis-server.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"

static fls_mentry_t *put_hash(fls_mirror_t *m, const char *key, const char *const *kv,
                              size_t n)
{
        size_t lens[16];

        for (size_t i = 0; i < n; i++)
                lens[i] = strlen(kv[i]);
        return fls_mirror_put(m, key, strlen(key), 0, kv, lens, n, FLS_MIRROR_NEVER);
}

/* The entry's strings, joined with '|', into buf. */
static const char *joined(const fls_mentry_t *e, char *buf)
{
        size_t n, size = fls_mentry_size(e, &n);
        char *copy = malloc(size + 1);
        const char **strs = malloc((n + 1) * sizeof(*strs));

        buf[0] = '\0';
        fls_mentry_copy(e, copy, strs);
        for (size_t i = 0; i < n; i++) {
                if (i)
                        strcat(buf, "|");
                strcat(buf, strs[i]);
        }
        free(copy);
        free(strs);
        return buf;
}

Test(mirror, hash_writes_mean_what_redis_does)
{
        fls_mirror_t *m = fls_mirror_new(1 << 20);
        const char *kv[] = {"n", "5", "s", "abc"};
        fls_mentry_t *e = put_hash(m, "u:1", kv, 4);
        char buf[256];

        cr_assert_not_null(e);
        cr_assert_eq(fls_mirror_find(m, "u:1", 3), e);
        cr_assert_null(fls_mirror_find(m, "u:2", 3));
        cr_assert_str_eq(fls_mentry_hget(e, "s"), "abc");
        cr_assert_null(fls_mentry_hget(e, "x"));
        cr_assert_eq(fls_mentry_hincr(m, e, "n", -7), 0);
        cr_assert_str_eq(fls_mentry_hget(e, "n"), "-2");
        cr_assert_eq(fls_mentry_hincr(m, e, "new", 3), 0,
                     "a missing field counts from 0");
        fls_mentry_hset(m, e, "s", "a much longer value", 19);
        fls_mentry_hset(m, e, "t", "", 0);
        cr_assert_str_eq(joined(e, buf), "n|-2|s|a much longer value|new|3|t|");
        fls_mentry_hdel(m, e, "s");
        fls_mentry_hdel(m, e, "absent");
        cr_assert_str_eq(joined(e, buf), "n|-2|new|3|t|");
        /* HINCRBY refuses what is not a plain integer, and overflow */
        fls_mentry_hset(m, e, "f", "1.5", 3);
        cr_assert_eq(fls_mentry_hincr(m, e, "f", 1), -1);
        cr_assert_str_eq(fls_mentry_hget(e, "f"), "1.5", "unchanged after a refusal");
        fls_mentry_hset(m, e, "big", "9223372036854775807", 19);
        cr_assert_eq(fls_mentry_hincr(m, e, "big", 1), -1);
        cr_assert_eq(fls_mentry_hincr(m, e, "big", -1), 0);
        cr_assert_str_eq(fls_mentry_hget(e, "big"), "9223372036854775806");
        fls_mirror_destroy(m);
}

Test(mirror, integers_parse_as_strictly_as_redis)
{
        static const char *const good[] = {"0", "-1", "42", "9223372036854775807",
                                           "-9223372036854775808"};
        static const char *const bad[] = {"",
                                          "-",
                                          "-0",
                                          "007",
                                          "+1",
                                          " 1",
                                          "1 ",
                                          "1e3",
                                          "0x10",
                                          "9223372036854775808",
                                          "-9223372036854775809",
                                          "12a"};
        int64_t v;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                char buf[24];
                const char *t;
                size_t n;
                cr_assert_eq(fls_mirror_parse_int(good[i], strlen(good[i]), &v), 0, "%s",
                             good[i]);
                n = fls_mirror_int_text(buf, v, &t); /* and back, as Redis prints it */
                cr_assert(n == strlen(good[i]) && memcmp(t, good[i], n) == 0, "%s: %.*s",
                          good[i], (int)n, t);
        }
        cr_assert_eq(v, INT64_MIN);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(fls_mirror_parse_int(bad[i], strlen(bad[i]), &v), -1, "'%s'",
                             bad[i]);
}

Test(mirror, lists_push_and_keep_the_last)
{
        fls_mirror_t *m = fls_mirror_new(1 << 20);
        const char *items[] = {"a", "b"};
        size_t lens[] = {1, 1};
        fls_mentry_t *e = fls_mirror_put(m, "l", 1, 1, items, lens, 2, FLS_MIRROR_NEVER);
        char buf[256];

        cr_assert(fls_mentry_is_list(e));
        fls_mentry_rpush(m, e, "c", 1);
        fls_mentry_rpush(m, e, "dd", 2);
        fls_mentry_keep_last(m, e, 3);
        cr_assert_str_eq(joined(e, buf), "b|c|dd");
        fls_mentry_keep_last(m, e, 5);
        cr_assert_str_eq(joined(e, buf), "b|c|dd", "keeping more than held keeps all");
        fls_mirror_destroy(m);
}

Test(mirror, a_nul_in_a_value_cannot_be_kept)
{
        fls_mirror_t *m = fls_mirror_new(1 << 20);
        const char *kv[] = {"f", "v"};
        const char *bad[] = {"f", "a\0b"};
        size_t lens[] = {1, 3};
        fls_mentry_t *e = put_hash(m, "k", kv, 2);

        cr_assert_null(fls_mirror_put(m, "k", 1, 0, bad, lens, 2, FLS_MIRROR_NEVER));
        cr_assert(fls_mentry_broken(e), "the old copy is no longer answered from");
        cr_assert_eq(fls_mirror_expire(m, 0), 1, "broken entries go between polls");
        cr_assert_null(fls_mirror_find(m, "k", 1));
        fls_mirror_destroy(m);
}

Test(mirror, the_least_recently_used_go_beyond_the_budget)
{
        fls_mirror_t *m = fls_mirror_new(4000);
        const char *kv[] = {"f", "0123456789012345678901234567890123456789"};
        char key[16];

        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                put_hash(m, key, kv, 2);
                if (i >= 1)
                        fls_mirror_touch(m, fls_mirror_find(m, "k0", 2));
        }
        cr_assert_gt(fls_mirror_bytes(m), 4000);
        cr_assert_gt(fls_mirror_trim(m), 0);
        cr_assert_leq(fls_mirror_bytes(m), 4000);
        cr_assert_not_null(fls_mirror_find(m, "k0", 2), "used last, kept");
        cr_assert_not_null(fls_mirror_find(m, "k99", 3), "written last, kept");
        cr_assert_null(fls_mirror_find(m, "k1", 2), "the oldest unused went first");
        fls_mirror_clear(m);
        cr_assert_eq(fls_mirror_count(m), 0);
        cr_assert_eq(fls_mirror_bytes(m), 0, "the byte count follows every entry");
        fls_mirror_destroy(m);
}

Test(mirror, expiry_and_prefix_remove_entries)
{
        fls_mirror_t *m = fls_mirror_new(1 << 20);
        const char *kv[] = {"f", "v"};
        size_t lens[] = {1, 1};

        fls_mirror_put(m, "{t.1}:a", 7, 0, kv, lens, 2, 1000);
        fls_mirror_put(m, "{t.1}:b", 7, 0, kv, lens, 2, FLS_MIRROR_NEVER);
        fls_mirror_put(m, "{t.2}:a", 7, 0, kv, lens, 2, 5000);
        cr_assert_eq(fls_mirror_expire(m, 2000), 1, "only what expires before then");
        cr_assert_null(fls_mirror_find(m, "{t.1}:a", 7));
        cr_assert_eq(fls_mirror_drop_prefix(m, "{t.1}:", 6), 1);
        cr_assert_eq(fls_mirror_count(m), 1);
        cr_assert_not_null(fls_mirror_find(m, "{t.2}:a", 7));
        fls_mentry_set_expiry(fls_mirror_find(m, "{t.2}:a", 7), 100);
        cr_assert_eq(fls_mirror_expire(m, 2000), 1);
        cr_assert_eq(fls_mirror_count(m), 0);
        fls_mirror_destroy(m);
}

Test(mirror, many_keys_grow_the_table)
{
        fls_mirror_t *m = fls_mirror_new((size_t)1 << 30);
        const char *kv[] = {"f", "v"};
        char key[32];

        for (int i = 0; i < 20000; i++) {
                snprintf(key, sizeof(key), "key:%d", i);
                put_hash(m, key, kv, 2);
        }
        cr_assert_eq(fls_mirror_count(m), 20000);
        for (int i = 0; i < 20000; i += 997) {
                snprintf(key, sizeof(key), "key:%d", i);
                cr_assert_not_null(fls_mirror_find(m, key, strlen(key)), "%s", key);
        }
        fls_mirror_destroy(m);
        fls_mirror_destroy(NULL);
}

/* Keys of many sizes loaded and evicted for a long time, as a consumer's copy does all
 * day: once the copy is full, released blocks serve the next keys and the slabs stop
 * growing. (In glibc's heap the same churn kept growing the process.) */
Test(mirror, churn_reuses_blocks)
{
        fls_mirror_t *m = fls_mirror_new(8 << 20);
        static char value[4000];
        const char *kv[] = {"f", value};
        size_t lens[2] = {1, 0}, warm = 0;
        unsigned seed = 7;
        char key[32];

        memset(value, 'v', sizeof(value));
        for (int i = 0; i < 200000; i++) {
                seed = seed * 1103515245u + 12345u;
                lens[1] = 1 + (seed >> 8) % (sizeof(value) - 1);
                snprintf(key, sizeof(key), "user:%d", i);
                cr_assert_not_null(fls_mirror_put(m, key, strlen(key), 0, kv, lens, 2,
                                                  FLS_MIRROR_NEVER));
                if (i % 2 == 0) /* a second write grows some of them */
                        fls_mentry_hset(m, fls_mirror_find(m, key, strlen(key)), "g",
                                        value, lens[1] / 2);
                fls_mirror_trim(m);
                cr_assert_leq(fls_mirror_bytes(m), 8 << 20);
                if (i == 50000)
                        warm = fls_mirror_slab_bytes(m);
        }
        cr_assert_gt(warm, 0);
        cr_assert_leq(fls_mirror_slab_bytes(m), warm + 256 * 1024,
                      "slabs grew from %zu to %zu bytes after the copy was full", warm,
                      fls_mirror_slab_bytes(m));
        /* 12.3 MiB here: blocks up to a third larger than asked, and what one size
         * freed is kept for that size */
        cr_assert_leq(fls_mirror_slab_bytes(m), 16 << 20, "%zu bytes of slabs for 8 MiB",
                      fls_mirror_slab_bytes(m));
        fls_mirror_destroy(m);
}
