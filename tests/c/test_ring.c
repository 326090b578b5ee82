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
        cells[i].cell.on_complete = test_cell_done;
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
    close(p[0]);
    close(p[1]);
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
    test_flags();
    test_inline_read(path);
    test_overflow(path);
    test_deferred_and_wake();
    test_cancel();
    test_open_statx_close(path);
    unlink(path);
    printf("test_ring: all passed\n");
    return 0;
}
