/* Shared by fuzz_classify.c and fuzz_config.c: the built-in backends (and
 * how their request bodies look), a configuration each accepts, a few stored
 * events as the core hands them to encode() and classify(), and the checks of
 * what plugin.h promises about requests and verdicts. A new built-in backend
 * is one line in fuzz_builtins[] (create() on fuzzed configs) and one in
 * fuzz_backends[] (encode and classify with a valid config). See
 * docs/fuzzing.md. */
#ifndef HERALD_FUZZ_BACKENDS_H
#define HERALD_FUZZ_BACKENDS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backend.h"
#include "herald/plugin.h"

#ifndef CHECK
#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition))                                                                        \
            __builtin_trap();                                                                    \
    } while (0)
#endif

/* Wall clock of the batches: 2026-11-24T06:11:42.219Z. */
#define FUZZ_NOW_MS INT64_C(1795500702219)

/* How a backend's request body is checked: one JSON document (a batch's
 * events a bare array or the one array member of an object), one JSON object
 * per line (ClickHouse's JSONEachRow), or not at all. */
typedef enum fuzz_body_kind { FUZZ_BODY_JSON, FUZZ_BODY_NDJSON, FUZZ_BODY_ANY } fuzz_body_kind;

/* Every built-in backend (src/backend.h), for create() on any config. */
typedef struct fuzz_builtin {
    const herald_backend_v1 *(*get)(void);
    fuzz_body_kind body;
    int all_events;             /* a request carries every event of its batch */
} fuzz_builtin;

static const fuzz_builtin fuzz_builtins[] = {
    {herald_backend_rest, FUZZ_BODY_JSON, 1},
    {herald_backend_plausible, FUZZ_BODY_JSON, 1},
    {herald_backend_umami, FUZZ_BODY_JSON, 0},
    {herald_backend_segment, FUZZ_BODY_JSON, 0},
    {herald_backend_posthog, FUZZ_BODY_JSON, 0},
    {herald_backend_matomo, FUZZ_BODY_JSON, 0},
    {herald_backend_clickhouse, FUZZ_BODY_NDJSON, 0},
};
#define FUZZ_BUILTIN_COUNT (sizeof fuzz_builtins / sizeof *fuzz_builtins)

/* The entry of a backend, by name; NULL for one not in the table. */
static inline const fuzz_builtin *fuzz_builtin_of(const herald_backend_v1 *vt)
{
    for (size_t i = 0; i < FUZZ_BUILTIN_COUNT; i++)
        if (strcmp(fuzz_builtins[i].get()->name, vt->name) == 0)
            return &fuzz_builtins[i];
    return NULL;
}

/* Optional backend-specific check of an encoded body (already parsed). */
typedef void (*fuzz_body_check)(json_t *body, const herald_backend_batch *batch);

static inline void fuzz_check_plausible_body(json_t *body, const herald_backend_batch *batch);

/* A built-in backend with a configuration its create() accepts: classify and
 * encode run on these. */
typedef struct fuzz_backend {
    const char *label;
    const herald_backend_v1 *(*get)(void);
    const char *config;
    fuzz_body_check check_body; /* NULL: only the generic checks */
    int stateful;               /* classify() learns from responses: a fresh
                                   state for every input (Umami's cache tokens) */
} fuzz_backend;

static const fuzz_backend fuzz_backends[] = {
    {"rest-batch", herald_backend_rest,
     "{\"url\":\"https://collector.example/v1/batch\",\"write_key\":\"WRITE_KEY\","
     "\"headers\":{\"X-Source\":\"fuzz\"}}",
     NULL, 0},
    {"rest-single", herald_backend_rest,
     "{\"url\":\"http://127.0.0.1:9/e\",\"mode\":\"single\",\"sent_at_key\":\"sent\","
     "\"gzip\":false}",
     NULL, 0},
    {"rest-mapping", herald_backend_rest,
     "{\"url\":\"https://ingest.example/events\",\"batch_key\":\"events\",\"sent_at_key\":\"\","
     "\"mapping\":{\"event_type\":[\"$.event\",\"$.name\",\"$.type\"],"
     "\"page_url\":\"$.context.page.url\",\"first_item\":\"$.properties.items.0.sku\","
     "\"user_id\":[\"$.userId\",\"$.anonymousId\"],\"metadata\":\"$.properties\","
     "\"source\":{\"const\":\"herald\"},\"medium\":{\"path\":\"$.context.campaign.medium\","
     "\"default\":\"direct\"},\"prop_*\":\"$.properties\",\"ctx_*\":{\"flatten\":"
     "[\"$.context.app\",\"$.context\"]}}}",
     NULL, 0},
    {"plausible", herald_backend_plausible,
     "{\"url\":\"https://plausible.example\",\"domain\":\"example.com\"}",
     fuzz_check_plausible_body, 0},
    {"plausible-cut", herald_backend_plausible,
     "{\"url\":\"http://127.0.0.1:8000/\",\"domain\":\"a.example,b.example\","
     "\"default_url\":\"app://notes/\",\"cut_prop\":\"_cut\",\"revenue\":false}",
     fuzz_check_plausible_body, 0},
    /* A small token cache: the default's table costs more than the fuzzing. */
    {"umami", herald_backend_umami,
     "{\"url\":\"https://umami.example\",\"website\":\"5e4c2c6c-8a7e-4b5e-9d8f-0c1b2a3d4e5f\","
     "\"cache_tokens\":4}",
     NULL, 1},
    {"umami-batch", herald_backend_umami,
     "{\"url\":\"http://127.0.0.1:3000/\",\"website\":\"5e4c2c6c-8a7e-4b5e-9d8f-0c1b2a3d4e5f\","
     "\"batch\":true,\"version\":\"2.17\",\"hostname\":\"app.example\",\"cache_tokens\":4}",
     NULL, 1},
    {"segment", herald_backend_segment, "{\"write_key\":\"WRITE_KEY\"}", NULL, 0},
    {"posthog", herald_backend_posthog,
     "{\"url\":\"https://eu.i.posthog.com\",\"api_key\":\"phc_fuzz\"}", NULL, 0},
    {"matomo", herald_backend_matomo,
     "{\"url\":\"https://matomo.example/\",\"site_id\":1,\"token_auth\":\"t0k3n\","
     "\"dimensions\":{\"1\":\"$.properties.plan\",\"2\":[\"$.userId\",\"$.anonymousId\"]}}",
     NULL, 0},
    {"clickhouse", herald_backend_clickhouse,
     "{\"url\":\"http://127.0.0.1:8123\",\"table\":\"herald.events\",\"user\":\"u\","
     "\"password\":\"p\"}",
     NULL, 0},
};
#define FUZZ_BACKEND_COUNT (sizeof fuzz_backends / sizeof *fuzz_backends)

/* Stored events as herald_event_finish writes them. */
static const char *const fuzz_events[] = {
    "{\"type\":\"track\",\"event\":\"Order Completed\",\"properties\":{\"revenue\":42.5,"
    "\"currency\":\"eur\",\"items\":[{\"sku\":\"A-1\"}],\"plan\":\"pro\",\"seats\":12},"
    "\"messageId\":\"8f7e3c1e-3f3a-4d1b-9a51-1c7fd0b3a0e2\","
    "\"timestamp\":\"2026-11-24T06:11:42.240Z\",\"userId\":\"user-42\","
    "\"anonymousId\":\"557dc6c9-6762-4238-a3f8-0555616857a7\",\"context\":{\"library\":"
    "{\"name\":\"herald\",\"version\":\"0.1.0\"},\"app\":{\"name\":\"Acme Notes\"},"
    "\"session\":{\"id\":1795500702219,\"sequence\":3},\"ip\":\"192.0.2.7\"}}",
    "{\"type\":\"page\",\"name\":\"Pricing\",\"properties\":{\"url\":"
    "\"https://acme.example/pricing?utm_source=newsletter\",\"referrer\":"
    "\"https://www.google.com/\"},\"messageId\":\"00000000-0000-4000-8000-000000000002\","
    "\"timestamp\":\"2026-11-24T06:11:43.000Z\",\"anonymousId\":\"a-1\",\"context\":{"
    "\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},\"page\":{\"url\":"
    "\"https://acme.example/pricing?utm_source=newsletter\",\"path\":\"/pricing\"},"
    "\"campaign\":{\"source\":\"newsletter\"},\"userAgent\":\"Mozilla/5.0 (X11) Fuzz/1\"}}",
    "{\"type\":\"screen\",\"name\":\"Settings Screen\",\"properties\":{},\"messageId\":\"m-3\","
    "\"timestamp\":\"2026-11-24T06:11:44.000Z\",\"anonymousId\":\"a-1\",\"context\":{"
    "\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"}}}",
};
#define FUZZ_EVENT_COUNT (sizeof fuzz_events / sizeof *fuzz_events)

/* A batch over `count` events (their lengths in `lengths`). */
static inline herald_backend_batch fuzz_batch(const char *const *events, size_t *lengths,
                                              size_t count)
{
    for (size_t i = 0; i < count; i++)
        lengths[i] = strlen(events[i]);
    herald_backend_batch batch = {
        .struct_size = sizeof batch, .count = count, .events = events,
        .event_lengths = lengths, .now_ms = FUZZ_NOW_MS, .attempt = 1,
    };
    return batch;
}

static inline int fuzz_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* "Name: value" lines joined by '\n' (the core skips empty lines, as
 * strtok does): a name is an RFC 7230 token, a value has no control
 * character (a CR or LF would inject a header). */
static inline void fuzz_check_headers(const char *headers)
{
    if (headers == NULL)
        return;
    for (const char *line = headers; *line != '\0';) {
        if (*line == '\n') {
            line++;
            continue;
        }
        const char *p = line;
        while (fuzz_tchar((unsigned char)*p))
            p++;
        CHECK(p > line && *p == ':');
        for (p++; *p != '\0' && *p != '\n'; p++)
            CHECK((unsigned char)*p >= 0x20 ? *p != 0x7f : *p == '\t');
        line = p;
    }
}

/* The events of a batch body: a bare array, or the one array member of an
 * object (next to scalars such as sentAt or an API key). */
static inline void fuzz_check_json_batch(json_t *body, size_t count, int all_events)
{
    json_t *items = json_is_array(body) ? body : NULL;
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        if (json_is_array(value)) {
            CHECK(items == NULL);
            items = value;
        }
    }
    CHECK(items != NULL);
    CHECK(json_array_size(items) >= 1 && json_array_size(items) <= count);
    CHECK(!all_events || json_array_size(items) == count);
}

/* One JSON object per '\n'-terminated line, a line per event sent. */
static inline void fuzz_check_ndjson(const char *body, size_t length, size_t count,
                                     int all_events)
{
    size_t lines = 0;
    for (const char *line = body, *end = body + length; line < end; lines++) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        CHECK(eol != NULL);
        json_error_t jerr;
        json_t *row = json_loadb(line, (size_t)(eol - line), 0, &jerr);
        CHECK(json_is_object(row));
        json_decref(row);
        line = eol + 1;
    }
    CHECK(lines >= 1 && lines <= count);
    CHECK(!all_events || lines == count);
}

/* encode() on a batch: a URL, a body of body_length bytes in the backend's
 * format, clean headers; on failure a reason. The request's buffers are
 * released as the core does, success or not. */
static inline int fuzz_check_encode(const herald_backend_v1 *vt, void *state,
                                    const herald_backend_batch *batch, fuzz_body_check check_body)
{
    const fuzz_builtin *builtin = fuzz_builtin_of(vt);
    fuzz_body_kind kind = builtin ? builtin->body : FUZZ_BODY_ANY;
    int all_events = builtin ? builtin->all_events : 0;
    herald_backend_request request;
    memset(&request, 0, sizeof request);
    request.struct_size = sizeof request;
    char err[256];
    memset(err, 'x', sizeof err);
    int rc = vt->encode(state, batch, &request, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        CHECK(request.url != NULL && request.url[0] != '\0');
        CHECK(request.body != NULL);
        if (kind == FUZZ_BODY_JSON) {
            CHECK(strlen(request.body) == request.body_length);
            json_error_t jerr;
            json_t *body = json_loadb(request.body, request.body_length, 0, &jerr);
            CHECK(body != NULL);
            if (batch->count > 1)
                fuzz_check_json_batch(body, batch->count, all_events);
            if (check_body)
                check_body(body, batch);
            json_decref(body);
        } else if (kind == FUZZ_BODY_NDJSON) {
            CHECK(strlen(request.body) == request.body_length);
            fuzz_check_ndjson(request.body, request.body_length, batch->count, all_events);
        }
        fuzz_check_headers(request.headers);
    } else {
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    }
    herald_free(request.body);
    herald_free(request.headers);
    herald_free(request.secrets);
    return rc;
}

/* What classify() wrote: a known kind, a terminated printable reason, no more
 * dropped events than the batch has, per-event kinds -1..3. */
static inline void fuzz_check_verdict(const herald_verdict *verdict, size_t count)
{
    CHECK(verdict->struct_size == sizeof *verdict);
    CHECK((int)verdict->kind >= HERALD_VERDICT_OK && (int)verdict->kind <= HERALD_VERDICT_SPLIT);
    const char *end = memchr(verdict->reason, '\0', sizeof verdict->reason);
    CHECK(end != NULL);
    /* Reasons go to logs and dead letters: printable ASCII only. */
    for (const char *p = verdict->reason; p < end; p++)
        CHECK(*p >= 0x20 && *p < 0x7f);
    CHECK(verdict->dropped <= count);
    if (verdict->event_kinds != NULL)
        for (size_t i = 0; i < count; i++)
            CHECK(verdict->event_kinds[i] >= -1 && verdict->event_kinds[i] <= HERALD_VERDICT_SPLIT);
}

static inline size_t fuzz_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* Plausible's limits, which the backend promises to apply itself so that no
 * event is refused for its props (plugins/plausible/plausible.c). */
static inline void fuzz_check_plausible_body(json_t *body, const herald_backend_batch *batch)
{
    (void)batch;
    CHECK(json_is_object(body));
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *url = json_string_value(json_object_get(body, "url"));
    CHECK(name != NULL && name[0] != '\0' && fuzz_utf8_chars(name) <= 120);
    CHECK(url != NULL && strlen(url) <= 2000);
    CHECK(json_is_string(json_object_get(body, "domain")));
    json_t *referrer = json_object_get(body, "referrer");
    CHECK(referrer == NULL ||
          (json_is_string(referrer) && fuzz_utf8_chars(json_string_value(referrer)) <= 2000));
    json_t *props = json_object_get(body, "props");
    if (props != NULL) {
        CHECK(json_is_object(props) && json_object_size(props) <= 30);
        const char *key;
        json_t *value;
        json_object_foreach(props, key, value)
        {
            CHECK(key[0] != '\0' && strlen(key) <= 300);
            CHECK(json_is_string(value) && json_string_length(value) <= 2000);
        }
    }
    json_t *revenue = json_object_get(body, "revenue");
    if (revenue != NULL) {
        const char *currency = json_string_value(json_object_get(revenue, "currency"));
        CHECK(currency != NULL && strlen(currency) == 3);
        for (int i = 0; i < 3; i++)
            CHECK(currency[i] >= 'A' && currency[i] <= 'Z');
    }
}

#endif
