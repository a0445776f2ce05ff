/* Unit tests: options (src/config.c) — herald_options_init defaults,
 * herald_options_check ranges, herald_config_parse (JSON options) and
 * herald_destination_settings_parse (per-destination overrides). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"

static herald_options defaults(void)
{
    herald_options o;
    memset(&o, 0x5a, sizeof o);
    assert_int_equal(herald_options_init(&o), HERALD_OK);
    return o;
}

static void test_options_init_defaults(void **state)
{
    (void)state;
    herald_options o = defaults();
    assert_int_equal(o.struct_size, sizeof(herald_options));
    assert_null(o.db_path);
    assert_null(o.destinations);
    assert_int_equal(o.destination_count, 0);
    assert_int_equal(o.max_event_bytes, 32768);
    assert_int_equal(o.max_queue_events, 1000000);
    assert_int_equal(o.max_queue_bytes, 268435456);
    assert_int_equal(o.max_dead_letters, 10000);
    assert_int_equal(o.overflow_policy, HERALD_OVERFLOW_DROP_OLDEST);
    assert_int_equal(o.durability, HERALD_DURABILITY_PROCESS);
    assert_int_equal(o.batch_max_events, 100);
    assert_int_equal(o.batch_max_bytes, 500000);
    assert_int_equal(o.flush_interval_ms, 5000);
    assert_int_equal(o.retry_base_ms, 500);
    assert_int_equal(o.retry_max_delay_ms, 30000);
    assert_int_equal(o.retry_max_attempts, 10);
    assert_int_equal(o.retry_max_age_s, 604800);
    assert_int_equal(o.connect_timeout_ms, 10000);
    assert_int_equal(o.request_timeout_ms, 30000);
    assert_int_equal(o.gzip_min_bytes, 1024);
    assert_int_equal(o.max_concurrency, 8);
    assert_int_equal(o.batch_concurrency, 1);
    assert_int_equal(o.staging_bytes, 64u << 20);
    assert_int_equal(o.deliver, 1);
    assert_null(o.log);
    assert_null(o.log_userdata);
    assert_int_equal(o.log_level, HERALD_LOG_WARN);
    assert_null(o.app_name);
    assert_null(o.app_version);
    assert_null(o.app_build);
    assert_null(o.device_type);
    assert_null(o.user_agent);
    assert_int_equal(o.session_timeout_ms, 1800000);
    assert_int_equal(o.session_start_events, 0);
    assert_int_equal(o.consent_required, 0);
    assert_int_equal(o.consent_policy, HERALD_CONSENT_HOLD);
    assert_null(o.clock);
    assert_null(o.clock_ctx);
    assert_null(o.random);
    assert_null(o.random_ctx);
    assert_int_equal(herald_options_init(NULL), HERALD_E_INVALID_ARGUMENT);
}

static void test_options_check(void **state)
{
    (void)state;
    char err[256];
    herald_options o = defaults();
    err[0] = '\0';
    /* db_path is required. */
    assert_int_equal(herald_options_check(&o, err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "db_path"));
    o.db_path = "";
    assert_int_equal(herald_options_check(&o, err, sizeof err), HERALD_E_CONFIG);
    o.db_path = "/tmp/x.db";
    assert_int_equal(herald_options_check(&o, err, sizeof err), HERALD_OK);

    /* Not set up with herald_options_init. */
    herald_options raw = o;
    raw.struct_size = 0;
    assert_int_equal(herald_options_check(&raw, err, sizeof err), HERALD_E_INVALID_ARGUMENT);
    raw.struct_size = (uint32_t)sizeof raw - 1;
    assert_int_equal(herald_options_check(&raw, err, sizeof err), HERALD_E_INVALID_ARGUMENT);

    /* Range of each numeric option: bad value refused, naming the option. */
    herald_options b;
#define BAD(field, value)                                                                          \
    do {                                                                                           \
        b = o;                                                                                     \
        b.field = value;                                                                           \
        err[0] = '\0';                                                                             \
        if (herald_options_check(&b, err, sizeof err) != HERALD_E_CONFIG)                          \
            fail_msg(#field " = " #value " should be refused");                                    \
        assert_non_null(strstr(err, #field));                                                      \
    } while (0)
#define GOOD(field, value)                                                                         \
    do {                                                                                           \
        b = o;                                                                                     \
        b.field = value;                                                                           \
        if (herald_options_check(&b, err, sizeof err) != HERALD_OK)                                \
            fail_msg(#field " = " #value " should be accepted: %s", err);                          \
    } while (0)
    BAD(max_event_bytes, 255);
    GOOD(max_event_bytes, 256);
    GOOD(max_event_bytes, 16u << 20);
    BAD(max_event_bytes, (16u << 20) + 1);
    BAD(max_queue_events, 0);
    GOOD(max_queue_events, 1);
    BAD(max_queue_bytes, 1023);
    GOOD(max_queue_bytes, 1024);
    GOOD(max_dead_letters, 0);
    BAD(batch_max_events, 0);
    BAD(batch_max_events, 100001);
    BAD(batch_max_bytes, 1023);
    GOOD(flush_interval_ms, 0);
    BAD(flush_interval_ms, 86400001);
    BAD(retry_base_ms, 0);
    BAD(retry_max_delay_ms, 0);
    BAD(retry_max_attempts, 0);
    BAD(retry_max_age_s, 0);
    BAD(connect_timeout_ms, 0);
    BAD(request_timeout_ms, 0);
    GOOD(gzip_min_bytes, 0);
    BAD(max_concurrency, 0);
    BAD(max_concurrency, 257);
    GOOD(max_concurrency, 256);
    BAD(session_timeout_ms, 999);
    GOOD(session_timeout_ms, 1000);
    GOOD(session_timeout_ms, 7u * 86400000u);
    BAD(session_timeout_ms, 7u * 86400000u + 1);
    GOOD(staging_bytes, 0);
    GOOD(staging_bytes, 1u << 30);
    BAD(staging_bytes, (1u << 30) + 1);
#undef BAD
#undef GOOD

    b = o;
    b.overflow_policy = (herald_overflow_policy)7;
    assert_int_equal(herald_options_check(&b, err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "overflow_policy"));
    b = o;
    b.durability = (herald_durability)7;
    assert_int_equal(herald_options_check(&b, err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "durability"));
    b = o;
    b.consent_policy = (herald_consent_policy)2;
    assert_int_equal(herald_options_check(&b, err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "consent_policy"));
    b = o;
    b.destination_count = 2;
    b.destinations = NULL;
    assert_int_equal(herald_options_check(&b, err, sizeof err), HERALD_E_CONFIG);
    /* NULL/empty error buffers are tolerated. */
    b = o;
    b.db_path = NULL;
    assert_int_equal(herald_options_check(&b, NULL, 0), HERALD_E_CONFIG);
}

static void test_config_parse_values(void **state)
{
    (void)state;
    herald_options o = defaults();
    herald_config_storage storage;
    char err[256] = "";
    const char *json = "{\"db_path\":\"/var/q.db\",\"max_event_bytes\":4096,"
                       "\"max_queue_events\":5000000000,\"max_queue_bytes\":2048,"
                       "\"max_dead_letters\":0,\"overflow_policy\":\"reject_new\","
                       "\"durability\":\"power\",\"batch_max_events\":7,"
                       "\"batch_max_bytes\":65536,\"flush_interval_ms\":0,\"retry_base_ms\":10,"
                       "\"retry_max_delay_ms\":100,\"retry_max_attempts\":3,"
                       "\"retry_max_age_s\":60,\"connect_timeout_ms\":1,"
                       "\"request_timeout_ms\":2,\"gzip_min_bytes\":0,\"max_concurrency\":4,"
                       "\"deliver\":false,\"log_level\":\"debug\",\"staging_bytes\":0}";
    assert_int_equal(herald_config_parse(json, &o, &storage, err, sizeof err), HERALD_OK);
    assert_string_equal(o.db_path, "/var/q.db");
    assert_ptr_equal(o.db_path, storage.db_path);
    assert_int_equal(o.max_event_bytes, 4096);
    assert_int_equal(o.max_queue_events, 5000000000ULL);
    assert_int_equal(o.max_queue_bytes, 2048);
    assert_int_equal(o.max_dead_letters, 0);
    assert_int_equal(o.overflow_policy, HERALD_OVERFLOW_REJECT_NEW);
    assert_int_equal(o.durability, HERALD_DURABILITY_POWER);
    assert_int_equal(o.batch_max_events, 7);
    assert_int_equal(o.batch_max_bytes, 65536);
    assert_int_equal(o.flush_interval_ms, 0);
    assert_int_equal(o.retry_base_ms, 10);
    assert_int_equal(o.retry_max_delay_ms, 100);
    assert_int_equal(o.retry_max_attempts, 3);
    assert_int_equal(o.retry_max_age_s, 60);
    assert_int_equal(o.connect_timeout_ms, 1);
    assert_int_equal(o.request_timeout_ms, 2);
    assert_int_equal(o.gzip_min_bytes, 0);
    assert_int_equal(o.max_concurrency, 4);
    assert_int_equal(o.deliver, 0);
    assert_int_equal(o.log_level, HERALD_LOG_DEBUG);
    assert_int_equal(o.staging_bytes, 0);
    assert_int_equal(herald_options_check(&o, err, sizeof err), HERALD_OK);
    herald_config_free(&storage);
    assert_null(storage.db_path);
    assert_null(storage.destinations);

    /* Context, session and consent options. */
    o = defaults();
    const char *more = "{\"app_name\":\"demo\",\"app_version\":\"1.2\",\"app_build\":\"77\","
                       "\"device_type\":\"kiosk\",\"user_agent\":\"demo/1.2\","
                       "\"session_timeout_ms\":60000,\"session_start_events\":true,"
                       "\"consent_required\":true,\"consent_policy\":\"drop\"}";
    assert_int_equal(herald_config_parse(more, &o, &storage, err, sizeof err), HERALD_OK);
    assert_string_equal(o.app_name, "demo");
    assert_string_equal(o.app_version, "1.2");
    assert_string_equal(o.app_build, "77");
    assert_string_equal(o.device_type, "kiosk");
    assert_string_equal(o.user_agent, "demo/1.2");
    assert_int_equal(o.session_timeout_ms, 60000);
    assert_int_equal(o.session_start_events, 1);
    assert_int_equal(o.consent_required, 1);
    assert_int_equal(o.consent_policy, HERALD_CONSENT_DROP);
    herald_config_free(&storage);
    o = defaults();
    assert_int_equal(herald_config_parse("{\"consent_policy\":\"hold\",\"app_name\":\"a\","
                                         "\"app_name\":\"b\"}",
                                         &o, &storage, err, sizeof err),
                     HERALD_E_INVALID_JSON);
    assert_int_equal(herald_config_parse("{\"consent_policy\":\"hold\"}", &o, &storage, err,
                                         sizeof err),
                     HERALD_OK);
    assert_int_equal(o.consent_policy, HERALD_CONSENT_HOLD);
    herald_config_free(&storage);

    /* Keys not given keep the values already in opts. */
    o = defaults();
    o.batch_max_events = 42;
    assert_int_equal(herald_config_parse("{\"deliver\":true}", &o, &storage, err, sizeof err),
                     HERALD_OK);
    assert_int_equal(o.batch_max_events, 42);
    assert_int_equal(o.deliver, 1);
    assert_null(o.db_path);
    herald_config_free(&storage);

    assert_int_equal(herald_config_parse("{}", &o, &storage, err, sizeof err), HERALD_OK);
    herald_config_free(&storage);
}

static void assert_parse_fails(const char *json, herald_status expected, const char *mention)
{
    herald_options o = defaults();
    herald_config_storage storage;
    memset(&storage, 0x5a, sizeof storage);
    char err[256] = "";
    herald_status st = herald_config_parse(json, &o, &storage, err, sizeof err);
    if (st != expected)
        fail_msg("%s: got %d, expected %d (%s)", json ? json : "(null)", st, expected, err);
    assert_true(strlen(err) > 0);
    if (mention != NULL && strstr(err, mention) == NULL)
        fail_msg("%s: error \"%s\" does not mention \"%s\"", json, err, mention);
    /* Storage is released (and zeroed) on failure. */
    assert_null(storage.db_path);
    assert_null(storage.destinations);
    assert_int_equal(storage.destination_count, 0);
}

static void test_config_parse_errors(void **state)
{
    (void)state;
    assert_parse_fails(NULL, HERALD_E_INVALID_ARGUMENT, NULL);
    assert_parse_fails("{", HERALD_E_INVALID_JSON, NULL);
    assert_parse_fails("", HERALD_E_INVALID_JSON, NULL);
    assert_parse_fails("{\"db_path\":\"a\",\"db_path\":\"b\"}", HERALD_E_INVALID_JSON, NULL);
    assert_parse_fails("[]", HERALD_E_CONFIG, NULL);
    assert_parse_fails("{\"db_pth\":\"/x\"}", HERALD_E_CONFIG, "db_pth");
    assert_parse_fails("{\"unknown_key\":1}", HERALD_E_CONFIG, "unknown_key");
    assert_parse_fails("{\"db_path\":5}", HERALD_E_CONFIG, "db_path");
    assert_parse_fails("{\"deliver\":1}", HERALD_E_CONFIG, "deliver");
    assert_parse_fails("{\"overflow_policy\":\"drop_newest\"}", HERALD_E_CONFIG, "overflow_policy");
    assert_parse_fails("{\"durability\":\"disk\"}", HERALD_E_CONFIG, "durability");
    assert_parse_fails("{\"log_level\":\"trace\"}", HERALD_E_CONFIG, "log_level");
    assert_parse_fails("{\"max_event_bytes\":\"4096\"}", HERALD_E_CONFIG, "max_event_bytes");
    assert_parse_fails("{\"max_event_bytes\":4096.0}", HERALD_E_CONFIG, "max_event_bytes");
    assert_parse_fails("{\"max_event_bytes\":-1}", HERALD_E_CONFIG, "max_event_bytes");
    assert_parse_fails("{\"max_event_bytes\":100}", HERALD_E_CONFIG, "max_event_bytes");
    assert_parse_fails("{\"max_concurrency\":257}", HERALD_E_CONFIG, "max_concurrency");
    assert_parse_fails("{\"batch_max_events\":0}", HERALD_E_CONFIG, "batch_max_events");
    assert_parse_fails("{\"max_queue_events\":0}", HERALD_E_CONFIG, "max_queue_events");
    assert_parse_fails("{\"struct_size\":1}", HERALD_E_CONFIG, "struct_size");
    assert_parse_fails("{\"log\":null}", HERALD_E_CONFIG, "log");
    assert_parse_fails("{\"consent_policy\":\"maybe\"}", HERALD_E_CONFIG, "consent_policy");
    assert_parse_fails("{\"consent_required\":1}", HERALD_E_CONFIG, "consent_required");
    assert_parse_fails("{\"session_timeout_ms\":10}", HERALD_E_CONFIG, "session_timeout_ms");
    assert_parse_fails("{\"app_name\":5}", HERALD_E_CONFIG, "app_name");
    assert_parse_fails("{\"clock\":null}", HERALD_E_CONFIG, "clock");
    /* Strings stored before an error are released (checked under ASan). */
    assert_parse_fails("{\"app_name\":\"x\",\"user_agent\":\"y\",\"nope\":1}", HERALD_E_CONFIG,
                       "nope");
    assert_parse_fails("{\"destinations\":{}}", HERALD_E_CONFIG, "destinations");
    assert_parse_fails("{\"destinations\":[1]}", HERALD_E_CONFIG, "destinations[0]");
    assert_parse_fails("{\"destinations\":[{\"backend\":\"rest\"}]}", HERALD_E_CONFIG, "name");
    assert_parse_fails("{\"destinations\":[{\"name\":\"a\",\"backend\":3}]}", HERALD_E_CONFIG,
                       "backend");
    /* An error after a string was stored still releases everything. */
    assert_parse_fails("{\"db_path\":\"/x\",\"destinations\":[{\"name\":\"a\"},{\"name\":1}]}",
                       HERALD_E_CONFIG, "destinations[1]");
}

static void test_config_parse_destinations(void **state)
{
    (void)state;
    herald_options o = defaults();
    herald_config_storage storage;
    char err[256] = "";
    const char *json =
        "{\"destinations\":["
        "{\"name\":\"seg\",\"backend\":\"rest\",\"url\":\"https://a.example/v1/batch\","
        "\"batch_max_events\":5},"
        "{\"name\":\"plain\",\"url\":\"http://b.example/\"},"
        "{\"name\":\"bare\"}]}";
    assert_int_equal(herald_config_parse(json, &o, &storage, err, sizeof err), HERALD_OK);
    assert_int_equal(o.destination_count, 3);
    assert_ptr_equal(o.destinations, storage.destinations);
    assert_string_equal(o.destinations[0].name, "seg");
    assert_string_equal(o.destinations[0].backend, "rest");
    /* name and backend are removed; the rest is the destination's config. */
    json_t *cfg = json_loads(o.destinations[0].config_json, 0, NULL);
    assert_true(json_is_object(cfg));
    assert_int_equal(json_object_size(cfg), 2);
    assert_string_equal(json_string_value(json_object_get(cfg, "url")), "https://a.example/v1/batch");
    assert_int_equal(json_integer_value(json_object_get(cfg, "batch_max_events")), 5);
    json_decref(cfg);
    /* backend defaults to "rest". */
    assert_string_equal(o.destinations[1].name, "plain");
    assert_string_equal(o.destinations[1].backend, "rest");
    assert_string_equal(o.destinations[1].config_json, "{\"url\":\"http://b.example/\"}");
    assert_string_equal(o.destinations[2].config_json, "{}");
    herald_config_free(&storage);
    assert_int_equal(storage.destination_count, 0);

    /* An empty list is allowed. */
    o = defaults();
    assert_int_equal(herald_config_parse("{\"destinations\":[]}", &o, &storage, err, sizeof err),
                     HERALD_OK);
    assert_int_equal(o.destination_count, 0);
    herald_config_free(&storage);
}

/* ---- per-destination delivery settings ---- */

static void test_destination_settings_defaults(void **state)
{
    (void)state;
    herald_options o = defaults();
    herald_delivery_settings s;
    memset(&s, 0x5a, sizeof s);
    char *backend_json = NULL;
    char err[256] = "";
    assert_int_equal(herald_destination_settings_parse(&o, NULL, &s, &backend_json, err, sizeof err),
                     HERALD_OK);
    assert_int_equal(s.batch_max_events, 100);
    assert_int_equal(s.batch_max_bytes, 500000);
    assert_int_equal(s.flush_interval_ms, 5000);
    assert_int_equal(s.retry_base_ms, 500);
    assert_int_equal(s.retry_max_delay_ms, 30000);
    assert_int_equal(s.retry_max_attempts, 10);
    assert_int_equal(s.retry_max_age_s, 604800);
    assert_int_equal(s.connect_timeout_ms, 10000);
    assert_int_equal(s.request_timeout_ms, 30000);
    assert_int_equal(s.gzip_min_bytes, 1024);
    assert_int_equal(s.max_concurrency, 8);
    assert_int_equal(s.gzip_level, 6);
    assert_null(s.ca_file);
    assert_int_equal(s.insecure_skip_tls_verify, 0);
    assert_string_equal(backend_json, "{}");
    free(backend_json);
    herald_delivery_settings_free(&s);
}

static void test_destination_settings_overrides(void **state)
{
    (void)state;
    herald_options o = defaults();
    o.retry_max_attempts = 4; /* client default, not overridden below */
    herald_delivery_settings s;
    char *backend_json = NULL;
    char err[256] = "";
    const char *cfg = "{\"url\":\"https://x.example/\",\"batch_max_events\":1,"
                      "\"batch_max_bytes\":2048,\"flush_interval_ms\":10,\"retry_base_ms\":20,"
                      "\"retry_max_delay_ms\":30,\"retry_max_age_s\":40,"
                      "\"connect_timeout_ms\":50,\"request_timeout_ms\":60,"
                      "\"gzip_min_bytes\":70,\"max_concurrency\":2,\"gzip_level\":9,"
                      "\"ca_file\":\"/dev/null\",\"insecure_skip_tls_verify\":true,"
                      "\"mode\":\"single\"}";
    assert_int_equal(herald_destination_settings_parse(&o, cfg, &s, &backend_json, err, sizeof err),
                     HERALD_OK);
    assert_int_equal(s.batch_max_events, 1);
    assert_int_equal(s.batch_max_bytes, 2048);
    assert_int_equal(s.flush_interval_ms, 10);
    assert_int_equal(s.retry_base_ms, 20);
    assert_int_equal(s.retry_max_delay_ms, 30);
    assert_int_equal(s.retry_max_attempts, 4);
    assert_int_equal(s.retry_max_age_s, 40);
    assert_int_equal(s.connect_timeout_ms, 50);
    assert_int_equal(s.request_timeout_ms, 60);
    assert_int_equal(s.gzip_min_bytes, 70);
    assert_int_equal(s.max_concurrency, 2);
    assert_int_equal(s.gzip_level, 9);
    assert_string_equal(s.ca_file, "/dev/null");
    assert_int_equal(s.insecure_skip_tls_verify, 1);
    /* Only the backend's own keys are passed on. */
    json_t *rest = json_loads(backend_json, 0, NULL);
    assert_int_equal(json_object_size(rest), 2);
    assert_string_equal(json_string_value(json_object_get(rest, "url")), "https://x.example/");
    assert_string_equal(json_string_value(json_object_get(rest, "mode")), "single");
    json_decref(rest);
    free(backend_json);
    herald_delivery_settings_free(&s);
    assert_null(s.ca_file);
    /* The client's options are not changed by a destination. */
    assert_int_equal(o.batch_max_events, 100);
}

static void test_destination_settings_errors(void **state)
{
    (void)state;
    herald_options o = defaults();
    static const struct {
        const char *json;
        const char *mention;
    } bad[] = {
        {"[]", "config_json"},
        {"{", "config_json"},
        {"{\"batch_max_events\":0}", "batch_max_events"},
        {"{\"batch_max_events\":\"5\"}", "batch_max_events"},
        {"{\"max_concurrency\":1000}", "max_concurrency"},
        {"{\"gzip_level\":0}", "gzip_level"},
        {"{\"gzip_level\":10}", "gzip_level"},
        {"{\"gzip_level\":\"9\"}", "gzip_level"},
        {"{\"url\":\"http://x/\",\"ca_file\":\"/dev/null\",\"retry_base_ms\":-5}", "retry_base_ms"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        herald_delivery_settings s;
        char *backend_json = (char *)(uintptr_t)0x1;
        char err[256] = "";
        herald_status st =
            herald_destination_settings_parse(&o, bad[i].json, &s, &backend_json, err, sizeof err);
        if (st != HERALD_E_CONFIG)
            fail_msg("%s: got %d, expected HERALD_E_CONFIG", bad[i].json, st);
        if (strstr(err, bad[i].mention) == NULL)
            fail_msg("%s: error \"%s\" does not mention %s", bad[i].json, err, bad[i].mention);
        assert_null(backend_json);
        assert_null(s.ca_file);
    }
    /* Client-level options are not delivery settings: they pass through to
     * the backend (which will refuse them as unknown). */
    herald_delivery_settings s;
    char *backend_json = NULL;
    char err[256] = "";
    assert_int_equal(herald_destination_settings_parse(&o, "{\"max_event_bytes\":1000}", &s,
                                                       &backend_json, err, sizeof err),
                     HERALD_OK);
    assert_string_equal(backend_json, "{\"max_event_bytes\":1000}");
    free(backend_json);
    herald_delivery_settings_free(&s);
    assert_int_equal(herald_destination_settings_parse(&o, "{\"session_timeout_ms\":5000}", &s,
                                                       &backend_json, err, sizeof err),
                     HERALD_OK);
    assert_string_equal(backend_json, "{\"session_timeout_ms\":5000}");
    free(backend_json);
    herald_delivery_settings_free(&s);
}

static void test_ca_file_must_be_readable(void **state)
{
    (void)state;
    herald_options o;
    herald_options_init(&o);
    herald_delivery_settings s;
    char *backend_json = NULL;
    char err[256] = "";
    assert_int_equal(herald_destination_settings_parse(&o, "{\"ca_file\":\"/nonexistent/ca.pem\"}",
                                                       &s, &backend_json, err, sizeof err),
                     HERALD_E_CONFIG);
    assert_non_null(strstr(err, "ca_file \"/nonexistent/ca.pem\" cannot be read"));
    assert_null(backend_json);
    assert_int_equal(herald_destination_settings_parse(&o, "{\"ca_file\":\"/dev/null\"}", &s,
                                                       &backend_json, err, sizeof err),
                     HERALD_OK);
    assert_string_equal(s.ca_file, "/dev/null");
    herald_delivery_settings_free(&s);
    free(backend_json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_init_defaults),
        cmocka_unit_test(test_options_check),
        cmocka_unit_test(test_config_parse_values),
        cmocka_unit_test(test_config_parse_errors),
        cmocka_unit_test(test_config_parse_destinations),
        cmocka_unit_test(test_destination_settings_defaults),
        cmocka_unit_test(test_destination_settings_overrides),
        cmocka_unit_test(test_destination_settings_errors),
        cmocka_unit_test(test_ca_file_must_be_readable),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
