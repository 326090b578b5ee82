/* SlotMethod: a method of one of ringlet's Python classes, made in C.
 *
 * Its call reads the instance's __slots__ at offsets found once (from the
 * class's member descriptors) and does the common case itself; every other
 * case is the Python method's (fallback), so the two cannot differ in what
 * they raise or return.  What it saves is the Python frame of a call: 6% of
 * a cached 4 KiB pread, most of a line or small read served from the read-ahead (readahead.c).  Each user
 * gives the call (vectorcall) and what it needs besides the slots (aux). */
#include "binding.h"

#include "structmember.h"

int slot_offset(PyTypeObject *cls, const char *name, Py_ssize_t *offset)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)cls, name); /* the slot's member descriptor */
    if (d == NULL)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    *offset = ok ? ((PyMemberDescrObject *)d)->d_member->offset : 0;
    Py_DECREF(d);
    if (!ok)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", cls->tp_name, name);
    return ok ? 0 : -1;
}

SlotMethodObject *slot_method_new(ringlet_state *st, PyTypeObject *cls, PyObject *fallback,
                                  const char *const *names, int n, vectorcallfunc call)
{
    Py_ssize_t offset[SLOT_METHOD_MAX_SLOTS] = {0};
    if (n > SLOT_METHOD_MAX_SLOTS) {
        PyErr_SetString(PyExc_SystemError, "ringlet: too many slots for a SlotMethod");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (slot_offset(cls, names[i], &offset[i]) < 0)
            return NULL;
    SlotMethodObject *m = PyObject_GC_New(SlotMethodObject, st->SlotMethodType);
    if (m == NULL)
        return NULL;
    m->fallback = Py_NewRef(fallback);
    m->cls = (PyTypeObject *)Py_NewRef(cls);
    m->aux = NULL;
    m->variant = 0;
    memcpy(m->offset, offset, sizeof offset);
    m->dict = NULL;
    m->vectorcall = call;
    PyObject_GC_Track(m);
    return m;
}

static PyObject *slot_method_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static int slot_method_traverse(SlotMethodObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->fallback);
    Py_VISIT(self->cls);
    Py_VISIT(self->aux);
    Py_VISIT(self->dict);
    return 0;
}

static int slot_method_clear(SlotMethodObject *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->aux);
    Py_CLEAR(self->dict);
    return 0;
}

static void slot_method_dealloc(SlotMethodObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    slot_method_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMemberDef slot_method_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(SlotMethodObject, dict), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SlotMethodObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef slot_method_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot slot_method_slots[] = {
    {Py_tp_doc, "A method of a ringlet class made in C, its Python method (__wrapped__) for the other cases."},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, slot_method_get},
    {Py_tp_members, slot_method_members},
    {Py_tp_getset, slot_method_getset},
    {Py_tp_traverse, slot_method_traverse},
    {Py_tp_clear, slot_method_clear},
    {Py_tp_dealloc, slot_method_dealloc},
    {0, NULL},
};

PyType_Spec ringlet_slot_method_spec = {
    .name = "ringlet._ringlet.SlotMethod",
    .basicsize = sizeof(SlotMethodObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = slot_method_slots,
};
