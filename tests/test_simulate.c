/*
 * test_simulate: `flashstream simulate` run as a process (FLS_BIN) in files-only mode
 * (sim.produce=false, sim.realtime=false, fixed sim.start_ts), then its CSV output is
 * read back and checked against the model's promises: determinism per seed, the sale
 * spike, stock that never goes negative, Zipf-skewed views, a truth row for every
 * shipment, valid events, and the event limit.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_TS 1764432000000LL /* 2025-11-29T16:00:00Z */

static const char *const out_files[] = {
    "clickstream.csv",     "orders.csv",       "shipments.csv", "truth_users.csv",
    "truth_shipments.csv", "truth_demand.csv", "summary.json",  NULL};

/* ------------------------------------------------------------------ helpers */

/* A fresh folder under /tmp for one run's output. */
static void make_dir(char *buf, size_t size)
{
        snprintf(buf, size, "/tmp/fls_sim_XXXXXX");
        cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

static void remove_dir(const char *dir)
{
        char path[512];
        for (int i = 0; out_files[i]; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, out_files[i]);
                unlink(path);
        }
        rmdir(dir);
}

/* Runs FLS_BIN simulate in files-only mode with the common options, then `extra`
 * (NULL-terminated flags). Returns the exit status. */
static int run_sim(const char *dir, const char *const *extra)
{
        char out_dir[600];
        const char *argv[64];
        int argc = 0, status;
        pid_t pid;

        snprintf(out_dir, sizeof(out_dir), "--sim.out_dir=%s", dir);
        argv[argc++] = FLS_BIN;
        argv[argc++] = "simulate";
        argv[argc++] = "--sim.produce=false";
        argv[argc++] = "--sim.realtime=false";
        argv[argc++] = "--sim.start_ts=1764432000000";
        argv[argc++] = "--sim.progress_ms=0";
        argv[argc++] = "--log.level=warn";
        argv[argc++] = out_dir;
        for (; extra && *extra && argc < 63; extra++)
                argv[argc++] = *extra;
        argv[argc] = NULL;

        pid = fork();
        cr_assert(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
                execv(FLS_BIN, (char *const *)argv);
                _exit(127);
        }
        cr_assert(waitpid(pid, &status, 0) == pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *slurp(const char *dir, const char *name, size_t *lenp)
{
        char path[512];
        FILE *fp;
        long len;
        char *buf;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fp = fopen(path, "rb");
        cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
        fseek(fp, 0, SEEK_END);
        len = ftell(fp);
        rewind(fp);
        buf = malloc((size_t)len + 1);
        cr_assert_not_null(buf);
        cr_assert(fread(buf, 1, (size_t)len, fp) == (size_t)len);
        buf[len] = '\0';
        fclose(fp);
        if (lenp)
                *lenp = (size_t)len;
        return buf;
}

/* A whole CSV file in memory, split in place. The simulator never writes a line
 * break inside a field, so rows are lines; quoted fields are unquoted. */
typedef struct {
        char *text;
        size_t ncols, nrows; /* rows after the header */
        char **cells;        /* (nrows + 1) * ncols; row 0 is the header */
} table_t;

/* Splits one line (NUL-terminated) into fields appended to t->cells. */
static size_t split_line(table_t *t, char *line, size_t *n, size_t *cap)
{
        size_t cols = 0;
        char *p = line;
        for (;;) {
                char *start, *w;
                if (*n == *cap) {
                        *cap *= 2;
                        t->cells = realloc(t->cells, *cap * sizeof(*t->cells));
                        cr_assert_not_null(t->cells);
                }
                if (*p == '"') {
                        start = w = ++p;
                        while (*p && !(*p == '"' && p[1] != '"')) {
                                if (*p == '"')
                                        p++; /* doubled quote */
                                *w++ = *p++;
                        }
                        if (*p == '"')
                                p++;
                } else {
                        start = p;
                        while (*p && *p != ',')
                                p++;
                        w = p;
                }
                t->cells[(*n)++] = start;
                cols++;
                if (*p != ',') {
                        *w = '\0';
                        return cols;
                }
                *p++ = '\0';
                if (w < p - 1)
                        *w = '\0';
        }
}

static table_t load(const char *dir, const char *name)
{
        table_t t = {0};
        size_t cap = 4096, n = 0, len;
        char *line, *nl;

        t.text = slurp(dir, name, &len);
        cr_assert(len > 0 && t.text[len - 1] == '\n', "%s: no final newline", name);
        t.cells = malloc(cap * sizeof(*t.cells));
        cr_assert_not_null(t.cells);
        for (line = t.text; *line; line = nl + 1) {
                size_t cols;
                nl = strchr(line, '\n');
                *nl = '\0';
                cols = split_line(&t, line, &n, &cap);
                if (!t.ncols)
                        t.ncols = cols;
                cr_assert_eq(cols, t.ncols, "%s: line %zu has %zu fields, header %zu",
                             name, n / t.ncols, cols, t.ncols);
        }
        t.nrows = n / t.ncols - 1;
        return t;
}

static void table_free(table_t *t)
{
        free(t->text);
        free(t->cells);
}

static int col(const table_t *t, const char *name)
{
        for (size_t i = 0; i < t->ncols; i++)
                if (strcmp(t->cells[i], name) == 0)
                        return (int)i;
        cr_assert_fail("no column %s", name);
        return -1;
}

/* Cell of data row r (0-based, after the header). */
static const char *cell(const table_t *t, size_t r, int c)
{
        return t->cells[(r + 1) * t->ncols + (size_t)c];
}

static long long cell_ll(const table_t *t, size_t r, int c)
{
        return strtoll(cell(t, r, c), NULL, 10);
}

/* A small open-addressing map from a string key to a 64-bit counter, enough for the
 * ids of one run. */
typedef struct {
        char **keys;
        long long *vals;
        size_t cap, len;
} map_t;

static void map_init(map_t *m, size_t cap)
{
        m->cap = cap;
        m->len = 0;
        m->keys = calloc(cap, sizeof(*m->keys));
        m->vals = calloc(cap, sizeof(*m->vals));
        cr_assert(m->keys && m->vals);
}

static void map_free(map_t *m)
{
        for (size_t i = 0; i < m->cap; i++)
                free(m->keys[i]);
        free(m->keys);
        free(m->vals);
}

static long long *map_get(map_t *m, const char *key, int create)
{
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = key; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        for (size_t i = h % m->cap;; i = (i + 1) % m->cap) {
                if (!m->keys[i]) {
                        if (!create)
                                return NULL;
                        cr_assert(m->len + 1 < m->cap, "map full");
                        m->keys[i] = strdup(key);
                        m->len++;
                        return &m->vals[i];
                }
                if (strcmp(m->keys[i], key) == 0)
                        return &m->vals[i];
        }
}

static int cmp_ll_desc(const void *a, const void *b)
{
        long long x = *(const long long *)a, y = *(const long long *)b;
        return (x < y) - (x > y);
}

/* ------------------------------------------------------------------ tests */

Test(simulate, same_seed_same_bytes_other_seed_differs, .timeout = 120)
{
        const char *opts[] = {"--sim.duration_s=25", "--sim.rate=300", "--sim.drain=true",
                              NULL};
        const char *opts7[] = {"--sim.duration_s=25", "--sim.rate=300",
                               "--sim.drain=true", "--sim.seed=7", NULL};
        char a[64], b[64], c[64];
        int differs = 0;

        make_dir(a, sizeof(a));
        make_dir(b, sizeof(b));
        make_dir(c, sizeof(c));
        cr_assert_eq(run_sim(a, opts), 0);
        cr_assert_eq(run_sim(b, opts), 0);
        cr_assert_eq(run_sim(c, opts7), 0);
        for (int i = 0; out_files[i]; i++) {
                size_t la, lb, lc;
                char *fa = slurp(a, out_files[i], &la);
                char *fb = slurp(b, out_files[i], &lb);
                char *fc = slurp(c, out_files[i], &lc);
                cr_expect(la == lb && memcmp(fa, fb, la) == 0,
                          "%s differs between two runs with the same seed", out_files[i]);
                if (la != lc || memcmp(fa, fc, la) != 0)
                        differs++;
                free(fa);
                free(fb);
                free(fc);
        }
        /* Every file but none depends on the seed (summary.json names it). */
        cr_expect_eq(differs, 7, "only %d of 7 files changed with the seed", differs);
        remove_dir(a);
        remove_dir(b);
        remove_dir(c);
}

Test(simulate, sale_spike_at_least_20x, .timeout = 60)
{
        const char *opts[] = {"--sim.duration_s=40", "--sim.rate=200",
                              "--sim.sale_start_s=10", "--sim.spike=25", NULL};
        char dir[64];
        table_t t;
        long long per_s[40] = {0}, peak = 0;
        double pre;
        int ts;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        t = load(dir, "clickstream.csv");
        ts = col(&t, "ts");
        for (size_t r = 0; r < t.nrows; r++) {
                long long s = (cell_ll(&t, r, ts) - START_TS) / 1000;
                cr_assert(s >= 0 && s < 40, "click at second %lld of a 40 s run", s);
                per_s[s]++;
        }
        pre = 0;
        for (int s = 0; s < 10; s++)
                pre += (double)per_s[s] / 10.0;
        for (int s = 10; s < 16; s++)
                if (per_s[s] > peak)
                        peak = per_s[s];
        cr_assert(pre > 150, "pre-sale rate %.1f/s, expected about 200", pre);
        cr_expect((double)peak >= 20 * pre,
                  "peak %lld/s is only %.1fx the pre-sale %.1f/s", peak,
                  (double)peak / pre, pre);
        /* ...and it decays: the last second is well below the peak. */
        cr_expect(per_s[39] < peak / 2, "no decay: last second %lld, peak %lld",
                  per_s[39], peak);
        table_free(&t);
        remove_dir(dir);
}

Test(simulate, stock_never_negative_and_demand_truth_adds_up, .timeout = 60)
{
        const char *opts[] = {"--sim.duration_s=60", "--sim.rate=300", "--sim.skus=300",
                              "--sim.drain=true", NULL};
        char dir[64];
        table_t o, d;
        map_t stock;
        int ty, sku, wh, qty, price;
        long long placed = 0, sold = 0, demanded = 0, returned = 0;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        o = load(dir, "orders.csv");
        ty = col(&o, "type");
        sku = col(&o, "sku");
        wh = col(&o, "warehouse_id");
        qty = col(&o, "quantity");
        price = col(&o, "unit_price");
        map_init(&stock, 1 << 14);
        for (size_t r = 0; r < o.nrows; r++) {
                char key[128];
                long long q = cell_ll(&o, r, qty), *st;
                const char *type = cell(&o, r, ty);
                cr_assert(q > 0, "row %zu: quantity %lld", r, q);
                cr_assert(strtod(cell(&o, r, price), NULL) >= 0,
                          "row %zu: negative price", r);
                snprintf(key, sizeof(key), "%s:%s", cell(&o, r, sku), cell(&o, r, wh));
                st = map_get(&stock, key, 1);
                if (strcmp(type, "PLACED") == 0) {
                        *st -= q;
                        placed += q;
                } else if (strcmp(type, "CANCELLED") == 0 ||
                           strcmp(type, "REFUNDED") == 0) {
                        *st += q;
                        returned += q;
                } else {
                        cr_assert_str_eq(type, "STOCK_RECEIPT");
                        *st += q;
                }
                cr_assert(*st >= 0, "stock of %s is %lld after orders.csv row %zu", key,
                          *st, r);
        }
        cr_assert(placed > 0, "no order placed");
        cr_expect(returned > 0, "no cancellation or refund at all");

        /* The demand truth: units sold are exactly the units placed, and with 300
         * SKUs the hot ones sell out, so some demand is lost. */
        d = load(dir, "truth_demand.csv");
        for (size_t r = 0; r < d.nrows; r++) {
                long long dem = cell_ll(&d, r, col(&d, "units_demanded"));
                long long s = cell_ll(&d, r, col(&d, "units_sold"));
                cr_assert(s >= 0 && s <= dem, "row %zu: sold %lld of %lld demanded", r, s,
                          dem);
                cr_assert_eq(cell_ll(&d, r, col(&d, "interval_start_ts")) % 60000, 0);
                sold += s;
                demanded += dem;
        }
        cr_expect_eq(sold, placed, "truth sold %lld, orders.csv placed %lld", sold,
                     placed);
        cr_expect(demanded > sold, "no lost demand: %lld demanded, %lld sold", demanded,
                  sold);
        map_free(&stock);
        table_free(&o);
        table_free(&d);
        remove_dir(dir);
}

Test(simulate, zipf_top_skus_take_most_views, .timeout = 60)
{
        const char *opts[] = {"--sim.duration_s=20", "--sim.rate=500", "--sim.skus=2000",
                              NULL};
        char dir[64];
        table_t t;
        map_t views;
        long long *counts, total = 0, top = 0;
        size_t n = 0;
        int ty, sku;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        t = load(dir, "clickstream.csv");
        ty = col(&t, "type");
        sku = col(&t, "sku");
        map_init(&views, 1 << 13);
        for (size_t r = 0; r < t.nrows; r++) {
                if (strcmp(cell(&t, r, ty), "VIEW") != 0)
                        continue;
                (*map_get(&views, cell(&t, r, sku), 1))++;
                total++;
        }
        counts = calloc(views.len, sizeof(*counts));
        cr_assert_not_null(counts);
        for (size_t i = 0; i < views.cap; i++)
                if (views.keys[i])
                        counts[n++] = views.vals[i];
        qsort(counts, n, sizeof(*counts), cmp_ll_desc);
        for (size_t i = 0; i < 20 && i < n; i++) /* 1% of 2000 SKUs */
                top += counts[i];
        cr_assert(total > 10000, "only %lld views", total);
        /* Uniform popularity would give the top 1% about 1-2% of the views. */
        cr_expect((double)top / (double)total >= 0.35,
                  "top 1%% of SKUs got %.1f%% of %lld views",
                  100.0 * (double)top / (double)total, total);
        free(counts);
        map_free(&views);
        table_free(&t);
        remove_dir(dir);
}

Test(simulate, every_shipment_has_truth_and_a_consistent_timeline, .timeout = 60)
{
        const char *opts[] = {"--sim.duration_s=30", "--sim.rate=300", "--sim.drain=true",
                              NULL};
        char dir[64];
        table_t sh, tr;
        map_t truth, last;
        int sid, st, ts, created = 0, finished = 0;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        sh = load(dir, "shipments.csv");
        tr = load(dir, "truth_shipments.csv");
        map_init(&truth, 1 << 16);
        map_init(&last, 1 << 16);
        for (size_t r = 0; r < tr.nrows; r++) {
                /* delivery time in ms, for the DELIVERED/FAILED check below */
                double h = strtod(cell(&tr, r, col(&tr, "true_delivery_h")), NULL);
                cr_assert(h > 0, "true_delivery_h %f", h);
                *map_get(&truth, cell(&tr, r, col(&tr, "shipment_id")), 1) =
                    cell_ll(&tr, r, col(&tr, "created_ts")) + (long long)(h * 3600000.0);
        }
        sid = col(&sh, "shipment_id");
        st = col(&sh, "status");
        ts = col(&sh, "ts");
        for (size_t r = 0; r < sh.nrows; r++) {
                static const char *const order[] = {"CREATED",           "PICKED",
                                                    "HANDED_TO_CARRIER", "IN_TRANSIT",
                                                    "DELIVERED",         "FAILED"};
                const char *id = cell(&sh, r, sid), *status = cell(&sh, r, st);
                long long *step = map_get(&last, id, 1), *due;
                int k = 0;
                while (k < 6 && strcmp(order[k], status) != 0)
                        k++;
                cr_assert(k < 6, "unknown status %s", status);
                /* steps go forward one at a time; DELIVERED and FAILED are both last */
                cr_assert_eq(*step, k == 5 ? 4 : k, "%s: %s after step %lld", id, status,
                             *step);
                *step = (k == 5 ? 4 : k) + 1;
                due = map_get(&truth, id, 0);
                if (k == 0) {
                        created++;
                        cr_assert_not_null(due, "shipment %s CREATED without a truth row",
                                           id);
                }
                if (k >= 4) {
                        finished++;
                        /* the truth is rounded to 0.0001 h = 360 ms */
                        cr_assert(llabs(cell_ll(&sh, r, ts) - *due) <= 360,
                                  "%s finished at %lld, truth says %lld", id,
                                  cell_ll(&sh, r, ts), *due);
                }
        }
        cr_assert(created > 100, "only %d shipments", created);
        cr_expect_eq((size_t)created, tr.nrows, "%d created, %zu truth rows", created,
                     tr.nrows);
        /* drained: every shipment reached its end */
        cr_expect_eq(finished, created);
        map_free(&truth);
        map_free(&last);
        table_free(&sh);
        table_free(&tr);
        remove_dir(dir);
}

Test(simulate, events_are_valid, .timeout = 60)
{
        const char *opts[] = {"--sim.duration_s=20", "--sim.rate=300", NULL};
        char dir[64];
        table_t c, u;
        map_t ids;
        int eid, uid, sku, ty, price, qty, dwell, ts;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        c = load(dir, "clickstream.csv");
        {
                /* The header is the schema's field order. */
                static const char *const hdr[] = {"event_id",    "user_id",  "session_id",
                                                  "type",        "sku",      "category",
                                                  "price",       "quantity", "dwell_ms",
                                                  "campaign_id", "ts"};
                cr_assert_eq(c.ncols, 11);
                for (int i = 0; i < 11; i++)
                        cr_assert_str_eq(c.cells[i], hdr[i]);
        }
        eid = col(&c, "event_id");
        uid = col(&c, "user_id");
        sku = col(&c, "sku");
        ty = col(&c, "type");
        price = col(&c, "price");
        qty = col(&c, "quantity");
        dwell = col(&c, "dwell_ms");
        ts = col(&c, "ts");
        map_init(&ids, 1 << 18);
        cr_assert(c.nrows > 1000 && c.nrows < (1 << 17));
        for (size_t r = 0; r < c.nrows; r++) {
                const char *type = cell(&c, r, ty);
                long long *seen = map_get(&ids, cell(&c, r, eid), 1);
                long long t = cell_ll(&c, r, ts);
                cr_assert_eq(*seen, 0, "event_id %s twice", cell(&c, r, eid));
                *seen = 1;
                cr_assert_eq(cell(&c, r, eid)[0], 'c');
                cr_assert(cell(&c, r, uid)[0] == 'u' && cell(&c, r, uid)[1]);
                cr_assert(strtod(cell(&c, r, price), NULL) >= 0);
                cr_assert(cell_ll(&c, r, qty) >= 0 && cell_ll(&c, r, dwell) >= 0);
                cr_assert(t >= START_TS && t < START_TS + 20000, "ts %lld", t);
                if (strcmp(type, "SEARCH") == 0) {
                        cr_assert_str_empty(cell(&c, r, sku));
                } else {
                        cr_assert(cell(&c, r, sku)[0] == 's' && cell(&c, r, sku)[1]);
                }
                if (!strcmp(type, "VIEW") || !strcmp(type, "CLICK") ||
                    !strcmp(type, "SEARCH"))
                        cr_assert_eq(cell_ll(&c, r, qty), 0);
                else
                        cr_assert(cell_ll(&c, r, qty) > 0, "%s with quantity 0", type);
        }

        /* Intent bands follow the documented thresholds; all three occur. */
        u = load(dir, "truth_users.csv");
        {
                int bands[3] = {0};
                cr_assert_eq(u.nrows, 10000);
                for (size_t r = 0; r < u.nrows; r++) {
                        double x = strtod(cell(&u, r, 1), NULL);
                        const char *b = cell(&u, r, 2);
                        const char *want = x < 0.05  ? "never"
                                           : x > 0.8 ? "sure"
                                                     : "persuadable";
                        cr_assert(x >= 0 && x <= 1);
                        cr_assert_str_eq(b, want, "intent %f", x);
                        bands[x < 0.05 ? 0 : x > 0.8 ? 2 : 1]++;
                }
                cr_expect(bands[0] > 500 && bands[1] > 5000 && bands[2] > 200,
                          "bands %d/%d/%d", bands[0], bands[1], bands[2]);
        }
        map_free(&ids);
        table_free(&c);
        table_free(&u);
        remove_dir(dir);
}

Test(simulate, stops_after_sim_events, .timeout = 60)
{
        const char *opts[] = {"--sim.events=12345", "--sim.duration_s=0", NULL};
        char dir[64];
        table_t a, b, c;

        make_dir(dir, sizeof(dir));
        cr_assert_eq(run_sim(dir, opts), 0);
        a = load(dir, "clickstream.csv");
        b = load(dir, "orders.csv");
        c = load(dir, "shipments.csv");
        cr_expect_eq(a.nrows + b.nrows + c.nrows, 12345);
        table_free(&a);
        table_free(&b);
        table_free(&c);
        remove_dir(dir);
}

Test(simulate, rejects_bad_usage, .timeout = 30)
{
        const char *drain_rt[] = {"--sim.drain=true", "--sim.realtime=true", NULL};
        const char *extra_arg[] = {"surplus", NULL};
        char dir[64];

        make_dir(dir, sizeof(dir));
        cr_expect_neq(run_sim(dir, drain_rt), 0);
        cr_expect_neq(run_sim(dir, extra_arg), 0);
        remove_dir(dir);
}
