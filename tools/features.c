/*
 * features: `flashstream features ENTITY ID`, the interactive query of what the
 * consumers keep in Redis. Reads only: it finds the input partition that owns the
 * entity (Kafka's murmur2 partitioner over the message key, with the partition count
 * from the broker's metadata), or every partition for entities whose counts are spread
 * over them (SKU interest, region load), and prints lifetime fields and window sums
 * as one JSON object. Windows end at the owning partition's watermark (event time),
 * so the answer does not depend on when the query runs.
 */
#include <inttypes.h>
#include <math.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clickstream.h"
#include "cmd.h"
#include "kafka.h"
#include "orders.h"
#include "producer.h"
#include "shipments.h"
#include "store.h"

struct window {
        int fam;
        const char *suffix;
        int64_t ms;
};

static const struct kind {
        const char *name;
        const fls_app_t *app;
        const char *prefix; /* entity prefix in Redis */
        int spread;         /* counts spread over partitions: sum them all */
        struct window windows[6];
} kinds[] = {
    {"user",
     &fls_clickstream_app,
     "u:",
     0,
     {{0, "1m", 60000}, {0, "5m", 300000}, {0, "30m", 1800000}, {-1, NULL, 0}}},
    {"sku",
     &fls_clickstream_app,
     "s:",
     1,
     {{1, "1m", 60000}, {1, "5m", 300000}, {1, "10m", 600000}, {-1, NULL, 0}}},
    {"stock",
     &fls_orders_app,
     "sw:",
     0,
     {{0, "1m", 60000},
      {0, "5m", 300000},
      {0, "15m", 900000},
      {0, "60m", 3600000},
      {-1, NULL, 0}}},
    {"shipment", &fls_shipments_app, "sh:", 0, {{-1, NULL, 0}}},
    {"region",
     &fls_shipments_app,
     "r:",
     1,
     {{0, "1m", 60000}, {0, "60m", 3600000}, {1, "24h", 86400000}, {-1, NULL, 0}}},
    {"warehouse",
     &fls_shipments_app,
     "w:",
     1,
     {{0, "1m", 60000}, {0, "60m", 3600000}, {-1, NULL, 0}}},
    {NULL, NULL, NULL, 0, {{-1, NULL, 0}}},
};

static int partition_count(fls_conf_t *conf, const char *topic, char *errstr,
                           size_t errstr_size)
{
        rd_kafka_conf_t *kc =
            fls_kafka_conf(conf, FLS_KAFKA_PRODUCER, NULL, errstr, errstr_size);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt;
        rd_kafka_t *rk;
        char err[256];
        int n = -1;

        if (!kc)
                return -1;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(kc);
                snprintf(errstr, errstr_size, "kafka: %s", err);
                return -1;
        }
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && !md->topics[0].err)
                n = md->topics[0].partition_cnt;
        else
                snprintf(errstr, errstr_size, "kafka: no metadata for topic %s", topic);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return n;
}

static void json_str(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        printf("\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        printf("\\u%04x", *s);
                else
                        putchar(*s);
        }
        putchar('"');
}

/* Prints a field's value as a JSON number when it is one. */
static void json_val(const char *v)
{
        char *end;
        strtod(v, &end);
        if (*v && !*end)
                fputs(v, stdout);
        else
                json_str(v);
}

int fls_cmd_features(fls_conf_t *conf, int argc, char **argv)
{
        const struct kind *k = NULL;
        char errstr[512], key[1024], ent[600];
        const char *topic;
        fls_store_t *st;
        int nparts, first = 1, rc = 1;
        int64_t *sums = NULL, *wm = NULL;
        size_t nw = 0;

        for (int i = 0; argc == 3 && kinds[i].name; i++)
                if (strcmp(kinds[i].name, argv[1]) == 0)
                        k = &kinds[i];
        if (!k) {
                fprintf(stderr, "usage: flashstream features "
                                "user|sku|stock|shipment|region|warehouse ID\n"
                                "  (stock takes SKU:WAREHOUSE)\n");
                return 2;
        }
        topic = fls_conf_str(conf, k->app->in_topic_key);
        nparts = partition_count(conf, topic, errstr, sizeof(errstr));
        if (nparts <= 0) {
                fprintf(stderr, "flashstream features: %s\n", errstr);
                return 1;
        }
        st = fls_store_new(
            fls_conf_str(conf, "redis.host"), (int)fls_conf_int(conf, "redis.port"),
            (int)fls_conf_int(conf, "redis.timeout_ms"),
            fls_conf_str(conf, "redis.prefix"), k->app->families,
            fls_conf_int(conf, "window.lateness_ms"), errstr, sizeof(errstr));
        if (!st) {
                fprintf(stderr, "flashstream features: %s\n", errstr);
                return 1;
        }
        while (k->windows[nw].suffix)
                nw++;
        snprintf(ent, sizeof(ent), "%s%s", k->prefix, argv[2]);

        /* Lifetime fields: one partition, or the sum over all of them. */
        {
                int lo = 0, hi = nparts;
                const fls_hash_t *h;
                /* name -> summed value, in first-seen order */
                char **names = NULL;
                double *vals = NULL;
                char **texts = NULL;
                size_t n = 0, cap = 0;
                int64_t watermark = 0;

                if (!k->spread) {
                        lo = (int)fls_producer_partition(argv[2], strlen(argv[2]),
                                                         (int32_t)nparts);
                        hi = lo + 1;
                }
                wm = calloc((size_t)nparts, sizeof(*wm));
                sums = calloc(nw + 1, sizeof(*sums));
                printf("{\"entity\":");
                json_str(k->name);
                printf(",\"id\":");
                json_str(argv[2]);
                printf(",\"topic\":");
                json_str(topic);
                printf(",\"partitions\":[");
                for (int p = lo; p < hi; p++)
                        printf("%s%d", p > lo ? "," : "", p);
                printf("]");
                for (int p = lo; p < hi; p++) {
                        fls_store_key(st, topic, p, "meta", NULL, key, sizeof(key));
                        if (fls_store_hgetall(st, key, &h, errstr, sizeof(errstr)))
                                goto out;
                        wm[p] = fls_hash_int(h, "watermark", 0);
                        if (wm[p] > watermark)
                                watermark = wm[p];
                        fls_store_key(st, topic, p, ent, NULL, key, sizeof(key));
                        if (fls_store_hgetall(st, key, &h, errstr, sizeof(errstr)))
                                goto out;
                        for (size_t f = 0; f < h->n; f++) {
                                size_t j;
                                char *end;
                                double v = strtod(h->values[f], &end);
                                for (j = 0; j < n && strcmp(names[j], h->fields[f]); j++)
                                        ;
                                if (j == n) {
                                        if (n == cap) {
                                                cap = cap ? cap * 2 : 32;
                                                names =
                                                    realloc(names, cap * sizeof(*names));
                                                vals = realloc(vals, cap * sizeof(*vals));
                                                texts =
                                                    realloc(texts, cap * sizeof(*texts));
                                        }
                                        names[n] = strdup(h->fields[f]);
                                        texts[n] = strdup(h->values[f]);
                                        vals[n++] = 0;
                                }
                                /* Counters add up over partitions; text keeps the last.
                                 */
                                if (*h->values[f] && !*end &&
                                    strncmp(h->fields[f], "ts", 2) &&
                                    strcmp(h->fields[f], "last_ts") &&
                                    strcmp(h->fields[f], "rank"))
                                        vals[j] += v;
                                else {
                                        free(texts[j]);
                                        texts[j] = strdup(h->values[f]);
                                        vals[j] = NAN;
                                }
                        }
                }
                printf(",\"watermark\":%" PRId64 ",\"lifetime\":{", watermark);
                for (size_t j = 0; j < n; j++) {
                        printf("%s", j ? "," : "");
                        json_str(names[j]);
                        putchar(':');
                        if (isnan(vals[j]))
                                json_val(texts[j]);
                        else
                                printf("%.15g", vals[j]);
                        free(names[j]);
                        free(texts[j]);
                }
                free(names);
                free(vals);
                free(texts);
                printf("}");

                /* Windows: each partition's ring, ending at that partition's
                 * watermark. */
                printf(",\"windows\":{");
                for (size_t w = 0; w < nw; w++) {
                        const struct window *win = &k->windows[w];
                        const fls_family_t *fam = &k->app->families[win->fam];
                        for (int feat = 0; fam->features[feat]; feat++) {
                                int64_t sum = 0;
                                for (int p = lo; p < hi; p++) {
                                        fls_store_key(st, topic, p, ent, fam->name, key,
                                                      sizeof(key));
                                        if (fls_store_hgetall(st, key, &h, errstr,
                                                              sizeof(errstr)))
                                                goto out;
                                        sum += fls_ring_sum(st, h, win->fam, feat, wm[p],
                                                            win->ms);
                                }
                                printf("%s\"%s_%s\":%" PRId64, first ? "" : ",",
                                       fam->features[feat], win->suffix, sum);
                                first = 0;
                        }
                }
                printf("}}\n");
        }
        rc = 0;
out:
        if (rc)
                fprintf(stderr, "flashstream features: %s\n", errstr);
        free(sums);
        free(wm);
        fls_store_destroy(st);
        return rc;
}
