/*
 * store: micro-batches of feature updates applied to Redis in one Lua script per
 * input partition, atomically with the partition's offsets (see store.h for the key
 * layout). This is where "features are exactly-once" is made true: the script refuses
 * a batch unless the stored offset is the one the caller last wrote, and the updates
 * and the new offset become visible together.
 *
 * Cost model (../shared/NOTES.md): a Redis command costs ~2 us inside a script and
 * ~85 us as its own round trip, and building commands through hiredis is a quarter
 * of the work. So updates are coalesced in C first (a hot key touched by 500 events
 * in a batch becomes one HINCRBY), every batch of a poll goes out in one pipeline,
 * and all buffers are reused from batch to batch.
 */
#include "store.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "log.h"
#include "mirror.h"

/* The script. KEYS[1] is the partition's meta hash, the rest are entity keys.
 * ARGV: expected, last, emitted, watermark, late, read_only, nfam, per family its
 * feature count and names, then ops, each "<op> <key index> args...":
 *   W key fam slot bucket feat delta   windowed counter (feat is the family index)
 *   I key field delta                  HINCRBY
 *   F key field delta                  HINCRBYFLOAT
 *   S key field value                  HSET
 *   M key n field value...             HSET each field whose stored number is less
 *                                      than value (or absent): one HMGET, one HSET
 *   E key ttl                          EXPIRE
 *   H key n field value...             HSET: the result of a key's writes, worked
 *                                      out on the consumer's copy (mirror.h)
 *   X key n field...                   HDEL: the same, fields the writes removed
 *   L key cap n value...               RPUSH n values to a list, keep the last cap
 *   K key add|take|give field ledger-key ref amount overflow ttl
 *                                      stock-like counter that never goes negative:
 *                                      take moves amount out if available (adding it
 *                                      to the ref's ledger entry), else adds it to
 *                                      overflow; give returns up to amount of what the
 *                                      ref still holds
 * The same ops in lower case (i f s m e l) are deferred writes of earlier decisions:
 * they apply before the rest, read-only or not, unless the batch is stale or Redis
 * holds its "emitted" mark already. The writes of the decisions up to a mark always
 * travel with it, so a stored mark means a script carrying them ran: its reply was
 * lost and the caller is sending them again. Without this, a counter among them
 * (capped_users) went up twice (the fault suite, seed 7).
 * "expected" is the offset the caller believes is stored: any other stored value
 * means another instance wrote since (fencing) or Redis lost its last writes, and the
 * batch is refused as stale. A read-only batch is checked too when it says what it
 * expects (>= 0): a mark recorded over a Redis that lost writes would skip the lost
 * decisions' deferred writes for good. Returns {stale, applied offset, overwritten,
 * whether the deferred writes applied} (the last two for the mirror, mirror.h).
 * The keys to read back are not read here: HGETALL and LRANGE follow the script on
 * the connection as plain commands (see send_batch). */
static const char apply_lua[] =
    "local meta = KEYS[1]\n"
    "local expected = tonumber(ARGV[1])\n"
    "local ro = ARGV[6] == '1'\n"
    "local applied = tonumber(redis.call('HGET', meta, 'offset') or '-1')\n"
    "local stale = 0\n"
    "if applied ~= expected and (not ro or expected >= 0) then stale = 1 end\n"
    "-- outputs are never emitted past what is applied: an emitted mark beyond the\n"
    "-- stored offset means Redis lost writes since (a restart from the AOF)\n"
    "if ro and tonumber(ARGV[3]) > applied then stale = 1 end\n"
    "local write = (not ro) and stale == 0\n"
    "local mark = tonumber(ARGV[3])\n"
    "local stored = tonumber(redis.call('HGET', meta, 'emitted') or '-1')\n"
    "local posts = stale == 0 and (mark < 0 or stored < mark)\n"
    "local i = 7\n"
    "local nfam = tonumber(ARGV[i]); i = i + 1\n"
    "local fams = {}\n"
    "for f = 1, nfam do\n"
    "  local n = tonumber(ARGV[i]); i = i + 1\n"
    "  local names = {}\n"
    "  for k = 1, n do names[k] = ARGV[i]; i = i + 1 end\n"
    "  fams[f] = names\n"
    "end\n"
    "local over = 0\n"
    "local n = #ARGV\n"
    "local deferred = {i = 'I', f = 'F', s = 'S', m = 'M', e = 'E', l = 'L'}\n"
    "while i <= n do\n"
    "  local op = ARGV[i]\n"
    "  local key = KEYS[tonumber(ARGV[i + 1])]\n"
    "  local write = write\n"
    "  local up = deferred[op]\n"
    "  if up then write = posts; op = up end\n"
    "  if op == 'W' then\n"
    "    if write then\n"
    "      local slot = ARGV[i + 3]\n"
    "      local held = '#' .. slot\n"
    "      local bucket = tonumber(ARGV[i + 4])\n"
    "      local names = fams[tonumber(ARGV[i + 2])]\n"
    "      local cur = tonumber(redis.call('HGET', key, held) or '-1')\n"
    "      if cur < bucket then\n"
    "        local del = {}\n"
    "        for k = 1, #names do del[k] = names[k] .. '@' .. slot end\n"
    "        redis.call('HDEL', key, unpack(del))\n"
    "        redis.call('HSET', key, held, bucket)\n"
    "        cur = bucket\n"
    "      end\n"
    "      if cur == bucket then\n"
    "        redis.call('HINCRBY', key, names[tonumber(ARGV[i + 5])] .. '@' .. slot,\n"
    "                   ARGV[i + 6])\n"
    "      else\n"
    "        over = over + 1\n"
    "      end\n"
    "    end\n"
    "    i = i + 7\n"
    "  elseif op == 'I' then\n"
    "    if write then redis.call('HINCRBY', key, ARGV[i + 2], ARGV[i + 3]) end\n"
    "    i = i + 4\n"
    "  elseif op == 'F' then\n"
    "    if write then redis.call('HINCRBYFLOAT', key, ARGV[i + 2], ARGV[i + 3]) end\n"
    "    i = i + 4\n"
    "  elseif op == 'S' then\n"
    "    if write then redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3]) end\n"
    "    i = i + 4\n"
    "  elseif op == 'M' then\n"
    "    local cnt = tonumber(ARGV[i + 2])\n"
    "    if write then\n"
    "      local fl, set = {}, {}\n"
    "      for k = 1, cnt do fl[k] = ARGV[i + 1 + 2 * k] end\n"
    "      local cur = redis.call('HMGET', key, unpack(fl))\n"
    "      for k = 1, cnt do\n"
    "        local c, v = tonumber(cur[k] or ''), ARGV[i + 2 + 2 * k]\n"
    "        if c == nil or c < tonumber(v) then\n"
    "          set[#set + 1] = fl[k]; set[#set + 1] = v\n"
    "        end\n"
    "      end\n"
    "      if #set > 0 then redis.call('HSET', key, unpack(set)) end\n"
    "    end\n"
    "    i = i + 3 + 2 * cnt\n"
    "  elseif op == 'H' then\n"
    "    local cnt = tonumber(ARGV[i + 2])\n"
    "    if write then redis.call('HSET', key, unpack(ARGV, i + 3, i + 2 + 2 * cnt)) "
    "end\n"
    "    i = i + 3 + 2 * cnt\n"
    "  elseif op == 'X' then\n"
    "    local cnt = tonumber(ARGV[i + 2])\n"
    "    if write then redis.call('HDEL', key, unpack(ARGV, i + 3, i + 2 + cnt)) end\n"
    "    i = i + 3 + cnt\n"
    "  elseif op == 'E' then\n"
    "    if write then redis.call('EXPIRE', key, ARGV[i + 2]) end\n"
    "    i = i + 3\n"
    "  elseif op == 'K' then\n"
    "    if write then\n"
    "      local field, ref = ARGV[i + 3], ARGV[i + 5]\n"
    "      local ledger = KEYS[tonumber(ARGV[i + 4])]\n"
    "      local amt = tonumber(ARGV[i + 6])\n"
    "      if ARGV[i + 2] == 'add' then\n"
    "        redis.call('HINCRBY', key, field, amt)\n"
    "      elseif ARGV[i + 2] == 'take' then\n"
    "        local have = tonumber(redis.call('HGET', key, field) or '0')\n"
    "        if have >= amt then\n"
    "          redis.call('HINCRBY', key, field, -amt)\n"
    "          redis.call('HINCRBY', ledger, ref, amt)\n"
    "        else\n"
    "          redis.call('HINCRBY', key, ARGV[i + 7], amt)\n"
    "        end\n"
    "        redis.call('EXPIRE', ledger, ARGV[i + 8])\n"
    "      else\n"
    "        local took = tonumber(redis.call('HGET', ledger, ref) or '0')\n"
    "        local give = math.min(took, amt)\n"
    "        if give > 0 then\n"
    "          redis.call('HINCRBY', key, field, give)\n"
    "          if give == took then redis.call('HDEL', ledger, ref)\n"
    "          else redis.call('HINCRBY', ledger, ref, -give) end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    i = i + 9\n"
    "  elseif op == 'L' then\n"
    "    local cnt = tonumber(ARGV[i + 3])\n"
    "    if write then\n"
    "      local len = redis.call('RPUSH', key, unpack(ARGV, i + 4, i + 3 + cnt))\n"
    "      local cap = tonumber(ARGV[i + 2])\n"
    "      if len > cap then redis.call('LTRIM', key, -cap, -1) end\n"
    "    end\n"
    "    i = i + 4 + cnt\n"
    "  else\n"
    "    return redis.error_reply('flashstream: unknown op ' .. tostring(op))\n"
    "  end\n"
    "end\n"
    "if write then\n"
    "  redis.call('HSET', meta, 'offset', ARGV[2], 'watermark', ARGV[4])\n"
    "  if tonumber(ARGV[5]) > 0 then redis.call('HINCRBY', meta, 'late', ARGV[5]) end\n"
    "  applied = tonumber(ARGV[2])\n"
    "end\n"
    "if stale == 0 and mark >= 0 and stored < mark then\n"
    "  redis.call('HSET', meta, 'emitted', ARGV[3])\n"
    "end\n"
    "return {stale, applied, over, posts and 1 or 0}\n";

/* Fields per H or X op: Lua's unpack needs stack for each. */
#define RESULT_CHUNK 400

/* A key's ops run in this order (op_cmp): EXPIRE last, after any write that may
 * create the key (EXPIRE on a missing key does nothing). */
enum { OP_WIN, OP_INCR, OP_INCRF, OP_SET, OP_MAX, OP_PUSH, OP_STOCK, OP_EXPIRE };

struct op {
        int kind;
        int key;           /* index into b->keys */
        int fam, feat;     /* OP_WIN */
        const char *field; /* others */
        int64_t bucket;    /* OP_WIN */
        int64_t i;         /* delta, value, ttl */
        double d;          /* OP_INCRF */
        size_t sval, slen; /* OP_SET, OP_PUSH, OP_STOCK ref: offset/length in b->text */
        int sub;           /* OP_STOCK: 0 add, 1 take, 2 give */
        const char *over;  /* OP_STOCK: overflow field */
        size_t seq;        /* order of the call, for "last write wins" */
        int post;          /* deferred write of an earlier decision */
};

struct key {
        size_t off, len;       /* full key name in b->text */
        uint64_t kh;           /* fls_mirror_hash of the name: the mirror's and the TTL
                                  cache's index (send_batch) */
        size_t eoff, elen;     /* the entity part of it */
        int fam;               /* -1: entity hash */
        int ent;               /* entity key this key belongs to */
        int read;              /* read index, -1 if none */
        int written;           /* build: an op of the batch creates or changes it */
        int64_t ttl, ttl_post; /* build: EXPIRE sent (seconds), -1 none; of the
                                  writes, of the deferred ones */
        fls_mentry_t *me;      /* its copy in the mirror, looked up once per send and
                                  parse (entries go only between polls) */
        int unplayable;        /* build: a write the mirror cannot play (see play_op) */
        int has_post;          /* build: a deferred write goes to it */
        int result;            /* build: its writes go as their result (H, X ops) */
};

/* A piece of a batch's reply arena (reply_fns). */
struct chunk {
        struct chunk *next;
        size_t used, cap;
        size_t pad; /* data stays 16-byte aligned */
        char data[];
};
#define CHUNK_BYTES 65536
#define CHUNK_SPARE 4 /* kept per batch between polls */

/* One slot of the TTL cache: a two-way table over hashes of the key name and TTL. A
 * lost slot costs one EXPIRE more, never a missing one. */
struct ttlent {
        uint64_t h; /* 0: empty */
        int64_t at_ms;
};
/* 8 MiB. A 300k-event backlog writes ~300k keys inside one TTL/8: with the direct-
 * mapped table of 2^17 slots this replaces, collisions sent 1.1 EXPIREs per click
 * event, against 0.66 with this one (bench/command-mix.sh 300000 17). */
#define TTL_SLOTS (1u << 19)

struct famx {
        fls_family_t f;
        int nfeat;
        int64_t slots;
        int64_t ttl_s;
};

struct fls_store {
        redisContext *rc;
        uint64_t conns; /* connections made so far: what a claims cache was seen on */
        char *host;
        int port, timeout_ms;
        char *prefix;
        struct famx *fams;
        int nfams;
        char sha[41];
        redisReply *hreply; /* fls_store_hgetall */
        fls_hash_t hview;
        const char **hptrs;
        size_t hptrs_cap;
        /* keys whose TTL this connection set lately (ttl_fresh) */
        struct ttlent *ttl;
        /* the argument list of send_batch, reused from batch to batch */
        struct argref *refs;
        size_t refcap;
        fls_arena_t cmd; /* the command in RESP, reused */
        /* batches sent by fls_store_send whose replies are not read yet, in order */
        fls_batch_t **inflight;
        size_t ninflight, inflight_head, inflight_cap;
        /* the copy of read keys (mirror.h); NULL when off */
        fls_mirror_t *mirror;
        int verify;
        fls_mirror_stats_t mstats;
        int64_t next_expire_ms;
        /* tags of partitions whose copies are dropped at the next quiet point */
        fls_arena_t poison;
};

struct fls_batch {
        fls_store_t *st;
        int read_only;
        char tag[300];
        size_t taglen;
        int64_t expect, last, emitted, watermark, late;
        fls_arena_t text; /* key names and SET values; reused */
        struct key *keys;
        size_t nkeys, keys_cap;
        /* entity index: open addressing over keys with fam == -1 and per-family keys */
        int *slots;
        size_t slots_cap;
        struct op *ops, *ops_tmp; /* ops_tmp: sort_ops's spare */
        size_t nops, ops_cap, ops_tmp_cap;
        size_t *groups; /* sort_ops: where each (post, key) group starts */
        size_t groups_cap;
        size_t nreads;
        char *served; /* per read: answered by the mirror, not sent */
        size_t served_cap;
        size_t nowed;  /* read replies owed after the script's */
        size_t *touch; /* fields a key's writes touched (offsets in text) */
        size_t ntouch, touch_cap;
        int tracking;   /* play_op records into touch */
        int64_t t_send; /* monotonic ms when the script was built */
        /* reply: the script's, and one per read, built in the arena */
        redisReply *reply;
        redisReply **rreplies;
        size_t nrreplies, rreplies_cap;
        struct chunk *arena, *spare; /* newest first */
        int sent; /* fls_store_send: the reply is still on the connection */
        int stale;
        fls_hash_t *hashes;
        size_t hashes_cap;
        int *read_key; /* read index -> key index */
        size_t read_key_cap;
        fls_arena_t num; /* formatted numbers of the command; reused */
};

/* A list family (read back with LRANGE) rather than a hash or a ring. */
static int is_list(const fls_store_t *st, int fam)
{
        return fam >= 0 && st->fams[fam].slots == 0;
}

fls_store_t *fls_store_new(const char *host, int port, int timeout_ms, const char *prefix,
                           const fls_family_t *families, int64_t lateness_ms,
                           char *errstr, size_t errstr_size)
{
        fls_store_t *st = calloc(1, sizeof(*st));
        int n = 0;

        if (!st) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        st->host = strdup(host);
        st->prefix = strdup(prefix);
        st->port = port;
        st->timeout_ms = timeout_ms;
        while (families && families[n].name)
                n++;
        st->fams = calloc(n ? (size_t)n : 1, sizeof(*st->fams));
        st->ttl = calloc(TTL_SLOTS, sizeof(*st->ttl));
        if (!st->host || !st->prefix || !st->fams || !st->ttl) {
                snprintf(errstr, errstr_size, "out of memory");
                fls_store_destroy(st);
                return NULL;
        }
        for (int i = 0; i < n; i++) {
                struct famx *fx = &st->fams[i];
                fx->f = families[i];
                if (fx->f.bucket_ms == 0 && !fx->f.features && fx->f.window_ms > 0) {
                        /* A list: the last window_ms items, in arrival order. */
                        fx->slots = 0;
                        fx->ttl_s = fx->f.ttl_s ? fx->f.ttl_s : 86400;
                        if (fx->f.ttl_s < 0)
                                fx->ttl_s = -1;
                        continue;
                }
                if (fx->f.bucket_ms <= 0 || fx->f.window_ms < fx->f.bucket_ms ||
                    !fx->f.features || !fx->f.features[0]) {
                        snprintf(errstr, errstr_size,
                                 "family %s: needs bucket_ms > 0, window_ms >= bucket_ms "
                                 "and at least one feature",
                                 fx->f.name);
                        fls_store_destroy(st);
                        return NULL;
                }
                while (fx->f.features[fx->nfeat])
                        fx->nfeat++;
                /* Enough slots that an event as late as allowed still finds its
                 * bucket in the ring, plus one for the bucket being filled. */
                fx->slots = (fx->f.window_ms + lateness_ms) / fx->f.bucket_ms + 2;
                if (fx->slots > 1024) {
                        /* A ring's fields are read per scored event: keep it small. */
                        snprintf(
                            errstr, errstr_size,
                            "family %s: window and lateness need %lld buckets, at most "
                            "1024: use wider buckets or less lateness",
                            fx->f.name, (long long)fx->slots);
                        fls_store_destroy(st);
                        return NULL;
                }
                fx->ttl_s = fx->f.ttl_s ? fx->f.ttl_s
                                        : (fx->f.window_ms + lateness_ms) / 1000 + 3600;
                if (fx->ttl_s < 0)
                        fx->ttl_s = -1;
        }
        st->nfams = n;
        if (fls_store_connect(st, errstr, errstr_size)) {
                fls_store_destroy(st);
                return NULL;
        }
        return st;
}

void fls_store_destroy(fls_store_t *st)
{
        if (!st)
                return;
        if (st->hreply)
                freeReplyObject(st->hreply);
        if (st->rc)
                redisFree(st->rc);
        fls_mirror_destroy(st->mirror);
        fls_arena_free(&st->poison);
        fls_arena_free(&st->cmd);
        free(st->hptrs);
        free(st->inflight);
        free(st->ttl);
        free(st->refs);
        free(st->fams);
        free(st->host);
        free(st->prefix);
        free(st);
}

static int settle(fls_store_t *st, char *errstr, size_t errstr_size);

static void ttl_forget(fls_store_t *st);

/* After any error the context is dead (hiredis): replies still owed to sent batches
 * are lost with it, and those batches must be applied again. */
static void drop(fls_store_t *st)
{
        ttl_forget(st);
        for (size_t i = st->inflight_head; i < st->ninflight; i++)
                st->inflight[i]->sent = 0;
        st->ninflight = st->inflight_head = 0;
        fls_mirror_clear(st->mirror);
        fls_arena_reset(&st->poison);
        if (st->rc) {
                redisFree(st->rc);
                st->rc = NULL;
        }
}

int fls_store_connect(fls_store_t *st, char *errstr, size_t errstr_size)
{
        struct timeval tv = {st->timeout_ms / 1000, (st->timeout_ms % 1000) * 1000};
        redisReply *r;

        if (st->rc)
                return 0;
        st->rc = redisConnectWithTimeout(st->host, st->port, tv);
        if (!st->rc || st->rc->err) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s", st->host, st->port,
                         st->rc ? st->rc->errstr : "cannot allocate context");
                drop(st);
                return -1;
        }
        redisSetTimeout(st->rc, tv);
        st->conns++;
        r = redisCommand(st->rc, "SCRIPT LOAD %s", apply_lua);
        if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
                snprintf(errstr, errstr_size, "redis %s:%d: SCRIPT LOAD: %s", st->host,
                         st->port,
                         r && r->type == REDIS_REPLY_ERROR ? r->str : st->rc->errstr);
                if (r)
                        freeReplyObject(r);
                drop(st);
                return -1;
        }
        memcpy(st->sha, r->str, 40);
        st->sha[40] = '\0';
        freeReplyObject(r);
        return 0;
}

void fls_store_mirror(fls_store_t *st, size_t max_bytes, int verify)
{
        fls_mirror_destroy(st->mirror);
        st->mirror = NULL;
        fls_arena_reset(&st->poison);
        st->verify = verify;
        if (max_bytes > 0 && !(st->mirror = fls_mirror_new(max_bytes))) {
                fprintf(stderr, "flashstream: out of memory\n");
                abort();
        }
}

void fls_store_forget(fls_store_t *st, const char *topic, int32_t partition)
{
        char tag[300];
        int n;

        if (!st->mirror)
                return;
        n = snprintf(tag, sizeof(tag), "%s:{%s.%d}:", st->prefix, topic, (int)partition);
        if (n > 0 && (size_t)n < sizeof(tag))
                fls_arena_add(&st->poison, tag, (size_t)n);
        else
                fls_mirror_clear(st->mirror); /* a tag that long: forget everything */
}

void fls_store_mirror_stats(const fls_store_t *st, fls_mirror_stats_t *out)
{
        *out = st->mstats;
        out->bytes = st->mirror ? fls_mirror_bytes(st->mirror) : 0;
        out->keys = st->mirror ? fls_mirror_count(st->mirror) : 0;
        out->slab_bytes = st->mirror ? fls_mirror_slab_bytes(st->mirror) : 0;
}

int fls_store_family_slots(const fls_store_t *st, int fam)
{
        return (int)st->fams[fam].slots;
}

int fls_store_key(const fls_store_t *st, const char *topic, int32_t partition,
                  const char *entity, const char *family, char *buf, size_t size)
{
        int n = family ? snprintf(buf, size, "%s:{%s.%d}:%s:%s", st->prefix, topic,
                                  (int)partition, entity, family)
                       : snprintf(buf, size, "%s:{%s.%d}:%s", st->prefix, topic,
                                  (int)partition, entity);
        return n < 0 || (size_t)n >= size ? -1 : 0;
}

int fls_store_meta(fls_store_t *st, const char *topic, const int32_t *partitions,
                   size_t n, fls_meta_t *out, char *errstr, size_t errstr_size)
{
        char key[512];
        size_t i;

        if (fls_store_connect(st, errstr, errstr_size) || settle(st, errstr, errstr_size))
                return -1;
        for (i = 0; i < n; i++) {
                fls_store_key(st, topic, partitions[i], "meta", NULL, key, sizeof(key));
                redisAppendCommand(st->rc, "HMGET %s offset emitted watermark late", key);
        }
        for (i = 0; i < n; i++) {
                redisReply *r = NULL;
                int64_t v[4];
                if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r ||
                    r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
                        snprintf(errstr, errstr_size, "redis: reading meta: %s",
                                 r && r->type == REDIS_REPLY_ERROR ? r->str
                                                                   : st->rc->errstr);
                        if (r)
                                freeReplyObject(r);
                        drop(st);
                        return -1;
                }
                for (int k = 0; k < 4; k++) {
                        redisReply *e = r->element[k];
                        v[k] = e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10)
                                                             : (k < 3 ? -1 : 0);
                }
                out[i].offset = v[0];
                out[i].emitted = v[1];
                out[i].watermark = v[2] < 0 ? 0 : v[2];
                out[i].late = v[3];
                freeReplyObject(r);
        }
        return 0;
}

/* ---- batches ------------------------------------------------------------ */

fls_batch_t *fls_batch_new(fls_store_t *st)
{
        fls_batch_t *b = calloc(1, sizeof(*b));
        if (b)
                b->st = st;
        return b;
}

/* ---- replies in an arena ----------------------------------------------------
 * hiredis builds a reply with a calloc per element and a malloc per string, and
 * frees them one by one: a hash read back is hundreds of each, 8% of the
 * clickstream consumer's CPU. A batch's replies all die together (at its next
 * begin), so read_one has hiredis build them in chunks owned by the batch, handed
 * back whole. They are never passed to freeReplyObject. */
static void *arena_alloc(fls_batch_t *b, size_t size)
{
        struct chunk *c = b->arena;
        void *p;

        size = (size + 15) & ~(size_t)15;
        if (!c || c->cap - c->used < size) {
                if (b->spare && size <= b->spare->cap) {
                        c = b->spare;
                        b->spare = c->next;
                } else {
                        size_t cap = size > CHUNK_BYTES ? size : CHUNK_BYTES;
                        c = malloc(sizeof(*c) + cap);
                        if (!c)
                                return NULL; /* hiredis reports it as out of memory */
                        c->cap = cap;
                }
                c->used = 0;
                c->next = b->arena;
                b->arena = c;
        }
        p = c->data + c->used;
        c->used += size;
        return p;
}

/* Keeps a few chunks for the next replies, frees the rest. */
static void arena_reset(fls_batch_t *b)
{
        int kept = 0;

        for (struct chunk *c = b->spare; c; c = c->next)
                kept++;
        while (b->arena) {
                struct chunk *c = b->arena;
                b->arena = c->next;
                if (kept < CHUNK_SPARE && c->cap == CHUNK_BYTES) {
                        c->next = b->spare;
                        b->spare = c;
                        kept++;
                } else {
                        free(c);
                }
        }
}

/* The batch a reply is for: the reader's privdata, which hiredis copies into the
 * top task of each reply. */
static fls_batch_t *task_batch(const redisReadTask *t)
{
        while (t->parent)
                t = t->parent;
        return t->privdata;
}

/* A new element of b's arena, linked into its parent array. */
static redisReply *reply_node(fls_batch_t *b, const redisReadTask *t, int type)
{
        redisReply *r = arena_alloc(b, sizeof(*r));

        if (!r)
                return NULL;
        memset(r, 0, sizeof(*r));
        r->type = type;
        if (t->parent)
                ((redisReply *)t->parent->obj)->element[t->idx] = r;
        return r;
}

static void *reply_string(const redisReadTask *t, char *str, size_t len)
{
        fls_batch_t *b = task_batch(t);
        redisReply *r = reply_node(b, t, t->type);

        if (!r || !(r->str = arena_alloc(b, len + 1)))
                return NULL;
        memcpy(r->str, str, len);
        r->str[len] = '\0';
        r->len = len;
        return r;
}

static void *reply_array(const redisReadTask *t, int n)
{
        fls_batch_t *b = task_batch(t);
        redisReply *r = reply_node(b, t, REDIS_REPLY_ARRAY);

        if (!r)
                return NULL;
        r->elements = n > 0 ? (size_t)n : 0;
        if (n > 0) {
                r->element = arena_alloc(b, (size_t)n * sizeof(*r->element));
                if (!r->element)
                        return NULL;
                memset(r->element, 0, (size_t)n * sizeof(*r->element));
        }
        return r;
}

static void *reply_integer(const redisReadTask *t, long long v)
{
        redisReply *r = reply_node(task_batch(t), t, REDIS_REPLY_INTEGER);

        if (r)
                r->integer = v;
        return r;
}

static void *reply_nil(const redisReadTask *t)
{
        return reply_node(task_batch(t), t, REDIS_REPLY_NIL);
}

static void reply_free(void *r)
{
        (void)r; /* the arena goes at the batch's next begin */
}

static redisReplyObjectFunctions reply_fns = {reply_string, reply_array, reply_integer,
                                              reply_nil, reply_free};

static void release_reply(fls_batch_t *b)
{
        b->reply = NULL;
        b->nrreplies = 0;
        arena_reset(b);
}

void fls_batch_destroy(fls_batch_t *b)
{
        if (!b)
                return;
        release_reply(b);
        fls_arena_free(&b->text);
        free(b->keys);
        free(b->slots);
        free(b->ops);
        free(b->ops_tmp);
        free(b->groups);
        free(b->hashes);
        free(b->rreplies);
        for (struct chunk *c = b->spare, *n; c; c = n) {
                n = c->next;
                free(c);
        }
        free(b->read_key);
        free(b->served);
        free(b->touch);
        fls_arena_free(&b->num);
        free(b);
}

void fls_batch_begin(fls_batch_t *b, const char *topic, int32_t partition, int read_only)
{
        if (b->sent) {
                /* Reused while its reply is owed (the caller gave up on that poll):
                 * take the reply off the connection first. An error there drops the
                 * connection, which the next apply rebuilds. */
                char err[256];
                settle(b->st, err, sizeof(err));
        }
        release_reply(b);
        b->read_only = read_only;
        b->taglen = (size_t)snprintf(b->tag, sizeof(b->tag), "%s:{%s.%d}:", b->st->prefix,
                                     topic, (int)partition);
        if (b->taglen >= sizeof(b->tag))
                b->taglen = sizeof(b->tag) - 1;
        fls_arena_reset(&b->text);
        b->nkeys = 0;
        b->nops = 0;
        b->nreads = 0;
        b->stale = 0;
        b->expect = b->last = b->emitted = -1;
        b->watermark = 0;
        b->late = 0;
        if (b->slots_cap)
                memset(b->slots, 0xff, b->slots_cap * sizeof(*b->slots));
}

static size_t text_add(fls_batch_t *b, const char *s, size_t len)
{
        return fls_arena_add(&b->text, s, len);
}

static uint64_t hash_bytes(const char *s, size_t len, int fam)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)(fam + 2);
        for (size_t i = 0; i < len; i++)
                h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
        return h;
}

static void rehash(fls_batch_t *b);
static int fam_key(fls_batch_t *b, int ent, int fam);

/* Finds or adds the key for (entity, fam): tag + entity [+ ":" + family name]. The
 * entity text must not point into b->text, which may move. */
static int key_lookup(fls_batch_t *b, const char *ent, size_t len, int fam, int ent_idx)
{
        struct key *nk;
        uint64_t h;
        size_t mask, i;

        if (b->nkeys * 2 + 2 > b->slots_cap)
                rehash(b);
        mask = b->slots_cap - 1;
        h = hash_bytes(ent, len, fam);
        for (i = h & mask; b->slots[i] >= 0; i = (i + 1) & mask) {
                struct key *k = &b->keys[b->slots[i]];
                if (k->fam == fam && k->elen == len &&
                    memcmp(b->text.buf + k->eoff, ent, len) == 0)
                        return b->slots[i];
        }
        b->keys = fls_grow(b->keys, &b->keys_cap, b->nkeys + 1, sizeof(*b->keys));
        nk = &b->keys[b->nkeys];
        nk->off = b->text.len;
        b->text.buf =
            fls_grow(b->text.buf, &b->text.cap, b->text.len + b->taglen + len + 80, 1);
        memcpy(b->text.buf + b->text.len, b->tag, b->taglen);
        nk->eoff = b->text.len + b->taglen;
        nk->elen = len;
        memcpy(b->text.buf + nk->eoff, ent, len);
        nk->len = b->taglen + len;
        if (fam >= 0) {
                int n = snprintf(b->text.buf + nk->off + nk->len, 80, ":%s",
                                 b->st->fams[fam].f.name);
                nk->len += (size_t)n;
        }
        b->text.buf[nk->off + nk->len] = '\0';
        b->text.len += nk->len + 1;
        nk->fam = fam;
        nk->ent = ent_idx < 0 ? (int)b->nkeys : ent_idx;
        nk->read = -1;
        b->slots[i] = (int)b->nkeys;
        return (int)b->nkeys++;
}

static void rehash(fls_batch_t *b)
{
        size_t ncap = b->slots_cap ? b->slots_cap * 2 : 256;
        size_t mask = ncap - 1;

        free(b->slots);
        b->slots = malloc(ncap * sizeof(*b->slots));
        if (!b->slots) {
                fprintf(stderr, "flashstream: out of memory\n");
                abort();
        }
        b->slots_cap = ncap;
        memset(b->slots, 0xff, ncap * sizeof(*b->slots));
        for (size_t k = 0; k < b->nkeys; k++) {
                struct key *kk = &b->keys[k];
                uint64_t h = hash_bytes(b->text.buf + kk->eoff, kk->elen, kk->fam);
                size_t i;
                for (i = h & mask; b->slots[i] >= 0; i = (i + 1) & mask)
                        ;
                b->slots[i] = (int)k;
        }
}

int fls_batch_entity(fls_batch_t *b, const char *entity, size_t len)
{
        return key_lookup(b, entity, len, -1, -1);
}

static struct op *op_add(fls_batch_t *b, int kind, int key)
{
        struct op *o;
        b->ops = fls_grow(b->ops, &b->ops_cap, b->nops + 1, sizeof(*b->ops));
        o = &b->ops[b->nops];
        memset(o, 0, sizeof(*o));
        o->kind = kind;
        o->key = key;
        o->seq = b->nops++;
        return o;
}

void fls_batch_incr(fls_batch_t *b, int ent, const char *field, int64_t delta)
{
        struct op *o;
        if (b->read_only)
                return;
        o = op_add(b, OP_INCR, ent);
        o->field = field;
        o->i = delta;
}

void fls_batch_incrf(fls_batch_t *b, int ent, const char *field, double delta)
{
        struct op *o;
        if (b->read_only)
                return;
        o = op_add(b, OP_INCRF, ent);
        o->field = field;
        o->d = delta;
}

void fls_batch_set(fls_batch_t *b, int ent, const char *field, const char *value,
                   size_t len)
{
        struct op *o;
        size_t off;
        if (b->read_only)
                return;
        off = text_add(b, value, len);
        o = op_add(b, OP_SET, ent);
        o->field = field;
        o->sval = off;
        o->slen = len;
}

void fls_batch_setmax(fls_batch_t *b, int ent, const char *field, int64_t value)
{
        struct op *o;
        if (b->read_only)
                return;
        o = op_add(b, OP_MAX, ent);
        o->field = field;
        o->i = value;
}

void fls_batch_expire(fls_batch_t *b, int ent, int64_t ttl_s)
{
        if (b->read_only)
                return;
        op_add(b, OP_EXPIRE, ent)->i = ttl_s;
}

void fls_batch_stock(fls_batch_t *b, int ent, fls_stock_op_t sub, const char *field,
                     const char *ref, size_t reflen, int64_t amount, const char *over)
{
        struct op *o;
        char ledger[600];
        const struct key *e;
        int n;

        if (b->read_only)
                return;
        /* The ledger is a key of its own, "<entity>:ledger", in the same slot. */
        e = &b->keys[ent];
        n = snprintf(ledger, sizeof(ledger), "%.*s:ledger", (int)e->elen,
                     b->text.buf + e->eoff);
        {
                int lk = key_lookup(b, ledger, (size_t)n, -1, -1);
                o = op_add(b, OP_STOCK, ent);
                o->sub = (int)sub;
                o->field = field;
                o->over = over;
                o->i = amount;
                o->sval = text_add(b, ref, reflen);
                o->slen = reflen;
                o->feat = lk; /* ledger key index */
        }
}

static int fam_key(fls_batch_t *b, int ent, int fam);

void fls_batch_push(fls_batch_t *b, int ent, int fam, const char *value, size_t len)
{
        struct op *o;
        int k;
        if (b->read_only)
                return;
        k = fam_key(b, ent, fam);
        o = op_add(b, OP_PUSH, k);
        o->fam = fam;
        o->sval = text_add(b, value, len);
        o->slen = len;
}

void fls_batch_defer(fls_batch_t *b, int ent, fls_defer_kind_t kind, const char *field,
                     int64_t i, const char *s)
{
        static const int kinds[] = {OP_SET, OP_INCR, OP_MAX, OP_EXPIRE, OP_PUSH};
        struct op *o;
        if (kind == FLS_DEFER_PUSH) {
                int fam = 0, k;
                while (fam < b->st->nfams && strcmp(b->st->fams[fam].f.name, field) != 0)
                        fam++;
                if (fam == b->st->nfams)
                        abort(); /* a consumer's own family names: a bug, not input */
                k = fam_key(b, ent, fam);
                o = op_add(b, OP_PUSH, k);
                o->post = 1;
                o->fam = fam;
                o->slen = strlen(s);
                o->sval = text_add(b, s, o->slen);
                o = op_add(b, OP_EXPIRE, k); /* coalesced: one per key and batch */
                o->post = 1;
                o->i = i;
                return;
        }
        o = op_add(b, kinds[kind], ent);
        o->post = 1;
        o->field = field;
        o->i = i;
        if (kind == FLS_DEFER_SET) {
                o->sval = text_add(b, s, strlen(s));
                o->slen = strlen(s);
        }
}

static int fam_key(fls_batch_t *b, int ent, int fam)
{
        char name[512];
        size_t len = b->keys[ent].elen < sizeof(name) ? b->keys[ent].elen : sizeof(name);

        memcpy(name, b->text.buf + b->keys[ent].eoff, len);
        return key_lookup(b, name, len, fam, ent);
}

void fls_batch_window(fls_batch_t *b, int ent, int fam, int feat, int64_t ts,
                      int64_t delta)
{
        struct op *o;
        int k;
        if (b->read_only)
                return;
        k = fam_key(b, ent, fam);
        o = op_add(b, OP_WIN, k);
        o->fam = fam;
        o->feat = feat;
        o->bucket = ts >= 0 ? ts / b->st->fams[fam].f.bucket_ms : -1;
        o->i = delta;
}

int fls_batch_read(fls_batch_t *b, int ent, int fam)
{
        int k = fam < 0 ? ent : fam_key(b, ent, fam);
        if (b->keys[k].read < 0) {
                b->read_key = fls_grow(b->read_key, &b->read_key_cap, b->nreads + 1,
                                       sizeof(*b->read_key));
                b->read_key[b->nreads] = k;
                b->keys[k].read = (int)b->nreads++;
        }
        return b->keys[k].read;
}

void fls_batch_offsets(fls_batch_t *b, int64_t expect, int64_t last, int64_t emitted,
                       int64_t watermark, int64_t late)
{
        b->expect = expect;
        b->last = last;
        b->emitted = emitted;
        b->watermark = watermark;
        b->late = late;
}

int fls_batch_empty(const fls_batch_t *b)
{
        return b->nops == 0 && b->nreads == 0 && b->last < 0 && b->emitted < 0;
}

int fls_batch_stale(const fls_batch_t *b)
{
        return b->stale;
}

/* Orders ops so that the ones to merge are adjacent: same key, kind and target. */
static int op_cmp(const void *pa, const void *pb)
{
        const struct op *a = pa, *b = pb;
        int c;
        /* Deferred writes first: they come from decisions on earlier events. */
        if (a->post != b->post)
                return a->post ? -1 : 1;
        if (a->key != b->key)
                return a->key < b->key ? -1 : 1;
        if (a->kind != b->kind)
                return a->kind < b->kind ? -1 : 1;
        if (a->kind == OP_STOCK || a->kind == OP_PUSH)
                return a->seq < b->seq ? -1 : a->seq > b->seq; /* order matters */
        if (a->kind == OP_WIN) {
                if (a->feat != b->feat)
                        return a->feat < b->feat ? -1 : 1;
                if (a->bucket != b->bucket)
                        return a->bucket < b->bucket ? -1 : 1;
        } else if (a->field && b->field && (c = strcmp(a->field, b->field)) != 0) {
                return c;
        }
        return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int same_target(const struct op *a, const struct op *b)
{
        if (a->key != b->key || a->kind != b->kind || a->post != b->post)
                return 0;
        if (a->kind == OP_WIN)
                return a->feat == b->feat && a->bucket == b->bucket;
        if (a->kind == OP_EXPIRE)
                return 1;
        if (a->kind == OP_PUSH || a->kind == OP_STOCK)
                return 0;
        return strcmp(a->field, b->field) == 0;
}

/* Sorts a[0, n) with op_cmp, stable: a bottom-up merge sort through tmp (n ops).
 * glibc's qsort allocates (or maps) a buffer as large as the array on every call:
 * 4% of the clickstream consumer's CPU went to malloc for it. */
static void merge_sort(struct op *a, struct op *tmp, size_t n)
{
        struct op *src = a, *dst = tmp;

        for (size_t w = 1; w < n; w *= 2) {
                for (size_t lo = 0; lo < n; lo += 2 * w) {
                        size_t mid = lo + w < n ? lo + w : n;
                        size_t hi = mid + w < n ? mid + w : n;
                        size_t i = lo, j = mid, k = lo;
                        while (i < mid && j < hi)
                                dst[k++] =
                                    op_cmp(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
                        while (i < mid)
                                dst[k++] = src[i++];
                        while (j < hi)
                                dst[k++] = src[j++];
                }
                struct op *t = src;
                src = dst;
                dst = t;
        }
        if (src != a)
                memcpy(a, src, n * sizeof(*a));
}

/* Sorts the ops with op_cmp. Its first keys, deferred or not and then the key, take
 * a counting sort (stable, one pass); only each key's own ops are merge-sorted. A
 * merge sort of the whole batch moved every op (~100 bytes) a dozen times: 5 % of
 * the consumer's CPU. */
static void sort_ops(fls_batch_t *b)
{
        size_t ng = 2 * b->nkeys, *start;
        struct op *t;

        b->ops_tmp = fls_grow(b->ops_tmp, &b->ops_tmp_cap, b->nops, sizeof(*b->ops_tmp));
        b->groups = fls_grow(b->groups, &b->groups_cap, ng + 1, sizeof(*b->groups));
        start = b->groups;
        memset(start, 0, (ng + 1) * sizeof(*start));
        /* group g: deferred ops of key g, then the others of key g - nkeys */
#define GROUP(o) ((size_t)(o)->key + ((o)->post ? 0 : b->nkeys))
        for (size_t i = 0; i < b->nops; i++)
                start[GROUP(&b->ops[i]) + 1]++;
        for (size_t g = 0; g < ng; g++)
                start[g + 1] += start[g];
        for (size_t i = 0; i < b->nops; i++)
                b->ops_tmp[start[GROUP(&b->ops[i])]++] = b->ops[i];
#undef GROUP
        /* start[g] is now where group g ends */
        for (size_t g = 0, lo = 0; g < ng; lo = start[g++])
                if (start[g] - lo > 1)
                        merge_sort(b->ops_tmp + lo, b->ops + lo, start[g] - lo);
        t = b->ops;
        b->ops = b->ops_tmp;
        b->ops_tmp = t;
        {
                size_t cap = b->ops_cap;
                b->ops_cap = b->ops_tmp_cap;
                b->ops_tmp_cap = cap;
        }
}

/* Merges adjacent ops on the same target: sums for counters, the last value for
 * SET, the largest for MAX and EXPIRE. */
static void coalesce(fls_batch_t *b)
{
        size_t w = 0;

        if (b->nops < 2)
                return;
        sort_ops(b);
        for (size_t r = 1; r < b->nops; r++) {
                struct op *d = &b->ops[w], *s = &b->ops[r];
                if (!same_target(d, s)) {
                        b->ops[++w] = *s;
                        continue;
                }
                switch (d->kind) {
                case OP_WIN:
                case OP_INCR:
                        d->i += s->i;
                        break;
                case OP_INCRF:
                        d->d += s->d;
                        break;
                case OP_SET:
                        d->sval = s->sval, d->slen = s->slen; /* sorted by seq */
                        break;
                case OP_MAX:
                case OP_EXPIRE:
                        if (s->i > d->i)
                                d->i = s->i;
                        break;
                }
        }
        b->nops = w + 1;
}

/* A RESP length line: "<type><n>\r\n" ('*' the argument count, '$' a string's). */
static void resp_len(fls_arena_t *out, char type, size_t n)
{
        char num[24];
        const char *digits;
        size_t len = fls_mirror_int_text(num, (int64_t)n, &digits);

        out->buf = fls_grow(out->buf, &out->cap, out->len + len + 3, 1);
        out->buf[out->len] = type;
        memcpy(out->buf + out->len + 1, digits, len);
        memcpy(out->buf + out->len + 1 + len, "\r\n", 2);
        out->len += len + 3;
}

/* One bulk string of a RESP command: "$<len>\r\n<bytes>\r\n". */
static void resp_bulk(fls_arena_t *out, const char *s, size_t len)
{
        resp_len(out, '$', len);
        out->buf = fls_grow(out->buf, &out->cap, out->len + len + 2, 1);
        memcpy(out->buf + out->len, s, len);
        memcpy(out->buf + out->len + len, "\r\n", 2);
        out->len += len + 2;
}

/* Copies a formatted number into the b->num arena; returns its offset. */
static size_t num_put(fls_batch_t *b, const char *p, size_t len)
{
        return fls_arena_add(&b->num, p, len);
}

/* Integers are most of a script's arguments (several per event): no printf. */
static size_t num_i64(fls_batch_t *b, int64_t v)
{
        char tmp[24];
        const char *t;
        size_t n = fls_mirror_int_text(tmp, v, &t);

        return num_put(b, t, n);
}

static size_t num_dbl(fls_batch_t *b, double v)
{
        char tmp[32];
        int n = snprintf(tmp, sizeof(tmp), "%.17g", v);

        return num_put(b, tmp, (size_t)n);
}

/* EXPIRE throttle. Every key a batch writes gets its TTL again (2.5 EXPIREs per
 * click event, each ~2 us of Redis inside the script plus its AOF entry), although
 * the TTL only has to outlive the key's idle time. A key whose TTL this connection
 * set to the same value less than 1/8 of it ago is not sent one: an idle key now
 * lives between 7/8 of its TTL and all of it after its last write. The table is
 * forgotten whenever Redis may not hold what it says: a dropped connection (Redis
 * may have restarted and lost the last second) or a stale batch (its writes,
 * EXPIREs included, did not apply). */
static void ttl_forget(fls_store_t *st)
{
        memset(st->ttl, 0, TTL_SLOTS * sizeof(*st->ttl));
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pair of slots that may hold a key (its fls_mirror_hash). */
static struct ttlent *ttl_pair(const fls_store_t *st, uint64_t kh)
{
        return &st->ttl[kh & (TTL_SLOTS - 2)];
}

/* 1 if the key's TTL was set to ttl_s lately (skip the EXPIRE), else records that
 * it is being set now and returns 0. Only for keys the batch writes: an EXPIRE on a
 * key that does not exist sets nothing, and the write that later creates the key
 * must send its own. */
static int ttl_fresh(fls_store_t *st, uint64_t kh, int64_t ttl_s, int64_t now_ms)
{
        uint64_t h = ((kh ^ (uint64_t)ttl_s) * 1099511628211ull) | 1; /* 0: empty */
        struct ttlent *e = ttl_pair(st, kh);

        if (e[1].h == h || (e[0].h != h && e[1].at_ms < e[0].at_ms))
                e++; /* the key's own slot, or else the older one */
        if (e->h == h && now_ms - e->at_ms < ttl_s * 1000 / 8)
                return 1;
        e->h = h;
        e->at_ms = now_ms;
        return 0;
}

/* argv[] holds pointers into text/num arenas that may move while the command is
 * built, so entries are first recorded as (arena, offset) and resolved at the end. */
struct argref {
        int arena; /* 0 text, 1 num, 2 static */
        size_t off, len;
        const char *s;
};

static int mirror_writable(fls_store_t *st, const fls_batch_t *b, const struct key *k);
static int play_run(fls_batch_t *b, size_t i);
static int play_op(fls_batch_t *b, fls_mentry_t *e, const struct op *o);
static fls_mentry_t *entry_of(const fls_batch_t *b, int key);

/* An EXPIRE the batch can leave out although it does not write the key (ttl_fresh
 * covers the keys it writes): the key's exact copy says that it does not exist, so
 * the EXPIRE would set nothing, or that Redis cannot expire it within 7/8 of ttl_s,
 * ttl_fresh's rule. A recommendation's bought set (b:<user>) is read and kept alive
 * by every view with a category but exists for buyers only: 0.4 EXPIREs per click
 * event went to missing keys. */
static int expire_idle(fls_store_t *st, const fls_batch_t *b, const struct key *k,
                       int64_t ttl_s)
{
        size_t n;
        int64_t at;

        if (k->written || !mirror_writable(st, b, k))
                return 0;
        fls_mentry_size(k->me, &n);
        at = fls_mentry_expiry(k->me);
        return n == 0 ||
               (at != FLS_MIRROR_NEVER && at - b->t_send >= ttl_s * 1000 / 8 * 7);
}

static void build(fls_batch_t *b, struct argref **refs, size_t *nrefs, size_t *refcap)
{
        fls_store_t *st = b->st;
#define REF(a, o, l, p)                                                                  \
        do {                                                                             \
                *refs = fls_grow(*refs, refcap, *nrefs + 1, sizeof(**refs));             \
                (*refs)[(*nrefs)++] = (struct argref){a, o, l, p};                       \
        } while (0)
#define NUM(v)                                                                           \
        do {                                                                             \
                size_t o_ = num_i64(b, (int64_t)(v));                                    \
                REF(1, o_, b->num.len - o_ - 1, NULL);                                   \
        } while (0)
#define STR(s) REF(2, 0, strlen(s), s)
        char metakey[320];
        size_t moff;
        int64_t now = mono_ms();

        b->t_send = now;
        for (size_t k = 0; k < b->nkeys; k++) {
                b->keys[k].written = 0;
                b->keys[k].ttl = b->keys[k].ttl_post = -1;
                b->keys[k].unplayable = 0;
                b->keys[k].has_post = 0;
        }
        for (size_t i = 0; i < b->nops; i++) {
                const struct op *o = &b->ops[i];
                if (o->post)
                        b->keys[o->key].has_post = 1;
                if (o->kind == OP_INCRF || o->kind == OP_STOCK) {
                        b->keys[o->key].unplayable = 1;
                        if (o->kind == OP_STOCK)
                                b->keys[o->feat].unplayable = 1; /* the ledger */
                }
                if (o->kind == OP_WIN     ? o->bucket >= 0
                    : o->kind == OP_STOCK ? o->sub != FLS_STOCK_GIVE
                                          : o->kind != OP_EXPIRE)
                        b->keys[o->key].written = 1;
        }

        for (size_t k = 0; k < b->nkeys; k++)
                b->keys[k].result =
                    b->keys[k].written && mirror_writable(st, b, &b->keys[k]);

        snprintf(metakey, sizeof(metakey), "%smeta", b->tag);
        moff = text_add(b, metakey, strlen(metakey));
        STR("EVALSHA");
        STR(st->sha);
        NUM(b->nkeys + 1);
        REF(0, moff, strlen(metakey), NULL);
        for (size_t k = 0; k < b->nkeys; k++)
                REF(0, b->keys[k].off, b->keys[k].len, NULL);
        NUM(b->expect);
        NUM(b->last);
        NUM(b->emitted);
        NUM(b->watermark);
        NUM(b->late);
        STR(b->read_only ? "1" : "0");
        NUM(st->nfams);
        for (int f = 0; f < st->nfams; f++) {
                NUM(st->fams[f].nfeat);
                for (int i = 0; i < st->fams[f].nfeat; i++)
                        STR(st->fams[f].f.features[i]);
        }
        for (size_t i = 0; i < b->nops; i++) {
                struct op *o = &b->ops[i];
                struct key *ok = &b->keys[o->key];
                if (!o->post && ok->result) {
                        /* The key's writes go as their result, worked out on its
                         * copy: one HSET and one HDEL instead of a command or two per
                         * counter, set and maximum. Lists and TTLs go as they are. */
                        if ((i == 0 || b->ops[i - 1].key != o->key ||
                             b->ops[i - 1].post) &&
                            play_run(b, i) == 0) {
                                size_t nset = 0;
                                for (size_t t = 0; t < b->ntouch; t++) {
                                        if (fls_mentry_hget(ok->me,
                                                            b->text.buf + b->touch[t])) {
                                                size_t x = b->touch[nset];
                                                b->touch[nset++] = b->touch[t];
                                                b->touch[t] = x;
                                        }
                                }
                                /* HSETs (touch[0, nset)), then HDELs */
                                for (int del = 0; del < 2; del++) {
                                        size_t from = del ? nset : 0;
                                        size_t to = del ? b->ntouch : nset;
                                        for (size_t t = from; t < to; t += RESULT_CHUNK) {
                                                size_t n = to - t < RESULT_CHUNK
                                                               ? to - t
                                                               : RESULT_CHUNK;
                                                STR(del ? "X" : "H");
                                                NUM(o->key + 2);
                                                NUM(n);
                                                for (size_t x = t; x < t + n; x++) {
                                                        const char *f =
                                                            b->text.buf + b->touch[x];
                                                        const char *v;
                                                        size_t vo;
                                                        REF(0, b->touch[x], strlen(f),
                                                            NULL);
                                                        if (del)
                                                                continue;
                                                        v = fls_mentry_hget(ok->me, f);
                                                        vo = text_add(b, v, strlen(v));
                                                        REF(0, vo, b->text.len - vo - 1,
                                                            NULL);
                                                }
                                        }
                                }
                        } else if (i == 0 || b->ops[i - 1].key != o->key ||
                                   b->ops[i - 1].post) {
                                ok->result = 0; /* not playable after all: as they are */
                        }
                        if (ok->result && o->kind != OP_PUSH && o->kind != OP_EXPIRE)
                                continue;
                }
                /* KEYS[1] is meta, so entity key k is KEYS[k + 2] */
                switch (o->kind) {
                case OP_WIN:
                        if (o->bucket < 0)
                                break;
                        STR("W");
                        NUM(o->key + 2);
                        NUM(o->fam + 1);
                        NUM(o->bucket % st->fams[o->fam].slots);
                        NUM(o->bucket);
                        NUM(o->feat + 1);
                        NUM(o->i);
                        break;
                case OP_INCR:
                        STR(o->post ? "i" : "I");
                        NUM(o->key + 2);
                        STR(o->field);
                        NUM(o->i);
                        break;
                case OP_MAX: {
                        /* The key's MAX ops are adjacent (op_cmp), one per field after
                         * coalesce: read and written with one command each. */
                        size_t j = i + 1;
                        while (j < b->nops && j - i < 1000 && b->ops[j].kind == OP_MAX &&
                               b->ops[j].key == o->key && b->ops[j].post == o->post)
                                j++;
                        STR(o->post ? "m" : "M");
                        NUM(o->key + 2);
                        NUM(j - i);
                        for (; i < j; i++) {
                                STR(b->ops[i].field);
                                NUM(b->ops[i].i);
                        }
                        i--; /* the loop's i++ moves past the group */
                        break;
                }
                case OP_INCRF:
                        STR(o->post ? "f" : "F");
                        NUM(o->key + 2);
                        STR(o->field);
                        {
                                size_t o_ = num_dbl(b, o->d);
                                REF(1, o_, b->num.len - o_ - 1, NULL);
                        }
                        break;
                case OP_SET:
                        STR(o->post ? "s" : "S");
                        NUM(o->key + 2);
                        STR(o->field);
                        REF(0, o->sval, o->slen, NULL);
                        break;
                case OP_STOCK: {
                        static const char *const subs[] = {"add", "take", "give"};
                        STR("K");
                        NUM(o->key + 2);
                        STR(subs[o->sub]);
                        STR(o->field);
                        NUM(o->feat + 2); /* the ledger's key index */
                        REF(0, o->sval, o->slen, NULL);
                        NUM(o->i);
                        STR(o->over ? o->over : "oversold");
                        NUM((int64_t)30 * 86400);
                        break;
                }
                case OP_PUSH: {
                        /* A batch's pushes to one list are adjacent (op_cmp) and go
                         * out as one RPUSH: two commands per list, not per item. The
                         * group is bounded so that Lua's unpack has the stack for it. */
                        size_t j = i + 1;
                        while (j < b->nops && j - i < 1000 && b->ops[j].kind == OP_PUSH &&
                               b->ops[j].key == o->key && b->ops[j].post == o->post)
                                j++;
                        STR(o->post ? "l" : "L");
                        NUM(o->key + 2);
                        NUM(st->fams[o->fam].f.window_ms);
                        NUM(j - i);
                        for (; i < j; i++)
                                REF(0, b->ops[i].sval, b->ops[i].slen, NULL);
                        i--; /* the loop's i++ moves past the group */
                        break;
                }
                case OP_EXPIRE:
                        /* A read-only batch has only deferred ones. */
                        if (b->keys[o->key].written
                                ? ttl_fresh(st, b->keys[o->key].kh, o->i, now)
                                : !o->post && expire_idle(st, b, &b->keys[o->key], o->i))
                                break;
                        STR(o->post ? "e" : "E");
                        NUM(o->key + 2);
                        NUM(o->i);
                        if (o->post)
                                b->keys[o->key].ttl_post = o->i;
                        else
                                b->keys[o->key].ttl = o->i;
                        break;
                }
        }
        /* Family keys get their TTL without the consumer asking. */
        for (size_t k = 0; k < b->nkeys; k++) {
                if (b->read_only || b->keys[k].fam < 0 ||
                    st->fams[b->keys[k].fam].ttl_s < 0)
                        continue;
                if (b->keys[k].written
                        ? ttl_fresh(st, b->keys[k].kh, st->fams[b->keys[k].fam].ttl_s,
                                    now)
                        : expire_idle(st, b, &b->keys[k], st->fams[b->keys[k].fam].ttl_s))
                        continue;
                STR("E");
                NUM(k + 2);
                NUM(st->fams[b->keys[k].fam].ttl_s);
                b->keys[k].ttl = st->fams[b->keys[k].fam].ttl_s; /* runs last */
        }
#undef REF
#undef NUM
#undef STR
}

static int mirror_answers(fls_store_t *st, const fls_batch_t *b, const struct key *k);

static int send_batch(fls_batch_t *b, struct argref **refs, size_t *refcap)
{
        fls_store_t *st = b->st;
        size_t nrefs = 0;

        fls_arena_reset(&b->num);
        coalesce(b);
        /* The keys' lookups in the copy and the TTL cache were a tenth of the
         * consumer's time, nearly all of it cache misses: three passes make them
         * overlap (fls_mirror_prefetch). */
        for (size_t k = 0; k < b->nkeys; k++) {
                struct key *kk = &b->keys[k];
                kk->kh = fls_mirror_hash(b->text.buf + kk->off, kk->len);
                __builtin_prefetch(ttl_pair(st, kk->kh));
                if (st->mirror)
                        fls_mirror_prefetch(st->mirror, kk->kh, 0);
        }
        for (size_t k = 0; st->mirror && k < b->nkeys; k++)
                fls_mirror_prefetch(st->mirror, b->keys[k].kh, 1);
        for (size_t k = 0; k < b->nkeys; k++)
                b->keys[k].me =
                    st->mirror
                        ? fls_mirror_find_hashed(st->mirror, b->text.buf + b->keys[k].off,
                                                 b->keys[k].len, b->keys[k].kh)
                        : NULL;
        build(b, refs, &nrefs, refcap);
        /* Formatted here, not by redisAppendCommandArgv, which goes through two sds
         * calls per argument: 6 % of the consumer's CPU at ~30 arguments per click
         * event. */
        {
                fls_arena_t *cmd = &st->cmd;
                fls_arena_reset(cmd);
                resp_len(cmd, '*', nrefs);
                for (size_t i = 0; i < nrefs; i++) {
                        struct argref *r = &(*refs)[i];
                        resp_bulk(cmd,
                                  r->arena == 0   ? b->text.buf + r->off
                                  : r->arena == 1 ? b->num.buf + r->off
                                                  : r->s,
                                  r->len);
                }
                if (redisAppendFormattedCommand(st->rc, cmd->buf, cmd->len) != REDIS_OK)
                        return REDIS_ERR;
        }
        /* The reads, in read-index order, as commands of their own right after the
         * script: Redis runs them before anything else this connection sends, and the
         * partition's keys are written by no other connection (the offset fence), so
         * they see what the script left. Inside the script, each hash went from
         * reply to Lua table and back: about 40% of the script's time. A key the
         * mirror holds is not read; one it will hold comes with its PTTL. */
        b->served = fls_grow(b->served, &b->served_cap, b->nreads + 1, 1);
        b->nowed = 0;
        for (size_t r = 0; r < b->nreads; r++) {
                const struct key *k = &b->keys[b->read_key[r]];
                int rc;
                b->served[r] = mirror_answers(st, b, k);
                if (b->served[r]) {
                        st->mstats.hits++;
                        continue;
                }
                rc = is_list(st, k->fam)
                         ? redisAppendCommand(st->rc, "LRANGE %b 0 -1",
                                              b->text.buf + k->off, k->len)
                         : redisAppendCommand(st->rc, "HGETALL %b", b->text.buf + k->off,
                                              k->len);
                if (rc == REDIS_OK && st->mirror) {
                        rc = redisAppendCommand(st->rc, "PTTL %b", b->text.buf + k->off,
                                                k->len);
                        b->nowed++;
                        st->mstats.misses++;
                }
                if (rc != REDIS_OK)
                        return REDIS_ERR;
                b->nowed++;
        }
        return REDIS_OK;
}

/* ---- the mirror (mirror.h): reads answered from memory ------------------------
 * A copy is served only if Redis cannot have expired the key before the read would
 * have run: entries expiring within MIRROR_GRACE_MS go, and a poll's replies are
 * owed for at most redis.timeout_ms (beyond that the connection, and the copy, is
 * dropped). */
#define MIRROR_GRACE_MS 30000

static int poisoned(const fls_store_t *st, const fls_batch_t *b)
{
        for (size_t off = 0; off < st->poison.len;) {
                const char *t = st->poison.buf + off;
                size_t len = strlen(t);
                if (len == b->taglen && memcmp(t, b->tag, len) == 0)
                        return 1;
                off += len + 1;
        }
        return 0;
}

static fls_mentry_t *entry_of(const fls_batch_t *b, int key)
{
        return b->keys[key].me;
}

static int mirror_answers(fls_store_t *st, const fls_batch_t *b, const struct key *k)
{
        fls_mentry_t *e;

        if (!st->mirror || st->verify || poisoned(st, b))
                return 0;
        e = k->me;
        if (!e || k->unplayable || fls_mentry_broken(e) ||
            fls_mentry_is_list(e) != is_list(st, k->fam) ||
            fls_mentry_expiry(e) <= b->t_send + MIRROR_GRACE_MS)
                return 0;
        fls_mirror_touch(st->mirror, e);
        return 1;
}

/* Can the key's writes go as their result (build)? Its copy must be exact now: no
 * batch of the partition is owed a reply (its writes are not played yet), no
 * deferred write (whether those apply is known only in Redis), nothing the copy
 * cannot play, no expiry near. Not when verifying: the copy would be checked against
 * what it wrote itself. */
static int mirror_writable(fls_store_t *st, const fls_batch_t *b, const struct key *k)
{
        fls_mentry_t *e = k->me;

        if (!st->mirror || st->verify || b->read_only || k->has_post || k->unplayable ||
            !e || fls_mentry_broken(e) || fls_mentry_is_list(e) != is_list(st, k->fam) ||
            fls_mentry_expiry(e) <= b->t_send + MIRROR_GRACE_MS || poisoned(st, b))
                return 0;
        for (size_t i = st->inflight_head; i < st->ninflight; i++) {
                const fls_batch_t *o = st->inflight[i];
                if (o != b && o->taglen == b->taglen &&
                    memcmp(o->tag, b->tag, b->taglen) == 0)
                        return 0;
        }
        return 1;
}

/* Records a field a write touched (play_run). */
static void touched(fls_batch_t *b, const char *field)
{
        if (!b->tracking)
                return;
        for (size_t t = 0; t < b->ntouch; t++)
                if (strcmp(b->text.buf + b->touch[t], field) == 0)
                        return;
        b->touch = fls_grow(b->touch, &b->touch_cap, b->ntouch + 1, sizeof(*b->touch));
        b->touch[b->ntouch++] = text_add(b, field, strlen(field));
}

/* Plays the writes of the key of op i (its run of ops: they are adjacent) into its
 * copy now, recording the fields they touch; on -1 the copy is broken. */
static int play_run(fls_batch_t *b, size_t i)
{
        int key = b->ops[i].key, rc = 0;
        fls_mentry_t *e = entry_of(b, key);

        b->ntouch = 0;
        b->tracking = 1;
        for (size_t j = i; j < b->nops && b->ops[j].key == key && !b->ops[j].post; j++)
                if (play_op(b, e, &b->ops[j]) < 0) {
                        rc = -1;
                        break;
                }
        b->tracking = 0;
        if (rc)
                fls_mentry_break(e);
        return rc;
}

/* Between polls: what a stale batch, time and the budget say must go. */
static void mirror_tend(fls_store_t *st)
{
        int64_t now;

        if (!st->mirror)
                return;
        for (size_t off = 0; off < st->poison.len;) {
                const char *t = st->poison.buf + off;
                size_t len = strlen(t);
                fls_mirror_drop_prefix(st->mirror, t, len);
                off += len + 1;
        }
        fls_arena_reset(&st->poison);
        now = mono_ms();
        if (now >= st->next_expire_ms) {
                fls_mirror_expire(st->mirror, now + MIRROR_GRACE_MS);
                st->next_expire_ms = now + 1000;
        }
        fls_mirror_trim(st->mirror);
}

/* "<name>@<slot>", or "#<slot>" with name NULL: a ring's field names. */
static const char *ring_field(char *buf, size_t size, const char *name, int64_t slot)
{
        char tmp[24];
        const char *d;
        size_t n = name ? strlen(name) : 0, dl = fls_mirror_int_text(tmp, slot, &d);

        if (n + dl + 2 > size)
                return NULL;
        if (name) {
                memcpy(buf, name, n);
                buf[n++] = '@';
        } else {
                buf[n++] = '#';
        }
        memcpy(buf + n, d, dl);
        buf[n + dl] = '\0';
        return buf;
}

/* Lua compares numbers as doubles: exact for integers below 2^53 only. */
#define EXACT_IN_DOUBLE(v) ((v) > -(INT64_C(1) << 53) && (v) < (INT64_C(1) << 53))

/* Plays one op into the key's copy as the script plays it in Redis; -1 where that
 * cannot be done exactly (the copy is then marked broken). */
static int play_op(fls_batch_t *b, fls_mentry_t *e, const struct op *o)
{
        fls_mirror_t *m = b->st->mirror;
        char tmp[24], f[160], h[32];
        const char *t, *cur;
        int64_t c;

        switch (o->kind) {
        case OP_WIN: {
                const struct famx *fx = &b->st->fams[o->fam];
                int64_t slot = o->bucket % fx->slots;
                if (o->bucket < 0)
                        return 0; /* not sent */
                if (!ring_field(h, sizeof(h), NULL, slot))
                        return -1;
                cur = fls_mentry_hget(e, h);
                c = -1;
                if (cur && (fls_mirror_parse_int(cur, strlen(cur), &c) < 0 ||
                            !EXACT_IN_DOUBLE(c)))
                        return -1;
                if (c < o->bucket) {
                        for (int k = 0; k < fx->nfeat; k++) {
                                if (!ring_field(f, sizeof(f), fx->f.features[k], slot))
                                        return -1;
                                if (fls_mentry_hget(e, f)) {
                                        fls_mentry_hdel(m, e, f);
                                        touched(b, f);
                                }
                        }
                        touched(b, h);
                        size_t n = fls_mirror_int_text(tmp, o->bucket, &t);
                        fls_mentry_hset(m, e, h, t, n);
                        c = o->bucket;
                }
                if (c != o->bucket)
                        return 0; /* older than the slot: the script counts it over */
                if (!ring_field(f, sizeof(f), fx->f.features[o->feat], slot))
                        return -1;
                touched(b, f);
                return fls_mentry_hincr(m, e, f, o->i);
        }
        case OP_INCR:
                touched(b, o->field);
                return fls_mentry_hincr(m, e, o->field, o->i);
        case OP_SET:
                touched(b, o->field);
                fls_mentry_hset(m, e, o->field, b->text.buf + o->sval, o->slen);
                return 0;
        case OP_MAX:
                cur = fls_mentry_hget(e, o->field);
                if (cur && (fls_mirror_parse_int(cur, strlen(cur), &c) < 0 ||
                            !EXACT_IN_DOUBLE(c) || !EXACT_IN_DOUBLE(o->i)))
                        return -1;
                if (!cur || c < o->i) {
                        size_t n = fls_mirror_int_text(tmp, o->i, &t);
                        touched(b, o->field);
                        fls_mentry_hset(m, e, o->field, t, n);
                }
                return 0;
        case OP_PUSH:
                fls_mentry_rpush(m, e, b->text.buf + o->sval, o->slen);
                fls_mentry_keep_last(m, e, (size_t)b->st->fams[o->fam].f.window_ms);
                return 0;
        case OP_STOCK: {
                fls_mentry_t *ledger = entry_of(b, o->feat);
                if (ledger)
                        fls_mentry_break(ledger);
                return -1;
        }
        case OP_EXPIRE:
                return 0; /* the key's expiry: see mirror_play */
        default:          /* OP_INCRF: Redis's float formatting is not reproduced here */
                return -1;
        }
}

/* After a script that applied (not stale): its writes, into the copies. */
static void mirror_play(fls_batch_t *b, int posts)
{
        fls_mentry_t *e = NULL;
        int cur = -1;

        for (size_t i = 0; i < b->nops; i++) {
                const struct op *o = &b->ops[i];
                if (!(o->post ? posts : !b->read_only))
                        continue;
                if (!o->post && b->keys[o->key].result)
                        continue; /* played when the script was built */
                if (o->key != cur) {
                        cur = o->key;
                        e = entry_of(b, o->key);
                }
                if (e && !fls_mentry_broken(e) && play_op(b, e, o) < 0)
                        fls_mentry_break(e);
        }
        for (size_t k = 0; k < b->nkeys; k++) {
                const struct key *kk = &b->keys[k];
                int64_t ttl = -1;
                if (kk->ttl_post >= 0 && posts)
                        ttl = kk->ttl_post;
                if (kk->ttl >= 0 && !b->read_only)
                        ttl = kk->ttl; /* runs after the deferred ones */
                if (ttl < 0 || !(e = entry_of(b, (int)k)))
                        continue;
                if (ttl == 0)
                        fls_mentry_break(e); /* EXPIRE 0 deletes the key */
                else
                        fls_mentry_set_expiry(e, b->t_send + ttl * 1000);
        }
}

/* verify: does the copy hold what Redis answered? */
static int mirror_same(fls_batch_t *b, const fls_mentry_t *e, const redisReply *h,
                       int list)
{
        size_t n, len = fls_mentry_size(e, &n);
        char *copy;
        const char **strs;

        if (n != h->elements)
                return 0;
        if (list) {
                copy = arena_alloc(b, len + 1);
                strs = arena_alloc(b, n * sizeof(*strs) + 1);
                if (!copy || !strs)
                        return 0;
                fls_mentry_copy(e, copy, strs);
                for (size_t i = 0; i < n; i++)
                        if (strcmp(strs[i], h->element[i]->str) != 0)
                                return 0;
                return 1;
        }
        for (size_t i = 0; i + 1 < n; i += 2) {
                const char *v = fls_mentry_hget(e, h->element[i]->str);
                if (!v || strcmp(v, h->element[i + 1]->str) != 0)
                        return 0;
        }
        return 1;
}

/* A read Redis answered: checked against the copy (verify), then copied. */
static void mirror_keep(fls_batch_t *b, struct key *k, const redisReply *h,
                        const redisReply *pttl)
{
        fls_store_t *st = b->st;
        int list = is_list(st, k->fam);
        fls_mentry_t *e = k->me;
        const char **strs;
        size_t *lens;

        if (st->verify && e && !fls_mentry_broken(e) && !mirror_same(b, e, h, list)) {
                if (st->mstats.diffs++ < 10)
                        fls_log(FLS_LOG_ERROR, "store",
                                "mirror: %s differs from what Redis holds",
                                k->off + b->text.buf);
        }
        strs = arena_alloc(b, h->elements * sizeof(*strs) + 1);
        lens = arena_alloc(b, h->elements * sizeof(*lens) + 1);
        if (!strs || !lens) {
                if (e)
                        fls_mentry_break(e);
                return;
        }
        for (size_t i = 0; i < h->elements; i++) {
                strs[i] = h->element[i]->str;
                lens[i] = h->element[i]->len;
        }
        k->me = fls_mirror_put(
            st->mirror, b->text.buf + k->off, k->len, list, strs, lens, h->elements,
            pttl->integer >= 0 ? b->t_send + pttl->integer : FLS_MIRROR_NEVER);
}

/* The strings of read i: Redis's reply, or a copy of the mirror's entry made in
 * the batch's arena (the entry changes with the next batch; the reply may not). */
static int read_strings(fls_batch_t *b, size_t i, size_t *j, const char ***strs,
                        size_t *n, char *errstr, size_t errstr_size)
{
        fls_store_t *st = b->st;
        struct key *k = &b->keys[b->read_key[i]];
        size_t per = st->mirror ? 2 : 1;

        if (!b->served[i]) {
                redisReply *h = b->rreplies[*j * per];
                if (h->type != REDIS_REPLY_ARRAY ||
                    (per == 2 &&
                     b->rreplies[*j * per + 1]->type != REDIS_REPLY_INTEGER)) {
                        snprintf(errstr, errstr_size, "redis: read back: %s",
                                 h->type == REDIS_REPLY_ERROR ? h->str : "not an array");
                        return -1;
                }
                if (per == 2 && !b->stale)
                        mirror_keep(b, k, h, b->rreplies[*j * per + 1]);
                (*j)++;
                *n = h->elements;
                *strs = arena_alloc(b, *n * sizeof(**strs) + 1);
                if (!*strs)
                        goto oom;
                for (size_t e = 0; e < *n; e++)
                        (*strs)[e] = h->element[e]->str;
                return 0;
        }
        if (b->stale) {
                *n = 0; /* nobody reads a stale batch */
                return 0;
        }
        {
                fls_mentry_t *e = entry_of(b, b->read_key[i]);
                size_t len;
                char *copy;
                if (!e || fls_mentry_broken(e) || poisoned(st, b)) {
                        snprintf(errstr, errstr_size,
                                 "redis: the mirror lost %s, which it answered for",
                                 b->text.buf + k->off);
                        return -1;
                }
                len = fls_mentry_size(e, n);
                copy = arena_alloc(b, len + 1);
                *strs = arena_alloc(b, *n * sizeof(**strs) + 1);
                if (!copy || !*strs)
                        goto oom;
                fls_mentry_copy(e, copy, *strs);
                return 0;
        }
oom:
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

static int parse_reply(fls_batch_t *b, redisReply *r, char *errstr, size_t errstr_size)
{
        size_t j = 0;

        if (r->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis: script: %s", r->str);
                return -1;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
                snprintf(errstr, errstr_size, "redis: unexpected script reply");
                return -1;
        }
        b->reply = r;
        b->stale = r->element[0]->integer != 0;
        if (b->stale) {
                ttl_forget(b->st);
                if (b->st->mirror && !poisoned(b->st, b))
                        fls_arena_add(&b->st->poison, b->tag, b->taglen);
        } else if (b->st->mirror) {
                /* A batch of the same partition parsed since the send may have
                 * copied a key this one had no copy of. */
                for (size_t k = 0; k < b->nkeys; k++)
                        if (!b->keys[k].me)
                                b->keys[k].me = fls_mirror_find(
                                    b->st->mirror, b->text.buf + b->keys[k].off,
                                    b->keys[k].len);
                mirror_play(b, r->element[3]->integer != 0);
        }
        b->hashes =
            fls_grow(b->hashes, &b->hashes_cap, b->nreads + 1, sizeof(*b->hashes));
        for (size_t i = 0; i < b->nreads; i++) {
                fls_hash_t *hv = &b->hashes[i];
                const char **strs = NULL;
                size_t n = 0;
                if (read_strings(b, i, &j, &strs, &n, errstr, errstr_size))
                        return -1;
                if (is_list(b->st, b->keys[b->read_key[i]].fam)) {
                        /* A list: its items are the fields, values alias them. */
                        hv->n = n;
                        hv->fields = hv->values = strs;
                        continue;
                }
                /* A hash: fields then values, each in a run of its own. */
                {
                        const char **sep = arena_alloc(b, n * sizeof(*sep) + 1);
                        if (!sep) {
                                snprintf(errstr, errstr_size, "out of memory");
                                return -1;
                        }
                        for (size_t k = 0; k < n / 2; k++) {
                                sep[k] = strs[2 * k];
                                sep[n / 2 + k] = strs[2 * k + 1];
                        }
                        hv->n = n / 2;
                        hv->fields = sep;
                        hv->values = sep + n / 2;
                }
        }
        return 0;
}

/* Queues the batch's script on the connection (written at the next write or read)
 * and records that its reply is owed. */
static int append(fls_store_t *st, fls_batch_t *b, char *errstr, size_t errstr_size)
{
        release_reply(b);
        if (send_batch(b, &st->refs, &st->refcap) != REDIS_OK) {
                snprintf(errstr, errstr_size, "redis: %s", st->rc->errstr);
                drop(st);
                return -1;
        }
        st->inflight = fls_grow(st->inflight, &st->inflight_cap, st->ninflight + 1,
                                sizeof(*st->inflight));
        st->inflight[st->ninflight++] = b;
        b->sent = 1;
        return 0;
}

/* Reads the oldest owed reply into its batch. */
static int read_one(fls_store_t *st, char *errstr, size_t errstr_size)
{
        fls_batch_t *b = st->inflight[st->inflight_head];
        redisReplyObjectFunctions *fn = st->rc->reader->fn;
        redisReply *r = NULL;

        /* The batch's replies go to its arena. On an error the reader keeps these
         * functions, so that drop() frees a half-built reply with reply_free. */
        st->rc->reader->fn = &reply_fns;
        redisReaderSetPrivdata(st->rc->reader, b);
        if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r) {
                snprintf(errstr, errstr_size, "redis: %s", st->rc->errstr);
                drop(st);
                return -1;
        }
        b->rreplies =
            fls_grow(b->rreplies, &b->rreplies_cap, b->nowed + 1, sizeof(*b->rreplies));
        while (b->nrreplies < b->nowed) {
                redisReply *h = NULL;
                if (redisGetReply(st->rc, (void **)&h) != REDIS_OK || !h) {
                        snprintf(errstr, errstr_size, "redis: %s", st->rc->errstr);
                        drop(st);
                        return -1;
                }
                b->rreplies[b->nrreplies++] = h;
        }
        st->rc->reader->fn = fn;
        redisReaderSetPrivdata(st->rc->reader, NULL);
        b->sent = 0;
        if (++st->inflight_head == st->ninflight)
                st->inflight_head = st->ninflight = 0;
        if (parse_reply(b, r, errstr, errstr_size)) {
                /* A NOSCRIPT after a Redis restart, or any other error: the
                 * connection is rebuilt and the script loaded again. */
                drop(st);
                return -1;
        }
        return 0;
}

/* Reads every owed reply, so that another command's reply is not taken for one. */
static int settle(fls_store_t *st, char *errstr, size_t errstr_size)
{
        while (st->inflight_head < st->ninflight)
                if (read_one(st, errstr, errstr_size))
                        return -1;
        return 0;
}

int fls_store_apply(fls_store_t *st, fls_batch_t **bs, size_t n, char *errstr,
                    size_t errstr_size)
{
        if (fls_store_connect(st, errstr, errstr_size) || settle(st, errstr, errstr_size))
                return -1;
        mirror_tend(st);
        for (size_t i = 0; i < n; i++)
                if (append(st, bs[i], errstr, errstr_size))
                        return -1;
        return settle(st, errstr, errstr_size);
}

int fls_store_send(fls_store_t *st, fls_batch_t *b, char *errstr, size_t errstr_size)
{
        int done = 0;

        if (fls_store_connect(st, errstr, errstr_size))
                return -1;
        if (st->inflight_head == st->ninflight)
                mirror_tend(st); /* no reply owed: no copy is in use */
        if (append(st, b, errstr, errstr_size))
                return -1;
        /* Written now rather than at the first read, so that Redis runs the script
         * while the caller prepares the next batch. Redis reads as it runs, so this
         * blocks at most for the socket buffer. */
        while (!done) {
                if (redisBufferWrite(st->rc, &done) != REDIS_OK) {
                        snprintf(errstr, errstr_size, "redis: %s", st->rc->errstr);
                        drop(st);
                        return -1;
                }
        }
        return 0;
}

int fls_store_recv(fls_store_t *st, fls_batch_t *b, char *errstr, size_t errstr_size)
{
        while (b->sent)
                if (read_one(st, errstr, errstr_size))
                        return -1;
        if (!b->reply) {
                snprintf(errstr, errstr_size,
                         "redis: batch not sent, or its reply was lost");
                return -1;
        }
        return 0;
}

const fls_hash_t *fls_batch_reply(const fls_batch_t *b, int read)
{
        static const fls_hash_t empty = {0, NULL, NULL};
        if (!b->reply || read < 0 || (size_t)read >= b->nreads)
                return &empty;
        return &b->hashes[read];
}

/* ---- reading ------------------------------------------------------------- */

const char *fls_hash_get(const fls_hash_t *h, const char *field)
{
        for (size_t i = 0; i < h->n; i++)
                if (strcmp(h->fields[i], field) == 0)
                        return h->values[i];
        return NULL;
}

int64_t fls_hash_int(const fls_hash_t *h, const char *field, int64_t def)
{
        const char *v = fls_hash_get(h, field);
        return v ? strtoll(v, NULL, 10) : def;
}

double fls_hash_dbl(const fls_hash_t *h, const char *field, double def)
{
        const char *v = fls_hash_get(h, field);
        return v ? strtod(v, NULL) : def;
}

int64_t fls_ring_sum(const fls_store_t *st, const fls_hash_t *ring, int fam, int feat,
                     int64_t ref_ts, int64_t window_ms)
{
        const struct famx *fx = &st->fams[fam];
        const char *name = fx->f.features[feat];
        size_t nlen = strlen(name);
        int64_t ref = ref_ts / fx->f.bucket_ms;
        int64_t nb = (window_ms + fx->f.bucket_ms - 1) / fx->f.bucket_ms;
        int64_t held[1024], sum = 0;
        int64_t nslots = fx->slots < 1024 ? fx->slots : 1024;

        /* Two linear passes (this runs per scored event): which bucket each slot
         * holds, then the counts of the slots whose bucket is in the window. */
        for (int64_t k = 0; k < nslots; k++)
                held[k] = -1;
        for (size_t i = 0; i < ring->n; i++) {
                const char *f = ring->fields[i];
                if (f[0] == '#') {
                        int64_t slot = strtoll(f + 1, NULL, 10);
                        if (slot >= 0 && slot < nslots)
                                held[slot] = strtoll(ring->values[i], NULL, 10);
                }
        }
        for (size_t i = 0; i < ring->n; i++) {
                const char *f = ring->fields[i];
                int64_t slot, bucket;
                if (strncmp(f, name, nlen) != 0 || f[nlen] != '@')
                        continue;
                slot = strtoll(f + nlen + 1, NULL, 10);
                if (slot < 0 || slot >= nslots)
                        continue;
                bucket = held[slot];
                if (bucket > ref - nb && bucket <= ref)
                        sum += strtoll(ring->values[i], NULL, 10);
        }
        return sum;
}

int fls_store_hgetall(fls_store_t *st, const char *key, const fls_hash_t **out,
                      char *errstr, size_t errstr_size)
{
        redisReply *r;
        size_t n;

        if (fls_store_connect(st, errstr, errstr_size) || settle(st, errstr, errstr_size))
                return -1;
        if (st->hreply) {
                freeReplyObject(st->hreply);
                st->hreply = NULL;
        }
        r = redisCommand(st->rc, "HGETALL %s", key);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
                snprintf(errstr, errstr_size, "redis: HGETALL %s: %s", key,
                         r && r->type == REDIS_REPLY_ERROR ? r->str : st->rc->errstr);
                if (r)
                        freeReplyObject(r);
                else
                        drop(st);
                return -1;
        }
        n = r->elements / 2;
        st->hptrs = fls_grow(st->hptrs, &st->hptrs_cap, 2 * n + 1, sizeof(*st->hptrs));
        for (size_t k = 0; k < n; k++) {
                st->hptrs[k] = r->element[2 * k]->str;
                st->hptrs[n + k] = r->element[2 * k + 1]->str;
        }
        st->hreply = r;
        st->hview.n = n;
        st->hview.fields = st->hptrs;
        st->hview.values = st->hptrs + n;
        *out = &st->hview;
        return 0;
}

/* ---- claims ------------------------------------------------------------------- */

/* KEYS: the counter, its ids. ARGV: id, amount, limit, ids TTL, the claim's stream ('':
 * none) and position in it. The counter also keeps, per stream, the highest position
 * granted ("hw:<stream>"): above it no id of the stream was ever granted. */
static const char claim_lua[] =
    "local g = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')\n"
    "local hf, hw = 'hw:' .. ARGV[5], -1\n"
    "if ARGV[5] ~= '' then hw = tonumber(redis.call('HGET', KEYS[1], hf) or '-1') end\n"
    "if g then return {tonumber(g), used, hw} end\n"
    "local amount = tonumber(ARGV[2])\n"
    "if used + amount <= tonumber(ARGV[3]) then\n"
    "  used = redis.call('HINCRBY', KEYS[1], 'used', amount)\n"
    "  g = amount\n"
    "  if ARGV[5] ~= '' and tonumber(ARGV[6]) > hw then\n"
    "    hw = tonumber(ARGV[6])\n"
    "    redis.call('HSET', KEYS[1], hf, ARGV[6])\n"
    "  end\n"
    "else\n"
    "  g = 0\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], g)\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "return {g, used, hw}\n";

struct claim {
        char *counter, *id, *stream;
        int64_t pos, amount, limit, granted, used;
        int local; /* refused without asking Redis */
};

/*
 * What the last reply for a (counter, stream) showed: the counter's value and the
 * highest position of the stream ever granted on it. Claims only add to a counter, so
 * Redis holds at least that value; a claim past the position was never granted. Such
 * a claim that the value already refuses is refused without asking: Redis would
 * refuse it too, now and on any replay. The position is exact only while this process
 * is the stream's one claimant, hence fls_claims_forget on every change of owner.
 */
struct seen {
        char *key; /* counter '\n' stream */
        int64_t used, hw;
        uint64_t stamp; /* last use, for replacing the oldest */
};

/* (counter, stream) pairs in use at once: campaigns or regions x hours, times the
 * partitions a process owns; beyond that the oldest pair is asked about again. */
#define SEEN_MAX 256

struct fls_claims {
        struct claim *v;
        size_t n, cap;
        char sha[41];
        redisContext *loaded_on; /* the connection the script was loaded on */
        struct seen seen[SEEN_MAX];
        size_t nseen;
        uint64_t seen_conn, clock; /* st->conns the values were seen on */
        int64_t local;             /* claims refused without asking Redis */
        char *key;                 /* seen_find's key buffer */
        size_t key_cap;
};

fls_claims_t *fls_claims_new(void)
{
        return calloc(1, sizeof(fls_claims_t));
}

void fls_claims_reset(fls_claims_t *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].counter);
                free(c->v[i].id);
                free(c->v[i].stream);
        }
        c->n = 0;
}

void fls_claims_forget(fls_claims_t *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->nseen; i++)
                free(c->seen[i].key);
        c->nseen = 0;
}

void fls_claims_destroy(fls_claims_t *c)
{
        if (!c)
                return;
        fls_claims_reset(c);
        fls_claims_forget(c);
        free(c->v);
        free(c->key);
        free(c);
}

int64_t fls_claims_local(const fls_claims_t *c)
{
        return c->local;
}

/* The pair of cl, or NULL. A linear scan: claims are a few per batch. */
static struct seen *seen_find(fls_claims_t *c, const struct claim *cl)
{
        size_t nc = strlen(cl->counter), ns = strlen(cl->stream);
        c->key = fls_grow(c->key, &c->key_cap, nc + ns + 2, 1);
        memcpy(c->key, cl->counter, nc);
        c->key[nc] = '\n';
        memcpy(c->key + nc + 1, cl->stream, ns + 1);
        for (size_t i = 0; i < c->nseen; i++)
                if (strcmp(c->seen[i].key, c->key) == 0) {
                        c->seen[i].stamp = ++c->clock;
                        return &c->seen[i];
                }
        return NULL;
}

static void seen_note(fls_claims_t *c, const struct claim *cl, int64_t hw)
{
        struct seen *s = seen_find(c, cl);
        if (!s) {
                if (c->nseen < SEEN_MAX) {
                        s = &c->seen[c->nseen++];
                } else {
                        s = &c->seen[0];
                        for (size_t i = 1; i < c->nseen; i++)
                                if (c->seen[i].stamp < s->stamp)
                                        s = &c->seen[i];
                        free(s->key);
                }
                if (!(s->key = strdup(c->key)))
                        abort();
                s->used = cl->used;
                s->stamp = ++c->clock;
        }
        s->hw = hw;
        /* The value is the counter's, whichever stream asked: a lower bound for each
         * of its pairs, so one partition's refusals follow another's grants. */
        for (size_t i = 0, nc = strlen(cl->counter); i < c->nseen; i++)
                if (c->seen[i].used < cl->used &&
                    strncmp(c->seen[i].key, c->key, nc + 1) == 0)
                        c->seen[i].used = cl->used;
}

int fls_claims_add(fls_claims_t *c, const char *counter, const char *id,
                   const char *stream, int64_t pos, int64_t amount, int64_t limit)
{
        struct claim *cl;

        c->v = fls_grow(c->v, &c->cap, c->n + 1, sizeof(*c->v));
        cl = &c->v[c->n];
        cl->counter = strdup(counter);
        cl->id = strdup(id);
        cl->stream = stream ? strdup(stream) : NULL;
        if (!cl->counter || !cl->id || (stream && !cl->stream))
                abort();
        cl->pos = pos;
        cl->amount = amount;
        cl->limit = limit;
        cl->granted = cl->used = 0;
        return (int)c->n++;
}

size_t fls_claims_count(const fls_claims_t *c)
{
        return c->n;
}

int64_t fls_claims_granted(const fls_claims_t *c, int idx)
{
        return c->v[idx].granted;
}

int64_t fls_claims_used(const fls_claims_t *c, int idx)
{
        return c->v[idx].used;
}

int fls_claims_run(fls_store_t *st, fls_claims_t *c, int64_t ids_ttl_s, char *errstr,
                   size_t errstr_size)
{
        size_t i, nsent = 0;

        if (c->n == 0)
                return 0;
        if (!st->rc || c->seen_conn != st->conns)
                fls_claims_forget(c); /* a new connection: Redis may have restarted */
        for (i = 0; i < c->n; i++) {
                struct claim *cl = &c->v[i];
                const struct seen *s = cl->stream ? seen_find(c, cl) : NULL;
                cl->local = s && cl->pos > s->hw && s->used + cl->amount > cl->limit;
                if (cl->local) {
                        cl->granted = 0;
                        cl->used = s->used;
                        c->local++;
                }
                nsent += !cl->local;
        }
        if (nsent == 0)
                return 0;
        if (fls_store_connect(st, errstr, errstr_size) || settle(st, errstr, errstr_size))
                return -1;
        if (c->loaded_on != st->rc) {
                redisReply *r = redisCommand(st->rc, "SCRIPT LOAD %s", claim_lua);
                if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
                        snprintf(errstr, errstr_size, "redis: SCRIPT LOAD claims: %s",
                                 r && r->type == REDIS_REPLY_ERROR ? r->str
                                                                   : st->rc->errstr);
                        if (r)
                                freeReplyObject(r);
                        drop(st);
                        return -1;
                }
                memcpy(c->sha, r->str, 41);
                c->sha[40] = '\0';
                freeReplyObject(r);
                c->loaded_on = st->rc;
        }
        for (i = 0; i < c->n; i++) {
                struct claim *cl = &c->v[i];
                char k1[512], k2[520];
                if (cl->local)
                        continue;
                snprintf(k1, sizeof(k1), "%s:{%s}", st->prefix, cl->counter);
                snprintf(k2, sizeof(k2), "%s:ids", k1);
                redisAppendCommand(st->rc, "EVALSHA %s 2 %s %s %s %lld %lld %lld %s %lld",
                                   c->sha, k1, k2, cl->id, (long long)cl->amount,
                                   (long long)cl->limit, (long long)ids_ttl_s,
                                   cl->stream ? cl->stream : "", (long long)cl->pos);
        }
        for (i = 0; i < c->n; i++) {
                struct claim *cl = &c->v[i];
                redisReply *r = NULL;
                if (cl->local)
                        continue;
                if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r ||
                    r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
                        snprintf(errstr, errstr_size, "redis: claim: %s",
                                 r && r->type == REDIS_REPLY_ERROR ? r->str
                                                                   : st->rc->errstr);
                        if (r)
                                freeReplyObject(r);
                        drop(st);
                        c->loaded_on = NULL;
                        return -1;
                }
                cl->granted = r->element[0]->integer;
                cl->used = r->element[1]->integer;
                if (cl->stream)
                        seen_note(c, cl, r->element[2]->integer);
                freeReplyObject(r);
        }
        c->seen_conn = st->conns;
        return 0;
}

int fls_store_counter(fls_store_t *st, const char *counter, int64_t *used, char *errstr,
                      size_t errstr_size)
{
        char key[512];
        redisReply *r;

        if (fls_store_connect(st, errstr, errstr_size) || settle(st, errstr, errstr_size))
                return -1;
        snprintf(key, sizeof(key), "%s:{%s}", st->prefix, counter);
        r = redisCommand(st->rc, "HGET %s used", key);
        if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
                snprintf(errstr, errstr_size, "redis: HGET %s: %s", key,
                         r && r->type == REDIS_REPLY_ERROR ? r->str : st->rc->errstr);
                if (r)
                        freeReplyObject(r);
                else
                        drop(st);
                return -1;
        }
        *used = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        freeReplyObject(r);
        return 0;
}
