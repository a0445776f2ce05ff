/*
 * The Plausible backend: one event per POST to <url>/api/event, the Events
 * API that Plausible's own script uses (contract: BACKENDS.md section 1).
 * The core runs these requests concurrently (max_concurrency) over its
 * keep-alive connections; this file only maps an event and reads the answer.
 *
 * Config (JSON object):
 *   url          http:// or https:// base URL of the Plausible server (required);
 *                requests go to <url>/api/event (a url already ending in
 *                /api/event is used as it is)
 *   domain       the site as registered in Plausible (required); a
 *                comma-separated list sends each event to several sites
 *   default_url  page URL of events that carry none (default "app://<domain>/")
 *   user_agent   User-Agent for events without context.userAgent
 *                (default "Mozilla/5.0 (X11; Linux x86_64) herald/<version>")
 *   props        "properties" (default): map the event's properties to
 *                Plausible props; "none": send no props
 *   revenue      true (default): a track event whose properties hold a
 *                numeric revenue and a 3-letter currency carries
 *                {"revenue": {"amount", "currency"}}
 *   cut_prop     prop that reports what did not fit Plausible's limits
 *                (default "_herald_cut"; "" turns the report off)
 *
 * The server keeps at most 30 props, refuses the whole event for a key over
 * 300 bytes or a value over 2000 bytes, and silently discards list and map
 * values. This backend applies those rules itself, so that no event fails for
 * its props, and writes what it left out into the cut_prop prop (taking one
 * of the 30 places) instead of losing it silently.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

#define MAX_NAME_CHARS 120     /* n: validate_length, in characters */
#define MAX_URL_BYTES 2000     /* u: byte_size */
#define MAX_REFERRER_CHARS 2000 /* r: the server truncates to this */
#define MAX_PROPS 30
#define MAX_PROP_KEY_BYTES 300
#define MAX_PROP_VALUE_BYTES 2000
#define MAX_USER_AGENT_BYTES 1024
#define REPORT_KEY_BYTES 64    /* a key quoted in the cut report is shortened to this */

#define DEFAULT_USER_AGENT "Mozilla/5.0 (X11; Linux x86_64) herald/" HERALD_VERSION_STRING
#define DEFAULT_CUT_PROP "_herald_cut"

typedef struct plausible_state {
    char *endpoint;    /* <url>/api/event */
    char *domain;      /* as configured: sent as "domain" */
    char *base_url;    /* default_url, or app://<first domain>/ */
    char *user_agent;  /* fallback User-Agent */
    char *cut_prop;    /* "" when the report is off */
    int send_props;
    int revenue;
} plausible_state;

/* ---- small text helpers ---- */

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

/* Unicode code points of a UTF-8 string (continuation bytes not counted). */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/* Length of the longest prefix of s (len bytes) that has at most max_bytes
 * bytes and max_chars code points and ends on a code point boundary. */
static size_t utf8_prefix(const char *s, size_t len, size_t max_bytes, size_t max_chars)
{
    size_t chars = 0, i = 0;
    while (i < len) {
        size_t next = i + 1;
        while (next < len && ((unsigned char)s[next] & 0xc0) == 0x80)
            next++;
        if (next > max_bytes || chars + 1 > max_chars)
            break;
        chars++;
        i = next;
    }
    return i;
}

/* A User-Agent that Plausible's bot detection (UAInspector) or the usual
 * bot lists would drop: a bare "name/version" or single word, or one naming
 * itself a bot. Used to refuse such a configured fallback at create. */
static int looks_like_bot(const char *ua)
{
    static const char *const words[] = {"bot", "crawler", "spider", "headless", "curl/"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i]);
        for (const char *p = ua; *p; p++)
            if (strncasecmp(p, words[i], n) == 0)
                return 1;
    }
    return strchr(ua, ' ') == NULL;
}

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

/* ---- create / destroy ---- */

static void plausible_destroy(void *state)
{
    plausible_state *s = state;
    if (s == NULL)
        return;
    free(s->endpoint);
    free(s->domain);
    free(s->base_url);
    free(s->user_agent);
    free(s->cut_prop);
    free(s);
}

static int http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

static char *make_endpoint(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    static const char path[] = "/api/event";
    size_t plen = sizeof path - 1;
    int has_path = n >= plen && strncmp(url + n - plen, path, plen) == 0;
    char *out = malloc(n + plen + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, url, n);
    if (has_path)
        out[n] = '\0';
    else
        memcpy(out + n, path, plen + 1);
    return out;
}

static int set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
    return *slot == NULL ? -1 : 0;
}

static int plausible_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                            size_t errlen)
{
    (void)core_abi;
    if (errlen > 0)
        err[0] = '\0'; /* set below means failed with a message */
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "plausible: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    plausible_state *s = calloc(1, sizeof *s);
    int failed = s == NULL;
    if (s) {
        s->send_props = 1;
        s->revenue = 1;
    }
    if (failed)
        snprintf(err, errlen, "plausible: out of memory");
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        const char *str = json_is_string(value) ? json_string_value(value) : NULL;
        if (strcmp(key, "url") == 0 && str) {
            if (!http_url(str)) {
                snprintf(err, errlen, "plausible: url must start with http:// or https://");
                failed = 1;
            } else if (strpbrk(str, " \t\r\n?#") || has_control(str)) {
                snprintf(err, errlen,
                         "plausible: url must be the server's base URL, without white space, "
                         "query or fragment");
                failed = 1;
            } else if ((s->endpoint = make_endpoint(str)) == NULL) {
                failed = 1;
            }
        } else if (strcmp(key, "domain") == 0 && str) {
            if (is_blank(str) || strpbrk(str, " \t\r\n/") || has_control(str)) {
                snprintf(err, errlen,
                         "plausible: domain must be a site domain as registered in Plausible "
                         "(e.g. \"example.com\"), without spaces or slashes");
                failed = 1;
            } else {
                failed = set_string(&s->domain, str);
            }
        } else if (strcmp(key, "default_url") == 0 && str) {
            if (*str == '\0' || strpbrk(str, " \t\r\n") || has_control(str) ||
                strncasecmp(str, "data:", 5) == 0 || strlen(str) > MAX_URL_BYTES / 2) {
                snprintf(err, errlen,
                         "plausible: default_url must be an absolute URL (e.g. "
                         "\"app://myapp/\") of at most %d bytes, not a data: URL",
                         MAX_URL_BYTES / 2);
                failed = 1;
            } else {
                failed = set_string(&s->base_url, str);
            }
        } else if (strcmp(key, "user_agent") == 0 && str) {
            if (*str == '\0' || has_control(str) || strlen(str) > MAX_USER_AGENT_BYTES) {
                snprintf(err, errlen,
                         "plausible: user_agent must be 1-%d bytes without control characters",
                         MAX_USER_AGENT_BYTES);
                failed = 1;
            } else if (looks_like_bot(str)) {
                snprintf(err, errlen,
                         "plausible: user_agent \"%.64s\" looks like a bot to Plausible, which "
                         "would drop every event (use a browser-like value with spaces, e.g. "
                         "\"Mozilla/5.0 (X11; Linux x86_64) myapp/1.0\")",
                         str);
                failed = 1;
            } else {
                failed = set_string(&s->user_agent, str);
            }
        } else if (strcmp(key, "props") == 0 && str) {
            if (strcmp(str, "properties") == 0) {
                s->send_props = 1;
            } else if (strcmp(str, "none") == 0) {
                s->send_props = 0;
            } else {
                snprintf(err, errlen, "plausible: props must be \"properties\" or \"none\"");
                failed = 1;
            }
        } else if (strcmp(key, "revenue") == 0 && json_is_boolean(value)) {
            s->revenue = json_is_true(value);
        } else if (strcmp(key, "cut_prop") == 0 && str) {
            if (strlen(str) > MAX_PROP_KEY_BYTES || (*str && is_blank(str))) {
                snprintf(err, errlen,
                         "plausible: cut_prop must be a prop name of at most %d bytes, or \"\"",
                         MAX_PROP_KEY_BYTES);
                failed = 1;
            } else {
                failed = set_string(&s->cut_prop, str);
            }
        } else {
            snprintf(err, errlen,
                     "plausible: unknown or mistyped setting \"%.64s\" (known: url, domain, "
                     "default_url, user_agent, props, revenue, cut_prop)",
                     key);
            failed = 1;
        }
        if (failed && err[0] == '\0')
            snprintf(err, errlen, "plausible: out of memory");
    }
    json_decref(config);
    if (!failed && s->endpoint == NULL) {
        snprintf(err, errlen, "plausible: \"url\" is required (e.g. \"https://plausible.io\")");
        failed = 1;
    }
    if (!failed && s->domain == NULL) {
        snprintf(err, errlen, "plausible: \"domain\" is required: the site as registered in "
                              "Plausible, e.g. \"example.com\"");
        failed = 1;
    }
    if (!failed && s->base_url == NULL) {
        /* app://<first domain>/: the site's own host, so hostname allow-lists pass. */
        size_t n = strcspn(s->domain, ",");
        while (n > 0 && s->domain[n - 1] == ' ')
            n--;
        const char *first = s->domain;
        while (*first == ' ' && n > 0) {
            first++;
            n--;
        }
        if ((s->base_url = malloc(n + 8)) == NULL)
            failed = 1;
        else
            snprintf(s->base_url, n + 8, "app://%.*s/", (int)n, first);
    }
    if (!failed && s->user_agent == NULL)
        failed = set_string(&s->user_agent, DEFAULT_USER_AGENT);
    if (!failed && s->cut_prop == NULL)
        failed = set_string(&s->cut_prop, DEFAULT_CUT_PROP);
    if (failed) {
        if (err[0] == '\0')
            snprintf(err, errlen, "plausible: out of memory");
        plausible_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void plausible_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = 1; /* no batch endpoint */
    out->max_request_bytes = 0;
    /* The body is bounded by construction (name, url, referrer and props are
     * cut to the server's limits: under 450 KB even with every byte escaped),
     * well below the 1,000,000 bytes the server reads, whatever the event's size. */
    out->max_event_bytes = 0;
    out->accepts_gzip = 0; /* Plausible does not decode Content-Encoding */
    out->max_concurrency = 0;
}

/* ---- encode ---- */

static const char *get_string(json_t *object, const char *key)
{
    json_t *v = json_object_get(object, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *nonblank(const char *s)
{
    return s && !is_blank(s) ? s : NULL;
}

/* <base>/<name>, the name percent-encoded except unreserved characters and
 * '/' (Plausible decodes the path: "Settings Screen" reads as such). */
static char *app_url(const char *base, const char *name)
{
    text t = {0};
    text_str(&t, base);
    if (name && *name) {
        if (t.length == 0 || t.data[t.length - 1] != '/')
            text_str(&t, "/");
        while (*name == '/')
            name++;
        static const char hex[] = "0123456789ABCDEF";
        for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
            if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                strchr("-._~/", *p)) {
                text_add(&t, (const char *)p, 1);
            } else {
                char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
                text_add(&t, esc, 3);
            }
        }
    }
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

/* A prop value as the server would store it: strings as they are, numbers
 * and booleans stringified (shortest text that reads back the same).
 * Returns NULL for values that are not scalars. */
static char *prop_string(json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strdup(json_string_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int precision = 1; precision <= 17; precision++) {
            snprintf(buf, sizeof buf, "%.*g", precision, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return strdup(buf);
    }
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    default:
        return NULL;
    }
}

/* What was left out of the props, as one prop value within the limits:
 * "3 props not sent: tags (array), note (value over 2000 bytes), x (over 30)". */
typedef struct cut_report {
    size_t count;
    text items;
    int full;
} cut_report;

static void report_cut(cut_report *r, const char *key, const char *why)
{
    r->count++;
    if (r->full)
        return;
    size_t klen = strlen(key);
    size_t keep = utf8_prefix(key, klen, REPORT_KEY_BYTES, (size_t)-1);
    /* Room for the count in front (about 30 bytes) and a closing ", ...". */
    size_t need = keep + strlen(why) + 16;
    if (r->items.length + need > MAX_PROP_VALUE_BYTES - 48) {
        text_str(&r->items, ", ...");
        r->full = 1;
        return;
    }
    if (r->items.length)
        text_str(&r->items, ", ");
    if (klen == 0)
        text_str(&r->items, "\"\"");
    text_add(&r->items, key, keep);
    if (keep < klen)
        text_str(&r->items, "...");
    text_str(&r->items, " (");
    text_str(&r->items, why);
    text_str(&r->items, ")");
}

/* Skip page fields of a page event's properties: they are the page itself. */
static int page_field(const char *key)
{
    return strcmp(key, "url") == 0 || strcmp(key, "referrer") == 0 || strcmp(key, "path") == 0 ||
           strcmp(key, "search") == 0;
}

/* Map properties to at most 30 props within the server's byte limits.
 * Returns the props object (possibly empty), or NULL when out of memory. */
static json_t *map_props(const plausible_state *s, json_t *properties, int page)
{
    json_t *props = json_object();
    if (props == NULL)
        return NULL;
    if (!json_is_object(properties))
        return props;
    cut_report report = {0};
    const char *key;
    json_t *value;
    /* Candidates in the order of the event's properties. */
    size_t kept = 0;
    const char **keys = calloc(json_object_size(properties) + 1, sizeof *keys);
    char **values = calloc(json_object_size(properties) + 1, sizeof *values);
    if (keys == NULL || values == NULL)
        goto fail;
    json_object_foreach(properties, key, value)
    {
        if (page && page_field(key))
            continue;
        if (json_is_null(value))
            continue; /* no value: nothing is lost */
        if (json_is_object(value) || json_is_array(value)) {
            report_cut(&report, key, json_is_object(value) ? "object" : "array");
            continue;
        }
        char *str = prop_string(value);
        if (str == NULL)
            goto fail;
        if (is_blank(str)) {
            free(str); /* blank: the server discards it, and it says nothing */
            continue;
        }
        if (is_blank(key)) {
            report_cut(&report, key, "blank name");
            free(str);
        } else if (strlen(key) > MAX_PROP_KEY_BYTES) {
            report_cut(&report, key, "name over 300 bytes");
            free(str);
        } else if (strlen(str) > MAX_PROP_VALUE_BYTES) {
            report_cut(&report, key, "value over 2000 bytes");
            free(str);
        } else {
            keys[kept] = key;
            values[kept++] = str;
        }
    }
    int reporting = s->cut_prop[0] != '\0';
    /* The report takes a place of its own, and its name: a property of the
     * same name is cut when there is something to report. */
    size_t room = MAX_PROPS;
    if (reporting && (report.count > 0 || kept > MAX_PROPS))
        room = MAX_PROPS - 1;
    size_t placed = 0;
    for (size_t i = 0; i < kept; i++) {
        int taken = reporting && room < MAX_PROPS && strcmp(keys[i], s->cut_prop) == 0;
        if (taken)
            report_cut(&report, keys[i], "name of the cut report");
        else if (placed >= room)
            report_cut(&report, keys[i], "over 30 props");
        else if (json_object_set_new(props, keys[i], json_string(values[i])) == 0)
            placed++;
        else
            goto fail;
    }
    if (reporting && report.count > 0) {
        char head[48];
        snprintf(head, sizeof head, "%zu prop%s not sent: ", report.count,
                 report.count == 1 ? "" : "s");
        text line = {0};
        text_str(&line, head);
        if (report.items.data)
            text_str(&line, report.items.data);
        if (line.failed || json_object_set_new(props, s->cut_prop, json_string(line.data)) != 0) {
            free(line.data);
            goto fail;
        }
        free(line.data);
    }
    for (size_t i = 0; i < kept; i++)
        free(values[i]);
    free(keys);
    free(values);
    free(report.items.data);
    return props;
fail:
    for (size_t i = 0; values && i < kept; i++)
        free(values[i]);
    free(keys);
    free(values);
    free(report.items.data);
    json_decref(props);
    return NULL;
}

/* {"amount": ..., "currency": "EUR"} from Segment's revenue and currency
 * properties, or NULL when they are not both there. */
static json_t *map_revenue(json_t *properties)
{
    json_t *amount = json_object_get(properties, "revenue");
    const char *currency = get_string(properties, "currency");
    if (!(json_is_number(amount) || (json_is_string(amount) && json_string_length(amount) > 0 &&
                                     json_string_length(amount) < 32)) ||
        currency == NULL || strlen(currency) != 3)
        return NULL;
    if (json_is_string(amount)) {
        char *end = NULL;
        strtod(json_string_value(amount), &end);
        if (end == NULL || *end != '\0')
            return NULL;
    }
    char code[4];
    for (int i = 0; i < 3; i++) {
        char ch = currency[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
            return NULL;
        code[i] = (char)(ch >= 'a' ? ch - 32 : ch);
    }
    code[3] = '\0';
    return json_pack("{s:O,s:s}", "amount", amount, "currency", code);
}

/* The User-Agent header value: control characters become spaces (a line
 * break would start another header), at most 1024 bytes. */
static char *header_value(const char *value)
{
    size_t n = utf8_prefix(value, strlen(value), MAX_USER_AGENT_BYTES, (size_t)-1);
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) ? ' ' : value[i];
    out[n] = '\0';
    return out;
}

/* context.ip if it is one IPv4 or IPv6 address ("[...]" allowed), else NULL. */
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

static int url_allowed(const char *url, char *err, size_t errlen, const char *what)
{
    size_t n = strlen(url);
    if (n > MAX_URL_BYTES) {
        snprintf(err, errlen, "plausible: %s of %zu bytes is over Plausible's limit of %d bytes",
                 what, n, MAX_URL_BYTES);
        return 0;
    }
    while (*url == ' ' || *url == '\t')
        url++;
    if (strncasecmp(url, "data:", 5) == 0) {
        snprintf(err, errlen, "plausible: %s has the data: scheme, which Plausible refuses", what);
        return 0;
    }
    return 1;
}

static int plausible_encode(void *state, const herald_backend_batch *batch,
                            herald_backend_request *out, char *err, size_t errlen)
{
    plausible_state *s = state;
    json_t *event = NULL, *body = NULL;
    char *url_owned = NULL, *ua = NULL, *payload = NULL;
    text headers = {0};
    int rc = -1;
    if (batch->count != 1) {
        snprintf(err, errlen, "plausible: takes one event per request, got %zu", batch->count);
        return -1;
    }
    json_error_t jerr;
    event = json_loadb(batch->events[0], batch->event_lengths[0], 0, &jerr);
    if (!json_is_object(event)) {
        snprintf(err, errlen, "plausible: stored event is not a JSON object");
        goto done;
    }
    const char *type = get_string(event, "type");
    if (type == NULL)
        type = "track";
    json_t *properties = json_object_get(event, "properties");
    json_t *context = json_object_get(event, "context");
    json_t *page = json_object_get(context, "page");
    int is_page = strcmp(type, "page") == 0;
    int is_screen = strcmp(type, "screen") == 0;
    const char *name;
    const char *url = nonblank(get_string(page, "url"));
    const char *referrer = nonblank(get_string(page, "referrer"));
    if (is_page && url == NULL)
        url = nonblank(get_string(properties, "url"));
    if (is_page && referrer == NULL)
        referrer = nonblank(get_string(properties, "referrer"));
    if (is_page || is_screen) {
        name = "pageview";
        if (is_screen || url == NULL) {
            /* A screen (or a page without a URL) is <default_url>/<its name>. */
            if ((url_owned = app_url(s->base_url, get_string(event, "name"))) == NULL)
                goto oom;
            url = url_owned;
        }
    } else if (strcmp(type, "track") == 0) {
        name = get_string(event, "event");
        if (name == NULL || is_blank(name)) {
            snprintf(err, errlen, "plausible: track event without a name");
            goto done;
        }
        size_t chars = utf8_chars(name, strlen(name));
        if (chars > MAX_NAME_CHARS) {
            snprintf(err, errlen,
                     "plausible: event name of %zu characters is over Plausible's limit of %d",
                     chars, MAX_NAME_CHARS);
            goto done;
        }
        if (url == NULL)
            url = s->base_url;
    } else {
        /* identify, group, alias: Plausible has no such concepts. Not a
         * failure: the core removes them unsent and counts them as skipped. */
        rc = HERALD_ENCODE_SKIP;
        goto done;
    }
    if (!url_allowed(url, err, errlen, "page url"))
        goto done;

    body = json_pack("{s:s,s:s,s:s}", "name", name, "url", url, "domain", s->domain);
    if (body == NULL)
        goto oom;
    if (referrer) {
        size_t n = utf8_prefix(referrer, strlen(referrer), (size_t)-1, MAX_REFERRER_CHARS);
        if (json_object_set_new(body, "referrer", json_stringn(referrer, n)) != 0)
            goto oom;
    }
    if (s->send_props) {
        json_t *props = map_props(s, properties, is_page);
        if (props == NULL)
            goto oom;
        if (json_object_size(props) == 0)
            json_decref(props);
        else if (json_object_set_new(body, "props", props) != 0)
            goto oom;
    }
    if (s->revenue && strcmp(type, "track") == 0 && json_is_object(properties)) {
        json_t *revenue = map_revenue(properties);
        if (revenue && json_object_set_new(body, "revenue", revenue) != 0)
            goto oom;
    }
    payload = json_dumps(body, JSON_COMPACT);
    if (payload == NULL)
        goto oom;

    const char *agent = nonblank(get_string(context, "userAgent"));
    if ((ua = header_value(agent ? agent : s->user_agent)) == NULL)
        goto oom;
    text_str(&headers, "Content-Type: application/json\nUser-Agent: ");
    text_str(&headers, ua);
    const char *ip = get_string(context, "ip");
    if (ip && valid_ip(ip)) {
        /* Plausible reads the leftmost X-Forwarded-For entry as the visitor. */
        text_str(&headers, "\nX-Forwarded-For: ");
        text_str(&headers, ip);
    }
    if (headers.failed)
        goto oom;

    size_t len = strlen(payload);
    out->url = s->endpoint;
    out->body = herald_alloc(len + 1);
    out->headers = herald_strdup(headers.data);
    if (out->body == NULL || out->headers == NULL)
        goto oom;
    memcpy(out->body, payload, len + 1);
    out->body_length = len;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "plausible: out of memory");
done:
    free(headers.data);
    free(ua);
    free(payload);
    free(url_owned);
    json_decref(body);
    json_decref(event);
    return rc;
}

/* ---- classify ---- */

/* "url: must be a valid url; props: ..." from {"errors":{field:[msg...]}}. */
static int error_summary(const herald_backend_response *response, char *out, size_t outlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(response->body, response->body_length, 0, &jerr);
    json_t *errors = json_object_get(doc, "errors");
    if (!json_is_object(errors) || json_object_size(errors) == 0) {
        json_decref(doc);
        return 0;
    }
    size_t len = 0;
    out[0] = '\0';
    const char *field;
    json_t *messages;
    json_object_foreach(errors, field, messages)
    {
        json_t *first = json_is_array(messages) ? json_array_get(messages, 0) : messages;
        const char *msg = json_is_string(first) ? json_string_value(first) : "invalid";
        int n = snprintf(out + len, outlen - len, "%s%s: %s", len ? "; " : "", field, msg);
        if (n < 0 || (size_t)n >= outlen - len) {
            len = outlen - 1;
            break;
        }
        len += (size_t)n;
    }
    for (size_t i = 0; i < len; i++) /* printable ASCII only in reasons */
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
            out[i] = '?';
    json_decref(doc);
    return 1;
}

static void plausible_classify(void *state, const herald_backend_response *response,
                               const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    herald_verdict_from_status(response, out);
    long status = response->status;
    int has_header = response->struct_size >= offsetof(herald_backend_response, header) +
                                                  sizeof response->header &&
                     response->header != NULL;
    if (status >= 200 && status < 300) {
        const char *dropped = has_header ? response->header(response, "X-Plausible-Dropped") : NULL;
        if (dropped != NULL) {
            /* Accepted and discarded without an error: a bot User-Agent, an
             * unknown site, a shield rule, the site's ingest limit... Never
             * retried: the same request would be dropped again. */
            long n = strtol(dropped, NULL, 10);
            out->kind = HERALD_VERDICT_OK;
            out->dropped = (uint32_t)batch->count;
            snprintf(out->reason, sizeof out->reason,
                     "dropped by the server (X-Plausible-Dropped: %ld): bot User-Agent, unknown "
                     "site, shield rule or ingest limit",
                     n > 0 ? n : 1);
        }
    } else if (status == 400) {
        /* A validation error: the same event fails again, so dead-letter it
         * with the server's words. */
        char summary[200];
        out->kind = HERALD_VERDICT_REJECT;
        if (error_summary(response, summary, sizeof summary))
            snprintf(out->reason, sizeof out->reason, "HTTP 400: %s", summary);
    }
}

static const herald_backend_v1 plausible_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "plausible",
    .create = plausible_create,
    .destroy = plausible_destroy,
    .limits = plausible_limits,
    .encode = plausible_encode,
    .classify = plausible_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-plausible.so): the same source,
 * the public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &plausible_backend;
}
#else
const herald_backend_v1 *herald_backend_plausible(void);
const herald_backend_v1 *herald_backend_plausible(void)
{
    return &plausible_backend;
}
#endif
