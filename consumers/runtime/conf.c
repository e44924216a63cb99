/*
 * conf: the settings of a flashstream process, assembled once at start-up before any
 * part of the flow Kafka -> Avro -> Redis -> model -> Kafka exists. Every module
 * declares its keys in a static table; this file merges the tables, validates each
 * value the moment it is set (so a typo fails at start-up with the file and line, not
 * an hour later on the hot path) and keeps kafka.* keys aside, in the order they were
 * given, for the librdkafka configuration. Lookups are linear scans by name: a few
 * dozen keys read once each, so a hash table would only add code.
 */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KAFKA_PREFIX     "kafka."
#define KAFKA_PREFIX_LEN (sizeof(KAFKA_PREFIX) - 1)
#define ENV_PREFIX       "FLASHSTREAM_"

struct conf_ent {
        const fls_conf_def_t *def;
        char *text; /* the value as set, for fls_conf_str and messages */
        int64_t i;
        double d;
        int b;
};

struct kafka_ent {
        char *name; /* without the "kafka." prefix */
        char *value;
};

struct fls_conf {
        struct conf_ent *ents;
        size_t nents;
        struct kafka_ent *kafka;
        size_t nkafka;
        size_t kafka_cap;
};

static int is_kafka_key(const char *name)
{
        return strncmp(name, KAFKA_PREFIX, KAFKA_PREFIX_LEN) == 0;
}

static struct conf_ent *find_ent(const fls_conf_t *conf, const char *name)
{
        size_t i;

        for (i = 0; i < conf->nents; i++) {
                if (strcmp(conf->ents[i].def->name, name) == 0)
                        return &conf->ents[i];
        }
        return NULL;
}

static int bounded(const fls_conf_def_t *def)
{
        return def->min <= def->max;
}

/* Case-insensitive: "TRUE" from a shell script means what it says. */
static int parse_bool(const char *s, int *out)
{
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        size_t i;

        for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *out = 1;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *out = 0;
                        return 0;
                }
        }
        return -1;
}

/*
 * Parses text for def into the typed fields of out without touching the entry, so a
 * rejected value leaves the previous one in place. Leading spaces are refused as well
 * as trailing junk: strtoll/strtod would skip them, and " 5" from an environment
 * variable is as suspicious as "5 ".
 */
static int parse_value(const fls_conf_def_t *def, const char *text, struct conf_ent *out,
                       char *errstr, size_t errstr_size)
{
        char *end;

        switch (def->type) {
        case FLS_CONF_STR:
                return 0;
        case FLS_CONF_INT:
                errno = 0;
                out->i = strtoll(text, &end, 10);
                if (!*text || isspace((unsigned char)*text) || *end) {
                        snprintf(errstr, errstr_size, "key '%s': '%s' is not an integer",
                                 def->name, text);
                        return -1;
                }
                if (errno == ERANGE || (bounded(def) && ((double)out->i < def->min ||
                                                         (double)out->i > def->max))) {
                        if (bounded(def))
                                snprintf(errstr, errstr_size,
                                         "key '%s': %s is out of range %lld..%lld",
                                         def->name, text, (long long)def->min,
                                         (long long)def->max);
                        else
                                snprintf(errstr, errstr_size,
                                         "key '%s': %s is out of range", def->name, text);
                        return -1;
                }
                return 0;
        case FLS_CONF_DBL:
                errno = 0;
                out->d = strtod(text, &end);
                if (!*text || isspace((unsigned char)*text) || *end || isnan(out->d)) {
                        snprintf(errstr, errstr_size, "key '%s': '%s' is not a number",
                                 def->name, text);
                        return -1;
                }
                /* ERANGE on underflow still yields a usable (tiny) value. */
                if ((errno == ERANGE && fabs(out->d) == HUGE_VAL) ||
                    (bounded(def) && (out->d < def->min || out->d > def->max))) {
                        if (bounded(def))
                                snprintf(errstr, errstr_size,
                                         "key '%s': %s is out of range %.15g..%.15g",
                                         def->name, text, def->min, def->max);
                        else
                                snprintf(errstr, errstr_size,
                                         "key '%s': %s is out of range", def->name, text);
                        return -1;
                }
                return 0;
        case FLS_CONF_BOOL:
                if (parse_bool(text, &out->b) < 0) {
                        snprintf(errstr, errstr_size,
                                 "key '%s': '%s' is not a boolean "
                                 "(true/false, yes/no, on/off, 1/0)",
                                 def->name, text);
                        return -1;
                }
                return 0;
        }
        snprintf(errstr, errstr_size, "key '%s': unknown type %d", def->name,
                 (int)def->type);
        return -1;
}

static int set_ent(struct conf_ent *ent, const char *text, char *errstr,
                   size_t errstr_size)
{
        struct conf_ent parsed = *ent;
        char *copy;

        if (parse_value(ent->def, text, &parsed, errstr, errstr_size) < 0)
                return -1;
        copy = strdup(text);
        if (!copy) {
                snprintf(errstr, errstr_size, "key '%s': out of memory", ent->def->name);
                return -1;
        }
        free(ent->text);
        *ent = parsed;
        ent->text = copy;
        return 0;
}

/* A key given twice keeps its first position and takes the last value, so the order
 * handed to librdkafka does not depend on which source repeated it. */
static int set_kafka(fls_conf_t *conf, const char *name, const char *value, char *errstr,
                     size_t errstr_size)
{
        const char *prop = name + KAFKA_PREFIX_LEN;
        struct kafka_ent *k;
        char *v;
        size_t i;

        if (!*prop) {
                snprintf(errstr, errstr_size,
                         "key '%s': missing librdkafka property name after 'kafka.'",
                         name);
                return -1;
        }
        v = strdup(value);
        if (!v)
                goto oom;
        for (i = 0; i < conf->nkafka; i++) {
                if (strcmp(conf->kafka[i].name, prop) == 0) {
                        free(conf->kafka[i].value);
                        conf->kafka[i].value = v;
                        return 0;
                }
        }
        if (conf->nkafka == conf->kafka_cap) {
                size_t cap = conf->kafka_cap ? conf->kafka_cap * 2 : 8;

                k = realloc(conf->kafka, cap * sizeof(*k));
                if (!k) {
                        free(v);
                        goto oom;
                }
                conf->kafka = k;
                conf->kafka_cap = cap;
        }
        k = &conf->kafka[conf->nkafka];
        k->name = strdup(prop);
        if (!k->name) {
                free(v);
                goto oom;
        }
        k->value = v;
        conf->nkafka++;
        return 0;
oom:
        snprintf(errstr, errstr_size, "key '%s': out of memory", name);
        return -1;
}

fls_conf_t *fls_conf_new(const fls_conf_def_t *const *tables, char *errstr,
                         size_t errstr_size)
{
        const fls_conf_def_t *const *t;
        const fls_conf_def_t *def;
        fls_conf_t *conf;
        size_t n = 0;

        for (t = tables; *t; t++) {
                for (def = *t; def->name; def++)
                        n++;
        }
        conf = calloc(1, sizeof(*conf));
        if (!conf || (n && !(conf->ents = calloc(n, sizeof(*conf->ents))))) {
                free(conf);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        for (t = tables; *t; t++) {
                for (def = *t; def->name; def++) {
                        struct conf_ent *ent;

                        if (is_kafka_key(def->name)) {
                                snprintf(errstr, errstr_size,
                                         "key '%s': the kafka. prefix is reserved for "
                                         "librdkafka properties",
                                         def->name);
                                goto fail;
                        }
                        if (find_ent(conf, def->name)) {
                                snprintf(errstr, errstr_size, "duplicate key '%s'",
                                         def->name);
                                goto fail;
                        }
                        if (!def->def && def->type != FLS_CONF_STR) {
                                snprintf(errstr, errstr_size, "key '%s': no default",
                                         def->name);
                                goto fail;
                        }
                        ent = &conf->ents[conf->nents++];
                        ent->def = def;
                        if (set_ent(ent, def->def ? def->def : "", errstr, errstr_size) <
                            0) {
                                /* Make it clear the table, not the user, is wrong. */
                                size_t len = strlen(errstr);

                                snprintf(errstr + len, errstr_size - len,
                                         " (bad default)");
                                goto fail;
                        }
                }
        }
        return conf;
fail:
        fls_conf_destroy(conf);
        return NULL;
}

void fls_conf_destroy(fls_conf_t *conf)
{
        size_t i;

        if (!conf)
                return;
        for (i = 0; i < conf->nents; i++)
                free(conf->ents[i].text);
        for (i = 0; i < conf->nkafka; i++) {
                free(conf->kafka[i].name);
                free(conf->kafka[i].value);
        }
        free(conf->ents);
        free(conf->kafka);
        free(conf);
}

int fls_conf_set(fls_conf_t *conf, const char *name, const char *value, char *errstr,
                 size_t errstr_size)
{
        struct conf_ent *ent;

        if (is_kafka_key(name))
                return set_kafka(conf, name, value, errstr, errstr_size);
        ent = find_ent(conf, name);
        if (!ent) {
                snprintf(errstr, errstr_size, "unknown key '%s'", name);
                return -1;
        }
        return set_ent(ent, value, errstr, errstr_size);
}

static char *trim(char *s)
{
        char *end;

        while (isspace((unsigned char)*s))
                s++;
        end = s + strlen(s);
        while (end > s && isspace((unsigned char)end[-1]))
                end--;
        *end = '\0';
        return s;
}

int fls_conf_load_file(fls_conf_t *conf, const char *path, char *errstr,
                       size_t errstr_size)
{
        char *line = NULL, *key, *value, *eq;
        size_t cap = 0;
        unsigned lineno = 0;
        char msg[512];
        int rc = 0;
        FILE *fp;

        fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        while (getline(&line, &cap, fp) >= 0) {
                lineno++;
                key = trim(line);
                if (!*key || *key == '#')
                        continue;
                eq = strchr(key, '=');
                if (!eq) {
                        snprintf(errstr, errstr_size, "%s:%u: expected key=value", path,
                                 lineno);
                        rc = -1;
                        break;
                }
                *eq = '\0';
                value = trim(eq + 1);
                key = trim(key);
                if (!*key) {
                        snprintf(errstr, errstr_size, "%s:%u: empty key", path, lineno);
                        rc = -1;
                        break;
                }
                if (fls_conf_set(conf, key, value, msg, sizeof(msg)) < 0) {
                        snprintf(errstr, errstr_size, "%s:%u: %s", path, lineno, msg);
                        rc = -1;
                        break;
                }
        }
        if (!rc && ferror(fp)) {
                snprintf(errstr, errstr_size, "%s: read error", path);
                rc = -1;
        }
        free(line);
        fclose(fp);
        return rc;
}

/* "batch.max_messages" -> "FLASHSTREAM_BATCH_MAX_MESSAGES"; false if it does not fit. */
static int env_name(const char *key, char *buf, size_t size)
{
        size_t plen = sizeof(ENV_PREFIX) - 1, i;

        if (plen + strlen(key) + 1 > size)
                return 0;
        memcpy(buf, ENV_PREFIX, plen);
        for (i = 0; key[i]; i++) {
                unsigned char c = (unsigned char)key[i];

                buf[plen + i] = c == '.' ? '_' : (char)toupper(c);
        }
        buf[plen + i] = '\0';
        return 1;
}

int fls_conf_load_env(fls_conf_t *conf, char *errstr, size_t errstr_size)
{
        char var[256], msg[512];
        const char *value;
        size_t i;

        for (i = 0; i < conf->nents; i++) {
                if (!env_name(conf->ents[i].def->name, var, sizeof(var)))
                        continue;
                value = getenv(var);
                if (!value)
                        continue;
                if (set_ent(&conf->ents[i], value, msg, sizeof(msg)) < 0) {
                        snprintf(errstr, errstr_size, "%s: %s", var, msg);
                        return -1;
                }
        }
        return 0;
}

static int is_conf_key(const fls_conf_t *conf, const char *name)
{
        return (is_kafka_key(name) && name[KAFKA_PREFIX_LEN]) || find_ent(conf, name);
}

/*
 * argv is compacted in place: kept arguments are copied down to argv[w]. "--" ends the
 * options the way getopt does: it and everything after it are kept untouched, so a
 * positional argument that looks like a flag can still be passed. On an error the
 * unprocessed arguments are kept too, so argv stays a consistent list.
 */
int fls_conf_load_args(fls_conf_t *conf, int *argcp, char **argv, int *want_help,
                       char *errstr, size_t errstr_size)
{
        int argc = *argcp, i, w = 1, rc = 0;
        char name[256];

        if (want_help)
                *want_help = 0;
        for (i = 1; i < argc; i++) {
                const char *arg = argv[i], *eq, *value;
                size_t len;

                if (strcmp(arg, "--") == 0)
                        break;
                if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                        if (want_help)
                                *want_help = 1;
                        continue;
                }
                if (strcmp(arg, "--config") == 0 || strcmp(arg, "-c") == 0 ||
                    strncmp(arg, "--config=", 9) == 0) {
                        if (strncmp(arg, "--config=", 9) == 0) {
                                value = arg + 9;
                        } else if (i + 1 < argc) {
                                value = argv[++i];
                        } else {
                                snprintf(errstr, errstr_size, "%s needs a file name",
                                         arg);
                                rc = -1;
                                break;
                        }
                        if (fls_conf_load_file(conf, value, errstr, errstr_size) < 0) {
                                rc = -1;
                                i++;
                                break;
                        }
                        continue;
                }
                if (strncmp(arg, "--", 2) != 0) {
                        argv[w++] = argv[i];
                        continue;
                }
                eq = strchr(arg + 2, '=');
                len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
                if (len >= sizeof(name)) {
                        argv[w++] = argv[i];
                        continue;
                }
                memcpy(name, arg + 2, len);
                name[len] = '\0';
                if (!is_conf_key(conf, name)) {
                        argv[w++] = argv[i];
                        continue;
                }
                if (eq) {
                        value = eq + 1;
                } else if (i + 1 < argc) {
                        value = argv[++i];
                } else {
                        snprintf(errstr, errstr_size, "--%s needs a value", name);
                        rc = -1;
                        break;
                }
                if (fls_conf_set(conf, name, value, errstr, errstr_size) < 0) {
                        rc = -1;
                        i++;
                        break;
                }
        }
        for (; i < argc; i++)
                argv[w++] = argv[i];
        if (w < argc)
                argv[w] = NULL;
        *argcp = w;
        return rc;
}

const char *fls_conf_str(const fls_conf_t *conf, const char *name)
{
        const struct conf_ent *ent;
        size_t i;

        if (is_kafka_key(name)) {
                for (i = 0; i < conf->nkafka; i++) {
                        if (strcmp(conf->kafka[i].name, name + KAFKA_PREFIX_LEN) == 0)
                                return conf->kafka[i].value;
                }
                return "";
        }
        ent = find_ent(conf, name);
        return ent ? ent->text : "";
}

/* The typed getters return 0 for an unknown key or a key of another type: they are
 * called with literal names at start-up, where the tests of the calling module catch
 * a misspelling on the first run. */
int64_t fls_conf_int(const fls_conf_t *conf, const char *name)
{
        const struct conf_ent *ent = find_ent(conf, name);

        return ent && ent->def->type == FLS_CONF_INT ? ent->i : 0;
}

double fls_conf_dbl(const fls_conf_t *conf, const char *name)
{
        const struct conf_ent *ent = find_ent(conf, name);

        if (!ent)
                return 0;
        if (ent->def->type == FLS_CONF_INT)
                return (double)ent->i;
        return ent->def->type == FLS_CONF_DBL ? ent->d : 0;
}

int fls_conf_bool(const fls_conf_t *conf, const char *name)
{
        const struct conf_ent *ent = find_ent(conf, name);

        return ent && ent->def->type == FLS_CONF_BOOL ? ent->b : 0;
}

int fls_conf_kafka_foreach(const fls_conf_t *conf,
                           int (*cb)(const char *name, const char *value, void *opaque),
                           void *opaque)
{
        size_t i;
        int rc;

        for (i = 0; i < conf->nkafka; i++) {
                rc = cb(conf->kafka[i].name, conf->kafka[i].value, opaque);
                if (rc)
                        return rc;
        }
        return 0;
}

/* The type as the markdown table's column (lower case) or --help's placeholder. */
static const char *type_name(fls_conf_type_t type, int placeholder)
{
        switch (type) {
        case FLS_CONF_STR:
                return placeholder ? "STRING" : "string";
        case FLS_CONF_INT:
                return placeholder ? "INT" : "int";
        case FLS_CONF_DBL:
                return placeholder ? "NUMBER" : "number";
        case FLS_CONF_BOOL:
                return placeholder ? "BOOL" : "bool";
        }
        return "?";
}

/* "1..100000", or "" when the key has no bounds. */
static void format_range(const fls_conf_def_t *def, char *buf, size_t size)
{
        buf[0] = '\0';
        if (!bounded(def))
                return;
        if (def->type == FLS_CONF_INT)
                snprintf(buf, size, "%lld..%lld", (long long)def->min,
                         (long long)def->max);
        else if (def->type == FLS_CONF_DBL)
                snprintf(buf, size, "%.15g..%.15g", def->min, def->max);
}

static int in_scope(const fls_conf_def_t *def, const char *subcommand)
{
        size_t len;
        const char *p;

        if (!subcommand || !def->scope)
                return 1;
        len = strlen(subcommand);
        for (p = def->scope; *p;) {
                size_t wlen;

                while (*p == ' ')
                        p++;
                wlen = strcspn(p, " ");
                if (wlen == len && wlen && strncmp(p, subcommand, len) == 0)
                        return 1;
                p += wlen;
        }
        return 0;
}

void fls_conf_print_help(const fls_conf_t *conf, const char *subcommand, FILE *out)
{
        char range[128];
        size_t i;

        for (i = 0; i < conf->nents; i++) {
                const fls_conf_def_t *def = conf->ents[i].def;

                if (!in_scope(def, subcommand))
                        continue;
                format_range(def, range, sizeof(range));
                fprintf(out, "  --%s=%s  %s (default: %s%s%s)\n", def->name,
                        type_name(def->type, 1), def->help ? def->help : "",
                        def->def && *def->def ? def->def : "\"\"",
                        *range ? "; range " : "", range);
        }
        fprintf(out, "  --kafka.NAME=VALUE  librdkafka property NAME, passed through "
                     "unchanged\n");
}

/* Markdown cells cannot hold '|' or a line break. */
static void print_cell(FILE *out, const char *s)
{
        for (; s && *s; s++) {
                if (*s == '|')
                        fputs("\\|", out);
                else if (*s == '\n')
                        fputc(' ', out);
                else
                        fputc(*s, out);
        }
}

void fls_conf_print_markdown(const fls_conf_t *conf, FILE *out)
{
        char range[128];
        size_t i;

        fputs("| key | type | default | range | description |\n", out);
        fputs("|---|---|---|---|---|\n", out);
        for (i = 0; i < conf->nents; i++) {
                const fls_conf_def_t *def = conf->ents[i].def;

                format_range(def, range, sizeof(range));
                fprintf(out, "| `%s` | %s | ", def->name, type_name(def->type, 0));
                if (def->def && *def->def) {
                        fputc('`', out);
                        print_cell(out, def->def);
                        fputc('`', out);
                }
                fprintf(out, " | %s | ", range);
                print_cell(out, def->help);
                fputs(" |\n", out);
        }
}
