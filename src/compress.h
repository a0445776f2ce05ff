/* gzip for request bodies. */
#ifndef HERALD_COMPRESS_H
#define HERALD_COMPRESS_H

#include <stddef.h>

/* Compress `len` bytes into a gzip member (RFC 1952) at zlib `level` (1..9).
 * On success *out is a malloc'ed buffer owned by the caller, *out_len its
 * size, and the result is 0; -1 on allocation or zlib failure. */
int herald_gzip(const void *in, size_t len, int level, unsigned char **out, size_t *out_len);

#endif
