/*
 * test_conf: the configuration loader. Checks the exact "path:line: message" errors a
 * user sees, the precedence of file < environment < flags, how argv is compacted for
 * the subcommand's own parsing, and that kafka.* keys reach librdkafka in order.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

static const fls_conf_def_t table_a[] = {
    {"name.str", FLS_CONF_STR, "hello", 1, 0, "A string.", NULL},
    {"batch.max", FLS_CONF_INT, "10", 1, 100, "Most messages in a batch.", "consume"},
    {"ratio", FLS_CONF_DBL, "0.5", 0, 1, "A ratio | with a pipe.", "consume broker"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const fls_conf_def_t table_b[] = {
    {"flag.on", FLS_CONF_BOOL, "false", 1, 0, "A flag.", "broker"},
    {"empty", FLS_CONF_STR, NULL, 1, 0, "Empty by default.", "consumer"},
    {"offset", FLS_CONF_INT, "-5", 1, 0, "Unbounded.", NULL},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const fls_conf_def_t *const tables[] = {table_a, table_b, NULL};

static char errstr[512];
static char path[64];

static fls_conf_t *new_conf(void)
{
        fls_conf_t *conf = fls_conf_new(tables, errstr, sizeof(errstr));

        cr_assert_not_null(conf, "fls_conf_new: %s", errstr);
        return conf;
}

/* Writes text to a fresh temporary file named in path. */
static void write_file(const char *text)
{
        int fd;

        snprintf(path, sizeof(path), "/tmp/test_conf.XXXXXX");
        fd = mkstemp(path);
        cr_assert(fd >= 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

static void load_file_fails(fls_conf_t *conf, const char *text, int line, const char *msg)
{
        char want[600];

        write_file(text);
        cr_assert_eq(fls_conf_load_file(conf, path, errstr, sizeof(errstr)), -1);
        snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
        cr_assert_str_eq(errstr, want);
        unlink(path);
}

Test(conf, defaults)
{
        fls_conf_t *conf = new_conf();

        cr_assert_str_eq(fls_conf_str(conf, "name.str"), "hello");
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 10);
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.5, 1e-12);
        cr_assert_eq(fls_conf_bool(conf, "flag.on"), 0);
        cr_assert_str_eq(fls_conf_str(conf, "empty"), "");
        cr_assert_eq(fls_conf_int(conf, "offset"), -5);
        cr_assert_str_eq(fls_conf_str(conf, "batch.max"), "10");
        cr_assert_str_eq(fls_conf_str(conf, "no.such"), "");
        cr_assert_eq(fls_conf_int(conf, "no.such"), 0);
        fls_conf_destroy(conf);
        fls_conf_destroy(NULL);
}

Test(conf, bad_tables)
{
        static const fls_conf_def_t dup[] = {
            {"batch.max", FLS_CONF_INT, "1", 1, 0, "Again.", NULL},
            {NULL, 0, NULL, 0, 0, NULL, NULL},
        };
        static const fls_conf_def_t bad_def[] = {
            {"n", FLS_CONF_INT, "200", 1, 100, "Out of its own range.", NULL},
            {NULL, 0, NULL, 0, 0, NULL, NULL},
        };
        static const fls_conf_def_t kafka[] = {
            {"kafka.acks", FLS_CONF_STR, "all", 1, 0, "Reserved prefix.", NULL},
            {NULL, 0, NULL, 0, 0, NULL, NULL},
        };
        const fls_conf_def_t *const t1[] = {table_a, dup, NULL};
        const fls_conf_def_t *const t2[] = {bad_def, NULL};
        const fls_conf_def_t *const t3[] = {kafka, NULL};

        cr_assert_null(fls_conf_new(t1, errstr, sizeof(errstr)));
        cr_assert_str_eq(errstr, "duplicate key 'batch.max'");
        cr_assert_null(fls_conf_new(t2, errstr, sizeof(errstr)));
        cr_assert_str_eq(errstr, "key 'n': 200 is out of range 1..100 (bad default)");
        cr_assert_null(fls_conf_new(t3, errstr, sizeof(errstr)));
        cr_assert(strstr(errstr, "kafka.acks"));
}

Test(conf, int_validation)
{
        fls_conf_t *conf = new_conf();

        cr_assert_eq(fls_conf_set(conf, "batch.max", "1", errstr, sizeof(errstr)), 0);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 1);
        cr_assert_eq(fls_conf_set(conf, "batch.max", "100", errstr, sizeof(errstr)), 0);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 100);

        cr_assert_eq(fls_conf_set(conf, "batch.max", "101", errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr, "key 'batch.max': 101 is out of range 1..100");
        cr_assert_eq(fls_conf_set(conf, "batch.max", "0", errstr, sizeof(errstr)), -1);
        cr_assert_eq(fls_conf_set(conf, "batch.max", "12x", errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr, "key 'batch.max': '12x' is not an integer");
        cr_assert_eq(fls_conf_set(conf, "batch.max", "", errstr, sizeof(errstr)), -1);
        cr_assert_eq(fls_conf_set(conf, "batch.max", " 12", errstr, sizeof(errstr)), -1);
        cr_assert_eq(fls_conf_set(conf, "batch.max", "1.5", errstr, sizeof(errstr)), -1);
        /* A rejected value leaves the previous one. */
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 100);
        cr_assert_str_eq(fls_conf_str(conf, "batch.max"), "100");

        /* min > max: no bounds, but still whole integers that fit. */
        cr_assert_eq(fls_conf_set(conf, "offset", "-9000000000", errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(fls_conf_int(conf, "offset"), -9000000000LL);
        cr_assert_eq(
            fls_conf_set(conf, "offset", "99999999999999999999", errstr, sizeof(errstr)),
            -1);

        cr_assert_eq(fls_conf_set(conf, "nope", "1", errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr, "unknown key 'nope'");
        fls_conf_destroy(conf);
}

Test(conf, dbl_validation)
{
        fls_conf_t *conf = new_conf();

        cr_assert_eq(fls_conf_set(conf, "ratio", "0.25", errstr, sizeof(errstr)), 0);
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.25, 1e-12);
        cr_assert_eq(fls_conf_set(conf, "ratio", "1", errstr, sizeof(errstr)), 0);
        cr_assert_eq(fls_conf_set(conf, "ratio", "0", errstr, sizeof(errstr)), 0);
        cr_assert_eq(fls_conf_set(conf, "ratio", "nan", errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr, "key 'ratio': 'nan' is not a number");
        cr_assert_eq(fls_conf_set(conf, "ratio", "1.01", errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr, "key 'ratio': 1.01 is out of range 0..1");
        cr_assert_eq(fls_conf_set(conf, "ratio", "0.5s", errstr, sizeof(errstr)), -1);
        cr_assert_eq(fls_conf_set(conf, "ratio", "", errstr, sizeof(errstr)), -1);
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.0, 1e-12);
        fls_conf_destroy(conf);
}

Test(conf, bool_parsing)
{
        static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "On"};
        static const char *const no[] = {"false", "no", "off", "0", "False", "NO"};
        fls_conf_t *conf = new_conf();
        size_t i;

        for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                cr_assert_eq(
                    fls_conf_set(conf, "flag.on", yes[i], errstr, sizeof(errstr)), 0,
                    "%s", yes[i]);
                cr_assert_eq(fls_conf_bool(conf, "flag.on"), 1, "%s", yes[i]);
                cr_assert_eq(fls_conf_set(conf, "flag.on", no[i], errstr, sizeof(errstr)),
                             0, "%s", no[i]);
                cr_assert_eq(fls_conf_bool(conf, "flag.on"), 0, "%s", no[i]);
        }
        cr_assert_eq(fls_conf_set(conf, "flag.on", "maybe", errstr, sizeof(errstr)), -1);
        cr_assert(strstr(errstr, "key 'flag.on': 'maybe' is not a boolean"));
        cr_assert_eq(fls_conf_set(conf, "flag.on", "2", errstr, sizeof(errstr)), -1);
        cr_assert_eq(fls_conf_set(conf, "flag.on", "", errstr, sizeof(errstr)), -1);
        fls_conf_destroy(conf);
}

Test(conf, file_parsing)
{
        fls_conf_t *conf = new_conf();

        write_file("# a comment\n"
                   "\n"
                   "   \t\n"
                   "  batch.max   =  42  \n"
                   "   # an indented comment = not a key\n"
                   "name.str=a # not a comment\n"
                   "ratio=0.75\r\n"
                   "flag.on = yes\n"
                   "empty =\n"
                   "kafka.sasl.jaas.config = user=\"x\" pass=y\n"
                   "offset=7");
        cr_assert_eq(fls_conf_load_file(conf, path, errstr, sizeof(errstr)), 0, "%s",
                     errstr);
        unlink(path);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 42);
        cr_assert_str_eq(fls_conf_str(conf, "name.str"), "a # not a comment");
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.75, 1e-12);
        cr_assert_eq(fls_conf_bool(conf, "flag.on"), 1);
        cr_assert_str_eq(fls_conf_str(conf, "empty"), "");
        cr_assert_str_eq(fls_conf_str(conf, "kafka.sasl.jaas.config"),
                         "user=\"x\" pass=y");
        cr_assert_eq(fls_conf_int(conf, "offset"), 7);
        fls_conf_destroy(conf);
}

Test(conf, file_errors)
{
        fls_conf_t *conf = new_conf();

        load_file_fails(conf, "# c\nbatch.max=5\nnope = 1\n", 3, "unknown key 'nope'");
        load_file_fails(conf, "\n\nbatch.max = ten\n", 3,
                        "key 'batch.max': 'ten' is not an integer");
        load_file_fails(conf, "ratio=0.5\nbatch.max=1000\n", 2,
                        "key 'batch.max': 1000 is out of range 1..100");
        load_file_fails(conf, "# header\nbatch.max 5\n", 2, "expected key=value");
        load_file_fails(conf, "=5\n", 1, "empty key");
        /* Lines before the bad one were applied. */
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.5, 1e-12);

        cr_assert_eq(fls_conf_load_file(conf, "/nonexistent/flashstream.conf", errstr,
                                        sizeof(errstr)),
                     -1);
        cr_assert_str_eq(errstr,
                         "/nonexistent/flashstream.conf: No such file or directory");
        fls_conf_destroy(conf);
}

Test(conf, env_precedence)
{
        fls_conf_t *conf = new_conf();
        char *argv[] = {"prog", "--batch.max", "40", NULL};
        int argc = 3;

        write_file("batch.max=20\nratio=0.1\n");
        cr_assert_eq(fls_conf_load_file(conf, path, errstr, sizeof(errstr)), 0);
        unlink(path);
        setenv("FLASHSTREAM_BATCH_MAX", "30", 1);
        setenv("FLASHSTREAM_FLAG_ON", "on", 1);
        /* kafka.* keys are not read from the environment. */
        setenv("FLASHSTREAM_KAFKA_ACKS", "all", 1);
        cr_assert_eq(fls_conf_load_env(conf, errstr, sizeof(errstr)), 0, "%s", errstr);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 30);
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.1, 1e-12);
        cr_assert_eq(fls_conf_bool(conf, "flag.on"), 1);
        cr_assert_str_eq(fls_conf_str(conf, "kafka.acks"), "");

        cr_assert_eq(fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(argc, 1);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 40);

        setenv("FLASHSTREAM_RATIO", "2", 1);
        cr_assert_eq(fls_conf_load_env(conf, errstr, sizeof(errstr)), -1);
        cr_assert_str_eq(errstr,
                         "FLASHSTREAM_RATIO: key 'ratio': 2 is out of range 0..1");
        unsetenv("FLASHSTREAM_BATCH_MAX");
        unsetenv("FLASHSTREAM_FLAG_ON");
        unsetenv("FLASHSTREAM_KAFKA_ACKS");
        unsetenv("FLASHSTREAM_RATIO");
        fls_conf_destroy(conf);
}

Test(conf, args_compaction)
{
        fls_conf_t *conf = new_conf();
        char *argv[] = {"prog",      "pos1",   "--batch.max=7",
                        "--unknown", "-x",     "--ratio",
                        "0.75",      "pos2",   "--kafka.acks",
                        "all",       "--help", "--kafka.linger.ms=5",
                        "--flag.on", "true",   "--name.str=",
                        "pos3",      "--",     "--batch.max=9",
                        NULL};
        char *want[] = {"prog", "pos1", "--unknown", "-x",
                        "pos2", "pos3", "--",        "--batch.max=9"};
        int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1, help = 0, i;

        cr_assert_eq(fls_conf_load_args(conf, &argc, argv, &help, errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(argc, (int)(sizeof(want) / sizeof(want[0])));
        for (i = 0; i < argc; i++)
                cr_assert_str_eq(argv[i], want[i], "argv[%d]", i);
        cr_assert_null(argv[argc]);
        cr_assert_eq(help, 1);
        cr_assert_eq(fls_conf_int(conf, "batch.max"), 7);
        cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.75, 1e-12);
        cr_assert_eq(fls_conf_bool(conf, "flag.on"), 1);
        cr_assert_str_eq(fls_conf_str(conf, "name.str"), "");
        cr_assert_str_eq(fls_conf_str(conf, "kafka.acks"), "all");
        cr_assert_str_eq(fls_conf_str(conf, "kafka.linger.ms"), "5");
        fls_conf_destroy(conf);
}

Test(conf, args_config_and_errors)
{
        fls_conf_t *conf = new_conf();
        int argc, help = 1;

        write_file("batch.max=11\nratio=0.2\n");
        {
                char *argv[] = {"prog", "-c", path, "--batch.max", "12", "run", NULL};

                argc = 6;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, &help, errstr, sizeof(errstr)),
                    0, "%s", errstr);
                cr_assert_eq(help, 0);
                cr_assert_eq(argc, 2);
                cr_assert_str_eq(argv[1], "run");
                /* Flags after --config override the file. */
                cr_assert_eq(fls_conf_int(conf, "batch.max"), 12);
                cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.2, 1e-12);
        }
        {
                char *argv[] = {"prog", "--ratio=0.3", "--config", path, NULL};

                argc = 4;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                    0);
                cr_assert_eq(argc, 1);
                cr_assert_float_eq(fls_conf_dbl(conf, "ratio"), 0.2, 1e-12);
                cr_assert_eq(fls_conf_int(conf, "batch.max"), 11);
        }
        unlink(path);
        {
                char *argv[] = {"prog", "--config", NULL};

                argc = 2;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                    -1);
                cr_assert_str_eq(errstr, "--config needs a file name");
        }
        {
                char *argv[] = {"prog", "pos", "--batch.max", NULL};

                argc = 3;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                    -1);
                cr_assert_str_eq(errstr, "--batch.max needs a value");
        }
        {
                char *argv[] = {"prog", "--batch.max=abc", "pos", NULL};

                argc = 3;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                    -1);
                cr_assert_str_eq(errstr, "key 'batch.max': 'abc' is not an integer");
        }
        {
                char *argv[] = {"prog", "--config", "/nonexistent.conf", NULL};

                argc = 3;
                cr_assert_eq(
                    fls_conf_load_args(conf, &argc, argv, NULL, errstr, sizeof(errstr)),
                    -1);
                cr_assert_str_eq(errstr, "/nonexistent.conf: No such file or directory");
        }
        fls_conf_destroy(conf);
}

struct collected {
        char buf[256];
        int calls, stop_at;
};

static int collect(const char *name, const char *value, void *opaque)
{
        struct collected *c = opaque;
        size_t len = strlen(c->buf);

        snprintf(c->buf + len, sizeof(c->buf) - len, "%s=%s;", name, value);
        return ++c->calls == c->stop_at ? 42 : 0;
}

Test(conf, kafka_foreach_order)
{
        fls_conf_t *conf = new_conf();
        struct collected c = {.stop_at = 0};

        cr_assert_eq(fls_conf_set(conf, "kafka.linger.ms", "5", errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(fls_conf_set(conf, "kafka.acks", "1", errstr, sizeof(errstr)), 0);
        cr_assert_eq(
            fls_conf_set(conf, "kafka.bootstrap.servers", "h:1", errstr, sizeof(errstr)),
            0);
        /* Setting again keeps the position and takes the new value. */
        cr_assert_eq(fls_conf_set(conf, "kafka.acks", "all", errstr, sizeof(errstr)), 0);
        cr_assert_eq(fls_conf_set(conf, "kafka.", "x", errstr, sizeof(errstr)), -1);

        cr_assert_eq(fls_conf_kafka_foreach(conf, collect, &c), 0);
        cr_assert_str_eq(c.buf, "linger.ms=5;acks=all;bootstrap.servers=h:1;");

        memset(&c, 0, sizeof(c));
        c.stop_at = 2;
        cr_assert_eq(fls_conf_kafka_foreach(conf, collect, &c), 42);
        cr_assert_str_eq(c.buf, "linger.ms=5;acks=all;");
        fls_conf_destroy(conf);
}

static char *capture(fls_conf_t *conf, const char *subcommand, int markdown)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&buf, &size);

        cr_assert_not_null(out);
        if (markdown)
                fls_conf_print_markdown(conf, out);
        else
                fls_conf_print_help(conf, subcommand, out);
        fclose(out);
        return buf;
}

Test(conf, help_and_markdown)
{
        fls_conf_t *conf = new_conf();
        char *all = capture(conf, NULL, 0);
        char *broker = capture(conf, "broker", 0);
        char *consume = capture(conf, "consume", 0);
        char *md = capture(conf, NULL, 1);

        cr_assert(strstr(all,
                         "  --batch.max=INT  Most messages in a batch. (default: 10; "
                         "range 1..100)\n"),
                  "%s", all);
        cr_assert(strstr(all, "  --name.str=STRING  A string. (default: hello)\n"), "%s",
                  all);
        cr_assert(strstr(all, "  --empty=STRING  Empty by default. (default: \"\")\n"),
                  "%s", all);
        cr_assert(strstr(all, "--ratio=NUMBER"));
        cr_assert(strstr(all, "--flag.on=BOOL"));
        cr_assert(strstr(all, "--offset=INT  Unbounded. (default: -5)\n"), "%s", all);
        cr_assert(strstr(all, "--kafka.NAME=VALUE"));

        /* Scope words match whole: "consume" is not "consumer". */
        cr_assert(strstr(broker, "--ratio="));
        cr_assert(strstr(broker, "--flag.on="));
        cr_assert(strstr(broker, "--name.str="));
        cr_assert_null(strstr(broker, "--batch.max="));
        cr_assert_null(strstr(broker, "--empty="));
        cr_assert(strstr(consume, "--batch.max="));
        cr_assert(strstr(consume, "--ratio="));
        cr_assert(strstr(consume, "--offset="));
        cr_assert_null(strstr(consume, "--empty="), "%s", consume);
        cr_assert_null(strstr(consume, "--flag.on="));

        cr_assert(strncmp(md, "| key | type | default | range | description |\n", 47) ==
                      0,
                  "%s", md);
        cr_assert(strstr(md, "| `batch.max` | int | `10` | 1..100 | Most messages in a "
                             "batch. |\n"),
                  "%s", md);
        cr_assert(
            strstr(md,
                   "| `ratio` | number | `0.5` | 0..1 | A ratio \\| with a pipe. |\n"),
            "%s", md);
        cr_assert(strstr(md, "| `empty` | string |  |  | Empty by default. |\n"), "%s",
                  md);
        cr_assert(strstr(md, "| `flag.on` | bool | `false` |  | A flag. |\n"), "%s", md);
        free(all);
        free(broker);
        free(consume);
        free(md);
        fls_conf_destroy(conf);
}
