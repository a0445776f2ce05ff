/* The ClickHouse backend (work in progress). */
#include <stdio.h>
#include <string.h>

#include "herald/plugin.h"

static int ch_create(const char *config_json, uint32_t core_abi, void **state, char *err,
                     size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    (void)state;
    snprintf(err, errlen, "clickhouse: not implemented yet");
    return -1;
}

static void ch_destroy(void *state)
{
    (void)state;
}

static void ch_limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    out->accepts_gzip = 1;
}

static int ch_encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                     char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)out;
    snprintf(err, errlen, "clickhouse: not implemented yet");
    return -1;
}

static void ch_classify(void *state, const herald_backend_response *response,
                        const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 clickhouse_backend = {
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(herald_backend_v1),
    .name = "clickhouse",
    .create = ch_create,
    .destroy = ch_destroy,
    .limits = ch_limits,
    .encode = ch_encode,
    .classify = ch_classify,
};

#ifdef HERALD_PLUGIN_MODULE
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
{
    return &clickhouse_backend;
}
#else
const herald_backend_v1 *herald_backend_clickhouse(void);
const herald_backend_v1 *herald_backend_clickhouse(void)
{
    return &clickhouse_backend;
}
#endif
