/* sysprobe: calls every syscall of clawjail's seccomp deny list raw, with harmless
 * bad arguments, and prints one line per check:
 *
 *     NAME VERDICT DETAIL
 *
 *   denied  ERRNO     the call failed with the filter's errno (--errno, default
 *                     EPERM; ENOSYS for clone3)
 *   allowed ERRNO|ok  it reached the kernel: failed some other way, or succeeded
 *   killed  SIGNAL    the check ran in a child, and the child died of SIGNAL
 *                     (a bad-arch call killed by the filter: SIGSYS)
 *   status  VALUE     facts from /proc/self/status (seccomp mode, no_new_privs)
 *
 * Every argument is chosen so that the call is harmless even with no filter and as
 * root: bad pointers and fds, invalid flags, paths that do not exist. A call that
 * could change process state (clone, unshare, personality, the i386 and x32 ABIs)
 * runs in a forked child that exits at once. The kernel returns EPERM by itself for
 * some calls when the caller lacks a capability; compare with an unfiltered run as
 * root to see that each check can fail.
 *
 * Build: gcc -O2 -static -o sysprobe probes/sysprobe.c   (static: runs in any rootfs)
 * Usage: sysprobe [--errno ENAME] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#define X32_BIT 0x40000000L
#define BAD ((long)1) /* a pointer that always faults */

static int deny_errno = EPERM;

static const char *errno_name(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOKEY: return "ENOKEY";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

static int errno_from_name(const char *s) {
    for (int e = 0; e < 200; e++)
        if (strcmp(errno_name(e), s) == 0) return e;
    return -1;
}

static const char *signal_name(int s) {
    switch (s) {
    case SIGSYS: return "SIGSYS";
    case SIGSEGV: return "SIGSEGV";
    case SIGKILL: return "SIGKILL";
    case SIGILL: return "SIGILL";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "signal%d", s);
        return buf;
    }
    }
}

static void line(const char *name, const char *verdict, const char *detail) {
    printf("%s %s %s\n", name, verdict, detail);
    fflush(stdout);
}

/* ret/err of a raw call → a line. expect_errno is what the filter returns. */
static void verdict(const char *name, long ret, int err, int expect_errno) {
    if (ret >= 0) {
        line(name, "allowed", "ok");
    } else if (err == expect_errno) {
        line(name, "denied", errno_name(err));
    } else {
        line(name, "allowed", errno_name(err));
    }
}

#define CHECK(name, ...)                                    \
    do {                                                    \
        errno = 0;                                          \
        long r_ = syscall(__VA_ARGS__);                     \
        int e_ = errno;                                     \
        if (r_ >= 0 && strncmp(name, "socket", 6) == 0)     \
            close((int)r_);                                 \
        verdict(name, r_, e_, deny_errno);                  \
    } while (0)

/* Runs fn in a child; the child's exit code is 0 for success or the errno. */
static void in_child(const char *name, long (*fn)(long), long arg, int expect_errno) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        line(name, "error", errno_name(errno));
        return;
    }
    if (pid == 0) {
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        errno = 0;
        long r = fn(arg);
        _exit(r >= 0 ? 0 : (errno & 0xff));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(status)) {
        line(name, "killed", signal_name(WTERMSIG(status)));
    } else {
        int code = WEXITSTATUS(status);
        verdict(name, code == 0 ? 0 : -1, code, expect_errno);
    }
}

/* clone with namespace flags. If it ever succeeds, the new child exits at once. */
static long do_clone(long flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) {
        int st;
        waitpid((pid_t)r, &st, 0);
    }
    return r;
}

static long do_unshare(long flags) { return syscall(SYS_unshare, flags); }
static long do_personality(long persona) { return syscall(SYS_personality, persona); }

/* i386 getpid (20) through int $0x80: seccomp sees AUDIT_ARCH_I386. */
static long do_int80(long unused) {
    (void)unused;
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "rcx", "r11");
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* x32 getpid: the x86_64 number with bit 30 set. */
static long do_x32(long unused) {
    (void)unused;
    return syscall(X32_BIT | SYS_getpid);
}

static void proc_status(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        line("status", "seccomp", "unknown");
        return;
    }
    char buf[256];
    while (fgets(buf, sizeof buf, f)) {
        char *v;
        if (strncmp(buf, "Seccomp:", 8) == 0) {
            for (v = buf + 8; *v == ' ' || *v == '\t'; v++) {}
            v[strcspn(v, "\n")] = 0;
            line("status", "seccomp", v);
        } else if (strncmp(buf, "NoNewPrivs:", 11) == 0) {
            for (v = buf + 11; *v == ' ' || *v == '\t'; v++) {}
            v[strcspn(v, "\n")] = 0;
            line("status", "no_new_privs", v);
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--errno") == 0 && i + 1 < argc) {
            deny_errno = errno_from_name(argv[++i]);
            if (deny_errno <= 0) {
                fprintf(stderr, "sysprobe: unknown errno %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: sysprobe [--errno ENAME]\n");
            return 2;
        }
    }
    proc_status();

    /* Allowed calls that fail harmlessly: the filter lets ordinary work through. */
    CHECK("read", SYS_read, -1, 0, 0);
    CHECK("write", SYS_write, -1, 0, 0);
    CHECK("openat", SYS_openat, AT_FDCWD, BAD, O_RDONLY);
    CHECK("fstat", SYS_fstat, -1, 0);
    CHECK("getpid", SYS_getpid);
    CHECK("ioctl_fionread", SYS_ioctl, -1, FIONREAD, 0);
    CHECK("ioctl_tcgets", SYS_ioctl, -1, TCGETS, 0);
    CHECK("socket_unix", SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK("socket_inet_stream", SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK("socket_inet6_dgram", SYS_socket, AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK("socket_netlink_route", SYS_socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);
    CHECK("personality_query", SYS_personality, 0xffffffffL);
    in_child("personality_linux", do_personality, 0 /* PER_LINUX */, deny_errno);
    in_child("clone_plain", do_clone, 0, deny_errno);
    CHECK("syncfs_noop", SYS_syncfs, -1);
    /* Everyday calls of make, Node, the JVM and Chromium, allowed by every shipped
     * profile: without capabilities in the jail's user namespace they can only keep or
     * drop what the process already has. */
    CHECK("setresuid_same", SYS_setresuid, -1L, -1L, -1L); /* -1 keeps each id: ok */
    CHECK("setresgid_same", SYS_setresgid, -1L, -1L, -1L);
    CHECK("capset", SYS_capset, 0L, 0L);                   /* EFAULT */
    CHECK("inotify_init1", SYS_inotify_init1, O_CLOEXEC);  /* a new fd: ok */
    CHECK("inotify_add_watch", SYS_inotify_add_watch, -1, BAD, 1 /* IN_ACCESS */); /* EBADF */
    CHECK("sched_setaffinity", SYS_sched_setaffinity, 0, 128, 0L); /* EFAULT */
    CHECK("sched_setattr", SYS_sched_setattr, 0, 0L, 0);   /* EINVAL */
    CHECK("landlock_create_ruleset", SYS_landlock_create_ruleset, 0L, 0L, 1L /* VERSION */);
    CHECK("seccomp_action_avail", SYS_seccomp, 2 /* SECCOMP_GET_ACTION_AVAIL */, 0, 0L); /* EFAULT */
    CHECK("personality_query_raw64", SYS_personality, -1L); /* the kernel reads 32 bits: the query */
    CHECK("semctl", SYS_semctl, -1, 0, 2 /* IPC_STAT */, 0L); /* EINVAL */
    /* Allowed by `agent`, refused by `tool` (a host-wide pool): EFAULT if it got through. */
    CHECK("io_setup", SYS_io_setup, 0, BAD);
    /* An unknown number: ENOSYS from the kernel, the filter's errno under an allowlist. */
    CHECK("syscall_1000", 1000L);

    /* Namespaces. */
    CHECK("unshare", SYS_unshare, -1L); /* invalid flags: EINVAL if it got through */
    in_child("unshare_newuser", do_unshare, CLONE_NEWUSER, deny_errno);
    CHECK("setns", SYS_setns, -1, 0);
    in_child("clone_newuser", do_clone, CLONE_NEWUSER, deny_errno);
    in_child("clone_newns", do_clone, CLONE_NEWNS, deny_errno);
    in_child("clone_newpid", do_clone, CLONE_NEWPID, deny_errno);
    in_child("clone_newnet", do_clone, CLONE_NEWNET, deny_errno);
    in_child("clone_newipc", do_clone, CLONE_NEWIPC, deny_errno);
    in_child("clone_newuts", do_clone, CLONE_NEWUTS, deny_errno);
    in_child("clone_newcgroup", do_clone, CLONE_NEWCGROUP, deny_errno);
    in_child("clone_newtime", do_clone, CLONE_NEWTIME, deny_errno); /* EINVAL in clone() if it got through */
    {
        errno = 0;
        long r = syscall(SYS_clone3, 0L, 0L); /* EINVAL (size 0) if it got through */
        verdict("clone3", r, errno, ENOSYS);
    }

    /* The mount API, old and new. */
    CHECK("mount", SYS_mount, BAD, BAD, BAD, 0, 0);
    CHECK("umount2", SYS_umount2, BAD, -1);
    CHECK("pivot_root", SYS_pivot_root, BAD, BAD);
    CHECK("chroot", SYS_chroot, BAD);
    CHECK("fsopen", SYS_fsopen, BAD, 0);
    CHECK("fsconfig", SYS_fsconfig, -1, -1, 0, 0, 0);
    CHECK("fsmount", SYS_fsmount, -1, 0, 0);
    CHECK("fspick", SYS_fspick, -1, BAD, 0);
    CHECK("open_tree", SYS_open_tree, -1, BAD, 0);
    CHECK("move_mount", SYS_move_mount, -1, BAD, -1, BAD, 0);
    CHECK("mount_setattr", SYS_mount_setattr, -1, BAD, 0, 0, 0);

    /* Kernel attack surface. */
    CHECK("bpf", SYS_bpf, -1, 0, 0);
    CHECK("perf_event_open", SYS_perf_event_open, 0, 0, -1, -1, 0);
    CHECK("userfaultfd", SYS_userfaultfd, -1);
    CHECK("io_uring_setup", SYS_io_uring_setup, 0, 0);
    CHECK("io_uring_enter", SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
    CHECK("io_uring_register", SYS_io_uring_register, -1, 0, 0, 0);

    /* Keyring. */
    CHECK("keyctl", SYS_keyctl, -1, 0, 0, 0, 0);
    CHECK("add_key", SYS_add_key, 0, 0, 0, 0, 0);
    CHECK("request_key", SYS_request_key, 0, 0, 0, 0);

    /* Other processes' memory and fds. */
    CHECK("ptrace", SYS_ptrace, -1, -1, 0, 0);
    CHECK("process_vm_readv", SYS_process_vm_readv, 0, 0, 0, 0, 0, 1 /* bad flags */);
    CHECK("process_vm_writev", SYS_process_vm_writev, 0, 0, 0, 0, 0, 1);
    CHECK("process_madvise", SYS_process_madvise, -1, 0, 0, 0, 0);
    CHECK("pidfd_getfd", SYS_pidfd_getfd, -1, -1, 0);
    CHECK("kcmp", SYS_kcmp, getpid(), getpid(), -1, 0, 0);

    /* Modules, kexec, reboot, swap, accounting, quotas, kernel log, handles, ports. */
    CHECK("init_module", SYS_init_module, 0, 0, 0);
    CHECK("finit_module", SYS_finit_module, -1, 0, 0);
    CHECK("delete_module", SYS_delete_module, BAD, 0);
    CHECK("kexec_load", SYS_kexec_load, 0, 0, 0, -1L);
    CHECK("kexec_file_load", SYS_kexec_file_load, -1, -1, 0, 0, -1L);
    CHECK("reboot", SYS_reboot, 0, 0, 0, 0); /* bad magic: EINVAL for root */
    CHECK("swapon", SYS_swapon, BAD, 0);
    CHECK("swapoff", SYS_swapoff, BAD);
    CHECK("acct", SYS_acct, BAD); /* never NULL: that would switch accounting off */
    CHECK("quotactl", SYS_quotactl, -1, 0, 0, 0);
    CHECK("quotactl_fd", SYS_quotactl_fd, -1, 0, 0, 0);
    CHECK("syslog", SYS_syslog, -1, 0, 0);
    CHECK("open_by_handle_at", SYS_open_by_handle_at, -1, 0, 0);
    CHECK("name_to_handle_at", SYS_name_to_handle_at, -1, BAD, 0, 0, 0);
    CHECK("iopl", SYS_iopl, 4); /* level > 3: EINVAL */
    CHECK("ioperm", SYS_ioperm, 0xffffffffL, 1, 1);
    CHECK("sethostname", SYS_sethostname, BAD, 1);
    CHECK("setdomainname", SYS_setdomainname, BAD, 1);

    /* Setting clocks. */
    CHECK("settimeofday", SYS_settimeofday, BAD, 0);
    CHECK("clock_settime", SYS_clock_settime, CLOCK_REALTIME, BAD);
    CHECK("clock_adjtime", SYS_clock_adjtime, CLOCK_REALTIME, BAD);
    CHECK("adjtimex", SYS_adjtimex, BAD);

    /* personality: only PER_LINUX, PER_LINUX32 and the query. */
    in_child("personality_addr_no_randomize", do_personality, 0x0040000, deny_errno);
    in_child("personality_read_implies_exec", do_personality, 0x0400000, deny_errno);
    in_child("personality_uname26", do_personality, 0x0020000, deny_errno);

    /* Terminal injection, also with high bits set above the 32-bit command. */
    CHECK("ioctl_tiocsti", SYS_ioctl, -1, TIOCSTI, 0);
    CHECK("ioctl_tiocsti_highbits", SYS_ioctl, -1, 0x100000000L | TIOCSTI, 0);
    CHECK("ioctl_tioclinux", SYS_ioctl, -1, TIOCLINUX, 0);
    CHECK("ioctl_tioclinux_highbits", SYS_ioctl, -1, 0xdead00000000L | TIOCLINUX, 0);

    /* Socket families and raw sockets. */
    CHECK("socket_packet", SYS_socket, AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    CHECK("socket_alg", SYS_socket, AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CHECK("socket_vsock", SYS_socket, AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK("socket_netlink_audit", SYS_socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 9 /* NETLINK_AUDIT */);
    CHECK("socket_inet_raw", SYS_socket, AF_INET, SOCK_RAW | SOCK_CLOEXEC, 1 /* IPPROTO_ICMP */);
    CHECK("socket_inet_highbits", SYS_socket, 0x100000000L | AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    /* Other ABIs: the filter kills the caller (SIGSYS). */
    in_child("i386_int80_getpid", do_int80, 0, deny_errno);
    in_child("x32_getpid", do_x32, 0, deny_errno);
    return 0;
}
