/*
 * The ClickHouse backend: inserts events as rows of a table through
 * ClickHouse's HTTP interface,
 *
 *     POST <url>/?query=INSERT INTO `db`.`table` FORMAT JSONEachRow[&settings]
 *
 * with one JSON object per line and per event (contract: BACKENDS.md section 5,
 * observed on Debian's clickhouse-server 18.16.1). docs/clickhouse.sql is the
 * table the default column mapping fills.
 *
 * Config (JSON object):
 *   url           http:// or https:// base URL of the HTTP interface (required),
 *                 e.g. "http://127.0.0.1:8123"; no query, fragment or user info
 *   table         "table" or "database.table" (required)
 *   user          ClickHouse user (X-ClickHouse-User); default: the server's default
 *   password      its password (X-ClickHouse-Key); never logged
 *   columns       the mapping from events to columns (default: docs/clickhouse.sql):
 *                 {"column": "$.path" | ["$.a", "$.b"] |
 *                  {"path": ..., "type": "...", "default": v} | {"const": v, "type": "..."}}
 *                 types: string (default), json, int8..int64, uint8..uint64,
 *                 float32, float64, bool, datetime, date, unix_ms, millis, raw
 *   settings      query settings added to the URL, e.g. {"input_format_skip_unknown_fields": 1}
 *   gzip          true (default): send bodies with Content-Encoding: gzip
 *   config_errors "dead-letter" (default) or "retry": what authentication,
 *                 unknown-table and unknown-column errors do to a batch
 *
 * Values are converted per column type before they are sent, because 18.16
 * silently stores wrong rows for out-of-range integers (they wrap) and for
 * unparsable DateTime text: an event whose value does not fit is never sent
 * and is dead-lettered alone. Errors are classified by the exception code of
 * the response ("Code: N" in the body, or X-ClickHouse-Exception-Code), never
 * by the status alone: 18.16 answers 500 for many data errors.
 */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/plugin.h"

#define MAX_IDENTIFIER 64
#define MAX_PATH_BYTES 512

/* ---- column types ---- */

typedef enum value_kind {
    K_STRING, /* String: strings as they are, scalars as text, objects/arrays as JSON text */
    K_JSON,   /* String holding the JSON text of any value */
    K_INT,    /* Int8..Int64, UInt8..UInt64 (bounds below) */
    K_FLOAT,  /* Float32, Float64 */
    K_BOOL,   /* UInt8 0/1 */
    K_DATETIME, /* DateTime: unix seconds 0..4294967295 */
    K_DATE,   /* Date: "YYYY-MM-DD" (UTC day) */
    K_UNIX_MS,  /* Int64: unix milliseconds */
    K_MILLIS, /* UInt16: the millisecond part (0..999) of a time */
    K_RAW     /* the JSON value as it is: the server converts (or refuses) it */
} value_kind;

typedef struct type_info {
    const char *name;
    value_kind kind;
    int is_unsigned;
    int64_t min;        /* signed types */
    uint64_t max;       /* upper bound (both) */
} type_info;

static const type_info TYPES[] = {
    {"string", K_STRING, 0, 0, 0},
    {"json", K_JSON, 0, 0, 0},
    {"int8", K_INT, 0, INT8_MIN, INT8_MAX},
    {"int16", K_INT, 0, INT16_MIN, INT16_MAX},
    {"int32", K_INT, 0, INT32_MIN, INT32_MAX},
    {"int64", K_INT, 0, INT64_MIN, INT64_MAX},
    {"uint8", K_INT, 1, 0, UINT8_MAX},
    {"uint16", K_INT, 1, 0, UINT16_MAX},
    {"uint32", K_INT, 1, 0, UINT32_MAX},
    {"uint64", K_INT, 1, 0, UINT64_MAX},
    {"float32", K_FLOAT, 0, 0, 32},
    {"float64", K_FLOAT, 0, 0, 64},
    {"bool", K_BOOL, 0, 0, 0},
    {"datetime", K_DATETIME, 0, 0, 0},
    {"date", K_DATE, 0, 0, 0},
    {"unix_ms", K_UNIX_MS, 0, 0, 0},
    {"millis", K_MILLIS, 0, 0, 0},
    {"raw", K_RAW, 0, 0, 0},
};

#define TYPE_NAMES                                                                              \
    "string, json, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, " \
    "bool, datetime, date, unix_ms, millis, raw"

static const type_info *type_find(const char *name)
{
    for (size_t i = 0; i < sizeof TYPES / sizeof *TYPES; i++)
        if (strcasecmp(TYPES[i].name, name) == 0)
            return &TYPES[i];
    return NULL;
}

/* One column of the mapping. */
typedef struct column {
    char *name;
    const type_info *type;
    char **paths;      /* alternatives, first present wins */
    size_t path_count;
    json_t *fixed;     /* a const, converted; or the default for absent values, converted */
    int is_const;
} column;

typedef enum config_policy { POLICY_DEAD_LETTER, POLICY_RETRY } config_policy;

typedef struct ch_state {
    char *endpoint;    /* <url>/?query=INSERT...&settings */
    char *headers;     /* Content-Type and auth, "Name: value" lines */
    column *columns;
    size_t column_count;
    int gzip;
    config_policy config_errors;
    unsigned invalid_pending; /* encoded batches that left out events, not yet classified */
} ch_state;

/* The table herald's documentation describes (docs/clickhouse.sql). */
static const char DEFAULT_COLUMNS[] =
    "{"
    "\"message_id\": \"$.messageId\","
    "\"type\": \"$.type\","
    "\"event\": [\"$.event\", \"$.name\"],"
    "\"user_id\": \"$.userId\","
    "\"anonymous_id\": \"$.anonymousId\","
    "\"group_id\": [\"$.groupId\", \"$.context.groupId\"],"
    "\"previous_id\": \"$.previousId\","
    "\"timestamp\": {\"path\": \"$.timestamp\", \"type\": \"datetime\"},"
    "\"timestamp_ms\": {\"path\": \"$.timestamp\", \"type\": \"millis\"},"
    "\"session_id\": {\"path\": \"$.context.session.id\", \"type\": \"int64\"},"
    "\"session_sequence\": {\"path\": \"$.context.session.sequence\", \"type\": \"uint32\"},"
    "\"page_url\": \"$.context.page.url\","
    "\"page_path\": \"$.context.page.path\","
    "\"page_title\": \"$.context.page.title\","
    "\"page_referrer\": \"$.context.page.referrer\","
    "\"campaign_source\": \"$.context.campaign.source\","
    "\"campaign_medium\": \"$.context.campaign.medium\","
    "\"campaign_name\": \"$.context.campaign.name\","
    "\"app_name\": \"$.context.app.name\","
    "\"app_version\": \"$.context.app.version\","
    "\"os_name\": \"$.context.os.name\","
    "\"os_version\": \"$.context.os.version\","
    "\"device_type\": \"$.context.device.type\","
    "\"locale\": \"$.context.locale\","
    "\"timezone\": \"$.context.timezone\","
    "\"user_agent\": \"$.context.userAgent\","
    "\"library_version\": \"$.context.library.version\","
    "\"properties\": {\"path\": \"$.properties\", \"type\": \"json\", \"default\": {}},"
    "\"traits\": {\"path\": \"$.traits\", \"type\": \"json\", \"default\": {}},"
    "\"context\": {\"path\": \"$.context\", \"type\": \"json\", \"default\": {}}"
    "}";

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

/* Percent-encode everything but unreserved characters. */
static void text_url_encoded(text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            text_add(t, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            text_add(t, esc, 3);
        }
    }
}

/* ---- small checks ---- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* [A-Za-z_][A-Za-z0-9_]*, 1..64 bytes, n bytes of s. */
static int identifier_valid(const char *s, size_t n)
{
    if (n == 0 || n > MAX_IDENTIFIER)
        return 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* "name" or "a.b" (a Nested column's member). */
static int column_name_valid(const char *s)
{
    const char *dot = strchr(s, '.');
    if (dot == NULL)
        return identifier_valid(s, strlen(s));
    return identifier_valid(s, (size_t)(dot - s)) && identifier_valid(dot + 1, strlen(dot + 1));
}

static int path_valid(const char *path)
{
    if (path[0] != '$' || (path[1] != '\0' && path[1] != '.'))
        return 0;
    for (const char *p = path + 1; *p; p++)
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    return strlen(path) < MAX_PATH_BYTES;
}

/* Follow "$.a.b.0.c" into an event ("$" is the event itself); NULL when absent
 * or null. */
static json_t *follow(json_t *root, const char *path)
{
    json_t *node = root;
    const char *p = path + 1; /* after '$' */
    while (*p == '.' && node != NULL) {
        p++;
        size_t n = strcspn(p, ".");
        char key[MAX_PATH_BYTES];
        if (n == 0 || n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (json_is_array(node)) {
            char *end = NULL;
            unsigned long index = strtoul(key, &end, 10);
            node = (*end == '\0' && key[0] >= '0' && key[0] <= '9') ? json_array_get(node, index)
                                                                    : NULL;
        } else {
            node = json_object_get(node, key);
        }
        p += n;
    }
    return json_is_null(node) ? NULL : node;
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

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
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

/* RFC 3339 ("2026-11-24T06:11:42.240Z", "…+02:00"), also with a space or
 * 't' for 'T', without seconds or zone (UTC), or a bare date: unix ms. */
static int parse_time(const char *s, int64_t *unix_ms)
{
    int year, month, day, hour = 0, minute = 0, second = 0, ms = 0;
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day))
        return 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 || day > mdays[month - 1])
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && day == 29 && !leap)
        return 0;
    const char *p = s + 10;
    int64_t offset_min = 0;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return 0;
        p++;
        if (!digits(p, 2, &hour) || p[2] != ':' || !digits(p + 3, 2, &minute))
            return 0;
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2, &second))
                return 0;
            p += 3;
            if (*p == '.' || *p == ',') {
                p++;
                int n = 0;
                while (*p >= '0' && *p <= '9') {
                    if (n < 3)
                        ms = ms * 10 + (*p - '0');
                    n++;
                    p++;
                }
                if (n == 0)
                    return 0;
                for (; n < 3; n++)
                    ms *= 10;
            }
        }
        if (hour > 23 || minute > 59 || second > 60)
            return 0;
        if (second == 60)
            second = 59; /* a leap second: the last second of the minute */
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om;
            int sign = *p == '-' ? -1 : 1;
            if (!digits(p + 1, 2, &oh))
                return 0;
            if (p[3] == ':') {
                if (!digits(p + 4, 2, &om))
                    return 0;
                p += 6;
            } else {
                if (!digits(p + 3, 2, &om))
                    return 0;
                p += 5;
            }
            if (oh > 23 || om > 59)
                return 0;
            offset_min = sign * (oh * 60 + om);
        }
        if (*p != '\0')
            return 0;
    }
    int64_t days = days_from_civil(year, (unsigned)month, (unsigned)day);
    int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    *unix_ms = seconds * 1000 + ms;
    return 1;
}

/* ---- value conversion ---- */

/* Without libm (the plugin links only jansson): |d| and floor for the
 * ranges used here. */
static double abs_d(double d)
{
    return d < 0 ? -d : d;
}

static int integral(double d)
{
    if (abs_d(d) >= 9007199254740992.0) /* 2^53: every double there is integral */
        return 1;
    return d == (double)(int64_t)d;
}

/* floor(d) for |d| < 2^63. */
static int64_t floor_i64(double d)
{
    int64_t i = (int64_t)d;
    return (double)i > d ? i - 1 : i;
}

/* The shortest text of d that reads back the same (jansson prints 17
 * digits: 9.99 would be stored as 9.9900000000000002), with a '.' whatever
 * the locale. */
static void shortest_real(double d, char *buf, size_t buflen)
{
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, buflen, "%.*g", precision, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    for (char *p = buf; *p; p++)
        if (*p == ',')
            *p = '.';
}

/* Compact JSON text of v (object members in their order), reals shortest. */
static void dump_json(text *out, json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *member;
        int first = 1;
        text_add(out, "{", 1);
        json_object_foreach(v, key, member)
        {
            if (!first)
                text_add(out, ",", 1);
            first = 0;
            json_t *name = json_string(key);
            if (name == NULL) {
                out->failed = 1;
                return;
            }
            dump_json(out, name);
            json_decref(name);
            text_add(out, ":", 1);
            dump_json(out, member);
        }
        text_add(out, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        text_add(out, "[", 1);
        json_array_foreach(v, i, item)
        {
            if (i > 0)
                text_add(out, ",", 1);
            dump_json(out, item);
        }
        text_add(out, "]", 1);
        break;
    }
    case JSON_STRING: {
        static const char hex[] = "0123456789abcdef";
        const char *str = json_string_value(v);
        size_t n = json_string_length(v), run = 0;
        text_add(out, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)str[i];
            if (ch >= 0x20 && ch != '"' && ch != '\\')
                continue;
            text_add(out, str + run, i - run);
            run = i + 1;
            char esc[6] = {'\\', (char)ch, 0, 0, 0, 0};
            size_t len = 2;
            if (ch == '\n')
                esc[1] = 'n';
            else if (ch == '\t')
                esc[1] = 't';
            else if (ch == '\r')
                esc[1] = 'r';
            else if (ch < 0x20) {
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[ch >> 4];
                esc[5] = hex[ch & 15];
                len = 6;
            }
            text_add(out, esc, len);
        }
        text_add(out, str + run, n - run);
        text_add(out, "\"", 1);
        break;
    }
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        text_str(out, buf);
        break;
    case JSON_REAL:
        shortest_real(json_real_value(v), buf, sizeof buf);
        text_str(out, buf);
        if (strpbrk(buf, ".eEn") == NULL) /* keep it a real: 2.0, not 2 */
            text_str(out, ".0");
        break;
    case JSON_TRUE:
        text_str(out, "true");
        break;
    case JSON_FALSE:
        text_str(out, "false");
        break;
    case JSON_NULL:
        text_str(out, "null");
        break;
    }
}

static json_t *as_json_text(json_t *v)
{
    text t = {0};
    dump_json(&t, v);
    json_t *out = t.failed || t.data == NULL ? NULL : json_stringn(t.data, t.length);
    free(t.data);
    return out;
}

/* A value as text for a String column: strings as they are, numbers as the
 * shortest text that reads back the same, booleans true/false, objects and
 * arrays as compact JSON. */
static json_t *as_string(json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_incref(v);
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(buf);
    case JSON_REAL:
        shortest_real(json_real_value(v), buf, sizeof buf);
        return json_string(buf);
    case JSON_TRUE:
        return json_string("true");
    case JSON_FALSE:
        return json_string("false");
    default:
        return as_json_text(v);
    }
}

/* Integer from a JSON integer, an integral real, a boolean or a decimal
 * string, within the type's bounds; NULL when it does not fit. */
static json_t *as_int(json_t *v, const type_info *t)
{
    int negative = 0;
    uint64_t magnitude = 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        negative = i < 0;
        magnitude = negative ? (uint64_t)(-(i + 1)) + 1 : (uint64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || !integral(d) || d <= -9223372036854775808.0 ||
            d >= 18446744073709551616.0)
            return NULL;
        negative = d < 0;
        magnitude = negative ? (uint64_t)(-d) : (uint64_t)d;
    } else if (json_is_boolean(v)) {
        magnitude = json_is_true(v) ? 1 : 0;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (*s == '-' || *s == '+') {
            negative = *s == '-';
            s++;
        }
        if (*s == '\0' || strlen(s) > 20)
            return NULL;
        for (; *s; s++) {
            if (*s < '0' || *s > '9')
                return NULL;
            uint64_t digit = (uint64_t)(*s - '0');
            if (magnitude > (UINT64_MAX - digit) / 10)
                return NULL;
            magnitude = magnitude * 10 + digit;
        }
    } else {
        return NULL;
    }
    if (negative && magnitude == 0)
        negative = 0;
    if (t->is_unsigned) {
        if (negative || magnitude > t->max)
            return NULL;
        if (magnitude > (uint64_t)INT64_MAX) {
            char buf[32]; /* beyond json_int_t: as a quoted number, which ClickHouse reads */
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)magnitude);
            return json_string(buf);
        }
        return json_integer((json_int_t)magnitude);
    }
    if (negative) {
        if (magnitude > (uint64_t)(-(t->min + 1)) + 1)
            return NULL;
        return json_integer(magnitude == (uint64_t)INT64_MAX + 1 ? (json_int_t)INT64_MIN
                                                                : -(json_int_t)magnitude);
    }
    if (magnitude > t->max)
        return NULL;
    return json_integer((json_int_t)magnitude);
}

static json_t *as_float(json_t *v, const type_info *t)
{
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_boolean(v)) {
        d = json_is_true(v) ? 1 : 0;
    } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 64) {
        char *end = NULL;
        d = strtod(json_string_value(v), &end);
        if (end == NULL || *end != '\0')
            return NULL;
    } else {
        return NULL;
    }
    if (!isfinite(d) || (t->max == 32 && abs_d(d) > FLT_MAX))
        return NULL;
    return json_integer_value(v) == 0 && json_is_integer(v) ? json_integer(0) : json_real(d);
}

static json_t *as_bool(json_t *v)
{
    if (json_is_boolean(v))
        return json_integer(json_is_true(v) ? 1 : 0);
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        return json_integer(json_integer_value(v));
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
            return json_integer(1);
        if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
            return json_integer(0);
    }
    return NULL;
}

/* A time value in unix ms: RFC 3339 text, or a number (seconds for
 * datetime and date, ms for unix_ms and millis). */
static int time_value(json_t *v, value_kind kind, int64_t *unix_ms)
{
    if (json_is_string(v))
        return parse_time(json_string_value(v), unix_ms);
    int number_in_ms = kind == K_UNIX_MS || kind == K_MILLIS;
    double limit = number_in_ms ? 9.2e18 : 9.2e15;
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return 0;
    if (!isfinite(d) || abs_d(d) > limit)
        return 0;
    if (json_is_integer(v))
        *unix_ms = number_in_ms ? json_integer_value(v) : json_integer_value(v) * 1000;
    else
        *unix_ms = floor_i64(number_in_ms ? d : d * 1000);
    return 1;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static json_t *as_time(json_t *v, value_kind kind)
{
    int64_t ms;
    if (!time_value(v, kind, &ms))
        return NULL;
    int64_t seconds = floor_div(ms, 1000);
    switch (kind) {
    case K_DATETIME:
        /* DateTime is a UInt32: anything else wraps silently on 18.16. */
        if (seconds < 0 || seconds > (int64_t)UINT32_MAX)
            return NULL;
        return json_integer(seconds);
    case K_UNIX_MS:
        return json_integer(ms);
    case K_MILLIS:
        return json_integer(ms - seconds * 1000);
    case K_DATE: {
        int64_t days = floor_div(seconds, 86400);
        if (days < 0 || days > UINT16_MAX)
            return NULL;
        int64_t y;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        char buf[48];
        snprintf(buf, sizeof buf, "%04d-%02u-%02u", (int)y, m, d);
        return json_string(buf);
    }
    default:
        return NULL;
    }
}

/* v converted for a column of type t: a new reference, or NULL when the value
 * does not fit the type (or out of memory). */
static json_t *convert(json_t *v, const type_info *t)
{
    switch (t->kind) {
    case K_STRING:
        return as_string(v);
    case K_JSON:
        return as_json_text(v);
    case K_INT:
        return as_int(v, t);
    case K_FLOAT:
        return as_float(v, t);
    case K_BOOL:
        return as_bool(v);
    case K_DATETIME:
    case K_DATE:
    case K_UNIX_MS:
    case K_MILLIS:
        return as_time(v, t->kind);
    case K_RAW:
        return json_incref(v);
    }
    return NULL;
}

static const char *why_not(const type_info *t)
{
    switch (t->kind) {
    case K_INT:
        return t->is_unsigned ? "not an integer within the column type's range (unsigned)"
                              : "not an integer within the column type's range";
    case K_FLOAT:
        return "not a finite number within the column type's range";
    case K_BOOL:
        return "not a boolean (true/false, 1/0)";
    case K_DATETIME:
        return "not an RFC 3339 time (or unix seconds) within DateTime's range (1970-2106)";
    case K_DATE:
        return "not an RFC 3339 date within Date's range (1970-2149)";
    case K_UNIX_MS:
    case K_MILLIS:
        return "not an RFC 3339 time (or unix milliseconds)";
    default:
        return "cannot be converted";
    }
}

/* ---- create / destroy ---- */

static void columns_free(column *columns, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(columns[i].name);
        for (size_t j = 0; j < columns[i].path_count; j++)
            free(columns[i].paths[j]);
        free(columns[i].paths);
        json_decref(columns[i].fixed);
    }
    free(columns);
}

static void ch_destroy(void *state)
{
    ch_state *s = state;
    if (s == NULL)
        return;
    free(s->endpoint);
    free(s->headers);
    columns_free(s->columns, s->column_count);
    free(s);
}

static int add_path(column *c, json_t *path, char *err, size_t errlen)
{
    if (!json_is_string(path) || !path_valid(json_string_value(path))) {
        snprintf(err, errlen,
                 "clickhouse: column \"%s\": a path looks like \"$.context.page.url\" (\"$\" is "
                 "the whole event)",
                 c->name);
        return -1;
    }
    char **grown = realloc(c->paths, (c->path_count + 1) * sizeof *grown);
    if (grown == NULL)
        return -1;
    c->paths = grown;
    if ((c->paths[c->path_count] = strdup(json_string_value(path))) == NULL)
        return -1;
    c->path_count++;
    return 0;
}

/* One column spec: "$.path"; ["$.a", "$.b"]; {"path": ..., "type": ...,
 * "default": ...}; {"const": ..., "type": ...}. */
static int column_compile(column *c, const char *name, json_t *spec, char *err, size_t errlen)
{
    if ((c->name = strdup(name)) == NULL)
        return -1;
    if (!column_name_valid(name)) {
        snprintf(err, errlen,
                 "clickhouse: column name \"%.64s\" must be an identifier ([A-Za-z_][A-Za-z0-9_]*, "
                 "at most 64 bytes, or nested.member)",
                 name);
        return -1;
    }
    c->type = &TYPES[0];
    json_t *paths = spec, *fallback = NULL, *constant = NULL;
    if (json_is_object(spec)) {
        const char *k;
        json_t *v;
        paths = NULL;
        json_object_foreach(spec, k, v)
        {
            if (strcmp(k, "path") == 0) {
                paths = v;
            } else if (strcmp(k, "default") == 0) {
                fallback = v;
            } else if (strcmp(k, "const") == 0) {
                constant = v;
            } else if (strcmp(k, "type") == 0 && json_is_string(v)) {
                if ((c->type = type_find(json_string_value(v))) == NULL) {
                    snprintf(err, errlen,
                             "clickhouse: column \"%s\": unknown type \"%.32s\" (known: " TYPE_NAMES
                             ")",
                             name, json_string_value(v));
                    return -1;
                }
            } else {
                snprintf(err, errlen,
                         "clickhouse: column \"%s\": unknown or mistyped key \"%.32s\" (known: "
                         "path, type, default, const)",
                         name, k);
                return -1;
            }
        }
        if (constant != NULL && (paths != NULL || fallback != NULL)) {
            snprintf(err, errlen, "clickhouse: column \"%s\": const goes without path or default",
                     name);
            return -1;
        }
        if (constant == NULL && paths == NULL) {
            snprintf(err, errlen, "clickhouse: column \"%s\" needs a path or a const", name);
            return -1;
        }
    }
    json_t *given = constant ? constant : fallback;
    if (given != NULL && !json_is_null(given)) {
        c->fixed = convert(given, c->type);
        if (c->fixed == NULL) {
            snprintf(err, errlen, "clickhouse: column \"%s\": the %s value is %s", name,
                     constant ? "const" : "default", why_not(c->type));
            return -1;
        }
    }
    if (constant != NULL) {
        c->is_const = 1;
        return 0;
    }
    if (json_is_array(paths)) {
        size_t i;
        json_t *p;
        json_array_foreach(paths, i, p)
        {
            if (add_path(c, p, err, errlen) != 0)
                return -1;
        }
    } else if (add_path(c, paths, err, errlen) != 0) {
        return -1;
    }
    if (c->path_count == 0) {
        snprintf(err, errlen, "clickhouse: column \"%s\" needs a path", name);
        return -1;
    }
    return 0;
}

static int columns_compile(ch_state *s, json_t *columns, char *err, size_t errlen)
{
    size_t n = json_object_size(columns);
    if (n == 0) {
        snprintf(err, errlen, "clickhouse: columns must name at least one column");
        return -1;
    }
    s->columns = calloc(n, sizeof *s->columns);
    if (s->columns == NULL)
        return -1;
    const char *name;
    json_t *spec;
    json_object_foreach(columns, name, spec)
    {
        if (column_compile(&s->columns[s->column_count++], name, spec, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* Settings that must not come from the config: they are the request itself,
 * or would send a second set of credentials, or make no sense per batch. */
static const char *setting_refused(const char *name)
{
    static const char *const refused[] = {"query", "user", "password", "quota_key"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (strcmp(name, refused[i]) == 0)
            return "it is set by the backend (use url, table, user and password)";
    if (strcmp(name, "insert_deduplication_token") == 0)
        return "one fixed token would make the server drop every batch after the first as a "
               "duplicate (see ReplacingMergeTree in docs/clickhouse.sql for deduplication)";
    return NULL;
}

static int append_setting(text *query, const char *name, json_t *value, char *err, size_t errlen)
{
    if (!identifier_valid(name, strlen(name))) {
        snprintf(err, errlen, "clickhouse: setting \"%.64s\" is not a setting name", name);
        return -1;
    }
    const char *why = setting_refused(name);
    if (why) {
        snprintf(err, errlen, "clickhouse: setting \"%s\" is refused: %s", name, why);
        return -1;
    }
    char buf[64];
    const char *str;
    if (json_is_string(value)) {
        str = json_string_value(value);
    } else if (json_is_integer(value)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        str = buf;
    } else if (json_is_real(value)) {
        snprintf(buf, sizeof buf, "%.17g", json_real_value(value));
        str = buf;
    } else if (json_is_boolean(value)) {
        str = json_is_true(value) ? "1" : "0";
    } else {
        snprintf(err, errlen, "clickhouse: setting \"%s\" must be a string, number or boolean",
                 name);
        return -1;
    }
    text_str(query, "&");
    text_str(query, name);
    text_str(query, "=");
    text_url_encoded(query, str);
    return 0;
}

static int ch_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                     size_t errlen)
{
    (void)core_abi;
    if (errlen > 0)
        err[0] = '\0';
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, errlen, "clickhouse: config is not a JSON object");
        json_decref(config);
        return -1;
    }
    ch_state *s = calloc(1, sizeof *s);
    text endpoint = {0}, headers = {0};
    const char *url = NULL, *table = NULL, *user = NULL, *password = NULL;
    json_t *columns = NULL, *settings = NULL;
    int failed = s == NULL;
    if (s)
        s->gzip = 1;
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (failed)
            break;
        const char *str = json_is_string(value) ? json_string_value(value) : NULL;
        if (strcmp(key, "url") == 0 && str) {
            url = str;
        } else if (strcmp(key, "table") == 0 && str) {
            table = str;
        } else if (strcmp(key, "user") == 0 && str) {
            user = str;
        } else if (strcmp(key, "password") == 0 && str) {
            password = str;
        } else if (strcmp(key, "columns") == 0 && json_is_object(value)) {
            columns = value;
        } else if (strcmp(key, "settings") == 0 && json_is_object(value)) {
            settings = value;
        } else if (strcmp(key, "gzip") == 0 && json_is_boolean(value)) {
            s->gzip = json_is_true(value);
        } else if (strcmp(key, "config_errors") == 0 && str) {
            if (strcmp(str, "dead-letter") == 0) {
                s->config_errors = POLICY_DEAD_LETTER;
            } else if (strcmp(str, "retry") == 0) {
                s->config_errors = POLICY_RETRY;
            } else {
                snprintf(err, errlen,
                         "clickhouse: config_errors must be \"dead-letter\" or \"retry\"");
                failed = 1;
            }
        } else {
            snprintf(err, errlen,
                     "clickhouse: unknown or mistyped setting \"%.64s\" (known: url, table, user, "
                     "password, columns, settings, gzip, config_errors)",
                     key);
            failed = 1;
        }
    }
    if (!failed && url == NULL) {
        snprintf(err, errlen,
                 "clickhouse: \"url\" is required: the HTTP interface, e.g. "
                 "\"http://127.0.0.1:8123\"");
        failed = 1;
    }
    if (!failed && table == NULL) {
        snprintf(err, errlen, "clickhouse: \"table\" is required, e.g. \"herald_events\" or "
                              "\"analytics.herald_events\"");
        failed = 1;
    }
    if (!failed) {
        const char *authority = strstr(url, "://");
        size_t authority_len = authority ? strcspn(authority + 3, "/") : 0;
        if (!http_url(url)) {
            snprintf(err, errlen, "clickhouse: url must start with http:// or https://");
            failed = 1;
        } else if (strpbrk(url, " \t?#") || has_control(url)) {
            snprintf(err, errlen,
                     "clickhouse: url must be the HTTP interface's base URL, without white space, "
                     "query or fragment (settings go in \"settings\")");
            failed = 1;
        } else if (memchr(authority + 3, '@', authority_len) != NULL) {
            snprintf(err, errlen,
                     "clickhouse: url must not carry credentials: use \"user\" and \"password\" "
                     "(ClickHouse refuses two authentication methods at once)");
            failed = 1;
        } else if (authority_len == 0) {
            snprintf(err, errlen, "clickhouse: url has no host");
            failed = 1;
        }
    }
    const char *dot = table ? strchr(table, '.') : NULL;
    if (!failed && !(dot ? identifier_valid(table, (size_t)(dot - table)) &&
                               identifier_valid(dot + 1, strlen(dot + 1))
                         : identifier_valid(table, strlen(table)))) {
        snprintf(err, errlen,
                 "clickhouse: table \"%.64s\" must be \"name\" or \"database.name\" with "
                 "identifiers of [A-Za-z_][A-Za-z0-9_]* (at most 64 bytes each)",
                 table);
        failed = 1;
    }
    if (!failed && user != NULL && (*user == '\0' || has_control(user) || strlen(user) > 256)) {
        snprintf(err, errlen, "clickhouse: user must be 1-256 bytes without control characters");
        failed = 1;
    }
    if (!failed && password != NULL && (has_control(password) || strlen(password) > 4096)) {
        snprintf(err, errlen,
                 "clickhouse: password must be at most 4096 bytes without control characters");
        failed = 1;
    }
    if (!failed) {
        /* The request: <url>/?query=INSERT INTO `db`.`table` FORMAT JSONEachRow */
        size_t n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
            n--;
        text_add(&endpoint, url, n);
        text_str(&endpoint, "/?query=INSERT%20INTO%20%60");
        if (dot) {
            text_add(&endpoint, table, (size_t)(dot - table));
            text_str(&endpoint, "%60.%60");
            text_str(&endpoint, dot + 1);
        } else {
            text_str(&endpoint, table);
        }
        text_str(&endpoint, "%60%20FORMAT%20JSONEachRow");
        if (settings) {
            json_object_foreach(settings, key, value)
            {
                if (append_setting(&endpoint, key, value, err, errlen) != 0) {
                    failed = 1;
                    break;
                }
            }
        }
    }
    if (!failed) {
        text_str(&headers, "Content-Type: application/x-ndjson; charset=utf-8");
        if (user != NULL || password != NULL) {
            text_str(&headers, "\nX-ClickHouse-User: ");
            text_str(&headers, user ? user : "default");
        }
        if (password != NULL) {
            text_str(&headers, "\nX-ClickHouse-Key: ");
            text_str(&headers, password);
        }
    }
    if (!failed) {
        json_t *defaults = NULL;
        if (columns == NULL) {
            defaults = json_loads(DEFAULT_COLUMNS, 0, &jerr);
            if (defaults == NULL)
                snprintf(err, errlen, "clickhouse: the default columns do not parse: %s",
                         jerr.text);
        }
        if ((columns == NULL && defaults == NULL) ||
            columns_compile(s, columns ? columns : defaults, err, errlen) != 0)
            failed = 1;
        json_decref(defaults);
    }
    json_decref(config);
    if (!failed && (endpoint.failed || headers.failed))
        failed = 1;
    if (failed) {
        if (err[0] == '\0')
            snprintf(err, errlen, "clickhouse: out of memory");
        free(endpoint.data);
        free(headers.data);
        ch_destroy(s);
        return -1;
    }
    s->endpoint = endpoint.data;
    s->headers = headers.data;
    *state = s;
    return 0;
}

static void ch_limits(const void *state, herald_backend_limits *out)
{
    const ch_state *s = state;
    out->max_events_per_request = 0; /* the destination's batch_max_events */
    out->max_request_bytes = 0;
    out->max_event_bytes = 0;
    out->accepts_gzip = s->gzip; /* 18.16 decodes "gzip" (exactly, lowercase) */
    out->max_concurrency = 0;
}

/* ---- encode ---- */

/* Events that cannot be rows: how many, the first one's reason, and the
 * columns they failed on. One reason goes with all of a batch's dead letters
 * (herald_verdict has one), so it names every column concerned. */
typedef struct misfits {
    size_t count;
    char first[256];
    text columns;      /* "small, at" */
    size_t column_count;
} misfits;

static void misfits_add(misfits *m, const column *c, const char *err)
{
    if (m->count++ == 0)
        snprintf(m->first, sizeof m->first, "%s", err);
    if (c == NULL || m->column_count >= 8)
        return;
    /* Listed once each. */
    size_t n = strlen(c->name);
    for (const char *p = m->columns.data; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, c->name, n) == 0)
            return;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    if (m->column_count++ > 0)
        text_str(&m->columns, ", ");
    text_str(&m->columns, c->name);
}

static void misfits_reason(const misfits *m, char *out, size_t outlen)
{
    if (m->count <= 1)
        snprintf(out, outlen, "%s", m->first);
    else
        snprintf(out, outlen, "clickhouse: %zu events of the batch do not fit their columns "
                 "(%.60s); the first: %.100s", m->count, m->columns.data ? m->columns.data : "-",
                 m->first + (strncmp(m->first, "clickhouse: ", 12) == 0 ? 12 : 0));
}

/* One event as a JSONEachRow line (no newline) appended to out. Returns 0;
 * or -1 with err set (and *bad the column, if one is to blame) when the event
 * cannot be a row (not JSON, or a value that does not fit its column); out
 * is then unchanged. */
static int build_row(const ch_state *s, const char *event, size_t length, text *out, char *err,
                     size_t errlen, const column **bad)
{
    *bad = NULL;
    json_error_t jerr;
    json_t *in = json_loadb(event, length, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        snprintf(err, errlen, "clickhouse: stored event is not a JSON object");
        return -1;
    }
    json_t *row = json_object();
    int rc = row ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "clickhouse: out of memory");
    for (size_t i = 0; rc == 0 && i < s->column_count; i++) {
        const column *c = &s->columns[i];
        json_t *converted = NULL;
        if (!c->is_const) {
            json_t *found = NULL;
            size_t j;
            for (j = 0; j < c->path_count && found == NULL; j++)
                found = follow(in, c->paths[j]);
            if (found != NULL) {
                converted = convert(found, c->type);
                if (converted == NULL) {
                    /* The column and path, never the value: reasons carry no event data. */
                    snprintf(err, errlen, "clickhouse: column %s: %s is %s", c->name,
                             c->paths[j - 1], why_not(c->type));
                    *bad = c;
                    rc = -1;
                    break;
                }
            }
        }
        if (converted == NULL && c->fixed != NULL)
            converted = json_incref(c->fixed);
        if (converted == NULL)
            continue; /* absent: the column's default */
        if (json_object_set_new(row, c->name, converted) != 0) {
            snprintf(err, errlen, "clickhouse: out of memory");
            rc = -1;
        }
    }
    if (rc == 0) {
        size_t before = out->length;
        dump_json(out, row);
        if (out->failed) {
            snprintf(err, errlen, "clickhouse: out of memory");
            out->length = before;
            rc = -1;
        }
    }
    json_decref(row);
    json_decref(in);
    return rc;
}

static int ch_encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                     char *err, size_t errlen)
{
    ch_state *s = state;
    text body = {0};
    size_t rows = 0;
    misfits left_out = {0};
    for (size_t i = 0; i < batch->count; i++) {
        char row_err[256];
        const column *bad;
        size_t before = body.length;
        if (build_row(s, batch->events[i], batch->event_lengths[i], &body, row_err,
                      sizeof row_err, &bad) != 0) {
            /* Left out: classify() dead-letters it alone once the rest is in. */
            misfits_add(&left_out, bad, row_err);
            continue;
        }
        if (body.failed)
            break;
        if (body.length > before) {
            text_add(&body, "\n", 1);
            rows++;
        }
    }
    if (body.failed || left_out.columns.failed) {
        free(body.data);
        free(left_out.columns.data);
        snprintf(err, errlen, "clickhouse: out of memory");
        return -1;
    }
    if (rows == 0) {
        free(body.data);
        if (left_out.count > 0)
            misfits_reason(&left_out, err, errlen);
        else
            snprintf(err, errlen, "clickhouse: empty batch");
        free(left_out.columns.data);
        return -1;
    }
    free(left_out.columns.data);
    if (left_out.count > 0)
        s->invalid_pending++;
    out->url = s->endpoint;
    out->body = herald_alloc(body.length + 1);
    out->headers = herald_strdup(s->headers);
    if (out->body == NULL || out->headers == NULL) {
        free(body.data);
        snprintf(err, errlen, "clickhouse: out of memory");
        return -1;
    }
    memcpy(out->body, body.data, body.length + 1);
    out->body_length = body.length;
    free(body.data);
    return 0;
}

/* ---- classify ---- */

typedef enum code_class {
    C_DATA,      /* a row does not fit the table: isolate it, dead-letter it */
    C_CONFIG,    /* credentials, table, columns, settings: the destination is wrong */
    C_PROTOCOL,  /* the request itself is malformed (a herald bug or a proxy) */
    C_TRANSIENT  /* the server is busy, short of memory, restarting: retry */
} code_class;

typedef struct code_info {
    int code;
    const char *name;
    code_class cls;
} code_info;

/* ClickHouse exception codes (src/Common/ErrorCodes.cpp) herald knows. Others
 * go by the HTTP status: 5xx retried (within retry_max_attempts), 4xx
 * dead-lettered (a batch answered 400 is bisected by the core). */
static const code_info CODES[] = {
    {3, "UNEXPECTED_END_OF_FILE", C_TRANSIENT},
    {6, "CANNOT_PARSE_TEXT", C_DATA},
    {16, "NO_SUCH_COLUMN_IN_TABLE", C_CONFIG},
    {19, "SIZE_OF_FIXED_STRING_DOESNT_MATCH", C_DATA},
    {25, "CANNOT_PARSE_ESCAPE_SEQUENCE", C_DATA},
    {26, "CANNOT_PARSE_QUOTED_STRING", C_DATA},
    {27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", C_DATA},
    {32, "ATTEMPT_TO_READ_AFTER_EOF", C_TRANSIENT},
    {33, "CANNOT_READ_ALL_DATA", C_TRANSIENT},
    {38, "CANNOT_PARSE_DATE", C_DATA},
    {41, "CANNOT_PARSE_DATETIME", C_DATA},
    {44, "ILLEGAL_COLUMN", C_CONFIG},
    {47, "UNKNOWN_IDENTIFIER", C_CONFIG},
    {48, "NOT_IMPLEMENTED", C_CONFIG},
    {53, "TYPE_MISMATCH", C_DATA},
    {60, "UNKNOWN_TABLE", C_CONFIG},
    {62, "SYNTAX_ERROR", C_CONFIG},
    {69, "ARGUMENT_OUT_OF_BOUND", C_DATA},
    {70, "CANNOT_CONVERT_TYPE", C_DATA},
    {72, "CANNOT_PARSE_NUMBER", C_DATA},
    {73, "UNKNOWN_FORMAT", C_PROTOCOL},
    {81, "UNKNOWN_DATABASE", C_CONFIG},
    {89, "UNKNOWN_COMPRESSION_METHOD", C_PROTOCOL},
    {95, "CANNOT_READ_FROM_SOCKET", C_TRANSIENT},
    {96, "CANNOT_WRITE_TO_SOCKET", C_TRANSIENT},
    {115, "UNKNOWN_SETTING", C_CONFIG},
    {117, "INCORRECT_DATA", C_DATA},
    {130, "CANNOT_READ_ARRAY_FROM_TEXT", C_DATA},
    {131, "TOO_LARGE_STRING_SIZE", C_DATA},
    {159, "TIMEOUT_EXCEEDED", C_TRANSIENT},
    {160, "TOO_SLOW", C_TRANSIENT},
    {164, "READONLY", C_CONFIG},
    {173, "CANNOT_ALLOCATE_MEMORY", C_TRANSIENT},
    {190, "SIZES_OF_ARRAYS_DOESNT_MATCH", C_DATA},
    {192, "UNKNOWN_USER", C_CONFIG},
    {193, "WRONG_PASSWORD", C_CONFIG},
    {194, "REQUIRED_PASSWORD", C_CONFIG},
    {195, "IP_ADDRESS_NOT_ALLOWED", C_CONFIG},
    {201, "QUOTA_EXPIRED", C_TRANSIENT},
    {202, "TOO_MANY_SIMULTANEOUS_QUERIES", C_TRANSIENT},
    {203, "NO_FREE_CONNECTION", C_TRANSIENT},
    {209, "SOCKET_TIMEOUT", C_TRANSIENT},
    {210, "NETWORK_ERROR", C_TRANSIENT},
    {218, "TABLE_IS_DROPPED", C_CONFIG},
    {225, "NO_ZOOKEEPER", C_TRANSIENT},
    {236, "ABORTED", C_TRANSIENT},
    {241, "MEMORY_LIMIT_EXCEEDED", C_TRANSIENT},
    {242, "TABLE_IS_READ_ONLY", C_TRANSIENT},
    {243, "NOT_ENOUGH_SPACE", C_TRANSIENT},
    {244, "UNEXPECTED_ZOOKEEPER_ERROR", C_TRANSIENT},
    {252, "TOO_MANY_PARTS", C_TRANSIENT},
    {279, "ALL_CONNECTION_TRIES_FAILED", C_TRANSIENT},
    {285, "TOO_FEW_LIVE_REPLICAS", C_TRANSIENT},
    {286, "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE", C_TRANSIENT},
    {291, "DATABASE_ACCESS_DENIED", C_CONFIG},
    {319, "UNKNOWN_STATUS_OF_INSERT", C_TRANSIENT},
    {321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", C_DATA},
    {349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", C_DATA},
    {364, "RECEIVED_ERROR_TOO_MANY_REQUESTS", C_TRANSIENT},
    {376, "CANNOT_PARSE_UUID", C_DATA},
    {381, "HTTP_LENGTH_REQUIRED", C_PROTOCOL},
    {394, "QUERY_WAS_CANCELLED", C_TRANSIENT},
    {407, "DECIMAL_OVERFLOW", C_DATA},
    {425, "SYSTEM_ERROR", C_TRANSIENT},
    {439, "CANNOT_SCHEDULE_TASK", C_TRANSIENT},
    {441, "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", C_DATA},
    {452, "SETTING_CONSTRAINT_VIOLATION", C_CONFIG},
    {467, "CANNOT_PARSE_BOOL", C_DATA},
    {469, "VIOLATED_CONSTRAINT", C_DATA},
    {471, "INVALID_SETTING_VALUE", C_CONFIG},
    {472, "READONLY_SETTING", C_CONFIG},
    {497, "ACCESS_DENIED", C_CONFIG},
    {516, "AUTHENTICATION_FAILED", C_CONFIG},
    {999, "KEEPER_EXCEPTION", C_TRANSIENT},
};

static const code_info *code_find(long code)
{
    for (size_t i = 0; i < sizeof CODES / sizeof *CODES; i++)
        if (CODES[i].code == code)
            return &CODES[i];
    return NULL;
}

/* The exception code: X-ClickHouse-Exception-Code (current servers), else
 * "Code: N" at the start of the body (18.16 and current). -1 when none. */
static long exception_code(const herald_backend_response *response)
{
    int has_header = response->struct_size >= offsetof(herald_backend_response, header) +
                                                  sizeof response->header &&
                     response->header != NULL;
    const char *header = has_header ? response->header(response, "X-ClickHouse-Exception-Code")
                                    : NULL;
    if (header != NULL) {
        char *end = NULL;
        long code = strtol(header, &end, 10);
        if (end != header && code >= 0 && code < 100000)
            return code;
    }
    const char *body = response->body;
    size_t n = response->body_length;
    if (body == NULL)
        return -1;
    size_t i = 0;
    while (i < n && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (n - i < 7 || strncmp(body + i, "Code: ", 6) != 0)
        return -1;
    i += 6;
    long code = 0;
    size_t start = i;
    while (i < n && i - start < 6 && body[i] >= '0' && body[i] <= '9')
        code = code * 10 + (body[i++] - '0');
    return i > start ? code : -1;
}

/* The exception's message: after "DB::Exception: ", up to ", e.what()" (18.16),
 * " (NAME)" / " (version" (current servers) or the end, printable ASCII, line
 * breaks as spaces. */
static void exception_message(const herald_backend_response *response, char *out, size_t outlen)
{
    out[0] = '\0';
    if (response->body == NULL || outlen == 0)
        return;
    const char *body = response->body;
    size_t n = response->body_length;
    const char *mark = "DB::Exception: ";
    size_t mlen = strlen(mark);
    size_t start = 0;
    for (size_t i = 0; i + mlen <= n; i++) {
        if (memcmp(body + i, mark, mlen) == 0) {
            start = i + mlen;
            break;
        }
    }
    if (start == 0)
        return;
    size_t o = 0;
    for (size_t i = start; i < n && o + 1 < outlen; i++) {
        if (n - i >= 10 && memcmp(body + i, ", e.what()", 10) == 0)
            break;
        if (n - i >= 10 && memcmp(body + i, " (version ", 10) == 0)
            break;
        char ch = body[i];
        if (ch == '\n' || ch == '\r' || ch == '\t')
            ch = ' ';
        if (o > 0 && ch == ' ' && out[o - 1] == ' ')
            continue;
        out[o++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == ','))
        o--;
    out[o] = '\0';
    /* Current servers end with " (ERROR_NAME)": the reason names it already. */
    char *open = strrchr(out, '(');
    if (open != NULL && open > out && open[-1] == ' ' && out[o - 1] == ')' &&
        strspn(open + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") == (size_t)(out + o - 1 - open - 1))
        open[-1] = '\0';
}

/* The last occurrence of needle in the n bytes of hay, or NULL. */
static const char *last_of(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = n >= m ? n - m + 1 : 0; i-- > 0;)
        if (memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

/* A data error's message without the row excerpt that follows "before:" (it
 * is event data): the first clause of the message, then the "(while read[ing]
 * the value of key K)" and "(at row N)" that ClickHouse appends at the end of
 * the body (after the excerpt, which may be long). */
static void data_message(const herald_backend_response *response, const char *message, char *out,
                         size_t outlen)
{
    size_t first = strcspn(message, ":");
    snprintf(out, outlen, "%.*s", (int)(first < 120 ? first : 120), message);
    if (response->body == NULL)
        return;
    static const char *const keep[] = {"(while read", "(at row "};
    for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
        const char *p = last_of(response->body, response->body_length, keep[k]);
        if (p == NULL)
            continue;
        size_t rest = response->body_length - (size_t)(p - response->body);
        size_t len = 0;
        while (len < rest && len < 120 && p[len] != ')' && p[len] >= 0x20 && p[len] < 0x7f)
            len++;
        size_t used = strlen(out);
        if (len < rest && p[len] == ')' && used + len + 3 < outlen)
            snprintf(out + used, outlen - used, " %.*s)", (int)len, p);
    }
}

/* Events of the batch that encode() left out (they do not fit their columns):
 * set their kinds to REJECT. Returns how many, with the reason. */
static size_t mark_left_out(const ch_state *s, const herald_backend_batch *batch, int *kinds,
                            char *why, size_t whylen)
{
    misfits m = {0};
    text scratch = {0};
    for (size_t i = 0; i < batch->count; i++) {
        char row_err[256];
        const column *bad;
        scratch.length = 0;
        if (build_row(s, batch->events[i], batch->event_lengths[i], &scratch, row_err,
                      sizeof row_err, &bad) != 0) {
            if (kinds)
                kinds[i] = HERALD_VERDICT_REJECT;
            misfits_add(&m, bad, row_err);
        }
    }
    free(scratch.data);
    misfits_reason(&m, why, whylen);
    free(m.columns.data);
    return m.count;
}

static void ch_classify(void *state, const herald_backend_response *response,
                        const herald_backend_batch *batch, herald_verdict *out)
{
    ch_state *s = state;
    herald_verdict_from_status(response, out);
    long status = response->status;
    /* An exception after the 200 headers went out (a server that streams its
     * answer) still says "Code: N" in the body, or in the header on current
     * servers: such an insert failed. */
    long code = status >= 200 && status < 300 ? exception_code(response) : -1;
    if (status >= 200 && status < 300 && code < 0) {
        if (s->invalid_pending > 0 && batch->count > 1 && out->event_kinds != NULL) {
            /* Some events were left out of the body: the rest is in; those
             * are dead-lettered with the reason (the others take OK). */
            char why[256] = "";
            int *kinds = out->event_kinds;
            size_t bad = mark_left_out(s, batch, kinds, why, sizeof why);
            if (bad > 0) {
                s->invalid_pending--;
                for (size_t i = 0; i < batch->count; i++)
                    if (kinds[i] < 0)
                        kinds[i] = HERALD_VERDICT_OK;
                out->kind = HERALD_VERDICT_REJECT;
                snprintf(out->reason, sizeof out->reason, "%s", why);
            }
        }
        return;
    }
    if (status == 0)
        return; /* no response: retry */
    if (code >= 0)
        out->kind = HERALD_VERDICT_RETRY; /* 200 with an exception: by its code below */
    if (s->invalid_pending > 0 && batch->count > 1) {
        /* The batch goes again (and is encoded again): recount it then. */
        char why[256];
        if (mark_left_out(s, batch, NULL, why, sizeof why) > 0)
            s->invalid_pending--;
    }
    if (code < 0)
        code = exception_code(response);
    if (code < 0)
        return; /* not ClickHouse's answer (a proxy?): by the status */
    const code_info *info = code_find(code);
    char message[200];
    exception_message(response, message, sizeof message);
    code_class cls;
    if (info == NULL) {
        /* Unknown code: by the status, with the code for the log. */
        char safe[200];
        data_message(response, message, safe, sizeof safe);
        snprintf(out->reason, sizeof out->reason, "HTTP %ld: ClickHouse code %ld%s%s", status,
                 code, safe[0] ? ": " : "", safe);
        return;
    }
    cls = info->cls;
    if (code == 117 && strstr(message, "Unknown field") != NULL)
        cls = C_CONFIG; /* a mapped column the table does not have */
    switch (cls) {
    case C_DATA: {
        char safe[200];
        data_message(response, message, safe, sizeof safe);
        /* The whole INSERT was refused for (at least) one row. Split a batch
         * until the bad event is alone; dead-letter it then. */
        out->kind = batch->count > 1 ? HERALD_VERDICT_SPLIT : HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason, "ClickHouse code %ld %s%s%s", code, info->name,
                 safe[0] ? ": " : "", safe);
        break;
    }
    case C_CONFIG:
        out->kind = s->config_errors == POLICY_RETRY ? HERALD_VERDICT_RETRY : HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "configuration: ClickHouse code %ld %s: %.140s (fix the destination, then replay "
                 "the dead letters)",
                 code, info->name, message);
        break;
    case C_PROTOCOL:
        out->kind = HERALD_VERDICT_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "ClickHouse code %ld %s: %.120s (the request was malformed on its way: a proxy?)",
                 code, info->name, message);
        break;
    case C_TRANSIENT:
        out->kind = HERALD_VERDICT_RETRY;
        snprintf(out->reason, sizeof out->reason, "ClickHouse code %ld %s: %.160s", code,
                 info->name, message);
        break;
    }
}

static const herald_backend_v1 clickhouse_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "clickhouse",
    .create = ch_create,
    .destroy = ch_destroy,
    .limits = ch_limits,
    .encode = ch_encode,
    .classify = ch_classify,
};

#ifdef HERALD_PLUGIN_MODULE
/* Built as a loadable plugin (herald-backend-clickhouse.so): the same source,
 * the public entry point. */
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &clickhouse_backend;
}
#else
const herald_backend_v1 *herald_backend_clickhouse(void);
const herald_backend_v1 *herald_backend_clickhouse(void)
{
    return &clickhouse_backend;
}
#endif
