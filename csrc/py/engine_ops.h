/* The Engine's operation methods (engine_ops.c), for its method table in
 * engine.c.  The hot ones come in twins: NAME returns an asyncio.Future;
 * _NAME, for ringlet's own coroutines, returns a Ready (or raises) when the
 * kernel completed inline; both are a line that calls NAME_impl. */
#ifndef RINGLET_ENGINE_OPS_H
#define RINGLET_ENGINE_OPS_H

#include "binding.h"

extern const char engine_lazy_doc[]; /* the doc of every _NAME twin */

extern const char engine_read_doc[];
PyObject *engine_read(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *engine__read(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_readinto_doc[];
PyObject *engine_readinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *engine__readinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_write_doc[];
PyObject *engine_write(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *engine__write(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_read_many_doc[];
PyObject *engine_read_many(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *engine__read_many(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_open_doc[];
PyObject *engine_open(EngineObject *self, PyObject *args, PyObject *kwargs);
PyObject *engine__open(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_close_doc[];
PyObject *engine_close(EngineObject *self, PyObject *arg);
extern const char engine__close_doc[];
PyObject *engine__close(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine__adopt_doc[];
PyObject *engine__adopt(EngineObject *self, PyObject *arg);

extern const char engine_fsync_doc[];
PyObject *engine_fsync(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_ftruncate_doc[];
PyObject *engine_ftruncate(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine_statx_doc[];
PyObject *engine_statx(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_copy_doc[];
PyObject *engine_copy(EngineObject *self, PyObject *args, PyObject *kwargs);

extern const char engine_rename_doc[];
PyObject *engine_rename(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_unlink_doc[];
PyObject *engine_unlink(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_mkdir_doc[];
PyObject *engine_mkdir(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_symlink_doc[];
PyObject *engine_symlink(EngineObject *self, PyObject *args, PyObject *kwargs);
extern const char engine_link_doc[];
PyObject *engine_link(EngineObject *self, PyObject *args, PyObject *kwargs);

/* op_io.c: a cancelled caller's write stopped where the kernel can */
extern const char engine__write_stop_doc[];
PyObject *engine__write_stop(EngineObject *self, PyObject *future);

/* readfile.c: read_file's attempt without the ring */
extern const char engine__read_file_doc[];
PyObject *engine__read_file(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);

/* writefile.c: write_file's open, write and close in one submission */
extern const char engine__write_file_doc[];
PyObject *engine__write_file(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine__closes_at_once_doc[];
PyObject *engine__closes_at_once(EngineObject *self, PyObject *arg);

#endif
