/* The copy state machine: content on awkward sizes, small chunks (so slots
 * overlap and short reads happen at end of file), and errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "copy.h"

struct outcome {
    int done;
    int64_t result;
};

static void on_done(struct rl_copy *copy, int64_t result)
{
    struct outcome *o = copy->owner;
    o->done++;
    o->result = result;
}

static int64_t run_copy(struct rl_ring *r, int src, int dst, unsigned chunk, unsigned depth)
{
    struct outcome o = {0};
    int err = 0;
    struct rl_copy *copy = rl_copy_start(r, NULL, src, dst, chunk, depth, on_done, &o, &err);
    if (!copy)
        return err;
    rl_ring_submit_and_reap(r);
    for (int i = 0; i < 10000 && !o.done; i++) {
        rl_ring_wait(r, 100);
        rl_ring_drain(r, 1024);
    }
    CHECK(o.done == 1);
    rl_copy_free(copy);
    return o.result;
}

/* A copy with the quiet ring: run to its end, or cancelled once the first
 * completion of the main ring has been reaped. */
static int64_t run_quiet_copy(struct rl_ring *r, struct rl_ring *q, int src, int dst, int cancel, uint64_t *quiet_writes,
                              uint64_t *mark_reaped)
{
    struct outcome o = {0};
    int err = 0;
    struct rl_copy *copy = rl_copy_start(r, q, src, dst, 1 << 20, 4, on_done, &o, &err);
    if (!copy)
        return err;
    CHECK(copy->quiet == q && copy->batch >= 2);
    rl_ring_submit_and_reap(r);
    for (int i = 0; i < 10000 && !o.done; i++) {
        rl_ring_wait(r, 100);
        if (rl_ring_drain(r, 1024) > 0 && cancel) {
            rl_copy_cancel(copy);
            cancel = 0;
        }
    }
    CHECK(o.done == 1);
    CHECK(copy->quiet_busy == 0 && copy->marks == 0 && !copy->pinging);
    /* Each batch but the last is whole: a short one waits for the next mark
     * (rl_copy_flush).  Were short batches queued, they came back short
     * and multiplied: most marks a lone write. */
    uint64_t writes = copy->quiet_writes + copy->marks_queued;
    CHECK(cancel || copy->marks_queued <= (writes + copy->batch - 1) / copy->batch + 1);
    *quiet_writes = copy->quiet_writes;
    *mark_reaped = copy->quiet_writes - copy->ping_reaped;
    rl_copy_free(copy);
    return o.result;
}

/* A source of size bytes of a pattern and an empty destination, in /tmp. */
struct files {
    char src_path[32], dst_path[32];
    int src, dst;
    char *data, *back; /* the pattern; room for what is read back (size + 1) */
};

static void files_open(struct files *f, size_t size)
{
    strcpy(f->src_path, "/tmp/ringlet-copy-src-XXXXXX");
    strcpy(f->dst_path, "/tmp/ringlet-copy-dst-XXXXXX");
    f->src = mkstemp(f->src_path);
    f->dst = mkstemp(f->dst_path);
    CHECK(f->src >= 0 && f->dst >= 0);
    f->data = malloc(size + 1);
    f->back = malloc(size + 1);
    CHECK(f->data && f->back);
    for (size_t i = 0; i < size; i++)
        f->data[i] = (char)(i * 131 + i / 4099);
    CHECK(write(f->src, f->data, size) == (ssize_t)size);
}

/* dst holds exactly the pattern. */
static void files_check(struct files *f, size_t size)
{
    CHECK(pread(f->dst, f->back, size + 1, 0) == (ssize_t)size);
    CHECK(memcmp(f->data, f->back, size) == 0);
}

static void files_close(struct files *f)
{
    free(f->data);
    free(f->back);
    close(f->src);
    close(f->dst);
    unlink(f->src_path);
    unlink(f->dst_path);
}

/* Mapped writes to a regular file: all but one a batch on the quiet ring,
 * reaped when the batch's mark completes; every byte arrives, nothing stays
 * in flight on either ring.  Cancelled, it ends once with -ECANCELED (or
 * done, if it finished first) and leaves nothing in flight. */
static void check_quiet(struct rl_ring *r, size_t size)
{
    struct rl_ring q;
    if (rl_ring_init_quiet(&q, RL_COPY_MAP_SLOTS) < 0) {
        printf("test_copy: no DEFER_TASKRUN, quiet copy not tried\n");
        return;
    }
    struct files f;
    files_open(&f, size);
    /* A batch's mark reaps its quiet writes; a ping reaps what a mark could
     * not (copy.h).  Marks that reaped nothing would leave them all to pings,
     * but so can a loaded machine, whose workers may finish every batch after
     * its mark (4 copies in 85 here with another process busy under
     * strace): up to 4 copies, until marks have reaped some. */
    uint64_t quiet_writes = 0, mark_reaped = 0, all_quiet_writes = 0;
    for (int attempt = 0; attempt < 4 && mark_reaped == 0; attempt++) {
        CHECK(run_quiet_copy(r, &q, f.src, f.dst, 0, &quiet_writes, &mark_reaped) == (int64_t)size);
        CHECK(quiet_writes > 0);
        all_quiet_writes += quiet_writes;
        files_check(&f, size);
        CHECK(r->stats.in_flight == 0 && q.stats.in_flight == 0);
        CHECK(q.stats.completed == all_quiet_writes); /* each reaped once */
    }
    CHECK(mark_reaped > 0);
    int64_t res = run_quiet_copy(r, &q, f.src, f.dst, 1, &quiet_writes, &mark_reaped);
    CHECK(res == -ECANCELED || res == (int64_t)size);
    CHECK(r->stats.in_flight == 0 && q.stats.in_flight == 0);
    rl_ring_exit(&q);
    files_close(&f);
}

static void check_size(struct rl_ring *r, size_t size, unsigned chunk, unsigned depth)
{
    struct files f;
    files_open(&f, size);
    CHECK(run_copy(r, f.src, f.dst, chunk, depth) == (int64_t)size);
    files_check(&f, size);
    CHECK(r->stats.in_flight == 0);
    files_close(&f);
}

/* Every madvise of the engine comes here (this test is linked with
 * --wrap=madvise: CTEST_LDFLAGS_test_copy in the Makefile).  A copy announces
 * its source mapping with MADV_SEQUENTIAL; each MADV_DONTNEED it makes later
 * must lie inside that mapping: beyond it, it would zero whatever memory lies
 * above (the ring's own, the heap).  One outside is counted, not made. */
int __real_madvise(void *addr, size_t len, int advice);
static const char *source_map;
static size_t source_size;
static unsigned dontneed_inside, dontneed_outside;

int __wrap_madvise(void *addr, size_t len, int advice)
{
    const char *start = addr;
    if (advice == MADV_SEQUENTIAL) {
        source_map = start;
        source_size = len;
    } else if (advice == MADV_DONTNEED) {
        if (start < source_map || len > source_size || start - source_map > (ptrdiff_t)(source_size - len)) {
            dontneed_outside++;
            return 0;
        }
        dontneed_inside++;
    }
    return __real_madvise(addr, len, advice);
}

/* A small mapped source copied in large chunks: once its one mapped range is
 * taken, the other slots take read ranges of chunk bytes past its end, so the
 * copy's next offset runs far past the mapping before the first populate
 * completes and unmaps what lies behind the writes. */
static void check_unmapping_stays_in_the_source(struct rl_ring *r)
{
    const size_t size = 1 << 20;
    struct files f;
    files_open(&f, size);
    CHECK(run_copy(r, f.src, f.dst, 64 << 20, 4) == (int64_t)size);
    files_check(&f, size);
    files_close(&f);
    CHECK(dontneed_outside == 0);
}

int main(void)
{
    struct rl_ring r;
    ring_or_skip(&r, 8, 64); /* a small SQ: depth 16 must go through the overflow queue */
    size_t sizes[] = {0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 7};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_size(&r, sizes[i], 4096, 4);
        check_size(&r, sizes[i], 65536, 16);
        check_size(&r, sizes[i], 1 << 20, 1);
    }
    check_quiet(&r, 40 * 1024 * 1024 + 7);
    CHECK(dontneed_inside > 0 && dontneed_outside == 0); /* long copies unmap behind their writes */
    check_unmapping_stays_in_the_source(&r);
    /* A bad descriptor ends the copy with its errno, once. */
    CHECK(run_copy(&r, 9999, 9998, 4096, 4) == -EBADF);
    /* Arguments out of range are refused before anything is queued. */
    CHECK(run_copy(&r, 0, 1, 0, 4) == -EINVAL);
    CHECK(run_copy(&r, 0, 1, 4096, RL_COPY_MAX_SLOTS + 1) == -EINVAL);
    CHECK(r.stats.in_flight == 0);
    rl_ring_exit(&r);
    printf("test_copy: all passed\n");
    return 0;
}
