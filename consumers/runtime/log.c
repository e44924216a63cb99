/*
 * log: the diagnostic channel of every flashstream process. It sits beside the flow
 * Kafka -> Avro -> Redis -> model -> Kafka rather than in it: start-up, rebalances,
 * Redis outages and dropped messages are reported here, never individual messages.
 * Lines are JSON objects so that a collector can parse them without a grammar per
 * component. Each line is formatted into a stack buffer and written with one write(2):
 * no lock, no allocation, and lines from different threads never interleave (a line
 * is at most PIPE_BUF bytes, which Linux writes atomically to a pipe).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One line, newline included; PIPE_BUF on Linux. */
#define LINE_MAX_BYTES 4096
/* Longest escape ("\u00XX") plus what must follow the message: "..." and "\"}\n". */
#define MSG_RESERVE 16

static atomic_int min_level = FLS_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fls_log_set_level(fls_log_level_t level)
{
        atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

int fls_log_level_parse(const char *name, fls_log_level_t *level)
{
        int i;

        for (i = FLS_LOG_DEBUG; i <= FLS_LOG_ERROR; i++) {
                if (strcmp(name, level_names[i]) == 0) {
                        *level = (fls_log_level_t)i;
                        return 0;
                }
        }
        return -1;
}

/* Length of the longest prefix of s[0..len) that does not end inside a UTF-8
 * sequence, so that cutting a message never leaves a broken character in the JSON. */
static size_t utf8_cut(const char *s, size_t len)
{
        size_t i = len, back = 0;
        unsigned char c;

        while (i > 0 && back < 4) {
                c = (unsigned char)s[i - 1];
                if ((c & 0xC0) != 0x80)
                        break;
                i--;
                back++;
        }
        if (i == 0)
                return len;
        c = (unsigned char)s[i - 1];
        if (c < 0x80)
                return len;
        /* s[i-1] leads a sequence of need bytes of which 1 + back are present. */
        {
                size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;

                return need == 1 + back ? len : i - 1;
        }
}

/*
 * Appends s as JSON string content to buf[*pos..limit). Returns 0 when all of s fit,
 * -1 when it was cut (at a character boundary). Bytes >= 0x80 are copied as they are:
 * the messages are ours and UTF-8.
 */
static int append_escaped(char *buf, size_t *pos, size_t limit, const char *s)
{
        static const char hex[] = "0123456789abcdef";
        size_t p = *pos, start = *pos;
        unsigned char c;

        for (; (c = (unsigned char)*s); s++) {
                if (p + 6 > limit) {
                        *pos = start + utf8_cut(buf + start, p - start);
                        return -1;
                }
                if (c == '"' || c == '\\') {
                        buf[p++] = '\\';
                        buf[p++] = (char)c;
                } else if (c == '\n') {
                        buf[p++] = '\\';
                        buf[p++] = 'n';
                } else if (c == '\t') {
                        buf[p++] = '\\';
                        buf[p++] = 't';
                } else if (c < 0x20 || c == 0x7f) {
                        memcpy(buf + p, "\\u00", 4);
                        buf[p + 4] = hex[c >> 4];
                        buf[p + 5] = hex[c & 0xf];
                        p += 6;
                } else {
                        buf[p++] = (char)c;
                }
        }
        *pos = p;
        return 0;
}

static void append_raw(char *buf, size_t *pos, const char *s)
{
        size_t len = strlen(s);

        memcpy(buf + *pos, s, len);
        *pos += len;
}

void fls_log(fls_log_level_t level, const char *comp, const char *fmt, ...)
{
        char line[LINE_MAX_BYTES], msg[LINE_MAX_BYTES], ts[40];
        int saved_errno = errno, truncated;
        struct timespec now;
        struct tm tm;
        size_t pos = 0;
        ssize_t n;
        va_list ap;
        int len;

        if ((int)level < atomic_load_explicit(&min_level, memory_order_relaxed))
                return;
        if ((int)level < FLS_LOG_DEBUG || (int)level > FLS_LOG_ERROR)
                level = FLS_LOG_ERROR;

        va_start(ap, fmt);
        len = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (len < 0) {
                msg[0] = '\0';
                len = 0;
        }
        truncated = (size_t)len >= sizeof(msg);
        if (truncated)
                msg[utf8_cut(msg, strlen(msg))] = '\0';

        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

        /* The fixed part is far below the buffer size: ts is 24 bytes, comp is cut. */
        pos = (size_t)snprintf(line, sizeof(line),
                               "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"comp\":\"", ts,
                               now.tv_nsec / 1000000L, level_names[level]);
        append_escaped(line, &pos, 256 + pos, comp ? comp : "");
        append_raw(line, &pos, "\",\"msg\":\"");
        if (append_escaped(line, &pos, sizeof(line) - MSG_RESERVE, msg) < 0 || truncated)
                append_raw(line, &pos, "...");
        append_raw(line, &pos, "\"}\n");

        do {
                n = write(STDERR_FILENO, line, pos);
        } while (n < 0 && errno == EINTR);
        /* Nothing useful can be done about a failed or short write to stderr. */

        errno = saved_errno;
}
