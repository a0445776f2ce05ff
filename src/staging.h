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
 * reused.
 *
 * A process that dies leaves its file behind. The next herald_open on the
 * same queue finds it (its owner's flock is gone), commits the records past
 * the recorded sequence number, and removes it.
 *
 * Record layout (16-byte aligned, native byte order: the file never leaves
 * the machine): u32 length (0: none yet; top bit: padding to the ring's
 * end), u32 check (a hash of the payload: a record torn by a power loss is
 * not replayed), u64 sequence, then the payload (stage_encode in staging.c).
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

/* Called by the ingest thread after each commit with the number of events
 * it committed and the queue's totals after it (events, bytes); used to
 * wake the delivery thread and to watch the bounds. */
typedef void (*herald_stage_committed_fn)(void *userdata, size_t events, int64_t queued_events,
                                          int64_t queued_bytes);

/* Ring capacity (bytes of records): 1.5 MiB, about 2,500 typical events,
 * a multiple of the 256 KiB chunks the ingest thread releases from the
 * resident set. Larger rides out longer bursts (a 1 MiB ring made about one
 * call in a thousand wait a millisecond); smaller keeps the peak RSS lower.
 * A record larger than a quarter of it is not staged: the caller commits it
 * directly. */
#define HERALD_STAGE_CAPACITY (3u << 19)

/* Commit the records of dead processes' staging files of this queue (files
 * no live process holds), then remove those files. `q` is an open queue on
 * the same file. Returns HERALD_OK, or HERALD_E_STORAGE when a file could not
 * be recovered (err says which and why; that file is kept for the next open,
 * the others are recovered all the same). *recovered counts events. */
herald_status herald_stage_recover(herald_queue *q, const char *queue_path,
                                   const herald_logger *logger, uint64_t *recovered, char *err,
                                   size_t errlen);

/* Create this client's staging file and start its ingest thread, which
 * commits through its own queue connection opened with `config`, sharing
 * `writer` (may be NULL) with the client's (herald_queue_share_writer). */
herald_status herald_stage_open(herald_stage **out, const herald_queue_config *config,
                                pthread_mutex_t *writer, herald_stage_committed_fn committed,
                                void *userdata, char *err, size_t errlen);

/* Commit everything staged, stop the thread, remove the file. */
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

/* The largest record body that herald_stage_append accepts. */
size_t herald_stage_max_body(void);

#endif
