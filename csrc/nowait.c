#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */
#include "nowait.h"

#include "fault.h"

#include <errno.h>
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

/* Remembers that fd's file refuses the flag (if memory allows: else it is
 * only tried again, which costs a system call, not a wrong answer). */
static void rl_nowait_refuse(struct rl_nowait *nw, int fd)
{
    size_t byte = (size_t)fd / 8;
    if (byte >= nw->refused_bytes) {
        size_t size = nw->refused_bytes ? nw->refused_bytes : 64;
        while (size <= byte)
            size *= 2;
        unsigned char *grown = realloc(nw->refused, size);
        if (grown == NULL)
            return;
        memset(grown + nw->refused_bytes, 0, size - nw->refused_bytes);
        nw->refused = grown;
        nw->refused_bytes = size;
    }
    nw->refused[byte] |= (unsigned char)(1u << (fd % 8));
}

int64_t rl_read_nowait(struct rl_nowait *nw, int fd, void *buf, size_t len, int64_t offset)
{
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
    size_t byte = (size_t)fd / 8;
    if (fd >= 0 && byte < nw->refused_bytes)
        nw->refused[byte] &= (unsigned char)~(1u << (fd % 8));
}

void rl_nowait_free(struct rl_nowait *nw)
{
    free(nw->refused);
    memset(nw, 0, sizeof *nw);
}
