/*
 * task_dispatch: the delivery-time model of the shipments consumer, trained on the
 * simulator's files, for `flashstream train/eval delivery-sim`. It sits at the "model"
 * step of Kafka -> Avro -> Redis -> model -> Kafka: the consumer (consumers/shipments.c)
 * keeps the raw inputs below in Redis and turns them into a row with
 * fls_dispatch_row(), the same function the trainer uses on the simulator's
 * shipments.csv, so that training and serving cannot drift apart in the formula; only
 * in the counts (see "skew" below).
 *
 * Raw inputs, all known when a shipment is CREATED:
 *   distance, weight, event time (-> UTC hour of day), the flash-sale flag;
 *   region load: shipments created in the region over the last 30 and 5 minutes
 *   (1-minute buckets, the window ending with the event's bucket, the event included);
 *   carrier backlog: the carrier's shipments created and not yet DELIVERED or FAILED;
 *   recent delivery times: sum of hours and count of the deliveries of the region and
 *   of the carrier over the last 24 hours (1-hour buckets, by delivery time).
 * The consumer counts per input partition and multiplies by the partition count (the
 * topic is keyed by shipment, so each partition sees about 1/P of a region); the
 * trainer counts the whole file. Skew: the consumer's reads come after its whole
 * micro-batch is applied (a few later events included) and delivery feedback becomes
 * visible one batch later.
 *
 * Target: the simulator's true_delivery_h (truth_shipments.csv, hours from CREATED to
 * the delivery attempt, without intervention). Split (out of time): train on shipments
 * created before 70% of the file's time span, evaluate on the rest (--from/--until
 * override, in UTC). Metric: MAE in hours; baseline: the training mean (stored in the
 * model file).
 */
#ifndef FLS_TASK_DISPATCH_H
#define FLS_TASK_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "data_time.h"
#include "task_metrics.h"

#define FLS_DISPATCH_NFEAT        9
#define FLS_DISPATCH_LOAD_BUCKET  60000LL   /* ms: load buckets */
#define FLS_DISPATCH_LOAD_LONG    1800000LL /* ms: the long load window */
#define FLS_DISPATCH_LOAD_SHORT   300000LL  /* ms: the short load window */
#define FLS_DISPATCH_DLV_BUCKET   3600000LL /* ms: delivery-time buckets */
#define FLS_DISPATCH_DLV_SLOTS    24        /* delivery-time window: 24 buckets */
#define FLS_DISPATCH_PRIOR_H      20.0      /* recent delivery time with no history */
#define FLS_DISPATCH_PRIOR_WEIGHT 5.0       /* deliveries the prior counts as */

typedef struct {
        double distance_km, weight_kg;
        int64_t ts_ms; /* CREATED event time */
        int flash;
        double region_created_long, region_created_short;
        double carrier_backlog;
        double region_dlv_sum_h, region_dlv_n;
        double carrier_dlv_sum_h, carrier_dlv_n;
} fls_dispatch_raw_t;

const char *const *fls_dispatch_feature_names(void);
/* The model row of raw inputs: FLS_DISPATCH_NFEAT floats, never NaN. Recent delivery
 * times are shrunk towards FLS_DISPATCH_PRIOR_H: two deliveries say little. */
void fls_dispatch_row(const fls_dispatch_raw_t *raw, float *row);

/* The default start of the evaluation range, in UTC seconds: 70% of the span of the
 * given creation times (ms) of the shipments that have a truth row. Exposed so that
 * `flashstream judge shipments` scores the live path on eval's very rows. */
int64_t fls_dispatch_split_s(const int64_t *created_ms, size_t n);

/* Trains a forest regressor on the shipments created in `range` (open --until: 70%
 * of the span) of the simulator folder data_dir and saves it to out. */
int fls_task_dispatch_train(const char *data_dir, const fls_range_t *range, uint64_t seed,
                            const char *out, const char *export_csv, char *errstr,
                            size_t errstr_size);
/* Scores the shipments created in `range` (open --from: 70% of the span). */
int fls_task_dispatch_eval(const char *model_path, const char *data_dir,
                           const fls_range_t *range, const char *export_csv,
                           fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
