/*
 * clickstream: the consumer of storefront events (topic clickstream, keyed by user).
 * Keeps rolling per-user activity and per-SKU interest in Redis; marketing decisions
 * are built on these features.
 */
#ifndef FLS_CLICKSTREAM_H
#define FLS_CLICKSTREAM_H

#include "runner.h"

extern const fls_app_t fls_clickstream_app;

#endif
