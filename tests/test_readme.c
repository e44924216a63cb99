/*
 * test_readme: the README's configuration table is the one the code prints
 * (`flashstream config`), so the documentation cannot drift from the declarative
 * table that drives parsing and --help. deploy/readme-config.sh regenerates it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(FILE *fp)
{
        size_t len = 0, cap = 1 << 16;
        char *buf = malloc(cap);
        size_t n;

        while (buf && (n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
                len += n;
                if (len + 1 == cap)
                        buf = realloc(buf, cap *= 2);
        }
        if (buf)
                buf[len] = '\0';
        return buf;
}

Test(readme, configuration_table_is_current)
{
        FILE *fp = fopen(FLS_TEST_DATA "/../../README.md", "r");
        FILE *p = popen(FLS_BIN " config", "r");
        char *readme, *table, *begin, *end;

        cr_assert_not_null(fp);
        cr_assert_not_null(p);
        readme = slurp(fp);
        table = slurp(p);
        fclose(fp);
        cr_assert_eq(pclose(p), 0, "flashstream config failed");
        begin = strstr(readme, "<!-- config:begin -->\n");
        end = strstr(readme, "<!-- config:end -->");
        cr_assert(begin && end && end > begin, "README has no config markers");
        begin += strlen("<!-- config:begin -->\n");
        *end = '\0';
        cr_assert_str_eq(
            begin, table,
            "README's configuration table is stale: run deploy/readme-config.sh");
        free(readme);
        free(table);
}
