// A reference for the egress proxy, beside relay.c: a TCP relay whose bytes the
// kernel moves with a BPF sockmap (a stream verdict program redirects each skb from
// one socket's receive path into the other's send path). No pipe, no copy, no
// wake-up of the relay per packet: about the fastest a TCP-terminating relay can go.
//
// It is NOT safe, and that is the point of measuring it: the kernel puts no bound
// on a redirect queue. Behind a slow reader a fast sender's bytes pile up in kernel
// memory that no socket is charged for (the README's proxy section: a whole 1 GB
// file acknowledged to the origin while a 5 MB/s reader had 12.8 MB). clawjail's
// proxy cannot use it: bounding it needs either handing the bytes back to user
// space (then it copies, and is slower than splice) or taking the socket out of the
// map under load, which drops the skbs the kernel is handing to the verdict then.
//
//   sockmap-relay LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT
//
// One connection at a time (the bench's clients are sequential). Runs until killed.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static long bpf(int cmd, union bpf_attr *a) { return syscall(SYS_bpf, cmd, a, sizeof *a); }
#define I(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int map_update(int fd, void *k, void *v) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = fd;
  a.key = (uint64_t)(uintptr_t)k;
  a.value = (uint64_t)(uintptr_t)v;
  a.flags = BPF_ANY;
  return (int)bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static void map_delete(int fd, void *k) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = fd;
  a.key = (uint64_t)(uintptr_t)k;
  bpf(BPF_MAP_DELETE_ELEM, &a);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: sockmap-relay LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT\n");
    return 64;
  }
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_SOCKMAP;
  a.key_size = 4;
  a.value_size = 4;
  a.max_entries = 2;
  int socks = (int)bpf(BPF_MAP_CREATE, &a);
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_HASH;  // socket cookie -> the peer's slot
  a.key_size = 8;
  a.value_size = 4;
  a.max_entries = 2;
  int peers = (int)bpf(BPF_MAP_CREATE, &a);
  if (socks < 0 || peers < 0) {
    fprintf(stderr, "sockmap-relay: bpf map: %s\n", strerror(errno));
    return 1;
  }
  struct bpf_insn prog[] = {
      I(0xbf, 6, 1, 0, 0),                          // r6 = skb
      I(0x61, 7, 1, 0, 0),                          // r7 = skb->len
      I(0x15, 7, 0, 15, 0),                         // a bare FIN: drop (the peer's send would fail)
      I(0x85, 0, 0, 0, BPF_FUNC_get_socket_cookie),
      I(0x7b, 10, 0, -8, 0),
      I(0xbf, 2, 10, 0, 0), I(0x07, 2, 0, 0, -8),
      I(0x18, 1, BPF_PSEUDO_MAP_FD, 0, peers), I(0, 0, 0, 0, 0),
      I(0x85, 0, 0, 0, BPF_FUNC_map_lookup_elem),
      I(0x15, 0, 0, 9, 0),                          // not ours: pass
      I(0x61, 3, 0, 0, 0),                          // r3 = the peer's slot
      I(0xbf, 1, 6, 0, 0),
      I(0x18, 2, BPF_PSEUDO_MAP_FD, 0, socks), I(0, 0, 0, 0, 0),
      I(0xb7, 4, 0, 0, 0),
      I(0x85, 0, 0, 0, BPF_FUNC_sk_redirect_map),
      I(0x95, 0, 0, 0, 0),
      I(0xb7, 0, 0, 0, SK_DROP), I(0x95, 0, 0, 0, 0),
      I(0xb7, 0, 0, 0, SK_PASS), I(0x95, 0, 0, 0, 0),
  };
  static char log[1 << 16];
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB;
  a.insns = (uint64_t)(uintptr_t)prog;
  a.insn_cnt = sizeof prog / sizeof prog[0];
  a.license = (uint64_t)(uintptr_t)"GPL";
  a.log_buf = (uint64_t)(uintptr_t)log;
  a.log_size = sizeof log;
  a.log_level = 1;
  int verdict = (int)bpf(BPF_PROG_LOAD, &a);
  if (verdict < 0) {
    fprintf(stderr, "sockmap-relay: the kernel refused the program: %s\n%s\n", strerror(errno), log);
    return 1;
  }
  memset(&a, 0, sizeof a);
  a.target_fd = socks;
  a.attach_bpf_fd = verdict;
  a.attach_type = BPF_SK_SKB_STREAM_VERDICT;
  if (bpf(BPF_PROG_ATTACH, &a) < 0) {
    fprintf(stderr, "sockmap-relay: attach: %s\n", strerror(errno));
    return 1;
  }

  struct sockaddr_in here = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
  if (inet_pton(AF_INET, argv[1], &here.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &up.sin_addr) != 1) {
    fprintf(stderr, "sockmap-relay: not IPv4 addresses: %s, %s\n", argv[1], argv[3]);
    return 64;
  }
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l < 0 || bind(l, (struct sockaddr *)&here, sizeof here) < 0 || listen(l, 16) < 0) {
    fprintf(stderr, "sockmap-relay: listen on %s:%s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int fds[2] = {accept4(l, NULL, NULL, SOCK_CLOEXEC), socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (fds[0] < 0) continue;
    if (fds[1] < 0 || connect(fds[1], (struct sockaddr *)&up, sizeof up) != 0) {
      close(fds[0]);
      if (fds[1] >= 0) close(fds[1]);
      continue;
    }
    uint64_t cookies[2];
    for (uint32_t i = 0; i < 2; i++) {
      setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      socklen_t len = sizeof cookies[i];
      getsockopt(fds[i], SOL_SOCKET, SO_COOKIE, &cookies[i], &len);
      uint32_t peer = 1 - i;
      map_update(peers, &cookies[i], &peer);
    }
    for (uint32_t i = 0; i < 2; i++) {
      uint32_t fd = (uint32_t)fds[i];
      map_update(socks, &i, &fd);
    }
    // Bytes that arrived before a socket joined go through the verdict now.
    for (int i = 0; i < 2; i++) setsockopt(fds[i], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    struct pollfd p[2] = {{fds[0], POLLRDHUP, 0}, {fds[1], POLLRDHUP, 0}};
    int ended = 0;
    while (ended != 3 && poll(p, 2, 60000) > 0) {
      for (int i = 0; i < 2; i++) {
        if (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
          ended |= 1 << i;
          p[i].events = 0;
          usleep(1000);  // let the redirect queue drain: a measuring stick, not a proxy
          shutdown(fds[1 - i], SHUT_WR);
        }
      }
    }
    for (uint32_t i = 0; i < 2; i++) {
      map_delete(socks, &i);
      map_delete(peers, &cookies[i]);
      close(fds[i]);
    }
  }
}
