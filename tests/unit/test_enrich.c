/* Enrichment, identity, sessions and consent: every field is asserted on the
 * events as stored in the real SQLite file, with this machine's values and
 * with injected ones (clock, random source, environment). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "context.h"
#include "herald/herald.h"
#include "queue.h"

#define T0 1795500000000LL /* 2026-11-24T06:00:00.000Z */

typedef struct fixture {
    char dir[64];
    char db[128];
    int64_t now;      /* the injected clock */
    unsigned char fill; /* the injected random source's byte */
} fixture;

static int64_t fixed_clock(void *ctx)
{
    return ((fixture *)ctx)->now;
}

static void fixed_random(void *buf, size_t len, void *ctx)
{
    fixture *f = ctx;
    memset(buf, f->fill++, len);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/herald-enrich-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/q.db", f->dir);
    f->now = T0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static herald_options injected_options(fixture *f)
{
    herald_options o;
    herald_options_init(&o);
    o.db_path = f->db;
    o.deliver = 0;
    o.clock = fixed_clock;
    o.clock_ctx = f;
    o.random = fixed_random;
    o.random_ctx = f;
    return o;
}

static herald_client *open_with(herald_options *o)
{
    herald_client *c = NULL;
    herald_status st = herald_open(&c, o);
    if (st != HERALD_OK) {
        char why[512];
        herald_last_error(NULL, why, sizeof why);
        fail_msg("herald_open: %s: %s", herald_strerror(st), why);
    }
    return c;
}

/* The n-th stored event (0-based, by id), parsed. */
static json_t *stored_event(fixture *f, int n)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT body FROM events ORDER BY id LIMIT 1 OFFSET ?1", -1, &s, NULL),
        SQLITE_OK);
    sqlite3_bind_int(s, 1, n);
    json_t *event = NULL;
    if (sqlite3_step(s) == SQLITE_ROW)
        event = json_loadb(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), 0, NULL);
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_non_null(event);
    return event;
}

static int64_t scalar(fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static const char *path_string(json_t *root, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(root, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_string_value(v);
}

static json_int_t path_int(json_t *root, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(json_object_get(json_object_get(root, a), b), c);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* ---- the machine's real values ---- */

static void test_real_host_values(void **state)
{
    fixture *f = *state;
    setenv("LANG", "de_DE.UTF-8", 1);
    unsetenv("LC_ALL");
    unsetenv("LC_MESSAGES");
    setenv("TZ", "Europe/Berlin", 1);
    herald_options o;
    herald_options_init(&o);
    o.db_path = f->db;
    o.deliver = 0;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "Real", NULL), HERALD_OK);
    herald_close(c, 0);
    unsetenv("TZ");
    unsetenv("LANG");

    json_t *e = stored_event(f, 0);
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_string_equal(path_string(e, "context", "device", "arch"), u.machine);
    assert_string_equal(path_string(e, "context", "locale", NULL), "de-DE");
    assert_string_equal(path_string(e, "context", "timezone", NULL), "Europe/Berlin");
    assert_string_equal(path_string(e, "context", "library", "name"), "herald");
    assert_string_equal(path_string(e, "context", "library", "version"), HERALD_VERSION_STRING);
    /* os.name: this machine's os-release NAME, read here independently. */
    FILE *rel = fopen("/etc/os-release", "r");
    if (rel) {
        char line[256], name[128] = "";
        while (fgets(line, sizeof line, rel))
            if (strncmp(line, "NAME=", 5) == 0)
                sscanf(line + 5, "\"%127[^\"]\"", name);
        fclose(rel);
        if (name[0])
            assert_string_equal(path_string(e, "context", "os", "name"), name);
    } else {
        assert_string_equal(path_string(e, "context", "os", "name"), u.sysname);
    }
    const char *type = path_string(e, "context", "device", "type");
    assert_non_null(type);
    assert_true(strcmp(type, "server") == 0 || strcmp(type, "container") == 0 ||
                strcmp(type, "desktop") == 0);
    json_decref(e);
}

/* ---- injected values ---- */

static void test_injected_fields(void **state)
{
    fixture *f = *state;
    f->fill = 0;
    herald_options o = injected_options(f);
    o.app_name = "Acme Notes";
    o.app_version = "3.2.1";
    o.app_build = "3210";
    o.device_type = "mobile";
    o.user_agent = "Mozilla/5.0 (X11; Linux x86_64)";
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "Injected", "{\"k\":1}"), HERALD_OK);
    herald_close(c, 0);

    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "timestamp", NULL, NULL), "2026-11-24T06:00:00.000Z");
    /* fill 0 went to the jitter seed, 1 to the anonymous id (v4), 2 to the
     * seed of the messageId: a UUIDv7, the clock's ms (0x01a20c23c300) in
     * its first 48 bits, version 7, rand_a 0x202 (the seed's first 11 bits),
     * variant 10, rand_b from the seed. */
    assert_string_equal(path_string(e, "anonymousId", NULL, NULL),
                        "01010101-0101-4101-8101-010101010101");
    assert_string_equal(path_string(e, "messageId", NULL, NULL),
                        "01a20c23-c300-7202-8202-020202020202");
    assert_string_equal(path_string(e, "context", "app", "name"), "Acme Notes");
    assert_string_equal(path_string(e, "context", "app", "version"), "3.2.1");
    assert_string_equal(path_string(e, "context", "app", "build"), "3210");
    assert_string_equal(path_string(e, "context", "device", "type"), "mobile");
    assert_string_equal(path_string(e, "context", "userAgent", NULL),
                        "Mozilla/5.0 (X11; Linux x86_64)");
    assert_int_equal(path_int(e, "context", "session", "id"), T0);
    assert_int_equal(path_int(e, "context", "session", "sequence"), 1);
    assert_null(json_object_get(json_object_get(e, "context"), "ip"));
    json_decref(e);
}

static void test_per_call_overrides(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.app_name = "Acme";
    o.app_version = "1.0";
    herald_client *c = open_with(&o);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"X\",\"userId\":\"per-call\","
                                    "\"timestamp\":\"2020-01-02T03:04:05.678Z\","
                                    "\"context\":{\"app\":{\"version\":\"9.9\"},\"ip\":\"203.0.113.9\","
                                    "\"screen\":{\"width\":390,\"height\":844}}}"),
                     HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "timestamp", NULL, NULL), "2020-01-02T03:04:05.678Z");
    assert_string_equal(path_string(e, "userId", NULL, NULL), "per-call");
    assert_string_equal(path_string(e, "context", "app", "name"), "Acme");   /* kept */
    assert_string_equal(path_string(e, "context", "app", "version"), "9.9"); /* overridden */
    /* An IP is personal data: redacted by default. */
    assert_string_equal(path_string(e, "context", "ip", NULL), "[ip]");
    assert_int_equal(path_int(e, "context", "screen", "width"), 390);
    json_decref(e);
}

static void test_context_ip_kept_when_allowed(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.redact_json = "{\"allow_paths\":[\"/context/ip\"]}";
    herald_client *c = open_with(&o);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"X\","
                                    "\"context\":{\"ip\":\"203.0.113.9\"},"
                                    "\"properties\":{\"contact\":\"jane@example.org\"}}"),
                     HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "context", "ip", NULL), "203.0.113.9");
    /* Only that path: the rest is still redacted. */
    assert_string_equal(path_string(e, "properties", "contact", NULL), "[email]");
    json_decref(e);
}

static void test_integrations_route_destinations(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_destination d[2] = {
        {"a", "rest", "{\"url\":\"http://127.0.0.1:9/\"}"},
        {"b", "rest", "{\"url\":\"http://127.0.0.1:9/\"}"},
    };
    o.destinations = d;
    o.destination_count = 2;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"OnlyB\","
                                    "\"integrations\":{\"All\":false,\"b\":true}}"),
                     HERALD_OK);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"NotA\","
                                    "\"integrations\":{\"a\":false}}"),
                     HERALD_OK);
    assert_int_equal(herald_track(c, "Both", NULL), HERALD_OK);
    herald_close(c, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox WHERE dest='a'"), 1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox WHERE dest='b'"), 3);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox o JOIN events e ON e.id=o.event_id "
                               "WHERE o.dest='a' AND json_extract(e.body,'$.event')='Both'"),
                     1);
}

/* ---- identity ---- */

static void test_identity_persists_across_reopen(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(herald_identify(c, "user-1", "{\"plan\":\"pro\"}"), HERALD_OK);
    assert_int_equal(herald_identify(c, "user-1", "{\"seats\":3}"), HERALD_OK);
    assert_int_equal(herald_group(c, "acme", "{\"name\":\"Acme\"}"), HERALD_OK);
    herald_close(c, 0);
    json_t *first = stored_event(f, 0);
    char anonymous[64];
    snprintf(anonymous, sizeof anonymous, "%s", path_string(first, "anonymousId", NULL, NULL));
    json_decref(first);

    f->now += 60 * 1000; /* within the session window */
    c = open_with(&o);
    assert_int_equal(herald_track(c, "After Reopen", NULL), HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 3);
    assert_string_equal(path_string(e, "event", NULL, NULL), "After Reopen");
    assert_string_equal(path_string(e, "anonymousId", NULL, NULL), anonymous);
    assert_string_equal(path_string(e, "userId", NULL, NULL), "user-1");
    assert_string_equal(path_string(e, "context", "groupId", NULL), "acme");
    assert_string_equal(path_string(e, "context", "traits", "plan"), "pro");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(e, "context"), "traits"), "seats")),
                     3);
    /* The session continued: same id, fourth event. */
    assert_int_equal(path_int(e, "context", "session", "id"), T0);
    assert_int_equal(path_int(e, "context", "session", "sequence"), 4);
    json_decref(e);
}

static void test_identify_new_user_starts_fresh_traits(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(herald_identify(c, "user-1", "{\"plan\":\"pro\"}"), HERALD_OK);
    assert_int_equal(herald_identify(c, "user-2", "{\"role\":\"admin\"}"), HERALD_OK);
    assert_int_equal(herald_track(c, "T", NULL), HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 2);
    assert_string_equal(path_string(e, "userId", NULL, NULL), "user-2");
    assert_string_equal(path_string(e, "context", "traits", "role"), "admin");
    assert_null(path_string(e, "context", "traits", "plan"));
    json_decref(e);
}

static void test_alias_carries_previous_id(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(herald_alias(c, "anon-7", "user-42"), HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "type", NULL, NULL), "alias");
    assert_string_equal(path_string(e, "previousId", NULL, NULL), "anon-7");
    assert_string_equal(path_string(e, "userId", NULL, NULL), "user-42");
    json_decref(e);
}

static void test_reset_clears_identity(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(herald_identify(c, "user-1", "{\"plan\":\"pro\"}"), HERALD_OK);
    assert_int_equal(herald_group(c, "acme", NULL), HERALD_OK);
    assert_int_equal(herald_reset(c), HERALD_OK);
    assert_int_equal(herald_track(c, "After Reset", NULL), HERALD_OK);
    herald_close(c, 0);
    c = open_with(&o); /* and it persisted */
    assert_int_equal(herald_track(c, "After Reopen", NULL), HERALD_OK);
    herald_close(c, 0);
    json_t *before = stored_event(f, 0);
    for (int i = 2; i <= 3; i++) {
        json_t *e = stored_event(f, i);
        assert_null(json_object_get(e, "userId"));
        assert_null(json_object_get(json_object_get(e, "context"), "groupId"));
        assert_null(json_object_get(json_object_get(e, "context"), "traits"));
        assert_string_not_equal(path_string(e, "anonymousId", NULL, NULL),
                                path_string(before, "anonymousId", NULL, NULL));
        json_decref(e);
    }
    json_decref(before);
}

/* ---- sessions ---- */

static void test_session_rotates_after_inactivity(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.session_timeout_ms = 60000;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "A", NULL), HERALD_OK);
    f->now += 59999;
    assert_int_equal(herald_track(c, "B", NULL), HERALD_OK); /* activity extends the session */
    f->now += 59999;
    assert_int_equal(herald_track(c, "C", NULL), HERALD_OK);
    f->now += 60000;
    assert_int_equal(herald_track(c, "D", NULL), HERALD_OK); /* idle for the whole timeout */
    herald_close(c, 0);
    const int64_t ids[] = {T0, T0, T0, T0 + 59999 * 2 + 60000};
    const int64_t seqs[] = {1, 2, 3, 1};
    for (int i = 0; i < 4; i++) {
        json_t *e = stored_event(f, i);
        assert_int_equal(path_int(e, "context", "session", "id"), ids[i]);
        assert_int_equal(path_int(e, "context", "session", "sequence"), seqs[i]);
        json_decref(e);
    }
}

static void test_session_start_events(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.session_start_events = 1;
    o.session_timeout_ms = 1000;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "First", NULL), HERALD_OK);
    assert_int_equal(herald_track(c, "Second", NULL), HERALD_OK);
    f->now += 5000;
    assert_int_equal(herald_track(c, "Third", NULL), HERALD_OK);
    herald_close(c, 0);
    const char *names[] = {"Session Started", "First", "Second", "Session Started", "Third"};
    const int64_t seqs[] = {1, 2, 3, 1, 2};
    for (int i = 0; i < 5; i++) {
        json_t *e = stored_event(f, i);
        assert_string_equal(path_string(e, "event", NULL, NULL), names[i]);
        assert_int_equal(path_int(e, "context", "session", "sequence"), seqs[i]);
        json_decref(e);
    }
    assert_int_equal(scalar(f, "SELECT count(*) FROM events"), 5);
}

static void test_session_ids_increase_when_clock_steps_back(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.session_timeout_ms = 1000;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "A", NULL), HERALD_OK);
    f->now -= 10 * 60 * 1000; /* the clock jumps back ten minutes */
    assert_int_equal(herald_track(c, "B", NULL), HERALD_OK);
    herald_close(c, 0);
    json_t *a = stored_event(f, 0), *b = stored_event(f, 1);
    assert_true(path_int(b, "context", "session", "id") >= path_int(a, "context", "session", "id"));
    json_decref(a);
    json_decref(b);
}

/* ---- pages and campaigns ---- */

static void test_page_url_gives_page_and_campaign(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(
        herald_page(c, "Pricing",
                    "{\"url\":\"https://example.com/pricing?utm_source=news&utm_medium=email"
                    "&utm_campaign=fall%20sale&utm_term=crm+tool&utm_content=hero&gclid=Cj0KC\","
                    "\"referrer\":\"https://www.google.com/\",\"title\":\"Pricing - Acme\"}"),
        HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "context", "page", "path"), "/pricing");
    assert_string_equal(path_string(e, "context", "page", "referrer"), "https://www.google.com/");
    assert_string_equal(path_string(e, "context", "page", "title"), "Pricing - Acme");
    assert_non_null(path_string(e, "context", "page", "search"));
    assert_string_equal(path_string(e, "context", "campaign", "source"), "news");
    assert_string_equal(path_string(e, "context", "campaign", "medium"), "email");
    assert_string_equal(path_string(e, "context", "campaign", "name"), "fall sale");
    assert_string_equal(path_string(e, "context", "campaign", "term"), "crm tool");
    assert_string_equal(path_string(e, "context", "campaign", "content"), "hero");
    assert_string_equal(path_string(e, "context", "campaign", "gclid"), "Cj0KC");
    json_decref(e);
}

static void test_track_with_context_page_url(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"Signup\",\"context\":{\"page\":"
                                    "{\"url\":\"https://a.example/x?utm_source=ads\",\"title\":\"T\"}}}"),
                     HERALD_OK);
    herald_close(c, 0);
    json_t *e = stored_event(f, 0);
    assert_string_equal(path_string(e, "context", "page", "path"), "/x");
    assert_string_equal(path_string(e, "context", "page", "title"), "T");
    assert_string_equal(path_string(e, "context", "campaign", "source"), "ads");
    json_decref(e);
}

static void test_malformed_urls_are_harmless(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_client *c = open_with(&o);
    const char *bad[] = {
        "{\"url\":\"not a url\"}",
        "{\"url\":\"https://\"}",
        "{\"url\":\"http://[::1/x?utm_source=a\"}",
        "{\"url\":\"https://h:99999/?utm_source=a\"}",
        "{\"url\":\"javascript:alert(1)\"}",
        "{\"url\":42}",
        "{\"url\":\"https://ok.example/#utm_source=frag\"}",
        "{\"url\":\"https://ok.example/?utm_source=%FF%FE\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(herald_page(c, "P", bad[i]), HERALD_OK);
    herald_close(c, 0);
    for (int i = 0; i < 6; i++) {
        if (i == 2)
            continue;
        json_t *e = stored_event(f, i);
        assert_null(json_object_get(json_object_get(e, "context"), "page"));
        assert_null(json_object_get(json_object_get(e, "context"), "campaign"));
        json_decref(e);
    }
    /* "http://[::1/x": redaction replaces the IPv6 address first, and page
     * fields are derived from the redacted URL, which now parses. */
    json_t *redacted = stored_event(f, 2);
    assert_string_equal(path_string(redacted, "context", "page", "url"), "http://[ip]/x?utm_source=a");
    assert_string_equal(path_string(redacted, "context", "page", "path"), "/x");
    json_decref(redacted);
    json_t *fragment = stored_event(f, 6);
    assert_string_equal(path_string(fragment, "context", "page", "path"), "/");
    assert_null(json_object_get(json_object_get(fragment, "context"), "campaign"));
    json_decref(fragment);
    json_t *bad_utf8 = stored_event(f, 7);
    assert_null(path_string(bad_utf8, "context", "campaign", "source"));
    json_decref(bad_utf8);
}

/* ---- consent ---- */

static void test_consent_hold_then_grant(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_destination d = {"main", "rest", "{\"url\":\"http://127.0.0.1:9/\"}"};
    o.destinations = &d;
    o.destination_count = 1;
    o.consent_required = 1;
    herald_client *c = open_with(&o);
    int granted = -1;
    assert_int_equal(herald_get_consent(c, &granted), HERALD_OK);
    assert_int_equal(granted, 0);
    assert_int_equal(herald_track(c, "Held", NULL), HERALD_OK);
    herald_stats s = {.struct_size = sizeof s};
    assert_int_equal(herald_stats_get(c, &s), HERALD_OK);
    assert_int_equal(s.held, 1);
    herald_close(c, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox WHERE next_at = 9223372036854775807"),
                     1);

    c = open_with(&o); /* still not granted after reopen */
    assert_int_equal(herald_get_consent(c, &granted), HERALD_OK);
    assert_int_equal(granted, 0);
    assert_int_equal(herald_set_consent(c, 1), HERALD_OK);
    herald_close(c, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox WHERE next_at = 0"), 1);

    c = open_with(&o); /* granted persisted */
    assert_int_equal(herald_get_consent(c, &granted), HERALD_OK);
    assert_int_equal(granted, 1);
    herald_close(c, 0);
}

static void test_consent_drop_policy(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    o.consent_required = 1;
    o.consent_policy = HERALD_CONSENT_DROP;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_track(c, "Dropped", NULL), HERALD_E_NO_CONSENT);
    char why[256];
    herald_last_error(c, why, sizeof why);
    assert_non_null(strstr(why, "consent"));
    herald_stats s = {.struct_size = sizeof s};
    assert_int_equal(herald_stats_get(c, &s), HERALD_OK);
    assert_int_equal(s.consent_dropped, 1);
    assert_int_equal(herald_set_consent(c, 1), HERALD_OK);
    assert_int_equal(herald_track(c, "Kept", NULL), HERALD_OK);
    assert_int_equal(herald_set_consent(c, 0), HERALD_OK);
    assert_int_equal(herald_track(c, "Dropped Again", NULL), HERALD_E_NO_CONSENT);
    herald_close(c, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM events"), 1);
}

static void test_erase_user_removes_only_current_user(void **state)
{
    fixture *f = *state;
    herald_options o = injected_options(f);
    herald_destination d = {"main", "rest", "{\"url\":\"http://127.0.0.1:9/\"}"};
    o.destinations = &d;
    o.destination_count = 1;
    herald_client *c = open_with(&o);
    assert_int_equal(herald_identify(c, "victim", NULL), HERALD_OK);
    assert_int_equal(herald_track(c, "Mine", "{\"secret\":\"x\"}"), HERALD_OK);
    assert_int_equal(herald_send(c, "{\"type\":\"track\",\"event\":\"Other\",\"userId\":\"someone\","
                                    "\"anonymousId\":\"other-anon\"}"),
                     HERALD_OK);
    uint64_t erased = 0;
    assert_int_equal(herald_erase_user(c, &erased), HERALD_OK);
    assert_int_equal(erased, 2);
    assert_int_equal(herald_track(c, "Fresh", NULL), HERALD_OK);
    herald_stats s = {.struct_size = sizeof s};
    assert_int_equal(herald_stats_get(c, &s), HERALD_OK);
    assert_int_equal(s.queued, 2);
    herald_close(c, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM events"), 2);
    assert_int_equal(scalar(f, "SELECT count(*) FROM outbox"), 2);
    assert_int_equal(scalar(f, "SELECT count(*) FROM events WHERE body LIKE '%victim%'"), 0);
    json_t *fresh = stored_event(f, 1);
    assert_null(json_object_get(fresh, "userId"));
    json_decref(fresh);
}

/* ---- the pure helpers ---- */

static void test_locale_from_env(void **state)
{
    (void)state;
    struct {
        const char *all, *messages, *lang, *want;
    } cases[] = {
        {NULL, NULL, "de_DE.UTF-8", "de-DE"},   {"", NULL, "pt_BR", "pt-BR"},
        {"fr_CA.utf8", NULL, "de_DE", "fr-CA"}, {NULL, "ja_JP.eucJP", "de_DE", "ja-JP"},
        {NULL, NULL, "sr_RS@latin", "sr-Latn-RS"}, {NULL, NULL, "en", "en"},
        {NULL, NULL, "C", ""},                  {NULL, NULL, "POSIX", ""},
        {NULL, NULL, "C.UTF-8", ""},            {NULL, NULL, NULL, ""},
        {NULL, NULL, "EN_us", ""},              {NULL, NULL, "de_DE_xx", ""},
        {NULL, NULL, "x", ""},                  {NULL, NULL, "es_419.UTF-8", "es-419"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[64];
        herald_locale_from_env(cases[i].all, cases[i].messages, cases[i].lang, out, sizeof out);
        assert_string_equal(out, cases[i].want);
    }
}

static void test_timezone_from(void **state)
{
    (void)state;
    struct {
        const char *tz, *link, *file, *want;
    } cases[] = {
        {"Europe/Berlin", NULL, NULL, "Europe/Berlin"},
        {":America/New_York", NULL, NULL, "America/New_York"},
        {"/usr/share/zoneinfo/Asia/Tokyo", NULL, NULL, "Asia/Tokyo"},
        {"UTC", "/usr/share/zoneinfo/Europe/Paris", NULL, "UTC"},
        {"EST5EDT,M3.2.0,M11.1.0", "/usr/share/zoneinfo/Europe/Paris", NULL, "Europe/Paris"},
        {NULL, "../usr/share/zoneinfo/posix/Australia/Sydney", NULL, "Australia/Sydney"},
        {NULL, "/etc/some/file", "Africa/Lagos\n", "Africa/Lagos"},
        {NULL, NULL, "  Etc/UTC  \n", "Etc/UTC"},
        {NULL, NULL, "garbage with spaces", ""},
        {"", NULL, NULL, ""},
        {"../../etc/passwd", NULL, NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[64];
        herald_timezone_from(cases[i].tz, cases[i].link, cases[i].file, out, sizeof out);
        assert_string_equal(out, cases[i].want);
    }
}

static void test_os_release_and_device_type(void **state)
{
    (void)state;
    char name[64] = "", version[64] = "";
    herald_os_release_parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian "
                            "GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
                            name, sizeof name, version, sizeof version);
    assert_string_equal(name, "Debian GNU/Linux");
    assert_string_equal(version, "12");
    herald_os_release_parse("NAME=Alpine\nVERSION_ID=3.19.1", name, sizeof name, version,
                            sizeof version);
    assert_string_equal(name, "Alpine");
    assert_string_equal(version, "3.19.1");
    assert_string_equal(herald_device_type_from(1, 1), "container");
    assert_string_equal(herald_device_type_from(0, 1), "desktop");
    assert_string_equal(herald_device_type_from(0, 0), "server");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_real_host_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injected_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_call_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_ip_kept_when_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integrations_route_destinations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_persists_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identify_new_user_starts_fresh_traits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alias_carries_previous_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_clears_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_rotates_after_inactivity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_start_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ids_increase_when_clock_steps_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_page_url_gives_page_and_campaign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_track_with_context_page_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_urls_are_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_hold_then_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_drop_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_user_removes_only_current_user, setup, teardown),
        cmocka_unit_test(test_locale_from_env),
        cmocka_unit_test(test_timezone_from),
        cmocka_unit_test(test_os_release_and_device_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
