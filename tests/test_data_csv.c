/*
 * test_data_csv: the CSV reader (data_csv) on tricky lines, the timestamp parser and
 * the --from/--until ranges (data_time) under the dataset readers of `flashstream
 * train/eval`.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "data_csv.h"
#include "data_time.h"

static fls_csv_t *from_text(const char *text, char sep, FILE **fp)
{
        char err[256];
        *fp = fmemopen((void *)text, strlen(text), "r");
        cr_assert_not_null(*fp);
        fls_csv_t *csv = fls_csv_new(*fp, sep, err, sizeof(err));
        cr_assert_not_null(csv, "%s", err);
        return csv;
}

Test(data_csv, quoted_commas_quotes_empty_fields_crlf_bom)
{
        const char *text = "\xEF\xBB\xBF"
                           "a,b,c\r\n"
                           "\"x, y\",,\"say \"\"hi\"\"\"\r\n"
                           ",\"\",\r\n"
                           "\"multi\nline\",2,3";
        FILE *fp;
        char err[256];
        fls_csv_t *csv = from_text(text, ',', &fp);
        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 1);
        cr_assert_eq(fls_csv_nfields(csv), 3);
        cr_assert_str_eq(fls_csv_field(csv, 0), "a"); /* BOM stripped */
        cr_assert_eq(fls_csv_find(csv, "c"), 2);
        cr_assert_eq(fls_csv_find(csv, "zz"), -1);

        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 1);
        cr_assert_eq(fls_csv_nfields(csv), 3);
        cr_assert_str_eq(fls_csv_field(csv, 0), "x, y");
        cr_assert_str_eq(fls_csv_field(csv, 1), "");
        cr_assert_str_eq(fls_csv_field(csv, 2), "say \"hi\"");

        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 1);
        cr_assert_eq(fls_csv_nfields(csv), 3);
        for (int i = 0; i < 3; i++)
                cr_assert_str_eq(fls_csv_field(csv, (size_t)i), "");
        cr_assert_str_eq(fls_csv_field(csv, 7), ""); /* past the end */

        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 1);
        cr_assert_str_eq(fls_csv_field(csv, 0), "multi\nline");
        cr_assert_str_eq(fls_csv_field(csv, 2), "3"); /* no final newline */
        cr_assert_eq(fls_csv_line(csv), 4);           /* where the record starts */
        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 0);
        fls_csv_destroy(csv);
        fclose(fp);
}

Test(data_csv, semicolon_and_unterminated_quote)
{
        FILE *fp;
        char err[256] = "";
        fls_csv_t *csv = from_text("a;\"b;c\"\n\"open,x\n", ';', &fp);
        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), 1);
        cr_assert_eq(fls_csv_nfields(csv), 2);
        cr_assert_str_eq(fls_csv_field(csv, 1), "b;c");
        cr_assert_eq(fls_csv_next(csv, err, sizeof(err)), -1);
        cr_assert(strstr(err, "unterminated") != NULL, "%s", err);
        fls_csv_destroy(csv);
        fclose(fp);
        fls_csv_destroy(NULL);
}

Test(data_csv, numbers_and_missing_file)
{
        double v = 0;
        char err[256] = "";
        cr_assert_eq(fls_csv_double("2.5", &v), 0);
        cr_assert_float_eq(v, 2.5, 1e-12);
        cr_assert_eq(fls_csv_double("", &v), -1);
        cr_assert_eq(fls_csv_double("NA", &v), -1);
        cr_assert_eq(fls_csv_double("3x", &v), -1);
        cr_assert_null(
            fls_csv_open_in("/nonexistent-dir", "f.csv", ',', err, sizeof(err)));
        cr_assert(strstr(err, "/nonexistent-dir/f.csv") != NULL, "%s", err);
}

Test(data_time, parse_format_weekday)
{
        int64_t t;
        cr_assert_eq(fls_time_parse("1970-01-02", &t), 0);
        cr_assert_eq(t, 86400);
        cr_assert_eq(fls_time_parse("2019-10-01 00:00:05 UTC", &t), 0);
        cr_assert_eq(t, 1569888005);
        cr_assert_eq(fls_time_parse("2019-10-01T02:24", &t), 0);
        cr_assert_eq(t, 1569888000 + 2 * 3600 + 24 * 60);
        cr_assert_eq(fls_time_weekday(t), 1); /* a Tuesday */
        char buf[32];
        fls_time_format(t, buf, sizeof(buf));
        cr_assert_str_eq(buf, "2019-10-01 02:24:00");
        fls_time_format(1569888000, buf, sizeof(buf));
        cr_assert_str_eq(buf, "2019-10-01");
        cr_assert_eq(fls_time_parse("2017-02-29", &t), -1);
        cr_assert_eq(fls_time_parse("2016-02-29", &t), 0);
        cr_assert_eq(fls_time_parse("2017-13-01", &t), -1);
        cr_assert_eq(fls_time_parse("2017-01-01 25:00:00", &t), -1);
        cr_assert_eq(fls_time_parse("2017-01-01x", &t), -1);
        cr_assert_eq(fls_time_parse("", &t), -1);
}

Test(data_time, ranges_half_open)
{
        fls_range_t r = FLS_RANGE_ALL;
        char err[256];
        cr_assert_eq(fls_range_contains(&r, -5), 1);
        cr_assert_eq(fls_range_set(&r, "2017-09-01", "2017-09-02", err, sizeof(err)), 0);
        int64_t a, b;
        fls_time_parse("2017-09-01", &a);
        fls_time_parse("2017-09-02", &b);
        cr_assert_eq(fls_range_contains(&r, a - 1), 0);
        cr_assert_eq(fls_range_contains(&r, a), 1); /* --from inclusive */
        cr_assert_eq(fls_range_contains(&r, b - 1), 1);
        cr_assert_eq(fls_range_contains(&r, b), 0); /* --until exclusive */
        fls_range_t bad = FLS_RANGE_ALL;
        cr_assert_eq(fls_range_set(&bad, "2017-09-02", "2017-09-01", err, sizeof(err)),
                     -1);
        cr_assert_eq(fls_range_set(&bad, "yesterday", NULL, err, sizeof(err)), -1);
        cr_assert(strstr(err, "--from") != NULL, "%s", err);
}
