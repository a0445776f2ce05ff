#include "compress.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

int herald_gzip(const void *in, size_t len, int level, unsigned char **out, size_t *out_len)
{
    if (len > UINT_MAX / 2)
        return -1;
    z_stream z = {0};
    /* windowBits 15 + 16 selects the gzip wrapper. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&z, (uLong)len);
    unsigned char *buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    size_t produced = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = produced;
    return 0;
}
