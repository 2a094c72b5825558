/* libseccomp for Swift, plus the kernel's seccomp ABI where Swift cannot use the
 * C macros directly (SCMP_ACT_ERRNO, the SECCOMP_IOCTL_* request numbers). */
#ifndef CLAWJAIL_CSECCOMP_SHIM_H
#define CLAWJAIL_CSECCOMP_SHIM_H

#include <stdint.h>
#include <seccomp.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline uint32_t cj_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t cj_scmp_act_notify(void) { return SCMP_ACT_NOTIFY; }
static inline uint32_t cj_scmp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t cj_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t cj_scmp_arch_native(void) { return SCMP_ARCH_NATIVE; }
static inline uint32_t cj_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }

/* seccomp_rule_add_array takes the comparisons as an array; building the struct
 * here keeps the field layout (and the anonymous enum) on the C side. */
static inline struct scmp_arg_cmp cj_scmp_arg_cmp(unsigned int arg, int op, uint64_t datum_a, uint64_t datum_b) {
    struct scmp_arg_cmp c;
    c.arg = arg;
    c.op = (enum scmp_compare)op;
    c.datum_a = datum_a;
    c.datum_b = datum_b;
    return c;
}

/* The user-notification ABI (kernel >= 5.5 for FLAG_CONTINUE). */
static inline unsigned long cj_seccomp_ioctl_notif_recv(void) { return SECCOMP_IOCTL_NOTIF_RECV; }
static inline unsigned long cj_seccomp_ioctl_notif_send(void) { return SECCOMP_IOCTL_NOTIF_SEND; }
static inline unsigned long cj_seccomp_ioctl_notif_id_valid(void) { return SECCOMP_IOCTL_NOTIF_ID_VALID; }
static inline uint32_t cj_seccomp_user_notif_flag_continue(void) { return SECCOMP_USER_NOTIF_FLAG_CONTINUE; }

static inline long cj_seccomp_get_notif_sizes(struct seccomp_notif_sizes *sizes) {
    return syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, sizes);
}
static inline int cj_seccomp_ioctl_ptr(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

/* memfd_create, which Swift cannot reach through glibc's headers without _GNU_SOURCE
 * (nor through syscall(2), which is variadic). Eventfds and pidfds come from
 * ClawjailSystem. */
static inline int cj_seccomp_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

#endif
