/* Unit tests: the REST backend (plugins/rest/rest.c) through
 * herald_backend_find("rest") — config validation, limits, batch and single
 * encoding, write_key and custom headers, and response classification. */
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

#define NOW_MS 1700000000123LL
#define NOW_TEXT "2023-11-14T22:13:20.123Z"

static const herald_backend_v1 *rest(void)
{
    herald_backend_handle h;
    char err[256];
    assert_int_equal(herald_backend_load("rest", &h, NULL, err, sizeof err), HERALD_OK);
    assert_null(h.library); /* built in */
    return h.vt;
}

/* herald_backend_load's verdict on a name: the status and the message. */
static herald_status load_status(const char *spec, char *err, size_t errlen)
{
    herald_backend_handle h;
    herald_status st = herald_backend_load(spec, &h, NULL, err, errlen);
    if (st == HERALD_OK)
        herald_backend_unload(&h);
    return st;
}

/* Create a state or fail the test. */
static void *create_ok(const char *config)
{
    void *state = NULL;
    char err[256] = "";
    int rc = rest()->create(config, HERALD_PLUGIN_ABI_VERSION, &state, err, sizeof err);
    if (rc != 0)
        fail_msg("create(%s) failed: %s", config, err);
    assert_non_null(state);
    return state;
}

static void assert_create_fails(const char *config, const char *mention)
{
    void *state = (void *)(uintptr_t)0x1;
    char err[256] = "";
    int rc = rest()->create(config, HERALD_PLUGIN_ABI_VERSION, &state, err, sizeof err);
    if (rc != -1) {
        if (rc == 0)
            rest()->destroy(state);
        fail_msg("create(%s) = %d, expected -1", config ? config : "(null)", rc);
    }
    /* The state is not touched on failure. */
    assert_ptr_equal(state, (void *)(uintptr_t)0x1);
    assert_true(strlen(err) > 0);
    if (mention != NULL && strstr(err, mention) == NULL)
        fail_msg("create(%s): error \"%s\" does not mention \"%s\"", config, err, mention);
}

typedef struct encoded {
    herald_backend_request req;
    int rc;
    char err[256];
} encoded;

static encoded encode(void *state, const char *const *events, size_t count)
{
    encoded e;
    memset(&e, 0, sizeof e);
    size_t lengths[16];
    assert_true(count <= 16);
    for (size_t i = 0; i < count; i++)
        lengths[i] = strlen(events[i]);
    herald_backend_batch batch;
    memset(&batch, 0, sizeof batch);
    batch.count = count;
    batch.events = events;
    batch.event_lengths = lengths;
    batch.now_ms = NOW_MS;
    batch.attempt = 1;
    e.rc = rest()->encode(state, &batch, &e.req, e.err, sizeof e.err);
    return e;
}

static void encoded_free(encoded *e)
{
    free(e->req.body);
    free(e->req.headers);
    e->req.body = NULL;
    e->req.headers = NULL;
}

/* ---- lookup ---- */

static void test_find(void **state)
{
    (void)state;
    const herald_backend_v1 *b = rest();
    assert_ptr_equal(b, herald_backend_rest());
    assert_string_equal(b->name, "rest");
    assert_int_equal(b->abi_version, HERALD_PLUGIN_ABI_VERSION);
    assert_int_equal(b->struct_size, sizeof(herald_backend_v1));
    assert_non_null(b->create);
    assert_non_null(b->destroy);
    assert_non_null(b->limits);
    assert_non_null(b->encode);
    assert_non_null(b->classify);
    char err[256];
    unsetenv("HERALD_PLUGIN_PATH");
    assert_int_equal(load_status("REST", err, sizeof err), HERALD_E_CONFIG);
    assert_int_equal(load_status("mixpanel", err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "unknown backend \"mixpanel\""));
    assert_int_equal(load_status("", err, sizeof err), HERALD_E_CONFIG);
    assert_int_equal(load_status(NULL, err, sizeof err), HERALD_E_CONFIG);
    /* Paths must be absolute: never code from the working directory. */
    assert_int_equal(load_status("./herald-backend-x.so", err, sizeof err), HERALD_E_CONFIG);
    assert_non_null(strstr(err, "must be absolute"));
    assert_int_equal(load_status("/nonexistent/herald-backend-x.so", err, sizeof err),
                     HERALD_E_CONFIG);
    assert_non_null(strstr(err, "cannot load plugin"));
    /* Relative HERALD_PLUGIN_PATH entries are not searched. */
    setenv("HERALD_PLUGIN_PATH", ".:tests", 1);
    assert_int_equal(load_status("rest2", err, sizeof err), HERALD_E_CONFIG);
    unsetenv("HERALD_PLUGIN_PATH");
}

/* ---- config ---- */

static void test_config_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{\"url\":\"https://api.example.com/v1/batch\"}",
        "{\"url\":\"http://127.0.0.1:8080/\"}",
        "{\"url\":\"HTTPS://EXAMPLE.COM/\"}",
        "{\"url\":\"https://x/\",\"mode\":\"batch\"}",
        "{\"url\":\"https://x/\",\"mode\":\"single\"}",
        "{\"url\":\"https://x/\",\"gzip\":false}",
        "{\"url\":\"https://x/\",\"write_key\":\"abc\"}",
        "{\"url\":\"https://x/\",\"headers\":{}}",
        "{\"url\":\"https://x/\",\"headers\":{\"X-Key\":\"v\",\"X-Empty\":\"\"}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        rest()->destroy(create_ok(good[i]));
    rest()->destroy(NULL);
}

static void test_config_invalid(void **state)
{
    (void)state;
    assert_create_fails(NULL, "url");
    assert_create_fails("{}", "url");
    assert_create_fails("[]", "object");
    assert_create_fails("not json", "object");
    assert_create_fails("{\"url\":\"ftp://x/\"}", "url");
    assert_create_fails("{\"url\":\"example.com\"}", "url");
    assert_create_fails("{\"url\":\"\"}", "url");
    assert_create_fails("{\"url\":\"https://x/a b\"}", "white space");
    assert_create_fails("{\"url\":\"https://x/\\n\"}", "white space");
    assert_create_fails("{\"url\":5}", "url");
    assert_create_fails("{\"url\":\"https://x/\",\"mode\":\"stream\"}", "mode");
    assert_create_fails("{\"url\":\"https://x/\",\"mode\":1}", "mode");
    assert_create_fails("{\"url\":\"https://x/\",\"gzip\":\"yes\"}", "gzip");
    assert_create_fails("{\"url\":\"https://x/\",\"write_key\":5}", "write_key");
    assert_create_fails("{\"url\":\"https://x/\",\"uri\":\"https://y/\"}", "uri");
    assert_create_fails("{\"url\":\"https://x/\",\"batch_max_events\":5}", "batch_max_events");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":[]}", "headers");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":\"X-A: b\"}", "headers");
}

static void test_config_headers_validated(void **state)
{
    (void)state;
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"\":\"v\"}}", "header");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"Bad Name\":\"v\"}}", "Bad Name");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X:Y\":\"v\"}}", "header");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X(Y)\":\"v\"}}", "header");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X\\tY\":\"v\"}}", "header");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X\\u00e9\":\"v\"}}", "header");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":\"a\\r\\nX-Evil: 1\"}}",
                        "X-A");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":\"a\\nb\"}}", "X-A");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":\"\\u0001\"}}", "X-A");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":5}}", "X-A");
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":null}}", "X-A");
    /* A tab inside a value is allowed. */
    rest()->destroy(create_ok("{\"url\":\"https://x/\",\"headers\":{\"X-A\":\"a\\tb\"}}"));
}

static void test_limits(void **state)
{
    (void)state;
    herald_backend_limits l;
    void *s = create_ok("{\"url\":\"https://x/\"}");
    memset(&l, 0x5a, sizeof l);
    rest()->limits(s, &l);
    assert_int_equal(l.max_events_per_request, 0);
    assert_int_equal(l.max_request_bytes, 0);
    assert_int_equal(l.max_event_bytes, 0);
    assert_int_equal(l.accepts_gzip, 1);
    rest()->destroy(s);

    s = create_ok("{\"url\":\"https://x/\",\"mode\":\"single\",\"gzip\":false}");
    rest()->limits(s, &l);
    assert_int_equal(l.max_events_per_request, 1);
    assert_int_equal(l.accepts_gzip, 0);
    rest()->destroy(s);

    s = create_ok("{\"url\":\"https://x/\",\"mode\":\"batch\",\"gzip\":true}");
    rest()->limits(s, &l);
    assert_int_equal(l.max_events_per_request, 0);
    assert_int_equal(l.accepts_gzip, 1);
    rest()->destroy(s);
}

/* Regression (was a bug in header_valid): DEL (0x7f) is a control
 * character RFC 7230 field values may not contain. */
static void test_header_value_del_refused(void **state)
{
    (void)state;
    assert_create_fails("{\"url\":\"https://x/\",\"headers\":{\"X-A\":\"a\\u007fb\"}}", "X-A");
}

/* ---- encoding ---- */

static void test_encode_batch(void **state)
{
    (void)state;
    const char *url = "https://api.example.com/v1/batch";
    void *s = create_ok("{\"url\":\"https://api.example.com/v1/batch\"}");
    const char *events[] = {"{\"type\":\"track\",\"event\":\"a\"}",
                            "{\"type\":\"identify\",\"userId\":\"u\"}"};
    encoded e = encode(s, events, 2);
    assert_int_equal(e.rc, 0);
    assert_string_equal(e.req.url, url);
    assert_string_equal(e.req.body, "{\"batch\":[{\"type\":\"track\",\"event\":\"a\"},"
                                    "{\"type\":\"identify\",\"userId\":\"u\"}],"
                                    "\"sentAt\":\"" NOW_TEXT "\"}");
    assert_int_equal(e.req.body_length, strlen(e.req.body));
    assert_string_equal(e.req.headers, "Content-Type: application/json");
    /* It is valid JSON of the Segment batch shape. */
    json_t *body = json_loadb(e.req.body, e.req.body_length, 0, NULL);
    assert_true(json_is_object(body));
    assert_int_equal(json_object_size(body), 2);
    assert_int_equal(json_array_size(json_object_get(body, "batch")), 2);
    assert_string_equal(json_string_value(json_object_get(body, "sentAt")), NOW_TEXT);
    json_decref(body);
    encoded_free(&e);

    /* One event, and an encoding per call (the state is reusable). */
    e = encode(s, events, 1);
    assert_int_equal(e.rc, 0);
    assert_string_equal(e.req.body, "{\"batch\":[{\"type\":\"track\",\"event\":\"a\"}],"
                                    "\"sentAt\":\"" NOW_TEXT "\"}");
    encoded_free(&e);
    rest()->destroy(s);
}

static void test_encode_batch_many(void **state)
{
    (void)state;
    void *s = create_ok("{\"url\":\"https://x/\"}");
    char storage[16][64];
    const char *events[16];
    for (int i = 0; i < 16; i++) {
        snprintf(storage[i], sizeof storage[i], "{\"i\":%d,\"s\":\"%.*s\"}", i, i * 3,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        events[i] = storage[i];
    }
    encoded e = encode(s, events, 16);
    assert_int_equal(e.rc, 0);
    json_t *body = json_loadb(e.req.body, e.req.body_length, 0, NULL);
    json_t *batch = json_object_get(body, "batch");
    assert_int_equal(json_array_size(batch), 16);
    for (size_t i = 0; i < 16; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(batch, i), "i")),
                         (json_int_t)i);
    json_decref(body);
    encoded_free(&e);
    rest()->destroy(s);
}

static void test_encode_single(void **state)
{
    (void)state;
    void *s = create_ok("{\"url\":\"https://x/one\",\"mode\":\"single\"}");
    const char *events[] = {"{\"type\":\"track\",\"event\":\"a\"}"};
    encoded e = encode(s, events, 1);
    assert_int_equal(e.rc, 0);
    assert_string_equal(e.req.url, "https://x/one");
    assert_string_equal(e.req.body,
                        "{\"type\":\"track\",\"event\":\"a\",\"sentAt\":\"" NOW_TEXT "\"}");
    assert_int_equal(e.req.body_length, strlen(e.req.body));
    json_t *body = json_loadb(e.req.body, e.req.body_length, 0, NULL);
    assert_true(json_is_object(body));
    assert_null(json_object_get(body, "batch"));
    json_decref(body);
    encoded_free(&e);

    /* A stored event that is not an object is refused. */
    const char *bad[] = {"\"just a string\""};
    e = encode(s, bad, 1);
    assert_int_equal(e.rc, -1);
    assert_true(strlen(e.err) > 0);
    rest()->destroy(s);
}

static void test_write_key_basic_auth(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        const char *encoded;
    } cases[] = {
        {"abc", "YWJjOg=="},
        {"a", "YTo="},
        {"ab", "YWI6"},
        {"", "Og=="},
        {"sk_test_123", "c2tfdGVzdF8xMjM6"},
        {"key:with:colons", "a2V5OndpdGg6Y29sb25zOg=="},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char config[256], expected[256];
        snprintf(config, sizeof config, "{\"url\":\"https://x/\",\"write_key\":\"%s\"}",
                 cases[i].key);
        snprintf(expected, sizeof expected,
                 "Authorization: Basic %s\nContent-Type: application/json", cases[i].encoded);
        void *s = create_ok(config);
        const char *events[] = {"{}"};
        encoded e = encode(s, events, 1);
        assert_int_equal(e.rc, 0);
        assert_string_equal(e.req.headers, expected);
        /* The key never appears in clear in the request. */
        if (strlen(cases[i].key) > 3) {
            assert_null(strstr(e.req.headers, cases[i].key));
            assert_null(strstr(e.req.body, cases[i].key));
        }
        encoded_free(&e);
        rest()->destroy(s);
    }
}

static void test_custom_headers(void **state)
{
    (void)state;
    void *s = create_ok("{\"url\":\"https://x/\",\"headers\":{\"X-Api-Key\":\"k1\","
                        "\"X-Trace\":\"t 2\"},\"write_key\":\"abc\"}");
    const char *events[] = {"{}"};
    encoded e = encode(s, events, 1);
    assert_int_equal(e.rc, 0);
    assert_string_equal(e.req.headers, "X-Api-Key: k1\nX-Trace: t 2\n"
                                       "Authorization: Basic YWJjOg==\n"
                                       "Content-Type: application/json");
    /* Lines, no CR, no trailing newline. */
    assert_null(strchr(e.req.headers, '\r'));
    assert_int_not_equal(e.req.headers[strlen(e.req.headers) - 1], '\n');
    encoded_free(&e);
    rest()->destroy(s);
}

/* ---- classification ---- */

static const char *no_header(const herald_backend_response *response, const char *name)
{
    (void)response;
    (void)name;
    return NULL;
}

static herald_verdict classify(long status, const char *body, const char *transport_error)
{
    void *s = create_ok("{\"url\":\"https://x/\"}");
    herald_backend_response r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.body = body;
    r.body_length = body ? strlen(body) : 0;
    r.transport_error = transport_error;
    r.header = no_header;
    const char *events[] = {"{}"};
    size_t lengths[] = {2};
    herald_backend_batch batch;
    memset(&batch, 0, sizeof batch);
    batch.count = 1;
    batch.events = events;
    batch.event_lengths = lengths;
    batch.now_ms = NOW_MS;
    batch.attempt = 1;
    herald_verdict v;
    memset(&v, 0x5a, sizeof v);
    rest()->classify(s, &r, &batch, &v);
    rest()->destroy(s);
    return v;
}

static void assert_kind(long status, herald_verdict_kind kind)
{
    herald_verdict v = classify(status, NULL, NULL);
    if (v.kind != kind)
        fail_msg("HTTP %ld classified as %d, expected %d", status, v.kind, kind);
    assert_int_equal(v.dropped, 0);
    char expected[32];
    snprintf(expected, sizeof expected, "HTTP %ld", status);
    if (status != 0)
        assert_string_equal(v.reason, expected);
}

static void test_classify_status(void **state)
{
    (void)state;
    static const long ok[] = {200, 201, 202, 204, 299};
    static const long retry[] = {0, 408, 429, 500, 502, 503, 504, 599};
    static const long reject[] = {100, 199, 300, 301, 304, 400, 401, 403, 404, 405, 409, 410, 412,
                                  414, 415, 422, 451, 499};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        assert_kind(ok[i], HERALD_VERDICT_OK);
    for (size_t i = 0; i < sizeof retry / sizeof *retry; i++)
        assert_kind(retry[i], HERALD_VERDICT_RETRY);
    for (size_t i = 0; i < sizeof reject / sizeof *reject; i++)
        assert_kind(reject[i], HERALD_VERDICT_REJECT);
    assert_kind(413, HERALD_VERDICT_SPLIT);
}

static void test_classify_reason(void **state)
{
    (void)state;
    herald_verdict v = classify(0, NULL, "Connection refused");
    assert_int_equal(v.kind, HERALD_VERDICT_RETRY);
    assert_string_equal(v.reason, "no response: Connection refused");
    v = classify(0, NULL, NULL);
    assert_int_equal(v.kind, HERALD_VERDICT_RETRY);
    assert_true(strlen(v.reason) > strlen("no response"));
    /* The first line of the body, printable ASCII only. */
    v = classify(400, "{\"error\":\"bad write key\"}\nsecond line", NULL);
    assert_int_equal(v.kind, HERALD_VERDICT_REJECT);
    assert_string_equal(v.reason, "HTTP 400: {\"error\":\"bad write key\"}");
    v = classify(503, "busy\r\nmore", NULL);
    assert_int_equal(v.kind, HERALD_VERDICT_RETRY);
    assert_string_equal(v.reason, "HTTP 503: busy");
    v = classify(422, "a\tb\x01" "c\xc3\xa9", NULL);
    assert_string_equal(v.reason, "HTTP 422: a?b?c??");
    v = classify(500, "", NULL);
    assert_string_equal(v.reason, "HTTP 500");
    v = classify(200, "{\"ok\":true}", NULL);
    assert_int_equal(v.kind, HERALD_VERDICT_OK);
    assert_string_equal(v.reason, "HTTP 200");
    /* A long body is cut, and the reason stays NUL-terminated. */
    char big[4096];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    v = classify(400, big, NULL);
    assert_true(strlen(v.reason) < sizeof v.reason);
    assert_true(strlen(v.reason) > 100);
    assert_int_equal(strncmp(v.reason, "HTTP 400: zzz", 13), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_config_valid),
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_config_headers_validated),
        cmocka_unit_test(test_header_value_del_refused),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_encode_batch),
        cmocka_unit_test(test_encode_batch_many),
        cmocka_unit_test(test_encode_single),
        cmocka_unit_test(test_write_key_basic_auth),
        cmocka_unit_test(test_custom_headers),
        cmocka_unit_test(test_classify_status),
        cmocka_unit_test(test_classify_reason),
    };
    return cmocka_run_group_tests_name("rest", tests, NULL, NULL);
}
