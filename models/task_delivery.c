/*
 * task_delivery: features, baselines and train/eval of the delivery-time model. The
 * rolling features look back over a bounded window of orders sorted by purchase time,
 * so each row costs O(orders in the last 90 days); the history features only use
 * deliveries that had happened before the purchase, as a live system would.
 */
#include "task_delivery.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"

#define DAY 86400.0

enum {
        F_DIST,
        F_SAME_STATE,
        F_CUST_LAT,
        F_CUST_LNG,
        F_SELLER_LAT,
        F_SELLER_LNG,
        F_HOUR,
        F_WEEKDAY,
        F_ITEMS,
        F_MULTI_SELLER,
        F_PRICE,
        F_FREIGHT,
        F_WEIGHT,
        F_VOLUME,
        F_MAX_SIDE,
        F_PHOTOS,
        F_EST_DAYS,
        F_SHIP_LIMIT_DAYS,
        F_LOAD7_CUST_STATE,
        F_LOAD7_SELLER_STATE,
        F_LOAD7_ALL,
        F_SELLER_ORDERS_30D,
        F_HIST_DAYS_CUST_STATE,
        F_HIST_DAYS_SELLER,
        F_HIST_LATE_CUST_STATE,
        NFEAT
};

static const char *const names[NFEAT] = {"distance_km",
                                         "same_state",
                                         "cust_lat",
                                         "cust_lng",
                                         "seller_lat",
                                         "seller_lng",
                                         "purchase_hour",
                                         "purchase_weekday",
                                         "n_items",
                                         "multi_seller",
                                         "price",
                                         "freight",
                                         "weight_g",
                                         "volume_cm3",
                                         "max_side_cm",
                                         "photos",
                                         "olist_estimate_days",
                                         "shipping_limit_days",
                                         "orders_7d_cust_state",
                                         "orders_7d_seller_state",
                                         "orders_7d_all",
                                         "seller_orders_30d",
                                         "hist_days_cust_state",
                                         "hist_days_seller",
                                         "hist_late_cust_state"};

size_t fls_task_delivery_nfeatures(void)
{
        return NFEAT;
}

const char *const *fls_task_delivery_feature_names(void)
{
        return names;
}

double fls_task_delivery_target(const fls_olist_order_t *o)
{
        if (!o->delivered_ok)
                return NAN;
        return (double)(o->delivered - o->purchase) / DAY;
}

static float or_default(double v, double dflt)
{
        return (float)(isfinite(v) ? v : dflt);
}

int fls_task_delivery_features(const fls_olist_t *d, float *x, char *errstr,
                               size_t errstr_size)
{
        (void)errstr;
        (void)errstr_size;
        /* Fallback for the history features before any delivery is known. */
        const double prior_days = 12.0;
        for (size_t i = 0; i < d->n; i++) {
                const fls_olist_order_t *o = &d->orders[i];
                float *f = x + i * NFEAT;
                int64_t t = o->purchase;
                int have_geo = isfinite(o->cust_lat) && isfinite(o->seller_lat);
                f[F_DIST] = have_geo
                                ? (float)fls_haversine_km(o->cust_lat, o->cust_lng,
                                                          o->seller_lat, o->seller_lng)
                                : -1.0f;
                f[F_SAME_STATE] = o->cust_state >= 0 && o->cust_state == o->seller_state;
                /* 0,0 is in the Atlantic, far from any Brazilian zip: a tree splits it
                 * off as "unknown". */
                f[F_CUST_LAT] = or_default(o->cust_lat, 0);
                f[F_CUST_LNG] = or_default(o->cust_lng, 0);
                f[F_SELLER_LAT] = or_default(o->seller_lat, 0);
                f[F_SELLER_LNG] = or_default(o->seller_lng, 0);
                f[F_HOUR] = (float)((t % 86400) / 3600);
                f[F_WEEKDAY] = (float)fls_time_weekday(t);
                f[F_ITEMS] = (float)o->n_items;
                f[F_MULTI_SELLER] = o->n_sellers > 1;
                f[F_PRICE] = (float)o->price;
                f[F_FREIGHT] = (float)o->freight;
                f[F_WEIGHT] = (float)o->weight_g;
                f[F_VOLUME] = (float)o->volume_cm3;
                f[F_MAX_SIDE] = (float)o->max_side_cm;
                f[F_PHOTOS] = (float)o->photos;
                f[F_EST_DAYS] =
                    o->estimated >= 0 ? (float)((o->estimated - t) / DAY) : -1;
                f[F_SHIP_LIMIT_DAYS] =
                    o->shipping_limit >= 0 ? (float)((o->shipping_limit - t) / DAY) : -1;

                int load_cs = 0, load_ss = 0, load_all = 0, seller_30 = 0;
                double sum_cs = 0, sum_seller = 0, all_sum = 0;
                int n_cs = 0, n_seller = 0, late_cs = 0, all_n = 0;
                for (size_t j = i; j-- > 0;) {
                        const fls_olist_order_t *p = &d->orders[j];
                        int64_t age = t - p->purchase;
                        if (age <= 0)
                                continue; /* same second: not strictly earlier */
                        if (age > 90 * 86400)
                                break;
                        if (age <= 7 * 86400) {
                                load_all++;
                                load_cs += p->cust_state == o->cust_state;
                                load_ss += p->seller_state == o->seller_state;
                        }
                        if (age <= 30 * 86400 && p->seller >= 0 && p->seller == o->seller)
                                seller_30++;
                        if (!p->delivered_ok || p->delivered >= t)
                                continue; /* not yet known at purchase time */
                        double days = (double)(p->delivered - p->purchase) / DAY;
                        all_sum += days;
                        all_n++;
                        if (p->cust_state == o->cust_state) {
                                sum_cs += days;
                                n_cs++;
                                late_cs +=
                                    p->estimated >= 0 && p->delivered > p->estimated;
                        }
                        if (p->seller >= 0 && p->seller == o->seller) {
                                sum_seller += days;
                                n_seller++;
                        }
                }
                double base = all_n ? all_sum / all_n : prior_days;
                /* Shrink the group means towards the overall one: a state or seller
                 * with two past orders says little. */
                const double k = 5.0;
                f[F_LOAD7_CUST_STATE] = (float)load_cs;
                f[F_LOAD7_SELLER_STATE] = (float)load_ss;
                f[F_LOAD7_ALL] = (float)load_all;
                f[F_SELLER_ORDERS_30D] = (float)seller_30;
                f[F_HIST_DAYS_CUST_STATE] = (float)((sum_cs + k * base) / (n_cs + k));
                f[F_HIST_DAYS_SELLER] = (float)((sum_seller + k * base) / (n_seller + k));
                f[F_HIST_LATE_CUST_STATE] = (float)((late_cs + k * 0.07) / (n_cs + k));
        }
        return 0;
}

/* Loads the data and computes every order's features. */
static float *load_features(const char *data_dir, fls_olist_t **out, char *errstr,
                            size_t errstr_size)
{
        fls_olist_t *d = fls_olist_load(data_dir, errstr, errstr_size);
        if (!d)
                return NULL;
        float *x = malloc(d->n * NFEAT * sizeof(*x));
        if (!x) {
                snprintf(errstr, errstr_size, "delivery: out of memory");
                fls_olist_destroy(d);
                return NULL;
        }
        if (fls_task_delivery_features(d, x, errstr, errstr_size) < 0) {
                free(x);
                fls_olist_destroy(d);
                return NULL;
        }
        *out = d;
        return x;
}

static void range_text(const fls_range_t *r, char *buf, size_t size)
{
        char a[32] = "start", b[32] = "end";
        if (r->has_from)
                fls_time_format(r->from, a, sizeof(a));
        if (r->has_until)
                fls_time_format(r->until, b, sizeof(b));
        snprintf(buf, size, "[%s, %s)", a, b);
}

static int64_t split_time(void)
{
        int64_t t = 0;
        fls_time_parse(FLS_DELIVERY_SPLIT, &t);
        return t;
}

/* The forest is fitted to log1p(days), whose tree means are closer to the median the
 * MAE rewards than means of the skewed raw days; the leaves are then mapped back with
 * expm1 so that the saved model still outputs days. */
static fls_forest_t *leaves_expm1(fls_forest_t *f, char *errstr, size_t errstr_size)
{
        size_t nn;
        const fls_forest_node_t *nodes = fls_forest_nodes(f, &nn);
        fls_forest_node_t *copy = malloc(nn * sizeof(*copy));
        if (!copy) {
                snprintf(errstr, errstr_size, "delivery: out of memory");
                fls_forest_destroy(f);
                return NULL;
        }
        memcpy(copy, nodes, nn * sizeof(*copy));
        for (size_t i = 0; i < nn; i++)
                if (copy[i].feature < 0)
                        copy[i].value = expm1f(copy[i].value);
        fls_forest_t *g = fls_forest_from_nodes(
            FLS_FOREST_REGRESSOR, fls_forest_nfeatures(f), fls_forest_roots(f),
            fls_forest_ntrees(f), copy, nn, errstr, errstr_size);
        free(copy);
        fls_forest_destroy(f);
        return g;
}

int fls_task_delivery_train(const char *data_dir, const fls_range_t *given, uint64_t seed,
                            const char *out, const char *export_csv, char *errstr,
                            size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 1);
        fls_olist_t *d = NULL;
        float *x = load_features(data_dir, &d, errstr, errstr_size);
        if (!x)
                return -1;
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, NFEAT);
        FILE *ex = NULL;
        if (export_csv &&
            !(ex = fls_export_open(export_csv, names, NFEAT, "y", errstr, errstr_size)))
                goto done;
        double sum = 0;
        for (size_t i = 0; i < d->n; i++) {
                const fls_olist_order_t *o = &d->orders[i];
                if (!o->delivered_ok || !fls_range_contains(&range, o->purchase))
                        continue;
                float y = (float)fls_task_delivery_target(o);
                if (fls_rows_add(&rows, x + i * NFEAT, log1pf(y)) < 0) {
                        snprintf(errstr, errstr_size, "delivery: out of memory");
                        goto done;
                }
                fls_export_row(ex, "train", &y, 1, x + i * NFEAT, NFEAT);
                sum += y;
        }
        if (rows.n < 20) {
                snprintf(errstr, errstr_size,
                         "delivery: only %zu delivered orders in the training range",
                         rows.n);
                goto done;
        }
        fls_forest_opts_t fo;
        fls_forest_opts_default(&fo, FLS_FOREST_REGRESSOR);
        fo.n_trees = 200;
        fo.max_depth = 14;
        fo.min_samples_leaf = 10;
        fo.mtry = NFEAT / 3;
        fo.seed = seed;
        fls_forest_t *f = fls_forest_train(FLS_FOREST_REGRESSOR, rows.x, rows.y, rows.n,
                                           NFEAT, &fo, errstr, errstr_size);
        if (!f || !(f = leaves_expm1(f, errstr, errstr_size)))
                goto done;
        char src[512], rt[128], mean_txt[64];
        range_text(&range, rt, sizeof(rt));
        snprintf(src, sizeof(src),
                 "olist-brazilian-ecommerce, delivered orders purchased in %s (%zu rows)",
                 rt, rows.n);
        snprintf(mean_txt, sizeof(mean_txt), "%.6f", sum / (double)rows.n);
        fls_model_meta_t meta = {src, seed, "", "train_mean_days", mean_txt};
        fls_model_t *m = fls_model_from_forest(f, "delivery", "1", names, NFEAT, NULL,
                                               NULL, &meta, errstr, errstr_size);
        if (!m)
                goto done;
        rc = fls_model_save(m, out, errstr, errstr_size);
        fls_model_destroy(m);
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        fls_rows_free(&rows);
        free(x);
        fls_olist_destroy(d);
        return rc;
}

int fls_task_delivery_eval(const char *model_path, const char *data_dir,
                           const fls_range_t *given, const char *export_csv,
                           fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_range_t range = fls_range_default(given, split_time(), 0);
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NFEAT, errstr, errstr_size) < 0) {
                fls_model_destroy(m);
                return -1;
        }
        const fls_model_meta_t *meta = fls_model_meta(m);
        double train_mean = NAN;
        if (meta->metric_name && strcmp(meta->metric_name, "train_mean_days") == 0)
                train_mean = strtod(meta->metric_value, NULL);
        if (!isfinite(train_mean)) {
                snprintf(
                    errstr, errstr_size,
                    "%s: no train_mean_days in the model file (not a delivery model?)",
                    model_path);
                fls_model_destroy(m);
                return -1;
        }
        fls_olist_t *d = NULL;
        float *x = load_features(data_dir, &d, errstr, errstr_size);
        if (!x) {
                fls_model_destroy(m);
                return -1;
        }
        int rc = -1;
        fls_rows_t rows;
        fls_rows_init(&rows, NFEAT);
        double *y = NULL, *yhat = NULL, *est = NULL, *mean = NULL;
        float *pred = NULL;
        FILE *ex = NULL;
        if (export_csv &&
            !(ex = fls_export_open(export_csv, names, NFEAT, "y", errstr, errstr_size)))
                goto done;
        size_t nest = 0;
        for (size_t i = 0; i < d->n; i++) {
                const fls_olist_order_t *o = &d->orders[i];
                if (!o->delivered_ok)
                        continue;
                float t = (float)fls_task_delivery_target(o);
                if (!fls_range_contains(&range, o->purchase)) {
                        if (range.has_from && o->purchase < range.from)
                                fls_export_row(ex, "train", &t, 1, x + i * NFEAT, NFEAT);
                        continue;
                }
                fls_export_row(ex, "test", &t, 1, x + i * NFEAT, NFEAT);
                if (fls_rows_add(&rows, x + i * NFEAT, t) < 0) {
                        snprintf(errstr, errstr_size, "delivery: out of memory");
                        goto done;
                }
        }
        if (rows.n == 0) {
                snprintf(errstr, errstr_size,
                         "delivery: no delivered orders purchased in the range");
                goto done;
        }
        y = malloc(rows.n * sizeof(*y));
        yhat = malloc(rows.n * sizeof(*yhat));
        est = malloc(rows.n * sizeof(*est));
        mean = malloc(rows.n * sizeof(*mean));
        pred = malloc(rows.n * sizeof(*pred));
        if (!y || !yhat || !est || !mean || !pred) {
                snprintf(errstr, errstr_size, "delivery: out of memory");
                goto done;
        }
        if (fls_model_predict(m, rows.x, rows.n, pred, errstr, errstr_size) < 0)
                goto done;
        double *yest = malloc(rows.n * sizeof(*yest));
        if (!yest) {
                snprintf(errstr, errstr_size, "delivery: out of memory");
                goto done;
        }
        for (size_t i = 0; i < rows.n; i++) {
                y[i] = rows.y[i];
                yhat[i] = pred[i];
                mean[i] = train_mean;
                float e = rows.x[i * NFEAT + F_EST_DAYS];
                if (e >= 0) {
                        est[nest] = e;
                        yest[nest++] = rows.y[i];
                }
        }
        memset(res, 0, sizeof(*res));
        res->rows = rows.n;
        res->range = range;
        res->metric = "mae_days";
        res->value = fls_metric_mae(y, yhat, rows.n);
        res->nbaselines = 2;
        res->baseline_name[0] = "train_mean";
        res->baseline[0] = fls_metric_mae(y, mean, rows.n);
        res->baseline_name[1] = "olist_estimate";
        res->baseline[1] = fls_metric_mae(yest, est, nest);
        free(yest);
        rc = 0;
done:
        if (fls_export_close(ex, export_csv, rc < 0 ? NULL : errstr,
                             rc < 0 ? 0 : errstr_size) < 0)
                rc = -1;
        free(y);
        free(yhat);
        free(est);
        free(mean);
        free(pred);
        fls_rows_free(&rows);
        free(x);
        fls_olist_destroy(d);
        fls_model_destroy(m);
        return rc;
}
