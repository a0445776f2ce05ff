/*
 * The durable queue: one SQLite file (WAL) per client holding events, the
 * per-destination outbox, dead letters, counters and metadata.
 *
 * A queue is not thread-safe: the client serializes every call with its own
 * mutex. Every function that writes runs in one transaction, so a crash at
 * any instant leaves the file at the state before or after the call.
 */
#ifndef HERALD_QUEUE_H
#define HERALD_QUEUE_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/herald.h"
#include "log.h"

#define HERALD_QUEUE_SCHEMA_VERSION 2

typedef struct herald_queue herald_queue;

typedef struct herald_queue_config {
    const char *path;
    herald_durability durability;
    uint64_t max_events;
    uint64_t max_bytes;
    uint64_t max_dead_letters;
    herald_overflow_policy overflow_policy;
    const herald_logger *logger;
} herald_queue_config;

/* Open or create the file (0600), apply migrations up to the current schema.
 * A file that is not a database, or is corrupt, is renamed aside to
 * "<path>.corrupt-<unix seconds>" and a fresh queue is started (logged at
 * WARN). A file from a newer schema is refused (HERALD_E_STORAGE). */
herald_status herald_queue_open(herald_queue **out, const herald_queue_config *config, char *err,
                                size_t errlen);
void herald_queue_close(herald_queue *q);

/* In a fork()ed child: release this process's memory of a queue opened by
 * the parent without touching its SQLite connection (closing it could write
 * to the file, which the parent still uses). */
void herald_queue_forget(herald_queue *q);

/* Metadata: *value is malloc'ed (caller frees) or NULL when absent. */
herald_status herald_queue_meta_get(herald_queue *q, const char *key, char **value);
/* value NULL deletes the key. */
herald_status herald_queue_meta_set(herald_queue *q, const char *key, const char *value);

/* next_at of outbox rows held back until consent is granted. */
#define HERALD_QUEUE_HELD INT64_MAX

/* next_at of outbox rows whose event is in a request sent straight from the
 * staging ring (staging.h, "the fast lane") when they were committed: not
 * fetched, still pending; the delivery thread settles them when the request
 * ends, and herald_queue_release_fast makes them due after a crash. */
#define HERALD_QUEUE_FAST (INT64_MAX - 1)

/* A metadata write folded into a push's transaction (value NULL deletes). */
typedef struct herald_meta_update {
    const char *key;
    const char *value;
} herald_meta_update;

/* Commit one event, its outbox rows (held when `held`) and the metadata
 * updates in one transaction, enforcing the queue bounds. Under drop_oldest,
 * *evicted receives the number of events evicted to make room;
 * *queued_events and *queued_bytes (may be NULL) the queue's totals after
 * the commit. Errors: HERALD_E_QUEUE_FULL (reject_new, or an event larger
 * than the whole byte bound), HERALD_E_STORAGE. */
herald_status herald_queue_push(herald_queue *q, int64_t now_ms, const char *type,
                                const char *body, size_t length, const char *const *destinations,
                                size_t destination_count, int held,
                                const herald_meta_update *meta, size_t meta_count,
                                uint64_t *evicted, int64_t *queued_events, int64_t *queued_bytes,
                                char *err, size_t errlen);

/* One event of a push_many. */
typedef struct herald_queue_item {
    int64_t created_ms;
    const char *type;
    const char *body;
    size_t length;
    const char *const *destinations;
    size_t destination_count;
    int held;
    uint64_t fast_mask; /* bit i: destinations[i]'s row is HERALD_QUEUE_FAST (i < 64) */
} herald_queue_item;

/* Commit `count` events, the metadata updates and counter deltas in one
 * transaction (group commit). With `force`, events are stored even over a
 * reject_new bound (they were accepted already: staged events); drop_oldest
 * evicts as for a single push. Dead letters are trimmed once per call.
 * ids (may be NULL) receives each event's id; *queued_events and
 * *queued_bytes (may be NULL) the queue's totals after the commit. An item
 * with a fast_mask also records that HERALD_QUEUE_FAST rows exist (for
 * herald_queue_release_fast). Errors: as herald_queue_push. */
herald_status herald_queue_push_many(herald_queue *q, const herald_queue_item *items, size_t count,
                                     int force, const herald_meta_update *meta,
                                     size_t meta_count, const char *const *counters,
                                     const int64_t *deltas, size_t counter_count,
                                     int64_t *ids, uint64_t *evicted, int64_t *queued_events,
                                     int64_t *queued_bytes, char *err, size_t errlen);

/* Make the destination's HERALD_QUEUE_FAST rows of these events due now,
 * in one transaction (before their request's outcome is settled). */
herald_status herald_queue_unmark_fast(herald_queue *q, const char *destination,
                                       const int64_t *event_ids, size_t count);

/* At open, before delivery starts: every HERALD_QUEUE_FAST row left by a
 * process that ended with a request in flight becomes due (cheap when there
 * are none: a metadata key says whether any were written). */
herald_status herald_queue_release_fast(herald_queue *q);

/* Make held rows due now. *released receives how many. */
herald_status herald_queue_release_held(herald_queue *q, uint64_t *released);

/* Delete queued events and dead letters whose anonymousId or userId is one
 * of the given ids (either may be NULL), and apply the metadata updates, in
 * one transaction; then overwrite freed pages. *erased receives the count. */
herald_status herald_queue_erase_ids(herald_queue *q, const char *anonymous_id,
                                     const char *user_id, const herald_meta_update *meta,
                                     size_t meta_count, uint64_t *erased);

/* Add to a counter in its own transaction (for counts outside other writes). */
herald_status herald_queue_count(herald_queue *q, const char *counter, int64_t delta);

/* Add to several counters in one transaction. */
herald_status herald_queue_count_many(herald_queue *q, const char *const *counters,
                                      const int64_t *deltas, size_t count);

/* Counters whose names start with `prefix`, as members of `object` named
 * without the prefix. */
herald_status herald_queue_counters_with_prefix(herald_queue *q, const char *prefix,
                                                json_t *object);

/* Give events that no destination holds (queued while no destination was
 * configured) an outbox row for each of these destinations. */
herald_status herald_queue_adopt(herald_queue *q, const char *const *destinations,
                                 size_t destination_count);

typedef struct herald_queue_row {
    int64_t event_id;
    int64_t created_at;
    uint32_t attempts;
    char *body;
    size_t length;
} herald_queue_row;

/* Up to `limit` outbox rows of `destination` due at now_ms, oldest first.
 * *rows is malloc'ed; release with herald_queue_rows_free. */
herald_status herald_queue_fetch(herald_queue *q, const char *destination, int64_t now_ms,
                                 size_t limit, herald_queue_row **rows, size_t *count);
void herald_queue_rows_free(herald_queue_row *rows, size_t count);

typedef enum herald_settle_kind {
    HERALD_SETTLE_ACK = 0,   /* delivered: remove the rows */
    HERALD_SETTLE_RETRY = 1, /* schedule again at next_at_ms */
    HERALD_SETTLE_DEAD = 2,  /* move to dead letters */
    HERALD_SETTLE_SKIP = 3   /* not for this destination: remove, count as skipped */
} herald_settle_kind;

/* The outcome of one delivery attempt for a set of rows of one destination. */
typedef struct herald_settlement {
    herald_settle_kind kind;
    const int64_t *event_ids;
    size_t count;
    int64_t now_ms;
    /* RETRY: */
    int64_t next_at_ms;
    int count_attempt;         /* 1: the attempt counts toward max_attempts */
    uint32_t max_attempts;     /* rows reaching it are dead-lettered */
    int64_t expire_before_ms;  /* rows created before it are dead-lettered */
    /* RETRY and DEAD: */
    long http_status;
    const char *reason;
    const char *response;      /* excerpt of the response body, or NULL */
    /* Counters folded into the same transaction. */
    uint64_t requests;
    uint64_t bytes_raw;
    uint64_t bytes_sent;
    uint64_t retried;
    uint64_t dropped;          /* the server discarded this many (ACK only) */
} herald_settlement;

/* Apply a settlement in one transaction. *sent and *dead (may be NULL)
 * receive how many rows were delivered and dead-lettered. */
herald_status herald_queue_settle(herald_queue *q, const char *destination,
                                  const herald_settlement *settlement, uint64_t *sent,
                                  uint64_t *dead);

/* 1 in *pending if the destination still owes any event that is not held. */
herald_status herald_queue_has_pending(herald_queue *q, const char *destination, int *pending);

/* Earliest next_at after now_ms among the destination's rows, or -1. */
herald_status herald_queue_next_due(herald_queue *q, const char *destination, int64_t now_ms,
                                    int64_t *next_at);

herald_status herald_queue_pending_count(herald_queue *q, const char *destination,
                                         uint64_t *count);

/* Outbox rows held for consent, over all destinations. */
herald_status herald_queue_held_count(herald_queue *q, uint64_t *count);

/* Fill the counters of herald_stats (struct_size is respected). */
herald_status herald_queue_stats(herald_queue *q, herald_stats *out);

herald_status herald_queue_dead_letters_json(herald_queue *q, uint64_t limit, char **out);

/* Requeue dead letters of `destination` (NULL: of every destination in the
 * list) and delete them, in one transaction. */
herald_status herald_queue_replay(herald_queue *q, const char *destination,
                                  const char *const *destinations, size_t destination_count,
                                  int64_t now_ms, uint64_t *replayed);

/* Have this connection's write transactions (those of push, settle,
 * replay, erase, release) take `writer` first: connections of one process
 * sharing it wait on each other without SQLite's busy sleeps. */
void herald_queue_share_writer(herald_queue *q, pthread_mutex_t *writer);

/* Bound this connection's page cache (KiB). */
void herald_queue_set_cache_kib(herald_queue *q, unsigned kib);

/* The last SQLite error text of this queue. */
const char *herald_queue_errmsg(herald_queue *q);

#endif
