/* The ring: flag probing, inline and deferred completions, the overflow
 * queue, cancellation, and the eventfd wake-up. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ops.h"

static void test_flags(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    const char *name = rl_ring_flags_name(r.setup_flags);
    printf("setup flags: %s, features 0x%x\n", name, r.features);
    CHECK(strcmp(name, "other") != 0);
    CHECK(rl_ring_supports(&r, IORING_OP_NOP));
    CHECK(!rl_ring_supports(&r, 255));
    rl_ring_exit(&r);
}

static void test_inline_read(const char *path)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    char buf[16];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_read(&r, &c.cell, fd, buf, sizeof buf, 3) == 0);
    CHECK(c.cell.state == RL_CELL_IN_FLIGHT && r.stats.in_flight == 1);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    /* A page-cache hit completes inside io_uring_enter. */
    CHECK(c.completions == 1 && c.cell.reaped_inline);
    CHECK(c.cell.result == 13 && memcmp(buf, "3456789abcdef", 13) == 0);
    CHECK(r.stats.completed_inline == 1 && r.stats.in_flight == 0);
    close(fd);
    rl_ring_exit(&r);
}

/* Ten times more operations than the SQ holds, queued before any submit:
 * none is refused (a full SQ is submitted to make room, or overflows). */
static void test_overflow(const char *path)
{
    enum { N = 40 };
    struct rl_ring r;
    ring_or_skip(&r, 4, 64);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    static char bufs[N][4];
    static struct test_cell cells[N];
    for (int i = 0; i < N; i++) {
        cells[i] = (struct test_cell){.cell.on_complete = test_cell_done};
        CHECK(rl_op_read(&r, &cells[i].cell, fd, bufs[i], 1, i % 16) == 0);
    }
    CHECK(r.stats.enter_calls >= N / 4 - 1 || r.stats.overflowed > 0);
    for (int spins = 0; r.stats.in_flight && spins < 1000; spins++) {
        rl_ring_submit_and_reap(&r);
        rl_ring_drain(&r, 1000);
    }
    CHECK(r.stats.in_flight == 0 && r.stats.completed == N);
    for (int i = 0; i < N; i++)
        CHECK(cells[i].completions == 1 && cells[i].cell.result == 1 && bufs[i][0] == "0123456789abcdef"[i % 16]);
    close(fd);
    rl_ring_exit(&r);
}

/* A pipe read waits; the eventfd wakes the loop when data arrives. */
static void test_deferred_and_wake(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    int p[2];
    CHECK(pipe(p) == 0);
    char buf[8];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_read(&r, &c.cell, p[0], buf, sizeof buf, -1) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    CHECK(c.completions == 0 && c.cell.state == RL_CELL_IN_FLIGHT);
    struct pollfd pfd = {.fd = rl_ring_wake_fd(&r), .events = POLLIN};
    CHECK(write(p[1], "ping", 4) == 4);
    CHECK(poll(&pfd, 1, 5000) == 1);
    CHECK(rl_ring_drain(&r, 16) == 1);
    CHECK(c.completions == 1 && c.cell.result == 4 && !c.cell.reaped_inline && r.stats.deferred == 1);
    /* The drain cleared the eventfd after posting the completion: no second
     * wake-up that would find nothing. */
    CHECK(poll(&pfd, 1, 0) == 0);
    close(p[0]);
    close(p[1]);
    rl_ring_exit(&r);
}

/* A completion the kernel holds for this thread (DEFER_TASKRUN) waits for
 * the loop's drain: neither a reap nor the enter of another submission runs
 * it (liburing's own submit and peek would, when the SQ flags show it held),
 * so a continuation never runs inside an unrelated call. */
static void test_held_completion_waits_for_the_drain(const char *path)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    if (!(r.setup_flags & IORING_SETUP_DEFER_TASKRUN)) {
        printf("held completion: none on a %s ring (the kernel posts it as the write returns)\n",
               rl_ring_flags_name(r.setup_flags));
        rl_ring_exit(&r);
        return;
    }
    int p[2], fd = open(path, O_RDONLY);
    CHECK(pipe(p) == 0 && fd >= 0);
    char pipe_buf[8], file_buf[4];
    struct test_cell waiting = {.cell.on_complete = test_cell_done}, now = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_read(&r, &waiting.cell, p[0], pipe_buf, sizeof pipe_buf, -1) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0 && waiting.completions == 0);
    CHECK(write(p[1], "ping", 4) == 4); /* queues the read's completion work before it returns */
    CHECK(rl_ring_submit_and_reap(&r) == 0); /* nothing to submit: a reap of an empty CQ */
    CHECK(rl_op_read(&r, &now.cell, fd, file_buf, sizeof file_buf, 0) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    CHECK(now.completions == 1 && now.cell.result == 4 && now.cell.reaped_inline);
    CHECK(waiting.completions == 0);
    /* Each wake-up gets its drain until the read is reaped: under valgrind
     * a first drain has been seen to find nothing (Linux 6.18.44, whose
     * DEFER_TASKRUN eventfd signal comes milliseconds after the work). */
    struct pollfd pfd = {.fd = rl_ring_wake_fd(&r), .events = POLLIN};
    for (int wakes = 0; waiting.completions == 0 && wakes < 10; wakes++) {
        CHECK(poll(&pfd, 1, 5000) == 1);
        rl_ring_drain(&r, 16);
    }
    CHECK(waiting.completions == 1 && waiting.cell.result == 4 && !waiting.cell.reaped_inline);
    CHECK(r.stats.completed_inline == 1 && r.stats.deferred == 1);
    close(fd);
    close(p[0]);
    close(p[1]);
    rl_ring_exit(&r);
}

/* Many completions held at once: every drain that leaves some (6.13 runs
 * 20 deferred items a pass, two passes an enter; 6.18 here runs them all)
 * signals the eventfd again, so none is lost, and the last leaves it clear. */
static void test_drain_leaves_the_wake_for_what_it_left(void)
{
    enum { PIPES = 64 };
    struct rl_ring r;
    ring_or_skip(&r, 64, 128);
    int p[PIPES][2];
    char bufs[PIPES][4];
    struct test_cell cells[PIPES];
    for (int i = 0; i < PIPES; i++) {
        CHECK(pipe(p[i]) == 0);
        cells[i] = (struct test_cell){.cell.on_complete = test_cell_done};
        CHECK(rl_op_read(&r, &cells[i].cell, p[i][0], bufs[i], sizeof bufs[i], -1) == 0);
    }
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    for (int i = 0; i < PIPES; i++)
        CHECK(write(p[i][1], "ping", 4) == 4);
    struct pollfd pfd = {.fd = rl_ring_wake_fd(&r), .events = POLLIN};
    unsigned reaped = 0, drains = 0;
    while (reaped < PIPES) {
        CHECK(poll(&pfd, 1, 5000) == 1); /* a wake-up for what is still held */
        int n = rl_ring_drain(&r, 16);
        CHECK(n >= 0);
        reaped += (unsigned)n;
        drains++;
        CHECK(drains <= PIPES);
    }
    printf("held completions: %d reaped in %u drains of at most 16\n", PIPES, drains);
    CHECK(drains >= PIPES / 16);
    CHECK(poll(&pfd, 1, 0) == 0); /* and none once all are reaped */
    for (int i = 0; i < PIPES; i++) {
        CHECK(cells[i].completions == 1 && cells[i].cell.result == 4);
        close(p[i][0]);
        close(p[i][1]);
    }
    rl_ring_exit(&r);
}

/* A read that would wait forever is cancelled; its completion still arrives. */
static void test_cancel(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    int p[2];
    CHECK(pipe(p) == 0);
    char buf[8];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_read(&r, &c.cell, p[0], buf, sizeof buf, -1) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    CHECK(rl_ring_cancel(&r, &c.cell) == 0);
    for (int i = 0; i < 100 && c.completions == 0; i++) {
        rl_ring_wait(&r, 50);
        rl_ring_drain(&r, 16);
    }
    CHECK(c.completions == 1 && c.cell.result == -ECANCELED);
    CHECK(r.stats.in_flight == 0 && r.stats.cancelled == 1);
    close(p[0]);
    close(p[1]);
    rl_ring_exit(&r);
}

static void test_open_statx_close(const char *path)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 16);
    struct test_cell c = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_openat(&r, &c.cell, AT_FDCWD, "/nonexistent/ringlet", O_RDONLY, 0) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    for (int i = 0; i < 100 && !c.completions; i++) {
        rl_ring_wait(&r, 50);
        rl_ring_drain(&r, 16);
    }
    CHECK(c.completions == 1 && c.cell.result == -ENOENT);

    struct statx stx;
    struct test_cell s = {.cell.on_complete = test_cell_done};
    CHECK(rl_op_statx(&r, &s.cell, AT_FDCWD, path, 0, &stx) == 0);
    CHECK(rl_ring_submit_and_reap(&r) == 0);
    for (int i = 0; i < 100 && !s.completions; i++) {
        rl_ring_wait(&r, 50);
        rl_ring_drain(&r, 16);
    }
    CHECK(s.completions == 1 && s.cell.result == 0 && stx.stx_size == 16);
    rl_ring_exit(&r);
}

int main(void)
{
    char path[] = "/tmp/ringlet-test-ring-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789abcdef", 16) == 16);
    close(fd);
    /* Each test on a ring with DEFER_TASKRUN (where the kernel has it, even
     * one that signals its eventfd late), then on one without. */
    for (int defer = 1; defer >= 0; defer--) {
        rl_defer_taskrun_assume(defer);
        test_flags();
        test_inline_read(path);
        test_overflow(path);
        test_deferred_and_wake();
        test_held_completion_waits_for_the_drain(path);
        test_drain_leaves_the_wake_for_what_it_left();
        test_cancel();
        test_open_statx_close(path);
    }
    unlink(path);
    printf("test_ring: all passed\n");
    return 0;
}
