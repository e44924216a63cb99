/*
 * test_arena: the per-poll string arena and the growth rule of the per-poll arrays
 * (fls_grow). Offsets handed out by the arena must stay valid as it grows, and a grown
 * array must keep what it held: the runtime and the consumers keep offsets and
 * indexes into both across a whole poll.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

Test(arena, offsets_survive_growth_and_strings_end_in_nul)
{
        fls_arena_t a = {0};
        size_t offs[2000];
        char want[32];

        for (int i = 0; i < 2000; i++) {
                int n = snprintf(want, sizeof(want), "key-%d", i);
                offs[i] = fls_arena_add(&a, want, (size_t)n);
        }
        cr_assert_geq(a.cap, a.len);
        for (int i = 0; i < 2000; i++) {
                snprintf(want, sizeof(want), "key-%d", i);
                cr_assert_str_eq(fls_arena_str(&a, offs[i]), want, "entry %d", i);
        }
        /* Bytes, not C strings: an embedded NUL is copied, and a NUL follows. */
        size_t off = fls_arena_add(&a, "a\0b", 3);
        cr_assert_eq(memcmp(fls_arena_str(&a, off), "a\0b\0", 4), 0);
        fls_arena_free(&a);
        cr_assert_null(a.buf);
        cr_assert_eq(a.len, 0);
        cr_assert_eq(a.cap, 0);
}

Test(arena, reset_reuses_the_buffer)
{
        fls_arena_t a = {0};
        char *buf;
        size_t cap;

        for (int i = 0; i < 100; i++)
                fls_arena_add(&a, "0123456789", 10);
        buf = a.buf;
        cap = a.cap;
        fls_arena_reset(&a);
        cr_assert_eq(a.len, 0);
        for (int i = 0; i < 100; i++)
                fls_arena_add(&a, "0123456789", 10);
        cr_assert_eq(a.buf, buf, "a poll as large as the last one allocated again");
        cr_assert_eq(a.cap, cap);
        fls_arena_free(&a);
}

Test(arena, grow_doubles_keeps_contents_and_leaves_enough_alone)
{
        int64_t *v = NULL;
        size_t cap = 0;

        v = fls_grow(v, &cap, 1, sizeof(*v));
        cr_assert_eq(cap, 64, "first capacity %zu", cap);
        for (size_t i = 0; i < 64; i++)
                v[i] = (int64_t)i * 7;
        /* Enough room already: neither the array nor its capacity changes. */
        cr_assert_eq(fls_grow(v, &cap, 64, sizeof(*v)), v);
        cr_assert_eq(cap, 64);
        v = fls_grow(v, &cap, 65, sizeof(*v));
        cr_assert_eq(cap, 128);
        v = fls_grow(v, &cap, 1000, sizeof(*v));
        cr_assert_eq(cap, 1024, "capacity %zu for 1000", cap);
        for (size_t i = 0; i < 64; i++)
                cr_assert_eq(v[i], (int64_t)i * 7, "item %zu lost in growth", i);
        v[1023] = -1; /* the whole capacity is usable (ASan, valgrind) */
        free(v);
}
