/* Cached reads at the price of one system call.
 *
 * Engine._pread(fd, size, offset) first tries preadv2(..., RWF_NOWAIT) (see
 * csrc/nowait.h): when the page cache holds the bytes, they are read at once,
 * with no op, no ring and no future.  Otherwise the read goes to the ring as
 * Engine._read does it.  Either way the caller gets an Outcome: an awaitable
 * that asyncio takes for a coroutine (create_task, gather and wait_for accept
 * it), holding the value, the error, or the pending future.
 *
 * Reads through ops (Engine.read/_read/readinto) make the same attempt with
 * op_try_nowait before they are queued. */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>


/* The attempt went through: counted as an operation completed inline, and
 * as one the ring never saw. */
void engine_count_nowait(EngineObject *engine)
{
    struct rl_stats *s = &engine->ring.stats;
    s->submitted++;
    s->completed++;
    s->completed_inline++;
}

int64_t engine_read_nowait(EngineObject *engine, int fd, void *buf, size_t len, int64_t offset)
{
    if (!rl_nowait_enabled(&engine->nowait, fd))
        return -1;
    int64_t n = rl_read_nowait(&engine->nowait, fd, buf, len, offset);
    if (n < 0)
        return -1;
    engine_count_nowait(engine);
    return n;
}

int64_t op_try_nowait(OpObject *op)
{
    EngineObject *engine = op->engine;
    if (engine->nowait.tried) { /* Engine._pread tried it a moment ago: a second try could only race the
                                   readahead the first one started */
        engine->nowait.tried = 0;
        return -1;
    }
    if ((op->kind != OP_READ && op->kind != OP_READINTO) || op->direct || op->offload || op->offset < 0 ||
        op->io.len == 0 ||
        !rl_nowait_enabled(&engine->nowait, op->fd))
        return -1;
    int64_t started = op->times ? rl_now_ns() : 0;
    int64_t n = engine_read_nowait(engine, op->fd, op->io.buf, op->io.len, op->io.offset);
    if (n < 0)
        return -1;
    if (op->moves_position) /* as op_complete does for the ring's reads */
        lseek(op->fd, (off_t)(op->offset + n), SEEK_SET);
    if (op->times) {
        struct op_times *t = op->times;
        t->submitted = started;
        t->returned = t->reaped = t->resolved = t->resumed = rl_now_ns();
        t->submit_thread = t->reap_thread = PyThread_get_thread_ident();
        t->inline_ = t->nowait = 1;
        t->result = n;
        op_emit_trace(op);
    }
    return n;
}

/* ---- Outcome -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *value;      /* the result, until it is given */
    PyObject *error;      /* the exception to raise, until it is raised */
    PyObject *future;     /* pending: the future to wait for */
    PyObject *waiter;     /* future.__await__(), once the wait began */
    uint8_t yield_first;  /* go round the loop once before giving the value (see loop_must_yield) */
    /* A small read asked for once the turn's budget was spent: it is made
     * after a turn of the loop (yield_first), when the outcome is resumed
     * (see engine__pread); 2: a large one deferred once more (outcome_send).
     * 0 when the outcome holds its answer. */
    uint8_t later;
    /* Its yield is done and counted in engine->parked until it is resumed
     * (loop_others_wait: the task is the engine's, not other work). */
    uint8_t parked;
    EngineObject *engine; /* a small read's outcome that yields: its engine (later, parked), else NULL */
    int later_fd;
    uint32_t later_closes; /* later_fd's closes through the engine when deferred (fdhold.c) */
    Py_ssize_t later_size;
    long long later_offset;
} OutcomeObject;

static PyObject *outcome_new(ringlet_state *st, PyObject *value, PyObject *error, PyObject *future, int yield_first)
{
    OutcomeObject *o = PyObject_New(OutcomeObject, st->OutcomeType);
    if (o == NULL)
        return NULL;
    o->value = Py_XNewRef(value);
    o->error = Py_XNewRef(error);
    o->future = Py_XNewRef(future);
    o->waiter = NULL;
    o->yield_first = (uint8_t)yield_first;
    o->later = o->parked = 0;
    o->engine = NULL;
    return (PyObject *)o;
}

/* Resumed, thrown into, closed or dropped: no longer parked. */
static void outcome_unpark(OutcomeObject *self)
{
    if (self->parked) {
        self->parked = 0;
        self->engine->parked--;
    }
}

/* A cached read's value as an Outcome.  Such an outcome is awaited at once
 * and dropped, so the engine keeps one and hands it out again whenever it
 * alone holds it: no allocation per read. */
static PyObject *outcome_of_value(EngineObject *engine, PyObject *value, int yield_first)
{
    if (yield_first) { /* once a turn a task: a new one, which holds its engine (the spare must not) */
        OutcomeObject *o = (OutcomeObject *)outcome_new(engine->state, value, NULL, NULL, 1);
        if (o != NULL)
            o->engine = (EngineObject *)Py_NewRef(engine);
        return (PyObject *)o;
    }
    OutcomeObject *spare = (OutcomeObject *)engine->spare_outcome;
    if (spare != NULL && Py_REFCNT(spare) == 1) {
        Py_CLEAR(spare->value); /* set if it was dropped unawaited; never a future or an error */
        spare->value = Py_NewRef(value);
        return Py_NewRef(spare);
    }
    PyObject *o = outcome_new(engine->state, value, NULL, NULL, 0);
    if (o != NULL)
        Py_XSETREF(engine->spare_outcome, Py_NewRef(o)); /* the old one is someone else's now */
    return o;
}

PyObject *outcome_after_a_turn(ringlet_state *st, PyObject *value)
{
    return outcome_new(st, value, NULL, NULL, 1);
}

static PyObject *engine_pread_now(EngineObject *self, int fd, Py_ssize_t size, long long offset, int may_defer);
static PyObject *engine_pread_by_ring_values(EngineObject *self, int fd, Py_ssize_t size, long long offset, int tried);

static PySendResult outcome_send(OutcomeObject *self, PyObject *arg, PyObject **result)
{
    outcome_unpark(self);
    if (self->later && !self->yield_first) {
        /* Resumed after its turn of the loop: the read now, waited for as a pending one. */
        EngineObject *engine = self->engine;
        int here = loop_is_running_here(engine);
        int spent = here && self->later_size >= (Py_ssize_t)RL_YIELD_EACH_MIN && loop_must_yield(engine);
        if (spent && self->later == 1) {
            /* A large read deferred while the last turn's budget lasted, and
             * this turn's is spent (by the tasks resumed before it): it waits
             * one more turn.  The kernel's workers would copy into a buffer of
             * their own, cold in the CPU's cache and held while the loop's
             * reads allocate theirs (the heap's top is trimmed and faulted in
             * again): 16 tasks reading cached 1 MiB, 0.59 of the os.pread
             * loop that way, 0.88 with the turn. */
            self->later = 2;
            self->yield_first = 1;
        } else {
            self->later = 0;
            uint32_t closes;
            if (!here) /* resumed by hand, off the engine's loop */
                PyErr_SetString(PyExc_RuntimeError, "ringlet: pread resumed off its engine's loop");
            else if (engine_fd_closes(engine, self->later_fd, &closes) == 0 && closes != self->later_closes)
                /* Closed during the turn: the number may be another file's now (fdhold.c). */
                PyErr_SetString(PyExc_ValueError, "I/O operation on closed file");
            else if (spent) /* twice: the workers read it, so that no task waits turn after turn */
                self->future = engine_pread_by_ring_values(engine, self->later_fd, self->later_size,
                                                           self->later_offset, 0);
            else
                self->future = engine_pread_now(engine, self->later_fd, self->later_size, self->later_offset, 0);
            if (self->future == NULL) {
                *result = NULL;
                return PYGEN_ERROR;
            }
        }
    }
    if (self->future) {
        if (self->waiter == NULL) {
            PyAsyncMethods *am = Py_TYPE(self->future)->tp_as_async;
            self->waiter = am && am->am_await ? am->am_await(self->future)
                                              : PyObject_CallMethod(self->future, "__await__", NULL);
            if (self->waiter == NULL) {
                *result = NULL;
                return PYGEN_ERROR;
            }
        }
        PySendResult r = PyIter_Send(self->waiter, arg, result);
        if (r != PYGEN_NEXT) {
            Py_CLEAR(self->waiter);
            Py_CLEAR(self->future);
        }
        return r;
    }
    if (self->yield_first) {
        /* A bare yield: the task is scheduled again with call_soon, as by asyncio.sleep(0). */
        self->yield_first = 0;
        if (self->engine != NULL) {
            self->parked = 1;
            self->engine->parked++;
        }
        *result = Py_NewRef(Py_None);
        return PYGEN_NEXT;
    }
    if (self->error) {
        PyObject *error = self->error;
        self->error = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (self->value) {
        *result = self->value; /* handed over */
        self->value = NULL;
        return PYGEN_RETURN;
    }
    PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
    *result = NULL;
    return PYGEN_ERROR;
}

static PyObject *outcome_iternext(OutcomeObject *self)
{
    PyObject *result;
    PySendResult r = outcome_send(self, Py_None, &result);
    if (r == PYGEN_RETURN) {
        if (result == Py_None) {
            Py_DECREF(result);
            return NULL; /* plain exhaustion */
        }
        return ringlet_return_value(result);
    }
    return result;
}

/* throw(exc) or throw(type, value=None, traceback=None): into the pending
 * wait if there is one (a cancelled task), else raised here; the outcome is
 * dropped either way. */
static PyObject *outcome_throw(OutcomeObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    outcome_unpark(self);
    Py_CLEAR(self->value);
    Py_CLEAR(self->error);
    self->later = 0; /* a read not made yet is not made */
    self->yield_first = 0;
    if (self->waiter) {
        PyObject *throw = PyObject_GetAttrString(self->waiter, "throw");
        PyObject *r = throw ? PyObject_Vectorcall(throw, args, (size_t)nargs, NULL) : NULL;
        Py_XDECREF(throw);
        if (r == NULL) {
            Py_CLEAR(self->waiter);
            Py_CLEAR(self->future);
        }
        return r;
    }
    Py_CLEAR(self->future);
    PyObject *typ = args[0], *val = nargs > 1 ? args[1] : Py_None;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val);
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException");
    }
    return NULL;
}

static PyObject *outcome_close(OutcomeObject *self, PyObject *Py_UNUSED(ignored))
{
    outcome_unpark(self);
    self->later = 0;
    Py_CLEAR(self->value);
    Py_CLEAR(self->error);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->future);
    Py_RETURN_NONE;
}

static PyObject *outcome_await(PyObject *self) { return Py_NewRef(self); }

static void outcome_dealloc(OutcomeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(self->value);
    Py_XDECREF(self->error);
    Py_XDECREF(self->waiter);
    Py_XDECREF(self->future);
    outcome_unpark(self);
    Py_XDECREF(self->engine);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyMethodDef outcome_methods[] = {
    {"send", (PyCFunction)ringlet_send, METH_O, "send(value): as a coroutine's send()."},
    {"throw", (PyCFunction)(void (*)(void))outcome_throw, METH_FASTCALL, "throw(exc): as a coroutine's throw()."},
    {"close", (PyCFunction)outcome_close, METH_NOARGS, "close(): drop the outcome."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot outcome_slots[] = {
    {Py_tp_doc, "The outcome of a read, awaited as a coroutine: its value (already there after a\n"
                "non-blocking read), its error, or the pending future it waits for."},
    {Py_am_await, outcome_await},
    {Py_am_send, outcome_send},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, outcome_iternext},
    {Py_tp_methods, outcome_methods},
    {Py_tp_dealloc, outcome_dealloc},
    {0, NULL},
};

PyType_Spec ringlet_outcome_spec = {
    .name = "ringlet._ringlet.Outcome",
    .basicsize = sizeof(OutcomeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = outcome_slots,
};

/* ---- Engine._pread ------------------------------------------------------- */

const char engine__pread_doc[] =
    "_pread(fd, size, offset, align=0, /) -> Outcome | Op | None\n\n"
    "A positional read for AsyncFile.pread: tried without blocking first (the\n"
    "page cache), else through the ring as _read.  align > 0 (O_DIRECT): the\n"
    "ring's at once.  Errors, argument errors included, are raised when the\n"
    "outcome is awaited.  None when not called on the engine's loop (its\n"
    "thread, that loop running): the caller checks and raises.";

/* The exception set now, as an Outcome that raises it when awaited. */
static PyObject *outcome_of_error(ringlet_state *st)
{
    PyObject *exc = ringlet_take_error();
    PyObject *o = exc ? outcome_new(st, NULL, exc, NULL, 0) : NULL;
    Py_XDECREF(exc);
    return o;
}

/* What _read or _readinto returned (r, NULL: raised) as an Outcome: its
 * value, error or future; a pending op, or an Outcome already (a turn of the
 * loop first), is awaited as itself. */
static PyObject *outcome_of_op_call(EngineObject *engine, PyObject *r)
{
    ringlet_state *st = engine->state;
    if (r == NULL)
        return outcome_of_error(st);
    if (Py_IS_TYPE(r, st->OpType) || Py_IS_TYPE(r, st->OutcomeType))
        return r;
    PyObject *o;
    if (Py_IS_TYPE(r, st->ReadyType)) { /* completed inline: take its value */
        PyObject *value;
        o = PyIter_Send(r, Py_None, &value) == PYGEN_RETURN ? outcome_of_value(engine, value, 0) : NULL;
        Py_XDECREF(value);
    } else {
        o = outcome_new(st, NULL, NULL, r, 0);
    }
    Py_DECREF(r);
    return o;
}

/* The ring's way, through _read.  tried: the attempt was made already (and missed). */
static PyObject *engine_pread_by_ring(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, int tried)
{
    ringlet_state *st = self->state;
    PyObject *argv[5] = {(PyObject *)self, NULL, NULL, NULL, NULL};
    for (Py_ssize_t i = 0; i < nargs && i < 4; i++)
        argv[i + 1] = args[i];
    self->nowait.tried = tried;
    PyObject *r = PyObject_VectorcallMethod(st->str__read, argv, (size_t)(nargs < 4 ? nargs : 4) + 1, NULL);
    self->nowait.tried = 0;
    return outcome_of_op_call(self, r);
}

/* A negative offset's ValueError as an Outcome (to _read and _readinto, -1
 * would mean the file position). */
static PyObject *outcome_of_negative_offset(ringlet_state *st)
{
    PyObject *exc = PyObject_CallFunction(PyExc_ValueError, "s", "negative offset");
    PyObject *o = exc ? outcome_new(st, NULL, exc, NULL, 0) : NULL;
    Py_XDECREF(exc);
    return o;
}

PyObject *engine__pread(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ringlet_state *st = self->state;
    if (!loop_is_running_here(self))
        Py_RETURN_NONE; /* the caller raises what fits (another loop, another thread, no loop) */
    if (nargs != 3 && nargs != 4)
        return engine_pread_by_ring(self, args, nargs, 0); /* its TypeError */
    if (!PyLong_CheckExact(args[1]) || !PyLong_CheckExact(args[2])) {
        /* Any __index__ for size and offset, as os.pread (TypeError for the rest). */
        PyObject *argv[4] = {args[0], PyNumber_Index(args[1]), NULL, nargs == 4 ? args[3] : NULL};
        argv[2] = argv[1] ? PyNumber_Index(args[2]) : NULL;
        PyObject *r = argv[2] ? engine__pread(self, argv, nargs) : outcome_of_error(st);
        Py_XDECREF(argv[1]);
        Py_XDECREF(argv[2]);
        return r;
    }
    /* Exact ints from here: the conversions report overflow, they cannot raise. */
    int o_offset;
    long long offset = PyLong_AsLongLongAndOverflow(args[2], &o_offset);
    if (o_offset < 0 || (o_offset == 0 && offset < 0))
        return outcome_of_negative_offset(st);
    /* Traced ops are made by _read; so is an O_DIRECT read (align given), which the page cache does not serve. */
    if (self->tracer || !PyLong_CheckExact(args[0]) || nargs == 4)
        return engine_pread_by_ring(self, args, nargs, 0);
    int o_fd, o_size;
    long fd = PyLong_AsLongAndOverflow(args[0], &o_fd);
    long long size = PyLong_AsLongLongAndOverflow(args[1], &o_size);
    if (o_offset || o_fd || o_size || fd < 0 || fd > INT32_MAX || size <= 0 || size > PY_SSIZE_T_MAX ||
        (uint64_t)offset + RL_MAX_RW > INT64_MAX)
        return engine_pread_by_ring(self, args, nargs, 0); /* it raises what needs raising */
    return engine_pread_now(self, (int)fd, (Py_ssize_t)size, offset, 1);
}

const char engine__preadinto_doc[] =
    "_preadinto(fd, buffer, offset, align=0, /) -> Outcome | Op | None\n\n"
    "A positional read into buffer for AsyncFile.preadinto: _readinto, its\n"
    "value, error or pending op as an awaitable that asyncio takes for a\n"
    "coroutine.  Errors, argument errors included, are raised when it is\n"
    "awaited.  None when not called on the engine's loop (as _pread).";

PyObject *engine__preadinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ringlet_state *st = self->state;
    if (!loop_is_running_here(self))
        Py_RETURN_NONE;
    if (nargs != 3 && nargs != 4)
        return outcome_of_op_call(self, engine__readinto(self, args, nargs)); /* its TypeError */
    if (!PyLong_CheckExact(args[2])) { /* any __index__ for the offset, as os.preadv */
        PyObject *argv[4] = {args[0], args[1], PyNumber_Index(args[2]), nargs == 4 ? args[3] : NULL};
        PyObject *r = argv[2] ? engine__preadinto(self, argv, nargs) : outcome_of_error(st);
        Py_XDECREF(argv[2]);
        return r;
    }
    int o_offset;
    long long offset = PyLong_AsLongLongAndOverflow(args[2], &o_offset);
    if (o_offset < 0 || (o_offset == 0 && offset < 0))
        return outcome_of_negative_offset(st);
    /* A small read into a buffered file's page cache, the turn's budget not
     * spent: tried here without an op (as pread's, engine_pread_now), its
     * count handed over in the engine's spare Outcome.  Everything else (a
     * miss, a large read, a spent budget, O_DIRECT) goes through _readinto,
     * which knows the rest; a miss is not tried there again. */
    int tried = 0;
    if (nargs == 3 && !o_offset && !self->tracer && PyLong_CheckExact(args[0]) && self->ring_open &&
        self->fork_generation == ringlet_fork_generation() && !loop_budget_found_spent(self)) {
        int o_fd;
        long fd = PyLong_AsLongAndOverflow(args[0], &o_fd);
        Py_buffer view;
        if (!o_fd && fd >= 0 && fd <= INT32_MAX && PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) == 0) {
            tried = view.len > 0 && (size_t)view.len < RL_CLOCK_EVERY_MAX;
            int64_t n = tried ? engine_read_nowait(self, (int)fd, view.buf, (size_t)view.len, offset) : -1;
            PyBuffer_Release(&view);
            if (n >= 0) {
                PyObject *count = PyLong_FromLongLong(n);
                PyObject *o = count ? outcome_of_value(self, count, loop_must_yield_small(self)) : NULL;
                Py_XDECREF(count);
                return o;
            }
        }
        PyErr_Clear(); /* a buffer _readinto refuses too, with its own message */
    }
    self->nowait.tried = tried;
    PyObject *r = engine__readinto(self, args, nargs);
    self->nowait.tried = 0;
    return outcome_of_op_call(self, r);
}

/* The ring's way for a read given as C values. */
static PyObject *engine_pread_by_ring_values(EngineObject *self, int fd, Py_ssize_t size, long long offset, int tried)
{
    PyObject *args[3] = {PyLong_FromLong(fd), PyLong_FromSsize_t(size), PyLong_FromLongLong(offset)};
    PyObject *r = args[0] && args[1] && args[2] ? engine_pread_by_ring(self, args, 3, tried) : NULL;
    for (int i = 0; i < 3; i++)
        Py_XDECREF(args[i]);
    return r;
}

/* Reads up to this size keep their bytes object for a later read of the
 * same size (engine_read_bytes): two small buffers per engine. */
#define RL_SPARE_BYTES_MAX (16u << 10)

/* A spare of the given size that nobody else holds, its cached hash reset
 * (nobody can tell it from a new one), or NULL. */
static PyObject *spare_of_size(PyObject *const *slots, int count, Py_ssize_t size)
{
    for (int i = 0; i < count; i++) {
        PyObject *spare = slots[i];
        if (spare != NULL && Py_REFCNT(spare) == 1 && PyBytes_GET_SIZE(spare) == size) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* ob_shash: deprecated in 3.12, still bytes' hash cache */
            ((PyBytesObject *)spare)->ob_shash = -1;
#pragma GCC diagnostic pop
            return Py_NewRef(spare);
        }
    }
    return NULL;
}

/* A bytes object of size for a read to fill.  The engine keeps the last
 * two made for small reads, and the last RL_SPARE_LARGE up to
 * RL_SPARE_LARGE_MAX, and fills one again when nobody else holds it (the
 * caller dropped it).  Small: two, so that `data = await f.pread(...)` in a
 * loop, which holds the previous bytes during the next read, finds one free;
 * that saves a malloc and a free per read (2-5% of a cached 4 KiB read).
 * Large: the kernel's workers and the loop's thread hold several at once,
 * and freeing them lets glibc trim the heap's top, which the next ones fault
 * in again page by page (64 tasks reading cached 1 MiB: 0.83 of the os.pread
 * loop, 1.00 with the spares, and a sixth of the page faults). */
PyObject *engine_read_bytes(EngineObject *self, Py_ssize_t size)
{
    int small = (size_t)size <= RL_SPARE_BYTES_MAX;
    PyObject **slots = small ? self->spare_bytes : self->spare_large;
    int count = small ? 2 : RL_SPARE_LARGE;
    int *next = small ? &self->spare_bytes_next : &self->spare_large_next;
    PyObject *bytes = spare_of_size(slots, count, size);
    if (bytes != NULL)
        return bytes;
    bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes != NULL && (size_t)size <= RL_SPARE_LARGE_MAX) { /* in the oldest one's slot */
        Py_XSETREF(slots[*next], Py_NewRef(bytes));
        *next = (*next + 1) % count;
    }
    return bytes;
}

int bytes_shrink(PyObject **bytes, Py_ssize_t n)
{
    if (Py_REFCNT(*bytes) == 1)
        return _PyBytes_Resize(bytes, n);
    Py_SETREF(*bytes, PyBytes_FromStringAndSize(PyBytes_AS_STRING(*bytes), n));
    return *bytes == NULL ? -1 : 0;
}

/* The read itself, its arguments checked (fd, size > 0, offset >= 0): at
 * once from the page cache when it holds the bytes, else the ring's.
 * may_defer: a call (not a resumed deferred read), which may yield. */
static PyObject *engine_pread_now(EngineObject *self, int fd, Py_ssize_t size, long long offset, int may_defer)
{
    if (!self->ring_open || self->fork_generation != ringlet_fork_generation() || !rl_nowait_enabled(&self->nowait, fd))
        return engine_pread_by_ring_values(self, fd, size, offset, 0); /* it raises what needs raising */
    int defer = may_defer && loop_budget_found_spent(self) && size < (Py_ssize_t)RL_OFFLOAD_MIN;
    /* From RL_YIELD_EACH_MIN, the workers' once a call has found the turn's
     * budget spent (the flag), not when the clock alone says so: the clock
     * could run out between a lone task's previous check and this one, and
     * its read would wait ~60 us for a worker to start.  Read here, it
     * overshoots the budget by one copy and yields, which sets the flag. */
    int offload = size >= (Py_ssize_t)RL_YIELD_EACH_MIN
                      ? self->offload_head != NULL || loop_budget_found_spent(self)
                      : size >= (Py_ssize_t)RL_OFFLOAD_MIN && loop_offload_large_read(self);
    if (may_defer && offload) {
        /* Deferred as a small read is, up to RL_DEFER_BYTES_MAX a turn: the
         * workers cost 11 us of CPU for a cached 64 KiB read made in 6.4, and
         * their buffers are held across the turn too.  (A resumed one reads.) */
        if (size >= (Py_ssize_t)RL_YIELD_EACH_MIN || self->offload_head != NULL ||
            self->deferred_bytes + (size_t)size > RL_DEFER_BYTES_MAX)
            return engine_pread_by_ring_values(self, fd, size, offset, 0);
        self->deferred_bytes += (size_t)size;
        defer = 1;
    }
    /* A read of RL_YIELD_EACH_MIN or more within the turn's budget: with
     * other tasks ready, this one yields first and reads when resumed (as a
     * deferred small read, up to RL_DEFER_BYTES_MAX a turn): read first, it
     * would hold its bytes across the turn, and each of c tasks would copy
     * into a buffer of its own, cold in the CPU's cache, where reading after
     * the yield reuses the one the previous task dropped (4 tasks: 0.79-0.85
     * of the os.pread loop before, 0.85-0.91 after).  With none ready, it
     * reads at once and yields only once the budget is spent: a yield a read
     * cost 7-10% of a cached 1 MiB read. */
    int alone = 0;
    if (!defer && may_defer && size >= (Py_ssize_t)RL_YIELD_EACH_MIN) {
        if (!loop_others_ready(self))
            alone = 1;
        else if (self->deferred_bytes + (size_t)size <= RL_DEFER_BYTES_MAX) {
            self->deferred_bytes += (size_t)size;
            defer = 1;
        }
    }
    if (defer) {
        /* The turn's budget is spent: this task yields, and makes the read
         * when resumed.  Read first and the task would hold the bytes across
         * the turn: with many tasks that is many buffers, each cold in the
         * CPU's cache by the time it is written (256 tasks reading 60 KiB
         * blocks: up to a third fewer reads/s, and another task waited twice
         * as long for a turn).  A coroutine does nothing until resumed either. */
        OutcomeObject *o = (OutcomeObject *)outcome_new(self->state, NULL, NULL, NULL, 1);
        if (o == NULL)
            return NULL;
        if (engine_fd_closes(self, fd, &o->later_closes) < 0) {
            Py_DECREF(o);
            return PyErr_NoMemory();
        }
        o->later = 1;
        o->engine = (EngineObject *)Py_NewRef(self);
        o->later_fd = fd;
        o->later_size = size;
        o->later_offset = offset;
        return (PyObject *)o;
    }
    if ((size_t)size > RL_MAX_RW)
        size = RL_MAX_RW;
    PyObject *bytes = engine_read_bytes(self, size);
    if (bytes == NULL)
        return NULL;
    int64_t n = rl_read_nowait(&self->nowait, fd, PyBytes_AS_STRING(bytes), (size_t)size, offset);
    if (n < 0) {
        Py_DECREF(bytes);
        return engine_pread_by_ring_values(self, fd, size, offset, 1);
    }
    engine_count_nowait(self);
    if (n < size && bytes_shrink(&bytes, (Py_ssize_t)n) < 0) /* the end of the file */
        return NULL;
    /* A read of RL_YIELD_EACH_MIN or more yields every time another task
     * is ready (the copy dwarfs a turn of the loop, and tasks reading in
     * turn keep every task's wait alike: p99), else once the budget is
     * spent.  The clock is read either way: that check marks the budget
     * spent for the calls after it (see above).  A resumed deferred read has
     * just had its turn. */
    int yield_first = may_defer && (size >= (Py_ssize_t)RL_YIELD_EACH_MIN ? (loop_must_yield(self) || !alone) :
                                    size < (Py_ssize_t)RL_CLOCK_EVERY_MAX ? loop_must_yield_small(self)
                                                                          : loop_must_yield(self));
    PyObject *o = outcome_of_value(self, bytes, yield_first);
    Py_DECREF(bytes);
    return o;
}

/* ---- AsyncFile.pread without a Python frame ------------------------------ */

/* _pread_method(cls, fallback): what AsyncFile.pread (and, into=True,
 * AsyncFile.preadinto through Engine._preadinto) becomes: a SlotMethod
 * (slotmethod.c) whose call reads the file's slots (_fd, _readable, _pos,
 * _align, _engine) and calls Engine._pread itself, as the Python pread
 * (fallback) does; every other case -- a closed or write-only file, a
 * stream, keywords, another engine (ThreadEngine), a call off the engine's
 * loop -- is the fallback's.  aux: ringlet's Engine type; variant: into. */
enum { SLOT_FD, SLOT_READABLE, SLOT_POS, SLOT_ALIGN, SLOT_ENGINE, N_SLOTS };
static const char *const slot_names[N_SLOTS] = {"_fd", "_readable", "_pos", "_align", "_engine"};

static PyObject *pread_method_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SlotMethodObject *m = (SlotMethodObject *)callable;
    if (PyVectorcall_NARGS(nargsf) == 3 && kwnames == NULL && PyObject_TypeCheck(args[0], m->cls)) {
        PyObject *file = args[0];
        PyObject *fd = SLOT(file, m, SLOT_FD), *pos = SLOT(file, m, SLOT_POS);
        PyObject *align = SLOT(file, m, SLOT_ALIGN), *engine = SLOT(file, m, SLOT_ENGINE);
        if (fd != NULL && PyLong_CheckExact(fd) && PyLong_AsLong(fd) >= 0 && SLOT(file, m, SLOT_READABLE) == Py_True &&
            pos != NULL && pos != Py_None && align != NULL && PyLong_CheckExact(align) && engine != NULL &&
            Py_IS_TYPE(engine, (PyTypeObject *)m->aux)) {
            PyObject *argv[4] = {fd, args[1], args[2], align};
            PyObject *r = (m->variant ? engine__preadinto : engine__pread)((EngineObject *)engine, argv,
                                                                           PyLong_AsLong(align) != 0 ? 4 : 3);
            if (r != Py_None)
                return r; /* the read's awaitable, or NULL: what the Python pread would raise */
            Py_DECREF(r);
        }
    }
    return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
}

const char ringlet__pread_method_doc[] =
    "_pread_method(cls, fallback, into=False) -> SlotMethod\n\n"
    "AsyncFile.pread as a method descriptor that calls Engine._pread from C\n"
    "when cls's slots say the fast way applies, else fallback (the Python\n"
    "pread).  Set it on the class: cls.pread = _pread_method(cls, cls.pread).\n"
    "into=True: AsyncFile.preadinto, through Engine._preadinto.";

PyObject *ringlet__pread_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ringlet_state *st = PyModule_GetState(module);
    int into = nargs == 3 ? PyObject_IsTrue(args[2]) : 0;
    if (nargs < 2 || nargs > 3 || into < 0 || !PyType_Check(args[0]) || !PyCallable_Check(args[1])) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "_pread_method(cls, fallback, into=False)");
        return NULL;
    }
    SlotMethodObject *m = slot_method_new(st, (PyTypeObject *)args[0], args[1], slot_names, N_SLOTS, pread_method_call);
    if (m == NULL)
        return NULL;
    m->aux = Py_NewRef(st->EngineType);
    m->variant = into;
    return (PyObject *)m;
}
