/*
 * arena: see arena.h. Used between update() and decide() of a consumer, on the
 * per-message path, so growth doubles and the buffer is kept across polls.
 */
#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t fls_arena_add(fls_arena_t *a, const char *s, size_t len)
{
        size_t off = a->len;

        if (a->len + len + 1 > a->cap) {
                size_t cap = a->cap ? a->cap : 4096;
                char *nb;
                while (cap < a->len + len + 1)
                        cap *= 2;
                nb = realloc(a->buf, cap);
                if (!nb) {
                        fprintf(stderr, "flashstream: out of memory\n");
                        abort();
                }
                a->buf = nb;
                a->cap = cap;
        }
        memcpy(a->buf + off, s, len);
        a->buf[off + len] = '\0';
        a->len += len + 1;
        return off;
}

void fls_arena_free(fls_arena_t *a)
{
        free(a->buf);
        a->buf = NULL;
        a->len = a->cap = 0;
}
