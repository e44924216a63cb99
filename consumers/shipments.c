/*
 * shipments: shipment status events -> lifecycle, region load, dispatch decisions.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis -> decision -> Kafka).
 *   sh:<shipment>        ts_<status>: event time of each lifecycle step (the largest
 *                        seen, so out-of-order statuses resolve by event time),
 *                        rank: furthest step reached
 *   r:<region>           lifetime created / delivered / late, as seen by this input
 *                        partition (the topic is keyed by shipment, so a region's
 *                        counts add up across partitions)
 *   r:<region>:load      1-minute buckets of created and delivered (60 minutes)
 *   r:<region>:dlv       1-hour buckets of delivered and delivered late (24 hours)
 *
 * Decision (one per CREATED event, keyed by order): flash-sale orders go PRIORITY;
 * others go EXPRESS when the region's recent late share (24 h, with a one-in-two
 * prior) exceeds shipments.express_late_share, else STANDARD. This policy reads only
 * features; the delivery-time model replaces the late share when it is wired in.
 */
#include "shipments.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
        F_EVENT_ID,
        F_SHIPMENT,
        F_ORDER,
        F_STATUS,
        F_WH,
        F_REGION,
        F_DIST,
        F_WEIGHT,
        F_CARRIER,
        F_FLASH,
        F_PROMISED,
        F_TS,
        F__N
};
static const char *const field_names[F__N] = {
    "event_id",    "shipment_id", "order_id", "status",     "warehouse_id", "region",
    "distance_km", "weight_kg",   "carrier",  "flash_sale", "promised_ts",  "ts"};

enum { CREATED, PICKED, HANDED, IN_TRANSIT, DELIVERED, FAILED };
static const char *const ts_fields[] = {"ts_created",    "ts_picked",    "ts_handed",
                                        "ts_in_transit", "ts_delivered", "ts_failed"};
static const char *const load_feats[] = {"created", "delivered", NULL};
static const char *const dlv_feats[] = {"delivered", "late", NULL};
enum { FAM_LOAD, FAM_DLV };
static const fls_family_t families[] = {
    {"load", 60000, 60 * 60000, load_feats, 0},
    {"dlv", 3600000, 24 * 3600000LL, dlv_feats, 0},
    {NULL, 0, 0, NULL, 0},
};

/* What decide() needs of a CREATED event, copied out of the reused Avro value. */
struct pending {
        fls_batch_t *batch;
        int32_t partition;
        int64_t offset, ts, promised;
        int flash;
        int region_read;
        size_t order, order_len, shipment, shipment_len; /* in text */
};

typedef struct {
        int idx[F__N];
        double express_share;
        int64_t ship_ttl_s;
        const fls_store_t *store;
        struct pending *pend;
        size_t npend, pend_cap;
        char *text;
        size_t text_len, text_cap;
        uint64_t poll; /* the poll pend[] belongs to */
} shipments_t;

static const fls_conf_def_t conf[] = {
    {"shipments.express_late_share", FLS_CONF_DBL, "0.3", 0, 1,
     "Non-flash shipments go express when their region's recent late share exceeds this.",
     "consume"},
    {"shipments.ttl_s", FLS_CONF_INT, "1209600", 3600, 31536000,
     "Seconds a shipment's lifecycle is kept after its last event.", "consume"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        shipments_t *s = calloc(1, sizeof(*s));

        if (!s) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int i = 0; i < F__N; i++) {
                s->idx[i] = fls_codec_field(env->in, field_names[i]);
                if (s->idx[i] < 0) {
                        snprintf(errstr, errstr_size, "ShipmentEvent has no field '%s'",
                                 field_names[i]);
                        free(s);
                        return -1;
                }
        }
        s->express_share = fls_conf_dbl(env->conf, "shipments.express_late_share");
        s->ship_ttl_s = fls_conf_int(env->conf, "shipments.ttl_s");
        s->store = env->store;
        *appp = s;
        return 0;
}

static void destroy(void *app)
{
        shipments_t *s = app;
        if (!s)
                return;
        free(s->pend);
        free(s->text);
        free(s);
}

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        shipments_t *s = app;
        size_t idlen, rlen, olen;
        const char *id = fls_avro_str(ev, s->idx[F_SHIPMENT], &idlen);
        double dist = fls_avro_double(ev, s->idx[F_DIST]);
        double weight = fls_avro_double(ev, s->idx[F_WEIGHT]);

        fls_avro_str(ev, s->idx[F_REGION], &rlen);
        fls_avro_str(ev, s->idx[F_ORDER], &olen);
        if (idlen == 0 || rlen == 0 || olen == 0) {
                snprintf(detail, detail_size, "empty shipment_id, order_id or region");
                return FLS_BAD_VALUE;
        }
        if (!key || keylen != idlen || memcmp(key, id, idlen) != 0) {
                snprintf(detail, detail_size, "key is not the shipment_id");
                return FLS_BAD_KEY;
        }
        if (!isfinite(dist) || dist < 0 || !isfinite(weight) || weight < 0) {
                snprintf(detail, detail_size,
                         "distance_km %g or weight_kg %g is not a finite value >= 0",
                         dist, weight);
                return FLS_BAD_VALUE;
        }
        *ts = fls_avro_long(ev, s->idx[F_TS]);
        return FLS_BAD_NONE;
}

static size_t keep(shipments_t *s, const char *str, size_t len)
{
        size_t off = s->text_len;
        if (s->text_len + len + 1 > s->text_cap) {
                size_t cap = s->text_cap ? s->text_cap : 4096;
                char *t;
                while (cap < s->text_len + len + 1)
                        cap *= 2;
                t = realloc(s->text, cap);
                if (!t)
                        abort(); /* bounded by batch.max_messages */
                s->text = t;
                s->text_cap = cap;
        }
        memcpy(s->text + off, str, len);
        s->text[off + len] = '\0';
        s->text_len += len + 1;
        return off;
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        shipments_t *s = app;
        int status = fls_avro_enum(v, s->idx[F_STATUS]);
        size_t rlen, olen;
        const char *region = fls_avro_str(v, s->idx[F_REGION], &rlen);
        const char *order = fls_avro_str(v, s->idx[F_ORDER], &olen);
        int64_t promised = fls_avro_long(v, s->idx[F_PROMISED]);
        char ent[300];
        int sh, r, n;

        if (s->poll != ev->poll) {
                /* A new poll: every batch of the previous one was decided. */
                s->poll = ev->poll;
                s->npend = 0;
                s->text_len = 0;
        }
        n = snprintf(ent, sizeof(ent), "sh:%.*s", (int)ev->keylen, ev->key);
        sh = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_setmax(b, sh, ts_fields[status], ev->ts);
        fls_batch_setmax(b, sh, "rank", status);
        fls_batch_expire(b, sh, s->ship_ttl_s);

        n = snprintf(ent, sizeof(ent), "r:%.*s", (int)rlen, region);
        r = fls_batch_entity(b, ent, (size_t)n);
        if (status == CREATED) {
                fls_batch_incr(b, r, "created", 1);
                if (!ev->late)
                        fls_batch_window(b, r, FAM_LOAD, 0, ev->ts, 1);
        } else if (status == DELIVERED) {
                int late = ev->ts > promised;
                fls_batch_incr(b, r, "delivered", 1);
                fls_batch_incr(b, r, "late", late);
                if (!ev->late) {
                        fls_batch_window(b, r, FAM_LOAD, 1, ev->ts, 1);
                        fls_batch_window(b, r, FAM_DLV, 0, ev->ts, 1);
                        fls_batch_window(b, r, FAM_DLV, 1, ev->ts, late);
                }
        }
        if (status != CREATED)
                return;
        if (s->npend == s->pend_cap) {
                size_t cap = s->pend_cap ? s->pend_cap * 2 : 256;
                struct pending *p = realloc(s->pend, cap * sizeof(*p));
                if (!p)
                        abort(); /* bounded by batch.max_messages */
                s->pend = p;
                s->pend_cap = cap;
        }
        {
                struct pending *p = &s->pend[s->npend++];
                p->batch = b;
                p->partition = ev->partition;
                p->offset = ev->offset;
                p->ts = ev->ts;
                p->promised = promised;
                p->flash = fls_avro_bool(v, s->idx[F_FLASH]);
                p->region_read = fls_batch_read(b, r, FAM_DLV);
                p->order = keep(s, order, olen);
                p->order_len = olen;
                p->shipment = keep(s, ev->key, ev->keylen);
                p->shipment_len = ev->keylen;
        }
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        enum { STANDARD, EXPRESS, PRIORITY };
        static const char *const courier[] = {"standard", "express", "priority"};
        shipments_t *s = app;
        char id[512], reason[128];

        for (size_t i = 0; i < s->npend; i++) {
                struct pending *p = &s->pend[i];
                const fls_hash_t *ring = fls_batch_reply(b, p->region_read);
                int64_t delivered =
                    fls_ring_sum(s->store, ring, FAM_DLV, 0, p->ts, 24 * 3600000LL);
                int64_t late =
                    fls_ring_sum(s->store, ring, FAM_DLV, 1, p->ts, 24 * 3600000LL);
                double share = (late + 1.0) / (delivered + 2.0);
                int kind = p->flash                   ? PRIORITY
                           : share > s->express_share ? EXPRESS
                                                      : STANDARD;
                avro_value_t *out;
                const char *order = s->text + p->order;

                if (p->batch != b)
                        continue;
                out = fls_emit_begin(emit);
                fls_emit_id(emit, p->partition, p->offset, "dispatch", id, sizeof(id));
                snprintf(reason, sizeof(reason), "%s late_share=%.3f n=%" PRId64,
                         p->flash          ? "flash_sale"
                         : kind == EXPRESS ? "late_risk"
                                           : "on_time",
                         share, delivered);
                if (fls_avro_set_str(out, 0, id, strlen(id)) ||
                    fls_avro_set_str(out, 1, order, p->order_len) ||
                    fls_avro_set_str(out, 2, s->text + p->shipment, p->shipment_len) ||
                    fls_avro_set_double(out, 3, -1) || fls_avro_set_double(out, 4, 0) ||
                    fls_avro_set_long(out, 5, p->promised) ||
                    fls_avro_set_enum(out, 6, kind) ||
                    fls_avro_set_str(out, 7, courier[kind], strlen(courier[kind])) ||
                    fls_avro_set_str(out, 8, reason, strlen(reason)) ||
                    fls_avro_set_str(out, 9, "late-share@1", 12) ||
                    fls_avro_set_long(out, 10, p->ts)) {
                        snprintf(errstr, errstr_size, "building DispatchDecision: %s",
                                 avro_strerror());
                        return -1;
                }
                if (fls_emit_send(emit, order, p->order_len, errstr, errstr_size))
                        return -1;
        }
        return 0;
}

const fls_app_t fls_shipments_app = {
    .name = "shipments",
    .in_topic_key = "topic.shipments",
    .out_topic_key = "topic.dispatch_decisions",
    .in_subject = "shipments-value",
    .out_subject = "dispatch-decisions-value",
    .families = families,
    .conf = conf,
    .init = init,
    .destroy = destroy,
    .check = check,
    .update = update,
    .decide = decide,
};
