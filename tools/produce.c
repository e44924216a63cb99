/*
 * produce: `flashstream produce clickstream|orders|shipments FILE.csv` replays an event
 * file into a consumer's input topic, the start of the flow (here -> Kafka -> Avro ->
 * Redis -> model -> Kafka). The file's header names the schema's fields (any order;
 * every field of the record must be there), which is what `flashstream simulate
 * --sim.out_dir` writes and what `flashstream convert` makes from real data, so a run
 * can be replayed or backfilled byte for byte. Rows go out in file order, keyed and
 * partitioned as the README's topic table says (murmur2 over the key).
 *
 * A row that does not fit the schema stops the replay with FILE:LINE and the reason:
 * replaying half a file silently would be worse. One record value and one encode
 * buffer are reused for every row; librdkafka copies each message.
 */
#include "produce.h"

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "data_csv.h"
#include "producer.h"

static const struct {
        const char *name, *topic_key, *subject;
        const char *key1, *key2; /* message key: key1, or "key1:key2" */
} inputs[] = {
    {"clickstream", "topic.clickstream", "clickstream-value", "user_id", NULL},
    {"orders", "topic.orders", "orders-value", "sku", "warehouse_id"},
    {"shipments", "topic.shipments", "shipments-value", "shipment_id", NULL},
};

/* Sets field i of rec from its CSV text, by the field's Avro type. */
static int set_field(avro_value_t *rec, int i, const char *text, char *errstr,
                     size_t errstr_size)
{
        avro_value_t f;
        char *end;
        if (avro_value_get_by_index(rec, (size_t)i, &f, NULL) != 0)
                goto bad;
        errno = 0;
        switch (avro_value_get_type(&f)) {
        case AVRO_STRING:
                return fls_avro_set_str(rec, i, text, strlen(text));
        case AVRO_INT64: {
                long long v = strtoll(text, &end, 10);
                if (!*text || *end || errno)
                        goto bad;
                return fls_avro_set_long(rec, i, v);
        }
        case AVRO_INT32: {
                long v = strtol(text, &end, 10);
                if (!*text || *end || errno || v < INT32_MIN || v > INT32_MAX)
                        goto bad;
                return fls_avro_set_int(rec, i, (int32_t)v);
        }
        case AVRO_DOUBLE: {
                double v = strtod(text, &end);
                if (!*text || *end)
                        goto bad;
                return fls_avro_set_double(rec, i, v);
        }
        case AVRO_BOOLEAN:
                if (strcmp(text, "true") && strcmp(text, "false"))
                        goto bad;
                return fls_avro_set_bool(rec, i, text[0] == 't');
        case AVRO_ENUM: {
                avro_schema_t s = avro_value_get_schema(&f);
                int sym = avro_schema_enum_get_by_name(s, text);
                if (sym < 0)
                        goto bad;
                return fls_avro_set_enum(rec, i, sym);
        }
        default:
                break;
        }
bad:
        snprintf(errstr, errstr_size, "'%s' is not a value of field %d's type", text, i);
        return -1;
}

int fls_produce_file(fls_conf_t *conf, const char *input, const char *path, long *count,
                     char *errstr, size_t errstr_size)
{
        int in = -1, col[64], nf = 0, rc = -1, r;
        int k1 = -1, k2 = -1;
        size_t nfield = 0;
        fls_codec_t *codec = NULL;
        fls_csv_t *csv = NULL;
        fls_producer_t *prod = NULL;
        const char *topic;
        char key[1024], err[512];
        uint64_t delivered, failed;

        *count = 0;
        for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
                if (strcmp(inputs[i].name, input) == 0)
                        in = (int)i;
        if (in < 0) {
                snprintf(errstr, errstr_size, "unknown input '%s'", input);
                return -1;
        }
        topic = fls_conf_str(conf, inputs[in].topic_key);
        codec = fls_codec_new(fls_conf_str(conf, "schema.dir"), inputs[in].subject, 0,
                              1 << 20, errstr, errstr_size);
        if (!codec)
                return -1;
        if (avro_value_get_size(fls_codec_out(codec), &nfield) != 0 || nfield > 64) {
                snprintf(errstr, errstr_size, "%s: unexpected schema",
                         inputs[in].subject);
                goto done;
        }
        if (!(csv = fls_csv_open(path, ',', errstr, errstr_size)))
                goto done;
        if (fls_csv_next(csv, errstr, errstr_size) != 1) {
                snprintf(errstr, errstr_size, "%s: no header line", path);
                goto done;
        }
        /* col[i]: the column of schema field i. */
        for (size_t i = 0; i < nfield; i++) {
                const char *name = NULL;
                avro_value_t f;
                avro_value_get_by_index(fls_codec_out(codec), i, &f, &name);
                col[i] = fls_csv_find(csv, name);
                if (col[i] < 0) {
                        snprintf(errstr, errstr_size,
                                 "%s:1: no column '%s' (the header "
                                 "must name every field of %s)",
                                 path, name, inputs[in].subject);
                        goto done;
                }
                if (strcmp(name, inputs[in].key1) == 0)
                        k1 = col[i];
                if (inputs[in].key2 && strcmp(name, inputs[in].key2) == 0)
                        k2 = col[i];
        }
        nf = (int)nfield;

        if (!(prod = fls_producer_new(conf, "flashstream-produce", errstr, errstr_size)))
                goto done;

        while ((r = fls_csv_next(csv, errstr, errstr_size)) == 1) {
                avro_value_t *rec = fls_codec_out(codec);
                const void *buf;
                size_t len;
                int klen;
                if (fls_csv_nfields(csv) < (size_t)nf) {
                        snprintf(errstr, errstr_size, "%s:%ld: %zu fields, want %d", path,
                                 fls_csv_line(csv), fls_csv_nfields(csv), nf);
                        goto done;
                }
                for (int i = 0; i < nf; i++)
                        if (set_field(rec, i, fls_csv_field(csv, (size_t)col[i]), err,
                                      sizeof(err)) != 0) {
                                snprintf(errstr, errstr_size, "%s:%ld: %s", path,
                                         fls_csv_line(csv), err);
                                goto done;
                        }
                if (fls_codec_encode(codec, &buf, &len, err, sizeof(err)) != 0) {
                        snprintf(errstr, errstr_size, "%s:%ld: %s", path,
                                 fls_csv_line(csv), err);
                        goto done;
                }
                klen = k2 < 0 ? snprintf(key, sizeof(key), "%s",
                                         fls_csv_field(csv, (size_t)k1))
                              : snprintf(key, sizeof(key), "%s:%s",
                                         fls_csv_field(csv, (size_t)k1),
                                         fls_csv_field(csv, (size_t)k2));
                if (klen < 0 || (size_t)klen >= sizeof(key)) {
                        snprintf(errstr, errstr_size, "%s:%ld: key too long", path,
                                 fls_csv_line(csv));
                        goto done;
                }
                if (fls_producer_send(prod, topic, key, (size_t)klen, buf, len, 60000,
                                      errstr, errstr_size) != 0)
                        goto done;
                (*count)++;
        }
        if (r < 0)
                goto done;
        rc = 0;
done:
        /* Drained even after an error, so that what reached the topic is known. */
        if (prod &&
            fls_producer_close(prod, 60000, &delivered, &failed, err, sizeof(err)) != 0) {
                if (rc == 0)
                        snprintf(errstr, errstr_size, "%s", err);
                rc = -1;
        }
        fls_producer_destroy(prod);
        fls_csv_destroy(csv);
        fls_codec_destroy(codec);
        return rc;
}

int fls_produce_cmd(fls_conf_t *conf, int argc, char **argv)
{
        char err[1024];
        long n = 0;
        if (argc != 3) {
                fprintf(stderr,
                        "usage: flashstream produce clickstream|orders|shipments FILE\n");
                return 2;
        }
        if (fls_produce_file(conf, argv[1], argv[2], &n, err, sizeof(err)) != 0) {
                fprintf(stderr, "flashstream produce: %s (%ld produced)\n", err, n);
                return 1;
        }
        printf("{\"input\":\"%s\",\"file\":\"%s\",\"produced\":%ld}\n", argv[1], argv[2],
               n);
        return 0;
}
