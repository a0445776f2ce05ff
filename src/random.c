#include "random.h"

#include <errno.h>
#include <sys/random.h>

void herald_random_fill(void *source, void *buf, size_t len)
{
    herald_random *r = source;
    if (r != NULL && r->fn != NULL) {
        r->fn(buf, len, r->ctx);
        return;
    }
    unsigned char *p = buf;
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
