/*
 * linreg.c: ordinary least squares / ridge with an intercept (see linreg.h).
 *
 * Part of the "model" step of Kafka -> Avro -> Redis -> model -> Kafka. Fitting builds
 * the design matrix [1 | X] in double (plus sqrt(lambda)*I rows for ridge, with a 0 in
 * the intercept column so the intercept is not shrunk) and solves it with
 * LAPACKE_dgelsd (SVD: handles collinear features by returning the minimum-norm
 * solution). Cost: (rows+F)*(F+1) doubles and O(rows*F^2) flops, a one-off at training.
 * Prediction keeps a float copy of the coefficients for one cblas_sgemv per batch.
 */
#include "linreg.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fls_linreg {
        size_t nf;
        double intercept;
        double *coefs;  /* nf, as fitted (double) */
        float *coefs_f; /* nf, for sgemv */
};

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS's idle worker spins a whole core (shared/NOTES.md): one thread, always. */
static void blas_single_thread(void)
{
        openblas_set_num_threads(1);
}

static void seterr(char *errstr, size_t n, const char *fmt, ...)
{
        if (!errstr || n == 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
}

fls_linreg_t *fls_linreg_from_coefs(size_t nfeatures, double intercept,
                                    const double *coefs, char *errstr, size_t errstr_size)
{
        if (nfeatures == 0 || nfeatures > 1000000 || (!coefs && nfeatures)) {
                seterr(errstr, errstr_size, "linreg: bad feature count %zu", nfeatures);
                return NULL;
        }
        if (!isfinite(intercept)) {
                seterr(errstr, errstr_size, "linreg: intercept is not finite");
                return NULL;
        }
        for (size_t j = 0; j < nfeatures; j++) {
                if (!isfinite(coefs[j])) {
                        seterr(errstr, errstr_size,
                               "linreg: coefficient %zu is not finite", j);
                        return NULL;
                }
        }
        fls_linreg_t *lr = calloc(1, sizeof(*lr));
        if (!lr)
                goto oom;
        lr->nf = nfeatures;
        lr->intercept = intercept;
        lr->coefs = malloc(nfeatures * sizeof(double));
        lr->coefs_f = malloc(nfeatures * sizeof(float));
        if (!lr->coefs || !lr->coefs_f)
                goto oom;
        for (size_t j = 0; j < nfeatures; j++) {
                lr->coefs[j] = coefs[j];
                lr->coefs_f[j] = (float)coefs[j];
        }
        pthread_once(&blas_once, blas_single_thread);
        return lr;
oom:
        fls_linreg_destroy(lr);
        seterr(errstr, errstr_size, "linreg: out of memory");
        return NULL;
}

fls_linreg_t *fls_linreg_fit(const float *x, const float *y, size_t rows,
                             size_t nfeatures, double lambda, char *errstr,
                             size_t errstr_size)
{
        if (!x || !y || rows == 0 || nfeatures == 0 || nfeatures > 100000) {
                seterr(errstr, errstr_size, "linreg: bad input (%zu rows, %zu features)",
                       rows, nfeatures);
                return NULL;
        }
        if (!(lambda >= 0) || !isfinite(lambda)) {
                seterr(errstr, errstr_size, "linreg: lambda must be >= 0, got %g",
                       lambda);
                return NULL;
        }
        pthread_once(&blas_once, blas_single_thread);
        size_t ridge = lambda > 0 ? nfeatures : 0;
        size_t m = rows + ridge, n = nfeatures + 1;
        if (m > (size_t)INT32_MAX / n) {
                seterr(errstr, errstr_size, "linreg: system too large (%zu x %zu)", m, n);
                return NULL;
        }
        size_t ldb = m > n ? m : n;
        double *a = calloc(m * n, sizeof(double));
        double *b = calloc(ldb, sizeof(double));
        double *sv = malloc(n * sizeof(double));
        fls_linreg_t *lr = NULL;
        if (!a || !b || !sv) {
                seterr(errstr, errstr_size, "linreg: out of memory");
                goto out;
        }
        for (size_t i = 0; i < rows; i++) {
                if (!isfinite(y[i])) {
                        seterr(errstr, errstr_size, "linreg: y[%zu] is not finite", i);
                        goto out;
                }
                a[i * n] = 1.0;
                for (size_t j = 0; j < nfeatures; j++) {
                        float v = x[i * nfeatures + j];
                        if (!isfinite(v)) {
                                seterr(errstr, errstr_size,
                                       "linreg: x[%zu][%zu] is not finite", i, j);
                                goto out;
                        }
                        a[i * n + 1 + j] = v;
                }
                b[i] = y[i];
        }
        double sl = sqrt(lambda);
        for (size_t j = 0; j < ridge; j++)
                a[(rows + j) * n + 1 + j] = sl; /* b stays 0: penalises coefs only */
        lapack_int rank = 0;
        lapack_int info = LAPACKE_dgelsd(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n,
                                         1, a, (lapack_int)n, b, 1, sv, -1.0, &rank);
        if (info != 0) {
                seterr(errstr, errstr_size, "linreg: LAPACKE_dgelsd failed (info %d)",
                       (int)info);
                goto out;
        }
        lr = fls_linreg_from_coefs(nfeatures, b[0], b + 1, errstr, errstr_size);
out:
        free(a);
        free(b);
        free(sv);
        return lr;
}

void fls_linreg_destroy(fls_linreg_t *lr)
{
        if (!lr)
                return;
        free(lr->coefs);
        free(lr->coefs_f);
        free(lr);
}

size_t fls_linreg_nfeatures(const fls_linreg_t *lr)
{
        return lr->nf;
}

double fls_linreg_intercept(const fls_linreg_t *lr)
{
        return lr->intercept;
}

const double *fls_linreg_coefs(const fls_linreg_t *lr)
{
        return lr->coefs;
}

void fls_linreg_predict(const fls_linreg_t *lr, const float *x, size_t rows, float *out)
{
        if (rows == 0)
                return;
        float b0 = (float)lr->intercept;
        for (size_t i = 0; i < rows; i++)
                out[i] = b0;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)lr->nf, 1.0f, x,
                    (blasint)lr->nf, lr->coefs_f, 1, 1.0f, out, 1);
}
