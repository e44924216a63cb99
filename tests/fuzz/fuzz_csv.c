/*
 * fuzz_csv: the CSV reader under `flashstream train` and `eval` (models/data_csv.c),
 * which feeds the models of the "model" step of Kafka -> Avro -> Redis -> model ->
 * Kafka from public datasets we do not control.
 *
 * Input: [separator][file]. The first byte's low bit picks ',' or ';' (the two the
 * dataset readers use); the rest is read through fmemopen as the stream. Every record
 * is read field by field as the dataset readers do (fls_csv_find, fls_csv_double).
 * Invariant: the reader is a fixed point of a strict writer: the records written back
 * with every field quoted (quotes doubled) read back to the same records.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_csv.h"

#define MAX_RECORDS 100000

/* Reads every record of fp, checks what a record promises and writes it, strictly
 * quoted, to out. Returns the number of records read. */
static size_t read_all(FILE *fp, char sep, FILE *out)
{
        char err[512];
        fls_csv_t *csv = fls_csv_new(fp, sep, err, sizeof(err));
        size_t n = 0;
        long line = 0;
        int rc = 0;

        if (!csv)
                fls_fuzz_fail("csv", "new: %s", err);
        err[0] = '\0';
        while (n < MAX_RECORDS && (rc = fls_csv_next(csv, err, sizeof(err))) == 1) {
                size_t nf = fls_csv_nfields(csv);
                if (nf == 0 || fls_csv_line(csv) < 1 || fls_csv_line(csv) <= line)
                        fls_fuzz_fail("csv", "record %zu: %zu fields at line %ld", n, nf,
                                      fls_csv_line(csv));
                line = fls_csv_line(csv);
                if (strcmp(fls_csv_field(csv, nf), "") != 0)
                        fls_fuzz_fail("csv", "field past the end is not empty");
                for (size_t i = 0; i < nf; i++) {
                        const char *f = fls_csv_field(csv, i);
                        double d;
                        int at = fls_csv_find(csv, f);
                        if (at < 0 || (size_t)at > i)
                                fls_fuzz_fail("csv", "field %zu found at %d", i, at);
                        (void)fls_csv_double(f, &d);
                        if (i)
                                fputc(sep, out);
                        fputc('"', out);
                        for (; *f; f++) {
                                if (*f == '"')
                                        fputc('"', out);
                                fputc(*f, out);
                        }
                        fputc('"', out);
                }
                fputc('\n', out);
                n++;
        }
        if (rc < 0 && !err[0])
                fls_fuzz_fail("csv", "error without a message");
        fls_csv_destroy(csv);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text1 = NULL, *text2 = NULL;
        size_t len1 = 0, len2 = 0, n1, n2;
        FILE *in, *out;
        char sep;

        if (size < 2)
                return 0; /* fmemopen refuses an empty buffer */
        sep = data[0] & 1 ? ';' : ',';
        in = fmemopen((void *)(data + 1), size - 1, "rb");
        out = open_memstream(&text1, &len1);
        if (!in || !out)
                fls_fuzz_fail("csv", "fmemopen/open_memstream failed");
        n1 = read_all(in, sep, out);
        fclose(in);
        fclose(out);
        if (len1 == 0) {
                free(text1);
                return 0;
        }
        in = fmemopen(text1, len1, "rb");
        out = open_memstream(&text2, &len2);
        if (!in || !out)
                fls_fuzz_fail("csv", "fmemopen/open_memstream failed");
        n2 = read_all(in, sep, out);
        fclose(in);
        fclose(out);
        if (n1 != n2 || len1 != len2 || memcmp(text1, text2, len1) != 0)
                fls_fuzz_fail("csv", "records change when written back: %zu -> %zu", n1,
                              n2);
        free(text1);
        free(text2);
        return 0;
}
