/* Options from JSON, and per-destination delivery settings. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>

#include "client.h"
#include "herald/herald.h"

/* Strings that parsed options point into; released with herald_config_free. */
typedef struct herald_config_storage {
    char *db_path;
    char *strings[5]; /* app_name, app_version, app_build, device_type, user_agent */
    char *redact_json;
    herald_destination *destinations;
    size_t destination_count;
} herald_config_storage;

/* Apply the keys of a JSON object to *opts (already holding defaults).
 * String fields of *opts point into *storage afterwards. Unknown keys and
 * wrong types are errors (HERALD_E_CONFIG, or HERALD_E_INVALID_JSON). */
herald_status herald_config_parse(const char *json, herald_options *opts,
                                  herald_config_storage *storage, char *err, size_t errlen);
void herald_config_free(herald_config_storage *storage);

/* Check an options struct: ranges, required fields. */
herald_status herald_options_check(const herald_options *opts, char *err, size_t errlen);

/* Split a destination's config_json: delivery settings (defaults from opts)
 * go to *out; the remaining keys are returned as *backend_json (malloc'ed)
 * for the backend's create(). */
herald_status herald_destination_settings_parse(const herald_options *opts, const char *config_json,
                                                herald_delivery_settings *out, char **backend_json,
                                                char *err, size_t errlen);
void herald_delivery_settings_free(herald_delivery_settings *settings);

#endif
