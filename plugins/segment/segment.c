/*
 * The Segment-compatible backend: batches of herald's events, unchanged, to
 * <url>/v1/batch as Segment's HTTP Tracking API takes them, and with it every
 * collector that speaks that API (RudderStack, Jitsu, Snowplow's Segment
 * webhook, ...). Contract: BACKENDS.md section 3.
 *
 * Config (JSON object):
 *   url        http:// or https:// URL of the collector (default
 *              "https://api.segment.io"); requests go to <url>/v1/batch
 *              unless the URL already names a path, which is then used as it is
 *   write_key  the source's write key (required): HTTP Basic user name with an
 *              empty password, as Segment's clients send it and as RudderStack
 *              requires it. Never logged, never stored in dead letters.
 *   gzip       true (default): bodies may be sent with Content-Encoding: gzip
 *
 * Limits are the smaller of Segment's (32 KB per message, 500 KB per batch)
 * and RudderStack's (4 MB per request): an event over 32000 bytes is
 * dead-lettered without a request, a request body stays within 500000 bytes.
 *
 * Every message must carry a userId or an anonymousId (RudderStack refuses
 * the whole request otherwise). herald always sets anonymousId, so this is a
 * guard against events stored by other means: such an event is left out of
 * the request and dead-lettered with the reason, and the rest are sent.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

#define DEFAULT_URL "https://api.segment.io"
#define BATCH_PATH "/v1/batch"
#define MAX_EVENT_BYTES 32000u     /* Segment: 32 KB per message (analytics-go 32000) */
#define MAX_REQUEST_BYTES 500000u  /* Segment: 500 KB per batch; RudderStack: 4 MB */
#define MAX_WRITE_KEY_BYTES 512

#define NO_ID_REASON                                                                          \
    "segment: event has neither userId nor anonymousId (Segment and RudderStack refuse it)"

typedef struct segment_state {
    char *endpoint; /* the URL requests go to */
    char *headers;  /* Content-Type and Authorization lines */
    int gzip;
} segment_state;

/* ---- small helpers ---- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static char *base64(const char *in, size_t len)
{
    static const char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)(unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)(unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned)(unsigned char)in[i + 2];
        out[o++] = table[(v >> 18) & 63];
        out[o++] = table[(v >> 12) & 63];
        out[o++] = i + 1 < len ? table[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? table[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* <url>/v1/batch, or the URL itself when it names a path ("/" alone does
 * not). NULL with err set when the URL is unusable. */
static char *make_endpoint(const char *url, char *err, size_t errlen)
{
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "segment: url must start with http:// or https://");
        return NULL;
    }
    if (strpbrk(url, " \t\r\n#") || has_control(url)) {
        snprintf(err, errlen, "segment: url must not contain white space or a fragment");
        return NULL;
    }
    const char *host = strstr(url, "://") + 3;
    size_t host_len = strcspn(host, "/?");
    if (host_len == 0) {
        snprintf(err, errlen, "segment: url has no host");
        return NULL;
    }
    const char *rest = host + host_len;
    int names_path = 0;
    if (*rest == '/') {
        const char *p = rest;
        while (*p == '/')
            p++;
        names_path = *p != '\0' && *p != '?';
    }
    if (!names_path && strchr(rest, '?')) {
        snprintf(err, errlen, "segment: url has a query but no path: give the full endpoint, "
                              "e.g. \"https://collector.example/v1/batch?x=y\"");
        return NULL;
    }
    if (names_path)
        return strdup(url);
    size_t n = (size_t)(rest - url);
    char *out = malloc(n + sizeof BATCH_PATH);
    if (out == NULL)
        return NULL;
    memcpy(out, url, n);
    memcpy(out + n, BATCH_PATH, sizeof BATCH_PATH);
    return out;
}

/* ---- a minimal reader for the top-level members of one JSON object ----
 *
 * Enough to find "userId" and "anonymousId" in a stored event without
 * building a tree: values are skipped, not decoded. */

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Index after the string starting at s[i] == '"', or n when unterminated. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

/* Index after the value starting at s[i]. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return n;
    if (s[i] == '"')
        return skip_string(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char ch = s[i];
            if (ch == '"') {
                i = skip_string(s, n, i);
                continue;
            }
            if (ch == '{' || ch == '[')
                depth++;
            else if (ch == '}' || ch == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && !strchr(",}] \t\r\n", s[i]))
        i++;
    return i;
}

/* Whether the value at s[i] identifies someone: a string with something
 * other than white space in it, or a number (collectors stringify it). */
static int identifying(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    if (s[i] == '"') {
        size_t end = skip_string(s, n, i);
        for (size_t j = i + 1; j + 1 < end; j++)
            if (!strchr(" \t\r\n", s[j]))
                return 1;
        return 0;
    }
    return s[i] == '-' || (s[i] >= '0' && s[i] <= '9');
}

/* 1 when the stored event (a JSON object) has a top-level userId or
 * anonymousId that identifies someone; 0 when it has neither. */
static int has_identity(const char *s, size_t n)
{
    size_t i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{')
        return 0;
    i = skip_ws(s, n, i + 1);
    while (i < n && s[i] == '"') {
        size_t key = i + 1;
        size_t end = skip_string(s, n, i);
        size_t key_len = end > key ? end - key - 1 : 0;
        i = skip_ws(s, n, end);
        if (i >= n || s[i] != ':')
            return 0;
        i = skip_ws(s, n, i + 1);
        if (((key_len == 6 && memcmp(s + key, "userId", 6) == 0) ||
             (key_len == 11 && memcmp(s + key, "anonymousId", 11) == 0)) &&
            identifying(s, n, i))
            return 1;
        i = skip_ws(s, n, skip_value(s, n, i));
        if (i < n && s[i] == ',')
            i = skip_ws(s, n, i + 1);
        else
            break;
    }
    return 0;
}

/* ---- create / destroy ---- */

static void segment_destroy(void *state)
{
    segment_state *s = state;
    if (s == NULL)
        return;
    free(s->endpoint);
    if (s->headers) {
        /* The Authorization line holds the key: do not leave it in freed memory. */
        volatile char *p = s->headers;
        while (*p)
            *p++ = '\0';
    }
    free(s->headers);
    free(s);
}

static char *auth_headers(const char *write_key)
{
    size_t n = strlen(write_key);
    char *pair = malloc(n + 2);
    if (pair == NULL)
        return NULL;
    memcpy(pair, write_key, n);
    pair[n] = ':';
    pair[n + 1] = '\0';
    char *encoded = base64(pair, n + 1);
    memset(pair, 0, n + 1);
    free(pair);
    if (encoded == NULL)
        return NULL;
    static const char head[] = "Content-Type: application/json\nAuthorization: Basic ";
    size_t len = sizeof head + strlen(encoded);
    char *headers = malloc(len);
    if (headers)
        snprintf(headers, len, "%s%s", head, encoded);
    memset(encoded, 0, strlen(encoded));
    free(encoded);
    return headers;
}

static int segment_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                          size_t errlen)
{
    (void)core_abi;
    if (errlen > 0)
        err[0] = '\0';
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "segment: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    segment_state *s = calloc(1, sizeof *s);
    int failed = s == NULL;
    if (s)
        s->gzip = 1;
    const char *write_key = NULL;
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        const char *str = json_is_string(value) ? json_string_value(value) : NULL;
        if (strcmp(key, "url") == 0 && str) {
            free(s->endpoint);
            if ((s->endpoint = make_endpoint(str, err, errlen)) == NULL)
                failed = 1;
        } else if (strcmp(key, "write_key") == 0 && str) {
            size_t n = json_string_length(value);
            if (n == 0 || strlen(str) != n || has_control(str) || n > MAX_WRITE_KEY_BYTES ||
                strchr(str, ':')) {
                /* Never echo the key itself. */
                snprintf(err, errlen,
                         "segment: write_key must be 1-%d bytes without control characters or "
                         "':' (the source's write key, e.g. from Segment's source settings)",
                         MAX_WRITE_KEY_BYTES);
                failed = 1;
            } else {
                write_key = str;
            }
        } else if (strcmp(key, "gzip") == 0 && json_is_boolean(value)) {
            s->gzip = json_is_true(value);
        } else {
            snprintf(err, errlen,
                     "segment: unknown or mistyped setting \"%.64s\" (known: url, write_key, "
                     "gzip)",
                     key);
            failed = 1;
        }
    }
    if (!failed && write_key == NULL) {
        snprintf(err, errlen, "segment: \"write_key\" is required: the write key of the source "
                              "(Segment, RudderStack and Jitsu authenticate with it)");
        failed = 1;
    }
    if (!failed && s->endpoint == NULL &&
        (s->endpoint = make_endpoint(DEFAULT_URL, err, errlen)) == NULL)
        failed = 1;
    if (!failed && (s->headers = auth_headers(write_key)) == NULL)
        failed = 1;
    json_decref(config);
    if (failed) {
        if (errlen > 0 && err[0] == '\0')
            snprintf(err, errlen, "segment: out of memory");
        segment_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void segment_limits(const void *state, herald_backend_limits *out)
{
    const segment_state *s = state;
    out->max_events_per_request = 0;
    out->max_request_bytes = MAX_REQUEST_BYTES;
    out->max_event_bytes = MAX_EVENT_BYTES;
    out->accepts_gzip = s->gzip;
    out->max_concurrency = 0;
}

/* ---- encode ---- */

static int segment_encode(void *state, const herald_backend_batch *batch,
                          herald_backend_request *out, char *err, size_t errlen)
{
    segment_state *s = state;
    char sent_at[32];
    herald_format_timestamp_ms(batch->now_ms, sent_at, sizeof sent_at);
    size_t total = 64 + sizeof sent_at + batch->count;
    size_t usable = 0;
    for (size_t i = 0; i < batch->count; i++) {
        total += batch->event_lengths[i];
        usable += (size_t)has_identity(batch->events[i], batch->event_lengths[i]);
    }
    if (usable == 0) {
        /* Nothing to send: every event lacks an identity. */
        snprintf(err, errlen, "%s", NO_ID_REASON);
        return -1;
    }
    char *body = herald_alloc(total);
    out->headers = herald_strdup(s->headers);
    if (body == NULL || out->headers == NULL) {
        herald_free(body);
        snprintf(err, errlen, "segment: out of memory");
        return -1;
    }
    /* The stored events are spliced as they are (they already are Segment
     * messages); sentAt is this attempt's clock. */
    static const char head[] = "{\"batch\":[";
    size_t len = sizeof head - 1;
    memcpy(body, head, len);
    int first = 1;
    for (size_t i = 0; i < batch->count; i++) {
        if (!has_identity(batch->events[i], batch->event_lengths[i]))
            continue;
        if (!first)
            body[len++] = ',';
        first = 0;
        memcpy(body + len, batch->events[i], batch->event_lengths[i]);
        len += batch->event_lengths[i];
    }
    len += (size_t)snprintf(body + len, total - len, "],\"sentAt\":\"%s\"}", sent_at);
    out->url = s->endpoint;
    out->body = body;
    out->body_length = len;
    return 0;
}

/* ---- classify ---- */

/* The server's message: "message" of a JSON error body ({"code", "message"}
 * as Segment answers), else the body's first line; printable ASCII only. */
static void server_message(const herald_backend_response *response, char *out, size_t outlen)
{
    out[0] = '\0';
    if (outlen == 0 || response->body == NULL || response->body_length == 0)
        return;
    const char *text = response->body;
    size_t n = response->body_length;
    json_error_t jerr;
    json_t *doc = json_loadb(response->body, response->body_length, 0, &jerr);
    json_t *message = json_object_get(doc, "message");
    if (!json_is_string(message))
        message = json_object_get(doc, "error");
    if (json_is_string(message)) {
        text = json_string_value(message);
        n = strlen(text);
    }
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\r' || ch == '\n')
            break;
        out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[o] = '\0';
    json_decref(doc);
}

/* Write the verdict's reason (cut to its size). */
__attribute__((format(printf, 2, 3))) static void set_reason(herald_verdict *out,
                                                             const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vsnprintf(out->reason, sizeof out->reason, format, ap);
    va_end(ap);
}

static void segment_classify(void *state, const herald_backend_response *response,
                             const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    herald_verdict_from_status(response, out);
    long status = response->status;
    char message[160];
    server_message(response, message, sizeof message);
    const char *sep = message[0] ? ": " : "";
    if (status >= 200 && status < 300) {
        /* Events without an identity were left out of the body: they can
         * never be accepted, so they are dead-lettered, the rest delivered. */
        int event_kinds_ok = out->struct_size >= offsetof(herald_verdict, event_kinds) +
                                                     sizeof out->event_kinds &&
                             out->event_kinds != NULL;
        for (size_t i = 0; event_kinds_ok && i < batch->count; i++) {
            if (!has_identity(batch->events[i], batch->event_lengths[i])) {
                out->event_kinds[i] = HERALD_VERDICT_REJECT;
                set_reason(out, "%s", NO_ID_REASON);
            }
        }
    } else if (status == 400) {
        /* A message the collector refuses (RudderStack refuses the whole
         * request): the core bisects a batch to find it. */
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out, "HTTP 400: request refused%s%s", sep, message);
    } else if (status == 401 || status == 403) {
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out,
                   "HTTP %ld: write key refused%s%s (configuration error: check the write "
                   "key/source)",
                   status, sep, message);
    } else if (status == 404) {
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out,
                   "HTTP 404: source disabled or wrong endpoint%s%s (configuration error: "
                   "check the write key/source and url)",
                   sep, message);
    } else if (status == 413) {
        out->kind = HERALD_VERDICT_SPLIT;
        set_reason(out, "HTTP 413: request too large%s%s", sep, message);
    } else if (status == 429 || status >= 500) {
        out->kind = HERALD_VERDICT_RETRY;
    }
}

static const herald_backend_v1 segment_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "segment",
    .create = segment_create,
    .destroy = segment_destroy,
    .limits = segment_limits,
    .encode = segment_encode,
    .classify = segment_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-segment.so): the same source,
 * the public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &segment_backend;
}
#else
const herald_backend_v1 *herald_backend_segment(void);
const herald_backend_v1 *herald_backend_segment(void)
{
    return &segment_backend;
}
#endif
