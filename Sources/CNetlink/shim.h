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
#include <netlink/route/tc.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/act/mirred.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/veth.h>
#include <linux/sched.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/pkt_sched.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>

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

/* A micro-VM's NIC: a tap named `name` in the calling thread's netns; the fd, which
 * the VMM gets as its fd 3, keeps it alive (it goes away with the fd or the netns).
 * The fd, or -errno. */
static inline int cj_tap_open(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Moves link `ifindex` of the socket's netns into the netns `nsfd`. 0 or a libnl
 * error code. */
static inline int cj_nl_move_link(struct nl_sock *sk, int ifindex, int nsfd) {
    struct nl_msg *m = nlmsg_alloc_simple(RTM_NEWLINK, 0);
    if (m == NULL) return -NLE_NOMEM;
    struct ifinfomsg ifi;
    memset(&ifi, 0, sizeof ifi);
    ifi.ifi_family = AF_UNSPEC;
    ifi.ifi_index = ifindex;
    int err = nlmsg_append(m, &ifi, sizeof ifi, NLMSG_ALIGNTO);
    if (err == 0) err = nla_put_u32(m, IFLA_NET_NS_FD, (uint32_t)nsfd);
    if (err == 0) err = nl_send_auto(sk, m);
    nlmsg_free(m);
    if (err < 0) return err;
    return nl_wait_for_ack(sk);
}

/* Everything that arrives on link `from` leaves by link `to`: an ingress qdisc on
 * `from` with a match-all u32 filter whose mirred action redirects to `to`'s egress
 * (Kata's tap-to-veth model; this kernel has no matchall classifier). The socket acts
 * in its own netns. A libnl error code (negative) or 0. */
static inline int cj_tc_redirect_ingress(struct nl_sock *sk, int from, int to) {
    struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (q == NULL) return -NLE_NOMEM;
    rtnl_tc_set_ifindex(TC_CAST(q), from);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
    rtnl_tc_set_handle(TC_CAST(q), TC_H_MAKE(TC_H_INGRESS, 0));
    int err = rtnl_tc_set_kind(TC_CAST(q), "ingress");
    if (err == 0) err = rtnl_qdisc_add(sk, q, NLM_F_CREATE);
    rtnl_qdisc_put(q);
    if (err < 0) return err;

    struct rtnl_cls *c = rtnl_cls_alloc();
    struct rtnl_act *a = rtnl_act_alloc();
    if (c == NULL || a == NULL) {
        if (c) rtnl_cls_put(c);
        if (a) rtnl_act_put(a);
        return -NLE_NOMEM;
    }
    rtnl_tc_set_ifindex(TC_CAST(c), from);
    rtnl_tc_set_parent(TC_CAST(c), TC_H_MAKE(TC_H_INGRESS, 0));
    rtnl_cls_set_protocol(c, ETH_P_ALL);
    rtnl_cls_set_prio(c, 1);
    err = rtnl_tc_set_kind(TC_CAST(c), "u32");
    if (err == 0) err = rtnl_u32_add_key_uint32(c, 0, 0, 0, 0);
    /* Terminal: a match runs the action (tc sets it whenever a filter has one). */
    if (err == 0) err = rtnl_u32_set_cls_terminal(c);
    if (err == 0) err = rtnl_tc_set_kind(TC_CAST(a), "mirred");
    if (err == 0) {
        rtnl_mirred_set_action(a, TCA_EGRESS_REDIR);
        rtnl_mirred_set_policy(a, TC_ACT_STOLEN);
        rtnl_mirred_set_ifindex(a, (uint32_t)to);
        err = rtnl_u32_add_action(c, a);
    }
    if (err == 0) err = rtnl_cls_add(sk, c, NLM_F_CREATE);
    rtnl_act_put(a);
    rtnl_cls_put(c);
    return err;
}

#endif
