/*
 * task_inventory: builds the rows of the stock-needed regression from a simulator run
 * (with forecasts of the demand LSTM found next to the model file), fits it with
 * ridge-regularised least squares and evaluates it against two rate baselines. See
 * task_inventory.h. Files only.
 */
#include "task_inventory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"
#include "task_demand_sim.h"

#define NF        FLS_INV_NF
#define MIN_COVER 2
#define MAX_COVER 15

static const char *const names[NF] = {"fc_x_cover",  "r1_x_cover",  "r5_x_cover",
                                      "r15_x_cover", "r60_x_cover", "trend_x_cover",
                                      "cover"};

const char *const *fls_inv_feature_names(void)
{
        return names;
}

void fls_inv_row(float fc5, float r1, float r5, float r15, float r60, float cover,
                 float *x)
{
        x[0] = fc5 / FLS_DSIM_H * cover;
        x[1] = r1 * cover;
        x[2] = r5 * cover;
        x[3] = r15 * cover;
        x[4] = r60 * cover;
        x[5] = (r5 - r15) * cover;
        x[6] = cover;
}

static uint64_t splitmix(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* The demand model next to `path` (same folder), checked against its row layout. */
static fls_model_t *demand_model(const char *path, char *errstr, size_t errstr_size)
{
        char dm[4096];
        const char *slash = strrchr(path, '/');
        fls_model_t *m;

        if (slash)
                snprintf(dm, sizeof(dm), "%.*s/demand-sim.flsm", (int)(slash - path),
                         path);
        else
                snprintf(dm, sizeof(dm), "demand-sim.flsm");
        m = fls_model_load(dm, errstr, errstr_size);
        if (!m)
                return NULL;
        if (fls_model_check_features(m, fls_dsim_feature_names(), FLS_DSIM_NF, errstr,
                                     errstr_size) < 0 ||
            fls_model_seq_len(m) != FLS_DSIM_T) {
                if (fls_model_seq_len(m) != FLS_DSIM_T)
                        snprintf(errstr, errstr_size, "%s: not a demand-sim model", dm);
                fls_model_destroy(m);
                return NULL;
        }
        return m;
}

/* Rows of a run: inventory features and target, plus the two baselines' values. */
typedef struct {
        fls_rows_t rows;
        double *base_fc, *base_r15;
} inv_rows_t;

static int build(const fls_dsim_data_t *d, fls_model_t *dm, uint64_t seed,
                 inv_rows_t *out, char *errstr, size_t errstr_size)
{
        fls_rows_t lr;
        size_t n = 0, cap = 0, k;
        uint32_t *cell = NULL;
        size_t *origin = NULL;
        float *cover = NULL, *fc = NULL, x[FLS_DSIM_T * FLS_DSIM_NF], row[NF];
        uint64_t rng = seed;
        int rc = -1;

        fls_rows_init(&lr, FLS_DSIM_T * FLS_DSIM_NF);
        for (uint32_t c = 0; c < d->ncells; c++)
                for (size_t i = FLS_DSIM_T; i + MIN_COVER <= d->nivl; i++) {
                        float cv = (float)(MIN_COVER +
                                           splitmix(&rng) % (MAX_COVER - MIN_COVER + 1));
                        if (i + (size_t)cv > d->nivl ||
                            !fls_dsim_active(d, c, i, (size_t)cv))
                                continue;
                        if (n == cap) {
                                cap = cap ? cap * 2 : 4096;
                                uint32_t *nc = realloc(cell, cap * sizeof(*nc));
                                if (nc)
                                        cell = nc;
                                size_t *no = realloc(origin, cap * sizeof(*no));
                                if (no)
                                        origin = no;
                                float *ncv = realloc(cover, cap * sizeof(*ncv));
                                if (ncv)
                                        cover = ncv;
                                if (!nc || !no || !ncv)
                                        goto nomem;
                        }
                        fls_dsim_data_row(d, c, i, x);
                        if (fls_rows_add(&lr, x, 0) < 0)
                                goto nomem;
                        cell[n] = c;
                        origin[n] = i;
                        cover[n] = cv;
                        n++;
                }
        if (n == 0) {
                snprintf(errstr, errstr_size, "inventory: no active rows");
                goto done;
        }
        fc = malloc(n * sizeof(*fc));
        out->base_fc = malloc(n * sizeof(double));
        out->base_r15 = malloc(n * sizeof(double));
        if (!fc || !out->base_fc || !out->base_r15)
                goto nomem;
        /* One predict call over every row, as the consumer scores a batch. */
        if (fls_model_predict(dm, lr.x, n, fc, errstr, errstr_size) < 0)
                goto done;
        for (k = 0; k < n; k++) {
                uint32_t c = cell[k];
                size_t i = origin[k];
                float f5 = fc[k] > 0 ? fc[k] : 0;
                float r1 = (float)fls_dsim_placed(d, c, i, 1);
                float r5 = (float)(fls_dsim_placed(d, c, i, 5) / 5);
                float r15 = (float)(fls_dsim_placed(d, c, i, 15) / 15);
                float r60 = (float)(fls_dsim_placed(d, c, i, 60) / 60);
                fls_inv_row(f5, r1, r5, r15, r60, cover[k], row);
                if (fls_rows_add(&out->rows, row,
                                 (float)fls_dsim_demand(d, c, i, (size_t)cover[k])) < 0)
                        goto nomem;
                out->base_fc[k] = row[0];
                out->base_r15[k] = row[3];
        }
        rc = 0;
        goto done;
nomem:
        snprintf(errstr, errstr_size, "inventory: out of memory");
done:
        free(cell);
        free(origin);
        free(cover);
        free(fc);
        fls_rows_free(&lr);
        return rc;
}

static double rmse(const double *y, const double *yh, size_t n)
{
        double s = 0;
        for (size_t k = 0; k < n; k++)
                s += (y[k] - yh[k]) * (y[k] - yh[k]);
        return n ? sqrt(s / (double)n) : NAN;
}

static void inv_free(inv_rows_t *r)
{
        fls_rows_free(&r->rows);
        free(r->base_fc);
        free(r->base_r15);
}

int fls_task_inventory_train(const char *data_dir, const fls_range_t *range,
                             uint64_t seed, const char *out, const char *export_csv,
                             char *errstr, size_t errstr_size)
{
        fls_model_t *dm = demand_model(out, errstr, errstr_size);
        fls_dsim_data_t *d = NULL;
        inv_rows_t r;
        float mean[NF], std[NF], *xn = NULL;
        fls_linreg_t *lr;
        fls_model_t *m;
        FILE *ex = NULL;
        int rc = -1;

        (void)range;
        memset(&r, 0, sizeof(r));
        fls_rows_init(&r.rows, NF);
        if (!dm)
                return -1;
        d = fls_dsim_load(data_dir, errstr, errstr_size);
        if (!d || build(d, dm, seed, &r, errstr, errstr_size) < 0)
                goto done;
        if (export_csv) {
                ex = fls_export_open(export_csv, names, NF, "y", errstr, errstr_size);
                if (!ex)
                        goto done;
                for (size_t k = 0; k < r.rows.n; k++)
                        fls_export_row(ex, "train", &r.rows.y[k], 1, &r.rows.x[k * NF],
                                       NF);
        }
        fls_norm_fit(r.rows.x, r.rows.n, NF, mean, std);
        xn = malloc(r.rows.n * NF * sizeof(*xn));
        if (!xn) {
                snprintf(errstr, errstr_size, "inventory: out of memory");
                goto done;
        }
        memcpy(xn, r.rows.x, r.rows.n * NF * sizeof(*xn));
        fls_norm_apply(xn, r.rows.n, NF, mean, std);
        lr = fls_linreg_fit(xn, r.rows.y, r.rows.n, NF, 1.0, errstr, errstr_size);
        if (!lr)
                goto done;
        {
                char src[512];
                fls_model_meta_t meta;
                snprintf(src, sizeof(src),
                         "simulator run (%u skus x %u warehouses, %zu intervals), %zu "
                         "rows, forecasts of %s@%s",
                         d->nskus, d->nwh, d->nivl, r.rows.n, fls_model_name(dm),
                         fls_model_version(dm));
                meta = (fls_model_meta_t){src, seed, "", "", ""};
                m = fls_model_from_linreg(lr, "inventory", "1", names, NF, mean, std,
                                          &meta, errstr, errstr_size);
        }
        if (!m)
                goto done;
        rc = fls_model_save(m, out, errstr, errstr_size);
        fls_model_destroy(m);
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(xn);
        inv_free(&r);
        fls_dsim_destroy(d);
        fls_model_destroy(dm);
        return rc;
}

int fls_task_inventory_eval(const char *model_path, const char *data_dir,
                            const fls_range_t *range, const char *export_csv,
                            fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        fls_model_t *dm = NULL;
        fls_dsim_data_t *d = NULL;
        inv_rows_t r;
        double *y = NULL, *yh = NULL;
        float *pred = NULL;
        FILE *ex = NULL;
        int rc = -1;

        memset(&r, 0, sizeof(r));
        fls_rows_init(&r.rows, NF);
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NF, errstr, errstr_size) < 0 ||
            !(dm = demand_model(model_path, errstr, errstr_size)))
                goto done;
        d = fls_dsim_load(data_dir, errstr, errstr_size);
        if (!d || build(d, dm, 0x5eed, &r, errstr, errstr_size) < 0)
                goto done;
        y = malloc(r.rows.n * sizeof(*y));
        yh = malloc(r.rows.n * sizeof(*yh));
        pred = malloc(r.rows.n * sizeof(*pred));
        if (!y || !yh || !pred) {
                snprintf(errstr, errstr_size, "inventory: out of memory");
                goto done;
        }
        if (fls_model_predict(m, r.rows.x, r.rows.n, pred, errstr, errstr_size) < 0)
                goto done;
        if (export_csv) {
                ex = fls_export_open(export_csv, names, NF, "y", errstr, errstr_size);
                if (!ex)
                        goto done;
        }
        for (size_t k = 0; k < r.rows.n; k++) {
                y[k] = r.rows.y[k];
                yh[k] = pred[k] > 0 ? pred[k] : 0;
                fls_export_row(ex, "test", &r.rows.y[k], 1, &r.rows.x[k * NF], NF);
        }
        memset(res, 0, sizeof(*res));
        res->rows = r.rows.n;
        res->metric = "mae_units_cover";
        res->value = fls_metric_mae(y, yh, r.rows.n);
        res->nbaselines = 2;
        res->baseline_name[0] = "lstm_rate_x_cover";
        res->baseline[0] = fls_metric_mae(y, r.base_fc, r.rows.n);
        res->baseline_name[1] = "rate15_x_cover";
        res->baseline[1] = fls_metric_mae(y, r.base_r15, r.rows.n);
        /* Need is a mean (what a reorder must cover on average): RMSE is the metric
         * the least-squares fit optimises, MAE the one the rate baselines favour on
         * this skewed demand; both are reported. */
        res->metric2 = "rmse_units_cover";
        res->value2 = rmse(y, yh, r.rows.n);
        res->baseline2[0] = rmse(y, r.base_fc, r.rows.n);
        res->baseline2[1] = rmse(y, r.base_r15, r.rows.n);
        res->range = *range;
        rc = 0;
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(y);
        free(yh);
        free(pred);
        inv_free(&r);
        fls_dsim_destroy(d);
        fls_model_destroy(dm);
        fls_model_destroy(m);
        return rc;
}
