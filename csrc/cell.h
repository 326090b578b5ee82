/* A task cell: the heap-resident state of one operation, from the moment its
 * submission is filled until the kernel's completion has been reaped.
 *
 * The ring knows only this header.  Its owner (the Python binding, or the copy
 * state machine in copy.c) embeds it as the first member of a larger struct
 * that keeps alive every byte the kernel may read or write.  The owner frees
 * that struct only after on_complete has run -- also after a cancel, because
 * the kernel may still be writing into it until its completion arrives. */
#ifndef RINGLET_CELL_H
#define RINGLET_CELL_H

#include <stdint.h>

enum rl_cell_state {
    RL_CELL_IDLE = 0,  /* not submitted, or completed and reaped */
    RL_CELL_IN_FLIGHT, /* owned by the kernel: memory must stay alive */
};

struct rl_cell;

/* The continuation: runs in the reaping thread when the CQE arrives.  It may
 * queue new submissions (they are sent in one io_uring_enter after the batch). */
typedef void (*rl_continuation)(struct rl_cell *cell);

struct rl_cell {
    rl_continuation on_complete;
    int32_t result;         /* cqe->res: >= 0 success, -errno failure */
    uint32_t cqe_flags;
    uint8_t state;          /* enum rl_cell_state */
    uint8_t reaped_inline;  /* the completion was reaped inside the submitting call */
    uint8_t opcode;         /* IORING_OP_* of the request in flight */
    uint32_t epoch;         /* the ring's epoch when armed: which enter submitted it */
#ifdef RINGLET_VALGRIND
    void *kernel_fills;     /* the memory a read or statx has the kernel write (rl_ring_arm) */
#endif
};

#endif
