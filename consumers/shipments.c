/*
 * shipments: shipment status events -> lifecycle, region and carrier features,
 * delivery-time predictions and dispatch decisions.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis -> model -> Kafka).
 *   sh:<shipment>        ts_<status>: event time of each lifecycle step (the largest
 *                        seen, so out-of-order statuses resolve by event time),
 *                        rank: furthest step reached; kind and fed: decision state
 *                        (deferred writes, see below)
 *   r:<region>           lifetime created / delivered / late, as seen by this input
 *                        partition (the topic is keyed by shipment, so a region's
 *                        counts add up across partitions); dlv#<s>, dlv_ms@<s>,
 *                        dlv_n@<s>: a 24-slot ring of hourly delivery-time sums, written
 *                        by decisions (deferred writes, see below)
 *   r:<region>:load      1-minute buckets of created and delivered (60 minutes)
 *   r:<region>:dlv       1-hour buckets of delivered and delivered late (24 hours)
 *                        (in flight in a region: created - delivered - failed)
 *   c:<carrier>          lifetime created and done (delivered or failed): the backlog;
 *                        the same delivery-time ring as the region
 *   w:<warehouse>        lifetime created and done (in flight: the difference), and
 *                        w:<warehouse>:load, 1-minute buckets like the region's
 *
 * Decision (one per CREATED event, keyed by order): the features of
 * models/task_dispatch.h are read back after the batch is applied (load windows and
 * backlog are this partition's counts times topic.partitions), the whole batch is
 * scored with one predict-and-spread call, and the policy of shipments.h turns
 * prediction, spread and promise into P(late) and an expected lateness cost. Flash-sale
 * orders want PRIORITY, others EXPRESS when the cost exceeds shipments.express_cost.
 * Both draw on one capacity per region and hour (shipments.capacity_per_hour), taken
 * with idempotent claims (id = decision id, so a replay gets the same answer) in order
 * of expected lateness cost within the batch; a refused claim falls back to STANDARD
 * with a no_capacity reason.
 *
 * Revision (at HANDED_TO_CARRIER, the status change that still allows re-routing): a
 * shipment whose decision so far is STANDARD (the kind is kept in sh:<shipment> by a
 * deferred MAX write) is predicted again, with its creation's row but the region's
 * load, the carrier's backlog and the recent delivery times as of the hand-over. If
 * it now wants EXPRESS or PRIORITY and the hand-over hour has capacity, a new
 * decision (id of the hand-over event, reason "revised_...") upgrades it; otherwise
 * nothing is sent. Flash-sale orders refused for capacity at creation thus get
 * priority as soon as an hour has room. A hand-over in the same micro-batch as its
 * creation is not revised (the first decision is not recorded yet).
 *
 * Delivery feedback: a delivery time needs both ts_created and ts_delivered, which
 * arrive in either order, in one batch or two. So update() reads the shipment's hash
 * back for both statuses, and decide() feeds the shipments whose hash now holds both
 * and no "fed" mark: it adds the delivery time to the hourly ring of the region and
 * the carrier and sets "fed", all as deferred writes (absolute values computed from
 * the read, so applying them twice is harmless). They become visible to the next
 * batch of the partition.
 *
 * The model (shipments.model) is loaded at init, checked against the feature names,
 * and reloaded on SIGHUP between batches; a bad file is rejected and logged, the old
 * model keeps serving.
 */
#include "shipments.h"

#include "arena.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model.h"
#include "task_dispatch.h"

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

enum { CREATED, PICKED, HANDED, IN_TRANSIT, DELIVERED, FAILED, NSTATUS };
static const char *const ts_fields[] = {"ts_created",    "ts_picked",    "ts_handed",
                                        "ts_in_transit", "ts_delivered", "ts_failed"};
static const char *const load_feats[] = {"created", "delivered", NULL};
static const char *const dlv_feats[] = {"delivered", "late", NULL};
enum { FAM_LOAD, FAM_DLV };
static const fls_family_t families[] = {
    {"load", FLS_DISPATCH_LOAD_BUCKET, 60 * 60000, load_feats, 0},
    {"dlv", 3600000, 24 * 3600000LL, dlv_feats, 0},
    {NULL, 0, 0, NULL, 0},
};

#define NSLOT FLS_DISPATCH_DLV_SLOTS

/* What decide() needs of a CREATED event (a first decision) or a HANDED_TO_CARRIER
 * event (a re-prediction), copied out of the reused Avro value. */
struct pending {
        fls_batch_t *batch;
        int32_t partition;
        int64_t offset, ts, promised;
        int64_t created; /* CREATED's time: ts, or read back for a revision */
        int flash, revise;
        double dist, weight;
        int load_read, region_read, carrier_read, ship_read;
        size_t order, order_len, shipment, shipment_len, region, region_len; /* text */
        size_t ship_ent;                                                     /* text */
};

/* A CREATED or DELIVERED event: whichever of the two comes last (in offsets, not in
 * event time: statuses arrive out of order) feeds the delivery time into the rings. */
struct feedback {
        fls_batch_t *batch;
        int32_t partition;
        int ship_read, region_read, carrier_read;
        size_t ship, region, carrier; /* entity names ("sh:..", "r:..", "c:..") in text */
};

/* One ring slot of one entity being updated by this batch's deliveries. */
struct slot_acc {
        int32_t partition;
        size_t entity; /* in text */
        int read;
        int slot;
        int64_t bucket, ms, n;
};

typedef struct {
        int idx[F__N];
        fls_dispatch_policy_t pol;
        int64_t capacity, ship_ttl_s, scale;
        const fls_store_t *store;
        char model_path[1024];
        fls_model_t *model;
        char version[256];
        size_t reserve; /* rows reserved in the model */
        struct pending *pend;
        size_t npend, pend_cap;
        struct feedback *fb;
        size_t nfb, fb_cap;
        fls_arena_t text; /* strings decide() needs, per poll */
        uint64_t poll;    /* the poll pend[] belongs to */
        /* decide()'s reused buffers, grown to the largest batch seen */
        float *x, *mu, *sd;
        fls_dispatch_case_t *cases;
        size_t *sel, *order;
        int *granted;
        size_t work_cap;
        struct slot_acc *acc;
        size_t nacc, acc_cap;
        /* per read index of the batch being fed: fed_stamp when its shipment was fed */
        uint32_t *fed, fed_stamp;
        size_t fed_cap;
        /* "dlv#<s>", "dlv_ms@<s>", "dlv_n@<s>": built once */
        char f_bucket[NSLOT][12], f_ms[NSLOT][16], f_n[NSLOT][16];
} shipments_t;

static const fls_conf_def_t conf[] = {
    {"shipments.model", FLS_CONF_STR, FLS_MODEL_DIR "/delivery-sim.flsm", 1, 0,
     "Delivery-time model file (flashstream train delivery-sim); reloaded on SIGHUP.",
     "consume"},
    {"shipments.late_penalty", FLS_CONF_DBL, "20", 0, 1e9,
     "Cost of delivering a shipment after its promise, in the shop currency.",
     "consume judge"},
    {"shipments.express_cost", FLS_CONF_DBL, "4", 0, 1e9,
     "Extra cost of express (or priority) over standard for one shipment; express is "
     "chosen when P(late) x shipments.late_penalty exceeds it.",
     "consume judge"},
    {"shipments.capacity_per_hour", FLS_CONF_INT, "200", 0, 1e9,
     "Express plus priority shipments per region per hour (event time), over all "
     "consumer instances.",
     "consume judge"},
    {"shipments.resid_frac", FLS_CONF_DBL, "0.2", 0, 10,
     "Residual standard deviation of one delivery time as a fraction of its "
     "prediction, added to the forest's spread for P(late).",
     "consume"},
    {"shipments.ttl_s", FLS_CONF_INT, "1209600", 3600, 31536000,
     "Seconds a shipment's lifecycle is kept after its last event.", "consume"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ---- policy ------------------------------------------------------------------- */

double fls_shipments_p_late(double mu_h, double spread_h, double promised_h,
                            double resid_frac)
{
        double r = resid_frac * (mu_h > 0 ? mu_h : 0);
        double sd = sqrt(spread_h * spread_h + r * r);
        if (!isfinite(mu_h) || !isfinite(promised_h))
                return 0.5; /* know nothing: a coin */
        if (sd < 1e-9)
                return mu_h > promised_h ? 1.0 : 0.0;
        return 0.5 * erfc((promised_h - mu_h) / (sd * M_SQRT2));
}

void fls_shipments_assess(const fls_dispatch_policy_t *pol, fls_dispatch_case_t *c)
{
        c->p_late =
            fls_shipments_p_late(c->mu_h, c->spread_h, c->promised_h, pol->resid_frac);
        c->cost = c->p_late * pol->late_penalty;
        c->want = c->flash                      ? FLS_DISPATCH_PRIORITY
                  : c->cost > pol->express_cost ? FLS_DISPATCH_EXPRESS
                                                : FLS_DISPATCH_STANDARD;
        c->kind = c->want;
        c->why = NULL;
}

size_t fls_shipments_claim_order(const fls_dispatch_case_t *cs, size_t n, size_t *order)
{
        size_t m = 0;
        /* Insertion sort: batches are at most batch.max_messages and usually far
         * fewer want capacity; stable, so ties keep the event order. */
        for (size_t i = 0; i < n; i++) {
                size_t j;
                if (cs[i].want == FLS_DISPATCH_STANDARD)
                        continue;
                for (j = m; j > 0 && cs[order[j - 1]].cost < cs[i].cost; j--)
                        order[j] = order[j - 1];
                order[j] = i;
                m++;
        }
        return m;
}

void fls_shipments_settle(fls_dispatch_case_t *c, int granted)
{
        if (c->want == FLS_DISPATCH_STANDARD) {
                c->kind = FLS_DISPATCH_STANDARD;
                c->why = "on_time";
        } else if (granted) {
                c->kind = c->want;
                c->why = c->want == FLS_DISPATCH_PRIORITY ? "flash_sale" : "late_risk";
        } else {
                c->kind = FLS_DISPATCH_STANDARD;
                c->why = c->want == FLS_DISPATCH_PRIORITY ? "no_capacity_priority"
                                                          : "no_capacity_express";
        }
}

void fls_shipments_capacity_counter(const char *region, size_t len, int64_t ts_ms,
                                    char *buf, size_t size)
{
        int64_t hour = ts_ms >= 0 ? ts_ms / 3600000 : -((-ts_ms + 3599999) / 3600000);
        snprintf(buf, size, "dispatch.%.*s.%" PRId64, (int)len, region, hour);
}

/* ---- model ---------------------------------------------------------------------- */

/* Loads, checks and sizes a model; NULL with errstr naming the file and problem. */
static fls_model_t *model_open(const char *path, size_t rows, char *errstr,
                               size_t errstr_size)
{
        char err[512];
        fls_model_t *m = fls_model_load(path, errstr, errstr_size);
        if (!m)
                return NULL;
        if (fls_model_kind(m) != FLS_MODEL_FOREST_REG) {
                snprintf(errstr, errstr_size,
                         "%s: a %s model; the shipments consumer needs a forest "
                         "regressor (for its spread)",
                         path, fls_model_kind_name(fls_model_kind(m)));
                fls_model_destroy(m);
                return NULL;
        }
        if (fls_model_check_features(m, fls_dispatch_feature_names(), FLS_DISPATCH_NFEAT,
                                     err, sizeof(err)) < 0) {
                snprintf(errstr, errstr_size, "%s: feature mismatch: %s", path, err);
                fls_model_destroy(m);
                return NULL;
        }
        if (fls_model_reserve(m, rows, errstr, errstr_size) < 0) {
                fls_model_destroy(m);
                return NULL;
        }
        return m;
}

static void model_use(shipments_t *s, fls_model_t *m)
{
        fls_model_destroy(s->model);
        s->model = m;
        snprintf(s->version, sizeof(s->version), "%s@%s", fls_model_name(m),
                 fls_model_version(m));
}

int fls_shipments_reload(void *app, char *errstr, size_t errstr_size)
{
        shipments_t *s = app;
        fls_model_t *m = model_open(s->model_path, s->reserve, errstr, errstr_size);
        if (!m)
                return -1;
        model_use(s, m);
        fls_log(FLS_LOG_INFO, "shipments", "model reloaded from %s: %s", s->model_path,
                s->version);
        return 0;
}

const char *fls_shipments_model_version(const void *app)
{
        return ((const shipments_t *)app)->version;
}

/* ---- app ------------------------------------------------------------------------ */

static void destroy(void *app)
{
        shipments_t *s = app;
        if (!s)
                return;
        fls_model_destroy(s->model);
        free(s->pend);
        free(s->fb);
        fls_arena_free(&s->text);
        free(s->x);
        free(s->mu);
        free(s->sd);
        free(s->cases);
        free(s->sel);
        free(s->order);
        free(s->granted);
        free(s->acc);
        free(s->fed);
        free(s);
}

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        shipments_t *s = calloc(1, sizeof(*s));
        int64_t batch = fls_conf_int(env->conf, "batch.max_messages");

        if (!s) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        if (fls_codec_fields(env->in, field_names, F__N, s->idx, errstr, errstr_size)) {
                destroy(s);
                return -1;
        }
        for (int i = 0; i < NSLOT; i++) {
                snprintf(s->f_bucket[i], sizeof(s->f_bucket[i]), "dlv#%d", i);
                snprintf(s->f_ms[i], sizeof(s->f_ms[i]), "dlv_ms@%d", i);
                snprintf(s->f_n[i], sizeof(s->f_n[i]), "dlv_n@%d", i);
        }
        s->pol.late_penalty = fls_conf_dbl(env->conf, "shipments.late_penalty");
        s->pol.express_cost = fls_conf_dbl(env->conf, "shipments.express_cost");
        s->pol.resid_frac = fls_conf_dbl(env->conf, "shipments.resid_frac");
        s->capacity = fls_conf_int(env->conf, "shipments.capacity_per_hour");
        s->ship_ttl_s = fls_conf_int(env->conf, "shipments.ttl_s");
        /* Each partition sees about 1/P of a region's shipments (keyed by shipment). */
        s->scale = fls_conf_int(env->conf, "topic.partitions");
        if (s->scale < 1)
                s->scale = 1;
        s->store = env->store;
        s->reserve = batch > 0 ? (size_t)batch : 2000;
        snprintf(s->model_path, sizeof(s->model_path), "%s",
                 fls_conf_str(env->conf, "shipments.model"));
        {
                fls_model_t *m =
                    model_open(s->model_path, s->reserve, errstr, errstr_size);
                if (!m) {
                        destroy(s);
                        return -1;
                }
                model_use(s, m);
        }
        *appp = s;
        return 0;
}

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        shipments_t *s = app;
        size_t idlen, rlen, olen, clen, wlen;
        const char *id = fls_avro_str(ev, s->idx[F_SHIPMENT], &idlen);
        double dist = fls_avro_double(ev, s->idx[F_DIST]);
        double weight = fls_avro_double(ev, s->idx[F_WEIGHT]);

        fls_avro_str(ev, s->idx[F_REGION], &rlen);
        fls_avro_str(ev, s->idx[F_ORDER], &olen);
        fls_avro_str(ev, s->idx[F_CARRIER], &clen);
        fls_avro_str(ev, s->idx[F_WH], &wlen);
        if (idlen == 0 || rlen == 0 || olen == 0) {
                snprintf(detail, detail_size, "empty shipment_id, order_id or region");
                return FLS_BAD_VALUE;
        }
        if (idlen > 200 || rlen > 100 || olen > 200 || clen > 100 || wlen > 100) {
                snprintf(detail, detail_size,
                         "shipment, order, region, carrier or warehouse too long");
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
        if (fls_avro_enum(ev, s->idx[F_STATUS]) >= NSTATUS ||
            fls_avro_enum(ev, s->idx[F_STATUS]) < 0) {
                snprintf(detail, detail_size, "unknown status");
                return FLS_BAD_ENUM;
        }
        *ts = fls_avro_long(ev, s->idx[F_TS]);
        return FLS_BAD_NONE;
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        shipments_t *s = app;
        int status = fls_avro_enum(v, s->idx[F_STATUS]);
        size_t rlen, olen, clen, wlen;
        const char *region = fls_avro_str(v, s->idx[F_REGION], &rlen);
        const char *wh = fls_avro_str(v, s->idx[F_WH], &wlen);
        const char *order = fls_avro_str(v, s->idx[F_ORDER], &olen);
        const char *carrier = fls_avro_str(v, s->idx[F_CARRIER], &clen);
        int64_t promised = fls_avro_long(v, s->idx[F_PROMISED]);
        char ent[300], cent[300], sent[300];
        int sh, r, c, w, n, cn, sn;
        size_t ship = 0; /* sent in text, once it is needed */

        if (s->poll != ev->poll) {
                /* A new poll: every batch of the previous one was decided. */
                s->poll = ev->poll;
                s->npend = 0;
                s->nfb = 0;
                fls_arena_reset(&s->text);
        }
        sn = snprintf(sent, sizeof(sent), "sh:%.*s", (int)ev->keylen, ev->key);
        sh = fls_batch_entity(b, sent, (size_t)sn);
        fls_batch_setmax(b, sh, ts_fields[status], ev->ts);
        fls_batch_setmax(b, sh, "rank", status);
        fls_batch_expire(b, sh, s->ship_ttl_s);

        cn = snprintf(cent, sizeof(cent), "c:%.*s", (int)clen, carrier);
        c = fls_batch_entity(b, cent, (size_t)cn);
        n = snprintf(ent, sizeof(ent), "w:%.*s", (int)wlen, wh);
        w = fls_batch_entity(b, ent, (size_t)n);
        n = snprintf(ent, sizeof(ent), "r:%.*s", (int)rlen, region);
        r = fls_batch_entity(b, ent, (size_t)n);
        if (status == CREATED) {
                fls_batch_incr(b, r, "created", 1);
                fls_batch_incr(b, c, "created", 1);
                fls_batch_incr(b, w, "created", 1);
                if (!ev->late) {
                        fls_batch_window(b, r, FAM_LOAD, 0, ev->ts, 1);
                        fls_batch_window(b, w, FAM_LOAD, 0, ev->ts, 1);
                }
        } else if (status == DELIVERED) {
                int late = ev->ts > promised;
                fls_batch_incr(b, r, "delivered", 1);
                fls_batch_incr(b, r, "late", late);
                fls_batch_incr(b, c, "done", 1);
                fls_batch_incr(b, w, "done", 1);
                if (!ev->late) {
                        fls_batch_window(b, r, FAM_LOAD, 1, ev->ts, 1);
                        fls_batch_window(b, w, FAM_LOAD, 1, ev->ts, 1);
                        fls_batch_window(b, r, FAM_DLV, 0, ev->ts, 1);
                        fls_batch_window(b, r, FAM_DLV, 1, ev->ts, late);
                }
        } else if (status == FAILED) {
                fls_batch_incr(b, r, "failed", 1);
                fls_batch_incr(b, c, "done", 1);
                fls_batch_incr(b, w, "done", 1);
        }
        if (status == DELIVERED || status == CREATED || status == HANDED)
                ship = fls_arena_add(&s->text, sent, (size_t)sn);
        if (status == DELIVERED || status == CREATED) {
                struct feedback *f;
                s->fb = fls_grow(s->fb, &s->fb_cap, s->nfb + 1, sizeof(*s->fb));
                f = &s->fb[s->nfb++];
                f->batch = b;
                f->partition = ev->partition;
                f->ship_read = fls_batch_read(b, sh, -1);
                f->region_read = fls_batch_read(b, r, -1);
                f->carrier_read = fls_batch_read(b, c, -1);
                f->ship = ship;
                f->region = fls_arena_add(&s->text, ent, (size_t)n);
                f->carrier = fls_arena_add(&s->text, cent, (size_t)cn);
                if (status == DELIVERED)
                        return;
        }
        if (status != CREATED && status != HANDED)
                return;
        {
                struct pending *p;
                s->pend = fls_grow(s->pend, &s->pend_cap, s->npend + 1, sizeof(*s->pend));
                p = &s->pend[s->npend++];
                p->batch = b;
                p->revise = status == HANDED;
                p->ship_ent = ship;
                p->ship_read = p->revise ? fls_batch_read(b, sh, -1) : -1;
                p->partition = ev->partition;
                p->offset = ev->offset;
                p->ts = ev->ts;
                p->promised = promised;
                p->flash = fls_avro_bool(v, s->idx[F_FLASH]);
                p->dist = fls_avro_double(v, s->idx[F_DIST]);
                p->weight = fls_avro_double(v, s->idx[F_WEIGHT]);
                p->load_read = fls_batch_read(b, r, FAM_LOAD);
                p->region_read = fls_batch_read(b, r, -1);
                p->carrier_read = fls_batch_read(b, c, -1);
                p->order = fls_arena_add(&s->text, order, olen);
                p->order_len = olen;
                p->shipment = fls_arena_add(&s->text, ev->key, ev->keylen);
                p->shipment_len = ev->keylen;
                p->region = fls_arena_add(&s->text, region, rlen);
                p->region_len = rlen;
        }
}

/* Sum of hours and count of the deliveries in an entity's ring over the 24 hourly
 * buckets ending with the bucket of ts. */
static void ring_dlv(const shipments_t *s, const fls_hash_t *h, int64_t ts, double *sum_h,
                     double *n)
{
        int64_t ref = ts / FLS_DISPATCH_DLV_BUCKET;
        *sum_h = *n = 0;
        if (!h)
                return;
        for (int i = 0; i < NSLOT; i++) {
                int64_t bucket = fls_hash_int(h, s->f_bucket[i], -1);
                if (bucket <= ref - NSLOT || bucket > ref)
                        continue;
                *sum_h += (double)fls_hash_int(h, s->f_ms[i], 0) / 3600000.0;
                *n += (double)fls_hash_int(h, s->f_n[i], 0);
        }
}

static void work_grow(shipments_t *s, size_t n)
{
        size_t cap = s->work_cap;
        float *x, *mu, *sd;
        fls_dispatch_case_t *cs;
        size_t *sel, *order;
        int *granted;
        if (n <= cap)
                return;
        cap = cap ? cap : 256;
        while (cap < n)
                cap *= 2;
        x = realloc(s->x, cap * FLS_DISPATCH_NFEAT * sizeof(*x));
        if (x)
                s->x = x;
        mu = realloc(s->mu, cap * sizeof(*mu));
        if (mu)
                s->mu = mu;
        sd = realloc(s->sd, cap * sizeof(*sd));
        if (sd)
                s->sd = sd;
        cs = realloc(s->cases, cap * sizeof(*cs));
        if (cs)
                s->cases = cs;
        sel = realloc(s->sel, cap * sizeof(*sel));
        if (sel)
                s->sel = sel;
        order = realloc(s->order, cap * sizeof(*order));
        if (order)
                s->order = order;
        granted = realloc(s->granted, cap * sizeof(*granted));
        if (granted)
                s->granted = granted;
        if (!x || !mu || !sd || !cs || !sel || !order || !granted)
                abort(); /* bounded by batch.max_messages */
        s->work_cap = cap;
}

/* Whether this batch fed the shipment of read index `read` already, and marks it
 * fed: both of its statuses may be in one batch, and repeated reads of one entity
 * share an index. */
static int fed_in_batch(shipments_t *s, int read)
{
        size_t old = s->fed_cap;
        if ((size_t)read < old && s->fed[read] == s->fed_stamp)
                return 1;
        s->fed = fls_grow(s->fed, &s->fed_cap, (size_t)read + 1, sizeof(*s->fed));
        if (s->fed_cap > old)
                memset(s->fed + old, 0, (s->fed_cap - old) * sizeof(*s->fed));
        s->fed[read] = s->fed_stamp;
        return 0;
}

/* Feeds the delivery times this batch completes into the rings, as deferred writes:
 * a shipment whose hash now holds both its creation and its delivery and no "fed"
 * mark. The mark is a deferred write too, so a replay, which may read timestamps
 * written by later events, still feeds each shipment once. */
static void feedback(shipments_t *s, fls_batch_t *b, fls_emit_t *emit)
{
        s->nacc = 0;
        if (++s->fed_stamp == 0) { /* wrapped: no stale stamp may match */
                memset(s->fed, 0, s->fed_cap * sizeof(*s->fed));
                s->fed_stamp = 1;
        }
        for (size_t i = 0; i < s->nfb; i++) {
                const struct feedback *f = &s->fb[i];
                const fls_hash_t *sh;
                int64_t created, dlv, ms, bucket;
                int slot;
                if (f->batch != b)
                        continue;
                sh = fls_batch_reply(b, f->ship_read);
                created = sh ? fls_hash_int(sh, "ts_created", -1) : -1;
                dlv = sh ? fls_hash_int(sh, "ts_delivered", -1) : -1;
                ms = dlv - created;
                if (created < 0 || dlv < 0 || ms < 0 || fls_hash_get(sh, "fed") ||
                    fed_in_batch(s, f->ship_read))
                        continue; /* the other half not seen yet (or expired, lost) */
                fls_emit_defer(emit, f->partition, s->text.buf + f->ship, FLS_DEFER_MAX,
                               "fed", 1, NULL);
                bucket = dlv / FLS_DISPATCH_DLV_BUCKET;
                slot = (int)(bucket % NSLOT);
                for (int e = 0; e < 2; e++) {
                        size_t ent = e ? f->carrier : f->region;
                        int read = e ? f->carrier_read : f->region_read;
                        struct slot_acc *a = NULL;
                        for (size_t k = 0; k < s->nacc && !a; k++)
                                if (s->acc[k].slot == slot && s->acc[k].read == read)
                                        a = &s->acc[k];
                        if (!a) {
                                const fls_hash_t *h = fls_batch_reply(b, read);
                                s->acc = fls_grow(s->acc, &s->acc_cap, s->nacc + 1,
                                                  sizeof(*s->acc));
                                a = &s->acc[s->nacc++];
                                a->partition = f->partition;
                                a->entity = ent;
                                a->read = read;
                                a->slot = slot;
                                a->bucket =
                                    h ? fls_hash_int(h, s->f_bucket[slot], -1) : -1;
                                a->ms = h ? fls_hash_int(h, s->f_ms[slot], 0) : 0;
                                a->n = h ? fls_hash_int(h, s->f_n[slot], 0) : 0;
                        }
                        if (a->bucket > bucket)
                                continue; /* the slot already holds a newer hour */
                        if (a->bucket < bucket) {
                                a->bucket = bucket;
                                a->ms = a->n = 0;
                        }
                        a->ms += ms;
                        a->n++;
                }
        }
        for (size_t k = 0; k < s->nacc; k++) {
                /* SET takes its value as text (copied by fls_emit_defer). */
                const struct slot_acc *a = &s->acc[k];
                const char *ent = s->text.buf + a->entity;
                char vb[24], vm[24], vn[24];
                snprintf(vb, sizeof(vb), "%" PRId64, a->bucket);
                snprintf(vm, sizeof(vm), "%" PRId64, a->ms);
                snprintf(vn, sizeof(vn), "%" PRId64, a->n);
                fls_emit_defer(emit, a->partition, ent, FLS_DEFER_SET,
                               s->f_bucket[a->slot], 0, vb);
                fls_emit_defer(emit, a->partition, ent, FLS_DEFER_SET, s->f_ms[a->slot],
                               0, vm);
                fls_emit_defer(emit, a->partition, ent, FLS_DEFER_SET, s->f_n[a->slot], 0,
                               vn);
        }
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        static const char *const courier[] = {"standard", "express", "priority"};
        shipments_t *s = app;
        char id[512], reason[160];
        size_t n = 0, m;
        fls_claims_t *claims;

        feedback(s, b, emit);

        work_grow(s, s->npend);
        for (size_t i = 0; i < s->npend; i++) {
                struct pending *p = &s->pend[i];
                fls_dispatch_raw_t raw;
                const fls_hash_t *ring, *rh, *ch;
                if (p->batch != b)
                        continue;
                p->created = p->ts;
                if (p->revise) {
                        /* Re-predicted only when the first decision was STANDARD and
                         * is known: a hand-over in the same batch as its creation,
                         * or after the lifecycle expired, keeps its first decision. */
                        const fls_hash_t *sh = fls_batch_reply(b, p->ship_read);
                        if (!sh || fls_hash_int(sh, "kind", -1) != FLS_DISPATCH_STANDARD)
                                continue;
                        p->created = fls_hash_int(sh, "ts_created", -1);
                        if (p->created < 0 || p->created > p->ts)
                                continue;
                }
                ring = fls_batch_reply(b, p->load_read);
                rh = fls_batch_reply(b, p->region_read);
                ch = fls_batch_reply(b, p->carrier_read);
                memset(&raw, 0, sizeof(raw));
                raw.distance_km = p->dist;
                raw.weight_kg = p->weight;
                /* The row is the creation's (hour of day); load, backlog and recent
                 * delivery times are read as of this event: for a revision, the
                 * region's load now. */
                raw.ts_ms = p->created;
                raw.flash = p->flash;
                if (ring) {
                        raw.region_created_long =
                            (double)(s->scale * fls_ring_sum(s->store, ring, FAM_LOAD, 0,
                                                             p->ts,
                                                             FLS_DISPATCH_LOAD_LONG));
                        raw.region_created_short =
                            (double)(s->scale * fls_ring_sum(s->store, ring, FAM_LOAD, 0,
                                                             p->ts,
                                                             FLS_DISPATCH_LOAD_SHORT));
                }
                if (ch)
                        raw.carrier_backlog =
                            (double)(s->scale * (fls_hash_int(ch, "created", 0) -
                                                 fls_hash_int(ch, "done", 0)));
                ring_dlv(s, rh, p->ts, &raw.region_dlv_sum_h, &raw.region_dlv_n);
                ring_dlv(s, ch, p->ts, &raw.carrier_dlv_sum_h, &raw.carrier_dlv_n);
                fls_dispatch_row(&raw, s->x + n * FLS_DISPATCH_NFEAT);
                s->sel[n++] = i;
        }
        if (n == 0)
                return 0;
        /* One scoring call for the whole batch. */
        if (fls_model_predict_spread(s->model, s->x, n, s->mu, s->sd, errstr,
                                     errstr_size) < 0)
                return -1;
        for (size_t k = 0; k < n; k++) {
                const struct pending *p = &s->pend[s->sel[k]];
                fls_dispatch_case_t *c = &s->cases[k];
                memset(c, 0, sizeof(*c));
                c->mu_h = s->mu[k];
                c->spread_h = s->sd[k];
                c->promised_h = (double)(p->promised - p->created) / 3600000.0;
                c->flash = p->flash;
                fls_shipments_assess(&s->pol, c);
                s->granted[k] = 0;
        }
        /* Capacity: claims in order of expected lateness cost, one round trip. */
        m = fls_shipments_claim_order(s->cases, n, s->order);
        if (m > 0) {
                claims = fls_emit_claims(emit);
                for (size_t j = 0; j < m; j++) {
                        const struct pending *p = &s->pend[s->sel[s->order[j]]];
                        char counter[256];
                        fls_shipments_capacity_counter(s->text.buf + p->region,
                                                       p->region_len, p->ts, counter,
                                                       sizeof(counter));
                        fls_emit_claim(emit, counter, p->partition, p->offset, "dispatch",
                                       1, s->capacity);
                }
                if (fls_emit_claims_run(emit) < 0) {
                        snprintf(errstr, errstr_size, "stopping while claiming capacity");
                        return -1;
                }
                for (size_t j = 0; j < m; j++)
                        s->granted[s->order[j]] = fls_claims_granted(claims, (int)j) > 0;
        }
        for (size_t k = 0; k < n; k++) {
                const struct pending *p = &s->pend[s->sel[k]];
                fls_dispatch_case_t *c = &s->cases[k];
                const char *order = s->text.buf + p->order;
                avro_value_t *out;
                fls_shipments_settle(c, s->granted[k]);
                if (p->revise && c->kind == FLS_DISPATCH_STANDARD)
                        continue; /* nothing changes: courier dispatch hears nothing */
                out = fls_emit_begin(emit);
                fls_emit_id(emit, p->partition, p->offset, "dispatch", id, sizeof(id));
                snprintf(reason, sizeof(reason), "%s%s p_late=%.3f cost=%.2f",
                         p->revise ? "revised_" : "", c->why, c->p_late, c->cost);
                if (fls_avro_set_str(out, 0, id, strlen(id)) ||
                    fls_avro_set_str(out, 1, order, p->order_len) ||
                    fls_avro_set_str(out, 2, s->text.buf + p->shipment,
                                     p->shipment_len) ||
                    fls_avro_set_double(out, 3, c->mu_h) ||
                    fls_avro_set_double(out, 4, c->spread_h) ||
                    fls_avro_set_long(out, 5, p->promised) ||
                    fls_avro_set_enum(out, 6, c->kind) ||
                    fls_avro_set_str(out, 7, courier[c->kind],
                                     strlen(courier[c->kind])) ||
                    fls_avro_set_str(out, 8, reason, strlen(reason)) ||
                    fls_avro_set_str(out, 9, s->version, strlen(s->version)) ||
                    fls_avro_set_long(out, 10, p->ts)) {
                        snprintf(errstr, errstr_size, "building DispatchDecision: %s",
                                 avro_strerror());
                        return -1;
                }
                if (fls_emit_send(emit, order, p->order_len, errstr, errstr_size))
                        return -1;
                /* The shipment's decision so far, for a later revision (kinds only
                 * go up: MAX makes a replayed write harmless). */
                fls_emit_defer(emit, p->partition, s->text.buf + p->ship_ent,
                               FLS_DEFER_MAX, "kind", c->kind, NULL);
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
    .reload = fls_shipments_reload,
};
