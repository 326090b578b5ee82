/* ringlet._ringlet: multi-phase init, state in the module, heap types. */
#include "binding.h"

#include <errno.h>
#include <string.h>

PyDoc_STRVAR(probe_doc,
"probe() -> dict\n\n"
"Set up a throw-away ring to see what this kernel allows: the setup flags\n"
"it accepted, its feature bits, the supported opcodes (numbers), and\n"
"defer_signals_at_once: whether a DEFER_TASKRUN ring's eventfd is signalled\n"
"as soon as a pipe read it waits on is woken (if not, rings go without it).\n"
"Raises OSError (EPERM under seccomp or kernel.io_uring_disabled, ENOSYS\n"
"without io_uring) when it cannot.");

static PyObject *ringlet_probe(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    struct rl_ring ring;
    int ret = rl_ring_init(&ring, 4, 8);
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *ops = PyList_New(0);
    for (int op = 0; ops && op < 256; op++) {
        if (rl_ring_supports(&ring, op)) {
            PyObject *n = PyLong_FromLong(op);
            if (n == NULL || PyList_Append(ops, n) < 0)
                Py_CLEAR(ops);
            Py_XDECREF(n);
        }
    }
    PyObject *result = ops ? Py_BuildValue("{sssIsNsN}", "setup_flags", rl_ring_flags_name(ring.setup_flags),
                                           "features", ring.features, "opcodes", ops, "defer_signals_at_once",
                                           PyBool_FromLong(rl_defer_taskrun_signals_at_once()))
                           : NULL;
    rl_ring_exit(&ring);
    return result;
}

PyDoc_STRVAR(restrict_opcodes_doc,
"_restrict_opcodes(opcodes, /) -> None\n\n"
"A test hook that emulates an older kernel: every ring set up from now on\n"
"(probe()'s, and each new Engine's) reports only the opcodes in opcodes (ints)\n"
"as supported.  None lifts it.  Engine._restrict_opcodes does it for one engine.");

static PyObject *ringlet_restrict_opcodes(PyObject *module, PyObject *arg)
{
    (void)module;
    uint64_t allowed[4];
    if (arg != Py_None && parse_opcodes(arg, allowed) < 0)
        return NULL;
    rl_ring_restrict_new(arg == Py_None ? NULL : allowed);
    Py_RETURN_NONE;
}

#ifdef RINGLET_FAULTS
#include "fault.h"

static const char *const fault_names[RL_FAULT_KINDS] = {"alloc", "enter", "cqe", "short", "cancel"};

static int fault_kind(const char *name)
{
    for (int k = 0; k < RL_FAULT_KINDS; k++)
        if (strcmp(name, fault_names[k]) == 0)
            return k;
    PyErr_Format(PyExc_ValueError, "fault kind must be alloc, enter, cqe, short or cancel, not %.50s", name);
    return -1;
}

PyDoc_STRVAR(fault_arm_doc,
"_fault_arm(kind, skip, count, errno=0)\n\n"
"Test builds only (RINGLET_FAULTS=1): after skip events of kind (alloc,\n"
"enter, cqe, short, cancel) the next count fail; enter and cqe with -errno.");

static PyObject *ringlet_fault_arm(PyObject *module, PyObject *args)
{
    (void)module;
    const char *name;
    unsigned skip, count;
    int err = 0;
    if (!PyArg_ParseTuple(args, "sII|i:_fault_arm", &name, &skip, &count, &err))
        return NULL;
    int kind = fault_kind(name);
    if (kind < 0)
        return NULL;
    rl_fault_arm(kind, skip, count, -err);
    Py_RETURN_NONE;
}

static PyObject *ringlet_fault_hits(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *name = PyUnicode_AsUTF8(arg);
    int kind = name ? fault_kind(name) : -1;
    return kind < 0 ? NULL : PyLong_FromUnsignedLong(rl_fault_hits(kind));
}
#endif

PyDoc_STRVAR(live_doc,
"_live() -> dict\n\n"
"What ringlet itself holds now: Op objects (operations not yet freed),\n"
"O_DIRECT bounce buffers and copy state machines.  For leak tests.");

static PyObject *ringlet_live_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return Py_BuildValue("{snsnsn}", "ops", ringlet_live.ops, "bounce_buffers", ringlet_live.bounce_buffers,
                         "copies", ringlet_live.copies);
}

PyDoc_STRVAR(resolve_doc,
"_resolve(future, outcome, failed) -> None\n\n"
"Set the future's result (or exception, when failed) unless it is done\n"
"already (cancelled meanwhile).  The engine schedules it with call_soon.");

static PyObject *ringlet_resolve(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ringlet_state *st = PyModule_GetState(module);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_resolve(future, outcome, failed)");
        return NULL;
    }
    PyObject *done = PyObject_CallMethodNoArgs(args[0], st->str_done);
    int is_done = done ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    if (is_done != 0)
        return is_done < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *method = PyObject_IsTrue(args[2]) ? st->str_set_exception : st->str_set_result;
    return PyObject_CallMethodOneArg(args[0], method, args[1]);
}

static PyMethodDef ringlet_methods[] = {
    {"_resolve", (PyCFunction)(void (*)(void))ringlet_resolve, METH_FASTCALL, resolve_doc},
    {"_live", ringlet_live_counts, METH_NOARGS, live_doc},
    {"probe", ringlet_probe, METH_NOARGS, probe_doc},
    {"_pread_method", (PyCFunction)(void (*)(void))ringlet__pread_method, METH_FASTCALL, ringlet__pread_method_doc},
    {"_read_ahead_method", (PyCFunction)(void (*)(void))ringlet__read_ahead_method, METH_VARARGS | METH_KEYWORDS,
     ringlet__read_ahead_method_doc},
    {"_restrict_opcodes", ringlet_restrict_opcodes, METH_O, restrict_opcodes_doc},
#ifdef RINGLET_FAULTS
    {"_fault_arm", ringlet_fault_arm, METH_VARARGS, fault_arm_doc},
    {"_fault_hits", ringlet_fault_hits, METH_O, "_fault_hits(kind) -> int: failures injected since armed."},
#endif
    {NULL, NULL, 0, NULL},
};

static int ringlet_exec(PyObject *module)
{
    ringlet_state *st = PyModule_GetState(module);
    if (ringlet_register_atfork() != 0) {
        PyErr_SetString(PyExc_RuntimeError, "ringlet: pthread_atfork failed");
        return -1;
    }
#define INTERN(field, text)                                  \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL) \
        return -1;
    INTERN(str_create_future, "create_future");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_remove_done_callback, "remove_done_callback");
    INTERN(str_done, "done");
    INTERN(str__read, "_read");
    INTERN(str__thread_id, "_thread_id");
    INTERN(str__ready, "_ready");
    INTERN(str__scheduled, "_scheduled");
    INTERN(str__when, "_when");
    INTERN(str_call_soon, "call_soon");
    INTERN(str_call_exception_handler, "call_exception_handler");
    INTERN(str__wake, "_wake");
#undef INTERN
    PyObject *exceptions = PyImport_ImportModule("asyncio.exceptions");
    st->CancelledError = exceptions ? PyObject_GetAttrString(exceptions, "CancelledError") : NULL;
    st->InvalidStateError = st->CancelledError ? PyObject_GetAttrString(exceptions, "InvalidStateError") : NULL;
    Py_XDECREF(exceptions);
    if (st->InvalidStateError == NULL)
        return -1;
    PyObject *events = PyImport_ImportModule("asyncio.events");
    st->get_running_loop = events ? PyObject_GetAttrString(events, "_get_running_loop") : NULL;
    Py_XDECREF(events);
    if (st->get_running_loop == NULL)
        return -1;
    PyObject *contextvars = PyImport_ImportModule("contextvars");
    st->callback_context = contextvars ? PyObject_CallMethod(contextvars, "Context", NULL) : NULL;
    Py_XDECREF(contextvars);
    if (st->callback_context == NULL || (st->kwnames_context = Py_BuildValue("(s)", "context")) == NULL)
        return -1;
    if ((st->kwnames_loop = Py_BuildValue("(s)", "loop")) == NULL || (st->empty_tuple = PyTuple_New(0)) == NULL ||
        (st->resolve_later = PyObject_GetAttrString(module, "_resolve")) == NULL)
        return -1;
    PyObject *choices = PyTuple_New(RL_RING_FLAG_CHOICES);
    for (int i = 0; choices && i < RL_RING_FLAG_CHOICES; i++) {
        PyObject *name = PyUnicode_FromString(rl_ring_flags_name(rl_ring_flag_choices[i]));
        if (name == NULL)
            Py_CLEAR(choices);
        else
            PyTuple_SET_ITEM(choices, i, name);
    }
    /* The io_uring setup flags an Engine tries, in order. */
    if (choices == NULL || PyModule_AddObject(module, "SETUP_FLAG_CHOICES", choices) < 0) {
        Py_XDECREF(choices);
        return -1;
    }
    /* Limits the thread backend and the front end must agree with. */
    if (PyModule_AddIntConstant(module, "MAX_RW", RL_MAX_RW) < 0
        || PyModule_AddIntConstant(module, "MAX_DIRECT", RL_MAX_DIRECT) < 0
        || PyModule_AddIntConstant(module, "COPY_MAX_SLOTS", RL_COPY_MAX_SLOTS) < 0
        || PyModule_AddIntConstant(module, "INLINE_BUDGET_NS", RL_INLINE_BUDGET_NS) < 0)
        return -1;
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return -1;
    st->stat_result = PyObject_GetAttrString(os, "stat_result");
    Py_DECREF(os);
    if (st->stat_result == NULL)
        return -1;
    st->OpType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_op_spec, NULL);
    if (st->OpType == NULL)
        return -1;
    st->ReadyType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_ready_spec, NULL);
    st->OutcomeType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_outcome_spec, NULL);
    st->SlotMethodType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_slot_method_spec, NULL);
    st->ReadAheadStepType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_read_ahead_step_spec, NULL);
    if (st->ReadyType == NULL || st->OutcomeType == NULL || st->SlotMethodType == NULL || st->ReadAheadStepType == NULL)
        return -1;
    st->EngineType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ringlet_engine_spec, NULL);
    if (st->EngineType == NULL || PyModule_AddType(module, st->EngineType) < 0 ||
        PyModule_AddType(module, st->OpType) < 0)
        return -1;
    return 0;
}

static int ringlet_traverse(PyObject *module, visitproc visit, void *arg)
{
    ringlet_state *st = PyModule_GetState(module);
    Py_VISIT(st->EngineType);
    Py_VISIT(st->OpType);
    Py_VISIT(st->ReadyType);
    Py_VISIT(st->OutcomeType);
    Py_VISIT(st->SlotMethodType);
    Py_VISIT(st->ReadAheadStepType);
    Py_VISIT(st->spare_step);
    Py_VISIT(st->stat_result);
    Py_VISIT(st->resolve_later);
    Py_VISIT(st->CancelledError);
    Py_VISIT(st->InvalidStateError);
    return 0;
}

static int ringlet_clear(PyObject *module)
{
    ringlet_state *st = PyModule_GetState(module);
    Py_CLEAR(st->EngineType);
    Py_CLEAR(st->OpType);
    Py_CLEAR(st->ReadyType);
    Py_CLEAR(st->OutcomeType);
    Py_CLEAR(st->SlotMethodType);
    Py_CLEAR(st->spare_step);
    Py_CLEAR(st->ReadAheadStepType);
    Py_CLEAR(st->stat_result);
    Py_CLEAR(st->str_create_future);
    Py_CLEAR(st->kwnames_loop);
    Py_CLEAR(st->kwnames_context);
    Py_CLEAR(st->callback_context);
    Py_CLEAR(st->empty_tuple);
    Py_CLEAR(st->resolve_later);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_add_done_callback);
    Py_CLEAR(st->str_remove_done_callback);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str__read);
    Py_CLEAR(st->str__thread_id);
    Py_CLEAR(st->str__ready);
    Py_CLEAR(st->str__scheduled);
    Py_CLEAR(st->str__when);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->str_call_soon);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str__wake);
    Py_CLEAR(st->CancelledError);
    Py_CLEAR(st->InvalidStateError);
    return 0;
}

static void ringlet_free(void *module) { ringlet_clear((PyObject *)module); }

static PyModuleDef_Slot ringlet_slots[] = {
    {Py_mod_exec, ringlet_exec},
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"The C engine of ringlet: io_uring rings (Engine) and the cells of the\n"
"operations in flight (Op).  Use the ringlet package, not this module.");

static struct PyModuleDef ringlet_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ringlet._ringlet",
    .m_doc = module_doc,
    .m_size = sizeof(ringlet_state),
    .m_methods = ringlet_methods,
    .m_slots = ringlet_slots,
    .m_traverse = ringlet_traverse,
    .m_clear = ringlet_clear,
    .m_free = ringlet_free,
};

PyMODINIT_FUNC PyInit__ringlet(void) { return PyModuleDef_Init(&ringlet_module); }
