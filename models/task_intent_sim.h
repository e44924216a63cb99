/*
 * task_intent_sim: the purchase-intent model of the clickstream consumer, trained on
 * the flash-sale simulator's files (`flashstream simulate --sim.out_dir DIR`), for
 * `flashstream train/eval intent-sim`. It sits at the "model" step of Kafka -> Avro
 * -> Redis -> model -> Kafka and knows nothing of either end: the consumer keeps each
 * user's last events in a Redis list, turns them into fls_isim_ev_t and calls
 * fls_isim_sequence, the very function training uses, so the model sees the same
 * features online as offline.
 *
 * Target: the user purchases within FLS_ISIM_HORIZON_MS after the event (strictly
 * after). Input: the user's last FLS_ISIM_SEQ events, oldest first, the current one
 * last, left-padded: event type one-hot, log price, log gap to the previous event,
 * log age relative to the current event, same SKU as now, under a campaign. Split:
 * out of time, the first 70% of the file's time span trains, the rest evaluates
 * (rows whose label window passes the end of the file are dropped). Metric: ROC AUC;
 * baselines: the logistic regression on the user's running counts (as for `intent`)
 * and "has cart items" (cart adds minus removes minus purchases > 0).
 *
 * The simulator reader (fls_sim_*) is shared with task_participation.
 */
#ifndef FLS_TASK_INTENT_SIM_H
#define FLS_TASK_INTENT_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "data_time.h"
#include "task_metrics.h"

#define FLS_ISIM_SEQ        16
#define FLS_ISIM_HORIZON_MS 120000

/* One event as the intent model sees it. type: ClickEvent enum index (VIEW, CLICK,
 * SEARCH, ADD_CART, REMOVE_CART, PURCHASE). */
typedef struct {
        int type;
        int64_t ts;
        double price;
        uint32_t sku; /* any id that is equal for equal SKUs (0: none) */
        int in_sale;  /* the event carried a campaign id */
} fls_isim_ev_t;

size_t fls_isim_nfeatures(void); /* per step */
const char *const *fls_isim_feature_names(void);
/* ev[0..n): the user's events oldest first, the current event last (n >= 1; only the
 * last FLS_ISIM_SEQ are used). x: FLS_ISIM_SEQ * nfeatures floats. */
void fls_isim_sequence(const fls_isim_ev_t *ev, size_t n, float *x);
/* A stable 32-bit id of a SKU string (FNV-1a, never 0). */
uint32_t fls_isim_sku_id(const char *s, size_t len);

/* ---- the simulator's files ---------------------------------------------------- */

typedef struct {
        uint32_t user; /* index: u<N> -> N - 1 */
        uint32_t sku;  /* fls_isim_sku_id of the sku ("" -> 0) */
        uint16_t cat;  /* index in the file's category table, 0xffff: none */
        uint8_t type;
        uint8_t in_sale;
        int32_t qty;
        double price;
        int64_t ts;
} fls_sim_ev_t;

typedef struct {
        fls_sim_ev_t *ev; /* clickstream.csv in file (= time) order */
        size_t n;
        size_t nusers; /* largest user index + 1 */
        float *intent; /* truth_users.csv: latent intent per user index, NAN if absent */
        char *band;    /* 'n'ever, 'p'ersuadable, 's'ure, 0 absent */
        int64_t start_ts, sale_start_ts, end_ts; /* from summary.json */
} fls_sim_t;

fls_sim_t *fls_sim_load(const char *dir, char *errstr, size_t errstr_size);
void fls_sim_destroy(fls_sim_t *s);

int fls_task_intent_sim_train(const char *data_dir, const fls_range_t *range,
                              uint64_t seed, const char *out, const char *export_csv,
                              char *errstr, size_t errstr_size);
int fls_task_intent_sim_eval(const char *model_path, const char *data_dir,
                             const fls_range_t *range, const char *export_csv,
                             fls_task_result_t *res, char *errstr, size_t errstr_size);

#endif
