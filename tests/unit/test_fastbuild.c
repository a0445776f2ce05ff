/* Unit tests: the fast event builder (src/fastbuild.c) against its reference,
 * herald_event_finish. Every case runs both: where the fast path answers,
 * its body must be the same JSON value (json_equal) as the slow path's;
 * where the slow path refuses a call or redaction would change it, the fast
 * path must fall back. Each case also says which of the two it expects, so
 * a fast path that always falls back fails too. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "context.h"
#include "event.h"
#include "fastbuild.h"
#include "redact.h"

#define NOW_MS 1700000000123LL
#define MESSAGE_ID "6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d"
#define SESSION_ID 1700000000000LL

enum { FAST, FALLBACK };

static void fixed_id(char out[37], void *ctx)
{
    (void)ctx;
    memcpy(out, MESSAGE_ID, 37);
}

/* A context snapshot as herald_open builds one. */
static json_t *make_snapshot(void)
{
    herald_host_info host;
    memset(&host, 0, sizeof host);
    strcpy(host.os_name, "Debian GNU/Linux");
    strcpy(host.os_version, "12");
    strcpy(host.arch, "x86_64");
    strcpy(host.locale, "en-US");
    strcpy(host.timezone, "Europe/Berlin");
    strcpy(host.device_type, "server");
    herald_options opts;
    herald_options_init(&opts);
    opts.app_name = "shop";
    opts.app_version = "3.2.1";
    opts.app_build = "321";
    opts.user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/120.0.0.0 Safari/537.36";
    json_t *snapshot = herald_context_snapshot(&host, &opts);
    assert_non_null(snapshot);
    return snapshot;
}

typedef struct fixture {
    herald_redactor *redactor;
    json_t *snapshot;
    json_t *traits;
    herald_event_env env;
    herald_fast_frame *frame;
} fixture;

static herald_redactor *make_redactor(const char *config)
{
    herald_redactor *r = NULL;
    char err[256] = "";
    if (herald_redactor_create(config, &r, err, sizeof err) != HERALD_OK)
        fail_msg("redactor config %s: %s", config ? config : "NULL", err);
    return r;
}

static void env_init(fixture *fx, const herald_redactor *r)
{
    memset(&fx->env, 0, sizeof fx->env);
    fx->env.now_ms = NOW_MS;
    fx->env.anonymous_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    fx->env.user_id = "u_8f14e45f";
    fx->env.max_event_bytes = 32768;
    fx->env.context = fx->snapshot;
    fx->env.traits = fx->traits;
    fx->env.group_id = "g-42";
    fx->env.session_id = SESSION_ID;
    fx->env.session_sequence = 3;
    fx->env.redactor = r;
    fx->env.new_message_id = fixed_id;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    fx->redactor = make_redactor(NULL);
    fx->snapshot = make_snapshot();
    fx->traits = json_loads("{\"plan\":\"pro\",\"seats\":12,\"created_at\":\"2024-01-15\"}", 0,
                            NULL);
    env_init(fx, fx->redactor);
    if (herald_fast_frame_build(&fx->env, &fx->frame) != HERALD_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    herald_fast_frame_free(fx->frame);
    json_decref(fx->snapshot);
    json_decref(fx->traits);
    herald_redactor_free(fx->redactor);
    free(fx);
    return 0;
}

/* The slow path as herald_track/herald_screen drive it (typed_call in
 * client.c): the body parsed, or NULL when the call is refused. */
static json_t *slow_body(const herald_event_env *env, const char *type, const char *name,
                         const char *props)
{
    int is_track = strcmp(type, "track") == 0;
    if (is_track && (name == NULL || name[0] == '\0'))
        return NULL;
    json_t *name_value = NULL;
    if (name != NULL && (name_value = json_string(name)) == NULL)
        return NULL;
    json_t *object = NULL;
    char err[256];
    if (herald_event_parse_object(props, "properties", &object, err, sizeof err) != HERALD_OK) {
        json_decref(name_value);
        return NULL;
    }
    json_t *message = json_object();
    assert_non_null(message);
    json_object_set_new(message, "type", json_string(type));
    if (name_value != NULL)
        json_object_set_new(message, is_track ? "event" : "name", name_value);
    json_object_set_new(message, "properties", object);
    char *text = NULL;
    size_t len = 0;
    const char *out_type;
    herald_status st = herald_event_finish(env, message, &text, &len, &out_type, err, sizeof err);
    if (st != HERALD_OK)
        return NULL;
    json_t *body = json_loadb(text, len, 0, NULL);
    assert_non_null(body);
    free(text);
    return body;
}

/* The fast path: the body parsed, or NULL on HERALD_FAST_FALLBACK. */
static json_t *fast_body(const herald_fast_frame *frame, const herald_event_env *env,
                         const char *type, const char *name, const char *props)
{
    herald_fast_args a;
    herald_fast_args_init(&a);
    json_t *body = NULL;
    if (herald_fast_scan(env->redactor, type, name, props, &a) == 0) {
        size_t cap = herald_fast_size_bound(frame, &a);
        char *dst = malloc(cap);
        assert_non_null(dst);
        char id[37];
        env->new_message_id(id, NULL);
        size_t len = herald_fast_assemble(frame, &a, env->now_ms, id, env->session_id,
                                          env->session_sequence, dst, cap);
        assert_true(len > 0);
        assert_int_equal(herald_fast_assemble(frame, &a, env->now_ms, id, env->session_id,
                                              env->session_sequence, dst, len - 1),
                         0);
        json_error_t jerr;
        body = json_loadb(dst, len, JSON_REJECT_DUPLICATES, &jerr);
        if (body == NULL)
            fail_msg("fast body is not JSON (%s): %.*s", jerr.text, (int)len, dst);
        free(dst);
    }
    herald_fast_args_free(&a);
    return body;
}

/* Both paths on one call: the fast one must agree with the slow one, and
 * take the path `expect` says. */
static void check_call(const herald_fast_frame *frame, const herald_event_env *env,
                       const char *type, const char *name, const char *props, int expect)
{
    json_t *slow = slow_body(env, type, name, props);
    json_t *fast = fast_body(frame, env, type, name, props);
    if (fast != NULL) {
        if (slow == NULL)
            fail_msg("fast path accepted what the slow path refuses: %s %s %s", type,
                     name ? name : "(null)", props ? props : "(null)");
        if (!json_equal(slow, fast)) {
            char *a = json_dumps(slow, JSON_COMPACT | JSON_SORT_KEYS);
            char *b = json_dumps(fast, JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("bodies differ for %s\n slow: %s\n fast: %s", props ? props : "(null)", a,
                     b);
        }
    }
    if (expect == FAST && fast == NULL)
        fail_msg("expected the fast path for %s %s %s", type, name ? name : "(null)",
                 props ? props : "(null)");
    if (expect == FALLBACK && fast != NULL)
        fail_msg("expected a fallback for %s %s %s", type, name ? name : "(null)",
                 props ? props : "(null)");
    json_decref(slow);
    json_decref(fast);
}

typedef struct call_case {
    const char *type, *name, *props;
    int expect;
} call_case;

static void run_cases(fixture *fx, const call_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_call(fx->frame, &fx->env, cases[i].type, cases[i].name, cases[i].props,
                   cases[i].expect);
}

#define TYPICAL                                                                                  \
    "{\"plan\":\"pro\",\"seats\":12,\"price\":99.5,\"trial\":false,\"source\":\"bench\","      \
    "\"region\":\"eu-west-1\",\"tier\":3,\"ratio\":0.25}"

static void test_clean_events(void **state)
{
    static const call_case cases[] = {
        {"track", "Bench Event", TYPICAL, FAST},
        {"track", "Bench Event", NULL, FAST},
        {"track", "Bench Event", "{}", FAST},
        {"track", "Bench Event", " \t\r\n{ } \n", FAST},
        {"track", "Order Completed",
         "{ \"order\" : { \"items\" : [ { \"sku\" : \"A-1\", \"qty\" : 2 }, "
         "{ \"sku\" : \"B-2\", \"qty\" : 1, \"tags\" : [ ] } ], \"empty\" : { } }, "
         "\"flags\" : [ true , false , null ], \"nested\" : [[[\"deep\"]]] }",
         FAST},
        {"track", "Café ☕ 日本語 😀", "{\"ville\":\"Zürich\",\"emoji\":\"😀👍\",\"ключ\":\"значение\"}",
         FAST},
        {"track", "Numbers",
         "{\"a\":0,\"b\":-0,\"c\":1,\"d\":-1,\"e\":9223372036854775807,\"f\":-9223372036854775808,"
         "\"g\":1.5,\"h\":-1.5e10,\"i\":1E5,\"j\":1e-400,\"k\":0.1,\"l\":123456789012,"
         "\"m\":1e307,\"n\":0.5e308,\"o\":2.5E-3,\"p\":-0.0,\"q\":1e+2,\"r\":1797693134862315e292}",
         FAST},
        {"track", "a", "{\"\":\"\",\"x\":\"\"}", FAST},
        {"track", "Same key, other objects", "{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}",
         FAST},
        {"screen", "Home", TYPICAL, FAST},
        {"screen", NULL, TYPICAL, FAST},
        {"screen", "", NULL, FAST},
        {"screen", NULL, NULL, FAST},
        /* Sensitive keys keep trivial values and markers (process_scalar). */
        {"track", "Trivial", "{\"password\":\"\",\"token\":null,\"api_key\":true,"
                             "\"email\":\"[email]\",\"secret\":{\"x\":\"false\"},\"pin\":[]}",
         FAST},
        /* Metadata suffixes are not sensitive: token_count, password_strength. */
        {"track", "Meta", "{\"token_count\":512,\"password_strength\":\"weak\",\"email_count\":3}",
         FAST},
        {"track", "Version", "{\"app_version\":\"1.2.3.4\",\"build\":\"2024.01.15\"}", FAST},
        /* V6/V7 are off below version and user-agent keys, objects included */
        {"track", "Version", "{\"version\":{\"detail\":\"203.0.113.5\",\"list\":[\"203.0.113.6\"]}}",
         FAST},
        {"track", "Url", "{\"url\":\"https://www.example.com/pricing\",\"links\":[\"/a\",\"/b\"]}",
         FAST},
    };
    run_cases(*state, cases, sizeof cases / sizeof *cases);
}

static void test_redaction_falls_back(void **state)
{
    static const call_case cases[] = {
        {"track", "Signup", "{\"email\":\"jane.doe@example.com\"}", FALLBACK},
        {"track", "Signup", "{\"note\":\"write to jane.doe@example.com\"}", FALLBACK},
        {"track", "Signup", "{\"password\":\"hunter2\"}", FALLBACK},
        {"track", "Signup", "{\"password\":5}", FALLBACK},
        {"track", "Signup", "{\"password\":1.5}", FALLBACK},
        {"track", "Signup", "{\"secret\":{\"inner\":\"x\"}}", FALLBACK},
        {"track", "Signup", "{\"secrets\":[\"abc\"]}", FALLBACK},
        {"track", "Pay", "{\"card\":\"4111 1111 1111 1111\"}", FALLBACK},
        {"track", "Pay", "{\"n\":4111111111111111}", FALLBACK},
        {"track", "Pay", "{\"iban\":\"x\",\"other\":1}", FALLBACK},
        {"track", "Pay", "{\"note\":\"IBAN DE89 3704 0044 0532 0130 00\"}", FALLBACK},
        {"track", "Call", "{\"contact\":\"+1 202-555-0143\"}", FALLBACK},
        {"track", "Net", "{\"from\":\"203.0.113.5\"}", FALLBACK},
        {"track", "Net", "{\"list\":[\"ok\",\"203.0.113.5\"]}", FALLBACK},
        {"track", "Key", "{\"auth\":\"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig\"}",
         FALLBACK},
        {"track", "Key", "{\"k\":\"sk_live_FAKEsYXpbhlSMJLUoTGuIcHk\"}", FALLBACK},
        {"track", "Url", "{\"url\":\"https://example.com/cb?email=jane.doe%40example.com\"}",
         FALLBACK},
        {"track", "Url", "{\"links\":[\"https://user:pw@example.com/\"]}", FALLBACK},
        {"track", "Path", "{\"crash\":\"at /Users/jdoe42/Library/app.db\"}", FALLBACK},
        /* member names go through the value detectors */
        {"track", "Names", "{\"jane.doe@example.com\":1}", FALLBACK},
        {"track", "Names", "{\"a\":{\"203.0.113.5\":true}}", FALLBACK},
        /* the event name is redacted too */
        {"track", "Signup jane.doe@example.com", "{}", FALLBACK},
        {"screen", "jane.doe@example.com", NULL, FALLBACK},
    };
    run_cases(*state, cases, sizeof cases / sizeof *cases);
}

static void test_invalid_falls_back(void **state)
{
    static const call_case cases[] = {
        {"track", "E", "", FALLBACK},
        {"track", "E", "   ", FALLBACK},
        {"track", "E", "{", FALLBACK},
        {"track", "E", "{\"a\":}", FALLBACK},
        {"track", "E", "{\"a\"}", FALLBACK},
        {"track", "E", "{\"a\":1,}", FALLBACK},
        {"track", "E", "{,}", FALLBACK},
        {"track", "E", "{\"a\":[1,]}", FALLBACK},
        {"track", "E", "{\"a\":[,1]}", FALLBACK},
        {"track", "E", "{\"a\":1 \"b\":2}", FALLBACK},
        {"track", "E", "{\"a\":01}", FALLBACK},
        {"track", "E", "{\"a\":1.}", FALLBACK},
        {"track", "E", "{\"a\":.5}", FALLBACK},
        {"track", "E", "{\"a\":1e}", FALLBACK},
        {"track", "E", "{\"a\":-}", FALLBACK},
        {"track", "E", "{\"a\":+1}", FALLBACK},
        {"track", "E", "{\"a\":12abc}", FALLBACK},
        {"track", "E", "{\"a\":truex}", FALLBACK},
        {"track", "E", "{\"a\":nul}", FALLBACK},
        {"track", "E", "{\"a\":True}", FALLBACK},
        {"track", "E", "{\"a\":'x'}", FALLBACK},
        {"track", "E", "{\"a\":1} x", FALLBACK},
        {"track", "E", "{\"a\":1}{}", FALLBACK},
        {"track", "E", "[1]", FALLBACK},
        {"track", "E", "\"text\"", FALLBACK},
        {"track", "E", "42", FALLBACK},
        {"track", "E", "null", FALLBACK},
        {"track", "E", "{\"a\":1}}", FALLBACK},
        {"track", "E", "{\"a\":[1}", FALLBACK},
        {"track", "E", "{\"a\":{\"b\":1]}", FALLBACK},
        /* jansson's limits */
        {"track", "E", "{\"a\":9223372036854775808}", FALLBACK},
        {"track", "E", "{\"a\":-9223372036854775809}", FALLBACK},
        {"track", "E", "{\"a\":99999999999999999999}", FALLBACK},
        {"track", "E", "{\"a\":10000000000000000000}", FALLBACK},
        {"track", "E", "{\"a\":-10000000000000000000}", FALLBACK},
        {"track", "E", "{\"a\":1e309}", FALLBACK},
        {"track", "E", "{\"a\":-2e308}", FALLBACK},
        {"track", "E", "{\"a\":1,\"a\":2}", FALLBACK},
        {"track", "E", "{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", FALLBACK},
        /* escapes are not decoded: fall back, even where jansson accepts */
        {"track", "E", "{\"a\":\"x\\ny\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\\u00e9\"}", FALLBACK},
        {"track", "E", "{\"a\\\"b\":1}", FALLBACK},
        {"track", "E", "{\"a\":\"\\u0000\"}", FALLBACK},
        /* raw control characters and invalid UTF-8 */
        {"track", "E", "{\"a\":\"x\ty\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\x01\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xc3\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xc0\xaf\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xe0\x80\xaf\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xed\xa0\x80\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xf4\x90\x80\x80\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xf0\x80\x80\x80\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xf5\x80\x80\x80\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xe2\x82x\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xf0\x9f\x98\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xf0\x9f\x98x\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xe2\x82\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xc3x\"}", FALLBACK},
        {"track", "E", "{\"a\":\"\xff\"}", FALLBACK},
        {"track", "E", "{\"\xe2\x82\":1}", FALLBACK},
        /* the name */
        {"track", "", "{}", FALLBACK},
        {"track", NULL, "{}", FALLBACK},
        {"track", "bad \xff utf8", "{}", FALLBACK},
        {"track", "quote \" in name", "{}", FALLBACK},
        {"track", "tab\tin name", "{}", FALLBACK},
        {"screen", "back\\slash", NULL, FALLBACK},
        /* types the fast path does not build */
        {"page", "Home", "{}", FALLBACK},
        {"identify", "u1", "{}", FALLBACK},
        {"group", "g1", "{}", FALLBACK},
    };
    run_cases(*state, cases, sizeof cases / sizeof *cases);
}

static char *repeat(const char *open, const char *middle, const char *close, size_t n)
{
    size_t len = strlen(open) * n + strlen(middle) + strlen(close) * n + 1;
    char *s = malloc(len);
    assert_non_null(s);
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        strcat(s, open);
    strcat(s, middle);
    for (size_t i = 0; i < n; i++)
        strcat(s, close);
    return s;
}

static void test_limits(void **state)
{
    fixture *fx = *state;
    /* Nesting: the properties object and 31 more levels take the fast path. */
    char *deep = repeat("{\"a\":", "1", "}", 32);
    check_call(fx->frame, &fx->env, "track", "Deep", deep, FAST);
    free(deep);
    deep = repeat("{\"a\":", "1", "}", 33);
    check_call(fx->frame, &fx->env, "track", "Deep", deep, FALLBACK);
    free(deep);
    deep = repeat("[", "1", "]", 3000);
    char *props = malloc(strlen(deep) + 8);
    assert_non_null(props);
    sprintf(props, "{\"a\":%s}", deep);
    check_call(fx->frame, &fx->env, "track", "Deep", props, FALLBACK);
    free(props);
    free(deep);

    /* The event name: 1024 bytes at most (check_id). */
    char name[1026];
    memset(name, 'n', sizeof name);
    name[1024] = '\0';
    check_call(fx->frame, &fx->env, "track", name, "{}", FAST);
    name[1024] = 'n';
    name[1025] = '\0';
    check_call(fx->frame, &fx->env, "track", name, "{}", FALLBACK);

    /* Many members, past the key table: fall back, still right. */
    size_t count = 300;
    char *wide = malloc(count * 16 + 8);
    assert_non_null(wide);
    char *p = wide;
    *p++ = '{';
    for (size_t i = 0; i < count; i++)
        p += sprintf(p, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    strcpy(p, "}");
    check_call(fx->frame, &fx->env, "track", "Wide", wide, FALLBACK);
    /* 200 members fit; a duplicate among them is found. */
    p = wide;
    *p++ = '{';
    for (size_t i = 0; i < 200; i++)
        p += sprintf(p, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    strcpy(p, "}");
    check_call(fx->frame, &fx->env, "track", "Wide", wide, FAST);
    strcpy(p, ",\"k117\":1}");
    check_call(fx->frame, &fx->env, "track", "Wide", wide, FALLBACK);
    free(wide);

    /* Over HERALD_FAST_MAX_INPUT: the slow path decides. */
    size_t big = HERALD_FAST_MAX_INPUT + 16;
    char *huge = malloc(big + 16);
    assert_non_null(huge);
    strcpy(huge, "{\"a\":\"");
    memset(huge + 6, 'x', big);
    strcpy(huge + 6 + big, "\"}");
    check_call(fx->frame, &fx->env, "track", "Huge", huge, FALLBACK);
    free(huge);
}

/* The size limit: the fast body may be shorter than json_dumps's (0.1 is
 * "0.10000000000000001" there), so herald_fast_fits leaves room. */
static void test_fits(void **state)
{
    fixture *fx = *state;
    herald_fast_args a;
    herald_fast_args_init(&a);
    assert_int_equal(herald_fast_scan(fx->redactor, "track", "E", "{\"a\":0.1,\"b\":0.2}", &a), 0);
    char dst[4096];
    size_t len =
        herald_fast_assemble(fx->frame, &a, NOW_MS, MESSAGE_ID, SESSION_ID, 1, dst, sizeof dst);
    assert_true(len > 0);
    json_t *body = json_loadb(dst, len, 0, NULL);
    char *slow = json_dumps(body, JSON_COMPACT);
    size_t slow_len = strlen(slow);
    assert_true(slow_len > len);
    assert_false(herald_fast_fits(&a, len, (uint32_t)slow_len - 1));
    assert_true(herald_fast_fits(&a, len, (uint32_t)(len + a.slack)));
    assert_false(herald_fast_fits(&a, len, (uint32_t)len - 1));
    free(slow);
    json_decref(body);
    herald_fast_args_free(&a);

    herald_fast_args_init(&a);
    assert_int_equal(herald_fast_scan(fx->redactor, "track", "E", "{\"a\":1}", &a), 0);
    assert_int_equal(a.slack, 0);
    assert_true(herald_fast_fits(&a, 100, 100));
    assert_false(herald_fast_fits(&a, 101, 100));
    herald_fast_args_free(&a);
}

/* Sessions, clocks: what assemble takes per event. */
static void test_assemble_fields(void **state)
{
    fixture *fx = *state;
    herald_event_env env = fx->env;
    env.session_id = 0;
    check_call(fx->frame, &env, "track", "No session", TYPICAL, FAST);
    env.session_id = -5;
    env.session_sequence = UINT32_MAX;
    check_call(fx->frame, &env, "track", "Odd session", TYPICAL, FAST);
    env.session_id = INT64_MAX;
    check_call(fx->frame, &env, "track", "Odd session", TYPICAL, FAST);
    env.session_id = INT64_MIN;
    check_call(fx->frame, &env, "screen", "Odd session", TYPICAL, FAST);

    /* The timestamp formatter against herald_format_timestamp: epoch, leap
     * days, ends of years, far future, negative, past year 9999. */
    static const int64_t instants[] = {0, 1, 999, 1000, 951782400000, 951868799999,
                                       1078012800000, 4107542400000, 253402300799999,
                                       253402300800000, -1, -1000, -86400001,
                                       INT64_C(32503680000000)};
    for (size_t i = 0; i < sizeof instants / sizeof *instants; i++) {
        env.now_ms = instants[i];
        check_call(fx->frame, &env, "track", "Clock", "{}", FAST);
    }
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        env.now_ms = (int64_t)(x % UINT64_C(253402300800000));
        env.session_sequence = (uint32_t)x;
        check_call(fx->frame, &env, "screen", NULL, "{}", FAST);
    }
}

/* Frames: identity and context that redaction would change fall back as a
 * whole; others match the slow path whatever they hold. */
static void test_frames(void **state)
{
    fixture *fx = *state;
    herald_event_env env = fx->env;
    herald_fast_frame *frame = NULL;

    env.user_id = "jane.doe@example.com";
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_FAST_FALLBACK);
    assert_null(frame);

    env = fx->env;
    json_t *traits = json_loads("{\"email\":\"jane.doe@example.com\"}", 0, NULL);
    env.traits = traits;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_FAST_FALLBACK);
    json_decref(traits);

    env = fx->env;
    json_t *context = json_deep_copy(fx->snapshot);
    json_object_set_new(context, "ip", json_string("203.0.113.5"));
    env.context = context;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_FAST_FALLBACK);
    json_decref(context);

    /* No identity, no snapshot, no traits: context.library alone. */
    env = fx->env;
    env.user_id = NULL;
    env.context = NULL;
    env.traits = NULL;
    env.group_id = NULL;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Bare", TYPICAL, FAST);
    env.session_id = 0;
    check_call(frame, &env, "track", "Bare", TYPICAL, FAST);
    herald_fast_frame_free(frame);

    /* An empty context object of the caller's: library is added. */
    env = fx->env;
    context = json_object();
    env.context = context;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Empty context", TYPICAL, FAST);
    herald_fast_frame_free(frame);
    json_decref(context);

    /* A snapshot with its own session, library, traits and groupId: they
     * win over what enrichment would add. */
    env = fx->env;
    context = json_loads("{\"session\":{\"id\":7,\"sequence\":1},\"library\":{\"name\":\"x\"},"
                         "\"traits\":{\"a\":1},\"groupId\":\"mine\"}",
                         0, NULL);
    env.context = context;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Own session", TYPICAL, FAST);
    herald_fast_frame_free(frame);
    json_decref(context);

    /* A page URL in the context: page and campaign enrichment, done once. */
    env = fx->env;
    context = json_deep_copy(fx->snapshot);
    json_object_set_new(context, "page",
                        json_pack("{s:s}", "url",
                                  "https://www.example.com/pricing?utm_source=news&utm_medium=mail"));
    env.context = context;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Page", TYPICAL, FAST);
    check_call(frame, &env, "screen", "Page", TYPICAL, FAST);
    herald_fast_frame_free(frame);
    json_decref(context);

    /* Redaction off: PII goes through as it is, both ways. */
    env = fx->env;
    env.redactor = NULL;
    env.user_id = "jane.doe@example.com";
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Signup jane.doe@example.com",
               "{\"email\":\"jane.doe@example.com\",\"card\":4111111111111111}", FAST);
    herald_fast_frame_free(frame);

    herald_redactor *off = make_redactor("{\"enabled\":false}");
    env.redactor = off;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_OK);
    check_call(frame, &env, "track", "Off", "{\"password\":\"hunter2\"}", FAST);
    herald_fast_frame_free(frame);
    herald_redactor_free(off);
}

/* Configured redactors: extra and safe keys, profiles, modes, custom
 * patterns, allow paths. The cache is keyed by redactor, so verdicts of one
 * never leak to another, even one at the same address. */
static void test_configured_redactors(void **state)
{
    fixture *fx = *state;
    static const struct {
        const char *config;
        call_case cases[4];
    } configs[] = {
        {"{\"extra_keys\":[\"region\"]}",
         {{"track", "Bench Event", TYPICAL, FALLBACK},
          {"track", "E", "{\"region\":\"\"}", FAST},
          {"track", "E", "{\"seats\":1}", FAST}}},
        {"{\"extra_keys\":[\"event\"]}",
         {{"track", "Bench Event", TYPICAL, FALLBACK},
          {"screen", "Home", "{}", FAST},
          {"screen", "", "{}", FAST}}},
        {"{\"extra_keys\":[\"properties\"]}",
         {{"track", "Bench Event", TYPICAL, FALLBACK},
          {"track", "Bench Event", "{}", FAST},
          {"track", "E", "{\"a\":null,\"b\":[\"\"]}", FAST}}},
        {"{\"safe_keys\":[\"email\"]}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FAST},
          {"track", "E", "{\"email\":{\"x\":[\"jane.doe@example.com\",1e5]}}", FAST},
          {"track", "E", "{\"email\":{\"jane.doe@example.com\":1}}", FAST},
          {"track", "E", "{\"jane.doe@example.com\":1}", FALLBACK}}},
        {"{\"safe_keys\":[\"properties\"]}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FAST},
          {"track", "jane.doe@example.com", "{}", FALLBACK}}},
        {"{\"allow_paths\":[\"/properties/email\"]}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FALLBACK},
          {"track", "Bench Event", TYPICAL, FAST}}},
        {"{\"profile\":\"strict\"}",
         {{"track", "Bench Event", TYPICAL, FAST},
          {"track", "E", "{\"first_name\":\"Jane\"}", FALLBACK},
          {"track", "E", "{\"n\":490154203237518}", FALLBACK}}},
        {"{\"profile\":\"secrets-only\"}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FAST},
          {"track", "E", "{\"password\":\"hunter2\"}", FALLBACK},
          {"track", "E", "{\"n\":4111111111111111}", FAST}}},
        {"{\"rules\":{\"v1\":false,\"k2\":false}}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FAST}}},
        {"{\"custom\":[{\"name\":\"order\",\"pattern\":\"ORD-[0-9]{8}\"}]}",
         {{"track", "E", "{\"order\":\"ORD-12345678\"}", FALLBACK},
          {"track", "E", "{\"ORD-12345678\":1}", FALLBACK},
          {"track", "ORD-12345678", "{}", FALLBACK},
          {"track", "Bench Event", TYPICAL, FAST}}},
        {"{\"custom\":[{\"name\":\"bench\",\"pattern\":\"^bench$\"}]}",
         {{"track", "Bench Event", TYPICAL, FALLBACK},
          {"track", "E", "{\"source\":\"benches\"}", FAST},
          {"track", "E", "{\"bench\":1}", FALLBACK}}},
        {"{\"mode\":{\"email\":\"hash\"},\"hash_key\":"
         "\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"}",
         {{"track", "E", "{\"email\":\"jane.doe@example.com\"}", FALLBACK},
          {"track", "E", "{\"email\":\"[email:0011223344556677]\"}", FAST},
          {"track", "Bench Event", TYPICAL, FAST}}},
    };
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        /* Twice, each with a fresh redactor (often at the same address as
         * the last one), after the default redactor has filled the cache. */
        for (int round = 0; round < 2; round++) {
            check_call(fx->frame, &fx->env, "track", "Bench Event", TYPICAL, FAST);
            check_call(fx->frame, &fx->env, "track", "E", "{\"email\":\"jane.doe@example.com\"}",
                       FALLBACK);
            herald_redactor *r = make_redactor(configs[i].config);
            herald_event_env env = fx->env;
            env.redactor = r;
            herald_fast_frame *frame = NULL;
            if (herald_fast_frame_build(&env, &frame) != HERALD_OK)
                fail_msg("no frame with %s", configs[i].config);
            for (size_t k = 0; k < 4 && configs[i].cases[k].type != NULL; k++) {
                const call_case *c = &configs[i].cases[k];
                check_call(frame, &env, c->type, c->name, c->props, c->expect);
            }
            herald_fast_frame_free(frame);
            herald_redactor_free(r);
        }
    }

    /* A redactor that makes the context change: the whole frame falls
     * back. */
    herald_redactor *r = make_redactor("{\"extra_keys\":[\"arch\"]}");
    herald_event_env env = fx->env;
    env.redactor = r;
    herald_fast_frame *frame = NULL;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_FAST_FALLBACK);
    herald_redactor_free(r);
    r = make_redactor("{\"extra_keys\":[\"sequence\"]}");
    env.redactor = r;
    assert_int_equal(herald_fast_frame_build(&env, &frame), HERALD_FAST_FALLBACK);
    herald_redactor_free(r);
}

/* ---- the PII corpus and random strings, through both paths ---- */

/* A JSON string literal of s, or NULL when it would need an escape (the
 * fast path falls back on escapes: such a case says nothing about it). */
static int literal(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n + 3 > cap || strpbrk(s, "\"\\") != NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    snprintf(out, cap, "\"%s\"", s);
    return 1;
}

static void test_pii_corpus(void **state)
{
    fixture *fx = *state;
    const char *path = getenv("HERALD_PII_CORPUS");
    if (path == NULL || path[0] == '\0')
        path = "../shared/pii-corpus.jsonl";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("the PII corpus is missing: cannot open \"%s\"", path);
    char *line = NULL;
    size_t cap = 0, lines = 0, fallbacks = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *c = json_loads(line, 0, NULL);
        if (c == NULL)
            continue;
        lines++;
        const json_t *input = json_object_get(c, "input");
        const char *context = json_string_value(json_object_get(c, "context"));
        int has_pii = json_array_size(json_object_get(c, "expect_redacted")) > 0;
        char props[20000], text[8000];
        props[0] = '\0';
        if (strcmp(context, "key") == 0) {
            /* the input object is the properties; compact, so escapes in it
             * are real escapes */
            char *dumped = json_dumps(input, JSON_COMPACT);
            snprintf(props, sizeof props, "%s", dumped);
            free(dumped);
        } else if (literal(text, sizeof text, json_string_value(input))) {
            snprintf(props, sizeof props, "{\"%s\":%s,\"list\":[%s]}",
                     strcmp(context, "url") == 0 ? "url" : "note", text, text);
        }
        if (props[0] != '\0') {
            check_call(fx->frame, &fx->env, "track", "Corpus", props, has_pii ? FALLBACK : -1);
            if (has_pii)
                fallbacks++;
        }
        /* the input as the event name, and as a member name */
        const char *s = json_string_value(input);
        if (s != NULL && literal(text, sizeof text, s)) {
            check_call(fx->frame, &fx->env, "track", s, "{}", has_pii ? FALLBACK : -1);
            snprintf(props, sizeof props, "{\"x\":{%s:1}}", text);
            check_call(fx->frame, &fx->env, "track", "Corpus", props, -1);
        }
        json_decref(c);
    }
    free(line);
    fclose(f);
    assert_true(lines > 100);
    assert_true(fallbacks > 50);
}

/* Random properties from pieces that sit near the detectors' edges:
 * digits, separators, '@', dots, colons, slashes, sensitive and URL keys. */
static void test_random_differential(void **state)
{
    fixture *fx = *state;
    static const char *const keys[] = {"a", "note", "email", "url", "links", "ua_version",
                                       "token_count", "password", "id", "ip", "user_agent",
                                       "x.y", "tag"};
    static const char *const pieces[] = {"a", "Z", "0", "1", "4", "9", "@", ".", ":", "/", "-",
                                         " ", "_", "=", "[", "]", "%40", "com", "example",
                                         "https://", "eu-west-1", "4111", "192.168.", "é",
                                         "sk_", "Bearer ", "+1 ", "DE89", "~2", "[email]"};
    uint64_t x = 0x2545f4914f6cdd1du;
    size_t fast = 0;
    for (int i = 0; i < 20000; i++) {
        char props[512];
        char *p = props;
        *p++ = '{';
        int members = 1 + (int)(x % 3);
        for (int m = 0; m < members; m++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const char *key = keys[x % (sizeof keys / sizeof *keys)];
            p += sprintf(p, "%s\"%s%d\":", m ? "," : "", key, m);
            if (x % 5 == 0) {
                p += sprintf(p, "%llu", (unsigned long long)(x >> 11) % 100000000000000000ull);
                continue;
            }
            *p++ = '"';
            int n = (int)(x >> 40) % 8;
            for (int k = 0; k < n; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                const char *piece = pieces[x % (sizeof pieces / sizeof *pieces)];
                p += sprintf(p, "%s", piece);
            }
            *p++ = '"';
        }
        *p++ = '}';
        *p = '\0';
        json_t *fast_result = fast_body(fx->frame, &fx->env, "track", "R", props);
        fast += fast_result != NULL;
        json_decref(fast_result);
        check_call(fx->frame, &fx->env, "track", "R", props, -1);
    }
    /* Both outcomes occur: the generator is not all PII or all clean. */
    assert_true(fast > 1000);
    assert_true(fast < 19000);
}

/* Threads share nothing but the redactor: each has its own cache. */
static void *thread_main(void *arg)
{
    fixture *fx = arg;
    for (int i = 0; i < 200; i++) {
        check_call(fx->frame, &fx->env, "track", "Bench Event", TYPICAL, FAST);
        check_call(fx->frame, &fx->env, "track", "E", "{\"email\":\"jane.doe@example.com\"}",
                   FALLBACK);
    }
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, thread_main, *state), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assemble_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configured_redactors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pii_corpus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_differential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
