/*
 * lstm.h: a one-layer LSTM (input F, hidden H, fixed sequence length T) with a dense
 * head to one output, for the "model" step of Kafka -> Avro -> Redis -> model -> Kafka;
 * usually wrapped in an fls_model_t (model.h) which adds names and normalisation.
 *
 * Inference runs the whole batch at once: per time step one cblas_sgemm for
 * X_t·Wx and one for H_{t-1}·Wh (B×4H each), then elementwise gates. Training is BPTT
 * with Adam on mini-batches, gradient-norm clipping, MSE (regressor) or log-loss
 * (classifier, sigmoid output), with a seeded splitmix64 PRNG for init and shuffling:
 * same seed, same data -> identical weights.
 *
 * Parameters are one contiguous float array, in this order (gates i, f, g, o):
 *   Wx [F][4H], Wh [H][4H], b [4H], Wy [H], by [1]
 * The forget-gate bias starts at 1 (a standard trick so early training keeps memory).
 */
#ifndef FLS_LSTM_H
#define FLS_LSTM_H

#include <stddef.h>
#include <stdint.h>

typedef struct fls_lstm fls_lstm_t;

typedef enum {
        FLS_LSTM_REGRESSOR = 0,  /* linear output, MSE loss */
        FLS_LSTM_CLASSIFIER = 1, /* sigmoid output = P(class 1), log-loss */
} fls_lstm_type_t;

/* Weights drawn uniform in +-1/sqrt(H) from seed. Limits: F, H <= 4096, T <= 65536. */
fls_lstm_t *fls_lstm_new(fls_lstm_type_t type, size_t nin, size_t hidden, size_t seq_len,
                         uint64_t seed, char *errstr, size_t errstr_size);
void fls_lstm_destroy(fls_lstm_t *net); /* NULL-safe */

fls_lstm_type_t fls_lstm_type(const fls_lstm_t *net);
size_t fls_lstm_nin(const fls_lstm_t *net);
size_t fls_lstm_hidden(const fls_lstm_t *net);
size_t fls_lstm_seq_len(const fls_lstm_t *net);
/* The parameter array described above; writable so loaders and tests can set weights. */
float *fls_lstm_params(fls_lstm_t *net, size_t *nparams);
const float *fls_lstm_params_const(const fls_lstm_t *net, size_t *nparams);

/* Inference scratch grows to `rows` once; the forward pass then never allocates. */
int fls_lstm_reserve(fls_lstm_t *net, size_t rows, char *errstr, size_t errstr_size);
/* x: rows * T * F already-normalised floats (x[(r*T + t)*F + f]); out: rows floats,
 * sigmoid-applied for the classifier. Not thread-safe (uses the net's scratch). */
int fls_lstm_forward(fls_lstm_t *net, const float *x, size_t rows, float *out,
                     char *errstr, size_t errstr_size);

/* Mean loss over the rows and its gradient w.r.t. every parameter (grad: nparams
 * floats, may be NULL for the loss only). Loss: 0.5*(yhat-y)^2 (regressor) or log-loss
 * (classifier, y in {0,1}), each row weighted by pos_weight when y > 0.5 (classifier
 * only; pass 1 for none). Exposed for gradient checks and evaluation. */
int fls_lstm_loss_grad(fls_lstm_t *net, const float *x, const float *y, size_t rows,
                       float pos_weight, double *loss, float *grad, char *errstr,
                       size_t errstr_size);

typedef struct {
        size_t epochs;       /* default 20 */
        size_t batch_size;   /* default 64 */
        float learning_rate; /* Adam step, default 1e-3 */
        float clip_norm;     /* clip global gradient L2 norm; 0 = off; default 5 */
        float pos_weight;    /* classifier: weight of y=1 rows; default 1 */
        uint64_t seed;       /* shuffling seed; default 1 */
        /* Called after each epoch with the mean training loss; return non-zero to stop
         * (e.g. early stopping on a validation set the caller scores). May be NULL. */
        int (*on_epoch)(void *ctx, size_t epoch, double train_loss);
        void *ctx;
} fls_lstm_train_opts_t;

void fls_lstm_train_opts_default(fls_lstm_train_opts_t *o);
/* Trains in place from the current weights. final_loss (may be NULL) gets the last
 * epoch's mean training loss. Allocates its buffers once per call. */
int fls_lstm_train(fls_lstm_t *net, const float *x, const float *y, size_t rows,
                   const fls_lstm_train_opts_t *o, double *final_loss, char *errstr,
                   size_t errstr_size);

#endif
