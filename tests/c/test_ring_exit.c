/* rl_ring_exit called by a continuation while completions are being reaped
 * (what Engine.shutdown() from a tracer or signal handler does): the ring
 * stays mapped until the reaping call returns, every completion already
 * taken still runs, and no SQE can be had meanwhile.  And the opcode
 * restriction that tests use to emulate older kernels. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ops.h"

enum { N = 8 };

static struct rl_ring ring;
static struct test_cell cells[N];
static struct test_cell extra;
static int exits, queue_after_exit, nested_drain;
static char bufs[N][8];

/* The first completion closes the ring (after a nested drain, as shutdown's
 * own wait does, when nested_drain is set) and tries to queue more. */
static void closing_continuation(struct rl_cell *c)
{
    test_cell_done(c);
    if (exits++ == 0) {
        if (nested_drain)
            rl_ring_drain(&ring, 64);
        rl_ring_exit(&ring);
        CHECK(ring.exit_pending); /* still mapped: a drain up the stack reads it */
        queue_after_exit = rl_op_read(&ring, &extra.cell, 0, bufs[0], 1, 0);
    }
}

static void reset(void)
{
    memset(cells, 0, sizeof cells);
    exits = 0;
    queue_after_exit = 1;
    for (int i = 0; i < N; i++)
        cells[i].cell.on_complete = closing_continuation;
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Reads on N pipes wait; data arrives for all; the drain that reaps them
 * has its first continuation close the ring. */
static void test_exit_during_drain(int nested)
{
    ring_or_skip(&ring, 16, 32);
    reset();
    nested_drain = nested;
    int pipes[N][2];
    for (int i = 0; i < N; i++) {
        CHECK(pipe(pipes[i]) == 0);
        CHECK(rl_op_read(&ring, &cells[i].cell, pipes[i][0], bufs[i], sizeof bufs[i], -1) == 0);
    }
    CHECK(rl_ring_submit_and_reap(&ring) == 0);
    for (int i = 0; i < N; i++)
        CHECK(write(pipes[i][1], "x", 1) == 1);
    int wake_fd = rl_ring_wake_fd(&ring);
    struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 5000) == 1);
    usleep(50000); /* let all N complete, so that one drain takes them together */
    rl_ring_drain(&ring, 64);
    CHECK(exits >= 1);
    CHECK(queue_after_exit == -ENOMEM); /* no SQE once the ring is closing */
    CHECK(!ring.exit_pending && ring.busy == 0);
    CHECK(!fd_is_open(wake_fd)); /* unmapped and closed on the way out */
    int ran = 0;
    for (int i = 0; i < N; i++)
        ran += cells[i].completions;
    /* Every completion taken with the first one ran; none ran twice. */
    CHECK(ran >= 1 && ran <= N);
    for (int i = 0; i < N; i++) {
        CHECK(cells[i].completions <= 1);
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
}

/* The same from the reaping inside a submitting call (page-cache hits). */
static void test_exit_during_inline_reap(const char *path)
{
    ring_or_skip(&ring, 16, 32);
    reset();
    nested_drain = 0;
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    for (int i = 0; i < N; i++)
        CHECK(rl_op_read(&ring, &cells[i].cell, fd, bufs[i], 4, i) == 0);
    int wake_fd = rl_ring_wake_fd(&ring);
    CHECK(rl_ring_submit_and_reap(&ring) == 0);
    CHECK(exits >= 1 && queue_after_exit == -ENOMEM);
    CHECK(!ring.exit_pending && ring.busy == 0 && !fd_is_open(wake_fd));
    close(fd);
}

static void test_restrict(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 4, 8);
    CHECK(rl_ring_supports(&r, IORING_OP_READ) && rl_ring_supports(&r, IORING_OP_NOP));
    uint64_t only_read[4] = {0};
    only_read[IORING_OP_READ / 64] |= (uint64_t)1 << (IORING_OP_READ % 64);
    rl_ring_restrict(&r, only_read);
    CHECK(rl_ring_supports(&r, IORING_OP_READ) && !rl_ring_supports(&r, IORING_OP_NOP));
    rl_ring_exit(&r);

    rl_ring_restrict_new(only_read);
    ring_or_skip(&r, 4, 8);
    CHECK(rl_ring_supports(&r, IORING_OP_READ) && !rl_ring_supports(&r, IORING_OP_WRITE));
    rl_ring_exit(&r);
    rl_ring_restrict_new(NULL);
    ring_or_skip(&r, 4, 8);
    CHECK(rl_ring_supports(&r, IORING_OP_WRITE));
    rl_ring_exit(&r);
}

int main(void)
{
    char path[] = "/tmp/ringlet-test-ring-exit-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789abcdef", 16) == 16);
    close(fd);
    test_exit_during_drain(0);
    test_exit_during_drain(1);
    test_exit_during_inline_reap(path);
    test_restrict();
    unlink(path);
    printf("test_ring_exit: all passed\n");
    return 0;
}
