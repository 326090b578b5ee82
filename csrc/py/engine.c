/* Engine: one io_uring per event loop.  Each method fills a submission,
 * submits it at once and reaps what completed inside that call, and returns an
 * asyncio.Future: already done for a page-cache hit, pending otherwise.  The
 * loop watches the ring's fd and calls drain() to complete the rest. */
#define _GNU_SOURCE
#include "binding.h"
#include "structmember.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


static unsigned long fork_generation;

static void ringlet_after_fork_child(void) { fork_generation++; }

unsigned long ringlet_fork_generation(void) { return fork_generation; }

/* Registered once per process by the module (see module.c). */
int ringlet_register_atfork(void)
{
    static int registered;
    if (registered)
        return 0;
    registered = 1;
    return pthread_atfork(NULL, NULL, ringlet_after_fork_child);
}

/* Every entry point that touches the ring checks it is usable from here. */
static int engine_check(EngineObject *self)
{
    if (!self->ring_open) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: this engine is closed");
        return -1;
    }
    if (self->fork_generation != fork_generation) {
        PyErr_SetString(PyExc_RuntimeError,
                        "ringlet: this engine belongs to the parent process; a forked child gets its own");
        return -1;
    }
    if (self->thread_id != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "ringlet: an engine may only be used from the thread running its event loop");
        return -1;
    }
    return 0;
}

static int parse_int(PyObject *obj, const char *what, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s is out of range", what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* An unsigned int up to max: TypeError, OverflowError (negative or too
 * big), never silently wrapped. */
static int parse_unsigned(PyObject *obj, const char *what, unsigned long max, unsigned *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long v = PyLong_AsUnsignedLong(obj);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > max) {
        PyErr_Format(PyExc_OverflowError, "%s must be at most %lu", what, max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* An offset: -1 means the file position, other negatives are refused. */
static int parse_offset(PyObject *obj, int64_t *out)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < -1) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        return -1;
    }
    *out = v;
    return 0;
}

/* Queued an SQE (queued: ret of rl_op_*)?  Then submit; see op_launch. */
static PyObject *engine_launch_as(OpObject *op, int queued, int want_future)
{
    if (queued < 0) {
        Py_DECREF(op);
        return PyErr_NoMemory();
    }
    return op_launch(op, want_future);
}

static PyObject *engine_launch(OpObject *op, int queued) { return engine_launch_as(op, queued, 1); }

/* An op whose answer needs no kernel (res: >= 0, or -errno): a read of 0
 * bytes is b"" at once, as os.read(fd, 0) (io_uring would wait for data on a
 * pipe); an empty batch is []. */
static PyObject *engine_finish_now(OpObject *op, int64_t res, int want_future)
{
    Py_INCREF(op); /* standing in for the ring's reference, which op_finish drops */
    op_finish(op, res);
    return op_launch(op, want_future);
}

/* The hot operations come in twins: NAME returns an asyncio.Future, _NAME
 * (for ringlet's own coroutines) skips making one when the kernel completed
 * inline -- it returns a Ready, or raises the error at once. */
#define RL_TWINS(name, impl, type)                                                             \
    static PyObject *engine_##name(EngineObject *self, type) { return impl(self, ARGS, 1); }  \
    static PyObject *engine__##name(EngineObject *self, type) { return impl(self, ARGS, 0); }
#define RL_FASTCALL PyObject *const *args, Py_ssize_t nargs
#define RL_VARARGS PyObject *args, PyObject *kwargs

PyDoc_STRVAR(engine_lazy_doc,
"Like the method without the underscore, for ringlet's own coroutines: when\n"
"the kernel completed inline, no future is made -- it returns an awaitable\n"
"holding the result, or raises the error at once.");

/* Where the kernel reads or writes for an op: the op's own memory, or with
 * O_DIRECT (align > 0), which needs memory, offset and length aligned, that
 * memory when it is aligned already (readinto/write), else a bounce buffer
 * covering the aligned range around [offset, offset + length).  A write must
 * be aligned itself (the caller keeps a buffered descriptor for the rest);
 * its data is copied into the bounce buffer, so the caller's buffer is free
 * at once.  0, or -1 with an exception set. */
static int op_kernel_io(OpObject *op, char *memory, unsigned align)
{
    struct kernel_io *io = &op->io;
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
    op->bounce = engine_bounce_get(op->engine, end > start ? (size_t)(end - start) : align, align, &op->bounce_size);
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

/* The size class that holds size bytes, or -1 for one too large to keep. */
static int bounce_class(size_t size)
{
    for (int k = 0; k < RL_BOUNCE_CLASSES; k++)
        if (size <= (size_t)4096 << k)
            return k;
    return -1;
}

char *engine_bounce_get(EngineObject *engine, size_t size, unsigned align, size_t *allocated)
{
    struct bounce_pool *pool = &engine->bounce_pool;
    int k = align <= 4096 ? bounce_class(size) : -1; /* pooled buffers are 4096-aligned */
    char *buf = NULL;
    if (k >= 0) {
        size = (size_t)4096 << k;
        if ((buf = pool->free[k]) != NULL) {
            memcpy(&pool->free[k], buf, sizeof(char *)); /* the next free one is kept in its first bytes */
            pool->cached -= size;
        }
    }
    if (buf == NULL && posix_memalign((void **)&buf, align < 4096 ? 4096 : align, size) != 0)
        return NULL;
    *allocated = size;
    return buf;
}

void engine_bounce_put(EngineObject *engine, char *buf, size_t allocated)
{
    struct bounce_pool *pool = &engine->bounce_pool;
    int k = bounce_class(allocated);
    if (k < 0 || ((size_t)4096 << k) != allocated || pool->cached + allocated > RL_BOUNCE_CACHE) {
        free(buf);
        return;
    }
    memcpy(buf, &pool->free[k], sizeof(char *));
    pool->free[k] = buf;
    pool->cached += allocated;
}

static void engine_bounce_clear(EngineObject *engine)
{
    struct bounce_pool *pool = &engine->bounce_pool;
    for (int k = 0; k < RL_BOUNCE_CLASSES; k++) {
        while (pool->free[k]) {
            char *buf = pool->free[k];
            memcpy(&pool->free[k], buf, sizeof(char *));
            free(buf);
        }
    }
    pool->cached = 0;
}

/* offset -1, "at the descriptor's offset" as read(2) and write(2) have it:
 * io_uring moves that offset asynchronously (a completion can be reaped
 * before it has moved, and the next read or write would land on the same
 * bytes), so ringlet reads it now, hands the kernel an explicit offset and
 * moves it itself at completion (op_complete).  A stream (lseek fails) and
 * an O_APPEND write keep -1: no offset to race on, or the kernel appends.
 * An offset + length beyond what a file can have is EINVAL, as pread(2) says. */
static int op_take_position(OpObject *op, unsigned align)
{
    if (op->offset < 0) {
        int flags = op->kind == OP_WRITE ? fcntl(op->fd, F_GETFL) : 0;
        off_t position = flags >= 0 && !(flags & O_APPEND) ? lseek(op->fd, 0, SEEK_CUR) : -1;
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

/* The optional trailing arguments offset=-1 and align=0 of read/readinto/write. */
static int parse_offset_align(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t first, int64_t *offset,
                              unsigned *align)
{
    *offset = -1;
    *align = 0;
    if (nargs > first && parse_offset(args[first], offset) < 0)
        return -1;
    if (nargs > first + 1) {
        unsigned long a = PyLong_AsUnsignedLong(args[first + 1]);
        if (a == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        *align = a > (1u << 20) ? (1u << 21) : (unsigned)a; /* too big: refused by op_kernel_io */
    }
    return 0;
}


PyDoc_STRVAR(engine_read_doc,
"read(fd, size, offset=-1, align=0, /) -> Future[bytes]\n\n"
"Read up to size bytes at offset (-1: the file position).  The result is\n"
"shorter only at end of file.  align > 0: the descriptor is O_DIRECT and\n"
"the kernel reads an aligned range into aligned memory, of which the part\n"
"asked for is returned (any offset and size work).");

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
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred())
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
    op->obj = PyBytes_FromStringAndSize(NULL, size);
    op->offload = !align && op->length >= RL_OFFLOAD_MIN && engine_must_yield(self);
    if (op->obj == NULL || op_take_position(op, align) < 0 ||
        op_kernel_io(op, PyBytes_AS_STRING(op->obj), align) < 0) {
        Py_DECREF(op);
        return NULL;
    }
    if (size == 0)
        return engine_finish_now(op, 0, want_future);
    int64_t cached = op_try_nowait(op);
    if (cached >= 0)
        return engine_finish_now(op, cached, want_future);
    return engine_launch_as(op, op_queue_io(op), want_future);
}

#define ARGS args, nargs
RL_TWINS(read, engine_read_impl, RL_FASTCALL)

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
        /* As built-in files say it: a wrong buffer is a TypeError. */
        if (PyErr_ExceptionMatches(PyExc_BufferError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s() argument must be %sbytes-like object, not '%.100s'",
                         kind == OP_WRITE ? "write" : "readinto", kind == OP_WRITE ? "a " : "read-write ",
                         Py_TYPE(args[1])->tp_name);
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
        return engine_finish_now(op, 0, want_future);
    op->offload = kind != OP_WRITE && !align && op->length >= RL_OFFLOAD_MIN && engine_must_yield(self);
    int64_t cached = kind == OP_WRITE ? -1 : op_try_nowait(op);
    if (cached >= 0)
        return engine_finish_now(op, cached, want_future);
    return engine_launch_as(op, op_queue_io(op), want_future);
}

PyDoc_STRVAR(engine_readinto_doc,
"readinto(fd, buffer, offset=-1, align=0, /) -> Future[int]\n\n"
"Read into a writable, contiguous buffer; the buffer is held (cannot be\n"
"resized) until the kernel has completed, even if the wait is cancelled.\n"
"align > 0: O_DIRECT, as for read().");

static PyObject *engine_readinto_impl(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, int want_future)
{
    return engine_buffer_op(self, args, nargs, OP_READINTO, want_future);
}
RL_TWINS(readinto, engine_readinto_impl, RL_FASTCALL)

PyDoc_STRVAR(engine_write_doc,
"write(fd, data, offset=-1, align=0, /) -> Future[int]\n\n"
"Write all of data (a contiguous bytes-like object) at offset (-1: the file\n"
"position).  Short writes are continued; the result is len(data) or an\n"
"OSError.  align > 0: O_DIRECT; offset and length must be multiples of\n"
"align, and data is copied into aligned memory (data is free at once).");

static PyObject *engine_write_impl(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, int want_future)
{
    return engine_buffer_op(self, args, nargs, OP_WRITE, want_future);
}
RL_TWINS(write, engine_write_impl, RL_FASTCALL)
#undef ARGS

/* The path argument: bytes without NUL (os.fsencode gives it). */
static int path_check(PyObject *path)
{
    if (!PyBytes_Check(path)) {
        PyErr_Format(PyExc_TypeError, "path must be bytes, not %.100s", Py_TYPE(path)->tp_name);
        return -1;
    }
    if (strlen(PyBytes_AS_STRING(path)) != (size_t)PyBytes_GET_SIZE(path)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(engine_open_doc,
"open(path, flags, mode=0o666, filename=None) -> Future[int]\n\n"
"openat(2) through the ring; path is bytes.  The result is a descriptor.\n"
"OSError carries filename (default: path).  If the wait is cancelled and the\n"
"open still succeeds, the descriptor is closed.");

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
    return engine_launch_as(op, rl_op_openat(&self->ring, &op->cell, AT_FDCWD, PyBytes_AS_STRING(path),
                                             flags, (mode_t)mode), want_future);
}

#define ARGS args, kwargs
RL_TWINS(open, engine_open_impl, RL_VARARGS)
#undef ARGS

PyDoc_STRVAR(engine_close_doc, "close(fd, /) -> Future[None]\n\nclose(2) through the ring.");

static PyObject *engine_close_impl(EngineObject *self, PyObject *arg, int want_future)
{
    int fd;
    if (parse_int(arg, "fd", &fd) < 0 || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_NONE, "close");
    if (op == NULL)
        return NULL;
    op->fd = fd;
    rl_nowait_forget(&self->nowait, fd);
    return engine_launch_as(op, rl_op_close(&self->ring, &op->cell, fd), want_future);
}

#define ARGS arg
RL_TWINS(close, engine_close_impl, PyObject *arg)
#undef ARGS

PyDoc_STRVAR(engine_fsync_doc,
"fsync(fd, datasync=False, /) -> Future[None]\n\nfsync(2), or fdatasync(2) when datasync is true.");

static PyObject *engine_fsync(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
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
    return engine_launch(op, rl_op_fsync(&self->ring, &op->cell, fd, datasync));
}

PyDoc_STRVAR(engine_statx_doc,
"statx(target, filename=None, follow_symlinks=True) -> Future[os.stat_result]\n\n"
"statx(2) through the ring: target is a descriptor (int) or a path (bytes).");

static PyObject *engine_statx(EngineObject *self, PyObject *args, PyObject *kwargs)
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
    return engine_launch(op, rl_op_statx(&self->ring, &op->cell, fd, PyBytes_AS_STRING(op->obj), flags,
                                         op->u.stx));
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

PyDoc_STRVAR(engine_rename_doc,
"rename(src, dst, flags=0, filename=None, filename2=None) -> Future[None]\n\n"
"renameat2(2) through the ring (flags: RENAME_NOREPLACE=1, RENAME_EXCHANGE=2).");

static PyObject *engine_rename(EngineObject *self, PyObject *args, PyObject *kwargs)
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
    return engine_launch(op, rl_op_renameat(&self->ring, &op->cell, PyBytes_AS_STRING(src),
                                            PyBytes_AS_STRING(dst), flags));
}

PyDoc_STRVAR(engine_unlink_doc,
"unlink(path, rmdir=False, filename=None) -> Future[None]\n\n"
"unlinkat(2) through the ring: removes a file, or an empty directory when rmdir.");

static PyObject *engine_unlink(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "rmdir", "filename", NULL};
    PyObject *path, *fn = NULL;
    int rmdir = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|pO:unlink", kwlist, &path, &rmdir, &fn))
        return NULL;
    OpObject *op = path_op_new(self, "unlink", path, NULL, fn, NULL);
    if (op == NULL)
        return NULL;
    return engine_launch(op, rl_op_unlinkat(&self->ring, &op->cell, PyBytes_AS_STRING(path), rmdir));
}

PyDoc_STRVAR(engine_mkdir_doc, "mkdir(path, mode=0o777, filename=None) -> Future[None]\n\nmkdirat(2) through the ring.");

static PyObject *engine_mkdir(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "mode", "filename", NULL};
    PyObject *path, *fn = NULL;
    int mode = 0777;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iO:mkdir", kwlist, &path, &mode, &fn))
        return NULL;
    OpObject *op = path_op_new(self, "mkdir", path, NULL, fn, NULL);
    if (op == NULL)
        return NULL;
    return engine_launch(op, rl_op_mkdirat(&self->ring, &op->cell, PyBytes_AS_STRING(path), (mode_t)mode));
}

PyDoc_STRVAR(engine_symlink_doc,
"symlink(target, linkpath, filename=None, filename2=None) -> Future[None]\n\nsymlinkat(2) through the ring.");

static PyObject *engine_symlink(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"target", "linkpath", "filename", "filename2", NULL};
    PyObject *target, *linkpath, *fn = NULL, *fn2 = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OO:symlink", kwlist, &target, &linkpath, &fn, &fn2))
        return NULL;
    OpObject *op = path_op_new(self, "symlink", target, linkpath, fn, fn2);
    if (op == NULL)
        return NULL;
    return engine_launch(op, rl_op_symlinkat(&self->ring, &op->cell, PyBytes_AS_STRING(target),
                                             PyBytes_AS_STRING(linkpath)));
}

PyDoc_STRVAR(engine_link_doc,
"link(src, dst, follow_symlinks=True, filename=None, filename2=None) -> Future[None]\n\nlinkat(2) through the ring.");

static PyObject *engine_link(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"src", "dst", "follow_symlinks", "filename", "filename2", NULL};
    PyObject *src, *dst, *fn = NULL, *fn2 = NULL;
    int follow = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pOO:link", kwlist, &src, &dst, &follow, &fn, &fn2))
        return NULL;
    OpObject *op = path_op_new(self, "link", src, dst, fn, fn2);
    if (op == NULL)
        return NULL;
    return engine_launch(op, rl_op_linkat(&self->ring, &op->cell, PyBytes_AS_STRING(src),
                                          PyBytes_AS_STRING(dst), follow));
}

PyDoc_STRVAR(engine_ftruncate_doc,
"ftruncate(fd, length, /) -> Future[None]\n\n"
"ftruncate(2) through the ring (IORING_OP_FTRUNCATE, kernel 6.9+; see supports()).");

static PyObject *engine_ftruncate(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
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
    return engine_launch(op, rl_op_ftruncate(&self->ring, &op->cell, fd, length));
}

PyDoc_STRVAR(engine_copy_doc,
"copy(src_fd, dst_fd, chunk_size=1048576, depth=4) -> Future[int]\n\n"
"Copy src to dst from offset 0 until end of file, entirely in C: each read\n"
"completion issues its write, each write completion the next read, with\n"
"depth chunks in flight.  The result is the number of bytes copied.");

static PyObject *engine_copy(EngineObject *self, PyObject *args, PyObject *kwargs)
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
    int err = 0;
    op->u.copy = rl_copy_start(&self->ring, src, dst, chunk, depth, op_copy_done, op, &err);
    ringlet_live.copies += op->u.copy != NULL;
    if (op->u.copy == NULL) {
        Py_DECREF(op);
        if (err == -ENOMEM)
            return PyErr_NoMemory();
        PyObject *exc = ringlet_oserror(-err, NULL); /* e.g. EBADF from fstat */
        if (exc)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(exc);
        return NULL;
    }
    return engine_launch(op, 0);
}

PyDoc_STRVAR(engine_read_many_doc,
"read_many(fd, requests, /) -> Future[list[bytes]]\n\n"
"Positional reads [(size, offset), ...] submitted as one batch (one\n"
"io_uring_enter); the result lists the bytes in request order.  If any read\n"
"fails, the first error is raised once all of them have completed.");

static PyObject *engine_read_many_impl(EngineObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       int want_future)
{
    int fd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_many(fd, requests)");
        return NULL;
    }
    if (parse_int(args[0], "fd", &fd) < 0)
        return NULL;
    PyObject *requests = PySequence_Fast(args[1], "requests must be a sequence of (size, offset)");
    if (requests == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(requests);
    OpObject *op = engine_check(self) < 0 ? NULL : op_new(self, OP_BATCH, "read_many");
    if (op == NULL) {
        Py_DECREF(requests);
        return NULL;
    }
    op->fd = fd;
    op->u.batch.count = count;
    op->u.batch.items = PyMem_Calloc(count ? count : 1, sizeof(PyObject *));
    op->u.batch.parts = PyMem_Calloc(count ? count : 1, sizeof(struct batch_part));
    if (op->u.batch.items == NULL || op->u.batch.parts == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* Check every request before queueing any: a bad one queues nothing. */
    Py_ssize_t *sizes = PyMem_Calloc(count ? count : 1, sizeof(Py_ssize_t));
    int64_t *offsets = PyMem_Calloc(count ? count : 1, sizeof(int64_t));
    int ok = sizes && offsets;
    if (!ok)
        PyErr_NoMemory();
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        PyObject *req = PySequence_Fast_GET_ITEM(requests, i);
        if (!PyTuple_Check(req) || PyTuple_GET_SIZE(req) != 2) {
            PyErr_Format(PyExc_TypeError, "requests[%zd] must be a (size, offset) tuple", i);
            ok = 0;
            break;
        }
        sizes[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(req, 0));
        ok = !(sizes[i] == -1 && PyErr_Occurred()) && parse_offset(PyTuple_GET_ITEM(req, 1), &offsets[i]) == 0;
        if (ok && (sizes[i] < 0 || offsets[i] < 0)) {
            PyErr_Format(PyExc_ValueError, "requests[%zd]: size and offset must be >= 0", i);
            ok = 0;
        }
        if (ok && (size_t)sizes[i] > RL_MAX_RW)
            sizes[i] = RL_MAX_RW;
        if (ok && (op->u.batch.items[i] = PyBytes_FromStringAndSize(NULL, sizes[i])) == NULL)
            ok = 0;
    }
    int queued = 0;
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        struct batch_part *part = &op->u.batch.parts[i];
        part->cell.on_complete = op_batch_part_complete;
        part->op = op;
        part->index = i;
        part->offset = offsets[i];
        queued = rl_op_read(&self->ring, &part->cell, fd, PyBytes_AS_STRING(op->u.batch.items[i]),
                            (unsigned)sizes[i], offsets[i]);
        if (queued < 0) {
            /* The reads already queued are in flight: the batch ends with ENOMEM once they complete. */
            op->u.batch.error = queued;
            op->u.batch.count = i;
            break;
        }
        op->u.batch.pending++;
    }
    PyMem_Free(sizes);
    PyMem_Free(offsets);
    Py_DECREF(requests);
    if (!ok)
        goto error_no_requests;
    if (op->u.batch.pending == 0) /* an empty batch, or nothing could be queued */
        return engine_finish_now(op, op->u.batch.error, want_future);
    return op_launch(op, want_future);

error:
    Py_DECREF(requests);
error_no_requests:
    Py_DECREF(op);
    return NULL;
}

#define ARGS args, nargs
RL_TWINS(read_many, engine_read_many_impl, RL_FASTCALL)
#undef ARGS

int engine_call_soon(EngineObject *engine, PyObject *callable, PyObject *args)
{
    PyObject *loop = PyWeakref_GetObject(engine->loop_ref);
    if (loop == NULL)
        return -1;
    if (loop == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: the engine's event loop is gone");
        return -1;
    }
    PyObject *call_soon = PyObject_GetAttrString(loop, "call_soon");
    if (call_soon == NULL)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *argv[4] = {callable};
    for (Py_ssize_t i = 0; i < n && i < 3; i++)
        argv[i + 1] = PyTuple_GET_ITEM(args, i);
    PyObject *r = PyObject_Vectorcall(call_soon, argv, (size_t)(n < 3 ? n : 3) + 1, NULL);
    Py_DECREF(call_soon);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* call_soon(self.<method>) once until it has run; flag records that it is pending. */
static int engine_call_soon_once(EngineObject *engine, const char *method, int *flag)
{
    if (*flag)
        return 0;
    PyObject *bound = PyObject_GetAttrString((PyObject *)engine, method);
    int ret = bound ? engine_call_soon(engine, bound, engine->state->empty_tuple) : -1;
    Py_XDECREF(bound);
    if (ret == 0)
        *flag = 1;
    return ret;
}

int engine_schedule_flush(EngineObject *engine)
{
    if (engine_call_soon_once(engine, "_flush", &engine->flush_scheduled) < 0) {
        PyErr_Clear();
        return -2;
    }
    return 0;
}

/* Inline completions may run this long in one loop turn; after that, every
 * task yields (and large reads go to the kernel's workers) until the loop has
 * turned, so another task waits at most about this long plus one step of
 * each ready task.  (A budget per task let 256 tasks spend 256 budgets.) */
#define RL_INLINE_BUDGET_NS 1000000

int engine_must_yield(EngineObject *engine)
{
    if (engine->tick_scheduled)
        return ringlet_now_ns() - engine->streak_start > RL_INLINE_BUDGET_NS;
    /* The loop turned since the last inline completion: start this turn's
     * budget, and learn when it turns next. */
    if (engine_call_soon_once(engine, "_tick", &engine->tick_scheduled) < 0)
        PyErr_Clear(); /* then no yield is forced: a lost tick costs fairness, not data */
    engine->streak_start = ringlet_now_ns();
    return 0;
}

static PyObject *engine_tick(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    self->tick_scheduled = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_flush_doc,
"_flush() -> None\n\n"
"Submit what waits in the SQ (O_DIRECT operations wait for the end of the\n"
"loop tick, so that many go in one io_uring_enter); scheduled with call_soon.");

static PyObject *engine_flush(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    self->flush_scheduled = 0;
    if (!self->ring_open || engine_check(self) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int ret = rl_ring_submit_and_reap(&self->ring);
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_drain_doc,
"drain() -> int\n\n"
"Reap the completions that are ready and resolve their futures; the loop\n"
"calls this when the ring's fd is readable.  Returns how many were reaped.");

static PyObject *engine_drain(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    if (engine_check(self) < 0)
        return NULL;
    int ret = rl_ring_drain(&self->ring, self->ring.ring.cq.ring_entries);
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(ret);
}

PyDoc_STRVAR(engine_shutdown_doc,
"shutdown(timeout=1.0) -> int\n\n"
"Cancel what is in flight, wait up to timeout seconds for the kernel to give\n"
"the memory back, and close the ring.  Results still arriving are dropped,\n"
"futures are not resolved.  Operations the kernel has not completed by then\n"
"keep their memory forever (leaked, never freed under the kernel).  Returns\n"
"how many were left in flight.");

static PyObject *engine_shutdown(EngineObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    double timeout = 1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|d:shutdown", kwlist, &timeout))
        return NULL;
    if (isnan(timeout)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number");
        return NULL;
    }
    if (!self->ring_open || self->fork_generation != fork_generation)
        return PyLong_FromLong(0);
    self->shutting_down = 1;
    Py_CLEAR(self->tracer);
    /* Only the owner thread may enter a SINGLE_ISSUER ring; from elsewhere, just leave. */
    if (self->thread_id == PyThread_get_thread_ident() && self->ring.stats.in_flight > 0) {
        rl_ring_cancel_all(&self->ring);
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            rl_ring_drain(&self->ring, UINT32_MAX);
            clock_gettime(CLOCK_MONOTONIC, &now);
            double left = timeout - (double)(now.tv_sec - start.tv_sec) - (now.tv_nsec - start.tv_nsec) * 1e-9;
            if (self->ring.stats.in_flight == 0 || left <= 0)
                break;
            int ret;
            Py_BEGIN_ALLOW_THREADS
            ret = rl_ring_wait(&self->ring, left > 60 ? 60000 : (unsigned)(left * 1000) + 1);
            Py_END_ALLOW_THREADS
            if (ret < 0)
                break;
        }
    }
    unsigned left_in_flight = self->ring.stats.in_flight;
    /* Closing the ring with requests still in flight is safe: their ops (and
     * memory) are never freed, and the kernel cancels them on teardown. */
    self->ring_open = 0;
    rl_ring_exit(&self->ring);
    return PyLong_FromUnsignedLong(left_in_flight);
}

PyDoc_STRVAR(engine_stats_doc, "stats() -> dict\n\nThe engine's counters.");

static PyObject *engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    const struct rl_stats *s = &self->ring.stats;
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsIsIsd}",
                         "submitted", (unsigned long long)s->submitted,
                         "completed", (unsigned long long)s->completed,
                         "completed_inline", (unsigned long long)s->completed_inline,
                         "completed_nowait", (unsigned long long)self->nowait.hits,
                         "deferred", (unsigned long long)s->deferred,
                         "cancelled", (unsigned long long)s->cancelled,
                         "enter_calls", (unsigned long long)s->enter_calls,
                         "overflowed", (unsigned long long)s->overflowed,
                         "in_flight", s->in_flight,
                         "peak_in_flight", s->peak_in_flight,
                         "ops_per_enter", s->enter_calls ? (double)s->submitted / (double)s->enter_calls : 0.0);
}

PyDoc_STRVAR(engine_fileno_doc, "fileno() -> int\n\nThe eventfd the kernel signals on completions (the loop watches it).");

static PyObject *engine_fileno(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->ring_open) {
        PyErr_SetString(PyExc_ValueError, "ringlet: this engine is closed");
        return NULL;
    }
    return PyLong_FromLong(rl_ring_wake_fd(&self->ring));
}

PyDoc_STRVAR(engine_supports_doc, "supports(opcode, /) -> bool\n\nWhether the kernel has IORING_OP_<opcode> (an int).");

static PyObject *engine_supports(EngineObject *self, PyObject *arg)
{
    int op;
    if (parse_int(arg, "opcode", &op) < 0)
        return NULL;
    return PyBool_FromLong(rl_ring_supports(&self->ring, op));
}

static PyObject *engine_get_loop(EngineObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(PyWeakref_GetObject(self->loop_ref));
}

static PyObject *engine_get_setup_flags(EngineObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(rl_ring_flags_name(self->ring.setup_flags));
}

static PyObject *engine_get_tracer(EngineObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->tracer ? self->tracer : Py_None);
}

static int engine_set_tracer(EngineObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value != NULL && value != Py_None && !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "tracer must be callable or None");
        return -1;
    }
    Py_XSETREF(self->tracer, value == Py_None ? NULL : Py_XNewRef(value));
    return 0;
}

static PyObject *engine_get_closed(EngineObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(!self->ring_open);
}

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"loop", "sq_entries", "cq_entries", "future_type", NULL};
    PyObject *loop, *future_type = NULL;
    unsigned sq_entries = 256, cq_entries = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|IIO:Engine", kwlist, &loop, &sq_entries, &cq_entries,
                                     &future_type))
        return NULL;
    EngineObject *self = (EngineObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->state = PyType_GetModuleState(type);
    self->thread_id = PyThread_get_thread_ident();
    self->fork_generation = fork_generation;
    self->future_type = future_type == Py_None ? NULL : Py_XNewRef(future_type);
    self->loop_ref = PyWeakref_NewRef(loop, NULL);
    if (self->loop_ref == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    int ret = rl_ring_init(&self->ring, sq_entries, cq_entries);
    if (ret < 0) {
        Py_DECREF(self);
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->ring_open = 1;
    return (PyObject *)self;
}

static void engine_dealloc(EngineObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    /* No op is in flight here: each one holds a reference to its engine. */
    if (self->ring_open && self->fork_generation == fork_generation)
        rl_ring_exit(&self->ring);
    engine_bounce_clear(self);
    rl_nowait_free(&self->nowait);
    Py_XDECREF(self->loop_ref);
    Py_XDECREF(self->tracer);
    Py_XDECREF(self->future_type);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef engine_methods[] = {
    {"read", (PyCFunction)(void (*)(void))engine_read, METH_FASTCALL, engine_read_doc},
    {"readinto", (PyCFunction)(void (*)(void))engine_readinto, METH_FASTCALL, engine_readinto_doc},
    {"write", (PyCFunction)(void (*)(void))engine_write, METH_FASTCALL, engine_write_doc},
    {"open", (PyCFunction)(void (*)(void))engine_open, METH_VARARGS | METH_KEYWORDS, engine_open_doc},
    {"close", (PyCFunction)engine_close, METH_O, engine_close_doc},
    {"_read", (PyCFunction)(void (*)(void))engine__read, METH_FASTCALL, engine_lazy_doc},
    {"_readinto", (PyCFunction)(void (*)(void))engine__readinto, METH_FASTCALL, engine_lazy_doc},
    {"_write", (PyCFunction)(void (*)(void))engine__write, METH_FASTCALL, engine_lazy_doc},
    {"_open", (PyCFunction)(void (*)(void))engine__open, METH_VARARGS | METH_KEYWORDS, engine_lazy_doc},
    {"_close", (PyCFunction)engine__close, METH_O, engine_lazy_doc},
    {"fsync", (PyCFunction)(void (*)(void))engine_fsync, METH_FASTCALL, engine_fsync_doc},
    {"statx", (PyCFunction)(void (*)(void))engine_statx, METH_VARARGS | METH_KEYWORDS, engine_statx_doc},
    {"copy", (PyCFunction)(void (*)(void))engine_copy, METH_VARARGS | METH_KEYWORDS, engine_copy_doc},
    {"rename", (PyCFunction)(void (*)(void))engine_rename, METH_VARARGS | METH_KEYWORDS, engine_rename_doc},
    {"unlink", (PyCFunction)(void (*)(void))engine_unlink, METH_VARARGS | METH_KEYWORDS, engine_unlink_doc},
    {"mkdir", (PyCFunction)(void (*)(void))engine_mkdir, METH_VARARGS | METH_KEYWORDS, engine_mkdir_doc},
    {"symlink", (PyCFunction)(void (*)(void))engine_symlink, METH_VARARGS | METH_KEYWORDS, engine_symlink_doc},
    {"link", (PyCFunction)(void (*)(void))engine_link, METH_VARARGS | METH_KEYWORDS, engine_link_doc},
    {"ftruncate", (PyCFunction)(void (*)(void))engine_ftruncate, METH_FASTCALL, engine_ftruncate_doc},
    {"read_many", (PyCFunction)(void (*)(void))engine_read_many, METH_FASTCALL, engine_read_many_doc},
    {"_read_many", (PyCFunction)(void (*)(void))engine__read_many, METH_FASTCALL, engine_lazy_doc},
    {"_pread", (PyCFunction)(void (*)(void))engine__pread, METH_FASTCALL, engine__pread_doc},
    {"drain", (PyCFunction)engine_drain, METH_NOARGS, engine_drain_doc},
    {"_flush", (PyCFunction)engine_flush, METH_NOARGS, engine_flush_doc},
    {"_tick", (PyCFunction)engine_tick, METH_NOARGS,
     "_tick() -> None\n\nScheduled with call_soon: the loop has turned (see engine_must_yield)."},
    {"shutdown", (PyCFunction)(void (*)(void))engine_shutdown, METH_VARARGS | METH_KEYWORDS, engine_shutdown_doc},
    {"stats", (PyCFunction)engine_stats, METH_NOARGS, engine_stats_doc},
    {"fileno", (PyCFunction)engine_fileno, METH_NOARGS, engine_fileno_doc},
    {"supports", (PyCFunction)engine_supports, METH_O, engine_supports_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef engine_getset[] = {
    {"loop", (getter)engine_get_loop, NULL, "The event loop (None once it is gone).", NULL},
    {"setup_flags", (getter)engine_get_setup_flags, NULL, "The io_uring setup flags the kernel accepted.", NULL},
    {"closed", (getter)engine_get_closed, NULL, "True after shutdown().", NULL},
    {"tracer", (getter)engine_get_tracer, (setter)engine_set_tracer,
     "None, or a callable given one dict per finished operation: op, fd, result, inline, and the\n"
     "time.monotonic_ns() stamps submitted, returned, reaped, resolved, resumed; thread, reap_thread.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef engine_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(EngineObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(engine_doc,
"Engine(loop, sq_entries=256, cq_entries=4096, future_type=None)\n\n"
"future_type: a class called as future_type(loop=loop) for each operation,\n"
"where loop.create_future() would return the same (asyncio.Future on a stock\n"
"loop: it saves a Python frame per operation); None: loop.create_future().\n"
"One io_uring for one event loop.  Use ringlet.get_engine() rather than\n"
"creating one: it also registers the ring's fd with the loop.");

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, (void *)engine_doc},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {Py_tp_members, engine_members},
    {0, NULL},
};

PyType_Spec ringlet_engine_spec = {
    .name = "ringlet._ringlet.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = engine_slots,
};
