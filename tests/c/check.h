/* A tiny harness for the engine's C tests: CHECK aborts the test with the
 * failing line; a test exits 0 on success, 77 to skip (liburing's convention). */
#ifndef RINGLET_TEST_CHECK_H
#define RINGLET_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "ring.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* Sets up a ring or skips the test when the kernel refuses io_uring here. */
static inline void ring_or_skip(struct rl_ring *r, unsigned sq, unsigned cq)
{
    int ret = rl_ring_init(r, sq, cq);
    if (ret < 0) {
        fprintf(stderr, "SKIP: io_uring_setup failed with errno %d (seccomp, io_uring_disabled, old kernel?)\n", -ret);
        exit(77);
    }
}

/* A cell that records its completion. */
struct test_cell {
    struct rl_cell cell;
    int completions;
};

static inline void test_cell_done(struct rl_cell *c) { ((struct test_cell *)c)->completions++; }

#endif
