/*
 * The delivery thread: one per client. It cuts due outbox rows into batches
 * per destination, has the backend encode each batch into a request, gzips
 * it when that pays, sends it with libcurl (multi interface: every
 * destination's requests run concurrently, so one slow or failing destination
 * never holds back another) and records the verdict in the queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "backoff.h"
#include "batch.h"
#include "client.h"
#include "compress.h"

#define RESPONSE_BODY_MAX (64 * 1024)
#define RESPONSE_HEADERS_MAX (16 * 1024)
#define RETRY_AFTER_MAX_MS (3600 * 1000)
#define IDLE_WAKE_MS 1000

typedef struct transfer {
    herald_destination_state *dest;
    CURL *easy;
    struct curl_slist *header_list;
    herald_backend_request request;
    unsigned char *compressed;
    size_t raw_length;
    size_t sent_length;
    herald_queue_row *rows;
    size_t count;
    const char **events;
    size_t *lengths;
    int64_t *ids;
    uint32_t attempt;
    herald_stage_claim *claim;   /* taken from the staging ring (events, lengths
                                    and, once settled, ids are the claim's);
                                    NULL once the stage has it back */
    int fast;
    int counted;                 /* the request is in the counters already */
    int body_cut;                /* the response body was cut at RESPONSE_BODY_MAX */
    char *response;
    size_t response_length;
    char *response_headers;      /* "name: value\n" lines, names lowercased */
    size_t response_headers_length;
    char error[CURL_ERROR_SIZE];
    struct transfer *next;
} transfer;

static int64_t now_ms(herald_client *c)
{
    return c->clock(c->clock_ctx);
}

/* ---- in-flight bookkeeping (under the mutex) ---- */

static int inflight_add(herald_destination_state *d, const int64_t *ids, size_t n)
{
    if (d->inflight_count + n > d->inflight_capacity) {
        size_t cap = (d->inflight_count + n) * 2;
        int64_t *grown = realloc(d->inflight_ids, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        d->inflight_ids = grown;
        d->inflight_capacity = cap;
    }
    memcpy(d->inflight_ids + d->inflight_count, ids, n * sizeof *ids);
    d->inflight_count += n;
    d->inflight_requests++;
    return 0;
}

static void inflight_remove(herald_destination_state *d, const int64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d->inflight_count; j++) {
            if (d->inflight_ids[j] == ids[i]) {
                d->inflight_ids[j] = d->inflight_ids[--d->inflight_count];
                break;
            }
        }
    }
    d->inflight_requests--;
}

static int is_inflight(const herald_destination_state *d, int64_t id)
{
    for (size_t j = 0; j < d->inflight_count; j++)
        if (d->inflight_ids[j] == id)
            return 1;
    return 0;
}

/* ---- curl callbacks ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    transfer *t = userdata;
    size_t n = size * nmemb;
    size_t room = RESPONSE_BODY_MAX - t->response_length;
    size_t keep = n < room ? n : room;
    if (keep > 0) {
        char *grown = realloc(t->response, t->response_length + keep + 1);
        if (grown == NULL)
            return 0;
        memcpy(grown + t->response_length, data, keep);
        t->response_length += keep;
        grown[t->response_length] = '\0';
        t->response = grown;
    }
    /* Read bounded: past 64 KiB stop reading altogether (curl ends the
     * transfer with CURLE_WRITE_ERROR, which reap() reads as a complete
     * response). Reading on would let an endless body hold the request
     * until its timeout and lose the status. */
    if (keep < n)
        t->body_cut = 1;
    return keep;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    transfer *t = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        t->response_headers_length = 0; /* a new response (after 100-continue) */
    char *colon = memchr(data, ':', n);
    if (colon == NULL || t->response_headers_length + n + 1 > RESPONSE_HEADERS_MAX)
        return n;
    char *grown = realloc(t->response_headers, t->response_headers_length + n + 2);
    if (grown == NULL)
        return n;
    t->response_headers = grown;
    char *out = grown + t->response_headers_length;
    size_t name_len = (size_t)(colon - data);
    for (size_t i = 0; i < name_len; i++)
        out[i] = (char)((data[i] >= 'A' && data[i] <= 'Z') ? data[i] + 32 : data[i]);
    out[name_len] = ':';
    const char *value = colon + 1;
    const char *end = data + n;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t value_len = (size_t)(end - value);
    memcpy(out + name_len + 1, value, value_len);
    out[name_len + 1 + value_len] = '\n';
    t->response_headers_length += name_len + value_len + 2;
    grown[t->response_headers_length] = '\0';
    return n;
}

/* herald_backend_response.header: look a header up by name. The returned
 * value lives in a per-response scratch buffer. */
typedef struct header_lookup {
    const transfer *t;
    char value[1024];
} header_lookup;

static const char *response_header(const herald_backend_response *response, const char *name)
{
    header_lookup *lookup = response->header_context;
    const transfer *t = lookup->t;
    if (t->response_headers == NULL)
        return NULL;
    size_t name_len = strlen(name);
    const char *line = t->response_headers;
    while (*line) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            size_t n = (size_t)(eol - line) - name_len - 1;
            if (n >= sizeof lookup->value)
                n = sizeof lookup->value - 1;
            memcpy(lookup->value, line + name_len + 1, n);
            lookup->value[n] = '\0';
            return lookup->value;
        }
        line = eol + 1;
    }
    return NULL;
}

/* ---- building and sending a request ---- */

static void transfer_free(transfer *t)
{
    if (t == NULL)
        return;
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->header_list);
    herald_free(t->request.body);
    herald_free(t->request.headers);
    herald_free(t->request.secrets);
    free(t->compressed);
    if (t->fast) {
        herald_stage_claim_free(t->claim);
    } else {
        herald_queue_rows_free(t->rows, t->count);
        free(t->events);
        free(t->lengths);
        free(t->ids);
    }
    free(t->response);
    free(t->response_headers);
    free(t);
}

static struct curl_slist *header_list(const transfer *t, int gzipped)
{
    struct curl_slist *list = NULL, *next;
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    if ((next = curl_slist_append(list, "Expect:")) == NULL)
        return NULL;
    list = next;
    if (gzipped) {
        if ((next = curl_slist_append(list, "Content-Encoding: gzip")) == NULL)
            goto fail;
        list = next;
    }
    if (t->request.headers) {
        char *copy = strdup(t->request.headers);
        if (copy == NULL)
            goto fail;
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if ((next = curl_slist_append(list, line)) == NULL) {
                free(copy);
                goto fail;
            }
            list = next;
        }
        free(copy);
    }
    return list;
fail:
    curl_slist_free_all(list);
    return NULL;
}

/* Encode, compress and hand one batch to curl. Runs without the mutex. On
 * failure returns -1 with a reason; the caller dead-letters or retries. */
static int transfer_prepare(herald_client *c, transfer *t, int64_t now, char *err, size_t errlen)
{
    herald_destination_state *d = t->dest;
    herald_backend_batch batch = {
        .struct_size = sizeof batch, .count = t->count, .events = t->events,
        .event_lengths = t->lengths, .now_ms = now, .attempt = t->attempt,
    };
    t->request.struct_size = sizeof t->request;
    int encoded = d->backend->encode(d->backend_state, &batch, &t->request, err, errlen);
    if (encoded == HERALD_ENCODE_SKIP)
        return HERALD_ENCODE_SKIP;
    if (encoded != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "the %s backend could not encode the batch", d->backend->name);
        return -1;
    }
    if (t->request.url == NULL || t->request.body == NULL) {
        snprintf(err, errlen, "the %s backend returned a request without url or body",
                 d->backend->name);
        return -1;
    }
    t->raw_length = t->request.body_length;
    const void *body = t->request.body;
    size_t body_length = t->request.body_length;
    int gzipped = 0;
    if (d->limits.accepts_gzip && body_length >= d->settings.gzip_min_bytes) {
        size_t out_len = 0;
        if (herald_gzip(body, body_length, d->settings.gzip_level, &t->compressed, &out_len) == 0 &&
            out_len < body_length) {
            body = t->compressed;
            body_length = out_len;
            gzipped = 1;
        }
    }
    t->sent_length = body_length;
    t->header_list = header_list(t, gzipped);
    t->easy = curl_easy_init();
    if (t->header_list == NULL || t->easy == NULL) {
        snprintf(err, errlen, "out of memory preparing a request");
        return -1;
    }
    CURL *e = t->easy;
    const herald_delivery_settings *s = &d->settings;
    curl_easy_setopt(e, CURLOPT_URL, t->request.url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_length);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "herald-c/" HERALD_VERSION_STRING " (Linux)");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->insecure_skip_tls_verify ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->insecure_skip_tls_verify ? 0L : 2L);
    if (s->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        snprintf(err, errlen, "curl refused the request");
        return -1;
    }
    return 0;
}

/* ---- secrets ---- */

static int header_is_harmless(const char *line)
{
    /* Not credentials; scrubbing a user name would mask every identifier
     * that contains it in the server's messages. */
    static const char *const harmless[] = {"content-type:", "content-encoding:", "accept:",
                                           "user-agent:", "x-clickhouse-user:"};
    for (size_t i = 0; i < sizeof harmless / sizeof *harmless; i++)
        if (strncasecmp(line, harmless[i], strlen(harmless[i])) == 0)
            return 1;
    return 0;
}

static int base64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Decode standard base64 into out (NUL-terminated); 0 on malformed input. */
static int base64_decode(const char *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && in[i] != '='; i++) {
        int v = base64_value(in[i]);
        if (v < 0 || o + 1 >= outlen)
            return 0;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return 1;
}

/* Replace every occurrence of `secret` (>= 4 bytes) in text with [secret]. */
static void scrub_one(char *text, const char *secret, size_t len)
{
    static const char marker[] = "[secret]";
    if (len < 4)
        return;
    char *hit;
    while ((hit = strstr(text, secret)) != NULL) {
        size_t tail = strlen(hit + len);
        if (len >= sizeof marker - 1) {
            memcpy(hit, marker, sizeof marker - 1);
            memmove(hit + sizeof marker - 1, hit + len, tail + 1);
        } else {
            memset(hit, '*', len); /* shorter than the marker: mask in place */
        }
    }
}

/* Remove the request's credentials from text (modified in place; it only
 * shrinks): header values but the harmless ones, the token after a scheme
 * ("Bearer x"), a Basic pair decoded and its parts, and the backend's
 * declared body secrets. */
static void scrub_secrets(const transfer *t, char *text)
{
    if (text == NULL || *text == '\0')
        return;
    const char *lists[2] = {t->request.headers, t->request.secrets};
    for (int l = 0; l < 2; l++) {
        const char *line = lists[l];
        while (line && *line) {
            size_t n = strcspn(line, "\n");
            char item[1024];
            if (n < sizeof item) {
                memcpy(item, line, n);
                item[n] = '\0';
                const char *value = item;
                if (l == 0) {
                    char *colon = strchr(item, ':');
                    value = colon && !header_is_harmless(item) ? colon + 1 : NULL;
                    while (value && *value == ' ')
                        value++;
                }
                if (value && *value) {
                    scrub_one(text, value, strlen(value));
                    const char *space = strchr(value, ' ');
                    if (space) { /* "Bearer <token>", "Basic <base64>" */
                        scrub_one(text, space + 1, strlen(space + 1));
                        char pair[768];
                        if (strncasecmp(value, "Basic ", 6) == 0 &&
                            base64_decode(space + 1, strlen(space + 1), pair, sizeof pair)) {
                            scrub_one(text, pair, strlen(pair));
                            char *sep = strchr(pair, ':');
                            if (sep) {
                                *sep = '\0';
                                scrub_one(text, pair, strlen(pair));
                                scrub_one(text, sep + 1, strlen(sep + 1));
                            }
                        }
                    }
                }
            }
            line += n;
            if (*line == '\n')
                line++;
        }
    }
}

/* ---- verdicts ---- */

static void settle(herald_client *c, transfer *t, const int64_t *ids, size_t count,
                   const herald_backend_response *response, const herald_verdict *verdict)
{
    herald_destination_state *d = t->dest;
    int64_t now = now_ms(c);
    herald_settlement s = {
        .event_ids = ids, .count = count, .now_ms = now,
        .http_status = response->status, .reason = verdict->reason,
        .response = response->body_length ? response->body : NULL,
        .requests = response->status > 0 && !t->counted,
        .bytes_raw = t->counted ? 0 : t->raw_length,
        .bytes_sent = response->status > 0 && !t->counted ? t->sent_length : 0,
    };
    t->counted = 1;
    char excerpt[513];
    if (s.response) {
        size_t n = response->body_length < 512 ? response->body_length : 512;
        memcpy(excerpt, response->body, n);
        excerpt[n] = '\0';
        s.response = excerpt;
    }
    herald_verdict_kind kind = verdict->kind;
    /* A batch refused as a whole for its content may hold one bad event:
     * bisect it, so that the bad one is dead-lettered alone. */
    if (kind == HERALD_VERDICT_REJECT && count > 1 &&
        (response->status == 400 || response->status == 422))
        kind = HERALD_VERDICT_SPLIT;
    switch (kind) {
    case HERALD_VERDICT_OK:
        s.kind = HERALD_SETTLE_ACK;
        s.dropped = verdict->dropped < count ? verdict->dropped : count;
        d->consecutive_failures = 0;
        if (d->split_limit && (d->split_limit *= 2) >= d->settings.batch_max_events)
            d->split_limit = 0;
        break;
    case HERALD_VERDICT_SPLIT:
        if (count > 1) {
            /* Retry at once in halves: no attempt used, no backoff. */
            d->split_limit = (uint32_t)(count / 2);
            s.kind = HERALD_SETTLE_RETRY;
            s.count = 0;
            herald_log(&c->logger, HERALD_LOG_INFO, "%s: %s; splitting batches to %u events",
                       d->name, verdict->reason, d->split_limit);
            /* Not a failure of the destination: no backoff, no attempt. */
            s.retried = 0;
        } else {
            s.kind = HERALD_SETTLE_DEAD;
        }
        break;
    case HERALD_VERDICT_REJECT:
        s.kind = HERALD_SETTLE_DEAD;
        break;
    case HERALD_VERDICT_RETRY: {
        s.kind = HERALD_SETTLE_RETRY;
        int64_t delay = 0;
        const char *retry_after =
            response->status > 0 ? response->header(response, "Retry-After") : NULL;
        if (retry_after && herald_retry_after_parse(retry_after, now, &delay)) {
            /* The server said when: wait that long, and the attempt is free. */
            if (delay > RETRY_AFTER_MAX_MS)
                delay = RETRY_AFTER_MAX_MS;
        } else {
            d->consecutive_failures++;
            delay = herald_backoff_delay_ms(d->settings.retry_base_ms, d->settings.retry_max_delay_ms,
                                            d->consecutive_failures,
                                            herald_random_next(&c->random_state));
            /* A response means the server saw this batch: that costs an
             * attempt. No response (offline, refused, timed out) does not:
             * a night offline must not exhaust anything but max age. */
            s.count_attempt = response->status > 0;
        }
        d->paused_until_ms = now + delay;
        s.next_at_ms = d->paused_until_ms;
        s.max_attempts = d->settings.retry_max_attempts;
        s.expire_before_ms = now - (int64_t)d->settings.retry_max_age_s * 1000;
        s.retried = 1;
        herald_log(&c->logger, HERALD_LOG_WARN, "%s: %s; retrying %zu events in %" PRId64 " ms",
                   d->name, verdict->reason, count, delay);
        break;
    }
    }
    uint64_t sent = 0, dead = 0;
    if (herald_queue_settle(c->queue, d->name, &s, &sent, &dead) != HERALD_OK)
        herald_client_set_error(c, "%s: cannot record a delivery outcome: %s", d->name,
                                herald_queue_errmsg(c->queue));
    if (verdict->kind != HERALD_VERDICT_OK)
        herald_client_set_error(c, "%s: %s", d->name, verdict->reason);
    if (dead)
        herald_log(&c->logger, HERALD_LOG_WARN, "%s: %" PRIu64 " events dead-lettered: %s",
                   d->name, dead, verdict->reason);
    if (verdict->dropped)
        herald_log(&c->logger, HERALD_LOG_INFO, "%s: server dropped %u events", d->name,
                   verdict->dropped);
}

/* A response with per-event verdicts (partial success): settle each group
 * of events that share a verdict on its own. The request's counters go with
 * the first group only. */
static void settle_per_event(herald_client *c, transfer *t, const herald_backend_response *response,
                             const herald_verdict *verdict, const int *event_kinds)
{
    int any = 0;
    for (size_t i = 0; event_kinds && i < t->count; i++)
        any |= event_kinds[i] >= 0;
    if (!any) {
        settle(c, t, t->ids, t->count, response, verdict);
        return;
    }
    int64_t *group = malloc(t->count * sizeof *group);
    if (group == NULL) {
        settle(c, t, t->ids, t->count, response, verdict);
        return;
    }
    for (int kind = HERALD_VERDICT_OK; kind <= HERALD_VERDICT_SPLIT; kind++) {
        size_t n = 0;
        for (size_t i = 0; i < t->count; i++) {
            int k = event_kinds[i] >= 0 && event_kinds[i] <= HERALD_VERDICT_SPLIT
                        ? event_kinds[i]
                        : (int)verdict->kind;
            if (k == kind)
                group[n++] = t->ids[i];
        }
        if (n == 0)
            continue;
        herald_verdict part = *verdict;
        part.kind = (herald_verdict_kind)kind;
        /* The server's drop count belongs to what it accepted, once. */
        part.dropped = kind == HERALD_VERDICT_OK ? verdict->dropped : 0;
        if (kind == HERALD_VERDICT_OK && part.kind != verdict->kind)
            snprintf(part.reason, sizeof part.reason, "HTTP %ld: accepted in part", response->status);
        settle(c, t, group, n, response, &part);
    }
    free(group);
}

/* The backend declined these events as not meant for it. */
static void settle_skipped(herald_client *c, transfer *t)
{
    herald_settlement s = {
        .kind = HERALD_SETTLE_SKIP, .event_ids = t->ids, .count = t->count, .now_ms = now_ms(c),
    };
    if (herald_queue_settle(c->queue, t->dest->name, &s, NULL, NULL) != HERALD_OK)
        herald_client_set_error(c, "%s: cannot record skipped events: %s", t->dest->name,
                                herald_queue_errmsg(c->queue));
}

/* A batch that cannot even be encoded never will be: dead-letter it. */
static void settle_unsendable(herald_client *c, transfer *t, const char *why)
{
    herald_verdict verdict;
    memset(&verdict, 0, sizeof verdict);
    verdict.kind = HERALD_VERDICT_REJECT;
    snprintf(verdict.reason, sizeof verdict.reason, "%s", why);
    herald_backend_response response = {.struct_size = sizeof response, .status = 0};
    settle(c, t, t->ids, t->count, &response, &verdict);
}

/* The batch leaves its destination's requests in flight (under the mutex). */
static void transfer_out(transfer *t)
{
    if (t->fast)
        t->dest->inflight_requests--;
    else
        inflight_remove(t->dest, t->ids, t->count);
}

/* A batch from the ring that will not be acknowledged: have the ingest
 * thread commit its events (no mutex held). */
static herald_claim_next revoke_claim(transfer *t, int timeout_ms)
{
    herald_claim_next next = herald_stage_claim_revoke(t->claim, timeout_ms);
    if (next == HERALD_CLAIM_TAKEN)
        t->claim = NULL; /* the stage's now */
    return next;
}

/* After a revoke (under the mutex): 1 if the events are rows in the queue,
 * now due, whose ids the batch holds to be settled like any other. */
static int claim_in_queue(herald_client *c, transfer *t, herald_claim_next next)
{
    if (next != HERALD_CLAIM_SETTLE)
        return 0;
    t->ids = t->claim->ids;
    if (herald_queue_unmark_fast(c->queue, t->dest->name, t->ids, t->count) != HERALD_OK)
        herald_client_set_error(c, "%s: %s", t->dest->name, herald_queue_errmsg(c->queue));
    return 1;
}

/* The outcome of a request taken from the staging ring (no mutex held). A
 * clean success is left to the ingest thread to count; anything else is
 * settled like a batch from the queue once the ingest thread has committed
 * its events (the claim is revoked). */
static void fast_outcome(herald_client *c, transfer *t, const herald_backend_response *response,
                         const herald_verdict *verdict, const int *event_kinds)
{
    herald_destination_state *d = t->dest;
    int clean = verdict->kind == HERALD_VERDICT_OK;
    for (size_t i = 0; clean && event_kinds && i < t->count; i++)
        clean = event_kinds[i] < 0 || event_kinds[i] == HERALD_VERDICT_OK;
    herald_claim_next next;
    if (clean) {
        herald_stage_ack ack = {
            .requests = response->status > 0,
            .bytes_raw = t->raw_length,
            .bytes_sent = response->status > 0 ? t->sent_length : 0,
            .dropped = verdict->dropped < t->count ? verdict->dropped : t->count,
        };
        next = herald_stage_claim_acked(t->claim, &ack);
        if (next == HERALD_CLAIM_TAKEN)
            t->claim = NULL;
    } else {
        next = revoke_claim(t, HERALD_STAGE_REVOKE_WAIT_MS);
    }
    pthread_mutex_lock(&c->mutex);
    transfer_out(t);
    if (claim_in_queue(c, t, next)) {
        settle_per_event(c, t, response, verdict, event_kinds);
    } else if (clean) {
        d->consecutive_failures = 0;
        if (verdict->dropped)
            herald_log(&c->logger, HERALD_LOG_INFO, "%s: server dropped %u events", d->name,
                       verdict->dropped);
    } else {
        /* The events go through the queue once the ingest thread commits
         * them: back off as for a retry. */
        int64_t now = now_ms(c);
        d->consecutive_failures++;
        d->paused_until_ms =
            now + herald_backoff_delay_ms(d->settings.retry_base_ms, d->settings.retry_max_delay_ms,
                                          d->consecutive_failures,
                                          herald_random_next(&c->random_state));
        herald_client_set_error(c, "%s: %s", d->name, verdict->reason);
    }
    pthread_cond_broadcast(&c->drained);
    pthread_mutex_unlock(&c->mutex);
}

static int reap(herald_client *c)
{
    CURLMsg *msg;
    int left, reaped = 0;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode result = msg->data.result;
        curl_multi_remove_handle(c->multi, t->easy);
        for (transfer **p = &c->transfers; *p; p = &(*p)->next) {
            if (*p == t) {
                *p = t->next;
                break;
            }
        }
        header_lookup lookup = {.t = t};
        herald_backend_response response = {
            .struct_size = sizeof response,
            .body = t->response ? t->response : "", .body_length = t->response_length,
            .header = response_header, .header_context = &lookup,
        };
        if (result == CURLE_OK || (result == CURLE_WRITE_ERROR && t->body_cut)) {
            curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &response.status);
        } else {
            response.transport_error = t->error[0] ? t->error : curl_easy_strerror(result);
            response.body = "";
            response.body_length = 0;
        }
        herald_backend_batch batch = {
            .struct_size = sizeof batch, .count = t->count, .events = t->events,
            .event_lengths = t->lengths, .now_ms = now_ms(c), .attempt = t->attempt,
        };
        herald_verdict verdict;
        memset(&verdict, 0, sizeof verdict);
        verdict.struct_size = sizeof verdict;
        verdict.kind = HERALD_VERDICT_REJECT;
        int *event_kinds = t->count > 1 ? malloc(t->count * sizeof *event_kinds) : NULL;
        if (event_kinds)
            for (size_t i = 0; i < t->count; i++)
                event_kinds[i] = -1;
        verdict.event_kinds = event_kinds;
        t->dest->backend->classify(t->dest->backend_state, &response, &batch, &verdict);
        verdict.reason[sizeof verdict.reason - 1] = '\0';
        /* Nothing the server echoed of our credentials is stored or logged. */
        scrub_secrets(t, verdict.reason);
        if (t->response) {
            scrub_secrets(t, t->response);
            t->response_length = strlen(t->response);
            response.body = t->response;
            response.body_length = t->response_length;
        }
        if (t->fast) {
            fast_outcome(c, t, &response, &verdict, event_kinds);
        } else {
            pthread_mutex_lock(&c->mutex);
            settle_per_event(c, t, &response, &verdict, event_kinds);
            inflight_remove(t->dest, t->ids, t->count);
            pthread_cond_broadcast(&c->drained);
            pthread_mutex_unlock(&c->mutex);
        }
        free(event_kinds);
        transfer_free(t);
        reaped++;
    }
    return reaped;
}

/* ---- scheduling (under the mutex) ---- */

static uint32_t events_per_request(const herald_destination_state *d)
{
    uint32_t n = d->settings.batch_max_events;
    if (d->limits.max_events_per_request && d->limits.max_events_per_request < n)
        n = d->limits.max_events_per_request;
    if (d->split_limit && d->split_limit < n)
        n = d->split_limit;
    return n ? n : 1;
}

/* Room a backend's envelope takes around the events ({"batch":[...],
 * "sentAt":"..."} is under 64 bytes). */
#define ENVELOPE_BYTES 64

static size_t bytes_per_request(const herald_destination_state *d)
{
    size_t n = d->settings.batch_max_bytes;
    if (d->limits.max_request_bytes && d->limits.max_request_bytes < n)
        n = d->limits.max_request_bytes;
    return n > 2 * ENVELOPE_BYTES ? n - ENVELOPE_BYTES : n;
}

/* Keep d's staging lane on while d delivers cleanly: the ingest thread
 * then holds records back for it (staging.h, the fast lane). */
static int lane_healthy(herald_client *c, herald_destination_state *d, int64_t now)
{
    int on = !c->stop && d->paused_until_ms <= now && d->consecutive_failures == 0 &&
             d->split_limit == 0;
    if (c->stage != NULL)
        herald_stage_lane_set(c->stage, (size_t)(d - c->destinations), on);
    return on && c->stage != NULL;
}

/* A batch straight from the staging ring (under the mutex). */
static transfer *fast_batch(herald_client *c, herald_destination_state *d, uint32_t per_request,
                            uint64_t row_commits, int64_t now, int64_t *wake)
{
    herald_stage_batching b = {
        .max_events = per_request, .max_bytes = bytes_per_request(d),
        .max_event_bytes = d->limits.max_event_bytes,
        .flush_interval_ms = d->settings.flush_interval_ms,
        .flushing = c->flush_waiters > 0 || c->stop, .now_ms = now, .row_commits = row_commits,
    };
    herald_stage_claim *claim = NULL;
    if (!herald_stage_take(c->stage, (size_t)(d - c->destinations), &b, &claim, wake))
        return NULL;
    transfer *t = calloc(1, sizeof *t);
    if (t == NULL) {
        if (herald_stage_claim_revoke(claim, 0) != HERALD_CLAIM_TAKEN)
            herald_stage_claim_free(claim);
        return NULL;
    }
    t->dest = d;
    t->claim = claim;
    t->fast = 1;
    t->count = claim->count;
    t->events = claim->events;
    t->lengths = claim->lengths;
    t->attempt = 1;
    d->inflight_requests++;
    return t;
}

/* Pick the next batch of `d` if one is due: from the queue, or, when it
 * holds nothing due for d and d keeps up, from the staging ring. Returns a
 * transfer holding the events (ids marked in flight), or NULL with *wake
 * lowered to when to look again. */
static transfer *next_batch(herald_client *c, herald_destination_state *d, int64_t now,
                            int64_t *wake)
{
    int lane = lane_healthy(c, d, now);
    if (d->paused_until_ms > now) {
        if (d->paused_until_ms < *wake)
            *wake = d->paused_until_ms;
        return NULL;
    }
    uint32_t max_requests = d->limits.max_events_per_request == 1
                                ? d->settings.max_concurrency
                                : d->settings.batch_concurrency;
    if (d->inflight_requests >= max_requests)
        return NULL;
    uint32_t per_request = events_per_request(d);
    uint64_t row_commits = lane ? herald_stage_row_commits(c->stage) : 0;
    herald_queue_row *rows = NULL;
    size_t count = 0;
    if (herald_queue_fetch(c->queue, d->name, now, per_request + d->inflight_count, &rows,
                           &count) != HERALD_OK) {
        herald_client_set_error(c, "%s: reading the queue: %s", d->name,
                                herald_queue_errmsg(c->queue));
        return NULL;
    }
    /* Keep only rows not already in a request, and that the backend can take
     * at all: an event over its limit would fail forever. */
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (is_inflight(d, rows[i].event_id)) {
            free(rows[i].body);
            continue;
        }
        if (d->limits.max_event_bytes && rows[i].length > d->limits.max_event_bytes) {
            char why[160];
            snprintf(why, sizeof why, "event of %zu bytes is over the %s backend's limit of %u",
                     rows[i].length, d->backend->name, d->limits.max_event_bytes);
            herald_settlement dead = {
                .kind = HERALD_SETTLE_DEAD, .event_ids = &rows[i].event_id, .count = 1,
                .now_ms = now, .reason = why,
            };
            if (herald_queue_settle(c->queue, d->name, &dead, NULL, NULL) != HERALD_OK)
                herald_client_set_error(c, "%s: %s", d->name, herald_queue_errmsg(c->queue));
            free(rows[i].body);
            continue;
        }
        rows[kept++] = rows[i];
    }
    count = kept;
    if (count == 0 && lane) {
        transfer *fast = fast_batch(c, d, per_request, row_commits, now, wake);
        if (fast) {
            free(rows);
            return fast;
        }
    }
    if (count == 0) {
        free(rows);
        int64_t next = -1;
        if (herald_queue_next_due(c->queue, d->name, now, &next) == HERALD_OK && next > 0 &&
            next < *wake)
            *wake = next;
        return NULL;
    }
    herald_batch_rules rules = {
        .max_events = per_request, .max_bytes = bytes_per_request(d),
        .flush_interval_ms = d->settings.flush_interval_ms,
        .flushing = c->flush_waiters > 0 || c->stop,
    };
    herald_batch_cut cut = herald_batch_plan(rows, count, &rules, now);
    if (!cut.send_now) {
        if (cut.ready_at_ms < *wake)
            *wake = cut.ready_at_ms;
        herald_queue_rows_free(rows, count);
        return NULL;
    }
    size_t take = cut.take;
    for (size_t i = take; i < count; i++)
        free(rows[i].body);

    transfer *t = calloc(1, sizeof *t);
    if (t == NULL || (t->events = calloc(take, sizeof *t->events)) == NULL ||
        (t->lengths = calloc(take, sizeof *t->lengths)) == NULL ||
        (t->ids = calloc(take, sizeof *t->ids)) == NULL) {
        herald_queue_rows_free(rows, take);
        if (t) {
            free(t->events);
            free(t->lengths);
            free(t);
        }
        return NULL;
    }
    t->dest = d;
    t->rows = rows;
    t->count = take;
    for (size_t i = 0; i < take; i++) {
        t->events[i] = rows[i].body;
        t->lengths[i] = rows[i].length;
        t->ids[i] = rows[i].event_id;
        if (rows[i].attempts + 1 > t->attempt)
            t->attempt = rows[i].attempts + 1;
    }
    if (inflight_add(d, t->ids, take) != 0) {
        transfer_free(t);
        return NULL;
    }
    return t;
}

/* ---- the thread ---- */

static void try_delivery_lock(herald_client *c)
{
    if (c->have_delivery_lock)
        return;
    if (c->lock_fd < 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s.lock", c->db_path);
        c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (c->lock_fd < 0)
            return;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0)
        c->have_delivery_lock = 1;
}

static void *delivery_main(void *arg)
{
    herald_client *c = arg;
    pthread_mutex_lock(&c->mutex);
    while (!c->stop) {
        int64_t now = now_ms(c);
        int64_t wake = now + IDLE_WAKE_MS;
        c->unsignaled = 0;
        try_delivery_lock(c);
        transfer *ready = NULL;
        if (c->have_delivery_lock) {
            for (size_t i = 0; i < c->destination_count; i++) {
                transfer *t;
                while ((t = next_batch(c, &c->destinations[i], now, &wake)) != NULL) {
                    t->next = ready;
                    ready = t;
                }
            }
        }
        if (c->flush_waiters)
            pthread_cond_broadcast(&c->drained);
        pthread_mutex_unlock(&c->mutex);

        /* Encode, compress and start requests without holding the mutex. */
        while (ready) {
            transfer *t = ready;
            ready = t->next;
            char err[256] = "";
            int prepared = transfer_prepare(c, t, now, err, sizeof err);
            if (prepared == 0) {
                t->next = c->transfers;
                c->transfers = t;
                continue;
            }
            /* A batch from the ring is settled once its events are committed. */
            herald_claim_next next =
                t->fast ? revoke_claim(t, HERALD_STAGE_REVOKE_WAIT_MS) : HERALD_CLAIM_SETTLE;
            pthread_mutex_lock(&c->mutex);
            if (!t->fast || claim_in_queue(c, t, next)) {
                if (prepared == HERALD_ENCODE_SKIP)
                    settle_skipped(c, t);
                else
                    settle_unsendable(c, t, err);
            }
            transfer_out(t);
            pthread_cond_broadcast(&c->drained);
            pthread_mutex_unlock(&c->mutex);
            transfer_free(t);
        }

        int running = 0;
        curl_multi_perform(c->multi, &running);
        /* A request that finished frees its destination for the next
         * batch: schedule again at once instead of sleeping. */
        if (reap(c) == 0) {
            int64_t timeout = wake - now_ms(c);
            if (timeout < 0)
                timeout = 0;
            if (timeout > IDLE_WAKE_MS)
                timeout = IDLE_WAKE_MS;
            curl_multi_poll(c->multi, NULL, 0, (int)timeout, NULL);
            curl_multi_perform(c->multi, &running);
            reap(c);
        }
        pthread_mutex_lock(&c->mutex);
    }
    pthread_mutex_unlock(&c->mutex);

    /* Abandon what is in flight: those events stay queued for the next run. */
    while (c->transfers) {
        transfer *t = c->transfers;
        c->transfers = t->next;
        curl_multi_remove_handle(c->multi, t->easy);
        /* From the ring: the stage is closed by now (its events were
         * committed with FAST rows, made due at the next open) or takes
         * them back. */
        if (t->fast)
            revoke_claim(t, 0);
        pthread_mutex_lock(&c->mutex);
        transfer_out(t);
        pthread_mutex_unlock(&c->mutex);
        transfer_free(t);
    }
    return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_ALL);
}

herald_status herald_delivery_start(herald_client *c, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise: %s",
                 curl_easy_strerror(curl_init_result));
        return HERALD_E_BACKEND;
    }
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        snprintf(err, errlen, "libcurl: cannot create a multi handle");
        return HERALD_E_NO_MEMORY;
    }
    /* Concurrency is bounded per destination (max_concurrency), not here. */
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    int rc = pthread_create(&c->thread, NULL, delivery_main, c);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the delivery thread: %s", strerror(rc));
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
        return HERALD_E_NO_MEMORY;
    }
    c->thread_started = 1;
    return HERALD_OK;
}

void herald_delivery_wake(herald_client *c)
{
    if (c->multi)
        curl_multi_wakeup(c->multi);
}

void herald_delivery_stop(herald_client *c)
{
    if (!c->thread_started)
        return;
    pthread_mutex_lock(&c->mutex);
    c->stop = 1;
    pthread_mutex_unlock(&c->mutex);
    herald_delivery_wake(c);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    if (c->lock_fd >= 0) {
        close(c->lock_fd);
        c->lock_fd = -1;
        c->have_delivery_lock = 0;
    }
}
