/*
 * The Plausible backend (work in progress).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/plugin.h"

static int plausible_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                            size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    (void)state;
    snprintf(err, errlen, "plausible: not implemented yet");
    return -1;
}

static void plausible_destroy(void *state)
{
    free(state);
}

static void plausible_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = 1;
    out->max_request_bytes = 0;
    out->max_event_bytes = 0;
    out->accepts_gzip = 0;
    out->max_concurrency = 0;
}

static int plausible_encode(void *state, const herald_backend_batch *batch,
                            herald_backend_request *out, char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)out;
    snprintf(err, errlen, "plausible: not implemented yet");
    return -1;
}

static void plausible_classify(void *state, const herald_backend_response *response,
                               const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 plausible_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "plausible",
    .create = plausible_create,
    .destroy = plausible_destroy,
    .limits = plausible_limits,
    .encode = plausible_encode,
    .classify = plausible_classify,
};

#ifdef HERALD_PLUGIN_MODULE
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &plausible_backend;
}
#else
const herald_backend_v1 *herald_backend_plausible(void);
const herald_backend_v1 *herald_backend_plausible(void)
{
    return &plausible_backend;
}
#endif
