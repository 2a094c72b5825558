/*
 * Keeps clawjail's machine code in 2 MiB page-cache folios (see scripts/hugetext.c
 * for why). scripts/hugetext puts it there after a build; when the kernel later drops
 * the binary from the page cache (memory pressure, `drop_caches`), the next process
 * would read it back in 4 KiB folios and every run after it would map small pages
 * again. MADV_HUGEPAGE on the running text makes that process's faults read whole
 * 2 MiB folios instead, so the cache heals in part: the stretches the kernel and libc
 * touched before this constructor stay small (seen: 6 of 16 MiB back in 2 MiB folios
 * after one run; scripts/hugetext restores all of it). When the folios are cached
 * already, this is one system call with no other effect. Where the kernel cannot,
 * it fails or does nothing.
 */
#define _GNU_SOURCE
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

static int advise_text(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    const uintptr_t huge = 2u << 20;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        uintptr_t end = start + ph->p_memsz;
        /* Only the whole 2 MiB stretches can be mapped huge; advising just those
         * leaves the ends as they are. */
        uintptr_t first = (start + huge - 1) & ~(huge - 1);
        uintptr_t last = end & ~(huge - 1);
        if (last > first) (void)madvise((void *)first, last - first, MADV_HUGEPAGE);
    }
    return 1; /* the first object is the executable itself */
}

__attribute__((constructor(101))) static void cj_huge_text(void) {
    (void)dl_iterate_phdr(advise_text, NULL);
}
