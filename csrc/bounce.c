#include "bounce.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pooled buffers are 4096-aligned, enough for any O_DIRECT alignment up to a page. */
#define RL_BOUNCE_ALIGN 4096u

int rl_bounce_class(size_t size)
{
    for (int k = 0; k < RL_BOUNCE_CLASSES; k++)
        if (size <= (size_t)RL_BOUNCE_ALIGN << k)
            return k;
    return -1;
}

char *rl_bounce_get(struct rl_bounce_pool *pool, size_t size, unsigned align, size_t *allocated)
{
    if (align == 0 || (align & (align - 1)))
        return NULL;
    int k = align <= RL_BOUNCE_ALIGN ? rl_bounce_class(size) : -1;
    char *buf = NULL;
    if (k >= 0) {
        size = (size_t)RL_BOUNCE_ALIGN << k;
        if ((buf = pool->free[k]) != NULL) {
            memcpy(&pool->free[k], buf, sizeof(char *)); /* the next free one */
            pool->cached -= size;
        }
    }
    if (buf == NULL && posix_memalign((void **)&buf, align < RL_BOUNCE_ALIGN ? RL_BOUNCE_ALIGN : align, size) != 0)
        return NULL;
    *allocated = size;
    return buf;
}

void rl_bounce_put(struct rl_bounce_pool *pool, char *buf, size_t allocated)
{
    int k = rl_bounce_class(allocated);
    if (k < 0 || ((size_t)RL_BOUNCE_ALIGN << k) != allocated || pool->cached + allocated > RL_BOUNCE_CACHE) {
        free(buf);
        return;
    }
    memcpy(buf, &pool->free[k], sizeof(char *));
    pool->free[k] = buf;
    pool->cached += allocated;
}

void rl_bounce_clear(struct rl_bounce_pool *pool)
{
    for (int k = 0; k < RL_BOUNCE_CLASSES; k++) {
        while (pool->free[k]) {
            char *buf = pool->free[k];
            memcpy(&pool->free[k], buf, sizeof(char *));
            free(buf);
        }
    }
    pool->cached = 0;
}
