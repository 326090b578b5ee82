#define _GNU_SOURCE /* pipe2, F_SETPIPE_SZ, F_DUPFD_CLOEXEC, statx */
#include "copy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "fileinfo.h"
#include "ops.h"

struct rl_copy_stats rl_copy_totals;

static void rl_copy_slot_complete(struct rl_cell *cell);

static void rl_copy_fail(struct rl_copy *copy, int err)
{
    if (!copy->error)
        copy->error = err;
}

#define RL_COPY_COUNT(copy, kind) ((copy)->stats.kind++, rl_copy_totals.kind++)

/* Queues the slot's next step, or leaves it idle when there is none.  The
 * two ways share the state: "read" moves source bytes into the buffer or the
 * pipe, "write" moves them on into the destination.  A splice out is issued
 * by its splice in's completion, not linked to it (IOSQE_IO_LINK): measured
 * no faster here, since with DEFER_TASKRUN the kernel starts a linked request
 * only when the loop's thread runs its task work, the same wake-up as the
 * completion; and a link is cut where a submission ends, which the overflow
 * queue may put between the two. */
static void rl_copy_slot_step(struct rl_copy_slot *s)
{
    struct rl_copy *copy = s->copy;
    int ret;
    if (copy->error)
        return;
    if (s->writing) {
        int64_t at = copy->dst_stream ? -1 : s->offset + s->written;
        if (copy->splice) {
            ret = rl_op_splice(copy->ring, &s->cell, s->pipe[0], -1, copy->dst_fd, at, s->len - s->written);
            RL_COPY_COUNT(copy, splices);
        } else {
            ret = rl_op_write(copy->ring, &s->cell, copy->dst_fd, s->buf + s->written, s->len - s->written, at);
            RL_COPY_COUNT(copy, writes);
        }
    } else {
        if (s->range == 0) { /* take a new range */
            if (copy->eof)
                return;
            s->offset = copy->next_offset;
            s->range = copy->chunk;
            copy->next_offset += copy->chunk;
        }
        int64_t at = copy->src_stream ? -1 : s->offset;
        if (copy->splice) {
            ret = rl_op_splice(copy->ring, &s->cell, copy->src_fd, at, s->pipe[1], -1, s->range);
            RL_COPY_COUNT(copy, splices);
        } else {
            ret = rl_op_read(copy->ring, &s->cell, copy->src_fd, s->buf, s->range, at);
            RL_COPY_COUNT(copy, reads);
        }
    }
    if (ret < 0)
        rl_copy_fail(copy, ret);
    else
        copy->busy++;
}

static void rl_copy_pipe_close(struct rl_copy_slot *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->pipe[i] >= 0)
            close(s->pipe[i]);
        s->pipe[i] = -1;
    }
}

/* Gives the slot a pipe of at least want bytes if the system allows; returns
 * its capacity, or -errno. */
static int rl_copy_pipe_open(struct rl_copy_slot *s, unsigned want)
{
    if (rl_fault_hit(RL_FAULT_ALLOC))
        return -ENOMEM;
    if (pipe2(s->pipe, O_CLOEXEC) < 0) {
        s->pipe[0] = s->pipe[1] = -1;
        return -errno;
    }
    /* Over the user's pipe quota the kernel refuses a larger pipe (EPERM):
     * the default one still works, in smaller chunks. */
    int cap = fcntl(s->pipe[1], F_SETPIPE_SZ, (int)(want < (1u << 30) ? want : 1u << 30));
    if (cap < 0)
        cap = fcntl(s->pipe[1], F_GETPIPE_SZ);
    if (cap <= 0) {
        int err = cap < 0 ? -errno : -EIO;
        rl_copy_pipe_close(s);
        return err;
    }
    return cap;
}

/* A splice said EAGAIN: the kernel may have moved bytes before saying so, so
 * what the pipe holds is unknown.  Start over from the first unwritten byte
 * with an empty pipe.  Returns 0 or -errno. */
static int rl_copy_slot_repipe(struct rl_copy_slot *s)
{
    if (s->writing) {
        s->offset += s->written;
        s->range += s->len - s->written;
        s->len = s->written = 0;
        s->writing = 0;
    }
    rl_copy_pipe_close(s);
    int cap = rl_copy_pipe_open(s, s->copy->chunk);
    if (cap < 0)
        return cap;
    return (unsigned)cap < s->range ? -EIO : 0; /* never smaller than before; a range fits */
}

static int rl_copy_restart_plain(struct rl_copy *copy);

/* Splice writes one chunk at a time, in file order: the destination's inode
 * lock lets one write run at a time anyway (a second spins on it: 4 % of the
 * CPU in a profile), and a copy that fails (ENOSPC) leaves the prefix it
 * wrote, as shutil's does, not chunks beyond a gap (a 7-byte last chunk
 * landing first made a 1 MiB tmpfs's copy 3 MiB long).  Measured against
 * two writes in flight: 1 GiB in 302-315 ms against 309-333 ms, within the
 * noise; writes of 64 KiB (sendfile's size) were slower, 409-488 ms.
 * Starts the slot whose data comes next, if no write is in flight; with
 * nothing in flight at all, the lowest waiting one (a source that shrank
 * left a gap no read will fill). */
static void rl_copy_pump_writes(struct rl_copy *copy)
{
    if (!copy->splice || copy->writer || copy->error)
        return;
    struct rl_copy_slot *next = NULL;
    for (unsigned i = 0; i < copy->nslots; i++) {
        struct rl_copy_slot *s = &copy->slots[i];
        if (s->writing && (!next || s->offset + s->written < next->offset + next->written))
            next = s;
    }
    if (!next || (next->offset + next->written != copy->write_next && copy->busy > 0))
        return;
    copy->writer = next;
    copy->write_next = next->offset + next->written;
    rl_copy_slot_step(next);
    if (copy->error) /* it could not be queued */
        copy->writer = NULL;
}

static void rl_copy_slot_complete(struct rl_cell *cell)
{
    struct rl_copy_slot *s = (struct rl_copy_slot *)cell;
    struct rl_copy *copy = s->copy;
    int res = cell->result;
    copy->busy--;
    if (copy->writer == s)
        copy->writer = NULL;
    if (copy->splice && s->writing && res > 0)
        copy->write_next += res;
    if (res == -EAGAIN) {
        /* The kernel had no room: the same step again. */
        int err = copy->splice ? rl_copy_slot_repipe(s) : 0;
        if (err < 0)
            rl_copy_fail(copy, err);
    } else if (res < 0) {
        rl_copy_fail(copy, res);
    } else if (s->writing) {
        s->written += (unsigned)res;
        if (res == 0)
            rl_copy_fail(copy, -EIO); /* a write that makes no progress */
        else if (s->written == s->len) {
            copy->copied += s->len;
            s->writing = 0;
            s->offset += s->len; /* a short read left part of the range: read on */
        }
    } else if (res == 0) {
        copy->eof = 1;
        s->range = 0;
    } else {
        s->len = (unsigned)res;
        s->range -= (unsigned)res;
        s->written = 0;
        s->writing = 1;
    }
    if (copy->splice && s->writing)
        rl_copy_pump_writes(copy); /* s, or the slot whose data comes before */
    else
        rl_copy_slot_step(s);
    rl_copy_pump_writes(copy);
    if (copy->busy > 0)
        return;
    /* A file system (or an O_APPEND destination) that refuses splice says
     * EINVAL before a byte is written: copy it the other way. */
    if (copy->splice && copy->error == -EINVAL && copy->copied == 0 && rl_copy_restart_plain(copy) == 0)
        return;
    copy->on_done(copy, copy->error ? copy->error : copy->copied);
}

/* 1: fd has no offsets (pipe, FIFO, socket: lseek says ESPIPE); 0: it has
 * (files, block devices, /dev/zero...); -errno: fd is not usable. */
static int rl_copy_is_stream(int fd)
{
    if (lseek(fd, 0, SEEK_CUR) >= 0)
        return 0;
    return errno == ESPIPE ? 1 : -errno;
}

static void rl_copy_slots_reset(struct rl_copy *copy)
{
    copy->next_offset = copy->copied = copy->write_next = 0;
    copy->writer = NULL;
    copy->error = copy->eof = 0;
    for (unsigned i = 0; i < copy->nslots; i++) {
        struct rl_copy_slot *s = &copy->slots[i];
        s->offset = 0;
        s->range = s->len = s->written = 0;
        s->writing = 0;
    }
}

/* Queues each slot's first step.  Returns 0, or -errno when nothing could
 * be queued (there is then no completion to wait for). */
static int rl_copy_launch(struct rl_copy *copy)
{
    for (unsigned i = 0; i < copy->nslots; i++)
        rl_copy_slot_step(&copy->slots[i]);
    return copy->busy ? 0 : copy->error ? copy->error : -ENOMEM;
}

/* Read/write needs a buffer per slot.  Returns 0 or -ENOMEM. */
static int rl_copy_buffers(struct rl_copy *copy)
{
    for (unsigned i = 0; i < copy->nslots; i++)
        if (posix_memalign((void **)&copy->slots[i].buf, 4096, copy->chunk) != 0)
            return -ENOMEM;
    return 0;
}

/* Sets the copy up for splice, if it suits: both sides regular files (a
 * pipe, FIFO or device goes through read/write as before), a source large
 * enough, and the kernel's IORING_OP_SPLICE.  The copy takes its own
 * duplicates of the two descriptors: a splice resolves its descriptors only
 * when an io-wq worker runs it, and a cancelled copy's caller closes (and may
 * reuse) its numbers before the last splice has run.  Returns 1 when set up,
 * 0 when the copy should read and write (nothing to undo). */
static int rl_copy_setup_splice(struct rl_copy *copy, unsigned depth)
{
    struct rl_fileinfo src_info, dst_info;
    if (!rl_ring_supports(copy->ring, IORING_OP_SPLICE) || rl_fileinfo(copy->src_fd, &src_info) < 0 ||
        rl_fileinfo(copy->dst_fd, &dst_info) < 0 || !src_info.regular || !dst_info.regular ||
        src_info.size < RL_COPY_SPLICE_MIN)
        return 0;
    /* Slots past the end would only read the end of the file: a growing
     * source is still copied whole, by the slots that are there. */
    uint64_t chunks = (src_info.size + copy->chunk - 1) / copy->chunk;
    unsigned nslots = chunks < depth ? (unsigned)chunks : depth;
    int src = fcntl(copy->src_fd, F_DUPFD_CLOEXEC, 0);
    int dst = src < 0 ? -1 : fcntl(copy->dst_fd, F_DUPFD_CLOEXEC, 0);
    unsigned chunk = copy->chunk;
    int ok = dst >= 0;
    for (unsigned i = 0; ok && i < nslots; i++) {
        int cap = rl_copy_pipe_open(&copy->slots[i], copy->chunk);
        ok = cap > 0;
        if (ok && (unsigned)cap < chunk)
            chunk = (unsigned)cap; /* a range must fit the pipe: the splice in fills it at most */
    }
    if (!ok) { /* out of descriptors or memory: read and write, as before */
        for (unsigned i = 0; i < nslots; i++)
            rl_copy_pipe_close(&copy->slots[i]);
        if (src >= 0)
            close(src);
        if (dst >= 0)
            close(dst);
        return 0;
    }
    copy->src_fd = src;
    copy->dst_fd = dst;
    copy->owns_fds = 1;
    copy->chunk = chunk;
    copy->nslots = nslots;
    copy->splice = 1;
    return 1;
}

/* Every slot idle after splice was refused: set up read/write and start over. */
static int rl_copy_restart_plain(struct rl_copy *copy)
{
    for (unsigned i = 0; i < copy->nslots; i++)
        rl_copy_pipe_close(&copy->slots[i]);
    copy->splice = 0;
    copy->chunk = copy->requested_chunk;
    copy->nslots = copy->requested_slots;
    RL_COPY_COUNT(copy, fallbacks);
    rl_copy_slots_reset(copy);
    if (rl_copy_buffers(copy) < 0) {
        copy->error = -ENOMEM;
        return -ENOMEM;
    }
    int err = rl_copy_launch(copy);
    if (err < 0)
        copy->error = err;
    return err;
}

struct rl_copy *rl_copy_start(struct rl_ring *ring, int src_fd, int dst_fd, unsigned chunk,
                              unsigned nslots, rl_copy_done on_done, void *owner, int *err)
{
    if (nslots == 0 || nslots > RL_COPY_MAX_SLOTS || chunk == 0) {
        *err = -EINVAL;
        return NULL;
    }
    int src_stream = rl_copy_is_stream(src_fd), dst_stream = rl_copy_is_stream(dst_fd);
    if (src_stream < 0 || dst_stream < 0) {
        *err = src_stream < 0 ? src_stream : dst_stream;
        return NULL;
    }
    if (src_stream || dst_stream)
        nslots = 1; /* in order: one chunk at a time */
    struct rl_copy *copy = rl_fault_hit(RL_FAULT_ALLOC) ? NULL : calloc(1, sizeof *copy);
    if (!copy) {
        *err = -ENOMEM;
        return NULL;
    }
    copy->ring = ring;
    copy->src_fd = src_fd;
    copy->dst_fd = dst_fd;
    copy->chunk = copy->requested_chunk = chunk;
    copy->nslots = copy->requested_slots = nslots;
    copy->src_stream = src_stream;
    copy->dst_stream = dst_stream;
    copy->on_done = on_done;
    copy->owner = owner;
    for (unsigned i = 0; i < RL_COPY_MAX_SLOTS; i++) {
        struct rl_copy_slot *s = &copy->slots[i];
        s->copy = copy;
        s->cell.on_complete = rl_copy_slot_complete;
        s->pipe[0] = s->pipe[1] = -1;
    }
    if ((src_stream || dst_stream || !rl_copy_setup_splice(copy, nslots)) && rl_copy_buffers(copy) < 0) {
        rl_copy_free(copy);
        *err = -ENOMEM;
        return NULL;
    }
    int ret = rl_copy_launch(copy);
    if (ret < 0) {
        *err = ret;
        rl_copy_free(copy);
        return NULL;
    }
    return copy;
}

void rl_copy_cancel(struct rl_copy *copy)
{
    rl_copy_fail(copy, -ECANCELED);
    for (unsigned i = 0; i < copy->nslots; i++)
        rl_ring_cancel(copy->ring, &copy->slots[i].cell);
}

void rl_copy_free(struct rl_copy *copy)
{
    for (unsigned i = 0; i < RL_COPY_MAX_SLOTS; i++) {
        free(copy->slots[i].buf);
        rl_copy_pipe_close(&copy->slots[i]);
    }
    if (copy->owns_fds) {
        close(copy->src_fd);
        close(copy->dst_fd);
    }
    free(copy);
}
