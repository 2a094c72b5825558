/* Shims for the egress proxy's kernel-side tunnels (ClawjailSystem.Splice, .Epoll).
 * Parent-side only: nothing here runs in the jail's child. */
#define _GNU_SOURCE
#include "cj_shims.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

long cj_sys_splice(int fd_in, int fd_out, size_t len) {
    return (long)splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int cj_sys_splice_pipe(int fds[2], int size) {
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    if (size > 0) (void)fcntl(fds[1], F_SETPIPE_SZ, size);
    int got = fcntl(fds[1], F_GETPIPE_SZ);
    return got > 0 ? got : 65536;
}

int cj_sys_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cj_sys_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

int cj_sys_epoll_wait(int epfd, struct cj_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        out[i].events = evs[i].events;
        out[i].data = evs[i].data.u64;
    }
    return n;
}

uint32_t cj_epoll_in(void) { return EPOLLIN; }
uint32_t cj_epoll_out(void) { return EPOLLOUT; }
uint32_t cj_epoll_rdhup(void) { return EPOLLRDHUP; }
uint32_t cj_epoll_et(void) { return EPOLLET; }

int cj_sys_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

void cj_block_sigpipe(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}
