/*
 * conf: configuration of every flashstream process, driven by declarative tables.
 *
 * Each module that needs settings publishes a table of fls_conf_def_t (name, type,
 * default, bounds, help). One fls_conf_t is built from the tables at start-up and
 * filled, in order of increasing precedence, from the defaults, a file of key=value
 * lines, environment variables (FLASHSTREAM_ + the name upper-cased with '.' as '_')
 * and command-line flags (--name=value or --name value). Keys starting with "kafka."
 * are not in any table: they pass straight to librdkafka (rd_kafka_conf_set) with the
 * prefix removed. The same tables print --help and the README's configuration table.
 *
 * Every value is validated when it is set: a bad file line fails with
 * "path:line: message". Lookups are by name and meant for start-up only; the per-message
 * path reads plain copies of the values.
 */
#ifndef FLS_CONF_H
#define FLS_CONF_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
        FLS_CONF_STR,
        FLS_CONF_INT, /* int64_t, bounds inclusive */
        FLS_CONF_DBL, /* double, bounds inclusive */
        FLS_CONF_BOOL /* true/false, yes/no, on/off, 1/0 */
} fls_conf_type_t;

typedef struct fls_conf_def {
        const char *name; /* "batch.max_messages"; NULL ends a table */
        fls_conf_type_t type;
        const char *def;   /* default, as text; NULL only for STR meaning "" */
        double min, max;   /* bounds for INT and DBL; ignored when min > max */
        const char *help;  /* one sentence */
        const char *scope; /* subcommands that read it, space separated
                            * ("consume broker"); NULL: all of them */
} fls_conf_def_t;

typedef struct fls_conf fls_conf_t;

/* tables: NULL-terminated array of NULL-name-terminated tables. The tables must
 * outlive the conf. Fails (NULL, errstr) on a duplicate name or a bad default. */
fls_conf_t *fls_conf_new(const fls_conf_def_t *const *tables, char *errstr,
                         size_t errstr_size);
void fls_conf_destroy(fls_conf_t *conf);

/* Sets one key from text; kafka.* keys are stored for fls_conf_kafka_foreach.
 * Unknown keys and out-of-domain values fail with a message naming the key. */
int fls_conf_set(fls_conf_t *conf, const char *name, const char *value, char *errstr,
                 size_t errstr_size);

/* key=value lines; '#' starts a comment line; blank lines are skipped; spaces around
 * the key and the value are trimmed. Errors: "path:line: message". */
int fls_conf_load_file(fls_conf_t *conf, const char *path, char *errstr,
                       size_t errstr_size);

/* FLASHSTREAM_<NAME> for every table key (not kafka.*). Errors name the variable. */
int fls_conf_load_env(fls_conf_t *conf, char *errstr, size_t errstr_size);

/* Consumes the flags it knows from argv: --config FILE / -c FILE loads a file at that
 * point, --name=value and --name value set table keys and kafka.* keys. Anything else
 * (positional arguments, unknown flags) is left in place, compacted to the front;
 * *argcp is updated. "--help"/"-h" sets *want_help (may be NULL) and is consumed. */
int fls_conf_load_args(fls_conf_t *conf, int *argcp, char **argv, int *want_help,
                       char *errstr, size_t errstr_size);

const char *fls_conf_str(const fls_conf_t *conf, const char *name);
int64_t fls_conf_int(const fls_conf_t *conf, const char *name);
double fls_conf_dbl(const fls_conf_t *conf, const char *name);
int fls_conf_bool(const fls_conf_t *conf, const char *name);

/* Calls cb(name_without_prefix, value) for each kafka.* key in the order set; stops
 * and returns the first non-zero cb return. */
int fls_conf_kafka_foreach(const fls_conf_t *conf,
                           int (*cb)(const char *name, const char *value, void *opaque),
                           void *opaque);

/* Option list for --help: "  --name=TYPE  help (default: x; range a..b)", only the
 * keys whose scope names the subcommand (all keys when subcommand is NULL). */
void fls_conf_print_help(const fls_conf_t *conf, const char *subcommand, FILE *out);
/* The README's configuration table: | key | type | default | range | description | */
void fls_conf_print_markdown(const fls_conf_t *conf, FILE *out);

#endif
