/* libFuzzer target for src/fastbuild.c: the fast event builder against its
 * reference. The input is split at its first newline into the event name
 * and the properties text. The name line's first byte picks the call ('s':
 * screen named by the rest of the line, 'S': screen without a name, else
 * track named by the whole line) and its second byte which redactor runs (default, none, or one with extra keys,
 * safe keys and a custom pattern). Without a newline the whole input is the
 * properties of track("Fuzzed") with the default redactor; "-" as the
 * properties text stands for NULL. Both paths run on every input, as
 * herald_track/herald_screen drive them (typed_call in client.c), with a
 * full environment (identity, snapshot, traits, group, session).
 *
 * Traps on a broken promise of fastbuild.h:
 *   - the fast path succeeds where the slow path refuses the call;
 *   - both succeed and the bodies are not the same JSON value (json_equal);
 *   - the fast body is not valid JSON without duplicate keys, or the slow
 *     body is longer than herald_fast_fits allows for;
 *   - herald_fast_assemble writes past a smaller cap instead of returning 0.
 * Besides sanitizer reports and leaks. See docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "fastbuild.h"
#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)

#define REDACTORS 3

static json_t *snapshot;
static json_t *stored_traits;
static herald_redactor *redactors[REDACTORS]; /* [1] stays NULL: redaction off */
static herald_event_env envs[REDACTORS];
static herald_fast_frame *frames[REDACTORS];

static void fixed_id(char out[37], void *ctx)
{
    (void)ctx;
    memcpy(out, "557dc6c9-6762-4238-a3f8-0555616857a7", 37);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snapshot = json_loads("{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
                          "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
                          "\"device\":{\"type\":\"server\",\"arch\":\"x86_64\"},"
                          "\"locale\":\"en-US\",\"timezone\":\"Europe/Berlin\","
                          "\"app\":{\"name\":\"fuzz\",\"version\":\"1.0\",\"build\":\"7\"},"
                          "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\"}",
                          0, NULL);
    stored_traits = json_loads("{\"plan\":\"pro\",\"seats\":12}", 0, NULL);
    char err[256] = "";
    static const char *const configs[REDACTORS] = {
        NULL, NULL,
        "{\"extra_keys\":[\"customer_ref\",\"seat\"],\"safe_keys\":[\"token_count\",\"blob\"],"
        "\"custom\":[{\"name\":\"order\",\"pattern\":\"ORD-[0-9]{4}\"}]}"};
    if (snapshot == NULL || stored_traits == NULL) {
        fprintf(stderr, "fuzz_fastbuild: setup failed\n");
        abort();
    }
    for (int i = 0; i < REDACTORS; i++) {
        if (i != 1 && herald_redactor_create(configs[i], &redactors[i], err, sizeof err) !=
                          HERALD_OK) {
            fprintf(stderr, "fuzz_fastbuild: redactor %d: %s\n", i, err);
            abort();
        }
        envs[i] = (herald_event_env){
            .now_ms = INT64_C(1795500702219),
            .anonymous_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            .user_id = "user-7",
            .max_event_bytes = 1u << 20,
            .context = snapshot,
            .traits = stored_traits,
            .group_id = "acme",
            .session_id = INT64_C(1795500000000),
            .session_sequence = 3,
            .redactor = redactors[i],
            .new_message_id = fixed_id,
        };
        if (herald_fast_frame_build(&envs[i], &frames[i]) != HERALD_OK) {
            fprintf(stderr, "fuzz_fastbuild: frame %d falls back\n", i);
            abort();
        }
    }
    return 0;
}

/* The slow path's body and its length, or NULL when the call is refused. */
static json_t *slow_body(const herald_event_env *env, const char *type, const char *name,
                         const char *props, size_t *length)
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
    CHECK(message != NULL);
    json_object_set_new(message, "type", json_string(type));
    if (name_value != NULL)
        json_object_set_new(message, is_track ? "event" : "name", name_value);
    json_object_set_new(message, "properties", object);
    char *text = NULL;
    const char *out_type;
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    herald_event_env e = *env;
    e.redactions = &stats;
    if (herald_event_finish(&e, message, &text, length, &out_type, err, sizeof err) !=
        HERALD_OK)
        return NULL;
    json_t *body = json_loadb(text, *length, 0, NULL);
    CHECK(body != NULL);
    free(text);
    return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *input = malloc(size + 1);
    if (input == NULL)
        return 0;
    memcpy(input, data, size);
    input[size] = '\0';
    char *newline = memchr(input, '\n', size);
    const char *name = "Fuzzed", *props = input, *type = "track";
    int which = 0;
    if (newline != NULL) {
        *newline = '\0';
        name = input;
        props = newline + 1;
        if (input[0] == 's' || input[0] == 'S')
            type = "screen";
        if (input[0] == 's')
            name = input + 1;
        if (input[0] == 'S')
            name = NULL;
        if (input[0] != '\0')
            which = (unsigned char)input[1] % REDACTORS;
    }
    if (strcmp(props, "-") == 0)
        props = NULL;
    const herald_event_env *env = &envs[which];

    herald_fast_args a;
    herald_fast_args_init(&a);
    int rc = herald_fast_scan(env->redactor, type, name, props, &a);
    CHECK(rc == 0 || rc == HERALD_FAST_FALLBACK);
    size_t slow_length = 0;
    json_t *slow = slow_body(env, type, name, props, &slow_length);
    if (rc == 0) {
        CHECK(slow != NULL);
        size_t cap = herald_fast_size_bound(frames[which], &a);
        char *dst = malloc(cap);
        CHECK(dst != NULL);
        char id[37];
        fixed_id(id, NULL);
        size_t len = herald_fast_assemble(frames[which], &a, env->now_ms, id, env->session_id,
                                          env->session_sequence, dst, cap);
        CHECK(len > 0 && len <= cap);
        json_t *fast = json_loadb(dst, len, JSON_REJECT_DUPLICATES, NULL);
        CHECK(fast != NULL);
        CHECK(json_equal(slow, fast));
        /* What herald_fast_fits allows for covers json_dumps's spelling. */
        CHECK(slow_length <= len + a.slack);
        CHECK(herald_fast_fits(&a, len, (uint32_t)(len + a.slack)));
        /* One byte short: nothing but 0. */
        char *tight = malloc(len - 1 + 1);
        CHECK(tight != NULL);
        CHECK(herald_fast_assemble(frames[which], &a, env->now_ms, id, env->session_id,
                                   env->session_sequence, tight, len - 1) == 0);
        free(tight);
        json_decref(fast);
        free(dst);
    }
    json_decref(slow);
    herald_fast_args_free(&a);
    free(input);
    return 0;
}
