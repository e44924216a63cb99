/*
 * task_metrics: the evaluation metrics shared by the tasks of `flashstream eval`
 * (delivery: MAE in days; demand: MAE and MASE; intent: ROC AUC). Pure functions over
 * arrays, no I/O; the tests check them on hand-computed cases.
 */
#ifndef FLS_TASK_METRICS_H
#define FLS_TASK_METRICS_H

#include <stddef.h>

#include "data_time.h"

/* Mean absolute error; NaN when n is 0. */
double fls_metric_mae(const double *y, const double *yhat, size_t n);
/* Mean absolute error of the seasonal-naive forecast y[t] = y[t - season] over the
 * series (the MASE denominator); NaN when n <= season. */
double fls_metric_snaive_mae(const double *series, size_t n, size_t season);
/* MAE / scale; NaN when the scale is 0 or NaN. */
double fls_metric_mase(const double *y, const double *yhat, size_t n, double scale);
/* Area under the ROC curve of scores for labels 0/1 (rank formulation: tied scores
 * count one half). NaN when a class is absent; -1 on no memory. */
double fls_metric_auc(const double *score, const int *label, size_t n);

/* What `flashstream eval` reports for one task: printed as one JSON line by train.c.
 * Names point to static strings. */
#define FLS_TASK_MAX_BASELINES 4
typedef struct {
        size_t rows;
        const char *metric;
        double value;
        const char *metric2; /* a second metric of the model (demand: MASE), or NULL */
        double value2;
        size_t nbaselines;
        const char *baseline_name[FLS_TASK_MAX_BASELINES];
        double baseline[FLS_TASK_MAX_BASELINES];
        double baseline2[FLS_TASK_MAX_BASELINES]; /* metric2 of each baseline */
        fls_range_t range; /* the scored range, with the defaults applied */
} fls_task_result_t;

#endif
