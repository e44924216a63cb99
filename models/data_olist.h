/*
 * data_olist: reads the Olist public dataset folder (orders, customers, order items,
 * products, sellers, per-zip geolocation) into one row per order, joined and sorted by
 * purchase time, for the delivery task (task_delivery). Read by `flashstream
 * train/eval delivery` only; the shipment consumer gets its features from Redis.
 * Unknown values are NaN (coordinates, product sizes) or -1 (times, states).
 */
#ifndef FLS_DATA_OLIST_H
#define FLS_DATA_OLIST_H

#include <stddef.h>
#include <stdint.h>

#define FLS_OLIST_MAX_STATES 32

typedef struct {
        int64_t purchase;  /* order_purchase_timestamp */
        int64_t delivered; /* order_delivered_customer_date, -1 if none */
        int64_t estimated; /* order_estimated_delivery_date, -1 if none */
        int64_t carrier;   /* order_delivered_carrier_date (hand-over), -1 if none */
        char id[40];       /* order_id (32 hex digits in the dataset) */
        int delivered_ok;  /* status "delivered" with a delivery date */
        int cust_state;    /* index into fls_olist_t.states, -1 if unknown */
        int seller_state;  /* of the first item's seller */
        int seller;        /* index of the first item's seller, -1 without items */
        double cust_lat, cust_lng, seller_lat, seller_lng;
        int n_items, n_sellers;
        double price, freight;  /* sums over items */
        double weight_g;        /* sum over items */
        double volume_cm3;      /* sum over items */
        double max_side_cm;     /* longest side of any item */
        double photos;          /* mean photos per item */
        double desc_len;        /* mean description length per item */
        int64_t shipping_limit; /* earliest shipping_limit_date, -1 if none */
} fls_olist_order_t;

typedef struct {
        fls_olist_order_t *orders; /* sorted by purchase time */
        size_t n;
        char states[FLS_OLIST_MAX_STATES][3];
        size_t nstates;
        size_t nsellers;
} fls_olist_t;

/* Reads the folder `dir` (the files named in its README). */
fls_olist_t *fls_olist_load(const char *dir, char *errstr, size_t errstr_size);
void fls_olist_destroy(fls_olist_t *d);

/* Great-circle distance in km between two points given in degrees. */
double fls_haversine_km(double lat1, double lng1, double lat2, double lng2);

#endif
