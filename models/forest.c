/*
 * forest.c: random forests of CART trees (see forest.h).
 *
 * Part of the "model" step of Kafka -> Avro -> Redis -> model -> Kafka.
 *
 * Split search uses histogram binning rather than sorting at every node: each feature
 * is cut once, before any tree, into at most 256 bins at quantiles of its training
 * values (exact for features with <= 256 distinct values), and stored as one byte per
 * value. A node's split search for one feature is then one pass over its samples to
 * fill a 256-bin histogram plus a 256-step scan: O(n) instead of O(n log n), which is
 * what makes 100 trees on 100k x 20 train in seconds. Cost: rows*F bytes of bins, and
 * thresholds limited to bin edges (midpoints between neighbouring training values).
 *
 * One criterion serves both kinds: maximise sum_L^2/n_L + sum_R^2/n_R, the variance
 * reduction. For 0/1 labels this is exactly the gini decrease (weighted gini of a node
 * = 2*(c1 - c1^2/n)), so the classifier is a regressor on 0/1 whose leaf mean is
 * P(class 1).
 */
#include "forest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBINS      256
#define MAX_DEPTH  64
#define MAX_TREES  100000
#define PRED_BLOCK 256

struct fls_forest {
        fls_forest_type_t type;
        size_t nf;
        size_t ntrees;
        uint32_t *roots;
        fls_forest_node_t *nodes;
        size_t nnodes;
};

static void seterr(char *errstr, size_t n, const char *fmt, ...)
{
        if (!errstr || n == 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
}

/* splitmix64: tiny, fast, well mixed, and the same on every platform (rand() is not). */
static uint64_t sm64(uint64_t *s)
{
        uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

/* Uniform in [0, n); modulo bias < n / 2^64, irrelevant here. */
static size_t rand_below(uint64_t *s, size_t n)
{
        return (size_t)(sm64(s) % n);
}

void fls_forest_opts_default(fls_forest_opts_t *o, fls_forest_type_t type)
{
        memset(o, 0, sizeof(*o));
        o->n_trees = 100;
        o->max_depth = 12;
        o->min_samples_leaf = type == FLS_FOREST_REGRESSOR ? 5 : 1;
        o->mtry = 0;
        o->sample_fraction = 1.0;
        o->bootstrap = 1;
        o->seed = 1;
}

/* ---- binning ------------------------------------------------------------------------
 */

static int cmp_float(const void *a, const void *b)
{
        float x = *(const float *)a, y = *(const float *)b;
        return (x > y) - (x < y);
}

/* A threshold strictly between a < b (the midpoint, or a when they are adjacent floats),
 * so that "v <= t" sends every training value <= a left and every value >= b right. */
static float mid(float a, float b)
{
        float m = (float)(((double)a + (double)b) * 0.5);
        return (m >= a && m < b) ? m : a;
}

/* Edges of feature f from its sorted values s[0..n): nedges <= NBINS-1. */
static size_t make_edges(const float *s, size_t n, float *edges)
{
        size_t ne = 0, distinct = 1;
        for (size_t i = 1; i < n && distinct <= NBINS; i++)
                distinct += s[i] != s[i - 1];
        if (distinct <= NBINS) {
                for (size_t i = 1; i < n; i++)
                        if (s[i] != s[i - 1])
                                edges[ne++] = mid(s[i - 1], s[i]);
                return ne;
        }
        for (size_t q = 1; q < NBINS; q++) {
                size_t pos = q * n / NBINS;
                float v = s[pos];
                /* first value greater than v (upper bound) */
                size_t lo = pos, hi = n;
                while (lo < hi) {
                        size_t m = lo + (hi - lo) / 2;
                        if (s[m] <= v)
                                lo = m + 1;
                        else
                                hi = m;
                }
                if (lo == n)
                        break;
                float e = mid(v, s[lo]);
                if (ne == 0 || e > edges[ne - 1])
                        edges[ne++] = e;
        }
        return ne;
}

/* Bin index: first b with v <= edges[b], else ne. */
static uint8_t bin_of(const float *edges, size_t ne, float v)
{
        size_t lo = 0, hi = ne;
        while (lo < hi) {
                size_t m = lo + (hi - lo) / 2;
                if (v <= edges[m])
                        hi = m;
                else
                        lo = m + 1;
        }
        return (uint8_t)lo;
}

/* ---- training -----------------------------------------------------------------------
 */

typedef struct {
        uint32_t lo, hi; /* samples idx[lo..hi) */
        uint32_t depth;
        uint32_t node; /* index relative to the tree root */
} pending_t;

typedef struct {
        size_t rows, nf;
        const float *y;
        const uint8_t *bins;  /* [nf][rows] */
        const float *edges;   /* [nf][NBINS-1] */
        const size_t *nedges; /* [nf] */
        const fls_forest_opts_t *o;
        size_t mtry;
        uint32_t *idx; /* sample of the current tree */
        size_t *perm;  /* feature permutation, nf */
        double *hcnt;  /* NBINS */
        double *hsum;  /* NBINS */
        pending_t *stack;
        /* output */
        fls_forest_node_t *nodes;
        size_t nnodes, cap;
} trainer_t;

static int push_node(trainer_t *t)
{
        if (t->nnodes == t->cap) {
                size_t nc = t->cap ? t->cap * 2 : 1024;
                fls_forest_node_t *n = realloc(t->nodes, nc * sizeof(*n));
                if (!n)
                        return -1;
                t->nodes = n;
                t->cap = nc;
        }
        fls_forest_node_t *n = &t->nodes[t->nnodes++];
        n->feature = -1;
        n->threshold = 0;
        n->left = n->right = -1;
        n->value = 0;
        return 0;
}

/* Best split of idx[lo..hi) over features: sets *bf, *bb, returns gain > 0 or 0. */
static double best_split(trainer_t *t, uint64_t *rng, uint32_t lo, uint32_t hi,
                         double sum, size_t *bf, size_t *bb)
{
        size_t n = hi - lo, msl = t->o->min_samples_leaf;
        double parent = sum * sum / (double)n, best = 0;
        for (size_t j = 0; j < t->nf; j++)
                t->perm[j] = j;
        for (size_t k = 0; k < t->nf; k++) {
                /* Try mtry features; go on past mtry only while nothing splits, as
                 * CART implementations do, so constant features do not end a branch. */
                if (k >= t->mtry && best > 0)
                        break;
                size_t r = k + rand_below(rng, t->nf - k);
                size_t f = t->perm[r];
                t->perm[r] = t->perm[k];
                t->perm[k] = f;
                size_t ne = t->nedges[f];
                if (ne == 0)
                        continue;
                const uint8_t *bins = t->bins + f * t->rows;
                memset(t->hcnt, 0, (ne + 1) * sizeof(double));
                memset(t->hsum, 0, (ne + 1) * sizeof(double));
                for (uint32_t i = lo; i < hi; i++) {
                        uint32_t s = t->idx[i];
                        t->hcnt[bins[s]] += 1;
                        t->hsum[bins[s]] += t->y[s];
                }
                double cl = 0, sl = 0;
                for (size_t b = 0; b < ne; b++) {
                        cl += t->hcnt[b];
                        sl += t->hsum[b];
                        if (t->hcnt[b] == 0 && b > 0)
                                continue; /* same partition as the previous edge */
                        double cr = (double)n - cl;
                        if (cl < (double)msl)
                                continue;
                        if (cr < (double)msl)
                                break;
                        double sr = sum - sl;
                        double g = sl * sl / cl + sr * sr / cr - parent;
                        if (g > best + 1e-12 * fabs(parent) + 1e-12) {
                                best = g;
                                *bf = f;
                                *bb = b;
                        }
                }
        }
        return best;
}

static int grow_tree(trainer_t *t, uint64_t *rng, size_t nsample)
{
        size_t root = t->nnodes;
        if (push_node(t) < 0)
                return -1;
        size_t sp = 0;
        t->stack[sp++] = (pending_t){0, (uint32_t)nsample, 0, 0};
        while (sp > 0) {
                pending_t p = t->stack[--sp];
                size_t n = p.hi - p.lo;
                double sum = 0, sq = 0;
                for (uint32_t i = p.lo; i < p.hi; i++) {
                        double v = t->y[t->idx[i]];
                        sum += v;
                        sq += v * v;
                }
                double mean = sum / (double)n;
                size_t f = 0, b = 0;
                int split = p.depth < t->o->max_depth &&
                            n >= 2 * t->o->min_samples_leaf &&
                            sq - sum * mean > 1e-12 * (sq + 1e-30) &&
                            best_split(t, rng, p.lo, p.hi, sum, &f, &b) > 0;
                fls_forest_node_t *node = &t->nodes[root + p.node];
                if (!split) {
                        node->value = (float)mean;
                        continue;
                }
                /* partition: bin <= b to the left */
                const uint8_t *bins = t->bins + f * t->rows;
                uint32_t i = p.lo, j = p.hi;
                while (i < j) {
                        if (bins[t->idx[i]] <= b) {
                                i++;
                        } else {
                                uint32_t tmp = t->idx[i];
                                t->idx[i] = t->idx[--j];
                                t->idx[j] = tmp;
                        }
                }
                size_t l = t->nnodes - root;
                if (push_node(t) < 0 || push_node(t) < 0)
                        return -1;
                node = &t->nodes[root + p.node]; /* realloc may have moved it */
                node->feature = (int32_t)f;
                node->threshold = t->edges[f * (NBINS - 1) + b];
                node->left = (int32_t)l;
                node->right = (int32_t)(l + 1);
                node->value = (float)mean;
                t->stack[sp++] = (pending_t){i, p.hi, p.depth + 1, (uint32_t)(l + 1)};
                t->stack[sp++] = (pending_t){p.lo, i, p.depth + 1, (uint32_t)l};
        }
        return 0;
}

fls_forest_t *fls_forest_train(fls_forest_type_t type, const float *x, const float *y,
                               size_t rows, size_t nfeatures, const fls_forest_opts_t *o,
                               char *errstr, size_t errstr_size)
{
        fls_forest_opts_t def;
        if (!o) {
                fls_forest_opts_default(&def, type);
                o = &def;
        }
        if (type != FLS_FOREST_CLASSIFIER && type != FLS_FOREST_REGRESSOR) {
                seterr(errstr, errstr_size, "forest: unknown type %d", (int)type);
                return NULL;
        }
        if (!x || !y || rows < 2 || rows > UINT32_MAX / 2 || nfeatures == 0 ||
            nfeatures > 100000 || rows > SIZE_MAX / nfeatures / sizeof(float)) {
                seterr(errstr, errstr_size, "forest: bad input (%zu rows, %zu features)",
                       rows, nfeatures);
                return NULL;
        }
        if (o->n_trees == 0 || o->n_trees > MAX_TREES || o->max_depth > MAX_DEPTH ||
            o->min_samples_leaf == 0 || o->mtry > nfeatures ||
            !(o->sample_fraction > 0) ||
            o->sample_fraction > (o->bootstrap ? 10.0 : 1.0)) {
                seterr(errstr, errstr_size,
                       "forest: bad options (n_trees %zu, max_depth %zu (max %d), "
                       "min_samples_leaf %zu, mtry %zu, sample_fraction %g)",
                       o->n_trees, o->max_depth, MAX_DEPTH, o->min_samples_leaf, o->mtry,
                       o->sample_fraction);
                return NULL;
        }
        for (size_t i = 0; i < rows; i++) {
                if (!isfinite(y[i]) ||
                    (type == FLS_FOREST_CLASSIFIER && y[i] != 0.0f && y[i] != 1.0f)) {
                        seterr(errstr, errstr_size, "forest: y[%zu] = %g is not %s", i,
                               (double)y[i],
                               type == FLS_FOREST_CLASSIFIER ? "0 or 1" : "finite");
                        return NULL;
                }
        }
        size_t nsample = (size_t)((double)rows * o->sample_fraction);
        if (nsample < 1)
                nsample = 1;
        trainer_t t = {0};
        t.rows = rows;
        t.nf = nfeatures;
        t.y = y;
        t.o = o;
        t.mtry = o->mtry;
        if (t.mtry == 0) {
                t.mtry = type == FLS_FOREST_CLASSIFIER ? (size_t)sqrt((double)nfeatures)
                                                       : nfeatures / 3;
                if (t.mtry == 0)
                        t.mtry = 1;
        }
        uint8_t *bins = malloc(rows * nfeatures);
        float *edges = malloc(nfeatures * (NBINS - 1) * sizeof(float));
        size_t *nedges = malloc(nfeatures * sizeof(size_t));
        float *col = malloc(rows * sizeof(float));
        uint32_t *all = malloc((rows > nsample ? rows : nsample) * sizeof(uint32_t));
        t.idx = all;
        t.perm = malloc(nfeatures * sizeof(size_t));
        t.hcnt = malloc(NBINS * sizeof(double));
        t.hsum = malloc(NBINS * sizeof(double));
        t.stack = malloc(2 * (MAX_DEPTH + 2) * sizeof(pending_t));
        uint32_t *roots = malloc(o->n_trees * sizeof(uint32_t));
        fls_forest_t *f = NULL;
        if (!bins || !edges || !nedges || !col || !all || !t.perm || !t.hcnt || !t.hsum ||
            !t.stack || !roots) {
                seterr(errstr, errstr_size, "forest: out of memory");
                goto out;
        }
        for (size_t j = 0; j < nfeatures; j++) {
                for (size_t i = 0; i < rows; i++) {
                        col[i] = x[i * nfeatures + j];
                        if (!isfinite(col[i])) {
                                seterr(errstr, errstr_size,
                                       "forest: x[%zu][%zu] is not finite (impute first)",
                                       i, j);
                                goto out;
                        }
                }
                qsort(col, rows, sizeof(float), cmp_float);
                float *e = edges + j * (NBINS - 1);
                nedges[j] = make_edges(col, rows, e);
                for (size_t i = 0; i < rows; i++)
                        bins[j * rows + i] = bin_of(e, nedges[j], x[i * nfeatures + j]);
        }
        t.bins = bins;
        t.edges = edges;
        t.nedges = nedges;
        for (size_t k = 0; k < o->n_trees; k++) {
                /* One stream per tree, derived from (seed, k): trees do not depend on
                 * each other's draws, so a parallel trainer could give the same forest.
                 */
                uint64_t rng = o->seed ^ (0xD1B54A32D192ED03ull * (k + 1));
                sm64(&rng);
                if (o->bootstrap) {
                        for (size_t i = 0; i < nsample; i++)
                                all[i] = (uint32_t)rand_below(&rng, rows);
                } else {
                        for (size_t i = 0; i < rows; i++)
                                all[i] = (uint32_t)i;
                        for (size_t i = 0; i < nsample; i++) { /* partial Fisher-Yates */
                                size_t r = i + rand_below(&rng, rows - i);
                                uint32_t tmp = all[i];
                                all[i] = all[r];
                                all[r] = tmp;
                        }
                }
                if (t.nnodes > UINT32_MAX - (1u << 20)) {
                        seterr(errstr, errstr_size, "forest: too many nodes");
                        goto out;
                }
                roots[k] = (uint32_t)t.nnodes;
                if (grow_tree(&t, &rng, nsample) < 0) {
                        seterr(errstr, errstr_size, "forest: out of memory");
                        goto out;
                }
        }
        f = calloc(1, sizeof(*f));
        if (!f) {
                seterr(errstr, errstr_size, "forest: out of memory");
                goto out;
        }
        f->type = type;
        f->nf = nfeatures;
        f->ntrees = o->n_trees;
        f->roots = roots;
        roots = NULL;
        f->nnodes = t.nnodes;
        fls_forest_node_t *shrunk = realloc(t.nodes, t.nnodes * sizeof(*shrunk));
        f->nodes = shrunk ? shrunk : t.nodes;
        t.nodes = NULL;
out:
        free(bins);
        free(edges);
        free(nedges);
        free(col);
        free(all);
        free(t.perm);
        free(t.hcnt);
        free(t.hsum);
        free(t.stack);
        free(t.nodes);
        free(roots);
        return f;
}

/* ---- construction from nodes, accessors ----------------------------------------------
 */

fls_forest_t *fls_forest_from_nodes(fls_forest_type_t type, size_t nfeatures,
                                    const uint32_t *roots, size_t ntrees,
                                    const fls_forest_node_t *nodes, size_t nnodes,
                                    char *errstr, size_t errstr_size)
{
        if (type != FLS_FOREST_CLASSIFIER && type != FLS_FOREST_REGRESSOR) {
                seterr(errstr, errstr_size, "forest: unknown type %d", (int)type);
                return NULL;
        }
        if (nfeatures == 0 || nfeatures > INT32_MAX || ntrees == 0 ||
            ntrees > MAX_TREES || nnodes < ntrees || nnodes > UINT32_MAX || !roots ||
            !nodes) {
                seterr(errstr, errstr_size,
                       "forest: bad shape (%zu features, %zu trees, %zu nodes)",
                       nfeatures, ntrees, nnodes);
                return NULL;
        }
        if (roots[0] != 0) {
                seterr(errstr, errstr_size, "forest: tree 0 does not start at node 0");
                return NULL;
        }
        for (size_t k = 0; k < ntrees; k++) {
                size_t start = roots[k];
                size_t end = k + 1 < ntrees ? roots[k + 1] : nnodes;
                if (end <= start || end > nnodes) {
                        seterr(errstr, errstr_size, "forest: tree %zu has bad bounds", k);
                        return NULL;
                }
                size_t size = end - start;
                for (size_t i = 0; i < size; i++) {
                        const fls_forest_node_t *n = &nodes[start + i];
                        if (n->feature == -1) {
                                if (!isfinite(n->value)) {
                                        seterr(errstr, errstr_size,
                                               "forest: tree %zu node %zu: leaf value "
                                               "not finite",
                                               k, i);
                                        return NULL;
                                }
                                continue;
                        }
                        /* children strictly after the parent: walks always end */
                        if (n->feature < 0 || (size_t)n->feature >= nfeatures ||
                            isnan(n->threshold) || n->left <= (int32_t)i ||
                            n->right <= (int32_t)i || (size_t)n->left >= size ||
                            (size_t)n->right >= size) {
                                seterr(errstr, errstr_size,
                                       "forest: tree %zu node %zu is malformed "
                                       "(feature %d, children %d/%d, %zu nodes)",
                                       k, i, (int)n->feature, (int)n->left, (int)n->right,
                                       size);
                                return NULL;
                        }
                }
        }
        fls_forest_t *f = calloc(1, sizeof(*f));
        if (!f)
                goto oom;
        f->type = type;
        f->nf = nfeatures;
        f->ntrees = ntrees;
        f->nnodes = nnodes;
        f->roots = malloc(ntrees * sizeof(uint32_t));
        f->nodes = malloc(nnodes * sizeof(fls_forest_node_t));
        if (!f->roots || !f->nodes)
                goto oom;
        memcpy(f->roots, roots, ntrees * sizeof(uint32_t));
        memcpy(f->nodes, nodes, nnodes * sizeof(fls_forest_node_t));
        for (size_t i = 0; i < nnodes; i++)
                if (f->nodes[i].feature == -1)
                        f->nodes[i].left = f->nodes[i].right = -1;
        return f;
oom:
        fls_forest_destroy(f);
        seterr(errstr, errstr_size, "forest: out of memory");
        return NULL;
}

void fls_forest_destroy(fls_forest_t *f)
{
        if (!f)
                return;
        free(f->roots);
        free(f->nodes);
        free(f);
}

fls_forest_type_t fls_forest_type(const fls_forest_t *f)
{
        return f->type;
}

size_t fls_forest_nfeatures(const fls_forest_t *f)
{
        return f->nf;
}

size_t fls_forest_ntrees(const fls_forest_t *f)
{
        return f->ntrees;
}

const uint32_t *fls_forest_roots(const fls_forest_t *f)
{
        return f->roots;
}

const fls_forest_node_t *fls_forest_nodes(const fls_forest_t *f, size_t *nnodes)
{
        if (nnodes)
                *nnodes = f->nnodes;
        return f->nodes;
}

/* ---- prediction
 * ------------------------------------------------------------------------ Tree-major
 * over blocks of PRED_BLOCK rows: one tree's nodes (a few hundred KB at depth 12, less
 * near the root where most visits are) stay hot while the block's rows stream through;
 * the block's rows (256 * F floats) stay in L1/L2 across trees. Accumulators are double
 * on the stack: float sums of squares would lose the spread of large values to
 * cancellation. */
void fls_forest_predict(const fls_forest_t *f, const float *x, size_t rows, float *out,
                        float *spread)
{
        double acc[PRED_BLOCK], acc2[PRED_BLOCK];
        size_t nf = f->nf;
        double inv = 1.0 / (double)f->ntrees;
        for (size_t r0 = 0; r0 < rows; r0 += PRED_BLOCK) {
                size_t nb = rows - r0 < PRED_BLOCK ? rows - r0 : PRED_BLOCK;
                memset(acc, 0, nb * sizeof(double));
                memset(acc2, 0, nb * sizeof(double));
                for (size_t k = 0; k < f->ntrees; k++) {
                        const fls_forest_node_t *t = f->nodes + f->roots[k];
                        for (size_t r = 0; r < nb; r++) {
                                const float *xr = x + (r0 + r) * nf;
                                int32_t i = 0;
                                while (t[i].feature >= 0)
                                        i = xr[t[i].feature] <= t[i].threshold
                                                ? t[i].left
                                                : t[i].right;
                                double v = t[i].value;
                                acc[r] += v;
                                acc2[r] += v * v;
                        }
                }
                for (size_t r = 0; r < nb; r++) {
                        double m = acc[r] * inv;
                        out[r0 + r] = (float)m;
                        if (spread) {
                                double var = acc2[r] * inv - m * m;
                                spread[r0 + r] = (float)sqrt(var > 0 ? var : 0);
                        }
                }
        }
}
