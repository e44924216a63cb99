/*
 * fuzz: helpers shared by the libFuzzer targets (see fuzz.h): failing loudly and the
 * scratch files that the path-based loaders (configuration, models) read from.
 */
#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLS_FUZZ_MAX_PATHS 4

static struct {
        char tag[8];
        char path[256];
} paths[FLS_FUZZ_MAX_PATHS];
static int npaths;

/*
 * LeakSanitizer scans only aligned words for pointers by default. Avro C keeps the
 * buffers of strings copied into a generic value (avro_value_copy) behind pointers it
 * stores unaligned, so every string the codec's long-lived values hold shows up as a
 * "direct leak" at exit or in libFuzzer's per-input leak check, although the codec
 * frees them all in fls_codec_destroy (measured: a constant 6 blocks for an
 * OrderEvent, whatever the number of messages, and none with use_unaligned=1). The
 * hook is read by ASan/LSan in the libFuzzer build and in the ASan replay build, and
 * is dead code otherwise.
 */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
        return "use_unaligned=1";
}

void fls_fuzz_fail(const char *target, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "fuzz %s: ", target);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        abort();
}

static void remove_paths(void)
{
        for (int i = 0; i < npaths; i++)
                unlink(paths[i].path);
}

const char *fls_fuzz_path(const char *tag)
{
        const char *dir = getenv("TMPDIR");

        for (int i = 0; i < npaths; i++)
                if (strcmp(paths[i].tag, tag) == 0)
                        return paths[i].path;
        if (npaths == FLS_FUZZ_MAX_PATHS)
                fls_fuzz_fail("path", "more than %d scratch files", FLS_FUZZ_MAX_PATHS);
        if (access("/dev/shm", W_OK) == 0)
                dir = "/dev/shm";
        else if (!dir || !*dir)
                dir = "/tmp";
        snprintf(paths[npaths].tag, sizeof(paths[npaths].tag), "%s", tag);
        snprintf(paths[npaths].path, sizeof(paths[npaths].path), "%s/fls-fuzz-%ld-%s",
                 dir, (long)getpid(), tag);
        if (npaths++ == 0)
                atexit(remove_paths);
        return paths[npaths - 1].path;
}

int fls_fuzz_write(const char *path, const uint8_t *data, size_t size)
{
        FILE *fp = fopen(path, "wb");
        int rc = 0;

        if (!fp)
                return -1;
        if (size && fwrite(data, 1, size, fp) != size)
                rc = -1;
        if (fclose(fp) != 0)
                rc = -1;
        return rc;
}
