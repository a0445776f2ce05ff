/* The posthog backend (work in progress). */
#include <stdio.h>
#include <stdlib.h>

#include "herald/plugin.h"

static int posthog_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                       size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    (void)state;
    snprintf(err, errlen, "posthog: not implemented yet");
    return -1;
}

static void posthog_destroy(void *state)
{
    free(state);
}

static void posthog_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    (void)out;
}

static int posthog_encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                       char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)out;
    snprintf(err, errlen, "posthog: not implemented yet");
    return -1;
}

static void posthog_classify(void *state, const herald_backend_response *response,
                          const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 posthog_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "posthog",
    .create = posthog_create,
    .destroy = posthog_destroy,
    .limits = posthog_limits,
    .encode = posthog_encode,
    .classify = posthog_classify,
};

#ifdef HERALD_PLUGIN_MODULE
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &posthog_backend;
}
#else
const herald_backend_v1 *herald_backend_posthog(void);
const herald_backend_v1 *herald_backend_posthog(void)
{
    return &posthog_backend;
}
#endif
