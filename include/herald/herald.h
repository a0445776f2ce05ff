/*
 * herald — a vendor-agnostic analytics client.
 *
 * This header is the manual. Every function below says what it does, who owns
 * each pointer, which threads may call it and what it returns on failure.
 *
 * Life of an event: the application calls herald_track() (or page, screen,
 * identify, group, alias, send). herald validates the call, builds a
 * Segment-shaped JSON message (messageId, timestamp, anonymousId/userId,
 * context.library), commits it to a SQLite file and returns HERALD_OK. From
 * that moment the event survives a crash or a kill -9 of the process. A
 * background thread batches queued events per destination, compresses them
 * where the backend accepts gzip, and delivers them with retries. What a
 * backend rejects for good is kept in a dead-letter table with the reason.
 *
 * Conventions
 * - Every function that can fail returns herald_status: HERALD_OK (0) or a
 *   negative HERALD_E_* code. herald_strerror() names a code; for the details
 *   of the last failure use herald_last_error().
 * - Strings passed in are borrowed for the duration of the call only: herald
 *   copies what it keeps. Strings handed out by herald_*_json() functions are
 *   owned by the caller and released with herald_free().
 * - All functions are thread-safe unless their comment says otherwise.
 * - herald never prints to stdout or stderr, never calls abort() or exit().
 *   Diagnostics go to the log callback in herald_options.
 */
#ifndef HERALD_HERALD_H
#define HERALD_HERALD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define HERALD_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define HERALD_EXPORT __attribute__((visibility("default")))
#else
#define HERALD_EXPORT
#endif

#define HERALD_VERSION_MAJOR 0
#define HERALD_VERSION_MINOR 1
#define HERALD_VERSION_PATCH 0
#define HERALD_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/* Result of every fallible call. The set only grows; values never change. */
typedef enum herald_status {
    HERALD_OK = 0,
    HERALD_E_INVALID_ARGUMENT = -1, /* NULL or empty required argument, bad value */
    HERALD_E_INVALID_JSON = -2,     /* a JSON string argument does not parse */
    HERALD_E_NOT_OBJECT = -3,       /* JSON parsed, but is not an object where one is required */
    HERALD_E_TOO_LARGE = -4,        /* the built event exceeds max_event_bytes */
    HERALD_E_QUEUE_FULL = -5,       /* queue bound reached under the reject_new policy */
    HERALD_E_STORAGE = -6,          /* the SQLite file could not be opened, read or written */
    HERALD_E_NO_MEMORY = -7,        /* an allocation failed */
    HERALD_E_CONFIG = -8,           /* options or destination configuration are invalid */
    HERALD_E_TIMEOUT = -9,          /* flush/close: the queue did not drain in time */
    HERALD_E_CLOSED = -10,          /* the client is closing */
    HERALD_E_BACKEND = -11,         /* a backend failed to initialise or encode */
    HERALD_E_DISABLED = -12,        /* the operation needs delivery, which is off */
    HERALD_E_NO_CONSENT = -13,      /* consent not granted and consent_policy is drop */
    HERALD_E_DROPPED = -14          /* the before_store hook dropped the event */
} herald_status;

/* A static English description of a status code. Never NULL; unknown codes
 * give "unknown status". Thread-safe. */
HERALD_EXPORT const char *herald_strerror(herald_status status);

/* The library version, e.g. "0.1.0". Static string. Thread-safe. */
HERALD_EXPORT const char *herald_version(void);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* What to do when a queue bound (max_queue_events, max_queue_bytes) would be
 * exceeded by a new event. */
typedef enum herald_overflow_policy {
    /* Evict the oldest queued events to make room. Each evicted event is moved
     * to the dead-letter table with reason "evicted" and counted in stats. */
    HERALD_OVERFLOW_DROP_OLDEST = 0,
    /* Refuse the new event: the call returns HERALD_E_QUEUE_FULL. */
    HERALD_OVERFLOW_REJECT_NEW = 1
} herald_overflow_policy;

/* How hard an accepted event is pushed to stable storage. */
typedef enum herald_durability {
    /* When a call returns HERALD_OK its event is a record in the client's
     * staging file ("<db_path>-stage-<pid>-<id>", 0600, memory-mapped): in
     * the kernel's page cache, so it survives a crash or kill -9 of the
     * process at any instant. A background thread commits records to the
     * SQLite queue (WAL, synchronous=NORMAL) many per transaction; the next
     * herald_open of the same file commits what a dead process left staged.
     * Events of the last seconds may be lost if the machine loses power. */
    HERALD_DURABILITY_PROCESS = 0,
    /* No staging: every call commits its own transaction with
     * synchronous=FULL (fsync) before returning; survives power loss. Costs
     * one fsync per call (docs/performance.md has the figures). */
    HERALD_DURABILITY_POWER = 1
} herald_durability;

typedef enum herald_log_level {
    HERALD_LOG_ERROR = 0,
    HERALD_LOG_WARN = 1,
    HERALD_LOG_INFO = 2,
    HERALD_LOG_DEBUG = 3
} herald_log_level;

/* Log callback. Called from the calling thread or the delivery thread; it must
 * be thread-safe and must not call back into herald. `message` is valid only
 * during the call. Messages never contain write keys, auth headers or event
 * bodies. */
typedef void (*herald_log_fn)(herald_log_level level, const char *message, void *userdata);

/* What happens to events while consent is not granted (herald_set_consent). */
typedef enum herald_consent_policy {
    /* Store them, but send nothing until consent is granted. */
    HERALD_CONSENT_HOLD = 0,
    /* Refuse them at the call with HERALD_E_NO_CONSENT; nothing is stored. */
    HERALD_CONSENT_DROP = 1
} herald_consent_policy;

/* Injectable clock: wall-clock time as unix milliseconds. Must be
 * thread-safe. herald reads it for timestamps, sessions, batching and retry
 * timing. */
typedef int64_t (*herald_clock_fn)(void *ctx);

/* Injectable random source: fill `len` bytes. Must be thread-safe. Used for
 * anonymous ids (UUID v4 from 16 bytes), the seed of messageIds (UUIDv7:
 * 10 bytes at each new millisecond, see docs/events.md) and retry jitter. */
typedef void (*herald_random_fn)(void *buf, size_t len, void *ctx);

/* What a before_store hook decides. */
typedef enum herald_hook_result {
    HERALD_HOOK_KEEP = 0,    /* store the event as it is */
    HERALD_HOOK_DROP = 1,    /* do not store it: the call returns HERALD_E_DROPPED */
    HERALD_HOOK_REPLACE = 2  /* store *replacement instead */
} herald_hook_result;

/* Called for every event after enrichment and redaction, just before it is
 * committed, on the calling thread, with the client's lock held: it must be
 * thread-safe, quick, and must not call into the same client. event_json is
 * the serialized event, valid only during the call. For HERALD_HOOK_REPLACE,
 * set *replacement to a JSON object allocated with herald_strdup() or
 * malloc(); herald takes ownership, and the replacement is validated and
 * redacted again before it is stored. */
typedef herald_hook_result (*herald_before_store_fn)(const char *event_json, size_t length,
                                                     char **replacement, void *userdata);

/* One delivery target. `name` identifies the destination in the queue file,
 * stats and dead letters ([A-Za-z0-9_.-], 1..64 bytes, unique per client).
 * `backend` names the backend ("rest"). `config_json` is a JSON object with
 * the backend's settings and optional per-destination overrides of the
 * delivery settings in herald_options (batch_max_events, batch_max_bytes,
 * flush_interval_ms, retry_base_ms, retry_max_delay_ms, retry_max_attempts,
 * retry_max_age_s, connect_timeout_ms, request_timeout_ms, gzip_min_bytes,
 * max_concurrency). See docs/configuration.md. Strings are copied at open. */
typedef struct herald_destination {
    const char *name;
    const char *backend;
    const char *config_json;
} herald_destination;

/* Client options. Always fill with herald_options_init() first, then change
 * what you need: new fields are added at the end, and struct_size tells the
 * library which fields the caller knows. Copied by herald_open(); changing the
 * struct afterwards has no effect on an open client. Units are in the names. */
typedef struct herald_options {
    uint32_t struct_size;            /* set by herald_options_init */
    const char *db_path;             /* queue file; required. Created 0600. */
    const herald_destination *destinations;
    size_t destination_count;        /* 0 is allowed: events are queued only */

    uint32_t max_event_bytes;        /* 32768: a larger built event is refused */
    uint64_t max_queue_events;       /* 1000000 events held at most */
    uint64_t max_queue_bytes;        /* 268435456 (256 MiB) of event JSON at most */
    uint64_t max_dead_letters;       /* 10000: oldest dead letters are deleted past it */
    herald_overflow_policy overflow_policy; /* HERALD_OVERFLOW_DROP_OLDEST */
    herald_durability durability;    /* HERALD_DURABILITY_PROCESS */

    /* Delivery defaults; each destination's config_json may override them. */
    uint32_t batch_max_events;       /* 100 events per request */
    uint32_t batch_max_bytes;        /* 500000 bytes of JSON per request, before gzip */
    uint32_t flush_interval_ms;      /* 5000: longest an event waits for its batch to fill */
    uint32_t retry_base_ms;          /* 500: first backoff bound; doubles per failure */
    uint32_t retry_max_delay_ms;     /* 30000: backoff bound cap (full jitter below it) */
    uint32_t retry_max_attempts;     /* 10 failed attempts that got an HTTP answer (5xx,
                                        408, 429 without Retry-After), then dead letter.
                                        No answer (offline, refused, timeout) and answers
                                        with Retry-After (honoured, capped at 1 hour) use
                                        no attempt: only retry_max_age_s ends those. */
    uint32_t retry_max_age_s;        /* 604800 (7 days): older undelivered events are dead-lettered */
    uint32_t connect_timeout_ms;     /* 10000 */
    uint32_t request_timeout_ms;     /* 30000: whole request, including the response */
    uint32_t gzip_min_bytes;         /* 1024: smaller bodies are sent uncompressed */
    uint32_t max_concurrency;        /* 8: requests in flight per single-event destination */

    int deliver;                     /* 1: start the delivery thread; 0: queue only */

    herald_log_fn log;               /* NULL: no logging */
    void *log_userdata;
    herald_log_level log_level;      /* HERALD_LOG_WARN */

    /* Context of every event (see docs/events.md). Strings are copied. */
    const char *app_name;            /* context.app.name; NULL: omitted */
    const char *app_version;         /* context.app.version */
    const char *app_build;           /* context.app.build */
    const char *device_type;         /* context.device.type; NULL: detected
                                        ("desktop", "server", "container", "mobile") */
    const char *user_agent;          /* context.userAgent; NULL: omitted */

    /* Sessions: context.session {id, sequence}. The id (the session's start,
     * unix ms) rotates after this much inactivity; it persists in the file. */
    uint32_t session_timeout_ms;     /* 1800000 (30 min) */
    int session_start_events;        /* 1: a "Session Started" track event opens each session */

    /* Consent: with consent_required, nothing is sent (or stored, under
     * HERALD_CONSENT_DROP) until herald_set_consent(c, 1). The choice persists. */
    int consent_required;            /* 0: consent is granted until revoked */
    herald_consent_policy consent_policy; /* HERALD_CONSENT_HOLD */

    herald_clock_fn clock;           /* NULL: the system's real-time clock */
    void *clock_ctx;
    herald_random_fn random;         /* NULL: the system's CSPRNG (getrandom) */
    void *random_ctx;

    /* PII redaction, applied to every event before it is stored (see
     * docs/privacy.md): a JSON object of settings, NULL for the defaults
     * (every default rule on, typed markers such as "[email]"). */
    const char *redact_json;
    herald_before_store_fn before_store; /* NULL: none */
    void *before_store_userdata;

    /* Requests in flight at once for a batch destination. 1 sends its
     * batches strictly one after another, in order; more overlaps their
     * round trips (throughput to a distant server), and a later batch may
     * then arrive before an earlier one. */
    uint32_t batch_concurrency;      /* 1 */

    /* The staging file beside the queue (durability "process"): a ring the
     * event calls append to and the delivery thread sends from, before
     * SQLite sees the events (docs/reliability.md). Reserved on disk at
     * open; the process's resident set holds only the part being read or
     * written. A burst larger than it goes through SQLite. 0: no staging
     * file (every call commits to SQLite, about 30 µs); otherwise rounded
     * up to 256 KiB, at least 1 MiB. */
    uint32_t staging_bytes;          /* 67108864 (64 MiB) */
} herald_options;

/* Fill `opts` with the defaults listed above. Not thread-safe on the same
 * struct. Returns HERALD_E_INVALID_ARGUMENT if opts is NULL. */
HERALD_EXPORT herald_status herald_options_init(herald_options *opts);

/* ------------------------------------------------------------------------ */
/* Client lifecycle                                                          */
/* ------------------------------------------------------------------------ */

typedef struct herald_client herald_client;

/* Open (or create) the queue file, validate destinations and start the
 * delivery thread. On success *out owns a client to be released with
 * herald_close(). On failure *out is NULL and the reason is available through
 * herald_last_error(NULL, ...) on the same thread.
 * Errors: HERALD_E_INVALID_ARGUMENT, HERALD_E_CONFIG, HERALD_E_STORAGE,
 * HERALD_E_BACKEND, HERALD_E_NO_MEMORY. Thread-safe. */
HERALD_EXPORT herald_status herald_open(herald_client **out, const herald_options *opts);

/* Like herald_open(), with options given as one JSON object whose keys are
 * the herald_options field names (db_path, max_queue_events, overflow_policy:
 * "drop_oldest"|"reject_new", durability: "process"|"power", deliver: bool,
 * log_level: "error"|"warn"|"info"|"debug", ...) plus "destinations": an
 * array of objects {"name", "backend", ...backend settings}. Unknown keys are
 * an error (HERALD_E_CONFIG), so typos do not pass silently. This is the form
 * the bindings and the CLI's config file use. */
HERALD_EXPORT herald_status herald_open_json(herald_client **out, const char *config_json);

/* herald_open_json() with `base` supplying the defaults that the JSON does
 * not set, and the fields JSON cannot carry (log, log_userdata). base may be
 * NULL (same as herald_open_json). The JSON wins where both set a field. */
HERALD_EXPORT herald_status herald_open_json_ex(herald_client **out, const char *config_json,
                                                const herald_options *base);

/* Wait until every event this client accepted is in the SQLite queue file,
 * or until timeout_ms passes (negative: no limit). An accepted event is
 * durable when its call returns (in the client's staging file, see
 * docs/reliability.md); a background thread moves it into the queue file
 * within milliseconds, many per transaction. Call this before reading the
 * queue file with other tools. herald_flush, herald_close and the stats calls
 * do it themselves. Returns HERALD_OK, HERALD_E_TIMEOUT (the reason, such as
 * a full disk, in herald_last_error; nothing is lost: the events stay
 * staged), HERALD_E_INVALID_ARGUMENT for NULL. Thread-safe. */
HERALD_EXPORT herald_status herald_sync(herald_client *c, int timeout_ms);

/* Wait until every event owed to this client's destinations has been
 * delivered or dead-lettered, or until timeout_ms passes (negative: wait
 * without limit). Rows the file holds for destinations this client does not
 * have are not waited for; with no destinations, flush returns at once. Batching delays are
 * skipped while a flush waits; retry backoff and Retry-After are honoured.
 * Returns HERALD_OK when the queue is empty, HERALD_E_TIMEOUT otherwise (what
 * is left stays queued), HERALD_E_DISABLED when the client does not deliver.
 * Thread-safe; several threads may flush at once. */
HERALD_EXPORT herald_status herald_flush(herald_client *c, int timeout_ms);

/* Flush for at most timeout_ms (0: do not wait), then stop the delivery
 * thread and release the client. Requests still in flight are abandoned and
 * their events stay queued for the next open: close never blocks longer than
 * asked (plus the time to join a thread that is not inside I/O). `c` is
 * invalid afterwards, whatever the result. NULL is a no-op returning HERALD_OK.
 * Returns HERALD_OK if the queue drained, HERALD_E_TIMEOUT if events remain
 * on disk. Must not race with other calls on the same client. */
HERALD_EXPORT herald_status herald_close(herald_client *c, int timeout_ms);

/* Copy an error message into buf, NUL-terminated and truncated to buflen:
 * the reason of this thread's last failed call on c, kept per thread so that
 * other threads cannot overwrite it; if this thread has none, the client's
 * last error (from any thread, or the delivery thread). With c == NULL, the
 * reason of this thread's last failed herald_open*(). Returns the full
 * message length (like snprintf). Thread-safe. */
HERALD_EXPORT size_t herald_last_error(const herald_client *c, char *buf, size_t buflen);

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

/* Each call builds one Segment-spec message, enriches it (context: library,
 * os, device, locale, timezone, app, session, traits, groupId, and page and
 * campaign from a page URL; see docs/events.md), redacts it, makes it durable
 * and returns. HERALD_OK means the event is durable (see herald_durability).
 * A message's "integrations" object picks destinations by name, as in
 * Segment: {"All": false, "main": true} sends to "main" only; {"backup":
 * false} to every destination but "backup"; selecting none of the client's
 * destinations is HERALD_E_INVALID_ARGUMENT.
 *
 * JSON arguments (properties, traits) must be a JSON object or NULL (an empty
 * object). Failures store nothing and return:
 *   HERALD_E_INVALID_ARGUMENT  c, a required name or id is NULL or empty, or
 *                              a string is not valid UTF-8
 *   HERALD_E_INVALID_JSON      the JSON does not parse
 *   HERALD_E_NOT_OBJECT        the JSON is not an object
 *   HERALD_E_TOO_LARGE         the built event exceeds max_event_bytes
 *   HERALD_E_QUEUE_FULL        queue full under HERALD_OVERFLOW_REJECT_NEW
 *   HERALD_E_STORAGE           the event could not be made durable: the
 *                              commit failed (disk full, I/O error), or the
 *                              staging file is full because its events
 *                              cannot be committed (the reason in
 *                              herald_last_error; what is staged is kept).
 *                              A call waits up to 5 s for staging space only
 *                              while the queue is merely behind.
 *   HERALD_E_CLOSED            the client is closing
 *   HERALD_E_NO_CONSENT        consent not granted under HERALD_CONSENT_DROP
 *   HERALD_E_DROPPED           the before_store hook dropped the event
 * Error messages never quote the caller's data (it may be what redaction
 * exists to keep out of logs).
 * Thread-safe; no network I/O happens on the calling thread. */

/* Track: {"type":"track","event":event,"properties":{...}} */
HERALD_EXPORT herald_status herald_track(herald_client *c, const char *event,
                                         const char *properties_json);
/* Page view: {"type":"page","name":name,"properties":{...}}. name may be NULL. */
HERALD_EXPORT herald_status herald_page(herald_client *c, const char *name,
                                        const char *properties_json);
/* Screen view: {"type":"screen","name":name,"properties":{...}}. name may be NULL. */
HERALD_EXPORT herald_status herald_screen(herald_client *c, const char *name,
                                          const char *properties_json);
/* Identify: sends {"type":"identify","userId",...,"traits"} and sets the user
 * id carried by every later event of this client; the traits are merged into
 * the user's stored traits, which later events carry as context.traits. Both
 * persist in the queue file, as redaction leaves them (an email as the user
 * id is stored as the event carries it: "[email]", or its keyed hash). */
HERALD_EXPORT herald_status herald_identify(herald_client *c, const char *user_id,
                                            const char *traits_json);
/* Group: sends {"type":"group","groupId":group_id,"traits":{...}} and sets
 * the group (company) id that later events carry as context.groupId
 * (persisted). */
HERALD_EXPORT herald_status herald_group(herald_client *c, const char *group_id,
                                         const char *traits_json);
/* Alias: {"type":"alias","previousId":previous_id,"userId":user_id}. */
HERALD_EXPORT herald_status herald_alias(herald_client *c, const char *previous_id,
                                         const char *user_id);

/* Send a whole message given as a JSON object, for callers that set fields
 * per call (userId, anonymousId, timestamp, context, messageId) or import
 * events. "type" is required and one of track|page|screen|identify|group|alias,
 * with the fields that type requires (track: "event"; identify: "userId" or
 * "anonymousId"; group: "groupId"; alias: "previousId" and "userId").
 * A given "messageId" (1..100 bytes) is kept, so re-importing the same file
 * lets backends de-duplicate; a given "timestamp" must be RFC 3339. Missing
 * fields are filled as by the typed calls; an identify message sets the
 * user id of later events as herald_identify() does. Errors as above. */
HERALD_EXPORT herald_status herald_send(herald_client *c, const char *message_json);

/* Grant (granted != 0) or revoke consent to analytics, persisted in the
 * queue file. Granting releases events held under HERALD_CONSENT_HOLD for
 * delivery. Revoking affects events from then on; events queued while consent
 * was granted are still delivered (use herald_erase_user to remove them).
 * Errors: HERALD_E_INVALID_ARGUMENT, HERALD_E_STORAGE. Thread-safe. */
HERALD_EXPORT herald_status herald_set_consent(herald_client *c, int granted);

/* Store 1 in *granted if consent is granted, else 0. */
HERALD_EXPORT herald_status herald_get_consent(herald_client *c, int *granted);

/* Erase everything this queue file holds about the current user: queued
 * events and dead letters whose anonymousId or userId is the current one,
 * then the identity itself (as herald_reset: new anonymous id, no user id,
 * traits or group, a new session). *erased (may be NULL) receives the number
 * of events and dead letters deleted. SQLite's free pages are overwritten
 * (secure_delete). Errors: HERALD_E_INVALID_ARGUMENT, HERALD_E_STORAGE. */
HERALD_EXPORT herald_status herald_erase_user(herald_client *c, uint64_t *erased);

/* Forget the current user, as on logout: the user id and traits set by
 * identify and the group set by group are cleared, a new anonymous id is
 * generated and a new session starts; all persisted, for every later event. Queued events keep the ids they were built
 * with. Errors: HERALD_E_INVALID_ARGUMENT, HERALD_E_STORAGE. */
HERALD_EXPORT herald_status herald_reset(herald_client *c);

/* ------------------------------------------------------------------------ */
/* Properties builder                                                        */
/* ------------------------------------------------------------------------ */

/* A small builder for the JSON object the event calls take, for C callers
 * who would rather not format JSON by hand:
 *
 *   herald_props *p = herald_props_new();
 *   herald_props_set_string(p, "plan", "pro");
 *   herald_props_set_int(p, "seats", 12);
 *   herald_track(c, "Upgraded", herald_props_json(p));
 *   herald_props_free(p);
 *
 * A builder is not thread-safe; use one per thread. Setting a key twice
 * replaces the value. Setters return HERALD_E_INVALID_ARGUMENT for NULL or
 * non-UTF-8 strings, HERALD_E_INVALID_JSON for bad set_json input,
 * HERALD_E_NO_MEMORY on allocation failure. */
typedef struct herald_props herald_props;

/* A new empty builder, or NULL if out of memory. Free with herald_props_free. */
HERALD_EXPORT herald_props *herald_props_new(void);
HERALD_EXPORT herald_status herald_props_set_string(herald_props *p, const char *key, const char *value);
HERALD_EXPORT herald_status herald_props_set_int(herald_props *p, const char *key, int64_t value);
/* Non-finite values (NaN, infinity) are refused with HERALD_E_INVALID_ARGUMENT. */
HERALD_EXPORT herald_status herald_props_set_double(herald_props *p, const char *key, double value);
HERALD_EXPORT herald_status herald_props_set_bool(herald_props *p, const char *key, int value);
HERALD_EXPORT herald_status herald_props_set_null(herald_props *p, const char *key);
/* Set a nested value (object, array, any JSON) given as JSON text. */
HERALD_EXPORT herald_status herald_props_set_json(herald_props *p, const char *key, const char *json);
/* The object as compact JSON. Owned by the builder; valid until the next
 * change or herald_props_free. NULL only if out of memory. */
HERALD_EXPORT const char *herald_props_json(herald_props *p);
HERALD_EXPORT void herald_props_free(herald_props *p);

/* ------------------------------------------------------------------------ */
/* Observability and dead letters                                            */
/* ------------------------------------------------------------------------ */

/* Counters for the queue file, kept in the file itself so they survive
 * restarts and are shared by every process using it. */
typedef struct herald_stats {
    uint32_t struct_size;     /* set by the caller: sizeof(herald_stats) */
    uint64_t queued;          /* events waiting for at least one destination */
    uint64_t queued_bytes;    /* their JSON size */
    uint64_t pending;         /* (destination, event) deliveries still owed */
    uint64_t accepted;        /* events committed by calls */
    uint64_t rejected;        /* calls refused (invalid input, queue full) */
    uint64_t sent;            /* (destination, event) deliveries confirmed */
    uint64_t retried;         /* failed requests whose events were scheduled again */
    uint64_t dead;            /* deliveries moved to dead letters, evictions included */
    uint64_t evicted;         /* events evicted by drop_oldest */
    uint64_t dead_letters;    /* rows now in the dead-letter table */
    uint64_t requests;        /* HTTP requests completed (any status) */
    uint64_t bytes_raw;       /* request bodies before compression */
    uint64_t bytes_sent;      /* request bodies as sent */
    uint64_t held;            /* deliveries held until consent is granted */
    uint64_t consent_dropped; /* calls refused under HERALD_CONSENT_DROP */
    uint64_t server_dropped;  /* events a server accepted but discarded (bot filter,
                                 X-Plausible-Dropped): delivered, never retried */
    uint64_t skipped;         /* deliveries a backend declined as not for it (e.g.
                                 identify to Plausible): removed unsent */
} herald_stats;

/* Fill `out` (whose struct_size the caller sets). Errors:
 * HERALD_E_INVALID_ARGUMENT, HERALD_E_STORAGE. Thread-safe. */
HERALD_EXPORT herald_status herald_stats_get(herald_client *c, herald_stats *out);

/* Stats as JSON: the fields of herald_stats (from the file), "redactions"
 * (an object of counts per redaction rule, e.g. {"v1": 12, "k1": 3}; never
 * the values) and "hook_dropped", plus what this
 * client holds in memory: "db_path", "consent" (bool), "last_error" (this
 * client's last error)
 * and "destinations": [{"name", "backend", "pending" (from the file),
 * "paused_until_ms" and "consecutive_failures" (this client's delivery
 * state: 0 in a process that has not delivered)}]. *out is owned by the
 * caller: herald_free() it. */
HERALD_EXPORT herald_status herald_stats_json(herald_client *c, char **out);

/* Dead letters as a JSON array, oldest first, at most `limit` rows (0: all):
 * [{"id", "destination", "failed_at" (RFC 3339), "http_status" (0 when no
 * response), "reason", "response" (excerpt, at most 512 bytes), "event"
 * (the event object)}]. *out is owned by the caller: herald_free() it. */
HERALD_EXPORT herald_status herald_dead_letters_json(herald_client *c, uint64_t limit, char **out);

/* Queue dead letters again for their destination (destination NULL: all) and
 * remove them from the dead-letter table, in one transaction. Replayed events
 * are not refused by the queue bounds (the caller asked for them); the bounds
 * apply again from the next event on. Dead letters of
 * a destination this client does not have are left in place. *replayed (may
 * be NULL) receives the count. Errors: HERALD_E_STORAGE. */
HERALD_EXPORT herald_status herald_dead_letters_replay(herald_client *c, const char *destination,
                                                       uint64_t *replayed);

/* Release memory returned by herald_*_json(). NULL is a no-op. */
HERALD_EXPORT void herald_free(void *p);

/* A malloc'ed copy of s that herald may later free (for before_store
 * replacements from languages without malloc). NULL if s is NULL or out of
 * memory. */
HERALD_EXPORT char *herald_strdup(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* HERALD_HERALD_H */
