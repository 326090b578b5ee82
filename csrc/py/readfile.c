/* read_file at the price of its system calls: Engine._read_file(path,
 * filename) opens, sizes, reads and closes a cached file on the loop thread,
 * trying each step without blocking, and leaves the rest to the ring the
 * moment one would wait:
 *
 *   open   openat2(O_RDONLY | O_NONBLOCK, RESOLVE_CACHED): the path walk
 *          fails with EAGAIN rather than read a directory from the device.
 *          This is the attempt io_uring's own IORING_OP_OPENAT makes inline
 *          (LOOKUP_CACHED, O_NONBLOCK, then O_NONBLOCK cleared), so the
 *          descriptor is the one the ring would have given: a FIFO opens at
 *          once, as through the ring, and is read through the ring.
 *   size   fstat: the in-memory inode.
 *   read   one bytes of the final size, filled by preadv2(RWF_NOWAIT) (see
 *          csrc/nowait.h), then a one-byte read at the end that must say 0.
 *   close  close(2) here only where it completes at once: a regular file
 *          on a file system without flush-on-close (rl_closes_at_once,
 *          csrc/fileinfo.h: ext2/3/4, XFS, Btrfs, tmpfs and ramfs, by
 *          fstatfs magic; the check write_file's chain is chosen by).
 *          FUSE and NFS flush on close and wait for a server: their files,
 *          like every other file system's, go the ring's way.
 *
 * What it returns tells read_file what is left:
 *   bytes     the content, all done (an awaitable of it when the task must
 *             yield first: the loop turn's budget of inline work is spent);
 *             an awaitable of None: yield, then ask again (a large file,
 *             the budget spent);
 *   tuple     (fd, data, parts): a large file being read in parts (below);
 *   int       an open descriptor (blocking again) whose reading would wait,
 *             or that is not a regular file of one of those file systems:
 *             read it to the end and close it through the ring, as always;
 *   None      the open itself would wait (or openat2 is missing): the ring
 *             opens it.
 * Errors of the open (ENOENT, EACCES, ...) are raised as the built-in open
 * raises them. */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"
#include "fault.h"
#include "fileinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static long openat2_cached(const char *path, uint64_t flags)
{
    struct open_how how = {.flags = flags | O_CLOEXEC, .resolve = RESOLVE_CACHED};
    return syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
}

/* Whether the kernel has openat2 with RESOLVE_CACHED (5.12+): asked once, of
 * "/" (always cached), so that an EINVAL of some file's own open later is
 * never taken for the kernel's. */
static int openat2_usable(void)
{
    static int known; /* 0: not asked yet; 1: usable; -1: not */
    if (known == 0) {
        long fd = openat2_cached("/", O_RDONLY | O_DIRECTORY);
        known = fd >= 0 ? 1 : -1;
        if (fd >= 0)
            close((int)fd);
    }
    return known > 0;
}

/* The descriptor, or -errno; -EAGAIN: the ring's turn (the path walk or the
 * open would wait, or something the ring's open should answer itself). */
static int open_cached(const char *path)
{
    long fd = openat2_cached(path, O_RDONLY | O_NONBLOCK);
    if (fd >= 0)
        return (int)fd;
    if (errno == EINTR || errno == EINVAL)
        return -EAGAIN; /* the ring opens it and says what it says (the built-in open retries EINTR) */
    return -errno;
}

/* The descriptor for read_file's ring path: blocking again, as the ring's open leaves it. */
static PyObject *hand_over(int fd)
{
    if (fcntl(fd, F_SETFL, 0) < 0) {
        int err = errno;
        close(fd); /* not reachable for a descriptor just opened; closing it is what is left */
        PyObject *exc = ringlet_oserror(err, NULL);
        if (exc)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(exc);
        return NULL;
    }
    PyObject *r = PyLong_FromLong(fd);
    if (r == NULL)
        close(fd);
    return r;
}

/* Reads the whole regular file of size bytes from the page cache: its
 * bytes, or NULL without an exception when a read would wait (or the file
 * grew meanwhile), or NULL with MemoryError.
 * At 1 MiB the time is the kernel's copy, which runs 10-20% longer when data
 * is not 64-byte aligned as the page cache's pages are (48-51 against 55-60
 * us a read, open().read()'s alike); only the offset between source and
 * destination counts, so no split of the read helps.  Where the bytes lands
 * is malloc's choice (the process's heap history), not to be chosen within
 * PyObject_Malloc's rules: a ratio between two processes moves with the
 * places drawn (benchmarks/nocliff.py has both take turns in one process). */
static PyObject *read_cached(EngineObject *self, int fd, Py_ssize_t size)
{
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL)
        return NULL;
    int64_t n = size ? rl_read_nowait(&self->nowait, fd, PyBytes_AS_STRING(data), (size_t)size, 0) : 0;
    if (n < 0) {
        Py_DECREF(data);
        return NULL;
    }
    if (n == size) {
        /* The size was right when fstat said it: a read at the end proves it still is. */
        char probe;
        struct iovec iov = {&probe, 1};
        if (preadv2(fd, &iov, 1, (off_t)size, RWF_NOWAIT) != 0) {
            Py_DECREF(data);
            return NULL; /* grew (or would wait): the ring reads it again from the start */
        }
    } else if (_PyBytes_Resize(&data, (Py_ssize_t)n) < 0) { /* shrank: n is where a read said 0 */
        return NULL;
    }
    return data;
}

/* ---- a large file: read in parts, on more than one core ------------------ */

/* From this size, a cached file is read in RL_WHOLE_PARTS parts at once: all
 * but the last queued for the kernel's workers (IOSQE_ASYNC), the last read
 * by the loop thread meanwhile, which then takes back the parts no worker
 * has started (busy cores) and reads them too.  So the copies (and the page
 * faults of the new memory) run on as many cores as are free, and never
 * wait for a worker to be scheduled.  Below this size, waking a worker
 * costs more than it saves: while the submitting thread is busy, an
 * IOSQE_ASYNC no-op completes some 60 us later (median, a VM's other core
 * woken), about a 1 MiB copy.  Two parts from 1 MiB measured 4,970 files/s
 * against 7,710 read whole; at 2 MiB 3,330-3,960 against 4,810-4,970. */
#define RL_WHOLE_PARALLEL_MIN (4u << 20)
#define RL_WHOLE_PARTS 2 /* one worker and the loop thread: 2 cores here (4 parts measured no better) */
/* The loop thread reads at most this much per system call: between two, the
 * kernel runs the work it queued for this thread, such as starting a worker
 * for the parts (io-wq creates its workers that way). */
#define RL_WHOLE_CHUNK (2u << 20)

/* A readinto op for data[offset, offset + len): the op's view holds data,
 * so the memory stays alive until the completion, cancel or not.  Submitted
 * at once; a future of the count.  *held: a reference to the op, for
 * steal_part (NULL when the op could not be made). */
static PyObject *launch_part(EngineObject *self, int fd, PyObject *data, size_t offset, size_t len, int offload,
                             OpObject **held)
{
    *held = NULL;
    OpObject *op = op_new(self, OP_READINTO, "read");
    if (op == NULL)
        return NULL;
    if (PyBuffer_FillInfo(&op->u.view, data, PyBytes_AS_STRING(data) + offset, (Py_ssize_t)len, 0,
                          PyBUF_WRITABLE) < 0) {
        op->u.view.obj = NULL;
        Py_DECREF(op);
        return NULL;
    }
    op->fd = fd;
    op->offset = (int64_t)offset;
    op->length = len;
    if (op_kernel_io(op, op->u.view.buf, 0) < 0) {
        Py_DECREF(op);
        return NULL;
    }
    int queued = op_hold_fd(op);
    if (queued == 0)
        queued = offload ? rl_op_read_offloaded(&self->ring, &op->cell, fd, op->io.buf, (unsigned)len, op->offset)
                         : rl_op_read(&self->ring, &op->cell, fd, op->io.buf, (unsigned)len, op->offset);
    Py_INCREF(op);
    PyObject *future = op_launch(op, queued, 1);
    if (future == NULL)
        Py_CLEAR(op);
    *held = op;
    return future;
}

/* Appends to parts (at *slot) what reading data[offset, offset + len) on
 * the loop thread gives: the count the page cache gave at once, and for the
 * rest, if any, the future of a ring read (the kernel may give a large read
 * in part and then refuse: what it gave is kept).  An item that cannot be
 * made is None: the counts fall short, and read_file reads the file again. */
static void read_here(EngineObject *self, int fd, PyObject *data, size_t offset, size_t len, PyObject *parts,
                      Py_ssize_t *slot)
{
    size_t got = 0;
    int ended = 0;
    while (got < len) {
        size_t want = len - got < RL_WHOLE_CHUNK ? len - got : RL_WHOLE_CHUNK;
        struct iovec iov = {PyBytes_AS_STRING(data) + offset + got, want};
        ssize_t n = preadv2(fd, &iov, 1, (off_t)(offset + got), RWF_NOWAIT);
        if (n <= 0) {
            ended = n == 0; /* the file shrank: the counts fall short */
            break;
        }
        got += (size_t)n;
    }
    if (got == len) { /* one read completed without the ring, as Engine._pread counts it */
        self->nowait.hits++;
        engine_count_nowait(self);
    }
    PyObject *count = PyLong_FromSize_t(got);
    if (count == NULL)
        PyErr_Clear();
    PyList_SetItem(parts, (*slot)++, count ? count : Py_NewRef(Py_None));
    if (got < len && !ended) {
        OpObject *held;
        PyObject *future = launch_part(self, fd, data, offset + got, len - got, 0, &held);
        Py_XDECREF(held);
        if (future == NULL)
            PyErr_Clear();
        PyList_SetItem(parts, (*slot)++, future ? future : Py_NewRef(Py_None));
    }
}

/* The loop thread is done with its own part and a worker has not started
 * part i (the cores are busy elsewhere): take it back and read it here
 * rather than wait for a worker to be scheduled.  Its item in parts becomes
 * None (a forgotten future's place) and read_here appends its own. */
static void steal_part(EngineObject *self, int fd, PyObject *data, PyObject *parts, Py_ssize_t i, OpObject *op,
                       Py_ssize_t *slot)
{
    if (!rl_ring_cancel_unstarted(&self->ring, &op->cell))
        return; /* it runs: wait for it */
    op->abandoned = 1; /* its completion (-ECANCELED) is dropped; its future is forgotten */
    rl_ring_drain(&self->ring, UINT32_MAX); /* its completion, if the kernel has it ready already */
    PyList_SetItem(parts, i, Py_NewRef(Py_None));
    read_here(self, fd, data, (size_t)op->offset, op->length, parts, slot);
}

/* (fd, data, parts) for read_file to finish: each part is the future of a
 * ring read's count, or a count read on the loop thread, or None (nothing,
 * or a part that could not be launched: the counts then fall short of the
 * size, as when the file shrank, and read_file reads it again through the
 * ring).  read_file waits for every part before it closes fd: a read still
 * queued for a worker looks its descriptor up when it starts.  fd is
 * blocking again.  NULL with an exception only before any read is launched
 * (fd closed). */
static PyObject *read_in_parts(EngineObject *self, int fd, size_t size)
{
    size_t part = (size / RL_WHOLE_PARTS + 4095) & ~(size_t)4095;
    size_t last = part * (RL_WHOLE_PARTS - 1);
    /* Everything that can fail is made before the first read is launched:
     * room for each part's future, and for a count and a future each where
     * the loop thread reads. */
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    PyObject *parts = PyList_New(3 * RL_WHOLE_PARTS);
    PyObject *fd_obj = PyLong_FromLong(fd);
    PyObject *result = PyTuple_New(3);
    if (data == NULL || parts == NULL || fd_obj == NULL || result == NULL) {
        Py_XDECREF(data);
        Py_XDECREF(parts);
        Py_XDECREF(fd_obj);
        Py_XDECREF(result);
        close(fd);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < 3 * RL_WHOLE_PARTS; k++)
        PyList_SET_ITEM(parts, k, Py_NewRef(Py_None));
    OpObject *workers[RL_WHOLE_PARTS - 1];
    Py_ssize_t slot = 0;
    for (size_t offset = 0; offset < last; offset += part, slot++) {
        PyObject *future = launch_part(self, fd, data, offset, part, 1, &workers[slot]);
        if (future == NULL)
            PyErr_Clear(); /* this part stays None */
        else
            PyList_SetItem(parts, slot, future);
    }
    Py_ssize_t launched = slot;
    /* The loop thread's part, while the workers copy theirs; through the
     * ring (a worker too) once the loop turn's budget of inline work is spent. */
    if (loop_must_yield(self)) {
        OpObject *held;
        PyObject *future = launch_part(self, fd, data, last, size - last, 1, &held);
        Py_XDECREF(held);
        if (future == NULL)
            PyErr_Clear();
        else
            PyList_SetItem(parts, slot, future);
        for (Py_ssize_t k = 0; k < launched; k++)
            Py_XDECREF(workers[k]);
    } else {
        read_here(self, fd, data, last, size - last, parts, &slot);
        /* The workers take the parts in order: the last ones are the likeliest not started. */
        for (Py_ssize_t k = launched - 1; k >= 0; k--) {
            if (workers[k])
                steal_part(self, fd, data, parts, k, workers[k], &slot);
            Py_XDECREF(workers[k]);
        }
    }
    PyTuple_SET_ITEM(result, 0, fd_obj);
    PyTuple_SET_ITEM(result, 1, data);
    PyTuple_SET_ITEM(result, 2, parts);
    return result;
}

/* A trace record for one step done here, as the ring's op of that name
 * would have: inline, and without the ring (tracing on only). */
static void trace_step(EngineObject *self, const char *name, int fd, int64_t started, int64_t ended, int64_t result)
{
    OpObject *op = op_new(self, OP_NONE, name);
    if (op == NULL || op->times == NULL) {
        Py_XDECREF(op);
        PyErr_Clear(); /* a trace lost to MemoryError: the step itself succeeded */
        return;
    }
    struct op_times *t = op->times;
    op->fd = fd;
    t->submitted = started;
    t->returned = t->reaped = t->resolved = t->resumed = ended;
    t->submit_thread = t->reap_thread = PyThread_get_thread_ident();
    t->inline_ = t->nowait = 1;
    t->result = result;
    op_emit_trace(op);
    Py_DECREF(op);
}

const char engine__read_file_doc[] =
    "_read_file(path, filename, /) -> bytes | Awaitable[bytes | None] | tuple | int | None\n\n"
    "read_file without the ring when nothing waits: the content (or an\n"
    "awaitable of it when the task must yield first; of None: yield, then ask\n"
    "again); a large file: (fd, data, parts) being read in parts, each part a\n"
    "future of its count, a count, or None; else an open descriptor to read\n"
    "and close through the ring; else None: open it through the ring.\n"
    "Errors of the open are raised with filename.";

PyObject *engine__read_file(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_read_file(path, filename)");
        return NULL;
    }
    if (path_check(args[0]) < 0 || engine_check(self) < 0)
        return NULL;
    /* A fault test aims at the ring's paths (test builds only). */
    if (rl_fault_armed() || self->nowait.unsupported || !openat2_usable())
        Py_RETURN_NONE;
    int64_t started = self->tracer ? rl_now_ns() : 0;
    int fd = open_cached(PyBytes_AS_STRING(args[0]));
    int64_t opened = self->tracer ? rl_now_ns() : 0;
    if (fd == -EAGAIN)
        Py_RETURN_NONE;
    if (fd < 0) {
        PyObject *exc = ringlet_oserror(-fd, args[1]);
        if (exc)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(exc);
        return NULL;
    }
    struct rl_fileinfo st;
    if (rl_fileinfo(fd, &st) < 0 || !st.regular || st.size > RL_MAX_RW ||
        !rl_nowait_enabled(&self->nowait, fd))
        return hand_over(fd); /* a directory, FIFO, /proc file...: as through the ring */
    if (st.size >= RL_WHOLE_PARALLEL_MIN) {
        if (loop_must_yield(self) && rl_closes_at_once(fd, &st)) {
            /* The loop turn's budget is spent (freeing the last large result
             * can spend it): yield first and ask again, so that the loop
             * thread can read its part then, rather than leave it to a
             * worker (the kernel's workers take the parts one at a time). */
            close(fd);
            rl_nowait_forget(&self->nowait, fd);
            return outcome_after_a_turn(self->state, Py_None);
        }
        if (fcntl(fd, F_SETFL, 0) < 0) /* the ring's reads see the descriptor as its open leaves it */
            return hand_over(fd);
        return read_in_parts(self, fd, (size_t)st.size);
    }
    /* A large file once another call found the loop turn's budget spent
     * goes to the ring (the kernel's workers).  Only then: the clock read
     * here would find it spent in about one call of 70 by a lone task (the
     * end of the previous call's check to here), which would then wait
     * ~60 us for a worker; read here, it overshoots the budget by one file
     * (less than RL_WHOLE_PARALLEL_MIN) and yields below, which sets the flag. */
    if (!rl_closes_at_once(fd, &st) || (st.size >= RL_OFFLOAD_MIN && loop_budget_found_spent(self)))
        return hand_over(fd); /* FUSE, NFS...; or a large read once the loop turn's budget is spent */
    PyObject *data = read_cached(self, fd, (Py_ssize_t)st.size);
    int64_t was_read = self->tracer ? rl_now_ns() : 0;
    if (data == NULL) {
        if (PyErr_Occurred()) {
            close(fd);
            return NULL;
        }
        return hand_over(fd);
    }
    if (close(fd) < 0 && errno != EINTR) { /* EINTR: closed all the same (Linux) */
        PyObject *exc = ringlet_oserror(errno, NULL);
        if (exc)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(exc);
        Py_DECREF(data);
        return NULL;
    }
    rl_nowait_forget(&self->nowait, fd);
    /* One operation, completed without the ring (its reads count in completed_nowait). */
    engine_count_nowait(self);
    self->files_nowait++;
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (self->tracer) { /* the steps the ring's way would have shown: open, read, close */
        int64_t closed = rl_now_ns();
        trace_step(self, "open", fd, started, opened, fd);
        trace_step(self, "read", fd, opened, was_read, size);
        trace_step(self, "close", fd, was_read, closed, 0);
    }
    /* The task yields once the loop turn's budget of inline work is spent (a
     * whole file is one call: no per-read yield, which would cost a loop turn
     * per file). */
    if (loop_must_yield(self)) {
        PyObject *o = outcome_after_a_turn(self->state, data);
        Py_DECREF(data);
        return o;
    }
    return data;
}
