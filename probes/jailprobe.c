/*
 * jailprobe: asks the kernel questions from inside a jail and prints the answers, one
 * "check result" line per question, for the privileged tests to assert on.
 *
 * Every probe is harmless if the jail is broken: writes put back the value that is
 * already there, paths that should not exist are made up, nothing is destroyed.
 * Built static (gcc -O2 -static) so it runs in any jail rootfs.
 *
 * Usage: jailprobe CHECK [ARG...] [-- CHECK [ARG...]]...
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENOTTY: return "ENOTTY";
    case ENOSYS: return "ENOSYS";
    case ELOOP: return "ELOOP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENETUNREACH: return "ENETUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EOVERFLOW: return "EOVERFLOW";
    case ENXIO: return "ENXIO";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

static void result(const char *check, const char *arg, int err) {
    printf("%s %s %s\n", check, arg ? arg : "-", ename(err));
}

/* Writes back what the file already holds (never changes anything if it succeeds). */
static int write_back(const char *path) {
    char buf[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n = 0;
    if (fd >= 0) {
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    if (n < 0) n = 0;
    fd = open(path, O_WRONLY);
    if (fd < 0) return errno;
    ssize_t w = write(fd, buf, (size_t)n);
    int e = w < 0 ? errno : 0;
    close(fd);
    return e;
}

static int read_status_line(const char *key, char *out, size_t len) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[512];
    size_t klen = strlen(key);
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *v = line + klen + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, len, "%s", v);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int run_check(int argc, char **argv) {
    const char *c = argv[0];
    const char *a = argc > 1 ? argv[1] : NULL;

    if (!strcmp(c, "fds")) {
        /* Every open fd, except the one opendir itself uses. */
        DIR *d = opendir("/proc/self/fd");
        if (!d) { result("fds", NULL, errno); return 0; }
        int self = dirfd(d);
        struct dirent *e;
        printf("fds");
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (atoi(e->d_name) == self) continue;
            printf(" %s", e->d_name);
        }
        printf("\n");
        closedir(d);
    } else if (!strcmp(c, "status")) {
        /* status KEY: a line of /proc/self/status */
        char v[256] = "";
        if (read_status_line(a, v, sizeof v) < 0) strcpy(v, "missing");
        printf("status %s %s\n", a, v);
    } else if (!strcmp(c, "ids")) {
        printf("ids uid=%d euid=%d gid=%d egid=%d\n", getuid(), geteuid(), getgid(), getegid());
    } else if (!strcmp(c, "write")) {
        /* write PATH: create/append a file; reports the errno */
        int fd = open(a, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int e = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        result("write", a, e);
    } else if (!strcmp(c, "writeback")) {
        result("writeback", a, write_back(a));
    } else if (!strcmp(c, "read")) {
        /* read PATH: bytes readable (or the errno) */
        int fd = open(a, O_RDONLY);
        if (fd < 0) { result("read", a, errno); return 0; }
        char buf[4096];
        ssize_t total = 0, n;
        while ((n = read(fd, buf, sizeof buf)) > 0 && total < 1 << 20) total += n;
        int e = n < 0 ? errno : 0;
        close(fd);
        if (e) result("read", a, e);
        else printf("read %s bytes=%zd\n", a, total);
    } else if (!strcmp(c, "exists")) {
        struct stat st;
        result("exists", a, lstat(a, &st) < 0 ? errno : 0);
    } else if (!strcmp(c, "remount")) {
        int r = mount(NULL, a, NULL, MS_REMOUNT | MS_BIND, NULL);
        result("remount", a, r < 0 ? errno : 0);
    } else if (!strcmp(c, "umount")) {
        int r = umount2(a, MNT_DETACH);
        result("umount", a, r < 0 ? errno : 0);
    } else if (!strcmp(c, "mknod")) {
        int r = mknod(a, S_IFCHR | 0600, makedev(1, 3));
        int e = r < 0 ? errno : 0;
        if (r == 0) unlink(a);
        result("mknod", a, e);
    } else if (!strcmp(c, "mkfifo")) {
        int r = mkfifo(a, 0600);
        int e = r < 0 ? errno : 0;
        if (r == 0) unlink(a);
        result("mkfifo", a, e);
    } else if (!strcmp(c, "setuid-file")) {
        /* setuid-file PATH: create a file, set mode 04755, report the mode that stuck */
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0755);
        if (fd < 0) { result("setuid-file", a, errno); return 0; }
        close(fd);
        int r = chmod(a, 04755);
        struct stat st;
        stat(a, &st);
        printf("setuid-file %s %s mode=%o\n", a, ename(r < 0 ? errno : 0), st.st_mode & 07777);
    } else if (!strcmp(c, "unix-connect")) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a);
        int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
        result("unix-connect", a, r < 0 ? errno : 0);
        close(s);
    } else if (!strcmp(c, "abstract-connect")) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        size_t l = strlen(a);
        memcpy(sa.sun_path + 1, a, l);
        int r = connect(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + l));
        result("abstract-connect", a, r < 0 ? errno : 0);
        close(s);
    } else if (!strcmp(c, "ns")) {
        const char *names[] = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"};
        printf("ns");
        for (int i = 0; i < 7; i++) {
            char p[64];
            struct stat st;
            snprintf(p, sizeof p, "/proc/self/ns/%s", names[i]);
            if (stat(p, &st) == 0) printf(" %s=%lu", names[i], (unsigned long)st.st_ino);
            else printf(" %s=?", names[i]);
        }
        printf("\n");
    } else if (!strcmp(c, "hostname")) {
        char h[256] = "";
        gethostname(h, sizeof h);
        printf("hostname %s\n", h);
    } else if (!strcmp(c, "sethostname")) {
        int r = sethostname(a, strlen(a));
        result("sethostname", a, r < 0 ? errno : 0);
    } else if (!strcmp(c, "unshare")) {
        /* unshare user|net|mnt: must not succeed */
        int flag = !strcmp(a, "user") ? CLONE_NEWUSER : !strcmp(a, "net") ? CLONE_NEWNET : CLONE_NEWNS;
        int r = unshare(flag);
        result("unshare", a, r < 0 ? errno : 0);
    } else if (!strcmp(c, "pids")) {
        /* the pids visible in /proc */
        DIR *d = opendir("/proc");
        struct dirent *e;
        printf("pids");
        while (d && (e = readdir(d)))
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9') printf(" %s", e->d_name);
        printf("\n");
        if (d) closedir(d);
    } else if (!strcmp(c, "kill-all")) {
        /* kill(-1, 0): which processes could we signal? Count them via /proc. */
        int r = kill(-1, 0);
        result("kill-all", NULL, r < 0 ? errno : 0);
    } else if (!strcmp(c, "tiocsti")) {
        char ch = ' ';
        int r = ioctl(0, TIOCSTI, &ch);
        result("tiocsti", NULL, r < 0 ? errno : 0);
    } else if (!strcmp(c, "session")) {
        printf("session sid=%d pid=%d pgid=%d tty=%s\n", getsid(0), getpid(), getpgrp(),
               isatty(0) ? "yes" : "no");
    } else if (!strcmp(c, "cwd")) {
        char buf[4096];
        printf("cwd %s\n", getcwd(buf, sizeof buf) ? buf : ename(errno));
    } else if (!strcmp(c, "env")) {
        extern char **environ;
        for (char **e = environ; *e; e++) printf("env %s\n", *e);
        printf("env-end\n");
    } else if (!strcmp(c, "stat")) {
        struct stat st;
        if (stat(a, &st) < 0) { result("stat", a, errno); return 0; }
        printf("stat %s uid=%d gid=%d mode=%o\n", a, st.st_uid, st.st_gid, st.st_mode & 07777);
    } else if (!strcmp(c, "statfs-flags")) {
        /* the mount flags of the mount a path is on, from /proc/self/mountinfo */
        FILE *f = fopen("/proc/self/mountinfo", "r");
        char line[4096], best[4096] = "", bestopts[512] = "";
        size_t bestlen = 0;
        while (f && fgets(line, sizeof line, f)) {
            char mp[4096], opts[512];
            if (sscanf(line, "%*s %*s %*s %*s %4095s %511s", mp, opts) != 2) continue;
            size_t l = strlen(mp);
            if (strncmp(a, mp, l) == 0 && (a[l] == 0 || a[l] == '/' || l == 1) && l >= bestlen) {
                bestlen = l;
                strcpy(best, mp);
                strcpy(bestopts, opts);
            }
        }
        if (f) fclose(f);
        printf("statfs-flags %s %s %s\n", a, best, bestopts);
    } else if (!strcmp(c, "sleep")) {
        sleep((unsigned)atoi(a));
        printf("sleep done\n");
    } else if (!strcmp(c, "daemon")) {
        /* daemon N: double-fork a setsid'd child that sleeps N seconds */
        pid_t p = fork();
        if (p == 0) {
            setsid();
            if (fork() == 0) {
                sleep((unsigned)atoi(a));
                _exit(0);
            }
            _exit(0);
        }
        waitpid(p, NULL, 0);
        printf("daemon started\n");
    } else if (!strcmp(c, "exit")) {
        fflush(stdout);
        _exit(atoi(a));
    } else if (!strcmp(c, "raise")) {
        fflush(stdout);
        signal(atoi(a), SIG_DFL);
        raise(atoi(a));
        pause();
    } else if (!strcmp(c, "trap")) {
        /* trap SIG: print when SIG arrives, then exit 0 */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, atoi(a));
        sigprocmask(SIG_BLOCK, &set, NULL);
        printf("trap ready\n");
        fflush(stdout);
        int s = 0;
        sigwait(&set, &s);
        printf("trap got %d\n", s);
        fflush(stdout);
        _exit(0);
    } else if (!strcmp(c, "ignore-term")) {
        signal(SIGTERM, SIG_IGN);
        printf("ignore-term ready\n");
        fflush(stdout);
        for (;;) pause();
    } else if (!strcmp(c, "forkbomb")) {
        /* forkbomb MAX: fork sleeping children until fork fails (or MAX), report how
         * many and the errno, then kill them. Bounded, so a broken jail cannot take
         * the host down with it. */
        int max = atoi(a), n = 0, err = 0;
        pid_t kids[4096];
        if (max > 4096) max = 4096;
        while (n < max) {
            pid_t p = fork();
            if (p < 0) { err = errno; break; }
            if (p == 0) { pause(); _exit(0); }
            kids[n++] = p;
        }
        printf("forkbomb forked=%d %s\n", n, ename(err));
        fflush(stdout);
        for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
        for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    } else if (!strcmp(c, "memhog") || !strcmp(c, "shmhog") || !strcmp(c, "memfdhog")) {
        /* *hog MB: allocate and touch MB megabytes of heap, of /dev/shm, or of a memfd,
         * printing progress every 16 MB. Stops at MB (bounded). */
        long mb = atol(a), done = 0;
        int fd = -1;
        if (!strcmp(c, "shmhog")) fd = open("/dev/shm/hog", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (!strcmp(c, "memfdhog")) fd = (int)syscall(SYS_memfd_create, "hog", 0);
        if (strcmp(c, "memhog") && fd < 0) { result(c, a, errno); return 0; }
        static char chunk[1 << 20];
        memset(chunk, 0x5a, sizeof chunk);
        for (; done < mb; done++) {
            if (fd >= 0) {
                if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) { result(c, a, errno); return 0; }
            } else {
                char *p = malloc(1 << 20);
                if (!p) { result(c, a, ENOMEM); return 0; }
                memset(p, (int)done, 1 << 20);
            }
            if (done % 16 == 0) { printf("%s progress %ld\n", c, done); fflush(stdout); }
        }
        printf("%s done %ld\n", c, done);
    } else if (!strcmp(c, "spin")) {
        /* spin MS: busy-loop for MS milliseconds of wall time, report CPU time used */
        struct timespec t0, t, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        long ms = atol(a);
        volatile unsigned long x = 0;
        for (;;) {
            for (int i = 0; i < 100000; i++) x += (unsigned long)i;
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= ms) break;
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        long cpu = (c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000;
        printf("spin wall_ms=%ld cpu_ms=%ld\n", ms, cpu);
    } else if (!strcmp(c, "say")) {
        printf("%s\n", a);
    } else {
        fprintf(stderr, "jailprobe: unknown check %s\n", c);
        return 2;
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    int start = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i <= argc; i++) {
        if (i == argc || !strcmp(argv[i], "--")) {
            if (i > start) {
                int r = run_check(i - start, argv + start);
                if (r) return r;
            }
            start = i + 1;
        }
    }
    return 0;
}
