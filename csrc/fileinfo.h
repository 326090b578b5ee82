/* The type and size of an open file, and whether its close completes at
 * once, for the engine's choices (read a whole file without the ring? write
 * one by a chain in the kernel?).  Through statx rather than fstat: the wheel is
 * tagged manylinux_2_28, so it may use glibc symbols up to 2.28, and glibc
 * exports fstat as a symbol only from 2.33 (statx is in 2.28).  Needs
 * _GNU_SOURCE, defined before the first include of the file that uses it. */
#ifndef RINGLET_FILEINFO_H
#define RINGLET_FILEINFO_H

#include <fcntl.h>
#include <linux/magic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

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

/* Whether closing fd (info: rl_fileinfo's of it) completes at once: no
 * flush runs, which could wait for a device or a server, or report an
 * error that close(2) would raise.  (io_uring's IORING_OP_CLOSE asks the
 * same of a file, ->flush, to close it in the submitting thread; a close of
 * a fixed-file slot never calls it.)  Yes only for a regular file of a file
 * system that has no flush: ext2/3/4, XFS, Btrfs, tmpfs and ramfs, by
 * fstatfs magic, asked every time (a device number can come back with
 * another file system after an unmount).  Not for FUSE, NFS, SMB...: they
 * flush and wait for a server.  Not for a device, wherever its node is: its
 * close may run its driver's flush, and devtmpfs (/dev) reports tmpfs's
 * magic.
 * Both read_file (csrc/py/readfile.c) and write_file's choice of a chain
 * (Engine._closes_at_once, python/ringlet/_oneshot.py) ask this. */
static inline int rl_closes_at_once(int fd, const struct rl_fileinfo *info)
{
    struct statfs sf;
    if (!info->regular || fstatfs(fd, &sf) < 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case EXT4_SUPER_MAGIC: /* ext2, ext3 and ext4 share it */
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case RAMFS_MAGIC:
        return 1;
    default:
        return 0;
    }
}

#endif
