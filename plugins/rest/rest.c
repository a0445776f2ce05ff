/*
 * The custom REST backend: posts events to any HTTP endpoint, either as a
 * Segment-compatible batch {"batch":[...],"sentAt":...} or one event object
 * per request. Config (JSON object):
 *   url        http:// or https:// endpoint (required)
 *   mode       "batch" (default) or "single"
 *   gzip       true (default): the endpoint accepts Content-Encoding: gzip
 *   headers    object of extra request headers, e.g. {"Authorization": "Bearer ..."}
 *   write_key  HTTP Basic username (Segment/RudderStack style), empty password
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

typedef struct rest_state {
    char *url;
    int single;
    int gzip;
    char *headers; /* "Name: value" lines joined by '\n' */
} rest_state;

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

/* A header name is an RFC 7230 token; a value has no control characters. */
static int header_valid(const char *name, const char *value)
{
    if (*name == '\0')
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p > 0x20 && *p < 0x7f) || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    for (const char *p = value; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

static int append_header(char **headers, size_t *len, const char *name, const char *value)
{
    size_t add = strlen(name) + 2 + strlen(value) + 1;
    char *grown = realloc(*headers, *len + add + 1);
    if (grown == NULL)
        return -1;
    *len += (size_t)sprintf(grown + *len, "%s%s: %s", *len ? "\n" : "", name, value);
    *headers = grown;
    return 0;
}

static void rest_destroy(void *state)
{
    rest_state *s = state;
    if (s == NULL)
        return;
    free(s->url);
    free(s->headers);
    free(s);
}

static int rest_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                       size_t errlen)
{
    (void)core_abi;
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "rest: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    rest_state *s = calloc(1, sizeof *s);
    size_t headers_len = 0;
    const char *key;
    json_t *value;
    int failed = s == NULL;
    if (s)
        s->gzip = 1;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        if (strcmp(key, "url") == 0 && json_is_string(value)) {
            const char *url = json_string_value(value);
            if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
                snprintf(err, errlen, "rest: url must start with http:// or https://");
                failed = 1;
            } else if (strpbrk(url, " \t\r\n")) {
                snprintf(err, errlen, "rest: url must not contain white space");
                failed = 1;
            } else {
                s->url = strdup(url);
            }
        } else if (strcmp(key, "mode") == 0 && json_is_string(value)) {
            const char *mode = json_string_value(value);
            if (strcmp(mode, "single") == 0) {
                s->single = 1;
            } else if (strcmp(mode, "batch") != 0) {
                snprintf(err, errlen, "rest: mode must be \"batch\" or \"single\"");
                failed = 1;
            }
        } else if (strcmp(key, "gzip") == 0 && json_is_boolean(value)) {
            s->gzip = json_is_true(value);
        } else if (strcmp(key, "write_key") == 0 && json_is_string(value)) {
            size_t n = json_string_length(value) + 2;
            char *pair = malloc(n);
            char *encoded = NULL, *header = NULL;
            if (pair) {
                snprintf(pair, n, "%s:", json_string_value(value));
                encoded = base64(pair, n - 1);
            }
            if (encoded && (header = malloc(strlen(encoded) + 7)) != NULL) {
                sprintf(header, "Basic %s", encoded);
                failed = append_header(&s->headers, &headers_len, "Authorization", header) != 0;
            } else {
                failed = 1;
            }
            free(pair);
            free(encoded);
            free(header);
        } else if (strcmp(key, "headers") == 0 && json_is_object(value)) {
            const char *name;
            json_t *header_value;
            json_object_foreach(value, name, header_value)
            {
                if (!json_is_string(header_value) ||
                    !header_valid(name, json_string_value(header_value))) {
                    snprintf(err, errlen, "rest: header \"%.64s\" is not a valid HTTP header",
                             name);
                    failed = 1;
                    break;
                }
                if (append_header(&s->headers, &headers_len, name,
                                  json_string_value(header_value)) != 0) {
                    failed = 1;
                    break;
                }
            }
        } else {
            snprintf(err, errlen, "rest: unknown or mistyped setting \"%.64s\"", key);
            failed = 1;
        }
    }
    if (!failed && s->headers != NULL) {
        /* Basic auth from write_key next to an Authorization header of the
         * user's would send two Authorization headers: refuse the ambiguity. */
        int authorizations = 0;
        for (const char *line = s->headers; line; line = strchr(line, '\n')) {
            if (*line == '\n')
                line++;
            authorizations += strncasecmp(line, "Authorization:", 14) == 0;
        }
        if (authorizations > 1) {
            snprintf(err, errlen, "rest: write_key and an Authorization header conflict");
            failed = 1;
        }
    }
    json_decref(config);
    if (!failed && (s == NULL || s->url == NULL)) {
        snprintf(err, errlen, "rest: \"url\" is required");
        failed = 1;
    }
    if (!failed && append_header(&s->headers, &headers_len, "Content-Type", "application/json"))
        failed = 1;
    if (failed) {
        rest_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void rest_limits(const void *state, herald_backend_limits *out)
{
    const rest_state *s = state;
    out->max_events_per_request = s->single ? 1 : 0;
    out->max_request_bytes = 0;
    out->max_event_bytes = 0;
    out->accepts_gzip = s->gzip;
    out->max_concurrency = 0;
}

static int rest_encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                       char *err, size_t errlen)
{
    rest_state *s = state;
    char sent_at[32];
    herald_format_timestamp_ms(batch->now_ms, sent_at, sizeof sent_at);
    /* Events are stored as serialized objects: splice them, never re-parse. */
    static const char head[] = "{\"batch\":[";
    static const char tail_fmt[] = "],\"sentAt\":\"%s\"}";
    size_t total = sizeof head + sizeof tail_fmt + sizeof sent_at + batch->count;
    for (size_t i = 0; i < batch->count; i++)
        total += batch->event_lengths[i];
    char *body = herald_alloc(total);
    if (body == NULL) {
        snprintf(err, errlen, "rest: out of memory");
        return -1;
    }
    size_t len = 0;
    if (s->single) {
        /* One event: add sentAt before its closing brace. */
        size_t n = batch->event_lengths[0];
        const char *event = batch->events[0];
        while (n > 0 && event[n - 1] != '}')
            n--;
        if (n == 0) {
            herald_free(body);
            snprintf(err, errlen, "rest: stored event is not a JSON object");
            return -1;
        }
        memcpy(body, event, n - 1);
        len = n - 1;
        len += (size_t)sprintf(body + len, ",\"sentAt\":\"%s\"}", sent_at);
    } else {
        memcpy(body, head, sizeof head - 1);
        len = sizeof head - 1;
        for (size_t i = 0; i < batch->count; i++) {
            if (i)
                body[len++] = ',';
            memcpy(body + len, batch->events[i], batch->event_lengths[i]);
            len += batch->event_lengths[i];
        }
        len += (size_t)sprintf(body + len, tail_fmt, sent_at);
    }
    out->url = s->url;
    out->body = body;
    out->body_length = len;
    out->headers = herald_strdup(s->headers);
    if (out->headers == NULL) {
        snprintf(err, errlen, "rest: out of memory");
        return -1;
    }
    return 0;
}

static void rest_classify(void *state, const herald_backend_response *response,
                          const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 rest_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "rest",
    .create = rest_create,
    .destroy = rest_destroy,
    .limits = rest_limits,
    .encode = rest_encode,
    .classify = rest_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-rest.so): the same source, the
 * public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &rest_backend;
}
#else
const herald_backend_v1 *herald_backend_rest(void);
const herald_backend_v1 *herald_backend_rest(void)
{
    return &rest_backend;
}
#endif
