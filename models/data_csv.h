/*
 * data_csv: a small RFC 4180 CSV reader for the public datasets that `flashstream
 * train` and `flashstream eval` read (Olist, REES46, UCI Online Retail). It sits under
 * the per-dataset readers (data_olist, data_rees46, data_retail); models and consumers
 * never see it. It copes with what those files really contain: quoted fields with
 * commas, doubled quotes and line breaks, empty fields, CRLF or LF, a UTF-8 BOM and a
 * missing final newline.
 */
#ifndef FLS_DATA_CSV_H
#define FLS_DATA_CSV_H

#include <stddef.h>
#include <stdio.h>

typedef struct fls_csv fls_csv_t;

/* Opens path for reading, with `sep` as the field separator (',' or ';'). */
fls_csv_t *fls_csv_open(const char *path, char sep, char *errstr, size_t errstr_size);
/* Reads from an already open stream, which stays owned by the caller. */
fls_csv_t *fls_csv_new(FILE *fp, char sep, char *errstr, size_t errstr_size);
void fls_csv_destroy(fls_csv_t *csv);

/* Reads the next record: 1 when one was read, 0 at end of file, -1 on an error (an
 * unterminated quote, an I/O error or no memory). The fields stay valid until the next
 * call. */
int fls_csv_next(fls_csv_t *csv, char *errstr, size_t errstr_size);
size_t fls_csv_nfields(const fls_csv_t *csv);
/* Field i of the current record, "" when the record has fewer fields. */
const char *fls_csv_field(const fls_csv_t *csv, size_t i);
/* 1-based line number where the current record starts, for error messages. */
long fls_csv_line(const fls_csv_t *csv);
/* Index of the column named `name` in the current record (normally the header), or
 * -1. */
int fls_csv_find(const fls_csv_t *csv, const char *name);

/* Parses a whole field as a double; empty, "NA" and malformed fields fail (-1). */
int fls_csv_double(const char *field, double *out);

/* Opens dir/name with the dataset's usual error message when it is absent. */
fls_csv_t *fls_csv_open_in(const char *dir, const char *name, char sep, char *errstr,
                           size_t errstr_size);

/* Looks up each of the `n` names of `names` in the header; fills idx. -1 when one is
 * missing, naming it in errstr. */
int fls_csv_columns(const fls_csv_t *csv, const char *const *names, int *idx, size_t n,
                    const char *what, char *errstr, size_t errstr_size);

#endif
