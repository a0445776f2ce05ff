/* Unit tests: gzip of request bodies (src/compress.c), checked by
 * decompressing with zlib's own inflate (windowBits 15 + 16: gzip only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "backoff.h"
#include "compress.h"

/* Inflate a complete gzip member; returns a malloc'ed buffer of *out_len
 * bytes, failing the test if the data is not exactly one valid member. */
static unsigned char *gunzip(const unsigned char *in, size_t len, size_t expected_max,
                             size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    size_t cap = expected_max + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    size_t produced = z.total_out;
    uInt left = z.avail_in;
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        fail_msg("inflate: %d", rc);
    }
    /* No trailing bytes after the member. */
    assert_int_equal(left, 0);
    *out_len = produced;
    return out;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void round_trip(const void *data, size_t len, int level)
{
    unsigned char *gz = NULL;
    size_t gz_len = 0;
    assert_int_equal(herald_gzip(data, len, level, &gz, &gz_len), 0);
    assert_non_null(gz);
    /* RFC 1952 header: magic, deflate, and an 8-byte trailer. */
    assert_true(gz_len >= 18);
    assert_int_equal(gz[0], 0x1f);
    assert_int_equal(gz[1], 0x8b);
    assert_int_equal(gz[2], 8);
    /* Trailer: CRC-32 and ISIZE of the input. */
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)data, (uInt)len);
    assert_int_equal(le32(gz + gz_len - 8), (uint32_t)crc);
    assert_int_equal(le32(gz + gz_len - 4), (uint32_t)len);

    size_t back_len = 0;
    unsigned char *back = gunzip(gz, gz_len, len, &back_len);
    assert_int_equal(back_len, len);
    if (len)
        assert_memory_equal(back, data, len);
    free(back);
    free(gz);
}

static void test_round_trip_text(void **state)
{
    (void)state;
    const char *text = "{\"batch\":[{\"type\":\"track\",\"event\":\"Signed Up\"}],"
                       "\"sentAt\":\"2023-11-14T22:13:20.123Z\"}";
    round_trip(text, strlen(text), 6);
}

static void test_round_trip_empty(void **state)
{
    (void)state;
    round_trip("", 0, 6);
}

static void test_round_trip_every_level(void **state)
{
    (void)state;
    size_t len = 20000;
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = "{\"event\":\"page viewed\",\"n\":123},"[i % 33];
    for (int level = 1; level <= 9; level++)
        round_trip(data, len, level);
    free(data);
}

static void test_compresses_repetitive_json(void **state)
{
    (void)state;
    size_t len = 100000;
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = "{\"type\":\"track\",\"event\":\"x\",\"properties\":{}},"[i % 46];
    unsigned char *gz = NULL;
    size_t gz_len = 0;
    assert_int_equal(herald_gzip(data, len, 6, &gz, &gz_len), 0);
    assert_true(gz_len < len / 20);
    size_t back_len = 0;
    unsigned char *back = gunzip(gz, gz_len, len, &back_len);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    free(gz);
    free(data);
}

static void test_round_trip_random_binary(void **state)
{
    (void)state;
    /* Incompressible input: the output may be larger, and still exact. */
    size_t len = 1 << 17;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    uint64_t rng = 99;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = herald_random_next(&rng);
        memcpy(data + i, &v, 8);
    }
    round_trip(data, len, 1);
    round_trip(data, len, 9);
    round_trip(data, 1, 6);
    round_trip(data, 7, 6);
    free(data);
}

static void test_bad_level(void **state)
{
    (void)state;
    unsigned char *gz = (unsigned char *)(uintptr_t)0x1;
    size_t gz_len = 77;
    assert_int_equal(herald_gzip("abc", 3, 10, &gz, &gz_len), -1);
    assert_int_equal(herald_gzip("abc", 3, -2, &gz, &gz_len), -1);
    /* Outputs untouched on failure. */
    assert_ptr_equal(gz, (unsigned char *)(uintptr_t)0x1);
    assert_int_equal(gz_len, 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_text),
        cmocka_unit_test(test_round_trip_empty),
        cmocka_unit_test(test_round_trip_every_level),
        cmocka_unit_test(test_compresses_repetitive_json),
        cmocka_unit_test(test_round_trip_random_binary),
        cmocka_unit_test(test_bad_level),
    };
    return cmocka_run_group_tests_name("compress", tests, NULL, NULL);
}
