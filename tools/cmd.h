/*
 * cmd: the subcommands of the flashstream binary. main() builds one fls_conf_t from
 * every module's table, loads the file, the environment and the flags into it, then
 * calls the subcommand with the remaining arguments (argv[0] is the subcommand name).
 * A subcommand returns the process exit status; only main() exits.
 */
#ifndef FLS_CMD_H
#define FLS_CMD_H

#include "conf.h"

extern const fls_conf_def_t fls_broker_conf[];
extern const fls_conf_def_t fls_simulate_conf[];

int fls_cmd_broker(fls_conf_t *conf, int argc, char **argv);
int fls_cmd_simulate(fls_conf_t *conf, int argc, char **argv);
int fls_cmd_consume(fls_conf_t *conf, int argc, char **argv);
int fls_cmd_features(fls_conf_t *conf, int argc, char **argv);

#endif
