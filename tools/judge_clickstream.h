/*
 * judge_clickstream: `flashstream judge clickstream DIR`, the clickstream consumer's
 * actions judged against the simulator's ground truth. The last step after Kafka ->
 * Avro -> Redis -> model -> Kafka: it reads the marketing-actions topic from the
 * beginning (deduplicated by action id, so replays count once), joins each coupon's
 * user with DIR/truth_users.csv and the sale's phases from DIR/summary.json, reads
 * the per-partition capped-user counters from Redis, and prints one JSON line and a
 * short table: coupon precision (share of coupons that went to persuadable users),
 * budget spent per phase of the sale (pre-sale, the sale's four quarters, after),
 * users capped, actions per second (produce timestamps of the first and last action).
 */
#ifndef FLS_JUDGE_CLICKSTREAM_H
#define FLS_JUDGE_CLICKSTREAM_H

#include "conf.h"

/* argv[0] "clickstream", argv[1] the simulator's out_dir. Returns the exit status. */
int fls_judge_clickstream(fls_conf_t *conf, int argc, char **argv);

/* Sum of the clickstream consumer's capped_users counters over the input partitions
 * (also used by `flashstream report`); -1 if Redis fails. */
long fls_judge_clickstream_capped_users(fls_conf_t *conf, const char *topic, int nparts);

#endif
