/*
 * runner: the consumer runtime. It owns the whole flow of one consumer process,
 * Kafka -> Avro -> Redis -> model -> Kafka, and knows nothing of any one consumer's
 * domain: a consumer is an fls_app_t (a table of callbacks) that says which features an
 * event changes and which decisions a batch makes.
 *
 * Per micro-batch (what is queued once its first message arrives, up to
 * batch.max_messages): decode and check every message (bad ones go to
 * <topic><dlq_suffix> with the reason in headers),
 * let the app queue its feature updates, send each partition's updates with its offsets
 * as one script as soon as they are queued (Redis runs it while the next partitions are
 * prepared and the earlier ones decided), let the app decide on each reply as it arrives,
 * produce the decisions, flush, and only then record the batch as emitted and store the
 * Kafka offsets.
 */
#ifndef FLS_RUNNER_H
#define FLS_RUNNER_H

#include <avro.h>
#include <stdint.h>

#include "codec.h"
#include "conf.h"
#include "metrics.h"
#include "store.h"

typedef struct fls_emit fls_emit_t;

/* What the runner tells the app about one event. */
typedef struct fls_event {
        int32_t partition;
        int64_t offset;
        int64_t ts;      /* event time, from the app's check() */
        int late;        /* older than watermark - lateness: skip the windows */
        int replay;      /* already applied: the batch is read-only */
        uint64_t poll;   /* increases with every poll: per-poll state resets */
        const char *key; /* message key, not NUL-terminated */
        size_t keylen;
} fls_event_t;

/* What the app gets at init: built once, valid until destroy. */
typedef struct fls_app_env {
        const fls_conf_t *conf;
        fls_store_t *store;
        fls_metrics_t *metrics;
        fls_codec_t *in, *out; /* field indexes: fls_codec_field() */
} fls_app_env_t;

typedef struct fls_app {
        const char *name;          /* "clickstream": consume argument, group suffix */
        const char *in_topic_key;  /* configuration key naming the input topic */
        const char *out_topic_key; /* ... and the output topic */
        const char *in_subject;    /* registry subjects */
        const char *out_subject;
        const fls_family_t *families; /* windowed feature families */
        const fls_conf_def_t *conf;   /* the app's own configuration keys */

        int (*init)(void **appp, const fls_app_env_t *env, char *errstr,
                    size_t errstr_size);
        void (*destroy)(void *app);
        /* Domain checks of a decoded event and its key; sets *ts. A non-NONE class
         * sends the message to the dead-letter topic with detail. */
        fls_bad_t (*check)(void *app, avro_value_t *ev, const char *key, size_t keylen,
                           int64_t *ts, char *detail, size_t detail_size);
        /* Queues the event's feature updates and reads in b (writes are dropped when
         * ev->replay), and remembers what decide() will need. */
        void (*update)(void *app, avro_value_t *value, fls_batch_t *b,
                       const fls_event_t *ev);
        /* After the batch is applied: decisions for the events update() saw with this
         * batch, produced through emit. */
        int (*decide)(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                      size_t errstr_size);
        /* Optional: reloads the app's model files after SIGHUP, between batches. On
         * failure (a missing, corrupt or mismatched file) the app keeps what it had
         * and returns -1 with errstr; the runner logs it and goes on. */
        int (*reload)(void *app, char *errstr, size_t errstr_size);
} fls_app_t;

/* The decision's output value to fill (reset). */
avro_value_t *fls_emit_begin(fls_emit_t *e);
/* Deterministic id of a decision: "<topic>/<partition>/<offset>/<kind>". */
void fls_emit_id(const fls_emit_t *e, int32_t partition, int64_t offset, const char *kind,
                 char *buf, size_t size);
/* Encodes the value filled since fls_emit_begin and produces it, keyed. */
int fls_emit_send(fls_emit_t *e, const char *key, size_t keylen, char *errstr,
                  size_t errstr_size);

/* A write to the partition's state that a decision makes (a user's last action, a
 * signal's state): applied with the partition's next script call, atomically with the
 * mark that this batch's outputs were flushed (see fls_batch_defer). Strings are
 * copied. */
void fls_emit_defer(fls_emit_t *e, int32_t partition, const char *entity,
                    fls_defer_kind_t kind, const char *field, int64_t i, const char *s);
/* Claims on global counters for this batch's decisions: queue them on
 * fls_emit_claims(), run them with fls_emit_claims_run() (one round trip, retried
 * while Redis is down; -1 only when the process is stopping), then read the results.
 * The runner resets the claims before every decide(). fls_emit_claim queues one,
 * named by the input event it decides on (its id is fls_emit_id's); returns its index. */
fls_claims_t *fls_emit_claims(fls_emit_t *e);
int fls_emit_claim(fls_emit_t *e, const char *counter, int32_t partition, int64_t offset,
                   const char *kind, int64_t amount, int64_t limit);
int fls_emit_claims_run(fls_emit_t *e);

/* Runs the app until SIGINT/SIGTERM (or *stop becomes non-zero); returns the exit
 * status: 0 after a clean shutdown, 1 after a fatal error (logged). */
int fls_runner_run(const fls_app_t *app, const fls_conf_t *conf, volatile int *stop);

#endif
