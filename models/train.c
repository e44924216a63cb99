/*
 * train: argument parsing and dispatch of `flashstream train/eval` to the task modules
 * (task_delivery, task_demand, task_intent), and the JSON line of eval. Errors go to
 * stderr; nothing here exits the process.
 */
#include "train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_time.h"
#include "task_delivery.h"
#include "task_demand.h"
#include "task_demand_sim.h"
#include "task_dispatch.h"
#include "task_intent.h"
#include "task_intent_sim.h"
#include "task_inventory.h"
#include "task_participation.h"

typedef int (*train_fn)(const char *data, const fls_range_t *range, uint64_t seed,
                        const char *out, const char *export_csv, char *errstr,
                        size_t errstr_size);
typedef int (*eval_fn)(const char *model, const char *data, const fls_range_t *range,
                       const char *export_csv, fls_task_result_t *res, char *errstr,
                       size_t errstr_size);

static const struct {
        const char *name;
        train_fn train;
        eval_fn eval;
        const char *data; /* the dataset folder it expects */
} tasks[] = {
    {"delivery", fls_task_delivery_train, fls_task_delivery_eval,
     "olist-brazilian-ecommerce"},
    {"demand", fls_task_demand_train, fls_task_demand_eval, "uci-online-retail-sample"},
    {"intent", fls_task_intent_train, fls_task_intent_eval,
     "rees46-ecommerce-behavior-sample"},
    {"intent-sim", fls_task_intent_sim_train, fls_task_intent_sim_eval,
     "a `flashstream simulate --sim.out_dir` folder"},
    {"participation", fls_task_participation_train, fls_task_participation_eval,
     "a `flashstream simulate --sim.out_dir` folder"},
    {"delivery-sim", fls_task_dispatch_train, fls_task_dispatch_eval,
     "a `flashstream simulate --sim.out_dir` folder"},
    {"demand-sim", fls_task_demand_sim_train, fls_task_demand_sim_eval,
     "a `flashstream simulate --sim.out_dir` folder"},
    {"inventory", fls_task_inventory_train, fls_task_inventory_eval,
     "a `flashstream simulate --sim.out_dir` folder"},
};

#define NTASKS (sizeof(tasks) / sizeof(tasks[0]))

static void usage(const char *cmd)
{
        if (strcmp(cmd, "train") == 0)
                fprintf(stderr, "usage: flashstream train MODEL --data DIR --out FILE "
                                "[--seed N] [--from TIME] [--until TIME]\n");
        else
                fprintf(stderr, "usage: flashstream eval MODEL --model FILE --data DIR "
                                "[--from TIME] [--until TIME]\n");
        fprintf(stderr, "  MODEL: delivery (DIR: .../olist-brazilian-ecommerce), demand "
                        "(.../uci-online-retail-sample),\n"
                        "         intent (.../rees46-ecommerce-behavior-sample)\n"
                        "  TIME: YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'; --from is "
                        "inclusive, --until exclusive\n");
}

typedef struct {
        const char *model_name, *data, *out, *model, *from, *until, *export_csv;
        uint64_t seed;
        int task;
} args_t;

/* 0 on success, 2 on bad usage (message printed). */
static int parse(int argc, char **argv, int is_train, args_t *a)
{
        const char *cmd = argv && argc > 0 ? argv[0] : (is_train ? "train" : "eval");
        memset(a, 0, sizeof(*a));
        a->seed = 1;
        a->task = -1;
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i];
                const char **slot = NULL;
                if (strcmp(arg, "--data") == 0)
                        slot = &a->data;
                else if (strcmp(arg, "--from") == 0)
                        slot = &a->from;
                else if (strcmp(arg, "--until") == 0)
                        slot = &a->until;
                else if (strcmp(arg, "--export-csv") == 0)
                        slot = &a->export_csv;
                else if (is_train && strcmp(arg, "--out") == 0)
                        slot = &a->out;
                else if (!is_train && strcmp(arg, "--model") == 0)
                        slot = &a->model;
                if (slot || (is_train && strcmp(arg, "--seed") == 0)) {
                        if (i + 1 >= argc) {
                                fprintf(stderr, "flashstream %s: %s needs a value\n", cmd,
                                        arg);
                                usage(cmd);
                                return 2;
                        }
                        const char *v = argv[++i];
                        if (slot) {
                                *slot = v;
                                continue;
                        }
                        char *end;
                        errno = 0;
                        unsigned long long s = strtoull(v, &end, 10);
                        if (!*v || *end || errno || *v == '-') {
                                fprintf(stderr,
                                        "flashstream %s: --seed: '%s' is not a "
                                        "non-negative integer\n",
                                        cmd, v);
                                usage(cmd);
                                return 2;
                        }
                        a->seed = s;
                        continue;
                }
                if (arg[0] == '-') {
                        fprintf(stderr, "flashstream %s: unknown option %s\n", cmd, arg);
                        usage(cmd);
                        return 2;
                }
                if (a->model_name) {
                        fprintf(stderr, "flashstream %s: unexpected argument %s\n", cmd,
                                arg);
                        usage(cmd);
                        return 2;
                }
                a->model_name = arg;
        }
        if (!a->model_name) {
                fprintf(stderr, "flashstream %s: MODEL missing\n", cmd);
                usage(cmd);
                return 2;
        }
        for (size_t t = 0; t < NTASKS; t++)
                if (strcmp(tasks[t].name, a->model_name) == 0)
                        a->task = (int)t;
        if (a->task < 0) {
                fprintf(stderr, "flashstream %s: unknown MODEL '%s'\n", cmd,
                        a->model_name);
                usage(cmd);
                return 2;
        }
        const char *missing = !a->data                 ? "--data"
                              : is_train && !a->out    ? "--out"
                              : !is_train && !a->model ? "--model"
                                                       : NULL;
        if (missing) {
                fprintf(stderr, "flashstream %s: %s is required\n", cmd, missing);
                usage(cmd);
                return 2;
        }
        return 0;
}

static void json_string(FILE *fp, const char *s)
{
        fputc('"', fp);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        fprintf(fp, "\\%c", c);
                else if (c < 0x20)
                        fprintf(fp, "\\u%04x", c);
                else
                        fputc(c, fp);
        }
        fputc('"', fp);
}

static void json_number(FILE *fp, double v)
{
        if (isfinite(v))
                fprintf(fp, "%.10g", v);
        else
                fputs("null", fp);
}

static void json_time(FILE *fp, int has, int64_t t)
{
        if (!has) {
                fputs("null", fp);
                return;
        }
        char buf[32];
        fls_time_format(t, buf, sizeof(buf));
        json_string(fp, buf);
}

static int run(int argc, char **argv, int is_train)
{
        const char *cmd = is_train ? "train" : "eval";
        args_t a;
        int rc = parse(argc, argv, is_train, &a);
        if (rc)
                return rc;
        char err[1024] = "";
        fls_range_t range = FLS_RANGE_ALL;
        if (fls_range_set(&range, a.from, a.until, err, sizeof(err)) < 0) {
                fprintf(stderr, "flashstream %s: %s\n", cmd, err);
                usage(cmd);
                return 2;
        }
        if (is_train) {
                if (tasks[a.task].train(a.data, &range, a.seed, a.out, a.export_csv, err,
                                        sizeof(err)) < 0) {
                        fprintf(stderr, "flashstream train %s: %s\n", a.model_name, err);
                        return 1;
                }
                fprintf(stderr, "flashstream train %s: wrote %s\n", a.model_name, a.out);
                return 0;
        }
        fls_task_result_t res;
        memset(&res, 0, sizeof(res));
        if (tasks[a.task].eval(a.model, a.data, &range, a.export_csv, &res, err,
                               sizeof(err)) < 0) {
                fprintf(stderr, "flashstream eval %s: %s\n", a.model_name, err);
                return 1;
        }
        /* The range eval really used: the task fills the defaults it applied. */
        FILE *fp = stdout;
        fputs("{\"model\":", fp);
        json_string(fp, a.model_name);
        fputs(",\"data\":", fp);
        json_string(fp, a.data);
        fprintf(fp, ",\"rows\":%zu,\"metric\":", res.rows);
        json_string(fp, res.metric);
        fputs(",\"value\":", fp);
        json_number(fp, res.value);
        if (res.metric2) {
                fputs(",\"metric2\":", fp);
                json_string(fp, res.metric2);
                fputs(",\"value2\":", fp);
                json_number(fp, res.value2);
        }
        fputs(",\"baselines\":{", fp);
        for (size_t i = 0; i < res.nbaselines; i++) {
                if (i)
                        fputc(',', fp);
                json_string(fp, res.baseline_name[i]);
                fputc(':', fp);
                json_number(fp, res.baseline[i]);
        }
        fputc('}', fp);
        if (res.metric2) {
                fputs(",\"baselines2\":{", fp);
                for (size_t i = 0; i < res.nbaselines; i++) {
                        if (i)
                                fputc(',', fp);
                        json_string(fp, res.baseline_name[i]);
                        fputc(':', fp);
                        json_number(fp, res.baseline2[i]);
                }
                fputc('}', fp);
        }
        fputs(",\"from\":", fp);
        json_time(fp, res.range.has_from, res.range.from);
        fputs(",\"until\":", fp);
        json_time(fp, res.range.has_until, res.range.until);
        fputs("}\n", fp);
        fflush(fp);
        return ferror(fp) ? 1 : 0;
}

int fls_train_main(int argc, char **argv)
{
        return run(argc, argv, 1);
}

int fls_eval_main(int argc, char **argv)
{
        return run(argc, argv, 0);
}
