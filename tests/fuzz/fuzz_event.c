/* libFuzzer target for src/event.c: the input (NUL-terminated, as the public
 * calls receive it) as a whole message (herald_send) and as the properties or
 * traits object of the typed calls, through herald_event_parse_object and
 * herald_event_finish with a fixed environment (clock, ids, identity, context
 * snapshot, max_event_bytes), with and without the redactor. Also
 * herald_utf8_valid against jansson's own UTF-8 check, and
 * herald_timestamp_valid. Besides crashes, sanitizer reports and leaks it
 * traps on broken promises of event.h: an accepted event that is not a JSON
 * object with type, messageId, timestamp, anonymousId and context.library,
 * that is over max_event_bytes or not UTF-8; output written on failure; an
 * error message that quotes the caller's data; the caller's properties
 * changed without a redactor; the environment's objects modified. See
 * docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)

/* Seeds carry this string in places an error could quote (bad values, bad
 * JSON, duplicate keys): error messages must never contain it. */
#define CANARY "c4n4ry"

static json_t *snapshot;        /* a static context like herald_context_snapshot's */
static json_t *snapshot_copy;   /* to prove that finish leaves it alone */
static json_t *stored_traits;
static json_t *stored_traits_copy;
static herald_redactor *redactor;

static void sequential_id(char out[37], void *ctx)
{
    unsigned *n = ctx;
    snprintf(out, 37, "00000000-0000-4000-8000-%012u", ++*n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snapshot = json_loads("{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
                          "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
                          "\"device\":{\"type\":\"server\",\"arch\":\"x86_64\"},"
                          "\"locale\":\"en-US\",\"timezone\":\"Europe/Berlin\","
                          "\"app\":{\"name\":\"fuzz\",\"version\":\"1.0\",\"build\":\"7\"}}",
                          0, NULL);
    stored_traits = json_loads("{\"plan\":\"pro\",\"seats\":12}", 0, NULL);
    snapshot_copy = json_deep_copy(snapshot);
    stored_traits_copy = json_deep_copy(stored_traits);
    char err[256] = "";
    if (snapshot == NULL || stored_traits == NULL || snapshot_copy == NULL ||
        stored_traits_copy == NULL ||
        herald_redactor_create(NULL, &redactor, err, sizeof err) != HERALD_OK) {
        fprintf(stderr, "fuzz_event: setup failed: %s\n", err);
        abort();
    }
    return 0;
}

static void check_error_text(const char *err, size_t errlen)
{
    CHECK(memchr(err, '\0', errlen) != NULL);
    CHECK(err[0] != '\0');
    CHECK(strstr(err, CANARY) == NULL);
}

static const char *string_member(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static void check_event(const char *text, size_t len, const char *type, uint32_t max_bytes)
{
    CHECK(text != NULL);
    CHECK(len == strlen(text) && len <= max_bytes);
    CHECK(herald_utf8_valid(text));
    json_error_t jerr;
    json_t *event = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    CHECK(json_is_object(event));

    static const char *const types[] = {"track", "page", "screen", "identify", "group", "alias"};
    const char *event_type = string_member(event, "type");
    CHECK(event_type != NULL && type != NULL && strcmp(event_type, type) == 0);
    int known = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        known |= strcmp(type, types[i]) == 0;
    CHECK(known);

    const char *message_id = string_member(event, "messageId");
    CHECK(message_id != NULL && message_id[0] != '\0' && strlen(message_id) <= 100);
    const char *timestamp = string_member(event, "timestamp");
    CHECK(timestamp != NULL && herald_timestamp_valid(timestamp));
    const char *anonymous_id = string_member(event, "anonymousId");
    CHECK(anonymous_id != NULL && anonymous_id[0] != '\0');
    json_t *context = json_object_get(event, "context");
    CHECK(json_is_object(context) && json_object_get(context, "library") != NULL);

    /* What each type requires. */
    if (strcmp(type, "track") == 0)
        CHECK(json_is_string(json_object_get(event, "event")));
    if (strcmp(type, "group") == 0)
        CHECK(json_is_string(json_object_get(event, "groupId")));
    if (strcmp(type, "alias") == 0)
        CHECK(json_is_string(json_object_get(event, "userId")) &&
              json_is_string(json_object_get(event, "previousId")));
    static const char *const objects[] = {"properties", "traits", "integrations"};
    for (size_t i = 0; i < sizeof objects / sizeof *objects; i++) {
        json_t *value = json_object_get(event, objects[i]);
        CHECK(value == NULL || json_is_object(value));
    }
    json_decref(event);
}

typedef struct run {
    const char *type;       /* NULL: the input is the whole message */
    const char *object_key; /* the member the input object becomes */
    const char *name_key;   /* a fixed name or id the typed call adds */
    const char *name;
    int full_env;           /* identity, traits, group, session, snapshot */
    int redact;
    uint32_t max_event_bytes;
} run;

static void run_one(const char *text, const run *r)
{
    json_t *object = (json_t *)(uintptr_t)1; /* must stay untouched on failure */
    char err[512];
    memset(err, 'x', sizeof err);
    err[sizeof err - 1] = '\0';
    const char *what = r->object_key ? r->object_key : "message";
    herald_status st = herald_event_parse_object(text, what, &object, err, sizeof err);
    if (st != HERALD_OK) {
        CHECK(st == HERALD_E_INVALID_JSON || st == HERALD_E_NOT_OBJECT);
        CHECK(object == (json_t *)(uintptr_t)1);
        check_error_text(err, sizeof err);
        return;
    }
    CHECK(json_is_object(object));

    json_t *message = object, *given = NULL;
    if (r->type != NULL) {
        given = json_deep_copy(object);
        message = json_object();
        CHECK(given != NULL && message != NULL);
        json_object_set_new(message, "type", json_string(r->type));
        if (r->name_key)
            json_object_set_new(message, r->name_key, json_string(r->name));
        json_object_set_new(message, r->object_key, object);
    }

    unsigned ids = 0;
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    herald_event_env env = {
        .now_ms = INT64_C(1795500702219),
        .anonymous_id = "557dc6c9-6762-4238-a3f8-0555616857a7",
        .max_event_bytes = r->max_event_bytes,
        .new_message_id = sequential_id,
        .new_message_id_ctx = &ids,
    };
    if (r->full_env) {
        env.user_id = "user-7";
        env.context = snapshot;
        env.traits = stored_traits;
        env.group_id = "acme";
        env.session_id = INT64_C(1795500000000);
        env.session_sequence = 3;
    }
    if (r->redact) {
        env.redactor = redactor;
        env.redactions = &stats;
    }

    char *out = (char *)(uintptr_t)1;
    size_t out_len = 12345;
    const char *out_type = NULL;
    memset(err, 'x', sizeof err);
    err[sizeof err - 1] = '\0';
    st = herald_event_finish(&env, message, &out, &out_len, &out_type, err, sizeof err);
    CHECK(ids <= 1);
    if (st == HERALD_OK) {
        check_event(out, out_len, out_type, r->max_event_bytes);
        if (given != NULL && !r->redact) {
            /* Without redaction the caller's object is stored as given. */
            json_t *event = json_loads(out, 0, NULL);
            CHECK(json_equal(json_object_get(event, r->object_key), given));
            json_decref(event);
        }
        free(out);
    } else {
        CHECK(st == HERALD_E_INVALID_ARGUMENT || st == HERALD_E_NOT_OBJECT ||
              st == HERALD_E_TOO_LARGE);
        CHECK(out == (char *)(uintptr_t)1 && out_len == 12345);
        check_error_text(err, sizeof err);
    }
    json_decref(given);
    CHECK(json_equal(snapshot, snapshot_copy) && json_equal(stored_traits, stored_traits_copy));
}

static void check_utf8_and_timestamp(const char *text)
{
    /* Same verdict as jansson's (which refuses overlong forms, surrogates
     * and code points past U+10FFFF the same way). */
    json_t *s = json_string(text);
    CHECK(herald_utf8_valid(text) == (s != NULL));
    json_decref(s);
    if (herald_timestamp_valid(text)) {
        /* YYYY-MM-DDTHH:MM:SS plus Z or an offset, at the least. */
        size_t n = strlen(text);
        CHECK(n >= 20 && text[4] == '-' && text[7] == '-' && text[13] == ':' && text[16] == ':');
        CHECK(herald_utf8_valid(text));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    static const run runs[] = {
        /* herald_send: the whole message, as an application would send it. */
        {NULL, NULL, NULL, NULL, 1, 1, 32768},
        {NULL, NULL, NULL, NULL, 0, 0, 512},
        /* The typed calls: the input is the properties or traits object. */
        {"track", "properties", "event", "Fuzzed", 0, 0, 32768},
        {"page", "properties", NULL, NULL, 1, 0, 1024},
        {"screen", "properties", "name", "Settings", 1, 1, 32768},
        {"identify", "traits", "userId", "user-9", 0, 0, 256},
        {"group", "traits", "groupId", "acme", 1, 1, 4096},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        run_one(text, &runs[i]);
    check_utf8_and_timestamp(text);
    free(text);
    return 0;
}
