/*
 * data_strmap: the join map of the dataset readers. FNV-1a hashing, power-of-two
 * table kept at most half full so that probe runs stay short.
 */
#include "data_strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fls_strmap {
        char **keys;
        int *values;
        size_t cap, n;
};

static uint64_t hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}

fls_strmap_t *fls_strmap_new(void)
{
        fls_strmap_t *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->cap = 64;
        m->keys = calloc(m->cap, sizeof(*m->keys));
        m->values = calloc(m->cap, sizeof(*m->values));
        if (!m->keys || !m->values) {
                fls_strmap_destroy(m);
                return NULL;
        }
        return m;
}

void fls_strmap_destroy(fls_strmap_t *m)
{
        if (!m)
                return;
        if (m->keys)
                for (size_t i = 0; i < m->cap; i++)
                        free(m->keys[i]);
        free(m->keys);
        free(m->values);
        free(m);
}

static size_t slot(char *const *keys, size_t cap, const char *key)
{
        size_t i = (size_t)hash(key) & (cap - 1);
        while (keys[i] && strcmp(keys[i], key) != 0)
                i = (i + 1) & (cap - 1);
        return i;
}

static int grow(fls_strmap_t *m)
{
        size_t cap = m->cap * 2;
        char **keys = calloc(cap, sizeof(*keys));
        int *values = calloc(cap, sizeof(*values));
        if (!keys || !values) {
                free(keys);
                free(values);
                return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
                if (!m->keys[i])
                        continue;
                size_t j = slot(keys, cap, m->keys[i]);
                keys[j] = m->keys[i];
                values[j] = m->values[i];
        }
        free(m->keys);
        free(m->values);
        m->keys = keys;
        m->values = values;
        m->cap = cap;
        return 0;
}

int fls_strmap_put(fls_strmap_t *m, const char *key, int value)
{
        if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
                return -1;
        size_t i = slot(m->keys, m->cap, key);
        if (!m->keys[i]) {
                m->keys[i] = strdup(key);
                if (!m->keys[i])
                        return -1;
                m->n++;
        }
        m->values[i] = value;
        return 0;
}

int fls_strmap_get(const fls_strmap_t *m, const char *key)
{
        size_t i = slot(m->keys, m->cap, key);
        return m->keys[i] ? m->values[i] : -1;
}

size_t fls_strmap_size(const fls_strmap_t *m)
{
        return m->n;
}
