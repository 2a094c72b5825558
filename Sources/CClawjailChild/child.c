/*
 * The code that runs between clone3 and execve.
 *
 * The supervisor is a multithreaded Swift process, so after clone3 only the calling
 * thread exists in the child while glibc still believes the others do. Everything
 * below therefore makes raw, async-signal-safe system calls only:
 *  - no malloc, no stdio, no locks;
 *  - credentials change through raw syscalls, because glibc's setresuid() would try
 *    to signal threads that do not exist in the child and hang;
 *  - _exit, never exit.
 * Every failure is reported to the parent as {stage, errno, op} and the child exits.
 */
#define _GNU_SOURCE
#include "cj_child.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
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

/* ---------------------------------------------------------------- reporting */

static void report(int fd, int type, int stage, int err, int op, int value) {
    struct cj_report r;
    r.type = type;
    r.stage = stage;
    r.err = err;
    r.op = op;
    r.value = value;
    ssize_t n;
    do {
        n = write(fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
}

static _Noreturn void fail(int fd, int stage, int op) {
    report(fd, CJ_REPORT_SETUP_FAILED, stage, errno, op, 0);
    _exit(125);
}

/* ---------------------------------------------------------------- raw syscalls */

static int raw_setresuid(uid_t r, uid_t e, uid_t s) { return (int)syscall(SYS_setresuid, r, e, s); }
static int raw_setresgid(gid_t r, gid_t e, gid_t s) { return (int)syscall(SYS_setresgid, r, e, s); }

/* Exported: the parent's mount code (ClawjailSystem.Mount) calls the same one. */
int cj_sys_mount_setattr(int dfd, const char *path, unsigned int flags, uint64_t set, uint64_t clr,
                         uint64_t propagation) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = set;
    attr.attr_clr = clr;
    attr.propagation = propagation;
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr);
}

/* ---------------------------------------------------------------- paths */

/* The directory mkdir_p made (or found) last, and its length. The ops come grouped by
 * directory (two dozen entries of /etc in a row), so most parents are this one or one
 * of its ancestors, and their mkdir would only say EEXIST. The root tree only grows
 * while the ops run, so a directory seen once stays. */
static char made_dir[PATH_MAX];
static size_t made_len;

static int known_dir(const char *dir, size_t len) {
    return len <= made_len && memcmp(made_dir, dir, len) == 0 && (made_dir[len] == '/' || made_dir[len] == '\0');
}

static void remember_dir(const char *dir, size_t len) {
    memcpy(made_dir, dir, len);
    made_dir[len] = '\0';
    made_len = len;
}

/* mkdir -p for a relative, normalised path; stops before the last component when
 * `skip_last` is set (used to create the parent of a file). */
static int mkdir_p(const char *path, mode_t mode, int skip_last) {
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = len == 0 ? 0 : ENAMETOOLONG;
        return len == 0 ? 0 : -1;
    }
    memcpy(buf, path, len + 1);
    if (skip_last) {
        char *slash = strrchr(buf, '/');
        if (slash == NULL) return 0;
        *slash = '\0';
        len = (size_t)(slash - buf);
    }
    if (known_dir(buf, len)) return 0;
    /* Most calls need one directory whose parent exists: try that first. */
    if (mkdir(buf, mode) == 0 || errno == EEXIST) {
        remember_dir(buf, len);
        return 0;
    }
    if (errno != ENOENT) return -1;
    skip_last = 0;
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        if (buf[i] == '\0' && skip_last) break;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
        buf[i] = saved;
    }
    remember_dir(buf, len);
    return 0;
}

static int make_mountpoint(const char *path, int is_file) {
    if (!is_file) return mkdir_p(path, 0755, 0);
    if (mkdir_p(path, 0755, 1) < 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0) {
        /* An existing read-only file (or a directory) is a valid mount point too. */
        if (errno == EEXIST || errno == EISDIR || errno == EACCES || errno == EROFS) {
            struct stat st;
            if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0) return 0;
        }
        return -1;
    }
    close(fd);
    return 0;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode) {
    if (mkdir_p(path, 0755, 1) < 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        off += (size_t)n;
    }
    /* The root tree is built with umask 0 (child_main), so open() gave the exact mode. */
    close(fd);
    return 0;
}

/* ---------------------------------------------------------------- mount ops */

static int run_op(const struct cj_op *op) {
    int optional = (op->flags & CJ_F_OPTIONAL) != 0;
    int recursive = (op->flags & CJ_F_RECURSIVE) != 0;
    struct stat st;

    switch (op->kind) {
    case CJ_OP_MKDIR:
        return mkdir_p(op->path, op->mode ? op->mode : 0755, 0);

    case CJ_OP_SYMLINK:
        if (mkdir_p(op->path, 0755, 1) < 0) return -1;
        return symlink(op->arg, op->path);

    case CJ_OP_WRITE_FILE:
        return write_file(op->path, op->arg, op->arg_len, op->mode ? op->mode : 0644);

    case CJ_OP_ATTACH: {
        if (make_mountpoint(op->path, (op->flags & CJ_F_FILE) != 0) < 0) return -1;
        int r = (int)syscall(SYS_move_mount, op->fd, "", AT_FDCWD, op->path, MOVE_MOUNT_F_EMPTY_PATH);
        if (r < 0) return -1;
        close(op->fd);
        return 0;
    }

    case CJ_OP_BIND_HOST: {
        int is_file;
        if (op->flags & (CJ_F_DIR | CJ_F_FILE)) {
            is_file = (op->flags & CJ_F_FILE) != 0;
        } else {
            if (stat(op->arg, &st) < 0) return (optional && errno == ENOENT) ? 0 : -1;
            is_file = !S_ISDIR(st.st_mode);
        }
        if (make_mountpoint(op->path, is_file) < 0) return -1;
        if (mount(op->arg, op->path, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0) return -1;
        /* Everything below the new root is private already (the whole tree was made
         * private first, and binds of private mounts are private). */
        if (op->mattr == 0) return 0;
        return cj_sys_mount_setattr(AT_FDCWD, op->path, recursive ? AT_RECURSIVE : 0, op->mattr, 0, 0);
    }

    case CJ_OP_WHITEOUT:
        /* Whiteouts need no CAP_MKNOD (Linux 5.8), so the jail's root may make them. */
        if (mkdir_p(op->path, 0755, 1) < 0) return -1;
        return mknod(op->path, S_IFCHR, makedev(0, 0));

    case CJ_OP_OVERLAY:
        /* With no upperdir the overlay is read-only; its top layer may be the directory
         * it is mounted on, which it then hides. */
        if (mkdir_p(op->path, 0755, 0) < 0) return -1;
        return mount("overlay", op->path, "overlay", (unsigned long)op->mflags, op->arg);

    case CJ_OP_TMPFS:
        if (mkdir_p(op->path, 0755, 0) < 0) return -1;
        return mount("tmpfs", op->path, "tmpfs", (unsigned long)op->mflags, op->arg);

    case CJ_OP_PROC:
        if (mkdir_p(op->path, 0555, 0) < 0) return -1;
        return mount("proc", op->path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, op->arg);

    case CJ_OP_DEVPTS:
        if (mkdir_p(op->path, 0755, 0) < 0) return -1;
        return mount("devpts", op->path, "devpts", MS_NOSUID | MS_NOEXEC, op->arg);

    case CJ_OP_MASK:
        if (fstatat(AT_FDCWD, op->path, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT ? 0 : -1;
        if (S_ISDIR(st.st_mode)) {
            /* A bind of the host's empty directory: no filesystem instance per mask. */
            if (mount(op->arg, op->path, NULL, MS_BIND, NULL) < 0) return -1;
            return cj_sys_mount_setattr(AT_FDCWD, op->path, 0,
                                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, 0);
        }
        if (mount("dev/null", op->path, NULL, MS_BIND, NULL) < 0) return -1;
        return cj_sys_mount_setattr(AT_FDCWD, op->path, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0, 0);

    case CJ_OP_READONLY:
        if (fstatat(AT_FDCWD, op->path, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return (optional && errno == ENOENT) ? 0 : -1;
        if (mount(op->path, op->path, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
        return cj_sys_mount_setattr(AT_FDCWD, op->path, AT_RECURSIVE, MOUNT_ATTR_RDONLY | op->mattr, 0, 0);

    case CJ_OP_WRITE_EXISTING: {
        int fd = open(op->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) return -1;
        ssize_t n = write(fd, op->arg, op->arg_len);
        int e = errno;
        close(fd);
        errno = e;
        return n == (ssize_t)op->arg_len ? 0 : -1;
    }
    }
    errno = EINVAL;
    return -1;
}

/* ---------------------------------------------------------------- process setup */

/* Back to default dispositions and an empty mask. The Swift runtime installs handlers
 * (and SIG_IGN for SIGPIPE) on standard signals only; real-time signals keep their
 * default, so 1..31 is the whole job. */
static void reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < 32; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        (void)sigaction(s, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The command inherits init's state: only what init changed needs undoing (the
 * forwarding handlers; handlers are reset by execve anyway, but the mask is not). */
static void reset_forwarded(const struct cj_plan *p) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int i = 0; i < p->n_forward_signals; i++) (void)sigaction(p->forward_signals[i], &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void forward_handler(int sig) { (void)sig; }

/* The parent keeps its end of the sync pipe open for the whole run: a hang-up means
 * the supervisor is gone, and PDEATHSIG may have been armed too late to notice. */
static int parent_gone(int sync_fd) {
    struct pollfd pfd;
    pfd.fd = sync_fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    int r = poll(&pfd, 1, 0);
    return r > 0 && (pfd.revents & (POLLHUP | POLLERR)) != 0;
}

static int arm_pdeathsig(int sync_fd) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return -1;
    if (parent_gone(sync_fd)) _exit(0);
    return 0;
}

static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return r;
}

/* Close every fd from 3 up, except the ones listed (ascending, all >= 3). */
static void close_all_but(const int *keep, int n) {
    unsigned int from = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 3 || (unsigned)keep[i] < from) continue;
        if ((unsigned)keep[i] > from) (void)syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    (void)syscall(SYS_close_range, from, ~0U, 0);
}

static void exec_command(const struct cj_plan *p) {
    const char *file = p->argv[0];
    char *const *argv = (char *const *)p->argv;
    char *const *envp = (char *const *)p->envp;
    if (strchr(file, '/') != NULL || p->path_search == NULL) {
        execve(file, argv, envp);
        return;
    }
    char buf[PATH_MAX];
    size_t flen = strlen(file);
    int saw_eacces = 0;
    const char *s = p->path_search;
    for (;;) {
        const char *e = strchr(s, ':');
        size_t dlen = e ? (size_t)(e - s) : strlen(s);
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            size_t off = 0;
            if (dlen == 0) {
                buf[off++] = '.';
            } else {
                memcpy(buf, s, dlen);
                off = dlen;
            }
            buf[off++] = '/';
            memcpy(buf + off, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) return;
        }
        if (e == NULL) break;
        s = e + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
}

static _Noreturn void command_main(const struct cj_plan *p, int report_fd) {
    reset_forwarded(p);
    if (setsid() < 0) fail(report_fd, CJ_STAGE_SETSID, -1);
    if (chdir(p->cwd) < 0) fail(report_fd, CJ_STAGE_CHDIR_CWD, -1);
    /* Only 0-2 (and the passed fd, as 3) survive execve: the report pipe is CLOEXEC,
     * everything else closes now (that includes the seccomp listener, which must never
     * reach the command). */
    int keep[2] = {report_fd, -1}, n_keep = 1;
    if (p->pass_fd >= 0) {
        if (report_fd == 3) {
            report_fd = fcntl(3, F_DUPFD_CLOEXEC, 4);
            if (report_fd < 0) fail(3, CJ_STAGE_STDIO, -1);
        }
        if (p->pass_fd != 3) {
            if (dup2(p->pass_fd, 3) < 0) fail(report_fd, CJ_STAGE_STDIO, -1);
            (void)close(p->pass_fd);
        }
        keep[0] = 3;
        keep[1] = report_fd;
        n_keep = 2;
    }
    close_all_but(keep, n_keep);
    exec_command(p);
    int e = errno;
    report(report_fd, CJ_REPORT_EXEC_FAILED, CJ_STAGE_EXEC, e, -1, 0);
    _exit(e == ENOENT ? 127 : 126);
}

/* CLAWJAIL_TRACE: one line per setup step on stderr with a CLOCK_MONOTONIC time in
 * microseconds, matching the parent's trace lines. clock_gettime (vDSO) and write only. */
static int trace_on;
static void tmark(const char *what) {
    if (!trace_on) return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    char buf[128];
    int n = 0;
    for (const char *pre = "clawjail: trace: "; *pre; pre++) buf[n++] = *pre;
    unsigned long us = (unsigned long)t.tv_sec * 1000000UL + (unsigned long)t.tv_nsec / 1000UL;
    char d[24];
    int k = 0;
    do {
        d[k++] = (char)('0' + us % 10);
        us /= 10;
    } while (us);
    while (k) buf[n++] = d[--k];
    for (const char *w = " child: "; *w; w++) buf[n++] = *w;
    while (*what && n < (int)sizeof buf - 1) buf[n++] = *what++;
    buf[n++] = '\n';
    (void)write(2, buf, (size_t)n);
}
static _Noreturn void reaper_loop(pid_t child, int report_fd, const sigset_t *set) {
    for (;;) {
        siginfo_t si;
        int s = sigwaitinfo(set, &si);
        if (s < 0) continue;
        if (s != SIGCHLD) {
            (void)kill(child, s);
            continue;
        }
        for (;;) {
            int st = 0;
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w <= 0) break;
            if (w == child) {
                tmark("command reaped");
                report(report_fd, CJ_REPORT_EXITED, 0, 0, -1, st);
                /* Returning from init kills everything else in the pid namespace. */
                if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
                _exit(128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
            }
        }
    }
}

static void scrub_cmdline(const struct cj_plan *p) {
    static const char name[] = "clawjail-init";
    if (p->scrub_start == 0 || p->scrub_len < sizeof name) return;
    memset((void *)p->scrub_start, 0, p->scrub_len);
    memcpy((void *)p->scrub_start, name, sizeof name);
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}


static int format_long(char *buf, size_t size, long v) {
    char d[24];
    int k = 0, n = 0;
    unsigned long u = v < 0 ? (unsigned long)(-v) : (unsigned long)v;
    do {
        d[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[n++] = '-';
    if ((size_t)(n + k + 1) > size) return -1;
    while (k) buf[n++] = d[--k];
    buf[n] = '\0';
    return 0;
}

/* Becomes the jail's init program (init.c), which loads the filter, forks the command
 * and reaps. Returns only when the exec failed: the caller then stays the init itself. */
static void exec_init(const struct cj_plan *p, int report_fd) {
    int bpf_fd = p->bpf_len > 0 ? p->bpf_fd : -1;
    if (p->bpf_len > 0 && bpf_fd < 0) return;
    unsigned long forward = 0;
    for (int i = 0; i < p->n_forward_signals; i++) {
        int sig = p->forward_signals[i];
        if (sig >= 1 && sig <= 64) forward |= 1UL << (sig - 1);
    }
    char nums[6][24];
    if (format_long(nums[0], sizeof nums[0], report_fd) < 0 || format_long(nums[1], sizeof nums[1], bpf_fd) < 0 ||
        format_long(nums[2], sizeof nums[2], (long)p->bpf_len) < 0 ||
        format_long(nums[3], sizeof nums[3], (long)p->seccomp_flags) < 0 ||
        format_long(nums[4], sizeof nums[4], (long)forward) < 0 ||
        format_long(nums[5], sizeof nums[5], (long)p->pass_fd) < 0)
        return;
    int n_argv = 0;
    while (p->argv[n_argv] != NULL) n_argv++;
    const char *argv[12 + n_argv];
    argv[0] = "clawjail-init";
    argv[1] = CJ_INIT_PROTOCOL;
    for (int i = 0; i < 5; i++) argv[2 + i] = nums[i];
    argv[7] = p->trace ? "1" : "0";
    argv[8] = p->cwd;
    argv[9] = p->path_search != NULL ? p->path_search : "";
    argv[10] = nums[5];
    for (int i = 0; i <= n_argv; i++) argv[11 + i] = p->argv[i];
    /* The report pipe and the filter cross the exec; init makes the pipe CLOEXEC again. */
    if (fcntl(report_fd, F_SETFD, 0) < 0) return;
    if (bpf_fd >= 0 && fcntl(bpf_fd, F_SETFD, 0) < 0) {
        (void)fcntl(report_fd, F_SETFD, FD_CLOEXEC);
        return;
    }
    (void)syscall(SYS_execveat, p->init_fd, "", argv, p->envp, AT_EMPTY_PATH);
    (void)fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    if (bpf_fd >= 0) close(bpf_fd);
}

static _Noreturn void child_main(const struct cj_plan *p, int sync_fd, int report_fd) {
    trace_on = p->trace;
    tmark("begins");
    reset_signals();
    scrub_cmdline(p);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail(report_fd, CJ_STAGE_PDEATHSIG, -1);
    /* Join the jail's v1 cgroups ourselves, while the parent writes the id maps. Still
     * the parent's credentials here, and the fds were opened by root. */
    for (int i = 0; i < p->n_cgroup_join_fds; i++) {
        ssize_t w;
        do {
            w = write(p->cgroup_join_fds[i], "0", 1);
        } while (w < 0 && errno == EINTR);
        if (w != 1) fail(report_fd, CJ_STAGE_CGROUP_JOIN, i);
        close(p->cgroup_join_fds[i]);
    }

    /* Wait while the parent writes the id maps, joins cgroups and wires the network.
     * EOF means it gave up (or died): leave without a word. */
    char go = 0;
    ssize_t n;
    do {
        n = read(sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(0);
    tmark("released by the parent");

    if (raw_setresgid(0, 0, 0) < 0) fail(report_fd, CJ_STAGE_SETID_ROOT, -1);
    if (raw_setresuid(0, 0, 0) < 0) fail(report_fd, CJ_STAGE_SETID_ROOT, -1);
    /* The credential change cleared the parent-death signal. */
    if (arm_pdeathsig(sync_fd) < 0) fail(report_fd, CJ_STAGE_PDEATHSIG, -1);

    /* Enter a cgroup namespace only now that the parent has placed us, so that the
     * jail's own cgroup is its root. */
    if (p->unshare_cgroupns && unshare(CLONE_NEWCGROUP) < 0) fail(report_fd, CJ_STAGE_CGROUPNS, -1);

    tmark("cgroup namespace");
    /* The root tree gets the modes the plan says; the command gets the supervisor's umask. */
    mode_t umask_saved = umask(0);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(report_fd, CJ_STAGE_MOUNT_PRIVATE, -1);
    if (mount("tmpfs", p->staging, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, p->root_options) < 0)
        fail(report_fd, CJ_STAGE_ROOT_TMPFS, -1);
    if (chdir(p->staging) < 0) fail(report_fd, CJ_STAGE_CHDIR_ROOT, -1);
    for (int i = 0; i < p->n_ops; i++) {
        if (run_op(&p->ops[i]) < 0) {
            if ((p->ops[i].flags & CJ_F_OPTIONAL) && errno == ENOENT) continue;
            fail(report_fd, CJ_STAGE_OP, i);
        }
    }
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching it
     * leaves only the new tree. */
    tmark("root tree built");
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail(report_fd, CJ_STAGE_PIVOT_ROOT, -1);
    if (umount2(".", MNT_DETACH) < 0) fail(report_fd, CJ_STAGE_UMOUNT_OLD_ROOT, -1);
    if (chdir("/") < 0) fail(report_fd, CJ_STAGE_CHDIR_ROOT, -1);
    (void)umask(umask_saved);
    if (p->root_readonly && cj_sys_mount_setattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY, 0, 0) < 0)
        fail(report_fd, CJ_STAGE_ROOT_READONLY, -1);

    tmark("pivot_root");
    if (p->hostname != NULL && sethostname(p->hostname, strlen(p->hostname)) < 0)
        fail(report_fd, CJ_STAGE_HOSTNAME, -1);
    if (p->loopback_up && loopback_up() < 0) fail(report_fd, CJ_STAGE_LOOPBACK, -1);
    for (int i = 0; i < p->n_rlimits; i++) {
        struct rlimit rl;
        rl.rlim_cur = (rlim_t)p->rlimits[i].soft;
        rl.rlim_max = (rlim_t)p->rlimits[i].hard;
        if (setrlimit(p->rlimits[i].resource, &rl) < 0) fail(report_fd, CJ_STAGE_RLIMIT, i);
    }
    tmark("loopback and rlimits");
    if (setsid() < 0) fail(report_fd, CJ_STAGE_SETSID, -1);

    /* Privileges: lock the securebits so that uid 0 inside never regains capabilities
     * through exec, empty the bounding set, become the jail user, empty every set. */
    /* A jail that keeps capabilities (keep_caps, the VMM jail only) keeps them as
     * ambient ones, the only kind that survives an exec under SECBIT_NOROOT: its
     * securebits leave ambient raising possible, and PR_SET_KEEPCAPS unlocked, which
     * setpriv needs to change to the VMM's uid (it then clears the inheritable and
     * ambient sets itself, so that the VMM execs with none). */
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED;
    if (p->keep_caps == 0) bits |= SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) fail(report_fd, CJ_STAGE_SECUREBITS, -1);
    for (int cap = 0; cap <= p->cap_last_cap; cap++) {
        if (cap < 64 && (p->keep_caps & (1ULL << cap))) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) fail(report_fd, CJ_STAGE_CAPBSET, cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) fail(report_fd, CJ_STAGE_AMBIENT, -1);
    if (raw_setresgid(p->gid, p->gid, p->gid) < 0) fail(report_fd, CJ_STAGE_SETGID, -1);
    if (raw_setresuid(p->uid, p->uid, p->uid) < 0) fail(report_fd, CJ_STAGE_SETUID, -1);
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    for (int i = 0; i < 2; i++) {
        uint32_t word = (uint32_t)(p->keep_caps >> (32 * i));
        data[i].permitted = word;
        data[i].effective = word;
        data[i].inheritable = word;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) fail(report_fd, CJ_STAGE_CAPSET, -1);
    for (int cap = 0; cap < 64 && p->keep_caps != 0; cap++) {
        if ((p->keep_caps & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            fail(report_fd, CJ_STAGE_AMBIENT, cap);
    }
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(report_fd, CJ_STAGE_NO_NEW_PRIVS, -1);
    /* Not dumpable: the command, running as the same uid, cannot open /proc/1/mem. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) fail(report_fd, CJ_STAGE_DUMPABLE, -1);
    if (arm_pdeathsig(sync_fd) < 0) fail(report_fd, CJ_STAGE_PDEATHSIG, -1);

    /* The jail's init forwards these to the command. As init of a pid namespace it only
     * receives signals it has a handler for, hence the empty handler. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_handler;
    for (int i = 0; i < p->n_forward_signals; i++) {
        sigaddset(&set, p->forward_signals[i]);
        (void)sigaction(p->forward_signals[i], &sa, NULL);
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) fail(report_fd, CJ_STAGE_SIGNALS, -1);

    /* Install the command's stdio in init itself (the command inherits it through
     * fork); then only 0-2 and the report pipe (and, below, the seccomp listener) stay
     * open in init. */
    for (int i = 0; i < 3; i++) {
        if (p->stdio[i] < 0) continue;
        if (p->stdio[i] == i) {
            if (fcntl(i, F_SETFD, 0) < 0) fail(report_fd, CJ_STAGE_STDIO, -1);
        } else if (dup2(p->stdio[i], i) < 0) {
            fail(report_fd, CJ_STAGE_STDIO, -1);
        }
    }
    /* Only the report pipe (and, below, the seccomp listener) stays open in init; and
     * the init program with its filter, until the exec. */
    /* The passed fd crosses the exec into init, which makes it the command's fd 3. */
    if (p->pass_fd >= 0 && (p->pass_fd < 3 || fcntl(p->pass_fd, F_SETFD, 0) < 0)) fail(report_fd, CJ_STAGE_STDIO, -1);
    int keep[4], n_keep = 0;
    int wanted[4] = {report_fd, p->init_fd, p->init_fd >= 0 ? p->bpf_fd : -1, p->pass_fd};
    for (int i = 0; i < 4; i++) {
        if (wanted[i] < 3) continue;
        int j = n_keep++;
        while (j > 0 && keep[j - 1] > wanted[i]) {
            keep[j] = keep[j - 1];
            j--;
        }
        keep[j] = wanted[i];
    }
    close_all_but(keep, n_keep);

    tmark("privileges dropped, fds closed");
    if (p->init_fd >= 0) exec_init(p, report_fd);
    /* Seccomp last: init loads the filter once and the command inherits it through
     * fork, so the kernel prepares the BPF program once per jail, not twice. */
    if (p->bpf_len > 0) {
        struct sock_fprog prog;
        prog.len = (unsigned short)p->bpf_len;
        prog.filter = (struct sock_filter *)p->bpf;
        long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog);
        if (r < 0) fail(report_fd, CJ_STAGE_SECCOMP, -1);
        if (p->seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER)
            report(report_fd, CJ_REPORT_LISTENER, 0, 0, -1, (int)r);
    }

    tmark("seccomp loaded");
    long child = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) fail(report_fd, CJ_STAGE_FORK, -1);
    if (child == 0) { tmark("command forked"); command_main(p, report_fd); }
    tmark("init forked");
    report(report_fd, CJ_REPORT_STARTED, 0, 0, -1, (int)child);
    reaper_loop((pid_t)child, report_fd, &set);
}

/* ---------------------------------------------------------------- spawn */

int cj_spawn(const struct cj_plan *plan, struct cj_spawn_result *out) {
    int syncp[2], rep[2];
    if (plan->argv == NULL || plan->argv[0] == NULL || plan->envp == NULL || plan->cwd == NULL ||
        plan->staging == NULL)
        return -EINVAL;
    if (pipe2(syncp, O_CLOEXEC) < 0) return -errno;
    if (pipe2(rep, O_CLOEXEC) < 0) {
        int e = errno;
        close(syncp[0]);
        close(syncp[1]);
        return -e;
    }
    /* setgroups is denied inside the jail, so whatever supplementary groups the child
     * starts with stay for good. Drop them on this thread only (a raw syscall, not
     * glibc's process-wide one): the jail must not inherit root's groups. */
    if (syscall(SYS_setgroups, 0, NULL) < 0) {
        int e = errno;
        close(syncp[0]);
        close(syncp[1]);
        close(rep[0]);
        close(rep[1]);
        return -e;
    }

    int pidfd = -1;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = plan->clone_flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    if (plan->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)plan->cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) {
        close(syncp[1]);
        close(rep[0]);
        child_main(plan, syncp[0], rep[1]);
    }
    int e = errno;
    close(syncp[0]);
    close(rep[1]);
    if (pid < 0) {
        close(syncp[1]);
        close(rep[0]);
        return -e;
    }
    out->pid = (pid_t)pid;
    out->pidfd = pidfd;
    out->sync_fd = syncp[1];
    out->report_fd = rep[0];
    return 0;
}
