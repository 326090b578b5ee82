/* The type and size of an open file, for the engine's choices (read a
 * whole file without the ring?).  Through statx rather than fstat: the wheel is
 * tagged manylinux_2_28, so it may use glibc symbols up to 2.28, and glibc
 * exports fstat as a symbol only from 2.33 (statx is in 2.28).  Needs
 * _GNU_SOURCE, defined before the first include of the file that uses it. */
#ifndef RINGLET_FILEINFO_H
#define RINGLET_FILEINFO_H

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

struct rl_fileinfo {
    int regular;   /* a regular file */
    uint64_t size; /* bytes */
};

/* 0, or -1 with errno set (EBADF for a closed descriptor). */
static inline int rl_fileinfo(int fd, struct rl_fileinfo *info)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &stx) < 0)
        return -1;
    info->regular = S_ISREG(stx.stx_mode);
    info->size = stx.stx_size;
    return 0;
}

#endif
