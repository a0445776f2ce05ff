/* The random source: the caller's (herald_options.random) or the system's. */
#ifndef HERALD_RANDOM_H
#define HERALD_RANDOM_H

#include <stddef.h>

#include "herald/herald.h"

typedef struct herald_random {
    herald_random_fn fn;   /* NULL: getrandom(2) */
    void *ctx;
} herald_random;

/* Fill buf with len random bytes from `source` (a herald_random *; NULL
 * means the system source). Never fails: getrandom is retried on EINTR. */
void herald_random_fill(void *source, void *buf, size_t len);

#endif
