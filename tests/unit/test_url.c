/* Unit tests: URL parsing (src/url.c) — the component parser, the query
 * iterator, percent-decoding, and the page/campaign context built from them,
 * including the worst cases for time on megabyte inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "url.h"

#define MEGABYTE (1024 * 1024)

/* ---- helpers ---- */

/* Parse a C string literal (no embedded NUL). */
static int parse(const char *text, herald_url *url)
{
    return herald_url_parse(text, strlen(text), url);
}

static void assert_span(herald_span span, const char *expected)
{
    if (expected == NULL) {
        assert_null(span.ptr);
        assert_int_equal(span.len, 0);
        return;
    }
    assert_non_null(span.ptr);
    assert_int_equal(span.len, strlen(expected));
    assert_memory_equal(span.ptr, expected, span.len);
}

static void assert_rejected(const char *text)
{
    herald_url url;
    memset(&url, 0xa5, sizeof url);
    assert_int_equal(parse(text, &url), -1);
    herald_url zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&url, &zero, sizeof url);
}

static void assert_json_string(const json_t *object, const char *key, const char *expected)
{
    const json_t *value = json_object_get(object, key);
    assert_non_null(value);
    assert_true(json_is_string(value));
    assert_string_equal(json_string_value(value), expected);
}

static void assert_json_absent(const json_t *object, const char *key)
{
    assert_null(json_object_get(object, key));
}

/* Page context of url, which must parse; returns the campaign (may be NULL)
 * and frees the page. The caller frees the campaign. */
static json_t *campaign_of(const char *url)
{
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context(url, NULL, NULL, &page, &campaign), 0);
    assert_non_null(page);
    json_decref(page);
    return campaign;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Wall-clock limit for one megabyte-sized worst case: 1 s, unless plain input
 * of that size is already slow here (CI runs this suite under valgrind), then
 * 20 times what the plain input took. A quadratic pass over a megabyte takes
 * minutes, so either limit tells linear from not. */
static double megabyte_budget(void)
{
    const char *prefix = "http://h/?utm_source=";
    size_t n = strlen(prefix);
    char *url = malloc(n + MEGABYTE + 1);
    assert_non_null(url);
    memcpy(url, prefix, n);
    memset(url + n, 'a', MEGABYTE);
    url[n + MEGABYTE] = '\0';

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    json_t *page = NULL, *campaign = NULL;
    int rc = herald_url_page_context(url, NULL, NULL, &page, &campaign);
    char small[8];
    size_t decoded = herald_percent_decode(url + n, MEGABYTE, small, sizeof small, 1);
    double plain = seconds_since(&start);

    json_decref(campaign);
    json_decref(page);
    free(url);
    assert_int_equal(rc, 0);
    assert_int_equal(decoded, MEGABYTE);
    return plain * 20 > 1.0 ? plain * 20 : 1.0;
}

/* ---- herald_url_parse ---- */

static void test_parse_plain_http(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://example.com/a/b?x=1&y=2#top", &url), 0);
    assert_span(url.scheme, "http");
    assert_span(url.userinfo, NULL);
    assert_span(url.host, "example.com");
    assert_span(url.port, NULL);
    assert_span(url.path, "/a/b");
    assert_span(url.query, "x=1&y=2");
    assert_span(url.fragment, "top");
}

static void test_parse_https_with_port(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("https://shop.example.com:8443/cart", &url), 0);
    assert_span(url.scheme, "https");
    assert_span(url.host, "shop.example.com");
    assert_span(url.port, "8443");
    assert_span(url.path, "/cart");
    assert_span(url.query, NULL);
    assert_span(url.fragment, NULL);
}

static void test_parse_userinfo_last_at_separates(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("https://u:p@ss@host/", &url), 0);
    assert_span(url.userinfo, "u:p@ss");
    assert_span(url.host, "host");
    assert_span(url.path, "/");
    /* The '@' in a query is not the authority's. */
    assert_int_equal(parse("http://host/p?mail=a@b", &url), 0);
    assert_span(url.userinfo, NULL);
    assert_span(url.host, "host");
    assert_span(url.query, "mail=a@b");
    /* An empty userinfo is present. */
    assert_int_equal(parse("http://@host/", &url), 0);
    assert_span(url.userinfo, "");
    assert_span(url.host, "host");
}

static void test_parse_ipv6_literal(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://[::1]/status", &url), 0);
    assert_span(url.host, "::1");
    assert_span(url.port, NULL);
    assert_span(url.path, "/status");
    assert_int_equal(parse("http://[2001:db8::7]", &url), 0);
    assert_span(url.host, "2001:db8::7");
    assert_span(url.path, NULL);
}

static void test_parse_ipv6_literal_with_port(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://user@[::1]:8080/x?q", &url), 0);
    assert_span(url.userinfo, "user");
    assert_span(url.host, "::1");
    assert_span(url.port, "8080");
    assert_span(url.path, "/x");
    assert_span(url.query, "q");
}

static void test_parse_ipv6_malformed(void **state)
{
    (void)state;
    assert_rejected("http://[::1/x");
    assert_rejected("http://[::1");
    assert_rejected("http://[");
    assert_rejected("http://[::1]x/");    /* junk after the bracket */
    assert_rejected("http://[::1]]/");
    assert_rejected("http://[[::1]/");
    assert_rejected("http://[]/");         /* empty host */
    assert_rejected("http://host]/");      /* bracket outside a literal */
    assert_rejected("http://ho[st/");
}

static void test_parse_port_non_numeric(void **state)
{
    (void)state;
    assert_rejected("http://host:8o/");
    assert_rejected("http://host:http/");
    assert_rejected("http://host:-1/");
    assert_rejected("http://host:+80/");
    assert_rejected("http://host:80:81/");
    assert_rejected("http://[::1]:x/");
}

static void test_parse_port_range(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host:65535/", &url), 0);
    assert_span(url.port, "65535");
    assert_int_equal(parse("http://host:0", &url), 0);
    assert_span(url.port, "0");
    assert_int_equal(parse("http://host:00080/", &url), 0);
    assert_span(url.port, "00080");
    assert_rejected("http://host:65536/");
    assert_rejected("http://host:99999/");
    assert_rejected("http://host:000080/"); /* six digits */
    assert_rejected("http://host:4294967376/");
}

static void test_parse_port_empty(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host:/p", &url), 0);
    assert_span(url.host, "host");
    assert_span(url.port, "");
    assert_span(url.path, "/p");
}

static void test_parse_no_path(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host", &url), 0);
    assert_span(url.host, "host");
    assert_span(url.path, NULL);
    assert_span(url.query, NULL);
    assert_span(url.fragment, NULL);
    assert_int_equal(parse("http://host?a=1#f", &url), 0);
    assert_span(url.path, NULL);
    assert_span(url.query, "a=1");
    assert_span(url.fragment, "f");
    assert_int_equal(parse("http://host#f", &url), 0);
    assert_span(url.path, NULL);
    assert_span(url.query, NULL);
    assert_span(url.fragment, "f");
}

static void test_parse_root_path(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host/", &url), 0);
    assert_span(url.path, "/");
    assert_span(url.query, NULL);
    assert_int_equal(parse("http://host//a//", &url), 0);
    assert_span(url.path, "//a//");
}

static void test_parse_empty_query_and_fragment_present(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host/p?#", &url), 0);
    assert_span(url.query, "");
    assert_span(url.fragment, "");
}

static void test_parse_fragment_with_question_mark(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://host/p#a?b=1", &url), 0);
    assert_span(url.path, "/p");
    assert_span(url.query, NULL);
    assert_span(url.fragment, "a?b=1");
    assert_int_equal(parse("http://host/p?x=1#y?z=2#w", &url), 0);
    assert_span(url.query, "x=1");
    assert_span(url.fragment, "y?z=2#w");
}

static void test_parse_uppercase_scheme(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("HTTPS://Example.COM/A", &url), 0);
    assert_span(url.scheme, "HTTPS");
    assert_span(url.host, "Example.COM");
    assert_span(url.path, "/A");
    /* The http(s) host rule ignores case too. */
    assert_rejected("HTTP:///path");
    assert_rejected("hTtPs://");
}

static void test_parse_other_schemes_may_have_empty_host(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("file:///etc/hosts", &url), 0);
    assert_span(url.scheme, "file");
    assert_span(url.host, "");
    assert_span(url.path, "/etc/hosts");
    assert_int_equal(parse("android-app+x.y://", &url), 0);
    assert_span(url.scheme, "android-app+x.y");
    assert_span(url.host, "");
    assert_span(url.path, NULL);
}

static void test_parse_trims_whitespace(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse(" \t\r\n\f\vhttp://host/p?q=1#f \t\r\n\f\v", &url), 0);
    assert_span(url.scheme, "http");
    assert_span(url.path, "/p");
    assert_span(url.query, "q=1");
    assert_span(url.fragment, "f");
}

static void test_parse_embedded_space_or_control_rejected(void **state)
{
    (void)state;
    assert_rejected("http://host/a b");
    assert_rejected("http://ho st/");
    assert_rejected("http://host/a\tb");
    assert_rejected("http://host/?q=a\nb");
    assert_rejected("http://host/\x01");
    assert_rejected("http://host/#\x1f");
    assert_rejected("http://host/\x7f");
    assert_rejected("http://host/x\x7f");
}

static void test_parse_nul_inside_len_rejected(void **state)
{
    (void)state;
    static const char text[] = "http://host/a\0b";
    herald_url url;
    assert_int_equal(herald_url_parse(text, sizeof text - 1, &url), -1);
    /* Trailing NUL counts as a byte, not as the end. */
    assert_int_equal(herald_url_parse(text, 14, &url), -1);
    /* Up to the NUL it is a URL. */
    assert_int_equal(herald_url_parse(text, 13, &url), 0);
    assert_span(url.path, "/a");
}

static void test_parse_reads_only_len_bytes(void **state)
{
    (void)state;
    /* An exact-size heap copy without a terminator: a sanitizer build would
     * catch any read past len. */
    static const char text[] = "https://u@h:1/p?q#f";
    size_t n = sizeof text - 1;
    for (size_t len = 0; len <= n; len++) {
        char *copy = malloc(len > 0 ? len : 1);
        assert_non_null(copy);
        memcpy(copy, text, len);
        herald_url url;
        int rc = herald_url_parse(copy, len, &url);
        /* "https://u" is the shortest prefix with a host; "https://u@" has
         * none again. */
        assert_int_equal(rc, len >= 9 && len != 10 ? 0 : -1);
        free(copy);
    }
}

static void test_parse_not_urls(void **state)
{
    (void)state;
    assert_rejected("");
    assert_rejected(" \t ");
    assert_rejected("example.com/x");
    assert_rejected("//host/x");
    assert_rejected("mailto:a@b");
    assert_rejected("http://");
    assert_rejected("https://?q");
    assert_rejected("http://#f");
    assert_rejected("http://@/");
    assert_rejected("javascript:alert(1)");
    assert_rejected("http:/host");
    assert_rejected("http:host");
    assert_rejected("1http://host/");
    assert_rejected("ht_tp://host/");
    assert_rejected(":/");
    assert_rejected("://host");
    assert_rejected("http");
    assert_rejected("http:");
    assert_rejected("http:/");

    herald_url url;
    assert_int_equal(herald_url_parse(NULL, 0, &url), -1);
    assert_int_equal(herald_url_parse("http://h/", 9, NULL), -1);
}

static void test_parse_high_bytes_accepted(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://h\xc3\xa9.example/caf\xc3\xa9?q=\xff#\x80", &url), 0);
    assert_span(url.host, "h\xc3\xa9.example");
    assert_span(url.path, "/caf\xc3\xa9");
    assert_span(url.query, "q=\xff");
    assert_span(url.fragment, "\x80");
}

/* ---- herald_url_query_next ---- */

static void test_query_pairs_and_missing_value(void **state)
{
    (void)state;
    const char *query = "a&b=1&c=x=y&=v";
    const char *cursor = query, *end = query + strlen(query);
    herald_span key, value;

    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "a");
    assert_span(value, NULL);
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "b");
    assert_span(value, "1");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "c");
    assert_span(value, "x=y");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "");
    assert_span(value, "v");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 0);
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 0);
}

static void test_query_skips_empty_pairs(void **state)
{
    (void)state;
    const char *query = "&&a=1&&&b=&&";
    const char *cursor = query, *end = query + strlen(query);
    herald_span key, value;

    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "a");
    assert_span(value, "1");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "b");
    assert_span(value, "");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 0);
    assert_ptr_equal(cursor, end);
}

static void test_query_from_parsed_url(void **state)
{
    (void)state;
    herald_url url;
    assert_int_equal(parse("http://h/?a&b=1#c=2", &url), 0);
    const char *cursor = url.query.ptr, *end = url.query.ptr + url.query.len;
    herald_span key, value;
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "a");
    assert_span(value, NULL);
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 1);
    assert_span(key, "b");
    assert_span(value, "1");
    assert_int_equal(herald_url_query_next(&cursor, end, &key, &value), 0);

    /* Absent and empty queries have no pairs. */
    const char *none = NULL;
    assert_int_equal(herald_url_query_next(&none, NULL, &key, &value), 0);
    assert_int_equal(parse("http://h/?", &url), 0);
    cursor = url.query.ptr;
    assert_int_equal(herald_url_query_next(&cursor, url.query.ptr, &key, &value), 0);
}

/* ---- herald_percent_decode ---- */

static void test_decode_upper_and_lower_hex(void **state)
{
    (void)state;
    char out[64];
    const char *in = "a%20b%2Fc%2fd%C3%a9";
    assert_int_equal(herald_percent_decode(in, strlen(in), out, sizeof out, 0), 9);
    assert_string_equal(out, "a b/c/d\xc3\xa9");
}

static void test_decode_invalid_escapes_copied(void **state)
{
    (void)state;
    char out[64];
    const char *cases[][2] = {
        {"%zz", "%zz"}, {"%4", "%4"},   {"%", "%"},       {"100%", "100%"},
        {"%%41", "%A"}, {"%g1%1g", "%g1%1g"}, {"a%2", "a%2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = herald_percent_decode(cases[i][0], strlen(cases[i][0]), out, sizeof out, 1);
        assert_int_equal(n, strlen(cases[i][1]));
        assert_string_equal(out, cases[i][1]);
    }
}

static void test_decode_plus_as_space(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(herald_percent_decode("a+b%2B", 6, out, sizeof out, 1), 4);
    assert_string_equal(out, "a b+");
    assert_int_equal(herald_percent_decode("a+b%2B", 6, out, sizeof out, 0), 4);
    assert_string_equal(out, "a+b+");
}

static void test_decode_truncates_and_reports_full_length(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(herald_percent_decode("abc%64ef", 8, out, sizeof out, 0), 6);
    assert_string_equal(out, "abc");
    assert_int_equal(herald_percent_decode("abcdef", 6, out, 1, 0), 6);
    assert_string_equal(out, "");
    /* Exactly fits: 3 bytes and the NUL. */
    assert_int_equal(herald_percent_decode("a%62c", 5, out, sizeof out, 0), 3);
    assert_string_equal(out, "abc");
}

static void test_decode_outlen_zero_writes_nothing(void **state)
{
    (void)state;
    char out[4] = {'x', 'x', 'x', 'x'};
    assert_int_equal(herald_percent_decode("a%20b", 5, out, 0, 0), 3);
    assert_memory_equal(out, "xxxx", 4);
    assert_int_equal(herald_percent_decode("a%20b", 5, NULL, 0, 0), 3);
    assert_int_equal(herald_percent_decode(NULL, 0, out, sizeof out, 0), 0);
    assert_string_equal(out, "");
}

/* ---- herald_url_page_context: page ---- */

static void test_page_context_fields(void **state)
{
    (void)state;
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context("https://example.com/docs/a%20b?x=1#frag",
                                             "https://google.com/", "Docs \xe2\x80\x94 A", &page,
                                             &campaign),
                     0);
    assert_non_null(page);
    assert_int_equal(json_object_size(page), 5);
    assert_json_string(page, "url", "https://example.com/docs/a%20b?x=1#frag");
    assert_json_string(page, "path", "/docs/a%20b"); /* raw, not decoded */
    assert_json_string(page, "search", "?x=1");
    assert_json_string(page, "referrer", "https://google.com/");
    assert_json_string(page, "title", "Docs \xe2\x80\x94 A");
    assert_null(campaign);
    json_decref(page);
}

static void test_page_context_omits_absent_inputs(void **state)
{
    (void)state;
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context("http://h/p", NULL, NULL, &page, &campaign), 0);
    assert_int_equal(json_object_size(page), 3);
    assert_json_absent(page, "referrer");
    assert_json_absent(page, "title");
    json_decref(page);
}

static void test_page_context_search_empty_vs_query(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"http://h/p", ""},
        {"http://h/p?", ""},
        {"http://h/p?#x=1", ""},
        {"http://h/p?x=1", "?x=1"},
        {"http://h?x=1#y", "?x=1"},
        {"http://h/p?&", "?&"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *page = NULL, *campaign = NULL;
        assert_int_equal(herald_url_page_context(cases[i][0], NULL, NULL, &page, &campaign), 0);
        assert_json_string(page, "search", cases[i][1]);
        json_decref(page);
    }
}

static void test_page_context_missing_path(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"http://h", "/"},        {"HTTPS://h?x=1", "/"}, {"wss://h#f", "/"},
        {"myapp://h?x=1", ""},    {"http://h/", "/"},     {"file:///", "/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *page = NULL, *campaign = NULL;
        assert_int_equal(herald_url_page_context(cases[i][0], NULL, NULL, &page, &campaign), 0);
        assert_json_string(page, "path", cases[i][1]);
        json_decref(page);
    }
}

static void test_page_context_url_is_trimmed(void **state)
{
    (void)state;
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(
        herald_url_page_context("  \thttp://h/p?q=1 \n", NULL, NULL, &page, &campaign), 0);
    assert_json_string(page, "url", "http://h/p?q=1");
    json_decref(page);
}

static void test_page_context_rejects_non_url(void **state)
{
    (void)state;
    json_t *sentinel = json_object();
    const char *bad[] = {"", "example.com/x", "mailto:a@b", "http://", "http://h/a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *page = sentinel, *campaign = sentinel;
        assert_int_equal(herald_url_page_context(bad[i], NULL, NULL, &page, &campaign), -1);
        assert_ptr_equal(page, sentinel);
        assert_ptr_equal(campaign, sentinel);
    }
    json_t *page = sentinel, *campaign = sentinel;
    assert_int_equal(herald_url_page_context(NULL, NULL, NULL, &page, &campaign), -1);
    assert_int_equal(herald_url_page_context("http://h/", NULL, NULL, NULL, &campaign), -1);
    assert_int_equal(herald_url_page_context("http://h/", NULL, NULL, &page, NULL), -1);
    assert_ptr_equal(page, sentinel);
    json_decref(sentinel);
}

static void test_page_context_invalid_utf8_title_referrer_omitted(void **state)
{
    (void)state;
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context("http://h/", "http://r/\xff", "caf\xc3", &page,
                                             &campaign),
                     0);
    assert_json_absent(page, "referrer");
    assert_json_absent(page, "title");
    json_decref(page);
    /* Surrogates and overlong forms are invalid too (as jansson holds). */
    assert_int_equal(herald_url_page_context("http://h/", "\xed\xa0\x80", "\xc0\xaf", &page,
                                             &campaign),
                     0);
    assert_json_absent(page, "referrer");
    assert_json_absent(page, "title");
    json_decref(page);
    /* Empty strings are given, so kept. */
    assert_int_equal(herald_url_page_context("http://h/", "", "", &page, &campaign), 0);
    assert_json_string(page, "referrer", "");
    assert_json_string(page, "title", "");
    json_decref(page);
}

static void test_page_context_invalid_utf8_url_percent_encoded(void **state)
{
    (void)state;
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context("http://h/caf\xc3\xa9/\xff?q=\xc3", NULL, NULL,
                                             &page, &campaign),
                     0);
    assert_json_string(page, "url", "http://h/caf\xc3\xa9/%FF?q=%C3");
    assert_json_string(page, "path", "/caf\xc3\xa9/%FF");
    assert_json_string(page, "search", "?q=%C3");
    json_decref(page);
}

/* ---- herald_url_page_context: campaign ---- */

static void test_campaign_all_utm_fields(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("https://h/?utm_source=newsletter&utm_medium=email"
                                   "&utm_campaign=spring&utm_term=shoes&utm_content=top&x=1");
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), 5);
    assert_json_string(campaign, "source", "newsletter");
    assert_json_string(campaign, "medium", "email");
    assert_json_string(campaign, "name", "spring");
    assert_json_string(campaign, "term", "shoes");
    assert_json_string(campaign, "content", "top");
    json_decref(campaign);
}

static void test_campaign_click_ids(void **state)
{
    (void)state;
    static const char *const ids[] = {"gclid",   "gbraid", "wbraid", "dclid",
                                      "fbclid",  "msclkid", "ttclid", "twclid",
                                      "li_fat_id", "yclid", "mc_cid"};
    char url[512] = "https://h/?";
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        strcat(url, ids[i]);
        strcat(url, "=v-");
        strcat(url, ids[i]);
        strcat(url, "&");
    }
    json_t *campaign = campaign_of(url);
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), sizeof ids / sizeof *ids);
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        char expected[32] = "v-";
        strcat(expected, ids[i]);
        assert_json_string(campaign, ids[i], expected);
    }
    json_decref(campaign);
}

static void test_campaign_keys_case_insensitive(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("http://h/?utm_Source=a&UTM_MEDIUM=b&GCLID=c&Li_Fat_Id=d");
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), 4);
    assert_json_string(campaign, "source", "a");
    assert_json_string(campaign, "medium", "b");
    assert_json_string(campaign, "gclid", "c");
    assert_json_string(campaign, "li_fat_id", "d");
    json_decref(campaign);
}

static void test_campaign_values_decoded(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("http://h/?utm_term=red+shoes%20%26%20socks"
                                   "&utm%5Fsource=enc%2Bkey&utm_content=caf%C3%A9&utm_name=x"
                                   "&utm_medium=100%");
    assert_non_null(campaign);
    assert_json_string(campaign, "term", "red shoes & socks");
    assert_json_string(campaign, "source", "enc+key");
    assert_json_string(campaign, "content", "caf\xc3\xa9");
    assert_json_string(campaign, "medium", "100%");
    assert_int_equal(json_object_size(campaign), 4); /* utm_name is not a utm key */
    json_decref(campaign);
}

static void test_campaign_first_occurrence_wins(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("http://h/?utm_source=first&utm_source=second&UTM_SOURCE=third");
    assert_non_null(campaign);
    assert_json_string(campaign, "source", "first");
    json_decref(campaign);
}

static void test_campaign_empty_value_ignored(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("http://h/?utm_source=&utm_medium&utm_source=later");
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), 1);
    assert_json_string(campaign, "source", "later");
    json_decref(campaign);
    assert_null(campaign_of("http://h/?utm_source=&utm_medium&gclid="));
}

static void test_campaign_ignores_fragment(void **state)
{
    (void)state;
    assert_null(campaign_of("http://h/p#utm_source=x"));
    assert_null(campaign_of("http://h/p#?utm_source=x"));
    json_t *campaign = campaign_of("http://h/p?utm_medium=m#utm_source=x");
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), 1);
    assert_json_string(campaign, "medium", "m");
    json_decref(campaign);
}

static void test_campaign_absent_is_null(void **state)
{
    (void)state;
    assert_null(campaign_of("http://h/"));
    assert_null(campaign_of("http://h/?"));
    assert_null(campaign_of("http://h/?q=shoes&utm_sourcex=1&xutm_source=2&utm=3"));
}

static void test_campaign_invalid_utf8_skipped(void **state)
{
    (void)state;
    json_t *campaign = campaign_of("http://h/?utm_source=%FF&utm_medium=ok&utm_term=a%C3"
                                   "&utm_content=%ED%A0%80&gclid=a%00b&utm_source=good");
    assert_non_null(campaign);
    assert_int_equal(json_object_size(campaign), 2);
    assert_json_string(campaign, "medium", "ok");
    /* The skipped occurrence did not count as the first. */
    assert_json_string(campaign, "source", "good");
    json_decref(campaign);
    /* A raw byte >= 0x80 that is not UTF-8 is skipped the same way. */
    assert_null(campaign_of("http://h/?utm_source=\xff"));
}

static void test_campaign_long_value_truncated(void **state)
{
    (void)state;
    const char *prefix = "http://h/?utm_source=";
    size_t n = strlen(prefix);
    char *url = malloc(n + 5000 + 1);
    assert_non_null(url);
    memcpy(url, prefix, n);
    memset(url + n, 'a', 5000);
    url[n + 5000] = '\0';
    json_t *campaign = campaign_of(url);
    assert_non_null(campaign);
    const json_t *source = json_object_get(campaign, "source");
    assert_int_equal(json_string_length(source), 1024);
    assert_int_equal(strspn(json_string_value(source), "a"), 1024);
    json_decref(campaign);
    free(url);
}

static void test_campaign_truncation_keeps_utf8_whole(void **state)
{
    (void)state;
    /* 1022 'a' then U+20AC (3 bytes, encoded): the limit falls inside the
     * euro sign, so it is dropped entirely. */
    const char *prefix = "http://h/?utm_term=";
    size_t n = strlen(prefix);
    char *url = malloc(n + 1022 + 9 + 3 + 1);
    assert_non_null(url);
    memcpy(url, prefix, n);
    memset(url + n, 'a', 1022);
    memcpy(url + n + 1022, "%E2%82%ACbbb", 13);
    json_t *campaign = campaign_of(url);
    assert_non_null(campaign);
    assert_int_equal(json_string_length(json_object_get(campaign, "term")), 1022);
    json_decref(campaign);

    /* 1021 'a' then the euro sign: ends exactly at 1024, kept. */
    memset(url + n, 'a', 1021);
    memcpy(url + n + 1021, "%E2%82%ACbbb", 13);
    campaign = campaign_of(url);
    assert_non_null(campaign);
    const char *term = json_string_value(json_object_get(campaign, "term"));
    assert_int_equal(strlen(term), 1024);
    assert_memory_equal(term + 1021, "\xe2\x82\xac", 3);
    json_decref(campaign);
    free(url);
}

/* ---- worst cases for time ---- */

static void test_megabyte_of_percent_is_linear(void **state)
{
    (void)state;
    const char *prefix = "http://h/?utm_source=";
    size_t n = strlen(prefix);
    char *url = malloc(n + MEGABYTE + 1);
    assert_non_null(url);
    memcpy(url, prefix, n);
    memset(url + n, '%', MEGABYTE);
    url[n + MEGABYTE] = '\0';

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    herald_url parts;
    assert_int_equal(herald_url_parse(url, n + MEGABYTE, &parts), 0);
    assert_int_equal(parts.query.len, strlen("utm_source=") + MEGABYTE);
    char small[8];
    assert_int_equal(herald_percent_decode(url + n, MEGABYTE, small, sizeof small, 1), MEGABYTE);
    assert_string_equal(small, "%%%%%%%");
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context(url, NULL, NULL, &page, &campaign), 0);
    assert_int_equal(json_string_length(json_object_get(page, "search")),
                     1 + strlen("utm_source=") + MEGABYTE);
    assert_int_equal(json_string_length(json_object_get(campaign, "source")), 1024);
    double elapsed = seconds_since(&start);
    json_decref(campaign);
    json_decref(page);
    free(url);
    assert_true(elapsed < megabyte_budget());
}

static void test_megabyte_of_ampersands_is_linear(void **state)
{
    (void)state;
    const char *prefix = "http://h/?utm_medium=m";
    size_t n = strlen(prefix);
    /* calloc, not malloc + memset: gcc's -Warray-bounds misjudges the
     * memset under -O2 with sanitizers. */
    char *url = calloc(1, n + MEGABYTE + 13 + 1);
    assert_non_null(url);
    memcpy(url, prefix, n);
    for (size_t i = 0; i < MEGABYTE; i++)
        url[n + i] = '&';
    memcpy(url + n + MEGABYTE, "utm_source=s", 13);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    herald_url parts;
    assert_int_equal(parse(url, &parts), 0);
    const char *cursor = parts.query.ptr, *end = parts.query.ptr + parts.query.len;
    herald_span key, value;
    int pairs = 0;
    while (herald_url_query_next(&cursor, end, &key, &value))
        pairs++;
    assert_int_equal(pairs, 2);
    json_t *page = NULL, *campaign = NULL;
    assert_int_equal(herald_url_page_context(url, NULL, NULL, &page, &campaign), 0);
    assert_json_string(campaign, "medium", "m");
    assert_json_string(campaign, "source", "s");
    double elapsed = seconds_since(&start);
    json_decref(campaign);
    json_decref(page);
    free(url);
    assert_true(elapsed < megabyte_budget());
}

static void test_megabyte_of_at_signs_and_colons_is_linear(void **state)
{
    (void)state;
    /* Many '@' and ':' in the authority: one pass each, whatever the count. */
    char *url = malloc(7 + 2 * MEGABYTE + 2);
    assert_non_null(url);
    memcpy(url, "http://", 7);
    for (size_t i = 0; i < 2 * MEGABYTE; i += 2) {
        url[7 + i] = ':';
        url[7 + i + 1] = '@';
    }
    memcpy(url + 7 + 2 * MEGABYTE, "h", 2);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    herald_url parts;
    assert_int_equal(parse(url, &parts), 0);
    assert_span(parts.host, "h");
    assert_int_equal(parts.userinfo.len, 2 * MEGABYTE - 1);
    url[7 + 2 * MEGABYTE - 1] = '[';
    assert_int_equal(parse(url, &parts), -1);
    double elapsed = seconds_since(&start);
    free(url);
    assert_true(elapsed < megabyte_budget());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain_http),
        cmocka_unit_test(test_parse_https_with_port),
        cmocka_unit_test(test_parse_userinfo_last_at_separates),
        cmocka_unit_test(test_parse_ipv6_literal),
        cmocka_unit_test(test_parse_ipv6_literal_with_port),
        cmocka_unit_test(test_parse_ipv6_malformed),
        cmocka_unit_test(test_parse_port_non_numeric),
        cmocka_unit_test(test_parse_port_range),
        cmocka_unit_test(test_parse_port_empty),
        cmocka_unit_test(test_parse_no_path),
        cmocka_unit_test(test_parse_root_path),
        cmocka_unit_test(test_parse_empty_query_and_fragment_present),
        cmocka_unit_test(test_parse_fragment_with_question_mark),
        cmocka_unit_test(test_parse_uppercase_scheme),
        cmocka_unit_test(test_parse_other_schemes_may_have_empty_host),
        cmocka_unit_test(test_parse_trims_whitespace),
        cmocka_unit_test(test_parse_embedded_space_or_control_rejected),
        cmocka_unit_test(test_parse_nul_inside_len_rejected),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test(test_parse_not_urls),
        cmocka_unit_test(test_parse_high_bytes_accepted),
        cmocka_unit_test(test_query_pairs_and_missing_value),
        cmocka_unit_test(test_query_skips_empty_pairs),
        cmocka_unit_test(test_query_from_parsed_url),
        cmocka_unit_test(test_decode_upper_and_lower_hex),
        cmocka_unit_test(test_decode_invalid_escapes_copied),
        cmocka_unit_test(test_decode_plus_as_space),
        cmocka_unit_test(test_decode_truncates_and_reports_full_length),
        cmocka_unit_test(test_decode_outlen_zero_writes_nothing),
        cmocka_unit_test(test_page_context_fields),
        cmocka_unit_test(test_page_context_omits_absent_inputs),
        cmocka_unit_test(test_page_context_search_empty_vs_query),
        cmocka_unit_test(test_page_context_missing_path),
        cmocka_unit_test(test_page_context_url_is_trimmed),
        cmocka_unit_test(test_page_context_rejects_non_url),
        cmocka_unit_test(test_page_context_invalid_utf8_title_referrer_omitted),
        cmocka_unit_test(test_page_context_invalid_utf8_url_percent_encoded),
        cmocka_unit_test(test_campaign_all_utm_fields),
        cmocka_unit_test(test_campaign_click_ids),
        cmocka_unit_test(test_campaign_keys_case_insensitive),
        cmocka_unit_test(test_campaign_values_decoded),
        cmocka_unit_test(test_campaign_first_occurrence_wins),
        cmocka_unit_test(test_campaign_empty_value_ignored),
        cmocka_unit_test(test_campaign_ignores_fragment),
        cmocka_unit_test(test_campaign_absent_is_null),
        cmocka_unit_test(test_campaign_invalid_utf8_skipped),
        cmocka_unit_test(test_campaign_long_value_truncated),
        cmocka_unit_test(test_campaign_truncation_keeps_utf8_whole),
        cmocka_unit_test(test_megabyte_of_percent_is_linear),
        cmocka_unit_test(test_megabyte_of_ampersands_is_linear),
        cmocka_unit_test(test_megabyte_of_at_signs_and_colons_is_linear),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
