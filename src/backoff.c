#include "backoff.h"

#include <ctype.h>
#include <string.h>

uint32_t herald_backoff_bound_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t failures)
{
    if (failures == 0)
        return 0;
    uint64_t bound = base_ms;
    for (uint32_t i = 1; i < failures && bound < cap_ms; i++)
        bound *= 2;
    return bound > cap_ms ? cap_ms : (uint32_t)bound;
}

uint32_t herald_backoff_delay_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t failures,
                                 uint64_t random)
{
    uint32_t bound = herald_backoff_bound_ms(base_ms, cap_ms, failures);
    return (uint32_t)(random % ((uint64_t)bound + 1));
}

uint64_t herald_random_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int parse_month(const char **p)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, month_names[i], 3) == 0) {
            *p += 3;
            return i + 1;
        }
    }
    return 0;
}

/* Exactly `width` digits (width 0: one or two digits, space-padded allowed). */
static int parse_digits(const char **p, int width, int *out)
{
    int value = 0, n = 0;
    if (width == 0 && **p == ' ')
        (*p)++;
    while (isdigit((unsigned char)**p) && (width == 0 ? n < 2 : n < width)) {
        value = value * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    if (n == 0 || (width > 0 && n != width))
        return 0;
    *out = value;
    return 1;
}

static int expect(const char **p, const char *literal)
{
    size_t n = strlen(literal);
    if (strncmp(*p, literal, n) != 0)
        return 0;
    *p += n;
    return 1;
}

static int parse_clock(const char **p, int *h, int *mi, int *s)
{
    return parse_digits(p, 2, h) && expect(p, ":") && parse_digits(p, 2, mi) &&
           expect(p, ":") && parse_digits(p, 2, s);
}

static int skip_day_name(const char **p, int long_form)
{
    const char *start = *p;
    while (isalpha((unsigned char)**p))
        (*p)++;
    size_t n = (size_t)(*p - start);
    return long_form ? n >= 6 : n == 3;
}

int herald_http_date_parse(const char *value, int64_t *unix_seconds)
{
    if (value == NULL)
        return 0;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    int day = 0, month = 0, year = 0, h = 0, mi = 0, s = 0;
    const char *comma = strchr(p, ',');
    if (comma != NULL && comma - p == 3) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if (!skip_day_name(&p, 0) || !expect(&p, ", ") || !parse_digits(&p, 2, &day) ||
            !expect(&p, " ") || !(month = parse_month(&p)) || !expect(&p, " ") ||
            !parse_digits(&p, 4, &year) || !expect(&p, " ") || !parse_clock(&p, &h, &mi, &s) ||
            !expect(&p, " GMT"))
            return 0;
    } else if (comma != NULL) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        if (!skip_day_name(&p, 1) || !expect(&p, ", ") || !parse_digits(&p, 2, &day) ||
            !expect(&p, "-") || !(month = parse_month(&p)) || !expect(&p, "-") ||
            !parse_digits(&p, 2, &year) || !expect(&p, " ") || !parse_clock(&p, &h, &mi, &s) ||
            !expect(&p, " GMT"))
            return 0;
        year += year < 70 ? 2000 : 1900;
    } else {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        if (!skip_day_name(&p, 0) || !expect(&p, " ") || !(month = parse_month(&p)) ||
            !expect(&p, " ") || !parse_digits(&p, 0, &day) || !expect(&p, " ") ||
            !parse_clock(&p, &h, &mi, &s) || !expect(&p, " ") || !parse_digits(&p, 4, &year))
            return 0;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    static const int days_in_month[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int month_days = month == 2 && !leap ? 28 : days_in_month[month - 1];
    if (*p != '\0' || day < 1 || day > month_days || h > 23 || mi > 59 || s > 60)
        return 0;
    *unix_seconds = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + h * 3600 +
                    mi * 60 + s;
    return 1;
}

int herald_retry_after_parse(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    if (value == NULL)
        return 0;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (isdigit((unsigned char)*p)) {
        int64_t seconds = 0;
        while (isdigit((unsigned char)*p)) {
            seconds = seconds * 10 + (*p - '0');
            if (seconds > 100000000) /* over three years: nonsense */
                return 0;
            p++;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0')
            return 0;
        *delay_ms = seconds * 1000;
        return 1;
    }
    int64_t when;
    if (!herald_http_date_parse(p, &when))
        return 0;
    int64_t delay = when * 1000 - now_ms;
    *delay_ms = delay > 0 ? delay : 0;
    return 1;
}
