/*
 * clickstream: storefront events -> rolling user, SKU and category features ->
 * intent and participation scores -> at most one marketing action per event.
 *
 * Sits on the runner (Kafka -> Avro -> here -> Redis -> models -> Kafka).
 *
 * Every decision is a function of the partition's input up to and including its
 * event, whatever the micro-batches were: a replay (read-only after a crash, or from
 * scratch in another group) makes the same actions with the same bytes. The runner
 * returns reads after the whole batch is applied, so each feature is made "as of the
 * event" in one of three ways:
 *   1. Additive state kept by update() (counters and event-time rings): the value read
 *      minus the contributions of the partition's events after this one that the
 *      Redis state already holds. In a new batch those are the batch's later events,
 *      known in memory. In a read-only replay Redis holds state up to the applied
 *      offset, which can be past the replayed batch: the journal p:all:j (the
 *      partition's last JOURNAL_CAP events, offset-tagged) supplies the rest, read
 *      only by read-only batches. This is why batch.max_messages may not exceed
 *      JOURNAL_CAP (checked at init).
 *   2. Set membership (SKUs bought): the field holds minus the offset of the first
 *      event that set it (a max of negatives is a min), so "as of offset o" is
 *      "value >= -o".
 *   3. What is neither (the user's last events for the LSTM, previous event and last
 *      purchase time, the session's start, the category's last views for trending,
 *      the partition's learned sale start, the decision state of caps): a snapshot per
 *      entity as of the last event whose outputs were flushed, written with
 *      fls_emit_defer so it becomes durable atomically with the "emitted" mark (a
 *      replay starts right after that mark, from that very state), advanced event by
 *      event in memory through one poll (the overlay: a poll can hold a read-only
 *      batch and a new one of the same partition, and the first one's deferred
 *      writes land only with the next poll). The store applies deferred writes once
 *      per "emitted" mark, in the script that stores the mark, so a retried script or
 *      a replay does not write them twice. The readers of the two lists each batch
 *      appends to, the user's history and the category's views, still skip copies
 *      and read as of the entity's first event of the poll, leaving out what is at or
 *      after it: a runner's teardown once recorded the deferred writes of its last
 *      batch with the mark it had, so a restart replayed events the lists already
 *      held, and Redis may still hold such lists (test_clickstream builds that state
 *      on purpose). Snapshots are lists of offset-tagged events (with the state after
 *      each). They hold more than the features read (UH, TR_KEEP, SALE_CH) so that
 *      the step back is exact, and being functions of the input alone they are the
 *      same for any batching. The decision marks (coupon, reminder, cap) hold minus
 *      the first offset, like set members, for the same reason.
 *
 * Keys (all under the partition's hash tag, see store.h):
 *   u:<user>       n_<type> lifetime counts, last_ts, last_sku, cart_c / cart_n (cart
 *                  value in cents and units: + on add, - on remove and purchase), pv_c
 *                  (sum of viewed prices, cents), pre_views (views without a campaign),
 *                  last_buy_ts; decision state act_ts (MAX), cpn:<campaign>
 *                  (a coupon of it was sent), rem (a reminder was sent), capped (an
 *                  action was held back): -(first offset); pre (see p:pre) and irem
 *                  "offset ts" (the inactive sweep at that trigger reminded the user)
 *   u:<user>:act   1-minute buckets of each event type (windows 1, 5, 30 minutes)
 *   u:<user>:h     list, the user's last UH events "offset type ts cents sku_id sale"
 *                  each with the state after it "last_buy session start act_ts",
 *                  act_ts the event time of the last action (see load_user)
 *   b:<user>       b<sku> bought: -(first offset)
 *   s:<sku>        lifetime counts; s:<sku>:sku 1-minute buckets of views, cart adds and
 *                  purchases (10 minutes): per-minute counts, 5-minute conversion,
 *                  trend = last minute / mean minute of the last 10
 *   k:<category>:tr  the category's last TR_KEEP views, a list appended to like
 *                  the user's history: "offset ts sku" each (trending reads the last
 *                  TRENDING_VIEWS)
 *   p:all          sale_neg (minus the first campaign event time, as applied),
 *                  sale_d (the same as a snapshot), sale_s "3 (offset sale)*" (its
 *                  last SALE_CH changes), capped_users; p:all:sku the
 *                  partition's cart adds and purchases per minute (live conversion);
 *                  p:all:j the journal, "offset ts type late sale cents qty s<sku> user";
 *                  sweep: -(offset of the event that triggered the inactive sweep)
 *   p:pre          <user> -> the user's record for the inactive sweep, the same string
 *                  as u:<user> pre: "1" then the user's last PRE_KEEP entries "offset
 *                  score act_ts rem", one per event before the sale (score: the
 *                  participation at it, x 1e4; act_ts and rem: the user's decision
 *                  state after it), and a last entry with score -1 once the user is
 *                  active after the sale start (sticky: nothing follows it). Only
 *                  users active before the sale have one (~100 bytes each)
 * Ring slots are recycled by events more than window + lateness newer: an event that
 * late in a batch can still take counts from the windows of earlier ones (bounded by
 * window.lateness_ms, not seen with the simulator).
 *
 * SKU trending across partitions: the topic is keyed by user, so each partition sees
 * the share of a SKU's traffic that its users make (~1/P with hashed users). Global
 * per-SKU counters are out of scope: the ratios used (conversion, trend, the
 * category's trending order) are estimated on the partition's share, which is an
 * unbiased sample of the SKU's traffic; absolute counts are the partition's share.
 *
 * Scoring: decide() builds one intent row (16 steps) and one participation row per
 * event into buffers reserved at init, and scores only the rows a decision reads
 * (score(): coupon candidates for intent; events before the sale and views that may
 * get a recommendation for participation; both for every action sent). Decisions are
 * the same as with every row scored, and the consumer uses 18 % less CPU. The
 * participation forest scores its rows in one call. The intent LSTM scores row by row:
 * OpenBLAS's sgemm gives a row results that depend on its position in the batch
 * (measured: rows 6-11 of each 12-row tile and the tail differ by up to 1.2e-7 on this
 * machine), which changes a replayed record's bytes and, near a threshold, a decision;
 * one row at a time measured 5.9 us/row against 6.35 us/row for batches of 300, so
 * batching bought nothing here. A single row goes through sgemv (models/lstm.c): 0.75
 * us/row against 1.5-1.9 with sgemm, on intent.flsm alone.
 *
 * Policy, first that applies, at most one action per event:
 *   COUPON          event under a campaign, cart_n > 0, no purchase for
 *                   clickstream.coupon_no_buy_s, min_intent <= intent <=
 *                   clickstream.coupon_max_intent (sure buyers need no coupon), and no
 *                   coupon of that campaign yet; then a claim on the campaign budget
 *   REMINDER        event before the sale (no campaign, and before the configured or
 *                   learned sale start), participation >= clickstream.reminder_min_
 *                   participation, pre-sale views (interest in SKUs going on sale),
 *                   no reminder yet (reason pre_sale_interest)
 *   RECOMMENDATION  a VIEW with a category, participation >= clickstream.reco_min_
 *                   participation, an empty cart (cart users are coupon candidates),
 *                   and SKUs of the category trending (>= 2 views in the last minute
 *                   and trend >= clickstream.reco_min_trend) that the user has not
 *                   bought: the top 3 by trend
 * Frequency cap: an action needs its event time at least clickstream.cap_s after the
 * user's last action (so an out-of-order event older than the last action gets none:
 * any two actions of a user are cap_s apart in event time).
 * Inactive since the sale began (REMINDER, reason inactive_since_sale): an inactive
 * user sends no event to decide on, so the partition's own event time drives it. The
 * first event (in offset order) whose time is at least the sale start (configured or
 * learned, as of the event) + clickstream.inactive_after_s triggers one sweep, once
 * per partition and sale (the p:all sweep mark, read as of the event). The sweep
 * reminds, as of the triggering event, every user of the partition whose record
 * (p:pre) has an event before the sale, none since its start, a last participation
 * score >= clickstream.inactive_min_participation, no reminder yet, and whose last
 * action is cap_s before the trigger's time (users the cap holds are skipped); the
 * clickstream.inactive_max_reminders best scores (ties: user id) if there are more.
 * Each reminder's id is "<topic>/<partition>/<trigger offset>/inactive:<user>", its
 * event_ts the trigger's time, and the sweep writes rem, act_ts and irem to the user
 * (deferred, like every decision mark), so any replay or batching sends the same
 * records once. Everything is as of the trigger: the record entries are offset-
 * tagged with the decision state after each event, entries at or after the trigger
 * (written ahead by a stopping runner) are left out, and the poll's own events come
 * from the overlay, whose records are authoritative for the users it holds. Exact
 * while a user has fewer than PRE_KEEP pre-sale events after the trigger in a batch
 * replayed over recorded writes (pre-sale events after the trigger are events older
 * than the sale start arriving over inactive_after_s late).
 * Cost: records are written (deferred SET on u:<user> and p:pre) only for batches
 * with a pre-sale event of the user, and once more when the user comes back. The
 * sweep reads p:pre (HGETALL: ~100 bytes per pre-sale user of the partition) in the
 * triggering batch: update() asks for it when the event can trigger, judged from a
 * per-partition cache (struct pcache) of the sweep's offset and a lower bound of the
 * learned sale start (so a needed read is never missed). With a learned start a cold
 * cache (the first batch after a start, or after a gap in the partition's offsets: a
 * rebalance, a dead-lettered message) reads it too until the sweep's offset is known.
 * So: one read per partition and sale, plus about one per start or reassignment; the
 * sweep itself is O(records + overlay users) plus a sort of the candidates.
 * Budget pacing (both parts deterministic in event time, so a replay decides alike):
 *   1. the claim's limit grows with the sale: budget x min(1, pace_slack + elapsed /
 *      sale_duration), elapsed from the sale start (configured, or learned per
 *      partition); the budget can never be spent faster than that line, nor beyond
 *      the budget;
 *   2. the intent threshold moves with live conversion: min_intent =
 *      coupon_min_intent x max(1, conv / conv_ref), conv = the partition's purchases
 *      per cart add over the 5 minutes before the event's minute: in a rush, when
 *      carts convert anyway, coupons go only to the more hesitant-but-likely users.
 * Claims are idempotent by action id (store.h): budget never exceeded, even with
 * several instances and replays, and a claim refused once stays refused. A refused
 * coupon sends nothing and changes no state; a later event of the same user in the
 * same batch is then decided again with that outcome known (one more claim round),
 * so the state never depends on where a batch ended. Which coupon of the sale gets
 * the last cents of a limit depends on the order partitions reach Redis: that is the
 * one outcome not fixed by the partition's input, and the claim record makes every
 * replay repeat it.
 */
#include "clickstream.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
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

#define T              FLS_ISIM_SEQ
#define JOURNAL_CAP    4096 /* >= batch.max_messages: a whole batch, for replays */
#define TRENDING_VIEWS 200  /* trending reads the category's last 200 views */
#define MAX_CAMP       4    /* campaigns with a coupon, per user and poll */
/* Snapshots keep more than the features read, so that they can be read as of an
 * earlier offset (see "3." above): UH events per user (T for the LSTM, T to step
 * back), TR_KEEP views per category, SALE_CH changes of the learned sale start. */
#define UH      (2 * T)
#define TR_KEEP (2 * TRENDING_VIEWS)
#define SALE_CH 8
/* A category's views expire an hour after its last one. */
#define CAT_TTL_S 3600
/* Entries kept in a user's record for the inactive sweep (see p:pre). */
#define PRE_KEEP 4
enum { FAM_ACT, FAM_SKU, FAM_JRN, FAM_HIST, FAM_TR };
/* act and sku first: tools/features.c reads them by index. */
static const fls_family_t families[] = {
    {"act", 60000, 30 * 60000, types, 0},
    {"sku", 60000, 10 * 60000, sku_feats, 0},
    {"j", 0, JOURNAL_CAP, NULL, 3600},
    {"h", 0, UH, NULL, -1},       /* TTL: clickstream.user_ttl_s, with each push */
    {"tr", 0, TR_KEEP, NULL, -1}, /* TTL: CAT_TTL_S, with each push */
    {NULL, 0, 0, NULL, 0},
};
static const char *const kind_names[] = {"coupon", "reminder", "recommendation"};

/* What decide() needs of an event, copied out of the reused Avro value. */
struct pending {
        fls_batch_t *batch;
        int32_t partition;
        int64_t offset, ts;
        int type, in_sale, late, replay;
        int64_t cents, qty;
        uint32_t sess; /* session id hash, 0: none */
        size_t user, user_len, sku, sku_len, camp, camp_len, cat, cat_len; /* in text */
        int r_user, r_act, r_hist, r_bought, r_all, r_allring, r_sku, r_cat, r_jrn;
        int ov_user;     /* overlay entry of the user */
        int ov_cat;      /* ... of the category (views), -1 */
        size_t tr_pos;   /* the category's views up to this event */
        int claim;       /* index in this round's claims, -1 */
        int claim_state; /* 0 not asked, 1 granted, -1 refused */
        int cap_counted; /* Redis has the user in capped_users already */
        int r_pre;       /* read of p:pre (the inactive sweep may trigger), -1 */
        int sweep;       /* this event triggers the partition's inactive sweep */
};

/* An event whose contribution a read may hold: from the batch or the journal. */
struct lev {
        int64_t offset, ts, cents, qty;
        int type, late, sale;
        const char *user, *sku;
        size_t user_len, sku_len;
        int next_user, next_sku, next_all; /* next later event of the same entity */
};

/* A category's views in the overlay: the snapshot's, then the poll's. */
struct trv {
        int64_t ts;
        uint32_t skuh;
        size_t sku, sku_len; /* in text */
        int64_t off;
};

/* One event of a user's snapshot, with the user's state after it: the snapshot can
 * then be read as of any offset it covers (see load_user). */
struct uent {
        fls_isim_ev_t ev;
        int64_t off, last_buy, sess_start, act_ts;
        uint32_t sess;
};

/* An entry of a user's record for the inactive sweep (see p:pre). */
struct pent {
        int64_t off, act_ts; /* act_ts: the user's last action after the event, -1 */
        int score;           /* participation x 1e4; -1: active after the sale start */
        int rem;             /* reminded after the event */
};

/* Overlay entry: an entity's snapshot state, advanced event by event in a poll. */
struct ov {
        int32_t partition;
        char kind;           /* 'u' user, 'k' category, 'p' partition */
        size_t key, key_len; /* in text */
        uint64_t h;
        uint64_t touch; /* batch that last touched it */
        /* 'u' */
        struct uent hist[UH]; /* the user's last UH events, oldest first */
        int nh;
        /* the last entry in Redis's list before this batch, and after its writes */
        int64_t wr_base, wr_last;
        uint64_t wr_batch;
        int64_t last_ts, last_buy, sess_start;
        uint32_t sess;
        /* 'u', decision state: act_ts from the snapshot, the marks of this poll
         * (Redis holds the earlier ones) */
        int64_t act_ts;
        int rem, capped, ncamp;
        uint32_t camps[MAX_CAMP];
        int64_t s_act_ts; /* the same at the start of the batch, for claim rounds */
        int s_rem, s_capped, s_ncamp;
        uint32_t s_camps[MAX_CAMP];
        /* 'u', the inactive sweep: the record (entries before the poll's first
         * event of the user, then the poll's), the batch that last changed it, and
         * the sweep's reminder (trigger offset and time, -1) as of the policy */
        struct pent pre[PRE_KEEP];
        int npre;
        uint64_t pre_touch, sweep_seen;
        int64_t sw_off, sw_ts, s_sw_off, s_sw_ts;
        /* 'k': an array of the pool (see trpool), only while the poll holds it */
        struct trv *tr;
        size_t ntr, tr_cap;
        size_t tr_sent; /* views before it are in Redis's list or pushed already */
        /* 'p' */
        int64_t sale; /* learned sale start, -1 */
        struct {
                int64_t off, sale;
        } sch[SALE_CH]; /* its last changes, oldest first */
        int nsch;
        int64_t sweep; /* offset of the event that triggered the inactive sweep, -1 */
};

/* What update() knows of a partition to decide whether a batch may trigger the
 * inactive sweep (and so must read p:pre): a lower bound of its sale start and the
 * sweep mark, from the replies of earlier batches of this process; cold after a start
 * or a gap in offsets. Never decides anything itself. */
struct pcache {
        int32_t partition;
        int warm;
        int64_t next_off, sale_lo, swept;
};

/* A candidate of the inactive sweep. */
struct cand {
        const char *user; /* NUL-terminated: a reply field or the poll's text */
        int score;
        int ov; /* overlay entry, -1 */
};

/* A deferred write made by a batch's decisions (snapshots and decision state). */
struct wr {
        int32_t partition;
        fls_defer_kind_t kind;
        size_t entity, field, s; /* in wtext; s == (size_t)-1: none */
        int64_t i;
};

typedef struct {
        int idx[F__N], oidx[O__N];
        int64_t user_ttl_s;
        double min_intent, max_intent, coupon_value, conv_ref, rem_min, reco_min,
            reco_trend, pace_slack;
        int64_t no_buy_ms, budget_c, cap_ms, sale_start, sale_ms;
        int64_t inactive_ms, inactive_max;
        int inactive_min; /* x 1e4, as record scores */
        struct pcache *pc;
        size_t npc, pc_cap;
        const fls_hash_t *pre_reply; /* p:pre as the batch read it, NULL */
        struct cand *cand;
        size_t ncand, cand_cap;
        fls_click_rem_t *rems;
        size_t nrem, rem_cap;
        uint64_t sweep_gen;
        const fls_store_t *store;
        fls_model_t *intent, *part;
        char intent_path[512], part_path[512];
        char versions[256];
        size_t max_rows;
        float *xi, *xp, *si, *sp; /* reserved rows and scores */
        float *xq;                /* the participation rows scored, gathered */
        size_t *qrow;             /* ... and their rows in the batch */
        struct pending *pend;
        fls_click_feat_t *feat;
        size_t npend, pend_cap;
        size_t *order; /* pending indexes of the batch being decided */
        size_t norder;
        struct lev *lev;
        size_t nlev, lev_cap;
        struct {
                uint64_t h;
                int idx;
        } * map; /* chains, and the overlay index */
        size_t map_cap;
        struct ov *ov;
        size_t nov, ov_cap;
        /* Category view arrays (ov 'k'), ~20 kB each: a category entry takes one for
         * the poll and ov_reset gives it back, so there are as many as the most
         * categories one poll held (<= partitions x categories). Kept in the slots
         * instead, every slot a category ever landed on kept its array: memory
         * crept towards ov_cap x 20 kB (42 MiB after 1.1M events, RSS run). */
        struct trbuf {
                struct trv *v;
                size_t cap;
        } * trpool;
        size_t ntrpool, trpool_cap;
        int *ovix; /* open addressing over ov */
        size_t ovix_cap;
        uint64_t ov_poll, nbatch;
        char *text; /* strings of the poll */
        size_t text_len, text_cap;
        struct wr *wr;
        fls_click_write_t *wout;
        size_t nwr, nwr_snap, wr_cap, wout_cap;
        fls_arena_t wtext;
        /* wtext_snap: wtext.len at nwr_snap, where each claim round starts again */
        size_t wtext_snap;
        char *sbuf; /* a snapshot being formatted */
        size_t sbuf_cap;
        /* Field names of set members: the store keeps the pointers until the apply,
         * so they live in blocks that never move, reused from poll to poll. */
        char **fblk;
        size_t nfblk, fblk_used, fblk_cur;
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
    {"clickstream.inactive_after_s", FLS_CONF_INT, "300", 0, 31536000,
     "Event-time seconds after the sale start at which each partition reminds, once, "
     "the likely participants active before the sale who have not come back.",
     "consume"},
    {"clickstream.inactive_min_participation", FLS_CONF_DBL, "0.5", 0, 1,
     "Lowest participation score (at the user's last event) for that reminder.",
     "consume"},
    {"clickstream.inactive_max_reminders", FLS_CONF_INT, "1000", 0, 1000000,
     "Most reminders of that sweep per partition (the best scores); 0: no sweep.",
     "consume"},
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
        free(c->xq);
        free(c->qrow);
        free(c->pend);
        free(c->feat);
        free(c->order);
        free(c->lev);
        free(c->map);
        for (size_t i = 0; i < c->ov_cap; i++)
                free(c->ov[i].tr);
        for (size_t i = 0; i < c->ntrpool; i++)
                free(c->trpool[i].v);
        free(c->trpool);
        free(c->ov);
        free(c->ovix);
        free(c->text);
        free(c->wr);
        free(c->wout);
        fls_arena_free(&c->wtext);
        free(c->sbuf);
        free(c->pc);
        free(c->cand);
        free(c->rems);
        for (size_t i = 0; i < c->nfblk; i++)
                free(c->fblk[i]);
        free(c->fblk);
        free(c);
}

static fls_model_t *load_model(const char *path, const char *const *names, size_t n,
                               size_t seq, size_t rows, char *errstr, size_t errstr_size);

/* The reload callback (SIGHUP): both files are loaded and checked before either
 * replaces the one serving, so a bad file changes nothing. */
static int reload(void *app, char *errstr, size_t errstr_size)
{
        clickstream_t *c = app;
        fls_model_t *in, *pa;

        in = load_model(c->intent_path, fls_isim_feature_names(), fls_isim_nfeatures(),
                        fls_model_seq_len(c->intent), c->max_rows, errstr, errstr_size);
        if (!in)
                return -1;
        pa = load_model(c->part_path, fls_part_feature_names(), fls_part_nfeatures(), 1,
                        c->max_rows, errstr, errstr_size);
        if (!pa) {
                fls_model_destroy(in);
                return -1;
        }
        fls_model_destroy(c->intent);
        fls_model_destroy(c->part);
        c->intent = in;
        c->part = pa;
        snprintf(c->versions, sizeof(c->versions), "%s@%s,%s@%s", fls_model_name(in),
                 fls_model_version(in), fls_model_name(pa), fls_model_version(pa));
        return 0;
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
        c->inactive_ms = fls_conf_int(cf, "clickstream.inactive_after_s") * 1000;
        c->inactive_min = (int)llround(
            fls_conf_dbl(cf, "clickstream.inactive_min_participation") * 1e4);
        c->inactive_max = fls_conf_int(cf, "clickstream.inactive_max_reminders");
        c->store = env->store;
        rows = (size_t)fls_conf_int(cf, "batch.max_messages");
        if (rows > JOURNAL_CAP) {
                /* A replayed batch subtracts the later events of the batch that was
                 * applied; the journal must hold all of them. */
                snprintf(errstr, errstr_size,
                         "clickstream needs batch.max_messages <= %d (the journal that "
                         "makes replays decide alike)",
                         JOURNAL_CAP);
                goto fail;
        }
        /* Both models are built once; their scratch and our row buffers are reserved
         * for the largest batch, so scoring never allocates. */
        c->max_rows = rows;
        snprintf(c->intent_path, sizeof(c->intent_path), "%s",
                 fls_conf_str(cf, "clickstream.intent_model"));
        snprintf(c->part_path, sizeof(c->part_path), "%s",
                 fls_conf_str(cf, "clickstream.participation_model"));
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
        c->xq = malloc(rows * fls_part_nfeatures() * sizeof(float));
        c->qrow = malloc(rows * sizeof(size_t));
        c->order = malloc(rows * sizeof(size_t));
        if (!c->xi || !c->xp || !c->si || !c->sp || !c->xq || !c->qrow || !c->order) {
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

/* ---- snapshot text ------------------------------------------------------------
 * The snapshots, journal entries and keys are written and read back every batch
 * (~2 kB per user touched, ~10 kB per category viewed). Through snprintf/sscanf
 * that was about a third of the consumer's CPU (format-string parsing, locale,
 * positional arguments), so integers go through these two instead. The text is
 * the same: decimal, '-' for negatives, one space between fields. */

/* At most 20 bytes for an int64_t ("-9223372036854775808"). */
#define I64_MAX_LEN 20

/* "00".."99": two digits per division, half the divisions of a digit loop (the
 * snapshots are ~320 numbers per user touched, most of them 13-digit times). */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* Writes v in decimal at p (no NUL); returns the end. Counts the digits first and
 * writes them in place (a copy from a scratch buffer was a libc memmove call per
 * number). */
static char *put_i64(char *p, int64_t v)
{
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v, t = u;
        int n = 1;
        char *q;
        for (; t >= 100; t /= 100)
                n += 2;
        n += t >= 10;
        if (v < 0)
                *p++ = '-';
        q = p + n;
        while (u >= 100) {
                q -= 2;
                q[0] = digit_pairs[2 * (u % 100)];
                q[1] = digit_pairs[2 * (u % 100) + 1];
                u /= 100;
        }
        if (u >= 10) {
                q[-2] = digit_pairs[2 * u];
                q[-1] = digit_pairs[2 * u + 1];
        } else {
                q[-1] = (char)('0' + u);
        }
        return p + n;
}

/* " <v>" at p; returns the end. */
static char *put_sp_i64(char *p, int64_t v)
{
        *p++ = ' ';
        return put_i64(p, v);
}

/* "<kind>:<s>" NUL-terminated in dst (room for len + 3); returns its length. */
static size_t put_key(char *dst, char kind, const char *s, size_t len)
{
        dst[0] = kind;
        dst[1] = ':';
        memcpy(dst + 2, s, len);
        dst[len + 2] = '\0';
        return len + 2;
}

/* "cpn:<campaign>" in dst, cut to size - 1 bytes as snprintf did (campaign ids
 * have no length bound: a longer one names the same, cut field). */
static void cpn_field(char *dst, size_t size, const char *camp, size_t len)
{
        if (len > size - 5)
                len = size - 5;
        memcpy(dst, "cpn:", 4);
        memcpy(dst + 4, camp, len);
        dst[4 + len] = '\0';
}

static int is_space(char ch)
{
        return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/* Reads a decimal integer at *s the way sscanf's %lld and strtoll do for what this
 * file writes: leading white space, an optional sign, digits; saturates at the
 * int64_t bounds like strtoll (glibc's scanf stores the same). Returns 0 and moves
 * *s past it, or -1 (no digits; *s unchanged). */
static int get_i64(const char **s, int64_t *v)
{
        const char *p = *s;
        uint64_t u = 0, lim;
        int neg = 0, over = 0;
        while (is_space(*p))
                p++;
        if (*p == '-' || *p == '+')
                neg = *p++ == '-';
        if (*p < '0' || *p > '9')
                return -1;
        lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        /* 18 digits cannot overflow: check only past them */
        for (int k = 0; k < 18 && *p >= '0' && *p <= '9'; k++, p++)
                u = u * 10 + (unsigned)(*p - '0');
        for (; *p >= '0' && *p <= '9'; p++) {
                unsigned d = (unsigned)(*p - '0');
                if (over || u > (lim - d) / 10)
                        over = 1;
                else
                        u = u * 10 + d;
        }
        if (over)
                u = lim;
        *v = neg ? (u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
        *s = p;
        return 0;
}

/* The same for an int field (%d: glibc reads a long and stores it as int). */
static int get_int(const char **s, int *v)
{
        int64_t x;
        if (get_i64(s, &x) < 0)
                return -1;
        *v = (int)x;
        return 0;
}

/* strtoll(s, NULL, 10) for a NUL-terminated value (0 when it holds no number),
 * bounded to -INT64_MAX so that callers can negate it (the marks hold minus an
 * offset; a corrupt one must not overflow). */
static int64_t num(const char *s)
{
        int64_t v;
        if (get_i64(&s, &v) < 0)
                return 0;
        return v == INT64_MIN ? -INT64_MAX : v;
}

#define FBLK 65536

/* A field name that stays put until the batch is applied: "<prefix><str>". */
static const char *field_keep(clickstream_t *c, char prefix, const char *str, size_t len)
{
        char *f;
        if (c->nfblk == 0 || c->fblk_used + len + 2 > FBLK) {
                if (c->nfblk > 0)
                        c->fblk_cur++;
                if (c->fblk_cur == c->nfblk) {
                        char **nb = realloc(c->fblk, (c->nfblk + 1) * sizeof(*nb));
                        if (!nb || !(nb[c->nfblk] = malloc(FBLK)))
                                abort(); /* bounded by batch.max_messages */
                        c->fblk = nb;
                        c->nfblk++;
                }
                c->fblk_used = 0;
        }
        f = c->fblk[c->fblk_cur] + c->fblk_used;
        f[0] = prefix;
        memcpy(f + 1, str, len);
        f[len + 1] = '\0';
        c->fblk_used += len + 2;
        return f;
}

/* The partition's cache entry (allocates only for a partition not seen before). */
static struct pcache *pcache_get(clickstream_t *c, int32_t partition)
{
        for (size_t i = 0; i < c->npc; i++)
                if (c->pc[i].partition == partition)
                        return &c->pc[i];
        c->pc = fls_grow(c->pc, &c->pc_cap, c->npc + 1, sizeof(*c->pc));
        c->pc[c->npc] = (struct pcache){partition, 0, -1, -1, -1};
        return &c->pc[c->npc++];
}

static void update(void *app, avro_value_t *v, fls_batch_t *b, const fls_event_t *ev)
{
        clickstream_t *c = app;
        char ent[300], item[400];
        size_t ulen, slen, clen, selen, cplen;
        const char *user = fls_avro_str(v, c->idx[F_USER], &ulen);
        const char *sku = fls_avro_str(v, c->idx[F_SKU], &slen);
        const char *cat = fls_avro_str(v, c->idx[F_CATEGORY], &clen);
        const char *sess = fls_avro_str(v, c->idx[F_SESSION], &selen);
        const char *camp = fls_avro_str(v, c->idx[F_CAMPAIGN], &cplen);
        int type = fls_avro_enum(v, c->idx[F_TYPE]);
        int64_t cents = llround(fls_avro_double(v, c->idx[F_PRICE]) * 100);
        int64_t qty = fls_avro_int(v, c->idx[F_QTY]);
        int u, s, vs, pa;
        struct pending *p;

        if (c->poll != ev->poll) {
                /* A new poll: every batch of the previous one was decided. */
                c->poll = ev->poll;
                c->npend = 0;
                c->text_len = 0;
                c->fblk_cur = 0;
                c->fblk_used = 0;
        }
        if (c->npend == c->pend_cap) {
                size_t cap = c->pend_cap;
                c->pend = fls_grow(c->pend, &cap, c->npend + 1, sizeof(*c->pend));
                cap = c->pend_cap;
                c->feat = fls_grow(c->feat, &cap, c->npend + 1, sizeof(*c->feat));
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
        p->replay = ev->replay;
        p->cents = cents;
        p->qty = qty;
        p->sess = selen ? fls_isim_sku_id(sess, selen) : 0;
        p->user = keep(c, user, ulen);
        p->user_len = ulen;
        p->sku = keep(c, sku, slen);
        p->sku_len = slen;
        p->camp = keep(c, camp, cplen);
        p->camp_len = cplen;
        p->cat = keep(c, cat, clen);
        p->cat_len = type == VIEW ? clen : 0;
        p->r_sku = p->r_cat = p->r_jrn = p->r_pre = p->r_bought = -1;

        u = fls_batch_entity(b, ent, put_key(ent, 'u', user, ulen));
        fls_batch_incr(b, u, lifetime[type], 1);
        fls_batch_setmax(b, u, "last_ts", ev->ts);
        fls_batch_expire(b, u, c->user_ttl_s);
        if (!ev->late)
                fls_batch_window(b, u, FAM_ACT, type, ev->ts, 1);
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
                if (type == PURCHASE)
                        fls_batch_setmax(b, u, "last_buy_ts", ev->ts);
        }
        if (slen)
                fls_batch_set(b, u, "last_sku", sku, slen);
        p->r_user = fls_batch_read(b, u, -1);
        p->r_act = fls_batch_read(b, u, FAM_ACT);
        p->r_hist = fls_batch_read(b, u, FAM_HIST);

        /* Set members hold -(first offset): membership as of any offset. Only a
         * view with a category can recommend, so only it reads the set. */
        if (type == PURCHASE || (type == VIEW && clen)) {
                vs = fls_batch_entity(b, ent, put_key(ent, 'b', user, ulen));
                if (type == PURCHASE)
                        fls_batch_setmax(b, vs, field_keep(c, 'b', sku, slen),
                                         -ev->offset);
                fls_batch_expire(b, vs, c->user_ttl_s);
                if (type == VIEW)
                        p->r_bought = fls_batch_read(b, vs, -1);
        }

        pa = fls_batch_entity(b, "p:all", 5);
        if (p->in_sale)
                fls_batch_setmax(b, pa, "sale_neg", -ev->ts);
        if (!ev->late && (type == CART_ADD || type == PURCHASE))
                fls_batch_window(b, pa, FAM_SKU, type == CART_ADD ? 1 : 2, ev->ts, 1);
        /* The journal: what a read-only replay of this batch must take out again. */
        {
                /* "offset ts type late sale cents qty s<sku> user": at most 7 x 21 +
                 * 2 + 60 + 128 bytes (validated lengths) */
                char *q = put_i64(item, ev->offset);
                q = put_sp_i64(q, ev->ts);
                q = put_sp_i64(q, type);
                q = put_sp_i64(q, ev->late);
                q = put_sp_i64(q, p->in_sale);
                q = put_sp_i64(q, cents);
                q = put_sp_i64(q, qty);
                *q++ = ' ';
                *q++ = 's';
                memcpy(q, sku, slen);
                q += slen;
                *q++ = ' ';
                memcpy(q, user, ulen);
                q += ulen;
                fls_batch_push(b, pa, FAM_JRN, item, (size_t)(q - item));
        }
        p->r_all = fls_batch_read(b, pa, -1);
        p->r_allring = fls_batch_read(b, pa, FAM_SKU);
        if (ev->replay)
                p->r_jrn = fls_batch_read(b, pa, FAM_JRN);
        if (c->inactive_max > 0) {
                /* Can this event trigger the inactive sweep? Then the batch reads the
                 * records (one read, shared by the batch's events). A superset: the
                 * cache's sale start is a lower bound of the one as of the event. */
                struct pcache *pc = pcache_get(c, ev->partition);
                int64_t sale;
                if (ev->offset != pc->next_off)
                        pc->warm = 0;
                pc->next_off = ev->offset + 1;
                if (p->in_sale && (pc->sale_lo < 0 || ev->ts < pc->sale_lo))
                        pc->sale_lo = ev->ts;
                sale = c->sale_start > 0 ? c->sale_start : pc->sale_lo;
                /* The sweep's offset is a function of the partition's input: past
                 * it, nothing can trigger, however cold the cache. */
                if ((pc->swept < 0 || ev->offset <= pc->swept) &&
                    ((!pc->warm && c->sale_start <= 0) ||
                     (sale >= 0 && ev->ts >= sale + c->inactive_ms)))
                        p->r_pre = fls_batch_read(b, fls_batch_entity(b, "p:pre", 5), -1);
        }

        if (type == VIEW && clen) {
                int k;
                k = fls_batch_entity(b, ent, put_key(ent, 'k', cat, clen));
                p->r_cat = fls_batch_read(b, k, FAM_TR);
        }
        if (slen == 0)
                return;
        s = fls_batch_entity(b, ent, put_key(ent, 's', sku, slen));
        fls_batch_incr(b, s, lifetime[type], 1);
        fls_batch_expire(b, s, c->user_ttl_s);
        p->r_sku = fls_batch_read(b, s, FAM_SKU);
        if (ev->late)
                return;
        if (type == VIEW)
                fls_batch_window(b, s, FAM_SKU, 0, ev->ts, 1);
        else if (type == CART_ADD)
                fls_batch_window(b, s, FAM_SKU, 1, ev->ts, 1);
        else if (type == PURCHASE)
                fls_batch_window(b, s, FAM_SKU, 2, ev->ts, 1);
}

/* ---- per-poll overlay -------------------------------------------------------- */

static uint64_t hash_str(int32_t partition, char kind, const char *s, size_t len)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)partition;
        h = (h ^ (unsigned char)kind) * 1099511628211ULL;
        for (size_t i = 0; i < len; i++)
                h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
        return h | 1;
}

static void ov_reset(clickstream_t *c)
{
        /* The poll's category arrays go back to the pool (it grows only past its
         * high-water mark, i.e. almost never). */
        for (size_t i = 0; i < c->nov; i++) {
                struct ov *o = &c->ov[i];
                if (!o->tr)
                        continue;
                c->trpool = fls_grow(c->trpool, &c->trpool_cap, c->ntrpool + 1,
                                     sizeof(*c->trpool));
                c->trpool[c->ntrpool++] = (struct trbuf){o->tr, o->tr_cap};
                o->tr = NULL;
                o->tr_cap = 0;
        }
        c->nov = 0;
        if (c->ovix)
                memset(c->ovix, 0xff, c->ovix_cap * sizeof(*c->ovix));
        c->ov_poll = c->poll;
}

/* The overlay entry of an entity; *fresh is set when the poll had none. */
static int ov_get(clickstream_t *c, int32_t partition, char kind, size_t key, size_t len,
                  int *fresh)
{
        uint64_t h = hash_str(partition, kind, c->text + key, len);
        size_t i;
        struct ov *o;

        if ((c->nov + 1) * 2 > c->ovix_cap) {
                size_t cap = c->ovix_cap ? c->ovix_cap * 2 : 1024;
                int *nx = malloc(cap * sizeof(*nx));
                if (!nx)
                        abort();
                free(c->ovix);
                c->ovix = nx;
                c->ovix_cap = cap;
                memset(nx, 0xff, cap * sizeof(*nx));
                for (size_t k = 0; k < c->nov; k++) {
                        for (i = c->ov[k].h & (cap - 1); nx[i] >= 0;
                             i = (i + 1) & (cap - 1))
                                ;
                        nx[i] = (int)k;
                }
        }
        for (i = h & (c->ovix_cap - 1); c->ovix[i] >= 0;
             i = (i + 1) & (c->ovix_cap - 1)) {
                o = &c->ov[c->ovix[i]];
                if (o->h == h && o->partition == partition && o->kind == kind &&
                    o->key_len == len &&
                    memcmp(c->text + o->key, c->text + key, len) == 0) {
                        *fresh = 0;
                        return c->ovix[i];
                }
        }
        if (c->nov == c->ov_cap) {
                size_t cap = c->ov_cap ? c->ov_cap * 2 : 256;
                struct ov *no = realloc(c->ov, cap * sizeof(*no));
                if (!no)
                        abort();
                /* new slots start empty: destroy() frees every slot's array */
                memset(no + c->ov_cap, 0, (cap - c->ov_cap) * sizeof(*no));
                c->ov = no;
                c->ov_cap = cap;
        }
        /* Slots past nov hold no array (ov_reset took them back): memset loses none. */
        o = &c->ov[c->nov];
        memset(o, 0, sizeof(*o));
        if (kind == 'k' && c->ntrpool > 0) {
                c->ntrpool--;
                o->tr = c->trpool[c->ntrpool].v;
                o->tr_cap = c->trpool[c->ntrpool].cap;
        }
        o->partition = partition;
        o->kind = kind;
        o->key = key;
        o->key_len = len;
        o->h = h;
        o->last_ts = o->last_buy = o->sess_start = o->act_ts = o->sale = -1;
        o->sw_off = o->sw_ts = o->s_sw_off = o->s_sw_ts = o->sweep = -1;
        o->touch = (uint64_t)-1;
        c->ovix[i] = (int)c->nov;
        *fresh = 1;
        return (int)c->nov++;
}

/* The overlay entry of an entity if the poll has one, else -1 (s: any string). */
static int ov_find(const clickstream_t *c, int32_t partition, char kind, const char *s,
                   size_t len)
{
        uint64_t h = hash_str(partition, kind, s, len);
        if (c->ovix_cap == 0)
                return -1;
        for (size_t i = h & (c->ovix_cap - 1); c->ovix[i] >= 0;
             i = (i + 1) & (c->ovix_cap - 1)) {
                const struct ov *o = &c->ov[c->ovix[i]];
                if (o->h == h && o->partition == partition && o->kind == kind &&
                    o->key_len == len && memcmp(c->text + o->key, s, len) == 0)
                        return c->ovix[i];
        }
        return -1;
}

/* Parses a record of the inactive sweep, "1 (off score act_ts rem)*" (see p:pre), into
 * e[PRE_KEEP]; returns the entries read (a malformed tail is left out). */
static int parse_pre(const char *s, struct pent *e)
{
        int n = 0, sc, rem;
        int64_t of, at;
        if (!s || s[0] != '1')
                return 0;
        s += 1;
        while (n < PRE_KEEP && get_i64(&s, &of) == 0 && get_int(&s, &sc) == 0 &&
               get_i64(&s, &at) == 0 && get_int(&s, &rem) == 0)
                e[n++] = (struct pent){of, at, sc, rem};
        return n;
}

/* The record's entry that tells the user's state as of offset o (the user's last
 * event at or before o), or NULL when the user had no event before the sale as of o
 * or came back since its start (an entry with score -1 at or before o). */
static const struct pent *pre_asof(const struct pent *e, int n, int64_t o)
{
        const struct pent *last = NULL;
        for (int k = 0; k < n; k++) {
                if (e[k].off > o)
                        continue;
                if (e[k].score < 0)
                        return NULL;
                last = &e[k];
        }
        return last;
}

/* Loads a user's record and sweep reminder as of offset o (the user's first event of
 * the poll), leaving out what is at or after o (see load_user). */
static void load_pre(struct ov *o, const fls_hash_t *uh, int64_t off)
{
        struct pent e[PRE_KEEP];
        int n = parse_pre(fls_hash_get(uh, "pre"), e);
        const char *ir = fls_hash_get(uh, "irem");
        int64_t so, st;
        o->npre = 0;
        for (int k = 0; k < n; k++)
                if (e[k].off < off)
                        o->pre[o->npre++] = e[k];
        if (ir && get_i64(&ir, &so) == 0 && get_i64(&ir, &st) == 0 && so < off) {
                o->sw_off = so;
                o->sw_ts = st;
        }
}

/* Loads a user's history as of offset off (the user's first event of the poll): the
 * list u:<user>:h, one entry per event "off type ts cents sku sale last_buy sess start
 * act_ts", oldest first; the state is the one after the last entry before off.
 * Entries are deferred pushes (user_writes), applied once per "emitted" mark. Lists
 * written while a runner's teardown recorded them with its old mark (see the top of
 * this file) hold copies, the same entries for the same offsets: an entry at or
 * below one taken already is such a copy and is skipped. They also hold entries at
 * or after off, ahead of the replay that starts before them: folding those in would
 * count them twice. Stepping back is
 * exact while the list's last UH entries hold T before off (the user had at most
 * UH - T events in the replayed batch); past that, or on a malformed entry, the
 * history starts shorter or empty. The list is read from its end, like a
 * category's (load_cat), and only the last T entries are taken: the LSTM reads T,
 * and the state is the last entry's. */
static void load_user(struct ov *o, const fls_hash_t *h, int64_t off)
{
        int n = 0;
        int64_t low = off;

        o->nh = 0;
        o->wr_last = -1;
        o->wr_batch = 0;
        for (size_t k = h->n; k-- > 0 && n < T;) {
                const char *s = h->fields[k];
                struct uent e;
                int ty, sa;
                int64_t of, ts, ce, sk, lb, se, st, at;
                /* sku and session ids are written as uint32 */
                if (get_i64(&s, &of) < 0 || get_int(&s, &ty) < 0 ||
                    get_i64(&s, &ts) < 0 || get_i64(&s, &ce) < 0 ||
                    get_i64(&s, &sk) < 0 || get_int(&s, &sa) < 0 ||
                    get_i64(&s, &lb) < 0 || get_i64(&s, &se) < 0 ||
                    get_i64(&s, &st) < 0 || get_i64(&s, &at) < 0 || ty < 0 || ty > 5)
                        return;
                if (of >= low)
                        continue;
                low = of;
                e.ev = (fls_isim_ev_t){ty, ts, (double)ce / 100.0, (uint32_t)sk, sa};
                e.off = of;
                e.last_buy = lb;
                e.sess = (uint32_t)se;
                e.sess_start = st;
                e.act_ts = at;
                o->hist[T - 1 - n++] = e;
        }
        if (n == 0)
                return;
        memmove(o->hist, o->hist + T - n, (size_t)n * sizeof(*o->hist));
        o->nh = n;
        o->wr_last = o->hist[o->nh - 1].off;
        o->last_ts = o->hist[o->nh - 1].ev.ts;
        o->last_buy = o->hist[o->nh - 1].last_buy;
        o->sess = o->hist[o->nh - 1].sess;
        o->sess_start = o->hist[o->nh - 1].sess_start;
        o->act_ts = o->hist[o->nh - 1].act_ts;
}

/* Loads a category's views as of offset off from its list, "off ts sku" each: the
 * last TRENDING_VIEWS before off, all that trending reads, oldest first. The list is
 * read from its end, leaving out views at or after off (written ahead, see
 * load_user) and copies pushed twice: a run pushed again starts at or before views
 * already there, so a copy is never below the lowest offset kept. A malformed
 * entry is skipped. Parsing 200 of the list's TR_KEEP entries, not all of them,
 * matters because each poll loads every category of each partition afresh. */
static void load_cat(clickstream_t *c, struct ov *o, const fls_hash_t *h, int64_t off)
{
        size_t n = 0;
        int64_t low = off;

        o->tr = fls_grow(o->tr, &o->tr_cap, TRENDING_VIEWS, sizeof(*o->tr));
        for (size_t k = h->n; k-- > 0 && n < TRENDING_VIEWS;) {
                const char *s = h->fields[k], *sk;
                int64_t of, ts;
                size_t len;
                if (get_i64(&s, &of) < 0 || get_i64(&s, &ts) < 0 || *s != ' ')
                        continue;
                sk = s + 1;
                len = strlen(sk);
                if (len == 0 || len > 60 || of >= low)
                        continue;
                low = of;
                o->tr[TRENDING_VIEWS - 1 - n++] =
                    (struct trv){ts, fls_isim_sku_id(sk, len), keep(c, sk, len), len, of};
        }
        memmove(o->tr, o->tr + TRENDING_VIEWS - n, n * sizeof(*o->tr));
        o->ntr = o->tr_sent = n;
}

/* Loads the partition's learned sale start as of offset o: "3 (off sale)*", its
 * last changes. */
static void load_sale(struct ov *o, const char *s, int64_t off)
{
        int64_t of, sa;
        if (!s || s[0] != '3')
                return;
        s += 1;
        while (get_i64(&s, &of) == 0 && get_i64(&s, &sa) == 0 && of < off &&
               o->nsch < SALE_CH) {
                o->sch[o->nsch].off = of;
                o->sch[o->nsch++].sale = sa;
                o->sale = sa;
        }
}

/* ---- deferred writes ---------------------------------------------------------- */

static void wadd(clickstream_t *c, int32_t partition, const char *entity, size_t elen,
                 fls_defer_kind_t kind, const char *field, int64_t i, const char *s,
                 size_t slen)
{
        struct wr *w;
        c->wr = fls_grow(c->wr, &c->wr_cap, c->nwr + 1, sizeof(*c->wr));
        w = &c->wr[c->nwr++];
        w->partition = partition;
        w->kind = kind;
        w->entity = fls_arena_add(&c->wtext, entity, elen);
        w->field = fls_arena_add(&c->wtext, field, strlen(field));
        w->s = s ? fls_arena_add(&c->wtext, s, slen) : (size_t)-1;
        w->i = i;
}

/* ---- as-of-event features ------------------------------------------------------ */

/* Bounds the slots read, as the store does (a ring has (window + lateness) /
 * bucket_ms + 1 slots, ~40 here). */
#define RING_SLOTS 1024

/* The counts of a ring (store.h: "#<slot>" holds a slot's bucket, "<feature>@<slot>"
 * its counts) over windows win[0..nwin) ending with ref_ts's bucket, for each of the
 * family's features: out[feature * nwin + w]. The same sums as fls_ring_sum, in one
 * pass over the ring instead of one per (feature, window): that was 27 passes per
 * event, each parsing every field with strtoll (~5% of the consumer's CPU). One
 * difference, for rings the store never writes: slots past the family's own count
 * (below RING_SLOTS) are counted here and skipped there. */
static void ring_sums(const fls_hash_t *h, int fam, int64_t ref_ts, const int64_t *win,
                      int nwin, int64_t *out)
{
        const fls_family_t *fx = &families[fam];
        const char *const *feats = fx->features;
        int64_t held[RING_SLOTS], lo[4], ref = ref_ts / fx->bucket_ms;
        int64_t nheld = 0;
        int nfeat = 0;

        while (feats[nfeat])
                nfeat++;
        memset(out, 0, (size_t)(nfeat * nwin) * sizeof(*out));
        if (!h)
                return;
        for (int w = 0; w < nwin; w++)
                lo[w] = ref - (win[w] + fx->bucket_ms - 1) / fx->bucket_ms;
        for (size_t i = 0; i < h->n; i++) {
                const char *f = h->fields[i];
                int64_t slot;
                if (f[0] != '#')
                        continue;
                slot = num(f + 1);
                if (slot < 0 || slot >= RING_SLOTS)
                        continue;
                while (nheld <= slot)
                        held[nheld++] = -1;
                held[slot] = num(h->values[i]);
        }
        for (size_t i = 0; i < h->n; i++) {
                const char *f = h->fields[i], *at = strchr(f, '@');
                int64_t slot, bucket, v;
                int j;
                if (!at || f[0] == '#')
                        continue;
                for (j = 0; j < nfeat; j++)
                        if (strncmp(f, feats[j], (size_t)(at - f)) == 0 &&
                            feats[j][at - f] == '\0')
                                break;
                if (j == nfeat)
                        continue;
                slot = num(at + 1);
                if (slot < 0 || slot >= RING_SLOTS)
                        continue;
                bucket = slot < nheld ? held[slot] : -1; /* no "#": -1, as the store */
                if (bucket > ref)
                        continue;
                v = num(h->values[i]);
                for (int w = 0; w < nwin; w++)
                        if (bucket > lo[w])
                                out[j * nwin + w] += v;
        }
}

/* Whether field was set at or before `offset` (members hold minus their first offset). */
static int member(const fls_hash_t *h, const char *field, int64_t offset)
{
        const char *v = h ? fls_hash_get(h, field) : NULL;
        return v && -num(v) <= offset;
}

static int parse_journal(const char *s, struct lev *e)
{
        int64_t o, t, ce, q;
        int ty, la, sa;
        const char *sk;
        size_t len;
        if (get_i64(&s, &o) < 0 || get_i64(&s, &t) < 0 || get_int(&s, &ty) < 0 ||
            get_int(&s, &la) < 0 || get_int(&s, &sa) < 0 || get_i64(&s, &ce) < 0 ||
            get_i64(&s, &q) < 0 || ty < 0 || ty > 5)
                return -1;
        while (is_space(*s))
                s++;
        if (*s != 's')
                return -1;
        sk = s + 1;
        len = strcspn(sk, " ");
        if (sk[len] != ' ')
                return -1;
        memset(e, 0, sizeof(*e));
        e->offset = o;
        e->ts = t;
        e->type = ty;
        e->late = la;
        e->sale = sa;
        e->cents = ce;
        e->qty = q;
        e->sku = sk;
        e->sku_len = len;
        e->user = sk + len + 1;
        e->user_len = strlen(e->user);
        return 0;
}

/* Index of a string in the chain map, linking in reverse order: returns the index
 * the key held (the next later event) and stores idx. */
static int chain(clickstream_t *c, char kind, const char *s, size_t len, int idx,
                 const struct lev *lev)
{
        uint64_t h = hash_str(0, kind, s, len);
        size_t mask = c->map_cap - 1, i;
        for (i = h & mask; c->map[i].h; i = (i + 1) & mask) {
                const struct lev *o = &lev[c->map[i].idx];
                const char *os = kind == 'u' ? o->user : o->sku;
                size_t ol = kind == 'u' ? o->user_len : o->sku_len;
                if (c->map[i].h == h && ol == len && memcmp(os, s, len) == 0) {
                        int prev = c->map[i].idx;
                        c->map[i].idx = idx;
                        return prev;
                }
        }
        c->map[i].h = h;
        c->map[i].idx = idx;
        return -1;
}

/* The events whose contributions the batch's reads hold, in offset order, with the
 * next later event of the same user, SKU, and partition cart/purchase counters. */
static void build_later(clickstream_t *c, size_t n)
{
        const struct pending *last = &c->pend[c->order[n - 1]];
        int next_all = -1;
        size_t need;

        c->nlev = 0;
        for (size_t k = 0; k < n; k++) {
                const struct pending *p = &c->pend[c->order[k]];
                struct lev *e;
                c->lev = fls_grow(c->lev, &c->lev_cap, c->nlev + 1, sizeof(*c->lev));
                e = &c->lev[c->nlev++];
                memset(e, 0, sizeof(*e));
                e->offset = p->offset;
                e->ts = p->ts;
                e->cents = p->cents;
                e->qty = p->qty;
                e->type = p->type;
                e->late = p->late;
                e->sale = p->in_sale;
                e->user = c->text + p->user;
                e->user_len = p->user_len;
                e->sku = c->text + p->sku;
                e->sku_len = p->sku_len;
                e->next_user = e->next_sku = e->next_all = -1;
        }
        if (last->replay && last->r_jrn >= 0) {
                /* Redis holds the state up to the applied offset, maybe past this
                 * read-only batch: the journal has the events in between. */
                const fls_hash_t *j = fls_batch_reply(last->batch, last->r_jrn);
                size_t k = 0;
                for (size_t i = 0; j && i < j->n; i++) {
                        struct lev e;
                        if (parse_journal(j->fields[i], &e) < 0)
                                continue;
                        /* The runner does not flag replayed events late: the journal
                         * says whether their first application skipped the windows. */
                        while (k < n && c->pend[c->order[k]].offset < e.offset)
                                k++;
                        if (k < n && c->pend[c->order[k]].offset == e.offset) {
                                c->pend[c->order[k]].late = e.late;
                                c->lev[k].late = e.late;
                        }
                        if (e.offset <= last->offset)
                                continue;
                        e.next_user = e.next_sku = e.next_all = -1;
                        c->lev =
                            fls_grow(c->lev, &c->lev_cap, c->nlev + 1, sizeof(*c->lev));
                        c->lev[c->nlev++] = e;
                }
        }
        need = 1;
        while (need < 4 * c->nlev + 2)
                need *= 2;
        if (need > c->map_cap) {
                free(c->map);
                c->map = malloc(need * sizeof(*c->map));
                if (!c->map)
                        abort();
                c->map_cap = need;
        }
        memset(c->map, 0, c->map_cap * sizeof(*c->map));
        for (size_t k = c->nlev; k-- > 0;) {
                struct lev *e = &c->lev[k];
                e->next_user = chain(c, 'u', e->user, e->user_len, (int)k, c->lev);
                e->next_sku =
                    e->sku_len ? chain(c, 's', e->sku, e->sku_len, (int)k, c->lev) : -1;
                e->next_all = next_all;
                if (!e->late && (e->type == CART_ADD || e->type == PURCHASE))
                        next_all = (int)k;
        }
}

/* Trending SKUs of the category as of the event (its last TRENDING_VIEWS views up to
 * tr_pos, within 10 minutes before it); fills f->reco. */
static void trending(clickstream_t *c, const struct pending *p, fls_click_feat_t *f)
{
        struct {
                size_t sku, len;
                uint32_t h;
                int c1, c10;
        } cand[TRENDING_VIEWS];
        size_t nc = 0, from;
        double best[FLS_CLICK_MAX_RECO] = {0};
        const struct ov *o = &c->ov[p->ov_cat];
        const fls_hash_t *bought = fls_batch_reply(p->batch, p->r_bought);

        f->nreco = 0;
        from = p->tr_pos > TRENDING_VIEWS ? p->tr_pos - TRENDING_VIEWS : 0;
        for (size_t i = from; i < p->tr_pos; i++) {
                const struct trv *v = &o->tr[i];
                size_t k;
                if (v->ts > p->ts || v->ts <= p->ts - 600000)
                        continue;
                for (k = 0; k < nc; k++)
                        if (cand[k].h == v->skuh && cand[k].len == v->sku_len &&
                            memcmp(c->text + cand[k].sku, c->text + v->sku, v->sku_len) ==
                                0)
                                break;
                if (k == nc) {
                        cand[nc].sku = v->sku;
                        cand[nc].len = v->sku_len;
                        cand[nc].h = v->skuh;
                        cand[nc].c1 = cand[nc].c10 = 0;
                        nc++;
                }
                cand[k].c10++;
                cand[k].c1 += v->ts > p->ts - 60000;
        }
        for (size_t k = 0; k < nc; k++) {
                double trend = cand[k].c1 / (cand[k].c10 / 10.0);
                const char *sk = c->text + cand[k].sku;
                char key[80];
                int slot;
                if (cand[k].c1 < 2 || trend < c->reco_trend || cand[k].len >= 63)
                        continue;
                if (cand[k].len == p->sku_len &&
                    memcmp(sk, c->text + p->sku, p->sku_len) == 0)
                        continue;
                key[0] = 'b'; /* len < 63 */
                memcpy(key + 1, sk, cand[k].len);
                key[cand[k].len + 1] = '\0';
                if (member(bought, key, p->offset))
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
                memcpy(f->reco[slot], sk, cand[k].len); /* < 63: fits with its NUL */
                f->reco[slot][cand[k].len] = '\0';
                if (f->nreco < FLS_CLICK_MAX_RECO)
                        f->nreco++;
        }
}

/* Features of pending event p (the k-th of the batch, lev index k) as of it, its
 * intent sequence and participation row; advances the overlay past it. */
static void features(clickstream_t *c, struct pending *p, size_t k, fls_click_feat_t *f,
                     float *xi, float *xp)
{
        fls_batch_t *b = p->batch;
        const fls_hash_t *uh = fls_batch_reply(b, p->r_user);
        const fls_hash_t *act = fls_batch_reply(b, p->r_act);
        const fls_hash_t *all = fls_batch_reply(b, p->r_all);
        const fls_hash_t *allr = fls_batch_reply(b, p->r_allring);
        const fls_hash_t *sk = p->r_sku >= 0 ? fls_batch_reply(b, p->r_sku) : NULL;
        int64_t later_n[6] = {0}, later_w1[6] = {0}, later_w5[6] = {0},
                later_w30[6] = {0}, later_cart_c = 0, later_cart_n = 0, later_pv = 0,
                later_pre = 0, pv_c, bkt = p->ts / 60000;
        int64_t ls_v1 = 0, ls_c1 = 0, ls_p1 = 0, ls_v5 = 0, ls_p5 = 0, ls_v10 = 0,
                la_c = 0, la_p = 0;
        int fresh, ipa;
        struct ov *u, *pa;
        struct uent *he;
        fls_isim_ev_t seq[T];
        char key[300];
        fls_part_in_t pin;
        /* ring sums: [feature][window] */
        static const int64_t act_win[3] = {60000, 300000, 1800000},
                             sku_win[3] = {60000, 300000, 600000};
        int64_t rs[6 * 3];

        memset(f, 0, sizeof(*f));
        f->type = p->type;
        f->ts = p->ts;
        f->in_sale = p->in_sale;

        /* 1. Additive state: take out the later events the reads hold. */
        for (int j = c->lev[k].next_user; j >= 0; j = c->lev[j].next_user) {
                const struct lev *e = &c->lev[j];
                int64_t ib = e->ts / 60000;
                later_n[e->type]++;
                if (!e->late && ib <= bkt) {
                        later_w30[e->type] += ib > bkt - 30;
                        later_w5[e->type] += ib > bkt - 5;
                        later_w1[e->type] += ib > bkt - 1;
                }
                if (e->type == CART_ADD)
                        later_cart_c += e->cents * e->qty, later_cart_n += e->qty;
                else if (e->type == CART_REMOVE || e->type == PURCHASE)
                        later_cart_c -= e->cents * e->qty, later_cart_n -= e->qty;
                if (e->type == VIEW) {
                        later_pv += e->cents;
                        later_pre += !e->sale;
                }
        }
        for (int j = p->sku_len ? c->lev[k].next_sku : -1; j >= 0;
             j = c->lev[j].next_sku) {
                const struct lev *e = &c->lev[j];
                int64_t ib = e->ts / 60000;
                if (e->late || ib > bkt)
                        continue;
                if (e->type == VIEW) {
                        ls_v1 += ib > bkt - 1;
                        ls_v5 += ib > bkt - 5;
                        ls_v10 += ib > bkt - 10;
                } else if (e->type == CART_ADD) {
                        ls_c1 += ib > bkt - 1;
                } else if (e->type == PURCHASE) {
                        ls_p1 += ib > bkt - 1;
                        ls_p5 += ib > bkt - 5;
                }
        }
        {
                int j = c->lev[k].next_all;
                for (; j >= 0; j = c->lev[j].next_all) {
                        const struct lev *e = &c->lev[j];
                        int64_t ib = e->ts / 60000;
                        if (ib > bkt - 1 || ib <= bkt - 6)
                                continue;
                        la_c += e->type == CART_ADD;
                        la_p += e->type == PURCHASE;
                }
        }
        ring_sums(act, FAM_ACT, p->ts, act_win, 3, rs);
        for (int t = 0; t < 6; t++) {
                f->n[t] = fls_hash_int(uh, lifetime[t], 0) - later_n[t];
                f->w1[t] = rs[t * 3] - later_w1[t];
                f->w5[t] = rs[t * 3 + 1] - later_w5[t];
                f->w30[t] = rs[t * 3 + 2] - later_w30[t];
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
        if (sk) {
                /* [feature][1, 5, 10 minutes], features view, cart_add, purchase */
                int64_t v5, v10;
                ring_sums(sk, FAM_SKU, p->ts, sku_win, 3, rs);
                v5 = rs[1] - ls_v5;
                v10 = rs[2] - ls_v10;
                f->sku_view_1m = rs[0] - ls_v1;
                f->sku_cart_1m = rs[3] - ls_c1;
                f->sku_purchase_1m = rs[6] - ls_p1;
                f->sku_conv_5m = v5 > 0 ? (double)(rs[7] - ls_p5) / (double)v5 : 0;
                f->sku_trend =
                    v10 > 0 ? (double)f->sku_view_1m / ((double)v10 / 10.0) : 0;
        }
        {
                /* The 5 minutes before the event's minute. */
                int64_t carts, buys;
                ring_sums(allr, FAM_SKU, p->ts - 60000, sku_win + 1, 1, rs);
                carts = rs[1] - la_c;
                buys = rs[2] - la_p;
                f->part_conv_5m = carts > 0 ? (double)buys / (double)carts : 0;
        }

        /* 2. Snapshots advanced through the poll. */
        p->ov_user = ov_get(c, p->partition, 'u', p->user, p->user_len, &fresh);
        u = &c->ov[p->ov_user];
        if (fresh) {
                load_user(u, fls_batch_reply(b, p->r_hist), p->offset);
                load_pre(u, uh, p->offset);
        }
        if (u->touch != c->nbatch) {
                u->touch = c->nbatch;
                u->s_sw_off = u->sw_off;
                u->s_sw_ts = u->sw_ts;
                u->s_act_ts = u->act_ts;
                u->s_rem = u->rem;
                u->s_capped = u->capped;
                u->s_ncamp = u->ncamp;
                memcpy(u->s_camps, u->camps, sizeof(u->camps));
        }
        if (u->nh == UH)
                memmove(u->hist, u->hist + 1, (UH - 1) * sizeof(*u->hist)), u->nh--;
        he = &u->hist[u->nh++];
        he->ev = (fls_isim_ev_t){
            p->type, p->ts, (double)p->cents / 100.0,
            p->sku_len ? fls_isim_sku_id(c->text + p->sku, p->sku_len) : 0, p->in_sale};
        he->off = p->offset;
        {
                int from = u->nh > T ? u->nh - T : 0;
                for (int k = from; k < u->nh; k++)
                        seq[k - from] = u->hist[k].ev;
                fls_isim_sequence(seq, (size_t)(u->nh - from), xi);
        }
        f->since_last_ms =
            u->last_ts >= 0 ? (p->ts > u->last_ts ? p->ts - u->last_ts : 0) : -1;
        u->last_ts = p->ts;
        if (p->type == PURCHASE && p->ts > u->last_buy)
                u->last_buy = p->ts;
        f->since_purchase_ms = u->last_buy >= 0 ? p->ts - u->last_buy : -1;
        if (p->sess && u->sess == p->sess && u->sess_start >= 0) {
                if (p->ts < u->sess_start)
                        u->sess_start = p->ts;
        } else {
                u->sess = p->sess;
                u->sess_start = p->ts;
        }
        f->session_start = u->sess_start;
        f->session_len_ms = p->ts > f->session_start ? p->ts - f->session_start : 0;
        he->last_buy = u->last_buy;
        he->sess = u->sess;
        he->sess_start = u->sess_start;
        he->act_ts = u->act_ts; /* the policy sets it after the event's decision */

        p->ov_cat = -1;
        if (p->r_cat >= 0) {
                struct ov *kc;
                p->ov_cat = ov_get(c, p->partition, 'k', p->cat, p->cat_len, &fresh);
                kc = &c->ov[p->ov_cat];
                if (fresh) {
                        load_cat(c, kc, fls_batch_reply(b, p->r_cat), p->offset);
                }
                kc->touch = c->nbatch;
                if (!p->late) {
                        kc->tr =
                            fls_grow(kc->tr, &kc->tr_cap, kc->ntr + 1, sizeof(*kc->tr));
                        kc->tr[kc->ntr++] = (struct trv){
                            p->ts, fls_isim_sku_id(c->text + p->sku, p->sku_len), p->sku,
                            p->sku_len, p->offset};
                }
                p->tr_pos = kc->ntr;
        }

        /* Two steps: ov_get may move c->ov, and c->ov[ov_get(..)] could read the
         * old pointer first (unsequenced). */
        ipa = ov_get(c, p->partition, 'p', 0, 0, &fresh);
        pa = &c->ov[ipa];
        if (fresh) {
                const char *sw = fls_hash_get(all, "sweep");
                load_sale(pa, fls_hash_get(all, "sale_s"), p->offset);
                /* The sweep mark as of the event (a mark at or after it was written
                 * ahead by a stopping runner: the replay sweeps again, alike). */
                if (sw && -num(sw) < p->offset)
                        pa->sweep = -num(sw);
        }
        pa->touch = c->nbatch;
        if (p->in_sale && (pa->sale < 0 || p->ts < pa->sale)) {
                pa->sale = p->ts;
                if (pa->nsch == SALE_CH)
                        memmove(pa->sch, pa->sch + 1, (SALE_CH - 1) * sizeof(*pa->sch)),
                            pa->nsch--;
                pa->sch[pa->nsch].off = p->offset;
                pa->sch[pa->nsch++].sale = p->ts;
        }
        f->sale_start = c->sale_start > 0 ? c->sale_start : pa->sale;
        f->sweep_n = -1;
        p->sweep = 0;
        if (c->inactive_max > 0 && pa->sweep < 0 && f->sale_start >= 0 &&
            p->ts >= f->sale_start + c->inactive_ms) {
                p->sweep = 1;
                pa->sweep = p->offset;
        }
        f->viewed_sale_sku_pre =
            f->pre_views > 0 && f->sale_start >= 0 && p->ts >= f->sale_start;

        /* Decision state as of the event: the last action's time from the user's
         * snapshot (the overlay advances it through the poll); the marks hold minus
         * the offset of the event that set them first, so a mark written ahead (see
         * load_user) by a later event does not count. */
        u = &c->ov[p->ov_user]; /* the ov_get calls above may have moved c->ov */
        f->last_action_ts = u->s_act_ts;
        cpn_field(key, sizeof(key), c->text + p->camp, p->camp_len);
        f->coupon_taken = p->camp_len > 0 && member(uh, key, p->offset - 1);
        f->reminded = member(uh, "rem", p->offset - 1);
        f->was_capped = member(uh, "capped", p->offset - 1);
        /* capped_users is a count, not a mark: it went up with the first "capped"
         * write in the same script, so a user with any mark was counted already. */
        p->cap_counted = fls_hash_get(uh, "capped") != NULL;
        f->claim = -1;

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

/* The users' new history entries of the batch, with the decision state the policy
 * left (after each policy pass, so each pass starts again from the entries that the
 * batches before this one pushed): "off type ts cents sku sale last_buy sess start
 * act_ts", ~70 bytes, pushed to u:<user>:h (the list keeps UH). Appending costs the
 * script ~70 bytes per event, where rewriting the user's whole history cost ~2 kB per
 * user and batch: a quarter of the consumer's and Redis's time (bench/README.md). */
static void user_writes(clickstream_t *c)
{
        char ent[300];
        int pre_ttl = 0; /* a batch is one partition */
        /* Room for the longest entry, and for the pre record (PRE_KEEP x 4 fields). */
        c->sbuf = fls_grow(c->sbuf, &c->sbuf_cap,
                           32 + (size_t)PRE_KEEP * 4 * (1 + I64_MAX_LEN), 1);
        for (size_t i = 0; i < c->nov; i++) {
                struct ov *o = &c->ov[i];
                size_t len, elen;
                char *q;
                if (o->touch != c->nbatch || o->kind != 'u')
                        continue;
                if (o->wr_batch != c->nbatch) {
                        o->wr_base = o->wr_last;
                        o->wr_batch = c->nbatch;
                }
                elen = put_key(ent, 'u', c->text + o->key, o->key_len);
                for (int k = 0; k < o->nh; k++) {
                        const struct uent *e = &o->hist[k];
                        if (e->off <= o->wr_base)
                                continue;
                        q = put_i64(c->sbuf, e->off);
                        q = put_sp_i64(q, e->ev.type);
                        q = put_sp_i64(q, e->ev.ts);
                        q = put_sp_i64(q, (int64_t)llround(e->ev.price * 100));
                        q = put_sp_i64(q, e->ev.sku);
                        q = put_sp_i64(q, e->ev.in_sale);
                        q = put_sp_i64(q, e->last_buy);
                        q = put_sp_i64(q, e->sess);
                        q = put_sp_i64(q, e->sess_start);
                        q = put_sp_i64(q, e->act_ts);
                        len = (size_t)(q - c->sbuf);
                        wadd(c, o->partition, ent, elen, FLS_DEFER_PUSH, "h",
                             c->user_ttl_s, c->sbuf, len);
                }
                if (o->nh > 0)
                        o->wr_last = o->hist[o->nh - 1].off;
                if (o->pre_touch != c->nbatch)
                        continue;
                /* The record of the inactive sweep, on the user (read with every
                 * event) and in p:pre (read by the sweep): "1 (off score act rem)*". */
                q = c->sbuf;
                *q++ = '1';
                for (int k = 0; k < o->npre; k++) {
                        q = put_sp_i64(q, o->pre[k].off);
                        q = put_sp_i64(q, o->pre[k].score);
                        q = put_sp_i64(q, o->pre[k].act_ts);
                        q = put_sp_i64(q, o->pre[k].rem);
                }
                len = (size_t)(q - c->sbuf);
                wadd(c, o->partition, ent, elen, FLS_DEFER_SET, "pre", 0, c->sbuf, len);
                wadd(c, o->partition, "p:pre", 5, FLS_DEFER_SET, c->text + o->key, 0,
                     c->sbuf, len);
                if (!pre_ttl) {
                        wadd(c, o->partition, "p:pre", 5, FLS_DEFER_EXPIRE, "",
                             c->user_ttl_s, NULL, 0);
                        pre_ttl = 1;
                }
        }
}

/* Snapshot writes of the categories and the partition the batch touched (after
 * features; users follow the policy). */
static void snapshot_writes(clickstream_t *c)
{
        char ent[300];
        size_t len, elen;

        for (size_t i = 0; i < c->nov; i++) {
                struct ov *o = &c->ov[i];
                if (o->touch != c->nbatch)
                        continue;
                if (o->kind == 'k') {
                        /* The batch's views, appended: ~30 bytes each, where a
                         * snapshot of the last TR_KEEP views (~10 kB) was written
                         * per category and batch. */
                        elen = put_key(ent, 'k', c->text + o->key, o->key_len);
                        c->sbuf = fls_grow(c->sbuf, &c->sbuf_cap, 2 * 21 + 1 + 64, 1);
                        for (size_t k = o->tr_sent; k < o->ntr; k++) {
                                char *q = put_i64(c->sbuf, o->tr[k].off);
                                q = put_sp_i64(q, o->tr[k].ts);
                                *q++ = ' ';
                                memcpy(q, c->text + o->tr[k].sku, o->tr[k].sku_len);
                                q += o->tr[k].sku_len;
                                wadd(c, o->partition, ent, elen, FLS_DEFER_PUSH, "tr",
                                     CAT_TTL_S, c->sbuf, (size_t)(q - c->sbuf));
                        }
                        o->tr_sent = o->ntr;
                } else if (o->kind == 'p' && o->nsch > 0) {
                        char *q;
                        c->sbuf = fls_grow(c->sbuf, &c->sbuf_cap, 8 + SALE_CH * 48, 1);
                        q = c->sbuf;
                        *q++ = '3';
                        for (int k = 0; k < o->nsch; k++) {
                                q = put_sp_i64(q, o->sch[k].off);
                                q = put_sp_i64(q, o->sch[k].sale);
                        }
                        len = (size_t)(q - c->sbuf);
                        wadd(c, o->partition, "p:all", 5, FLS_DEFER_SET, "sale_s", 0,
                             c->sbuf, len);
                        wadd(c, o->partition, "p:all", 5, FLS_DEFER_MAX, "sale_d",
                             -o->sale, NULL, 0);
                }
        }
        c->nwr_snap = c->nwr;
        c->wtext_snap = c->wtext.len;
}

/* ---- policy ----------------------------------------------------------------- */

static int has_camp(const struct ov *u, uint32_t h)
{
        for (int i = 0; i < u->ncamp; i++)
                if (u->camps[i] == h)
                        return 1;
        return 0;
}

static void policy(clickstream_t *c, struct pending *p, fls_click_feat_t *f)
{
        struct ov *u = &c->ov[p->ov_user];
        int64_t last = f->last_action_ts > u->act_ts ? f->last_action_ts : u->act_ts;
        int swept = u->sw_off >= 0 && p->offset > u->sw_off; /* inactive reminder */
        int cap_ok;
        if (swept && u->sw_ts > last)
                last = u->sw_ts;
        cap_ok = last < 0 || p->ts - last >= c->cap_ms;
        int before_sale = !p->in_sale && (f->sale_start < 0 || p->ts < f->sale_start);
        uint32_t camp = p->camp_len ? fls_isim_sku_id(c->text + p->camp, p->camp_len) : 0;
        double conv = f->part_conv_5m / c->conv_ref;

        f->kind = FLS_CLICK_NONE;
        f->reason = "none";
        f->capped = f->first_cap = 0;
        f->nreco = 0;
        f->min_intent = c->min_intent * (conv > 1 ? conv : 1);
        if (p->in_sale && f->cart_items > 0 && !f->coupon_taken && !has_camp(u, camp) &&
            (f->since_purchase_ms < 0 || f->since_purchase_ms >= c->no_buy_ms) &&
            f->intent >= f->min_intent && f->intent <= c->max_intent) {
                f->kind = FLS_CLICK_COUPON;
                f->reason = "cart_hesitant";
        } else if (before_sale && f->participation >= c->rem_min && f->pre_views > 0 &&
                   !f->reminded && !u->rem && !swept) {
                f->kind = FLS_CLICK_REMINDER;
                f->reason = "pre_sale_interest";
        } else if (p->type == VIEW && p->ov_cat >= 0 && f->participation >= c->reco_min &&
                   f->cart_items == 0) {
                trending(c, p, f);
                if (f->nreco > 0) {
                        f->kind = FLS_CLICK_RECOMMENDATION;
                        f->reason = "trending_in_category";
                }
        }
        if (f->kind != FLS_CLICK_NONE && !cap_ok) {
                f->capped = 1;
                f->first_cap = !f->was_capped && !u->capped;
                u->capped = 1;
                f->kind = FLS_CLICK_NONE;
                f->reason = "capped";
                return;
        }
        if (f->kind == FLS_CLICK_COUPON && p->claim_state < 0) {
                /* Refused by the paced budget: nothing sent, nothing changes. */
                f->kind = FLS_CLICK_NONE;
                f->reason = "budget_paced";
                return;
        }
        if (f->kind == FLS_CLICK_NONE)
                return;
        u->act_ts = p->ts > u->act_ts ? p->ts : u->act_ts;
        if (f->kind == FLS_CLICK_COUPON && u->ncamp < MAX_CAMP)
                u->camps[u->ncamp++] = camp;
        u->rem |= f->kind == FLS_CLICK_REMINDER;
}

/* The user's state after p's decision, in p's snapshot entry. */
static void policy_after(clickstream_t *c, const struct pending *p)
{
        struct ov *u = &c->ov[p->ov_user];
        const fls_click_feat_t *f = &c->feat[p - c->pend];
        for (int k = u->nh; k-- > 0;)
                if (u->hist[k].off == p->offset) {
                        u->hist[k].act_ts = u->act_ts;
                        break;
                }
        for (int k = u->npre; k-- > 0;)
                if (u->pre[k].off == p->offset) {
                        u->pre[k].act_ts = u->act_ts;
                        u->pre[k].rem = f->reminded || u->rem ||
                                        (u->sw_off >= 0 && p->offset > u->sw_off);
                        break;
                }
}

/* The records of the inactive sweep after the batch's events (before the policy,
 * which fills in each entry's decision state): an event before the sale adds an
 * entry with its participation score; the user's first event after the sale start
 * adds the closing entry. */
static void pre_update(clickstream_t *c)
{
        for (size_t k = 0; k < c->norder; k++) {
                const struct pending *p = &c->pend[c->order[k]];
                const fls_click_feat_t *f = &c->feat[c->order[k]];
                struct ov *u = &c->ov[p->ov_user];
                int pre = !p->in_sale && (f->sale_start < 0 || p->ts < f->sale_start);
                if ((u->npre > 0 && u->pre[u->npre - 1].score < 0) ||
                    (!pre && u->npre == 0))
                        continue;
                if (u->npre == PRE_KEEP)
                        memmove(u->pre, u->pre + 1, (PRE_KEEP - 1) * sizeof(*u->pre)),
                            u->npre--;
                u->pre[u->npre++] = (struct pent){
                    p->offset, -1, pre ? (int)lroundf(f->participation * 1e4f) : -1, 0};
                u->pre_touch = c->nbatch;
        }
}

static int cmp_cand(const void *x, const void *y)
{
        const struct cand *a = x, *b = y;
        if (a->score != b->score)
                return a->score > b->score ? -1 : 1;
        return strcmp(a->user, b->user);
}

/* Adds the user to the sweep's candidates if, as of the trigger e, their record says
 * they were active before the sale only, score high enough, were not reminded and
 * are out of the cap. */
static void consider(clickstream_t *c, const struct pending *e, const char *user,
                     const struct pent *ents, int n, int ov)
{
        const struct pent *l = pre_asof(ents, n, e->offset);
        if (!l || l->score < c->inactive_min || l->rem ||
            (l->act_ts >= 0 && e->ts - l->act_ts < c->cap_ms))
                return;
        c->cand = fls_grow(c->cand, &c->cand_cap, c->ncand + 1, sizeof(*c->cand));
        c->cand[c->ncand++] = (struct cand){user, l->score, ov};
}

/* The inactive sweep that event e triggers (see the top of the file), at its place
 * in the policy pass: the users' decision state before e is final in this pass. */
static void sweep(clickstream_t *c, const struct pending *e, fls_click_feat_t *f)
{
        const fls_hash_t *r = c->pre_reply;
        uint64_t gen = ++c->sweep_gen;
        char ent[300], val[64];
        size_t n;

        c->ncand = 0;
        for (size_t i = 0; r && i < r->n; i++) {
                const char *user = r->fields[i];
                int oi = ov_find(c, e->partition, 'u', user, strlen(user));
                struct pent tmp[PRE_KEEP];
                if (oi >= 0) {
                        /* The overlay's record is the same one, advanced by the poll. */
                        c->ov[oi].sweep_seen = gen;
                        consider(c, e, c->text + c->ov[oi].key, c->ov[oi].pre,
                                 c->ov[oi].npre, oi);
                } else {
                        consider(c, e, user, tmp, parse_pre(r->values[i], tmp), -1);
                }
        }
        for (size_t i = 0; i < c->nov; i++) {
                const struct ov *o = &c->ov[i];
                if (o->kind == 'u' && o->partition == e->partition && o->npre > 0 &&
                    o->sweep_seen != gen)
                        consider(c, e, c->text + o->key, o->pre, o->npre, (int)i);
        }
        qsort(c->cand, c->ncand, sizeof(*c->cand), cmp_cand);
        n = c->ncand < (size_t)c->inactive_max ? c->ncand : (size_t)c->inactive_max;
        c->rems = fls_grow(c->rems, &c->rem_cap, c->nrem + n, sizeof(*c->rems));
        snprintf(val, sizeof(val), "%" PRId64 " %" PRId64, e->offset, e->ts);
        for (size_t k = 0; k < n; k++) {
                const struct cand *a = &c->cand[k];
                int len = snprintf(ent, sizeof(ent), "u:%s", a->user);
                c->rems[c->nrem++] = (fls_click_rem_t){e->partition, e->offset, e->ts,
                                                       a->user, (float)a->score / 1e4f};
                wadd(c, e->partition, ent, (size_t)len, FLS_DEFER_MAX, "act_ts", e->ts,
                     NULL, 0);
                wadd(c, e->partition, ent, (size_t)len, FLS_DEFER_MAX, "rem", -e->offset,
                     NULL, 0);
                wadd(c, e->partition, ent, (size_t)len, FLS_DEFER_SET, "irem", 0, val,
                     strlen(val));
                wadd(c, e->partition, ent, (size_t)len, FLS_DEFER_EXPIRE, "",
                     c->user_ttl_s, NULL, 0);
                if (a->ov >= 0) {
                        /* The user's later events in the poll see the reminder. */
                        c->ov[a->ov].sw_off = e->offset;
                        c->ov[a->ov].sw_ts = e->ts;
                }
        }
        wadd(c, e->partition, "p:all", 5, FLS_DEFER_MAX, "sweep", -e->offset, NULL, 0);
        f->sweep_n = (int)n;
}

/* One pass of the policy over the batch from the users' state at its start; then
 * the decision writes. Claims not asked yet count as granted. */
static void policy_pass(clickstream_t *c)
{
        char ent[300], field[300];

        for (size_t k = 0; k < c->norder; k++) {
                struct ov *u = &c->ov[c->pend[c->order[k]].ov_user];
                u->sw_off = u->s_sw_off;
                u->sw_ts = u->s_sw_ts;
                u->act_ts = u->s_act_ts;
                u->rem = u->s_rem;
                u->capped = u->s_capped;
                u->ncamp = u->s_ncamp;
                memcpy(u->camps, u->s_camps, sizeof(u->camps));
        }
        /* The text of the writes dropped goes too: each claim round used to append
         * every touched user's snapshot again (~3 kB each), and wtext kept the
         * high-water mark of the batch with the most refusals. */
        c->nwr = c->nwr_snap;
        c->wtext.len = c->wtext_snap;
        c->nrem = 0;
        for (size_t k = 0; k < c->norder; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                int n;
                if (p->sweep)
                        sweep(c, p, f);
                policy(c, p, f);
                policy_after(c, p);
                n = (int)put_key(ent, 'u', c->text + p->user, p->user_len);
                /* Marks hold minus the first offset (MAX keeps the first). */
                if (f->capped) {
                        wadd(c, p->partition, ent, (size_t)n, FLS_DEFER_MAX, "capped",
                             -p->offset, NULL, 0);
                        if (f->first_cap && !p->cap_counted)
                                wadd(c, p->partition, "p:all", 5, FLS_DEFER_INCR,
                                     "capped_users", 1, NULL, 0);
                        continue;
                }
                if (f->kind == FLS_CLICK_NONE)
                        continue;
                wadd(c, p->partition, ent, (size_t)n, FLS_DEFER_MAX, "act_ts", p->ts,
                     NULL, 0);
                if (f->kind == FLS_CLICK_COUPON) {
                        cpn_field(field, sizeof(field), c->text + p->camp, p->camp_len);
                        wadd(c, p->partition, ent, (size_t)n, FLS_DEFER_MAX, field,
                             -p->offset, NULL, 0);
                } else if (f->kind == FLS_CLICK_REMINDER) {
                        wadd(c, p->partition, ent, (size_t)n, FLS_DEFER_MAX, "rem",
                             -p->offset, NULL, 0);
                }
        }
        user_writes(c);
}

/* Four decimals are plenty for a consumer of the record. */
static float score4(float s)
{
        return roundf(s * 1e4f) / 1e4f;
}

/* Whether the policy may read the event's intent: a coupon candidate but for the score
 * and the per-user state the policy changes (a superset, so decisions are the same as
 * if every event were scored). */
static int needs_intent(const clickstream_t *c, const struct pending *p,
                        const fls_click_feat_t *f)
{
        return p->in_sale && f->cart_items > 0 &&
               (f->since_purchase_ms < 0 || f->since_purchase_ms >= c->no_buy_ms);
}

/* Likewise for participation: an event before the sale (reminders, the sweep's
 * records) or a view that may get a recommendation. */
static int needs_part(const struct pending *p, const fls_click_feat_t *f)
{
        int before_sale = !p->in_sale && (f->sale_start < 0 || p->ts < f->sale_start);
        return before_sale || (p->type == VIEW && p->ov_cat >= 0 && f->cart_items == 0);
}

/* Scores the events whose decision reads a score; the others keep NaN until an action
 * for them is sent (score_sent). The models were a fifth of the consumer's CPU, and
 * most events need neither score: a view in the sale with a cart, say. */
static int score(clickstream_t *c, char *errstr, size_t errstr_size)
{
        size_t nfi = T * fls_isim_nfeatures(), nfp = fls_part_nfeatures(), m = 0;

        for (size_t k = 0; k < c->norder; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                f->intent = f->participation = NAN;
                /* Row by row: see the top of the file (batched sgemm is not
                 * bit-stable). */
                if (needs_intent(c, p, f)) {
                        if (fls_model_predict(c->intent, c->xi + k * nfi, 1, c->si + k,
                                              errstr, errstr_size) < 0)
                                return -1;
                        f->intent = score4(c->si[k]);
                }
                if (needs_part(p, f)) {
                        memcpy(c->xq + m * nfp, c->xp + k * nfp, nfp * sizeof(float));
                        c->qrow[m++] = k;
                }
        }
        /* The forest walks its trees for a block of rows at a time: one call. */
        if (m > 0 && fls_model_predict(c->part, c->xq, m, c->sp, errstr, errstr_size) < 0)
                return -1;
        for (size_t j = 0; j < m; j++)
                c->feat[c->order[c->qrow[j]]].participation = score4(c->sp[j]);
        return 0;
}

/* The scores an action's record carries, for an event that was not scored yet. */
static int score_sent(clickstream_t *c, size_t k, char *errstr, size_t errstr_size)
{
        fls_click_feat_t *f = &c->feat[c->order[k]];
        float s;

        if (isnan(f->intent)) {
                if (fls_model_predict(c->intent, c->xi + k * T * fls_isim_nfeatures(), 1,
                                      &s, errstr, errstr_size) < 0)
                        return -1;
                f->intent = score4(s);
        }
        if (isnan(f->participation)) {
                if (fls_model_predict(c->part, c->xp + k * fls_part_nfeatures(), 1, &s,
                                      errstr, errstr_size) < 0)
                        return -1;
                f->participation = score4(s);
        }
        return 0;
}

int fls_clickstream_prepare(void *app, fls_batch_t *b, char *errstr, size_t errstr_size)
{
        clickstream_t *c = app;
        size_t nfi = T * fls_isim_nfeatures(), nfp = fls_part_nfeatures(), n = 0;

        for (size_t i = 0; i < c->npend && n < c->max_rows; i++)
                if (c->pend[i].batch == b)
                        c->order[n++] = i;
        c->norder = n;
        c->nwr = c->nwr_snap = 0;
        c->wtext.len = c->wtext_snap = 0;
        c->nrem = 0;
        c->pre_reply = NULL;
        if (n == 0)
                return 0;
        for (size_t k = 0; k < n && !c->pre_reply; k++)
                if (c->pend[c->order[k]].r_pre >= 0)
                        c->pre_reply = fls_batch_reply(b, c->pend[c->order[k]].r_pre);
        /* The overlay lives for the whole poll, not one batch: after a restart a poll
         * holds the replayed batch and the next new one of the same partition, and
         * the replayed batch's deferred writes reach Redis only with the partition's
         * next script call, after this poll. */
        if (c->ov_poll != c->poll || c->nov == 0)
                ov_reset(c);
        c->nbatch++;
        build_later(c, n);
        for (size_t k = 0; k < n; k++) {
                struct pending *p = &c->pend[c->order[k]];
                p->claim = -1;
                p->claim_state = 0;
                features(c, p, k, &c->feat[c->order[k]], c->xi + k * nfi,
                         c->xp + k * nfp);
        }
        snapshot_writes(c);
        if (score(c, errstr, errstr_size) < 0)
                return -1;
        if (c->inactive_max > 0)
                pre_update(c); /* no sweep, no records: nothing to pay */
        policy_pass(c);
        if (c->inactive_max > 0) {
                /* What the next batches' update() may assume (see struct pcache). */
                const struct pending *p = &c->pend[c->order[n - 1]];
                const fls_hash_t *all = fls_batch_reply(b, p->r_all);
                const char *sn = fls_hash_get(all, "sale_neg"),
                           *sw = fls_hash_get(all, "sweep");
                struct pcache *pc = pcache_get(c, p->partition);
                pc->warm = 1;
                pc->sale_lo = sn ? -num(sn) : -1;
                if (sw)
                        pc->swept = -num(sw);
                for (size_t k = 0; k < n; k++)
                        if (c->pend[c->order[k]].sweep)
                                pc->swept = c->pend[c->order[k]].offset;
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

size_t fls_clickstream_reminders(void *app, const fls_click_rem_t **out)
{
        clickstream_t *c = app;
        *out = c->rems;
        return c->nrem;
}

size_t fls_clickstream_writes(void *app, const fls_click_write_t **out)
{
        clickstream_t *c = app;
        c->wout = fls_grow(c->wout, &c->wout_cap, c->nwr + 1, sizeof(*c->wout));
        for (size_t i = 0; i < c->nwr; i++) {
                const struct wr *w = &c->wr[i];
                c->wout[i] =
                    (fls_click_write_t){w->partition,
                                        w->kind,
                                        c->wtext.buf + w->entity,
                                        c->wtext.buf + w->field,
                                        w->i,
                                        w->s == (size_t)-1 ? NULL : c->wtext.buf + w->s};
        }
        *out = c->wout;
        return c->nwr;
}

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

/* A reminder of the inactive sweep: no SKU, no intent score (the sweep scores no
 * event of the user), the participation of the user's last event before the sale. */
static int send_rem(clickstream_t *c, fls_emit_t *emit, const fls_click_rem_t *r,
                    char *errstr, size_t errstr_size)
{
        static const char reason[] = "inactive_since_sale";
        avro_value_t *out = fls_emit_begin(emit);
        char kind[300], id[512];
        int *o = c->oidx;

        snprintf(kind, sizeof(kind), "inactive:%s", r->user);
        fls_emit_id(emit, r->partition, r->offset, kind, id, sizeof(id));
        if (fls_avro_set_str(out, o[O_ID], id, strlen(id)) ||
            fls_avro_set_str(out, o[O_USER], r->user, strlen(r->user)) ||
            fls_avro_set_enum(out, o[O_KIND], FLS_CLICK_REMINDER) ||
            fls_avro_set_double(out, o[O_VALUE], 0) ||
            fls_avro_set_str(out, o[O_CAMPAIGN], "", 0) ||
            fls_avro_set_double(out, o[O_INTENT], 0) ||
            fls_avro_set_double(out, o[O_PART], r->participation) ||
            fls_avro_set_str(out, o[O_VERS], c->versions, strlen(c->versions)) ||
            fls_avro_set_str(out, o[O_REASON], reason, strlen(reason)) ||
            fls_avro_set_long(out, o[O_TS], r->ts)) {
                snprintf(errstr, errstr_size, "building MarketingAction: %s",
                         avro_strerror());
                return -1;
        }
        return fls_emit_send(emit, r->user, strlen(r->user), errstr, errstr_size);
}

static int decide(void *app, fls_batch_t *b, fls_emit_t *emit, char *errstr,
                  size_t errstr_size)
{
        clickstream_t *c = app;
        fls_claims_t *cl = fls_emit_claims(emit);
        char id[512];

        if (fls_clickstream_prepare(app, b, errstr, errstr_size) < 0)
                return -1;
        /* Coupons claim their value on the campaign's budget, all in one round trip;
         * the paced limit is a pure function of the event time. A refusal can free a
         * later event of the same user for a coupon: decide again and claim those. */
        for (;;) {
                int nclaims = 0, refused = 0;
                fls_claims_reset(cl);
                for (size_t k = 0; k < c->norder; k++) {
                        struct pending *p = &c->pend[c->order[k]];
                        fls_click_feat_t *f = &c->feat[c->order[k]];
                        int64_t start = f->sale_start >= 0 ? f->sale_start : p->ts, limit;
                        double share;
                        char counter[300];
                        if (f->kind != FLS_CLICK_COUPON || p->claim_state != 0)
                                continue;
                        share =
                            c->pace_slack + (double)(p->ts - start) / (double)c->sale_ms;
                        limit = share >= 1 ? c->budget_c
                                           : (int64_t)((double)c->budget_c * share);
                        snprintf(counter, sizeof(counter), "budget:%.*s",
                                 (int)p->camp_len, c->text + p->camp);
                        p->claim = fls_emit_claim(emit, counter, p->partition, p->offset,
                                                  "coupon",
                                                  llround(c->coupon_value * 100), limit);
                        nclaims++;
                }
                if (nclaims == 0)
                        break;
                if (fls_emit_claims_run(emit) < 0) {
                        snprintf(errstr, errstr_size,
                                 "stopping while claiming coupon budgets");
                        return -1;
                }
                for (size_t k = 0; k < c->norder; k++) {
                        struct pending *p = &c->pend[c->order[k]];
                        if (p->claim < 0)
                                continue;
                        p->claim_state = fls_claims_granted(cl, p->claim) > 0 ? 1 : -1;
                        c->feat[c->order[k]].claim = p->claim;
                        p->claim = -1;
                        if (p->claim_state < 0) {
                                refused++;
                                if (c->m_refused)
                                        fls_counter_add(c->m_refused, 1);
                        }
                }
                if (!refused)
                        break;
                policy_pass(c);
        }
        for (size_t k = 0; k < c->norder; k++) {
                struct pending *p = &c->pend[c->order[k]];
                fls_click_feat_t *f = &c->feat[c->order[k]];
                if (f->capped && c->m_capped)
                        fls_counter_add(c->m_capped, 1);
                if (f->kind == FLS_CLICK_NONE)
                        continue;
                fls_emit_id(emit, p->partition, p->offset, kind_names[f->kind], id,
                            sizeof(id));
                if (score_sent(c, k, errstr, errstr_size) < 0 ||
                    send(c, emit, p, f, id, errstr, errstr_size) < 0)
                        return -1;
                if (c->m_actions[f->kind])
                        fls_counter_add(c->m_actions[f->kind], 1);
        }
        for (size_t k = 0; k < c->nrem; k++) {
                if (send_rem(c, emit, &c->rems[k], errstr, errstr_size) < 0)
                        return -1;
                if (c->m_actions[FLS_CLICK_REMINDER])
                        fls_counter_add(c->m_actions[FLS_CLICK_REMINDER], 1);
        }
        /* Snapshots and decision state: durable with this batch's "emitted" mark. */
        for (size_t i = 0; i < c->nwr; i++) {
                const struct wr *w = &c->wr[i];
                fls_emit_defer(emit, w->partition, c->wtext.buf + w->entity, w->kind,
                               c->wtext.buf + w->field, w->i,
                               w->s == (size_t)-1 ? NULL : c->wtext.buf + w->s);
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
    .reload = reload,
};
