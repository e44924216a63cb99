/*
 * olist_ship: `flashstream convert olist-shipments OLIST_DIR OUT_DIR`, the Olist
 * orders as shipment events in the simulator's file format (shipments.csv and
 * truth_shipments.csv), the input of the real-traffic replay of the shipments
 * consumer (Kafka <- `flashstream produce` <- here). Mapping in olist_ship.c.
 */
#ifndef FLS_OLIST_SHIP_H
#define FLS_OLIST_SHIP_H

#include <stddef.h>

#include "conf.h"

typedef struct {
        size_t orders, shipments, events, delivered, failed;
        size_t skipped[4]; /* by reason, see olist_ship.c */
} fls_olist_ship_stats_t;

/* Reads olist_dir, writes out_dir/shipments.csv and out_dir/truth_shipments.csv
 * (out_dir is created if missing). */
int fls_olist_ship_convert(const char *olist_dir, const char *out_dir,
                           fls_olist_ship_stats_t *st, char *errstr, size_t errstr_size);

/* The subcommand; returns the exit status. */
int fls_olist_ship_cmd(fls_conf_t *conf, int argc, char **argv);

#endif
