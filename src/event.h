/* Event building: validate a call, complete it into a Segment-shaped message
 * and serialize it. Pure: the clock, ids and identity come in through env. */
#ifndef HERALD_EVENT_H
#define HERALD_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/herald.h"
#include "random.h"
#include "redact.h"

typedef struct herald_event_env {
    int64_t now_ms;               /* wall clock, unix ms */
    const char *anonymous_id;     /* persisted anonymous id; required */
    const char *user_id;          /* identified user, or NULL */
    uint32_t max_event_bytes;
    const json_t *context;        /* static context snapshot, or NULL (library only) */
    const json_t *traits;         /* the user's stored traits -> context.traits, or NULL */
    const char *group_id;         /* -> context.groupId, or NULL */
    int64_t session_id;           /* -> context.session {id, sequence}; 0: none */
    uint32_t session_sequence;
    const herald_redactor *redactor; /* NULL: no redaction */
    herald_redact_stats *redactions; /* what redaction did, added to; may be NULL */
    /* Writes a new lowercase UUID (36 chars + NUL) into out. */
    void (*new_message_id)(char out[37], void *ctx);
    void *new_message_id_ctx;
    /* If set: on success, receives the message as finished (redacted, as
     * serialized); the caller releases it. */
    json_t **finished;
} herald_event_env;

/* Complete, validate, enrich and redact `message` (a JSON object this
 * function takes over and releases) and serialize it. On success *out_json is malloc'ed, owned by
 * the caller, *out_len its length, and *out_type points to a static type
 * name. On failure returns a HERALD_E_* code with a message in err. */
herald_status herald_event_finish(const herald_event_env *env, json_t *message, char **out_json,
                                  size_t *out_len, const char **out_type, char *err,
                                  size_t errlen);

/* Parse `json` (may be NULL: an empty object) as a JSON object. On success
 * *out is a new reference. `what` names the argument in error messages. */
herald_status herald_event_parse_object(const char *json, const char *what, json_t **out,
                                        char *err, size_t errlen);

/* Format unix ms as RFC 3339 UTC with milliseconds ("2026-11-24T05:49:52.123Z").
 * buf must hold 25 bytes. */
void herald_format_timestamp(int64_t unix_ms, char buf[25]);

/* 1 if s is an RFC 3339 date-time (seconds required, fraction and offset as
 * the RFC allows). */
int herald_timestamp_valid(const char *s);

/* 1 if the NUL-terminated string is well-formed UTF-8. */
int herald_utf8_valid(const char *s);

/* A v4 UUID from a herald_random (ctx); matches herald_event_env.new_message_id.
 * For ids made once (the anonymous id). */
void herald_uuid_random(char out[37], void *ctx);

/* Message ids: RFC 9562 UUIDv7, monotonic (§6.2, method 2). The unix-ms
 * time in the top 48 bits, then a 74-bit counter seeded from the random
 * source at each new millisecond and incremented within it: ids sort by
 * time, never repeat within a generator, and ids of one batch share their
 * leading digits, which gzip then sends almost for free (a random v4 id costs
 * about 18 bytes per event on the wire). Across devices the seed's 74 random
 * bits per millisecond keep collisions as unlikely as v4's. Not for secrets:
 * within a millisecond the next id is the last plus one. */
typedef struct herald_idgen {
    void *random;       /* a herald_random * (NULL: the system's) */
    int64_t now_ms;     /* set by the caller before each id */
    int64_t last_ms;
    uint16_t rand_a;    /* 12 bits */
    uint64_t rand_b;    /* 62 bits */
} herald_idgen;

/* Forget the current millisecond's counter (at start, and in a fork()ed
 * child, whose next id must not continue its parent's sequence). */
void herald_idgen_reset(herald_idgen *g);

/* The next id of the herald_idgen `ctx` at its now_ms; matches
 * herald_event_env.new_message_id. */
void herald_uuid_v7(char out[37], void *ctx);

#endif
