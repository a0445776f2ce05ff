/* Batching: how many due rows go into the next request, and whether it
 * should leave now. Pure, so the rules are unit-tested apart from I/O. */
#ifndef HERALD_BATCH_H
#define HERALD_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "queue.h"

typedef struct herald_batch_rules {
    size_t max_events;          /* events per request (>= 1) */
    size_t max_bytes;           /* JSON bytes per request; one event always fits */
    uint32_t flush_interval_ms; /* the oldest row waits at most this long */
    int flushing;               /* a flush or close is waiting: send what there is */
} herald_batch_rules;

typedef struct herald_batch_cut {
    size_t take;                /* rows [0, take) form the batch; 0 if none due */
    int send_now;               /* 1: send the batch now */
    int64_t ready_at_ms;        /* when send_now is 0: when the batch will be due */
} herald_batch_cut;

/* Cut `count` due rows (oldest first) into the next batch. A batch is sent
 * now when it is full (by count or bytes, or more rows wait behind it), a
 * flush is waiting, any row is a retry, or the oldest row is older than the
 * flush interval. */
herald_batch_cut herald_batch_plan(const herald_queue_row *rows, size_t count,
                                   const herald_batch_rules *rules, int64_t now_ms);

#endif
