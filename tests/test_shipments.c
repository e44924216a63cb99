/*
 * test_shipments: the shipments consumer's decision step (the "model -> Kafka" end of
 * Kafka -> Avro -> Redis -> model -> Kafka) on hand-built shipments, with the shipped
 * delivery-sim model and a real redis-server for the capacity claims:
 *  - P(late) and the express rule;
 *  - a near shipment in a quiet hour stays STANDARD, a far one created after the
 *    dispatch cut-off during a load spike goes EXPRESS, a flash-sale order whose
 *    region has no capacity left falls back to STANDARD and says so;
 *  - capacity goes to the highest expected lateness cost first, and a replayed claim
 *    gets the same answer;
 *  - SIGHUP reloads the model; a corrupt file or one with other features is rejected
 *    and the old model keeps serving; init refuses a feature mismatch, naming it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "settings.h"
#include "shipments.h"
#include "store.h"
#include "task_dispatch.h"
#include "testutil.h"

#define SHIPPED FLS_TEST_DATA "/../../models/delivery-sim.flsm"

static const fls_dispatch_policy_t pol = {20.0, 4.0, 0.2};

Test(shipments, p_late_follows_the_promise)
{
        cr_assert_lt(fls_shipments_p_late(10, 1, 24, 0.2), 0.001);
        cr_assert_gt(fls_shipments_p_late(60, 1, 24, 0.2), 0.99);
        cr_assert_float_eq(fls_shipments_p_late(24, 2, 24, 0.2), 0.5, 1e-9);
        /* More doubt, closer to a coin. */
        cr_assert_gt(fls_shipments_p_late(18, 6, 24, 0.2),
                     fls_shipments_p_late(18, 1, 24, 0.2));
}

Test(shipments, express_when_expected_lateness_costs_more)
{
        fls_dispatch_case_t c = {.mu_h = 23, .spread_h = 1, .promised_h = 24};
        fls_shipments_assess(&pol, &c);
        /* P(late) ~0.35: 7 > 4 */
        cr_assert_eq(c.want, FLS_DISPATCH_EXPRESS, "p_late %f", c.p_late);
        cr_assert_float_eq(c.cost, c.p_late * 20, 1e-12);
        c = (fls_dispatch_case_t){.mu_h = 12, .spread_h = 1, .promised_h = 24};
        fls_shipments_assess(&pol, &c);
        cr_assert_eq(c.want, FLS_DISPATCH_STANDARD);
        c = (fls_dispatch_case_t){
            .mu_h = 12, .spread_h = 1, .promised_h = 24, .flash = 1};
        fls_shipments_assess(&pol, &c);
        cr_assert_eq(c.want, FLS_DISPATCH_PRIORITY);
}

Test(shipments, claim_order_is_by_expected_cost)
{
        fls_dispatch_case_t cs[5];
        size_t order[5];
        const double cost[5] = {1, 9, 5, 0, 9};
        const int want[5] = {FLS_DISPATCH_EXPRESS, FLS_DISPATCH_PRIORITY,
                             FLS_DISPATCH_EXPRESS, FLS_DISPATCH_STANDARD,
                             FLS_DISPATCH_EXPRESS};
        for (int i = 0; i < 5; i++)
                cs[i] = (fls_dispatch_case_t){.cost = cost[i], .want = want[i]};
        cr_assert_eq(fls_shipments_claim_order(cs, 5, order), 4);
        cr_assert_eq(order[0], 1);
        cr_assert_eq(order[1], 4);
        cr_assert_eq(order[2], 2);
        cr_assert_eq(order[3], 0);
}

/* Predicts hand-built shipments with the shipped model. */
static void predict(const fls_dispatch_raw_t *raw, size_t n, fls_dispatch_case_t *cs)
{
        char err[512];
        float x[8 * FLS_DISPATCH_NFEAT], mu[8], sd[8];
        fls_model_t *m = fls_model_load(SHIPPED, err, sizeof(err));
        cr_assert_not_null(m, "%s", err);
        cr_assert_eq(fls_model_check_features(m, fls_dispatch_feature_names(),
                                              FLS_DISPATCH_NFEAT, err, sizeof(err)),
                     0, "%s", err);
        for (size_t i = 0; i < n; i++)
                fls_dispatch_row(&raw[i], x + i * FLS_DISPATCH_NFEAT);
        cr_assert_eq(fls_model_predict_spread(m, x, n, mu, sd, err, sizeof(err)), 0, "%s",
                     err);
        for (size_t i = 0; i < n; i++) {
                cs[i].mu_h = mu[i];
                cs[i].spread_h = sd[i];
        }
        fls_model_destroy(m);
}

static fls_tenv_t env;
static int have_env;

static fls_store_t *redis_store(void)
{
        char err[512];
        fls_store_t *st;
        static const fls_family_t none[] = {{NULL, 0, 0, NULL, 0}};
        cr_assert_eq(fls_t_init(&env), 0);
        have_env = 1;
        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start");
        st = fls_store_new("127.0.0.1", env.redis_port, 2000, "t", none, 0, err,
                           sizeof(err));
        cr_assert_not_null(st, "%s", err);
        return st;
}

static void redis_fini(void)
{
        if (have_env)
                fls_t_fini(&env);
        have_env = 0;
}

Test(shipments, hand_built_shipments_get_the_expected_decisions, .fini = redis_fini)
{
        /* 2024-03-05 10:00 UTC and 17:30 UTC */
        const int64_t morning = 1709632800000LL,
                      evening = morning + 7 * 3600000 + 1800000;
        fls_dispatch_raw_t raw[3];
        fls_dispatch_case_t cs[3];
        size_t order[3], m;
        fls_store_t *st = redis_store();
        fls_claims_t *cl = fls_claims_new();
        char err[512], counter[128];
        const int64_t cap = 5;

        memset(raw, 0, sizeof(raw));
        memset(cs, 0, sizeof(cs));
        /* near, quiet, morning: 30 km, promise 24 h */
        raw[0] = (fls_dispatch_raw_t){30, 1.0, morning, 0, 20, 4, 50, 0, 0, 0, 0};
        cs[0].promised_h = 24;
        /* far, after the 16:00 cut-off, during a load spike: 480 km, promise 48 h */
        raw[1] =
            (fls_dispatch_raw_t){480, 2.0, evening, 0, 20000, 4000, 20000, 0, 0, 0, 0};
        cs[1].promised_h = 48;
        /* a flash-sale order in a region whose hour is used up */
        raw[2] = (fls_dispatch_raw_t){30, 1.0, morning, 1, 20, 4, 50, 0, 0, 0, 0};
        cs[2].promised_h = 24;
        cs[2].flash = 1;
        predict(raw, 3, cs);
        for (int i = 0; i < 3; i++)
                fls_shipments_assess(&pol, &cs[i]);
        cr_assert_eq(cs[0].want, FLS_DISPATCH_STANDARD, "near: mu %.1f p_late %.3f",
                     cs[0].mu_h, cs[0].p_late);
        cr_assert_eq(cs[1].want, FLS_DISPATCH_EXPRESS, "far: mu %.1f sd %.1f p_late %.3f",
                     cs[1].mu_h, cs[1].spread_h, cs[1].p_late);
        cr_assert_gt(cs[1].mu_h, cs[0].mu_h + 12);
        cr_assert_eq(cs[2].want, FLS_DISPATCH_PRIORITY);

        /* Region r9 at 10:00 is full: five earlier claims took it. */
        fls_shipments_capacity_counter("r9", 2, morning, counter, sizeof(counter));
        cr_assert_str_eq(counter, "dispatch.r9.474898");
        for (int i = 0; i < cap; i++) {
                char id[32];
                snprintf(id, sizeof(id), "earlier/%d", i);
                fls_claims_add(cl, counter, id, NULL, 0, 1, cap);
        }
        cr_assert_eq(fls_claims_run(st, cl, 3600, err, sizeof(err)), 0, "%s", err);
        fls_claims_reset(cl);
        m = fls_shipments_claim_order(cs, 3, order);
        cr_assert_eq(m, 2);
        for (size_t j = 0; j < m; j++) {
                char id[32], c2[128];
                snprintf(id, sizeof(id), "now/%zu", order[j]);
                /* the far one in its own region r2, the flash one in full r9 */
                fls_shipments_capacity_counter(order[j] == 1 ? "r2" : "r9", 2,
                                               raw[order[j]].ts_ms, c2, sizeof(c2));
                fls_claims_add(cl, c2, id, NULL, 0, 1, cap);
        }
        cr_assert_eq(fls_claims_run(st, cl, 3600, err, sizeof(err)), 0, "%s", err);
        for (size_t j = 0; j < m; j++)
                fls_shipments_settle(&cs[order[j]], fls_claims_granted(cl, (int)j) > 0);
        fls_shipments_settle(&cs[0], 0);
        cr_assert_eq(cs[0].kind, FLS_DISPATCH_STANDARD);
        cr_assert_str_eq(cs[0].why, "on_time");
        cr_assert_eq(cs[1].kind, FLS_DISPATCH_EXPRESS);
        cr_assert_str_eq(cs[1].why, "late_risk");
        cr_assert_eq(cs[2].kind, FLS_DISPATCH_STANDARD);
        cr_assert_str_eq(cs[2].why, "no_capacity_priority");
        fls_claims_destroy(cl);
        fls_store_destroy(st);
}

Test(shipments, capacity_goes_to_the_highest_cost_first_and_replays_alike,
     .fini = redis_fini)
{
        fls_dispatch_case_t cs[6];
        size_t order[6], m;
        fls_store_t *st = redis_store();
        fls_claims_t *cl = fls_claims_new();
        const double mu[6] = {20, 30, 23, 26, 10, 25};
        int granted[6] = {0}, again[6] = {0};
        char err[512];

        for (int i = 0; i < 6; i++) {
                cs[i] =
                    (fls_dispatch_case_t){.mu_h = mu[i], .spread_h = 2, .promised_h = 24};
                fls_shipments_assess(&pol, &cs[i]);
        }
        for (int pass = 0; pass < 2; pass++) {
                fls_claims_reset(cl);
                m = fls_shipments_claim_order(cs, 6, order);
                /* 10 h and 20 h (P(late) 0.19, cost 3.7) stay standard */
                cr_assert_eq(m, 4, "%zu want express", m);
                for (size_t j = 0; j < m; j++) {
                        char id[32];
                        snprintf(id, sizeof(id), "t/0/%zu/dispatch", order[j]);
                        fls_claims_add(cl, "dispatch.r1.1", id, NULL, 0, 1, 3);
                }
                cr_assert_eq(fls_claims_run(st, cl, 3600, err, sizeof(err)), 0, "%s",
                             err);
                for (size_t j = 0; j < m; j++)
                        (pass ? again : granted)[order[j]] =
                            fls_claims_granted(cl, (int)j) > 0;
        }
        /* capacity 3: the 30, 26 and 25 h ones; 23 h is refused */
        cr_assert_eq(granted[1] + granted[3] + granted[5], 3);
        cr_assert_eq(granted[0] + granted[2] + granted[4], 0);
        cr_assert_eq(memcmp(granted, again, sizeof(granted)), 0, "a replay changed it");
        {
                int64_t used = 0;
                cr_assert_eq(
                    fls_store_counter(st, "dispatch.r1.1", &used, err, sizeof(err)), 0);
                cr_assert_eq(used, 3, "the replay spent again");
        }
        fls_claims_destroy(cl);
        fls_store_destroy(st);
}

/* ---- model loading and SIGHUP ---------------------------------------------------- */

static char dir[256];

static void copy_file(const char *from, const char *to)
{
        char buf[65536];
        size_t n;
        FILE *in = fopen(from, "rb"), *out;
        char tmp[300];
        cr_assert_not_null(in, "%s", from);
        snprintf(tmp, sizeof(tmp), "%s.tmp", to);
        out = fopen(tmp, "wb");
        cr_assert_not_null(out);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                cr_assert_eq(fwrite(buf, 1, n, out), n);
        fclose(in);
        cr_assert_eq(fclose(out), 0);
        cr_assert_eq(rename(tmp, to), 0);
}

/* A small forest regressor with the given names and version. */
static void write_model(const char *path, const char *const *names, const char *version)
{
        enum { N = 200 };
        static float x[N * FLS_DISPATCH_NFEAT], y[N];
        fls_forest_opts_t o;
        char err[512];
        fls_forest_t *f;
        fls_model_t *m;
        for (int i = 0; i < N; i++) {
                for (int j = 0; j < FLS_DISPATCH_NFEAT; j++)
                        x[i * FLS_DISPATCH_NFEAT + j] = (float)((i * 7 + j * 13) % 50);
                y[i] = x[i * FLS_DISPATCH_NFEAT] / 2;
        }
        fls_forest_opts_default(&o, FLS_FOREST_REGRESSOR);
        o.n_trees = 3;
        o.max_depth = 3;
        f = fls_forest_train(FLS_FOREST_REGRESSOR, x, y, N, FLS_DISPATCH_NFEAT, &o, err,
                             sizeof(err));
        cr_assert_not_null(f, "%s", err);
        m = fls_model_from_forest(f, "delivery-sim", version, names, FLS_DISPATCH_NFEAT,
                                  NULL, NULL, NULL, err, sizeof(err));
        cr_assert_not_null(m, "%s", err);
        cr_assert_eq(fls_model_save(m, path, err, sizeof(err)), 0, "%s", err);
        fls_model_destroy(m);
}

typedef struct {
        fls_conf_t *conf;
        fls_codec_t *in;
        fls_app_env_t env;
} app_env_t;

static void app_env(app_env_t *a, const char *model)
{
        const fls_conf_def_t *tables[] = {fls_settings_conf, fls_shipments_app.conf,
                                          NULL};
        char err[512];
        memset(a, 0, sizeof(*a));
        a->conf = fls_conf_new(tables, err, sizeof(err));
        cr_assert_not_null(a->conf, "%s", err);
        cr_assert_eq(fls_conf_set(a->conf, "shipments.model", model, err, sizeof(err)), 0,
                     "%s", err);
        a->in = fls_codec_new(FLS_SCHEMA_DIR, "shipments-value", 0, 1 << 16, err,
                              sizeof(err));
        cr_assert_not_null(a->in, "%s", err);
        a->env.conf = a->conf;
        a->env.in = a->in;
}

static void app_env_free(app_env_t *a)
{
        fls_codec_destroy(a->in);
        fls_conf_destroy(a->conf);
}

static void dir_init(void)
{
        snprintf(dir, sizeof(dir), "/tmp/fls_test_shipments_%ld", (long)getpid());
        cr_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
}

static void dir_fini(void)
{
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
}

Test(shipments, reload_takes_good_files_and_rejects_bad_ones, .init = dir_init,
     .fini = dir_fini)
{
        char path[320], err[512];
        app_env_t a;
        void *app = NULL;
        FILE *fp;
        const char *bad_names[FLS_DISPATCH_NFEAT];

        snprintf(path, sizeof(path), "%s/model.flsm", dir);
        copy_file(SHIPPED, path);
        app_env(&a, path);
        cr_assert_eq(fls_shipments_app.init(&app, &a.env, err, sizeof(err)), 0, "%s",
                     err);
        cr_assert_str_eq(fls_shipments_model_version(app), "delivery-sim@1");

        /* A truncated file: rejected, the old model keeps serving. */
        fp = fopen(path, "wb");
        cr_assert_not_null(fp);
        fputs("FLSM half a model", fp);
        fclose(fp);
        cr_assert_eq(fls_shipments_app.reload(app, err, sizeof(err)), -1);
        cr_assert(strstr(err, path) != NULL, "%s", err);
        cr_assert_str_eq(fls_shipments_model_version(app), "delivery-sim@1");

        /* Other features: rejected, naming the feature. */
        memcpy(bad_names, fls_dispatch_feature_names(), sizeof(bad_names));
        bad_names[4] = "region_created_60m";
        write_model(path, bad_names, "3");
        cr_assert_eq(fls_shipments_app.reload(app, err, sizeof(err)), -1);
        cr_assert(strstr(err, "region_created_60m") != NULL, "%s", err);
        cr_assert_str_eq(fls_shipments_model_version(app), "delivery-sim@1");

        /* A good new version: served from the next batch on. */
        write_model(path, fls_dispatch_feature_names(), "2");
        cr_assert_eq(fls_shipments_app.reload(app, err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(fls_shipments_model_version(app), "delivery-sim@2");
        fls_shipments_app.destroy(app);

        /* At start-up a mismatch refuses to start, naming it. */
        write_model(path, bad_names, "4");
        app = NULL;
        cr_assert_eq(fls_shipments_app.init(&app, &a.env, err, sizeof(err)), -1);
        cr_assert(strstr(err, "region_created_60m") != NULL, "%s", err);
        app_env_free(&a);
}
