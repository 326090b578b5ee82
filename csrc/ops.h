/* Preparing each operation: fill an SQE for a cell and queue it on the ring.
 * Nothing is sent to the kernel until rl_ring_submit.  Each returns 0, or
 * -ENOMEM when no SQE could be had (the cell is then not in flight). */
#ifndef RINGLET_OPS_H
#define RINGLET_OPS_H

#include <stdint.h>
#include <sys/types.h>

#include "ring.h"

struct statx;

/* offset -1 means "at the file position", like read(2)/write(2). */
int rl_op_read(struct rl_ring *r, struct rl_cell *c, int fd, void *buf, unsigned len, int64_t offset);
/* A read the kernel hands to its worker threads at once (IOSQE_ASYNC): its
 * copy never runs inside the submitting call, even from the page cache. */
int rl_op_read_offloaded(struct rl_ring *r, struct rl_cell *c, int fd, void *buf, unsigned len, int64_t offset);
int rl_op_write(struct rl_ring *r, struct rl_cell *c, int fd, const void *buf, unsigned len, int64_t offset);
/* Completes (with -ETIME) once ts has passed. */
int rl_op_timeout(struct rl_ring *r, struct rl_cell *c, struct __kernel_timespec *ts);
/* madvise(addr, len, advice) in an io-wq worker. */
int rl_op_madvise(struct rl_ring *r, struct rl_cell *c, void *addr, size_t len, int advice);
int rl_op_openat(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, mode_t mode);
int rl_op_close(struct rl_ring *r, struct rl_cell *c, int fd);
/* A close the kernel hands to its worker threads at once (IOSQE_ASYNC): the
 * file's last release, if this close is it, runs there, not in the caller. */
int rl_op_close_offloaded(struct rl_ring *r, struct rl_cell *c, int fd);
int rl_op_fsync(struct rl_ring *r, struct rl_cell *c, int fd, int datasync);
/* statx(2): of dirfd itself with path "" and AT_EMPTY_PATH in flags. */
int rl_op_statx(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, struct statx *out);

/* Path operations (kernel 5.11+ for renameat/unlinkat, 5.15+ for mkdirat/symlinkat/linkat). */
int rl_op_renameat(struct rl_ring *r, struct rl_cell *c, const char *oldpath, const char *newpath, unsigned flags);
/* rmdir when remove_dir, else unlink. */
int rl_op_unlinkat(struct rl_ring *r, struct rl_cell *c, const char *path, int remove_dir);
int rl_op_mkdirat(struct rl_ring *r, struct rl_cell *c, const char *path, mode_t mode);
int rl_op_symlinkat(struct rl_ring *r, struct rl_cell *c, const char *target, const char *linkpath);
int rl_op_linkat(struct rl_ring *r, struct rl_cell *c, const char *oldpath, const char *newpath, int follow);
/* IORING_OP_FTRUNCATE (kernel 6.9+): liburing 2.3 has no helper for it. */
int rl_op_ftruncate(struct rl_ring *r, struct rl_cell *c, int fd, int64_t length);

#endif
