/*
 * test_metrics: the exact Prometheus text of counters, gauges and histograms, the
 * lock-free updates under contention, and the HTTP endpoint spoken to over loopback
 * with plain sockets, the way Prometheus and a Kubernetes probe would.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "testutil.h"

Test(metrics, counter_and_gauge_grouped_by_name)
{
        fls_metrics_t *m = fls_metrics_new();
        fls_counter_t *orders, *clicks, *again;
        fls_gauge_t *lag, *special;
        char *text;

        cr_assert_not_null(m);
        orders = fls_metrics_counter(m, "fls_messages_total", "Messages read.",
                                     "topic=\"orders\"");
        lag = fls_metrics_gauge(m, "fls_lag_seconds", "Consumer lag.\nIn \\seconds.", "");
        clicks = fls_metrics_counter(m, "fls_messages_total", "Messages read.",
                                     "topic=\"clicks\"");
        special = fls_metrics_gauge(m, "fls_odd", "Odd values.", "k=\"nan\"");
        again = fls_metrics_counter(m, "fls_messages_total", "Messages read.",
                                    "topic=\"orders\"");
        cr_assert(orders && lag && clicks && special);
        cr_assert_eq(again, orders, "same name and labels give the same series");
        /* The same name as another type would make the scrape invalid. */
        cr_assert_null(fls_metrics_gauge(m, "fls_messages_total", "x", "topic=\"x\""));

        fls_counter_add(orders, 2);
        fls_counter_add(again, 1);
        fls_counter_add(clicks, 0);
        cr_assert_eq(fls_counter_get(orders), 3);
        fls_gauge_set(lag, 0.1);
        fls_gauge_set(special, NAN);
        text = fls_metrics_render(m);
        cr_assert_str_eq(text, "# HELP fls_messages_total Messages read.\n"
                               "# TYPE fls_messages_total counter\n"
                               "fls_messages_total{topic=\"orders\"} 3\n"
                               "fls_messages_total{topic=\"clicks\"} 0\n"
                               "# HELP fls_lag_seconds Consumer lag.\\nIn \\\\seconds.\n"
                               "# TYPE fls_lag_seconds gauge\n"
                               "fls_lag_seconds 0.1\n"
                               "# HELP fls_odd Odd values.\n"
                               "# TYPE fls_odd gauge\n"
                               "fls_odd{k=\"nan\"} NaN\n");
        free(text);

        fls_gauge_set(lag, -INFINITY);
        fls_gauge_set(special, 1e300);
        text = fls_metrics_render(m);
        cr_assert(strstr(text, "fls_lag_seconds -Inf\n"), "%s", text);
        cr_assert(strstr(text, "fls_odd{k=\"nan\"} 1e+300\n"), "%s", text);
        free(text);
        fls_metrics_destroy(m);
        fls_metrics_destroy(NULL);
}

Test(metrics, histogram)
{
        static const double bounds[] = {0.25, 1, 5};
        fls_metrics_t *m = fls_metrics_new();
        fls_hist_t *h, *hl;
        char *text;

        h = fls_metrics_hist(m, "fls_batch_seconds", "Batch time.", "", bounds, 3);
        hl = fls_metrics_hist(m, "fls_batch_seconds", "Batch time.", "c=\"orders\"",
                              bounds, 1);
        cr_assert(h && hl);
        fls_hist_observe(h, 0.25); /* on a bound: counted in that bucket (le) */
        fls_hist_observe(h, 0.5);
        fls_hist_observe(h, 2);
        fls_hist_observe(h, 10);
        fls_hist_observe(hl, 0.125);
        fls_hist_observe(hl, 3);
        text = fls_metrics_render(m);
        cr_assert_str_eq(text, "# HELP fls_batch_seconds Batch time.\n"
                               "# TYPE fls_batch_seconds histogram\n"
                               "fls_batch_seconds_bucket{le=\"0.25\"} 1\n"
                               "fls_batch_seconds_bucket{le=\"1\"} 2\n"
                               "fls_batch_seconds_bucket{le=\"5\"} 3\n"
                               "fls_batch_seconds_bucket{le=\"+Inf\"} 4\n"
                               "fls_batch_seconds_sum 12.75\n"
                               "fls_batch_seconds_count 4\n"
                               "fls_batch_seconds_bucket{c=\"orders\",le=\"0.25\"} 1\n"
                               "fls_batch_seconds_bucket{c=\"orders\",le=\"+Inf\"} 2\n"
                               "fls_batch_seconds_sum{c=\"orders\"} 3.125\n"
                               "fls_batch_seconds_count{c=\"orders\"} 2\n");
        free(text);
        fls_metrics_destroy(m);
}

struct hammer {
        fls_counter_t *c;
        fls_hist_t *h;
};

static void *hammer_thread(void *arg)
{
        struct hammer *hm = arg;
        int i;

        for (i = 0; i < 100000; i++) {
                fls_counter_add(hm->c, 1);
                fls_hist_observe(hm->h, 0.5);
        }
        return NULL;
}

Test(metrics, concurrent_updates_are_not_lost)
{
        static const double bounds[] = {1};
        fls_metrics_t *m = fls_metrics_new();
        struct hammer hm;
        pthread_t t[4];
        char *text;
        int i;

        hm.c = fls_metrics_counter(m, "n_total", "N.", "");
        hm.h = fls_metrics_hist(m, "h", "H.", "", bounds, 1);
        for (i = 0; i < 4; i++)
                cr_assert_eq(pthread_create(&t[i], NULL, hammer_thread, &hm), 0);
        for (i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        cr_assert_eq(fls_counter_get(hm.c), 400000);
        text = fls_metrics_render(m);
        cr_assert(strstr(text, "h_bucket{le=\"1\"} 400000\n"), "%s", text);
        cr_assert(strstr(text, "h_sum 200000\n"), "%s", text);
        cr_assert(strstr(text, "h_count 400000\n"), "%s", text);
        free(text);
        fls_metrics_destroy(m);
}

static int connect_loopback(int port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port)};
        struct timeval tv = {5, 0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        cr_assert(fd >= 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        /* A server that never answers fails the test instead of hanging it. */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

/* The whole response to request, read to EOF (caller frees). */
static char *http(int port, const char *request)
{
        char *resp = fls_t_http(port, request);

        cr_assert_not_null(resp, "no whole answer from port %d to %s", port, request);
        return resp;
}

static const char *body_of(const char *response)
{
        const char *p = strstr(response, "\r\n\r\n");

        cr_assert_not_null(p, "%s", response);
        return p + 4;
}

Test(metrics, http_endpoint, .timeout = 30)
{
        fls_metrics_t *m = fls_metrics_new();
        fls_counter_t *c = fls_metrics_counter(m, "fls_up_total", "Up.", "");
        char errstr[256], want[128], *resp, *text;
        int port = 0;
        double t0;

        fls_counter_add(c, 5);
        cr_assert_eq(fls_metrics_serve(m, "127.0.0.1", 0, &port, errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_gt(port, 0);
        cr_assert_eq(fls_metrics_serve(m, "127.0.0.1", 0, NULL, errstr, sizeof(errstr)),
                     -1);

        resp = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        text = fls_metrics_render(m);
        cr_assert_eq(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", resp);
        cr_assert(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4\r\n"), "%s",
                  resp);
        cr_assert(strstr(resp, "\r\nConnection: close\r\n"), "%s", resp);
        snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", strlen(text));
        cr_assert(strstr(resp, want), "%s", resp);
        cr_assert_str_eq(body_of(resp), text);
        cr_assert(strstr(text, "fls_up_total 5\n"));
        free(resp);
        free(text);

        resp = http(port, "GET /healthz HTTP/1.0\r\n\r\n");
        cr_assert_eq(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", resp);
        cr_assert_str_eq(body_of(resp), "ok\n");
        free(resp);

        fls_metrics_set_health(m, 0, "redis down");
        resp = http(port, "GET /healthz HTTP/1.1\r\n\r\n");
        cr_assert_eq(strncmp(resp, "HTTP/1.1 503 ", 13), 0, "%s", resp);
        cr_assert_str_eq(body_of(resp), "redis down\n");
        free(resp);
        fls_metrics_set_health(m, 1, NULL);
        resp = http(port, "GET /healthz?verbose=1 HTTP/1.1\r\n\r\n");
        cr_assert_eq(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", resp);
        free(resp);

        resp = http(port, "GET /nope HTTP/1.1\r\n\r\n");
        cr_assert_eq(strncmp(resp, "HTTP/1.1 404 ", 13), 0, "%s", resp);
        free(resp);
        resp = http(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        cr_assert_eq(strncmp(resp, "HTTP/1.1 404 ", 13), 0, "%s", resp);
        free(resp);

        /* A client that connects and says nothing holds the thread for its timeout
         * only; the next scrape is still answered. */
        {
                int idle = connect_loopback(port);

                t0 = fls_t_mono_ms() / 1e3;
                resp = http(port, "GET /healthz HTTP/1.1\r\n\r\n");
                cr_assert_eq(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", resp);
                cr_assert_lt(fls_t_mono_ms() / 1e3 - t0, 3.5);
                free(resp);
                close(idle);
        }

        /* Stopping wakes the accept loop promptly. */
        t0 = fls_t_mono_ms() / 1e3;
        fls_metrics_destroy(m);
        cr_assert_lt(fls_t_mono_ms() / 1e3 - t0, 1.0);
}

Test(metrics, serve_errors, .timeout = 30)
{
        fls_metrics_t *a = fls_metrics_new(), *b = fls_metrics_new();
        char errstr[256];
        int port = 0;

        cr_assert_eq(fls_metrics_serve(a, "127.0.0.1", 0, &port, errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(
            fls_metrics_serve(b, "127.0.0.1", port, NULL, errstr, sizeof(errstr)), -1);
        cr_assert(strstr(errstr, "cannot listen"), "%s", errstr);
        cr_assert_eq(
            fls_metrics_serve(b, "127.0.0.1", 70000, NULL, errstr, sizeof(errstr)), -1);
        fls_metrics_destroy(b);
        fls_metrics_destroy(a);
}
