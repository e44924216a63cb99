/*
 * fuzz_model: the model file loader, at the "model" step of
 * Kafka -> Avro -> Redis -> model -> Kafka. Model files are trusted more than Kafka
 * messages, but a truncated copy, a file from another build or a bit flip must fail
 * with a message, never crash a consumer at start-up or make it score out of bounds.
 *
 * The input is a model file. A file starting with "FLSM" gets its size field and its
 * CRC-32 patched before loading: otherwise nearly every mutation would stop at the
 * checksum and the parser behind it would never be reached (the checksum check itself
 * is covered by tests/test_model.c). An accepted model must: know its own feature
 * names, score a small batch (predict and, for forests, predict_spread), and survive
 * save + load with identical predictions, bit for bit.
 */
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define HEADER_SIZE 20 /* magic, version, kind, total size: models/model.c */
#define ROWS        3
#define MAX_CELLS   (1 << 16) /* rows * seq_len * nfeatures scored per input */

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
        uint32_t c = 0xFFFFFFFFu;

        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFFu;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
        for (int i = 0; i < bytes; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* Raw inputs with NaN, zeros and large values: what a consumer may hand over. */
static void fill_rows(float *x, size_t n)
{
        for (size_t i = 0; i < n; i++)
                x[i] = i % 7 == 3 ? NAN : (float)((double)(i % 5) - 2.0) * 1e3f;
}

static int same(const float *a, const float *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (memcmp(&a[i], &b[i], sizeof(float)) != 0 &&
                    !(isnan(a[i]) && isnan(b[i])))
                        return 0;
        return 1;
}

static void score(fls_model_t *m, const float *x, float *out, float *spread)
{
        char err[512];
        fls_model_kind_t kind = fls_model_kind(m);

        if (fls_model_reserve(m, ROWS, err, sizeof(err)) ||
            fls_model_predict(m, x, ROWS, out, err, sizeof(err)))
                fls_fuzz_fail("model", "cannot score a loaded model: %s", err);
        if (kind == FLS_MODEL_FOREST_CLS || kind == FLS_MODEL_FOREST_REG) {
                if (fls_model_predict_spread(m, x, ROWS, out + ROWS, spread, err,
                                             sizeof(err)))
                        fls_fuzz_fail("model", "forest spread: %s", err);
        }
}

static void check(fls_model_t *m)
{
        size_t nf = fls_model_nfeatures(m), t = fls_model_seq_len(m), cells;
        const char **names;
        float *x, out1[2 * ROWS] = {0}, out2[2 * ROWS] = {0}, sp1[ROWS] = {0},
                           sp2[ROWS] = {0};
        const char *path = fls_fuzz_path("b");
        fls_model_t *again;
        char err[512];

        if (nf == 0 || t == 0 || !fls_model_name(m) || !fls_model_version(m) ||
            !fls_model_meta(m) || fls_model_feature_name(m, nf) != NULL ||
            strcmp(fls_model_kind_name(fls_model_kind(m)), "?") == 0)
                fls_fuzz_fail("model", "accessors of a loaded model disagree");
        names = malloc(nf * sizeof(*names));
        if (!names)
                fls_fuzz_fail("model", "out of memory");
        for (size_t i = 0; i < nf; i++)
                if (!(names[i] = fls_model_feature_name(m, i)))
                        fls_fuzz_fail("model", "feature %zu has no name", i);
        if (fls_model_check_features(m, names, nf, err, sizeof(err)))
                fls_fuzz_fail("model", "rejects its own features: %s", err);
        err[0] = '\0';
        if (fls_model_check_features(m, names, nf - 1, err, sizeof(err)) == 0 || !err[0])
                fls_fuzz_fail("model", "accepts %zu of its %zu features", nf - 1, nf);
        free(names);

        cells = ROWS * t * nf;
        if (cells > MAX_CELLS)
                return; /* valid but too big to score on every input */
        x = malloc(cells * sizeof(float));
        if (!x)
                fls_fuzz_fail("model", "out of memory");
        fill_rows(x, cells);
        score(m, x, out1, sp1);
        if (fls_model_save(m, path, err, sizeof(err)))
                fls_fuzz_fail("model", "save: %s", err);
        again = fls_model_load(path, err, sizeof(err));
        if (!again)
                fls_fuzz_fail("model", "saved model does not load: %s", err);
        score(again, x, out2, sp2);
        if (!same(out1, out2, 2 * ROWS) || !same(sp1, sp2, ROWS))
                fls_fuzz_fail("model", "predictions change after save + load");
        fls_model_destroy(again);
        free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *path = fls_fuzz_path("a");
        uint8_t *buf = malloc(size ? size : 1);
        fls_model_t *m;
        char err[512];

        if (!buf)
                fls_fuzz_fail("model", "out of memory");
        memcpy(buf, data, size);
        if (size >= HEADER_SIZE + 4 && memcmp(buf, "FLSM", 4) == 0) {
                put_le(buf + 12, size, 8);
                put_le(buf + size - 4, crc32_ieee(buf, size - 4), 4);
        }
        if (fls_fuzz_write(path, buf, size))
                fls_fuzz_fail("model", "cannot write %s", path);
        free(buf);
        err[0] = '\0';
        m = fls_model_load(path, err, sizeof(err));
        if (!m) {
                if (!err[0])
                        fls_fuzz_fail("model", "load failed without a message");
                return 0;
        }
        check(m);
        fls_model_destroy(m);
        return 0;
}
