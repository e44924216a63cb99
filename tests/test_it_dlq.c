/*
 * Integration suite of the dead-letter path: a real `flashstream broker`, a real
 * redis-server and a real `flashstream consume clickstream` process (testutil.h).
 *
 * Why: a consumer that stops, crashes or silently drops on one bad message loses a
 * flash sale. A corpus of every kind of bad input (framing, schema ids, corrupt Avro,
 * enums, UTF-8, domain values, keys, time, size) is produced to partition 0 of
 * clickstream, interleaved with good ClickEvents, all with known offsets. Then:
 * exactly one record per bad message on clickstream.dlq, in order, with the expected
 * class, a detail, the source coordinates and the original key, value and headers;
 * the good events applied (lifetime counts through `flashstream features user`);
 * nothing of the bad events applied; the consumer's /metrics counting each bad
 * message once under its class; and a clean exit on SIGTERM.
 */
#include <criterion/criterion.h>

#include <librdkafka/rdkafka.h>

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "testutil.h"

#define NMAX 64

static fls_tenv_t env;
static pid_t consumer = -1;

static void it_init(void)
{
        cr_assert_eq(fls_t_init(&env), 0, "mkdtemp");
}

static void it_fini(void)
{
        if (consumer > 0) {
                kill(consumer, SIGKILL);
                fls_t_wait(consumer, 5000);
                consumer = -1;
        }
        fls_t_fini(&env);
}

TestSuite(it_dlq, .init = it_init, .fini = it_fini, .timeout = 180);

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One message of the corpus. */
struct msg {
        const char *what;
        const char *bad; /* expected class name, NULL for a good event */
        uint8_t *value;  /* NULL: null value */
        size_t len;
        char *key; /* NULL: null key */
        size_t keylen;
        int64_t offset; /* from the delivery report */
        rd_kafka_resp_err_t err;
};

static struct msg corpus[NMAX];
static int ncorpus;
static fls_codec_t *codec;
static int f_user, f_type, f_sku, f_price, f_qty, f_ts;

struct click {
        const char *user;
        int type; /* VIEW CLICK SEARCH ADD_CART REMOVE_CART PURCHASE */
        const char *sku;
        double price;
        int qty;
        int64_t ts;
};

/* Encodes a ClickEvent with the codec; a malloc'ed copy. */
static uint8_t *encode_click(const struct click *c, size_t *lenp)
{
        avro_value_t *o = fls_codec_out(codec);
        const void *buf;
        char err[256], evid[64];
        uint8_t *copy;
        static int seq;

        snprintf(evid, sizeof(evid), "ev-%d", ++seq);
        cr_assert_eq(
            fls_avro_set_str(o, fls_codec_field(codec, "event_id"), evid, strlen(evid)),
            0);
        cr_assert_eq(fls_avro_set_str(o, f_user, c->user, strlen(c->user)), 0);
        cr_assert_eq(fls_avro_set_str(o, fls_codec_field(codec, "session_id"), "s-1", 3),
                     0);
        cr_assert_eq(fls_avro_set_enum(o, f_type, c->type), 0);
        cr_assert_eq(fls_avro_set_str(o, f_sku, c->sku, strlen(c->sku)), 0);
        cr_assert_eq(fls_avro_set_str(o, fls_codec_field(codec, "category"), "shoes", 5),
                     0);
        cr_assert_eq(fls_avro_set_double(o, f_price, c->price), 0);
        cr_assert_eq(fls_avro_set_int(o, f_qty, c->qty), 0);
        cr_assert_eq(fls_avro_set_int(o, fls_codec_field(codec, "dwell_ms"), 800), 0);
        cr_assert_eq(fls_avro_set_str(o, fls_codec_field(codec, "campaign_id"), "", 0),
                     0);
        cr_assert_eq(fls_avro_set_long(o, f_ts, c->ts), 0);
        cr_assert_eq(fls_codec_encode(codec, &buf, lenp, err, sizeof(err)), 0, "%s", err);
        copy = malloc(*lenp + 1);
        cr_assert_not_null(copy);
        memcpy(copy, buf, *lenp);
        return copy;
}

static struct msg *add(const char *what, const char *bad, uint8_t *value, size_t len,
                       const char *key)
{
        struct msg *m;

        cr_assert_lt(ncorpus, NMAX);
        m = &corpus[ncorpus++];
        m->what = what;
        m->bad = bad;
        m->value = value;
        m->len = len;
        m->key = key ? strdup(key) : NULL;
        m->keylen = key ? strlen(key) : 0;
        m->offset = -1;
        m->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        return m;
}

static void add_click(const char *what, const char *bad, const struct click *c,
                      const char *key)
{
        size_t len;
        uint8_t *v = encode_click(c, &len);
        add(what, bad, v, len, key);
}

static uint8_t *dup_bytes(const void *p, size_t len)
{
        uint8_t *b = malloc(len ? len : 1);
        cr_assert_not_null(b);
        memcpy(b, p, len);
        return b;
}

/* Index of the ClickType enum byte in a codec-encoded event: after the header and
 * three short strings. */
static size_t type_at(const uint8_t *v)
{
        size_t at = 5;
        for (int s = 0; s < 3; s++) {
                cr_assert_lt(v[at], 128, "short strings only");
                at += 1 + v[at] / 2;
        }
        return at;
}

static void build_corpus(void)
{
        int64_t now = wall_ms(), t = now - 120000;
        const struct click good_view = {"alice", 0, "sku-1", 10.0, 0, 0};
        struct click c;
        uint8_t *v;
        size_t len;
        char err[256];

        codec = fls_codec_new(FLS_SCHEMA_DIR, "clickstream-value", 0, 1 << 20, err,
                              sizeof(err));
        cr_assert_not_null(codec, "%s", err);
        f_user = fls_codec_field(codec, "user_id");
        f_type = fls_codec_field(codec, "type");
        f_sku = fls_codec_field(codec, "sku");
        f_price = fls_codec_field(codec, "price");
        f_qty = fls_codec_field(codec, "quantity");
        f_ts = fls_codec_field(codec, "ts");

#define GOOD(u, ty, s, q)                                                                \
        do {                                                                             \
                c = (struct click){u, ty, s, 10.0, q, t += 100};                         \
                add_click("good " u, NULL, &c, u);                                       \
        } while (0)
#define BADC(what, cls, key, ...)                                                        \
        do {                                                                             \
                c = good_view;                                                           \
                c.user = "mallory";                                                      \
                c.ts = (t += 100);                                                       \
                __VA_ARGS__;                                                             \
                add_click(what, cls, &c, key);                                           \
        } while (0)

        GOOD("alice", 0, "sku-1", 0);
        add("empty value", "empty", dup_bytes("", 0), 0, "mallory");
        GOOD("bob", 2, "", 0); /* SEARCH: an empty sku is fine */
        add("null value", "empty", NULL, 0, "mallory");
        BADC("null key", "key", NULL, (void)0);
        GOOD("alice", 0, "sku-2", 0);
        BADC("key is not the user_id", "key", "mallory2", (void)0);
        for (size_t n = 1; n <= 4; n++)
                add("short message", "framing", dup_bytes("\0\0\0\0", n), n, "mallory");
        GOOD("alice", 3, "sku-1", 2);

        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        v[0] = 1;
        add("magic byte 1", "framing", v, len, "mallory");
        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        v[4] = 99;
        add("unknown schema id", "schema_id", v, len, "mallory");
        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        v[4] = 2;
        add("schema id of orders", "schema_id", v, len, "mallory");
        GOOD("bob", 1, "sku-3", 0);
        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        add("truncated record", "avro", v, len - 3, "mallory");
        {
                /* event_id claims 2^33 bytes (8 GiB). */
                static const uint8_t huge[] = {0,    0,    0,    0,   1,   0x80, 0x80,
                                               0x80, 0x80, 0x40, 'a', 'b', 'c'};
                add("length claiming gigabytes", "avro", dup_bytes(huge, sizeof(huge)),
                    sizeof(huge), "mallory");
        }
        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        v[type_at(v)] = 2 * 6; /* index 6 of 6 symbols */
        add("enum out of range", "enum", v, len, "mallory");
        GOOD("alice", 5, "sku-1", 2);
        v = encode_click(&(struct click){"mall\xc3ry", 0, "sku-1", 1.0, 0, t += 100},
                         &len);
        add("invalid UTF-8 in user_id", "utf8", v, len, "mall\xc3ry");
        BADC("NaN price", "value", "mallory", c.price = NAN);
        BADC("negative price", "value", "mallory", c.price = -1.0);
        BADC("negative quantity", "value", "mallory", c.type = 3; c.qty = -2);
        GOOD("carol", 0, "sku-9", 0);
        BADC("timestamp in 1970", "value", "mallory", c.ts = 86400000);
        BADC("timestamp a day ahead", "value", "mallory", c.ts = now + 86400000);
        {
                size_t big = 70 * 1000;
                uint8_t *b = calloc(1, big);
                cr_assert_not_null(b);
                b[4] = 1;
                b[5] = 0x80 | ((2 * (big - 8)) & 0x7f);
                b[6] = 0x80 | (((2 * (big - 8)) >> 7) & 0x7f);
                b[7] = (uint8_t)((2 * (big - 8)) >> 14);
                memset(b + 8, 'x', big - 8);
                add("70 kB message", "oversize", b, big, "mallory");
        }
        v = encode_click(&(struct click){"mallory", 0, "sku-1", 1.0, 0, t += 100}, &len);
        v = realloc(v, len + 4);
        memcpy(v + len, "junk", 4);
        add("trailing garbage", "avro", v, len + 4, "mallory");
        GOOD("bob", 1, "sku-3", 0);
        BADC("empty user_id", "value", "mallory", c.user = "");
        BADC("empty sku on a VIEW", "value", "mallory", c.sku = "");
        BADC("negative quantity on a PURCHASE", "value", "mallory", c.type = 5;
             c.qty = -1);
        GOOD("alice", 0, "sku-3", 0);
#undef GOOD
#undef BADC
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct msg *x = m->_private;
        (void)rk, (void)opaque;
        x->err = m->err;
        x->offset = m->offset;
}

static rd_kafka_conf_t *kconf(void)
{
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        char err[256];
        const char *kv[][2] = {
            {"bootstrap.servers", env.bootstrap},
            {"reconnect.backoff.max.ms", "500"},
            {"fetch.wait.max.ms", "10"},
            {"log_level", "3"},
        };

        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
                cr_assert_eq(rd_kafka_conf_set(kc, kv[i][0], kv[i][1], err, sizeof(err)),
                             RD_KAFKA_CONF_OK, "%s", err);
        return kc;
}

static void produce_corpus(void)
{
        rd_kafka_conf_t *kc = kconf();
        char err[256];
        rd_kafka_t *rk;

        cr_assert_eq(
            rd_kafka_conf_set(kc, "enable.idempotence", "true", err, sizeof(err)),
            RD_KAFKA_CONF_OK);
        cr_assert_eq(rd_kafka_conf_set(kc, "linger.ms", "0", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
        rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        for (int i = 0; i < ncorpus; i++) {
                struct msg *m = &corpus[i];
                rd_kafka_headers_t *h = rd_kafka_headers_new(1);
                char seq[16];
                rd_kafka_resp_err_t e;
                snprintf(seq, sizeof(seq), "%d", i);
                rd_kafka_header_add(h, "x-test-seq", -1, seq, -1);
                e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC("clickstream"), RD_KAFKA_V_PARTITION(0),
                    RD_KAFKA_V_KEY(m->key, m->keylen), RD_KAFKA_V_VALUE(m->value, m->len),
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
                if (e)
                        rd_kafka_headers_destroy(h);
                cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce %s: %s", m->what,
                             rd_kafka_err2str(e));
        }
        cr_assert_eq(rd_kafka_flush(rk, 15000), RD_KAFKA_RESP_ERR_NO_ERROR,
                     "corpus not delivered in 15 s");
        rd_kafka_destroy(rk);
        for (int i = 0; i < ncorpus; i++) {
                cr_assert_eq(corpus[i].err, RD_KAFKA_RESP_ERR_NO_ERROR,
                             "delivery of %s: %s", corpus[i].what,
                             rd_kafka_err2str(corpus[i].err));
                if (i)
                        cr_assert_gt(corpus[i].offset, corpus[i - 1].offset,
                                     "offsets out of order at %s", corpus[i].what);
        }
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t size)
{
        const void *val;
        size_t len;

        if (!h ||
            rd_kafka_header_get_last(h, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        snprintf(buf, size, "%.*s", (int)len, val ? (const char *)val : "");
        return buf;
}

/* Lifetime field of `flashstream features user ID`; -1 when absent. */
static long lifetime(const char *json, const char *field)
{
        char pat[64];
        const char *lt = strstr(json, "\"lifetime\":{"), *p;

        cr_assert_not_null(lt, "no lifetime object in %s", json);
        snprintf(pat, sizeof(pat), "\"%s\":", field);
        p = strstr(lt, pat);
        if (!p || p > strstr(lt, "}"))
                return -1;
        return strtol(p + strlen(pat), NULL, 10);
}

static char *features(const char *user)
{
        const char *args[] = {"features", "user", user, NULL};
        char *out = NULL;
        int rc = fls_t_run(&env, &out, args);

        cr_assert_eq(rc, 0, "features user %s exited %d", user, rc);
        cr_assert_not_null(out);
        return out;
}

Test(it_dlq, every_bad_message_is_dead_lettered_once)
{
        char log[400], buf[512];
        const char *args[] = {"consume", "clickstream", "--batch.max_ms=20",
                              "--kafka.session.timeout.ms=6000", NULL};
        int nbad = 0, got = 0, rc;
        int64_t last, deadline, emitted = -1, lo = -1, hi = -1;
        rd_kafka_t *rk;
        rd_kafka_conf_t *kc;
        rd_kafka_topic_partition_list_t *parts;
        char err[256];

        build_corpus();
        for (int i = 0; i < ncorpus; i++)
                nbad += corpus[i].bad != NULL;
        cr_assert_geq(nbad, 20, "corpus has %d bad messages", nbad);

        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start");
        cr_assert_eq(fls_t_broker_start(&env, 1), 0, "broker did not start");
        snprintf(log, sizeof(log), "%s/consumer.log", env.dir);
        consumer = fls_t_spawn(&env, log, args);
        cr_assert_gt(consumer, 0);
        produce_corpus();
        last = corpus[ncorpus - 1].offset;

        /* Consumed and flushed up to the last offset. */
        deadline = fls_t_mono_ms() + 30000;
        while (fls_t_mono_ms() < deadline) {
                char *r =
                    fls_t_redis_cli(&env, "HGET \"fs:{clickstream.0}:meta\" emitted");
                int have = r[0] >= '0' && r[0] <= '9';
                emitted = have ? strtoll(r, NULL, 10) : -1;
                free(r);
                if (emitted >= last)
                        break;
                usleep(100 * 1000);
        }
        cr_assert_geq(emitted, last,
                      "consumer emitted up to %" PRId64 " of %" PRId64
                      " in 30 s (log %s)",
                      emitted, last, log);

        /* Exactly nbad records on the dead-letter topic... */
        kc = kconf();
        cr_assert_eq(
            rd_kafka_conf_set(kc, "group.id", "fls-it-dlq-reader", err, sizeof(err)),
            RD_KAFKA_CONF_OK);
        cr_assert_eq(
            rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err)),
            RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        rd_kafka_poll_set_consumer(rk);
        cr_assert_eq(
            rd_kafka_query_watermark_offsets(rk, "clickstream.dlq", 0, &lo, &hi, 10000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        cr_assert_eq(hi - lo, nbad, "%" PRId64 " dead letters for %d bad messages",
                     hi - lo, nbad);
        parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, "clickstream.dlq", 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        cr_assert_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(parts);

        /* ... one per bad message, in order. */
        deadline = fls_t_mono_ms() + 15000;
        for (int i = 0; i < ncorpus && fls_t_mono_ms() < deadline; i++) {
                struct msg *x = &corpus[i];
                rd_kafka_message_t *m = NULL;
                rd_kafka_headers_t *h = NULL;
                char seq[16];

                if (!x->bad)
                        continue;
                while (!m && fls_t_mono_ms() < deadline) {
                        m = rd_kafka_consumer_poll(rk, 100);
                        if (m && m->err) {
                                rd_kafka_message_destroy(m);
                                m = NULL;
                        }
                }
                cr_assert_not_null(m, "no dead letter for %s (#%d)", x->what, got);
                got++;
                rd_kafka_message_headers(m, &h);
                cr_assert_not_null(header(h, "fls.error.class", buf, sizeof(buf)),
                                   "%s: no class header", x->what);
                cr_assert_str_eq(buf, x->bad, "%s: class", x->what);
                cr_assert_not_null(header(h, "fls.error.detail", buf, sizeof(buf)),
                                   "%s: no detail header", x->what);
                cr_assert(buf[0] != '\0', "%s: empty detail", x->what);
                cr_assert_not_null(header(h, "fls.source.topic", buf, sizeof(buf)));
                cr_assert_str_eq(buf, "clickstream", "%s: source topic", x->what);
                cr_assert_not_null(header(h, "fls.source.partition", buf, sizeof(buf)));
                cr_assert_str_eq(buf, "0", "%s: source partition", x->what);
                cr_assert_not_null(header(h, "fls.source.offset", buf, sizeof(buf)));
                cr_assert_eq(strtoll(buf, NULL, 10), x->offset,
                             "%s: source offset %s, sent at %" PRId64, x->what, buf,
                             x->offset);
                snprintf(seq, sizeof(seq), "%d", i);
                cr_assert_not_null(header(h, "x-test-seq", buf, sizeof(buf)),
                                   "%s: original header dropped", x->what);
                cr_assert_str_eq(buf, seq, "%s: original header", x->what);
                cr_assert_eq(m->len, x->len, "%s: value of %zu bytes, sent %zu", x->what,
                             m->len, x->len);
                cr_assert_eq(m->payload == NULL, x->value == NULL, "%s: null value kept",
                             x->what);
                if (x->len)
                        cr_assert(memcmp(m->payload, x->value, x->len) == 0,
                                  "%s: value bytes differ", x->what);
                cr_assert_eq(m->key_len, x->keylen, "%s: key length", x->what);
                cr_assert_eq(m->key == NULL, x->key == NULL, "%s: null key kept",
                             x->what);
                if (x->keylen)
                        cr_assert(memcmp(m->key, x->key, x->keylen) == 0,
                                  "%s: key differs", x->what);
                rd_kafka_message_destroy(m);
        }
        cr_assert_eq(got, nbad, "%d dead letters read, expected %d", got, nbad);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);

        /* Good events applied: alice VIEW x3, ADD_CART, PURCHASE; bob SEARCH, CLICK x2;
         * carol VIEW. Nothing of mallory's. */
        {
                char *a = features("alice"), *b = features("bob"), *c = features("carol"),
                     *m = features("mallory");
                cr_assert_eq(lifetime(a, "n_view"), 3, "alice: %s", a);
                cr_assert_eq(lifetime(a, "n_cart_add"), 1, "alice: %s", a);
                cr_assert_eq(lifetime(a, "n_purchase"), 1, "alice: %s", a);
                cr_assert_eq(lifetime(a, "n_click"), -1, "alice: %s", a);
                cr_assert_eq(lifetime(b, "n_search"), 1, "bob: %s", b);
                cr_assert_eq(lifetime(b, "n_click"), 2, "bob: %s", b);
                cr_assert_eq(lifetime(b, "n_view"), -1, "bob: %s", b);
                cr_assert_eq(lifetime(c, "n_view"), 1, "carol: %s", c);
                for (int k = 0; k < 4; k++) {
                        static const char *const f[] = {"n_view", "n_cart_add",
                                                        "n_purchase", "last_ts"};
                        cr_assert_eq(lifetime(m, f[k]), -1, "mallory has %s: %s", f[k],
                                     m);
                }
                free(a), free(b), free(c), free(m);
        }

        /* The consumer's /metrics tells the same story: every message in, each bad
         * one counted once under its class, and the poll histograms filled. */
        {
                int port = fls_t_metrics_port(log);
                char *text, series[256];
                double v;

                cr_assert_gt(port, 0, "no metrics port in %s", log);
                text = fls_t_http_get(port, "/metrics");
                cr_assert_not_null(text, "GET /metrics on port %d failed", port);
                v = fls_t_metric(text,
                                 "flashstream_events_in_total{topic=\"clickstream\"}");
                cr_assert_geq(v, ncorpus, "%.0f events in for %d sent", v, ncorpus);
                for (int i = 0; i < ncorpus; i++) {
                        int want = 0, seen = 0;
                        if (!corpus[i].bad)
                                continue;
                        for (int k = 0; k < ncorpus; k++) {
                                int same = corpus[k].bad &&
                                           !strcmp(corpus[k].bad, corpus[i].bad);
                                want += same;
                                seen += same && k < i;
                        }
                        if (seen)
                                continue; /* this class was checked already */
                        snprintf(series, sizeof(series),
                                 "flashstream_dead_letters_total{topic=\"clickstream\","
                                 "class=\"%s\"}",
                                 corpus[i].bad);
                        v = fls_t_metric(text, series);
                        cr_assert_eq(v, want, "%s: %.0f, %d in the corpus", series, v,
                                     want);
                }
                for (int k = 0; k < 4; k++) {
                        static const char *const h[] = {"batch", "redis", "flush",
                                                        "claims"};
                        snprintf(series, sizeof(series),
                                 "flashstream_%s_seconds_count{topic=\"clickstream\"}",
                                 h[k]);
                        v = fls_t_metric(text, series);
                        /* No coupon is claimed here: the claims series only exists. */
                        if (k < 3)
                                cr_assert_gt(v, 0, "%s: %.0f", series, v);
                        else
                                cr_assert_geq(v, 0, "%s missing", series);
                }
                free(text);
        }

        cr_assert_eq(kill(consumer, SIGTERM), 0);
        rc = fls_t_wait(consumer, 5000);
        consumer = -1;
        cr_assert_eq(rc, 0,
                     "consumer exit status %d after SIGTERM (-1: still running after "
                     "5 s; log %s)",
                     rc, log);

        for (int i = 0; i < ncorpus; i++) {
                free(corpus[i].value);
                free(corpus[i].key);
        }
        fls_codec_destroy(codec);
}
