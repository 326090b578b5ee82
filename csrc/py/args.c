/* Argument parsing shared by the Engine's methods.  Numbers are taken as
 * os.pread takes them: any object with __index__ (numpy.int64, say), never a
 * float, and never silently wrapped. */
#include "binding.h"

#include <string.h>

int parse_int(PyObject *obj, const char *what, int *out)
{
    long v = PyLong_AsLong(obj); /* calls __index__ */
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s is out of range", what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* An int up to max: TypeError, OverflowError (negative or too big). */
int parse_unsigned(PyObject *obj, const char *what, unsigned long max, unsigned *out)
{
    if (!PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL)
        return -1;
    unsigned long v = PyLong_AsUnsignedLong(index);
    Py_DECREF(index);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > max) {
        PyErr_Format(PyExc_OverflowError, "%s must be at most %lu", what, max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* __index__ of obj as a new int reference, or NULL with TypeError in the
 * words of PyLong_AsSsize_t (which the thread backend repeats). */
static PyObject *parse_index(PyObject *obj)
{
    if (!PyIndex_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an integer is required");
        return NULL;
    }
    return PyNumber_Index(obj);
}

int parse_ssize(PyObject *obj, Py_ssize_t *out)
{
    PyObject *index = parse_index(obj);
    if (index == NULL)
        return -1;
    *out = PyLong_AsSsize_t(index);
    Py_DECREF(index);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

int parse_offset(PyObject *obj, int64_t *out)
{
    long long v = PyLong_AsLongLong(obj); /* calls __index__ */
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < -1) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        return -1;
    }
    *out = v;
    return 0;
}

int parse_offset_align(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t first, int64_t *offset,
                       unsigned *align)
{
    *offset = -1;
    *align = 0;
    if (nargs > first && parse_offset(args[first], offset) < 0)
        return -1;
    if (nargs > first + 1) {
        PyObject *index = parse_index(args[first + 1]);
        if (index == NULL)
            return -1;
        unsigned long a = PyLong_AsUnsignedLong(index);
        Py_DECREF(index);
        if (a == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        *align = a > (1u << 20) ? (1u << 21) : (unsigned)a; /* too big: refused by op_kernel_io */
    }
    return 0;
}

int path_check(PyObject *path)
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

int parse_requests(PyObject *requests, Py_ssize_t *count, struct rl_nowait_read **reads)
{
    *reads = NULL;
    /* A tuple of our own: a list could be changed by the __index__ of one of
     * its numbers while it is walked (the walk would read past its end). */
    PyObject *iter = PyObject_GetIter(requests);
    if (iter == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError))
            PyErr_SetString(PyExc_TypeError, "requests must be a sequence of (size, offset)");
        return -1;
    }
    PyObject *own = PySequence_Tuple(iter);
    Py_DECREF(iter);
    if (own == NULL)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(own);
    *reads = PyMem_Calloc(n ? n : 1, sizeof **reads);
    if (*reads == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *req = PyTuple_GET_ITEM(own, i); /* held by own; a tuple cannot change */
        if (!PyTuple_Check(req) || PyTuple_GET_SIZE(req) != 2) {
            PyErr_Format(PyExc_TypeError, "requests[%zd] must be a (size, offset) tuple", i);
            goto error;
        }
        Py_ssize_t size;
        int64_t offset;
        if (parse_ssize(PyTuple_GET_ITEM(req, 0), &size) < 0 || parse_offset(PyTuple_GET_ITEM(req, 1), &offset) < 0)
            goto error;
        if (size < 0 || offset < 0) {
            PyErr_Format(PyExc_ValueError, "requests[%zd]: size and offset must be >= 0", i);
            goto error;
        }
        (*reads)[i].len = (size_t)size > RL_MAX_RW ? RL_MAX_RW : (size_t)size;
        (*reads)[i].offset = offset;
    }
    Py_DECREF(own);
    *count = n;
    return 0;

error:
    Py_DECREF(own);
    PyMem_Free(*reads);
    *reads = NULL;
    return -1;
}

int parse_opcodes(PyObject *opcodes, uint64_t allowed[4])
{
    memset(allowed, 0, 4 * sizeof allowed[0]);
    PyObject *iter = PyObject_GetIter(opcodes), *item;
    if (iter == NULL)
        return -1;
    while ((item = PyIter_Next(iter)) != NULL) {
        int op;
        int ok = parse_int(item, "opcode", &op) == 0;
        Py_DECREF(item);
        if (ok && (op < 0 || op > 255)) {
            PyErr_Format(PyExc_ValueError, "opcode must be 0..255, not %d", op);
            ok = 0;
        }
        if (!ok) {
            Py_DECREF(iter);
            return -1;
        }
        allowed[op / 64] |= (uint64_t)1 << (op % 64);
    }
    Py_DECREF(iter);
    return PyErr_Occurred() ? -1 : 0;
}
