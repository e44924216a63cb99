/*
 * fault_check: the measuring side of the fault suite (bench/fault-suite.sh). It reads,
 * independently of the consumers' code, the two ends of the flow Kafka -> Avro ->
 * Redis -> model -> Kafka after a run, as plain text lines the script sorts, joins and
 * diffs:
 *   watermarks BOOTSTRAP TOPIC NPART     "<low_sum> <high_sum> <partitions with low >
 * 0>": the input topics must still hold every event (the mock broker drops old data
 * silently) decisions BOOTSTRAP TOPIC NPART AVSC every message of an output topic, oldest
 * first:
 *                                        "<id>\t<fnv64 of the raw value>\t<partition>\t
 *                                        <offset>\t<record as one-line JSON>"
 *   dump HOST PORT PATTERN               every Redis key matching PATTERN, one line per
 *                                        hash field / list item / string:
 *                                        "<key>\t<field>\t<value>", plus "<key>\t~ttl\t
 *                                        0|1" (whether a TTL is set: absolute TTLs
 *                                        differ between runs, their presence must not)
 * Reads only; costs one pass over the topics and one SCAN of Redis, pipelined by 1000.
 * Built by the script with cc (no project library: it must not share the code it
 * checks). Exit status 0, or 1 with a message on stderr.
 */
#include <avro.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, const char *why)
{
        fprintf(stderr, "fault_check: %s: %s\n", what, why ? why : "");
        return 1;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, char *err,
                          size_t errsz)
{
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        if (rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, errsz) ||
            (type == RD_KAFKA_CONSUMER &&
             (rd_kafka_conf_set(kc, "group.id", "fault-check", err, errsz) ||
              rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, errsz) ||
              rd_kafka_conf_set(kc, "enable.partition.eof", "true", err, errsz)))) {
                rd_kafka_conf_destroy(kc);
                return NULL;
        }
        rd_kafka_t *rk = rd_kafka_new(type, kc, err, errsz);
        if (!rk)
                rd_kafka_conf_destroy(kc);
        return rk;
}

static int watermarks(const char *bootstrap, const char *topic, int np)
{
        char err[512];
        rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap, err, sizeof(err));
        int64_t lows = 0, highs = 0;
        int dropped = 0;

        if (!rk)
                return die("kafka", err);
        for (int p = 0; p < np; p++) {
                int64_t lo, hi;
                rd_kafka_resp_err_t e =
                    rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
                if (e) {
                        rd_kafka_destroy(rk);
                        return die(topic, rd_kafka_err2str(e));
                }
                lows += lo;
                highs += hi;
                dropped += lo > 0;
        }
        printf("%" PRId64 " %" PRId64 " %d\n", lows, highs, dropped);
        rd_kafka_destroy(rk);
        return 0;
}

static uint64_t fnv64(const unsigned char *p, size_t n)
{
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
        return h;
}

static char *slurp(const char *path)
{
        FILE *fp = fopen(path, "rb");
        long n;
        char *s;
        if (!fp)
                return NULL;
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        rewind(fp);
        s = calloc((size_t)n + 1, 1);
        if (s && fread(s, 1, (size_t)n, fp) != (size_t)n) {
                free(s);
                s = NULL;
        }
        fclose(fp);
        return s;
}

static int decisions(const char *bootstrap, const char *topic, int np, const char *avsc)
{
        char err[512], *json_text = slurp(avsc);
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t v;
        avro_reader_t rd;
        rd_kafka_t *rk;
        rd_kafka_topic_partition_list_t *l;
        int64_t *hi = calloc((size_t)np, sizeof(*hi));
        int open = 0, rc = 0;

        if (!json_text || !hi)
                return die(avsc, "cannot read");
        if (avro_schema_from_json_length(json_text, strlen(json_text), &schema))
                return die(avsc, avro_strerror());
        free(json_text);
        iface = avro_generic_class_from_schema(schema);
        avro_generic_value_new(iface, &v);
        rd = avro_reader_memory(NULL, 0);
        rk = client(RD_KAFKA_CONSUMER, bootstrap, err, sizeof(err));
        if (!rk)
                return die("kafka", err);
        l = rd_kafka_topic_partition_list_new(np);
        for (int p = 0; p < np; p++) {
                int64_t lo;
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 10000))
                        return die(topic, "watermarks");
                /* The mock drops a partition's oldest data past ~5 MiB without a
                 * word: decisions lost that way would pass for missing ones. */
                if (lo > 0)
                        return die(topic, "oldest messages dropped by the broker's "
                                          "retention: use more partitions");
                if (hi[p] > lo) {
                        rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
                        open++;
                }
        }
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        while (open > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 10000);
                const unsigned char *b;
                if (!m) {
                        rc = die(topic, "no message for 10 s before the high watermark");
                        break;
                }
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                fprintf(stderr, "fault_check: %s: %s\n", topic,
                                        rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                b = m->payload;
                if (m->offset + 1 == hi[m->partition])
                        open--;
                if (m->len < 5 || b[0] != 0) {
                        printf("?framing\t0\t%d\t%" PRId64 "\t{}\n", (int)m->partition,
                               m->offset);
                        rd_kafka_message_destroy(m);
                        continue;
                }
                avro_reader_memory_set_source(rd, (const char *)b + 5,
                                              (int64_t)m->len - 5);
                avro_value_reset(&v);
                if (avro_value_read(rd, &v)) {
                        printf("?avro\t0\t%d\t%" PRId64 "\t{}\n", (int)m->partition,
                               m->offset);
                } else {
                        avro_value_t id;
                        const char *s = NULL;
                        size_t n = 0;
                        char *js = NULL;
                        avro_value_get_by_index(&v, 0, &id, NULL);
                        avro_value_get_string(&id, &s, &n);
                        avro_value_to_json(&v, 1, &js);
                        printf("%.*s\t%016" PRIx64 "\t%d\t%" PRId64 "\t%s\n",
                               (int)(n ? n - 1 : 0), s ? s : "", fnv64(b, m->len),
                               (int)m->partition, m->offset, js ? js : "{}");
                        free(js);
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        avro_reader_free(rd);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
        free(hi);
        return rc;
}

/* Prints s with tab, newline and backslash escaped: one record per line. */
static void put_esc(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '\t')
                        fputs("\\t", stdout);
                else if (c == '\n')
                        fputs("\\n", stdout);
                else if (c == '\\')
                        fputs("\\\\", stdout);
                else
                        putchar(c);
        }
}

static void put_line(const redisReply *key, const char *field, size_t flen,
                     const char *val, size_t vlen)
{
        put_esc(key->str, key->len);
        putchar('\t');
        put_esc(field, flen);
        putchar('\t');
        put_esc(val, vlen);
        putchar('\n');
}

/* Dumps one chunk of keys: TYPE and PTTL pipelined, then the contents pipelined. */
static int dump_chunk(redisContext *c, redisReply **keys, size_t n)
{
        char **types = calloc(n, sizeof(*types));
        int rc = 0;

        for (size_t i = 0; i < n; i++) {
                redisAppendCommand(c, "TYPE %b", keys[i]->str, keys[i]->len);
                redisAppendCommand(c, "PTTL %b", keys[i]->str, keys[i]->len);
        }
        for (size_t i = 0; i < n; i++) {
                redisReply *t = NULL, *ttl = NULL;
                if (redisGetReply(c, (void **)&t) != REDIS_OK ||
                    redisGetReply(c, (void **)&ttl) != REDIS_OK)
                        return die("redis", c->errstr);
                types[i] = strdup(t->type == REDIS_REPLY_STATUS ? t->str : "none");
                put_line(
                    keys[i], "~ttl", 4,
                    ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0 ? "1" : "0", 1);
                freeReplyObject(t);
                freeReplyObject(ttl);
        }
        for (size_t i = 0; i < n; i++) {
                const char *k = keys[i]->str;
                size_t kl = keys[i]->len;
                if (!strcmp(types[i], "hash"))
                        redisAppendCommand(c, "HGETALL %b", k, kl);
                else if (!strcmp(types[i], "list"))
                        redisAppendCommand(c, "LRANGE %b 0 -1", k, kl);
                else if (!strcmp(types[i], "set"))
                        redisAppendCommand(c, "SMEMBERS %b", k, kl);
                else if (!strcmp(types[i], "zset"))
                        redisAppendCommand(c, "ZRANGE %b 0 -1 WITHSCORES", k, kl);
                else
                        redisAppendCommand(c, "GET %b", k, kl);
        }
        for (size_t i = 0; i < n; i++) {
                redisReply *r = NULL;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                        rc = die("redis", c->errstr);
                        break;
                }
                if (r->type == REDIS_REPLY_ARRAY && !strcmp(types[i], "hash")) {
                        for (size_t j = 0; j + 1 < r->elements; j += 2)
                                put_line(keys[i], r->element[j]->str, r->element[j]->len,
                                         r->element[j + 1]->str, r->element[j + 1]->len);
                } else if (r->type == REDIS_REPLY_ARRAY) {
                        /* list items keep their order; set members are sorted later */
                        for (size_t j = 0; j < r->elements; j++) {
                                char f[32];
                                int fl = !strcmp(types[i], "list")
                                             ? snprintf(f, sizeof(f), "[%zu]", j)
                                             : snprintf(f, sizeof(f), "[member]");
                                put_line(keys[i], f, (size_t)fl, r->element[j]->str,
                                         r->element[j]->len);
                        }
                } else if (r->type == REDIS_REPLY_STRING) {
                        put_line(keys[i], "=", 1, r->str, r->len);
                }
                freeReplyObject(r);
        }
        for (size_t i = 0; i < n; i++)
                free(types[i]);
        free(types);
        return rc;
}

static int dump(const char *host, int port, const char *pattern)
{
        redisContext *c = redisConnect(host, port);
        char cursor[32] = "0";
        int rc = 0;

        if (!c || c->err)
                return die("redis", c ? c->errstr : "connect");
        do {
                redisReply *r =
                    redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                        rc = die("redis SCAN", c->errstr);
                        if (r)
                                freeReplyObject(r);
                        break;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                if (r->element[1]->elements)
                        rc = dump_chunk(c, r->element[1]->element,
                                        r->element[1]->elements);
                freeReplyObject(r);
        } while (!rc && strcmp(cursor, "0") != 0);
        redisFree(c);
        return rc;
}

int main(int argc, char **argv)
{
        if (argc == 5 && !strcmp(argv[1], "watermarks"))
                return watermarks(argv[2], argv[3], atoi(argv[4]));
        if (argc == 6 && !strcmp(argv[1], "decisions"))
                return decisions(argv[2], argv[3], atoi(argv[4]), argv[5]);
        if (argc == 5 && !strcmp(argv[1], "dump"))
                return dump(argv[2], atoi(argv[3]), argv[4]);
        fprintf(stderr, "usage: fault_check watermarks BOOTSTRAP TOPIC NPART\n"
                        "       fault_check decisions BOOTSTRAP TOPIC NPART AVSC\n"
                        "       fault_check dump HOST PORT PATTERN\n");
        return 2;
}
