/*
 * herald-emit — internal declarations shared by the files of the CLI.
 */
#ifndef HERALD_EMIT_CLI_H
#define HERALD_EMIT_CLI_H

#include <herald/herald.h>
#include <jansson.h>

#include <stddef.h>
#include <stdint.h>

#define PROG "herald-emit"

enum {
    EXIT_OK = 0,      /* success */
    EXIT_RUNTIME = 1,  /* open failed, storage error, every import line bad, ... */
    EXIT_USAGE = 2,    /* bad command line or input rejected by herald */
    EXIT_TIMEOUT = 3   /* flush: the queue did not drain in time */
};

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* ---- output.c: stderr messages, secrets scrubbing, log callback, progress */

/* Verbosity: -1 quiet, 0 default, 1 info (-v), 2 debug (-vv). */
void out_set_verbosity(int verbosity);
int out_verbosity(void);

/* "herald-emit: <message>" on stderr, always printed. */
void out_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Printed unless -q. */
void out_warn(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Printed with -v / -vv. */
void out_info(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Printed with -vv. */
void out_debug(const char *fmt, ...) CLI_PRINTF(1, 2);

/* Remember a secret (write key, header value) so that no text this program
 * writes to stderr or stdout from herald can contain it. Copies `s`. */
void secret_add(const char *s);
/* Free the secret list. */
void secret_clear(void);
/* A copy of `text` with every secret replaced by "***" and control characters
 * (other than tab) replaced by '?'. Never NULL (aborts the process on OOM
 * with exit 1). Caller frees. */
char *scrub(const char *text);
/* Scrub every string value in a JSON tree, in place. */
void scrub_json(json_t *v);

/* herald's log callback: writes "herald-emit: <level>: <message>" on stderr,
 * scrubbed, without tearing the progress bar. */
void out_log(herald_log_level level, const char *message, void *userdata);

/* Progress bar on stderr (import). Only drawn when stderr is a TTY and not
 * quiet. total_bytes 0: size unknown. */
void progress_start(uint64_t total_bytes);
/* Redraws at most ~10 times per second. */
void progress_update(uint64_t bytes, uint64_t lines, uint64_t events, uint64_t bad);
/* Erase the bar for good. */
void progress_finish(void);

/* Exit with status 1 after "out of memory". */
void die_nomem(void) __attribute__((noreturn));
void *xmalloc(size_t n);
char *xstrdup(const char *s);

/* ---- config.c: the client configuration */

typedef struct cli_settings {
    const char *db;          /* resolved: flag, env, config file, default */
    const char *url;         /* flag or env; NULL: no "default" destination */
    const char **headers;    /* "K: V" strings (flags, else env) */
    size_t header_count;
    const char *write_key;   /* flag or env, may be NULL */
    const char *mode;        /* "batch" or "single" */
    int gzip;                /* 0 with --no-gzip */
    const char *config_file; /* flag or env, may be NULL */
    int deliver;             /* -1: keep what the config file says (default true) */
    int verbosity;           /* -1 .. 2 */
    int log_level_set;       /* -q / -v given: override the file's log_level */
} cli_settings;

/* Build the configuration object (config file + settings). On failure prints
 * the error and returns NULL with *exit_code set (1 or 2). The returned object
 * has "db_path" set. Secrets found in it are registered with secret_add(). */
json_t *config_build(const cli_settings *s, int *exit_code);

/* Open a client from the configuration object. Prints the reason on failure
 * (prefixed with `label`, the config file name, for errors in the object)
 * and returns NULL. `deliver_out` receives whether delivery is on. */
herald_client *config_open(json_t *config, const char *label, int *deliver_out);

/* Redacted, compact dump for -vv. Caller frees with free(). */
char *config_redacted_dump(const json_t *config);

/* Parse a "K: V" header line. Returns 0 and sets *name / *value (malloc'd,
 * trimmed), or -1 with a static reason in *why. */
int header_parse(const char *line, char **name, char **value, const char **why);

#endif
