/*
 * seeds: writes the seed corpora of tests/fuzz/corpus/ from valid inputs, so that the
 * fuzzers start from messages, configuration files, model files and CSV files of the
 * kinds flashstream really reads (Kafka -> Avro -> Redis -> model -> Kafka, plus the
 * training data). Run once by hand (`fuzz_seeds tests/fuzz/corpus`); the files it
 * writes are kept in the repository next to what the fuzzers found.
 *
 *   codec/  records of all six subjects encoded with the real codec (fields filled by
 *           name with plausible values, every enum symbol once), prefixed with the
 *           subject byte fuzz_codec reads; clickstream also as v1 and v2 of the
 *           evolution registry of tests/data/schemas.
 *   conf/   key=value files: every key at its default, a realistic consumer file,
 *           boolean spellings, bad lines, an argument list, a bootstrap file.
 *   model/  one small model of each kind, built with the library (the shipped models
 *           are megabytes: too slow to mutate).
 *   csv/    the head of each dataset CSV under shared/data (when present) and
 *           hand-written files with quotes, line breaks, CRLF, a BOM, ';'.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clickstream.h"
#include "cmd.h"
#include "codec.h"
#include "conf.h"
#include "model.h"
#include "orders.h"
#include "settings.h"
#include "shipments.h"

static const char *root;

static int write_seed(const char *dir, const char *name, const void *data, size_t size)
{
        char path[4096];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s", root, dir);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                perror(path);
                return -1;
        }
        snprintf(path, sizeof(path), "%s/%s/%s", root, dir, name);
        fp = fopen(path, "wb");
        if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) {
                perror(path);
                return -1;
        }
        return 0;
}

/* ---- codec ---------------------------------------------------------------------- */

static const char *string_value(const char *field, int v)
{
        static char buf[128];
        static const char *const regions[] = {"north", "south", "east", "west"};

        if (strstr(field, "user_id"))
                snprintf(buf, sizeof(buf), "u-%d", 1000 + v);
        else if (strcmp(field, "sku") == 0 || strcmp(field, "skus") == 0)
                snprintf(buf, sizeof(buf), "sku-%d", 40 + v);
        else if (strstr(field, "warehouse"))
                snprintf(buf, sizeof(buf), "wh-%d", v % 3);
        else if (strstr(field, "region"))
                snprintf(buf, sizeof(buf), "%s", regions[v % 4]);
        else if (strstr(field, "category"))
                snprintf(buf, sizeof(buf), "%s", v % 2 ? "électronique" : "");
        else if (strstr(field, "campaign"))
                snprintf(buf, sizeof(buf), "%s", v % 3 ? "flash-2024-11" : "");
        else if (strstr(field, "version"))
                snprintf(buf, sizeof(buf), "delivery@20240501");
        else if (strstr(field, "_id"))
                snprintf(buf, sizeof(buf), "%.*s-%d", (int)(strlen(field) - 3), field,
                         7000 + v);
        else
                snprintf(buf, sizeof(buf), "%s %d", field, v);
        return buf;
}

/* Fills every field of the codec's output value by type and name. */
static int fill(avro_value_t *rec, int v)
{
        size_t n = 0;

        avro_value_get_size(rec, &n);
        for (size_t i = 0; i < n; i++) {
                avro_value_t f;
                const char *fname;
                int idx = (int)i, rc = 0;

                avro_value_get_by_index(rec, i, &f, &fname);
                switch (avro_value_get_type(&f)) {
                case AVRO_STRING: {
                        const char *s = string_value(fname, v);
                        rc = fls_avro_set_str(rec, idx, s, strlen(s));
                        break;
                }
                case AVRO_INT64:
                        rc = fls_avro_set_long(rec, idx,
                                               strstr(fname, "ts")
                                                   ? 1731000000000LL + v * 61000LL
                                                   : (int64_t)v * 3 - 2);
                        break;
                case AVRO_INT32:
                        rc = fls_avro_set_int(rec, idx, v * 250 + 1);
                        break;
                case AVRO_DOUBLE:
                        rc = fls_avro_set_double(rec, idx, 19.99 * (v + 1) - 5);
                        break;
                case AVRO_BOOLEAN:
                        rc = fls_avro_set_bool(rec, idx, v & 1);
                        break;
                case AVRO_ENUM:
                        rc = fls_avro_set_enum(rec, idx,
                                               v % avro_schema_enum_number_of_symbols(
                                                       avro_value_get_schema(&f)));
                        break;
                case AVRO_ARRAY:
                        for (int k = 0; k < v % 4 && !rc; k++) {
                                char s[32];
                                snprintf(s, sizeof(s), "sku-%d", 40 + k);
                                rc = fls_avro_append_str(rec, idx, s, strlen(s));
                        }
                        break;
                default:
                        fprintf(stderr, "seeds: field %s: unhandled type\n", fname);
                        return -1;
                }
                if (rc) {
                        fprintf(stderr, "seeds: field %s: %s\n", fname, avro_strerror());
                        return -1;
                }
        }
        return 0;
}

static int codec_seeds(void)
{
        static const struct {
                const char *subject, *dir, *tag;
                int sel, reader_id, variants;
        } subj[] = {
            {"clickstream-value", FLS_SCHEMA_DIR, "click", 0, 0, 6},
            {"orders-value", FLS_SCHEMA_DIR, "order", 1, 0, 4},
            {"shipments-value", FLS_SCHEMA_DIR, "shipment", 2, 0, 6},
            {"marketing-actions-value", FLS_SCHEMA_DIR, "action", 3, 0, 3},
            {"restock-signals-value", FLS_SCHEMA_DIR, "restock", 4, 0, 4},
            {"dispatch-decisions-value", FLS_SCHEMA_DIR, "dispatch", 5, 0, 3},
            {"clickstream-value", FLS_TEST_DATA "/schemas", "click-v1", 6, 1, 2},
            {"clickstream-value", FLS_TEST_DATA "/schemas", "click-v2", 6, 7, 2},
        };
        char err[512], name[64];
        uint8_t seed[4096];

        for (size_t s = 0; s < sizeof(subj) / sizeof(subj[0]); s++) {
                fls_codec_t *c =
                    fls_codec_new(subj[s].dir, subj[s].subject, subj[s].reader_id,
                                  1 << 20, err, sizeof(err));
                if (!c) {
                        fprintf(stderr, "seeds: %s\n", err);
                        return -1;
                }
                for (int v = 0; v < subj[s].variants; v++) {
                        avro_value_t *rec = fls_codec_out(c);
                        const void *buf;
                        size_t len, n;
                        if (fill(rec, v) ||
                            fls_codec_encode(c, &buf, &len, err, sizeof(err))) {
                                fprintf(stderr, "seeds: %s: %s\n", subj[s].subject, err);
                                fls_codec_destroy(c);
                                return -1;
                        }
                        seed[0] = (uint8_t)subj[s].sel;
                        n = 1;
                        if (n + len > sizeof(seed)) {
                                fls_codec_destroy(c);
                                return -1;
                        }
                        memcpy(seed + n, buf, len);
                        snprintf(name, sizeof(name), "seed-%s-%d", subj[s].tag, v);
                        if (write_seed("codec", name, seed, n + len)) {
                                fls_codec_destroy(c);
                                return -1;
                        }
                }
                fls_codec_destroy(c);
        }
        return 0;
}

/* ---- conf ----------------------------------------------------------------------- */

static int conf_seeds(void)
{
        const fls_conf_def_t *tables[] = {fls_settings_conf,
                                          fls_broker_conf,
                                          fls_simulate_conf,
                                          fls_clickstream_app.conf,
                                          fls_orders_app.conf,
                                          fls_shipments_app.conf,
                                          NULL};
        static const char consumer[] = "# consumer of the flash-sale clickstream\n"
                                       "kafka.bootstrap.servers = 127.0.0.1:9092\r\n"
                                       "kafka.queued.min.messages=1000000\n"
                                       "kafka.fetch.wait.max.ms=10\n"
                                       "\n"
                                       "   batch.max_messages = 5000   \n"
                                       "log.level=debug\n"
                                       "input.max_message_bytes=65536\n"
                                       "kafka.linger.ms=0\n"
                                       "kafka.linger.ms=5\n";
        static const char bad[] = "batch.max_messages = 5000\n"
                                  "input.max_message_bytes = 1e400\n"
                                  "kafka. = x\n"
                                  "= value\n"
                                  "no equals sign\n"
                                  "unknown.key = 1\n";
        static const char args[] = "--batch.max_messages=100\n--log.level\ninfo\n"
                                   "--kafka.linger.ms=0\n--help\npositional\n"
                                   "-h\n--unknown=1\n--\n--log.level=error\n";
        /* What `flashstream broker` writes to bootstrap.file. */
        static const char bootstrap[] = "bootstrap=127.0.0.1:39092\ncontrol=127.0.0.1:"
                                        "39093\npid=4242\n";
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        int rc;

        if (!out)
                return -1;
        fprintf(out, "# every key at its default\n");
        for (int t = 0; tables[t]; t++)
                for (const fls_conf_def_t *d = tables[t]; d->name; d++)
                        fprintf(out, "%s = %s\n", d->name, d->def ? d->def : "");
        fclose(out);
        rc = write_seed("conf", "seed-defaults", text, len);
        free(text);
        if (rc)
                return -1;

        text = NULL;
        out = open_memstream(&text, &len);
        if (!out)
                return -1;
        /* Bounds and spellings: the extremes of every ranged key, every boolean
         * spelling. */
        for (int t = 0; tables[t]; t++) {
                for (const fls_conf_def_t *d = tables[t]; d->name; d++) {
                        static const char *const b[] = {"TRUE", "no", "On", "0"};
                        static int k;
                        if (d->type == FLS_CONF_BOOL)
                                fprintf(out, "%s=%s\n", d->name, b[k++ % 4]);
                        else if (d->type == FLS_CONF_INT && d->min <= d->max)
                                fprintf(out, "%s=%.0f\n%s=%.0f\n", d->name, d->min,
                                        d->name, d->max);
                        else if (d->type == FLS_CONF_DBL && d->min <= d->max)
                                fprintf(out, "%s=%.17g\n%s=%.17g\n", d->name, d->min,
                                        d->name, d->max);
                }
        }
        fclose(out);
        rc = write_seed("conf", "seed-bounds", text, len);
        free(text);
        if (rc || write_seed("conf", "seed-consumer", consumer, sizeof(consumer) - 1) ||
            write_seed("conf", "seed-bad", bad, sizeof(bad) - 1) ||
            write_seed("conf", "seed-args", args, sizeof(args) - 1) ||
            write_seed("conf", "seed-bootstrap", bootstrap, sizeof(bootstrap) - 1))
                return -1;
        return 0;
}

/* ---- model ---------------------------------------------------------------------- */

static int save(fls_model_t *m, const char *name, const char *err)
{
        char path[4096], e[512];

        if (!m) {
                fprintf(stderr, "seeds: %s: %s\n", name, err);
                return -1;
        }
        snprintf(path, sizeof(path), "%s/model", root);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return -1;
        snprintf(path, sizeof(path), "%s/model/%s", root, name);
        if (fls_model_save(m, path, e, sizeof(e))) {
                fprintf(stderr, "seeds: %s\n", e);
                fls_model_destroy(m);
                return -1;
        }
        fls_model_destroy(m);
        return 0;
}

static int model_seeds(void)
{
        static const char *const names[] = {"price", "dwell_ms", "views_1h"};
        const float mean[] = {20.0f, 1500.0f, 3.0f}, std[] = {10.0f, 900.0f, 0.0f};
        const double coefs[] = {0.5, -1e-3, 2.0};
        fls_model_meta_t meta = {"tests/fuzz/seeds.c", 7, "2024-05-01T12:00:00Z",
                                 "val_mae", "3.41"};
        float x[40 * 3], ycls[40], yreg[40];
        fls_forest_opts_t o;
        char err[512] = "";
        fls_lstm_t *net;
        fls_forest_t *f;

        for (int r = 0; r < 40; r++) {
                for (int k = 0; k < 3; k++)
                        x[r * 3 + k] = (float)((r * 7 + k * 13) % 17);
                ycls[r] = x[r * 3] > 8 ? 1.0f : 0.0f;
                yreg[r] = x[r * 3] * 0.5f + x[r * 3 + 2];
        }
        net = fls_lstm_new(FLS_LSTM_REGRESSOR, 3, 2, 4, 1, err, sizeof(err));
        if (!net || save(fls_model_from_lstm(net, "demand", "seed", names, 3, mean, std,
                                             &meta, err, sizeof(err)),
                         "seed-lstm-reg.flsm", err))
                return -1;
        net = fls_lstm_new(FLS_LSTM_CLASSIFIER, 3, 3, 2, 2, err, sizeof(err));
        if (!net || save(fls_model_from_lstm(net, "intent", "seed", names, 3, NULL, NULL,
                                             &meta, err, sizeof(err)),
                         "seed-lstm-cls.flsm", err))
                return -1;
        fls_forest_opts_default(&o, FLS_FOREST_CLASSIFIER);
        o.n_trees = 3;
        o.max_depth = 3;
        f = fls_forest_train(FLS_FOREST_CLASSIFIER, x, ycls, 40, 3, &o, err, sizeof(err));
        if (!f || save(fls_model_from_forest(f, "participation", "seed", names, 3, NULL,
                                             NULL, &meta, err, sizeof(err)),
                       "seed-forest-cls.flsm", err))
                return -1;
        fls_forest_opts_default(&o, FLS_FOREST_REGRESSOR);
        o.n_trees = 3;
        o.max_depth = 3;
        f = fls_forest_train(FLS_FOREST_REGRESSOR, x, yreg, 40, 3, &o, err, sizeof(err));
        if (!f || save(fls_model_from_forest(f, "delivery", "seed", names, 3, mean, std,
                                             &meta, err, sizeof(err)),
                       "seed-forest-reg.flsm", err))
                return -1;
        {
                fls_linreg_t *lr = fls_linreg_from_coefs(3, 1.5, coefs, err, sizeof(err));
                if (!lr || save(fls_model_from_linreg(lr, "baseline", "seed", names, 3,
                                                      mean, std, &meta, err, sizeof(err)),
                                "seed-linreg.flsm", err))
                        return -1;
        }
        return 0;
}

/* ---- csv ------------------------------------------------------------------------ */

static int csv_head(const char *file, const char *name)
{
        char path[4096], buf[8192];
        size_t n = 1, lines = 0;
        FILE *fp;
        int c;

        snprintf(path, sizeof(path), "%s/%s", FLS_SHARED_DATA, file);
        fp = fopen(path, "rb");
        if (!fp)
                return 0; /* the datasets are optional here */
        buf[0] = strchr(file, ';') ? 1 : 0;
        while (lines < 6 && n < sizeof(buf) && (c = getc(fp)) != EOF) {
                buf[n++] = (char)c;
                if (c == '\n')
                        lines++;
        }
        fclose(fp);
        return write_seed("csv", name, buf, n);
}

static int csv_seeds(void)
{
        static const struct {
                const char *name, *text;
        } hand[] = {
            {"seed-quotes", "\0id,name,price\n1,\"Smith, John\",19.99\n"
                            "2,\"say \"\"hi\"\"\",NA\n3,,\n"},
            {"seed-multiline", "\0id,comment\r\n7,\"line one\r\nline two\"\r\n8,x"},
            {"seed-bom", "\0\xEF\xBB\xBF"
                         "col_a,col_b\n\xC3\xA9t\xC3\xA9,1e3\n"},
            {"seed-semicolon", "\1InvoiceNo;Description;Quantity;UnitPrice\n"
                               "536365;\"WHITE HANGING HEART T-LIGHT; HOLDER\";6;2,55\n"},
            {"seed-lenient", "\0a,b\"c,d\"e,\"\"\n\"unterminated,1\n"},
        };
        static const char *const heads[] = {
            "olist-brazilian-ecommerce/olist_order_items_2017_subset.csv",
            "olist-brazilian-ecommerce/olist_orders_2017_subset.csv",
            "olist-brazilian-ecommerce/olist_products_dataset.csv",
            "olist-brazilian-ecommerce/product_category_name_translation.csv",
            "rees46-ecommerce-behavior-sample/2019-Oct_head17k.csv",
            "uci-online-retail-sample/online_retail_random20k.csv",
            "diginetica-cikm2016-views-sample/sample_train-item-views.csv",
        };
        char name[64];

        for (size_t i = 0; i < sizeof(hand) / sizeof(hand[0]); i++)
                if (write_seed("csv", hand[i].name, hand[i].text,
                               1 + strlen(hand[i].text + 1)))
                        return -1;
        for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
                snprintf(name, sizeof(name), "seed-dataset-%zu", i);
                if (csv_head(heads[i], name))
                        return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_ROOT (tests/fuzz/corpus)\n", argv[0]);
                return 2;
        }
        root = argv[1];
        if (codec_seeds() || conf_seeds() || model_seeds() || csv_seeds()) {
                fprintf(stderr, "seeds: failed\n");
                return 1;
        }
        printf("seeds written under %s\n", root);
        return 0;
}
