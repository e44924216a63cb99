/*
 * task_demand: the demand task on the UCI Online Retail sample, for `flashstream
 * train/eval demand`. From each day (the origin, data up to and including it) the
 * model forecasts the total units of each of the next 7 days. One LSTM regressor
 * serves all 7 horizons: a row is the last 28 days (units, zero flag, day of week)
 * plus the horizon, the target's day of week and the 28-day level on every step.
 *
 * The model's output is (units of the target day + 1) / (28-day mean at the origin
 * + 1) - 1, the change relative to the recent level; fls_task_demand_units() turns it
 * back into units. (A log-ratio target did worse on a validation period: its squared
 * loss is dominated by the days without sales.)
 *
 * Split (out of time): origins before 2011-07-01 whose 7 targets also fall before it
 * train; origins from 2011-07-01 whose targets are in the data (up to 2011-09-30)
 * evaluate. Metrics: MAE in units and MASE, scaled by the training period's 7-day
 * seasonal-naive MAE (stored in the model file). Baselines: seasonal naive (same
 * weekday last week) and the 28-day moving average.
 */
#ifndef FLS_TASK_DEMAND_H
#define FLS_TASK_DEMAND_H

#include <stddef.h>
#include <stdint.h>

#include "data_retail.h"
#include "data_time.h"
#include "task_metrics.h"

#define FLS_DEMAND_SPLIT   "2011-07-01"
#define FLS_DEMAND_WINDOW  28
#define FLS_DEMAND_HORIZON 7

size_t fls_task_demand_nfeatures(void); /* per time step */
const char *const *fls_task_demand_feature_names(void);

/* The row of origin day index o (>= WINDOW-1) and horizon h (1..HORIZON):
 * WINDOW * nfeatures floats. */
void fls_task_demand_row(const fls_retail_t *r, size_t o, int h, float *x);
/* Units forecast from the model output of the row of origin o. */
double fls_task_demand_units(const fls_retail_t *r, size_t o, float out);
/* Baselines for the target o + h. */
double fls_task_demand_snaive(const fls_retail_t *r, size_t o, int h);
double fls_task_demand_ma28(const fls_retail_t *r, size_t o);

int fls_task_demand_train(const char *data_dir, const fls_range_t *range, uint64_t seed,
                          const char *out, const char *export_csv, char *errstr,
                          size_t errstr_size);
int fls_task_demand_eval(const char *model_path, const char *data_dir,
                         const fls_range_t *range, const char *export_csv,
                         fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
