/*
 * scripts/hugetext BINARY: reads BINARY's machine code into the page cache in 2 MiB
 * folios, so that every process that runs it afterwards maps its code with a few
 * huge-page entries instead of thousands of 4 KiB ones.
 *
 * Why: clawjail's static binary has ~20 MiB of code. Mapped in small pages, each
 * `clawjail exec` takes ~150 page faults on it and its exit unmaps the ~2,400 entries
 * they made; every idle supervisor also keeps ~40 KiB of page tables for them. The
 * kernel maps a cached 2 MiB folio with one PMD entry whether or not the process
 * asked for huge pages, so warming the cache once (after each build or install) is
 * enough. It needs a kernel whose file system caches large folios (ext4 and xfs since
 * Linux 6.16, tmpfs with huge=) and transparent huge pages not set to "never".
 *
 * The caller drops the file from the page cache first (scripts/env.sh: sync, then
 * `dd iflag=nocache`): pages already cached in 4 KiB folios stay so. Best effort:
 * anything unsupported leaves the binary exactly as it was. Prints how much of the
 * code ended up in huge pages.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE (2UL << 20)

static unsigned long pmd_mapped_kb(void *start) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512], want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)start);
    int inside = 0;
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && line[0] != ' ' && strncmp(line, want, strlen(want)) == 0) inside = 1;
        else if (inside && sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: hugetext BINARY\n");
        return 64;
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        fprintf(stderr, "hugetext: %s is not a 64-bit ELF file; left as it is\n", argv[1]);
        return 0;
    }
    unsigned long code_kb = 0, huge_kb = 0, stretch_kb = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph) break;
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        /* Only 2 MiB stretches whose file offset and address agree modulo 2 MiB can be
         * PMD-mapped; the page cache indexes folios by file offset. */
        uint64_t first = (ph.p_offset + HUGE - 1) & ~(HUGE - 1);
        uint64_t last = (ph.p_offset + ph.p_filesz) & ~(HUGE - 1);
        code_kb += ph.p_filesz >> 10;
        if (last <= first || (ph.p_vaddr - ph.p_offset) % HUGE != 0) continue;
        size_t len = last - first;
        stretch_kb += len >> 10;
        /* An aligned address of our own, so the folios read in are also mapped huge
         * here, which is how the result is measured. */
        char *area = mmap(NULL, len + HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area == MAP_FAILED) continue;
        char *aligned = (char *)(((uintptr_t)area + HUGE - 1) & ~(HUGE - 1));
        char *p = mmap(aligned, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, (off_t)first);
        if (p != MAP_FAILED) {
            (void)madvise(p, len, MADV_HUGEPAGE);
            volatile char sink = 0;
            for (size_t off = 0; off < len; off += HUGE) sink += p[off];
            (void)sink;
            huge_kb += pmd_mapped_kb(p);
        }
        munmap(area, len + HUGE);
    }
    close(fd);
    const char *why = "";
    if (stretch_kb == 0) why = " (its code has no whole, aligned 2 MiB stretch; nothing changed)";
    else if (huge_kb == 0) why = " (this kernel or file system caches it in small pages; nothing changed)";
    printf("hugetext: %lu of %lu KiB of %s's code cached in 2 MiB pages%s\n", huge_kb, code_kb, argv[1], why);
    return 0;
}
