/* The operations an Engine submits, one method each: parse the arguments
 * (args.c), make the Op and point the kernel at its memory (op.c, op_io.c),
 * queue its SQE (ops.c) and launch it.  The Engine type itself, with its
 * method table, is in engine.c. */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

const char engine_lazy_doc[] =
"Like the method without the underscore, for ringlet's own coroutines: when\n"
"the kernel completed inline, no future is made -- it returns an awaitable\n"
"holding the result, or raises the error at once.  A positional read still\n"
"pending returns the operation itself, awaited as a coroutine that is its own\n"
"future (no asyncio.Future): cancelling it, throwing into it (a cancelled\n"
"task) or closing it cancels the read.";

const char engine_read_doc[] =
"read(fd, size, offset=-1, align=0, /) -> Future[bytes]\n\n"
"Read up to size bytes at offset (-1: the file position).  The result is\n"
"shorter only at end of file.  align > 0: the descriptor is O_DIRECT and\n"
"the kernel reads an aligned range into aligned memory, of which the part\n"
"asked for is returned (any offset and size work).";

/* The public read methods take descriptors their caller manages: since the
 * last call the number may have been closed (os.close) and reused for another
 * file, perhaps an O_DIRECT one, where the non-blocking attempt would read
 * from the device on the loop's thread.  So what is known of the number is
 * looked at anew (one fcntl).  ringlet's own files (opened by the engine, or
 * handed over through _adopt) keep what is known. */
static void forget_callers_descriptor(EngineObject *self, int fd, int want_future)
{
    if (want_future)
        rl_nowait_forget(&self->nowait, fd);
}

static PyObject *engine_read_impl(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, int want_future)
{
    int fd;
    int64_t offset;
    unsigned align;
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "read(fd, size, offset=-1, align=0)");
        return NULL;
    }
    if (parse_int(args[0], "fd", &fd) < 0)
        return NULL;
    Py_ssize_t size;
    if (parse_ssize(args[1], &size) < 0)
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    if (parse_offset_align(args, nargs, 2, &offset, &align) < 0 || engine_check(self) < 0)
        return NULL;
    if ((size_t)size > (align ? RL_MAX_DIRECT : RL_MAX_RW))
        size = align ? RL_MAX_DIRECT : RL_MAX_RW;
    OpObject *op = op_new(self, OP_READ, "read");
    if (op == NULL)
        return NULL;
    op->fd = fd;
    op->offset = offset;
    op->length = (size_t)size;
    op->obj = engine_read_bytes(self, size);
    if (op->obj == NULL || op_take_position(op, align) < 0 ||
        op_kernel_io(op, PyBytes_AS_STRING(op->obj), align) < 0) {
        Py_DECREF(op);
        return NULL;
    }
    op->offload = op_may_offload(op);
    if (size == 0)
        return op_finish_now(op, rl_read_nothing(fd, op->offset), want_future);
    forget_callers_descriptor(self, fd, want_future);
    int64_t cached = op_try_nowait(op);
    if (cached >= 0)
        return op_finish_now(op, cached, want_future);
    return op_launch(op, op_hold_and_queue_io(op), want_future);
}

PyObject *engine_read(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_read_impl(self, args, nargs, 1);
}

PyObject *engine__read(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_read_impl(self, args, nargs, 0);
}

/* readinto and write share this: the caller's buffer is held until the completion. */
static PyObject *engine_buffer_op(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, int kind,
                                  int want_future)
{
    int fd;
    int64_t offset;
    unsigned align;
    const char *usage = kind == OP_WRITE ? "write(fd, data, offset=-1, align=0)"
                                         : "readinto(fd, buffer, offset=-1, align=0)";
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (parse_int(args[0], "fd", &fd) < 0 || parse_offset_align(args, nargs, 2, &offset, &align) < 0 ||
        engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, kind, kind == OP_WRITE ? "write" : "readinto");
    if (op == NULL)
        return NULL;
    int flags = kind == OP_WRITE ? PyBUF_SIMPLE : PyBUF_WRITABLE;
    if (PyObject_GetBuffer(args[1], &op->u.view, flags) < 0) {
        op->u.view.obj = NULL;
        Py_DECREF(op);
        /* As built-in files say it: a write gives the buffer protocol's own
         * error (BufferError where the buffer is not contiguous), a readinto
         * a TypeError whatever the reason. */
        if (kind != OP_WRITE) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "readinto() argument must be read-write bytes-like object, not %.100s",
                         args[1] == Py_None ? "None" : Py_TYPE(args[1])->tp_name);
        }
        return NULL;
    }
    op->fd = fd;
    op->offset = offset;
    op->length = (size_t)op->u.view.len;
    size_t cap = align ? RL_MAX_DIRECT : RL_MAX_RW;
    if (kind != OP_WRITE && op->length > cap)
        op->length = cap; /* a read may be short; a write goes on past the cap (op_queue_io) */
    if (op_take_position(op, align) < 0 || op_kernel_io(op, op->u.view.buf, align) < 0) {
        Py_DECREF(op);
        return NULL;
    }
    if (op->length == 0 && kind != OP_WRITE)
        return op_finish_now(op, rl_read_nothing(fd, op->offset), want_future);
    op->offload = op_may_offload(op);
    if (kind != OP_WRITE)
        forget_callers_descriptor(self, fd, want_future);
    int64_t cached = kind == OP_WRITE ? -1 : op_try_nowait(op);
    if (cached >= 0)
        return op_finish_now(op, cached, want_future);
    int queued = op_hold_and_queue_io(op);
    if (queued == 0 && kind == OP_WRITE)
        op_writes_add(op);
    return op_launch(op, queued, want_future);
}

const char engine_readinto_doc[] =
"readinto(fd, buffer, offset=-1, align=0, /) -> Future[int]\n\n"
"Read into a writable, contiguous buffer; the buffer is held (cannot be\n"
"resized) until the kernel has completed, even if the wait is cancelled.\n"
"align > 0: O_DIRECT, as for read().";

PyObject *engine_readinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_buffer_op(self, args, nargs, OP_READINTO, 1);
}

PyObject *engine__readinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_buffer_op(self, args, nargs, OP_READINTO, 0);
}

const char engine_write_doc[] =
"write(fd, data, offset=-1, align=0, /) -> Future[int]\n\n"
"Write all of data (a contiguous bytes-like object) at offset (-1: the file\n"
"position).  Short writes are continued; the result is len(data) or an\n"
"OSError.  align > 0: O_DIRECT; offset and length must be multiples of\n"
"align, and data is copied into aligned memory (data is free at once).";

PyObject *engine_write(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_buffer_op(self, args, nargs, OP_WRITE, 1);
}

PyObject *engine__write(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_buffer_op(self, args, nargs, OP_WRITE, 0);
}

const char engine_open_doc[] =
"open(path, flags, mode=0o666, filename=None) -> Future[int]\n\n"
"openat(2) through the ring; path is bytes.  The result is a descriptor.\n"
"OSError carries filename (default: path).  If the wait is cancelled and the\n"
"open still succeeds, the descriptor is closed.";

static PyObject *engine_open_impl(EngineObject *self, PyObject *args, PyObject *kwargs, int want_future)
{
    static char *kwlist[] = {"path", "flags", "mode", "filename", NULL};
    PyObject *path, *filename = NULL;
    int flags, mode = 0666;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oi|iO:open", kwlist, &path, &flags, &mode, &filename))
        return NULL;
    if (path_check(path) < 0 || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_OPEN, "open");
    if (op == NULL)
        return NULL;
    op->obj = Py_NewRef(path);
    op->filename = Py_NewRef(filename ? filename : path);
    return op_launch(op, rl_op_openat(&self->ring, &op->cell, AT_FDCWD, PyBytes_AS_STRING(path), flags,
                                      (mode_t)mode), want_future);
}

PyObject *engine_open(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    return engine_open_impl(self, args, kwargs, 1);
}

PyObject *engine__open(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    return engine_open_impl(self, args, kwargs, 0);
}

const char engine_close_doc[] =
"close(fd, /) -> Future[None]\n\n"
"close(2) through the ring, once the reads and writes in flight that will\n"
"use fd's number again are over (a write being continued, a read at the file\n"
"position or queued for the kernel's workers): the number is not given to\n"
"another file before.  A stream's read does not hold it up.  Cancelling the\n"
"wait does not stop the close.";

const char engine__close_doc[] =
"_close(fd, release_in_worker=False, /) -> Awaitable[None]\n\n"
"close(2) through the ring as close() (it waits for the same work), for\n"
"ringlet's own coroutines (no future when it completed inline).\n"
"release_in_worker: the close runs in a kernel worker, and with it the\n"
"file's last release -- for a file opened for writing, whose release may\n"
"wait for the device on ext4 (see close_fd).";

static void close_complete(struct rl_cell *cell)
{
    OpObject *op = OP_FROM_CELL(cell);
    op_finish(op, close_outcome(op->fd, cell->result));
}

static PyObject *engine_close_impl(EngineObject *self, PyObject *arg, int want_future, int release_in_worker)
{
    int fd;
    if (parse_int(arg, "fd", &fd) < 0 || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_NONE, "close");
    if (op == NULL)
        return NULL;
    op->fd = fd;
    op->cell.on_complete = close_complete;
    op->close_in_worker = (uint8_t)release_in_worker;
    rl_nowait_forget(&self->nowait, fd);
    return op_launch(op, engine_fd_close_queue(op), want_future);
}

PyObject *engine_close(EngineObject *self, PyObject *arg) { return engine_close_impl(self, arg, 1, 0); }

PyObject *engine__close(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 && nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_close(fd, release_in_worker=False)");
        return NULL;
    }
    int release_in_worker = nargs == 2 ? PyObject_IsTrue(args[1]) : 0;
    if (release_in_worker < 0)
        return NULL;
    return engine_close_impl(self, args[0], 0, release_in_worker);
}

const char engine__adopt_doc[] =
"_adopt(fd, /) -> None\n\n"
"A descriptor ringlet's files use but the engine did not open (ringlet.open(fd),\n"
"an opener): its number may have named another file before, so what was known\n"
"of it (whether the page cache may be tried without blocking) is dropped.";

PyObject *engine__adopt(EngineObject *self, PyObject *arg)
{
    int fd;
    if (parse_int(arg, "fd", &fd) < 0)
        return NULL;
    rl_nowait_forget(&self->nowait, fd);
    Py_RETURN_NONE;
}

const char engine_fsync_doc[] =
"fsync(fd, datasync=False, /) -> Future[None]\n\nfsync(2), or fdatasync(2) when datasync is true.";

PyObject *engine_fsync(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, datasync = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "fsync(fd, datasync=False)");
        return NULL;
    }
    if (parse_int(args[0], "fd", &fd) < 0)
        return NULL;
    if (nargs == 2 && (datasync = PyObject_IsTrue(args[1])) < 0)
        return NULL;
    if (engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_NONE, "fsync");
    if (op == NULL)
        return NULL;
    op->fd = fd;
    return op_launch(op, rl_op_fsync(&self->ring, &op->cell, fd, datasync), 1);
}

const char engine_statx_doc[] =
"statx(target, filename=None, follow_symlinks=True) -> Future[os.stat_result]\n\n"
"statx(2) through the ring: target is a descriptor (int) or a path (bytes).";

PyObject *engine_statx(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"target", "filename", "follow_symlinks", NULL};
    PyObject *target, *filename = NULL;
    int fd = AT_FDCWD, follow = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Op:statx", kwlist, &target, &filename, &follow))
        return NULL;
    if (PyLong_Check(target)) {
        if (parse_int(target, "fd", &fd) < 0)
            return NULL;
    } else if (path_check(target) < 0) {
        return NULL;
    }
    if (engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_STATX, "statx");
    if (op == NULL)
        return NULL;
    op->obj = PyLong_Check(target) ? PyBytes_FromStringAndSize("", 0) : Py_NewRef(target);
    op->u.stx = PyMem_Calloc(1, sizeof(struct statx));
    if (op->obj == NULL || op->u.stx == NULL) {
        Py_DECREF(op);
        return PyErr_NoMemory();
    }
    op->fd = fd;
    if (filename || !PyLong_Check(target))
        op->filename = Py_NewRef(filename ? filename : target);
    int flags = (follow ? 0 : AT_SYMLINK_NOFOLLOW) | (PyLong_Check(target) ? AT_EMPTY_PATH : 0);
    return op_launch(op, rl_op_statx(&self->ring, &op->cell, fd, PyBytes_AS_STRING(op->obj), flags,
                                         op->u.stx), 1);
}

/* The common part of the path operations: paths checked, op made. */
static OpObject *path_op_new(EngineObject *self, const char *name, PyObject *path, PyObject *path2,
                             PyObject *filename, PyObject *filename2)
{
    if (path_check(path) < 0 || (path2 && path_check(path2) < 0) || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_NONE, name);
    if (op == NULL)
        return NULL;
    op->obj = Py_NewRef(path);
    op->obj2 = Py_XNewRef(path2);
    op->filename = Py_NewRef(filename ? filename : path);
    if (path2)
        op->filename2 = Py_NewRef(filename2 ? filename2 : path2);
    return op;
}

const char engine_rename_doc[] =
"rename(src, dst, flags=0, filename=None, filename2=None) -> Future[None]\n\n"
"renameat2(2) through the ring (flags: RENAME_NOREPLACE=1, RENAME_EXCHANGE=2).";

PyObject *engine_rename(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"src", "dst", "flags", "filename", "filename2", NULL};
    PyObject *src, *dst, *fn = NULL, *fn2 = NULL, *flags_obj = NULL;
    unsigned flags = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOO:rename", kwlist, &src, &dst, &flags_obj, &fn, &fn2) ||
        (flags_obj && parse_unsigned(flags_obj, "flags", UINT32_MAX, &flags) < 0))
        return NULL;
    OpObject *op = path_op_new(self, "rename", src, dst, fn, fn2);
    if (op == NULL)
        return NULL;
    return op_launch(op, rl_op_renameat(&self->ring, &op->cell, PyBytes_AS_STRING(src),
                                            PyBytes_AS_STRING(dst), flags), 1);
}

const char engine_unlink_doc[] =
"unlink(path, rmdir=False, filename=None) -> Future[None]\n\n"
"unlinkat(2) through the ring: removes a file, or an empty directory when rmdir.";

PyObject *engine_unlink(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "rmdir", "filename", NULL};
    PyObject *path, *fn = NULL;
    int rmdir = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|pO:unlink", kwlist, &path, &rmdir, &fn))
        return NULL;
    OpObject *op = path_op_new(self, "unlink", path, NULL, fn, NULL);
    if (op == NULL)
        return NULL;
    return op_launch(op, rl_op_unlinkat(&self->ring, &op->cell, PyBytes_AS_STRING(path), rmdir), 1);
}

const char engine_mkdir_doc[] = "mkdir(path, mode=0o777, filename=None) -> Future[None]\n\nmkdirat(2) through the ring.";

PyObject *engine_mkdir(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "mode", "filename", NULL};
    PyObject *path, *fn = NULL;
    int mode = 0777;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iO:mkdir", kwlist, &path, &mode, &fn))
        return NULL;
    OpObject *op = path_op_new(self, "mkdir", path, NULL, fn, NULL);
    if (op == NULL)
        return NULL;
    return op_launch(op, rl_op_mkdirat(&self->ring, &op->cell, PyBytes_AS_STRING(path), (mode_t)mode), 1);
}

const char engine_symlink_doc[] =
"symlink(target, linkpath, filename=None, filename2=None) -> Future[None]\n\nsymlinkat(2) through the ring.";

PyObject *engine_symlink(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"target", "linkpath", "filename", "filename2", NULL};
    PyObject *target, *linkpath, *fn = NULL, *fn2 = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OO:symlink", kwlist, &target, &linkpath, &fn, &fn2))
        return NULL;
    OpObject *op = path_op_new(self, "symlink", target, linkpath, fn, fn2);
    if (op == NULL)
        return NULL;
    return op_launch(op, rl_op_symlinkat(&self->ring, &op->cell, PyBytes_AS_STRING(target),
                                             PyBytes_AS_STRING(linkpath)), 1);
}

const char engine_link_doc[] =
"link(src, dst, follow_symlinks=True, filename=None, filename2=None) -> Future[None]\n\nlinkat(2) through the ring.";

PyObject *engine_link(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"src", "dst", "follow_symlinks", "filename", "filename2", NULL};
    PyObject *src, *dst, *fn = NULL, *fn2 = NULL;
    int follow = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pOO:link", kwlist, &src, &dst, &follow, &fn, &fn2))
        return NULL;
    OpObject *op = path_op_new(self, "link", src, dst, fn, fn2);
    if (op == NULL)
        return NULL;
    return op_launch(op, rl_op_linkat(&self->ring, &op->cell, PyBytes_AS_STRING(src),
                                          PyBytes_AS_STRING(dst), follow), 1);
}

const char engine_ftruncate_doc[] =
"ftruncate(fd, length, /) -> Future[None]\n\n"
"ftruncate(2) through the ring (IORING_OP_FTRUNCATE, kernel 6.9+; see supports()).";

PyObject *engine_ftruncate(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ftruncate(fd, length)");
        return NULL;
    }
    if (parse_int(args[0], "fd", &fd) < 0)
        return NULL;
    long long length = PyLong_AsLongLong(args[1]);
    if (length == -1 && PyErr_Occurred())
        return NULL;
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "negative length");
        return NULL;
    }
    if (engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_NONE, "ftruncate");
    if (op == NULL)
        return NULL;
    op->fd = fd;
    return op_launch(op, rl_op_ftruncate(&self->ring, &op->cell, fd, length), 1);
}

const char engine_copy_doc[] =
"copy(src_fd, dst_fd, chunk_size=1048576, depth=4) -> Future[int]\n\n"
"Copy src to dst from offset 0 until end of file, entirely in C: each read\n"
"completion issues its write, each write completion the next read, with\n"
"depth chunks in flight.  A regular src is mapped and written from instead\n"
"(16 MiB in flight, in pieces of at most chunk_size; depth=1 stays one write\n"
"at a time, in order).  The result is the number of bytes copied.  The copy\n"
"keeps its two files until it ends: a close of either number meanwhile waits\n"
"for it (or its cancel), and never sends it to a file opened on the number.";

/* The engine's quiet ring (csrc/copy.h), set up at its first copy of a
 * source large enough to be worth it; NULL when the kernel has none. */
static struct rl_ring *copy_quiet_ring(EngineObject *self, int src)
{
    if (self->quiet_state < 0 || !rl_copy_wants_quiet(src))
        return NULL;
    if (self->quiet_state == 0)
        self->quiet_state = rl_ring_init_quiet(&self->quiet, RL_COPY_MAP_SLOTS) == 0 ? 1 : -1;
    return self->quiet_state > 0 ? &self->quiet : NULL;
}

PyObject *engine_copy(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"src_fd", "dst_fd", "chunk_size", "depth", NULL};
    int src, dst;
    PyObject *chunk_obj = NULL, *depth_obj = NULL;
    unsigned chunk = 1 << 20, depth = 4;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ii|OO:copy", kwlist, &src, &dst, &chunk_obj, &depth_obj) ||
        (chunk_obj && parse_unsigned(chunk_obj, "chunk_size", UINT32_MAX, &chunk) < 0) ||
        (depth_obj && parse_unsigned(depth_obj, "depth", UINT32_MAX, &depth) < 0))
        return NULL;
    if (chunk == 0 || chunk > RL_MAX_RW || depth == 0 || depth > RL_COPY_MAX_SLOTS) {
        PyErr_Format(PyExc_ValueError, "chunk_size must be 1..%u and depth 1..%d", RL_MAX_RW, RL_COPY_MAX_SLOTS);
        return NULL;
    }
    if (engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_COPY, "copy");
    if (op == NULL)
        return NULL;
    op->fd = dst;
    if (op_hold_copy_fds(op, src) < 0) {
        Py_DECREF(op); /* lets go of what it held */
        return PyErr_NoMemory();
    }
    int err = 0;
    op->u.copy.run = rl_copy_start(&self->ring, copy_quiet_ring(self, src), src, dst, chunk, depth, op_copy_done, op, &err);
    ringlet_live.copies += op->u.copy.run != NULL;
    if (op->u.copy.run == NULL) {
        Py_DECREF(op);
        if (err == -ENOMEM)
            return PyErr_NoMemory();
        PyObject *exc = ringlet_oserror(-err, NULL); /* e.g. EBADF from fstat */
        if (exc)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(exc);
        return NULL;
    }
    return op_launch(op, 0, 1);
}

const char engine_read_many_doc[] =
"read_many(fd, requests, /) -> Future[list[bytes]]\n\n"
"Positional reads [(size, offset), ...]: those the page cache holds read at\n"
"once (with 16 or more, part of them by io_uring's SQPOLL thread on an idle\n"
"CPU), the others submitted as one batch (one io_uring_enter); the result\n"
"lists the bytes in request order.  If any read fails, the first error is\n"
"raised once all of them have completed.";

static PyObject *engine_read_many_impl(EngineObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       int want_future)
{
    int fd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_many(fd, requests)");
        return NULL;
    }
    Py_ssize_t count;
    struct rl_nowait_read *reads;
    if (parse_int(args[0], "fd", &fd) < 0 || parse_requests(args[1], &count, &reads) < 0)
        return NULL;
    OpObject *op = engine_check(self) < 0 ? NULL : op_new(self, OP_BATCH, "read_many");
    if (op == NULL)
        goto error;
    op->fd = fd;
    op->u.batch.count = count;
    op->u.batch.items = PyMem_Calloc(count ? count : 1, sizeof(PyObject *));
    op->u.batch.parts = PyMem_Calloc(count ? count : 1, sizeof(struct batch_part));
    if (op->u.batch.items == NULL || op->u.batch.parts == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if ((op->u.batch.items[i] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)reads[i].len)) == NULL)
            goto error;
        reads[i].buf = PyBytes_AS_STRING(op->u.batch.items[i]);
    }
    /* Every request checked and every bytes made: a bad one queued nothing. */
    forget_callers_descriptor(self, fd, want_future);
    Py_ssize_t pending = 0;
    if (op_hold_fd(op) < 0)
        op->u.batch.error = -ENOMEM;
    else
        pending = op_queue_batch(op, reads);
    PyMem_Free(reads);
    if (pending == 0) /* empty, all from the page cache, or nothing could be queued */
        return op_finish_now(op, op->u.batch.error, want_future);
    return op_launch(op, 0, want_future);

error:
    PyMem_Free(reads);
    Py_XDECREF(op);
    return NULL;
}

PyObject *engine_read_many(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_read_many_impl(self, args, nargs, 1);
}

PyObject *engine__read_many(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return engine_read_many_impl(self, args, nargs, 0);
}

