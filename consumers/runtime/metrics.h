/*
 * metrics: Prometheus counters, gauges and histograms, and the HTTP endpoint that
 * serves them (/metrics in the text exposition format, /healthz) from one background
 * thread per process.
 *
 * Series are registered at start-up (name + fixed label set) and updated on the hot
 * path with relaxed atomics only: no lock, no allocation, no formatting per event.
 */
#ifndef FLS_METRICS_H
#define FLS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fls_metrics fls_metrics_t;
typedef struct fls_counter fls_counter_t;
typedef struct fls_gauge fls_gauge_t;
typedef struct fls_hist fls_hist_t;

fls_metrics_t *fls_metrics_new(void);
void fls_metrics_destroy(fls_metrics_t *m); /* stops the server thread; NULL-safe */

/* labels: Prometheus label text without braces, e.g. "topic=\"orders\"", or "".
 * Registering the same name+labels twice returns the same series. Handles live as
 * long as m. Returns NULL only when out of memory. */
fls_counter_t *fls_metrics_counter(fls_metrics_t *m, const char *name, const char *help,
                                   const char *labels);
fls_gauge_t *fls_metrics_gauge(fls_metrics_t *m, const char *name, const char *help,
                               const char *labels);
/* bounds: ascending upper bounds of the buckets (+Inf is implied), copied. */
fls_hist_t *fls_metrics_hist(fls_metrics_t *m, const char *name, const char *help,
                             const char *labels, const double *bounds, size_t nbounds);

void fls_counter_add(fls_counter_t *c, uint64_t n);
uint64_t fls_counter_get(const fls_counter_t *c);
void fls_gauge_set(fls_gauge_t *g, double v);
void fls_hist_observe(fls_hist_t *h, double v);

/* Renders every series in the text format into a malloc'ed string (caller frees). */
char *fls_metrics_render(fls_metrics_t *m);

/* Serves /metrics and /healthz on host:port (port 0 picks a free one; the chosen port
 * is written to *bound_port when not NULL). /healthz answers 200 "ok" while healthy,
 * 503 with the reason otherwise. */
int fls_metrics_serve(fls_metrics_t *m, const char *host, int port, int *bound_port,
                      char *errstr, size_t errstr_size);
void fls_metrics_set_health(fls_metrics_t *m, int healthy, const char *reason);

#endif
