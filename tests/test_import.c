/*
 * test_import: the dataset importers of `flashstream import` (tools/import.c), the
 * first step of real traffic (dataset -> Kafka -> the consumers). Hand-made rows in
 * tests/data/import_*.csv are converted and every field of every event is compared
 * with the value worked out by hand from IMPORT.md's mapping; bad rows are counted
 * by reason. One integration test imports a file into the real `flashstream broker`
 * and reads the topic back: every record decodes, keys and partitions (murmur2) are
 * the importer's. A last test reads the real datasets when they are present.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "data_time.h"
#include "import.h"
#include "producer.h"
#include "testutil.h"

static fls_import_opts_t opts(void)
{
        fls_import_opts_t o = {0};
        o.time_scale = 1;
        o.sale_start_s = -1;
        o.campaign = "sale-1";
        o.opening_days = 7;
        o.warehouse = "uk";
        o.cancel_delay_s = 3600;
        return o;
}

static int64_t ms(const char *text)
{
        int64_t t;
        cr_assert_eq(fls_time_parse(text, &t), 0, "%s", text);
        return t * 1000;
}

#define STR(set, r, i) fls_import_text(set, r, i)

static void click_eq(const fls_import_set_t *s, const fls_import_rec_t *r, const char *id,
                     const char *user, const char *sess, int type, const char *sku,
                     const char *cat, double price, int qty, int dwell, const char *camp,
                     int64_t ts)
{
        cr_assert_eq(r->out, FLS_IMPORT_CLICK);
        cr_assert_eq(r->nf, FLS_IC__N);
        cr_assert_str_eq(STR(s, r, FLS_IC_EVENT_ID), id);
        cr_assert_str_eq(STR(s, r, FLS_IC_USER), user, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IC_SESSION), sess, "%s", id);
        cr_assert_eq(r->f[FLS_IC_TYPE].v.l, type, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IC_SKU), sku, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IC_CATEGORY), cat, "%s", id);
        cr_assert_eq(r->f[FLS_IC_PRICE].v.d, price, "%s", id);
        cr_assert_eq(r->f[FLS_IC_QTY].v.l, qty, "%s", id);
        cr_assert_eq(r->f[FLS_IC_DWELL].v.l, dwell, "%s dwell %ld", id,
                     (long)r->f[FLS_IC_DWELL].v.l);
        cr_assert_str_eq(STR(s, r, FLS_IC_CAMPAIGN), camp, "%s", id);
        cr_assert_eq(r->f[FLS_IC_TS].v.l, ts, "%s", id);
        cr_assert_eq(r->ts, ts);
        cr_assert_str_eq(fls_arena_str(&s->text, r->key), user, "keyed by user_id");
}

static void order_eq(const fls_import_set_t *s, const fls_import_rec_t *r, const char *id,
                     int type, const char *order, const char *user, const char *sku,
                     const char *wh, int qty, double price, const char *region,
                     int64_t ts)
{
        char key[256];
        cr_assert_eq(r->out, FLS_IMPORT_ORDER);
        cr_assert_eq(r->nf, FLS_IO__N);
        cr_assert_str_eq(STR(s, r, FLS_IO_EVENT_ID), id);
        cr_assert_eq(r->f[FLS_IO_TYPE].v.l, type, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IO_ORDER), order, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IO_USER), user, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IO_SKU), sku, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IO_WH), wh, "%s", id);
        cr_assert_eq(r->f[FLS_IO_QTY].v.l, qty, "%s", id);
        cr_assert_eq(r->f[FLS_IO_PRICE].v.d, price, "%s", id);
        cr_assert_str_eq(STR(s, r, FLS_IO_REGION), region, "%s", id);
        cr_assert_eq(r->f[FLS_IO_FLASH].v.l, 0, "%s", id);
        cr_assert_eq(r->f[FLS_IO_TS].v.l, ts, "%s", id);
        snprintf(key, sizeof(key), "%s:%s", sku, wh);
        cr_assert_str_eq(fls_arena_str(&s->text, r->key), key, "keyed sku:warehouse");
}

Test(import, rees46_fields)
{
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512];
        const char *cat2 = "2053013552326770906", *cat1 = "electronics.smartphone";

        o.sale_start_s = 3600;
        cr_assert_eq(fls_import_load("rees46", FLS_TEST_DATA "/import_rees46.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(s.rows, 13);
        cr_assert_eq(s.n, 6);
        /* sorted by time; dwell = gap in the session, capped at 30 min */
        click_eq(&s, &s.recs[0], "rees46-3", "u2", "s-2", FLS_IC_VIEW, "200", cat2, 10.0,
                 0, 0, "", ms("2019-10-01 00:00:00"));
        click_eq(&s, &s.recs[1], "rees46-2", "u1", "s-1", FLS_IC_VIEW, "100", cat1, 500.5,
                 0, 0, "", ms("2019-10-01 00:00:10"));
        click_eq(&s, &s.recs[2], "rees46-4", "u1", "s-1", FLS_IC_ADD_CART, "100", cat1,
                 500.5, 1, 30000, "", ms("2019-10-01 00:00:40"));
        click_eq(&s, &s.recs[3], "rees46-5", "u1", "s-1", FLS_IC_REMOVE_CART, "100", cat1,
                 500.5, 1, 10000, "", ms("2019-10-01 00:00:50"));
        click_eq(&s, &s.recs[4], "rees46-6", "u1", "s-1", FLS_IC_PURCHASE, "100", cat1,
                 500.5, 1, 1800000, "sale-1", ms("2019-10-01 01:00:00"));
        click_eq(&s, &s.recs[5], "rees46-14", "u2", "s-2", FLS_IC_VIEW, "200", cat2, 10.0,
                 0, 1800000, "sale-1", ms("2019-10-01 02:00:00"));
        cr_assert_eq(s.sale_start_ts, ms("2019-10-01 01:00:00"), "t0 + sale_start_s");
        cr_assert_eq(fls_import_skipped(&s, "unknown event_type"), 1);
        cr_assert_eq(fls_import_skipped(&s, "missing product_id"), 1);
        cr_assert_eq(fls_import_skipped(&s, "missing user_id"), 1);
        cr_assert_eq(fls_import_skipped(&s, "bad or missing event_time"), 1);
        cr_assert_eq(fls_import_skipped(&s, "bad or missing price"), 2);
        cr_assert_eq(fls_import_skipped(&s, "missing user_session"), 1);
        {
                long total = 0;
                for (int i = 0; i < s.nreasons; i++)
                        total += s.skipped[i];
                cr_assert_eq(total + (long)s.n, s.rows, "every row converted or counted");
        }
        fls_import_set_free(&s);
}

Test(import, rees46_limit_and_time_scale)
{
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512];

        o.limit = 5;
        o.time_scale = 10;
        cr_assert_eq(fls_import_load("rees46", FLS_TEST_DATA "/import_rees46.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(s.rows, 5);
        cr_assert_eq(s.n, 5);
        /* 01:00:00 is 3600 s after the first event: 360 s after it at scale 10; the
         * dwell stays in dataset time */
        cr_assert_eq(s.recs[4].ts, ms("2019-10-01 00:06:00"));
        cr_assert_eq(s.recs[4].f[FLS_IC_TS].v.l, ms("2019-10-01 00:06:00"));
        cr_assert_eq(s.recs[4].f[FLS_IC_DWELL].v.l, 1800000);
        cr_assert_str_eq(STR(&s, &s.recs[4], FLS_IC_CAMPAIGN), "", "no sale by default");
        cr_assert_eq(s.sale_start_ts, -1);
        fls_import_set_free(&s);
}

Test(import, retail_fields)
{
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512];

        cr_assert_eq(fls_import_load("retail", FLS_TEST_DATA "/import_retail.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(s.rows, 11);
        /* 2 opening receipts + 3 placed + 2 cancellation lines */
        cr_assert_eq(s.n, 7);
        /* Opening stock at the first event's time, first: 85123A sold 6 in its first
         * 7 days (the 10 of Dec 20 are later), 22633 sold 6. */
        order_eq(&s, &s.recs[0], "opening-85123A:uk", FLS_IO_RECEIPT, "", "", "85123A",
                 "uk", 6, 0, "", ms("2010-12-01 08:26:00"));
        order_eq(&s, &s.recs[1], "opening-22633:uk", FLS_IO_RECEIPT, "", "", "22633",
                 "uk", 6, 0, "", ms("2010-12-01 08:26:00"));
        order_eq(&s, &s.recs[2], "retail-2", FLS_IO_PLACED, "536365", "17850", "85123A",
                 "uk", 6, 2.55, "United Kingdom", ms("2010-12-01 08:26:00"));
        order_eq(&s, &s.recs[3], "retail-3", FLS_IO_PLACED, "536366", "17850", "22633",
                 "uk", 6, 1.85, "United Kingdom", ms("2010-12-01 08:28:00"));
        /* matched: CANCELLED of the original invoice */
        order_eq(&s, &s.recs[4], "retail-4", FLS_IO_CANCELLED, "536365", "17850",
                 "85123A", "uk", 2, 2.55, "United Kingdom", ms("2010-12-02 09:49:00"));
        /* no CustomerID: cannot be matched, REFUNDED under its own invoice */
        order_eq(&s, &s.recs[5], "retail-5", FLS_IO_REFUNDED, "C536384", "", "22633",
                 "uk", 1, 1.85, "United Kingdom", ms("2010-12-02 10:00:00"));
        order_eq(&s, &s.recs[6], "retail-6", FLS_IO_PLACED, "536367", "12583", "85123A",
                 "uk", 10, 2.55, "France", ms("2010-12-20 10:00:00"));
        cr_assert_eq(fls_import_skipped(&s, "service line (postage, fee, manual)"), 1);
        cr_assert_eq(fls_import_skipped(&s, "negative Quantity outside a cancellation "
                                            "(stock adjustment)"),
                     1);
        cr_assert_eq(fls_import_skipped(&s, "bad or zero Quantity"), 1);
        cr_assert_eq(fls_import_skipped(&s, "bad or missing InvoiceDate"), 1);
        cr_assert_eq(fls_import_skipped(&s, "bad or negative UnitPrice"), 1);
        cr_assert_eq(fls_import_skipped(&s, "missing StockCode"), 1);
        fls_import_set_free(&s);
}

Test(import, olist_orders_fields)
{
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512];
        int64_t t1 = ms("2017-10-02 10:56:33"), t2 = ms("2017-10-01 08:00:00");

        cr_assert_eq(fls_import_load("olist-orders",
                                     FLS_TEST_DATA "/import_olist_orders.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(s.rows, 6);
        /* 2 receipts, o2's item placed and cancelled, o1's two items */
        cr_assert_eq(s.n, 6);
        order_eq(&s, &s.recs[0], "opening-p2:s2", FLS_IO_RECEIPT, "", "", "p2", "s2", 1,
                 0, "", t2);
        order_eq(&s, &s.recs[1], "opening-p1:s1", FLS_IO_RECEIPT, "", "", "p1", "s1", 2,
                 0, "", t2);
        order_eq(&s, &s.recs[2], "olist-o2-1", FLS_IO_PLACED, "o2", "cu2", "p2", "s2", 1,
                 100.0, "RJ", t2);
        order_eq(&s, &s.recs[3], "olist-o2-1-cancel", FLS_IO_CANCELLED, "o2", "cu2", "p2",
                 "s2", 1, 100.0, "RJ", t2 + 3600000);
        order_eq(&s, &s.recs[4], "olist-o1-1", FLS_IO_PLACED, "o1", "cu1", "p1", "s1", 1,
                 29.99, "SP", t1);
        order_eq(&s, &s.recs[5], "olist-o1-2", FLS_IO_PLACED, "o1", "cu1", "p1", "s1", 1,
                 29.99, "SP", t1);
        cr_assert_eq(fls_import_skipped(&s, "order_id not in the orders file"), 1);
        cr_assert_eq(fls_import_skipped(&s, "bad or missing order_purchase_timestamp"),
                     1);
        cr_assert_eq(fls_import_skipped(&s, "bad or negative price"), 1);
        fls_import_set_free(&s);
}

Test(import, missing_files_and_unknown_dataset)
{
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512];

        cr_assert_eq(fls_import_load("rees46", FLS_TEST_DATA "/no-such.csv", &o, &s, err,
                                     sizeof(err)),
                     -1);
        fls_import_set_free(&s);
        cr_assert_eq(fls_import_load("nope", FLS_TEST_DATA, &o, &s, err, sizeof(err)),
                     -1);
        cr_assert(strstr(err, "unknown dataset"));
}

Test(import, murmur2_partition)
{
        /* Kafka's UtilsTest.testMurmur2 vectors, made positive (h & 0x7fffffff): with
         * 0x7fffffff partitions the partition is that value itself. */
        cr_assert_eq(fls_producer_partition("21", 2, 0x7fffffff), 2147483648 - 973932308);
        cr_assert_eq(fls_producer_partition("foobar", 6, 0x7fffffff),
                     2147483648 - 790332482);
        cr_assert_eq(fls_producer_partition("abc", 3, 0x7fffffff), 479470107);
        cr_assert_eq(fls_producer_partition("a-little-bit-long-string", 24, 0x7fffffff),
                     2147483648 - 985981536);
}

/* ---- integration: into the real broker and back -------------------------------- */

#define NPART 4

static fls_tenv_t env;

static void it_setup(void)
{
        cr_assert_eq(fls_t_init(&env), 0);
        /* The importer needs no Redis, but the common flags name its port. */
        cr_assert_eq(fls_t_redis_start(&env), 0, "redis-server did not start");
        cr_assert_eq(fls_t_broker_start(&env, NPART), 0,
                     "flashstream broker did not start");
}

static void it_teardown(void)
{
        fls_t_fini(&env);
}

/* Reads topic to its end: each record must decode and sit on its key's partition;
 * the event ids are returned in partition order. */
static long read_back(const char *topic, const char *subject, const fls_import_set_t *s)
{
        char err[512];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        fls_codec_t *codec =
            fls_codec_new(FLS_SCHEMA_DIR, subject, 0, 1 << 20, err, sizeof(err));
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPART);
        int64_t high[NPART];
        rd_kafka_t *rk;
        long n = 0, left = 0;
        char *seen = calloc(s->n, 1);

        cr_assert_not_null(codec, "%s", err);
        rd_kafka_conf_set(kc, "bootstrap.servers", env.bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "test-import", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        for (int p = 0; p < NPART; p++) {
                int64_t lo;
                cr_assert_eq(
                    rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &high[p], 10000),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
                left += high[p] - lo;
                rd_kafka_topic_partition_list_add(l, topic, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        cr_assert_eq(left, (long)s->n, "the topic holds every record once");
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (int idle = 0; n < left && idle < 100;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                char detail[256];
                size_t len, k;
                const char *id;
                if (!m) {
                        idle++;
                        continue;
                }
                idle = 0;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                n++;
                cr_assert_eq(fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                              sizeof(detail)),
                             FLS_BAD_NONE, "record does not decode: %s", detail);
                cr_assert_eq(m->partition,
                             fls_producer_partition(m->key, m->key_len, NPART),
                             "murmur2 partition of the key");
                id = fls_avro_str(v, 0, &len);
                for (k = 0; k < s->n; k++)
                        if (strlen(STR(s, &s->recs[k], 0)) == len &&
                            memcmp(STR(s, &s->recs[k], 0), id, len) == 0)
                                break;
                cr_assert(k < s->n, "unknown event id %.*s", (int)len, id);
                cr_assert(!seen[k], "event %.*s twice", (int)len, id);
                seen[k] = 1;
                {
                        const char *key = fls_arena_str(&s->text, s->recs[k].key);
                        cr_assert(m->key_len == strlen(key) &&
                                      memcmp(m->key, key, m->key_len) == 0,
                                  "key of %s", id);
                }
                cr_assert_eq(fls_avro_long(v, s->recs[k].ts_field), s->recs[k].ts);
                rd_kafka_message_destroy(m);
        }
        cr_assert_eq(n, (long)s->n);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        fls_codec_destroy(codec);
        free(seen);
        return n;
}

Test(it_import, retail_into_broker, .init = it_setup, .fini = it_teardown, .timeout = 120)
{
        const char *args[] = {"import", "retail", FLS_TEST_DATA "/import_retail.csv",
                              "--import.opening_days=7", NULL};
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512], *out = NULL;

        cr_assert_eq(fls_t_run(&env, &out, args), 0, "import failed: %s", out);
        cr_assert(strstr(out, "produced=7 delivered=7 failed=0"), "%s", out);
        cr_assert(strstr(out, "service line"), "skips are reported: %s", out);
        free(out);
        cr_assert_eq(fls_import_load("retail", FLS_TEST_DATA "/import_retail.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        read_back("orders", "orders-value", &s);
        fls_import_set_free(&s);
}

Test(it_import, rees46_into_broker, .init = it_setup, .fini = it_teardown, .timeout = 120)
{
        const char *args[] = {"import", "rees46", FLS_TEST_DATA "/import_rees46.csv",
                              "--import.sale_start_s=3600", NULL};
        fls_import_opts_t o = opts();
        fls_import_set_t s;
        char err[512], *out = NULL;

        cr_assert_eq(fls_t_run(&env, &out, args), 0, "import failed: %s", out);
        cr_assert(strstr(out, "produced=6 delivered=6 failed=0"), "%s", out);
        free(out);
        o.sale_start_s = 3600;
        o.campaign = "rees46-replay";
        cr_assert_eq(fls_import_load("rees46", FLS_TEST_DATA "/import_rees46.csv", &o, &s,
                                     err, sizeof(err)),
                     0, "%s", err);
        read_back("clickstream", "clickstream-value", &s);
        fls_import_set_free(&s);
}

/* ---- the real datasets, when present ---------------------------------------------- */

Test(import, real_datasets)
{
        static const char *const names[] = {"rees46", "retail", "olist-orders"};
        static const char *const dirs[] = {"rees46-ecommerce-behavior-sample",
                                           "uci-online-retail-sample",
                                           "olist-brazilian-ecommerce"};
        struct stat st;
        int found = 0;

        for (int i = 0; i < 3; i++) {
                char dir[1024], err[512];
                fls_import_opts_t o = opts();
                fls_import_set_t s;
                long skipped = 0;
                snprintf(dir, sizeof(dir), "%s/%s", FLS_SHARED_DATA, dirs[i]);
                if (stat(dir, &st) != 0)
                        continue;
                found++;
                cr_assert_eq(fls_import_load(names[i], dir, &o, &s, err, sizeof(err)), 0,
                             "%s: %s", names[i], err);
                for (int k = 0; k < s.nreasons; k++)
                        skipped += s.skipped[k];
                cr_assert(s.n > 1000, "%s: %zu events", names[i], s.n);
                cr_assert(skipped < s.rows / 10, "%s: %ld of %ld rows skipped", names[i],
                          skipped, s.rows);
                for (size_t k = 1; k < s.n; k++)
                        cr_assert(s.recs[k - 1].ts <= s.recs[k].ts, "sorted by time");
                fls_import_set_free(&s);
        }
        if (!found)
                cr_skip_test("no dataset under %s", FLS_SHARED_DATA);
}
