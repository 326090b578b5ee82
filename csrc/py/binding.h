/* The CPython binding: it only translates between the C engine in csrc/ and
 * Python objects.  Engine (engine.c) owns one ring per event loop; Op (op.c)
 * is the Python side of a task cell: it keeps the future, the result object
 * and every buffer the kernel may touch alive until the completion arrives. */
#ifndef RINGLET_BINDING_H
#define RINGLET_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "copy.h"
#include "nowait.h"
#include "ops.h"
#include "ring.h"

/* O_DIRECT bounce buffers of 4 KiB << k, k < RL_BOUNCE_CLASSES, are kept
 * for reuse, up to RL_BOUNCE_CACHE bytes per engine: a fresh large buffer
 * costs an mmap, page faults and a munmap per read. */
#define RL_BOUNCE_CLASSES 13 /* 4 KiB .. 16 MiB */
#define RL_BOUNCE_CACHE (64u << 20)

/* What the completion gives the future; OP_NONE: None (close, fsync, path operations). */
enum op_kind { OP_READ, OP_READINTO, OP_WRITE, OP_OPEN, OP_STATX, OP_COPY, OP_BATCH, OP_NONE };

typedef struct {
    PyTypeObject *EngineType;
    PyTypeObject *OpType;
    PyTypeObject *ReadyType;
    PyTypeObject *OutcomeType;
    PyObject *stat_result;      /* os.stat_result */
    PyObject *str_create_future, *str_set_result, *str_set_exception;
    PyObject *kwnames_loop;     /* ("loop",): Future(loop=loop) by vectorcall */
    PyObject *resolve_later;    /* _ringlet._resolve: sets a future unless it is done already */
    PyObject *empty_tuple;
    PyObject *kwnames_context;  /* ("context",) */
    PyObject *callback_context; /* one empty contextvars.Context for every op's done callback:
                                   add_done_callback would copy the caller's (64 bytes an op) */
    PyObject *str_add_done_callback, *str_remove_done_callback, *str_done;
} ringlet_state;

typedef struct {
    PyObject_HEAD
    struct rl_ring ring;
    int ring_open;              /* 0 after shutdown: operations raise */
    int shutting_down;          /* completions are dropped, not delivered */
    int flush_scheduled;        /* a call_soon(_flush) is pending for deferred submissions */
    int tick_scheduled;         /* a call_soon(_tick) is pending: the loop has not turned since */
    int64_t streak_start;       /* when inline completions began without the loop turning */
    unsigned long thread_id;    /* the loop's thread: the only one that may submit */
    unsigned long fork_generation;
    PyObject *loop_ref;         /* weak reference to the event loop */
    PyObject *future_type;      /* asyncio.Future for a stock loop (no Python frame), or NULL:
                                   then loop.create_future() */
    PyObject *tracer;           /* callable(dict) per finished op, or NULL: tracing off */
    struct bounce_pool {        /* O_DIRECT bounce buffers kept for reuse, by power-of-two size */
        char *free[RL_BOUNCE_CLASSES];
        size_t cached;          /* bytes held in the lists */
    } bounce_pool;
    struct rl_nowait nowait;    /* the non-blocking attempt before the ring (pread.c) */
    ringlet_state *state;
    PyObject *weakreflist;
} EngineObject;


/* The kernel moves at most RL_MAX_RW bytes in one read or write.  Longer
 * writes go in pieces of RL_MAX_DIRECT, a multiple of any O_DIRECT alignment
 * up to 1 MiB, which also caps an O_DIRECT read so its aligned range fits. */
#define RL_MAX_RW 0x7ffff000u
#define RL_MAX_DIRECT 0x7fd00000u

struct batch_part;

/* An op's timeline, kept only while tracing: CLOCK_MONOTONIC ns (0: did not happen). */
struct op_times {
    int64_t submitted, returned, reaped, resolved, resumed;
    unsigned long submit_thread, reap_thread;
    int inline_;
    int nowait;                 /* completed by the non-blocking attempt, without the ring */
    int64_t result;
};

/* The kernel's side of a read or write: the memory, length and offset it is
 * given (the op's own buffer, or an aligned bounce buffer for O_DIRECT). */
struct kernel_io {
    char *buf;
    size_t len;
    int64_t offset;             /* -1: the file position */
};

typedef struct {
    PyObject_HEAD
    struct rl_cell cell;
    EngineObject *engine;       /* strong: an op in flight keeps its engine */
    PyObject *future;           /* NULL until the op is still pending after its submission */
    PyObject *outcome;          /* inline completion: the value or exception, for op_launch */
    uint8_t failed;             /* outcome is an exception */
    PyObject *obj;              /* read: the bytes being filled; path operations: the path */
    PyObject *obj2;             /* the second path of rename/link/symlink */
    PyObject *filename;         /* for OSError, or NULL */
    PyObject *filename2;
    uint8_t kind;               /* enum op_kind */
    const char *name;           /* "read", "rename", ...: for traces */
    int fd;
    uint8_t watching;           /* the op is a done callback of its pending future */
    uint8_t abandoned;          /* the future finished first (cancelled): drop the result */
    uint8_t finished;           /* the outcome is delivered (or dropped) */
    int64_t offset;             /* -1: a stream, or an O_APPEND write */
    uint8_t moves_position;     /* offset was the descriptor's: move it past the bytes at completion */
    size_t length;              /* bytes asked for */
    size_t done;                /* write: bytes written so far */
    struct kernel_io io;        /* read/readinto/write */
    uint8_t direct;             /* O_DIRECT: submitted at the end of the loop tick */
    uint8_t offload;            /* a large read once the loop turn's inline budget is spent: to the
                                   kernel's workers (IOSQE_ASYNC), submitted at the end of the tick */
    char *bounce;               /* O_DIRECT: the aligned memory the kernel uses, or NULL */
    size_t bounce_size;         /* its size (a pool size class, or its exact size if not pooled) */
    size_t bounce_skip;         /* read: where the bytes asked for start in bounce */
    struct op_times *times;     /* when traced: the op's timeline, else NULL */
    union {
        Py_buffer view;         /* readinto/write: the caller's buffer, held */
        struct statx *stx;      /* statx: where the kernel writes */
        struct rl_copy *copy;
        struct {                /* read_many: one cell and one bytes per read */
            struct batch_part *parts;
            PyObject **items;
            Py_ssize_t count, pending;
            int error;          /* the first -errno */
        } batch;
    } u;
} OpObject;

/* One read of a read_many batch: its own cell, pointing back to the op. */
struct batch_part {
    struct rl_cell cell;
    OpObject *op;
    Py_ssize_t index;
    int64_t offset;
};

#define OP_FROM_CELL(c) ((OpObject *)((char *)(c) - offsetof(OpObject, cell)))

extern PyType_Spec ringlet_engine_spec;
extern PyType_Spec ringlet_op_spec;
extern PyType_Spec ringlet_ready_spec;
extern PyType_Spec ringlet_outcome_spec;

/* op.c */
int64_t ringlet_now_ns(void); /* CLOCK_MONOTONIC, the clock of time.monotonic_ns() */
extern struct ringlet_live {
    Py_ssize_t ops, bounce_buffers, copies;
} ringlet_live;
OpObject *op_new(EngineObject *engine, int kind, const char *name);
/* Submits a queued op (taking over the caller's reference) and returns what
 * the caller awaits: an asyncio.Future; or, want_future false and completed
 * inline, a Ready holding the value (an inline error is raised at once). */
PyObject *op_launch(OpObject *op, int want_future);
PyObject *ready_new(ringlet_state *st, PyObject *value);
void op_complete(struct rl_cell *cell);      /* the continuation of every Python op */
/* Delivers the outcome (res >= 0, or -errno), frees what the kernel held and
 * drops the ring's reference to the op. */
void op_finish(OpObject *op, int64_t res);
/* Queues (again) the kernel side of a read/readinto/write, from op->done on. */
int op_queue_io(OpObject *op);
void op_copy_done(struct rl_copy *copy, int64_t result);
void op_batch_part_complete(struct rl_cell *cell);
void op_emit_trace(OpObject *op);

/* pread.c */
/* The non-blocking attempt for a read or readinto op set up to go to the
 * ring: the count when the page cache held it all (the op is then finished
 * with it, see engine_finish_now), or -1: the ring's turn. */
int64_t op_try_nowait(OpObject *op);
PyObject *engine__pread(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char engine__pread_doc[];

/* engine.c */
int engine_schedule_flush(EngineObject *engine);
/* loop.call_soon(callable, *args) for the engine's loop; 0 or -1 with an exception. */
int engine_call_soon(EngineObject *engine, PyObject *callable, PyObject *args);
/* Whether an inline completion must go through the loop, so its task yields:
 * inline completions never suspend a task, and tasks reading a cached file
 * could otherwise keep the loop from everything else.  The budget is per
 * loop turn: once spent, every task yields until the loop has turned. */
int engine_must_yield(EngineObject *engine);
/* Reads from this size on are offloaded (see OpObject.offload) once the budget is spent. */
#define RL_OFFLOAD_MIN (64u << 10)
/* An aligned bounce buffer of at least size bytes (sets *allocated), or NULL. */
char *engine_bounce_get(EngineObject *engine, size_t size, unsigned align, size_t *allocated);
void engine_bounce_put(EngineObject *engine, char *buf, size_t allocated);
unsigned long ringlet_fork_generation(void);
int ringlet_register_atfork(void);
PyObject *ringlet_oserror(int err, PyObject *filename);

#endif
