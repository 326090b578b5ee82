/* no_io_uring: run a command under a seccomp filter that refuses
 * io_uring_setup(2), by default with EPERM as Docker's default profile does.
 *
 *     no_io_uring [-e ERRNO] COMMAND [ARG...]
 *
 * -e ERRNO: the error io_uring_setup returns instead: EPERM (the default),
 * ENOSYS (as gVisor and seccomp profiles that hide the call do), or any
 * other name from the list below, or a number.
 *
 * The filter is installed with prctl(PR_SET_NO_NEW_PRIVS) (so no privilege
 * is needed) and survives exec, so COMMAND and all its children see a kernel
 * where io_uring is refused.  The environment gets
 * RINGLET_SECCOMP_NO_IO_URING=1 so that tests know they run under it.
 *
 * Exit status: COMMAND's, or 127 if the filter cannot be installed or the
 * command cannot be executed. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define RL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define RL_AUDIT_ARCH AUDIT_ARCH_I386
#elif defined(__riscv) && __riscv_xlen == 64
#define RL_AUDIT_ARCH AUDIT_ARCH_RISCV64
#else
#error "no_io_uring: add this architecture's AUDIT_ARCH_* value"
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425 /* the same number on every architecture */
#endif

static const struct {
    const char *name;
    int value;
} errnos[] = {
    {"EPERM", EPERM}, {"ENOSYS", ENOSYS}, {"ENOMEM", ENOMEM}, {"EMFILE", EMFILE},
    {"EACCES", EACCES}, {"EINVAL", EINVAL},
};

/* ERRNO as a name from errnos[] or a number in 1..4095; -1 if neither. */
static int parse_errno(const char *text)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(text, errnos[i].name) == 0)
            return errnos[i].value;
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < 1 || value > 4095)
        return -1;
    return (int)value;
}

static int install_filter(int err)
{
    struct sock_filter code[] = {
        /* Another architecture's system call numbers mean something else: refuse them all. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RL_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "no_io_uring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
        fprintf(stderr, "no_io_uring: prctl(PR_SET_SECCOMP): %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int err = EPERM;
    int first = 1; /* argv index of COMMAND */
    if (argc > 2 && strcmp(argv[1], "-e") == 0) {
        err = parse_errno(argv[2]);
        if (err < 0) {
            fprintf(stderr, "no_io_uring: -e takes an errno name (EPERM, ENOSYS, ...) or number, not %s\n", argv[2]);
            return 127;
        }
        first = 3;
    }
    if (argc <= first) {
        fprintf(stderr, "usage: %s [-e ERRNO] COMMAND [ARG...]\n"
                        "runs COMMAND with io_uring_setup(2) refused (EPERM, or ERRNO) by a seccomp filter\n",
                argv[0]);
        return 127;
    }
    if (install_filter(err) != 0)
        return 127;
    /* Check that it holds before running anything under it. */
    if (syscall(__NR_io_uring_setup, 1, NULL) != -1 || errno != err) {
        fprintf(stderr, "no_io_uring: the filter did not refuse io_uring_setup with errno %d\n", err);
        return 127;
    }
    setenv("RINGLET_SECCOMP_NO_IO_URING", "1", 1);
    execvp(argv[first], argv + first);
    fprintf(stderr, "no_io_uring: cannot execute %s: %s\n", argv[first], strerror(errno));
    return 127;
}
