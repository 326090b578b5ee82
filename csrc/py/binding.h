/* The CPython binding: it only translates between the C engine in csrc/ and
 * Python objects.  Engine (engine.c, engine_ops.c) owns one ring per event
 * loop; Op (op.c, op_io.c) is the Python side of a task cell: it keeps the
 * future, the result object and every buffer the kernel may touch alive
 * until the completion arrives.
 *
 * Who calls whom -- one way, no circle (each file calls only those below it):
 *   module.c      the module: its state, the types, probe(), test hooks
 *   engine.c      the Engine type: life (new, shutdown, dealloc, GC), the methods the
 *                 loop calls (drain, _drain_and_wake, _wake, _flush, _tick), the method table
 *   engine_ops.c  the operation methods: parse (args.c), make an Op, point the
 *                 kernel at its memory (op_io.c), queue its SQE, launch it (op.c)
 *   op_io.c       the kernel side of reads and writes: memory, file position,
 *                 queueing again; finishes an op through op.c
 *   op.c          an operation's life: launch, completion, delivery to its future
 *   loop.c        what the binding asks of the event loop (call_soon, the inline
 *                 budget, interrupts to raise out of it), engine_check, the fork counter
 *   ready.c, args.c   the Ready type; argument parsing: leaves
 *   ../bounce.c, ../ring.c, ../ops.c, ../copy.c: the pure C engine under all of them. */
#ifndef RINGLET_BINDING_H
#define RINGLET_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "bounce.h"
#include "copy.h"
#include "nowait.h"
#include "ops.h"
#include "ring.h"

/* What the completion gives the future; OP_NONE: None (close, fsync, path operations). */
enum op_kind { OP_READ, OP_READINTO, OP_WRITE, OP_OPEN, OP_STATX, OP_COPY, OP_BATCH, OP_NONE };

/* An awaited op's state as a future. */
enum op_fut_state { OP_PENDING, OP_DONE, OP_CANCELLED };

typedef struct {
    PyTypeObject *EngineType;
    PyTypeObject *OpType;
    PyTypeObject *ReadyType;
    PyTypeObject *OutcomeType;
    PyTypeObject *SlotMethodType;
    PyTypeObject *ReadAheadStepType;
    PyObject *spare_step;       /* a finished ReadAheadStep, handed out again when nobody holds it (readahead.c) */
    PyObject *stat_result;      /* os.stat_result */
    PyObject *str_create_future, *str_set_result, *str_set_exception;
    PyObject *kwnames_loop;     /* ("loop",): Future(loop=loop) by vectorcall */
    PyObject *resolve_later;    /* _ringlet._resolve: sets a future unless it is done already */
    PyObject *empty_tuple;
    PyObject *kwnames_context;  /* ("context",) */
    PyObject *callback_context; /* one empty contextvars.Context for every op's done callback:
                                   add_done_callback would copy the caller's (64 bytes an op) */
    PyObject *str_add_done_callback, *str_remove_done_callback, *str_done;
    PyObject *str_call_soon, *str_call_exception_handler, *str__wake;
    PyObject *CancelledError, *InvalidStateError; /* asyncio's, for an awaited op (op.c) */
    PyObject *str__read;         /* "_read": Engine._pread's way to the ring */
    PyObject *str__thread_id;
    PyObject *str__ready, *str__scheduled, *str__when; /* asyncio loop internals (loop.c) */
    PyObject *get_running_loop; /* asyncio.events._get_running_loop */
} ringlet_state;

struct OpObject;

/* Bytes objects of larger reads the engine keeps for reuse (engine_read_bytes):
 * at most this many, of at most RL_SPARE_LARGE_MAX bytes each.  Sixteen: the
 * workers' reads completed in one turn hold theirs until their tasks run in
 * the next (64 tasks reading cached 1 MiB with 8: half the faults were left). */
#define RL_SPARE_LARGE 16
#define RL_SPARE_LARGE_MAX (1u << 20)

typedef struct {
    PyObject_HEAD
    struct rl_ring ring;
    int ring_open;              /* 0 after shutdown: operations raise */
    int shutting_down;          /* completions are dropped, not delivered */
    int flush_scheduled;        /* a call_soon(_flush) is pending for deferred submissions */
    int tick_scheduled;         /* a call_soon(_tick) is pending: the loop has not turned since */
    int loop_has_thread_id;     /* the loop says in _thread_id which thread runs it (asyncio's own) */
    int64_t streak_start;       /* when inline completions began without the loop turning */
    int budget_spent;           /* this turn's inline budget is spent: tasks yield until the loop turns */
    int64_t turn_start;         /* when the first inline completion of this turn was made */
    int loop_epoll_fd;          /* the epoll fd of an asyncio selector loop whose ready queue and
                                   timers can be looked at (loop_others_wait), else -1 */
    Py_ssize_t parked;          /* tasks parked by a small read's forced yield, not resumed yet (pread.c) */
    size_t deferred_bytes;      /* bytes of large reads deferred to the next turn in this one (pread.c) */
    unsigned unclocked;         /* small inline reads since the clock was last read (loop_must_yield_small) */
    unsigned long thread_id;    /* the loop's thread: the only one that may submit */
    unsigned long fork_generation;
    PyObject *loop_ref;         /* weak reference to the event loop */
    PyObject *future_type;      /* asyncio.Future for a stock loop (no Python frame), or NULL:
                                   then loop.create_future() */
    PyObject *tracer;           /* callable(dict) per finished op, or NULL: tracing off */
    PyObject *interrupt;        /* a BaseException (KeyboardInterrupt...) raised while completions
                                   were delivered, to raise out of the loop once they all are */
    struct rl_bounce_pool bounce_pool; /* O_DIRECT bounce buffers kept for reuse */
    struct rl_nowait nowait;    /* the non-blocking attempt before the ring (pread.c) */
    PyObject *spare_outcome;    /* an Outcome _pread reuses while nobody else holds it (pread.c) */
    PyObject *spare_bytes[2];   /* the bytes of the last two small reads, refilled once nobody else holds them */
    int spare_bytes_next;       /* the slot a new one takes */
    PyObject *spare_large[RL_SPARE_LARGE]; /* the same for larger reads (engine_read_bytes) */
    int spare_large_next;
    PyObject *woken;            /* awaited ops whose done callbacks wait for the next _wake (a list), or NULL */
    int wake_scheduled;         /* a call_soon(_wake) is pending */
    int reaping_for_wake;       /* _drain_and_wake is reaping, or _flush serving a waiting read: the
                                   caller runs the done callbacks itself (engine_wake_ops) */
    int direct_at_once;         /* _drain_and_wake runs the woken tasks: the O_DIRECT reads they make
                                   are submitted at once, not in a _flush (op_launch) */
    /* Offloaded reads (OpObject.offload) waiting for one of offload_max places with the kernel's
     * workers, in call order (op_io.c): a bounded number copy at once, and the rest wait their
     * turn here rather than in io-wq, where a read queued behind hundreds waits for all of them
     * while reads made inline meanwhile go first. */
    struct OpObject *offload_head, *offload_tail;
    unsigned offload_running, offload_max;
    uint64_t files_nowait;      /* read_file calls done without the ring (readfile.c) */
    uint64_t files_chained;     /* write_file calls run as one chain on side (writefile.c) */
    struct OpObject *writes;    /* writes in flight, write_file's too: Engine._write_stop finds them (op_io.c) */
    struct fd_use *fd_uses;     /* per descriptor number: the ops holding it, its closes (fdhold.c) */
    int fd_uses_len;
    struct OpObject *closes_waiting; /* closes waiting until nothing holds their number, in call order */
    struct rl_ring side;        /* write_file's chains (writefile.c): a ring without DEFER_TASKRUN */
    int side_state;             /* 0: not tried yet; 1: side is set up; -1: not to be had */
    uint32_t side_free;         /* side's fixed-file slots that hold no file, a bit each */
    struct rl_ring quiet;       /* copy's writes that wake nobody (csrc/copy.h): no eventfd */
    int quiet_state;            /* 0: not tried yet; 1: quiet is set up; -1: not to be had */
    uint64_t writes_quiet;      /* copy writes finished on quiet: reaped behind a mark, no wakeup */
    ringlet_state *state;
    PyObject *weakreflist;
} EngineObject;


/* The kernel moves at most RL_MAX_RW bytes in one read or write.  Longer
 * writes go in pieces of RL_MAX_DIRECT, a multiple of any O_DIRECT alignment
 * up to 1 MiB, which also caps an O_DIRECT read so its aligned range fits. */
#define RL_MAX_RW 0x7ffff000u
#define RL_MAX_DIRECT 0x7fd00000u

struct batch_part;

/* write_file's steps around its write (writefile.c): the open, then the close. */
struct write_file_chain {
    struct rl_cell cell;        /* the open's, then the close's */
    struct OpObject *op;
    int64_t write_res;          /* the bytes written, or -errno */
    /* On engine->side (chained in the kernel): cell is the open's; these the write's, the
     * writeback start's (a rewrite's chain only) and the close's. */
    struct rl_cell side_write, side_sync, side_close;
    int32_t open_res, close_res;
    uint8_t on_side;            /* the ops run as one linked chain on engine->side */
    uint8_t pending;            /* side completions still to come before the next step */
    uint8_t slot;               /* the fixed-file slot the open fills */
    uint8_t closed;             /* the slot's file is closed (or was never opened) */
    uint8_t skipping;           /* the first submission's one completion is still to come */
    uint8_t excl;               /* the side chain's open is O_EXCL: no writeback start in it (writefile.c) */
};

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

typedef struct OpObject {
    PyObject_HEAD
    struct rl_cell cell;
    EngineObject *engine;       /* strong: an op in flight keeps its engine */
    PyObject *future;           /* NULL until the op is still pending after its submission */
    PyObject *outcome;          /* inline completion: the value or exception, for op_launch */
    PyObject *obj;              /* read: the bytes being filled; path operations: the path */
    PyObject *obj2;             /* the second path of rename/link/symlink */
    PyObject *filename;         /* for OSError, or NULL */
    PyObject *filename2;
    const char *name;           /* "read", "rename", ...: for traces */
    int fd;
    /* The flags together: an op's size is the memory each read in flight costs. */
    uint8_t kind;               /* enum op_kind */
    uint8_t failed;             /* outcome is an exception */
    uint8_t watching;           /* the op is a done callback of its pending future */
    uint8_t abandoned;          /* the future finished first (cancelled): drop the result */
    uint8_t awaited;            /* the op itself is what the caller awaits, and is its own future
                                   (op.c): no asyncio.Future; a throw into the wait cancels */
    uint8_t fut_state;          /* awaited: OP_PENDING, OP_DONE (outcome, failed) or OP_CANCELLED */
    uint8_t fut_blocking;       /* _asyncio_future_blocking: 0 None (not yielded yet), 1 True, 2 False */
    uint8_t handed_over;        /* awaited: the await has ended (its value or error was given) */
    uint8_t wake_queued;        /* in engine->woken */
    uint8_t finished;           /* the outcome is delivered (or dropped) */
    uint8_t moves_position;     /* offset was the descriptor's: move it past the bytes at completion */
    uint8_t direct;             /* O_DIRECT: submitted at the end of the loop tick */
    uint8_t offload;            /* a large read once the loop turn's inline budget is spent: to the
                                   kernel's workers (IOSQE_ASYNC), submitted at the end of the tick */
    uint8_t offload_running;    /* holds one of the engine's offload_max places (until its completion) */
    uint8_t offload_waiting;    /* in the engine's offload queue: not yet given to the kernel */
    uint8_t holds_fd;           /* holds its descriptor number until it finishes (fdhold.c) */
    uint8_t close_in_worker;    /* a close: runs in a kernel worker (Engine._close's release_in_worker) */
    uint8_t stopping;           /* a write whose caller was cancelled (Engine._write_stop): no short
                                   write is continued; write_file's, during its open: nothing is written */
    PyObject *callback;         /* awaited: the first done callback and its context, or NULL */
    PyObject *callback_context;
    PyObject *callbacks;        /* the others: a list of (callback, context), or NULL */
    PyObject *cancel_msg;       /* cancelled: the message given to cancel(), or NULL */
    int64_t offset;             /* -1: a stream, or an O_APPEND write */
    size_t length;              /* bytes asked for */
    size_t done;                /* write: bytes written so far */
    struct kernel_io io;        /* read/readinto/write */
    /* Links of the engine's list the op is in: an offloaded read waiting for a place (op_io.c;
     * both), a close waiting for its number's holds (fdhold.c; next), a write in flight (op_io.c). */
    struct OpObject *wait_prev, *wait_next;
    char *bounce;               /* O_DIRECT: the aligned memory the kernel uses, or NULL */
    size_t bounce_size;         /* its size (a pool size class, or its exact size if not pooled) */
    size_t bounce_skip;         /* read: where the bytes asked for start in bounce */
    struct op_times *times;     /* when traced: the op's timeline, else NULL */
    struct write_file_chain *chain; /* write_file's: opened and closed around the write, else NULL */
    union {
        Py_buffer view;         /* readinto/write: the caller's buffer, held */
        struct statx *stx;      /* statx: where the kernel writes */
        struct {
            struct rl_copy *run;
            int held_src;       /* its source's number while held as fd (its destination) is (fdhold.c), else -1 */
        } copy;
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
extern PyType_Spec ringlet_slot_method_spec;
extern PyType_Spec ringlet_read_ahead_step_spec;

/* What ringlet itself holds now (tests check it returns to its baseline:
 * nothing of ringlet's own leaks, cancel or not).  Under the GIL. */
extern struct ringlet_live {
    Py_ssize_t ops, bounce_buffers, copies;
} ringlet_live;

/* ---- op.c: an operation's life ---------------------------------------- */
OpObject *op_new(EngineObject *engine, int kind, const char *name);
/* Submits a queued op (taking over the caller's reference) and returns what
 * the caller awaits: an asyncio.Future; or, want_future false and completed
 * inline, a Ready holding the value (an inline error is raised at once); or,
 * want_future false and a positional read still pending, the op itself,
 * awaited as a coroutine (op.c, op_pending_future).
 * queued: what queueing its SQE returned (0, or -errno: nothing was queued,
 * the op is dropped and MemoryError raised). */
PyObject *op_launch(OpObject *op, int queued, int want_future);
/* An op whose answer needs no kernel (res: >= 0, or -errno): a read of 0
 * bytes is b"" at once, as os.read(fd, 0) (io_uring would wait for data on a
 * pipe); an empty batch is []. */
PyObject *op_finish_now(OpObject *op, int64_t res, int want_future);
/* Delivers the outcome (res >= 0, or -errno), frees what the kernel held and
 * drops the ring's reference to the op. */
void op_finish(OpObject *op, int64_t res);
/* What a close on the ring came to (res: its completion's result).  A close
 * cancelled before it ran (the shutdown's cancel of all that is in flight
 * reaches one still queued for a kernel worker) left fd open, and nobody
 * else will close it: it is closed here. */
int64_t close_outcome(int fd, int64_t res);
PyObject *ringlet_oserror(int err, PyObject *filename);
/* Hands the op's timeline to the engine's tracer (tracing on only). */
void op_emit_trace(OpObject *op);

/* The loop's call of engine._wake: runs the done callbacks of the awaited
 * ops in engine->woken, in order, each in its context (op.c). */
PyObject *engine_wake_ops(EngineObject *engine);
/* A drain: schedules the _wake that a failed call_soon left unscheduled. */
void engine_retry_wake(EngineObject *engine);

/* ---- pread.c: the non-blocking attempt, Outcome, Engine._pread -------- */
/* The attempt for a read or readinto op set up to go to the ring: the count
 * when the page cache held it all (finish the op with it: op_finish_now),
 * or -1: the ring's turn. */
int64_t op_try_nowait(OpObject *op);
/* The attempt for len bytes at offset into buf, counted in the stats when it
 * went through: the count, or -1 (the ring's turn). */
int64_t engine_read_nowait(EngineObject *engine, int fd, void *buf, size_t len, int64_t offset);
/* Counts one operation completed without the ring (submitted, completed, inline). */
void engine_count_nowait(EngineObject *engine);
PyObject *engine__pread(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *engine__preadinto(EngineObject *self, PyObject *const *args, Py_ssize_t nargs);
/* A bytes object of size for a read to fill: one of the engine's spares that
 * nobody else holds, or a new one (new reference). */
PyObject *engine_read_bytes(EngineObject *self, Py_ssize_t size);
/* Shrinks a read's bytes to n: in place when nobody else holds them, else
 * as a copy (an engine's spare is shared).  0, or -1 with an exception. */
int bytes_shrink(PyObject **bytes, Py_ssize_t n);
/* An awaitable that goes round the loop once (a bare yield), then gives value. */
PyObject *outcome_after_a_turn(ringlet_state *st, PyObject *value);
extern const char engine__pread_doc[];
extern const char engine__preadinto_doc[];
/* ---- slotmethod.c: a method of a class with __slots__, made in C -------- */
#define SLOT_METHOD_MAX_SLOTS 8
typedef struct {
    PyObject_HEAD
    PyObject *fallback;         /* the Python method: every case the call does not do itself */
    PyTypeObject *cls;          /* the class whose slots these are (subclasses share them) */
    PyObject *aux;              /* what the call needs besides the slots (its user's), or NULL */
    int variant;                /* its user's */
    Py_ssize_t offset[SLOT_METHOD_MAX_SLOTS]; /* where each slot lives in an instance */
    PyObject *dict;             /* __name__, __doc__, __wrapped__, the coroutine marks */
    vectorcallfunc vectorcall;
} SlotMethodObject;
/* The instance's slot i (a borrowed reference; NULL when unset). */
#define SLOT(obj, m, i) (*(PyObject **)((char *)(obj) + (m)->offset[i]))
/* A SlotMethod of cls calling call, its slots names[0..n) (a TypeError if one is not a slot). */
SlotMethodObject *slot_method_new(ringlet_state *st, PyTypeObject *cls, PyObject *fallback,
                                  const char *const *names, int n, vectorcallfunc call);
/* Where slot name lives in instances of cls: 0, or -1 with a TypeError if it is not a slot. */
int slot_offset(PyTypeObject *cls, const char *name, Py_ssize_t *offset);

/* _ringlet._pread_method(cls, fallback, into=False): AsyncFile.pread (or preadinto) without a Python frame. */
PyObject *ringlet__pread_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char ringlet__pread_method_doc[];
/* _ringlet._read_ahead_method(cls, fallback, turns_cls, call, *, text): readline, __anext__ or read made in C (readahead.c). */
PyObject *ringlet__read_ahead_method(PyObject *module, PyObject *args, PyObject *kwargs);
extern const char ringlet__read_ahead_method_doc[];
/* Inline completions may run this long in one loop turn; after that, every
 * task yields (and large reads go to the kernel's workers) until the loop has
 * turned, so another task waits at most about this long plus one step of
 * each ready task.  (A budget per task let 256 tasks spend 256 budgets.)
 * Exported as INLINE_BUDGET_NS: the thread engine's budget too. */
#define RL_INLINE_BUDGET_NS 1000000
/* Reads from this size on go to the kernel's workers (OpObject.offload) once
 * the loop turn's budget is spent. */
#define RL_OFFLOAD_MIN (64u << 10)
/* Reads from this size on also yield after each inline completion: the copy
 * dwarfs a turn of the loop (smaller ones yield once the turn's budget is spent). */
#define RL_YIELD_EACH_MIN (256u << 10)
/* Cached preads between the two made once the turn's budget is spent are read
 * inline in the next turn, at most this many bytes a turn (about a budget's
 * worth of copying); the rest go to the kernel's workers. */
#define RL_DEFER_BYTES_MAX (16u << 20)

/* ---- op_io.c: the kernel side of reads and writes --------------------- */
/* Reads the descriptor's position for offset -1 (see there); 0 or -1 with an exception. */
int op_take_position(OpObject *op, unsigned align);
/* Points the kernel at memory, or (align > 0: O_DIRECT) at aligned memory;
 * 0 or -1 with an exception. */
int op_kernel_io(OpObject *op, char *memory, unsigned align);
/* Queues (again) the kernel side of a read/readinto/write, from op->done on. */
int op_queue_io(OpObject *op);
/* The first queueing: the op holds its descriptor number (op_hold_fd), then op_queue_io. */
int op_hold_and_queue_io(OpObject *op);
/* A read of a stream (no offset to read at: a pipe, a FIFO, a socket, a
 * terminal): submitted once, at once, and never queued again -- it holds no
 * number (fdhold.c). */
static inline int op_reads_stream(const OpObject *op)
{
    return (op->kind == OP_READ || op->kind == OP_READINTO) && op->offset < 0;
}
/* Whether a read set up (op_take_position, op_kernel_io) goes to the kernel's
 * workers (OpObject.offload). */
int op_may_offload(OpObject *op);
/* Reads what the page cache holds of a read_many batch whose items are made
 * (reads: each item's buffer, size and offset; rl_read_nowait_batch), and
 * queues the others; a read that cannot be queued ends the batch there (it
 * fails with ENOMEM once the others complete).  Returns how many are in flight. */
Py_ssize_t op_queue_batch(OpObject *op, struct rl_nowait_read *reads);
/* A queued op's offloaded read leaves the offload queue unstarted: it is
 * finished as cancelled (dropped: its future is done).  0 when it was not
 * waiting there. */
int op_offload_withdraw(OpObject *op);
/* The loop's thread takes its share of the waiting reads, in their order:
 * those the page cache holds all of are read without blocking, within the
 * turn's inline budget (loop_must_yield), and each read's task is woken
 * before the next.  From _flush, which is scheduled again while this makes
 * progress.  -1 with the exception a woken task raised (an interrupt). */
int engine_offload_serve(EngineObject *engine);
/* Finishes (drops) every offloaded read still waiting: at shutdown. */
void engine_offload_drop_all(EngineObject *engine);
/* A write just queued joins the engine's writes in flight (engine->writes);
 * op_finish takes it out. */
void op_writes_add(OpObject *op);
void op_writes_remove(OpObject *op);
/* The continuation of copy(): the C state machine is done. */
void op_copy_done(struct rl_copy *copy, int64_t result);

/* ---- fdhold.c: a descriptor number held by the work that will use it --- */
/* The op holds its number (op->fd) until op_release_fd: a close through the
 * engine waits meanwhile.  For an op whose SQE is about to be queued; 0 (a
 * stream's read, or a number no file has, holds nothing), or -ENOMEM. */
int op_hold_fd(OpObject *op);
/* The op's work is over (op_finish, or the op dropped unqueued): the last
 * hold on the number starts the closes that wait for it. */
void op_release_fd(OpObject *op);
/* A copy holds its destination (op->fd) and its source: each read and write
 * names them again until the copy's last completion.  0, or -ENOMEM. */
int op_hold_copy_fds(OpObject *op, int src);
/* A close op (fd, close_in_worker set): its SQE queued now, or, while the
 * number is held, queued by the last release.  0, or -errno (nothing queued). */
int engine_fd_close_queue(OpObject *close_op);
/* How many closes through the engine fd has had (*closes); -1 with no memory
 * for fd's record.  A read made later compares it to see its file closed. */
int engine_fd_closes(EngineObject *engine, int fd, uint32_t *closes);
/* Shutdown: the closes still waiting close their descriptors now. */
void engine_closes_waiting_shutdown(EngineObject *engine);

/* ---- writefile.c: write_file in one submission ------------------------ */
/* The write of a write_file is over (res: the bytes, or -errno): close the file, then finish. */
void write_file_write_done(OpObject *op, int64_t res);
/* Cancels write_file's open or close (op_cancel cancels the write). */
void write_file_cancel(OpObject *op);
/* Its caller was cancelled (Engine._write_stop): an open still in flight is
 * cancelled, and nothing is written; a write already issued lands whole. */
void write_file_stop(OpObject *op);
/* The loop's drain: reaps write_file's side ring (after the main ring's, whose drain read the eventfd). */
void write_file_side_drain(EngineObject *engine);
/* Shutdown: cancels the chains, waits for them until deadline_ns (engine_cancel_and_wait); then closes the ring. */
void write_file_side_shutdown(EngineObject *engine, int64_t deadline_ns);

/* ---- ready.c ----------------------------------------------------------- */
PyObject *ready_new(ringlet_state *st, PyObject *value);
/* Ends an awaitable's iteration with value (StopIteration(value) set; value
 * released); returns NULL. */
PyObject *ringlet_return_value(PyObject *value);
/* A coroutine's send(value) (and __next__, value None) for an awaitable
 * whose type has am_send: the yielded value, or NULL with StopIteration(its
 * result) or its error set. */
PyObject *ringlet_send(PyObject *awaitable, PyObject *value);
/* A coroutine's throw(exc) or throw(type, value=None, traceback=None) given
 * THROW_ARGS_OK arguments: raises the exception (else a TypeError); NULL. */
#define THROW_ARGS_OK(nargs) ((nargs) >= 1 && (nargs) <= 3)
PyObject *ringlet_raise_thrown(PyObject *const *args, Py_ssize_t nargs);
/* The exception set now, taken (cleared): normalized, its traceback on it
 * (NULL if none was set). */
PyObject *ringlet_take_error(void);

/* ---- loop.c: the event loop's side ------------------------------------- */
unsigned long ringlet_fork_generation(void);
int ringlet_register_atfork(void);
/* Every entry point that touches the ring checks it is usable from here: the
 * engine is open, made in this process, and this is its loop's thread.
 * 0, or -1 with RuntimeError. */
int engine_check(EngineObject *engine);
/* Shutdown: cancels what is in flight on ring (one of the engine's) and reaps
 * until all of it is back or the clock (rl_now_ns) reaches deadline_ns;
 * only on the loop's thread (a SINGLE_ISSUER ring may be entered by its owner alone). */
void engine_cancel_and_wait(EngineObject *engine, struct rl_ring *ring, int64_t deadline_ns);
/* loop.call_soon(callable, *args) for the engine's loop; 0 or -1 with an exception. */
int loop_call_soon(EngineObject *engine, PyObject *callable, PyObject *args);
/* call_soon(engine.<method>) once until it has run (*flag: pending), in the engine's empty context. */
int loop_call_soon_once(EngineObject *engine, const char *method, int *flag);
/* call_soon(engine._flush) once per loop tick; 0, or -2 when it could not be scheduled. */
int loop_schedule_flush(EngineObject *engine);
/* Whether an inline completion must go through the loop, so its task yields:
 * inline completions never suspend a task, and tasks reading a cached file
 * could otherwise keep the loop from everything else.  The budget is per
 * loop turn: once spent, every task yields until the loop has turned. */
int loop_must_yield(EngineObject *engine);
/* Whether a check this turn found the budget spent (loop_must_yield's flag,
 * no clock read): what sends later reads to the kernel's workers. */
static inline int loop_budget_found_spent(const EngineObject *engine)
{
    return engine->tick_scheduled && engine->budget_spent;
}
/* loop_must_yield after an inline read of less than RL_CLOCK_EVERY_MAX
 * bytes: it reads the clock only every RL_CLOCK_EVERY such reads, and
 * measures a longer budget (RL_SMALL_BUDGET_NS, see loop.c). */
#define RL_CLOCK_EVERY_MAX (64u << 10)
int loop_must_yield_small(EngineObject *engine);
/* Whether a read of RL_OFFLOAD_MIN bytes or more goes to the kernel's
 * workers instead of being tried inline: when the turn's budget is spent
 * (loop_must_yield), or when offloaded reads wait their turn already (a new
 * one queues behind them, so that all are served in call order). */
int loop_offload_large_read(EngineObject *engine);
/* Whether the loop has callbacks ready to run besides the engine's own
 * _tick and _flush (another task's step, a callback): asyncio's _ready.  1
 * when it cannot tell (another loop), as if some were. */
int loop_others_ready(EngineObject *engine);
/* The epoll fd of asyncio's own selector loop (loop_others_wait looks at
 * it, its ready queue and its timers), else -1. */
int loop_epoll_fd_of(ringlet_state *st, PyObject *loop);
/* Whether the caller runs on the engine's loop: its thread, with that loop
 * running there.  0 or 1, never an exception. */
int loop_is_running_here(EngineObject *engine);
/* engine._tick ran: the loop has turned. */
void loop_ticked(EngineObject *engine);
/* The exception set now, raised by the caller's code while completions were
 * delivered, to the loop's exception handler ({"message": PyUnicode_FromFormat
 * of format, "exception": ...}, as asyncio reports a callback's); with no loop
 * to tell, or when telling it fails, as unraisable (context: obj).  Clears it. */
void loop_report_error(EngineObject *engine, PyObject *obj, const char *format, ...);
/* The exception set now was raised while delivering completions, by Python
 * code ringlet runs (set_result, the tracer, a signal handler): an Exception
 * is reported (loop_report_error: "ringlet: <obj> raised"); a BaseException
 * (KeyboardInterrupt, SystemExit) is kept for loop_raise_interrupt, so the
 * delivery of the rest goes on and then it leaves the loop.  Clears it. */
void loop_note_error(EngineObject *engine, PyObject *obj);
/* Runs pending signal handlers before Python code that must not be cut off
 * halfway (a future's set_result, which schedules its callbacks); what they
 * raise is noted as above. */
void loop_check_signals(EngineObject *engine);
/* Raises the kept BaseException, if any: -1 with it set, else 0. */
int loop_raise_interrupt(EngineObject *engine);

/* ---- args.c: argument parsing (each 0, or -1 with TypeError/ValueError/OverflowError) */
int parse_int(PyObject *obj, const char *what, int *out);
/* Any __index__ object up to max; negative or larger: OverflowError. */
int parse_unsigned(PyObject *obj, const char *what, unsigned long max, unsigned *out);
/* Any __index__ object as a Py_ssize_t (the sign is the caller's to check). */
int parse_ssize(PyObject *obj, Py_ssize_t *out);
/* An offset: -1 means the file position, other negatives are refused. */
int parse_offset(PyObject *obj, int64_t *out);
/* The optional trailing arguments offset=-1 and align=0 of read/readinto/write. */
int parse_offset_align(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t first, int64_t *offset,
                       unsigned *align);
/* The path argument: bytes without NUL (os.fsencode gives it). */
int path_check(PyObject *path);
/* An iterable of IORING_OP_* numbers (0..255) as a bitmask for rl_ring_restrict. */
int parse_opcodes(PyObject *opcodes, uint64_t allowed[4]);
/* read_many's [(size, offset), ...]: read from a private copy, so that no
 * __index__ can change the sequence while it is walked.  Sizes are capped at
 * RL_MAX_RW.  *reads is a PyMem array of *count the caller frees, with each
 * read's len and offset set (its buf is the caller's to fill). */
int parse_requests(PyObject *requests, Py_ssize_t *count, struct rl_nowait_read **reads);

#endif
