/*
 * data_strmap: a string -> int map for joining the public datasets' tables by their
 * text keys (Olist's 32-hex order, customer, product and seller ids; REES46 user ids
 * would also fit). Used by the dataset readers of `flashstream train/eval` only.
 * Open addressing with linear probing; keys are copied.
 */
#ifndef FLS_DATA_STRMAP_H
#define FLS_DATA_STRMAP_H

#include <stddef.h>

typedef struct fls_strmap fls_strmap_t;

fls_strmap_t *fls_strmap_new(void);
void fls_strmap_destroy(fls_strmap_t *m);
/* Sets key -> value (replacing). -1 when out of memory. */
int fls_strmap_put(fls_strmap_t *m, const char *key, int value);
/* The value of key, or -1 when absent (store only non-negative values). */
int fls_strmap_get(const fls_strmap_t *m, const char *key);
size_t fls_strmap_size(const fls_strmap_t *m);

#endif
