/*
 * testutil: real services for the integration suites (see testutil.h).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"

static int free_port(void)
{
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

/* fork() whose child is SIGKILLed when the test process ends. A test that fails or hits
 * its Criterion time-out must not leave a consumer behind: an orphan keeps retrying
 * Redis forever, and under memcheck holds a core that the next test needs. */
static pid_t fork_child(void)
{
        pid_t parent = getpid(), pid = fork();

        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent) /* the parent died before prctl */
                        _exit(125);
        }
        return pid;
}

/* The log each spawned process writes, so that fls_t_wait can show how one ended:
 * in CI the test folder is gone by the time anyone reads the output. */
static struct {
        pid_t pid;
        char log[400];
} spawned[64];
static unsigned nspawned;

static void remember(pid_t pid, const char *log)
{
        unsigned i = nspawned++ % (sizeof(spawned) / sizeof(spawned[0]));
        spawned[i].pid = pid;
        snprintf(spawned[i].log, sizeof(spawned[i].log), "%s", log ? log : "");
}

/* To stderr: how pid ended (rc as fls_t_wait returns it) and the end of its log. */
static void report_end(pid_t pid, int rc)
{
        const char *log = NULL;
        char cmd[500];

        for (size_t i = 0; i < sizeof(spawned) / sizeof(spawned[0]); i++)
                if (spawned[i].pid == pid && *spawned[i].log)
                        log = spawned[i].log;
        if (rc < 0)
                fprintf(stderr, "testutil: pid %d did not end in time, killed", (int)pid);
        else if (rc > 128)
                fprintf(stderr, "testutil: pid %d ended by signal %d", (int)pid,
                        rc - 128);
        else
                fprintf(stderr, "testutil: pid %d exited %d", (int)pid, rc);
        fprintf(stderr, "; the end of its log %s:\n", log ? log : "(none)");
        if (log) {
                snprintf(cmd, sizeof(cmd), "tail -n 25 '%s' >&2", log);
                if (system(cmd) != 0)
                        fprintf(stderr, "testutil: could not read %s\n", log);
        }
}

static void sleep_ms(int ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

int fls_t_init(fls_tenv_t *env)
{
        memset(env, 0, sizeof(*env));
        snprintf(env->dir, sizeof(env->dir), "/tmp/fls-test-XXXXXX");
        return mkdtemp(env->dir) ? 0 : -1;
}

char *fls_t_redis_cli(fls_tenv_t *env, const char *cmd)
{
        char line[1024];
        FILE *p;
        char *out = calloc(1, 1);
        size_t len = 0;

        snprintf(line, sizeof(line), "redis-cli -p %d %s 2>&1", env->redis_port, cmd);
        p = popen(line, "r");
        if (!p)
                return out;
        for (;;) {
                char buf[4096];
                size_t n = fread(buf, 1, sizeof(buf), p);
                if (n == 0)
                        break;
                out = realloc(out, len + n + 1);
                memcpy(out + len, buf, n);
                len += n;
                out[len] = '\0';
        }
        pclose(p);
        return out;
}

int fls_t_redis_start(fls_tenv_t *env)
{
        char port[16], log[320];
        pid_t pid;

        if (!env->redis_port)
                env->redis_port = free_port();
        snprintf(port, sizeof(port), "%d", env->redis_port);
        snprintf(log, sizeof(log), "%s/redis.log", env->dir);
        pid = fork_child();
        if (pid == 0) {
                execlp("redis-server", "redis-server", "--port", port, "--bind",
                       "127.0.0.1", "--dir", env->dir, "--appendonly", "yes",
                       "--appendfsync", "everysec", "--save", "", "--logfile", log,
                       (char *)NULL);
                _exit(127);
        }
        env->redis_pid = pid;
        for (int i = 0; i < 100; i++) {
                char *r = fls_t_redis_cli(env, "PING");
                int ok = strstr(r, "PONG") != NULL;
                free(r);
                if (ok)
                        return 0;
                sleep_ms(50);
        }
        return -1;
}

void fls_t_redis_stop(fls_tenv_t *env, int sig)
{
        if (env->redis_pid > 0) {
                kill(env->redis_pid, sig);
                waitpid(env->redis_pid, NULL, 0);
                env->redis_pid = 0;
        }
}

int fls_t_broker_start(fls_tenv_t *env, int partitions)
{
        char parts[64], file[400];
        pid_t pid;

        snprintf(env->bootstrap_file, sizeof(env->bootstrap_file), "%s/bootstrap",
                 env->dir);
        snprintf(parts, sizeof(parts), "--topic.partitions=%d", partitions);
        snprintf(file, sizeof(file), "--broker.bootstrap_file=%s", env->bootstrap_file);
        pid = fork_child();
        if (pid == 0) {
                char log[320];
                snprintf(log, sizeof(log), "%s/broker.log", env->dir);
                if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
                        _exit(126);
                execl(FLS_BIN, FLS_BIN, "broker", parts, file, (char *)NULL);
                _exit(127);
        }
        env->broker_pid = pid;
        for (int i = 0; i < 200; i++) {
                FILE *fp = fopen(env->bootstrap_file, "r");
                char line[512];
                if (fp) {
                        while (fgets(line, sizeof(line), fp)) {
                                line[strcspn(line, "\n")] = '\0';
                                if (!strncmp(line, "bootstrap=", 10))
                                        snprintf(env->bootstrap, sizeof(env->bootstrap),
                                                 "%s", line + 10);
                                if (!strncmp(line, "control=", 8) &&
                                    strlen(line + 8) < sizeof(env->control))
                                        memcpy(env->control, line + 8,
                                               strlen(line + 8) + 1);
                        }
                        fclose(fp);
                        if (*env->bootstrap && *env->control)
                                return 0;
                }
                sleep_ms(50);
        }
        return -1;
}

void fls_t_broker_stop(fls_tenv_t *env)
{
        if (env->broker_pid > 0) {
                kill(env->broker_pid, SIGTERM);
                if (fls_t_wait(env->broker_pid, 5000) < 0)
                        kill(env->broker_pid, SIGKILL);
                env->broker_pid = 0;
        }
}

const char *fls_t_start(fls_tenv_t *env, int partitions)
{
        if (fls_t_init(env))
                return "the test folder could not be created";
        if (fls_t_redis_start(env))
                return "redis-server did not start";
        if (fls_t_broker_start(env, partitions))
                return "flashstream broker did not start";
        return NULL;
}

void fls_t_fini(fls_tenv_t *env)
{
        char cmd[300];

        fls_t_broker_stop(env);
        fls_t_redis_stop(env, SIGTERM);
        if (*env->dir && !getenv("FLS_KEEP_TEST_DIR")) {
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", env->dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "could not remove %s\n", env->dir);
        }
}

pid_t fls_t_spawn(fls_tenv_t *env, const char *logfile, const char *const *args)
{
        const char *argv[64];
        char bfile[400], rport[64], vg[1024];
        const char *tool = getenv("FLS_VALGRIND");
        int n = 0;
        pid_t pid;

        snprintf(bfile, sizeof(bfile), "--bootstrap.file=%s", env->bootstrap_file);
        snprintf(rport, sizeof(rport), "--redis.port=%d", env->redis_port);
        /* FLS_VALGRIND="valgrind OPTS": consumers run under it (deploy/valgrind.sh). */
        if (tool && *tool && args[0] && strcmp(args[0], "consume") == 0) {
                char *save = NULL, *w;
                snprintf(vg, sizeof(vg), "%s", tool);
                for (w = strtok_r(vg, " ", &save); w && n < 30;
                     w = strtok_r(NULL, " ", &save))
                        argv[n++] = w;
        }
        argv[n++] = FLS_BIN;
        for (int i = 0; args[i] && n < 60; i++) {
                argv[n++] = args[i];
                if (i == 0) {
                        argv[n++] = bfile;
                        argv[n++] = rport;
                }
        }
        argv[n] = NULL;
        pid = fork_child();
        if (pid == 0) {
                if (logfile &&
                    (!freopen(logfile, "a", stdout) || !freopen(logfile, "a", stderr)))
                        _exit(126);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        if (pid > 0)
                remember(pid, logfile);
        return pid;
}

int fls_t_slowdown(void)
{
        const char *tool = getenv("FLS_VALGRIND");

        return tool && *tool ? 10 : 1; /* memcheck runs a consumer ~10-50x slower */
}

int64_t fls_t_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fls_t_wait(pid_t pid, int timeout_ms)
{
        int st;

        timeout_ms *= fls_t_slowdown();
        for (int waited = 0;; waited += 20) {
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid) {
                        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                        if (rc != 0)
                                report_end(pid, rc);
                        return rc;
                }
                if (r < 0)
                        return -1;
                if (waited >= timeout_ms) {
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        report_end(pid, -1);
                        return -1;
                }
                sleep_ms(20);
        }
}

int fls_t_run(fls_tenv_t *env, char **out, const char *const *args)
{
        char path[400];
        FILE *fp;
        long len;
        pid_t pid;
        int rc;

        snprintf(path, sizeof(path), "%s/run.%d.out", env->dir, rand());
        pid = fork_child();
        if (pid == 0) {
                /* stdout to the capture file, stderr to the test's stderr */
                if (!freopen(path, "w", stdout))
                        _exit(126);
                {
                        const char *argv[64];
                        char bfile[400], rport[64];
                        int n = 0;
                        snprintf(bfile, sizeof(bfile), "--bootstrap.file=%s",
                                 env->bootstrap_file);
                        snprintf(rport, sizeof(rport), "--redis.port=%d",
                                 env->redis_port);
                        argv[n++] = FLS_BIN;
                        for (int i = 0; args[i] && n < 60; i++) {
                                argv[n++] = args[i];
                                if (i == 0) {
                                        argv[n++] = bfile;
                                        argv[n++] = rport;
                                }
                        }
                        argv[n] = NULL;
                        execv(FLS_BIN, (char *const *)argv);
                }
                _exit(127);
        }
        rc = fls_t_wait(pid, 120000);
        fp = fopen(path, "r");
        *out = NULL;
        if (fp) {
                fseek(fp, 0, SEEK_END);
                len = ftell(fp);
                rewind(fp);
                *out = calloc((size_t)len + 1, 1);
                if (*out && fread(*out, 1, (size_t)len, fp) != (size_t)len)
                        (*out)[0] = '\0';
                fclose(fp);
        }
        unlink(path);
        return rc;
}

const char *fls_t_broker_ctl(fls_tenv_t *env, const char *line)
{
        static char reply[512];
        struct sockaddr_in a;
        char host[64];
        int port = 0, fd;
        ssize_t n;
        size_t got = 0;

        reply[0] = '\0';
        if (sscanf(env->control, "%63[^:]:%d", host, &port) != 2)
                return reply;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
                if (fd >= 0)
                        close(fd);
                return reply;
        }
        if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
                close(fd);
                return reply;
        }
        while (got < sizeof(reply) - 1 &&
               (n = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0) {
                got += (size_t)n;
                reply[got] = '\0';
                if (strchr(reply, '\n'))
                        break;
        }
        reply[strcspn(reply, "\n")] = '\0';
        close(fd);
        return reply;
}

long fls_t_emitted(fls_tenv_t *env, const char *topic, int partitions)
{
        /* One redis-cli run for all partitions: the suites poll this to time their
         * kills mid-stream, and a fork per partition made a poll slow enough under
         * load for a fast consumer to finish between two polls. */
        char cmd[512], *v;
        long sum;
        snprintf(cmd, sizeof(cmd),
                 "EVAL \"local s = 0 for p = 0, %d do local v = redis.call('HGET', "
                 "'fs:{%s.' .. p .. '}:meta', 'emitted') if v then s = s + v + 1 end "
                 "end return s\" 0",
                 partitions - 1, topic);
        v = fls_t_redis_cli(env, cmd);
        sum = atol(v);
        free(v);
        return sum;
}

long fls_t_csv_rows(const char *path)
{
        char line[4096];
        long n = -1;
        FILE *fp = fopen(path, "r");

        if (!fp)
                return -1;
        while (fgets(line, sizeof(line), fp))
                if (strchr(line, '\n') || feof(fp))
                        n++;
        fclose(fp);
        return n;
}

int fls_t_log_count(fls_tenv_t *env, const char *logname, const char *what)
{
        char path[400], line[4096];
        int n = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s.log", env->dir, logname);
        if (!(fp = fopen(path, "r")))
                return 0;
        while (fgets(line, sizeof(line), fp))
                n += strstr(line, what) != NULL;
        fclose(fp);
        return n;
}

int fls_t_wait_log(fls_tenv_t *env, const char *logname, const char *what, int timeout_ms)
{
        timeout_ms *= fls_t_slowdown();
        for (int waited = 0; fls_t_log_count(env, logname, what) == 0; waited += 100) {
                if (waited >= timeout_ms)
                        return 0;
                sleep_ms(100);
        }
        return 1;
}

int fls_t_metrics_port(const char *logfile)
{
        static const char pat[] = "metrics on http://";
        char line[4096];
        int port = -1;
        FILE *fp = fopen(logfile, "r");

        if (!fp)
                return -1;
        while (port < 0 && fgets(line, sizeof(line), fp)) {
                const char *p = strstr(line, pat), *colon;
                if (p && (colon = strchr(p + sizeof(pat) - 1, ':')))
                        port = atoi(colon + 1);
        }
        fclose(fp);
        return port > 0 ? port : -1;
}

char *fls_t_http(int port, const char *request)
{
        struct sockaddr_in a;
        struct timeval tv = {5, 0};
        char *buf = NULL;
        size_t len = 0, cap = 0;
        ssize_t n;
        int fd;

        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
                return NULL;
        /* A server that never answers fails the caller instead of hanging it. */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            send(fd, request, strlen(request), 0) != (ssize_t)strlen(request)) {
                close(fd);
                return NULL;
        }
        do {
                buf = fls_grow(buf, &cap, len + 4096, 1);
                n = recv(fd, buf + len, cap - len - 1, 0);
                len += n > 0 ? (size_t)n : 0;
        } while (n > 0);
        close(fd);
        if (n < 0) { /* an error or the time-out: not the whole answer */
                free(buf);
                return NULL;
        }
        buf[len] = '\0';
        return buf;
}

char *fls_t_http_get(int port, const char *path)
{
        char req[512], *resp, *body;

        snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
        resp = fls_t_http(port, req);
        if (!resp)
                return NULL;
        body = strstr(resp, "\r\n\r\n");
        if (!body || strncmp(resp, "HTTP/1.", 7) != 0 || !strstr(resp, " 200 ")) {
                free(resp);
                return NULL;
        }
        memmove(resp, body + 4, strlen(body + 4) + 1);
        return resp;
}

double fls_t_metric(const char *scrape, const char *series)
{
        size_t len = strlen(series);

        for (const char *p = scrape; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, series, len) == 0 && p[len] == ' ')
                        return strtod(p + len + 1, NULL);
        return -1;
}
