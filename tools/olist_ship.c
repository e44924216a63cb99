/*
 * olist_ship: turns the Olist orders (../shared/data/olist-brazilian-ecommerce) into a
 * shipment event file in the simulator's format, so that real deliveries can go the
 * whole way Kafka -> Avro -> Redis -> model -> Kafka and be scored exactly like the
 * simulator's: `flashstream produce shipments` replays the events, the shipments
 * consumer decides, `flashstream judge shipments` and `flashstream eval delivery-sim`
 * read the same folder. Mapping (documented in tools/IMPORT-SHIPMENTS.md):
 *   one order = one shipment (shipment_id = order_id = Olist's order_id);
 *   CREATED at order_purchase_timestamp, HANDED_TO_CARRIER at
 *   order_delivered_carrier_date, DELIVERED at order_delivered_customer_date;
 *   an order that never arrives (canceled, unavailable, shipped without a delivery
 *   date, or "delivered" before it was bought) FAILS at its estimated delivery date;
 *   region = customer state, warehouse and carrier = the first seller's state (Olist
 *   names no carrier: the origin state stands for the network that carries it);
 *   distance = great circle from the seller's to the customer's zip prefix, weight =
 *   the items' weight, promised_ts = order_estimated_delivery_date, flash_sale false;
 *   truth = hours from purchase to delivery, for delivered orders only.
 * Orders without a seller, a state, coordinates or an estimated date are skipped and
 * counted by reason. One pass, O(orders) memory; a tool, not on any hot path.
 */
#include "olist_ship.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_olist.h"

enum { ST_CREATED, ST_HANDED, ST_DELIVERED, ST_FAILED };
static const char *const status_name[] = {"CREATED", "HANDED_TO_CARRIER", "DELIVERED",
                                          "FAILED"};

typedef struct {
        int64_t ts; /* ms */
        uint32_t order;
        int status;
} ev_t;

static int cmp_ev(const void *a, const void *b)
{
        const ev_t *x = a, *y = b;
        if (x->ts != y->ts)
                return x->ts < y->ts ? -1 : 1;
        if (x->order != y->order)
                return x->order < y->order ? -1 : 1;
        return (x->status > y->status) - (x->status < y->status);
}

enum { SKIP_SELLER, SKIP_STATE, SKIP_GEO, SKIP_ESTIMATE, NSKIP };
static const char *const skip_name[] = {"no_items_or_seller", "unknown_state",
                                        "no_coordinates", "no_estimated_date"};

static int skip_reason(const fls_olist_order_t *o)
{
        if (o->seller < 0 || o->seller_state < 0)
                return SKIP_SELLER;
        if (o->cust_state < 0)
                return SKIP_STATE;
        if (!isfinite(o->cust_lat) || !isfinite(o->seller_lat))
                return SKIP_GEO;
        if (o->estimated < 0)
                return SKIP_ESTIMATE;
        return -1;
}

static int delivered(const fls_olist_order_t *o)
{
        return o->delivered_ok && o->delivered >= o->purchase;
}

int fls_olist_ship_convert(const char *olist_dir, const char *out_dir,
                           fls_olist_ship_stats_t *st, char *errstr, size_t errstr_size)
{
        char path[4096];
        fls_olist_t *d;
        ev_t *ev = NULL;
        size_t nev = 0;
        FILE *sf = NULL, *tf = NULL;
        int rc = -1;

        memset(st, 0, sizeof(*st));
        if (mkdir(out_dir, 0777) < 0 && errno != EEXIST) {
                snprintf(errstr, errstr_size, "%s: %s", out_dir, strerror(errno));
                return -1;
        }
        d = fls_olist_load(olist_dir, errstr, errstr_size);
        if (!d)
                return -1;
        st->orders = d->n;
        ev = malloc(d->n * 3 * sizeof(*ev));
        if (!ev) {
                snprintf(errstr, errstr_size, "olist-shipments: out of memory");
                goto done;
        }
        for (size_t i = 0; i < d->n; i++) {
                const fls_olist_order_t *o = &d->orders[i];
                int why = skip_reason(o);
                if (why >= 0) {
                        st->skipped[why]++;
                        continue;
                }
                st->shipments++;
                ev[nev++] = (ev_t){o->purchase * 1000, (uint32_t)i, ST_CREATED};
                if (o->carrier >= 0)
                        ev[nev++] = (ev_t){o->carrier * 1000, (uint32_t)i, ST_HANDED};
                if (delivered(o)) {
                        ev[nev++] =
                            (ev_t){o->delivered * 1000, (uint32_t)i, ST_DELIVERED};
                        st->delivered++;
                } else {
                        ev[nev++] = (ev_t){o->estimated * 1000, (uint32_t)i, ST_FAILED};
                        st->failed++;
                }
        }
        /* Event order is the order of the file and of the topic's one partition: by
         * time, ties by order and lifecycle step, so a replay is reproducible. */
        qsort(ev, nev, sizeof(*ev), cmp_ev);
        st->events = nev;

        snprintf(path, sizeof(path), "%s/shipments.csv", out_dir);
        if (!(sf = fopen(path, "w"))) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                goto done;
        }
        fprintf(sf, "event_id,shipment_id,order_id,status,warehouse_id,region,"
                    "distance_km,weight_kg,carrier,flash_sale,promised_ts,ts\n");
        for (size_t k = 0; k < nev; k++) {
                const fls_olist_order_t *o = &d->orders[ev[k].order];
                const char *seller_state = d->states[o->seller_state];
                /* %.17g: the text converts back to the very same double, so the
                 * consumer (through Avro) and the trainer (through this file) see
                 * identical inputs. */
                fprintf(sf,
                        "olist-%zu,%s,%s,%s,%s,%s,%.17g,%.17g,%s,false,%" PRId64
                        ",%" PRId64 "\n",
                        k + 1, o->id, o->id, status_name[ev[k].status], seller_state,
                        d->states[o->cust_state],
                        fls_haversine_km(o->cust_lat, o->cust_lng, o->seller_lat,
                                         o->seller_lng),
                        o->weight_g / 1000.0, seller_state, o->estimated * 1000,
                        ev[k].ts);
        }
        snprintf(path, sizeof(path), "%s/truth_shipments.csv", out_dir);
        if (!(tf = fopen(path, "w"))) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                goto done;
        }
        fprintf(tf,
                "shipment_id,order_id,true_delivery_h,promised_ts,created_ts,failed\n");
        for (size_t i = 0; i < d->n; i++) {
                const fls_olist_order_t *o = &d->orders[i];
                if (skip_reason(o) >= 0 || !delivered(o))
                        continue; /* no ground truth: not scored */
                fprintf(tf, "%s,%s,%.17g,%" PRId64 ",%" PRId64 ",0\n", o->id, o->id,
                        (double)(o->delivered - o->purchase) / 3600.0,
                        o->estimated * 1000, o->purchase * 1000);
        }
        rc = 0;
done:
        if (sf && fclose(sf) != 0 && rc == 0) {
                snprintf(errstr, errstr_size, "%s/shipments.csv: %s", out_dir,
                         strerror(errno));
                rc = -1;
        }
        if (tf && fclose(tf) != 0 && rc == 0) {
                snprintf(errstr, errstr_size, "%s/truth_shipments.csv: %s", out_dir,
                         strerror(errno));
                rc = -1;
        }
        free(ev);
        fls_olist_destroy(d);
        return rc;
}

int fls_olist_ship_cmd(fls_conf_t *conf, int argc, char **argv)
{
        fls_olist_ship_stats_t st;
        char err[512];
        (void)conf;
        if (argc != 4 || strcmp(argv[1], "olist-shipments") != 0) {
                fprintf(stderr, "usage: flashstream convert olist-shipments OLIST_DIR "
                                "OUT_DIR\n");
                return 2;
        }
        if (fls_olist_ship_convert(argv[2], argv[3], &st, err, sizeof(err)) < 0) {
                fprintf(stderr, "flashstream convert: %s\n", err);
                return 1;
        }
        printf("{\"orders\":%zu,\"shipments\":%zu,\"events\":%zu,\"delivered\":%zu,"
               "\"failed\":%zu,\"skipped\":{",
               st.orders, st.shipments, st.events, st.delivered, st.failed);
        for (int i = 0; i < NSKIP; i++)
                printf("%s\"%s\":%zu", i ? "," : "", skip_name[i], st.skipped[i]);
        printf("},\"out\":\"%s\"}\n", argv[3]);
        return 0;
}
