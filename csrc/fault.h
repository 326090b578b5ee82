/* Fault injection, for tests only: compiled in with -DRINGLET_FAULTS and
 * absent otherwise (every hook is then a constant 0 the compiler removes).
 *
 * A fault is armed per kind: after `skip` events of that kind pass, the next
 * `count` events fail with `error`.  Kinds:
 *   ALLOC  an allocation fails (error ignored: it is ENOMEM)
 *   ENTER  io_uring_enter returns error (-EAGAIN, -EBUSY, -EINTR, ...) without
 *          entering: the SQEs stay queued and must be retried
 *   CQE    a read or write completion carries error instead of its result
 *   SHORT  a read or write completion of more than one byte reports half
 *   CANCEL a cancel of everything in flight finds nothing (error ignored), as
 *          when the kernel misses a request (engine_cancel_and_wait) */
#ifndef RINGLET_FAULT_H
#define RINGLET_FAULT_H

enum rl_fault_kind { RL_FAULT_ALLOC, RL_FAULT_ENTER, RL_FAULT_CQE, RL_FAULT_SHORT, RL_FAULT_CANCEL, RL_FAULT_KINDS };

#ifdef RINGLET_FAULTS
void rl_fault_arm(int kind, unsigned skip, unsigned count, int error);
/* 0: this event goes through; otherwise the error to inject (SHORT, CANCEL: 1). */
int rl_fault_hit(int kind);
/* How many events of this kind were made to fail since it was armed. */
unsigned rl_fault_hits(int kind);
/* Whether a fault of any kind is armed (its events not all spent). */
int rl_fault_armed(void);
#else
static inline int rl_fault_armed(void) { return 0; }
static inline int rl_fault_hit(int kind)
{
    (void)kind;
    return 0;
}
#endif

#endif
