/* seccomp-load [--notify-fd N] FILTER.bpf CMD [ARGS...]
 *
 * Test helper: loads a raw BPF program (struct sock_filter[], as clawjail's compiler
 * writes it) with no_new_privs and seccomp(SECCOMP_SET_MODE_FILTER), then execs CMD.
 * No root needed. Core dumps are switched off first, so a filter that kills (bad
 * arch, kill mode) never writes a core through the host's core_pattern.
 *
 * --notify-fd N: load with SECCOMP_FILTER_FLAG_NEW_LISTENER and send the listener
 * over the Unix socket N (SCM_RIGHTS) before the exec, the way clawjail's runtime
 * takes it from a jail, so a test can run SeccompNotifier on it.
 * SECCOMP_LOAD_TIMING=1 in the environment prints the seccomp() call's duration.
 *
 * Build: gcc -O2 -static -o seccomp-load probes/seccomp-load.c
 * Exit: 125 usage, 126 load failed, 127 exec failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static int send_fd(int sock, int fd) {
    char dummy = 'L';
    struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    int notify_sock = -1;
    if (argc > 2 && strcmp(argv[1], "--notify-fd") == 0) {
        notify_sock = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: seccomp-load [--notify-fd N] FILTER.bpf CMD [ARGS...]\n");
        return 125;
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror(argv[1]); return 126; }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % 8 != 0 || st.st_size > 4096 * 8) {
        fprintf(stderr, "%s: not a BPF program (size %lld)\n", argv[1], (long long)st.st_size);
        return 126;
    }
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (prog == NULL) return 126;
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, (char *)prog + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { perror("read"); return 126; }
        got += (size_t)n;
    }
    close(fd);

    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { perror("PR_SET_NO_NEW_PRIVS"); return 126; }
    struct sock_fprog fprog = {.len = (unsigned short)(st.st_size / 8), .filter = prog};
    unsigned int flags = notify_sock >= 0 ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (listener < 0) {
        perror("seccomp(SECCOMP_SET_MODE_FILTER)");
        return 126;
    }
    if (getenv("SECCOMP_LOAD_TIMING") != NULL)
        fprintf(stderr, "seccomp-load: %u instructions attached in %ld ns\n", fprog.len,
                (long)((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec)));
    if (notify_sock >= 0) {
        if (send_fd(notify_sock, (int)listener) < 0) { perror("sending the listener"); return 126; }
        close((int)listener);
        close(notify_sock);
    }
    execv(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
