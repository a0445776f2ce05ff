/* Deliberately broken plugins for the loader's tests: one source, built once
 * per BROKEN_KIND (see meson.build). Each but the last must be refused at
 * herald_open with a clear message, never loaded into a crash later; the last
 * loads, and cannot encode any batch. */
#include <herald/plugin.h>
#include <stdio.h>
#include <string.h>

#define ABI_MISMATCH 1
#define NO_ENTRY 2
#define NULL_FUNCTION 3
#define CREATE_FAILS 4
#define WRONG_NAME 5
#define ENCODE_FAILS 6

static int create(const char *config_json, uint32_t core_abi, void **state, char *err,
                  size_t errlen)
{
    (void)config_json;
    (void)core_abi;
    *state = NULL;
#if BROKEN_KIND == CREATE_FAILS
    snprintf(err, errlen, "broken: refuses to start");
    return -1;
#else
    (void)err;
    (void)errlen;
    return 0;
#endif
}

static void destroy(void *state)
{
    (void)state;
}

static void limits(const void *state, herald_backend_limits *out)
{
    (void)state;
    (void)out;
}

static int encode(void *state, const herald_backend_batch *batch, herald_backend_request *out,
                  char *err, size_t errlen)
{
    (void)state;
    (void)out;
    snprintf(err, errlen, "broken: cannot encode %zu events", batch->count);
    return -1;
}

static void classify(void *state, const herald_backend_response *response,
                     const herald_backend_batch *batch, herald_verdict *out)
{
    (void)state;
    (void)batch;
    herald_verdict_from_status(response, out);
}

static const herald_backend_v1 backend = {
#if BROKEN_KIND == ABI_MISMATCH
    .abi_version = 99,
#else
    .abi_version = HERALD_PLUGIN_ABI_VERSION,
#endif
    .struct_size = sizeof(herald_backend_v1),
#if BROKEN_KIND == WRONG_NAME
    .name = "impostor",
#else
    .name = BROKEN_NAME,
#endif
    .create = create,
    .destroy = destroy,
    .limits = limits,
    .encode = encode,
#if BROKEN_KIND == NULL_FUNCTION
    .classify = NULL,
#else
    .classify = classify,
#endif
};

#if BROKEN_KIND == NO_ENTRY
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry(void);
const herald_backend_v1 *herald_backend_entry(void) /* the wrong name */
#else
__attribute__((visibility("default"))) const herald_backend_v1 *herald_backend_entry_v1(void);
const herald_backend_v1 *herald_backend_entry_v1(void)
#endif
{
    (void)classify;
    return &backend;
}
