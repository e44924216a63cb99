/*
 * orders: order lines and stock receipts -> stock movements and sales velocity.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis). The topic is keyed by
 * "sku:warehouse", so all the state of one SKU at one warehouse is in one partition:
 *   sw:<sku>:<warehouse>        lifetime units per event type (u_placed, u_cancelled,
 *                               u_refunded, u_received) and lines per type; kept
 *                               without TTL since they are exact counters
 *   sw:<sku>:<warehouse>:sales  1-minute buckets of units and lines placed, for the
 *                               1/5/15/60-minute velocities
 */
#include "orders.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
        F_EVENT_ID,
        F_TYPE,
        F_ORDER,
        F_USER,
        F_SKU,
        F_WH,
        F_QTY,
        F_PRICE,
        F_REGION,
        F_FLASH,
        F_TS,
        F__N
};
static const char *const field_names[F__N] = {
    "event_id", "type",       "order_id", "user_id",    "sku", "warehouse_id",
    "quantity", "unit_price", "region",   "flash_sale", "ts"};

static const char *const units[] = {"u_placed", "u_cancelled", "u_refunded",
                                    "u_received"};
static const char *const lines[] = {"n_placed", "n_cancelled", "n_refunded",
                                    "n_received"};
static const char *const sales_feats[] = {"units", "lines", NULL};

static const fls_family_t families[] = {
    {"sales", 60000, 60 * 60000, sales_feats, 0},
    {NULL, 0, 0, NULL, 0},
};

typedef struct {
        int idx[F__N];
} orders_t;

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        orders_t *o = calloc(1, sizeof(*o));

        if (!o) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int i = 0; i < F__N; i++) {
                o->idx[i] = fls_codec_field(env->in, field_names[i]);
                if (o->idx[i] < 0) {
                        snprintf(errstr, errstr_size, "OrderEvent has no field '%s'",
                                 field_names[i]);
                        free(o);
                        return -1;
                }
        }
        *appp = o;
        return 0;
}

static void destroy(void *app)
{
        free(app);
}

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        orders_t *o = app;
        size_t slen, wlen;
        const char *sku = fls_avro_str(ev, o->idx[F_SKU], &slen);
        const char *wh = fls_avro_str(ev, o->idx[F_WH], &wlen);
        int32_t qty = fls_avro_int(ev, o->idx[F_QTY]);
        double price = fls_avro_double(ev, o->idx[F_PRICE]);

        if (slen == 0 || wlen == 0) {
                snprintf(detail, detail_size, "empty sku or warehouse_id");
                return FLS_BAD_VALUE;
        }
        if (!key || keylen != slen + 1 + wlen || memcmp(key, sku, slen) != 0 ||
            key[slen] != ':' || memcmp(key + slen + 1, wh, wlen) != 0) {
                snprintf(detail, detail_size, "key is not 'sku:warehouse_id'");
                return FLS_BAD_KEY;
        }
        if (qty <= 0) {
                snprintf(detail, detail_size, "quantity %d is not > 0", (int)qty);
                return FLS_BAD_VALUE;
        }
        if (!isfinite(price) || price < 0) {
                snprintf(detail, detail_size, "unit_price %g is not a finite value >= 0",
                         price);
                return FLS_BAD_VALUE;
        }
        *ts = fls_avro_long(ev, o->idx[F_TS]);
        return FLS_BAD_NONE;
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        orders_t *o = app;
        int type = fls_avro_enum(v, o->idx[F_TYPE]);
        int32_t qty = fls_avro_int(v, o->idx[F_QTY]);
        char ent[300];
        int e, n;

        /* The key is "sku:warehouse" (checked), so it names the entity. */
        n = snprintf(ent, sizeof(ent), "sw:%.*s", (int)ev->keylen, ev->key);
        e = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, e, units[type], qty);
        fls_batch_incr(b, e, lines[type], 1);
        fls_batch_setmax(b, e, "last_ts", ev->ts);
        if (type == 0 && !ev->late) {
                fls_batch_window(b, e, 0, 0, ev->ts, qty);
                fls_batch_window(b, e, 0, 1, ev->ts, 1);
        }
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        /* Restock signals need the demand and inventory models (their own issue);
         * until then this consumer keeps stock and velocity only. */
        (void)app, (void)b, (void)emit, (void)errstr, (void)errstr_size;
        return 0;
}

const fls_app_t fls_orders_app = {
    .name = "orders",
    .in_topic_key = "topic.orders",
    .out_topic_key = "topic.restock_signals",
    .in_subject = "orders-value",
    .out_subject = "restock-signals-value",
    .families = families,
    .conf = NULL,
    .init = init,
    .destroy = destroy,
    .check = check,
    .update = update,
    .decide = decide,
};
