/*
 * fuzz_conf: the configuration parser, which runs once at start-up before anything of
 * Kafka -> Avro -> Redis -> model -> Kafka exists, on files and flags that operators
 * write by hand.
 *
 * The configuration is built from the same tables as main() (settings, broker,
 * simulator and the three consumers). The input is loaded as a key=value file
 * (fls_conf_load_file on a scratch file: the loader takes a path), then split at
 * newlines and NULs into an argument vector for fls_conf_load_args. --config/-c
 * arguments are dropped from that vector: they name files to open, and a fuzzer that
 * writes "/dev/zero" there would test the file system. The log level is parsed as
 * main() does. The same bytes are then read as the bootstrap file that
 * `flashstream broker` writes (fls_settings_bootstrap: the "bootstrap=" line).
 *
 * Invariants: a failure always says why; after a successful load every key's stored
 * text sets again (what the process runs with is valid), kafka.* keys set again with
 * their values; --help and the markdown table print for any content; a bootstrap
 * address read from the file holds no line break.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clickstream.h"
#include "cmd.h"
#include "conf.h"
#include "log.h"
#include "orders.h"
#include "settings.h"
#include "shipments.h"

#define MAX_ARGS 64

static const fls_conf_def_t *tables[8];
static FILE *devnull;

static void init(void)
{
        int n = 0;

        tables[n++] = fls_settings_conf;
        tables[n++] = fls_broker_conf;
        tables[n++] = fls_simulate_conf;
        tables[n++] = fls_clickstream_app.conf;
        tables[n++] = fls_orders_app.conf;
        tables[n++] = fls_shipments_app.conf;
        tables[n] = NULL;
        devnull = fopen("/dev/null", "w");
        if (!devnull)
                fls_fuzz_fail("conf", "cannot open /dev/null");
}

static int reset_kafka(const char *name, const char *value, void *opaque)
{
        fls_conf_t *conf = opaque;
        char key[512], err[512];

        snprintf(key, sizeof(key), "kafka.%s", name);
        if (strlen(name) + 6 < sizeof(key) &&
            fls_conf_set(conf, key, value, err, sizeof(err)))
                fls_fuzz_fail("conf", "kafka key '%s' does not set again: %s", name, err);
        return 0;
}

/* What the process would run with must itself be valid configuration. */
static void check_stored(fls_conf_t *conf)
{
        char err[512];
        char *text;

        for (int t = 0; tables[t]; t++) {
                for (const fls_conf_def_t *d = tables[t]; d->name; d++) {
                        text = strdup(fls_conf_str(conf, d->name));
                        if (!text)
                                fls_fuzz_fail("conf", "out of memory");
                        if (fls_conf_set(conf, d->name, text, err, sizeof(err)))
                                fls_fuzz_fail("conf", "stored '%s' = '%s' rejected: %s",
                                              d->name, text, err);
                        free(text);
                        (void)fls_conf_int(conf, d->name);
                        (void)fls_conf_dbl(conf, d->name);
                        (void)fls_conf_bool(conf, d->name);
                }
        }
        fls_conf_kafka_foreach(conf, reset_kafka, conf);
}

static void load_args(fls_conf_t *conf, const uint8_t *data, size_t size)
{
        static char buf[1 << 16];
        char *argv[MAX_ARGS + 2], err[512];
        int argc = 0, orig, help = 0, rc;
        size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;

        memcpy(buf, data, n);
        buf[n] = '\0';
        argv[argc++] = "flashstream";
        for (char *p = buf, *end = buf + n; p < end && argc < MAX_ARGS;) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                char *tok = p;
                if (!nl)
                        nl = end;
                *nl = '\0'; /* an embedded NUL simply ends the token early */
                p = nl + 1;
                if (strcmp(tok, "--config") == 0 || strcmp(tok, "-c") == 0 ||
                    strncmp(tok, "--config=", 9) == 0)
                        continue;
                argv[argc++] = tok;
        }
        argv[argc] = NULL;
        orig = argc;
        err[0] = '\0';
        rc = fls_conf_load_args(conf, &argc, argv, &help, err, sizeof(err));
        if (rc && !err[0])
                fls_fuzz_fail("conf", "load_args failed without a message");
        if (argc < 1 || argc > orig || argv[argc] != NULL)
                fls_fuzz_fail("conf", "load_args left argc %d of %d", argc, orig);
        for (int i = 0; i < argc; i++)
                if (!argv[i])
                        fls_fuzz_fail("conf", "load_args left a NULL at %d", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *path = fls_fuzz_path("a");
        fls_conf_t *conf;
        fls_log_level_t level;
        char err[512], servers[1024];

        if (!devnull)
                init();
        conf = fls_conf_new(tables, err, sizeof(err));
        if (!conf)
                fls_fuzz_fail("conf", "tables: %s", err);
        if (fls_fuzz_write(path, data, size))
                fls_fuzz_fail("conf", "cannot write %s", path);
        err[0] = '\0';
        if (fls_conf_load_file(conf, path, err, sizeof(err)) == 0)
                check_stored(conf);
        else if (!err[0])
                fls_fuzz_fail("conf", "load_file failed without a message");
        load_args(conf, data, size);
        check_stored(conf);
        (void)fls_log_level_parse(fls_conf_str(conf, "log.level"), &level);
        fls_conf_print_help(conf, "consume", devnull);
        fls_conf_print_help(conf, NULL, devnull);
        fls_conf_print_markdown(conf, devnull);

        if (fls_conf_set(conf, "bootstrap.file", path, err, sizeof(err)))
                fls_fuzz_fail("conf", "bootstrap.file: %s", err);
        err[0] = '\0';
        if (fls_settings_bootstrap(conf, servers, sizeof(servers), err, sizeof(err))) {
                if (!err[0])
                        fls_fuzz_fail("conf", "bootstrap failed without a message");
        } else if (strpbrk(servers, "\r\n")) {
                fls_fuzz_fail("conf", "bootstrap address with a line break");
        }
        fls_conf_destroy(conf);
        return 0;
}
