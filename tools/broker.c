/*
 * broker: `flashstream broker`, a Kafka cluster for development, tests and benchmarks.
 *
 * It stands in for a production Kafka cluster: it runs librdkafka's mock cluster as a
 * long-lived process, creates the project's topics, and publishes the bootstrap list.
 * Consumers, the simulator and kcat reach it over TCP exactly as they would a real
 * cluster; nothing in them knows it is a mock. The mock only listens on 127.0.0.1 on
 * ports it picks itself, and librdkafka 2.0.2 offers no way to choose either.
 *
 * Output: stdout carries exactly two lines, then nothing:
 *   bootstrap=127.0.0.1:PORT,127.0.0.1:PORT,...
 *   control=127.0.0.1:PORT
 * With broker.bootstrap_file set, the same two lines are written to that file
 * atomically (tmp + rename) before they are printed, and the file is removed again on
 * a clean shutdown so that a stale file never points at a dead cluster.
 *
 * Control protocol: fault injection only works inside the process that owns the mock
 * cluster, so tests drive it through a TCP listener on 127.0.0.1 (broker.control_port,
 * 0 picks a free port). One command per line, words separated by blanks; every
 * command gets exactly one reply line, "ok ..." or "error: <why>".
 *   ping                          -> ok pong
 *   topics                        -> ok clickstream:6 orders:6 ...
 *   down ID | up ID               take broker ID (1..broker.count) down or up
 *   rtt ID MS                     add MS of round-trip latency to broker ID
 *   error API COUNT ERRNAME       the next COUNT requests of API (Produce, Fetch,
 *                                 OffsetCommit, JoinGroup, ...), on any broker, fail
 *                                 with ERRNAME (REQUEST_TIMED_OUT, ...)
 *   clear API                     drop the errors still queued for API
 *   leader TOPIC PARTITION ID     move leadership (-1: leaderless)
 * Several clients may be connected at once; a malformed line only costs an error
 * reply. The mock has no call to list topics, so `topics` shows those created here.
 */
#include "cmd.h"
#include "conf.h"
#include "log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define COMP "broker"

#define BROKER_MAX_CLIENTS 32
#define BROKER_LINE_MAX    512
#define BROKER_POLL_MS     200
/* Kafka caps topic names at 249 characters. */
#define BROKER_TOPIC_MAX 250
#define BROKER_TOPICS    9

const fls_conf_def_t fls_broker_conf[] = {
    {"broker.count", FLS_CONF_INT, "3", 1, 16, "Number of brokers in the mock cluster.",
     "broker"},
    {"broker.bootstrap_file", FLS_CONF_STR, "", 1, 0,
     "Also write the 'bootstrap=' and 'control=' lines to this file (atomically); empty: "
     "stdout only.",
     "broker"},
    {"broker.control_port", FLS_CONF_INT, "0", 0, 65535,
     "Loopback port of the fault-injection control interface; 0 picks a free one.",
     "broker"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/*
 * Kafka protocol API keys. librdkafka keeps its RD_KAFKAP_* names in a header it does
 * not install, so the stable numbers of the protocol are spelled here.
 */
static const struct {
        const char *name;
        int16_t key;
} broker_apis[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"ApiVersions", 18},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

typedef struct broker_client {
        int fd;
        size_t len;
        int discarding; /* inside an over-long line: drop bytes up to its newline */
        char buf[BROKER_LINE_MAX];
} broker_client_t;

typedef struct broker {
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        int broker_cnt;
        int partitions;
        char topics[BROKER_TOPICS][BROKER_TOPIC_MAX];
        int topic_cnt;
        int listen_fd;
        int control_port;
        broker_client_t clients[BROKER_MAX_CLIENTS];
        int client_cnt;
} broker_t;

static volatile sig_atomic_t broker_stop;

static void broker_on_signal(int sig)
{
        (void)sig;
        broker_stop = 1;
}

static void broker_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac,
                               const char *buf)
{
        fls_log_level_t l = level <= 3   ? FLS_LOG_ERROR
                            : level <= 4 ? FLS_LOG_WARN
                            : level <= 6 ? FLS_LOG_INFO
                                         : FLS_LOG_DEBUG;

        (void)rk;
        /* The owning handle has no bootstrap servers on purpose (see
         * broker_start_cluster): librdkafka's warning about it would only mislead. */
        if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
                l = FLS_LOG_DEBUG;
        fls_log(l, "rdkafka", "%s: %s", fac, buf);
}

/* Parses a whole word as a decimal integer within [min, max]. */
static int broker_parse_int(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

static int broker_api_key(const char *name, int16_t *key)
{
        size_t i;

        for (i = 0; i < sizeof(broker_apis) / sizeof(broker_apis[0]); i++) {
                if (strcasecmp(broker_apis[i].name, name) == 0) {
                        *key = broker_apis[i].key;
                        return 0;
                }
        }
        return -1;
}

static int broker_err_code(const char *name, rd_kafka_resp_err_t *err)
{
        const struct rd_kafka_err_desc *descs;
        size_t cnt, i;

        if (strncasecmp(name, "RD_KAFKA_RESP_ERR_", 18) == 0)
                name += 18;
        rd_kafka_get_err_descs(&descs, &cnt);
        for (i = 0; i < cnt; i++) {
                if (descs[i].name && strcasecmp(descs[i].name, name) == 0) {
                        *err = descs[i].code;
                        return 0;
                }
        }
        return -1;
}

static int broker_has_topic(const broker_t *b, const char *topic)
{
        int i;

        for (i = 0; i < b->topic_cnt; i++)
                if (strcmp(b->topics[i], topic) == 0)
                        return 1;
        return 0;
}

static int broker_add_topic(broker_t *b, const char *name, const char *suffix,
                            char *errstr, size_t errstr_size)
{
        char topic[BROKER_TOPIC_MAX];
        int n = snprintf(topic, sizeof(topic), "%s%s", name, suffix);
        rd_kafka_resp_err_t err;

        if (n < 1 || (size_t)n >= sizeof(topic)) {
                snprintf(errstr, errstr_size, "topic name '%s%s' is empty or too long",
                         name, suffix);
                return -1;
        }
        /* Two keys naming the same topic is odd but legal: create it once. */
        if (broker_has_topic(b, topic))
                return 0;

        err = rd_kafka_mock_topic_create(b->mcluster, topic, b->partitions,
                                         b->broker_cnt < 3 ? b->broker_cnt : 3);
        if (err) {
                snprintf(errstr, errstr_size, "creating topic %s: %s", topic,
                         rd_kafka_err2str(err));
                return -1;
        }
        snprintf(b->topics[b->topic_cnt++], BROKER_TOPIC_MAX, "%s", topic);
        return 0;
}

static int broker_create_topics(broker_t *b, const fls_conf_t *conf, char *errstr,
                                size_t errstr_size)
{
        static const char *const inputs[] = {"topic.clickstream", "topic.orders",
                                             "topic.shipments"};
        static const char *const outputs[] = {"topic.marketing_actions",
                                              "topic.restock_signals",
                                              "topic.dispatch_decisions"};
        const char *suffix = fls_conf_str(conf, "topic.dlq_suffix");
        size_t i;

        for (i = 0; i < 3; i++) {
                const char *in = fls_conf_str(conf, inputs[i]);

                if (broker_add_topic(b, in, "", errstr, errstr_size) == -1 ||
                    broker_add_topic(b, in, suffix, errstr, errstr_size) == -1 ||
                    broker_add_topic(b, fls_conf_str(conf, outputs[i]), "", errstr,
                                     errstr_size) == -1)
                        return -1;
        }
        return 0;
}

static int broker_start_cluster(broker_t *b, char *errstr, size_t errstr_size)
{
        char rd_errstr[512];
        rd_kafka_conf_t *rkconf = rd_kafka_conf_new();

        /* The handle only owns the cluster: it has no bootstrap servers, so it never
         * sends a request that could swallow an error injected for a real client. */
        rd_kafka_conf_set_log_cb(rkconf, broker_rdkafka_log);
        if (rd_kafka_conf_set(rkconf, "client.id", "flashstream-broker", rd_errstr,
                              sizeof(rd_errstr)) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "%.400s", rd_errstr);
                rd_kafka_conf_destroy(rkconf);
                return -1;
        }
        b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rkconf, rd_errstr, sizeof(rd_errstr));
        if (!b->rk) {
                snprintf(errstr, errstr_size, "rd_kafka_new: %.400s", rd_errstr);
                rd_kafka_conf_destroy(rkconf);
                return -1;
        }
        b->mcluster = rd_kafka_mock_cluster_new(b->rk, b->broker_cnt);
        if (!b->mcluster) {
                snprintf(errstr, errstr_size, "could not create the mock cluster");
                return -1;
        }
        return 0;
}

static int broker_listen(broker_t *b, int port, char *errstr, size_t errstr_size)
{
        struct sockaddr_in addr;
        socklen_t addrlen = sizeof(addr);
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd == -1) {
                snprintf(errstr, errstr_size, "control socket: %s", strerror(errno));
                return -1;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_port = htons((uint16_t)port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == -1 ||
            listen(fd, 16) == -1 ||
            getsockname(fd, (struct sockaddr *)&addr, &addrlen) == -1) {
                snprintf(errstr, errstr_size, "control port 127.0.0.1:%d: %s", port,
                         strerror(errno));
                close(fd);
                return -1;
        }
        b->listen_fd = fd;
        b->control_port = ntohs(addr.sin_port);
        return 0;
}

static int broker_write_file(const char *path, const char *text, char *errstr,
                             size_t errstr_size)
{
        char tmp[PATH_MAX];
        FILE *fp;
        int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());

        if (n < 0 || (size_t)n >= sizeof(tmp)) {
                snprintf(errstr, errstr_size, "%s: path too long", path);
                return -1;
        }
        fp = fopen(tmp, "w");
        if (!fp) {
                snprintf(errstr, errstr_size, "%.300s: %s", tmp, strerror(errno));
                return -1;
        }
        /* Readers poll for the file: they must see all of it or none of it. */
        if (fputs(text, fp) == EOF || fflush(fp) == EOF || fsync(fileno(fp)) == -1) {
                snprintf(errstr, errstr_size, "%.300s: %s", tmp, strerror(errno));
                fclose(fp);
                unlink(tmp);
                return -1;
        }
        if (fclose(fp) == EOF || rename(tmp, path) == -1) {
                snprintf(errstr, errstr_size, "%.300s: %s", path, strerror(errno));
                unlink(tmp);
                return -1;
        }
        return 0;
}

/* Non-blocking, whole-line-or-nothing: a client that stops reading its replies is
 * dropped rather than allowed to stall the cluster's control loop. */
static int broker_reply(broker_client_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int broker_reply(broker_client_t *c, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        int n;
        ssize_t w;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -1;
        if ((size_t)n > sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n++] = '\n';
        w = send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return w == n ? 0 : -1;
}

static int broker_cmd_topics(broker_t *b, broker_client_t *c)
{
        char line[1024];
        size_t off = 0;
        int i;

        for (i = 0; i < b->topic_cnt && off < sizeof(line); i++)
                off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s:%d",
                                        i ? " " : "", b->topics[i], b->partitions);
        if (off >= sizeof(line))
                return broker_reply(c, "error: topic list too long");
        return broker_reply(c, "ok %s", line);
}

static int broker_cmd_error(broker_t *b, broker_client_t *c, char **argv, int argc)
{
        rd_kafka_resp_err_t err, *errs;
        int16_t key;
        long cnt, i;

        if (argc != 4)
                return broker_reply(c, "error: usage: error API COUNT ERRNAME");
        if (broker_api_key(argv[1], &key) == -1)
                return broker_reply(c, "error: unknown API '%s'", argv[1]);
        if (broker_parse_int(argv[2], 1, 100000, &cnt) == -1)
                return broker_reply(c, "error: COUNT must be 1..100000");
        if (broker_err_code(argv[3], &err) == -1)
                return broker_reply(c, "error: unknown error name '%s'", argv[3]);

        errs = malloc((size_t)cnt * sizeof(*errs));
        if (!errs)
                return broker_reply(c, "error: out of memory");
        for (i = 0; i < cnt; i++)
                errs[i] = err;
        rd_kafka_mock_push_request_errors_array(b->mcluster, key, (size_t)cnt, errs);
        free(errs);
        fls_log(FLS_LOG_INFO, COMP, "injected %ld %s errors on %s", cnt,
                rd_kafka_err2name(err), argv[1]);
        return broker_reply(c, "ok %ld %s %s", cnt, argv[1], rd_kafka_err2name(err));
}

static int broker_cmd_leader(broker_t *b, broker_client_t *c, char **argv, int argc)
{
        rd_kafka_resp_err_t err;
        long part, id;

        if (argc != 4)
                return broker_reply(c, "error: usage: leader TOPIC PARTITION ID");
        /* The mock creates unknown topics on the fly here: keep typos out. */
        if (!broker_has_topic(b, argv[1]))
                return broker_reply(c, "error: unknown topic '%s'", argv[1]);
        if (broker_parse_int(argv[2], 0, b->partitions - 1, &part) == -1)
                return broker_reply(c, "error: PARTITION must be 0..%d",
                                    b->partitions - 1);
        if (broker_parse_int(argv[3], -1, b->broker_cnt, &id) == -1 || id == 0)
                return broker_reply(c, "error: ID must be 1..%d or -1", b->broker_cnt);
        err = rd_kafka_mock_partition_set_leader(b->mcluster, argv[1], (int32_t)part,
                                                 (int32_t)id);
        if (err)
                return broker_reply(c, "error: %s", rd_kafka_err2str(err));
        fls_log(FLS_LOG_INFO, COMP, "leader of %s [%ld] is now %ld", argv[1], part, id);
        return broker_reply(c, "ok leader %s %ld %ld", argv[1], part, id);
}

/* down, up and rtt: the commands that act on one broker. */
static int broker_cmd_broker(broker_t *b, broker_client_t *c, char **argv, int argc)
{
        rd_kafka_resp_err_t err;
        int is_rtt = strcasecmp(argv[0], "rtt") == 0;
        int is_down = strcasecmp(argv[0], "down") == 0;
        long id, ms = 0;

        if (argc != (is_rtt ? 3 : 2))
                return broker_reply(c, "error: usage: %s",
                                    is_rtt ? "rtt ID MS" : "down|up ID");
        if (broker_parse_int(argv[1], 1, b->broker_cnt, &id) == -1)
                return broker_reply(c, "error: ID must be 1..%d", b->broker_cnt);
        if (is_rtt && broker_parse_int(argv[2], 0, 600000, &ms) == -1)
                return broker_reply(c, "error: MS must be 0..600000");

        if (is_rtt) {
                err = rd_kafka_mock_broker_set_rtt(b->mcluster, (int32_t)id, (int)ms);
                if (err)
                        return broker_reply(c, "error: %s", rd_kafka_err2str(err));
                fls_log(FLS_LOG_INFO, COMP, "broker %ld: rtt %ld ms", id, ms);
                return broker_reply(c, "ok rtt %ld %ld", id, ms);
        }
        if (is_down)
                err = rd_kafka_mock_broker_set_down(b->mcluster, (int32_t)id);
        else
                err = rd_kafka_mock_broker_set_up(b->mcluster, (int32_t)id);
        if (err)
                return broker_reply(c, "error: %s", rd_kafka_err2str(err));
        fls_log(FLS_LOG_INFO, COMP, "broker %ld: %s", id, is_down ? "down" : "up");
        return broker_reply(c, "ok %s %ld", is_down ? "down" : "up", id);
}

static int broker_command(broker_t *b, broker_client_t *c, char *line)
{
        char *argv[8];
        char *save = NULL, *tok;
        int argc = 0;
        int16_t key;

        for (tok = strtok_r(line, " \t\r", &save); tok;
             tok = strtok_r(NULL, " \t\r", &save)) {
                if (argc == (int)(sizeof(argv) / sizeof(argv[0])))
                        return broker_reply(c, "error: too many words");
                argv[argc++] = tok;
        }
        if (argc == 0)
                return broker_reply(c, "error: empty command");

        if (strcasecmp(argv[0], "ping") == 0 && argc == 1)
                return broker_reply(c, "ok pong");
        if (strcasecmp(argv[0], "topics") == 0 && argc == 1)
                return broker_cmd_topics(b, c);
        if (strcasecmp(argv[0], "down") == 0 || strcasecmp(argv[0], "up") == 0 ||
            strcasecmp(argv[0], "rtt") == 0)
                return broker_cmd_broker(b, c, argv, argc);
        if (strcasecmp(argv[0], "error") == 0)
                return broker_cmd_error(b, c, argv, argc);
        if (strcasecmp(argv[0], "leader") == 0)
                return broker_cmd_leader(b, c, argv, argc);
        if (strcasecmp(argv[0], "clear") == 0) {
                if (argc != 2 || broker_api_key(argv[1], &key) == -1)
                        return broker_reply(c, "error: usage: clear API");
                rd_kafka_mock_clear_request_errors(b->mcluster, key);
                return broker_reply(c, "ok clear %s", argv[1]);
        }
        return broker_reply(c,
                            "error: unknown command '%.64s' (ping, topics, down, up, "
                            "rtt, error, clear, leader)",
                            argv[0]);
}

/* Returns -1 when the client is gone or misbehaving and must be closed. */
static int broker_client_read(broker_t *b, broker_client_t *c)
{
        char *nl;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);

        if (r == 0)
                return -1;
        if (r < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->len += (size_t)r;
        c->buf[c->len] = '\0';

        while ((nl = memchr(c->buf, '\n', c->len))) {
                size_t used = (size_t)(nl - c->buf) + 1;

                *nl = '\0';
                if (memchr(c->buf, '\0', used - 1))
                        c->discarding = 1; /* binary garbage */
                if (c->discarding) {
                        c->discarding = 0;
                        if (broker_reply(c, "error: line too long or not text") == -1)
                                return -1;
                } else if (broker_command(b, c, c->buf) == -1) {
                        return -1;
                }
                memmove(c->buf, c->buf + used, c->len - used);
                c->len -= used;
                c->buf[c->len] = '\0';
        }
        if (c->len == sizeof(c->buf) - 1) {
                c->discarding = 1;
                c->len = 0;
        }
        return 0;
}

static void broker_accept(broker_t *b)
{
        int fd = accept(b->listen_fd, NULL, NULL);
        broker_client_t *c;

        if (fd == -1) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        fls_log(FLS_LOG_WARN, COMP, "control accept: %s",
                                strerror(errno));
                return;
        }
        /* Replies must never block the loop that serves every client. */
        if (fcntl(fd, F_SETFL, O_NONBLOCK) == -1 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
                fls_log(FLS_LOG_WARN, COMP, "control client: %s", strerror(errno));
                close(fd);
                return;
        }
        if (b->client_cnt == BROKER_MAX_CLIENTS) {
                static const char msg[] = "error: too many control clients\n";

                send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                close(fd);
                return;
        }
        c = &b->clients[b->client_cnt++];
        memset(c, 0, sizeof(*c));
        c->fd = fd;
}

static void broker_drop_client(broker_t *b, int i)
{
        close(b->clients[i].fd);
        b->clients[i] = b->clients[--b->client_cnt];
}

/* Kafka brokers answer with TCP_NODELAY set; the mock cluster's sockets do not, so
 * every produce acknowledgement waited for the client's delayed ACK (~40 ms measured
 * per flush, whatever its size). librdkafka does not expose the mock's sockets, so the
 * broker sets the option on every TCP socket of its own process, a few times a
 * second; a connection gets it within BROKER_POLL_MS of being accepted. */
static void broker_nodelay_all(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int one = 1;

        if (!d)
                return;
        while ((e = readdir(d))) {
                int fd = atoi(e->d_name), type;
                socklen_t len = sizeof(type);
                if (fd <= 2 || fd == dirfd(d))
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                    type == SOCK_STREAM)
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        closedir(d);
}

static int broker_serve(broker_t *b, char *errstr, size_t errstr_size)
{
        struct pollfd fds[1 + BROKER_MAX_CLIENTS];

        while (!broker_stop) {
                int i, n, nfds = 0;

                fds[nfds].fd = b->listen_fd;
                fds[nfds++].events = POLLIN;
                for (i = 0; i < b->client_cnt; i++) {
                        fds[nfds].fd = b->clients[i].fd;
                        fds[nfds++].events = POLLIN;
                }

                n = poll(fds, (nfds_t)nfds, BROKER_POLL_MS);
                if (n == -1) {
                        if (errno == EINTR)
                                continue;
                        snprintf(errstr, errstr_size, "poll: %s", strerror(errno));
                        return -1;
                }
                broker_nodelay_all();
                if (n == 0)
                        continue;

                /* Backwards, so that dropping a client (swap with the last) never
                 * skips one that is still to be served in this round. */
                for (i = nfds - 1; i >= 1; i--) {
                        if (!fds[i].revents)
                                continue;
                        if (broker_client_read(b, &b->clients[i - 1]) == -1)
                                broker_drop_client(b, i - 1);
                }
                if (fds[0].revents & POLLIN)
                        broker_accept(b);
        }
        return 0;
}

static void broker_close(broker_t *b)
{
        while (b->client_cnt > 0)
                broker_drop_client(b, b->client_cnt - 1);
        if (b->listen_fd != -1)
                close(b->listen_fd);
        if (b->mcluster)
                rd_kafka_mock_cluster_destroy(b->mcluster);
        if (b->rk)
                rd_kafka_destroy(b->rk);
}

static int broker_run(broker_t *b, const fls_conf_t *conf, char *errstr,
                      size_t errstr_size)
{
        const char *file = fls_conf_str(conf, "broker.bootstrap_file");
        char text[4096];
        int n;

        if (broker_create_topics(b, conf, errstr, errstr_size) == -1 ||
            broker_listen(b, (int)fls_conf_int(conf, "broker.control_port"), errstr,
                          errstr_size) == -1)
                return -1;

        n = snprintf(text, sizeof(text), "bootstrap=%s\ncontrol=127.0.0.1:%d\n",
                     rd_kafka_mock_cluster_bootstraps(b->mcluster), b->control_port);
        if (n < 0 || (size_t)n >= sizeof(text)) {
                snprintf(errstr, errstr_size, "bootstrap list too long");
                return -1;
        }
        if (*file && broker_write_file(file, text, errstr, errstr_size) == -1)
                return -1;
        fputs(text, stdout);
        fflush(stdout);
        fls_log(
            FLS_LOG_INFO, COMP,
            "mock cluster up: %d brokers, %d topics of %d partitions, control port %d",
            b->broker_cnt, b->topic_cnt, b->partitions, b->control_port);

        if (broker_serve(b, errstr, errstr_size) == -1)
                return -1;
        if (*file && unlink(file) == -1)
                fls_log(FLS_LOG_WARN, COMP, "removing %s: %s", file, strerror(errno));
        return 0;
}

int fls_cmd_broker(fls_conf_t *conf, int argc, char **argv)
{
        struct sigaction sa, old_int, old_term, old_pipe;
        sigset_t block, old_mask;
        char errstr[512];
        broker_t *b;
        int rc;

        if (argc > 1) {
                fls_log(FLS_LOG_ERROR, COMP, "unexpected argument '%s'", argv[1]);
                return 2;
        }
        b = calloc(1, sizeof(*b));
        if (!b) {
                fls_log(FLS_LOG_ERROR, COMP, "out of memory");
                return 1;
        }
        b->listen_fd = -1;
        b->broker_cnt = (int)fls_conf_int(conf, "broker.count");
        b->partitions = (int)fls_conf_int(conf, "topic.partitions");

        broker_stop = 0;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = broker_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        /* A reader of stdout that goes away must not kill the cluster. */
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, &old_pipe);

        /* librdkafka's threads inherit the mask at creation: keep SIGINT and SIGTERM
         * blocked while they start so that the signals always land in this thread
         * and interrupt poll() at once. */
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old_mask);
        rc = broker_start_cluster(b, errstr, sizeof(errstr));
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        if (rc == 0)
                rc = broker_run(b, conf, errstr, sizeof(errstr));
        if (rc == -1)
                fls_log(FLS_LOG_ERROR, COMP, "%s", errstr);
        else
                fls_log(FLS_LOG_INFO, COMP, "stopped by signal");

        broker_close(b);
        free(b);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
        return rc == -1 ? 1 : 0;
}
