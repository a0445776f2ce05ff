/*
 * Context enrichment: what the host is (OS, arch, locale, timezone, device
 * type), detected once per client, and the static part of every event's
 * "context" built from it and the options. The detection helpers are pure
 * functions of their inputs so tests can feed any machine.
 */
#ifndef HERALD_CONTEXT_H
#define HERALD_CONTEXT_H

#include <jansson.h>
#include <stddef.h>

#include "herald/herald.h"

typedef struct herald_host_info {
    char os_name[64];     /* "Debian GNU/Linux", "macOS", "Windows", or uname sysname */
    char os_version[64];  /* "12", or uname release */
    char arch[32];        /* uname machine: "x86_64", "aarch64" */
    char locale[64];      /* BCP 47: "de-DE"; "" when unknown or C/POSIX */
    char timezone[64];    /* IANA name: "Europe/Berlin"; "" when unknown */
    char device_type[16]; /* "desktop", "server", "container", "mobile" */
} herald_host_info;

/* Detect this machine (reads the environment, /etc/os-release, uname,
 * /etc/localtime, /etc/timezone, container markers). Never fails: unknown
 * fields are left empty. */
void herald_host_detect(herald_host_info *out);

/* BCP 47 from POSIX locale variables, first non-empty of LC_ALL, LC_MESSAGES,
 * LANG (each may be NULL): "de_DE.UTF-8" -> "de-DE", "sr_RS@latin" ->
 * "sr-Latn-RS", "pt_BR" -> "pt-BR", "en" -> "en". "C", "POSIX" and malformed
 * values give "". */
void herald_locale_from_env(const char *lc_all, const char *lc_messages, const char *lang,
                            char *out, size_t outlen);

/* IANA zone name from, in order: TZ (may be NULL; ":Europe/Paris", a path
 * under a zoneinfo directory, or a name with a '/' or "UTC"), the target of the
 * /etc/localtime link (may be NULL), the contents of /etc/timezone (may be
 * NULL). "" when none yields a name. */
void herald_timezone_from(const char *tz_env, const char *localtime_target,
                          const char *timezone_file, char *out, size_t outlen);

/* NAME and VERSION_ID of an os-release file's text (quotes removed). Leaves
 * the outputs untouched for keys that are absent. */
void herald_os_release_parse(const char *text, char *name, size_t namelen, char *version,
                             size_t versionlen);

/* Device type from observations: "container" when in a container, else
 * "desktop" when a display is present, else "server". Mobile platforms are
 * decided at compile time by herald_host_detect. */
const char *herald_device_type_from(int in_container, int has_display);

/* The static context object for every event of a client:
 * {"library": {"name": "herald", "version"}, "os": {"name", "version"},
 *  "device": {"type", "arch"}, "locale", "timezone",
 *  "app": {"name", "version", "build"} (when given in options),
 *  "userAgent" (when given in options)}.
 * Empty host fields are omitted; opts->device_type overrides detection.
 * Returns a new reference, or NULL if out of memory. */
json_t *herald_context_snapshot(const herald_host_info *host, const herald_options *opts);

/* Merge `given` (a caller's context object) over `base` (modified in place):
 * objects present in both are merged one level deep ("app": {"version"}
 * replaces only the version), other values replace. */
void herald_context_merge(json_t *base, json_t *given);

#endif
