/*
 * data_time: date arithmetic for the dataset readers and the --from/--until options.
 * Civil dates are converted with Howard Hinnant's days_from_civil algorithm rather
 * than timegm(), which is not in POSIX and would depend on the process's TZ.
 */
#include "data_time.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int64_t days_from_civil(int64_t y, int m, int d)
{
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        *d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char)(*p)[i]))
                        return -1;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *out = v;
        return 0;
}

int fls_time_parse(const char *text, int64_t *out)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        const char *p = text;
        int y, mo, d, h = 0, mi = 0, s = 0;
        if (!p || digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 ||
            *p++ != '-' || digits(&p, 2, &d) < 0)
                return -1;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
                return -1;
        if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
                return -1;
        if ((*p == ' ' || *p == 'T') && isdigit((unsigned char)p[1])) {
                p++;
                if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0)
                        return -1;
                if (*p == ':') {
                        p++;
                        if (digits(&p, 2, &s) < 0)
                                return -1;
                }
                if (h > 23 || mi > 59 || s > 60)
                        return -1;
        }
        if (strcmp(p, " UTC") == 0 || strcmp(p, "Z") == 0)
                p += strlen(p);
        if (*p)
                return -1;
        *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
        return 0;
}

int64_t fls_time_day(int64_t t)
{
        return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

int fls_time_weekday(int64_t t)
{
        /* 1970-01-01 was a Thursday (3 when Monday is 0). */
        int64_t w = (fls_time_day(t) + 3) % 7;
        return (int)(w < 0 ? w + 7 : w);
}

void fls_time_format(int64_t t, char *buf, size_t size)
{
        int64_t day = fls_time_day(t);
        int64_t sec = t - day * 86400;
        int y, m, d;
        civil_from_days(day, &y, &m, &d);
        if (sec == 0)
                snprintf(buf, size, "%04d-%02d-%02d", y, m, d);
        else
                snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d", y, m, d,
                         (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60));
}

int fls_range_contains(const fls_range_t *r, int64_t t)
{
        if (r->has_from && t < r->from)
                return 0;
        if (r->has_until && t >= r->until)
                return 0;
        return 1;
}

int fls_range_set(fls_range_t *r, const char *from, const char *until, char *errstr,
                  size_t errstr_size)
{
        if (from) {
                if (fls_time_parse(from, &r->from) < 0) {
                        snprintf(errstr, errstr_size,
                                 "--from: '%s' is not a date (YYYY-MM-DD[ HH:MM:SS])",
                                 from);
                        return -1;
                }
                r->has_from = 1;
        }
        if (until) {
                if (fls_time_parse(until, &r->until) < 0) {
                        snprintf(errstr, errstr_size,
                                 "--until: '%s' is not a date (YYYY-MM-DD[ HH:MM:SS])",
                                 until);
                        return -1;
                }
                r->has_until = 1;
        }
        if (r->has_from && r->has_until && r->until <= r->from) {
                snprintf(errstr, errstr_size, "empty range: --until is not after --from");
                return -1;
        }
        return 0;
}
