/*
 * main: the flashstream binary. Builds the one configuration from every module's
 * table (file < environment < flags), then runs a subcommand. The only place that
 * exits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clickstream.h"
#include "cmd.h"
#include "import.h"
#include "judge_clickstream.h"
#include "judge_orders.h"
#include "judge_shipments.h"
#include "log.h"
#include "olist_ship.h"
#include "orders.h"
#include "produce.h"
#include "report.h"
#include "settings.h"
#include "shipments.h"
#include "train.h"

static const fls_app_t *const apps[] = {&fls_clickstream_app, &fls_orders_app,
                                        &fls_shipments_app, NULL};

static const struct {
        const char *name, *args, *help;
} cmds[] = {
    {"broker", "",
     "Run the embedded Kafka-protocol cluster (librdkafka's mock) until "
     "SIGINT/SIGTERM."},
    {"simulate", "", "Produce a seeded, simulated flash sale to the input topics."},
    {"consume", "clickstream|orders|shipments", "Run one consumer."},
    {"features", "user|sku|stock|shipment|region|warehouse ID",
     "Print an entity's current features from Redis as JSON."},
    {"train", "MODEL --data PATH --out FILE [--seed N]", "Train a model."},
    {"eval", "MODEL --model FILE --data PATH [--from T] [--until T]",
     "Evaluate a model against its baselines (one JSON line)."},
    {"judge", "clickstream|orders|shipments SIM_DIR",
     "Judge a consumer's decisions (read from its output topic) against the simulator's "
     "ground truth in SIM_DIR."},
    {"produce", "clickstream|orders|shipments FILE.csv",
     "Replay an event file (header = the schema's fields, as the simulator writes) "
     "into the input topic, in file order."},
    {"convert", "olist-shipments OLIST_DIR OUT_DIR",
     "Write the Olist orders as shipment events and ground truth in the simulator's "
     "file format."},
    {"import", "rees46|retail|olist-orders PATH",
     "Produce a public dataset to the consumer's input topic as real traffic "
     "(tools/IMPORT.md)."},
    {"report", "clickstream|orders",
     "Describe a consumer's decisions on real traffic, read back from its topics."},
    {"config", "", "Print the configuration table (markdown for the README)."},
    {NULL, NULL, NULL},
};

static volatile int stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static void usage(FILE *out, const fls_conf_t *conf, const char *cmd)
{
        if (!cmd) {
                fprintf(out, "usage: flashstream COMMAND [options]\n\ncommands:\n");
                for (int i = 0; cmds[i].name; i++)
                        fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].help);
                fprintf(out,
                        "\n'flashstream COMMAND --help' lists the command's options.\n"
                        "Options come from --config FILE (key=value lines), then "
                        "FLASHSTREAM_<KEY> environment variables, then --key=value "
                        "flags; --kafka.<property>=value passes to librdkafka.\n");
                return;
        }
        for (int i = 0; cmds[i].name; i++)
                if (strcmp(cmds[i].name, cmd) == 0)
                        fprintf(out, "usage: flashstream %s %s\n  %s\n\noptions:\n", cmd,
                                cmds[i].args, cmds[i].help);
        if (conf)
                fls_conf_print_help(conf, cmd, out);
}

/* The markdown table of every key, with the build's checkout folder left out of the
 * default paths (schema.dir, model files), so that the README does not depend on where
 * the repository was cloned. */
static int print_config(const fls_conf_t *conf)
{
        static const char src[] = FLS_SOURCE_DIR "/";
        char *buf = NULL, *p, *hit;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);

        if (!mem)
                return 1;
        fls_conf_print_markdown(conf, mem);
        fclose(mem);
        for (p = buf; (hit = strstr(p, src)); p = hit + strlen(src))
                fwrite(p, 1, (size_t)(hit - p), stdout);
        fputs(p, stdout);
        free(buf);
        return 0;
}

/* --config FILE / -c FILE / --config=FILE, taken out of argv so that the file is
 * loaded before the environment and the flags. */
static const char *take_config(int *argcp, char **argv)
{
        const char *path = NULL;
        int w = 1;

        for (int i = 1; i < *argcp; i++) {
                if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
                    i + 1 < *argcp) {
                        path = argv[++i];
                        continue;
                }
                if (strncmp(argv[i], "--config=", 9) == 0) {
                        path = argv[i] + 9;
                        continue;
                }
                argv[w++] = argv[i];
        }
        *argcp = w;
        argv[w] = NULL;
        return path;
}

int main(int argc, char **argv)
{
        const fls_conf_def_t *tables[12];
        fls_conf_t *conf;
        char errstr[512];
        const char *cmd, *path;
        int nt = 0, help = 0, rc;
        fls_log_level_t level;

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(argc < 2 ? stderr : stdout, NULL, NULL);
                return argc < 2 ? 2 : 0;
        }
        cmd = argv[1];
        /* Model tools read files only and take their own flags. */
        if (strcmp(cmd, "train") == 0)
                return fls_train_main(argc - 1, argv + 1);
        if (strcmp(cmd, "eval") == 0)
                return fls_eval_main(argc - 1, argv + 1);

        tables[nt++] = fls_settings_conf;
        tables[nt++] = fls_broker_conf;
        tables[nt++] = fls_simulate_conf;
        tables[nt++] = fls_import_conf;
        for (int i = 0; apps[i]; i++)
                if (apps[i]->conf)
                        tables[nt++] = apps[i]->conf;
        tables[nt] = NULL;
        conf = fls_conf_new(tables, errstr, sizeof(errstr));
        if (!conf) {
                fprintf(stderr, "flashstream: %s\n", errstr);
                return 1;
        }
        argc--, argv++; /* argv[0] is now the command */
        path = take_config(&argc, argv);
        if ((path && fls_conf_load_file(conf, path, errstr, sizeof(errstr))) ||
            fls_conf_load_env(conf, errstr, sizeof(errstr)) ||
            fls_conf_load_args(conf, &argc, argv, &help, errstr, sizeof(errstr))) {
                fprintf(stderr, "flashstream: %s\n", errstr);
                fls_conf_destroy(conf);
                return 2;
        }
        if (help) {
                usage(stdout, conf, cmd);
                fls_conf_destroy(conf);
                return 0;
        }
        if (fls_log_level_parse(fls_conf_str(conf, "log.level"), &level)) {
                fprintf(stderr, "flashstream: log.level: unknown level '%s'\n",
                        fls_conf_str(conf, "log.level"));
                fls_conf_destroy(conf);
                return 2;
        }
        fls_log_set_level(level);
        for (int i = 1; i < argc; i++) {
                if (argv[i][0] == '-' && argv[i][1] == '-') {
                        fprintf(stderr,
                                "flashstream %s: unknown option %s (see --help)\n", cmd,
                                argv[i]);
                        fls_conf_destroy(conf);
                        return 2;
                }
        }

        if (strcmp(cmd, "broker") == 0) {
                rc = fls_cmd_broker(conf, argc, argv);
        } else if (strcmp(cmd, "simulate") == 0) {
                rc = fls_cmd_simulate(conf, argc, argv);
        } else if (strcmp(cmd, "features") == 0) {
                rc = fls_cmd_features(conf, argc, argv);
        } else if (strcmp(cmd, "judge") == 0) {
                if (argc >= 2 && strcmp(argv[1], "clickstream") == 0)
                        rc = fls_judge_clickstream(conf, argc - 1, argv + 1);
                else if (argc >= 2 && strcmp(argv[1], "orders") == 0)
                        rc = fls_judge_orders(conf, argc - 1, argv + 1);
                else if (argc >= 2 && strcmp(argv[1], "shipments") == 0)
                        rc = fls_judge_shipments(conf, argc - 1, argv + 1);
                else {
                        usage(stderr, conf, "judge");
                        rc = 2;
                }
        } else if (strcmp(cmd, "produce") == 0) {
                rc = fls_produce_cmd(conf, argc, argv);
        } else if (strcmp(cmd, "convert") == 0) {
                rc = fls_olist_ship_cmd(conf, argc, argv);
        } else if (strcmp(cmd, "import") == 0) {
                rc = fls_cmd_import(conf, argc, argv);
        } else if (strcmp(cmd, "report") == 0) {
                rc = fls_report(conf, argc, argv);
        } else if (strcmp(cmd, "config") == 0) {
                rc = print_config(conf);
        } else if (strcmp(cmd, "consume") == 0) {
                const fls_app_t *app = NULL;
                for (int i = 0; apps[i] && argc == 2; i++)
                        if (strcmp(apps[i]->name, argv[1]) == 0)
                                app = apps[i];
                if (!app) {
                        usage(stderr, conf, "consume");
                        rc = 2;
                } else {
                        struct sigaction sa;
                        memset(&sa, 0, sizeof(sa));
                        sa.sa_handler = on_signal;
                        sigaction(SIGINT, &sa, NULL);
                        sigaction(SIGTERM, &sa, NULL);
                        signal(SIGPIPE, SIG_IGN);
                        rc = fls_runner_run(app, conf, &stop);
                }
        } else {
                fprintf(stderr, "flashstream: unknown command '%s'\n\n", cmd);
                usage(stderr, NULL, NULL);
                rc = 2;
        }
        fls_conf_destroy(conf);
        return rc;
}
