/* libnl-3 (socket, message and attribute API) and the rtnetlink ABI for Swift,
 * plus shims for what Swift cannot call: macros, variadic syscall(2), and glibc
 * functions hidden behind _GNU_SOURCE (unshare, setns). */
#ifndef CLAWJAIL_CNETLINK_SHIM_H
#define CLAWJAIL_CNETLINK_SHIM_H

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <net/if.h>

#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/veth.h>
#include <linux/sched.h>

/* Namespaces. Raw syscalls: glibc declares unshare/setns only with _GNU_SOURCE,
 * which the Swift Glibc module is not built with. Both act on the calling thread. */
static inline int cj_nl_unshare_net(void) {
    return (int)syscall(SYS_unshare, CLONE_NEWNET);
}
static inline int cj_nl_setns_net(int fd) {
    return (int)syscall(SYS_setns, fd, CLONE_NEWNET);
}

/* Kernel error messages in ACKs ("Nexthop device is not up"), and ACKs without
 * the echoed request, so an error reply stays small and its TLVs sit at a fixed
 * offset. Both are best effort: older kernels ignore them. */
static inline void cj_nl_enable_ext_ack(int fd) {
    int one = 1;
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
}

/* A receive timeout bounds every wait for an ACK. */
static inline int cj_nl_set_recv_timeout(int fd, long seconds) {
    struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Constants from macros and anonymous enums, typed the way the messages use them. */
static inline uint16_t cj_nlm_f_request(void) { return NLM_F_REQUEST; }
static inline uint16_t cj_nlm_f_ack(void) { return NLM_F_ACK; }
static inline uint16_t cj_nlm_f_create(void) { return NLM_F_CREATE; }
static inline uint16_t cj_nlm_f_excl(void) { return NLM_F_EXCL; }
static inline uint16_t cj_nlm_f_replace(void) { return NLM_F_REPLACE; }
static inline uint16_t cj_nlm_f_ack_tlvs(void) { return NLM_F_ACK_TLVS; }
static inline uint16_t cj_nlmsg_error(void) { return NLMSG_ERROR; }
static inline uint16_t cj_nlmsg_done(void) { return NLMSG_DONE; }
static inline uint16_t cj_nlmsgerr_attr_msg(void) { return NLMSGERR_ATTR_MSG; }
static inline uint32_t cj_iff_up(void) { return IFF_UP; }

#endif
