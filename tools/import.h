/*
 * import: `flashstream import DATASET PATH`, real traffic for the consumers. It reads
 * a public dataset (REES46 clickstream, UCI Online Retail, Olist orders), converts its
 * rows into the input events the storefront and the order system would have sent
 * (ClickEvent, OrderEvent) and produces them, Confluent-framed Avro, to the consumers'
 * input topics with the same keys and partitioner as the simulator: the start of the
 * flow (here -> Kafka -> Avro -> Redis -> model -> Kafka). Mappings: tools/IMPORT.md.
 *
 * Two halves. An importer (one per dataset, a row in the table of import.c) reads the
 * files into an fls_import_set_t: records in schema field order with their key, and
 * the rows it skipped, counted by reason. The set is then sorted by event time
 * (stable), optionally compressed in time (import.time_scale), and produced. Tests
 * call the importers directly and check the records without Kafka.
 *
 * Records are generic (an output and up to FLS_IMPORT_MAX_FIELDS typed values) so
 * that an importer for another input topic is one table line and one function.
 */
#ifndef FLS_IMPORT_H
#define FLS_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "conf.h"

extern const fls_conf_def_t fls_import_conf[];

/* The outputs an importer can write: subject and topic key are in import.c. */
typedef enum {
        FLS_IMPORT_CLICK,    /* ClickEvent to topic.clickstream, key user_id */
        FLS_IMPORT_ORDER,    /* OrderEvent to topic.orders, key sku:warehouse_id */
        FLS_IMPORT_SHIPMENT, /* ShipmentEvent to topic.shipments, key shipment_id */
        FLS_IMPORT__NOUT
} fls_import_out_t;

/* ClickEvent fields, in schema order (checked against the codec at start-up). */
enum {
        FLS_IC_EVENT_ID,
        FLS_IC_USER,
        FLS_IC_SESSION,
        FLS_IC_TYPE,
        FLS_IC_SKU,
        FLS_IC_CATEGORY,
        FLS_IC_PRICE,
        FLS_IC_QTY,
        FLS_IC_DWELL,
        FLS_IC_CAMPAIGN,
        FLS_IC_TS,
        FLS_IC__N
};
/* ClickType symbols. */
enum {
        FLS_IC_VIEW,
        FLS_IC_CLICK,
        FLS_IC_SEARCH,
        FLS_IC_ADD_CART,
        FLS_IC_REMOVE_CART,
        FLS_IC_PURCHASE
};

/* OrderEvent fields, in schema order. */
enum {
        FLS_IO_EVENT_ID,
        FLS_IO_TYPE,
        FLS_IO_ORDER,
        FLS_IO_USER,
        FLS_IO_SKU,
        FLS_IO_WH,
        FLS_IO_QTY,
        FLS_IO_PRICE,
        FLS_IO_REGION,
        FLS_IO_FLASH,
        FLS_IO_TS,
        FLS_IO__N
};
/* OrderEventType symbols. */
enum { FLS_IO_PLACED, FLS_IO_CANCELLED, FLS_IO_REFUNDED, FLS_IO_RECEIPT };

#define FLS_IMPORT_MAX_FIELDS  16
#define FLS_IMPORT_MAX_REASONS 24

typedef enum {
        FLS_IV_STR, /* .s: offset in the set's text arena */
        FLS_IV_LONG,
        FLS_IV_INT,
        FLS_IV_DBL,
        FLS_IV_BOOL,
        FLS_IV_ENUM
} fls_import_kind_t;

typedef struct {
        fls_import_kind_t kind;
        union {
                size_t s;
                int64_t l;
                double d;
        } v;
} fls_import_val_t;

typedef struct {
        int out;      /* fls_import_out_t */
        int nf;       /* values set */
        int ts_field; /* index of the event-time field (moved by time_scale) */
        int64_t ts;   /* event time, UTC ms: the sort key */
        uint64_t seq; /* order of creation: ties keep it */
        size_t key;   /* arena offset of the Kafka key */
        long line;    /* source line, 0 for synthesized records */
        fls_import_val_t f[FLS_IMPORT_MAX_FIELDS];
} fls_import_rec_t;

/* Options of the importers, from the import.* keys. */
typedef struct {
        int64_t limit;          /* rows read at most, 0: all */
        double time_scale;      /* event times compressed by this factor */
        int64_t sale_start_s;   /* REES46: campaign from here on; -1: none */
        const char *campaign;   /* REES46: campaign_id of the sale */
        int64_t opening_days;   /* orders: opening stock = units of the first days */
        const char *warehouse;  /* retail: the one warehouse */
        int64_t cancel_delay_s; /* olist: cancellation after the purchase */
} fls_import_opts_t;

typedef struct fls_import_set {
        fls_arena_t text;
        fls_import_rec_t *recs;
        size_t n, cap;
        uint64_t seq;
        long rows;    /* data rows read */
        int nreasons; /* skipped rows by reason */
        const char *reason[FLS_IMPORT_MAX_REASONS];
        long skipped[FLS_IMPORT_MAX_REASONS];
        int nnotes; /* other figures of the conversion */
        const char *note[FLS_IMPORT_MAX_REASONS];
        long noted[FLS_IMPORT_MAX_REASONS];
        int64_t sale_start_ts;     /* REES46: first campaign time after scaling, -1 */
        int64_t first_ts, last_ts; /* after sorting and scaling */
} fls_import_set_t;

/* An importer: reads PATH (a dataset folder or a file, see IMPORT.md) into set.
 * Bad rows are counted in set, not errors; -1 only when the files cannot be read. */
typedef int (*fls_import_fn)(const char *path, const fls_import_opts_t *o,
                             fls_import_set_t *set, char *errstr, size_t errstr_size);

int fls_import_rees46(const char *path, const fls_import_opts_t *o, fls_import_set_t *set,
                      char *errstr, size_t errstr_size);
int fls_import_retail(const char *path, const fls_import_opts_t *o, fls_import_set_t *set,
                      char *errstr, size_t errstr_size);
int fls_import_olist_orders(const char *path, const fls_import_opts_t *o,
                            fls_import_set_t *set, char *errstr, size_t errstr_size);

/* Runs the importer called name (then sorts, adds opening stock, scales time): what
 * `flashstream import` does before producing. -1 with errstr on an unknown name. */
int fls_import_load(const char *name, const char *path, const fls_import_opts_t *o,
                    fls_import_set_t *set, char *errstr, size_t errstr_size);
void fls_import_opts_from_conf(const fls_conf_t *conf, fls_import_opts_t *o);
void fls_import_set_free(fls_import_set_t *set);

/* Building records (for importers). new() starts one; the setters append values in
 * schema order; key() sets the key from the values already set. */
fls_import_rec_t *fls_import_new(fls_import_set_t *set, int out, long line);
void fls_import_str(fls_import_set_t *set, fls_import_rec_t *r, const char *s);
void fls_import_strn(fls_import_set_t *set, fls_import_rec_t *r, const char *s,
                     size_t len);
void fls_import_long(fls_import_rec_t *r, int64_t v);
void fls_import_int(fls_import_rec_t *r, int32_t v);
void fls_import_dbl(fls_import_rec_t *r, double v);
void fls_import_bool(fls_import_rec_t *r, int v);
void fls_import_enum(fls_import_rec_t *r, int v);
/* The event time: a LONG value that is also the sort key. */
void fls_import_ts(fls_import_rec_t *r, int64_t ts);
void fls_import_key(fls_import_set_t *set, fls_import_rec_t *r, const char *key);
/* Counts a skipped row (reason: a static string) or a figure worth reporting. */
void fls_import_skip(fls_import_set_t *set, const char *reason);
void fls_import_note(fls_import_set_t *set, const char *what, long n);
long fls_import_skipped(const fls_import_set_t *set, const char *reason);

/* A value's text, for STR values. */
static inline const char *fls_import_text(const fls_import_set_t *set,
                                          const fls_import_rec_t *r, int i)
{
        return fls_arena_str(&set->text, r->f[i].v.s);
}

/* `flashstream import rees46|retail|olist-orders PATH`. */
int fls_cmd_import(fls_conf_t *conf, int argc, char **argv);

#endif
