/* The plugin loader through herald_open: a built-in backend built as a
 * module loads by absolute path; broken plugins are refused at open with a
 * clear message and no queue file is created; a plugin that cannot encode
 * has its events dead-lettered with its message, none lost or retried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "herald/herald.h"

static char db_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(db_path, sizeof db_path, "/tmp/herald-plugin-%ld.db", (long)getpid());
    unlink(db_path);
    unsetenv("HERALD_PLUGIN_PATH");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char path[160];
    const char *suffixes[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", db_path, suffixes[i]);
        unlink(path);
    }
    return 0;
}

static const char *dir_of(const char *env)
{
    const char *d = getenv(env);
    if (d == NULL)
        fail_msg("%s is not set (meson test sets it)", env);
    return d;
}

/* Open with one destination whose backend is `backend`; returns the status
 * and copies the open error into why. */
static herald_status open_with(const char *backend, char *why, size_t whylen, herald_client **out)
{
    herald_destination d = {"p", backend, "{\"url\":\"http://127.0.0.1:9/\"}"};
    herald_options o;
    herald_options_init(&o);
    o.db_path = db_path;
    o.deliver = 0;
    o.destinations = &d;
    o.destination_count = 1;
    herald_client *c = NULL;
    herald_status st = herald_open(&c, &o);
    herald_last_error(NULL, why, whylen);
    if (out)
        *out = c;
    else
        herald_close(c, 0);
    return st;
}

static void expect_refused(const char *backend, const char *message)
{
    char why[512];
    assert_int_equal(open_with(backend, why, sizeof why, NULL), HERALD_E_CONFIG);
    if (strstr(why, message) == NULL)
        fail_msg("open with %s: \"%s\" does not say \"%s\"", backend, why, message);
    assert_int_equal(access(db_path, F_OK), -1); /* nothing created */
}

static void test_module_loads_by_absolute_path(void **state)
{
    (void)state;
    char path[512], why[512];
    snprintf(path, sizeof path, "%s/herald-backend-rest.so", dir_of("HERALD_TEST_MODULES_DIR"));
    herald_client *c = NULL;
    assert_int_equal(open_with(path, why, sizeof why, &c), HERALD_OK);
    assert_int_equal(herald_track(c, "Via Module", NULL), HERALD_OK);
    char *stats = NULL;
    assert_int_equal(herald_stats_json(c, &stats), HERALD_OK);
    assert_non_null(strstr(stats, "\"backend\":\"/"));
    herald_free(stats);
    assert_int_equal(herald_close(c, 0), HERALD_E_TIMEOUT); /* queued, not delivered */
}

static void test_broken_plugins_are_refused(void **state)
{
    (void)state;
    const char *dir = dir_of("HERALD_TEST_PLUGINS_DIR");
    struct {
        const char *file, *message;
    } cases[] = {
        {"herald-backend-abi99.so", "built for plugin ABI version 99"},
        {"herald-backend-noentry.so", "has no herald_backend_entry_v1 symbol"},
        {"herald-backend-nullfn.so", "required backend function"},
        {"herald-backend-createfail.so", "broken: refuses to start"},
        {"herald-backend-missing.so", "cannot load plugin"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
        expect_refused(path, cases[i].message);
    }
}

static void test_relative_paths_are_refused(void **state)
{
    (void)state;
    expect_refused("./herald-backend-rest.so", "must be absolute");
    expect_refused("plugins/herald-backend-rest.so", "must be absolute");
}

static void test_plugin_path_search(void **state)
{
    (void)state;
    const char *dir = dir_of("HERALD_TEST_PLUGINS_DIR");
    char list[1024];
    /* A relative entry is skipped; the absolute one is searched. */
    snprintf(list, sizeof list, "relative/dir:%s", dir);
    setenv("HERALD_PLUGIN_PATH", list, 1);
    expect_refused("createfail", "broken: refuses to start");
    expect_refused("wrongname", "calls itself \"impostor\"");
    expect_refused("nosuch", "no herald-backend-nosuch.so in HERALD_PLUGIN_PATH");
    setenv("HERALD_PLUGIN_PATH", "relative/only", 1);
    expect_refused("createfail", "unknown backend \"createfail\"");
    unsetenv("HERALD_PLUGIN_PATH");
    expect_refused("createfail", "unknown backend \"createfail\"");
    expect_refused("../etc", "must be absolute");
    expect_refused("..", "unknown backend \"..\"");
    expect_refused("Rest", "unknown backend \"Rest\"");
}

/* Count the occurrences of needle in haystack. */
static int count_of(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Every batch's encode() fails: its events are dead letters at once, with
 * the plugin's message and no HTTP status, whether the batch came from the
 * staging ring (the fast lane) or from the queue. */
static void test_encode_failure_dead_letters(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/herald-backend-encodefail.so",
             dir_of("HERALD_TEST_PLUGINS_DIR"));
    const uint32_t staging[] = {64u << 20, 0};
    for (size_t round = 0; round < 2; round++) {
        teardown(NULL);
        herald_destination d = {"p", path, "{}"};
        herald_options o;
        herald_options_init(&o);
        o.db_path = db_path;
        o.destinations = &d;
        o.destination_count = 1;
        o.flush_interval_ms = 50;
        o.staging_bytes = staging[round];
        herald_client *c = NULL;
        assert_int_equal(herald_open(&c, &o), HERALD_OK);
        for (int i = 0; i < 5; i++)
            assert_int_equal(herald_track(c, "Unsendable", NULL), HERALD_OK);
        assert_int_equal(herald_flush(c, 10000), HERALD_OK);
        herald_stats st = {.struct_size = sizeof st};
        assert_int_equal(herald_stats_get(c, &st), HERALD_OK);
        assert_int_equal(st.accepted, 5);
        assert_int_equal(st.sent, 0);
        assert_int_equal(st.retried, 0);
        assert_int_equal(st.dead, 5);
        assert_int_equal(st.dead_letters, 5);
        assert_int_equal(st.queued, 0);
        assert_int_equal(st.requests, 0);
        char *dead = NULL;
        assert_int_equal(herald_dead_letters_json(c, 0, &dead), HERALD_OK);
        int reasons = count_of(dead, "\"reason\":\"broken: cannot encode ");
        int statuses = count_of(dead, "\"http_status\":0");
        int events = count_of(dead, "\"event\":\"Unsendable\"");
        if (reasons != 5 || statuses != 5 || events != 5)
            fail_msg("staging %u: dead letters %s", staging[round], dead);
        herald_free(dead);
        char why[512];
        herald_last_error(c, why, sizeof why);
        if (strstr(why, "broken: cannot encode") == NULL)
            fail_msg("last error \"%s\" does not name the plugin's message", why);
        assert_int_equal(herald_close(c, 1000), HERALD_OK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_module_loads_by_absolute_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_plugins_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_path_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_failure_dead_letters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
