/*
 * topic: see topic.h. Assigns every partition at the beginning (no group
 * subscription, so no rebalance wait), and stops once each partition's position has
 * reached the high watermark queried at the start.
 */
#include "topic.h"

#include <stdio.h>
#include <stdlib.h>

#include "kafka.h"

int fls_topic_read(fls_conf_t *conf, const char *topic, fls_topic_fn fn, void *opaque,
                   char *errstr, size_t errstr_size)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *l = NULL;
        rd_kafka_conf_t *kc;
        rd_kafka_t *rk = NULL;
        int64_t *high = NULL, *pos = NULL;
        int np = 0, rc = -1;
        char err[256];

        kc = fls_kafka_conf(conf, FLS_KAFKA_CONSUMER, "flashstream-judge", errstr,
                            errstr_size);
        if (!kc)
                return -1;
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(kc);
                snprintf(errstr, errstr_size, "kafka: %s", err);
                return -1;
        }
        {
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
                rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
                rd_kafka_topic_destroy(rkt);
                if (e || md->topic_cnt != 1 || md->topics[0].err) {
                        snprintf(errstr, errstr_size, "kafka: no metadata for topic %s",
                                 topic);
                        goto done;
                }
                np = md->topics[0].partition_cnt;
        }
        high = calloc((size_t)np + 1, sizeof(*high));
        pos = calloc((size_t)np + 1, sizeof(*pos));
        l = rd_kafka_topic_partition_list_new(np);
        if (!high || !pos || !l) {
                snprintf(errstr, errstr_size, "out of memory");
                goto done;
        }
        for (int p = 0; p < np; p++) {
                int64_t lo;
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &high[p],
                                                     10000)) {
                        snprintf(errstr, errstr_size, "kafka: no watermarks for %s [%d]",
                                 topic, p);
                        goto done;
                }
                pos[p] = lo;
                rd_kafka_topic_partition_list_add(l, topic, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(rk, l);
        for (;;) {
                int left = 0;
                rd_kafka_message_t *m;
                for (int p = 0; p < np; p++)
                        left += pos[p] < high[p];
                if (!left)
                        break;
                m = rd_kafka_consumer_poll(rk, 10000);
                if (!m) {
                        snprintf(errstr, errstr_size,
                                 "kafka: no message for 10 s before the end of %s",
                                 topic);
                        goto done;
                }
                if (!m->err && m->partition >= 0 && m->partition < np) {
                        int r;
                        pos[m->partition] = m->offset + 1;
                        r = fn(opaque, m);
                        if (r) {
                                rd_kafka_message_destroy(m);
                                rc = r;
                                goto done;
                        }
                }
                rd_kafka_message_destroy(m);
        }
        rc = 0;
done:
        if (l)
                rd_kafka_topic_partition_list_destroy(l);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        free(high);
        free(pos);
        return rc;
}
