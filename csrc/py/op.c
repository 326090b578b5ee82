/* Op: the Python side of a task cell.  Created per operation; the ring holds
 * one reference from submission until the completion is reaped, so every
 * buffer the kernel may touch stays alive even if the awaiting task was
 * cancelled long before. */
#define _GNU_SOURCE /* struct statx */
#include "binding.h"
#include "fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

int64_t ringlet_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* the clock of time.monotonic_ns() */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* What ringlet itself holds now (tests check it returns to its baseline:
 * nothing of ringlet's own leaks, cancel or not).  Under the GIL. */
struct ringlet_live ringlet_live;

OpObject *op_new(EngineObject *engine, int kind, const char *name)
{
    if (rl_fault_hit(RL_FAULT_ALLOC))
        return (OpObject *)PyErr_NoMemory();
    OpObject *op = PyObject_New(OpObject, engine->state->OpType);
    if (op == NULL)
        return NULL;
    memset(&op->cell, 0, sizeof *op - offsetof(OpObject, cell));
    ringlet_live.ops++;
    op->cell.on_complete = op_complete;
    Py_INCREF(engine);
    op->engine = engine;
    op->kind = kind;
    op->name = name;
    if (engine->tracer && (op->times = PyMem_Calloc(1, sizeof *op->times)) == NULL) {
        Py_DECREF(op);
        return (OpObject *)PyErr_NoMemory();
    }
    op->fd = -1;
    op->offset = -1;
    return op;
}

/* A future of the engine's loop (new reference). */
static PyObject *op_make_future(OpObject *op)
{
    EngineObject *engine = op->engine;
    PyObject *loop = PyWeakref_GetObject(engine->loop_ref); /* borrowed */
    if (loop == NULL)
        return NULL;
    if (loop == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: the engine's event loop is gone");
        return NULL;
    }
    if (engine->future_type)
        return PyObject_Vectorcall(engine->future_type, &loop, 0, engine->state->kwnames_loop);
    return PyObject_CallMethodNoArgs(loop, engine->state->str_create_future);
}

/* Releases what the op held for the kernel.  Only after its completion. */
static void op_release(OpObject *op)
{
    switch (op->kind) {
    case OP_READINTO:
    case OP_WRITE:
        if (op->u.view.obj)
            PyBuffer_Release(&op->u.view);
        break;
    case OP_STATX:
        PyMem_Free(op->u.stx);
        op->u.stx = NULL;
        break;
    case OP_COPY:
        if (op->u.copy) {
            rl_copy_free(op->u.copy);
            ringlet_live.copies--;
        }
        op->u.copy = NULL;
        break;
    case OP_BATCH:
        for (Py_ssize_t i = 0; op->u.batch.items && i < op->u.batch.count; i++)
            Py_XDECREF(op->u.batch.items[i]);
        PyMem_Free(op->u.batch.items);
        PyMem_Free(op->u.batch.parts);
        op->u.batch.items = NULL;
        op->u.batch.parts = NULL;
        break;
    }
    Py_CLEAR(op->obj);
    Py_CLEAR(op->obj2);
    if (op->bounce) {
        engine_bounce_put(op->engine, op->bounce, op->bounce_size);
        ringlet_live.bounce_buffers--;
        op->bounce = NULL;
    }
}

PyObject *ringlet_oserror(int err, PyObject *filename)
{
    /* OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, ...). */
    return PyObject_CallFunction(PyExc_OSError, "isO", err, strerror(err),
                                 filename ? filename : Py_None);
}

static PyObject *op_oserror(OpObject *op, int err)
{
    if (op->filename2 == NULL)
        return ringlet_oserror(err, op->filename);
    return PyObject_CallFunction(PyExc_OSError, "isOOO", err, strerror(err), op->filename, Py_None,
                                 op->filename2);
}

static PyObject *op_statx_result(OpObject *op)
{
    const struct statx *s = op->u.stx;
#define RL_NS(t) ((long long)(t).tv_sec * 1000000000LL + (t).tv_nsec)
#define RL_SEC(t) ((double)(t).tv_sec + (double)(t).tv_nsec * 1e-9)
    PyObject *fields = Py_BuildValue(
        "(IKKIIIKLLLdddLLLIKK)",
        (unsigned)s->stx_mode, (unsigned long long)s->stx_ino,
        (unsigned long long)makedev(s->stx_dev_major, s->stx_dev_minor),
        (unsigned)s->stx_nlink, (unsigned)s->stx_uid, (unsigned)s->stx_gid,
        (unsigned long long)s->stx_size,
        (long long)s->stx_atime.tv_sec, (long long)s->stx_mtime.tv_sec, (long long)s->stx_ctime.tv_sec,
        RL_SEC(s->stx_atime), RL_SEC(s->stx_mtime), RL_SEC(s->stx_ctime),
        RL_NS(s->stx_atime), RL_NS(s->stx_mtime), RL_NS(s->stx_ctime),
        (unsigned)s->stx_blksize, (unsigned long long)s->stx_blocks,
        (unsigned long long)makedev(s->stx_rdev_major, s->stx_rdev_minor));
#undef RL_NS
#undef RL_SEC
    if (fields == NULL)
        return NULL;
    PyObject *result = PyObject_CallOneArg(op->engine->state->stat_result, fields);
    Py_DECREF(fields);
    return result;
}

/* read_many's list of bytes; the op gives up its items. */
static PyObject *op_batch_result(OpObject *op)
{
    PyObject *list = PyList_New(op->u.batch.count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < op->u.batch.count; i++) {
        PyList_SET_ITEM(list, i, op->u.batch.items[i]);
        op->u.batch.items[i] = NULL;
    }
    return list;
}

/* The value a successful completion gives the future (new reference). */
static PyObject *op_value(OpObject *op, int64_t res)
{
    switch (op->kind) {
    case OP_READ:
        if ((size_t)res < op->length && _PyBytes_Resize(&op->obj, (Py_ssize_t)res) < 0)
            return NULL; /* _PyBytes_Resize cleared op->obj */
        return Py_NewRef(op->obj);
    case OP_READINTO:
    case OP_OPEN:
    case OP_COPY:
        return PyLong_FromLongLong(res);
    case OP_WRITE:
        return PyLong_FromSize_t(op->done);
    case OP_STATX:
        return op_statx_result(op);
    case OP_BATCH:
        return op_batch_result(op);
    default:
        Py_RETURN_NONE;
    }
}

/* Whether the awaiting side already has its answer (a cancel, most often):
 * then the result has nowhere to go.  Only a watched future can be done. */
static int op_abandoned(OpObject *op)
{
    if (op->abandoned)
        return 1;
    if (!op->watching)
        return 0;
    PyObject *r = PyObject_CallMethodNoArgs(op->future, op->engine->state->str_done);
    int done = r == NULL ? 1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (done != 0)
        PyErr_Clear();
    return done != 0;
}

/* The outcome for the future: a value, or (*failed set) an exception. */
static PyObject *op_outcome(OpObject *op, int64_t res, int *failed)
{
    *failed = res < 0;
    PyObject *outcome = res < 0 ? op_oserror(op, (int)-res) : op_value(op, res);
    if (outcome != NULL)
        return outcome;
    /* Building the value failed (MemoryError, say): that becomes the outcome. */
    PyObject *type, *tb;
    PyErr_Fetch(&type, &outcome, &tb);
    PyErr_NormalizeException(&type, &outcome, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    *failed = 1;
    if (op->kind == OP_OPEN && res >= 0)
        close((int)res);
    return outcome;
}

/* Hands the op's timeline to the engine's tracer (tracing on only). */
void op_emit_trace(OpObject *op)
{
    PyObject *tracer = op->engine->tracer;
    struct op_times *t = op->times;
    op->times = NULL; /* once */
    if (tracer == NULL) {
        PyMem_Free(t);
        return;
    }
    PyObject *exc_type, *exc, *tb;
    PyErr_Fetch(&exc_type, &exc, &tb);
#define RL_TIME(v) (v) ? PyLong_FromLongLong(v) : Py_NewRef(Py_None)
    PyObject *record = Py_BuildValue(
        "{sssisLsOsOsNsNsNsNsNsksN}", "op", op->name, "fd", op->fd, "result", (long long)t->result,
        "inline", t->inline_ ? Py_True : Py_False, "nowait", t->nowait ? Py_True : Py_False, "submitted", RL_TIME(t->submitted),
        "returned", RL_TIME(t->returned), "reaped", RL_TIME(t->reaped), "resolved", RL_TIME(t->resolved),
        "resumed", RL_TIME(t->resumed), "thread", t->submit_thread,
        "reap_thread", t->reap_thread ? PyLong_FromUnsignedLong(t->reap_thread) : Py_NewRef(Py_None));
#undef RL_TIME
    PyObject *r = record ? PyObject_CallOneArg(tracer, record) : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable(tracer);
    Py_XDECREF(r);
    Py_XDECREF(record);
    PyMem_Free(t);
    PyErr_Restore(exc_type, exc, tb);
}

/* Delivers the outcome to the future, frees what the kernel held, and drops
 * the ring's reference.  res >= 0: success; res < 0: -errno. */
void op_finish(OpObject *op, int64_t res)
{
    EngineObject *engine = op->engine;
    ringlet_state *st = engine->state;
    PyObject *exc_type, *exc, *tb;
    PyErr_Fetch(&exc_type, &exc, &tb); /* a continuation must not clobber the caller's error */
    op->finished = 1;
    if (op->times) {
        op->times->reaped = ringlet_now_ns();
        op->times->reap_thread = PyThread_get_thread_ident();
        op->times->result = res;
    }

    if (engine->shutting_down || op_abandoned(op)) {
        /* Nobody will see the result; a descriptor nobody will close is closed here. */
        if (op->kind == OP_OPEN && res >= 0)
            close((int)res);
        if (op->times)
            op_emit_trace(op);
    } else if (op->future == NULL) {
        /* Completed inside the submitting call: op_launch hands it over. */
        int failed;
        op->outcome = op_outcome(op, res, &failed);
        op->failed = (uint8_t)failed;
    } else {
        /* A traced op stays a done callback: it runs first, right before the
         * awaiting task resumes, and stamps that moment. */
        if (op->watching && !op->times) {
            PyObject *r = PyObject_CallMethodOneArg(op->future, st->str_remove_done_callback, (PyObject *)op);
            Py_XDECREF(r);
            op->watching = 0;
        }
        int failed;
        PyObject *outcome = op_outcome(op, res, &failed);
        PyObject *r = outcome == NULL ? NULL
                      : PyObject_CallMethodOneArg(op->future, failed ? st->str_set_exception : st->str_set_result,
                                                  outcome);
        if (r == NULL)
            PyErr_WriteUnraisable(op->future);
        Py_XDECREF(r);
        Py_XDECREF(outcome);
        if (op->times)
            op->times->resolved = ringlet_now_ns();
    }
    op_release(op);
    /* The future may still hold this op among its callbacks (a cancelled or
     * traced one): let go of the future so the two make no cycle. */
    Py_CLEAR(op->future);
    PyErr_Restore(exc_type, exc, tb);
    Py_DECREF(op); /* the ring's reference */
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

int op_queue_io(OpObject *op)
{
    const struct kernel_io *io = &op->io;
    size_t left = io->len - op->done;
    unsigned len = left > RL_MAX_DIRECT ? RL_MAX_DIRECT : (unsigned)left;
    int64_t offset = io->offset < 0 ? -1 : io->offset + (int64_t)op->done;
    if (op->kind == OP_WRITE)
        return rl_op_write(&op->engine->ring, &op->cell, op->fd, io->buf + op->done, len, offset);
    if (op->offload)
        return rl_op_read_offloaded(&op->engine->ring, &op->cell, op->fd, io->buf, len, offset);
    return rl_op_read(&op->engine->ring, &op->cell, op->fd, io->buf, len, offset);
}

void op_complete(struct rl_cell *cell)
{
    OpObject *op = OP_FROM_CELL(cell);
    int64_t res = cell->result;
    int going_on = !op->engine->shutting_down && !op->abandoned;
    if (res == -EAGAIN && going_on) {
        /* The kernel had no room for it (or a test injected EAGAIN): again. */
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
    }
    if (op->moves_position) { /* past what moved, as read(2)/write(2) leave it */
        size_t moved = op->kind == OP_WRITE ? op->done : res > 0 ? (size_t)res : 0;
        lseek(op->fd, (off_t)(op->offset + (int64_t)moved), SEEK_SET);
    }
    op_finish(op, res);
}

void op_batch_part_complete(struct rl_cell *cell)
{
    struct batch_part *part = (struct batch_part *)cell;
    OpObject *op = part->op;
    int res = cell->result;
    PyObject **item = &op->u.batch.items[part->index];
    if (res == -EAGAIN && !op->engine->shutting_down && !op->abandoned &&
        rl_op_read(&op->engine->ring, cell, op->fd, PyBytes_AS_STRING(*item), (unsigned)PyBytes_GET_SIZE(*item),
                   part->offset) == 0)
        return; /* again, as op_complete does */
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

void op_copy_done(struct rl_copy *copy, int64_t result)
{
    op_finish((OpObject *)copy->owner, result);
}

/* Calls future.set_result(outcome) or set_exception(outcome); 0 or -1. */
static int op_resolve(OpObject *op, PyObject *future, PyObject *outcome, int failed)
{
    ringlet_state *st = op->engine->state;
    PyObject *r = PyObject_CallMethodOneArg(future, failed ? st->str_set_exception : st->str_set_result, outcome);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The inline outcome as the caller receives it: a done future, or (no
 * future wanted) a Ready holding the value, or the exception raised now. */
static PyObject *op_hand_over(OpObject *op, int want_future)
{
    PyObject *outcome = op->outcome, *result = NULL;
    op->outcome = NULL;
    if (outcome == NULL) {
        PyErr_SetString(PyExc_SystemError, "ringlet: an operation completed without an outcome");
        return NULL;
    }
    int large_read = (op->kind == OP_READ || op->kind == OP_READINTO) && op->length >= RL_OFFLOAD_MIN;
    if (large_read || engine_must_yield(op->engine)) {
        /* Delivered through the loop: the awaiting task yields once. */
        result = op_make_future(op);
        PyObject *args = result ? Py_BuildValue("(OOO)", result, outcome, op->failed ? Py_True : Py_False) : NULL;
        if (args == NULL || engine_call_soon(op->engine, op->engine->state->resolve_later, args) < 0)
            Py_CLEAR(result);
        Py_XDECREF(args);
    } else if (want_future) {
        result = op_make_future(op);
        if (result && op_resolve(op, result, outcome, op->failed) < 0)
            Py_CLEAR(result);
    } else if (op->failed) {
        PyErr_SetObject((PyObject *)Py_TYPE(outcome), outcome);
    } else {
        result = ready_new(op->engine->state, outcome);
    }
    Py_DECREF(outcome);
    return result;
}

/* Still pending after its submission: a future to await, watched so that a
 * cancel reaches the kernel.  ret: what the submission returned. */
static PyObject *op_pending_future(OpObject *op, int ret)
{
    PyObject *future = op_make_future(op);
    if (future == NULL) {
        op->abandoned = 1; /* the completion still comes; its outcome is dropped */
        return NULL;
    }
    op->future = Py_NewRef(future);
    PyObject *r;
    if (ret < 0) {
        /* The SQE stays queued and may still run: report the failure now, keep the memory. */
        op->abandoned = 1;
        PyObject *exc = ringlet_oserror(-ret, NULL);
        r = exc && op_resolve(op, future, exc, 1) == 0 ? Py_None : NULL;
        Py_XDECREF(exc);
    } else {
        ringlet_state *st = op->engine->state;
        PyObject *argv[3] = {future, (PyObject *)op, st->callback_context};
        r = PyObject_VectorcallMethod(st->str_add_done_callback, argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      st->kwnames_context);
        Py_XDECREF(r);
        op->watching = r != NULL;
    }
    if (r == NULL)
        Py_CLEAR(future);
    return future;
}

PyObject *op_launch(OpObject *op, int want_future)
{
    int ret = 0;
    if (!op->finished) { /* an empty batch finishes before any submission */
        Py_INCREF(op); /* the ring's reference, dropped by op_finish */
        if (op->times) {
            op->times->submitted = ringlet_now_ns();
            op->times->submit_thread = PyThread_get_thread_ident();
        }
        /* O_DIRECT never completes inline: its SQE waits for the end of the
         * loop tick and goes with the others in one io_uring_enter. */
        ret = op->direct || op->offload ? engine_schedule_flush(op->engine)
                                        : rl_ring_submit_and_reap(&op->engine->ring);
        if (ret == -2)
            ret = -EIO; /* scheduling failed: reported as the op's error, the SQE stays queued */
        if (op->times) {
            op->times->returned = ringlet_now_ns();
            if (op->finished) { /* completed inline: awaiting it will not suspend */
                op->times->inline_ = 1;
                op->times->resolved = op->times->resumed = op->times->returned;
                op_emit_trace(op);
            }
        }
    }
    PyObject *result = op->finished ? op_hand_over(op, want_future) : op_pending_future(op, ret);
    Py_DECREF(op); /* the caller's reference */
    return result;
}

/* Called by the future when it is done: a cancelled wait cancels the kernel's work too. */
static PyObject *op_call(OpObject *op, PyObject *args, PyObject *kwargs)
{
    (void)args;
    (void)kwargs;
    op->watching = 0; /* the future has dropped its callbacks */
    if (op->finished) { /* a traced op, resolved: its task resumes right after this */
        if (op->times) {
            op->times->resumed = ringlet_now_ns();
            op_emit_trace(op);
        }
        Py_RETURN_NONE;
    }
    op->abandoned = 1;
    /* A forked child must not touch the parent's ring (its memory is not
     * mapped in the child): the parent's kernel work is the parent's. */
    if (!op->engine->ring_open || op->engine->fork_generation != ringlet_fork_generation())
        Py_RETURN_NONE;
    if (op->kind == OP_COPY)
        rl_copy_cancel(op->u.copy);
    else if (op->kind == OP_BATCH)
        for (Py_ssize_t i = 0; i < op->u.batch.count; i++)
            rl_ring_cancel(&op->engine->ring, &op->u.batch.parts[i].cell);
    else
        rl_ring_cancel(&op->engine->ring, &op->cell);
    Py_RETURN_NONE;
}

static void op_dealloc(OpObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    op_release(op);
    Py_CLEAR(op->future);
    Py_CLEAR(op->outcome);
    PyMem_Free(op->times);
    Py_CLEAR(op->filename);
    Py_CLEAR(op->filename2);
    Py_CLEAR(op->engine);
    PyObject_Free(op);
    ringlet_live.ops--;
    Py_DECREF(tp);
}

static PyType_Slot op_slots[] = {
    {Py_tp_doc, "One operation in flight: the cell that holds its state until the kernel completes it."},
    {Py_tp_call, op_call},
    {Py_tp_dealloc, op_dealloc},
    {0, NULL},
};

PyType_Spec ringlet_op_spec = {
    .name = "ringlet._ringlet.Op",
    .basicsize = sizeof(OpObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = op_slots,
};

/* Ready: the result of an operation the kernel completed inside the
 * submitting call, awaitable without a future: awaiting it gives the value at
 * once.  Only ringlet's own coroutines see it (Engine._read and friends). */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} ReadyObject;

PyObject *ready_new(ringlet_state *st, PyObject *value)
{
    ReadyObject *ready = PyObject_New(ReadyObject, st->ReadyType);
    if (ready)
        ready->value = Py_NewRef(value);
    return (PyObject *)ready;
}

static PyObject *ready_await(PyObject *self) { return Py_NewRef(self); }

static PyObject *ready_iternext(ReadyObject *self)
{
    /* StopIteration(value) built explicitly: a tuple value must not become its args. */
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, self->value);
    if (stop) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult ready_send(ReadyObject *self, PyObject *Py_UNUSED(arg), PyObject **result)
{
    *result = Py_NewRef(self->value);
    return PYGEN_RETURN;
}
#endif

static void ready_dealloc(ReadyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_DECREF(self->value);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot ready_slots[] = {
    {Py_tp_doc, "An operation's result, already there: awaiting it returns the value at once."},
    {Py_am_await, ready_await},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, ready_send},
#endif
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ready_iternext},
    {Py_tp_dealloc, ready_dealloc},
    {0, NULL},
};

PyType_Spec ringlet_ready_spec = {
    .name = "ringlet._ringlet.Ready",
    .basicsize = sizeof(ReadyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ready_slots,
};
