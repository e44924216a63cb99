/*
 * clickstream: the consumer of storefront events (topic clickstream, keyed by user)
 * and producer of marketing actions (topic marketing-actions, keyed by user). The
 * whole flow Kafka -> Avro -> Redis -> model -> Kafka: rolling per-user, per-SKU and
 * per-category features in Redis, batched scoring with the intent LSTM and the
 * participation forest, and a policy that turns the scores into at most one
 * MarketingAction per event (coupon, reminder or recommendation) under frequency caps
 * and a paced, global coupon budget, plus one event-time sweep per partition and sale
 * that reminds likely participants inactive since the sale began. clickstream.c
 * documents the keys and the rules.
 *
 * Besides the app, the module exposes what tests need to check features and
 * decisions without Kafka: after fls_store_apply, fls_clickstream_prepare computes the
 * features, scores and chosen actions of the events update() queued for a batch.
 */
#ifndef FLS_CLICKSTREAM_H
#define FLS_CLICKSTREAM_H

#include "runner.h"

extern const fls_app_t fls_clickstream_app;

enum { FLS_CLICK_COUPON, FLS_CLICK_REMINDER, FLS_CLICK_RECOMMENDATION, FLS_CLICK_NONE };

#define FLS_CLICK_MAX_RECO 3

/* The features of one event as of that event (whatever else the batch held, see
 * clickstream.c), and what the policy made of them. */
typedef struct fls_click_feat {
        int type;
        int64_t ts;
        int in_sale;
        int64_t n[6];                 /* lifetime counts per ClickEvent type */
        int64_t w1[6], w5[6], w30[6]; /* counts in the 1, 5 and 30 minute windows */
        double cart_value;            /* currency, >= 0 */
        int64_t cart_items;           /* units, >= 0 */
        int64_t session_start; /* earliest event time of the user's current session */
        int64_t session_len_ms;
        int64_t since_last_ms;     /* -1: first event seen */
        int64_t since_purchase_ms; /* -1: never bought */
        double avg_view_price;
        int price_band;    /* 0: <20, 1: <50, 2: <100, 3: <250, 4: more; -1: no view */
        int64_t pre_views; /* views outside any campaign (before the sale) */
        int viewed_sale_sku_pre; /* viewed before the sale and the sale has begun */
        /* The event's SKU in this input partition (see clickstream.c): */
        int64_t sku_view_1m, sku_cart_1m, sku_purchase_1m;
        double sku_conv_5m; /* purchases / views, 5 minutes; 0 without views */
        double sku_trend;   /* last minute / mean minute of the last 10 */
        /* Decision state */
        int64_t last_action_ts; /* -1: none */
        int coupon_taken, reminded;
        int64_t sale_start;  /* learned or configured; -1: not begun here */
        double part_conv_5m; /* partition's purchases / cart adds, 5 minutes */
        /* Scores and the policy's choice. A score no decision reads is NaN (see
         * clickstream.c, "Scoring"); an action sent carries both. */
        float intent, participation;
        double min_intent; /* the coupon threshold after pacing */
        int kind;          /* FLS_CLICK_*, before the budget claim */
        int capped;        /* an action was due but the frequency cap held it */
        int first_cap;     /* ... and the user was never capped before */
        int was_capped;    /* the user was capped before this batch */
        int claim;         /* index of the coupon's budget claim, -1: none */
        const char *reason;
        int nreco;
        char reco[FLS_CLICK_MAX_RECO][64];
        /* The event triggered its partition's "inactive since the sale began" sweep
         * (see clickstream.c): the reminders it sent; -1: no sweep. */
        int sweep_n;
} fls_click_feat_t;

/* Computes features, scores and the policy's choice for the events update() queued
 * with batch b (after fls_store_apply). The caps of earlier events of the same poll
 * are applied; the coupon budget is not (decide claims it; here every coupon counts
 * as granted). */
int fls_clickstream_prepare(void *app, fls_batch_t *b, char *errstr, size_t errstr_size);
size_t fls_clickstream_count(void *app);
const fls_click_feat_t *fls_clickstream_feat(void *app, size_t i);

/* The reminders of the "inactive since the sale began" sweep that an event of the
 * prepared batch triggered (at most one sweep per partition and sale), in the order
 * sent. Valid until the next prepare. */
typedef struct fls_click_rem {
        int32_t partition;
        int64_t offset, ts; /* the triggering event */
        const char *user;
        float participation; /* the user's score at their last event before it */
} fls_click_rem_t;
size_t fls_clickstream_reminders(void *app, const fls_click_rem_t **out);

/* The deferred writes the prepared batch makes (entity snapshots, decision state),
 * which decide() hands to fls_emit_defer. A test without the runner queues them with
 * fls_batch_defer into the partition's next batch. Valid until the next prepare. */
typedef struct fls_click_write {
        int32_t partition;
        fls_defer_kind_t kind;
        const char *entity, *field;
        int64_t i;
        const char *s; /* NULL for MAX/INCR */
} fls_click_write_t;
size_t fls_clickstream_writes(void *app, const fls_click_write_t **w);

#endif
