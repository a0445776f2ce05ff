/*
 * The staging log: what makes an accepted event durable in well under a
 * microsecond, and SQLite's cost a background affair.
 *
 * Each open client owns one file beside its queue,
 * "<queue>-stage-<pid>-<random>", 0600, preallocated and mapped shared,
 * holding a ring of records. A call appends its finished (validated,
 * enriched, redacted) event as one record: a copy into the mapping and a
 * release store of the record's length. The bytes are then in the kernel's
 * page cache, so a kill -9 an instant later loses nothing. An ingest thread
 * moves records into the SQLite queue many per transaction (group commit) on
 * its own connection, recording the last sequence number it committed in the
 * same transaction ("stage:<file name>" in meta); only then is the ring space
 * reused. A destination that keeps up takes its batches from the ring before
 * that (the fast lane, below), and what it acknowledged is only counted.
 *
 * A process that dies leaves its file behind. The next herald_open on the
 * same queue finds it (its owner's flock is gone), commits the records past
 * the recorded sequence number, and removes it.
 *
 * Record layout (16-byte aligned, native byte order: the file never leaves
 * the machine): u32 length (0: none yet; top bit: padding to the ring's
 * end), u32 check (a hash of the payload: a record torn by a power loss is
 * not replayed), u64 sequence, then the payload (encode() in staging.c),
 * whose event body is followed by a NUL.
 *
 * Thread-safety: herald_stage_append is called by one thread at a time (the
 * client's call mutex); the ingest thread is internal; herald_stage_sync and
 * herald_stage_pending may be called from any thread.
 *
 * Power loss: the mapping is written back by the kernel, not synced; the
 * "power" durability option does not stage (every call commits with fsync).
 */
#ifndef HERALD_STAGING_H
#define HERALD_STAGING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/herald.h"
#include "log.h"
#include "queue.h"

typedef struct herald_stage herald_stage;

/* One staged call: the event as it will be pushed (event.type NULL: no
 * event, counters and metadata only), and what rides in its transaction. */
typedef struct herald_stage_entry {
    herald_queue_item event;
    const herald_meta_update *meta;
    size_t meta_count;
    const char *const *counters;
    const int64_t *deltas;
    size_t counter_count;
} herald_stage_entry;

/* The queue's totals (events, bytes) as of a staged position: every record
 * up to sequence `seq`, ending at ring position `pos`, is in them. */
typedef struct herald_stage_mark {
    int64_t queued_events, queued_bytes;
    uint64_t seq, pos;
} herald_stage_mark;

/* Called by the ingest thread after each commit (without its locks held)
 * with the number of events it stored and where the queue stands; used to
 * wake the delivery thread and to watch the bounds. */
typedef void (*herald_stage_committed_fn)(void *userdata, size_t events,
                                          const herald_stage_mark *mark);

/* The ring's size is the staging_bytes option: records take 16-byte
 * aligned room, and a record larger than a quarter of the ring is not
 * staged (the caller commits it directly). The ring is released from the
 * resident set in chunks of HERALD_STAGE_CHUNK: behind the ingest thread,
 * and behind the producer while a backlog builds up (the records stay in
 * the page cache; whoever reads them next faults them back in). */
#define HERALD_STAGE_CHUNK (256u << 10)
#define HERALD_STAGE_MIN (1u << 20)

/* Commit the records of dead processes' staging files of this queue (files
 * no live process holds), then remove those files. `q` is an open queue on
 * the same file. Returns HERALD_OK, or HERALD_E_STORAGE when a file could not
 * be recovered (err says which and why; that file is kept for the next open,
 * the others are recovered all the same). *recovered counts events. */
herald_status herald_stage_recover(herald_queue *q, const char *queue_path,
                                   const herald_logger *logger, uint64_t *recovered, char *err,
                                   size_t errlen);

/* Create this client's staging file with a ring of `capacity` bytes
 * (rounded up to HERALD_STAGE_CHUNK, at least HERALD_STAGE_MIN) and start
 * its ingest thread, which commits through its own queue connection opened
 * with `config`, sharing `writer` (may be NULL) with the client's
 * (herald_queue_share_writer). */
herald_status herald_stage_open(herald_stage **out, const herald_queue_config *config,
                                uint64_t capacity, pthread_mutex_t *writer,
                                herald_stage_committed_fn committed,
                                void *userdata, char *err, size_t errlen);

/* Commit everything staged (revoking claims in flight), stop the thread,
 * remove the file. The mapping lives on while claims hold it. */
void herald_stage_close(herald_stage *s);

/* Around fork(): prepare waits until the ingest thread is outside SQLite
 * and keeps it out (a child must not inherit SQLite's locks held by a
 * thread it does not have); release lets it go on, in the parent and in the
 * child (before herald_stage_forget). */
void herald_stage_fork_prepare(herald_stage *s);
void herald_stage_fork_release(herald_stage *s);

/* In a fork()ed child: drop this process's view (mapping, descriptors)
 * without touching the file, which the parent still owns. */
void herald_stage_forget(herald_stage *s);

/* Append one record. Waits up to timeout_ms for ring space while the ingest
 * thread catches up (not when its last commit failed). Returns HERALD_OK (the record is durable against a
 * process kill), HERALD_E_TOO_LARGE (does not fit: commit it directly), or
 * HERALD_E_STORAGE when the ring stays full (err carries the ingest error,
 * if any). */
herald_status herald_stage_append(herald_stage *s, const herald_stage_entry *e, int timeout_ms,
                                  char *err, size_t errlen);

/* Wait until every record appended before the call is committed to SQLite.
 * timeout_ms < 0: no limit. HERALD_OK, or HERALD_E_TIMEOUT (err carries the
 * ingest error, if any). */
herald_status herald_stage_sync(herald_stage *s, int timeout_ms, char *err, size_t errlen);

/* Events appended and not yet committed. */
uint64_t herald_stage_pending(herald_stage *s);

/* The sequence number and ring position after the last appended record
 * (from the producer's thread: they do not move under it). */
void herald_stage_published(herald_stage *s, uint64_t *seq, uint64_t *pos);

/* ---- The fast lane ----
 *
 * A destination that keeps up takes its batches straight from the ring
 * (a "claim") instead of from SQLite. The ingest thread holds records back
 * for a while (herald_stage_set_lanes' hold_ms) while a lane that is on may
 * still claim them; an event every destination acknowledges in that time
 * never enters SQLite: the ingest thread only adds the counters and moves
 * the committed sequence number past it. What no lane took in time is
 * committed as before.
 *
 * A claim that fails (any verdict but a clean success, or a request that
 * cannot be encoded) is revoked: the ingest thread commits its events with
 * HERALD_QUEUE_FAST outbox rows for that destination and hands their ids to
 * the delivery thread, which settles them like any batch from the queue.
 * Unclaimed records wait no longer once the ring is three quarters full;
 * the ingest thread revokes claims itself at fifteen sixteenths, on
 * herald_stage_sync, while a revoke is awaited and on close, so a slow
 * request never holds the ring. A revoked claim's events keep their ring
 * space until the claim is freed (the request still reads them).
 *
 * A kill -9 between a destination's acknowledgement and the ingest thread's
 * next commit sends those events again after the next open (at least once,
 * the same messageId).
 *
 * Lanes are indexes into the name list given to herald_stage_set_lanes (the
 * client's destinations). Claims are made and resolved by one thread (the
 * delivery thread). */
#define HERALD_STAGE_LANES 16

/* How long the delivery thread waits for a revoked claim's commit. */
#define HERALD_STAGE_REVOKE_WAIT_MS 5000

typedef struct herald_stage_ack {
    uint64_t requests, bytes_raw, bytes_sent, dropped;
} herald_stage_ack;

/* A batch taken from the ring. The event bodies are NUL-terminated bytes in
 * the mapping, valid until the claim is acked, or, for a claim handed back
 * to be settled or dropped, until herald_stage_claim_free (the ring does
 * not reuse their space before). */
typedef struct herald_stage_claim {
    size_t count;
    const char **events;
    size_t *lengths;
    int64_t *ids;              /* after a revoke: each event's id in the queue */
    /* Internal to staging.c. */
    struct herald_stage *stage;
    size_t lane;
    uint64_t from, to;         /* ring positions covered */
    uint64_t *pos;             /* each event's record position, ascending */
    int state;
    int revoke_wanted;
    int had_fast;              /* FAST rows were (or are being) committed for it */
    herald_stage_ack ack;
    struct herald_stage_claim *next;
} herald_stage_claim;

/* How a lane cuts a batch (the destination's limits and settings). */
typedef struct herald_stage_batching {
    size_t max_events;
    size_t max_bytes;          /* of event bodies plus a separator each */
    size_t max_event_bytes;    /* 0: none; larger events stay for the queue */
    uint32_t flush_interval_ms;
    int flushing;              /* send whatever is there */
    int64_t now_ms;            /* the client's clock, as created_ms */
    uint64_t row_commits;      /* herald_stage_row_commits before the caller
                                  found the queue empty for this lane */
} herald_stage_batching;

/* How many commits so far stored events as rows. A lane takes from the ring
 * only while the queue holds nothing due for its destination: events go out
 * in the order they were accepted. */
uint64_t herald_stage_row_commits(herald_stage *s);

/* What the caller does with a claim after resolving it. */
typedef enum herald_claim_next {
    HERALD_CLAIM_TAKEN = 0,    /* the stage owns it now: forget it */
    HERALD_CLAIM_SETTLE = 1,   /* ids are valid: settle them in the queue, then free it */
    HERALD_CLAIM_DROP = 2      /* nothing to settle (the events go through the queue
                                  or stay in the file): free it */
} herald_claim_next;

/* Name the lanes (copied) and how long unclaimed records wait for one.
 * Call once, before any claim; every lane starts on (a destination is
 * healthy until it fails). */
herald_status herald_stage_set_lanes(herald_stage *s, const char *const *names, size_t count,
                                     uint32_t hold_ms);

/* Turn a lane on (its destination is healthy: claims are worth waiting
 * for) or off (the ingest thread does not hold records back for it). */
void herald_stage_lane_set(herald_stage *s, size_t lane, int on);

/* Take the next batch of `lane` if one is ready under `b` and no commit
 * of rows happened since b->row_commits nor is under way: returns 1 with
 * *out, or 0 with *ready_at lowered to when one will be (by the client's
 * clock). Claims of one lane cover the ring in order. */
int herald_stage_take(herald_stage *s, size_t lane, const herald_stage_batching *b,
                       herald_stage_claim **out, int64_t *ready_at);

/* The destination accepted the whole batch. TAKEN, or SETTLE when the
 * ingest thread had revoked it meanwhile (ack its ids in the queue). */
herald_claim_next herald_stage_claim_acked(herald_stage_claim *c, const herald_stage_ack *ack);

/* Anything else: have the events committed (FAST rows) and wait up to
 * timeout_ms for their ids. SETTLE; TAKEN when the ingest thread could not
 * commit in time (the events go into the queue as plain rows once it can);
 * DROP when the stage is closed (the events stay in its file). Must not be
 * called with the client's mutex held (the ingest thread takes it after
 * committing). */
herald_claim_next herald_stage_claim_revoke(herald_stage_claim *c, int timeout_ms);

/* Free a claim returned SETTLE or DROP. */
void herald_stage_claim_free(herald_stage_claim *c);

#endif
