/*
 * forest.h: random forests of CART trees (gini classifier for 0/1 labels, variance
 * regressor), for the "model" step of Kafka -> Avro -> Redis -> model -> Kafka; usually
 * wrapped in an fls_model_t (model.h).
 *
 * Training: bootstrap sample per tree, mtry features drawn per node, exact split search
 * on the node's sorted values (O(n log n) per candidate feature per node), seeded with
 * an internal splitmix64 PRNG so the same seed gives the same forest on any machine.
 * Trees are stored as one flat array of nodes; prediction walks tree by tree over a
 * block of rows so that one tree stays in cache while the rows stream through it.
 */
#ifndef FLS_FOREST_H
#define FLS_FOREST_H

#include <stddef.h>
#include <stdint.h>

typedef struct fls_forest fls_forest_t;

typedef enum {
        FLS_FOREST_CLASSIFIER = 0, /* y in {0,1}; output = mean of leaf P(class 1) */
        FLS_FOREST_REGRESSOR = 1,  /* output = mean of leaf means */
} fls_forest_type_t;

/* A node. Internal: feature >= 0, go left if x[feature] <= threshold (NaN goes right),
 * left/right are indexes relative to the tree's first node. Leaf: feature = -1, value
 * is the prediction (P(class 1) or mean), left = right = -1. */
typedef struct {
        int32_t feature;
        float threshold;
        int32_t left;
        int32_t right;
        float value;
} fls_forest_node_t;

typedef struct {
        size_t n_trees;          /* default 100 */
        size_t max_depth;        /* default 12; root is depth 0 */
        size_t min_samples_leaf; /* default 1 (classifier), 5 (regressor) */
        size_t mtry;             /* features tried per node; 0 = sqrt(F) clf, F/3 reg */
        double sample_fraction;  /* bootstrap sample size / rows, default 1.0 */
        int bootstrap;           /* 1 (default): draw with replacement; 0: all rows */
        uint64_t seed;           /* default 1 */
} fls_forest_opts_t;

void fls_forest_opts_default(fls_forest_opts_t *o, fls_forest_type_t type);

/* x: rows * nfeatures floats row-major, y: rows floats (0/1 for the classifier). NaN in
 * x or y is an error (impute before training). */
fls_forest_t *fls_forest_train(fls_forest_type_t type, const float *x, const float *y,
                               size_t rows, size_t nfeatures, const fls_forest_opts_t *o,
                               char *errstr, size_t errstr_size);
/* Build from flat nodes (model loading, tests). roots[t] is the index of tree t's first
 * node in nodes; tree t spans roots[t] .. roots[t+1]-1 (the last up to nnodes). The
 * structure is validated: child indexes in range and strictly after their parent (so no
 * cycles), feature < nfeatures. Copies its inputs. */
fls_forest_t *fls_forest_from_nodes(fls_forest_type_t type, size_t nfeatures,
                                    const uint32_t *roots, size_t ntrees,
                                    const fls_forest_node_t *nodes, size_t nnodes,
                                    char *errstr, size_t errstr_size);
void fls_forest_destroy(fls_forest_t *f); /* NULL-safe */

fls_forest_type_t fls_forest_type(const fls_forest_t *f);
size_t fls_forest_nfeatures(const fls_forest_t *f);
size_t fls_forest_ntrees(const fls_forest_t *f);
const uint32_t *fls_forest_roots(const fls_forest_t *f); /* ntrees values */
const fls_forest_node_t *fls_forest_nodes(const fls_forest_t *f, size_t *nnodes);

/* out[r] = mean over trees; if spread is not NULL, spread[r] = population std of the
 * trees' predictions (for the classifier: of the trees' P(class 1)). Never allocates. */
void fls_forest_predict(const fls_forest_t *f, const float *x, size_t rows, float *out,
                        float *spread);

#endif
