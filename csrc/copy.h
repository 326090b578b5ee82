/* Copy driven entirely in C: the essay's "mission tracker" as a state machine
 * on the heap.  Each slot reads a chunk; its read completion issues the write
 * of that chunk; the write completion issues the next read.  Several slots run
 * at once so the device always has work.  No Python runs until the copy ends.
 *
 * A regular source is mapped first (rl_copy_map_source): each slot then
 * writes a piece straight from the mapping, no read, so the data is copied
 * once, src's page cache to dst's, by the io-wq worker running the write
 * (ext4 has no non-blocking buffered write: never the loop's thread).  The
 * read/write pipeline copied twice (into a buffer on the loop's thread, out
 * of it in the worker).  What the mapping no longer covers (the source
 * shrank: EFAULT) is read, as is what follows its end. */
#ifndef RINGLET_COPY_H
#define RINGLET_COPY_H

#include <stdint.h>

#include "ring.h"

#define RL_COPY_MAX_SLOTS 16
#define RL_COPY_POPULATE (8 << 20) /* bytes of the source mapped by one madvise */
#define RL_COPY_POPULATE_LEAD (64 << 20) /* mapped ahead of the writes at most (page tables) */
/* A mapped source is written in pieces of RL_COPY_MAP_MAX (1 MiB) down to
 * RL_COPY_MAP_MIN (64 KiB, sendfile's), RL_COPY_MAP_FLIGHT bytes in flight.
 * The page cache gives a write of N bytes folios of about N bytes, taken
 * first from free blocks of that size.  A virtual machine with free page
 * reporting hands the free blocks of page_reporting_order and more (9, 2 MiB,
 * on the machine measured) back to its host, and the first touch of each of
 * their pages then costs a host fault: 1 MiB writes took 1.3-4 s for 1 GiB
 * once the free 1 MiB blocks ran out, against shutil.copyfile's 0.3 s.
 * Smaller writes cost a completion each (256 KiB: 0.32 s against 1 MiB's
 * 0.29 s when blocks abound), so the piece is the largest whose blocks below
 * the reported size hold twice the source (rl_copy_piece, /proc/buddyinfo).
 * Each write is one io-wq request, and on the main ring each costs a wakeup
 * of the loop (DEFER_TASKRUN completes it in task_work, whose first item
 * signals the eventfd; on a ring without it, the worker frees the request
 * through the submitter's task_work, which wakes it too): at 64 KiB the gap
 * to sendfile (0.36 s against 0.29 s a GiB), which loops in one call.
 *
 * The quiet ring (rl_ring_init_quiet: DEFER_TASKRUN, no eventfd) takes those
 * wakeups away: there a finished write only queues task_work that nobody is
 * woken for.  Writes to one regular file go to the io-wq worker of this
 * thread hashed by inode, run one at a time in the order queued, whatever
 * ring they came from; so in each batch (RL_COPY_QUIET_BATCH bytes) all
 * writes but the last go on the quiet ring, which is submitted first, and the
 * last (the mark) on the main ring: when the mark completes, the batch's
 * quiet writes have run, and the mark's continuation reaps them from the
 * quiet ring.  One wakeup per batch: at 64 KiB, 1 GiB in 0.27 s against
 * sendfile's 0.31 s (a C prototype, warm source), no more CPU.  A
 * quiet write left without a mark behind it (a partial submit, a cancelled
 * mark, a file system that completes some writes at once) is reaped by a
 * ping: a timeout of RL_COPY_PING_NS on the main ring, again until none is
 * left.  (An empty write would not do: one queued with IOSQE_ASYNC reaches
 * the worker before the kernel has looked at its file, so unhashed, and runs
 * at once beside the others.)
 * Measured and left out (1 GiB, 64 KiB): IORING_OP_SPLICE through pipes (two
 * requests a piece, 1.25x slower); linked writes with IOSQE_CQE_SKIP_SUCCESS
 * (as many wakeups); a second ring reporting by IORING_OP_MSG_RING every 4
 * MiB (its requests are freed in task_work too, which wakes this thread); an
 * IORING_SETUP_SQPOLL ring with linked writes (its kernel thread spins for
 * the whole copy: the same time as sendfile, twice its CPU). */
#define RL_COPY_MAP_MAX (1u << 20)
#define RL_COPY_MAP_MIN (64u << 10)
#define RL_COPY_MAP_FLIGHT (16u << 20)
#define RL_COPY_MAP_SLOTS 256        /* with the quiet ring: RL_COPY_MAP_FLIGHT at 64 KiB */
#define RL_COPY_LOUD_SLOTS 64        /* without it (each write wakes the loop) */
#define RL_COPY_QUIET_BATCH (4u << 20) /* bytes of mapped writes per mark */
#define RL_COPY_PING_NS 1000000        /* a ping's wait: 1 ms */

struct rl_copy;

/* Called once, when every slot is idle: result is the bytes copied, or -errno. */
typedef void (*rl_copy_done)(struct rl_copy *copy, int64_t result);

struct rl_copy_slot {
    struct rl_cell cell;  /* first member: the ring hands back this pointer */
    struct rl_copy *copy;
    char *buf;            /* chunk bytes, allocated when the slot first reads */
    int64_t offset;       /* where this slot's current range starts */
    unsigned range;       /* bytes of the range still to read */
    unsigned len;         /* bytes in buf being written */
    unsigned written;     /* of len, written so far (short writes continue) */
    int writing;
    int mapped;           /* writing straight from copy->src_map (no read, no buf) */
    int mark;             /* a mapped write on the main ring behind quiet ones */
    struct rl_ring *on;   /* the ring its cell is on (for cancel) */
};

struct rl_copy {
    struct rl_ring *ring;
    int src_fd, dst_fd;
    unsigned chunk;
    unsigned nslots;
    int64_t next_offset;  /* the next range no slot has taken yet */
    int64_t copied;
    int error;            /* first -errno seen; stops new work */
    int src_stream;       /* a pipe, FIFO, socket...: no offsets, read in order (one slot) */
    int dst_stream;       /* ... written in order */
    int eof;
    const char *src_map;  /* src mapped (a regular file), or NULL */
    int64_t map_len;      /* bytes of src_map still to be written from: src's size when mapped */
    size_t map_size;      /* for munmap */
    struct rl_cell populate;   /* maps src_map's pages ahead of the writes, a piece at a time */
    int64_t populated;         /* where the next piece starts */
    int populating;            /* a piece in flight (counted in busy) */
    int populate_ok;           /* none has failed: keep mapping ahead */
    int64_t unmapped;          /* below it the mapping's pages were unmapped again */
    unsigned busy;        /* slots in flight */
    rl_copy_done on_done;
    void *owner;          /* for on_done */
    unsigned read_slots;  /* of nslots, those that read once the mapping is done */
    unsigned map_write;   /* bytes per write from the mapping (rl_copy_piece) */
    struct rl_ring *quiet;     /* mapped writes but the marks go here; NULL: all on ring */
    unsigned batch;            /* writes per mark */
    unsigned quiet_busy;       /* writes on quiet not reaped yet */
    unsigned marks;            /* marks in flight */
    int draining;              /* reaping quiet inside a mark's continuation: no flush yet */
    struct rl_cell ping;       /* a timeout, to reap quiet writes no mark follows */
    struct __kernel_timespec ping_ts;
    int pinging, ping_ok;
    unsigned pings;            /* pings queued (tests) */
    uint64_t ping_reaped;      /* quiet writes reaped by a ping, not a mark (tests) */
    uint64_t quiet_writes;     /* writes queued on quiet (stats) */
    uint64_t marks_queued;     /* marks queued (tests) */
    unsigned npending;         /* slots whose mapped write waits for rl_copy_flush */
    uint16_t pending[RL_COPY_MAP_SLOTS];
    struct rl_copy_slot slots[RL_COPY_MAP_SLOTS];
};

/* Allocates and starts a copy (queues its first reads).  A side without
 * offsets (a pipe, FIFO or socket) is read or written in order, and the
 * copy then runs one slot.  quiet (or NULL): a ring of rl_ring_init_quiet
 * for the writes from a mapped source to a regular file.  On failure returns
 * NULL with *err set; nothing is in flight then. */
struct rl_copy *rl_copy_start(struct rl_ring *ring, struct rl_ring *quiet, int src_fd, int dst_fd,
                              unsigned chunk, unsigned nslots, rl_copy_done on_done, void *owner, int *err);
/* Whether a copy of src_fd to dst_fd is worth a quiet ring: a regular source
 * of more than RL_COPY_MAP_FLIGHT bytes (fstat only). */
int rl_copy_wants_quiet(int src_fd);
/* Stops a running copy: its slots are cancelled; on_done still comes, with -ECANCELED. */
void rl_copy_cancel(struct rl_copy *copy);
/* Frees a copy whose on_done has run. */
void rl_copy_free(struct rl_copy *copy);

#endif
