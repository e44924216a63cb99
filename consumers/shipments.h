/*
 * shipments: the consumer of shipment status events (topic shipments, keyed by
 * shipment). Keeps each shipment's lifecycle and per-region load and lateness, and
 * makes a dispatch decision for every new shipment.
 */
#ifndef FLS_SHIPMENTS_H
#define FLS_SHIPMENTS_H

#include "runner.h"

extern const fls_app_t fls_shipments_app;

#endif
