/* A pool of aligned bounce buffers for O_DIRECT: the kernel needs memory,
 * offset and length aligned, so an unaligned read or write goes through one
 * of these.  Buffers of 4 KiB << k (k < RL_BOUNCE_CLASSES) are kept for
 * reuse, up to RL_BOUNCE_CACHE bytes per pool: a fresh large buffer costs an
 * mmap, page faults and a munmap per operation.  Not thread-safe: one pool per
 * ring, used from the ring's thread. */
#ifndef RINGLET_BOUNCE_H
#define RINGLET_BOUNCE_H

#include <stddef.h>

#define RL_BOUNCE_CLASSES 13 /* 4 KiB .. 16 MiB */
#define RL_BOUNCE_CACHE ((size_t)64 << 20)

struct rl_bounce_pool {
    char *free[RL_BOUNCE_CLASSES]; /* a list per size class, linked through each buffer's first bytes */
    size_t cached;                 /* bytes held in the lists */
};

/* The size class that holds size bytes, or -1 for one too large to keep. */
int rl_bounce_class(size_t size);

/* A buffer of at least size bytes aligned to align (a power of two), from the
 * pool when it has one; *allocated is set to its real size, which the caller
 * hands back to rl_bounce_put.  NULL when memory cannot be had (or align is
 * not a power of two). */
char *rl_bounce_get(struct rl_bounce_pool *pool, size_t size, unsigned align, size_t *allocated);

/* Gives a buffer back: kept for reuse, or freed when its size is not a class
 * or the pool is full. */
void rl_bounce_put(struct rl_bounce_pool *pool, char *buf, size_t allocated);

/* Frees every buffer the pool keeps. */
void rl_bounce_clear(struct rl_bounce_pool *pool);

#endif
