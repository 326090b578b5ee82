/* write_file as one operation.  As three (open, write, close), each step came
 * back to Python, which issued the next: two turns of the loop, two futures
 * and two task steps between the open (which O_TRUNC sends to a kernel
 * worker) and the close that starts the file's writeback, all while the
 * caller waits.  Here each step's completion issues the next one in C, and
 * Python is resumed once, with the count or the error.  Only the opcodes
 * every kernel ringlet runs on has (OPENAT, WRITE, CLOSE). */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"
#include "fault.h"
#include "fileinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void write_file_close_complete(struct rl_cell *cell)
{
    OpObject *op = ((struct write_file_chain *)cell)->op;
    int64_t res = op->chain->write_res;
    int64_t closed = close_outcome(op->fd, cell->result);
    if (closed < 0)
        res = closed; /* as the steps' finally: the close's error comes last */
    op_finish(op, res);
}

/* Closes the file, then finishes the op with res (the close's error first). */
static void write_file_close(OpObject *op, int64_t res)
{
    EngineObject *engine = op->engine;
    op->chain->write_res = res;
    if (engine->shutting_down) { /* nobody will see the result: the descriptor is closed here */
        close(op->fd);
        op_finish(op, res);
        return;
    }
    rl_nowait_forget(&engine->nowait, op->fd);
    op->chain->cell.on_complete = write_file_close_complete;
    /* In a worker, as every close of a file written to: its release may
     * wait for the device on ext4 (close_fd, python/ringlet/_fdio.py). */
    if (rl_op_close_offloaded(&engine->ring, &op->chain->cell, op->fd) < 0) {
        close(op->fd); /* no SQE to be had */
        op_finish(op, res);
        return;
    }
    rl_ring_submit(&engine->ring);
}

void write_file_write_done(OpObject *op, int64_t res)
{
    write_file_close(op, res < 0 ? res : (int64_t)op->done);
}

static void write_file_open_complete(struct rl_cell *cell)
{
    OpObject *op = ((struct write_file_chain *)cell)->op;
    int64_t res = cell->result;
    if (res >= 0 && (op->engine->shutting_down || op->abandoned || op->stopping)) {
        close((int)res); /* the caller gave up before the write began: nothing is written */
        res = -ECANCELED;
    }
    if (res < 0) {
        op_finish(op, res); /* the open's error names the file */
        return;
    }
    op->fd = (int)res;
    Py_CLEAR(op->filename); /* errors of the write and the close name no file, as os.write's and os.close's */
    int queued = op_queue_io(op);
    if (queued < 0) {
        write_file_close(op, queued);
        return;
    }
    rl_ring_submit(&op->engine->ring);
}

/* ---- the chain in the kernel (engine->side) ----------------------------
 * On the main ring (DEFER_TASKRUN) each step's completion waits for the
 * loop's thread, which issues the next: the open's end, the write and the
 * close's start of writeback are two wake-ups of the loop and one of a
 * worker apart, while the next write_file's open waits for that writeback.
 * On a ring without DEFER_TASKRUN, one kernel worker runs open (into a
 * fixed-file slot), write and close back to back as a linked chain, and the
 * loop is woken at the end.  A short or failed write breaks the chain (the
 * close is cancelled): the rest goes step by step on the same slot.  The
 * close of a slot does not call the file's flush (where NFS or FUSE report
 * write errors, and a device's driver may act): write_file
 * (python/ringlet/_oneshot.py) asks for a chain only in a directory where a
 * file it wrote in steps closed at once (Engine._closes_at_once, below: the
 * test read_file makes too).
 * The file's last release runs in the loop's thread, as task work once it
 * wakes (traced: 197 of 200 64 KiB rewrites): the write request holds the
 * slot's file until it is freed, and io_uring frees a worker's requests in
 * the submitter's task work, whatever closes the slot.  On ext4 the release
 * of a file O_TRUNC truncated from non-empty starts its writeback
 * (auto_da_alloc: block allocation, which may read a bitmap, and bio
 * submission, which may sleep for a request tag): a wait for a device the
 * loop must never make.  So a chain that may truncate such a file starts the
 * writeback itself, in the worker, with a linked SYNC_FILE_RANGE_WRITE
 * between the write and the close: the release then finds nothing left to
 * allocate.  A new file's release starts none (the built-in close leaves it
 * to the flusher, and the same step made new files 13-32% slower): a path
 * write_file has not written yet is tried first with O_CREAT|O_EXCL and no
 * such step, and on any error of that open (mostly EEXIST) the O_TRUNC chain
 * follows (side_step).
 * A new file's chain costs its caller two hand-offs between threads: the
 * submit wakes a worker, the completion wakes the loop.  On a worker on the
 * loop's own CPU a 64 KiB file on tmpfs took 42 us against 27 for open().
 * write(); on the other, idle, CPU (where the scheduler puts it whenever that
 * one is idle) ~120 us, most of it the two wake-ups.  So the open's and the
 * write's successes post no completion (IOSQE_CQE_SKIP_SUCCESS): each one a
 * worker posts signals the eventfd and may wake the loop once more
 * (nocliff, 64 KiB new files: 0.83x sync against 0.75x without the skips).
 * Rewrites pay a little (1.04x against 1.10x): no longer woken at the
 * write's end, the loop frees the write request after the close, so the
 * file's last release, ext4's writeback start, runs there (98% of the files
 * against 85%), not in the worker.  A
 * COOP_TASKRUN chain ring (the requests' frees left for the loop's next
 * system call) measured nothing on top of that and was not kept: its task
 * work still wakes a thread asleep in epoll (TWA_SIGNAL_NO_IPI spares only
 * the interrupt of a running one), so the frees of the open and the write
 * wake the loop mid-chain as before (traced, 64 KiB new files: 2.6 loop
 * wake-ups a file with it, 1.7 without). */

#define SIDE_SLOTS 32u

/* Set up at the engine's first chained write_file: an engine that writes no
 * whole file holds no second ring. */
static void side_setup(EngineObject *engine)
{
    engine->side_state = -1;
    struct rl_ring *side = &engine->side;
    if (rl_ring_init_plain(side, SIDE_SLOTS * 4, rl_ring_wake_fd(&engine->ring)) < 0)
        return;
    /* LINKED_FILE: a linked write finds the file its open put in the slot. */
    if (!(side->features & IORING_FEAT_LINKED_FILE) || !rl_ring_supports(side, IORING_OP_OPENAT) ||
        !rl_ring_supports(side, IORING_OP_WRITE) || !rl_ring_supports(side, IORING_OP_CLOSE) ||
        !rl_ring_supports(side, IORING_OP_SYNC_FILE_RANGE) ||
        io_uring_register_files_sparse(&side->ring, SIDE_SLOTS) < 0) {
        rl_ring_exit(side);
        return;
    }
    engine->side_free = (uint32_t)((1ull << SIDE_SLOTS) - 1);
    engine->side_state = 1;
}

static void side_step(OpObject *op);

/* The first submission's open and write post no completion when they
 * succeed (IOSQE_CQE_SKIP_SUCCESS), and the requests a failure cancels post
 * none either: the chain's one completion tells how far it went.  Each
 * request it stands for is settled here as done, with the result it had. */
static void side_settle(OpObject *op, struct rl_cell *cell, int32_t result)
{
    rl_ring_settle(&op->engine->side, cell, result);
}

static void side_done_one(OpObject *op)
{
    if (--op->chain->pending == 0)
        side_step(op);
}

static void side_open_complete(struct rl_cell *cell)
{
    struct write_file_chain *chain = (struct write_file_chain *)cell;
    chain->open_res = cell->result;
    if (chain->skipping) { /* the open failed: nothing more comes */
        chain->skipping = 0;
        side_settle(chain->op, &chain->side_write, -ECANCELED);
        side_settle(chain->op, &chain->side_sync, -ECANCELED);
        side_settle(chain->op, &chain->side_close, -ECANCELED);
        chain->pending = 1;
    }
    side_done_one(chain->op);
}

static void side_write_complete(struct rl_cell *cell)
{
    struct write_file_chain *chain = (struct write_file_chain *)((char *)cell - offsetof(struct write_file_chain, side_write));
    OpObject *op = chain->op;
    if (chain->skipping) { /* the write failed or came short: the open had succeeded, the rest was cancelled */
        chain->skipping = 0;
        chain->open_res = 0;
        side_settle(op, &chain->cell, 0);
        side_settle(op, &chain->side_sync, -ECANCELED);
        side_settle(op, &chain->side_close, -ECANCELED);
        chain->pending = 1;
    }
    if (cell->result > 0)
        op->done += (size_t)cell->result;
    chain->write_res = cell->result;
    side_done_one(op);
}

/* The first submission's one completion came after the open and the whole
 * write succeeded: settles them, and other (the step the completion did not
 * come from, which posted nothing) with other_result. */
static void side_all_written(OpObject *op, struct rl_cell *other, int32_t other_result)
{
    struct write_file_chain *chain = op->chain;
    chain->skipping = 0;
    chain->open_res = 0;
    chain->write_res = (int64_t)op->length;
    op->done = op->length;
    side_settle(op, &chain->cell, 0);
    side_settle(op, &chain->side_write, (int32_t)op->length);
    side_settle(op, other, other_result);
    chain->pending = 1;
}

/* The writeback start failed (it posts only then): the open and the write
 * succeeded, the close was cancelled.  Its error is not the call's: data
 * errors are fsync's to report, as open().write() and close() report none. */
static void side_sync_complete(struct rl_cell *cell)
{
    struct write_file_chain *chain = (struct write_file_chain *)((char *)cell - offsetof(struct write_file_chain, side_sync));
    OpObject *op = chain->op;
    if (chain->skipping)
        side_all_written(op, &chain->side_close, -ECANCELED);
    side_done_one(op);
}

static void side_close_complete(struct rl_cell *cell)
{
    struct write_file_chain *chain = (struct write_file_chain *)((char *)cell - offsetof(struct write_file_chain, side_close));
    OpObject *op = chain->op;
    if (chain->skipping) /* the open, the write (all of it) and the writeback start succeeded */
        side_all_written(op, &chain->side_sync, 0);
    if (cell->result != -ECANCELED) { /* -ECANCELED: the write broke the chain, the file is open */
        chain->closed = 1;
        chain->close_res = cell->result;
    }
    side_done_one(op);
}

static int side_start(OpObject *op, const char *path);

/* All completions of the last submission are in: finish, or the next step. */
static void side_step(OpObject *op)
{
    EngineObject *engine = op->engine;
    struct write_file_chain *chain = op->chain;
    if (chain->open_res < 0) { /* nothing was opened: the slot is empty */
        engine->side_free |= 1u << chain->slot;
        if (chain->excl && !engine->shutting_down && !op->abandoned && !op->stopping) {
            /* The O_EXCL open failed (mostly: the file exists): the open
             * write_file makes, O_TRUNC, with its own result or error. */
            chain->excl = 0;
            if (side_start(op, PyBytes_AS_STRING(op->obj)) == 0)
                return;
            chain->on_side = 0;
            chain->cell.on_complete = write_file_open_complete;
            int queued = rl_op_openat(&engine->ring, &chain->cell, AT_FDCWD, PyBytes_AS_STRING(op->obj),
                                      O_WRONLY | O_CREAT | O_TRUNC, 0666);
            if (queued == 0) {
                rl_ring_submit(&engine->ring);
                return;
            }
            chain->open_res = queued;
        }
        op_finish(op, chain->open_res); /* the open's error names the file */
        return;
    }
    Py_CLEAR(op->filename); /* errors of the write and the close name no file, as os.write's and os.close's */
    int64_t res = chain->write_res < 0 ? chain->write_res : (int64_t)op->done;
    if (chain->closed) {
        engine->side_free |= 1u << chain->slot;
        if (res >= 0 && op->done < op->length)
            res = -EIO; /* closed after a short write: never, a short write breaks the chain */
        op_finish(op, chain->close_res < 0 ? chain->close_res : res);
        return;
    }
    if (engine->shutting_down) { /* the ring's exit closes the slot's file */
        op_finish(op, res);
        return;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->side.ring);
    if (sqe == NULL && rl_ring_submit(&engine->side) >= 0)
        sqe = io_uring_get_sqe(&engine->side.ring);
    if (sqe == NULL) { /* cannot be: one SQE per chain in flight at most here, 4 a chain in the SQ */
        op_finish(op, -ENOMEM);
        return;
    }
    if (res >= 0 && op->done < op->length && !op->abandoned && chain->write_res > 0) {
        /* A short write is continued until all is written or an error comes. */
        size_t left = op->length - op->done;
        io_uring_prep_write(sqe, chain->slot, op->u.view.buf + op->done, (unsigned)left, op->done);
        sqe->flags |= IOSQE_FIXED_FILE;
        rl_ring_arm(&engine->side, sqe, &chain->side_write);
    } else {
        if (res >= 0 && op->done < op->length)
            chain->write_res = -EIO; /* a write of 0 bytes (or nobody waits any more): as the steps' */
        io_uring_prep_close_direct(sqe, chain->slot);
        /* In a worker: submitted alone, the close would release the file on
         * the loop's thread, which may wait for the device (close_fd). */
        sqe->flags |= IOSQE_ASYNC;
        rl_ring_arm(&engine->side, sqe, &chain->side_close);
    }
    chain->pending = 1;
    rl_ring_submit(&engine->side);
}

/* Queues the chain on engine->side: 0, or -1 when it cannot be had now (the
 * steps on the main ring then). */
static int side_start(OpObject *op, const char *path)
{
    EngineObject *engine = op->engine;
    /* Injected faults act on the steps' completions, which the kernel's links never see. */
    if (rl_fault_armed() || op->length > RL_MAX_RW)
        return -1;
    if (engine->side_state == 0)
        side_setup(engine);
    if (engine->side_state < 0 || engine->side_free == 0)
        return -1;
    struct rl_ring *side = &engine->side;
    if (io_uring_sq_space_left(&side->ring) < 4)
        return -1;
    /* A direct open takes no descriptor: when the process has none left, the
     * steps' open fails with EMFILE as open() does. */
    int spare = fcntl(side->wake_fd, F_DUPFD_CLOEXEC, 0);
    if (spare < 0)
        return -1;
    close(spare);
    struct write_file_chain *chain = op->chain;
    unsigned slot = (unsigned)__builtin_ctz(engine->side_free);
    engine->side_free &= ~(1u << slot);
    chain->on_side = 1;
    chain->slot = (uint8_t)slot;
    chain->open_res = chain->close_res = 0;
    chain->write_res = 0;
    chain->closed = 0;
    chain->pending = chain->excl ? 3 : 4;
    chain->cell.on_complete = side_open_complete;
    chain->side_write.on_complete = side_write_complete;
    chain->side_sync.on_complete = side_sync_complete;
    chain->side_close.on_complete = side_close_complete;
    /* Where the kernel has CQE_SKIP, the open's, the write's and the
     * writeback start's successes post nothing: each completion a worker
     * posts wakes the loop. */
    unsigned skip = (side->features & IORING_FEAT_CQE_SKIP) ? IOSQE_CQE_SKIP_SUCCESS : 0;
    chain->skipping = skip != 0;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&side->ring);
    /* O_CLOEXEC has no meaning for a slot (and the kernel refuses it there). */
    io_uring_prep_openat_direct(sqe, AT_FDCWD, path, O_WRONLY | O_CREAT | (chain->excl ? O_EXCL : O_TRUNC), 0666, slot);
    sqe->flags |= IOSQE_IO_LINK | IOSQE_ASYNC | skip; /* O_CREAT sends it to a worker anyway */
    rl_ring_arm(side, sqe, &chain->cell);
    sqe = io_uring_get_sqe(&side->ring);
    io_uring_prep_write(sqe, (int)slot, op->u.view.buf, (unsigned)op->length, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | skip;
    rl_ring_arm(side, sqe, &chain->side_write);
    if (!chain->excl) {
        /* The file may have been truncated from non-empty: ext4 then starts
         * its writeback at the last release (auto_da_alloc), and that runs
         * on the loop's thread (see above).  Started here, in the worker,
         * the release finds nothing left to allocate. */
        sqe = io_uring_get_sqe(&side->ring);
        io_uring_prep_sync_file_range(sqe, (int)slot, 0, 0, SYNC_FILE_RANGE_WRITE);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | skip;
        rl_ring_arm(side, sqe, &chain->side_sync);
    }
    sqe = io_uring_get_sqe(&side->ring);
    io_uring_prep_close_direct(sqe, slot);
    rl_ring_arm(side, sqe, &chain->side_close);
    rl_ring_submit(side);
    engine->files_chained++;
    return 0;
}

void write_file_side_drain(EngineObject *engine)
{
    if (engine->side_state <= 0)
        return;
    struct rl_ring *side = &engine->side;
    /* The loop's drain has read the shared eventfd: what arrives after that signals it again. */
    if (rl_ring_kernel_holds(side))
        io_uring_get_events(&side->ring);
    rl_ring_reap(side, UINT32_MAX);
    if (side->exit_pending)
        return;
    if (io_uring_cq_ready(&side->ring))
        eventfd_write(side->wake_fd, 1);
    rl_ring_submit(side);
}

void write_file_cancel(OpObject *op)
{
    rl_ring_cancel(op->chain->on_side ? &op->engine->side : &op->engine->ring, &op->chain->cell);
}

void write_file_stop(OpObject *op)
{
    /* On the chain ring an open that succeeded posts nothing: its cell
     * stays in flight until the chain's completion, and a cancel sent
     * then finds no request of its own (the write's and close's differ). */
    if (op->chain->cell.opcode == IORING_OP_OPENAT && op->chain->cell.state == RL_CELL_IN_FLIGHT) {
        op->stopping = 1;
        write_file_cancel(op);
    }
}

const char engine__write_file_doc[] =
"_write_file(path, data, filename, exclusive=False, /) -> Awaitable[int]\n\n"
"write_file's open (O_WRONLY|O_CREAT|O_TRUNC), write and close as one\n"
"operation: each completion issues the next step.  The awaitable gives\n"
"len(data), or raises the error (an open's carries filename).  Its close\n"
"does not call the file system's flush: for file systems that have none.\n"
"exclusive: the path likely names no file yet; the chain first tries\n"
"O_CREAT|O_EXCL (a new file, whose close starts no writeback), and on\n"
"any error of that open does the O_TRUNC one.";

PyObject *engine__write_file(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "_write_file(path, data, filename, exclusive=False)");
        return NULL;
    }
    PyObject *path = args[0];
    if (path_check(path) < 0 || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_WRITE, "write_file");
    if (op == NULL)
        return NULL;
    if (PyObject_GetBuffer(args[1], &op->u.view, PyBUF_SIMPLE) < 0) {
        op->u.view.obj = NULL; /* the buffer protocol's error, as a built-in file's write() gives it */
        Py_DECREF(op);
        return NULL;
    }
    op->obj = Py_NewRef(path); /* the kernel reads it until the open is done */
    op->filename = Py_NewRef(args[2] != Py_None ? args[2] : path);
    op->offset = 0;
    op->length = (size_t)op->u.view.len;
    op_kernel_io(op, op->u.view.buf, 0); /* align 0: cannot fail */
    op->chain = PyMem_Calloc(1, sizeof *op->chain);
    if (op->chain == NULL) {
        Py_DECREF(op);
        return PyErr_NoMemory();
    }
    op->chain->op = op;
    if (nargs == 4) {
        int excl = PyObject_IsTrue(args[3]);
        if (excl < 0) {
            Py_DECREF(op);
            return NULL;
        }
        op->chain->excl = (uint8_t)excl;
    }
    if (side_start(op, PyBytes_AS_STRING(path)) == 0) {
        op_writes_add(op);
        return op_launch(op, 0, 0);
    }
    op->chain->cell.on_complete = write_file_open_complete;
    int queued = rl_op_openat(&self->ring, &op->chain->cell, AT_FDCWD, PyBytes_AS_STRING(path),
                              O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (queued == 0)
        op_writes_add(op);
    return op_launch(op, queued, 0);
}

const char engine__closes_at_once_doc[] =
"_closes_at_once(fd, /) -> bool\n\n"
"Whether closing fd completes at once, calling no flush: a regular file\n"
"of ext2/3/4, XFS, Btrfs, tmpfs or ramfs (not a device, FUSE, NFS...).\n"
"write_file chains a directory's files once one it wrote there in steps\n"
"said yes; read_file closes a file on the loop thread only then.";

PyObject *engine__closes_at_once(EngineObject *self, PyObject *arg)
{
    (void)self;
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    struct rl_fileinfo info;
    return PyBool_FromLong(rl_fileinfo(fd, &info) == 0 && rl_closes_at_once(fd, &info));
}

void write_file_side_shutdown(EngineObject *engine, int64_t deadline_ns)
{
    if (engine->side_state <= 0)
        return;
    engine->side_state = -1; /* no drain reaps it any more */
    engine_cancel_and_wait(engine, &engine->side, deadline_ns);
    /* Chains still in flight keep their ops (and memory) forever; the kernel
     * cancels them and closes the slots' files on teardown. */
    rl_ring_exit(&engine->side);
}
