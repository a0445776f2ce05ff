/*
 * herald-emit — building the client configuration and opening the client.
 *
 * The configuration is one JSON object with the keys herald_open_json()
 * takes: it starts as the --config file (or {}), and the command line and
 * environment are layered on top (flags beat env, env beats the file, the
 * file beats the defaults).
 *
 * The client is opened with herald_open_json_ex(): the JSON carries every
 * setting, and base options carry the log callback that -v/-vv need.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */
/* ------------------------------------------------------------------------ */

static int is_token_char(unsigned char c)
{
    /* RFC 9110 tchar */
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int header_parse(const char *line, char **name, char **value, const char **why)
{
    const char *colon = strchr(line, ':');
    if (!colon) {
        *why = "expected 'Name: value'";
        return -1;
    }
    const char *ns = line, *ne = colon;
    while (ns < ne && (*ns == ' ' || *ns == '\t'))
        ns++;
    while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
        ne--;
    if (ns == ne) {
        *why = "empty header name";
        return -1;
    }
    for (const char *p = ns; p < ne; p++) {
        if (!is_token_char((unsigned char)*p)) {
            *why = "invalid character in header name";
            return -1;
        }
    }
    const char *vs = colon + 1, *ve = colon + strlen(colon);
    while (vs < ve && (*vs == ' ' || *vs == '\t'))
        vs++;
    while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
        ve--;
    for (const char *p = vs; p < ve; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *why = "control character in header value";
            return -1;
        }
    }
    size_t nl = (size_t)(ne - ns), vl = (size_t)(ve - vs);
    *name = xmalloc(nl + 1);
    memcpy(*name, ns, nl);
    (*name)[nl] = '\0';
    *value = xmalloc(vl + 1);
    memcpy(*value, vs, vl);
    (*value)[vl] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Secrets in the configuration                                              */
/* ------------------------------------------------------------------------ */

static int is_secret_key(const char *key)
{
    static const char *const words[] = {"key", "token", "secret", "password", "auth", "cookie"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasestr(key, words[i]))
            return 1;
    return 0;
}

/* Walk the whole configuration: every header value, and every string under a
 * key that looks secret (write_key, hash_key, token, password, ...), at any
 * depth (destinations, "redact", ...). Each is added to the scrub list and,
 * with mask set, replaced by "***". Configurations are shallow: the depth
 * bound only guards against a hostile file. */
static void walk_secrets(json_t *node, int in_headers, int mask, int depth)
{
    if (depth > 32)
        return;
    const char *key;
    json_t *val;
    size_t i;
    if (json_is_array(node)) {
        json_array_foreach(node, i, val) walk_secrets(val, 0, mask, depth + 1);
        return;
    }
    json_object_foreach(node, key, val) {
        if (json_is_string(val) && (in_headers || is_secret_key(key))) {
            secret_add(json_string_value(val));
            if (mask)
                json_object_set_new(node, key, json_string("***"));
        } else if (json_is_object(val) || json_is_array(val)) {
            walk_secrets(val, strcmp(key, "headers") == 0, mask, depth + 1);
        }
    }
}

static void register_secrets(const json_t *config)
{
    walk_secrets((json_t *)config, 0, 0, 0);
}

char *config_redacted_dump(const json_t *config)
{
    json_t *copy = json_deep_copy(config);
    if (!copy)
        die_nomem();
    walk_secrets(copy, 0, 1, 0);
    char *s = json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(copy);
    if (!s)
        die_nomem();
    /* json_dumps uses jansson's allocator, which is malloc by default; copy
     * to be sure the caller can free() it. */
    char *out = scrub(s);
    free(s);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Building the configuration object                                         */
/* ------------------------------------------------------------------------ */

static const char *level_name(int verbosity)
{
    switch (verbosity) {
    case -1: return "error";
    case 0: return "warn";
    case 1: return "info";
    default: return "debug";
    }
}

json_t *config_build(const cli_settings *s, int *exit_code)
{
    json_t *config;
    *exit_code = EXIT_RUNTIME;

    if (s->config_file) {
        json_error_t err;
        config = json_load_file(s->config_file, JSON_REJECT_DUPLICATES, &err);
        if (!config) {
            if (err.line > 0)
                out_error("%s:%d:%d: %s", s->config_file, err.line, err.column, err.text);
            else
                out_error("%s: %s", s->config_file, err.text);
            return NULL;
        }
        if (!json_is_object(config)) {
            out_error("%s: the configuration must be a JSON object", s->config_file);
            json_decref(config);
            return NULL;
        }
    } else {
        config = json_object();
        if (!config)
            die_nomem();
    }
    const char *where = s->config_file ? s->config_file : "configuration";

    /* db_path */
    if (s->db) {
        json_object_set_new(config, "db_path", json_string(s->db));
    } else {
        json_t *db = json_object_get(config, "db_path");
        if (!db)
            json_object_set_new(config, "db_path", json_string("./herald.db"));
        else if (!json_is_string(db)) {
            out_error("%s: \"db_path\" must be a string", where);
            json_decref(config);
            return NULL;
        }
    }

    /* destinations, and the "default" one from --url */
    json_t *dests = json_object_get(config, "destinations");
    if (dests && !json_is_array(dests)) {
        out_error("%s: \"destinations\" must be an array", where);
        json_decref(config);
        return NULL;
    }
    if (s->url) {
        json_t *d = json_object();
        json_t *headers = json_object();
        if (!d || !headers)
            die_nomem();
        for (size_t i = 0; i < s->header_count; i++) {
            char *name, *value;
            const char *why;
            if (header_parse(s->headers[i], &name, &value, &why) != 0) {
                /* Do not echo the header: its value may be a secret. */
                out_error("invalid header #%zu: %s", i + 1, why);
                json_decref(headers);
                json_decref(d);
                json_decref(config);
                *exit_code = EXIT_USAGE;
                return NULL;
            }
            json_object_set_new(headers, name, json_string(value));
            free(name);
            free(value);
        }
        json_object_set_new(d, "name", json_string("default"));
        json_object_set_new(d, "backend", json_string("rest"));
        json_object_set_new(d, "url", json_string(s->url));
        if (json_object_size(headers))
            json_object_set_new(d, "headers", headers);
        else
            json_decref(headers);
        json_object_set_new(d, "mode", json_string(s->mode));
        json_object_set_new(d, "gzip", json_boolean(s->gzip));
        if (s->write_key)
            json_object_set_new(d, "write_key", json_string(s->write_key));

        if (!dests) {
            dests = json_array();
            json_object_set_new(config, "destinations", dests);
        }
        size_t i;
        json_t *old;
        int replaced = 0;
        json_array_foreach(dests, i, old) {
            const char *name = json_string_value(json_object_get(old, "name"));
            if (name && strcmp(name, "default") == 0) {
                json_array_set_new(dests, i, d);
                replaced = 1;
                break;
            }
        }
        if (!replaced)
            json_array_append_new(dests, d);
    }

    if (s->log_level_set || !json_object_get(config, "log_level"))
        json_object_set_new(config, "log_level", json_string(level_name(s->verbosity)));
    if (s->deliver == 0)
        json_object_set_new(config, "deliver", json_false());
    else if (!json_object_get(config, "deliver"))
        json_object_set_new(config, "deliver", json_true());

    register_secrets(config);
    *exit_code = EXIT_OK;
    return config;
}

/* ------------------------------------------------------------------------ */
/* Opening the client                                                        */
/* ------------------------------------------------------------------------ */

herald_client *config_open(json_t *config, const char *label, int *deliver_out)
{
    char *text = json_dumps(config, JSON_COMPACT);
    if (text == NULL)
        die_nomem();
    /* The JSON carries every setting; the base options carry what JSON
     * cannot: the log callback behind -v. */
    herald_options base;
    herald_options_init(&base);
    base.log = out_log;
    base.log_userdata = NULL;
    herald_client *c = NULL;
    herald_status st = herald_open_json_ex(&c, text, &base);
    free(text);
    const char *db_path = json_string_value(json_object_get(config, "db_path"));
    if (st != HERALD_OK) {
        char buf[1024];
        herald_last_error(NULL, buf, sizeof buf);
        char *clean = scrub(buf);
        if (st == HERALD_E_CONFIG || st == HERALD_E_INVALID_JSON)
            out_error("%s: %s: %s", label ? label : "configuration", herald_strerror(st), clean);
        else if (*clean)
            out_error("cannot open %s: %s: %s", db_path ? db_path : "queue", herald_strerror(st),
                      clean);
        else
            out_error("cannot open %s: %s", db_path ? db_path : "queue", herald_strerror(st));
        free(clean);
        return NULL;
    }
    json_t *deliver = json_object_get(config, "deliver");
    *deliver_out = deliver == NULL || json_is_true(deliver);
    return c;
}
