/*
 * The fast event builder: the body of a track or screen event as text,
 * without a jansson tree, for the calls whose result is certain to be the
 * same JSON value herald_event_finish (event.c) gives. Whenever it is not
 * certain, it says HERALD_FAST_FALLBACK and the caller runs that slow path,
 * which stays the reference: it gives the exact error, the redacted event
 * and the redaction stats. The fast path never fails a call on its own and
 * never redacts: it only succeeds where redaction would change nothing.
 *
 * Two parts, so the work that does not depend on the call happens once:
 *
 *   herald_fast_frame  what identity contributes (userId, anonymousId, the
 *                      enriched, redacted context), built through
 *                      herald_event_finish itself whenever identity changes;
 *   herald_fast_args   one call's name and properties, validated and checked
 *                      against the redactor by herald_fast_scan, on any
 *                      thread, before the caller takes its lock.
 *
 * herald_fast_assemble then writes the body from both under the caller's
 * lock, with the clock, message id and session the slow path would use.
 *
 * Same value, not the same bytes: members come in another order, and numbers
 * keep the caller's spelling ("1E5", "-0") where json_dumps would print
 * 100000.0 and 0. Parsing either text gives json_equal values. Because the
 * lengths can differ, the size limit goes through herald_fast_fits.
 *
 * Thread-safety: herald_fast_scan may run on any number of threads at once
 * and takes no lock (it is not async-signal-safe). Each thread that scans
 * with a redactor keeps a cache of verdicts on strings already checked, 512
 * entries of 64 bytes, freed when the thread exits; entries are keyed by the
 * redactor's unique id, so a freed redactor's verdicts are never reused. A
 * frame is immutable once built: any number of threads may assemble from it
 * while its one owner keeps it alive.
 */
#ifndef HERALD_FASTBUILD_H
#define HERALD_FASTBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "redact.h"

/* Not an error: use the jansson path (herald_event_finish) for this call. */
#define HERALD_FAST_FALLBACK 1

/* Largest properties text the fast path takes; longer goes the slow way. */
#define HERALD_FAST_MAX_INPUT (64u * 1024u)

/* One call's arguments, checked. Fill with herald_fast_args_init, release
 * with herald_fast_args_free; the struct owns its text (inline for small
 * events, else heap) and must not be copied by value. */
typedef struct herald_fast_args {
    const char *type;      /* "track" or "screen" (static) after a successful scan */
    char *text;            /* the name's JSON literal, then the properties object */
    size_t name_len;       /* bytes of the name literal; 0: no name member */
    size_t props_len;      /* bytes of the compact properties object after it */
    size_t slack;          /* how many bytes longer json_dumps may spell the numbers */
    size_t cap;            /* bytes at text */
    char small[512];
} herald_fast_args;

void herald_fast_args_init(herald_fast_args *a);
void herald_fast_args_free(herald_fast_args *a);

/* Step 1, any thread, no lock. Validates `name` (the event name
 * for "track", required; the screen name for "screen", may be NULL) and
 * `props_json` (NULL means {}), and checks with the redactor `r` (NULL or
 * disabled: redaction off) that herald_redact_event would change nothing in
 * them: the name, every member name and every value of the properties. On
 * success fills `out` with compact JSON text (the name as a string literal,
 * the properties object) and returns 0. Returns HERALD_FAST_FALLBACK when
 * not certain: another type, invalid JSON or UTF-8, escapes in strings,
 * anything redaction would touch, duplicate keys, nesting deeper than 32,
 * input over HERALD_FAST_MAX_INPUT, out of memory. `out` is reusable after a
 * fallback. */
int herald_fast_scan(const herald_redactor *r, const char *type, const char *name,
                     const char *props_json, herald_fast_args *out);

/* The identity-dependent parts of every track and screen event, enriched and
 * redacted once. Opaque. */
typedef struct herald_fast_frame herald_fast_frame;

/* Build the frame from the fields of `env` herald_event_finish reads for a
 * track or screen event: anonymous_id, user_id, context, traits, group_id and
 * redactor (the clock, ids, session, max_event_bytes and stats of env are not
 * used). The frame is the slow path's own result for a probe event, so it
 * matches by construction. Rebuild it whenever any of those fields change;
 * it copies what it needs and keeps no pointer into env. Returns HERALD_OK
 * with *out (free with herald_fast_frame_free), HERALD_E_NO_MEMORY, or
 * HERALD_FAST_FALLBACK with *out NULL when redaction would change the
 * identity or context (every event would then need per-event redaction and
 * stats: every call uses the slow path until the next rebuild). */
int herald_fast_frame_build(const herald_event_env *env, herald_fast_frame **out);
void herald_fast_frame_free(herald_fast_frame *f);

/* Step 2, under the caller's lock: the whole event body into dst (cap
 * bytes, not NUL-terminated). Returns its length, or 0 if it does not fit.
 * The same value as herald_event_finish(env, {"type": a->type,
 * "event" or "name": name, "properties": props}) with env->now_ms = now_ms,
 * messageId = message_id (36 characters, a UUID as herald_uuid_random
 * writes), and context.session {id, sequence} as given (session_id 0: none).
 * max_event_bytes is the caller's to check, with herald_fast_fits. */
size_t herald_fast_assemble(const herald_fast_frame *f, const herald_fast_args *a,
                            int64_t now_ms, const char message_id[37], int64_t session_id,
                            uint32_t session_sequence, char *dst, size_t cap);

/* An upper bound of herald_fast_assemble's length for f and a: a dst of
 * this many bytes always fits. */
size_t herald_fast_size_bound(const herald_fast_frame *f, const herald_fast_args *a);

/* 1 if a body of `length` bytes assembled from `a` is within max_event_bytes
 * however json_dumps would spell its numbers; 0: run the slow path, which
 * decides exactly (never report HERALD_E_TOO_LARGE from the fast path). */
int herald_fast_fits(const herald_fast_args *a, size_t length, uint32_t max_event_bytes);

#endif
