/* TEMPORARY pass-through so the tree links while src/redact.c is written.
 * Deleted in the same change that adds src/redact.c to meson.build. */
#include <stdlib.h>
#include "redact.h"
struct herald_redactor { int unused; };
const char *herald_redact_rule_name(herald_redact_rule rule) { (void)rule; return "pending"; }
herald_status herald_redactor_create(const char *config_json, herald_redactor **out, char *err, size_t errlen)
{ (void)config_json; (void)err; (void)errlen; *out = calloc(1, sizeof **out); return *out ? HERALD_OK : HERALD_E_NO_MEMORY; }
void herald_redactor_free(herald_redactor *r) { free(r); }
herald_status herald_redact_event(const herald_redactor *r, json_t *event, herald_redact_stats *stats)
{ (void)r; (void)event; (void)stats; return HERALD_OK; }
char *herald_redact_string(const herald_redactor *r, const char *s, size_t len, herald_redact_context context, herald_redact_stats *stats, int *oom)
{ (void)r; (void)s; (void)len; (void)context; (void)stats; *oom = 0; return NULL; }
