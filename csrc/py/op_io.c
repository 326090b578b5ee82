/* The kernel's side of reads and writes: where the kernel reads or writes
 * (the caller's memory, or an aligned bounce buffer for O_DIRECT), at which
 * offset (the descriptor's position taken and moved by ringlet), and what a
 * completion does before the op is finished: continue a short write, queue
 * again what the kernel had no room for, copy out of a bounce buffer.  Also
 * the reads of a read_many batch and the end of a copy. */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void op_io_complete(struct rl_cell *cell);

/* offset -1, "at the descriptor's offset" as read(2) and write(2) have it:
 * io_uring moves that offset asynchronously (a completion can be reaped
 * before it has moved, and the next read or write would land on the same
 * bytes), so ringlet reads it now, hands the kernel an explicit offset and
 * moves it itself at completion (op_io_complete).  A stream (lseek fails) and
 * an O_APPEND write keep -1: no offset to race on, or the kernel appends.
 * An offset + length beyond what a file can have is EINVAL, as pread(2) says. */
int op_take_position(OpObject *op, unsigned align)
{
    if (op->offset < 0) {
        errno = 0;
        int flags = op->kind == OP_WRITE ? fcntl(op->fd, F_GETFL) : 0;
        off_t position = flags >= 0 && !(flags & O_APPEND) ? lseek(op->fd, 0, SEEK_CUR) : -1;
        if (position < 0 && align && errno == EBADF) { /* said now, before O_DIRECT's "needs offsets" */
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (position < 0)
            return 0; /* a stream (or a bad descriptor: the kernel will say so) */
        op->offset = position;
        op->moves_position = 1;
    }
    /* With O_DIRECT, leave room for the aligned range around it. */
    if ((uint64_t)op->offset + op->length > INT64_MAX - (align ? 2u << 20 : 0)) {
        errno = EINVAL; /* what pread(2)/pwrite(2) say of it */
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* Where the kernel reads or writes for an op: the op's own memory, or with
 * O_DIRECT (align > 0), which needs memory, offset and length aligned, that
 * memory when it is aligned already (readinto/write), else a bounce buffer
 * covering the aligned range around [offset, offset + length).  A write must
 * be aligned itself (the caller keeps a buffered descriptor for the rest);
 * its data is copied into the bounce buffer, so the caller's buffer is free
 * at once. */
int op_kernel_io(OpObject *op, char *memory, unsigned align)
{
    struct kernel_io *io = &op->io;
    op->cell.on_complete = op_io_complete;
    io->buf = memory;
    io->len = op->length;
    io->offset = op->offset;
    if (align == 0)
        return 0;
    if (align < 512 || align > (1u << 20) || (align & (align - 1))) {
        PyErr_SetString(PyExc_ValueError, "align must be a power of two from 512 to 1 MiB");
        return -1;
    }
    if (op->offset < 0) {
        PyErr_SetString(PyExc_ValueError, "O_DIRECT I/O needs a file with offsets (not a stream or append mode)");
        return -1;
    }
    op->direct = 1;
    int64_t start = op->offset & ~(int64_t)(align - 1);
    int64_t end = (op->offset + (int64_t)op->length + align - 1) & ~(int64_t)(align - 1);
    int aligned = start == op->offset && end == op->offset + (int64_t)op->length;
    if (op->kind == OP_WRITE && !aligned) {
        PyErr_Format(PyExc_ValueError, "an O_DIRECT write needs offset and length multiples of %u", align);
        return -1;
    }
    if (aligned && op->kind != OP_READ && (uintptr_t)memory % align == 0)
        return 0; /* the caller's memory is aligned: the kernel uses it as it is */
    op->bounce = rl_bounce_get(&op->engine->bounce_pool, end > start ? (size_t)(end - start) : align, align,
                               &op->bounce_size);
    if (op->bounce == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    ringlet_live.bounce_buffers++;
    op->bounce_skip = (size_t)(op->offset - start);
    if (op->kind == OP_WRITE) {
        memcpy(op->bounce, memory, op->length);
        PyBuffer_Release(&op->u.view); /* copied: the caller's buffer is free */
    }
    io->buf = op->bounce;
    io->len = (size_t)(end - start);
    io->offset = start;
    return 0;
}

/* ---- the offload queue -------------------------------------------------
 * At most engine->offload_max offloaded reads are with the kernel's workers
 * at once; the others wait in the engine's queue, in call order, holding what
 * the ring's reference would hold (op_launch takes it as for any queued op).
 * Each completion starts the next one.  So each read waits for about one
 * round of the reads ahead of it, as in a synchronous loop serving them in
 * turn, and the workers do not crowd out the loop's thread. */

static int op_queue_offloaded(OpObject *op)
{
    const struct kernel_io *io = &op->io;
    size_t left = io->len - op->done;
    unsigned len = left > RL_MAX_DIRECT ? RL_MAX_DIRECT : (unsigned)left;
    int64_t offset = io->offset < 0 ? -1 : io->offset + (int64_t)op->done;
    return rl_op_read_offloaded(&op->engine->ring, &op->cell, op->fd, io->buf, len, offset);
}

static void offload_unlink(OpObject *op)
{
    EngineObject *engine = op->engine;
    if (op->wait_prev)
        op->wait_prev->wait_next = op->wait_next;
    else
        engine->offload_head = op->wait_next;
    if (op->wait_next)
        op->wait_next->wait_prev = op->wait_prev;
    else
        engine->offload_tail = op->wait_prev;
    op->wait_prev = op->wait_next = NULL;
    op->offload_waiting = 0;
}

/* A read's own bytes (OP_READ, not O_DIRECT) are made when it starts, not
 * while it waits: hundreds of waiting reads would otherwise hold hundreds of
 * buffers the kernel then faults in page by page, where a few reused ones
 * stay mapped. */
static int offload_owns_buffer(const OpObject *op) { return op->kind == OP_READ && op->bounce == NULL; }

/* The read's bytes, made now if it owns them and has none yet: 0, or -ENOMEM. */
static int offload_make_buffer(OpObject *op)
{
    if (offload_owns_buffer(op) && op->obj == NULL) {
        op->obj = engine_read_bytes(op->engine, (Py_ssize_t)op->length);
        if (op->obj == NULL) {
            PyErr_Clear(); /* reported as the read's ENOMEM */
            return -ENOMEM;
        }
        op->io.buf = PyBytes_AS_STRING(op->obj);
    }
    return 0;
}

/* Gives the op one of the places and queues its SQE: 0, or -errno (no place taken). */
static int offload_start(OpObject *op)
{
    int ret = offload_make_buffer(op);
    if (ret == 0)
        ret = op_queue_offloaded(op);
    if (ret == 0) {
        op->offload_running = 1;
        op->engine->offload_running++;
    }
    return ret;
}

/* An offloaded read, when first queued: started if a place is free and none waits, else queued. */
static int offload_enqueue(OpObject *op)
{
    EngineObject *engine = op->engine;
    if (engine->offload_head == NULL && engine->offload_running < engine->offload_max)
        return offload_start(op);
    if (offload_owns_buffer(op)) {
        Py_CLEAR(op->obj);
        op->io.buf = NULL;
    }
    op->offload_waiting = 1;
    op->wait_prev = engine->offload_tail;
    op->wait_next = NULL;
    if (engine->offload_tail)
        engine->offload_tail->wait_next = op;
    else
        engine->offload_head = op;
    engine->offload_tail = op;
    return 0;
}

/* A place came free: start the reads waiting for one.  From a completion
 * (a drain, which submits at its end) or a cancel; the flush covers the rest. */
static void offload_start_waiting(EngineObject *engine)
{
    int started = 0;
    while (engine->offload_head && engine->offload_running < engine->offload_max && !engine->shutting_down) {
        OpObject *op = engine->offload_head;
        offload_unlink(op);
        int ret = offload_start(op);
        if (ret < 0)
            op_finish(op, ret); /* no SQE: ENOMEM, as the ring reports it */
        else
            started = 1;
    }
    if (started)
        loop_schedule_flush(engine);
}

int engine_offload_serve(EngineObject *engine)
{
    int served = 0, raised = 0;
    while (engine->offload_head && !engine->shutting_down && !loop_must_yield(engine)) {
        OpObject *op = engine->offload_head;
        if (op->io.offset < 0 || !rl_nowait_enabled(&engine->nowait, op->fd))
            break; /* a stream, or a file that refuses the attempt: the workers' */
        if (offload_make_buffer(op) < 0)
            break; /* the worker's turn will report it */
        int64_t started = op->times ? rl_now_ns() : 0;
        int64_t n = rl_read_nowait(&engine->nowait, op->fd, op->io.buf, op->io.len, op->io.offset);
        if (n < 0)
            break; /* not all cached: the workers' (and no second try this turn) */
        offload_unlink(op);
        engine->ring.stats.submitted++;
        engine->ring.stats.completed++;
        engine->ring.stats.deferred++; /* delivered through its future, as a drain does */
        if (op->times) {
            op->times->submitted = started; /* given to the kernel now, not when queued */
            op->times->nowait = 1;
        }
        if (op->moves_position)
            lseek(op->fd, (off_t)(op->offset + n), SEEK_SET);
        /* Its task runs now, before the next read (as a drain wakes them):
         * it drops these bytes first, as most do, and the next read fills
         * the same spare, still in this core's cache.  Served in a row, each
         * into its own spare, 1 MiB reads cost 88 us instead of 67 here. */
        engine->reaping_for_wake = 1;
        op_finish(op, n);
        engine->reaping_for_wake = 0;
        PyObject *woke = engine_wake_ops(engine);
        raised = woke == NULL;
        Py_XDECREF(woke);
        served = 1;
        if (raised)
            break;
    }
    if (served && engine->offload_head) {
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb); /* what a woken task raised, kept across call_soon */
        loop_schedule_flush(engine); /* more in the next turn */
        PyErr_Restore(type, exc, tb);
    }
    return raised ? -1 : 0;
}

/* ---- writes in flight ------------------------------------------------
 * A write the kernel has taken is awaited to its end even by a cancelled
 * caller (python/ringlet/_fdio.py, settle), so that it counts.  The caller
 * first asks the engine to stop it (Engine._write_stop): a write the kernel
 * has not begun (queued behind another write to the same file, or stuck in
 * a worker queue that never runs) then ends as cancelled, one that stops
 * part-way gives what it wrote, and one that runs to its end lands whole. */

void op_writes_add(OpObject *op)
{
    EngineObject *engine = op->engine;
    op->wait_prev = NULL;
    op->wait_next = engine->writes;
    if (engine->writes)
        engine->writes->wait_prev = op;
    engine->writes = op;
}

void op_writes_remove(OpObject *op)
{
    EngineObject *engine = op->engine;
    if (op->wait_prev)
        op->wait_prev->wait_next = op->wait_next;
    else if (engine->writes == op)
        engine->writes = op->wait_next;
    else
        return; /* never added: completed in its own call, or not queued */
    if (op->wait_next)
        op->wait_next->wait_prev = op->wait_prev;
    op->wait_prev = op->wait_next = NULL;
}

const char engine__write_stop_doc[] =
"_write_stop(future, /) -> None\n\n"
"The caller awaiting the write (or _write_file) whose future this is was\n"
"cancelled, and awaits it to its end all the same: the kernel is asked to\n"
"stop it.  A write not begun ends with ECANCELED; one that ends part-way\n"
"(interrupted, short, or failing after a part) gives the bytes it wrote,\n"
"and is not continued.\n"
"write_file's: if its open has not completed, the open is cancelled and\n"
"nothing is written (a file it opened anyway is closed); once the write is\n"
"issued it lands whole, and the close follows.";

PyObject *engine__write_stop(EngineObject *self, PyObject *future)
{
    if (!self->ring_open || self->fork_generation != ringlet_fork_generation())
        Py_RETURN_NONE; /* shut down: what was in flight is the kernel's to finish or drop */
    for (OpObject *op = self->writes; op; op = op->wait_next) {
        if (op->future != future)
            continue;
        if (op->chain) {
            write_file_stop(op);
        } else {
            op->stopping = 1;
            rl_ring_cancel(&self->ring, &op->cell);
        }
        break;
    }
    Py_RETURN_NONE;
}

int op_offload_withdraw(OpObject *op)
{
    if (!op->offload_waiting)
        return 0;
    offload_unlink(op);
    op_finish(op, -ECANCELED);
    return 1;
}

void engine_offload_drop_all(EngineObject *engine)
{
    while (engine->offload_head) {
        OpObject *op = engine->offload_head;
        offload_unlink(op);
        op_finish(op, -ECANCELED);
    }
}

int op_queue_io(OpObject *op)
{
    if (op->offload)
        return op->offload_running ? op_queue_offloaded(op) : offload_enqueue(op);
    const struct kernel_io *io = &op->io;
    size_t left = io->len - op->done;
    unsigned len = left > RL_MAX_DIRECT ? RL_MAX_DIRECT : (unsigned)left;
    int64_t offset = io->offset < 0 ? -1 : io->offset + (int64_t)op->done;
    if (op->kind == OP_WRITE)
        return rl_op_write(&op->engine->ring, &op->cell, op->fd, io->buf + op->done, len, offset);
    return rl_op_read(&op->engine->ring, &op->cell, op->fd, io->buf, len, offset);
}

/* A large buffered read at an offset, once the loop turn's budget is spent.
 * Never a stream's: its data is no copy to spread over cores, and a worker
 * looks the number up only when it starts. */
int op_may_offload(OpObject *op)
{
    return op->kind != OP_WRITE && !op->direct && !op_reads_stream(op) && op->length >= RL_OFFLOAD_MIN &&
           loop_offload_large_read(op->engine);
}

int op_hold_and_queue_io(OpObject *op)
{
    int held = op_hold_fd(op);
    return held < 0 ? held : op_queue_io(op);
}

/* O_DIRECT read into the bounce buffer: copy out the part asked for. */
static int64_t op_copy_from_bounce(OpObject *op, int64_t res)
{
    int64_t n = res - (int64_t)op->bounce_skip;
    n = n < 0 ? 0 : n > (int64_t)op->length ? (int64_t)op->length : n;
    char *dest = op->kind == OP_READ ? PyBytes_AS_STRING(op->obj) : op->u.view.buf;
    memcpy(dest, op->bounce + op->bounce_skip, (size_t)n);
    return n;
}

static void op_io_complete(struct rl_cell *cell)
{
    OpObject *op = OP_FROM_CELL(cell);
    int64_t res = cell->result;
    /* Not going on: nobody will see the result, or (stopping) its cancelled caller asked it stopped. */
    int going_on = !op->engine->shutting_down && !op->abandoned && !op->stopping;
    if (res == -EAGAIN && going_on && !op_reads_stream(op)) {
        /* The kernel had no room for it (or a test injected EAGAIN): again.  (A
         * stream's read ends with it, as os.read on a non-blocking one.) */
        res = op_queue_io(op);
        if (res == 0)
            return; /* in flight again: the ring keeps its reference */
    } else if (op->bounce && op->kind != OP_WRITE && res >= 0) {
        res = op_copy_from_bounce(op, res);
    } else if (op->kind == OP_WRITE && res >= 0) {
        op->done += (size_t)res;
        if (op->done < op->length && going_on) {
            /* A short write is continued until all is written or an error comes. */
            res = res == 0 ? -EIO : op_queue_io(op);
            if (res == 0)
                return;
        }
    } else if (op->kind == OP_WRITE && op->stopping && op->done > 0) {
        res = 0; /* stopped after a part: its cancelled caller counts what was written (op->done) */
    }
    if (op->chain) { /* the file is closed before the op finishes */
        write_file_write_done(op, res);
        return;
    }
    if (op->moves_position) { /* past what moved, as read(2)/write(2) leave it */
        size_t moved = op->kind == OP_WRITE ? op->done : res > 0 ? (size_t)res : 0;
        lseek(op->fd, (off_t)(op->offset + (int64_t)moved), SEEK_SET);
    }
    EngineObject *engine = op->engine;
    int freed_place = op->offload_running;
    if (freed_place) {
        op->offload_running = 0;
        engine->offload_running--;
    }
    Py_INCREF(engine); /* op_finish may drop the last reference to the op, which holds the engine */
    op_finish(op, res);
    if (freed_place)
        offload_start_waiting(engine);
    Py_DECREF(engine);
}

static void op_batch_part_complete(struct rl_cell *cell)
{
    struct batch_part *part = (struct batch_part *)cell;
    OpObject *op = part->op;
    int res = cell->result;
    PyObject **item = &op->u.batch.items[part->index];
    if (res == -EAGAIN && !op->engine->shutting_down && !op->abandoned &&
        rl_op_read(&op->engine->ring, cell, op->fd, PyBytes_AS_STRING(*item), (unsigned)PyBytes_GET_SIZE(*item),
                   part->offset) == 0)
        return; /* again, as op_io_complete does */
    if (res < 0) {
        if (!op->u.batch.error)
            op->u.batch.error = res;
    } else if (res < PyBytes_GET_SIZE(*item) && _PyBytes_Resize(item, res) < 0) {
        PyErr_Clear(); /* shrinking failed: keep the item, mark the batch failed */
        *item = PyBytes_FromStringAndSize(NULL, 0);
        if (!op->u.batch.error)
            op->u.batch.error = -ENOMEM;
    }
    if (--op->u.batch.pending == 0)
        op_finish(op, op->u.batch.error);
}

Py_ssize_t op_queue_batch(OpObject *op, struct rl_nowait_read *reads)
{
    EngineObject *engine = op->engine;
    rl_read_nowait_batch(&engine->nowait, op->fd, reads, (size_t)op->u.batch.count);
    for (Py_ssize_t i = 0; i < op->u.batch.count; i++) {
        struct batch_part *part = &op->u.batch.parts[i];
        part->cell.on_complete = op_batch_part_complete;
        part->op = op;
        part->index = i;
        part->offset = reads[i].offset;
        PyObject *item = op->u.batch.items[i];
        int64_t cached = reads[i].result;
        if (cached >= 0) { /* from the page cache, at once: this part needs no ring */
            engine_count_nowait(engine);
            if (cached < PyBytes_GET_SIZE(item) && _PyBytes_Resize(&op->u.batch.items[i], cached) < 0) {
                PyErr_Clear(); /* as op_batch_part_complete does */
                op->u.batch.items[i] = PyBytes_FromStringAndSize(NULL, 0);
                if (!op->u.batch.error)
                    op->u.batch.error = -ENOMEM;
            }
            continue;
        }
        int queued = rl_op_read(&engine->ring, &part->cell, op->fd, PyBytes_AS_STRING(item),
                                (unsigned)PyBytes_GET_SIZE(item), reads[i].offset);
        if (queued < 0) {
            /* The reads already queued are in flight: the batch ends with ENOMEM once they complete. */
            op->u.batch.error = queued;
            for (Py_ssize_t j = i; j < op->u.batch.count; j++)
                Py_CLEAR(op->u.batch.items[j]);
            op->u.batch.count = i;
            break;
        }
        op->u.batch.pending++;
    }
    return op->u.batch.pending;
}

void op_copy_done(struct rl_copy *copy, int64_t result)
{
    ((OpObject *)copy->owner)->engine->writes_quiet += copy->quiet_writes;
    op_finish((OpObject *)copy->owner, result);
}
