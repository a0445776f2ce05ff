#include "random.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

static void system_fill(unsigned char *p, size_t len);

/* Small requests (ids: 16 bytes per event) are served from a per-thread
 * buffer of the kernel's CSPRNG output, one getrandom(2) per 256 ids. A
 * fork()ed child must not hand out the bytes its parent will also use:
 * the buffer is tagged with a generation that pthread_atfork bumps. */
#define POOL_SIZE 4096

static _Atomic unsigned long fork_generation;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_after_fork(void)
{
    fork_generation++;
}

static void pool_register(void)
{
    pthread_atfork(NULL, NULL, pool_after_fork);
}

static _Thread_local struct {
    unsigned char bytes[POOL_SIZE];
    size_t left;
    unsigned long generation;
} pool;

static void pool_fill(unsigned char *p, size_t len)
{
    pthread_once(&pool_once, pool_register);
    unsigned long generation = fork_generation;
    if (pool.generation != generation) {
        explicit_bzero(pool.bytes, sizeof pool.bytes);
        pool.left = 0;
        pool.generation = generation;
    }
    if (pool.left < len) {
        system_fill(pool.bytes, sizeof pool.bytes);
        pool.left = sizeof pool.bytes;
    }
    unsigned char *from = pool.bytes + sizeof pool.bytes - pool.left;
    memcpy(p, from, len);
    explicit_bzero(from, len); /* handed out once */
    pool.left -= len;
}

void herald_random_fill(void *source, void *buf, size_t len)
{
    herald_random *r = source;
    if (r != NULL && r->fn != NULL) {
        r->fn(buf, len, r->ctx);
        return;
    }
    if (len <= 64) {
        pool_fill(buf, len);
        return;
    }
    system_fill(buf, len);
}

static void system_fill(unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* No kernel CSPRNG (pre-3.17 kernel): degrade to something
             * unpredictable enough for ids, never to a constant. */
            static _Thread_local unsigned long long state = 0x9e3779b97f4a7c15ULL;
            state ^= (unsigned long long)(size_t)p ^ (unsigned long long)len;
            for (; len > 0; len--) {
                state = state * 6364136223846793005ULL + 1442695040888963407ULL;
                *p++ = (unsigned char)(state >> 56);
            }
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}
