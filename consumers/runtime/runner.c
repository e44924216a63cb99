/*
 * runner: the consumer loop shared by every consumer (see runner.h for the flow).
 *
 * Delivery guarantees come from the order of the steps:
 *  - features: a partition's updates and its "applied" offset change in one Lua
 *    script; the script refuses a batch unless Redis holds the offset this process
 *    last wrote, so replays, zombies and a Redis that lost its last second all end in
 *    a reload of the stored offsets and a seek, never in an update applied twice;
 *  - outputs: decisions are produced and flushed before the batch is recorded as
 *    emitted (in Redis, with the next script call) and before its Kafka offsets are
 *    stored. After a crash the partition restarts after "emitted"; messages up to
 *    "applied" are replayed read-only: their features are not touched again and their
 *    decisions come out again with the same ids (at-least-once). A delivery report
 *    without an offset (librdkafka's implicit ack) does not count as acknowledged:
 *    the poll is replayed the same way without a restart.
 */
#include "runner.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "kafka.h"
#include "log.h"
#include "settings.h"

#define MAX_BATCHES 4096

/* A deferred write; its strings are offsets into the partition's post_text. */
struct post {
        size_t entity, field, s; /* s: SIZE_MAX when the write has no string */
        fls_defer_kind_t kind;
        int64_t i;
};

struct part {
        int assigned;
        struct post *posts; /* deferred writes of decisions, for the next script */
        size_t nposts, posts_cap, attached;
        fls_arena_t post_text; /* their strings, in the order of posts */
        int64_t applied;       /* what Redis holds as "offset" (-1: nothing) */
        int64_t emitted;       /* outputs flushed up to here */
        int64_t e_stored;      /* "emitted" as last written to Redis */
        int64_t watermark;     /* max event time applied */
        int reseek;            /* stale batch seen: reload meta and seek */
};

struct fls_emit {
        struct runner *r;
        fls_claims_t *claims;
        rd_kafka_t *producer;
        fls_codec_t *codec;
        const char *topic;
        const char *in_topic;
        fls_counter_t *out;
        int timeout_ms;
};

struct runner {
        const fls_app_t *app;
        const fls_conf_t *conf;
        void *ctx;
        volatile int *stop;
        rd_kafka_t *consumer, *producer;
        rd_kafka_queue_t *queue;
        fls_store_t *store;  /* partition state: scripts pipelined per poll */
        fls_store_t *gstore; /* global counters (claims): a connection of their own,
                                so that a claim never waits behind owed replies */
        fls_codec_t *in, *out;
        fls_metrics_t *metrics;
        fls_emit_t emit;
        const char *topic;
        char dlq_topic[256];
        struct part *parts;
        int nparts;
        fls_batch_t **pool;
        size_t npool;
        rd_kafka_message_t **msgs;
        size_t *order;
        int max_msgs, max_ms, shutdown_ms;
        int64_t lateness_ms, max_future_ms, min_ts_ms;
        int retry_max_ms;
        int fatal;
        int unconfirmed; /* a delivery report of this poll came without an offset */
        uint64_t poll;
        /* metrics */
        fls_counter_t *m_in, *m_late, *m_bad[FLS_BAD__COUNT], *m_stale, *m_redis_err;
        fls_hist_t *m_batch, *m_redis, *m_claims, *m_flush;
        fls_gauge_t *m_lag, *m_mbytes, *m_mslabs;
        fls_counter_t *m_mhit, *m_mmiss, *m_mdiff, *m_claims_local;
        fls_mirror_stats_t mlast; /* mirror stats already counted */
        int64_t claims_local;     /* fls_claims_local already counted */
};
typedef struct runner runner_t;

/* SIGHUP asks for a model reload; set by the handler, served between batches. */
static volatile sig_atomic_t hup;

static void on_hup(int sig)
{
        (void)sig;
        hup = 1;
}

static void serve_reload(runner_t *r)
{
        char err[512];

        if (!hup)
                return;
        hup = 0;
        if (!r->app->reload) {
                fls_log(FLS_LOG_INFO, "runner", "SIGHUP: %s has no models to reload",
                        r->app->name);
                return;
        }
        if (r->app->reload(r->ctx, err, sizeof(err)))
                fls_log(FLS_LOG_ERROR, "runner",
                        "SIGHUP: reload rejected, the previous models keep serving: %s",
                        err);
        else
                fls_log(FLS_LOG_INFO, "runner", "SIGHUP: models reloaded");
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct part *part_get(runner_t *r, int32_t p)
{
        if (p < 0)
                return NULL;
        if (p >= r->nparts) {
                int n = p + 16;
                struct part *np = realloc(r->parts, (size_t)n * sizeof(*np));
                if (!np)
                        return NULL;
                memset(np + r->nparts, 0, (size_t)(n - r->nparts) * sizeof(*np));
                for (int i = r->nparts; i < n; i++)
                        np[i].applied = np[i].emitted = np[i].e_stored = -1;
                r->parts = np;
                r->nparts = n;
        }
        return &r->parts[p];
}

/* Drops the first n deferred writes; the strings of those kept move to the front of
 * post_text (they follow the dropped ones' strings there). */
static void posts_drop(struct part *p, size_t n)
{
        if (n >= p->nposts) {
                p->nposts = 0;
                fls_arena_reset(&p->post_text);
        } else if (n > 0) {
                size_t base = p->posts[n].entity;
                memmove(p->post_text.buf, p->post_text.buf + base,
                        p->post_text.len - base);
                p->post_text.len -= base;
                memmove(p->posts, p->posts + n, (p->nposts - n) * sizeof(*p->posts));
                p->nposts -= n;
                for (size_t k = 0; k < p->nposts; k++) {
                        p->posts[k].entity -= base;
                        p->posts[k].field -= base;
                        if (p->posts[k].s != SIZE_MAX)
                                p->posts[k].s -= base;
                }
        }
        p->attached = 0;
}

/* Queues the partition's pending deferred writes into b, its next script call. */
static void posts_attach(struct part *p, fls_batch_t *b)
{
        for (size_t k = 0; k < p->nposts; k++) {
                const struct post *q = &p->posts[k];
                const fls_arena_t *t = &p->post_text;
                const char *entity = fls_arena_str(t, q->entity);
                const char *str = q->s == SIZE_MAX ? NULL : fls_arena_str(t, q->s);
                int ent = fls_batch_entity(b, entity, strlen(entity));
                fls_batch_defer(b, ent, q->kind, fls_arena_str(t, q->field), q->i, str);
        }
        p->attached = p->nposts;
}

/* ---- emit ---------------------------------------------------------------- */

void fls_emit_defer(fls_emit_t *e, int32_t partition, const char *entity,
                    fls_defer_kind_t kind, const char *field, int64_t i, const char *s)
{
        struct part *p = part_get(e->r, partition);
        struct post *q;

        if (!p)
                abort();
        /* Bounded by the decisions of one batch; reused from poll to poll. */
        p->posts = fls_grow(p->posts, &p->posts_cap, p->nposts + 1, sizeof(*p->posts));
        q = &p->posts[p->nposts++];
        q->entity = fls_arena_add(&p->post_text, entity, strlen(entity));
        q->field = fls_arena_add(&p->post_text, field, strlen(field));
        q->s = s ? fls_arena_add(&p->post_text, s, strlen(s)) : SIZE_MAX;
        q->kind = kind;
        q->i = i;
}

fls_claims_t *fls_emit_claims(fls_emit_t *e)
{
        return e->claims;
}

int fls_emit_claim(fls_emit_t *e, const char *counter, int32_t partition, int64_t offset,
                   const char *kind, int64_t amount, int64_t limit)
{
        char id[512], stream[300];

        fls_emit_id(e, partition, offset, kind, id, sizeof(id));
        snprintf(stream, sizeof(stream), "%s/%d", e->in_topic, (int)partition);
        return fls_claims_add(e->claims, counter, id, stream, offset, amount, limit);
}

avro_value_t *fls_emit_begin(fls_emit_t *e)
{
        return fls_codec_out(e->codec);
}

void fls_emit_id(const fls_emit_t *e, int32_t partition, int64_t offset, const char *kind,
                 char *buf, size_t size)
{
        snprintf(buf, size, "%s/%d/%" PRId64 "/%s", e->in_topic, (int)partition, offset,
                 kind);
}

int fls_emit_send(fls_emit_t *e, const char *key, size_t keylen, char *errstr,
                  size_t errstr_size)
{
        const void *buf;
        size_t len;

        if (fls_codec_encode(e->codec, &buf, &len, errstr, errstr_size))
                return -1;
        if (fls_kafka_produce(e->producer, e->topic, key, keylen, buf, len, NULL,
                              e->timeout_ms, errstr, errstr_size))
                return -1;
        fls_counter_add(e->out, 1);
        return 0;
}

/* ---- Redis with retry ------------------------------------------------------ */

static void nap(runner_t *r, int ms);

/* Sleeps up to ms, waking early on stop. */
static void nap(runner_t *r, int ms)
{
        while (ms > 0 && !*r->stop) {
                int step = ms < 100 ? ms : 100;
                if (r->producer) /* none yet during set-up */
                        rd_kafka_poll(r->producer, 0);
                usleep((useconds_t)step * 1000);
                ms -= step;
        }
}

/* An error on the state connection may mean Redis restarted and lost its last
 * writes, counters included: the claims' last seen values go too. */
static void store_failed(runner_t *r)
{
        fls_counter_add(r->m_redis_err, 1);
        fls_claims_forget(r->emit.claims);
}

/* Redis being down is not fatal: the consumer holds its batch and retries with
 * backoff until Redis is back. Returns -1 only when asked to stop meanwhile. */
static int apply_retry(runner_t *r, fls_batch_t **bs, size_t n)
{
        char err[512];
        int backoff = 50;
        double t0 = now_s();

        while (fls_store_apply(r->store, bs, n, err, sizeof(err))) {
                store_failed(r);
                fls_metrics_set_health(r->metrics, 0, err);
                fls_log(FLS_LOG_WARN, "runner", "%s; retrying in %d ms", err, backoff);
                nap(r, backoff);
                if (*r->stop)
                        return -1;
                backoff = backoff * 2 > r->retry_max_ms ? r->retry_max_ms : backoff * 2;
        }
        fls_metrics_set_health(r->metrics, 1, NULL);
        fls_hist_observe(r->m_redis, now_s() - t0);
        return 0;
}

int fls_emit_claims_run(fls_emit_t *e)
{
        runner_t *r = e->r;
        char err[512];
        int backoff = 50;
        double t0 = now_s();

        while (fls_claims_run(r->gstore, e->claims, 7 * 86400, err, sizeof(err))) {
                fls_counter_add(r->m_redis_err, 1);
                fls_log(FLS_LOG_WARN, "runner", "%s; retrying in %d ms", err, backoff);
                nap(r, backoff);
                if (*r->stop)
                        return -1;
                backoff = backoff * 2 > r->retry_max_ms ? r->retry_max_ms : backoff * 2;
        }
        fls_hist_observe(r->m_claims, now_s() - t0);
        fls_counter_add(r->m_claims_local,
                        (uint64_t)(fls_claims_local(e->claims) - r->claims_local));
        r->claims_local = fls_claims_local(e->claims);
        return 0;
}

static int meta_retry(runner_t *r, const int32_t *ps, size_t n, fls_meta_t *out)
{
        char err[512];
        int backoff = 50;

        while (fls_store_meta(r->store, r->topic, ps, n, out, err, sizeof(err))) {
                fls_log(FLS_LOG_WARN, "runner", "%s; retrying in %d ms", err, backoff);
                nap(r, backoff);
                if (*r->stop)
                        return -1;
                backoff = backoff * 2 > r->retry_max_ms ? r->retry_max_ms : backoff * 2;
        }
        return 0;
}

/* ---- rebalance ------------------------------------------------------------- */

static void record_emitted(runner_t *r);

/* Loads the stored state of newly assigned partitions and starts each one after the
 * last offset whose outputs were flushed; without state, at the committed offset. */
static int load_parts(runner_t *r, rd_kafka_topic_partition_list_t *parts)
{
        int32_t *ps = calloc((size_t)parts->cnt + 1, sizeof(*ps));
        fls_meta_t *ms = calloc((size_t)parts->cnt + 1, sizeof(*ms));
        int rc = -1;

        if (!ps || !ms)
                goto out;
        for (int i = 0; i < parts->cnt; i++) {
                ps[i] = parts->elems[i].partition;
                fls_store_forget(r->store, r->topic, ps[i]);
        }
        if (meta_retry(r, ps, (size_t)parts->cnt, ms))
                goto out;
        for (int i = 0; i < parts->cnt; i++) {
                struct part *p = part_get(r, ps[i]);
                if (!p)
                        goto out;
                p->assigned = 1;
                p->reseek = 0;
                p->applied = ms[i].offset;
                p->emitted = ms[i].emitted;
                p->e_stored = ms[i].emitted;
                p->watermark = ms[i].watermark;
                /* Both offsets exist once a batch was applied; emitted may lag
                 * applied by one batch, which is then replayed read-only. */
                if (p->emitted < 0 && p->applied >= 0)
                        p->emitted = -1;
                parts->elems[i].offset =
                    p->emitted >= 0 ? p->emitted + 1
                                    : (p->applied >= 0 ? 0 : RD_KAFKA_OFFSET_INVALID);
                fls_log(FLS_LOG_INFO, "runner",
                        "assigned %s [%d]: applied %" PRId64 ", emitted %" PRId64
                        ", watermark %" PRId64,
                        r->topic, (int)ps[i], p->applied, p->emitted, p->watermark);
        }
        rc = 0;
out:
        free(ps);
        free(ms);
        return rc;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        runner_t *r = opaque;
        int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        rd_kafka_error_t *e = NULL;

        /* Another owner may claim for these partitions in between (fls_claims_run). */
        fls_claims_forget(r->emit.claims);
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (load_parts(r, parts)) {
                        /* Stopping while Redis was down: nothing is assigned, and
                         * the close that follows has nothing of these to record. */
                        if (!*r->stop)
                                r->fatal = 1;
                        return;
                }
                if (coop)
                        e = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
        } else {
                /* Batches are processed synchronously, so by now every output of the
                 * revoked partitions is flushed and their offsets stored; what is
                 * recorded in Redis now is where the next owner starts. */
                record_emitted(r);
                rd_kafka_commit(rk, NULL, 1);
                for (int i = 0; i < parts->cnt; i++) {
                        struct part *p = part_get(r, parts->elems[i].partition);
                        if (p) {
                                p->assigned = 0;
                                posts_drop(p, p->nposts);
                        }
                        fls_store_forget(r->store, r->topic, parts->elems[i].partition);
                        fls_log(FLS_LOG_INFO, "runner", "revoked %s [%d]", r->topic,
                                (int)parts->elems[i].partition);
                }
                if (coop)
                        e = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
        }
        if (e) {
                fls_log(FLS_LOG_ERROR, "runner", "rebalance: %s",
                        rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        }
}

/* After a stale batch: Redis holds other offsets than this process wrote. Start the
 * partition over from what Redis says. */
static void reseek(runner_t *r)
{
        for (int i = 0; i < r->nparts; i++) {
                struct part *p = &r->parts[i];
                rd_kafka_topic_partition_list_t *l;
                rd_kafka_error_t *e;
                if (!p->reseek || !p->assigned)
                        continue;
                l = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(l, r->topic, i);
                if (load_parts(r, l) == 0) {
                        if (l->elems[0].offset == RD_KAFKA_OFFSET_INVALID)
                                l->elems[0].offset = RD_KAFKA_OFFSET_BEGINNING;
                        e = rd_kafka_seek_partitions(r->consumer, l, 5000);
                        if (e) {
                                fls_log(FLS_LOG_ERROR, "runner", "seek: %s",
                                        rd_kafka_error_string(e));
                                rd_kafka_error_destroy(e);
                        }
                }
                rd_kafka_topic_partition_list_destroy(l);
        }
}

/* ---- dead letters ----------------------------------------------------------- */

static int dead_letter(runner_t *r, const rd_kafka_message_t *m, fls_bad_t bad,
                       const char *detail)
{
        rd_kafka_headers_t *src = NULL, *h;
        char num[32], err[512];

        if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR && src)
                h = rd_kafka_headers_copy(src);
        else
                h = rd_kafka_headers_new(5);
        rd_kafka_header_add(h, "fls.error.class", -1, fls_bad_name(bad), -1);
        rd_kafka_header_add(h, "fls.error.detail", -1, detail, -1);
        rd_kafka_header_add(h, "fls.source.topic", -1, r->topic, -1);
        snprintf(num, sizeof(num), "%d", (int)m->partition);
        rd_kafka_header_add(h, "fls.source.partition", -1, num, -1);
        snprintf(num, sizeof(num), "%" PRId64, m->offset);
        rd_kafka_header_add(h, "fls.source.offset", -1, num, -1);
        fls_counter_add(r->m_bad[bad], 1);
        if (fls_kafka_produce(r->producer, r->dlq_topic, m->key, m->key_len, m->payload,
                              m->len, h, r->emit.timeout_ms, err, sizeof(err))) {
                rd_kafka_headers_destroy(h);
                fls_log(FLS_LOG_ERROR, "runner", "dead letter %s [%d] @%" PRId64 ": %s",
                        r->topic, (int)m->partition, m->offset, err);
                return -1;
        }
        return 0;
}

/* ---- one batch -------------------------------------------------------------- */

static rd_kafka_message_t **sort_msgs;
static int by_partition(const void *a, const void *b)
{
        const rd_kafka_message_t *x = sort_msgs[*(const size_t *)a];
        const rd_kafka_message_t *y = sort_msgs[*(const size_t *)b];
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static fls_batch_t *batch_at(runner_t *r, size_t i)
{
        if (i >= r->npool) {
                fls_batch_t **np = realloc(r->pool, (i + 1) * sizeof(*np));
                if (!np)
                        return NULL;
                r->pool = np;
                while (r->npool <= i)
                        r->pool[r->npool++] = fls_batch_new(r->store);
        }
        return r->pool[i];
}

/* Checks one message; returns 1 when it is good and fills *valuep and *ts. */
static int check_msg(runner_t *r, rd_kafka_message_t *m, avro_value_t **valuep,
                     int64_t *ts)
{
        char detail[256];
        fls_bad_t bad;

        bad = fls_codec_decode(r->in, m->payload, m->len, valuep, detail, sizeof(detail));
        if (bad == FLS_BAD_NONE)
                bad = r->app->check(r->ctx, *valuep, m->key, m->key_len, ts, detail,
                                    sizeof(detail));
        if (bad == FLS_BAD_NONE && *ts < r->min_ts_ms) {
                bad = FLS_BAD_VALUE;
                snprintf(detail, sizeof(detail), "timestamp %" PRId64 " before %" PRId64,
                         *ts, r->min_ts_ms);
        }
        if (bad == FLS_BAD_NONE && *ts > wall_ms() + r->max_future_ms) {
                bad = FLS_BAD_VALUE;
                snprintf(detail, sizeof(detail),
                         "timestamp %" PRId64 " more than %" PRId64 " ms in the future",
                         *ts, r->max_future_ms);
        }
        if (bad == FLS_BAD_NONE)
                return 1;
        if (dead_letter(r, m, bad, detail))
                r->fatal = 1;
        return 0;
}

/* The poll's decisions were not all acknowledged (stopping, or a fatal error): their
 * deferred writes must not reach Redis, which would otherwise hold decision state
 * ahead of the "emitted" mark, and the replay after the restart would see it. The
 * earlier polls' writes that this poll's script was to carry (still attached: Redis
 * went down before it ran) stay: their decisions were acknowledged and "emitted" is
 * past them, so the mark recorded when leaving must come with them. Dropping them
 * too lost a user's history entries and decision marks when a SIGTERM came while
 * Redis was down (the fault suite, seed 7). */
static void abandon(runner_t *r, const int32_t *bpart, size_t nb)
{
        for (size_t k = 0; k < nb; k++) {
                struct part *p = part_get(r, bpart[k]);
                if (!p || p->nposts <= p->attached)
                        continue;
                /* their strings are the tail of post_text */
                p->post_text.len = p->posts[p->attached].entity;
                p->nposts = p->attached;
        }
}

/* Sends the scripts of batches [from, to) as soon as their partition is prepared, so
 * that Redis runs them while this thread prepares the next partitions and decides the
 * earlier ones: the poll costs about max(consumer, Redis) instead of their sum. After
 * a failed send the rest wait for recv_retry, which applies them again. */
static void send_batches(runner_t *r, fls_batch_t **bs, size_t from, size_t to, int *down)
{
        char err[512];

        for (size_t k = from; k < to && !*down; k++) {
                if (fls_store_send(r->store, bs[k], err, sizeof(err)) == 0)
                        continue;
                store_failed(r);
                fls_log(FLS_LOG_WARN, "runner", "%s; will apply the poll again", err);
                *down = 1;
        }
}

/* Waits for batch k's reply. After a Redis error, batches k to nb are applied again
 * with apply_retry (whose replies then all arrive at once: *resent). A batch Redis had
 * run before the error comes back stale, which reloads the offsets: never applied
 * twice. Returns -1 only when asked to stop meanwhile. */
static int recv_retry(runner_t *r, fls_batch_t **bs, size_t k, size_t nb, int *resent,
                      double *waited)
{
        char err[512];
        double t0 = now_s();

        if (*resent)
                return 0;
        if (fls_store_recv(r->store, bs[k], err, sizeof(err)) == 0) {
                *waited += now_s() - t0;
                return 0;
        }
        store_failed(r);
        fls_log(FLS_LOG_WARN, "runner", "%s; applying the rest of the poll again", err);
        *resent = 1;
        return apply_retry(r, bs + k, nb - k);
}

static void count_mirror(runner_t *r)
{
        fls_mirror_stats_t m;

        fls_store_mirror_stats(r->store, &m);
        fls_counter_add(r->m_mhit, (uint64_t)(m.hits - r->mlast.hits));
        fls_counter_add(r->m_mmiss, (uint64_t)(m.misses - r->mlast.misses));
        fls_counter_add(r->m_mdiff, (uint64_t)(m.diffs - r->mlast.diffs));
        fls_gauge_set(r->m_mbytes, (double)m.bytes);
        fls_gauge_set(r->m_mslabs, (double)m.slab_bytes);
        r->mlast = m;
}

static void process(runner_t *r, size_t n)
{
        fls_batch_t *bs[MAX_BATCHES];
        int32_t bpart[MAX_BATCHES];
        int64_t blast[MAX_BATCHES];
        int bro[MAX_BATCHES];
        size_t nb = 0, i = 0;
        int down = 0, resent = 0;
        double t0 = now_s(), t1, waited = 0;
        char err[512];
        rd_kafka_topic_partition_list_t *done;

        r->poll++;
        for (size_t k = 0; k < n; k++)
                r->order[k] = k;
        sort_msgs = r->msgs;
        qsort(r->order, n, sizeof(*r->order), by_partition);

        /* One batch per partition and mode: replayed messages (offset <= applied: their
         * features are in Redis already) first, read-only, then the new ones. */
        while (i < n && nb + 2 < MAX_BATCHES) {
                int32_t pn = r->msgs[r->order[i]]->partition;
                struct part *p = part_get(r, pn);
                int64_t late = 0, expect = p ? p->applied : -1;
                fls_batch_t *b = NULL;
                int ro = -1;
                size_t first = nb;

                for (; i < n && r->msgs[r->order[i]]->partition == pn; i++) {
                        rd_kafka_message_t *m = r->msgs[r->order[i]];
                        avro_value_t *v;
                        fls_event_t ev;
                        if (!p || !p->assigned || p->reseek || m->offset <= p->emitted)
                                continue;
                        fls_counter_add(r->m_in, 1);
                        ev.replay = m->offset <= p->applied;
                        if (ev.replay != ro) {
                                b = batch_at(r, nb);
                                if (!b) {
                                        r->fatal = 1;
                                        return;
                                }
                                fls_batch_begin(b, r->topic, pn, ev.replay);
                                /* The "emitted" mark goes with the attached writes,
                                 * which come first, in the replay batch if any. */
                                if (ev.replay)
                                        fls_batch_offsets(b, p->applied, -1, p->emitted,
                                                          0, 0);
                                if (ro == -1)
                                        posts_attach(p, b);
                                bs[nb] = b;
                                bpart[nb] = pn;
                                bro[nb] = ev.replay;
                                nb++;
                                ro = ev.replay;
                        }
                        blast[nb - 1] = m->offset;
                        if (!check_msg(r, m, &v, &ev.ts))
                                continue;
                        ev.poll = r->poll;
                        ev.partition = pn;
                        ev.offset = m->offset;
                        ev.key = m->key;
                        ev.keylen = m->key_len;
                        ev.late = !ev.replay && ev.ts < p->watermark - r->lateness_ms;
                        if (ev.late) {
                                late++;
                                fls_counter_add(r->m_late, 1);
                        }
                        r->app->update(r->ctx, v, b, &ev);
                        if (!ev.replay && ev.ts > p->watermark)
                                p->watermark = ev.ts;
                }
                if (b && ro == 0)
                        fls_batch_offsets(b, expect, blast[nb - 1], p->emitted,
                                          p->watermark, late);
                send_batches(r, bs, first, nb, &down);
        }
        /* Stopping with scripts sent is a crash at this point: the restart replays
         * what they applied, read-only. */
        if (r->fatal || nb == 0)
                return;

        for (size_t k = 0; k < nb; k++) {
                struct part *p = part_get(r, bpart[k]);
                if (recv_retry(r, bs, k, nb, &resent, &waited)) {
                        abandon(r, bpart, nb); /* stopping: the restart replays it */
                        return;
                }
                if (fls_batch_stale(bs[k])) {
                        fls_counter_add(r->m_stale, 1);
                        fls_log(FLS_LOG_WARN, "runner",
                                "%s [%d]: Redis holds other offsets than this consumer "
                                "wrote; reloading them",
                                r->topic, (int)bpart[k]);
                        p->reseek = 1;
                        posts_drop(p, p->nposts);
                        /* Redis may have lost writes, a counter's too. */
                        fls_claims_forget(r->emit.claims);
                        continue;
                }
                if (p->attached)
                        posts_drop(p, p->attached);
                if (!bro[k])
                        p->applied = blast[k];
                p->e_stored = p->emitted;
                fls_claims_reset(r->emit.claims);
                if (r->app->decide(r->ctx, bs[k], &r->emit, err, sizeof(err))) {
                        abandon(r, bpart, nb);
                        /* A stop while its claims waited for Redis is no error:
                         * the restart replays the poll, as above. Taken as fatal,
                         * the consumer exited 1 and skipped recording what the
                         * earlier polls had emitted. */
                        if (*r->stop) {
                                fls_log(FLS_LOG_INFO, "runner", "%s: %s", r->app->name,
                                        err);
                                return;
                        }
                        fls_log(FLS_LOG_ERROR, "runner", "%s: %s", r->app->name, err);
                        r->fatal = 1;
                        return;
                }
        }
        /* Outputs and dead letters are acknowledged before the batch counts as
         * emitted: a crash before this point replays it. */
        t1 = now_s();
        while (rd_kafka_outq_len(r->producer) > 0 && !*r->stop)
                rd_kafka_flush(r->producer, 100);
        fls_hist_observe(r->m_flush, now_s() - t1);
        if (rd_kafka_outq_len(r->producer) > 0 || r->fatal) {
                /* Not all acknowledged, or a delivery failed (dr_cb): nothing of
                 * this poll may be recorded as emitted, here or when leaving the
                 * group, so that the restart replays it. */
                abandon(r, bpart, nb);
                return;
        }
        if (r->unconfirmed) {
                /* Some outputs were acknowledged only implicitly (dr_cb): replay the
                 * poll's partitions from the "emitted" mark in Redis, read-only, as
                 * after a crash. Costs duplicates with the same ids, never a loss. */
                r->unconfirmed = 0;
                for (size_t k = 0; k < nb; k++)
                        part_get(r, bpart[k])->reseek = 1;
                abandon(r, bpart, nb);
                reseek(r);
                return;
        }

        done = rd_kafka_topic_partition_list_new((int)nb);
        for (size_t k = 0; k < nb; k++) {
                struct part *p = part_get(r, bpart[k]);
                if (p->reseek || blast[k] <= p->emitted)
                        continue;
                p->emitted = blast[k];
                rd_kafka_topic_partition_list_add(done, r->topic, bpart[k])->offset =
                    blast[k] + 1;
        }
        if (done->cnt)
                rd_kafka_offsets_store(r->consumer, done);
        rd_kafka_topic_partition_list_destroy(done);
        reseek(r);
        if (!resent)
                fls_hist_observe(r->m_redis, waited);
        fls_hist_observe(r->m_batch, now_s() - t0);
        count_mirror(r);
}

/* When idle, records in Redis how far outputs were flushed, so that a restart does
 * not replay the last batch. */
static void record_emitted(runner_t *r)
{
        fls_batch_t *bs[MAX_BATCHES];
        int parts[MAX_BATCHES];
        size_t nb = 0;

        for (int i = 0; i < r->nparts && nb < MAX_BATCHES; i++) {
                struct part *p = &r->parts[i];
                if (!p->assigned || p->reseek ||
                    (p->emitted <= p->e_stored && p->nposts == 0))
                        continue;
                bs[nb] = batch_at(r, nb);
                if (!bs[nb])
                        return;
                fls_batch_begin(bs[nb], r->topic, i, 1);
                posts_attach(p, bs[nb]);
                fls_batch_offsets(bs[nb], p->applied, -1, p->emitted, 0, 0);
                parts[nb++] = i;
        }
        if (nb == 0 || apply_retry(r, bs, nb))
                return;
        for (size_t k = 0; k < nb; k++) {
                struct part *p = &r->parts[parts[k]];
                if (fls_batch_stale(bs[k])) {
                        /* Redis lost writes: start over from what it holds. */
                        fls_counter_add(r->m_stale, 1);
                        fls_claims_forget(r->emit.claims);
                        p->reseek = 1;
                        posts_drop(p, p->nposts);
                        continue;
                }
                p->e_stored = p->emitted;
                if (p->attached)
                        posts_drop(p, p->attached);
        }
}

static void update_lag(runner_t *r)
{
        int64_t lag = 0;

        for (int i = 0; i < r->nparts; i++) {
                int64_t lo, hi;
                if (!r->parts[i].assigned)
                        continue;
                if (rd_kafka_get_watermark_offsets(r->consumer, r->topic, i, &lo, &hi) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR &&
                    hi >= 0)
                        lag += hi - (r->parts[i].emitted + 1) > 0
                                   ? hi - (r->parts[i].emitted + 1)
                                   : 0;
        }
        fls_gauge_set(r->m_lag, (double)lag);
}

/* ---- set-up and the loop ----------------------------------------------------- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)rk;
        fls_log(level <= 3   ? FLS_LOG_ERROR
                : level <= 4 ? FLS_LOG_WARN
                             : FLS_LOG_DEBUG,
                "librdkafka", "%s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        runner_t *r = opaque;
        (void)rk;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char buf[512];
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                fls_log(FLS_LOG_ERROR, "runner", "fatal Kafka error: %s", buf);
                r->fatal = 1;
                return;
        }
        fls_log(FLS_LOG_WARN, "librdkafka", "%s", reason);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        runner_t *r = opaque;
        (void)rk;
        if (!m->err && m->offset < 0) {
                /* Success without an offset is librdkafka's implicit ack: a later
                 * request of the partition succeeded while this message waited to
                 * be retried, which a real broker allows only if it was persisted.
                 * The mock cluster does not check idempotent sequences and drops
                 * it (README, Faults): replay the poll rather than trust it. */
                fls_log(FLS_LOG_WARN, "runner",
                        "delivery to %s [%d] acknowledged without an offset; "
                        "replaying the batch",
                        rd_kafka_topic_name(m->rkt), (int)m->partition);
                r->unconfirmed = 1;
        }
        if (m->err) {
                /* The idempotent producer has retried already: a message lost now
                 * would break at-least-once, so the process stops without recording
                 * the batch and a restart replays it. */
                fls_log(FLS_LOG_ERROR, "runner", "delivery to %s failed: %s",
                        rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
                r->fatal = 1;
        }
}

/* Redis restarting while a consumer starts (a node rescheduled, the fault suite's
 * SIGKILL) is not a configuration error: set-up retries with the runtime's backoff
 * for up to STARTUP_REDIS_S, then fails with the last error, so that a wrong host or
 * port still stops start-up. */
#define STARTUP_REDIS_S 30

static fls_store_t *store_open(runner_t *r, char *errstr, size_t errstr_size)
{
        const fls_conf_t *c = r->conf;
        double until = now_s() + STARTUP_REDIS_S;
        int backoff = 50;

        for (;;) {
                fls_store_t *st = fls_store_new(
                    fls_conf_str(c, "redis.host"), (int)fls_conf_int(c, "redis.port"),
                    (int)fls_conf_int(c, "redis.timeout_ms"),
                    fls_conf_str(c, "redis.prefix"), r->app->families, r->lateness_ms,
                    errstr, errstr_size);
                if (st || *r->stop || now_s() + backoff / 1000.0 > until)
                        return st;
                fls_log(FLS_LOG_WARN, "runner", "%s; retrying in %d ms", errstr, backoff);
                nap(r, backoff);
                backoff = backoff * 2 > r->retry_max_ms ? r->retry_max_ms : backoff * 2;
        }
}

static int setup(runner_t *r, char *errstr, size_t errstr_size)
{
        const fls_conf_t *c = r->conf;
        const char *dir = fls_conf_str(c, "schema.dir");
        size_t maxb = (size_t)fls_conf_int(c, "input.max_message_bytes");
        char group[256], err[256];
        rd_kafka_conf_t *kc;
        rd_kafka_topic_partition_list_t *sub;
        rd_kafka_resp_err_t e;
        fls_app_env_t env;
        int port = (int)fls_conf_int(c, "metrics.port"), bound = 0;

        r->topic = fls_conf_str(c, r->app->in_topic_key);
        snprintf(r->dlq_topic, sizeof(r->dlq_topic), "%s%s", r->topic,
                 fls_conf_str(c, "topic.dlq_suffix"));
        r->max_msgs = (int)fls_conf_int(c, "batch.max_messages");
        r->max_ms = (int)fls_conf_int(c, "batch.max_ms");
        r->shutdown_ms = (int)fls_conf_int(c, "shutdown.timeout_ms");
        r->lateness_ms = fls_conf_int(c, "window.lateness_ms");
        r->max_future_ms = fls_conf_int(c, "input.max_future_ms");
        r->min_ts_ms = fls_conf_int(c, "input.min_ts_ms");
        r->retry_max_ms = (int)fls_conf_int(c, "redis.retry_max_ms");
        r->msgs = calloc((size_t)r->max_msgs, sizeof(*r->msgs));
        r->order = calloc((size_t)r->max_msgs, sizeof(*r->order));
        r->metrics = fls_metrics_new();
        if (!r->msgs || !r->order || !r->metrics) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }

        /* Metrics first: the series are registered once and updated lock-free. */
        {
                char lbl[300];
                snprintf(lbl, sizeof(lbl), "topic=\"%s\"", r->topic);
                r->m_in = fls_metrics_counter(r->metrics, "flashstream_events_in_total",
                                              "Input messages consumed.", lbl);
                r->m_late =
                    fls_metrics_counter(r->metrics, "flashstream_late_events_total",
                                        "Events too late for the windows.", lbl);
                r->m_stale = fls_metrics_counter(
                    r->metrics, "flashstream_stale_batches_total",
                    "Batches refused because Redis held other offsets.", lbl);
                r->m_redis_err =
                    fls_metrics_counter(r->metrics, "flashstream_redis_errors_total",
                                        "Failed Redis round trips (retried).", lbl);
                for (int b = 1; b < FLS_BAD__COUNT; b++) {
                        snprintf(lbl, sizeof(lbl), "topic=\"%s\",class=\"%s\"", r->topic,
                                 fls_bad_name((fls_bad_t)b));
                        r->m_bad[b] = fls_metrics_counter(
                            r->metrics, "flashstream_dead_letters_total",
                            "Messages sent to the dead-letter topic, by class.", lbl);
                }
                snprintf(lbl, sizeof(lbl), "topic=\"%s\"",
                         fls_conf_str(c, r->app->out_topic_key));
                r->emit.out =
                    fls_metrics_counter(r->metrics, "flashstream_decisions_out_total",
                                        "Decisions produced.", lbl);
                snprintf(lbl, sizeof(lbl), "topic=\"%s\"", r->topic);
                static const double lat[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                             0.05,   0.1,   0.25,  0.5,   1,    2.5};
                r->m_batch = fls_metrics_hist(r->metrics, "flashstream_batch_seconds",
                                              "Time to process one micro-batch.", lbl,
                                              lat, sizeof(lat) / sizeof(lat[0]));
                r->m_redis = fls_metrics_hist(
                    r->metrics, "flashstream_redis_seconds",
                    "Time a poll spent waiting for its scripts' replies.", lbl, lat,
                    sizeof(lat) / sizeof(lat[0]));
                /* With the two above, where a poll's time goes: the rest is this
                 * process's own work (decode, features, models, policy, encode). */
                r->m_claims =
                    fls_metrics_hist(r->metrics, "flashstream_claims_seconds",
                                     "Time one round of claims on global counters took.",
                                     lbl, lat, sizeof(lat) / sizeof(lat[0]));
                r->m_claims_local = fls_metrics_counter(
                    r->metrics, "flashstream_claims_refused_locally_total",
                    "Claims refused without a round trip: the counter's last value "
                    "seen already refuses them.",
                    lbl);
                r->m_flush = fls_metrics_hist(
                    r->metrics, "flashstream_flush_seconds",
                    "Time a poll waited for its outputs to be acknowledged.", lbl, lat,
                    sizeof(lat) / sizeof(lat[0]));
                r->m_lag = fls_metrics_gauge(r->metrics, "flashstream_consumer_lag",
                                             "Messages behind the end of the assigned "
                                             "partitions.",
                                             lbl);
                r->m_mhit = fls_metrics_counter(
                    r->metrics, "flashstream_mirror_hits_total",
                    "Reads of state answered from the consumer's copy (redis.mirror_mb).",
                    lbl);
                r->m_mmiss =
                    fls_metrics_counter(r->metrics, "flashstream_mirror_misses_total",
                                        "Reads of state sent to Redis.", lbl);
                r->m_mdiff = fls_metrics_counter(
                    r->metrics, "flashstream_mirror_diffs_total",
                    "Reads whose copy differed from Redis (redis.mirror_verify).", lbl);
                r->m_mbytes = fls_metrics_gauge(
                    r->metrics, "flashstream_mirror_bytes",
                    "Blocks the copy's keys use (what redis.mirror_mb bounds).", lbl);
                r->m_mslabs = fls_metrics_gauge(
                    r->metrics, "flashstream_mirror_slab_bytes",
                    "Memory the copy's slabs take: its peak use per block size.", lbl);
        }
        if (port >= 0) {
                if (fls_metrics_serve(r->metrics, fls_conf_str(c, "metrics.host"), port,
                                      &bound, errstr, errstr_size))
                        return -1;
                fls_log(FLS_LOG_INFO, "runner", "metrics on http://%s:%d/metrics",
                        fls_conf_str(c, "metrics.host"), bound);
        }

        r->in = fls_codec_new(dir, r->app->in_subject, 0, maxb, errstr, errstr_size);
        if (!r->in)
                return -1;
        r->out =
            fls_codec_new(dir, r->app->out_subject, 0, 16 << 20, errstr, errstr_size);
        if (!r->out)
                return -1;
        r->store = store_open(r, errstr, errstr_size);
        if (!r->store)
                return -1;
        fls_store_mirror(r->store, (size_t)fls_conf_int(c, "redis.mirror_mb") << 20,
                         fls_conf_bool(c, "redis.mirror_verify"));
        r->gstore = store_open(r, errstr, errstr_size);
        if (!r->gstore)
                return -1;

        env.conf = c;
        env.store = r->store;
        env.metrics = r->metrics;
        env.in = r->in;
        env.out = r->out;
        if (r->app->init(&r->ctx, &env, errstr, errstr_size))
                return -1;

        kc = fls_kafka_conf(c, FLS_KAFKA_PRODUCER, NULL, errstr, errstr_size);
        if (!kc)
                return -1;
        rd_kafka_conf_set_opaque(kc, r);
        rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        rd_kafka_conf_set_log_cb(kc, log_cb);
        r->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!r->producer) {
                rd_kafka_conf_destroy(kc);
                snprintf(errstr, errstr_size, "producer: %s", err);
                return -1;
        }
        r->emit.r = r;
        r->emit.claims = fls_claims_new();
        if (!r->emit.claims) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        r->emit.producer = r->producer;
        r->emit.codec = r->out;
        r->emit.topic = fls_conf_str(c, r->app->out_topic_key);
        r->emit.in_topic = r->topic;
        r->emit.timeout_ms = 30000;
        {
                /* Connect and learn the output topics now, not on the first batch's
                 * clock (it cost ~0.9 s of the first batch's latency). */
                const struct rd_kafka_metadata *md = NULL;
                if (rd_kafka_metadata(r->producer, 1, NULL, &md, 5000) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR &&
                    md)
                        rd_kafka_metadata_destroy(md);
        }

        if (*fls_conf_str(c, "consumer.group"))
                snprintf(group, sizeof(group), "%s", fls_conf_str(c, "consumer.group"));
        else
                snprintf(group, sizeof(group), "flashstream-%s", r->app->name);
        kc = fls_kafka_conf(c, FLS_KAFKA_CONSUMER, group, errstr, errstr_size);
        if (!kc)
                return -1;
        rd_kafka_conf_set_opaque(kc, r);
        rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        rd_kafka_conf_set_log_cb(kc, log_cb);
        r->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!r->consumer) {
                rd_kafka_conf_destroy(kc);
                snprintf(errstr, errstr_size, "consumer: %s", err);
                return -1;
        }
        rd_kafka_poll_set_consumer(r->consumer);
        r->queue = rd_kafka_queue_get_consumer(r->consumer);
        sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, r->topic, RD_KAFKA_PARTITION_UA);
        e = rd_kafka_subscribe(r->consumer, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (e) {
                snprintf(errstr, errstr_size, "subscribe %s: %s", r->topic,
                         rd_kafka_err2str(e));
                return -1;
        }
        fls_log(FLS_LOG_INFO, "runner", "%s consumer started: %s -> %s, group %s",
                r->app->name, r->topic, r->emit.topic, group);
        return 0;
}

/* Leaves the group in two steps: unsubscribe, then serve the queue until the
 * revocation has run, so that close never starts in the middle of a revocation.
 * Messages fetched meanwhile are dropped unprocessed: their offsets were never
 * stored, the next owner reads them. Gives up at the deadline (monotonic seconds). */
static void leave_group(runner_t *r, double deadline)
{
        rd_kafka_unsubscribe(r->consumer);
        while (now_s() < deadline) {
                rd_kafka_topic_partition_list_t *a = NULL;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, 50);
                int left = 1;
                if (m)
                        rd_kafka_message_destroy(m);
                if (rd_kafka_assignment(r->consumer, &a) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    a) {
                        left = a->cnt;
                        rd_kafka_topic_partition_list_destroy(a);
                }
                if (!left)
                        break;
        }
}

/* A consumer whose close was given up: never destroyed (that would wait for the
 * group as the close did), kept reachable until the process exits. */
static rd_kafka_t *abandoned;

/* Closes the consumer by the deadline (monotonic seconds). A close that starts while
 * the group rebalances waits for the JoinGroup or SyncGroup in flight on the
 * coordinator connection, which the broker answers only when the rebalance ends: up
 * to session.timeout.ms after a member was killed, and longer when rebalances follow
 * one another (seen: ~5 s here, over 10 s in CI after a SIGKILLed instance); with
 * the broker gone the close did not return at all (seen: over an hour). Destroying the
 * handle waits for the same answer, so past the deadline the handle is left to the
 * process exit. Nothing is lost: outputs are flushed and what was emitted is recorded in
 * Redis, which is where the next owner starts; the group drops this member by its
 * session time-out instead of by LeaveGroup. */
static void close_consumer(runner_t *r, double deadline)
{
        double t0 = now_s(), t1;
        rd_kafka_queue_t *q = rd_kafka_queue_new(r->consumer);
        rd_kafka_error_t *e;
        int closed = 0;

        /* Whatever was emitted is recorded before leaving the group, so the next
         * owner starts exactly after it. The commit is asynchronous: a synchronous
         * one waits for the coordinator, as the close does. */
        if (!r->fatal && r->store)
                record_emitted(r);
        rd_kafka_commit(r->consumer, NULL, 1);
        leave_group(r, deadline);
        t1 = now_s();
        e = rd_kafka_consumer_close_queue(r->consumer, q);
        if (e) {
                fls_log(FLS_LOG_WARN, "runner", "close: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        } else {
                while (!(closed = rd_kafka_consumer_closed(r->consumer)) &&
                       now_s() < deadline)
                        rd_kafka_queue_poll_callback(q, 50);
        }
        rd_kafka_queue_destroy(q);
        if (r->queue)
                rd_kafka_queue_destroy(r->queue);
        if (closed) {
                rd_kafka_destroy(r->consumer);
                fls_log(FLS_LOG_INFO, "runner", "left the group in %.0f ms",
                        (now_s() - t0) * 1e3);
        } else {
                abandoned = r->consumer;
                fls_log(FLS_LOG_WARN, "runner",
                        "the group did not let this consumer go within "
                        "shutdown.timeout_ms (%d ms; unsubscribed in %.0f ms): exiting "
                        "without it, outputs flushed and offsets recorded; the group "
                        "drops this member after session.timeout.ms",
                        r->shutdown_ms, (t1 - t0) * 1e3);
        }
        r->consumer = NULL;
}

static void teardown(runner_t *r)
{
        double deadline = now_s() + r->shutdown_ms / 1000.0;

        if (r->consumer)
                close_consumer(r, deadline);
        /* Normally empty: every poll waits for its outputs' acks. What is still
         * queued was never recorded as emitted, so a restart sends it again. */
        if (r->producer) {
                double left = deadline - now_s();
                rd_kafka_flush(r->producer, left > 0.1 ? (int)(left * 1e3) : 100);
                rd_kafka_destroy(r->producer);
        }
        if (r->ctx)
                r->app->destroy(r->ctx);
        for (size_t i = 0; i < r->npool; i++)
                fls_batch_destroy(r->pool[i]);
        free(r->pool);
        if (r->store) {
                fls_mirror_stats_t m;
                fls_store_mirror_stats(r->store, &m);
                if (m.hits + m.misses > 0)
                        fls_log(m.diffs ? FLS_LOG_ERROR : FLS_LOG_INFO, "runner",
                                "mirror: %lld reads from memory, %lld from Redis "
                                "(%.1f%%), %zu keys in %.1f MiB held (slabs: %.1f "
                                "MiB); %lld differed from Redis",
                                (long long)m.hits, (long long)m.misses,
                                100.0 * (double)m.hits / (double)(m.hits + m.misses),
                                m.keys, (double)m.bytes / 1048576.0,
                                (double)m.slab_bytes / 1048576.0, (long long)m.diffs);
        }
        fls_store_destroy(r->store);
        fls_store_destroy(r->gstore);
        fls_codec_destroy(r->in);
        fls_codec_destroy(r->out);
        fls_metrics_destroy(r->metrics);
        for (int i = 0; i < r->nparts; i++) {
                free(r->parts[i].posts);
                fls_arena_free(&r->parts[i].post_text);
        }
        fls_claims_destroy(r->emit.claims);
        free(r->parts);
        free(r->msgs);
        free(r->order);
}

int fls_runner_run(const fls_app_t *app, const fls_conf_t *conf, volatile int *stop)
{
        runner_t r;
        char errstr[512];
        int idle = 0;

        memset(&r, 0, sizeof(r));
        { /* before anything slow: a SIGHUP must never kill a consumer */
                struct sigaction sa;
                memset(&sa, 0, sizeof(sa));
                sa.sa_handler = on_hup;
                sa.sa_flags = SA_RESTART;
                sigemptyset(&sa.sa_mask);
                sigaction(SIGHUP, &sa, NULL);
        }
        r.app = app;
        r.conf = conf;
        r.stop = stop;
        if (setup(&r, errstr, sizeof(errstr))) {
                /* A stop while set-up waited for Redis is a stop: exit 0. */
                int stopped = *stop != 0;
                fls_log(stopped ? FLS_LOG_INFO : FLS_LOG_ERROR, "runner", "%s: %s%s",
                        app->name, errstr, stopped ? "; stopping" : "");
                r.fatal = 1;
                teardown(&r);
                return stopped ? 0 : 1;
        }
        while (!*stop && !r.fatal) {
                /* Waits only for the first message, then takes what is queued: the
                 * batch is what arrived while the last one was processed, so it grows
                 * with the load and an event never waits for a batch to fill. */
                ssize_t n = rd_kafka_consume_batch_queue(r.queue, r.max_ms, r.msgs, 1);
                size_t good = 0;
                if (n == 1 && r.max_msgs > 1) {
                        ssize_t more = rd_kafka_consume_batch_queue(
                            r.queue, 0, r.msgs + 1, (size_t)r.max_msgs - 1);
                        if (more > 0)
                                n += more;
                }
                if (n < 0) {
                        fls_log(FLS_LOG_ERROR, "runner", "consume: %s",
                                rd_kafka_err2str(rd_kafka_last_error()));
                        break;
                }
                /* Errors come in-band; keep the messages, drop the events. */
                for (ssize_t k = 0; k < n; k++) {
                        rd_kafka_message_t *m = r.msgs[k];
                        if (m->err) {
                                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                        fls_log(FLS_LOG_WARN, "runner", "consume: %s",
                                                rd_kafka_message_errstr(m));
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        r.msgs[good++] = m;
                }
                serve_reload(&r);
                if (good)
                        process(&r, good);
                for (size_t k = 0; k < good; k++)
                        rd_kafka_message_destroy(r.msgs[k]);
                rd_kafka_poll(r.producer, 0);
                if (good == 0 && ++idle >= 5) {
                        idle = 0;
                        record_emitted(&r);
                        reseek(&r);
                }
                update_lag(&r);
        }
        fls_log(FLS_LOG_INFO, "runner", "%s consumer stopping%s", app->name,
                r.fatal ? " after a fatal error" : "");
        teardown(&r);
        return r.fatal ? 1 : 0;
}
