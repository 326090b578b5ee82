#define _GNU_SOURCE /* AT_EMPTY_PATH, STATX_* */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#define RL_QUEUE(ring, cell, PREP)           \
    do {                                      \
        struct io_uring_sqe *sqe = rl_ring_sqe(ring); \
        if (!sqe)                             \
            return -ENOMEM;                   \
        PREP;                                 \
        rl_ring_hide_check(ring, sqe);        \
        rl_ring_arm(ring, sqe, cell);         \
        return 0;                             \
    } while (0)

int rl_op_read(struct rl_ring *r, struct rl_cell *c, int fd, void *buf, unsigned len, int64_t offset)
{
    RL_QUEUE(r, c, io_uring_prep_read(sqe, fd, buf, len, (uint64_t)offset));
}

int rl_op_read_offloaded(struct rl_ring *r, struct rl_cell *c, int fd, void *buf, unsigned len, int64_t offset)
{
    RL_QUEUE(r, c, (io_uring_prep_read(sqe, fd, buf, len, (uint64_t)offset), sqe->flags |= IOSQE_ASYNC));
}

int rl_op_write(struct rl_ring *r, struct rl_cell *c, int fd, const void *buf, unsigned len, int64_t offset)
{
    RL_QUEUE(r, c, io_uring_prep_write(sqe, fd, buf, len, (uint64_t)offset));
}

int rl_op_timeout(struct rl_ring *r, struct rl_cell *c, struct __kernel_timespec *ts)
{
    RL_QUEUE(r, c, io_uring_prep_timeout(sqe, ts, 0, 0));
}

int rl_op_madvise(struct rl_ring *r, struct rl_cell *c, void *addr, size_t len, int advice)
{
    RL_QUEUE(r, c, io_uring_prep_madvise(sqe, addr, (off_t)len, advice));
}

int rl_op_openat(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, mode_t mode)
{
    RL_QUEUE(r, c, io_uring_prep_openat(sqe, dirfd, path, flags | O_CLOEXEC, mode));
}

int rl_op_close(struct rl_ring *r, struct rl_cell *c, int fd)
{
    RL_QUEUE(r, c, io_uring_prep_close(sqe, fd));
}

int rl_op_close_offloaded(struct rl_ring *r, struct rl_cell *c, int fd)
{
    RL_QUEUE(r, c, (io_uring_prep_close(sqe, fd), sqe->flags |= IOSQE_ASYNC));
}

int rl_op_fsync(struct rl_ring *r, struct rl_cell *c, int fd, int datasync)
{
    RL_QUEUE(r, c, io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0));
}

int rl_op_statx(struct rl_ring *r, struct rl_cell *c, int dirfd, const char *path, int flags, struct statx *out)
{
    RL_QUEUE(r, c, io_uring_prep_statx(sqe, dirfd, path, flags, STATX_BASIC_STATS, out));
}

int rl_op_renameat(struct rl_ring *r, struct rl_cell *c, const char *oldpath, const char *newpath, unsigned flags)
{
    RL_QUEUE(r, c, io_uring_prep_renameat(sqe, AT_FDCWD, oldpath, AT_FDCWD, newpath, flags));
}

int rl_op_unlinkat(struct rl_ring *r, struct rl_cell *c, const char *path, int remove_dir)
{
    RL_QUEUE(r, c, io_uring_prep_unlinkat(sqe, AT_FDCWD, path, remove_dir ? AT_REMOVEDIR : 0));
}

int rl_op_mkdirat(struct rl_ring *r, struct rl_cell *c, const char *path, mode_t mode)
{
    RL_QUEUE(r, c, io_uring_prep_mkdirat(sqe, AT_FDCWD, path, mode));
}

int rl_op_symlinkat(struct rl_ring *r, struct rl_cell *c, const char *target, const char *linkpath)
{
    RL_QUEUE(r, c, io_uring_prep_symlinkat(sqe, target, AT_FDCWD, linkpath));
}

int rl_op_linkat(struct rl_ring *r, struct rl_cell *c, const char *oldpath, const char *newpath, int follow)
{
    RL_QUEUE(r, c, io_uring_prep_linkat(sqe, AT_FDCWD, oldpath, AT_FDCWD, newpath, follow ? AT_SYMLINK_FOLLOW : 0));
}

#ifndef IORING_OP_FTRUNCATE
#define IORING_OP_FTRUNCATE 55
#endif

int rl_op_ftruncate(struct rl_ring *r, struct rl_cell *c, int fd, int64_t length)
{
    RL_QUEUE(r, c, io_uring_prep_rw(IORING_OP_FTRUNCATE, sqe, fd, NULL, 0, (uint64_t)length));
}
