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
#define RELEASE_CHUNK (256u << 10)

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

typedef struct group {
    herald_queue_item *items;
    const char **dests;
    size_t item_count, dest_count;
    herald_meta_update meta[16];
    size_t meta_count;
    const char *counters[32];
    int64_t deltas[32];
    size_t counter_count;
    uint64_t last_seq;
    char seq_text[24];
    int64_t queued_events, queued_bytes; /* the queue's totals after the commit */
    int overflow; /* more distinct meta keys or counters than fit: commit now */
} group;

static void group_reset(group *g)
{
    g->item_count = g->dest_count = g->meta_count = g->counter_count = 0;
    g->overflow = 0;
}

static int group_init(group *g)
{
    memset(g, 0, sizeof *g);
    g->items = calloc(GROUP_MAX, sizeof *g->items);
    g->dests = calloc((size_t)GROUP_MAX * 8, sizeof *g->dests);
    return g->items && g->dests ? 0 : -1;
}

static void group_free(group *g)
{
    free(g->items);
    free(g->dests);
}

/* 1 if the record fits in the group (item slots, destination slots, meta
 * keys and counters); 0 if the group must be committed first. */
static int group_fits(const group *g, const decoded *d)
{
    return g->item_count < GROUP_MAX && g->dest_count + d->destination_count <= GROUP_MAX * 8 &&
           g->meta_count + d->meta_count < 15 && g->counter_count + d->counter_count <= 32;
}

static void group_add(group *g, const decoded *d)
{
    const char *w = d->strings;
    take_string(&w, d->strings_end); /* type */
    if (d->type[0] != '\0') {
        herald_queue_item *it = &g->items[g->item_count++];
        it->created_ms = d->created_ms;
        it->type = d->type;
        it->body = d->body;
        it->length = d->body_len;
        it->held = d->held;
        it->destinations = &g->dests[g->dest_count];
        it->destination_count = d->destination_count;
    }
    for (size_t i = 0; i < d->destination_count; i++) {
        const char *name = take_string(&w, d->strings_end);
        if (d->type[0] != '\0')
            g->dests[g->dest_count++] = name;
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
}

/* Commit the group with the "last committed sequence" key. */
static herald_status group_commit(herald_queue *q, group *g, const char *meta_key,
                                  const herald_logger *logger, char *err, size_t errlen)
{
    snprintf(g->seq_text, sizeof g->seq_text, "%" PRIu64, g->last_seq);
    g->meta[g->meta_count] = (herald_meta_update){meta_key, g->seq_text};
    uint64_t evicted = 0;
    herald_status st = herald_queue_push_many(q, g->items, g->item_count, 1, g->meta,
                                              g->meta_count + 1, g->counters, g->deltas,
                                              g->counter_count, &evicted, &g->queued_events,
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
    uint64_t first = from / RELEASE_CHUNK; /* its end is past `from` */
    uint64_t last = to / RELEASE_CHUNK;
    for (uint64_t c = first; c < last; c++) {
        uint64_t phys = (c * RELEASE_CHUNK) % s->capacity;
        madvise(s->ring + phys, RELEASE_CHUNK, MADV_DONTNEED);
    }
}

/* Commit records from the tail up to `head` (or a group's worth). */
static herald_status ingest_some(herald_stage *s, group *g, uint64_t head, char *err,
                                 size_t errlen)
{
    uint64_t tail = atomic_load(&s->tail);
    uint64_t pos = tail;
    group_reset(g);
    while (pos < head) {
        uint64_t phys = pos % s->capacity;
        unsigned char *rec = s->ring + phys;
        uint32_t len = load_len(rec);
        if (len & REC_PAD_BIT) {
            pos += len & ~REC_PAD_BIT;
            continue;
        }
        decoded d;
        if (decode(rec, len, 0, &d) != 0) {
            /* Our own record: cannot happen short of memory corruption. */
            herald_error_format(err, errlen, "staging record at %" PRIu64 " is damaged", pos);
            return HERALD_E_STORAGE;
        }
        if (!group_fits(g, &d))
            break;
        group_add(g, &d);
        pos += len;
    }
    if (pos == tail)
        return HERALD_OK;
    pthread_mutex_lock(&s->sql_mu);
    herald_status st = group_commit(s->q, g, s->meta_key, s->logger, err, errlen);
    pthread_mutex_unlock(&s->sql_mu);
    if (st != HERALD_OK)
        return st;
    size_t events = g->item_count;
    atomic_store(&s->seq_done, g->last_seq);
    atomic_store(&s->tail, pos);
    ((stage_header *)(void *)s->map)->tail = pos;
    release_pages(s, tail, pos);
    if (s->committed)
        s->committed(s->userdata, events, g->queued_events, g->queued_bytes);
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
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int idle = atomic_load(&s->head_pub) == atomic_load(&s->tail);
        if (s->stop && (idle || backoff_ms))
            break; /* drained, or failing: what is left stays in the file */
        if (idle || backoff_ms) {
            atomic_store(&s->sleeping, 1);
            /* Re-check after announcing sleep: a producer that published
             * before seeing `sleeping` is seen here. */
            if (backoff_ms || atomic_load(&s->head_pub) == atomic_load(&s->tail)) {
                struct timespec ts = deadline_in(backoff_ms ? (long)backoff_ms : 1000);
                pthread_cond_timedwait(&s->wake, &s->mu, &ts);
            }
            atomic_store(&s->sleeping, 0);
            backoff_ms = 0;
            continue;
        }
        uint64_t head = atomic_load(&s->head_pub);
        pthread_mutex_unlock(&s->mu);
        char err[256] = "";
        herald_status st = ingest_some(s, &g, head, err, sizeof err);
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
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->sql_mu);
    free(s->path);
    free(s->meta_key);
    free(s);
}

herald_status herald_stage_open(herald_stage **out, const herald_queue_config *config,
                                pthread_mutex_t *writer, herald_stage_committed_fn committed,
                                void *userdata, char *err, size_t errlen)
{
    *out = NULL;
    herald_stage *s = calloc(1, sizeof *s);
    if (s == NULL)
        return HERALD_E_NO_MEMORY;
    s->fd = -1;
    s->capacity = HERALD_STAGE_CAPACITY;
    s->logger = config->logger;
    s->committed = committed;
    s->userdata = userdata;
    s->next_seq = 1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->sql_mu, NULL);
    pthread_cond_init(&s->wake, &attr);
    pthread_cond_init(&s->space, &attr);
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
    pthread_mutex_unlock(&s->mu);
    return st;
}

uint64_t herald_stage_pending(herald_stage *s)
{
    return atomic_load(&s->seq_pub) - atomic_load(&s->seq_done);
}

size_t herald_stage_max_body(void)
{
    return HERALD_STAGE_CAPACITY / 4 - 4096;
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
    stage_free(s);
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
    free(s->path);
    free(s->meta_key);
    free(s);
}

/* Wait (caller holds s->mu) until `need` bytes are free. */
static int wait_space(herald_stage *s, uint64_t need, int timeout_ms)
{
    struct timespec deadline = deadline_in(timeout_ms);
    while (s->head + need - atomic_load(&s->tail) > s->capacity) {
        if (s->failing)
            return -1; /* the ingest cannot commit: waiting would not help */
        pthread_cond_signal(&s->wake);
        if (pthread_cond_timedwait(&s->space, &s->mu, &deadline) == ETIMEDOUT)
            return s->head + need - atomic_load(&s->tail) <= s->capacity ? 0 : -1;
    }
    return 0;
}

herald_status herald_stage_append(herald_stage *s, const herald_stage_entry *e, int timeout_ms,
                                  char *err, size_t errlen)
{
    size_t strings = strings_size(e);
    size_t size = align16(REC_HEAD + REC_FIXED + strings + e->event.length);
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
    if (s->head + need - atomic_load(&s->tail) > s->capacity) {
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
    s->head += size;
    atomic_store(&s->seq_pub, seq);
    atomic_store(&s->head_pub, s->head);
    if (atomic_load(&s->sleeping)) {
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
        group_add(&g, &d);
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
