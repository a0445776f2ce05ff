/* Unit tests: retry timing (src/backoff.c) — backoff bounds, full jitter,
 * splitmix64 and Retry-After / HTTP-date parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backoff.h"

/* 1994-11-06T08:49:37Z, the date of the RFC examples. */
#define RFC_EXAMPLE_UNIX 784111777LL
#define SENTINEL (-777)

/* ---- herald_backoff_bound_ms ---- */

static void test_bound_zero_failures_is_zero(void **state)
{
    (void)state;
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 0), 0);
    assert_int_equal(herald_backoff_bound_ms(UINT32_MAX, UINT32_MAX, 0), 0);
}

static void test_bound_doubles_per_failure(void **state)
{
    (void)state;
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 1), 500);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 2), 1000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 3), 2000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 4), 4000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 5), 8000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 6), 16000);
    assert_int_equal(herald_backoff_bound_ms(1, 1u << 30, 31), 1u << 30);
    assert_int_equal(herald_backoff_bound_ms(1, UINT32_MAX, 32), 1u << 31);
}

static void test_bound_capped(void **state)
{
    (void)state;
    /* 500 * 2^6 = 32000 > 30000 */
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 7), 30000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 8), 30000);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 50), 30000);
    /* Exactly at the cap. */
    assert_int_equal(herald_backoff_bound_ms(1000, 8000, 4), 8000);
    assert_int_equal(herald_backoff_bound_ms(1000, 8000, 5), 8000);
    /* A base above the cap is capped from the first failure. */
    assert_int_equal(herald_backoff_bound_ms(1000, 500, 1), 500);
}

static void test_bound_no_overflow(void **state)
{
    (void)state;
    assert_int_equal(herald_backoff_bound_ms(500, 30000, 1000), 30000);
    assert_int_equal(herald_backoff_bound_ms(500, UINT32_MAX, 1000), UINT32_MAX);
    assert_int_equal(herald_backoff_bound_ms(1, UINT32_MAX, 1000), UINT32_MAX);
    assert_int_equal(herald_backoff_bound_ms(UINT32_MAX, UINT32_MAX, 1000), UINT32_MAX);
    assert_int_equal(herald_backoff_bound_ms(UINT32_MAX - 1, UINT32_MAX, 2), UINT32_MAX);
    assert_int_equal(herald_backoff_bound_ms(500, 30000, UINT32_MAX), 30000);
    assert_int_equal(herald_backoff_bound_ms(86400000, 86400000, 1000), 86400000);
    /* Monotone in failures. */
    uint32_t previous = 0;
    for (uint32_t f = 1; f <= 1000; f++) {
        uint32_t b = herald_backoff_bound_ms(3, 1000000, f);
        assert_true(b >= previous);
        assert_true(b <= 1000000);
        previous = b;
    }
    assert_int_equal(previous, 1000000);
}

/* ---- herald_backoff_delay_ms ---- */

static void test_delay_zero_failures(void **state)
{
    (void)state;
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 0, 0), 0);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 0, UINT64_MAX), 0);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 0, 12345), 0);
}

static void test_delay_within_bound_edges(void **state)
{
    (void)state;
    /* Full jitter covers both ends of [0, bound]. */
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 1, 0), 0);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 1, 500), 500);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 1, 501), 0);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 2, 1000), 1000);
    assert_int_equal(herald_backoff_delay_ms(500, 30000, 20, 30000), 30000);
    assert_true(herald_backoff_delay_ms(500, 30000, 20, UINT64_MAX) <= 30000);
    assert_true(herald_backoff_delay_ms(1, UINT32_MAX, 1000, UINT64_MAX) <= UINT32_MAX);
    assert_int_equal(herald_backoff_delay_ms(1, UINT32_MAX, 1000, UINT32_MAX), UINT32_MAX);
}

static void test_delay_always_within_bound(void **state)
{
    (void)state;
    uint64_t rng = 42;
    const uint32_t bases[] = {1, 100, 500, 1000, 86400000};
    const uint32_t caps[] = {1, 1000, 30000, 86400000, UINT32_MAX};
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
            for (uint32_t f = 0; f <= 40; f++) {
                uint32_t bound = herald_backoff_bound_ms(bases[b], caps[c], f);
                for (int i = 0; i < 50; i++) {
                    uint32_t d = herald_backoff_delay_ms(bases[b], caps[c], f,
                                                         herald_random_next(&rng));
                    assert_true(d <= bound);
                }
            }
        }
    }
}

static void check_spread(uint64_t seed, uint32_t base, uint32_t cap, uint32_t failures)
{
    const int draws = 10000;
    uint32_t bound = herald_backoff_bound_ms(base, cap, failures);
    assert_true(bound > 0);
    uint64_t rng = seed;
    int quarter[4] = {0, 0, 0, 0};
    double sum = 0;
    uint32_t lowest = UINT32_MAX, highest = 0;
    for (int i = 0; i < draws; i++) {
        uint32_t d = herald_backoff_delay_ms(base, cap, failures, herald_random_next(&rng));
        assert_true(d <= bound);
        uint64_t q = (uint64_t)d * 4 / ((uint64_t)bound + 1);
        assert_true(q < 4);
        quarter[q]++;
        sum += d;
        if (d < lowest)
            lowest = d;
        if (d > highest)
            highest = d;
    }
    for (int q = 0; q < 4; q++) {
        /* 25% expected; 15-35% allowed. */
        assert_in_range(quarter[q], draws * 15 / 100, draws * 35 / 100);
    }
    double mean = sum / draws;
    double half = bound / 2.0;
    assert_true(mean >= half * 0.9);
    assert_true(mean <= half * 1.1);
    /* The draws reach close to both ends of the range. */
    assert_true(lowest <= bound / 100);
    assert_true(highest >= bound - bound / 100);
}

static void test_jitter_spread(void **state)
{
    (void)state;
    check_spread(1, 500, 30000, 1);     /* bound 500 */
    check_spread(2, 500, 30000, 4);     /* bound 4000 */
    check_spread(3, 500, 30000, 30);    /* bound 30000 (capped) */
    check_spread(0xdeadbeef, 1, UINT32_MAX, 1000); /* bound UINT32_MAX */
    check_spread(0, 100, 86400000, 10); /* bound 51200 */
}

/* ---- herald_random_next (splitmix64) ---- */

static void test_random_next_reference(void **state)
{
    (void)state;
    /* Reference outputs of splitmix64 seeded with 0. */
    uint64_t s = 0;
    assert_int_equal(herald_random_next(&s), 0xe220a8397b1dcdafULL);
    assert_int_equal(s, 0x9e3779b97f4a7c15ULL);
    assert_int_equal(herald_random_next(&s), 0x6e789e6aa1b965f4ULL);
    assert_int_equal(herald_random_next(&s), 0x06c45d188009454fULL);
}

static void test_random_next_deterministic_and_varied(void **state)
{
    (void)state;
    uint64_t a = 12345, b = 12345, c = 12346;
    uint64_t first_a = herald_random_next(&a);
    assert_int_equal(first_a, herald_random_next(&b));
    assert_int_not_equal(first_a, herald_random_next(&c));
    /* No repeats in a short run, and both halves of the value vary. */
    uint64_t seen[256];
    uint64_t s = 7;
    int high_set = 0, low_odd = 0;
    for (int i = 0; i < 256; i++) {
        seen[i] = herald_random_next(&s);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(seen[i], seen[j]);
        high_set += (int)((seen[i] >> 63) & 1u);
        low_odd += (int)(seen[i] & 1u);
    }
    assert_in_range(high_set, 80, 176);
    assert_in_range(low_odd, 80, 176);
}

/* ---- Retry-After ---- */

static int64_t parse_ok(const char *value, int64_t now_ms)
{
    int64_t delay = SENTINEL;
    int rc = herald_retry_after_parse(value, now_ms, &delay);
    if (rc != 1)
        fail_msg("herald_retry_after_parse(\"%s\") returned %d, expected 1", value, rc);
    return delay;
}

static void assert_rejected(const char *value)
{
    int64_t delay = SENTINEL;
    int rc = herald_retry_after_parse(value, 1700000000000LL, &delay);
    if (rc != 0)
        fail_msg("herald_retry_after_parse(\"%.40s\") returned %d (delay %lld), expected 0",
                 value ? value : "(null)", rc, (long long)delay);
    assert_int_equal(delay, SENTINEL);
}

static void test_retry_after_delta_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2", 0), 2000);
    assert_int_equal(parse_ok("0", 5000), 0);
    assert_int_equal(parse_ok("120", 0), 120000);
    assert_int_equal(parse_ok(" 120 ", 0), 120000);
    assert_int_equal(parse_ok("\t7\t", 0), 7000);
    assert_int_equal(parse_ok("007", 0), 7000);
    assert_int_equal(parse_ok("3600", 1700000000000LL), 3600000);
    /* Delta-seconds do not depend on now. */
    assert_int_equal(parse_ok("2", 1700000000000LL), 2000);
    /* Three years is still accepted. */
    assert_int_equal(parse_ok("86400000", 0), 86400000000LL);
}

static void test_retry_after_imf_fixdate(void **state)
{
    (void)state;
    const char *date = "Sun, 06 Nov 1994 08:49:37 GMT";
    int64_t when = RFC_EXAMPLE_UNIX * 1000;
    assert_int_equal(parse_ok(date, when - 5000), 5000);
    assert_int_equal(parse_ok(date, when - 1), 1);
    assert_int_equal(parse_ok(date, when - 86400000), 86400000);
    /* Now, and in the past: no wait. */
    assert_int_equal(parse_ok(date, when), 0);
    assert_int_equal(parse_ok(date, when + 1), 0);
    assert_int_equal(parse_ok(date, 1700000000000LL), 0);
    /* Surrounding white space. */
    assert_int_equal(parse_ok("  Sun, 06 Nov 1994 08:49:37 GMT  ", when - 3000), 3000);
}

static void test_retry_after_rfc850_and_asctime(void **state)
{
    (void)state;
    int64_t when = RFC_EXAMPLE_UNIX * 1000;
    assert_int_equal(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", when - 2500), 2500);
    assert_int_equal(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", when + 2500), 0);
    assert_int_equal(parse_ok("Sun Nov  6 08:49:37 1994", when - 4000), 4000);
    assert_int_equal(parse_ok("Sun Nov  6 08:49:37 1994", when + 4000), 0);
}

static void test_http_date_forms(void **state)
{
    (void)state;
    int64_t t = -1;
    assert_int_equal(herald_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t), 1);
    assert_int_equal(t, RFC_EXAMPLE_UNIX);
    t = -1;
    assert_int_equal(herald_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), 1);
    assert_int_equal(t, RFC_EXAMPLE_UNIX);
    t = -1;
    assert_int_equal(herald_http_date_parse("Sun Nov  6 08:49:37 1994", &t), 1);
    assert_int_equal(t, RFC_EXAMPLE_UNIX);
    t = -1;
    assert_int_equal(herald_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", &t), 1);
    assert_int_equal(t, 0);
    t = -1;
    /* A leap day and the end of a leap year. */
    assert_int_equal(herald_http_date_parse("Tue, 29 Feb 2000 12:00:00 GMT", &t), 1);
    assert_int_equal(t, 951825600);
    assert_int_equal(herald_http_date_parse("Sat, 31 Dec 2016 23:59:59 GMT", &t), 1);
    assert_int_equal(t, 1483228799);
    /* RFC 850 two-digit years below 70 are 20xx. */
    assert_int_equal(herald_http_date_parse("Wednesday, 09-Jun-21 10:18:14 GMT", &t), 1);
    assert_int_equal(t, 1623233894);
    assert_int_equal(herald_http_date_parse(NULL, &t), 0);
}

static void test_retry_after_garbage(void **state)
{
    (void)state;
    assert_rejected("soon");
    assert_rejected("");
    assert_rejected("   ");
    assert_rejected("-1");
    assert_rejected("+1");
    assert_rejected("1.5");
    assert_rejected("2 s");
    assert_rejected("2s");
    assert_rejected("0x10");
    assert_rejected("1e3");
    assert_rejected("99999999999999999999");
    assert_rejected("9999999999");
    assert_rejected("Sun, 32 Nov 1994 08:49:37 GMT");
    assert_rejected("Sun, 00 Nov 1994 08:49:37 GMT");
    assert_rejected("Sun, 06 Nov 1994 24:49:37 GMT");
    assert_rejected("Sun, 06 Nov 1994 08:60:37 GMT");
    assert_rejected("Sun, 06 Nov 1994 08:49:61 GMT");
    assert_rejected("Sun, 06 Foo 1994 08:49:37 GMT");
    assert_rejected("Sun, 06 Nov 1994 08:49:37 UTC");
    assert_rejected("Sun, 06 Nov 1994 08:49:37");
    assert_rejected("Sun, 06 Nov 1994 08:49:37 GMT trailing");
    assert_rejected("Sun, 6 Nov 1994 08:49:37 GMT");
    assert_rejected("Sun, 06 Nov 94 08:49:37 GMT");
    assert_rejected("Sunday, 06-Nov-1994 08:49:37 GMT");
    assert_rejected("Sun Nov  6 08:49:37");
    assert_rejected("Sun Nov  6 08:49 1994");
    assert_rejected("Nov  6 08:49:37 1994");
    assert_rejected(NULL);

    /* 10 KB strings: digits, letters, a date followed by junk. */
    size_t n = 10 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, '9', n);
    big[n] = '\0';
    assert_rejected(big);
    memset(big, 'a', n);
    assert_rejected(big);
    memset(big, ' ', n);
    memcpy(big, "Sun, 06 Nov 1994 08:49:37 GMT", 29);
    big[n - 1] = 'x';
    assert_rejected(big);
    memset(big, ',', n);
    assert_rejected(big);
    free(big);
}

/* Regression (was a bug: the guard ran before each digit was appended, so
 * up to 1000000009 s passed): delta-seconds over 100000000 s (three years)
 * are out of range. */
static void test_retry_after_over_three_years_refused(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("100000000", 0), 100000000000LL); /* the bound itself */
    assert_rejected("100000001");
    assert_rejected("999999999");
    assert_rejected("1000000000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_zero_failures_is_zero),
        cmocka_unit_test(test_bound_doubles_per_failure),
        cmocka_unit_test(test_bound_capped),
        cmocka_unit_test(test_bound_no_overflow),
        cmocka_unit_test(test_delay_zero_failures),
        cmocka_unit_test(test_delay_within_bound_edges),
        cmocka_unit_test(test_delay_always_within_bound),
        cmocka_unit_test(test_jitter_spread),
        cmocka_unit_test(test_random_next_reference),
        cmocka_unit_test(test_random_next_deterministic_and_varied),
        cmocka_unit_test(test_retry_after_delta_seconds),
        cmocka_unit_test(test_retry_after_imf_fixdate),
        cmocka_unit_test(test_retry_after_rfc850_and_asctime),
        cmocka_unit_test(test_http_date_forms),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_retry_after_over_three_years_refused),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
