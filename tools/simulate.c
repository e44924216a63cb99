/*
 * simulate: `flashstream simulate`, a seeded, deterministic flash-sale traffic generator.
 *
 * It stands in for the storefront, the order system and the shipping system: it produces
 * Confluent-framed Avro ClickEvent, OrderEvent and ShipmentEvent messages to the input
 * topics the consumers read (clickstream keyed by user_id, orders by "sku:warehouse_id",
 * shipments by shipment_id), and can write the same events together with the ground
 * truth behind them (user intent, true delivery times, demand per SKU and warehouse) as
 * CSV files, so that tests and evaluations can compare what the consumers concluded with
 * what really happened. File formats: tools/SIMULATE.md.
 *
 * Model. A simulated clock starts at sim.start_ts and advances in 10 ms ticks. Click
 * events arrive at sim.rate/s until sim.sale_start_s, then ramp to sim.spike x within
 * 2 s and decay exponentially towards 5x by the end of sim.duration_s. Users have a
 * latent intent in [0,1] (Kumaraswamy(0.8, 1.5), a closed-form beta look-alike; bands
 * never < 0.05 <= persuadable <= 0.8 < sure) and a region; SKUs have Zipf(sim.zipf_s)
 * popularity over a shuffled rank, a category, a price and a weight. Each click event
 * advances one of a pool of sessions: view -> click -> add to cart (-> remove) ->
 * checkout, with probabilities rising with intent and during the sale ("never" users
 * never buy). A checkout takes each line from the nearest warehouse of the user's region
 * that has stock: a PLACED OrderEvent per line, or lost demand when no warehouse has any.
 * Opening stock and periodic restocking are STOCK_RECEIPT events. Lines from one
 * warehouse make a parcel: 3% are CANCELLED before shipping; the rest become a shipment
 * (CREATED a few seconds later, then PICKED, HANDED_TO_CARRIER, IN_TRANSIT and
 * DELIVERED, or 2% FAILED) whose true delivery time grows with distance, with the load
 * of its region (shipments created there in the last half hour) and with the time of
 * day (dispatch cut-off 16:00 UTC, no dispatch before 08:00). Delivered parcels are
 * sometimes REFUNDED and failed ones always, returning their stock. Follow-up events
 * wait in a time-ordered heap and go out when the clock reaches them, so shipments
 * finish after the run ends unless sim.drain replays them.
 *
 * Determinism: every draw comes from two xoshiro256** streams seeded from sim.seed,
 * consumed in a fixed order, so the same seed and options give the same messages per
 * topic and byte-identical files. The wall clock only paces sim.realtime runs and, with
 * sim.start_ts = 0, picks the start time.
 */
#include "cmd.h"
#include "codec.h"
#include "conf.h"
#include "log.h"
#include "settings.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define COMP  "simulate"
#define SCOPE "simulate"

const fls_conf_def_t fls_simulate_conf[] = {
    {"sim.seed", FLS_CONF_INT, "42", 0, 9007199254740992.0,
     "Seed of the generator: the same seed and options give the same events.", SCOPE},
    {"sim.rate", FLS_CONF_DBL, "500", 0.01, 10000000,
     "Baseline click events per simulated second before the sale.", SCOPE},
    {"sim.duration_s", FLS_CONF_INT, "60", 0, 31536000,
     "Simulated seconds to generate; 0: until sim.events or a signal.", SCOPE},
    {"sim.events", FLS_CONF_INT, "0", 0, 1e15,
     "Stop after this many events over all topics; 0: no limit.", SCOPE},
    {"sim.users", FLS_CONF_INT, "10000", 1, 100000000, "Number of users.", SCOPE},
    {"sim.skus", FLS_CONF_INT, "2000", 1, 10000000, "Number of SKUs.", SCOPE},
    {"sim.warehouses", FLS_CONF_INT, "4", 1, 64, "Number of warehouses.", SCOPE},
    {"sim.regions", FLS_CONF_INT, "8", 1, 1000, "Number of delivery regions.", SCOPE},
    {"sim.zipf_s", FLS_CONF_DBL, "1.1", 0, 5,
     "Exponent of the Zipf popularity of SKUs (0: uniform).", SCOPE},
    {"sim.hot_share", FLS_CONF_DBL, "0", 0, 1,
     "Share of product views (and the clicks that follow them) sent to SKU s1, the "
     "rest drawn by sim.zipf_s; for hot-key benchmarks. 0: off.",
     SCOPE},
    {"sim.sale_start_s", FLS_CONF_INT, "10", 0, 31536000,
     "Simulated second at which the flash sale starts.", SCOPE},
    {"sim.spike", FLS_CONF_DBL, "25", 1, 1000,
     "Peak click rate at the sale start, as a multiple of sim.rate.", SCOPE},
    {"sim.start_ts", FLS_CONF_INT, "0", 0, 4102444800000.0,
     "Simulated clock at the start, UTC ms; 0: the wall clock at start.", SCOPE},
    {"sim.realtime", FLS_CONF_BOOL, "true", 1, 0,
     "Pace events to the wall clock; false: as fast as possible (timestamps still follow "
     "the simulated clock).",
     SCOPE},
    {"sim.out_dir", FLS_CONF_STR, "", 1, 0,
     "Folder for the events and ground truth as CSV plus summary.json; empty: no files.",
     SCOPE},
    {"sim.produce", FLS_CONF_BOOL, "true", 1, 0,
     "Produce to Kafka; false: write files only.", SCOPE},
    {"sim.progress_ms", FLS_CONF_INT, "1000", 0, 3600000,
     "Wall-clock interval of the progress log line; 0: none.", SCOPE},
    {"sim.drain", FLS_CONF_BOOL, "false", 1, 0,
     "After the run, emit the pending follow-up events (shipment statuses, "
     "cancellations, "
     "refunds) at their future simulated times; needs sim.realtime=false.",
     SCOPE},
    {"sim.flush_ms", FLS_CONF_INT, "30000", 0, 600000,
     "Time allowed at the end to deliver the produced messages.", SCOPE},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ------------------------------------------------------------------ constants */

#define TICK_MS       10
#define RAMP_MS       2000
#define DEMAND_IVL_MS 60000
#define RESTOCK_MS    30000
#define LOAD_TAU_MS   1800000.0 /* region load: shipments of the last ~30 min */
#define SESSION_POOL  4096
#define MAX_CART      4
#define HOUR_MS       3600000.0
#define CAMPAIGN      "flash-sale-1"
#define CSV_BUF       (1 << 16)
#define CSV_ROW_MAX   2048     /* longest row we can format; ids and names are short */
#define MAX_PAIRS     20000000 /* skus x warehouses: memory bound of the stock tables */
#define POLL_EVERY    1024

static const char *const categories[] = {
    "electronics", "phones", "computers", "audio",   "gaming",  "home",
    "kitchen",     "garden", "fashion",   "shoes",   "beauty",  "health",
    "toys",        "books",  "sports",    "outdoor", "grocery", "pets",
};
#define NCATEGORIES (sizeof(categories) / sizeof(categories[0]))

/* Carriers differ a little in speed; the factor multiplies the travel time. */
static const char *const carriers[] = {"swiftpost", "parcelnet", "roadrunner",
                                       "lastmile"};
static const double carrier_speed[] = {0.9, 1.0, 1.1, 1.2};
#define NCARRIERS (sizeof(carriers) / sizeof(carriers[0]))

static const char *const click_types[] = {"VIEW",     "CLICK",       "SEARCH",
                                          "ADD_CART", "REMOVE_CART", "PURCHASE"};
enum { CT_VIEW, CT_CLICK, CT_SEARCH, CT_ADD_CART, CT_REMOVE_CART, CT_PURCHASE };
static const char *const order_types[] = {"PLACED", "CANCELLED", "REFUNDED",
                                          "STOCK_RECEIPT"};
enum { OT_PLACED, OT_CANCELLED, OT_REFUNDED, OT_STOCK_RECEIPT };
static const char *const ship_statuses[] = {
    "CREATED", "PICKED", "HANDED_TO_CARRIER", "IN_TRANSIT", "DELIVERED", "FAILED"};
enum { SS_CREATED, SS_PICKED, SS_HANDED, SS_IN_TRANSIT, SS_DELIVERED, SS_FAILED };

/* Field names in schema order: the CSV header, and checked against the codec at
 * start-up so that a schema change cannot silently shift the columns. */
static const char *const click_fields[] = {
    "event_id", "user_id",  "session_id", "type",        "sku", "category",
    "price",    "quantity", "dwell_ms",   "campaign_id", "ts",  NULL};
static const char *const order_fields[] = {
    "event_id", "type",       "order_id", "user_id",    "sku", "warehouse_id",
    "quantity", "unit_price", "region",   "flash_sale", "ts",  NULL};
static const char *const ship_fields[] = {
    "event_id",    "shipment_id", "order_id",  "status",  "warehouse_id",
    "region",      "distance_km", "weight_kg", "carrier", "flash_sale",
    "promised_ts", "ts",          NULL};

/* ------------------------------------------------------------------ PRNG */

/* xoshiro256** seeded through splitmix64: fast, good, and ours, so the sequence does
 * not depend on the C library. */
typedef struct {
        uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
        for (int i = 0; i < 4; i++)
                r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng_t *r)
{
        uint64_t *s = r->s;
        uint64_t result = rotl64(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl64(s[3], 45);
        return result;
}

/* [0, 1) */
static inline double rng_unif(rng_t *r)
{
        return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static inline double rng_range(rng_t *r, double lo, double hi)
{
        return lo + (hi - lo) * rng_unif(r);
}

/* [0, n): multiply-shift; the bias for n far below 2^32 is negligible here. */
static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
        return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static double rng_normal(rng_t *r)
{
        double u1 = 1.0 - rng_unif(r); /* (0, 1]: log() stays finite */
        double u2 = rng_unif(r);
        return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ------------------------------------------------------------------ text helpers */

static size_t fmt_u64(char *buf, uint64_t v)
{
        char tmp[24];
        size_t n = 0, i;
        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        for (i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return n;
}

/* "u" + 17 -> "u17" */
static size_t fmt_id(char *buf, const char *prefix, uint64_t n)
{
        size_t p = strlen(prefix);
        memcpy(buf, prefix, p);
        return p + fmt_u64(buf + p, n);
}

/* A fixed-point value v / 10^decimals as decimal text ("12.50"): exact, unlike %g,
 * and the same text parses back to the double that was encoded. */
static size_t fmt_fixed(char *buf, int64_t v, int decimals)
{
        static const int64_t pow10[] = {1, 10, 100, 1000, 10000};
        size_t n = 0;
        uint64_t a;
        if (v < 0) {
                buf[n++] = '-';
                a = (uint64_t)(-(v + 1)) + 1;
        } else {
                a = (uint64_t)v;
        }
        n += fmt_u64(buf + n, a / (uint64_t)pow10[decimals]);
        if (decimals > 0) {
                uint64_t frac = a % (uint64_t)pow10[decimals];
                buf[n++] = '.';
                for (int d = decimals - 1; d >= 0; d--) {
                        buf[n + (size_t)d] = (char)('0' + frac % 10);
                        frac /= 10;
                }
                n += (size_t)decimals;
        }
        buf[n] = '\0';
        return n;
}

/* ------------------------------------------------------------------ CSV output */

/* A buffered CSV file of our own: the rows are built field by field without stdio
 * formatting, which would cost more than the rest of the event. */
typedef struct {
        FILE *fp;
        int err; /* errno of the first failed write */
        int nfield;
        size_t len;
        char buf[CSV_BUF];
} csv_t;

static void csv_drain(csv_t *c)
{
        if (c->len && fwrite(c->buf, 1, c->len, c->fp) != c->len && !c->err)
                c->err = errno ? errno : EIO;
        c->len = 0;
}

static void csv_raw(csv_t *c, const char *s, size_t n)
{
        if (c->len + n > CSV_BUF) {
                csv_drain(c);
                if (n > CSV_BUF) { /* cannot happen with our short fields */
                        if (fwrite(s, 1, n, c->fp) != n && !c->err)
                                c->err = EIO;
                        return;
                }
        }
        memcpy(c->buf + c->len, s, n);
        c->len += n;
}

static void csv_sep(csv_t *c)
{
        if (c->nfield++)
                csv_raw(c, ",", 1);
}

/* RFC 4180 quoting, only when the text needs it. */
static void csv_str(csv_t *c, const char *s, size_t n)
{
        csv_sep(c);
        if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) &&
            !memchr(s, '\r', n)) {
                csv_raw(c, s, n);
                return;
        }
        csv_raw(c, "\"", 1);
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '"')
                        csv_raw(c, "\"", 1);
                csv_raw(c, s + i, 1);
        }
        csv_raw(c, "\"", 1);
}

static void csv_end(csv_t *c)
{
        csv_raw(c, "\n", 1);
        c->nfield = 0;
}

static csv_t *csv_open(const char *dir, const char *name, const char *const *header,
                       char *errstr, size_t errstr_size)
{
        char path[4096];
        csv_t *c;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->fp = fopen(path, "w");
        if (!c->fp) {
                snprintf(errstr, errstr_size, "%.400s: %s", path, strerror(errno));
                free(c);
                return NULL;
        }
        for (; *header; header++)
                csv_str(c, *header, strlen(*header));
        csv_end(c);
        return c;
}

/* Returns -1 (errstr) when any write failed; frees c either way. NULL-safe. */
static int csv_close(csv_t *c, const char *name, char *errstr, size_t errstr_size)
{
        int rc = 0;
        if (!c)
                return 0;
        csv_drain(c);
        if (fclose(c->fp) != 0 && !c->err)
                c->err = errno ? errno : EIO;
        if (c->err) {
                snprintf(errstr, errstr_size, "%s: %s", name, strerror(c->err));
                rc = -1;
        }
        free(c);
        return rc;
}

/* ------------------------------------------------------------------ world */

typedef struct {
        float intent; /* rounded to 4 decimals so the truth file is exact */
        uint16_t region;
} user_t;

typedef struct {
        int64_t cents;      /* list price */
        int64_t sale_cents; /* price during the sale */
        uint32_t grams;
        uint16_t cat;
} sku_t;

typedef struct {
        int32_t demanded, sold;
} demand_t;

/* A parcel: the lines of one order served by one warehouse. It lives from checkout to
 * its last follow-up event (cancellation, delivery or refund). */
typedef struct {
        uint64_t order_no, ship_no;
        int64_t created_ts, promised_ts;
        int64_t step_ts[4]; /* picked, handed to carrier, in transit, delivered/failed */
        uint32_t user;
        uint32_t dist_dkm; /* distance in 0.1 km */
        uint16_t region, wh;
        uint8_t flash, nlines, failed, carrier;
        struct {
                uint32_t sku;
                int32_t qty;
                int64_t cents;
        } line[MAX_CART];
        uint32_t next_free;
} parcel_t;

/* What the heap entry does when the clock reaches it. */
enum {
        A_CANCEL,
        A_CREATE,
        A_PICKED,
        A_HANDED,
        A_IN_TRANSIT,
        A_DONE,
        A_REFUND,
};

typedef struct {
        int64_t due;
        uint64_t seq; /* ties broken by insertion order: deterministic */
        uint32_t parcel;
        uint32_t action;
} pending_t;

enum { S_FREE, S_START, S_SEARCHED, S_BROWSE, S_CLICKED };

typedef struct {
        uint64_t no;
        uint32_t user, sku;
        uint8_t state, ncart;
        struct {
                uint32_t sku;
                int32_t qty;
                int64_t cents;
        } cart[MAX_CART];
} session_t;

enum { T_CLICK, T_ORDER, T_SHIP, NTOPICS };

typedef struct {
        const char *name; /* the Kafka topic */
        const char *file;
        rd_kafka_topic_t *rkt;
        fls_codec_t *codec;
        avro_value_t *rec; /* the record being filled */
        csv_t *csv;
        int nfield; /* fields set so far in the current event, for the sanity check */
        int rc;     /* OR of the setters' results of the current event */
        size_t row_start; /* CSV buffer offset of the row being built */
        uint64_t count, last_count;
} topic_t;

typedef enum { STOP_NONE, STOP_DURATION, STOP_EVENTS, STOP_SIGNAL, STOP_ERROR } stop_t;
static const char *const stops[] = {"none", "duration", "events", "signal", "error"};

typedef struct {
        /* options */
        uint64_t seed;
        double rate, zipf_s, spike, hot_share;
        int64_t duration_ms, max_events, sale_start_ms, start_ts, progress_ms, flush_ms;
        uint32_t nusers, nskus, nwh, nregions;
        int realtime, produce, drain;
        const char *out_dir;

        rng_t world_rng, rng;
        user_t *users;
        sku_t *skus;
        double *zipf_cdf;    /* by rank */
        uint32_t *rank_sku;  /* rank -> sku index (shuffled) */
        double *dist;        /* [wh * nregions + region], km */
        uint16_t *wh_order;  /* [region * nwh + k]: warehouses nearest first */
        double *region_load; /* decayed count of recent shipments */
        int64_t *region_load_ts;
        int32_t *stock; /* [sku * nwh + wh] */
        demand_t *demand;
        uint32_t *touched; /* demand cells changed in the current interval */
        uint32_t ntouched;
        int64_t demand_ivl; /* start of the current interval, -1 before the first */

        session_t sessions[SESSION_POOL];
        parcel_t *parcels;
        uint32_t nparcels, parcels_cap, free_parcel;
        pending_t *heap;
        uint32_t heap_len, heap_cap;
        uint64_t heap_seq;

        /* ids */
        uint64_t click_seq, order_ev_seq, ship_ev_seq, session_seq, order_seq, ship_seq;

        /* clock */
        int64_t now; /* simulated ms of the tick being generated */
        int sale_on;
        double tau_ms;
        double carry;
        int64_t next_restock;

        /* output */
        topic_t topics[NTOPICS];
        csv_t *truth_ship, *truth_demand;
        rd_kafka_t *rk;
        uint64_t total, dr_failed, dr_ok;
        char dr_first_err[256];
        int fatal;
        stop_t stop;

        /* figures for summary.json */
        uint64_t units_demanded, units_sold, units_lost, orders_placed, parcels_cancelled,
            shipments_failed, refunds;

        char errstr[512];
} sim_t;

static volatile sig_atomic_t sim_signalled;

static void sim_on_signal(int sig)
{
        (void)sig;
        sim_signalled = 1;
}

/* ------------------------------------------------------------------ event output */

static void ev_begin(topic_t *t)
{
        t->rec = fls_codec_out(t->codec);
        t->nfield = 0;
        t->rc = 0;
        if (t->csv) {
                /* Room for a whole row, so that an event that is not sent after all
                 * can be taken back (see ev_drop). */
                if (t->csv->len + CSV_ROW_MAX > CSV_BUF)
                        csv_drain(t->csv);
                t->row_start = t->csv->len;
                t->csv->nfield = 0;
        }
}

static void ev_drop(topic_t *t)
{
        if (t->csv) {
                t->csv->len = t->row_start;
                t->csv->nfield = 0;
        }
}

static void ev_str(topic_t *t, const char *s, size_t n)
{
        t->rc |= fls_avro_set_str(t->rec, t->nfield++, s, n);
        if (t->csv)
                csv_str(t->csv, s, n);
}

static void ev_cstr(topic_t *t, const char *s)
{
        ev_str(t, s, strlen(s));
}

static void ev_enum(topic_t *t, int idx, const char *symbol)
{
        t->rc |= fls_avro_set_enum(t->rec, t->nfield++, idx);
        if (t->csv)
                csv_str(t->csv, symbol, strlen(symbol));
}

static void ev_long(topic_t *t, int64_t v)
{
        char buf[32];
        t->rc |= fls_avro_set_long(t->rec, t->nfield++, v);
        if (t->csv) {
                csv_sep(t->csv);
                csv_raw(t->csv, buf, fmt_fixed(buf, v, 0));
        }
}

static void ev_int(topic_t *t, int32_t v)
{
        char buf[16];
        t->rc |= fls_avro_set_int(t->rec, t->nfield++, v);
        if (t->csv) {
                csv_sep(t->csv);
                csv_raw(t->csv, buf, fmt_fixed(buf, v, 0));
        }
}

/* A double given as fixed point, v / 10^decimals. */
static void ev_fixed(topic_t *t, int64_t v, int decimals)
{
        static const double pow10[] = {1, 10, 100, 1000, 10000};
        char buf[32];
        t->rc |= fls_avro_set_double(t->rec, t->nfield++, (double)v / pow10[decimals]);
        if (t->csv) {
                csv_sep(t->csv);
                csv_raw(t->csv, buf, fmt_fixed(buf, v, decimals));
        }
}

static void ev_bool(topic_t *t, int v)
{
        t->rc |= fls_avro_set_bool(t->rec, t->nfield++, v);
        if (t->csv) {
                csv_sep(t->csv);
                csv_raw(t->csv, v ? "true" : "false", v ? 4 : 5);
        }
}

/* Encodes the filled record, produces it and ends the CSV row: the row is written only
 * once the message is accepted, so the files hold exactly what was produced. */
static int ev_send(sim_t *s, topic_t *t, const char *key, size_t keylen)
{
        const void *buf;
        size_t len;

        if (s->stop) { /* the limit was reached by an earlier event of this step */
                ev_drop(t);
                return 0;
        }
        if (t->rc) {
                snprintf(s->errstr, sizeof(s->errstr), "%s: setting a field failed",
                         t->name);
                return -1;
        }
        if (fls_codec_encode(t->codec, &buf, &len, s->errstr, sizeof(s->errstr)) == -1)
                return -1;
        while (s->rk) {
                rd_kafka_resp_err_t err;
                if (rd_kafka_produce(t->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                     (void *)buf, len, key, keylen, NULL) == 0)
                        break;
                err = rd_kafka_last_error();
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        snprintf(s->errstr, sizeof(s->errstr), "produce to %s: %s",
                                 t->name, rd_kafka_err2str(err));
                        return -1;
                }
                /* Backpressure, not an error: let deliveries free the queue. A signal
                 * or a fatal error while we wait drops this event, unwritten. */
                rd_kafka_poll(s->rk, 10);
                if (sim_signalled || s->fatal) {
                        ev_drop(t);
                        s->stop = sim_signalled ? STOP_SIGNAL : STOP_ERROR;
                        return 0;
                }
        }
        if (t->csv)
                csv_end(t->csv);
        t->count++;
        s->total++;
        if (s->rk && (s->total % POLL_EVERY) == 0)
                rd_kafka_poll(s->rk, 0);
        if (s->max_events && s->total >= (uint64_t)s->max_events && !s->stop)
                s->stop = STOP_EVENTS;
        return 0;
}

static int emit_click(sim_t *s, int type, const session_t *se, uint32_t sku, uint16_t cat,
                      int64_t cents, int32_t qty)
{
        topic_t *t = &s->topics[T_CLICK];
        char id[32], user[32], sess[32], skuid[32];
        size_t userlen;
        /* Dwell time: log-normal around ~6 s, shorter during the rush. */
        int32_t dwell =
            (int32_t)(exp(8.6 + 0.8 * rng_normal(&s->rng)) * (s->sale_on ? 0.6 : 1.0));

        if (dwell > 600000)
                dwell = 600000;
        ev_begin(t);
        ev_str(t, id, fmt_id(id, "c", ++s->click_seq));
        userlen = fmt_id(user, "u", se->user + 1);
        ev_str(t, user, userlen);
        ev_str(t, sess, fmt_id(sess, "se", se->no));
        ev_enum(t, type, click_types[type]);
        if (sku == UINT32_MAX)
                ev_str(t, "", 0);
        else
                ev_str(t, skuid, fmt_id(skuid, "s", sku + 1));
        ev_cstr(t, categories[cat]);
        ev_fixed(t, cents, 2);
        ev_int(t, qty);
        ev_int(t, dwell);
        ev_cstr(t, s->sale_on ? CAMPAIGN : "");
        ev_long(t, s->now);
        return ev_send(s, t, user, userlen);
}

static int emit_order(sim_t *s, int type, uint64_t order_no, uint32_t user,
                      uint32_t region, uint32_t sku, uint32_t wh, int32_t qty,
                      int64_t cents, int flash)
{
        topic_t *t = &s->topics[T_ORDER];
        char id[32], oid[32], uid[32], skuid[32], whid[32], rid[32], key[64];
        size_t skulen, whlen;

        ev_begin(t);
        ev_str(t, id, fmt_id(id, "o", ++s->order_ev_seq));
        ev_enum(t, type, order_types[type]);
        if (type == OT_STOCK_RECEIPT) {
                ev_str(t, "", 0);
                ev_str(t, "", 0);
        } else {
                ev_str(t, oid, fmt_id(oid, "o", order_no));
                ev_str(t, uid, fmt_id(uid, "u", (uint64_t)user + 1));
        }
        skulen = fmt_id(skuid, "s", (uint64_t)sku + 1);
        ev_str(t, skuid, skulen);
        whlen = fmt_id(whid, "w", (uint64_t)wh + 1);
        ev_str(t, whid, whlen);
        ev_int(t, qty);
        ev_fixed(t, cents, 2);
        if (type == OT_STOCK_RECEIPT)
                ev_str(t, "", 0);
        else
                ev_str(t, rid, fmt_id(rid, "r", (uint64_t)region + 1));
        ev_bool(t, flash);
        ev_long(t, s->now);
        memcpy(key, skuid, skulen);
        key[skulen] = ':';
        memcpy(key + skulen + 1, whid, whlen);
        return ev_send(s, t, key, skulen + 1 + whlen);
}

static int emit_ship(sim_t *s, const parcel_t *p, int status)
{
        topic_t *t = &s->topics[T_SHIP];
        char id[32], shid[32], oid[32], whid[32], rid[32];
        size_t shlen;
        int64_t grams = 0;

        for (int i = 0; i < p->nlines; i++)
                grams += (int64_t)s->skus[p->line[i].sku].grams * p->line[i].qty;
        ev_begin(t);
        ev_str(t, id, fmt_id(id, "s", ++s->ship_ev_seq));
        shlen = fmt_id(shid, "sh", p->ship_no);
        ev_str(t, shid, shlen);
        ev_str(t, oid, fmt_id(oid, "o", p->order_no));
        ev_enum(t, status, ship_statuses[status]);
        ev_str(t, whid, fmt_id(whid, "w", (uint64_t)p->wh + 1));
        ev_str(t, rid, fmt_id(rid, "r", (uint64_t)p->region + 1));
        ev_fixed(t, p->dist_dkm, 1);
        ev_fixed(t, (grams + 5) / 10, 2);
        ev_cstr(t, carriers[p->carrier]);
        ev_bool(t, p->flash);
        ev_long(t, p->promised_ts);
        ev_long(t, s->now);
        return ev_send(s, t, shid, shlen);
}

/* ------------------------------------------------------------------ demand truth */

static void demand_add(sim_t *s, uint32_t sku, uint32_t wh, int32_t demanded,
                       int32_t sold)
{
        uint32_t cell = sku * s->nwh + wh;
        demand_t *d = &s->demand[cell];
        if (!d->demanded && !d->sold)
                s->touched[s->ntouched++] = cell;
        d->demanded += demanded;
        d->sold += sold;
        s->units_demanded += (uint64_t)demanded;
        s->units_sold += (uint64_t)sold;
        s->units_lost += (uint64_t)(demanded - sold);
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return (x > y) - (x < y);
}

/* Writes the rows of the interval that ended (sorted by sku, then warehouse) and
 * clears it. Called at most once per simulated minute, so sorting is cheap. */
static void demand_flush(sim_t *s)
{
        char buf[32];
        csv_t *c = s->truth_demand;

        qsort(s->touched, s->ntouched, sizeof(*s->touched), cmp_u32);
        for (uint32_t i = 0; i < s->ntouched; i++) {
                uint32_t cell = s->touched[i];
                demand_t *d = &s->demand[cell];
                if (c) {
                        csv_sep(c);
                        csv_raw(c, buf, fmt_id(buf, "s", (uint64_t)(cell / s->nwh) + 1));
                        csv_sep(c);
                        csv_raw(c, buf, fmt_id(buf, "w", (uint64_t)(cell % s->nwh) + 1));
                        csv_sep(c);
                        csv_raw(c, buf, fmt_fixed(buf, s->demand_ivl, 0));
                        csv_sep(c);
                        csv_raw(c, buf, fmt_fixed(buf, d->demanded, 0));
                        csv_sep(c);
                        csv_raw(c, buf, fmt_fixed(buf, d->sold, 0));
                        csv_end(c);
                }
                d->demanded = d->sold = 0;
        }
        s->ntouched = 0;
}

static void demand_roll(sim_t *s, int64_t ts)
{
        int64_t ivl =
            ts - ts % DEMAND_IVL_MS; /* epoch-aligned, like the consumers' windows */
        if (ivl != s->demand_ivl) {
                if (s->ntouched)
                        demand_flush(s);
                s->demand_ivl = ivl;
        }
}

/* ------------------------------------------------------------------ pending heap */

static int heap_less(const pending_t *a, const pending_t *b)
{
        return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int heap_push(sim_t *s, int64_t due, uint32_t parcel, uint32_t action)
{
        uint32_t i;
        if (s->heap_len == s->heap_cap) {
                /* Grows to the number of parcels in flight, then stays: amortised, not
                 * an allocation per event. */
                uint32_t cap = s->heap_cap ? s->heap_cap * 2 : 4096;
                pending_t *h = realloc(s->heap, cap * sizeof(*h));
                if (!h) {
                        snprintf(s->errstr, sizeof(s->errstr), "out of memory");
                        return -1;
                }
                s->heap = h;
                s->heap_cap = cap;
        }
        i = s->heap_len++;
        s->heap[i] = (pending_t){due, s->heap_seq++, parcel, action};
        while (i > 0) {
                uint32_t up = (i - 1) / 2;
                pending_t tmp;
                if (!heap_less(&s->heap[i], &s->heap[up]))
                        break;
                tmp = s->heap[i];
                s->heap[i] = s->heap[up];
                s->heap[up] = tmp;
                i = up;
        }
        return 0;
}

static pending_t heap_pop(sim_t *s)
{
        pending_t top = s->heap[0];
        uint32_t i = 0;
        s->heap[0] = s->heap[--s->heap_len];
        for (;;) {
                uint32_t l = 2 * i + 1, r = l + 1, m = i;
                pending_t tmp;
                if (l < s->heap_len && heap_less(&s->heap[l], &s->heap[m]))
                        m = l;
                if (r < s->heap_len && heap_less(&s->heap[r], &s->heap[m]))
                        m = r;
                if (m == i)
                        break;
                tmp = s->heap[i];
                s->heap[i] = s->heap[m];
                s->heap[m] = tmp;
                i = m;
        }
        return top;
}

static int64_t parcel_alloc(sim_t *s)
{
        uint32_t idx;
        if (s->free_parcel != UINT32_MAX) {
                idx = s->free_parcel;
                s->free_parcel = s->parcels[idx].next_free;
                return idx;
        }
        if (s->nparcels == s->parcels_cap) {
                uint32_t cap = s->parcels_cap ? s->parcels_cap * 2 : 4096;
                parcel_t *p = realloc(s->parcels, cap * sizeof(*p));
                if (!p) {
                        snprintf(s->errstr, sizeof(s->errstr), "out of memory");
                        return -1;
                }
                s->parcels = p;
                s->parcels_cap = cap;
        }
        return s->nparcels++;
}

static void parcel_free(sim_t *s, uint32_t idx)
{
        s->parcels[idx].next_free = s->free_parcel;
        s->free_parcel = idx;
}

/* ------------------------------------------------------------------ shipments */

/* The truth of a shipment is drawn when it is created, from the state of the world at
 * that moment: distance, the region's recent load and the hour of day. */
static int ship_create(sim_t *s, uint32_t pi)
{
        parcel_t *p = &s->parcels[pi];
        rng_t *r = &s->rng;
        int64_t tc = s->now;
        double *load = &s->region_load[p->region];
        double hour, wait_h, handling_h, travel_h, load_f, noise, dispatch_h, total_h;
        double km;
        int promised_h;
        int64_t handed;
        uint64_t count;
        char buf[32];
        csv_t *c = s->truth_ship;

        km = s->dist[p->wh * s->nregions + p->region] * rng_range(r, 0.85, 1.15) +
             rng_range(r, 2, 25);
        p->dist_dkm = (uint32_t)llround(km * 10);
        km = p->dist_dkm / 10.0;
        p->carrier = (uint8_t)rng_below(r, NCARRIERS);
        p->ship_no = ++s->ship_seq;
        p->created_ts = tc;

        /* Region load: an exponentially decayed count of shipments created there. */
        *load =
            *load * exp(-(double)(tc - s->region_load_ts[p->region]) / LOAD_TAU_MS) + 1;
        s->region_load_ts[p->region] = tc;
        load_f = 1.0 + 0.35 * log1p(*load / 25.0);

        /* Time of day (UTC): nothing leaves before 08:00, and parcels created after
         * the 16:00 cut-off wait for the next morning. */
        hour = fmod((double)tc / HOUR_MS, 24.0);
        wait_h = hour < 8 ? 8 - hour : hour >= 16 ? 32 - hour : 0;
        handling_h = rng_range(r, 1.0, 3.0) * (p->flash ? 0.8 : 1.0);
        travel_h = (3.0 + km / 55.0) * carrier_speed[p->carrier];
        noise = exp(0.2 * rng_normal(r));
        dispatch_h = wait_h + handling_h * load_f * noise;
        total_h = dispatch_h + travel_h * load_f * noise;

        promised_h = km < 150 ? 24 : km < 500 ? 48 : 72;
        p->promised_ts = tc + (int64_t)promised_h * 3600000;
        p->failed = rng_unif(r) < 0.02;

        handed = tc + (int64_t)llround(dispatch_h * HOUR_MS);
        p->step_ts[0] =
            tc + (int64_t)llround(dispatch_h * HOUR_MS * rng_range(r, 0.3, 0.7));
        p->step_ts[1] = handed;
        p->step_ts[3] = tc + (int64_t)llround(total_h * HOUR_MS);
        p->step_ts[2] = handed + (int64_t)llround((double)(p->step_ts[3] - handed) *
                                                  rng_range(r, 0.05, 0.2));
        /* Strictly increasing, whatever the rounding did. */
        if (p->step_ts[0] <= tc)
                p->step_ts[0] = tc + 1;
        for (int i = 1; i < 4; i++)
                if (p->step_ts[i] <= p->step_ts[i - 1])
                        p->step_ts[i] = p->step_ts[i - 1] + 1;

        count = s->topics[T_SHIP].count;
        if (emit_ship(s, p, SS_CREATED) == -1)
                return -1;
        if (s->topics[T_SHIP].count == count)
                return 0; /* stopped: not created after all */
        if (c) {
                csv_sep(c);
                csv_raw(c, buf, fmt_id(buf, "sh", p->ship_no));
                csv_sep(c);
                csv_raw(c, buf, fmt_id(buf, "o", p->order_no));
                csv_sep(c);
                /* hours with 4 decimals, rounded half up from the exact ms */
                csv_raw(c, buf,
                        fmt_fixed(buf,
                                  (p->step_ts[3] - tc) / 360 +
                                      ((p->step_ts[3] - tc) % 360 >= 180),
                                  4));
                csv_sep(c);
                csv_raw(c, buf, fmt_fixed(buf, p->promised_ts, 0));
                csv_sep(c);
                csv_raw(c, buf, fmt_fixed(buf, tc, 0));
                csv_sep(c);
                csv_raw(c, p->failed ? "1" : "0", 1);
                csv_end(c);
        }
        return heap_push(s, p->step_ts[0], pi, A_PICKED);
}

static int return_lines(sim_t *s, uint32_t pi, int type)
{
        parcel_t *p = &s->parcels[pi];
        for (int i = 0; i < p->nlines && !s->stop; i++) {
                s->stock[p->line[i].sku * s->nwh + p->wh] += p->line[i].qty;
                if (emit_order(s, type, p->order_no, p->user, p->region, p->line[i].sku,
                               p->wh, p->line[i].qty, p->line[i].cents, p->flash) == -1)
                        return -1;
        }
        return 0;
}

/* Runs one follow-up event that has come due; s->now is its time. */
static int run_pending(sim_t *s, pending_t e)
{
        parcel_t *p = &s->parcels[e.parcel];
        rng_t *r = &s->rng;

        switch (e.action) {
        case A_CANCEL:
                s->parcels_cancelled++;
                if (return_lines(s, e.parcel, OT_CANCELLED) == -1)
                        return -1;
                parcel_free(s, e.parcel);
                return 0;
        case A_CREATE:
                return ship_create(s, e.parcel);
        case A_PICKED:
        case A_HANDED:
        case A_IN_TRANSIT: {
                int status = SS_PICKED + (int)(e.action - A_PICKED);
                int step = (int)(e.action - A_PICKED);
                if (emit_ship(s, p, status) == -1)
                        return -1;
                return heap_push(s, p->step_ts[step + 1], e.parcel, e.action + 1);
        }
        case A_DONE:
                if (emit_ship(s, p, p->failed ? SS_FAILED : SS_DELIVERED) == -1)
                        return -1;
                /* A failed delivery is always refunded; a delivered parcel sometimes. */
                if (p->failed) {
                        s->shipments_failed++;
                        return heap_push(
                            s, s->now + (int64_t)(rng_range(r, 2, 48) * HOUR_MS),
                            e.parcel, A_REFUND);
                }
                if (rng_unif(r) < 0.03)
                        return heap_push(
                            s, s->now + (int64_t)(rng_range(r, 24, 168) * HOUR_MS),
                            e.parcel, A_REFUND);
                parcel_free(s, e.parcel);
                return 0;
        case A_REFUND:
                s->refunds++;
                if (return_lines(s, e.parcel, OT_REFUNDED) == -1)
                        return -1;
                parcel_free(s, e.parcel);
                return 0;
        }
        return 0;
}

/* Runs the follow-ups due at or before ts, each at its own time. */
static int run_due(sim_t *s, int64_t ts)
{
        int64_t saved = s->now;
        while (s->heap_len && s->heap[0].due <= ts && !s->stop && !sim_signalled) {
                pending_t e = heap_pop(s);
                s->now = e.due;
                if (run_pending(s, e) == -1)
                        return -1;
        }
        s->now = saved;
        return 0;
}

/* ------------------------------------------------------------------ storefront */

static uint32_t pick_sku(sim_t *s)
{
        /* sim.hot_share: one extra draw only when set, so other runs keep their
         * events. */
        if (s->hot_share > 0 && rng_unif(&s->rng) < s->hot_share)
                return 0;
        double u = rng_unif(&s->rng);
        uint32_t lo = 0, hi = s->nskus - 1;
        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (s->zipf_cdf[mid] > u)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return s->rank_sku[lo];
}

static int64_t shown_price(const sim_t *s, uint32_t sku)
{
        return s->sale_on ? s->skus[sku].sale_cents : s->skus[sku].cents;
}

/* Checkout: each cart line is served by the nearest warehouse of the user's region
 * that has stock, as much as it has; what no warehouse can serve is lost demand,
 * counted against the nearest one. Lines of one warehouse become one parcel. */
static int checkout(sim_t *s, session_t *se)
{
        const user_t *u = &s->users[se->user];
        const uint16_t *order = &s->wh_order[u->region * s->nwh];
        int64_t parcel_of_wh[MAX_CART];
        uint16_t whs[MAX_CART];
        int nparcels = 0;
        uint64_t order_no = ++s->order_seq;

        for (int i = 0; i < se->ncart && !s->stop; i++) {
                uint32_t sku = se->cart[i].sku;
                int32_t want = se->cart[i].qty, got;
                uint32_t wh = order[0], k;
                int j;
                parcel_t *p;

                for (k = 0; k < s->nwh; k++)
                        if (s->stock[sku * s->nwh + order[k]] > 0)
                                break;
                if (k == s->nwh) {
                        demand_add(s, sku, wh, want, 0);
                        continue;
                }
                wh = order[k];
                got = s->stock[sku * s->nwh + wh];
                if (got > want)
                        got = want;
                s->stock[sku * s->nwh + wh] -= got;
                demand_add(s, sku, wh, want, got);

                for (j = 0; j < nparcels; j++)
                        if (whs[j] == wh)
                                break;
                if (j == nparcels) {
                        int64_t pi = parcel_alloc(s);
                        if (pi < 0)
                                return -1;
                        p = &s->parcels[pi];
                        memset(p, 0, sizeof(*p));
                        p->order_no = order_no;
                        p->user = se->user;
                        p->region = u->region;
                        p->wh = (uint16_t)wh;
                        p->flash = (uint8_t)s->sale_on;
                        whs[j] = (uint16_t)wh;
                        parcel_of_wh[j] = pi;
                        nparcels++;
                }
                p = &s->parcels[parcel_of_wh[j]];
                p->line[p->nlines].sku = sku;
                p->line[p->nlines].qty = got;
                p->line[p->nlines].cents = se->cart[i].cents;
                p->nlines++;

                if (emit_click(s, CT_PURCHASE, se, sku, s->skus[sku].cat,
                               se->cart[i].cents, got) == -1 ||
                    emit_order(s, OT_PLACED, order_no, se->user, u->region, sku, wh, got,
                               se->cart[i].cents, s->sale_on) == -1)
                        return -1;
        }
        if (nparcels)
                s->orders_placed++;
        for (int j = 0; j < nparcels; j++) {
                int64_t due;
                uint32_t action;
                if (rng_unif(&s->rng) < 0.03) {
                        action = A_CANCEL;
                        due = s->now + (int64_t)rng_range(&s->rng, 20000, 600000);
                } else {
                        action = A_CREATE;
                        due = s->now + (int64_t)rng_range(&s->rng, 1000, 30000);
                }
                if (heap_push(s, due, (uint32_t)parcel_of_wh[j], action) == -1)
                        return -1;
        }
        return nparcels; /* sessions end at checkout */
}

static double clampp(double p)
{
        return p > 0.95 ? 0.95 : p;
}

/* One storefront event: advances a random session of the pool by one step, starting a
 * new session in an empty slot. Emits one click event (a checkout one per line). */
static int session_step(sim_t *s)
{
        session_t *se = &s->sessions[rng_below(&s->rng, SESSION_POOL)];
        rng_t *r = &s->rng;

        for (;;) {
                double intent, boost, x;
                uint32_t sku;

                if (se->state == S_FREE) {
                        se->no = ++s->session_seq;
                        se->user = rng_below(r, s->nusers);
                        se->ncart = 0;
                        se->state = S_START;
                }
                intent = s->users[se->user].intent;
                /* The sale makes everyone who could buy more likely to. */
                boost = s->sale_on ? 1.6 : 1.0;
                x = rng_unif(r);

                switch (se->state) {
                case S_START:
                        if (x < 0.25) {
                                se->state = S_SEARCHED;
                                return emit_click(s, CT_SEARCH, se, UINT32_MAX,
                                                  (uint16_t)rng_below(r, NCATEGORIES), 0,
                                                  0);
                        }
                        break; /* a view */
                case S_SEARCHED:
                        break;
                case S_BROWSE: {
                        double p_buy =
                            se->ncart ? clampp((0.05 + 0.4 * intent) * boost) : 0;
                        double p_rm = se->ncart ? 0.05 : 0;
                        double p_click = clampp((0.15 + 0.45 * intent) * boost);
                        if (x < p_buy) {
                                int rc = checkout(s, se);
                                se->state = S_FREE;
                                if (rc != 0 || s->stop)
                                        return rc < 0 ? -1 : 0;
                                continue; /* all sold out: no event, next session */
                        }
                        x -= p_buy;
                        if (x < p_rm) {
                                int i = --se->ncart;
                                sku = se->cart[i].sku;
                                return emit_click(s, CT_REMOVE_CART, se, sku,
                                                  s->skus[sku].cat, se->cart[i].cents,
                                                  se->cart[i].qty);
                        }
                        x -= p_rm;
                        if (x < p_click) {
                                se->state = S_CLICKED;
                                return emit_click(s, CT_CLICK, se, se->sku,
                                                  s->skus[se->sku].cat,
                                                  shown_price(s, se->sku), 0);
                        }
                        x -= p_click;
                        if (x < 0.08) {
                                se->state = S_FREE; /* left; a cart is abandoned */
                                continue;
                        }
                        break;
                }
                case S_CLICKED: {
                        double p_add = intent < 0.05 ? 0 : clampp(0.6 * intent * boost);
                        if (x < p_add && se->ncart < MAX_CART) {
                                int32_t qty =
                                    1 + (rng_unif(r) < 0.2) + (rng_unif(r) < 0.05);
                                int i = se->ncart++;
                                se->cart[i].sku = se->sku;
                                se->cart[i].qty = qty;
                                se->cart[i].cents = shown_price(s, se->sku);
                                se->state = S_BROWSE;
                                return emit_click(s, CT_ADD_CART, se, se->sku,
                                                  s->skus[se->sku].cat, se->cart[i].cents,
                                                  qty);
                        }
                        if (x > 0.92) {
                                se->state = S_FREE;
                                continue;
                        }
                        break;
                }
                }
                /* A view of a product drawn by popularity. */
                sku = pick_sku(s);
                se->sku = sku;
                se->state = S_BROWSE;
                return emit_click(s, CT_VIEW, se, sku, s->skus[sku].cat,
                                  shown_price(s, sku), 0);
        }
}

/* ------------------------------------------------------------------ stock */

/* Opening stock (at the start) and periodic receipts for low stock: both are
 * STOCK_RECEIPT events, so replaying the orders topic from the start gives the stock. */
static int restock(sim_t *s, int opening)
{
        for (uint32_t sku = 0; sku < s->nskus && !s->stop; sku++) {
                for (uint32_t wh = 0; wh < s->nwh && !s->stop; wh++) {
                        int32_t *st = &s->stock[sku * s->nwh + wh];
                        int32_t qty;
                        if (opening) {
                                /* Not every warehouse carries every SKU. */
                                if (rng_unif(&s->world_rng) < 0.1)
                                        continue;
                                qty = 5 + (int32_t)rng_below(&s->world_rng, 40);
                        } else {
                                if (*st >= 3 || rng_unif(&s->rng) >= 0.08)
                                        continue;
                                qty = 10 + (int32_t)rng_below(&s->rng, 50);
                        }
                        *st += qty;
                        /* Receipts are valued at cost, 60% of the list price. */
                        if (emit_order(s, OT_STOCK_RECEIPT, 0, 0, 0, sku, wh, qty,
                                       s->skus[sku].cents * 6 / 10, 0) == -1)
                                return -1;
                }
        }
        return 0;
}

/* ------------------------------------------------------------------ set-up */

static int sim_build_world(sim_t *s)
{
        rng_t *r = &s->world_rng;
        double *rx, *ry, total = 0;
        size_t pairs = (size_t)s->nskus * s->nwh;

        s->users = calloc(s->nusers, sizeof(*s->users));
        s->skus = calloc(s->nskus, sizeof(*s->skus));
        s->zipf_cdf = calloc(s->nskus, sizeof(*s->zipf_cdf));
        s->rank_sku = calloc(s->nskus, sizeof(*s->rank_sku));
        s->dist = calloc((size_t)s->nwh * s->nregions, sizeof(*s->dist));
        s->wh_order = calloc((size_t)s->nwh * s->nregions, sizeof(*s->wh_order));
        s->region_load = calloc(s->nregions, sizeof(*s->region_load));
        s->region_load_ts = calloc(s->nregions, sizeof(*s->region_load_ts));
        s->stock = calloc(pairs, sizeof(*s->stock));
        s->demand = calloc(pairs, sizeof(*s->demand));
        s->touched = calloc(pairs, sizeof(*s->touched));
        rx = calloc((size_t)s->nregions + s->nwh, sizeof(*rx));
        ry = calloc((size_t)s->nregions + s->nwh, sizeof(*ry));
        if (!s->users || !s->skus || !s->zipf_cdf || !s->rank_sku || !s->dist ||
            !s->wh_order || !s->region_load || !s->region_load_ts || !s->stock ||
            !s->demand || !s->touched || !rx || !ry) {
                free(rx);
                free(ry);
                snprintf(s->errstr, sizeof(s->errstr),
                         "out of memory building the world");
                return -1;
        }

        /* Users: Kumaraswamy(a=0.8, b=1.5) by inversion, a beta-like law with ~13%
         * "never" (< 0.05) and ~7% "sure" (> 0.8). */
        for (uint32_t i = 0; i < s->nusers; i++) {
                double u = rng_unif(r);
                double x = pow(1.0 - pow(1.0 - u, 1.0 / 1.5), 1.0 / 0.8);
                s->users[i].intent = (float)(round(x * 10000) / 10000);
                s->users[i].region = (uint16_t)rng_below(r, s->nregions);
        }

        /* SKUs: log-normal list prices around 30, sale discounts of 10-50%. */
        for (uint32_t i = 0; i < s->nskus; i++) {
                sku_t *k = &s->skus[i];
                k->cents = (int64_t)llround(exp(3.4 + 0.9 * rng_normal(r)) * 100);
                if (k->cents < 99)
                        k->cents = 99;
                k->sale_cents = k->cents * (100 - 10 - (int64_t)rng_below(r, 41)) / 100;
                k->grams = 50 + (uint32_t)(exp(6.0 + 1.0 * rng_normal(r)));
                if (k->grams > 30000)
                        k->grams = 30000;
                k->cat = (uint16_t)rng_below(r, NCATEGORIES);
        }
        /* Zipf over ranks; the rank -> SKU mapping is shuffled so that hot SKUs are not
         * simply the first ids. */
        for (uint32_t i = 0; i < s->nskus; i++) {
                total += pow((double)i + 1, -s->zipf_s);
                s->zipf_cdf[i] = total;
                s->rank_sku[i] = i;
        }
        for (uint32_t i = 0; i < s->nskus; i++)
                s->zipf_cdf[i] /= total;
        s->zipf_cdf[s->nskus - 1] = 1.0;
        for (uint32_t i = s->nskus - 1; i > 0; i--) {
                uint32_t j = rng_below(r, i + 1), t = s->rank_sku[i];
                s->rank_sku[i] = s->rank_sku[j];
                s->rank_sku[j] = t;
        }

        /* Regions and warehouses on a 1200 x 900 km map; road distance ~1.25x. */
        for (uint32_t i = 0; i < s->nregions + s->nwh; i++) {
                rx[i] = rng_range(r, 0, 1200);
                ry[i] = rng_range(r, 0, 900);
        }
        for (uint32_t w = 0; w < s->nwh; w++)
                for (uint32_t g = 0; g < s->nregions; g++) {
                        double dx = rx[s->nregions + w] - rx[g],
                               dy = ry[s->nregions + w] - ry[g];
                        s->dist[w * s->nregions + g] = 1.25 * sqrt(dx * dx + dy * dy);
                }
        free(rx);
        free(ry);
        for (uint32_t g = 0; g < s->nregions; g++) {
                uint16_t *o = &s->wh_order[g * s->nwh];
                for (uint32_t w = 0; w < s->nwh; w++) {
                        uint32_t k = w;
                        /* insertion sort by distance; ties keep the lower id */
                        while (k > 0 && s->dist[o[k - 1] * s->nregions + g] >
                                            s->dist[w * s->nregions + g]) {
                                o[k] = o[k - 1];
                                k--;
                        }
                        o[k] = (uint16_t)w;
                }
        }
        return 0;
}

static int kafka_conf_cb(const char *name, const char *value, void *opaque)
{
        void **args = opaque;
        rd_kafka_conf_t *kc = args[0];
        sim_t *s = args[1];
        if (rd_kafka_conf_set(kc, name, value, s->errstr, sizeof(s->errstr)) !=
            RD_KAFKA_CONF_OK)
                return -1;
        return 0;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        sim_t *s = opaque;
        (void)rk;
        if (!m->err) {
                s->dr_ok++;
                return;
        }
        if (!s->dr_failed++)
                snprintf(s->dr_first_err, sizeof(s->dr_first_err), "%s: %s",
                         rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        sim_t *s = opaque;
        char fatal[256];
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
                fls_log(FLS_LOG_ERROR, COMP, "fatal producer error: %s", fatal);
                s->fatal = 1;
                return;
        }
        /* Transient (broker down, transport): librdkafka retries by itself. */
        fls_log(FLS_LOG_WARN, COMP, "kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static int sim_kafka_open(sim_t *s, fls_conf_t *conf)
{
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        char bootstrap[1024];
        void *args[2] = {kc, s};
        /* murmur2_random: the Java client's partitioner, so any tool can compute the
         * partition of a user, SKU or shipment from its key. */
        static const char *const defaults[][2] = {
            {"partitioner", "murmur2_random"},
            {"enable.idempotence", "true"},
            {"linger.ms", "5"},
            {"client.id", "flashstream-simulate"},
        };

        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
                if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], s->errstr,
                                      sizeof(s->errstr)) != RD_KAFKA_CONF_OK)
                        goto fail;
        if (fls_settings_bootstrap(conf, bootstrap, sizeof(bootstrap), s->errstr,
                                   sizeof(s->errstr)) == -1)
                goto fail;
        if (*bootstrap && rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, s->errstr,
                                            sizeof(s->errstr)) != RD_KAFKA_CONF_OK)
                goto fail;
        /* kafka.* keys last: an explicit setting wins over our defaults. */
        if (fls_conf_kafka_foreach(conf, kafka_conf_cb, args) != 0)
                goto fail;
        /* Without a bootstrap librdkafka would queue until message.timeout.ms (5 min)
         * and only then report everything lost: say so now. */
        {
                char v[1024] = "";
                size_t vlen = sizeof(v);
                char mock[16] = "";
                size_t mlen = sizeof(mock);
                rd_kafka_conf_get(kc, "bootstrap.servers", v, &vlen);
                rd_kafka_conf_get(kc, "test.mock.num.brokers", mock, &mlen);
                if (!*v && (!*mock || strcmp(mock, "0") == 0)) {
                        snprintf(s->errstr, sizeof(s->errstr),
                                 "no Kafka bootstrap: set bootstrap.file or "
                                 "kafka.bootstrap.servers, or sim.produce=false");
                        goto fail;
                }
        }
        rd_kafka_conf_set_opaque(kc, s);
        rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, s->errstr, sizeof(s->errstr));
        if (!s->rk)
                goto fail;
        for (int i = 0; i < NTOPICS; i++) {
                s->topics[i].rkt = rd_kafka_topic_new(s->rk, s->topics[i].name, NULL);
                if (!s->topics[i].rkt) {
                        snprintf(s->errstr, sizeof(s->errstr), "topic %s: %s",
                                 s->topics[i].name,
                                 rd_kafka_err2str(rd_kafka_last_error()));
                        return -1;
                }
        }
        return 0;
fail:
        rd_kafka_conf_destroy(kc);
        return -1;
}

static int sim_open_codecs(sim_t *s, fls_conf_t *conf)
{
        static const char *const subjects[NTOPICS] = {"clickstream-value", "orders-value",
                                                      "shipments-value"};
        static const char *const *const fields[NTOPICS] = {click_fields, order_fields,
                                                           ship_fields};
        const char *dir = fls_conf_str(conf, "schema.dir");

        for (int i = 0; i < NTOPICS; i++) {
                topic_t *t = &s->topics[i];
                size_t n = 0, size = 0;
                t->codec = fls_codec_new(dir, subjects[i], 0, 1 << 20, s->errstr,
                                         sizeof(s->errstr));
                if (!t->codec)
                        return -1;
                for (; fields[i][n]; n++)
                        if (fls_codec_field(t->codec, fields[i][n]) != (int)n) {
                                snprintf(s->errstr, sizeof(s->errstr),
                                         "%s: field %s is not at position %zu of the "
                                         "schema: the simulator needs updating",
                                         subjects[i], fields[i][n], n);
                                return -1;
                        }
                if (avro_value_get_size(fls_codec_out(t->codec), &size) != 0 ||
                    size != n) {
                        snprintf(s->errstr, sizeof(s->errstr),
                                 "%s: the schema has %zu fields, the simulator knows %zu",
                                 subjects[i], size, n);
                        return -1;
                }
        }
        return 0;
}

static int sim_open_files(sim_t *s)
{
        static const char *const ship_truth[] = {
            "shipment_id", "order_id", "true_delivery_h", "promised_ts", "created_ts",
            "failed",      NULL};
        static const char *const demand_truth[] = {
            "sku", "warehouse_id", "interval_start_ts", "units_demanded", "units_sold",
            NULL};
        static const char *const *const fields[NTOPICS] = {click_fields, order_fields,
                                                           ship_fields};
        char path[4096];
        csv_t *users;
        char buf[32];

        if (mkdir(s->out_dir, 0777) == -1 && errno != EEXIST) {
                snprintf(s->errstr, sizeof(s->errstr), "%s: %s", s->out_dir,
                         strerror(errno));
                return -1;
        }
        for (int i = 0; i < NTOPICS; i++) {
                s->topics[i].csv = csv_open(s->out_dir, s->topics[i].file, fields[i],
                                            s->errstr, sizeof(s->errstr));
                if (!s->topics[i].csv)
                        return -1;
        }
        s->truth_ship = csv_open(s->out_dir, "truth_shipments.csv", ship_truth, s->errstr,
                                 sizeof(s->errstr));
        if (!s->truth_ship)
                return -1;
        s->truth_demand = csv_open(s->out_dir, "truth_demand.csv", demand_truth,
                                   s->errstr, sizeof(s->errstr));
        if (!s->truth_demand)
                return -1;

        users = csv_open(s->out_dir, "truth_users.csv",
                         (const char *const[]){"user_id", "intent", "band", NULL},
                         s->errstr, sizeof(s->errstr));
        if (!users)
                return -1;
        for (uint32_t i = 0; i < s->nusers; i++) {
                double x = s->users[i].intent;
                csv_sep(users);
                csv_raw(users, buf, fmt_id(buf, "u", (uint64_t)i + 1));
                csv_sep(users);
                csv_raw(users, buf, fmt_fixed(buf, llround(x * 10000), 4));
                csv_sep(users);
                csv_raw(users,
                        x < 0.05  ? "never"
                        : x > 0.8 ? "sure"
                                  : "persuadable",
                        x < 0.05  ? 5
                        : x > 0.8 ? 4
                                  : 11);
                csv_end(users);
        }
        snprintf(path, sizeof(path), "%s/truth_users.csv", s->out_dir);
        return csv_close(users, path, s->errstr, sizeof(s->errstr));
}

static int sim_write_summary(sim_t *s)
{
        char path[4096];
        FILE *fp;
        int bad;

        snprintf(path, sizeof(path), "%s/summary.json", s->out_dir);
        fp = fopen(path, "w");
        if (!fp) {
                snprintf(s->errstr, sizeof(s->errstr), "%.400s: %s", path,
                         strerror(errno));
                return -1;
        }
        /* Only simulated quantities: the file is part of the deterministic output. */
        fprintf(
            fp,
            "{\n  \"seed\": %" PRIu64 ",\n"
            "  \"events\": {\"clickstream\": %" PRIu64 ", \"orders\": %" PRIu64
            ", \"shipments\": %" PRIu64 ", \"total\": %" PRIu64 "},\n"
            "  \"topics\": {\"clickstream\": \"%s\", \"orders\": \"%s\", "
            "\"shipments\": \"%s\"},\n"
            "  \"orders_placed\": %" PRIu64 ", \"units_demanded\": %" PRIu64
            ", \"units_sold\": %" PRIu64 ", \"units_lost\": %" PRIu64 ",\n"
            "  \"parcels_cancelled\": %" PRIu64 ", \"shipments_created\": %" PRIu64
            ", \"shipments_failed\": %" PRIu64 ", \"refunds\": %" PRIu64 ",\n"
            "  \"start_ts\": %" PRId64 ", \"end_ts\": %" PRId64
            ", \"stopped_by\": \"%s\",\n"
            "  \"options\": {\"sim.seed\": %" PRIu64 ", \"sim.rate\": %.17g, "
            "\"sim.duration_s\": %" PRId64 ", \"sim.events\": %" PRId64
            ", \"sim.users\": %u, \"sim.skus\": %u, \"sim.warehouses\": %u, "
            "\"sim.regions\": %u, \"sim.zipf_s\": %.17g, \"sim.sale_start_s\": %" PRId64
            ", \"sim.spike\": %.17g, \"sim.start_ts\": %" PRId64
            ", \"sim.realtime\": %s, \"sim.produce\": %s, \"sim.drain\": %s}\n}\n",
            s->seed, s->topics[T_CLICK].count, s->topics[T_ORDER].count,
            s->topics[T_SHIP].count, s->total, s->topics[T_CLICK].name,
            s->topics[T_ORDER].name, s->topics[T_SHIP].name, s->orders_placed,
            s->units_demanded, s->units_sold, s->units_lost, s->parcels_cancelled,
            s->ship_seq, s->shipments_failed, s->refunds, s->start_ts, s->now,
            stops[s->stop], s->seed, s->rate, s->duration_ms / 1000, s->max_events,
            s->nusers, s->nskus, s->nwh, s->nregions, s->zipf_s, s->sale_start_ms / 1000,
            s->spike, s->start_ts, s->realtime ? "true" : "false",
            s->produce ? "true" : "false", s->drain ? "true" : "false");
        bad = ferror(fp);
        if (fclose(fp) != 0 || bad) {
                snprintf(s->errstr, sizeof(s->errstr), "%.400s: write failed", path);
                return -1;
        }
        return 0;
}

static void sim_destroy(sim_t *s)
{
        for (int i = 0; i < NTOPICS; i++) {
                if (s->topics[i].rkt)
                        rd_kafka_topic_destroy(s->topics[i].rkt);
                if (s->topics[i].codec)
                        fls_codec_destroy(s->topics[i].codec);
                if (s->topics[i].csv)
                        csv_close(s->topics[i].csv, "", s->errstr, 0);
        }
        csv_close(s->truth_ship, "", s->errstr, 0);
        csv_close(s->truth_demand, "", s->errstr, 0);
        if (s->rk)
                rd_kafka_destroy(s->rk);
        free(s->users);
        free(s->skus);
        free(s->zipf_cdf);
        free(s->rank_sku);
        free(s->dist);
        free(s->wh_order);
        free(s->region_load);
        free(s->region_load_ts);
        free(s->stock);
        free(s->demand);
        free(s->touched);
        free(s->parcels);
        free(s->heap);
        free(s);
}

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double rate_multiplier(const sim_t *s, int64_t t_ms)
{
        double floor_x = s->spike < 5 ? s->spike : 5, dt;
        if (t_ms < s->sale_start_ms)
                return 1.0;
        dt = (double)(t_ms - s->sale_start_ms);
        if (dt < RAMP_MS)
                return 1.0 + (s->spike - 1.0) * dt / RAMP_MS;
        return floor_x + (s->spike - floor_x) * exp(-(dt - RAMP_MS) / s->tau_ms);
}

static void progress(sim_t *s, int64_t wall_ms)
{
        double secs = (double)wall_ms / 1000.0;
        double r[NTOPICS];
        for (int i = 0; i < NTOPICS; i++) {
                r[i] = (double)(s->topics[i].count - s->topics[i].last_count) / secs;
                s->topics[i].last_count = s->topics[i].count;
        }
        fls_log(FLS_LOG_INFO, COMP,
                "progress sim_s=%.2f clickstream_per_s=%.0f orders_per_s=%.0f "
                "shipments_per_s=%.0f total=%" PRIu64 " queued=%d lost=%" PRIu64,
                (double)(s->now - s->start_ts) / 1000.0, r[T_CLICK], r[T_ORDER],
                r[T_SHIP], s->total, s->rk ? rd_kafka_outq_len(s->rk) : 0, s->dr_failed);
}

/* The generation loop: 10 ms ticks of the simulated clock. Follow-ups come due
 * between click events at their own times, so every topic is in time order. */
static int sim_run(sim_t *s)
{
        int64_t end = s->duration_ms ? s->start_ts + s->duration_ms : INT64_MAX;
        int64_t wall0 = mono_ms(), last_progress = wall0;

        s->now = s->start_ts;
        s->demand_ivl = -1;
        demand_roll(s, s->now);
        if (restock(s, 1) == -1)
                return -1;
        s->next_restock = s->start_ts + RESTOCK_MS;

        while (!s->stop) {
                int64_t tick = s->now, n, i;
                double expect;

                if (sim_signalled) {
                        s->stop = STOP_SIGNAL;
                        break;
                }
                if (s->fatal) {
                        s->stop = STOP_ERROR;
                        snprintf(s->errstr, sizeof(s->errstr), "fatal producer error");
                        return -1;
                }
                if (tick >= end) {
                        s->stop = STOP_DURATION;
                        break;
                }
                s->sale_on = tick - s->start_ts >= s->sale_start_ms;
                demand_roll(s, tick);
                if (tick >= s->next_restock) {
                        if (run_due(s, tick) == -1 || restock(s, 0) == -1)
                                return -1;
                        s->next_restock += RESTOCK_MS;
                }
                /* Deterministic arrivals: the expected count, with the fraction carried
                 * to the next tick. */
                expect =
                    s->rate * rate_multiplier(s, tick - s->start_ts) * TICK_MS / 1000.0 +
                    s->carry;
                n = (int64_t)expect;
                s->carry = expect - (double)n;
                for (i = 0; i < n && !s->stop; i++) {
                        int64_t ts = tick + i * TICK_MS / n;
                        if (run_due(s, ts) == -1)
                                return -1;
                        s->now = ts;
                        if (!s->stop && session_step(s) == -1)
                                return -1;
                }
                if (s->stop)
                        break;
                if (run_due(s, tick + TICK_MS - 1) == -1)
                        return -1;
                s->now = tick + TICK_MS;

                if (s->realtime || s->progress_ms) {
                        int64_t wall = mono_ms();
                        if (s->realtime) {
                                /* Pace: wait until the wall clock reaches the next
                                 * tick. rd_kafka_poll returns at the first delivery
                                 * report, hence the loop. */
                                int64_t ahead = (s->now - s->start_ts) - (wall - wall0);
                                while (ahead > 0 && !s->stop && !sim_signalled) {
                                        if (s->rk) {
                                                rd_kafka_poll(s->rk, (int)ahead);
                                        } else {
                                                struct timespec d = {ahead / 1000,
                                                                     (ahead % 1000) *
                                                                         1000000};
                                                nanosleep(&d, NULL);
                                        }
                                        wall = mono_ms();
                                        ahead = (s->now - s->start_ts) - (wall - wall0);
                                }
                        }
                        if (s->progress_ms && wall - last_progress >= s->progress_ms) {
                                progress(s, wall - last_progress);
                                last_progress = wall;
                        }
                }
        }
        if (s->drain && s->stop == STOP_DURATION) {
                /* The follow-ups still pending, each at its own future time. */
                s->stop = STOP_NONE;
                if (run_due(s, INT64_MAX) == -1)
                        return -1;
                if (!s->stop)
                        s->stop = sim_signalled ? STOP_SIGNAL : STOP_DURATION;
        }
        demand_flush(s);
        return 0;
}

static int sim_configure(sim_t *s, fls_conf_t *conf)
{
        s->seed = (uint64_t)fls_conf_int(conf, "sim.seed");
        s->rate = fls_conf_dbl(conf, "sim.rate");
        s->duration_ms = fls_conf_int(conf, "sim.duration_s") * 1000;
        s->max_events = fls_conf_int(conf, "sim.events");
        s->nusers = (uint32_t)fls_conf_int(conf, "sim.users");
        s->nskus = (uint32_t)fls_conf_int(conf, "sim.skus");
        s->nwh = (uint32_t)fls_conf_int(conf, "sim.warehouses");
        s->nregions = (uint32_t)fls_conf_int(conf, "sim.regions");
        s->zipf_s = fls_conf_dbl(conf, "sim.zipf_s");
        s->hot_share = fls_conf_dbl(conf, "sim.hot_share");
        s->sale_start_ms = fls_conf_int(conf, "sim.sale_start_s") * 1000;
        s->spike = fls_conf_dbl(conf, "sim.spike");
        s->start_ts = fls_conf_int(conf, "sim.start_ts");
        s->realtime = fls_conf_bool(conf, "sim.realtime");
        s->out_dir = fls_conf_str(conf, "sim.out_dir");
        s->produce = fls_conf_bool(conf, "sim.produce");
        s->progress_ms = fls_conf_int(conf, "sim.progress_ms");
        s->drain = fls_conf_bool(conf, "sim.drain");
        s->flush_ms = fls_conf_int(conf, "sim.flush_ms");
        s->topics[T_CLICK].name = fls_conf_str(conf, "topic.clickstream");
        s->topics[T_ORDER].name = fls_conf_str(conf, "topic.orders");
        s->topics[T_SHIP].name = fls_conf_str(conf, "topic.shipments");
        s->topics[T_CLICK].file = "clickstream.csv";
        s->topics[T_ORDER].file = "orders.csv";
        s->topics[T_SHIP].file = "shipments.csv";

        if ((uint64_t)s->nskus * s->nwh > MAX_PAIRS) {
                snprintf(s->errstr, sizeof(s->errstr),
                         "sim.skus x sim.warehouses must be at most %d", MAX_PAIRS);
                return -1;
        }
        if (s->drain && s->realtime) {
                snprintf(s->errstr, sizeof(s->errstr),
                         "sim.drain needs sim.realtime=false: drained events are stamped "
                         "in the future");
                return -1;
        }
        if (!s->produce && !*s->out_dir) {
                snprintf(s->errstr, sizeof(s->errstr),
                         "sim.produce=false without sim.out_dir has nothing to write");
                return -1;
        }
        if (s->start_ts == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                s->start_ts = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        /* Decay to ~5x by the end of the run: four time constants after the ramp. */
        s->tau_ms = 120000;
        if (s->duration_ms > s->sale_start_ms + RAMP_MS)
                s->tau_ms = (double)(s->duration_ms - s->sale_start_ms - RAMP_MS) / 4.0;
        if (s->tau_ms < 2000)
                s->tau_ms = 2000;
        s->free_parcel = UINT32_MAX;
        rng_seed(&s->world_rng, s->seed);
        rng_seed(&s->rng, s->seed ^ 0x5deece66dULL);
        return 0;
}

static int sim_finish(sim_t *s)
{
        int rc = 0;
        char err[512];

        if (s->rk) {
                rd_kafka_resp_err_t ferr = rd_kafka_flush(s->rk, (int)s->flush_ms);
                int left = rd_kafka_outq_len(s->rk);
                if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR && left > 0) {
                        /* Never delivered: as lost as a failed delivery report. */
                        s->dr_failed += (uint64_t)left;
                        fls_log(FLS_LOG_ERROR, COMP,
                                "%d messages not delivered within sim.flush_ms=%" PRId64,
                                left, s->flush_ms);
                }
        }
        for (int i = 0; i < NTOPICS; i++) {
                if (csv_close(s->topics[i].csv, s->topics[i].file, err, sizeof(err)) ==
                    -1) {
                        fls_log(FLS_LOG_ERROR, COMP, "%s", err);
                        rc = -1;
                }
                s->topics[i].csv = NULL;
        }
        if (csv_close(s->truth_ship, "truth_shipments.csv", err, sizeof(err)) == -1 ||
            csv_close(s->truth_demand, "truth_demand.csv", err, sizeof(err)) == -1) {
                fls_log(FLS_LOG_ERROR, COMP, "%s", err);
                rc = -1;
        }
        s->truth_ship = s->truth_demand = NULL;
        if (*s->out_dir && sim_write_summary(s) == -1) {
                fls_log(FLS_LOG_ERROR, COMP, "%s", s->errstr);
                rc = -1;
        }
        if (s->dr_failed) {
                fls_log(FLS_LOG_ERROR, COMP,
                        "%" PRIu64 " of %" PRIu64 " messages lost (first: %s)",
                        s->dr_failed, s->total,
                        s->dr_first_err[0] ? s->dr_first_err : "not delivered");
                rc = -1;
        }
        return rc;
}

int fls_cmd_simulate(fls_conf_t *conf, int argc, char **argv)
{
        sim_t *s;
        struct sigaction sa, old_int, old_term;
        int rc = 1, run_rc;
        int64_t wall0;

        if (argc > 1) {
                fls_log(FLS_LOG_ERROR, COMP, "unexpected argument '%s'", argv[1]);
                return 2;
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
                fls_log(FLS_LOG_ERROR, COMP, "out of memory");
                return 1;
        }
        if (sim_configure(s, conf) == -1 || sim_build_world(s) == -1 ||
            sim_open_codecs(s, conf) == -1 || (*s->out_dir && sim_open_files(s) == -1) ||
            (s->produce && sim_kafka_open(s, conf) == -1)) {
                fls_log(FLS_LOG_ERROR, COMP, "%s", s->errstr);
                sim_destroy(s);
                return 1;
        }

        sim_signalled = 0;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = sim_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);

        fls_log(FLS_LOG_INFO, COMP,
                "start seed=%" PRIu64 " rate=%g duration_s=%" PRId64 " start_ts=%" PRId64
                " realtime=%d produce=%d out_dir='%s'",
                s->seed, s->rate, s->duration_ms / 1000, s->start_ts, s->realtime,
                s->produce, s->out_dir);
        wall0 = mono_ms();
        run_rc = sim_run(s);
        if (run_rc == -1)
                fls_log(FLS_LOG_ERROR, COMP, "%s", s->errstr);
        if (sim_finish(s) == 0 && run_rc == 0)
                rc = 0;
        {
                int64_t wall = mono_ms() - wall0;
                fls_log(FLS_LOG_INFO, COMP,
                        "done events=%" PRIu64 " clickstream=%" PRIu64 " orders=%" PRIu64
                        " shipments=%" PRIu64 " lost_units=%" PRIu64 " wall_ms=%" PRId64
                        " events_per_s=%.0f stopped_by=%s",
                        s->total, s->topics[T_CLICK].count, s->topics[T_ORDER].count,
                        s->topics[T_SHIP].count, s->units_lost, wall,
                        wall > 0 ? (double)s->total * 1000.0 / (double)wall : 0.0,
                        stops[s->stop]);
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sim_destroy(s);
        return rc;
}
