/*
 * test_model.c: Criterion suite for models/model.c (generic model + file format).
 * Round trip per kind (identical predictions after save/load), rejection of corrupt,
 * truncated, wrong-magic and wrong-version files, robustness of the parser against
 * corrupt fields behind a valid checksum, feature checks and normalisation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

static const char *const names[] = {"a", "b", "c"};
static const float mean[] = {1.0f, -2.0f, 0.5f};
static const float sd[] = {2.0f, 0.5f, 1.0f};
static const fls_model_meta_t meta = {"unit-test data", 42, "2024-01-02T03:04:05Z",
                                      "val_mae", "0.125"};

static uint64_t rng_state = 1;

static float urand(void) /* [-1, 1) */
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (float)((double)(z >> 11) / 9007199254740992.0 * 2 - 1);
}

static char path[256];

static void setup(void)
{
        snprintf(path, sizeof path, "/tmp/fls_test_model_%ld.bin", (long)getpid());
}

static void teardown(void)
{
        unlink(path);
}

static fls_model_t *make(fls_model_kind_t kind)
{
        char err[256] = "";
        fls_model_t *m = NULL;
        enum { N = 300 };
        static float x[N * 3], y[N];
        for (size_t i = 0; i < N; i++) {
                for (size_t j = 0; j < 3; j++)
                        x[i * 3 + j] = urand();
                y[i] = x[i * 3] + x[i * 3 + 1] > 0 ? 1.0f : 0.0f;
        }
        switch (kind) {
        case FLS_MODEL_LSTM_REG:
        case FLS_MODEL_LSTM_CLS: {
                fls_lstm_t *n = fls_lstm_new(
                    kind == FLS_MODEL_LSTM_CLS ? FLS_LSTM_CLASSIFIER : FLS_LSTM_REGRESSOR,
                    3, 4, 5, 9, err, sizeof err);
                cr_assert_not_null(n, "%s", err);
                m = fls_model_from_lstm(n, "delivery", "v1", names, 3, mean, sd, &meta,
                                        err, sizeof err);
                break;
        }
        case FLS_MODEL_FOREST_CLS:
        case FLS_MODEL_FOREST_REG: {
                fls_forest_type_t t = kind == FLS_MODEL_FOREST_CLS ? FLS_FOREST_CLASSIFIER
                                                                   : FLS_FOREST_REGRESSOR;
                fls_forest_opts_t o;
                fls_forest_opts_default(&o, t);
                o.n_trees = 7;
                fls_forest_t *f = fls_forest_train(t, x, y, N, 3, &o, err, sizeof err);
                cr_assert_not_null(f, "%s", err);
                m = fls_model_from_forest(f, "fraud", "v2", names, 3, mean, sd, &meta,
                                          err, sizeof err);
                break;
        }
        case FLS_MODEL_LINREG: {
                double c[3] = {0.5, -1.25, 3.0};
                fls_linreg_t *lr = fls_linreg_from_coefs(3, 7.0, c, err, sizeof err);
                cr_assert_not_null(lr, "%s", err);
                m = fls_model_from_linreg(lr, "demand", "v3", names, 3, mean, sd, &meta,
                                          err, sizeof err);
                break;
        }
        }
        cr_assert_not_null(m, "%s", err);
        return m;
}

static void round_trip(fls_model_kind_t kind)
{
        char err[256] = "";
        fls_model_t *m = make(kind);
        size_t T = fls_model_seq_len(m), B = 33;
        float *x = malloc(B * T * 3 * sizeof(float));
        for (size_t i = 0; i < B * T * 3; i++)
                x[i] = urand() * 3;
        float p1[33], p2[33];
        cr_assert_eq(fls_model_predict(m, x, B, p1, err, sizeof err), 0, "%s", err);
        cr_assert_eq(fls_model_save(m, path, err, sizeof err), 0, "%s", err);
        fls_model_t *l = fls_model_load(path, err, sizeof err);
        cr_assert_not_null(l, "%s", err);
        cr_assert_eq(fls_model_predict(l, x, B, p2, err, sizeof err), 0, "%s", err);
        cr_expect(memcmp(p1, p2, sizeof p1) == 0, "predictions differ after load");
        cr_expect_eq(fls_model_kind(l), kind);
        cr_expect_str_eq(fls_model_name(l), fls_model_name(m));
        cr_expect_str_eq(fls_model_version(l), fls_model_version(m));
        cr_expect_eq(fls_model_nfeatures(l), 3);
        cr_expect_eq(fls_model_seq_len(l), T);
        cr_expect_str_eq(fls_model_feature_name(l, 2), "c");
        cr_expect_null(fls_model_feature_name(l, 3));
        cr_expect(memcmp(fls_model_mean(l), mean, sizeof mean) == 0);
        cr_expect(memcmp(fls_model_std(l), sd, sizeof sd) == 0);
        const fls_model_meta_t *mm = fls_model_meta(l);
        cr_expect_str_eq(mm->data_source, "unit-test data");
        cr_expect_eq(mm->seed, 42);
        cr_expect_str_eq(mm->created, "2024-01-02T03:04:05Z");
        cr_expect_str_eq(mm->metric_name, "val_mae");
        cr_expect_str_eq(mm->metric_value, "0.125");
        cr_expect_eq(fls_model_check_features(l, names, 3, err, sizeof err), 0, "%s",
                     err);
        for (size_t i = 0; i < B; i++)
                cr_expect(isfinite(p1[i]));
        if (fls_model_is_classifier(l))
                for (size_t i = 0; i < B; i++)
                        cr_expect(p1[i] >= 0 && p1[i] <= 1);
        free(x);
        fls_model_destroy(m);
        fls_model_destroy(l);
}

TestSuite(model, .init = setup, .fini = teardown);

Test(model, round_trip_lstm_reg)
{
        round_trip(FLS_MODEL_LSTM_REG);
}
Test(model, round_trip_lstm_cls)
{
        round_trip(FLS_MODEL_LSTM_CLS);
}
Test(model, round_trip_forest_cls)
{
        round_trip(FLS_MODEL_FOREST_CLS);
}
Test(model, round_trip_forest_reg)
{
        round_trip(FLS_MODEL_FOREST_REG);
}
Test(model, round_trip_linreg)
{
        round_trip(FLS_MODEL_LINREG);
}

/* linreg with known coefficients: checks the normalisation is applied as documented */
Test(model, applies_normalisation)
{
        char err[256] = "";
        fls_model_t *m = make(FLS_MODEL_LINREG);
        float x[3] = {3.0f, -1.0f, 2.5f}, out;
        cr_assert_eq(fls_model_predict(m, x, 1, &out, err, sizeof err), 0, "%s", err);
        /* z = (1, 2, 2); 7 + 0.5 - 2.5 + 6 = 11 */
        cr_expect(fabsf(out - 11.0f) < 1e-5f, "%f", out);
        fls_model_destroy(m);
}

static unsigned char *slurp(size_t *n)
{
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        fseek(f, 0, SEEK_END);
        *n = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *b = malloc(*n);
        cr_assert_eq(fread(b, 1, *n, f), *n);
        fclose(f);
        return b;
}

static void spit(const unsigned char *b, size_t n)
{
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(b, 1, n, f), n);
        fclose(f);
}

static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFFu;
}

static void fix_crc(unsigned char *b, size_t n)
{
        uint32_t c = crc32_ref(b, n - 4);
        for (int i = 0; i < 4; i++)
                b[n - 4 + i] = (unsigned char)(c >> (8 * i));
}

static void expect_load_fails(const char *needle)
{
        char err[256] = "";
        fls_model_t *m = fls_model_load(path, err, sizeof err);
        cr_expect_null(m, "loaded a bad file (expected '%s')", needle);
        fls_model_destroy(m);
        cr_expect(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
        cr_expect(strstr(err, path) != NULL, "error '%s' does not name the file", err);
}

Test(model, rejects_corrupt_byte)
{
        fls_model_t *m = make(FLS_MODEL_FOREST_REG);
        cr_assert_eq(fls_model_save(m, path, NULL, 0), 0);
        fls_model_destroy(m);
        size_t n;
        unsigned char *b = slurp(&n);
        b[n / 2] ^= 0x10;
        spit(b, n);
        expect_load_fails("checksum mismatch");
        b[n / 2] ^= 0x10;
        b[n - 1] ^= 0x01; /* the checksum itself */
        spit(b, n);
        expect_load_fails("checksum mismatch");
        free(b);
}

Test(model, rejects_truncated_at_many_lengths)
{
        fls_model_t *m = make(FLS_MODEL_LSTM_CLS);
        cr_assert_eq(fls_model_save(m, path, NULL, 0), 0);
        fls_model_destroy(m);
        size_t n;
        unsigned char *b = slurp(&n);
        size_t cuts[] = {0, 3, 4, 10, 20, 23, 24, 40, n / 2, n - 5, n - 4, n - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
                spit(b, cuts[i]);
                expect_load_fails(cuts[i] < 4 ? "bad magic" : "truncated");
        }
        unsigned char *big = malloc(n + 3);
        memcpy(big, b, n);
        memset(big + n, 0, 3);
        spit(big, n + 3);
        expect_load_fails("oversized");
        free(big);
        free(b);
}

Test(model, rejects_wrong_magic_version_kind)
{
        fls_model_t *m = make(FLS_MODEL_LINREG);
        cr_assert_eq(fls_model_save(m, path, NULL, 0), 0);
        fls_model_destroy(m);
        size_t n;
        unsigned char *b = slurp(&n);
        b[0] = 'X';
        spit(b, n);
        expect_load_fails("bad magic");
        b[0] = 'F';
        b[4] = 2;
        fix_crc(b, n); /* version check must not depend on the checksum */
        spit(b, n);
        expect_load_fails("format version 2");
        b[4] = 1;
        b[8] = 9;
        fix_crc(b, n);
        spit(b, n);
        expect_load_fails("unknown model kind 9");
        free(b);
        unlink(path);
        char err[256] = "";
        cr_expect_null(fls_model_load(path, err, sizeof err));
        cr_expect(strstr(err, "No such file") != NULL, "%s", err);
}

/* Every byte flipped behind a valid checksum: the parser must refuse or load cleanly,
 * never crash or over-allocate (run under ASan). */
Test(model, survives_corrupt_fields_with_valid_checksum)
{
        fls_model_kind_t kinds[] = {FLS_MODEL_LINREG, FLS_MODEL_FOREST_CLS,
                                    FLS_MODEL_LSTM_REG};
        for (size_t k = 0; k < 3; k++) {
                fls_model_t *m = make(kinds[k]);
                cr_assert_eq(fls_model_save(m, path, NULL, 0), 0);
                fls_model_destroy(m);
                size_t n;
                unsigned char *b = slurp(&n);
                size_t step = n > 2000 ? 7 : 1;
                for (size_t i = 20; i + 4 < n; i += step) {
                        for (int v = 0; v < 2; v++) {
                                unsigned char keep = b[i];
                                b[i] = v ? 0xFF : (unsigned char)(keep ^ 0x80);
                                fix_crc(b, n);
                                spit(b, n);
                                char err[256] = "";
                                fls_model_t *l = fls_model_load(path, err, sizeof err);
                                if (l) {
                                        /* the shape may have changed: size by it */
                                        float *x = calloc(fls_model_seq_len(l) *
                                                              fls_model_nfeatures(l),
                                                          sizeof(float));
                                        float out;
                                        fls_model_predict(l, x, 1, &out, NULL, 0);
                                        free(x);
                                        fls_model_destroy(l);
                                } else {
                                        cr_assert(err[0] != 0, "no message at byte %zu",
                                                  i);
                                }
                                b[i] = keep;
                        }
                }
                free(b);
        }
}

Test(model, check_features_names_first_mismatch)
{
        char err[256] = "";
        fls_model_t *m = make(FLS_MODEL_LINREG);
        const char *other[] = {"a", "x", "c"};
        cr_expect_eq(fls_model_check_features(m, other, 3, err, sizeof err), -1);
        cr_expect(strstr(err, "feature 1 is 'b' in the model, 'x' expected") != NULL,
                  "%s", err);
        cr_expect_eq(fls_model_check_features(m, names, 2, err, sizeof err), -1);
        cr_expect(strstr(err, "model has 3 features, 2 expected") != NULL, "%s", err);
        const char *more[] = {"a", "b", "c", "d"};
        cr_expect_eq(fls_model_check_features(m, more, 4, err, sizeof err), -1);
        cr_expect(strstr(err, "model has 3 features, 4 expected") != NULL, "%s", err);
        cr_expect(strstr(err, "'d'") != NULL, "%s", err);
        cr_expect_eq(fls_model_check_features(m, names, 3, err, sizeof err), 0);
        fls_model_destroy(m);
}

Test(model, spread_for_forests_only_and_reserve)
{
        char err[256] = "";
        fls_model_t *f = make(FLS_MODEL_FOREST_REG), *l = make(FLS_MODEL_LINREG);
        float x[4 * 3], out[4], s[4];
        for (size_t i = 0; i < 12; i++)
                x[i] = urand();
        cr_assert_eq(fls_model_reserve(f, 1024, err, sizeof err), 0, "%s", err);
        cr_assert_eq(fls_model_predict_spread(f, x, 4, out, s, err, sizeof err), 0, "%s",
                     err);
        for (size_t i = 0; i < 4; i++)
                cr_expect(s[i] >= 0 && isfinite(s[i]));
        cr_expect_eq(fls_model_predict_spread(l, x, 4, out, s, err, sizeof err), -1);
        cr_expect(strstr(err, "no spread") != NULL, "%s", err);
        fls_model_destroy(f);
        fls_model_destroy(l);
        fls_model_destroy(NULL);
}

Test(model, constructor_checks_and_ownership)
{
        char err[256] = "";
        fls_lstm_t *n = fls_lstm_new(FLS_LSTM_REGRESSOR, 2, 2, 2, 1, NULL, 0);
        /* 3 names for 2 inputs: refused, and the net is freed (ASan checks the leak) */
        cr_expect_null(fls_model_from_lstm(n, "x", "v", names, 3, NULL, NULL, NULL, err,
                                           sizeof err));
        cr_expect(strstr(err, "2 inputs, 3 feature names") != NULL, "%s", err);
        /* NULL mean/std and meta: identity normalisation, created stamped */
        double c[3] = {1, 1, 1};
        fls_model_t *m =
            fls_model_from_linreg(fls_linreg_from_coefs(3, 0, c, NULL, 0), "s", NULL,
                                  names, 3, NULL, NULL, NULL, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        cr_expect(strlen(fls_model_meta(m)->created) == 20, "%s",
                  fls_model_meta(m)->created);
        float x[3] = {1, 2, 3}, out;
        fls_model_predict(m, x, 1, &out, NULL, 0);
        cr_expect(out == 6.0f);
        fls_model_destroy(m);
}

Test(model, norm_fit_and_apply)
{
        float x[4 * 2] = {1, 5, 3, 5, NAN, 5, 5, 5}, mu[2], s[2];
        fls_norm_fit(x, 4, 2, mu, s);
        cr_expect(fabsf(mu[0] - 3.0f) < 1e-6f && fabsf(mu[1] - 5.0f) < 1e-6f);
        cr_expect(fabsf(s[0] - sqrtf(8.0f / 3.0f)) < 1e-5f, "%f", s[0]);
        cr_expect(s[1] == 1.0f, "constant feature std %f", s[1]);
        fls_norm_apply(x, 4, 2, mu, s);
        cr_expect(x[1] == 0.0f && fabsf(x[0] + 2.0f / sqrtf(8.0f / 3.0f)) < 1e-5f);
}
