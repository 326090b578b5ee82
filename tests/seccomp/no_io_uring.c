/* no_io_uring: run a command under a seccomp filter that refuses
 * io_uring_setup(2) with EPERM, as Docker's default profile does.
 *
 *     no_io_uring COMMAND [ARG...]
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

static int install_filter(void)
{
    struct sock_filter code[] = {
        /* Another architecture's system call numbers mean something else: refuse them all. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RL_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
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
    if (argc < 2) {
        fprintf(stderr, "usage: %s COMMAND [ARG...]\n"
                        "runs COMMAND with io_uring_setup(2) refused (EPERM) by a seccomp filter\n",
                argv[0]);
        return 127;
    }
    if (install_filter() != 0)
        return 127;
    /* Check that it holds before running anything under it. */
    if (syscall(__NR_io_uring_setup, 1, NULL) != -1 || errno != EPERM) {
        fprintf(stderr, "no_io_uring: the filter did not refuse io_uring_setup with EPERM\n");
        return 127;
    }
    setenv("RINGLET_SECCOMP_NO_IO_URING", "1", 1);
    execvp(argv[1], argv + 1);
    fprintf(stderr, "no_io_uring: cannot execute %s: %s\n", argv[1], strerror(errno));
    return 127;
}
