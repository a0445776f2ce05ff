/* The before_store hook: keep, drop or replace each event before it is
 * stored, with ownership as herald.h documents. Asserted on the rows of the
 * real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "herald/herald.h"

typedef struct fixture {
    char dir[64];
    char db[128];
    int calls;
    char seen[4096];          /* the last event the hook saw */
    herald_hook_result result;
    const char *replacement;  /* for HERALD_HOOK_REPLACE */
} fixture;

static herald_hook_result hook(const char *event_json, size_t length, char **replacement,
                               void *userdata)
{
    fixture *f = userdata;
    f->calls++;
    assert_int_equal(strlen(event_json), length);
    snprintf(f->seen, sizeof f->seen, "%s", event_json);
    if (f->result == HERALD_HOOK_REPLACE && f->replacement)
        *replacement = herald_strdup(f->replacement);
    return f->result;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/herald-hook-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/q.db", f->dir);
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

static herald_client *open_hooked(fixture *f)
{
    herald_options o;
    herald_options_init(&o);
    o.db_path = f->db;
    o.deliver = 0;
    o.before_store = hook;
    o.before_store_userdata = f;
    herald_client *c = NULL;
    assert_int_equal(herald_open(&c, &o), HERALD_OK);
    return c;
}

static int64_t count_events(fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static json_t *only_event(fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT body FROM events", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    json_t *e = json_loadb(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), 0, NULL);
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_non_null(e);
    return e;
}

static void test_keep_stores_what_the_hook_saw(void **state)
{
    fixture *f = *state;
    f->result = HERALD_HOOK_KEEP;
    herald_client *c = open_hooked(f);
    assert_int_equal(herald_track(c, "Kept", "{\"plan\":\"pro\"}"), HERALD_OK);
    herald_close(c, 0);
    assert_int_equal(f->calls, 1);
    json_t *stored = only_event(f);
    json_t *seen = json_loads(f->seen, 0, NULL);
    assert_true(json_equal(stored, seen));
    /* The hook sees the finished event: enriched, with its ids. */
    assert_non_null(json_object_get(json_object_get(seen, "context"), "library"));
    assert_non_null(json_object_get(seen, "messageId"));
    json_decref(seen);
    json_decref(stored);
}

static void test_drop_stores_nothing(void **state)
{
    fixture *f = *state;
    f->result = HERALD_HOOK_DROP;
    herald_client *c = open_hooked(f);
    assert_int_equal(herald_track(c, "Dropped", NULL), HERALD_E_DROPPED);
    char why[256];
    herald_last_error(c, why, sizeof why);
    assert_non_null(strstr(why, "before_store"));
    char *stats = NULL;
    assert_int_equal(herald_stats_json(c, &stats), HERALD_OK);
    json_t *s = json_loads(stats, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(s, "hook_dropped")), 1);
    json_decref(s);
    herald_free(stats);
    herald_close(c, 0);
    assert_int_equal(count_events(f), 0);
}

static void test_replace_is_validated_and_stored(void **state)
{
    fixture *f = *state;
    f->result = HERALD_HOOK_REPLACE;
    f->replacement = "{\"type\":\"track\",\"event\":\"Renamed\",\"properties\":{\"kept\":true}}";
    herald_client *c = open_hooked(f);
    assert_int_equal(herald_track(c, "Original", "{\"secret_plan\":1}"), HERALD_OK);
    herald_close(c, 0);
    json_t *e = only_event(f);
    assert_string_equal(json_string_value(json_object_get(e, "event")), "Renamed");
    assert_true(json_is_true(json_object_get(json_object_get(e, "properties"), "kept")));
    assert_null(json_object_get(json_object_get(e, "properties"), "secret_plan"));
    /* Completed again: ids, timestamp and context are there. */
    assert_non_null(json_object_get(e, "messageId"));
    assert_non_null(json_object_get(e, "timestamp"));
    assert_non_null(json_object_get(json_object_get(e, "context"), "library"));
    json_decref(e);
}

static void test_bad_replacements_are_refused(void **state)
{
    fixture *f = *state;
    f->result = HERALD_HOOK_REPLACE;
    herald_client *c = open_hooked(f);
    f->replacement = "{not json";
    assert_int_equal(herald_track(c, "A", NULL), HERALD_E_INVALID_JSON);
    f->replacement = "[1,2]";
    assert_int_equal(herald_track(c, "B", NULL), HERALD_E_NOT_OBJECT);
    f->replacement = "{\"type\":\"track\"}"; /* a track without an event */
    assert_int_equal(herald_track(c, "C", NULL), HERALD_E_INVALID_ARGUMENT);
    f->replacement = NULL; /* REPLACE without a replacement */
    assert_int_equal(herald_track(c, "D", NULL), HERALD_E_INVALID_ARGUMENT);
    herald_close(c, 0);
    assert_int_equal(count_events(f), 0);
    assert_int_equal(f->calls, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keep_stores_what_the_hook_saw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_is_validated_and_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_replacements_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
