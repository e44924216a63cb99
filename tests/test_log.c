/*
 * test_log: the JSON-lines logger. stderr is pointed at a temporary file so the exact
 * bytes of each line can be checked: the fields, the escaping and the cut of a message
 * too long for one line.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int saved_fd = -1;
static FILE *tmp;

static void redirect(void)
{
        tmp = tmpfile();
        cr_assert_not_null(tmp);
        fflush(stderr);
        saved_fd = dup(STDERR_FILENO);
        cr_assert(dup2(fileno(tmp), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written to it (caller frees). */
static char *captured(void)
{
        long len;
        char *buf;

        dup2(saved_fd, STDERR_FILENO);
        close(saved_fd);
        fseek(tmp, 0, SEEK_END);
        len = ftell(tmp);
        rewind(tmp);
        buf = calloc(1, (size_t)len + 1);
        cr_assert_not_null(buf);
        cr_assert_eq(fread(buf, 1, (size_t)len, tmp), (size_t)len);
        fclose(tmp);
        return buf;
}

/* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ", */
static void check_ts(const char *line)
{
        const char *pat = "{\"ts\":\"dddd-dd-ddTdd:dd:dd.dddZ\",";
        size_t i;

        for (i = 0; pat[i]; i++) {
                if (pat[i] == 'd')
                        cr_assert(isdigit((unsigned char)line[i]), "%s", line);
                else
                        cr_assert_eq(line[i], pat[i], "%s", line);
        }
}

Test(log, format_and_escaping)
{
        char *out;

        redirect();
        fls_log(FLS_LOG_WARN, "runner", "say \"%s\" \\ %d\n\t%c", "hi", 42, 1);
        out = captured();
        check_ts(out);
        cr_assert_str_eq(out + strlen("{\"ts\":\"2026-11-29T18:00:00.123Z\","),
                         "\"level\":\"warn\",\"comp\":\"runner\","
                         "\"msg\":\"say \\\"hi\\\" \\\\ 42\\n\\t\\u0001\"}\n");
        free(out);
}

Test(log, level_filter)
{
        fls_log_level_t level = FLS_LOG_DEBUG;
        char *out;

        cr_assert_eq(fls_log_level_parse("error", &level), 0);
        cr_assert_eq(level, FLS_LOG_ERROR);
        cr_assert_eq(fls_log_level_parse("debug", &level), 0);
        cr_assert_eq(level, FLS_LOG_DEBUG);
        cr_assert_eq(fls_log_level_parse("verbose", &level), -1);

        redirect();
        fls_log(FLS_LOG_DEBUG, "c", "hidden by default");
        fls_log_set_level(FLS_LOG_ERROR);
        fls_log(FLS_LOG_WARN, "c", "hidden");
        fls_log(FLS_LOG_ERROR, "c", "shown");
        fls_log_set_level(FLS_LOG_DEBUG);
        fls_log(FLS_LOG_DEBUG, "c", "debug shown");
        out = captured();
        cr_assert_null(strstr(out, "hidden"), "%s", out);
        cr_assert(strstr(out, "\"level\":\"error\",\"comp\":\"c\",\"msg\":\"shown\"}\n"));
        cr_assert(
            strstr(out, "\"level\":\"debug\",\"comp\":\"c\",\"msg\":\"debug shown\"}\n"));
        fls_log_set_level(FLS_LOG_INFO);
        free(out);
}

Test(log, long_message_is_cut_into_one_line)
{
        static const char *const comps[] = {"c", "cc", "ccc", "cccc"};
        static char big[10000];
        char *out, *nl;
        size_t i, k;

        /* Quotes double in size when escaped and 2-byte UTF-8 characters fill the rest;
         * components of four lengths move the cut across every byte of the pattern.
         * The line must stay one closed object with no character cut in half. */
        for (i = 0; i + 2 < sizeof(big); i += 3) {
                big[i] = '"';
                big[i + 1] = (char)0xC3;
                big[i + 2] = (char)0xA9;
        }
        for (k = 0; k < sizeof(comps) / sizeof(comps[0]); k++) {
                redirect();
                fls_log(FLS_LOG_ERROR, comps[k], "%s", big);
                out = captured();
                nl = strchr(out, '\n');
                cr_assert_not_null(nl);
                cr_assert_eq(nl[1], '\0', "exactly one line");
                cr_assert_leq(strlen(out), 4096);
                cr_assert_eq(strncmp(nl - 5, "...\"}\n", 6), 0, "%s", nl - 20);
                for (i = 0; out[i]; i++) {
                        if ((unsigned char)out[i] == 0xC3)
                                cr_assert_eq((unsigned char)out[i + 1], 0xA9,
                                             "comp %s: cut at %zu", comps[k], i);
                }
                free(out);
        }
}
