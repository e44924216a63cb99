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

        a->buf = fls_grow(a->buf, &a->cap, a->len + len + 1, 1);
        memcpy(a->buf + off, s, len);
        a->buf[off + len] = '\0';
        a->len += len + 1;
        return off;
}

void *fls_grow(void *p, size_t *cap, size_t need, size_t elem)
{
        size_t n = *cap ? *cap : 64;
        void *np;

        if (need <= *cap)
                return p;
        while (n < need)
                n *= 2;
        np = realloc(p, n * elem);
        if (!np) {
                fprintf(stderr, "flashstream: out of memory\n");
                abort();
        }
        *cap = n;
        return np;
}

void fls_arena_free(fls_arena_t *a)
{
        free(a->buf);
        a->buf = NULL;
        a->len = a->cap = 0;
}
