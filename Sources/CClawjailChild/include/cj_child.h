/*
 * cj_child.h: the flat launch plan and the code that runs between clone3 and execve.
 *
 * The Swift parent builds a `cj_plan` (every string copied into the plan's arena,
 * every mount source already opened as an fd), then calls cj_spawn(). From clone3
 * until execve the child runs only the code in child.c, which makes async-signal-safe
 * calls only: no malloc, no stdio, no locks. Failures come back to the parent as a
 * `cj_report` {stage, errno, op} over a CLOEXEC pipe.
 */
#ifndef CJ_CHILD_H
#define CJ_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Mount-tree operations, executed in order with the new root as the working directory.
 * Paths (`path`) are relative to the new root ("usr", "dev/null"). */
enum cj_op_kind {
    CJ_OP_MKDIR = 1,      /* mkdir -p path (mode) */
    CJ_OP_SYMLINK,        /* symlink arg -> path */
    CJ_OP_WRITE_FILE,     /* create path with content arg[0..arg_len) and mode */
    CJ_OP_ATTACH,         /* move_mount the detached tree `fd` onto path (created as dir, or file with CJ_F_FILE) */
    CJ_OP_BIND_HOST,      /* bind host path `arg` (resolved before pivot_root) onto path, then mount_setattr(mattr) unless 0 */
    CJ_OP_TMPFS,          /* mount tmpfs at path with options arg and MS_* flags mflags */
    CJ_OP_PROC,           /* mount a new procfs at path */
    CJ_OP_DEVPTS,         /* mount a new devpts instance at path */
    CJ_OP_MASK,           /* hide path: a file gets dev/null bound over it, a directory a read-only bind of arg (an empty dir) */
    CJ_OP_READONLY,       /* bind path onto itself and make it read-only */
    CJ_OP_WRITE_EXISTING, /* write arg into an existing file (a sysctl under proc/sys) */
    CJ_OP_WHITEOUT,       /* create path as an overlayfs whiteout (char device 0/0): hides it in the layer below */
    CJ_OP_OVERLAY,        /* mount a read-only overlayfs at path: options arg (lowerdir=...), MS_* flags mflags */
};

/* op flags */
#define CJ_F_FILE      0x1u   /* the mount point is a file, not a directory */
#define CJ_F_OPTIONAL  0x2u   /* ENOENT on the target (or host source) skips the op */
#define CJ_F_RECURSIVE 0x4u   /* recursive bind / setattr */
#define CJ_F_DIR       0x8u   /* BIND_HOST: the parent saw a directory (with CJ_F_FILE: a file), no stat needed */

struct cj_op {
    uint32_t kind;
    uint32_t flags;
    int32_t fd;
    uint32_t mode;
    uint64_t mflags;      /* MS_* for tmpfs */
    uint64_t mattr;       /* MOUNT_ATTR_* for setattr-style ops */
    const char *path;
    const char *arg;
    size_t arg_len;
};

struct cj_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

#define CJ_MAX_OPS 384
#define CJ_MAX_RLIMITS 16
#define CJ_MAX_FORWARD_SIGNALS 16

struct cj_arena_block;

struct cj_plan {
    uint64_t clone_flags;         /* CLONE_NEW* (CLONE_PIDFD is added by cj_spawn) */
    int cgroup_fd;                /* >= 0: CLONE_INTO_CGROUP this cgroup (v2) */
    int unshare_cgroupns;         /* unshare(CLONE_NEWCGROUP) after we were placed */
    /* cgroup v1: `tasks` files (opened by the parent, O_WRONLY) that the child writes "0"
     * to, moving itself. A thread moving itself skips the global threadgroup rwsem (and
     * its RCU grace period, ~10 ms here) that moving another process needs. */
    int cgroup_join_fds[8];
    int n_cgroup_join_fds;
    const char *staging;          /* absolute host dir: mount point for the new root in our mount ns */
    const char *root_options;     /* tmpfs options of the new root */
    int root_readonly;            /* remount the new root read-only after the ops */
    const char *hostname;
    uint32_t uid, gid;            /* ids inside the jail for the command */
    int stdio[3];                 /* fds to install as 0,1,2; -1 keeps the inherited one */
    const char *cwd;
    const char **argv;            /* NULL terminated, in the arena */
    const char **envp;            /* NULL terminated, in the arena */
    const char *path_search;      /* PATH used to find argv[0] when it has no '/' */
    int loopback_up;
    int no_new_privs;             /* always 1 in the product; a knob only for tests of the knob */
    int trace;                    /* CLAWJAIL_TRACE: timed setup steps on stderr */
    int cap_last_cap;             /* /proc/sys/kernel/cap_last_cap: the bounding set is dropped up to it */
    struct cj_rlimit rlimits[CJ_MAX_RLIMITS];
    int n_rlimits;
    int forward_signals[CJ_MAX_FORWARD_SIGNALS];
    int n_forward_signals;
    /* The init program (init.c): a memfd from cj_init_image_fd, which the child execs as
     * the jail's pid 1 once its setup is done; -1 keeps the in-process init. With it,
     * bpf_fd is a memfd holding the filter (cj_bpf_memfd) that the exec'd init loads. */
    int init_fd;
    int bpf_fd;
    const void *bpf;              /* struct sock_filter[], in the arena */
    uint32_t bpf_len;             /* number of instructions; 0 = no filter */
    uint32_t seccomp_flags;       /* SECCOMP_FILTER_FLAG_* */
    /* The supervisor's argv+environ area (from /proc/self/stat): the jail's init is a
     * copy of the supervisor, and /proc/1/cmdline must not show the host's command
     * line or environment inside the jail. Zeroed in the child. */
    uintptr_t scrub_start;
    size_t scrub_len;
    struct cj_op ops[CJ_MAX_OPS];
    int n_ops;
    struct cj_arena_block *arena; /* owned strings; freed by cj_plan_free */
};

/* Report messages from the child (and later the jail's init) to the parent. */
enum cj_report_type {
    CJ_REPORT_SETUP_FAILED = 1,   /* stage, err, op */
    CJ_REPORT_EXEC_FAILED = 2,    /* err */
    CJ_REPORT_STARTED = 3,        /* value = pid of the command inside the jail */
    CJ_REPORT_EXITED = 4,         /* value = wait status of the command */
    CJ_REPORT_LISTENER = 5,       /* value = seccomp listener fd number in the jail's init */
};

enum cj_stage {
    CJ_STAGE_NONE = 0,
    CJ_STAGE_SIGNALS,
    CJ_STAGE_PDEATHSIG,
    CJ_STAGE_SYNC,
    CJ_STAGE_SETID_ROOT,
    CJ_STAGE_CGROUPNS,
    CJ_STAGE_MOUNT_PRIVATE,
    CJ_STAGE_ROOT_TMPFS,
    CJ_STAGE_CHDIR_ROOT,
    CJ_STAGE_OP,
    CJ_STAGE_PIVOT_ROOT,
    CJ_STAGE_UMOUNT_OLD_ROOT,
    CJ_STAGE_ROOT_READONLY,
    CJ_STAGE_HOSTNAME,
    CJ_STAGE_LOOPBACK,
    CJ_STAGE_RLIMIT,
    CJ_STAGE_SETSID,
    CJ_STAGE_SECUREBITS,
    CJ_STAGE_CAPBSET,
    CJ_STAGE_SETGID,
    CJ_STAGE_SETUID,
    CJ_STAGE_CAPSET,
    CJ_STAGE_AMBIENT,
    CJ_STAGE_NO_NEW_PRIVS,
    CJ_STAGE_DUMPABLE,
    CJ_STAGE_SECCOMP,
    CJ_STAGE_FORK,
    CJ_STAGE_CHDIR_CWD,
    CJ_STAGE_STDIO,
    CJ_STAGE_CLOSE_FDS,
    CJ_STAGE_EXEC,
    CJ_STAGE_PARENT_GONE,
    CJ_STAGE_CGROUP_JOIN,
};

struct cj_report {
    int32_t type;
    int32_t stage;
    int32_t err;
    int32_t op;
    int32_t value;
};

struct cj_spawn_result {
    pid_t pid;        /* pid of the jail's init, in the supervisor's pid namespace */
    int pidfd;        /* CLONE_PIDFD */
    int sync_fd;      /* parent's write end: one byte releases the child; keep it open as a lifeline */
    int report_fd;    /* parent's read end of the report pipe */
};

/* The argv[1] of the exec'd init (init.c): the two halves must come from one build. */
#define CJ_INIT_PROTOCOL "cj-init-1"

/* The jail's init image: a sealed, CLOEXEC memfd holding a minimal static ELF made of
 * the cj_init section (init.c). Returns the fd, or -errno (-ENOSYS on an architecture
 * without the image); then jails keep the in-process init. */
int cj_init_image_fd(void);
/* A sealed, CLOEXEC memfd holding `len` bytes of BPF for the exec'd init; or -errno. */
int cj_bpf_memfd(const void *bpf, size_t len);

/* Parent side: building the plan (may allocate). */
struct cj_plan *cj_plan_new(void);
void cj_plan_free(struct cj_plan *plan);
const char *cj_plan_strdup(struct cj_plan *plan, const char *s);
const void *cj_plan_memdup(struct cj_plan *plan, const void *p, size_t len);
int cj_plan_set_argv(struct cj_plan *plan, const char *const *argv, int n);
int cj_plan_set_envp(struct cj_plan *plan, const char *const *envp, int n);
/* Returns the op index, or -1 when the op table is full. Strings are copied. */
int cj_plan_add_op(struct cj_plan *plan, uint32_t kind, uint32_t flags, int fd, uint32_t mode,
                   uint64_t mflags, uint64_t mattr, const char *path, const char *arg, size_t arg_len);
int cj_plan_add_rlimit(struct cj_plan *plan, int resource, uint64_t soft, uint64_t hard);

/* clone3 the jail. Returns 0, or -errno with nothing left behind. */
int cj_spawn(const struct cj_plan *plan, struct cj_spawn_result *out);

/* Small syscall shims that glibc 2.36 lacks. Each returns the raw result, -1 and errno on error. */
int cj_sys_open_tree(int dfd, const char *path, unsigned int flags);
int cj_sys_mount_setattr(int dfd, const char *path, unsigned int flags, uint64_t attr_set,
                         uint64_t attr_clr, uint64_t propagation);
int cj_sys_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int cj_sys_pidfd_open(pid_t pid, unsigned int flags);
int cj_sys_pidfd_send_signal(int pidfd, int sig);
int cj_sys_pidfd_getfd(int pidfd, int targetfd);
int cj_sys_close_range(unsigned int first, unsigned int last, unsigned int flags);
int cj_sys_pipe2(int fds[2], int flags);
int cj_sys_getrandom(void *buf, size_t len);
/* Constants Swift's Glibc module hides behind _GNU_SOURCE. */
uint64_t cj_jail_clone_flags(void);   /* CLONE_NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS */
int cj_rlimit_nproc(void);
/* A non-blocking, CLOEXEC signalfd for these signals; and one read from it: the signal
 * number, 0 when nothing is pending, -1 on error. */
int cj_sys_signalfd(const int *signals, int n);
int cj_sys_read_signal(int fd);
long cj_sys_getxattr(const char *path, const char *name, void *value, size_t size);
/* glibc's malloc_trim(0): free heap pages back to the kernel (parent only). */
int cj_malloc_trim(void);
/* After a launch (parent only, main thread, while no signal handler can run): hands
 * back the heap's free pages and the main thread's stack pages below the caller's
 * frame, which the launch's deep call chains dirtied and nothing reads again. A
 * supervisor keeps its memory for its jail's whole life, so these count per jail. */
void cj_release_launch_memory(void);
/* mallopt(M_ARENA_MAX, 1): helper threads share the main heap instead of each keeping
 * an arena for the supervisor's whole life. */
void cj_malloc_single_arena(void);
/* waitid(P_PIDFD): fills *status like waitpid's status word; returns 0, or -1 with errno. */
int cj_sys_wait_pidfd(int pidfd, int *status, int options);

/* The egress proxy's kernel-side tunnels (ClawjailSystem.Splice and .Epoll). */
/* splice(2) with no offsets and SPLICE_F_MOVE|SPLICE_F_NONBLOCK. */
long cj_sys_splice(int fd_in, int fd_out, size_t len);
/* A non-blocking, CLOEXEC pipe resized with F_SETPIPE_SZ (best effort); returns the
 * capacity in bytes, or -1 with errno (fds untouched). */
int cj_sys_splice_pipe(int fds[2], int size);
int cj_sys_epoll_create(void);
/* op: 0 add, 1 delete. events: the EPOLL* bits below. */
int cj_sys_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
struct cj_epoll_event { uint32_t events; uint64_t data; };
int cj_sys_epoll_wait(int epfd, struct cj_epoll_event *out, int max, int timeout_ms);
uint32_t cj_epoll_in(void);
uint32_t cj_epoll_out(void);
uint32_t cj_epoll_rdhup(void);
uint32_t cj_epoll_et(void);
/* A non-blocking, CLOEXEC eventfd. */
int cj_sys_eventfd(void);
/* Blocks SIGPIPE in the calling thread: a write to a reset peer fails with EPIPE. */
void cj_block_sigpipe(void);

#ifdef __cplusplus
}
#endif

#endif
