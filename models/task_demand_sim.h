/*
 * task_demand_sim: the short-horizon demand task on the flash-sale simulator's files,
 * for `flashstream train/eval demand-sim`, and the feature rows the orders consumer
 * builds from its Redis rings (Kafka -> Avro -> Redis -> *model* -> Kafka). The same
 * row functions serve both, so the model sees in production exactly what it saw in
 * training.
 *
 * Unit: one SKU at one warehouse (a "cell") and 1-minute intervals aligned to the
 * epoch, like the consumer's "sales" ring and the simulator's truth_demand.csv. At an
 * origin (the start of interval b) the LSTM reads the last FLS_DSIM_T complete
 * intervals b-T..b-1, each step: units placed, lines placed, stock on hand at the
 * origin and the mean units per interval over the last 60 intervals (the last two
 * repeated on every step), and forecasts the true demand (units demanded, lost sales
 * included, from truth_demand.csv) over the next FLS_DSIM_H intervals b..b+H-1.
 *
 * The inputs are what the consumer can see: units and lines placed come from
 * orders.csv (PLACED lines, the events the consumer reads), stock from replaying
 * receipts, placements, cancellations and refunds in file order. Only the target
 * comes from the ground truth.
 *
 * Train on one simulator run, evaluate on a run with another seed (`--data` of eval).
 * Baselines: the last FLS_DSIM_H intervals' units placed, and the 15-interval mean
 * rate times FLS_DSIM_H. Metric: MAE in units.
 */
#ifndef FLS_TASK_DEMAND_SIM_H
#define FLS_TASK_DEMAND_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "data_time.h"
#include "task_metrics.h"

#define FLS_DSIM_IVL_MS 60000 /* interval width */
#define FLS_DSIM_T      15    /* history intervals read by the LSTM */
#define FLS_DSIM_H      5     /* forecast horizon, intervals */
#define FLS_DSIM_LONG   60    /* intervals of the long mean rate */
#define FLS_DSIM_NF     4     /* features per step */

/* Feature names per step, in row order. */
const char *const *fls_dsim_feature_names(void);

/* One LSTM row (T * NF floats) from the history of one cell: units[k] and lines[k]
 * for the intervals b-T+k (k = 0..T-1, oldest first), the mean units per interval of
 * the last FLS_DSIM_LONG intervals and the stock on hand at the origin. */
void fls_dsim_row(const float *units, const float *lines, float rate60, float on_hand,
                  float *x);

/* A simulator run loaded for training: per cell and interval, units and lines placed,
 * units demanded (truth) and stock at the end of the interval. */
typedef struct {
        uint32_t nskus, nwh, ncells;
        int64_t first_ivl; /* interval number (ts / IVL) of index 0 */
        size_t nivl;
        float *units, *lines, *demand, *stock; /* [cell * nivl + i] */
        uint8_t *carried;                      /* [cell]: had a stock receipt */
        int64_t start_ts, end_ts;
} fls_dsim_data_t;

fls_dsim_data_t *fls_dsim_load(const char *dir, char *errstr, size_t errstr_size);
void fls_dsim_destroy(fls_dsim_data_t *d);

/* The row of cell c at origin index i (i >= FLS_DSIM_T): fills x (T * NF floats). */
void fls_dsim_data_row(const fls_dsim_data_t *d, uint32_t c, size_t i, float *x);
/* Units placed in cell c over the n intervals ending before origin i (i-n..i-1). */
double fls_dsim_placed(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t n);
/* True demand of cell c over intervals i..i+n-1. */
double fls_dsim_demand(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t n);
/* Whether the row at (c, i) is used: the cell is carried and something happened in
 * its history or horizon (the consumer only scores cells whose events it sees). */
int fls_dsim_active(const fls_dsim_data_t *d, uint32_t c, size_t i, size_t horizon);

int fls_task_demand_sim_train(const char *data_dir, const fls_range_t *range,
                              uint64_t seed, const char *out, const char *export_csv,
                              char *errstr, size_t errstr_size);
int fls_task_demand_sim_eval(const char *model_path, const char *data_dir,
                             const fls_range_t *range, const char *export_csv,
                             fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
