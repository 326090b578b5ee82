/* Engine: one io_uring per event loop.  Each operation method (engine_ops.c)
 * fills a submission, submits it at once and reaps what completed inside that
 * call, and returns an asyncio.Future: already done for a page-cache hit,
 * pending otherwise.  The loop watches the ring's fd and calls
 * _drain_and_wake() (drain() for any other caller) to complete the rest.  Here: the type, its life (new, shutdown, dealloc, GC),
 * the methods the loop calls, and the method table. */
#include "binding.h"
#include "engine_ops.h"
#include "structmember.h"

#include <errno.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

PyDoc_STRVAR(engine_tick_doc, "_tick() -> None\n\nScheduled with call_soon: the loop has turned (see loop_must_yield).");

static PyObject *engine_tick(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    loop_ticked(self);
    Py_RETURN_NONE;
}

/* Submits what waits in the SQ for calls that have returned already (their
 * callers wait on futures).  Nothing is reaped here: what completes is the
 * drain's, as on a DEFER_TASKRUN ring, where the kernel holds it.  Without
 * DEFER_TASKRUN it posts its workers' completions as this enter returns;
 * reaped here they would run before the callbacks already queued in this
 * turn (a cancelled future's: its read withdrawn before it starts). */
static int engine_submit_queued(EngineObject *self)
{
    int taken = rl_ring_submit(&self->ring);
    return taken < 0 ? taken : 0;
}

PyDoc_STRVAR(engine_flush_doc,
"_flush() -> None\n\n"
"Serve the waiting offloaded reads the page cache holds (each read's task\n"
"woken before the next read), then submit what waits in the SQ (O_DIRECT\n"
"operations wait for the end of the loop tick, so that many go in one\n"
"io_uring_enter); scheduled with call_soon.");

static PyObject *engine_flush(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    self->flush_scheduled = 0;
    if (!self->ring_open || engine_check(self) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int raised = engine_offload_serve(self) < 0;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    int ret = self->ring_open ? engine_submit_queued(self) : 0; /* even if a task raised */
    PyErr_Restore(type, exc, tb);
    if (raised || loop_raise_interrupt(self) < 0)
        return NULL;
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_wake_doc,
"_wake() -> None\n\n"
"Scheduled with call_soon once per drain that completed awaited operations:\n"
"runs their done callbacks (their tasks' wake-ups), in order.");

static PyObject *engine_wake(EngineObject *self, PyObject *Py_UNUSED(ignored)) { return engine_wake_ops(self); }

PyDoc_STRVAR(engine_drain_doc,
"drain() -> int\n\n"
"Reap the completions that are ready and resolve their futures; the loop\n"
"calls this when the ring's fd is readable.  Returns how many were reaped.\n"
"A BaseException (KeyboardInterrupt) raised while futures were resolved is\n"
"raised here once every reaped completion is delivered.");

/* drain's answer: a pending interrupt first, then the ring's error, else the count reaped. */
static PyObject *drain_result(EngineObject *self, int ret)
{
    if (loop_raise_interrupt(self) < 0)
        return NULL;
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(ret);
}

static PyObject *engine_drain(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    if (engine_check(self) < 0)
        return NULL;
    int ret = rl_ring_drain(&self->ring, self->ring.ring.cq.ring_entries);
    write_file_side_drain(self);
    engine_retry_wake(self);
    return drain_result(self, ret);
}

PyDoc_STRVAR(engine_drain_and_wake_doc,
"_drain_and_wake() -> int\n\n"
"drain() for the loop's reader callback: the tasks waiting for the awaited\n"
"operations it completed are woken from here, in completion order, each in its\n"
"own context (not inside the call that completed them: this is a loop callback\n"
"of its own), instead of from a _wake scheduled for the next loop turn; the\n"
"O_DIRECT reads they make go to the kernel at once.  It reaps again after\n"
"waking them (up to 4 rounds) while it finds more.");

#define RL_WAKE_ROUNDS 4

static PyObject *engine_drain_and_wake(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    if (engine_check(self) < 0)
        return NULL;
    /* In rounds, while a round reaps and wakes something and the kernel holds
     * more (the woken tasks' reads may be done already): the kernel runs at
     * most 20 deferred completions an io_uring_enter (6.x), so a device that
     * answers 64 reads at once would cost the loop a turn (epoll_wait, this
     * callback, asyncio's _run_once) for each 20.  Bounded, so the loop's
     * other callbacks wait for at most RL_WAKE_ROUNDS rounds of tasks. */
    int ret = 0, raised = 0, woke_tasks = 0;
    for (int round = 0; round < RL_WAKE_ROUNDS; round++) {
        self->reaping_for_wake = 1;
        int n = rl_ring_drain(&self->ring, self->ring.ring.cq.ring_entries);
        write_file_side_drain(self);
        self->reaping_for_wake = 0;
        if (round == 0 || n < 0)
            ret = n;
        else
            ret += n;
        int woke = self->woken != NULL && self->interrupt == NULL && n >= 0;
        woke_tasks |= woke;
        if (woke) {
            self->direct_at_once = 1;
            PyObject *r = engine_wake_ops(self);
            self->direct_at_once = 0;
            raised = r == NULL;
            Py_XDECREF(r);
        }
        if (!woke || raised || !self->ring_open || n <= 0 || !rl_ring_has_held(&self->ring))
            break;
    }
    /* What is still queued (a read the SQ had no room for): submitted now,
     * even if a task raised; and a _wake for what could not be woken here (an
     * interrupt noted, completions reaped inline while the tasks ran). */
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    int submitted = woke_tasks && self->ring_open ? engine_submit_queued(self) : 0;
    if (submitted < 0)
        ret = submitted;
    engine_retry_wake(self);
    PyErr_Restore(type, exc, tb);
    if (raised)
        return NULL;
    return drain_result(self, ret);
}

/* One cancel can miss a request: a pipe read sent with IOSQE_ASYNC that a
 * kernel worker has taken is signalled as running, and the worker then arms
 * a poll for it (its non-blocking try found no data), which that cancel has
 * already passed.  So a wait that sees nothing complete for this long
 * cancels again. */
#define RL_CANCEL_AGAIN_MS 10

void engine_cancel_and_wait(EngineObject *self, struct rl_ring *ring, int64_t deadline_ns)
{
    /* Only the owner thread may enter a SINGLE_ISSUER ring; from elsewhere, just leave. */
    if (self->thread_id != PyThread_get_thread_ident() || ring->stats.in_flight == 0)
        return;
    rl_ring_cancel_all(ring);
    for (;;) {
        rl_ring_drain(ring, UINT32_MAX);
        int64_t left_ns = deadline_ns - rl_now_ns();
        if (ring->stats.in_flight == 0 || left_ns <= 0)
            break;
        int64_t slice_ns = RL_CANCEL_AGAIN_MS * (int64_t)1000000;
        unsigned wait_ms = left_ns > slice_ns ? RL_CANCEL_AGAIN_MS : (unsigned)(left_ns / 1000000) + 1;
        int ret;
        Py_BEGIN_ALLOW_THREADS
        ret = rl_ring_wait(ring, wait_ms);
        Py_END_ALLOW_THREADS
        if (ret < 0)
            break;
        if (ret == 0) /* nothing came back: what one cancel missed, the next finds */
            rl_ring_cancel_all(ring);
    }
}

/* The read buffers kept for reuse (engine_read_bytes): up to 16 MiB. */
static void drop_spare_bytes(EngineObject *self)
{
    for (int i = 0; i < 2; i++)
        Py_CLEAR(self->spare_bytes[i]);
    for (int i = 0; i < RL_SPARE_LARGE; i++)
        Py_CLEAR(self->spare_large[i]);
}

PyDoc_STRVAR(engine_shutdown_doc,
"shutdown(timeout=1.0) -> int\n\n"
"Cancel what is in flight, wait up to timeout seconds for the kernel to give\n"
"the memory back, and close the ring.  Results still arriving are dropped,\n"
"futures are not resolved.  Operations the kernel has not completed by then\n"
"keep their memory forever (leaked, never freed under the kernel).  Returns\n"
"how many were left in flight.  Called while completions are being delivered\n"
"(from the tracer, a signal handler), the ring is unmapped once that is over.");

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
    if (!self->ring_open || self->fork_generation != ringlet_fork_generation())
        return PyLong_FromLong(0);
    self->shutting_down = 1;
    self->ring_open = 0; /* from here on operations raise, and a second shutdown returns at once */
    Py_CLEAR(self->tracer);
    drop_spare_bytes(self); /* no read is made from here on */
    engine_offload_drop_all(self); /* never given to the kernel: nothing to wait for */
    /* One deadline for all rings: the whole shutdown waits timeout at most. */
    double wait_s = timeout < 0 ? 0 : timeout > 1e9 ? 1e9 : timeout; /* +-inf too: the cast below stays defined */
    int64_t deadline_ns = rl_now_ns() + (int64_t)(wait_s * 1e9);
    write_file_side_shutdown(self, deadline_ns);
    /* copy's quiet writes: cancelled first, reaped by the marks and pings
     * of the main ring (which reap quiet), then what is left of them. */
    if (self->quiet_state > 0)
        rl_ring_cancel_all(&self->quiet);
    engine_cancel_and_wait(self, &self->ring, deadline_ns);
    if (self->quiet_state > 0)
        engine_cancel_and_wait(self, &self->quiet, deadline_ns);
    engine_closes_waiting_shutdown(self); /* what held their numbers is back, or left to the kernel */
    unsigned left_in_flight = self->ring.stats.in_flight + (self->side_state ? self->side.stats.in_flight : 0) +
                              (self->quiet_state > 0 ? self->quiet.stats.in_flight : 0);
    /* Closing the ring with requests still in flight is safe: their ops (and
     * memory) are never freed, and the kernel cancels them on teardown.
     * Inside a drain, the ring itself waits until the drain is over. */
    rl_ring_exit(&self->ring);
    rl_nowait_helper_exit(&self->nowait); /* nothing in flight there: a batch waits for its reads */
    /* A mark reaped later (the main ring's exit waits for a drain up the
     * stack) finds quiet gone and leaves it alone. */
    if (self->quiet_state > 0) {
        rl_ring_exit(&self->quiet);
        self->quiet_state = -1; /* never set up again; stats() still counts what it did */
    }
    if (loop_raise_interrupt(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(left_in_flight);
}

PyDoc_STRVAR(engine_stats_doc, "stats() -> dict\n\nThe engine's counters.");

static void stats_add(struct rl_stats *sum, const struct rl_stats *t)
{
    sum->submitted += t->submitted;
    sum->completed += t->completed;
    sum->completed_inline += t->completed_inline;
    sum->deferred += t->deferred;
    sum->cancelled += t->cancelled;
    sum->enter_calls += t->enter_calls;
    sum->overflowed += t->overflowed;
    sum->in_flight += t->in_flight;
    sum->peak_in_flight += t->peak_in_flight; /* each ring's own peak, not when they met: a bound */
}

static PyObject *engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    /* write_file's side ring and copy's quiet ring count with the main one. */
    struct rl_stats sum = self->ring.stats;
    if (self->side_state)
        stats_add(&sum, &self->side.stats);
    if (self->quiet_state)
        stats_add(&sum, &self->quiet.stats);
    const struct rl_stats *s = &sum;
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsKsIsIsd}",
                         "submitted", (unsigned long long)s->submitted,
                         "completed", (unsigned long long)s->completed,
                         "completed_inline", (unsigned long long)s->completed_inline,
                         "completed_nowait", (unsigned long long)self->nowait.hits,
                         "completed_nowait_sqpoll", (unsigned long long)self->nowait.helper_hits,
                         "files_nowait", (unsigned long long)self->files_nowait,
                         "files_chained", (unsigned long long)self->files_chained,
                         "writes_quiet", (unsigned long long)self->writes_quiet,
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

PyDoc_STRVAR(engine_restrict_opcodes_doc,
"_restrict_opcodes(opcodes, /) -> None\n\n"
"A test hook: from now on supports() is False for every opcode not in\n"
"opcodes (ints), as on an older kernel.");

static PyObject *engine_restrict_opcodes(EngineObject *self, PyObject *arg)
{
    uint64_t allowed[4];
    if (parse_opcodes(arg, allowed) < 0)
        return NULL;
    rl_ring_restrict(&self->ring, allowed);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_sqpoll_always_doc,
"_sqpoll_always(on, /) -> bool\n\n"
"A test hook: read_many hands reads to io_uring's SQPOLL thread whatever\n"
"the machine's load, from the first handover on, asleep or not (the\n"
"submission wakes it), so that its path is taken on every large batch.\n"
"Sets the thread up now; False: it cannot be had here.");

static PyObject *engine_sqpoll_always(EngineObject *self, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0 || engine_check(self) < 0)
        return NULL;
    self->nowait.helper_always = on;
    return PyBool_FromLong(rl_nowait_helper_setup(&self->nowait));
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
    self->fork_generation = ringlet_fork_generation();
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
    self->loop_has_thread_id = PyObject_HasAttr(loop, self->state->str__thread_id);
    self->loop_epoll_fd = loop_epoll_fd_of(self->state, loop);
    /* Two offloaded reads per CPU: enough to keep every core copying, few enough that each read
     * waits in ringlet's queue, in call order, rather than behind all the others in io-wq's. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    self->offload_max = cpus > 1 ? 2 * (unsigned)cpus : 2;
    /* pread_many's SQPOLL helper reads with IORING_OP_READ: not on a kernel without it (or emulating one). */
    if (!rl_ring_supports(&self->ring, IORING_OP_READ))
        self->nowait.helper_state = -1;
    return (PyObject *)self;
}

/* The GC sees the Python objects an engine holds: the tracer makes a cycle
 * when it refers back to the engine (ringlet.trace() does).  An engine with
 * operations in flight is never collected: each op holds it, and the ring's
 * reference to the op is one the GC cannot see. */
static int engine_traverse(EngineObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->loop_ref);
    Py_VISIT(self->future_type);
    Py_VISIT(self->tracer);
    Py_VISIT(self->interrupt);
    Py_VISIT(self->woken);
    return 0;
}

/* Drops Python references only; the ring and its memory go in dealloc. */
static int engine_clear(EngineObject *self)
{
    Py_CLEAR(self->spare_outcome);
    drop_spare_bytes(self);
    Py_CLEAR(self->future_type);
    Py_CLEAR(self->tracer);
    Py_CLEAR(self->interrupt);
    Py_CLEAR(self->woken);
    return 0;
}

static void engine_dealloc(EngineObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    /* No op is in flight here: each one holds a reference to its engine. */
    if (self->ring_open && self->fork_generation == ringlet_fork_generation()) {
        if (self->side_state > 0)
            rl_ring_exit(&self->side);
        if (self->quiet_state > 0)
            rl_ring_exit(&self->quiet);
        rl_ring_exit(&self->ring);
        rl_nowait_helper_exit(&self->nowait);
    }
    rl_bounce_clear(&self->bounce_pool);
    rl_nowait_free(&self->nowait);
    PyMem_Free(self->fd_uses);
    Py_XDECREF(self->loop_ref);
    engine_clear(self);
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
    {"_close", (PyCFunction)(void (*)(void))engine__close, METH_FASTCALL, engine__close_doc},
    {"_adopt", (PyCFunction)engine__adopt, METH_O, engine__adopt_doc},
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
    {"_preadinto", (PyCFunction)(void (*)(void))engine__preadinto, METH_FASTCALL, engine__preadinto_doc},
    {"_read_file", (PyCFunction)(void (*)(void))engine__read_file, METH_FASTCALL, engine__read_file_doc},
    {"_write_file", (PyCFunction)(void (*)(void))engine__write_file, METH_FASTCALL, engine__write_file_doc},
    {"_write_stop", (PyCFunction)engine__write_stop, METH_O, engine__write_stop_doc},
    {"_closes_at_once", (PyCFunction)engine__closes_at_once, METH_O, engine__closes_at_once_doc},
    {"drain", (PyCFunction)engine_drain, METH_NOARGS, engine_drain_doc},
    {"_flush", (PyCFunction)engine_flush, METH_NOARGS, engine_flush_doc},
    {"_tick", (PyCFunction)engine_tick, METH_NOARGS, engine_tick_doc},
    {"_wake", (PyCFunction)engine_wake, METH_NOARGS, engine_wake_doc},
    {"_drain_and_wake", (PyCFunction)engine_drain_and_wake, METH_NOARGS, engine_drain_and_wake_doc},
    {"shutdown", (PyCFunction)(void (*)(void))engine_shutdown, METH_VARARGS | METH_KEYWORDS, engine_shutdown_doc},
    {"stats", (PyCFunction)engine_stats, METH_NOARGS, engine_stats_doc},
    {"fileno", (PyCFunction)engine_fileno, METH_NOARGS, engine_fileno_doc},
    {"supports", (PyCFunction)engine_supports, METH_O, engine_supports_doc},
    {"_restrict_opcodes", (PyCFunction)engine_restrict_opcodes, METH_O, engine_restrict_opcodes_doc},
    {"_sqpoll_always", (PyCFunction)engine_sqpoll_always, METH_O, engine_sqpoll_always_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef engine_getset[] = {
    {"loop", (getter)engine_get_loop, NULL, "The event loop (None once it is gone).", NULL},
    {"setup_flags", (getter)engine_get_setup_flags, NULL, "The io_uring setup flags the kernel accepted.", NULL},
    {"closed", (getter)engine_get_closed, NULL, "True after shutdown().", NULL},
    {"tracer", (getter)engine_get_tracer, (setter)engine_set_tracer,
     "None, or a callable given one dict per finished operation: op, fd, result, inline, and the\n"
     "time.monotonic_ns() stamps submitted, returned, reaped, resolved, resumed; thread, reap_thread.\n"
     "What it raises goes to the loop's exception handler.", NULL},
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
    {Py_tp_traverse, engine_traverse},
    {Py_tp_clear, engine_clear},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {Py_tp_members, engine_members},
    {0, NULL},
};

PyType_Spec ringlet_engine_spec = {
    .name = "ringlet._ringlet.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = engine_slots,
};
