/* Fault injection in the engine (built with -DRINGLET_FAULTS: the Makefile
 * compiles test_faults*.c so): a failed SQE allocation, io_uring_enter
 * refusing work, and completions with errors, EAGAIN and short counts --
 * including in the middle of a copy. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "copy.h"
#include "fault.h"
#include "ops.h"

#ifndef RINGLET_FAULTS
int main(void)
{
    fprintf(stderr, "SKIP: built without -DRINGLET_FAULTS\n");
    return 77;
}
#else

static void wait_for(struct rl_ring *r, const int *flag)
{
    for (int i = 0; i < 1000 && !*flag; i++) {
        rl_ring_submit_and_reap(r);
        rl_ring_drain(r, 1024);
        if (!*flag)
            rl_ring_wait(r, 10);
    }
    CHECK(*flag);
}

static void test_sqe_allocation(struct rl_ring *r, int fd)
{
    char buf[8];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    rl_fault_arm(RL_FAULT_ALLOC, 0, 1, 0);
    CHECK(rl_op_read(r, &c.cell, fd, buf, 8, 0) == -ENOMEM);
    CHECK(c.cell.state == RL_CELL_IDLE && r->stats.in_flight == 0);
    CHECK(rl_op_read(r, &c.cell, fd, buf, 8, 0) == 0);
    wait_for(r, &c.completions);
    CHECK(c.cell.result == 8 && memcmp(buf, "01234567", 8) == 0);
}

static void test_enter_refused(struct rl_ring *r, int fd, int err)
{
    char buf[8];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    rl_fault_arm(RL_FAULT_ENTER, 0, 2, -err);
    CHECK(rl_op_read(r, &c.cell, fd, buf, 8, 2) == 0);
    CHECK(rl_ring_submit_and_reap(r) == 0); /* not an error: retried */
    CHECK(c.completions == 0 && rl_fault_hits(RL_FAULT_ENTER) == 1);
    /* The loop is woken to retry. */
    struct pollfd p = {.fd = rl_ring_wake_fd(r), .events = POLLIN};
    CHECK(poll(&p, 1, 1000) == 1);
    wait_for(r, &c.completions);
    CHECK(c.cell.result == 8 && memcmp(buf, "23456789", 8) == 0 && rl_fault_hits(RL_FAULT_ENTER) == 2);
}

static void test_completion_error(struct rl_ring *r, int fd)
{
    char buf[8];
    struct test_cell c = {.cell.on_complete = test_cell_done};
    rl_fault_arm(RL_FAULT_CQE, 0, 1, -EIO);
    CHECK(rl_op_read(r, &c.cell, fd, buf, 8, 0) == 0);
    wait_for(r, &c.completions);
    CHECK(c.cell.result == -EIO);
    rl_fault_arm(RL_FAULT_SHORT, 0, 1, 0);
    c.completions = 0;
    CHECK(rl_op_read(r, &c.cell, fd, buf, 8, 0) == 0);
    wait_for(r, &c.completions);
    CHECK(c.cell.result == 4);
}

struct outcome {
    int done;
    int64_t result;
};

static void on_copy_done(struct rl_copy *copy, int64_t result)
{
    struct outcome *o = copy->owner;
    o->done = 1;
    o->result = result;
}

static unsigned last_pings; /* of the last copy */

/* A copy with a fault armed (q: its quiet ring, or NULL): it ends once,
 * exact when it succeeds, and leaves nothing in flight on either ring. */
static int64_t copy_with_fault(struct rl_ring *r, struct rl_ring *q, int src, unsigned chunk, int kind, unsigned skip,
                               unsigned count, int err)
{
    char dst_path[] = "/tmp/ringlet-faults-dst-XXXXXX";
    int dst = mkstemp(dst_path);
    CHECK(dst >= 0);
    struct outcome o = {0};
    int e = 0;
    rl_fault_arm(kind, skip, count, err);
    struct rl_copy *copy = rl_copy_start(r, q, src, dst, chunk, 4, on_copy_done, &o, &e);
    if (copy) {
        wait_for(r, &o.done);
        CHECK(copy->quiet_busy == 0 && copy->marks == 0 && !copy->pinging);
        last_pings = copy->pings;
        rl_copy_free(copy);
    } else {
        o.result = e;
    }
    rl_fault_arm(kind, 0, 0, 0);
    if (o.result > 0) { /* the copy must be exact */
        char *a = malloc((size_t)o.result), *b = malloc((size_t)o.result);
        CHECK(a && b);
        CHECK(pread(src, a, (size_t)o.result, 0) == o.result && pread(dst, b, (size_t)o.result, 0) == o.result);
        CHECK(memcmp(a, b, (size_t)o.result) == 0);
        free(a);
        free(b);
    }
    CHECK(r->stats.in_flight == 0 && (!q || q->stats.in_flight == 0));
    close(dst);
    unlink(dst_path);
    return o.result;
}

static void test_copy(struct rl_ring *r)
{
    char path[] = "/tmp/ringlet-faults-src-XXXXXX";
    int src = mkstemp(path);
    CHECK(src >= 0);
    static char data[50000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + 3);
    CHECK(write(src, data, sizeof data) == (ssize_t)sizeof data);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_CQE, 5, 1, -EIO) == -EIO);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_CQE, 3, 4, -ENOSPC) == -ENOSPC);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_CQE, 0, 6, -EAGAIN) == (int64_t)sizeof data);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_SHORT, 0, 20, 0) == (int64_t)sizeof data);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_ENTER, 0, 3, -EBUSY) == (int64_t)sizeof data);
    CHECK(copy_with_fault(r, NULL, src, 4096, RL_FAULT_ALLOC, 0, 1, 0) == -ENOMEM);
    CHECK(r->stats.in_flight == 0);
    close(src);
    unlink(path);
}

static void test_quiet_copy(struct rl_ring *r)
{
    struct rl_ring q;
    if (rl_ring_init_quiet(&q, 256) < 0)
        return; /* no DEFER_TASKRUN: copies never use one */
    char path[] = "/tmp/ringlet-faults-src-XXXXXX";
    int src = mkstemp(path);
    CHECK(src >= 0);
    size_t size = 20u << 20;
    char *data = malloc(size);
    CHECK(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 7 + i / 5003);
    CHECK(write(src, data, size) == (ssize_t)size);
    free(data);
    /* The quiet ring refuses its first submit: the next batch's mark, queued
     * after the submit that takes them, is behind its writes too. */
    CHECK(copy_with_fault(r, &q, src, 1 << 20, RL_FAULT_ENTER, 0, 1, -EAGAIN) == (int64_t)size);
    /* A source of one batch (three quiet writes and the mark, 1 MiB each)
     * whose quiet submit is refused: the mark runs alone; its continuation
     * reaps nothing and then submits the quiet writes (the drain's submit
     * comes after its reap), no write is left to queue a mark for, and a
     * ping queued behind them reaps them. */
    CHECK(ftruncate(src, RL_COPY_QUIET_BATCH) == 0);
    CHECK(copy_with_fault(r, &q, src, 1 << 20, RL_FAULT_ENTER, 0, 1, -EAGAIN) == (int64_t)RL_COPY_QUIET_BATCH);
    CHECK(last_pings >= 1);
    CHECK(ftruncate(src, (off_t)size) == 0);
    CHECK(copy_with_fault(r, &q, src, 1 << 20, RL_FAULT_CQE, 6, 1, -EIO) == -EIO);
    CHECK(copy_with_fault(r, &q, src, 1 << 20, RL_FAULT_SHORT, 0, 9, 0) == (int64_t)size);
    int64_t res = copy_with_fault(r, &q, src, 1 << 20, RL_FAULT_ALLOC, 4, 1, 0);
    CHECK(res == -ENOMEM || res == (int64_t)size);
    rl_ring_exit(&q);
    close(src);
    unlink(path);
}

int main(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 64);
    char path[] = "/tmp/ringlet-faults-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789abcdef", 16) == 16);
    test_sqe_allocation(&r, fd);
    test_enter_refused(&r, fd, EAGAIN);
    test_enter_refused(&r, fd, EBUSY);
    test_enter_refused(&r, fd, EINTR);
    test_completion_error(&r, fd);
    test_copy(&r);
    test_quiet_copy(&r);
    close(fd);
    unlink(path);
    rl_ring_exit(&r);
    printf("test_faults: all passed\n");
    return 0;
}
#endif
