/*
 * task_demand_sim: loads a simulator run (orders.csv, truth_demand.csv, summary.json)
 * into per-cell, per-interval arrays and trains / evaluates the short-horizon demand
 * LSTM the orders consumer scores with (see task_demand_sim.h for the rows, targets
 * and baselines). Files only: nothing here touches Kafka or Redis.
 */
#include "task_demand_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"

#define T  FLS_DSIM_T
#define H  FLS_DSIM_H
#define NF FLS_DSIM_NF

static const char *const names[NF] = {"units", "lines", "rate60", "on_hand"};

const char *const *fls_dsim_feature_names(void)
{
        return names;
}

void fls_dsim_row(const float *units, const float *lines, float rate60, float on_hand,
                  float *x)
{
        for (int k = 0; k < T; k++) {
                x[k * NF + 0] = units[k];
                x[k * NF + 1] = lines[k];
                x[k * NF + 2] = rate60;
                x[k * NF + 3] = on_hand;
        }
}

/* ---- loading ------------------------------------------------------------------ */

static int64_t json_int(const char *json, const char *field, int64_t def)
{
        char pat[64];
        const char *p;
        snprintf(pat, sizeof(pat), "\"%s\":", field);
        p = strstr(json, pat);
        return p ? strtoll(p + strlen(pat), NULL, 10) : def;
}

/* "s12" / "w3" -> 11 / 2; -1 when malformed or out of range. */
static int64_t id_num(const char *s, char prefix, uint32_t n)
{
        char *end;
        long long v;
        if (s[0] != prefix)
                return -1;
        v = strtoll(s + 1, &end, 10);
        if (*end || v < 1 || v > (long long)n)
                return -1;
        return v - 1;
}

/* Splits a CSV line without quoting (the simulator writes none) into at most max
 * fields; returns the count. */
static int split(char *line, char **f, int max)
{
        int n = 0;
        char *s = line;
        line[strcspn(line, "\r\n")] = '\0';
        while (n < max) {
                f[n++] = s;
                s = strchr(s, ',');
                if (!s)
                        break;
                *s++ = '\0';
        }
        return n;
}

void fls_dsim_destroy(fls_dsim_data_t *d)
{
        if (!d)
                return;
        free(d->units);
        free(d->lines);
        free(d->demand);
        free(d->stock);
        free(d->carried);
        free(d);
}

static int read_summary(fls_dsim_data_t *d, const char *dir, char *errstr,
                        size_t errstr_size)
{
        char path[4096], buf[8192];
        size_t n;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/summary.json", dir);
        fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size,
                         "%s: cannot open (not a simulator out_dir?)", path);
                return -1;
        }
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        d->start_ts = json_int(buf, "start_ts", -1);
        d->end_ts = json_int(buf, "end_ts", -1);
        d->nskus = (uint32_t)json_int(buf, "sim.skus", 0);
        d->nwh = (uint32_t)json_int(buf, "sim.warehouses", 0);
        if (d->start_ts < 0 || d->end_ts <= d->start_ts || d->nskus == 0 || d->nwh == 0 ||
            (uint64_t)d->nskus * d->nwh > 20000000) {
                snprintf(
                    errstr, errstr_size,
                    "%s: start_ts, end_ts, sim.skus or sim.warehouses missing or out "
                    "of range",
                    path);
                return -1;
        }
        d->ncells = d->nskus * d->nwh;
        d->first_ivl = d->start_ts / FLS_DSIM_IVL_MS;
        d->nivl = (size_t)((d->end_ts - 1) / FLS_DSIM_IVL_MS - d->first_ivl + 1);
        return 0;
}

/* Cell and interval index of a row's sku, warehouse and time; -1 when outside. */
static int64_t locate(const fls_dsim_data_t *d, const char *sku, const char *wh,
                      int64_t ts, size_t *ivl)
{
        int64_t s = id_num(sku, 's', d->nskus), w = id_num(wh, 'w', d->nwh);
        int64_t i = ts / FLS_DSIM_IVL_MS - d->first_ivl;
        if (s < 0 || w < 0 || i < 0 || (size_t)i >= d->nivl)
                return -1;
        *ivl = (size_t)i;
        return s * d->nwh + w;
}

static int read_orders(fls_dsim_data_t *d, const char *dir, char *errstr,
                       size_t errstr_size)
{
        char path[4096], line[2048];
        float *cur = calloc(d->ncells, sizeof(*cur));
        FILE *fp;
        long ln = 1;

        snprintf(path, sizeof(path), "%s/orders.csv", dir);
        fp = fopen(path, "r");
        if (!fp || !cur) {
                snprintf(errstr, errstr_size, "%s: cannot open", path);
                free(cur);
                if (fp)
                        fclose(fp);
                return -1;
        }
        for (size_t k = 0; k < (size_t)d->ncells * d->nivl; k++)
                d->stock[k] = NAN;
        if (!fgets(line, sizeof(line), fp))
                line[0] = '\0';
        while (fgets(line, sizeof(line), fp)) {
                char *f[11];
                size_t i;
                int64_t c;
                float q;
                ln++;
                if (split(line, f, 11) != 11)
                        continue;
                c = locate(d, f[4], f[5], strtoll(f[10], NULL, 10), &i);
                q = strtof(f[6], NULL);
                if (c < 0 || !(q > 0))
                        continue;
                if (strcmp(f[1], "PLACED") == 0) {
                        d->units[c * d->nivl + i] += q;
                        d->lines[c * d->nivl + i] += 1;
                        if (cur[c] >= q) /* never negative, as the consumer keeps it */
                                cur[c] -= q;
                } else if (strcmp(f[1], "STOCK_RECEIPT") == 0) {
                        cur[c] += q;
                        d->carried[c] = 1;
                } else {
                        cur[c] += q; /* cancelled or refunded: the line took q */
                }
                d->stock[c * d->nivl + i] = cur[c];
        }
        fclose(fp);
        free(cur);
        /* Intervals without an event keep the stock of the one before. */
        for (uint32_t c = 0; c < d->ncells; c++) {
                float last = 0;
                for (size_t i = 0; i < d->nivl; i++) {
                        float *s = &d->stock[c * d->nivl + i];
                        if (isnan(*s))
                                *s = last;
                        last = *s;
                }
        }
        (void)ln;
        return 0;
}

static int read_truth(fls_dsim_data_t *d, const char *dir, char *errstr,
                      size_t errstr_size)
{
        char path[4096], line[1024];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/truth_demand.csv", dir);
        fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: cannot open", path);
                return -1;
        }
        if (!fgets(line, sizeof(line), fp))
                line[0] = '\0';
        while (fgets(line, sizeof(line), fp)) {
                char *f[5];
                size_t i;
                int64_t c;
                if (split(line, f, 5) != 5)
                        continue;
                c = locate(d, f[0], f[1], strtoll(f[2], NULL, 10), &i);
                if (c >= 0)
                        d->demand[c * d->nivl + i] += strtof(f[3], NULL);
        }
        fclose(fp);
        return 0;
}

fls_dsim_data_t *fls_dsim_load(const char *dir, char *errstr, size_t errstr_size)
{
        fls_dsim_data_t *d = calloc(1, sizeof(*d));
        size_t n;

        if (!d || read_summary(d, dir, errstr, errstr_size) < 0) {
                if (!d)
                        snprintf(errstr, errstr_size, "demand-sim: out of memory");
                fls_dsim_destroy(d);
                return NULL;
        }
        n = (size_t)d->ncells * d->nivl;
        d->units = calloc(n, sizeof(float));
        d->lines = calloc(n, sizeof(float));
        d->demand = calloc(n, sizeof(float));
        d->stock = calloc(n, sizeof(float));
        d->carried = calloc(d->ncells, 1);
        if (!d->units || !d->lines || !d->demand || !d->stock || !d->carried) {
                snprintf(errstr, errstr_size, "demand-sim: out of memory");
                fls_dsim_destroy(d);
                return NULL;
        }
        if (read_orders(d, dir, errstr, errstr_size) < 0 ||
            read_truth(d, dir, errstr, errstr_size) < 0) {
                fls_dsim_destroy(d);
                return NULL;
        }
        return d;
}

double fls_dsim_placed(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t n)
{
        double s = 0;
        for (size_t k = i >= n ? i - n : 0; k < i; k++)
                s += d->units[(size_t)c * d->nivl + k];
        return s;
}

double fls_dsim_demand(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t n)
{
        double s = 0;
        for (size_t k = i; k < i + n && k < d->nivl; k++)
                s += d->demand[(size_t)c * d->nivl + k];
        return s;
}

void fls_dsim_data_row(const fls_dsim_data_t *d, uint32_t c, size_t i, float *x)
{
        const float *u = &d->units[(size_t)c * d->nivl + i - T];
        const float *l = &d->lines[(size_t)c * d->nivl + i - T];
        float rate60 = (float)(fls_dsim_placed(d, c, i, FLS_DSIM_LONG) / FLS_DSIM_LONG);
        float on_hand = i > 0 ? d->stock[(size_t)c * d->nivl + i - 1] : 0;
        fls_dsim_row(u, l, rate60, on_hand, x);
}

int fls_dsim_active(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t horizon)
{
        return d->carried[c] &&
               (fls_dsim_placed(d, c, i, T) > 0 || fls_dsim_demand(d, c, i, horizon) > 0);
}

/* ---- train / eval --------------------------------------------------------------- */

static int collect(const fls_dsim_data_t *d, fls_rows_t *rows, uint32_t *cell,
                   size_t *origin, FILE *ex, const char *split_name)
{
        float x[T * NF];
        size_t n = 0;
        for (uint32_t c = 0; c < d->ncells; c++)
                for (size_t i = T; i + H <= d->nivl; i++) {
                        float y;
                        if (!fls_dsim_active(d, c, i, H))
                                continue;
                        fls_dsim_data_row(d, c, i, x);
                        y = (float)fls_dsim_demand(d, c, i, H);
                        if (fls_rows_add(rows, x, y) < 0)
                                return -1;
                        if (cell) {
                                cell[n] = c;
                                origin[n] = i;
                        }
                        n++;
                        fls_export_row(ex, split_name, &y, 1, x, T * NF);
                }
        return 0;
}

static FILE *export_open(const char *path, char *errstr, size_t errstr_size)
{
        static char cols[T * NF][24];
        static const char *ptrs[T * NF];
        for (int t = 0; t < T; t++)
                for (int f = 0; f < NF; f++) {
                        snprintf(cols[t * NF + f], sizeof(cols[0]), "%s_t%d", names[f],
                                 t);
                        ptrs[t * NF + f] = cols[t * NF + f];
                }
        return fls_export_open(path, ptrs, T * NF, "y", errstr, errstr_size);
}

int fls_task_demand_sim_train(const char *data_dir, const fls_range_t *range,
                              uint64_t seed, const char *out, const char *export_csv,
                              char *errstr, size_t errstr_size)
{
        fls_dsim_data_t *d = fls_dsim_load(data_dir, errstr, errstr_size);
        fls_rows_t rows;
        float mean[NF], std[NF], *xn = NULL;
        fls_lstm_t *net = NULL;
        FILE *ex = NULL;
        int rc = -1;

        (void)range; /* the whole run trains: evaluate on another seed's run */
        if (!d)
                return -1;
        fls_rows_init(&rows, T * NF);
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        if (collect(d, &rows, NULL, NULL, ex, "train") < 0) {
                snprintf(errstr, errstr_size, "demand-sim: out of memory");
                goto done;
        }
        if (rows.n < 100) {
                snprintf(errstr, errstr_size,
                         "demand-sim: only %zu active rows (run the simulator for at "
                         "least %d minutes)",
                         rows.n, T + H + 5);
                goto done;
        }
        fls_norm_fit(rows.x, rows.n * T, NF, mean, std);
        xn = malloc(rows.n * T * NF * sizeof(*xn));
        if (!xn) {
                snprintf(errstr, errstr_size, "demand-sim: out of memory");
                goto done;
        }
        memcpy(xn, rows.x, rows.n * T * NF * sizeof(*xn));
        fls_norm_apply(xn, rows.n * T, NF, mean, std);
        net = fls_lstm_new(FLS_LSTM_REGRESSOR, NF, 16, T, seed, errstr, errstr_size);
        if (!net)
                goto done;
        {
                fls_lstm_train_opts_t to;
                double loss;
                char src[512];
                fls_model_meta_t meta;
                fls_model_t *m;

                fls_lstm_train_opts_default(&to);
                to.epochs = 8;
                to.batch_size = 64;
                to.learning_rate = 3e-3f;
                to.seed = seed;
                if (fls_lstm_train(net, xn, rows.y, rows.n, &to, &loss, errstr,
                                   errstr_size) < 0)
                        goto done;
                snprintf(
                    src, sizeof(src),
                    "simulator run (%u skus x %u warehouses, %zu intervals), %zu rows",
                    d->nskus, d->nwh, d->nivl, rows.n);
                meta = (fls_model_meta_t){src, seed, "", "train_mse", ""};
                m = fls_model_from_lstm(net, "demand-sim", "1", names, NF, mean, std,
                                        &meta, errstr, errstr_size);
                net = NULL; /* owned by the model, or destroyed */
                if (!m)
                        goto done;
                rc = fls_model_save(m, out, errstr, errstr_size);
                fls_model_destroy(m);
        }
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        fls_lstm_destroy(net);
        free(xn);
        fls_rows_free(&rows);
        fls_dsim_destroy(d);
        return rc;
}

int fls_task_demand_sim_eval(const char *model_path, const char *data_dir,
                             const fls_range_t *range, const char *export_csv,
                             fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        fls_dsim_data_t *d = NULL;
        fls_rows_t rows;
        uint32_t *cell = NULL;
        size_t *origin = NULL, cap;
        double *y = NULL, *yh = NULL, *b1 = NULL, *b2 = NULL;
        float *pred = NULL;
        FILE *ex = NULL;
        int rc = -1;

        fls_rows_init(&rows, T * NF);
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NF, errstr, errstr_size) < 0)
                goto done;
        if (fls_model_seq_len(m) != T) {
                snprintf(errstr, errstr_size, "%s: sequence length %zu, %d expected",
                         model_path, fls_model_seq_len(m), T);
                goto done;
        }
        d = fls_dsim_load(data_dir, errstr, errstr_size);
        if (!d)
                goto done;
        cap = (size_t)d->ncells * d->nivl;
        cell = malloc(cap * sizeof(*cell));
        origin = malloc(cap * sizeof(*origin));
        if (!cell || !origin)
                goto nomem;
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        if (collect(d, &rows, cell, origin, ex, "test") < 0)
                goto nomem;
        if (rows.n == 0) {
                snprintf(errstr, errstr_size, "demand-sim: no active rows in %s",
                         data_dir);
                goto done;
        }
        y = malloc(rows.n * sizeof(*y));
        yh = malloc(rows.n * sizeof(*yh));
        b1 = malloc(rows.n * sizeof(*b1));
        b2 = malloc(rows.n * sizeof(*b2));
        pred = malloc(rows.n * sizeof(*pred));
        if (!y || !yh || !b1 || !b2 || !pred)
                goto nomem;
        if (fls_model_predict(m, rows.x, rows.n, pred, errstr, errstr_size) < 0)
                goto done;
        for (size_t k = 0; k < rows.n; k++) {
                y[k] = rows.y[k];
                yh[k] = pred[k] > 0 ? pred[k] : 0;
                b1[k] = fls_dsim_placed(d, cell[k], origin[k], H);
                b2[k] = fls_dsim_placed(d, cell[k], origin[k], 15) / 15.0 * H;
        }
        memset(res, 0, sizeof(*res));
        res->rows = rows.n;
        res->metric = "mae_units_5min";
        res->value = fls_metric_mae(y, yh, rows.n);
        res->nbaselines = 2;
        res->baseline_name[0] = "last_5min_placed";
        res->baseline[0] = fls_metric_mae(y, b1, rows.n);
        res->baseline_name[1] = "mean_15min_rate";
        res->baseline[1] = fls_metric_mae(y, b2, rows.n);
        res->range = *range;
        rc = 0;
        goto done;
nomem:
        snprintf(errstr, errstr_size, "demand-sim: out of memory");
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(cell);
        free(origin);
        free(y);
        free(yh);
        free(b1);
        free(b2);
        free(pred);
        fls_rows_free(&rows);
        fls_dsim_destroy(d);
        fls_model_destroy(m);
        return rc;
}
