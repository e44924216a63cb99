/*
 * data_retail: reads the UCI Online Retail sample into a daily series of units sold,
 * for the demand task (task_demand) of `flashstream train/eval demand`. Only positive
 * quantities of invoices not starting with 'C' (cancellations) count; days without a
 * sale between the first and the last invoice are 0.
 */
#ifndef FLS_DATA_RETAIL_H
#define FLS_DATA_RETAIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
        int64_t first_day; /* days since 1970-01-01 of units[0] */
        size_t ndays;
        double *units;
} fls_retail_t;

/* Reads dir/online_retail_random20k.csv. */
fls_retail_t *fls_retail_load(const char *dir, char *errstr, size_t errstr_size);
/* Same from one CSV file with the dataset's header (tests use hand-made files). */
fls_retail_t *fls_retail_load_file(const char *path, char *errstr, size_t errstr_size);
void fls_retail_destroy(fls_retail_t *r);

#endif
