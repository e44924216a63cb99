/*
 * test_lstm.c: Criterion suite for models/lstm.c (batched LSTM inference, BPTT/Adam).
 * Forward checked against a hand-computed H=1, T=2 case, BPTT against central finite
 * differences, training against a toy sequence task, and seed reproducibility.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lstm.h"

static uint64_t rng_state;

static float urand(void) /* [-1, 1) */
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (float)((double)(z >> 11) / 9007199254740992.0 * 2 - 1);
}

/* F=1, H=1, T=2. Gates i,f,g,o; expected values computed by hand (in double):
 *   step 1, x=1:  i=.63414 f=.66819 g=.60437 o=.59869 c=.38325 h=.21884
 *   step 2, x=-2: i=.28331 f=.84390 g=-.94995 o=.46646 c=.05430 h=.02530
 *   z = 1.5*h - 0.2 = -0.162046, sigmoid(z) = 0.459577 */
static void set_tiny(fls_lstm_t *n)
{
        size_t np;
        float *p = fls_lstm_params(n, &np);
        cr_assert_eq(np, 4 + 4 + 4 + 1 + 1);
        const float v[14] = {0.5f, -0.3f, 0.8f, 0.2f,  0.1f, 0.4f, -0.6f,
                             0.3f, 0.05f, 1.0f, -0.1f, 0.2f, 1.5f, -0.2f};
        memcpy(p, v, sizeof v);
}

Test(lstm, forward_matches_hand_computation)
{
        char err[256] = "";
        float x[2] = {1.0f, -2.0f}, out;
        fls_lstm_t *r = fls_lstm_new(FLS_LSTM_REGRESSOR, 1, 1, 2, 1, err, sizeof err);
        fls_lstm_t *c = fls_lstm_new(FLS_LSTM_CLASSIFIER, 1, 1, 2, 1, err, sizeof err);
        cr_assert(r && c, "%s", err);
        set_tiny(r);
        set_tiny(c);
        cr_assert_eq(fls_lstm_forward(r, x, 1, &out, err, sizeof err), 0, "%s", err);
        cr_expect(fabsf(out - -0.1620459f) < 1e-6f, "regressor %.7f", out);
        cr_assert_eq(fls_lstm_forward(c, x, 1, &out, err, sizeof err), 0, "%s", err);
        cr_expect(fabsf(out - 0.4595769f) < 1e-6f, "classifier %.7f", out);
        fls_lstm_destroy(r);
        fls_lstm_destroy(c);
}

/* A batch must give the same answers as its rows one by one: checks the strided
 * X_t reads (lda = T*F) and the in-place state updates. */
Test(lstm, batch_equals_rows)
{
        enum { F = 3, H = 5, T = 4, B = 7 };
        float x[B * T * F], out[B], one;
        rng_state = 11;
        for (size_t i = 0; i < B * T * F; i++)
                x[i] = urand();
        fls_lstm_t *n = fls_lstm_new(FLS_LSTM_REGRESSOR, F, H, T, 5, NULL, 0);
        cr_assert_not_null(n);
        cr_assert_eq(fls_lstm_forward(n, x, B, out, NULL, 0), 0);
        for (size_t r = 0; r < B; r++) {
                cr_assert_eq(fls_lstm_forward(n, x + r * T * F, 1, &one, NULL, 0), 0);
                cr_expect(fabsf(one - out[r]) < 1e-5f, "row %zu: %f vs %f", r, one,
                          out[r]);
        }
        fls_lstm_destroy(n);
}

static void grad_check(fls_lstm_type_t type)
{
        enum { F = 2, H = 3, T = 3, B = 4 };
        float x[B * T * F], y[B];
        rng_state = 5;
        for (size_t i = 0; i < B * T * F; i++)
                x[i] = urand() * 1.5f;
        for (size_t r = 0; r < B; r++)
                y[r] = type == FLS_LSTM_CLASSIFIER ? (float)(r % 2) : urand();
        char err[256] = "";
        fls_lstm_t *n = fls_lstm_new(type, F, H, T, 3, err, sizeof err);
        cr_assert_not_null(n, "%s", err);
        size_t np;
        float *p = fls_lstm_params(n, &np);
        for (size_t i = 0; i < np; i++) /* larger weights: exercise saturation */
                p[i] = urand() * 0.8f;
        float *g = malloc(np * sizeof(float));
        double loss, lp, lm;
        float pw = type == FLS_LSTM_CLASSIFIER ? 2.0f : 1.0f;
        cr_assert_eq(fls_lstm_loss_grad(n, x, y, B, pw, &loss, g, err, sizeof err), 0);
        double worst = 0;
        size_t worst_i = 0;
        for (size_t i = 0; i < np; i++) {
                const float eps = 1e-2f;
                float keep = p[i];
                p[i] = keep + eps;
                fls_lstm_loss_grad(n, x, y, B, pw, &lp, NULL, NULL, 0);
                p[i] = keep - eps;
                fls_lstm_loss_grad(n, x, y, B, pw, &lm, NULL, NULL, 0);
                p[i] = keep;
                double fd = (lp - lm) / (2.0 * eps);
                double den = fmax(fmax(fabs(fd), fabs(g[i])), 1e-2);
                double rel = fabs(fd - g[i]) / den;
                if (rel > worst) {
                        worst = rel;
                        worst_i = i;
                }
        }
        cr_expect(worst < 1e-2, "param %zu: relative error %g", worst_i, worst);
        free(g);
        fls_lstm_destroy(n);
}

Test(lstm, bptt_gradient_matches_finite_differences_regressor)
{
        grad_check(FLS_LSTM_REGRESSOR);
}

Test(lstm, bptt_gradient_matches_finite_differences_classifier)
{
        grad_check(FLS_LSTM_CLASSIFIER);
}

/* Toy task needing memory: y = x[t=0] - x[t=T-1] (regressor), y = x[t=0] > 0 (class). */
enum { TF = 1, TH = 8, TT = 6, TN = 512 };

static void toy(float *x, float *y, int cls)
{
        rng_state = 21;
        for (size_t r = 0; r < TN; r++) {
                for (size_t t = 0; t < TT; t++)
                        x[r * TT + t] = urand();
                y[r] =
                    cls ? (x[r * TT] > 0 ? 1.0f : 0.0f) : x[r * TT] - x[r * TT + TT - 1];
        }
}

static fls_lstm_t *train_toy(fls_lstm_type_t type, double *before, double *after)
{
        static float x[TN * TT], y[TN];
        toy(x, y, type == FLS_LSTM_CLASSIFIER);
        char err[256] = "";
        fls_lstm_t *n = fls_lstm_new(type, TF, TH, TT, 17, err, sizeof err);
        cr_assert_not_null(n, "%s", err);
        cr_assert_eq(fls_lstm_loss_grad(n, x, y, TN, 1.0f, before, NULL, err, sizeof err),
                     0);
        fls_lstm_train_opts_t o;
        fls_lstm_train_opts_default(&o);
        o.epochs = 40;
        o.batch_size = 32;
        o.learning_rate = 1e-2f;
        o.seed = 8;
        cr_assert_eq(fls_lstm_train(n, x, y, TN, &o, NULL, err, sizeof err), 0, "%s",
                     err);
        cr_assert_eq(fls_lstm_loss_grad(n, x, y, TN, 1.0f, after, NULL, err, sizeof err),
                     0);
        return n;
}

Test(lstm, training_reduces_loss_regressor)
{
        double before, after;
        fls_lstm_t *n = train_toy(FLS_LSTM_REGRESSOR, &before, &after);
        cr_expect(after < 0.1 * before, "loss %f -> %f", before, after);
        fls_lstm_destroy(n);
}

Test(lstm, training_reduces_loss_classifier)
{
        double before, after;
        fls_lstm_t *n = train_toy(FLS_LSTM_CLASSIFIER, &before, &after);
        cr_expect(after < 0.3 * before, "loss %f -> %f", before, after);
        fls_lstm_destroy(n);
}

Test(lstm, same_seed_identical_weights)
{
        double b, a;
        fls_lstm_t *n1 = train_toy(FLS_LSTM_REGRESSOR, &b, &a);
        fls_lstm_t *n2 = train_toy(FLS_LSTM_REGRESSOR, &b, &a);
        size_t np;
        const float *p1 = fls_lstm_params_const(n1, &np),
                    *p2 = fls_lstm_params_const(n2, NULL);
        cr_expect(memcmp(p1, p2, np * sizeof(float)) == 0);
        fls_lstm_t *n3 = fls_lstm_new(FLS_LSTM_REGRESSOR, TF, TH, TT, 18, NULL, 0);
        cr_expect(memcmp(p1, fls_lstm_params_const(n3, NULL), np * sizeof(float)) != 0);
        fls_lstm_destroy(n1);
        fls_lstm_destroy(n2);
        fls_lstm_destroy(n3);
}

Test(lstm, rejects_bad_shapes_and_labels)
{
        char err[256] = "";
        cr_expect_null(fls_lstm_new(FLS_LSTM_REGRESSOR, 0, 4, 4, 1, err, sizeof err));
        cr_expect(strstr(err, "bad shape") != NULL, "%s", err);
        fls_lstm_t *n = fls_lstm_new(FLS_LSTM_CLASSIFIER, 1, 2, 1, 1, err, sizeof err);
        float x[2] = {0, 1}, y[2] = {0, 0.5f};
        cr_expect_eq(fls_lstm_train(n, x, y, 2, NULL, NULL, err, sizeof err), -1);
        cr_expect(strstr(err, "0 or 1") != NULL, "%s", err);
        fls_lstm_destroy(n);
        fls_lstm_destroy(NULL);
}
