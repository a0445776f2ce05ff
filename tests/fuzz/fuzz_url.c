/* libFuzzer target for src/url.c: the parser on raw bytes (no terminator, so
 * AddressSanitizer sees any read past the input), the query iterator and the
 * percent-decoder over what it finds, and the page context on a C-string copy.
 * Besides crashes it traps on broken promises of url.h: spans outside the
 * input, a decoder that disagrees with itself across buffer sizes, a page
 * context that disagrees with the parser. See docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)

/* Absent spans are {NULL, 0}; present ones lie inside [begin, end). */
static void check_span(herald_span span, const char *begin, const char *end)
{
    if (span.ptr == NULL) {
        CHECK(span.len == 0);
        return;
    }
    CHECK(span.ptr >= begin && span.ptr <= end);
    CHECK(span.len <= (size_t)(end - span.ptr));
}

/* Decode into a small buffer and into one that always fits: same length,
 * same prefix, both terminated. */
static void check_decode(herald_span span, int plus_as_space)
{
    char small[8];
    char *big = malloc(span.len + 1);
    if (big == NULL)
        return;
    size_t n = herald_percent_decode(span.ptr, span.len, big, span.len + 1, plus_as_space);
    CHECK(n <= span.len);
    CHECK(big[n] == '\0');
    size_t m = herald_percent_decode(span.ptr, span.len, small, sizeof small, plus_as_space);
    CHECK(m == n);
    size_t kept = n < sizeof small - 1 ? n : sizeof small - 1;
    CHECK(small[kept] == '\0');
    CHECK(memcmp(small, big, kept) == 0);
    CHECK(herald_percent_decode(span.ptr, span.len, NULL, 0, plus_as_space) == n);
    free(big);
}

static void check_query(herald_span query)
{
    if (query.ptr == NULL)
        return;
    const char *cursor = query.ptr, *end = query.ptr + query.len;
    herald_span key, value;
    size_t pairs = 0;
    while (herald_url_query_next(&cursor, end, &key, &value)) {
        /* Every pair takes at least one byte: the loop ends. */
        CHECK(++pairs <= query.len);
        check_span(key, query.ptr, end);
        check_span(value, query.ptr, end);
        CHECK(cursor <= end);
        check_decode(key, 1);
        check_decode(value, 1);
    }
}

static void check_page_context(const uint8_t *data, size_t size, int parsed)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';

    /* The same bytes as title and referrer exercise the UTF-8 checks. */
    json_t *page = NULL, *campaign = NULL;
    int rc = herald_url_page_context(text, text, text, &page, &campaign);
    /* With no NUL inside, the C string is the raw input: same verdict (the
     * page context may also fail for lack of memory; not under the fuzzer). */
    if (memchr(data, 0, size) == NULL)
        CHECK(rc == (parsed ? 0 : -1));
    if (rc == 0) {
        CHECK(json_is_object(page));
        CHECK(json_is_string(json_object_get(page, "url")));
        CHECK(json_is_string(json_object_get(page, "path")));
        CHECK(json_is_string(json_object_get(page, "search")));
        if (campaign != NULL) {
            CHECK(json_object_size(campaign) > 0);
            const char *name;
            json_t *value;
            json_object_foreach(campaign, name, value) {
                CHECK(json_is_string(value));
                CHECK(json_string_length(value) > 0 && json_string_length(value) <= 1024);
            }
        }
        char *dumped = json_dumps(page, JSON_COMPACT);
        free(dumped);
        json_decref(campaign);
        json_decref(page);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *input = (const char *)data;
    herald_url url;
    int rc = herald_url_parse(input, size, &url);
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        const char *end = input + size;
        herald_span spans[] = {url.scheme, url.userinfo, url.host,    url.port,
                               url.path,   url.query,    url.fragment};
        for (size_t i = 0; i < sizeof spans / sizeof *spans; i++) {
            check_span(spans[i], input, end);
            check_decode(spans[i], (int)(i & 1));
        }
        CHECK(url.scheme.len > 0 && url.host.ptr != NULL);
        CHECK(url.path.ptr == NULL || (url.path.len > 0 && url.path.ptr[0] == '/'));
        CHECK(url.port.len <= 5);
        check_query(url.query);
    } else {
        herald_url zero;
        memset(&zero, 0, sizeof zero);
        CHECK(memcmp(&url, &zero, sizeof url) == 0);
    }
    /* The decoder on the whole input, whatever it is. */
    herald_span all = {input, size};
    check_decode(all, 1);
    check_page_context(data, size, rc == 0);
    return 0;
}
