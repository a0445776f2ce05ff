#include "context.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <sys/utsname.h>
#include <unistd.h>
#endif
#if defined(__APPLE__)
#include <TargetConditionals.h>
#include <sys/sysctl.h>
#endif

static void copy(char *out, size_t outlen, const char *in, size_t n)
{
    if (outlen == 0)
        return;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

void herald_locale_from_env(const char *lc_all, const char *lc_messages, const char *lang,
                            char *out, size_t outlen)
{
    const char *candidates[] = {lc_all, lc_messages, lang};
    const char *value = NULL;
    for (size_t i = 0; i < 3 && value == NULL; i++)
        if (candidates[i] && candidates[i][0])
            value = candidates[i];
    copy(out, outlen, "", 0);
    if (value == NULL || strcmp(value, "C") == 0 || strcmp(value, "POSIX") == 0 ||
        strncmp(value, "C.", 2) == 0)
        return;
    /* language[_territory][.codeset][@modifier] */
    size_t lang_len = 0;
    while (islower((unsigned char)value[lang_len]) && lang_len < 8)
        lang_len++;
    if (lang_len < 2 || lang_len > 3)
        return;
    const char *p = value + lang_len;
    const char *region = NULL;
    size_t region_len = 0;
    if (*p == '_') {
        region = ++p;
        while (isalnum((unsigned char)p[region_len]) && region_len < 4)
            region_len++;
        if (region_len < 2 || region_len > 3)
            return;
        p += region_len;
    }
    if (*p == '.') {
        p++;
        while (*p && *p != '@')
            p++;
    }
    const char *script = NULL;
    if (*p == '@') {
        /* The modifiers that name a script. */
        if (strcmp(p + 1, "latin") == 0)
            script = "Latn";
        else if (strcmp(p + 1, "cyrillic") == 0)
            script = "Cyrl";
        else if (strcmp(p + 1, "devanagari") == 0)
            script = "Deva";
        p += strlen(p);
    }
    if (*p != '\0')
        return;
    char tag[32];
    size_t n = 0;
    memcpy(tag, value, lang_len);
    n = lang_len;
    if (script)
        n += (size_t)snprintf(tag + n, sizeof tag - n, "-%s", script);
    if (region) {
        tag[n++] = '-';
        for (size_t i = 0; i < region_len; i++)
            tag[n++] = (char)toupper((unsigned char)region[i]);
    }
    tag[n] = '\0';
    copy(out, outlen, tag, n);
}

/* An IANA-looking name: "Area/Location[/Sub]" or "UTC"/"GMT"-like single
 * words; only [A-Za-z0-9_+-/]. */
static int zone_name_valid(const char *name, size_t n)
{
    if (n == 0 || n > 60 || name[0] == '/' || name[n - 1] == '/')
        return 0;
    int slash = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == '/')
            slash = 1;
        else if (!(isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '+'))
            return 0;
    }
    return slash || strncmp(name, "UTC", n) == 0 || strncmp(name, "GMT", n) == 0 ||
           (n == 3 && strncmp(name, "UCT", 3) == 0);
}

/* "…/zoneinfo/Europe/Berlin" -> "Europe/Berlin"; other strings as they are. */
static const char *after_zoneinfo(const char *path)
{
    const char *marker = strstr(path, "zoneinfo/");
    if (marker == NULL)
        return path;
    const char *rest = marker + strlen("zoneinfo/");
    /* posix/ and right/ are alternative trees of the same names. */
    if (strncmp(rest, "posix/", 6) == 0)
        rest += 6;
    else if (strncmp(rest, "right/", 6) == 0)
        rest += 6;
    return rest;
}

void herald_timezone_from(const char *tz_env, const char *localtime_target,
                          const char *timezone_file, char *out, size_t outlen)
{
    copy(out, outlen, "", 0);
    if (tz_env && tz_env[0]) {
        const char *tz = tz_env[0] == ':' ? tz_env + 1 : tz_env;
        tz = after_zoneinfo(tz);
        if (zone_name_valid(tz, strlen(tz))) {
            copy(out, outlen, tz, strlen(tz));
            return;
        }
    }
    if (localtime_target && localtime_target[0]) {
        const char *tz = after_zoneinfo(localtime_target);
        if (tz != localtime_target && zone_name_valid(tz, strlen(tz))) {
            copy(out, outlen, tz, strlen(tz));
            return;
        }
    }
    if (timezone_file) {
        const char *p = timezone_file;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\r\n");
        if (zone_name_valid(p, n))
            copy(out, outlen, p, n);
    }
}

void herald_os_release_parse(const char *text, char *name, size_t namelen, char *version,
                             size_t versionlen)
{
    const char *line = text;
    while (line && *line) {
        size_t n = strcspn(line, "\n");
        struct {
            const char *key;
            char *out;
            size_t outlen;
        } keys[] = {{"NAME=", name, namelen}, {"VERSION_ID=", version, versionlen}};
        for (size_t k = 0; k < 2; k++) {
            size_t klen = strlen(keys[k].key);
            if (n > klen && strncmp(line, keys[k].key, klen) == 0) {
                const char *v = line + klen;
                size_t vlen = n - klen;
                if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
                    v++;
                    vlen -= 2;
                }
                copy(keys[k].out, keys[k].outlen, v, vlen);
            }
        }
        line += n;
        if (*line == '\n')
            line++;
    }
}

const char *herald_device_type_from(int in_container, int has_display)
{
    if (in_container)
        return "container";
    return has_display ? "desktop" : "server";
}

#if !defined(_WIN32)
static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    char *buf = malloc(8192);
    if (buf) {
        size_t n = fread(buf, 1, 8191, f);
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}
#endif

#if !defined(_WIN32)
static int in_container(void)
{
    if (access("/.dockerenv", F_OK) == 0 || access("/run/.containerenv", F_OK) == 0)
        return 1;
    if (getenv("KUBERNETES_SERVICE_HOST") != NULL || getenv("container") != NULL)
        return 1;
    char *cgroup = read_small_file("/proc/1/cgroup");
    int found = cgroup && (strstr(cgroup, "docker") || strstr(cgroup, "kubepods") ||
                           strstr(cgroup, "containerd") || strstr(cgroup, "lxc"));
    free(cgroup);
    return found;
}
#endif

void herald_host_detect(herald_host_info *out)
{
    memset(out, 0, sizeof *out);
#if defined(_WIN32)
    copy(out->os_name, sizeof out->os_name, "Windows", 7);
    const char *arch = getenv("PROCESSOR_ARCHITECTURE");
    if (arch)
        copy(out->arch, sizeof out->arch, arch, strlen(arch));
    copy(out->device_type, sizeof out->device_type, "desktop", 7);
    herald_timezone_from(getenv("TZ"), NULL, NULL, out->timezone, sizeof out->timezone);
#else
    struct utsname u;
    if (uname(&u) == 0) {
        copy(out->os_name, sizeof out->os_name, u.sysname, strlen(u.sysname));
        copy(out->os_version, sizeof out->os_version, u.release, strlen(u.release));
        copy(out->arch, sizeof out->arch, u.machine, strlen(u.machine));
    }
#if defined(__APPLE__)
    /* uname's release is Darwin's; the product version is what users know. */
    copy(out->os_name, sizeof out->os_name, TARGET_OS_IPHONE ? "iOS" : "macOS",
         TARGET_OS_IPHONE ? 3 : 5);
    char product[64];
    size_t product_len = sizeof product;
    if (sysctlbyname("kern.osproductversion", product, &product_len, NULL, 0) == 0 &&
        product_len > 0)
        copy(out->os_version, sizeof out->os_version, product, strnlen(product, product_len));
#else
    char *release = read_small_file("/etc/os-release");
    if (release == NULL)
        release = read_small_file("/usr/lib/os-release");
    if (release)
        herald_os_release_parse(release, out->os_name, sizeof out->os_name, out->os_version,
                                sizeof out->os_version);
    free(release);
#endif

    char link[256] = "";
    ssize_t n = readlink("/etc/localtime", link, sizeof link - 1);
    if (n > 0)
        link[n] = '\0';
    char *zone_file = read_small_file("/etc/timezone");
    herald_timezone_from(getenv("TZ"), n > 0 ? link : NULL, zone_file, out->timezone,
                         sizeof out->timezone);
    free(zone_file);

    const char *type;
#if defined(__ANDROID__) || (defined(__APPLE__) && TARGET_OS_IPHONE)
    type = "mobile";
#elif defined(__APPLE__)
    type = in_container() ? "container" : "desktop";
#else
    type = herald_device_type_from(in_container(), getenv("DISPLAY") != NULL ||
                                                       getenv("WAYLAND_DISPLAY") != NULL);
#endif
    copy(out->device_type, sizeof out->device_type, type, strlen(type));
#endif
    herald_locale_from_env(getenv("LC_ALL"), getenv("LC_MESSAGES"), getenv("LANG"), out->locale,
                           sizeof out->locale);
}

static void set_string(json_t *object, const char *key, const char *value)
{
    if (value && value[0]) {
        json_t *s = json_string(value);
        if (s)
            json_object_set_new(object, key, s);
    }
}

/* Set object[key] to `child` if it has members, else drop it. */
static void set_if_nonempty(json_t *object, const char *key, json_t *child)
{
    if (json_object_size(child) > 0)
        json_object_set_new(object, key, child);
    else
        json_decref(child);
}

json_t *herald_context_snapshot(const herald_host_info *host, const herald_options *opts)
{
    json_t *context = json_object();
    if (context == NULL)
        return NULL;
    json_object_set_new(context, "library",
                        json_pack("{s:s,s:s}", "name", "herald", "version", HERALD_VERSION_STRING));
    json_t *os = json_object();
    set_string(os, "name", host->os_name);
    set_string(os, "version", host->os_version);
    set_if_nonempty(context, "os", os);
    json_t *device = json_object();
    set_string(device, "type", opts->device_type ? opts->device_type : host->device_type);
    set_string(device, "arch", host->arch);
    set_if_nonempty(context, "device", device);
    set_string(context, "locale", host->locale);
    set_string(context, "timezone", host->timezone);
    json_t *app = json_object();
    set_string(app, "name", opts->app_name);
    set_string(app, "version", opts->app_version);
    set_string(app, "build", opts->app_build);
    set_if_nonempty(context, "app", app);
    set_string(context, "userAgent", opts->user_agent);
    return context;
}

void herald_context_merge(json_t *base, json_t *given)
{
    const char *key;
    json_t *value;
    json_object_foreach(given, key, value)
    {
        json_t *existing = json_object_get(base, key);
        if (json_is_object(existing) && json_is_object(value)) {
            json_t *merged = json_copy(existing);
            json_object_update(merged, value);
            json_object_set_new(base, key, merged);
        } else {
            json_object_set(base, key, value);
        }
    }
}
