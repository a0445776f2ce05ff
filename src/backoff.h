/* Retry timing: exponential backoff with full jitter, and Retry-After. */
#ifndef HERALD_BACKOFF_H
#define HERALD_BACKOFF_H

#include <stdint.h>

/* Upper bound of the delay after `failures` consecutive failures (>= 1):
 * min(cap_ms, base_ms * 2^(failures - 1)), without overflow. 0 failures gives 0. */
uint32_t herald_backoff_bound_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t failures);

/* Full jitter: a delay uniform in [0, bound], drawn from `random`. */
uint32_t herald_backoff_delay_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t failures,
                                 uint64_t random);

/* Parse a Retry-After header value: delta-seconds ("120") or an HTTP-date
 * (IMF-fixdate, RFC 850 or asctime form). On success stores the delay from
 * now_ms in *delay_ms (0 for a date in the past) and returns 1; returns 0 for
 * anything else (empty, negative, garbage, out of range). Pure. */
int herald_retry_after_parse(const char *value, int64_t now_ms, int64_t *delay_ms);

/* Parse an HTTP-date into unix seconds. Returns 1 on success. Pure. */
int herald_http_date_parse(const char *value, int64_t *unix_seconds);

/* splitmix64: the next pseudo-random value from *state. Not for secrets. */
uint64_t herald_random_next(uint64_t *state);

#endif
