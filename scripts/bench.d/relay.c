// A reference for the egress proxy: a TCP relay that does nothing but move bytes, in
// the kernel, with splice(2) through a pipe, as clawjail's proxy does once a tunnel is
// up. `scripts/bench proxy` sends curl through it to show what the extra TCP hop costs
// on this machine with no proxy logic, beside direct and clawjail's proxy. It is not a
// bound: a proxy could move bytes other ways (a BPF sockmap, for one).
//
//   relay LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT
//
// Each accepted connection gets an upstream connection and two threads, one per
// direction. No parsing, no policy, no audit: a measuring stick, not a proxy. It runs
// until killed; the bench kills it by pid.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in upstream;

struct direction {
  int from, to;
};

static void *pump(void *arg) {
  struct direction *d = arg;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) == 0) {
    fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
    for (;;) {
      ssize_t n = splice(d->from, NULL, pipefd[1], NULL, 1 << 20, SPLICE_F_MOVE);
      if (n <= 0) break;
      while (n > 0) {
        ssize_t m = splice(pipefd[0], NULL, d->to, NULL, (size_t)n, SPLICE_F_MOVE);
        if (m <= 0) { n = -1; break; }
        n -= m;
      }
      if (n < 0) break;
    }
    close(pipefd[0]);
    close(pipefd[1]);
  }
  shutdown(d->to, SHUT_WR);
  shutdown(d->from, SHUT_RD);
  return NULL;
}

static void *serve(void *arg) {
  int client = (int)(long)arg;
  int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (server >= 0 && connect(server, (struct sockaddr *)&upstream, sizeof upstream) == 0) {
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct direction up = {client, server}, down = {server, client};
    pthread_t t;
    if (pthread_create(&t, NULL, pump, &up) == 0) {
      pump(&down);
      pthread_join(t, NULL);
    }
  }
  if (server >= 0) close(server);
  close(client);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: relay LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT\n");
    return 64;
  }
  struct sockaddr_in here = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  upstream = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
  if (inet_pton(AF_INET, argv[1], &here.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &upstream.sin_addr) != 1) {
    fprintf(stderr, "relay: not IPv4 addresses: %s, %s\n", argv[1], argv[3]);
    return 64;
  }
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (listener < 0 || bind(listener, (struct sockaddr *)&here, sizeof here) < 0 || listen(listener, 128) < 0) {
    fprintf(stderr, "relay: listen on %s:%s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, serve, (void *)(long)client) != 0) {
      close(client);
      continue;
    }
    pthread_detach(t);
  }
}
