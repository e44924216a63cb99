/*
 * store: the Redis side of a consumer. Feature updates of one input partition are
 * queued per micro-batch and applied in one Lua script call, atomically with that
 * partition's offsets; the hashes a consumer asked to read back are read by plain
 * commands pipelined right behind the script, so they see what it left, or, for keys
 * read before, answered from the consumer's copy of them (mirror.h, fls_store_mirror).
 * The stage between Avro decode and the models.
 *
 * Key layout (all keys of input partition P of topic T share the hash tag {T.P}, so a
 * batch is one script on one Redis Cluster slot):
 *   <prefix>:{T.P}:meta            offset (last applied), emitted (last offset whose
 *                                  outputs were flushed), watermark, late
 *   <prefix>:{T.P}:<entity>        lifetime counters and last values (HINCRBY, HSET)
 *   <prefix>:{T.P}:<entity>:<fam>  a ring of event-time buckets for family <fam>:
 *                                  field "#<slot>" holds the bucket number stored in
 *                                  slot, "<feature>@<slot>" the counts
 * A bucket is floor(ts / bucket_ms); its slot is bucket mod slots. Writing a bucket
 * newer than the one a slot holds clears the slot first, so memory per entity is
 * bounded by slots x features, and keys carry a TTL so idle entities disappear. A
 * key's TTL is sent again at most every eighth of it (store.c, ttl_fresh).
 */
#ifndef FLS_STORE_H
#define FLS_STORE_H

#include <stddef.h>
#include <stdint.h>

/* A family of windowed counters, declared by a consumer at start-up. A family with
 * bucket_ms 0 and no features is a list instead: the last window_ms items pushed
 * (key <entity>:<name>), e.g. a user's recent events for a sequence model. */
typedef struct fls_family {
        const char *name;            /* short: part of the key */
        int64_t bucket_ms;           /* bucket width */
        int64_t window_ms;           /* longest window read from it */
        const char *const *features; /* NULL-terminated */
        int64_t ttl_s; /* key TTL; 0 = window + lateness + 1 h (lists: 1 day); < 0:
                          only what deferred pushes set (FLS_DEFER_PUSH) */
} fls_family_t;

typedef struct fls_store fls_store_t;
typedef struct fls_batch fls_batch_t;

/* One reply hash: fields and values as they came from HGETALL. */
typedef struct fls_hash {
        size_t n;
        const char *const *fields;
        const char *const *values;
} fls_hash_t;

/* Partition meta as stored. Absent fields read as -1 (offsets) or 0. */
typedef struct fls_meta {
        int64_t offset, emitted, watermark, late;
} fls_meta_t;

/* families: NULL-name-terminated, must outlive the store. lateness_ms sizes the rings:
 * slots = (window_ms + lateness_ms) / bucket_ms + 2. Connects at once: a store that
 * cannot reach Redis fails here so that start-up errors are seen early. */
fls_store_t *fls_store_new(const char *host, int port, int timeout_ms, const char *prefix,
                           const fls_family_t *families, int64_t lateness_ms,
                           char *errstr, size_t errstr_size);
void fls_store_destroy(fls_store_t *st);

/* (Re)connects and loads the script if the store has no live connection. */
int fls_store_connect(fls_store_t *st, char *errstr, size_t errstr_size);
/* Keeps a copy of the keys that batches read (mirror.h), so that a key read again
 * is answered from memory instead of by Redis: most reads of a consumer are of keys
 * it read before. Every write a batch makes to a copied key is played into the copy
 * as the script plays it in Redis; a key whose write cannot be played exactly (a
 * float increment, a stock op) is read from Redis again. While a key's copy is exact
 * when a script is built (no batch of its partition owed a reply, no deferred write
 * to it), its writes are played at once and sent as their result: one HSET of the
 * fields they changed and one HDEL of those they removed. The copy is dropped with
 * the connection (Redis may have restarted and lost writes) and a partition's with
 * a stale batch (another instance wrote); keys go before Redis could expire them,
 * and the least recently used beyond max_bytes. Needs what the offset fence needs
 * already: no other writer of a partition's keys, and no eviction by Redis
 * (maxmemory-policy noeviction). max_bytes 0 turns it off (the default). verify:
 * reads still go to Redis and each is compared with the copy (a test mode). */
void fls_store_mirror(fls_store_t *st, size_t max_bytes, int verify);
/* Forgets the copy of a partition's keys: call when this process starts or stops
 * owning the partition, since another instance may write them in between. */
void fls_store_forget(fls_store_t *st, const char *topic, int32_t partition);
typedef struct fls_mirror_stats {
        int64_t hits;   /* reads answered from memory */
        int64_t misses; /* reads sent to Redis */
        int64_t diffs;  /* verify: reads that differed from the copy */
        size_t bytes, keys;
        size_t slab_bytes; /* memory the copy holds for them (fls_mirror_slab_bytes) */
} fls_mirror_stats_t;
void fls_store_mirror_stats(const fls_store_t *st, fls_mirror_stats_t *out);

/* Reads the meta of several partitions in one round trip. */
int fls_store_meta(fls_store_t *st, const char *topic, const int32_t *partitions,
                   size_t n, fls_meta_t *out, char *errstr, size_t errstr_size);
int fls_store_family_slots(const fls_store_t *st, int fam);

/* ---- batches ------------------------------------------------------------ */

fls_batch_t *fls_batch_new(fls_store_t *st);
void fls_batch_destroy(fls_batch_t *b);
/* Starts a batch for one partition. A read-only batch (replaying messages whose
 * updates are already applied) keeps reads and drops every write. */
void fls_batch_begin(fls_batch_t *b, const char *topic, int32_t partition, int read_only);
/* Field names given to the calls below are kept by pointer until the batch is
 * applied (the values are copied): pass literals or storage that outlives the batch.
 * Sets the entity the next calls refer to ("u:42"); returns its key index. */
int fls_batch_entity(fls_batch_t *b, const char *entity, size_t len);
void fls_batch_incr(fls_batch_t *b, int ent, const char *field, int64_t delta);
void fls_batch_incrf(fls_batch_t *b, int ent, const char *field, double delta);
void fls_batch_set(fls_batch_t *b, int ent, const char *field, const char *value,
                   size_t len);
void fls_batch_setmax(fls_batch_t *b, int ent, const char *field, int64_t value);
void fls_batch_expire(fls_batch_t *b, int ent, int64_t ttl_s);
/* Deferred writes: what a decision changes in the partition's state (a signal's
 * state, a user's last action). The runner queues them into the partition's next
 * script call, so they become durable together with the "emitted" mark of the batch
 * that decided them, and a replay of that batch decides again from the same state.
 * They apply in read-only batches too, and only once per mark: a batch whose
 * "emitted" mark Redis holds already applies none of them (a script carrying them
 * ran; its reply was lost). field and s must live until the apply. */
typedef enum {
        FLS_DEFER_SET,
        FLS_DEFER_INCR,
        FLS_DEFER_MAX,
        FLS_DEFER_EXPIRE,
        FLS_DEFER_PUSH /* s to the entity's list family named field, TTL i seconds */
} fls_defer_kind_t;
void fls_batch_defer(fls_batch_t *b, int ent, fls_defer_kind_t kind, const char *field,
                     int64_t i, const char *s);
/* Adds delta to feature `feat` of family `fam` in the bucket of ts. */
void fls_batch_window(fls_batch_t *b, int ent, int fam, int feat, int64_t ts,
                      int64_t delta);
/* A counter that never goes negative, such as stock on hand. ADD adds amount; TAKE
 * removes amount if that much is there and books it to ref (an order) in the
 * entity's "<entity>:ledger" hash, else adds it to the overflow field (e.g.
 * "oversold") and takes nothing; GIVE returns up to amount of what ref still holds
 * (a cancelled line of an oversold order gives nothing back). Exactly-once comes
 * from the batch's offset fence, not from the ledger. Applied in the order queued,
 * never coalesced. */
typedef enum { FLS_STOCK_ADD, FLS_STOCK_TAKE, FLS_STOCK_GIVE } fls_stock_op_t;
void fls_batch_stock(fls_batch_t *b, int ent, fls_stock_op_t op, const char *field,
                     const char *ref, size_t reflen, int64_t amount, const char *over);
/* Appends value to the list family fam of the entity (keeps its last items). */
void fls_batch_push(fls_batch_t *b, int ent, int fam, const char *value, size_t len);
/* Asks for the entity hash (fam < 0), a family ring or a list (items as fields, in
 * order, oldest first) to come back after the apply;
 * returns a read index for fls_batch_reply. Repeated asks share one read. */
int fls_batch_read(fls_batch_t *b, int ent, int fam);
/* expect: the applied offset the caller believes Redis holds (-1: none; a read-only
 * batch then skips the check); the batch moves it to last, with the watermark; late
 * is the number of events the runner found too late for the windows; emitted (or -1)
 * records outputs flushed up to there. */
void fls_batch_offsets(fls_batch_t *b, int64_t expect, int64_t last, int64_t emitted,
                       int64_t watermark, int64_t late);
int fls_batch_empty(const fls_batch_t *b);

/* Pipelines the script of every batch in bs (one round trip) and reads the replies.
 * Returns 0, or -1 on a Redis error (the connection is dropped; retry the same
 * batches after fls_store_connect). A batch whose expected offset is not the stored
 * one (another instance wrote since, or Redis lost its last second of writes) is
 * flagged stale and applies nothing: reload the meta and seek. */
int fls_store_apply(fls_store_t *st, fls_batch_t **bs, size_t n, char *errstr,
                    size_t errstr_size);
/* The same, one batch at a time, so that Redis runs a batch's script while the caller
 * prepares the next one: fls_store_send writes the script and returns; fls_store_recv
 * waits for that batch's reply (replies come in the order sent). On -1 the connection
 * is dropped and every batch whose reply was owed must be applied again. Any other
 * call on the store first reads the owed replies. */
int fls_store_send(fls_store_t *st, fls_batch_t *b, char *errstr, size_t errstr_size);
int fls_store_recv(fls_store_t *st, fls_batch_t *b, char *errstr, size_t errstr_size);
int fls_batch_stale(const fls_batch_t *b);
/* After fls_store_apply: the hash of a read index, valid until the next begin. */
const fls_hash_t *fls_batch_reply(const fls_batch_t *b, int read);

/* ---- reading features ---------------------------------------------------- */

const char *fls_hash_get(const fls_hash_t *h, const char *field);
int64_t fls_hash_int(const fls_hash_t *h, const char *field, int64_t def);
double fls_hash_dbl(const fls_hash_t *h, const char *field, double def);
/* Sum of feature feat of a family ring over the buckets of the window_ms ending with
 * the bucket of ref_ts. */
int64_t fls_ring_sum(const fls_store_t *st, const fls_hash_t *ring, int fam, int feat,
                     int64_t ref_ts, int64_t window_ms);

/* Key of an entity as the store spells it, for tools and tests. */
int fls_store_key(const fls_store_t *st, const char *topic, int32_t partition,
                  const char *entity, const char *family, char *buf, size_t size);

/* Reads one key's hash synchronously (tools and tests; not for the hot path). The
 * result is owned by the store and valid until the next call. */
int fls_store_hgetall(fls_store_t *st, const char *key, const fls_hash_t **out,
                      char *errstr, size_t errstr_size);

#endif

/* ---- claims on global counters ------------------------------------------------
 * A few counters are global rather than per partition (a campaign's coupon budget, a
 * region's express capacity this hour). Each is one Redis key with its own hash tag,
 * changed by a script that claims an amount under a limit, idempotently by claim id:
 * an id granted once is granted again with the same amount, an id refused once stays
 * refused, so a replayed decision can neither spend twice nor change its outcome.
 *   <prefix>:{<counter>}       used; hw:<stream>, the highest position granted
 *   <prefix>:{<counter>}:ids   claim id -> amount granted (0: refused), with a TTL
 * All claims of a batch go out in one pipelined round trip. */
typedef struct fls_claims fls_claims_t;

fls_claims_t *fls_claims_new(void);
void fls_claims_destroy(fls_claims_t *c);
void fls_claims_reset(fls_claims_t *c);
/* Queues a claim; returns its index. Strings are copied. stream and pos name the
 * input the claim decides on (e.g. "clickstream/3" and the event's offset; NULL: none):
 * they let fls_claims_run refuse it without a round trip when that is Redis's answer. */
int fls_claims_add(fls_claims_t *c, const char *counter, const char *id,
                   const char *stream, int64_t pos, int64_t amount, int64_t limit);
/* Runs the queued claims (one round trip); on a Redis error the connection is dropped
 * and -1 returned: the same claims can be run again.
 * A claim whose counter, as the last reply for its (counter, stream) showed it,
 * already refuses it, at a position of the stream above any ever granted on that
 * counter, is refused here: no round trip, no record in Redis. That is Redis's
 * answer, now and on any replay, because claims only add to a counter and the limit is
 * the caller's. Most claims on a spent budget go this way. It holds while this process
 * is the stream's only claimant and Redis keeps its writes: call fls_claims_forget
 * when partitions change owner and when Redis may have lost writes (a stale batch, an
 * error on another connection); a new connection forgets by itself. */
int fls_claims_run(fls_store_t *st, fls_claims_t *c, int64_t ids_ttl_s, char *errstr,
                   size_t errstr_size);
void fls_claims_forget(fls_claims_t *c);
/* Claims refused without asking Redis, in all runs so far. */
int64_t fls_claims_local(const fls_claims_t *c);
size_t fls_claims_count(const fls_claims_t *c);
int64_t fls_claims_granted(const fls_claims_t *c, int idx);
/* The counter's value after the claim (spent so far), e.g. for budget pacing. */
int64_t fls_claims_used(const fls_claims_t *c, int idx);
/* Reads a counter's current value without claiming (0 when absent). */
int fls_store_counter(fls_store_t *st, const char *counter, int64_t *used, char *errstr,
                      size_t errstr_size);
