/*
 * The Umami backend: one event per POST /api/send, or up to batch_max_events
 * per POST /api/batch (Umami 2.17 and later), in Umami's own shape
 * {"type": "event"|"identify", "payload": {...}}. The wire contract, per
 * version, is in BACKENDS.md section 2; docs/backends.md has the user's view.
 * Config (JSON object):
 *   url           the server's base URL, e.g. "https://umami.example.com" (required)
 *   website       the website id, a UUID (required)
 *   hostname      payload.hostname; default: the host of the event's page URL
 *   version       the server's Umami version: "2.10" (default) and later
 *   batch         true: POST /api/batch (2.17+, not 3.0.0-3.0.1); default false
 *   user_agent    User-Agent of events without context.userAgent
 *   visitor       "anonymous_id" (default): each anonymous id is its own visitor;
 *                 "ip_user_agent": Umami's own rule (IP + User-Agent) alone
 *   cache_tokens  visitors whose cache token is kept (default 10000; 0: none)
 *   data_limits   check payload.data against Umami's SQL columns (default true)
 *
 * What the server would refuse for good (an event name over 50 characters, a
 * too long URL on 2.x < 2.16, a property value its database cannot store) is
 * found here and dead-lettered with the reason, never sent.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

/* Umami's field limits (src/pages/api/send.ts in 2.x, route.ts and
 * prisma/schema.prisma later), in JavaScript string length: UTF-16 units. */
#define NAME_MAX_UNITS 50
#define URL_MAX_UNITS 500     /* url, referrer, title: rejected above this before 2.16 */
#define HOSTNAME_MAX_UNITS 100
#define LANGUAGE_MAX_UNITS 35
#define SCREEN_MAX_UNITS 11
#define DISTINCT_ID_MAX_UNITS 50 /* session.distinct_id VARCHAR(50), 2.18+ */
#define DATA_MAX_UNITS 500       /* event_data / session_data: key and string value VARCHAR(500) */
#define DATA_NUMBER_LIMIT 1e15   /* DECIMAL(19,4): 15 digits before the point */
#define BODY_MAX_BYTES (1024 * 1024) /* Next.js pages-router body limit ("1mb"), before 2.16 */
#define TOKEN_MAX_BYTES 8192
#define DEFAULT_CACHE_TOKENS 10000
#define MAX_CACHE_TOKENS 1000000

#define DEFAULT_USER_AGENT "herald-c/" HERALD_VERSION_STRING " (Linux)"

/* ---- the per-visitor cache tokens: a bounded LRU map ---- */

typedef struct token_entry {
    uint64_t hash;
    char *key;
    char *token;
    struct token_entry *chain;            /* next in the bucket */
    struct token_entry *newer, *older;    /* LRU order */
} token_entry;

typedef struct token_map {
    token_entry **buckets;
    size_t bucket_count;                  /* a power of two */
    size_t count, max;
    token_entry *newest, *oldest;
} token_map;

typedef struct umami_state {
    char *send_url;
    char *batch_url;
    char website[37];
    char *hostname;                       /* NULL: from the page URL */
    int major, minor, patch;
    int batch;
    char *user_agent;
    int visitor_anonymous;
    int data_limits;
    token_map tokens;
} umami_state;

static int version_at_least(const umami_state *s, int major, int minor)
{
    return s->major > major || (s->major == major && s->minor >= minor);
}

static uint64_t fnv1a(const char *data, size_t length, uint64_t basis)
{
    uint64_t h = basis;
    for (size_t i = 0; i < length; i++) {
        h ^= (unsigned char)data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t key_hash(const char *key)
{
    return fnv1a(key, strlen(key), 14695981039346656037ULL);
}

static void token_unlink(token_map *m, token_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        m->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        m->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void token_push_newest(token_map *m, token_entry *e)
{
    e->older = m->newest;
    e->newer = NULL;
    if (m->newest)
        m->newest->newer = e;
    m->newest = e;
    if (m->oldest == NULL)
        m->oldest = e;
}

static token_entry **token_slot(token_map *m, const char *key, uint64_t hash)
{
    token_entry **p = &m->buckets[hash & (m->bucket_count - 1)];
    while (*p && ((*p)->hash != hash || strcmp((*p)->key, key) != 0))
        p = &(*p)->chain;
    return p;
}

static void token_entry_free(token_entry *e)
{
    free(e->key);
    free(e->token);
    free(e);
}

/* The token of a visitor, or NULL; marks it as recently used. */
static const char *token_get(token_map *m, const char *key)
{
    if (m->buckets == NULL)
        return NULL;
    token_entry *e = *token_slot(m, key, key_hash(key));
    if (e == NULL)
        return NULL;
    token_unlink(m, e);
    token_push_newest(m, e);
    return e->token;
}

/* Keep a visitor's token, evicting the least recently used beyond the bound.
 * Out of memory only loses the token (it is an optimisation). */
static void token_put(token_map *m, const char *key, const char *token, size_t token_length)
{
    if (m->buckets == NULL)
        return;
    char *copy = malloc(token_length + 1);
    if (copy == NULL)
        return;
    memcpy(copy, token, token_length);
    copy[token_length] = '\0';
    uint64_t hash = key_hash(key);
    token_entry **slot = token_slot(m, key, hash);
    token_entry *e = *slot;
    if (e != NULL) {
        free(e->token);
        e->token = copy;
        token_unlink(m, e);
        token_push_newest(m, e);
        return;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL || (e->key = strdup(key)) == NULL) {
        free(e);
        free(copy);
        return;
    }
    e->hash = hash;
    e->token = copy;
    *slot = e;
    token_push_newest(m, e);
    if (++m->count > m->max) {
        token_entry *old = m->oldest;
        token_unlink(m, old);
        token_entry **p = token_slot(m, old->key, old->hash);
        *p = old->chain;
        token_entry_free(old);
        m->count--;
    }
}

static int token_map_init(token_map *m, size_t max)
{
    memset(m, 0, sizeof *m);
    m->max = max;
    if (max == 0)
        return 0;
    size_t n = 16;
    while (n < max && n < ((size_t)1 << 20))
        n <<= 1;
    m->buckets = calloc(n, sizeof *m->buckets);
    if (m->buckets == NULL)
        return -1;
    m->bucket_count = n;
    return 0;
}

static void token_map_free(token_map *m)
{
    token_entry *e = m->newest;
    while (e) {
        token_entry *older = e->older;
        token_entry_free(e);
        e = older;
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

/* ---- small checks ---- */

/* ASCII classes: the application's locale must not change what is valid. */
static int ascii_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int ascii_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int ascii_alnum(int c)
{
    return ascii_alpha(c) || ascii_digit(c);
}

static int ascii_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Length as JavaScript counts it (UTF-16 code units) of valid UTF-8. Umami's
 * schema limits count these; the SQL columns count code points, never more. */
static size_t utf16_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xC0) != 0x80)
            n += *p >= 0xF0 ? 2 : 1;
    }
    return n;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int uuid_valid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!is_hex(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Umami 2.x HOSTNAME_REGEX: dot-separated labels of letters, digits and
 * inner hyphens. */
static int hostname_valid(const char *h)
{
    const char *label = h;
    for (const char *p = h;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t n = (size_t)(p - label);
            if (n == 0 || label[0] == '-' || label[n - 1] == '-')
                return 0;
            if (*p == '\0')
                return 1;
            label = p + 1;
        } else if (!ascii_alnum(*p) && *p != '-') {
            return 0;
        }
    }
}

static int has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

/* isbot (Umami's bot filter) treats a bare "name/version", a single word and
 * anything naming a crawler as a bot. Refuse those as the fallback User-Agent:
 * every event without its own would be dropped. A heuristic for the common
 * traps, not isbot itself. */
static const char *bot_like(const char *ua)
{
    static const char *const words[] = {"bot", "crawl", "spider", "http:", "https:", "www.",
                                        "curl", "wget", "python", "headless", "scrap",
                                        "monitor", "fetch", "java/", "okhttp", "libwww"};
    if (strchr(ua, ' ') == NULL)
        return "a single word or bare name/version is a bot to Umami's isbot filter";
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i]);
        for (const char *p = ua; *p; p++)
            if (strncasecmp(p, words[i], n) == 0)
                return "it contains a word Umami's isbot filter reads as a bot";
    }
    return NULL;
}

static int ip_valid(const char *ip)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1;
}

/* A unique-local IPv6 address (RFC 4193, fd00::/8) standing for a visitor:
 * never routable, never geolocated (Umami treats it as local), stable for
 * the id. Only a session key for Umami versions without payload.id. */
static void visitor_address(const char *website, const char *id, char out[40])
{
    size_t wl = strlen(website), il = strlen(id);
    uint64_t a = fnv1a(website, wl, 14695981039346656037ULL);
    a = fnv1a("\n", 1, a);
    a = fnv1a(id, il, a);
    uint64_t b = fnv1a(id, il, 0x6c62272e07bb0142ULL ^ a);
    unsigned groups[8];
    groups[0] = 0xfd00u | (unsigned)(a >> 56);
    groups[1] = (unsigned)(a >> 40) & 0xffffu;
    groups[2] = (unsigned)(a >> 24) & 0xffffu;
    groups[3] = (unsigned)(a >> 8) & 0xffffu;
    groups[4] = (unsigned)(b >> 48) & 0xffffu;
    groups[5] = (unsigned)(b >> 32) & 0xffffu;
    groups[6] = (unsigned)(b >> 16) & 0xffffu;
    groups[7] = (unsigned)b & 0xffffu;
    snprintf(out, 40, "%04x:%04x:%04x:%04x:%04x:%04x:%04x:%04x", groups[0], groups[1], groups[2],
             groups[3], groups[4], groups[5], groups[6], groups[7]);
}

/* A distinct id of at most 50 characters: the id itself, or 32 hex digits
 * of its hash. */
static void distinct_id(const char *id, char out[64])
{
    if (utf16_length(id) <= DISTINCT_ID_MAX_UNITS) {
        snprintf(out, 64, "%s", id);
        return;
    }
    size_t n = strlen(id);
    uint64_t a = fnv1a(id, n, 14695981039346656037ULL);
    uint64_t b = fnv1a(id, n, 0x6c62272e07bb0142ULL ^ a);
    snprintf(out, 64, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

/* RFC 3339 date-time to unix seconds. Returns 0 on success. */
static int parse_rfc3339(const char *t, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(t, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19)
        return -1;
    const char *p = t + n;
    if (*p == '.') {
        p++;
        if (!ascii_digit(*p))
            return -1;
        while (ascii_digit(*p))
            p++;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || strlen(p) != 6)
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    /* Days from civil (Howard Hinnant's algorithm). */
    int64_t yy = y - (mo <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    return 0;
}

/* ---- URLs ---- */

/* Split a page URL as the Umami tracker does: the host (lowercase, no port,
 * no user info) of an absolute URL, and the path with the query (no
 * fragment) that goes into payload.url. A relative URL has no host. */
static int url_split(const char *url, char **host, char **path)
{
    *host = NULL;
    *path = NULL;
    const char *rest = url;
    const char *p = url;
    if (ascii_alpha(*p)) {
        while (ascii_alnum(*p) || *p == '+' || *p == '-' || *p == '.')
            p++;
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            const char *authority = p + 3;
            const char *end = authority + strcspn(authority, "/?#");
            const char *at = NULL;
            for (const char *q = authority; q < end; q++)
                if (*q == '@')
                    at = q;
            const char *h = at ? at + 1 : authority;
            const char *hend;
            if (*h == '[') {
                hend = memchr(h, ']', (size_t)(end - h));
                hend = hend ? hend + 1 : end;
            } else {
                hend = memchr(h, ':', (size_t)(end - h));
                if (hend == NULL)
                    hend = end;
            }
            if (hend > h) {
                *host = malloc((size_t)(hend - h) + 1);
                if (*host == NULL)
                    return -1;
                for (size_t i = 0; i < (size_t)(hend - h); i++)
                    (*host)[i] = h[i] >= 'A' && h[i] <= 'Z' ? (char)(h[i] - 'A' + 'a') : h[i];
                (*host)[hend - h] = '\0';
            }
            rest = end;
        }
    }
    size_t n = strcspn(rest, "#");
    int slash = rest[0] != '/';
    *path = malloc(n + 2);
    if (*path == NULL) {
        free(*host);
        *host = NULL;
        return -1;
    }
    size_t o = 0;
    if (slash)
        (*path)[o++] = '/';
    memcpy(*path + o, rest, n);
    (*path)[o + n] = '\0';
    return 0;
}

/* "/" + the name, percent-encoded outside RFC 3986's unreserved set and "/":
 * the page path of a screen (or page) event without a URL. */
static char *name_path(const char *name)
{
    size_t n = strlen(name);
    char *out = malloc(3 * n + 2);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    out[o++] = '/';
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (ascii_alnum(*p) || strchr("-._~/", *p)) {
            out[o++] = (char)*p;
        } else {
            o += (size_t)sprintf(out + o, "%%%02X", *p);
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- payload.data checks (the SQL columns of event_data / session_data) ---- */

static int data_check(const json_t *value, char *key, size_t key_length, size_t key_cap, char *err,
                      size_t errlen);

static int data_check_object(const json_t *object, char *key, size_t key_length, size_t key_cap,
                             char *err, size_t errlen)
{
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)object, name, value)
    {
        /* Umami flattens nested objects to "a.b" keys. */
        size_t add = strlen(name) + (key_length ? 1 : 0);
        if (key_length + add + 1 > key_cap) {
            snprintf(err, errlen, "umami: a property key is over %d characters", DATA_MAX_UNITS);
            return -1;
        }
        size_t n = key_length;
        if (key_length)
            key[n++] = '.';
        memcpy(key + n, name, strlen(name) + 1);
        if (data_check(value, key, n + strlen(name), key_cap, err, errlen) != 0)
            return -1;
        key[key_length] = '\0';
    }
    return 0;
}

static int data_check(const json_t *value, char *key, size_t key_length, size_t key_cap, char *err,
                      size_t errlen)
{
    /* An empty object stores nothing. */
    if (json_is_object(value))
        return data_check_object(value, key, key_length, key_cap, err, errlen);
    size_t key_units = utf16_length(key);
    if (key_units > DATA_MAX_UNITS) {
        snprintf(err, errlen, "umami: a property key is %zu characters, over Umami's limit of %d",
                 key_units, DATA_MAX_UNITS);
        return -1;
    }
    if (json_is_string(value)) {
        size_t units = utf16_length(json_string_value(value));
        if (units > DATA_MAX_UNITS) {
            snprintf(err, errlen,
                     "umami: property \"%.80s\" is a string of %zu characters, over Umami's "
                     "limit of %d",
                     key, units, DATA_MAX_UNITS);
            return -1;
        }
    } else if (json_is_number(value)) {
        double number = json_number_value(value);
        if (number >= DATA_NUMBER_LIMIT || number <= -DATA_NUMBER_LIMIT) {
            snprintf(err, errlen,
                     "umami: property \"%.80s\" is a number outside Umami's DECIMAL(19,4) "
                     "(|x| < 1e15)",
                     key);
            return -1;
        }
    } else if (json_is_array(value)) {
        /* Stored as its JSON text. */
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t units = text ? utf16_length(text) : 0;
        free(text);
        if (units > DATA_MAX_UNITS) {
            snprintf(err, errlen,
                     "umami: property \"%.80s\" is an array of %zu characters as JSON, over "
                     "Umami's limit of %d",
                     key, units, DATA_MAX_UNITS);
            return -1;
        }
    }
    return 0;
}

static int data_valid(const json_t *data, char *err, size_t errlen)
{
    /* Keys longer than the limit fail anyway: 4 bytes a unit covers them. */
    char key[4 * DATA_MAX_UNITS + 8];
    key[0] = '\0';
    return data_check_object(data, key, 0, sizeof key, err, errlen);
}

/* ---- mapping one event ---- */

/* One event as Umami takes it. */
typedef struct mapped {
    json_t *body;              /* {"type": ..., "payload": {...}} */
    const char *user_agent;    /* the User-Agent for it (borrowed from the event or the state) */
    char ip[64];               /* the IP that stands for the visitor, or "" */
    char *cache_key;           /* the visitor's key in the token map */
    json_t *event;             /* the parsed event (owns the borrowed strings) */
} mapped;

static void mapped_free(mapped *m)
{
    json_decref(m->body);
    json_decref(m->event);
    free(m->cache_key);
    memset(m, 0, sizeof *m);
}

static const char *get_string(const json_t *object, const char *key)
{
    const char *v = json_string_value(json_object_get(object, key));
    return v && *v ? v : NULL;
}

static int set_string(json_t *object, const char *key, const char *value)
{
    return value ? json_object_set_new(object, key, json_string(value)) : 0;
}

/* The properties of a page event that describe the page, not the event. */
static int page_field(const char *key)
{
    static const char *const fields[] = {"url", "path", "search", "title", "referrer", "name",
                                         "keywords"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strcmp(key, fields[i]) == 0)
            return 1;
    return 0;
}

static int too_long(const char *what, const char *value, size_t max, char *err, size_t errlen)
{
    size_t units = value ? utf16_length(value) : 0;
    if (units <= max)
        return 0;
    snprintf(err, errlen, "umami: %s is %zu characters, over Umami's limit of %zu", what, units,
             max);
    return 1;
}

/* The page an event is about, as Umami's payload wants it. */
typedef struct page_info {
    char *host;                /* the page URL's host, or NULL */
    char *path;                /* payload.url: path and query */
    const char *title;
    const char *referrer;
} page_info;

/* For page events their properties first, then context.page; a screen (or
 * a page without a URL) gets "/<name>", anything else "/". */
static int page_of(const json_t *event, int is_page, int is_screen, page_info *out)
{
    const json_t *page = json_object_get(json_object_get(event, "context"), "page");
    const json_t *properties = json_object_get(event, "properties");
    const char *name = get_string(event, "name");
    const char *url = is_page ? get_string(properties, "url") : NULL;
    out->title = is_page ? get_string(properties, "title") : NULL;
    out->referrer = is_page ? get_string(properties, "referrer") : NULL;
    if (url == NULL)
        url = get_string(page, "url");
    if (url == NULL)
        url = get_string(page, "path");
    if (out->title == NULL)
        out->title = get_string(page, "title");
    if (out->referrer == NULL)
        out->referrer = get_string(page, "referrer");
    if (out->title == NULL && (is_page || is_screen))
        out->title = name;
    if (url)
        return url_split(url, &out->host, &out->path);
    out->path = (is_page || is_screen) && name ? name_path(name) : strdup("/");
    return out->path ? 0 : -1;
}

/* payload.data of an event, or NULL (none). Returns -1 when out of memory. */
static int data_of(const json_t *event, const char *type, json_t **out)
{
    const json_t *properties = json_object_get(event, "properties");
    const json_t *traits = json_object_get(event, "traits");
    const char *user_id = get_string(event, "userId");
    json_t *data = NULL;
    if (!json_is_object(properties))
        properties = NULL;
    if (strcmp(type, "track") == 0 || strcmp(type, "screen") == 0 || strcmp(type, "page") == 0) {
        /* The properties; of a page event those that do not describe the page. */
        int is_page = strcmp(type, "page") == 0;
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)properties, key, value)
        {
            if (is_page && page_field(key))
                continue;
            if ((data == NULL && (data = json_object()) == NULL) ||
                json_object_set(data, key, value) != 0)
                goto fail;
        }
        *out = data;
        return 0;
    }
    /* identify: the traits and the user id. group and alias have no Umami
     * call of their own: they become session data too. */
    if ((data = json_object()) == NULL)
        return -1;
    int rc = 0;
    if (strcmp(type, "identify") == 0) {
        if (json_is_object(traits))
            rc |= json_object_update(data, (json_t *)traits);
        if (user_id && json_object_get(data, "userId") == NULL)
            rc |= set_string(data, "userId", user_id);
    } else if (strcmp(type, "group") == 0) {
        rc |= set_string(data, "groupId", get_string(event, "groupId"));
        if (json_is_object(traits) && json_object_size(traits) > 0)
            rc |= json_object_set(data, "group", (json_t *)traits);
    } else {
        rc |= set_string(data, "userId", user_id);
        rc |= set_string(data, "previousId", get_string(event, "previousId"));
    }
    if (rc != 0)
        goto fail;
    *out = data;
    return 0;
fail:
    json_decref(data);
    return -1;
}

/* Context Umami keeps per session; over its limits it is left out. */
static void session_fields(const json_t *context, json_t *payload)
{
    const char *language = get_string(context, "locale");
    if (language && utf16_length(language) <= LANGUAGE_MAX_UNITS)
        set_string(payload, "language", language);
    const json_t *screen = json_object_get(context, "screen");
    json_t *width = json_object_get(screen, "width"), *height = json_object_get(screen, "height");
    if (json_is_integer(width) && json_is_integer(height) && json_integer_value(width) > 0 &&
        json_integer_value(height) > 0) {
        char text[48];
        int n = snprintf(text, sizeof text, "%lldx%lld", (long long)json_integer_value(width),
                         (long long)json_integer_value(height));
        if (n > 0 && n <= SCREEN_MAX_UNITS)
            set_string(payload, "screen", text);
    }
}

/* The visitor: its User-Agent, the IP that stands for it and, from 2.18, a
 * distinct id (written to id, "" when none); the payload fields of 2.17+. */
static int visitor_of(const umami_state *s, const json_t *event, json_t *payload, mapped *m,
                      char id[64], char *err, size_t errlen)
{
    const json_t *context = json_object_get(event, "context");
    const char *ua = get_string(context, "userAgent");
    if (ua && has_control(ua)) {
        snprintf(err, errlen, "umami: context.userAgent contains control characters");
        return -1;
    }
    m->user_agent = ua ? ua : s->user_agent;
    const char *ip = get_string(context, "ip");
    /* herald redacts IPs by default ("[ip]", "[ip:…]"): no address then,
     * as if none was given; only a caller's malformed address is refused. */
    if (ip && strncmp(ip, "[ip", 3) == 0)
        ip = NULL;
    if (ip) {
        if (strlen(ip) >= sizeof m->ip || !ip_valid(ip)) {
            snprintf(err, errlen, "umami: context.ip is not an IPv4 or IPv6 address");
            return -1;
        }
        snprintf(m->ip, sizeof m->ip, "%s", ip);
    }
    const char *visitor = get_string(event, "anonymousId");
    if (visitor == NULL)
        visitor = get_string(event, "userId");
    id[0] = '\0';
    if (s->visitor_anonymous && visitor) {
        if (version_at_least(s, 2, 18))
            distinct_id(visitor, id);
        else if (m->ip[0] == '\0')
            visitor_address(s->website, visitor, m->ip);
    }
    int rc = 0;
    if (id[0])
        rc |= set_string(payload, "id", id);
    if (version_at_least(s, 2, 17)) {
        if (m->ip[0])
            rc |= set_string(payload, "ip", m->ip);
        rc |= set_string(payload, "userAgent", m->user_agent);
        int64_t seconds;
        const char *timestamp = get_string(event, "timestamp");
        if (timestamp && parse_rfc3339(timestamp, &seconds) == 0)
            rc |= json_object_set_new(payload, "timestamp", json_integer((json_int_t)seconds));
    }
    if (rc != 0)
        snprintf(err, errlen, "umami: out of memory");
    return rc ? -1 : 0;
}

/* Map one stored event to Umami's shape, checking what the server would
 * refuse for good. Returns 0, or -1 with the reason in err. */
static int map_event(const umami_state *s, const char *text, size_t length, mapped *m, char *err,
                     size_t errlen)
{
    memset(m, 0, sizeof *m);
    json_error_t jerr;
    page_info page = {0};
    json_t *data = NULL;
    int rc = -1;
    m->event = json_loadb(text, length, 0, &jerr);
    if (!json_is_object(m->event)) {
        snprintf(err, errlen, "umami: stored event is not a JSON object");
        goto done;
    }
    const json_t *event = m->event;
    const char *type = get_string(event, "type");
    static const char *const types[] = {"track", "page", "screen", "identify", "group", "alias"};
    size_t t = 0;
    while (type && t < sizeof types / sizeof *types && strcmp(type, types[t]) != 0)
        t++;
    if (type == NULL || t == sizeof types / sizeof *types) {
        snprintf(err, errlen, "umami: event type \"%.32s\" has no Umami mapping",
                 type ? type : "");
        goto done;
    }
    int is_event = t <= 2; /* track, page, screen: Umami "event"; the rest "identify" */
    const char *name = t == 0 ? get_string(event, "event") : NULL;
    if (t == 0 && name == NULL) {
        snprintf(err, errlen, "umami: track event without a name");
        goto done;
    }
    if (page_of(event, t == 1, t == 2, &page) != 0 || data_of(event, type, &data) != 0) {
        snprintf(err, errlen, "umami: out of memory");
        goto done;
    }
    const char *hostname = s->hostname ? s->hostname : page.host;

    /* What the server refuses for good. */
    if (name && too_long("the event name", name, NAME_MAX_UNITS, err, errlen))
        goto done;
    if (hostname && too_long("the hostname", hostname, HOSTNAME_MAX_UNITS, err, errlen))
        goto done;
    if (!version_at_least(s, 2, 16)) {
        if (hostname && !hostname_valid(hostname)) {
            snprintf(err, errlen, "umami: the page URL's host is not a valid Umami hostname "
                                  "(set the destination's \"hostname\")");
            goto done;
        }
        if (too_long("the page URL", page.path, URL_MAX_UNITS, err, errlen) ||
            (is_event && (too_long("the referrer", page.referrer, URL_MAX_UNITS, err, errlen) ||
                          too_long("the page title", page.title, URL_MAX_UNITS, err, errlen))))
            goto done;
    }
    if (data && s->data_limits && data_valid(data, err, errlen) != 0)
        goto done;

    json_t *payload = json_object();
    m->body = json_object();
    if (payload == NULL || m->body == NULL ||
        json_object_set_new(m->body, "type", json_string(is_event ? "event" : "identify")) ||
        json_object_set_new(m->body, "payload", payload)) {
        snprintf(err, errlen, "umami: out of memory");
        goto done;
    }
    int failed = json_object_set_new(payload, "website", json_string(s->website));
    failed |= set_string(payload, "hostname", hostname);
    session_fields(json_object_get(event, "context"), payload);
    failed |= set_string(payload, "url", page.path);
    if (is_event) {
        failed |= set_string(payload, "referrer", page.referrer);
        failed |= set_string(payload, "title", page.title);
        failed |= set_string(payload, "name", name);
    }
    if (data) {
        failed |= json_object_set_new(payload, "data", data);
        data = NULL;
    }
    if (failed) {
        snprintf(err, errlen, "umami: out of memory");
        goto done;
    }
    char id[64];
    if (visitor_of(s, event, payload, m, id, err, errlen) != 0)
        goto done;

    /* A token belongs to what makes Umami's session: (website, hostname, IP,
     * User-Agent) before 2.17, (website, IP, User-Agent) from 2.17, the
     * distinct id alone when one is sent (2.18+). */
    const char *key_host = version_at_least(s, 2, 17) || hostname == NULL ? "" : hostname;
    const char *key_ip = id[0] ? "" : m->ip;
    const char *key_ua = id[0] ? "" : m->user_agent;
    size_t key_length = strlen(key_host) + strlen(key_ip) + strlen(key_ua) + strlen(id) + 4;
    m->cache_key = malloc(key_length);
    if (m->cache_key == NULL) {
        snprintf(err, errlen, "umami: out of memory");
        goto done;
    }
    snprintf(m->cache_key, key_length, "%s\n%s\n%s\n%s", key_host, key_ip, key_ua, id);
    rc = 0;
done:
    json_decref(data);
    free(page.host);
    free(page.path);
    if (rc != 0)
        mapped_free(m);
    return rc;
}

/* ---- the backend ---- */

static void umami_destroy(void *state)
{
    umami_state *s = state;
    if (s == NULL)
        return;
    free(s->send_url);
    free(s->batch_url);
    free(s->hostname);
    free(s->user_agent);
    token_map_free(&s->tokens);
    free(s);
}

static int parse_version(const char *text, int *major, int *minor, int *patch)
{
    int n = 0;
    *patch = 0;
    if (sscanf(text, "%3d.%3d%n", major, minor, &n) != 2)
        return -1;
    if (text[n] == '.') {
        int m = 0;
        if (sscanf(text + n + 1, "%3d%n", patch, &m) != 1)
            return -1;
        n += 1 + m;
    }
    return text[n] == '\0' && *major >= 0 && *minor >= 0 && *patch >= 0 ? 0 : -1;
}

static char *url_join(const char *base, const char *path)
{
    size_t n = strlen(base) + strlen(path) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%s", base, path);
    return out;
}

static int umami_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                        size_t errlen)
{
    (void)core_abi;
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "umami: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    umami_state *s = calloc(1, sizeof *s);
    char *base = NULL;
    const char *version = "2.10";
    json_int_t cache_tokens = DEFAULT_CACHE_TOKENS;
    int failed = s == NULL;
    if (s) {
        s->visitor_anonymous = 1;
        s->data_limits = 1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        if (strcmp(key, "url") == 0 && json_is_string(value)) {
            const char *url = json_string_value(value);
            if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
                snprintf(err, errlen, "umami: url must start with http:// or https://");
                failed = 1;
            } else if (strpbrk(url, " \t\r\n?#")) {
                snprintf(err, errlen, "umami: url must be a base URL without white space, "
                                      "query or fragment");
                failed = 1;
            } else if ((base = strdup(url)) == NULL) {
                failed = 1;
            } else {
                /* The base URL; a URL of the endpoint itself means its base. */
                size_t n = strlen(base);
                if (n >= 9 && strcmp(base + n - 9, "/api/send") == 0)
                    base[n -= 9] = '\0';
                else if (n >= 10 && strcmp(base + n - 10, "/api/batch") == 0)
                    base[n -= 10] = '\0';
                while (n > 0 && base[n - 1] == '/')
                    base[--n] = '\0';
            }
        } else if (strcmp(key, "website") == 0 && json_is_string(value)) {
            if (!uuid_valid(json_string_value(value))) {
                snprintf(err, errlen, "umami: website must be the website's UUID "
                                      "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
                failed = 1;
            } else {
                snprintf(s->website, sizeof s->website, "%s", json_string_value(value));
            }
        } else if (strcmp(key, "hostname") == 0 && json_is_string(value)) {
            const char *h = json_string_value(value);
            if (utf16_length(h) > HOSTNAME_MAX_UNITS || !hostname_valid(h)) {
                snprintf(err, errlen, "umami: hostname must be a host name of letters, digits, "
                                      "hyphens and dots, at most 100 characters, without port");
                failed = 1;
            } else if ((s->hostname = strdup(h)) == NULL) {
                failed = 1;
            }
        } else if (strcmp(key, "version") == 0 && json_is_string(value)) {
            version = json_string_value(value);
        } else if (strcmp(key, "batch") == 0 && json_is_boolean(value)) {
            s->batch = json_is_true(value);
        } else if (strcmp(key, "user_agent") == 0 && json_is_string(value)) {
            const char *ua = json_string_value(value);
            const char *why = bot_like(ua);
            if (*ua == '\0' || has_control(ua)) {
                snprintf(err, errlen, "umami: user_agent must be non-empty, without control "
                                      "characters");
                failed = 1;
            } else if (why) {
                snprintf(err, errlen, "umami: user_agent would be filtered as a bot: %s", why);
                failed = 1;
            } else if ((s->user_agent = strdup(ua)) == NULL) {
                failed = 1;
            }
        } else if (strcmp(key, "visitor") == 0 && json_is_string(value)) {
            const char *v = json_string_value(value);
            if (strcmp(v, "anonymous_id") == 0) {
                s->visitor_anonymous = 1;
            } else if (strcmp(v, "ip_user_agent") == 0) {
                s->visitor_anonymous = 0;
            } else {
                snprintf(err, errlen,
                         "umami: visitor must be \"anonymous_id\" or \"ip_user_agent\"");
                failed = 1;
            }
        } else if (strcmp(key, "cache_tokens") == 0 && json_is_integer(value)) {
            cache_tokens = json_integer_value(value);
            if (cache_tokens < 0 || cache_tokens > MAX_CACHE_TOKENS) {
                snprintf(err, errlen, "umami: cache_tokens must be from 0 to %d",
                         MAX_CACHE_TOKENS);
                failed = 1;
            }
        } else if (strcmp(key, "data_limits") == 0 && json_is_boolean(value)) {
            s->data_limits = json_is_true(value);
        } else {
            snprintf(err, errlen, "umami: unknown or mistyped setting \"%.64s\"", key);
            failed = 1;
        }
    }
    if (!failed && parse_version(version, &s->major, &s->minor, &s->patch) != 0) {
        snprintf(err, errlen, "umami: version must look like \"2.10\" or \"3.0.2\"");
        failed = 1;
    }
    if (!failed && !version_at_least(s, 2, 10)) {
        snprintf(err, errlen, "umami: version %d.%d is not supported (2.10 or later)", s->major,
                 s->minor);
        failed = 1;
    }
    if (!failed && s->batch && !version_at_least(s, 2, 17)) {
        snprintf(err, errlen, "umami: batch needs Umami 2.17 or later (/api/batch)");
        failed = 1;
    }
    if (!failed && s->batch && s->major == 3 && s->minor == 0 && s->patch < 2) {
        snprintf(err, errlen, "umami: batch is broken in Umami 3.0.0 and 3.0.1; use 3.0.2 or "
                              "later, or batch: false");
        failed = 1;
    }
    if (!failed && base == NULL) {
        snprintf(err, errlen, "umami: \"url\" is required");
        failed = 1;
    }
    if (!failed && s->website[0] == '\0') {
        snprintf(err, errlen, "umami: \"website\" is required");
        failed = 1;
    }
    if (!failed && s->user_agent == NULL && (s->user_agent = strdup(DEFAULT_USER_AGENT)) == NULL)
        failed = 1;
    if (!failed && ((s->send_url = url_join(base, "/api/send")) == NULL ||
                    (s->batch_url = url_join(base, "/api/batch")) == NULL ||
                    token_map_init(&s->tokens, s->batch ? 0 : (size_t)cache_tokens) != 0))
        failed = 1;
    free(base);
    json_decref(config);
    if (failed) {
        if (err[0] == '\0')
            snprintf(err, errlen, "umami: out of memory");
        umami_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void umami_limits(const void *state, herald_backend_limits *out)
{
    const umami_state *s = state;
    out->max_events_per_request = s->batch ? 0 : 1;
    out->max_request_bytes = 0;
    out->max_event_bytes = 0;
    out->accepts_gzip = 0;
    out->max_concurrency = 0;
}

/* Header lines, herald_alloc'ed. */
static char *headers_build(const char *user_agent, const char *forwarded_for, const char *token)
{
    size_t n = 64 + strlen(user_agent) + (forwarded_for ? strlen(forwarded_for) + 20 : 0) +
               (token ? strlen(token) + 20 : 0);
    char *h = herald_alloc(n);
    if (h == NULL)
        return NULL;
    int len = snprintf(h, n, "Content-Type: application/json\nUser-Agent: %s", user_agent);
    if (forwarded_for)
        len += snprintf(h + len, n - (size_t)len, "\nX-Forwarded-For: %s", forwarded_for);
    if (token)
        snprintf(h + len, n - (size_t)len, "\nx-umami-cache: %s", token);
    return h;
}

static char *body_dump(const json_t *body, size_t *length)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        return NULL;
    *length = strlen(text);
    char *copy = herald_alloc(*length + 1);
    if (copy)
        memcpy(copy, text, *length + 1);
    free(text);
    return copy;
}

static int encode_send(umami_state *s, const herald_backend_batch *batch,
                       herald_backend_request *out, char *err, size_t errlen)
{
    mapped m;
    if (map_event(s, batch->events[0], batch->event_lengths[0], &m, err, errlen) != 0)
        return -1;
    int rc = -1;
    size_t length = 0;
    char *body = body_dump(m.body, &length);
    if (body == NULL) {
        snprintf(err, errlen, "umami: out of memory");
        goto done;
    }
    if (!version_at_least(s, 2, 16) && length > BODY_MAX_BYTES) {
        snprintf(err, errlen, "umami: request of %zu bytes is over Umami's 1 MiB body limit",
                 length);
        herald_free(body);
        goto done;
    }
    /* Before 2.17 the IP can only travel in a header. */
    const char *forwarded_for = !version_at_least(s, 2, 17) && m.ip[0] ? m.ip : NULL;
    const char *token = token_get(&s->tokens, m.cache_key);
    char *headers = headers_build(m.user_agent, forwarded_for, token);
    if (headers == NULL) {
        snprintf(err, errlen, "umami: out of memory");
        herald_free(body);
        goto done;
    }
    out->url = s->send_url;
    out->body = body;
    out->body_length = length;
    out->headers = headers;
    rc = 0;
done:
    mapped_free(&m);
    return rc;
}

/* /api/batch: the events that map go in one array; those that do not are
 * left out here and rejected, each, in classify (which maps them again). */
static int encode_batch(umami_state *s, const herald_backend_batch *batch,
                        herald_backend_request *out, char *err, size_t errlen)
{
    json_t *array = json_array();
    char first_error[256] = "";
    if (array == NULL) {
        snprintf(err, errlen, "umami: out of memory");
        return -1;
    }
    for (size_t i = 0; i < batch->count; i++) {
        mapped m;
        char why[256];
        if (map_event(s, batch->events[i], batch->event_lengths[i], &m, why, sizeof why) != 0) {
            if (first_error[0] == '\0')
                snprintf(first_error, sizeof first_error, "%s", why);
            continue;
        }
        json_array_append(array, m.body);
        mapped_free(&m);
    }
    if (json_array_size(array) == 0) {
        json_decref(array);
        snprintf(err, errlen, "%s", first_error);
        return -1;
    }
    size_t length = 0;
    char *body = body_dump(array, &length);
    json_decref(array);
    char *headers = body ? headers_build(s->user_agent, NULL, NULL) : NULL;
    if (body == NULL || headers == NULL) {
        herald_free(body);
        snprintf(err, errlen, "umami: out of memory");
        return -1;
    }
    out->url = s->batch_url;
    out->body = body;
    out->body_length = length;
    out->headers = headers;
    return 0;
}

static int umami_encode(void *state, const herald_backend_batch *batch,
                        herald_backend_request *out, char *err, size_t errlen)
{
    umami_state *s = state;
    if (batch->count == 0) {
        snprintf(err, errlen, "umami: empty batch");
        return -1;
    }
    return s->batch ? encode_batch(s, batch, out, err, errlen)
                    : encode_send(s, batch, out, err, errlen);
}

/* ---- responses ---- */

static int contains(const char *body, size_t length, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= length; i++)
        if (memcmp(body + i, needle, n) == 0)
            return 1;
    return 0;
}

/* A cache token: a JWT, base64url segments joined by dots. */
static int token_valid(const char *t, size_t n)
{
    if (n < 16 || n > TOKEN_MAX_BYTES)
        return 0;
    int dots = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '.')
            dots++;
        else if (!ascii_alnum(t[i]) && t[i] != '-' && t[i] != '_')
            return 0;
    }
    return dots == 2;
}

/* Answers that mean the same in every version: website not found (a
 * configuration error: 403 in 2.10, 404 up to 2.15 by the source, 400
 * later) and Umami's own 403 for an IP it is told to ignore. Returns 0 when
 * the answer is not one of them, 1 when it decided, 2 when the server
 * dropped the events. */
static int classify_common(const umami_state *s, const herald_backend_response *r,
                           herald_verdict *out)
{
    if ((r->status == 400 || r->status == 403 || r->status == 404) &&
        contains(r->body, r->body_length, "Website not found")) {
        out->kind = HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "HTTP %ld: Umami does not know website %s: check the destination's "
                 "\"website\"",
                 r->status, s->website);
        return 1;
    }
    if (r->status == 403 && (strncmp(r->body, "403 Forbidden", 13) == 0 ||
                             contains(r->body, r->body_length, "\"forbidden\""))) {
        out->kind = HERALD_VERDICT_OK;
        snprintf(out->reason, sizeof out->reason,
                 "HTTP 403: Umami ignores this visitor's IP (its IGNORE_IP setting)");
        return 2;
    }
    if (r->status == 404) {
        herald_verdict_from_status(r, out);
        size_t n = strlen(out->reason);
        snprintf(out->reason + n, sizeof out->reason - n,
                 " (is \"url\" the Umami server's base URL?)");
        return 1;
    }
    return 0;
}

static void classify_send(umami_state *s, const herald_backend_response *r,
                          const herald_backend_batch *batch, herald_verdict *out)
{
    int common = classify_common(s, r, out);
    if (common) {
        if (common == 2)
            out->dropped = (uint32_t)batch->count;
        return;
    }
    herald_verdict_from_status(r, out);
    if (out->kind != HERALD_VERDICT_OK || r->status != 200)
        return;
    /* 200: a token (2.x: the body; 2.16+: {"cache": ...}), or a bot
     * (2.x: {}; 2.16+: {"beep":"boop"}): stored nothing. */
    const char *token = NULL;
    size_t token_length = 0;
    json_t *doc = NULL;
    size_t i = 0;
    while (i < r->body_length && ascii_space(r->body[i]))
        i++;
    if (i < r->body_length && r->body[i] == '{') {
        json_error_t jerr;
        doc = json_loadb(r->body, r->body_length, 0, &jerr);
        if (json_is_object(doc) &&
            (json_object_size(doc) == 0 || json_object_get(doc, "beep") != NULL)) {
            out->dropped = (uint32_t)batch->count;
            snprintf(out->reason, sizeof out->reason,
                     "HTTP 200: Umami filtered the event as a bot (its isbot check matched the "
                     "User-Agent)");
        } else if (json_is_string(json_object_get(doc, "cache"))) {
            token = json_string_value(json_object_get(doc, "cache"));
            token_length = json_string_length(json_object_get(doc, "cache"));
        }
    } else {
        token = r->body + i;
        token_length = r->body_length - i;
        while (token_length > 0 && ascii_space(token[token_length - 1]))
            token_length--;
    }
    if (token && s->tokens.max > 0 && token_valid(token, token_length)) {
        mapped m;
        char why[256];
        if (map_event(s, batch->events[0], batch->event_lengths[0], &m, why, sizeof why) == 0) {
            token_put(&s->tokens, m.cache_key, token, token_length);
            mapped_free(&m);
        }
    }
    json_decref(doc);
}

/* The status of one failed element of /api/batch:
 * {"index": i, "response": {"error": {"status": 400, "code": ..., ...}}}. */
static long detail_status(const json_t *detail)
{
    const json_t *response = json_object_get(detail, "response");
    const json_t *error = json_object_get(response, "error");
    const json_t *status = json_object_get(error, "status");
    if (!json_is_integer(status))
        status = json_object_get(response, "status");
    if (json_is_integer(status))
        return (long)json_integer_value(status);
    const char *code = json_string_value(json_object_get(error, "code"));
    if (code && strcmp(code, "bad-request") == 0)
        return 400;
    if (code && strcmp(code, "forbidden") == 0)
        return 403;
    return 500;
}

static void classify_batch(umami_state *s, const herald_backend_response *r,
                           const herald_backend_batch *batch, herald_verdict *out)
{
    int common = classify_common(s, r, out);
    if (common) {
        if (common == 2)
            out->dropped = (uint32_t)batch->count;
        return;
    }
    herald_verdict_from_status(r, out);
    if (out->kind != HERALD_VERDICT_OK)
        return;
    /* Which events went into the body, in order: those that map. */
    size_t *sent = calloc(batch->count ? batch->count : 1, sizeof *sent);
    int *kinds = calloc(batch->count ? batch->count : 1, sizeof *kinds);
    if (sent == NULL || kinds == NULL) {
        free(sent);
        free(kinds);
        return;
    }
    char left_out[256] = "";
    size_t n_sent = 0, n_left_out = 0;
    for (size_t i = 0; i < batch->count; i++) {
        mapped m;
        char why[256];
        kinds[i] = HERALD_VERDICT_OK;
        if (map_event(s, batch->events[i], batch->event_lengths[i], &m, why, sizeof why) != 0) {
            kinds[i] = HERALD_VERDICT_REJECT;
            if (n_left_out++ == 0)
                snprintf(left_out, sizeof left_out, "%s", why);
            continue;
        }
        mapped_free(&m);
        sent[n_sent++] = i;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_length, 0, &jerr);
    const json_t *details = json_object_get(doc, "details");
    size_t rejected = 0, retried = 0, ignored = 0;
    long first_status = 0;
    size_t index;
    const json_t *detail;
    /* An element named twice counts once: dropped never exceeds the batch. */
    unsigned char *seen = calloc(n_sent ? n_sent : 1, 1);
    json_array_foreach(details, index, detail)
    {
        const json_t *at = json_object_get(detail, "index");
        if (seen == NULL || !json_is_integer(at) || json_integer_value(at) < 0 ||
            (size_t)json_integer_value(at) >= n_sent || seen[json_integer_value(at)])
            continue;
        seen[json_integer_value(at)] = 1;
        size_t i = sent[json_integer_value(at)];
        long status = detail_status(detail);
        if (first_status == 0)
            first_status = status;
        const char *message = json_string_value(
            json_object_get(json_object_get(json_object_get(detail, "response"), "error"),
                            "message"));
        if (message && strstr(message, "Website not found")) {
            kinds[i] = HERALD_VERDICT_REJECT;
            rejected++;
        } else if (status == 403) {
            /* Umami's 403 for an element: its IGNORE_IP; accepted, dropped. */
            kinds[i] = HERALD_VERDICT_OK;
            ignored++;
        } else if (status == 408 || status == 429 || status >= 500) {
            kinds[i] = HERALD_VERDICT_RETRY;
            retried++;
        } else {
            kinds[i] = HERALD_VERDICT_REJECT;
            rejected++;
        }
    }
    free(seen);
    json_decref(doc);
    out->dropped = (uint32_t)ignored;
    if (batch->count == 1 || out->event_kinds == NULL) {
        out->kind = (herald_verdict_kind)kinds[0];
    } else {
        for (size_t i = 0; i < batch->count; i++)
            out->event_kinds[i] = kinds[i];
    }
    if (n_left_out && rejected == 0 && retried == 0)
        snprintf(out->reason, sizeof out->reason, "%s", left_out);
    else if (n_left_out || rejected || retried)
        snprintf(out->reason, sizeof out->reason,
                 "HTTP 200: /api/batch refused %zu of %zu events (first HTTP %ld)%s%.150s",
                 rejected + retried, batch->count, first_status, n_left_out ? "; " : "",
                 n_left_out ? left_out : "");
    free(sent);
    free(kinds);
}

static void umami_classify(void *state, const herald_backend_response *response,
                           const herald_backend_batch *batch, herald_verdict *out)
{
    umami_state *s = state;
    if (s->batch)
        classify_batch(s, response, batch, out);
    else
        classify_send(s, response, batch, out);
}

static const herald_backend_v1 umami_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "umami",
    .create = umami_create,
    .destroy = umami_destroy,
    .limits = umami_limits,
    .encode = umami_encode,
    .classify = umami_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-umami.so): the same source, the
 * public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &umami_backend;
}
#else
const herald_backend_v1 *herald_backend_umami(void);
const herald_backend_v1 *herald_backend_umami(void)
{
    return &umami_backend;
}
#endif
