/*
 * replay: the main() that stands in for libFuzzer when the fuzz targets are built
 * without it (gcc, the normal and the ASan CI builds). It runs LLVMFuzzerTestOneInput
 * once over every file of each folder (or file) given as an argument, in name order so
 * that a failure is reproducible, and fails when a folder holds no input: an empty
 * corpus would make the regression test pass without testing anything. A crash or an
 * abort() in the target fails the ctest; under ASan a memory error does too.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
        FILE *fp = fopen(path, "rb");
        uint8_t *buf;
        long len;

        if (!fp) {
                perror(path);
                return -1;
        }
        if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 0 ||
            fseek(fp, 0, SEEK_SET) != 0) {
                fprintf(stderr, "%s: cannot size the file\n", path);
                fclose(fp);
                return -1;
        }
        /* An exact-size copy, so that ASan sees a read one byte past the input. */
        buf = malloc(len > 0 ? (size_t)len : 1);
        if (!buf || fread(buf, 1, (size_t)len, fp) != (size_t)len) {
                fprintf(stderr, "%s: read failed\n", path);
                free(buf);
                fclose(fp);
                return -1;
        }
        fclose(fp);
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        free(buf);
        return 0;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        char **names = NULL, path[4096];
        size_t n = 0, cap = 0;
        int rc = 0;

        if (!d) {
                perror(dir);
                return -1;
        }
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                if (n == cap) {
                        char **nn;
                        cap = cap ? cap * 2 : 64;
                        nn = realloc(names, cap * sizeof(*names));
                        if (!nn) {
                                rc = -1;
                                break;
                        }
                        names = nn;
                }
                if (!(names[n] = strdup(e->d_name))) {
                        rc = -1;
                        break;
                }
                n++;
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(*names), by_name);
        for (size_t i = 0; i < n && rc == 0; i++) {
                struct stat st;
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        rc = run_file(path);
                        (*count)++;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return rc;
}

int main(int argc, char **argv)
{
        size_t total = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                struct stat st;
                size_t count = 0;
                if (stat(argv[i], &st) != 0) {
                        perror(argv[i]);
                        return 1;
                }
                if (S_ISDIR(st.st_mode)) {
                        if (run_dir(argv[i], &count) < 0)
                                return 1;
                        if (count == 0) {
                                fprintf(stderr, "%s: no inputs\n", argv[i]);
                                return 1;
                        }
                } else {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        count = 1;
                }
                printf("%s: %zu inputs replayed\n", argv[i], count);
                total += count;
        }
        printf("%zu inputs, no failure\n", total);
        return 0;
}
