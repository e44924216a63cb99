/*
 * orders: the consumer of order lines and stock receipts (topic orders, keyed by
 * "sku:warehouse"). Keeps stock movements and sales velocity per SKU and warehouse.
 */
#ifndef FLS_ORDERS_H
#define FLS_ORDERS_H

#include "runner.h"

extern const fls_app_t fls_orders_app;

#endif
