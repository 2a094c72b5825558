/*
 * Building the flat launch plan (parent side; may allocate): every string and vector
 * the child reads is copied into the plan's own arena, freed with the plan.
 */
#define _GNU_SOURCE
#include "cj_shims.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct cj_arena_block {
    struct cj_arena_block *next;
    size_t used, size;
    char data[];
};

static void *arena_alloc(struct cj_plan *p, size_t len) {
    len = (len + 15) & ~(size_t)15;
    struct cj_arena_block *b = p->arena;
    if (b == NULL || b->size - b->used < len) {
        size_t size = len > 16384 ? len : 16384;
        struct cj_arena_block *nb = malloc(sizeof *nb + size);
        if (nb == NULL) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->size = size;
        p->arena = nb;
        b = nb;
    }
    void *r = b->data + b->used;
    b->used += len;
    return r;
}

struct cj_plan *cj_plan_new(void) {
    struct cj_plan *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->cgroup_fd = -1;
    p->init_fd = -1;
    p->bpf_fd = -1;
    p->stdio[0] = p->stdio[1] = p->stdio[2] = -1;
    p->pass_fd = -1;
    p->no_new_privs = 1;
    p->cap_last_cap = 63;
    return p;
}

void cj_plan_free(struct cj_plan *p) {
    if (p == NULL) return;
    struct cj_arena_block *b = p->arena;
    while (b != NULL) {
        struct cj_arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(p);
}

const void *cj_plan_memdup(struct cj_plan *p, const void *src, size_t len) {
    void *d = arena_alloc(p, len ? len : 1);
    if (d != NULL && len) memcpy(d, src, len);
    return d;
}

const char *cj_plan_strdup(struct cj_plan *p, const char *s) {
    if (s == NULL) return NULL;
    return cj_plan_memdup(p, s, strlen(s) + 1);
}

static const char **dup_vector(struct cj_plan *p, const char *const *v, int n) {
    const char **out = arena_alloc(p, sizeof(char *) * (size_t)(n + 1));
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        out[i] = cj_plan_strdup(p, v[i]);
        if (out[i] == NULL) return NULL;
    }
    out[n] = NULL;
    return out;
}

int cj_plan_set_argv(struct cj_plan *p, const char *const *argv, int n) {
    if (n < 1) return -EINVAL;
    p->argv = dup_vector(p, argv, n);
    return p->argv ? 0 : -ENOMEM;
}

int cj_plan_set_envp(struct cj_plan *p, const char *const *envp, int n) {
    p->envp = dup_vector(p, envp, n);
    return p->envp ? 0 : -ENOMEM;
}

int cj_plan_add_op(struct cj_plan *p, uint32_t kind, uint32_t flags, int fd, uint32_t mode, uint64_t mflags,
                   uint64_t mattr, const char *path, const char *arg, size_t arg_len) {
    if (p->n_ops >= CJ_MAX_OPS) return -1;
    struct cj_op *op = &p->ops[p->n_ops];
    op->kind = kind;
    op->flags = flags;
    op->fd = fd;
    op->mode = mode;
    op->mflags = mflags;
    op->mattr = mattr;
    op->path = cj_plan_strdup(p, path);
    op->arg = arg ? cj_plan_memdup(p, arg, arg_len + 1) : NULL;
    if (op->arg != NULL) ((char *)op->arg)[arg_len] = '\0';
    op->arg_len = arg_len;
    if (op->path == NULL || (arg != NULL && op->arg == NULL)) return -1;
    return p->n_ops++;
}

int cj_plan_add_rlimit(struct cj_plan *p, int resource, uint64_t soft, uint64_t hard) {
    if (p->n_rlimits >= CJ_MAX_RLIMITS) return -1;
    p->rlimits[p->n_rlimits].resource = resource;
    p->rlimits[p->n_rlimits].soft = soft;
    p->rlimits[p->n_rlimits].hard = hard;
    return p->n_rlimits++;
}

