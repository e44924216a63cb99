/*
 * task_delivery: the delivery-time task on the Olist dataset, for `flashstream
 * train/eval delivery`. Predicts the days from purchase to delivery of a delivered
 * order with a forest regressor, from features known at purchase time: order content,
 * customer and seller places (haversine distance), Olist's own estimate, and rolling
 * load and delivery history computed from earlier orders only.
 *
 * Split (out of time): train on purchases before 2017-09-01, evaluate on purchases
 * from 2017-09-01 (the copy ends 2017-11-19). Metric: MAE in days. Baselines: the
 * training mean (stored in the model file) and Olist's estimated delivery date.
 */
#ifndef FLS_TASK_DELIVERY_H
#define FLS_TASK_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "data_olist.h"
#include "data_time.h"
#include "task_metrics.h"

#define FLS_DELIVERY_SPLIT "2017-09-01"

size_t fls_task_delivery_nfeatures(void);
const char *const *fls_task_delivery_feature_names(void);

/* Features of every order of d (d->n rows of fls_task_delivery_nfeatures() floats),
 * each from that order and orders purchased strictly earlier; no NaN. */
int fls_task_delivery_features(const fls_olist_t *d, float *x, char *errstr,
                               size_t errstr_size);
/* Days from purchase to delivery of order o (NaN when not delivered). */
double fls_task_delivery_target(const fls_olist_order_t *o);

/* Trains on the delivered orders purchased in `range` (its open --until defaults to
 * the split) and saves the model to out. export_csv may be NULL. */
int fls_task_delivery_train(const char *data_dir, const fls_range_t *range, uint64_t seed,
                            const char *out, const char *export_csv, char *errstr,
                            size_t errstr_size);
/* Scores the delivered orders purchased in `range` (its open --from defaults to the
 * split); earlier orders serve as history. The export marks them "test" and the
 * delivered orders before the range "train". */
int fls_task_delivery_eval(const char *model_path, const char *data_dir,
                           const fls_range_t *range, const char *export_csv,
                           fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
