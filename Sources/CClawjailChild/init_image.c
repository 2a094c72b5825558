/*
 * The init's image (parent side): init.c's section copied into a sealed memfd behind a
 * minimal ELF header, which cj_spawn's child execs as the jail's pid 1; and the memfd
 * that carries the compiled seccomp filter to it.
 */
#define _GNU_SOURCE
#include "cj_child.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <elf.h>
#include <sys/mman.h>

extern const unsigned char __start_cj_init[] __attribute__((visibility("hidden")));
extern const unsigned char __stop_cj_init[] __attribute__((visibility("hidden")));
extern void cj_init_entry(void) __attribute__((visibility("hidden")));

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static int sealed_memfd(const char *name, const void *head, size_t head_len, const void *body, size_t body_len,
                        unsigned int exec_flag) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | exec_flag);
    if (fd < 0 && errno == EINVAL && exec_flag != 0) fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    const struct {
        const void *p;
        size_t n;
    } parts[2] = {{head, head_len}, {body, body_len}};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < parts[i].n) {
            ssize_t w = write(fd, (const char *)parts[i].p + off, parts[i].n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int e = w < 0 ? errno : EIO;
                close(fd);
                return -e;
            }
            off += (size_t)w;
        }
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cj_init_image_fd(void) {
    const unsigned char *code = __start_cj_init;
    size_t code_len = (size_t)(__stop_cj_init - __start_cj_init);
    uintptr_t entry = (uintptr_t)&cj_init_entry - (uintptr_t)code;
    if (code_len == 0 || entry >= code_len) return -ENOEXEC;
    /* One page of headers, then the section at file offset 4096, all mapped read+exec
     * at a fixed address. The code uses only relative addresses and the stack. */
    enum { BASE = 0x200000, PAGE = 4096 };
    unsigned char head[PAGE];
    memset(head, 0, sizeof head);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)head;
    Elf64_Phdr *ph = (Elf64_Phdr *)(head + sizeof *eh);
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_ident[EI_OSABI] = ELFOSABI_SYSV;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = BASE + PAGE + entry;
    eh->e_phoff = sizeof *eh;
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof *ph;
    eh->e_phnum = 2;
    ph[0].p_type = PT_LOAD;
    ph[0].p_flags = PF_R | PF_X;
    ph[0].p_offset = 0;
    ph[0].p_vaddr = ph[0].p_paddr = BASE;
    ph[0].p_filesz = ph[0].p_memsz = PAGE + code_len;
    ph[0].p_align = PAGE;
    ph[1].p_type = PT_GNU_STACK; /* a non-executable stack */
    ph[1].p_flags = PF_R | PF_W;
    return sealed_memfd("clawjail-init", head, sizeof head, code, code_len, MFD_EXEC);
}

int cj_bpf_memfd(const void *bpf, size_t len) {
    return sealed_memfd("clawjail-seccomp", bpf, len, NULL, 0, 0);
}
#else
int cj_init_image_fd(void) { return -ENOSYS; }
int cj_bpf_memfd(const void *bpf, size_t len) {
    (void)bpf;
    (void)len;
    return -ENOSYS;
}
#endif

