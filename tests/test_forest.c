/*
 * test_forest.c: Criterion suite for models/forest.c (random forests of CART trees).
 * Separable toy classification, a step-function regression with its spread, seed
 * reproducibility, structure validation of hand-built trees and option checks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forest.h"

static uint64_t rng_state;

static double urand(void)
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (double)(z >> 11) / 9007199254740992.0;
}

/* 5 features; class 1 iff x0 + x1 > 1 with a margin of 0.1 around the boundary; the
 * other features are noise. */
static void separable(float *x, float *y, size_t n)
{
        for (size_t i = 0; i < n;) {
                for (size_t j = 0; j < 5; j++)
                        x[i * 5 + j] = (float)urand();
                float s = x[i * 5] + x[i * 5 + 1];
                if (fabsf(s - 1.0f) < 0.1f)
                        continue;
                y[i] = s > 1.0f ? 1.0f : 0.0f;
                i++;
        }
}

static double accuracy(const fls_forest_t *f, const float *x, const float *y, size_t n)
{
        float *p = malloc(n * sizeof(float));
        fls_forest_predict(f, x, n, p, NULL);
        size_t ok = 0;
        for (size_t i = 0; i < n; i++)
                ok += (p[i] > 0.5f) == (y[i] > 0.5f);
        free(p);
        return (double)ok / (double)n;
}

Test(forest, separates_separable_set)
{
        enum { NTR = 2000, NTE = 2000 };
        static float xtr[NTR * 5], ytr[NTR], xte[NTE * 5], yte[NTE];
        rng_state = 7;
        separable(xtr, ytr, NTR);
        separable(xte, yte, NTE);
        fls_forest_opts_t o;
        fls_forest_opts_default(&o, FLS_FOREST_CLASSIFIER);
        o.n_trees = 50;
        o.max_depth = 20;
        char err[256] = "";
        fls_forest_t *f = fls_forest_train(FLS_FOREST_CLASSIFIER, xtr, ytr, NTR, 5, &o,
                                           err, sizeof err);
        cr_assert_not_null(f, "%s", err);
        double atr = accuracy(f, xtr, ytr, NTR), ate = accuracy(f, xte, yte, NTE);
        cr_expect(atr == 1.0, "train accuracy %f", atr);
        cr_expect(ate > 0.95, "held-out accuracy %f", ate);
        fls_forest_destroy(f);
}

Test(forest, regressor_fits_step_with_spread)
{
        enum { N = 1000 };
        static float x[N], y[N], p[N], sd[N];
        for (size_t i = 0; i < N; i++) {
                x[i] = (float)i / N;
                y[i] = x[i] < 0.5f ? 10.0f : 20.0f;
        }
        fls_forest_opts_t o;
        fls_forest_opts_default(&o, FLS_FOREST_REGRESSOR);
        o.n_trees = 30;
        char err[256] = "";
        fls_forest_t *f =
            fls_forest_train(FLS_FOREST_REGRESSOR, x, y, N, 1, &o, err, sizeof err);
        cr_assert_not_null(f, "%s", err);
        fls_forest_predict(f, x, N, p, sd);
        /* 1000 distinct values share 256 bins, so the split sits at a bin edge within
         * a few bins of the step (bootstrap + min_samples_leaf 5 keep a leaf that
         * straddles it): exact away from it, bounded next to it. */
        for (size_t i = 0; i < N; i++) {
                if (fabsf(x[i] - 0.5f) < 0.02f) {
                        cr_assert(p[i] >= 10.0f && p[i] <= 20.0f);
                        continue;
                }
                cr_assert(fabsf(p[i] - y[i]) < 1e-3f, "x=%f: %f vs %f", x[i], p[i], y[i]);
                cr_assert(sd[i] < 1e-3f, "x=%f: spread %f", x[i], sd[i]);
        }
        /* with <= 256 distinct values the bins are exact: the step is exact too */
        for (size_t i = 0; i < N; i++)
                x[i] = (float)(i / 5) / (N / 5);
        fls_forest_t *g =
            fls_forest_train(FLS_FOREST_REGRESSOR, x, y, N, 1, &o, err, sizeof err);
        cr_assert_not_null(g, "%s", err);
        fls_forest_predict(g, x, N, p, sd);
        for (size_t i = 0; i < N; i++) {
                cr_assert(fabsf(p[i] - y[i]) < 1e-3f, "x=%f: %f vs %f", x[i], p[i], y[i]);
                cr_assert(sd[i] < 1e-3f, "x=%f: spread %f", x[i], sd[i]);
        }
        fls_forest_destroy(g);
        fls_forest_destroy(f);
}

Test(forest, same_seed_same_forest_other_seed_differs)
{
        enum { N = 500 };
        static float x[N * 5], y[N];
        rng_state = 3;
        separable(x, y, N);
        fls_forest_opts_t o;
        fls_forest_opts_default(&o, FLS_FOREST_CLASSIFIER);
        o.n_trees = 10;
        o.seed = 99;
        fls_forest_t *a =
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, N, 5, &o, NULL, 0);
        fls_forest_t *b =
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, N, 5, &o, NULL, 0);
        o.seed = 100;
        fls_forest_t *c =
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, N, 5, &o, NULL, 0);
        cr_assert(a && b && c);
        size_t na, nb, nc;
        const fls_forest_node_t *da = fls_forest_nodes(a, &na),
                                *db = fls_forest_nodes(b, &nb),
                                *dc = fls_forest_nodes(c, &nc);
        cr_assert_eq(na, nb);
        cr_expect(memcmp(da, db, na * sizeof(*da)) == 0);
        cr_expect(na != nc || memcmp(da, dc, na * sizeof(*da)) != 0);
        fls_forest_destroy(a);
        fls_forest_destroy(b);
        fls_forest_destroy(c);
}

Test(forest, from_nodes_validates_structure)
{
        /* one stump: x0 <= 0.5 ? 1 : 2 */
        fls_forest_node_t n[3] = {
            {0, 0.5f, 1, 2, 0}, {-1, 0, -1, -1, 1.0f}, {-1, 0, -1, -1, 2.0f}};
        uint32_t roots[1] = {0};
        char err[256] = "";
        fls_forest_t *f = fls_forest_from_nodes(FLS_FOREST_REGRESSOR, 1, roots, 1, n, 3,
                                                err, sizeof err);
        cr_assert_not_null(f, "%s", err);
        float x[3] = {0.2f, 0.7f, NAN}, p[3];
        fls_forest_predict(f, x, 3, p, NULL);
        cr_expect(p[0] == 1.0f && p[1] == 2.0f && p[2] == 2.0f, "%f %f %f", p[0], p[1],
                  p[2]);
        fls_forest_destroy(f);

        n[0].left = 0; /* cycle */
        cr_expect_null(fls_forest_from_nodes(FLS_FOREST_REGRESSOR, 1, roots, 1, n, 3, err,
                                             sizeof err));
        cr_expect(strstr(err, "malformed") != NULL, "%s", err);
        n[0].left = 1;
        n[0].feature = 1; /* out of range */
        cr_expect_null(fls_forest_from_nodes(FLS_FOREST_REGRESSOR, 1, roots, 1, n, 3, err,
                                             sizeof err));
        n[0].feature = 0;
        n[0].right = 3; /* past the tree */
        cr_expect_null(fls_forest_from_nodes(FLS_FOREST_REGRESSOR, 1, roots, 1, n, 3, err,
                                             sizeof err));
        fls_forest_destroy(NULL);
}

Test(forest, rejects_bad_input)
{
        float x[4] = {0, 1, 2, 3}, y[4] = {0, 1, 0, 2};
        char err[256] = "";
        cr_expect_null(
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, 4, 1, NULL, err, sizeof err));
        cr_expect(strstr(err, "0 or 1") != NULL, "%s", err);
        y[3] = 1;
        x[1] = NAN;
        cr_expect_null(
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, 4, 1, NULL, err, sizeof err));
        cr_expect(strstr(err, "not finite") != NULL, "%s", err);
        x[1] = 1;
        fls_forest_opts_t o;
        fls_forest_opts_default(&o, FLS_FOREST_CLASSIFIER);
        o.max_depth = 1000;
        cr_expect_null(
            fls_forest_train(FLS_FOREST_CLASSIFIER, x, y, 4, 1, &o, err, sizeof err));
}
