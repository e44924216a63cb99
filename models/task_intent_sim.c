/*
 * task_intent_sim: the simulator reader, the intent features shared with the
 * clickstream consumer, and train/eval of the `intent-sim` LSTM. Labels look up to
 * two minutes ahead in the user's own events; features only look back.
 */
#include "task_intent_sim.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task_common.h"
#include "task_intent.h"

#define T FLS_ISIM_SEQ

enum {
        F_PAD,
        F_VIEW,
        F_CLICK,
        F_SEARCH,
        F_CART_ADD,
        F_CART_REMOVE,
        F_PURCHASE,
        F_LOG_PRICE,
        F_LOG_GAP,
        F_LOG_AGE,
        F_SAME_SKU,
        F_IN_SALE,
        NFEAT
};

static const char *const names[NFEAT] = {
    "pad",      "view",      "click",     "search",    "cart_add", "cart_remove",
    "purchase", "log_price", "log_gap_s", "log_age_s", "same_sku", "in_sale"};

size_t fls_isim_nfeatures(void)
{
        return NFEAT;
}

const char *const *fls_isim_feature_names(void)
{
        return names;
}

uint32_t fls_isim_sku_id(const char *s, size_t len)
{
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char)s[i];
                h *= 16777619u;
        }
        return h ? h : 1;
}

void fls_isim_sequence(const fls_isim_ev_t *ev, size_t n, float *x)
{
        const fls_isim_ev_t *cur = &ev[n - 1];
        size_t first = n > T ? n - T : 0, used = n - first;

        memset(x, 0, (size_t)T * NFEAT * sizeof(*x));
        for (size_t s = 0; s < T - used; s++)
                x[s * NFEAT + F_PAD] = 1;
        for (size_t k = 0; k < used; k++) {
                size_t j = first + k;
                const fls_isim_ev_t *e = &ev[j];
                float *f = x + (T - used + k) * NFEAT;
                double gap = j > 0 ? (double)(e->ts - ev[j - 1].ts) / 1000.0 : -1;
                double age = (double)(cur->ts - e->ts) / 1000.0;
                if (e->type >= 0 && e->type < 6)
                        f[F_VIEW + e->type] = 1;
                f[F_LOG_PRICE] =
                    isfinite(e->price) && e->price > 0 ? (float)log1p(e->price) : 0;
                /* Out-of-order events make gaps and ages negative: clamp to 0. */
                f[F_LOG_GAP] = j > 0 ? (float)log1p(gap > 0 ? gap : 0) : -1;
                f[F_LOG_AGE] = (float)log1p(age > 0 ? age : 0);
                f[F_SAME_SKU] = e->sku != 0 && e->sku == cur->sku;
                f[F_IN_SALE] = e->in_sale != 0;
        }
}

/* ---- the simulator's files ------------------------------------------------ */

static const char *const ctypes[] = {"VIEW",     "CLICK",       "SEARCH",
                                     "ADD_CART", "REMOVE_CART", "PURCHASE"};

void fls_sim_destroy(fls_sim_t *s)
{
        if (!s)
                return;
        free(s->ev);
        free(s->intent);
        free(s->band);
        free(s);
}

/* Splits a CSV line without quotes in place; returns the field count. */
static int split(char *line, char **f, int max)
{
        int n = 0;
        char *p = line;
        line[strcspn(line, "\r\n")] = '\0';
        while (n < max) {
                f[n++] = p;
                p = strchr(p, ',');
                if (!p)
                        break;
                *p++ = '\0';
        }
        return n;
}

static int64_t json_int(const char *json, const char *key, int *ok)
{
        char pat[64];
        const char *p;
        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(json, pat);
        if (!p) {
                *ok = 0;
                return 0;
        }
        return strtoll(p + strlen(pat), NULL, 10);
}

static int load_summary(fls_sim_t *s, const char *dir, char *errstr, size_t errstr_size)
{
        char path[1024], buf[8192];
        FILE *fp;
        size_t len;
        int ok = 1;
        int64_t sale_s;

        snprintf(path, sizeof(path), "%s/summary.json", dir);
        if (!(fp = fopen(path, "r"))) {
                snprintf(errstr, errstr_size, "%s: cannot open", path);
                return -1;
        }
        len = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        s->start_ts = json_int(buf, "start_ts", &ok);
        s->end_ts = json_int(buf, "end_ts", &ok);
        sale_s = json_int(buf, "sim.sale_start_s", &ok);
        if (!ok) {
                snprintf(errstr, errstr_size,
                         "%s: start_ts, end_ts or sim.sale_start_s missing", path);
                return -1;
        }
        s->sale_start_ts = s->start_ts + sale_s * 1000;
        return 0;
}

fls_sim_t *fls_sim_load(const char *dir, char *errstr, size_t errstr_size)
{
        char path[1024], line[4096], cats[64][32];
        size_t ncats = 0, cap = 0;
        fls_sim_t *s = calloc(1, sizeof(*s));
        FILE *fp = NULL;
        long lineno = 1;

        if (!s) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (load_summary(s, dir, errstr, errstr_size) < 0)
                goto fail;
        snprintf(path, sizeof(path), "%s/clickstream.csv", dir);
        if (!(fp = fopen(path, "r")) || !fgets(line, sizeof(line), fp)) {
                snprintf(errstr, errstr_size, "%s: cannot read", path);
                goto fail;
        }
        /* event_id,user_id,session_id,type,sku,category,price,quantity,dwell_ms,
         * campaign_id,ts */
        while (fgets(line, sizeof(line), fp)) {
                char *f[12];
                fls_sim_ev_t *e;
                int t, nf = split(line, f, 12);
                lineno++;
                if (nf != 11 || f[1][0] != 'u') {
                        snprintf(errstr, errstr_size, "%s:%ld: not a click event line",
                                 path, lineno);
                        goto fail;
                }
                for (t = 0; t < 6 && strcmp(f[3], ctypes[t]); t++)
                        ;
                if (t == 6) {
                        snprintf(errstr, errstr_size, "%s:%ld: unknown type '%s'", path,
                                 lineno, f[3]);
                        goto fail;
                }
                if (s->n == cap) {
                        size_t nc = cap ? cap * 2 : 65536;
                        fls_sim_ev_t *ne = realloc(s->ev, nc * sizeof(*ne));
                        if (!ne) {
                                snprintf(errstr, errstr_size, "out of memory");
                                goto fail;
                        }
                        s->ev = ne;
                        cap = nc;
                }
                e = &s->ev[s->n++];
                e->user = (uint32_t)(strtoul(f[1] + 1, NULL, 10) - 1);
                e->sku = f[4][0] ? fls_isim_sku_id(f[4], strlen(f[4])) : 0;
                e->cat = 0xffff;
                for (size_t c = 0; c < ncats; c++)
                        if (strcmp(cats[c], f[5]) == 0)
                                e->cat = (uint16_t)c;
                if (e->cat == 0xffff && f[5][0] && ncats < 64) {
                        snprintf(cats[ncats], sizeof(cats[0]), "%s", f[5]);
                        e->cat = (uint16_t)ncats++;
                }
                e->type = (uint8_t)t;
                e->price = strtod(f[6], NULL);
                e->qty = (int32_t)strtol(f[7], NULL, 10);
                e->in_sale = f[9][0] != '\0';
                e->ts = strtoll(f[10], NULL, 10);
                if (e->user + 1 > s->nusers)
                        s->nusers = e->user + 1;
        }
        fclose(fp);
        fp = NULL;
        s->intent = malloc((s->nusers ? s->nusers : 1) * sizeof(*s->intent));
        s->band = calloc(s->nusers ? s->nusers : 1, 1);
        if (!s->intent || !s->band) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        for (size_t u = 0; u < s->nusers; u++)
                s->intent[u] = NAN;
        snprintf(path, sizeof(path), "%s/truth_users.csv", dir);
        if (!(fp = fopen(path, "r")) || !fgets(line, sizeof(line), fp)) {
                snprintf(errstr, errstr_size, "%s: cannot read", path);
                goto fail;
        }
        while (fgets(line, sizeof(line), fp)) {
                char *f[4];
                unsigned long u;
                if (split(line, f, 4) != 3 || f[0][0] != 'u')
                        continue;
                u = strtoul(f[0] + 1, NULL, 10);
                if (u == 0 || u > s->nusers)
                        continue;
                s->intent[u - 1] = strtof(f[1], NULL);
                s->band[u - 1] = f[2][0];
        }
        fclose(fp);
        return s;
fail:
        if (fp)
                fclose(fp);
        fls_sim_destroy(s);
        return NULL;
}

/* ---- train / eval ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* Every event's label, the history it sees, the "has cart" baseline and the running
 * counts for the logistic baseline, walking the file once forwards (features) and
 * once backwards (labels). rows are added for events picked by keep(). */
typedef struct {
        fls_rows_t rows; /* T * NFEAT per row */
        float *counts;   /* 3 per row: log1p views, carts, purchases */
        float *has_cart; /* per row */
        size_t counts_cap;
} set_t;

static int64_t split_ts(const fls_sim_t *s)
{
        return s->start_ts + (s->end_ts - s->start_ts) * 7 / 10;
}

/* want: 0 train rows (before the split), 1 eval rows (from it). max_rows bounds the
 * set by a seeded sample. */
static int build(const fls_sim_t *s, int want, const fls_range_t *range, size_t max_rows,
                 uint64_t seed, set_t *set, size_t *npos, char *errstr,
                 size_t errstr_size)
{
        size_t nu = s->nusers ? s->nusers : 1, cand = 0;
        int64_t *next = malloc(nu * sizeof(*next));
        int *label = malloc((s->n ? s->n : 1) * sizeof(*label));
        /* Per user: a ring of the last T events and running counts. */
        fls_isim_ev_t(*hist)[T] = calloc(nu, sizeof(*hist));
        uint32_t *nh = calloc(nu, sizeof(*nh));
        float(*run)[4] = calloc(nu, sizeof(*run));
        int64_t cut = split_ts(s);
        uint64_t rng = seed;
        double p_keep;
        int rc = -1;

        memset(set, 0, sizeof(*set));
        fls_rows_init(&set->rows, (size_t)T * NFEAT);
        *npos = 0;
        if (!next || !label || !hist || !nh || !run) {
                snprintf(errstr, errstr_size, "intent-sim: out of memory");
                goto done;
        }
        for (size_t u = 0; u < nu; u++)
                next[u] = -1;
        for (size_t i = s->n; i-- > 0;) {
                const fls_sim_ev_t *e = &s->ev[i];
                int64_t p = next[e->user];
                label[i] = p > e->ts && p <= e->ts + FLS_ISIM_HORIZON_MS;
                if (e->type == 5)
                        next[e->user] = e->ts;
        }
        for (size_t i = 0; i < s->n; i++) {
                const fls_sim_ev_t *e = &s->ev[i];
                int in = e->ts + FLS_ISIM_HORIZON_MS <= s->end_ts &&
                         fls_range_contains(range, e->ts) &&
                         (want ? e->ts >= cut : e->ts + FLS_ISIM_HORIZON_MS <= cut);
                cand += in;
        }
        p_keep = cand > max_rows ? (double)max_rows / (double)cand : 1.0;
        for (size_t i = 0; i < s->n; i++) {
                const fls_sim_ev_t *e = &s->ev[i];
                uint32_t u = e->user;
                fls_isim_ev_t seq[T];
                size_t n;
                float x[T * NFEAT], y = (float)label[i];
                int in;

                hist[u][nh[u] % T] =
                    (fls_isim_ev_t){e->type, e->ts, e->price, e->sku, e->in_sale};
                nh[u]++;
                if (e->type == 0)
                        run[u][0] += 1;
                else if (e->type == 3)
                        run[u][1] += 1, run[u][3] += (float)e->qty;
                else if (e->type == 4)
                        run[u][3] -= (float)e->qty;
                else if (e->type == 5)
                        run[u][2] += 1, run[u][3] -= (float)e->qty;
                in = e->ts + FLS_ISIM_HORIZON_MS <= s->end_ts &&
                     fls_range_contains(range, e->ts) &&
                     (want ? e->ts >= cut : e->ts + FLS_ISIM_HORIZON_MS <= cut);
                if (!in || (double)(splitmix(&rng) >> 11) * 0x1p-53 >= p_keep)
                        continue;
                n = nh[u] < T ? nh[u] : T;
                for (size_t k = 0; k < n; k++)
                        seq[k] = hist[u][(nh[u] - n + k) % T];
                fls_isim_sequence(seq, n, x);
                if (fls_rows_add(&set->rows, x, y) < 0)
                        goto oom;
                if (set->rows.n > set->counts_cap) {
                        size_t c = set->rows.cap;
                        float *nc = realloc(set->counts, c * 3 * sizeof(float));
                        float *nhc;
                        if (!nc)
                                goto oom;
                        set->counts = nc;
                        nhc = realloc(set->has_cart, c * sizeof(float));
                        if (!nhc)
                                goto oom;
                        set->has_cart = nhc;
                        set->counts_cap = c;
                }
                for (int k = 0; k < 3; k++)
                        set->counts[(set->rows.n - 1) * 3 + k] = log1pf(run[u][k]);
                set->has_cart[set->rows.n - 1] = run[u][3] > 0;
                *npos += label[i] != 0;
        }
        rc = 0;
        goto done;
oom:
        snprintf(errstr, errstr_size, "intent-sim: out of memory");
done:
        free(next);
        free(label);
        free(hist);
        free(nh);
        free(run);
        return rc;
}

static void set_free(set_t *set)
{
        fls_rows_free(&set->rows);
        free(set->counts);
        free(set->has_cart);
}

int fls_task_intent_sim_train(const char *data_dir, const fls_range_t *range,
                              uint64_t seed, const char *out, const char *export_csv,
                              char *errstr, size_t errstr_size)
{
        fls_sim_t *s = fls_sim_load(data_dir, errstr, errstr_size);
        set_t set;
        size_t npos = 0;
        float mean[NFEAT], std[NFEAT];
        fls_lstm_t *net = NULL;
        fls_model_t *m = NULL;
        fls_lstm_train_opts_t to;
        char src[512];
        int rc = -1;

        (void)export_csv;
        if (!s)
                return -1;
        if (build(s, 0, range, 60000, seed, &set, &npos, errstr, errstr_size) < 0)
                goto done;
        if (npos < 20 || set.rows.n - npos < 20) {
                snprintf(errstr, errstr_size,
                         "intent-sim: %zu positive and %zu negative training rows (need "
                         "20 of each): simulate a longer sale",
                         npos, set.rows.n - npos);
                goto done;
        }
        fls_norm_fit(set.rows.x, set.rows.n * T, NFEAT, mean, std);
        fls_norm_apply(set.rows.x, set.rows.n * T, NFEAT, mean, std);
        net = fls_lstm_new(FLS_LSTM_CLASSIFIER, NFEAT, 16, T, seed, errstr, errstr_size);
        if (!net)
                goto done;
        fls_lstm_train_opts_default(&to);
        /* 60k rows, 8 epochs of a hidden size of 8: ~10 s on one core; larger nets
         * gained nothing on the held-out last 30% of the sale. */
        to.epochs = 12;
        to.batch_size = 128;
        to.learning_rate = 3e-3f;
        to.seed = seed;
        if (fls_lstm_train(net, set.rows.x, set.rows.y, set.rows.n, &to, NULL, errstr,
                           errstr_size) < 0)
                goto done;
        snprintf(src, sizeof(src),
                 "simulator %s, %zu events, %zu training rows (%zu positive)", data_dir,
                 s->n, set.rows.n, npos);
        {
                fls_model_meta_t meta = {src, seed, "", "", ""};
                m = fls_model_from_lstm(net, "intent-sim", "1", names, NFEAT, mean, std,
                                        &meta, errstr, errstr_size);
        }
        net = NULL;
        if (!m)
                goto done;
        rc = fls_model_save(m, out, errstr, errstr_size);
done:
        fls_model_destroy(m);
        fls_lstm_destroy(net);
        set_free(&set);
        fls_sim_destroy(s);
        return rc;
}

int fls_task_intent_sim_eval(const char *model_path, const char *data_dir,
                             const fls_range_t *range, const char *export_csv,
                             fls_task_result_t *res, char *errstr, size_t errstr_size)
{
        fls_model_t *m = fls_model_load(model_path, errstr, errstr_size);
        fls_sim_t *s = NULL;
        set_t tr, te;
        size_t npos, n;
        float *pred = NULL;
        double *pm = NULL, *pb = NULL, *pc = NULL, w[4], bm[3], bs[3];
        int *y = NULL, *ytr = NULL;
        int rc = -1;

        (void)export_csv;
        memset(&tr, 0, sizeof(tr));
        memset(&te, 0, sizeof(te));
        if (!m)
                return -1;
        if (fls_model_check_features(m, names, NFEAT, errstr, errstr_size) < 0)
                goto done;
        if (fls_model_seq_len(m) != T) {
                snprintf(errstr, errstr_size, "%s: sequence length %zu, %d expected",
                         model_path, fls_model_seq_len(m), T);
                goto done;
        }
        if (!(s = fls_sim_load(data_dir, errstr, errstr_size)))
                goto done;
        if (build(s, 0, range, 60000, 1, &tr, &npos, errstr, errstr_size) < 0 ||
            build(s, 1, range, 200000, 1, &te, &npos, errstr, errstr_size) < 0)
                goto done;
        n = te.rows.n;
        if (n == 0) {
                snprintf(errstr, errstr_size, "intent-sim: no event to evaluate");
                goto done;
        }
        pred = malloc(n * sizeof(*pred));
        pm = malloc(n * sizeof(*pm));
        pb = malloc(n * sizeof(*pb));
        pc = malloc(n * sizeof(*pc));
        y = malloc(n * sizeof(*y));
        ytr = malloc((tr.rows.n ? tr.rows.n : 1) * sizeof(*ytr));
        if (!pred || !pm || !pb || !pc || !y || !ytr) {
                snprintf(errstr, errstr_size, "intent-sim: out of memory");
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
                pc[i] = te.has_cart[i];
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
        res->baseline_name[1] = "has_cart";
        res->baseline[1] = fls_metric_auc(pc, y, n);
        rc = 0;
done:
        free(pred);
        free(pm);
        free(pb);
        free(pc);
        free(y);
        free(ytr);
        set_free(&tr);
        set_free(&te);
        fls_sim_destroy(s);
        fls_model_destroy(m);
        return rc;
}
