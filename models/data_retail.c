/*
 * data_retail: the UCI Online Retail reader. Two passes over the lines kept in memory
 * would be simpler but the file is small enough that one pass collecting (day, units)
 * pairs and a second over the pairs costs nothing.
 */
#include "data_retail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_csv.h"
#include "data_time.h"

void fls_retail_destroy(fls_retail_t *r)
{
        if (!r)
                return;
        free(r->units);
        free(r);
}

static fls_retail_t *load(fls_csv_t *csv, const char *what, char *errstr,
                          size_t errstr_size)
{
        static const char *const cols[] = {"InvoiceNo", "Quantity", "InvoiceDate"};
        int col[3];
        int64_t *day = NULL;
        double *qty = NULL;
        size_t n = 0, cap = 0;
        fls_retail_t *r = NULL;
        int rc = fls_csv_next(csv, errstr, errstr_size);
        if (rc == 0)
                snprintf(errstr, errstr_size, "%s: empty file", what);
        if (rc <= 0 || fls_csv_columns(csv, cols, col, 3, what, errstr, errstr_size) < 0)
                goto fail;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                if (fls_csv_nfields(csv) < 3)
                        continue;
                const char *inv = fls_csv_field(csv, col[0]);
                double q;
                int64_t t;
                if (fls_time_parse(fls_csv_field(csv, col[2]), &t) < 0) {
                        snprintf(errstr, errstr_size,
                                 "%s: line %ld: bad InvoiceDate '%s'", what,
                                 fls_csv_line(csv), fls_csv_field(csv, col[2]));
                        goto fail;
                }
                if (fls_csv_double(fls_csv_field(csv, col[1]), &q) < 0) {
                        snprintf(errstr, errstr_size, "%s: line %ld: bad Quantity '%s'",
                                 what, fls_csv_line(csv), fls_csv_field(csv, col[1]));
                        goto fail;
                }
                if (n == cap) {
                        cap = cap ? cap * 2 : 4096;
                        int64_t *d2 = realloc(day, cap * sizeof(*d2));
                        if (!d2)
                                goto nomem;
                        day = d2;
                        double *q2 = realloc(qty, cap * sizeof(*q2));
                        if (!q2)
                                goto nomem;
                        qty = q2;
                }
                /* The day counts even when its lines are all cancellations: it is
                 * inside the span and its sales are 0. */
                day[n] = fls_time_day(t);
                qty[n] = (inv[0] == 'C' || q <= 0) ? 0 : q;
                n++;
        }
        if (rc < 0)
                goto fail;
        if (n == 0) {
                snprintf(errstr, errstr_size, "%s: no invoice lines", what);
                goto fail;
        }
        int64_t lo = day[0], hi = day[0];
        for (size_t i = 1; i < n; i++) {
                lo = day[i] < lo ? day[i] : lo;
                hi = day[i] > hi ? day[i] : hi;
        }
        r = calloc(1, sizeof(*r));
        if (!r)
                goto nomem;
        r->first_day = lo;
        r->ndays = (size_t)(hi - lo + 1);
        r->units = calloc(r->ndays, sizeof(*r->units));
        if (!r->units)
                goto nomem;
        for (size_t i = 0; i < n; i++)
                r->units[day[i] - lo] += qty[i];
        free(day);
        free(qty);
        return r;
nomem:
        snprintf(errstr, errstr_size, "%s: out of memory", what);
fail:
        free(day);
        free(qty);
        fls_retail_destroy(r);
        return NULL;
}

fls_retail_t *fls_retail_load_file(const char *path, char *errstr, size_t errstr_size)
{
        fls_csv_t *csv = fls_csv_open(path, ',', errstr, errstr_size);
        if (!csv)
                return NULL;
        fls_retail_t *r = load(csv, path, errstr, errstr_size);
        fls_csv_destroy(csv);
        return r;
}

fls_retail_t *fls_retail_load(const char *dir, char *errstr, size_t errstr_size)
{
        fls_csv_t *csv =
            fls_csv_open_in(dir, "online_retail_random20k.csv", ',', errstr, errstr_size);
        if (!csv)
                return NULL;
        fls_retail_t *r = load(csv, "online_retail_random20k.csv", errstr, errstr_size);
        fls_csv_destroy(csv);
        return r;
}
