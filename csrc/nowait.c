#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */
#include "nowait.h"

#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

int rl_nowait_enabled(const struct rl_nowait *nw, int fd)
{
    /* A fault test aims at the ring's paths (test builds only): reads go there. */
    if (nw->unsupported || fd < 0 || rl_fault_armed())
        return 0;
    size_t byte = (size_t)fd / 8;
    return byte >= nw->refused_bytes || !(nw->refused[byte] & (1u << (fd % 8)));
}

/* Sets fd's bit in a bitmap grown as needed; 0, or -1 when memory is short. */
static int rl_fd_bit_set(unsigned char **bits, size_t *bytes, int fd)
{
    size_t byte = (size_t)fd / 8;
    if (byte >= *bytes) {
        size_t size = *bytes ? *bytes : 64;
        while (size <= byte)
            size *= 2;
        unsigned char *grown = realloc(*bits, size);
        if (grown == NULL)
            return -1;
        memset(grown + *bytes, 0, size - *bytes);
        *bits = grown;
        *bytes = size;
    }
    (*bits)[byte] |= (unsigned char)(1u << (fd % 8));
    return 0;
}

static int rl_fd_bit(const unsigned char *bits, size_t bytes, int fd)
{
    size_t byte = (size_t)fd / 8;
    return byte < bytes && (bits[byte] & (1u << (fd % 8)));
}

static void rl_fd_bit_clear(unsigned char *bits, size_t bytes, int fd)
{
    size_t byte = (size_t)fd / 8;
    if (fd >= 0 && byte < bytes)
        bits[byte] &= (unsigned char)~(1u << (fd % 8));
}

/* Remembers that fd's file refuses the flag (if memory allows: else it is
 * only tried again, which costs a system call, not a wrong answer). */
static void rl_nowait_refuse(struct rl_nowait *nw, int fd)
{
    (void)rl_fd_bit_set(&nw->refused, &nw->refused_bytes, fd);
}

/* Whether fd is O_DIRECT, looked at once per descriptor (then refused). */
static int rl_nowait_direct(struct rl_nowait *nw, int fd)
{
    if (rl_fd_bit(nw->checked, nw->checked_bytes, fd))
        return 0; /* looked at already, and not refused since */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_DIRECT)) {
        rl_nowait_refuse(nw, fd);
        return 1;
    }
    if (flags >= 0)
        (void)rl_fd_bit_set(&nw->checked, &nw->checked_bytes, fd); /* no memory: looked at again next time */
    return 0;
}

int64_t rl_read_nowait(struct rl_nowait *nw, int fd, void *buf, size_t len, int64_t offset)
{
    if (fd >= 0 && rl_nowait_direct(nw, fd)) {
        nw->misses++;
        return -EAGAIN;
    }
    size_t done = 0;
    while (done < len) {
        struct iovec iov = {(char *)buf + done, len - done};
        ssize_t n = preadv2(fd, &iov, 1, (off_t)(offset + (int64_t)done), RWF_NOWAIT);
        if (n == 0)
            break; /* end of file: with RWF_NOWAIT an uncached page is EAGAIN, never 0 */
        if (n < 0) {
            if (errno == EOPNOTSUPP)
                rl_nowait_refuse(nw, fd);
            else if (errno == ENOSYS)
                nw->unsupported = 1;
            nw->misses++;
            return -EAGAIN;
        }
        /* Short: the end of the file, or the end of what is cached; the
         * next attempt says which (0, or EAGAIN). */
        done += (size_t)n;
    }
    nw->hits++;
    return (int64_t)done;
}

void rl_nowait_forget(struct rl_nowait *nw, int fd)
{
    rl_fd_bit_clear(nw->refused, nw->refused_bytes, fd);
    rl_fd_bit_clear(nw->checked, nw->checked_bytes, fd);
}

void rl_nowait_free(struct rl_nowait *nw)
{
    free(nw->refused);
    free(nw->checked);
    memset(nw, 0, sizeof *nw);
}
