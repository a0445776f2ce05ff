#include "backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const herald_backend_v1 *builtin(const char *name)
{
    const herald_backend_v1 *builtins[] = {
        herald_backend_rest(),    herald_backend_plausible(), herald_backend_umami(),
        herald_backend_segment(), herald_backend_posthog(),   herald_backend_matomo(),
        herald_backend_clickhouse(),
    };
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (strcmp(builtins[i]->name, name) == 0)
            return builtins[i];
    return NULL;
}

/* Check what a plugin's entry point returned before trusting any of it. */
static herald_status check_vtable(const herald_backend_v1 *vt, const char *from, char *err,
                                  size_t errlen)
{
    if (vt == NULL) {
        herald_error_format(err, errlen, "%s: herald_backend_entry_v1() returned NULL", from);
        return HERALD_E_CONFIG;
    }
    if (vt->abi_version != HERALD_PLUGIN_ABI_VERSION) {
        herald_error_format(err, errlen,
                            "%s: built for plugin ABI version %u, this herald speaks version %d",
                            from, vt->abi_version, HERALD_PLUGIN_ABI_VERSION);
        return HERALD_E_CONFIG;
    }
    if (vt->struct_size < sizeof(herald_backend_v1)) {
        herald_error_format(err, errlen, "%s: backend struct of %u bytes, expected at least %zu",
                            from, vt->struct_size, sizeof(herald_backend_v1));
        return HERALD_E_CONFIG;
    }
    if (vt->name == NULL || vt->create == NULL || vt->destroy == NULL || vt->limits == NULL ||
        vt->encode == NULL || vt->classify == NULL) {
        herald_error_format(err, errlen, "%s: a required backend function or the name is NULL",
                            from);
        return HERALD_E_CONFIG;
    }
    return HERALD_OK;
}

static herald_status load_file(const char *path, herald_backend_handle *out, char *err,
                               size_t errlen)
{
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *why = dlerror();
        herald_error_format(err, errlen, "cannot load plugin %s: %s", path, why ? why : "dlopen failed");
        return HERALD_E_CONFIG;
    }
    herald_backend_entry_v1_fn entry;
    /* POSIX: a data pointer from dlsym converts to a function pointer. */
    *(void **)(&entry) = dlsym(library, HERALD_BACKEND_ENTRY_V1);
    if (entry == NULL) {
        herald_error_format(err, errlen, "plugin %s has no %s symbol", path,
                            HERALD_BACKEND_ENTRY_V1);
        dlclose(library);
        return HERALD_E_CONFIG;
    }
    const herald_backend_v1 *vt = entry();
    herald_status st = check_vtable(vt, path, err, errlen);
    if (st != HERALD_OK) {
        dlclose(library);
        return st;
    }
    out->vt = vt;
    out->library = library;
    return HERALD_OK;
}

static int name_valid(const char *name)
{
    if (*name == '\0' || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

herald_status herald_backend_load(const char *spec, herald_backend_handle *out,
                                  const herald_logger *logger, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (spec == NULL || *spec == '\0') {
        herald_error_format(err, errlen, "unknown backend \"\": a destination needs one");
        return HERALD_E_CONFIG;
    }
    if (strchr(spec, '/') != NULL) {
        if (spec[0] != '/') {
            herald_error_format(err, errlen,
                                "plugin path \"%s\" must be absolute: relative paths would load "
                                "code from the working directory",
                                spec);
            return HERALD_E_CONFIG;
        }
        return load_file(spec, out, err, errlen);
    }
    if ((out->vt = builtin(spec)) != NULL)
        return HERALD_OK;
    if (!name_valid(spec)) {
        herald_error_format(err, errlen, "unknown backend \"%.64s\"", spec);
        return HERALD_E_CONFIG;
    }
    const char *path_list = getenv("HERALD_PLUGIN_PATH");
    if (path_list != NULL) {
        char *copy = strdup(path_list);
        if (copy == NULL)
            return HERALD_E_NO_MEMORY;
        char *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            if (dir[0] != '/') {
                herald_log(logger, HERALD_LOG_WARN,
                           "HERALD_PLUGIN_PATH entry \"%s\" is not absolute: ignored", dir);
                continue;
            }
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/herald-backend-%s.so", dir, spec);
            if (access(path, F_OK) != 0)
                continue;
            herald_status st = load_file(path, out, err, errlen);
            if (st == HERALD_OK && strcmp(out->vt->name, spec) != 0) {
                herald_error_format(err, errlen, "plugin %s calls itself \"%s\", not \"%s\"", path,
                                    out->vt->name, spec);
                herald_backend_unload(out);
                st = HERALD_E_CONFIG;
            }
            free(copy);
            return st;
        }
        free(copy);
    }
    herald_error_format(err, errlen,
                        "unknown backend \"%s\": not built in, and no herald-backend-%s.so in "
                        "HERALD_PLUGIN_PATH",
                        spec, spec);
    return HERALD_E_CONFIG;
}

void herald_backend_unload(herald_backend_handle *handle)
{
    if (handle->library)
        dlclose(handle->library);
    handle->library = NULL;
    handle->vt = NULL;
}

/* ---- helpers exported to backends (plugin.h) ---- */

void *herald_alloc(size_t size)
{
    return malloc(size ? size : 1);
}

void herald_format_timestamp_ms(int64_t unix_ms, char *buf, size_t buflen)
{
    time_t seconds = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char text[64];
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(unix_ms % 1000));
    snprintf(buf, buflen, "%s", text);
}

void herald_verdict_from_status(const herald_backend_response *response, herald_verdict *out)
{
    long status = response->status;
    out->dropped = 0;
    if (status == 0) {
        out->kind = HERALD_VERDICT_RETRY;
        snprintf(out->reason, sizeof out->reason, "no response: %s",
                 response->transport_error ? response->transport_error : "transport failure");
        return;
    }
    if (status >= 200 && status < 300) {
        out->kind = HERALD_VERDICT_OK;
        snprintf(out->reason, sizeof out->reason, "HTTP %ld", status);
        return;
    }
    if (status == 413)
        out->kind = HERALD_VERDICT_SPLIT;
    else if (status == 408 || status == 429 || status >= 500)
        out->kind = HERALD_VERDICT_RETRY;
    else
        out->kind = HERALD_VERDICT_REJECT;
    /* Keep the first line of the body, printable ASCII only: it says why. */
    char excerpt[160];
    size_t n = 0;
    for (size_t i = 0; response->body && i < response->body_length && n + 1 < sizeof excerpt; i++) {
        char ch = response->body[i];
        if (ch == '\n' || ch == '\r')
            break;
        excerpt[n++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    excerpt[n] = '\0';
    snprintf(out->reason, sizeof out->reason, "HTTP %ld%s%s", status, n ? ": " : "", excerpt);
}
