/* The client: state shared by the public calls (client.c) and the delivery
 * thread (delivery.c). Everything below `mutex` is guarded by it unless a
 * comment says the delivery thread owns it alone. */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "event.h"
#include "herald/herald.h"
#include "log.h"
#include "queue.h"
#include "random.h"
#include "redact.h"
#include "staging.h"

/* Delivery settings of one destination: the client's defaults overridden by
 * the destination's config_json. */
typedef struct herald_delivery_settings {
    uint32_t batch_max_events;
    uint32_t batch_max_bytes;
    uint32_t flush_interval_ms;
    uint32_t retry_base_ms;
    uint32_t retry_max_delay_ms;
    uint32_t retry_max_attempts;
    uint32_t retry_max_age_s;
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t gzip_min_bytes;
    uint32_t max_concurrency;
    uint32_t batch_concurrency;
    int gzip_level;
    char *ca_file;               /* extra CA bundle, or NULL */
    int insecure_skip_tls_verify;
} herald_delivery_settings;

typedef struct herald_destination_state {
    char *name;
    char *backend_name;
    const herald_backend_v1 *backend;
    void *backend_library;       /* the plugin's shared object, or NULL (built-in) */
    void *backend_state;
    herald_backend_limits limits;
    herald_delivery_settings settings;

    /* Delivery state (changed by the delivery thread under the mutex). */
    int64_t paused_until_ms;     /* no request before this wall-clock time */
    uint32_t consecutive_failures;
    uint32_t split_limit;        /* after a 413: events per request cap; 0 = none */
    uint32_t inflight_requests;
    int64_t *inflight_ids;       /* events in requests not yet answered */
    size_t inflight_count;
    size_t inflight_capacity;
} herald_destination_state;

struct herald_client {
    herald_options options;      /* copied; pointer fields below own their strings */
    char *db_path;
    herald_logger logger;
    herald_clock_fn clock;
    void *clock_ctx;

    /* Lock order: call_mutex, then mutex. The call path (event calls:
     * identity, session, consent, the staging producer) holds call_mutex
     * only; the SQLite connection and delivery state are under mutex. */
    pthread_mutex_t call_mutex;
    herald_stage *stage;         /* NULL: every call commits directly */
    pthread_mutex_t bounds_mu;   /* a leaf lock: guards `bounds` */
    herald_stage_mark bounds;    /* the queue's totals as of a staged position */
    int closing;                 /* herald_close began (under call_mutex) */
    int identity_warned;         /* an identity field got a plain marker (under call_mutex) */
    /* The fast event builder's identity frame (under call_mutex): rebuilt
     * when stale; NULL after a rebuild means every call takes the slow path
     * until identity changes again. */
    struct herald_fast_frame *fast_frame;
    int fast_frame_stale;
    uint32_t staged_unsignaled;  /* staged since the last wake-up of delivery */
    char *fast_buf;              /* assembled bodies */
    size_t fast_buf_cap;

    pthread_mutex_t writer_mutex; /* SQLite write transactions of this client's connections */
    pthread_mutex_t mutex;
    pthread_cond_t drained;      /* broadcast after every delivery outcome */

    herald_queue *queue;
    herald_destination_state *destinations;
    const char **destination_names;
    size_t destination_count;

    herald_random random;        /* ids and jitter */
    herald_idgen idgen;          /* message ids (under call_mutex) */
    herald_redactor *redactor;   /* immutable after open; NULL: redaction off */
    herald_before_store_fn before_store;
    void *before_store_userdata;
    json_t *context;             /* static context snapshot (immutable after open) */

    /* Identity, session and consent: persisted in the file's meta table. */
    /* (Identity, session and consent are under call_mutex; consent is
     * written under both locks.) */
    char anonymous_id[64];
    char *user_id;               /* as redaction leaves it, as stored */
    char *user_id_given;         /* as given (memory only; NULL after open): tells
                                    apart users whose ids redact alike */
    json_t *traits;              /* the user's stored traits (object) */
    char *group_id;
    int64_t session_id;          /* 0: none yet */
    int64_t session_last_ms;
    uint32_t session_sequence;
    int consent;                 /* 1: granted */

    uint64_t random_state;       /* jitter PRNG state, seeded from `random` */
    char last_error[512];

    /* Delivery. */
    CURLM *multi;
    pthread_t thread;
    int thread_started;
    int stop;
    unsigned flush_waiters;
    uint32_t unsignaled;         /* events queued since the last wake-up */
    uint32_t wake_threshold;     /* wake the thread after this many */
    struct transfer *transfers;  /* requests in flight: delivery thread only */
    herald_queue_config queue_config; /* to reopen the queue in a forked child */
    int forked;                  /* set in a fork()ed child: reinitialise before use */
    struct herald_client *next_client; /* the registry of open clients (fork handling) */
    int lock_fd;                 /* delivery lock: one delivering process per file */
    int have_delivery_lock;
};

/* Record an error on the client (caller holds the mutex). */
void herald_client_set_error(herald_client *c, const char *fmt, ...) HERALD_PRINTF(2, 3);

/* Start and stop the delivery thread (delivery.c). */
herald_status herald_delivery_start(herald_client *c, char *err, size_t errlen);
void herald_delivery_stop(herald_client *c);
/* Wake the delivery thread now. Safe from any thread. */
void herald_delivery_wake(herald_client *c);

/* 1 if any configured destination still owes events (caller holds the mutex). */
int herald_client_has_pending(herald_client *c);

#endif
