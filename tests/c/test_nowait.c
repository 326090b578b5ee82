/* The non-blocking attempt: cached bytes come back at once, end of file is
 * short, a file dropped from the page cache is left to the ring (EAGAIN), a
 * file that refuses the flag is not tried again until its fd is forgotten. */
#define _GNU_SOURCE
#include "check.h"
#include "nowait.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define SIZE (1 << 20)

int main(void)
{
    char path[] = "/tmp/ringlet-nowait-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    static char data[SIZE], got[SIZE];
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(i * 7 + 3);
    CHECK(write(fd, data, SIZE) == SIZE);
    /* The same bytes under a name, for an O_DIRECT descriptor. */
    char path_direct[] = "/var/tmp/ringlet-nowait-direct-XXXXXX";
    int named = mkstemp(path_direct);
    CHECK(named >= 0);
    CHECK(write(named, data, SIZE) == SIZE);
    close(named);

    struct rl_nowait nw;
    memset(&nw, 0, sizeof nw);
    CHECK(rl_nowait_enabled(&nw, fd));

    /* Just written: in the page cache. */
    CHECK(rl_read_nowait(&nw, fd, got, 4096, 8192) == 4096);
    CHECK(memcmp(got, data + 8192, 4096) == 0);
    CHECK(rl_read_nowait(&nw, fd, got, 100, SIZE - 40) == 40); /* short only at end of file */
    CHECK(memcmp(got, data + SIZE - 40, 40) == 0);
    CHECK(rl_read_nowait(&nw, fd, got, 100, SIZE + 5) == 0);
    CHECK(nw.hits == 3 && nw.misses == 0);

    /* Dropped from the page cache: left to the ring, no waiting. */
    CHECK(fsync(fd) == 0);
    CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    int64_t r = rl_read_nowait(&nw, fd, got, 4096, 3 * 65536);
    if (r != -EAGAIN) /* a file system may keep pages it cannot drop: say so, do not fail */
        fprintf(stderr, "note: pages not dropped by POSIX_FADV_DONTNEED (read returned %lld)\n", (long long)r);
    else
        CHECK(nw.misses == 1);

    /* A file that refuses RWF_NOWAIT is remembered until its fd is forgotten. */
    int proc = open("/proc/self/status", O_RDONLY);
    CHECK(proc >= 0);
    r = rl_read_nowait(&nw, proc, got, 100, 0);
    if (r == -EAGAIN && !rl_nowait_enabled(&nw, proc)) {
        rl_nowait_forget(&nw, proc);
        CHECK(rl_nowait_enabled(&nw, proc));
    } else {
        fprintf(stderr, "note: /proc accepted RWF_NOWAIT here (returned %lld)\n", (long long)r);
    }
    /* An O_DIRECT descriptor is never tried: there RWF_NOWAIT reads from the
     * device, waiting for it.  Remembered until its fd is forgotten. */
    int direct = open(path_direct, O_RDONLY | O_DIRECT);
    if (direct >= 0) {
        uint64_t misses = nw.misses;
        CHECK(rl_nowait_enabled(&nw, direct));
        CHECK(rl_read_nowait(&nw, direct, got, 4096, 0) == -EAGAIN);
        CHECK(nw.misses == misses + 1 && !rl_nowait_enabled(&nw, direct));
        rl_nowait_forget(&nw, direct);
        CHECK(rl_nowait_enabled(&nw, direct));
        close(direct);
    } else {
        fprintf(stderr, "note: %s refuses O_DIRECT (%s): that case is not tested here\n", path_direct, strerror(errno));
    }
    unlink(path_direct);
    /* A descriptor far beyond the first bitmap bytes. */
    CHECK(rl_nowait_enabled(&nw, 100000));
    CHECK(rl_read_nowait(&nw, -1, got, 1, 0) == -EAGAIN); /* EBADF: the ring reports it */
    close(proc);
    close(fd);
    rl_nowait_free(&nw);
    return 0;
}
