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

#include <liburing.h>
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
    /* A batch's second core: an io_uring whose kernel thread (SQPOLL) takes
     * reads as they are queued, with no system call, and copies them while
     * the caller copies the others (rl_read_nowait_batch). */
    struct io_uring helper;
    int helper_state;           /* 0: not tried yet; 1: set up; -1: not to be had */
    int64_t helper_rest_until;  /* CLOCK_MONOTONIC ns: not handed reads before then (it kept a batch waiting) */
    int64_t helper_rest_ns;     /* how long the next such rest lasts */
    unsigned helper_good_run;   /* batches in a row since the last rest that did not wait */
    unsigned helper_cpus;       /* CPUs this process may run on */
    int loadavg_fd;             /* /proc/loadavg, open while the helper is set up */
    int64_t helper_look_until;  /* CLOCK_MONOTONIC ns: helper_cpu_free holds until then */
    int helper_cpu_free;        /* another CPU had nothing to run, when last looked */
    uint64_t helper_hits;       /* reads of hits the helper's thread copied */
    int helper_always;          /* a test's: hand reads over whatever the load, asleep or not */
};

/* Whether an attempt is worth making on fd. */
int rl_nowait_enabled(const struct rl_nowait *nw, int fd);

/* Reads len bytes at offset (>= 0) into buf if the page cache holds them.
 * Returns the count (less than len only at end of file), or -EAGAIN: not all
 * of it is cached, or the attempt is off for fd, or the read failed (the
 * ring then does it and reports its error as always); buf may have been
 * written either way. */
int64_t rl_read_nowait(struct rl_nowait *nw, int fd, void *buf, size_t len, int64_t offset);

/* A read of 0 bytes at offset (-1: the file position), done at once: 0, or
 * the kernel's -errno (EBADF for a file not open for reading, EISDIR), as
 * os.read(fd, 0) gives it.  The ring's read of 0 bytes from an empty FIFO
 * would wait for data. */
int64_t rl_read_nothing(int fd, int64_t offset);

/* One read of a batch: what to read, and its outcome (a count, or -EAGAIN
 * as rl_read_nowait gives it). */
struct rl_nowait_read {
    void *buf;
    size_t len;     /* at most INT32_MAX: a completion's result holds it */
    int64_t offset;
    int64_t result;
};

/* rl_read_nowait for each read of a batch, on fd.  A batch large enough
 * shares the copying with the helper's kernel thread, on another CPU: the
 * caller reads from the front, handing reads from the back to the thread a
 * few at a time, each handover only once the thread has taken the last one
 * (so a thread that gets no CPU keeps few reads from the caller).  The
 * thread's reads are RWF_NOWAIT too, and the call returns once they are
 * all done: the thread copies only, it never waits for a device, and no
 * memory is written after the call.  A batch that waited for the thread
 * (it had no CPU: the machine is busy) stops the handovers for a while. */
void rl_read_nowait_batch(struct rl_nowait *nw, int fd, struct rl_nowait_read *reads, size_t count);

/* fd is closed, or an open just returned it (the number was closed since,
 * perhaps by os.close): the file now under it is looked at anew. */
void rl_nowait_forget(struct rl_nowait *nw, int fd);

/* Sets the helper up if it was not tried yet (with another CPU to run on;
 * a kernel or sandbox may refuse SQPOLL).  1: it is there; 0: not to be had. */
int rl_nowait_helper_setup(struct rl_nowait *nw);

/* Lets the helper's ring go (its thread with it); never set up again.  Not
 * in a forked child: the ring is the parent's. */
void rl_nowait_helper_exit(struct rl_nowait *nw);

void rl_nowait_free(struct rl_nowait *nw);

#endif
