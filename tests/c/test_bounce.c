/* The O_DIRECT bounce-buffer pool: size classes, alignment, reuse, the cache
 * limit, and buffers too large (or too aligned) to keep. */
#include <stdint.h>
#include <string.h>

#include "bounce.h"
#include "check.h"

static void test_classes(void)
{
    CHECK(rl_bounce_class(0) == 0);
    CHECK(rl_bounce_class(1) == 0);
    CHECK(rl_bounce_class(4096) == 0);
    CHECK(rl_bounce_class(4097) == 1);
    CHECK(rl_bounce_class((size_t)16 << 20) == RL_BOUNCE_CLASSES - 1);
    CHECK(rl_bounce_class(((size_t)16 << 20) + 1) == -1);
}

static void test_alignment_and_size(void)
{
    struct rl_bounce_pool pool = {0};
    unsigned aligns[] = {512, 4096, 8192, 1u << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t allocated = 0;
        char *buf = rl_bounce_get(&pool, 5000, aligns[i], &allocated);
        CHECK(buf != NULL);
        CHECK((uintptr_t)buf % aligns[i] == 0);
        CHECK(allocated >= 5000);
        memset(buf, 0xab, allocated); /* all of it is usable */
        rl_bounce_put(&pool, buf, allocated);
    }
    /* Not a power of two: refused. */
    size_t allocated = 0;
    CHECK(rl_bounce_get(&pool, 4096, 3000, &allocated) == NULL);
    CHECK(rl_bounce_get(&pool, 4096, 0, &allocated) == NULL);
    rl_bounce_clear(&pool);
    CHECK(pool.cached == 0);
}

/* A buffer given back is the one handed out next for the same class, and
 * the pool's byte count follows. */
static void test_reuse(void)
{
    struct rl_bounce_pool pool = {0};
    size_t a_size, b_size, c_size;
    char *a = rl_bounce_get(&pool, 6000, 4096, &a_size);
    char *b = rl_bounce_get(&pool, 6000, 4096, &b_size);
    CHECK(a && b && a != b && a_size == 8192 && b_size == 8192 && pool.cached == 0);
    rl_bounce_put(&pool, a, a_size);
    rl_bounce_put(&pool, b, b_size);
    CHECK(pool.cached == 16384);
    char *c = rl_bounce_get(&pool, 8192, 512, &c_size);
    CHECK(c == b && c_size == 8192 && pool.cached == 8192); /* last in, first out */
    char *d = rl_bounce_get(&pool, 100, 4096, &c_size); /* another class: fresh */
    CHECK(d != a && c_size == 4096 && pool.cached == 8192);
    rl_bounce_put(&pool, c, 8192);
    rl_bounce_put(&pool, d, 4096);
    CHECK(pool.cached == 8192 * 2 + 4096);
    rl_bounce_clear(&pool);
    CHECK(pool.cached == 0);
    for (int k = 0; k < RL_BOUNCE_CLASSES; k++)
        CHECK(pool.free[k] == NULL);
}

/* What the pool never keeps: sizes above the largest class (and buffers whose
 * size is not a class), alignments above a page, and anything past the limit. */
static void test_not_kept(void)
{
    struct rl_bounce_pool pool = {0};
    size_t big_size;
    char *big = rl_bounce_get(&pool, ((size_t)16 << 20) + 1, 4096, &big_size);
    CHECK(big != NULL && big_size == ((size_t)16 << 20) + 1);
    rl_bounce_put(&pool, big, big_size);
    CHECK(pool.cached == 0);

    size_t wide_size;
    char *wide = rl_bounce_get(&pool, 8192, 8192, &wide_size);
    CHECK(wide != NULL && (uintptr_t)wide % 8192 == 0 && wide_size == 8192);
    rl_bounce_put(&pool, wide, wide_size); /* a class size: kept, 4096-aligned is enough for reuse */
    CHECK(pool.cached == 8192);

    /* Fill the cache with 16 MiB buffers up to its limit: the next is freed. */
    enum { N = (int)(RL_BOUNCE_CACHE / ((size_t)16 << 20)) + 1 };
    char *bufs[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = rl_bounce_get(&pool, (size_t)16 << 20, 4096, &sizes[i]);
        CHECK(bufs[i] != NULL);
    }
    for (int i = 0; i < N; i++)
        rl_bounce_put(&pool, bufs[i], sizes[i]);
    CHECK(pool.cached <= RL_BOUNCE_CACHE);
    CHECK(pool.cached + ((size_t)16 << 20) > RL_BOUNCE_CACHE); /* full: one did not fit */
    rl_bounce_clear(&pool);
    CHECK(pool.cached == 0);
}

int main(void)
{
    test_classes();
    test_alignment_and_size();
    test_reuse();
    test_not_kept();
    printf("bounce: ok\n");
    return 0;
}
