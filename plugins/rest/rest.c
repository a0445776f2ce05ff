/*
 * The custom REST backend: posts events to any HTTP endpoint, either as a
 * Segment-compatible batch {"batch":[...],"sentAt":...} or one event object
 * per request. Config (JSON object):
 *   url          http:// or https:// endpoint (required)
 *   mode         "batch" (default) or "single"
 *   gzip         true (default): the endpoint accepts Content-Encoding: gzip
 *   headers      object of extra request headers, e.g. {"Authorization": "Bearer ..."}
 *   write_key    HTTP Basic username (Segment/RudderStack style), empty password
 *   batch_key    the batch's array member ("batch"; "" posts a bare JSON array)
 *   sent_at_key  the send time's member ("sentAt"; "" sends none)
 *   mapping      a declarative mapping from herald's event to the receiver's
 *                own schema (docs/backends.md): {"event_type": ["$.event",
 *                "$.name"], "page_url": "$.context.page.url", "source":
 *                {"const": "herald"}, "prop_*": "$.properties"}
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

/* One target field of a declarative mapping. */
typedef enum field_kind { FIELD_PATH, FIELD_CONST, FIELD_FLATTEN } field_kind;

typedef struct mapped_field {
    char *target;      /* output key; for FIELD_FLATTEN the prefix of the spread keys */
    field_kind kind;
    char **paths;      /* alternatives, first present wins: "$.context.page.url" */
    size_t path_count;
    json_t *value;     /* FIELD_CONST: the constant; FIELD_PATH: the default, or NULL */
} mapped_field;

typedef struct rest_state {
    char *url;
    int single;
    int gzip;
    char *headers;     /* "Name: value" lines joined by '\n' */
    char *batch_key;   /* "batch"; "" sends a bare JSON array */
    char *sent_at_key; /* "sentAt"; "" sends none */
    mapped_field *fields;
    size_t field_count;
} rest_state;

/* ---- declarative mapping ---- */

/* Follow "$.a.b.0.c" into an event; NULL when absent. */
static json_t *follow(json_t *root, const char *path)
{
    json_t *node = root;
    const char *p = path + 1; /* after '$' */
    while (*p == '.' && node != NULL) {
        p++;
        size_t n = strcspn(p, ".");
        char key[128];
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

static int path_valid(const char *path)
{
    if (path[0] != '$' || (path[1] != '\0' && path[1] != '.'))
        return 0;
    for (const char *p = path + 1; *p; p++)
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    return strlen(path) < 512;
}

static int key_valid(const char *key)
{
    for (const char *p = key; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    return strlen(key) <= 64;
}

static void fields_free(mapped_field *fields, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(fields[i].target);
        for (size_t j = 0; j < fields[i].path_count; j++)
            free(fields[i].paths[j]);
        free(fields[i].paths);
        json_decref(fields[i].value);
    }
    free(fields);
}

static int add_path(mapped_field *f, json_t *path, char *err, size_t errlen)
{
    if (!json_is_string(path) || !path_valid(json_string_value(path))) {
        snprintf(err, errlen, "rest: mapping \"%.64s\": a path looks like \"$.context.page.url\"",
                 f->target);
        return -1;
    }
    char **grown = realloc(f->paths, (f->path_count + 1) * sizeof *grown);
    if (grown == NULL)
        return -1;
    f->paths = grown;
    if ((f->paths[f->path_count] = strdup(json_string_value(path))) == NULL)
        return -1;
    f->path_count++;
    return 0;
}

/* Compile {"target": spec, ...}. A spec is "$.path"; ["$.a", "$.b"] (first
 * present); {"path": "$.a" or [...], "default": v}; {"const": v}; and a target
 * ending in '*' takes {"flatten": "$.properties"} or "$.properties" and spreads
 * that object's members under the target's prefix. */
static int mapping_compile(rest_state *s, json_t *mapping, char *err, size_t errlen)
{
    size_t n = json_object_size(mapping);
    s->fields = calloc(n ? n : 1, sizeof *s->fields);
    if (s->fields == NULL)
        return -1;
    const char *target;
    json_t *spec;
    json_object_foreach(mapping, target, spec)
    {
        mapped_field *f = &s->fields[s->field_count++];
        size_t tlen = strlen(target);
        int flatten = tlen > 0 && target[tlen - 1] == '*';
        f->target = strndup(target, flatten ? tlen - 1 : tlen);
        if (f->target == NULL)
            return -1;
        if ((!flatten && tlen == 0) || !key_valid(f->target)) {
            snprintf(err, errlen, "rest: mapping target \"%.64s\" must be 1-64 of [A-Za-z0-9_.-]",
                     target);
            return -1;
        }
        f->kind = flatten ? FIELD_FLATTEN : FIELD_PATH;
        json_t *paths = spec;
        if (json_is_object(spec)) {
            const char *k;
            json_t *v;
            paths = NULL;
            json_object_foreach(spec, k, v)
            {
                if ((strcmp(k, "const") == 0 || strcmp(k, "default") == 0) && !flatten) {
                    if (f->value != NULL) {
                        snprintf(err, errlen,
                                 "rest: mapping \"%.64s\": const and default together", target);
                        return -1;
                    }
                    f->kind = strcmp(k, "const") == 0 ? FIELD_CONST : f->kind;
                    f->value = json_incref(v);
                } else if (strcmp(k, flatten ? "flatten" : "path") == 0) {
                    paths = v;
                } else {
                    snprintf(err, errlen, "rest: mapping \"%.64s\": unknown key \"%.32s\"",
                             target, k);
                    return -1;
                }
            }
            if (f->kind == FIELD_CONST) {
                if (paths != NULL) {
                    snprintf(err, errlen, "rest: mapping \"%.64s\": const and path together",
                             target);
                    return -1;
                }
                continue;
            }
        }
        if (json_is_array(paths)) {
            size_t i;
            json_t *p;
            json_array_foreach(paths, i, p) if (add_path(f, p, err, errlen) != 0) return -1;
        } else if (paths == NULL || add_path(f, paths, err, errlen) != 0) {
            if (paths == NULL)
                snprintf(err, errlen, "rest: mapping \"%.64s\" needs a path", target);
            return -1;
        }
        if (f->path_count == 0) {
            snprintf(err, errlen, "rest: mapping \"%.64s\" needs a path", target);
            return -1;
        }
    }
    return 0;
}

/* Apply the mapping to one stored event. Returns a new object, or NULL. */
static json_t *mapping_apply(const rest_state *s, const char *event, size_t length)
{
    json_t *in = json_loadb(event, length, 0, NULL);
    json_t *out = in ? json_object() : NULL;
    for (size_t i = 0; out != NULL && i < s->field_count; i++) {
        const mapped_field *f = &s->fields[i];
        if (f->kind == FIELD_CONST) {
            json_object_set(out, f->target, f->value);
            continue;
        }
        json_t *found = NULL;
        for (size_t j = 0; j < f->path_count && found == NULL; j++)
            found = follow(in, f->paths[j]);
        if (f->kind == FIELD_FLATTEN) {
            const char *k;
            json_t *v;
            json_object_foreach(found, k, v)
            {
                size_t n = strlen(f->target) + strlen(k) + 1;
                char *key = malloc(n);
                if (key == NULL)
                    continue;
                snprintf(key, n, "%s%s", f->target, k);
                json_object_set(out, key, v);
                free(key);
            }
        } else if (found != NULL || f->value != NULL) {
            json_object_set(out, f->target, found ? found : f->value);
        }
    }
    json_decref(in);
    return out;
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
    free(s->batch_key);
    free(s->sent_at_key);
    fields_free(s->fields, s->field_count);
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
        } else if ((strcmp(key, "batch_key") == 0 || strcmp(key, "sent_at_key") == 0) &&
                   json_is_string(value)) {
            if (!key_valid(json_string_value(value))) {
                snprintf(err, errlen, "rest: %s must be up to 64 of [A-Za-z0-9_.-]", key);
                failed = 1;
            } else {
                char **slot = key[0] == 'b' ? &s->batch_key : &s->sent_at_key;
                free(*slot);
                *slot = strdup(json_string_value(value));
            }
        } else if (strcmp(key, "mapping") == 0 && json_is_object(value)) {
            if (s->fields != NULL || mapping_compile(s, value, err, errlen) != 0) {
                if (err[0] == '\0')
                    snprintf(err, errlen, "rest: out of memory compiling the mapping");
                failed = 1;
            }
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
    if (!failed && s->batch_key == NULL && (s->batch_key = strdup("batch")) == NULL)
        failed = 1;
    if (!failed && s->sent_at_key == NULL && (s->sent_at_key = strdup("sentAt")) == NULL)
        failed = 1;
    if (!failed && s->batch_key[0] && strcmp(s->batch_key, s->sent_at_key) == 0) {
        /* The send time would overwrite the events: a 2xx for nothing sent. */
        snprintf(err, errlen, "rest: batch_key and sent_at_key must differ");
        failed = 1;
    }
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

/* The mapped (or generic) body built as JSON values. */
static char *encode_mapped(const rest_state *s, const herald_backend_batch *batch,
                           const char *sent_at, size_t *len)
{
    json_t *items = json_array();
    for (size_t i = 0; items && i < batch->count; i++) {
        json_t *item = mapping_apply(s, batch->events[i], batch->event_lengths[i]);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            json_decref(items);
            return NULL;
        }
    }
    json_t *body;
    if (s->single) {
        body = json_incref(json_array_get(items, 0));
        if (body && s->sent_at_key[0])
            json_object_set_new(body, s->sent_at_key, json_string(sent_at));
    } else if (s->batch_key[0] == '\0') {
        body = json_incref(items);
    } else {
        body = json_object();
        if (body) {
            json_object_set(body, s->batch_key, items);
            if (s->sent_at_key[0])
                json_object_set_new(body, s->sent_at_key, json_string(sent_at));
        }
    }
    json_decref(items);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return NULL;
    *len = strlen(text);
    char *copy = herald_strdup(text);
    free(text);
    return copy;
}

static int encode_request(void *state, const herald_backend_batch *batch,
                          herald_backend_request *out, char *err, size_t errlen)
{
    rest_state *s = state;
    char sent_at[32];
    herald_format_timestamp_ms(batch->now_ms, sent_at, sizeof sent_at);
    out->url = s->url;
    out->headers = herald_strdup(s->headers);
    if (out->headers == NULL) {
        snprintf(err, errlen, "rest: out of memory");
        return -1;
    }
    if (s->fields != NULL) {
        out->body = encode_mapped(s, batch, sent_at, &out->body_length);
        if (out->body == NULL) {
            snprintf(err, errlen, "rest: an event could not be mapped (not JSON, or out of memory)");
            return -1;
        }
        return 0;
    }
    /* Without a mapping the stored events are spliced as they are: no
     * re-parsing on the delivery path. */
    size_t total = 64 + strlen(s->batch_key) + strlen(s->sent_at_key) + sizeof sent_at +
                   batch->count;
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
        if (s->sent_at_key[0])
            len += (size_t)sprintf(body + len, ",\"%s\":\"%s\"", s->sent_at_key, sent_at);
        body[len++] = '}';
    } else {
        if (s->batch_key[0])
            len += (size_t)sprintf(body, "{\"%s\":[", s->batch_key);
        else
            body[len++] = '[';
        for (size_t i = 0; i < batch->count; i++) {
            if (i)
                body[len++] = ',';
            memcpy(body + len, batch->events[i], batch->event_lengths[i]);
            len += batch->event_lengths[i];
        }
        body[len++] = ']';
        if (s->batch_key[0]) {
            if (s->sent_at_key[0])
                len += (size_t)sprintf(body + len, ",\"%s\":\"%s\"", s->sent_at_key, sent_at);
            body[len++] = '}';
        }
    }
    body[len] = '\0';
    out->body = body;
    out->body_length = len;
    return 0;
}

/* On failure nothing stays allocated in *out, whoever the caller is. */
static int rest_encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                       char *err, size_t errlen)
{
    int rc = encode_request(state, batch, out, err, errlen);
    if (rc != 0) {
        herald_free(out->headers);
        herald_free(out->body);
        out->headers = NULL;
        out->body = NULL;
    }
    return rc;
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
