#include "ring.h"

#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef RINGLET_VALGRIND
#include <sys/stat.h>
#include <valgrind/memcheck.h>
#endif

/* user_data of the ring's own requests (cancels): their CQEs are dropped. */
#define RL_INTERNAL_USER_DATA 0

/* TASKRUN_FLAG: the kernel says in the SQ flags when it holds work for this
 * thread (rl_ring_has_held), so that a drain can clear the eventfd after its
 * enter and still know whether to signal it again. */
const unsigned rl_ring_flag_choices[RL_RING_FLAG_CHOICES] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    0,
};

/* rl_defer_taskrun_signals_at_once's answer, -1 until asked; atomic, as
 * engines may be set up on several threads at once. */
static int defer_signals_at_once = -1;

int64_t rl_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void rl_defer_taskrun_assume(int at_once)
{
    __atomic_store_n(&defer_signals_at_once, at_once, __ATOMIC_RELAXED);
}

int rl_defer_taskrun_signals_at_once(void)
{
    int known = __atomic_load_n(&defer_signals_at_once, __ATOMIC_RELAXED);
    if (known >= 0)
        return known;
    /* The read's buffer: static, as the kernel may write it after the ring is gone. */
    static char byte;
    int at_once = 1; /* a step that fails says nothing against the kernel */
    int pipe_fds[2] = {-1, -1};
    int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct io_uring ring;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = rl_ring_flag_choices[0];
    if (wake_fd >= 0 && pipe2(pipe_fds, O_CLOEXEC) == 0 && io_uring_queue_init_params(2, &ring, &p) == 0) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, pipe_fds[0], &byte, 1, 0);
        if (io_uring_register_eventfd(&ring, wake_fd) == 0 && io_uring_submit(&ring) == 1 &&
            write(pipe_fds[1], "x", 1) == 1) {
            /* The write woke the read, which queued its completion for this
             * thread: a kernel that signals at once has, by now. */
            eventfd_t count = 0;
            at_once = eventfd_read(wake_fd, &count) == 0 && count > 0;
        }
        io_uring_queue_exit(&ring);
    }
    for (int i = 0; i < 2; i++)
        if (pipe_fds[i] >= 0)
            close(pipe_fds[i]);
    if (wake_fd >= 0)
        close(wake_fd);
    rl_defer_taskrun_assume(at_once);
    return at_once;
}

const char *rl_ring_flags_name(unsigned setup_flags)
{
    unsigned f = setup_flags & ~(IORING_SETUP_CQSIZE | IORING_SETUP_TASKRUN_FLAG);
    if (f == (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN))
        return "SINGLE_ISSUER|DEFER_TASKRUN";
    if (f == IORING_SETUP_COOP_TASKRUN)
        return "COOP_TASKRUN";
    return f ? "other" : "none";
}

/* What rings set up from now on may report (all of it, unless a test said otherwise). */
static uint64_t rl_new_ring_allowed[4] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};

static void rl_ring_probe(struct rl_ring *r)
{
    memset(r->supported_ops, 0, sizeof r->supported_ops);
    memset(r->hidden_ops, 0, sizeof r->hidden_ops);
    struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
    if (!probe)
        return;
    for (int op = 0; op <= probe->last_op && op < 256; op++)
        if (probe->ops[op].flags & IO_URING_OP_SUPPORTED)
            r->supported_ops[op / 64] |= (uint64_t)1 << (op % 64);
    io_uring_free_probe(probe);
    rl_ring_restrict(r, rl_new_ring_allowed);
}

int rl_ring_supports(const struct rl_ring *r, int opcode)
{
    if (opcode < 0 || opcode >= 256)
        return 0;
    return (r->supported_ops[opcode / 64] >> (opcode % 64)) & 1;
}

void rl_ring_restrict(struct rl_ring *r, const uint64_t allowed[4])
{
    for (int i = 0; i < 4; i++) {
        r->hidden_ops[i] |= r->supported_ops[i] & ~allowed[i];
        r->supported_ops[i] &= allowed[i];
    }
}

/* No kernel has opcode 255 (IORING_OP_LAST is far below): io_uring fails it
 * with -EINVAL in its CQE, as a kernel older than an opcode fails that one. */
#define RL_UNKNOWN_OPCODE 255

void rl_ring_hide_check(const struct rl_ring *r, struct io_uring_sqe *sqe)
{
    int op = sqe->opcode;
    if ((r->hidden_ops[op / 64] >> (op % 64)) & 1)
        sqe->opcode = RL_UNKNOWN_OPCODE;
}

void rl_ring_restrict_new(const uint64_t allowed[4])
{
    for (int i = 0; i < 4; i++)
        rl_new_ring_allowed[i] = allowed ? allowed[i] : UINT64_MAX;
}

/* The last step of every ring's setup.  A forked child must never touch
 * the ring: its memory is kept out of the child.  Then its opcodes are probed. */
static void rl_ring_dontfork_and_probe(struct rl_ring *r)
{
    io_uring_ring_dontfork(&r->ring);
    rl_ring_probe(r);
}

/* A ring just set up gets its eventfd (wake_fd, a descriptor it owns from
 * here on, or -errno from making it) and its probe; on failure it is undone. */
static int rl_ring_wake_and_probe(struct rl_ring *r, int wake_fd)
{
    int ret = wake_fd < 0 ? wake_fd : io_uring_register_eventfd(&r->ring, wake_fd);
    if (ret < 0) {
        if (wake_fd >= 0)
            close(wake_fd);
        io_uring_queue_exit(&r->ring);
        return ret;
    }
    r->wake_fd = wake_fd;
    rl_ring_dontfork_and_probe(r);
    return 0;
}

int rl_ring_init(struct rl_ring *r, unsigned sq_entries, unsigned cq_entries)
{
    memset(r, 0, sizeof *r);
    int ret = -EINVAL;
    for (size_t i = 0; i < RL_RING_FLAG_CHOICES; i++) {
        if (i == 0 && !rl_defer_taskrun_signals_at_once())
            continue;
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = rl_ring_flag_choices[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        ret = io_uring_queue_init_params(sq_entries, &r->ring, &p);
        if (ret == 0) {
            r->setup_flags = p.flags;
            r->features = p.features;
            break;
        }
        if (ret != -EINVAL) /* EPERM, ENOSYS, ENOMEM: no flag choice helps */
            return ret;
    }
    if (ret < 0)
        return ret;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return rl_ring_wake_and_probe(r, fd < 0 ? -errno : fd);
}

int rl_ring_init_plain(struct rl_ring *r, unsigned entries, int wake_fd)
{
    memset(r, 0, sizeof *r);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ret = io_uring_queue_init_params(entries, &r->ring, &p);
    if (ret < 0)
        return ret;
    r->setup_flags = p.flags;
    r->features = p.features;
    /* Its own descriptor of the same eventfd: rl_ring_exit closes it. */
    int fd = fcntl(wake_fd, F_DUPFD_CLOEXEC, 0);
    return rl_ring_wake_and_probe(r, fd < 0 ? -errno : fd);
}

int rl_ring_init_quiet(struct rl_ring *r, unsigned entries)
{
    memset(r, 0, sizeof *r);
    r->wake_fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* TASKRUN_FLAG: the kernel says in the SQ flags when completions are
     * still held for this thread (rl_ring_drain enters until they are not). */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4; /* room for every completion before a drain, and for cancels */
    int ret = io_uring_queue_init_params(entries, &r->ring, &p);
    if (ret < 0)
        return ret;
    r->setup_flags = p.flags;
    r->features = p.features;
    rl_ring_dontfork_and_probe(r);
    return 0;
}

void rl_ring_exit(struct rl_ring *r)
{
    if (r->busy) {
        r->exit_pending = 1;
        return;
    }
    struct rl_overflow *o = r->overflow_head;
    while (o) {
        struct rl_overflow *next = o->next;
        free(o);
        o = next;
    }
    r->overflow_head = r->overflow_tail = NULL;
    io_uring_queue_exit(&r->ring);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    r->gone = 1;
}

static int rl_ring_drain_held(struct rl_ring *r, unsigned max);

/* Around every call that runs continuations: a continuation may call
 * rl_ring_exit, which must wait until nothing up the stack reads the ring. */
static void rl_ring_hold(struct rl_ring *r) { r->busy++; }

static void rl_ring_release(struct rl_ring *r)
{
    if (--r->busy == 0 && r->exit_pending) {
        r->exit_pending = 0;
        rl_ring_exit(r);
    }
}

struct io_uring_sqe *rl_ring_sqe(struct rl_ring *r)
{
    if (r->exit_pending || r->gone || rl_fault_hit(RL_FAULT_ALLOC))
        return NULL;
    if (!r->overflow_head) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (!sqe && rl_ring_submit(r) > 0)
            sqe = io_uring_get_sqe(&r->ring);
        if (sqe)
            return sqe;
    }
    struct rl_overflow *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    if (r->overflow_tail)
        r->overflow_tail->next = o;
    else
        r->overflow_head = o;
    r->overflow_tail = o;
    r->stats.overflowed++;
    return &o->sqe;
}

void rl_ring_arm(struct rl_ring *r, struct io_uring_sqe *sqe, struct rl_cell *cell)
{
    io_uring_sqe_set_data(sqe, cell);
    cell->opcode = sqe->opcode;
#ifdef RINGLET_VALGRIND
    cell->kernel_fills = (void *)(uintptr_t)(sqe->opcode == IORING_OP_STATX ? sqe->addr2 : sqe->addr);
#endif
    cell->state = RL_CELL_IN_FLIGHT;
    cell->reaped_inline = 0;
    cell->epoch = r->epoch;
    r->stats.submitted++;
    if (++r->stats.in_flight > r->stats.peak_in_flight)
        r->stats.peak_in_flight = r->stats.in_flight;
}

/* Moves waiting overflow entries into the SQ while it has room. */
static void rl_ring_move_overflow(struct rl_ring *r)
{
    while (r->overflow_head) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (!sqe)
            return;
        struct rl_overflow *o = r->overflow_head;
        *sqe = o->sqe;
        r->overflow_head = o->next;
        if (!r->overflow_head)
            r->overflow_tail = NULL;
        free(o);
    }
}

/* io_uring_submit without the GETEVENTS liburing adds when the SQ flags show
 * work the kernel holds (IORING_SQ_TASKRUN): that work runs in drains only. */
static int rl_ring_enter_submit(struct rl_ring *r)
{
    struct io_uring_sq *sq = &r->ring.sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    unsigned pending = tail - IO_URING_READ_ONCE(*sq->khead);
    return pending ? io_uring_enter(r->ring.ring_fd, pending, 0, 0, NULL) : 0;
}

int rl_ring_submit(struct rl_ring *r)
{
    int taken = 0;
    if (r->gone)
        return 0;
    for (;;) {
        rl_ring_move_overflow(r);
        if (io_uring_sq_ready(&r->ring) == 0)
            return taken;
        r->stats.enter_calls++;
        int ret = rl_fault_hit(RL_FAULT_ENTER);
        if (ret == 0)
            ret = rl_ring_enter_submit(r);
        if (ret == -EAGAIN || ret == -EBUSY || ret == -EINTR) {
            /* The kernel is short of room (EBUSY: until completions are
             * reaped).  The SQEs stay queued; wake the loop so that its drain
             * reaps and submits again. */
            if (r->wake_fd >= 0)
                eventfd_write(r->wake_fd, 1);
            return taken;
        }
        if (ret < 0)
            return ret;
        taken += ret;
        if (ret > 0)
            r->epoch++;
        if (!r->overflow_head || ret == 0)
            return taken;
    }
}

/* Test builds only: make a read or write completion fail or come back short. */
static inline void rl_ring_fault_cqe(const struct rl_cell *cell, int32_t *res)
{
    if (cell == RL_INTERNAL_USER_DATA || (cell->opcode != IORING_OP_READ && cell->opcode != IORING_OP_WRITE))
        return;
    int err = rl_fault_hit(RL_FAULT_CQE);
    if (err)
        *res = err;
    else if (*res > 1 && rl_fault_hit(RL_FAULT_SHORT))
        *res /= 2;
}

/* Valgrind sees the system calls that write memory, not the ring: what a
 * read or a statx filled is marked written when its completion is reaped. */
static void rl_ring_mark_filled(const struct rl_cell *cell, int32_t res)
{
#ifdef RINGLET_VALGRIND
    if (cell->opcode == IORING_OP_READ && res > 0)
        VALGRIND_MAKE_MEM_DEFINED(cell->kernel_fills, (size_t)res);
    else if (cell->opcode == IORING_OP_STATX && res == 0)
        VALGRIND_MAKE_MEM_DEFINED(cell->kernel_fills, sizeof(struct statx));
#else
    (void)cell;
    (void)res;
#endif
}

static unsigned rl_ring_reap_held(struct rl_ring *r, unsigned max)
{
    enum { BATCH = 64 };
    unsigned total = 0;
    while (total < max && !r->exit_pending) {
        unsigned want = max - total < BATCH ? max - total : BATCH;
        /* The CQ read here, not with io_uring_peek_batch_cqe: on an empty CQ
         * it enters the kernel for held work when the SQ flags show some, and
         * that work runs in drains only. */
        unsigned n = io_uring_cq_ready(&r->ring);
        n = n < want ? n : want;
        if (n == 0)
            break;
        /* Copy the batch out and hand the slots back to the kernel before any
         * continuation runs: a continuation may reap or submit re-entrantly. */
        struct { struct rl_cell *cell; int32_t res; uint32_t flags; } batch[BATCH];
        unsigned head = *r->ring.cq.khead;
        int inline_cqes_only = r->reaping_inline && !(r->setup_flags & IORING_SETUP_DEFER_TASKRUN);
        int earlier = 0;
        for (unsigned i = 0; i < n; i++) {
            const struct io_uring_cqe *cqe = &r->ring.cq.cqes[(head + i) & r->ring.cq.ring_mask];
            struct rl_cell *cell = io_uring_cqe_get_data(cqe);
            /* Inside a submitting call, a ring without DEFER_TASKRUN may
             * already hold completions of earlier submissions: the kernel
             * posts its workers' (and woken polls') at this thread's next
             * system call, this enter's return.  They are left, with all
             * after them, for the drain the eventfd calls, as DEFER_TASKRUN
             * holds them: inline is only what the call itself submitted. */
            if (inline_cqes_only && cell != RL_INTERNAL_USER_DATA && cell->epoch != r->inline_epoch) {
                n = i;
                earlier = 1;
                break;
            }
            batch[i].cell = cell;
            batch[i].res = cqe->res;
            batch[i].flags = cqe->flags;
            rl_ring_fault_cqe(batch[i].cell, &batch[i].res);
            if (batch[i].cell != RL_INTERNAL_USER_DATA)
                r->stats.in_flight--; /* the kernel is done with it */
        }
        if (n == 0)
            break;
        io_uring_cq_advance(&r->ring, n);
        int inline_ = r->reaping_inline;
        for (unsigned i = 0; i < n; i++) {
            struct rl_cell *cell = batch[i].cell;
            if (cell == RL_INTERNAL_USER_DATA)
                continue;
            rl_ring_mark_filled(cell, batch[i].res);
            cell->result = batch[i].res;
            cell->cqe_flags = batch[i].flags;
            cell->state = RL_CELL_IDLE;
            cell->reaped_inline = (uint8_t)inline_;
            r->stats.completed++;
            if (inline_)
                r->stats.completed_inline++;
            else
                r->stats.deferred++;
            total++;
            cell->on_complete(cell);
        }
        if (earlier)
            break;
    }
    return total;
}

void rl_ring_settle(struct rl_ring *r, struct rl_cell *cell, int32_t result)
{
    if (cell->state != RL_CELL_IN_FLIGHT)
        return;
    cell->result = result;
    cell->state = RL_CELL_IDLE;
    cell->reaped_inline = 0;
    r->stats.in_flight--;
    r->stats.completed++;
    r->stats.deferred++;
}

unsigned rl_ring_reap(struct rl_ring *r, unsigned max)
{
    rl_ring_hold(r);
    unsigned n = rl_ring_reap_held(r, max);
    rl_ring_release(r);
    return n;
}

int rl_ring_submit_and_reap(struct rl_ring *r)
{
    rl_ring_hold(r);
    int was_inline = r->reaping_inline;
    uint32_t was_epoch = r->inline_epoch;
    r->inline_epoch = r->epoch; /* the cells this submission hands over */
    int ret = rl_ring_submit(r);
    r->reaping_inline = 1;
    rl_ring_reap_held(r, UINT32_MAX);
    r->reaping_inline = was_inline;
    r->inline_epoch = was_epoch;
    rl_ring_release(r);
    return ret < 0 ? ret : 0;
}

int rl_ring_has_held(const struct rl_ring *r)
{
    return io_uring_cq_ready(&r->ring) || rl_ring_kernel_holds(r);
}

int rl_ring_drain(struct rl_ring *r, unsigned max)
{
    if (r->exit_pending || r->gone)
        return 0;
    rl_ring_hold(r);
    int ret = rl_ring_drain_held(r, max);
    rl_ring_release(r);
    return ret;
}

static int rl_ring_drain_held(struct rl_ring *r, unsigned max)
{
    unsigned n = 0, got;
    do {
        /* With DEFER_TASKRUN the kernel holds finished work until this thread
         * enters; a CQ overflow also needs an enter to be flushed back. */
        if ((r->setup_flags & IORING_SETUP_DEFER_TASKRUN) || rl_ring_kernel_holds(r)) {
            r->stats.enter_calls++;
            int ret = io_uring_get_events(&r->ring);
            if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR)
                return ret;
        }
        got = rl_ring_reap_held(r, max - n);
        n += got;
        /* A ring without an eventfd is not called back for the rest: the
         * kernel runs a few dozen deferred items an enter (some of them
         * frees, with no completion), so enter again while it holds more. */
    } while (r->wake_fd < 0 && n < max && !r->exit_pending &&
             (got || (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN)));
    if (r->exit_pending)
        return (int)n; /* a continuation closed the ring: leave it alone */
    if (r->wake_fd >= 0) {
        /* Cleared after the enter, not before: the enter posted the held
         * completions, and each post signalled the eventfd once more, for a
         * wake-up that would find nothing.  What came after the enter, or
         * what it left (more than max, or more than the kernel runs in one
         * enter), shows in rl_ring_has_held: signalled again. */
        eventfd_t ignored;
        eventfd_read(r->wake_fd, &ignored); /* EAGAIN (already 0) is fine */
        if (rl_ring_has_held(r))
            eventfd_write(r->wake_fd, 1);
    }
    int ret = rl_ring_submit(r);
    return ret < 0 ? ret : (int)n;
}

int rl_ring_cancel(struct rl_ring *r, struct rl_cell *cell)
{
    if (cell->state != RL_CELL_IN_FLIGHT)
        return 0;
    /* Queued behind the cell's own SQE (SQ or overflow keep order), so the
     * kernel always sees the request before its cancel. */
    struct io_uring_sqe *sqe = rl_ring_sqe(r);
    if (!sqe)
        return -ENOMEM;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)cell, 0);
    io_uring_sqe_set_data64(sqe, RL_INTERNAL_USER_DATA);
    r->stats.cancelled++;
    return rl_ring_submit(r) < 0 ? -EIO : 0;
}

int rl_ring_cancel_unstarted(struct rl_ring *r, struct rl_cell *cell)
{
    if (cell->state != RL_CELL_IN_FLIGHT)
        return 0;
    /* A zero timeout: a running request gives -ETIME at once instead of being waited for. */
    struct io_uring_sync_cancel_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.addr = (uint64_t)(uintptr_t)cell;
    reg.fd = -1;
    r->stats.cancelled++;
    return io_uring_register_sync_cancel(&r->ring, &reg) == 0;
}

int rl_ring_cancel_all(struct rl_ring *r)
{
    if (r->stats.in_flight == 0)
        return 0;
    struct io_uring_sqe *sqe = rl_ring_sqe(r);
    if (!sqe)
        return -ENOMEM;
    if (rl_fault_hit(RL_FAULT_CANCEL))
        io_uring_prep_cancel64(sqe, UINT64_MAX, 0); /* no cell is there */
    else
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, RL_INTERNAL_USER_DATA);
    r->stats.cancelled++;
    int ret = rl_ring_submit(r);
    return ret < 0 ? ret : 0;
}

int rl_ring_wait(struct rl_ring *r, unsigned timeout_ms)
{
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ms / 1000,
        .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
    };
    struct io_uring_cqe *cqe;
    r->stats.enter_calls++;
    int ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
    if (ret == -ETIME || ret == -EINTR)
        return 0;
    return ret < 0 ? ret : 1;
}
