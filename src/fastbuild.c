/*
 * The fast event builder (fastbuild.h).
 *
 * herald_fast_scan is one pass over the properties text: a validating JSON
 * scanner (the grammar and limits of json_loads with JSON_REJECT_DUPLICATES,
 * as herald_event_parse_object calls it) that copies the tokens without
 * white space, and at each member and value asks the redactor what
 * herald_redact_event would do there. The walk mirrors decide() and
 * process_scalar() in redact.c for plain objects (everything under
 * "properties"); the strings themselves go through the real pipeline
 * (redact_text_changes, redact_key_classify), so each verdict is exact. A
 * per-thread, direct-mapped cache keeps the verdicts on short strings, since
 * events repeat their keys and most of their values.
 *
 * Where the walk is unsure it does not try: escapes (the checked bytes would
 * not be the decoded ones), numbers jansson might refuse, allow paths (they
 * only ever exempt more, so ignoring them is the strict side: an event the
 * walk passes is one the allow paths cannot change).
 *
 * herald_fast_frame_build runs herald_event_finish on a probe event with and
 * without the redactor; the identity fields and the context of its result
 * are the frame, taken only when redaction left them untouched.
 */
#include "fastbuild.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redact_internal.h"

/* ================= arguments ================= */

void herald_fast_args_init(herald_fast_args *a)
{
    /* Field by field: the inline buffer needs no clearing. */
    a->type = NULL;
    a->text = a->small;
    a->name_len = a->props_len = a->slack = 0;
    a->cap = sizeof a->small;
}

void herald_fast_args_free(herald_fast_args *a)
{
    if (a->text != a->small)
        free(a->text);
    herald_fast_args_init(a);
}

static int args_reserve(herald_fast_args *a, size_t need)
{
    if (need <= a->cap)
        return 0;
    char *text = malloc(need);
    if (text == NULL)
        return -1;
    if (a->text != a->small)
        free(a->text);
    a->text = text;
    a->cap = need;
    return 0;
}

/* ================= the per-thread verdict cache ================= */

#define CACHE_ENTRIES 512 /* a power of two */
#define CACHE_TEXT 52     /* longer strings are checked every time */

/* What a cached verdict is about: a member name or a value, with the walk's
 * flags for it (RF_URL, RF_NO_IP). */
#define KIND_KEY 0x10u
#define KIND_VALUE 0x20u

/* A key's verdict bits. */
#define KEY_IS_SAFE 0x01u
#define KEY_IS_URL 0x02u
#define KEY_IS_NO_IP 0x04u
#define KEY_RENAMED 0x08u /* the member name itself would be redacted */

/* A value's verdict. */
#define VALUE_CHANGED 0x01u

typedef struct cache_entry {
    uint64_t redactor_id; /* 0: empty */
    uint8_t kind;
    uint8_t len;
    uint8_t verdict;
    uint8_t cls; /* keys: the class K1/K2 give, CLS_NONE if none */
    char text[CACHE_TEXT];
} cache_entry;

typedef struct thread_state {
    cache_entry entries[CACHE_ENTRIES];
    redact_run run; /* scratch for cache misses; run.r set per use */
} thread_state;

static pthread_key_t state_key;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static int state_key_ready;
static _Thread_local thread_state *state_tls;

static void state_destroy(void *p)
{
    thread_state *t = p;
    redact_run_free(&t->run);
    free(t);
    state_tls = NULL;
}

static void state_key_create(void)
{
    state_key_ready = pthread_key_create(&state_key, state_destroy) == 0;
}

/* The library may be unloaded while threads live: forget the destructor
 * (their caches then leak, once) rather than leave it pointing nowhere. */
__attribute__((destructor)) static void state_key_delete(void)
{
    if (state_key_ready)
        pthread_key_delete(state_key);
    state_key_ready = 0;
}

/* This thread's cache and scratch, created on first use; NULL if out of
 * memory (the caller falls back). */
static thread_state *thread_state_get(void)
{
    if (state_tls != NULL)
        return state_tls;
    pthread_once(&state_once, state_key_create);
    if (!state_key_ready)
        return NULL;
    thread_state *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    redact_run_init(&t->run, NULL, NULL);
    if (pthread_setspecific(state_key, t) != 0) {
        free(t);
        return NULL;
    }
    state_tls = t;
    return t;
}

static uint64_t hash_bytes(const char *s, size_t n, unsigned kind)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ ((uint64_t)n << 8) ^ kind;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
    }
    return h ^ (h >> 29);
}

static cache_entry *cache_slot(thread_state *t, uint64_t hash)
{
    return &t->entries[(hash >> 7) & (CACHE_ENTRIES - 1)];
}

static int cache_hit(const cache_entry *e, uint64_t redactor_id, unsigned kind, const char *s,
                     size_t n)
{
    return e->redactor_id == redactor_id && e->kind == kind && e->len == n &&
           memcmp(e->text, s, n) == 0;
}

static void cache_store(cache_entry *e, uint64_t redactor_id, unsigned kind, const char *s,
                        size_t n, unsigned verdict, unsigned cls)
{
    e->redactor_id = redactor_id;
    e->kind = (uint8_t)kind;
    e->len = (uint8_t)n;
    e->verdict = (uint8_t)verdict;
    e->cls = (uint8_t)cls;
    memcpy(e->text, s, n);
}

/* ================= redaction verdicts ================= */

typedef struct scan {
    const herald_redactor *r; /* NULL: redaction off */
    thread_state *t;
    const char *p;            /* next input byte */
    char *o;                  /* next output byte */
    size_t reals;
} scan;

/* What herald_redact_event's decide() and rename_members() would make of the
 * member name s[0,n) in an object whose own flags are parent_flags: its
 * verdict bits and class. -1 out of memory. */
static int key_verdict(scan *sc, const char *s, size_t n, unsigned parent_flags,
                       unsigned *verdict, unsigned *cls)
{
    unsigned rename_flags = parent_flags & RF_NO_IP;
    unsigned kind = KIND_KEY | rename_flags;
    cache_entry *e = NULL;
    if (n <= CACHE_TEXT) {
        e = cache_slot(sc->t, hash_bytes(s, n, kind));
        if (cache_hit(e, sc->r->id, kind, s, n)) {
            *verdict = e->verdict;
            *cls = e->cls;
            return 0;
        }
    }
    redact_run *run = &sc->t->run;
    run->r = sc->r;
    redact_key_info info;
    if (redact_key_classify(run, s, n, 0, 0, &info) != 0)
        return -1;
    int renamed = redact_text_changes(run, s, n, rename_flags);
    if (renamed < 0)
        return -1;
    *verdict = (info.safe ? KEY_IS_SAFE : 0u) | (info.url ? KEY_IS_URL : 0u) |
               (info.no_ip ? KEY_IS_NO_IP : 0u) | (renamed ? KEY_RENAMED : 0u);
    *cls = info.cls;
    if (e != NULL)
        cache_store(e, sc->r->id, kind, s, n, *verdict, *cls);
    return 0;
}

/* 1 if the value pipeline would change the string s[0,n) under flags, 0 if
 * not, -1 out of memory. */
static int value_changes(scan *sc, const char *s, size_t n, unsigned flags)
{
    unsigned kind = KIND_VALUE | (flags & (RF_URL | RF_NO_IP));
    cache_entry *e = NULL;
    if (n <= CACHE_TEXT) {
        e = cache_slot(sc->t, hash_bytes(s, n, kind));
        if (cache_hit(e, sc->r->id, kind, s, n))
            return e->verdict & VALUE_CHANGED;
    }
    sc->t->run.r = sc->r;
    int rc = redact_text_changes(&sc->t->run, s, n, flags & (RF_URL | RF_NO_IP));
    if (rc < 0)
        return -1;
    if (e != NULL)
        cache_store(e, sc->r->id, kind, s, n, rc ? VALUE_CHANGED : 0u, CLS_NONE);
    return rc;
}

/* How the walk treats one member or element: as in redact.c, skip (a safe
 * key: nothing below is looked at), the class a sensitive key gives, and
 * the flags. */
typedef struct place {
    uint8_t skip;
    uint8_t cls;
    uint8_t flags;
} place;

/* The member named s[0,n) of an object placed at parent: decide() of
 * redact.c for a plain object, without allow paths. Sets *fallback when the
 * name itself would be redacted (unless rename is 0: the event's root, whose
 * member names are never rewritten). */
static int member_place(scan *sc, const place *parent, const char *s, size_t n, int rename,
                        place *out, int *fallback)
{
    *out = *parent;
    if (parent->skip)
        return 0;
    unsigned verdict, cls;
    if (key_verdict(sc, s, n, parent->flags, &verdict, &cls) != 0)
        return -1;
    if (rename && (verdict & KEY_RENAMED)) {
        *fallback = 1;
        return 0;
    }
    out->flags = parent->flags & RF_NO_IP;
    if (verdict & KEY_IS_SAFE) {
        out->skip = 1;
        return 0;
    }
    if (cls != CLS_NONE)
        out->cls = (uint8_t)cls;
    if (verdict & KEY_IS_NO_IP)
        out->flags |= RF_NO_IP;
    if (verdict & KEY_IS_URL)
        out->flags |= RF_URL;
    return 0;
}

/* process_scalar() of redact.c on a string: 1 if it would stay, 0 if it
 * would change, -1 out of memory. */
static int string_stays(scan *sc, const place *at, const char *s, size_t n)
{
    if (at->skip)
        return 1;
    if (at->cls != CLS_NONE)
        return redact_is_trivial_value(s, n) || redact_is_redacted(sc->r, s, n);
    int rc = value_changes(sc, s, n, at->flags);
    return rc < 0 ? -1 : !rc;
}

/* ================= the JSON scanner ================= */

/* Byte classes inside a string: what the scanner does with each byte. */
enum { B_PLAIN = 0, B_QUOTE, B_STOP, B_LEAD2, B_LEAD3, B_LEAD4 };

static unsigned char string_class[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_build(void)
{
    for (unsigned c = 0; c < 256; c++) {
        unsigned char k = B_PLAIN;
        if (c < 0x20 || c == '\\')
            k = B_STOP; /* control characters are refused, escapes not decoded */
        else if (c == '"')
            k = B_QUOTE;
        else if (c >= 0xc2 && c <= 0xdf)
            k = B_LEAD2;
        else if (c >= 0xe0 && c <= 0xef)
            k = B_LEAD3;
        else if (c >= 0xf0 && c <= 0xf4)
            k = B_LEAD4;
        else if (c >= 0x80)
            k = B_STOP; /* continuation bytes alone, C0, C1, F5-FF */
        string_class[c] = k;
    }
}

static int is_continuation(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/* The end of a string's text starting at s (after the opening quote): the
 * closing quote, or NULL when the string holds an escape, a control
 * character, invalid UTF-8 (jansson's rules: shortest form, no surrogates,
 * at most U+10FFFF) or no closing quote. */
static const char *string_end(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        unsigned k = string_class[*p];
        if (k == B_PLAIN) {
            p++;
            continue;
        }
        if (k == B_QUOTE)
            return (const char *)p;
        if (k == B_STOP)
            return NULL;
        if (!is_continuation(p[1]))
            return NULL;
        if (k == B_LEAD2) {
            p += 2;
            continue;
        }
        if (!is_continuation(p[2]))
            return NULL;
        if (k == B_LEAD3) {
            if ((p[0] == 0xe0 && p[1] < 0xa0) ||  /* overlong */
                (p[0] == 0xed && p[1] >= 0xa0))   /* surrogates */
                return NULL;
            p += 3;
            continue;
        }
        if (!is_continuation(p[3]) || (p[0] == 0xf0 && p[1] < 0x90) || /* overlong */
            (p[0] == 0xf4 && p[1] >= 0x90))                             /* over U+10FFFF */
            return NULL;
        p += 4;
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* The end of the number at s, or NULL if it is not JSON or jansson could
 * refuse it ("too big integer", "real number overflow"). *real is set for
 * numbers with a fraction or exponent. Underflow is fine: strtod gives 0 or
 * a subnormal, which jansson takes. */
static const char *number_end(const char *s, int *real)
{
    const char *p = s;
    int negative = *p == '-';
    if (negative)
        p++;
    const char *digits = p;
    if (*p == '0')
        p++;
    else if (is_digit(*p))
        while (is_digit(*p))
            p++;
    else
        return NULL;
    size_t int_digits = (size_t)(p - digits);
    *real = 0;
    if (*p != '.' && *p != 'e' && *p != 'E') {
        /* int64: 19 digits at most, and at 19 no more than the limit. */
        if (int_digits < 19)
            return p;
        if (int_digits > 19)
            return NULL;
        return memcmp(digits, negative ? "9223372036854775808" : "9223372036854775807", 19) <= 0
                   ? p
                   : NULL;
    }
    *real = 1;
    /* The decimal exponent of the leading digit, roughly: the value is
     * below 10^magnitude, which must stay under DBL_MAX (~1.8e308). */
    long magnitude = digits[0] == '0' ? 0 : (long)int_digits;
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return NULL;
        while (is_digit(*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        int exponent_negative = 0;
        if (*p == '+' || *p == '-')
            exponent_negative = *p++ == '-';
        if (!is_digit(*p))
            return NULL;
        long exponent = 0;
        while (is_digit(*p)) {
            if (exponent < 100000)
                exponent = exponent * 10 + (*p - '0');
            p++;
        }
        magnitude += exponent_negative ? -exponent : exponent;
    }
    /* A fraction-only value (0.000...) is below 1 whatever its exponent
     * says about the digits after the zeros: magnitude is an upper bound. */
    return magnitude <= 308 ? p : NULL;
}

#define MAX_DEPTH 32
#define MAX_KEYS 256

typedef struct walk_frame {
    place at;
    uint8_t is_object;
    uint8_t opened;     /* nothing read since the bracket */
    uint16_t first_key; /* its keys are keys[first_key, key_count) */
    uint64_t bloom;     /* of its key hashes: most keys skip the duplicate search */
} walk_frame;

typedef struct key_record {
    uint64_t hash;
    const char *text; /* in the input */
    size_t len;
} key_record;

/* The properties object at sc->p, compact into sc->o; `root` is how the walk
 * places the "properties" member itself. 0 or HERALD_FAST_FALLBACK. */
static int scan_object(scan *sc, const place *root)
{
    walk_frame stack[MAX_DEPTH];
    key_record keys[MAX_KEYS];
    size_t depth = 0, key_count = 0;
    const char *p = skip_space(sc->p);
    char *o = sc->o;

    if (*p != '{')
        return HERALD_FAST_FALLBACK; /* not JSON, or not an object */
    stack[depth++] = (walk_frame){*root, 1, 1, 0, 0};
    *o++ = *p++;

    while (depth > 0) {
        walk_frame *f = &stack[depth - 1];
        p = skip_space(p);
        if (*p == (f->is_object ? '}' : ']')) {
            *o++ = *p++;
            key_count = f->first_key;
            depth--;
            continue;
        }
        if (!f->opened) {
            if (*p != ',')
                return HERALD_FAST_FALLBACK;
            *o++ = *p++;
            p = skip_space(p); /* a member must follow: no trailing comma */
        }
        f->opened = 0;

        place at = f->at;
        if (f->is_object) {
            if (*p != '"')
                return HERALD_FAST_FALLBACK;
            const char *key = p + 1;
            const char *end = string_end(key);
            if (end == NULL)
                return HERALD_FAST_FALLBACK;
            size_t len = (size_t)(end - key);
            uint64_t hash = hash_bytes(key, len, 0);
            uint64_t bit = (uint64_t)1 << (hash & 63);
            if (f->bloom & bit) {
                for (size_t i = f->first_key; i < key_count; i++)
                    if (keys[i].hash == hash && keys[i].len == len &&
                        memcmp(keys[i].text, key, len) == 0)
                        return HERALD_FAST_FALLBACK; /* jansson: "duplicate object key" */
            }
            if (key_count == MAX_KEYS)
                return HERALD_FAST_FALLBACK;
            f->bloom |= bit;
            keys[key_count++] = (key_record){hash, key, len};
            if (sc->r != NULL) {
                int renamed = 0;
                if (member_place(sc, &f->at, key, len, 1, &at, &renamed) != 0 || renamed)
                    return HERALD_FAST_FALLBACK;
            }
            memcpy(o, p, len + 2);
            o += len + 2;
            p = skip_space(end + 1);
            if (*p != ':')
                return HERALD_FAST_FALLBACK;
            *o++ = *p++;
            p = skip_space(p);
        }

        /* The value, placed at `at`. */
        char c = *p;
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return HERALD_FAST_FALLBACK;
            stack[depth++] = (walk_frame){at, c == '{', 1, (uint16_t)key_count, 0};
            *o++ = *p++;
            continue;
        }
        const char *end;
        if (c == '"') {
            end = string_end(p + 1);
            if (end == NULL)
                return HERALD_FAST_FALLBACK;
            if (sc->r != NULL && string_stays(sc, &at, p + 1, (size_t)(end - p - 1)) != 1)
                return HERALD_FAST_FALLBACK;
            end++;
        } else if (c == '-' || is_digit(c)) {
            int real;
            end = number_end(p, &real);
            if (end == NULL)
                return HERALD_FAST_FALLBACK;
            sc->reals += (size_t)real;
            /* process_scalar(): numbers under a sensitive key become
             * markers, integers elsewhere may be card numbers (V2). */
            if (sc->r != NULL && !at.skip &&
                (at.cls != CLS_NONE ||
                 (!real && redact_number_class(sc->r, p, (size_t)(end - p)) != CLS_NONE)))
                return HERALD_FAST_FALLBACK;
        } else if (strncmp(p, "true", 4) == 0) {
            end = p + 4;
        } else if (strncmp(p, "false", 5) == 0) {
            end = p + 5;
        } else if (strncmp(p, "null", 4) == 0) {
            end = p + 4;
        } else {
            return HERALD_FAST_FALLBACK;
        }
        /* What follows a scalar must end it: "12abc", "truex", "01" are not
         * JSON. */
        char next = *end;
        if (next != ',' && next != '}' && next != ']' && next != ' ' && next != '\t' &&
            next != '\n' && next != '\r')
            return HERALD_FAST_FALLBACK;
        memcpy(o, p, (size_t)(end - p));
        o += end - p;
        p = end;
    }
    if (*skip_space(p) != '\0')
        return HERALD_FAST_FALLBACK; /* jansson: "end of file expected" */
    sc->o = o;
    return 0;
}

/* The event name: a JSON string literal needing no escapes, valid UTF-8. */
static int name_ok(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return 0;
    }
    return herald_utf8_valid(name);
}

int herald_fast_scan(const herald_redactor *r, const char *type, const char *name,
                     const char *props_json, herald_fast_args *out)
{
    int is_track = type != NULL && strcmp(type, "track") == 0;
    int is_screen = type != NULL && strcmp(type, "screen") == 0;
    if (!is_track && !is_screen)
        return HERALD_FAST_FALLBACK;
    if (is_track && name == NULL)
        return HERALD_FAST_FALLBACK;
    if (r != NULL && !r->enabled)
        r = NULL;
    pthread_once(&tables_once, tables_build);

    size_t name_len = name != NULL ? strlen(name) : 0;
    const char *props = props_json != NULL ? props_json : "{}";
    size_t props_len = strlen(props);
    /* check_id(): a track's event is 1 to 1024 bytes. */
    if ((is_track && (name_len == 0 || name_len > 1024)) || name_len > HERALD_FAST_MAX_INPUT ||
        props_len > HERALD_FAST_MAX_INPUT)
        return HERALD_FAST_FALLBACK;
    if (name != NULL && !name_ok(name, name_len))
        return HERALD_FAST_FALLBACK;

    scan sc = {r, NULL, props, NULL, 0};
    if (r != NULL && (sc.t = thread_state_get()) == NULL)
        return HERALD_FAST_FALLBACK;
    /* Compact output never exceeds the input. */
    if (args_reserve(out, name_len + 2 + props_len + 1) != 0)
        return HERALD_FAST_FALLBACK;

    /* The event's root members: how the walk places "properties" and the
     * name member ("event" or "name"), whose values it then visits. */
    place root = {0, CLS_NONE, 0};
    place props_at = root;
    int unused = 0;
    if (r != NULL) {
        if (member_place(&sc, &root, "properties", 10, 0, &props_at, &unused) != 0)
            return HERALD_FAST_FALLBACK;
        if (name != NULL) {
            const char *key = is_track ? "event" : "name";
            place name_at;
            if (member_place(&sc, &root, key, strlen(key), 0, &name_at, &unused) != 0 ||
                string_stays(&sc, &name_at, name, name_len) != 1)
                return HERALD_FAST_FALLBACK;
        }
    }

    char *o = out->text;
    if (name != NULL) {
        *o++ = '"';
        memcpy(o, name, name_len);
        o += name_len;
        *o++ = '"';
    }
    out->name_len = (size_t)(o - out->text);
    sc.o = o;
    if (scan_object(&sc, &props_at) != 0)
        return HERALD_FAST_FALLBACK;
    out->props_len = (size_t)(sc.o - o);
    out->type = is_track ? "track" : "screen";
    /* json_dumps prints a real with "%.17g" (and ".0" when that has no '.'
     * or 'e'): at most 24 bytes plus 2, where the caller's spelling has at
     * least 1. */
    out->slack = sc.reals * 26;
    return 0;
}

/* ================= the frame ================= */

struct herald_fast_frame {
    /* ,"userId":…,"anonymousId":…,"context":{… — the context without its
     * closing brace, so a session can be added. */
    char *tail;
    size_t tail_len;
    int context_empty;  /* tail ends with "{" */
    int insert_session; /* the snapshot has no session of its own */
};

void herald_fast_frame_free(herald_fast_frame *f)
{
    if (f == NULL)
        return;
    free(f->tail);
    free(f);
}

static void probe_message_id(char out[37], void *ctx)
{
    (void)ctx;
    memcpy(out, "00000000-0000-4000-8000-000000000000", 37);
}

/* The slow path's body for a screen event without name or properties,
 * parsed; *stats gets what redaction did. A screen has no name to redact
 * and enriches its context as a track does. */
static int probe(const herald_event_env *env, const herald_redactor *r,
                 herald_redact_stats *stats, json_t **out)
{
    herald_event_env e = *env;
    e.now_ms = 0;
    e.max_event_bytes = UINT32_MAX;
    e.session_id = 1;
    e.session_sequence = 1;
    e.redactor = r;
    e.redactions = stats;
    e.new_message_id = probe_message_id;
    e.new_message_id_ctx = NULL;
    json_t *message = json_pack("{s:s}", "type", "screen");
    if (message == NULL)
        return HERALD_E_NO_MEMORY;
    char *text = NULL;
    size_t len = 0;
    const char *type;
    char err[256];
    herald_status st = herald_event_finish(&e, message, &text, &len, &type, err, sizeof err);
    if (st != HERALD_OK)
        return st == HERALD_E_NO_MEMORY ? HERALD_E_NO_MEMORY : HERALD_FAST_FALLBACK;
    *out = json_loadb(text, len, 0, NULL);
    free(text);
    return *out != NULL ? HERALD_OK : HERALD_E_NO_MEMORY;
}

static int append(char **buf, size_t *len, const char *s, size_t n)
{
    char *grown = realloc(*buf, *len + n + 1);
    if (grown == NULL)
        return -1;
    memcpy(grown + *len, s, n);
    *len += n;
    grown[*len] = '\0';
    *buf = grown;
    return 0;
}

/* ,"key":<value as json_dumps writes it> */
static int append_member(char **buf, size_t *len, const char *key, const json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return -1;
    int rc = append(buf, len, ",\"", 2) || append(buf, len, key, strlen(key)) ||
             append(buf, len, "\":", 2) || append(buf, len, text, strlen(text));
    free(text);
    return rc ? -1 : 0;
}

int herald_fast_frame_build(const herald_event_env *env, herald_fast_frame **out)
{
    *out = NULL;
    const herald_redactor *r = env->redactor;
    if (r != NULL && !r->enabled)
        r = NULL;
    json_t *plain = NULL, *redacted = NULL;
    herald_fast_frame *f = NULL;
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);

    int rc = probe(env, NULL, NULL, &plain);
    if (rc == HERALD_OK && r != NULL)
        rc = probe(env, r, &stats, &redacted);
    if (rc != HERALD_OK)
        goto done;
    /* Redaction must leave identity and context alone, and count nothing:
     * the fast path has no stats to report. */
    rc = HERALD_FAST_FALLBACK;
    for (int i = 0; i < HERALD_RULE_COUNT; i++)
        if (stats.count[i] != 0)
            goto done;
    if (redacted != NULL && !json_equal(plain, redacted))
        goto done;

    /* Nothing but what assemble writes itself and the frame's members. */
    static const char *const own[] = {"type", "properties", "messageId", "timestamp", "userId",
                                      "anonymousId", "context", NULL};
    const char *key;
    json_t *value;
    json_object_foreach(plain, key, value) {
        size_t i = 0;
        while (own[i] != NULL && strcmp(own[i], key) != 0)
            i++;
        if (own[i] == NULL)
            goto done;
    }
    json_t *context = json_object_get(plain, "context");
    if (!json_is_object(context))
        goto done;

    rc = HERALD_E_NO_MEMORY;
    if ((f = calloc(1, sizeof *f)) == NULL)
        goto done;
    /* enrich() adds a session only when the snapshot has none; the probe
     * had one, which each event replaces with its own. */
    f->insert_session = env->context == NULL || json_object_get(env->context, "session") == NULL;
    if (f->insert_session)
        json_object_del(context, "session");
    json_t *user_id = json_object_get(plain, "userId");
    json_t *anonymous_id = json_object_get(plain, "anonymousId");
    if ((user_id != NULL && append_member(&f->tail, &f->tail_len, "userId", user_id) != 0) ||
        (anonymous_id != NULL &&
         append_member(&f->tail, &f->tail_len, "anonymousId", anonymous_id) != 0) ||
        append_member(&f->tail, &f->tail_len, "context", context) != 0)
        goto done;
    f->tail_len--; /* the context's closing brace */
    f->context_empty = f->tail[f->tail_len - 1] == '{';
    *out = f;
    f = NULL;
    rc = HERALD_OK;
done:
    herald_fast_frame_free(f);
    json_decref(plain);
    json_decref(redacted);
    return rc;
}

/* ================= assembly ================= */

/* Decimal digits of v into buf (at least 20 bytes); returns the length. */
static size_t format_u64(uint64_t v, char *buf)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t format_i64(int64_t v, char *buf)
{
    if (v >= 0)
        return format_u64((uint64_t)v, buf);
    buf[0] = '-';
    return 1 + format_u64(0 - (uint64_t)v, buf + 1);
}

static void two_digits(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* herald_format_timestamp without gmtime_r and snprintf: the civil date of
 * a day count (H. Hinnant's days_from_civil inverse), for years 1970-9999;
 * others go through the reference. */
static void format_timestamp(int64_t unix_ms, char buf[25])
{
    if (unix_ms < 0 || unix_ms >= INT64_C(253402300800000)) {
        herald_format_timestamp(unix_ms, buf);
        return;
    }
    int64_t seconds = unix_ms / 1000;
    unsigned ms = (unsigned)(unix_ms % 1000);
    int64_t days = seconds / 86400;
    unsigned rest = (unsigned)(seconds % 86400);
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = (unsigned)(era * 400) + yoe + (month <= 2);
    two_digits(buf, year / 100);
    two_digits(buf + 2, year % 100);
    buf[4] = '-';
    two_digits(buf + 5, month);
    buf[7] = '-';
    two_digits(buf + 8, day);
    buf[10] = 'T';
    two_digits(buf + 11, rest / 3600);
    buf[13] = ':';
    two_digits(buf + 14, rest / 60 % 60);
    buf[16] = ':';
    two_digits(buf + 17, rest % 60);
    buf[19] = '.';
    buf[20] = (char)('0' + ms / 100);
    two_digits(buf + 21, ms % 100);
    buf[23] = 'Z';
    buf[24] = '\0';
}

/* Room for the fixed members: type and name key (24), properties key
 * (14), messageId (14 + 36 + 2), timestamp (15 + 24), session (1 + 16 +
 * 20 + 12 + 10 + 1), closing braces (2): 191, rounded up. */
#define FIXED_BYTES 256

size_t herald_fast_size_bound(const herald_fast_frame *f, const herald_fast_args *a)
{
    return FIXED_BYTES + a->name_len + a->props_len + f->tail_len;
}

int herald_fast_fits(const herald_fast_args *a, size_t length, uint32_t max_event_bytes)
{
    return length <= max_event_bytes && a->slack <= max_event_bytes - length;
}

typedef struct writer {
    char *p, *end;
    int overflow; /* something did not fit: nothing more is written */
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = 1;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define PUT_LITERAL(w, s) put((w), (s), sizeof(s) - 1)

size_t herald_fast_assemble(const herald_fast_frame *f, const herald_fast_args *a,
                            int64_t now_ms, const char message_id[37], int64_t session_id,
                            uint32_t session_sequence, char *dst, size_t cap)
{
    if (a->type == NULL)
        return 0;
    writer w = {dst, dst + cap, 0};
    int is_track = a->type[0] == 't';
    if (is_track)
        PUT_LITERAL(&w, "{\"type\":\"track\",\"event\":");
    else
        PUT_LITERAL(&w, "{\"type\":\"screen\"");
    if (!is_track && a->name_len > 0)
        PUT_LITERAL(&w, ",\"name\":");
    put(&w, a->text, a->name_len);
    PUT_LITERAL(&w, ",\"properties\":");
    put(&w, a->text + a->name_len, a->props_len);
    PUT_LITERAL(&w, ",\"messageId\":\"");
    put(&w, message_id, strnlen(message_id, 36));
    PUT_LITERAL(&w, "\",\"timestamp\":\"");
    char timestamp[25];
    format_timestamp(now_ms, timestamp);
    put(&w, timestamp, 24);
    PUT_LITERAL(&w, "\"");
    put(&w, f->tail, f->tail_len);
    if (f->insert_session && session_id != 0) {
        char number[24];
        if (!f->context_empty)
            PUT_LITERAL(&w, ",");
        PUT_LITERAL(&w, "\"session\":{\"id\":");
        put(&w, number, format_i64(session_id, number));
        PUT_LITERAL(&w, ",\"sequence\":");
        put(&w, number, format_u64(session_sequence, number));
        PUT_LITERAL(&w, "}");
    }
    PUT_LITERAL(&w, "}}");
    return w.overflow ? 0 : (size_t)(w.p - dst);
}
