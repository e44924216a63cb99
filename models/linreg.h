/*
 * linreg.h: ordinary least squares with an intercept, optionally ridge.
 *
 * Sits at the "model" step of Kafka -> Avro -> Redis -> model -> Kafka, usually wrapped
 * in an fls_model_t (model.h) which adds feature names and normalisation. Fitting uses
 * LAPACKE_dgelsd in double precision (rank-deficient inputs get the minimum-norm
 * solution instead of an error); prediction is one cblas_sgemv per batch.
 */
#ifndef FLS_LINREG_H
#define FLS_LINREG_H

#include <stddef.h>

typedef struct fls_linreg fls_linreg_t;

/* x: rows * nfeatures floats, row-major; y: rows floats. lambda >= 0 is the ridge
 * penalty on the coefficients (never on the intercept), implemented by appending
 * nfeatures rows sqrt(lambda)*I to the system. NaN in x or y is an error.
 * Cost: O(rows * nfeatures^2) time, (rows + nfeatures) * (nfeatures + 1) doubles. */
fls_linreg_t *fls_linreg_fit(const float *x, const float *y, size_t rows,
                             size_t nfeatures, double lambda, char *errstr,
                             size_t errstr_size);
/* Build from known coefficients (model loading, tests). coefs: nfeatures values. */
fls_linreg_t *fls_linreg_from_coefs(size_t nfeatures, double intercept,
                                    const double *coefs, char *errstr,
                                    size_t errstr_size);
void fls_linreg_destroy(fls_linreg_t *lr); /* NULL-safe */

size_t fls_linreg_nfeatures(const fls_linreg_t *lr);
double fls_linreg_intercept(const fls_linreg_t *lr);
const double *fls_linreg_coefs(const fls_linreg_t *lr); /* nfeatures values */

/* out[r] = intercept + x[r,:] . coefs. Never allocates. */
void fls_linreg_predict(const fls_linreg_t *lr, const float *x, size_t rows, float *out);

#endif
