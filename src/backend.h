/* Backends inside the core: the built-in registry and the plugin loader.
 * The interface itself is public: include/herald/plugin.h. */
#ifndef HERALD_BACKEND_H
#define HERALD_BACKEND_H

#include <stddef.h>

#include "herald/plugin.h"
#include "log.h"

/* Built-in backends (plugins/<name>/), registered statically. */
const herald_backend_v1 *herald_backend_rest(void);
const herald_backend_v1 *herald_backend_plausible(void);
const herald_backend_v1 *herald_backend_umami(void);
const herald_backend_v1 *herald_backend_segment(void);
const herald_backend_v1 *herald_backend_posthog(void);
const herald_backend_v1 *herald_backend_matomo(void);
const herald_backend_v1 *herald_backend_clickhouse(void);

/* A backend in use: its vtable, and the shared object it came from (NULL for
 * a built-in). */
typedef struct herald_backend_handle {
    const herald_backend_v1 *vt;
    void *library;
} herald_backend_handle;

/* Resolve a destination's "backend": a built-in name; an absolute path to a
 * shared object; or a name looked up as herald-backend-<name>.so in the
 * absolute directories of HERALD_PLUGIN_PATH (relative entries are ignored,
 * with a warning). The plugin's ABI version, struct size and required
 * functions are checked. Returns HERALD_OK, or HERALD_E_CONFIG with a
 * message in err. */
herald_status herald_backend_load(const char *spec, herald_backend_handle *out,
                                  const herald_logger *logger, char *err, size_t errlen);
void herald_backend_unload(herald_backend_handle *handle);

#endif
