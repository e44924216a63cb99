/*
 * judge_orders: reads every restock signal up to the topic's end, replays the
 * simulator's orders and true demand, and scores the signals (see judge_orders.h for
 * the definitions). Reads files and Kafka only; never Redis.
 */
#include "judge_orders.h"
#include "topic.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "task_demand_sim.h"

struct sig {
        uint32_t cell;
        int kind, urgency, opening;
        int64_t qty, on_hand, ts;
};

struct out {
        uint32_t cell;
        int64_t ts;
};

typedef struct {
        fls_dsim_data_t *d;
        float *opening; /* [cell] */
        struct out *outs;
        size_t nouts, outs_cap;
        struct sig *sigs;
        size_t nsigs, sigs_cap;
        long unknown, kinds[3];
} judge_t;

static int64_t id_num(const char *s, size_t len, char prefix, uint32_t n)
{
        int64_t v = 0;
        if (len < 2 || s[0] != prefix)
                return -1;
        for (size_t i = 1; i < len; i++) {
                if (s[i] < '0' || s[i] > '9' || v > 100000000)
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v >= 1 && v <= (int64_t)n ? v - 1 : -1;
}

static int64_t cell_of(const judge_t *j, const char *sku, size_t sl, const char *wh,
                       size_t wl)
{
        int64_t s = id_num(sku, sl, 's', j->d->nskus), w = id_num(wh, wl, 'w', j->d->nwh);
        return s < 0 || w < 0 ? -1 : s * j->d->nwh + w;
}

/* Opening stock and stock-outs, replaying orders.csv with the consumer's rule (a line
 * is served only when the stock covers it). */
static int read_orders(judge_t *j, const char *dir, char *errstr, size_t errstr_size)
{
        char path[4096], line[2048];
        float *cur = calloc(j->d->ncells, sizeof(*cur));
        FILE *fp;

        snprintf(path, sizeof(path), "%s/orders.csv", dir);
        fp = fopen(path, "r");
        if (!fp || !cur) {
                snprintf(errstr, errstr_size, "%.900s: cannot open", path);
                free(cur);
                if (fp)
                        fclose(fp);
                return -1;
        }
        if (!fgets(line, sizeof(line), fp))
                line[0] = '\0';
        while (fgets(line, sizeof(line), fp)) {
                char *f[11], *s = line;
                int n = 0;
                int64_t c, ts;
                float q;
                line[strcspn(line, "\r\n")] = '\0';
                while (n < 11) {
                        f[n++] = s;
                        s = strchr(s, ',');
                        if (!s)
                                break;
                        *s++ = '\0';
                }
                if (n != 11)
                        continue;
                c = cell_of(j, f[4], strlen(f[4]), f[5], strlen(f[5]));
                q = strtof(f[6], NULL);
                ts = strtoll(f[10], NULL, 10);
                if (c < 0 || !(q > 0))
                        continue;
                if (strcmp(f[1], "PLACED") == 0) {
                        if (cur[c] >= q) {
                                cur[c] -= q;
                                if (cur[c] == 0) {
                                        if (j->nouts == j->outs_cap) {
                                                size_t cap =
                                                    j->outs_cap ? j->outs_cap * 2 : 4096;
                                                struct out *no =
                                                    realloc(j->outs, cap * sizeof(*no));
                                                if (!no) {
                                                        fclose(fp);
                                                        free(cur);
                                                        snprintf(errstr, errstr_size,
                                                                 "out of memory");
                                                        return -1;
                                                }
                                                j->outs = no;
                                                j->outs_cap = cap;
                                        }
                                        j->outs[j->nouts++] =
                                            (struct out){(uint32_t)c, ts};
                                }
                        }
                } else {
                        cur[c] += q;
                        if (strcmp(f[1], "STOCK_RECEIPT") == 0 && ts == j->d->start_ts)
                                j->opening[c] += q;
                }
        }
        fclose(fp);
        free(cur);
        return 0;
}

struct sread {
        judge_t *j;
        fls_codec_t *codec;
        int fi[8];
};

static int on_signal(void *opaque, const rd_kafka_message_t *m)
{
        struct sread *d = opaque;
        judge_t *j = d->j;
        const int *fi = d->fi;
        avro_value_t *v;
        char detail[256];
        size_t sl, wl, rl;
        const char *sku, *wh, *reason;
        int64_t c;
        int kind;
        struct sig *s;

        if (fls_codec_decode(d->codec, m->payload, m->len, &v, detail, sizeof(detail)) !=
            FLS_BAD_NONE) {
                j->unknown++;
                return 0;
        }
        sku = fls_avro_str(v, fi[0], &sl);
        wh = fls_avro_str(v, fi[1], &wl);
        reason = fls_avro_str(v, fi[7], &rl);
        c = cell_of(j, sku, sl, wh, wl);
        kind = fls_avro_enum(v, fi[2]);
        if (c < 0 || kind < 0 || kind > 2) {
                j->unknown++;
                return 0;
        }
        if (j->nsigs == j->sigs_cap) {
                size_t cap = j->sigs_cap ? j->sigs_cap * 2 : 4096;
                struct sig *ns = realloc(j->sigs, cap * sizeof(*ns));
                if (!ns)
                        return 1; /* read_signals says "out of memory" */
                j->sigs = ns;
                j->sigs_cap = cap;
        }
        s = &j->sigs[j->nsigs++];
        s->cell = (uint32_t)c;
        s->kind = kind;
        s->urgency = fls_avro_enum(v, fi[3]);
        s->qty = fls_avro_long(v, fi[4]);
        s->on_hand = fls_avro_long(v, fi[5]);
        s->ts = fls_avro_long(v, fi[6]);
        s->opening = rl == 18 && memcmp(reason, "projected_stockout", 18) == 0;
        j->kinds[kind]++;
        return 0;
}

/* Every signal up to the high watermarks at start. */
static int read_signals(judge_t *j, fls_conf_t *conf, char *errstr, size_t errstr_size)
{
        static const char *const fn[8] = {"sku",      "warehouse_id",    "kind",
                                          "urgency",  "recommended_qty", "on_hand",
                                          "event_ts", "reason"};
        struct sread d;
        int rc;

        d.j = j;
        d.codec = fls_codec_new(fls_conf_str(conf, "schema.dir"), "restock-signals-value",
                                0, 1 << 20, errstr, errstr_size);
        if (!d.codec)
                return -1;
        for (int i = 0; i < 8; i++)
                d.fi[i] = fls_codec_field(d.codec, fn[i]);
        rc = fls_topic_read(conf, fls_conf_str(conf, "topic.restock_signals"), on_signal,
                            &d, errstr, errstr_size);
        if (rc > 0) {
                snprintf(errstr, errstr_size, "out of memory");
                rc = -1;
        }
        fls_codec_destroy(d.codec);
        return rc;
}

static int by_cell_ts(const void *a, const void *b)
{
        const struct sig *x = a, *y = b;
        if (x->cell != y->cell)
                return x->cell < y->cell ? -1 : 1;
        return (x->ts > y->ts) - (x->ts < y->ts);
}

/* True demand of a cell over [from, to), pro rata per interval. */
static double demand_between(const fls_dsim_data_t *d, uint32_t c, int64_t from,
                             int64_t to)
{
        double s = 0;
        for (size_t i = 0; i < d->nivl; i++) {
                int64_t a = (d->first_ivl + (int64_t)i) * FLS_DSIM_IVL_MS;
                int64_t b = a + FLS_DSIM_IVL_MS;
                int64_t lo = a > from ? a : from, hi = b < to ? b : to;
                if (hi > lo)
                        s += d->demand[(size_t)c * d->nivl + i] * (double)(hi - lo) /
                             FLS_DSIM_IVL_MS;
        }
        return s;
}

struct policy {
        double ordered, lost, over, demand;
};

/* Replays one cell under a policy: 0 signals, 1 fixed threshold, 2 nothing. sigs are
 * the cell's signals in time order. arr: scratch of nivl + lead_ivl + 2 floats. */
static void replay(const judge_t *j, uint32_t c, int policy, const struct sig *sigs,
                   size_t ns, int64_t lead_ms, float *arr, struct policy *out)
{
        const fls_dsim_data_t *d = j->d;
        size_t lead_ivl = (size_t)((lead_ms + FLS_DSIM_IVL_MS - 1) / FLS_DSIM_IVL_MS);
        size_t narr = d->nivl + lead_ivl + 2, k = 0;
        double stock = j->opening[c], on_order = 0, tail = 0;
        int64_t t0 = d->first_ivl * FLS_DSIM_IVL_MS;

        memset(arr, 0, narr * sizeof(*arr));
        for (size_t i = 0; i < d->nivl; i++) {
                double dem = d->demand[(size_t)c * d->nivl + i], sold;
                int64_t end = t0 + (int64_t)(i + 1) * FLS_DSIM_IVL_MS;
                stock += arr[i];
                on_order -= arr[i];
                sold = dem < stock ? dem : stock;
                stock -= sold;
                out->lost += dem - sold;
                out->demand += dem;
                if (i + 15 >= d->nivl)
                        tail += dem;
                if (policy == 0) {
                        for (; k < ns && sigs[k].ts < end; k++) {
                                double q;
                                size_t at;
                                if (sigs[k].kind != 0)
                                        continue;
                                q = (double)sigs[k].qty - on_order;
                                if (q <= 0)
                                        continue;
                                at = (size_t)((sigs[k].ts + lead_ms - t0 +
                                               FLS_DSIM_IVL_MS - 1) /
                                              FLS_DSIM_IVL_MS);
                                if (at <= i)
                                        at = i + 1;
                                if (at < narr)
                                        arr[at] += (float)q;
                                on_order += q;
                                out->ordered += q;
                        }
                } else if (policy == 1 && stock + on_order <= FLS_JUDGE_S) {
                        size_t at = i + 1 + lead_ivl;
                        if (at < narr)
                                arr[at] += FLS_JUDGE_Q;
                        on_order += FLS_JUDGE_Q;
                        out->ordered += FLS_JUDGE_Q;
                }
        }
        out->over += stock > tail ? stock - tail : 0;
}

int fls_judge_orders(fls_conf_t *conf, int argc, char **argv)
{
        judge_t j;
        char err[1024];
        int64_t lead = fls_conf_int(conf, "orders.lead_time_s") * 1000;
        int64_t cover = lead + fls_conf_int(conf, "orders.safety_s") * 1000;
        size_t warned = 0, opening = 0, falses = 0, s0 = 0;
        struct policy pol[3];
        float *arr = NULL;
        int rc = 1;

        if (argc != 2) {
                fprintf(stderr, "usage: flashstream judge orders SIM_OUT_DIR\n");
                return 2;
        }
        memset(&j, 0, sizeof(j));
        memset(pol, 0, sizeof(pol));
        j.d = fls_dsim_load(argv[1], err, sizeof(err));
        if (!j.d)
                goto fail;
        j.opening = calloc(j.d->ncells, sizeof(*j.opening));
        arr = malloc((j.d->nivl + (size_t)(lead / FLS_DSIM_IVL_MS) + 4) * sizeof(*arr));
        if (!j.opening || !arr) {
                snprintf(err, sizeof(err), "out of memory");
                goto fail;
        }
        if (read_orders(&j, argv[1], err, sizeof(err)) < 0 ||
            read_signals(&j, conf, err, sizeof(err)) < 0)
                goto fail;
        qsort(j.sigs, j.nsigs, sizeof(*j.sigs), by_cell_ts);

        /* Stock-outs warned at least one lead time ahead. outs are in file (time)
         * order; the previous stock-out of the same cell bounds the episode. */
        {
                int64_t *prev = malloc(j.d->ncells * sizeof(*prev));
                if (!prev) {
                        snprintf(err, sizeof(err), "out of memory");
                        goto fail;
                }
                for (uint32_t c = 0; c < j.d->ncells; c++)
                        prev[c] = INT64_MIN;
                for (size_t k = 0; k < j.nouts; k++) {
                        const struct out *o = &j.outs[k];
                        struct sig key = {o->cell, 0, 0, 0, 0, 0, INT64_MIN};
                        size_t lo = 0, hi = j.nsigs;
                        while (lo < hi) { /* first signal of the cell */
                                size_t mid = (lo + hi) / 2;
                                if (by_cell_ts(&j.sigs[mid], &key) < 0)
                                        lo = mid + 1;
                                else
                                        hi = mid;
                        }
                        for (; lo < j.nsigs && j.sigs[lo].cell == o->cell; lo++)
                                if (j.sigs[lo].kind == 0 &&
                                    j.sigs[lo].ts > prev[o->cell] &&
                                    j.sigs[lo].ts <= o->ts - lead) {
                                        warned++;
                                        break;
                                }
                        prev[o->cell] = o->ts;
                }
                free(prev);
        }
        /* False signals and the policies, cell by cell. */
        for (uint32_t c = 0; c < j.d->ncells; c++) {
                size_t s1 = s0;
                while (s1 < j.nsigs && j.sigs[s1].cell == c)
                        s1++;
                for (size_t k = s0; k < s1; k++) {
                        if (!j.sigs[k].opening)
                                continue;
                        opening++;
                        falses +=
                            demand_between(j.d, c, j.sigs[k].ts, j.sigs[k].ts + cover) <
                            (double)j.sigs[k].on_hand;
                }
                if (j.d->carried[c])
                        for (int p = 0; p < 3; p++)
                                replay(&j, c, p, j.sigs + s0, s1 - s0, lead, arr,
                                       &pol[p]);
                s0 = s1;
        }

        printf("{\"judge\":\"orders\",\"data\":\"%s\",\"lead_time_s\":%" PRId64
               ",\"cover_s\":%" PRId64 ",\"stockouts\":%zu,\"warned\":%zu,"
               "\"warned_share\":%.4f,\"signals\":{\"restock\":%ld,\"overstock\":%ld,"
               "\"resolved\":%ld,\"undecodable\":%ld},\"opening_signals\":%zu,"
               "\"false_signals\":%zu,\"false_share\":%.4f,\"policies\":{",
               argv[1], lead / 1000, cover / 1000, j.nouts, warned,
               j.nouts ? (double)warned / (double)j.nouts : 0.0, j.kinds[0], j.kinds[1],
               j.kinds[2], j.unknown, opening, falses,
               opening ? (double)falses / (double)opening : 0.0);
        {
                static const char *const pn[3] = {"signals", "threshold", "none"};
                for (int p = 0; p < 3; p++)
                        printf(
                            "%s\"%s\":{\"ordered\":%.0f,\"lost\":%.0f,\"overstock\":%.0f,"
                            "\"demand\":%.0f}",
                            p ? "," : "", pn[p], pol[p].ordered, pol[p].lost, pol[p].over,
                            pol[p].demand);
                printf("},\"baseline\":{\"reorder_point\":%d,\"order_qty\":%d}}\n",
                       FLS_JUDGE_S, FLS_JUDGE_Q);
                printf("\nstock-outs %zu, warned >= lead time ahead %zu (%.1f%%)\n",
                       j.nouts, warned,
                       j.nouts ? 100.0 * (double)warned / (double)j.nouts : 0);
                printf("signals: restock %ld, overstock %ld, resolved %ld; opening %zu, "
                       "false %zu (%.1f%%)\n",
                       j.kinds[0], j.kinds[1], j.kinds[2], opening, falses,
                       opening ? 100.0 * (double)falses / (double)opening : 0);
                printf("%-10s %10s %10s %10s %10s\n", "policy", "ordered", "lost",
                       "overstock", "demand");
                for (int p = 0; p < 3; p++)
                        printf("%-10s %10.0f %10.0f %10.0f %10.0f\n", pn[p],
                               pol[p].ordered, pol[p].lost, pol[p].over, pol[p].demand);
        }
        rc = 0;
        goto out;
fail:
        fprintf(stderr, "flashstream judge orders: %s\n", err);
out:
        free(arr);
        free(j.opening);
        free(j.outs);
        free(j.sigs);
        fls_dsim_destroy(j.d);
        return rc;
}
