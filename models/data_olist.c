/*
 * data_olist: the Olist reader of `flashstream train/eval delivery`. The tables are
 * joined in memory (a few MiB): orders by id, customers by id, products and sellers by
 * id, zip prefixes compared as integers because some files lost their leading zeros.
 */
#include "data_olist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_csv.h"
#include "data_strmap.h"
#include "data_time.h"

#define ZIP_MAX 100000

typedef struct {
        double lat, lng;
} geo_t;

typedef struct {
        int zip;
        int state;
} place_t;

typedef struct {
        double weight, volume, max_side, photos, desc_len;
} product_t;

void fls_olist_destroy(fls_olist_t *d)
{
        if (!d)
                return;
        free(d->orders);
        free(d);
}

double fls_haversine_km(double lat1, double lng1, double lat2, double lng2)
{
        const double r = 6371.0, rad = M_PI / 180.0;
        double dlat = (lat2 - lat1) * rad, dlng = (lng2 - lng1) * rad;
        double a = sin(dlat / 2) * sin(dlat / 2) +
                   cos(lat1 * rad) * cos(lat2 * rad) * sin(dlng / 2) * sin(dlng / 2);
        return 2 * r * asin(sqrt(a < 1 ? a : 1));
}

static int state_index(fls_olist_t *d, const char *s)
{
        if (strlen(s) != 2)
                return -1;
        for (size_t i = 0; i < d->nstates; i++)
                if (strcmp(d->states[i], s) == 0)
                        return (int)i;
        if (d->nstates == FLS_OLIST_MAX_STATES)
                return -1;
        memcpy(d->states[d->nstates], s, 3);
        return (int)d->nstates++;
}

static int parse_zip(const char *s)
{
        char *end;
        long z = strtol(s, &end, 10);
        if (end == s || *end || z < 0 || z >= ZIP_MAX)
                return -1;
        return (int)z;
}

static double num(const char *s)
{
        double v;
        return fls_csv_double(s, &v) == 0 ? v : NAN;
}

static int64_t when(const char *s)
{
        int64_t t;
        return *s && fls_time_parse(s, &t) == 0 ? t : -1;
}

static int cmp_purchase(const void *a, const void *b)
{
        const fls_olist_order_t *x = a, *y = b;
        return (x->purchase > y->purchase) - (x->purchase < y->purchase);
}

/* One pass over a table: opens it, maps the header, calls row() per record. */
typedef int (*row_fn)(void *ctx, const fls_csv_t *csv, const int *col, char *errstr,
                      size_t errstr_size);

static int read_table(const char *dir, const char *name, const char *const *cols,
                      size_t ncols, row_fn row, void *ctx, char *errstr,
                      size_t errstr_size)
{
        int col[16];
        fls_csv_t *csv = fls_csv_open_in(dir, name, ',', errstr, errstr_size);
        if (!csv)
                return -1;
        int rc = fls_csv_next(csv, errstr, errstr_size);
        if (rc == 0)
                snprintf(errstr, errstr_size, "%s/%s: empty file", dir, name);
        if (rc <= 0 ||
            fls_csv_columns(csv, cols, col, ncols, name, errstr, errstr_size) < 0)
                goto fail;
        while ((rc = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                if (fls_csv_nfields(csv) < ncols)
                        continue; /* blank or short line */
                if (row(ctx, csv, col, errstr, errstr_size) < 0)
                        goto fail;
        }
        if (rc < 0)
                goto fail;
        fls_csv_destroy(csv);
        return 0;
fail:
        fls_csv_destroy(csv);
        return -1;
}

typedef struct {
        fls_olist_t *d;
        geo_t *geo;
        fls_strmap_t *cust_map, *seller_map, *product_map, *order_map;
        place_t *cust, *seller;
        size_t ncust, nseller, cap_cust, cap_seller;
        product_t *prod;
        size_t nprod, cap_prod;
        size_t cap_orders;
        int *order_cust;        /* customer index per order */
        int *first_seller_seen; /* per order: second seller seen flag */
} ctx_t;

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 1024;
        void *q = realloc(*p, c * size);
        if (!q)
                return -1;
        *p = q;
        *cap = c;
        return 0;
}

static int geo_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                   size_t errstr_size)
{
        ctx_t *c = vctx;
        (void)errstr;
        (void)errstr_size;
        int z = parse_zip(fls_csv_field(csv, col[0]));
        if (z < 0)
                return 0;
        c->geo[z].lat = num(fls_csv_field(csv, col[1]));
        c->geo[z].lng = num(fls_csv_field(csv, col[2]));
        return 0;
}

static int place_row(ctx_t *c, fls_strmap_t *map, place_t **arr, size_t *n, size_t *cap,
                     const fls_csv_t *csv, const int *col, char *errstr,
                     size_t errstr_size)
{
        if (grow((void **)arr, cap, *n, sizeof(**arr)) < 0 ||
            fls_strmap_put(map, fls_csv_field(csv, col[0]), (int)*n) < 0) {
                snprintf(errstr, errstr_size, "olist: out of memory");
                return -1;
        }
        (*arr)[*n].zip = parse_zip(fls_csv_field(csv, col[1]));
        (*arr)[*n].state = state_index(c->d, fls_csv_field(csv, col[2]));
        (*n)++;
        return 0;
}

static int cust_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                    size_t errstr_size)
{
        ctx_t *c = vctx;
        return place_row(c, c->cust_map, &c->cust, &c->ncust, &c->cap_cust, csv, col,
                         errstr, errstr_size);
}

static int seller_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                      size_t errstr_size)
{
        ctx_t *c = vctx;
        return place_row(c, c->seller_map, &c->seller, &c->nseller, &c->cap_seller, csv,
                         col, errstr, errstr_size);
}

static int product_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                       size_t errstr_size)
{
        ctx_t *c = vctx;
        if (grow((void **)&c->prod, &c->cap_prod, c->nprod, sizeof(*c->prod)) < 0 ||
            fls_strmap_put(c->product_map, fls_csv_field(csv, col[0]), (int)c->nprod) <
                0) {
                snprintf(errstr, errstr_size, "olist: out of memory");
                return -1;
        }
        product_t *p = &c->prod[c->nprod++];
        double l = num(fls_csv_field(csv, col[3])), h = num(fls_csv_field(csv, col[4])),
               w = num(fls_csv_field(csv, col[5]));
        p->weight = num(fls_csv_field(csv, col[2]));
        p->volume = l * h * w;
        p->max_side = fmax(l, fmax(h, w));
        p->photos = num(fls_csv_field(csv, col[6]));
        p->desc_len = num(fls_csv_field(csv, col[1]));
        return 0;
}

static void set_coords(const geo_t *geo, int zip, double *lat, double *lng)
{
        *lat = *lng = NAN;
        if (zip >= 0) {
                *lat = geo[zip].lat;
                *lng = geo[zip].lng;
        }
}

static int order_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                     size_t errstr_size)
{
        ctx_t *c = vctx;
        fls_olist_t *d = c->d;
        int64_t purchase = when(fls_csv_field(csv, col[3]));
        if (purchase < 0) {
                snprintf(errstr, errstr_size, "olist orders: line %ld: bad purchase time",
                         fls_csv_line(csv));
                return -1;
        }
        if (grow((void **)&d->orders, &c->cap_orders, d->n, sizeof(*d->orders)) < 0 ||
            fls_strmap_put(c->order_map, fls_csv_field(csv, col[0]), (int)d->n) < 0) {
                snprintf(errstr, errstr_size, "olist: out of memory");
                return -1;
        }
        fls_olist_order_t *o = &d->orders[d->n++];
        memset(o, 0, sizeof(*o));
        o->purchase = purchase;
        o->delivered = when(fls_csv_field(csv, col[4]));
        o->estimated = when(fls_csv_field(csv, col[5]));
        o->carrier = when(fls_csv_field(csv, col[6]));
        snprintf(o->id, sizeof(o->id), "%s", fls_csv_field(csv, col[0]));
        o->delivered_ok =
            strcmp(fls_csv_field(csv, col[2]), "delivered") == 0 && o->delivered >= 0;
        o->cust_state = -1;
        o->cust_lat = o->cust_lng = NAN;
        int ci = fls_strmap_get(c->cust_map, fls_csv_field(csv, col[1]));
        if (ci >= 0) {
                o->cust_state = c->cust[ci].state;
                set_coords(c->geo, c->cust[ci].zip, &o->cust_lat, &o->cust_lng);
        }
        o->seller = o->seller_state = -1;
        o->seller_lat = o->seller_lng = NAN;
        o->weight_g = o->volume_cm3 = o->max_side_cm = 0;
        o->shipping_limit = -1;
        return 0;
}

static int item_row(void *vctx, const fls_csv_t *csv, const int *col, char *errstr,
                    size_t errstr_size)
{
        ctx_t *c = vctx;
        (void)errstr;
        (void)errstr_size;
        int oi = fls_strmap_get(c->order_map, fls_csv_field(csv, col[0]));
        if (oi < 0)
                return 0; /* item of an order outside the subset */
        fls_olist_order_t *o = &c->d->orders[oi];
        int si = fls_strmap_get(c->seller_map, fls_csv_field(csv, col[2]));
        int pi = fls_strmap_get(c->product_map, fls_csv_field(csv, col[1]));
        if (o->n_items == 0) {
                o->seller = si;
                o->n_sellers = 1;
                if (si >= 0) {
                        o->seller_state = c->seller[si].state;
                        set_coords(c->geo, c->seller[si].zip, &o->seller_lat,
                                   &o->seller_lng);
                }
        } else if (si != o->seller && !c->first_seller_seen[oi]) {
                /* Counts "more than one seller"; exact distinct counts are not needed. */
                c->first_seller_seen[oi] = 1;
                o->n_sellers = 2;
        }
        o->n_items++;
        double price = num(fls_csv_field(csv, col[4]));
        double freight = num(fls_csv_field(csv, col[5]));
        o->price += isnan(price) ? 0 : price;
        o->freight += isnan(freight) ? 0 : freight;
        if (pi >= 0) {
                const product_t *p = &c->prod[pi];
                o->weight_g += isnan(p->weight) ? 0 : p->weight;
                o->volume_cm3 += isnan(p->volume) ? 0 : p->volume;
                if (p->max_side > o->max_side_cm)
                        o->max_side_cm = p->max_side;
                /* running means over the order's items */
                double k = o->n_items;
                o->photos += ((isnan(p->photos) ? 0 : p->photos) - o->photos) / k;
                o->desc_len += ((isnan(p->desc_len) ? 0 : p->desc_len) - o->desc_len) / k;
        }
        int64_t lim = when(fls_csv_field(csv, col[3]));
        if (lim >= 0 && (o->shipping_limit < 0 || lim < o->shipping_limit))
                o->shipping_limit = lim;
        return 0;
}

fls_olist_t *fls_olist_load(const char *dir, char *errstr, size_t errstr_size)
{
        static const char *const geo_cols[] = {"geolocation_zip_code_prefix",
                                               "geolocation_lat", "geolocation_lng"};
        static const char *const cust_cols[] = {"customer_id", "customer_zip_code_prefix",
                                                "customer_state"};
        static const char *const seller_cols[] = {"seller_id", "seller_zip_code_prefix",
                                                  "seller_state"};
        static const char *const prod_cols[] = {
            "product_id",        "product_description_lenght", "product_weight_g",
            "product_length_cm", "product_height_cm",          "product_width_cm",
            "product_photos_qty"};
        static const char *const order_cols[] = {"order_id",
                                                 "customer_id",
                                                 "order_status",
                                                 "order_purchase_timestamp",
                                                 "order_delivered_customer_date",
                                                 "order_estimated_delivery_date",
                                                 "order_delivered_carrier_date"};
        static const char *const item_cols[] = {"order_id",  "product_id",
                                                "seller_id", "shipping_limit_date",
                                                "price",     "freight_value"};
        ctx_t c;
        memset(&c, 0, sizeof(c));
        c.d = calloc(1, sizeof(*c.d));
        c.geo = malloc(ZIP_MAX * sizeof(*c.geo));
        c.cust_map = fls_strmap_new();
        c.seller_map = fls_strmap_new();
        c.product_map = fls_strmap_new();
        c.order_map = fls_strmap_new();
        if (!c.d || !c.geo || !c.cust_map || !c.seller_map || !c.product_map ||
            !c.order_map) {
                snprintf(errstr, errstr_size, "olist: out of memory");
                goto fail;
        }
        for (size_t i = 0; i < ZIP_MAX; i++)
                c.geo[i].lat = c.geo[i].lng = NAN;
        if (read_table(dir, "olist_geolocation_by_zip_prefix.csv", geo_cols, 3, geo_row,
                       &c, errstr, errstr_size) < 0 ||
            read_table(dir, "olist_customers_2017_subset.csv", cust_cols, 3, cust_row, &c,
                       errstr, errstr_size) < 0 ||
            read_table(dir, "olist_sellers_dataset.csv", seller_cols, 3, seller_row, &c,
                       errstr, errstr_size) < 0 ||
            read_table(dir, "olist_products_dataset.csv", prod_cols, 7, product_row, &c,
                       errstr, errstr_size) < 0 ||
            read_table(dir, "olist_orders_2017_subset.csv", order_cols, 7, order_row, &c,
                       errstr, errstr_size) < 0)
                goto fail;
        c.first_seller_seen = calloc(c.d->n + 1, sizeof(int));
        if (!c.first_seller_seen) {
                snprintf(errstr, errstr_size, "olist: out of memory");
                goto fail;
        }
        if (read_table(dir, "olist_order_items_2017_subset.csv", item_cols, 6, item_row,
                       &c, errstr, errstr_size) < 0)
                goto fail;
        if (c.d->n == 0) {
                snprintf(errstr, errstr_size, "%s: no orders", dir);
                goto fail;
        }
        c.d->nsellers = c.nseller;
        /* Stable order for equal purchase times is not needed: features only use
         * strictly earlier orders. */
        qsort(c.d->orders, c.d->n, sizeof(*c.d->orders), cmp_purchase);
        goto done;
fail:
        fls_olist_destroy(c.d);
        c.d = NULL;
done:
        free(c.geo);
        free(c.cust);
        free(c.seller);
        free(c.prod);
        free(c.first_seller_seen);
        fls_strmap_destroy(c.cust_map);
        fls_strmap_destroy(c.seller_map);
        fls_strmap_destroy(c.product_map);
        fls_strmap_destroy(c.order_map);
        return c.d;
}
