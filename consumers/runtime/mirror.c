/*
 * mirror: see mirror.h. Entries are chained in a power-of-two hash table over the
 * key name and linked in use order for eviction. An entry's strings live in one
 * buffer, each as its length (4 bytes), its bytes and a NUL, so that a scan skips
 * without strlen: a write finds its field by a linear scan and moves the tail when a
 * value changes length. Hashes here are a user's fields or a ring of a few dozen slots,
 * so that costs less than the HGETALL reply it replaces; the buffer only grows, so after
 * the first writes of a key none of this allocates.
 *
 * Entries and buffers are blocks of a few sizes, cut from slabs the copy maps itself;
 * a block released waits on its size's free list for the next key of that size. In
 * glibc's heap the copy's churn (2.27M keys loaded and evicted over 10M events, in
 * buffers of every size) left freed memory scattered among live blocks, and the
 * process grew by 39 MiB over the second 4.7M events with the copy full at 64 MiB;
 * with the slabs it grew by 5 MiB (bench/README.md, "Update 7"). The cost: the copy
 * keeps, per size, the most it ever used of that size, and a block is up to a third
 * larger than asked. In that run 64 MiB of blocks in use took 120 MiB of slabs.
 * Blocks beyond the largest size are malloc'ed.
 */
#include "mirror.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Block sizes: powers of two and the halfway steps between them. */
static const size_t block_sizes[] = {32,   48,    64,    96,    128,   192,   256,  384,
                                     512,  768,   1024,  1536,  2048,  3072,  4096, 6144,
                                     8192, 12288, 16384, 24576, 32768, 49152, 65536};
#define NSIZES     (sizeof(block_sizes) / sizeof(block_sizes[0]))
#define SLAB_BYTES (256 * 1024)

struct slab {
        struct slab *next;
        alignas(max_align_t) char data[];
};

struct fls_mentry {
        struct fls_mentry *hnext;       /* hash chain */
        struct fls_mentry *prev, *next; /* use order, most recent first */
        uint64_t h;
        int64_t expires_ms;
        int list, broken;
        size_t n; /* strings in buf */
        char *buf;
        size_t len, cap;
        size_t keylen;
        char key[];
};

struct fls_mirror {
        fls_mentry_t **tab;
        size_t tabsize, count, bytes, max_bytes;
        fls_mentry_t *head, *tail;
        void *free_blocks[NSIZES]; /* linked through each block's first word */
        char *cut[NSIZES];         /* the rest of the slab blocks of a size come from */
        size_t cut_left[NSIZES];
        struct slab *slabs;
        size_t slab_bytes;
};

#define ENTRY_OVERHEAD 16 /* its slot in the hash table, at a load of up to one */

static size_t item_size(size_t len);
static void item_write(char *at, const char *s, size_t len);

static uint64_t key_hash(const char *s, size_t len)
{
        uint64_t h = 1469598103934665603ull; /* FNV-1a */

        for (size_t i = 0; i < len; i++)
                h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
        return h;
}

/* ---- blocks ---------------------------------------------------------------- */

/* The index of the smallest block size of at least size, or -1: malloc. */
static int size_index(size_t size)
{
        for (size_t i = 0; i < NSIZES; i++)
                if (size <= block_sizes[i])
                        return (int)i;
        return -1;
}

/* What a block asked for size really holds. */
static size_t block_size(size_t size)
{
        int i = size_index(size);

        return i < 0 ? size : block_sizes[i];
}

static void *block_get(fls_mirror_t *m, size_t size)
{
        int i = size_index(size);
        void *p = NULL;

        if (i < 0) {
                p = malloc(size);
        } else if ((p = m->free_blocks[i]) != NULL) {
                UNPOISON(p, block_sizes[i]);
                memcpy(&m->free_blocks[i], p, sizeof(void *));
        } else {
                if (m->cut_left[i] < block_sizes[i]) {
                        struct slab *s =
                            mmap(NULL, sizeof(*s) + SLAB_BYTES, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                        if (s != MAP_FAILED) {
                                POISON(s->data, SLAB_BYTES);
                                s->next = m->slabs;
                                m->slabs = s;
                                m->slab_bytes += SLAB_BYTES;
                                m->cut[i] = s->data;
                                m->cut_left[i] = SLAB_BYTES;
                        }
                }
                if (m->cut_left[i] >= block_sizes[i]) {
                        p = m->cut[i];
                        m->cut[i] += block_sizes[i];
                        m->cut_left[i] -= block_sizes[i];
                        UNPOISON(p, block_sizes[i]);
                }
        }
        if (!p) {
                fprintf(stderr, "flashstream: out of memory\n");
                abort();
        }
        return p;
}

/* Gives back a block got with the same size (or the size it holds). */
static void block_put(fls_mirror_t *m, void *p, size_t size)
{
        int i = size_index(size);

        if (!p)
                return;
        if (i < 0) {
                free(p);
                return;
        }
        memcpy(p, &m->free_blocks[i], sizeof(void *));
        m->free_blocks[i] = p;
        POISON((char *)p + sizeof(void *), block_sizes[i] - sizeof(void *));
}

static size_t entry_block(size_t keylen)
{
        return block_size(sizeof(fls_mentry_t) + keylen + 1);
}

static size_t entry_bytes(const fls_mentry_t *e)
{
        return entry_block(e->keylen) + e->cap + ENTRY_OVERHEAD;
}

fls_mirror_t *fls_mirror_new(size_t max_bytes)
{
        fls_mirror_t *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        m->tabsize = 1024;
        m->tab = calloc(m->tabsize, sizeof(*m->tab));
        if (!m->tab) {
                free(m);
                return NULL;
        }
        m->max_bytes = max_bytes;
        return m;
}

static void unlink_use(fls_mirror_t *m, fls_mentry_t *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                m->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                m->tail = e->prev;
        e->prev = e->next = NULL;
}

static void link_head(fls_mirror_t *m, fls_mentry_t *e)
{
        e->prev = NULL;
        e->next = m->head;
        if (m->head)
                m->head->prev = e;
        m->head = e;
        if (!m->tail)
                m->tail = e;
}

static void remove_entry(fls_mirror_t *m, fls_mentry_t *e)
{
        fls_mentry_t **pp = &m->tab[e->h & (m->tabsize - 1)];

        while (*pp != e)
                pp = &(*pp)->hnext;
        *pp = e->hnext;
        unlink_use(m, e);
        m->bytes -= entry_bytes(e);
        m->count--;
        block_put(m, e->buf, e->cap);
        block_put(m, e, entry_block(e->keylen));
}

void fls_mirror_clear(fls_mirror_t *m)
{
        if (!m)
                return;
        while (m->head)
                remove_entry(m, m->head);
}

void fls_mirror_destroy(fls_mirror_t *m)
{
        if (!m)
                return;
        fls_mirror_clear(m);
        for (struct slab *s = m->slabs, *next; s; s = next) {
                next = s->next;
                UNPOISON(s->data, SLAB_BYTES);
                munmap(s, sizeof(*s) + SLAB_BYTES);
        }
        free(m->tab);
        free(m);
}

fls_mentry_t *fls_mirror_find(fls_mirror_t *m, const char *key, size_t len)
{
        return fls_mirror_find_hashed(m, key, len, key_hash(key, len));
}

uint64_t fls_mirror_hash(const char *key, size_t len)
{
        return key_hash(key, len);
}

void fls_mirror_prefetch(const fls_mirror_t *m, uint64_t h, int step)
{
        fls_mentry_t *const *slot = &m->tab[h & (m->tabsize - 1)];

        if (step == 0) {
                __builtin_prefetch(slot);
        } else if (*slot) {
                /* the chain's first entry: its hash, length and key span two lines */
                __builtin_prefetch(*slot);
                __builtin_prefetch((const char *)*slot + 64);
        }
}

fls_mentry_t *fls_mirror_find_hashed(fls_mirror_t *m, const char *key, size_t len,
                                     uint64_t h)
{
        for (fls_mentry_t *e = m->tab[h & (m->tabsize - 1)]; e; e = e->hnext)
                if (e->h == h && e->keylen == len && memcmp(e->key, key, len) == 0)
                        return e;
        return NULL;
}

void fls_mirror_touch(fls_mirror_t *m, fls_mentry_t *e)
{
        if (m->head == e)
                return;
        unlink_use(m, e);
        link_head(m, e);
}

static void grow_table(fls_mirror_t *m)
{
        size_t nsize = m->tabsize * 2;
        fls_mentry_t **nt = calloc(nsize, sizeof(*nt));

        if (!nt)
                return; /* longer chains, still correct */
        for (size_t i = 0; i < m->tabsize; i++) {
                fls_mentry_t *e = m->tab[i], *next;
                for (; e; e = next) {
                        next = e->hnext;
                        e->hnext = nt[e->h & (nsize - 1)];
                        nt[e->h & (nsize - 1)] = e;
                }
        }
        free(m->tab);
        m->tab = nt;
        m->tabsize = nsize;
}

/* Makes room for need bytes of strings, keeping the byte count right. The block
 * sizes grow by half a size at a time; beyond them, by doubling. */
static void reserve(fls_mirror_t *m, fls_mentry_t *e, size_t need)
{
        size_t cap;
        char *buf;

        if (need <= e->cap)
                return;
        cap = block_size(need);
        if (size_index(need) < 0 && cap < 2 * e->cap)
                cap = 2 * e->cap;
        buf = block_get(m, cap);
        if (e->len)
                memcpy(buf, e->buf, e->len);
        block_put(m, e->buf, e->cap);
        m->bytes += cap - e->cap;
        e->buf = buf;
        e->cap = cap;
}

fls_mentry_t *fls_mirror_put(fls_mirror_t *m, const char *key, size_t len, int list,
                             const char *const *strs, const size_t *lens, size_t n,
                             int64_t expires_ms)
{
        fls_mentry_t *e = fls_mirror_find(m, key, len);
        size_t total = 0;

        for (size_t i = 0; i < n; i++) {
                if (memchr(strs[i], '\0', lens[i]) || lens[i] > UINT32_MAX - 1) {
                        if (e)
                                e->broken = 1;
                        return NULL;
                }
                total += item_size(lens[i]);
        }
        if (!e) {
                e = block_get(m, entry_block(len));
                memset(e, 0, sizeof(*e));
                memcpy(e->key, key, len);
                e->key[len] = '\0';
                e->keylen = len;
                e->h = key_hash(key, len);
                if (m->count + 1 > m->tabsize)
                        grow_table(m);
                e->hnext = m->tab[e->h & (m->tabsize - 1)];
                m->tab[e->h & (m->tabsize - 1)] = e;
                m->count++;
                m->bytes += entry_bytes(e);
                link_head(m, e);
        } else {
                fls_mirror_touch(m, e);
        }
        reserve(m, e, total);
        e->len = 0;
        for (size_t i = 0; i < n; i++) {
                item_write(e->buf + e->len, strs[i], lens[i]);
                e->len += item_size(lens[i]);
        }
        e->n = n;
        e->list = list;
        e->broken = 0;
        e->expires_ms = expires_ms;
        return e;
}

size_t fls_mirror_expire(fls_mirror_t *m, int64_t horizon_ms)
{
        size_t gone = 0;

        for (fls_mentry_t *e = m->head, *next; e; e = next) {
                next = e->next;
                if (e->broken || e->expires_ms < horizon_ms) {
                        remove_entry(m, e);
                        gone++;
                }
        }
        return gone;
}

size_t fls_mirror_drop_prefix(fls_mirror_t *m, const char *prefix, size_t len)
{
        size_t gone = 0;

        for (fls_mentry_t *e = m->head, *next; e; e = next) {
                next = e->next;
                if (e->keylen >= len && memcmp(e->key, prefix, len) == 0) {
                        remove_entry(m, e);
                        gone++;
                }
        }
        return gone;
}

size_t fls_mirror_trim(fls_mirror_t *m)
{
        size_t gone = 0;

        while (m->tail && m->bytes > m->max_bytes) {
                remove_entry(m, m->tail);
                gone++;
        }
        return gone;
}

size_t fls_mirror_bytes(const fls_mirror_t *m)
{
        return m->bytes;
}

size_t fls_mirror_count(const fls_mirror_t *m)
{
        return m->count;
}

size_t fls_mirror_slab_bytes(const fls_mirror_t *m)
{
        return m->slab_bytes;
}

int fls_mentry_is_list(const fls_mentry_t *e)
{
        return e->list;
}

int fls_mentry_broken(const fls_mentry_t *e)
{
        return e->broken;
}

void fls_mentry_break(fls_mentry_t *e)
{
        e->broken = 1;
}

void fls_mentry_set_expiry(fls_mentry_t *e, int64_t expires_ms)
{
        e->expires_ms = expires_ms;
}

int64_t fls_mentry_expiry(const fls_mentry_t *e)
{
        return e->expires_ms;
}

size_t fls_mentry_size(const fls_mentry_t *e, size_t *n)
{
        *n = e->n;
        return e->len;
}

void fls_mentry_copy(const fls_mentry_t *e, char *dst, const char **strs)
{
        if (e->len == 0)
                return; /* an empty key: no buffer yet */
        memcpy(dst, e->buf, e->len);
        for (size_t i = 0, off = 0; i < e->n; i++) {
                uint32_t l;
                memcpy(&l, dst + off, sizeof(l));
                strs[i] = dst + off + sizeof(l);
                off += sizeof(l) + l + 1;
        }
}

/* One string in buf: its length (4 bytes, unaligned), its bytes, a NUL. */
static size_t item_len(const fls_mentry_t *e, size_t off)
{
        uint32_t l;

        memcpy(&l, e->buf + off, sizeof(l));
        return l;
}

static size_t item_size(size_t len)
{
        return sizeof(uint32_t) + len + 1;
}

static void item_write(char *at, const char *s, size_t len)
{
        uint32_t l = (uint32_t)len;

        memcpy(at, &l, sizeof(l));
        memcpy(at + sizeof(l), s, len);
        at[sizeof(l) + len] = '\0';
}

/* Offset of the field's item in buf, or -1. */
static long find_field(const fls_mentry_t *e, const char *field, size_t flen)
{
        size_t off = 0;

        for (size_t i = 0; i + 1 < e->n; i += 2) {
                size_t l = item_len(e, off);
                if (l == flen && memcmp(e->buf + off + sizeof(uint32_t), field, l) == 0)
                        return (long)off;
                off += item_size(l);
                off += item_size(item_len(e, off));
        }
        return -1;
}

const char *fls_mentry_hget(const fls_mentry_t *e, const char *field)
{
        long off = find_field(e, field, strlen(field));

        if (off < 0)
                return NULL;
        off += (long)item_size(item_len(e, (size_t)off));
        return e->buf + off + sizeof(uint32_t);
}

/* Replaces the item at off (old bytes in all) with s, moving the tail. */
static void splice(fls_mirror_t *m, fls_mentry_t *e, size_t off, size_t old,
                   const char *s, size_t len)
{
        size_t nsz = item_size(len);

        if (nsz > old)
                reserve(m, e, e->len + nsz - old);
        memmove(e->buf + off + nsz, e->buf + off + old, e->len - off - old);
        item_write(e->buf + off, s, len);
        e->len = e->len + nsz - old;
}

void fls_mentry_hset(fls_mirror_t *m, fls_mentry_t *e, const char *field,
                     const char *value, size_t vlen)
{
        size_t flen = strlen(field);
        long off = find_field(e, field, flen);

        if (off < 0) {
                reserve(m, e, e->len + item_size(flen) + item_size(vlen));
                item_write(e->buf + e->len, field, flen);
                e->len += item_size(flen);
                item_write(e->buf + e->len, value, vlen);
                e->len += item_size(vlen);
                e->n += 2;
                return;
        }
        off += (long)item_size(flen);
        splice(m, e, (size_t)off, item_size(item_len(e, (size_t)off)), value, vlen);
}

void fls_mentry_hdel(fls_mirror_t *m, fls_mentry_t *e, const char *field)
{
        size_t flen = strlen(field), sz;
        long off = find_field(e, field, flen);

        (void)m;
        if (off < 0)
                return;
        sz = item_size(flen);
        sz += item_size(item_len(e, (size_t)off + sz));
        memmove(e->buf + off, e->buf + off + sz, e->len - (size_t)off - sz);
        e->len -= sz;
        e->n -= 2;
}

int fls_mirror_parse_int(const char *s, size_t len, int64_t *out)
{
        uint64_t v = 0, lim;
        size_t i = 0;
        int neg = 0;

        if (len == 0 || len > 20)
                return -1;
        if (s[0] == '-') {
                neg = 1;
                i = 1;
                if (len == 1)
                        return -1;
        }
        if (s[i] == '0' && len > i + 1)
                return -1; /* leading zero */
        if (neg && s[i] == '0')
                return -1; /* "-0" */
        lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (; i < len; i++) {
                unsigned d = (unsigned char)s[i] - '0';
                if (d > 9 || v > (lim - d) / 10)
                        return -1;
                v = v * 10 + d;
        }
        *out = neg ? (int64_t)(0 - v) : (int64_t)v;
        return 0;
}

size_t fls_mirror_int_text(char buf[24], int64_t v, const char **text)
{
        char *p = buf + 24;
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

        do
                *--p = (char)('0' + u % 10);
        while ((u /= 10) != 0);
        if (v < 0)
                *--p = '-';
        *text = p;
        return (size_t)(buf + 24 - p);
}

int fls_mentry_hincr(fls_mirror_t *m, fls_mentry_t *e, const char *field, int64_t delta)
{
        const char *cur = fls_mentry_hget(e, field), *t;
        int64_t v = 0;
        char tmp[24];
        size_t n;

        if (cur && fls_mirror_parse_int(cur, strlen(cur), &v) < 0)
                return -1;
        if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta))
                return -1;
        n = fls_mirror_int_text(tmp, v + delta, &t);
        fls_mentry_hset(m, e, field, t, n);
        return 0;
}

void fls_mentry_rpush(fls_mirror_t *m, fls_mentry_t *e, const char *item, size_t len)
{
        reserve(m, e, e->len + item_size(len));
        item_write(e->buf + e->len, item, len);
        e->len += item_size(len);
        e->n++;
}

void fls_mentry_keep_last(fls_mirror_t *m, fls_mentry_t *e, size_t keep)
{
        size_t off = 0;

        (void)m;
        if (e->n <= keep)
                return;
        for (size_t i = 0; i < e->n - keep; i++)
                off += item_size(item_len(e, off));
        memmove(e->buf, e->buf + off, e->len - off);
        e->len -= off;
        e->n = keep;
}
