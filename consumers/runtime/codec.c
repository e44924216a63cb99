/*
 * codec: Confluent-framed Avro <-> reused Avro C values.
 *
 * Sits right after the Kafka poll (decode) and right before the produce (encode).
 * Everything heavy (schemas, resolvers, values, the memory reader and writer) is made
 * once in fls_codec_new(); the per-message cost is a validating walk over the bytes
 * plus Avro C's value decode, both without allocation.
 *
 * The walk exists because Avro C trusts its input: a string length of 2^40 is
 * allocated before the read fails, enum indexes are not range-checked. Walking the
 * writer schema first costs about as much as a second decode of the scalars, and buys
 * the guarantee that Avro C only ever sees a well-formed record.
 */
#include "codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLS_CODEC_MAX_VERSIONS 16
#define FLS_CODEC_MAX_DEPTH    32
#define FLS_CODEC_HDR          5

static const char *bad_names[FLS_BAD__COUNT] = {
    [FLS_BAD_NONE] = "none",           [FLS_BAD_EMPTY] = "empty",
    [FLS_BAD_OVERSIZE] = "oversize",   [FLS_BAD_FRAMING] = "framing",
    [FLS_BAD_SCHEMA_ID] = "schema_id", [FLS_BAD_AVRO] = "avro",
    [FLS_BAD_ENUM] = "enum",           [FLS_BAD_UTF8] = "utf8",
    [FLS_BAD_VALUE] = "value",         [FLS_BAD_KEY] = "key",
};

const char *fls_bad_name(fls_bad_t bad)
{
        if ((int)bad < 0 || bad >= FLS_BAD__COUNT)
                return "unknown";
        return bad_names[bad];
}

struct version {
        int id;
        avro_schema_t schema;
        char *json;                   /* the .avsc text: field defaults */
        avro_value_iface_t *resolver; /* NULL when the writer is the reader schema */
        avro_value_t resolved;        /* wraps codec->value */
        /* Avro C's resolver has no field defaults. Reader fields this writer lacks
         * are appended to a copy of the writer schema, and their encoded defaults to
         * each message body before the resolver reads it. */
        uint8_t *trailer;
        size_t trailer_len;
};

struct fls_codec {
        size_t max_bytes;
        int reader_id;
        avro_schema_t reader;
        avro_value_iface_t *iface;
        avro_value_t value; /* decode target */
        avro_value_t out;   /* encode source */
        avro_reader_t rd;
        avro_writer_t wr;
        char *obuf;
        size_t obuf_size;
        char *scratch; /* body + trailer, when a version has one */
        struct version versions[FLS_CODEC_MAX_VERSIONS];
        int nversions;
};

static int load_schema(const char *dir, const char *file, avro_schema_t *schema,
                       char **jsonp, char *errstr, size_t errstr_size)
{
        char path[1024];
        FILE *fp;
        char *text;
        long len;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        fp = fopen(path, "rb");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        fseek(fp, 0, SEEK_END);
        len = ftell(fp);
        rewind(fp);
        text = malloc(len > 0 ? (size_t)len + 1 : 1);
        if (!text || fread(text, 1, (size_t)len, fp) != (size_t)len) {
                snprintf(errstr, errstr_size, "%s: read failed", path);
                free(text);
                fclose(fp);
                return -1;
        }
        fclose(fp);
        text[len] = '\0';
        if (avro_schema_from_json_length(text, (size_t)len, schema)) {
                snprintf(errstr, errstr_size, "%s: %s", path, avro_strerror());
                free(text);
                return -1;
        }
        *jsonp = text;
        return 0;
}

/* Reads registry.txt and loads every version of the subject. */
static int load_registry(fls_codec_t *c, const char *dir, const char *subject,
                         char *errstr, size_t errstr_size)
{
        char path[1024], line[512], subj[256], file[256];
        FILE *fp;
        int lineno = 0, id;

        snprintf(path, sizeof(path), "%s/registry.txt", dir);
        fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        while (fgets(line, sizeof(line), fp)) {
                char *p = line;
                lineno++;
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '#' || *p == '\n' || *p == '\0')
                        continue;
                if (sscanf(p, "%d %255s %255s", &id, subj, file) != 3 || id <= 0) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: expected '<id> <subject> <file>'", path, lineno);
                        fclose(fp);
                        return -1;
                }
                if (strcmp(subj, subject) != 0)
                        continue;
                if (c->nversions == FLS_CODEC_MAX_VERSIONS) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: more than %d versions of %s", path, lineno,
                                 FLS_CODEC_MAX_VERSIONS, subject);
                        fclose(fp);
                        return -1;
                }
                if (load_schema(dir, file, &c->versions[c->nversions].schema,
                                &c->versions[c->nversions].json, errstr, errstr_size)) {
                        fclose(fp);
                        return -1;
                }
                c->versions[c->nversions++].id = id;
        }
        fclose(fp);
        if (c->nversions == 0) {
                snprintf(errstr, errstr_size, "%s: no schema for subject '%s'", path,
                         subject);
                return -1;
        }
        return 0;
}

/* ---- field defaults (schema evolution) -------------------------------------- */

/* Just enough JSON to find a field's "default" in an .avsc text that Avro C has
 * already parsed (so it is well-formed). */
static const char *js_ws(const char *p)
{
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
        return p;
}

static const char *js_skip(const char *p)
{
        int depth = 0;

        p = js_ws(p);
        do {
                if (*p == '"') {
                        for (p++; *p && *p != '"'; p++)
                                if (*p == '\\' && p[1])
                                        p++;
                        if (*p)
                                p++;
                } else if (*p == '{' || *p == '[') {
                        depth++, p++;
                } else if (*p == '}' || *p == ']') {
                        depth--, p++;
                } else if (depth > 0) {
                        p++;
                } else {
                        while (*p && !strchr(",}] \t\r\n", *p))
                                p++;
                }
        } while (*p && depth > 0);
        return js_ws(p);
}

/* Decodes the JSON string at p (ASCII escapes only); -1 when it is none. */
static int js_str(const char *p, char *out, size_t size, size_t *lenp)
{
        size_t n = 0;

        p = js_ws(p);
        if (*p++ != '"')
                return -1;
        for (; *p && *p != '"'; p++) {
                char ch = *p;
                if (ch == '\\') {
                        unsigned cp;
                        switch (*++p) {
                        case '"':
                        case '\\':
                        case '/':
                                ch = *p;
                                break;
                        case 'n':
                                ch = '\n';
                                break;
                        case 't':
                                ch = '\t';
                                break;
                        case 'r':
                                ch = '\r';
                                break;
                        case 'u':
                                if (sscanf(p + 1, "%4x", &cp) != 1 || cp >= 0x80)
                                        return -1;
                                ch = (char)cp;
                                p += 4;
                                break;
                        default:
                                return -1;
                        }
                }
                if (n + 1 >= size)
                        return -1;
                out[n++] = ch;
        }
        out[n] = '\0';
        *lenp = n;
        return *p == '"' ? 0 : -1;
}

/* The value of key in the object at p, NULL when absent. */
static const char *js_get(const char *p, const char *key)
{
        char name[256];
        size_t n;

        p = js_ws(p);
        if (*p != '{')
                return NULL;
        p = js_ws(p + 1);
        while (*p == '"') {
                int match =
                    js_str(p, name, sizeof(name), &n) == 0 && strcmp(name, key) == 0;
                p = js_ws(js_skip(p));
                if (*p++ != ':')
                        return NULL;
                if (match)
                        return js_ws(p);
                p = js_skip(p);
                if (*p == ',')
                        p = js_ws(p + 1);
        }
        return NULL;
}

/* The default of the top-level record field named field, NULL when it has none. */
static const char *js_field_default(const char *json, const char *field)
{
        const char *p = js_get(json, "fields");
        char name[256];
        size_t n;

        if (!p || *p != '[')
                return NULL;
        for (p = js_ws(p + 1); *p == '{'; p = js_ws(p + 1)) {
                const char *nm = js_get(p, "name");
                if (nm && js_str(nm, name, sizeof(name), &n) == 0 &&
                    strcmp(name, field) == 0)
                        return js_get(p, "default");
                p = js_skip(p);
                if (*p != ',')
                        break;
        }
        return NULL;
}

static int put(uint8_t *buf, size_t *n, size_t size, const void *p, size_t len)
{
        if (*n + len > size)
                return -1;
        memcpy(buf + *n, p, len);
        *n += len;
        return 0;
}

static int put_varint(uint8_t *buf, size_t *n, size_t size, int64_t v)
{
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        uint8_t b;

        while (z >= 0x80) {
                b = (uint8_t)(z | 0x80);
                if (put(buf, n, size, &b, 1))
                        return -1;
                z >>= 7;
        }
        b = (uint8_t)z;
        return put(buf, n, size, &b, 1);
}

/* Appends the Avro binary encoding of the JSON default d of schema s. */
static int encode_default(avro_schema_t s, const char *d, uint8_t *buf, size_t *n,
                          size_t size)
{
        char text[1024];
        size_t len;

        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return strncmp(d, "null", 4) ? -1 : 0;
        case AVRO_BOOLEAN: {
                uint8_t b = strncmp(d, "true", 4) == 0;
                if (!b && strncmp(d, "false", 5))
                        return -1;
                return put(buf, n, size, &b, 1);
        }
        case AVRO_INT32:
        case AVRO_INT64:
                return put_varint(buf, n, size, strtoll(d, NULL, 10));
        case AVRO_FLOAT: {
                float f = strtof(d, NULL);
                uint32_t u;
                uint8_t le[4];
                memcpy(&u, &f, 4);
                for (int i = 0; i < 4; i++)
                        le[i] = (uint8_t)(u >> (8 * i));
                return put(buf, n, size, le, 4);
        }
        case AVRO_DOUBLE: {
                double f = strtod(d, NULL);
                uint64_t u;
                uint8_t le[8];
                memcpy(&u, &f, 8);
                for (int i = 0; i < 8; i++)
                        le[i] = (uint8_t)(u >> (8 * i));
                return put(buf, n, size, le, 8);
        }
        case AVRO_STRING:
        case AVRO_BYTES:
                if (js_str(d, text, sizeof(text), &len) ||
                    put_varint(buf, n, size, (int64_t)len))
                        return -1;
                return put(buf, n, size, text, len);
        case AVRO_ENUM: {
                int i;
                if (js_str(d, text, sizeof(text), &len))
                        return -1;
                i = avro_schema_enum_get_by_name(s, text);
                return i < 0 ? -1 : put_varint(buf, n, size, i);
        }
        case AVRO_UNION: /* the default is of the first branch */
                if (put_varint(buf, n, size, 0))
                        return -1;
                return encode_default(avro_schema_union_branch(s, 0), d, buf, n, size);
        case AVRO_ARRAY:
        case AVRO_MAP: /* empty only */
                if (js_ws(d + 1)[0] != (avro_typeof(s) == AVRO_ARRAY ? ']' : '}'))
                        return -1;
                return put_varint(buf, n, size, 0);
        case AVRO_LINK:
                return encode_default(avro_schema_link_target(s), d, buf, n, size);
        default:
                return -1;
        }
}

/* The schema the resolver reads a version with: the writer's, plus the reader fields
 * it lacks (their defaults go to v->trailer). */
static avro_schema_t writer_plus(struct version *v, avro_schema_t reader,
                                 const char *reader_json, char *errstr,
                                 size_t errstr_size)
{
        uint8_t buf[4096];
        size_t n = 0, nf = avro_schema_record_size(reader), missing = 0;
        avro_schema_t w = v->schema, wp;

        if (!is_avro_record(w))
                return avro_schema_incref(w);
        for (size_t f = 0; f < nf; f++)
                missing += avro_schema_record_field_get_index(
                               w, avro_schema_record_field_name(reader, (int)f)) < 0;
        if (!missing)
                return avro_schema_incref(w);
        wp = avro_schema_record(avro_schema_name(w), avro_schema_namespace(w));
        if (!wp) {
                snprintf(errstr, errstr_size, "%s", avro_strerror());
                return NULL;
        }
        for (size_t f = 0; f < avro_schema_record_size(w); f++)
                avro_schema_record_field_append(
                    wp, avro_schema_record_field_name(w, (int)f),
                    avro_schema_record_field_get_by_index(w, (int)f));
        for (size_t f = 0; f < nf; f++) {
                const char *name = avro_schema_record_field_name(reader, (int)f);
                avro_schema_t fs = avro_schema_record_field_get_by_index(reader, (int)f);
                const char *d;
                if (avro_schema_record_field_get_index(w, name) >= 0)
                        continue;
                d = js_field_default(reader_json, name);
                if (!d || encode_default(fs, d, buf, &n, sizeof(buf))) {
                        snprintf(
                            errstr, errstr_size,
                            "schema id %d lacks field %s, which has no usable default",
                            v->id, name);
                        avro_schema_decref(wp);
                        return NULL;
                }
                avro_schema_record_field_append(wp, name, fs);
        }
        v->trailer = malloc(n ? n : 1);
        if (!v->trailer) {
                snprintf(errstr, errstr_size, "out of memory");
                avro_schema_decref(wp);
                return NULL;
        }
        memcpy(v->trailer, buf, n);
        v->trailer_len = n;
        return wp;
}

fls_codec_t *fls_codec_new(const char *schema_dir, const char *subject, int reader_id,
                           size_t max_bytes, char *errstr, size_t errstr_size)
{
        fls_codec_t *c = calloc(1, sizeof(*c));
        struct version *rv = NULL;
        size_t trailer_max = 0;
        int i;

        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->max_bytes = max_bytes;
        if (load_registry(c, schema_dir, subject, errstr, errstr_size))
                goto fail;
        for (i = 0; i < c->nversions; i++) {
                struct version *v = &c->versions[i];
                if (reader_id ? v->id == reader_id : (!rv || v->id > rv->id))
                        rv = v;
        }
        if (!rv) {
                snprintf(errstr, errstr_size, "schema id %d is not a version of %s",
                         reader_id, subject);
                goto fail;
        }
        c->reader_id = rv->id;
        c->reader = avro_schema_incref(rv->schema);
        if (!is_avro_record(c->reader)) {
                snprintf(errstr, errstr_size, "%s: reader schema is not a record",
                         subject);
                goto fail;
        }
        c->iface = avro_generic_class_from_schema(c->reader);
        if (!c->iface || avro_generic_value_new(c->iface, &c->value) ||
            avro_generic_value_new(c->iface, &c->out)) {
                snprintf(errstr, errstr_size, "%s: %s", subject, avro_strerror());
                goto fail;
        }
        for (i = 0; i < c->nversions; i++) {
                struct version *v = &c->versions[i];
                avro_schema_t wp;
                if (v == rv || avro_schema_equal(v->schema, c->reader))
                        continue;
                wp = writer_plus(v, c->reader, rv->json, errstr, errstr_size);
                if (!wp)
                        goto fail;
                if (v->trailer_len > trailer_max)
                        trailer_max = v->trailer_len;
                v->resolver = avro_resolved_writer_new(wp, c->reader);
                avro_schema_decref(wp);
                if (!v->resolver) {
                        snprintf(errstr, errstr_size,
                                 "%s: schema id %d cannot be read as id %d: %s", subject,
                                 v->id, rv->id, avro_strerror());
                        goto fail;
                }
                if (avro_resolved_writer_new_value(v->resolver, &v->resolved)) {
                        snprintf(errstr, errstr_size, "%s: %s", subject, avro_strerror());
                        avro_value_iface_decref(v->resolver);
                        v->resolver = NULL;
                        goto fail;
                }
                avro_resolved_writer_set_dest(&v->resolved, &c->value);
        }
        c->rd = avro_reader_memory("", 0);
        c->obuf_size = 1024;
        c->obuf = malloc(c->obuf_size);
        c->wr = avro_writer_memory(c->obuf, (int64_t)c->obuf_size);
        if (trailer_max)
                c->scratch = malloc(max_bytes + trailer_max);
        if (!c->rd || !c->obuf || !c->wr || (trailer_max && !c->scratch)) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        return c;
fail:
        fls_codec_destroy(c);
        return NULL;
}

void fls_codec_destroy(fls_codec_t *c)
{
        int i;

        if (!c)
                return;
        for (i = 0; i < c->nversions; i++) {
                struct version *v = &c->versions[i];
                if (v->resolver) {
                        avro_value_decref(&v->resolved);
                        avro_value_iface_decref(v->resolver);
                }
                avro_schema_decref(v->schema);
                free(v->json);
                free(v->trailer);
        }
        if (c->iface) {
                avro_value_decref(&c->value);
                avro_value_decref(&c->out);
                avro_value_iface_decref(c->iface);
        }
        if (c->reader)
                avro_schema_decref(c->reader);
        if (c->rd)
                avro_reader_free(c->rd);
        if (c->wr)
                avro_writer_free(c->wr);
        free(c->obuf);
        free(c->scratch);
        free(c);
}

int fls_codec_schema_id(const fls_codec_t *c)
{
        return c->reader_id;
}

int fls_codec_field(const fls_codec_t *c, const char *name)
{
        return avro_schema_record_field_get_index(c->reader, name);
}

int fls_codec_fields(const fls_codec_t *c, const char *const *names, int n, int *idx,
                     char *errstr, size_t errstr_size)
{
        for (int i = 0; i < n; i++) {
                idx[i] = fls_codec_field(c, names[i]);
                if (idx[i] < 0) {
                        snprintf(errstr, errstr_size, "%s has no field '%s'",
                                 avro_schema_name(c->reader), names[i]);
                        return -1;
                }
        }
        return 0;
}

/* ---- validating walk ---------------------------------------------------- */

struct walk {
        const uint8_t *start, *p, *end;
        fls_bad_t bad;
        char *detail;
        size_t detail_size;
};

static int walk_fail(struct walk *w, fls_bad_t bad, const char *what)
{
        w->bad = bad;
        snprintf(w->detail, w->detail_size, "%s at byte %zu", what,
                 (size_t)(w->p - w->start));
        return -1;
}

static int read_varint(struct walk *w, int maxbytes, int64_t *out)
{
        uint64_t v = 0;
        int shift = 0, i;

        for (i = 0; i < maxbytes; i++) {
                uint8_t b;
                if (w->p >= w->end)
                        return walk_fail(w, FLS_BAD_AVRO, "truncated varint");
                b = *w->p++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
                        return 0;
                }
                shift += 7;
        }
        return walk_fail(w, FLS_BAD_AVRO, "varint too long");
}

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n)
{
        size_t i = 0;

        while (i < n) {
                uint8_t c = s[i];
                size_t k;
                uint32_t cp;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        k = 1, cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        k = 2, cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        k = 3, cp = c & 0x07;
                } else {
                        return 0;
                }
                if (i + k >= n)
                        return 0;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i + j] & 0x3f);
                }
                if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
                    (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                i += k + 1;
        }
        return 1;
}

static int walk_len(struct walk *w, int64_t *lenp)
{
        if (read_varint(w, 10, lenp))
                return -1;
        if (*lenp < 0)
                return walk_fail(w, FLS_BAD_AVRO, "negative length");
        if (*lenp > w->end - w->p)
                return walk_fail(w, FLS_BAD_AVRO, "length beyond the message");
        return 0;
}

static int walk_value(struct walk *w, avro_schema_t s, int depth)
{
        int64_t n, i;

        if (depth > FLS_CODEC_MAX_DEPTH)
                return walk_fail(w, FLS_BAD_AVRO, "nesting too deep");
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN:
                if (w->p >= w->end)
                        return walk_fail(w, FLS_BAD_AVRO, "truncated boolean");
                if (*w->p > 1)
                        return walk_fail(w, FLS_BAD_AVRO, "boolean not 0 or 1");
                w->p++;
                return 0;
        case AVRO_INT32:
                if (read_varint(w, 5, &n))
                        return -1;
                if (n < INT32_MIN || n > INT32_MAX)
                        return walk_fail(w, FLS_BAD_AVRO, "int out of range");
                return 0;
        case AVRO_INT64:
                return read_varint(w, 10, &n);
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                int64_t sz = avro_typeof(s) == AVRO_FLOAT ? 4 : 8;
                if (w->end - w->p < sz)
                        return walk_fail(w, FLS_BAD_AVRO, "truncated number");
                w->p += sz;
                return 0;
        }
        case AVRO_STRING:
        case AVRO_BYTES:
                if (walk_len(w, &n))
                        return -1;
                if (avro_typeof(s) == AVRO_STRING && !utf8_valid(w->p, (size_t)n))
                        return walk_fail(w, FLS_BAD_UTF8, "string is not valid UTF-8");
                w->p += n;
                return 0;
        case AVRO_FIXED:
                n = avro_schema_fixed_size(s);
                if (w->end - w->p < n)
                        return walk_fail(w, FLS_BAD_AVRO, "truncated fixed");
                w->p += n;
                return 0;
        case AVRO_ENUM:
                if (read_varint(w, 5, &n))
                        return -1;
                if (n < 0 || n >= avro_schema_enum_number_of_symbols(s))
                        return walk_fail(w, FLS_BAD_ENUM, "enum index out of range");
                return 0;
        case AVRO_UNION:
                if (read_varint(w, 5, &n))
                        return -1;
                if (n < 0 || (size_t)n >= avro_schema_union_size(s))
                        return walk_fail(w, FLS_BAD_ENUM, "union branch out of range");
                return walk_value(w, avro_schema_union_branch(s, (int)n), depth + 1);
        case AVRO_RECORD:
                for (size_t f = 0; f < avro_schema_record_size(s); f++) {
                        if (walk_value(w,
                                       avro_schema_record_field_get_by_index(s, (int)f),
                                       depth + 1))
                                return -1;
                }
                return 0;
        case AVRO_ARRAY:
        case AVRO_MAP:
                for (;;) {
                        if (read_varint(w, 10, &n))
                                return -1;
                        if (n == 0)
                                return 0;
                        if (n < 0) {
                                int64_t bytes;
                                if (n == INT64_MIN)
                                        return walk_fail(w, FLS_BAD_AVRO,
                                                         "bad block count");
                                n = -n;
                                if (walk_len(w, &bytes))
                                        return -1;
                        }
                        /* Every item takes at least one byte except nulls; a count
                         * larger than the bytes left is corrupt, and Avro C would
                         * allocate for it. */
                        if (n > w->end - w->p + 1)
                                return walk_fail(w, FLS_BAD_AVRO,
                                                 "block count beyond the message");
                        for (i = 0; i < n; i++) {
                                if (avro_typeof(s) == AVRO_MAP) {
                                        int64_t klen;
                                        if (walk_len(w, &klen))
                                                return -1;
                                        if (!utf8_valid(w->p, (size_t)klen))
                                                return walk_fail(
                                                    w, FLS_BAD_UTF8,
                                                    "map key is not valid UTF-8");
                                        w->p += klen;
                                }
                                if (walk_value(w,
                                               avro_typeof(s) == AVRO_MAP
                                                   ? avro_schema_map_values(s)
                                                   : avro_schema_array_items(s),
                                               depth + 1))
                                        return -1;
                        }
                }
        case AVRO_LINK:
                return walk_value(w, avro_schema_link_target(s), depth + 1);
        default:
                return walk_fail(w, FLS_BAD_AVRO, "unsupported schema type");
        }
}

fls_bad_t fls_codec_decode(fls_codec_t *c, const void *buf, size_t len,
                           avro_value_t **valuep, char *detail, size_t detail_size)
{
        const uint8_t *b = buf;
        struct version *v = NULL;
        struct walk w;
        uint32_t id;
        int i;

        if (!buf || len == 0) {
                snprintf(detail, detail_size, "empty message");
                return FLS_BAD_EMPTY;
        }
        if (len > c->max_bytes) {
                snprintf(detail, detail_size, "%zu bytes, limit %zu", len, c->max_bytes);
                return FLS_BAD_OVERSIZE;
        }
        if (len < FLS_CODEC_HDR || b[0] != 0) {
                if (len < FLS_CODEC_HDR)
                        snprintf(detail, detail_size,
                                 "%zu bytes, shorter than the 5-byte header", len);
                else
                        snprintf(detail, detail_size, "magic byte %u, expected 0",
                                 (unsigned)b[0]);
                return FLS_BAD_FRAMING;
        }
        id = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
        for (i = 0; i < c->nversions; i++) {
                if ((uint32_t)c->versions[i].id == id) {
                        v = &c->versions[i];
                        break;
                }
        }
        if (!v) {
                snprintf(detail, detail_size,
                         "schema id %u is not a version of this topic", id);
                return FLS_BAD_SCHEMA_ID;
        }
        w.start = b;
        w.p = b + FLS_CODEC_HDR;
        w.end = b + len;
        w.bad = FLS_BAD_NONE;
        w.detail = detail;
        w.detail_size = detail_size;
        if (walk_value(&w, v->schema, 0))
                return w.bad;
        if (w.p != w.end) {
                snprintf(detail, detail_size, "%zu trailing bytes after the record",
                         (size_t)(w.end - w.p));
                return FLS_BAD_AVRO;
        }
        if (v->trailer_len) {
                memcpy(c->scratch, b + FLS_CODEC_HDR, len - FLS_CODEC_HDR);
                memcpy(c->scratch + len - FLS_CODEC_HDR, v->trailer, v->trailer_len);
                avro_reader_memory_set_source(
                    c->rd, c->scratch, (int64_t)(len - FLS_CODEC_HDR + v->trailer_len));
        } else {
                avro_reader_memory_set_source(c->rd, (const char *)b + FLS_CODEC_HDR,
                                              (int64_t)(len - FLS_CODEC_HDR));
        }
        if (avro_value_read(c->rd, v->resolver ? &v->resolved : &c->value)) {
                snprintf(detail, detail_size, "avro: %s", avro_strerror());
                return FLS_BAD_AVRO;
        }
        *valuep = &c->value;
        return FLS_BAD_NONE;
}

avro_value_t *fls_codec_out(fls_codec_t *c)
{
        /* Arrays in a reused value keep growing unless reset. */
        avro_value_reset(&c->out);
        return &c->out;
}

int fls_codec_encode(fls_codec_t *c, const void **bufp, size_t *lenp, char *errstr,
                     size_t errstr_size)
{
        size_t size;

        if (avro_value_sizeof(&c->out, &size)) {
                snprintf(errstr, errstr_size, "avro sizeof: %s", avro_strerror());
                return -1;
        }
        if (size + FLS_CODEC_HDR > c->obuf_size) {
                size_t nsize = c->obuf_size;
                char *nbuf;
                while (nsize < size + FLS_CODEC_HDR)
                        nsize *= 2;
                nbuf = realloc(c->obuf, nsize);
                if (!nbuf) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                c->obuf = nbuf;
                c->obuf_size = nsize;
        }
        c->obuf[0] = 0;
        c->obuf[1] = (char)((uint32_t)c->reader_id >> 24);
        c->obuf[2] = (char)((uint32_t)c->reader_id >> 16);
        c->obuf[3] = (char)((uint32_t)c->reader_id >> 8);
        c->obuf[4] = (char)c->reader_id;
        avro_writer_memory_set_dest(c->wr, c->obuf + FLS_CODEC_HDR, (int64_t)size);
        if (avro_value_write(c->wr, &c->out)) {
                snprintf(errstr, errstr_size, "avro write: %s", avro_strerror());
                return -1;
        }
        *bufp = c->obuf;
        *lenp = size + FLS_CODEC_HDR;
        return 0;
}

/* ---- field helpers ------------------------------------------------------ */

static avro_value_t field(avro_value_t *rec, int idx)
{
        avro_value_t f;
        avro_value_get_by_index(rec, (size_t)idx, &f, NULL);
        return f;
}

const char *fls_avro_str(avro_value_t *rec, int idx, size_t *lenp)
{
        avro_value_t f = field(rec, idx);
        const char *s = NULL;
        size_t size = 0;

        if (avro_value_get_string(&f, &s, &size) || !s || size == 0) {
                *lenp = 0;
                return "";
        }
        *lenp = size - 1;
        return s;
}

int64_t fls_avro_long(avro_value_t *rec, int idx)
{
        avro_value_t f = field(rec, idx);
        int64_t v = 0;
        avro_value_get_long(&f, &v);
        return v;
}

int32_t fls_avro_int(avro_value_t *rec, int idx)
{
        avro_value_t f = field(rec, idx);
        int32_t v = 0;
        avro_value_get_int(&f, &v);
        return v;
}

double fls_avro_double(avro_value_t *rec, int idx)
{
        avro_value_t f = field(rec, idx);
        double v = 0;
        avro_value_get_double(&f, &v);
        return v;
}

int fls_avro_bool(avro_value_t *rec, int idx)
{
        avro_value_t f = field(rec, idx);
        int v = 0;
        avro_value_get_boolean(&f, &v);
        return v;
}

int fls_avro_enum(avro_value_t *rec, int idx)
{
        avro_value_t f = field(rec, idx);
        int v = 0;
        avro_value_get_enum(&f, &v);
        return v;
}

/* Avro C counts the terminating NUL in a string's length, so the bytes handed over
 * must be NUL-terminated: slices (Kafka keys, parts of ids) are copied to a stack
 * buffer first, and only unusually long strings cost an allocation. */
static int set_string(avro_value_t *f, const char *s, size_t len)
{
        char stack[512];
        char *tmp = len < sizeof(stack) ? stack : malloc(len + 1);
        int rc;

        if (!tmp)
                return ENOMEM;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        rc = avro_value_set_string_len(f, tmp, len + 1);
        if (tmp != stack)
                free(tmp);
        return rc;
}

int fls_avro_set_str(avro_value_t *rec, int idx, const char *s, size_t len)
{
        avro_value_t f = field(rec, idx);
        return set_string(&f, s, len);
}

int fls_avro_set_long(avro_value_t *rec, int idx, int64_t v)
{
        avro_value_t f = field(rec, idx);
        return avro_value_set_long(&f, v);
}

int fls_avro_set_int(avro_value_t *rec, int idx, int32_t v)
{
        avro_value_t f = field(rec, idx);
        return avro_value_set_int(&f, v);
}

int fls_avro_set_double(avro_value_t *rec, int idx, double v)
{
        avro_value_t f = field(rec, idx);
        return avro_value_set_double(&f, v);
}

int fls_avro_set_bool(avro_value_t *rec, int idx, int v)
{
        avro_value_t f = field(rec, idx);
        return avro_value_set_boolean(&f, v);
}

int fls_avro_set_enum(avro_value_t *rec, int idx, int v)
{
        avro_value_t f = field(rec, idx);
        return avro_value_set_enum(&f, v);
}

int fls_avro_append_str(avro_value_t *rec, int idx, const char *s, size_t len)
{
        avro_value_t arr = field(rec, idx), elem;
        int rc = avro_value_append(&arr, &elem, NULL);
        return rc ? rc : set_string(&elem, s, len);
}
