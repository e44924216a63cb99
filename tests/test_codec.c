/*
 * Unit suite of the codec (consumers/runtime/codec.c): Confluent framing, the
 * validating walk and the Avro C decode/encode behind it. No services.
 *
 * Why: the codec is the only thing between untrusted Kafka bytes and Avro C, which
 * allocates whatever a length prefix claims, does not range-check enums and drops the
 * last character of strings set with strlen(). Every rejection class the dead-letter
 * headers carry is produced here, so each is pinned: round trips of all six schemas
 * (every field compared, strings checked on the wire too), every framing error, every
 * truncation of a valid record, corrupt lengths (watched through a counting Avro C
 * allocator: no huge request, no block left behind), enum and UTF-8 violations,
 * trailing bytes, oversize, over-long varints, and schema evolution both ways with the
 * registry in tests/data/schemas.
 */
#include <criterion/criterion.h>

#include <avro.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_BYTES 65536
#define EVO_DIR   FLS_TEST_DATA "/schemas"

/* ---- a counting Avro C allocator ------------------------------------------ */

static long t_live;      /* blocks Avro C holds */
static size_t t_max_req; /* largest single request since the last reset */

static void *t_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
        void *p;

        (void)ud, (void)osize;
        if (nsize == 0) {
                if (ptr) {
                        t_live--;
                        free(ptr);
                }
                return NULL;
        }
        if (nsize > t_max_req)
                t_max_req = nsize;
        /* Refused rather than attempted: the assertion on t_max_req reports it. */
        if (nsize > ((size_t)1 << 32))
                return NULL;
        p = realloc(ptr, nsize);
        if (p && !ptr)
                t_live++;
        return p;
}

static void t_setup(void)
{
        avro_set_allocator(t_alloc, NULL);
        t_live = 0;
        t_max_req = 0;
}

TestSuite(codec, .init = t_setup, .timeout = 60);

/* ---- helpers ----------------------------------------------------------------- */

static fls_codec_t *open_codec(const char *dir, const char *subject, int reader_id,
                               size_t max_bytes)
{
        char err[512] = "";
        fls_codec_t *c =
            fls_codec_new(dir, subject, reader_id, max_bytes, err, sizeof(err));

        cr_assert_not_null(c, "fls_codec_new(%s, %s, %d): %s", dir, subject, reader_id,
                           err);
        return c;
}

/* Decodes and asserts the class; returns the value (NULL unless good). */
static avro_value_t *expect_class(fls_codec_t *c, const void *buf, size_t len,
                                  fls_bad_t want, const char *what)
{
        char detail[256];
        avro_value_t *v = NULL;
        fls_bad_t got;

        memset(detail, 0, sizeof(detail));
        got = fls_codec_decode(c, buf, len, &v, detail, sizeof(detail));
        cr_assert_eq(got, want, "%s (%zu bytes): class %s, expected %s (detail '%s')",
                     what, len, fls_bad_name(got), fls_bad_name(want), detail);
        if (want != FLS_BAD_NONE) {
                cr_assert(detail[0] != '\0', "%s: no detail for class %s", what,
                          fls_bad_name(want));
                return NULL;
        }
        cr_assert_not_null(v, "%s: decoded without a value", what);
        return v;
}

/* Byte builder for hand-made messages. */
struct mb {
        uint8_t b[1 << 17];
        size_t n;
};

static void mb_raw(struct mb *m, const void *p, size_t len)
{
        cr_assert(m->n + len <= sizeof(m->b));
        memcpy(m->b + m->n, p, len);
        m->n += len;
}

static void mb_header(struct mb *m, uint8_t magic, uint32_t id)
{
        uint8_t h[5] = {magic, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                        (uint8_t)(id >> 8), (uint8_t)id};
        m->n = 0;
        mb_raw(m, h, 5);
}

static void mb_varint(struct mb *m, int64_t v)
{
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        uint8_t byte;

        while (z >= 0x80) {
                byte = (uint8_t)(z | 0x80);
                mb_raw(m, &byte, 1);
                z >>= 7;
        }
        byte = (uint8_t)z;
        mb_raw(m, &byte, 1);
}

static void mb_str(struct mb *m, const void *s, size_t len)
{
        mb_varint(m, (int64_t)len);
        mb_raw(m, s, len);
}

static void mb_cstr(struct mb *m, const char *s)
{
        mb_str(m, s, strlen(s));
}

static void mb_double(struct mb *m, double d)
{
        uint64_t u;
        uint8_t le[8];

        memcpy(&u, &d, 8);
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)(u >> (8 * i));
        mb_raw(m, le, 8);
}

/* A ClickEvent (schema id 1) by hand, user_id given as raw bytes. */
static void mb_click(struct mb *m, const void *user, size_t ulen, int64_t type,
                     const char *campaign, int64_t ts)
{
        mb_header(m, 0, 1);
        mb_cstr(m, "ev-1");
        mb_str(m, user, ulen);
        mb_cstr(m, "sess-1");
        mb_varint(m, type);
        mb_cstr(m, "sku-1");
        mb_cstr(m, "shoes");
        mb_double(m, 19.5);
        mb_varint(m, 2);
        mb_varint(m, 1500);
        mb_cstr(m, campaign);
        mb_varint(m, ts);
}

static int idx(fls_codec_t *c, const char *name)
{
        int i = fls_codec_field(c, name);
        cr_assert_geq(i, 0, "no field %s", name);
        return i;
}

/* ---- generic fill and compare over any record schema ------------------------------ */

#define MAX_FIELDS 32

struct expect {
        int n;
        avro_type_t type[MAX_FIELDS];
        char str[MAX_FIELDS][3][64];
        int64_t l[MAX_FIELDS];
        double d[MAX_FIELDS];
};

/* Sets every field of rec to a value derived from (field, seed) through the codec's
 * setters, and records what was set. Strings end in a distinct last character and
 * carry a two-byte UTF-8 character. */
static void fill(avro_value_t *rec, int seed, struct expect *e)
{
        avro_schema_t rs = avro_value_get_schema(rec);
        int nf = (int)avro_schema_record_size(rs);

        cr_assert_leq(nf, MAX_FIELDS);
        e->n = nf;
        for (int i = 0; i < nf; i++) {
                avro_schema_t fs = avro_schema_record_field_get_by_index(rs, i);
                const char *name = avro_schema_record_field_name(rs, i);
                int rc = 0;

                e->type[i] = avro_typeof(fs);
                switch (e->type[i]) {
                case AVRO_STRING:
                        snprintf(e->str[i][0], sizeof(e->str[i][0]), "%s-%d-\xc3\xa9-%c",
                                 name, seed, 'A' + (i + seed) % 26);
                        rc = fls_avro_set_str(rec, i, e->str[i][0], strlen(e->str[i][0]));
                        break;
                case AVRO_INT32:
                        e->l[i] = -1000 * (i + 1) - seed;
                        rc = fls_avro_set_int(rec, i, (int32_t)e->l[i]);
                        break;
                case AVRO_INT64:
                        e->l[i] = 1700000000000LL + 1000003LL * i + seed;
                        rc = fls_avro_set_long(rec, i, e->l[i]);
                        break;
                case AVRO_DOUBLE:
                        e->d[i] = (i + 0.25) * 3.5 - seed;
                        rc = fls_avro_set_double(rec, i, e->d[i]);
                        break;
                case AVRO_BOOLEAN:
                        e->l[i] = (i + seed) % 2;
                        rc = fls_avro_set_bool(rec, i, (int)e->l[i]);
                        break;
                case AVRO_ENUM: {
                        int ns = avro_schema_enum_number_of_symbols(fs);
                        e->l[i] = ns - 1 - seed % ns;
                        rc = fls_avro_set_enum(rec, i, (int)e->l[i]);
                        break;
                }
                case AVRO_ARRAY:
                        cr_assert_eq(avro_typeof(avro_schema_array_items(fs)),
                                     AVRO_STRING,
                                     "field %s: only arrays of strings are filled", name);
                        for (int k = 0; k < 3; k++) {
                                snprintf(e->str[i][k], sizeof(e->str[i][k]),
                                         "%s-%d-%d-%c", name, seed, k,
                                         'a' + (k + seed) % 26);
                                rc |= fls_avro_append_str(rec, i, e->str[i][k],
                                                          strlen(e->str[i][k]));
                        }
                        break;
                default:
                        cr_assert_fail("field %s: type %d not covered by the test", name,
                                       (int)e->type[i]);
                }
                cr_assert_eq(rc, 0, "setting field %s: %s", name, avro_strerror());
        }
}

static void expect_str(const char *got, size_t len, const char *want, const char *what)
{
        cr_assert_eq(len, strlen(want), "%s: length %zu, expected %zu ('%.*s' vs '%s')",
                     what, len, strlen(want), (int)len, got, want);
        cr_assert(memcmp(got, want, len) == 0, "%s: '%.*s', expected '%s'", what,
                  (int)len, got, want);
}

/* Compares fields [0, n) of rec with e. */
static void compare(avro_value_t *rec, const struct expect *e, int n)
{
        avro_schema_t rs = avro_value_get_schema(rec);

        for (int i = 0; i < n; i++) {
                const char *name = avro_schema_record_field_name(rs, i);
                size_t len;
                const char *s;

                switch (e->type[i]) {
                case AVRO_STRING:
                        s = fls_avro_str(rec, i, &len);
                        expect_str(s, len, e->str[i][0], name);
                        break;
                case AVRO_INT32:
                        cr_assert_eq(fls_avro_int(rec, i), e->l[i], "%s", name);
                        break;
                case AVRO_INT64:
                        cr_assert_eq(fls_avro_long(rec, i), e->l[i], "%s", name);
                        break;
                case AVRO_DOUBLE:
                        cr_assert(fls_avro_double(rec, i) == e->d[i],
                                  "%s: %g, expected %g", name, fls_avro_double(rec, i),
                                  e->d[i]);
                        break;
                case AVRO_BOOLEAN:
                        cr_assert_eq(fls_avro_bool(rec, i), e->l[i], "%s", name);
                        break;
                case AVRO_ENUM:
                        cr_assert_eq(fls_avro_enum(rec, i), e->l[i], "%s", name);
                        break;
                case AVRO_ARRAY: {
                        avro_value_t arr, item;
                        size_t cnt = 0;
                        cr_assert_eq(avro_value_get_by_index(rec, (size_t)i, &arr, NULL),
                                     0);
                        cr_assert_eq(avro_value_get_size(&arr, &cnt), 0);
                        cr_assert_eq(cnt, 3, "%s: %zu items, expected 3", name, cnt);
                        for (size_t k = 0; k < 3; k++) {
                                cr_assert_eq(
                                    avro_value_get_by_index(&arr, k, &item, NULL), 0);
                                cr_assert_eq(avro_value_get_string(&item, &s, &len), 0);
                                /* Avro C counts the NUL. */
                                cr_assert_gt(len, 0);
                                expect_str(s, len - 1, e->str[i][k], name);
                        }
                        break;
                }
                default:
                        cr_assert_fail("%s: unexpected type", name);
                }
        }
}

/* The whole string, its zigzag length byte in front, is on the wire. */
static void expect_on_wire(const uint8_t *buf, size_t len, const char *s)
{
        size_t sl = strlen(s);

        cr_assert_lt(sl, 64);
        for (size_t i = 1; i + sl <= len; i++)
                if (buf[i - 1] == 2 * sl && memcmp(buf + i, s, sl) == 0)
                        return;
        cr_assert_fail("'%s' (with its length) is not in the encoded bytes", s);
}

/* Encodes rec's codec output, returns a malloc'ed copy. */
static uint8_t *encode_copy(fls_codec_t *c, size_t *lenp)
{
        char err[256] = "";
        const void *buf = NULL;
        uint8_t *copy;

        cr_assert_eq(fls_codec_encode(c, &buf, lenp, err, sizeof(err)), 0, "encode: %s",
                     err);
        cr_assert_not_null(buf);
        copy = malloc(*lenp);
        cr_assert_not_null(copy);
        memcpy(copy, buf, *lenp);
        return copy;
}

/* A valid ClickEvent encoded by the codec. */
static uint8_t *click_message(fls_codec_t *c, size_t *lenp)
{
        struct expect e;

        fill(fls_codec_out(c), 1, &e);
        return encode_copy(c, lenp);
}

/* ---- round trips ----------------------------------------------------------------- */

static void round_trip(const char *subject, int want_id)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, subject, 0, MAX_BYTES);
        struct expect e;
        uint8_t *msg;
        size_t len;
        avro_value_t *v;

        cr_assert_eq(fls_codec_schema_id(c), want_id, "%s: schema id", subject);
        /* Twice through the reused value: the second must not carry the first's
         * array items nor its strings. */
        for (int seed = 0; seed < 2; seed++) {
                fill(fls_codec_out(c), seed, &e);
                msg = encode_copy(c, &len);
                cr_assert_gt(len, 5);
                cr_assert_eq(msg[0], 0, "magic byte");
                cr_assert_eq((uint32_t)msg[1] << 24 | (uint32_t)msg[2] << 16 |
                                 (uint32_t)msg[3] << 8 | msg[4],
                             (uint32_t)want_id, "%s: framed schema id", subject);
                for (int i = 0; i < e.n; i++) {
                        if (e.type[i] == AVRO_STRING)
                                expect_on_wire(msg, len, e.str[i][0]);
                        if (e.type[i] == AVRO_ARRAY)
                                for (int k = 0; k < 3; k++)
                                        expect_on_wire(msg, len, e.str[i][k]);
                }
                v = expect_class(c, msg, len, FLS_BAD_NONE, subject);
                compare(v, &e, e.n);
                free(msg);
        }
        fls_codec_destroy(c);
}

Test(codec, round_trip_click_event)
{
        round_trip("clickstream-value", 1);
}

Test(codec, round_trip_order_event)
{
        round_trip("orders-value", 2);
}

Test(codec, round_trip_shipment_event)
{
        round_trip("shipments-value", 3);
}

Test(codec, round_trip_marketing_action)
{
        round_trip("marketing-actions-value", 4);
}

Test(codec, round_trip_restock_signal)
{
        round_trip("restock-signals-value", 5);
}

Test(codec, round_trip_dispatch_decision)
{
        round_trip("dispatch-decisions-value", 6);
}

/* The hand-made bytes used below are what the codec itself writes. */
Test(codec, hand_made_click_matches_codec)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        avro_value_t *o = fls_codec_out(c);
        struct mb *m = malloc(sizeof(*m));
        uint8_t *enc;
        size_t len;

        fls_avro_set_str(o, idx(c, "event_id"), "ev-1", 4);
        fls_avro_set_str(o, idx(c, "user_id"), "u-1", 3);
        fls_avro_set_str(o, idx(c, "session_id"), "sess-1", 6);
        fls_avro_set_enum(o, idx(c, "type"), 3);
        fls_avro_set_str(o, idx(c, "sku"), "sku-1", 5);
        fls_avro_set_str(o, idx(c, "category"), "shoes", 5);
        fls_avro_set_double(o, idx(c, "price"), 19.5);
        fls_avro_set_int(o, idx(c, "quantity"), 2);
        fls_avro_set_int(o, idx(c, "dwell_ms"), 1500);
        fls_avro_set_str(o, idx(c, "campaign_id"), "", 0);
        fls_avro_set_long(o, idx(c, "ts"), 1700000000123LL);
        enc = encode_copy(c, &len);
        mb_click(m, "u-1", 3, 3, "", 1700000000123LL);
        cr_assert_eq(len, m->n);
        cr_assert(memcmp(enc, m->b, len) == 0, "hand-made bytes differ from the codec's");
        free(enc);
        free(m);
        fls_codec_destroy(c);
}

/* ---- framing and schema ids ----------------------------------------------------------
 */

Test(codec, framing_errors)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        size_t len;
        uint8_t *msg = click_message(c, &len);

        expect_class(c, NULL, 0, FLS_BAD_EMPTY, "null value");
        expect_class(c, msg, 0, FLS_BAD_EMPTY, "empty value");
        for (size_t n = 1; n <= 4; n++)
                expect_class(c, msg, n, FLS_BAD_FRAMING, "short header");
        msg[0] = 1;
        expect_class(c, msg, len, FLS_BAD_FRAMING, "magic byte 1");
        msg[0] = 0xff;
        expect_class(c, msg, len, FLS_BAD_FRAMING, "magic byte 0xff");
        msg[0] = 0;
        expect_class(c, msg, len, FLS_BAD_NONE, "the same message with magic 0");
        free(msg);
        fls_codec_destroy(c);
}

Test(codec, unknown_and_foreign_schema_ids)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        size_t len;
        uint8_t *msg = click_message(c, &len);

        msg[4] = 99;
        expect_class(c, msg, len, FLS_BAD_SCHEMA_ID, "unregistered id 99");
        msg[4] = 2; /* orders-value */
        expect_class(c, msg, len, FLS_BAD_SCHEMA_ID, "id of orders-value");
        msg[4] = 0;
        expect_class(c, msg, len, FLS_BAD_SCHEMA_ID, "id 0");
        /* All four id bytes count: 0x01000001 is not 1. */
        msg[1] = 1, msg[4] = 1;
        expect_class(c, msg, len, FLS_BAD_SCHEMA_ID, "id 0x01000001");
        msg[1] = 0;
        msg[3] = 1;
        expect_class(c, msg, len, FLS_BAD_SCHEMA_ID, "id 0x00000101");
        msg[3] = 0;
        expect_class(c, msg, len, FLS_BAD_NONE, "id 1 again");
        free(msg);
        fls_codec_destroy(c);
}

/* ---- corrupt records ------------------------------------------------------------------
 */

Test(codec, every_truncation_is_rejected_without_leaks)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        size_t len;
        uint8_t *msg = click_message(c, &len);
        long live;

        /* One good decode first: the reused value's buffers exist from here on. */
        expect_class(c, msg, len, FLS_BAD_NONE, "whole message");
        live = t_live;
        t_max_req = 0;
        for (size_t n = 0; n < len; n++) {
                /* A fresh copy of exactly n bytes, so ASan sees any over-read. */
                uint8_t *cut = malloc(n ? n : 1);
                char what[64];
                memcpy(cut, msg, n);
                snprintf(what, sizeof(what), "truncated to %zu of %zu", n, len);
                expect_class(c, n ? cut : NULL, n,
                             n == 0  ? FLS_BAD_EMPTY
                             : n < 5 ? FLS_BAD_FRAMING
                                     : FLS_BAD_AVRO,
                             what);
                free(cut);
        }
        cr_assert_eq(t_live, live, "Avro C holds %ld more blocks after the truncations",
                     t_live - live);
        cr_assert_lt(t_max_req, 4096, "Avro C was asked for %zu bytes", t_max_req);
        expect_class(c, msg, len, FLS_BAD_NONE, "whole message after the truncations");
        free(msg);
        fls_codec_destroy(c);
}

Test(codec, corrupt_lengths_allocate_nothing)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        static const int64_t lens[] = {
            (int64_t)1 << 40, (int64_t)1 << 31, INT64_MAX, -1, -((int64_t)1 << 40), 5};
        struct mb *m = malloc(sizeof(*m));
        long live = t_live;

        for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
                char what[64];
                /* event_id claims lens[k] bytes; 4 are there. */
                mb_header(m, 0, 1);
                mb_varint(m, lens[k]);
                mb_raw(m, "abcd", 4);
                snprintf(what, sizeof(what), "string length %lld", (long long)lens[k]);
                t_max_req = 0;
                expect_class(c, m->b, m->n, FLS_BAD_AVRO, what);
                cr_assert_lt(t_max_req, 4096, "%s: Avro C was asked for %zu bytes", what,
                             t_max_req);
        }
        /* The same in the middle of a full record: user_id claims 2^40 bytes. */
        mb_header(m, 0, 1);
        mb_cstr(m, "ev-1");
        mb_varint(m, (int64_t)1 << 40);
        mb_raw(m, "u-1", 3);
        mb_cstr(m, "sess-1");
        t_max_req = 0;
        expect_class(c, m->b, m->n, FLS_BAD_AVRO, "user_id of 2^40 bytes");
        cr_assert_lt(t_max_req, 4096, "Avro C was asked for %zu bytes", t_max_req);
        cr_assert_eq(t_live, live, "Avro C holds %ld more blocks", t_live - live);
        free(m);
        fls_codec_destroy(c);
}

Test(codec, enum_out_of_range)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        struct mb *m = malloc(sizeof(*m));
        avro_value_t *v;

        mb_click(m, "u-1", 3, 5, "", 1700000000000LL);
        v = expect_class(c, m->b, m->n, FLS_BAD_NONE, "PURCHASE (5)");
        cr_assert_eq(fls_avro_enum(v, idx(c, "type")), 5);
        mb_click(m, "u-1", 3, 6, "", 1700000000000LL);
        expect_class(c, m->b, m->n, FLS_BAD_ENUM, "enum index 6 of 6 symbols");
        mb_click(m, "u-1", 3, -1, "", 1700000000000LL);
        expect_class(c, m->b, m->n, FLS_BAD_ENUM, "enum index -1");
        mb_click(m, "u-1", 3, 1000000, "", 1700000000000LL);
        expect_class(c, m->b, m->n, FLS_BAD_ENUM, "enum index 1000000");
        free(m);
        fls_codec_destroy(c);
}

Test(codec, invalid_utf8)
{
        static const struct {
                const char *bytes;
                fls_bad_t want;
                const char *what;
        } cases[] = {
            {"\xc0\xaf", FLS_BAD_UTF8, "overlong 2-byte '/'"},
            {"\xc1\xbf", FLS_BAD_UTF8, "overlong 2-byte U+7F"},
            {"\xe0\x80\xaf", FLS_BAD_UTF8, "overlong 3-byte '/'"},
            {"\xf0\x80\x80\xaf", FLS_BAD_UTF8, "overlong 4-byte '/'"},
            {"\xed\xa0\x80", FLS_BAD_UTF8, "surrogate U+D800"},
            {"\xed\xbf\xbf", FLS_BAD_UTF8, "surrogate U+DFFF"},
            {"ab\xe2\x82", FLS_BAD_UTF8, "sequence truncated at the end"},
            {"\xe2\x82x", FLS_BAD_UTF8, "sequence truncated mid-string"},
            {"\xc3", FLS_BAD_UTF8, "lead byte alone"},
            {"\x80", FLS_BAD_UTF8, "lone continuation byte"},
            {"u\xff", FLS_BAD_UTF8, "0xFF"},
            {"\xfe", FLS_BAD_UTF8, "0xFE"},
            {"\xf4\x90\x80\x80", FLS_BAD_UTF8, "above U+10FFFF"},
            {"\xf8\x88\x80\x80\x80", FLS_BAD_UTF8, "5-byte form"},
            {"\xc3\xa9", FLS_BAD_NONE, "U+00E9"},
            {"\xe2\x82\xac", FLS_BAD_NONE, "U+20AC"},
            {"\xed\x9f\xbf", FLS_BAD_NONE, "U+D7FF, below the surrogates"},
            {"\xee\x80\x80", FLS_BAD_NONE, "U+E000, above the surrogates"},
            {"\xf0\x9f\x98\x80", FLS_BAD_NONE, "U+1F600"},
            {"\xf4\x8f\xbf\xbf", FLS_BAD_NONE, "U+10FFFF"},
        };
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        struct mb *m = malloc(sizeof(*m));

        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                size_t ulen = strlen(cases[k].bytes);
                avro_value_t *v;
                mb_click(m, cases[k].bytes, ulen, 0, "", 1700000000000LL);
                v = expect_class(c, m->b, m->n, cases[k].want, cases[k].what);
                if (v) {
                        size_t len;
                        const char *s = fls_avro_str(v, idx(c, "user_id"), &len);
                        expect_str(s, len, cases[k].bytes, cases[k].what);
                }
        }
        /* In the last string field too. */
        mb_click(m, "u-1", 3, 0, "camp\xff", 1700000000000LL);
        expect_class(c, m->b, m->n, FLS_BAD_UTF8, "0xFF in campaign_id");
        free(m);
        fls_codec_destroy(c);
}

Test(codec, trailing_bytes)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        size_t len;
        uint8_t *msg = click_message(c, &len);
        uint8_t *big = calloc(1, len + 100);

        memcpy(big, msg, len);
        expect_class(c, big, len, FLS_BAD_NONE, "the record itself");
        expect_class(c, big, len + 1, FLS_BAD_AVRO, "one trailing zero byte");
        expect_class(c, big, len + 100, FLS_BAD_AVRO, "100 trailing bytes");
        free(big);
        free(msg);
        fls_codec_destroy(c);
}

Test(codec, oversize)
{
        struct mb *m = malloc(sizeof(*m));
        char campaign[64];
        fls_codec_t *c;
        size_t base;

        /* A valid record of exactly 64 bytes: at the limit it decodes, one byte
         * lower it is oversize. */
        mb_click(m, "u-1", 3, 0, "", 1700000000000LL);
        base = m->n;
        cr_assert_lt(base, 64);
        memset(campaign, 'c', sizeof(campaign));
        campaign[64 - base] = '\0';
        mb_click(m, "u-1", 3, 0, campaign, 1700000000000LL);
        cr_assert_eq(m->n, 64);
        c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, 64);
        expect_class(c, m->b, m->n, FLS_BAD_NONE, "64 bytes, limit 64");
        fls_codec_destroy(c);
        c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, 63);
        expect_class(c, m->b, m->n, FLS_BAD_OVERSIZE, "64 bytes, limit 63");
        fls_codec_destroy(c);

        /* 70 kB, well framed, against the default limit of 64 KiB. */
        c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        mb_header(m, 0, 1);
        mb_varint(m, 70000);
        memset(m->b + m->n, 'x', 70000);
        m->n += 70000;
        expect_class(c, m->b, m->n, FLS_BAD_OVERSIZE, "70 kB");
        free(m);
        fls_codec_destroy(c);
}

Test(codec, varints)
{
        fls_codec_t *c = open_codec(FLS_SCHEMA_DIR, "clickstream-value", 0, MAX_BYTES);
        struct mb *m = malloc(sizeof(*m));
        avro_value_t *v;
        size_t at;

        /* The longest valid long: 10 bytes. */
        mb_click(m, "u-1", 3, 0, "", INT64_MIN);
        v = expect_class(c, m->b, m->n, FLS_BAD_NONE, "ts = INT64_MIN");
        cr_assert_eq(fls_avro_long(v, idx(c, "ts")), INT64_MIN);

        /* ts as 11 bytes: ten continuation bytes, then a final one. */
        mb_click(m, "u-1", 3, 0, "", 0);
        m->n--;
        for (int i = 0; i < 10; i++)
                m->b[m->n++] = 0x80;
        m->b[m->n++] = 0x01;
        expect_class(c, m->b, m->n, FLS_BAD_AVRO, "11-byte varint in ts");

        /* A string length as 11 bytes, message long enough for any of them. */
        mb_header(m, 0, 1);
        for (int i = 0; i < 11; i++)
                m->b[m->n++] = 0x80;
        m->b[m->n++] = 0x00;
        mb_raw(m, "padding-padding-padding", 23);
        expect_class(c, m->b, m->n, FLS_BAD_AVRO, "12-byte varint as a string length");

        /* quantity (an int) as a 6-byte varint. */
        mb_header(m, 0, 1);
        mb_cstr(m, "ev-1");
        mb_cstr(m, "u-1");
        mb_cstr(m, "sess-1");
        mb_varint(m, 0);
        mb_cstr(m, "sku-1");
        mb_cstr(m, "shoes");
        mb_double(m, 1.0);
        at = m->n;
        mb_raw(m, "\x82\x80\x80\x80\x80\x00", 6);
        mb_varint(m, 0);
        mb_cstr(m, "");
        mb_varint(m, 1700000000000LL);
        expect_class(c, m->b, m->n, FLS_BAD_AVRO, "6-byte varint in an int");
        /* ... and as a 5-byte varint beyond INT32_MAX. */
        memcpy(m->b + at, "\x80\x80\x80\x80\x10\x00", 6);
        expect_class(c, m->b, m->n, FLS_BAD_AVRO, "int beyond INT32_MAX");
        free(m);
        fls_codec_destroy(c);
}

/* ---- schema evolution
 * ------------------------------------------------------------------ */

/* A v1 record read by the v2 reader: the added field takes its default. */
Test(codec, evolution_v1_written_v2_read)
{
        fls_codec_t *w = open_codec(EVO_DIR, "clickstream-value", 1, MAX_BYTES);
        fls_codec_t *r = open_codec(EVO_DIR, "clickstream-value", 7, MAX_BYTES);
        fls_codec_t *latest = open_codec(EVO_DIR, "clickstream-value", 0, MAX_BYTES);
        struct expect e;
        uint8_t *msg;
        size_t len, dlen;
        avro_value_t *v;
        const char *dev;

        cr_assert_eq(fls_codec_schema_id(latest), 7, "reader 0 is the highest id");
        fls_codec_destroy(latest);
        cr_assert_eq(fls_codec_field(w, "device"), -1);
        cr_assert_eq(fls_codec_field(r, "device"), 11);
        fill(fls_codec_out(w), 3, &e);
        msg = encode_copy(w, &len);
        cr_assert_eq(msg[4], 1, "written as id 1");
        v = expect_class(r, msg, len, FLS_BAD_NONE, "v1 record, v2 reader");
        compare(v, &e, e.n);
        dev = fls_avro_str(v, fls_codec_field(r, "device"), &dlen);
        expect_str(dev, dlen, "web", "device (default)");
        /* Twice: the default is there on every decode, not only the first. */
        v = expect_class(r, msg, len, FLS_BAD_NONE, "v1 record again");
        dev = fls_avro_str(v, fls_codec_field(r, "device"), &dlen);
        expect_str(dev, dlen, "web", "device (default, second decode)");
        free(msg);
        fls_codec_destroy(w);
        fls_codec_destroy(r);
}

/* A v2 record read by the v1 reader: the added field is skipped. */
Test(codec, evolution_v2_written_v1_read)
{
        fls_codec_t *w = open_codec(EVO_DIR, "clickstream-value", 7, MAX_BYTES);
        fls_codec_t *r = open_codec(EVO_DIR, "clickstream-value", 1, MAX_BYTES);
        struct expect e;
        uint8_t *msg;
        size_t len;
        avro_value_t *v;

        fill(fls_codec_out(w), 4, &e);
        cr_assert_eq(e.n, 12);
        cr_assert_eq(e.type[11], AVRO_STRING);
        msg = encode_copy(w, &len);
        cr_assert_eq(msg[4], 7, "written as id 7");
        expect_on_wire(msg, len, e.str[11][0]);
        v = expect_class(r, msg, len, FLS_BAD_NONE, "v2 record, v1 reader");
        /* The first 11 fields are the same in both versions. */
        compare(v, &e, 11);
        cr_assert_eq(fls_codec_field(r, "device"), -1);
        /* The v2 reader still sees the written device. */
        fls_codec_destroy(r);
        r = open_codec(EVO_DIR, "clickstream-value", 7, MAX_BYTES);
        v = expect_class(r, msg, len, FLS_BAD_NONE, "v2 record, v2 reader");
        compare(v, &e, e.n);
        free(msg);
        fls_codec_destroy(w);
        fls_codec_destroy(r);
}

Test(codec, unknown_subject_or_reader_id)
{
        char err[256] = "";

        cr_assert_null(fls_codec_new(FLS_SCHEMA_DIR, "no-such-value", 0, MAX_BYTES, err,
                                     sizeof(err)));
        cr_assert(err[0] != '\0');
        err[0] = '\0';
        cr_assert_null(fls_codec_new(FLS_SCHEMA_DIR, "clickstream-value", 2, MAX_BYTES,
                                     err, sizeof(err)));
        cr_assert(err[0] != '\0');
}

/* ---- names
 * ----------------------------------------------------------------------------- */

Test(codec, bad_names)
{
        static const char *const want[FLS_BAD__COUNT] = {
            [FLS_BAD_NONE] = "none",           [FLS_BAD_EMPTY] = "empty",
            [FLS_BAD_OVERSIZE] = "oversize",   [FLS_BAD_FRAMING] = "framing",
            [FLS_BAD_SCHEMA_ID] = "schema_id", [FLS_BAD_AVRO] = "avro",
            [FLS_BAD_ENUM] = "enum",           [FLS_BAD_UTF8] = "utf8",
            [FLS_BAD_VALUE] = "value",         [FLS_BAD_KEY] = "key",
        };

        for (int b = 0; b < FLS_BAD__COUNT; b++) {
                cr_assert_not_null(want[b], "class %d has no expected name in this test",
                                   b);
                cr_assert_str_eq(fls_bad_name((fls_bad_t)b), want[b], "class %d", b);
        }
        cr_assert_str_eq(fls_bad_name(FLS_BAD__COUNT), "unknown");
        cr_assert_str_eq(fls_bad_name((fls_bad_t)-1), "unknown");
}
