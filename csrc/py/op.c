/* Op: the Python side of a task cell.  Created per operation; the ring holds
 * one reference from submission until the completion is reaped, so every
 * buffer the kernel may touch stays alive even if the awaiting task was
 * cancelled long before. */
#define _GNU_SOURCE 1 /* struct statx */
#include "binding.h"
#include "fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct ringlet_live ringlet_live;

static void op_wake(OpObject *op);

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
        if (op->u.copy.run) {
            rl_copy_free(op->u.copy.run);
            ringlet_live.copies--;
        }
        op->u.copy.run = NULL;
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
        if ((size_t)res < op->length && bytes_shrink(&op->obj, (Py_ssize_t)res) < 0)
            return NULL; /* bytes_shrink cleared op->obj */
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
 * here; an awaited op that was cancelled is abandoned. */
static int op_abandoned(OpObject *op)
{
    if (op->abandoned)
        return 1;
    return op->watching && op_future_done(op);
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
        int interrupted = !PyErr_ExceptionMatches(PyExc_Exception);
        loop_note_error(op->engine, op->future);
        if (!interrupted || op_future_done(op))
            return;
    }
}

int64_t close_outcome(int fd, int64_t res)
{
    if (res != -ECANCELED)
        return res;
    return close(fd) == 0 ? 0 : -errno;
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
    if (op->kind == OP_WRITE)
        op_writes_remove(op);
    if (op->kind == OP_OPEN && res >= 0) /* a new file under a number perhaps closed by os.close: looked at anew */
        rl_nowait_forget(&engine->nowait, (int)res);
    if (op->times) {
        op->times->reaped = rl_now_ns();
        op->times->reap_thread = PyThread_get_thread_ident();
        op->times->result = res;
    }

    if (engine->shutting_down || op_abandoned(op)) {
        /* Nobody will see the result; a descriptor nobody will close is closed here. */
        if (op->kind == OP_OPEN && res >= 0)
            close((int)res);
        if (op->times)
            op_emit_trace(op);
    } else if (op->awaited) {
        /* Its own future: done now; the callbacks (its task's wake-up) run in the engine's next _wake. */
        int failed;
        op->outcome = op_outcome(op, res, &failed);
        op->failed = (uint8_t)failed;
        op->fut_state = OP_DONE;
        op_wake(op);
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
            op->times->resolved = rl_now_ns();
    }
    op_release(op);
    op_release_fd(op);
    /* The future may still hold this op among its callbacks (a cancelled or
     * traced one): let go of the future so the two make no cycle. */
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
 * traced) the op itself, awaited as a coroutine that is its own future (see
 * "an awaited op" below): no asyncio.Future, no done callback to add and
 * remove again, no Handle per completion.  A stream's read and a write keep
 * the future: their callers shield it across a cancel (a write lands anyway;
 * a stream's bytes must not be lost).  ret: what the submission returned. */
static PyObject *op_pending_future(OpObject *op, int ret, int want_future)
{
    if (ret >= 0 && !want_future && !op->times && op->offset >= 0 && !op->moves_position &&
        (op->kind == OP_READ || op->kind == OP_READINTO)) {
        op->awaited = 1;
        return Py_NewRef(op);
    }
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
            op->times->submitted = rl_now_ns();
            op->times->submit_thread = PyThread_get_thread_ident();
        }
        /* O_DIRECT never completes inline.  Made by a task _drain_and_wake
         * woke, it goes to the kernel at once, as fio's reads do: the device
         * starts on it while the drain wakes the next tasks (held for one
         * io_uring_enter at the drain's end, 64 tasks on a virtio disk read
         * ~6% less, for ~0.5 us less CPU a read; in groups of 2, 4 or 8:
         * 0.3-0.6 us less CPU a read, no gain in IOPS above the disk's own
         * drift).  That disk answers the 64 reads as one convoy (one interrupt
         * per ~60-78 reads, for fio too), so a task's next read waits for the
         * tasks woken before it: the CPU a read costs here is the turnaround
         * (2026-12-02: ~4.2 us against fio's ~2.3).  Made elsewhere, its SQE
         * waits for the end of the loop tick and goes with the others in one
         * io_uring_enter. */
        /* A close given to a kernel worker is not reaped in the call either:
         * without DEFER_TASKRUN the kernel posts a fast worker's completion
         * as the enter returns, and the close would seem done inline, its
         * caller never waiting (a cancel then landing after it). */
        if ((op->direct && op->engine->direct_at_once) || op->close_in_worker) {
            int taken = rl_ring_submit(&op->engine->ring);
            ret = taken < 0 ? taken : 0;
        } else
            ret = op->direct || op->offload ? loop_schedule_flush(op->engine)
                                            : rl_ring_submit_and_reap(&op->engine->ring);
        if (ret == -2)
            ret = -EIO; /* scheduling failed: reported as the op's error, the SQE stays queued */
        if (op->times) {
            op->times->returned = rl_now_ns();
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
        rl_copy_cancel(op->u.copy.run);
    else if (op->kind == OP_BATCH)
        for (Py_ssize_t i = 0; i < op->u.batch.count; i++)
            rl_ring_cancel(&op->engine->ring, &op->u.batch.parts[i].cell);
    else
        rl_ring_cancel(&op->engine->ring, &op->cell);
    if (op->chain)
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
            op->times->resumed = rl_now_ns();
            op_emit_trace(op);
        }
        /* A loop callback: what the tracer raised (KeyboardInterrupt) leaves the loop from here. */
        return loop_raise_interrupt(op->engine) < 0 ? NULL : Py_NewRef(Py_None);
    }
    op_cancel(op);
    Py_RETURN_NONE;
}

/* ---- an awaited op: a coroutine that is its own future ----------------------
 * A pending positional read is awaited as the op itself.  Its first send
 * yields the op to the task, which takes it for a future (it has
 * _asyncio_future_blocking, get_loop, add_done_callback, result, cancel, as
 * asyncio.Future does): the task adds its wake-up as a done callback and, on a
 * cancel, calls cancel().  The completion makes the op done in the drain, and
 * the done callbacks of all the ops a drain completed run from one loop
 * callback (engine._wake), in completion order, each in its own context: one
 * Handle per drain instead of a Future, a set_result and a Handle per read.
 * As with asyncio's call_soon, no callback runs inside the call that completed
 * its op.  Until it is yielded, _asyncio_future_blocking is None, so asyncio
 * takes the op for a coroutine (ensure_future, gather and wait_for wrap it in
 * a task, as before). */

static int op_has_callbacks(const OpObject *op)
{
    return op->callback != NULL || (op->callbacks != NULL && PyList_GET_SIZE(op->callbacks) > 0);
}

/* call_soon(engine._wake) once until it has run; 0, or -1 with an exception. */
static int engine_schedule_wake(EngineObject *engine)
{
    if (engine->wake_scheduled)
        return 0;
    /* Signal handlers pending now run first (as before a set_result), so that
     * an interrupt does not land inside call_soon and leave the wake-up unscheduled. */
    loop_check_signals(engine);
    return loop_call_soon_once(engine, "_wake", &engine->wake_scheduled);
}

/* The op is done (or has a callback added once done): its callbacks run in the engine's next _wake. */
static void op_wake(OpObject *op)
{
    if (op->wake_queued || !op_has_callbacks(op))
        return;
    EngineObject *engine = op->engine;
    if (engine->woken == NULL && (engine->woken = PyList_New(0)) == NULL) {
        loop_note_error(engine, (PyObject *)op);
        return;
    }
    if (PyList_Append(engine->woken, (PyObject *)op) < 0) {
        loop_note_error(engine, (PyObject *)op);
        return;
    }
    op->wake_queued = 1;
    if (engine->reaping_for_wake)
        return; /* _drain_and_wake runs them once its reaping is over */
    if (engine_schedule_wake(engine) < 0)
        loop_note_error(engine, (PyObject *)op); /* the next drain schedules it again */
}

void engine_retry_wake(EngineObject *engine)
{
    if (engine->woken != NULL && !engine->wake_scheduled && engine_schedule_wake(engine) < 0)
        loop_note_error(engine, NULL);
}

/* Runs the op's done callbacks, in the order they were added, each in its
 * context.  -1: one raised SystemExit or KeyboardInterrupt (left set; the
 * callbacks not run yet stay the op's), as asyncio's Handle lets them out. */
static int op_run_callbacks(OpObject *op)
{
    while (op_has_callbacks(op)) {
        PyObject *callback, *context;
        if (op->callback != NULL) {
            callback = op->callback;
            context = op->callback_context;
            op->callback = op->callback_context = NULL;
        } else {
            PyObject *pair = PyList_GET_ITEM(op->callbacks, 0);
            callback = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
            context = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
            if (PyList_SetSlice(op->callbacks, 0, 1, NULL) < 0) {
                Py_DECREF(callback);
                Py_DECREF(context);
                return -1;
            }
        }
        PyObject *r = NULL;
        if (PyContext_Enter(context) == 0) {
            r = PyObject_CallOneArg(callback, (PyObject *)op);
            if (PyContext_Exit(context) < 0)
                Py_CLEAR(r);
        }
        if (r == NULL) {
            if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
                Py_DECREF(callback);
                Py_DECREF(context);
                return -1;
            }
            /* As asyncio's Handle does: to the loop's exception handler. */
            loop_report_error(op->engine, callback, "Exception in callback %R(%R)", callback, op);
        }
        Py_XDECREF(r);
        Py_DECREF(callback);
        Py_DECREF(context);
    }
    return 0;
}

PyObject *engine_wake_ops(EngineObject *engine)
{
    engine->wake_scheduled = 0;
    PyObject *woken = engine->woken;
    engine->woken = NULL; /* ops completed from here on go to the next _wake */
    if (woken == NULL)
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(woken);
    for (Py_ssize_t i = 0; i < n; i++) {
        OpObject *op = (OpObject *)PyList_GET_ITEM(woken, i);
        op->wake_queued = 0;
        if (op_run_callbacks(op) < 0) {
            /* An interrupt leaves the loop; the callbacks not run yet run in the next
             * _wake, ahead of any queued meanwhile (as the Handles left in the loop's queue would). */
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            Py_ssize_t first = op_has_callbacks(op) ? i : i + 1;
            PyObject *rest = PyList_GetSlice(woken, first, n);
            int kept = rest != NULL && (engine->woken != NULL ? PyList_SetSlice(engine->woken, 0, 0, rest) == 0
                                                              : (engine->woken = Py_NewRef(rest)) != NULL);
            Py_XDECREF(rest);
            if (kept) {
                for (Py_ssize_t j = first; j < n; j++)
                    ((OpObject *)PyList_GET_ITEM(woken, j))->wake_queued = 1;
                if (engine_schedule_wake(engine) < 0)
                    PyErr_WriteUnraisable((PyObject *)engine);
            } else {
                PyErr_WriteUnraisable((PyObject *)engine); /* no memory: those callbacks are lost */
            }
            PyErr_Restore(type, exc, tb);
            Py_DECREF(woken);
            return NULL;
        }
    }
    Py_DECREF(woken);
    Py_RETURN_NONE;
}

static PyObject *op_await(OpObject *op) { return Py_NewRef(op); }

/* The awaiting side stopped waiting (an error thrown in, close): cancel what the kernel still does. */
static void op_await_ended(OpObject *op)
{
    op->handed_over = 1;
    if (!op->finished && !op->abandoned)
        op_cancel(op);
    Py_CLEAR(op->outcome);
}

/* Raises the CancelledError of a cancelled op: a new one each time, as asyncio.Future does. */
static void op_raise_cancelled(OpObject *op)
{
    ringlet_state *st = op->engine->state;
    PyObject *exc = op->cancel_msg == NULL || op->cancel_msg == Py_None
                        ? PyObject_CallNoArgs(st->CancelledError)
                        : PyObject_CallOneArg(st->CancelledError, op->cancel_msg);
    if (exc != NULL) {
        PyErr_SetObject(st->CancelledError, exc);
        Py_DECREF(exc);
    }
}

/* Raises the op's error; each time with the traceback it had when set, as asyncio.Future does. */
static void op_raise_failure(OpObject *op)
{
    PyException_SetTraceback(op->outcome, Py_None);
    PyErr_SetObject((PyObject *)Py_TYPE(op->outcome), op->outcome);
}

static int op_check_awaited(OpObject *op)
{
    if (op->awaited)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "ringlet: this operation is not awaitable");
    return -1;
}

static PySendResult op_send(OpObject *op, PyObject *arg, PyObject **result)
{
    (void)arg;
    *result = NULL;
    if (op_check_awaited(op) < 0)
        return PYGEN_ERROR;
    if (op->handed_over) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return PYGEN_ERROR;
    }
    if (op->fut_state == OP_PENDING) {
        if (op->fut_blocking == 1) { /* as asyncio.Future's __await__: sent again without being done */
            PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
            op_await_ended(op);
            return PYGEN_ERROR;
        }
        op->fut_blocking = 1;
        *result = Py_NewRef(op); /* to the task, as a future to wait for */
        return PYGEN_NEXT;
    }
    op->handed_over = 1;
    if (op->fut_state == OP_CANCELLED) {
        op_raise_cancelled(op);
        return PYGEN_ERROR;
    }
    if (op->outcome == NULL) {
        PyErr_SetString(PyExc_SystemError, "ringlet: an operation completed without an outcome");
        return PYGEN_ERROR;
    }
    if (op->failed) {
        op_raise_failure(op);
        Py_CLEAR(op->outcome);
        return PYGEN_ERROR;
    }
    *result = op->outcome; /* handed over */
    op->outcome = NULL;
    return PYGEN_RETURN;
}

static PyObject *op_iternext(PyObject *op) { return ringlet_send(op, Py_None); }

/* throw(exc) or throw(type, value=None, traceback=None): the awaiting task
 * gives up (cancelled, most often), so the kernel's work is cancelled; the
 * exception is raised here. */
static PyObject *op_throw(OpObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    /* Not awaited: an op reached through its future's callbacks, not this op's wait to end. */
    if (op->awaited && THROW_ARGS_OK(nargs))
        op_await_ended(op);
    return ringlet_raise_thrown(args, nargs);
}

static PyObject *op_close(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    if (op->awaited)
        op_await_ended(op);
    Py_RETURN_NONE;
}

/* -- the future side, as the task uses it -- */

static PyObject *op_get_blocking(OpObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(op->fut_blocking == 0 ? Py_None : op->fut_blocking == 1 ? Py_True : Py_False);
}

static int op_set_blocking(OpObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    int b = value == NULL ? -1 : PyObject_IsTrue(value);
    if (b < 0) {
        if (value == NULL)
            PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    op->fut_blocking = b ? 1 : 2;
    return 0;
}

static PyObject *op_get_loop(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(PyWeakref_GetObject(op->engine->loop_ref));
}

static PyObject *op_done(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(op->fut_state != OP_PENDING);
}

static PyObject *op_cancelled(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(op->fut_state == OP_CANCELLED);
}

/* result(): the value (the await hands it over later), or the error raised. */
static PyObject *op_result(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    if (op_check_awaited(op) < 0)
        return NULL;
    if (op->fut_state == OP_PENDING) {
        PyErr_SetString(op->engine->state->InvalidStateError, "Result is not set.");
        return NULL;
    }
    if (op->fut_state == OP_CANCELLED) {
        op_raise_cancelled(op);
        return NULL;
    }
    if (op->outcome == NULL) {
        PyErr_SetString(op->engine->state->InvalidStateError, "ringlet: the result was handed over to the await");
        return NULL;
    }
    if (op->failed) {
        op_raise_failure(op);
        return NULL;
    }
    return Py_NewRef(op->outcome);
}

static PyObject *op_exception(OpObject *op, PyObject *Py_UNUSED(ignored))
{
    if (op_check_awaited(op) < 0)
        return NULL;
    if (op->fut_state == OP_PENDING) {
        PyErr_SetString(op->engine->state->InvalidStateError, "Exception is not set.");
        return NULL;
    }
    if (op->fut_state == OP_CANCELLED) {
        op_raise_cancelled(op);
        return NULL;
    }
    return Py_NewRef(op->failed && op->outcome ? op->outcome : Py_None);
}

/* add_done_callback(fn, *, context=None) */
static PyObject *op_add_done_callback(OpObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (op_check_awaited(op) < 0)
        return NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *context = Py_None;
    if (nargs != 1 || nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context") != 0)) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback(fn, *, context=None)");
        return NULL;
    }
    if (nkw == 1)
        context = args[1];
    PyObject *ctx = context == Py_None ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (ctx == NULL)
        return NULL;
    if (op->callback == NULL && (op->callbacks == NULL || PyList_GET_SIZE(op->callbacks) == 0)) {
        op->callback = Py_NewRef(args[0]);
        op->callback_context = ctx;
    } else {
        PyObject *pair = PyTuple_Pack(2, args[0], ctx);
        Py_DECREF(ctx);
        if (pair == NULL)
            return NULL;
        if (op->callbacks == NULL && (op->callbacks = PyList_New(0)) == NULL) {
            Py_DECREF(pair);
            return NULL;
        }
        int ret = PyList_Append(op->callbacks, pair);
        Py_DECREF(pair);
        if (ret < 0)
            return NULL;
    }
    if (op->fut_state != OP_PENDING)
        op_wake(op);
    Py_RETURN_NONE;
}

/* remove_done_callback(fn) -> how many were removed */
static PyObject *op_remove_done_callback(OpObject *op, PyObject *fn)
{
    Py_ssize_t removed = 0;
    if (op->callback != NULL) {
        int eq = PyObject_RichCompareBool(op->callback, fn, Py_EQ);
        if (eq < 0)
            return NULL;
        if (eq) {
            Py_CLEAR(op->callback);
            Py_CLEAR(op->callback_context);
            removed++;
        }
    }
    for (Py_ssize_t i = 0; op->callbacks && i < PyList_GET_SIZE(op->callbacks);) {
        int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(PyList_GET_ITEM(op->callbacks, i), 0), fn, Py_EQ);
        if (eq < 0)
            return NULL;
        if (eq) {
            if (PyList_SetSlice(op->callbacks, i, i + 1, NULL) < 0)
                return NULL;
            removed++;
        } else {
            i++;
        }
    }
    return PyLong_FromSsize_t(removed);
}

/* cancel(msg=None): the wait is cancelled now and the kernel's work with it
 * (its memory stays the op's until the completion); False once done. */
static PyObject *op_method_cancel(OpObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (op_check_awaited(op) < 0)
        return NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "msg") != 0)) {
        PyErr_SetString(PyExc_TypeError, "cancel(msg=None)");
        return NULL;
    }
    if (op->fut_state != OP_PENDING)
        Py_RETURN_FALSE;
    op->fut_state = OP_CANCELLED;
    Py_XSETREF(op->cancel_msg, nargs + nkw ? Py_NewRef(args[0]) : NULL);
    if (!op->finished && !op->abandoned)
        op_cancel(op);
    op->abandoned = 1;
    op_wake(op);
    Py_RETURN_TRUE;
}

static PyMethodDef op_methods[] = {
    {"send", (PyCFunction)ringlet_send, METH_O, "send(value): as a coroutine's send()."},
    {"throw", (PyCFunction)(void (*)(void))op_throw, METH_FASTCALL,
     "throw(exc): as a coroutine's throw(); the operation is cancelled."},
    {"close", (PyCFunction)op_close, METH_NOARGS, "close(): stop waiting; the operation is cancelled."},
    {"get_loop", (PyCFunction)op_get_loop, METH_NOARGS, "get_loop(): the engine's loop (as a future's)."},
    {"done", (PyCFunction)op_done, METH_NOARGS, "done(): as a future's."},
    {"cancelled", (PyCFunction)op_cancelled, METH_NOARGS, "cancelled(): as a future's."},
    {"result", (PyCFunction)op_result, METH_NOARGS, "result(): as a future's."},
    {"exception", (PyCFunction)op_exception, METH_NOARGS, "exception(): as a future's."},
    {"add_done_callback", (PyCFunction)(void (*)(void))op_add_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback(fn, *, context=None): as a future's; run from the engine's _wake."},
    {"remove_done_callback", (PyCFunction)op_remove_done_callback, METH_O, "remove_done_callback(fn): as a future's."},
    {"cancel", (PyCFunction)(void (*)(void))op_method_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel(msg=None): as a future's; the kernel's work is cancelled too."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef op_getset[] = {
    {"_asyncio_future_blocking", (getter)op_get_blocking, (setter)op_set_blocking,
     "None until the op is yielded to a task, which then takes it for a future.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* The GC sees what an op holds.  An op in flight is never collected: the
 * ring's reference is one the GC cannot account for, so the op (and all it
 * holds) stays reachable until its completion. */
static int op_traverse(OpObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(op->engine);
    Py_VISIT(op->future);
    Py_VISIT(op->callback);
    Py_VISIT(op->callback_context);
    Py_VISIT(op->callbacks);
    Py_VISIT(op->cancel_msg);
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
    Py_CLEAR(op->outcome);
    Py_CLEAR(op->callback);
    Py_CLEAR(op->callback_context);
    Py_CLEAR(op->callbacks);
    Py_CLEAR(op->cancel_msg);
    Py_CLEAR(op->filename);
    Py_CLEAR(op->filename2);
    return 0;
}

static void op_dealloc(OpObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    op_release(op);
    op_release_fd(op); /* dropped before its SQE was queued */
    Py_CLEAR(op->future);
    Py_CLEAR(op->outcome);
    Py_CLEAR(op->callback);
    Py_CLEAR(op->callback_context);
    Py_CLEAR(op->callbacks);
    Py_CLEAR(op->cancel_msg);
    PyMem_Free(op->times);
    PyMem_Free(op->chain);
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
    {Py_tp_getset, op_getset},
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
