/*
 * bench_models.c: throughput of the scoring models, single thread. Prints figures,
 * asserts nothing; run by hand (see README "Guarantees and figures").
 *
 * The model step of Kafka -> Avro -> Redis -> model -> Kafka must keep up with the
 * consumers, so this measures what a batch costs:
 *   - LSTM inference, batch 256, T=32, H=64, F=8: sequences/s, and the time of the same
 *     sgemm calls alone, so the printed ratio shows how much the gate math and copies
 *     add on top of BLAS;
 *   - a random forest of 100 trees, depth 12, trained on 100k x 20 synthetic rows:
 *     training time and prediction rows/s (with and without the spread).
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "forest.h"
#include "lstm.h"

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 12345;

static float urand(void) /* [-1, 1) */
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (float)((double)(z >> 11) / 9007199254740992.0 * 2 - 1);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
        qsort(v, n, sizeof(double), cmp_double);
        return v[n / 2];
}

enum { B = 256, T = 32, H = 64, F = 8, REPS = 30 };

static void bench_lstm(void)
{
        char err[256];
        float *x = malloc((size_t)B * T * F * sizeof(float));
        float out[B];
        for (size_t i = 0; i < (size_t)B * T * F; i++)
                x[i] = urand();
        fls_lstm_t *n = fls_lstm_new(FLS_LSTM_CLASSIFIER, F, H, T, 1, err, sizeof err);
        if (!n || fls_lstm_reserve(n, B, err, sizeof err) < 0) {
                fprintf(stderr, "lstm: %s\n", err);
                exit(1);
        }
        double t_fwd[REPS], t_gemm[REPS];
        fls_lstm_forward(n, x, B, out, err, sizeof err); /* warm-up */
        for (int r = 0; r < REPS; r++) {
                double t0 = now();
                fls_lstm_forward(n, x, B, out, err, sizeof err);
                t_fwd[r] = now() - t0;
        }
        /* the same sgemm calls alone: X_t·Wx for every t, H·Wh for t >= 1 */
        const float *wx = fls_lstm_params(n, NULL), *wh = wx + F * 4 * H;
        float *g = malloc((size_t)B * 4 * H * sizeof(float));
        float *hh = calloc((size_t)B * H, sizeof(float));
        for (int r = 0; r < REPS; r++) {
                double t0 = now();
                for (int t = 0; t < T; t++) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, 4 * H,
                                    F, 1.0f, x + t * F, T * F, wx, 4 * H, 1.0f, g, 4 * H);
                        if (t > 0)
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B,
                                            4 * H, H, 1.0f, hh, H, wh, 4 * H, 1.0f, g,
                                            4 * H);
                }
                t_gemm[r] = now() - t0;
        }
        double mf = median(t_fwd, REPS), mg = median(t_gemm, REPS);
        double flops = 2.0 * B * 4 * H * (F * T + H * (T - 1));
        printf("lstm forward  B=%d T=%d H=%d F=%d: %.3f ms/batch, %.0f sequences/s\n", B,
               T, H, F, mf * 1e3, B / mf);
        printf("  sgemm alone: %.3f ms/batch (%.1f GFLOP/s); forward / sgemm = %.2fx\n",
               mg * 1e3, flops / mg * 1e-9, mf / mg);
        /* training step cost, for sizing epochs */
        float *y = malloc(B * sizeof(float));
        for (int i = 0; i < B; i++)
                y[i] = urand() > 0 ? 1.0f : 0.0f;
        size_t np;
        fls_lstm_params(n, &np);
        float *grad = malloc(np * sizeof(float));
        double loss, t0 = now();
        for (int r = 0; r < 5; r++)
                fls_lstm_loss_grad(n, x, y, B, 1.0f, &loss, grad, err, sizeof err);
        double tg = (now() - t0) / 5;
        printf("  forward+backward (training step): %.3f ms/batch, %.0f sequences/s\n",
               tg * 1e3, B / tg);
        free(grad);
        free(y);
        free(g);
        free(hh);
        free(x);
        fls_lstm_destroy(n);
}

static void bench_forest(void)
{
        enum { N = 100000, NF = 20, NP = 100000 };
        char err[256];
        float *x = malloc((size_t)N * NF * sizeof(float)), *y = malloc(N * sizeof(float));
        for (size_t i = 0; i < N; i++) {
                for (size_t j = 0; j < NF; j++)
                        x[i * NF + j] = urand();
                /* nonlinear target with noise so trees reach depth 12 */
                y[i] = sinf(3 * x[i * NF]) + x[i * NF + 1] * x[i * NF + 2] +
                       (x[i * NF + 3] > 0.2f ? 1.0f : 0.0f) + 0.3f * urand();
        }
        fls_forest_opts_t o;
        fls_forest_opts_default(&o, FLS_FOREST_REGRESSOR);
        o.n_trees = 100;
        o.max_depth = 12;
        o.min_samples_leaf = 1;
        double t0 = now();
        fls_forest_t *f =
            fls_forest_train(FLS_FOREST_REGRESSOR, x, y, N, NF, &o, err, sizeof err);
        double tt = now() - t0;
        if (!f) {
                fprintf(stderr, "forest: %s\n", err);
                exit(1);
        }
        size_t nn;
        fls_forest_nodes(f, &nn);
        printf(
            "forest train  %d rows x %d features, 100 trees depth 12 (mtry %d): %.2f s, "
            "%zu nodes (%.0f per tree)\n",
            N, NF, NF / 3, tt, nn, (double)nn / 100);
        float *out = malloc(NP * sizeof(float)), *sd = malloc(NP * sizeof(float));
        double tp[5], ts[5];
        for (int r = 0; r < 5; r++) {
                t0 = now();
                fls_forest_predict(f, x, NP, out, NULL);
                tp[r] = now() - t0;
                t0 = now();
                fls_forest_predict(f, x, NP, out, sd);
                ts[r] = now() - t0;
        }
        double mp = median(tp, 5), ms = median(ts, 5);
        printf("forest predict 100 trees: %.0f rows/s (%.2f us/row); with spread %.0f "
               "rows/s\n",
               NP / mp, mp / NP * 1e6, NP / ms);
        free(out);
        free(sd);
        free(x);
        free(y);
        fls_forest_destroy(f);
}

int main(void)
{
        openblas_set_num_threads(1); /* shared/NOTES.md: idle workers spin a core */
        printf("bench_models (single thread)\n");
        bench_lstm();
        bench_forest();
        return 0;
}
