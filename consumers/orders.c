/*
 * orders: order lines and stock receipts -> stock, sales velocity, demand forecasts
 * and restock signals.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis -> models -> Kafka). The topic
 * is keyed by "sku:warehouse", so all the state of one SKU at one warehouse is in one
 * partition:
 *   sw:<sku>:<warehouse>        stock (never negative: fls_batch_stock, TAKE on
 *                               PLACED, GIVE on CANCELLED/REFUNDED, ADD on receipts),
 *                               oversold (units ordered that stock could not serve),
 *                               lifetime units and lines per event type (u_placed =
 *                               units sold, exact under replay), last_ts, and the
 *                               signal state (sig_kind, sig_level, sig_qty, peak_r5)
 *                               written by decisions through fls_emit_defer
 *   sw:<sku>:<warehouse>:ledger what each order line took (the stock ledger)
 *   sw:<sku>:<warehouse>:sales  1-minute buckets of units and lines placed: the
 *                               1/5/15/60-minute velocities and the per-interval
 *                               history the demand LSTM reads
 *
 * Decisions, per batch on the SKUs it touched: one LSTM call forecasts demand over
 * the next FLS_DSIM_H minutes (task_demand_sim), one regression call turns forecast,
 * rates, trend and the warehouse's cover (lead time + safety) into units needed
 * (task_inventory). The projected rate is the larger of need / cover and the fastest
 * recent velocity (the last complete minute, or the current minute so far: the models
 * read complete minutes only and lag a spike by up to a minute, which is more than a
 * sale's stock lasts), less orders.velocity_z times its Poisson noise. Stock runs out
 * in on_hand / rate; the recommended quantity orders up to orders.order_up_to covers at
 * the velocity's point estimate (if larger). A RestockSignal goes out, keyed
 * sku:warehouse, when stock runs out before the cover, with urgency LOW (before the
 * cover), MEDIUM (before the lead time), HIGH (before half of it), CRITICAL (out of stock
 * now). Hysteresis: one signal per crossing; a new one only when urgency rises or the
 * recommended quantity moves by more than orders.requantity_share; RESOLVED when stock
 * comes back (receipt, cancellation, refund) and the need is gone; when a receipt brings
 * stock that still runs out before the cover, a new episode opens at the lower urgency
 * (orders.rearm_on_receipt), so that the next run-out is warned from the receipt on, a
 * lead time ahead where it can be. OVERSTOCK once per episode when, after the SKU's
 * 5-minute rate has fallen from its peak, stock covers far more than the need.
 *
 * The stock ledger is kept per order: what an order's lines took of this SKU at this
 * warehouse adds up, and a cancellation or refund gives back up to its quantity of
 * that (a line that was oversold took nothing and gives nothing back).
 */
#include "orders.h"

#include "arena.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_demand_sim.h"
#include "task_inventory.h"

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

enum { T_PLACED, T_CANCELLED, T_REFUNDED, T_RECEIPT };
static const char *const units[] = {"u_placed", "u_cancelled", "u_refunded",
                                    "u_received"};
static const char *const lines[] = {"n_placed", "n_cancelled", "n_refunded",
                                    "n_received"};
static const char *const sales_feats[] = {"units", "lines", NULL};

static const fls_family_t families[] = {
    {"sales", 60000, 60 * 60000, sales_feats, 0},
    {NULL, 0, 0, NULL, 0},
};

/* Output fields, in RestockSignal order. */
enum {
        O_ID,
        O_SKU,
        O_WH,
        O_KIND,
        O_ON_HAND,
        O_OVERSOLD,
        O_FORECAST,
        O_QTY,
        O_URGENCY,
        O_STOCKOUT,
        O_VERSIONS,
        O_REASON,
        O_EVENT_TS,
        O__N
};
static const char *const out_names[O__N] = {
    "signal_id",      "sku",      "warehouse_id",    "kind",    "on_hand",
    "oversold",       "forecast", "recommended_qty", "urgency", "stockout_ts",
    "model_versions", "reason",   "event_ts"};
enum { K_NONE = -1, K_RESTOCK = 0, K_OVERSTOCK = 1, K_RESOLVED = 2 };
static const char *const kind_names[] = {"restock", "overstock", "resolved"};
enum { U_NONE = -1, U_LOW, U_MEDIUM, U_HIGH, U_CRITICAL };

#define DEF_DIR FLS_MODEL_DIR

static const fls_conf_def_t conf[] = {
    {"orders.demand_model", FLS_CONF_STR, DEF_DIR "/demand-sim.flsm", 1, 0,
     "Demand LSTM (flashstream train demand-sim).", "consume"},
    {"orders.inventory_model", FLS_CONF_STR, DEF_DIR "/inventory.flsm", 1, 0,
     "Stock-needed regression (flashstream train inventory).", "consume"},
    {"orders.lead_time_s", FLS_CONF_INT, "120", 1, 31536000,
     "Seconds from a restock signal to stock on the shelf, for warehouses not in "
     "orders.lead_time_by_warehouse.",
     "consume"},
    {"orders.lead_time_by_warehouse", FLS_CONF_STR, "", 1, 0,
     "Per-warehouse lead times, 'w1=300,w2=90' (seconds).", "consume"},
    {"orders.safety_s", FLS_CONF_INT, "60", 0, 31536000,
     "Safety period added to the lead time: signal when stock runs out before both.",
     "consume"},
    {"orders.order_up_to", FLS_CONF_DBL, "1", 1, 100,
     "Recommended quantity: order up to this many covers of the projected need (the "
     "larger of the models' need and the velocity's).",
     "consume"},
    {"orders.velocity_weight", FLS_CONF_DBL, "1", 0, 100,
     "Projection rate: at least this share of the fastest recent velocity (the last "
     "complete minute, or the current minute so far), so that a spike the forecast "
     "has not seen yet (complete minutes lag it) still projects the run-out; 0: the "
     "models alone.",
     "consume"},
    {"orders.velocity_min_s", FLS_CONF_INT, "20", 1, 60,
     "The current minute's velocity is taken over at least this many seconds, which "
     "damps the noise of its first sales.",
     "consume"},
    {"orders.velocity_min_units", FLS_CONF_INT, "2", 0, 1000000000,
     "... and only from a minute with at least this many units sold.", "consume"},
    {"orders.velocity_z", FLS_CONF_DBL, "1.5", 0, 10,
     "The trigger's velocity counts n - z sqrt(n) of the n units sold (a Poisson lower "
     "bound: a burst of a few orders is mostly noise, a minute of many is not); the "
     "recommended quantity counts n. 0: n for both.",
     "consume"},
    {"orders.rearm_on_receipt", FLS_CONF_BOOL, "true", 1, 0,
     "A receipt that leaves an open restock need at a lower urgency opens a new "
     "episode there (one signal), so the next run-out is warned from the receipt on; "
     "false: the episode stays at its highest urgency until the need is gone.",
     "consume"},
    {"orders.requantity_share", FLS_CONF_DBL, "0.5", 0, 100,
     "An open signal is repeated only when urgency rises or the recommended quantity "
     "moves by more than this share.",
     "consume"},
    {"orders.overstock_factor", FLS_CONF_DBL, "4", 1, 1000,
     "Overstock when stock exceeds this many times the need over the cover ...",
     "consume"},
    {"orders.overstock_min_units", FLS_CONF_INT, "20", 0, 1000000000,
     "... and at least this many units ...", "consume"},
    {"orders.peak_ratio", FLS_CONF_DBL, "0.5", 0, 1,
     "... after the sale peak: the 5-minute rate is below this share of its peak.",
     "consume"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* What decide() needs of one touched sku:warehouse in one batch. */
struct pending {
        fls_batch_t *batch;
        int32_t partition;
        int64_t offset, ts; /* the entity's last event in the batch */
        int read_h, read_ring;
        int restored;               /* stock came back in this batch */
        int received;               /* ... by a stock receipt */
        size_t key, keylen, skulen; /* "sku:wh" in text */
        int ent;
};

/* The signal state of an entity, as stored or as decided earlier in this poll. */
struct sigstate {
        int kind, level;
        int64_t qty;
};

/* Decided-in-this-poll state by entity key: a replayed batch and a new batch of one
 * partition can both be decided in one poll, before the first's deferred writes are
 * in Redis. */
struct overlay {
        size_t key, keylen; /* in text; keylen 0 = empty */
        struct sigstate st;
};

typedef struct {
        int idx[F__N], out[O__N];
        const fls_store_t *store;
        fls_model_t *demand, *inventory;
        char demand_path[512], inventory_path[512];
        char versions[256];
        int64_t lead_ms, safety_ms;
        char *lead_map; /* "w1=300,w2=90" */
        double order_up_to, requantity, over_factor, peak_ratio, vel_weight, vel_z;
        int64_t over_min, vel_min_ms, vel_min_units;
        int rearm;
        int slots;
        /* per poll */
        uint64_t poll;
        struct pending *pend;
        size_t npend, pend_cap;
        fls_arena_t text; /* strings decide() needs, per poll */
        struct overlay *ov;
        size_t ov_cap;
        /* per batch: entity key index -> pending index + 1 */
        fls_batch_t *cur;
        size_t cur_first;
        int *ent2p;
        size_t ent2p_cap;
        /* scoring scratch, sized at init for batch.max_messages rows */
        size_t max_rows;
        float *xd, *xi, *fc, *need;
        int64_t *ring_bucket, *ring_units, *ring_lines;
} orders_t;

/* ---- set-up ------------------------------------------------------------------------ */

static fls_model_t *load_model(const char *path, const char *const *names, size_t n,
                               size_t seq, size_t rows, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(path, errstr, errstr_size);
        if (!m)
                return NULL;
        if (fls_model_check_features(m, names, n, errstr, errstr_size) < 0 ||
            fls_model_seq_len(m) != seq ||
            fls_model_reserve(m, rows, errstr, errstr_size) < 0) {
                if (fls_model_seq_len(m) != seq)
                        snprintf(errstr, errstr_size,
                                 "%s: sequence length %zu, %zu expected", path,
                                 fls_model_seq_len(m), seq);
                fls_model_destroy(m);
                return NULL;
        }
        return m;
}

/* The reload callback: both files are loaded and checked before either replaces
 * the one serving, so a bad file changes nothing. */
static int reload(void *app, char *errstr, size_t errstr_size)
{
        orders_t *o = app;
        fls_model_t *d, *inv;

        d = load_model(o->demand_path, fls_dsim_feature_names(), FLS_DSIM_NF, FLS_DSIM_T,
                       o->max_rows, errstr, errstr_size);
        if (!d)
                return -1;
        inv = load_model(o->inventory_path, fls_inv_feature_names(), FLS_INV_NF, 1,
                         o->max_rows, errstr, errstr_size);
        if (!inv) {
                fls_model_destroy(d);
                return -1;
        }
        fls_model_destroy(o->demand);
        fls_model_destroy(o->inventory);
        o->demand = d;
        o->inventory = inv;
        snprintf(o->versions, sizeof(o->versions), "%s@%s,%s@%s", fls_model_name(d),
                 fls_model_version(d), fls_model_name(inv), fls_model_version(inv));
        return 0;
}

static void destroy(void *app)
{
        orders_t *o = app;
        if (!o)
                return;
        fls_model_destroy(o->demand);
        fls_model_destroy(o->inventory);
        free(o->lead_map);
        free(o->pend);
        fls_arena_free(&o->text);
        free(o->ov);
        free(o->ent2p);
        free(o->xd);
        free(o->xi);
        free(o->fc);
        free(o->need);
        free(o->ring_bucket);
        free(o->ring_units);
        free(o->ring_lines);
        free(o);
}

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        orders_t *o = calloc(1, sizeof(*o));
        const fls_conf_t *c = env->conf;
        size_t rows;

        if (!o) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        if (fls_codec_fields(env->in, field_names, F__N, o->idx, errstr, errstr_size) ||
            fls_codec_fields(env->out, out_names, O__N, o->out, errstr, errstr_size))
                goto fail;
        o->store = env->store;
        o->lead_ms = fls_conf_int(c, "orders.lead_time_s") * 1000;
        o->safety_ms = fls_conf_int(c, "orders.safety_s") * 1000;
        o->lead_map = strdup(fls_conf_str(c, "orders.lead_time_by_warehouse"));
        o->order_up_to = fls_conf_dbl(c, "orders.order_up_to");
        o->requantity = fls_conf_dbl(c, "orders.requantity_share");
        o->over_factor = fls_conf_dbl(c, "orders.overstock_factor");
        o->over_min = fls_conf_int(c, "orders.overstock_min_units");
        o->peak_ratio = fls_conf_dbl(c, "orders.peak_ratio");
        o->vel_weight = fls_conf_dbl(c, "orders.velocity_weight");
        o->vel_min_ms = fls_conf_int(c, "orders.velocity_min_s") * 1000;
        o->vel_min_units = fls_conf_int(c, "orders.velocity_min_units");
        o->vel_z = fls_conf_dbl(c, "orders.velocity_z");
        o->rearm = fls_conf_bool(c, "orders.rearm_on_receipt");
        o->slots = fls_store_family_slots(env->store, 0);
        rows = (size_t)fls_conf_int(c, "batch.max_messages");
        o->max_rows = rows;
        snprintf(o->demand_path, sizeof(o->demand_path), "%s",
                 fls_conf_str(c, "orders.demand_model"));
        snprintf(o->inventory_path, sizeof(o->inventory_path), "%s",
                 fls_conf_str(c, "orders.inventory_model"));
        o->demand =
            load_model(fls_conf_str(c, "orders.demand_model"), fls_dsim_feature_names(),
                       FLS_DSIM_NF, FLS_DSIM_T, rows, errstr, errstr_size);
        if (!o->demand)
                goto fail;
        o->inventory =
            load_model(fls_conf_str(c, "orders.inventory_model"), fls_inv_feature_names(),
                       FLS_INV_NF, 1, rows, errstr, errstr_size);
        if (!o->inventory)
                goto fail;
        snprintf(o->versions, sizeof(o->versions), "%s@%s,%s@%s",
                 fls_model_name(o->demand), fls_model_version(o->demand),
                 fls_model_name(o->inventory), fls_model_version(o->inventory));
        /* Scratch for the largest batch: the per-batch path never allocates for it. */
        o->xd = malloc(rows * FLS_DSIM_T * FLS_DSIM_NF * sizeof(float));
        o->xi = malloc(rows * FLS_INV_NF * sizeof(float));
        o->fc = malloc(rows * sizeof(float));
        o->need = malloc(rows * sizeof(float));
        o->ring_bucket = malloc((size_t)o->slots * sizeof(int64_t));
        o->ring_units = malloc((size_t)o->slots * sizeof(int64_t));
        o->ring_lines = malloc((size_t)o->slots * sizeof(int64_t));
        if (!o->lead_map || !o->xd || !o->xi || !o->fc || !o->need || !o->ring_bucket ||
            !o->ring_units || !o->ring_lines) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        *appp = o;
        return 0;
fail:
        destroy(o);
        return -1;
}

/* Lead time of a warehouse: its entry in orders.lead_time_by_warehouse, else the
 * default. Parsed per decision from a short string (a few warehouses). */
static int64_t lead_of(const orders_t *o, const char *wh, size_t len)
{
        const char *p = o->lead_map;
        while (p && *p) {
                const char *eq = strchr(p, '='), *end = strchr(p, ',');
                if (!eq || (end && eq > end))
                        break;
                if ((size_t)(eq - p) == len && memcmp(p, wh, len) == 0) {
                        long long s = strtoll(eq + 1, NULL, 10);
                        if (s > 0)
                                return (int64_t)s * 1000;
                }
                p = end ? end + 1 : NULL;
        }
        return o->lead_ms;
}

/* ---- check / update -------------------------------------------------------------- */

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        orders_t *o = app;
        size_t slen, wlen, olen;
        const char *sku = fls_avro_str(ev, o->idx[F_SKU], &slen);
        const char *wh = fls_avro_str(ev, o->idx[F_WH], &wlen);
        int type = fls_avro_enum(ev, o->idx[F_TYPE]);
        int32_t qty = fls_avro_int(ev, o->idx[F_QTY]);
        double price = fls_avro_double(ev, o->idx[F_PRICE]);

        fls_avro_str(ev, o->idx[F_ORDER], &olen);
        if (slen == 0 || wlen == 0) {
                snprintf(detail, detail_size, "empty sku or warehouse_id");
                return FLS_BAD_VALUE;
        }
        if (slen + wlen > 200 || olen > 100) {
                snprintf(detail, detail_size, "sku, warehouse_id or order_id too long");
                return FLS_BAD_VALUE;
        }
        if (!key || keylen != slen + 1 + wlen || memcmp(key, sku, slen) != 0 ||
            key[slen] != ':' || memcmp(key + slen + 1, wh, wlen) != 0) {
                snprintf(detail, detail_size, "key is not 'sku:warehouse_id'");
                return FLS_BAD_KEY;
        }
        if (type < T_PLACED || type > T_RECEIPT) {
                snprintf(detail, detail_size, "type %d out of range", type);
                return FLS_BAD_ENUM;
        }
        if (type != T_RECEIPT && olen == 0) {
                snprintf(detail, detail_size, "order line without order_id");
                return FLS_BAD_VALUE;
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
        size_t olen, slen;
        const char *order = fls_avro_str(v, o->idx[F_ORDER], &olen);
        char ent[300], ref[160];
        struct pending *p;
        int e, n, rn;

        fls_avro_str(v, o->idx[F_SKU], &slen);
        if (o->poll != ev->poll || o->cur != b) {
                /* A new batch: forget the previous batch's entity indexes. */
                for (size_t k = o->cur_first; k < o->npend; k++)
                        o->ent2p[o->pend[k].ent] = 0;
                o->cur = b;
                o->cur_first = o->npend;
        }
        if (o->poll != ev->poll) {
                /* A new poll: every batch of the previous one was decided. */
                o->poll = ev->poll;
                o->npend = 0;
                o->cur_first = 0;
                fls_arena_reset(&o->text);
                for (size_t k = 0; k < o->ov_cap; k++)
                        o->ov[k].keylen = 0;
        }

        /* The key is "sku:warehouse" (checked), so it names the entity. */
        n = snprintf(ent, sizeof(ent), "sw:%.*s", (int)ev->keylen, ev->key);
        e = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, e, units[type], qty);
        fls_batch_incr(b, e, lines[type], 1);
        fls_batch_setmax(b, e, "last_ts", ev->ts);
        switch (type) {
        case T_PLACED:
                rn = snprintf(ref, sizeof(ref), "%.*s", (int)olen, order);
                fls_batch_stock(b, e, FLS_STOCK_TAKE, "stock", ref, (size_t)rn, qty,
                                "oversold");
                if (!ev->late) {
                        fls_batch_window(b, e, 0, 0, ev->ts, qty);
                        fls_batch_window(b, e, 0, 1, ev->ts, 1);
                }
                break;
        case T_CANCELLED:
        case T_REFUNDED:
                rn = snprintf(ref, sizeof(ref), "%.*s", (int)olen, order);
                fls_batch_stock(b, e, FLS_STOCK_GIVE, "stock", ref, (size_t)rn, qty,
                                "oversold");
                break;
        default:
                fls_batch_stock(b, e, FLS_STOCK_ADD, "stock", "", 0, qty, "oversold");
                break;
        }

        if ((size_t)e >= o->ent2p_cap) {
                size_t old = o->ent2p_cap;
                o->ent2p = fls_grow(o->ent2p, &o->ent2p_cap, (size_t)e + 1, sizeof(int));
                memset(o->ent2p + old, 0, (o->ent2p_cap - old) * sizeof(int));
        }
        if (o->ent2p[e]) {
                p = &o->pend[o->ent2p[e] - 1];
        } else {
                o->pend = fls_grow(o->pend, &o->pend_cap, o->npend + 1, sizeof(*o->pend));
                p = &o->pend[o->npend++];
                o->ent2p[e] = (int)o->npend;
                memset(p, 0, sizeof(*p));
                p->batch = b;
                p->ent = e;
                p->partition = ev->partition;
                p->read_h = fls_batch_read(b, e, -1);
                p->read_ring = fls_batch_read(b, e, 0);
                p->key = fls_arena_add(&o->text, ev->key, ev->keylen);
                p->keylen = ev->keylen;
                p->skulen = slen;
        }
        p->offset = ev->offset;
        if (ev->ts > p->ts)
                p->ts = ev->ts;
        if (type != T_PLACED)
                p->restored = 1;
        if (type == T_RECEIPT)
                p->received = 1;
}

/* ---- decide ---------------------------------------------------------------------- */

/* Per-bucket units and lines of a ring reply, by parsing the layout store.h documents
 * ("#<slot>" holds the bucket, "<feature>@<slot>" the counts) in one pass. */
static void ring_load(orders_t *o, const fls_hash_t *ring)
{
        for (int s = 0; s < o->slots; s++) {
                o->ring_bucket[s] = -1;
                o->ring_units[s] = o->ring_lines[s] = 0;
        }
        for (size_t i = 0; ring && i < ring->n; i++) {
                const char *f = ring->fields[i], *at;
                long s;
                if (f[0] == '#') {
                        s = strtol(f + 1, NULL, 10);
                        if (s >= 0 && s < o->slots)
                                o->ring_bucket[s] = strtoll(ring->values[i], NULL, 10);
                        continue;
                }
                at = strchr(f, '@');
                if (!at)
                        continue;
                s = strtol(at + 1, NULL, 10);
                if (s < 0 || s >= o->slots)
                        continue;
                if (at - f == 5 && memcmp(f, "units", 5) == 0)
                        o->ring_units[s] = strtoll(ring->values[i], NULL, 10);
                else if (at - f == 5 && memcmp(f, "lines", 5) == 0)
                        o->ring_lines[s] = strtoll(ring->values[i], NULL, 10);
        }
}

static int64_t ring_at(const orders_t *o, const int64_t *vals, int64_t bucket)
{
        int64_t s = bucket % o->slots;
        if (bucket < 0 || o->ring_bucket[s] != bucket)
                return 0;
        return vals[s];
}

/* Units per ms: the faster of the last complete minute (u_last units) and the current
 * one so far (u_now units in in_min ms, taken over at least orders.velocity_min_s),
 * each from orders.velocity_min_units units up and less z times its Poisson noise. */
static double velocity(const orders_t *o, int64_t u_last, int64_t u_now, int64_t in_min,
                       double z)
{
        double a = 0, b = 0;
        if (u_last >= o->vel_min_units && u_last > 0)
                a = ((double)u_last - z * sqrt((double)u_last)) / 60000.0;
        if (u_now >= o->vel_min_units && u_now > 0)
                b = ((double)u_now - z * sqrt((double)u_now)) /
                    (double)(in_min > o->vel_min_ms ? in_min : o->vel_min_ms);
        a = a > b ? a : b;
        return a > 0 ? a : 0;
}

static struct overlay *ov_find(orders_t *o, const char *key, size_t len, int create)
{
        uint64_t h = 1469598103934665603ULL;
        size_t i;
        if (o->ov_cap == 0) {
                o->ov_cap = 1;
                while (o->ov_cap < 2 * o->max_rows + 16)
                        o->ov_cap *= 2;
                o->ov = calloc(o->ov_cap, sizeof(*o->ov));
                if (!o->ov)
                        abort(); /* once, at the first decision */
        }
        for (size_t k = 0; k < len; k++)
                h = (h ^ (unsigned char)key[k]) * 1099511628211ULL;
        for (i = h & (o->ov_cap - 1);; i = (i + 1) & (o->ov_cap - 1)) {
                struct overlay *v = &o->ov[i];
                if (v->keylen == 0)
                        return create ? v : NULL;
                if (v->keylen == len && memcmp(o->text.buf + v->key, key, len) == 0)
                        return v;
        }
}

static int emit_signal(orders_t *o, fls_emit_t *emit, const struct pending *p, int kind,
                       int urgency, int64_t on_hand, int64_t oversold, double forecast,
                       int64_t qty, int64_t stockout_ts, const char *reason, char *errstr,
                       size_t errstr_size)
{
        const char *key = o->text.buf + p->key;
        avro_value_t *out = fls_emit_begin(emit);
        char id[512];

        fls_emit_id(emit, p->partition, p->offset, kind_names[kind], id, sizeof(id));
        if (fls_avro_set_str(out, o->out[O_ID], id, strlen(id)) ||
            fls_avro_set_str(out, o->out[O_SKU], key, p->skulen) ||
            fls_avro_set_str(out, o->out[O_WH], key + p->skulen + 1,
                             p->keylen - p->skulen - 1) ||
            fls_avro_set_enum(out, o->out[O_KIND], kind) ||
            fls_avro_set_long(out, o->out[O_ON_HAND], on_hand) ||
            fls_avro_set_long(out, o->out[O_OVERSOLD], oversold) ||
            fls_avro_set_double(out, o->out[O_FORECAST], forecast) ||
            fls_avro_set_long(out, o->out[O_QTY], qty) ||
            fls_avro_set_enum(out, o->out[O_URGENCY], urgency < 0 ? 0 : urgency) ||
            fls_avro_set_long(out, o->out[O_STOCKOUT], stockout_ts) ||
            fls_avro_set_str(out, o->out[O_VERSIONS], o->versions, strlen(o->versions)) ||
            fls_avro_set_str(out, o->out[O_REASON], reason, strlen(reason)) ||
            fls_avro_set_long(out, o->out[O_EVENT_TS], p->ts)) {
                snprintf(errstr, errstr_size, "building RestockSignal: %s",
                         avro_strerror());
                return -1;
        }
        return fls_emit_send(emit, key, p->keylen, errstr, errstr_size);
}

static void defer_state(orders_t *o, fls_emit_t *emit, const struct pending *p,
                        const struct sigstate *st)
{
        char ent[300], v[32];
        snprintf(ent, sizeof(ent), "sw:%.*s", (int)p->keylen, o->text.buf + p->key);
        snprintf(v, sizeof(v), "%d", st->kind);
        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_SET, "sig_kind", 0, v);
        snprintf(v, sizeof(v), "%d", st->level);
        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_SET, "sig_level", 0, v);
        snprintf(v, sizeof(v), "%" PRId64, st->qty);
        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_SET, "sig_qty", 0, v);
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        orders_t *o = app;
        size_t first = o->npend, n = 0, k;

        /* This batch's pending entries are contiguous (update() sees one batch after
         * the other). */
        for (k = 0; k < o->npend; k++)
                if (o->pend[k].batch == b) {
                        first = k;
                        break;
                }
        while (first + n < o->npend && o->pend[first + n].batch == b)
                n++;
        if (n == 0)
                return 0;
        if (n > o->max_rows)
                n = o->max_rows; /* cannot happen: one entry per event at most */

        /* Rows of both models for every touched entity, then one call per model. */
        for (k = 0; k < n; k++) {
                struct pending *p = &o->pend[first + k];
                const fls_hash_t *h = fls_batch_reply(b, p->read_h);
                int64_t b0 = p->ts / 60000, s60 = 0;
                float u[FLS_DSIM_T], l[FLS_DSIM_T];

                ring_load(o, fls_batch_reply(b, p->read_ring));
                for (int t = 0; t < FLS_DSIM_T; t++) {
                        int64_t bk = b0 - FLS_DSIM_T + t;
                        u[t] = (float)ring_at(o, o->ring_units, bk);
                        l[t] = (float)ring_at(o, o->ring_lines, bk);
                }
                for (int t = 1; t <= FLS_DSIM_LONG; t++)
                        s60 += ring_at(o, o->ring_units, b0 - t);
                fls_dsim_row(u, l, (float)s60 / FLS_DSIM_LONG,
                             (float)fls_hash_int(h, "stock", 0),
                             o->xd + k * FLS_DSIM_T * FLS_DSIM_NF);
        }
        if (fls_model_predict(o->demand, o->xd, n, o->fc, errstr, errstr_size) < 0)
                return -1;
        for (k = 0; k < n; k++) {
                struct pending *p = &o->pend[first + k];
                const char *key = o->text.buf + p->key;
                int64_t b0 = p->ts / 60000;
                float r1, r5 = 0, r15 = 0, r60 = 0;
                double cover;

                ring_load(o, fls_batch_reply(b, p->read_ring));
                r1 = (float)ring_at(o, o->ring_units, b0 - 1);
                for (int t = 1; t <= 60; t++) {
                        float x = (float)ring_at(o, o->ring_units, b0 - t);
                        r5 += t <= 5 ? x : 0;
                        r15 += t <= 15 ? x : 0;
                        r60 += x;
                }
                if (o->fc[k] < 0 || !isfinite(o->fc[k]))
                        o->fc[k] = 0;
                cover =
                    (double)(lead_of(o, key + p->skulen + 1, p->keylen - p->skulen - 1) +
                             o->safety_ms) /
                    60000.0;
                fls_inv_row(o->fc[k], r1, r5 / 5, r15 / 15, r60 / 60, (float)cover,
                            o->xi + k * FLS_INV_NF);
        }
        if (fls_model_predict(o->inventory, o->xi, n, o->need, errstr, errstr_size) < 0)
                return -1;

        for (k = 0; k < n; k++) {
                struct pending *p = &o->pend[first + k];
                const fls_hash_t *h = fls_batch_reply(b, p->read_h);
                const char *key = o->text.buf + p->key;
                int64_t lead = lead_of(o, key + p->skulen + 1, p->keylen - p->skulen - 1);
                double cover = (double)(lead + o->safety_ms);
                int64_t on_hand = fls_hash_int(h, "stock", 0);
                int64_t oversold = fls_hash_int(h, "oversold", 0);
                double need = o->need[k] > 0 && isfinite(o->need[k]) ? o->need[k] : 0;
                double rate, t_out, vel;
                int64_t stockout, want, rec;
                int level = U_NONE;
                struct sigstate st, was;
                struct overlay *ov = ov_find(o, key, p->keylen, 1);
                double r5 = 0, peak;
                int64_t b0 = p->ts / 60000, in_min, u_last, u_now;
                int kind = K_NONE;
                const char *reason = NULL;

                ring_load(o, fls_batch_reply(b, p->read_ring));
                for (int t = 1; t <= 5; t++)
                        r5 += (double)ring_at(o, o->ring_units, b0 - t);
                r5 /= 5;
                /* The models read complete minutes only, so at the start of a spike
                 * (demand x10-100 within seconds) they still see the quiet minutes:
                 * the projection also takes the fastest recent velocity, the last
                 * complete minute's or the current minute's so far (over at least
                 * orders.velocity_min_s). Units per ms, like need / cover. */
                in_min = p->ts - b0 * 60000;
                u_last = ring_at(o, o->ring_units, b0 - 1);
                u_now = ring_at(o, o->ring_units, b0);
                /* The trigger takes the noise-discounted velocity (few false alarms
                 * on a burst of a few orders); the quantity, once triggered, the
                 * point estimate (ordering less than the rate seen loses sales). */
                rate = need / cover;
                vel = o->vel_weight * velocity(o, u_last, u_now, in_min, o->vel_z);
                if (vel > rate)
                        rate = vel;
                t_out = rate > 0 ? (double)on_hand / rate : INFINITY;
                stockout = rate > 0 ? p->ts + (int64_t)t_out : 0;
                vel = o->vel_weight * velocity(o, u_last, u_now, in_min, 0);
                if (vel < rate)
                        vel = rate;
                /* Order up to orders.order_up_to covers of the projected need. */
                want = (int64_t)ceil(vel * cover * o->order_up_to);
                rec = want - on_hand > 1 ? want - on_hand : 1;
                peak = fls_hash_int(h, "peak_r5m", 0) / 1000.0;
                if (r5 > peak) {
                        peak = r5;
                        {
                                char ent[300];
                                snprintf(ent, sizeof(ent), "sw:%.*s", (int)p->keylen,
                                         key);
                                fls_emit_defer(emit, p->partition, ent, FLS_DEFER_MAX,
                                               "peak_r5m", (int64_t)(r5 * 1000), NULL);
                        }
                }
                if (rate > 0) {
                        if (on_hand <= 0)
                                level = U_CRITICAL;
                        else if (t_out < 0.5 * (double)lead)
                                level = U_HIGH;
                        else if (t_out < (double)lead)
                                level = U_MEDIUM;
                        else if (t_out < cover)
                                level = U_LOW;
                }
                if (ov->keylen) {
                        st = ov->st;
                } else {
                        st.kind = (int)fls_hash_int(h, "sig_kind", K_NONE);
                        st.level = (int)fls_hash_int(h, "sig_level", U_NONE);
                        st.qty = fls_hash_int(h, "sig_qty", 0);
                }
                was = st;
                if (st.kind == K_RESTOCK) {
                        if (o->rearm && p->received && level != U_NONE &&
                            level < st.level) {
                                /* Stock came in but does not cover the need: a new
                                 * episode from here, so its run-out is warned now and
                                 * not only once the shelf is empty again. Receipts
                                 * only: a cancellation is not a restock and would
                                 * repeat signals. */
                                kind = K_RESTOCK;
                                reason = "projected_stockout";
                                st.level = level;
                                st.qty = rec;
                        } else if (level > st.level) {
                                kind = K_RESTOCK;
                                reason = "urgency_up";
                                st.level = level;
                                st.qty = rec;
                        } else if (level != U_NONE &&
                                   fabs((double)(rec - st.qty)) >
                                       o->requantity *
                                           (double)(st.qty > 0 ? st.qty : 1)) {
                                kind = K_RESTOCK;
                                reason = "quantity_changed";
                                level = st.level;
                                st.qty = rec;
                        } else if (level == U_NONE && p->restored) {
                                kind = K_RESOLVED;
                                reason = "stock_received";
                                st.kind = K_NONE;
                                st.level = U_NONE;
                                st.qty = 0;
                        }
                } else if (level != U_NONE) {
                        kind = K_RESTOCK;
                        reason = "projected_stockout";
                        st.kind = K_RESTOCK;
                        st.level = level;
                        st.qty = rec;
                } else {
                        int over = on_hand >= o->over_min &&
                                   (double)on_hand > o->over_factor * rate * cover &&
                                   peak > 0 && r5 <= o->peak_ratio * peak;
                        if (st.kind != K_OVERSTOCK && over) {
                                kind = K_OVERSTOCK;
                                reason = "after_peak";
                                st.kind = K_OVERSTOCK;
                                st.level = U_LOW;
                                st.qty = on_hand - want > 0 ? on_hand - want : 0;
                                rec = st.qty;
                        } else if (st.kind == K_OVERSTOCK &&
                                   (double)on_hand <=
                                       0.5 * o->over_factor * rate * cover) {
                                kind = K_RESOLVED;
                                reason = "overstock_cleared";
                                st.kind = K_NONE;
                                st.level = U_NONE;
                                st.qty = 0;
                        }
                }
                if (ov->keylen == 0) {
                        ov->key = p->key;
                        ov->keylen = p->keylen;
                }
                ov->st = st;
                if (kind == K_NONE)
                        continue;
                if (kind == K_RESOLVED)
                        rec = 0;
                if (st.kind != was.kind || st.level != was.level || st.qty != was.qty)
                        defer_state(o, emit, p, &st);
                if (emit_signal(o, emit, p, kind, kind == K_RESOLVED ? U_LOW : level,
                                on_hand, oversold, o->fc[k], rec, stockout, reason,
                                errstr, errstr_size) < 0)
                        return -1;
        }
        return 0;
}

const fls_app_t fls_orders_app = {
    .name = "orders",
    .in_topic_key = "topic.orders",
    .out_topic_key = "topic.restock_signals",
    .in_subject = "orders-value",
    .out_subject = "restock-signals-value",
    .families = families,
    .conf = conf,
    .init = init,
    .destroy = destroy,
    .check = check,
    .update = update,
    .decide = decide,
    .reload = reload,
};
