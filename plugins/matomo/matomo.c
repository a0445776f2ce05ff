/*
 * The Matomo backend: batches of events as one bulk tracking request,
 * POST <url>/matomo.php with {"requests": ["?idsite=1&rec=1&...", ...],
 * "token_auth": "..."} (Matomo's BulkTracking plugin, part of every Matomo
 * since 2.x), and the answer {"status":"success","tracked":N,"invalid":M,
 * "invalid_indices":[...]} read back into per-event verdicts.
 *
 * Config (JSON object):
 *   url             http:// or https:// base URL of the Matomo server (required);
 *                   requests go to <url>/matomo.php (a url already ending in
 *                   .php, e.g. .../piwik.php, is used as it is)
 *   site_id         the site's id in Matomo, a positive integer (required)
 *   token_auth      a token with write access to the site (optional; never
 *                   logged, sent in the body, never in the URL): lets events
 *                   older than 23 h keep their time (cdt) and context.ip be
 *                   sent as the visitor's IP (cip)
 *   default_url     page URL of events that carry none, and base of screen
 *                   URLs (default "https://<app name as a host>/")
 *   user_agent      ua for events without context.userAgent
 *                   (default "Mozilla/5.0 (X11; Linux x86_64) herald/<version>")
 *   event_category  e_c of track events without properties.eventCategory
 *                   (default "herald")
 *   bots            true: send bots=1 (Matomo records bot user agents too)
 *   dimensions      {"<custom dimension id>": "$.path" or ["$.a", "$.b"]}:
 *                   dimension<id>=<value at the first path present>
 *
 * What Matomo validates, and how, is described in docs/backends.md ("matomo");
 * the server side was read in matomo-org/matomo (core/Tracker/Request.php,
 * plugins/BulkTracking/Tracker/{Handler,Requests,Response}.php).
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

/* Matomo takes any number of requests in one bulk; its own log importer
 * sends at most 200 (import_logs.py --recorder-max-payload-size). */
#define MAX_EVENTS_PER_REQUEST 200
/* Under nginx's default client_max_body_size (1 MiB) in front of PHP. */
#define MAX_REQUEST_BYTES 1000000
/* Matomo needs token_auth for a cdt older than 24 h
 * (tracking_requests_require_authentication_when_custom_timestamp_newer_than
 * = 86400); an hour less leaves room for clock skew and delivery time. */
#define RECENT_MS ((int64_t)23 * 3600 * 1000)
#define MAX_TOKEN_BYTES 512
#define MAX_USER_AGENT_BYTES 1024
#define MAX_URL_BYTES 1000
#define MAX_CATEGORY_BYTES 1024
#define MAX_DIMENSION_ID 100000
#define MAX_DIMENSION_PATHS 8

#define DEFAULT_USER_AGENT "Mozilla/5.0 (X11; Linux x86_64) herald/" HERALD_VERSION_STRING
#define DEFAULT_CATEGORY "herald"

typedef struct dimension {
    unsigned id;
    char **paths;
    size_t path_count;
} dimension;

typedef struct matomo_state {
    char *endpoint;       /* <url>/matomo.php */
    char site_id[24];     /* decimal */
    char *token_auth;     /* NULL: none */
    char *default_url;    /* NULL: https://<app name as a host>/ per event */
    char *user_agent;
    char *event_category;
    int bots;
    dimension *dimensions;
    size_t dimension_count;
} matomo_state;

/* ---- a growing string ---- */

typedef struct text {
    char *data;
    size_t length;
    size_t capacity;
    int failed;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->length + n + 1 > t->capacity) {
        size_t cap = (t->length + n + 1) * 2;
        char *grown = realloc(t->data, cap);
        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->capacity = cap;
    }
    memcpy(t->data + t->length, s, n);
    t->length += n;
    t->data[t->length] = '\0';
}

static void text_str(text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/* ---- small helpers ---- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n\f\v", *s))
            return 0;
    return 1;
}

static const char *get_string(json_t *object, const char *key)
{
    json_t *v = json_object_get(object, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *nonblank(const char *s)
{
    return s && !is_blank(s) ? s : NULL;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static const char hex_digits[] = "0123456789ABCDEF";

/* Percent-encode all but unreserved characters (and '/' when keep_slash):
 * PHP's parse_str decodes it back exactly ('+' is sent as %2B). */
static void text_encoded(text *t, const char *s, size_t n, int keep_slash)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            text_add(t, (const char *)&s[i], 1);
        } else {
            char esc[3] = {'%', hex_digits[c >> 4], hex_digits[c & 15]};
            text_add(t, esc, 3);
        }
    }
}

/* "&key=<value percent-encoded>" */
static void q_param(text *t, const char *key, const char *value)
{
    text_str(t, "&");
    text_str(t, key);
    text_str(t, "=");
    text_encoded(t, value, strlen(value), 0);
}

/* A scalar as text: strings as they are, numbers in the shortest form that
 * reads back the same, booleans as true/false. Returns 0 for other values. */
static int scalar_string(json_t *v, char *buf, size_t buflen, const char **out)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        *out = json_string_value(v);
        return 1;
    case JSON_INTEGER:
        snprintf(buf, buflen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = buf;
        return 1;
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int precision = 1; precision <= 17; precision++) {
            snprintf(buf, buflen, "%.*g", precision, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        *out = buf;
        return 1;
    }
    case JSON_TRUE:
        *out = "true";
        return 1;
    case JSON_FALSE:
        *out = "false";
        return 1;
    default:
        return 0;
    }
}

/* A number, or a string that is one ("19.99"), as text; 0 if neither. */
static int numeric_string(json_t *v, char *buf, size_t buflen, const char **out)
{
    if (json_is_number(v))
        return scalar_string(v, buf, buflen, out);
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 64) {
        const char *s = json_string_value(v);
        char *end = NULL;
        strtod(s, &end);
        if (end != s && end && *end == '\0' && !strchr(s, 'x') && !strchr(s, 'X') &&
            strspn(s, "0123456789+-.eE") == strlen(s)) {
            *out = s;
            return 1;
        }
    }
    return 0;
}

/* ---- SHA-1, for visitor ids as Matomo derives them from a user id ---- */

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t temp = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = temp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* The first 16 hex digits of SHA-1(s): Matomo's form of a visitor id
 * (Request::getUserIdHashed does the same for a uid). */
static void visitor_id(const char *s, size_t len, char out[17])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t i = 0;
    for (; i + 64 <= len; i += 64)
        sha1_block(h, (const unsigned char *)s + i);
    unsigned char block[64];
    size_t rest = len - i;
    memset(block, 0, sizeof block);
    memcpy(block, s + i, rest);
    block[rest] = 0x80;
    if (rest >= 56) {
        sha1_block(h, block);
        memset(block, 0, sizeof block);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (unsigned j = 0; j < 8; j++)
        block[63 - j] = (unsigned char)(bits >> (8 * j));
    sha1_block(h, block);
    snprintf(out, 17, "%08x%08x", (unsigned)h[0], (unsigned)h[1]);
}

/* ---- time ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* An RFC 3339 date-time ("2026-11-24T06:11:42.240Z", "...+02:00") as unix ms. */
static int parse_timestamp_ms(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec;
    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || !strchr("Tt ", s[10]) ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        int scale = 100;
        p++;
        if (*p < '0' || *p > '9')
            return 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om))
            return 0;
        offset_min = (int64_t)(oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return 0;
    }
    if (*p != '\0')
        return 0;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    *out = secs * 1000 + ms;
    return 1;
}

/* ---- create / destroy ---- */

static void matomo_destroy(void *state)
{
    matomo_state *s = state;
    if (s == NULL)
        return;
    free(s->endpoint);
    free(s->token_auth);
    free(s->default_url);
    free(s->user_agent);
    free(s->event_category);
    for (size_t i = 0; i < s->dimension_count; i++) {
        for (size_t j = 0; j < s->dimensions[i].path_count; j++)
            free(s->dimensions[i].paths[j]);
        free(s->dimensions[i].paths);
    }
    free(s->dimensions);
    free(s);
}

static int http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* <url>/matomo.php, or the url itself when it names a .php file. */
static char *make_endpoint(const char *url)
{
    size_t n = strlen(url);
    int is_php = n > 4 && strcasecmp(url + n - 4, ".php") == 0;
    if (!is_php)
        while (n > 0 && url[n - 1] == '/')
            n--;
    static const char path[] = "/matomo.php";
    char *out = malloc(n + sizeof path);
    if (out == NULL)
        return NULL;
    memcpy(out, url, n);
    if (is_php)
        out[n] = '\0';
    else
        memcpy(out + n, path, sizeof path);
    return out;
}

static int set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
    return *slot == NULL ? -1 : 0;
}

static int path_valid(const char *path)
{
    if (path[0] != '$' || (path[1] != '\0' && path[1] != '.') || strlen(path) >= 512)
        return 0;
    for (const char *p = path + 1; *p; p++)
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    return 1;
}

static int add_dimension(matomo_state *s, const char *key, json_t *spec, char *err,
                         size_t errlen)
{
    char *end = NULL;
    unsigned long id = strtoul(key, &end, 10);
    if (key[0] < '1' || key[0] > '9' || *end != '\0' || id > MAX_DIMENSION_ID) {
        snprintf(err, errlen,
                 "matomo: dimensions: \"%.32s\" is not a custom dimension id (a positive "
                 "integer, as Matomo shows it)",
                 key);
        return -1;
    }
    json_t *paths = spec;
    if (json_is_string(spec)) {
        paths = json_array();
        if (paths == NULL || json_array_append(paths, spec) != 0) {
            json_decref(paths);
            return -1;
        }
    } else {
        json_incref(paths);
    }
    int rc = -1;
    size_t count = json_is_array(paths) ? json_array_size(paths) : 0;
    if (count == 0 || count > MAX_DIMENSION_PATHS) {
        snprintf(err, errlen,
                 "matomo: dimensions: \"%.32s\" must be a path like \"$.context.app.version\" "
                 "or a list of 1-%d paths",
                 key, MAX_DIMENSION_PATHS);
        goto done;
    }
    dimension *grown = realloc(s->dimensions, (s->dimension_count + 1) * sizeof *grown);
    if (grown == NULL)
        goto done;
    s->dimensions = grown;
    dimension *dim = &s->dimensions[s->dimension_count++];
    dim->id = (unsigned)id;
    dim->path_count = 0;
    if ((dim->paths = calloc(count, sizeof *dim->paths)) == NULL)
        goto done;
    for (size_t i = 0; i < count; i++) {
        json_t *p = json_array_get(paths, i);
        if (!json_is_string(p) || !path_valid(json_string_value(p))) {
            snprintf(err, errlen,
                     "matomo: dimensions: \"%.32s\": a path looks like \"$.context.app.version\"",
                     key);
            goto done;
        }
        if ((dim->paths[i] = strdup(json_string_value(p))) == NULL)
            goto done;
        dim->path_count++;
    }
    rc = 0;
done:
    json_decref(paths);
    return rc;
}

static int matomo_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                         size_t errlen)
{
    (void)core_abi;
    if (errlen > 0)
        err[0] = '\0';
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "matomo: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    matomo_state *s = calloc(1, sizeof *s);
    int failed = s == NULL;
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        const char *str = json_is_string(value) ? json_string_value(value) : NULL;
        if (strcmp(key, "url") == 0 && str) {
            if (!http_url(str)) {
                snprintf(err, errlen, "matomo: url must start with http:// or https://");
                failed = 1;
            } else if (strpbrk(str, " \t\r\n?#") || has_control(str)) {
                snprintf(err, errlen,
                         "matomo: url must be the Matomo server's base URL (or its matomo.php), "
                         "without white space, query or fragment");
                failed = 1;
            } else if ((s->endpoint = make_endpoint(str)) == NULL) {
                failed = 1;
            }
        } else if (strcmp(key, "site_id") == 0 && (json_is_integer(value) || str)) {
            long long id = -1;
            if (json_is_integer(value)) {
                id = json_integer_value(value);
            } else if (*str >= '1' && *str <= '9' && strspn(str, "0123456789") == strlen(str) &&
                       strlen(str) <= 10) {
                id = strtoll(str, NULL, 10);
            }
            if (id < 1 || id > 2147483647) {
                snprintf(err, errlen,
                         "matomo: site_id must be the site's id in Matomo, a positive integer");
                failed = 1;
            } else {
                snprintf(s->site_id, sizeof s->site_id, "%lld", id);
            }
        } else if (strcmp(key, "token_auth") == 0 && str) {
            if (*str == '\0' || strlen(str) > MAX_TOKEN_BYTES || strpbrk(str, " \t\r\n") ||
                has_control(str)) {
                snprintf(err, errlen,
                         "matomo: token_auth must be a Matomo auth token (1-%d bytes, no white "
                         "space)",
                         MAX_TOKEN_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->token_auth, str);
            }
        } else if (strcmp(key, "default_url") == 0 && str) {
            const char *scheme_end = strstr(str, "://");
            if (scheme_end == NULL || scheme_end == str || scheme_end[3] == '\0' ||
                strpbrk(str, " \t\r\n") || has_control(str) || strlen(str) > MAX_URL_BYTES ||
                strncasecmp(str, "javascript:", 11) == 0 || strncasecmp(str, "data:", 5) == 0) {
                snprintf(err, errlen,
                         "matomo: default_url must be an absolute URL (e.g. "
                         "\"https://notes.example/\") of at most %d bytes",
                         MAX_URL_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->default_url, str);
            }
        } else if (strcmp(key, "user_agent") == 0 && str) {
            if (*str == '\0' || has_control(str) || strlen(str) > MAX_USER_AGENT_BYTES) {
                snprintf(err, errlen,
                         "matomo: user_agent must be 1-%d bytes without control characters",
                         MAX_USER_AGENT_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->user_agent, str);
            }
        } else if (strcmp(key, "event_category") == 0 && str) {
            if (is_blank(str) || strlen(str) > MAX_CATEGORY_BYTES) {
                snprintf(err, errlen, "matomo: event_category must be a non-blank string");
                failed = 1;
            } else {
                failed = set_string(&s->event_category, str);
            }
        } else if (strcmp(key, "bots") == 0 && json_is_boolean(value)) {
            s->bots = json_is_true(value);
        } else if (strcmp(key, "dimensions") == 0 && json_is_object(value)) {
            const char *dim_key;
            json_t *spec;
            json_object_foreach(value, dim_key, spec)
            {
                if ((failed = add_dimension(s, dim_key, spec, err, errlen) != 0))
                    break;
            }
        } else {
            snprintf(err, errlen,
                     "matomo: unknown or mistyped setting \"%.64s\" (known: url, site_id, "
                     "token_auth, default_url, user_agent, event_category, bots, dimensions)",
                     key);
            failed = 1;
        }
        if (failed && err[0] == '\0')
            snprintf(err, errlen, "matomo: out of memory");
    }
    json_decref(config);
    if (!failed && s->endpoint == NULL) {
        snprintf(err, errlen,
                 "matomo: \"url\" is required: the Matomo server, e.g. "
                 "\"https://matomo.example.com\"");
        failed = 1;
    }
    if (!failed && s->site_id[0] == '\0') {
        snprintf(err, errlen, "matomo: \"site_id\" is required: the site's id in Matomo, e.g. 1");
        failed = 1;
    }
    if (!failed && s->user_agent == NULL)
        failed = set_string(&s->user_agent, DEFAULT_USER_AGENT);
    if (!failed && s->event_category == NULL)
        failed = set_string(&s->event_category, DEFAULT_CATEGORY);
    if (failed) {
        if (err[0] == '\0')
            snprintf(err, errlen, "matomo: out of memory");
        matomo_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void matomo_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = MAX_EVENTS_PER_REQUEST;
    out->max_request_bytes = MAX_REQUEST_BYTES;
    out->max_event_bytes = 0;
    out->accepts_gzip = 0; /* the tracker reads php://input as it is */
    out->max_concurrency = 0;
}

/* ---- encode ---- */

/* Events that become a Matomo request; identify, group and alias do not. */
static int wanted_type(const char *type)
{
    return type == NULL || strcmp(type, "track") == 0 || strcmp(type, "page") == 0 ||
           strcmp(type, "screen") == 0;
}

/* Whether event i of the batch is in the request's "requests" (the same
 * answer in encode and classify: it depends on the event only). */
static int event_is_sent(const herald_backend_batch *batch, size_t i)
{
    json_error_t jerr;
    json_t *event = json_loadb(batch->events[i], batch->event_lengths[i], 0, &jerr);
    int sent = json_is_object(event) && wanted_type(get_string(event, "type"));
    json_decref(event);
    return sent;
}

static json_t *follow(json_t *root, const char *path)
{
    json_t *node = root;
    const char *p = path + 1;
    while (*p == '.' && node != NULL) {
        p++;
        size_t n = strcspn(p, ".");
        char key[512];
        if (n == 0 || n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (json_is_array(node)) {
            char *end = NULL;
            unsigned long index = strtoul(key, &end, 10);
            node = *end == '\0' ? json_array_get(node, index) : NULL;
        } else {
            node = json_object_get(node, key);
        }
        p += n;
    }
    return json_is_null(node) ? NULL : node;
}

/* "https://<app name as a host>/" when no default_url is configured: its
 * letters and digits, lowercased, runs of anything else a '-' ("Acme Notes"
 * becomes https://acme-notes/), at most 63 bytes; "app" without a name. */
static void app_base(const matomo_state *s, json_t *context, text *t)
{
    if (s->default_url) {
        text_str(t, s->default_url);
        return;
    }
    const char *name = get_string(json_object_get(context, "app"), "name");
    text_str(t, "https://");
    size_t start = t->length;
    int dash = 0;
    const char *p = name ? name : "";
    for (; *p && t->length - start < 63; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (dash && t->length > start)
                text_str(t, "-");
            dash = 0;
            text_add(t, &c, 1);
        } else {
            dash = 1;
        }
    }
    if (t->length == start)
        text_str(t, "app");
    text_str(t, "/");
}

/* <base>/<name>, the name percent-encoded but for '/'. */
static void app_url(const matomo_state *s, json_t *context, const char *name, text *t)
{
    app_base(s, context, t);
    if (name && *name) {
        if (t->length == 0 || t->data[t->length - 1] != '/')
            text_str(t, "/");
        while (*name == '/')
            name++;
        text_encoded(t, name, strlen(name), 1);
    }
}

static int valid_ip(const char *ip)
{
    char buf[64];
    size_t n = strlen(ip);
    if (n == 0 || n >= sizeof buf)
        return 0;
    if (ip[0] == '[' && ip[n - 1] == ']') {
        memcpy(buf, ip + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        memcpy(buf, ip, n + 1);
    }
    unsigned char addr[16];
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/* One Matomo tracking request ("?idsite=1&rec=1&...") for one event. */
static int encode_event(const matomo_state *s, json_t *event, int64_t now_ms, text *q)
{
    const char *type = get_string(event, "type");
    if (type == NULL)
        type = "track";
    json_t *properties = json_object_get(event, "properties");
    json_t *context = json_object_get(event, "context");
    json_t *page = json_object_get(context, "page");
    int is_page = strcmp(type, "page") == 0;
    int is_screen = strcmp(type, "screen") == 0;
    const char *url = nonblank(get_string(page, "url"));
    const char *referrer = nonblank(get_string(page, "referrer"));
    if (is_page && url == NULL)
        url = nonblank(get_string(properties, "url"));
    if (is_page && referrer == NULL)
        referrer = nonblank(get_string(properties, "referrer"));
    const char *name = nonblank(get_string(event, "name"));
    text built = {0};

    text_str(q, "?idsite=");
    text_str(q, s->site_id);
    text_str(q, "&rec=1");
    char number[64];
    if (is_page || is_screen) {
        const char *title = name;
        if (is_page && title == NULL)
            title = nonblank(get_string(page, "title"));
        if (is_page && title == NULL)
            title = nonblank(get_string(properties, "title"));
        if (title)
            q_param(q, "action_name", title);
        if (is_screen || url == NULL) {
            app_url(s, context, name, &built);
            url = built.data;
        }
    } else {
        if (url == NULL) {
            app_base(s, context, &built);
            url = built.data;
        }
        const char *category = nonblank(get_string(properties, "eventCategory"));
        const char *action = nonblank(get_string(properties, "eventAction"));
        if (action == NULL)
            action = nonblank(get_string(event, "event"));
        const char *label = NULL;
        json_t *label_value = json_object_get(properties, "eventLabel");
        char label_buf[64];
        if (label_value && !scalar_string(label_value, label_buf, sizeof label_buf, &label))
            label = NULL;
        q_param(q, "e_c", category ? category : s->event_category);
        q_param(q, "e_a", action ? action : "(unnamed)");
        if (label && !is_blank(label))
            q_param(q, "e_n", label);
        const char *v = NULL;
        if (numeric_string(json_object_get(properties, "value"), number, sizeof number, &v) ||
            numeric_string(json_object_get(properties, "revenue"), number, sizeof number, &v))
            q_param(q, "e_v", v);
    }
    if (built.failed || url == NULL) {
        free(built.data);
        return -1;
    }
    q_param(q, "url", url);
    free(built.data);
    if (referrer)
        q_param(q, "urlref", referrer);

    const char *anonymous_id = nonblank(get_string(event, "anonymousId"));
    const char *user_id = nonblank(get_string(event, "userId"));
    const char *visitor_source = anonymous_id ? anonymous_id : user_id;
    if (visitor_source) {
        char vid[17];
        visitor_id(visitor_source, strlen(visitor_source), vid);
        q_param(q, "_id", vid);
    }
    if (user_id)
        q_param(q, "uid", user_id);

    /* The event's own time: always with a token; without one Matomo refuses a
     * cdt over 24 h old, so an older event is recorded at its delivery. */
    const char *timestamp = get_string(event, "timestamp");
    int64_t ts_ms;
    if (timestamp && parse_timestamp_ms(timestamp, &ts_ms) &&
        (s->token_auth || now_ms - ts_ms < RECENT_MS)) {
        if (ts_ms >= 1000) {
            snprintf(number, sizeof number, "%lld", (long long)(ts_ms / 1000));
            q_param(q, "cdt", number);
        }
    }
    const char *ip = get_string(context, "ip");
    if (s->token_auth && ip && valid_ip(ip)) {
        if (ip[0] == '[') {
            char bare[64];
            snprintf(bare, sizeof bare, "%.*s", (int)(strlen(ip) - 2), ip + 1);
            q_param(q, "cip", bare);
        } else {
            q_param(q, "cip", ip);
        }
    }
    const char *agent = nonblank(get_string(context, "userAgent"));
    q_param(q, "ua", agent ? agent : s->user_agent);
    const char *locale = nonblank(get_string(context, "locale"));
    if (locale)
        q_param(q, "lang", locale);
    json_t *screen = json_object_get(context, "screen");
    json_t *width = json_object_get(screen, "width"), *height = json_object_get(screen, "height");
    if (json_is_integer(width) && json_is_integer(height) && json_integer_value(width) > 0 &&
        json_integer_value(height) > 0) {
        snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT "x%" JSON_INTEGER_FORMAT,
                 json_integer_value(width), json_integer_value(height));
        q_param(q, "res", number);
    }
    if (s->bots)
        text_str(q, "&bots=1");
    for (size_t i = 0; i < s->dimension_count; i++) {
        const dimension *dim = &s->dimensions[i];
        for (size_t j = 0; j < dim->path_count; j++) {
            json_t *v = follow(event, dim->paths[j]);
            const char *str = NULL;
            if (v == NULL || !scalar_string(v, number, sizeof number, &str) || is_blank(str))
                continue;
            char key[32];
            snprintf(key, sizeof key, "dimension%u", dim->id);
            q_param(q, key, str);
            break;
        }
    }
    return q->failed ? -1 : 0;
}

static int matomo_encode(void *state, const herald_backend_batch *batch,
                         herald_backend_request *out, char *err, size_t errlen)
{
    matomo_state *s = state;
    json_t *body = json_object(), *requests = json_array();
    char *payload = NULL;
    int rc = -1;
    if (body == NULL || requests == NULL || json_object_set(body, "requests", requests) != 0)
        goto oom;
    for (size_t i = 0; i < batch->count; i++) {
        json_error_t jerr;
        json_t *event = json_loadb(batch->events[i], batch->event_lengths[i], 0, &jerr);
        if (!json_is_object(event) || !wanted_type(get_string(event, "type"))) {
            /* identify, group and alias have no Matomo request; a stored
             * event that does not parse is reported in classify. */
            json_decref(event);
            continue;
        }
        text q = {0};
        int failed = encode_event(s, event, batch->now_ms, &q) != 0 ||
                     json_array_append_new(requests, json_stringn(q.data, q.length)) != 0;
        free(q.data);
        json_decref(event);
        if (failed)
            goto oom;
    }
    if (json_array_size(requests) == 0) {
        rc = HERALD_ENCODE_SKIP; /* Matomo has no identify, group or alias */
        goto done;
    }
    if (s->token_auth && json_object_set_new(body, "token_auth", json_string(s->token_auth)) != 0)
        goto oom;
    if ((payload = json_dumps(body, JSON_COMPACT)) == NULL)
        goto oom;
    size_t len = strlen(payload);
    out->url = s->endpoint;
    out->body = herald_alloc(len + 1);
    out->headers = herald_strdup("Content-Type: application/json");
    if (out->body == NULL || out->headers == NULL)
        goto oom;
    memcpy(out->body, payload, len + 1);
    out->body_length = len;
    if (s->token_auth &&
        out->struct_size >= offsetof(herald_backend_request, secrets) + sizeof out->secrets &&
        (out->secrets = herald_strdup(s->token_auth)) == NULL)
        goto oom;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "matomo: out of memory");
done:
    free(payload);
    json_decref(requests);
    json_decref(body);
    return rc;
}

/* ---- classify ---- */

static long long member_integer(json_t *doc, const char *key, long long fallback)
{
    json_t *v = json_object_get(doc, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : fallback;
}

/* Matomo's bulk answer ({"status": ..., "tracked": N, "invalid": M, ...}),
 * or NULL. */
static json_t *bulk_answer(const herald_backend_response *response)
{
    json_error_t jerr;
    json_t *doc = response->body_length
                      ? json_loadb(response->body, response->body_length, 0, &jerr)
                      : NULL;
    if (json_is_object(doc) && json_is_string(json_object_get(doc, "status")) &&
        json_is_integer(json_object_get(doc, "tracked")))
        return doc;
    json_decref(doc);
    return NULL;
}

static void classify_success(const matomo_state *s, const herald_backend_response *response,
                             const herald_backend_batch *batch, herald_verdict *out)
{
    json_t *doc = bulk_answer(response);
    if (doc == NULL) {
        /* Matomo always answers a bulk request with its JSON: this is
         * something else (a login page, another server), and what it did
         * with the events is unknown. */
        out->kind = HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "matomo: HTTP %ld without Matomo's bulk tracking answer ({\"status\", "
                 "\"tracked\", \"invalid\"}): is %.100s Matomo's tracker?",
                 response->status, s->endpoint);
        return;
    }
    size_t count = batch->count;
    /* Which event each request of "requests" came from. */
    size_t *event_of = calloc(count ? count : 1, sizeof *event_of);
    unsigned char *sent = calloc(count ? count : 1, 1);
    if (event_of == NULL || sent == NULL) {
        free(event_of);
        free(sent);
        json_decref(doc);
        out->kind = HERALD_VERDICT_OK; /* accepted; the details are lost */
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if ((sent[i] = (unsigned char)event_is_sent(batch, i)) != 0)
            event_of[n++] = i;
    long long tracked = member_integer(doc, "tracked", 0);
    long long invalid = member_integer(doc, "invalid", 0);
    /* Counts of this request's n requests, whatever the server says. */
    tracked = tracked < 0 ? 0 : tracked > (long long)n ? (long long)n : tracked;
    invalid = invalid < 0 ? 0 : invalid > (long long)n ? (long long)n : invalid;
    json_t *indices = json_object_get(doc, "invalid_indices");
    int *kinds = out->struct_size >= offsetof(herald_verdict, event_kinds) + sizeof out->event_kinds
                     ? out->event_kinds
                     : NULL;
    out->kind = HERALD_VERDICT_OK;
    size_t rejected = 0;
    int per_event = 0;
    if (invalid > 0 && json_is_array(indices)) {
        /* Named (Matomo does so for a superuser token_auth): only those fail. */
        size_t k;
        json_t *index;
        json_array_foreach(indices, k, index)
        {
            if (!json_is_integer(index) || json_integer_value(index) < 0 ||
                (size_t)json_integer_value(index) >= n)
                continue;
            size_t i = event_of[json_integer_value(index)];
            if (count == 1)
                out->kind = HERALD_VERDICT_REJECT;
            else if (kinds)
                kinds[i] = HERALD_VERDICT_REJECT;
            rejected++;
        }
        per_event = 1;
    } else if (invalid > 0 && invalid == (long long)n) {
        /* Every request refused: each one is known without indices. */
        out->kind = HERALD_VERDICT_REJECT;
        for (size_t i = 0; kinds && i < count; i++)
            if (!sent[i])
                kinds[i] = HERALD_VERDICT_OK;
        rejected = n;
    } else if (invalid > 0) {
        /* Some refused, unnamed: never resend the batch (Matomo has no
         * duplicate protection), count them as dropped. */
        out->dropped = (uint32_t)invalid;
        snprintf(out->reason, sizeof out->reason,
                 "matomo: %lld of %zu requests refused as invalid; Matomo names them "
                 "(invalid_indices) only to a superuser token_auth",
                 invalid, n);
    }
    if (rejected > 0)
        snprintf(out->reason, sizeof out->reason,
                 "matomo: request refused as invalid by Matomo (site %s unknown, a time (cdt) "
                 "over 24 h old or a visitor IP (cip) without a token_auth with write access, "
                 "or older than the server keeps raw data)",
                 s->site_id);
    /* Requests neither tracked nor invalid were skipped by Matomo (a
     * database lock wait timeout): lost, never resent. */
    long long missing = (long long)n - tracked - invalid;
    if (missing > 0 && (!per_event || rejected == 0)) {
        out->dropped += (uint32_t)missing;
        if (out->reason[0] == '\0')
            snprintf(out->reason, sizeof out->reason,
                     "matomo: %lld of %zu requests neither tracked nor invalid (skipped by the "
                     "server)",
                     missing, n);
    }
    /* A stored event that did not parse was never sent: dead-letter it. */
    for (size_t i = 0; i < count; i++) {
        if (sent[i])
            continue;
        json_error_t jerr;
        json_t *event = json_loadb(batch->events[i], batch->event_lengths[i], 0, &jerr);
        if (!json_is_object(event)) {
            if (count == 1)
                out->kind = HERALD_VERDICT_REJECT;
            else if (kinds)
                kinds[i] = HERALD_VERDICT_REJECT;
            if (out->reason[0] == '\0')
                snprintf(out->reason, sizeof out->reason,
                         "matomo: stored event is not a JSON object");
        }
        json_decref(event);
    }
    free(event_of);
    free(sent);
    json_decref(doc);
}

static void matomo_classify(void *state, const herald_backend_response *response,
                            const herald_backend_batch *batch, herald_verdict *out)
{
    matomo_state *s = state;
    herald_verdict_from_status(response, out);
    long status = response->status;
    if (status >= 200 && status < 300) {
        out->reason[0] = '\0';
        classify_success(s, response, batch, out);
    } else if (status == 401 || status == 403) {
        out->kind = HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "HTTP %ld: refused before Matomo's tracker; check token_auth and url (Matomo "
                 "itself does not answer bulk tracking with %ld: a proxy or firewall does)",
                 status, status);
    } else if (status >= 500 && status < 600) {
        json_t *doc = bulk_answer(response);
        const char *st = doc ? get_string(doc, "status") : NULL;
        if (st && strcmp(st, "error") == 0) {
            /* Matomo's own error answer: a fault of the server, which rolled
             * the bulk back, or a bulk refused for its token. Retried. */
            if (s->token_auth)
                snprintf(out->reason, sizeof out->reason,
                         "HTTP %ld: Matomo reported an error (status \"error\", tracked %lld): a "
                         "server fault, or bulk tracking requires a token_auth with write access "
                         "to site %s (bulk_requests_require_authentication)",
                         status, member_integer(doc, "tracked", 0), s->site_id);
            else
                snprintf(out->reason, sizeof out->reason,
                         "HTTP %ld: Matomo reported an error (status \"error\", tracked %lld): a "
                         "server fault, or the server requires token_auth for bulk tracking "
                         "(bulk_requests_require_authentication) and none is configured",
                         status, member_integer(doc, "tracked", 0));
        }
        json_decref(doc);
    }
}

static const herald_backend_v1 matomo_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "matomo",
    .create = matomo_create,
    .destroy = matomo_destroy,
    .limits = matomo_limits,
    .encode = matomo_encode,
    .classify = matomo_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-matomo.so): the same source,
 * the public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &matomo_backend;
}
#else
const herald_backend_v1 *herald_backend_matomo(void);
const herald_backend_v1 *herald_backend_matomo(void)
{
    return &matomo_backend;
}
#endif
