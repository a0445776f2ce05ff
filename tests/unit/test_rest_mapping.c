/* The rest backend's declarative mapping: a receiver with its own schema
 * takes herald events without C code. Asserted on the encoded bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "backend.h"

static const char *const PAGE_EVENT =
    "{\"type\":\"page\",\"name\":\"Pricing\",\"properties\":{\"eventCategory\":\"nav\","
    "\"eventAction\":\"open\",\"plan\":\"pro\"},\"userId\":\"u-1\",\"anonymousId\":\"a-1\","
    "\"timestamp\":\"2026-11-24T06:00:00.000Z\",\"context\":{\"page\":{\"url\":"
    "\"https://acme.example/pricing\"},\"session\":{\"id\":1795500000000,\"sequence\":3},"
    "\"userAgent\":\"Mozilla/5.0\",\"groupId\":\"acme\",\"campaign\":{\"source\":\"news\"}}}";
static const char *const TRACK_EVENT =
    "{\"type\":\"track\",\"event\":\"Signed Up\",\"properties\":{\"seats\":3},"
    "\"anonymousId\":\"a-2\",\"timestamp\":\"2026-11-24T06:00:01.000Z\",\"context\":{}}";

/* Encode events with a config; returns the parsed body. */
static json_t *encode_with(const char *config, const char *const *events, size_t count)
{
    const herald_backend_v1 *rest = herald_backend_rest();
    void *state = NULL;
    char err[256] = "";
    if (rest->create(config, HERALD_PLUGIN_ABI_VERSION, &state, err, sizeof err) != 0)
        fail_msg("create(%s): %s", config, err);
    size_t lengths[4];
    for (size_t i = 0; i < count; i++)
        lengths[i] = strlen(events[i]);
    herald_backend_batch batch = {sizeof batch, count, events, lengths, 1795500002000LL, 1};
    herald_backend_request req;
    memset(&req, 0, sizeof req);
    assert_int_equal(rest->encode(state, &batch, &req, err, sizeof err), 0);
    json_t *body = json_loadb(req.body, req.body_length, 0, NULL);
    assert_non_null(body);
    herald_free(req.body);
    herald_free(req.headers);
    rest->destroy(state);
    return body;
}

static void refused(const char *config, const char *message)
{
    void *state = NULL;
    char err[256] = "";
    assert_int_equal(herald_backend_rest()->create(config, HERALD_PLUGIN_ABI_VERSION, &state, err,
                                                   sizeof err),
                     -1);
    if (strstr(err, message) == NULL)
        fail_msg("create(%s): \"%s\" does not say \"%s\"", config, err, message);
}

static void test_flat_schema(void **state)
{
    (void)state;
    const char *events[] = {PAGE_EVENT, TRACK_EVENT};
    json_t *body = encode_with(
        "{\"url\":\"http://h/ingest\",\"batch_key\":\"events\",\"sent_at_key\":\"\",\"mapping\":{"
        "\"event_type\":[\"$.event\",\"$.name\",\"$.type\"],\"page_url\":\"$.context.page.url\","
        "\"session_id\":\"$.context.session.id\",\"user_agent\":\"$.context.userAgent\","
        "\"metadata\":\"$.properties\",\"eventCategory\":\"$.properties.eventCategory\","
        "\"eventAction\":\"$.properties.eventAction\",\"companyId\":\"$.context.groupId\","
        "\"user_id\":{\"path\":[\"$.userId\",\"$.anonymousId\"]},\"ts\":\"$.timestamp\","
        "\"source\":{\"const\":\"herald\"},\"utm_source\":{\"path\":\"$.context.campaign.source\","
        "\"default\":\"direct\"}}}",
        events, 2);
    assert_null(json_object_get(body, "sentAt"));
    json_t *list = json_object_get(body, "events");
    assert_int_equal(json_array_size(list), 2);
    json_t *want = json_loads(
        "{\"event_type\":\"Pricing\",\"page_url\":\"https://acme.example/pricing\","
        "\"session_id\":1795500000000,\"user_agent\":\"Mozilla/5.0\",\"metadata\":{"
        "\"eventCategory\":\"nav\",\"eventAction\":\"open\",\"plan\":\"pro\"},\"eventCategory\":"
        "\"nav\",\"eventAction\":\"open\",\"companyId\":\"acme\",\"user_id\":\"u-1\",\"ts\":"
        "\"2026-11-24T06:00:00.000Z\",\"source\":\"herald\",\"utm_source\":\"news\"}",
        0, NULL);
    assert_true(json_equal(json_array_get(list, 0), want));
    json_decref(want);
    /* The track event: its own name, the anonymous id, the default, and
     * absent paths omitted. */
    want = json_loads("{\"event_type\":\"Signed Up\",\"metadata\":{\"seats\":3},\"user_id\":"
                      "\"a-2\",\"ts\":\"2026-11-24T06:00:01.000Z\",\"source\":\"herald\","
                      "\"utm_source\":\"direct\"}",
                      0, NULL);
    assert_true(json_equal(json_array_get(list, 1), want));
    json_decref(want);
    json_decref(body);
}

static void test_flatten_and_bare_array(void **state)
{
    (void)state;
    const char *events[] = {PAGE_EVENT};
    json_t *body = encode_with("{\"url\":\"http://h/\",\"batch_key\":\"\",\"mapping\":{"
                               "\"name\":\"$.name\",\"prop_*\":\"$.properties\","
                               "\"ctx_*\":{\"flatten\":\"$.context.session\"}}}",
                               events, 1);
    assert_true(json_is_array(body));
    json_t *want = json_loads("{\"name\":\"Pricing\",\"prop_eventCategory\":\"nav\","
                              "\"prop_eventAction\":\"open\",\"prop_plan\":\"pro\","
                              "\"ctx_id\":1795500000000,\"ctx_sequence\":3}",
                              0, NULL);
    assert_true(json_equal(json_array_get(body, 0), want));
    json_decref(want);
    json_decref(body);
}

static void test_single_mode_with_mapping(void **state)
{
    (void)state;
    const char *events[] = {TRACK_EVENT};
    json_t *body = encode_with("{\"url\":\"http://h/\",\"mode\":\"single\",\"sent_at_key\":\"sent\","
                               "\"mapping\":{\"e\":\"$.event\",\"first_key\":\"$.properties.seats\"}}",
                               events, 1);
    assert_string_equal(json_string_value(json_object_get(body, "e")), "Signed Up");
    assert_int_equal(json_integer_value(json_object_get(body, "first_key")), 3);
    assert_string_equal(json_string_value(json_object_get(body, "sent")),
                        "2026-11-24T06:00:02.000Z");
    json_decref(body);
}

static void test_envelope_keys_without_mapping(void **state)
{
    (void)state;
    const char *events[] = {TRACK_EVENT, TRACK_EVENT};
    json_t *body = encode_with("{\"url\":\"http://h/\",\"batch_key\":\"items\",\"sent_at_key\":\"at\"}",
                               events, 2);
    assert_int_equal(json_array_size(json_object_get(body, "items")), 2);
    assert_string_equal(json_string_value(json_object_get(body, "at")), "2026-11-24T06:00:02.000Z");
    json_decref(body);
    body = encode_with("{\"url\":\"http://h/\",\"batch_key\":\"\"}", events, 2);
    assert_true(json_is_array(body));
    assert_int_equal(json_array_size(body), 2);
    json_decref(body);
}

static void test_array_index_paths(void **state)
{
    (void)state;
    const char *events[] = {"{\"type\":\"track\",\"event\":\"E\",\"properties\":{\"items\":"
                            "[{\"sku\":\"A1\"},{\"sku\":\"B2\"}]}}"};
    json_t *body = encode_with("{\"url\":\"http://h/\",\"mapping\":{\"first_sku\":"
                               "\"$.properties.items.0.sku\",\"second_sku\":"
                               "\"$.properties.items.1.sku\",\"none\":\"$.properties.items.9.sku\"}}",
                               events, 1);
    json_t *item = json_array_get(json_object_get(body, "batch"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "first_sku")), "A1");
    assert_string_equal(json_string_value(json_object_get(item, "second_sku")), "B2");
    assert_null(json_object_get(item, "none"));
    json_decref(body);
}

static void test_bad_mappings_are_refused(void **state)
{
    (void)state;
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":\"context.page\"}}", "a path looks like");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":\"$..x\"}}", "a path looks like");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":42}}", "a path looks like");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":{\"pth\":\"$.x\"}}}", "unknown key \"pth\"");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":{\"const\":1,\"path\":\"$.x\"}}}",
            "const and path together");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":{\"default\":1}}}", "needs a path");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":{\"const\":1,\"default\":2}}}",
            "const and default together");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a\":[]}}", "needs a path");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"\":\"$.x\"}}", "must be 1-64");
    refused("{\"url\":\"http://h/\",\"mapping\":{\"a b\":\"$.x\"}}", "must be 1-64");
    refused("{\"url\":\"http://h/\",\"batch_key\":\"a\\\"b\"}", "batch_key must be");
    refused("{\"url\":\"http://h/\",\"batch_key\":\"x\",\"sent_at_key\":\"x\"}",
            "batch_key and sent_at_key must differ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_schema),
        cmocka_unit_test(test_flatten_and_bare_array),
        cmocka_unit_test(test_single_mode_with_mapping),
        cmocka_unit_test(test_envelope_keys_without_mapping),
        cmocka_unit_test(test_array_index_paths),
        cmocka_unit_test(test_bad_mappings_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
