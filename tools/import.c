/*
 * import: see import.h. The importers turn dataset rows into input events (the field
 * by field mapping and why is in tools/IMPORT.md); the producer half sends them like
 * tools/simulate.c does: one codec per output built at start-up, Confluent framing,
 * the murmur2_random partitioner (the Java client's, so that a key's partition can be
 * computed anywhere), QUEUE_FULL served by polling (fls_kafka_produce), delivery
 * reports counted and a final flush; any lost message makes the command fail.
 *
 * Cost: the whole dataset is held in memory to be sorted (the public samples are
 * 10-20k rows, ~300 bytes a record). Producing reuses one Avro value per output.
 */
#include "import.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "data_csv.h"
#include "data_strmap.h"
#include "data_time.h"
#include "kafka.h"
#include "log.h"
#include "producer.h"

#define COMP  "import"
#define SCOPE "import"

const fls_conf_def_t fls_import_conf[] = {
    {"import.limit", FLS_CONF_INT, "0", 0, 1e12,
     "Data rows to read at most from the main file; 0: all.", SCOPE},
    {"import.time_scale", FLS_CONF_DBL, "1", 1, 1e9,
     "Event times are compressed by this factor after the first event (1440: a day of "
     "the dataset becomes a minute), so that minute windows see months of orders.",
     SCOPE},
    {"import.sale_start_s", FLS_CONF_INT, "-1", -1, 31536000,
     "REES46: events this many seconds after the first one (dataset time) and later "
     "carry import.campaign_id; -1: no campaign.",
     SCOPE},
    {"import.campaign_id", FLS_CONF_STR, "rees46-replay", 1, 0,
     "REES46: campaign_id of the events of the sale.", SCOPE},
    {"import.opening_days", FLS_CONF_INT, "7", 0, 3650,
     "Orders: opening stock of a SKU at a warehouse = units it sold in its first this "
     "many days (dataset time); 0: no opening receipts.",
     SCOPE},
    {"import.warehouse", FLS_CONF_STR, "uk", 1, 0,
     "UCI Online Retail: the warehouse_id of every line (the retailer has one).", SCOPE},
    {"import.cancel_delay_s", FLS_CONF_INT, "3600", 0, 31536000,
     "Olist: a canceled or unavailable order is cancelled this long after its purchase "
     "(the dataset has no cancellation time).",
     SCOPE},
    {"import.dry_run", FLS_CONF_BOOL, "false", 1, 0,
     "Convert and print the summary without producing.", SCOPE},
    {"import.flush_ms", FLS_CONF_INT, "30000", 0, 600000,
     "Time allowed at the end to deliver the produced messages.", SCOPE},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* The outputs: registry subject, topic key, field count. */
static const struct {
        const char *subject, *topic_key;
        int nfields;
} outs[FLS_IMPORT__NOUT] = {
    {"clickstream-value", "topic.clickstream", FLS_IC__N},
    {"orders-value", "topic.orders", FLS_IO__N},
    {"shipments-value", "topic.shipments", 12},
};

static const struct {
        const char *name;
        fls_import_fn fn;
        const char *help;
} importers[] = {
    {"rees46", fls_import_rees46, "REES46 events -> ClickEvent (topic.clickstream)"},
    {"retail", fls_import_retail, "UCI Online Retail lines -> OrderEvent (topic.orders)"},
    {"olist-orders", fls_import_olist_orders,
     "Olist order items -> OrderEvent (topic.orders)"},
    {NULL, NULL, NULL},
};

/* ------------------------------------------------------------------ the set */

void fls_import_set_free(fls_import_set_t *set)
{
        fls_arena_free(&set->text);
        free(set->recs);
        memset(set, 0, sizeof(*set));
}

fls_import_rec_t *fls_import_new(fls_import_set_t *set, int out, long line)
{
        fls_import_rec_t *r;
        if (set->n == set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 1024;
                fls_import_rec_t *nr = realloc(set->recs, cap * sizeof(*nr));
                if (!nr)
                        abort(); /* bounded by the dataset, see the file comment */
                set->recs = nr;
                set->cap = cap;
        }
        r = &set->recs[set->n++];
        memset(r, 0, sizeof(*r));
        r->out = out;
        r->seq = set->seq++;
        r->line = line;
        r->ts_field = -1;
        return r;
}

static fls_import_val_t *val(fls_import_rec_t *r, fls_import_kind_t kind)
{
        fls_import_val_t *v = &r->f[r->nf < FLS_IMPORT_MAX_FIELDS ? r->nf : 0];
        if (r->nf < FLS_IMPORT_MAX_FIELDS)
                r->nf++;
        v->kind = kind;
        return v;
}

void fls_import_strn(fls_import_set_t *set, fls_import_rec_t *r, const char *s,
                     size_t len)
{
        val(r, FLS_IV_STR)->v.s = fls_arena_add(&set->text, s, len);
}

void fls_import_str(fls_import_set_t *set, fls_import_rec_t *r, const char *s)
{
        fls_import_strn(set, r, s, strlen(s));
}

void fls_import_long(fls_import_rec_t *r, int64_t v)
{
        val(r, FLS_IV_LONG)->v.l = v;
}

void fls_import_int(fls_import_rec_t *r, int32_t v)
{
        val(r, FLS_IV_INT)->v.l = v;
}

void fls_import_dbl(fls_import_rec_t *r, double v)
{
        val(r, FLS_IV_DBL)->v.d = v;
}

void fls_import_bool(fls_import_rec_t *r, int v)
{
        val(r, FLS_IV_BOOL)->v.l = v != 0;
}

void fls_import_enum(fls_import_rec_t *r, int v)
{
        val(r, FLS_IV_ENUM)->v.l = v;
}

void fls_import_ts(fls_import_rec_t *r, int64_t ts)
{
        r->ts_field = r->nf;
        r->ts = ts;
        fls_import_long(r, ts);
}

void fls_import_key(fls_import_set_t *set, fls_import_rec_t *r, const char *key)
{
        r->key = fls_arena_add(&set->text, key, strlen(key));
}

static void count(const char **names, long *counts, int *n, const char *what, long k)
{
        for (int i = 0; i < *n; i++)
                if (strcmp(names[i], what) == 0) {
                        counts[i] += k;
                        return;
                }
        if (*n < FLS_IMPORT_MAX_REASONS) {
                names[*n] = what;
                counts[(*n)++] = k;
        }
}

void fls_import_skip(fls_import_set_t *set, const char *reason)
{
        count(set->reason, set->skipped, &set->nreasons, reason, 1);
}

void fls_import_note(fls_import_set_t *set, const char *what, long n)
{
        count(set->note, set->noted, &set->nnotes, what, n);
}

long fls_import_skipped(const fls_import_set_t *set, const char *reason)
{
        for (int i = 0; i < set->nreasons; i++)
                if (strcmp(set->reason[i], reason) == 0)
                        return set->skipped[i];
        return 0;
}

static int by_time(const void *a, const void *b)
{
        const fls_import_rec_t *x = a, *y = b;
        if (x->ts != y->ts)
                return x->ts < y->ts ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ------------------------------------------------------------------ helpers */

/* The main file of a dataset: PATH itself, or PATH/name when PATH is a folder. */
static void main_file(const char *path, const char *name, char *buf, size_t size)
{
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                snprintf(buf, size, "%s/%s", path, name);
        else
                snprintf(buf, size, "%s", path);
}

/* Whole-field integer; -1 on empty or malformed text. */
static int parse_long(const char *s, long long *out)
{
        char *end;
        if (!*s)
                return -1;
        *out = strtoll(s, &end, 10);
        return *end ? -1 : 0;
}

static int parse_ts_ms(const char *s, int64_t *ms)
{
        int64_t t;
        if (fls_time_parse(s, &t) < 0)
                return -1;
        *ms = t * 1000;
        return 0;
}

/* The rows of the main file, read with a limit. */
static fls_csv_t *open_rows(const char *file, const char *const *cols, int *idx, size_t n,
                            char *errstr, size_t errstr_size)
{
        fls_csv_t *csv = fls_csv_open(file, ',', errstr, errstr_size);
        int rc;
        if (!csv)
                return NULL;
        rc = fls_csv_next(csv, errstr, errstr_size);
        if (rc == 0)
                snprintf(errstr, errstr_size, "%s: empty file", file);
        if (rc <= 0 ||
            fls_csv_columns(csv, cols, idx, n, file, errstr, errstr_size) < 0) {
                fls_csv_destroy(csv);
                return NULL;
        }
        return csv;
}

/* ------------------------------------------------------------------ REES46 */

#define DWELL_CAP_MS 1800000 /* a gap longer than 30 min is not time on a page */

int fls_import_rees46(const char *path, const fls_import_opts_t *o, fls_import_set_t *set,
                      char *errstr, size_t errstr_size)
{
        static const char *const cols[] = {"event_time",    "product_id", "category_id",
                                           "category_code", "price",      "user_id",
                                           "user_session",  "event_type"};
        enum {
                C_TIME,
                C_PRODUCT,
                C_CATID,
                C_CATCODE,
                C_PRICE,
                C_USER,
                C_SESSION,
                C_TYPE
        };
        static const char *const tnames[] = {"view", "cart", "remove_from_cart",
                                             "purchase"};
        static const int tmap[] = {FLS_IC_VIEW, FLS_IC_ADD_CART, FLS_IC_REMOVE_CART,
                                   FLS_IC_PURCHASE};
        char file[4096];
        int idx[8], rc;
        size_t first = set->n;
        fls_csv_t *csv;
        fls_strmap_t *sessions = NULL;
        int64_t *last = NULL, t0;
        size_t nlast = 0;

        main_file(path, "2019-Oct_head17k.csv", file, sizeof(file));
        csv = open_rows(file, cols, idx, 8, errstr, errstr_size);
        if (!csv)
                return -1;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                const char *user = fls_csv_field(csv, idx[C_USER]);
                const char *sku = fls_csv_field(csv, idx[C_PRODUCT]);
                const char *sess = fls_csv_field(csv, idx[C_SESSION]);
                const char *cat = fls_csv_field(csv, idx[C_CATCODE]);
                const char *ty = fls_csv_field(csv, idx[C_TYPE]);
                fls_import_rec_t *r;
                int64_t ts;
                double price;
                int type = -1;
                char id[64];

                if (o->limit && set->rows >= o->limit)
                        break;
                set->rows++;
                for (int i = 0; i < 4; i++)
                        if (strcmp(ty, tnames[i]) == 0)
                                type = tmap[i];
                if (!*cat)
                        cat = fls_csv_field(csv, idx[C_CATID]);
                if (parse_ts_ms(fls_csv_field(csv, idx[C_TIME]), &ts) < 0) {
                        fls_import_skip(set, "bad or missing event_time");
                        continue;
                }
                if (type < 0) {
                        fls_import_skip(set, "unknown event_type");
                        continue;
                }
                if (!*user) {
                        fls_import_skip(set, "missing user_id");
                        continue;
                }
                if (!*sku) {
                        fls_import_skip(set, "missing product_id");
                        continue;
                }
                if (!*sess) {
                        fls_import_skip(set, "missing user_session");
                        continue;
                }
                if (fls_csv_double(fls_csv_field(csv, idx[C_PRICE]), &price) < 0 ||
                    price < 0 || price > 1e9) {
                        fls_import_skip(set, "bad or missing price");
                        continue;
                }
                /* The consumer's limits (ids travel in space-separated lists). */
                if (strlen(user) > 128 || strlen(sku) > 60 || strlen(cat) > 60 ||
                    strchr(sku, ' ')) {
                        fls_import_skip(set, "id longer than the consumer accepts");
                        continue;
                }
                snprintf(id, sizeof(id), "rees46-%ld", fls_csv_line(csv));
                r = fls_import_new(set, FLS_IMPORT_CLICK, fls_csv_line(csv));
                fls_import_str(set, r, id);
                fls_import_str(set, r, user);
                fls_import_str(set, r, sess);
                fls_import_enum(r, type);
                fls_import_str(set, r, sku);
                fls_import_str(set, r, cat);
                fls_import_dbl(r, price);
                fls_import_int(r, type == FLS_IC_VIEW ? 0 : 1);
                fls_import_int(r, 0); /* dwell_ms and campaign: after sorting */
                fls_import_str(set, r, "");
                fls_import_ts(r, ts);
                fls_import_key(set, r, user);
        }
        fls_csv_destroy(csv);
        if (rc < 0)
                return -1;
        if (set->n == first)
                return 0;

        /* In time order: dwell = gap since the session's previous event, campaign
         * from the sale start on (dataset time). */
        qsort(set->recs + first, set->n - first, sizeof(*set->recs), by_time);
        sessions = fls_strmap_new();
        last = malloc((set->n - first) * sizeof(*last));
        if (!sessions || !last) {
                fls_strmap_destroy(sessions);
                free(last);
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        t0 = set->recs[first].ts;
        for (size_t i = first; i < set->n; i++) {
                fls_import_rec_t *r = &set->recs[i];
                const char *sess = fls_import_text(set, r, FLS_IC_SESSION);
                int k = fls_strmap_get(sessions, sess);
                int64_t gap = 0;
                if (k < 0) {
                        k = (int)nlast++;
                        if (fls_strmap_put(sessions, sess, k) < 0)
                                abort();
                } else {
                        gap = r->ts - last[k];
                        gap = gap < 0 ? 0 : gap > DWELL_CAP_MS ? DWELL_CAP_MS : gap;
                }
                last[k] = r->ts;
                r->f[FLS_IC_DWELL].v.l = gap;
                if (o->sale_start_s >= 0 && r->ts >= t0 + o->sale_start_s * 1000)
                        r->f[FLS_IC_CAMPAIGN].v.s =
                            fls_arena_add(&set->text, o->campaign, strlen(o->campaign));
        }
        fls_import_note(set, "sessions", (long)nlast);
        fls_strmap_destroy(sessions);
        free(last);
        return 0;
}

/* ------------------------------------------------------------------ order helpers */

static fls_import_rec_t *order_line(fls_import_set_t *set, long line, const char *id,
                                    int type, const char *order, const char *user,
                                    const char *sku, const char *wh, int32_t qty,
                                    double price, const char *region, int64_t ts)
{
        char key[512];
        fls_import_rec_t *r = fls_import_new(set, FLS_IMPORT_ORDER, line);
        fls_import_str(set, r, id);
        fls_import_enum(r, type);
        fls_import_str(set, r, order);
        fls_import_str(set, r, user);
        fls_import_str(set, r, sku);
        fls_import_str(set, r, wh);
        fls_import_int(r, qty);
        fls_import_dbl(r, price);
        fls_import_str(set, r, region);
        fls_import_bool(r, 0);
        fls_import_ts(r, ts);
        snprintf(key, sizeof(key), "%s:%s", sku, wh);
        fls_import_key(set, r, key);
        return r;
}

/* Opening stock: one STOCK_RECEIPT per sku:warehouse at the first event's time,
 * before every other event, of the units PLACED for that pair in the opening_days
 * after its own first PLACED line. Records must be sorted by time. */
static int opening_receipts(fls_import_set_t *set, const fls_import_opts_t *o,
                            char *errstr, size_t errstr_size)
{
        fls_strmap_t *pairs;
        struct pair {
                int64_t first, units;
                size_t rec; /* a record of the pair, for its sku and warehouse */
        } *p = NULL;
        size_t np = 0, n = set->n;
        int64_t t0, window = o->opening_days * 86400000LL;
        long units = 0;

        if (o->opening_days <= 0 || n == 0)
                return 0;
        pairs = fls_strmap_new();
        p = malloc(n * sizeof(*p));
        if (!pairs || !p) {
                fls_strmap_destroy(pairs);
                free(p);
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        t0 = set->recs[0].ts;
        for (size_t i = 0; i < n; i++) {
                const fls_import_rec_t *r = &set->recs[i];
                const char *key = fls_arena_str(&set->text, r->key);
                int k;
                if (r->out != FLS_IMPORT_ORDER || r->f[FLS_IO_TYPE].v.l != FLS_IO_PLACED)
                        continue;
                k = fls_strmap_get(pairs, key);
                if (k < 0) {
                        k = (int)np++;
                        if (fls_strmap_put(pairs, key, k) < 0)
                                abort();
                        p[k].first = r->ts;
                        p[k].units = 0;
                        p[k].rec = i;
                }
                if (r->ts < p[k].first + window)
                        p[k].units += r->f[FLS_IO_QTY].v.l;
        }
        for (size_t k = 0; k < np; k++) {
                /* Copied: new records may move the array. */
                char sku[256], wh[256], id[600];
                const fls_import_rec_t *r = &set->recs[p[k].rec];
                fls_import_rec_t *rr;
                snprintf(sku, sizeof(sku), "%s", fls_import_text(set, r, FLS_IO_SKU));
                snprintf(wh, sizeof(wh), "%s", fls_import_text(set, r, FLS_IO_WH));
                snprintf(id, sizeof(id), "opening-%s:%s", sku, wh);
                rr =
                    order_line(set, 0, id, FLS_IO_RECEIPT, "", "", sku, wh,
                               (int32_t)(p[k].units > INT32_MAX ? INT32_MAX : p[k].units),
                               0, "", t0);
                rr->seq = 0; /* before every dataset record at t0 */
                units += (long)p[k].units;
        }
        if (np) {
                fls_import_note(set, "opening receipts (synthesized)", (long)np);
                fls_import_note(set, "opening units", units);
        }
        fls_strmap_destroy(pairs);
        free(p);
        return 0;
}

/* ------------------------------------------------------------------ UCI retail */

/* Postage, fees and manual adjustments: not goods that leave a warehouse. */
static int service_code(const char *c)
{
        static const char *const codes[] = {
            "POST",      "DOT",          "M", "m", "D", "C2", "S", "CRUK", "B", "PADS",
            "AMAZONFEE", "BANK CHARGES", NULL};
        for (int i = 0; codes[i]; i++)
                if (strcmp(c, codes[i]) == 0)
                        return 1;
        return 0;
}

int fls_import_retail(const char *path, const fls_import_opts_t *o, fls_import_set_t *set,
                      char *errstr, size_t errstr_size)
{
        static const char *const cols[] = {"InvoiceNo",   "StockCode", "Quantity",
                                           "InvoiceDate", "UnitPrice", "CustomerID",
                                           "Country"};
        enum { C_INV, C_CODE, C_QTY, C_DATE, C_PRICE, C_CUST, C_COUNTRY };
        char file[4096], id[64];
        int idx[7], rc;
        size_t first = set->n;
        fls_csv_t *csv;
        fls_strmap_t *open = NULL;
        struct line {
                int64_t left; /* units not cancelled yet */
                int prev;     /* earlier line of the same customer and SKU, -1 */
                size_t rec;
        } *ln = NULL;
        size_t nln = 0;
        long matched = 0, unmatched = 0;

        main_file(path, "online_retail_random20k.csv", file, sizeof(file));
        csv = open_rows(file, cols, idx, 7, errstr, errstr_size);
        if (!csv)
                return -1;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                const char *inv = fls_csv_field(csv, idx[C_INV]);
                const char *code = fls_csv_field(csv, idx[C_CODE]);
                const char *cust = fls_csv_field(csv, idx[C_CUST]);
                const char *country = fls_csv_field(csv, idx[C_COUNTRY]);
                long long qty;
                double price;
                int64_t ts;
                int cancel = inv[0] == 'C';

                if (o->limit && set->rows >= o->limit)
                        break;
                set->rows++;
                if (strcmp(cust, "NA") == 0)
                        cust = "";
                if (!*inv) {
                        fls_import_skip(set, "missing InvoiceNo");
                        continue;
                }
                if (!*code) {
                        fls_import_skip(set, "missing StockCode");
                        continue;
                }
                if (parse_ts_ms(fls_csv_field(csv, idx[C_DATE]), &ts) < 0) {
                        fls_import_skip(set, "bad or missing InvoiceDate");
                        continue;
                }
                if (parse_long(fls_csv_field(csv, idx[C_QTY]), &qty) < 0 || qty == 0 ||
                    qty > INT32_MAX || qty < -(long long)INT32_MAX) {
                        fls_import_skip(set, "bad or zero Quantity");
                        continue;
                }
                if (fls_csv_double(fls_csv_field(csv, idx[C_PRICE]), &price) < 0 ||
                    price < 0) {
                        fls_import_skip(set, "bad or negative UnitPrice");
                        continue;
                }
                if (service_code(code)) {
                        fls_import_skip(set, "service line (postage, fee, manual)");
                        continue;
                }
                if (strlen(code) + strlen(o->warehouse) > 200 || strlen(inv) > 100) {
                        fls_import_skip(set, "id longer than the consumer accepts");
                        continue;
                }
                if (!cancel && qty < 0) {
                        fls_import_skip(set, "negative Quantity outside a cancellation "
                                             "(stock adjustment)");
                        continue;
                }
                if (cancel && qty > 0) {
                        fls_import_skip(set, "cancellation with a positive Quantity");
                        continue;
                }
                snprintf(id, sizeof(id), "retail-%ld", fls_csv_line(csv));
                /* Cancellations are typed after sorting, once matched. */
                order_line(set, fls_csv_line(csv), id,
                           cancel ? FLS_IO_REFUNDED : FLS_IO_PLACED, inv, cust, code,
                           o->warehouse, (int32_t)(qty < 0 ? -qty : qty), price, country,
                           ts);
        }
        fls_csv_destroy(csv);
        if (rc < 0)
                return -1;
        if (set->n == first)
                return 0;

        /* A cancellation cancels the customer's latest earlier line of that SKU with
         * units left: CANCELLED of that invoice. Without one (the sample holds ~4% of
         * the lines, or no CustomerID) it stays a REFUNDED under its own C-invoice,
         * which the consumer's stock ledger has not seen: counted, no stock back. */
        qsort(set->recs + first, set->n - first, sizeof(*set->recs), by_time);
        open = fls_strmap_new();
        ln = malloc((set->n - first) * sizeof(*ln));
        if (!open || !ln) {
                fls_strmap_destroy(open);
                free(ln);
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (size_t i = first; i < set->n; i++) {
                fls_import_rec_t *r = &set->recs[i];
                const char *cust = fls_import_text(set, r, FLS_IO_USER);
                char key[400];
                int k;
                if (!*cust) {
                        if (r->f[FLS_IO_TYPE].v.l == FLS_IO_REFUNDED)
                                unmatched++;
                        continue;
                }
                snprintf(key, sizeof(key), "%s\x1f%s", cust,
                         fls_import_text(set, r, FLS_IO_SKU));
                k = fls_strmap_get(open, key);
                if (r->f[FLS_IO_TYPE].v.l == FLS_IO_PLACED) {
                        ln[nln].left = r->f[FLS_IO_QTY].v.l;
                        ln[nln].prev = k;
                        ln[nln].rec = i;
                        if (fls_strmap_put(open, key, (int)nln) < 0)
                                abort();
                        nln++;
                        continue;
                }
                while (k >= 0 && ln[k].left <= 0)
                        k = ln[k].prev;
                if (k < 0) {
                        unmatched++;
                        continue;
                }
                {
                        int64_t q = r->f[FLS_IO_QTY].v.l;
                        const char *inv =
                            fls_import_text(set, &set->recs[ln[k].rec], FLS_IO_ORDER);
                        ln[k].left -= q < ln[k].left ? q : ln[k].left;
                        r->f[FLS_IO_TYPE].v.l = FLS_IO_CANCELLED;
                        r->f[FLS_IO_ORDER].v.s =
                            fls_arena_add(&set->text, inv, strlen(inv));
                        matched++;
                }
        }
        fls_import_note(set, "cancellations matched to an earlier line (CANCELLED)",
                        matched);
        fls_import_note(set, "cancellations without a match (REFUNDED, no stock back)",
                        unmatched);
        fls_strmap_destroy(open);
        free(ln);
        return 0;
}

/* ------------------------------------------------------------------ Olist orders */

/* dir/name, with the base name's last "orders" replaced by part when PATH is a file
 * (so that x_orders.csv comes with x_order_items.csv and x_customers.csv). */
static void olist_file(const char *orders, const char *part, char *buf, size_t size)
{
        const char *base = strrchr(orders, '/'), *hit = NULL, *p;
        base = base ? base + 1 : orders;
        for (p = base; (p = strstr(p, "orders")); p++)
                hit = p;
        if (!hit)
                snprintf(buf, size, "%s", orders);
        else
                snprintf(buf, size, "%.*s%s%s", (int)(hit - orders), orders, part,
                         hit + 6);
}

int fls_import_olist_orders(const char *path, const fls_import_opts_t *o,
                            fls_import_set_t *set, char *errstr, size_t errstr_size)
{
        static const char *const ccols[] = {"customer_id", "customer_unique_id",
                                            "customer_state"};
        static const char *const ocols[] = {"order_id", "customer_id", "order_status",
                                            "order_purchase_timestamp"};
        static const char *const icols[] = {"order_id", "order_item_id", "product_id",
                                            "seller_id", "price"};
        char fo[4096], fi[4096], fc[4096], id[128];
        int ci[3], oi[4], ii[5], rc, ret = -1;
        fls_csv_t *csv = NULL;
        fls_strmap_t *custs = fls_strmap_new(), *orders = fls_strmap_new();
        fls_arena_t txt = {0};
        struct cust {
                size_t unique, state;
        } *cu = NULL;
        struct ord {
                size_t customer; /* arena offsets in txt */
                int64_t ts;      /* -1: bad purchase timestamp */
                int cancel, items;
        } *od = NULL;
        size_t ncu = 0, nod = 0, cap;
        long no_items = 0, cancelled = 0;

        main_file(path, "olist_orders_2017_subset.csv", fo, sizeof(fo));
        olist_file(fo, "order_items", fi, sizeof(fi));
        olist_file(fo, "customers", fc, sizeof(fc));
        if (!custs || !orders)
                goto nomem;

        /* customers: id -> (unique id, state) */
        if (!(csv = open_rows(fc, ccols, ci, 3, errstr, errstr_size)))
                goto done;
        cap = 0;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                if (ncu == cap) {
                        struct cust *n;
                        cap = cap ? cap * 2 : 1024;
                        if (!(n = realloc(cu, cap * sizeof(*n))))
                                goto nomem;
                        cu = n;
                }
                cu[ncu].unique = fls_arena_add(&txt, fls_csv_field(csv, ci[1]),
                                               strlen(fls_csv_field(csv, ci[1])));
                cu[ncu].state = fls_arena_add(&txt, fls_csv_field(csv, ci[2]),
                                              strlen(fls_csv_field(csv, ci[2])));
                if (fls_strmap_put(custs, fls_csv_field(csv, ci[0]), (int)ncu++) < 0)
                        goto nomem;
        }
        fls_csv_destroy(csv);
        csv = NULL;
        if (rc < 0)
                goto done;

        /* orders: id -> (customer, purchase time, cancelled) */
        if (!(csv = open_rows(fo, ocols, oi, 4, errstr, errstr_size)))
                goto done;
        cap = 0;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                const char *st = fls_csv_field(csv, oi[2]);
                if (nod == cap) {
                        struct ord *n;
                        cap = cap ? cap * 2 : 1024;
                        if (!(n = realloc(od, cap * sizeof(*n))))
                                goto nomem;
                        od = n;
                }
                od[nod].customer = fls_arena_add(&txt, fls_csv_field(csv, oi[1]),
                                                 strlen(fls_csv_field(csv, oi[1])));
                if (parse_ts_ms(fls_csv_field(csv, oi[3]), &od[nod].ts) < 0)
                        od[nod].ts = -1;
                od[nod].cancel =
                    strcmp(st, "canceled") == 0 || strcmp(st, "unavailable") == 0;
                od[nod].items = 0;
                if (fls_strmap_put(orders, fls_csv_field(csv, oi[0]), (int)nod++) < 0)
                        goto nomem;
        }
        fls_csv_destroy(csv);
        csv = NULL;
        if (rc < 0)
                goto done;

        /* items: one PLACED line each (+ a CANCELLED one for cancelled orders) */
        if (!(csv = open_rows(fi, icols, ii, 5, errstr, errstr_size)))
                goto done;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                const char *oid = fls_csv_field(csv, ii[0]);
                const char *sku = fls_csv_field(csv, ii[2]);
                const char *wh = fls_csv_field(csv, ii[3]);
                const char *user = "", *region = "";
                double price;
                int k, c;

                if (o->limit && set->rows >= o->limit)
                        break;
                set->rows++;
                k = fls_strmap_get(orders, oid);
                if (k < 0) {
                        fls_import_skip(set, "order_id not in the orders file");
                        continue;
                }
                od[k].items++;
                if (od[k].ts < 0) {
                        fls_import_skip(set, "bad or missing order_purchase_timestamp");
                        continue;
                }
                if (!*sku || !*wh) {
                        fls_import_skip(set, "missing product_id or seller_id");
                        continue;
                }
                if (fls_csv_double(fls_csv_field(csv, ii[4]), &price) < 0 || price < 0) {
                        fls_import_skip(set, "bad or negative price");
                        continue;
                }
                if (strlen(sku) + strlen(wh) > 200 || strlen(oid) > 100) {
                        fls_import_skip(set, "id longer than the consumer accepts");
                        continue;
                }
                c = fls_strmap_get(custs, fls_arena_str(&txt, od[k].customer));
                if (c >= 0) {
                        user = fls_arena_str(&txt, cu[c].unique);
                        region = fls_arena_str(&txt, cu[c].state);
                } else {
                        fls_import_note(set,
                                        "items whose customer is unknown (no "
                                        "user_id, no region)",
                                        1);
                }
                snprintf(id, sizeof(id), "olist-%s-%s", oid, fls_csv_field(csv, ii[1]));
                order_line(set, fls_csv_line(csv), id, FLS_IO_PLACED, oid, user, sku, wh,
                           1, price, region, od[k].ts);
                if (od[k].cancel) {
                        snprintf(id, sizeof(id), "olist-%s-%s-cancel", oid,
                                 fls_csv_field(csv, ii[1]));
                        order_line(set, fls_csv_line(csv), id, FLS_IO_CANCELLED, oid,
                                   user, sku, wh, 1, price, region,
                                   od[k].ts + o->cancel_delay_s * 1000);
                        cancelled++;
                }
        }
        if (rc < 0)
                goto done;
        for (size_t k = 0; k < nod; k++)
                no_items += od[k].items == 0;
        fls_import_note(set, "orders without item lines (nothing to send)", no_items);
        fls_import_note(set, "items of canceled/unavailable orders (PLACED + CANCELLED)",
                        cancelled);
        ret = 0;
        goto done;
nomem:
        snprintf(errstr, errstr_size, "out of memory");
done:
        fls_csv_destroy(csv);
        fls_strmap_destroy(custs);
        fls_strmap_destroy(orders);
        fls_arena_free(&txt);
        free(cu);
        free(od);
        return ret;
}

/* ------------------------------------------------------------------ load */

void fls_import_opts_from_conf(const fls_conf_t *conf, fls_import_opts_t *o)
{
        o->limit = fls_conf_int(conf, "import.limit");
        o->time_scale = fls_conf_dbl(conf, "import.time_scale");
        o->sale_start_s = fls_conf_int(conf, "import.sale_start_s");
        o->campaign = fls_conf_str(conf, "import.campaign_id");
        o->opening_days = fls_conf_int(conf, "import.opening_days");
        o->warehouse = fls_conf_str(conf, "import.warehouse");
        o->cancel_delay_s = fls_conf_int(conf, "import.cancel_delay_s");
}

int fls_import_load(const char *name, const char *path, const fls_import_opts_t *o,
                    fls_import_set_t *set, char *errstr, size_t errstr_size)
{
        fls_import_fn fn = NULL;
        int64_t t0;

        for (int i = 0; importers[i].name; i++)
                if (strcmp(importers[i].name, name) == 0)
                        fn = importers[i].fn;
        if (!fn) {
                snprintf(errstr, errstr_size, "unknown dataset '%s'", name);
                return -1;
        }
        memset(set, 0, sizeof(*set));
        set->seq = 1; /* 0 is for records that go first at their time */
        set->sale_start_ts = -1;
        if (fn(path, o, set, errstr, errstr_size) == -1)
                return -1;
        qsort(set->recs, set->n, sizeof(*set->recs), by_time);
        if (opening_receipts(set, o, errstr, errstr_size) == -1)
                return -1;
        qsort(set->recs, set->n, sizeof(*set->recs), by_time);
        if (set->n == 0)
                return 0;
        /* Time compression keeps the first event's time and the order. */
        t0 = set->recs[0].ts;
        for (size_t i = 0; i < set->n; i++) {
                fls_import_rec_t *r = &set->recs[i];
                if (o->time_scale != 1)
                        r->ts = t0 + llround((double)(r->ts - t0) / o->time_scale);
                if (r->ts_field >= 0)
                        r->f[r->ts_field].v.l = r->ts;
        }
        /* The sale starts at import.sale_start_s (scaled), not at its first event. */
        for (size_t i = 0; i < set->n; i++)
                if (set->recs[i].out == FLS_IMPORT_CLICK &&
                    fls_import_text(set, &set->recs[i], FLS_IC_CAMPAIGN)[0]) {
                        set->sale_start_ts =
                            t0 + llround((double)o->sale_start_s * 1000 / o->time_scale);
                        break;
                }
        set->first_ts = set->recs[0].ts;
        set->last_ts = set->recs[set->n - 1].ts;
        return 0;
}

/* ------------------------------------------------------------------ producing */

/* Fills the codec's value from r, checking each value's kind against the schema. */
static int fill(fls_codec_t *codec, const fls_import_set_t *set,
                const fls_import_rec_t *r, char *errstr, size_t errstr_size)
{
        avro_value_t *rec = fls_codec_out(codec);
        int rc = 0;
        for (int i = 0; i < r->nf && !rc; i++) {
                avro_value_t fv;
                avro_type_t t;
                const fls_import_val_t *v = &r->f[i];
                if (avro_value_get_by_index(rec, (size_t)i, &fv, NULL) != 0) {
                        rc = -1;
                        break;
                }
                t = avro_value_get_type(&fv);
                switch (v->kind) {
                case FLS_IV_STR: {
                        const char *s = fls_arena_str(&set->text, v->v.s);
                        rc = t == AVRO_STRING ? fls_avro_set_str(rec, i, s, strlen(s))
                                              : -1;
                        break;
                }
                case FLS_IV_LONG:
                        rc = t == AVRO_INT64 ? fls_avro_set_long(rec, i, v->v.l) : -1;
                        break;
                case FLS_IV_INT:
                        rc = t == AVRO_INT32 ? fls_avro_set_int(rec, i, (int32_t)v->v.l)
                                             : -1;
                        break;
                case FLS_IV_DBL:
                        rc = t == AVRO_DOUBLE ? fls_avro_set_double(rec, i, v->v.d) : -1;
                        break;
                case FLS_IV_BOOL:
                        rc = t == AVRO_BOOLEAN ? fls_avro_set_bool(rec, i, (int)v->v.l)
                                               : -1;
                        break;
                case FLS_IV_ENUM:
                        rc = t == AVRO_ENUM ? fls_avro_set_enum(rec, i, (int)v->v.l) : -1;
                        break;
                }
                if (rc)
                        snprintf(errstr, errstr_size,
                                 "record of line %ld: field %d does not match the schema "
                                 "of %s",
                                 r->line, i, outs[r->out].subject);
        }
        return rc;
}

static int produce_all(fls_conf_t *conf, const fls_import_set_t *set, uint64_t *sent,
                       uint64_t *delivered, uint64_t *failed, char *errstr,
                       size_t errstr_size)
{
        fls_codec_t *codec[FLS_IMPORT__NOUT] = {0};
        const char *topic[FLS_IMPORT__NOUT] = {0};
        fls_producer_t *p = NULL;
        int flush_ms = (int)fls_conf_int(conf, "import.flush_ms");
        char cerr[512];
        int rc = -1;

        for (size_t i = 0; i < set->n; i++) {
                int out = set->recs[i].out;
                size_t nfield = 0;
                if (codec[out])
                        continue;
                codec[out] =
                    fls_codec_new(fls_conf_str(conf, "schema.dir"), outs[out].subject, 0,
                                  1 << 20, errstr, errstr_size);
                if (!codec[out])
                        goto done;
                if (avro_value_get_size(fls_codec_out(codec[out]), &nfield) != 0 ||
                    (int)nfield != outs[out].nfields) {
                        snprintf(errstr, errstr_size,
                                 "%s: the schema has %zu fields, the importer knows %d",
                                 outs[out].subject, nfield, outs[out].nfields);
                        goto done;
                }
                topic[out] = fls_conf_str(conf, outs[out].topic_key);
        }
        p = fls_producer_new(conf, "flashstream-import", errstr, errstr_size);
        if (!p)
                goto done;
        for (size_t i = 0; i < set->n; i++) {
                const fls_import_rec_t *r = &set->recs[i];
                const char *key = fls_arena_str(&set->text, r->key);
                const void *buf;
                size_t len;
                if (fill(codec[r->out], set, r, errstr, errstr_size) ||
                    fls_codec_encode(codec[r->out], &buf, &len, errstr, errstr_size) ||
                    fls_producer_send(p, topic[r->out], key, strlen(key), buf, len,
                                      flush_ms, errstr, errstr_size))
                        goto done;
                (*sent)++;
        }
        rc = 0;
done:
        /* Drained even after an error, so that the counts are what reached Kafka. */
        if (p && fls_producer_close(p, flush_ms, delivered, failed, cerr, sizeof(cerr))) {
                if (rc == 0)
                        snprintf(errstr, errstr_size, "%s", cerr);
                else
                        fls_log(FLS_LOG_ERROR, COMP, "%s", cerr);
                rc = -1;
        }
        fls_producer_destroy(p);
        for (int i = 0; i < FLS_IMPORT__NOUT; i++)
                if (codec[i])
                        fls_codec_destroy(codec[i]);
        return rc;
}

static void summary(const char *name, const fls_import_set_t *set)
{
        long by[FLS_IMPORT__NOUT][8] = {{0}};
        static const char *const click_types[] = {"VIEW",     "CLICK",       "SEARCH",
                                                  "ADD_CART", "REMOVE_CART", "PURCHASE"};
        static const char *const order_types[] = {"PLACED", "CANCELLED", "REFUNDED",
                                                  "STOCK_RECEIPT"};
        long skipped = 0;
        char a[32], b[32];

        for (size_t i = 0; i < set->n; i++) {
                const fls_import_rec_t *r = &set->recs[i];
                if (r->out == FLS_IMPORT_CLICK)
                        by[r->out][r->f[FLS_IC_TYPE].v.l & 7]++;
                else if (r->out == FLS_IMPORT_ORDER)
                        by[r->out][r->f[FLS_IO_TYPE].v.l & 7]++;
        }
        for (int i = 0; i < set->nreasons; i++)
                skipped += set->skipped[i];
        printf("import %s: rows=%ld events=%zu skipped=%ld\n", name, set->rows, set->n,
               skipped);
        for (int t = 0; t < 6; t++)
                if (by[FLS_IMPORT_CLICK][t])
                        printf("  clickstream %-14s %8ld\n", click_types[t],
                               by[FLS_IMPORT_CLICK][t]);
        for (int t = 0; t < 4; t++)
                if (by[FLS_IMPORT_ORDER][t])
                        printf("  orders      %-14s %8ld\n", order_types[t],
                               by[FLS_IMPORT_ORDER][t]);
        for (int i = 0; i < set->nreasons; i++)
                printf("  skipped: %-58s %6ld\n", set->reason[i], set->skipped[i]);
        for (int i = 0; i < set->nnotes; i++)
                printf("  note:    %-58s %6ld\n", set->note[i], set->noted[i]);
        if (set->n) {
                fls_time_format(set->first_ts / 1000, a, sizeof(a));
                fls_time_format(set->last_ts / 1000, b, sizeof(b));
                printf("  event time: %s .. %s (first_ts=%" PRId64 " last_ts=%" PRId64
                       ")\n",
                       a, b, set->first_ts, set->last_ts);
        }
        if (set->sale_start_ts >= 0)
                printf("  sale_start_ts=%" PRId64 " sale_duration_s=%" PRId64 "\n",
                       set->sale_start_ts,
                       (set->last_ts - set->sale_start_ts) / 1000 + 1);
}

int fls_cmd_import(fls_conf_t *conf, int argc, char **argv)
{
        fls_import_opts_t o;
        fls_import_set_t set;
        char errstr[512];
        uint64_t sent = 0, delivered = 0, failed = 0;
        int rc = 0;

        if (argc != 3) {
                fprintf(stderr, "usage: flashstream import DATASET PATH\ndatasets:\n");
                for (int i = 0; importers[i].name; i++)
                        fprintf(stderr, "  %-14s %s\n", importers[i].name,
                                importers[i].help);
                return 2;
        }
        fls_import_opts_from_conf(conf, &o);
        if (fls_import_load(argv[1], argv[2], &o, &set, errstr, sizeof(errstr)) == -1) {
                fls_log(FLS_LOG_ERROR, COMP, "%s %s: %s", argv[1], argv[2], errstr);
                fls_import_set_free(&set);
                return 1;
        }
        summary(argv[1], &set);
        if (!fls_conf_bool(conf, "import.dry_run")) {
                if (produce_all(conf, &set, &sent, &delivered, &failed, errstr,
                                sizeof(errstr)) == -1) {
                        fls_log(FLS_LOG_ERROR, COMP, "%s", errstr);
                        rc = 1;
                }
                printf("  produced=%" PRIu64 " delivered=%" PRIu64 " failed=%" PRIu64
                       "\n",
                       sent, delivered, failed);
        }
        fls_import_set_free(&set);
        return rc;
}
