/*
 * task_inventory: the stock-needed regression of the orders consumer, for `flashstream
 * train/eval inventory` on the simulator's files (Kafka -> Avro -> Redis -> *model* ->
 * Kafka). It turns the demand LSTM's forecast (task_demand_sim), the recent sales
 * rates, their trend and a warehouse's cover time (lead time + safety period) into the
 * units needed to cover that time: the consumer compares it with stock on hand.
 *
 * Need grows with the cover time, so every rate enters multiplied by the cover (in
 * intervals): fc (LSTM units over FLS_DSIM_H intervals, per interval) x cover, last
 * interval's units x cover, 5-, 15- and 60-interval mean rates x cover, trend (5- minus
 * 15-interval rate) x cover, and the cover itself. Target: true demand over the cover
 * (truth_demand.csv). Training rows draw a cover of 2..15 intervals per row (seeded) so
 * that one model serves every warehouse's lead time.
 *
 * The demand model is read from demand-sim.flsm in the folder of --out (train) or of
 * --model (eval): models/train-defaults.sh trains it first. Baselines: the LSTM's rate
 * x cover, and the 15-interval mean rate x cover. Metric: MAE in units.
 */
#ifndef FLS_TASK_INVENTORY_H
#define FLS_TASK_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "data_time.h"
#include "task_metrics.h"

#define FLS_INV_NF 7

const char *const *fls_inv_feature_names(void);
/* One row (FLS_INV_NF floats). fc5: LSTM units over FLS_DSIM_H intervals; r1, r5,
 * r15, r60: mean units placed per interval over the last 1, 5, 15, 60 complete
 * intervals; cover: lead time + safety period in intervals. */
void fls_inv_row(float fc5, float r1, float r5, float r15, float r60, float cover,
                 float *x);

int fls_task_inventory_train(const char *data_dir, const fls_range_t *range,
                             uint64_t seed, const char *out, const char *export_csv,
                             char *errstr, size_t errstr_size);
int fls_task_inventory_eval(const char *model_path, const char *data_dir,
                            const fls_range_t *range, const char *export_csv,
                            fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
