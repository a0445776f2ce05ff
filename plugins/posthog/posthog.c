/*
 * The PostHog backend: batches of events to PostHog's capture service,
 * POST <url>/batch/ as {"api_key", "batch": [...], "sent_at"} (contract:
 * BACKENDS.md section 4, read from PostHog's Rust capture service).
 *
 * Config (JSON object):
 *   url                   http:// or https:// base URL of the PostHog
 *                         instance (required), e.g. https://us.i.posthog.com
 *                         or https://eu.i.posthog.com; requests go to
 *                         <url>/batch/ (a URL already ending in /batch or
 *                         /batch/ is used as it is)
 *   api_key               the project API key, "phc_..." (required). A
 *                         personal API key ("phx_...") is refused at create:
 *                         capture rejects it. Sent in the body, never logged.
 *   group_type            PostHog group type of herald's group calls and of
 *                         context.groupId (default "company")
 *   geoip                 true (default); false adds $geoip_disable to every
 *                         event (server-side apps: the connection IP is the
 *                         server's, not the user's)
 *   historical_migration  false (default); true sends batches to PostHog's
 *                         historical pipeline (backfills, old dead letters)
 *   gzip                  true (default): bodies may be gzipped
 *
 * Each event is mapped to PostHog's shape: distinct_id from userId, else
 * anonymousId; uuid from messageId (so that a retry is de-duplicated); the
 * event's timestamp; properties with PostHog's own names for what herald's
 * context knows ($os, $app_version, $current_url, $ip, ...). identify, group
 * and alias become $identify, $groupidentify and $create_alias; page and
 * screen $pageview and $screen. docs/backends.md has the full table.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

#define MAX_EVENTS_PER_REQUEST 1000u
#define MAX_REQUEST_BYTES 5000000u  /* capture takes 20 MB at /batch/; posthog-python keeps 5 MiB */
#define MAX_EVENT_BYTES 921600u     /* 900 KiB stored, as posthog-python's MAX_MSG_SIZE */
#define MAX_MAPPED_EVENT_BYTES 1000000u /* capture's Kafka message cap */
#define MAX_API_KEY_BYTES 64        /* capture's token shape check */
#define MAX_GROUP_TYPE_BYTES 200
#define DEFAULT_GROUP_TYPE "company"

#define NO_ID_REASON                                                                          \
    "posthog: event has neither userId nor anonymousId (PostHog requires a distinct_id)"

/* UUIDv5 namespace of uuids derived from messageIds that are not UUIDs. */
static const unsigned char message_namespace[16] = {0x38, 0xc8, 0xeb, 0x11, 0x79, 0x4a,
                                                    0x44, 0x5b, 0x82, 0x94, 0x99, 0xd6,
                                                    0xe4, 0xe3, 0x33, 0x40};

/* What the last encode left out, for classify of the same batch. */
typedef struct left_out_record {
    size_t count;
    const char **events;      /* the batch's event pointers, to recognise it */
    size_t *lengths;
    unsigned char *left_out;  /* 1: not in the body */
    size_t left_count;
    char reason[200];         /* why the first one was left out */
} left_out_record;

typedef struct posthog_state {
    char *endpoint;
    char *api_key;
    char *group_type;
    int geoip;
    int historical;
    int gzip;
    left_out_record last;
} posthog_state;

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
    return s && *s && !is_blank(s) ? s : NULL;
}

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

/* ---- SHA-1 (FIPS 180-4), for name-based UUIDs only ---- */

typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t length;
    unsigned char block[64];
    size_t used;
} sha1_ctx;

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(sha1_ctx *c, const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & cc) | (~b & d);
            k = 0x5a827999u;
        } else if (i < 40) {
            f = b ^ cc ^ d;
            k = 0x6ed9eba1u;
        } else if (i < 60) {
            f = (b & cc) | (b & d) | (cc & d);
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ cc ^ d;
            k = 0xca62c1d6u;
        }
        uint32_t tmp = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = cc;
        cc = rol32(b, 30);
        b = a;
        a = tmp;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

static void sha1_init(sha1_ctx *c)
{
    static const uint32_t init[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u,
                                     0xc3d2e1f0u};
    memcpy(c->h, init, sizeof init);
    c->length = 0;
    c->used = 0;
}

static void sha1_update(sha1_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    c->length += (uint64_t)n * 8;
    while (n > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha1_final(sha1_ctx *c, unsigned char out[20])
{
    uint64_t bits = c->length;
    unsigned char pad = 0x80;
    sha1_update(c, &pad, 1);
    unsigned char zero = 0;
    while (c->used != 56)
        sha1_update(c, &zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(c, len, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

/* ---- UUIDs ---- */

static void uuid_format(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* A hyphenated UUID (8-4-4-4-12 hex digits, any case), lower-cased into out. */
static int uuid_canonical(const char *s, char out[37])
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-')
                return 0;
        } else if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) {
            out[i] = ch;
            continue;
        } else if (ch >= 'A' && ch <= 'F') {
            ch = (char)(ch - 'A' + 'a');
        } else {
            return 0;
        }
        out[i] = ch;
    }
    out[36] = '\0';
    return 1;
}

/* RFC 9562 UUIDv5 of name in the herald message-id namespace. */
static void uuid_v5(const char *name, size_t n, char out[37])
{
    sha1_ctx c;
    unsigned char digest[20];
    sha1_init(&c);
    sha1_update(&c, message_namespace, sizeof message_namespace);
    sha1_update(&c, name, n);
    sha1_final(&c, digest);
    digest[6] = (unsigned char)((digest[6] & 0x0f) | 0x50);
    digest[8] = (unsigned char)((digest[8] & 0x3f) | 0x80);
    uuid_format(digest, out);
}

/* A UUIDv7 for a herald session: its 48-bit time is the session's start
 * (herald's session id, unix ms), its other bits from SHA-1 of
 * "herald-session:<anonymousId>:<session id>", so that every event of the
 * session, in any batch, carries the same $session_id. */
static void uuid_v7_session(int64_t start_ms, const char *who, char out[37])
{
    char name[64];
    int n = snprintf(name, sizeof name, ":%lld", (long long)start_ms);
    sha1_ctx c;
    unsigned char digest[20];
    sha1_init(&c);
    sha1_update(&c, "herald-session:", 15);
    sha1_update(&c, who, strlen(who));
    sha1_update(&c, name, (size_t)n);
    sha1_final(&c, digest);
    unsigned char b[16];
    uint64_t ts = (uint64_t)start_ms;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ts >> (40 - 8 * i));
    memcpy(b + 6, digest, 10);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
}

/* ---- create / destroy ---- */

static void record_clear(left_out_record *r)
{
    free(r->events);
    free(r->lengths);
    free(r->left_out);
    memset(r, 0, sizeof *r);
}

static void posthog_destroy(void *state)
{
    posthog_state *s = state;
    if (s == NULL)
        return;
    free(s->endpoint);
    if (s->api_key) {
        volatile char *p = s->api_key;
        while (*p)
            *p++ = '\0';
    }
    free(s->api_key);
    free(s->group_type);
    record_clear(&s->last);
    free(s);
}

static char *make_endpoint(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    int has_path = n >= 6 && strncmp(url + n - 6, "/batch", 6) == 0;
    char *out = malloc(n + sizeof "/batch/");
    if (out == NULL)
        return NULL;
    memcpy(out, url, n);
    memcpy(out + n, has_path ? "/" : "/batch/", has_path ? 2 : sizeof "/batch/");
    return out;
}

static int set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
    return *slot == NULL ? -1 : 0;
}

static int posthog_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                          size_t errlen)
{
    (void)core_abi;
    if (errlen > 0)
        err[0] = '\0';
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "posthog: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    posthog_state *s = calloc(1, sizeof *s);
    int failed = s == NULL;
    if (s) {
        s->geoip = 1;
        s->gzip = 1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        const char *str = json_is_string(value) ? json_string_value(value) : NULL;
        if (strcmp(key, "url") == 0 && str) {
            if (strncasecmp(str, "http://", 7) != 0 && strncasecmp(str, "https://", 8) != 0) {
                snprintf(err, errlen, "posthog: url must start with http:// or https:// (e.g. "
                                      "\"https://us.i.posthog.com\")");
                failed = 1;
            } else if (strpbrk(str, " \t\r\n?#") || has_control(str)) {
                snprintf(err, errlen, "posthog: url must be the instance's base URL, without "
                                      "white space, query or fragment");
                failed = 1;
            } else {
                free(s->endpoint);
                failed = (s->endpoint = make_endpoint(str)) == NULL;
            }
        } else if (strcmp(key, "api_key") == 0 && str) {
            size_t n = json_string_length(value);
            int printable = strlen(str) == n;
            for (size_t i = 0; printable && i < n; i++)
                printable = str[i] > 0x20 && str[i] < 0x7f;
            /* Messages never quote the key. */
            if (strncmp(str, "phx_", 4) == 0) {
                snprintf(err, errlen,
                         "posthog: api_key is a personal API key (\"phx_...\"), which PostHog's "
                         "capture refuses: use the project API key (\"phc_...\", in Project "
                         "settings)");
                failed = 1;
            } else if (n == 0 || n > MAX_API_KEY_BYTES || !printable) {
                snprintf(err, errlen,
                         "posthog: api_key must be the project API key (\"phc_...\"): 1-%d "
                         "printable ASCII characters without spaces",
                         MAX_API_KEY_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->api_key, str);
            }
        } else if (strcmp(key, "group_type") == 0 && str) {
            if (*str == '\0' || is_blank(str) || has_control(str) ||
                strlen(str) > MAX_GROUP_TYPE_BYTES) {
                snprintf(err, errlen,
                         "posthog: group_type must be a group type name of 1-%d bytes (e.g. "
                         "\"company\")",
                         MAX_GROUP_TYPE_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->group_type, str);
            }
        } else if (strcmp(key, "geoip") == 0 && json_is_boolean(value)) {
            s->geoip = json_is_true(value);
        } else if (strcmp(key, "historical_migration") == 0 && json_is_boolean(value)) {
            s->historical = json_is_true(value);
        } else if (strcmp(key, "gzip") == 0 && json_is_boolean(value)) {
            s->gzip = json_is_true(value);
        } else {
            snprintf(err, errlen,
                     "posthog: unknown or mistyped setting \"%.64s\" (known: url, api_key, "
                     "group_type, geoip, historical_migration, gzip)",
                     key);
            failed = 1;
        }
        if (failed && err[0] == '\0')
            snprintf(err, errlen, "posthog: out of memory");
    }
    json_decref(config);
    if (!failed && s->endpoint == NULL) {
        snprintf(err, errlen, "posthog: \"url\" is required: the PostHog instance, e.g. "
                              "\"https://us.i.posthog.com\" or \"https://eu.i.posthog.com\"");
        failed = 1;
    }
    if (!failed && s->api_key == NULL) {
        snprintf(err, errlen, "posthog: \"api_key\" is required: the project API key "
                              "(\"phc_...\", in Project settings)");
        failed = 1;
    }
    if (!failed && s->group_type == NULL)
        failed = set_string(&s->group_type, DEFAULT_GROUP_TYPE);
    if (failed) {
        if (errlen > 0 && err[0] == '\0')
            snprintf(err, errlen, "posthog: out of memory");
        posthog_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void posthog_limits(const void *state, herald_backend_limits *out)
{
    const posthog_state *s = state;
    out->max_events_per_request = MAX_EVENTS_PER_REQUEST;
    out->max_request_bytes = MAX_REQUEST_BYTES;
    out->max_event_bytes = MAX_EVENT_BYTES;
    out->accepts_gzip = s->gzip;
    out->max_concurrency = 0;
}

/* ---- mapping one event ---- */

/* Set key unless the properties already have it (the caller's own win). */
static int put(json_t *props, const char *key, json_t *value)
{
    if (value == NULL)
        return -1;
    if (json_object_get(props, key) != NULL) {
        json_decref(value);
        return 0;
    }
    return json_object_set_new(props, key, value);
}

static int put_string(json_t *props, const char *key, const char *value)
{
    return value ? put(props, key, json_string(value)) : 0;
}

/* The member of `from` under `key`, if it is a string, number or boolean. */
static int put_scalar(json_t *props, const char *key, json_t *from, const char *member)
{
    json_t *v = json_object_get(from, member);
    if (!(json_is_string(v) || json_is_number(v) || json_is_boolean(v)))
        return 0;
    return put(props, key, json_incref(v));
}

/* The host of an absolute URL ("https://a.example:8080/x" -> "a.example:8080"). */
static int put_host(json_t *props, const char *key, const char *url)
{
    if (url == NULL)
        return 0;
    const char *p = strstr(url, "://");
    if (p == NULL)
        return 0;
    p += 3;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (n == 0)
        return 0;
    return put(props, key, json_stringn(p, n));
}

/* userId or anonymousId as a string (numbers stringified), or NULL. */
static char *identity(json_t *event, const char *key)
{
    json_t *v = json_object_get(event, key);
    if (json_is_string(v))
        return nonblank(json_string_value(v)) ? strdup(json_string_value(v)) : NULL;
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    return NULL;
}

static const char *const campaign_utm[][2] = {
    {"source", "utm_source"}, {"medium", "utm_medium"}, {"name", "utm_campaign"},
    {"term", "utm_term"},     {"content", "utm_content"},
};

/* herald's context, under PostHog's property names where PostHog has them. */
static int map_context(const posthog_state *s, json_t *props, json_t *context,
                       const char *session_who)
{
    int rc = 0;
    json_t *library = json_object_get(context, "library");
    const char *lib = nonblank(get_string(library, "name"));
    rc |= put_string(props, "$lib", lib ? lib : "herald");
    rc |= put_scalar(props, "$lib_version", library, "version");

    json_t *os = json_object_get(context, "os");
    rc |= put_scalar(props, "$os", os, "name");
    rc |= put_scalar(props, "$os_version", os, "version");

    json_t *device = json_object_get(context, "device");
    const char *type = nonblank(get_string(device, "type"));
    if (type) {
        /* PostHog's values are capitalised: Desktop, Mobile, Tablet. */
        char *cap = strdup(type);
        if (cap == NULL)
            return -1;
        if (cap[0] >= 'a' && cap[0] <= 'z')
            cap[0] = (char)(cap[0] - 'a' + 'A');
        rc |= put_string(props, "$device_type", cap);
        free(cap);
    }
    rc |= put_scalar(props, "$device_manufacturer", device, "manufacturer");
    rc |= put_scalar(props, "$device_model", device, "model");

    json_t *app = json_object_get(context, "app");
    rc |= put_scalar(props, "$app_name", app, "name");
    rc |= put_scalar(props, "$app_version", app, "version");
    rc |= put_scalar(props, "$app_build", app, "build");
    rc |= put_scalar(props, "$app_namespace", app, "namespace");

    rc |= put_scalar(props, "$locale", context, "locale");
    rc |= put_scalar(props, "$timezone", context, "timezone");
    rc |= put_scalar(props, "$raw_user_agent", context, "userAgent");
    rc |= put_scalar(props, "$ip", context, "ip");

    json_t *screen = json_object_get(context, "screen");
    rc |= put_scalar(props, "$screen_width", screen, "width");
    rc |= put_scalar(props, "$screen_height", screen, "height");

    json_t *page = json_object_get(context, "page");
    const char *url = nonblank(get_string(page, "url"));
    const char *referrer = nonblank(get_string(page, "referrer"));
    rc |= put_string(props, "$current_url", url);
    rc |= put_host(props, "$host", url);
    rc |= put_scalar(props, "$pathname", page, "path");
    rc |= put_scalar(props, "title", page, "title");
    rc |= put_string(props, "$referrer", referrer);
    rc |= put_host(props, "$referring_domain", referrer);

    json_t *campaign = json_object_get(context, "campaign");
    const char *ckey;
    json_t *cvalue;
    json_object_foreach(campaign, ckey, cvalue)
    {
        const char *name = ckey;
        for (size_t i = 0; i < sizeof campaign_utm / sizeof *campaign_utm; i++)
            if (strcmp(ckey, campaign_utm[i][0]) == 0)
                name = campaign_utm[i][1];
        rc |= put_scalar(props, name, campaign, ckey);
    }

    json_t *session = json_object_get(context, "session");
    json_t *sid = json_object_get(session, "id");
    if (json_is_integer(sid) && json_integer_value(sid) > 0 &&
        json_integer_value(sid) < ((json_int_t)1 << 48) && session_who != NULL) {
        char uuid[37];
        uuid_v7_session((int64_t)json_integer_value(sid), session_who, uuid);
        rc |= put_string(props, "$session_id", uuid);
    }

    const char *group = nonblank(get_string(context, "groupId"));
    if (group)
        rc |= put(props, "$groups", json_pack("{s:s}", s->group_type, group));

    if (!s->geoip)
        rc |= put(props, "$geoip_disable", json_true());
    return rc ? -1 : 0;
}

/* One herald event as a PostHog event. Returns the object, or NULL with why
 * set (why empty: out of memory). */
static json_t *map_event(const posthog_state *s, const char *data, size_t length, char *why,
                         size_t whylen)
{
    why[0] = '\0';
    json_error_t jerr;
    json_t *ev = json_loadb(data, length, 0, &jerr);
    json_t *out = NULL, *props = NULL;
    char *user = NULL, *anon = NULL;
    if (!json_is_object(ev)) {
        snprintf(why, whylen, "posthog: stored event is not a JSON object");
        goto fail;
    }
    const char *type = get_string(ev, "type");
    if (type == NULL)
        type = "track";
    user = identity(ev, "userId");
    anon = identity(ev, "anonymousId");
    const char *distinct = user ? user : anon;
    if (distinct == NULL) {
        snprintf(why, whylen, "%s", NO_ID_REASON);
        goto fail;
    }
    const char *name;
    int carries_properties = 0;
    if (strcmp(type, "track") == 0) {
        name = nonblank(get_string(ev, "event"));
        if (name == NULL) {
            snprintf(why, whylen, "posthog: track event without a name");
            goto fail;
        }
        carries_properties = 1;
    } else if (strcmp(type, "page") == 0) {
        name = "$pageview";
        carries_properties = 1;
    } else if (strcmp(type, "screen") == 0) {
        name = "$screen";
        carries_properties = 1;
    } else if (strcmp(type, "identify") == 0) {
        name = "$identify";
    } else if (strcmp(type, "group") == 0) {
        name = "$groupidentify";
    } else if (strcmp(type, "alias") == 0) {
        name = "$create_alias";
    } else {
        snprintf(why, whylen, "posthog: unknown event type \"%.32s\"", type);
        goto fail;
    }

    props = json_object();
    if (props == NULL)
        goto fail;
    json_t *properties = json_object_get(ev, "properties");
    if (carries_properties && json_is_object(properties) && json_object_update(props, properties))
        goto fail;
    int rc = 0;
    json_t *traits = json_object_get(ev, "traits");
    if (strcmp(type, "page") == 0) {
        json_t *page = json_object_get(json_object_get(ev, "context"), "page");
        const char *url = nonblank(get_string(page, "url"));
        if (url == NULL)
            url = nonblank(get_string(properties, "url"));
        rc |= put_string(props, "$current_url", url);
        rc |= put_string(props, "name", nonblank(get_string(ev, "name")));
    } else if (strcmp(type, "screen") == 0) {
        rc |= put_string(props, "$screen_name", nonblank(get_string(ev, "name")));
    } else if (strcmp(type, "identify") == 0) {
        if (json_is_object(traits) && json_object_size(traits) > 0)
            rc |= json_object_set(props, "$set", traits);
        if (user && anon && strcmp(user, anon) != 0)
            rc |= json_object_set_new(props, "$anon_distinct_id", json_string(anon));
    } else if (strcmp(type, "group") == 0) {
        const char *group = nonblank(get_string(ev, "groupId"));
        if (group == NULL) {
            snprintf(why, whylen, "posthog: group event without a groupId");
            goto fail;
        }
        rc |= json_object_set_new(props, "$group_type", json_string(s->group_type));
        rc |= json_object_set_new(props, "$group_key", json_string(group));
        rc |= json_object_set_new(props, "$group_set",
                                  json_is_object(traits) ? json_incref(traits) : json_object());
        rc |= json_object_set_new(props, "$groups", json_pack("{s:s}", s->group_type, group));
    } else if (strcmp(type, "alias") == 0) {
        const char *previous = nonblank(get_string(ev, "previousId"));
        if (previous == NULL) {
            snprintf(why, whylen, "posthog: alias event without a previousId");
            goto fail;
        }
        rc |= json_object_set_new(props, "distinct_id", json_string(distinct));
        rc |= json_object_set_new(props, "alias", json_string(previous));
    }
    if (rc || map_context(s, props, json_object_get(ev, "context"), anon ? anon : distinct))
        goto fail;

    out = json_object();
    if (out == NULL || json_object_set_new(out, "event", json_string(name)) ||
        json_object_set_new(out, "distinct_id", json_string(distinct)))
        goto fail;
    const char *message_id = get_string(ev, "messageId");
    if (message_id && *message_id) {
        char uuid[37];
        if (!uuid_canonical(message_id, uuid))
            uuid_v5(message_id, strlen(message_id), uuid);
        if (json_object_set_new(out, "uuid", json_string(uuid)))
            goto fail;
    }
    const char *timestamp = get_string(ev, "timestamp");
    if (timestamp && json_object_set_new(out, "timestamp", json_string(timestamp)))
        goto fail;
    if (json_object_set_new(out, "properties", props))
        goto fail_out;
    free(user);
    free(anon);
    json_decref(ev);
    return out;
fail:
    json_decref(props);
fail_out:
    json_decref(out);
    json_decref(ev);
    free(user);
    free(anon);
    return NULL;
}

/* ---- encode ---- */

static int posthog_encode(void *state, const herald_backend_batch *batch,
                          herald_backend_request *out, char *err, size_t errlen)
{
    posthog_state *s = state;
    left_out_record *r = &s->last;
    record_clear(r);
    text body = {0};
    char *key_json = NULL;
    int rc = -1;
    r->events = calloc(batch->count + 1, sizeof *r->events);
    r->lengths = calloc(batch->count + 1, sizeof *r->lengths);
    r->left_out = calloc(batch->count + 1, 1);
    json_t *key = json_string(s->api_key);
    key_json = key ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
    json_decref(key);
    if (r->events == NULL || r->lengths == NULL || r->left_out == NULL || key_json == NULL)
        goto oom;
    r->count = batch->count;
    text_str(&body, "{\"api_key\":");
    text_str(&body, key_json);
    if (s->historical)
        text_str(&body, ",\"historical_migration\":true");
    text_str(&body, ",\"batch\":[");
    size_t sent = 0;
    for (size_t i = 0; i < batch->count; i++) {
        r->events[i] = batch->events[i];
        r->lengths[i] = batch->event_lengths[i];
        char why[200];
        json_t *mapped = map_event(s, batch->events[i], batch->event_lengths[i], why, sizeof why);
        char *json = mapped ? json_dumps(mapped, JSON_COMPACT) : NULL;
        json_decref(mapped);
        if (json == NULL && why[0] == '\0')
            goto oom;
        size_t n = json ? strlen(json) : 0;
        if (json && n > MAX_MAPPED_EVENT_BYTES) {
            snprintf(why, sizeof why,
                     "posthog: event of %zu bytes as PostHog's event is over capture's limit of "
                     "%u bytes",
                     n, MAX_MAPPED_EVENT_BYTES);
            free(json);
            json = NULL;
        }
        if (json == NULL) {
            /* Never acceptable: left out, dead-lettered with why. */
            r->left_out[i] = 1;
            if (r->left_count++ == 0)
                snprintf(r->reason, sizeof r->reason, "%s", why);
            continue;
        }
        if (sent++)
            text_str(&body, ",");
        text_add(&body, json, n);
        free(json);
    }
    if (sent == 0) {
        snprintf(err, errlen, "%s", r->reason);
        goto done;
    }
    char sent_at[32];
    herald_format_timestamp_ms(batch->now_ms, sent_at, sizeof sent_at);
    text_str(&body, "],\"sent_at\":\"");
    text_str(&body, sent_at);
    text_str(&body, "\"}");
    if (body.failed)
        goto oom;
    out->url = s->endpoint;
    out->body = herald_alloc(body.length + 1);
    out->headers = herald_strdup("Content-Type: application/json");
    if (out->body == NULL || out->headers == NULL)
        goto oom;
    memcpy(out->body, body.data, body.length + 1);
    out->body_length = body.length;
    if (out->struct_size >= offsetof(herald_backend_request, secrets) + sizeof out->secrets &&
        (out->secrets = herald_strdup(s->api_key)) == NULL)
        goto oom;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "posthog: out of memory");
done:
    if (body.data)
        memset(body.data, 0, body.length); /* it held the key */
    free(body.data);
    if (key_json)
        memset(key_json, 0, strlen(key_json));
    free(key_json);
    return rc;
}

/* ---- classify ---- */

/* The first line of the response body, printable ASCII only. */
static void first_line(const herald_backend_response *response, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; response->body && i < response->body_length && o + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)response->body[i];
        if (ch == '\r' || ch == '\n')
            break;
        out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[o] = '\0';
}

/* Which events of `batch` the last encode left out. Returns the record when
 * it describes this batch; otherwise rebuilds it by mapping again. */
static const left_out_record *left_out_of(posthog_state *s, const herald_backend_batch *batch)
{
    left_out_record *r = &s->last;
    int same = r->count == batch->count && r->events != NULL;
    for (size_t i = 0; same && i < batch->count; i++)
        same = r->events[i] == batch->events[i] && r->lengths[i] == batch->event_lengths[i];
    if (same)
        return r;
    record_clear(r);
    r->left_out = calloc(batch->count + 1, 1);
    if (r->left_out == NULL)
        return NULL;
    for (size_t i = 0; i < batch->count; i++) {
        char why[200];
        json_t *mapped = map_event(s, batch->events[i], batch->event_lengths[i], why, sizeof why);
        json_decref(mapped);
        if (mapped == NULL && why[0] != '\0') {
            r->left_out[i] = 1;
            if (r->left_count++ == 0)
                snprintf(r->reason, sizeof r->reason, "%s", why);
        }
    }
    return r;
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

static void posthog_classify(void *state, const herald_backend_response *response,
                             const herald_backend_batch *batch, herald_verdict *out)
{
    posthog_state *s = state;
    herald_verdict_from_status(response, out);
    long status = response->status;
    char message[160];
    first_line(response, message, sizeof message);
    const char *sep = message[0] ? ": " : "";
    if (status >= 200 && status < 300) {
        int has_kinds = out->struct_size >= offsetof(herald_verdict, event_kinds) +
                                                sizeof out->event_kinds &&
                        out->event_kinds != NULL;
        const left_out_record *r = has_kinds ? left_out_of(s, batch) : NULL;
        for (size_t i = 0; r && r->left_out && i < batch->count; i++)
            if (r->left_out[i])
                out->event_kinds[i] = HERALD_VERDICT_REJECT;
        if (r && r->left_count > 0)
            set_reason(out, "%s", r->reason);
    } else if (status == 400) {
        /* A bad event (older capture also answers an oversize event so):
         * the core bisects a batch to dead-letter only the event at fault. */
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out, "HTTP 400: event refused%s%s", sep, message);
    } else if (status == 401) {
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out,
                   "HTTP 401: project API key rejected%s%s (configuration error: check "
                   "api_key, the project API key \"phc_...\" from Project settings)",
                   sep, message);
    } else if (status == 404) {
        out->kind = HERALD_VERDICT_REJECT;
        set_reason(out,
                   "HTTP 404: no PostHog capture endpoint at this url%s%s (configuration "
                   "error: check url, e.g. https://us.i.posthog.com)",
                   sep, message);
    } else if (status == 413) {
        out->kind = HERALD_VERDICT_SPLIT;
        set_reason(out, "HTTP 413: too large%s%s", sep, message);
    } else if (status == 429 || status >= 500) {
        out->kind = HERALD_VERDICT_RETRY;
    }
}

static const herald_backend_v1 posthog_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "posthog",
    .create = posthog_create,
    .destroy = posthog_destroy,
    .limits = posthog_limits,
    .encode = posthog_encode,
    .classify = posthog_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-posthog.so): the same source,
 * the public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &posthog_backend;
}
#else
const herald_backend_v1 *herald_backend_posthog(void);
const herald_backend_v1 *herald_backend_posthog(void)
{
    return &posthog_backend;
}
#endif
