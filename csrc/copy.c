#include "copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "ops.h"

static void rl_copy_slot_complete(struct rl_cell *cell);

static void rl_copy_fail(struct rl_copy *copy, int err)
{
    if (!copy->error)
        copy->error = err;
}

/* Queues the slot's next step, or leaves it idle when there is none. */
static void rl_copy_slot_step(struct rl_copy_slot *s)
{
    struct rl_copy *copy = s->copy;
    int ret;
    if (copy->error)
        return;
    if (s->writing) {
        ret = rl_op_write(copy->ring, &s->cell, copy->dst_fd, s->buf + s->written, s->len - s->written,
                          copy->dst_stream ? -1 : s->offset + s->written);
    } else {
        if (s->range == 0) { /* take a new range */
            if (copy->eof)
                return;
            s->offset = copy->next_offset;
            s->range = copy->chunk;
            copy->next_offset += copy->chunk;
        }
        ret = rl_op_read(copy->ring, &s->cell, copy->src_fd, s->buf, s->range, copy->src_stream ? -1 : s->offset);
    }
    if (ret < 0)
        rl_copy_fail(copy, ret);
    else
        copy->busy++;
}

static void rl_copy_slot_complete(struct rl_cell *cell)
{
    struct rl_copy_slot *s = (struct rl_copy_slot *)cell;
    struct rl_copy *copy = s->copy;
    int res = cell->result;
    copy->busy--;
    if (res == -EAGAIN) {
        /* The kernel had no room: the same step again. */
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
    rl_copy_slot_step(s);
    if (copy->busy == 0)
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
    copy->chunk = chunk;
    copy->nslots = nslots;
    copy->src_stream = src_stream;
    copy->dst_stream = dst_stream;
    copy->on_done = on_done;
    copy->owner = owner;
    for (unsigned i = 0; i < nslots; i++) {
        struct rl_copy_slot *s = &copy->slots[i];
        s->copy = copy;
        s->cell.on_complete = rl_copy_slot_complete;
        if (posix_memalign((void **)&s->buf, 4096, chunk) != 0) {
            rl_copy_free(copy);
            *err = -ENOMEM;
            return NULL;
        }
    }
    for (unsigned i = 0; i < nslots; i++)
        rl_copy_slot_step(&copy->slots[i]);
    if (copy->busy == 0) {
        /* Nothing could be queued: there is no completion to wait for. */
        *err = copy->error ? copy->error : -ENOMEM;
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
    for (unsigned i = 0; i < copy->nslots; i++)
        free(copy->slots[i].buf);
    free(copy);
}
