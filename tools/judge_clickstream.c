/*
 * judge_clickstream: reads marketing-actions from the beginning up to each partition's
 * high watermark, decodes each record with the registry schema and scores the actions
 * against the simulator's truth. Files, Kafka and Redis are read, nothing is written.
 *
 * The "inactive since the sale began" reminders are judged on the simulator's events
 * (it has no latent participation: users start sessions at random): the share sent to
 * users who truly were active before the sale and not since its start up to the
 * reminder's event time, and the share of them who then buy (the participation
 * model's label), against the same share among the users in that situation at the
 * median reminder time who got no such reminder.
 */
#include "judge_clickstream.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "kafka.h"
#include "store.h"
#include "task_intent_sim.h"

#define NPHASE 6
static const char *const phase_names[NPHASE] = {"pre_sale", "q1", "q2",
                                                "q3",       "q4", "after"};

/* Open-addressing set of action ids, to count each action once. */
typedef struct {
        char **ids;
        size_t cap, n;
} idset_t;

static int idset_add(idset_t *s, const char *id, size_t len)
{
        uint32_t h;
        size_t i;
        if (2 * (s->n + 1) > s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 4096;
                char **ni = calloc(cap, sizeof(*ni));
                if (!ni)
                        return -1;
                for (size_t k = 0; k < s->cap; k++) {
                        if (!s->ids[k])
                                continue;
                        i = fls_isim_sku_id(s->ids[k], strlen(s->ids[k])) % cap;
                        while (ni[i])
                                i = (i + 1) % cap;
                        ni[i] = s->ids[k];
                }
                free(s->ids);
                s->ids = ni;
                s->cap = cap;
        }
        h = fls_isim_sku_id(id, len);
        for (i = h % s->cap; s->ids[i]; i = (i + 1) % s->cap)
                if (strlen(s->ids[i]) == len && memcmp(s->ids[i], id, len) == 0)
                        return 0;
        if (!(s->ids[i] = malloc(len + 1)))
                return -1;
        memcpy(s->ids[i], id, len);
        s->ids[i][len] = '\0';
        s->n++;
        return 1;
}

static void idset_free(idset_t *s)
{
        for (size_t i = 0; i < s->cap; i++)
                free(s->ids[i]);
        free(s->ids);
}

static int partitions(rd_kafka_t *rk, const char *topic)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int n = -1;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && !md->topics[0].err)
                n = md->topics[0].partition_cnt;
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return n;
}

/* What the inactive reminders are judged with: per user, whether they had an event
 * before the sale, their first event from its start and their last purchase. */
typedef struct {
        size_t n, cap;
        uint32_t *user; /* index, UINT32_MAX: not a simulated user */
        int64_t *ts;
} rems_t;

static int rems_add(rems_t *r, uint32_t user, int64_t ts)
{
        if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 1024;
                uint32_t *u = realloc(r->user, cap * sizeof(*u));
                int64_t *t;
                if (!u)
                        return -1;
                r->user = u;
                if (!(t = realloc(r->ts, cap * sizeof(*t))))
                        return -1;
                r->ts = t;
                r->cap = cap;
        }
        r->user[r->n] = user;
        r->ts[r->n++] = ts;
        return 0;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* Fills out[4]: truly inactive share, bought-after share of the reminded users, the
 * baseline's bought-after share, and the baseline's users. -1 when out of memory. */
static int judge_inactive(const fls_sim_t *sim, const rems_t *r, double *out)
{
        size_t nu = sim->nusers, truly = 0, bought = 0, base = 0, base_bought = 0;
        int64_t *first = malloc(nu * sizeof(*first)), *buy = malloc(nu * sizeof(*buy));
        int64_t *ts = malloc((r->n + 1) * sizeof(*ts)), t_ref;
        char *pre = calloc(nu + 1, 1), *got = calloc(nu + 1, 1);
        int rc = -1;

        if (!first || !buy || !ts || !pre || !got)
                goto done;
        for (size_t u = 0; u < nu; u++)
                first[u] = buy[u] = -1;
        for (size_t i = 0; i < sim->n; i++) {
                const fls_sim_ev_t *e = &sim->ev[i];
                if (e->user >= nu)
                        continue;
                if (e->ts < sim->sale_start_ts)
                        pre[e->user] = 1;
                else if (first[e->user] < 0 || e->ts < first[e->user])
                        first[e->user] = e->ts;
                if (e->type == 5 && e->ts > buy[e->user])
                        buy[e->user] = e->ts;
        }
        for (size_t i = 0; i < r->n; i++) {
                uint32_t u = r->user[i];
                ts[i] = r->ts[i];
                if (u >= nu)
                        continue;
                got[u] = 1;
                truly += pre[u] && (first[u] < 0 || first[u] >= r->ts[i]);
                bought += buy[u] >= r->ts[i];
        }
        qsort(ts, r->n, sizeof(*ts), cmp_i64);
        t_ref = r->n ? ts[r->n / 2] : sim->sale_start_ts;
        for (size_t u = 0; u < nu; u++) {
                if (!pre[u] || got[u] || (first[u] >= 0 && first[u] < t_ref))
                        continue;
                base++;
                base_bought += buy[u] >= t_ref;
        }
        out[0] = r->n ? (double)truly / (double)r->n : 0;
        out[1] = r->n ? (double)bought / (double)r->n : 0;
        out[2] = base ? (double)base_bought / (double)base : 0;
        out[3] = (double)base;
        rc = 0;
done:
        free(first);
        free(buy);
        free(ts);
        free(pre);
        free(got);
        return rc;
}

long fls_judge_clickstream_capped_users(fls_conf_t *conf, const char *topic, int nparts)
{
        char err[256], key[512];
        fls_store_t *st = fls_store_new(
            fls_conf_str(conf, "redis.host"), (int)fls_conf_int(conf, "redis.port"),
            (int)fls_conf_int(conf, "redis.timeout_ms"),
            fls_conf_str(conf, "redis.prefix"), NULL, 0, err, sizeof(err));
        long n = 0;
        if (!st) {
                fprintf(stderr, "flashstream: redis: %s\n", err);
                return -1;
        }
        for (int p = 0; p < nparts; p++) {
                const fls_hash_t *h;
                fls_store_key(st, topic, p, "p:all", NULL, key, sizeof(key));
                if (fls_store_hgetall(st, key, &h, err, sizeof(err)) < 0) {
                        n = -1;
                        break;
                }
                n += (long)fls_hash_int(h, "capped_users", 0);
        }
        fls_store_destroy(st);
        return n;
}

int fls_judge_clickstream(fls_conf_t *conf, int argc, char **argv)
{
        const char *out_topic = fls_conf_str(conf, "topic.marketing_actions");
        const char *in_topic = fls_conf_str(conf, "topic.clickstream");
        double budget = fls_conf_dbl(conf, "clickstream.coupon_budget");
        char err[512], group[64];
        fls_sim_t *sim;
        fls_codec_t *codec = NULL;
        rd_kafka_conf_t *kc;
        rd_kafka_t *rk = NULL;
        rd_kafka_topic_partition_list_t *l = NULL;
        idset_t ids = {0};
        rems_t inact = {0};
        double inact_j[4] = {0};
        int nparts, nin, i_id, i_user, i_kind, i_value, i_ts, i_reason, rc = 1;
        int64_t *high = NULL, *pos = NULL, first_ms = -1, last_ms = -1;
        long kinds[3] = {0}, coupons_band[4] = {0}, dups = 0, capped;
        double spent[NPHASE] = {0}, total = 0, sale_len, aps;
        int left;

        if (argc < 2) {
                fprintf(stderr, "usage: flashstream judge clickstream SIM_OUT_DIR\n");
                return 2;
        }
        if (!(sim = fls_sim_load(argv[1], err, sizeof(err)))) {
                fprintf(stderr, "judge clickstream: %s\n", err);
                return 1;
        }
        codec = fls_codec_new(fls_conf_str(conf, "schema.dir"), "marketing-actions-value",
                              0, 1 << 20, err, sizeof(err));
        snprintf(group, sizeof(group), "judge-clickstream-%d", (int)getpid());
        kc = codec ? fls_kafka_conf(conf, FLS_KAFKA_CONSUMER, group, err, sizeof(err))
                   : NULL;
        if (kc && !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err))))
                rd_kafka_conf_destroy(kc);
        if (!rk) {
                fprintf(stderr, "judge clickstream: %s\n", err);
                goto done;
        }
        i_id = fls_codec_field(codec, "action_id");
        i_user = fls_codec_field(codec, "user_id");
        i_kind = fls_codec_field(codec, "kind");
        i_value = fls_codec_field(codec, "coupon_value");
        i_ts = fls_codec_field(codec, "event_ts");
        i_reason = fls_codec_field(codec, "reason");
        nparts = partitions(rk, out_topic);
        nin = partitions(rk, in_topic);
        if (nparts <= 0 || nin <= 0) {
                fprintf(stderr, "judge clickstream: no metadata for %s or %s\n",
                        out_topic, in_topic);
                goto done;
        }
        high = calloc((size_t)nparts, sizeof(*high));
        pos = calloc((size_t)nparts, sizeof(*pos));
        l = rd_kafka_topic_partition_list_new(nparts);
        if (!high || !pos || !l)
                goto done;
        left = 0;
        for (int p = 0; p < nparts; p++) {
                int64_t lo;
                if (rd_kafka_query_watermark_offsets(rk, out_topic, p, &lo, &high[p],
                                                     10000) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR) {
                        fprintf(stderr, "judge clickstream: no watermarks of %s [%d]\n",
                                out_topic, p);
                        goto done;
                }
                pos[p] = lo;
                left += high[p] > lo;
                rd_kafka_topic_partition_list_add(l, out_topic, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(rk, l);
        sale_len = (double)(sim->end_ts - sim->sale_start_ts);
        for (int idle = 0; left > 0 && idle < 300;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                avro_value_t *v;
                char detail[256];
                size_t len, ulen;
                const char *id, *user;
                int kind, added;
                if (!m) {
                        idle++;
                        continue;
                }
                idle = 0;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (m->offset + 1 >= high[m->partition] &&
                    pos[m->partition] < high[m->partition])
                        left--;
                pos[m->partition] = m->offset + 1;
                if (fls_codec_decode(codec, m->payload, m->len, &v, detail,
                                     sizeof(detail)) != FLS_BAD_NONE) {
                        fprintf(stderr, "judge clickstream: %s [%d] @%" PRId64 ": %s\n",
                                out_topic, (int)m->partition, m->offset, detail);
                        rd_kafka_message_destroy(m);
                        continue;
                }
                id = fls_avro_str(v, i_id, &len);
                added = idset_add(&ids, id, len);
                if (added <= 0) {
                        dups += added == 0;
                        rd_kafka_message_destroy(m);
                        continue;
                }
                {
                        int64_t ms = rd_kafka_message_timestamp(m, NULL);
                        if (first_ms < 0 || ms < first_ms)
                                first_ms = ms;
                        if (ms > last_ms)
                                last_ms = ms;
                }
                kind = fls_avro_enum(v, i_kind);
                if (kind >= 0 && kind < 3)
                        kinds[kind]++;
                if (kind == 1) {
                        size_t rlen;
                        const char *reason = fls_avro_str(v, i_reason, &rlen);
                        unsigned long u;
                        user = fls_avro_str(v, i_user, &ulen);
                        u = ulen > 1 && user[0] == 'u' ? strtoul(user + 1, NULL, 10) : 0;
                        if (rlen == 19 &&
                            memcmp(reason, "inactive_since_sale", 19) == 0 &&
                            rems_add(&inact,
                                     u >= 1 && u <= sim->nusers ? (uint32_t)(u - 1)
                                                                : UINT32_MAX,
                                     fls_avro_long(v, i_ts)) < 0) {
                                fprintf(stderr, "judge clickstream: out of memory\n");
                                rd_kafka_message_destroy(m);
                                goto done;
                        }
                }
                if (kind == 0) {
                        double val = fls_avro_double(v, i_value);
                        int64_t ts = fls_avro_long(v, i_ts);
                        unsigned long u;
                        int ph;
                        user = fls_avro_str(v, i_user, &ulen);
                        u = ulen > 1 && user[0] == 'u' ? strtoul(user + 1, NULL, 10) : 0;
                        if (u >= 1 && u <= sim->nusers)
                                coupons_band[sim->band[u - 1] == 'p'   ? 0
                                             : sim->band[u - 1] == 's' ? 1
                                             : sim->band[u - 1] == 'n' ? 2
                                                                       : 3]++;
                        else
                                coupons_band[3]++;
                        if (ts < sim->sale_start_ts)
                                ph = 0;
                        else if (ts >= sim->end_ts || sale_len <= 0)
                                ph = 5;
                        else
                                ph = 1 + (int)(4.0 * (double)(ts - sim->sale_start_ts) /
                                               sale_len);
                        spent[ph] += val;
                        total += val;
                }
                rd_kafka_message_destroy(m);
        }
        capped = fls_judge_clickstream_capped_users(conf, in_topic, nin);
        if (judge_inactive(sim, &inact, inact_j) < 0) {
                fprintf(stderr, "judge clickstream: out of memory\n");
                goto done;
        }
        aps = last_ms > first_ms ? (double)ids.n / ((double)(last_ms - first_ms) / 1000.0)
                                 : (double)ids.n;
        {
                long nc = kinds[0];
                double prec = nc ? (double)coupons_band[0] / (double)nc : 0;
                printf(
                    "{\"actions\":%zu,\"duplicates\":%ld,\"coupons\":%ld,\"reminders\":%"
                    "ld,"
                    "\"recommendations\":%ld,\"coupon_precision\":%.4f,"
                    "\"coupons_by_band\":{\"persuadable\":%ld,\"sure\":%ld,\"never\":%ld,"
                    "\"unknown\":%ld},\"budget\":%.2f,\"spent\":%.2f,\"spent_share\":{",
                    ids.n, dups, nc, kinds[1], kinds[2], prec, coupons_band[0],
                    coupons_band[1], coupons_band[2], coupons_band[3], budget, total);
                for (int p = 0; p < NPHASE; p++)
                        printf("%s\"%s\":%.4f", p ? "," : "", phase_names[p],
                               budget > 0 ? spent[p] / budget : 0);
                printf("},\"users_capped\":%ld,\"actions_per_s\":%.1f,"
                       "\"inactive_reminders\":%zu,\"inactive_truly_inactive\":%.4f,"
                       "\"inactive_bought_after\":%.4f,"
                       "\"inactive_baseline_bought_after\":%.4f,"
                       "\"inactive_baseline_users\":%.0f}\n",
                       capped, aps, inact.n, inact_j[0], inact_j[1], inact_j[2],
                       inact_j[3]);
                printf("\n%-16s %10s\n", "phase", "budget %");
                for (int p = 0; p < NPHASE; p++)
                        printf("%-16s %9.1f%%\n", phase_names[p],
                               budget > 0 ? 100 * spent[p] / budget : 0);
                printf("%-16s %10ld\n%-16s %9.1f%%\n%-16s %10ld\n%-16s %10.1f\n",
                       "coupons", nc, "precision", 100 * prec, "users capped", capped,
                       "actions/s", aps);
                printf("inactive reminders %zu: %.1f%% truly inactive, %.1f%% bought "
                       "after (not reminded, inactive at the median time: %.1f%% of "
                       "%.0f)\n",
                       inact.n, 100 * inact_j[0], 100 * inact_j[1], 100 * inact_j[2],
                       inact_j[3]);
        }
        rc = 0;
done:
        if (l)
                rd_kafka_topic_partition_list_destroy(l);
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        free(high);
        free(pos);
        idset_free(&ids);
        free(inact.user);
        free(inact.ts);
        fls_codec_destroy(codec);
        fls_sim_destroy(sim);
        return rc;
}
