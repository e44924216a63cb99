/*
 * clickstream: storefront events -> rolling user and SKU features.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis). Per event it queues:
 *   u:<user>          lifetime counts per event type (n_<type>), last_ts, last_sku
 *   u:<user>:act      1-minute buckets of each event type, windows up to 30 minutes
 *   s:<sku>           lifetime counts per type, as seen by this input partition
 *   s:<sku>:sku       1-minute buckets of views, cart adds and purchases (10 minutes)
 * The topic is keyed by user, so a user's state lives in one partition; a SKU's
 * counts are spread over the partitions and add up across them (the features
 * query sums them).
 */
#include "clickstream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
        F_EVENT_ID,
        F_USER,
        F_SESSION,
        F_TYPE,
        F_SKU,
        F_CATEGORY,
        F_PRICE,
        F_QTY,
        F_DWELL,
        F_CAMPAIGN,
        F_TS,
        F__N
};
static const char *const field_names[F__N] = {
    "event_id", "user_id",  "session_id", "type",        "sku", "category",
    "price",    "quantity", "dwell_ms",   "campaign_id", "ts"};

/* Event types in schema order: the enum index is the feature index. */
static const char *const types[] = {"view",        "click",    "search", "cart_add",
                                    "cart_remove", "purchase", NULL};
static const char *const lifetime[] = {"n_view",     "n_click",       "n_search",
                                       "n_cart_add", "n_cart_remove", "n_purchase"};
static const char *const sku_feats[] = {"view", "cart_add", "purchase", NULL};

enum { FAM_ACT, FAM_SKU };
static const fls_family_t families[] = {
    {"act", 60000, 30 * 60000, types, 0},
    {"sku", 60000, 10 * 60000, sku_feats, 0},
    {NULL, 0, 0, NULL, 0},
};

typedef struct {
        int idx[F__N];
        int64_t user_ttl_s;
} clickstream_t;

static const fls_conf_def_t conf[] = {
    {"clickstream.user_ttl_s", FLS_CONF_INT, "86400", 60, 31536000,
     "Seconds a user's lifetime features are kept after their last event.", "consume"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        clickstream_t *c = calloc(1, sizeof(*c));

        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int i = 0; i < F__N; i++) {
                c->idx[i] = fls_codec_field(env->in, field_names[i]);
                if (c->idx[i] < 0) {
                        snprintf(errstr, errstr_size, "ClickEvent has no field '%s'",
                                 field_names[i]);
                        free(c);
                        return -1;
                }
        }
        c->user_ttl_s = fls_conf_int(env->conf, "clickstream.user_ttl_s");
        *appp = c;
        return 0;
}

static void destroy(void *app)
{
        free(app);
}

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        clickstream_t *c = app;
        size_t ulen, slen;
        const char *user = fls_avro_str(ev, c->idx[F_USER], &ulen);
        int type = fls_avro_enum(ev, c->idx[F_TYPE]);
        double price = fls_avro_double(ev, c->idx[F_PRICE]);

        fls_avro_str(ev, c->idx[F_SKU], &slen);
        if (ulen == 0) {
                snprintf(detail, detail_size, "empty user_id");
                return FLS_BAD_VALUE;
        }
        if (!key || keylen != ulen || memcmp(key, user, ulen) != 0) {
                snprintf(detail, detail_size, "key is not the user_id");
                return FLS_BAD_KEY;
        }
        if (!isfinite(price) || price < 0) {
                snprintf(detail, detail_size, "price %g is not a finite value >= 0",
                         price);
                return FLS_BAD_VALUE;
        }
        if (fls_avro_int(ev, c->idx[F_QTY]) < 0 ||
            fls_avro_int(ev, c->idx[F_DWELL]) < 0) {
                snprintf(detail, detail_size, "negative quantity or dwell_ms");
                return FLS_BAD_VALUE;
        }
        if (slen == 0 && type != 2 /* SEARCH */) {
                snprintf(detail, detail_size, "empty sku on a %s event", types[type]);
                return FLS_BAD_VALUE;
        }
        *ts = fls_avro_long(ev, c->idx[F_TS]);
        return FLS_BAD_NONE;
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        clickstream_t *c = app;
        char ent[300];
        size_t ulen, slen;
        const char *user = fls_avro_str(v, c->idx[F_USER], &ulen);
        const char *sku = fls_avro_str(v, c->idx[F_SKU], &slen);
        int type = fls_avro_enum(v, c->idx[F_TYPE]);
        int u, s, n;

        n = snprintf(ent, sizeof(ent), "u:%.*s", (int)ulen, user);
        u = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, u, lifetime[type], 1);
        fls_batch_setmax(b, u, "last_ts", ev->ts);
        fls_batch_expire(b, u, c->user_ttl_s);
        if (!ev->late)
                fls_batch_window(b, u, FAM_ACT, type, ev->ts, 1);
        if (slen == 0)
                return;
        fls_batch_set(b, u, "last_sku", sku, slen);
        n = snprintf(ent, sizeof(ent), "s:%.*s", (int)slen, sku);
        s = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, s, lifetime[type], 1);
        fls_batch_expire(b, s, c->user_ttl_s);
        if (ev->late)
                return;
        if (type == 0)
                fls_batch_window(b, s, FAM_SKU, 0, ev->ts, 1);
        else if (type == 3)
                fls_batch_window(b, s, FAM_SKU, 1, ev->ts, 1);
        else if (type == 5)
                fls_batch_window(b, s, FAM_SKU, 2, ev->ts, 1);
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        /* Marketing actions need the intent and participation models (their own
         * issue); until then this consumer keeps features only. */
        (void)app, (void)b, (void)emit, (void)errstr, (void)errstr_size;
        return 0;
}

const fls_app_t fls_clickstream_app = {
    .name = "clickstream",
    .in_topic_key = "topic.clickstream",
    .out_topic_key = "topic.marketing_actions",
    .in_subject = "clickstream-value",
    .out_subject = "marketing-actions-value",
    .families = families,
    .conf = conf,
    .init = init,
    .destroy = destroy,
    .check = check,
    .update = update,
    .decide = decide,
};
