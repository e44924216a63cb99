/*
 * task_common: shared plumbing of the task modules. The export writes floats with %.9g
 * so that Python reads exactly the values the C model saw.
 */
#include "task_common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fls_rows_init(fls_rows_t *r, size_t width)
{
        memset(r, 0, sizeof(*r));
        r->width = width;
}

void fls_rows_free(fls_rows_t *r)
{
        if (!r)
                return;
        free(r->x);
        free(r->y);
        r->x = r->y = NULL;
        r->n = r->cap = 0;
}

int fls_rows_add(fls_rows_t *r, const float *x, float y)
{
        if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 1024;
                float *nx = realloc(r->x, cap * r->width * sizeof(*nx));
                if (!nx)
                        return -1;
                r->x = nx;
                float *ny = realloc(r->y, cap * sizeof(*ny));
                if (!ny)
                        return -1;
                r->y = ny;
                r->cap = cap;
        }
        memcpy(r->x + r->n * r->width, x, r->width * sizeof(*x));
        r->y[r->n++] = y;
        return 0;
}

FILE *fls_export_open(const char *path, const char *const *names, size_t n,
                      const char *ycols, char *errstr, size_t errstr_size)
{
        if (!path)
                return NULL;
        FILE *fp = fopen(path, "w");
        if (!fp) {
                snprintf(errstr, errstr_size, "--export-csv %s: %s", path,
                         strerror(errno));
                return NULL;
        }
        fprintf(fp, "split,%s", ycols);
        for (size_t i = 0; i < n; i++)
                fprintf(fp, ",%s", names[i]);
        fputc('\n', fp);
        return fp;
}

void fls_export_row(FILE *fp, const char *split, const float *y, size_t ny,
                    const float *x, size_t n)
{
        if (!fp)
                return;
        fputs(split, fp);
        for (size_t i = 0; i < ny; i++)
                fprintf(fp, ",%.9g", (double)y[i]);
        for (size_t i = 0; i < n; i++)
                fprintf(fp, ",%.9g", (double)x[i]);
        fputc('\n', fp);
}

int fls_export_close(FILE *fp, const char *path, char *errstr, size_t errstr_size)
{
        if (!fp)
                return 0;
        int bad = ferror(fp);
        if (fclose(fp) != 0 || bad) {
                snprintf(errstr, errstr_size, "--export-csv %s: write failed", path);
                return -1;
        }
        return 0;
}

fls_range_t fls_range_default(const fls_range_t *given, int64_t split, int is_train)
{
        fls_range_t r = *given;
        if (is_train && !r.has_until) {
                r.until = split;
                r.has_until = 1;
        } else if (!is_train && !r.has_from) {
                r.from = split;
                r.has_from = 1;
        }
        return r;
}
