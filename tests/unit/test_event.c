/* Unit tests: event building (src/event.c) — validation, completion into the
 * Segment shape with a fixed clock and fixed message ids, timestamps, UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "event.h"

#define NOW_MS 1700000000123LL /* 2023-11-14T22:13:20.123Z */
#define NOW_TEXT "2023-11-14T22:13:20.123Z"
#define ANON "anon-0001"

typedef struct id_source {
    int calls;
} id_source;

static void fixed_id(char out[37], void *ctx)
{
    id_source *src = ctx;
    src->calls++;
    snprintf(out, 37, "00000000-0000-4000-8000-%012d", src->calls);
}

typedef struct ctx {
    id_source ids;
    herald_event_env env;
    char *json;
    size_t len;
    const char *type;
    char err[256];
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    c->env.now_ms = NOW_MS;
    c->env.anonymous_id = ANON;
    c->env.user_id = NULL;
    c->env.max_event_bytes = 32768;
    c->env.new_message_id = fixed_id;
    c->env.new_message_id_ctx = &c->ids;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    free(c->json);
    free(c);
    return 0;
}

/* Run herald_event_finish on a JSON text; on success *out holds the parsed
 * result (caller decrefs). */
static herald_status finish(ctx *c, const char *text, json_t **out)
{
    json_error_t jerr;
    json_t *message = json_loads(text, 0, &jerr);
    if (message == NULL)
        fail_msg("test input does not parse: %s: %s", text, jerr.text);
    free(c->json);
    c->json = NULL;
    c->len = 0;
    c->type = NULL;
    c->err[0] = '\0';
    herald_status st =
        herald_event_finish(&c->env, message, &c->json, &c->len, &c->type, c->err, sizeof c->err);
    if (out != NULL)
        *out = NULL;
    if (st == HERALD_OK) {
        assert_non_null(c->json);
        assert_int_equal(c->len, strlen(c->json));
        if (out != NULL) {
            *out = json_loads(c->json, 0, &jerr);
            assert_non_null(*out);
        }
    } else {
        assert_null(c->json);
        /* Every refusal explains itself. */
        assert_true(strlen(c->err) > 0);
    }
    return st;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void assert_library(json_t *m)
{
    json_t *library = json_object_get(json_object_get(m, "context"), "library");
    assert_true(json_is_object(library));
    assert_string_equal(str(library, "name"), "herald");
    assert_string_equal(str(library, "version"), HERALD_VERSION_STRING);
}

static void assert_refused(ctx *c, const char *text, herald_status expected)
{
    herald_status st = finish(c, text, NULL);
    if (st != expected)
        fail_msg("%s: got %d, expected %d (%s)", text, st, expected, c->err);
}

/* ---- the Segment shape ---- */

static void test_track_exact_serialization(void **state)
{
    ctx *c = *state;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"Signed Up\","
                               "\"properties\":{\"plan\":\"pro\"}}",
                            NULL),
                     HERALD_OK);
    assert_string_equal(
        c->json, "{\"type\":\"track\",\"event\":\"Signed Up\",\"properties\":{\"plan\":\"pro\"},"
                 "\"messageId\":\"00000000-0000-4000-8000-000000000001\","
                 "\"timestamp\":\"" NOW_TEXT "\",\"anonymousId\":\"" ANON "\","
                 "\"context\":{\"library\":{\"name\":\"herald\",\"version\":\"" HERALD_VERSION_STRING
                 "\"}}}");
    assert_string_equal(c->type, "track");
    assert_int_equal(c->ids.calls, 1);
}

static void test_each_type_shape(void **state)
{
    ctx *c = *state;
    static const struct {
        const char *input;
        const char *type;
        int properties; /* 1: has {} properties */
        int traits;
    } cases[] = {
        {"{\"type\":\"track\",\"event\":\"e\"}", "track", 1, 0},
        {"{\"type\":\"page\"}", "page", 1, 0},
        {"{\"type\":\"page\",\"name\":\"Home\"}", "page", 1, 0},
        {"{\"type\":\"screen\",\"name\":\"Main\"}", "screen", 1, 0},
        {"{\"type\":\"identify\",\"userId\":\"u1\"}", "identify", 0, 1},
        {"{\"type\":\"group\",\"groupId\":\"g1\"}", "group", 0, 1},
        {"{\"type\":\"alias\",\"previousId\":\"p\",\"userId\":\"u\"}", "alias", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *m = NULL;
        assert_int_equal(finish(c, cases[i].input, &m), HERALD_OK);
        assert_string_equal(c->type, cases[i].type);
        assert_string_equal(str(m, "type"), cases[i].type);
        char expected_id[37];
        snprintf(expected_id, sizeof expected_id, "00000000-0000-4000-8000-%012d", c->ids.calls);
        assert_string_equal(str(m, "messageId"), expected_id);
        assert_string_equal(str(m, "timestamp"), NOW_TEXT);
        assert_string_equal(str(m, "anonymousId"), ANON);
        assert_library(m);
        json_t *props = json_object_get(m, "properties");
        json_t *traits = json_object_get(m, "traits");
        if (cases[i].properties) {
            assert_true(json_is_object(props));
            assert_int_equal(json_object_size(props), 0);
        } else {
            assert_null(props);
        }
        if (cases[i].traits) {
            assert_true(json_is_object(traits));
            assert_int_equal(json_object_size(traits), 0);
        } else {
            assert_null(traits);
        }
        json_decref(m);
    }
    assert_int_equal(c->ids.calls, (int)(sizeof cases / sizeof *cases));
}

static void test_page_name_kept(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"page\",\"name\":\"Pricing\",\"properties\":{\"a\":1}}", &m),
                     HERALD_OK);
    assert_string_equal(str(m, "name"), "Pricing");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "properties"), "a")), 1);
    json_decref(m);
}

static void test_user_id_from_env(void **state)
{
    ctx *c = *state;
    c->env.user_id = "user-7";
    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\"}", &m), HERALD_OK);
    assert_string_equal(str(m, "userId"), "user-7");
    assert_string_equal(str(m, "anonymousId"), ANON);
    json_decref(m);

    /* A given userId wins over the remembered one. */
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\",\"userId\":\"other\"}", &m),
                     HERALD_OK);
    assert_string_equal(str(m, "userId"), "other");
    json_decref(m);

    /* alias carries only the ids it was given. */
    assert_int_equal(finish(c, "{\"type\":\"alias\",\"previousId\":\"old\",\"userId\":\"new\"}", &m),
                     HERALD_OK);
    assert_string_equal(str(m, "userId"), "new");
    assert_string_equal(str(m, "previousId"), "old");
    json_decref(m);

    /* No user: no userId key at all. */
    c->env.user_id = NULL;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\"}", &m), HERALD_OK);
    assert_null(json_object_get(m, "userId"));
    json_decref(m);
}

static void test_given_fields_kept(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c,
                            "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"my-id-1\","
                            "\"timestamp\":\"2020-01-02T03:04:05+01:00\",\"anonymousId\":\"a-9\"}",
                            &m),
                     HERALD_OK);
    assert_string_equal(str(m, "messageId"), "my-id-1");
    assert_string_equal(str(m, "timestamp"), "2020-01-02T03:04:05+01:00");
    assert_string_equal(str(m, "anonymousId"), "a-9");
    assert_int_equal(c->ids.calls, 0);
    json_decref(m);
}

static void test_null_fields_filled(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c,
                            "{\"type\":\"track\",\"event\":\"e\",\"timestamp\":null,"
                            "\"properties\":null,\"anonymousId\":null,\"messageId\":null}",
                            &m),
                     HERALD_OK);
    assert_string_equal(str(m, "timestamp"), NOW_TEXT);
    assert_string_equal(str(m, "anonymousId"), ANON);
    assert_string_equal(str(m, "messageId"), "00000000-0000-4000-8000-000000000001");
    assert_true(json_is_object(json_object_get(m, "properties")));
    json_decref(m);
}

static void test_integer_ids_stringified(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"identify\",\"userId\":12345,\"messageId\":77}", &m),
                     HERALD_OK);
    assert_string_equal(str(m, "userId"), "12345");
    assert_string_equal(str(m, "messageId"), "77");
    json_decref(m);
}

static void test_context_kept_and_library_added(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\",\"context\":{\"ip\":\"1.2.3.4\"}}",
                            &m),
                     HERALD_OK);
    json_t *context = json_object_get(m, "context");
    assert_string_equal(str(context, "ip"), "1.2.3.4");
    assert_library(m);
    json_decref(m);

    /* A caller's own library entry is left alone. */
    assert_int_equal(finish(c,
                            "{\"type\":\"track\",\"event\":\"e\",\"context\":{\"library\":"
                            "{\"name\":\"herald-py\",\"version\":\"9\"}}}",
                            &m),
                     HERALD_OK);
    json_t *library = json_object_get(json_object_get(m, "context"), "library");
    assert_string_equal(str(library, "name"), "herald-py");
    assert_string_equal(str(library, "version"), "9");
    json_decref(m);
}

static void test_message_id_length(void **state)
{
    ctx *c = *state;
    char text[512];
    char id[128];
    /* 100 bytes: accepted and kept. */
    memset(id, 'm', 100);
    id[100] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"%s\"}", id);
    json_t *m = NULL;
    assert_int_equal(finish(c, text, &m), HERALD_OK);
    assert_string_equal(str(m, "messageId"), id);
    json_decref(m);
    /* 101 bytes: refused. */
    memset(id, 'm', 101);
    id[101] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"%s\"}", id);
    assert_refused(c, text, HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "messageId"));
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"\"}",
                   HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"messageId\":[1]}",
                   HERALD_E_INVALID_ARGUMENT);
}

/* ---- refusals ---- */

static void test_type_required(void **state)
{
    ctx *c = *state;
    assert_refused(c, "{\"event\":\"e\"}", HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "type"));
    assert_refused(c, "{\"type\":\"click\",\"event\":\"e\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"Track\",\"event\":\"e\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":1}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":null}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{}", HERALD_E_INVALID_ARGUMENT);
}

static void test_required_ids(void **state)
{
    ctx *c = *state;
    assert_refused(c, "{\"type\":\"track\"}", HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "event"));
    assert_refused(c, "{\"type\":\"track\",\"event\":\"\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"track\",\"event\":null}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"track\",\"event\":{}}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"track\",\"event\":true}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"alias\",\"userId\":\"u\"}", HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "previousId"));
    assert_refused(c, "{\"type\":\"alias\",\"previousId\":\"p\"}", HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "userId"));
    assert_refused(c, "{\"type\":\"group\"}", HERALD_E_INVALID_ARGUMENT);
    assert_non_null(strstr(c->err, "groupId"));
    assert_refused(c, "{\"type\":\"identify\",\"userId\":\"\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"page\",\"anonymousId\":\"\"}", HERALD_E_INVALID_ARGUMENT);
    assert_refused(c, "{\"type\":\"page\",\"name\":5}", HERALD_E_INVALID_ARGUMENT);

    /* Ids are at most 1024 bytes. */
    char text[1200];
    char name[1100];
    memset(name, 'n', 1025);
    name[1025] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"track\",\"event\":\"%s\"}", name);
    assert_refused(c, text, HERALD_E_INVALID_ARGUMENT);
    name[1024] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"track\",\"event\":\"%s\"}", name);
    assert_int_equal(finish(c, text, NULL), HERALD_OK);
}

static void test_objects_must_be_objects(void **state)
{
    ctx *c = *state;
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":[1,2]}",
                   HERALD_E_NOT_OBJECT);
    assert_non_null(strstr(c->err, "properties"));
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":\"x\"}",
                   HERALD_E_NOT_OBJECT);
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":3}", HERALD_E_NOT_OBJECT);
    assert_refused(c, "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":[]}", HERALD_E_NOT_OBJECT);
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"context\":\"c\"}", HERALD_E_NOT_OBJECT);
    assert_refused(c, "{\"type\":\"track\",\"event\":\"e\",\"integrations\":false}",
                   HERALD_E_NOT_OBJECT);
}

static void test_bad_timestamp(void **state)
{
    ctx *c = *state;
    static const char *const bad[] = {
        "\"yesterday\"", "\"2024-13-01T00:00:00Z\"", "\"2024-01-01\"", "\"2024-01-01T00:00:00\"",
        "1700000000",    "\"\"",                     "true",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"type\":\"track\",\"event\":\"e\",\"timestamp\":%s}", bad[i]);
        assert_refused(c, text, HERALD_E_INVALID_ARGUMENT);
        assert_non_null(strstr(c->err, "timestamp"));
    }
}

static void test_too_large(void **state)
{
    ctx *c = *state;
    const char *text = "{\"type\":\"track\",\"event\":\"e\",\"properties\":{\"k\":\"vvvvvvvvvv\"}}";
    assert_int_equal(finish(c, text, NULL), HERALD_OK);
    size_t built = c->len;
    assert_true(built > 100);
    /* Exactly at the bound: accepted. */
    c->env.max_event_bytes = (uint32_t)built;
    assert_int_equal(finish(c, text, NULL), HERALD_OK);
    assert_int_equal(c->len, built);
    /* One byte over: refused, and the message gives both sizes. */
    c->env.max_event_bytes = (uint32_t)built - 1;
    assert_refused(c, text, HERALD_E_TOO_LARGE);
    char expected[64];
    snprintf(expected, sizeof expected, "%zu", built);
    assert_non_null(strstr(c->err, expected));
    c->env.max_event_bytes = 256;
    char big[1024];
    char value[600];
    memset(value, 'x', 599);
    value[599] = '\0';
    snprintf(big, sizeof big, "{\"type\":\"track\",\"event\":\"e\",\"properties\":{\"k\":\"%s\"}}",
             value);
    assert_refused(c, big, HERALD_E_TOO_LARGE);
}

/* ---- herald_event_parse_object ---- */

static void test_parse_object(void **state)
{
    (void)state;
    char err[256] = "";
    json_t *out = NULL;
    assert_int_equal(herald_event_parse_object(NULL, "properties", &out, err, sizeof err),
                     HERALD_OK);
    assert_true(json_is_object(out));
    assert_int_equal(json_object_size(out), 0);
    json_decref(out);

    out = NULL;
    assert_int_equal(herald_event_parse_object("{\"a\":[1,{\"b\":null}]}", "properties", &out, err,
                                               sizeof err),
                     HERALD_OK);
    assert_true(json_is_array(json_object_get(out, "a")));
    json_decref(out);

    out = NULL;
    err[0] = '\0';
    assert_int_equal(herald_event_parse_object("{\"a\":", "properties", &out, err, sizeof err),
                     HERALD_E_INVALID_JSON);
    assert_null(out);
    assert_non_null(strstr(err, "properties"));
    assert_int_equal(herald_event_parse_object("", "p", &out, err, sizeof err),
                     HERALD_E_INVALID_JSON);
    assert_int_equal(herald_event_parse_object("{\"a\":1,\"a\":2}", "p", &out, err, sizeof err),
                     HERALD_E_INVALID_JSON);
    assert_int_equal(herald_event_parse_object("{\"a\":\"\xff\"}", "p", &out, err, sizeof err),
                     HERALD_E_INVALID_JSON);
    err[0] = '\0';
    assert_int_equal(herald_event_parse_object("[1,2]", "traits", &out, err, sizeof err),
                     HERALD_E_NOT_OBJECT);
    assert_null(out);
    assert_non_null(strstr(err, "traits"));
    assert_int_equal(herald_event_parse_object("[]", "traits", &out, err, sizeof err),
                     HERALD_E_NOT_OBJECT);
}

/* Regression (was a bug: json_loads() without JSON_DECODE_ANY made JSON
 * scalars HERALD_E_INVALID_JSON): valid JSON that is not an object is
 * HERALD_E_NOT_OBJECT, as herald.h promises. */
static void test_parse_object_scalar_is_not_object(void **state)
{
    (void)state;
    static const char *const scalars[] = {"42", "\"str\"", "true", "null", "1.5"};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) {
        char err[256] = "";
        json_t *out = NULL;
        herald_status st = herald_event_parse_object(scalars[i], "properties", &out, err, sizeof err);
        if (st != HERALD_E_NOT_OBJECT)
            fail_msg("herald_event_parse_object(%s) = %d, expected HERALD_E_NOT_OBJECT (%d): %s",
                     scalars[i], st, HERALD_E_NOT_OBJECT, err);
        assert_null(out);
    }
}

/* ---- timestamps ---- */

static void test_format_timestamp(void **state)
{
    (void)state;
    char buf[25];
    memset(buf, 'x', sizeof buf);
    herald_format_timestamp(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    herald_format_timestamp(NOW_MS, buf);
    assert_string_equal(buf, NOW_TEXT);
    herald_format_timestamp(951782400999LL, buf);
    assert_string_equal(buf, "2000-02-29T00:00:00.999Z");
    herald_format_timestamp(1483228799001LL, buf);
    assert_string_equal(buf, "2016-12-31T23:59:59.001Z");
    herald_format_timestamp(4102444800000LL, buf);
    assert_string_equal(buf, "2100-01-01T00:00:00.000Z");
    assert_int_equal(strlen(buf), 24);
    /* What it formats, the validator accepts. */
    assert_int_equal(herald_timestamp_valid(buf), 1);
}

static void test_timestamp_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "2024-01-02T03:04:05Z",        "2024-01-02T03:04:05.1Z",
        "2024-01-02T03:04:05.123456Z", "2024-01-02t03:04:05z",
        "2024-01-02 03:04:05Z",        "2024-01-02T03:04:05+05:30",
        "2024-01-02T03:04:05-00:00",   "2024-01-02T03:04:05.999-23:59",
        "2016-12-31T23:59:60Z",        "0001-01-01T00:00:00Z",
    };
    static const char *const bad[] = {
        "",
        "2024",
        "2024-01-02",
        "2024-01-02T03:04Z",
        "2024-01-02T03:04:05",
        "2024-1-02T03:04:05Z",
        "2024-01-2T03:04:05Z",
        "24-01-02T03:04:05Z",
        "2024-00-02T03:04:05Z",
        "2024-13-02T03:04:05Z",
        "2024-01-00T03:04:05Z",
        "2024-01-32T03:04:05Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T23:60:00Z",
        "2024-01-02T23:59:61Z",
        "2024-01-02X03:04:05Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T03:04:05+0530",
        "2024-01-02T03:04:05+05",
        "2024-01-02T03:04:05+24:00",
        "2024-01-02T03:04:05+05:60",
        "2024-01-02T03:04:05Z ",
        "2024-01-02T03:04:05ZZ",
        "2024-01-02T03:04:05+05:30x",
        "2024/01/02T03:04:05Z",
        "yesterday",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (herald_timestamp_valid(good[i]) != 1)
            fail_msg("\"%s\" should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (herald_timestamp_valid(bad[i]) != 0)
            fail_msg("\"%s\" should be invalid", bad[i]);
}

/* ---- UTF-8 ---- */

static void test_utf8_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
        "\xef\xbf\xbf", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80",
    };
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "\xfe",             /* never valid */
        "\x80",             /* lone continuation */
        "a\xbf\x62",        /* lone continuation inside ("\x62" is b) */
        "\xc3",             /* truncated 2-byte */
        "\xe2\x82",         /* truncated 3-byte */
        "\xf0\x9f\x98",     /* truncated 4-byte */
        "\xc3(",            /* bad continuation */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong 3-byte */
        "\xf0\x80\x80\x80", /* overlong 4-byte */
        "\xed\xa0\x80",     /* surrogate D800 */
        "\xed\xbf\xbf",     /* surrogate DFFF */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (herald_utf8_valid(good[i]) != 1)
            fail_msg("good[%zu] should be valid UTF-8", i);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (herald_utf8_valid(bad[i]) != 0)
            fail_msg("bad[%zu] should be invalid UTF-8", i);
}

/* ---- message ids ---- */

static int is_uuid_v4(const char *s)
{
    if (strlen(s) != 36)
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

static void test_uuid_random(void **state)
{
    (void)state;
    char a[37], b[37];
    memset(a, 'x', sizeof a);
    herald_uuid_random(a, NULL);
    herald_uuid_random(b, NULL);
    assert_true(is_uuid_v4(a));
    assert_true(is_uuid_v4(b));
    assert_string_not_equal(a, b);
}

static void test_real_ids_in_events(void **state)
{
    ctx *c = *state;
    c->env.new_message_id = herald_uuid_random;
    c->env.new_message_id_ctx = NULL;
    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\"}", &m), HERALD_OK);
    assert_true(is_uuid_v4(str(m, "messageId")));
    json_decref(m);
}

/* Message ids: UUIDv7, strictly increasing within a generator (same
 * millisecond, a new one, a clock that steps back), time in the top bits. */
static void test_uuid_v7_monotonic(void **state)
{
    (void)state;
    herald_idgen g = {.random = NULL};
    herald_idgen_reset(&g);
    char prev[37] = "", id[37];
    int64_t times[] = {1700000000000LL, 1700000000000LL, 1700000000001LL, 1699999999000LL};
    for (size_t t = 0; t < sizeof times / sizeof *times; t++) {
        g.now_ms = times[t];
        for (int i = 0; i < 5000; i++) {
            herald_uuid_v7(id, &g);
            assert_int_equal(strlen(id), 36);
            assert_int_equal(id[14], '7');
            assert_non_null(strchr("89ab", id[19]));
            if (prev[0] != '\0' && strcmp(prev, id) >= 0)
                fail_msg("not increasing: %s then %s", prev, id);
            memcpy(prev, id, sizeof id);
        }
    }
    /* The clock stepped back: ids stay on the latest millisecond. */
    assert_int_equal(strncmp(id, "018bcfe5-6801", 13), 0);
    /* A reset (fork) reseeds: the next id is not the last one plus one. */
    herald_idgen_reset(&g);
    g.now_ms = 1700000000001LL;
    herald_uuid_v7(id, &g);
    assert_int_equal(strncmp(id, "018bcfe5-6801", 13), 0);
    assert_string_not_equal(id, prev);
}

static void fill_counting(void *buf, size_t len, void *user)
{
    (void)user;
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)i;
}

static void fill_ff(void *buf, size_t len, void *user)
{
    (void)user;
    memset(buf, 0xff, len);
}

static void test_uuid_from_injected_random(void **state)
{
    (void)state;
    char out[37];
    herald_random r = {fill_counting, NULL};
    herald_uuid_random(out, &r);
    /* Version nibble 4 and variant 10xx forced, everything else as drawn. */
    assert_string_equal(out, "00010203-0405-4607-8809-0a0b0c0d0e0f");
    r.fn = fill_ff;
    herald_uuid_random(out, &r);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

/* ---- enrichment: context snapshot, traits, group, session, page ---- */

static void test_context_enrichment(void **state)
{
    ctx *c = *state;
    json_t *snapshot = json_pack("{s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s},s:s}", "library", "name",
                                 "herald", "version", HERALD_VERSION_STRING, "os", "name", "TestOS",
                                 "version", "7", "app", "name", "demo", "version", "1", "locale",
                                 "de-DE");
    json_t *traits = json_pack("{s:s}", "email", "a@example.com");
    json_t *snapshot_before = json_deep_copy(snapshot);
    c->env.context = snapshot;
    c->env.traits = traits;
    c->env.group_id = "g-1";
    c->env.session_id = 1234;
    c->env.session_sequence = 7;

    json_t *m = NULL;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\"}", &m), HERALD_OK);
    json_t *context = json_object_get(m, "context");
    assert_string_equal(str(json_object_get(context, "os"), "name"), "TestOS");
    assert_string_equal(str(json_object_get(context, "app"), "name"), "demo");
    assert_string_equal(str(context, "locale"), "de-DE");
    assert_string_equal(str(json_object_get(context, "traits"), "email"), "a@example.com");
    assert_string_equal(str(context, "groupId"), "g-1");
    json_t *session = json_object_get(context, "session");
    assert_int_equal(json_integer_value(json_object_get(session, "id")), 1234);
    assert_int_equal(json_integer_value(json_object_get(session, "sequence")), 7);
    assert_library(m);
    json_decref(m);

    /* identify carries its own traits; group its own groupId. */
    assert_int_equal(finish(c, "{\"type\":\"identify\",\"userId\":\"u\"}", &m), HERALD_OK);
    assert_null(json_object_get(json_object_get(m, "context"), "traits"));
    assert_string_equal(str(json_object_get(m, "context"), "groupId"), "g-1");
    json_decref(m);
    assert_int_equal(finish(c, "{\"type\":\"group\",\"groupId\":\"g-2\"}", &m), HERALD_OK);
    assert_null(json_object_get(json_object_get(m, "context"), "groupId"));
    assert_string_equal(str(m, "groupId"), "g-2");
    json_decref(m);

    /* What the caller gives wins; objects merge one level deep. */
    assert_int_equal(finish(c,
                            "{\"type\":\"track\",\"event\":\"e\",\"context\":{\"app\":"
                            "{\"version\":\"2\"},\"ip\":\"1.2.3.4\",\"traits\":{\"x\":1},"
                            "\"groupId\":\"g-x\",\"session\":{\"id\":1}}}",
                            &m),
                     HERALD_OK);
    context = json_object_get(m, "context");
    assert_string_equal(str(json_object_get(context, "app"), "name"), "demo");
    assert_string_equal(str(json_object_get(context, "app"), "version"), "2");
    assert_string_equal(str(context, "ip"), "1.2.3.4");
    assert_null(json_object_get(json_object_get(context, "traits"), "email"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(context, "traits"), "x")), 1);
    assert_string_equal(str(context, "groupId"), "g-x");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(context, "session"), "id")),
                     1);
    json_decref(m);

    /* The snapshot itself is never changed. */
    assert_true(json_equal(snapshot, snapshot_before));

    /* No traits, group or session: none of those keys. */
    json_t *empty = json_object();
    c->env.traits = empty;
    c->env.group_id = NULL;
    c->env.session_id = 0;
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\"}", &m), HERALD_OK);
    context = json_object_get(m, "context");
    assert_null(json_object_get(context, "traits"));
    assert_null(json_object_get(context, "groupId"));
    assert_null(json_object_get(context, "session"));
    json_decref(m);
    json_decref(empty);
    json_decref(snapshot);
    json_decref(snapshot_before);
    json_decref(traits);
}

static void test_page_url_enrichment(void **state)
{
    ctx *c = *state;
    json_t *m = NULL;
    assert_int_equal(finish(c,
                            "{\"type\":\"page\",\"name\":\"Pricing\",\"properties\":{\"url\":"
                            "\"https://example.com/pricing?utm_source=news&utm_medium=email\","
                            "\"title\":\"Prices\"}}",
                            &m),
                     HERALD_OK);
    json_t *context = json_object_get(m, "context");
    json_t *page = json_object_get(context, "page");
    assert_string_equal(str(page, "url"),
                        "https://example.com/pricing?utm_source=news&utm_medium=email");
    assert_string_equal(str(page, "path"), "/pricing");
    assert_string_equal(str(page, "search"), "?utm_source=news&utm_medium=email");
    assert_string_equal(str(page, "title"), "Prices");
    json_t *campaign = json_object_get(context, "campaign");
    assert_string_equal(str(campaign, "source"), "news");
    assert_string_equal(str(campaign, "medium"), "email");
    json_decref(m);

    /* A track event uses context.page.url only, and given page fields win. */
    assert_int_equal(finish(c,
                            "{\"type\":\"track\",\"event\":\"e\",\"properties\":{\"url\":"
                            "\"https://example.com/ignored\"},\"context\":{\"page\":{\"url\":"
                            "\"https://example.com/a/b?q=1\",\"path\":\"/given\"}}}",
                            &m),
                     HERALD_OK);
    page = json_object_get(json_object_get(m, "context"), "page");
    assert_string_equal(str(page, "url"), "https://example.com/a/b?q=1");
    assert_string_equal(str(page, "path"), "/given");
    assert_string_equal(str(page, "search"), "?q=1");
    assert_null(json_object_get(json_object_get(m, "context"), "campaign"));
    json_decref(m);

    /* No URL: no page context; an unreadable URL leaves what was given. */
    assert_int_equal(finish(c, "{\"type\":\"track\",\"event\":\"e\",\"properties\":{\"url\":"
                               "\"https://example.com/x\"}}",
                            &m),
                     HERALD_OK);
    assert_null(json_object_get(json_object_get(m, "context"), "page"));
    json_decref(m);
    assert_int_equal(finish(c, "{\"type\":\"page\",\"properties\":{\"url\":\"not a url\"}}", &m),
                     HERALD_OK);
    assert_null(json_object_get(json_object_get(m, "context"), "page"));
    json_decref(m);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_track_exact_serialization),
        T(test_each_type_shape),
        T(test_page_name_kept),
        T(test_user_id_from_env),
        T(test_given_fields_kept),
        T(test_null_fields_filled),
        T(test_integer_ids_stringified),
        T(test_context_kept_and_library_added),
        T(test_message_id_length),
        T(test_type_required),
        T(test_required_ids),
        T(test_objects_must_be_objects),
        T(test_bad_timestamp),
        T(test_too_large),
        T(test_parse_object),
        T(test_parse_object_scalar_is_not_object),
        T(test_format_timestamp),
        T(test_timestamp_valid),
        T(test_utf8_valid),
        T(test_uuid_random),
        T(test_real_ids_in_events),
        T(test_uuid_v7_monotonic),
        T(test_uuid_from_injected_random),
        T(test_context_enrichment),
        T(test_page_url_enrichment),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
