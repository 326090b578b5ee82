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
#include <unistd.h>

struct ringlet_live ringlet_live;

/* The continuation of an op whose completion needs no more work (open,
 * close, statx, path operations...); reads and writes have op_io.c's. */
static void op_complete(struct rl_cell *cell)
{
    op_finish(OP_FROM_CELL(cell), cell->result);
}

OpObject *op_new(EngineObject *engine, int kind, const char *name)
{
    if (rl_fault_hit(RL_FAULT_ALLOC))
        return (OpObject *)PyErr_NoMemory();
    OpObject *op = PyObject_GC_New(OpObject, engine->state->OpType);
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
    PyObject_GC_Track(op);
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
        rl_bounce_put(&op->engine->bounce_pool, op->bounce, op->bounce_size);
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

/* Whether the future is done; an error asking counts as done. */
static int op_future_done(OpObject *op)
{
    PyObject *r = PyObject_CallMethodNoArgs(op->future, op->engine->state->str_done);
    int done = r == NULL ? -1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (done < 0)
        loop_note_error(op->engine, op->future);
    return done != 0;
}

/* Whether the awaiting side already has its answer (a cancel, most often):
 * then the result has nowhere to go.  Only a watched future can be done
 * here; an awaited op's (see op_cancelled_meanwhile) is not asked. */
static int op_abandoned(OpObject *op)
{
    if (op->abandoned)
        return 1;
    return op->watching && op_future_done(op);
}

/* Whether resolving an awaited op's future failed because its task had
 * cancelled it and not yet run to throw into the op: asyncio's
 * InvalidStateError (the outcome is dropped, as an abandoned op's).  Asking
 * only when set_result fails saves a done() per completion. */
static int op_cancelled_meanwhile(OpObject *op)
{
    if (!op->awaited)
        return 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *exceptions = PyImport_ImportModule("asyncio.exceptions");
    PyObject *invalid = exceptions ? PyObject_GetAttrString(exceptions, "InvalidStateError") : NULL;
    Py_XDECREF(exceptions);
    PyErr_Clear();
    int meanwhile = invalid && type && PyErr_GivenExceptionMatches(type, invalid) && op_future_done(op);
    Py_XDECREF(invalid);
    PyErr_Restore(type, value, tb);
    return meanwhile;
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
    Py_INCREF(tracer); /* the tracer may replace itself (or shut the engine down) while it runs */
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
        loop_note_error(op->engine, tracer);
    Py_XDECREF(r);
    Py_XDECREF(record);
    Py_DECREF(tracer);
    PyMem_Free(t);
    PyErr_Restore(exc_type, exc, tb);
}

/* Calls future.set_result(outcome) or set_exception(outcome); 0 or -1. */
static int op_resolve(OpObject *op, PyObject *future, PyObject *outcome, int failed)
{
    ringlet_state *st = op->engine->state;
    PyObject *r = PyObject_CallMethodOneArg(future, failed ? st->str_set_exception : st->str_set_result, outcome);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Resolves the pending future, from a drain.  Signal handlers pending now
 * run first, here: inside set_result (in the loop's call_soon) a
 * KeyboardInterrupt would leave the future done without its callbacks
 * scheduled, and its task would never resume.  A BaseException raised by
 * set_result itself is kept to leave the loop once the drain is over (see
 * loop_note_error); the future is then set again if it is still pending, so
 * that none is left unresolved. */
static void op_deliver(OpObject *op, PyObject *outcome, int failed)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        loop_check_signals(op->engine);
        if (op_resolve(op, op->future, outcome, failed) == 0)
            return;
        if (op_cancelled_meanwhile(op)) {
            PyErr_Clear();
            return;
        }
        int interrupted = !PyErr_ExceptionMatches(PyExc_Exception);
        loop_note_error(op->engine, op->future);
        if (!interrupted || op_future_done(op))
            return;
    }
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
            if (r == NULL)
                loop_note_error(engine, op->future);
            Py_XDECREF(r);
            op->watching = 0;
        }
        int failed;
        PyObject *outcome = op_outcome(op, res, &failed);
        if (outcome != NULL)
            op_deliver(op, outcome, failed);
        else
            loop_note_error(engine, op->future);
        Py_XDECREF(outcome);
        if (op->times)
            op->times->resolved = ringlet_now_ns();
    }
    op_release(op);
    /* The future may still hold this op among its callbacks (a cancelled or
     * traced one): let go of the future so the two make no cycle.  An awaited
     * op's future holds no op, and its awaiting side may not have begun. */
    if (!op->awaited)
        Py_CLEAR(op->future);
    PyErr_Restore(exc_type, exc, tb);
    Py_DECREF(op); /* the ring's reference */
}

/* The inline outcome as the caller receives it: a done future, or (no
 * future wanted) a Ready holding the value, or the exception raised now. */
static PyObject *op_hand_over(OpObject *op, int want_future)
{
    PyObject *outcome = op->outcome, *result = NULL;
    op->outcome = NULL;
    if (outcome == NULL) {
        /* The outcome was dropped: the engine was shut down during the call
         * (by a tracer, a signal handler, a __del__). */
        PyErr_SetString(op->engine->shutting_down ? PyExc_RuntimeError : PyExc_SystemError,
                        op->engine->shutting_down ? "ringlet: this engine is closed"
                                                  : "ringlet: an operation completed without an outcome");
        return NULL;
    }
    int large_read = (op->kind == OP_READ || op->kind == OP_READINTO) && op->length >= RL_OFFLOAD_MIN;
    int turn = large_read || loop_must_yield(op->engine);
    if (turn && !want_future && !op->failed && (op->kind == OP_READ || op->kind == OP_READINTO) &&
        op->offset >= 0 && !op->moves_position) {
        /* ringlet's own coroutine awaits it: a bare yield is the cheapest turn of the loop.  Only
         * for positional reads: a cancel during the turn drops the value, which a stream could not
         * give again (a stream's reader keeps a pending future instead). */
        result = outcome_after_a_turn(op->engine->state, outcome);
    } else if (turn) {
        /* Delivered through the loop: the awaiting task yields once. */
        result = op_make_future(op);
        PyObject *args = result ? Py_BuildValue("(OOO)", result, outcome, op->failed ? Py_True : Py_False) : NULL;
        if (args == NULL || loop_call_soon(op->engine, op->engine->state->resolve_later, args) < 0)
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
 * cancel reaches the kernel; or (want_future false, a positional read, not
 * traced) the op itself, awaited as a coroutine (op_send): a
 * cancelled task throws into it, which cancels, so the future needs no done
 * callback to add and remove again (nor the task's a list of callbacks).  A
 * stream's read and a write keep the future: their callers shield it across
 * a cancel (a write lands anyway; a stream's bytes must not be lost).
 * ret: what the submission returned. */
static PyObject *op_pending_future(OpObject *op, int ret, int want_future)
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
    } else if (!want_future && !op->times && op->offset >= 0 && !op->moves_position &&
               (op->kind == OP_READ || op->kind == OP_READINTO)) {
        op->awaited = 1;
        Py_DECREF(future);
        return Py_NewRef(op);
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

PyObject *op_launch(OpObject *op, int queued, int want_future)
{
    if (queued < 0) {
        Py_DECREF(op);
        return PyErr_NoMemory();
    }
    int ret = 0;
    if (!op->finished) { /* an empty batch finishes before any submission */
        Py_INCREF(op); /* the ring's reference, dropped by op_finish */
        if (op->times) {
            op->times->submitted = ringlet_now_ns();
            op->times->submit_thread = PyThread_get_thread_ident();
        }
        /* O_DIRECT never completes inline: its SQE waits for the end of the
         * loop tick and goes with the others in one io_uring_enter. */
        ret = op->direct || op->offload ? loop_schedule_flush(op->engine)
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
    if (!op->finished && op->engine->shutting_down) {
        /* Shut down during the call (by a tracer, a signal handler): a future
         * would never be resolved.  The op stays the kernel's, as shutdown says. */
        op->abandoned = 1;
        Py_DECREF(op);
        PyErr_SetString(PyExc_RuntimeError, "ringlet: this engine is closed");
        return NULL;
    }
    PyObject *result = op->finished ? op_hand_over(op, want_future) : op_pending_future(op, ret, want_future);
    Py_DECREF(op); /* the caller's reference */
    return result;
}

PyObject *op_finish_now(OpObject *op, int64_t res, int want_future)
{
    Py_INCREF(op); /* standing in for the ring's reference, which op_finish drops */
    op_finish(op, res);
    return op_launch(op, 0, want_future);
}

/* Nobody awaits the op any more: its outcome is dropped, and the kernel's
 * work is cancelled (the memory stays the op's until the completion). */
static void op_cancel(OpObject *op)
{
    op->abandoned = 1;
    /* A forked child must not touch the parent's ring (its memory is not
     * mapped in the child): the parent's kernel work is the parent's. */
    if (!op->engine->ring_open || op->engine->fork_generation != ringlet_fork_generation())
        return;
    if (op_offload_withdraw(op))
        return; /* it never reached the kernel */
    if (op->kind == OP_COPY)
        rl_copy_cancel(op->u.copy);
    else if (op->kind == OP_BATCH)
        for (Py_ssize_t i = 0; i < op->u.batch.count; i++)
            rl_ring_cancel(&op->engine->ring, &op->u.batch.parts[i].cell);
    else
        rl_ring_cancel(&op->engine->ring, &op->cell);
    if (op->write_file)
        write_file_cancel(op);
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
        /* A loop callback: what the tracer raised (KeyboardInterrupt) leaves the loop from here. */
        return loop_raise_interrupt(op->engine) < 0 ? NULL : Py_NewRef(Py_None);
    }
    op_cancel(op);
    Py_RETURN_NONE;
}

/* ---- an awaited op: a coroutine that waits for its future ------------------ */

static PyObject *op_await(OpObject *op) { return Py_NewRef(op); }

/* The wait ended before the completion (an error thrown in, close): cancel. */
static void op_await_ended(OpObject *op)
{
    if (!op->finished && !op->abandoned)
        op_cancel(op);
    Py_CLEAR(op->waiter);
    Py_CLEAR(op->future);
}

static PySendResult op_send(OpObject *op, PyObject *arg, PyObject **result)
{
    if (!op->awaited || op->future == NULL) {
        PyErr_SetString(PyExc_RuntimeError, op->awaited ? "cannot reuse already awaited coroutine"
                                                        : "ringlet: this operation is not awaitable");
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (op->waiter == NULL) {
        PyAsyncMethods *am = Py_TYPE(op->future)->tp_as_async;
        op->waiter = am && am->am_await ? am->am_await(op->future)
                                        : PyObject_CallMethod(op->future, "__await__", NULL);
        if (op->waiter == NULL) {
            op_await_ended(op);
            *result = NULL;
            return PYGEN_ERROR;
        }
    }
    PySendResult r = PyIter_Send(op->waiter, arg, result);
    if (r != PYGEN_NEXT)
        op_await_ended(op);
    return r;
}

static PyObject *op_iternext(OpObject *op)
{
    PyObject *result;
    return op_send(op, Py_None, &result) == PYGEN_RETURN ? ringlet_return_value(result) : result;
}

static PyObject *op_method_send(OpObject *op, PyObject *arg)
{
    PyObject *result;
    return op_send(op, arg, &result) == PYGEN_RETURN ? ringlet_return_value(result) : result;
}

/* throw(exc) or throw(type, value=None, traceback=None): the awaiting task
 * gives up (cancelled, most often), so the kernel's work is cancelled; the
 * exception goes on through the future's wait, or is raised here. */
static PyObject *op_throw(OpObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    PyObject *waiter = op->waiter;
    op->waiter = NULL;
    if (op->awaited) /* else an op reached through its future's callbacks: not this op's wait to end */
        op_await_ended(op);
    if (waiter) {
        PyObject *r = PyObject_VectorcallMethod(op->engine->state->str_throw, (PyObject *[]){waiter, args[0],
                                                nargs > 1 ? args[1] : NULL, nargs > 2 ? args[2] : NULL},
                                                (size_t)nargs + 1, NULL);
        Py_DECREF(waiter);
        return r;
    }
    PyObject *typ = args[0], *val = nargs > 1 ? args[1] : Py_None;
    if (PyExceptionInstance_Check(typ))
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    else if (PyExceptionClass_Check(typ))
        PyErr_SetObject(typ, val);
    else
        PyErr_SetString(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException");
    return NULL;
}

static PyObject *op_close(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    if (op->awaited)
        op_await_ended(op);
    Py_RETURN_NONE;
}

static PyMethodDef op_methods[] = {
    {"send", (PyCFunction)op_method_send, METH_O, "send(value): as a coroutine's send()."},
    {"throw", (PyCFunction)(void (*)(void))op_throw, METH_FASTCALL,
     "throw(exc): as a coroutine's throw(); the operation is cancelled."},
    {"close", (PyCFunction)op_close, METH_NOARGS, "close(): stop waiting; the operation is cancelled."},
    {NULL, NULL, 0, NULL},
};

/* The GC sees what an op holds.  An op in flight is never collected: the
 * ring's reference is one the GC cannot account for, so the op (and all it
 * holds) stays reachable until its completion. */
static int op_traverse(OpObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(op->engine);
    Py_VISIT(op->future);
    Py_VISIT(op->waiter);
    Py_VISIT(op->outcome);
    Py_VISIT(op->obj);
    Py_VISIT(op->obj2);
    Py_VISIT(op->filename);
    Py_VISIT(op->filename2);
    if (op->kind == OP_READINTO || op->kind == OP_WRITE)
        Py_VISIT(op->u.view.obj);
    if (op->kind == OP_BATCH)
        for (Py_ssize_t i = 0; op->u.batch.items && i < op->u.batch.count; i++)
            Py_VISIT(op->u.batch.items[i]);
    return 0;
}

/* Drops only what the kernel never touches and the completion does not
 * need: the memory the kernel may write (obj, the held buffer, the batch's
 * bytes) and the engine stay until op_release after the completion. */
static int op_clear(OpObject *op)
{
    Py_CLEAR(op->future);
    Py_CLEAR(op->waiter);
    Py_CLEAR(op->outcome);
    Py_CLEAR(op->filename);
    Py_CLEAR(op->filename2);
    return 0;
}

static void op_dealloc(OpObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    op_release(op);
    Py_CLEAR(op->future);
    Py_CLEAR(op->waiter);
    Py_CLEAR(op->outcome);
    PyMem_Free(op->times);
    Py_CLEAR(op->filename);
    Py_CLEAR(op->filename2);
    Py_CLEAR(op->engine);
    PyObject_GC_Del(op);
    ringlet_live.ops--;
    Py_DECREF(tp);
}

static PyType_Slot op_slots[] = {
    {Py_tp_doc, "One operation in flight: the cell that holds its state until the kernel completes it."},
    {Py_tp_call, op_call},
    {Py_am_await, op_await},
    {Py_am_send, op_send},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, op_iternext},
    {Py_tp_methods, op_methods},
    {Py_tp_dealloc, op_dealloc},
    {Py_tp_traverse, op_traverse},
    {Py_tp_clear, op_clear},
    {0, NULL},
};

PyType_Spec ringlet_op_spec = {
    .name = "ringlet._ringlet.Op",
    .basicsize = sizeof(OpObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = op_slots,
};
