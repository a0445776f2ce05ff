/* libFuzzer target for configuration: the input (NUL-terminated, as
 * herald_open_json receives it)
 *   - as client options: herald_config_parse into herald_options_init's
 *     defaults, herald_options_check, the redactor from its "redact" object,
 *     and every destination as below, then herald_config_free;
 *   - as one destination's config_json: herald_destination_settings_parse
 *     with the default options, and each built-in backend's create() on the
 *     remaining keys (a destination of the client options gets its named
 *     backend, resolved by herald_backend_load, built-ins only);
 *   - as a backend config: each built-in backend's create() on the input.
 * A backend that accepts a config is then asked for its limits and encodes
 * the fixed events of fuzz_backends.h, and is destroyed. Besides crashes and
 * leaks it traps on broken promises of config.h and plugin.h: a failed parse
 * that leaves storage behind or says nothing, parsed options that
 * herald_options_check refuses (but for a missing db_path), delivery settings
 * out of their ranges, delivery keys passed on to the backend, a malformed
 * request (fuzz_check_encode). See docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "config.h"
#include "fuzz_backends.h"
#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Backend names resolve to built-ins only: never load a plugin. */
    unsetenv("HERALD_PLUGIN_PATH");
    return 0;
}

static void check_error(const char *err, size_t errlen)
{
    CHECK(memchr(err, '\0', errlen) != NULL && err[0] != '\0');
}

/* A backend that took a config: limits, then encode the fixed events alone
 * and (where it takes more than one per request) together. */
static void exercise(const herald_backend_v1 *vt, void *state)
{
    herald_backend_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.struct_size = sizeof lim;
    vt->limits(state, &lim);
    size_t lengths[FUZZ_EVENT_COUNT];
    for (size_t i = 0; i < FUZZ_EVENT_COUNT; i++) {
        herald_backend_batch batch = fuzz_batch(&fuzz_events[i], lengths, 1);
        fuzz_check_encode(vt, state, &batch, NULL);
    }
    if (lim.max_events_per_request != 1) {
        herald_backend_batch batch = fuzz_batch(fuzz_events, lengths, FUZZ_EVENT_COUNT);
        fuzz_check_encode(vt, state, &batch, NULL);
    }
}

static void try_create(const herald_backend_v1 *vt, const char *config_json)
{
    void *state = NULL;
    char err[256];
    memset(err, 'x', sizeof err);
    err[0] = '\0';
    int rc = vt->create(config_json, HERALD_PLUGIN_ABI_VERSION, &state, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        check_error(err, sizeof err);
        return;
    }
    exercise(vt, state);
    vt->destroy(state);
}

/* A destination's backend as herald_open resolves it, built-ins only: a
 * path (or a name to look up in HERALD_PLUGIN_PATH, which is unset) is never
 * loaded. */
static const herald_backend_v1 *builtin(const char *name)
{
    if (strchr(name, '/') != NULL)
        return NULL;
    herald_backend_handle handle;
    char err[256];
    if (herald_backend_load(name, &handle, NULL, err, sizeof err) != HERALD_OK) {
        check_error(err, sizeof err);
        return NULL;
    }
    CHECK(handle.library == NULL && strcmp(handle.vt->name, name) == 0);
    return handle.vt;
}

/* The option ranges of config.c's table, for the delivery block. */
static void check_settings(const herald_delivery_settings *s)
{
    CHECK(s->batch_max_events >= 1 && s->batch_max_events <= 100000);
    CHECK(s->batch_max_bytes >= 1024 && s->batch_max_bytes <= (1u << 30));
    CHECK(s->flush_interval_ms <= 86400000);
    CHECK(s->retry_base_ms >= 1 && s->retry_base_ms <= 86400000);
    CHECK(s->retry_max_delay_ms >= 1 && s->retry_max_delay_ms <= 86400000);
    CHECK(s->retry_max_attempts >= 1 && s->retry_max_attempts <= 1000000);
    CHECK(s->retry_max_age_s >= 1 && s->retry_max_age_s <= 365u * 86400);
    CHECK(s->connect_timeout_ms >= 1 && s->connect_timeout_ms <= 600000);
    CHECK(s->request_timeout_ms >= 1 && s->request_timeout_ms <= 3600000);
    CHECK(s->gzip_min_bytes <= (1u << 30));
    CHECK(s->max_concurrency >= 1 && s->max_concurrency <= 256);
    CHECK(s->gzip_level >= 1 && s->gzip_level <= 9);
    CHECK(s->insecure_skip_tls_verify == 0 || s->insecure_skip_tls_verify == 1);
}

/* One destination's config_json: delivery settings, then the backend (the
 * named built-in, or every built-in when backend is NULL) on the rest. */
static void destination(const herald_options *opts, const char *backend, const char *config_json)
{
    herald_delivery_settings settings;
    char *backend_json = (char *)(uintptr_t)1;
    char err[256];
    memset(err, 'x', sizeof err);
    err[0] = '\0';
    herald_status st = herald_destination_settings_parse(opts, config_json, &settings,
                                                         &backend_json, err, sizeof err);
    if (st != HERALD_OK) {
        CHECK(st == HERALD_E_CONFIG);
        CHECK(backend_json == NULL && settings.ca_file == NULL);
        check_error(err, sizeof err);
        return;
    }
    check_settings(&settings);
    CHECK(backend_json != NULL);
    json_t *rest = json_loads(backend_json, JSON_REJECT_DUPLICATES, NULL);
    CHECK(json_is_object(rest));
    /* The keys the delivery settings refuse when mistyped stay with them. */
    static const char *const delivery_keys[] = {
        "batch_max_events", "batch_max_bytes", "flush_interval_ms", "retry_base_ms",
        "retry_max_delay_ms", "retry_max_attempts", "retry_max_age_s", "connect_timeout_ms",
        "request_timeout_ms", "gzip_min_bytes", "max_concurrency", "gzip_level"};
    for (size_t i = 0; i < sizeof delivery_keys / sizeof *delivery_keys; i++)
        CHECK(json_object_get(rest, delivery_keys[i]) == NULL);
    json_decref(rest);
    if (backend != NULL) {
        const herald_backend_v1 *vt = builtin(backend);
        if (vt != NULL)
            try_create(vt, backend_json);
    } else {
        for (size_t i = 0; i < FUZZ_BUILTIN_COUNT; i++)
            try_create(fuzz_builtins[i].get(), backend_json);
    }
    herald_delivery_settings_free(&settings);
    free(backend_json);
}

static int storage_empty(const herald_config_storage *storage)
{
    herald_config_storage zero;
    memset(&zero, 0, sizeof zero);
    return memcmp(storage, &zero, sizeof zero) == 0;
}

static void client_options(const char *text)
{
    herald_options opts;
    CHECK(herald_options_init(&opts) == HERALD_OK);
    herald_config_storage storage;
    char err[256];
    memset(err, 'x', sizeof err);
    err[0] = '\0';
    herald_status st = herald_config_parse(text, &opts, &storage, err, sizeof err);
    if (st != HERALD_OK) {
        CHECK(st == HERALD_E_CONFIG || st == HERALD_E_INVALID_JSON);
        CHECK(storage_empty(&storage));
        check_error(err, sizeof err);
        return;
    }
    /* Parsing checks ranges and enums as herald_options_check does: what
     * parsed is accepted, but for the required db_path. */
    err[0] = '\0';
    herald_status checked = herald_options_check(&opts, err, sizeof err);
    int has_db_path = opts.db_path != NULL && opts.db_path[0] != '\0';
    CHECK((checked == HERALD_OK) == has_db_path);
    if (checked != HERALD_OK)
        check_error(err, sizeof err);

    if (opts.redact_json != NULL) {
        herald_redactor *redactor = NULL;
        char rerr[256] = "";
        if (herald_redactor_create(opts.redact_json, &redactor, rerr, sizeof rerr) == HERALD_OK)
            herald_redactor_free(redactor);
        else
            check_error(rerr, sizeof rerr);
    }
    CHECK(opts.destination_count == storage.destination_count);
    for (size_t i = 0; i < opts.destination_count; i++) {
        const herald_destination *d = &opts.destinations[i];
        CHECK(d->name != NULL && d->backend != NULL && d->config_json != NULL);
        destination(&opts, d->backend, d->config_json);
    }
    herald_config_free(&storage);
    CHECK(storage_empty(&storage));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    client_options(text);

    herald_options defaults;
    CHECK(herald_options_init(&defaults) == HERALD_OK);
    destination(&defaults, NULL, text);

    for (size_t i = 0; i < FUZZ_BUILTIN_COUNT; i++)
        try_create(fuzz_builtins[i].get(), text);

    free(text);
    return 0;
}
