/* The non-blocking attempt before the ring: preadv2(..., RWF_NOWAIT) copies
 * what the page cache holds and refuses (EAGAIN) rather than wait for a
 * device.  A read whose bytes are all cached then costs one system call and
 * no ring round trip; anything else goes to the ring as before, so the
 * caller never waits for a device either way.
 *
 * A descriptor whose file refuses the flag (EOPNOTSUPP: /proc, some
 * character devices) is remembered and not tried again until it is closed.
 * So is an O_DIRECT descriptor (looked at once, before its first attempt):
 * there RWF_NOWAIT does not refuse to wait for the device, it reads from it
 * (a synchronous read on the caller's thread), and no page cache is used.
 * What is known of a number is dropped when it may name another file: the
 * engine opened or closed it, ringlet.open was handed it, or a caller of the
 * low-level reads (who may os.close and os.open it) passes it again. */
#ifndef RINGLET_NOWAIT_H
#define RINGLET_NOWAIT_H

#include <stddef.h>
#include <stdint.h>

struct rl_nowait {
    uint64_t hits;          /* reads completed by the attempt */
    uint64_t misses;        /* attempts that left the read to the ring */
    unsigned char *refused; /* bit per descriptor: its file refuses RWF_NOWAIT (or is O_DIRECT) */
    size_t refused_bytes;
    unsigned char *checked; /* bit per descriptor: its O_DIRECT flag was looked at */
    size_t checked_bytes;
    int unsupported;        /* the kernel has no preadv2 (ENOSYS): never try */
    int tried;              /* the caller just tried this read: the next op goes to the ring at once */
};

/* Whether an attempt is worth making on fd. */
int rl_nowait_enabled(const struct rl_nowait *nw, int fd);

/* Reads len bytes at offset (>= 0) into buf if the page cache holds them.
 * Returns the count (less than len only at end of file), or -EAGAIN: not all
 * of it is cached, or the attempt is off for fd, or the read failed (the
 * ring then does it and reports its error as always); buf may have been
 * written either way. */
int64_t rl_read_nowait(struct rl_nowait *nw, int fd, void *buf, size_t len, int64_t offset);

/* fd is closed, or an open just returned it (the number was closed since,
 * perhaps by os.close): the file now under it is looked at anew. */
void rl_nowait_forget(struct rl_nowait *nw, int fd);

void rl_nowait_free(struct rl_nowait *nw);

#endif
