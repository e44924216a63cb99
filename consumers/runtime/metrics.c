/*
 * metrics: what a flashstream process counts while it runs the flow
 * Kafka -> Avro -> Redis -> model -> Kafka (messages in, decode failures, Redis
 * latency, decisions out...) and the small HTTP server that lets Prometheus scrape it.
 *
 * Series are registered at start-up under a mutex and never removed, so a handle stays
 * valid for the life of the registry. The hot path only does relaxed atomic adds and
 * stores on the series' own cells: no lock, no allocation, and readers see values
 * that are each exact but not a consistent snapshot across series, which is all a
 * scrape needs. The cost moves to the scrape: rendering walks every series under the
 * mutex and formats text, a few microseconds per series every few seconds.
 *
 * The server is one thread doing one request at a time. Each client gets a 1 s
 * receive/send timeout and a 2 s overall budget, so a stuck client delays a scrape by
 * at most that and can never wedge the thread or the process's shutdown.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_POLL_MS    200
#define CLIENT_TIMEOUT_MS 1000
#define CLIENT_BUDGET_MS  2000
#define REQUEST_MAX       4096

enum series_type { SERIES_COUNTER, SERIES_GAUGE, SERIES_HIST };

struct fls_counter {
        atomic_uint_least64_t v;
};

struct fls_gauge {
        atomic_uint_least64_t bits; /* the double's bit pattern */
};

struct fls_hist {
        size_t nbounds;
        double *bounds;
        atomic_uint_least64_t *buckets; /* nbounds + 1, not cumulative; last is +Inf */
        atomic_uint_least64_t sum_bits;
};

struct series {
        enum series_type type;
        char *name, *help, *labels;
        union {
                struct fls_counter counter;
                struct fls_gauge gauge;
                struct fls_hist hist;
        } u;
        struct series *next;
};

struct fls_metrics {
        pthread_mutex_t lock; /* the series list and the health reason */
        struct series *head, **tail;

        atomic_int healthy;
        char reason[256];

        int listen_fd;
        int serving;
        atomic_int stop;
        pthread_t thread;
};

static uint64_t dbl_bits(double v)
{
        uint64_t u;

        memcpy(&u, &v, sizeof(u));
        return u;
}

static double bits_dbl(uint64_t u)
{
        double v;

        memcpy(&v, &u, sizeof(v));
        return v;
}

fls_metrics_t *fls_metrics_new(void)
{
        fls_metrics_t *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        if (pthread_mutex_init(&m->lock, NULL) != 0) {
                free(m);
                return NULL;
        }
        m->tail = &m->head;
        atomic_init(&m->healthy, 1);
        atomic_init(&m->stop, 0);
        m->listen_fd = -1;
        return m;
}

static void stop_server(fls_metrics_t *m)
{
        if (!m->serving)
                return;
        atomic_store(&m->stop, 1);
        /* Wakes a poll() in progress at once instead of after its timeout. */
        shutdown(m->listen_fd, SHUT_RDWR);
        pthread_join(m->thread, NULL);
        close(m->listen_fd);
        m->listen_fd = -1;
        m->serving = 0;
}

void fls_metrics_destroy(fls_metrics_t *m)
{
        struct series *s, *next;

        if (!m)
                return;
        stop_server(m);
        for (s = m->head; s; s = next) {
                next = s->next;
                if (s->type == SERIES_HIST) {
                        free(s->u.hist.bounds);
                        free(s->u.hist.buckets);
                }
                free(s->name);
                free(s->help);
                free(s->labels);
                free(s);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/*
 * Returns the series name+labels, creating it when new; called with m->lock held.
 * A name already used with another type gets NULL: Prometheus would reject the whole
 * scrape, and start-up is the place to find out.
 */
static struct series *get_series(fls_metrics_t *m, enum series_type type,
                                 const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t nbounds)
{
        struct series *s;
        size_t i;

        if (!labels)
                labels = "";
        for (s = m->head; s; s = s->next) {
                if (strcmp(s->name, name) != 0)
                        continue;
                if (s->type != type)
                        return NULL;
                if (strcmp(s->labels, labels) == 0)
                        return s;
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->type = type;
        s->name = strdup(name);
        s->help = strdup(help ? help : "");
        s->labels = strdup(labels);
        if (!s->name || !s->help || !s->labels)
                goto fail;
        switch (type) {
        case SERIES_COUNTER:
                atomic_init(&s->u.counter.v, 0);
                break;
        case SERIES_GAUGE:
                atomic_init(&s->u.gauge.bits, dbl_bits(0.0));
                break;
        case SERIES_HIST:
                s->u.hist.nbounds = nbounds;
                s->u.hist.bounds = malloc((nbounds ? nbounds : 1) * sizeof(double));
                s->u.hist.buckets = malloc((nbounds + 1) * sizeof(*s->u.hist.buckets));
                if (!s->u.hist.bounds || !s->u.hist.buckets)
                        goto fail;
                if (nbounds)
                        memcpy(s->u.hist.bounds, bounds, nbounds * sizeof(double));
                for (i = 0; i <= nbounds; i++)
                        atomic_init(&s->u.hist.buckets[i], 0);
                atomic_init(&s->u.hist.sum_bits, dbl_bits(0.0));
                break;
        }
        *m->tail = s;
        m->tail = &s->next;
        return s;
fail:
        if (type == SERIES_HIST) {
                free(s->u.hist.bounds);
                free(s->u.hist.buckets);
        }
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s);
        return NULL;
}

fls_counter_t *fls_metrics_counter(fls_metrics_t *m, const char *name, const char *help,
                                   const char *labels)
{
        struct series *s;

        pthread_mutex_lock(&m->lock);
        s = get_series(m, SERIES_COUNTER, name, help, labels, NULL, 0);
        pthread_mutex_unlock(&m->lock);
        return s ? &s->u.counter : NULL;
}

fls_gauge_t *fls_metrics_gauge(fls_metrics_t *m, const char *name, const char *help,
                               const char *labels)
{
        struct series *s;

        pthread_mutex_lock(&m->lock);
        s = get_series(m, SERIES_GAUGE, name, help, labels, NULL, 0);
        pthread_mutex_unlock(&m->lock);
        return s ? &s->u.gauge : NULL;
}

fls_hist_t *fls_metrics_hist(fls_metrics_t *m, const char *name, const char *help,
                             const char *labels, const double *bounds, size_t nbounds)
{
        struct series *s;

        pthread_mutex_lock(&m->lock);
        s = get_series(m, SERIES_HIST, name, help, labels, bounds, nbounds);
        pthread_mutex_unlock(&m->lock);
        return s ? &s->u.hist : NULL;
}

void fls_counter_add(fls_counter_t *c, uint64_t n)
{
        atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t fls_counter_get(const fls_counter_t *c)
{
        /* C11 atomic_load takes a non-const pointer in older libcs' declarations. */
        return atomic_load_explicit((atomic_uint_least64_t *)&c->v, memory_order_relaxed);
}

void fls_gauge_set(fls_gauge_t *g, double v)
{
        atomic_store_explicit(&g->bits, dbl_bits(v), memory_order_relaxed);
}

/* A linear scan: histograms here have about ten buckets, where it beats a bisection. */
void fls_hist_observe(fls_hist_t *h, double v)
{
        uint64_t old, new;
        size_t i;

        for (i = 0; i < h->nbounds && !(v <= h->bounds[i]); i++)
                ;
        atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
        old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
        do {
                new = dbl_bits(bits_dbl(old) + v);
        } while (!atomic_compare_exchange_weak_explicit(
            &h->sum_bits, &old, new, memory_order_relaxed, memory_order_relaxed));
}

/* Shortest of %.15g/%.17g that reads back as v, and Prometheus' spelling of the
 * special values. */
static void format_dbl(char *buf, size_t size, double v)
{
        if (isnan(v)) {
                snprintf(buf, size, "NaN");
        } else if (isinf(v)) {
                snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        } else {
                snprintf(buf, size, "%.15g", v);
                if (strtod(buf, NULL) != v)
                        snprintf(buf, size, "%.17g", v);
        }
}

/* HELP text escapes only backslash and line feed (text format 0.0.4). */
static void print_help_text(FILE *out, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", out);
                else if (*s == '\n')
                        fputs("\\n", out);
                else
                        fputc(*s, out);
        }
}

static void print_labels(FILE *out, const char *labels)
{
        if (*labels)
                fprintf(out, "{%s}", labels);
}

static void render_series(FILE *out, const struct series *s)
{
        char num[64];
        size_t i;

        switch (s->type) {
        case SERIES_COUNTER:
                fputs(s->name, out);
                print_labels(out, s->labels);
                fprintf(out, " %llu\n",
                        (unsigned long long)fls_counter_get(&s->u.counter));
                break;
        case SERIES_GAUGE:
                format_dbl(num, sizeof(num),
                           bits_dbl(atomic_load_explicit(
                               (atomic_uint_least64_t *)&s->u.gauge.bits,
                               memory_order_relaxed)));
                fputs(s->name, out);
                print_labels(out, s->labels);
                fprintf(out, " %s\n", num);
                break;
        case SERIES_HIST: {
                const struct fls_hist *h = &s->u.hist;
                const char *sep = *s->labels ? "," : "";
                uint64_t cum = 0;

                /* _count is the +Inf bucket, so the two always agree in a scrape. */
                for (i = 0; i <= h->nbounds; i++) {
                        cum +=
                            atomic_load_explicit((atomic_uint_least64_t *)&h->buckets[i],
                                                 memory_order_relaxed);
                        if (i < h->nbounds)
                                format_dbl(num, sizeof(num), h->bounds[i]);
                        else
                                snprintf(num, sizeof(num), "+Inf");
                        fprintf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", s->name,
                                s->labels, sep, num, (unsigned long long)cum);
                }
                format_dbl(
                    num, sizeof(num),
                    bits_dbl(atomic_load_explicit((atomic_uint_least64_t *)&h->sum_bits,
                                                  memory_order_relaxed)));
                fprintf(out, "%s_sum", s->name);
                print_labels(out, s->labels);
                fprintf(out, " %s\n", num);
                fprintf(out, "%s_count", s->name);
                print_labels(out, s->labels);
                fprintf(out, " %llu\n", (unsigned long long)cum);
                break;
        }
        }
}

static const char *type_name(enum series_type type)
{
        switch (type) {
        case SERIES_COUNTER:
                return "counter";
        case SERIES_GAUGE:
                return "gauge";
        case SERIES_HIST:
                return "histogram";
        }
        return "untyped";
}

/*
 * Series are kept in registration order; the format wants all series of a name
 * together under one HELP/TYPE, so each name is printed when first met, with every
 * later series of that name. Quadratic in the number of series, which is a few
 * hundred at most.
 */
char *fls_metrics_render(fls_metrics_t *m)
{
        const struct series *s, *t, *p;
        char *buf = NULL;
        size_t size = 0;
        FILE *out;

        out = open_memstream(&buf, &size);
        if (!out)
                return NULL;
        pthread_mutex_lock(&m->lock);
        for (s = m->head; s; s = s->next) {
                for (p = m->head; p != s && strcmp(p->name, s->name) != 0; p = p->next)
                        ;
                if (p != s)
                        continue; /* already printed with its first series */
                fprintf(out, "# HELP %s ", s->name);
                print_help_text(out, s->help);
                fprintf(out, "\n# TYPE %s %s\n", s->name, type_name(s->type));
                for (t = s; t; t = t->next) {
                        if (strcmp(t->name, s->name) == 0)
                                render_series(out, t);
                }
        }
        pthread_mutex_unlock(&m->lock);
        if (fclose(out) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

void fls_metrics_set_health(fls_metrics_t *m, int healthy, const char *reason)
{
        pthread_mutex_lock(&m->lock);
        snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
        atomic_store(&m->healthy, healthy ? 1 : 0);
        pthread_mutex_unlock(&m->lock);
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_all(int fd, const char *buf, size_t len)
{
        ssize_t n;

        while (len > 0) {
                n = send(fd, buf, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* timeout or a client gone: nothing to do */
                buf += n;
                len -= (size_t)n;
        }
}

static void respond(int fd, int status, const char *content_type, const char *body)
{
        const char *text = status == 200   ? "OK"
                           : status == 503 ? "Service Unavailable"
                                           : "Not Found";
        size_t len = strlen(body);
        char head[256];
        int n;

        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, text, content_type, len);
        send_all(fd, head, (size_t)n);
        send_all(fd, body, len);
}

/*
 * Reads up to the end of the headers (so closing does not reset the connection under
 * the client's feet) and returns the request line, NUL-terminated in buf.
 */
static int read_request(int fd, char *buf, size_t size)
{
        int64_t deadline = now_ms() + CLIENT_BUDGET_MS;
        size_t len = 0;
        ssize_t n;

        while (len + 1 < size) {
                n = recv(fd, buf + len, size - 1 - len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                buf[len] = '\0';
                if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
                        break;
                if (now_ms() > deadline)
                        break;
        }
        buf[len] = '\0';
        if (!strchr(buf, '\n'))
                return -1;
        buf[strcspn(buf, "\r\n")] = '\0';
        return 0;
}

static void handle_client(fls_metrics_t *m, int fd)
{
        struct timeval tv = {CLIENT_TIMEOUT_MS / 1000, (CLIENT_TIMEOUT_MS % 1000) * 1000};
        char req[REQUEST_MAX], reason[sizeof(m->reason) + 1];
        char *method, *path, *save = NULL;

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (read_request(fd, req, sizeof(req)) < 0)
                return;
        method = strtok_r(req, " ", &save);
        path = method ? strtok_r(NULL, " ", &save) : NULL;
        if (path)
                path[strcspn(path, "?")] = '\0';
        if (!method || !path || strcmp(method, "GET") != 0) {
                respond(fd, 404, "text/plain", "not found\n");
        } else if (strcmp(path, "/metrics") == 0) {
                char *body = fls_metrics_render(m);

                if (body)
                        respond(fd, 200, "text/plain; version=0.0.4", body);
                else
                        respond(fd, 503, "text/plain", "out of memory\n");
                free(body);
        } else if (strcmp(path, "/healthz") == 0) {
                pthread_mutex_lock(&m->lock);
                if (atomic_load(&m->healthy)) {
                        snprintf(reason, sizeof(reason), "ok\n");
                        pthread_mutex_unlock(&m->lock);
                        respond(fd, 200, "text/plain", reason);
                } else {
                        snprintf(reason, sizeof(reason), "%s\n", m->reason);
                        pthread_mutex_unlock(&m->lock);
                        respond(fd, 503, "text/plain", reason);
                }
        } else {
                respond(fd, 404, "text/plain", "not found\n");
        }
}

static void *serve_thread(void *arg)
{
        fls_metrics_t *m = arg;
        struct pollfd pfd = {.fd = m->listen_fd, .events = POLLIN};
        int fd;

        while (!atomic_load(&m->stop)) {
                if (poll(&pfd, 1, ACCEPT_POLL_MS) <= 0)
                        continue;
                if (atomic_load(&m->stop))
                        break;
                fd = accept(m->listen_fd, NULL, NULL);
                if (fd < 0) {
                        /* Out of descriptors: poll would report the same pending
                         * connection at once, so pause instead of spinning. */
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                poll(NULL, 0, ACCEPT_POLL_MS);
                        continue;
                }
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                handle_client(m, fd);
                shutdown(fd, SHUT_WR);
                close(fd);
        }
        return NULL;
}

int fls_metrics_serve(fls_metrics_t *m, const char *host, int port, int *bound_port,
                      char *errstr, size_t errstr_size)
{
        struct addrinfo hints = {0}, *res = NULL, *ai;
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        sigset_t all, old;
        char portstr[16];
        int fd = -1, one = 1, err = 0, rc;

        if (m->serving) {
                snprintf(errstr, errstr_size, "metrics: already serving");
                return -1;
        }
        if (port < 0 || port > 65535) {
                snprintf(errstr, errstr_size, "metrics: bad port %d", port);
                return -1;
        }
        snprintf(portstr, sizeof(portstr), "%d", port);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
        if (rc != 0) {
                snprintf(errstr, errstr_size, "metrics: %s: %s", host ? host : "*",
                         gai_strerror(rc));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                            ai->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
                        break;
                err = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
                snprintf(errstr, errstr_size, "metrics: cannot listen on %s:%d: %s",
                         host ? host : "*", port, strerror(err));
                return -1;
        }
        /* Non-blocking, so a connection reset between poll and accept cannot block the
         * thread past a stop request. Accepted sockets do not inherit it. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
                snprintf(errstr, errstr_size, "metrics: getsockname: %s",
                         strerror(errno));
                close(fd);
                return -1;
        }
        if (bound_port)
                *bound_port = ntohs(ss.ss_family == AF_INET6
                                        ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);

        m->listen_fd = fd;
        atomic_store(&m->stop, 0);
        /* The thread inherits a full signal mask, so SIGINT/SIGTERM reach the threads
         * that handle them and never interrupt a scrape. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&m->thread, NULL, serve_thread, m);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
                snprintf(errstr, errstr_size, "metrics: pthread_create: %s",
                         strerror(rc));
                close(fd);
                m->listen_fd = -1;
                return -1;
        }
        m->serving = 1;
        return 0;
}
