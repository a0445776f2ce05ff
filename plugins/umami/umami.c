/*
 * The Umami backend (work in progress: a minimal stub so the tree builds).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/plugin.h"

static int umami_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                        size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    (void)state;
    snprintf(err, errlen, "umami: not implemented yet");
    return -1;
}

static void umami_destroy(void *state)
{
    free(state);
}

static void umami_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->max_events_per_request = 1;
}

static int umami_encode(void *state, const herald_backend_batch *batch,
                        herald_backend_request *out, char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)out;
    snprintf(err, errlen, "umami: not implemented yet");
    return -1;
}

static void umami_classify(void *state, const herald_backend_response *response,
                           const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 umami_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "umami",
    .create = umami_create,
    .destroy = umami_destroy,
    .limits = umami_limits,
    .encode = umami_encode,
    .classify = umami_classify,
};

#ifdef HERALD_PLUGIN_MODULE
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &umami_backend;
}
#else
const herald_backend_v1 *herald_backend_umami(void);
const herald_backend_v1 *herald_backend_umami(void)
{
    return &umami_backend;
}
#endif
