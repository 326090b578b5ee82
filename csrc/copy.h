/* Copy driven entirely in C: the essay's "mission tracker" as a state machine
 * on the heap.  Several slots run at once so the device always has work.  No
 * Python runs until the copy ends.  Two ways to move a chunk:
 *
 *   splice  (regular file to regular file, kernel 5.7+): IORING_OP_SPLICE
 *           from the source into the slot's pipe; its completion issues the
 *           splice from the pipe into the destination.  The pipe holds
 *           references to the source's page-cache pages: the bytes are copied
 *           once, inside the kernel, as sendfile(2) (shutil.copyfile) does.
 *           The kernel runs every splice on an io-wq worker, never inline.
 *           No reflink (FICLONE) here, though XFS and Btrfs could share the
 *           extents in a millisecond: it is an ioctl with no io_uring opcode,
 *           so only the loop's thread could make it, and there it waits for
 *           the device: XFS first writes back the source's dirty pages (a
 *           256 MiB file written and not synced: 119 ms inside the ioctl,
 *           0.1 ms once synced) and may wait for log space.  The thread
 *           backend's copy_file_range does share extents.
 *   read/write  everything else (pipes, FIFOs, devices, small files, a file
 *           system that refuses splice): each read's completion issues the
 *           write of that chunk through a buffer, each write's completion the
 *           next read. */
#ifndef RINGLET_COPY_H
#define RINGLET_COPY_H

#include <stdint.h>

#include "ring.h"

#define RL_COPY_MAX_SLOTS 16
/* Below this source size (one default chunk) a copy reads and writes: with
 * nothing to overlap, a splice copy's setup (two descriptors and a pipe per
 * slot) and its io-wq hops cost about what the second memory copy saves. */
#define RL_COPY_SPLICE_MIN (1024 * 1024)

struct rl_copy;

/* Called once, when every slot is idle: result is the bytes copied, or -errno. */
typedef void (*rl_copy_done)(struct rl_copy *copy, int64_t result);

struct rl_copy_slot {
    struct rl_cell cell;  /* first member: the ring hands back this pointer */
    struct rl_copy *copy;
    char *buf;            /* read/write only */
    int pipe[2];          /* splice only: read end, write end (-1: none) */
    int64_t offset;       /* where this slot's current range starts */
    unsigned range;       /* bytes of the range still to read */
    unsigned len;         /* bytes in buf (splice: in the pipe) being written */
    unsigned written;     /* of len, written so far (short writes continue) */
    int writing;
};

struct rl_copy {
    struct rl_ring *ring;
    int src_fd, dst_fd;
    unsigned chunk;
    unsigned nslots;
    unsigned requested_chunk, requested_slots; /* what the caller asked: read/write uses them */
    int owns_fds;         /* src_fd and dst_fd are the copy's duplicates */
    int64_t next_offset;  /* the next range no slot has taken yet */
    int64_t copied;
    int64_t write_next;   /* splice: the first byte not yet written (writes go in order) */
    struct rl_copy_slot *writer; /* splice: the slot whose write is in flight */
    int error;            /* first -errno seen; stops new work */
    int src_stream;       /* a pipe, FIFO, socket...: no offsets, read in order (one slot) */
    int dst_stream;       /* ... written in order */
    int splice;           /* this copy moves chunks with splice through pipes */
    int eof;
    unsigned busy;        /* cells in flight */
    rl_copy_done on_done;
    void *owner;          /* for on_done */
    struct rl_copy_stats {
        uint64_t reads, writes, splices; /* operations queued, by kind */
        uint64_t fallbacks;              /* splice copies restarted as read/write */
    } stats;
    struct rl_copy_slot slots[RL_COPY_MAX_SLOTS];
};

/* Totals over every copy of the process, for tests and benchmarks. */
extern struct rl_copy_stats rl_copy_totals;

/* Allocates and starts a copy (queues its first reads).  A side without
 * offsets (a pipe, FIFO or socket) is read or written in order, and the
 * copy then runs one slot.  On failure returns NULL with *err
 * set; nothing is in flight then. */
struct rl_copy *rl_copy_start(struct rl_ring *ring, int src_fd, int dst_fd, unsigned chunk,
                              unsigned nslots, rl_copy_done on_done, void *owner, int *err);
/* Stops a running copy: its slots are cancelled; on_done still comes, with -ECANCELED. */
void rl_copy_cancel(struct rl_copy *copy);
/* Frees a copy whose on_done has run (and closes its pipes and descriptors). */
void rl_copy_free(struct rl_copy *copy);

#endif
