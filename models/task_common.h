/*
 * task_common: plumbing shared by the task modules (task_delivery, task_demand,
 * task_intent) behind `flashstream train/eval`: a growing feature matrix, the hidden
 * --export-csv writer that feeds tools/compare_sklearn.py, and the default split of a
 * range. Files only; nothing here runs in a consumer.
 */
#ifndef FLS_TASK_COMMON_H
#define FLS_TASK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data_time.h"

/* rows x width floats plus one target per row, grown by fls_rows_add. */
typedef struct {
        float *x;
        float *y;
        size_t n, cap, width;
} fls_rows_t;

void fls_rows_init(fls_rows_t *r, size_t width);
void fls_rows_free(fls_rows_t *r);
/* Appends one row (width floats) and its target; -1 when out of memory. */
int fls_rows_add(fls_rows_t *r, const float *x, float y);

/* Export CSV "split,y,<names...>"; path NULL gives a NULL writer that ignores rows. */
FILE *fls_export_open(const char *path, const char *const *names, size_t n,
                      const char *ycols, char *errstr, size_t errstr_size);
void fls_export_row(FILE *fp, const char *split, const float *y, size_t ny,
                    const float *x, size_t n);
int fls_export_close(FILE *fp, const char *path, char *errstr, size_t errstr_size);

/* The range with the user's ends, and the end that defines the split set to the task's
 * default when left open: train's --until and eval's --from default to `split`. */
fls_range_t fls_range_default(const fls_range_t *given, int64_t split, int is_train);

#endif
