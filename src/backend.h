/*
 * The backend interface: what a destination's backend does, and nothing of
 * transport, retries, compression or storage, which the core owns.
 *
 * This is the shape of the versioned plugin ABI: it uses only its own types,
 * plain C and malloc'ed buffers, so it can be published as a stable header
 * and loaded from shared objects without change.
 */
#ifndef HERALD_BACKEND_H
#define HERALD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define HERALD_BACKEND_ABI_VERSION 1

/* What a backend accepts. Zero means "no limit of its own". */
typedef struct herald_backend_limits {
    uint32_t max_events_per_request; /* 1 for per-event APIs */
    uint32_t max_request_bytes;      /* body size before compression */
    uint32_t max_event_bytes;
    int accepts_gzip;                /* Content-Encoding: gzip understood */
} herald_backend_limits;

/* Events handed to encode(): serialized JSON objects, oldest first. */
typedef struct herald_backend_batch {
    size_t count;
    const char *const *events;
    const size_t *event_lengths;
    int64_t now_ms;                  /* wall clock at this attempt (for sentAt) */
    uint32_t attempt;                /* 1 for the first attempt of the oldest event */
} herald_backend_batch;

/* One HTTP request. encode() fills body (malloc'ed; the core frees it) and
 * headers (malloc'ed "Name: value" lines joined by '\n', or NULL; freed by the
 * core). url is borrowed from the backend state and must outlive the request. */
typedef struct herald_backend_request {
    const char *url;
    char *body;
    size_t body_length;
    char *headers;
} herald_backend_request;

/* A response as the core read it. status 0 means no HTTP response arrived
 * (connection refused, timeout, TLS failure): transport_error says why. */
typedef struct herald_backend_response {
    long status;
    const char *body;                /* at most the first 64 KiB, NUL-terminated */
    size_t body_length;
    const char *transport_error;
    /* Value of a response header (case-insensitive name), or NULL. */
    const char *(*header)(const struct herald_backend_response *response, const char *name);
    void *header_context;
} herald_backend_response;

typedef enum herald_verdict_kind {
    HERALD_VERDICT_OK = 0,           /* delivered */
    HERALD_VERDICT_RETRY = 1,        /* transient: back off (Retry-After honoured) and retry */
    HERALD_VERDICT_REJECT = 2,       /* permanent: dead-letter the batch */
    HERALD_VERDICT_SPLIT = 3         /* too large: retry in smaller batches */
} herald_verdict_kind;

typedef struct herald_verdict {
    herald_verdict_kind kind;
    uint32_t dropped;                /* OK but the server discarded this many events */
    char reason[256];                /* why, for logs and dead letters (no secrets) */
} herald_verdict;

typedef struct herald_backend_v1 {
    uint32_t abi_version;            /* HERALD_BACKEND_ABI_VERSION */
    const char *name;
    /* Parse config_json (the backend's own keys only; unknown keys are an
     * error) into a state. Returns 0, or -1 with a message in err. */
    int (*create)(const char *config_json, void **state, char *err, size_t errlen);
    void (*destroy)(void *state);
    void (*limits)(const void *state, herald_backend_limits *out);
    /* Build one request for the batch. Returns 0, or -1 with err set. */
    int (*encode)(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                  char *err, size_t errlen);
    /* Decide what a response means for the batch. */
    void (*classify)(void *state, const herald_backend_response *response,
                     const herald_backend_batch *batch, herald_verdict *out);
} herald_backend_v1;

/* Built-in backends. */
const herald_backend_v1 *herald_backend_rest(void);

/* Look up a built-in backend by name, or NULL. */
const herald_backend_v1 *herald_backend_find(const char *name);

/* Shared verdict for the common HTTP meaning of a status: 2xx OK; 408, 429,
 * 5xx and transport failures RETRY; 413 SPLIT; anything else REJECT. */
void herald_verdict_from_status(const herald_backend_response *response, herald_verdict *out);

#endif
