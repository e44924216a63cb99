/*
 * codec: Kafka message bytes <-> Avro values, in the Confluent wire format
 * (magic byte 0, 4-byte big-endian schema id, Avro binary body).
 *
 * First stop after Kafka on the input side and last stop before Kafka on the output
 * side. A codec is built once per subject at start-up: it loads the registry file
 * (schema.dir/registry.txt: "<id> <subject> <file>" lines), the reader schema and one
 * resolver per known writer version, and one reused value for each. Decoding a message
 * never allocates: the value returned is the codec's own and is valid until the next
 * decode.
 *
 * Untrusted input is checked before Avro C sees it: Avro C 1.11 allocates whatever a
 * length prefix claims and does not range-check enums, so a validating walk over the
 * writer schema bounds every length by the bytes left, checks enum indexes, union
 * branches and UTF-8 in strings, and rejects trailing bytes. Each rejection carries a
 * class (for the dead-letter header and metrics) and a detail text.
 */
#ifndef FLS_CODEC_H
#define FLS_CODEC_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

/* Why a message is a dead letter. The runtime uses the same classes for its own
 * checks (key, domain). */
typedef enum {
        FLS_BAD_NONE = 0,
        FLS_BAD_EMPTY,     /* null or empty value */
        FLS_BAD_OVERSIZE,  /* larger than input.max_message_bytes */
        FLS_BAD_FRAMING,   /* shorter than the 5-byte header or magic byte not 0 */
        FLS_BAD_SCHEMA_ID, /* id unknown or of another subject */
        FLS_BAD_AVRO,      /* truncated, corrupt length, trailing bytes */
        FLS_BAD_ENUM,      /* enum index or union branch out of range */
        FLS_BAD_UTF8,      /* a string that is not valid UTF-8 */
        FLS_BAD_VALUE,     /* outside the documented domain (negative, NaN, time) */
        FLS_BAD_KEY,       /* message key missing or not the entity it should be */
        FLS_BAD__COUNT
} fls_bad_t;

/* Stable lower-case name of a class ("framing", "schema_id", ...). */
const char *fls_bad_name(fls_bad_t bad);

typedef struct fls_codec fls_codec_t;

/* subject: e.g. "clickstream-value". reader_id: the registry id of the schema the
 * caller reads and writes with; 0 means the subject's highest id. */
fls_codec_t *fls_codec_new(const char *schema_dir, const char *subject, int reader_id,
                           size_t max_bytes, char *errstr, size_t errstr_size);
void fls_codec_destroy(fls_codec_t *codec);

/* Decodes one framed message into the codec's reader value (*valuep). On failure
 * returns the class and writes a detail ("schema id 9 is not registered", ...). */
fls_bad_t fls_codec_decode(fls_codec_t *codec, const void *buf, size_t len,
                           avro_value_t **valuep, char *detail, size_t detail_size);

/* Index of a field of the reader record by name, -1 when absent; for start-up. */
int fls_codec_field(const fls_codec_t *codec, const char *name);
/* Indexes of n fields at once; fails naming the first one the record lacks. */
int fls_codec_fields(const fls_codec_t *codec, const char *const *names, int n, int *idx,
                     char *errstr, size_t errstr_size);

/* Output side: fls_codec_out() resets and returns the codec's value to fill (reader
 * schema); fls_codec_encode() frames it with reader_id into the codec's buffer,
 * valid until the next encode. */
avro_value_t *fls_codec_out(fls_codec_t *codec);
int fls_codec_encode(fls_codec_t *codec, const void **bufp, size_t *lenp, char *errstr,
                     size_t errstr_size);
int fls_codec_schema_id(const fls_codec_t *codec);

/* Field helpers over a record value, by index (no lookups per message). Strings are
 * returned without the terminating NUL that Avro C counts, and stay valid until the
 * value changes. The setters take lengths without the NUL (Avro C wants it counted:
 * this is where that trap is handled). */
const char *fls_avro_str(avro_value_t *rec, int idx, size_t *lenp);
int64_t fls_avro_long(avro_value_t *rec, int idx);
int32_t fls_avro_int(avro_value_t *rec, int idx);
double fls_avro_double(avro_value_t *rec, int idx);
int fls_avro_bool(avro_value_t *rec, int idx);
int fls_avro_enum(avro_value_t *rec, int idx);
int fls_avro_set_str(avro_value_t *rec, int idx, const char *s, size_t len);
int fls_avro_set_long(avro_value_t *rec, int idx, int64_t v);
int fls_avro_set_int(avro_value_t *rec, int idx, int32_t v);
int fls_avro_set_double(avro_value_t *rec, int idx, double v);
int fls_avro_set_bool(avro_value_t *rec, int idx, int v);
int fls_avro_set_enum(avro_value_t *rec, int idx, int v);
/* Appends a string to an array field. */
int fls_avro_append_str(avro_value_t *rec, int idx, const char *s, size_t len);

#endif
