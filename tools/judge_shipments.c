/*
 * judge_shipments: reads the simulator's files, then every dispatch decision from the
 * beginning of the topic (up to the high watermarks taken at start, so the run ends
 * on a live topic too), joins them by shipment_id and prints the scores described in
 * judge_shipments.h. Reads only; a tool, not on any hot path.
 */
#include "judge_shipments.h"
#include "topic.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "data_csv.h"
#include "data_strmap.h"
#include "shipments.h"
#include "task_dispatch.h"
#include "task_metrics.h"

typedef struct {
        char region[64];
        int flash;
        int64_t created, promised;
        double true_h, pred_h, p_late;
        int has_truth, kind, decided;
        int64_t kind_ts; /* event time of the decision that set kind */
} ship_t;

typedef struct {
        fls_strmap_t *map;
        ship_t *v;
        size_t n, cap;
        long duplicates, unknown, revisions;
} judge_t;

static int read_files(judge_t *j, const char *dir, char *errstr, size_t errstr_size)
{
        static const char *const scols[] = {"shipment_id", "status",      "region",
                                            "flash_sale",  "promised_ts", "ts"};
        static const char *const tcols[] = {"shipment_id", "true_delivery_h"};
        int si[6], ti[2], rc = -1, r;
        fls_csv_t *csv = fls_csv_open_in(dir, "shipments.csv", ',', errstr, errstr_size);

        if (!csv)
                return -1;
        if (fls_csv_next(csv, errstr, errstr_size) != 1 ||
            fls_csv_columns(csv, scols, si, 6, "shipments.csv", errstr, errstr_size) < 0)
                goto done;
        while ((r = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                ship_t *s;
                if (strcmp(fls_csv_field(csv, (size_t)si[1]), "CREATED") != 0)
                        continue;
                if (j->n == j->cap) {
                        size_t cap = j->cap ? j->cap * 2 : 4096;
                        ship_t *v = realloc(j->v, cap * sizeof(*v));
                        if (!v)
                                goto oom;
                        j->v = v;
                        j->cap = cap;
                }
                s = &j->v[j->n];
                memset(s, 0, sizeof(*s));
                snprintf(s->region, sizeof(s->region), "%s",
                         fls_csv_field(csv, (size_t)si[2]));
                s->flash = strcmp(fls_csv_field(csv, (size_t)si[3]), "true") == 0;
                s->promised = strtoll(fls_csv_field(csv, (size_t)si[4]), NULL, 10);
                s->created = strtoll(fls_csv_field(csv, (size_t)si[5]), NULL, 10);
                if (fls_strmap_put(j->map, fls_csv_field(csv, (size_t)si[0]), (int)j->n) <
                    0)
                        goto oom;
                j->n++;
        }
        if (r < 0)
                goto done;
        fls_csv_destroy(csv);
        csv = fls_csv_open_in(dir, "truth_shipments.csv", ',', errstr, errstr_size);
        if (!csv)
                return -1;
        if (fls_csv_next(csv, errstr, errstr_size) != 1 ||
            fls_csv_columns(csv, tcols, ti, 2, "truth_shipments.csv", errstr,
                            errstr_size) < 0)
                goto done;
        while ((r = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                int k = fls_strmap_get(j->map, fls_csv_field(csv, (size_t)ti[0]));
                double h;
                if (k < 0 || fls_csv_double(fls_csv_field(csv, (size_t)ti[1]), &h) < 0)
                        continue;
                j->v[k].true_h = h;
                j->v[k].has_truth = 1;
        }
        if (r < 0)
                goto done;
        rc = 0;
        goto done;
oom:
        snprintf(errstr, errstr_size, "out of memory");
done:
        fls_csv_destroy(csv);
        return rc;
}

/* Every decision up to the high watermarks at start. */
struct dread {
        judge_t *j;
        fls_codec_t *codec;
        int sidx, kidx, pidx, tidx;
};

static int on_decision(void *opaque, const rd_kafka_message_t *m)
{
        struct dread *d = opaque;
        judge_t *j = d->j;
        avro_value_t *v;
        char detail[256], key[256];
        size_t len;
        const char *sh;
        int k;

        if (fls_codec_decode(d->codec, m->payload, m->len, &v, detail, sizeof(detail)) !=
            FLS_BAD_NONE) {
                j->unknown++;
                return 0;
        }
        sh = fls_avro_str(v, d->sidx, &len);
        snprintf(key, sizeof(key), "%.*s", (int)len, sh);
        k = fls_strmap_get(j->map, key);
        if (k < 0) {
                j->unknown++;
                return 0;
        }
        if (fls_avro_long(v, d->tidx) != j->v[k].created) {
                /* A revision at a later status: an upgrade of the kind only; the
                 * prediction scored is the creation's. */
                int kind = fls_avro_enum(v, d->kidx);
                j->revisions++;
                if (kind > j->v[k].kind) {
                        j->v[k].kind = kind;
                        j->v[k].kind_ts = fls_avro_long(v, d->tidx);
                }
                return 0;
        }
        j->duplicates += j->v[k].decided;
        j->v[k].decided = 1;
        if (fls_avro_enum(v, d->kidx) >= j->v[k].kind) {
                j->v[k].kind = fls_avro_enum(v, d->kidx);
                j->v[k].kind_ts = j->v[k].created;
        }
        j->v[k].pred_h = fls_avro_double(v, d->pidx);
        return 0;
}

/* Every decision up to the topic's end at start. */
static int read_decisions(judge_t *j, fls_conf_t *conf, char *errstr, size_t errstr_size)
{
        struct dread d = {j, NULL, 0, 0, 0, 0};
        int rc;

        d.codec =
            fls_codec_new(fls_conf_str(conf, "schema.dir"), "dispatch-decisions-value", 0,
                          1 << 20, errstr, errstr_size);
        if (!d.codec)
                return -1;
        d.sidx = fls_codec_field(d.codec, "shipment_id");
        d.kidx = fls_codec_field(d.codec, "decision");
        d.pidx = fls_codec_field(d.codec, "predicted_delivery_h");
        d.tidx = fls_codec_field(d.codec, "event_ts");
        rc = fls_topic_read(conf, fls_conf_str(conf, "topic.dispatch_decisions"),
                            on_decision, &d, errstr, errstr_size);
        fls_codec_destroy(d.codec);
        return rc;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static double ratio(double a, double b)
{
        return b > 0 ? a / b : NAN;
}

/* A ratio for the table: three decimals, or "n/a" where nothing was counted (the
 * JSON line says null). */
static const char *cell(double v, char *buf, size_t size)
{
        if (isfinite(v))
                snprintf(buf, size, "%.3f", v);
        else
                snprintf(buf, size, "n/a");
        return buf;
}

static void num(double v)
{
        if (isfinite(v))
                printf("%.4f", v);
        else
                printf("null");
}

/* The live MAE on the rows `flashstream eval delivery-sim` scores by default (created
 * from its split on, with a truth row), computed as eval computes it: targets as
 * floats, predictions as the model's floats, summed in file order. Equal to eval's
 * figure when the consumer saw the features eval computes (one partition, one event
 * per batch: see tools/IMPORT-SHIPMENTS.md). NaN when a row has no decision. */
static int eval_range_mae(const judge_t *j, int64_t *from, size_t *rows, double *mae)
{
        int64_t *created = malloc((j->n ? j->n : 1) * sizeof(*created));
        double *y = malloc((j->n ? j->n : 1) * sizeof(*y));
        double *yhat = malloc((j->n ? j->n : 1) * sizeof(*yhat));
        size_t nt = 0, n = 0;
        int missing = 0;
        if (!created || !y || !yhat) {
                free(created);
                free(y);
                free(yhat);
                return -1;
        }
        for (size_t i = 0; i < j->n; i++)
                if (j->v[i].has_truth)
                        created[nt++] = j->v[i].created;
        *from = fls_dispatch_split_s(created, nt);
        for (size_t i = 0; i < j->n; i++) {
                const ship_t *s = &j->v[i];
                if (!s->has_truth || s->created / 1000 < *from)
                        continue;
                missing |= !s->decided;
                y[n] = (float)s->true_h;
                yhat[n++] = s->pred_h;
        }
        *rows = n;
        *mae = n && !missing ? fls_metric_mae(y, yhat, n) : NAN;
        free(created);
        free(y);
        free(yhat);
        return 0;
}

int fls_judge_shipments(fls_conf_t *conf, int argc, char **argv)
{
        judge_t j;
        char err[512];
        double penalty = fls_conf_dbl(conf, "shipments.late_penalty");
        double xcost = fls_conf_dbl(conf, "shipments.express_cost");
        int64_t cap = fls_conf_int(conf, "shipments.capacity_per_hour");
        long n = 0, late = 0, exped = 0, tp = 0, express = 0, tp_express = 0, flash = 0,
             late_nonflash = 0, late_missed = 0, missing = 0, kinds[3] = {0};
        int64_t *rh = NULL;
        size_t nrh = 0, groups = 0, full = 0, over = 0;
        int64_t max_used = 0;
        double abs_err = 0, eval_mae = NAN;
        int64_t eval_from = 0;
        size_t eval_rows = 0;
        int rc = 1;

        if (argc != 2) {
                fprintf(stderr, "usage: flashstream judge shipments SIM_OUT_DIR\n");
                return 2;
        }
        memset(&j, 0, sizeof(j));
        j.map = fls_strmap_new();
        if (!j.map || read_files(&j, argv[1], err, sizeof(err)) < 0 ||
            read_decisions(&j, conf, err, sizeof(err)) < 0) {
                fprintf(stderr, "flashstream judge shipments: %s\n",
                        j.map ? err : "out of memory");
                goto done;
        }
        if (eval_range_mae(&j, &eval_from, &eval_rows, &eval_mae) < 0) {
                fprintf(stderr, "flashstream judge shipments: out of memory\n");
                goto done;
        }
        /* Region-hours of expedited decisions, as "region index << 32 | hour". */
        rh = malloc((j.n ? j.n : 1) * sizeof(*rh));
        if (!rh) {
                fprintf(stderr, "flashstream judge shipments: out of memory\n");
                goto done;
        }
        {
                fls_strmap_t *regions = fls_strmap_new();
                int nreg = 0;
                if (!regions) {
                        fprintf(stderr, "flashstream judge shipments: out of memory\n");
                        goto done;
                }
                for (size_t i = 0; i < j.n; i++) {
                        const ship_t *s = &j.v[i];
                        int is_late, is_exp, r;
                        if (!s->has_truth)
                                continue;
                        if (!s->decided) {
                                missing++;
                                continue;
                        }
                        n++;
                        abs_err += fabs(s->pred_h - s->true_h);
                        is_late =
                            s->true_h > (double)(s->promised - s->created) / 3600000.0;
                        is_exp = s->kind != FLS_DISPATCH_STANDARD;
                        if (s->kind >= 0 && s->kind < 3)
                                kinds[s->kind]++;
                        late += is_late;
                        exped += is_exp;
                        tp += is_exp && is_late;
                        express += s->kind == FLS_DISPATCH_EXPRESS;
                        tp_express += s->kind == FLS_DISPATCH_EXPRESS && is_late;
                        flash += s->flash;
                        late_nonflash += is_late && !s->flash;
                        late_missed += is_late && !is_exp;
                        if (!is_exp)
                                continue;
                        r = fls_strmap_get(regions, s->region);
                        if (r < 0) {
                                r = nreg++;
                                fls_strmap_put(regions, s->region, r);
                        }
                        rh[nrh++] =
                            ((int64_t)r << 32) | (s->kind_ts / 3600000 & 0xffffffff);
                }
                fls_strmap_destroy(regions);
        }
        qsort(rh, nrh, sizeof(*rh), cmp_i64);
        for (size_t i = 0; i < nrh;) {
                size_t k = i;
                while (k < nrh && rh[k] == rh[i])
                        k++;
                groups++;
                if ((int64_t)(k - i) > max_used)
                        max_used = (int64_t)(k - i);
                full += (int64_t)(k - i) >= cap;
                over += (int64_t)(k - i) > cap;
                i = k;
        }
        {
                double cost = exped * xcost + late_missed * penalty;
                double base_flash = flash * xcost + late_nonflash * penalty;
                double base_none = late * penalty;
                char c1[32], c2[32];
                printf("{\"judge\":\"shipments\",\"shipments\":%ld,\"missing_decisions\":"
                       "%ld,"
                       "\"duplicate_decisions\":%ld,\"unknown_decisions\":%ld,"
                       "\"revised_decisions\":%ld,"
                       "\"would_be_late\":%ld,\"standard\":%ld,\"express\":%ld,"
                       "\"priority\":%ld,\"live_mae_h\":",
                       n, missing, j.duplicates, j.unknown, j.revisions, late, kinds[0],
                       kinds[1], kinds[2]);
                num(ratio(abs_err, n));
                printf(",\"eval_from_s\":%" PRId64 ",\"eval_rows\":%zu,\"eval_mae_h\":",
                       eval_from, eval_rows);
                /* Ten digits, as `flashstream eval` prints its metric. */
                if (isfinite(eval_mae))
                        printf("%.10g", eval_mae);
                else
                        printf("null");
                printf(",\"expedite_precision\":");
                num(ratio(tp, exped));
                printf(",\"expedite_recall\":");
                num(ratio(tp, late));
                printf(",\"express_precision\":");
                num(ratio(tp_express, express));
                printf(",\"express_recall\":");
                num(ratio(tp_express, late));
                printf(",\"capacity_per_hour\":%" PRId64 ",\"region_hours_used\":%zu,"
                       "\"region_hours_full\":%zu,\"region_hours_over\":%zu,"
                       "\"max_used\":%" PRId64 ",\"capacity_use\":",
                       cap, groups, full, over, max_used);
                num(ratio((double)nrh, (double)groups * (double)cap));
                printf(",\"cost\":%.2f,\"cost_all_flash_express\":%.2f,"
                       "\"cost_none\":%.2f,\"late_penalty\":%g,\"express_cost\":%g}\n",
                       cost, base_flash, base_none, penalty, xcost);
                printf("%-28s %10s\n", "shipments decided", "");
                printf("  %-26s %10ld  (missing %ld, duplicates %ld, revised %ld)\n",
                       "decided", n, missing, j.duplicates, j.revisions);
                printf("  %-26s %10ld  (%.1f%%)\n", "would be late", late,
                       100.0 * ratio(late, n));
                printf("  %-26s %10ld / %ld / %ld\n", "standard/express/priority",
                       kinds[0], kinds[1], kinds[2]);
                printf("  %-26s %10.3f\n", "live MAE, hours", ratio(abs_err, n));
                printf("  %-26s %10s  (%zu shipments created from %" PRId64 " s on)\n",
                       "live MAE, eval's rows", cell(eval_mae, c1, sizeof(c1)), eval_rows,
                       eval_from);
                printf("  %-26s %10s / %s\n", "expedite precision/recall",
                       cell(ratio(tp, exped), c1, sizeof(c1)),
                       cell(ratio(tp, late), c2, sizeof(c2)));
                printf("  %-26s %10s / %s\n", "express precision/recall",
                       cell(ratio(tp_express, express), c1, sizeof(c1)),
                       cell(ratio(tp_express, late), c2, sizeof(c2)));
                printf("  %-26s %10" PRId64
                       " max, %zu region-hours, %zu full, %zu over\n",
                       "capacity used per hour", max_used, groups, full, over);
                printf("  %-26s %10.2f\n", "cost (this policy)", cost);
                printf("  %-26s %10.2f\n", "cost (all flash express)", base_flash);
                printf("  %-26s %10.2f\n", "cost (nothing expedited)", base_none);
        }
        rc = over > 0 || missing > 0 ? 1 : 0;
done:
        free(rh);
        free(j.v);
        fls_strmap_destroy(j.map);
        return rc;
}
