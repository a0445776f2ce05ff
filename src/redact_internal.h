/*
 * Internals of the PII redactor (redact.h), shared by its source files:
 *   redact.c         configuration, the three-stage string pipeline, the
 *                    event walk, replacements and stats
 *   redact_keys.c    key-name tokenisation and the K1/K2 lists (PII.md §3)
 *   redact_detect.c  value scanners S1, S3-S5, V1-V10 and custom patterns
 *   redact_url.c     the URL structure rule S2 (PII.md §5)
 *   redact_hmac.c    SHA-256 and HMAC-SHA-256 (keyed hash mode, base58check)
 * Nothing here is exported from the library.
 */
#ifndef HERALD_REDACT_INTERNAL_H
#define HERALD_REDACT_INTERNAL_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "redact.h"

/* Replacement classes in priority order (PII.md §2.3): when spans overlap,
 * the merged span takes the class with the smallest value. */
enum redact_class {
    CLS_SECRET = 0,
    CLS_CARD,
    CLS_IBAN,
    CLS_EMAIL,
    CLS_SSN,
    CLS_PHONE,
    CLS_IP,
    CLS_MAC,
    CLS_IMEI,
    CLS_CRYPTO,
    CLS_USER,
    CLS_COUNT
};
#define CLS_NONE 0xffu

extern const char *const redact_class_names[CLS_COUNT];

enum redact_mode {
    MODE_MARKER = 0,
    MODE_HASH,
    MODE_KEEP_DOMAIN,      /* email only: [email]@example.com */
    MODE_KEEP_DOMAIN_HASH, /* email only: [email:<hash>]@example.com */
    MODE_TRUNCATE          /* ip only: [ip:198.51.100.0/24] */
};

/* ---- SHA-256 / HMAC (redact_hmac.c) ---- */

typedef struct redact_sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    unsigned char block[64];
    size_t used;
} redact_sha256;

void redact_sha256_init(redact_sha256 *ctx);
void redact_sha256_update(redact_sha256 *ctx, const void *data, size_t len);
void redact_sha256_final(redact_sha256 *ctx, unsigned char out[32]);
void redact_sha256_once(const void *data, size_t len, unsigned char out[32]);

/* HMAC-SHA-256 with the key folded into two midstates at configuration time,
 * so a hash costs the message plus two blocks. */
typedef struct redact_hmac_key {
    redact_sha256 inner, outer;
} redact_hmac_key;

void redact_hmac_key_init(redact_hmac_key *key, const unsigned char *secret, size_t len);
/* HMAC over the concatenation of up to three parts (NULL parts are skipped). */
void redact_hmac3(const redact_hmac_key *key, const void *a, size_t alen, const void *b,
                  size_t blen, const void *c, size_t clen, unsigned char out[32]);
/* Overwrite memory the compiler may not elide. */
void redact_wipe(void *p, size_t len);

/* ---- growable buffers ---- */

typedef struct redact_buf {
    char *data;
    size_t len, cap;
} redact_buf;

int redact_buf_reserve(redact_buf *b, size_t extra);
int redact_buf_append(redact_buf *b, const void *data, size_t len);
void redact_buf_free(redact_buf *b);
/* memmem for short needles, without relying on _GNU_SOURCE. */
const char *redact_find(const char *s, size_t n, const char *needle, size_t m);

typedef struct redact_span {
    size_t start, end;
    uint8_t cls;
    uint8_t rule;    /* herald_redact_rule */
    unsigned flags;  /* segments: RF_LEFT_MARKER, RF_RIGHT_MARKER; spans: RF_PLAIN */
} redact_span;

typedef struct redact_spans {
    redact_span *v;
    size_t n, cap;
} redact_spans;

int redact_spans_push(redact_spans *s, size_t start, size_t end, unsigned cls, unsigned rule);
void redact_spans_free(redact_spans *s);
/* Sort by start and merge overlapping spans into their union, keeping the
 * highest-priority class (and its rule); a union of different rules gets
 * RF_PLAIN. */
void redact_spans_merge(redact_spans *s);

/* ---- the redactor ---- */

/* One entry of the key-name table (PII.md §3.2-3.4 plus configuration). */
typedef struct redact_key_entry {
    const char *name; /* normalised: lowercase tokens joined by '_' */
    size_t len;
    uint8_t exact_cls, token_cls, bigram_cls; /* CLS_NONE when not listed */
    uint8_t flags;
} redact_key_entry;

#define KEY_META 0x01u        /* metadata suffix (§3.3) */
#define KEY_SAFE 0x02u        /* configured safe key: subtree never scanned */
#define KEY_URL_EXACT 0x04u   /* whole key names a URL field */
#define KEY_URL_LAST 0x08u    /* last token names a URL field (*_url) */
#define KEY_NOIP_TOKEN 0x10u  /* version/user-agent token: V6/V7 off below */
#define KEY_NOIP_BIGRAM 0x20u /* "user agent" */

typedef struct redact_custom {
    char *name;
    regex_t regex;
    uint8_t cls;
    size_t max_bytes; /* longer segments are not given to regexec */
} redact_custom;

#define REDACT_MAX_ALLOW_PATHS 64

typedef struct redact_allow_path {
    char **segments; /* unescaped JSON-pointer segments; "*" matches any */
    size_t count;
} redact_allow_path;

struct herald_redactor {
    uint64_t id; /* unique per redactor created in this process, never 0: the
                    fast event builder's caches are keyed by it (fastbuild.c) */
    int enabled;
    unsigned char rule_on[HERALD_RULE_COUNT];
    int imei_by_value; /* strict profile (PII.md §6) */
    unsigned char mode[CLS_COUNT];
    int has_key;
    redact_hmac_key hmac;

    redact_key_entry *keys;
    size_t key_count;
    char **key_storage; /* normalised configured names, owned */
    size_t key_storage_count;

    redact_allow_path *allow;
    size_t allow_count;

    redact_custom *custom;
    size_t custom_count;
};

/* ---- per-call state: everything mutable lives here, never in the
 * redactor, so one redactor serves any number of threads ---- */

typedef struct redact_run {
    const herald_redactor *r;
    herald_redact_stats *stats;
    redact_buf stage[3];          /* outputs of stages A, B, C */
    redact_spans spans;           /* spans of the current stage */
    redact_spans opaque[2];       /* URL ranges carried through stages */
    redact_spans segments;        /* scan segments between markers */
    redact_buf decoded;           /* URL component, percent-decoded */
    redact_buf decoded_name;      /* URL parameter name, percent-decoded */
    redact_spans any_spans;       /* detection inside a URL component */
    redact_spans any_segments;
    redact_buf key;               /* normalised key name */
    redact_buf normal;            /* hash input after normalisation */
    redact_buf custom;            /* NUL-terminated copy for regexec */
    redact_buf name;              /* redacted member name */
    redact_buf leaf;              /* replacement of a scalar under a sensitive key */
} redact_run;

void redact_run_init(redact_run *run, const herald_redactor *r, herald_redact_stats *stats);
void redact_run_free(redact_run *run);
void redact_count(redact_run *run, unsigned rule);

/* Flags of one string's processing. */
#define RF_URL 0x01u      /* the whole string is a URL field (§2.2 url) */
#define RF_NO_IP 0x02u    /* under a version or user-agent key: V6/V7 off */
#define RF_IDENTITY 0x04u /* userId/groupId/previousId: pseudonymise when keyed */
#define RF_SEGMENT 0x08u  /* a URL path segment: S4 and V rules only (§5.3) */
#define RF_LEFT_MARKER 0x100u  /* the segment starts right after a marker */
#define RF_RIGHT_MARKER 0x200u /* the segment ends right before a marker */
#define RF_PLAIN 0x400u        /* a merged span: no keep-domain (it would show the rest) */

/* Length of the marker that starts at s (s[0] == '['), or 0. Markers are the
 * texts this redactor can produce: [class], [class:<16 hex>] when a hash key
 * is configured, [ip:<a.b.c.0/24 or x:y:z::/48>] in truncate mode. */
size_t redact_marker_len(const herald_redactor *r, const char *s, size_t n);

/* The segments of s[0,n) that scanners see: the text minus markers and minus
 * the sorted ranges in opaque (which may be NULL), as spans in out whose
 * flags field holds RF_LEFT_MARKER / RF_RIGHT_MARKER. */
int redact_segments(const herald_redactor *r, const char *s, size_t n,
                    const redact_spans *opaque, redact_spans *out);

/* ---- key names (redact_keys.c) ---- */

typedef struct redact_key_info {
    uint8_t cls;   /* CLS_NONE unless K1/K2 (enabled) say sensitive */
    uint8_t rule;  /* HERALD_RULE_K1_SECRET_KEY or _K2_PII_KEY */
    uint8_t url;   /* values are URLs */
    uint8_t no_ip; /* V6/V7 exempt below */
    uint8_t safe;  /* configured safe key */
    uint8_t code;  /* the key is exactly "code" (URL rule 3a) */
} redact_key_info;

int redact_keys_build(herald_redactor *r, const char *const *extra, size_t extra_count,
                      const char *const *safe, size_t safe_count, int strict);
void redact_keys_free(herald_redactor *r);
/* Classify a key name as §3 says. url_param applies rule 3a (the caller
 * passes the decoded value length). Returns 0, or -1 when out of memory. */
int redact_key_classify(redact_run *run, const char *key, size_t len, int url_param,
                        size_t value_len, redact_key_info *info);

/* ---- detectors (redact_detect.c) ---- */

/* S1 PEM private-key bodies of the whole string. */
int redact_detect_pem(const herald_redactor *r, const char *s, size_t n, redact_spans *out);
/* Stage B (S3 auth schemes, S4 prefixed tokens, S5 inline assignment) on one
 * segment; spans are offset by base. */
int redact_detect_secrets(redact_run *run, const char *s, size_t n, size_t base, unsigned flags,
                          redact_spans *out);
/* Stage C (V1-V10, custom patterns) on one segment. */
int redact_detect_pii(redact_run *run, const char *s, size_t n, size_t base, unsigned flags,
                      redact_spans *out);
/* V2 on an integer's decimal text: CLS_CARD, CLS_IMEI (strict) or CLS_NONE. */
unsigned redact_number_class(const herald_redactor *r, const char *s, size_t n);
/* V6/V7 validation of a whole text (URL hosts). Returns the rule or -1. */
int redact_is_ip(const char *s, size_t n);
/* V1 shape of a whole text: returns the offset of the '@' (or of "%40") that
 * separates a dot-atom local part from a valid domain, or -1. */
long redact_email_split(const char *s, size_t n);

/* ---- URL structure (redact_url.c) ---- */

/* 1 if the whole string should be parsed as a URL in a URL field: an
 * absolute hierarchical URL (scheme://) or a relative one ('/', '?', '#'). */
int redact_url_whole(const char *s, size_t n);
/* Rewrite one URL as PII.md §5 says, appending the result to out. */
int redact_url_rewrite(redact_run *run, const char *s, size_t n, unsigned flags,
                       redact_buf *out);
/* Where the next scheme:// substring starts at or after from (and ends), for
 * the value context; 0 when there is none. */
int redact_url_find(const herald_redactor *r, const char *s, size_t n, size_t from,
                    size_t *start, size_t *end);

/* ---- shared by the URL rule and the pipeline (redact.c) ---- */

/* Run stages B and C over a decoded URL component. Sets *cls and *rule of the
 * top class (CLS_NONE when nothing fires) and the merged span of that class
 * (*span_start, *span_end) for the hash and the keep/truncate modes. */
int redact_detect_any(redact_run *run, const char *s, size_t n, unsigned flags, unsigned *cls,
                      unsigned *rule, size_t *span_start, size_t *span_end, unsigned *span_flags);
/* Append the replacement of text (class cls) to out: marker, keyed hash,
 * keep-domain or truncated IP as configured. */
int redact_emit(redact_run *run, redact_buf *out, unsigned cls, const char *text, size_t len,
                unsigned flags);
/* 1 for "", true, false, null, undefined (any case): kept under sensitive
 * keys and as S5 values. */
int redact_is_trivial_value(const char *s, size_t n);
/* 1 if s is already a replacement: a marker, or a marker followed by the
 * domain that keep-domain mode kept ("[email]@example.com"). */
int redact_is_redacted(const herald_redactor *r, const char *s, size_t n);

/* ---- for the fast event builder (fastbuild.c) ---- */

/* Whether the string pipeline the event walk runs on a value or a member
 * name (redact_text in redact.c) would change s[0,n) under flags (RF_URL,
 * RF_NO_IP): 1 changed, 0 unchanged, -1 out of memory. Exact, since it is
 * that pipeline; nothing is counted. run->r is the redactor asked. */
int redact_text_changes(redact_run *run, const char *s, size_t n, unsigned flags);

#endif
