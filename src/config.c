#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

typedef enum { U32, U64 } number_kind;

typedef struct number_field {
    const char *name;
    size_t offset;
    number_kind kind;
    uint64_t min;
    uint64_t max;
} number_field;

#define OPT(field, kind, lo, hi) {#field, offsetof(herald_options, field), kind, lo, hi}

/* Every numeric option, its range and where it lives. Delivery settings
 * (the last block) may also be overridden per destination. */
static const number_field option_numbers[] = {
    OPT(max_event_bytes, U32, 256, 16u << 20),
    OPT(max_queue_events, U64, 1, UINT64_MAX / 2),
    OPT(max_queue_bytes, U64, 1024, UINT64_MAX / 2),
    OPT(max_dead_letters, U64, 0, UINT64_MAX / 2),
    OPT(batch_max_events, U32, 1, 100000),
    OPT(batch_max_bytes, U32, 1024, 1u << 30),
    OPT(flush_interval_ms, U32, 0, 86400000),
    OPT(retry_base_ms, U32, 1, 86400000),
    OPT(retry_max_delay_ms, U32, 1, 86400000),
    OPT(retry_max_attempts, U32, 1, 1000000),
    OPT(retry_max_age_s, U32, 1, 365u * 86400),
    OPT(connect_timeout_ms, U32, 1, 600000),
    OPT(request_timeout_ms, U32, 1, 3600000),
    OPT(gzip_min_bytes, U32, 0, 1u << 30),
    OPT(max_concurrency, U32, 1, 256),
    OPT(batch_concurrency, U32, 1, 64),
    OPT(staging_bytes, U32, 0, 1u << 30),
    OPT(session_timeout_ms, U32, 1000, 7u * 86400000u),
};
#define FIRST_DELIVERY_FIELD 4

static uint64_t get_number(const void *base, const number_field *f)
{
    const char *p = (const char *)base + f->offset;
    if (f->kind == U32)
        return *(const uint32_t *)(const void *)p;
    return *(const uint64_t *)(const void *)p;
}

static void set_number(void *base, const number_field *f, uint64_t value)
{
    char *p = (char *)base + f->offset;
    if (f->kind == U32)
        *(uint32_t *)(void *)p = (uint32_t)value;
    else
        *(uint64_t *)(void *)p = value;
}

#define DELIVERY_FIELDS_END 16 /* option_numbers[FIRST_DELIVERY_FIELD, END) */

static const number_field *find_number(const char *name, size_t first, size_t end)
{
    for (size_t i = first; i < end; i++)
        if (strcmp(option_numbers[i].name, name) == 0)
            return &option_numbers[i];
    return NULL;
}

static herald_status number_from_json(const number_field *f, json_t *value, uint64_t *out,
                                      char *err, size_t errlen)
{
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        (uint64_t)json_integer_value(value) < f->min ||
        (uint64_t)json_integer_value(value) > f->max) {
        herald_error_format(err, errlen, "\"%s\" must be an integer from %llu to %llu", f->name,
                            (unsigned long long)f->min, (unsigned long long)f->max);
        return HERALD_E_CONFIG;
    }
    *out = (uint64_t)json_integer_value(value);
    return HERALD_OK;
}

herald_status herald_options_check(const herald_options *opts, char *err, size_t errlen)
{
    if (opts->struct_size < sizeof(herald_options)) {
        herald_error_format(err, errlen, "options were not set up with herald_options_init()");
        return HERALD_E_INVALID_ARGUMENT;
    }
    if (opts->db_path == NULL || opts->db_path[0] == '\0') {
        herald_error_format(err, errlen, "db_path is required");
        return HERALD_E_CONFIG;
    }
    for (size_t i = 0; i < sizeof option_numbers / sizeof *option_numbers; i++) {
        const number_field *f = &option_numbers[i];
        uint64_t v = get_number(opts, f);
        if (v < f->min || v > f->max) {
            herald_error_format(err, errlen, "%s must be from %llu to %llu", f->name,
                                (unsigned long long)f->min, (unsigned long long)f->max);
            return HERALD_E_CONFIG;
        }
    }
    if (opts->overflow_policy != HERALD_OVERFLOW_DROP_OLDEST &&
        opts->overflow_policy != HERALD_OVERFLOW_REJECT_NEW) {
        herald_error_format(err, errlen, "overflow_policy is not a herald_overflow_policy");
        return HERALD_E_CONFIG;
    }
    if (opts->durability != HERALD_DURABILITY_PROCESS &&
        opts->durability != HERALD_DURABILITY_POWER) {
        herald_error_format(err, errlen, "durability is not a herald_durability");
        return HERALD_E_CONFIG;
    }
    if (opts->consent_policy != HERALD_CONSENT_HOLD && opts->consent_policy != HERALD_CONSENT_DROP) {
        herald_error_format(err, errlen, "consent_policy is not a herald_consent_policy");
        return HERALD_E_CONFIG;
    }
    if (opts->destination_count > 0 && opts->destinations == NULL) {
        herald_error_format(err, errlen, "destinations is NULL but destination_count is not 0");
        return HERALD_E_CONFIG;
    }
    return HERALD_OK;
}

static int enum_value(const char *text, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    return -1;
}

static herald_status parse_destinations(json_t *list, herald_config_storage *storage, char *err,
                                        size_t errlen)
{
    if (!json_is_array(list)) {
        herald_error_format(err, errlen, "\"destinations\" must be an array");
        return HERALD_E_CONFIG;
    }
    size_t n = json_array_size(list);
    storage->destinations = calloc(n ? n : 1, sizeof *storage->destinations);
    if (storage->destinations == NULL)
        return HERALD_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(list, i);
        if (!json_is_object(item)) {
            herald_error_format(err, errlen, "destinations[%zu] must be an object", i);
            return HERALD_E_CONFIG;
        }
        json_t *copy = json_deep_copy(item);
        json_t *name = json_object_get(copy, "name");
        json_t *backend = json_object_get(copy, "backend");
        if (!json_is_string(name) || (backend != NULL && !json_is_string(backend))) {
            herald_error_format(err, errlen,
                                "destinations[%zu] needs a string \"name\" (and \"backend\")", i);
            json_decref(copy);
            return HERALD_E_CONFIG;
        }
        herald_destination *d = &storage->destinations[i];
        storage->destination_count = i + 1;
        d->name = strdup(json_string_value(name));
        d->backend = strdup(backend ? json_string_value(backend) : "rest");
        json_object_del(copy, "name");
        json_object_del(copy, "backend");
        d->config_json = json_dumps(copy, JSON_COMPACT);
        json_decref(copy);
        if (d->name == NULL || d->backend == NULL || d->config_json == NULL)
            return HERALD_E_NO_MEMORY;
    }
    return HERALD_OK;
}

herald_status herald_config_parse(const char *json, herald_options *opts,
                                  herald_config_storage *storage, char *err, size_t errlen)
{
    static const char *const policies[] = {"drop_oldest", "reject_new"};
    static const char *const durabilities[] = {"process", "power"};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const consent_policies[] = {"hold", "drop"};
    static const char *const string_keys[] = {"app_name", "app_version", "app_build",
                                               "device_type", "user_agent"};
    memset(storage, 0, sizeof *storage);
    if (json == NULL) {
        herald_error_format(err, errlen, "config JSON is NULL");
        return HERALD_E_INVALID_ARGUMENT;
    }
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        herald_error_format(err, errlen, "config: invalid JSON at line %d column %d: %s",
                            jerr.line, jerr.column, jerr.text);
        return HERALD_E_INVALID_JSON;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        herald_error_format(err, errlen, "config must be a JSON object");
        return HERALD_E_CONFIG;
    }
    herald_status st = HERALD_OK;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        const number_field *f = find_number(key, 0, sizeof option_numbers / sizeof *option_numbers);
        int e;
        if (f != NULL) {
            uint64_t v;
            if ((st = number_from_json(f, value, &v, err, errlen)) != HERALD_OK)
                break;
            set_number(opts, f, v);
        } else if (strcmp(key, "db_path") == 0 && json_is_string(value)) {
            free(storage->db_path);
            storage->db_path = strdup(json_string_value(value));
            opts->db_path = storage->db_path;
        } else if (strcmp(key, "overflow_policy") == 0 && json_is_string(value) &&
                   (e = enum_value(json_string_value(value), policies, 2)) >= 0) {
            opts->overflow_policy = (herald_overflow_policy)e;
        } else if (strcmp(key, "durability") == 0 && json_is_string(value) &&
                   (e = enum_value(json_string_value(value), durabilities, 2)) >= 0) {
            opts->durability = (herald_durability)e;
        } else if (strcmp(key, "log_level") == 0 && json_is_string(value) &&
                   (e = enum_value(json_string_value(value), levels, 4)) >= 0) {
            opts->log_level = (herald_log_level)e;
        } else if (strcmp(key, "deliver") == 0 && json_is_boolean(value)) {
            opts->deliver = json_is_true(value);
        } else if (strcmp(key, "redact") == 0 && json_is_object(value)) {
            free(storage->redact_json);
            storage->redact_json = json_dumps(value, JSON_COMPACT);
            opts->redact_json = storage->redact_json;
        } else if (strcmp(key, "session_start_events") == 0 && json_is_boolean(value)) {
            opts->session_start_events = json_is_true(value);
        } else if (strcmp(key, "consent_required") == 0 && json_is_boolean(value)) {
            opts->consent_required = json_is_true(value);
        } else if (strcmp(key, "consent_policy") == 0 && json_is_string(value) &&
                   (e = enum_value(json_string_value(value), consent_policies, 2)) >= 0) {
            opts->consent_policy = (herald_consent_policy)e;
        } else if ((e = enum_value(key, string_keys, 5)) >= 0 && json_is_string(value)) {
            free(storage->strings[e]);
            storage->strings[e] = strdup(json_string_value(value));
            const char **fields[] = {&opts->app_name, &opts->app_version, &opts->app_build,
                                     &opts->device_type, &opts->user_agent};
            *fields[e] = storage->strings[e];
        } else if (strcmp(key, "destinations") == 0) {
            if ((st = parse_destinations(value, storage, err, errlen)) != HERALD_OK)
                break;
            opts->destinations = storage->destinations;
            opts->destination_count = storage->destination_count;
        } else {
            herald_error_format(err, errlen, "config: unknown key or wrong value for \"%s\"", key);
            st = HERALD_E_CONFIG;
            break;
        }
    }
    json_decref(root);
    if (st != HERALD_OK)
        herald_config_free(storage);
    return st;
}

void herald_config_free(herald_config_storage *storage)
{
    for (size_t i = 0; i < storage->destination_count; i++) {
        free((char *)storage->destinations[i].name);
        free((char *)storage->destinations[i].backend);
        free((char *)storage->destinations[i].config_json);
    }
    free(storage->destinations);
    free(storage->db_path);
    for (size_t i = 0; i < 5; i++)
        free(storage->strings[i]);
    free(storage->redact_json);
    memset(storage, 0, sizeof *storage);
}

herald_status herald_destination_settings_parse(const herald_options *opts, const char *config_json,
                                                herald_delivery_settings *out, char **backend_json,
                                                char *err, size_t errlen)
{
    /* Start from the client's defaults: copy the delivery block field by field. */
    herald_options local = *opts;
    memset(out, 0, sizeof *out);
    out->gzip_level = 6;
    *backend_json = NULL;
    json_error_t jerr;
    json_t *config = json_loads(config_json ? config_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(config)) {
        json_decref(config);
        herald_error_format(err, errlen, "config_json must be a JSON object");
        return HERALD_E_CONFIG;
    }
    json_t *remainder = json_object();
    herald_status st = remainder ? HERALD_OK : HERALD_E_NO_MEMORY;
    const char *key;
    json_t *value;
    json_object_foreach(config, key, value)
    {
        if (st != HERALD_OK)
            break;
        const number_field *f = find_number(key, FIRST_DELIVERY_FIELD, DELIVERY_FIELDS_END);
        if (f != NULL) {
            uint64_t v;
            if ((st = number_from_json(f, value, &v, err, errlen)) == HERALD_OK)
                set_number(&local, f, v);
        } else if (strcmp(key, "gzip_level") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > 9) {
                herald_error_format(err, errlen, "\"gzip_level\" must be an integer from 1 to 9");
                st = HERALD_E_CONFIG;
            } else {
                out->gzip_level = (int)json_integer_value(value);
            }
        } else if (strcmp(key, "ca_file") == 0 && json_is_string(value)) {
            /* A missing bundle is a configuration error now, not a TLS
             * failure at every request later. */
            if (access(json_string_value(value), R_OK) != 0) {
                herald_error_format(err, errlen, "ca_file \"%.200s\" cannot be read",
                                    json_string_value(value));
                st = HERALD_E_CONFIG;
                continue;
            }
            free(out->ca_file);
            out->ca_file = strdup(json_string_value(value));
        } else if (strcmp(key, "insecure_skip_tls_verify") == 0 && json_is_boolean(value)) {
            out->insecure_skip_tls_verify = json_is_true(value);
        } else if (json_object_set(remainder, key, value) != 0) {
            st = HERALD_E_NO_MEMORY;
        }
    }
    if (st == HERALD_OK) {
        out->batch_max_events = local.batch_max_events;
        out->batch_max_bytes = local.batch_max_bytes;
        out->flush_interval_ms = local.flush_interval_ms;
        out->retry_base_ms = local.retry_base_ms;
        out->retry_max_delay_ms = local.retry_max_delay_ms;
        out->retry_max_attempts = local.retry_max_attempts;
        out->retry_max_age_s = local.retry_max_age_s;
        out->connect_timeout_ms = local.connect_timeout_ms;
        out->request_timeout_ms = local.request_timeout_ms;
        out->gzip_min_bytes = local.gzip_min_bytes;
        out->max_concurrency = local.max_concurrency;
        out->batch_concurrency = local.batch_concurrency;
        *backend_json = json_dumps(remainder, JSON_COMPACT);
        if (*backend_json == NULL)
            st = HERALD_E_NO_MEMORY;
    }
    json_decref(remainder);
    json_decref(config);
    if (st != HERALD_OK)
        herald_delivery_settings_free(out);
    return st;
}

void herald_delivery_settings_free(herald_delivery_settings *settings)
{
    free(settings->ca_file);
    settings->ca_file = NULL;
}
