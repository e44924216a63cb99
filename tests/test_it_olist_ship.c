/*
 * test_it_olist_ship: real deliveries through the live path. The Olist orders
 * (../shared/data, skipped where absent) are converted to shipment events
 * (`flashstream convert olist-shipments`), replayed into the real `flashstream broker`
 * (`flashstream produce shipments`), decided by the shipments consumer against a real
 * redis-server with the model trained on them (models/delivery-olist.flsm), and
 * judged from the output topic (`flashstream judge shipments`). The live path's MAE on
 * eval's rows must equal `flashstream eval delivery-sim` on the same folder: the
 * consumer computes its features in Redis, eval from the file, so any drift between
 * the two (a window, a count, a rounding) shows here. One partition and one event per
 * batch, the replay configuration of tools/IMPORT-SHIPMENTS.md. The first 9000
 * events (about 3000 shipments) keep the run short; eval reads the same cut file.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define EVENTS 9000

static fls_tenv_t env;

static void setup(void)
{
        cr_assert_eq(fls_t_init(&env), 0);
}

static void teardown(void)
{
        fls_t_fini(&env);
}

TestSuite(it_olist_ship, .init = setup, .fini = teardown, .timeout = 600);

/* The number after "name": in a JSON line, or -1e300 when absent. */
static double json_num(const char *json, const char *name)
{
        char pat[128];
        const char *p;
        snprintf(pat, sizeof(pat), "\"%s\":", name);
        p = strstr(json, pat);
        return p ? strtod(p + strlen(pat), NULL) : -1e300;
}

/* Copies the header and the first n events of src to dst. */
static void cut(const char *src, const char *dst, int n)
{
        FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
        char line[1024];
        int i = 0;
        cr_assert(in && out);
        while (i <= n && fgets(line, sizeof(line), in)) {
                fputs(line, out);
                i++;
        }
        fclose(in);
        fclose(out);
        cr_assert_eq(i, n + 1, "the converted file has fewer than %d events", n);
}

Test(it_olist_ship, live_mae_equals_eval)
{
        char olist[600], full[400], dir[400], src[500], dst[500], truth[500], model[600];
        char *out = NULL, *judge = NULL;
        double want, got, rows;
        pid_t consumer;

        snprintf(olist, sizeof(olist), "%s/olist-brazilian-ecommerce", FLS_SHARED_DATA);
        {
                struct stat st;
                if (stat(olist, &st) != 0)
                        cr_skip_test("%s not found: no Olist data on this machine",
                                     olist);
        }
        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start");
        cr_assert_eq(fls_t_broker_start(&env, 1), 0, "flashstream broker did not start");
        snprintf(full, sizeof(full), "%s/olist-full", env.dir);
        snprintf(dir, sizeof(dir), "%s/olist", env.dir);
        snprintf(model, sizeof(model), "%s/delivery-olist.flsm", FLS_MODEL_DIR);
        {
                const char *args[] = {"convert", "olist-shipments", olist, full, NULL};
                cr_assert_eq(fls_t_run(&env, &out, args), 0, "convert failed: %s", out);
                cr_assert_gt(json_num(out, "shipments"), 7000, "%s", out);
                free(out);
        }
        cr_assert_eq(mkdir(dir, 0777), 0);
        snprintf(src, sizeof(src), "%s/shipments.csv", full);
        snprintf(dst, sizeof(dst), "%s/shipments.csv", dir);
        cut(src, dst, EVENTS);
        snprintf(src, sizeof(src), "%s/truth_shipments.csv", full);
        snprintf(truth, sizeof(truth), "%s/truth_shipments.csv", dir);
        cr_assert_eq(rename(src, truth), 0);

        {
                const char *args[] = {"produce", "shipments", dst, NULL};
                cr_assert_eq(fls_t_run(&env, &out, args), 0, "produce failed: %s", out);
                cr_assert_eq(json_num(out, "produced"), EVENTS, "%s", out);
                free(out);
        }
        {
                char log[500], mflag[700];
                const char *args[] = {"consume",
                                      "shipments",
                                      "--topic.partitions=1",
                                      "--batch.max_messages=1",
                                      "--metrics.port=-1",
                                      mflag,
                                      NULL};
                snprintf(mflag, sizeof(mflag), "--shipments.model=%s", model);
                snprintf(log, sizeof(log), "%s/shipments.log", env.dir);
                consumer = fls_t_spawn(&env, log, args);
                cr_assert_gt(consumer, 0);
        }
        /* Judge until every shipment with a truth row has its decision (the judge
         * exits 1 while some are missing). */
        {
                const char *args[] = {"judge", "shipments", dir, "--topic.partitions=1",
                                      NULL};
                for (int i = 0; i < 240; i++) {
                        free(judge);
                        judge = NULL;
                        fls_t_run(&env, &judge, args);
                        if (judge && json_num(judge, "missing_decisions") == 0)
                                break;
                        sleep(1);
                }
        }
        kill(consumer, SIGTERM);
        cr_assert_eq(fls_t_wait(consumer, 20000), 0, "consumer did not exit cleanly");
        cr_assert(judge, "judge printed nothing");
        cr_assert_eq(json_num(judge, "missing_decisions"), 0, "%s", judge);
        cr_assert_eq(json_num(judge, "duplicate_decisions"), 0, "%s", judge);
        cr_assert_eq(json_num(judge, "unknown_decisions"), 0, "%s", judge);
        {
                /* eval takes no Kafka or Redis flags: run it directly. */
                char cmd[2000];
                FILE *p;
                snprintf(cmd, sizeof(cmd),
                         "'%s' eval delivery-sim --model '%s' --data '%s' 2>&1", FLS_BIN,
                         model, dir);
                out = calloc(1, 4096);
                p = popen(cmd, "r");
                cr_assert(out && p);
                cr_assert_gt(fread(out, 1, 4095, p), 0);
                cr_assert_eq(pclose(p), 0, "eval failed: %s", out);
        }
        want = json_num(out, "value");
        got = json_num(judge, "eval_mae_h");
        rows = json_num(out, "rows");
        cr_assert_gt(rows, 500, "%s", out);
        cr_assert_eq(json_num(judge, "eval_rows"), rows, "judge %s\neval %s", judge, out);
        /* Both print ten significant digits of the same sum. */
        cr_assert_eq(got, want, "live MAE %.10g h, eval %.10g h\njudge %s\neval %s", got,
                     want, judge, out);
        fprintf(stderr, "olist replay: %g rows, live MAE %.10g h = eval %.10g h\n", rows,
                got, want);
        free(out);
        free(judge);
}
