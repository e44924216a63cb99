/*
 * task_dispatch: reads the simulator's shipments.csv in event order, keeps the same
 * rolling state the shipments consumer keeps in Redis (load buckets, carrier backlog,
 * delivery-time buckets) for the whole file, and makes one row per CREATED event with
 * fls_dispatch_row(); the target comes from truth_shipments.csv. One pass over the
 * file, O(1) state per region and carrier, O(shipments) for the created times.
 */
#include "task_dispatch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_csv.h"
#include "data_strmap.h"
#include "model.h"
#include "task_common.h"

static const char *const names[FLS_DISPATCH_NFEAT] = {
    "distance_km",     "weight_kg",          "hour_utc",
    "flash",           "region_created_30m", "region_created_5m",
    "carrier_backlog", "region_dlv_h_24h",   "carrier_dlv_h_24h"};

const char *const *fls_dispatch_feature_names(void)
{
        return names;
}

static double recent_h(double sum, double n)
{
        return (sum + FLS_DISPATCH_PRIOR_WEIGHT * FLS_DISPATCH_PRIOR_H) /
               (n + FLS_DISPATCH_PRIOR_WEIGHT);
}

void fls_dispatch_row(const fls_dispatch_raw_t *r, float *row)
{
        int64_t day_ms = r->ts_ms % 86400000LL;
        if (day_ms < 0)
                day_ms += 86400000LL;
        row[0] = (float)r->distance_km;
        row[1] = (float)r->weight_kg;
        row[2] = (float)((double)day_ms / 3600000.0);
        row[3] = r->flash ? 1.0f : 0.0f;
        row[4] = (float)r->region_created_long;
        row[5] = (float)r->region_created_short;
        row[6] = (float)r->carrier_backlog;
        row[7] = (float)recent_h(r->region_dlv_sum_h, r->region_dlv_n);
        row[8] = (float)recent_h(r->carrier_dlv_sum_h, r->carrier_dlv_n);
}

/* ---- the consumer's state, for the whole file ----------------------------------- */

#define LOAD_SLOTS 64 /* more than the 30 buckets read */

typedef struct {
        int64_t load_bucket[LOAD_SLOTS], load[LOAD_SLOTS];
        int64_t dlv_bucket[FLS_DISPATCH_DLV_SLOTS], dlv_ms[FLS_DISPATCH_DLV_SLOTS],
            dlv_n[FLS_DISPATCH_DLV_SLOTS];
        int64_t created, done;
} ent_t;

typedef struct {
        fls_strmap_t *map;
        ent_t *v;
        size_t n, cap;
} ents_t;

static int ent_get(ents_t *e, const char *name)
{
        int i = fls_strmap_get(e->map, name);
        if (i >= 0)
                return i;
        if (e->n == e->cap) {
                size_t cap = e->cap ? e->cap * 2 : 16;
                ent_t *v = realloc(e->v, cap * sizeof(*v));
                if (!v)
                        return -1;
                e->v = v;
                e->cap = cap;
        }
        memset(&e->v[e->n], 0, sizeof(ent_t));
        for (int s = 0; s < LOAD_SLOTS; s++)
                e->v[e->n].load_bucket[s] = -1;
        for (int s = 0; s < FLS_DISPATCH_DLV_SLOTS; s++)
                e->v[e->n].dlv_bucket[s] = -1;
        if (fls_strmap_put(e->map, name, (int)e->n) < 0)
                return -1;
        return (int)e->n++;
}

static void load_add(ent_t *e, int64_t ts)
{
        int64_t b = ts / FLS_DISPATCH_LOAD_BUCKET;
        int s = (int)(b % LOAD_SLOTS);
        if (e->load_bucket[s] < b) {
                e->load_bucket[s] = b;
                e->load[s] = 0;
        }
        if (e->load_bucket[s] == b)
                e->load[s]++;
}

static int64_t load_sum(const ent_t *e, int64_t ts, int64_t window)
{
        int64_t ref = ts / FLS_DISPATCH_LOAD_BUCKET,
                nb = window / FLS_DISPATCH_LOAD_BUCKET;
        int64_t sum = 0;
        for (int s = 0; s < LOAD_SLOTS; s++)
                if (e->load_bucket[s] > ref - nb && e->load_bucket[s] <= ref)
                        sum += e->load[s];
        return sum;
}

static void dlv_add(ent_t *e, int64_t ts, int64_t ms)
{
        int64_t b = ts / FLS_DISPATCH_DLV_BUCKET;
        int s = (int)(b % FLS_DISPATCH_DLV_SLOTS);
        if (e->dlv_bucket[s] < b) {
                e->dlv_bucket[s] = b;
                e->dlv_ms[s] = e->dlv_n[s] = 0;
        }
        if (e->dlv_bucket[s] == b) {
                e->dlv_ms[s] += ms;
                e->dlv_n[s]++;
        }
}

static void dlv_sum(const ent_t *e, int64_t ts, double *sum_h, double *n)
{
        int64_t ref = ts / FLS_DISPATCH_DLV_BUCKET;
        *sum_h = *n = 0;
        for (int s = 0; s < FLS_DISPATCH_DLV_SLOTS; s++)
                if (e->dlv_bucket[s] > ref - FLS_DISPATCH_DLV_SLOTS &&
                    e->dlv_bucket[s] <= ref) {
                        *sum_h += (double)e->dlv_ms[s] / 3600000.0;
                        *n += (double)e->dlv_n[s];
                }
}

/* Rows of every CREATED shipment with a truth row, in file order. */
typedef struct {
        fls_rows_t rows;
        int64_t *created; /* ms, per row */
        size_t created_cap;
} sim_rows_t;

static int parse_i64(const char *s, int64_t *out)
{
        char *end;
        long long v;
        if (!*s)
                return -1;
        v = strtoll(s, &end, 10);
        if (*end)
                return -1;
        *out = v;
        return 0;
}

static int read_truth(const char *dir, fls_strmap_t *map, float **hours, char *errstr,
                      size_t errstr_size)
{
        static const char *const cols[] = {"shipment_id", "true_delivery_h"};
        int idx[2];
        size_t n = 0, cap = 0;
        float *h = NULL;
        int rc = -1;
        fls_csv_t *csv =
            fls_csv_open_in(dir, "truth_shipments.csv", ',', errstr, errstr_size);
        if (!csv)
                return -1;
        if (fls_csv_next(csv, errstr, errstr_size) != 1 ||
            fls_csv_columns(csv, cols, idx, 2, "truth_shipments.csv", errstr,
                            errstr_size) < 0)
                goto done;
        for (;;) {
                int r = fls_csv_next(csv, errstr, errstr_size);
                double v;
                if (r < 0)
                        goto done;
                if (r == 0)
                        break;
                if (fls_csv_double(fls_csv_field(csv, (size_t)idx[1]), &v) < 0 || v < 0) {
                        snprintf(errstr, errstr_size,
                                 "truth_shipments.csv:%ld: bad true_delivery_h",
                                 fls_csv_line(csv));
                        goto done;
                }
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 4096;
                        float *nh = realloc(h, nc * sizeof(*nh));
                        if (!nh)
                                goto oom;
                        h = nh;
                        cap = nc;
                }
                h[n] = (float)v;
                if (fls_strmap_put(map, fls_csv_field(csv, (size_t)idx[0]), (int)n) < 0)
                        goto oom;
                n++;
        }
        rc = 0;
        goto done;
oom:
        snprintf(errstr, errstr_size, "delivery-sim: out of memory");
done:
        fls_csv_destroy(csv);
        if (rc < 0) {
                free(h);
                h = NULL;
        }
        *hours = h;
        return rc;
}

static int load_sim(const char *dir, sim_rows_t *out, char *errstr, size_t errstr_size)
{
        static const char *const cols[] = {"shipment_id", "status",    "region",
                                           "distance_km", "weight_kg", "carrier",
                                           "flash_sale",  "ts"};
        enum { C_SH, C_STATUS, C_REGION, C_DIST, C_WEIGHT, C_CARRIER, C_FLASH, C_TS };
        int idx[8];
        fls_strmap_t *truth_map = fls_strmap_new(), *ship_map = fls_strmap_new();
        ents_t regions = {fls_strmap_new(), NULL, 0, 0};
        ents_t carriers = {fls_strmap_new(), NULL, 0, 0};
        float *truth = NULL;
        int64_t *ship_created = NULL;
        int *ship_region = NULL, *ship_carrier = NULL;
        size_t nship = 0, ship_cap = 0;
        fls_csv_t *csv = NULL;
        int rc = -1;

        memset(out, 0, sizeof(*out));
        fls_rows_init(&out->rows, FLS_DISPATCH_NFEAT);
        if (!truth_map || !ship_map || !regions.map || !carriers.map) {
                snprintf(errstr, errstr_size, "delivery-sim: out of memory");
                goto done;
        }
        if (read_truth(dir, truth_map, &truth, errstr, errstr_size) < 0)
                goto done;
        csv = fls_csv_open_in(dir, "shipments.csv", ',', errstr, errstr_size);
        if (!csv)
                goto done;
        if (fls_csv_next(csv, errstr, errstr_size) != 1 ||
            fls_csv_columns(csv, cols, idx, 8, "shipments.csv", errstr, errstr_size) < 0)
                goto done;
        for (;;) {
                int r = fls_csv_next(csv, errstr, errstr_size);
                const char *status, *sh;
                int64_t ts;
                double dist, weight;
                int reg, car;
                if (r < 0)
                        goto done;
                if (r == 0)
                        break;
                status = fls_csv_field(csv, (size_t)idx[C_STATUS]);
                sh = fls_csv_field(csv, (size_t)idx[C_SH]);
                if (parse_i64(fls_csv_field(csv, (size_t)idx[C_TS]), &ts) < 0 ||
                    fls_csv_double(fls_csv_field(csv, (size_t)idx[C_DIST]), &dist) < 0 ||
                    fls_csv_double(fls_csv_field(csv, (size_t)idx[C_WEIGHT]), &weight) <
                        0) {
                        snprintf(errstr, errstr_size, "shipments.csv:%ld: bad number",
                                 fls_csv_line(csv));
                        goto done;
                }
                reg = ent_get(&regions, fls_csv_field(csv, (size_t)idx[C_REGION]));
                car = ent_get(&carriers, fls_csv_field(csv, (size_t)idx[C_CARRIER]));
                if (reg < 0 || car < 0)
                        goto oom;
                if (strcmp(status, "CREATED") == 0) {
                        ent_t *re = &regions.v[reg], *ce = &carriers.v[car];
                        fls_dispatch_raw_t raw;
                        float row[FLS_DISPATCH_NFEAT];
                        int t = fls_strmap_get(truth_map, sh);
                        if (nship == ship_cap) {
                                size_t nc = ship_cap ? ship_cap * 2 : 4096;
                                int64_t *c = realloc(ship_created, nc * sizeof(*c));
                                int *rg, *cr;
                                if (!c)
                                        goto oom;
                                ship_created = c;
                                rg = realloc(ship_region, nc * sizeof(*rg));
                                if (!rg)
                                        goto oom;
                                ship_region = rg;
                                cr = realloc(ship_carrier, nc * sizeof(*cr));
                                if (!cr)
                                        goto oom;
                                ship_carrier = cr;
                                ship_cap = nc;
                        }
                        ship_created[nship] = ts;
                        ship_region[nship] = reg;
                        ship_carrier[nship] = car;
                        if (fls_strmap_put(ship_map, sh, (int)nship++) < 0)
                                goto oom;
                        /* As in the consumer: this event's own updates are applied
                         * before its features are read. */
                        load_add(re, ts);
                        ce->created++;
                        memset(&raw, 0, sizeof(raw));
                        raw.distance_km = dist;
                        raw.weight_kg = weight;
                        raw.ts_ms = ts;
                        raw.flash =
                            strcmp(fls_csv_field(csv, (size_t)idx[C_FLASH]), "true") == 0;
                        raw.region_created_long =
                            (double)load_sum(re, ts, FLS_DISPATCH_LOAD_LONG);
                        raw.region_created_short =
                            (double)load_sum(re, ts, FLS_DISPATCH_LOAD_SHORT);
                        raw.carrier_backlog = (double)(ce->created - ce->done);
                        dlv_sum(re, ts, &raw.region_dlv_sum_h, &raw.region_dlv_n);
                        dlv_sum(ce, ts, &raw.carrier_dlv_sum_h, &raw.carrier_dlv_n);
                        fls_dispatch_row(&raw, row);
                        if (t < 0)
                                continue; /* no truth: not a training row */
                        if (fls_rows_add(&out->rows, row, truth[t]) < 0)
                                goto oom;
                        if (out->rows.n > out->created_cap) {
                                size_t nc = out->rows.cap;
                                int64_t *c = realloc(out->created, nc * sizeof(*c));
                                if (!c)
                                        goto oom;
                                out->created = c;
                                out->created_cap = nc;
                        }
                        out->created[out->rows.n - 1] = ts;
                } else if (strcmp(status, "DELIVERED") == 0 ||
                           strcmp(status, "FAILED") == 0) {
                        int s = fls_strmap_get(ship_map, sh);
                        carriers.v[car].done++;
                        if (s < 0 || status[0] == 'F')
                                continue;
                        dlv_add(&regions.v[ship_region[s]], ts, ts - ship_created[s]);
                        dlv_add(&carriers.v[ship_carrier[s]], ts, ts - ship_created[s]);
                }
        }
        if (out->rows.n < 50) {
                snprintf(
                    errstr, errstr_size,
                    "delivery-sim: only %zu created shipments with a truth row in %s",
                    out->rows.n, dir);
                goto done;
        }
        rc = 0;
        goto done;
oom:
        snprintf(errstr, errstr_size, "delivery-sim: out of memory");
done:
        fls_csv_destroy(csv);
        fls_strmap_destroy(truth_map);
        fls_strmap_destroy(ship_map);
        fls_strmap_destroy(regions.map);
        fls_strmap_destroy(carriers.map);
        free(regions.v);
        free(carriers.v);
        free(truth);
        free(ship_created);
        free(ship_region);
        free(ship_carrier);
        if (rc < 0) {
                fls_rows_free(&out->rows);
                free(out->created);
                out->created = NULL;
        }
        return rc;
}

static void sim_rows_free(sim_rows_t *s)
{
        fls_rows_free(&s->rows);
        free(s->created);
        s->created = NULL;
}

int64_t fls_dispatch_split_s(const int64_t *created_ms, size_t n)
{
        int64_t lo, hi;
        if (n == 0)
                return 0;
        lo = hi = created_ms[0];
        for (size_t i = 1; i < n; i++) {
                if (created_ms[i] < lo)
                        lo = created_ms[i];
                if (created_ms[i] > hi)
                        hi = created_ms[i];
        }
        return (lo + (int64_t)((double)(hi - lo) * 0.7)) / 1000;
}

static int64_t split_time(const sim_rows_t *s)
{
        return fls_dispatch_split_s(s->created, s->rows.n);
}

/* Seconds, for the range; floor so that a row at the split is after it. */
static int64_t secs(int64_t ms)
{
        return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

int fls_task_dispatch_train(const char *data_dir, const fls_range_t *given, uint64_t seed,
                            const char *out, const char *export_csv, char *errstr,
                            size_t errstr_size)
{
        sim_rows_t s;
        fls_rows_t tr;
        FILE *ex = NULL;
        fls_range_t range;
        double sum = 0;
        int rc = -1;

        if (load_sim(data_dir, &s, errstr, errstr_size) < 0)
                return -1;
        range = fls_range_default(given, split_time(&s), 1);
        fls_rows_init(&tr, FLS_DISPATCH_NFEAT);
        if (export_csv && !(ex = fls_export_open(export_csv, names, FLS_DISPATCH_NFEAT,
                                                 "y", errstr, errstr_size)))
                goto done;
        for (size_t i = 0; i < s.rows.n; i++) {
                const float *x = s.rows.x + i * FLS_DISPATCH_NFEAT;
                if (!fls_range_contains(&range, secs(s.created[i])))
                        continue;
                if (fls_rows_add(&tr, x, s.rows.y[i]) < 0) {
                        snprintf(errstr, errstr_size, "delivery-sim: out of memory");
                        goto done;
                }
                fls_export_row(ex, "train", &s.rows.y[i], 1, x, FLS_DISPATCH_NFEAT);
                sum += s.rows.y[i];
        }
        if (tr.n < 50) {
                snprintf(errstr, errstr_size,
                         "delivery-sim: only %zu shipments in the training range", tr.n);
                goto done;
        }
        {
                /* Small on purpose: the file ships in the repository (well under
                 * 1 MB) and a depth of 9 already resolves the simulator's few
                 * interacting factors; measured in the eval of README.md. */
                fls_forest_opts_t fo;
                fls_forest_t *f;
                fls_model_t *m;
                char src[512], mean_txt[64];
                fls_forest_opts_default(&fo, FLS_FOREST_REGRESSOR);
                fo.n_trees = 40;
                fo.max_depth = 9;
                fo.min_samples_leaf = 20;
                fo.mtry = 4;
                fo.seed = seed;
                f = fls_forest_train(FLS_FOREST_REGRESSOR, tr.x, tr.y, tr.n,
                                     FLS_DISPATCH_NFEAT, &fo, errstr, errstr_size);
                if (!f)
                        goto done;
                snprintf(src, sizeof(src),
                         "shipments.csv + truth_shipments.csv (simulator format), %zu "
                         "shipments "
                         "created before %lld s",
                         tr.n, (long long)(range.has_until ? range.until : 0));
                snprintf(mean_txt, sizeof(mean_txt), "%.6f", sum / (double)tr.n);
                fls_model_meta_t meta = {src, seed, "", "train_mean_h", mean_txt};
                m = fls_model_from_forest(f, "delivery-sim", "1", names,
                                          FLS_DISPATCH_NFEAT, NULL, NULL, &meta, errstr,
                                          errstr_size);
                if (!m)
                        goto done;
                rc = fls_model_save(m, out, errstr, errstr_size);
                fls_model_destroy(m);
        }
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        fls_rows_free(&tr);
        sim_rows_free(&s);
        return rc;
}

int fls_task_dispatch_eval(const char *model_path, const char *data_dir,
                           const fls_range_t *given, const char *export_csv,
                           fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        const fls_model_meta_t *meta;
        double train_mean = NAN;
        sim_rows_t s;
        fls_rows_t te;
        fls_range_t range;
        double *y = NULL, *yhat = NULL, *base = NULL;
        float *pred = NULL;
        FILE *ex = NULL;
        int rc = -1;

        if (!m)
                return -1;
        if (fls_model_check_features(m, names, FLS_DISPATCH_NFEAT, errstr, errstr_size) <
            0) {
                fls_model_destroy(m);
                return -1;
        }
        meta = fls_model_meta(m);
        if (meta->metric_name && strcmp(meta->metric_name, "train_mean_h") == 0)
                train_mean = strtod(meta->metric_value, NULL);
        if (!isfinite(train_mean)) {
                snprintf(errstr, errstr_size,
                         "%s: no train_mean_h in the model file (not a delivery-sim "
                         "model?)",
                         model_path);
                fls_model_destroy(m);
                return -1;
        }
        if (load_sim(data_dir, &s, errstr, errstr_size) < 0) {
                fls_model_destroy(m);
                return -1;
        }
        range = fls_range_default(given, split_time(&s), 0);
        fls_rows_init(&te, FLS_DISPATCH_NFEAT);
        if (export_csv && !(ex = fls_export_open(export_csv, names, FLS_DISPATCH_NFEAT,
                                                 "y", errstr, errstr_size)))
                goto done;
        for (size_t i = 0; i < s.rows.n; i++) {
                const float *x = s.rows.x + i * FLS_DISPATCH_NFEAT;
                int64_t t = secs(s.created[i]);
                if (!fls_range_contains(&range, t)) {
                        if (range.has_from && t < range.from)
                                fls_export_row(ex, "train", &s.rows.y[i], 1, x,
                                               FLS_DISPATCH_NFEAT);
                        continue;
                }
                fls_export_row(ex, "test", &s.rows.y[i], 1, x, FLS_DISPATCH_NFEAT);
                if (fls_rows_add(&te, x, s.rows.y[i]) < 0) {
                        snprintf(errstr, errstr_size, "delivery-sim: out of memory");
                        goto done;
                }
        }
        if (te.n == 0) {
                snprintf(errstr, errstr_size,
                         "delivery-sim: no shipments created in the range");
                goto done;
        }
        y = malloc(te.n * sizeof(*y));
        yhat = malloc(te.n * sizeof(*yhat));
        base = malloc(te.n * sizeof(*base));
        pred = malloc(te.n * sizeof(*pred));
        if (!y || !yhat || !base || !pred) {
                snprintf(errstr, errstr_size, "delivery-sim: out of memory");
                goto done;
        }
        if (fls_model_predict(m, te.x, te.n, pred, errstr, errstr_size) < 0)
                goto done;
        for (size_t i = 0; i < te.n; i++) {
                y[i] = te.y[i];
                yhat[i] = pred[i];
                base[i] = train_mean;
        }
        memset(res, 0, sizeof(*res));
        res->rows = te.n;
        res->range = range;
        res->metric = "mae_hours";
        res->value = fls_metric_mae(y, yhat, te.n);
        res->nbaselines = 1;
        res->baseline_name[0] = "train_mean";
        res->baseline[0] = fls_metric_mae(y, base, te.n);
        rc = 0;
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(y);
        free(yhat);
        free(base);
        free(pred);
        fls_rows_free(&te);
        sim_rows_free(&s);
        fls_model_destroy(m);
        return rc;
}
