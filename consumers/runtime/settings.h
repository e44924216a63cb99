/*
 * settings: the configuration keys shared by every flashstream process (topics,
 * Redis, batching, input limits, logging, metrics). Subcommand-specific keys live in
 * their own modules' tables; main() composes them into one fls_conf_t.
 */
#ifndef FLS_SETTINGS_H
#define FLS_SETTINGS_H

#include "conf.h"

extern const fls_conf_def_t fls_settings_conf[];

/* Bootstrap servers: kafka.bootstrap.servers when set, else the "bootstrap=" line of
 * the file named by bootstrap.file (written by `flashstream broker`). Fills buf. */
int fls_settings_bootstrap(const fls_conf_t *conf, char *buf, size_t size, char *errstr,
                           size_t errstr_size);

#endif
