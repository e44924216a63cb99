/*
 * data_csv: the CSV reader under every dataset reader of `flashstream train/eval`.
 * A record is read into one growing buffer; fields are NUL-terminated slices of it, so
 * a record costs no allocation once the buffers have grown to the longest line.
 */
#include "data_csv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fls_csv {
        FILE *fp;
        int own;
        char sep;
        long line;       /* line of the next character */
        long start_line; /* line where the current record starts */
        int first;       /* no record read yet: skip a UTF-8 BOM */
        char *buf;
        size_t len, cap;
        size_t *off; /* field start offsets into buf */
        size_t nf, fcap;
        char **fields; /* rebuilt from off once the record is complete */
        size_t fields_cap;
};

fls_csv_t *fls_csv_new(FILE *fp, char sep, char *errstr, size_t errstr_size)
{
        fls_csv_t *csv = calloc(1, sizeof(*csv));
        if (!csv) {
                snprintf(errstr, errstr_size, "csv: out of memory");
                return NULL;
        }
        csv->fp = fp;
        csv->sep = sep;
        csv->line = 1;
        csv->first = 1;
        return csv;
}

fls_csv_t *fls_csv_open(const char *path, char sep, char *errstr, size_t errstr_size)
{
        FILE *fp = fopen(path, "rb");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return NULL;
        }
        fls_csv_t *csv = fls_csv_new(fp, sep, errstr, errstr_size);
        if (!csv) {
                fclose(fp);
                return NULL;
        }
        csv->own = 1;
        return csv;
}

fls_csv_t *fls_csv_open_in(const char *dir, const char *name, char sep, char *errstr,
                           size_t errstr_size)
{
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
                snprintf(errstr, errstr_size, "path too long: %s/%s", dir, name);
                return NULL;
        }
        FILE *fp = fopen(path, "rb");
        if (!fp) {
                snprintf(errstr, errstr_size,
                         "cannot read %s: %s (is --data the dataset folder?)", path,
                         strerror(errno));
                return NULL;
        }
        fls_csv_t *csv = fls_csv_new(fp, sep, errstr, errstr_size);
        if (!csv) {
                fclose(fp);
                return NULL;
        }
        csv->own = 1;
        return csv;
}

void fls_csv_destroy(fls_csv_t *csv)
{
        if (!csv)
                return;
        if (csv->own && csv->fp)
                fclose(csv->fp);
        free(csv->buf);
        free(csv->off);
        free(csv->fields);
        free(csv);
}

static int push_char(fls_csv_t *csv, char c)
{
        if (csv->len + 1 >= csv->cap) {
                size_t cap = csv->cap ? csv->cap * 2 : 1024;
                char *b = realloc(csv->buf, cap);
                if (!b)
                        return -1;
                csv->buf = b;
                csv->cap = cap;
        }
        csv->buf[csv->len++] = c;
        return 0;
}

/* Ends the current field (NUL) and records where the next one starts. */
static int start_field(fls_csv_t *csv)
{
        if (csv->nf == csv->fcap) {
                size_t cap = csv->fcap ? csv->fcap * 2 : 32;
                size_t *o = realloc(csv->off, cap * sizeof(*o));
                if (!o)
                        return -1;
                csv->off = o;
                csv->fcap = cap;
        }
        csv->off[csv->nf++] = csv->len;
        return 0;
}

int fls_csv_next(fls_csv_t *csv, char *errstr, size_t errstr_size)
{
        int c;
        csv->len = 0;
        csv->nf = 0;
        if (csv->first) {
                csv->first = 0;
                int a = getc(csv->fp);
                if (a == 0xEF) {
                        int b = getc(csv->fp), d = getc(csv->fp);
                        if (b != 0xBB || d != 0xBF) {
                                snprintf(errstr, errstr_size,
                                         "csv: line 1: invalid UTF-8 at the start");
                                return -1;
                        }
                } else if (a != EOF) {
                        ungetc(a, csv->fp);
                }
        }
        c = getc(csv->fp);
        if (c == EOF) {
                if (ferror(csv->fp)) {
                        snprintf(errstr, errstr_size, "csv: read error: %s",
                                 strerror(errno));
                        return -1;
                }
                return 0;
        }
        csv->start_line = csv->line;
        if (start_field(csv) < 0)
                goto nomem;
        int quoted = 0; /* inside a quoted section */
        for (;; c = getc(csv->fp)) {
                if (c == EOF) {
                        if (ferror(csv->fp)) {
                                snprintf(errstr, errstr_size, "csv: read error: %s",
                                         strerror(errno));
                                return -1;
                        }
                        if (quoted) {
                                snprintf(errstr, errstr_size,
                                         "csv: line %ld: unterminated quoted field",
                                         csv->start_line);
                                return -1;
                        }
                        break;
                }
                if (quoted) {
                        if (c == '"') {
                                int n = getc(csv->fp);
                                if (n == '"') {
                                        if (push_char(csv, '"') < 0)
                                                goto nomem;
                                        continue;
                                }
                                quoted = 0;
                                if (n != EOF)
                                        ungetc(n, csv->fp);
                                continue;
                        }
                        if (c == '\n')
                                csv->line++;
                        if (push_char(csv, (char)c) < 0)
                                goto nomem;
                        continue;
                }
                if (c == '"') {
                        /* A quote opens a quoted section anywhere; fields like
                         * ab"c,d" are not valid CSV but are read leniently. */
                        quoted = 1;
                        continue;
                }
                if (c == csv->sep) {
                        if (push_char(csv, '\0') < 0 || start_field(csv) < 0)
                                goto nomem;
                        continue;
                }
                if (c == '\r') {
                        int n = getc(csv->fp);
                        if (n != '\n' && n != EOF)
                                ungetc(n, csv->fp);
                        csv->line++;
                        break;
                }
                if (c == '\n') {
                        csv->line++;
                        break;
                }
                if (push_char(csv, (char)c) < 0)
                        goto nomem;
        }
        if (push_char(csv, '\0') < 0)
                goto nomem;
        if (csv->fields_cap < csv->nf) {
                char **f = realloc(csv->fields, csv->nf * sizeof(*f));
                if (!f)
                        goto nomem;
                csv->fields = f;
                csv->fields_cap = csv->nf;
        }
        for (size_t i = 0; i < csv->nf; i++)
                csv->fields[i] = csv->buf + csv->off[i];
        return 1;
nomem:
        snprintf(errstr, errstr_size, "csv: line %ld: out of memory", csv->start_line);
        return -1;
}

size_t fls_csv_nfields(const fls_csv_t *csv)
{
        return csv->nf;
}

const char *fls_csv_field(const fls_csv_t *csv, size_t i)
{
        return i < csv->nf ? csv->fields[i] : "";
}

long fls_csv_line(const fls_csv_t *csv)
{
        return csv->start_line;
}

int fls_csv_find(const fls_csv_t *csv, const char *name)
{
        for (size_t i = 0; i < csv->nf; i++)
                if (strcmp(csv->fields[i], name) == 0)
                        return (int)i;
        return -1;
}

int fls_csv_columns(const fls_csv_t *csv, const char *const *names, int *idx, size_t n,
                    const char *what, char *errstr, size_t errstr_size)
{
        for (size_t i = 0; i < n; i++) {
                idx[i] = fls_csv_find(csv, names[i]);
                if (idx[i] < 0) {
                        snprintf(errstr, errstr_size, "%s: no column '%s' in the header",
                                 what, names[i]);
                        return -1;
                }
        }
        return 0;
}

int fls_csv_double(const char *field, double *out)
{
        if (!field || !*field || strcmp(field, "NA") == 0)
                return -1;
        char *end;
        errno = 0;
        double v = strtod(field, &end);
        if (end == field || *end || errno == ERANGE || !isfinite(v))
                return -1;
        *out = v;
        return 0;
}
