/*
 * data_time: timestamps of the public datasets and the --from/--until ranges of
 * `flashstream train` and `flashstream eval`. Every dataset gives local wall-clock
 * times without a zone (REES46 says UTC); they are all read as if UTC, which keeps
 * day boundaries and differences exact and needs no time-zone database.
 */
#ifndef FLS_DATA_TIME_H
#define FLS_DATA_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Seconds since 1970-01-01 00:00:00 of "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS]" or
 * "YYYY-MM-DDTHH:MM[:SS]", optionally followed by " UTC" or "Z". -1 on bad text. */
int fls_time_parse(const char *text, int64_t *out);
/* Writes "YYYY-MM-DD HH:MM:SS" (or "YYYY-MM-DD" when the time is midnight). */
void fls_time_format(int64_t t, char *buf, size_t size);
/* Days since 1970-01-01 of time t (floor). */
int64_t fls_time_day(int64_t t);
/* 0 = Monday ... 6 = Sunday. */
int fls_time_weekday(int64_t t);

/* A half-open time range [from, until); either end may be open. */
typedef struct {
        int64_t from, until;
        int has_from, has_until;
} fls_range_t;

#define FLS_RANGE_ALL ((fls_range_t){0, 0, 0, 0})

int fls_range_contains(const fls_range_t *r, int64_t t);
/* Sets r's ends from the option texts (NULL leaves that end as it is). -1 on a bad
 * date or an empty range. */
int fls_range_set(fls_range_t *r, const char *from, const char *until, char *errstr,
                  size_t errstr_size);

#endif
