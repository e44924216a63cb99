/*
 * data_rees46: the REES46 reader. Events are sorted by time (stable, so same-second
 * events keep the file's order): the file already is, hand-made test files need not be.
 */
#include "data_rees46.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_csv.h"
#include "data_strmap.h"
#include "data_time.h"

void fls_rees46_destroy(fls_rees46_t *d)
{
        if (!d)
                return;
        free(d->ev);
        free(d);
}

static int parse_type(const char *s)
{
        if (strcmp(s, "view") == 0)
                return FLS_EV_VIEW;
        if (strcmp(s, "cart") == 0)
                return FLS_EV_CART;
        if (strcmp(s, "remove_from_cart") == 0)
                return FLS_EV_REMOVE;
        if (strcmp(s, "purchase") == 0)
                return FLS_EV_PURCHASE;
        return -1;
}

/* Insertion-friendly stable merge sort by time (the input is nearly sorted). */
static void sort_events(fls_rees46_event_t *a, fls_rees46_event_t *tmp, size_t n)
{
        if (n < 2)
                return;
        size_t m = n / 2;
        sort_events(a, tmp, m);
        sort_events(a + m, tmp, n - m);
        if (a[m - 1].t <= a[m].t)
                return;
        size_t i = 0, j = m, k = 0;
        while (i < m && j < n)
                tmp[k++] = a[j].t < a[i].t ? a[j++] : a[i++];
        while (i < m)
                tmp[k++] = a[i++];
        while (j < n)
                tmp[k++] = a[j++];
        memcpy(a, tmp, n * sizeof(*a));
}

static fls_rees46_t *load(fls_csv_t *csv, const char *what, char *errstr,
                          size_t errstr_size)
{
        static const char *const cols[] = {"event_time", "event_type", "product_id",
                                           "price", "user_id"};
        int col[5];
        size_t cap = 0;
        fls_strmap_t *users = fls_strmap_new();
        fls_rees46_t *d = calloc(1, sizeof(*d));
        fls_rees46_event_t *tmp = NULL;
        if (!users || !d)
                goto nomem;
        int rc = fls_csv_next(csv, errstr, errstr_size);
        if (rc == 0)
                snprintf(errstr, errstr_size, "%s: empty file", what);
        if (rc <= 0 || fls_csv_columns(csv, cols, col, 5, what, errstr, errstr_size) < 0)
                goto fail;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                if (fls_csv_nfields(csv) < 5)
                        continue;
                fls_rees46_event_t e;
                if (fls_time_parse(fls_csv_field(csv, col[0]), &e.t) < 0) {
                        snprintf(errstr, errstr_size, "%s: line %ld: bad event_time '%s'",
                                 what, fls_csv_line(csv), fls_csv_field(csv, col[0]));
                        goto fail;
                }
                e.type = parse_type(fls_csv_field(csv, col[1]));
                if (e.type < 0) {
                        snprintf(errstr, errstr_size, "%s: line %ld: bad event_type '%s'",
                                 what, fls_csv_line(csv), fls_csv_field(csv, col[1]));
                        goto fail;
                }
                const char *user = fls_csv_field(csv, col[4]);
                if (!*user) {
                        snprintf(errstr, errstr_size, "%s: line %ld: empty user_id", what,
                                 fls_csv_line(csv));
                        goto fail;
                }
                e.user = fls_strmap_get(users, user);
                if (e.user < 0) {
                        e.user = (int)fls_strmap_size(users);
                        if (fls_strmap_put(users, user, e.user) < 0)
                                goto nomem;
                }
                if (fls_csv_double(fls_csv_field(csv, col[3]), &e.price) < 0)
                        e.price = NAN;
                e.product = strtoll(fls_csv_field(csv, col[2]), NULL, 10);
                if (d->n == cap) {
                        cap = cap ? cap * 2 : 4096;
                        fls_rees46_event_t *ne = realloc(d->ev, cap * sizeof(*ne));
                        if (!ne)
                                goto nomem;
                        d->ev = ne;
                }
                d->ev[d->n++] = e;
        }
        if (rc < 0)
                goto fail;
        if (d->n == 0) {
                snprintf(errstr, errstr_size, "%s: no events", what);
                goto fail;
        }
        tmp = malloc(d->n * sizeof(*tmp));
        if (!tmp)
                goto nomem;
        sort_events(d->ev, tmp, d->n);
        free(tmp);
        d->nusers = fls_strmap_size(users);
        d->last_t = d->ev[d->n - 1].t;
        fls_strmap_destroy(users);
        return d;
nomem:
        snprintf(errstr, errstr_size, "%s: out of memory", what);
fail:
        fls_strmap_destroy(users);
        fls_rees46_destroy(d);
        return NULL;
}

fls_rees46_t *fls_rees46_load_file(const char *path, char *errstr, size_t errstr_size)
{
        fls_csv_t *csv = fls_csv_open(path, ',', errstr, errstr_size);
        if (!csv)
                return NULL;
        fls_rees46_t *d = load(csv, path, errstr, errstr_size);
        fls_csv_destroy(csv);
        return d;
}

fls_rees46_t *fls_rees46_load(const char *dir, char *errstr, size_t errstr_size)
{
        fls_csv_t *csv =
            fls_csv_open_in(dir, "2019-Oct_head17k.csv", ',', errstr, errstr_size);
        if (!csv)
                return NULL;
        fls_rees46_t *d = load(csv, "2019-Oct_head17k.csv", errstr, errstr_size);
        fls_csv_destroy(csv);
        return d;
}
