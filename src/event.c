#include "event.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "herald/plugin.h"
#include "log.h"
#include "url.h"

static const char *const message_types[] = {"track", "page", "screen", "identify", "group", "alias"};

static void uuid_format(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void herald_uuid_random(char out[37], void *ctx)
{
    unsigned char b[16];
    herald_random_fill(ctx, b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    uuid_format(b, out);
}

void herald_idgen_reset(herald_idgen *g)
{
    g->last_ms = INT64_MIN;
}

/* 74 fresh random bits for a new millisecond: rand_a's top bit is left
 * clear, so a millisecond has at least 2^73 ids before it borrows the next. */
static void idgen_seed(herald_idgen *g)
{
    unsigned char r[10];
    herald_random_fill(g->random, r, sizeof r);
    g->rand_a = (uint16_t)(((r[0] & 0x07) << 8) | r[1]);
    uint64_t b = 0;
    for (int i = 2; i < 10; i++)
        b = (b << 8) | r[i];
    g->rand_b = b & ((UINT64_C(1) << 62) - 1);
}

void herald_uuid_v7(char out[37], void *ctx)
{
    herald_idgen *g = ctx;
    int64_t ms = g->now_ms < 0 ? 0 : g->now_ms;
    if (g->last_ms == INT64_MIN || ms > g->last_ms) {
        g->last_ms = ms;
        idgen_seed(g);
    } else if (++g->rand_b >> 62) { /* same millisecond (or the clock went back) */
        g->rand_b = 0;
        if (++g->rand_a >> 12) { /* 2^73 ids in one ms: borrow the next one */
            g->last_ms++;
            idgen_seed(g);
        }
    }
    uint64_t t = (uint64_t)g->last_ms;
    unsigned char b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(t >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (g->rand_a >> 8)); /* version 7 */
    b[7] = (unsigned char)g->rand_a;
    b[8] = (unsigned char)(0x80 | ((g->rand_b >> 56) & 0x3f)); /* RFC 9562 variant */
    for (int i = 9; i < 16; i++)
        b[i] = (unsigned char)(g->rand_b >> (8 * (15 - i)));
    uuid_format(b, out);
}

void herald_format_timestamp(int64_t unix_ms, char buf[25])
{
    herald_format_timestamp_ms(unix_ms, buf, 25);
}

static int digits(const char **p, int n)
{
    for (int i = 0; i < n; i++, (*p)++)
        if (!isdigit((unsigned char)**p))
            return 0;
    return 1;
}

static int two_digit_value(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

int herald_timestamp_valid(const char *s)
{
    const char *p = s;
    if (!digits(&p, 4) || *p++ != '-' || !digits(&p, 2) || *p++ != '-' || !digits(&p, 2))
        return 0;
    int month = two_digit_value(s + 5), day = two_digit_value(s + 8);
    if (month < 1 || month > 12 || day < 1 || day > 31)
        return 0;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return 0;
    p++;
    const char *clock = p;
    if (!digits(&p, 2) || *p++ != ':' || !digits(&p, 2) || *p++ != ':' || !digits(&p, 2))
        return 0;
    if (two_digit_value(clock) > 23 || two_digit_value(clock + 3) > 59 ||
        two_digit_value(clock + 6) > 60)
        return 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0';
    if (*p != '+' && *p != '-')
        return 0;
    p++;
    const char *offset = p;
    if (!digits(&p, 2) || *p++ != ':' || !digits(&p, 2) || *p != '\0')
        return 0;
    return two_digit_value(offset) <= 23 && two_digit_value(offset + 3) <= 59;
}

int herald_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int n;
        uint32_t cp;
        if ((*p & 0xe0) == 0xc0) {
            n = 1;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            n = 2;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            n = 3;
            cp = *p & 0x07;
        } else {
            return 0;
        }
        p++;
        for (int i = 0; i < n; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

herald_status herald_event_parse_object(const char *json, const char *what, json_t **out,
                                        char *err, size_t errlen)
{
    if (json == NULL) {
        *out = json_object();
        return *out ? HERALD_OK : HERALD_E_NO_MEMORY;
    }
    json_error_t jerr;
    json_t *value = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (value == NULL) {
        /* jansson quotes the offending token ("... near 'jane@x.org'"): keep
         * the caller's data out of error text, which ends up in logs. */
        char *near = strstr(jerr.text, " near ");
        if (near)
            *near = '\0';
        herald_error_format(err, errlen, "%s: invalid JSON at line %d column %d: %s", what,
                            jerr.line, jerr.column, jerr.text);
        return HERALD_E_INVALID_JSON;
    }
    if (!json_is_object(value)) {
        herald_error_format(err, errlen, "%s: expected a JSON object", what);
        json_decref(value);
        return HERALD_E_NOT_OBJECT;
    }
    *out = value;
    return HERALD_OK;
}

static int is_message_type(const char *type)
{
    for (size_t i = 0; i < sizeof message_types / sizeof *message_types; i++)
        if (strcmp(type, message_types[i]) == 0)
            return 1;
    return 0;
}

/* A field that must be a non-empty string when present; integers are
 * stringified, as Segment's own clients do for ids. */
static herald_status check_id(json_t *message, const char *key, int required, char *err,
                              size_t errlen)
{
    json_t *value = json_object_get(message, key);
    if (value == NULL || json_is_null(value)) {
        if (value != NULL)
            json_object_del(message, key);
        if (required) {
            herald_error_format(err, errlen, "\"%s\" is required", key);
            return HERALD_E_INVALID_ARGUMENT;
        }
        return HERALD_OK;
    }
    if (json_is_integer(value)) {
        char text[32];
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        json_object_set_new(message, key, json_string(text));
        return HERALD_OK;
    }
    if (!json_is_string(value) || json_string_length(value) == 0) {
        herald_error_format(err, errlen, "\"%s\" must be a non-empty string", key);
        return HERALD_E_INVALID_ARGUMENT;
    }
    if (json_string_length(value) > 1024) {
        herald_error_format(err, errlen, "\"%s\" is longer than 1024 bytes", key);
        return HERALD_E_INVALID_ARGUMENT;
    }
    return HERALD_OK;
}

static herald_status check_object(json_t *message, const char *key, char *err, size_t errlen)
{
    json_t *value = json_object_get(message, key);
    if (value == NULL || json_is_object(value))
        return HERALD_OK;
    if (json_is_null(value)) {
        json_object_del(message, key);
        return HERALD_OK;
    }
    herald_error_format(err, errlen, "\"%s\" must be a JSON object", key);
    return HERALD_E_NOT_OBJECT;
}

static const char *string_at(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

/* Page and campaign from a page URL: context.page.url, or for page events
 * properties.url. What the caller gave in context.page wins. */
static void enrich_page(json_t *message, json_t *context, const char *type)
{
    json_t *given_page = json_object_get(context, "page");
    json_t *properties = json_object_get(message, "properties");
    int is_page = strcmp(type, "page") == 0;
    const char *url = string_at(given_page, "url");
    if (url == NULL && is_page)
        url = string_at(properties, "url");
    if (url == NULL)
        return;
    const char *referrer = string_at(given_page, "referrer");
    const char *title = string_at(given_page, "title");
    if (is_page) {
        if (referrer == NULL)
            referrer = string_at(properties, "referrer");
        if (title == NULL)
            title = string_at(properties, "title");
    }
    json_t *page = NULL, *campaign = NULL;
    if (herald_url_page_context(url, referrer, title, &page, &campaign) != 0)
        return; /* not a URL we can read: leave what the caller gave */
    if (json_is_object(given_page))
        json_object_update(page, given_page);
    json_object_set_new(context, "page", page);
    if (campaign != NULL && json_object_get(context, "campaign") == NULL)
        json_object_set_new(context, "campaign", campaign);
    else
        json_decref(campaign);
}

/* The event's context: the client's snapshot, then what the caller gave,
 * then identity, session and page. Caller-given fields win. */
static herald_status enrich(const herald_event_env *env, json_t *message, const char *type)
{
    json_t *given = json_object_get(message, "context");
    json_t *context = env->context ? json_deep_copy(env->context) : json_object();
    if (context == NULL)
        return HERALD_E_NO_MEMORY;
    if (json_object_get(context, "library") == NULL)
        json_object_set_new(context, "library",
                            json_pack("{s:s,s:s}", "name", "herald", "version",
                                      HERALD_VERSION_STRING));
    if (given != NULL)
        herald_context_merge(context, given);
    if (env->traits != NULL && json_object_size(env->traits) > 0 &&
        json_object_get(context, "traits") == NULL && strcmp(type, "identify") != 0)
        json_object_set_new(context, "traits", json_deep_copy(env->traits));
    if (env->group_id != NULL && json_object_get(context, "groupId") == NULL &&
        strcmp(type, "group") != 0)
        json_object_set_new(context, "groupId", json_string(env->group_id));
    if (env->session_id != 0 && json_object_get(context, "session") == NULL)
        json_object_set_new(context, "session",
                            json_pack("{s:I,s:I}", "id", (json_int_t)env->session_id, "sequence",
                                      (json_int_t)env->session_sequence));
    json_object_set_new(message, "context", context);
    return HERALD_OK;
}

static herald_status complete(const herald_event_env *env, json_t *message, const char **type_out,
                              char *err, size_t errlen)
{
    json_t *type_value = json_object_get(message, "type");
    if (!json_is_string(type_value) || !is_message_type(json_string_value(type_value))) {
        herald_error_format(err, errlen,
                            "\"type\" must be one of track, page, screen, identify, group, alias");
        return HERALD_E_INVALID_ARGUMENT;
    }
    const char *type = json_string_value(type_value);
    for (size_t i = 0; i < sizeof message_types / sizeof *message_types; i++)
        if (strcmp(type, message_types[i]) == 0)
            *type_out = message_types[i];

    herald_status st;
    int is_track = strcmp(type, "track") == 0;
    if ((st = check_id(message, "event", is_track, err, errlen)) != HERALD_OK ||
        (st = check_id(message, "userId", strcmp(type, "alias") == 0, err, errlen)) != HERALD_OK ||
        (st = check_id(message, "anonymousId", 0, err, errlen)) != HERALD_OK ||
        (st = check_id(message, "groupId", strcmp(type, "group") == 0, err, errlen)) != HERALD_OK ||
        (st = check_id(message, "previousId", strcmp(type, "alias") == 0, err, errlen)) != HERALD_OK ||
        (st = check_id(message, "messageId", 0, err, errlen)) != HERALD_OK ||
        (st = check_object(message, "properties", err, errlen)) != HERALD_OK ||
        (st = check_object(message, "traits", err, errlen)) != HERALD_OK ||
        (st = check_object(message, "context", err, errlen)) != HERALD_OK ||
        (st = check_object(message, "integrations", err, errlen)) != HERALD_OK)
        return st;

    /* sentAt is the transport's, set at each attempt: a caller's own would
     * go stale on retries, and duplicate the backend's key. */
    json_object_del(message, "sentAt");

    json_t *name = json_object_get(message, "name");
    if (name != NULL && !json_is_string(name) && !json_is_null(name)) {
        herald_error_format(err, errlen, "\"name\" must be a string");
        return HERALD_E_INVALID_ARGUMENT;
    }
    json_t *message_id = json_object_get(message, "messageId");
    if (message_id != NULL && json_string_length(message_id) > 100) {
        herald_error_format(err, errlen, "\"messageId\" is longer than 100 bytes");
        return HERALD_E_INVALID_ARGUMENT;
    }
    if (message_id == NULL) {
        char id[37];
        env->new_message_id(id, env->new_message_id_ctx);
        json_object_set_new(message, "messageId", json_string(id));
    }

    json_t *timestamp = json_object_get(message, "timestamp");
    if (timestamp == NULL || json_is_null(timestamp)) {
        char text[25];
        herald_format_timestamp(env->now_ms, text);
        json_object_set_new(message, "timestamp", json_string(text));
    } else if (!json_is_string(timestamp) || !herald_timestamp_valid(json_string_value(timestamp))) {
        herald_error_format(err, errlen, "\"timestamp\" must be an RFC 3339 date-time");
        return HERALD_E_INVALID_ARGUMENT;
    }

    if (json_object_get(message, "userId") == NULL && env->user_id != NULL &&
        strcmp(type, "alias") != 0)
        json_object_set_new(message, "userId", json_string(env->user_id));
    if (json_object_get(message, "anonymousId") == NULL)
        json_object_set_new(message, "anonymousId", json_string(env->anonymous_id));

    if (is_track || strcmp(type, "page") == 0 || strcmp(type, "screen") == 0) {
        if (json_object_get(message, "properties") == NULL)
            json_object_set_new(message, "properties", json_object());
    } else if (strcmp(type, "identify") == 0 || strcmp(type, "group") == 0) {
        if (json_object_get(message, "traits") == NULL)
            json_object_set_new(message, "traits", json_object());
    }

    return enrich(env, message, type);
}

herald_status herald_event_finish(const herald_event_env *env, json_t *message, char **out_json,
                                  size_t *out_len, const char **out_type, char *err,
                                  size_t errlen)
{
    herald_status st = complete(env, message, out_type, err, errlen);
    if (st == HERALD_OK && env->redactor != NULL) {
        st = herald_redact_event(env->redactor, message, env->redactions);
        if (st != HERALD_OK)
            herald_error_format(err, errlen, "out of memory redacting the event");
    }
    /* Page and campaign fields are derived from the page URL after
     * redaction, from the redacted URL: a path or query value taken from the
     * raw URL could carry what the URL rules removed (a webhook secret in a
     * path segment is only recognisable in the whole URL). */
    if (st == HERALD_OK)
        enrich_page(message, json_object_get(message, "context"), *out_type);
    if (st != HERALD_OK) {
        json_decref(message);
        return st;
    }
    char *text = json_dumps(message, JSON_COMPACT);
    if (text == NULL) {
        json_decref(message);
        herald_error_format(err, errlen, "out of memory serializing the event");
        return HERALD_E_NO_MEMORY;
    }
    size_t len = strlen(text);
    if (len > env->max_event_bytes) {
        json_decref(message);
        herald_error_format(err, errlen, "event is %zu bytes, over max_event_bytes (%u)", len,
                            env->max_event_bytes);
        free(text);
        return HERALD_E_TOO_LARGE;
    }
    if (env->finished != NULL)
        *env->finished = message; /* the caller's reference now */
    else
        json_decref(message);
    *out_json = text;
    *out_len = len;
    return HERALD_OK;
}
