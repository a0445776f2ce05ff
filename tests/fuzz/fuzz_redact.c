/* libFuzzer target for the PII redactor (src/redact*.c): the bytes as a
 * string in the value, key and URL contexts, and, when they parse as JSON,
 * as an event's properties. Two redactors run: the default one, and one
 * with every replacement mode (keyed hash, keep-domain, truncated IPs) and a
 * custom pattern. Besides crashes it traps on broken promises: a second pass
 * that changes anything (redact(redact(x)) == redact(x)), valid UTF-8 in
 * and invalid UTF-8 out, an event that fails for anything but memory. See
 * docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)

static herald_redactor *redactors[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *const configs[2] = {
        NULL,
        "{\"mode\": {\"email\": \"keep_domain_hash\", \"ip\": \"truncate\", \"card\": \"hash\","
        " \"phone\": \"hash\"},"
        " \"hash_key\": \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        " \"extra_keys\": [\"customer_ref\"], \"allow_paths\": [\"/properties/safe\"],"
        " \"custom\": [{\"name\": \"order\", \"pattern\": \"ORD-[0-9]{4,8}\", \"class\": \"user\"}]}",
    };
    for (int i = 0; i < 2; i++) {
        char err[256];
        if (herald_redactor_create(configs[i], &redactors[i], err, sizeof err) != HERALD_OK)
            __builtin_trap();
    }
    return 0;
}

static int utf8_valid(const char *s, size_t n)
{
    json_t *probe = json_stringn(s, n);
    int ok = probe != NULL;
    json_decref(probe);
    return ok;
}

static void check_string(const herald_redactor *r, const char *s, size_t n,
                         herald_redact_context ctx)
{
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    int oom = 0;
    char *once = herald_redact_string(r, s, n, ctx, &stats, &oom);
    CHECK(!oom);
    if (once == NULL) {
        for (int i = 0; i < HERALD_RULE_COUNT; i++)
            CHECK(stats.count[i] == 0);
        return;
    }
    /* The result is a C string: with a NUL inside the input it is cut
     * there, and the second pass would see other bytes. */
    if (memchr(s, '\0', n) != NULL) {
        free(once);
        return;
    }
    size_t len = strlen(once);
    if (utf8_valid(s, n))
        CHECK(utf8_valid(once, len));
    char *twice = herald_redact_string(r, once, len, ctx, NULL, &oom);
    CHECK(!oom);
    CHECK(twice == NULL); /* idempotent */
    free(once);
}

static void check_event(const herald_redactor *r, json_t *properties)
{
    json_t *event = json_pack("{s:s, s:s, s:s, s:s, s:O, s:{s:{s:O}}}", "type", "track", "event",
                              "Fuzz", "messageId", "00000000-0000-4000-8000-000000000000",
                              "userId", "user-1", "properties", properties, "context", "page",
                              "url", json_is_string(properties) ? properties : json_null());
    if (event == NULL)
        return;
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK(herald_redact_event(r, event, &stats) == HERALD_OK);
    json_t *again = json_deep_copy(event);
    if (again != NULL) {
        CHECK(herald_redact_event(r, again, NULL) == HERALD_OK);
        CHECK(json_equal(again, event));
        json_decref(again);
    }
    char *text = json_dumps(event, JSON_COMPACT);
    free(text);
    json_decref(event);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    for (int k = 0; k < 2; k++) {
        check_string(redactors[k], s, size, HERALD_REDACT_VALUE);
        check_string(redactors[k], s, size, HERALD_REDACT_KEY);
        check_string(redactors[k], s, size, HERALD_REDACT_URL);
    }
    /* As event data: parsed JSON as properties, or the text as a value. */
    json_error_t jerr;
    json_t *parsed = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    json_t *properties = NULL;
    if (parsed != NULL && json_is_object(parsed)) {
        properties = parsed;
        parsed = NULL;
    } else if (parsed != NULL) {
        properties = json_pack("{s:O, s:O}", "note", parsed, "url", parsed);
    } else {
        json_t *text = json_stringn(s, size);
        if (text != NULL)
            properties = json_pack("{s:O, s:O, s:o}", "note", text, "url", text, "list",
                                   json_pack("[O]", text));
        json_decref(text);
    }
    json_decref(parsed);
    if (properties != NULL) {
        for (int k = 0; k < 2; k++)
            check_event(redactors[k], properties);
        json_decref(properties);
    }
    return 0;
}
