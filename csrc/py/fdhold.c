/* A descriptor number held by the work that will use it again.
 *
 * The kernel gives a closed number to the next file opened.  An op that uses
 * its number after the call that made it has returned -- the rest of a short
 * write, a read queued again, the position moved past what a read or write
 * moved, a read waiting in the offload queue or sent to the kernel's workers
 * (IOSQE_ASYNC: the worker looks the number up when it starts) -- would then
 * reach that other file.  So such an op holds its number until it finishes,
 * and a close through the engine waits until nothing holds it: the number
 * stays this file's until its work is over, as the thread engine's close
 * waits for the operations in its pool.  A copy holds both its numbers, a
 * pipe source too: each of its reads and writes names them again, so a
 * close of either waits for the copy's end (or its cancel).
 *
 * A read deferred for a turn of the loop (pread.c) holds nothing: a coroutine
 * that is never resumed must not keep its file from closing.  It notes how
 * many closes the number had when it was made, and is refused if a close
 * came meanwhile (engine_fd_closes). */
#define _GNU_SOURCE 1
#include "binding.h"

#include <errno.h>
#include <fcntl.h>

struct fd_use {
    uint32_t holds;  /* ops in flight that will use the number again */
    uint32_t closes; /* closes of the number made through the engine */
};

/* fd's record, the table grown to hold it; NULL when fd names no open file
 * (*no_memory 0: nothing to hold, the kernel answers EBADF; a number such as
 * 2**31 - 1 grows no table) or when memory ran out (*no_memory 1). */
static struct fd_use *fd_use_of(EngineObject *engine, int fd, int *no_memory)
{
    *no_memory = 0;
    if (fd >= engine->fd_uses_len) {
        if (fcntl(fd, F_GETFD) < 0)
            return NULL;
        int len = engine->fd_uses_len ? engine->fd_uses_len : 64;
        while (len <= fd)
            len = len > INT32_MAX / 2 ? INT32_MAX : len * 2;
        struct fd_use *grown = PyMem_Realloc(engine->fd_uses, (size_t)len * sizeof *grown);
        if (grown == NULL) {
            *no_memory = 1;
            return NULL;
        }
        memset(grown + engine->fd_uses_len, 0, (size_t)(len - engine->fd_uses_len) * sizeof *grown);
        engine->fd_uses = grown;
        engine->fd_uses_len = len;
    }
    return &engine->fd_uses[fd];
}

/* 1: fd held; 0: no file has the number, nothing to hold; -ENOMEM. */
static int hold_number(EngineObject *engine, int fd)
{
    int no_memory;
    struct fd_use *use = fd_use_of(engine, fd, &no_memory);
    if (use == NULL)
        return no_memory ? -ENOMEM : 0;
    use->holds++;
    return 1;
}

int op_hold_fd(OpObject *op)
{
    /* A stream's read never uses its number again; a close must not wait
     * for data that may never come (the thread engine's does not either). */
    if (op->fd < 0 || op_reads_stream(op))
        return 0;
    int held = hold_number(op->engine, op->fd);
    op->holds_fd = held > 0;
    return held < 0 ? held : 0;
}

int op_hold_copy_fds(OpObject *op, int src)
{
    op->u.copy.held_src = -1;
    int held = op_hold_fd(op);
    if (held < 0 || src < 0)
        return held;
    held = hold_number(op->engine, src);
    if (held > 0)
        op->u.copy.held_src = src;
    return held < 0 ? held : 0;
}

static int close_queue(OpObject *close_op)
{
    struct rl_ring *ring = &close_op->engine->ring;
    return close_op->close_in_worker ? rl_op_close_offloaded(ring, &close_op->cell, close_op->fd)
                                     : rl_op_close(ring, &close_op->cell, close_op->fd);
}

/* The close waits no longer: to the ring (submitted by the flush), or at
 * shutdown closed here, as a close the shutdown cancelled is. */
static void close_start(OpObject *close_op)
{
    EngineObject *engine = close_op->engine;
    int queued = engine->shutting_down ? -ECANCELED : close_queue(close_op);
    if (queued == 0)
        loop_schedule_flush(engine);
    else /* no room for its SQE (ENOMEM, as the ring reports it), or shutting down */
        op_finish(close_op, close_outcome(close_op->fd, queued));
}

/* Starts the closes of a list taken out of the engine's, in its order. */
static void start_closes(OpObject *list)
{
    while (list) {
        OpObject *close_op = list;
        list = close_op->wait_next;
        close_op->wait_next = NULL;
        close_start(close_op);
    }
}

/* The last hold on fd starts the closes waiting for it. */
static void release_number(EngineObject *engine, int fd)
{
    if (--engine->fd_uses[fd].holds > 0)
        return;
    /* Taken out of the engine's list first, in the order they were made,
     * since starting one may run code (a failed one is finished) that
     * changes the list. */
    OpObject *starting = NULL, **starting_end = &starting;
    for (OpObject **link = &engine->closes_waiting; *link;) {
        OpObject *close_op = *link;
        if (close_op->fd != fd) {
            link = &close_op->wait_next;
            continue;
        }
        *link = close_op->wait_next;
        close_op->wait_next = NULL;
        *starting_end = close_op;
        starting_end = &close_op->wait_next;
    }
    start_closes(starting);
}

void op_release_fd(OpObject *op)
{
    if (op->holds_fd) {
        op->holds_fd = 0;
        release_number(op->engine, op->fd);
    }
    if (op->kind == OP_COPY && op->u.copy.held_src >= 0) {
        int src = op->u.copy.held_src;
        op->u.copy.held_src = -1;
        release_number(op->engine, src);
    }
}

int engine_fd_close_queue(OpObject *close_op)
{
    EngineObject *engine = close_op->engine;
    int fd = close_op->fd;
    if (fd < 0 || fd >= engine->fd_uses_len)
        return close_queue(close_op); /* never held, and no read deferred on it (engine_fd_closes) */
    struct fd_use *use = &engine->fd_uses[fd];
    use->closes++;
    if (use->holds == 0)
        return close_queue(close_op);
    OpObject **link = &engine->closes_waiting;
    while (*link)
        link = &(*link)->wait_next;
    *link = close_op;
    return 0;
}

int engine_fd_closes(EngineObject *engine, int fd, uint32_t *closes)
{
    int no_memory;
    struct fd_use *use = fd_use_of(engine, fd, &no_memory);
    if (use == NULL && no_memory)
        return -1;
    *closes = use ? use->closes : 0;
    return 0;
}

void engine_closes_waiting_shutdown(EngineObject *engine)
{
    OpObject *all = engine->closes_waiting;
    engine->closes_waiting = NULL;
    start_closes(all);
}
