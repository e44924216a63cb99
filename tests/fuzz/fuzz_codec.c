/*
 * fuzz_codec: the message decode path, the first step after Kafka in
 * Kafka -> Avro -> Redis -> model -> Kafka, and the output side's framing.
 *
 * Input: [subject][framed message]. The first byte picks one of seven codecs built
 * once from the real registry: the three input subjects and the three output subjects
 * of schemas/, plus clickstream read through the evolution registry of
 * tests/data/schemas (v1 writers resolved to the v2 reader with a default: the path
 * with a resolver and a trailer). The rest is the Kafka value handed to
 * fls_codec_decode, with the input limit the runner uses (input.max_message_bytes at
 * its default) or the output codec's 16 MiB.
 *
 * For an accepted message the target checks what the codec promises: every field
 * readable through the fls_avro_* helpers, every enum index in range (Avro C does not
 * check them: the validating walk must), and a round trip: decode(encode(value))
 * succeeds and re-encodes to the same bytes. A rejection must carry a detail (it goes
 * into the dead-letter headers). The consumers' check() is not called here: their
 * init loads models and installs signal handlers (see README.md).
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "conf.h"
#include "settings.h"

#define NCODECS   7
#define OUT_BYTES (16 << 20) /* the runner's limit for its output codec */

static const struct {
        const char *subject;
        int evolution; /* tests/data/schemas instead of schemas/ */
        int input;     /* an input subject: the runner's input limit applies */
} subjects[NCODECS] = {
    {"clickstream-value", 0, 1},     {"orders-value", 0, 1},
    {"shipments-value", 0, 1},       {"marketing-actions-value", 0, 0},
    {"restock-signals-value", 0, 0}, {"dispatch-decisions-value", 0, 0},
    {"clickstream-value", 1, 1},
};

static fls_codec_t *codecs[NCODECS];
static uint8_t *copy;

static void init(void)
{
        const fls_conf_def_t *tables[] = {fls_settings_conf, NULL};
        char err[512];
        fls_conf_t *conf = fls_conf_new(tables, err, sizeof(err));
        size_t max_in;

        if (!conf)
                fls_fuzz_fail("codec", "conf: %s", err);
        max_in = (size_t)fls_conf_int(conf, "input.max_message_bytes");
        fls_conf_destroy(conf);
        for (int i = 0; i < NCODECS; i++) {
                const char *dir =
                    subjects[i].evolution ? FLS_TEST_DATA "/schemas" : FLS_SCHEMA_DIR;
                codecs[i] = fls_codec_new(dir, subjects[i].subject, 0,
                                          subjects[i].input ? max_in : OUT_BYTES, err,
                                          sizeof(err));
                if (!codecs[i])
                        fls_fuzz_fail("codec", "%s: %s", subjects[i].subject, err);
        }
        copy = malloc(OUT_BYTES);
        if (!copy)
                fls_fuzz_fail("codec", "out of memory");
}

/* Reads every field the way the consumers do and checks enum indexes. */
static void read_fields(avro_value_t *rec)
{
        size_t n = 0, len;

        avro_value_get_size(rec, &n);
        for (size_t i = 0; i < n; i++) {
                avro_value_t f, item;
                size_t items = 0;
                int e;

                avro_value_get_by_index(rec, i, &f, NULL);
                switch (avro_value_get_type(&f)) {
                case AVRO_STRING:
                        if (!fls_avro_str(rec, (int)i, &len))
                                fls_fuzz_fail("codec", "field %zu: NULL string", i);
                        break;
                case AVRO_INT64:
                        (void)fls_avro_long(rec, (int)i);
                        break;
                case AVRO_INT32:
                        (void)fls_avro_int(rec, (int)i);
                        break;
                case AVRO_DOUBLE:
                        (void)fls_avro_double(rec, (int)i);
                        break;
                case AVRO_BOOLEAN:
                        e = fls_avro_bool(rec, (int)i);
                        if (e != 0 && e != 1)
                                fls_fuzz_fail("codec", "field %zu: boolean %d", i, e);
                        break;
                case AVRO_ENUM:
                        e = fls_avro_enum(rec, (int)i);
                        if (e < 0 || e >= avro_schema_enum_number_of_symbols(
                                              avro_value_get_schema(&f)))
                                fls_fuzz_fail("codec", "field %zu: enum index %d", i, e);
                        break;
                case AVRO_ARRAY:
                        avro_value_get_size(&f, &items);
                        for (size_t k = 0; k < items; k++) {
                                const char *s = NULL;
                                avro_value_get_by_index(&f, k, &item, NULL);
                                if (avro_value_get_type(&item) == AVRO_STRING &&
                                    avro_value_get_string(&item, &s, &len) == 0 && !s)
                                        fls_fuzz_fail("codec", "field %zu: NULL item", i);
                        }
                        break;
                default:
                        break;
                }
        }
}

/* encode(value) must decode again and encode to the same bytes. */
static void round_trip(fls_codec_t *c, avro_value_t *value)
{
        const void *buf;
        size_t len1, len2;
        avro_value_t *again;
        char err[512];
        fls_bad_t bad;

        if (avro_value_copy(fls_codec_out(c), value))
                fls_fuzz_fail("codec", "copy: %s", avro_strerror());
        if (fls_codec_encode(c, &buf, &len1, err, sizeof(err)))
                fls_fuzz_fail("codec", "encode of a decoded value: %s", err);
        if (len1 > OUT_BYTES)
                fls_fuzz_fail("codec", "encoded %zu bytes", len1);
        memcpy(copy, buf, len1);
        bad = fls_codec_decode(c, copy, len1, &again, err, sizeof(err));
        if (bad != FLS_BAD_NONE)
                fls_fuzz_fail("codec", "re-decode: %s: %s", fls_bad_name(bad), err);
        if (avro_value_copy(fls_codec_out(c), again))
                fls_fuzz_fail("codec", "copy: %s", avro_strerror());
        if (fls_codec_encode(c, &buf, &len2, err, sizeof(err)))
                fls_fuzz_fail("codec", "second encode: %s", err);
        if (len1 != len2 || memcmp(copy, buf, len1) != 0)
                fls_fuzz_fail("codec", "round trip changed the bytes (%zu -> %zu)", len1,
                              len2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char detail[512];
        avro_value_t *value = NULL;
        fls_bad_t bad;
        int sel;

        if (!copy)
                init();
        if (size < 1)
                return 0;
        sel = data[0] % NCODECS;
        data++;
        size--;

        detail[0] = '\0';
        bad = fls_codec_decode(codecs[sel], size ? data : NULL, size, &value, detail,
                               sizeof(detail));
        if ((int)bad < 0 || bad >= FLS_BAD__COUNT)
                fls_fuzz_fail("codec", "class %d out of range", (int)bad);
        if (bad != FLS_BAD_NONE) {
                /* The dead-letter headers need a reason. */
                if (!detail[0])
                        fls_fuzz_fail("codec", "%s without a detail", fls_bad_name(bad));
                return 0;
        }
        if (!value)
                fls_fuzz_fail("codec", "accepted without a value");
        read_fields(value);
        round_trip(codecs[sel], value);
        return 0;
}
