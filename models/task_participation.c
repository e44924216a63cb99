/*
 * task_participation: the participation features shared with the clickstream
 * consumer, an independent computation of them over the simulator's events (windows
 * walked back per user), and train/eval of the forest.
 */
#include "task_participation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"
#include "task_intent.h"
#include "task_intent_sim.h"

enum {
        P_N0,
        P_W5_VIEW = 6,
        P_W5_CART,
        P_W30_VIEW,
        P_W30_CLICK,
        P_W30_CART,
        P_W30_PURCHASE,
        P_CART_VALUE,
        P_SINCE_LAST,
        P_SINCE_PURCHASE,
        P_AVG_PRICE,
        P_PRE_VIEWS,
        NPF
};

static const char *const pnames[NPF] = {"log_n_view",
                                        "log_n_click",
                                        "log_n_search",
                                        "log_n_cart_add",
                                        "log_n_cart_remove",
                                        "log_n_purchase",
                                        "w5_view",
                                        "w5_cart_add",
                                        "w30_view",
                                        "w30_click",
                                        "w30_cart_add",
                                        "w30_purchase",
                                        "log_cart_value",
                                        "log_since_last_s",
                                        "log_since_purchase_s",
                                        "log_avg_view_price",
                                        "log_pre_views"};

size_t fls_part_nfeatures(void)
{
        return NPF;
}

const char *const *fls_part_feature_names(void)
{
        return pnames;
}

static float lg(double v)
{
        return v >= 0 ? (float)log1p(v) : -1.0f;
}

void fls_part_row(const fls_part_in_t *in, float *row)
{
        for (int t = 0; t < 6; t++)
                row[P_N0 + t] = lg((double)in->n[t]);
        row[P_W5_VIEW] = (float)in->w5[0];
        row[P_W5_CART] = (float)in->w5[3];
        row[P_W30_VIEW] = (float)in->w30[0];
        row[P_W30_CLICK] = (float)in->w30[1];
        row[P_W30_CART] = (float)in->w30[3];
        row[P_W30_PURCHASE] = (float)in->w30[5];
        row[P_CART_VALUE] = lg(in->cart_value > 0 ? in->cart_value : 0);
        row[P_SINCE_LAST] = lg(in->since_last_s);
        row[P_SINCE_PURCHASE] = lg(in->since_purchase_s);
        row[P_AVG_PRICE] = lg(in->avg_view_price);
        row[P_PRE_VIEWS] = lg((double)in->pre_views);
}

static uint64_t splitmix(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

typedef struct {
        fls_rows_t rows;
        float *counts; /* 3 per row for the logistic baseline */
        size_t counts_cap;
} pset_t;

static void pset_free(pset_t *p)
{
        fls_rows_free(&p->rows);
        free(p->counts);
}

/* want 0: rows before 70% of the span, 1: from it. */
static int build(const fls_sim_t *s, int want, const fls_range_t *range, size_t max_rows,
                 uint64_t seed, pset_t *set, size_t *npos, char *errstr,
                 size_t errstr_size)
{
        size_t nu = s->nusers ? s->nusers : 1, cand = 0;
        long *last = malloc(nu * sizeof(*last));
        long *prev = malloc((s->n ? s->n : 1) * sizeof(*prev));
        int64_t *last_buy = malloc(nu * sizeof(*last_buy));
        int64_t *final_buy = malloc(nu * sizeof(*final_buy));
        fls_part_in_t *st = calloc(nu, sizeof(*st));
        double *pv = calloc(nu, sizeof(*pv)); /* sum of viewed prices */
        int64_t cut = s->start_ts + (s->end_ts - s->start_ts) * 7 / 10;
        uint64_t rng = seed;
        double p_keep;
        int rc = -1;

        memset(set, 0, sizeof(*set));
        fls_rows_init(&set->rows, NPF);
        *npos = 0;
        if (!last || !prev || !last_buy || !final_buy || !st || !pv)
                goto oom;
        for (size_t u = 0; u < nu; u++)
                last[u] = -1, last_buy[u] = -1, final_buy[u] = -1;
        /* The user's last purchase at or after the sale start. */
        for (size_t i = 0; i < s->n; i++)
                if (s->ev[i].type == 5 && s->ev[i].ts >= s->sale_start_ts)
                        final_buy[s->ev[i].user] = s->ev[i].ts;
        for (size_t i = 0; i < s->n; i++) {
                int64_t t = s->ev[i].ts;
                cand += (want ? t >= cut : t < cut) && fls_range_contains(range, t);
        }
        p_keep = cand > max_rows ? (double)max_rows / (double)cand : 1.0;
        for (size_t i = 0; i < s->n; i++) {
                const fls_sim_ev_t *e = &s->ev[i];
                fls_part_in_t *p = &st[e->user];
                int64_t b = e->ts / 60000;
                float row[NPF], y;
                int in;

                prev[i] = last[e->user];
                p->since_last_s =
                    prev[i] >= 0 ? (double)(e->ts - s->ev[prev[i]].ts) / 1000.0 : -1;
                last[e->user] = (long)i;
                p->n[e->type]++;
                if (e->type == 0) {
                        pv[e->user] += e->price;
                        if (!e->in_sale)
                                p->pre_views++;
                }
                if (e->type == 3)
                        p->cart_value += e->price * e->qty;
                else if (e->type == 4 || e->type == 5)
                        p->cart_value -= e->price * e->qty;
                if (e->type == 5)
                        last_buy[e->user] = e->ts;
                p->since_purchase_s = last_buy[e->user] >= 0
                                          ? (double)(e->ts - last_buy[e->user]) / 1000.0
                                          : -1;
                p->avg_view_price = p->n[0] ? pv[e->user] / (double)p->n[0] : 0;
                in = (want ? e->ts >= cut : e->ts < cut) &&
                     fls_range_contains(range, e->ts);
                if (!in || (double)(splitmix(&rng) >> 11) * 0x1p-53 >= p_keep)
                        continue;
                memset(p->w5, 0, sizeof(p->w5));
                memset(p->w30, 0, sizeof(p->w30));
                for (long j = (long)i; j >= 0; j = prev[j]) {
                        int64_t bj = s->ev[j].ts / 60000;
                        if (bj <= b - 30)
                                break;
                        if (bj > b)
                                continue;
                        p->w30[s->ev[j].type]++;
                        if (bj > b - 5)
                                p->w5[s->ev[j].type]++;
                }
                {
                        fls_part_in_t c = *p;
                        if (c.cart_value < 0)
                                c.cart_value = 0;
                        fls_part_row(&c, row);
                }
                y = final_buy[e->user] >= e->ts;
                if (fls_rows_add(&set->rows, row, y) < 0)
                        goto oom;
                if (set->rows.n > set->counts_cap) {
                        float *nc =
                            realloc(set->counts, set->rows.cap * 3 * sizeof(float));
                        if (!nc)
                                goto oom;
                        set->counts = nc;
                        set->counts_cap = set->rows.cap;
                }
                set->counts[(set->rows.n - 1) * 3 + 0] = row[0];
                set->counts[(set->rows.n - 1) * 3 + 1] = row[3];
                set->counts[(set->rows.n - 1) * 3 + 2] = row[5];
                *npos += y > 0.5f;
        }
        rc = 0;
        goto done;
oom:
        snprintf(errstr, errstr_size, "participation: out of memory");
done:
        free(last);
        free(prev);
        free(last_buy);
        free(final_buy);
        free(st);
        free(pv);
        return rc;
}

int fls_task_participation_train(const char *data_dir, const fls_range_t *range,
                                 uint64_t seed, const char *out, const char *export_csv,
                                 char *errstr, size_t errstr_size)
{
        fls_sim_t *s = fls_sim_load(data_dir, errstr, errstr_size);
        pset_t set;
        size_t npos;
        fls_forest_opts_t o;
        fls_forest_t *f;
        fls_model_t *m = NULL;
        char src[512];
        int rc = -1;

        (void)export_csv;
        if (!s)
                return -1;
        if (build(s, 0, range, 30000, seed, &set, &npos, errstr, errstr_size) < 0)
                goto done;
        if (npos < 20 || set.rows.n - npos < 20) {
                snprintf(errstr, errstr_size,
                         "participation: %zu positive and %zu negative rows (need 20 of "
                         "each)",
                         npos, set.rows.n - npos);
                goto done;
        }
        fls_forest_opts_default(&o, FLS_FOREST_CLASSIFIER);
        /* 40 trees of depth 8 keep the shipped file small (a few hundred KB) and
         * scoring a batch of 1000 rows well under a millisecond. */
        o.n_trees = 40;
        o.max_depth = 8;
        o.min_samples_leaf = 20;
        o.seed = seed;
        f = fls_forest_train(FLS_FOREST_CLASSIFIER, set.rows.x, set.rows.y, set.rows.n,
                             NPF, &o, errstr, errstr_size);
        if (!f)
                goto done;
        snprintf(src, sizeof(src), "simulator %s, %zu events, %zu rows (%zu positive)",
                 data_dir, s->n, set.rows.n, npos);
        {
                fls_model_meta_t meta = {src, seed, "", "", ""};
                m = fls_model_from_forest(f, "participation", "1", pnames, NPF, NULL,
                                          NULL, &meta, errstr, errstr_size);
        }
        if (!m)
                goto done;
        rc = fls_model_save(m, out, errstr, errstr_size);
done:
        fls_model_destroy(m);
        pset_free(&set);
        fls_sim_destroy(s);
        return rc;
}

int fls_task_participation_eval(const char *model_path, const char *data_dir,
                                const fls_range_t *range, const char *export_csv,
                                fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        fls_sim_t *s = NULL;
        pset_t tr, te;
        size_t npos, n;
        float *pred = NULL;
        double *pm = NULL, *pb = NULL, *pv = NULL, w[4], bm[3], bs[3];
        int *y = NULL, *ytr = NULL;
        int rc = -1;

        (void)export_csv;
        memset(&tr, 0, sizeof(tr));
        memset(&te, 0, sizeof(te));
        if (!m)
                return -1;
        if (fls_model_check_features(m, pnames, NPF, errstr, errstr_size) < 0)
                goto done;
        if (!(s = fls_sim_load(data_dir, errstr, errstr_size)))
                goto done;
        if (build(s, 0, range, 30000, 1, &tr, &npos, errstr, errstr_size) < 0 ||
            build(s, 1, range, 200000, 1, &te, &npos, errstr, errstr_size) < 0)
                goto done;
        n = te.rows.n;
        if (n == 0) {
                snprintf(errstr, errstr_size, "participation: no event to evaluate");
                goto done;
        }
        pred = malloc(n * sizeof(*pred));
        pm = malloc(n * sizeof(*pm));
        pb = malloc(n * sizeof(*pb));
        pv = malloc(n * sizeof(*pv));
        y = malloc(n * sizeof(*y));
        ytr = malloc((tr.rows.n ? tr.rows.n : 1) * sizeof(*ytr));
        if (!pred || !pm || !pb || !pv || !y || !ytr) {
                snprintf(errstr, errstr_size, "participation: out of memory");
                goto done;
        }
        if (fls_model_predict(m, te.rows.x, n, pred, errstr, errstr_size) < 0)
                goto done;
        for (size_t i = 0; i < tr.rows.n; i++)
                ytr[i] = tr.rows.y[i] > 0.5f;
        fls_logreg_fit(tr.counts, ytr, tr.rows.n, 3, 500, 0.5, w, bm, bs);
        for (size_t i = 0; i < n; i++) {
                pm[i] = pred[i];
                pb[i] = fls_logreg_predict(te.counts + i * 3, 3, w, bm, bs);
                pv[i] = te.rows.x[i * NPF + P_W5_VIEW];
                y[i] = te.rows.y[i] > 0.5f;
        }
        memset(res, 0, sizeof(*res));
        res->rows = n;
        res->range = *range;
        res->metric = "roc_auc";
        res->value = fls_metric_auc(pm, y, n);
        res->nbaselines = 2;
        res->baseline_name[0] = "logreg_counts";
        res->baseline[0] = fls_metric_auc(pb, y, n);
        res->baseline_name[1] = "w5_views";
        res->baseline[1] = fls_metric_auc(pv, y, n);
        rc = 0;
done:
        free(pred);
        free(pm);
        free(pb);
        free(pv);
        free(y);
        free(ytr);
        pset_free(&tr);
        pset_free(&te);
        fls_sim_destroy(s);
        fls_model_destroy(m);
        return rc;
}
