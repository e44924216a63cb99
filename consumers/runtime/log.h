/*
 * log: JSON-lines logging on stderr, one object per line, for every process.
 *
 * {"ts":"2026-11-29T18:00:00.123Z","level":"info","comp":"runner","msg":"..."}
 * Cheap enough for start-up, rebalances and errors; never called per message.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef FLS_LOG_H
#define FLS_LOG_H

typedef enum { FLS_LOG_DEBUG, FLS_LOG_INFO, FLS_LOG_WARN, FLS_LOG_ERROR } fls_log_level_t;

void fls_log_set_level(fls_log_level_t level);
/* "debug", "info", "warn", "error"; returns -1 on an unknown name. */
int fls_log_level_parse(const char *name, fls_log_level_t *level);
void fls_log(fls_log_level_t level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
