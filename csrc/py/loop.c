/* What the binding asks of the event loop: call_soon, the budget of inline
 * completions after which a task must yield, the BaseExceptions raised while
 * completions are delivered, and the process's fork counter. */
#include "binding.h"

#include <poll.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>

/* ---- fork ---------------------------------------------------------------- */

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

int engine_check(EngineObject *self)
{
    if (!self->ring_open) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: this engine is closed");
        return -1;
    }
    if (self->fork_generation != ringlet_fork_generation()) {
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

/* ---- call_soon ----------------------------------------------------------- */

int loop_call_soon(EngineObject *engine, PyObject *callable, PyObject *args)
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

/* call_soon(engine.<method>) once until it has run; flag records that it is
 * pending.  In the engine's empty context: the engine's own callbacks need
 * none, and call_soon would otherwise copy the caller's. */
int loop_call_soon_once(EngineObject *engine, const char *method, int *flag)
{
    if (*flag)
        return 0;
    PyObject *loop = PyWeakref_GetObject(engine->loop_ref); /* borrowed */
    if (loop == NULL)
        return -1;
    if (loop == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: the engine's event loop is gone");
        return -1;
    }
    PyObject *bound = PyObject_GetAttrString((PyObject *)engine, method);
    if (bound == NULL)
        return -1;
    ringlet_state *st = engine->state;
    PyObject *argv[3] = {loop, bound, st->callback_context};
    PyObject *r = PyObject_VectorcallMethod(st->str_call_soon, argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            st->kwnames_context);
    Py_DECREF(bound);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    *flag = 1;
    return 0;
}

int loop_schedule_flush(EngineObject *engine)
{
    if (loop_call_soon_once(engine, "_flush", &engine->flush_scheduled) < 0) {
        PyErr_Clear();
        return -2;
    }
    return 0;
}

/* ---- the inline budget --------------------------------------------------- */

/* RL_INLINE_BUDGET_NS (binding.h): the turn's budget of inline completions. */

/* The budget when small reads (less than RL_CLOCK_EVERY_MAX) spend it.  Once
 * it is spent, every ready task yields once a turn, and asyncio's step of a
 * task costs about two reads of 4 KiB: with 64 tasks a turn of 1 ms spent a
 * tenth of the time on yields (256 tasks: a third).  A turn of 2 ms halves
 * that; another task then waits about 2 ms plus a step of each ready task,
 * still well under the 5 ms ringlet promises (issue 14); while nothing else
 * waits, the turn goes on (RL_SMALL_TURN_MAX_NS).  Large reads keep
 * RL_INLINE_BUDGET_NS: a copy of theirs dwarfs a yield. */
#define RL_SMALL_BUDGET_NS 2000000

/* A clock read costs about 2% of a cached 4 KiB read: after small reads it
 * is read every RL_CLOCK_EVERY of them, so the budget overshoots by at most
 * that many copies of less than RL_CLOCK_EVERY_MAX bytes (tens of microseconds). */
#define RL_CLOCK_EVERY 8

/* A turn of small reads whose budget is spent goes on for another budget
 * while nothing but the tasks its reads parked waits for the loop
 * (loop_others_wait): then the forced yields would only rotate the reading
 * tasks, at the price of a step of each (256 tasks in 2 ms turns: ~10% of
 * the reads/s).  At most this long, so that the reading tasks still take
 * turns; anything else that comes to wait has the loop within a budget. */
#define RL_SMALL_TURN_MAX_NS 8000000

int loop_epoll_fd_of(ringlet_state *st, PyObject *loop)
{
    int fd = -1;
    PyObject *ready = PyObject_GetAttr(loop, st->str__ready);
    PyObject *scheduled = ready ? PyObject_GetAttr(loop, st->str__scheduled) : NULL;
    PyObject *selector = scheduled ? PyObject_GetAttrString(loop, "_selector") : NULL;
    PyObject *selectors = selector ? PyImport_ImportModule("selectors") : NULL;
    PyObject *epoll_type = selectors ? PyObject_GetAttrString(selectors, "EpollSelector") : NULL;
    /* Exactly these types, whose meaning is known: a subclass may do anything. */
    if (epoll_type && Py_TYPE(selector) == (PyTypeObject *)epoll_type && PyList_CheckExact(scheduled) &&
        strcmp(Py_TYPE(ready)->tp_name, "collections.deque") == 0) {
        PyObject *n = PyObject_CallMethod(selector, "fileno", NULL);
        long v = n && PyLong_Check(n) ? PyLong_AsLong(n) : -1;
        fd = v >= 0 && v <= INT32_MAX ? (int)v : -1;
        Py_XDECREF(n);
    }
    Py_XDECREF(epoll_type);
    Py_XDECREF(selectors);
    Py_XDECREF(selector);
    Py_XDECREF(scheduled);
    Py_XDECREF(ready);
    PyErr_Clear();
    return fd;
}

/* The callbacks in the loop's ready queue (asyncio's _ready) besides the
 * engine's own _tick and _flush, which do not wait for a reading task; -1
 * when that cannot be looked at (uvloop, another loop, an error). */
static Py_ssize_t loop_ready_besides_engine(EngineObject *engine, PyObject *loop)
{
    PyObject *ready = PyObject_GetAttr(loop, engine->state->str__ready);
    Py_ssize_t n = ready != NULL ? PyObject_Size(ready) : -1;
    Py_XDECREF(ready);
    if (n < 0) {
        PyErr_Clear();
        return -1;
    }
    return n - (engine->tick_scheduled != 0) - (engine->flush_scheduled != 0);
}

static PyObject *loop_of(EngineObject *engine) /* borrowed; NULL when gone */
{
    PyObject *loop = PyWeakref_GetObject(engine->loop_ref);
    if (loop == NULL || loop == Py_None) {
        PyErr_Clear();
        return NULL;
    }
    return loop;
}

int loop_others_ready(EngineObject *engine)
{
    PyObject *loop = loop_of(engine);
    return loop == NULL || loop_ready_besides_engine(engine, loop) != 0;
}

/* Whether anything but the tasks parked by small reads waits for the loop
 * to turn: another callback in its ready queue, a timer due before until_ns,
 * or a descriptor it watches that is ready (the engine's eventfd among them:
 * completions to deliver).  poll() on the epoll fd answers without taking an
 * event.  In doubt (another kind of loop, an error), something waits.  (A
 * parked task is counted as one callback, as asyncio's Task makes it; a
 * runner that parks without call_soon would hide a callback of another:
 * then a turn lasts at most RL_SMALL_TURN_MAX_NS.) */
static int loop_others_wait(EngineObject *engine, int64_t until_ns)
{
    PyObject *loop = engine->loop_epoll_fd < 0 ? NULL : loop_of(engine);
    if (loop == NULL)
        return 1;
    Py_ssize_t n = loop_ready_besides_engine(engine, loop);
    /* A pending _flush waits too: O_DIRECT reads it would submit (op.c). */
    int waits = n < 0 || n > engine->parked || engine->flush_scheduled;
    if (!waits) {
        PyObject *scheduled = PyObject_GetAttr(loop, engine->state->str__scheduled);
        waits = scheduled == NULL || !PyList_CheckExact(scheduled);
        if (!waits && PyList_GET_SIZE(scheduled) > 0) { /* a heap: the first is due first */
            PyObject *when = PyObject_GetAttr(PyList_GET_ITEM(scheduled, 0), engine->state->str__when);
            double w = when != NULL ? PyFloat_AsDouble(when) : -1.0;
            Py_XDECREF(when);
            waits = PyErr_Occurred() != NULL || w * 1e9 <= (double)until_ns; /* loop.time() is CLOCK_MONOTONIC */
        }
        Py_XDECREF(scheduled);
        PyErr_Clear();
    }
    if (!waits) {
        struct pollfd p = {.fd = engine->loop_epoll_fd, .events = POLLIN};
        waits = poll(&p, 1, 0) != 0; /* ready, or an error */
    }
    return waits;
}

static int must_yield_after(EngineObject *engine, int64_t budget_ns, int renewable)
{
    if (engine->tick_scheduled) {
        if (!engine->budget_spent) { /* once spent, spent until the loop turns: no clock needed */
            int64_t now = rl_now_ns();
            if (now - engine->streak_start > budget_ns) {
                if (renewable && now - engine->turn_start + budget_ns <= RL_SMALL_TURN_MAX_NS &&
                    !loop_others_wait(engine, now + budget_ns))
                    engine->streak_start = now;
                else
                    engine->budget_spent = 1;
            }
        }
        return engine->budget_spent;
    }
    /* The loop turned since the last inline completion: start this turn's
     * budget, and learn when it turns next. */
    if (loop_call_soon_once(engine, "_tick", &engine->tick_scheduled) < 0)
        PyErr_Clear(); /* then no yield is forced: a lost tick costs fairness, not data */
    engine->streak_start = engine->turn_start = rl_now_ns();
    return 0;
}

int loop_must_yield(EngineObject *engine) { return must_yield_after(engine, RL_INLINE_BUDGET_NS, 0); }

int loop_is_running_here(EngineObject *engine)
{
    unsigned long me = PyThread_get_thread_ident();
    if (engine->thread_id != me)
        return 0;
    PyObject *loop = PyWeakref_GetObject(engine->loop_ref); /* borrowed */
    if (loop == NULL || loop == Py_None) {
        PyErr_Clear();
        return 0;
    }
    int here;
    if (engine->loop_has_thread_id) {
        /* asyncio's run_forever makes the loop's own bound methods the thread's
         * async generator hooks (sys.set_asyncgen_hooks) for as long as it runs,
         * and puts the previous ones back when it returns: a finalizer hook bound
         * to this loop says it runs here, in two pointer reads (the attribute
         * read below costs 6% of a cached 64-byte read).  Any other hook
         * (changed by the program, or another loop's) leaves it to _thread_id. */
        PyObject *hook = PyThreadState_Get()->async_gen_finalizer;
        if (hook != NULL && PyMethod_Check(hook) && PyMethod_GET_SELF(hook) == loop)
            return 1;
        /* asyncio's loops keep the thread running them in _thread_id (None
         * when stopped), and only one loop runs in a thread at a time: a read
         * of it answers, where asyncio's _get_running_loop makes a getpid()
         * system call each time. */
        PyObject *tid = PyObject_GetAttr(loop, engine->state->str__thread_id);
        here = tid != NULL && PyLong_CheckExact(tid) && PyLong_AsUnsignedLong(tid) == me;
        Py_XDECREF(tid);
    } else {
        PyObject *running = PyObject_CallNoArgs(engine->state->get_running_loop);
        here = running == loop;
        Py_XDECREF(running);
    }
    PyErr_Clear();
    return here;
}

int loop_must_yield_small(EngineObject *engine)
{
    if (engine->tick_scheduled && !engine->budget_spent && ++engine->unclocked < RL_CLOCK_EVERY)
        return 0;
    engine->unclocked = 0;
    return must_yield_after(engine, RL_SMALL_BUDGET_NS, 1);
}

int loop_offload_large_read(EngineObject *engine)
{
    return engine->offload_head != NULL || loop_must_yield(engine);
}

void loop_ticked(EngineObject *engine)
{
    engine->tick_scheduled = 0;
    engine->budget_spent = 0;
    engine->unclocked = 0;
    engine->deferred_bytes = 0;
}

/* ---- BaseExceptions raised while completions are delivered --------------- */

void loop_report_error(EngineObject *engine, PyObject *obj, const char *format, ...)
{
    PyObject *exc = ringlet_take_error();
    /* The message only now: its reprs run Python code, which must not find an error set. */
    va_list args;
    va_start(args, format);
    PyObject *message = PyUnicode_FromFormatV(format, args);
    va_end(args);
    PyObject *loop = engine->loop_ref ? PyWeakref_GetObject(engine->loop_ref) : NULL;
    PyObject *context = loop && loop != Py_None && exc && message
                            ? Py_BuildValue("{sOsO}", "message", message, "exception", exc)
                            : NULL;
    PyObject *r = context ? PyObject_CallMethodOneArg(loop, engine->state->str_call_exception_handler, context)
                          : NULL;
    if (r == NULL) { /* no loop to tell (or telling it failed): as unraisable */
        PyErr_Clear();
        if (exc != NULL)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        PyErr_WriteUnraisable(obj);
    }
    Py_XDECREF(r);
    Py_XDECREF(context);
    Py_XDECREF(message);
    Py_XDECREF(exc);
}

void loop_note_error(EngineObject *engine, PyObject *obj)
{
    if (PyErr_ExceptionMatches(PyExc_Exception) || engine->interrupt != NULL) {
        /* (a second interrupt adds nothing: the first leaves the loop) */
        if (obj)
            loop_report_error(engine, obj, "ringlet: %R raised", obj);
        else
            loop_report_error(engine, obj, "ringlet: an error while completions were delivered");
        return;
    }
    engine->interrupt = ringlet_take_error();
    /* The next drain raises it (when this is not a drain already, which
     * raises it at its end): wake the loop for one. */
    if (engine->ring_open)
        eventfd_write(rl_ring_wake_fd(&engine->ring), 1);
}

void loop_check_signals(EngineObject *engine)
{
    if (PyErr_CheckSignals() < 0)
        loop_note_error(engine, NULL);
}

int loop_raise_interrupt(EngineObject *engine)
{
    PyObject *exc = engine->interrupt;
    if (exc == NULL)
        return 0;
    engine->interrupt = NULL;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
    return -1;
}
