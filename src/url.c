/*
 * URL parsing for page context and campaign attribution (see url.h).
 *
 * Every scan here is bounded by an explicit end pointer: herald_url_parse
 * reads bytes that need not be NUL-terminated, and a libFuzzer target
 * (tests/fuzz/fuzz_url.c) holds all of it to that. Each loop moves forward
 * through its input once, so the work is linear in the input whatever it
 * holds; nothing recurses and only herald_url_page_context allocates.
 *
 * Choices url.h leaves open:
 * - The path span is absent (ptr NULL) when nothing follows the authority but
 *   a query, a fragment or the end ("http://h", "http://h?q"). Host is always
 *   present once "//" was seen, though it may be empty for schemes other than
 *   http/https ("file:///etc").
 * - Brackets delimit an IPv6 (or IPvFuture) literal only at the start of the
 *   host; a '[' or ']' anywhere else in the host is malformed.
 */
#include "url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Longest campaign value kept, in decoded bytes. */
#define CAMPAIGN_VALUE_MAX 1024

/* Longest decoded query key we compare against the campaign names
 * ("utm_campaign" is 12 bytes); longer keys cannot match. */
#define CAMPAIGN_KEY_MAX 16

/* ASCII classes by hand: <ctype.h> follows the process locale, and this
 * library runs inside someone else's process. */
static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_scheme_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '.' || c == '-';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static herald_span make_span(const char *begin, const char *end)
{
    herald_span span = {begin, (size_t)(end - begin)};
    return span;
}

/* 1 if the span equals the lowercase literal, ignoring ASCII case. */
static int span_equals_nocase(const char *ptr, size_t len, const char *literal)
{
    size_t n = strlen(literal);
    if (len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(ptr[i]) != literal[i])
            return 0;
    return 1;
}

static int scheme_needs_host(herald_span scheme)
{
    return span_equals_nocase(scheme.ptr, scheme.len, "http") ||
           span_equals_nocase(scheme.ptr, scheme.len, "https");
}

/* The WHATWG "special" schemes: browsers report their empty path as "/". */
static int scheme_is_special(herald_span scheme)
{
    static const char *const special[] = {"http", "https", "ws", "wss", "ftp", "file"};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        if (span_equals_nocase(scheme.ptr, scheme.len, special[i]))
            return 1;
    return 0;
}

/* [*begin, *end) without leading and trailing ASCII white space. */
static void trim_space(const char **begin, const char **end)
{
    while (*begin < *end && is_space(**begin))
        (*begin)++;
    while (*end > *begin && is_space((*end)[-1]))
        (*end)--;
}

/* [userinfo@]host[:port], with begin..end the whole authority (it holds no
 * '/', '?' or '#'). Fills userinfo, host and port; -1 if malformed. */
static int parse_authority(const char *begin, const char *end, herald_url *url)
{
    /* The last '@' separates: a password may carry a raw '@', a host cannot. */
    const char *host = begin;
    for (const char *p = begin; p < end; p++)
        if (*p == '@')
            host = p + 1;
    if (host != begin)
        url->userinfo = make_span(begin, host - 1);

    const char *p = host;
    if (p < end && *p == '[') {
        const char *literal = p + 1;
        const char *close = memchr(literal, ']', (size_t)(end - literal));
        if (close == NULL || memchr(literal, '[', (size_t)(close - literal)) != NULL)
            return -1;
        url->host = make_span(literal, close);
        p = close + 1;
        if (p < end && *p != ':')
            return -1;
    } else {
        while (p < end && *p != ':') {
            if (*p == '[' || *p == ']')
                return -1;
            p++;
        }
        url->host = make_span(host, p);
    }

    if (p == end)
        return 0;
    /* *p is ':'; an empty port is allowed (RFC 3986 3.2.3). */
    const char *port = ++p;
    if (end - port > 5)
        return -1;
    unsigned value = 0;
    for (; p < end; p++) {
        if (!is_digit(*p))
            return -1;
        value = value * 10 + (unsigned)(*p - '0');
    }
    if (value > 65535)
        return -1;
    url->port = make_span(port, end);
    return 0;
}

int herald_url_parse(const char *input, size_t len, herald_url *out)
{
    if (out == NULL)
        return -1;
    memset(out, 0, sizeof *out);
    if (input == NULL)
        return -1;

    const char *begin = input, *end = input + len;
    trim_space(&begin, &end);
    for (const char *p = begin; p < end; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f)
            return -1;

    herald_url url;
    memset(&url, 0, sizeof url);
    const char *p = begin;
    if (p == end || !is_alpha(*p))
        return -1;
    while (p < end && is_scheme_char(*p))
        p++;
    if (p == end || *p != ':')
        return -1;
    url.scheme = make_span(begin, p);
    p++;
    /* Only hierarchical URLs: "mailto:a@b" and "javascript:..." are refused. */
    if (end - p < 2 || p[0] != '/' || p[1] != '/')
        return -1;
    p += 2;

    const char *authority = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    if (parse_authority(authority, p, &url) != 0)
        return -1;
    if (url.host.len == 0 && scheme_needs_host(url.scheme))
        return -1;

    if (p < end && *p == '/') {
        const char *path = p;
        while (p < end && *p != '?' && *p != '#')
            p++;
        url.path = make_span(path, p);
    }
    if (p < end && *p == '?') {
        const char *query = ++p;
        while (p < end && *p != '#')
            p++;
        url.query = make_span(query, p);
    }
    if (p < end && *p == '#')
        url.fragment = make_span(p + 1, end);

    *out = url;
    return 0;
}

int herald_url_query_next(const char **cursor, const char *end, herald_span *key,
                          herald_span *value)
{
    /* An absent query (ptr NULL) simply has no pairs. */
    if (cursor == NULL || *cursor == NULL || end == NULL || key == NULL || value == NULL ||
        *cursor >= end)
        return 0;
    const char *p = *cursor;
    while (p < end && *p == '&')
        p++;
    if (p == end) {
        *cursor = p;
        return 0;
    }
    const char *k = p;
    while (p < end && *p != '&' && *p != '=')
        p++;
    *key = make_span(k, p);
    if (p < end && *p == '=') {
        const char *v = ++p;
        while (p < end && *p != '&')
            p++;
        *value = make_span(v, p);
    } else {
        value->ptr = NULL;
        value->len = 0;
    }
    if (p < end)
        p++; /* the '&' */
    *cursor = p;
    return 1;
}

size_t herald_percent_decode(const char *in, size_t len, char *out, size_t outlen,
                             int plus_as_space)
{
    if (in == NULL)
        len = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%' && len - i > 2) {
            int high = hex_value(in[i + 1]), low = hex_value(in[i + 2]);
            if (high >= 0 && low >= 0) {
                c = (char)(unsigned char)(high * 16 + low);
                i += 2;
            }
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        }
        /* Keep counting past the end of out, so the caller learns the size. */
        if (n + 1 < outlen)
            out[n] = c;
        n++;
    }
    if (outlen > 0)
        out[n < outlen ? n : outlen - 1] = '\0';
    return n;
}

/* Length of the well-formed UTF-8 sequence at p (avail > 0 bytes there), 0 if
 * it is not one. The rules are jansson's, so what passes here json_stringn
 * accepts: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_sequence(const unsigned char *p, size_t avail)
{
    if (p[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(p + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* A JSON string of URL text. The parser takes bytes >= 0x80 as opaque, but a
 * JSON string must be UTF-8, so bytes that are not part of a well-formed
 * sequence are percent-encoded, as a browser would send them. NULL only when
 * out of memory. */
static json_t *url_text(const char *ptr, size_t len)
{
    if (utf8_valid(ptr, len))
        return json_stringn(ptr, len);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *text = malloc(len * 3 + 1);
    if (text == NULL)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)ptr;
    size_t used = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(p + i, len - i);
        if (n > 0) {
            memcpy(text + used, p + i, n);
            used += n;
            i += n;
        } else {
            text[used++] = '%';
            text[used++] = hex[p[i] >> 4];
            text[used++] = hex[p[i] & 0x0f];
            i++;
        }
    }
    json_t *string = json_stringn(text, used);
    free(text);
    return string;
}

/* Sets key to a new string, checking both allocations; 0 or -1. */
static int set_text(json_t *object, const char *key, json_t *string)
{
    return string != NULL && json_object_set_new(object, key, string) == 0 ? 0 : -1;
}

/* Query keys that carry campaign attribution, and where each goes. */
static const struct campaign_key {
    const char *query_key;
    const char *name;
} campaign_keys[] = {
    {"utm_source", "source"},   {"utm_medium", "medium"},   {"utm_campaign", "name"},
    {"utm_term", "term"},       {"utm_content", "content"}, {"gclid", "gclid"},
    {"gbraid", "gbraid"},       {"wbraid", "wbraid"},       {"dclid", "dclid"},
    {"fbclid", "fbclid"},       {"msclkid", "msclkid"},     {"ttclid", "ttclid"},
    {"twclid", "twclid"},       {"li_fat_id", "li_fat_id"}, {"yclid", "yclid"},
    {"mc_cid", "mc_cid"},
};

/* The campaign field a raw query key maps to, or NULL. Keys are decoded
 * ("utm%5Fsource") and compared ignoring ASCII case ("utm_Source"). */
static const char *campaign_name(herald_span key)
{
    char decoded[CAMPAIGN_KEY_MAX];
    size_t n = herald_percent_decode(key.ptr, key.len, decoded, sizeof decoded, 1);
    if (n >= sizeof decoded)
        return NULL;
    for (size_t i = 0; i < sizeof campaign_keys / sizeof *campaign_keys; i++)
        if (span_equals_nocase(decoded, n, campaign_keys[i].query_key))
            return campaign_keys[i].name;
    return NULL;
}

/* Adds one campaign parameter unless it is unusable. 0, or -1 when out of
 * memory. */
static int add_campaign_value(json_t **campaign, const char *name, herald_span value)
{
    if (value.ptr == NULL || value.len == 0)
        return 0;
    /* First usable occurrence wins. */
    if (*campaign != NULL && json_object_get(*campaign, name) != NULL)
        return 0;

    /* Room for the kept bytes plus the three a cut UTF-8 sequence may spill. */
    char decoded[CAMPAIGN_VALUE_MAX + 4];
    size_t n = herald_percent_decode(value.ptr, value.len, decoded, sizeof decoded, 1);
    if (n > CAMPAIGN_VALUE_MAX) {
        /* Cut before the sequence that straddles the limit, never inside it. */
        n = CAMPAIGN_VALUE_MAX;
        for (int back = 0; back < 3 && ((unsigned char)decoded[n] & 0xc0) == 0x80; back++)
            n--;
    }
    /* jansson refuses invalid UTF-8; a NUL would cut the value short for
     * whoever reads it as a C string. Either way the parameter is skipped,
     * judged on the bytes that are kept. */
    if (!utf8_valid(decoded, n) || memchr(decoded, '\0', n) != NULL)
        return 0;

    if (*campaign == NULL && (*campaign = json_object()) == NULL)
        return -1;
    return set_text(*campaign, name, json_stringn(decoded, n));
}

static int build_campaign(herald_span query, json_t **campaign)
{
    *campaign = NULL;
    if (query.ptr == NULL)
        return 0;
    const char *cursor = query.ptr, *end = query.ptr + query.len;
    herald_span key, value;
    while (herald_url_query_next(&cursor, end, &key, &value)) {
        const char *name = campaign_name(key);
        if (name != NULL && add_campaign_value(campaign, name, value) != 0)
            return -1;
    }
    return 0;
}

/* Title and referrer are caller text: kept as given when it is UTF-8,
 * otherwise left out. 0, or -1 when out of memory. */
static int set_optional_text(json_t *page, const char *key, const char *text)
{
    if (text == NULL || !utf8_valid(text, strlen(text)))
        return 0;
    return set_text(page, key, json_string(text));
}

/* Besides a URL that does not parse, -1 also means out of memory. */
int herald_url_page_context(const char *url, const char *referrer, const char *title,
                            json_t **page, json_t **campaign)
{
    if (url == NULL || page == NULL || campaign == NULL)
        return -1;
    const char *begin = url, *end = url + strlen(url);
    herald_url parts;
    if (herald_url_parse(begin, (size_t)(end - begin), &parts) != 0)
        return -1;
    trim_space(&begin, &end);

    json_t *page_object = json_object(), *campaign_object = NULL;
    if (page_object == NULL)
        goto fail;
    if (set_text(page_object, "url", url_text(begin, (size_t)(end - begin))) != 0)
        goto fail;

    json_t *path;
    if (parts.path.ptr != NULL)
        path = url_text(parts.path.ptr, parts.path.len);
    else
        path = json_string(scheme_is_special(parts.scheme) ? "/" : "");
    if (set_text(page_object, "path", path) != 0)
        goto fail;

    /* Like location.search: "" for both "no query" and "?" alone. The '?'
     * sits just before the query span in the input. */
    json_t *search;
    if (parts.query.ptr != NULL && parts.query.len > 0)
        search = url_text(parts.query.ptr - 1, parts.query.len + 1);
    else
        search = json_string("");
    if (set_text(page_object, "search", search) != 0)
        goto fail;

    if (set_optional_text(page_object, "title", title) != 0 ||
        set_optional_text(page_object, "referrer", referrer) != 0)
        goto fail;
    if (build_campaign(parts.query, &campaign_object) != 0)
        goto fail;

    *page = page_object;
    *campaign = campaign_object;
    return 0;

fail:
    json_decref(campaign_object);
    json_decref(page_object);
    return -1;
}
