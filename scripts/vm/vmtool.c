/*
 * vmtool: the few things the qemu guest needs that busybox cannot do.
 *
 *   vmtool exit CODE                 qemu exits with (CODE << 1) | 1, through the
 *                                    isa-debug-exit device at I/O port 0xf4 (the
 *                                    kernel has no /dev/port, hence ioperm + outb)
 *   vmtool setxattr PATH NAME VALUE  what systemd does for Delegate=yes
 *                                    (busybox has no setfattr)
 *   vmtool ms                        CLOCK_MONOTONIC in milliseconds, for timings
 *
 * Build: gcc -O2 -static -o vmtool scripts/vm/vmtool.c (the guest has no libc).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/xattr.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "exit")) {
        if (ioperm(0xf4, 4, 1) != 0) {
            perror("vmtool exit: ioperm");
            return 1;
        }
        outb((unsigned char)atoi(argv[2]), 0xf4);
        /* Only reached without the isa-debug-exit device. */
        fprintf(stderr, "vmtool exit: qemu did not exit (no isa-debug-exit device at 0xf4?)\n");
        return 1;
    }
    if (argc == 5 && !strcmp(argv[1], "setxattr")) {
        if (setxattr(argv[2], argv[3], argv[4], strlen(argv[4]), 0) != 0) {
            perror("vmtool setxattr");
            return 1;
        }
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "ms")) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        printf("%lld\n", (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000);
        return 0;
    }
    fprintf(stderr, "usage: vmtool exit CODE | setxattr PATH NAME VALUE | ms\n");
    return 2;
}
