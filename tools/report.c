/*
 * report: see report.h. Three reads of whole topics to their current end
 * (fls_topic_read): the input (count and distinct keys), the dead letters (count by
 * the runner's fls.error.class header) and the decisions (decoded with the registry
 * schema, counted by kind, reason, urgency and entity). Memory grows with the
 * distinct keys; nothing here is on a consumer's path.
 */
#include "report.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "import.h"
#include "judge_clickstream.h"
#include "producer.h"
#include "store.h"
#include "topic.h"

/* ---- a set of strings (distinct keys), with a value per member ------------------ */

typedef struct {
        char **keys;
        int64_t *vals;
        size_t cap, n;
} strset_t;

static uint64_t fnv(const char *s, size_t len)
{
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < len; i++)
                h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
        return h;
}

/* The slot of s (added when absent); -1 when out of memory. */
static long set_slot(strset_t *st, const char *s, size_t len)
{
        size_t i;
        if (2 * (st->n + 1) > st->cap) {
                size_t cap = st->cap ? st->cap * 2 : 1024;
                char **nk = calloc(cap, sizeof(*nk));
                int64_t *nv = calloc(cap, sizeof(*nv));
                if (!nk || !nv) {
                        free(nk);
                        free(nv);
                        return -1;
                }
                for (size_t k = 0; k < st->cap; k++) {
                        if (!st->keys[k])
                                continue;
                        i = fnv(st->keys[k], strlen(st->keys[k])) % cap;
                        while (nk[i])
                                i = (i + 1) % cap;
                        nk[i] = st->keys[k];
                        nv[i] = st->vals[k];
                }
                free(st->keys);
                free(st->vals);
                st->keys = nk;
                st->vals = nv;
                st->cap = cap;
        }
        for (i = fnv(s, len) % st->cap; st->keys[i]; i = (i + 1) % st->cap)
                if (strlen(st->keys[i]) == len && memcmp(st->keys[i], s, len) == 0)
                        return (long)i;
        if (!(st->keys[i] = malloc(len + 1)))
                return -1;
        memcpy(st->keys[i], s, len);
        st->keys[i][len] = '\0';
        st->vals[i] = 0;
        st->n++;
        return (long)i;
}

static void set_free(strset_t *st)
{
        for (size_t i = 0; i < st->cap; i++)
                free(st->keys[i]);
        free(st->keys);
        free(st->vals);
        memset(st, 0, sizeof(*st));
}

/* Members in a stable order (by name) for printing. */
static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_counts(const char *title, const strset_t *st)
{
        char **names = malloc((st->n + 1) * sizeof(*names));
        size_t n = 0;
        if (!names)
                return;
        for (size_t i = 0; i < st->cap; i++)
                if (st->keys[i])
                        names[n++] = st->keys[i];
        qsort(names, n, sizeof(*names), cmp_str);
        for (size_t k = 0; k < n; k++) {
                long s = -1;
                for (size_t i = 0; i < st->cap && s < 0; i++)
                        if (st->keys[i] == names[k])
                                s = (long)i;
                printf("  %-10s %-34s %8" PRId64 "\n", title, names[k], st->vals[s]);
        }
        free(names);
}

/* ---- reads ---------------------------------------------------------------------- */

typedef struct {
        long msgs;
        strset_t keys;
} input_t;

static int on_input(void *opaque, const rd_kafka_message_t *m)
{
        input_t *in = opaque;
        in->msgs++;
        return set_slot(&in->keys, m->key ? m->key : "", m->key ? m->key_len : 0) < 0 ? -2
                                                                                      : 0;
}

static int on_dlq(void *opaque, const rd_kafka_message_t *m)
{
        strset_t *classes = opaque;
        rd_kafka_headers_t *h = NULL;
        const void *v = NULL;
        size_t len = 0;
        long s;
        if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            rd_kafka_header_get_last(h, "fls.error.class", &v, &len) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                v = "unknown";
                len = 7;
        }
        s = set_slot(classes, v, len);
        if (s < 0)
                return -2;
        classes->vals[s]++;
        return 0;
}

typedef struct {
        fls_codec_t *codec;
        int clickstream;
        int i_user, i_kind, i_value, i_reason, i_ts, i_sku, i_wh, i_urg, i_over;
        long n, bad, kinds[4];
        double spent;
        int64_t first_ts, last_ts;
        strset_t reasons, users, urgency, skus, whs, pairs;
} out_t;

static const char *const action_kinds[] = {"COUPON", "REMINDER", "RECOMMENDATION"};
static const char *const signal_kinds[] = {"RESTOCK", "OVERSTOCK", "RESOLVED"};
static const char *const urgencies[] = {"LOW", "MEDIUM", "HIGH", "CRITICAL"};

static int bump(strset_t *st, const char *s, size_t len, int64_t by)
{
        long k = set_slot(st, s, len);
        if (k < 0)
                return -1;
        st->vals[k] += by;
        return 0;
}

static int on_output(void *opaque, const rd_kafka_message_t *m)
{
        out_t *o = opaque;
        avro_value_t *v;
        char detail[256], label[96];
        size_t len, wl;
        const char *s, *w;
        int kind;
        int64_t ts;

        if (fls_codec_decode(o->codec, m->payload, m->len, &v, detail, sizeof(detail))) {
                o->bad++;
                return 0;
        }
        o->n++;
        kind = fls_avro_enum(v, o->i_kind);
        if (kind >= 0 && kind < 3)
                o->kinds[kind]++;
        s = fls_avro_str(v, o->i_reason, &len);
        snprintf(label, sizeof(label), "%s/%.*s",
                 kind >= 0 && kind < 3
                     ? (o->clickstream ? action_kinds : signal_kinds)[kind]
                     : "?",
                 (int)len, s);
        if (bump(&o->reasons, label, strlen(label), 1))
                return -2;
        ts = fls_avro_long(v, o->i_ts);
        if (o->first_ts < 0 || ts < o->first_ts)
                o->first_ts = ts;
        if (ts > o->last_ts)
                o->last_ts = ts;
        if (o->clickstream) {
                s = fls_avro_str(v, o->i_user, &len);
                o->spent += fls_avro_double(v, o->i_value);
                return bump(&o->users, s, len, 1) ? -2 : 0;
        }
        {
                int u = fls_avro_enum(v, o->i_urg);
                int64_t over = fls_avro_long(v, o->i_over);
                long k;
                char pair[512];
                if (kind == 0 && u >= 0 && u < 4 &&
                    bump(&o->urgency, urgencies[u], strlen(urgencies[u]), 1))
                        return -2;
                s = fls_avro_str(v, o->i_sku, &len);
                w = fls_avro_str(v, o->i_wh, &wl);
                if (bump(&o->skus, s, len, 1) || bump(&o->whs, w, wl, 1))
                        return -2;
                snprintf(pair, sizeof(pair), "%.*s:%.*s", (int)len, s, (int)wl, w);
                /* oversold is a lifetime counter: keep the pair's largest. */
                if ((k = set_slot(&o->pairs, pair, strlen(pair))) < 0)
                        return -2;
                if (over > o->pairs.vals[k])
                        o->pairs.vals[k] = over;
        }
        return 0;
}

/* The orders consumer's exact state of every input key (sw:<sku>:<warehouse>, on the
 * key's murmur2 partition): lifetime oversold units and stock left. -1 on Redis
 * errors. */
struct stock_totals {
        long oversold_pairs, empty_pairs;
        int64_t oversold_units, stock_units;
};

static int stock_totals(fls_conf_t *conf, const char *topic, const strset_t *keys,
                        struct stock_totals *t)
{
        char err[256], key[700], ent[600];
        int nparts = (int)fls_conf_int(conf, "topic.partitions");
        fls_store_t *st = fls_store_new(
            fls_conf_str(conf, "redis.host"), (int)fls_conf_int(conf, "redis.port"),
            (int)fls_conf_int(conf, "redis.timeout_ms"),
            fls_conf_str(conf, "redis.prefix"), NULL, 0, err, sizeof(err));
        int rc = 0;
        if (!st) {
                fprintf(stderr, "report: redis: %s\n", err);
                return -1;
        }
        for (size_t i = 0; i < keys->cap && rc == 0; i++) {
                const fls_hash_t *h;
                const char *k = keys->keys[i];
                int64_t over, stock;
                if (!k)
                        continue;
                snprintf(ent, sizeof(ent), "sw:%s", k);
                fls_store_key(st, topic, fls_producer_partition(k, strlen(k), nparts),
                              ent, NULL, key, sizeof(key));
                if (fls_store_hgetall(st, key, &h, err, sizeof(err)) < 0) {
                        fprintf(stderr, "report: redis: %s\n", err);
                        rc = -1;
                        break;
                }
                over = fls_hash_int(h, "oversold", 0);
                stock = fls_hash_int(h, "stock", 0);
                t->oversold_pairs += over > 0;
                t->oversold_units += over;
                t->empty_pairs += stock <= 0;
                t->stock_units += stock;
        }
        fls_store_destroy(st);
        return rc;
}

int fls_report(fls_conf_t *conf, int argc, char **argv)
{
        input_t in = {0};
        strset_t dlq = {0};
        out_t o = {0};
        const char *in_topic, *out_topic, *subject;
        char err[512], dlq_topic[300];
        long dead = 0;
        int rc = 1;

        if (argc != 2 ||
            (strcmp(argv[1], "clickstream") != 0 && strcmp(argv[1], "orders") != 0)) {
                fprintf(stderr, "usage: flashstream report clickstream|orders\n");
                return 2;
        }
        o.clickstream = strcmp(argv[1], "clickstream") == 0;
        in_topic =
            fls_conf_str(conf, o.clickstream ? "topic.clickstream" : "topic.orders");
        out_topic = fls_conf_str(conf, o.clickstream ? "topic.marketing_actions"
                                                     : "topic.restock_signals");
        subject = o.clickstream ? "marketing-actions-value" : "restock-signals-value";
        snprintf(dlq_topic, sizeof(dlq_topic), "%s%s", in_topic,
                 fls_conf_str(conf, "topic.dlq_suffix"));
        o.first_ts = -1;
        o.codec = fls_codec_new(fls_conf_str(conf, "schema.dir"), subject, 0, 1 << 20,
                                err, sizeof(err));
        if (!o.codec) {
                fprintf(stderr, "report: %s\n", err);
                return 1;
        }
        o.i_kind = fls_codec_field(o.codec, "kind");
        o.i_reason = fls_codec_field(o.codec, "reason");
        o.i_ts = fls_codec_field(o.codec, "event_ts");
        o.i_user = fls_codec_field(o.codec, "user_id");
        o.i_value = fls_codec_field(o.codec, "coupon_value");
        o.i_sku = fls_codec_field(o.codec, "sku");
        o.i_wh = fls_codec_field(o.codec, "warehouse_id");
        o.i_urg = fls_codec_field(o.codec, "urgency");
        o.i_over = fls_codec_field(o.codec, "oversold");

        if (fls_topic_read(conf, in_topic, on_input, &in, err, sizeof(err)) ||
            fls_topic_read(conf, dlq_topic, on_dlq, &dlq, err, sizeof(err)) ||
            fls_topic_read(conf, out_topic, on_output, &o, err, sizeof(err))) {
                fprintf(stderr, "report %s: %s\n", argv[1], err);
                goto done;
        }
        for (size_t i = 0; i < dlq.cap; i++)
                dead += dlq.keys[i] ? (long)dlq.vals[i] : 0;

        printf("report %s: events_in=%ld distinct_keys=%zu dead_letters=%ld "
               "decisions=%ld undecodable=%ld\n",
               argv[1], in.msgs, in.keys.n, dead, o.n, o.bad);
        print_counts("dlq", &dlq);
        print_counts("decision", &o.reasons);
        if (o.clickstream) {
                double budget = fls_conf_dbl(conf, "clickstream.coupon_budget");
                double span = (double)(o.last_ts - o.first_ts) / 1000.0;
                double aps = span > 0 ? (double)o.n / span : (double)o.n;
                int nparts = (int)fls_conf_int(conf, "topic.partitions");
                long capped = fls_judge_clickstream_capped_users(conf, in_topic, nparts);
                double share =
                    in.keys.n && capped >= 0 ? (double)capped / (double)in.keys.n : 0;
                printf("  users reached %zu of %zu; coupons %ld, spent %.2f of %.2f "
                       "(%.1f%%); users capped %ld (%.2f%% of users); %.3f actions per "
                       "second of event time\n",
                       o.users.n, in.keys.n, o.kinds[0], o.spent, budget,
                       budget > 0 ? 100 * o.spent / budget : 0, capped, 100 * share, aps);
                printf("{\"report\":\"clickstream\",\"events_in\":%ld,\"users\":%zu,"
                       "\"dead_letters\":%ld,\"actions\":%ld,\"coupons\":%ld,"
                       "\"reminders\":%ld,\"recommendations\":%ld,\"users_reached\":%zu,"
                       "\"budget\":%.2f,\"spent\":%.2f,\"users_capped\":%ld,"
                       "\"users_capped_share\":%.4f,\"actions_per_event_s\":%.4f}\n",
                       in.msgs, in.keys.n, dead, o.n, o.kinds[0], o.kinds[1], o.kinds[2],
                       o.users.n, budget, o.spent, capped, share, aps);
        } else {
                long over_pairs = 0;
                int64_t over_units = 0;
                struct stock_totals t = {0};
                if (stock_totals(conf, in_topic, &in.keys, &t) == -1)
                        goto done;
                for (size_t i = 0; i < o.pairs.cap; i++)
                        if (o.pairs.keys[i] && o.pairs.vals[i] > 0) {
                                over_pairs++;
                                over_units += o.pairs.vals[i];
                        }
                print_counts("urgency", &o.urgency);
                printf("  signalled: %zu sku:warehouse pairs of %zu, %zu SKUs, %zu "
                       "warehouses; oversold in signals: %ld pairs, %" PRId64 " units\n",
                       o.pairs.n, in.keys.n, o.skus.n, o.whs.n, over_pairs, over_units);
                printf("  state in Redis: oversold %" PRId64 " units on %ld pairs; %ld "
                       "pairs out of stock at the end, %" PRId64 " units left\n",
                       t.oversold_units, t.oversold_pairs, t.empty_pairs, t.stock_units);
                printf("{\"report\":\"orders\",\"events_in\":%ld,\"pairs\":%zu,"
                       "\"dead_letters\":%ld,\"signals\":%ld,\"restock\":%ld,"
                       "\"overstock\":%ld,\"resolved\":%ld,\"pairs_signalled\":%zu,"
                       "\"skus_signalled\":%zu,\"warehouses_signalled\":%zu,"
                       "\"oversold_units\":%" PRId64 ",\"oversold_pairs\":%ld,"
                       "\"out_of_stock_pairs\":%ld,\"stock_left\":%" PRId64 "}\n",
                       in.msgs, in.keys.n, dead, o.n, o.kinds[0], o.kinds[1], o.kinds[2],
                       o.pairs.n, o.skus.n, o.whs.n, t.oversold_units, t.oversold_pairs,
                       t.empty_pairs, t.stock_units);
        }
        rc = 0;
done:
        set_free(&in.keys);
        set_free(&dlq);
        set_free(&o.reasons);
        set_free(&o.users);
        set_free(&o.urgency);
        set_free(&o.skus);
        set_free(&o.whs);
        set_free(&o.pairs);
        fls_codec_destroy(o.codec);
        return rc;
}
