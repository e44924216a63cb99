/*
 * clickstream: storefront events -> rolling user, SKU and category features ->
 * intent and participation scores -> at most one marketing action per event.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis -> models -> Kafka). Per event
 * update() queues (all keys under the partition's hash tag, see store.h):
 *   u:<user>        n_<type> lifetime counts, last_ts, last_sku, cart_c / cart_n (cart
 *                   value in cents and units: + on add, - on remove and purchase),
 *                   pv_c (sum of viewed prices, cents), pre_views (views without a
 *                   campaign), last_buy_ts; decision state written by decide() through
 *                   fls_emit_defer: act_ts (event time of the last action),
 * cpn:<campaign> (a coupon of that campaign was sent), rem (a reminder was sent), capped
 * (actions held back by the cap) u:<user>:act    1-minute buckets of each event type
 * (windows 1, 5, 30 minutes) u:<user>:seq    list of the last 24 events "offset ts type
 * cents qty sale late sku", the intent LSTM's input (fls_isim_sequence, shared with
 * training) v:<user>        s<sku> and c<category> viewed, b<sku> bought (distinct counts
 * and the recommendation's exclusions) se:<session>    neg_start (minus the earliest
 * event time: a max of negatives is a min), end: session start and length s:<sku>,
 * s:<sku>:sku   lifetime counts; 1-minute buckets of views, cart adds and purchases (10
 * minutes): per-minute counts, 5-minute conversion, trend = last minute / mean minute of
 * the last 10 k:<category>:tr list of the category's last 256 views "ts sku", for
 * trending SKUs p:all, p:all:sku   the partition's cart adds and purchases per minute
 * (live conversion), sale_neg (minus the first campaign event's time: the sale start as
 * this partition saw it), capped_users Reads come back after the whole batch is applied,
 * so a user's later events of the same batch are taken out again using the seq list (each
 * item carries its offset): counts, windows and cart value are those "as of the event".
 * Distinct counts and session end are after the batch.
 *
 * SKU trending across partitions: the topic is keyed by user, so each partition sees
 * the share of a SKU's traffic that its users make (~1/P with hashed users). Global
 * per-SKU counters are out of scope: the ratios used (conversion, trend, the
 * category's trending order) are estimated on the partition's share, which is an
 * unbiased sample of the SKU's traffic; absolute counts are the partition's share.
 *
 * Scoring: decide() builds one intent row (16 steps) and one participation row per
 * event into buffers reserved at init, and calls each model once per batch.
 *
 * Policy, first that applies, at most one action per event:
 *   COUPON          event under a campaign, cart_n > 0, no purchase for
 *                   clickstream.coupon_no_buy_s, min_intent <= intent <=
 *                   clickstream.coupon_max_intent (sure buyers need no coupon), and no
 *                   coupon of that campaign yet; then a claim on the campaign budget
 *   REMINDER        event before the sale (no campaign, and before the configured or
 *                   learned sale start), participation >= clickstream.reminder_min_
 *                   participation, pre-sale views (interest in SKUs going on sale),
 *                   no reminder yet. The other trigger (a likely participant
 *                   inactive since the sale began) has no event to act on in a
 *                   per-event consumer: it needs a timer, out of scope here
 *   RECOMMENDATION  a VIEW with a category, participation >= clickstream.reco_min_
 *                   participation, an empty cart (cart users are coupon candidates),
 *                   and SKUs of the category trending (>= 2 views in the last minute
 *                   and trend >= clickstream.reco_min_trend) that the user has not
 *                   bought: the top 3 by trend
 * Frequency cap: no action when the user's last action is closer than
 * clickstream.cap_s in event time (state in Redis, written with fls_emit_defer so a
 * replay decides from the same state; earlier events of the same batch are tracked
 * locally).
 * Budget pacing (both parts deterministic in event time, so a replay decides alike):
 *   1. the claim's limit grows with the sale: budget x min(1, pace_slack + elapsed /
 *      sale_duration), elapsed from the sale start (configured, or learned per
 *      partition); the budget can never be spent faster than that line, nor beyond
 *      the budget;
 *   2. the intent threshold moves with live conversion: min_intent =
 *      coupon_min_intent x max(1, conv / conv_ref), conv = the partition's purchases
 *      per cart add over the last 5 minutes: in a rush, when carts convert anyway,
 *      coupons go only to the more hesitant-but-likely users.
 * Claims are idempotent by action id (store.h): budget never exceeded, even with
 * several instances and replays. A refused claim sends nothing.
 */
#include "clickstream.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_intent_sim.h"
#include "task_participation.h"

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

enum {
        O_ID,
        O_USER,
        O_KIND,
        O_SKUS,
        O_VALUE,
        O_CAMPAIGN,
        O_INTENT,
        O_PART,
        O_VERS,
        O_REASON,
        O_TS,
        O__N
};
static const char *const out_names[O__N] = {
    "action_id",      "user_id",     "kind",         "skus",
    "coupon_value",   "campaign_id", "intent_score", "participation_score",
    "model_versions", "reason",      "event_ts"};

enum { VIEW, CLICK, SEARCH, CART_ADD, CART_REMOVE, PURCHASE };
/* Event types in schema order: the enum index is the feature index. */
static const char *const types[] = {"view",        "click",    "search", "cart_add",
                                    "cart_remove", "purchase", NULL};
static const char *const lifetime[] = {"n_view",     "n_click",       "n_search",
                                       "n_cart_add", "n_cart_remove", "n_purchase"};
static const char *const sku_feats[] = {"view", "cart_add", "purchase", NULL};

#define SEQ_CAP 24
#define TR_CAP  1024 /* list cap: TR_USE + the category's views later in a batch */
#define TR_USE  200  /* trending reads the category's last 200 views before the event */
#define T       FLS_ISIM_SEQ
enum { FAM_ACT, FAM_SKU, FAM_SEQ, FAM_TR, FAM_BUY };
static const fls_family_t families[] = {
    {"act", 60000, 30 * 60000, types, 0},
    {"sku", 60000, 10 * 60000, sku_feats, 0},
    {"seq", 0, SEQ_CAP, NULL, 0},
    {"tr", 0, TR_CAP, NULL, 3600},
    {"buy", 0, 8, NULL, 0},
    {NULL, 0, 0, NULL, 0},
};
static const char *const kind_names[] = {"coupon", "reminder", "recommendation"};

/* What decide() needs of an event, copied out of the reused Avro value. */
struct pending {
        fls_batch_t *batch;
        int32_t partition;
        int64_t offset, ts;
        int type, in_sale, late;
        int64_t cents, qty;
        size_t user, user_len, sku, sku_len, camp, camp_len; /* in text */
        int r_user, r_act, r_seq, r_buy, r_seen, r_sess, r_sku, r_tr, r_all, r_allring;
};

/* The user's state inside one batch: earlier actions of the same batch. */
struct seen {
        size_t user, user_len; /* in text; user_len 0: empty slot */
        int64_t act_ts;
        int coupon, reminded, capped;
};

typedef struct {
        int idx[F__N], oidx[O__N];
        int64_t user_ttl_s;
        double min_intent, max_intent, coupon_value, conv_ref, rem_min, reco_min,
            reco_trend, pace_slack;
        int64_t no_buy_ms, budget_c, cap_ms, sale_start, sale_ms;
        const fls_store_t *store;
        fls_model_t *intent, *part;
        char versions[256];
        size_t max_rows;
        float *xi, *xp, *si, *sp; /* reserved rows and scores */
        struct pending *pend;
        fls_click_feat_t *feat;
        size_t npend, pend_cap;
        size_t *order; /* pending indexes of the batch being decided */
        size_t norder;
        struct seen *seen;
        size_t seen_cap, seen_n; /* slots, events entered since the reset */
        uint64_t seen_poll;
        char *text;
        size_t text_len, text_cap;
        uint64_t poll;
        fls_counter_t *m_actions[3], *m_capped, *m_refused;
} clickstream_t;

static const fls_conf_def_t conf[] = {
    {"clickstream.user_ttl_s", FLS_CONF_INT, "86400", 60, 31536000,
     "Seconds a user's lifetime features are kept after their last event.", "consume"},
    {"clickstream.intent_model", FLS_CONF_STR, FLS_MODEL_DIR "/intent_sim.flsm", 1, 0,
     "Intent LSTM (flashstream train intent-sim); relative paths from the working "
     "directory.",
     "consume"},
    {"clickstream.participation_model", FLS_CONF_STR, FLS_MODEL_DIR "/participation.flsm",
     1, 0, "Participation forest (flashstream train participation).", "consume"},
    {"clickstream.coupon_min_intent", FLS_CONF_DBL, "0.3", 0, 1,
     "Lowest intent score for a coupon, before pacing raises it.", "consume"},
    {"clickstream.coupon_max_intent", FLS_CONF_DBL, "0.85", 0, 1,
     "Highest intent score for a coupon: surer buyers need none.", "consume"},
    {"clickstream.coupon_no_buy_s", FLS_CONF_INT, "300", 0, 86400,
     "A coupon needs no purchase by the user for this many seconds.", "consume"},
    {"clickstream.coupon_value", FLS_CONF_DBL, "5", 0.01, 1e6,
     "Value of one coupon, shop currency.", "consume"},
    {"clickstream.coupon_budget", FLS_CONF_DBL, "1000", 0, 1e12,
     "Coupon budget per campaign, shop currency, over all instances.", "consume judge"},
    {"clickstream.sale_start_ts", FLS_CONF_INT, "0", 0, 4102444800000.0,
     "Sale start, UTC ms, for pacing and reminders; 0: the first campaign event each "
     "partition sees.",
     "consume"},
    {"clickstream.sale_duration_s", FLS_CONF_INT, "50", 1, 31536000,
     "Sale length the budget must last (the simulator's default sale is 50 s).",
     "consume"},
    {"clickstream.pace_slack", FLS_CONF_DBL, "0.1", 0, 1,
     "Share of the budget spendable ahead of the linear pacing line.", "consume"},
    {"clickstream.conv_ref", FLS_CONF_DBL, "0.5", 0.001, 100,
     "Purchases per cart add above which the coupon threshold rises in proportion.",
     "consume"},
    {"clickstream.reminder_min_participation", FLS_CONF_DBL, "0.8", 0, 1,
     "Lowest participation score for a pre-sale reminder.", "consume"},
    {"clickstream.reco_min_participation", FLS_CONF_DBL, "0.7", 0, 1,
     "Lowest participation score for a recommendation.", "consume"},
    {"clickstream.reco_min_trend", FLS_CONF_DBL, "1.5", 0, 1000,
     "Lowest trend (last minute / mean minute of 10) of a recommended SKU.", "consume"},
    {"clickstream.cap_s", FLS_CONF_INT, "600", 0, 86400,
     "At most one action per user in this many seconds of event time.", "consume"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static void destroy(void *app)
{
        clickstream_t *c = app;
        if (!c)
                return;
        fls_model_destroy(c->intent);
        fls_model_destroy(c->part);
        free(c->xi);
        free(c->xp);
        free(c->si);
        free(c->sp);
        free(c->pend);
        free(c->feat);
        free(c->order);
        free(c->seen);
        free(c->text);
        free(c);
}

static fls_model_t *load_model(const char *path, const char *const *names, size_t n,
                               size_t seq, size_t rows, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(path, errstr, errstr_size);
        if (!m)
                return NULL;
        if (!fls_model_is_classifier(m) ||
            fls_model_check_features(m, names, n, errstr, errstr_size) < 0 ||
            fls_model_seq_len(m) != seq ||
            fls_model_reserve(m, rows, errstr, errstr_size) < 0) {
                if (!fls_model_is_classifier(m) || fls_model_seq_len(m) != seq)
                        snprintf(errstr, errstr_size,
                                 "%s: not a classifier with sequence length %zu", path,
                                 seq);
                fls_model_destroy(m);
                return NULL;
        }
        return m;
}

static int init(void **appp, const fls_app_env_t *env, char *errstr, size_t errstr_size)
{
        clickstream_t *c = calloc(1, sizeof(*c));
        const fls_conf_t *cf = env->conf;
        size_t rows;

        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int i = 0; i < F__N; i++) {
                c->idx[i] = fls_codec_field(env->in, field_names[i]);
                if (c->idx[i] < 0) {
                        snprintf(errstr, errstr_size, "ClickEvent has no field '%s'",
                                 field_names[i]);
                        goto fail;
                }
        }
        for (int i = 0; i < O__N; i++) {
                c->oidx[i] = fls_codec_field(env->out, out_names[i]);
                if (c->oidx[i] < 0) {
                        snprintf(errstr, errstr_size, "MarketingAction has no field '%s'",
                                 out_names[i]);
                        goto fail;
                }
        }
        c->user_ttl_s = fls_conf_int(cf, "clickstream.user_ttl_s");
        c->min_intent = fls_conf_dbl(cf, "clickstream.coupon_min_intent");
        c->max_intent = fls_conf_dbl(cf, "clickstream.coupon_max_intent");
        c->no_buy_ms = fls_conf_int(cf, "clickstream.coupon_no_buy_s") * 1000;
        c->coupon_value = fls_conf_dbl(cf, "clickstream.coupon_value");
        c->budget_c = llround(fls_conf_dbl(cf, "clickstream.coupon_budget") * 100);
        c->sale_start = fls_conf_int(cf, "clickstream.sale_start_ts");
        c->sale_ms = fls_conf_int(cf, "clickstream.sale_duration_s") * 1000;
        c->pace_slack = fls_conf_dbl(cf, "clickstream.pace_slack");
        c->conv_ref = fls_conf_dbl(cf, "clickstream.conv_ref");
        c->rem_min = fls_conf_dbl(cf, "clickstream.reminder_min_participation");
        c->reco_min = fls_conf_dbl(cf, "clickstream.reco_min_participation");
        c->reco_trend = fls_conf_dbl(cf, "clickstream.reco_min_trend");
        c->cap_ms = fls_conf_int(cf, "clickstream.cap_s") * 1000;
        c->store = env->store;
        /* Both models are built once; their scratch and our row buffers are reserved
         * for the largest batch, so scoring never allocates. */
        rows = (size_t)fls_conf_int(cf, "batch.max_messages");
        c->max_rows = rows;
        if (!(c->intent = load_model(fls_conf_str(cf, "clickstream.intent_model"),
                                     fls_isim_feature_names(), fls_isim_nfeatures(), T,
                                     rows, errstr, errstr_size)) ||
            !(c->part = load_model(fls_conf_str(cf, "clickstream.participation_model"),
                                   fls_part_feature_names(), fls_part_nfeatures(), 1,
                                   rows, errstr, errstr_size)))
                goto fail;
        snprintf(c->versions, sizeof(c->versions), "%s@%s,%s@%s",
                 fls_model_name(c->intent), fls_model_version(c->intent),
                 fls_model_name(c->part), fls_model_version(c->part));
        c->xi = malloc(rows * T * fls_isim_nfeatures() * sizeof(float));
        c->xp = malloc(rows * fls_part_nfeatures() * sizeof(float));
        c->si = malloc(rows * sizeof(float));
        c->sp = malloc(rows * sizeof(float));
        c->order = malloc(rows * sizeof(size_t));
        if (!c->xi || !c->xp || !c->si || !c->sp || !c->order) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        if (env->metrics) {
                for (int k = 0; k < 3; k++) {
                        char lab[64];
                        snprintf(lab, sizeof(lab), "kind=\"%s\"", kind_names[k]);
                        c->m_actions[k] = fls_metrics_counter(
                            env->metrics, "fls_clickstream_actions_total",
                            "Marketing actions sent, by kind.", lab);
                }
                c->m_capped = fls_metrics_counter(
                    env->metrics, "fls_clickstream_capped_total",
                    "Actions held back by the per-user frequency cap.", "");
                c->m_refused = fls_metrics_counter(
                    env->metrics, "fls_clickstream_coupon_refused_total",
                    "Coupons refused by the paced campaign budget.", "");
        }
        *appp = c;
        return 0;
fail:
        destroy(c);
        return -1;
}

static fls_bad_t check(void *app, avro_value_t *ev, const char *key, size_t keylen,
                       int64_t *ts, char *detail, size_t detail_size)
{
        clickstream_t *c = app;
        size_t ulen, slen, clen;
        const char *user = fls_avro_str(ev, c->idx[F_USER], &ulen);
        int type = fls_avro_enum(ev, c->idx[F_TYPE]);
        double price = fls_avro_double(ev, c->idx[F_PRICE]);

        fls_avro_str(ev, c->idx[F_SKU], &slen);
        fls_avro_str(ev, c->idx[F_CATEGORY], &clen);
        if (ulen == 0 || ulen > 128) {
                snprintf(detail, detail_size, "user_id empty or longer than 128 bytes");
                return FLS_BAD_VALUE;
        }
        if (!key || keylen != ulen || memcmp(key, user, ulen) != 0) {
                snprintf(detail, detail_size, "key is not the user_id");
                return FLS_BAD_KEY;
        }
        if (!isfinite(price) || price < 0 || price > 1e9) {
                snprintf(detail, detail_size, "price %g is not a finite value in 0..1e9",
                         price);
                return FLS_BAD_VALUE;
        }
        if (fls_avro_int(ev, c->idx[F_QTY]) < 0 ||
            fls_avro_int(ev, c->idx[F_DWELL]) < 0) {
                snprintf(detail, detail_size, "negative quantity or dwell_ms");
                return FLS_BAD_VALUE;
        }
        if (slen == 0 && type != SEARCH) {
                snprintf(detail, detail_size, "empty sku on a %s event", types[type]);
                return FLS_BAD_VALUE;
        }
        /* SKUs travel in space-separated list items and recommendation arrays. */
        if (slen > 60 || clen > 60 ||
            memchr(fls_avro_str(ev, c->idx[F_SKU], &slen), ' ', slen)) {
                snprintf(detail, detail_size,
                         "sku or category longer than 60 bytes, or sku with a space");
                return FLS_BAD_VALUE;
        }
        *ts = fls_avro_long(ev, c->idx[F_TS]);
        return FLS_BAD_NONE;
}

static size_t keep(clickstream_t *c, const char *str, size_t len)
{
        size_t off = c->text_len;
        if (c->text_len + len + 1 > c->text_cap) {
                size_t cap = c->text_cap ? c->text_cap : 4096;
                char *t;
                while (cap < c->text_len + len + 1)
                        cap *= 2;
                t = realloc(c->text, cap);
                if (!t)
                        abort(); /* bounded by batch.max_messages */
                c->text = t;
                c->text_cap = cap;
        }
        memcpy(c->text + off, str, len);
        c->text[off + len] = '\0';
        c->text_len += len + 1;
        return off;
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        clickstream_t *c = app;
        char ent[300], item[200];
        size_t ulen, slen, clen, selen, cplen;
        const char *user = fls_avro_str(v, c->idx[F_USER], &ulen);
        const char *sku = fls_avro_str(v, c->idx[F_SKU], &slen);
        const char *cat = fls_avro_str(v, c->idx[F_CATEGORY], &clen);
        const char *sess = fls_avro_str(v, c->idx[F_SESSION], &selen);
        const char *camp = fls_avro_str(v, c->idx[F_CAMPAIGN], &cplen);
        int type = fls_avro_enum(v, c->idx[F_TYPE]);
        int64_t cents = llround(fls_avro_double(v, c->idx[F_PRICE]) * 100);
        int64_t qty = fls_avro_int(v, c->idx[F_QTY]);
        int u, s, n, vs, se, pa;
        struct pending *p;

        if (c->poll != ev->poll) {
                /* A new poll: every batch of the previous one was decided. */
                c->poll = ev->poll;
                c->npend = 0;
                c->text_len = 0;
        }
        if (c->npend == c->pend_cap) {
                size_t cap = c->pend_cap ? c->pend_cap * 2 : 256;
                struct pending *np = realloc(c->pend, cap * sizeof(*np));
                fls_click_feat_t *nf;
                if (!np)
                        abort(); /* bounded by batch.max_messages */
                c->pend = np;
                nf = realloc(c->feat, cap * sizeof(*nf));
                if (!nf)
                        abort();
                c->feat = nf;
                c->pend_cap = cap;
        }
        p = &c->pend[c->npend++];
        memset(p, 0, sizeof(*p));
        p->batch = b;
        p->partition = ev->partition;
        p->offset = ev->offset;
        p->ts = ev->ts;
        p->type = type;
        p->in_sale = cplen > 0;
        p->late = ev->late;
        p->cents = cents;
        p->qty = qty;
        p->user = keep(c, user, ulen);
        p->user_len = ulen;
        p->sku = keep(c, sku, slen);
        p->sku_len = slen;
        p->camp = keep(c, camp, cplen);
        p->camp_len = cplen;
        p->r_sku = p->r_tr = -1;

        n = snprintf(ent, sizeof(ent), "u:%.*s", (int)ulen, user);
        u = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, u, lifetime[type], 1);
        fls_batch_setmax(b, u, "last_ts", ev->ts);
        fls_batch_expire(b, u, c->user_ttl_s);
        if (!ev->late)
                fls_batch_window(b, u, FAM_ACT, type, ev->ts, 1);
        n = snprintf(item, sizeof(item),
                     "%" PRId64 " %" PRId64 " %d %" PRId64 " %" PRId64 " %d %d %.*s",
                     ev->offset, ev->ts, type, cents, qty, p->in_sale, ev->late,
                     (int)slen, sku);
        fls_batch_push(b, u, FAM_SEQ, item, (size_t)n);
        if (type == VIEW) {
                fls_batch_incr(b, u, "pv_c", cents);
                if (!p->in_sale)
                        fls_batch_incr(b, u, "pre_views", 1);
        } else if (type == CART_ADD) {
                fls_batch_incr(b, u, "cart_c", cents * qty);
                fls_batch_incr(b, u, "cart_n", qty);
        } else if (type == CART_REMOVE || type == PURCHASE) {
                fls_batch_incr(b, u, "cart_c", -cents * qty);
                fls_batch_incr(b, u, "cart_n", -qty);
                if (type == PURCHASE) {
                        fls_batch_setmax(b, u, "last_buy_ts", ev->ts);
                        n = snprintf(item, sizeof(item), "%" PRId64 " %" PRId64,
                                     ev->offset, ev->ts);
                        fls_batch_push(b, u, FAM_BUY, item, (size_t)n);
                }
        }
        p->r_user = fls_batch_read(b, u, -1);
        p->r_act = fls_batch_read(b, u, FAM_ACT);
        p->r_seq = fls_batch_read(b, u, FAM_SEQ);
        p->r_buy = fls_batch_read(b, u, FAM_BUY);

        n = snprintf(ent, sizeof(ent), "v:%.*s", (int)ulen, user);
        vs = fls_batch_entity(b, ent, (size_t)n);
        if (type == VIEW) {
                n = snprintf(ent, sizeof(ent), "s%.*s", (int)slen, sku);
                fls_batch_set(b, vs, ent, "1", 1);
                if (clen) {
                        n = snprintf(ent, sizeof(ent), "c%.*s", (int)clen, cat);
                        fls_batch_set(b, vs, ent, "1", 1);
                }
        } else if (type == PURCHASE) {
                n = snprintf(ent, sizeof(ent), "b%.*s", (int)slen, sku);
                fls_batch_set(b, vs, ent, "1", 1);
        }
        fls_batch_expire(b, vs, c->user_ttl_s);
        p->r_seen = fls_batch_read(b, vs, -1);

        if (selen > 0 && selen < 200) {
                n = snprintf(ent, sizeof(ent), "se:%.*s", (int)selen, sess);
                se = fls_batch_entity(b, ent, (size_t)n);
                fls_batch_setmax(b, se, "neg_start", -ev->ts);
                fls_batch_setmax(b, se, "end", ev->ts);
                fls_batch_expire(b, se, c->user_ttl_s);
                p->r_sess = fls_batch_read(b, se, -1);
        } else {
                p->r_sess = -1;
        }

        pa = fls_batch_entity(b, "p:all", 5);
        if (p->in_sale)
                fls_batch_setmax(b, pa, "sale_neg", -ev->ts);
        if (!ev->late && (type == CART_ADD || type == PURCHASE))
                fls_batch_window(b, pa, FAM_SKU, type == CART_ADD ? 1 : 2, ev->ts, 1);
        p->r_all = fls_batch_read(b, pa, -1);
        p->r_allring = fls_batch_read(b, pa, FAM_SKU);

        if (slen == 0)
                return;
        fls_batch_set(b, u, "last_sku", sku, slen);
        n = snprintf(ent, sizeof(ent), "s:%.*s", (int)slen, sku);
        s = fls_batch_entity(b, ent, (size_t)n);
        fls_batch_incr(b, s, lifetime[type], 1);
        fls_batch_expire(b, s, c->user_ttl_s);
        p->r_sku = fls_batch_read(b, s, FAM_SKU);
        if (type == VIEW && clen) {
                int k;
                n = snprintf(ent, sizeof(ent), "k:%.*s", (int)clen, cat);
                k = fls_batch_entity(b, ent, (size_t)n);
                if (!ev->late) {
                        n = snprintf(item, sizeof(item), "%" PRId64 " %" PRId64 " %.*s",
                                     ev->offset, ev->ts, (int)slen, sku);
                        fls_batch_push(b, k, FAM_TR, item, (size_t)n);
                }
                p->r_tr = fls_batch_read(b, k, FAM_TR);
        }
        if (ev->late)
                return;
        if (type == VIEW)
                fls_batch_window(b, s, FAM_SKU, 0, ev->ts, 1);
        else if (type == CART_ADD)
                fls_batch_window(b, s, FAM_SKU, 1, ev->ts, 1);
        else if (type == PURCHASE)
                fls_batch_window(b, s, FAM_SKU, 2, ev->ts, 1);
}

/* ---- features ------------------------------------------------------------- */

struct item {
        int64_t offset, ts, cents, qty;
        int type, sale, late;
        const char *sku;
        size_t sku_len;
};

static int parse_item(const char *s, struct item *it)
{
        int pos = 0;
        long long o, t, ce, q;
        int ty, sa, la;
        if (sscanf(s, "%lld %lld %d %lld %lld %d %d %n", &o, &t, &ty, &ce, &q, &sa, &la,
                   &pos) != 7 ||
            ty < 0 || ty > 5)
                return -1;
        it->offset = o;
        it->ts = t;
        it->type = ty;
        it->cents = ce;
        it->qty = q;
        it->sale = sa;
        it->late = la;
        it->sku = s + pos;
        it->sku_len = strlen(s + pos);
        return 0;
}

static int64_t ring(const clickstream_t *c, const fls_hash_t *h, int fam, int feat,
                    int64_t ts, int64_t window)
{
        return h ? fls_ring_sum(c->store, h, fam, feat, ts, window) : 0;
}

static int64_t count_prefix(const fls_hash_t *h, char prefix)
{
        int64_t n = 0;
        for (size_t i = 0; h && i < h->n; i++)
                n += h->fields[i][0] == prefix;
        return n;
}

/* Trending SKUs of the category list for event p; fills f->reco. */
static void trending(clickstream_t *c, const struct pending *p, const fls_hash_t *tr,
                     const fls_hash_t *seen, fls_click_feat_t *f)
{
        struct {
                const char *sku;
                size_t len;
                int c1, c10;
        } cand[TR_USE];
        size_t nc = 0;
        double best[FLS_CLICK_MAX_RECO] = {0};

        size_t eligible = 0, skip;

        f->nreco = 0;
        /* Only the last TR_USE views up to this event count, whatever the batch held
         * after it: the list keeps TR_CAP so that later views of the batch do not
         * trim them, which keeps the choice independent of batch boundaries. */
        for (size_t i = 0; tr && i < tr->n; i++)
                eligible += strtoll(tr->fields[i], NULL, 10) <= p->offset;
        skip = eligible > TR_USE ? eligible - TR_USE : 0;
        for (size_t i = 0; tr && i < tr->n; i++) {
                const char *s = tr->fields[i];
                char *sp;
                int64_t off = strtoll(s, &sp, 10), ts = strtoll(sp, &sp, 10);
                size_t k, len;
                /* Views after this event (later in the batch) are not seen yet. */
                if (off > p->offset)
                        continue;
                if (skip > 0) {
                        skip--;
                        continue;
                }
                if (*sp != ' ' || ts > p->ts || ts <= p->ts - 600000)
                        continue;
                sp++;
                len = strlen(sp);
                for (k = 0; k < nc; k++)
                        if (cand[k].len == len && memcmp(cand[k].sku, sp, len) == 0)
                                break;
                if (k == nc) {
                        if (nc == TR_USE)
                                continue;
                        cand[nc].sku = sp;
                        cand[nc].len = len;
                        cand[nc].c1 = cand[nc].c10 = 0;
                        nc++;
                }
                cand[k].c10++;
                cand[k].c1 += ts > p->ts - 60000;
        }
        for (size_t k = 0; k < nc; k++) {
                double trend = cand[k].c1 / (cand[k].c10 / 10.0);
                char key[80];
                int slot;
                if (cand[k].c1 < 2 || trend < c->reco_trend || cand[k].len >= 63)
                        continue;
                if (cand[k].len == p->sku_len &&
                    memcmp(cand[k].sku, c->text + p->sku, p->sku_len) == 0)
                        continue;
                snprintf(key, sizeof(key), "b%.*s", (int)cand[k].len, cand[k].sku);
                if (seen && fls_hash_get(seen, key))
                        continue; /* already bought */
                /* Insert into the top list (descending trend, then first seen). */
                for (slot = f->nreco; slot > 0 && best[slot - 1] < trend; slot--)
                        ;
                if (slot >= FLS_CLICK_MAX_RECO)
                        continue;
                for (int j = (f->nreco < FLS_CLICK_MAX_RECO ? f->nreco
                                                            : FLS_CLICK_MAX_RECO - 1);
                     j > slot; j--) {
                        best[j] = best[j - 1];
                        memcpy(f->reco[j], f->reco[j - 1], sizeof(f->reco[j]));
                }
                best[slot] = trend;
                snprintf(f->reco[slot], sizeof(f->reco[slot]), "%.*s", (int)cand[k].len,
                         cand[k].sku);
                if (f->nreco < FLS_CLICK_MAX_RECO)
                        f->nreco++;
        }
}

/* Features of pending event p (as of it), its intent sequence and participation row. */
static void features(clickstream_t *c, const struct pending *p, fls_click_feat_t *f,
                     float *xi, float *xp)
{
        fls_batch_t *b = p->batch;
        const fls_hash_t *uh = fls_batch_reply(b, p->r_user);
        const fls_hash_t *act = fls_batch_reply(b, p->r_act);
        const fls_hash_t *seq = fls_batch_reply(b, p->r_seq);
        const fls_hash_t *seen = fls_batch_reply(b, p->r_seen);
        const fls_hash_t *all = fls_batch_reply(b, p->r_all);
        const fls_hash_t *allr = fls_batch_reply(b, p->r_allring);
        const fls_hash_t *sk = p->r_sku >= 0 ? fls_batch_reply(b, p->r_sku) : NULL;
        fls_isim_ev_t hist[SEQ_CAP + 1];
        size_t nh = 0;
        int have_cur = 0;
        int64_t later_n[6] = {0}, later_w1[6] = {0}, later_w5[6] = {0},
                later_w30[6] = {0}, later_cart_c = 0, later_cart_n = 0, later_pv = 0,
                later_pre = 0, pv_c, last_buy = -1, prev_ts = -1;
        int64_t bkt = p->ts / 60000;
        char key[300];
        fls_part_in_t pin;

        memset(f, 0, sizeof(*f));
        f->type = p->type;
        f->ts = p->ts;
        f->in_sale = p->in_sale;
        for (size_t i = 0; seq && i < seq->n; i++) {
                struct item it;
                if (parse_item(seq->fields[i], &it) < 0)
                        continue;
                if (it.offset > p->offset) {
                        /* A later event of this batch: take it out again. */
                        int64_t ib = it.ts / 60000;
                        later_n[it.type]++;
                        if (!it.late && ib <= bkt) {
                                later_w30[it.type] += ib > bkt - 30;
                                later_w5[it.type] += ib > bkt - 5;
                                later_w1[it.type] += ib > bkt - 1;
                        }
                        if (it.type == CART_ADD)
                                later_cart_c += it.cents * it.qty, later_cart_n += it.qty;
                        else if (it.type == CART_REMOVE || it.type == PURCHASE)
                                later_cart_c -= it.cents * it.qty, later_cart_n -= it.qty;
                        if (it.type == VIEW) {
                                later_pv += it.cents;
                                later_pre += !it.sale;
                        }
                        continue;
                }
                if (it.offset == p->offset)
                        have_cur = 1;
                else
                        prev_ts = it.ts;
                if (it.type == PURCHASE && it.offset <= p->offset &&
                    (last_buy < 0 || it.ts > last_buy))
                        last_buy = it.ts;
                if (nh < SEQ_CAP)
                        hist[nh++] =
                            (fls_isim_ev_t){it.type, it.ts, (double)it.cents / 100.0,
                                            fls_isim_sku_id(it.sku, it.sku_len), it.sale};
        }
        if (!have_cur) {
                /* Trimmed away by later events of the batch: the event itself. */
                if (nh == SEQ_CAP)
                        memmove(hist, hist + 1, (SEQ_CAP - 1) * sizeof(*hist)), nh--;
                hist[nh++] = (fls_isim_ev_t){
                    p->type, p->ts, (double)p->cents / 100.0,
                    p->sku_len ? fls_isim_sku_id(c->text + p->sku, p->sku_len) : 0,
                    p->in_sale};
        }
        fls_isim_sequence(hist, nh, xi);
        for (int t = 0; t < 6; t++) {
                f->n[t] = fls_hash_int(uh, lifetime[t], 0) - later_n[t];
                f->w1[t] = ring(c, act, FAM_ACT, t, p->ts, 60000) - later_w1[t];
                f->w5[t] = ring(c, act, FAM_ACT, t, p->ts, 300000) - later_w5[t];
                f->w30[t] = ring(c, act, FAM_ACT, t, p->ts, 1800000) - later_w30[t];
        }
        f->cart_value = (double)(fls_hash_int(uh, "cart_c", 0) - later_cart_c) / 100.0;
        f->cart_items = fls_hash_int(uh, "cart_n", 0) - later_cart_n;
        /* Removes and purchases of items added before the key's TTL or arriving
         * before their add (out of order) can take the balance below 0. */
        if (f->cart_value < 0)
                f->cart_value = 0;
        if (f->cart_items < 0)
                f->cart_items = 0;
        pv_c = fls_hash_int(uh, "pv_c", 0) - later_pv;
        f->pre_views = fls_hash_int(uh, "pre_views", 0) - later_pre;
        f->avg_view_price =
            f->n[VIEW] > 0 ? (double)pv_c / 100.0 / (double)f->n[VIEW] : 0;
        f->price_band = f->n[VIEW] <= 0             ? -1
                        : f->avg_view_price < 20.0  ? 0
                        : f->avg_view_price < 50.0  ? 1
                        : f->avg_view_price < 100.0 ? 2
                        : f->avg_view_price < 250.0 ? 3
                                                    : 4;
        {
                /* The user's last 8 purchases "offset ts": the latest up to this
                 * event, whatever the batch holds after it. */
                const fls_hash_t *buys = fls_batch_reply(b, p->r_buy);
                for (size_t i = 0; buys && i < buys->n; i++) {
                        char *end;
                        int64_t off = strtoll(buys->fields[i], &end, 10);
                        int64_t ts = strtoll(end, NULL, 10);
                        if (off <= p->offset && ts > last_buy)
                                last_buy = ts;
                }
        }
        f->since_purchase_ms = last_buy >= 0 ? p->ts - last_buy : -1;
        f->since_last_ms = prev_ts >= 0 ? (p->ts > prev_ts ? p->ts - prev_ts : 0) : -1;
        if (p->r_sess >= 0) {
                const fls_hash_t *sh = fls_batch_reply(b, p->r_sess);
                f->session_start = -fls_hash_int(sh, "neg_start", -p->ts);
                f->session_len_ms =
                    p->ts > f->session_start ? p->ts - f->session_start : 0;
        } else {
                f->session_start = p->ts;
        }
        f->distinct_skus = count_prefix(seen, 's');
        f->distinct_cats = count_prefix(seen, 'c');
        if (sk) {
                int64_t v5 = ring(c, sk, FAM_SKU, 0, p->ts, 300000);
                int64_t v10 = ring(c, sk, FAM_SKU, 0, p->ts, 600000);
                f->sku_view_1m = ring(c, sk, FAM_SKU, 0, p->ts, 60000);
                f->sku_cart_1m = ring(c, sk, FAM_SKU, 1, p->ts, 60000);
                f->sku_purchase_1m = ring(c, sk, FAM_SKU, 2, p->ts, 60000);
                f->sku_conv_5m =
                    v5 > 0 ? (double)ring(c, sk, FAM_SKU, 2, p->ts, 300000) / (double)v5
                           : 0;
                f->sku_trend =
                    v10 > 0 ? (double)f->sku_view_1m / ((double)v10 / 10.0) : 0;
        }
        f->last_action_ts = fls_hash_int(uh, "act_ts", -1);
        snprintf(key, sizeof(key), "cpn:%.*s", (int)p->camp_len, c->text + p->camp);
        f->coupon_taken = p->camp_len > 0 && fls_hash_get(uh, key) != NULL;
        f->reminded = fls_hash_get(uh, "rem") != NULL;
        f->was_capped = fls_hash_get(uh, "capped") != NULL;
        f->claim = -1;
        if (c->sale_start > 0)
                f->sale_start = c->sale_start;
        else
                f->sale_start = fls_hash_get(all, "sale_neg")
                                    ? -fls_hash_int(all, "sale_neg", 0)
                                    : -1;
        f->viewed_sale_sku_pre =
            f->pre_views > 0 && f->sale_start >= 0 && p->ts >= f->sale_start;
        {
                /* The 5 minutes before the event's minute: later events of the
                 * batch (other users) land in the current minute, so the threshold
                 * does not depend on where a batch ends. */
                int64_t carts = ring(c, allr, FAM_SKU, 1, p->ts - 60000, 300000);
                int64_t buys = ring(c, allr, FAM_SKU, 2, p->ts - 60000, 300000);
                f->part_conv_5m = carts > 0 ? (double)buys / (double)carts : 0;
        }
        memset(&pin, 0, sizeof(pin));
        for (int t = 0; t < 6; t++) {
                pin.n[t] = f->n[t];
                pin.w5[t] = f->w5[t];
                pin.w30[t] = f->w30[t];
        }
        pin.cart_value = f->cart_value;
        pin.since_last_s = f->since_last_ms >= 0 ? (double)f->since_last_ms / 1000.0 : -1;
        pin.since_purchase_s =
            f->since_purchase_ms >= 0 ? (double)f->since_purchase_ms / 1000.0 : -1;
        pin.avg_view_price = f->avg_view_price;
        pin.pre_views = f->pre_views;
        fls_part_row(&pin, xp);
}

/* The in-batch state of a user: open addressing over c->seen (2 x events slots). */
static struct seen *seen_get(clickstream_t *c, const struct pending *p)
{
        uint32_t h = fls_isim_sku_id(c->text + p->user, p->user_len);
        size_t cap = c->seen_cap, i = h % cap;
        for (;; i = (i + 1) % cap) {
                struct seen *s = &c->seen[i];
                if (s->user_len == 0) {
                        s->user = p->user;
                        s->user_len = p->user_len;
                        s->act_ts = -1;
                        return s;
                }
                if (s->user_len == p->user_len &&
                    memcmp(c->text + s->user, c->text + p->user, p->user_len) == 0)
                        return s;
        }
}

static void policy(clickstream_t *c, const struct pending *p, fls_click_feat_t *f,
                   struct seen *sn)
{
        int64_t last = f->last_action_ts > sn->act_ts ? f->last_action_ts : sn->act_ts;
        int cap_ok = last < 0 || llabs(p->ts - last) >= c->cap_ms;
        int before_sale = !p->in_sale && (f->sale_start < 0 || p->ts < f->sale_start);
        double conv = f->part_conv_5m / c->conv_ref;

        f->kind = FLS_CLICK_NONE;
        f->reason = "none";
        f->min_intent = c->min_intent * (conv > 1 ? conv : 1);
        if (p->in_sale && f->cart_items > 0 && !f->coupon_taken && !sn->coupon &&
            (f->since_purchase_ms < 0 || f->since_purchase_ms >= c->no_buy_ms) &&
            f->intent >= f->min_intent && f->intent <= c->max_intent) {
                f->kind = FLS_CLICK_COUPON;
                f->reason = "cart_hesitant";
        } else if (before_sale && f->participation >= c->rem_min && f->pre_views > 0 &&
                   !f->reminded && !sn->reminded) {
                f->kind = FLS_CLICK_REMINDER;
                f->reason = "pre_sale_interest";
        } else if (p->type == VIEW && p->r_tr >= 0 && f->participation >= c->reco_min &&
                   f->cart_items == 0) {
                trending(c, p, fls_batch_reply(p->batch, p->r_tr),
                         fls_batch_reply(p->batch, p->r_seen), f);
                if (f->nreco > 0) {
                        f->kind = FLS_CLICK_RECOMMENDATION;
                        f->reason = "trending_in_category";
                }
        }
        if (f->kind != FLS_CLICK_NONE && !cap_ok) {
                f->capped = 1;
                f->first_cap = !f->was_capped && !sn->capped;
                sn->capped = 1;
                f->kind = FLS_CLICK_NONE;
                f->reason = "capped";
        }
        if (f->kind == FLS_CLICK_NONE)
                return;
        sn->act_ts = p->ts > sn->act_ts ? p->ts : sn->act_ts;
        sn->coupon |= f->kind == FLS_CLICK_COUPON;
        sn->reminded |= f->kind == FLS_CLICK_REMINDER;
}

int fls_clickstream_prepare(void *app, fls_batch_t *b, char *errstr, size_t errstr_size)
{
        clickstream_t *c = app;
        size_t nfi = T * fls_isim_nfeatures(), nfp = fls_part_nfeatures(), n = 0;

        for (size_t i = 0; i < c->npend && n < c->max_rows; i++)
                if (c->pend[i].batch == b)
                        c->order[n++] = i;
        c->norder = n;
        if (n == 0)
                return 0;
        for (size_t k = 0; k < n; k++)
                features(c, &c->pend[c->order[k]], &c->feat[c->order[k]], c->xi + k * nfi,
                         c->xp + k * nfp);
        if (fls_model_predict(c->intent, c->xi, n, c->si, errstr, errstr_size) < 0 ||
            fls_model_predict(c->part, c->xp, n, c->sp, errstr, errstr_size) < 0)
                return -1;
        /* The users' in-poll state lives for the whole poll, not one batch: after a
         * restart a poll holds the replayed batch and the next new one of the same
         * partition, and the replayed batch's deferred cap writes reach Redis only
         * with the partition's next script call, after this poll. */
        if (c->seen_poll != c->poll || c->seen_n + n >= c->seen_cap / 2) {
                size_t want = 2 * (c->npend > c->max_rows ? c->npend : c->max_rows) + 1;
                if (c->seen_cap < want) {
                        struct seen *ns = realloc(c->seen, want * sizeof(*ns));
                        if (!ns) {
                                snprintf(errstr, errstr_size, "out of memory");
                                return -1;
                        }
                        c->seen = ns;
                        c->seen_cap = want;
                }
                memset(c->seen, 0, c->seen_cap * sizeof(*c->seen));
                c->seen_poll = c->poll;
                c->seen_n = 0;
        }
        c->seen_n += n;
        for (size_t k = 0; k < n; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                /* Rounded to 1e-4: OpenBLAS may round the last bits differently
                 * for another batch size, and a replay must send the same record. */
                f->intent = roundf(c->si[k] * 1e4f) / 1e4f;
                f->participation = roundf(c->sp[k] * 1e4f) / 1e4f;
                policy(c, p, f, seen_get(c, p));
        }
        return 0;
}

size_t fls_clickstream_count(void *app)
{
        return ((clickstream_t *)app)->norder;
}

const fls_click_feat_t *fls_clickstream_feat(void *app, size_t i)
{
        clickstream_t *c = app;
        return i < c->norder ? &c->feat[c->order[i]] : NULL;
}

/* ---- decisions -------------------------------------------------------------- */

static int send(clickstream_t *c, fls_emit_t *emit, const struct pending *p,
                const fls_click_feat_t *f, const char *id, char *errstr,
                size_t errstr_size)
{
        avro_value_t *out = fls_emit_begin(emit);
        const char *user = c->text + p->user;
        int *o = c->oidx, rc;

        rc = fls_avro_set_str(out, o[O_ID], id, strlen(id)) ||
             fls_avro_set_str(out, o[O_USER], user, p->user_len) ||
             fls_avro_set_enum(out, o[O_KIND], f->kind) ||
             fls_avro_set_double(out, o[O_VALUE],
                                 f->kind == FLS_CLICK_COUPON ? c->coupon_value : 0) ||
             fls_avro_set_str(out, o[O_CAMPAIGN], c->text + p->camp, p->camp_len) ||
             fls_avro_set_double(out, o[O_INTENT], f->intent) ||
             fls_avro_set_double(out, o[O_PART], f->participation) ||
             fls_avro_set_str(out, o[O_VERS], c->versions, strlen(c->versions)) ||
             fls_avro_set_str(out, o[O_REASON], f->reason, strlen(f->reason)) ||
             fls_avro_set_long(out, o[O_TS], p->ts);
        if (f->kind == FLS_CLICK_RECOMMENDATION)
                for (int k = 0; k < f->nreco && !rc; k++)
                        rc = fls_avro_append_str(out, o[O_SKUS], f->reco[k],
                                                 strlen(f->reco[k]));
        else if (p->sku_len)
                rc = rc ||
                     fls_avro_append_str(out, o[O_SKUS], c->text + p->sku, p->sku_len);
        if (rc) {
                snprintf(errstr, errstr_size, "building MarketingAction: %s",
                         avro_strerror());
                return -1;
        }
        return fls_emit_send(emit, user, p->user_len, errstr, errstr_size);
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        clickstream_t *c = app;
        fls_claims_t *cl = fls_emit_claims(emit);
        int nclaims = 0;
        char id[512], ent[300], field[300];

        if (fls_clickstream_prepare(app, b, errstr, errstr_size) < 0)
                return -1;
        /* Coupons first claim their value on the campaign's budget, all in one round
         * trip; the paced limit is a pure function of the event time. */
        for (size_t k = 0; k < c->norder; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                int64_t start = f->sale_start >= 0 ? f->sale_start : p->ts, limit;
                double share;
                char counter[300];
                if (f->kind != FLS_CLICK_COUPON)
                        continue;
                share = c->pace_slack + (double)(p->ts - start) / (double)c->sale_ms;
                limit = share >= 1 ? c->budget_c : (int64_t)((double)c->budget_c * share);
                fls_emit_id(emit, p->partition, p->offset, "coupon", id, sizeof(id));
                snprintf(counter, sizeof(counter), "budget:%.*s", (int)p->camp_len,
                         c->text + p->camp);
                f->claim = fls_claims_add(cl, counter, id, llround(c->coupon_value * 100),
                                          limit);
                nclaims++;
        }
        if (nclaims && fls_emit_claims_run(emit) < 0) {
                snprintf(errstr, errstr_size, "stopping while claiming coupon budgets");
                return -1;
        }
        for (size_t k = 0; k < c->norder; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                snprintf(ent, sizeof(ent), "u:%.*s", (int)p->user_len, c->text + p->user);
                if (f->capped) {
                        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_INCR, "capped",
                                       1, NULL);
                        if (f->first_cap)
                                fls_emit_defer(emit, p->partition, "p:all",
                                               FLS_DEFER_INCR, "capped_users", 1, NULL);
                        if (c->m_capped)
                                fls_counter_add(c->m_capped, 1);
                        continue;
                }
                if (f->kind == FLS_CLICK_NONE)
                        continue;
                if (f->kind == FLS_CLICK_COUPON) {
                        if (fls_claims_granted(cl, f->claim) <= 0) {
                                f->reason = "budget_paced";
                                if (c->m_refused)
                                        fls_counter_add(c->m_refused, 1);
                                continue;
                        }
                }
                fls_emit_id(emit, p->partition, p->offset, kind_names[f->kind], id,
                            sizeof(id));
                if (send(c, emit, p, f, id, errstr, errstr_size) < 0)
                        return -1;
                if (c->m_actions[f->kind])
                        fls_counter_add(c->m_actions[f->kind], 1);
                fls_emit_defer(emit, p->partition, ent, FLS_DEFER_MAX, "act_ts", p->ts,
                               NULL);
                if (f->kind == FLS_CLICK_COUPON) {
                        snprintf(field, sizeof(field), "cpn:%.*s", (int)p->camp_len,
                                 c->text + p->camp);
                        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_SET, field, 0,
                                       "1");
                } else if (f->kind == FLS_CLICK_REMINDER) {
                        fls_emit_defer(emit, p->partition, ent, FLS_DEFER_SET, "rem", 0,
                                       "1");
                }
        }
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
