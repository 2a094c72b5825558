/*
 * Small syscall shims for ClawjailSystem: calls glibc 2.36 lacks, constants its Swift
 * module hides behind _GNU_SOURCE, and the supervisor's memory hand-back after a launch.
 * Parent side only: nothing here runs in the jail's child.
 */
#define _GNU_SOURCE
#include "cj_shims.h"

#define _GNU_SOURCE
#include "cj_child.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <sys/reboot.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int cj_sys_open_tree(int dfd, const char *path, unsigned int flags) {
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}

int cj_sys_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct {
        uint64_t flags, mode, resolve;
    } how = {flags, mode, resolve};
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
}

int cj_sys_pidfd_open(pid_t pid, unsigned int flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

int cj_sys_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int cj_sys_pidfd_getfd(int pidfd, int targetfd) { return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0); }

int cj_sys_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

int cj_sys_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

uint64_t cj_jail_clone_flags(void) {
    return CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
}

int cj_rlimit_nproc(void) { return RLIMIT_NPROC; }

int cj_sys_signalfd(const int *signals, int n) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) sigaddset(&set, signals[i]);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int cj_sys_read_signal(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && errno == EAGAIN) return 0;
    return -1;
}

long cj_sys_getxattr(const char *path, const char *name, void *value, size_t size) {
    return syscall(SYS_getxattr, path, name, value, size);
}

int cj_malloc_trim(void) { return malloc_trim(0); }

static uintptr_t parse_hex(const char *p, char **end) {
    uintptr_t v = 0;
    for (;; p++) {
        int d;
        if (*p >= '0' && *p <= '9') d = *p - '0';
        else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
        else break;
        v = v * 16 + (uintptr_t)d;
    }
    if (end) *end = (char *)p;
    return v;
}

/* The [lo, hi) range of the mapping that holds `addr`, from /proc/self/maps read in
 * small pieces (this runs on the stack it measures). 0 when not found. */
static int mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[1024];
    size_t have = 0;
    int found = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
        buf[have] = 0;
        char *line = buf;
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = 0;
            char *dash;
            uintptr_t a = parse_hex(line, &dash), b = 0;
            if (*dash == '-') b = parse_hex(dash + 1, NULL);
            if (*dash == '-' && a <= addr && addr < b) {
                *lo = a;
                *hi = b;
                found = 1;
                break;
            }
            line = nl + 1;
        }
        if (found) break;
        have = strlen(line);
        memmove(buf, line, have);
        if (have == sizeof buf - 1) have = 0; /* a line longer than the buffer: skip it */
    }
    close(fd);
    return found;
}

void cj_release_launch_memory(void) {
    (void)malloc_trim(0);
    char here = 0;
    uintptr_t low = (uintptr_t)&here;
    uintptr_t lo = 0, hi = 0;
    if (!mapping_of(low, &lo, &hi)) return;
    /* Everything below the stack pointer is dead here: this thread runs nothing else,
     * and a signal handler that ran on it earlier has returned (one that runs later
     * gets fresh pages). 16 KiB stay for madvise's own frame and the red zone. */
    const uintptr_t keep = 16u << 10;
    if (low - lo <= keep) return;
    uintptr_t end = (low - keep) & ~(uintptr_t)4095;
    if (end > lo) (void)madvise((void *)lo, end - lo, MADV_DONTNEED);
}

void cj_malloc_single_arena(void) { (void)mallopt(M_ARENA_MAX, 1); }

int cj_sys_getrandom(void *buf, size_t len) { return (int)syscall(SYS_getrandom, buf, len, 0); }

int cj_sys_wait_pidfd(int pidfd, int *status, int options) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &si, WEXITED | options) < 0) return -1;
    if (si.si_pid == 0) {
        *status = -1; /* WNOHANG and still running */
        return 0;
    }
    switch (si.si_code) {
    case CLD_EXITED: *status = (si.si_status & 0xff) << 8; break;
    case CLD_KILLED: *status = si.si_status & 0x7f; break;
    case CLD_DUMPED: *status = (si.si_status & 0x7f) | 0x80; break;
    default: *status = 0; break;
    }
    return 0;
}

int cj_sys_finit_module(int fd, const char *params, int flags) {
    return (int)syscall(SYS_finit_module, fd, params, flags);
}

int cj_sys_power_off(void) { return reboot(RB_POWER_OFF); }

pid_t cj_spawn_process(const char *path, char *const argv[], char *const envp[], const char *cwd,
                     uint32_t uid, uint32_t gid, const int fds[3]) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        return -e;
    }
    if (pid == 0) {
        int err = 0;
        sigset_t none;
        sigemptyset(&none);
        for (int sig = 1; sig < 65; sig++) (void)signal(sig, SIG_DFL);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        /* dup2 keeps the source open; 0..2 are moved up first so that one source fd
         * that is also a target is not overwritten before it is used. */
        int moved[3];
        for (int i = 0; i < 3; i++) {
            moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved[i] < 0) goto failed;
        }
        if (setsid() < 0) goto failed;
        if (syscall(SYS_setgroups, 0, NULL) < 0) goto failed;
        if (syscall(SYS_setresgid, gid, gid, gid) < 0) goto failed;
        if (syscall(SYS_setresuid, uid, uid, uid) < 0) goto failed;
        if (chdir(cwd) < 0) goto failed;
        for (int i = 0; i < 3; i++) {
            if (dup2(moved[i], i) < 0) goto failed;
        }
        execve(path, argv, envp);
    failed:
        err = errno;
        (void)!write(report[1], &err, sizeof err);
        _exit(127);
    }
    close(report[1]);
    int err = 0;
    ssize_t n;
    do { n = read(report[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -err;
    }
    return pid;
}
