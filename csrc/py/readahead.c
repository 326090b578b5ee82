/* What a file's read-ahead gives without the call's turn, made in C:
 * readline(), __anext__ and read(n) of AsyncFile and AsyncTextFile, when
 * the line, or the n bytes or characters, are read (decoded) ahead.
 *
 * A line already read ahead cost the Python method two frames (the method,
 * its read-ahead check) and a Python-level find and slice: ~0.35 us, ten
 * times the built-in file's readline; a small read, eight calls (~1.2 us).
 * Here the call is a SlotMethod (slotmethod.c) that returns a ReadAheadStep:
 * an awaitable that, when it first runs, takes the line or bytes from the
 * file's slots (as _buffered_line and _take do), or else calls the Python
 * method (fallback) and passes every send, throw and close on to its
 * coroutine.  Nothing is taken at the call: a step cancelled or closed before
 * it ran takes nothing, as a coroutine would not.  As for a line, another
 * loop of the file's thread may take what is read ahead (no engine work; the
 * loop's own check would cost a getpid(2)). */
#include "binding.h"

/* The slots these methods read; _readable for a binary file, _pending and
 * _newline for a text one; the Turns' busy slot last (an offset in Turns). */
enum { L_BUF, L_POS, L_TURNS, L_THREAD, L_READABLE, L_PENDING = L_READABLE, L_NEWLINE, L_BUSY };
static const char *const binary_slots[] = {"_rbuf", "_rpos", "_turns", "_thread", "_readable"};
static const char *const text_slots[] = {"_decoded", "_dpos", "_turns", "_thread", "_pending", "_newline"};

enum { STEP_TEXT = 1, STEP_ANEXT = 2, STEP_READ = 4 }; /* SlotMethodObject.variant */

typedef struct {
    PyObject_HEAD
    SlotMethodObject *method;
    PyObject *file;
    PyObject *size;     /* readline's size (None or -1) or read's (> 0) to pass on, or NULL */
    PyObject *delegate; /* the Python method's coroutine, while it runs */
    int started;        /* the first step ran: it took a line, or handed over to delegate */
} ReadAheadStepObject;

/* Replaces the file's slot i with value (a new reference, or NULL: -1). */
static int set_slot(PyObject *file, SlotMethodObject *m, int i, PyObject *value)
{
    if (value == NULL)
        return -1;
    PyObject *old = SLOT(file, m, i);
    SLOT(file, m, i) = value;
    Py_XDECREF(old);
    return 0;
}

/* Whether the read-ahead may be given without the call's turn: the file's calls are
 * not busy, and this is the file's thread (another one is refused by the
 * Python method). */
static int may_serve(PyObject *file, SlotMethodObject *m)
{
    PyObject *turns = SLOT(file, m, L_TURNS), *thread = SLOT(file, m, L_THREAD);
    if (turns == NULL || !Py_IS_TYPE(turns, (PyTypeObject *)m->aux) ||
        *(PyObject **)((char *)turns + m->offset[L_BUSY]) != Py_False || thread == NULL || !PyLong_CheckExact(thread))
        return 0;
    unsigned long id = PyLong_AsUnsignedLong(thread);
    if (id == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return id == PyThread_get_thread_ident();
}

/* What is read (decoded) ahead: *len, the size of the file's buffer (bytes,
 * or str for a text file), and *p, where the next call takes from.  0 when
 * the slots hold nothing left to take. */
static int read_ahead_span(PyObject *file, SlotMethodObject *m, Py_ssize_t *len, Py_ssize_t *p)
{
    PyObject *buf = SLOT(file, m, L_BUF), *pos = SLOT(file, m, L_POS);
    int text = m->variant & STEP_TEXT;
    if (buf == NULL || !(text ? PyUnicode_CheckExact(buf) : PyBytes_CheckExact(buf)) || pos == NULL ||
        !PyLong_CheckExact(pos))
        return 0;
    *len = text ? PyUnicode_GET_LENGTH(buf) : PyBytes_GET_SIZE(buf);
    *p = PyLong_AsSsize_t(pos);
    if (*p == -1 && PyErr_Occurred())
        PyErr_Clear();
    return *p >= 0 && *p < *len;
}

/* AsyncFile._buffered_line (want < 0) or _take(want) when want bytes are
 * read ahead: 1 with *line, 0 when what is read ahead will not do, -1 on error. */
static int take_binary(PyObject *file, SlotMethodObject *m, Py_ssize_t want, PyObject **line)
{
    Py_ssize_t len, p;
    if (!read_ahead_span(file, m, &len, &p) || want > len - p || SLOT(file, m, L_READABLE) != Py_True ||
        !may_serve(file, m))
        return 0;
    PyObject *buf = SLOT(file, m, L_BUF);
    const char *s = PyBytes_AS_STRING(buf);
    const char *nl = want < 0 ? memchr(s + p, '\n', (size_t)(len - p)) : s + p + want - 1;
    if (nl == NULL)
        return 0;
    Py_ssize_t end = nl - s + 1;
    *line = p == 0 && end == len ? Py_NewRef(buf) : PyBytes_FromStringAndSize(s + p, end - p);
    if (*line == NULL)
        return -1;
    int set = end == len ? set_slot(file, m, L_BUF, PyBytes_FromStringAndSize(NULL, 0)) == 0 &&
                                   set_slot(file, m, L_POS, PyLong_FromLong(0)) == 0
                         : set_slot(file, m, L_POS, PyLong_FromSsize_t(end)) == 0;
    if (!set)
        Py_CLEAR(*line);
    return set ? 1 : -1;
}

/* AsyncTextFile._buffered_line (want < 0: its line endings must be "\n"
 * ones) or read(want) when want characters are decoded ahead: as take_binary.
 * Text written and not yet handed to the kernel (_pending) is the Python
 * method's to flush first. */
static int take_text(PyObject *file, SlotMethodObject *m, Py_ssize_t want, PyObject **text)
{
    PyObject *pending = SLOT(file, m, L_PENDING), *newline = SLOT(file, m, L_NEWLINE);
    int newline_ok = want > 0 || newline == Py_None ||
                     (newline != NULL && PyUnicode_CheckExact(newline) &&
                      PyUnicode_CompareWithASCIIString(newline, "\n") == 0);
    Py_ssize_t len, p;
    if (!read_ahead_span(file, m, &len, &p) || want > len - p || pending == NULL || !PyList_CheckExact(pending) ||
        PyList_GET_SIZE(pending) != 0 || !newline_ok || !may_serve(file, m))
        return 0;
    PyObject *decoded = SLOT(file, m, L_BUF);
    Py_ssize_t end = p + want;
    if (want < 0) {
        Py_ssize_t found = PyUnicode_FindChar(decoded, '\n', p, len, 1);
        if (found < 0)
            return found == -2 ? -1 : 0;
        end = found + 1;
    }
    *text = PyUnicode_Substring(decoded, p, end);
    if (*text == NULL)
        return -1;
    if (set_slot(file, m, L_POS, PyLong_FromSsize_t(end)) < 0) {
        Py_CLEAR(*text);
        return -1;
    }
    return 1;
}

/* The step gave its answer (or its error): it lets go of the file and
 * becomes the module's spare, which the next call takes once nobody else
 * holds it (read_ahead_method_call): no allocation, GC link and free a
 * line. */
static void read_ahead_step_finished(ReadAheadStepObject *step)
{
    Py_CLEAR(step->file);
    Py_CLEAR(step->size);
    ringlet_state *st = PyType_GetModuleState(Py_TYPE(step));
    Py_XSETREF(st->spare_step, Py_NewRef(step));
}

static PyObject *read_ahead_step_reused(void)
{
    PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
    return NULL;
}

static PySendResult read_ahead_step_send(ReadAheadStepObject *step, PyObject *value, PyObject **result)
{
    *result = NULL;
    if (step->delegate == NULL) {
        if (step->started) {
            read_ahead_step_reused();
            return PYGEN_ERROR;
        }
        if (value != Py_None) { /* as a coroutine: refused, still not started */
            PyErr_SetString(PyExc_TypeError, "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        step->started = 1;
        SlotMethodObject *m = step->method;
        Py_ssize_t want = m->variant & STEP_READ ? PyLong_AsSsize_t(step->size) : -1; /* checked > 0 at the call */
        int taken = (m->variant & STEP_TEXT ? take_text : take_binary)(step->file, m, want, result);
        if (taken != 0) {
            read_ahead_step_finished(step);
            return taken > 0 ? PYGEN_RETURN : PYGEN_ERROR;
        }
        PyObject *args[2] = {step->file, step->size};
        step->delegate = PyObject_Vectorcall(m->fallback, args, step->size ? 2 : 1, NULL);
        if (step->delegate == NULL)
            return PYGEN_ERROR;
    }
    PySendResult r = PyIter_Send(step->delegate, value, result);
    if (r != PYGEN_NEXT) {
        Py_CLEAR(step->delegate);
        read_ahead_step_finished(step);
    }
    return r;
}

static PyObject *read_ahead_step_iternext(PyObject *step) { return ringlet_send(step, Py_None); }

/* throw(exc) or throw(type, value=None, traceback=None): into the Python
 * method's coroutine if it runs; raised here before the first step (which
 * then never runs: nothing is taken). */
static PyObject *read_ahead_step_throw(ReadAheadStepObject *step, PyObject *const *args, Py_ssize_t nargs)
{
    if (step->delegate == NULL || !THROW_ARGS_OK(nargs)) {
        if (!THROW_ARGS_OK(nargs) || !step->started) {
            step->started |= THROW_ARGS_OK(nargs);
            return ringlet_raise_thrown(args, nargs);
        }
        return read_ahead_step_reused();
    }
    PyObject *throw = PyObject_GetAttrString(step->delegate, "throw");
    PyObject *r = throw ? PyObject_Vectorcall(throw, args, (size_t)nargs, NULL) : NULL;
    Py_XDECREF(throw);
    if (r == NULL)
        Py_CLEAR(step->delegate);
    return r;
}

static PyObject *read_ahead_step_close(ReadAheadStepObject *step, PyObject *Py_UNUSED(ignored))
{
    PyObject *delegate = step->delegate;
    step->delegate = NULL;
    step->started = 1;
    if (delegate == NULL)
        Py_RETURN_NONE;
    PyObject *r = PyObject_CallMethod(delegate, "close", NULL);
    Py_DECREF(delegate);
    return r;
}

static PyObject *read_ahead_step_await(PyObject *self) { return Py_NewRef(self); }

static int read_ahead_step_traverse(ReadAheadStepObject *step, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(step));
    Py_VISIT(step->method);
    Py_VISIT(step->file);
    Py_VISIT(step->size);
    Py_VISIT(step->delegate);
    return 0;
}

static int read_ahead_step_clear(ReadAheadStepObject *step)
{
    Py_CLEAR(step->method);
    Py_CLEAR(step->file);
    Py_CLEAR(step->size);
    Py_CLEAR(step->delegate);
    return 0;
}

static void read_ahead_step_dealloc(ReadAheadStepObject *step)
{
    PyTypeObject *tp = Py_TYPE(step);
    PyObject_GC_UnTrack(step);
    read_ahead_step_clear(step);
    PyObject_GC_Del(step);
    Py_DECREF(tp);
}

static PyMethodDef read_ahead_step_methods[] = {
    {"send", (PyCFunction)ringlet_send, METH_O, "send(value): as a coroutine's."},
    {"throw", (PyCFunction)(void (*)(void))read_ahead_step_throw, METH_FASTCALL, "throw(exc): as a coroutine's."},
    {"close", (PyCFunction)read_ahead_step_close, METH_NOARGS, "close(): as a coroutine's."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot read_ahead_step_slots[] = {
    {Py_tp_doc, "A readline(), __anext__() or read(n) call: a coroutine that gives what is read ahead without a turn."},
    {Py_am_await, read_ahead_step_await},
    {Py_am_send, read_ahead_step_send},
    {Py_tp_iter, read_ahead_step_await},
    {Py_tp_iternext, read_ahead_step_iternext},
    {Py_tp_methods, read_ahead_step_methods},
    {Py_tp_traverse, read_ahead_step_traverse},
    {Py_tp_clear, read_ahead_step_clear},
    {Py_tp_dealloc, read_ahead_step_dealloc},
    {0, NULL},
};

PyType_Spec ringlet_read_ahead_step_spec = {
    .name = "ringlet._ringlet.ReadAheadStep",
    .basicsize = sizeof(ReadAheadStepObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = read_ahead_step_slots,
};

/* Whether x is an int whose value is -1 (want < 0) or more than 0 (want > 0). */
static int is_int_size(PyObject *x, int want)
{
    int overflow;
    long v = PyLong_CheckExact(x) ? PyLong_AsLongAndOverflow(x, &overflow) : 0;
    return PyLong_CheckExact(x) && !overflow && (want < 0 ? v == -1 : v > 0);
}

/* Whether what is read ahead may do for the call (its step checks again
 * when it runs): at least size bytes for a read, something for a line. */
static int read_ahead_holds(PyObject *file, SlotMethodObject *m, PyObject *size)
{
    Py_ssize_t len, p;
    return read_ahead_span(file, m, &len, &p) && (!(m->variant & STEP_READ) || PyLong_AsSsize_t(size) <= len - p);
}

/* readline(size=-1) with size -1 or, in a binary file, None (the sizes the
 * Python method serves a line read ahead for; a text file's refuses None, as
 * io.TextIOWrapper's), __anext__(), read(size) with size > 0,
 * when what is read ahead may do: a ReadAheadStep; every other call: the
 * Python method's coroutine (no step around it: a miss costs nothing more). */
static PyObject *read_ahead_method_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SlotMethodObject *m = (SlotMethodObject *)callable;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    int ours = kwnames == NULL && n >= 1 && PyObject_TypeCheck(args[0], m->cls) &&
               (m->variant & STEP_ANEXT  ? n == 1
                : m->variant & STEP_READ ? n == 2 && is_int_size(args[1], 1)
                                         : n == 1 || (n == 2 && ((args[1] == Py_None && !(m->variant & STEP_TEXT)) ||
                                                                 is_int_size(args[1], -1))));
    if (!ours || !read_ahead_holds(args[0], m, n == 2 ? args[1] : NULL))
        return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
    ringlet_state *st = PyType_GetModuleState(Py_TYPE(m));
    ReadAheadStepObject *step = (ReadAheadStepObject *)st->spare_step;
    if (step != NULL && Py_REFCNT(step) == 1) {
        /* Finished (it holds no file, size or delegate) and only the spare's:
         * nobody can tell it from a new one.  The caller's now, and no longer
         * the spare, so that one dropped unfinished is freed as before (its
         * delegate closed, the file let go). */
        st->spare_step = NULL;
        Py_SETREF(step->method, (SlotMethodObject *)Py_NewRef(m));
    } else {
        step = PyObject_GC_New(ReadAheadStepObject, st->ReadAheadStepType);
        if (step == NULL)
            return NULL;
        step->method = (SlotMethodObject *)Py_NewRef(m);
        step->delegate = NULL;
        PyObject_GC_Track(step);
    }
    step->file = Py_NewRef(args[0]);
    step->size = n == 2 ? Py_NewRef(args[1]) : NULL;
    step->started = 0;
    return (PyObject *)step;
}

const char ringlet__read_ahead_method_doc[] =
    "_read_ahead_method(cls, fallback, turns_cls, call, *, text) -> SlotMethod\n\n"
    "cls's call ('readline', '__anext__' or 'read') made in C: what is read\n"
    "ahead is taken from cls's slots (text: AsyncTextFile's, else AsyncFile's),\n"
    "as _buffered_line and read do, when the call first runs; every other case\n"
    "is fallback's (the Python method).";

PyObject *ringlet__read_ahead_method(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"cls", "fallback", "turns_cls", "call", "text", NULL};
    PyTypeObject *cls, *turns_cls;
    PyObject *fallback;
    const char *call;
    int text;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!s$p:_read_ahead_method", kwlist, &PyType_Type, &cls,
                                     &fallback, &PyType_Type, &turns_cls, &call, &text))
        return NULL;
    int variant = strcmp(call, "readline") == 0 ? 0
                  : strcmp(call, "__anext__") == 0 ? STEP_ANEXT
                  : strcmp(call, "read") == 0      ? STEP_READ
                                                   : -1;
    if (variant < 0) {
        PyErr_Format(PyExc_ValueError, "_read_ahead_method: no call '%s'", call);
        return NULL;
    }
    Py_ssize_t busy;
    if (slot_offset(turns_cls, "busy", &busy) < 0)
        return NULL;
    SlotMethodObject *m = slot_method_new(PyModule_GetState(module), cls, fallback, text ? text_slots : binary_slots,
                                          text ? 6 : 5, read_ahead_method_call);
    if (m == NULL)
        return NULL;
    m->aux = Py_NewRef(turns_cls);
    m->variant = variant | (text ? STEP_TEXT : 0);
    m->offset[L_BUSY] = busy;
    return (PyObject *)m;
}
