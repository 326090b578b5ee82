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
int rl_op_write(struct rl_ring *r, struct rl_cell *c, int fd, const void *buf, unsigned len, int64_t offset);
int rl_op_openat(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, mode_t mode);
int rl_op_close(struct rl_ring *r, struct rl_cell *c, int fd);
int rl_op_fsync(struct rl_ring *r, struct rl_cell *c, int fd, int datasync);
/* statx of fd itself when path is "" (AT_EMPTY_PATH), else of path. */
int rl_op_statx(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, struct statx *out);

#endif
