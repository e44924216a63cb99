/*
 * shipments: the consumer of shipment status events (topic shipments, keyed by
 * shipment). Keeps each shipment's lifecycle and per-region and per-carrier load and
 * delivery times in Redis, predicts each new shipment's delivery time with the
 * delivery-sim model (models/task_dispatch.h) and makes one dispatch decision for it
 * (Kafka -> Avro -> Redis -> model -> Kafka, topic dispatch-decisions).
 *
 * The decision policy is exposed below so that tests can drive it with hand-built
 * shipments; decide() uses exactly these functions.
 */
#ifndef FLS_SHIPMENTS_H
#define FLS_SHIPMENTS_H

#include <stddef.h>
#include <stdint.h>

#include "runner.h"

extern const fls_app_t fls_shipments_app;

/* DispatchKind symbols, in schema order. */
enum { FLS_DISPATCH_STANDARD, FLS_DISPATCH_EXPRESS, FLS_DISPATCH_PRIORITY };

typedef struct {
        double late_penalty; /* cost of a shipment delivered after its promise */
        double express_cost; /* extra cost of express or priority over standard */
        double resid_frac;   /* residual sd the forest spread misses, x prediction */
} fls_dispatch_policy_t;

/* One shipment being decided. */
typedef struct {
        double mu_h, spread_h, promised_h; /* prediction, its spread, promise: hours */
        int flash;
        /* out of fls_shipments_assess */
        double p_late, cost; /* P(delivery after promise), p_late x late_penalty */
        int want;            /* the kind wanted before capacity */
        /* out of fls_shipments_settle */
        int kind;
        const char *why; /* reason code: flash_sale, late_risk, on_time,
                          * no_capacity_priority, no_capacity_express */
} fls_dispatch_case_t;

/* P(T > promised) for T normal around mu with sd sqrt(spread^2 + (resid_frac mu)^2):
 * the trees' spread alone measures model doubt, not the noise of one parcel. */
double fls_shipments_p_late(double mu_h, double spread_h, double promised_h,
                            double resid_frac);
/* Sets p_late, cost and want: PRIORITY for flash-sale orders, EXPRESS when the
 * expected cost of lateness exceeds the extra cost of express, else STANDARD. */
void fls_shipments_assess(const fls_dispatch_policy_t *pol, fls_dispatch_case_t *c);
/* The order in which the wanting cases claim capacity: highest expected lateness cost
 * first (ties: lower index first). Writes the indexes of the cases whose want is not
 * STANDARD to order; returns how many. */
size_t fls_shipments_claim_order(const fls_dispatch_case_t *cs, size_t n, size_t *order);
/* Final kind from want and whether capacity was granted (ignored for STANDARD). */
void fls_shipments_settle(fls_dispatch_case_t *c, int granted);

/* Capacity counter of a region and hour ("dispatch.<region>.<hour since epoch>"). */
void fls_shipments_capacity_counter(const char *region, size_t len, int64_t ts_ms,
                                    char *buf, size_t size);

/* Model reload (the app's reload callback, called by the runner after SIGHUP): 0
 * after a reload, -1 when the new file was rejected (errstr says why; the old model
 * keeps serving). */
int fls_shipments_reload(void *app, char *errstr, size_t errstr_size);
/* "name@version" of the model serving now. */
const char *fls_shipments_model_version(const void *app);

#endif
