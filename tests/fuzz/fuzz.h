/*
 * fuzz: what the libFuzzer targets of tests/fuzz/ share. Each target (fuzz_<name>.c)
 * defines LLVMFuzzerTestOneInput for one parser on the untrusted edge of the flow
 * Kafka -> Avro -> Redis -> model -> Kafka: the message decode path (framing, Avro,
 * the consumers' domain checks), the configuration parser, the model file loader and
 * the CSV reader of the training data. Built with FLS_FUZZ=ON and clang it links
 * libFuzzer; otherwise it links replay.c, which runs a corpus folder through it as a
 * ctest regression test.
 *
 * A target calls fls_fuzz_fail() when an invariant breaks (a round trip that does not
 * come back, an error without a message): abort() is what both libFuzzer and ctest
 * report as a failure, with the input that caused it.
 */
#ifndef FLS_FUZZ_H
#define FLS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "fuzz <target>: <message>" to stderr and aborts. */
void fls_fuzz_fail(const char *target, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* A path for a scratch file of this process, "<dir>/fls-fuzz-<pid>-<tag>", in
 * /dev/shm when it exists (the loaders under test take paths, and a tmpfs write
 * costs microseconds where a disk fsync costs milliseconds), else $TMPDIR or /tmp.
 * The file is removed at exit. Returns a static buffer per tag (tags: "a", "b"). */
const char *fls_fuzz_path(const char *tag);

/* Replaces the file at path with data[0..size). -1 on an I/O error. */
int fls_fuzz_write(const char *path, const uint8_t *data, size_t size);

#endif
