/* The Matomo backend (work in progress). */
#include <stdio.h>
#include <stdlib.h>

#include "herald/plugin.h"

static int matomo_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                         size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    (void)state;
    snprintf(err, errlen, "matomo: not implemented yet");
    return -1;
}

static void matomo_destroy(void *state)
{
    free(state);
}

static void matomo_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = 100;
}

static int matomo_encode(void *state, const herald_backend_batch *batch,
                         herald_backend_request *out, char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)out;
    snprintf(err, errlen, "matomo: not implemented yet");
    return -1;
}

static void matomo_classify(void *state, const herald_backend_response *response,
                            const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 matomo_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "matomo",
    .create = matomo_create,
    .destroy = matomo_destroy,
    .limits = matomo_limits,
    .encode = matomo_encode,
    .classify = matomo_classify,
};

#ifdef HERALD_PLUGIN_MODULE
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &matomo_backend;
}
#else
const herald_backend_v1 *herald_backend_matomo(void);
const herald_backend_v1 *herald_backend_matomo(void)
{
    return &matomo_backend;
}
#endif
