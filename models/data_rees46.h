/*
 * data_rees46: reads the REES46 clickstream sample (view / cart / purchase events) for
 * the purchase-intent task (task_intent) of `flashstream train/eval intent`. Users are
 * renumbered 0..nusers-1 in order of first appearance; events keep the file's order,
 * which is by event_time.
 */
#ifndef FLS_DATA_REES46_H
#define FLS_DATA_REES46_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
        FLS_EV_VIEW = 0,
        FLS_EV_CART = 1,
        FLS_EV_REMOVE = 2, /* remove_from_cart: in the full dataset, not in the sample */
        FLS_EV_PURCHASE = 3,
} fls_event_type_t;

typedef struct {
        int64_t t; /* seconds */
        int type;  /* fls_event_type_t */
        int user;
        double price; /* NaN when missing */
        int64_t product;
} fls_rees46_event_t;

typedef struct {
        fls_rees46_event_t *ev;
        size_t n;
        size_t nusers;
        int64_t last_t; /* latest event time: labels after it are unknown */
} fls_rees46_t;

/* Reads dir/2019-Oct_head17k.csv. */
fls_rees46_t *fls_rees46_load(const char *dir, char *errstr, size_t errstr_size);
/* Same from one CSV file with the dataset's header (tests). */
fls_rees46_t *fls_rees46_load_file(const char *path, char *errstr, size_t errstr_size);
void fls_rees46_destroy(fls_rees46_t *d);

#endif
