/*
 * lstm.c: one-layer LSTM + dense head, batched inference and BPTT/Adam training (see
 * lstm.h).
 *
 * Part of the "model" step of Kafka -> Avro -> Redis -> model -> Kafka. All matrix work
 * goes through cblas_sgemm on the whole batch: per time step G = X_t·Wx + H_{t-1}·Wh
 * (B×4H), where X_t is read in place from the row-major batch (lda = T*F), so no input
 * is copied. The elementwise gate math is the other half of the cost (4H
 * transcendentals per row per step); it is written as plain loops the compiler can
 * vectorise.
 *
 * Training keeps every step's gate activations, cell and hidden states for the
 * mini-batch (T*B*6H floats) for the backward pass; the backward pass is the mirror of
 * the forward with three sgemm per step (dWx, dWh, dH).
 */
#include "lstm.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM 4096
#define MAX_T   65536
/* public loss_grad works through the rows in chunks of this size, so that scoring a
 * whole validation set does not need T*rows*6H floats of activations */
#define CHUNK 256

/* Training/backward workspace for up to cap rows. */
typedef struct {
        size_t cap;
        float *gates; /* T * cap * 4H activated gates i, f, g, o */
        float *cs;    /* (T+1) * cap * H cell states, slot 0 = zeros */
        float *hs;    /* (T+1) * cap * H hidden states, slot 0 = zeros */
        float *dg;    /* cap * 4H */
        float *dh;    /* cap * H */
        float *dc;    /* cap * H */
        float *yhat;  /* cap */
        float *dy;    /* cap */
} ws_t;

struct fls_lstm {
        fls_lstm_type_t type;
        size_t f, h, t;
        size_t np;
        float *p; /* Wx, Wh, b, Wy, by */
        /* inference scratch: one step's gates, h and c */
        size_t icap;
        float *ig, *ih, *ic;
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

static uint64_t sm64(uint64_t *s)
{
        uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static float sm64_uniform(uint64_t *s) /* [0, 1) */
{
        return (float)(sm64(s) >> 40) * (1.0f / 16777216.0f);
}

static inline float sigm(float z)
{
        return 1.0f / (1.0f + expf(-z));
}

/*
 * tanh as a clamped 13/6 rational function (the coefficients Eigen uses for float):
 * max error a few ulp, saturating to +-1 beyond |x| = 7.9053. Unlike tanhf/expf from
 * libm it is multiplies, adds and one divide, so the gate loops vectorise: with libm the
 * gate math cost ~6x the sgemm time at B=256, T=32, H=64. The clamp works on the bit
 * pattern with integer compares: a float compare-and-select is not if-converted by GCC
 * under its default -ftrapping-math, which blocks vectorisation; NaN (bits above
 * 0x7f800000) is left alone so it still propagates.
 */
static inline float fast_tanh(float x)
{
        const uint32_t lim = 0x40FCF84Fu; /* 7.90531110763549805f */
        uint32_t b;
        memcpy(&b, &x, 4);
        uint32_t a = b & 0x7FFFFFFFu;
        uint32_t m = 0u - (uint32_t)((a > lim) & (a <= 0x7F800000u));
        b = (b & ~m) | (((b & 0x80000000u) | lim) & m);
        memcpy(&x, &b, 4);
        float x2 = x * x;
        float p = -2.76076847742355e-16f;
        p = p * x2 + 2.00018790482477e-13f;
        p = p * x2 + -8.60467152213735e-11f;
        p = p * x2 + 5.12229709037114e-08f;
        p = p * x2 + 1.48572235717979e-05f;
        p = p * x2 + 6.37261928875436e-04f;
        p = p * x2 + 4.89352455891786e-03f;
        p = p * x;
        float q = 1.19825839466702e-06f;
        q = q * x2 + 1.18534705686654e-04f;
        q = q * x2 + 2.26843463243900e-03f;
        q = q * x2 + 4.89352518554385e-03f;
        return p / q;
}

/* sigmoid(z) = (1 + tanh(z/2)) / 2: same accuracy, vectorisable */
static inline float fast_sigm(float z)
{
        return 0.5f + 0.5f * fast_tanh(0.5f * z);
}

static void vsigm(float *restrict v, size_t n)
{
        for (size_t j = 0; j < n; j++)
                v[j] = fast_sigm(v[j]);
}

static void vtanh(float *restrict v, size_t n)
{
        for (size_t j = 0; j < n; j++)
                v[j] = fast_tanh(v[j]);
}

/* offsets of the parameter blocks */
static inline float *p_wx(const fls_lstm_t *n, float *p)
{
        (void)n;
        return p;
}
static inline float *p_wh(const fls_lstm_t *n, float *p)
{
        return p + n->f * 4 * n->h;
}
static inline float *p_b(const fls_lstm_t *n, float *p)
{
        return p + (n->f + n->h) * 4 * n->h;
}
static inline float *p_wy(const fls_lstm_t *n, float *p)
{
        return p_b(n, p) + 4 * n->h;
}
static inline float *p_by(const fls_lstm_t *n, float *p)
{
        return p_wy(n, p) + n->h;
}

fls_lstm_t *fls_lstm_new(fls_lstm_type_t type, size_t nin, size_t hidden, size_t seq_len,
                         uint64_t seed, char *errstr, size_t errstr_size)
{
        if (type != FLS_LSTM_REGRESSOR && type != FLS_LSTM_CLASSIFIER) {
                seterr(errstr, errstr_size, "lstm: unknown type %d", (int)type);
                return NULL;
        }
        if (nin == 0 || nin > MAX_DIM || hidden == 0 || hidden > MAX_DIM ||
            seq_len == 0 || seq_len > MAX_T) {
                seterr(errstr, errstr_size,
                       "lstm: bad shape (inputs %zu, hidden %zu, seq_len %zu; limits %d, "
                       "%d, %d)",
                       nin, hidden, seq_len, MAX_DIM, MAX_DIM, MAX_T);
                return NULL;
        }
        pthread_once(&blas_once, blas_single_thread);
        fls_lstm_t *n = calloc(1, sizeof(*n));
        if (!n)
                goto oom;
        n->type = type;
        n->f = nin;
        n->h = hidden;
        n->t = seq_len;
        n->np = (nin + hidden) * 4 * hidden + 4 * hidden + hidden + 1;
        n->p = calloc(n->np, sizeof(float));
        if (!n->p)
                goto oom;
        uint64_t s = seed;
        float a = 1.0f / sqrtf((float)hidden);
        float *wb = p_b(n, n->p);
        for (size_t i = 0; i < n->np; i++) {
                float u = (2.0f * sm64_uniform(&s) - 1.0f) * a;
                float *q = n->p + i;
                if (q >= wb && q < wb + 4 * hidden)
                        *q = (q >= wb + hidden && q < wb + 2 * hidden) ? 1.0f : 0.0f;
                else if (q == p_by(n, n->p))
                        *q = 0.0f;
                else
                        *q = u;
        }
        return n;
oom:
        fls_lstm_destroy(n);
        seterr(errstr, errstr_size, "lstm: out of memory");
        return NULL;
}

void fls_lstm_destroy(fls_lstm_t *net)
{
        if (!net)
                return;
        free(net->p);
        free(net->ig);
        free(net->ih);
        free(net->ic);
        free(net);
}

fls_lstm_type_t fls_lstm_type(const fls_lstm_t *net)
{
        return net->type;
}
size_t fls_lstm_nin(const fls_lstm_t *net)
{
        return net->f;
}
size_t fls_lstm_hidden(const fls_lstm_t *net)
{
        return net->h;
}
size_t fls_lstm_seq_len(const fls_lstm_t *net)
{
        return net->t;
}
float *fls_lstm_params(fls_lstm_t *net, size_t *nparams)
{
        if (nparams)
                *nparams = net->np;
        return net->p;
}
const float *fls_lstm_params_const(const fls_lstm_t *net, size_t *nparams)
{
        if (nparams)
                *nparams = net->np;
        return net->p;
}

int fls_lstm_reserve(fls_lstm_t *net, size_t rows, char *errstr, size_t errstr_size)
{
        if (rows <= net->icap)
                return 0;
        size_t h = net->h;
        if (rows > SIZE_MAX / (4 * h * sizeof(float))) {
                seterr(errstr, errstr_size, "lstm: batch of %zu rows is too large", rows);
                return -1;
        }
        float *g = malloc(rows * 4 * h * sizeof(float));
        float *hh = malloc(rows * h * sizeof(float));
        float *c = malloc(rows * h * sizeof(float));
        if (!g || !hh || !c) {
                free(g);
                free(hh);
                free(c);
                seterr(errstr, errstr_size, "lstm: out of memory for %zu rows", rows);
                return -1;
        }
        free(net->ig);
        free(net->ih);
        free(net->ic);
        net->ig = g;
        net->ih = hh;
        net->ic = c;
        net->icap = rows;
        return 0;
}

/*
 * Forward over B rows. gates/cs/hs advance by a step stride per time step when store is
 * set (training keeps everything), or stay on one buffer (inference, in place).
 * cs and hs slot 0 must hold the initial (zero) states. Writes the head's linear output
 * z to zout.
 */
static void forward(const fls_lstm_t *n, const float *x, size_t B, float *gates,
                    float *cs, float *hs, int store, float *zout)
{
        size_t F = n->f, H = n->h, T = n->t, H4 = 4 * H;
        float *p = n->p;
        const float *wx = p_wx(n, p), *wh = p_wh(n, p), *b = p_b(n, p);
        size_t gstep = store ? B * H4 : 0, sstep = store ? B * H : 0;
        /* c_{-1} is multiplied by zero below, but uninitialised memory times zero can
         * be NaN: start from a zeroed state (valgrind found it). */
        memset(cs, 0, B * H * sizeof(float));
        for (size_t t = 0; t < T; t++) {
                float *G = gates + t * gstep;
                const float *cprev = cs + t * sstep, *hprev = hs + t * sstep;
                float *cnew = cs + (t + 1) * sstep, *hnew = hs + (t + 1) * sstep;
                for (size_t r = 0; r < B; r++)
                        memcpy(G + r * H4, b, H4 * sizeof(float));
                if (B == 1) {
                        /* One row (the clickstream scores row by row): sgemv, which
                         * does not pack the weights again on every call as sgemm does. */
                        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)F, (blasint)H4,
                                    1.0f, wx, (blasint)H4, x + t * F, 1, 1.0f, G, 1);
                        if (t > 0)
                                cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)H,
                                            (blasint)H4, 1.0f, wh, (blasint)H4, hprev, 1,
                                            1.0f, G, 1);
                } else {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B,
                                    (blasint)H4, (blasint)F, 1.0f, x + t * F,
                                    (blasint)(T * F), wx, (blasint)H4, 1.0f, G,
                                    (blasint)H4);
                        if (t > 0) /* H_{-1} = 0: skip a useless product */
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                                            (blasint)B, (blasint)H4, (blasint)H, 1.0f,
                                            hprev, (blasint)H, wh, (blasint)H4, 1.0f, G,
                                            (blasint)H4);
                }
                /* c_{-1} = 0: multiply by a zero factor rather than branch per element */
                float keep = t > 0 ? 1.0f : 0.0f;
                for (size_t r = 0; r < B; r++) {
                        float *gi = G + r * H4;
                        const float *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
                        vsigm(gi, 2 * H); /* i and f */
                        vtanh(gi + 2 * H, H);
                        vsigm(gi + 3 * H, H);
                        const float *cp = cprev + r * H;
                        float *cn = cnew + r * H, *hn = hnew + r * H;
                        /* cp may equal cn (inference runs in place): no restrict here */
                        for (size_t j = 0; j < H; j++) {
                                float c = gf[j] * keep * cp[j] + gi[j] * gg[j];
                                cn[j] = c;
                                hn[j] = go[j] * fast_tanh(c);
                        }
                }
        }
        const float *hT = hs + T * sstep;
        float by = *p_by(n, p);
        for (size_t r = 0; r < B; r++)
                zout[r] = by;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)B, (blasint)H, 1.0f, hT,
                    (blasint)H, p_wy(n, p), 1, 1.0f, zout, 1);
}

int fls_lstm_forward(fls_lstm_t *net, const float *x, size_t rows, float *out,
                     char *errstr, size_t errstr_size)
{
        if (rows == 0)
                return 0;
        if (fls_lstm_reserve(net, rows, errstr, errstr_size) < 0)
                return -1;
        forward(net, x, rows, net->ig, net->ic, net->ih, 0, out);
        if (net->type == FLS_LSTM_CLASSIFIER)
                for (size_t r = 0; r < rows; r++)
                        out[r] = sigm(out[r]);
        return 0;
}

/* ---- training
 * -------------------------------------------------------------------------- */

static void ws_free(ws_t *w)
{
        free(w->gates);
        free(w->cs);
        free(w->hs);
        free(w->dg);
        free(w->dh);
        free(w->dc);
        free(w->yhat);
        free(w->dy);
        memset(w, 0, sizeof(*w));
}

static int ws_alloc(ws_t *w, const fls_lstm_t *n, size_t cap)
{
        size_t H = n->h, T = n->t;
        memset(w, 0, sizeof(*w));
        if (cap > SIZE_MAX / ((T + 1) * 4 * H * sizeof(float)))
                return -1;
        w->cap = cap;
        w->gates = malloc(T * cap * 4 * H * sizeof(float));
        w->cs = calloc((T + 1) * cap * H, sizeof(float));
        w->hs = calloc((T + 1) * cap * H, sizeof(float));
        w->dg = malloc(cap * 4 * H * sizeof(float));
        w->dh = malloc(cap * H * sizeof(float));
        w->dc = malloc(cap * H * sizeof(float));
        w->yhat = malloc(cap * sizeof(float));
        w->dy = malloc(cap * sizeof(float));
        if (!w->gates || !w->cs || !w->hs || !w->dg || !w->dh || !w->dc || !w->yhat ||
            !w->dy) {
                ws_free(w);
                return -1;
        }
        return 0;
}

/*
 * Loss summed over B rows (weighted) into *loss_sum; if grad, adds scale * d(sum of
 * weighted losses)/dparams to grad (so scale = 1/total rows gives the mean's gradient).
 */
static void loss_grad_ws(const fls_lstm_t *n, ws_t *w, const float *x, const float *y,
                         size_t B, float pos_weight, float scale, double *loss_sum,
                         float *grad)
{
        size_t F = n->f, H = n->h, T = n->t, H4 = 4 * H;
        forward(n, x, B, w->gates, w->cs, w->hs, 1, w->yhat);
        double L = 0;
        for (size_t r = 0; r < B; r++) {
                float z = w->yhat[r], wr = 1.0f, d;
                if (n->type == FLS_LSTM_CLASSIFIER) {
                        if (y[r] > 0.5f)
                                wr = pos_weight;
                        /* log-loss from the logit, stable: softplus(z) - y z */
                        double sp = z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
                        L += wr * (sp - (double)y[r] * z);
                        d = sigm(z) - y[r];
                } else {
                        d = z - y[r];
                        L += 0.5 * (double)d * d;
                }
                w->dy[r] = d * wr * scale;
        }
        *loss_sum += L;
        if (!grad)
                return;
        float *gwx = p_wx(n, grad), *gwh = p_wh(n, grad), *gb = p_b(n, grad),
              *gwy = p_wy(n, grad), *gby = p_by(n, grad);
        const float *wh = p_wh(n, n->p), *wy = p_wy(n, n->p);
        const float *hT = w->hs + T * B * H;
        /* head */
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)B, (blasint)H, 1.0f, hT,
                    (blasint)H, w->dy, 1, 1.0f, gwy, 1);
        for (size_t r = 0; r < B; r++) {
                *gby += w->dy[r];
                for (size_t j = 0; j < H; j++)
                        w->dh[r * H + j] = w->dy[r] * wy[j];
        }
        memset(w->dc, 0, B * H * sizeof(float));
        for (size_t t = T; t-- > 0;) {
                const float *G = w->gates + t * B * H4;
                const float *cprev = w->cs + t * B * H, *cnow = w->cs + (t + 1) * B * H;
                for (size_t r = 0; r < B; r++) {
                        const float *gi = G + r * H4, *gf = gi + H, *gg = gi + 2 * H,
                                    *go = gi + 3 * H;
                        float *d = w->dg + r * H4;
                        float *dh = w->dh + r * H, *dc = w->dc + r * H;
                        for (size_t j = 0; j < H; j++) {
                                float tc = fast_tanh(cnow[r * H + j]);
                                float dO = dh[j] * tc;
                                float dC = dc[j] + dh[j] * go[j] * (1.0f - tc * tc);
                                float cp = cprev[r * H + j];
                                d[j] = dC * gg[j] * gi[j] * (1.0f - gi[j]);
                                d[H + j] = dC * cp * gf[j] * (1.0f - gf[j]);
                                d[2 * H + j] = dC * gi[j] * (1.0f - gg[j] * gg[j]);
                                d[3 * H + j] = dO * go[j] * (1.0f - go[j]);
                                dc[j] = dC * gf[j]; /* to c_{t-1} */
                        }
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)F,
                            (blasint)H4, (blasint)B, 1.0f, x + t * F, (blasint)(T * F),
                            w->dg, (blasint)H4, 1.0f, gwx, (blasint)H4);
                for (size_t r = 0; r < B; r++)
                        for (size_t j = 0; j < H4; j++)
                                gb[j] += w->dg[r * H4 + j];
                if (t > 0) {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)H,
                                    (blasint)H4, (blasint)B, 1.0f, w->hs + t * B * H,
                                    (blasint)H, w->dg, (blasint)H4, 1.0f, gwh,
                                    (blasint)H4);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)B,
                                    (blasint)H, (blasint)H4, 1.0f, w->dg, (blasint)H4, wh,
                                    (blasint)H4, 0.0f, w->dh, (blasint)H);
                }
        }
}

int fls_lstm_loss_grad(fls_lstm_t *net, const float *x, const float *y, size_t rows,
                       float pos_weight, double *loss, float *grad, char *errstr,
                       size_t errstr_size)
{
        if (!x || !y || rows == 0) {
                seterr(errstr, errstr_size, "lstm: no rows");
                return -1;
        }
        ws_t w;
        size_t cap = rows < CHUNK ? rows : CHUNK;
        if (ws_alloc(&w, net, cap) < 0) {
                seterr(errstr, errstr_size, "lstm: out of memory");
                return -1;
        }
        if (grad)
                memset(grad, 0, net->np * sizeof(float));
        double L = 0;
        size_t stride = net->t * net->f;
        for (size_t r0 = 0; r0 < rows; r0 += cap) {
                size_t b = rows - r0 < cap ? rows - r0 : cap;
                loss_grad_ws(net, &w, x + r0 * stride, y + r0, b, pos_weight,
                             1.0f / (float)rows, &L, grad);
        }
        ws_free(&w);
        if (loss)
                *loss = L / (double)rows;
        return 0;
}

void fls_lstm_train_opts_default(fls_lstm_train_opts_t *o)
{
        memset(o, 0, sizeof(*o));
        o->epochs = 20;
        o->batch_size = 64;
        o->learning_rate = 1e-3f;
        o->clip_norm = 5.0f;
        o->pos_weight = 1.0f;
        o->seed = 1;
}

int fls_lstm_train(fls_lstm_t *net, const float *x, const float *y, size_t rows,
                   const fls_lstm_train_opts_t *o, double *final_loss, char *errstr,
                   size_t errstr_size)
{
        fls_lstm_train_opts_t def;
        if (!o) {
                fls_lstm_train_opts_default(&def);
                o = &def;
        }
        if (!x || !y || rows == 0 || rows > UINT32_MAX) {
                seterr(errstr, errstr_size, "lstm: bad training set (%zu rows)", rows);
                return -1;
        }
        if (o->batch_size == 0 || o->batch_size > 65536 || !(o->learning_rate > 0) ||
            !(o->clip_norm >= 0) || !(o->pos_weight > 0)) {
                seterr(
                    errstr, errstr_size,
                    "lstm: bad options (batch_size %zu, learning_rate %g, clip_norm %g, "
                    "pos_weight %g)",
                    o->batch_size, (double)o->learning_rate, (double)o->clip_norm,
                    (double)o->pos_weight);
                return -1;
        }
        size_t stride = net->t * net->f, np = net->np;
        size_t bs = o->batch_size < rows ? o->batch_size : rows;
        for (size_t i = 0; i < rows; i++) {
                if (!isfinite(y[i]) ||
                    (net->type == FLS_LSTM_CLASSIFIER && y[i] != 0.0f && y[i] != 1.0f)) {
                        seterr(errstr, errstr_size, "lstm: y[%zu] = %g is not %s", i,
                               (double)y[i],
                               net->type == FLS_LSTM_CLASSIFIER ? "0 or 1" : "finite");
                        return -1;
                }
        }
        for (size_t i = 0; i < rows * stride; i++) {
                if (!isfinite(x[i])) {
                        seterr(errstr, errstr_size,
                               "lstm: x row %zu step %zu feature %zu is not finite",
                               i / stride, i % stride / net->f, i % net->f);
                        return -1;
                }
        }
        ws_t w;
        uint32_t *perm = malloc(rows * sizeof(uint32_t));
        float *xb = malloc(bs * stride * sizeof(float));
        float *yb = malloc(bs * sizeof(float));
        float *g = malloc(np * sizeof(float));
        float *m = calloc(np, sizeof(float));
        float *v = calloc(np, sizeof(float));
        int rc = -1, have_ws = ws_alloc(&w, net, bs) == 0;
        if (!perm || !xb || !yb || !g || !m || !v || !have_ws) {
                seterr(errstr, errstr_size, "lstm: out of memory for training");
                goto out;
        }
        for (size_t i = 0; i < rows; i++)
                perm[i] = (uint32_t)i;
        uint64_t rng = o->seed;
        const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        double b1t = 1, b2t = 1, epoch_loss = 0;
        for (size_t e = 0; e < o->epochs; e++) {
                for (size_t i = rows; i > 1; i--) { /* Fisher-Yates */
                        size_t j = (size_t)(sm64(&rng) % i);
                        uint32_t tmp = perm[i - 1];
                        perm[i - 1] = perm[j];
                        perm[j] = tmp;
                }
                double L = 0;
                for (size_t r0 = 0; r0 < rows; r0 += bs) {
                        size_t b = rows - r0 < bs ? rows - r0 : bs;
                        for (size_t k = 0; k < b; k++) {
                                memcpy(xb + k * stride, x + (size_t)perm[r0 + k] * stride,
                                       stride * sizeof(float));
                                yb[k] = y[perm[r0 + k]];
                        }
                        memset(g, 0, np * sizeof(float));
                        loss_grad_ws(net, &w, xb, yb, b, o->pos_weight, 1.0f / (float)b,
                                     &L, g);
                        if (o->clip_norm > 0) {
                                double nn = 0;
                                for (size_t i = 0; i < np; i++)
                                        nn += (double)g[i] * g[i];
                                nn = sqrt(nn);
                                if (nn > o->clip_norm) {
                                        float s = (float)(o->clip_norm / nn);
                                        for (size_t i = 0; i < np; i++)
                                                g[i] *= s;
                                }
                        }
                        b1t *= b1;
                        b2t *= b2;
                        float lr = (float)(o->learning_rate * sqrt(1 - b2t) / (1 - b1t));
                        for (size_t i = 0; i < np; i++) {
                                m[i] = b1 * m[i] + (1 - b1) * g[i];
                                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                                net->p[i] -= lr * m[i] / (sqrtf(v[i]) + eps);
                        }
                }
                epoch_loss = L / (double)rows;
                if (!isfinite(epoch_loss)) {
                        seterr(errstr, errstr_size,
                               "lstm: loss diverged at epoch %zu (lower learning_rate)",
                               e + 1);
                        goto out;
                }
                if (o->on_epoch && o->on_epoch(o->ctx, e + 1, epoch_loss))
                        break;
        }
        if (final_loss)
                *final_loss = epoch_loss;
        rc = 0;
out:
        if (have_ws)
                ws_free(&w);
        free(perm);
        free(xb);
        free(yb);
        free(g);
        free(m);
        free(v);
        return rc;
}
