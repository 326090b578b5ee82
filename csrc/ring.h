/* The ring: io_uring setup, submission (with an overflow queue so a caller
 * never sees EBUSY), and reaping of completions into task cells.
 * Every function returns >= 0 on success and -errno on failure (liburing style). */
#ifndef RINGLET_RING_H
#define RINGLET_RING_H

#include <liburing.h>
#include <stdint.h>

#include "cell.h"

struct rl_stats {
    uint64_t submitted;        /* operations handed to the ring */
    uint64_t completed;        /* completions reaped into cells */
    uint64_t completed_inline; /* ... of which inside the submitting call */
    uint64_t deferred;         /* ... of which later, from the ring's wake-up */
    uint64_t cancelled;        /* cancel requests sent to the kernel */
    uint64_t enter_calls;      /* io_uring_enter system calls */
    uint64_t overflowed;       /* submissions that waited in the overflow queue */
    uint32_t in_flight;        /* cells owned by the kernel now (until their CQE is taken) */
    uint32_t peak_in_flight;
};

/* A submission that found the SQ full waits here, in order, until there is room. */
struct rl_overflow {
    struct rl_overflow *next;
    struct io_uring_sqe sqe;
};

struct rl_ring {
    struct io_uring ring;
    unsigned setup_flags;      /* the IORING_SETUP_* flags the kernel accepted */
    unsigned features;         /* IORING_FEAT_* */
    int wake_fd;               /* eventfd the kernel signals on completions; the loop watches it (-1: none) */
    int reaping_inline;        /* set while reaping inside a submitting call */
    uint32_t epoch;            /* advanced by each enter that submits: cells armed since go in the next */
    uint32_t inline_epoch;     /* while reaping_inline: the epoch of the cells the call submitted */
    unsigned busy;             /* calls running continuations now (they nest): the ring stays mapped */
    int exit_pending;          /* rl_ring_exit was called by a continuation: done when busy drops to 0 */
    int gone;                  /* unmapped: drains, submissions and SQEs are refused from then on */
    struct rl_overflow *overflow_head, *overflow_tail;
    struct rl_stats stats;
    uint64_t supported_ops[4]; /* bit per IORING_OP_*, from the kernel's probe */
    uint64_t hidden_ops[4];    /* opcodes the kernel has but a test hid (rl_ring_restrict) */
};

/* CLOCK_MONOTONIC in ns, the clock of time.monotonic_ns(). */
int64_t rl_now_ns(void);

/* Sets up a ring, trying SINGLE_ISSUER|DEFER_TASKRUN (with TASKRUN_FLAG), then COOP_TASKRUN,
 * then no flags (each refused with EINVAL on older kernels). */
int rl_ring_init(struct rl_ring *r, unsigned sq_entries, unsigned cq_entries);
/* A ring with no setup flags (no DEFER_TASKRUN: the kernel's workers post
 * completions themselves and run a linked request in the worker that ran the
 * one before), signalling the same eventfd as wake_fd, through a descriptor
 * of its own.  For write_file's chain (csrc/py/writefile.c). */
int rl_ring_init_plain(struct rl_ring *r, unsigned entries, int wake_fd);
/* A SINGLE_ISSUER|DEFER_TASKRUN ring with no eventfd: what finishes on it
 * wakes nobody (its completions wait in the kernel until this thread enters
 * it: rl_ring_drain).  For copy's writes between two that wake (copy.h).
 * Fails (EINVAL) on a kernel without DEFER_TASKRUN. */
int rl_ring_init_quiet(struct rl_ring *r, unsigned entries);
/* Unmaps the ring and closes its fds.  Called by a continuation (while a
 * reap, drain or submit_and_reap up the stack still reads the ring), it only
 * marks the ring: the reaping stops after the completions already taken
 * (their continuations all run; no SQE can be had any more) and the
 * outermost of those calls unmaps it on its way out.  Cells still in flight
 * then are the owner's to leak: the kernel may still write their memory. */
void rl_ring_exit(struct rl_ring *r);
/* The descriptor to watch for readability: an eventfd, because with
 * DEFER_TASKRUN polling the ring fd itself does not wake on finished work. */
static inline int rl_ring_wake_fd(const struct rl_ring *r) { return r->wake_fd; }

/* A free SQE to fill: a slot of the SQ, or an overflow entry when the SQ is
 * full.  NULL only when memory for an overflow entry cannot be had. */
struct io_uring_sqe *rl_ring_sqe(struct rl_ring *r);
/* Binds a filled SQE to its cell: the cell is in flight from here on. */
void rl_ring_arm(struct rl_ring *r, struct io_uring_sqe *sqe, struct rl_cell *cell);

/* Sends what is queued to the kernel (one io_uring_enter), overflow first.
 * A kernel that is busy (EAGAIN, EBUSY, EINTR) is not an error: the SQEs stay
 * queued and go with the next submit.  Returns the number the kernel took. */
int rl_ring_submit(struct rl_ring *r);

/* Runs each completion that is ready (no system call) through its cell's
 * continuation.  The CQ head is advanced for a batch before any continuation
 * runs, so a continuation may safely reap or submit again.  Returns the count. */
unsigned rl_ring_reap(struct rl_ring *r, unsigned max);
/* A request in flight whose completion the kernel will not post (it skipped
 * it: IOSQE_CQE_SKIP_SUCCESS, or a link a skipping request's failure
 * cancelled) is done, with result: counted as completed, and the cell is
 * idle again.  Its on_complete is not run.  A cell not in flight is left as
 * it is. */
void rl_ring_settle(struct rl_ring *r, struct rl_cell *cell, int32_t result);

/* Submit, then reap what completed inside that call (page-cache hits). */
int rl_ring_submit_and_reap(struct rl_ring *r);

/* The wake-up path: flush the kernel's deferred work (DEFER_TASKRUN needs an
 * io_uring_enter from this thread for it), reap up to max completions, clear
 * the eventfd, and submit whatever the continuations queued.  If completions
 * are still ready or held (rl_ring_has_held), the eventfd is signalled again
 * so the loop comes back. */
int rl_ring_drain(struct rl_ring *r, unsigned max);
/* Whether the kernel holds completions an io_uring_enter would post: its CQ
 * overflow list, or work DEFER_TASKRUN holds for this thread
 * (IORING_SQ_TASKRUN, which only a ring with TASKRUN_FLAG shows). */
static inline int rl_ring_kernel_holds(const struct rl_ring *r)
{
    return (IO_URING_READ_ONCE(*r->ring.sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}
/* Whether completions wait in the CQ or in the kernel (rl_ring_kernel_holds).
 * No system call. */
int rl_ring_has_held(const struct rl_ring *r);

/* Asks the kernel to cancel a cell in flight.  Its completion still arrives
 * (with -ECANCELED or its real result) and runs the continuation as usual. */
int rl_ring_cancel(struct rl_ring *r, struct rl_cell *cell);

/* Cancels a cell the kernel has not started yet (a request still queued for
 * its workers), without waiting: 1 if it was, and then it never runs (its
 * completion, -ECANCELED, still arrives); 0 if it runs or ran already, or
 * the kernel cannot say (before 6.0). */
int rl_ring_cancel_unstarted(struct rl_ring *r, struct rl_cell *cell);

/* Asks the kernel to cancel everything in flight (kernel 5.19+). */
int rl_ring_cancel_all(struct rl_ring *r);

/* Blocks until a completion is ready or timeout_ms passes; reaps nothing, so
 * it may run without the caller's locks.  Shutdown only.  1: ready, 0: not. */
int rl_ring_wait(struct rl_ring *r, unsigned timeout_ms);

/* Whether the kernel supports an IORING_OP_*. */
int rl_ring_supports(const struct rl_ring *r, int opcode);
/* For tests that emulate an older kernel: from now on rl_ring_supports says
 * no to every opcode whose bit is clear in allowed (bit op % 64 of word op / 64),
 * and an SQE of such an opcode reaches the kernel as an unknown opcode, which
 * it fails with -EINVAL as an older kernel would (rl_ring_hide_check). */
void rl_ring_restrict(struct rl_ring *r, const uint64_t allowed[4]);
/* An SQE about to be queued: if a test hid its opcode, make it one no kernel knows. */
void rl_ring_hide_check(const struct rl_ring *r, struct io_uring_sqe *sqe);
/* The same for every ring set up from now on (NULL: no restriction). */
void rl_ring_restrict_new(const uint64_t allowed[4]);

/* The setup flags rl_ring_init tries, in order (each refused with EINVAL on older kernels). */
#define RL_RING_FLAG_CHOICES 3
extern const unsigned rl_ring_flag_choices[RL_RING_FLAG_CHOICES];

/* Whether this kernel signals a DEFER_TASKRUN ring's eventfd as soon as
 * work for the ring's thread is queued from a wait queue's wake-up (a pipe's
 * read woken by a write).  Linux 6.18.44 signals it 13-14 ms later (this
 * project's VM; the work is queued at once, as the SQ flags show, but the
 * eventfd's count rises late, and the loop sleeps until it does): every
 * FIFO or pipe read that waits would pay it, so
 * rl_ring_init passes DEFER_TASKRUN over there.  Asked once per process, of
 * a throw-away ring: an empty pipe's read, a write of one byte from this
 * thread, then the eventfd's count. */
int rl_defer_taskrun_signals_at_once(void);
/* For tests: take at_once as the kernel's answer (the C tests run their
 * rings with DEFER_TASKRUN, then without). */
void rl_defer_taskrun_assume(int at_once);

/* A readable name of setup_flags, e.g. "SINGLE_ISSUER|DEFER_TASKRUN". */
const char *rl_ring_flags_name(unsigned setup_flags);

#endif
