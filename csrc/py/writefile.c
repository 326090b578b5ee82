/* write_file as one operation.  As three (open, write, close), each step came
 * back to Python, which issued the next: two turns of the loop, two futures
 * and two task steps between the open (which O_TRUNC sends to a kernel
 * worker) and the close that starts the file's writeback, all while the
 * caller waits.  Here each step's completion issues the next one in C, and
 * Python is resumed once, with the count or the error.  Only the opcodes
 * every kernel ringlet runs on has (OPENAT, WRITE, CLOSE). */
#define _GNU_SOURCE 1
#include "binding.h"
#include "engine_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Leaves the engine's list of write_files in flight, then finishes. */
static void write_file_finish(OpObject *op, int64_t res)
{
    EngineObject *engine = op->engine;
    struct write_file_chain *chain = op->chain;
    if (chain->prev)
        chain->prev->chain->next = chain->next;
    else if (engine->write_files == op)
        engine->write_files = chain->next;
    if (chain->next)
        chain->next->chain->prev = chain->prev;
    chain->prev = chain->next = NULL;
    op_finish(op, res);
}

static void write_file_close_complete(struct rl_cell *cell)
{
    OpObject *op = ((struct write_file_chain *)cell)->op;
    int64_t res = op->chain->write_res;
    if (cell->result < 0)
        res = cell->result; /* as the steps' finally: the close's error comes last */
    write_file_finish(op, res);
}

/* Closes the file, then finishes the op with res (the close's error first). */
static void write_file_close(OpObject *op, int64_t res)
{
    EngineObject *engine = op->engine;
    op->chain->write_res = res;
    if (engine->shutting_down) { /* nobody will see the result: the descriptor is closed here */
        close(op->fd);
        write_file_finish(op, res);
        return;
    }
    rl_nowait_forget(&engine->nowait, op->fd);
    op->chain->cell.on_complete = write_file_close_complete;
    if (rl_op_close(&engine->ring, &op->chain->cell, op->fd) < 0) {
        close(op->fd); /* no SQE to be had: close(2) never waits for a regular file's data */
        write_file_finish(op, res);
        return;
    }
    rl_ring_submit_and_reap(&engine->ring); /* a close completes inside the call */
}

void write_file_write_done(OpObject *op, int64_t res)
{
    write_file_close(op, res < 0 ? res : (int64_t)op->done);
}

static void write_file_open_complete(struct rl_cell *cell)
{
    OpObject *op = ((struct write_file_chain *)cell)->op;
    int64_t res = cell->result;
    if (res >= 0 && (op->engine->shutting_down || op->abandoned || op->chain->stop)) {
        close((int)res); /* the caller gave up before the write began: nothing is written */
        res = -ECANCELED;
    }
    if (res < 0) {
        write_file_finish(op, res); /* the open's error names the file */
        return;
    }
    op->fd = (int)res;
    Py_CLEAR(op->filename); /* errors of the write and the close name no file, as os.write's and os.close's */
    int queued = op_queue_io(op);
    if (queued < 0) {
        write_file_close(op, queued);
        return;
    }
    rl_ring_submit(&op->engine->ring);
}

void write_file_cancel(OpObject *op)
{
    rl_ring_cancel(&op->engine->ring, &op->chain->cell);
}

const char engine__write_file_doc[] =
"_write_file(path, data, filename, /) -> Awaitable[int]\n\n"
"write_file's open (O_WRONLY|O_CREAT|O_TRUNC), write and close as one\n"
"operation: each completion issues the next step.  The awaitable gives\n"
"len(data), or raises the error (an open's carries filename).";

PyObject *engine__write_file(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_write_file(path, data, filename)");
        return NULL;
    }
    PyObject *path = args[0];
    if (path_check(path) < 0 || engine_check(self) < 0)
        return NULL;
    OpObject *op = op_new(self, OP_WRITE, "write_file");
    if (op == NULL)
        return NULL;
    if (PyObject_GetBuffer(args[1], &op->u.view, PyBUF_SIMPLE) < 0) {
        op->u.view.obj = NULL;
        Py_DECREF(op);
        if (PyErr_ExceptionMatches(PyExc_BufferError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "write() argument must be a bytes-like object, not '%.100s'",
                         Py_TYPE(args[1])->tp_name);
        }
        return NULL;
    }
    op->obj = Py_NewRef(path); /* the kernel reads it until the open is done */
    op->filename = Py_NewRef(args[2] != Py_None ? args[2] : path);
    op->offset = 0;
    op->length = (size_t)op->u.view.len;
    op_kernel_io(op, op->u.view.buf, 0); /* align 0: cannot fail */
    op->chain = PyMem_Calloc(1, sizeof *op->chain);
    if (op->chain == NULL) {
        Py_DECREF(op);
        return PyErr_NoMemory();
    }
    op->chain->op = op;
    op->chain->cell.on_complete = write_file_open_complete;
    int queued = rl_op_openat(&self->ring, &op->chain->cell, AT_FDCWD, PyBytes_AS_STRING(path),
                              O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (queued == 0) {
        op->chain->next = self->write_files;
        if (self->write_files)
            self->write_files->chain->prev = op;
        self->write_files = op;
    }
    return op_launch(op, queued, 0);
}

const char engine__write_file_stop_doc[] =
"_write_file_stop(future, /) -> None\n\n"
"The caller of the _write_file whose future this is was cancelled: if its\n"
"open has not completed, it is cancelled and nothing is written (a file it\n"
"opened anyway is closed); a write already issued lands, and the close\n"
"follows.  The future still tells the end.";

PyObject *engine__write_file_stop(EngineObject *self, PyObject *future)
{
    if (!self->ring_open || self->fork_generation != ringlet_fork_generation())
        Py_RETURN_NONE; /* shut down: what was in flight is the kernel's to finish or drop */
    for (OpObject *op = self->write_files; op; op = op->chain->next) {
        if (op->future != future)
            continue;
        if (op->chain->cell.opcode == IORING_OP_OPENAT && op->chain->cell.state == RL_CELL_IN_FLIGHT) {
            op->chain->stop = 1;
            rl_ring_cancel(&self->ring, &op->chain->cell);
        }
        break;
    }
    Py_RETURN_NONE;
}
