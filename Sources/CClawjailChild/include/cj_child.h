/*
 * cj_child.h: the flat launch plan and the code that runs between clone3 and execve
 * (child.c), and the jail's init (init.c, init_image.c). The parent-side builders of the
 * plan and the syscall shims are in CClawjailShims.
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
    int pass_fd;                  /* >= 0: installed as the command's fd 3 (a VM agent's tap); -1: none */
    const char *cwd;
    const char **argv;            /* NULL terminated, in the arena */
    const char **envp;            /* NULL terminated, in the arena */
    const char *path_search;      /* PATH used to find argv[0] when it has no '/' */
    int loopback_up;
    int no_new_privs;             /* always 1 in the product; a knob only for tests of the knob */
    int trace;                    /* CLAWJAIL_TRACE: timed setup steps on stderr */
    int cap_last_cap;             /* /proc/sys/kernel/cap_last_cap: the bounding set is dropped up to it */
    uint64_t keep_caps;           /* capabilities the command keeps (ambient), 1 << CAP_x; 0 for every jail
                                     but a VM agent's VMM jail, whose file servers need a few */
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
#define CJ_INIT_PROTOCOL "cj-init-2"

/* The jail's init image: a sealed, CLOEXEC memfd holding a minimal static ELF made of
 * the cj_init section (init.c). Returns the fd, or -errno (-ENOSYS on an architecture
 * without the image); then jails keep the in-process init. */
int cj_init_image_fd(void);
/* A sealed, CLOEXEC memfd holding `len` bytes of BPF for the exec'd init; or -errno. */
int cj_bpf_memfd(const void *bpf, size_t len);

/* mount_setattr(2), which glibc 2.36 lacks: async-signal-safe, used by the child and,
 * through ClawjailSystem, by the parent. Returns the raw result, -1 and errno on error. */
int cj_sys_mount_setattr(int dfd, const char *path, unsigned int flags, uint64_t attr_set,
                         uint64_t attr_clr, uint64_t propagation);

/* clone3 the jail. Returns 0, or -errno with nothing left behind. */
int cj_spawn(const struct cj_plan *plan, struct cj_spawn_result *out);

#ifdef __cplusplus
}
#endif

#endif
