// The kernel's floor for one jailed command: what the same isolation costs with no
// supervisor at all, so that `scripts/bench startup` can say how much of clawjail's
// time is clawjail's and how much is the kernel's.
//
//   floor LEVEL WORKSPACE CMD [ARG...]
//
// LEVEL is cumulative:
//   ns      clone3 into a new user, mount, pid, net, ipc, uts and cgroup namespace (the
//           set every clawjail jail gets), the parent writes the id maps (root inside,
//           an unprivileged range outside, setgroups deny), the child execs CMD.
//   cgroup  ns, plus a fresh cgroup per run with a memory, a pids and a one-core cpu
//           limit (clawjail's defaults for a tool run have all three), in every
//           hierarchy clawjail uses (v1: memory, pids, cpu, freezer; v2: one directory
//           with those controllers), joined before exec and removed after.
//   mounts  cgroup, plus the root bwrap gets in the startup benchmark: a tmpfs root,
//           /usr read-only, the /bin /lib /lib64 /sbin links, /proc, a /dev of six device
//           binds plus devpts and shm, a tmpfs /tmp, the workspace, pivot_root.
//
// With FLOOR_BPF=FILE in the environment, the child also attaches that compiled filter
// (raw struct sock_filter array, as bwrap --seccomp takes it) just before exec.
//
// It checks nothing and records nothing: it is a measuring stick, not a sandbox. Everything it makes is named cjfloor-<pid> and removed before it
// exits, also when CMD fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUTSIDE_ID 3999000000u

static volatile pid_t jail_pid;

// SIGTERM or SIGINT ends the jail (its init, so the whole pid namespace) and then the
// parent's own wait returns and removes the cgroups, as a supervisor would.
static void end_jail(int sig) {
  (void)sig;
  if (jail_pid > 0) kill(jail_pid, SIGKILL);
}

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) die(path);
  close(fd);
}

// ---- cgroups --------------------------------------------------------------------------

static const char *v1_controllers[] = {"memory", "pids", "cpu", "freezer"};
static char cgroup_dirs[4][128];
static int cgroup_count;

static int is_v2(void) {
  return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

// The same limits on both versions: 512 MiB, 256 pids, one core.
static void set_limit(int dir, const char *file, const char *value) {
  char path[240];
  snprintf(path, sizeof path, "%s/%s", cgroup_dirs[dir], file);
  write_file(path, value);
}

static void cgroups_create(void) {
  if (is_v2()) {
    // Its own parent gets the controllers for its children (the root's are the
    // machine's to set). clawjail does the same once, so neither counts it per run.
    mkdir("/sys/fs/cgroup/cjfloor", 0755);
    int fd = open("/sys/fs/cgroup/cjfloor/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { (void)!write(fd, "+memory +pids +cpu", 18); close(fd); }
    snprintf(cgroup_dirs[0], sizeof cgroup_dirs[0], "/sys/fs/cgroup/cjfloor/cjfloor-%d", getpid());
    if (mkdir(cgroup_dirs[0], 0755) < 0) die(cgroup_dirs[0]);
    cgroup_count = 1;
    set_limit(0, "memory.max", "536870912");
    set_limit(0, "pids.max", "256");
    set_limit(0, "cpu.max", "100000 100000");
    return;
  }
  for (int i = 0; i < 4; i++) {
    char parent[96];
    snprintf(parent, sizeof parent, "/sys/fs/cgroup/%s/cjfloor", v1_controllers[i]);
    if (mkdir(parent, 0755) < 0 && errno != EEXIST) die(parent);
    snprintf(cgroup_dirs[i], sizeof cgroup_dirs[i], "%s/cjfloor-%d", parent, getpid());
    if (mkdir(cgroup_dirs[i], 0755) < 0) die(cgroup_dirs[i]);
    cgroup_count = i + 1;
  }
  set_limit(0, "memory.limit_in_bytes", "536870912");
  set_limit(1, "pids.max", "256");
  set_limit(2, "cpu.cfs_quota_us", "100000");
}

static void cgroups_join(pid_t pid) {
  char text[32], path[640];
  snprintf(text, sizeof text, "%d", pid);
  for (int i = 0; i < cgroup_count; i++) {
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_dirs[i]);
    write_file(path, text);
  }
}

static void cgroups_remove(void) {
  for (int i = 0; i < cgroup_count; i++) rmdir(cgroup_dirs[i]);
}

// ---- the child ------------------------------------------------------------------------

static void bind(const char *src, const char *dst, unsigned long extra) {
  if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) die(dst);
  if (extra && mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | extra, NULL) < 0) die(dst);
}

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) die(path);
  close(fd);
}

// The workspace, cloned by the parent as a detached mount (open_tree), as clawjail
// does: the child's root maps to an unprivileged uid, which may not search the way
// there (mktemp -d makes 0700 directories), and the new root's tmpfs goes over /tmp,
// where the workspace may be.
static int ws = -1;

static void build_root(void) {
  if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) < 0) die("make / private");
  const char *root = "/tmp";  // any directory: the tmpfs is mounted over it here only
  if (mount("tmpfs", root, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755") < 0) die("tmpfs root");
  if (chdir(root) < 0) die("chdir root");
  mkdir("usr", 0755);
  bind("/usr", "usr", MS_RDONLY | MS_NOSUID | MS_NODEV);
  if (symlink("usr/bin", "bin") || symlink("usr/lib", "lib") || symlink("usr/lib64", "lib64") ||
      symlink("usr/sbin", "sbin"))
    die("symlink");
  mkdir("proc", 0755);
  if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("proc");
  mkdir("dev", 0755);
  if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID, "mode=0755") < 0) die("dev");
  static const char *devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
  for (int i = 0; i < 6; i++) {
    char src[64], dst[64];
    snprintf(src, sizeof src, "/dev/%s", devices[i]);
    snprintf(dst, sizeof dst, "dev/%s", devices[i]);
    touch(dst);
    bind(src, dst, 0);
  }
  mkdir("dev/pts", 0755);
  if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") < 0)
    die("devpts");
  if (symlink("pts/ptmx", "dev/ptmx")) die("ptmx");
  mkdir("dev/shm", 01777);
  if (mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, NULL) < 0) die("shm");
  mkdir("tmp", 01777);
  if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, NULL) < 0) die("tmp");
  mkdir("workspace", 0755);
  if (syscall(SYS_move_mount, ws, "", AT_FDCWD, "workspace", MOVE_MOUNT_F_EMPTY_PATH) < 0) die("workspace");
  mkdir("oldroot", 0755);
  if (syscall(SYS_pivot_root, ".", "oldroot") < 0) die("pivot_root");
  if (umount2("/oldroot", MNT_DETACH) < 0) die("umount old root");
  rmdir("/oldroot");
  if (chdir("/workspace") < 0) die("chdir /workspace");
}

// The filter is read by the parent before clone, so the child only attaches it.
static struct sock_fprog filter;

static void filter_read(const char *path) {
  static struct sock_filter insns[BPF_MAXINSNS];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  ssize_t n = read(fd, insns, sizeof insns);
  if (n <= 0 || n % sizeof insns[0]) die(path);
  close(fd);
  filter.len = (unsigned short)(n / sizeof insns[0]);
  filter.filter = insns;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: floor ns|cgroup|mounts WORKSPACE CMD [ARG...]\n");
    return 64;
  }
  int level = strcmp(argv[1], "ns") == 0 ? 0 : strcmp(argv[1], "cgroup") == 0 ? 1 : 2;
  const char *workspace = argv[2];
  char **cmd = argv + 3;

  const char *bpf = getenv("FLOOR_BPF");
  if (bpf && *bpf) filter_read(bpf);
  if (level >= 2 &&
      (ws = (int)syscall(SYS_open_tree, AT_FDCWD, workspace, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0)
    die(workspace);
  if (level >= 1) cgroups_create();
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) < 0) die("pipe");

  struct clone_args args = {
      .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
               CLONE_NEWUTS | CLONE_NEWCGROUP,
      .exit_signal = SIGCHLD,
  };
  struct sigaction ending = {.sa_handler = end_jail};
  sigaction(SIGTERM, &ending, NULL);
  sigaction(SIGINT, &ending, NULL);
  pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) die("clone3");
  if (pid == 0) {
    char byte;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // the jail dies with its parent, as with bwrap
    close(gate[1]);
    if (read(gate[0], &byte, 1) != 1) _exit(125);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root of the namespace");
    if (level >= 2) build_root();
    if (filter.len && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                       syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) < 0))
      die("seccomp");
    execvp(cmd[0], cmd);
    _exit(127);
  }
  jail_pid = pid;
  close(gate[0]);
  char path[64], map[64];
  snprintf(map, sizeof map, "0 %u 65536\n", OUTSIDE_ID);
  snprintf(path, sizeof path, "/proc/%d/setgroups", pid);
  write_file(path, "deny");
  snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
  write_file(path, map);
  snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
  write_file(path, map);
  if (level >= 1) cgroups_join(pid);
  if (write(gate[1], "x", 1) != 1) die("release the child");
  close(gate[1]);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (level >= 1) cgroups_remove();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
