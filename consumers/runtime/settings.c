/*
 * settings: the shared configuration table. Everything a consumer, the simulator, the
 * broker and the features query agree on (topic names, the Redis server, the key
 * prefix) is here so that it is spelled once.
 */
#include "settings.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ALL     NULL
#define CONSUME "consume"

const fls_conf_def_t fls_settings_conf[] = {
    {"log.level", FLS_CONF_STR, "info", 1, 0,
     "Lowest level logged: debug, info, warn, error.", ALL},
    {"bootstrap.file", FLS_CONF_STR, "", 1, 0,
     "File holding the 'bootstrap=HOST:PORT,...' line of `flashstream broker`; read when "
     "kafka.bootstrap.servers is not set.",
     ALL},
    {"topic.clickstream", FLS_CONF_STR, "clickstream", 1, 0,
     "Input topic of click events.", ALL},
    {"topic.orders", FLS_CONF_STR, "orders", 1, 0,
     "Input topic of order and stock events.", ALL},
    {"topic.shipments", FLS_CONF_STR, "shipments", 1, 0,
     "Input topic of shipment events.", ALL},
    {"topic.marketing_actions", FLS_CONF_STR, "marketing-actions", 1, 0,
     "Output topic of the clickstream consumer.", ALL},
    {"topic.restock_signals", FLS_CONF_STR, "restock-signals", 1, 0,
     "Output topic of the orders consumer.", ALL},
    {"topic.dispatch_decisions", FLS_CONF_STR, "dispatch-decisions", 1, 0,
     "Output topic of the shipments consumer.", ALL},
    {"topic.dlq_suffix", FLS_CONF_STR, ".dlq", 1, 0,
     "Dead letters of input topic T go to T followed by this suffix.", ALL},
    {"topic.partitions", FLS_CONF_INT, "6", 1, 1024,
     "Partitions per topic when the broker creates the project's topics.", "broker"},
    {"schema.dir", FLS_CONF_STR, FLS_SCHEMA_DIR, 1, 0,
     "Folder of the .avsc files and registry.txt (schema id to file).", ALL},
    {"redis.host", FLS_CONF_STR, "127.0.0.1", 1, 0, "Redis server host.",
     "consume features"},
    {"redis.port", FLS_CONF_INT, "6379", 1, 65535, "Redis server port.",
     "consume features"},
    {"redis.timeout_ms", FLS_CONF_INT, "2000", 10, 600000,
     "Connect and command timeout towards Redis.", "consume features"},
    {"redis.prefix", FLS_CONF_STR, "fs", 1, 0,
     "First part of every Redis key, so that several deployments can share a server.",
     "consume features"},
    {"redis.mirror_mb", FLS_CONF_INT, "256", 0, 1048576,
     "Memory for the consumer's copy of the state its partitions read (most of it is "
     "read again): a key held there is answered from memory instead of by Redis. The "
     "least recently used keys go beyond it; 0 sends every read to Redis. The slabs "
     "holding the copy keep each block size's peak use: 1.9x this at 64 MiB over 10M "
     "events.",
     CONSUME},
    {"redis.mirror_verify", FLS_CONF_BOOL, "false", 1, 0,
     "Test mode: every read still goes to Redis and is compared with the copy; a "
     "difference is logged as an error and counted (flashstream_mirror_diffs_total).",
     CONSUME},
    {"redis.retry_max_ms", FLS_CONF_INT, "2000", 10, 60000,
     "Longest pause between reconnection attempts while Redis is down.", CONSUME},
    {"batch.max_messages", FLS_CONF_INT, "2000", 1, 100000,
     "Most messages in one micro-batch.", CONSUME},
    {"batch.max_ms", FLS_CONF_INT, "20", 1, 10000,
     "Longest wait for a micro-batch's first message, in ms; the batch then takes "
     "what is already queued, up to batch.max_messages.",
     CONSUME},
    {"window.lateness_ms", FLS_CONF_INT, "60000", 0, 86400000,
     "Allowed lateness: an event older than its partition's watermark by more than this "
     "is counted as late and left out of the windows (lifetime counters still apply).",
     CONSUME},
    {"input.max_message_bytes", FLS_CONF_INT, "65536", 64, 16777216,
     "Larger input messages go to the dead-letter topic unread.", CONSUME},
    {"input.max_future_ms", FLS_CONF_INT, "300000", 0, 31536000000.0,
     "Events stamped further than this ahead of the wall clock are invalid.", CONSUME},
    {"input.min_ts_ms", FLS_CONF_INT, "946684800000", 0, 4102444800000.0,
     "Events stamped before this (UTC ms; default 2000-01-01) are invalid.", CONSUME},
    {"consumer.group", FLS_CONF_STR, "", 1, 0,
     "Consumer group; empty means flashstream-<consumer name>.", CONSUME},
    {"metrics.host", FLS_CONF_STR, "127.0.0.1", 1, 0, "Address of the /metrics endpoint.",
     CONSUME},
    {"metrics.port", FLS_CONF_INT, "0", -1, 65535,
     "Port of the /metrics and /healthz endpoint; 0 picks a free one, -1 disables it.",
     CONSUME},
    {"shutdown.timeout_ms", FLS_CONF_INT, "4000", 100, 60000,
     "On SIGINT/SIGTERM, once the batch in hand is done and recorded: longest wait to "
     "leave the group and flush the producer. Past it the consumer exits 0 anyway "
     "(nothing recorded is lost) and the group drops it after session.timeout.ms.",
     CONSUME},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

int fls_settings_bootstrap(const fls_conf_t *conf, char *buf, size_t size, char *errstr,
                           size_t errstr_size)
{
        const char *path = fls_conf_str(conf, "bootstrap.file");
        char line[1024];
        FILE *fp;

        buf[0] = '\0';
        if (!*path) {
                /* kafka.bootstrap.servers is passed to librdkafka as it is. */
                return 0;
        }
        fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        while (fgets(line, sizeof(line), fp)) {
                if (strncmp(line, "bootstrap=", 10) == 0) {
                        line[strcspn(line, "\r\n")] = '\0';
                        snprintf(buf, size, "%s", line + 10);
                        fclose(fp);
                        return 0;
                }
        }
        fclose(fp);
        snprintf(errstr, errstr_size, "%s: no 'bootstrap=' line", path);
        return -1;
}
