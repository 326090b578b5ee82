#define _GNU_SOURCE /* statx, in fileinfo.h */
#include "copy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"
#include "fileinfo.h"
#include "ops.h"

static void rl_copy_slot_complete(struct rl_cell *cell);
static void rl_copy_check_done(struct rl_copy *copy);
static void rl_copy_populate_complete(struct rl_cell *cell);
static void rl_copy_settle(struct rl_copy *copy);

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* Once no write can still be reading from it. */
static void rl_copy_unmap_source(struct rl_copy *copy)
{
    if (copy->src_map)
        munmap((void *)copy->src_map, copy->map_size);
    copy->src_map = NULL;
    copy->map_len = 0;
}

static void rl_copy_fail(struct rl_copy *copy, int err)
{
    if (!copy->error)
        copy->error = err;
}

/* Maps the next piece of src_map in an io-wq worker (MADV_POPULATE_READ,
 * Linux 5.14): a write that finds its source's pages not yet mapped copies
 * part of a folio, zero-fills the rest, faults them in and copies again.
 * Mapped ahead on the other core, the writes run through.  For a source not
 * in the page cache it is the read-ahead too.  Pieces are bounded so that a
 * cancel waits for one at most; a kernel without it answers EINVAL and the
 * writes fault their pages themselves. */
static void rl_copy_populate_step(struct rl_copy *copy)
{
    if (copy->populating || copy->error)
        return;
    int64_t oldest = copy->next_offset - (int64_t)RL_COPY_MAP_FLIGHT; /* about the oldest write in flight */
    /* Behind the writes the pages are unmapped again (the page cache keeps
     * them): a long copy holds page tables for a window, not for the whole
     * source.  Were a write still there, it would fault them back in. */
    int64_t behind = (oldest - (int64_t)RL_COPY_MAP_FLIGHT) / RL_COPY_POPULATE * RL_COPY_POPULATE;
    /* Never past the mapping: reads past its end (a source that grew or
     * shrank, large chunks) move next_offset on, and MADV_DONTNEED beyond it
     * would zero whatever memory lies above (the ring's own, the heap). */
    if (behind > copy->map_len)
        behind = copy->map_len;
    if (behind - copy->unmapped >= RL_COPY_POPULATE) {
        madvise((char *)copy->src_map + copy->unmapped, (size_t)(behind - copy->unmapped), MADV_DONTNEED);
        copy->unmapped = behind;
    }
    if (copy->populated < oldest)
        copy->populated = oldest; /* the writes are ahead: no use behind them */
    if (copy->populated >= copy->map_len || copy->populated >= copy->next_offset + RL_COPY_POPULATE_LEAD)
        return; /* done, or far enough ahead: the next range a slot takes asks again */
    int64_t len = copy->map_len - copy->populated < RL_COPY_POPULATE ? copy->map_len - copy->populated
                                                                     : RL_COPY_POPULATE;
    if (rl_op_madvise(copy->ring, &copy->populate, (char *)copy->src_map + copy->populated, (size_t)len,
                      MADV_POPULATE_READ) < 0)
        return; /* no room in the ring: the writes fault their pages themselves */
    copy->populated += len;
    copy->populating = 1;
    copy->busy++;
}

/* Queues the slot's next step, or leaves it idle when there is none. */
static void rl_copy_slot_step(struct rl_copy_slot *s)
{
    struct rl_copy *copy = s->copy;
    int ret;
    if (copy->error)
        return;
    if (!s->writing && s->range == 0 && copy->next_offset < copy->map_len) {
        /* A range of the mapped source: its write reads src's page cache itself. */
        s->offset = copy->next_offset;
        s->len = copy->map_len - s->offset < copy->map_write ? (unsigned)(copy->map_len - s->offset) : copy->map_write;
        copy->next_offset += s->len;
        s->written = 0;
        s->writing = 1;
        s->mapped = 1;
        if (copy->populate_ok)
            rl_copy_populate_step(copy);
    }
    if (s->writing && s->mapped && copy->quiet) {
        /* Queued by rl_copy_flush, with the others of its batch. */
        copy->pending[copy->npending++] = (uint16_t)(s - copy->slots);
        copy->busy++;
        return;
    }
    s->on = copy->ring;
    if (s->writing) {
        const char *from = s->mapped ? copy->src_map + s->offset : s->buf;
        ret = rl_op_write(copy->ring, &s->cell, copy->dst_fd, from + s->written, s->len - s->written,
                          copy->dst_stream ? -1 : s->offset + s->written);
    } else {
        if (s->range == 0) { /* take a new range */
            if (copy->eof || (unsigned)(s - copy->slots) >= copy->read_slots)
                return;
            s->offset = copy->next_offset;
            s->range = copy->chunk;
            copy->next_offset += copy->chunk;
        }
        if (!s->buf && posix_memalign((void **)&s->buf, 4096, copy->chunk) != 0) {
            s->buf = NULL;
            rl_copy_fail(copy, -ENOMEM);
            return;
        }
        /* A range left by a mapped write (map_write bytes) may be longer than buf. */
        unsigned want = s->range < copy->chunk ? s->range : copy->chunk;
        ret = rl_op_read(copy->ring, &s->cell, copy->src_fd, s->buf, want, copy->src_stream ? -1 : s->offset);
    }
    if (ret < 0)
        rl_copy_fail(copy, ret);
    else
        copy->busy++;
}

/* Queues the pending mapped writes (copy.h): in batches of copy->batch, all
 * but the last on the quiet ring, submitted before the last (the mark) is
 * queued on the main ring.  The mark's SQE is taken first, so that a mark
 * always follows the quiet writes that were queued.  A batch short of
 * copy->batch waits while a mark is in flight (whose continuation flushes
 * again) and ranges remain to be taken: queued, it would come back short
 * (its slots are freed together), and the short batches multiplied until
 * most marks were a lone write, each waking the loop (1 GiB at 64 KiB:
 * 4,400 marks instead of 256). */
static void rl_copy_flush(struct rl_copy *copy)
{
    if (copy->error) { /* nothing more begins: the waiting writes are dropped */
        copy->busy -= copy->npending;
        copy->npending = 0;
        return;
    }
    unsigned i = 0;
    while (i < copy->npending) {
        unsigned n = copy->npending - i < copy->batch ? copy->npending - i : copy->batch;
        if (n < copy->batch && copy->marks > 0 && copy->next_offset < copy->map_len)
            break;
        struct io_uring_sqe *mark = rl_ring_sqe(copy->ring);
        for (unsigned k = 0; k < n; k++) {
            struct rl_copy_slot *s = &copy->slots[copy->pending[i + k]];
            const char *from = copy->src_map + s->offset + s->written;
            int64_t at = s->offset + s->written;
            unsigned len = s->len - s->written;
            if (!mark) {
                copy->busy--;
                rl_copy_fail(copy, -ENOMEM);
            } else if (k + 1 < n) {
                if (rl_op_write(copy->quiet, &s->cell, copy->dst_fd, from, len, at) < 0) {
                    copy->busy--;
                    rl_copy_fail(copy, -ENOMEM);
                    continue;
                }
                s->on = copy->quiet;
                copy->quiet_busy++;
                copy->quiet_writes++;
            } else {
                if (n > 1)
                    rl_ring_submit(copy->quiet); /* before the mark: what it took is in the worker's queue */
                io_uring_prep_write(mark, copy->dst_fd, from, len, (uint64_t)at);
                rl_ring_hide_check(copy->ring, mark);
                rl_ring_arm(copy->ring, mark, &s->cell);
                s->on = copy->ring;
                s->mark = 1;
                copy->marks++;
                copy->marks_queued++;
            }
        }
        i += n;
    }
    copy->npending -= i;
    memmove(copy->pending, copy->pending + i, copy->npending * sizeof copy->pending[0]);
}

/* Runs the quiet ring's finished writes through their continuations. */
static void rl_copy_reap_quiet(struct rl_copy *copy)
{
    if (!copy->quiet_busy)
        return;
    copy->draining++;
    rl_ring_drain(copy->quiet, UINT32_MAX);
    copy->draining--;
}

static void rl_copy_ping_complete(struct rl_cell *cell)
{
    struct rl_copy *copy = (struct rl_copy *)((char *)cell - offsetof(struct rl_copy, ping));
    copy->busy--;
    copy->pinging = 0;
    if (cell->result != -ETIME)
        copy->ping_ok = 0; /* cancelled (shutdown) or refused: no more pings */
    uint64_t reaped = copy->quiet->stats.completed;
    rl_copy_reap_quiet(copy);
    copy->ping_reaped += copy->quiet->stats.completed - reaped;
    rl_copy_settle(copy);
}

/* After a continuation: queues what it left pending; pings when quiet writes
 * are in flight with no mark behind them; reports the end. */
static void rl_copy_settle(struct rl_copy *copy)
{
    if (copy->draining)
        return; /* the mark whose continuation is reaping settles after it */
    rl_copy_flush(copy);
    if (copy->quiet_busy && !copy->marks && !copy->pinging && copy->ping_ok) {
        copy->ping_ts.tv_sec = 0;
        copy->ping_ts.tv_nsec = RL_COPY_PING_NS;
        if (rl_op_timeout(copy->ring, &copy->ping, &copy->ping_ts) == 0) {
            copy->pinging = 1;
            copy->pings++;
            copy->busy++;
        } else {
            rl_copy_fail(copy, -ENOMEM);
        }
    }
    rl_copy_check_done(copy);
}

static void rl_copy_slot_complete(struct rl_cell *cell)
{
    struct rl_copy_slot *s = (struct rl_copy_slot *)cell;
    struct rl_copy *copy = s->copy;
    int res = cell->result;
    if (copy->quiet && s->on == copy->quiet) {
        copy->quiet_busy--;
    } else if (s->mark) {
        s->mark = 0;
        copy->marks--;
        rl_copy_reap_quiet(copy); /* the quiet writes queued before it have run */
    }
    copy->busy--;
    if (res == -EAGAIN) {
        /* The kernel had no room: the same step again. */
    } else if (res == -EFAULT && s->mapped) {
        /* src shrank under its mapping: the rest of this range, and what
         * follows, is read as a file is (to its new end). */
        if (copy->map_len > s->offset + s->written)
            copy->map_len = s->offset + s->written;
        copy->copied += s->written;
        s->offset += s->written;
        s->range = s->len - s->written;
        s->writing = 0;
        s->mapped = 0;
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
            s->mapped = 0;
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
    rl_copy_settle(copy);
}

static void rl_copy_check_done(struct rl_copy *copy)
{
    if (copy->busy)
        return;
    rl_copy_unmap_source(copy);
    copy->on_done(copy, copy->error ? copy->error : copy->copied);
}

static void rl_copy_populate_complete(struct rl_cell *cell)
{
    struct rl_copy *copy = (struct rl_copy *)((char *)cell - offsetof(struct rl_copy, populate));
    copy->busy--;
    copy->populating = 0;
    copy->populate_ok = cell->result == 0; /* EINVAL: a kernel without it; an error: the writes will say */
    if (copy->populate_ok)
        rl_copy_populate_step(copy);
    rl_copy_settle(copy);
}

/* 1: fd has no offsets (pipe, FIFO, socket: lseek says ESPIPE); 0: it has
 * (files, block devices, /dev/zero...); -errno: fd is not usable. */
static int rl_copy_is_stream(int fd)
{
    if (lseek(fd, 0, SEEK_CUR) >= 0)
        return 0;
    return errno == ESPIPE ? 1 : -errno;
}

/* The order of free page blocks the host takes back (free page reporting),
 * or -1 when the kernel reports none. */
static int rl_copy_reporting_order(void)
{
    int order = -1;
    FILE *f = fopen("/sys/module/page_reporting/parameters/page_reporting_order", "re");
    if (f) {
        if (fscanf(f, "%d", &order) != 1)
            order = -1;
        fclose(f);
    }
    return order;
}

/* The write size for copying size bytes from a mapping (copy.h): the
 * largest piece whose free blocks, from its own size up to the reported
 * ones, hold twice size.  Without free page reporting, RL_COPY_MAP_MAX.
 * Reads two small files of procfs and sysfs (no device behind them), for
 * sources above RL_COPY_MAP_FLIGHT. */
static unsigned rl_copy_piece(int64_t size)
{
    if (size <= (int64_t)RL_COPY_MAP_FLIGHT)
        return RL_COPY_MAP_MAX; /* a few folios: not worth two files read */
    int reported = rl_copy_reporting_order();
    if (reported <= 0)
        return RL_COPY_MAP_MAX;
    FILE *f = fopen("/proc/buddyinfo", "re");
    if (!f)
        return RL_COPY_MAP_MAX;
    enum { ORDERS = 16 };
    uint64_t free_blocks[ORDERS] = {0};
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* "Node 0, zone   Normal  47090  37800 ...": blocks free of each order */
        char *p = strstr(line, "zone");
        if (!p || strstr(line, " DMA ")) /* the page cache does not use ZONE_DMA */
            continue;
        p += 4;
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++; /* the zone's name */
        for (int o = 0; o < ORDERS; o++) {
            char *end;
            unsigned long long n = strtoull(p, &end, 10);
            if (end == p)
                break;
            free_blocks[o] += n;
            p = end;
        }
    }
    fclose(f);
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    for (unsigned piece = RL_COPY_MAP_MAX; piece > RL_COPY_MAP_MIN; piece /= 2) {
        int order = 0;
        while ((page << order) < piece)
            order++;
        uint64_t bytes = 0;
        for (int o = order; o < reported && o < ORDERS; o++)
            bytes += free_blocks[o] * (page << o);
        if (bytes / 2 >= (uint64_t)size)
            return piece;
    }
    return RL_COPY_MAP_MIN;
}

/* A regular source is mapped: each write then copies from src's page cache
 * to dst's, one copy (as sendfile) where a read into a buffer and a write
 * from it make two.  Its pages fault in inside the io-wq worker that runs
 * the write (a buffered write to ext4 never runs on the loop thread).
 * Without a mapping (not a regular file, empty, mmap refused) every range
 * is read. */
static void rl_copy_map_source(struct rl_copy *copy)
{
    struct rl_fileinfo info;
    if (copy->src_stream || copy->dst_stream || rl_fileinfo(copy->src_fd, &info) < 0 || !info.regular ||
        info.size == 0 || info.size > SIZE_MAX || info.size > INT64_MAX)
        return;
    void *map = mmap(NULL, (size_t)info.size, PROT_READ, MAP_SHARED, copy->src_fd, 0);
    if (map == MAP_FAILED)
        return;
    madvise(map, (size_t)info.size, MADV_SEQUENTIAL);
    copy->src_map = map;
    copy->map_len = (int64_t)info.size;
    copy->map_size = (size_t)info.size;
    /* At most chunk bytes a write; one slot stays one write at a time (in order). */
    copy->map_write = rl_copy_piece(copy->map_len);
    if (copy->map_write > copy->chunk)
        copy->map_write = copy->chunk;
    if (copy->nslots > 1) {
        /* Quiet writes need the worker's queue, by inode: a regular file
         * without O_DIRECT (whose writes may run side by side). */
        struct rl_fileinfo dst;
        int fl = fcntl(copy->dst_fd, F_GETFL);
        if (!copy->quiet || rl_fileinfo(copy->dst_fd, &dst) < 0 || !dst.regular || fl < 0 || (fl & O_DIRECT))
            copy->quiet = NULL;
        unsigned cap = copy->quiet ? RL_COPY_MAP_SLOTS : RL_COPY_LOUD_SLOTS;
        unsigned want = RL_COPY_MAP_FLIGHT / copy->map_write;
        copy->nslots = want > cap ? cap : want < 2 ? 2 : want;
        copy->batch = RL_COPY_QUIET_BATCH / copy->map_write;
        if (copy->batch < 2)
            copy->batch = 2;
    } else {
        copy->quiet = NULL; /* one slot: in order, one write at a time */
    }
}

int rl_copy_wants_quiet(int src_fd)
{
    struct rl_fileinfo src;
    return rl_fileinfo(src_fd, &src) == 0 && src.regular && src.size > RL_COPY_MAP_FLIGHT;
}

struct rl_copy *rl_copy_start(struct rl_ring *ring, struct rl_ring *quiet, int src_fd, int dst_fd,
                              unsigned chunk, unsigned nslots, rl_copy_done on_done, void *owner, int *err)
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
    copy->populate.on_complete = rl_copy_populate_complete;
    copy->read_slots = nslots;
    copy->quiet = quiet;
    copy->ping.on_complete = rl_copy_ping_complete;
    copy->ping_ok = 1;
    rl_copy_map_source(copy);
    if (!copy->src_map)
        copy->quiet = NULL;
    for (unsigned i = 0; i < copy->nslots; i++) {
        struct rl_copy_slot *s = &copy->slots[i];
        s->copy = copy;
        s->on = ring;
        s->cell.on_complete = rl_copy_slot_complete;
    }
    if (copy->src_map) {
        copy->populate_ok = 1;
        rl_copy_populate_step(copy); /* first: its worker starts while the first writes queue */
    }
    for (unsigned i = 0; i < copy->nslots; i++)
        rl_copy_slot_step(&copy->slots[i]);
    rl_copy_flush(copy);
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
        rl_ring_cancel(copy->slots[i].on, &copy->slots[i].cell);
    if (copy->populating)
        rl_ring_cancel(copy->ring, &copy->populate);
}

void rl_copy_free(struct rl_copy *copy)
{
    rl_copy_unmap_source(copy);
    for (unsigned i = 0; i < copy->nslots; i++)
        free(copy->slots[i].buf);
    free(copy);
}
