/*
 * mirror: a copy, in the consumer's memory, of the Redis hashes and lists that its
 * own partitions' batches read. The store (Redis side, between Avro decode and the
 * models) fills it from the reads it sends and plays every later write of the same
 * keys into it, so that a key read again is answered here instead of by Redis.
 *
 * Only the store touches it, and only for keys under the hash tags of partitions
 * this process holds: the offset fence makes it their only writer. Entries carry
 * the key's expiry as Redis will apply it, at the latest; the store removes what
 * may have expired, whatever a write could not be played exactly ("broken"), and
 * the least recently used entries beyond a byte budget, between polls.
 *
 * An entry is a run of strings: items (a list) or fields and values alternating (a
 * hash), in the order HGETALL / LRANGE gave them, new fields last.
 */
#ifndef FLS_MIRROR_H
#define FLS_MIRROR_H

#include <stddef.h>
#include <stdint.h>

typedef struct fls_mirror fls_mirror_t;
typedef struct fls_mentry fls_mentry_t;

#define FLS_MIRROR_NEVER INT64_MAX /* expiry of a key without a TTL */

/* max_bytes: the budget fls_mirror_trim enforces (entries, keys and strings). */
fls_mirror_t *fls_mirror_new(size_t max_bytes);
void fls_mirror_destroy(fls_mirror_t *m);
void fls_mirror_clear(fls_mirror_t *m);

/* The entry of key, or NULL; does not count as a use. */
fls_mentry_t *fls_mirror_find(fls_mirror_t *m, const char *key, size_t len);
/* The same with the key's fls_mirror_hash. A caller looking up many keys at once
 * hashes them all, calls fls_mirror_prefetch with step 0 for each, then step 1 for
 * each, then finds them: the cache misses of the table and of the entries overlap
 * instead of coming one after the other (they were most of the time of a find). */
uint64_t fls_mirror_hash(const char *key, size_t len);
void fls_mirror_prefetch(const fls_mirror_t *m, uint64_t h, int step);
fls_mentry_t *fls_mirror_find_hashed(fls_mirror_t *m, const char *key, size_t len,
                                     uint64_t h);
/* Marks the entry as just used (the last one trim evicts). */
void fls_mirror_touch(fls_mirror_t *m, fls_mentry_t *e);
/* Replaces the key's content with n strings (lens[i] bytes each; a hash: field,
 * value, field, ...), creating the entry if needed, and clears its broken mark.
 * A string holding a NUL cannot be kept: the entry is marked broken instead and
 * NULL returned. */
fls_mentry_t *fls_mirror_put(fls_mirror_t *m, const char *key, size_t len, int list,
                             const char *const *strs, const size_t *lens, size_t n,
                             int64_t expires_ms);

/* Between polls only (no reply owed that an entry may answer). Remove the entries
 * that may expire before horizon_ms and the broken ones; those whose key starts with
 * prefix; the least recently used while over the budget. Each returns how many. */
size_t fls_mirror_expire(fls_mirror_t *m, int64_t horizon_ms);
size_t fls_mirror_drop_prefix(fls_mirror_t *m, const char *prefix, size_t len);
size_t fls_mirror_trim(fls_mirror_t *m);
size_t fls_mirror_bytes(const fls_mirror_t *m);
size_t fls_mirror_count(const fls_mirror_t *m);
/* Memory the copy's slabs hold: what it used at its peak, per block size. Kept until
 * fls_mirror_destroy, and reused for new entries. */
size_t fls_mirror_slab_bytes(const fls_mirror_t *m);

/* ---- one entry ------------------------------------------------------------- */

int fls_mentry_is_list(const fls_mentry_t *e);
int fls_mentry_broken(const fls_mentry_t *e);
/* A write that cannot be played exactly: never answer from the entry again. */
void fls_mentry_break(fls_mentry_t *e);
/* When Redis may expire the key at the earliest (monotonic ms). */
void fls_mentry_set_expiry(fls_mentry_t *e, int64_t expires_ms);
int64_t fls_mentry_expiry(const fls_mentry_t *e);
/* The content: *n strings, copied by fls_mentry_copy into dst (the size returned
 * here, in bytes) with a pointer to each, NUL-terminated, in strs[0..*n). */
size_t fls_mentry_size(const fls_mentry_t *e, size_t *n);
void fls_mentry_copy(const fls_mentry_t *e, char *dst, const char **strs);

/* Hash writes, with Redis's semantics (field and value must not point into the
 * entry). hincr fails (-1, nothing changed) where
 * HINCRBY would: a value that is not a plain integer, or overflow. */
const char *fls_mentry_hget(const fls_mentry_t *e, const char *field);
void fls_mentry_hset(fls_mirror_t *m, fls_mentry_t *e, const char *field,
                     const char *value, size_t vlen);
void fls_mentry_hdel(fls_mirror_t *m, fls_mentry_t *e, const char *field);
int fls_mentry_hincr(fls_mirror_t *m, fls_mentry_t *e, const char *field, int64_t delta);
/* List writes: RPUSH of one item, then LTRIM key -keep -1. */
void fls_mentry_rpush(fls_mirror_t *m, fls_mentry_t *e, const char *item, size_t len);
void fls_mentry_keep_last(fls_mirror_t *m, fls_mentry_t *e, size_t keep);

/* Redis's string2ll: optional '-', digits without leading zeros, in range. */
int fls_mirror_parse_int(const char *s, size_t len, int64_t *out);
/* Redis's ll2string: v in decimal, written at the end of buf, with *text pointing at
 * it (not NUL-terminated); returns its length. */
size_t fls_mirror_int_text(char buf[24], int64_t v, const char **text);

#endif
