/*
 * task_intent: the purchase-intent task on the REES46 clickstream sample, for
 * `flashstream train/eval intent`. At each event, the probability that the same user
 * purchases within the next 10 minutes, strictly after the event. Features come only
 * from that user's events up to and including this one: an LSTM classifier reads the
 * user's last 8 events (type one-hot, log price, time since the previous event,
 * recency, same product as now, running counts).
 *
 * Labels need 10 minutes of future: events later than the file's last event minus 10
 * minutes are neither trained on nor scored. Split (out of time): events before
 * 2019-10-01 02:24:00 train, events from it evaluate (so 02:24:00 to 02:29:59 in this
 * copy). Training labels may look up to 10 minutes past the split; the features never
 * do. Metric: ROC AUC. Baseline: logistic regression on the user's running counts of
 * views, carts and purchases, fitted on the rows before the evaluated range.
 */
#ifndef FLS_TASK_INTENT_H
#define FLS_TASK_INTENT_H

#include <stddef.h>
#include <stdint.h>

#include "data_rees46.h"
#include "data_time.h"
#include "task_metrics.h"

#define FLS_INTENT_SPLIT   "2019-10-01 02:24:00"
#define FLS_INTENT_HORIZON 600 /* seconds */
#define FLS_INTENT_SEQ     8

size_t fls_task_intent_nfeatures(void); /* per step */
const char *const *fls_task_intent_feature_names(void);

/* label[i] = 1 when ev[i]'s user purchases at a time in (t_i, t_i + 600]; known[i] = 1
 * when t_i + 600 <= the last event's time (else the label is unknown). */
int fls_task_intent_labels(const fls_rees46_t *d, int *label, int *known, char *errstr,
                           size_t errstr_size);
/* Sequence rows of every event: d->n * SEQ * nfeatures floats (left-padded). */
int fls_task_intent_features(const fls_rees46_t *d, float *x, char *errstr,
                             size_t errstr_size);

/* Tiny logistic regression by full-batch gradient descent on standardised inputs,
 * for the baseline. w gets nf + 1 values (the last is the intercept). */
void fls_logreg_fit(const float *x, const int *y, size_t n, size_t nf, size_t iters,
                    double lr, double *w, double *mean, double *std);
double fls_logreg_predict(const float *x, size_t nf, const double *w, const double *mean,
                          const double *std);

int fls_task_intent_train(const char *data_dir, const fls_range_t *range, uint64_t seed,
                          const char *out, const char *export_csv, char *errstr,
                          size_t errstr_size);
int fls_task_intent_eval(const char *model_path, const char *data_dir,
                         const fls_range_t *range, const char *export_csv,
                         fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
