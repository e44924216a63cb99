/*
 * test_linreg.c: Criterion suite for models/linreg.c (OLS/ridge via LAPACKE_dgelsd).
 * Checks that known coefficients come back, that ridge shrinks them and that bad input
 * is refused with a message rather than a crash.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linreg.h"

static uint64_t rng_state = 42;

static double urand(void)
{
        /* splitmix64: deterministic across platforms, unlike rand() */
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (double)(z >> 11) / 9007199254740992.0;
}

/* y = 3 + 2 x1 - x2 + noise(+-1e-4) */
static void make_data(float *x, float *y, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                float x1 = (float)(urand() * 10 - 5), x2 = (float)(urand() * 4 - 2);
                x[2 * i] = x1;
                x[2 * i + 1] = x2;
                y[i] = (float)(3.0 + 2.0 * x1 - x2 + (urand() - 0.5) * 2e-4);
        }
}

Test(linreg, recovers_known_coefficients)
{
        enum { N = 2000 };
        static float x[N * 2], y[N], out[N];
        char err[256] = "";
        make_data(x, y, N);
        fls_linreg_t *lr = fls_linreg_fit(x, y, N, 2, 0.0, err, sizeof err);
        cr_assert_not_null(lr, "%s", err);
        cr_expect(fabs(fls_linreg_intercept(lr) - 3.0) < 1e-3, "b0=%f",
                  fls_linreg_intercept(lr));
        cr_expect(fabs(fls_linreg_coefs(lr)[0] - 2.0) < 1e-3, "b1=%f",
                  fls_linreg_coefs(lr)[0]);
        cr_expect(fabs(fls_linreg_coefs(lr)[1] + 1.0) < 1e-3, "b2=%f",
                  fls_linreg_coefs(lr)[1]);
        fls_linreg_predict(lr, x, N, out);
        for (size_t i = 0; i < N; i++)
                cr_assert(fabsf(out[i] - y[i]) < 1e-2f, "row %zu: %f vs %f", i, out[i],
                          y[i]);
        fls_linreg_destroy(lr);
}

Test(linreg, ridge_shrinks_coefficients_not_intercept)
{
        enum { N = 200 };
        static float x[N * 2], y[N];
        char err[256] = "";
        make_data(x, y, N);
        fls_linreg_t *a = fls_linreg_fit(x, y, N, 2, 0.0, err, sizeof err);
        fls_linreg_t *b = fls_linreg_fit(x, y, N, 2, 1000.0, err, sizeof err);
        cr_assert(a && b, "%s", err);
        cr_expect(fabs(fls_linreg_coefs(b)[0]) < fabs(fls_linreg_coefs(a)[0]) - 0.1);
        cr_expect(fabs(fls_linreg_coefs(b)[1]) < fabs(fls_linreg_coefs(a)[1]));
        fls_linreg_destroy(a);
        fls_linreg_destroy(b);
}

Test(linreg, collinear_features_do_not_fail)
{
        enum { N = 100 };
        static float x[N * 2], y[N];
        for (size_t i = 0; i < N; i++) {
                x[2 * i] = x[2 * i + 1] = (float)i;
                y[i] = 1.0f + 4.0f * (float)i;
        }
        char err[256] = "";
        fls_linreg_t *lr = fls_linreg_fit(x, y, N, 2, 0.0, err, sizeof err);
        cr_assert_not_null(lr, "%s", err);
        /* minimum-norm solution splits the slope evenly */
        cr_expect(fabs(fls_linreg_coefs(lr)[0] - 2.0) < 1e-6);
        cr_expect(fabs(fls_linreg_intercept(lr) - 1.0) < 1e-6);
        fls_linreg_destroy(lr);
}

Test(linreg, rejects_nan_and_bad_lambda)
{
        float x[4] = {1, 2, NAN, 4}, y[2] = {1, 2};
        char err[256] = "";
        cr_expect_null(fls_linreg_fit(x, y, 2, 2, 0.0, err, sizeof err));
        cr_expect(strstr(err, "not finite") != NULL, "%s", err);
        x[2] = 3;
        cr_expect_null(fls_linreg_fit(x, y, 2, 2, -1.0, err, sizeof err));
        cr_expect(strstr(err, "lambda") != NULL, "%s", err);
        fls_linreg_destroy(NULL);
}
