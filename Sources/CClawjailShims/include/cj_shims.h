/*
 * cj_shims.h: parent-side C for the supervisor, apart from the code that runs in the
 * jail's child (CClawjailChild): the launch plan's builders (plan_arena.c), syscall
 * shims and memory hand-back (syscalls.c), and the egress proxy's kernel-side tunnels
 * (tunnel.c). Swift reaches them through ClawjailSystem.
 */
#ifndef CJ_SHIMS_H
#define CJ_SHIMS_H

#include "cj_child.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* Small syscall shims that glibc 2.36 lacks. Each returns the raw result, -1 and errno on error. */
int cj_sys_open_tree(int dfd, const char *path, unsigned int flags);
int cj_sys_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int cj_sys_pidfd_open(pid_t pid, unsigned int flags);
int cj_sys_pidfd_send_signal(int pidfd, int sig);
int cj_sys_pidfd_getfd(int pidfd, int targetfd);
int cj_sys_close_range(unsigned int first, unsigned int last, unsigned int flags);
int cj_sys_pipe2(int fds[2], int flags);
int cj_sys_getrandom(void *buf, size_t len);
/* The micro-VM guest's init: load a kernel module from an fd, and power the machine off
 * (reboot(RB_POWER_OFF); returns only on failure). */
int cj_sys_finit_module(int fd, const char *params, int flags);
int cj_sys_power_off(void);
/* A child process (the guest's sessions, the KVM probe's qemu): fork, then in the child only
 * async-signal-safe calls (a new session, no supplementary groups, gid and uid, cwd,
 * stdio from fds[0..2], signals unblocked and default, execve). Returns the pid, or
 * -errno of the step that failed (the child reports it through a CLOEXEC pipe). */
pid_t cj_spawn_process(const char *path, char *const argv[], char *const envp[], const char *cwd,
                     uint32_t uid, uint32_t gid, const int fds[3]);
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
