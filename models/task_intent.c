/*
 * task_intent: labels, features, the logistic-regression baseline and train/eval of
 * the purchase-intent model. Each event's sequence is built by walking back the
 * user's previous-event links, so the features can only see the user's past.
 */
#include "task_intent.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"

#define T FLS_INTENT_SEQ

enum {
        F_PAD,
        F_VIEW,
        F_CART,
        F_REMOVE,
        F_PURCHASE,
        F_LOG_PRICE,
        F_LOG_GAP,
        F_LOG_AGE,
        F_SAME_PRODUCT,
        F_LOG_VIEWS,
        F_LOG_CARTS,
        F_LOG_PURCHASES,
        NFEAT
};

static const char *const names[NFEAT] = {
    "pad",          "view",      "cart",      "remove_from_cart",
    "purchase",     "log_price", "log_gap_s", "log_age_s",
    "same_product", "log_views", "log_carts", "log_purchases"};

/* The baseline's inputs: the running counts of the current step. */
static const int count_cols[] = {F_LOG_VIEWS, F_LOG_CARTS, F_LOG_PURCHASES};
#define NCOUNT 3

size_t fls_task_intent_nfeatures(void)
{
        return NFEAT;
}

const char *const *fls_task_intent_feature_names(void)
{
        return names;
}

int fls_task_intent_labels(const fls_rees46_t *d, int *label, int *known, char *errstr,
                           size_t errstr_size)
{
        /* next[u]: the earliest purchase time of user u among the events already
         * scanned (all later than the current group), -1 if none. */
        int64_t *next = malloc((d->nusers ? d->nusers : 1) * sizeof(*next));
        if (!next) {
                snprintf(errstr, errstr_size, "intent: out of memory");
                return -1;
        }
        for (size_t u = 0; u < d->nusers; u++)
                next[u] = -1;
        size_t end = d->n;
        while (end > 0) {
                /* Events sharing one second form a group: a purchase in the same
                 * second is not strictly after, so the group is labelled before its
                 * own purchases are recorded. */
                size_t start = end - 1;
                while (start > 0 && d->ev[start - 1].t == d->ev[end - 1].t)
                        start--;
                for (size_t i = start; i < end; i++) {
                        const fls_rees46_event_t *e = &d->ev[i];
                        int64_t p = next[e->user];
                        label[i] = p > e->t && p <= e->t + FLS_INTENT_HORIZON;
                        known[i] = e->t + FLS_INTENT_HORIZON <= d->last_t;
                }
                for (size_t i = start; i < end; i++)
                        if (d->ev[i].type == FLS_EV_PURCHASE)
                                next[d->ev[i].user] = d->ev[i].t;
                end = start;
        }
        free(next);
        return 0;
}

int fls_task_intent_features(const fls_rees46_t *d, float *x, char *errstr,
                             size_t errstr_size)
{
        size_t nu = d->nusers ? d->nusers : 1;
        long *last = malloc(nu * sizeof(*last));
        long *prev = malloc((d->n ? d->n : 1) * sizeof(*prev));
        float(*cnt)[3] = malloc((d->n ? d->n : 1) * sizeof(*cnt));
        float(*run)[3] = calloc(nu, sizeof(*run));
        if (!last || !prev || !cnt || !run) {
                free(last);
                free(prev);
                free(cnt);
                free(run);
                snprintf(errstr, errstr_size, "intent: out of memory");
                return -1;
        }
        for (size_t u = 0; u < nu; u++)
                last[u] = -1;
        for (size_t i = 0; i < d->n; i++) {
                const fls_rees46_event_t *e = &d->ev[i];
                prev[i] = last[e->user];
                last[e->user] = (long)i;
                int k = e->type == FLS_EV_VIEW ? 0 : e->type == FLS_EV_PURCHASE ? 2 : 1;
                if (e->type != FLS_EV_REMOVE)
                        run[e->user][k] += 1;
                memcpy(cnt[i], run[e->user], sizeof(cnt[i]));
        }
        for (size_t i = 0; i < d->n; i++) {
                float *row = x + i * T * NFEAT;
                memset(row, 0, T * NFEAT * sizeof(*row));
                long j = (long)i;
                /* Fill from the last step (the current event) backwards. */
                for (int s = T - 1; s >= 0; s--) {
                        float *f = row + (size_t)s * NFEAT;
                        if (j < 0) {
                                f[F_PAD] = 1;
                                continue;
                        }
                        const fls_rees46_event_t *e = &d->ev[j];
                        f[F_VIEW + e->type] = 1;
                        f[F_LOG_PRICE] = isfinite(e->price) ? (float)log1p(e->price) : 0;
                        f[F_LOG_GAP] =
                            prev[j] >= 0 ? (float)log1p((double)(e->t - d->ev[prev[j]].t))
                                         : -1;
                        f[F_LOG_AGE] = (float)log1p((double)(d->ev[i].t - e->t));
                        f[F_SAME_PRODUCT] = e->product == d->ev[i].product;
                        f[F_LOG_VIEWS] = log1pf(cnt[j][0]);
                        f[F_LOG_CARTS] = log1pf(cnt[j][1]);
                        f[F_LOG_PURCHASES] = log1pf(cnt[j][2]);
                        j = prev[j];
                }
        }
        free(last);
        free(prev);
        free(cnt);
        free(run);
        return 0;
}

static double sigmoid(double z)
{
        return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

void fls_logreg_fit(const float *x, const int *y, size_t n, size_t nf, size_t iters,
                    double lr, double *w, double *mean, double *std)
{
        for (size_t f = 0; f < nf; f++) {
                double s = 0, s2 = 0;
                for (size_t i = 0; i < n; i++) {
                        s += x[i * nf + f];
                        s2 += (double)x[i * nf + f] * x[i * nf + f];
                }
                mean[f] = n ? s / (double)n : 0;
                double var = n ? s2 / (double)n - mean[f] * mean[f] : 0;
                std[f] = var > 1e-12 ? sqrt(var) : 1;
        }
        memset(w, 0, (nf + 1) * sizeof(*w));
        double *g = calloc(nf + 1, sizeof(*g));
        if (!g || n == 0) {
                free(g);
                return; /* w stays 0: a constant 0.5, still a valid (useless) model */
        }
        for (size_t it = 0; it < iters; it++) {
                memset(g, 0, (nf + 1) * sizeof(*g));
                for (size_t i = 0; i < n; i++) {
                        double z = w[nf];
                        for (size_t f = 0; f < nf; f++)
                                z += w[f] * (x[i * nf + f] - mean[f]) / std[f];
                        double err = sigmoid(z) - y[i];
                        for (size_t f = 0; f < nf; f++)
                                g[f] += err * (x[i * nf + f] - mean[f]) / std[f];
                        g[nf] += err;
                }
                for (size_t f = 0; f <= nf; f++)
                        w[f] -= lr * g[f] / (double)n;
        }
        free(g);
}

double fls_logreg_predict(const float *x, size_t nf, const double *w, const double *mean,
                          const double *std)
{
        double z = w[nf];
        for (size_t f = 0; f < nf; f++)
                z += w[f] * (x[f] - mean[f]) / std[f];
        return sigmoid(z);
}

static int64_t split_time(void)
{
        int64_t t = 0;
        fls_time_parse(FLS_INTENT_SPLIT, &t);
        return t;
}

typedef struct {
        fls_rees46_t *d;
        float *x;
        int *label, *known;
} data_t;

static void data_free(data_t *dt)
{
        fls_rees46_destroy(dt->d);
        free(dt->x);
        free(dt->label);
        free(dt->known);
}

static int data_load(const char *dir, data_t *dt, char *errstr, size_t errstr_size)
{
        memset(dt, 0, sizeof(*dt));
        if (!(dt->d = fls_rees46_load(dir, errstr, errstr_size)))
                return -1;
        size_t n = dt->d->n;
        dt->x = malloc(n * T * NFEAT * sizeof(*dt->x));
        dt->label = malloc(n * sizeof(int));
        dt->known = malloc(n * sizeof(int));
        if (!dt->x || !dt->label || !dt->known) {
                snprintf(errstr, errstr_size, "intent: out of memory");
                data_free(dt);
                return -1;
        }
        if (fls_task_intent_labels(dt->d, dt->label, dt->known, errstr, errstr_size) <
                0 ||
            fls_task_intent_features(dt->d, dt->x, errstr, errstr_size) < 0) {
                data_free(dt);
                return -1;
        }
        return 0;
}

static FILE *export_open(const char *path, char *errstr, size_t errstr_size)
{
        if (!path)
                return NULL;
        char cols[T * NFEAT][48];
        const char *ptr[T * NFEAT];
        for (size_t s = 0, k = 0; s < T; s++)
                for (size_t f = 0; f < NFEAT; f++, k++) {
                        snprintf(cols[k], sizeof(cols[k]), "t%zu_%s", s, names[f]);
                        ptr[k] = cols[k];
                }
        return fls_export_open(path, ptr, T * NFEAT, "y", errstr, errstr_size);
}

int fls_task_intent_train(const char *data_dir, const fls_range_t *given, uint64_t seed,
                          const char *out, const char *export_csv, char *errstr,
                          size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 1);
        data_t dt;
        if (data_load(data_dir, &dt, errstr, errstr_size) < 0)
                return -1;
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, T * NFEAT);
        float mean[NFEAT], std[NFEAT];
        float *xn = NULL;
        fls_lstm_t *net = NULL;
        FILE *ex = NULL;
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        size_t npos = 0;
        for (size_t i = 0; i < dt.d->n; i++) {
                if (!dt.known[i] || !fls_range_contains(&range, dt.d->ev[i].t))
                        continue;
                float y = (float)dt.label[i];
                if (fls_rows_add(&rows, dt.x + i * T * NFEAT, y) < 0) {
                        snprintf(errstr, errstr_size, "intent: out of memory");
                        goto done;
                }
                fls_export_row(ex, "train", &y, 1, dt.x + i * T * NFEAT, T * NFEAT);
                npos += dt.label[i] != 0;
        }
        if (npos < 5 || rows.n - npos < 5) {
                snprintf(errstr, errstr_size,
                         "intent: the training range has %zu positive and %zu negative "
                         "events (need 5 of each)",
                         npos, rows.n - npos);
                goto done;
        }
        fls_norm_fit(rows.x, rows.n * T, NFEAT, mean, std);
        xn = malloc(rows.n * T * NFEAT * sizeof(*xn));
        if (!xn) {
                snprintf(errstr, errstr_size, "intent: out of memory");
                goto done;
        }
        memcpy(xn, rows.x, rows.n * T * NFEAT * sizeof(*xn));
        fls_norm_apply(xn, rows.n * T, NFEAT, mean, std);
        net = fls_lstm_new(FLS_LSTM_CLASSIFIER, NFEAT, 4, T, seed, errstr, errstr_size);
        if (!net)
                goto done;
        fls_lstm_train_opts_t to;
        fls_lstm_train_opts_default(&to);
        /* A tiny net trained briefly: with ~120 positive events, larger nets, longer
         * training and class re-weighting all overfitted on a validation split
         * (train before 02:21, score 02:21-02:24). */
        to.epochs = 10;
        to.batch_size = 64;
        to.learning_rate = 2e-3f;
        to.pos_weight = 1;
        to.seed = seed;
        if (fls_lstm_train(net, xn, rows.y, rows.n, &to, NULL, errstr, errstr_size) < 0)
                goto done;
        char src[256];
        snprintf(src, sizeof(src),
                 "rees46-ecommerce-behavior-sample, %zu events (%zu positive)", rows.n,
                 npos);
        fls_model_meta_t meta = {src, seed, "", "", ""};
        fls_model_t *m = fls_model_from_lstm(net, "intent", "1", names, NFEAT, mean, std,
                                             &meta, errstr, errstr_size);
        net = NULL;
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
        fls_rows_free(&rows);
        data_free(&dt);
        return rc;
}

/* The baseline's row: the current step's running counts. */
static void count_row(const float *seq, float *out)
{
        for (int k = 0; k < NCOUNT; k++)
                out[k] = seq[(T - 1) * NFEAT + count_cols[k]];
}

int fls_task_intent_eval(const char *model_path, const char *data_dir,
                         const fls_range_t *given, const char *export_csv,
                         fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 0);
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NFEAT, errstr, errstr_size) < 0 ||
            fls_model_seq_len(m) != T) {
                if (fls_model_seq_len(m) != T)
                        snprintf(errstr, errstr_size,
                                 "%s: sequence length %zu, %d expected", model_path,
                                 fls_model_seq_len(m), T);
                fls_model_destroy(m);
                return -1;
        }
        data_t dt;
        if (data_load(data_dir, &dt, errstr, errstr_size) < 0) {
                fls_model_destroy(m);
                return -1;
        }
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, T * NFEAT);
        size_t n = dt.d->n, ntest = 0, ntrain = 0;
        float *cx_train = malloc(n * NCOUNT * sizeof(float));
        int *y_train = malloc(n * sizeof(int)), *y_test = malloc(n * sizeof(int));
        double *p_model = malloc(n * sizeof(double)),
               *p_base = malloc(n * sizeof(double));
        float *pred = malloc(n * sizeof(float));
        FILE *ex = NULL;
        if (!cx_train || !y_train || !y_test || !p_model || !p_base || !pred) {
                snprintf(errstr, errstr_size, "intent: out of memory");
                goto done;
        }
        if (export_csv && !(ex = export_open(export_csv, errstr, errstr_size)))
                goto done;
        for (size_t i = 0; i < n; i++) {
                if (!dt.known[i])
                        continue;
                const float *seq = dt.x + i * T * NFEAT;
                float y = (float)dt.label[i];
                if (fls_range_contains(&range, dt.d->ev[i].t)) {
                        fls_export_row(ex, "test", &y, 1, seq, T * NFEAT);
                        if (fls_rows_add(&rows, seq, y) < 0) {
                                snprintf(errstr, errstr_size, "intent: out of memory");
                                goto done;
                        }
                        y_test[ntest++] = dt.label[i];
                } else if (range.has_from && dt.d->ev[i].t < range.from) {
                        fls_export_row(ex, "train", &y, 1, seq, T * NFEAT);
                        count_row(seq, cx_train + ntrain * NCOUNT);
                        y_train[ntrain++] = dt.label[i];
                }
        }
        if (ntest == 0) {
                snprintf(
                    errstr, errstr_size,
                    "intent: no event in the range with 10 minutes of data after it");
                goto done;
        }
        if (fls_model_predict(m, rows.x, rows.n, pred, errstr, errstr_size) < 0)
                goto done;
        double w[NCOUNT + 1], bm[NCOUNT], bs[NCOUNT];
        fls_logreg_fit(cx_train, y_train, ntrain, NCOUNT, 500, 0.5, w, bm, bs);
        for (size_t i = 0; i < ntest; i++) {
                float c[NCOUNT];
                count_row(rows.x + i * T * NFEAT, c);
                p_model[i] = pred[i];
                p_base[i] = fls_logreg_predict(c, NCOUNT, w, bm, bs);
        }
        memset(res, 0, sizeof(*res));
        res->rows = ntest;
        res->range = range;
        res->metric = "roc_auc";
        res->value = fls_metric_auc(p_model, y_test, ntest);
        res->nbaselines = 1;
        res->baseline_name[0] = "logreg_counts";
        res->baseline[0] = ntrain ? fls_metric_auc(p_base, y_test, ntest) : NAN;
        rc = 0;
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(cx_train);
        free(y_train);
        free(y_test);
        free(p_model);
        free(p_base);
        free(pred);
        fls_rows_free(&rows);
        data_free(&dt);
        fls_model_destroy(m);
        return rc;
}
