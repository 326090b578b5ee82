/* Ready: the result of an operation the kernel completed inside the
 * submitting call, awaitable without a future: awaiting it gives the value at
 * once.  Only ringlet's own coroutines see it (Engine._read and friends).
 * Not tracked by the GC: it lives for one await, and its value (bytes, an
 * int, a list of bytes, a stat_result) cannot refer back to it. */
#include "binding.h"

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

PyObject *ringlet_return_value(PyObject *value)
{
    /* StopIteration(value) built explicitly: a tuple value must not become its args. */
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    Py_DECREF(value);
    if (stop) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

PyObject *ringlet_send(PyObject *awaitable, PyObject *value)
{
    PyObject *result;
    return PyIter_Send(awaitable, value, &result) == PYGEN_RETURN ? ringlet_return_value(result) : result;
}

PyObject *ringlet_raise_thrown(PyObject *const *args, Py_ssize_t nargs)
{
    if (!THROW_ARGS_OK(nargs)) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
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

PyObject *ringlet_take_error(void)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

static PyObject *ready_await(PyObject *self) { return Py_NewRef(self); }

static PyObject *ready_iternext(ReadyObject *self) { return ringlet_return_value(Py_NewRef(self->value)); }

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
