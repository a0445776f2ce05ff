/*
 * URL parsing for page context and campaign attribution. Pure, allocation
 * free where it can be, linear in the input, and total: any byte string is
 * either parsed or refused, never a crash (a libFuzzer target drives it).
 */
#ifndef HERALD_URL_H
#define HERALD_URL_H

#include <jansson.h>
#include <stddef.h>

/* A slice of the input. ptr is NULL when the component is absent (an empty
 * but present component, e.g. "?" with nothing after it, has ptr != NULL and
 * len 0). */
typedef struct herald_span {
    const char *ptr;
    size_t len;
} herald_span;

/* Components of an absolute URL (RFC 3986 generic syntax), as slices of the
 * input, without their delimiters: scheme without ':', userinfo without '@',
 * host without brackets for IPv6 literals (always present once "//" is seen),
 * port digits without ':', path starting with '/' (absent, ptr NULL, when
 * nothing but a query, a fragment or the end follows the host; never present
 * and empty), query without '?', fragment without '#'. */
typedef struct herald_url {
    herald_span scheme;
    herald_span userinfo;
    herald_span host;
    herald_span port;
    herald_span path;
    herald_span query;
    herald_span fragment;
} herald_url;

/* Parse `len` bytes (need not be NUL-terminated). Leading and trailing ASCII
 * white space is ignored. Requires a scheme ([A-Za-z][A-Za-z0-9+.-]*) followed
 * by "://" and a host that is non-empty for http/https. Returns 0, or -1 if the
 * input is not an absolute URL of that form (out is then zeroed). After
 * trimming, any byte below 0x21 or equal to 0x7f makes it -1; other ASCII
 * (" < > \ ^ | {) is accepted as it is, and bytes >= 0x80 as opaque. '[' and
 * ']' only delimit an IPv6 literal at the start of the host. */
int herald_url_parse(const char *input, size_t len, herald_url *out);

/* Iterate over "k=v&k2=v2" (also ';'-free: only '&' separates). *cursor
 * starts at query.ptr and advances; end is query.ptr + query.len. Returns 1
 * with key/value slices (raw, still percent-encoded; value.ptr NULL when there
 * is no '='; "=v" gives a present, empty key), or 0 at the end or for a NULL
 * cursor (an absent query). Empty pairs ("&&") are skipped. */
int herald_url_query_next(const char **cursor, const char *end, herald_span *key,
                          herald_span *value);

/* Percent-decode `len` bytes into out (capacity outlen, always
 * NUL-terminated when outlen > 0), '+' as space when plus_as_space. Invalid
 * escapes ("%zz", a trailing "%") are copied as they are. Returns the decoded
 * length, which may exceed outlen - 1 (then out holds a truncated prefix). */
size_t herald_percent_decode(const char *in, size_t len, char *out, size_t outlen,
                             int plus_as_space);

/* Segment's page and campaign context from a page URL (and optional referrer
 * and title, which may be NULL):
 *   page: {"url": url, "path": "/p", "search": "?q=1" (with '?', "" when none),
 *          "title": title, "referrer": referrer}  (absent inputs omitted)
 *   campaign: {"source", "medium", "name" (from utm_campaign), "term",
 *              "content"} from utm_* query parameters (percent-decoded, values
 *              up to 1024 bytes, first occurrence wins), plus click ids kept
 *              under their own names: gclid, gbraid, wbraid, dclid, fbclid,
 *              msclkid, ttclid, twclid, li_fat_id, yclid, mc_cid.
 * Details: path is "/" for a URL without one in the schemes browsers treat as
 * special (http, https, ws, wss, ftp, file), "" for others; search is "" for
 * no query and for "?" alone; bytes of url/path/search that are not valid
 * UTF-8 are written as %XX. Campaign keys are percent-decoded and matched
 * case-insensitively; the first usable occurrence wins (an empty, invalid
 * UTF-8 or NUL-containing value does not block a later one); UTF-8 validity
 * is judged on the kept prefix.
 * Returns 0 and sets *page (new reference) and *campaign (new reference, or
 * NULL when the URL carries no campaign parameter); -1 if url does not parse,
 * url/page/campaign is NULL, or memory runs out (nothing set then). The
 * fragment is not used for campaign parameters. */
int herald_url_page_context(const char *url, const char *referrer, const char *title,
                            json_t **page, json_t **campaign);

#endif
