/*
 * task_metrics: metrics of `flashstream eval`. AUC is the Mann-Whitney statistic over
 * midranks, so ties between a positive and a negative count one half, as in
 * scikit-learn's roc_auc_score.
 */
#include "task_metrics.h"

#include <math.h>
#include <stdlib.h>

double fls_metric_mae(const double *y, const double *yhat, size_t n)
{
        if (n == 0)
                return NAN;
        double s = 0;
        for (size_t i = 0; i < n; i++)
                s += fabs(y[i] - yhat[i]);
        return s / (double)n;
}

double fls_metric_snaive_mae(const double *series, size_t n, size_t season)
{
        if (season == 0 || n <= season)
                return NAN;
        double s = 0;
        for (size_t t = season; t < n; t++)
                s += fabs(series[t] - series[t - season]);
        return s / (double)(n - season);
}

double fls_metric_mase(const double *y, const double *yhat, size_t n, double scale)
{
        if (!(scale > 0))
                return NAN;
        return fls_metric_mae(y, yhat, n) / scale;
}

typedef struct {
        double score;
        int label;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
        double x = ((const pair_t *)a)->score, y = ((const pair_t *)b)->score;
        return (x > y) - (x < y);
}

double fls_metric_auc(const double *score, const int *label, size_t n)
{
        pair_t *p = malloc((n ? n : 1) * sizeof(*p));
        if (!p)
                return -1;
        size_t npos = 0;
        for (size_t i = 0; i < n; i++) {
                p[i].score = score[i];
                p[i].label = label[i] != 0;
                npos += p[i].label;
        }
        size_t nneg = n - npos;
        if (npos == 0 || nneg == 0) {
                free(p);
                return NAN;
        }
        qsort(p, n, sizeof(*p), cmp_pair);
        /* Sum of the positives' ranks, each tie group getting its mean rank. */
        double rank_sum = 0;
        for (size_t i = 0; i < n;) {
                size_t j = i;
                size_t pos = 0;
                while (j < n && p[j].score == p[i].score) {
                        pos += p[j].label;
                        j++;
                }
                double midrank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
                rank_sum += midrank * (double)pos;
                i = j;
        }
        free(p);
        return (rank_sum - (double)npos * (double)(npos + 1) / 2.0) /
               ((double)npos * (double)nneg);
}
