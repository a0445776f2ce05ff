/*
 * A third-party herald backend, built out of tree against the installed
 * headers (pkg-config herald): posts each event as a chat message to an
 * incoming webhook (Slack, Mattermost, Discord's /slack endpoint, ...):
 *
 *   {"text": "track Signed Up — user-42 {\"plan\":\"pro\"}"}
 *
 * Destination config:
 *   {"name": "alerts", "backend": "/usr/lib/herald/herald-backend-webhook.so",
 *    "url": "https://hooks.example.com/services/T000/B000/XXXX",
 *    "prefix": ":bell: "}
 * Pick which events reach it per call with Segment's integrations object:
 *   {"integrations": {"All": false, "alerts": true}}
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <herald/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct webhook {
    char *url;
    char *prefix;
} webhook;

static void webhook_destroy(void *state)
{
    webhook *w = state;
    if (w == NULL)
        return;
    free(w->url);
    free(w->prefix);
    free(w);
}

static int webhook_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                          size_t errlen)
{
    (void)core_abi;
    json_error_t jerr;
    json_t *config = json_loads(config_json, 0, &jerr);
    webhook *w = calloc(1, sizeof *w);
    const char *key;
    json_t *value;
    int ok = config != NULL && w != NULL;
    json_object_foreach(config, key, value)
    {
        if (strcmp(key, "url") == 0 && json_is_string(value) &&
            strncmp(json_string_value(value), "http", 4) == 0) {
            w->url = strdup(json_string_value(value));
        } else if (strcmp(key, "prefix") == 0 && json_is_string(value)) {
            w->prefix = strdup(json_string_value(value));
        } else {
            snprintf(err, errlen, "webhook: unknown or invalid setting \"%s\"", key);
            ok = 0;
        }
    }
    json_decref(config);
    if (ok && (w->url == NULL)) {
        snprintf(err, errlen, "webhook: \"url\" (http or https) is required");
        ok = 0;
    }
    if (!ok) {
        webhook_destroy(w);
        return -1;
    }
    *state = w;
    return 0;
}

static void webhook_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = 1; /* one message per event */
    out->max_request_bytes = 0;
    out->max_event_bytes = 0;
    out->accepts_gzip = 0;
    out->max_concurrency = 2; /* chat webhooks rate-limit: stay gentle */
}

static int webhook_encode(void *state, const herald_backend_batch *batch,
                          herald_backend_request *out, char *err, size_t errlen)
{
    webhook *w = state;
    json_t *event = json_loadb(batch->events[0], batch->event_lengths[0], 0, NULL);
    if (event == NULL) {
        snprintf(err, errlen, "webhook: stored event is not JSON");
        return -1;
    }
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *what = json_string_value(json_object_get(event, "event"));
    if (what == NULL)
        what = json_string_value(json_object_get(event, "name"));
    const char *who = json_string_value(json_object_get(event, "userId"));
    if (who == NULL)
        who = json_string_value(json_object_get(event, "anonymousId"));
    json_t *details = json_object_get(event, "properties");
    if (details == NULL)
        details = json_object_get(event, "traits");
    char *details_text = details ? json_dumps(details, JSON_COMPACT) : NULL;
    char text[2048];
    snprintf(text, sizeof text, "%s%s %s — %s %s", w->prefix ? w->prefix : "",
             type ? type : "event", what ? what : "", who ? who : "someone",
             details_text ? details_text : "{}");
    free(details_text);
    json_decref(event);

    json_t *message = json_pack("{s:s}", "text", text);
    char *body = message ? json_dumps(message, JSON_COMPACT) : NULL;
    json_decref(message);
    if (body == NULL) {
        snprintf(err, errlen, "webhook: out of memory");
        return -1;
    }
    /* Buffers handed to the core come from the core's allocator. */
    out->url = w->url;
    out->body = herald_strdup(body);
    out->body_length = strlen(body);
    out->headers = herald_strdup("Content-Type: application/json");
    free(body);
    return out->body && out->headers ? 0 : -1;
}

static void webhook_classify(void *state, const herald_backend_response *response,
                             const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 webhook_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "webhook",
    .create = webhook_create,
    .destroy = webhook_destroy,
    .limits = webhook_limits,
    .encode = webhook_encode,
    .classify = webhook_classify,
};

__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &webhook_backend;
}
