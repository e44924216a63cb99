/*
 * model.c: the generic scoring model and its file format (see model.h).
 *
 * Sits at the "model" step of Kafka -> Avro -> Redis -> model -> Kafka: consumers load a
 * file once, check its feature names against the features they fetch, reserve scratch
 * for their largest batch, then call fls_model_predict per batch with raw features. The
 * model normalises (x - mean) / std into its scratch buffer and hands the batch to the
 * LSTM, forest or linear model. No allocation after fls_model_reserve.
 *
 * File format, version 1. Little-endian; integers unsigned unless marked; f32/f64 are
 * IEEE-754 bit patterns; str = u32 byte length (<= 4096) + bytes, no NUL:
 *
 *   off  size  field
 *   0    4     magic "FLSM"
 *   4    4     u32 format version (1)
 *   8    4     u32 kind (1 lstm_reg, 2 lstm_cls, 3 forest_cls, 4 forest_reg, 5 linreg)
 *   12   8     u64 total file size in bytes, checksum included (detects truncation)
 *   20   4     u32 nfeatures F (1..4096)
 *   24   4     u32 seq_len T (1 for non-sequence kinds)
 *   28   ...   str name, str version, F x str feature name (in input order),
 *              F x f32 mean, F x f32 std (> 0),
 *              str data_source, u64 seed, str created, str metric_name, str metric_value
 *        ...   kind parameters:
 *              lstm:   u32 H, u32 nparams, nparams x f32 (Wx[F][4H], Wh[H][4H], b[4H],
 *                      Wy[H], by; gates i,f,g,o), nparams = (F+H)*4H + 5H + 1
 *              forest: u32 ntrees, u32 nnodes, ntrees x u32 first node of each tree,
 *                      nnodes x (i32 feature (-1 leaf), f32 threshold, i32 left,
 *                      i32 right, f32 value); children are relative to the tree's first
 *                      node and must come after their parent
 *              linreg: f64 intercept, F x f64 coefficients
 *   end-4 4    u32 CRC-32 (IEEE 802.3, as zlib's crc32) of every byte before it
 *
 * Loading checks, in order: size >= 24 and magic, format version, kind, declared size
 * vs actual (truncated / trailing bytes), checksum, then parses with every length
 * bounds-checked against the bytes left, so no allocation is larger than the file.
 * Files are capped at 1 GiB.
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_VERSION 1
#define HEADER_SIZE    20
#define MAX_FILE       (1ull << 30)
#define NODE_BYTES     20

struct fls_model {
        fls_model_kind_t kind;
        char *name, *version;
        size_t nf, t;
        char **fnames;
        float *mean, *std, *inv_std;
        int identity; /* mean 0 / std 1 everywhere: skip the normalisation copy */
        char *data_source, *created, *metric_name, *metric_value;
        fls_model_meta_t meta; /* points at the strings above */
        fls_lstm_t *lstm;
        fls_forest_t *forest;
        fls_linreg_t *linreg;
        float *xs; /* normalised input scratch, xs_rows * t * nf */
        size_t xs_rows;
};

static void seterr(char *errstr, size_t n, const char *fmt, ...)
{
        if (!errstr || n == 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
}

const char *fls_model_kind_name(fls_model_kind_t kind)
{
        switch (kind) {
        case FLS_MODEL_LSTM_REG:
                return "lstm_reg";
        case FLS_MODEL_LSTM_CLS:
                return "lstm_cls";
        case FLS_MODEL_FOREST_CLS:
                return "forest_cls";
        case FLS_MODEL_FOREST_REG:
                return "forest_reg";
        case FLS_MODEL_LINREG:
                return "linreg";
        }
        return "?";
}

void fls_model_destroy(fls_model_t *m)
{
        if (!m)
                return;
        free(m->name);
        free(m->version);
        if (m->fnames)
                for (size_t i = 0; i < m->nf; i++)
                        free(m->fnames[i]);
        free(m->fnames);
        free(m->mean);
        free(m->std);
        free(m->inv_std);
        free(m->data_source);
        free(m->created);
        free(m->metric_name);
        free(m->metric_value);
        fls_lstm_destroy(m->lstm);
        fls_forest_destroy(m->forest);
        fls_linreg_destroy(m->linreg);
        free(m->xs);
        free(m);
}

static char *dupstr(const char *s)
{
        return strdup(s ? s : "");
}

static void link_meta(fls_model_t *m, uint64_t seed)
{
        m->meta.data_source = m->data_source;
        m->meta.seed = seed;
        m->meta.created = m->created;
        m->meta.metric_name = m->metric_name;
        m->meta.metric_value = m->metric_value;
}

/* Common part of the constructors: everything but the trained part. */
static fls_model_t *model_new(fls_model_kind_t kind, size_t t, const char *name,
                              const char *version, const char *const *feature_names,
                              size_t nf, const float *mean, const float *std,
                              const fls_model_meta_t *meta, char *errstr,
                              size_t errstr_size)
{
        if (!name || !*name || strlen(name) > FLS_MODEL_MAX_STR) {
                seterr(errstr, errstr_size, "model: name must be 1..%d bytes",
                       FLS_MODEL_MAX_STR);
                return NULL;
        }
        if (nf == 0 || nf > FLS_MODEL_MAX_FEATURES || !feature_names) {
                seterr(errstr, errstr_size, "model '%s': %zu features (1..%d allowed)",
                       name, nf, FLS_MODEL_MAX_FEATURES);
                return NULL;
        }
        for (size_t i = 0; i < nf; i++) {
                if (!feature_names[i] || !*feature_names[i] ||
                    strlen(feature_names[i]) > FLS_MODEL_MAX_STR) {
                        seterr(errstr, errstr_size,
                               "model '%s': feature %zu has no valid name", name, i);
                        return NULL;
                }
                if ((mean && !isfinite(mean[i])) || (std && !isfinite(std[i]))) {
                        seterr(errstr, errstr_size,
                               "model '%s': normalisation of feature %zu ('%s') is not "
                               "finite",
                               name, i, feature_names[i]);
                        return NULL;
                }
        }
        const char *strs[] = {
            version, meta ? meta->data_source : NULL, meta ? meta->created : NULL,
            meta ? meta->metric_name : NULL, meta ? meta->metric_value : NULL};
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
                if (strs[i] && strlen(strs[i]) > FLS_MODEL_MAX_STR) {
                        seterr(errstr, errstr_size,
                               "model '%s': metadata string over %d bytes", name,
                               FLS_MODEL_MAX_STR);
                        return NULL;
                }
        }
        fls_model_t *m = calloc(1, sizeof(*m));
        if (!m)
                goto oom;
        m->kind = kind;
        m->nf = nf;
        m->t = t;
        m->name = dupstr(name);
        m->version = dupstr(version);
        m->fnames = calloc(nf, sizeof(char *));
        m->mean = malloc(nf * sizeof(float));
        m->std = malloc(nf * sizeof(float));
        m->inv_std = malloc(nf * sizeof(float));
        m->data_source = dupstr(meta ? meta->data_source : NULL);
        m->metric_name = dupstr(meta ? meta->metric_name : NULL);
        m->metric_value = dupstr(meta ? meta->metric_value : NULL);
        if (meta && meta->created) {
                m->created = dupstr(meta->created);
        } else { /* stamp it now: a model without a date is hard to audit */
                char buf[32];
                time_t now = time(NULL);
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
                m->created = dupstr(buf);
        }
        if (!m->name || !m->version || !m->fnames || !m->mean || !m->std || !m->inv_std ||
            !m->data_source || !m->metric_name || !m->metric_value || !m->created)
                goto oom;
        m->identity = 1;
        for (size_t i = 0; i < nf; i++) {
                if (!(m->fnames[i] = dupstr(feature_names[i])))
                        goto oom;
                m->mean[i] = mean ? mean[i] : 0.0f;
                m->std[i] = std && std[i] != 0.0f ? fabsf(std[i]) : 1.0f;
                m->inv_std[i] = 1.0f / m->std[i];
                if (m->mean[i] != 0.0f || m->std[i] != 1.0f)
                        m->identity = 0;
        }
        link_meta(m, meta ? meta->seed : 0);
        return m;
oom:
        fls_model_destroy(m);
        seterr(errstr, errstr_size, "model '%s': out of memory", name);
        return NULL;
}

fls_model_t *fls_model_from_lstm(fls_lstm_t *net, const char *name, const char *version,
                                 const char *const *feature_names, size_t nfeatures,
                                 const float *mean, const float *std,
                                 const fls_model_meta_t *meta, char *errstr,
                                 size_t errstr_size)
{
        if (!net) {
                seterr(errstr, errstr_size, "model: no LSTM given");
                return NULL;
        }
        if (fls_lstm_nin(net) != nfeatures) {
                seterr(errstr, errstr_size,
                       "model: LSTM has %zu inputs, %zu feature names", fls_lstm_nin(net),
                       nfeatures);
                fls_lstm_destroy(net);
                return NULL;
        }
        fls_model_kind_t kind = fls_lstm_type(net) == FLS_LSTM_CLASSIFIER
                                    ? FLS_MODEL_LSTM_CLS
                                    : FLS_MODEL_LSTM_REG;
        fls_model_t *m =
            model_new(kind, fls_lstm_seq_len(net), name, version, feature_names,
                      nfeatures, mean, std, meta, errstr, errstr_size);
        if (!m) {
                fls_lstm_destroy(net);
                return NULL;
        }
        m->lstm = net;
        return m;
}

fls_model_t *fls_model_from_forest(fls_forest_t *forest, const char *name,
                                   const char *version, const char *const *feature_names,
                                   size_t nfeatures, const float *mean, const float *std,
                                   const fls_model_meta_t *meta, char *errstr,
                                   size_t errstr_size)
{
        if (!forest) {
                seterr(errstr, errstr_size, "model: no forest given");
                return NULL;
        }
        if (fls_forest_nfeatures(forest) != nfeatures) {
                seterr(errstr, errstr_size,
                       "model: forest has %zu inputs, %zu feature names",
                       fls_forest_nfeatures(forest), nfeatures);
                fls_forest_destroy(forest);
                return NULL;
        }
        fls_model_kind_t kind = fls_forest_type(forest) == FLS_FOREST_CLASSIFIER
                                    ? FLS_MODEL_FOREST_CLS
                                    : FLS_MODEL_FOREST_REG;
        fls_model_t *m = model_new(kind, 1, name, version, feature_names, nfeatures, mean,
                                   std, meta, errstr, errstr_size);
        if (!m) {
                fls_forest_destroy(forest);
                return NULL;
        }
        m->forest = forest;
        return m;
}

fls_model_t *fls_model_from_linreg(fls_linreg_t *lr, const char *name,
                                   const char *version, const char *const *feature_names,
                                   size_t nfeatures, const float *mean, const float *std,
                                   const fls_model_meta_t *meta, char *errstr,
                                   size_t errstr_size)
{
        if (!lr) {
                seterr(errstr, errstr_size, "model: no linear model given");
                return NULL;
        }
        if (fls_linreg_nfeatures(lr) != nfeatures) {
                seterr(errstr, errstr_size,
                       "model: linear model has %zu inputs, %zu feature names",
                       fls_linreg_nfeatures(lr), nfeatures);
                fls_linreg_destroy(lr);
                return NULL;
        }
        fls_model_t *m = model_new(FLS_MODEL_LINREG, 1, name, version, feature_names,
                                   nfeatures, mean, std, meta, errstr, errstr_size);
        if (!m) {
                fls_linreg_destroy(lr);
                return NULL;
        }
        m->linreg = lr;
        return m;
}

/* ---- accessors ----------------------------------------------------------------------
 */

fls_model_kind_t fls_model_kind(const fls_model_t *m)
{
        return m->kind;
}
int fls_model_is_classifier(const fls_model_t *m)
{
        return m->kind == FLS_MODEL_LSTM_CLS || m->kind == FLS_MODEL_FOREST_CLS;
}
const char *fls_model_name(const fls_model_t *m)
{
        return m->name;
}
const char *fls_model_version(const fls_model_t *m)
{
        return m->version;
}
size_t fls_model_nfeatures(const fls_model_t *m)
{
        return m->nf;
}
const char *fls_model_feature_name(const fls_model_t *m, size_t i)
{
        return i < m->nf ? m->fnames[i] : NULL;
}
size_t fls_model_seq_len(const fls_model_t *m)
{
        return m->t;
}
const float *fls_model_mean(const fls_model_t *m)
{
        return m->mean;
}
const float *fls_model_std(const fls_model_t *m)
{
        return m->std;
}
const fls_model_meta_t *fls_model_meta(const fls_model_t *m)
{
        return &m->meta;
}
const fls_lstm_t *fls_model_lstm(const fls_model_t *m)
{
        return m->lstm;
}
const fls_forest_t *fls_model_forest(const fls_model_t *m)
{
        return m->forest;
}
const fls_linreg_t *fls_model_linreg(const fls_model_t *m)
{
        return m->linreg;
}

int fls_model_check_features(const fls_model_t *m, const char *const *names, size_t n,
                             char *errstr, size_t errstr_size)
{
        size_t common = n < m->nf ? n : m->nf;
        for (size_t i = 0; i < common; i++) {
                if (!names[i] || strcmp(names[i], m->fnames[i]) != 0) {
                        seterr(
                            errstr, errstr_size,
                            "model '%s': feature %zu is '%s' in the model, '%s' expected",
                            m->name, i, m->fnames[i], names[i] ? names[i] : "(null)");
                        return -1;
                }
        }
        if (n != m->nf) {
                if (m->nf > n)
                        seterr(errstr, errstr_size,
                               "model '%s': model has %zu features, %zu expected (first "
                               "extra: '%s')",
                               m->name, m->nf, n, m->fnames[n]);
                else
                        seterr(errstr, errstr_size,
                               "model '%s': model has %zu features, %zu expected (first "
                               "missing: '%s')",
                               m->name, m->nf, n, names[m->nf] ? names[m->nf] : "(null)");
                return -1;
        }
        return 0;
}

/* ---- scoring -------------------------------------------------------------------------
 */

int fls_model_reserve(fls_model_t *m, size_t rows, char *errstr, size_t errstr_size)
{
        if (rows > m->xs_rows && !m->identity) {
                size_t per = m->t * m->nf;
                if (rows > SIZE_MAX / sizeof(float) / per) {
                        seterr(errstr, errstr_size, "model '%s': batch too large",
                               m->name);
                        return -1;
                }
                float *xs = malloc(rows * per * sizeof(float));
                if (!xs) {
                        seterr(errstr, errstr_size,
                               "model '%s': out of memory for a batch of %zu", m->name,
                               rows);
                        return -1;
                }
                free(m->xs);
                m->xs = xs;
                m->xs_rows = rows;
        }
        if (m->lstm)
                return fls_lstm_reserve(m->lstm, rows, errstr, errstr_size);
        return 0;
}

static const float *normalise(fls_model_t *m, const float *x, size_t rows)
{
        if (m->identity)
                return x;
        size_t nf = m->nf, n = rows * m->t;
        for (size_t v = 0; v < n; v++) {
                const float *src = x + v * nf;
                float *dst = m->xs + v * nf;
                for (size_t f = 0; f < nf; f++)
                        dst[f] = (src[f] - m->mean[f]) * m->inv_std[f];
        }
        return m->xs;
}

int fls_model_predict(fls_model_t *m, const float *x, size_t rows, float *out,
                      char *errstr, size_t errstr_size)
{
        if (rows == 0)
                return 0;
        if (!x || !out) {
                seterr(errstr, errstr_size, "model '%s': NULL input or output", m->name);
                return -1;
        }
        if (fls_model_reserve(m, rows, errstr, errstr_size) < 0)
                return -1;
        const float *xn = normalise(m, x, rows);
        if (m->lstm)
                return fls_lstm_forward(m->lstm, xn, rows, out, errstr, errstr_size);
        if (m->forest) {
                fls_forest_predict(m->forest, xn, rows, out, NULL);
                return 0;
        }
        fls_linreg_predict(m->linreg, xn, rows, out);
        return 0;
}

int fls_model_predict_spread(fls_model_t *m, const float *x, size_t rows, float *out,
                             float *spread, char *errstr, size_t errstr_size)
{
        if (!m->forest) {
                seterr(errstr, errstr_size,
                       "model '%s': kind %s has no spread (forest kinds only)", m->name,
                       fls_model_kind_name(m->kind));
                return -1;
        }
        if (rows == 0)
                return 0;
        if (!x || !out || !spread) {
                seterr(errstr, errstr_size, "model '%s': NULL input or output", m->name);
                return -1;
        }
        if (fls_model_reserve(m, rows, errstr, errstr_size) < 0)
                return -1;
        fls_forest_predict(m->forest, normalise(m, x, rows), rows, out, spread);
        return 0;
}

void fls_norm_fit(const float *x, size_t n, size_t nf, float *mean, float *std)
{
        for (size_t f = 0; f < nf; f++) {
                /* two passes in double: one-pass sums lose the spread of large values */
                double s = 0, ss = 0;
                size_t k = 0;
                for (size_t i = 0; i < n; i++) {
                        float v = x[i * nf + f];
                        if (!isnan(v)) {
                                s += v;
                                k++;
                        }
                }
                double mu = k ? s / (double)k : 0;
                for (size_t i = 0; i < n; i++) {
                        float v = x[i * nf + f];
                        if (!isnan(v))
                                ss += (v - mu) * (v - mu);
                }
                double sd = k ? sqrt(ss / (double)k) : 0;
                mean[f] = (float)mu;
                std[f] = sd > 0 && isfinite(sd) ? (float)sd : 1.0f;
        }
}

void fls_norm_apply(float *x, size_t n, size_t nf, const float *mean, const float *std)
{
        for (size_t i = 0; i < n; i++)
                for (size_t f = 0; f < nf; f++)
                        x[i * nf + f] = (x[i * nf + f] - mean[f]) / std[f];
}

/* ---- checksum ------------------------------------------------------------------------
 */

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
        uint32_t table[256];
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                table[i] = c;
        }
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 0; i < n; i++)
                c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
}

/* ---- writer
 * ---------------------------------------------------------------------------- */

typedef struct {
        uint8_t *p;
        size_t n, cap;
        int oom;
} wbuf_t;

static void w_bytes(wbuf_t *w, const void *src, size_t n)
{
        if (w->oom)
                return;
        if (w->n + n > w->cap) {
                size_t nc = w->cap ? w->cap : 4096;
                while (nc < w->n + n)
                        nc *= 2;
                uint8_t *p = realloc(w->p, nc);
                if (!p) {
                        w->oom = 1;
                        return;
                }
                w->p = p;
                w->cap = nc;
        }
        memcpy(w->p + w->n, src, n);
        w->n += n;
}

static void w_u32(wbuf_t *w, uint32_t v)
{
        uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                        (uint8_t)(v >> 24)};
        w_bytes(w, b, 4);
}

static void w_u64(wbuf_t *w, uint64_t v)
{
        w_u32(w, (uint32_t)v);
        w_u32(w, (uint32_t)(v >> 32));
}

static void w_f32(wbuf_t *w, float f)
{
        uint32_t v;
        memcpy(&v, &f, 4);
        w_u32(w, v);
}

static void w_f64(wbuf_t *w, double d)
{
        uint64_t v;
        memcpy(&v, &d, 8);
        w_u64(w, v);
}

static void w_str(wbuf_t *w, const char *s)
{
        size_t n = strlen(s);
        w_u32(w, (uint32_t)n);
        w_bytes(w, s, n);
}

static void put_u64_at(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static int serialise(const fls_model_t *m, wbuf_t *w)
{
        w_bytes(w, "FLSM", 4);
        w_u32(w, FORMAT_VERSION);
        w_u32(w, (uint32_t)m->kind);
        w_u64(w, 0); /* total size, patched below */
        w_u32(w, (uint32_t)m->nf);
        w_u32(w, (uint32_t)m->t);
        w_str(w, m->name);
        w_str(w, m->version);
        for (size_t i = 0; i < m->nf; i++)
                w_str(w, m->fnames[i]);
        for (size_t i = 0; i < m->nf; i++)
                w_f32(w, m->mean[i]);
        for (size_t i = 0; i < m->nf; i++)
                w_f32(w, m->std[i]);
        w_str(w, m->data_source);
        w_u64(w, m->meta.seed);
        w_str(w, m->created);
        w_str(w, m->metric_name);
        w_str(w, m->metric_value);
        if (m->lstm) {
                size_t np;
                const float *p = fls_lstm_params_const(m->lstm, &np);
                w_u32(w, (uint32_t)fls_lstm_hidden(m->lstm));
                w_u32(w, (uint32_t)np);
                for (size_t i = 0; i < np; i++)
                        w_f32(w, p[i]);
        } else if (m->forest) {
                size_t nn, nt = fls_forest_ntrees(m->forest);
                const fls_forest_node_t *nodes = fls_forest_nodes(m->forest, &nn);
                const uint32_t *roots = fls_forest_roots(m->forest);
                w_u32(w, (uint32_t)nt);
                w_u32(w, (uint32_t)nn);
                for (size_t i = 0; i < nt; i++)
                        w_u32(w, roots[i]);
                for (size_t i = 0; i < nn; i++) {
                        w_u32(w, (uint32_t)nodes[i].feature);
                        w_f32(w, nodes[i].threshold);
                        w_u32(w, (uint32_t)nodes[i].left);
                        w_u32(w, (uint32_t)nodes[i].right);
                        w_f32(w, nodes[i].value);
                }
        } else {
                const double *c = fls_linreg_coefs(m->linreg);
                w_f64(w, fls_linreg_intercept(m->linreg));
                for (size_t i = 0; i < m->nf; i++)
                        w_f64(w, c[i]);
        }
        if (w->oom)
                return -1;
        put_u64_at(w->p + 12, (uint64_t)w->n + 4);
        w_u32(w, crc32_ieee(w->p, w->n));
        return w->oom ? -1 : 0;
}

int fls_model_save(const fls_model_t *m, const char *path, char *errstr,
                   size_t errstr_size)
{
        wbuf_t w = {0};
        if (serialise(m, &w) < 0) {
                free(w.p);
                seterr(errstr, errstr_size, "%s: out of memory serialising model", path);
                return -1;
        }
        if (w.n > MAX_FILE) {
                free(w.p);
                seterr(errstr, errstr_size,
                       "%s: model of %zu bytes exceeds the 1 GiB limit", path, w.n);
                return -1;
        }
        size_t plen = strlen(path) + 32;
        char *tmp = malloc(plen);
        if (!tmp) {
                free(w.p);
                seterr(errstr, errstr_size, "%s: out of memory", path);
                return -1;
        }
        snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
        int rc = -1;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                seterr(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
                goto out;
        }
        size_t off = 0;
        while (off < w.n) {
                ssize_t k = write(fd, w.p + off, w.n - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        seterr(errstr, errstr_size, "%s: write: %s", tmp,
                               strerror(errno));
                        close(fd);
                        unlink(tmp);
                        goto out;
                }
                off += (size_t)k;
        }
        /* fsync before rename: otherwise a crash can leave the new name on empty data */
        if (fsync(fd) < 0 || close(fd) < 0) {
                seterr(errstr, errstr_size, "%s: fsync/close: %s", tmp, strerror(errno));
                unlink(tmp);
                goto out;
        }
        if (rename(tmp, path) < 0) {
                seterr(errstr, errstr_size, "rename %s -> %s: %s", tmp, path,
                       strerror(errno));
                unlink(tmp);
                goto out;
        }
        rc = 0;
out:
        free(tmp);
        free(w.p);
        return rc;
}

/* ---- reader
 * ------------------------------------------------------------------------------ */

typedef struct {
        const uint8_t *p;
        size_t n, off;
        const char *path;
        char *err;
        size_t errn;
        int bad;
} rbuf_t;

static int need(rbuf_t *r, size_t k, const char *what)
{
        if (r->bad)
                return -1;
        if (k > r->n - r->off) {
                seterr(r->err, r->errn,
                       "%s: malformed model: %s at offset %zu runs past the end", r->path,
                       what, r->off);
                r->bad = 1;
                return -1;
        }
        return 0;
}

static uint32_t r_u32(rbuf_t *r, const char *what)
{
        if (need(r, 4, what) < 0)
                return 0;
        const uint8_t *b = r->p + r->off;
        r->off += 4;
        return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
               (uint32_t)b[3] << 24;
}

static uint64_t r_u64(rbuf_t *r, const char *what)
{
        uint64_t lo = r_u32(r, what);
        return lo | (uint64_t)r_u32(r, what) << 32;
}

static float r_f32(rbuf_t *r, const char *what)
{
        uint32_t v = r_u32(r, what);
        float f;
        memcpy(&f, &v, 4);
        return f;
}

static double r_f64(rbuf_t *r, const char *what)
{
        uint64_t v = r_u64(r, what);
        double d;
        memcpy(&d, &v, 8);
        return d;
}

static char *r_str(rbuf_t *r, const char *what)
{
        uint32_t len = r_u32(r, what);
        if (r->bad)
                return NULL;
        if (len > FLS_MODEL_MAX_STR) {
                seterr(r->err, r->errn, "%s: malformed model: %s is %u bytes (limit %d)",
                       r->path, what, len, FLS_MODEL_MAX_STR);
                r->bad = 1;
                return NULL;
        }
        if (need(r, len, what) < 0)
                return NULL;
        if (memchr(r->p + r->off, 0, len)) {
                seterr(r->err, r->errn, "%s: malformed model: %s contains a NUL byte",
                       r->path, what);
                r->bad = 1;
                return NULL;
        }
        char *s = malloc((size_t)len + 1);
        if (!s) {
                seterr(r->err, r->errn, "%s: out of memory", r->path);
                r->bad = 1;
                return NULL;
        }
        memcpy(s, r->p + r->off, len);
        s[len] = 0;
        r->off += len;
        return s;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, char *errstr,
                     size_t errstr_size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                seterr(errstr, errstr_size, "%s: not a regular file", path);
                close(fd);
                return -1;
        }
        if ((uint64_t)st.st_size > MAX_FILE) {
                seterr(errstr, errstr_size,
                       "%s: %lld bytes exceeds the 1 GiB model limit", path,
                       (long long)st.st_size);
                close(fd);
                return -1;
        }
        size_t n = (size_t)st.st_size;
        uint8_t *p = malloc(n ? n : 1);
        if (!p) {
                seterr(errstr, errstr_size, "%s: out of memory", path);
                close(fd);
                return -1;
        }
        size_t off = 0;
        while (off < n) {
                ssize_t k = read(fd, p + off, n - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        seterr(errstr, errstr_size, "%s: read: %s", path,
                               strerror(errno));
                        free(p);
                        close(fd);
                        return -1;
                }
                if (k == 0)
                        break; /* shrank under us: the size checks below report it */
                off += (size_t)k;
        }
        close(fd);
        *buf = p;
        *len = off;
        return 0;
}

static fls_model_t *parse(rbuf_t *r, fls_model_kind_t kind)
{
        fls_model_t *m = calloc(1, sizeof(*m));
        if (!m) {
                seterr(r->err, r->errn, "%s: out of memory", r->path);
                return NULL;
        }
        m->kind = kind;
        r->off = HEADER_SIZE;
        uint32_t nf = r_u32(r, "feature count"), t = r_u32(r, "sequence length");
        if (r->bad)
                goto fail;
        if (nf == 0 || nf > FLS_MODEL_MAX_FEATURES || t == 0 || t > 65536 ||
            (t != 1 && kind != FLS_MODEL_LSTM_REG && kind != FLS_MODEL_LSTM_CLS)) {
                seterr(r->err, r->errn,
                       "%s: malformed model: %u features, sequence length %u", r->path,
                       nf, t);
                goto fail;
        }
        m->t = t;
        m->name = r_str(r, "name");
        m->version = r_str(r, "version");
        if (r->bad)
                goto fail;
        /* each name costs at least 4 bytes in the file: bound before allocating */
        if (need(r, (size_t)nf * 12, "feature names and normalisation") < 0)
                goto fail;
        m->fnames = calloc(nf, sizeof(char *));
        m->mean = malloc(nf * sizeof(float));
        m->std = malloc(nf * sizeof(float));
        m->inv_std = malloc(nf * sizeof(float));
        if (!m->fnames || !m->mean || !m->std || !m->inv_std) {
                seterr(r->err, r->errn, "%s: out of memory", r->path);
                goto fail;
        }
        m->nf = nf;
        for (size_t i = 0; i < nf && !r->bad; i++)
                m->fnames[i] = r_str(r, "feature name");
        for (size_t i = 0; i < nf; i++)
                m->mean[i] = r_f32(r, "mean");
        for (size_t i = 0; i < nf; i++)
                m->std[i] = r_f32(r, "std");
        m->data_source = r_str(r, "data source");
        uint64_t seed = r_u64(r, "seed");
        m->created = r_str(r, "created");
        m->metric_name = r_str(r, "metric name");
        m->metric_value = r_str(r, "metric value");
        if (r->bad)
                goto fail;
        m->identity = 1;
        for (size_t i = 0; i < nf; i++) {
                if (!isfinite(m->mean[i]) || !isfinite(m->std[i]) || !(m->std[i] > 0)) {
                        seterr(r->err, r->errn,
                               "%s: malformed model: bad normalisation for feature %zu",
                               r->path, i);
                        goto fail;
                }
                m->inv_std[i] = 1.0f / m->std[i];
                if (m->mean[i] != 0.0f || m->std[i] != 1.0f)
                        m->identity = 0;
        }
        link_meta(m, seed);
        char *err = r->err;
        size_t errn = r->errn;
        if (kind == FLS_MODEL_LSTM_REG || kind == FLS_MODEL_LSTM_CLS) {
                uint32_t h = r_u32(r, "LSTM hidden size"),
                         np = r_u32(r, "LSTM parameter count");
                if (r->bad)
                        goto fail;
                if (h == 0 || h > 4096 ||
                    (uint64_t)np != ((uint64_t)nf + h) * 4 * h + 5ull * h + 1) {
                        seterr(
                            err, errn,
                            "%s: malformed model: LSTM hidden %u, %u parameters for %u "
                            "inputs",
                            r->path, h, np, nf);
                        goto fail;
                }
                if (need(r, (size_t)np * 4, "LSTM parameters") < 0)
                        goto fail;
                m->lstm = fls_lstm_new(kind == FLS_MODEL_LSTM_CLS ? FLS_LSTM_CLASSIFIER
                                                                  : FLS_LSTM_REGRESSOR,
                                       nf, h, t, 0, err, errn);
                if (!m->lstm)
                        goto fail;
                float *p = fls_lstm_params(m->lstm, NULL);
                for (size_t i = 0; i < np; i++) {
                        p[i] = r_f32(r, "LSTM parameter");
                        if (!isfinite(p[i])) {
                                seterr(
                                    err, errn,
                                    "%s: malformed model: LSTM parameter %zu not finite",
                                    r->path, i);
                                goto fail;
                        }
                }
        } else if (kind == FLS_MODEL_FOREST_CLS || kind == FLS_MODEL_FOREST_REG) {
                uint32_t nt = r_u32(r, "tree count"), nn = r_u32(r, "node count");
                if (r->bad)
                        goto fail;
                if (need(r, (size_t)nt * 4 + (size_t)nn * NODE_BYTES, "trees") < 0)
                        goto fail;
                uint32_t *roots = malloc((nt ? nt : 1) * sizeof(uint32_t));
                fls_forest_node_t *nodes = malloc((nn ? nn : 1) * sizeof(*nodes));
                if (!roots || !nodes) {
                        free(roots);
                        free(nodes);
                        seterr(err, errn, "%s: out of memory", r->path);
                        goto fail;
                }
                for (size_t i = 0; i < nt; i++)
                        roots[i] = r_u32(r, "tree root");
                for (size_t i = 0; i < nn; i++) {
                        nodes[i].feature = (int32_t)r_u32(r, "node");
                        nodes[i].threshold = r_f32(r, "node");
                        nodes[i].left = (int32_t)r_u32(r, "node");
                        nodes[i].right = (int32_t)r_u32(r, "node");
                        nodes[i].value = r_f32(r, "node");
                }
                char ferr[256];
                m->forest = fls_forest_from_nodes(
                    kind == FLS_MODEL_FOREST_CLS ? FLS_FOREST_CLASSIFIER
                                                 : FLS_FOREST_REGRESSOR,
                    nf, roots, nt, nodes, nn, ferr, sizeof ferr);
                free(roots);
                free(nodes);
                if (!m->forest) {
                        seterr(err, errn, "%s: malformed model: %s", r->path, ferr);
                        goto fail;
                }
        } else {
                if (need(r, 8 + (size_t)nf * 8, "linear coefficients") < 0)
                        goto fail;
                double b0 = r_f64(r, "intercept");
                double *c = malloc(nf * sizeof(double));
                if (!c) {
                        seterr(err, errn, "%s: out of memory", r->path);
                        goto fail;
                }
                for (size_t i = 0; i < nf; i++)
                        c[i] = r_f64(r, "coefficient");
                char lerr[256];
                m->linreg = fls_linreg_from_coefs(nf, b0, c, lerr, sizeof lerr);
                free(c);
                if (!m->linreg) {
                        seterr(err, errn, "%s: malformed model: %s", r->path, lerr);
                        goto fail;
                }
        }
        if (r->off != r->n) {
                seterr(err, errn,
                       "%s: malformed model: %zu unparsed bytes before the checksum",
                       r->path, r->n - r->off);
                goto fail;
        }
        if (!m->name[0]) {
                seterr(err, errn, "%s: malformed model: empty name", r->path);
                goto fail;
        }
        return m;
fail:
        fls_model_destroy(m);
        return NULL;
}

fls_model_t *fls_model_load(const char *path, char *errstr, size_t errstr_size)
{
        uint8_t *buf;
        size_t n;
        if (read_file(path, &buf, &n, errstr, errstr_size) < 0)
                return NULL;
        fls_model_t *m = NULL;
        if (n < 4 || memcmp(buf, "FLSM", 4) != 0) {
                seterr(errstr, errstr_size, "%s: not a flashstream model (bad magic)",
                       path);
                goto out;
        }
        if (n < HEADER_SIZE + 4) {
                seterr(errstr, errstr_size,
                       "%s: truncated model (%zu bytes, header needs %d)", path, n,
                       HEADER_SIZE + 4);
                goto out;
        }
        rbuf_t r = {buf, n, 4, path, errstr, errstr_size, 0};
        uint32_t ver = r_u32(&r, "version"), kind = r_u32(&r, "kind");
        uint64_t total = r_u64(&r, "size");
        if (ver != FORMAT_VERSION) {
                seterr(errstr, errstr_size,
                       "%s: model format version %u, this build reads version %d", path,
                       ver, FORMAT_VERSION);
                goto out;
        }
        if (kind < FLS_MODEL_LSTM_REG || kind > FLS_MODEL_LINREG) {
                seterr(errstr, errstr_size, "%s: unknown model kind %u", path, kind);
                goto out;
        }
        if (total != n) {
                seterr(errstr, errstr_size, "%s: %s model (%zu bytes, header says %llu)",
                       path, n < total ? "truncated" : "oversized", n,
                       (unsigned long long)total);
                goto out;
        }
        uint32_t stored = (uint32_t)buf[n - 4] | (uint32_t)buf[n - 3] << 8 |
                          (uint32_t)buf[n - 2] << 16 | (uint32_t)buf[n - 1] << 24;
        uint32_t actual = crc32_ieee(buf, n - 4);
        if (stored != actual) {
                seterr(
                    errstr, errstr_size,
                    "%s: checksum mismatch (stored %08x, computed %08x): corrupt model",
                    path, stored, actual);
                goto out;
        }
        r.n = n - 4; /* parse up to the checksum */
        m = parse(&r, (fls_model_kind_t)kind);
out:
        free(buf);
        return m;
}
