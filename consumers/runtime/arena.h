/*
 * arena: a growable byte buffer for the strings a consumer copies out of reused Avro
 * values during update() and needs again in decide() (ids, keys), and the growth rule
 * of every per-poll array of the runtime and the consumers (fls_grow). Reset per poll,
 * so after the first batches neither allocates.
 */
#ifndef FLS_ARENA_H
#define FLS_ARENA_H

#include <stddef.h>

typedef struct fls_arena {
        char *buf;
        size_t len, cap;
} fls_arena_t;

/* Copies s[0..len) plus a NUL; returns its offset (offsets stay valid across growth,
 * pointers do not). Aborts when memory runs out: the arena is bounded by one poll. */
size_t fls_arena_add(fls_arena_t *a, const char *s, size_t len);
static inline const char *fls_arena_str(const fls_arena_t *a, size_t off)
{
        return a->buf + off;
}
static inline void fls_arena_reset(fls_arena_t *a)
{
        a->len = 0;
}
void fls_arena_free(fls_arena_t *a);

/* Makes the array p of elem-sized items hold at least need of them: the capacity
 * *cap doubles (from 64) and the array may move; returns it. Aborts when memory runs
 * out, like fls_arena_add: what it grows is bounded by one poll. */
void *fls_grow(void *p, size_t *cap, size_t need, size_t elem);

#endif
