/* The staging log and its ingest thread: see staging.h. */
#include "staging.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "random.h"

#define STAGE_MAGIC "HRLDSTG1"
#define STAGE_VERSION 1u
#define STAGE_HEADER 4096u
#define REC_HEAD 16u     /* length, check, sequence */
#define REC_FIXED 24u    /* created_ms, body_len, counts, held, strings_len */
#define REC_PAD_BIT 0x80000000u
#define GROUP_MAX 1024   /* records per transaction */
#define MARKS 64         /* when the ingest thread saw the head: records' ages */
#define POPULATE_AHEAD 2 /* chunks the producer maps ahead of itself at a time */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it, harmlessly */
#endif

enum { CLAIM_INFLIGHT, CLAIM_ACKED, CLAIM_REVOKING, CLAIM_COMMITTED, CLAIM_RELEASED };

typedef struct lane {
    char *name;
    int on;
    uint64_t cursor;             /* ring position after its last claim */
    herald_stage_claim *first, *last; /* claims the ingest thread has not passed */
} lane;

/* The file's first page. Only `tail` changes after creation; it is a hint
 * for recovery (the committed sequence number in SQLite is the truth). */
typedef struct stage_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    uint64_t tail;
} stage_header;

struct herald_stage {
    char *path;
    char *meta_key;            /* "stage:<file name>" */
    int fd;
    unsigned char *map;        /* header + ring */
    unsigned char *ring;
    uint64_t capacity;
    herald_queue *q;           /* the ingest thread's connection */
    const herald_logger *logger;
    herald_stage_committed_fn committed;
    void *userdata;

    /* Producer (one at a time, under the caller's lock). */
    uint64_t head;             /* logical offset of the next record */
    uint64_t next_seq;

    /* Shared. */
    _Atomic uint64_t head_pub; /* published head */
    _Atomic uint64_t seq_pub;  /* sequence of the last published record */
    _Atomic uint64_t tail;     /* logical offset of the first uncommitted record */
    _Atomic uint64_t seq_done; /* sequence of the last committed record */
    _Atomic int sleeping;      /* the ingest thread waits for work */

    pthread_mutex_t mu;
    pthread_mutex_t sql_mu;    /* held by the ingest thread inside SQLite (fork) */
    pthread_cond_t wake;       /* work for the ingest thread */
    pthread_cond_t space;      /* the ingest thread committed (or failed) */
    int stop;
    int failing;               /* the last ingest failed */
    char error[256];
    pthread_t thread;
    int thread_started;

    /* The fast lane (under mu). */
    lane lanes[HERALD_STAGE_LANES];
    size_t lane_count;
    uint32_t hold_ms;            /* unclaimed records wait this long for a lane */
    _Atomic uint64_t wake_fill;  /* a producer wakes the sleeping ingest thread at this fill */
    int syncing;                 /* herald_stage_sync callers */
    int revoke_waiters;          /* herald_stage_claim_revoke callers */
    uint64_t kicks;              /* claims resolved, lanes switched: look again */
    uint64_t kicks_seen;         /* as of the ingest thread's last walk */
    int closed;                  /* the ingest thread is gone */
    pthread_cond_t resolved;     /* a revoked claim was committed */
    int64_t mark_ms[MARKS];      /* the ingest thread's view of the head over time */
    uint64_t mark_head[MARKS];
    unsigned mark_next;
    _Atomic int refs;            /* the client's, and one per claim */
    uint64_t walked;             /* the ingest thread's commit in progress ends here */
    int walked_rows;             /* and stores events as rows */
    _Atomic uint64_t row_commits; /* commits that stored events as rows */
    herald_stage_claim *held;    /* revoked claims whose request still reads the ring */
    _Atomic uint64_t reuse;      /* ring space before this may be written again */
};

/* ---- records ---- */

/* A 32-bit check of a record's payload: four independent multiply-xorshift
 * lanes over 32-byte blocks (the lanes keep the multiplier busy), folded.
 * Not cryptographic: it tells a record torn by a power loss from a whole one. */
static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    return h ^ (h >> 32);
}

static uint32_t payload_check(const unsigned char *p, size_t n)
{
    uint64_t l0 = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n, l1 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t l2 = 0x165667b19e3779f9ULL, l3 = 0x27d4eb2f165667c5ULL;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        l0 = mix(l0, w[0]);
        l1 = mix(l1, w[1]);
        l2 = mix(l2, w[2]);
        l3 = mix(l3, w[3]);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        l0 = mix(l0, w);
    }
    for (; i < n; i++)
        l1 = mix(l1, p[i]);
    uint64_t h = mix(mix(mix(l0, l1), l2), l3);
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

static size_t align16(size_t n)
{
    return (n + 15u) & ~(size_t)15u;
}

static size_t strings_size(const herald_stage_entry *e)
{
    size_t n = strlen(e->event.type ? e->event.type : "") + 1;
    for (size_t i = 0; i < e->event.destination_count; i++)
        n += strlen(e->event.destinations[i]) + 1;
    for (size_t i = 0; i < e->meta_count; i++)
        n += strlen(e->meta[i].key) + 2 + (e->meta[i].value ? strlen(e->meta[i].value) : 0) + 1;
    for (size_t i = 0; i < e->counter_count; i++)
        n += strlen(e->counters[i]) + 1 + 8;
    return n;
}

static unsigned char *put_string(unsigned char *p, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(p, s, n);
    return p + n;
}

/* The payload of `e` at p (after the record head). */
static void encode(unsigned char *p, const herald_stage_entry *e, size_t strings)
{
    uint32_t body_len = (uint32_t)e->event.length, strings_len = (uint32_t)strings;
    uint16_t counts[3] = {(uint16_t)e->event.destination_count, (uint16_t)e->meta_count,
                          (uint16_t)e->counter_count};
    memcpy(p, &e->event.created_ms, 8);
    memcpy(p + 8, &body_len, 4);
    memcpy(p + 12, counts, 6);
    p[18] = (unsigned char)(e->event.held ? 1 : 0);
    p[19] = 0;
    memcpy(p + 20, &strings_len, 4);
    unsigned char *w = p + REC_FIXED;
    w = put_string(w, e->event.type ? e->event.type : "");
    for (size_t i = 0; i < e->event.destination_count; i++)
        w = put_string(w, e->event.destinations[i]);
    for (size_t i = 0; i < e->meta_count; i++) {
        w = put_string(w, e->meta[i].key);
        *w++ = e->meta[i].value ? 1 : 0;
        w = put_string(w, e->meta[i].value ? e->meta[i].value : "");
    }
    for (size_t i = 0; i < e->counter_count; i++) {
        w = put_string(w, e->counters[i]);
        memcpy(w, &e->deltas[i], 8);
        w += 8;
    }
    if (e->event.length)
        memcpy(w, e->event.body, e->event.length);
}

/* A decoded record: pointers into the mapping, valid until the ring space
 * is released. */
typedef struct decoded {
    uint64_t seq;
    int64_t created_ms;
    const char *type; /* "" when none */
    const char *body;
    size_t body_len;
    int held;
    size_t destination_count, meta_count, counter_count;
    const char *strings; /* type, destinations, meta, counters */
    const char *strings_end;
} decoded;

/* Next NUL-terminated string inside [p, end), or NULL. */
static const char *take_string(const char **p, const char *end)
{
    const char *s = *p;
    const char *nul = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (nul == NULL)
        return NULL;
    *p = nul + 1;
    return s;
}

/* Validate and decode the record at rec (len bytes, from its head). The
 * check is verified when `verify` (recovery); the ingest thread reads
 * records this process wrote a moment ago. */
static int decode(const unsigned char *rec, size_t len, int verify, decoded *d)
{
    if (len < REC_HEAD + REC_FIXED)
        return -1;
    uint32_t check;
    memcpy(&check, rec + 4, 4);
    if (verify && payload_check(rec + REC_HEAD, len - REC_HEAD) != check)
        return -1;
    const unsigned char *p = rec + REC_HEAD;
    uint32_t body_len, strings_len;
    uint16_t counts[3];
    memcpy(&d->seq, rec + 8, 8);
    memcpy(&d->created_ms, p, 8);
    memcpy(&body_len, p + 8, 4);
    memcpy(counts, p + 12, 6);
    d->held = p[18] != 0;
    memcpy(&strings_len, p + 20, 4);
    if ((size_t)REC_HEAD + REC_FIXED + strings_len + body_len > len)
        return -1;
    d->destination_count = counts[0];
    d->meta_count = counts[1];
    d->counter_count = counts[2];
    d->strings = (const char *)p + REC_FIXED;
    d->strings_end = d->strings + strings_len;
    d->body = d->strings_end;
    d->body_len = body_len;
    /* Walk the strings once so that later walks cannot run off. */
    const char *w = d->strings;
    if ((d->type = take_string(&w, d->strings_end)) == NULL)
        return -1;
    for (size_t i = 0; i < d->destination_count; i++)
        if (take_string(&w, d->strings_end) == NULL)
            return -1;
    for (size_t i = 0; i < d->meta_count; i++) {
        if (take_string(&w, d->strings_end) == NULL || w >= d->strings_end)
            return -1;
        w++;
        if (take_string(&w, d->strings_end) == NULL)
            return -1;
    }
    for (size_t i = 0; i < d->counter_count; i++) {
        if (take_string(&w, d->strings_end) == NULL || d->strings_end - w < 8)
            return -1;
        w += 8;
    }
    return 0;
}

/* ---- group commit ---- */

/* An event of a revoked claim in the group: its id goes to c->ids[idx]. */
typedef struct revoked_event {
    herald_stage_claim *claim;
    size_t idx;
    size_t item;
} revoked_event;

#define REVOKED_MAX (GROUP_MAX * 2)
#define FAST_COUNTERS 6 /* folded in by group_commit */

typedef struct group {
    herald_queue_item *items;
    const char **dests;
    int64_t *ids;
    size_t item_count, dest_count;
    herald_meta_update meta[16];
    size_t meta_count;
    const char *counters[32 + FAST_COUNTERS];
    int64_t deltas[32 + FAST_COUNTERS];
    size_t counter_count;
    uint64_t last_seq;
    char seq_text[24];
    int64_t queued_events, queued_bytes; /* the queue's totals after the commit */
    /* The fast lane: what destinations acknowledged, and revoked events. */
    uint64_t fast_sent, fast_accepted;
    herald_stage_ack ack;
    revoked_event *revoked;
    size_t revoked_count;
} group;

static void group_reset(group *g)
{
    g->item_count = g->dest_count = g->meta_count = g->counter_count = 0;
    g->fast_sent = g->fast_accepted = 0;
    memset(&g->ack, 0, sizeof g->ack);
    g->revoked_count = 0;
}

static int group_init(group *g)
{
    memset(g, 0, sizeof *g);
    g->items = calloc(GROUP_MAX, sizeof *g->items);
    g->dests = calloc((size_t)GROUP_MAX * 8, sizeof *g->dests);
    g->ids = calloc(GROUP_MAX, sizeof *g->ids);
    g->revoked = calloc(REVOKED_MAX, sizeof *g->revoked);
    return g->items && g->dests && g->ids && g->revoked ? 0 : -1;
}

static void group_free(group *g)
{
    free(g->items);
    free(g->dests);
    free(g->ids);
    free(g->revoked);
}

/* 1 if the record fits in the group (item slots, destination slots, meta
 * keys, counters, revoked events); 0 if the group must be committed first. */
static int group_fits(const group *g, const decoded *d)
{
    return g->item_count < GROUP_MAX && g->dest_count + d->destination_count <= GROUP_MAX * 8 &&
           g->meta_count + d->meta_count < 15 && g->counter_count + d->counter_count <= 32 &&
           g->revoked_count + HERALD_STAGE_LANES <= REVOKED_MAX;
}

/* Add a record. Destination i is left out when bit i of `skip` is set (a
 * lane delivered it) and gets a HERALD_QUEUE_FAST row when bit i of `fast`
 * is (a revoked claim holds it); an event left with no destination at all
 * is not stored, only counted. Returns the item's index, or -1 for none. */
static long group_add(group *g, const decoded *d, uint64_t skip, uint64_t fast)
{
    const char *w = d->strings;
    long item = -1;
    take_string(&w, d->strings_end); /* type */
    herald_queue_item *it = NULL;
    /* skip has a bit only for destinations 0..63 that the record lists. */
    int delivered_everywhere = skip != 0 && (size_t)__builtin_popcountll(skip) ==
                                                d->destination_count;
    if (d->type[0] != '\0' && !delivered_everywhere) {
        item = (long)g->item_count;
        it = &g->items[g->item_count++];
        it->created_ms = d->created_ms;
        it->type = d->type;
        it->body = d->body;
        it->length = d->body_len;
        it->held = d->held;
        it->destinations = &g->dests[g->dest_count];
        it->destination_count = 0;
        it->fast_mask = 0;
    } else if (d->type[0] != '\0') {
        g->fast_accepted++;
    }
    for (size_t i = 0; i < d->destination_count; i++) {
        const char *name = take_string(&w, d->strings_end);
        if (it == NULL || (i < 64 && (skip >> i & 1u)))
            continue;
        if (i < 64 && (fast >> i & 1u))
            it->fast_mask |= (uint64_t)1 << it->destination_count;
        g->dests[g->dest_count++] = name;
        it->destination_count++;
    }
    for (size_t i = 0; i < d->meta_count; i++) {
        const char *key = take_string(&w, d->strings_end);
        int has_value = *w++ != 0;
        const char *value = take_string(&w, d->strings_end);
        size_t k = 0;
        while (k < g->meta_count && strcmp(g->meta[k].key, key) != 0)
            k++;
        if (k == g->meta_count)
            g->meta_count++;
        g->meta[k].key = key;
        g->meta[k].value = has_value ? value : NULL; /* the last write wins */
    }
    for (size_t i = 0; i < d->counter_count; i++) {
        const char *name = take_string(&w, d->strings_end);
        int64_t delta;
        memcpy(&delta, w, 8);
        w += 8;
        size_t k = 0;
        while (k < g->counter_count && strcmp(g->counters[k], name) != 0)
            k++;
        if (k == g->counter_count) {
            g->counters[k] = name;
            g->deltas[k] = 0;
            g->counter_count++;
        }
        g->deltas[k] += delta;
    }
    g->last_seq = d->seq;
    return item;
}

/* Commit the group with the "last committed sequence" key. */
static herald_status group_commit(herald_queue *q, group *g, const char *meta_key,
                                  const herald_logger *logger, char *err, size_t errlen)
{
    snprintf(g->seq_text, sizeof g->seq_text, "%" PRIu64, g->last_seq);
    g->meta[g->meta_count] = (herald_meta_update){meta_key, g->seq_text};
    /* What lanes delivered: the counters a settlement would have moved. */
    size_t n = g->counter_count;
    const char *names[FAST_COUNTERS] = {"sent", "accepted", "requests",
                                        "bytes_raw", "bytes_sent", "server_dropped"};
    uint64_t values[FAST_COUNTERS] = {g->fast_sent, g->fast_accepted, g->ack.requests,
                                      g->ack.bytes_raw, g->ack.bytes_sent, g->ack.dropped};
    for (size_t i = 0; i < FAST_COUNTERS; i++) {
        if (values[i]) {
            g->counters[n] = names[i];
            g->deltas[n++] = (int64_t)values[i];
        }
    }
    uint64_t evicted = 0;
    herald_status st = herald_queue_push_many(q, g->items, g->item_count, 1, g->meta,
                                              g->meta_count + 1, g->counters, g->deltas, n,
                                              g->ids, &evicted, &g->queued_events,
                                              &g->queued_bytes, err, errlen);
    if (st == HERALD_OK && evicted)
        herald_log(logger, HERALD_LOG_WARN,
                   "queue full: evicted %" PRIu64 " oldest events to dead letters", evicted);
    return st;
}

/* ---- the ring ---- */

static uint32_t load_len(const unsigned char *at)
{
    return __atomic_load_n((const uint32_t *)(const void *)at, __ATOMIC_ACQUIRE);
}

static void store_len(unsigned char *at, uint32_t len)
{
    __atomic_store_n((uint32_t *)(void *)at, len, __ATOMIC_RELEASE);
}

/* The record at *pos or the first after padding, before head: 1 with it
 * decoded (*pos at it, *len its size), 0 at head, -1 if it does not decode.
 * Records this process wrote a moment ago: the check is not verified. */
static int record_at(const herald_stage *s, uint64_t *pos, uint64_t head, decoded *d,
                     uint32_t *len)
{
    while (*pos < head) {
        const unsigned char *rec = s->ring + *pos % s->capacity;
        uint32_t n = load_len(rec);
        if (n & REC_PAD_BIT) {
            *pos += n & ~REC_PAD_BIT;
            continue;
        }
        *len = n;
        return decode(rec, n, 0, d) == 0 ? 1 : -1;
    }
    return 0;
}

/* The CLOCK_MONOTONIC time ms from now (the conditions' clock). */
static struct timespec deadline_in(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void set_error(herald_stage *s, const char *message)
{
    pthread_mutex_lock(&s->mu);
    s->failing = message != NULL;
    snprintf(s->error, sizeof s->error, "%s", message ? message : "");
    pthread_mutex_unlock(&s->mu);
}

/* Drop the pages of fully released 256 KiB chunks from this process's
 * resident set; the data stays in the page cache. */
static void release_pages(herald_stage *s, uint64_t from, uint64_t to)
{
    uint64_t first = from / HERALD_STAGE_CHUNK; /* its end is past `from` */
    uint64_t last = to / HERALD_STAGE_CHUNK;
    for (uint64_t c = first; c < last; c++) {
        uint64_t phys = (c * HERALD_STAGE_CHUNK) % s->capacity;
        madvise(s->ring + phys, HERALD_STAGE_CHUNK, MADV_DONTNEED);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the fast lane (under mu) ---- */

/* Remember when the ingest thread saw `head`: records before it are at
 * least as old as that. */
static void mark_head(herald_stage *s, int64_t now, uint64_t head)
{
    unsigned last = (s->mark_next + MARKS - 1) % MARKS;
    if (s->mark_ms[last] != 0 && s->mark_head[last] == head)
        return;
    s->mark_ms[s->mark_next] = now;
    s->mark_head[s->mark_next] = head;
    s->mark_next = (s->mark_next + 1) % MARKS;
}

/* Records before the returned position have waited hold_ms or more. */
static uint64_t held_long_enough(const herald_stage *s, int64_t now)
{
    uint64_t old = 0;
    for (unsigned i = 0; i < MARKS; i++)
        if (s->mark_ms[i] != 0 && s->mark_ms[i] <= now - (int64_t)s->hold_ms &&
            s->mark_head[i] > old)
            old = s->mark_head[i];
    return old;
}

static int any_lane_on(const herald_stage *s)
{
    for (size_t i = 0; i < s->lane_count; i++)
        if (s->lanes[i].on)
            return 1;
    return 0;
}

static int lane_of(const herald_stage *s, const char *name)
{
    for (size_t i = 0; i < s->lane_count; i++)
        if (strcmp(s->lanes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The claim of `l` whose range holds pos, if any (claims are in ring order). */
static herald_stage_claim *claim_at(const lane *l, uint64_t pos)
{
    for (herald_stage_claim *c = l->first; c; c = c->next) {
        if (pos < c->from)
            return NULL;
        if (pos < c->to)
            return c;
    }
    return NULL;
}

/* The index of the event at pos in the claim, or -1 (a record in its range
 * it did not take: held, for other destinations, too large). */
static long claim_index(const herald_stage_claim *c, uint64_t pos)
{
    size_t lo = 0, hi = c->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->pos[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->count && c->pos[lo] == pos ? (long)lo : -1;
}

static void stage_unref(herald_stage *s);

/* Where the producer may write again: the tail, or the oldest revoked
 * claim still read by its request. */
static void update_reuse(herald_stage *s)
{
    uint64_t reuse = atomic_load(&s->tail);
    for (herald_stage_claim *c = s->held; c; c = c->next)
        if (c->from < reuse)
            reuse = c->from;
    atomic_store(&s->reuse, reuse);
}

static void claim_release_memory(herald_stage_claim *c)
{
    free(c->events);
    free(c->lengths);
    free(c->ids);
    free(c->pos);
    free(c);
}

/* What the lanes say of one record: destinations to leave out (delivered),
 * to store as FAST rows (revoked claims, listed in rev), or wait (a claim is
 * in flight, or a lane may still claim it). */
typedef struct verdicts {
    uint64_t skip, fast;
    int wait;
    uint64_t sent;
    herald_stage_ack ack;
    revoked_event rev[HERALD_STAGE_LANES];
    size_t nrev;
} verdicts;

static void lane_verdicts(herald_stage *s, const decoded *d, uint64_t pos, uint64_t old,
                          int hurry, int revoke, verdicts *v)
{
    memset(v, 0, sizeof *v);
    if (s->lane_count == 0 || d->type[0] == '\0' || d->held)
        return;
    const char *w = d->strings;
    take_string(&w, d->strings_end); /* type */
    for (size_t i = 0; i < d->destination_count && i < 64 && !v->wait; i++) {
        int index = lane_of(s, take_string(&w, d->strings_end));
        if (index < 0)
            continue;
        lane *l = &s->lanes[index];
        herald_stage_claim *c = claim_at(l, pos);
        long k = c ? claim_index(c, pos) : -1;
        if (k < 0) {
            if (pos >= l->cursor && l->on && !hurry && pos >= old)
                v->wait = 1;
            continue;
        }
        if (c->state == CLAIM_INFLIGHT && (revoke || c->revoke_wanted)) {
            c->state = CLAIM_REVOKING;
            c->had_fast = 1;
        }
        switch (c->state) {
        case CLAIM_INFLIGHT:
            v->wait = 1;
            break;
        case CLAIM_ACKED:
            v->skip |= (uint64_t)1 << i;
            v->sent++;
            if (k == 0) {
                v->ack.requests += c->ack.requests;
                v->ack.bytes_raw += c->ack.bytes_raw;
                v->ack.bytes_sent += c->ack.bytes_sent;
                v->ack.dropped += c->ack.dropped;
            }
            break;
        case CLAIM_REVOKING:
            v->fast |= (uint64_t)1 << i;
            v->rev[v->nrev++] = (revoked_event){c, (size_t)k, 0};
            break;
        default: /* released: a plain row */
            break;
        }
    }
}

/* After a commit up to `pos`: hand revoked claims' ids over, retire the
 * claims the ingest thread passed. Released claims that had FAST rows
 * committed are returned in *unmark (their rows are made due by the
 * caller, outside mu). */
static void retire_claims(herald_stage *s, const group *g, uint64_t pos,
                          herald_stage_claim **unmark)
{
    for (size_t i = 0; i < g->revoked_count; i++)
        g->revoked[i].claim->ids[g->revoked[i].idx] = g->ids[g->revoked[i].item];
    int broadcast = 0;
    for (size_t i = 0; i < s->lane_count; i++) {
        lane *l = &s->lanes[i];
        while (l->first && l->first->to <= pos) {
            herald_stage_claim *c = l->first;
            l->first = c->next;
            if (l->first == NULL)
                l->last = NULL;
            c->next = NULL;
            if (c->state == CLAIM_REVOKING) {
                /* The delivery thread's now. Its request still reads the
                 * events in the ring: their space is not reused until it
                 * frees the claim. */
                c->state = CLAIM_COMMITTED;
                c->next = s->held;
                s->held = c;
                broadcast = 1;
            } else if (c->state == CLAIM_RELEASED && c->had_fast) {
                c->next = *unmark;
                *unmark = c;
            } else {
                claim_release_memory(c); /* acked or released: nobody else holds it */
                atomic_fetch_sub(&s->refs, 1);
            }
        }
    }
    if (broadcast)
        pthread_cond_broadcast(&s->resolved);
}

/* Commit records from the tail up to `head` (or a group's worth). With lanes,
 * stop early where a lane may still take a record or holds it in flight
 * (*blocked). */
static herald_status ingest_some(herald_stage *s, group *g, uint64_t head, int *blocked, char *err,
                                 size_t errlen)
{
    uint64_t tail = atomic_load(&s->tail);
    uint64_t pos = tail;
    group_reset(g);
    *blocked = 0;
    pthread_mutex_lock(&s->mu);
    uint64_t fill = head - tail;
    /* Someone waits for a revoke: the delivery thread, which cannot finish
     * the other lanes' requests meanwhile. */
    int revoke = s->stop || s->syncing || s->revoke_waiters || fill > s->capacity / 16 * 15;
    int hurry = revoke || fill > s->capacity / 4 * 3;
    s->kicks_seen = s->kicks;
    uint64_t old = s->lane_count ? held_long_enough(s, mono_ms()) : 0;
    decoded d;
    uint32_t len;
    int found;
    while ((found = record_at(s, &pos, head, &d, &len)) == 1) {
        if (!group_fits(g, &d))
            break;
        verdicts v;
        lane_verdicts(s, &d, pos, old, hurry, revoke, &v);
        if (v.wait) {
            *blocked = 1;
            break;
        }
        long item = group_add(g, &d, v.skip, v.fast);
        g->fast_sent += v.sent;
        g->ack.requests += v.ack.requests;
        g->ack.bytes_raw += v.ack.bytes_raw;
        g->ack.bytes_sent += v.ack.bytes_sent;
        g->ack.dropped += v.ack.dropped;
        for (size_t i = 0; i < v.nrev; i++) {
            v.rev[i].item = (size_t)item;
            g->revoked[g->revoked_count++] = v.rev[i];
        }
        pos += len;
    }
    if (found < 0) {
        /* Our own record: cannot happen short of memory corruption. */
        pthread_mutex_unlock(&s->mu);
        herald_error_format(err, errlen, "staging record at %" PRIu64 " is damaged", pos);
        return HERALD_E_STORAGE;
    }
    /* What this commit takes is no longer for a lane to claim. */
    s->walked = pos;
    s->walked_rows = g->item_count > 0;
    pthread_mutex_unlock(&s->mu);
    if (pos == tail)
        return HERALD_OK;
    pthread_mutex_lock(&s->sql_mu);
    herald_status st = group_commit(s->q, g, s->meta_key, s->logger, err, errlen);
    pthread_mutex_unlock(&s->sql_mu);
    herald_stage_claim *unmark = NULL;
    pthread_mutex_lock(&s->mu);
    s->walked_rows = 0;
    if (st != HERALD_OK) {
        s->walked = tail;
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    if (g->item_count > 0)
        atomic_fetch_add(&s->row_commits, 1);
    retire_claims(s, g, pos, &unmark);
    atomic_store(&s->seq_done, g->last_seq);
    atomic_store(&s->tail, pos);
    update_reuse(s);
    pthread_mutex_unlock(&s->mu);
    while (unmark) {
        herald_stage_claim *c = unmark;
        unmark = c->next;
        pthread_mutex_lock(&s->sql_mu);
        if (herald_queue_unmark_fast(s->q, s->lanes[c->lane].name, c->ids, c->count) != HERALD_OK)
            herald_log(s->logger, HERALD_LOG_WARN,
                       "%s: events of an abandoned request stay unsent until the next open",
                       s->lanes[c->lane].name);
        pthread_mutex_unlock(&s->sql_mu);
        claim_release_memory(c);
        atomic_fetch_sub(&s->refs, 1);
    }
    size_t events = g->item_count;
    ((stage_header *)(void *)s->map)->tail = pos;
    release_pages(s, tail, pos);
    if (s->committed) {
        herald_stage_mark mark = {g->queued_events, g->queued_bytes, g->last_seq, pos};
        s->committed(s->userdata, events, &mark);
    }
    return HERALD_OK;
}

static void *ingest_main(void *arg)
{
    herald_stage *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    group g;
    if (group_init(&g) != 0) {
        set_error(s, "out of memory in the ingest thread");
        group_free(&g);
        return NULL;
    }
    uint32_t backoff_ms = 0;
    int blocked = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        uint64_t tail = atomic_load(&s->tail);
        int idle = atomic_load(&s->head_pub) == tail;
        if (s->stop && (idle || backoff_ms))
            break; /* drained, or failing: what is left stays in the file */
        int lanes = any_lane_on(s);
        if (idle || backoff_ms || (blocked && !s->stop && !s->syncing)) {
            /* A producer wakes this thread once the ring holds wake_fill
             * bytes: at once without lanes; with lanes, at the next
             * threshold of ingest_some (three quarters full: unclaimed
             * records wait no longer; fifteen sixteenths: claims in flight
             * are revoked). Resolved claims wake it too. */
            uint64_t fill = atomic_load(&s->head_pub) - tail;
            uint64_t wake_fill = idle || (!lanes && !blocked) ? 1
                                 : fill > s->capacity / 4 * 3 ? s->capacity / 16 * 15 + 1
                                                              : s->capacity / 4 * 3 + 1;
            atomic_store(&s->wake_fill, wake_fill);
            atomic_store(&s->sleeping, 1);
            /* Re-check after announcing sleep: a producer that published
             * before seeing `sleeping` is seen here. */
            long wait_ms = backoff_ms ? (long)backoff_ms
                           : idle             ? 1000
                                              : (long)(s->hold_ms / 4 > 2 ? s->hold_ms / 4 : 2);
            if (backoff_ms || (blocked && s->kicks == s->kicks_seen) ||
                (!blocked && atomic_load(&s->head_pub) - atomic_load(&s->tail) < wake_fill)) {
                struct timespec ts = deadline_in(wait_ms);
                pthread_cond_timedwait(&s->wake, &s->mu, &ts);
            }
            atomic_store(&s->sleeping, 0);
            backoff_ms = 0;
            blocked = 0;
            continue;
        }
        uint64_t head = atomic_load(&s->head_pub);
        if (s->lane_count)
            mark_head(s, mono_ms(), head);
        pthread_mutex_unlock(&s->mu);
        char err[256] = "";
        herald_status st = ingest_some(s, &g, head, &blocked, err, sizeof err);
        pthread_mutex_lock(&s->mu);
        if (st != HERALD_OK) {
            if (!s->failing)
                herald_log(s->logger, HERALD_LOG_ERROR,
                           "cannot move staged events into the queue (kept, retrying): %s", err);
            s->failing = 1;
            snprintf(s->error, sizeof s->error, "%s", err);
            backoff_ms = 250;
        } else if (s->failing) {
            herald_log(s->logger, HERALD_LOG_INFO, "staged events are moving into the queue again");
            s->failing = 0;
            s->error[0] = '\0';
        }
        pthread_cond_broadcast(&s->space);
    }
    pthread_cond_broadcast(&s->space);
    pthread_mutex_unlock(&s->mu);
    group_free(&g);
    return NULL;
}

/* ---- files ---- */

static char *stage_prefix(const char *queue_path)
{
    size_t n = strlen(queue_path) + sizeof "-stage-";
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s-stage-", queue_path);
    return p;
}

static char *meta_key_for(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base) + sizeof "stage:";
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "stage:%s", base);
    return k;
}

static void stage_free(herald_stage *s)
{
    if (s->map && s->map != MAP_FAILED)
        munmap(s->map, STAGE_HEADER + s->capacity);
    if (s->fd >= 0)
        close(s->fd);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->space);
    pthread_cond_destroy(&s->resolved);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->sql_mu);
    for (size_t i = 0; i < s->lane_count; i++)
        free(s->lanes[i].name);
    free(s->path);
    free(s->meta_key);
    free(s);
}

/* The client's reference and each claim's: the mapping outlives a close
 * while a request still reads events from it. */
static void stage_unref(herald_stage *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        stage_free(s);
}

herald_status herald_stage_open(herald_stage **out, const herald_queue_config *config,
                                uint64_t capacity, pthread_mutex_t *writer,
                                herald_stage_committed_fn committed,
                                void *userdata, char *err, size_t errlen)
{
    *out = NULL;
    herald_stage *s = calloc(1, sizeof *s);
    if (s == NULL)
        return HERALD_E_NO_MEMORY;
    s->fd = -1;
    if (capacity < HERALD_STAGE_MIN)
        capacity = HERALD_STAGE_MIN;
    s->capacity = (capacity + HERALD_STAGE_CHUNK - 1) / HERALD_STAGE_CHUNK * HERALD_STAGE_CHUNK;
    s->logger = config->logger;
    s->committed = committed;
    s->userdata = userdata;
    s->next_seq = 1;
    atomic_init(&s->refs, 1);
    atomic_init(&s->wake_fill, 1);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->sql_mu, NULL);
    pthread_cond_init(&s->wake, &attr);
    pthread_cond_init(&s->space, &attr);
    pthread_cond_init(&s->resolved, &attr);
    pthread_condattr_destroy(&attr);

    /* The file is made under a name recovery does not take ("-stagenew-"),
     * and renamed once locked and initialised: another process's
     * herald_open can never see (and remove) it between its creation and
     * its lock. */
    unsigned char rnd[4];
    herald_random_fill(NULL, rnd, sizeof rnd);
    char suffix[48];
    snprintf(suffix, sizeof suffix, "%ld-%02x%02x%02x%02x", (long)getpid(), rnd[0], rnd[1],
             rnd[2], rnd[3]);
    size_t n = strlen(config->path) + sizeof "-stagenew-" + strlen(suffix);
    s->path = malloc(n);
    char *fresh = malloc(n);
    if (s->path)
        snprintf(s->path, n, "%s-stage-%s", config->path, suffix);
    if (fresh)
        snprintf(fresh, n, "%s-stagenew-%s", config->path, suffix);
    s->meta_key = s->path ? meta_key_for(s->path) : NULL;
    if (s->path == NULL || fresh == NULL || s->meta_key == NULL) {
        free(fresh);
        stage_free(s);
        return HERALD_E_NO_MEMORY;
    }
    s->fd = open(fresh, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = s->fd < 0 ? errno : 0;
    if (rc == 0 && flock(s->fd, LOCK_EX | LOCK_NB) != 0)
        rc = errno;
    /* Reserve the blocks now: a store into a mapped hole on a full disk
     * would be a SIGBUS. */
    if (rc == 0)
        rc = posix_fallocate(s->fd, 0, (off_t)(STAGE_HEADER + s->capacity));
    if (rc == 0) {
        s->map = mmap(NULL, STAGE_HEADER + s->capacity, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd,
                      0);
        if (s->map == MAP_FAILED)
            rc = errno;
    }
    if (rc == 0) {
        stage_header *h = (stage_header *)(void *)s->map;
        memcpy(h->magic, STAGE_MAGIC, 8);
        h->version = STAGE_VERSION;
        h->header_size = STAGE_HEADER;
        h->capacity = s->capacity;
        h->tail = 0;
        if (rename(fresh, s->path) != 0)
            rc = errno;
    }
    if (rc != 0) {
        herald_error_format(err, errlen, "cannot create staging file %s: %s", s->path,
                            strerror(rc));
        if (s->fd >= 0)
            unlink(fresh);
        free(fresh);
        stage_free(s);
        return HERALD_E_STORAGE;
    }
    free(fresh);
    s->ring = s->map + STAGE_HEADER;
    /* No readahead into the mapping: a fault then maps one page, not a
     * large folio around it, so what a chunk release drops stays dropped. */
    madvise(s->map, STAGE_HEADER + s->capacity, MADV_RANDOM);

    herald_status st = herald_queue_open(&s->q, config, err, errlen);
    /* The ingest connection appends: the right edge of each tree and the
     * counters are its working set. A small cache keeps the resident set
     * small (docs/performance.md: peak RSS). */
    if (st == HERALD_OK) {
        herald_queue_set_cache_kib(s->q, 256);
        herald_queue_share_writer(s->q, writer);
    }
    if (st == HERALD_OK && pthread_create(&s->thread, NULL, ingest_main, s) != 0) {
        herald_error_format(err, errlen, "cannot start the ingest thread");
        st = HERALD_E_STORAGE;
    }
    if (st != HERALD_OK) {
        herald_queue_close(s->q);
        unlink(s->path);
        stage_free(s);
        return st;
    }
    s->thread_started = 1;
    *out = s;
    return HERALD_OK;
}

herald_status herald_stage_sync(herald_stage *s, int timeout_ms, char *err, size_t errlen)
{
    uint64_t target = atomic_load(&s->head_pub);
    struct timespec deadline = deadline_in(timeout_ms >= 0 ? timeout_ms : 0);
    herald_status st = HERALD_OK;
    pthread_mutex_lock(&s->mu);
    s->syncing++; /* commit everything now, revoking claims in flight */
    pthread_cond_signal(&s->wake);
    while (atomic_load(&s->tail) < target) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->space, &s->mu);
            continue;
        }
        if (pthread_cond_timedwait(&s->space, &s->mu, &deadline) == ETIMEDOUT &&
            atomic_load(&s->tail) < target) {
            herald_error_format(err, errlen, "staged events are not in the queue yet%s%s",
                                s->failing ? ": " : "", s->failing ? s->error : "");
            st = HERALD_E_TIMEOUT;
            break;
        }
    }
    s->syncing--;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void herald_stage_published(herald_stage *s, uint64_t *seq, uint64_t *pos)
{
    *seq = atomic_load(&s->seq_pub);
    *pos = atomic_load(&s->head_pub);
}

uint64_t herald_stage_pending(herald_stage *s)
{
    return atomic_load(&s->seq_pub) - atomic_load(&s->seq_done);
}

/* ---- the fast lane: the delivery thread's side ---- */

uint64_t herald_stage_row_commits(herald_stage *s)
{
    return atomic_load(&s->row_commits);
}

herald_status herald_stage_set_lanes(herald_stage *s, const char *const *names, size_t count,
                                     uint32_t hold_ms)
{
    if (count > HERALD_STAGE_LANES)
        count = HERALD_STAGE_LANES; /* the others always go through the queue */
    pthread_mutex_lock(&s->mu);
    herald_status st = HERALD_OK;
    for (size_t i = 0; i < count && st == HERALD_OK; i++) {
        if ((s->lanes[i].name = strdup(names[i])) == NULL) {
            st = HERALD_E_NO_MEMORY;
        } else {
            s->lane_count = i + 1;
            s->lanes[i].on = 1;
        }
    }
    s->hold_ms = hold_ms;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void herald_stage_lane_set(herald_stage *s, size_t index, int on)
{
    pthread_mutex_lock(&s->mu);
    if (index < s->lane_count && s->lanes[index].on != !!on) {
        s->lanes[index].on = !!on;
        if (!on) {
            s->kicks++;
            pthread_cond_signal(&s->wake); /* nothing waits for it any longer */
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static int lists_destination(const decoded *d, const char *name)
{
    const char *w = d->strings;
    take_string(&w, d->strings_end); /* type */
    for (size_t i = 0; i < d->destination_count && i < 64; i++)
        if (strcmp(take_string(&w, d->strings_end), name) == 0)
            return 1;
    return 0;
}

/* What a lane would send from a position, under a batching's limits. */
typedef struct plan {
    size_t count, bytes;
    int64_t oldest_ms;
    uint64_t end;   /* after the last record counted */
    int full;       /* a limit was reached */
} plan;

/* Count the records `l` would send from `from` into *p; with `fill` (a
 * second pass, over what the first counted), store them in the claim. */
static void scan_lane(const herald_stage *s, const lane *l, uint64_t from, uint64_t head,
                      const herald_stage_batching *b, plan *p, herald_stage_claim *fill)
{
    uint64_t pos = from;
    decoded d;
    uint32_t len;
    for (; record_at(s, &pos, head, &d, &len) == 1; pos += len) {
        if (d.type[0] == '\0' || d.held || !lists_destination(&d, l->name) ||
            (b->max_event_bytes && d.body_len > b->max_event_bytes))
            continue; /* not for this lane: the queue takes it */
        if (fill) {
            fill->events[fill->count] = d.body;
            fill->lengths[fill->count] = d.body_len;
            fill->pos[fill->count] = pos;
            if (++fill->count == p->count)
                return;
            continue;
        }
        if (p->count == b->max_events ||
            (p->count > 0 && p->bytes + d.body_len + 1 > b->max_bytes)) {
            p->full = 1;
            return;
        }
        if (p->count++ == 0)
            p->oldest_ms = d.created_ms;
        p->bytes += d.body_len + 1;
        p->end = pos + len;
    }
    p->full |= p->count == b->max_events;
}

int herald_stage_take(herald_stage *s, size_t index, const herald_stage_batching *b,
                       herald_stage_claim **out, int64_t *ready_at)
{
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->closed || index >= s->lane_count || b->max_events == 0) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (s->walked_rows || atomic_load(&s->row_commits) != b->row_commits) {
        /* Older events are on their way into the queue (or arrived since
         * the caller looked): they go first. */
        if (b->now_ms + 1 < *ready_at)
            *ready_at = b->now_ms + 1;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    lane *l = &s->lanes[index];
    uint64_t from = l->cursor > s->walked ? l->cursor : s->walked;
    if (from < atomic_load(&s->tail))
        from = atomic_load(&s->tail);
    uint64_t head = atomic_load(&s->head_pub);
    plan p = {0};
    scan_lane(s, l, from, head, b, &p, NULL);
    int ready = p.count > 0 &&
                (p.full || b->flushing || p.oldest_ms + (int64_t)b->flush_interval_ms <= b->now_ms);
    if (!ready) {
        if (p.count > 0 && p.oldest_ms + (int64_t)b->flush_interval_ms < *ready_at)
            *ready_at = p.oldest_ms + (int64_t)b->flush_interval_ms;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    herald_stage_claim *c = calloc(1, sizeof *c);
    if (c == NULL || (c->events = calloc(p.count, sizeof *c->events)) == NULL ||
        (c->lengths = calloc(p.count, sizeof *c->lengths)) == NULL ||
        (c->ids = calloc(p.count, sizeof *c->ids)) == NULL ||
        (c->pos = calloc(p.count, sizeof *c->pos)) == NULL) {
        if (c)
            claim_release_memory(c);
        pthread_mutex_unlock(&s->mu);
        return 0; /* the queue path takes them */
    }
    scan_lane(s, l, from, p.end, b, &p, c);
    c->stage = s;
    c->lane = index;
    c->from = from;
    c->to = p.end;
    c->state = CLAIM_INFLIGHT;
    l->cursor = p.end;
    if (l->last)
        l->last->next = c;
    else
        l->first = c;
    l->last = c;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&s->mu);
    *out = c;
    return 1;
}

/* Wait (mu held) for the ingest thread to commit a revoked claim. */
static herald_claim_next await_commit(herald_stage *s, herald_stage_claim *c, int timeout_ms)
{
    struct timespec deadline = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    s->revoke_waiters++;
    s->kicks++;
    pthread_cond_signal(&s->wake); /* hurry: someone waits for this commit */
    while ((c->state == CLAIM_INFLIGHT || c->state == CLAIM_REVOKING) && !s->closed &&
           timeout_ms > 0) {
        if (pthread_cond_timedwait(&s->resolved, &s->mu, &deadline) == ETIMEDOUT)
            break;
    }
    s->revoke_waiters--;
    if (c->state == CLAIM_COMMITTED)
        return HERALD_CLAIM_SETTLE;
    if (s->closed)
        return HERALD_CLAIM_DROP; /* detached by close: ours to free */
    /* Not committed in time (the ingest thread is failing): the events go
     * into the queue as plain rows whenever it can commit again. */
    c->state = CLAIM_RELEASED;
    s->kicks++;
    pthread_cond_signal(&s->wake);
    return HERALD_CLAIM_TAKEN;
}

herald_claim_next herald_stage_claim_acked(herald_stage_claim *c, const herald_stage_ack *ack)
{
    herald_stage *s = c->stage;
    pthread_mutex_lock(&s->mu);
    herald_claim_next next;
    if (c->state == CLAIM_INFLIGHT && !s->closed) {
        c->state = CLAIM_ACKED;
        c->ack = *ack;
        s->kicks++;
        pthread_cond_signal(&s->wake); /* the ingest thread may pass it now */
        next = HERALD_CLAIM_TAKEN;
    } else {
        next = await_commit(s, c, HERALD_STAGE_REVOKE_WAIT_MS);
    }
    pthread_mutex_unlock(&s->mu);
    return next;
}

herald_claim_next herald_stage_claim_revoke(herald_stage_claim *c, int timeout_ms)
{
    herald_stage *s = c->stage;
    pthread_mutex_lock(&s->mu);
    if (c->state == CLAIM_INFLIGHT) {
        c->revoke_wanted = 1;
        s->kicks++;
        pthread_cond_signal(&s->wake);
    }
    herald_claim_next next = await_commit(s, c, timeout_ms);
    pthread_mutex_unlock(&s->mu);
    return next;
}

void herald_stage_claim_free(herald_stage_claim *c)
{
    if (c == NULL)
        return;
    herald_stage *s = c->stage;
    pthread_mutex_lock(&s->mu);
    for (herald_stage_claim **p = &s->held; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            update_reuse(s);
            pthread_cond_broadcast(&s->space); /* a producer may wait for it */
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    claim_release_memory(c);
    stage_unref(s);
}

void herald_stage_close(herald_stage *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    if (atomic_load(&s->tail) == atomic_load(&s->head_pub)) {
        /* All committed. Remove the file before its key: a crash between
         * the two leaves a stale key, never a file replayed twice. */
        unlink(s->path);
        herald_queue_meta_set(s->q, s->meta_key, NULL);
    } else {
        herald_log(s->logger, HERALD_LOG_WARN,
                   "%" PRIu64 " staged events kept in %s for the next open",
                   herald_stage_pending(s), s->path);
    }
    herald_queue_close(s->q);
    s->q = NULL;
    /* Claims the ingest thread did not pass (it stopped failing): their
     * events stay in the file; a request still in flight learns that its
     * outcome has nowhere to go (HERALD_CLAIM_DROP). */
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    for (size_t i = 0; i < s->lane_count; i++) {
        herald_stage_claim *c = s->lanes[i].first;
        s->lanes[i].first = s->lanes[i].last = NULL;
        while (c) {
            herald_stage_claim *next = c->next;
            c->next = NULL;
            if (c->state == CLAIM_ACKED || c->state == CLAIM_RELEASED) {
                claim_release_memory(c);
                atomic_fetch_sub(&s->refs, 1); /* not the last: the client's is held */
            } else {
                c->state = CLAIM_RELEASED; /* the delivery thread frees it */
            }
            c = next;
        }
    }
    pthread_cond_broadcast(&s->resolved);
    pthread_mutex_unlock(&s->mu);
    stage_unref(s);
}

void herald_stage_fork_prepare(herald_stage *s)
{
    if (s)
        pthread_mutex_lock(&s->sql_mu);
}

void herald_stage_fork_release(herald_stage *s)
{
    if (s)
        pthread_mutex_unlock(&s->sql_mu);
}

void herald_stage_forget(herald_stage *s)
{
    if (s == NULL)
        return;
    herald_queue_forget(s->q);
    /* The parent's lock is on the shared open file description: closing our
     * descriptor does not release it while the parent keeps its own. The
     * mutex and conditions are not destroyed: the parent's ingest thread,
     * which does not exist here, may have been waiting on them (glibc's
     * pthread_cond_destroy would wait for it for ever). */
    munmap(s->map, STAGE_HEADER + s->capacity);
    close(s->fd);
    for (size_t i = 0; i < s->lane_count; i++)
        free(s->lanes[i].name);
    free(s->path);
    free(s->meta_key);
    free(s);
}

/* Wait (caller holds s->mu) until `need` bytes are free. */
static int wait_space(herald_stage *s, uint64_t need, int timeout_ms)
{
    struct timespec deadline = deadline_in(timeout_ms);
    while (s->head + need - atomic_load(&s->reuse) > s->capacity) {
        if (s->failing)
            return -1; /* the ingest cannot commit: waiting would not help */
        pthread_cond_signal(&s->wake);
        if (pthread_cond_timedwait(&s->space, &s->mu, &deadline) == ETIMEDOUT)
            return s->head + need - atomic_load(&s->reuse) <= s->capacity ? 0 : -1;
    }
    return 0;
}

/* The producer went into a new chunk. Every POPULATE_AHEAD chunks it maps
 * the next POPULATE_AHEAD in one call: a released (or never touched) page
 * otherwise faults on its own, on about one call in six, each fault some
 * microseconds (the file system's page_mkwrite); in one call the cost lands
 * on one call in about 850 (512 KiB of typical events) instead. During a backlog (a burst faster than
 * delivery) the chunk just filled leaves the resident set; it stays in the
 * page cache. */
static void entered_chunk(herald_stage *s)
{
    uint64_t chunk = s->head / HERALD_STAGE_CHUNK;
    if (chunk % POPULATE_AHEAD == 0) {
        uint64_t next = (chunk + 1) * HERALD_STAGE_CHUNK % s->capacity;
        uint64_t len = (uint64_t)POPULATE_AHEAD * HERALD_STAGE_CHUNK;
        if (next + len > s->capacity)
            len = s->capacity - next;
        madvise(s->ring + next, len, MADV_POPULATE_WRITE);
    }
    if (s->head - atomic_load(&s->tail) > 2 * (uint64_t)HERALD_STAGE_CHUNK)
        madvise(s->ring + (chunk - 1) * HERALD_STAGE_CHUNK % s->capacity, HERALD_STAGE_CHUNK,
                MADV_DONTNEED);
}

herald_status herald_stage_append(herald_stage *s, const herald_stage_entry *e, int timeout_ms,
                                  char *err, size_t errlen)
{
    size_t strings = strings_size(e);
    /* + 1: a NUL after the body, which the fast lane hands out in place. */
    size_t size = align16(REC_HEAD + REC_FIXED + strings + e->event.length + 1);
    /* Limits that let every record start a commit group on its own. */
    if (size > s->capacity / 4 || e->event.destination_count > GROUP_MAX * 8 || e->meta_count > 14 ||
        e->counter_count > 32) {
        herald_error_format(err, errlen, "record of %zu bytes is too large to stage", size);
        return HERALD_E_TOO_LARGE;
    }
    uint64_t phys = s->head % s->capacity;
    /* A record never ends within the ring's last 16 bytes, so the length
     * word after it is always inside the ring. */
    uint64_t pad = phys + size > s->capacity - REC_HEAD ? s->capacity - phys : 0;
    uint64_t need = pad + size + REC_HEAD;
    if (s->head + need - atomic_load(&s->reuse) > s->capacity) {
        pthread_mutex_lock(&s->mu);
        int rc = wait_space(s, need, timeout_ms);
        if (rc != 0)
            herald_error_format(err, errlen, "the staging log is full%s%s",
                                s->failing ? ": " : "", s->failing ? s->error : "");
        pthread_mutex_unlock(&s->mu);
        if (rc != 0)
            return HERALD_E_STORAGE;
    }
    if (pad) {
        store_len(s->ring, 0);
        memset(s->ring + phys + 4, 0, REC_HEAD - 4);
        store_len(s->ring + phys, (uint32_t)pad | REC_PAD_BIT);
        s->head += pad;
        phys = 0;
    }
    unsigned char *rec = s->ring + phys;
    store_len(s->ring + (phys + size) % s->capacity, 0);
    unsigned char *payload = rec + REC_HEAD;
    encode(payload, e, strings);
    size_t used = REC_FIXED + strings + e->event.length;
    memset(payload + used, 0, size - REC_HEAD - used);
    uint32_t check = payload_check(payload, size - REC_HEAD);
    uint64_t seq = s->next_seq++;
    memcpy(rec + 4, &check, 4);
    memcpy(rec + 8, &seq, 8);
    store_len(rec, (uint32_t)size);
    uint64_t before = s->head;
    s->head += size;
    if (s->head / HERALD_STAGE_CHUNK != before / HERALD_STAGE_CHUNK)
        entered_chunk(s);
    atomic_store(&s->seq_pub, seq);
    atomic_store(&s->head_pub, s->head);
    if (atomic_load(&s->sleeping) &&
        s->head - atomic_load(&s->tail) >= atomic_load(&s->wake_fill)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
    }
    return HERALD_OK;
}

/* ---- recovery ---- */

/* Commit the records of one orphaned file past the committed sequence. */
static herald_status recover_file(herald_queue *q, const char *path, int fd,
                                  const herald_logger *logger, uint64_t *recovered, char *err,
                                  size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < STAGE_HEADER + 64) {
        herald_log(logger, HERALD_LOG_WARN, "staging file %s is empty or short: removed", path);
        unlink(path);
        return HERALD_OK;
    }
    unsigned char *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        herald_error_format(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return HERALD_E_STORAGE;
    }
    const stage_header *h = (const stage_header *)(const void *)map;
    static const char unset[8];
    if (memcmp(h->magic, unset, 8) == 0) {
        /* Its creator died before writing the header: it holds nothing. */
        munmap(map, (size_t)st.st_size);
        unlink(path);
        return HERALD_OK;
    }
    if (memcmp(h->magic, STAGE_MAGIC, 8) != 0 || h->version != STAGE_VERSION ||
        h->header_size != STAGE_HEADER || h->capacity + STAGE_HEADER > (uint64_t)st.st_size ||
        h->capacity % 16 != 0 || h->tail % 16 != 0) {
        munmap(map, (size_t)st.st_size);
        herald_error_format(err, errlen, "%s is not a herald staging file (left alone)", path);
        return HERALD_E_STORAGE;
    }
    char *key = meta_key_for(path);
    char *done_text = NULL;
    herald_status rc = key ? herald_queue_meta_get(q, key, &done_text) : HERALD_E_NO_MEMORY;
    uint64_t done = done_text ? strtoull(done_text, NULL, 10) : 0;
    free(done_text);
    group g;
    if (rc == HERALD_OK && group_init(&g) != 0)
        rc = HERALD_E_NO_MEMORY;
    if (rc != HERALD_OK) {
        free(key);
        munmap(map, (size_t)st.st_size);
        return rc;
    }
    const unsigned char *ring = map + STAGE_HEADER;
    uint64_t cap = h->capacity, pos = h->tail, prev = 0, steps = 0;
    group_reset(&g);
    for (; steps < cap / 16 && rc == HERALD_OK; steps++) {
        uint64_t phys = pos % cap;
        uint32_t len = load_len(ring + phys);
        if (len == 0)
            break;
        if (len & REC_PAD_BIT) {
            if ((len & ~REC_PAD_BIT) != cap - phys)
                break;
            pos += len & ~REC_PAD_BIT;
            continue;
        }
        decoded d;
        if (len % 16 != 0 || len > cap - phys || decode(ring + phys, len, 1, &d) != 0)
            break; /* torn or never finished: the call did not return */
        if (prev != 0 && d.seq != prev + 1)
            break;
        prev = d.seq;
        pos += len;
        if (d.seq <= done)
            continue;
        if (!group_fits(&g, &d)) {
            rc = group_commit(q, &g, key, logger, err, errlen);
            *recovered += g.item_count;
            group_reset(&g);
        }
        group_add(&g, &d, 0, 0);
    }
    if (rc == HERALD_OK && (g.item_count || g.meta_count || g.counter_count)) {
        rc = group_commit(q, &g, key, logger, err, errlen);
        if (rc == HERALD_OK)
            *recovered += g.item_count;
    }
    group_free(&g);
    munmap(map, (size_t)st.st_size);
    if (rc == HERALD_OK) {
        unlink(path);
        herald_queue_meta_set(q, key, NULL);
    }
    free(key);
    return rc;
}

herald_status herald_stage_recover(herald_queue *q, const char *queue_path,
                                   const herald_logger *logger, uint64_t *recovered, char *err,
                                   size_t errlen)
{
    *recovered = 0;
    char *copy = strdup(queue_path);
    char *prefix = stage_prefix(queue_path);
    if (copy == NULL || prefix == NULL) {
        free(copy);
        free(prefix);
        return HERALD_E_NO_MEMORY;
    }
    const char *dir = dirname(copy);
    const char *base = strrchr(prefix, '/');
    base = base ? base + 1 : prefix;
    DIR *d = opendir(dir);
    herald_status result = HERALD_OK;
    if (d == NULL) {
        free(copy);
        free(prefix);
        return HERALD_OK;
    }
    /* "<queue>-stagenew-": a file being set up, or one whose creator died
     * before it held any record. */
    size_t base_len = strlen(base);
    size_t stem = base_len - strlen("stage-");
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        int fresh = strncmp(ent->d_name, base, stem) == 0 &&
                    strncmp(ent->d_name + stem, "stagenew-", 9) == 0;
        if (!fresh && strncmp(ent->d_name, base, base_len) != 0)
            continue;
        size_t n = strlen(dir) + strlen(ent->d_name) + 2;
        char *path = malloc(n);
        if (path == NULL) {
            result = HERALD_E_NO_MEMORY;
            break;
        }
        snprintf(path, n, "%s/%s", dir, ent->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fresh) {
            if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
                unlink(path);
        } else if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* No live process holds it. */
            uint64_t count = 0;
            herald_status st = recover_file(q, path, fd, logger, &count, err, errlen);
            if (st != HERALD_OK)
                result = st;
            else if (count)
                herald_log(logger, HERALD_LOG_INFO,
                           "recovered %" PRIu64 " staged events from %s", count, path);
            *recovered += count;
        }
        if (fd >= 0)
            close(fd);
        free(path);
    }
    closedir(d);
    free(copy);
    free(prefix);
    return result;
}
