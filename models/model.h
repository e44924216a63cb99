/*
 * model.h: the generic scoring model that consumers and the eval command load.
 *
 * Flow: Kafka -> Avro -> Redis (features) -> model -> Kafka. A model knows nothing of
 * Kafka or Redis: it takes raw feature rows in a fixed order, applies the input
 * normalisation it was trained with, and returns one float per row (a regression value
 * or the probability of class 1). A model file carries its feature names so that a
 * consumer can refuse to score with a model trained on different inputs
 * (fls_model_check_features) instead of scoring garbage.
 *
 * Threading: a model owns scratch buffers used by fls_model_predict, so one model
 * instance must be used by one thread at a time. Loading is cheap: load one per thread.
 */
#ifndef FLS_MODEL_H
#define FLS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "forest.h"
#include "linreg.h"
#include "lstm.h"

typedef struct fls_model fls_model_t;

/* Values are stored in files: never renumber. */
typedef enum {
        FLS_MODEL_LSTM_REG = 1,   /* LSTM regressor, linear output */
        FLS_MODEL_LSTM_CLS = 2,   /* LSTM classifier, sigmoid output = P(class 1) */
        FLS_MODEL_FOREST_CLS = 3, /* random forest classifier, mean vote = P(class 1) */
        FLS_MODEL_FOREST_REG = 4, /* random forest regressor, mean of trees */
        FLS_MODEL_LINREG = 5,     /* ordinary least squares (optionally ridge) */
} fls_model_kind_t;

/* Provenance stored in the file, all text except the seed. NULL strings are stored as
 * "". Each string is limited to FLS_MODEL_MAX_STR bytes. */
typedef struct {
        const char *data_source;  /* e.g. "shared/data/delivery.csv sha256:..." */
        uint64_t seed;            /* training seed */
        const char *created;      /* e.g. "2024-05-01T12:00:00Z" */
        const char *metric_name;  /* e.g. "val_mae" */
        const char *metric_value; /* as text, e.g. "3.41" */
} fls_model_meta_t;

#define FLS_MODEL_MAX_STR      4096
#define FLS_MODEL_MAX_FEATURES 4096

/* ---- construction from trained parts --------------------------------------------
 * All constructors copy name, version, feature names, mean/std and metadata.
 * mean/std may be NULL (identity normalisation: mean 0, std 1); a std of 0 is stored
 * as 1 so that a constant feature cannot divide by zero.
 * They TAKE OWNERSHIP of the trained part (net / forest / lr) in every case: on
 * failure it is destroyed, so the caller never frees it after the call.
 * The part must have been trained on inputs normalised with the same mean/std
 * (see fls_norm_fit / fls_norm_apply). */
fls_model_t *fls_model_from_lstm(fls_lstm_t *net, const char *name, const char *version,
                                 const char *const *feature_names, size_t nfeatures,
                                 const float *mean, const float *std,
                                 const fls_model_meta_t *meta, char *errstr,
                                 size_t errstr_size);
fls_model_t *fls_model_from_forest(fls_forest_t *forest, const char *name,
                                   const char *version, const char *const *feature_names,
                                   size_t nfeatures, const float *mean, const float *std,
                                   const fls_model_meta_t *meta, char *errstr,
                                   size_t errstr_size);
fls_model_t *fls_model_from_linreg(fls_linreg_t *lr, const char *name,
                                   const char *version, const char *const *feature_names,
                                   size_t nfeatures, const float *mean, const float *std,
                                   const fls_model_meta_t *meta, char *errstr,
                                   size_t errstr_size);

/* ---- files ------------------------------------------------------------------------
 * Load rejects bad magic, unsupported format version, unknown kind, truncation,
 * oversize lengths and checksum mismatch, with a message naming the file and the
 * problem. Save writes path.tmp.<pid>, fsyncs and renames, so readers see the old or
 * the new model, never half of one. */
fls_model_t *fls_model_load(const char *path, char *errstr, size_t errstr_size);
int fls_model_save(const fls_model_t *m, const char *path, char *errstr,
                   size_t errstr_size);
void fls_model_destroy(fls_model_t *m); /* NULL-safe */

/* 0 if the model's features are exactly names[0..n) in order; else -1 and errstr says
 * "feature 3 is 'x' in the model, 'y' expected" or "model has 12 features, 11
 * expected". */
int fls_model_check_features(const fls_model_t *m, const char *const *names, size_t n,
                             char *errstr, size_t errstr_size);

/* ---- accessors ----------------------------------------------------------------------
 */
fls_model_kind_t fls_model_kind(const fls_model_t *m);
const char *fls_model_kind_name(fls_model_kind_t kind); /* "lstm_reg", ... or "?" */
int fls_model_is_classifier(const fls_model_t *m);      /* output is P(class 1) */
const char *fls_model_name(const fls_model_t *m);       /* e.g. "delivery" */
const char *fls_model_version(const fls_model_t *m);
size_t fls_model_nfeatures(const fls_model_t *m);
const char *fls_model_feature_name(const fls_model_t *m,
                                   size_t i);      /* NULL if out of range */
size_t fls_model_seq_len(const fls_model_t *m);    /* 1 for non-sequence models */
const float *fls_model_mean(const fls_model_t *m); /* nfeatures values */
const float *fls_model_std(const fls_model_t *m);  /* nfeatures values */
/* Strings point into the model and live as long as it. */
const fls_model_meta_t *fls_model_meta(const fls_model_t *m);

/* ---- scoring -----------------------------------------------------------------------
 * x: rows * seq_len * nfeatures raw (unnormalised) floats, row-major, time-major inside a
 * row (x[(r*T + t)*F + f]). out: rows floats. The model normalises into its own scratch
 * buffer; scratch only grows when rows exceeds every previous call, so call
 * fls_model_reserve(m, max_batch) at start-up and the per-batch path never allocates.
 * NaN inputs propagate for LSTM/linreg; trees send NaN to the right child. */
int fls_model_reserve(fls_model_t *m, size_t rows, char *errstr, size_t errstr_size);
int fls_model_predict(fls_model_t *m, const float *x, size_t rows, float *out,
                      char *errstr, size_t errstr_size);
/* Forest kinds only (meant for the regressor): mean (same as predict) and population
 * standard deviation of the trees' predictions per row, a cheap uncertainty for
 * dispatch decisions. -1 with a message for LSTM and linreg. */
int fls_model_predict_spread(fls_model_t *m, const float *x, size_t rows, float *out,
                             float *spread, char *errstr, size_t errstr_size);

/* Borrowed views on the trained part (NULL if the kind differs), e.g. for eval. */
const fls_lstm_t *fls_model_lstm(const fls_model_t *m);
const fls_forest_t *fls_model_forest(const fls_model_t *m);
const fls_linreg_t *fls_model_linreg(const fls_model_t *m);

/* ---- normalisation helpers for training code ------------------------------------------
 * x is n vectors of nf floats (for sequences n = rows * seq_len). fit computes the mean
 * and the population std per feature (std 0 -> 1), ignoring NaN; apply does
 * x = (x - mean) / std in place. */
void fls_norm_fit(const float *x, size_t n, size_t nf, float *mean, float *std);
void fls_norm_apply(float *x, size_t n, size_t nf, const float *mean, const float *std);

#endif
