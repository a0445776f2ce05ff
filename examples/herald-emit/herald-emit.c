/*
 * herald-emit — send analytics events from the command line through herald.
 *
 *   herald-emit [global options] COMMAND [args]
 *
 * See docs/cli.md and herald-emit(1). Every event goes through herald_send(),
 * so it is committed to the queue file before the command returns; emitting
 * commands then wait up to --timeout for delivery.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

enum opt_id {
    /* global */
    O_DB, O_URL, O_HEADER, O_WRITE_KEY, O_MODE, O_NO_GZIP, O_CONFIG, O_TIMEOUT,
    O_NO_FLUSH, O_QUIET, O_VERBOSE, O_HELP, O_VERSION,
    /* per command */
    O_PROPS, O_TRAITS, O_USER, O_ANON, O_TIMESTAMP, O_CONTEXT, O_MESSAGE_ID,
    O_STRICT, O_JSON, O_LIMIT, O_DESTINATION,
    O_COUNT
};

#define BIT(id) (1u << (id))
#define GLOBAL_OPTS                                                                             \
    (BIT(O_DB) | BIT(O_URL) | BIT(O_HEADER) | BIT(O_WRITE_KEY) | BIT(O_MODE) | BIT(O_NO_GZIP) | \
     BIT(O_CONFIG) | BIT(O_TIMEOUT) | BIT(O_NO_FLUSH) | BIT(O_QUIET) | BIT(O_VERBOSE) |         \
     BIT(O_HELP) | BIT(O_VERSION))
#define CALL_OPTS (BIT(O_USER) | BIT(O_ANON) | BIT(O_TIMESTAMP) | BIT(O_CONTEXT) | BIT(O_MESSAGE_ID))

static const struct optdef {
    const char *name;
    char short_name;
    int has_arg;
} optdefs[O_COUNT] = {
    [O_DB] = {"db", 0, 1},
    [O_URL] = {"url", 0, 1},
    [O_HEADER] = {"header", 0, 1},
    [O_WRITE_KEY] = {"write-key", 0, 1},
    [O_MODE] = {"mode", 0, 1},
    [O_NO_GZIP] = {"no-gzip", 0, 0},
    [O_CONFIG] = {"config", 0, 1},
    [O_TIMEOUT] = {"timeout", 0, 1},
    [O_NO_FLUSH] = {"no-flush", 0, 0},
    [O_QUIET] = {"quiet", 'q', 0},
    [O_VERBOSE] = {"verbose", 'v', 0},
    [O_HELP] = {"help", 'h', 0},
    [O_VERSION] = {"version", 0, 0},
    [O_PROPS] = {"props", 0, 1},
    [O_TRAITS] = {"traits", 0, 1},
    [O_USER] = {"user", 0, 1},
    [O_ANON] = {"anonymous-id", 0, 1},
    [O_TIMESTAMP] = {"timestamp", 0, 1},
    [O_CONTEXT] = {"context", 0, 1},
    [O_MESSAGE_ID] = {"message-id", 0, 1},
    [O_STRICT] = {"strict", 0, 0},
    [O_JSON] = {"json", 0, 0},
    [O_LIMIT] = {"limit", 0, 1},
    [O_DESTINATION] = {"destination", 0, 1},
};

typedef struct args {
    const char *val[O_COUNT]; /* last value of each option with an argument */
    int set[O_COUNT];         /* how many times each option was given */
    const char **headers;     /* every --header, in order */
    size_t header_count;
    int verbosity;            /* -1 quiet .. 2; last of -q / -v wins */
    const struct command *cmd;
    const char *cmd_word;     /* as typed, for messages */
    const char **pos;         /* positional arguments after the command */
    size_t npos;
} args;

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct ctx ctx;
typedef int (*command_fn)(ctx *);

enum deliver_mode {
    EMITS,       /* sends events: deliver and flush unless --no-flush */
    FLUSHES,     /* flush: deliver, never --no-flush */
    READ_ONLY    /* status, dead-letters list: deliver=false */
};

typedef struct command {
    const char *name;   /* "track", "dead-letters list", ... */
    command_fn run;
    unsigned opts;      /* per-command options (bits) */
    size_t min_pos, max_pos;
    enum deliver_mode mode;
    const char *synopsis;
    const char *help;
} command;

struct ctx {
    args *a;
    json_t *config;
    herald_client *c;
    const char *db_path;
    int deliver;        /* the client delivers */
    int timeout_ms;
    FILE *input;        /* import */
    json_t *msg;        /* track ... alias: the message to send */
};

static int cmd_track(ctx *x);
static int cmd_page(ctx *x);
static int cmd_screen(ctx *x);
static int cmd_identify(ctx *x);
static int cmd_group(ctx *x);
static int cmd_alias(ctx *x);
static int cmd_import(ctx *x);
static int cmd_flush(ctx *x);
static int cmd_status(ctx *x);
static int cmd_dl_list(ctx *x);
static int cmd_dl_replay(ctx *x);

#define CALL_HELP                                                                \
    "  --user ID              userId of the message\n"                          \
    "  --anonymous-id ID      anonymousId of the message\n"                     \
    "  --timestamp RFC3339    when it happened (default: now)\n"                \
    "  --context JSON         context object (herald adds context.library)\n" \
    "  --message-id ID        messageId (1..100 bytes; default: a new UUID)\n"

static const command commands[] = {
    {"track", cmd_track, BIT(O_PROPS) | CALL_OPTS, 1, 1, EMITS,
     "track NAME [--props JSON] [call options]",
     "Send a track event named NAME.\n\n"
     "  --props JSON           properties object\n" CALL_HELP},
    {"page", cmd_page, BIT(O_PROPS) | CALL_OPTS, 0, 1, EMITS,
     "page [NAME] [--props JSON] [call options]",
     "Send a page view, optionally named NAME.\n\n"
     "  --props JSON           properties object\n" CALL_HELP},
    {"screen", cmd_screen, BIT(O_PROPS) | CALL_OPTS, 1, 1, EMITS,
     "screen NAME [--props JSON] [call options]",
     "Send a screen view named NAME.\n\n"
     "  --props JSON           properties object\n" CALL_HELP},
    {"identify", cmd_identify, BIT(O_TRAITS) | (CALL_OPTS & ~BIT(O_USER)), 1, 1, EMITS,
     "identify USER_ID [--traits JSON] [call options]",
     "Send an identify message for USER_ID.\n\n"
     "  --traits JSON          traits object\n"
     "  --anonymous-id ID      anonymousId of the message\n"
     "  --timestamp RFC3339    when it happened (default: now)\n"
     "  --context JSON         context object\n"
     "  --message-id ID        messageId (1..100 bytes; default: a new UUID)\n"},
    {"group", cmd_group, BIT(O_TRAITS) | CALL_OPTS, 1, 1, EMITS,
     "group GROUP_ID [--traits JSON] [call options]",
     "Send a group message associating the user with GROUP_ID.\n\n"
     "  --traits JSON          traits object of the group\n" CALL_HELP},
    {"alias", cmd_alias, CALL_OPTS & ~BIT(O_USER), 2, 2, EMITS,
     "alias PREVIOUS_ID USER_ID [call options]",
     "Send an alias message merging PREVIOUS_ID into USER_ID.\n\n"
     "  --anonymous-id ID      anonymousId of the message\n"
     "  --timestamp RFC3339    when it happened (default: now)\n"
     "  --context JSON         context object\n"
     "  --message-id ID        messageId (1..100 bytes; default: a new UUID)\n"},
    {"import", cmd_import, BIT(O_STRICT), 1, 1, EMITS,
     "import FILE|- [--strict]",
     "Queue every message of an NDJSON file (- reads standard input).\n"
     "Each non-blank line is one message object; a line without \"type\" is a\n"
     "track event. Bad lines are reported on stderr and skipped.\n\n"
     "  --strict               exit 1 if any line was bad (the good ones are\n"
     "                         still queued)\n"},
    {"flush", cmd_flush, 0, 0, 0, FLUSHES,
     "flush",
     "Deliver what is queued, waiting up to --timeout. Exits 3 if events are\n"
     "still queued when the time is up.\n"},
    {"status", cmd_status, BIT(O_JSON), 0, 0, READ_ONLY,
     "status [--json]",
     "Show queue depth per destination, dead letters and counters. Never sends.\n\n"
     "  --json                 print herald's stats object as JSON\n"},
    {"dead-letters list", cmd_dl_list, BIT(O_JSON) | BIT(O_LIMIT), 0, 0, READ_ONLY,
     "dead-letters list [--json] [--limit N]",
     "List dead letters, oldest first. Never sends.\n\n"
     "  --json                 print the dead letters as a JSON array, events\n"
     "                         and response excerpts included\n"
     "  --limit N              at most N rows (0: all; default all)\n"},
    {"dead-letters replay", cmd_dl_replay, BIT(O_DESTINATION), 0, 0, EMITS,
     "dead-letters replay [--destination NAME]",
     "Queue dead letters again (all, or those of destination NAME), print\n"
     "\"replayed N\", then deliver like the other emitting commands.\n\n"
     "  --destination NAME     only the dead letters of this destination\n"},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

/* ------------------------------------------------------------------------ */
/* Help                                                                      */
/* ------------------------------------------------------------------------ */

static const char global_help[] =
    "Global options (flags beat environment, environment beats the config file,\n"
    "the config file beats the defaults):\n"
    "  --db PATH              queue file (env HERALD_DB; default ./herald.db)\n"
    "  --url URL              REST destination URL; defines destination \"default\"\n"
    "                         (env HERALD_URL)\n"
    "  --header 'K: V'        extra HTTP header for that destination, repeatable\n"
    "                         (env HERALD_HEADERS, one header per line)\n"
    "  --write-key KEY        HTTP Basic user name for that destination\n"
    "                         (env HERALD_WRITE_KEY); never printed\n"
    "  --mode batch|single    REST mode (env HERALD_MODE; default batch)\n"
    "  --no-gzip              send request bodies uncompressed\n"
    "  --config FILE          JSON config file, keys as herald_open_json()\n"
    "                         (env HERALD_CONFIG)\n"
    "  --timeout SECONDS      how long emitting commands and flush wait for\n"
    "                         delivery (env HERALD_TIMEOUT; default 10;\n"
    "                         fractions allowed)\n"
    "  --no-flush             queue only; do not wait for delivery\n"
    "  -q, --quiet            only errors on stderr\n"
    "  -v, --verbose          log herald's info messages; -vv: debug\n"
    "  -h, --help             show help (after a command: that command's)\n"
    "      --version          show version\n";

static const command *find_command(const char *name);

static void print_usage_line(FILE *f)
{
    fputs("Usage: " PROG " [global options] COMMAND [args]\n", f);
}

static void print_main_help(void)
{
    print_usage_line(stdout);
    fputs("Send analytics events through herald: each event is committed to a local\n"
          "queue file first, then delivered to the configured destinations.\n\n",
          stdout);
    fputs("Commands:\n", stdout);
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %s\n", commands[i].synopsis);
    fputs("\nCall options (track, page, screen, identify, group, alias):\n" CALL_HELP "\n", stdout);
    fputs(global_help, stdout);
    fputs("\nExit status: 0 success; 1 runtime failure; 2 usage error or input\n"
          "rejected by herald; 3 flush timed out (flush command only).\n\n"
          "Run '" PROG " COMMAND --help' for a command's options.\n",
          stdout);
}

static void print_command_help(const command *cmd)
{
    printf("Usage: " PROG " [global options] %s\n\n%s\n", cmd->synopsis, cmd->help);
    fputs(global_help, stdout);
}

static void print_dead_letters_help(void)
{
    const command *l = find_command("dead-letters list"), *r = find_command("dead-letters replay");
    printf("Usage: " PROG " [global options] %s\n"
           "       " PROG " [global options] %s\n\n"
           "list: %s\nreplay: %s\n",
           l->synopsis, r->synopsis, l->help, r->help);
    fputs(global_help, stdout);
}

static void print_version(void)
{
    printf(PROG " %s (libherald %s)\n", HERALD_VERSION_STRING, herald_version());
}

static int usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out_error("%s", buf);
    fputs("Try '" PROG " --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Argument parsing                                                          */
/* ------------------------------------------------------------------------ */

static int find_long(const char *name, size_t len)
{
    for (int i = 0; i < O_COUNT; i++)
        if (strlen(optdefs[i].name) == len && strncmp(optdefs[i].name, name, len) == 0)
            return i;
    return -1;
}

static int find_short(char c)
{
    for (int i = 0; i < O_COUNT; i++)
        if (optdefs[i].short_name && optdefs[i].short_name == c)
            return i;
    return -1;
}

static void record(args *a, int id, const char *value)
{
    a->set[id]++;
    if (id == O_HEADER)
        a->headers[a->header_count++] = value;
    else if (id == O_QUIET)
        a->verbosity = -1;
    else if (id == O_VERBOSE)
        a->verbosity = a->verbosity < 0 ? 1 : (a->verbosity < 2 ? a->verbosity + 1 : 2);
    else
        a->val[id] = value;
}

/* Parse one option at argv[*i]; `allowed` are the option bits valid here.
 * Returns 0, or EXIT_USAGE after printing the error. */
static int parse_option(args *a, int argc, char **argv, int *i, unsigned allowed)
{
    const char *arg = argv[*i];
    const char *where = a->cmd ? a->cmd->name : NULL;
    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int id = find_long(name, len);
        if (id < 0 || !(allowed & BIT(id))) {
            if (where)
                return usage_error("unknown option '--%.*s' for '%s'", (int)len, name, where);
            return usage_error("unknown option '--%.*s'", (int)len, name);
        }
        const char *value = NULL;
        if (optdefs[id].has_arg) {
            if (eq)
                value = eq + 1;
            else if (*i + 1 < argc)
                value = argv[++*i];
            else
                return usage_error("option '--%s' needs an argument", optdefs[id].name);
        } else if (eq) {
            return usage_error("option '--%s' takes no argument", optdefs[id].name);
        }
        record(a, id, value);
        return 0;
    }
    /* short options, possibly clustered: -vv, -qh */
    for (const char *p = arg + 1; *p; p++) {
        int id = find_short(*p);
        if (id < 0 || !(allowed & BIT(id)))
            return usage_error("unknown option '-%c'", *p);
        record(a, id, NULL);
    }
    return 0;
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int is_option(const char *s)
{
    return s[0] == '-' && s[1] != '\0';
}

/* Returns -1 to go on, or an exit code (help and version print here). */
static int parse_args(args *a, int argc, char **argv)
{
    int i = 1, rc;
    /* global options before the command */
    for (; i < argc && is_option(argv[i]); i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if ((rc = parse_option(a, argc, argv, &i, GLOBAL_OPTS)) != 0)
            return rc;
    }
    if (a->set[O_HELP]) {
        print_main_help();
        return EXIT_OK;
    }
    if (a->set[O_VERSION]) {
        print_version();
        return EXIT_OK;
    }
    if (i >= argc)
        return usage_error("no command given");

    const char *word = argv[i++];
    if (strcmp(word, "help") == 0) {
        if (i >= argc) {
            print_main_help();
            return EXIT_OK;
        }
        char name[64];
        if (strcmp(argv[i], "dead-letters") == 0 && i + 1 < argc)
            snprintf(name, sizeof name, "dead-letters %s", argv[i + 1]);
        else
            snprintf(name, sizeof name, "%s", argv[i]);
        const command *cmd = find_command(name);
        if (!cmd && strcmp(argv[i], "dead-letters") == 0) {
            print_dead_letters_help();
            return EXIT_OK;
        }
        if (!cmd)
            return usage_error("unknown command '%s'", argv[i]);
        print_command_help(cmd);
        return EXIT_OK;
    }
    if (strcmp(word, "dead-letters") == 0) {
        if (i >= argc || is_option(argv[i])) {
            if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
                print_dead_letters_help();
                return EXIT_OK;
            }
            return usage_error("'dead-letters' needs a subcommand: list or replay");
        }
        const char *sub = argv[i++];
        if (strcmp(sub, "list") == 0)
            a->cmd = find_command("dead-letters list");
        else if (strcmp(sub, "replay") == 0)
            a->cmd = find_command("dead-letters replay");
        else
            return usage_error("unknown dead-letters subcommand '%s' (expected list or replay)", sub);
    } else {
        a->cmd = find_command(word);
        if (!a->cmd)
            return usage_error("unknown command '%s'", word);
    }
    a->cmd_word = word;

    /* command options, global options and positional arguments, mixed */
    int only_pos = 0;
    for (; i < argc; i++) {
        if (!only_pos && strcmp(argv[i], "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && is_option(argv[i])) {
            if ((rc = parse_option(a, argc, argv, &i, a->cmd->opts | GLOBAL_OPTS)) != 0)
                return rc;
            continue;
        }
        a->pos[a->npos++] = argv[i];
    }
    if (a->set[O_HELP]) {
        print_command_help(a->cmd);
        return EXIT_OK;
    }
    if (a->set[O_VERSION]) {
        print_version();
        return EXIT_OK;
    }
    if (a->npos < a->cmd->min_pos)
        return usage_error("'%s' needs %s (usage: %s)", a->cmd->name,
                           a->cmd->min_pos == 1 ? "an argument" : "more arguments", a->cmd->synopsis);
    if (a->npos > a->cmd->max_pos)
        return usage_error("too many arguments for '%s' (usage: %s)", a->cmd->name, a->cmd->synopsis);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Settings                                                                  */
/* ------------------------------------------------------------------------ */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Seconds (fractions allowed, 0 .. 2147483) to milliseconds. */
static int parse_timeout(const char *s, int *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < 0.0 || v > 2147483.0)
        return -1;
    /* no hexadecimal floats, "infinity" or "nan" */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789.", *p))
            return -1;
    *ms = (int)(v * 1000.0 + 0.5);
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* HERALD_HEADERS: one "K: V" per line; blank lines skipped. The pointers
 * point into `buf`, which the caller keeps. */
static size_t split_env_headers(char *buf, const char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p)
            out[n++] = line;
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Herald errors                                                             */
/* ------------------------------------------------------------------------ */

/* "strerror: last_error" for the client's last failure (scrubbed). */
static char *herald_error_text(herald_client *c, herald_status st)
{
    char buf[2048];
    herald_last_error(c, buf, sizeof buf);
    char *clean = scrub(buf);
    const char *name = herald_strerror(st);
    size_t n = strlen(name) + strlen(clean) + 3;
    char *out = xmalloc(n);
    if (*clean)
        snprintf(out, n, "%s: %s", name, clean);
    else
        snprintf(out, n, "%s", name);
    free(clean);
    return out;
}

/* Errors caused by the input (exit 2), as opposed to the environment (1). */
static int is_input_error(herald_status st)
{
    return st == HERALD_E_INVALID_ARGUMENT || st == HERALD_E_INVALID_JSON ||
           st == HERALD_E_NOT_OBJECT || st == HERALD_E_TOO_LARGE;
}

static uint64_t pending_count(ctx *x)
{
    herald_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    if (herald_stats_get(x->c, &s) != HERALD_OK)
        return 0;
    return s.pending;
}

/* After events were queued: wait for delivery (unless --no-flush or
 * delivery is off). A timeout is not an error: the events are durable. */
static int finish_emitting(ctx *x)
{
    if (!x->deliver)
        return EXIT_OK;
    herald_status st = herald_flush(x->c, x->timeout_ms);
    if (st == HERALD_OK) {
        out_info("queue drained");
        return EXIT_OK;
    }
    if (st == HERALD_E_TIMEOUT) {
        out_warn("%llu events still queued in %s; they will be sent by the next run",
                 (unsigned long long)pending_count(x), x->db_path);
        return EXIT_OK;
    }
    char *msg = herald_error_text(x->c, st);
    out_error("flush failed: %s", msg);
    free(msg);
    return EXIT_RUNTIME;
}

/* ------------------------------------------------------------------------ */
/* Emitting commands                                                         */
/* ------------------------------------------------------------------------ */

/* Set a string field; a NULL value sets nothing. Returns 0, or EXIT_USAGE
 * after printing the error if the value is not UTF-8 (JSON cannot carry it;
 * herald would refuse it with HERALD_E_INVALID_ARGUMENT). */
static int set_str(json_t *msg, const char *key, const char *value)
{
    if (!value)
        return 0;
    json_t *v = json_string(value);
    if (!v) {
        out_error("%s: \"%s\" is not valid UTF-8", herald_strerror(HERALD_E_INVALID_ARGUMENT), key);
        return EXIT_USAGE;
    }
    json_object_set_new(msg, key, v);
    return 0;
}

/* Parse a JSON option value. Returns NULL and prints the error (exit 2) if
 * it does not parse; whether it is an object is left to herald. */
static json_t *parse_json_option(const char *option, const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!v)
        out_error("--%s: %s: %s (at line %d, column %d)", option, herald_strerror(HERALD_E_INVALID_JSON),
                  err.text, err.line, err.column);
    return v;
}

/* The message of an emitting command (track ... alias), built before the
 * client is opened so that bad input touches no queue file. Returns NULL
 * with *rc = EXIT_USAGE after printing the error. */
static json_t *build_message(const args *a, int *rc)
{
    const char *type = a->cmd->name;
    const char *name_key = NULL, *body_key = NULL;
    int body_opt = -1;
    if (a->cmd->run == cmd_track) {
        name_key = "event", body_key = "properties", body_opt = O_PROPS;
    } else if (a->cmd->run == cmd_page || a->cmd->run == cmd_screen) {
        name_key = "name", body_key = "properties", body_opt = O_PROPS;
    } else if (a->cmd->run == cmd_identify) {
        name_key = "userId", body_key = "traits", body_opt = O_TRAITS;
    } else if (a->cmd->run == cmd_group) {
        name_key = "groupId", body_key = "traits", body_opt = O_TRAITS;
    } else if (a->cmd->run == cmd_alias) {
        name_key = "previousId";
    }

    json_t *msg = json_object();
    if (!msg)
        die_nomem();
    json_object_set_new(msg, "type", json_string(type));
    *rc = 0;
    if (a->npos > 0)
        *rc = set_str(msg, name_key, a->pos[0]);
    if (!*rc && a->cmd->run == cmd_alias)
        *rc = set_str(msg, "userId", a->pos[1]);
    if (!*rc && body_opt >= 0 && a->val[body_opt]) {
        json_t *v = parse_json_option(optdefs[body_opt].name, a->val[body_opt]);
        if (v)
            json_object_set_new(msg, body_key, v);
        else
            *rc = EXIT_USAGE;
    }
    if (!*rc && a->val[O_CONTEXT]) {
        json_t *v = parse_json_option("context", a->val[O_CONTEXT]);
        if (v)
            json_object_set_new(msg, "context", v);
        else
            *rc = EXIT_USAGE;
    }
    if (!*rc)
        *rc = set_str(msg, "userId", a->val[O_USER]);
    if (!*rc)
        *rc = set_str(msg, "anonymousId", a->val[O_ANON]);
    if (!*rc)
        *rc = set_str(msg, "timestamp", a->val[O_TIMESTAMP]);
    if (!*rc)
        *rc = set_str(msg, "messageId", a->val[O_MESSAGE_ID]);
    if (*rc) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}

/* track, page, screen, identify, group, alias: send x->msg. */
static int send_message(ctx *x)
{
    char *text = json_dumps(x->msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        die_nomem();
    herald_status st = herald_send(x->c, text);
    free(text);
    if (st != HERALD_OK) {
        char *m = herald_error_text(x->c, st);
        out_error("%s", m);
        free(m);
        return is_input_error(st) ? EXIT_USAGE : EXIT_RUNTIME;
    }
    out_info("queued %s in %s", json_string_value(json_object_get(x->msg, "type")), x->db_path);
    return finish_emitting(x);
}

static int cmd_track(ctx *x) { return send_message(x); }
static int cmd_page(ctx *x) { return send_message(x); }
static int cmd_screen(ctx *x) { return send_message(x); }
static int cmd_identify(ctx *x) { return send_message(x); }
static int cmd_group(ctx *x) { return send_message(x); }
static int cmd_alias(ctx *x) { return send_message(x); }

/* ------------------------------------------------------------------------ */
/* import                                                                    */
/* ------------------------------------------------------------------------ */

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* Queue one NDJSON line. Returns HERALD_OK or herald's status. */
static herald_status import_line(ctx *x, const char *line)
{
    json_error_t err;
    json_t *v = json_loads(line, JSON_DECODE_ANY, &err);
    char *dumped = NULL;
    const char *text = line;
    /* A line without "type" is a track event. Anything that is not a JSON
     * object goes to herald as it is: herald says what is wrong with it. */
    if (json_is_object(v) && !json_object_get(v, "type")) {
        json_object_set_new(v, "type", json_string("track"));
        dumped = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!dumped)
            die_nomem();
        text = dumped;
    }
    herald_status st = herald_send(x->c, text);
    free(dumped);
    json_decref(v);
    return st;
}

static int cmd_import(ctx *x)
{
    FILE *in = x->input;
    const char *path = x->a->pos[0];
    uint64_t total = 0;
    struct stat sb;
    if (fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        off_t at = lseek(fileno(in), 0, SEEK_CUR);
        if (at >= 0 && at < sb.st_size)
            total = (uint64_t)(sb.st_size - at);
    }
    progress_start(total);

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0, good = 0, bad = 0, bytes = 0;
    int fatal = 0;
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        bytes += (uint64_t)len;
        size_t n = (size_t)len;
        if (is_blank(line, n)) {
            progress_update(bytes, lineno, good, bad);
            continue;
        }
        if (memchr(line, '\0', n)) {
            out_error("line %llu: %s: the line contains a NUL byte", (unsigned long long)lineno,
                      herald_strerror(HERALD_E_INVALID_JSON));
            bad++;
            progress_update(bytes, lineno, good, bad);
            continue;
        }
        /* herald gets the line without its line terminator, so that its
         * error positions refer to the line alone */
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        herald_status st = import_line(x, line);
        if (st == HERALD_OK) {
            good++;
        } else {
            char *m = herald_error_text(x->c, st);
            out_error("line %llu: %s", (unsigned long long)lineno, m);
            free(m);
            if (!is_input_error(st)) {
                /* storage error, queue full, ...: later lines would fail too */
                fatal = 1;
                break;
            }
            bad++;
        }
        progress_update(bytes, lineno, good, bad);
    }
    int read_error = !fatal && ferror(in);
    int saved_errno = errno;
    free(line);
    progress_finish();

    if (read_error)
        out_error("%s: read error: %s", strcmp(path, "-") == 0 ? "standard input" : path,
                  strerror(saved_errno));
    out_warn("imported %llu events, %llu bad lines", (unsigned long long)good,
             (unsigned long long)bad);
    if (fatal || read_error)
        return EXIT_RUNTIME;
    if (bad && !good)
        return EXIT_RUNTIME;
    int rc = good ? finish_emitting(x) : EXIT_OK;
    if (bad && x->a->set[O_STRICT] && rc == EXIT_OK)
        rc = EXIT_RUNTIME;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* flush                                                                     */
/* ------------------------------------------------------------------------ */

static int cmd_flush(ctx *x)
{
    if (!x->deliver) {
        out_error("delivery is disabled by the configuration (\"deliver\": false); nothing to flush");
        return EXIT_RUNTIME;
    }
    if (!json_array_size(json_object_get(x->config, "destinations")))
        out_warn("no destination configured (use --url or --config); nothing can be delivered");
    herald_status st = herald_flush(x->c, x->timeout_ms);
    if (st == HERALD_OK) {
        out_info("queue drained");
        return EXIT_OK;
    }
    if (st == HERALD_E_TIMEOUT) {
        out_warn("%llu events still queued in %s; they will be sent by the next run",
                 (unsigned long long)pending_count(x), x->db_path);
        return EXIT_TIMEOUT;
    }
    char *msg = herald_error_text(x->c, st);
    out_error("flush failed: %s", msg);
    free(msg);
    return EXIT_RUNTIME;
}

/* ------------------------------------------------------------------------ */
/* status                                                                    */
/* ------------------------------------------------------------------------ */

static unsigned long long juint(const json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));
    return v > 0 ? (unsigned long long)v : 0;
}

static int print_json(json_t *v)
{
    scrub_json(v);
    if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return EXIT_RUNTIME;
    putchar('\n');
    return EXIT_OK;
}

static int cmd_status(ctx *x)
{
    char *text = NULL;
    herald_status st = herald_stats_json(x->c, &text);
    if (st != HERALD_OK) {
        char *m = herald_error_text(x->c, st);
        out_error("cannot read stats: %s", m);
        free(m);
        return EXIT_RUNTIME;
    }
    json_error_t err;
    json_t *s = json_loads(text, 0, &err);
    herald_free(text);
    if (!json_is_object(s)) {
        out_error("herald returned unreadable stats: %s", err.text);
        json_decref(s);
        return EXIT_RUNTIME;
    }
    int rc;
    if (x->a->set[O_JSON]) {
        rc = print_json(s);
        json_decref(s);
        return rc;
    }

    printf("queue file:    %s\n", x->db_path);
    printf("queued:        %llu events (%llu bytes)\n", juint(s, "queued"), juint(s, "queued_bytes"));
    printf("pending:       %llu deliveries\n", juint(s, "pending"));
    printf("dead letters:  %llu\n", juint(s, "dead_letters"));

    /* Per destination: only the queue depth. consecutive_failures and
     * paused_until_ms describe the delivery thread of the process that has
     * the client open, and this one never delivers: they are in --json. */
    json_t *dests = json_object_get(s, "destinations");
    if (json_array_size(dests)) {
        int wn = (int)strlen("NAME"), wb = (int)strlen("BACKEND");
        size_t i;
        json_t *d;
        json_array_foreach(dests, i, d) {
            const char *n = json_string_value(json_object_get(d, "name"));
            const char *b = json_string_value(json_object_get(d, "backend"));
            if (n && (int)strlen(n) > wn)
                wn = (int)strlen(n);
            if (b && (int)strlen(b) > wb)
                wb = (int)strlen(b);
        }
        printf("destinations:\n  %-*s  %-*s  %10s\n", wn, "NAME", wb, "BACKEND", "PENDING");
        json_array_foreach(dests, i, d) {
            const char *n = json_string_value(json_object_get(d, "name"));
            const char *b = json_string_value(json_object_get(d, "backend"));
            printf("  %-*s  %-*s  %10llu\n", wn, n ? n : "?", wb, b ? b : "?", juint(d, "pending"));
        }
    } else {
        printf("destinations:  none configured (give --url or --config to see them)\n");
    }
    printf("counters:\n");
    static const char *const counters[] = {"accepted", "rejected", "sent", "retried", "dead",
                                           "evicted", "requests", "bytes_raw", "bytes_sent"};
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        printf("  %-10s %llu\n", counters[i], juint(s, counters[i]));
    const char *last = json_string_value(json_object_get(s, "last_error"));
    if (last && *last) {
        char *clean = scrub(last);
        printf("last error:    %s\n", clean);
        free(clean);
    }
    json_decref(s);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* dead-letters                                                              */
/* ------------------------------------------------------------------------ */

static char *cell(const json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return scrub(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return xstrdup(buf);
    }
    return xstrdup("-");
}

static int cmd_dl_list(ctx *x)
{
    uint64_t limit = 0;
    if (x->a->val[O_LIMIT] && parse_u64(x->a->val[O_LIMIT], &limit) != 0)
        return usage_error("--limit: expected a non-negative integer, got '%s'", x->a->val[O_LIMIT]);
    char *text = NULL;
    herald_status st = herald_dead_letters_json(x->c, limit, &text);
    if (st != HERALD_OK) {
        char *m = herald_error_text(x->c, st);
        out_error("cannot read dead letters: %s", m);
        free(m);
        return EXIT_RUNTIME;
    }
    json_error_t err;
    json_t *rows = json_loads(text, 0, &err);
    herald_free(text);
    if (!json_is_array(rows)) {
        out_error("herald returned unreadable dead letters: %s", err.text);
        json_decref(rows);
        return EXIT_RUNTIME;
    }
    int rc = EXIT_OK;
    if (x->a->set[O_JSON]) {
        rc = print_json(rows);
        json_decref(rows);
        return rc;
    }
    size_t n = json_array_size(rows);
    if (n == 0) {
        printf("no dead letters\n");
        json_decref(rows);
        return EXIT_OK;
    }
    enum { C_ID, C_DEST, C_AT, C_HTTP, C_REASON, NCOLS };
    static const char *const heads[NCOLS] = {"ID", "DESTINATION", "FAILED AT", "HTTP", "REASON"};
    char **cells = xmalloc(n * NCOLS * sizeof *cells);
    int width[NCOLS];
    for (int k = 0; k < NCOLS; k++)
        width[k] = (int)strlen(heads[k]);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rows, i);
        json_t *http = json_object_get(r, "http_status");
        cells[i * NCOLS + C_ID] = cell(json_object_get(r, "id"));
        cells[i * NCOLS + C_DEST] = cell(json_object_get(r, "destination"));
        cells[i * NCOLS + C_AT] = cell(json_object_get(r, "failed_at"));
        cells[i * NCOLS + C_HTTP] = json_integer_value(http) ? cell(http) : xstrdup("-");
        cells[i * NCOLS + C_REASON] = cell(json_object_get(r, "reason"));
        for (int k = 0; k < NCOLS; k++)
            if ((int)strlen(cells[i * NCOLS + (size_t)k]) > width[k])
                width[k] = (int)strlen(cells[i * NCOLS + (size_t)k]);
    }
    printf("%-*s  %-*s  %-*s  %-*s  %s\n", width[C_ID], heads[C_ID], width[C_DEST], heads[C_DEST],
           width[C_AT], heads[C_AT], width[C_HTTP], heads[C_HTTP], heads[C_REASON]);
    for (size_t i = 0; i < n; i++) {
        char **c = cells + i * NCOLS;
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", width[C_ID], c[C_ID], width[C_DEST], c[C_DEST],
               width[C_AT], c[C_AT], width[C_HTTP], c[C_HTTP], c[C_REASON]);
        for (int k = 0; k < NCOLS; k++)
            free(c[k]);
    }
    free(cells);
    json_decref(rows);
    return rc;
}

static int cmd_dl_replay(ctx *x)
{
    const char *dest = x->a->val[O_DESTINATION];
    json_t *dests = json_object_get(x->config, "destinations");
    if (dest) {
        int found = 0;
        size_t i;
        json_t *d;
        json_array_foreach(dests, i, d) {
            const char *n = json_string_value(json_object_get(d, "name"));
            if (n && strcmp(n, dest) == 0)
                found = 1;
        }
        if (!found) {
            out_error("destination '%s' is not configured (use --url or --config); its dead "
                      "letters can only be replayed to a configured destination", dest);
            return EXIT_USAGE;
        }
    } else if (!json_array_size(dests)) {
        out_warn("no destination configured (use --url or --config); dead letters are only "
                 "replayed for configured destinations");
    }
    uint64_t n = 0;
    herald_status st = herald_dead_letters_replay(x->c, dest, &n);
    if (st != HERALD_OK) {
        char *m = herald_error_text(x->c, st);
        out_error("replay failed: %s", m);
        free(m);
        return EXIT_RUNTIME;
    }
    printf("replayed %llu\n", (unsigned long long)n);
    fflush(stdout);
    if (n == 0)
        return EXIT_OK;
    return finish_emitting(x);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static int is_plain_file_path(const char *p)
{
    return strcmp(p, ":memory:") != 0 && strncmp(p, "file:", 5) != 0;
}

int main(int argc, char **argv)
{
    args a;
    memset(&a, 0, sizeof a);
    a.headers = xmalloc((size_t)argc * sizeof *a.headers);
    a.pos = xmalloc((size_t)argc * sizeof *a.pos);

    int rc = parse_args(&a, argc, argv);
    if (rc >= 0)
        goto out_args;

    /* -q / -v */
    out_set_verbosity(a.verbosity);

    cli_settings s;
    memset(&s, 0, sizeof s);
    s.verbosity = a.verbosity;
    s.log_level_set = a.set[O_QUIET] || a.set[O_VERBOSE];
    s.db = a.val[O_DB] ? a.val[O_DB] : env("HERALD_DB");
    s.url = a.val[O_URL] ? a.val[O_URL] : env("HERALD_URL");
    s.write_key = a.val[O_WRITE_KEY] ? a.val[O_WRITE_KEY] : env("HERALD_WRITE_KEY");
    s.config_file = a.val[O_CONFIG] ? a.val[O_CONFIG] : env("HERALD_CONFIG");
    s.gzip = !a.set[O_NO_GZIP];

    if (s.db && !*s.db) {
        rc = usage_error("--db: empty path");
        goto out_args;
    }
    if (a.val[O_URL] && !*a.val[O_URL]) {
        rc = usage_error("--url: empty URL");
        goto out_args;
    }

    const char *mode = a.val[O_MODE] ? a.val[O_MODE] : env("HERALD_MODE");
    if (mode && strcmp(mode, "batch") != 0 && strcmp(mode, "single") != 0) {
        rc = usage_error("%s: expected 'batch' or 'single', got '%s'",
                         a.val[O_MODE] ? "--mode" : "HERALD_MODE", mode);
        goto out_args;
    }
    s.mode = mode ? mode : "batch";

    int timeout_ms = 10000;
    const char *timeout = a.val[O_TIMEOUT] ? a.val[O_TIMEOUT] : env("HERALD_TIMEOUT");
    if (timeout && parse_timeout(timeout, &timeout_ms) != 0) {
        rc = usage_error("%s: expected a number of seconds (0 .. 2147483), got '%s'",
                         a.val[O_TIMEOUT] ? "--timeout" : "HERALD_TIMEOUT", timeout);
        goto out_args;
    }

    /* headers: the flags, else the environment */
    char *env_headers = NULL;
    if (a.header_count) {
        s.headers = a.headers;
        s.header_count = a.header_count;
    } else if (env("HERALD_HEADERS")) {
        env_headers = xstrdup(env("HERALD_HEADERS"));
        size_t max = strlen(env_headers) / 2 + 1;
        const char **list = xmalloc(max * sizeof *list);
        s.header_count = split_env_headers(env_headers, list, max);
        s.headers = list;
    }
    if (!s.url) {
        /* Destination settings without a destination to apply them to. */
        const char *orphan = a.header_count ? "--header"
                             : a.val[O_WRITE_KEY] ? "--write-key"
                             : a.val[O_MODE] ? "--mode"
                             : a.set[O_NO_GZIP] ? "--no-gzip" : NULL;
        if (orphan) {
            rc = usage_error("%s applies to the destination defined by --url (or HERALD_URL), "
                             "and none was given", orphan);
            goto out_settings;
        }
    }
    if (a.cmd->mode == READ_ONLY)
        s.deliver = 0;
    else if (a.cmd->mode == EMITS && a.set[O_NO_FLUSH])
        s.deliver = 0;
    else
        s.deliver = -1;
    if (a.cmd->mode == FLUSHES && a.set[O_NO_FLUSH]) {
        rc = usage_error("--no-flush makes no sense with 'flush'");
        goto out_settings;
    }

    json_t *config = config_build(&s, &rc);
    if (!config)
        goto out_settings;
    if (out_verbosity() >= 2) {
        char *dump = config_redacted_dump(config);
        out_debug("configuration: %s", dump);
        free(dump);
    }

    ctx x;
    memset(&x, 0, sizeof x);
    x.a = &a;
    x.config = config;
    x.db_path = json_string_value(json_object_get(config, "db_path"));
    x.timeout_ms = timeout_ms;

    /* Emitting commands with a message: build it before anything is opened. */
    if (a.cmd->opts & CALL_OPTS) {
        x.msg = build_message(&a, &rc);
        if (!x.msg)
            goto out_config;
    }

    /* Commands that only read must not create a queue file. */
    struct stat st;
    if (a.cmd->mode == READ_ONLY && is_plain_file_path(x.db_path) && stat(x.db_path, &st) != 0) {
        out_error("%s: %s", x.db_path, strerror(errno));
        rc = EXIT_RUNTIME;
        goto out_config;
    }

    /* import opens its input before the client: a missing file must not
     * create a queue file. */
    FILE *input = NULL;
    if (a.cmd->run == cmd_import) {
        const char *path = a.pos[0];
        if (strcmp(path, "-") == 0) {
            input = stdin;
        } else {
            input = fopen(path, "r");
            if (!input) {
                out_error("%s: %s", path, strerror(errno));
                rc = EXIT_RUNTIME;
                goto out_config;
            }
        }
        x.input = input;
    }

    x.c = config_open(config, s.config_file, &x.deliver);
    if (!x.c) {
        rc = EXIT_RUNTIME;
        goto out_input;
    }
    if (a.cmd->mode != READ_ONLY && !json_array_size(json_object_get(config, "destinations")))
        out_info("no destination configured; events are only queued in %s", x.db_path);

    rc = a.cmd->run(&x);
    herald_close(x.c, 0);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        out_error("error writing to standard output: %s", strerror(errno));
        if (rc == EXIT_OK)
            rc = EXIT_RUNTIME;
    }

out_input:
    if (input && input != stdin)
        fclose(input);
out_config:
    json_decref(x.msg);
    json_decref(config);
out_settings:
    if (env_headers) {
        free((void *)s.headers);
        free(env_headers);
    }
out_args:
    secret_clear();
    free(a.headers);
    free(a.pos);
    return rc;
}
