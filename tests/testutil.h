/*
 * testutil: what the integration suites share: a private redis-server and a
 * `flashstream broker` process on loopback, each in a temporary folder, and helpers to
 * run the flashstream binary and read what it printed. Nothing here is a stand-in:
 * the services are the real ones the consumers use in production.
 */
#ifndef FLS_TESTUTIL_H
#define FLS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct fls_tenv {
        char dir[256]; /* temporary folder of this environment */
        pid_t redis_pid;
        int redis_port;
        pid_t broker_pid;
        char bootstrap_file[320];
        char bootstrap[512];
        char control[64];
} fls_tenv_t;

/* Creates the folder; returns 0 or -1. */
int fls_t_init(fls_tenv_t *env);
/* Starts redis-server on a free loopback port (appendonly yes, everysec) and waits
 * until it answers PING. */
int fls_t_redis_start(fls_tenv_t *env);
/* Stops redis with sig (SIGTERM or SIGKILL) and waits for it. */
void fls_t_redis_stop(fls_tenv_t *env, int sig);
/* Starts `flashstream broker` with the given partition count and waits for its
 * bootstrap file. */
int fls_t_broker_start(fls_tenv_t *env, int partitions);
void fls_t_broker_stop(fls_tenv_t *env);
/* fls_t_init, fls_t_redis_start and fls_t_broker_start in one: NULL, or which of
 * them failed (for the suite's assertion). */
const char *fls_t_start(fls_tenv_t *env, int partitions);
/* Stops everything and removes the folder. */
void fls_t_fini(fls_tenv_t *env);

/* Starts the flashstream binary with the common flags (bootstrap file, redis port)
 * followed by args (NULL-terminated); stdout and stderr go to logfile. */
pid_t fls_t_spawn(fls_tenv_t *env, const char *logfile, const char *const *args);
/* How many times longer every wait of a suite should be: 10 when $FLS_VALGRIND is set
 * (deploy/valgrind.sh: memcheck runs a consumer 20-50x slower), 1 otherwise. */
int fls_t_slowdown(void);
/* Defines the Criterion hook that multiplies every suite's time-out of the file by
 * fls_t_slowdown(): Criterion's --timeout can only lower a suite's time-out, and this
 * hook runs in the runner process before any test is spawned, where the time-outs are
 * read. Once per suite file, which must include criterion/hooks.h and
 * criterion/internal/ordered-set.h. */
#define FLS_T_SCALE_TIMEOUTS()                                                           \
        ReportHook(PRE_ALL)(struct criterion_test_set * set)                             \
        {                                                                                \
                FOREACH_SET(struct criterion_suite_set *s, set->suites)                  \
                {                                                                        \
                        if (s->suite.data && s->suite.data->timeout > 0)                 \
                                s->suite.data->timeout *= fls_t_slowdown();              \
                }                                                                        \
        }
/* Milliseconds on the monotonic clock, for deadlines and durations. */
int64_t fls_t_mono_ms(void);
/* Waits up to timeout_ms times fls_t_slowdown(); returns the exit status, 128+signal,
 * or -1 on time-out (the process is then killed). Anything but 0 also prints how it
 * ended and the end of its log (fls_t_spawn's logfile) to stderr. */
int fls_t_wait(pid_t pid, int timeout_ms);
/* Runs to completion and captures stdout (malloc'ed, NUL-terminated) */
int fls_t_run(fls_tenv_t *env, char **out, const char *const *args);
/* Runs a redis-cli command against the environment's server, output malloc'ed. */
char *fls_t_redis_cli(fls_tenv_t *env, const char *cmd);
/* Sends one line to the broker's control port, returns the reply line (static). */
const char *fls_t_broker_ctl(fls_tenv_t *env, const char *line);

/* Messages of topic that consumers have fully done: the sum over its partitions of
 * the emitted offset + 1 recorded in Redis (key prefix "fs"), since every offset of
 * the project's input topics carries a message. */
long fls_t_emitted(fls_tenv_t *env, const char *topic, int partitions);
/* Rows of a CSV file less its header line; -1 if it cannot be opened. */
long fls_t_csv_rows(const char *path);

/* Lines of the log DIR/logname.log (fls_t_spawn's logfile, by the suites' naming)
 * that hold what; 0 while the file does not exist. */
int fls_t_log_count(fls_tenv_t *env, const char *logname, const char *what);
/* Waits up to timeout_ms times fls_t_slowdown() for such a line: 1, or 0 if none came. */
int fls_t_wait_log(fls_tenv_t *env, const char *logname, const char *what,
                   int timeout_ms);
/* The port a consumer's log (logfile) says its /metrics endpoint listens on, or -1. */
int fls_t_metrics_port(const char *logfile);
/* Sends request as it is to 127.0.0.1:port and returns the whole answer, read to EOF
 * (malloc'ed); NULL if it cannot connect or no answer ends within 5 s. */
char *fls_t_http(int port, const char *request);
/* GET path from 127.0.0.1:port: the body of a 200 answer (malloc'ed), else NULL. */
char *fls_t_http_get(int port, const char *path);
/* The value of one series of a Prometheus text scrape, named as it is printed
 * ("name{labels}", or "name" without labels); -1 if the scrape has no such line. */
double fls_t_metric(const char *scrape, const char *series);

#endif
