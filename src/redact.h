/*
 * PII redaction: the rules of ../shared/PII.md (key rules K1-K2, structure
 * rules S1-S5, value detectors V1-V10, URL rules) as hand-written scanners
 * with validators, linear in the input, applied to a built event before it is
 * serialized, stored or sent.
 *
 * A redactor is compiled once per client from its configuration and is
 * immutable afterwards: any number of threads may use one concurrently.
 */
#ifndef HERALD_REDACT_H
#define HERALD_REDACT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/herald.h"

/* Rule ids, in the order of PII.md §0 plus custom patterns. Stats count
 * redactions per rule (never the values). */
typedef enum herald_redact_rule {
    HERALD_RULE_K1_SECRET_KEY = 0,
    HERALD_RULE_K2_PII_KEY,
    HERALD_RULE_S1_PEM,
    HERALD_RULE_S2_URL,
    HERALD_RULE_S3_AUTH,
    HERALD_RULE_S4_TOKEN,
    HERALD_RULE_S5_ASSIGNMENT,
    HERALD_RULE_V1_EMAIL,
    HERALD_RULE_V2_CARD,
    HERALD_RULE_V3_IBAN,
    HERALD_RULE_V4_SSN,
    HERALD_RULE_V5_PHONE,
    HERALD_RULE_V6_IPV4,
    HERALD_RULE_V7_IPV6,
    HERALD_RULE_V8_MAC,
    HERALD_RULE_V9_CRYPTO,
    HERALD_RULE_V10_USER_PATH,
    HERALD_RULE_CUSTOM,
    HERALD_RULE_COUNT
} herald_redact_rule;

/* Stable lowercase names for config and stats: "k1", "k2", "s1", …, "v10",
 * "custom". */
const char *herald_redact_rule_name(herald_redact_rule rule);

typedef struct herald_redact_stats {
    uint64_t count[HERALD_RULE_COUNT];
    /* Identity fields (userId, groupId, previousId) replaced by a plain
     * marker, not pseudonymised: no hash_key, or a secret (PII.md §2.1). */
    uint64_t identity_markers;
} herald_redact_stats;

typedef struct herald_redactor herald_redactor;

/* Compile a redactor from a JSON object (NULL or "{}" gives the default rule
 * set with markers). Keys (all optional; unknown keys are an error):
 *   "enabled": bool (default true: false turns redaction off entirely)
 *   "profile": "default" | "strict" | "secrets-only"       (PII.md §6)
 *   "rules": {"v5": false, "v8": true, ...}                 enable/disable by id
 *   "extra_keys": ["customer_ref", ...]                     more sensitive key names (K1)
 *   "safe_keys": ["token_count", ...]                       key names never treated as sensitive
 *   "allow_paths": ["/traits/email", ...]                   JSON-pointer paths into the event never scanned
 *   "mode": {"email": "hash" | "marker" | "keep_domain", "ip": "truncate" | "hash" | "marker", ...}
 *   "hash_key": "<64 hex chars>"                            HMAC-SHA-256 key; required by any "hash" mode
 *   "custom": [{"name": "order_ref", "pattern": "ORD-[0-9]{8}", "class": "secret"}]  POSIX ERE
 * Returns HERALD_OK with *out set, or HERALD_E_CONFIG with a message in err
 * (bad JSON, unknown rule, a hash mode without a key, a bad pattern). */
herald_status herald_redactor_create(const char *config_json, herald_redactor **out, char *err,
                                     size_t errlen);
void herald_redactor_free(herald_redactor *r);

/* Redact a whole event object in place, as PII.md §2 says: properties,
 * traits, context (page, campaign, userAgent, ip, and everything the caller
 * gave), identity fields (userId, groupId, previousId), nested objects and
 * arrays, member names; the exempt fields of §2.1 are left alone. Adds what
 * it did to *stats (may be NULL). Returns HERALD_OK, or HERALD_E_NO_MEMORY
 * (the event is then unusable and must not be stored). */
herald_status herald_redact_event(const herald_redactor *r, json_t *event,
                                  herald_redact_stats *stats);

/* The value context of PII.md §2.2 on one string. Returns a malloc'ed
 * redacted copy (caller frees), or NULL when nothing changed. *out_of_memory
 * is set when NULL means failure. */
typedef enum herald_redact_context {
    HERALD_REDACT_VALUE = 0,
    HERALD_REDACT_KEY = 1,
    HERALD_REDACT_URL = 2
} herald_redact_context;

char *herald_redact_string(const herald_redactor *r, const char *s, size_t len,
                           herald_redact_context context, herald_redact_stats *stats,
                           int *out_of_memory);

#endif
