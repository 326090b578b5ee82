#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */
#include "nowait.h"

#include "fault.h"
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <valgrind/memcheck.h>

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
    do { /* once at least: a read of 0 bytes still gets the kernel's EBADF (as preadv gives it) */
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
    } while (done < len);
    nw->hits++;
    return (int64_t)done;
}

int64_t rl_read_nothing(int fd, int64_t offset)
{
    char none;
    ssize_t n = offset < 0 ? read(fd, &none, 0) : pread(fd, &none, 0, (off_t)offset);
    return n < 0 ? -errno : 0;
}

/* ---- A batch, with the helper's kernel thread ----------------------------- */

enum {
    HELPER_MIN_BATCH = 16, /* a smaller batch is over before a handover pays */
    HELPER_CHUNK = 8,      /* reads per handover: what a thread that gets no CPU keeps from the caller */
    HELPER_IDLE_MS = 2,    /* the thread polls this long after its last read, then sleeps */
    HELPER_ENTRIES = 2 * HELPER_CHUNK,
    HELPER_GOOD_RUN = 8,
};
#define HELPER_LOOK_NS 10000000LL     /* /proc/loadavg is read at most every 10 ms (~3 us a read) */
#define HELPER_SPIN_NS 20000           /* then the caller sleeps, leaving its CPU to the thread */
/* After a batch that waited for the thread (it got no CPU in time: what the
 * load check, helper_cpu_free, missed), no handovers for a while: 1 ms,
 * doubled at each such batch up to 128 ms, halved after HELPER_GOOD_RUN
 * batches in a row that did not wait.  Such a wait is a scheduler's turn
 * (~0.2-0.7 ms here), the saving of ten batches or more. */
#define HELPER_REST_MIN_NS 1000000LL
#define HELPER_REST_MAX_NS 128000000LL

/* Whether a CPU is free for the thread: no task but this one (and the
 * thread, while it polls) runnable on the others, as /proc/loadavg's count
 * of runnable tasks said when last read (HELPER_LOOK_NS ago at most).  On a
 * busy machine the thread would take a CPU from the caller or another
 * program, and copy no sooner.  Unreadable: not known to be free. */
static int helper_cpu_free(struct rl_nowait *nw)
{
    int64_t now = rl_now_ns();
    if (now < nw->helper_look_until)
        return nw->helper_cpu_free;
    nw->helper_look_until = now + HELPER_LOOK_NS;
    nw->helper_cpu_free = 0;
    char text[128];
    ssize_t n = pread(nw->loadavg_fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    unsigned running;
    if (sscanf(text, "%*s %*s %*s %u/", &running) != 1)
        return 0;
    unsigned ours = 1 + !(IO_URING_READ_ONCE(*nw->helper.sq.kflags) & IORING_SQ_NEED_WAKEUP);
    nw->helper_cpu_free = running <= ours + nw->helper_cpus - 2;
    return nw->helper_cpu_free;
}

/* Reads up to two numbers from a file of a cgroup (root: where its
 * hierarchy is mounted; group: this process's group in it); how many. */
static int cgroup_read(const char *root, const char *group, const char *name, long long *a, long long *b)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s%s/%s", root, group, name) >= (int)sizeof path)
        return 0;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "%lld %lld", a, b);
    fclose(f);
    return n < 0 ? 0 : n;
}

/* Whether a comma-separated list holds word. */
static int list_has(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* The CPUs a cgroup CPU limit of this process's own group grants it
 * (cgroup v2's cpu.max, v1's cpu.cfs_quota_us over cpu.cfs_period_us, at
 * the usual mount points): a container's --cpus, a pod's limit.  0: no
 * limit, or none that could be read. */
static double cgroup_cpu_limit(void)
{
    static const char *const v2_roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    static const char *const v1_roots[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return 0;
    char line[4096];
    double limit = 0;
    while (limit == 0 && fgets(line, sizeof line, f)) { /* "id:controllers:group" */
        char *controllers = strchr(line, ':');
        char *group = controllers ? strchr(controllers + 1, ':') : NULL;
        if (group == NULL)
            continue;
        *controllers++ = '\0';
        *group++ = '\0';
        group[strcspn(group, "\n")] = '\0';
        long long quota, period, unused;
        for (int i = 0; i < 2 && limit == 0; i++) {
            if (*controllers == '\0') { /* v2: "max 100000" has no limit */
                if (cgroup_read(v2_roots[i], group, "cpu.max", &quota, &period) == 2 && quota > 0 && period > 0)
                    limit = (double)quota / (double)period;
            } else if (list_has(controllers, "cpu")) {
                if (cgroup_read(v1_roots[i], group, "cpu.cfs_quota_us", &quota, &unused) == 1 && quota > 0 &&
                    cgroup_read(v1_roots[i], group, "cpu.cfs_period_us", &period, &unused) == 1 && period > 0)
                    limit = (double)quota / (double)period; /* a quota of -1 has no limit */
            }
        }
    }
    fclose(f);
    return limit;
}

int rl_nowait_helper_setup(struct rl_nowait *nw)
{
    if (nw->helper_state == 0) {
        nw->helper_state = -1;
        cpu_set_t cpus;
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = HELPER_IDLE_MS;
        double limit = cgroup_cpu_limit(); /* under two CPUs the thread would spend the caller's quota */
        if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1 && (limit == 0 || limit >= 2) &&
            (nw->loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC)) >= 0) {
            int set_up = io_uring_queue_init_params(HELPER_ENTRIES, &nw->helper, &p) == 0;
            if (set_up && !(p.features & IORING_FEAT_SQPOLL_NONFIXED)) { /* before 5.11: registered files only */
                io_uring_queue_exit(&nw->helper);
                set_up = 0;
            }
            if (set_up) {
                io_uring_ring_dontfork(&nw->helper); /* a forked child never reaches it */
                nw->helper_state = 1;
                nw->helper_cpus = (unsigned)CPU_COUNT(&cpus);
                nw->helper_rest_ns = HELPER_REST_MIN_NS;
            } else {
                close(nw->loadavg_fd);
            }
        }
    }
    return nw->helper_state > 0;
}

/* Whether reads may be handed over now. */
static int helper_ready(struct rl_nowait *nw)
{
    return rl_nowait_helper_setup(nw) &&
           (nw->helper_always || (rl_now_ns() >= nw->helper_rest_until && helper_cpu_free(nw)));
}

/* Hands the HELPER_CHUNK reads below *hi to the thread (it has taken every
 * earlier one, so the SQ has room); returns how many. */
static size_t helper_hand(struct rl_nowait *nw, int fd, struct rl_nowait_read *reads, size_t *hi)
{
    size_t k = 0;
    struct io_uring_sqe *sqe;
    for (; k < HELPER_CHUNK && (sqe = io_uring_get_sqe(&nw->helper)) != NULL; k++) {
        struct rl_nowait_read *r = &reads[--*hi];
        io_uring_prep_read(sqe, fd, r->buf, (unsigned)r->len, (uint64_t)r->offset);
        sqe->rw_flags = RWF_NOWAIT;
        io_uring_sqe_set_data64(sqe, *hi);
    }
    io_uring_submit(&nw->helper); /* no system call while the thread polls */
    return k;
}

/* One of the thread's reads is done with res: its outcome, as rl_read_nowait's. */
static int64_t helper_outcome(struct rl_nowait *nw, int fd, struct rl_nowait_read *r, int res)
{
    if (res < 0) {
        if (res == -EOPNOTSUPP)
            rl_nowait_refuse(nw, fd);
        else if (res == -EINVAL)                   /* a kernel whose io_uring has no RWF_NOWAIT read */
            nw->helper_rest_until = INT64_MAX;
        nw->misses++;
        return -EAGAIN;
    }
    VALGRIND_MAKE_MEM_DEFINED(r->buf, (size_t)res); /* the kernel wrote it */
    if (res > 0 && (size_t)res < r->len) { /* the end of the file, or of what is cached: go on here */
        int64_t more = rl_read_nowait(nw, fd, (char *)r->buf + res, r->len - (size_t)res, r->offset + res);
        if (more < 0)
            return more; /* counted as a miss there */
        res += (int)more; /* and as a hit */
    } else {
        nw->hits++;
    }
    nw->helper_hits++;
    return res;
}

/* Takes the thread's finished reads (no system call); returns how many.
 * Called at each handover too, so the CQ never holds more than two chunks. */
static size_t helper_reap(struct rl_nowait *nw, int fd, struct rl_nowait_read *reads)
{
    size_t n = 0;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&nw->helper, &cqe) == 0) {
        struct rl_nowait_read *r = &reads[io_uring_cqe_get_data64(cqe)];
        int res = cqe->res;
        io_uring_cqe_seen(&nw->helper, cqe);
        r->result = helper_outcome(nw, fd, r, res);
        n++;
    }
    return n;
}

/* Waits for the handed reads still out: a short spin (the thread is copying
 * on another CPU), then sleeping in the ring, which leaves this CPU to it.
 * Never gives up: the kernel may write their buffers until they complete. */
static void helper_collect(struct rl_nowait *nw, int fd, struct rl_nowait_read *reads, size_t out)
{
    int64_t spin_end = rl_now_ns() + HELPER_SPIN_NS;
    while ((out -= helper_reap(nw, fd, reads)) > 0) {
        struct io_uring_cqe *cqe;
        if (rl_now_ns() >= spin_end)
            io_uring_wait_cqe(&nw->helper, &cqe); /* -EINTR (a signal): the loop waits again */
    }
}

void rl_read_nowait_batch(struct rl_nowait *nw, int fd, struct rl_nowait_read *reads, size_t count)
{
    /* O_DIRECT is looked at first: the thread must never be handed a read that goes to the device. */
    int sharing = count >= HELPER_MIN_BATCH && rl_nowait_enabled(nw, fd) && !rl_nowait_direct(nw, fd) &&
                  helper_ready(nw);
    size_t lo = 0, hi = count, out = 0; /* reads in the thread's hands */
    int handed = 0, woken = 0;
    int64_t started = sharing ? rl_now_ns() : 0;
    while (lo < hi) {
        /* Handovers start once the caller's first read came from the cache: the file takes positional
         * non-blocking reads (not a pipe, not a file that refuses the flag) and is cached here. */
        if (sharing && lo > 0 && reads[0].result >= 0 && hi - lo >= 2 * HELPER_CHUNK &&
            io_uring_sq_ready(&nw->helper) == 0) {
            if (nw->helper_always || !(IO_URING_READ_ONCE(*nw->helper.sq.kflags) & IORING_SQ_NEED_WAKEUP)) {
                out -= helper_reap(nw, fd, reads);
                out += helper_hand(nw, fd, reads, &hi);
                handed = 1;
            } else if (!woken) { /* asleep: woken now, it takes reads from its next look on */
                io_uring_enter(nw->helper.ring_fd, 0, 0, IORING_ENTER_SQ_WAKEUP, NULL);
                woken = 1;
            }
        }
        struct rl_nowait_read *r = &reads[lo++];
        r->result = rl_nowait_enabled(nw, fd) ? rl_read_nowait(nw, fd, r->buf, r->len, r->offset) : -EAGAIN;
    }
    if (!handed)
        return;
    int64_t own_done = rl_now_ns();
    helper_collect(nw, fd, reads, out);
    int64_t collected = rl_now_ns();
    if (collected - own_done > (own_done - started) / 2) { /* the thread was short of CPU: copy alone a while */
        nw->helper_rest_until = collected + nw->helper_rest_ns;
        if (nw->helper_rest_ns < HELPER_REST_MAX_NS)
            nw->helper_rest_ns *= 2;
        nw->helper_good_run = 0;
    } else if (++nw->helper_good_run == HELPER_GOOD_RUN) {
        if (nw->helper_rest_ns > HELPER_REST_MIN_NS)
            nw->helper_rest_ns /= 2;
        nw->helper_good_run = 0;
    }
}

void rl_nowait_helper_exit(struct rl_nowait *nw)
{
    if (nw->helper_state > 0) {
        io_uring_queue_exit(&nw->helper);
        close(nw->loadavg_fd);
    }
    nw->helper_state = -1;
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
