/*
 * Integration suite of `flashstream broker`: starts the real binary (FLS_BIN) the way
 * a developer or a test harness would, then talks to it only from the outside: the
 * bootstrap file, the control port and Kafka clients over TCP. Each test gets its own
 * broker on ports the kernel picks, so suites may run side by side.
 */
#include <criterion/criterion.h>

#include <librdkafka/rdkafka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char it_dir[64];
static char it_file[128];
static char it_stdout[128];
static char it_bootstrap[512];
static int it_control_port;
static pid_t it_pid = -1;

/* Both lines or nothing: the broker renames the file into place. */
static int it_read_bootstrap_file(void)
{
        char line[512];
        FILE *fp = fopen(it_file, "r");
        int found = 0;

        if (!fp)
                return -1;
        while (fgets(line, sizeof(line), fp)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (strncmp(line, "bootstrap=", 10) == 0) {
                        snprintf(it_bootstrap, sizeof(it_bootstrap), "%s", line + 10);
                        found |= 1;
                } else if (sscanf(line, "control=127.0.0.1:%d", &it_control_port) == 1) {
                        found |= 2;
                }
        }
        fclose(fp);
        return found == 3 ? 0 : -1;
}

static void it_stop(void)
{
        if (it_pid > 0) {
                kill(it_pid, SIGKILL);
                waitpid(it_pid, NULL, 0);
                it_pid = -1;
        }
        unlink(it_file);
        unlink(it_stdout);
        rmdir(it_dir);
}

/* Criterion skips .fini when .init fails: clean up before failing. */
static void it_start_failed(const char *why)
{
        it_stop();
        cr_assert_fail("%s", why);
}

static void it_start(void)
{
        char flag[192];
        long deadline;
        int status;

        snprintf(it_dir, sizeof(it_dir), "/tmp/fls-it-broker-XXXXXX");
        cr_assert_not_null(mkdtemp(it_dir), "mkdtemp: %s", strerror(errno));
        snprintf(it_file, sizeof(it_file), "%s/bootstrap", it_dir);
        snprintf(it_stdout, sizeof(it_stdout), "%s/stdout", it_dir);
        snprintf(flag, sizeof(flag), "--broker.bootstrap_file=%s", it_file);

        it_pid = fork();
        if (it_pid == -1)
                it_start_failed("fork failed");
        if (it_pid == 0) {
                /* A crashed test must not leave a broker behind. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (!freopen(it_stdout, "w", stdout))
                        _exit(127);
                execl(FLS_BIN, FLS_BIN, "broker", flag, "--topic.partitions=2",
                      (char *)NULL);
                _exit(127);
        }

        deadline = fls_t_mono_ms() + 15000;
        while (it_read_bootstrap_file() == -1) {
                if (waitpid(it_pid, &status, WNOHANG) == it_pid) {
                        it_pid = -1;
                        it_start_failed(
                            "broker exited before writing its bootstrap file");
                }
                if (fls_t_mono_ms() > deadline)
                        it_start_failed("no bootstrap file after 15 s");
                usleep(20 * 1000);
        }
}

static int it_control_connect(void)
{
        struct sockaddr_in addr;
        struct timeval tv = {5, 0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        cr_assert(fd != -1, "socket: %s", strerror(errno));
        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_port = htons((uint16_t)it_control_port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0,
                  "connect to control port %d: %s", it_control_port, strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* Sends raw bytes, then reads exactly one reply line into reply. */
static void it_send_raw(int fd, const char *data, size_t len, char *reply, size_t size)
{
        size_t got = 0;

        cr_assert(send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len, "send: %s",
                  strerror(errno));
        while (got < size - 1) {
                ssize_t r = recv(fd, reply + got, 1, 0);

                cr_assert(r == 1, "no reply line from the control port");
                if (reply[got] == '\n')
                        break;
                got++;
        }
        reply[got] = '\0';
}

static void it_cmd(int fd, const char *cmd, char *reply, size_t size)
{
        char line[256];
        int n = snprintf(line, sizeof(line), "%s\n", cmd);

        it_send_raw(fd, line, (size_t)n, reply, size);
}

static void it_expect(int fd, const char *cmd, const char *prefix)
{
        char reply[1024];

        it_cmd(fd, cmd, reply, sizeof(reply));
        cr_assert(strncmp(reply, prefix, strlen(prefix)) == 0,
                  "'%s' answered '%s', expected '%s...'", cmd, reply, prefix);
}

static rd_kafka_conf_t *it_kafka_conf(void)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[256];
        const char *kv[][2] = {
            {"bootstrap.servers", it_bootstrap},
            {"reconnect.backoff.max.ms", "500"},
            {"fetch.wait.max.ms", "10"},
            {"linger.ms", "0"},
            {"log_level", "3"},
        };
        size_t i;

        for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
                cr_assert(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr,
                                            sizeof(errstr)) == RD_KAFKA_CONF_OK,
                          "%s", errstr);
        return conf;
}

static void it_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        *(rd_kafka_resp_err_t *)m->_private = m->err;
}

static void it_produce_one(const char *topic, const char *payload)
{
        rd_kafka_conf_t *conf = it_kafka_conf();
        rd_kafka_resp_err_t dr_err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        char errstr[256];
        rd_kafka_t *rk;

        rd_kafka_conf_set_dr_msg_cb(conf, it_on_delivery);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        cr_assert_not_null(rk, "%s", errstr);
        cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("k", 1),
                                       RD_KAFKA_V_VALUE((void *)payload, strlen(payload)),
                                       RD_KAFKA_V_OPAQUE(&dr_err), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
        cr_assert_eq(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR,
                     "message not delivered in 10 s");
        cr_assert_eq(dr_err, RD_KAFKA_RESP_ERR_NO_ERROR, "delivery failed: %s",
                     rd_kafka_err2str(dr_err));
        rd_kafka_destroy(rk);
}

/* Reads partition 0 from the beginning until payload shows up. */
static void it_consume_expect(const char *topic, const char *payload)
{
        rd_kafka_conf_t *conf = it_kafka_conf();
        rd_kafka_topic_partition_list_t *parts;
        char errstr[256];
        rd_kafka_t *rk;
        long deadline = fls_t_mono_ms() + 10000;
        int found = 0;

        cr_assert(rd_kafka_conf_set(conf, "group.id", "fls-it-broker", errstr,
                                    sizeof(errstr)) == RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        cr_assert_not_null(rk, "%s", errstr);
        rd_kafka_poll_set_consumer(rk);
        parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, topic, 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        cr_assert_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(parts);

        while (!found && fls_t_mono_ms() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

                if (!m)
                        continue;
                if (!m->err && m->len == strlen(payload) &&
                    memcmp(m->payload, payload, m->len) == 0)
                        found = 1;
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        cr_assert(found, "'%s' not read back from %s within 10 s", payload, topic);
}

TestSuite(it_broker, .init = it_start, .fini = it_stop, .timeout = 60);

Test(it_broker, control_commands)
{
        char reply[1024];
        int fd = it_control_connect();
        int other = it_control_connect();

        it_expect(fd, "ping", "ok pong");
        it_cmd(fd, "topics", reply, sizeof(reply));
        cr_assert(strncmp(reply, "ok ", 3) == 0, "topics: %s", reply);
        cr_assert_not_null(strstr(reply, "orders:2"), "topics: %s", reply);
        cr_assert_not_null(strstr(reply, "orders.dlq:2"), "topics: %s", reply);
        cr_assert_not_null(strstr(reply, "dispatch-decisions:2"), "topics: %s", reply);

        it_expect(fd, "down 1", "ok");
        it_expect(other, "up 1", "ok");
        it_expect(fd, "rtt 2 5", "ok");
        it_expect(fd, "rtt 2 0", "ok");
        it_expect(fd, "error Fetch 2 REQUEST_TIMED_OUT", "ok");
        it_expect(fd, "clear Fetch", "ok");
        it_expect(fd, "leader orders 1 2", "ok");

        it_expect(fd, "frobnicate", "error: ");
        it_expect(fd, "down", "error: ");
        it_expect(fd, "down 99", "error: ");
        it_expect(fd, "error Fetch many REQUEST_TIMED_OUT", "error: ");
        it_expect(fd, "error Fetch 1 NO_SUCH_ERROR", "error: ");
        it_expect(fd, "error Nope 1 REQUEST_TIMED_OUT", "error: ");
        it_expect(fd, "leader no-such-topic 0 1", "error: ");
        {
                char junk[2048];

                memset(junk, 'x', sizeof(junk));
                junk[sizeof(junk) - 1] = '\n';
                it_send_raw(fd, junk, sizeof(junk), reply, sizeof(reply));
                cr_assert(strncmp(reply, "error: ", 7) == 0, "long line: %s", reply);
        }
        /* Still serving, on both connections. */
        it_expect(fd, "ping", "ok pong");
        it_expect(other, "ping", "ok pong");
        close(other);
        close(fd);
}

Test(it_broker, produce_and_consume_over_tcp)
{
        int fd = it_control_connect();

        it_produce_one("orders", "first");
        it_consume_expect("orders", "first");

        /* A broker that went down and came back serves its partitions again. */
        it_expect(fd, "leader orders 0 1", "ok");
        it_expect(fd, "down 1", "ok");
        it_expect(fd, "up 1", "ok");
        it_produce_one("orders", "after-restart");
        it_consume_expect("orders", "after-restart");
        close(fd);
}

Test(it_broker, sigterm_exits_zero)
{
        char out[1024] = "", expect[1100];
        long deadline;
        int status = 0;
        pid_t r = 0;
        FILE *fp;
        size_t n;

        cr_assert_eq(kill(it_pid, SIGTERM), 0);
        deadline = fls_t_mono_ms() + 5000;
        while ((r = waitpid(it_pid, &status, WNOHANG)) == 0 && fls_t_mono_ms() < deadline)
                usleep(10 * 1000);
        cr_assert_eq(r, it_pid, "broker still running 5 s after SIGTERM");
        it_pid = -1;
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "broker did not exit 0 (status 0x%x)", status);

        cr_assert(access(it_file, F_OK) == -1, "%s left behind after a clean exit",
                  it_file);

        /* stdout carries exactly the two published lines. */
        fp = fopen(it_stdout, "r");
        cr_assert_not_null(fp);
        n = fread(out, 1, sizeof(out) - 1, fp);
        out[n] = '\0';
        fclose(fp);
        snprintf(expect, sizeof(expect), "bootstrap=%s\ncontrol=127.0.0.1:%d\n",
                 it_bootstrap, it_control_port);
        cr_assert_str_eq(out, expect);
}
