/* Unit tests: the public API (include/herald/herald.h) through herald_open
 * with deliver = 0 on a temp file. Stored rows are checked by reading the
 * SQLite file directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "herald/herald.h"

/* ---- fixture ---- */

/* Injected random source: each call fills the buffer with one byte value,
 * the next on every call, and remembers the UUID that 16 bytes make. */
typedef struct rng_ctx {
    unsigned next;
    int calls;
    int nuuids;
    char uuids[256][37];
} rng_ctx;

static void counter_random(void *buf, size_t len, void *ctx)
{
    rng_ctx *r = ctx;
    unsigned char v = (unsigned char)(r->next++ & 0xffu);
    memset(buf, v, len);
    r->calls++;
    if (len == 16 && r->nuuids < 256) {
        static const char hex[] = "0123456789abcdef";
        unsigned char b[16];
        memset(b, v, sizeof b);
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        char *out = r->uuids[r->nuuids++];
        size_t o = 0;
        for (size_t i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                out[o++] = '-';
            out[o++] = hex[b[i] >> 4];
            out[o++] = hex[b[i] & 15];
        }
        out[o] = '\0';
    }
}

static int rng_made(const rng_ctx *r, const char *uuid)
{
    for (int i = 0; uuid && i < r->nuuids; i++)
        if (strcmp(r->uuids[i], uuid) == 0)
            return 1;
    return 0;
}

static int64_t fixed_clock(void *ctx)
{
    return *(const int64_t *)ctx;
}

typedef struct fx {
    char dir[512];
    char path[600];
    herald_options opts;
    herald_destination dests[2];
    herald_client *c;
    int64_t now;
    rng_ctx rng;
} fx;

/* Use the fixture's clock (f->now) and random source. */
static void inject_clock_and_random(fx *f, int64_t now)
{
    f->now = now;
    f->opts.clock = fixed_clock;
    f->opts.clock_ctx = &f->now;
    f->opts.random = counter_random;
    f->opts.random_ctx = &f->rng;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The running test's fixture: the client it has open (f->c), if any, has
 * its staged events committed to the queue file before the file is read. */
static struct fx *open_fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/herald-api-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/events.db", f->dir);
    herald_options_init(&f->opts);
    f->opts.db_path = f->path;
    f->opts.deliver = 0;
    f->dests[0].name = "d1";
    f->dests[0].backend = "rest";
    f->dests[0].config_json = "{\"url\":\"http://127.0.0.1:9/v1/batch\"}";
    f->dests[1].name = "d2";
    f->dests[1].backend = "rest";
    f->dests[1].config_json = "{\"url\":\"http://127.0.0.1:9/v1/other\",\"mode\":\"single\"}";
    *state = f;
    open_fx = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    open_fx = NULL;
    herald_close(f->c, 0);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static void open_client(fx *f)
{
    herald_close(f->c, 0);
    f->c = NULL;
    herald_status st = herald_open(&f->c, &f->opts);
    if (st != HERALD_OK) {
        char why[512];
        herald_last_error(NULL, why, sizeof why);
        fail_msg("herald_open: %s: %s", herald_strerror(st), why);
    }
    assert_non_null(f->c);
}

static void close_client(fx *f)
{
    herald_close(f->c, 0);
    f->c = NULL;
}

/* ---- direct SQLite access ---- */


static void settle(void)
{
    if (open_fx != NULL && open_fx->c != NULL)
        assert_int_equal(herald_sync(open_fx->c, 10000), HERALD_OK);
}

static int64_t db_int(const char *path, const char *sql)
{
    settle();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        fail_msg("cannot open %s", path);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* All event bodies, oldest first, as a JSON array of the parsed events. */
static json_t *db_events(const char *path)
{
    settle();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        fail_msg("cannot open %s", path);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    json_t *list = json_array();
    if (sqlite3_prepare_v2(db, "SELECT body FROM events ORDER BY id", -1, &s, NULL) == SQLITE_OK) {
        while (sqlite3_step(s) == SQLITE_ROW) {
            json_t *e = json_loadb(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), 0,
                                   NULL);
            json_array_append_new(list, e ? e : json_null());
        }
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return list;
}

static char *db_text(const char *path, const char *sql)
{
    settle();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_type(s, 0) != SQLITE_NULL)
        out = strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static int64_t events_count(fx *f)
{
    return db_int(f->path, "SELECT count(*) FROM events");
}

static herald_stats stats_of(fx *f)
{
    herald_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    assert_int_equal(herald_stats_get(f->c, &s), HERALD_OK);
    return s;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* ---- shape checks ---- */

static int is_uuid_v4(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

/* A message id: a UUIDv7. */
static int is_uuid_v7(const char *s)
{
    if (s == NULL || strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' ||
        s[23] != '-' || s[14] != '7' || strchr("89ab", s[19]) == NULL)
        return 0;
    for (int i = 0; i < 36; i++)
        if (s[i] != '-' && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* A UUIDv7 whose 48-bit time is `ms`. */
static int is_uuid_v7_at(const char *s, int64_t ms)
{
    if (!is_uuid_v7(s))
        return 0;
    char hex[13];
    memcpy(hex, s, 8);
    memcpy(hex + 8, s + 9, 4);
    hex[12] = '\0';
    return strtoll(hex, NULL, 16) == ms;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" within a minute of now. */
static void assert_timestamp_now(const char *s)
{
    assert_non_null(s);
    const char *pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_int_equal(strlen(s), strlen(pattern));
    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd') {
            if (s[i] < '0' || s[i] > '9')
                fail_msg("timestamp %s: position %zu is not a digit", s, i);
        } else if (s[i] != pattern[i]) {
            fail_msg("timestamp %s does not match %s", s, pattern);
        }
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    assert_in_range((long long)when, (long long)now - 60, (long long)now + 60);
}

static void assert_segment_shape(json_t *e, const char *type, const char *anonymous_id)
{
    assert_true(json_is_object(e));
    assert_string_equal(str(e, "type"), type);
    if (!is_uuid_v7(str(e, "messageId")))
        fail_msg("messageId %s is not a v7 UUID", str(e, "messageId"));
    assert_timestamp_now(str(e, "timestamp"));
    assert_string_equal(str(e, "anonymousId"), anonymous_id);
    json_t *library = json_object_get(json_object_get(e, "context"), "library");
    assert_string_equal(str(library, "name"), "herald");
    assert_string_equal(str(library, "version"), HERALD_VERSION_STRING);
    assert_string_equal(str(library, "version"), herald_version());
}

/* ---- basics ---- */

static void test_strerror_and_version(void **state)
{
    (void)state;
    assert_string_equal(herald_version(), HERALD_VERSION_STRING);
    assert_string_equal(herald_strerror(HERALD_OK), "ok");
    /* Every code from 0 down has its own text, up to the first unknown one;
     * the set only grows, and reached at least HERALD_E_NO_CONSENT (-13). */
    const char *seen[64];
    int known = 0;
    for (int code = 0; code > -64; code--) {
        const char *s = herald_strerror((herald_status)code);
        assert_non_null(s);
        if (strcmp(s, "unknown status") == 0)
            break;
        assert_true(strlen(s) > 0);
        for (int j = 0; j < known; j++)
            assert_string_not_equal(s, seen[j]);
        seen[known++] = s;
    }
    assert_true(known >= 14);
    assert_string_equal(herald_strerror(HERALD_E_INVALID_ARGUMENT), "invalid argument");
    assert_string_equal(herald_strerror(HERALD_E_CONFIG), "invalid configuration");
    assert_string_not_equal(herald_strerror(HERALD_E_NO_CONSENT), "unknown status");
    assert_string_equal(herald_strerror((herald_status)-1000), "unknown status");
    assert_string_equal(herald_strerror((herald_status)5), "unknown status");
}

static void test_null_client(void **state)
{
    (void)state;
    herald_stats s = {.struct_size = sizeof s};
    char *out = (char *)(uintptr_t)0x1;
    uint64_t n = 0;
    assert_int_equal(herald_track(NULL, "e", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_page(NULL, "p", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_screen(NULL, "s", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_identify(NULL, "u", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_group(NULL, "g", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_alias(NULL, "p", "u"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_send(NULL, "{\"type\":\"page\"}"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_flush(NULL, 0), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_stats_get(NULL, &s), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_stats_json(NULL, &out), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_dead_letters_json(NULL, 0, &out), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_dead_letters_replay(NULL, NULL, &n), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_close(NULL, 0), HERALD_OK);
    herald_free(NULL);
}

/* ---- validation: each bad input class, nothing stored ---- */

typedef struct refusal_check {
    fx *f;
    uint64_t refused;
} refusal_check;

static void expect_refused(refusal_check *r, herald_status got, herald_status expected,
                           const char *what)
{
    if (got != expected)
        fail_msg("%s: got %s (%d), expected %s (%d)", what, herald_strerror(got), got,
                 herald_strerror(expected), expected);
    r->refused++;
    /* Nothing stored, the refusal counted, and explained. */
    assert_int_equal(events_count(r->f), 0);
    assert_int_equal(db_int(r->f->path, "SELECT count(*) FROM outbox"), 0);
    herald_stats s = stats_of(r->f);
    assert_int_equal(s.accepted, 0);
    assert_int_equal(s.queued, 0);
    if (s.rejected != r->refused)
        fail_msg("%s: rejected counter %llu, expected %llu", what, (unsigned long long)s.rejected,
                 (unsigned long long)r->refused);
    char buf[512] = "";
    size_t n = herald_last_error(r->f->c, buf, sizeof buf);
    if (n == 0 || strlen(buf) != n)
        fail_msg("%s: last error is empty", what);
}

#define REFUSED(call, code) expect_refused(&r, (call), (code), #call)

static void test_validation_refusals(void **state)
{
    fx *f = *state;
    f->opts.max_event_bytes = 4096;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    open_client(f);
    herald_client *c = f->c;
    refusal_check r = {f, 0};

    /* NULL / empty names and ids. */
    REFUSED(herald_track(c, NULL, NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_track(c, "", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_identify(c, NULL, NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_identify(c, "", "{}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_group(c, NULL, NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_group(c, "", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, NULL, "u"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, "", "u"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, "p", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, "p", ""), HERALD_E_INVALID_ARGUMENT);

    /* Invalid JSON. */
    REFUSED(herald_track(c, "e", "{"), HERALD_E_INVALID_JSON);
    REFUSED(herald_track(c, "e", "{\"a\":}"), HERALD_E_INVALID_JSON);
    REFUSED(herald_track(c, "e", ""), HERALD_E_INVALID_JSON);
    REFUSED(herald_track(c, "e", "{\"a\":1,\"a\":2}"), HERALD_E_INVALID_JSON);
    REFUSED(herald_track(c, "e", "{\"a\":\"\xff\"}"), HERALD_E_INVALID_JSON);
    REFUSED(herald_page(c, "p", "{'a':1}"), HERALD_E_INVALID_JSON);
    REFUSED(herald_identify(c, "u", "{"), HERALD_E_INVALID_JSON);
    REFUSED(herald_group(c, "g", "nope"), HERALD_E_INVALID_JSON);
    REFUSED(herald_send(c, "{"), HERALD_E_INVALID_JSON);

    /* JSON that is not an object (arrays; scalars: see the test below). */
    REFUSED(herald_track(c, "e", "[1,2]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_page(c, NULL, "[]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_screen(c, "s", "[{}]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_identify(c, "u", "[]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_group(c, "g", "[]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "[{\"type\":\"page\"}]"), HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":[1]}"),
            HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":\"str\"}"),
            HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":5}"),
            HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":\"t\"}"),
            HERALD_E_NOT_OBJECT);
    REFUSED(herald_send(c, "{\"type\":\"page\",\"context\":[]}"), HERALD_E_NOT_OBJECT);

    /* Invalid UTF-8 in names and ids. */
    REFUSED(herald_track(c, "\xff\xfe", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_track(c, "caf\xc3", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_track(c, "\xc0\xaf", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_page(c, "\xed\xa0\x80", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_screen(c, "\x80", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_identify(c, "\xff", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_group(c, "g\xfe", NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, "\xff", "u"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_alias(c, "p", "\xff"), HERALD_E_INVALID_ARGUMENT);

    /* Oversize: over max_event_bytes (4096). */
    char props[5100];
    char pad[5000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(props, sizeof props, "{\"pad\":\"%s\"}", pad);
    REFUSED(herald_track(c, "e", props), HERALD_E_TOO_LARGE);
    REFUSED(herald_identify(c, "u", props), HERALD_E_TOO_LARGE);
    REFUSED(herald_screen(c, "Main", props), HERALD_E_TOO_LARGE);

    /* herald_send: message, type and required fields. */
    REFUSED(herald_send(c, NULL), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"event\":\"e\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"click\",\"event\":\"e\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":7}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"alias\",\"userId\":\"u\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"alias\",\"previousId\":\"p\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"group\"}"), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"timestamp\":\"yesterday\"}"),
            HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\","
                           "\"timestamp\":\"2024-02-30T25:00:00Z\"}"),
            HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"timestamp\":1700000000}"),
            HERALD_E_INVALID_ARGUMENT);
    char message[5200];
    char id[128];
    memset(id, 'i', 101);
    id[101] = '\0';
    snprintf(message, sizeof message, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"%s\"}",
             id);
    REFUSED(herald_send(c, message), HERALD_E_INVALID_ARGUMENT);
    REFUSED(herald_send(c, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"\"}"),
            HERALD_E_INVALID_ARGUMENT);
    snprintf(message, sizeof message, "{\"type\":\"track\",\"event\":\"e\",\"p\":\"%s\"}", pad);
    REFUSED(herald_send(c, message), HERALD_E_TOO_LARGE);

    /* The refused identify calls did not change the remembered user. */
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key = 'user_id'"), 0);

    /* A valid call still goes through: the first event stored. */
    assert_int_equal(herald_track(c, "ok", NULL), HERALD_OK);
    assert_int_equal(events_count(f), 1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(s.rejected, r.refused);
}

/* Regression (was a bug in herald_event_parse_object): JSON scalars given
 * as properties, traits or message are HERALD_E_NOT_OBJECT, not
 * HERALD_E_INVALID_JSON, and nothing is stored. */
static void test_scalar_properties_are_not_object(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_track(f->c, "e", "42"), HERALD_E_NOT_OBJECT);
    assert_int_equal(herald_track(f->c, "e", "\"str\""), HERALD_E_NOT_OBJECT);
    assert_int_equal(herald_identify(f->c, "u", "true"), HERALD_E_NOT_OBJECT);
    assert_int_equal(herald_send(f->c, "\"{}\""), HERALD_E_NOT_OBJECT);
    assert_int_equal(events_count(f), 0);
}

static void test_last_error_text(void **state)
{
    fx *f = *state;
    open_client(f);
    char buf[512] = "x";
    /* Nothing failed yet. */
    assert_int_equal(herald_last_error(f->c, buf, sizeof buf), 0);
    assert_string_equal(buf, "");

    assert_int_equal(herald_track(f->c, "e", "{\"a\":"), HERALD_E_INVALID_JSON);
    size_t n = herald_last_error(f->c, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(strlen(buf), n);
    assert_non_null(strstr(buf, "properties"));
    assert_int_equal(herald_last_error(f->c, NULL, 0), n);
    /* Truncated like snprintf. */
    char small[5];
    assert_int_equal(herald_last_error(f->c, small, sizeof small), n);
    assert_int_equal(strlen(small), 4);
    assert_memory_equal(small, buf, 4);

    assert_int_equal(herald_send(f->c, "{\"type\":\"track\"}"), HERALD_E_INVALID_ARGUMENT);
    herald_last_error(f->c, buf, sizeof buf);
    assert_non_null(strstr(buf, "event"));

    assert_int_equal(herald_track(f->c, NULL, NULL), HERALD_E_INVALID_ARGUMENT);
    herald_last_error(f->c, buf, sizeof buf);
    assert_non_null(strstr(buf, "event"));
}

/* ---- valid calls: Segment shape in the real file ---- */

static void test_valid_calls_stored_in_segment_shape(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 2;
    open_client(f);
    herald_client *c = f->c;
    assert_int_equal(herald_track(c, "Signed Up", "{\"plan\":\"pro\",\"seats\":3}"), HERALD_OK);
    assert_int_equal(herald_page(c, NULL, NULL), HERALD_OK);
    assert_int_equal(herald_page(c, "Pricing", "{\"path\":\"/pricing\"}"), HERALD_OK);
    assert_int_equal(herald_screen(c, "Main", NULL), HERALD_OK);
    assert_int_equal(herald_group(c, "g-1", "{\"name\":\"Acme\"}"), HERALD_OK);
    assert_int_equal(herald_identify(c, "user-1", "{\"email\":\"a@example.com\"}"), HERALD_OK);
    assert_int_equal(herald_track(c, "After Identify", NULL), HERALD_OK);
    assert_int_equal(herald_alias(c, "user-1", "user-2"), HERALD_OK);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"Imported\","
                                    "\"messageId\":\"import-1\","
                                    "\"timestamp\":\"2020-01-02T03:04:05.678Z\","
                                    "\"anonymousId\":\"anon-x\",\"userId\":\"other\"}"),
                     HERALD_OK);
    assert_int_equal(herald_track(c, "caf\xc3\xa9 \xf0\x9f\x98\x80", NULL), HERALD_OK);
    /* A given messageId of exactly 100 bytes is kept. */
    char id100[101];
    memset(id100, 'i', 100);
    id100[100] = '\0';
    char message[256];
    snprintf(message, sizeof message, "{\"type\":\"screen\",\"messageId\":\"%s\"}", id100);
    assert_int_equal(herald_send(c, message), HERALD_OK);

    char *anon = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(anon);
    assert_true(is_uuid_v4(anon));

    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 11);
    json_t *e;

    e = json_array_get(events, 0);
    assert_segment_shape(e, "track", anon);
    assert_string_equal(str(e, "event"), "Signed Up");
    assert_string_equal(str(json_object_get(e, "properties"), "plan"), "pro");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "properties"), "seats")),
                     3);
    assert_null(json_object_get(e, "userId"));

    e = json_array_get(events, 1);
    assert_segment_shape(e, "page", anon);
    assert_null(json_object_get(e, "name"));
    assert_true(json_is_object(json_object_get(e, "properties")));

    e = json_array_get(events, 2);
    assert_segment_shape(e, "page", anon);
    assert_string_equal(str(e, "name"), "Pricing");

    e = json_array_get(events, 3);
    assert_segment_shape(e, "screen", anon);
    assert_string_equal(str(e, "name"), "Main");

    e = json_array_get(events, 4);
    assert_segment_shape(e, "group", anon);
    assert_string_equal(str(e, "groupId"), "g-1");
    assert_string_equal(str(json_object_get(e, "traits"), "name"), "Acme");

    e = json_array_get(events, 5);
    assert_segment_shape(e, "identify", anon);
    assert_string_equal(str(e, "userId"), "user-1");
    /* Redaction is on by default: the email never reaches the file. */
    assert_string_equal(str(json_object_get(e, "traits"), "email"), "[email]");

    /* After identify, events carry the user. */
    e = json_array_get(events, 6);
    assert_segment_shape(e, "track", anon);
    assert_string_equal(str(e, "userId"), "user-1");

    e = json_array_get(events, 7);
    assert_segment_shape(e, "alias", anon);
    assert_string_equal(str(e, "previousId"), "user-1");
    assert_string_equal(str(e, "userId"), "user-2");

    /* Given fields are kept as given. */
    e = json_array_get(events, 8);
    assert_string_equal(str(e, "messageId"), "import-1");
    assert_string_equal(str(e, "timestamp"), "2020-01-02T03:04:05.678Z");
    assert_string_equal(str(e, "anonymousId"), "anon-x");
    assert_string_equal(str(e, "userId"), "other");

    e = json_array_get(events, 9);
    assert_string_equal(str(e, "event"), "caf\xc3\xa9 \xf0\x9f\x98\x80");

    e = json_array_get(events, 10);
    assert_string_equal(str(e, "type"), "screen");
    assert_string_equal(str(e, "messageId"), id100);

    /* Every message id is distinct. */
    for (size_t i = 0; i < json_array_size(events); i++)
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(str(json_array_get(events, i), "messageId"),
                                    str(json_array_get(events, j), "messageId"));
    json_decref(events);

    /* Stored type column and one outbox row per destination. */
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE type = 'track'"), 4);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'd1'"), 11);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'd2'"), 11);
    free(anon);
}

/* ---- identity across reopen ---- */

static void test_anonymous_id_persists(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_track(f->c, "one", NULL), HERALD_OK);
    close_client(f);
    open_client(f);
    assert_int_equal(herald_track(f->c, "two", NULL), HERALD_OK);
    close_client(f);

    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 2);
    const char *a = str(json_array_get(events, 0), "anonymousId");
    const char *b = str(json_array_get(events, 1), "anonymousId");
    assert_true(is_uuid_v4(a));
    assert_string_equal(a, b);
    char *stored = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(stored);
    assert_string_equal(stored, a);
    free(stored);

    /* Another file, another anonymous id. */
    char other[700];
    snprintf(other, sizeof other, "%s/other.db", f->dir);
    f->opts.db_path = other;
    open_client(f);
    assert_int_equal(herald_track(f->c, "three", NULL), HERALD_OK);
    close_client(f);
    json_t *other_events = db_events(other);
    assert_string_not_equal(str(json_array_get(other_events, 0), "anonymousId"), a);
    json_decref(other_events);
    json_decref(events);
}

static void test_identify_persists_user_id(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_identify(f->c, "user-42", NULL), HERALD_OK);
    close_client(f);
    char *stored = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    assert_non_null(stored);
    assert_string_equal(stored, "user-42");
    free(stored);

    open_client(f);
    assert_int_equal(herald_track(f->c, "after reopen", NULL), HERALD_OK);
    assert_int_equal(herald_page(f->c, "p", NULL), HERALD_OK);
    /* herald_send with type identify also sets the user. */
    assert_int_equal(herald_send(f->c, "{\"type\":\"identify\",\"userId\":\"user-43\"}"), HERALD_OK);
    close_client(f);
    open_client(f);
    assert_int_equal(herald_screen(f->c, "s", NULL), HERALD_OK);

    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 5);
    assert_string_equal(str(json_array_get(events, 0), "userId"), "user-42");
    assert_string_equal(str(json_array_get(events, 1), "userId"), "user-42");
    assert_string_equal(str(json_array_get(events, 2), "userId"), "user-42");
    assert_string_equal(str(json_array_get(events, 3), "userId"), "user-43");
    assert_string_equal(str(json_array_get(events, 4), "userId"), "user-43");
    json_decref(events);
}

/* Every byte of a file, as a string (NULs kept out of the way). */
static char *file_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return strdup("");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    for (size_t i = 0; i < got; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    return buf;
}

typedef struct warnings {
    int identity;
    int leaked;
    int stored;
} warnings;

static void count_warnings(herald_log_level level, const char *message, void *userdata)
{
    warnings *w = userdata;
    if (level == HERALD_LOG_WARN && strstr(message, "identity field") != NULL)
        w->identity++;
    if (level == HERALD_LOG_WARN && strstr(message, "cannot redact the stored identity") != NULL)
        w->stored++;
    if (strstr(message, "jane") != NULL)
        w->leaked++;
}

/* PII.md §2.1: an email as the user id gets a marker without a hash key —
 * in the events and in the identity kept on disk — and the client says so
 * once; with a key it is pseudonymised, the same in both places. */
static void test_identity_pii_redacted_on_disk(void **state)
{
    fx *f = *state;
    warnings w = {0, 0, 0};
    f->opts.log = count_warnings;
    f->opts.log_userdata = &w;
    open_client(f);
    assert_int_equal(herald_identify(f->c, "jane@example.com",
                                     "{\"plan\":\"pro\",\"email\":\"jane@example.com\"}"),
                     HERALD_OK);
    assert_int_equal(herald_identify(f->c, "jane@example.com", NULL), HERALD_OK);
    assert_int_equal(herald_group(f->c, "jane@example.com", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "after", NULL), HERALD_OK);
    assert_int_equal(w.identity, 1);
    assert_int_equal(w.leaked, 0);
    char *uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    char *gid = db_text(f->path, "SELECT value FROM meta WHERE key = 'group_id'");
    char *traits = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_traits'");
    assert_string_equal(uid, "[email]");
    assert_string_equal(gid, "[email]");
    assert_string_equal(traits, "{\"plan\":\"pro\",\"email\":\"[email]\"}");
    free(uid);
    free(gid);
    free(traits);
    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 4);
    assert_string_equal(str(json_array_get(events, 3), "userId"), "[email]");
    json_decref(events);
    close_client(f);
    /* Nothing of it anywhere in the file (the staging file is gone). */
    char *bytes = file_text(f->path);
    assert_null(strstr(bytes, "jane@"));
    free(bytes);

    /* With a key: pseudonymised, the same in the events and on disk, and no
     * warning: every user keeps an id of their own. */
    remove_tree(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    w.identity = 0;
    f->opts.redact_json = "{\"hash_key\": \"000102030405060708090a0b0c0d0e0f"
                          "101112131415161718191a1b1c1d1e1f\"}";
    open_client(f);
    assert_int_equal(herald_identify(f->c, "jane@example.com", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "after", NULL), HERALD_OK);
    assert_int_equal(w.identity, 0);
    uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    assert_non_null(uid);
    assert_int_equal(strncmp(uid, "[email:", 7), 0);
    events = db_events(f->path);
    assert_string_equal(str(json_array_get(events, 0), "userId"), uid);
    assert_string_equal(str(json_array_get(events, 1), "userId"), uid);
    json_decref(events);
    free(uid);
    close_client(f);
}

/* Two users whose emails both redact to "[email]" are still two users:
 * the second does not inherit the first one's traits. */
static void test_identity_traits_not_shared_by_redacted_ids(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_identify(f->c, "ann@example.com", "{\"a\":1}"), HERALD_OK);
    assert_int_equal(herald_identify(f->c, "ann@example.com", "{\"b\":2}"), HERALD_OK);
    char *traits = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_traits'");
    assert_string_equal(traits, "{\"a\":1,\"b\":2}");
    free(traits);
    assert_int_equal(herald_identify(f->c, "bob@example.com", "{\"c\":3}"), HERALD_OK);
    traits = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_traits'");
    assert_string_equal(traits, "{\"c\":3}");
    free(traits);
    close_client(f);
}

/* An identity stored raw (a file written with redaction off) is redacted at
 * the next open that redacts: in memory and in the file. */
static void test_stored_identity_redacted_at_open(void **state)
{
    fx *f = *state;
    f->opts.redact_json = "{\"enabled\": false}";
    open_client(f);
    assert_int_equal(herald_identify(f->c, "jane@example.com", "{\"email\":\"jane@example.com\"}"),
                     HERALD_OK);
    close_client(f);
    char *uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    assert_string_equal(uid, "jane@example.com");
    free(uid);

    f->opts.redact_json = NULL;
    open_client(f);
    assert_int_equal(herald_track(f->c, "after", NULL), HERALD_OK);
    close_client(f);
    uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    char *traits = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_traits'");
    assert_string_equal(uid, "[email]");
    assert_string_equal(traits, "{\"email\":\"[email]\"}");
    free(uid);
    free(traits);
    json_t *events = db_events(f->path);
    assert_string_equal(str(json_array_get(events, 1), "userId"), "[email]");
    json_decref(events);
}

/* The stored identity cannot be rewritten at open (here a trigger in the
 * file refuses the write): the open goes on with a warning, later events
 * carry the redacted id, and the next open rewrites it. */
static void test_stored_identity_rewrite_fails_at_open(void **state)
{
    fx *f = *state;
    f->opts.redact_json = "{\"enabled\": false}";
    open_client(f);
    assert_int_equal(herald_identify(f->c, "jane@example.com", NULL), HERALD_OK);
    close_client(f);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER refuse BEFORE UPDATE ON meta "
                                  "WHEN OLD.key = 'user_id' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    warnings w = {0, 0, 0};
    f->opts.log = count_warnings;
    f->opts.log_userdata = &w;
    f->opts.redact_json = NULL;
    open_client(f);
    assert_int_equal(w.stored, 1);
    assert_int_equal(sqlite3_exec(db, "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char *uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    assert_string_equal(uid, "jane@example.com"); /* not rewritten */
    free(uid);
    assert_int_equal(herald_track(f->c, "after", NULL), HERALD_OK);
    json_t *events = db_events(f->path);
    assert_string_equal(str(json_array_get(events, 1), "userId"), "[email]");
    json_decref(events);
    close_client(f);

    open_client(f);
    close_client(f);
    uid = db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'");
    assert_string_equal(uid, "[email]");
    free(uid);
    assert_int_equal(w.stored, 1);
}

/* ---- injected clock and random, sessions ---- */

static json_t *ctx_of(json_t *e, const char *key)
{
    return json_object_get(json_object_get(e, "context"), key);
}

static void test_injected_clock_and_random(void **state)
{
    fx *f = *state;
    inject_clock_and_random(f, 1700000000123LL);
    open_client(f);
    assert_true(f->rng.calls > 0);
    assert_int_equal(herald_track(f->c, "Signed Up", "{\"plan\":\"pro\"}"), HERALD_OK);
    f->now += 1000;
    assert_int_equal(herald_page(f->c, "Home", NULL), HERALD_OK);

    char *anon = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(anon);
    /* The anonymous id and message ids come from the injected source. */
    assert_true(rng_made(&f->rng, anon));
    assert_true(is_uuid_v4(anon));
    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 2);
    json_t *e0 = json_array_get(events, 0), *e1 = json_array_get(events, 1);
    assert_string_equal(str(e0, "timestamp"), "2023-11-14T22:13:20.123Z");
    assert_string_equal(str(e1, "timestamp"), "2023-11-14T22:13:21.123Z");
    /* Message ids: UUIDv7 at the injected clock. */
    assert_true(is_uuid_v7_at(str(e0, "messageId"), 1700000000123LL));
    assert_true(is_uuid_v7_at(str(e1, "messageId"), 1700000001123LL));
    assert_string_not_equal(str(e0, "messageId"), str(e1, "messageId"));
    assert_string_not_equal(str(e0, "messageId"), anon);
    assert_string_equal(str(e0, "anonymousId"), anon);
    assert_string_equal(str(e1, "anonymousId"), anon);
    assert_string_equal(str(e0, "type"), "track");
    assert_string_equal(str(e0, "event"), "Signed Up");
    assert_string_equal(str(json_object_get(e0, "properties"), "plan"), "pro");
    assert_string_equal(str(ctx_of(e0, "library"), "name"), "herald");
    assert_string_equal(str(ctx_of(e0, "library"), "version"), HERALD_VERSION_STRING);
    /* One session, started at the first event. */
    assert_int_equal(json_integer_value(json_object_get(ctx_of(e0, "session"), "id")),
                     1700000000123LL);
    assert_int_equal(json_integer_value(json_object_get(ctx_of(e0, "session"), "sequence")), 1);
    assert_int_equal(json_integer_value(json_object_get(ctx_of(e1, "session"), "id")),
                     1700000000123LL);
    assert_int_equal(json_integer_value(json_object_get(ctx_of(e1, "session"), "sequence")), 2);
    /* The events table's created_at is the injected clock too. */
    assert_int_equal(db_int(f->path, "SELECT min(created_at) FROM events"), 1700000000123LL);
    assert_int_equal(db_int(f->path, "SELECT max(created_at) FROM events"), 1700000001123LL);
    json_decref(events);
    free(anon);
}

static int64_t session_field(json_t *events, size_t i, const char *key)
{
    return (int64_t)json_integer_value(
        json_object_get(ctx_of(json_array_get(events, i), "session"), key));
}

static void test_sessions_rotate_and_persist(void **state)
{
    fx *f = *state;
    const int64_t t0 = 1700000000000LL;
    inject_clock_and_random(f, t0);
    open_client(f);
    assert_int_equal(herald_track(f->c, "a", NULL), HERALD_OK);
    f->now = t0 + 60000;
    assert_int_equal(herald_track(f->c, "b", NULL), HERALD_OK);
    /* Just under the timeout after the last event: same session. */
    f->now = t0 + 60000 + 1800000 - 1;
    assert_int_equal(herald_track(f->c, "c", NULL), HERALD_OK);
    /* A full timeout of inactivity: a new session starting now. */
    const int64_t t1 = f->now + 1800000;
    f->now = t1;
    assert_int_equal(herald_track(f->c, "d", NULL), HERALD_OK);
    close_client(f);
    /* The session survives a reopen. */
    f->now = t1 + 5000;
    open_client(f);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_OK);

    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 5);
    assert_int_equal(session_field(events, 0, "id"), t0);
    assert_int_equal(session_field(events, 0, "sequence"), 1);
    assert_int_equal(session_field(events, 1, "id"), t0);
    assert_int_equal(session_field(events, 1, "sequence"), 2);
    assert_int_equal(session_field(events, 2, "id"), t0);
    assert_int_equal(session_field(events, 2, "sequence"), 3);
    assert_int_equal(session_field(events, 3, "id"), t1);
    assert_int_equal(session_field(events, 3, "sequence"), 1);
    assert_int_equal(session_field(events, 4, "id"), t1);
    assert_int_equal(session_field(events, 4, "sequence"), 2);
    json_decref(events);
}

static void test_session_start_events(void **state)
{
    fx *f = *state;
    inject_clock_and_random(f, 1700000000000LL);
    f->opts.session_start_events = 1;
    open_client(f);
    assert_int_equal(herald_track(f->c, "first", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "second", NULL), HERALD_OK);
    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(str(json_array_get(events, 0), "event"), "Session Started");
    assert_string_equal(str(json_array_get(events, 1), "event"), "first");
    assert_int_equal(session_field(events, 0, "sequence"), 1);
    assert_int_equal(session_field(events, 1, "sequence"), 2);
    assert_int_equal(session_field(events, 2, "sequence"), 3);
    json_decref(events);
}

/* ---- identity: traits, group, reset, erase ---- */

static void test_traits_and_group_in_context(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_identify(f->c, "u1", "{\"email\":\"a@example.com\"}"), HERALD_OK);
    assert_int_equal(herald_track(f->c, "t1", NULL), HERALD_OK);
    assert_int_equal(herald_identify(f->c, "u1", "{\"plan\":\"pro\"}"), HERALD_OK);
    assert_int_equal(herald_track(f->c, "t2", NULL), HERALD_OK);
    assert_int_equal(herald_group(f->c, "g1", "{\"name\":\"Acme\"}"), HERALD_OK);
    assert_int_equal(herald_track(f->c, "t3", NULL), HERALD_OK);
    /* A different user starts from no traits. */
    assert_int_equal(herald_identify(f->c, "u2", "{\"name\":\"B\"}"), HERALD_OK);
    close_client(f);
    open_client(f);
    assert_int_equal(herald_track(f->c, "t4", NULL), HERALD_OK);

    json_t *ev = db_events(f->path);
    assert_int_equal(json_array_size(ev), 8);
    json_t *e;
    /* The identify event carries its traits, not context.traits. */
    e = json_array_get(ev, 0);
    assert_string_equal(str(json_object_get(e, "traits"), "email"), "[email]");
    assert_null(ctx_of(e, "traits"));
    e = json_array_get(ev, 1);
    assert_string_equal(str(e, "userId"), "u1");
    assert_string_equal(str(ctx_of(e, "traits"), "email"), "[email]");
    assert_null(ctx_of(e, "groupId"));
    e = json_array_get(ev, 3); /* traits accumulate for the same user */
    assert_string_equal(str(ctx_of(e, "traits"), "email"), "[email]");
    assert_string_equal(str(ctx_of(e, "traits"), "plan"), "pro");
    e = json_array_get(ev, 4); /* the group event itself */
    assert_string_equal(str(e, "groupId"), "g1");
    assert_null(ctx_of(e, "groupId"));
    e = json_array_get(ev, 5);
    assert_string_equal(json_string_value(ctx_of(e, "groupId")), "g1");
    e = json_array_get(ev, 7); /* after reopen: u2, its own traits, the group */
    assert_string_equal(str(e, "userId"), "u2");
    assert_string_equal(str(ctx_of(e, "traits"), "name"), "B");
    assert_null(json_object_get(ctx_of(e, "traits"), "email"));
    assert_string_equal(json_string_value(ctx_of(e, "groupId")), "g1");
    json_decref(ev);
}

static void test_reset(void **state)
{
    fx *f = *state;
    open_client(f);
    assert_int_equal(herald_reset(NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_identify(f->c, "u1", "{\"a\":1}"), HERALD_OK);
    assert_int_equal(herald_group(f->c, "g1", NULL), HERALD_OK);
    char *anon1 = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(anon1);
    assert_int_equal(herald_reset(f->c), HERALD_OK);
    char *anon2 = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(anon2);
    assert_true(is_uuid_v4(anon2));
    assert_string_not_equal(anon1, anon2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key IN "
                                     "('user_id','user_traits','group_id')"),
                     0);
    assert_int_equal(herald_track(f->c, "after", NULL), HERALD_OK);
    close_client(f);
    open_client(f);
    assert_int_equal(herald_track(f->c, "after reopen", NULL), HERALD_OK);
    json_t *ev = db_events(f->path);
    assert_int_equal(json_array_size(ev), 4);
    /* Queued events keep the ids they were built with. */
    assert_string_equal(str(json_array_get(ev, 0), "userId"), "u1");
    assert_string_equal(str(json_array_get(ev, 0), "anonymousId"), anon1);
    for (size_t i = 2; i < 4; i++) {
        json_t *e = json_array_get(ev, i);
        assert_null(json_object_get(e, "userId"));
        assert_string_equal(str(e, "anonymousId"), anon2);
        assert_null(ctx_of(e, "traits"));
        assert_null(ctx_of(e, "groupId"));
    }
    json_decref(ev);
    free(anon1);
    free(anon2);
}

static void test_erase_user(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    open_client(f);
    assert_int_equal(herald_erase_user(NULL, NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_track(f->c, "anonymous", NULL), HERALD_OK);
    assert_int_equal(herald_identify(f->c, "victim", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "known", NULL), HERALD_OK);
    assert_int_equal(herald_send(f->c, "{\"type\":\"track\",\"event\":\"someone else\","
                                       "\"anonymousId\":\"other\",\"userId\":\"other\"}"),
                     HERALD_OK);
    char *anon1 = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    uint64_t erased = 99;
    assert_int_equal(herald_erase_user(f->c, &erased), HERALD_OK);
    assert_int_equal(erased, 3);
    json_t *ev = db_events(f->path);
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(str(json_array_get(ev, 0), "userId"), "other");
    json_decref(ev);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), 1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.pending, 1);
    char *anon2 = db_text(f->path, "SELECT value FROM meta WHERE key = 'anonymous_id'");
    assert_non_null(anon2);
    assert_string_not_equal(anon1, anon2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key = 'user_id'"), 0);
    /* Nothing left to erase for the new identity. */
    assert_int_equal(herald_erase_user(f->c, &erased), HERALD_OK);
    assert_int_equal(erased, 0);
    free(anon1);
    free(anon2);
}

/* ---- consent ---- */

static void test_consent_hold(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    f->opts.consent_required = 1;
    open_client(f);
    int granted = -1;
    assert_int_equal(herald_get_consent(f->c, &granted), HERALD_OK);
    assert_int_equal(granted, 0);
    assert_int_equal(herald_get_consent(f->c, NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_get_consent(NULL, &granted), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_set_consent(NULL, 1), HERALD_E_INVALID_ARGUMENT);
    /* Stored, but held back. */
    assert_int_equal(herald_track(f->c, "held", NULL), HERALD_OK);
    assert_int_equal(events_count(f), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE next_at = "
                                     "9223372036854775807"),
                     1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.held, 1);
    assert_int_equal(s.accepted, 1);
    /* Nothing is owed while held: close does not report a timeout. */
    assert_int_equal(herald_close(f->c, 0), HERALD_OK);
    f->c = NULL;
    open_client(f);
    assert_int_equal(herald_get_consent(f->c, &granted), HERALD_OK);
    assert_int_equal(granted, 0);

    assert_int_equal(herald_set_consent(f->c, 1), HERALD_OK);
    assert_int_equal(herald_get_consent(f->c, &granted), HERALD_OK);
    assert_int_equal(granted, 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE next_at = 0"), 1);
    s = stats_of(f);
    assert_int_equal(s.held, 0);
    char *consent = db_text(f->path, "SELECT value FROM meta WHERE key = 'consent'");
    assert_non_null(consent);
    assert_string_equal(consent, "granted");
    free(consent);
    assert_int_equal(herald_track(f->c, "free", NULL), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE next_at = 0"), 2);

    /* The choice persists. */
    close_client(f);
    open_client(f);
    assert_int_equal(herald_get_consent(f->c, &granted), HERALD_OK);
    assert_int_equal(granted, 1);
    /* Revoked: new events are held again. */
    assert_int_equal(herald_set_consent(f->c, 0), HERALD_OK);
    assert_int_equal(herald_track(f->c, "held again", NULL), HERALD_OK);
    s = stats_of(f);
    assert_int_equal(s.held, 1);
    assert_int_equal(s.pending, 3);
}

static void test_consent_drop(void **state)
{
    fx *f = *state;
    f->opts.consent_required = 1;
    f->opts.consent_policy = HERALD_CONSENT_DROP;
    open_client(f);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_E_NO_CONSENT);
    assert_int_equal(herald_identify(f->c, "u", NULL), HERALD_E_NO_CONSENT);
    assert_int_equal(herald_send(f->c, "{\"type\":\"page\"}"), HERALD_E_NO_CONSENT);
    assert_int_equal(events_count(f), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key = 'user_id'"), 0);
    herald_stats s = stats_of(f);
    assert_int_equal(s.consent_dropped, 3);
    assert_int_equal(s.accepted, 0);
    char buf[256] = "";
    assert_true(herald_last_error(f->c, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "consent"));

    assert_int_equal(herald_set_consent(f->c, 1), HERALD_OK);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_OK);
    assert_int_equal(events_count(f), 1);
    assert_int_equal(herald_set_consent(f->c, 0), HERALD_OK);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_E_NO_CONSENT);
    s = stats_of(f);
    assert_int_equal(s.consent_dropped, 4);
    assert_int_equal(events_count(f), 1);
}

/* ---- routing by "integrations" ---- */

static char *dests_of(fx *f, int64_t event_index)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(group_concat(dest, ','), '') FROM (SELECT dest FROM outbox WHERE "
             "event_id = (SELECT id FROM events ORDER BY id LIMIT 1 OFFSET %lld) ORDER BY dest)",
             (long long)event_index);
    return db_text(f->path, sql);
}

static void test_integrations_routing(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 2;
    open_client(f);
    assert_int_equal(herald_track(f->c, "both", NULL), HERALD_OK);
    assert_int_equal(herald_send(f->c, "{\"type\":\"track\",\"event\":\"only d2\","
                                       "\"integrations\":{\"All\":false,\"d2\":true}}"),
                     HERALD_OK);
    assert_int_equal(herald_send(f->c, "{\"type\":\"track\",\"event\":\"not d1\","
                                       "\"integrations\":{\"d1\":false}}"),
                     HERALD_OK);
    assert_int_equal(herald_send(f->c, "{\"type\":\"track\",\"event\":\"all on\","
                                       "\"integrations\":{\"All\":true,\"Other\":false}}"),
                     HERALD_OK);
    static const char *const expected[] = {"d1,d2", "d2", "d2", "d1,d2"};
    for (int64_t i = 0; i < 4; i++) {
        char *d = dests_of(f, i);
        assert_non_null(d);
        assert_string_equal(d, expected[i]);
        free(d);
    }
    /* The integrations object is kept in the event. */
    json_t *ev = db_events(f->path);
    assert_true(json_is_false(
        json_object_get(json_object_get(json_array_get(ev, 1), "integrations"), "All")));
    json_decref(ev);
}

/* ---- file mode ---- */

static void test_db_file_mode_0600(void **state)
{
    fx *f = *state;
    mode_t old = umask(0);
    herald_status st = herald_open(&f->c, &f->opts);
    umask(old);
    assert_int_equal(st, HERALD_OK);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_OK);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char side[700];
    snprintf(side, sizeof side, "%s-wal", f->path);
    assert_int_equal(stat(side, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(side, sizeof side, "%s-shm", f->path);
    assert_int_equal(stat(side, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* ---- props builder ---- */

static void test_props_builder(void **state)
{
    fx *f = *state;
    herald_props *p = herald_props_new();
    assert_non_null(p);
    assert_string_equal(herald_props_json(p), "{}");
    assert_int_equal(herald_props_set_string(p, "plan", "pro"), HERALD_OK);
    assert_int_equal(herald_props_set_int(p, "seats", 12), HERALD_OK);
    assert_int_equal(herald_props_set_int(p, "big", INT64_MIN), HERALD_OK);
    assert_int_equal(herald_props_set_double(p, "ratio", 0.5), HERALD_OK);
    assert_int_equal(herald_props_set_bool(p, "trial", 1), HERALD_OK);
    assert_int_equal(herald_props_set_bool(p, "paid", 0), HERALD_OK);
    assert_int_equal(herald_props_set_null(p, "coupon"), HERALD_OK);
    assert_int_equal(herald_props_set_json(p, "tags", "[\"a\",{\"b\":1}]"), HERALD_OK);
    assert_int_equal(herald_props_set_json(p, "n", "7"), HERALD_OK);
    assert_string_equal(herald_props_json(p),
                        "{\"plan\":\"pro\",\"seats\":12,\"big\":-9223372036854775808,"
                        "\"ratio\":0.5,\"trial\":true,\"paid\":false,\"coupon\":null,"
                        "\"tags\":[\"a\",{\"b\":1}],\"n\":7}");
    /* Setting a key again replaces it, and the text follows. */
    assert_int_equal(herald_props_set_string(p, "plan", "team"), HERALD_OK);
    assert_non_null(strstr(herald_props_json(p), "\"plan\":\"team\""));
    assert_null(strstr(herald_props_json(p), "\"pro\""));

    /* Refusals leave the object as it was. */
    const char *before = herald_props_json(p);
    char *copy = strdup(before);
    assert_int_equal(herald_props_set_string(p, "s", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_string(p, NULL, "v"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_string(p, "s", "\xff"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_string(p, "\xff", "v"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_int(p, "\xc3", 1), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_double(p, "d", NAN), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_double(p, "d", INFINITY), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_double(p, "d", -INFINITY), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_json(p, "j", "{"), HERALD_E_INVALID_JSON);
    assert_int_equal(herald_props_set_json(p, "j", "[1,"), HERALD_E_INVALID_JSON);
    assert_int_equal(herald_props_set_json(p, "j", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_null(p, NULL), HERALD_E_INVALID_ARGUMENT);
    assert_string_equal(herald_props_json(p), copy);
    free(copy);
    assert_int_equal(herald_props_set_int(NULL, "k", 1), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_props_set_json(NULL, "k", "1"), HERALD_E_INVALID_ARGUMENT);
    assert_null(herald_props_json(NULL));

    /* The builder's JSON goes straight into an event. */
    open_client(f);
    assert_int_equal(herald_track(f->c, "Upgraded", herald_props_json(p)), HERALD_OK);
    herald_props_free(p);
    herald_props_free(NULL);
    json_t *events = db_events(f->path);
    json_t *props = json_object_get(json_array_get(events, 0), "properties");
    assert_string_equal(str(props, "plan"), "team");
    assert_int_equal(json_integer_value(json_object_get(props, "seats")), 12);
    assert_true(json_is_true(json_object_get(props, "trial")));
    assert_true(json_is_null(json_object_get(props, "coupon")));
    assert_int_equal(json_array_size(json_object_get(props, "tags")), 2);
    json_decref(events);
}

/* ---- stats ---- */

static void test_stats(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 2;
    open_client(f);
    herald_stats s = stats_of(f);
    assert_int_equal(s.struct_size, sizeof s);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.accepted, 0);

    assert_int_equal(herald_track(f->c, "a", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "b", "{\"x\":1}"), HERALD_OK);
    assert_int_equal(herald_page(f->c, NULL, NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "", NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_track(f->c, "c", "{"), HERALD_E_INVALID_JSON);
    s = stats_of(f);
    assert_int_equal(s.accepted, 3);
    assert_int_equal(s.rejected, 2);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.queued_bytes, db_int(f->path, "SELECT sum(length(body)) FROM events"));
    assert_true(s.queued_bytes > 3 * 100);
    assert_int_equal(s.pending, 6);
    assert_int_equal(s.sent, 0);
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.evicted, 0);
    assert_int_equal(s.dead_letters, 0);
    assert_int_equal(s.requests, 0);

    /* struct_size 0 is refused; a smaller struct gets only its fields. */
    herald_stats bad;
    memset(&bad, 0, sizeof bad);
    assert_int_equal(herald_stats_get(f->c, &bad), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_stats_get(f->c, NULL), HERALD_E_INVALID_ARGUMENT);
    herald_stats small;
    memset(&small, 0xcd, sizeof small);
    small.struct_size = (uint32_t)offsetof(herald_stats, rejected);
    assert_int_equal(herald_stats_get(f->c, &small), HERALD_OK);
    assert_int_equal(small.accepted, 3);
    assert_int_equal(small.rejected, 0xcdcdcdcdcdcdcdcdULL);

    char *json = NULL;
    assert_int_equal(herald_stats_json(f->c, &json), HERALD_OK);
    assert_non_null(json);
    json_t *root = json_loads(json, 0, NULL);
    herald_free(json);
    assert_true(json_is_object(root));
    assert_int_equal(json_integer_value(json_object_get(root, "accepted")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "rejected")), 2);
    assert_int_equal(json_integer_value(json_object_get(root, "queued")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "pending")), 6);
    assert_true(json_is_string(json_object_get(root, "last_error")));
    assert_true(strlen(str(root, "last_error")) > 0);
    json_t *dests = json_object_get(root, "destinations");
    assert_int_equal(json_array_size(dests), 2);
    assert_string_equal(str(json_array_get(dests, 0), "name"), "d1");
    assert_string_equal(str(json_array_get(dests, 0), "backend"), "rest");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(dests, 0), "pending")), 3);
    assert_string_equal(str(json_array_get(dests, 1), "name"), "d2");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(dests, 1),
                                                        "consecutive_failures")),
                     0);
    json_decref(root);
    assert_int_equal(herald_stats_json(f->c, NULL), HERALD_E_INVALID_ARGUMENT);

    /* Counters live in the file: they survive a reopen. */
    close_client(f);
    open_client(f);
    s = stats_of(f);
    assert_int_equal(s.accepted, 3);
    assert_int_equal(s.rejected, 2);
    assert_int_equal(s.queued, 3);
}

/* ---- dead letters ---- */

static void test_dead_letter_replay(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    f->opts.max_queue_events = 1;
    open_client(f);
    assert_int_equal(herald_track(f->c, "first", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "second", NULL), HERALD_OK);
    herald_stats s = stats_of(f);
    assert_int_equal(s.evicted, 1);
    assert_int_equal(s.dead, 1);
    assert_int_equal(s.dead_letters, 1);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.accepted, 2);

    char *json = NULL;
    assert_int_equal(herald_dead_letters_json(f->c, 0, &json), HERALD_OK);
    json_t *list = json_loads(json, 0, NULL);
    herald_free(json);
    assert_int_equal(json_array_size(list), 1);
    json_t *row = json_array_get(list, 0);
    assert_string_equal(str(row, "destination"), "d1");
    assert_string_equal(str(row, "reason"), "evicted");
    assert_int_equal(json_integer_value(json_object_get(row, "http_status")), 0);
    assert_timestamp_now(str(row, "failed_at"));
    assert_string_equal(str(json_object_get(row, "event"), "event"), "first");
    json_decref(list);

    uint64_t replayed = 99;
    assert_int_equal(herald_dead_letters_replay(f->c, "nosuch", &replayed), HERALD_OK);
    assert_int_equal(replayed, 0);
    assert_int_equal(herald_dead_letters_replay(f->c, NULL, &replayed), HERALD_OK);
    assert_int_equal(replayed, 1);
    s = stats_of(f);
    assert_int_equal(s.dead_letters, 0);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.pending, 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters"), 0);
    json_t *events = db_events(f->path);
    assert_int_equal(json_array_size(events), 2);
    /* The replayed event is the original, byte for byte (same messageId). */
    assert_string_equal(str(json_array_get(events, 1), "event"), "first");
    json_decref(events);
    assert_int_equal(herald_dead_letters_json(f->c, 0, &json), HERALD_OK);
    assert_string_equal(json, "[]");
    herald_free(json);
    assert_int_equal(herald_dead_letters_replay(f->c, NULL, NULL), HERALD_OK);
}

static void test_dead_letters_of_other_destinations_stay(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    f->opts.max_queue_events = 1;
    open_client(f);
    assert_int_equal(herald_track(f->c, "first", NULL), HERALD_OK);
    assert_int_equal(herald_track(f->c, "second", NULL), HERALD_OK);
    close_client(f);

    /* Reopen with only d2: d1's dead letter is not ours to replay. */
    f->opts.destinations = f->dests + 1;
    f->opts.max_queue_events = 100;
    open_client(f);
    uint64_t replayed = 99;
    assert_int_equal(herald_dead_letters_replay(f->c, NULL, &replayed), HERALD_OK);
    assert_int_equal(replayed, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE dest = 'd1'"), 1);
}

/* ---- lifecycle ---- */

static void test_flush_and_close_without_delivery(void **state)
{
    fx *f = *state;
    f->opts.destinations = f->dests;
    f->opts.destination_count = 1;
    open_client(f);
    assert_int_equal(herald_flush(f->c, 0), HERALD_E_DISABLED);
    assert_int_equal(herald_flush(f->c, 100), HERALD_E_DISABLED);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_OK);
    /* Events remain owed: close reports it, and they stay on disk. */
    assert_int_equal(herald_close(f->c, 0), HERALD_E_TIMEOUT);
    f->c = NULL;
    assert_int_equal(events_count(f), 1);
    open_client(f);
    herald_stats s = stats_of(f);
    assert_int_equal(s.pending, 1);

    /* No destination: nothing owed, close is OK. */
    close_client(f);
    f->opts.destinations = NULL;
    f->opts.destination_count = 0;
    open_client(f);
    assert_int_equal(herald_close(f->c, 0), HERALD_OK);
    f->c = NULL;
}

static void test_open_bad_options(void **state)
{
    fx *f = *state;
    herald_client *c = (herald_client *)(uintptr_t)0x1;
    char why[512];
    assert_int_equal(herald_open(NULL, &f->opts), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_open(&c, NULL), HERALD_E_INVALID_ARGUMENT);

    herald_options o = f->opts;
    o.db_path = NULL;
    c = (herald_client *)(uintptr_t)0x1;
    assert_int_equal(herald_open(&c, &o), HERALD_E_CONFIG);
    assert_null(c);
    assert_true(herald_last_error(NULL, why, sizeof why) > 0);
    assert_non_null(strstr(why, "db_path"));

    o = f->opts;
    o.struct_size = 8;
    assert_int_equal(herald_open(&c, &o), HERALD_E_INVALID_ARGUMENT);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, "herald_options_init"));

    o = f->opts;
    o.batch_max_events = 0;
    assert_int_equal(herald_open(&c, &o), HERALD_E_CONFIG);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, "batch_max_events"));

    char missing[700];
    snprintf(missing, sizeof missing, "%s/no/such/dir/q.db", f->dir);
    o = f->opts;
    o.db_path = missing;
    assert_int_equal(herald_open(&c, &o), HERALD_E_STORAGE);
    assert_null(c);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, missing));
}

static void test_open_unknown_backend(void **state)
{
    fx *f = *state;
    herald_destination d = {"warehouse", "nosuch", "{}"};
    f->opts.destinations = &d;
    f->opts.destination_count = 1;
    herald_client *c = (herald_client *)(uintptr_t)0x1;
    assert_int_equal(herald_open(&c, &f->opts), HERALD_E_CONFIG);
    assert_null(c);
    char why[512] = "";
    size_t n = herald_last_error(NULL, why, sizeof why);
    assert_true(n > 0);
    assert_int_equal(strlen(why), n);
    assert_non_null(strstr(why, "unknown backend"));
    assert_non_null(strstr(why, "nosuch"));
    assert_non_null(strstr(why, "warehouse"));
    /* Truncation reports the full length. */
    char small[8];
    assert_int_equal(herald_last_error(NULL, small, sizeof small), n);
    assert_int_equal(strlen(small), 7);

    /* A configuration error creates no file. */
    assert_int_equal(access(f->path, F_OK), -1);

    d.backend = NULL;
    assert_int_equal(herald_open(&c, &f->opts), HERALD_E_CONFIG);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, "unknown backend"));
}

static void test_open_bad_destinations(void **state)
{
    fx *f = *state;
    herald_client *c = NULL;
    char why[512];
    static const struct {
        herald_destination d[2];
        size_t n;
        const char *mention;
    } cases[] = {
        {{{"bad name", "rest", "{\"url\":\"http://x/\"}"}}, 1, "name"},
        {{{"", "rest", "{\"url\":\"http://x/\"}"}}, 1, "name"},
        {{{NULL, "rest", "{\"url\":\"http://x/\"}"}}, 1, "name"},
        {{{"a", "rest", "{\"url\":\"http://x/\"}"}, {"a", "rest", "{\"url\":\"http://y/\"}"}},
         2,
         "twice"},
        {{{"a", "rest", "{}"}}, 1, "url"},
        {{{"a", "rest", NULL}}, 1, "url"},
        {{{"a", "rest", "{\"url\":\"http://x/\",\"bogus\":1}"}}, 1, "bogus"},
        {{{"a", "rest", "{\"url\":\"http://x/\",\"batch_max_events\":0}"}}, 1, "batch_max_events"},
        {{{"a", "rest", "[1]"}}, 1, "config_json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        herald_options o = f->opts;
        o.destinations = cases[i].d;
        o.destination_count = cases[i].n;
        herald_status st = herald_open(&c, &o);
        herald_last_error(NULL, why, sizeof why);
        if (st != HERALD_E_CONFIG)
            fail_msg("case %zu: got %d (%s)", i, st, why);
        assert_null(c);
        if (strstr(why, cases[i].mention) == NULL)
            fail_msg("case %zu: \"%s\" does not mention %s", i, why, cases[i].mention);
    }
}

static void test_open_json(void **state)
{
    fx *f = *state;
    char json[1024];
    herald_client *c = (herald_client *)(uintptr_t)0x1;
    char why[512];

    /* Unknown key: HERALD_E_CONFIG before anything is created. */
    snprintf(json, sizeof json, "{\"db_path\":\"%s\",\"deliver\":false,\"max_queue_event\":5}",
             f->path);
    assert_int_equal(herald_open_json(&c, json), HERALD_E_CONFIG);
    assert_null(c);
    assert_true(herald_last_error(NULL, why, sizeof why) > 0);
    assert_non_null(strstr(why, "max_queue_event"));
    assert_int_equal(access(f->path, F_OK), -1);

    assert_int_equal(herald_open_json(&c, "{\"db_path\":"), HERALD_E_INVALID_JSON);
    assert_int_equal(herald_open_json(&c, NULL), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_open_json(NULL, "{}"), HERALD_E_INVALID_ARGUMENT);
    assert_int_equal(herald_open_json(&c, "{\"deliver\":false}"), HERALD_E_CONFIG);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, "db_path"));
    snprintf(json, sizeof json, "{\"db_path\":\"%s\",\"deliver\":false,"
             "\"destinations\":[{\"name\":\"d1\",\"backend\":\"nosuch\"}]}", f->path);
    assert_int_equal(herald_open_json(&c, json), HERALD_E_CONFIG);
    herald_last_error(NULL, why, sizeof why);
    assert_non_null(strstr(why, "unknown backend"));

    /* A valid config. */
    snprintf(json, sizeof json,
             "{\"db_path\":\"%s\",\"deliver\":false,\"max_event_bytes\":4096,"
             "\"destinations\":[{\"name\":\"d1\",\"url\":\"http://127.0.0.1:9/\"}]}",
             f->path);
    assert_int_equal(herald_open_json(&f->c, json), HERALD_OK);
    assert_non_null(f->c);
    assert_int_equal(herald_track(f->c, "e", NULL), HERALD_OK);
    char pad[5000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char props[5100];
    snprintf(props, sizeof props, "{\"p\":\"%s\"}", pad);
    assert_int_equal(herald_track(f->c, "e", props), HERALD_E_TOO_LARGE);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'd1'"), 1);
    close_client(f);

    /* herald_open_json_ex: base supplies defaults, JSON wins. */
    herald_options base;
    herald_options_init(&base);
    base.max_event_bytes = 4096;
    base.deliver = 1;
    snprintf(json, sizeof json, "{\"db_path\":\"%s\",\"deliver\":false}", f->path);
    assert_int_equal(herald_open_json_ex(&f->c, json, &base), HERALD_OK);
    assert_int_equal(herald_flush(f->c, 0), HERALD_E_DISABLED);
    assert_int_equal(herald_track(f->c, "e", props), HERALD_E_TOO_LARGE);
    close_client(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_and_version),
        cmocka_unit_test(test_null_client),
        T(test_validation_refusals),
        T(test_scalar_properties_are_not_object),
        T(test_last_error_text),
        T(test_valid_calls_stored_in_segment_shape),
        T(test_anonymous_id_persists),
        T(test_identify_persists_user_id),
        T(test_identity_pii_redacted_on_disk),
        T(test_stored_identity_redacted_at_open),
        T(test_stored_identity_rewrite_fails_at_open),
        T(test_identity_traits_not_shared_by_redacted_ids),
        T(test_injected_clock_and_random),
        T(test_sessions_rotate_and_persist),
        T(test_session_start_events),
        T(test_traits_and_group_in_context),
        T(test_reset),
        T(test_erase_user),
        T(test_consent_hold),
        T(test_consent_drop),
        T(test_integrations_routing),
        T(test_db_file_mode_0600),
        T(test_props_builder),
        T(test_stats),
        T(test_dead_letter_replay),
        T(test_dead_letters_of_other_destinations_stay),
        T(test_flush_and_close_without_delivery),
        T(test_open_bad_options),
        T(test_open_unknown_backend),
        T(test_open_bad_destinations),
        T(test_open_json),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
