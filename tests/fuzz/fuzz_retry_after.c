/* libFuzzer target for src/backoff.c: herald_retry_after_parse and
 * herald_http_date_parse on a NUL-terminated copy of the input (the form the
 * core hands them: a header value), and the backoff bounds on numbers taken
 * from the input's first bytes. Besides crashes it traps on broken promises
 * of backoff.h: a negative delay, a result written on failure, a date that
 * does not read back the same after formatting, a Retry-After that disagrees
 * with the date parser, a backoff bound over its cap or a jittered delay over
 * its bound. See docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)

#define UNSET INT64_C(0x5a5a5a5a5a5a5a5a)

/* Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm),
 * written independently of backoff.c's inverse. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* A parsed date, formatted as IMF-fixdate, parses back to the same instant
 * (the day name is not checked by the parser: any will do). Dates outside
 * the four-digit years the format can carry are left alone. */
static void check_round_trip(int64_t seconds)
{
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rest = seconds - days * 86400;
    int64_t year;
    int month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 0 || year > 9999)
        return;
    static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char text[64];
    snprintf(text, sizeof text, "Mon, %02d %s %04d %02d:%02d:%02d GMT", day, months[month - 1],
             (int)year, (int)(rest / 3600), (int)(rest / 60 % 60), (int)(rest % 60));
    int64_t again = UNSET;
    CHECK(herald_http_date_parse(text, &again) == 1);
    CHECK(again == seconds);
}

static void check_date(const char *text)
{
    int64_t seconds = UNSET;
    int ok = herald_http_date_parse(text, &seconds);
    CHECK(ok == 0 || ok == 1);
    if (!ok) {
        CHECK(seconds == UNSET);
        return;
    }
    /* Years 0000-9999 (two-digit years land in 1970-2069), so within these. */
    CHECK(seconds >= INT64_C(-62167219200) && seconds <= INT64_C(253402300800));
    check_round_trip(seconds);

    /* Retry-After with a date agrees with the date parser, for any clock. */
    static const int64_t clocks[] = {0, INT64_C(1795500702219), INT64_C(-1000),
                                     INT64_C(253402300800000)};
    for (size_t i = 0; i < sizeof clocks / sizeof *clocks; i++) {
        int64_t delay = UNSET;
        CHECK(herald_retry_after_parse(text, clocks[i], &delay) == 1);
        int64_t expected = seconds * 1000 - clocks[i];
        CHECK(delay == (expected > 0 ? expected : 0));
    }
}

static void check_retry_after(const char *text)
{
    static const int64_t clocks[] = {0, INT64_C(1795500702219)};
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    int delta = *p >= '0' && *p <= '9';
    for (size_t i = 0; i < sizeof clocks / sizeof *clocks; i++) {
        int64_t delay = UNSET;
        int ok = herald_retry_after_parse(text, clocks[i], &delay);
        CHECK(ok == 0 || ok == 1);
        if (!ok) {
            CHECK(delay == UNSET);
            continue;
        }
        CHECK(delay >= 0);
        if (delta) {
            /* delta-seconds: whole seconds, at most 100,000,000 of them, and
             * independent of the clock. */
            CHECK(delay % 1000 == 0 && delay <= INT64_C(100000000000));
        } else {
            int64_t seconds = UNSET;
            CHECK(herald_http_date_parse(p, &seconds) == 1);
        }
    }
}

/* Numbers from the first 20 bytes: base, cap, failures, random. */
static void check_backoff(const uint8_t *data, size_t size)
{
    uint8_t raw[20] = {0};
    memcpy(raw, data, size < sizeof raw ? size : sizeof raw);
    uint32_t base, cap, failures;
    uint64_t random;
    memcpy(&base, raw, 4);
    memcpy(&cap, raw + 4, 4);
    memcpy(&failures, raw + 8, 4);
    memcpy(&random, raw + 12, 8);
    /* The options allow a base of 1 ms to 1 day; 0 is outside the contract. */
    base = base % 86400000u + 1;
    uint32_t bound = herald_backoff_bound_ms(base, cap, failures);
    if (failures == 0) {
        CHECK(bound == 0);
    } else {
        CHECK(bound <= cap);
        /* min(cap, base * 2^(failures - 1)) */
        uint64_t doubled = base;
        for (uint32_t i = 1; i < failures && doubled < cap; i++)
            doubled *= 2;
        CHECK(bound == (doubled < cap ? doubled : cap));
        if (failures < UINT32_MAX)
            CHECK(herald_backoff_bound_ms(base, cap, failures + 1) >= bound);
    }
    CHECK(herald_backoff_delay_ms(base, cap, failures, random) <= bound);
    uint64_t state = random, copy = random;
    CHECK(herald_random_next(&state) == herald_random_next(&copy) && state == copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    check_date(text);
    check_retry_after(text);
    check_backoff(data, size);
    free(text);
    return 0;
}
