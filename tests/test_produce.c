/*
 * test_produce: `flashstream produce` (tools/produce.c), the replay of an event file
 * into an input topic, against the real `flashstream broker`: a good file is produced
 * in full and reads back decoded, in file order, keyed by the entity; a file that does
 * not fit the schema stops with FILE:LINE and the reason, and nothing after the bad
 * row is sent.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "testutil.h"

static fls_tenv_t env;

static void setup(void)
{
        const char *e = fls_t_start(&env, 1);
        cr_assert_null(e, "%s", e);
}

static void teardown(void)
{
        fls_t_fini(&env);
}

TestSuite(produce, .init = setup, .fini = teardown, .timeout = 120);

static const char *const header =
    "event_id,shipment_id,order_id,status,warehouse_id,region,distance_km,weight_kg,"
    "carrier,flash_sale,promised_ts,ts\n";

static void write_file(const char *path, const char *const *rows)
{
        FILE *fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs(header, fp);
        for (int i = 0; rows[i]; i++)
                fputs(rows[i], fp);
        fclose(fp);
}

/* Runs `flashstream produce shipments path`; output (stdout and stderr) in out. */
static int produce(const char *path, char *out, size_t size)
{
        char cmd[2048];
        FILE *p;
        size_t n;
        snprintf(cmd, sizeof(cmd),
                 "'%s' produce shipments '%s' --bootstrap.file='%s' --redis.port=%d 2>&1",
                 FLS_BIN, path, env.bootstrap_file, env.redis_port);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        n = fread(out, 1, size - 1, p);
        out[n] = '\0';
        return pclose(p);
}

/* Reads the shipments topic from the start: ids of the records, in order. */
static int read_back(char ids[][32], int max)
{
        char err[512], detail[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        fls_codec_t *codec = fls_codec_new(FLS_SCHEMA_DIR, "shipments-value", 0, 1 << 16,
                                           err, sizeof(err));
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_t *rk;
        int n = 0, idle = 0, fid, fsh;

        cr_assert_not_null(codec, "%s", err);
        fid = fls_codec_field(codec, "event_id");
        fsh = fls_codec_field(codec, "shipment_id");
        rd_kafka_conf_set(kc, "bootstrap.servers", env.bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "test-produce", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        rd_kafka_topic_partition_list_add(l, "shipments", 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        while (idle < 20) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                size_t len, slen;
                const char *id, *sh;
                if (!m) {
                        idle++;
                        continue;
                }
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                idle = 0;
                cr_assert_eq(fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                              sizeof(detail)),
                             FLS_BAD_NONE, "%s", detail);
                id = fls_avro_str(v, fid, &len);
                sh = fls_avro_str(v, fsh, &slen);
                cr_assert(m->key_len == slen && memcmp(m->key, sh, slen) == 0,
                          "keyed by shipment_id");
                cr_assert_lt(n, max);
                snprintf(ids[n++], 32, "%.*s", (int)len, id);
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        fls_codec_destroy(codec);
        return n;
}

Test(produce, good_file_in_order_then_bad_rows_stop_with_file_and_line)
{
        char path[400], out[4096], ids[16][32];
        const char *const good[] = {
            "e1,sh1,o1,CREATED,w1,r1,12.5,1.25,c1,false,1790000000000,1789990000000\n",
            "e2,sh2,o2,CREATED,w1,r2,0,0,c1,true,1790000000000,1789990001000\n",
            "e3,sh1,o1,DELIVERED,w1,r1,12.5,1.25,c1,false,1790000000000,1789999000000\n",
            NULL};
        const char *const bad_enum[] = {
            "e4,sh3,o3,CREATED,w1,r1,1,1,c1,false,1790000000000,1789990000000\n",
            "e5,sh3,o3,LOST,w1,r1,1,1,c1,false,1790000000000,1789990000000\n",
            "e6,sh3,o3,DELIVERED,w1,r1,1,1,c1,false,1790000000000,1789990000000\n", NULL};
        const char *const bad_number[] = {
            "e7,sh4,o4,CREATED,w1,r1,far,1,c1,false,1790000000000,1789990000000\n", NULL};

        snprintf(path, sizeof(path), "%s/good.csv", env.dir);
        write_file(path, good);
        cr_assert_eq(produce(path, out, sizeof(out)), 0, "%s", out);
        cr_assert(strstr(out, "\"produced\":3"), "%s", out);

        snprintf(path, sizeof(path), "%s/bad_enum.csv", env.dir);
        write_file(path, bad_enum);
        cr_assert_neq(produce(path, out, sizeof(out)), 0, "%s", out);
        cr_assert(strstr(out, "bad_enum.csv:3:") && strstr(out, "'LOST'"), "%s", out);
        cr_assert(strstr(out, "(1 produced)"), "%s", out);

        snprintf(path, sizeof(path), "%s/bad_number.csv", env.dir);
        write_file(path, bad_number);
        cr_assert_neq(produce(path, out, sizeof(out)), 0, "%s", out);
        cr_assert(strstr(out, "bad_number.csv:2:") && strstr(out, "'far'"), "%s", out);

        {
                FILE *fp;
                snprintf(path, sizeof(path), "%s/no_carrier.csv", env.dir);
                fp = fopen(path, "w");
                cr_assert_not_null(fp);
                fputs("event_id,shipment_id,order_id,status,warehouse_id,region,"
                      "distance_km,weight_kg,flash_sale,promised_ts,ts\n",
                      fp);
                fclose(fp);
                cr_assert_neq(produce(path, out, sizeof(out)), 0, "%s", out);
                cr_assert(strstr(out, "no_carrier.csv:1: no column 'carrier'"), "%s",
                          out);
        }

        /* The good file in order, then the bad file's one row before its bad line. */
        cr_assert_eq(read_back(ids, 16), 4);
        cr_assert_str_eq(ids[0], "e1");
        cr_assert_str_eq(ids[1], "e2");
        cr_assert_str_eq(ids[2], "e3");
        cr_assert_str_eq(ids[3], "e4");
}
