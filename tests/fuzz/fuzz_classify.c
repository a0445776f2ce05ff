/* libFuzzer target for the built-in backends' classify() on random responses,
 * and their encode() on events from the input. The input is a response:
 *
 *   2 bytes   the status, (b0 * 256 + b1) % 1000; 0 is "no response"
 *   headers   "Name: value" lines up to the first empty line ("\n\n")
 *   body      the rest (with no empty line: no body)
 *
 * Headers are stored and looked up as src/delivery.c does (names
 * case-insensitive, values trimmed, at most 1023 bytes), but every lookup
 * returns a fresh copy and frees the one before: a backend that keeps a value
 * past the next header() call is a use-after-free AddressSanitizer reports.
 * Each backend of fuzz_backends.h classifies the response for batches of 1 to
 * 3 fixed events (as many as it takes per request); the verdict must hold a
 * known kind, a terminated printable reason, no more dropped events than the
 * batch has and per-event kinds in -1..3, and a retry's Retry-After is read
 * as the core reads it. When the body is a JSON object that
 * herald_event_finish makes an event of (stored events are its output), each
 * backend encodes that event alone and between two fixed events, and the
 * request must be well-formed (fuzz_check_encode). See docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "backoff.h"
#include "event.h"
#include "fuzz_backends.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define HEADER_VALUE_MAX 1023

/* The backends' states: created once, but those that learn from responses
 * (fuzz_backend.stateful) afresh for every input, so that a finding never
 * depends on the inputs before it. */
static void *states[FUZZ_BACKEND_COUNT];
static herald_backend_limits limits[FUZZ_BACKEND_COUNT];

static int create_state(size_t i)
{
    const herald_backend_v1 *vt = fuzz_backends[i].get();
    char err[256] = "";
    if (vt->create(fuzz_backends[i].config, HERALD_PLUGIN_ABI_VERSION, &states[i], err,
                   sizeof err) != 0) {
        fprintf(stderr, "fuzz_classify: %s refuses its config: %s\n", fuzz_backends[i].label, err);
        return -1;
    }
    memset(&limits[i], 0, sizeof limits[i]);
    limits[i].struct_size = sizeof limits[i];
    vt->limits(states[i], &limits[i]);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < FUZZ_BACKEND_COUNT; i++) {
        /* A fixed config that went stale: say so, do not fuzz around it. */
        if (create_state(i) != 0)
            abort();
    }
    return 0;
}

static void renew_stateful(void)
{
    for (size_t i = 0; i < FUZZ_BACKEND_COUNT; i++) {
        if (fuzz_backends[i].stateful) {
            fuzz_backends[i].get()->destroy(states[i]);
            CHECK(create_state(i) == 0);
        }
    }
}

/* ---- the response's headers, as the core keeps them ---- */

typedef struct headers {
    char *lines;     /* "name:value\n"..., names lowercased (delivery.c's on_header) */
    size_t length;
    char *last;      /* the value handed out last; freed by the next lookup */
} headers;

static void headers_add(headers *h, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    if (colon == NULL)
        return;
    char *grown = realloc(h->lines, h->length + n + 2);
    if (grown == NULL)
        return;
    h->lines = grown;
    char *out = grown + h->length;
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++)
        out[i] = (char)((line[i] >= 'A' && line[i] <= 'Z') ? line[i] + 32 : line[i]);
    out[name_len] = ':';
    const char *value = colon + 1, *end = line + n;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t value_len = (size_t)(end - value);
    memcpy(out + name_len + 1, value, value_len);
    out[name_len + 1 + value_len] = '\n';
    h->length += name_len + value_len + 2;
    grown[h->length] = '\0';
}

static const char *header_lookup(const herald_backend_response *response, const char *name)
{
    headers *h = response->header_context;
    free(h->last);
    h->last = NULL;
    CHECK(name != NULL);
    size_t name_len = strlen(name);
    for (const char *line = h->lines; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            size_t n = (size_t)(eol - line) - name_len - 1;
            if (n > HEADER_VALUE_MAX)
                n = HEADER_VALUE_MAX;
            h->last = malloc(n + 1);
            if (h->last == NULL)
                return NULL;
            memcpy(h->last, line + name_len + 1, n);
            h->last[n] = '\0';
            return h->last;
        }
        line = eol + 1;
    }
    return NULL;
}

/* ---- classify ---- */

static void classify_all(const herald_backend_response *response)
{
    for (size_t i = 0; i < FUZZ_BACKEND_COUNT; i++) {
        const herald_backend_v1 *vt = fuzz_backends[i].get();
        size_t most = limits[i].max_events_per_request;
        if (most == 0 || most > FUZZ_EVENT_COUNT)
            most = FUZZ_EVENT_COUNT;
        for (size_t count = 1; count <= most; count++) {
            size_t lengths[FUZZ_EVENT_COUNT];
            herald_backend_batch batch = fuzz_batch(fuzz_events, lengths, count);
            /* As the core prepares it (delivery.c). */
            herald_verdict verdict;
            memset(&verdict, 0, sizeof verdict);
            verdict.struct_size = sizeof verdict;
            verdict.kind = HERALD_VERDICT_REJECT;
            int kinds[FUZZ_EVENT_COUNT];
            if (count > 1) {
                for (size_t k = 0; k < count; k++)
                    kinds[k] = -1;
                verdict.event_kinds = kinds;
            }
            vt->classify(states[i], response, &batch, &verdict);
            CHECK(verdict.event_kinds == (count > 1 ? kinds : NULL));
            fuzz_check_verdict(&verdict, count);
            if (verdict.kind == HERALD_VERDICT_RETRY && response->status > 0) {
                /* The core's next step: honour Retry-After. */
                const char *retry_after = response->header(response, "Retry-After");
                int64_t delay = -1;
                if (retry_after != NULL && herald_retry_after_parse(retry_after, FUZZ_NOW_MS,
                                                                    &delay))
                    CHECK(delay >= 0);
            }
        }
    }
}

/* ---- encode, with the body as a stored event ---- */

static void sequential_id(char out[37], void *ctx)
{
    unsigned *n = ctx;
    snprintf(out, 37, "00000000-0000-4000-8000-%012u", ++*n);
}

/* The body as the core would have stored it: completed by
 * herald_event_finish (a missing type is "track", a missing track name
 * "Fuzzed", so that most objects make an event). NULL if it makes none. */
static char *stored_event(const char *body, size_t body_length)
{
    json_error_t jerr;
    json_t *object = json_loadb(body, body_length, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(object)) {
        json_decref(object);
        return NULL;
    }
    if (json_object_get(object, "type") == NULL)
        json_object_set_new(object, "type", json_string("track"));
    if (json_object_get(object, "event") == NULL)
        json_object_set_new(object, "event", json_string("Fuzzed"));
    unsigned ids = 0;
    herald_event_env env = {
        .now_ms = FUZZ_NOW_MS,
        .anonymous_id = "557dc6c9-6762-4238-a3f8-0555616857a7",
        .max_event_bytes = 1u << 20,
        .new_message_id = sequential_id,
        .new_message_id_ctx = &ids,
    };
    char *event = NULL, err[256];
    size_t length = 0;
    const char *type = NULL;
    if (herald_event_finish(&env, object, &event, &length, &type, err, sizeof err) != HERALD_OK)
        return NULL;
    return event;
}

static void encode_all(const char *body, size_t body_length)
{
    char *event = stored_event(body, body_length);
    if (event == NULL)
        return;
    const char *alone[1] = {event};
    const char *among[3] = {fuzz_events[0], event, fuzz_events[1]};
    for (size_t i = 0; i < FUZZ_BACKEND_COUNT; i++) {
        const herald_backend_v1 *vt = fuzz_backends[i].get();
        size_t lengths[3];
        herald_backend_batch batch = fuzz_batch(alone, lengths, 1);
        fuzz_check_encode(vt, states[i], &batch, fuzz_backends[i].check_body);
        if (limits[i].max_events_per_request != 1) {
            batch = fuzz_batch(among, lengths, 3);
            fuzz_check_encode(vt, states[i], &batch, fuzz_backends[i].check_body);
        }
    }
    free(event);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    long status = (long)((data[0] * 256u + data[1]) % 1000u);
    const char *rest = (const char *)data + 2, *end = (const char *)data + size;

    /* Headers up to the first empty line; the rest is the body. */
    const char *blank = NULL;
    if (rest < end && rest[0] == '\n') {
        blank = rest - 1;
    } else {
        for (const char *p = rest; p + 1 < end; p++) {
            if (p[0] == '\n' && p[1] == '\n') {
                blank = p;
                break;
            }
        }
    }
    const char *headers_end = blank ? blank + 1 : end;
    const char *body_start = blank ? blank + 2 : end;
    if (headers_end < rest)
        headers_end = rest;

    headers h = {NULL, 0, NULL};
    for (const char *line = rest; line < headers_end;) {
        const char *eol = memchr(line, '\n', (size_t)(headers_end - line));
        const char *stop = eol ? eol : headers_end;
        headers_add(&h, line, (size_t)(stop - line));
        line = stop + 1;
    }

    /* The core hands over at most 64 KiB of body, NUL-terminated. */
    size_t body_length = (size_t)(end - body_start);
    char *body = malloc(body_length + 1);
    if (body == NULL) {
        free(h.lines);
        return 0;
    }
    memcpy(body, body_start, body_length);
    body[body_length] = '\0';

    herald_backend_response response = {
        .struct_size = sizeof response,
        .status = status,
        .body = body,
        .body_length = body_length,
        .header = header_lookup,
        .header_context = &h,
    };
    if (status == 0) {
        /* No response: the core passes an empty body and curl's reason. */
        response.body = "";
        response.body_length = 0;
        response.transport_error = "Failed to connect to 127.0.0.1 port 9: Connection refused";
    }
    renew_stateful();
    classify_all(&response);
    encode_all(body, body_length);

    free(h.last);
    free(h.lines);
    free(body);
    return 0;
}
