/*
 * task_demand: features, baselines and train/eval of the daily demand model. The
 * target is a ratio to the 28-day level so that the LSTM's linear output starts
 * near its answer (0) whatever the scale of the series, and so that one model fits
 * quiet and busy months alike.
 */
#include "task_demand.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"

#define W  FLS_DEMAND_WINDOW
#define HZ FLS_DEMAND_HORIZON

enum {
        F_LOG_UNITS,
        F_ZERO,
        F_DOW, /* 7 one-hot */
        F_TARGET_DOW = F_DOW + 7,
        F_HORIZON = F_TARGET_DOW + 7,
        F_LEVEL,
        NFEAT
};

static const char *const names[NFEAT] = {
    "log1p_units", "no_sales",   "dow_mon",    "dow_tue",    "dow_wed",    "dow_thu",
    "dow_fri",     "dow_sat",    "dow_sun",    "target_mon", "target_tue", "target_wed",
    "target_thu",  "target_fri", "target_sat", "target_sun", "horizon",    "log1p_ma28"};

size_t fls_task_demand_nfeatures(void)
{
        return NFEAT;
}

const char *const *fls_task_demand_feature_names(void)
{
        return names;
}

double fls_task_demand_ma28(const fls_retail_t *r, size_t o)
{
        double s = 0;
        for (size_t i = o + 1 - W; i <= o; i++)
                s += r->units[i];
        return s / W;
}

double fls_task_demand_snaive(const fls_retail_t *r, size_t o, int h)
{
        return r->units[o + (size_t)h - 7];
}

static int dow(const fls_retail_t *r, size_t i)
{
        return fls_time_weekday((r->first_day + (int64_t)i) * 86400);
}

void fls_task_demand_row(const fls_retail_t *r, size_t o, int h, float *x)
{
        float level = (float)log1p(fls_task_demand_ma28(r, o));
        int tdow = dow(r, o + (size_t)h);
        for (size_t s = 0; s < W; s++) {
                size_t d = o + 1 - W + s;
                float *f = x + s * NFEAT;
                memset(f, 0, NFEAT * sizeof(*f));
                f[F_LOG_UNITS] = (float)log1p(r->units[d]);
                f[F_ZERO] = r->units[d] == 0;
                f[F_DOW + dow(r, d)] = 1;
                f[F_TARGET_DOW + tdow] = 1;
                f[F_HORIZON] = (float)h;
                f[F_LEVEL] = level;
        }
}

double fls_task_demand_units(const fls_retail_t *r, size_t o, float out)
{
        double u = ((double)out + 1.0) * (fls_task_demand_ma28(r, o) + 1.0);
        return u > 0 ? u : 0;
}

static float target(const fls_retail_t *r, size_t o, int h)
{
        return (float)((r->units[o + (size_t)h] + 1.0) /
                           (fls_task_demand_ma28(r, o) + 1.0) -
                       1.0);
}

static int64_t day_time(const fls_retail_t *r, size_t i)
{
        return (r->first_day + (int64_t)i) * 86400;
}

static int64_t split_time(void)
{
        int64_t t = 0;
        fls_time_parse(FLS_DEMAND_SPLIT, &t);
        return t;
}

static FILE *export_open(const char *path, char *errstr, size_t errstr_size)
{
        if (!path)
                return NULL;
        char **cols = calloc(W * NFEAT, sizeof(*cols));
        FILE *fp = NULL;
        if (!cols) {
                snprintf(errstr, errstr_size, "demand: out of memory");
                return NULL;
        }
        size_t k = 0;
        for (size_t s = 0; s < W; s++)
                for (size_t f = 0; f < NFEAT; f++, k++) {
                        char buf[64];
                        snprintf(buf, sizeof(buf), "t%02zu_%s", s, names[f]);
                        if (!(cols[k] = strdup(buf))) {
                                snprintf(errstr, errstr_size, "demand: out of memory");
                                goto done;
                        }
                }
        fp = fls_export_open(path, (const char *const *)cols, W * NFEAT, "y,mase_scale",
                             errstr, errstr_size);
done:
        for (size_t i = 0; i < W * NFEAT; i++)
                free(cols[i]);
        free(cols);
        return fp;
}

/* Seasonal-naive MAE of the days of the series inside the range: the MASE scale. */
static double train_scale(const fls_retail_t *r, const fls_range_t *range)
{
        size_t lo = 0, hi = r->ndays;
        while (lo < hi && !fls_range_contains(range, day_time(r, lo)))
                lo++;
        while (hi > lo && !fls_range_contains(range, day_time(r, hi - 1)))
                hi--;
        return fls_metric_snaive_mae(r->units + lo, hi - lo, 7);
}

int fls_task_demand_train(const char *data_dir, const fls_range_t *given, uint64_t seed,
                          const char *out, const char *export_csv, char *errstr,
                          size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 1);
        fls_retail_t *r = fls_retail_load(data_dir, errstr, errstr_size);
        if (!r)
                return -1;
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, W * NFEAT);
        float *x = malloc(W * NFEAT * sizeof(*x));
        float *mean = malloc(NFEAT * sizeof(*mean)), *std = malloc(NFEAT * sizeof(*std));
        float *xn = NULL;
        fls_lstm_t *net = NULL;
        FILE *ex = NULL;
        if (!x || !mean || !std) {
                snprintf(errstr, errstr_size, "demand: out of memory");
                goto done;
        }
        double scale = train_scale(r, &range);
        if (!(scale > 0)) {
                snprintf(errstr, errstr_size,
                         "demand: the training range has too few days for a 7-day "
                         "seasonal-naive scale");
                goto done;
        }
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        for (size_t o = W - 1; o + HZ < r->ndays; o++) {
                if (!fls_range_contains(&range, day_time(r, o)) ||
                    !fls_range_contains(&range, day_time(r, o + HZ)))
                        continue;
                for (int h = 1; h <= HZ; h++) {
                        fls_task_demand_row(r, o, h, x);
                        if (fls_rows_add(&rows, x, target(r, o, h)) < 0) {
                                snprintf(errstr, errstr_size, "demand: out of memory");
                                goto done;
                        }
                        float ys[2] = {(float)r->units[o + (size_t)h], (float)scale};
                        fls_export_row(ex, "train", ys, 2, x, W * NFEAT);
                }
        }
        if (rows.n < 7 * 20) {
                snprintf(errstr, errstr_size,
                         "demand: only %zu forecast origins in the training range (need "
                         "20)",
                         rows.n / 7);
                goto done;
        }
        fls_norm_fit(rows.x, rows.n * W, NFEAT, mean, std);
        xn = malloc(rows.n * W * NFEAT * sizeof(*xn));
        if (!xn) {
                snprintf(errstr, errstr_size, "demand: out of memory");
                goto done;
        }
        memcpy(xn, rows.x, rows.n * W * NFEAT * sizeof(*xn));
        fls_norm_apply(xn, rows.n * W, NFEAT, mean, std);
        net = fls_lstm_new(FLS_LSTM_REGRESSOR, NFEAT, 32, W, seed, errstr, errstr_size);
        if (!net)
                goto done;
        fls_lstm_train_opts_t to;
        fls_lstm_train_opts_default(&to);
        to.epochs = 60;
        to.batch_size = 32;
        to.learning_rate = 3e-3f;
        to.seed = seed;
        double loss;
        if (fls_lstm_train(net, xn, rows.y, rows.n, &to, &loss, errstr, errstr_size) < 0)
                goto done;
        char src[256], scale_txt[64];
        snprintf(src, sizeof(src), "uci-online-retail-sample, %zu origins x %d horizons",
                 rows.n / HZ, HZ);
        snprintf(scale_txt, sizeof(scale_txt), "%.6f", scale);
        fls_model_meta_t meta = {src, seed, "", "mase_scale", scale_txt};
        fls_model_t *m = fls_model_from_lstm(net, "demand", "1", names, NFEAT, mean, std,
                                             &meta, errstr, errstr_size);
        net = NULL; /* owned by the model, or destroyed */
        if (!m)
                goto done;
        rc = fls_model_save(m, out, errstr, errstr_size);
        fls_model_destroy(m);
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        fls_lstm_destroy(net);
        free(xn);
        free(x);
        free(mean);
        free(std);
        fls_rows_free(&rows);
        fls_retail_destroy(r);
        return rc;
}

int fls_task_demand_eval(const char *model_path, const char *data_dir,
                         const fls_range_t *given, const char *export_csv,
                         fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 0);
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NFEAT, errstr, errstr_size) < 0 ||
            fls_model_seq_len(m) != W) {
                if (fls_model_seq_len(m) != W)
                        snprintf(errstr, errstr_size,
                                 "%s: sequence length %zu, %d expected", model_path,
                                 fls_model_seq_len(m), W);
                fls_model_destroy(m);
                return -1;
        }
        const fls_model_meta_t *meta = fls_model_meta(m);
        double scale = NAN;
        if (meta->metric_name && strcmp(meta->metric_name, "mase_scale") == 0)
                scale = strtod(meta->metric_value, NULL);
        if (!(scale > 0)) {
                snprintf(errstr, errstr_size,
                         "%s: no mase_scale in the model file (not a demand model?)",
                         model_path);
                fls_model_destroy(m);
                return -1;
        }
        fls_retail_t *r = fls_retail_load(data_dir, errstr, errstr_size);
        if (!r) {
                fls_model_destroy(m);
                return -1;
        }
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, W * NFEAT);
        size_t *origin = NULL, norigin = 0, cap = 0;
        double *y = NULL, *yhat = NULL, *sn = NULL, *ma = NULL;
        float *pred = NULL;
        float *x = malloc(W * NFEAT * sizeof(*x));
        FILE *ex = NULL;
        if (!x) {
                snprintf(errstr, errstr_size, "demand: out of memory");
                goto done;
        }
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        for (size_t o = W - 1; o + HZ < r->ndays; o++) {
                int in = fls_range_contains(&range, day_time(r, o));
                /* Export: origins whose targets all precede the range train. */
                int before = range.has_from && day_time(r, o + HZ) < range.from;
                if (!in && !(ex && before))
                        continue;
                for (int h = 1; h <= HZ; h++) {
                        fls_task_demand_row(r, o, h, x);
                        float ys[2] = {(float)r->units[o + (size_t)h], (float)scale};
                        fls_export_row(ex, in ? "test" : "train", ys, 2, x, W * NFEAT);
                        if (!in)
                                continue;
                        if (fls_rows_add(&rows, x, ys[0]) < 0)
                                goto nomem;
                }
                if (!in)
                        continue;
                if (norigin == cap) {
                        cap = cap ? cap * 2 : 256;
                        size_t *no = realloc(origin, cap * sizeof(*no));
                        if (!no)
                                goto nomem;
                        origin = no;
                }
                origin[norigin++] = o;
        }
        if (rows.n == 0) {
                snprintf(errstr, errstr_size,
                         "demand: no forecast origin in the range with 7 days of data "
                         "after it");
                goto done;
        }
        y = malloc(rows.n * sizeof(*y));
        yhat = malloc(rows.n * sizeof(*yhat));
        sn = malloc(rows.n * sizeof(*sn));
        ma = malloc(rows.n * sizeof(*ma));
        pred = malloc(rows.n * sizeof(*pred));
        if (!y || !yhat || !sn || !ma || !pred)
                goto nomem;
        if (fls_model_predict(m, rows.x, rows.n, pred, errstr, errstr_size) < 0)
                goto done;
        for (size_t k = 0; k < norigin; k++)
                for (int h = 1; h <= HZ; h++) {
                        size_t i = k * HZ + (size_t)(h - 1), o = origin[k];
                        y[i] = rows.y[i];
                        yhat[i] = fls_task_demand_units(r, o, pred[i]);
                        sn[i] = fls_task_demand_snaive(r, o, h);
                        ma[i] = fls_task_demand_ma28(r, o);
                }
        memset(res, 0, sizeof(*res));
        res->rows = rows.n;
        res->range = range;
        res->metric = "mae_units";
        res->value = fls_metric_mae(y, yhat, rows.n);
        res->metric2 = "mase";
        res->value2 = res->value / scale;
        res->nbaselines = 2;
        res->baseline_name[0] = "seasonal_naive";
        res->baseline[0] = fls_metric_mae(y, sn, rows.n);
        res->baseline2[0] = res->baseline[0] / scale;
        res->baseline_name[1] = "moving_average_28";
        res->baseline[1] = fls_metric_mae(y, ma, rows.n);
        res->baseline2[1] = res->baseline[1] / scale;
        rc = 0;
        goto done;
nomem:
        snprintf(errstr, errstr_size, "demand: out of memory");
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(x);
        free(origin);
        free(y);
        free(yhat);
        free(sn);
        free(ma);
        free(pred);
        fls_rows_free(&rows);
        fls_retail_destroy(r);
        fls_model_destroy(m);
        return rc;
}
