/*
 * test_task_train: `flashstream train/eval` end to end (train.c and the task modules):
 * usage and error exits, --from/--until filtering on a hand-made Online Retail file,
 * and a small train + eval on a few hundred rows of each real dataset under
 * FLS_SHARED_DATA (skipped when that folder is absent).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_retail.h"
#include "task_delivery.h"
#include "task_demand.h"
#include "task_intent.h"
#include "train.h"

static int run(int (*fn)(int, char **), const char *const *args)
{
        char *argv[32];
        int argc = 0;
        for (; args[argc]; argc++)
                argv[argc] = (char *)args[argc];
        argv[argc] = NULL;
        return fn(argc, argv);
}

Test(task_train, usage_and_errors)
{
        cr_assert_eq(run(fls_train_main, (const char *[]){"train", NULL}), 2);
        cr_assert_eq(run(fls_train_main, (const char *[]){"train", "nosuch", "--data",
                                                          "x", "--out", "y", NULL}),
                     2);
        cr_assert_eq(run(fls_train_main,
                         (const char *[]){"train", "delivery", "--data", "x", NULL}),
                     2);
        cr_assert_eq(
            run(fls_train_main, (const char *[]){"train", "delivery", "--data", "x",
                                                 "--out", "y", "--seed", "-3", NULL}),
            2);
        cr_assert_eq(run(fls_eval_main,
                         (const char *[]){"eval", "demand", "--data", "x", "--model", "m",
                                          "--from", "2011-13-01", NULL}),
                     2);
        cr_assert_eq(run(fls_eval_main, (const char *[]){"eval", "demand", "--data", "x",
                                                         "--model", NULL}),
                     2);
        /* A missing data folder is an error, not a usage problem. */
        cr_assert_eq(run(fls_train_main, (const char *[]){"train", "delivery", "--data",
                                                          "/nonexistent/olist", "--out",
                                                          "/tmp/fls_never.flsm", NULL}),
                     1);
        cr_assert_eq(access("/tmp/fls_never.flsm", F_OK), -1);
        cr_assert_eq(run(fls_eval_main,
                         (const char *[]){"eval", "intent", "--data", "/nonexistent",
                                          "--model", "/nonexistent.flsm", NULL}),
                     1);
}

/* A hand-made Online Retail folder: 100 days from Monday 2011-01-03, one line per
 * day, Thursdays busier, plus a cancellation and a return that must not count. */
static void make_retail(char *dir, size_t size)
{
        snprintf(dir, size, "/tmp/fls_retail_XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        char path[300];
        snprintf(path, sizeof(path), "%s/online_retail_random20k.csv", dir);
        FILE *fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,"
              "Country\n",
              fp);
        for (int i = 0; i < 100; i++) {
                if (i % 7 == 5)
                        continue; /* Saturdays: no line, so 0 units */
                int64_t t = (int64_t)(14977 + i) * 86400 + 10 * 3600; /* 2011-01-03 + i */
                char date[32];
                fls_time_format(t, date, sizeof(date));
                fprintf(fp, "%d,A1,\"MUG, RED\",%d,%s,1.5,NA,United Kingdom\n",
                        500000 + i, 100 + (i % 7 == 3 ? 50 : 0) + (i % 5), date);
        }
        fputs("C500001,A1,MUG,7,2011-01-04 11:00:00,1.5,NA,United Kingdom\n", fp);
        fputs("500002,A1,MUG,-4,2011-01-05 11:00:00,1.5,NA,United Kingdom\n", fp);
        fclose(fp);
}

static void rm_dir(const char *dir)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/online_retail_random20k.csv", dir);
        unlink(path);
        rmdir(dir);
}

Test(task_train, retail_daily_units_and_from_until_filtering)
{
        char dir[64], err[512] = "", model[96];
        make_retail(dir, sizeof(dir));
        fls_retail_t *r = fls_retail_load(dir, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(r->ndays, 100, "ndays %zu", r->ndays);
        cr_assert_eq(fls_time_weekday(r->first_day * 86400), 0); /* 2011-01-03, Monday */
        cr_assert_float_eq(r->units[1], 101, 1e-9); /* cancellation excluded */
        cr_assert_float_eq(r->units[2], 102, 1e-9); /* return excluded */
        cr_assert_float_eq(r->units[3], 153, 1e-9);
        cr_assert_float_eq(r->units[5], 0, 1e-9);
        fls_retail_destroy(r);

        snprintf(model, sizeof(model), "%s/demand.flsm", dir);
        fls_range_t tr = FLS_RANGE_ALL;
        cr_assert_eq(fls_range_set(&tr, NULL, "2011-03-04", err, sizeof(err)), 0);
        cr_assert_eq(fls_task_demand_train(dir, &tr, 7, model, NULL, err, sizeof(err)), 0,
                     "%s", err);

        /* Origins 2011-03-14 .. 2011-03-23 (days 70..79): 10 origins x 7 horizons. */
        fls_range_t ev = FLS_RANGE_ALL;
        fls_task_result_t res;
        cr_assert_eq(fls_range_set(&ev, "2011-03-14", "2011-03-24", err, sizeof(err)), 0);
        cr_assert_eq(fls_task_demand_eval(model, dir, &ev, NULL, &res, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(res.rows, 70);
        cr_assert(isfinite(res.value) && res.value >= 0);
        cr_assert_eq(res.range.from, ev.from);
        /* Only --from: origins up to the last with 7 days after it (day 92): 23. */
        fls_range_t open = FLS_RANGE_ALL;
        cr_assert_eq(fls_range_set(&open, "2011-03-14", NULL, err, sizeof(err)), 0);
        cr_assert_eq(
            fls_task_demand_eval(model, dir, &open, NULL, &res, err, sizeof(err)), 0,
            "%s", err);
        cr_assert_eq(res.rows, 23 * 7);
        cr_assert_eq(res.range.has_until, 0);
        /* A range after the data has nothing to score: an error, not a zero. */
        fls_range_t late = FLS_RANGE_ALL;
        cr_assert_eq(fls_range_set(&late, "2012-01-01", NULL, err, sizeof(err)), 0);
        cr_assert_eq(
            fls_task_demand_eval(model, dir, &late, NULL, &res, err, sizeof(err)), -1);
        /* The seasonal-naive baseline is exact on this weekly series except for the
         * i % 5 wobble: its MAE is at most 4 units. */
        cr_assert_eq(fls_task_demand_eval(model, dir, &ev, NULL, &res, err, sizeof(err)),
                     0);
        cr_assert(res.baseline[0] <= 4.0, "seasonal naive MAE %g", res.baseline[0]);
        unlink(model);
        rm_dir(dir);
}

static int shared(const char *name, char *dir, size_t size)
{
        struct stat st;
        snprintf(dir, size, "%s/%s", FLS_SHARED_DATA, name);
        return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

Test(task_train, delivery_real_data_small)
{
        char dir[512], err[512] = "", model[] = "/tmp/fls_delivery_test.flsm";
        if (!shared("olist-brazilian-ecommerce", dir, sizeof(dir)))
                cr_skip_test("%s absent", dir);
        fls_range_t tr = FLS_RANGE_ALL, ev = FLS_RANGE_ALL;
        fls_task_result_t res;
        cr_assert_eq(fls_range_set(&tr, "2017-06-01", "2017-07-01", err, sizeof(err)), 0);
        cr_assert_eq(fls_task_delivery_train(dir, &tr, 1, model, NULL, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(fls_range_set(&ev, "2017-07-01", "2017-07-15", err, sizeof(err)), 0);
        cr_assert_eq(
            fls_task_delivery_eval(model, dir, &ev, NULL, &res, err, sizeof(err)), 0,
            "%s", err);
        cr_assert(res.rows > 100 && res.rows < 1000, "rows %zu", res.rows);
        cr_assert_str_eq(res.metric, "mae_days");
        /* Learnt from 687 June orders, the forest must still beat the training mean. */
        cr_assert(res.value > 0 && res.value < res.baseline[0], "mae %g vs mean %g",
                  res.value, res.baseline[0]);
        cr_assert(res.baseline[1] > res.value); /* Olist's estimate is conservative */
        unlink(model);
}

Test(task_train, demand_real_data_small)
{
        char dir[512], err[512] = "", model[] = "/tmp/fls_demand_test.flsm";
        if (!shared("uci-online-retail-sample", dir, sizeof(dir)))
                cr_skip_test("%s absent", dir);
        fls_range_t tr = FLS_RANGE_ALL, ev = FLS_RANGE_ALL;
        fls_task_result_t res;
        cr_assert_eq(fls_range_set(&tr, NULL, "2011-03-01", err, sizeof(err)), 0);
        cr_assert_eq(fls_task_demand_train(dir, &tr, 1, model, NULL, err, sizeof(err)), 0,
                     "%s", err);
        cr_assert_eq(fls_range_set(&ev, "2011-03-01", "2011-04-01", err, sizeof(err)), 0);
        cr_assert_eq(fls_task_demand_eval(model, dir, &ev, NULL, &res, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(res.rows, 31 * 7);
        cr_assert(isfinite(res.value) && isfinite(res.value2));
        cr_assert_float_eq(res.value2 * (res.baseline[0] / res.baseline2[0]), res.value,
                           1e-6); /* MASE = MAE / the same scale for all */
        unlink(model);
}

Test(task_train, intent_real_data_small)
{
        char dir[512], err[512] = "", model[] = "/tmp/fls_intent_test.flsm";
        if (!shared("rees46-ecommerce-behavior-sample", dir, sizeof(dir)))
                cr_skip_test("%s absent", dir);
        fls_range_t tr = FLS_RANGE_ALL, ev = FLS_RANGE_ALL;
        fls_task_result_t res;
        cr_assert_eq(fls_range_set(&tr, NULL, "2019-10-01 02:20:00", err, sizeof(err)),
                     0);
        cr_assert_eq(fls_task_intent_train(dir, &tr, 1, model, NULL, err, sizeof(err)), 0,
                     "%s", err);
        cr_assert_eq(fls_range_set(&ev, "2019-10-01 02:24:00", "2019-10-01 02:25:00", err,
                                   sizeof(err)),
                     0);
        cr_assert_eq(fls_task_intent_eval(model, dir, &ev, NULL, &res, err, sizeof(err)),
                     0, "%s", err);
        cr_assert(res.rows > 100 && res.rows < 1000, "rows %zu", res.rows);
        cr_assert(res.value > 0.3 && res.value <= 1.0, "auc %g", res.value);
        unlink(model);
}
