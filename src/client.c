/* The public API: lifecycle, event calls, stats and dead letters. */
#include "client.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "context.h"
#include "event.h"
#include "fastbuild.h"

#define ERR_MAX 512
/* How long a call waits for staging space while the ingest catches up. */
#define STAGE_WAIT_MS 5000

static int64_t wall_clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *herald_strerror(herald_status status)
{
    switch (status) {
    case HERALD_OK: return "ok";
    case HERALD_E_INVALID_ARGUMENT: return "invalid argument";
    case HERALD_E_INVALID_JSON: return "invalid JSON";
    case HERALD_E_NOT_OBJECT: return "JSON value is not an object";
    case HERALD_E_TOO_LARGE: return "event too large";
    case HERALD_E_QUEUE_FULL: return "queue full";
    case HERALD_E_STORAGE: return "storage error";
    case HERALD_E_NO_MEMORY: return "out of memory";
    case HERALD_E_CONFIG: return "invalid configuration";
    case HERALD_E_TIMEOUT: return "timed out";
    case HERALD_E_CLOSED: return "client is closing";
    case HERALD_E_BACKEND: return "backend error";
    case HERALD_E_DISABLED: return "delivery is disabled";
    case HERALD_E_NO_CONSENT: return "no consent: event dropped";
    case HERALD_E_DROPPED: return "dropped by the before_store hook";
    }
    return "unknown status";
}

const char *herald_version(void)
{
    return HERALD_VERSION_STRING;
}

herald_status herald_options_init(herald_options *opts)
{
    if (opts == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->max_event_bytes = 32768;
    opts->max_queue_events = 1000000;
    opts->max_queue_bytes = 256u << 20;
    opts->max_dead_letters = 10000;
    opts->overflow_policy = HERALD_OVERFLOW_DROP_OLDEST;
    opts->durability = HERALD_DURABILITY_PROCESS;
    opts->batch_max_events = 100;
    opts->batch_max_bytes = 500000;
    opts->flush_interval_ms = 5000;
    opts->retry_base_ms = 500;
    opts->retry_max_delay_ms = 30000;
    opts->retry_max_attempts = 10;
    opts->retry_max_age_s = 7 * 86400;
    opts->connect_timeout_ms = 10000;
    opts->request_timeout_ms = 30000;
    opts->gzip_min_bytes = 1024;
    opts->max_concurrency = 8;
    opts->batch_concurrency = 1;
    opts->staging_bytes = 64u << 20;
    opts->deliver = 1;
    opts->log_level = HERALD_LOG_WARN;
    opts->session_timeout_ms = 30 * 60 * 1000;
    opts->consent_policy = HERALD_CONSENT_HOLD;
    return HERALD_OK;
}

void herald_client_set_error(herald_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
    va_end(ap);
}

/* A call's failure message, per thread: another thread's failure (or the
 * delivery thread's) cannot overwrite it between the call and the read. */
static _Thread_local struct {
    const herald_client *client;
    char message[512];
} call_error;

static void call_error_set(const herald_client *c, const char *message)
{
    call_error.client = c;
    snprintf(call_error.message, sizeof call_error.message, "%s", message);
}

size_t herald_last_error(const herald_client *c, char *buf, size_t buflen)
{
    if (c != NULL && call_error.client == c) {
        if (buf && buflen)
            snprintf(buf, buflen, "%s", call_error.message);
        return strlen(call_error.message);
    }
    if (c == NULL) {
        const char *message = herald_open_error_get();
        if (buf && buflen)
            snprintf(buf, buflen, "%s", message);
        return strlen(message);
    }
    herald_client *mc = (herald_client *)(uintptr_t)c;
    pthread_mutex_lock(&mc->mutex);
    size_t n = strlen(c->last_error);
    if (buf && buflen)
        snprintf(buf, buflen, "%s", c->last_error);
    pthread_mutex_unlock(&mc->mutex);
    return n;
}

static int destination_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static void destinations_free(herald_client *c)
{
    for (size_t i = 0; i < c->destination_count; i++) {
        herald_destination_state *d = &c->destinations[i];
        if (d->backend && d->backend_state)
            d->backend->destroy(d->backend_state);
        herald_backend_handle handle = {d->backend, d->backend_library};
        herald_backend_unload(&handle);
        herald_delivery_settings_free(&d->settings);
        free(d->name);
        free(d->backend_name);
        free(d->inflight_ids);
    }
    free(c->destinations);
    free(c->destination_names);
    c->destinations = NULL;
    c->destination_names = NULL;
    c->destination_count = 0;
}

static herald_status destinations_create(herald_client *c, const herald_options *opts, char *err,
                                         size_t errlen)
{
    size_t n = opts->destination_count;
    c->destinations = calloc(n ? n : 1, sizeof *c->destinations);
    c->destination_names = calloc(n ? n : 1, sizeof *c->destination_names);
    if (c->destinations == NULL || c->destination_names == NULL)
        return HERALD_E_NO_MEMORY;
    c->wake_threshold = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        const herald_destination *spec = &opts->destinations[i];
        herald_destination_state *d = &c->destinations[i];
        c->destination_count = i + 1;
        if (!destination_name_valid(spec->name)) {
            herald_error_format(err, errlen,
                                "destination %zu: name must be 1-64 characters of [A-Za-z0-9_.-]", i);
            return HERALD_E_CONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->destinations[j].name, spec->name) == 0) {
                herald_error_format(err, errlen, "destination name \"%s\" is used twice",
                                    spec->name);
                return HERALD_E_CONFIG;
            }
        }
        d->name = strdup(spec->name);
        d->backend_name = strdup(spec->backend ? spec->backend : "");
        if (d->name == NULL || d->backend_name == NULL)
            return HERALD_E_NO_MEMORY;
        c->destination_names[i] = d->name;
        char *backend_json = NULL;
        char sub[ERR_MAX] = "";
        herald_backend_handle handle;
        herald_status loaded = herald_backend_load(spec->backend, &handle, &c->logger, sub,
                                                   sizeof sub);
        if (loaded != HERALD_OK) {
            herald_error_format(err, errlen, "destination \"%s\": %s", d->name, sub);
            return loaded;
        }
        d->backend = handle.vt;
        d->backend_library = handle.library;
        herald_status st = herald_destination_settings_parse(opts, spec->config_json, &d->settings,
                                                             &backend_json, sub, sizeof sub);
        if (st != HERALD_OK) {
            herald_error_format(err, errlen, "destination \"%s\": %s", d->name, sub);
            return st;
        }
        int rc = d->backend->create(backend_json, HERALD_PLUGIN_ABI_VERSION, &d->backend_state, sub,
                                    sizeof sub);
        free(backend_json);
        if (rc != 0) {
            d->backend_state = NULL;
            herald_error_format(err, errlen, "destination \"%s\": %s", d->name,
                                sub[0] ? sub : "the backend refused its configuration");
            return HERALD_E_CONFIG;
        }
        memset(&d->limits, 0, sizeof d->limits);
        d->limits.struct_size = sizeof d->limits;
        d->backend->limits(d->backend_state, &d->limits);
        if (d->limits.max_concurrency)
            d->settings.max_concurrency = d->limits.max_concurrency;
        uint32_t per_request = d->settings.batch_max_events;
        if (d->limits.max_events_per_request && d->limits.max_events_per_request < per_request)
            per_request = d->limits.max_events_per_request;
        if (per_request < c->wake_threshold)
            c->wake_threshold = per_request;
    }
    return HERALD_OK;
}

/* The session as stored: "<id> <last activity ms> <sequence>". */
static void session_parse(herald_client *c, const char *text)
{
    long long id = 0, last = 0;
    unsigned long sequence = 0;
    if (text && sscanf(text, "%lld %lld %lu", &id, &last, &sequence) == 3 && id > 0) {
        c->session_id = id;
        c->session_last_ms = last;
        c->session_sequence = (uint32_t)sequence;
    }
}

/* *slot becomes a copy of value where both are set and differ: 1 if it
 * changed, 0 if not, -1 out of memory (*slot untouched). */
static int replace_if_changed(char **slot, const char *value)
{
    if (*slot == NULL || value == NULL || strcmp(*slot, value) == 0)
        return 0;
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    free(*slot);
    *slot = copy;
    return 1;
}

/* An identity stored unredacted (by a client that had redaction off): redact
 * it now, in memory and in the file, as the members of an identify event
 * (the paths the events carry them at). */
static void redact_stored_identity(herald_client *c)
{
    json_t *probe = json_pack("{s:s,s:o}", "type", "identify", "traits", json_deep_copy(c->traits));
    if (probe == NULL || (c->user_id && json_object_set_new(probe, "userId",
                                                            json_string(c->user_id)) != 0) ||
        (c->group_id && json_object_set_new(probe, "groupId", json_string(c->group_id)) != 0) ||
        herald_redact_event(c->redactor, probe, NULL) != HERALD_OK) {
        json_decref(probe);
        herald_log(&c->logger, HERALD_LOG_WARN, "cannot redact the stored identity: out of memory");
        return;
    }
    const char *uid = json_string_value(json_object_get(probe, "userId"));
    const char *gid = json_string_value(json_object_get(probe, "groupId"));
    json_t *traits = json_object_get(probe, "traits");
    herald_status st = HERALD_OK;
    char *traits_text = NULL;
    herald_meta_update meta[3];
    size_t n = 0;
    int user = replace_if_changed(&c->user_id, uid);
    int group = user < 0 ? -1 : replace_if_changed(&c->group_id, gid);
    if (user > 0)
        meta[n++] = (herald_meta_update){"user_id", c->user_id};
    if (group > 0)
        meta[n++] = (herald_meta_update){"group_id", c->group_id};
    if (user < 0 || group < 0)
        st = HERALD_E_NO_MEMORY;
    if (st == HERALD_OK && json_is_object(traits) && !json_equal(traits, c->traits)) {
        if ((traits_text = json_dumps(traits, JSON_COMPACT)) == NULL) {
            st = HERALD_E_NO_MEMORY;
        } else {
            json_decref(c->traits);
            c->traits = json_incref(traits);
            meta[n++] = (herald_meta_update){"user_traits", traits_text};
        }
    }
    /* In memory it is redacted already (later events carry that); on disk
     * it is rewritten in one transaction, or at the next open. */
    uint64_t evicted = 0;
    char sub[ERR_MAX] = "out of memory";
    if (st != HERALD_OK ||
        (n > 0 && herald_queue_push_many(c->queue, NULL, 0, 0, meta, n, NULL, NULL, 0, NULL,
                                         &evicted, NULL, NULL, sub, sizeof sub) != HERALD_OK))
        herald_log(&c->logger, HERALD_LOG_WARN, "cannot redact the stored identity: %s", sub);
    free(traits_text);
    json_decref(probe);
}

static herald_status load_identity(herald_client *c, char *err, size_t errlen)
{
    char *anonymous = NULL, *traits = NULL, *session = NULL, *consent = NULL;
    herald_status st = herald_queue_meta_get(c->queue, "anonymous_id", &anonymous);
    if (st == HERALD_OK)
        st = herald_queue_meta_get(c->queue, "user_id", &c->user_id);
    if (st == HERALD_OK)
        st = herald_queue_meta_get(c->queue, "user_traits", &traits);
    if (st == HERALD_OK)
        st = herald_queue_meta_get(c->queue, "group_id", &c->group_id);
    if (st == HERALD_OK)
        st = herald_queue_meta_get(c->queue, "session", &session);
    if (st == HERALD_OK)
        st = herald_queue_meta_get(c->queue, "consent", &consent);
    if (st != HERALD_OK) {
        herald_error_format(err, errlen, "reading identity from the queue file: %s",
                            herald_queue_errmsg(c->queue));
        goto done;
    }
    if (anonymous == NULL || anonymous[0] == '\0' || strlen(anonymous) >= sizeof c->anonymous_id) {
        herald_uuid_random(c->anonymous_id, &c->random);
        if (herald_queue_meta_set(c->queue, "anonymous_id", c->anonymous_id) != HERALD_OK) {
            herald_error_format(err, errlen, "storing the anonymous id: %s",
                                herald_queue_errmsg(c->queue));
            st = HERALD_E_STORAGE;
            goto done;
        }
    } else {
        snprintf(c->anonymous_id, sizeof c->anonymous_id, "%s", anonymous);
    }
    c->traits = traits ? json_loads(traits, 0, NULL) : NULL;
    if (!json_is_object(c->traits)) {
        json_decref(c->traits);
        c->traits = json_object();
    }
    session_parse(c, session);
    if (c->user_id || c->group_id || json_object_size(c->traits) > 0)
        redact_stored_identity(c);
    if (consent != NULL)
        c->consent = strcmp(consent, "granted") == 0;
    else
        c->consent = !c->options.consent_required;
done:
    free(anonymous);
    free(traits);
    free(session);
    free(consent);
    return st;
}

static void client_free(herald_client *c)
{
    herald_stage_close(c->stage);
    herald_fast_frame_free(c->fast_frame);
    free(c->fast_buf);
    destinations_free(c);
    herald_queue_close(c->queue);
    herald_redactor_free(c->redactor);
    json_decref(c->context);
    json_decref(c->traits);
    free(c->group_id);
    pthread_cond_destroy(&c->drained);
    pthread_mutex_destroy(&c->mutex);
    pthread_mutex_destroy(&c->call_mutex);
    pthread_mutex_destroy(&c->writer_mutex);
    pthread_mutex_destroy(&c->bounds_mu);
    free(c->user_id);
    free(c->user_id_given);
    free(c->db_path);
    free(c);
}

/* ---- fork() ----
 * A child must never use its parent's SQLite connection, curl handles or
 * delivery thread. pthread_atfork handlers hold every client's mutex across
 * fork(), so no client is mid-operation in the child; the child marks each
 * client, and the first call there reopens the queue and starts a delivery
 * thread of its own. */

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static herald_client *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&registry_mutex);
    for (herald_client *c = registry; c; c = c->next_client) {
        pthread_mutex_lock(&c->call_mutex);
        pthread_mutex_lock(&c->mutex);
        herald_stage_fork_prepare(c->stage);
    }
}

static void atfork_parent(void)
{
    for (herald_client *c = registry; c; c = c->next_client) {
        herald_stage_fork_release(c->stage);
        pthread_mutex_unlock(&c->mutex);
        pthread_mutex_unlock(&c->call_mutex);
    }
    pthread_mutex_unlock(&registry_mutex);
}

static void atfork_child(void)
{
    for (herald_client *c = registry; c; c = c->next_client) {
        c->forked = 1;
        herald_stage_fork_release(c->stage);
        pthread_mutex_unlock(&c->mutex);
        pthread_mutex_unlock(&c->call_mutex);
    }
    pthread_mutex_unlock(&registry_mutex);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void registry_add(herald_client *c)
{
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&registry_mutex);
    c->next_client = registry;
    registry = c;
    pthread_mutex_unlock(&registry_mutex);
}

static void registry_remove(herald_client *c)
{
    pthread_mutex_lock(&registry_mutex);
    for (herald_client **p = &registry; *p; p = &(*p)->next_client) {
        if (*p == c) {
            *p = c->next_client;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mutex);
}

/* In the child, with both locks held: abandon what belongs to the parent and
 * start afresh on the same file. */
static herald_status after_fork(herald_client *c)
{
    c->forked = 0;
    c->thread_started = 0; /* the parent's thread does not exist here */
    c->multi = NULL;       /* its curl handles and sockets are the parent's */
    c->transfers = NULL;
    c->stop = 0;
    c->flush_waiters = 0;
    for (size_t i = 0; i < c->destination_count; i++) {
        c->destinations[i].inflight_count = 0;
        c->destinations[i].inflight_requests = 0;
    }
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* the parent keeps its delivery lock */
    c->lock_fd = -1;
    c->have_delivery_lock = 0;
    herald_random_fill(&c->random, &c->random_state, sizeof c->random_state);
    /* The staging file and its ingest thread are the parent's; the child
     * commits each call directly. */
    herald_stage_forget(c->stage);
    c->stage = NULL;
    herald_idgen_reset(&c->idgen); /* the parent goes on with its sequence */
    if (c->queue)
        herald_queue_forget(c->queue);
    c->queue = NULL;
    char err[ERR_MAX] = "";
    herald_status st = herald_queue_open(&c->queue, &c->queue_config, err, sizeof err);
    if (st == HERALD_OK && c->options.deliver)
        st = herald_delivery_start(c, err, sizeof err);
    if (st != HERALD_OK) {
        herald_client_set_error(c, "after fork: %s", err);
        herald_log(&c->logger, HERALD_LOG_ERROR, "after fork: %s", err);
    }
    return st;
}

/* Take the client's mutex; in a fork()ed child, reinitialise first. Returns
 * HERALD_E_STORAGE (mutex held) if the client has no usable queue. */
static herald_status client_lock(herald_client *c)
{
    pthread_mutex_lock(&c->mutex);
    if (c->forked) {
        /* after_fork changes what calls read under call_mutex: take both,
         * in order. */
        pthread_mutex_unlock(&c->mutex);
        pthread_mutex_lock(&c->call_mutex);
        pthread_mutex_lock(&c->mutex);
        if (c->forked)
            after_fork(c);
        pthread_mutex_unlock(&c->call_mutex);
    }
    return c->queue ? HERALD_OK : HERALD_E_STORAGE;
}

/* Take the call mutex (the event calls' lock); in a fork()ed child,
 * reinitialise first. HERALD_E_STORAGE (call mutex held) without a queue. */
static herald_status call_lock(herald_client *c)
{
    pthread_mutex_lock(&c->call_mutex);
    /* `forked` is set in the child while the fork handlers hold both locks,
     * and `queue` changes only under both: reading them under call_mutex is
     * safe, and the common call never touches the delivery lock. */
    if (c->forked) {
        pthread_mutex_lock(&c->mutex);
        if (c->forked)
            after_fork(c);
        pthread_mutex_unlock(&c->mutex);
    }
    return c->queue != NULL ? HERALD_OK : HERALD_E_STORAGE;
}

/* Both locks, with every staged event committed first: for calls that read
 * or rewrite the queue as a whole (consent, erase, reset, stats). Returns
 * HERALD_E_STORAGE without a queue, HERALD_E_TIMEOUT when staged events
 * could not be committed within timeout_ms; both locks are held either way. */
static herald_status sync_lock(herald_client *c, int timeout_ms)
{
    if (call_lock(c) != HERALD_OK) {
        pthread_mutex_lock(&c->mutex);
        return HERALD_E_STORAGE;
    }
    char err[ERR_MAX] = "";
    herald_status st = c->stage ? herald_stage_sync(c->stage, timeout_ms, err, sizeof err)
                                : HERALD_OK;
    pthread_mutex_lock(&c->mutex);
    if (st != HERALD_OK)
        herald_client_set_error(c, "%s", err);
    return st;
}

static void sync_unlock(herald_client *c)
{
    pthread_mutex_unlock(&c->mutex);
    pthread_mutex_unlock(&c->call_mutex);
}

/* Where the queue stands, from the ingest thread or a direct commit. */
static void watch_bounds(herald_client *c, const herald_stage_mark *mark)
{
    pthread_mutex_lock(&c->bounds_mu);
    c->bounds = *mark;
    pthread_mutex_unlock(&c->bounds_mu);
}

/* A staged event is already accepted: under reject_new, the call path
 * commits directly (with the exact check) when the queue, counting what is
 * staged and not committed yet (record sizes, a bound above the events'),
 * could not take this event. Call path only (call_mutex held). */
static int near_a_bound(herald_client *c, size_t length)
{
    if (c->options.overflow_policy != HERALD_OVERFLOW_REJECT_NEW || c->stage == NULL)
        return 0;
    uint64_t seq, pos;
    herald_stage_published(c->stage, &seq, &pos);
    pthread_mutex_lock(&c->bounds_mu);
    uint64_t events = (uint64_t)c->bounds.queued_events + (seq - c->bounds.seq) + 1;
    uint64_t bytes = (uint64_t)c->bounds.queued_bytes + (pos - c->bounds.pos) + length;
    pthread_mutex_unlock(&c->bounds_mu);
    return events > c->options.max_queue_events || bytes > c->options.max_queue_bytes;
}

/* How long a staged event waits for a destination to take it from the ring
 * before it is committed to SQLite: a batch's flush interval and a margin,
 * so that a quiet app's events, too, go out without touching SQLite. */
static uint32_t lane_hold_ms(const herald_client *c)
{
    uint32_t hold = 0;
    for (size_t i = 0; i < c->destination_count; i++)
        if (c->destinations[i].settings.flush_interval_ms > hold)
            hold = c->destinations[i].settings.flush_interval_ms;
    hold += 250;
    return hold < 10000 ? hold : 10000;
}

/* The ingest thread committed: wake delivery, watch the bounds. */
static void stage_committed(void *userdata, size_t events, const herald_stage_mark *mark)
{
    herald_client *c = userdata;
    watch_bounds(c, mark);
    pthread_mutex_lock(&c->mutex);
    c->unsignaled += (uint32_t)events;
    if (events > 0 && c->unsignaled >= c->wake_threshold) {
        c->unsignaled = 0;
        herald_delivery_wake(c);
    }
    if (c->flush_waiters)
        pthread_cond_broadcast(&c->drained); /* fewer staged events pending */
    pthread_mutex_unlock(&c->mutex);
}

herald_status herald_open(herald_client **out, const herald_options *opts)
{
    char err[ERR_MAX] = "";
    herald_status st;
    if (out == NULL || opts == NULL) {
        herald_open_error_set("herald_open: out and opts must not be NULL");
        return HERALD_E_INVALID_ARGUMENT;
    }
    *out = NULL;
    /* A caller built against an older header passes a shorter struct: take
     * what it knows and default the rest. */
    herald_options full;
    herald_options_init(&full);
    if (opts->struct_size < offsetof(herald_options, app_name)) {
        herald_open_error_set("options were not set up with herald_options_init()");
        return HERALD_E_INVALID_ARGUMENT;
    }
    memcpy(&full, opts, opts->struct_size < sizeof full ? opts->struct_size : sizeof full);
    full.struct_size = sizeof full;
    opts = &full;
    if ((st = herald_options_check(opts, err, sizeof err)) != HERALD_OK) {
        herald_open_error_set(err);
        return st;
    }
    herald_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        herald_open_error_set("out of memory");
        return HERALD_E_NO_MEMORY;
    }
    c->options = *opts;
    c->options.destinations = NULL;
    c->options.destination_count = 0;
    c->lock_fd = -1;
    c->db_path = strdup(opts->db_path);
    c->options.db_path = c->db_path;
    c->logger = (herald_logger){opts->log, opts->log_userdata, opts->log_level};
    c->clock = opts->clock ? opts->clock : wall_clock_ms;
    c->clock_ctx = opts->clock ? opts->clock_ctx : NULL;
    c->random = (herald_random){opts->random, opts->random_ctx};
    herald_random_fill(&c->random, &c->random_state, sizeof c->random_state);
    c->idgen.random = &c->random;
    herald_idgen_reset(&c->idgen);
    /* The snapshot keeps what the option strings said; the pointers are
     * the caller's and are not kept. */
    herald_host_info host;
    herald_host_detect(&host);
    c->context = herald_context_snapshot(&host, opts);
    c->options.app_name = c->options.app_version = c->options.app_build = NULL;
    c->options.device_type = c->options.user_agent = NULL;

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mutex, NULL);
    pthread_mutex_init(&c->call_mutex, NULL);
    pthread_mutex_init(&c->writer_mutex, NULL);
    pthread_mutex_init(&c->bounds_mu, NULL);
    c->fast_frame_stale = 1;
    pthread_cond_init(&c->drained, &attr);
    pthread_condattr_destroy(&attr);
    if (c->db_path == NULL || c->context == NULL) {
        st = HERALD_E_NO_MEMORY;
        goto fail;
    }
    c->before_store = opts->before_store;
    c->before_store_userdata = opts->before_store_userdata;
    {
        char sub[ERR_MAX] = "";
        if ((st = herald_redactor_create(opts->redact_json, &c->redactor, sub, sizeof sub)) !=
            HERALD_OK) {
            herald_error_format(err, sizeof err, "redact: %s", sub);
            goto fail;
        }
        c->options.redact_json = NULL;
    }

    herald_queue_config qc = {
        .path = c->db_path, .durability = opts->durability,
        .max_events = opts->max_queue_events, .max_bytes = opts->max_queue_bytes,
        .max_dead_letters = opts->max_dead_letters, .overflow_policy = opts->overflow_policy,
        .logger = &c->logger,
    };
    /* Destinations first: a configuration error must not create the file. */
    if ((st = destinations_create(c, opts, err, sizeof err)) != HERALD_OK)
        goto fail;
    c->queue_config = qc;
    if ((st = herald_queue_open(&c->queue, &qc, err, sizeof err)) != HERALD_OK)
        goto fail;
    herald_queue_share_writer(c->queue, &c->writer_mutex);
    {
        /* Events a killed process had staged: into the queue before the
         * identity is read (their session is the latest). */
        uint64_t recovered = 0;
        char sub[ERR_MAX] = "";
        /* Not fatal: the events stay in their file, which the next open
         * tries again; the app keeps working meanwhile. */
        if (herald_stage_recover(c->queue, c->db_path, &c->logger, &recovered, sub,
                                 sizeof sub) != HERALD_OK)
            herald_log(&c->logger, HERALD_LOG_WARN, "staged events not recovered: %s", sub);
    }
    if ((st = load_identity(c, err, sizeof err)) != HERALD_OK)
        goto fail;
    if (herald_queue_release_fast(c->queue) != HERALD_OK)
        herald_log(&c->logger, HERALD_LOG_WARN, "cannot release events of unfinished requests: %s",
                   herald_queue_errmsg(c->queue));
    if (herald_queue_adopt(c->queue, c->destination_names, c->destination_count) != HERALD_OK) {
        herald_error_format(err, sizeof err, "adopting queued events: %s",
                            herald_queue_errmsg(c->queue));
        st = HERALD_E_STORAGE;
        goto fail;
    }
    if (opts->deliver && (st = herald_delivery_start(c, err, sizeof err)) != HERALD_OK)
        goto fail;
    if (opts->durability != HERALD_DURABILITY_POWER && c->options.staging_bytes > 0) {
        /* Without a staging file (say, no space to reserve it) every call
         * commits directly: slower, as durable. */
        char sub[ERR_MAX] = "";
        herald_stats now = {.struct_size = sizeof now};
        pthread_mutex_lock(&c->mutex); /* the delivery thread runs */
        herald_stage_mark mark = {INT64_MAX / 4, INT64_MAX / 4, 0, 0}; /* unknown: near */
        if (herald_queue_stats(c->queue, &now) == HERALD_OK)
            mark = (herald_stage_mark){(int64_t)now.queued, (int64_t)now.queued_bytes, 0, 0};
        watch_bounds(c, &mark);
        pthread_mutex_unlock(&c->mutex);
        herald_stage *stage = NULL;
        if (herald_stage_open(&stage, &qc, c->options.staging_bytes, &c->writer_mutex,
                              stage_committed, c, sub, sizeof sub) != HERALD_OK) {
            herald_log(&c->logger, HERALD_LOG_WARN, "staging off: %s", sub);
        } else {
            if (opts->deliver &&
                herald_stage_set_lanes(stage, c->destination_names, c->destination_count,
                                       lane_hold_ms(c)) != HERALD_OK)
                herald_log(&c->logger, HERALD_LOG_WARN, "fast lane off: out of memory");
            pthread_mutex_lock(&c->mutex); /* the delivery thread takes batches from it */
            c->stage = stage;
            pthread_mutex_unlock(&c->mutex);
        }
    }
    herald_log(&c->logger, HERALD_LOG_INFO, "opened %s with %zu destinations", c->db_path,
               c->destination_count);
    registry_add(c);
    *out = c;
    return HERALD_OK;
fail:
    herald_open_error_set(err[0] ? err : herald_strerror(st));
    client_free(c);
    return st;
}

herald_status herald_open_json_ex(herald_client **out, const char *config_json,
                                  const herald_options *base)
{
    if (out == NULL) {
        herald_open_error_set("herald_open_json: out must not be NULL");
        return HERALD_E_INVALID_ARGUMENT;
    }
    *out = NULL;
    herald_options opts;
    if (base != NULL && base->struct_size >= sizeof opts)
        opts = *base;
    else
        herald_options_init(&opts);
    herald_config_storage storage;
    char err[ERR_MAX] = "";
    herald_status st = herald_config_parse(config_json, &opts, &storage, err, sizeof err);
    if (st != HERALD_OK) {
        herald_open_error_set(err);
        return st;
    }
    st = herald_open(out, &opts);
    herald_config_free(&storage);
    return st;
}

herald_status herald_open_json(herald_client **out, const char *config_json)
{
    return herald_open_json_ex(out, config_json, NULL);
}

int herald_client_has_pending(herald_client *c)
{
    if (c->stage && herald_stage_pending(c->stage) > 0)
        return 1;
    for (size_t i = 0; i < c->destination_count; i++) {
        int pending = 0;
        if (herald_queue_has_pending(c->queue, c->destinations[i].name, &pending) != HERALD_OK)
            return 1;
        if (pending)
            return 1;
    }
    return 0;
}

static struct timespec deadline_after(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

herald_status herald_sync(herald_client *c, int timeout_ms)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    herald_status st = sync_lock(c, timeout_ms);
    if (st == HERALD_E_TIMEOUT)
        call_error_set(c, c->last_error);
    sync_unlock(c);
    return st;
}

herald_status herald_flush(herald_client *c, int timeout_ms)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    if (!c->options.deliver)
        return HERALD_E_DISABLED;
    struct timespec deadline = deadline_after(timeout_ms < 0 ? 0 : timeout_ms);
    herald_status st = HERALD_E_TIMEOUT;
    /* Staged events are delivered from the ring or committed by the ingest
     * thread; has_pending counts them until then. */
    if (client_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->mutex);
        return HERALD_E_STORAGE;
    }
    c->flush_waiters++;
    herald_delivery_wake(c);
    for (;;) {
        if (!herald_client_has_pending(c)) {
            st = HERALD_OK;
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout_ms >= 0 && !before(&now, &deadline))
            break;
        /* Re-check at least twice a second: another process may drain the file. */
        struct timespec wait = deadline_after(500);
        if (timeout_ms >= 0 && before(&deadline, &wait))
            wait = deadline;
        pthread_cond_timedwait(&c->drained, &c->mutex, &wait);
    }
    c->flush_waiters--;
    pthread_mutex_unlock(&c->mutex);
    return st;
}

herald_status herald_close(herald_client *c, int timeout_ms)
{
    if (c == NULL)
        return HERALD_OK;
    /* A client being closed must not be touched by fork handlers. Taking the
     * client's lock first settles a fork()ed child's state. */
    pthread_mutex_lock(&c->call_mutex);
    pthread_mutex_lock(&c->mutex);
    if (c->forked)
        after_fork(c);
    pthread_mutex_unlock(&c->mutex);
    /* No call stages after this; the ingest thread commits what is staged
     * before it stops (or leaves it in the file for the next open). */
    c->closing = 1;
    herald_stage *stage = c->stage;
    pthread_mutex_lock(&c->mutex); /* the delivery thread takes batches from it */
    c->stage = NULL;
    pthread_mutex_unlock(&c->mutex);
    pthread_mutex_unlock(&c->call_mutex);
    herald_stage_close(stage);
    herald_status st = HERALD_OK;
    if (c->options.deliver && timeout_ms > 0) {
        st = herald_flush(c, timeout_ms);
    } else {
        pthread_mutex_lock(&c->mutex);
        st = c->queue == NULL || herald_client_has_pending(c) ? HERALD_E_TIMEOUT : HERALD_OK;
        pthread_mutex_unlock(&c->mutex);
    }
    herald_delivery_stop(c);
    registry_remove(c);
    if (call_error.client == c)
        call_error.client = NULL; /* a later client may get the same address */
    client_free(c);
    return st;
}

/* ---- events ---- */

/* Destinations a message goes to, from its Segment "integrations" object:
 * {"All": false, "x": true} selects x only; {"x": false} all but x. */
static size_t route(herald_client *c, json_t *message, const char **out)
{
    json_t *integrations = json_object_get(message, "integrations");
    json_t *all = json_object_get(integrations, "All");
    int default_on = !json_is_false(all);
    size_t n = 0;
    for (size_t i = 0; i < c->destination_count; i++) {
        json_t *flag = json_object_get(integrations, c->destinations[i].name);
        int on = flag ? !json_is_false(flag) : default_on;
        if (on)
            out[n++] = c->destinations[i].name;
    }
    return n;
}

enum { IDENTITY_NONE, IDENTITY_USER, IDENTITY_GROUP };

/* What an identify or group call leaves in the client's identity, as
 * metadata updates for the same transaction as the event. Applied to the
 * client only once the commit succeeded. */
typedef struct identity_change {
    int keeps;                   /* IDENTITY_USER/_GROUP: taken from the finished event */
    char *user_id;
    char *user_id_given;         /* the user id as the call gave it */
    json_t *traits;
    char *traits_text;
    char *group_id;
    char session[64];
    int64_t session_id;
    int64_t session_last_ms;
    uint32_t session_sequence;
    herald_meta_update meta[4];
    size_t meta_count;
} identity_change;

static void identity_change_free(identity_change *ch)
{
    free(ch->user_id);
    free(ch->user_id_given);
    json_decref(ch->traits);
    free(ch->traits_text);
    free(ch->group_id);
}

/* The identity an identify or group event leaves, read from the event as
 * finished: as redaction left it, so a raw email given as the user id is
 * never kept or written to the queue file. */
static void keep_identity(herald_client *c, identity_change *ch, const json_t *event)
{
    if (ch->keeps == IDENTITY_GROUP) {
        const char *gid = json_string_value(json_object_get(event, "groupId"));
        if (gid && (ch->group_id = strdup(gid)) != NULL)
            ch->meta[ch->meta_count++] = (herald_meta_update){"group_id", ch->group_id};
        return;
    }
    const char *uid = json_string_value(json_object_get(event, "userId"));
    json_t *given = json_object_get(event, "traits");
    if (uid && (ch->user_id = strdup(uid)) != NULL)
        ch->meta[ch->meta_count++] = (herald_meta_update){"user_id", ch->user_id};
    /* Traits accumulate; a new user starts from none. Two emails both kept
     * as "[email]" are still two users: the ids as given tell. */
    int same_user = uid == NULL ||
                    (c->user_id && strcmp(uid, c->user_id) == 0 &&
                     (c->user_id_given == NULL || ch->user_id_given == NULL ||
                      strcmp(ch->user_id_given, c->user_id_given) == 0));
    ch->traits = same_user ? json_deep_copy(c->traits) : json_object();
    if (ch->traits && json_is_object(given))
        json_object_update(ch->traits, given);
    if (ch->traits && (ch->traits_text = json_dumps(ch->traits, JSON_COMPACT)) != NULL)
        ch->meta[ch->meta_count++] = (herald_meta_update){"user_traits", ch->traits_text};
}

/* Per-rule redaction counts as counter names and deltas ("redact_v1", ...). */
typedef struct redaction_counts {
    char names[HERALD_RULE_COUNT][24];
    const char *keys[HERALD_RULE_COUNT + 1];
    int64_t deltas[HERALD_RULE_COUNT + 1];
    size_t n;
} redaction_counts;

static void redaction_counts_from(redaction_counts *rc, const herald_redact_stats *r)
{
    rc->n = 0;
    for (int i = 0; i < HERALD_RULE_COUNT; i++) {
        if (r->count[i] == 0)
            continue;
        snprintf(rc->names[rc->n], sizeof rc->names[rc->n], "redact_%s",
                 herald_redact_rule_name((herald_redact_rule)i));
        rc->keys[rc->n] = rc->names[rc->n];
        rc->deltas[rc->n] = (int64_t)r->count[i];
        rc->n++;
    }
}

/* Add to a counter from the call path (call_mutex held): staged with the
 * events, or committed directly without a staging file. */
static void count_call(herald_client *c, const char *counter)
{
    const char *keys[1] = {counter};
    int64_t deltas[1] = {1};
    char err[ERR_MAX];
    if (c->stage != NULL) {
        herald_stage_entry e = {.counters = keys, .deltas = deltas, .counter_count = 1};
        if (herald_stage_append(c->stage, &e, 0, err, sizeof err) == HERALD_OK)
            return;
    }
    pthread_mutex_lock(&c->mutex);
    if (c->queue)
        herald_queue_count(c->queue, counter, 1);
    pthread_mutex_unlock(&c->mutex);
}

/* Record a failed call's message (call_mutex held). */
static void call_failed(herald_client *c, const char *message)
{
    pthread_mutex_lock(&c->mutex);
    herald_client_set_error(c, "%s", message);
    pthread_mutex_unlock(&c->mutex);
    call_error_set(c, message);
}

/* The application's before_store hook: keep, drop or replace the event. A
 * replacement goes through validation, enrichment and redaction again. */
static herald_status run_before_store(herald_client *c, const herald_event_env *env, char **body,
                                      size_t *length, const char **type, char *err,
                                      size_t errlen)
{
    char *replacement = NULL;
    herald_hook_result verdict = c->before_store(*body, *length, &replacement,
                                                 c->before_store_userdata);
    if (verdict == HERALD_HOOK_KEEP) {
        free(replacement);
        return HERALD_OK;
    }
    if (verdict == HERALD_HOOK_DROP) {
        free(replacement);
        count_call(c, "hook_dropped");
        herald_error_format(err, errlen, "the before_store hook dropped the event");
        return HERALD_E_DROPPED;
    }
    if (verdict != HERALD_HOOK_REPLACE || replacement == NULL) {
        free(replacement);
        herald_error_format(err, errlen, "the before_store hook returned %d without a replacement",
                            (int)verdict);
        return HERALD_E_INVALID_ARGUMENT;
    }
    json_t *message = NULL;
    herald_status st = herald_event_parse_object(replacement, "before_store replacement", &message,
                                                 err, errlen);
    free(replacement);
    if (st != HERALD_OK)
        return st;
    char *again = NULL;
    size_t again_length = 0;
    st = herald_event_finish(env, message, &again, &again_length, type, err, errlen);
    if (st != HERALD_OK)
        return st;
    free(*body);
    *body = again;
    *length = again_length;
    return HERALD_OK;
}

/* Decimal digits of v at p; returns the end. */
static char *put_int(char *p, int64_t v)
{
    char digits[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = digits[--n];
    return p;
}

/* The session as stored in meta, "<id> <last activity ms> <sequence>"
 * (session_parse reads it back), without printf: it runs on every call. */
static void format_session(char out[64], int64_t id, int64_t last, uint32_t sequence)
{
    char *p = put_int(out, id);
    *p++ = ' ';
    p = put_int(p, last);
    *p++ = ' ';
    p = put_int(p, (int64_t)sequence);
    *p = '\0';
}

/* Session: a new one after session_timeout_ms of inactivity. Ids are the
 * session's start time, kept increasing even if the clock steps back. Fills
 * ch's session fields for a call at `now`; returns 1 if it starts a session. */
static int session_at(const herald_client *c, int64_t now, identity_change *ch)
{
    int new_session = c->session_id == 0 ||
                      now - c->session_last_ms >= (int64_t)c->options.session_timeout_ms;
    ch->session_id = c->session_id;
    ch->session_sequence = c->session_sequence;
    if (new_session) {
        ch->session_id = now > c->session_id ? now : c->session_id + 1;
        ch->session_sequence = 0;
    }
    ch->session_last_ms = now;
    return new_session;
}

/* Make one finished event durable (call_mutex held): a record in the
 * staging log, or, without one (or for a record too large for it, or near a
 * reject_new bound), a direct commit after everything staged before it. */
static herald_status store_event(herald_client *c, int64_t now, const char *type,
                                 const char *body, size_t length, const char **destinations,
                                 size_t routed, const identity_change *ch,
                                 const herald_redact_stats *redactions, char *err, size_t errlen)
{
    redaction_counts rc;
    redaction_counts_from(&rc, redactions);
    int held = !c->consent;
    if (c->stage != NULL && !near_a_bound(c, length)) {
        herald_stage_entry e = {
            .event = {.created_ms = now, .type = type, .body = body, .length = length,
                      .destinations = destinations, .destination_count = routed, .held = held},
            .meta = ch->meta, .meta_count = ch->meta_count,
            .counters = rc.keys, .deltas = rc.deltas, .counter_count = rc.n,
        };
        herald_status st = herald_stage_append(c->stage, &e, STAGE_WAIT_MS, err, errlen);
        /* A batch's worth in the ring: the delivery thread may take it. */
        if (st == HERALD_OK && ++c->staged_unsignaled >= c->wake_threshold) {
            c->staged_unsignaled = 0;
            herald_delivery_wake(c);
        }
        if (st != HERALD_E_TOO_LARGE)
            return st;
    }
    if (c->stage != NULL && herald_stage_sync(c->stage, STAGE_WAIT_MS, err, errlen) != HERALD_OK)
        return HERALD_E_STORAGE;
    pthread_mutex_lock(&c->mutex);
    uint64_t evicted = 0;
    herald_stage_mark mark = {0, 0, 0, 0};
    herald_status st = herald_queue_push(c->queue, now, type, body, length, destinations, routed,
                                         held, ch->meta, ch->meta_count, &evicted,
                                         &mark.queued_events, &mark.queued_bytes, err, errlen);
    if (st == HERALD_OK && c->stage != NULL) {
        /* Everything staged was committed first (herald_stage_sync). */
        herald_stage_published(c->stage, &mark.seq, &mark.pos);
        watch_bounds(c, &mark);
    }
    if (evicted)
        herald_log(&c->logger, HERALD_LOG_WARN,
                   "queue full: evicted %" PRIu64 " oldest events to dead letters", evicted);
    if (st == HERALD_OK && rc.n > 0 &&
        herald_queue_count_many(c->queue, rc.keys, rc.deltas, rc.n) != HERALD_OK)
        herald_log(&c->logger, HERALD_LOG_WARN, "cannot record redaction counts: %s",
                   herald_queue_errmsg(c->queue));
    if (st == HERALD_OK && ++c->unsignaled >= c->wake_threshold) {
        c->unsignaled = 0;
        herald_delivery_wake(c);
    }
    pthread_mutex_unlock(&c->mutex);
    return st;
}

/* Build, route and store one message (call_mutex held). Takes over `message`. */
static herald_status commit_message(herald_client *c, json_t *message, int64_t now,
                                    identity_change *ch, char *err, size_t errlen)
{
    herald_event_env env = {
        .now_ms = now, .anonymous_id = c->anonymous_id, .user_id = c->user_id,
        .max_event_bytes = c->options.max_event_bytes, .context = c->context,
        .traits = c->traits, .group_id = c->group_id, .session_id = ch->session_id,
        .session_sequence = ch->session_sequence, .new_message_id = herald_uuid_v7,
        .new_message_id_ctx = &c->idgen,
    };
    c->idgen.now_ms = now;
    const char **destinations = calloc(c->destination_count + 1, sizeof *destinations);
    if (destinations == NULL) {
        json_decref(message);
        return HERALD_E_NO_MEMORY;
    }
    size_t routed = route(c, message, destinations);
    if (routed == 0 && c->destination_count > 0) {
        /* Stored for no one, it would sit in the queue for ever. */
        free(destinations);
        json_decref(message);
        herald_error_format(err, errlen, "\"integrations\" selects none of the destinations");
        return HERALD_E_INVALID_ARGUMENT;
    }
    herald_redact_stats redactions;
    memset(&redactions, 0, sizeof redactions);
    env.redactor = c->redactor;
    env.redactions = &redactions;
    char *body = NULL;
    size_t length = 0;
    const char *type = NULL;
    json_t *finished = NULL;
    if (ch->keeps != IDENTITY_NONE)
        env.finished = &finished;
    herald_status st = herald_event_finish(&env, message, &body, &length, &type, err, errlen);
    env.finished = NULL; /* a hook's replacement does not change what is kept */
    if (finished != NULL) {
        keep_identity(c, ch, finished);
        json_decref(finished);
    }
    if (st == HERALD_OK && c->before_store != NULL)
        st = run_before_store(c, &env, &body, &length, &type, err, errlen);
    if (st == HERALD_OK)
        st = store_event(c, now, type, body, length, destinations, routed, ch, &redactions, err,
                         errlen);
    if (st == HERALD_OK && redactions.identity_markers > 0 && !c->identity_warned) {
        /* Once per client (PII.md §2.1); never the value itself. */
        c->identity_warned = 1;
        herald_log(&c->logger, HERALD_LOG_WARN,
                   "an identity field (userId, groupId or previousId) held personal data and "
                   "was replaced by a marker: every user with such an id looks like one; set "
                   "redact.hash_key to pseudonymise identity fields instead");
    }
    free(body);
    free(destinations);
    return st;
}

/* The end of an event call (call_mutex held): a stored event moves the
 * session on and applies the identity change (taking over its fields); a
 * refused one is recorded. */
static void call_settled(herald_client *c, herald_status st, identity_change *ch,
                         const char *err)
{
    if (st != HERALD_OK) {
        call_failed(c, err[0] ? err : herald_strerror(st));
        count_call(c, "rejected");
        return;
    }
    c->session_id = ch->session_id;
    c->session_last_ms = ch->session_last_ms;
    c->session_sequence = ch->session_sequence;
    if (ch->user_id || ch->traits || ch->group_id)
        c->fast_frame_stale = 1;
    if (ch->user_id) {
        free(c->user_id);
        c->user_id = ch->user_id;
        ch->user_id = NULL;
        free(c->user_id_given);
        c->user_id_given = ch->user_id_given;
        ch->user_id_given = NULL;
    }
    if (ch->traits) {
        json_decref(c->traits);
        c->traits = ch->traits;
        ch->traits = NULL;
    }
    if (ch->group_id) {
        free(c->group_id);
        c->group_id = ch->group_id;
        ch->group_id = NULL;
    }
}

/* Validate, enrich and commit one message. Takes over `message`.
 * The whole of it runs under the call mutex: the session sequence and
 * identity must advance in the order events are stored. */
static herald_status enqueue(herald_client *c, json_t *message)
{
    char err[ERR_MAX] = "";
    identity_change ch;
    memset(&ch, 0, sizeof ch);
    const char *type = json_string_value(json_object_get(message, "type"));
    int identify = type && strcmp(type, "identify") == 0;
    int group = type && strcmp(type, "group") == 0;

    if (call_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->call_mutex);
        json_decref(message);
        return HERALD_E_STORAGE;
    }
    herald_status st = HERALD_OK;
    if (c->closing) {
        st = HERALD_E_CLOSED;
        snprintf(err, sizeof err, "the client is closing");
    } else if (!c->consent && c->options.consent_policy == HERALD_CONSENT_DROP) {
        st = HERALD_E_NO_CONSENT;
        snprintf(err, sizeof err, "consent is not granted: event dropped");
        count_call(c, "consent_dropped");
    }
    if (st != HERALD_OK) {
        call_failed(c, err);
        pthread_mutex_unlock(&c->call_mutex);
        json_decref(message);
        return st;
    }
    int64_t now = c->clock(c->clock_ctx);
    int new_session = session_at(c, now, &ch);

    if (new_session && c->options.session_start_events) {
        json_t *start = json_pack("{s:s,s:s}", "type", "track", "event", "Session Started");
        ch.session_sequence++;
        format_session(ch.session, ch.session_id, now, ch.session_sequence);
        ch.meta[0] = (herald_meta_update){"session", ch.session};
        ch.meta_count = 1;
        st = start ? commit_message(c, start, now, &ch, err, sizeof err) : HERALD_E_NO_MEMORY;
    }

    if (st == HERALD_OK) {
        ch.session_sequence++;
        format_session(ch.session, ch.session_id, now, ch.session_sequence);
        ch.meta[0] = (herald_meta_update){"session", ch.session};
        ch.meta_count = 1;
        ch.keeps = identify ? IDENTITY_USER : group ? IDENTITY_GROUP : IDENTITY_NONE;
        const char *given = identify ? json_string_value(json_object_get(message, "userId")) : NULL;
        if (given)
            ch.user_id_given = strdup(given);
        st = commit_message(c, message, now, &ch, err, sizeof err);
        message = NULL;
    }
    json_decref(message);

    call_settled(c, st, &ch, err);
    pthread_mutex_unlock(&c->call_mutex);
    identity_change_free(&ch);
    return st;
}

/* Record a refused call whose arguments never became a message. */
static herald_status refuse(herald_client *c, herald_status st, const char *fmt, const char *what)
{
    if (call_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->call_mutex);
        return st;
    }
    char message[ERR_MAX];
    snprintf(message, sizeof message, fmt, what);
    call_failed(c, message);
    count_call(c, "rejected");
    pthread_mutex_unlock(&c->call_mutex);
    return st;
}

/* A C string as a JSON string, refusing invalid UTF-8. */
static json_t *string_value(const char *s)
{
    return s ? json_string(s) : NULL;
}

/* The fast path for track and screen (src/fastbuild.h): the arguments are
 * checked and compacted before the lock, the body assembled from the cached
 * identity frame under it. Returns 1 with *result when it handled the call,
 * 0 when the slow path must (it then gives the exact error or the redacted
 * event): a before_store hook, anything redaction would touch, a session
 * start event due, consent or closing refusals, a size near the limit. */
static int fast_call(herald_client *c, const char *type, const char *name,
                     const char *props_json, herald_status *result)
{
    if (c->before_store != NULL)
        return 0;
    herald_fast_args a;
    herald_fast_args_init(&a);
    if (herald_fast_scan(c->redactor, type, name, props_json, &a) != 0) {
        herald_fast_args_free(&a);
        return 0;
    }
    if (call_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->call_mutex);
        herald_fast_args_free(&a);
        return 0;
    }
    int handled = 0;
    identity_change ch;
    memset(&ch, 0, sizeof ch);
    int64_t now = c->clock(c->clock_ctx);
    int new_session = session_at(c, now, &ch);
    if (c->closing || (!c->consent && c->options.consent_policy == HERALD_CONSENT_DROP) ||
        (new_session && c->options.session_start_events))
        goto out;
    if (c->fast_frame_stale) {
        herald_fast_frame_free(c->fast_frame);
        c->fast_frame = NULL;
        herald_event_env env = {
            .anonymous_id = c->anonymous_id, .user_id = c->user_id, .context = c->context,
            .traits = c->traits, .group_id = c->group_id, .redactor = c->redactor,
            .max_event_bytes = c->options.max_event_bytes,
            .new_message_id = herald_uuid_random, .new_message_id_ctx = &c->random,
        };
        if (herald_fast_frame_build(&env, &c->fast_frame) != HERALD_OK)
            c->fast_frame = NULL;
        c->fast_frame_stale = 0;
    }
    if (c->fast_frame == NULL)
        goto out;
    size_t bound = herald_fast_size_bound(c->fast_frame, &a);
    if (bound > c->fast_buf_cap) {
        char *grown = realloc(c->fast_buf, bound);
        if (grown == NULL)
            goto out;
        c->fast_buf = grown;
        c->fast_buf_cap = bound;
    }
    char id[37];
    c->idgen.now_ms = now;
    herald_uuid_v7(id, &c->idgen);
    ch.session_sequence++;
    size_t length = herald_fast_assemble(c->fast_frame, &a, now, id, ch.session_id,
                                         ch.session_sequence, c->fast_buf, c->fast_buf_cap);
    if (length == 0 || !herald_fast_fits(&a, length, c->options.max_event_bytes))
        goto out;
    format_session(ch.session, ch.session_id, now, ch.session_sequence);
    ch.meta[0] = (herald_meta_update){"session", ch.session};
    ch.meta_count = 1;
    herald_redact_stats none;
    memset(&none, 0, sizeof none);
    char err[ERR_MAX] = "";
    herald_status st = store_event(c, now, a.type, c->fast_buf, length, c->destination_names,
                                   c->destination_count, &ch, &none, err, sizeof err);
    call_settled(c, st, &ch, err);
    *result = st;
    handled = 1;
out:
    pthread_mutex_unlock(&c->call_mutex);
    herald_fast_args_free(&a);
    return handled;
}

/* The typed calls: a named string field and an optional JSON object. */
static herald_status typed_call(herald_client *c, const char *type, const char *name_key,
                                const char *name, int name_required, const char *object_key,
                                const char *object_json)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    herald_status fast = HERALD_OK;
    if (fast_call(c, type, name, object_json, &fast))
        return fast;
    if (name_required && (name == NULL || name[0] == '\0'))
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s must be a non-empty string", name_key);
    json_t *name_value = NULL;
    if (name != NULL && (name_value = string_value(name)) == NULL)
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s is not valid UTF-8", name_key);
    json_t *object = NULL;
    char err[ERR_MAX] = "";
    herald_status st = herald_event_parse_object(object_json, object_key, &object, err, sizeof err);
    if (st != HERALD_OK) {
        json_decref(name_value);
        return refuse(c, st, "%s", err);
    }
    json_t *message = json_object();
    if (message == NULL) {
        json_decref(name_value);
        json_decref(object);
        return HERALD_E_NO_MEMORY;
    }
    json_object_set_new(message, "type", json_string(type));
    if (name_value)
        json_object_set_new(message, name_key, name_value);
    if (object_key)
        json_object_set_new(message, object_key, object);
    else
        json_decref(object);
    return enqueue(c, message);
}

herald_status herald_track(herald_client *c, const char *event, const char *properties_json)
{
    return typed_call(c, "track", "event", event, 1, "properties", properties_json);
}

herald_status herald_page(herald_client *c, const char *name, const char *properties_json)
{
    return typed_call(c, "page", "name", name, 0, "properties", properties_json);
}

herald_status herald_screen(herald_client *c, const char *name, const char *properties_json)
{
    return typed_call(c, "screen", "name", name, 0, "properties", properties_json);
}

herald_status herald_identify(herald_client *c, const char *user_id, const char *traits_json)
{
    return typed_call(c, "identify", "userId", user_id, 1, "traits", traits_json);
}

herald_status herald_group(herald_client *c, const char *group_id, const char *traits_json)
{
    return typed_call(c, "group", "groupId", group_id, 1, "traits", traits_json);
}

herald_status herald_alias(herald_client *c, const char *previous_id, const char *user_id)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    if (user_id == NULL || user_id[0] == '\0')
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s must be a non-empty string", "userId");
    json_t *user = string_value(user_id);
    if (user == NULL)
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s is not valid UTF-8", "userId");
    json_t *message = json_object();
    json_object_set_new(message, "type", json_string("alias"));
    json_object_set_new(message, "userId", user);
    if (previous_id == NULL || previous_id[0] == '\0') {
        json_decref(message);
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s must be a non-empty string", "previousId");
    }
    json_t *previous = string_value(previous_id);
    if (previous == NULL) {
        json_decref(message);
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s is not valid UTF-8", "previousId");
    }
    json_object_set_new(message, "previousId", previous);
    return enqueue(c, message);
}

/* Forget the identity (caller holds the mutex): new anonymous id, no user,
 * traits, group or session. `meta` receives the updates that persist it. */
static void identity_clear(herald_client *c, char fresh[64], herald_meta_update meta[5])
{
    herald_uuid_random(fresh, &c->random);
    meta[0] = (herald_meta_update){"anonymous_id", fresh};
    meta[1] = (herald_meta_update){"user_id", NULL};
    meta[2] = (herald_meta_update){"user_traits", NULL};
    meta[3] = (herald_meta_update){"group_id", NULL};
    meta[4] = (herald_meta_update){"session", NULL};
}

static void identity_apply_cleared(herald_client *c, const char fresh[64])
{
    c->fast_frame_stale = 1;
    memcpy(c->anonymous_id, fresh, sizeof c->anonymous_id);
    free(c->user_id);
    c->user_id = NULL;
    free(c->user_id_given);
    c->user_id_given = NULL;
    json_object_clear(c->traits);
    free(c->group_id);
    c->group_id = NULL;
    c->session_id = 0;
    c->session_sequence = 0;
}

herald_status herald_reset(herald_client *c)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    char fresh[64];
    herald_meta_update meta[5];
    herald_status locked = sync_lock(c, STAGE_WAIT_MS);
    if (locked != HERALD_OK) {
        sync_unlock(c);
        return locked;
    }
    identity_clear(c, fresh, meta);
    uint64_t erased = 0;
    /* No ids to match: only the metadata changes, in one transaction. */
    herald_status st = herald_queue_erase_ids(c->queue, NULL, NULL, meta, 5, &erased);
    if (st == HERALD_OK)
        identity_apply_cleared(c, fresh);
    else
        herald_client_set_error(c, "reset: %s", herald_queue_errmsg(c->queue));
    sync_unlock(c);
    return st;
}

herald_status herald_erase_user(herald_client *c, uint64_t *erased)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    char fresh[64];
    herald_meta_update meta[5];
    uint64_t n = 0;
    herald_status locked = sync_lock(c, STAGE_WAIT_MS);
    if (locked != HERALD_OK) {
        sync_unlock(c);
        return locked;
    }
    identity_clear(c, fresh, meta);
    herald_status st = herald_queue_erase_ids(c->queue, c->anonymous_id, c->user_id, meta, 5, &n);
    if (st == HERALD_OK)
        identity_apply_cleared(c, fresh);
    else
        herald_client_set_error(c, "erase: %s", herald_queue_errmsg(c->queue));
    sync_unlock(c);
    if (erased)
        *erased = n;
    return st;
}

herald_status herald_set_consent(herald_client *c, int granted)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    uint64_t released = 0;
    herald_status locked = sync_lock(c, STAGE_WAIT_MS);
    if (locked != HERALD_OK) {
        sync_unlock(c);
        return locked;
    }
    herald_status st = herald_queue_meta_set(c->queue, "consent", granted ? "granted" : "denied");
    if (st == HERALD_OK && granted)
        st = herald_queue_release_held(c->queue, &released);
    if (st == HERALD_OK)
        c->consent = granted != 0;
    else
        herald_client_set_error(c, "consent: %s", herald_queue_errmsg(c->queue));
    sync_unlock(c);
    if (released)
        herald_delivery_wake(c);
    return st;
}

herald_status herald_get_consent(herald_client *c, int *granted)
{
    if (c == NULL || granted == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    if (call_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->call_mutex);
        return HERALD_E_STORAGE;
    }
    *granted = c->consent;
    pthread_mutex_unlock(&c->call_mutex);
    return HERALD_OK;
}

herald_status herald_send(herald_client *c, const char *message_json)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    json_t *message = NULL;
    char err[ERR_MAX] = "";
    herald_status st = herald_event_parse_object(message_json, "message", &message, err, sizeof err);
    if (st == HERALD_OK && message_json == NULL) {
        json_decref(message);
        return refuse(c, HERALD_E_INVALID_ARGUMENT, "%s must not be NULL", "message");
    }
    if (st != HERALD_OK)
        return refuse(c, st, "%s", err);
    return enqueue(c, message);
}

/* ---- stats and dead letters ---- */

herald_status herald_stats_get(herald_client *c, herald_stats *out)
{
    if (c == NULL || out == NULL || out->struct_size == 0)
        return HERALD_E_INVALID_ARGUMENT;
    /* Staged events count as queued: commit them first, if that is quick. */
    if (sync_lock(c, 1000) == HERALD_E_STORAGE) {
        sync_unlock(c);
        return HERALD_E_STORAGE;
    }
    herald_status st = herald_queue_stats(c->queue, out);
    sync_unlock(c);
    return st;
}

herald_status herald_stats_json(herald_client *c, char **out)
{
    if (c == NULL || out == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    *out = NULL;
    herald_stats s = {.struct_size = sizeof s};
    /* Staged events count as queued: commit them first, if that is quick. */
    if (sync_lock(c, 1000) == HERALD_E_STORAGE) {
        sync_unlock(c);
        return HERALD_E_STORAGE;
    }
    herald_status st = herald_queue_stats(c->queue, &s);
    json_t *root = NULL;
    if (st == HERALD_OK) {
        root = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
                         "s:b,s:s,s:s,s:[]}",
                         "queued", (json_int_t)s.queued, "queued_bytes", (json_int_t)s.queued_bytes,
                         "pending", (json_int_t)s.pending, "accepted", (json_int_t)s.accepted,
                         "rejected", (json_int_t)s.rejected, "sent", (json_int_t)s.sent,
                         "retried", (json_int_t)s.retried, "dead", (json_int_t)s.dead,
                         "evicted", (json_int_t)s.evicted, "dead_letters",
                         (json_int_t)s.dead_letters, "requests", (json_int_t)s.requests,
                         "bytes_raw", (json_int_t)s.bytes_raw, "bytes_sent",
                         (json_int_t)s.bytes_sent, "held", (json_int_t)s.held, "server_dropped",
                         (json_int_t)s.server_dropped, "skipped", (json_int_t)s.skipped,
                         "consent_dropped",
                         (json_int_t)s.consent_dropped, "consent", c->consent, "last_error",
                         c->last_error, "db_path",
                         c->db_path, "destinations");
        json_t *redactions = json_object();
        if (root && redactions &&
            herald_queue_counters_with_prefix(c->queue, "redact_", redactions) == HERALD_OK)
            json_object_set(root, "redactions", redactions);
        json_decref(redactions);
        json_t *hook = json_object();
        if (root && hook && herald_queue_counters_with_prefix(c->queue, "hook_", hook) == HERALD_OK)
            json_object_set_new(root, "hook_dropped",
                                json_integer(json_integer_value(json_object_get(hook, "dropped"))));
        json_decref(hook);
        json_t *list = json_object_get(root, "destinations");
        for (size_t i = 0; root && i < c->destination_count; i++) {
            herald_destination_state *d = &c->destinations[i];
            uint64_t pending = 0;
            herald_queue_pending_count(c->queue, d->name, &pending);
            json_array_append_new(
                list, json_pack("{s:s,s:s,s:I,s:I,s:I}", "name", d->name, "backend",
                                d->backend_name, "pending", (json_int_t)pending,
                                "paused_until_ms", (json_int_t)d->paused_until_ms,
                                "consecutive_failures", (json_int_t)d->consecutive_failures));
        }
    }
    sync_unlock(c);
    if (st != HERALD_OK)
        return st;
    if (root == NULL)
        return HERALD_E_NO_MEMORY;
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *out ? HERALD_OK : HERALD_E_NO_MEMORY;
}

herald_status herald_dead_letters_json(herald_client *c, uint64_t limit, char **out)
{
    if (c == NULL || out == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    if (client_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->mutex);
        return HERALD_E_STORAGE;
    }
    herald_status st = herald_queue_dead_letters_json(c->queue, limit, out);
    pthread_mutex_unlock(&c->mutex);
    return st;
}

herald_status herald_dead_letters_replay(herald_client *c, const char *destination,
                                         uint64_t *replayed)
{
    if (c == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    uint64_t n = 0;
    if (client_lock(c) != HERALD_OK) {
        pthread_mutex_unlock(&c->mutex);
        return HERALD_E_STORAGE;
    }
    herald_status st = herald_queue_replay(c->queue, destination, c->destination_names,
                                           c->destination_count, c->clock(c->clock_ctx), &n);
    if (st != HERALD_OK)
        herald_client_set_error(c, "replaying dead letters: %s", herald_queue_errmsg(c->queue));
    pthread_mutex_unlock(&c->mutex);
    if (replayed)
        *replayed = n;
    if (n)
        herald_delivery_wake(c);
    return st;
}

void herald_free(void *p)
{
    free(p);
}

char *herald_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}
