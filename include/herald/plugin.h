/*
 * herald backend plugins: the stable, versioned ABI between herald's core and
 * a backend (a destination's wire format).
 *
 * The core owns transport (libcurl), retries and backoff, compression,
 * batching and storage. A backend is small and pure: it says what it accepts,
 * turns a batch of events into one HTTP request, and turns the response into
 * a verdict. herald's own backends (rest, plausible, umami) are written
 * against exactly this header; docs/plugins.md walks through writing one.
 *
 * A plugin is a shared object exporting
 *
 *     const herald_backend_v1 *herald_backend_entry_v1(void);
 *
 * loaded at herald_open() from an absolute path given as a destination's
 * "backend", or by name from the directories in HERALD_PLUGIN_PATH (absolute
 * directories only; the working directory is never searched) as
 * "herald-backend-<name>.so". A plugin of another ABI version, without the
 * entry symbol, with a NULL required function or whose create() fails is a
 * clear HERALD_E_CONFIG / HERALD_E_BACKEND error at open, never a crash later.
 *
 * Rules of evolution (what version 1 promises):
 * - Structs that cross the ABI begin with struct_size. The side that fills a
 *   struct sets it; the side that reads checks it before touching a field
 *   that a smaller struct would not have.
 * - New fields are only ever added at the end; no field changes meaning,
 *   type or place, none is removed. New verdict kinds are never returned to a
 *   core that does not know them (the core passes its ABI version to create).
 * - An incompatible change gets a new entry symbol (herald_backend_entry_v2);
 *   a core may load both.
 *
 * Threads: herald calls create and destroy from the thread that opens and
 * closes the client, and limits, encode and classify only from that client's
 * delivery thread, one call at a time. A backend state therefore needs no
 * locking, but must not be shared between states without its own.
 *
 * Memory: buffers a backend hands to the core (request body and headers) are
 * allocated with herald_alloc() or herald_strdup() and released by the core
 * with herald_free(): plugin and core may use different C runtimes.
 */
#ifndef HERALD_PLUGIN_H
#define HERALD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "herald.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HERALD_PLUGIN_ABI_VERSION 1

/* What a backend accepts. Zero means "no limit of its own" (the destination's
 * batch_max_events / batch_max_bytes still apply). */
typedef struct herald_backend_limits {
    uint32_t struct_size;
    uint32_t max_events_per_request; /* 1 for per-event APIs (Plausible, Umami /api/send) */
    uint32_t max_request_bytes;      /* request body before compression */
    uint32_t max_event_bytes;        /* larger events are dead-lettered, never sent */
    int accepts_gzip;                /* the server understands Content-Encoding: gzip */
    uint32_t max_concurrency;        /* requests in flight for per-event APIs; 0: the
                                        destination's max_concurrency */
} herald_backend_limits;

/* Events handed to encode() and classify(): serialized JSON objects (the
 * Segment-shaped messages described in docs/events.md), oldest first. */
typedef struct herald_backend_batch {
    uint32_t struct_size;
    size_t count;
    const char *const *events;
    const size_t *event_lengths;
    int64_t now_ms;                  /* wall clock at this attempt (for sentAt) */
    uint32_t attempt;                /* 1 for the first attempt of the oldest event */
} herald_backend_batch;

/* One HTTP POST. encode() fills body and headers (herald_alloc'ed; the core
 * frees them, also when encode fails) and url (borrowed from the backend
 * state: valid until destroy). headers are "Name: value" lines joined by
 * '\n', or NULL. A "User-Agent" header replaces herald's own. */
typedef struct herald_backend_request {
    uint32_t struct_size;
    const char *url;
    char *body;
    size_t body_length;
    char *headers;
    /* Credentials sent in the body (an API key field), '\n'-separated,
     * herald_alloc'ed, or NULL. herald removes them, like every request
     * header value but Content-Type, Content-Encoding, Accept, User-Agent and
     * X-ClickHouse-User,
     * from response excerpts and reasons before storing or logging them: a
     * server that echoes a key in its error must not put it in a dead letter. */
    char *secrets;
} herald_backend_request;

/* A response as the core read it. status 0 means no HTTP response arrived
 * (connection refused, reset, timeout, TLS failure): transport_error says
 * why. body is at most the first 64 KiB, NUL-terminated. */
typedef struct herald_backend_response {
    uint32_t struct_size;
    long status;
    const char *body;
    size_t body_length;
    const char *transport_error;
    /* Value of a response header (case-insensitive name), or NULL. The value
     * is valid until the next call of header() or the end of classify(). */
    const char *(*header)(const struct herald_backend_response *response, const char *name);
    void *header_context;
} herald_backend_response;

typedef enum herald_verdict_kind {
    HERALD_VERDICT_OK = 0,           /* delivered */
    HERALD_VERDICT_RETRY = 1,        /* transient: back off (Retry-After honoured), retry */
    HERALD_VERDICT_REJECT = 2,       /* permanent: dead-letter with the reason */
    HERALD_VERDICT_SPLIT = 3         /* too large: retry in smaller requests */
} herald_verdict_kind;

/* What a response means. The core zeroes it, sets struct_size and, for a
 * batch of more than one event, points event_kinds at `count` entries set to
 * -1. A backend whose server reports per-event results (partial success)
 * writes a herald_verdict_kind into each entry it knows; the entries left at
 * -1 take `kind`. */
typedef struct herald_verdict {
    uint32_t struct_size;
    herald_verdict_kind kind;
    uint32_t dropped;                /* accepted, but the server discarded this many events
                                        (counted in stats, never retried) */
    char reason[256];                /* why, for logs and dead letters; no secrets, no event data */
    int *event_kinds;                /* optional per-event verdicts, see above; may be NULL */
} herald_verdict;

typedef struct herald_backend_v1 {
    uint32_t abi_version;            /* HERALD_PLUGIN_ABI_VERSION */
    uint32_t struct_size;            /* sizeof(herald_backend_v1) */
    const char *name;                /* "plausible": short, [a-z0-9_-] */
    /* Parse config_json (the destination's object without the core's own keys:
     * name, backend and the delivery settings of docs/configuration.md). Unknown
     * keys should be an error. core_abi is the core's HERALD_PLUGIN_ABI_VERSION.
     * Returns 0 with *state set, or -1 with a message in err. Required. */
    int (*create)(const char *config_json, uint32_t core_abi, void **state, char *err,
                  size_t errlen);
    /* Release a state. Required. */
    void (*destroy)(void *state);
    /* Fill *out (struct_size set by the core). Required. */
    void (*limits)(const void *state, herald_backend_limits *out);
    /* Build one request for the batch. Returns 0; or HERALD_ENCODE_SKIP when
     * no event of the batch is meant for this backend (Plausible has no
     * identify): the events leave the queue without a request and are counted
     * as skipped; or -1 with err set: the batch can never be sent, and is
     * dead-lettered with that reason. A backend taking several events per
     * request should leave unsuitable events out of its body instead.
     * Required. */
    int (*encode)(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                  char *err, size_t errlen);
    /* Decide what a response means for the batch. Required. */
    void (*classify)(void *state, const herald_backend_response *response,
                     const herald_backend_batch *batch, herald_verdict *out);
} herald_backend_v1;

/* encode()'s "not for this backend" answer. */
#define HERALD_ENCODE_SKIP 1

/* The entry point a plugin exports. */
typedef const herald_backend_v1 *(*herald_backend_entry_v1_fn)(void);
#define HERALD_BACKEND_ENTRY_V1 "herald_backend_entry_v1"

/* ---- Helpers the core exports to backends ---- */

/* Memory the core may free: see "Memory" above. NULL on failure. */
HERALD_EXPORT void *herald_alloc(size_t size);

/* The common HTTP meaning of a status: 2xx OK; 408, 429, 5xx and no response
 * RETRY; 413 SPLIT; anything else REJECT. Writes reason as "HTTP <status>:
 * <first line of the body, printable ASCII>" or "no response: <error>". */
HERALD_EXPORT void herald_verdict_from_status(const herald_backend_response *response,
                                              herald_verdict *out);

/* Format unix ms as RFC 3339 UTC with milliseconds into buf (>= 25 bytes). */
HERALD_EXPORT void herald_format_timestamp_ms(int64_t unix_ms, char *buf, size_t buflen);

#ifdef __cplusplus
}
#endif

#endif /* HERALD_PLUGIN_H */
