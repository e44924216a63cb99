/*
 * task_participation: will this user buy during the flash sale from now on? A random
 * forest classifier over the user's aggregate features, trained on the simulator's
 * files, for `flashstream train/eval participation`. At the "model" step of Kafka ->
 * Avro -> Redis -> model -> Kafka: the clickstream consumer reads the aggregates back
 * from Redis, fills fls_part_in_t and calls fls_part_row, the function training uses,
 * so the inputs are defined once.
 *
 * Label of an event at time t: the user has a PURCHASE at a time >= max(t, sale start)
 * (in the file). Rows: every event of the first 70% of the file's time span (seeded
 * sample of at most 30k) train, the rest evaluates. Windows are the consumer's:
 * 1-minute event-time buckets, a window of k minutes is the k buckets ending with the
 * event's. Metric: ROC AUC; baselines: the logistic regression on running counts and
 * "viewed in the last 5 minutes".
 */
#ifndef FLS_TASK_PARTICIPATION_H
#define FLS_TASK_PARTICIPATION_H

#include <stddef.h>
#include <stdint.h>

#include "data_time.h"
#include "task_metrics.h"

/* What the model reads of a user at an event. Types as in ClickEvent. */
typedef struct {
        int64_t n[6];          /* lifetime counts per type */
        int64_t w5[6], w30[6]; /* counts in the 5 and 30 minute windows */
        double cart_value;     /* price x quantity added minus removed and bought, >= 0 */
        double since_last_s;   /* since the user's previous event, -1: none */
        double since_purchase_s; /* since the user's last purchase, -1: none */
        double avg_view_price;   /* mean price of the SKUs viewed, 0: none */
        int64_t pre_views;       /* views without a campaign (before the sale) */
} fls_part_in_t;

size_t fls_part_nfeatures(void);
const char *const *fls_part_feature_names(void);
void fls_part_row(const fls_part_in_t *in, float *row);

int fls_task_participation_train(const char *data_dir, const fls_range_t *range,
                                 uint64_t seed, const char *out, const char *export_csv,
                                 char *errstr, size_t errstr_size);
int fls_task_participation_eval(const char *model_path, const char *data_dir,
                                const fls_range_t *range, const char *export_csv,
                                fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
