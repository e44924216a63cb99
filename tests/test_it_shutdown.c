/*
 * test_it_shutdown: how a consumer leaves its group on SIGTERM, against the real
 * `flashstream broker` process and a real redis-server.
 *  - alone in its group, it leaves at once and says so;
 *  - with the broker gone, it still exits 0 within shutdown.timeout_ms;
 *  - with Redis down while it starts (set-up and the assignment wait for it), it
 *    exits 0;
 *  - while the group rebalances (a second instance just joined), the group holds a
 *    leaving member until the rebalance ends, seconds later: the consumer waits at
 *    most shutdown.timeout_ms, exits 0 and warns; the other instance gets every
 *    partition once the group drops the first, and goes on from exactly where the
 *    first stopped: the emitted offsets add up to exactly the events produced.
 * Under deploy/valgrind.sh the waits and the time-out grow by fls_t_slowdown(), and
 * the rebalance case checks only a clean exit and b's progress: under memcheck a may
 * handle the SIGTERM only after the rebalance ended.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/internal/ordered-set.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define NPART  4
#define MODELS FLS_TEST_DATA "/../../models"

static fls_tenv_t env;

static void setup(void)
{
        const char *e = fls_t_start(&env, NPART);
        cr_assert_null(e, "%s", e);
}

static void teardown(void)
{
        fls_t_fini(&env);
}

TestSuite(it_shutdown, .init = setup, .fini = teardown, .timeout = 300);
FLS_T_SCALE_TIMEOUTS()

/* Click events from the simulator, produced to the broker; seed and start differ per
 * call so that a second call appends other events. */
static void simulate(int seed, int minutes_ago)
{
        char ts[64], sd[32], out[400];
        char *o = NULL;
        int64_t t0 = ((int64_t)time(NULL) - minutes_ago * 60) / 60 * 60000;
        snprintf(ts, sizeof(ts), "--sim.start_ts=%" PRId64, t0);
        snprintf(sd, sizeof(sd), "--sim.seed=%d", seed);
        snprintf(out, sizeof(out), "--sim.out_dir=%s/sim%d", env.dir, seed);
        const char *args[] = {"simulate",
                              "--sim.realtime=false",
                              "--sim.duration_s=5",
                              "--sim.users=300",
                              "--sim.progress_ms=0",
                              ts,
                              sd,
                              out,
                              NULL};
        cr_assert_eq(fls_t_run(&env, &o, args), 0, "simulate failed");
        free(o);
}

static pid_t consume(const char *log, const char *timeout_ms)
{
        char path[400];
        const char *args[] = {"consume",
                              "clickstream",
                              "--clickstream.intent_model=" MODELS "/intent_sim.flsm",
                              "--clickstream.participation_model=" MODELS
                              "/participation.flsm",
                              "--consumer.group=shutdown",
                              "--kafka.session.timeout.ms=6000",
                              "--metrics.port=-1",
                              timeout_ms,
                              NULL};
        snprintf(path, sizeof(path), "%s/%s.log", env.dir, log);
        return fls_t_spawn(&env, path, args);
}

/* The consumer's log, read whole (malloc'ed); empty before the consumer starts. */
static char *log_of(const char *log)
{
        char path[400];
        FILE *fp;
        char *buf;
        long n;
        snprintf(path, sizeof(path), "%s/%s.log", env.dir, log);
        fp = fopen(path, "r");
        if (!fp) /* not started yet */
                return strdup("");
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        rewind(fp);
        buf = malloc((size_t)n + 1);
        cr_assert_not_null(buf);
        buf[fread(buf, 1, (size_t)n, fp)] = '\0';
        fclose(fp);
        return buf;
}

/* Partitions assigned since the log's last revocation (eager assignment: a
 * rebalance revokes everything, then assigns the new set), as a bit set. */
static unsigned assigned_now(const char *log)
{
        char *s = log_of(log), *p = s, *last = strstr(s, "revoked"), *r;
        unsigned set = 0;
        while (last && (r = strstr(last + 1, "revoked")))
                last = r;
        if (last)
                p = last;
        while ((p = strstr(p, "assigned clickstream [")) != NULL) {
                p += strlen("assigned clickstream [");
                set |= 1u << atoi(p);
        }
        free(s);
        return set;
}

static void wait_assigned(const char *log, unsigned want)
{
        unsigned got = 0;
        for (int i = 0; i < 300 * fls_t_slowdown() && (got = assigned_now(log)) != want;
             i++)
                usleep(100000);
        cr_assert_eq(got, want, "%s owns partitions 0x%x, not 0x%x", log, got, want);
}

/* Click events the simulator produced with that seed. */
static long produced(int seed)
{
        char path[400];
        long n;
        snprintf(path, sizeof(path), "%s/sim%d/clickstream.csv", env.dir, seed);
        n = fls_t_csv_rows(path);
        cr_assert_geq(n, 0, "%s", path);
        return n;
}

static void wait_emitted(long want)
{
        long got = 0;
        for (int i = 0; i < 600 * fls_t_slowdown() &&
                        (got = fls_t_emitted(&env, "clickstream", NPART)) < want;
             i++)
                usleep(100000);
        cr_assert_eq(got, want, "%ld of %ld click events done", got, want);
}

/* SIGTERM, then the exit status and the seconds it took (-1: still running after
 * 20 s, scaled). */
static int stop(pid_t pid, double *took)
{
        double t0 = fls_t_mono_ms() / 1e3;
        int rc;
        kill(pid, SIGTERM);
        rc = fls_t_wait(pid, 20000);
        *took = fls_t_mono_ms() / 1e3 - t0;
        cr_log_info("consumer %d exited %d after SIGTERM in %.2f s", (int)pid, rc, *took);
        return rc;
}

Test(it_shutdown, alone_in_its_group_it_leaves_at_once)
{
        double took;
        pid_t a;
        char *log;

        a = consume("alone", "--shutdown.timeout_ms=5000");
        wait_assigned("alone", (1u << NPART) - 1);
        cr_assert_eq(stop(a, &took), 0);
        cr_assert_lt(took, 2.0 * fls_t_slowdown(), "%.2f s to leave an idle group", took);
        log = log_of("alone");
        cr_assert(strstr(log, "left the group in") != NULL, "no clean leave logged");
        free(log);
}

/* The broker gone before the SIGTERM, with offsets still to commit: the close can
 * reach no coordinator. Before the bound, rd_kafka_consumer_close waited for it
 * indefinitely (one such consumer was still running an hour and a half later). */
Test(it_shutdown, with_the_broker_gone_it_still_exits)
{
        double took;
        pid_t a;
        char *log;

        simulate(3, 20);
        a = consume("nobroker", "--shutdown.timeout_ms=2000");
        wait_assigned("nobroker", (1u << NPART) - 1);
        wait_emitted(produced(3));
        fls_t_broker_stop(&env);
        sleep(1);
        cr_assert_eq(stop(a, &took), 0, "no exit 0 with the broker gone");
        cr_assert_lt(took, 3.0 * fls_t_slowdown(), "%.2f s to exit with the broker gone",
                     took);
        log = log_of("nobroker");
        cr_assert(strstr(log, "left the group in") ||
                      strstr(log, "did not let this consumer go within"),
                  "no leave logged");
        free(log);
}

/* Redis down while a consumer starts: set-up waits for it, and so does the assignment
 * (the partitions' stored offsets). A SIGTERM in either wait is a stop like any
 * other; both were taken as fatal errors (exit 1). */
Test(it_shutdown, with_redis_down_it_still_exits)
{
        double took;
        pid_t a;
        char *log;

        fls_t_redis_stop(&env, SIGKILL);
        a = consume("setup", "--shutdown.timeout_ms=2000");
        cr_assert(fls_t_wait_log(&env, "setup", "retrying in", 30000),
                  "set-up never waited for Redis");
        cr_assert_eq(stop(a, &took), 0, "no exit 0 while set-up waited for Redis");

        cr_assert_eq(fls_t_redis_start(&env), 0);
        a = consume("join", "--shutdown.timeout_ms=2000");
        cr_assert(fls_t_wait_log(&env, "join", "consumer started", 30000));
        fls_t_redis_stop(&env, SIGKILL); /* the join takes seconds: ~3 s here */
        cr_assert(fls_t_wait_log(&env, "join", "retrying in", 30000),
                  "the assignment never waited for Redis");
        cr_assert_eq(stop(a, &took), 0,
                     "no exit 0 while the assignment waited for Redis");
        log = log_of("join");
        cr_assert(!strstr(log, "assigned clickstream"), "assigned without Redis");
        cr_assert(!strstr(log, "fatal"), "the stop was taken as a fatal error");
        free(log);
}

Test(it_shutdown, during_a_rebalance_it_waits_at_most_shutdown_timeout_and_loses_nothing)
{
        double took;
        pid_t a, b;
        char *log;
        long want;

        simulate(1, 20);
        want = produced(1);
        cr_assert_gt(want, 1000);
        a = consume("a", "--shutdown.timeout_ms=1000");
        wait_assigned("a", (1u << NPART) - 1);
        wait_emitted(want);

        /* b's JoinGroup starts a rebalance that the broker holds open for seconds
         * (until its rebalance delay ends); a's heartbeat sees it and a, assigned
         * eagerly, revokes all it has before it joins again. A SIGTERM right after
         * the revocation finds a waiting for that JoinGroup. */
        b = consume("b", "--shutdown.timeout_ms=5000");
        for (int i = 0; i < 300 * fls_t_slowdown(); i++) {
                log = log_of("a");
                int revoked = strstr(log, "revoked clickstream") != NULL;
                free(log);
                if (revoked)
                        break;
                usleep(20000);
        }
        cr_assert_eq(stop(a, &took), 0, "a did not exit 0");
        /* Under memcheck a may react to SIGTERM only after the rebalance ended and
         * leave cleanly; what is checked then is that either way frees everything. */
        if (fls_t_slowdown() == 1) {
                log = log_of("a");
                cr_assert(strstr(log, "did not let this consumer go within "
                                      "shutdown.timeout_ms"),
                          "a's log has no shutdown.timeout_ms warning: the rebalance "
                          "this test needs did not happen, or the wait was not bounded");
                free(log);
                cr_assert_lt(took, 2.5, "%.2f s to exit with shutdown.timeout_ms=1000",
                             took);
        }

        /* The group drops a after its session time-out; b then owns everything and
         * goes on from where a stopped, through events produced since. */
        simulate(2, 10);
        want += produced(2);
        wait_assigned("b", (1u << NPART) - 1);
        wait_emitted(want);
        cr_assert_eq(stop(b, &took), 0, "b did not exit 0");
}
