/*
 * The jail's init, as a program of its own.
 *
 * The clone3 child starts as a copy of the supervisor, a 120 MB static Swift binary,
 * and used to stay that way as the jail's pid 1: its page tables, the pages it had
 * dirtied, and a fork of that whole image for the command. Now, once the root tree is
 * built and the privileges are dropped, the child execs this code instead (cj_spawn's
 * execveat), and the jail's pid 1 is a process of two pages.
 *
 * This file is not linked into a program of its own: every function and constant here
 * lives in the section `cj_init`, and the supervisor copies that section into a memfd
 * behind a minimal ELF header (cj_init_image_fd in init_image.c). So the code must be
 * self-contained and position-independent:
 *  - no libc and no other function outside the section: raw system calls only, and
 *    every function carries CJI (the section; no builtins, so that clang turns no loop
 *    into a call to memcpy; no stack protector, which would read the TLS canary);
 *  - no string literals or other constants clang would put in .rodata: the few
 *    strings are in the section itself (the asm block below);
 *  - no switch statements (their jump tables live in .rodata);
 *  - x86-64 only; elsewhere cj_init_image_fd reports no image and the child keeps the
 *    in-process init of child.c.
 *
 * argv: [0] "clawjail-init", [1] the protocol tag (CJ_INIT_PROTOCOL),
 * [2] report fd, [3] seccomp BPF memfd (-1: none), [4] BPF instruction count,
 * [5] seccomp flags, [6] forwarded-signal mask (bit n-1 = signal n), [7] trace (0/1),
 * [8] the command's cwd, [9] PATH for the command's lookup ("" = none), [10] an fd to
 * give the command as its fd 3 (-1: none), [11...] the command's argv. envp is the
 * command's environment.
 */
#include "cj_child.h"

#if defined(__x86_64__)

#include <stdint.h>
#include <stddef.h>

#define CJI __attribute__((section("cj_init"), used, no_builtin, no_stack_protector))

/* No SSE or MMX in this file: an optimising build would otherwise load vector
 * constants from .rodata (.LCPI* pools), outside the section. Every function here has
 * the same target, so they still inline into each other. scripts/check-init-object
 * fails the build if the object has any relocation in cj_init at all. */
#pragma clang attribute push(__attribute__((target("no-sse,no-sse2,no-mmx"))), apply_to = function)

/* x86-64 system call numbers. */
enum {
    NR_read = 0, NR_write = 1, NR_close = 3, NR_rt_sigaction = 13, NR_rt_sigprocmask = 14,
    NR_rt_sigreturn = 15, NR_pread64 = 17, NR_clone = 56, NR_execve = 59, NR_wait4 = 61,
    NR_dup2 = 33, NR_kill = 62, NR_fcntl = 72, NR_chdir = 80, NR_setsid = 112, NR_rt_sigtimedwait = 128,
    NR_prctl = 157, NR_clock_gettime = 228, NR_exit_group = 231, NR_seccomp = 317,
    NR_close_range = 436,
};

/* Strings, in the section: "clawjail: trace: " and the step names. */
extern const char cji_trace_prefix[] __attribute__((visibility("hidden")));
extern const char cji_step_init[] __attribute__((visibility("hidden")));
extern const char cji_step_seccomp[] __attribute__((visibility("hidden")));
extern const char cji_step_forked[] __attribute__((visibility("hidden")));
extern const char cji_step_reaped[] __attribute__((visibility("hidden")));
extern const char cji_protocol[] __attribute__((visibility("hidden")));
__asm__(".pushsection cj_init,\"ax\",@progbits\n"
        "cji_trace_prefix: .asciz \"clawjail: trace: \"\n"
        "cji_step_init: .asciz \" child: init exec'd\\n\"\n"
        "cji_step_seccomp: .asciz \" child: seccomp loaded (init)\\n\"\n"
        "cji_step_forked: .asciz \" child: command forked\\n\"\n"
        "cji_step_reaped: .asciz \" child: command reaped\\n\"\n"
        "cji_protocol: .asciz \"" CJ_INIT_PROTOCOL "\"\n"
        ".popsection\n");

CJI static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
CJI static long sys3(long n, long a, long b, long c) { return sys6(n, a, b, c, 0, 0, 0); }

CJI static __attribute__((noreturn)) void die(int status) {
    for (;;) sys3(NR_exit_group, status, 0, 0);
}

CJI static size_t slen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

CJI static int same(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

/* A decimal (optionally negative) or -2 when the text is not one. */
CJI static long number(const char *s) {
    int neg = 0;
    if (*s == '-') { neg = 1; s++; }
    if (*s == 0) return -2;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -2;
        v = v * 10 + (*s - '0');
    }
    return neg ? -v : v;
}

CJI static unsigned long unsigned_number(const char *s) {
    unsigned long v = 0;
    for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (unsigned long)(*s - '0');
    return v;
}

CJI static void report(int fd, int type, int stage, int err, int value) {
    int32_t r[5];
    r[0] = type;
    r[1] = stage;
    r[2] = err;
    r[3] = -1;
    r[4] = value;
    long n;
    do {
        n = sys3(NR_write, fd, (long)r, sizeof r);
    } while (n == -4 /* EINTR */);
}

CJI static __attribute__((noreturn)) void fail(int fd, int stage, long err) {
    report(fd, CJ_REPORT_SETUP_FAILED, stage, (int)-err, 0);
    die(125);
}

CJI static void tmark(int on, const char *step) {
    if (!on) return;
    long ts[2];
    sys3(NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)ts, 0);
    char buf[96];
    size_t n = 0;
    for (const char *p = cji_trace_prefix; *p; p++) buf[n++] = *p;
    unsigned long us = (unsigned long)ts[0] * 1000000UL + (unsigned long)ts[1] / 1000UL;
    char d[24];
    int k = 0;
    do {
        d[k++] = (char)('0' + us % 10);
        us /= 10;
    } while (us);
    while (k) buf[n++] = d[--k];
    while (*step && n < sizeof buf) buf[n++] = *step++;
    sys3(NR_write, 2, (long)buf, (long)n);
}

/* The handler that makes init (which ignores what it has no handler for) take the
 * forwarded signals; they stay blocked and are read with rt_sigtimedwait. */
CJI static void on_signal(int sig) { (void)sig; }
__asm__(".pushsection cj_init,\"ax\",@progbits\n"
        ".type cji_restorer,@function\n"
        "cji_restorer: mov $15, %eax\n syscall\n hlt\n"
        ".popsection\n");
extern void cji_restorer(void) __attribute__((visibility("hidden")));

struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

/* execve with the PATH lookup of execvp, without its fallback to /bin/sh. Returns the
 * errno to report. */
CJI static long exec_command(char **argv, char **envp, const char *path) {
    const char *file = argv[0];
    int has_slash = 0;
    for (const char *p = file; *p; p++) has_slash |= *p == '/';
    if (has_slash || *path == 0) return -sys3(NR_execve, (long)file, (long)argv, (long)envp);
    char buf[4096];
    size_t flen = slen(file);
    long result = 2; /* ENOENT */
    int saw_eacces = 0;
    const char *s = path;
    for (;;) {
        const char *e = s;
        while (*e && *e != ':') e++;
        size_t dlen = (size_t)(e - s);
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            size_t off = 0;
            if (dlen == 0) {
                buf[off++] = '.';
            } else {
                for (size_t i = 0; i < dlen; i++) buf[off++] = s[i];
            }
            buf[off++] = '/';
            for (size_t i = 0; i <= flen; i++) buf[off + i] = file[i];
            long err = -sys3(NR_execve, (long)buf, (long)argv, (long)envp);
            if (err == 13 /* EACCES */) saw_eacces = 1;
            else if (err != 2 /* ENOENT */ && err != 20 /* ENOTDIR */) return err;
        }
        if (*e == 0) break;
        s = e + 1;
    }
    return saw_eacces ? 13 : result;
}

CJI static __attribute__((noreturn)) void command_main(char **argv, char **envp, const char *cwd, const char *path,
                                                        int report_fd, int pass_fd, int trace) {
    tmark(trace, cji_step_forked);
    /* Handlers go back to default in execve; the mask does not. */
    unsigned long none = 0;
    sys6(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, (long)&none, 0, 8, 0, 0);
    long r = sys3(NR_setsid, 0, 0, 0);
    if (r < 0) fail(report_fd, CJ_STAGE_SETSID, r);
    r = sys3(NR_chdir, (long)cwd, 0, 0);
    if (r < 0) fail(report_fd, CJ_STAGE_CHDIR_CWD, r);
    /* Only 0-2 (and the passed fd, as 3) reach the command; the report pipe is CLOEXEC
     * and says if execve fails. */
    int first = 3;
    if (pass_fd >= 0) {
        if (report_fd == 3) {
            r = sys3(NR_fcntl, 3, 1030 /* F_DUPFD_CLOEXEC */, 4);
            if (r < 0) fail(report_fd, CJ_STAGE_STDIO, r);
            report_fd = (int)r;
        }
        if (pass_fd != 3) {
            r = sys3(NR_dup2, pass_fd, 3, 0);
            if (r < 0) fail(report_fd, CJ_STAGE_STDIO, r);
            sys3(NR_close, pass_fd, 0, 0);
        }
        first = 4;
    }
    if (report_fd > first) sys3(NR_close_range, first, report_fd - 1, 0);
    sys3(NR_close_range, report_fd + 1, ~0U, 0);
    long err = exec_command(argv, envp, path);
    report(report_fd, CJ_REPORT_EXEC_FAILED, CJ_STAGE_EXEC, (int)err, 0);
    die(err == 2 ? 127 : 126);
}

CJI static __attribute__((noreturn, used)) void cji_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 12 || !same(argv[1], cji_protocol)) die(125);
    long report_fd = number(argv[2]);
    long bpf_fd = number(argv[3]);
    long bpf_len = number(argv[4]);
    long seccomp_flags = number(argv[5]);
    unsigned long forward = unsigned_number(argv[6]);
    int trace = argv[7][0] == '1';
    const char *cwd = argv[8];
    const char *path = argv[9];
    long pass_fd = number(argv[10]);
    if (pass_fd != -1 && (pass_fd < 3 || pass_fd == report_fd || pass_fd == bpf_fd)) die(125);
    if (report_fd < 3 || bpf_fd < -1 || bpf_len < 0 || bpf_len > 4096 || seccomp_flags < 0) die(125);
    tmark(trace, cji_step_init);

    /* execve made us dumpable again: the command, with the same uid, must not open
     * /proc/1/mem. The report pipe must not reach it either. */
    long r = sys6(NR_prctl, 4 /* PR_SET_DUMPABLE */, 0, 0, 0, 0, 0);
    if (r < 0) fail((int)report_fd, CJ_STAGE_DUMPABLE, r);
    sys6(NR_prctl, 15 /* PR_SET_NAME */, (long)argv[0], 0, 0, 0, 0);
    sys3(NR_fcntl, report_fd, 2 /* F_SETFD */, 1 /* FD_CLOEXEC */);

    /* Signals: the forwarded ones and SIGCHLD blocked, each with a handler. */
    unsigned long set = forward | (1UL << (17 /* SIGCHLD */ - 1));
    struct kernel_sigaction sa;
    sa.handler = on_signal;
    sa.flags = 0x04000000 /* SA_RESTORER */;
    sa.restorer = cji_restorer;
    sa.mask = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (forward & (1UL << (sig - 1))) sys6(NR_rt_sigaction, sig, (long)&sa, 0, 8, 0, 0);
    }
    r = sys6(NR_rt_sigprocmask, 0 /* SIG_BLOCK */, (long)&set, 0, 8, 0, 0);
    if (r < 0) fail((int)report_fd, CJ_STAGE_SIGNALS, r);

    /* Seccomp: init loads it once and the command inherits it through fork. */
    if (bpf_fd >= 0) {
        uint64_t insns[4096];
        long want = bpf_len * 8, got = 0;
        while (got < want) {
            long n = sys6(NR_pread64, bpf_fd, (long)insns + got, want - got, got, 0, 0);
            if (n == -4) continue;
            if (n <= 0) fail((int)report_fd, CJ_STAGE_SECCOMP, n < 0 ? n : -5 /* EIO */);
            got += n;
        }
        sys3(NR_close, bpf_fd, 0, 0);
        struct {
            unsigned short len;
            void *filter;
        } prog;
        prog.len = (unsigned short)bpf_len;
        prog.filter = insns;
        r = sys3(NR_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, seccomp_flags, (long)&prog);
        if (r < 0) fail((int)report_fd, CJ_STAGE_SECCOMP, r);
        if (seccomp_flags & 8 /* SECCOMP_FILTER_FLAG_NEW_LISTENER */)
            report((int)report_fd, CJ_REPORT_LISTENER, 0, 0, (int)r);
        tmark(trace, cji_step_seccomp);
    }

    long child = sys6(NR_clone, 17 /* SIGCHLD */, 0, 0, 0, 0, 0);
    if (child < 0) fail((int)report_fd, CJ_STAGE_FORK, child);
    if (child == 0) command_main(argv + 11, envp, cwd, path, (int)report_fd, (int)pass_fd, trace);
    report((int)report_fd, CJ_REPORT_STARTED, 0, 0, (int)child);

    for (;;) {
        unsigned char info[128];
        long sig = sys6(NR_rt_sigtimedwait, (long)&set, (long)info, 0, 8, 0, 0);
        if (sig < 0) continue;
        if (sig != 17) {
            sys3(NR_kill, child, sig, 0);
            continue;
        }
        for (;;) {
            int status = 0;
            long w = sys6(NR_wait4, -1, (long)&status, 1 /* WNOHANG */, 0, 0, 0);
            if (w <= 0) break;
            if (w == child) {
                tmark(trace, cji_step_reaped);
                report((int)report_fd, CJ_REPORT_EXITED, 0, 0, status);
                /* Leaving kills everything else in the pid namespace. */
                if ((status & 0x7f) == 0) die((status >> 8) & 0xff);
                die(128 + (status & 0x7f));
            }
        }
    }
}

/* The entry point: the kernel leaves argc at the stack pointer. */
__asm__(".pushsection cj_init,\"ax\",@progbits\n"
        ".globl cj_init_entry\n"
        ".hidden cj_init_entry\n"
        ".type cj_init_entry,@function\n"
        "cj_init_entry:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call cji_main\n"
        "  hlt\n"
        ".popsection\n");

#pragma clang attribute pop

#endif
