/*
 * PII redaction (redact.h): configuration, the per-string pipeline of
 * PII.md §2.3, the walk over an event of §2.1-2.2, replacements (§2.4) and
 * stats. The scanners are in redact_detect.c, the URL rule in redact_url.c,
 * the key lists in redact_keys.c.
 *
 * A string goes through three stages, each on the output of the previous:
 *   A  S1 PEM bodies and S2 URLs (a URL field whole, or every scheme://
 *      substring of a value); the URLs become opaque ranges for B and C,
 *      which scan URLs only component-wise, through S2;
 *   B  S3, S4, S5 (all [secret]);
 *   C  V1-V10 and custom patterns; overlapping spans merge into their union
 *      with the highest-priority class.
 * Scanners see the text between markers and opaque ranges ("segments"), so
 * a marker is never rescanned and redact(redact(x)) == redact(x).
 *
 * The event walk is iterative (an explicit stack on the heap), so nesting
 * is bounded by memory, not by the C stack. Everything a call mutates lives
 * in a redact_run on that call's stack: the redactor itself is read-only
 * after herald_redactor_create and can be shared by any number of threads.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact_internal.h"

const char *const redact_class_names[CLS_COUNT] = {
    "secret", "card", "iban", "email", "ssn", "phone", "ip", "mac", "imei", "crypto", "user"};

static const char *const rule_names[HERALD_RULE_COUNT] = {
    "k1", "k2", "s1", "s2", "s3", "s4", "s5", "v1", "v2", "v3",
    "v4", "v5", "v6", "v7", "v8", "v9", "v10", "custom"};

const char *herald_redact_rule_name(herald_redact_rule rule)
{
    return (unsigned)rule < HERALD_RULE_COUNT ? rule_names[rule] : "unknown";
}

/* Longest segment given to a custom pattern unless the pattern says. */
#define CUSTOM_MAX_BYTES_DEFAULT 4096

/* ================= buffers and spans ================= */

int redact_buf_reserve(redact_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

int redact_buf_append(redact_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (redact_buf_reserve(b, len) != 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

const char *redact_find(const char *s, size_t n, const char *needle, size_t m)
{
    if (m == 0 || n < m)
        return NULL;
    const char *end = s + n - m + 1;
    for (const char *p = s; p < end;) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (p == NULL)
            return NULL;
        if (memcmp(p, needle, m) == 0)
            return p;
        p++;
    }
    return NULL;
}

void redact_buf_free(redact_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int redact_spans_push(redact_spans *s, size_t start, size_t end, unsigned cls, unsigned rule)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof *s->v)
            return -1;
        redact_span *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (redact_span){start, end, (uint8_t)cls, (uint8_t)rule, 0};
    return 0;
}

void redact_spans_free(redact_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int compare_spans(const void *pa, const void *pb)
{
    const redact_span *a = pa, *b = pb;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    if (a->end != b->end)
        return a->end > b->end ? -1 : 1;
    return (int)a->cls - (int)b->cls;
}

void redact_spans_merge(redact_spans *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof *s->v, compare_spans);
    size_t out = 0;
    for (size_t i = 1; i < s->n; i++) {
        redact_span *cur = &s->v[out];
        const redact_span *next = &s->v[i];
        if (next->start < cur->end) {
            if (next->rule != cur->rule || next->start != cur->start || next->end > cur->end)
                cur->flags |= RF_PLAIN;
            cur->flags |= next->flags & RF_PLAIN;
            if (next->end > cur->end)
                cur->end = next->end;
            if (next->cls < cur->cls) {
                cur->cls = next->cls;
                cur->rule = next->rule;
            }
        } else {
            s->v[++out] = *next;
        }
    }
    s->n = out + 1;
}

void redact_count(redact_run *run, unsigned rule)
{
    if (run->stats != NULL && rule < HERALD_RULE_COUNT)
        run->stats->count[rule]++;
}

void redact_run_init(redact_run *run, const herald_redactor *r, herald_redact_stats *stats)
{
    memset(run, 0, sizeof *run);
    run->r = r;
    run->stats = stats;
}

void redact_run_free(redact_run *run)
{
    for (size_t i = 0; i < 3; i++)
        redact_buf_free(&run->stage[i]);
    redact_spans_free(&run->spans);
    redact_spans_free(&run->opaque[0]);
    redact_spans_free(&run->opaque[1]);
    redact_spans_free(&run->segments);
    redact_buf_free(&run->decoded);
    redact_buf_free(&run->decoded_name);
    redact_spans_free(&run->any_spans);
    redact_spans_free(&run->any_segments);
    redact_buf_free(&run->key);
    redact_buf_free(&run->normal);
    redact_buf_free(&run->custom);
    redact_buf_free(&run->name);
    redact_buf_free(&run->leaf);
}

/* ================= markers ================= */

static int is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* The truncated form of an IP ("198.51.100.0/24", "2001:db8:1::/48") into
 * out (at least 64 bytes), or 0 when text is no IP. */
static size_t ip_truncate(const char *text, size_t n, char *out)
{
    char addr_text[INET6_ADDRSTRLEN + 1];
    size_t len = n;
    const char *zone = memchr(text, '%', n);
    if (zone != NULL)
        len = (size_t)(zone - text);
    if (len == 0 || len >= sizeof addr_text)
        return 0;
    memcpy(addr_text, text, len);
    addr_text[len] = '\0';
    unsigned char addr[16];
    char formatted[INET6_ADDRSTRLEN];
    if (memchr(addr_text, ':', len) == NULL) {
        if (inet_pton(AF_INET, addr_text, addr) != 1)
            return 0;
        addr[3] = 0;
        if (inet_ntop(AF_INET, addr, formatted, sizeof formatted) == NULL)
            return 0;
        return (size_t)snprintf(out, 64, "%s/24", formatted);
    }
    if (inet_pton(AF_INET6, addr_text, addr) != 1)
        return 0;
    memset(addr + 6, 0, 10);
    if (inet_ntop(AF_INET6, addr, formatted, sizeof formatted) == NULL)
        return 0;
    return (size_t)snprintf(out, 64, "%s/48", formatted);
}

size_t redact_marker_len(const herald_redactor *r, const char *s, size_t n)
{
    if (n < 3 || s[0] != '[')
        return 0;
    for (unsigned cls = 0; cls < CLS_COUNT; cls++) {
        const char *name = redact_class_names[cls];
        size_t len = strlen(name);
        if (n < len + 2 || memcmp(s + 1, name, len) != 0)
            continue;
        size_t k = 1 + len;
        if (s[k] == ']')
            return k + 1;
        if (s[k] != ':')
            return 0;
        /* Hash markers exist only when a key is configured, so without one
         * "[card:4111111111111111]" is text and gets scanned. */
        if (r->has_key && cls != CLS_SECRET && n >= k + 18) {
            size_t h = 0;
            while (h < 16 && is_lower_hex((unsigned char)s[k + 1 + h]))
                h++;
            if (h == 16 && s[k + 17] == ']')
                return k + 18;
        }
        if (cls == CLS_IP && r->mode[CLS_IP] == MODE_TRUNCATE) {
            const char *close = memchr(s + k, ']', n - k < 64 ? n - k : 64);
            const char *slash = close != NULL ? memchr(s + k, '/', (size_t)(close - s) - k) : NULL;
            if (slash != NULL) {
                char canonical[64];
                size_t inner = (size_t)(close - s) - k - 1;
                size_t got = ip_truncate(s + k + 1, (size_t)(slash - s) - k - 1, canonical);
                if (got == inner && memcmp(canonical, s + k + 1, inner) == 0)
                    return (size_t)(close - s) + 1;
            }
        }
        return 0;
    }
    return 0;
}

int redact_is_redacted(const herald_redactor *r, const char *s, size_t n)
{
    if (n == 0 || s[0] != '[')
        return 0;
    size_t m = redact_marker_len(r, s, n);
    if (m == 0)
        return 0;
    if (m == n)
        return 1;
    /* keep-domain output: the marker stands for the local part */
    if (s[m] == '@' || (n - m >= 3 && memcmp(s + m, "%40", 3) == 0)) {
        for (size_t i = m + (s[m] == '@' ? 1 : 3); i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c >= 0x80))
                return 0;
        }
        return 1;
    }
    return 0;
}

static int is_url_stop(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' ||
           c == '"' || c == '\'' || c == '<' || c == '>';
}

/* Close the segment [seg, end): its left edge is a marker unless it starts
 * the string, its right edge unless it ends it. */
static int push_segment(redact_spans *out, size_t seg, size_t end, size_t n)
{
    if (end <= seg)
        return 0;
    if (redact_spans_push(out, seg, end, 0, 0) != 0)
        return -1;
    out->v[out->n - 1].flags = (seg > 0 ? RF_LEFT_MARKER : 0u) | (end < n ? RF_RIGHT_MARKER : 0u);
    return 0;
}

int redact_segments(const herald_redactor *r, const char *s, size_t n,
                    const redact_spans *opaque, redact_spans *out)
{
    out->n = 0;
    size_t i = 0, seg = 0, next_opaque = 0;
    while (i < n) {
        size_t stop = n;
        if (opaque != NULL && next_opaque < opaque->n)
            stop = opaque->v[next_opaque].start;
        if (i == stop) {
            if (push_segment(out, seg, i, n) != 0)
                return -1;
            i = opaque->v[next_opaque++].end;
            /* A URL in text ends at its first white space, quote or <>,
             * less trailing punctuation. Those bytes are not scanned: a span
             * that swallowed the stop byte would let a second pass read the
             * URL on into the marker. */
            while (i < n && s[i] != 0 && strchr(".,;:!?)]", s[i]) != NULL)
                i++;
            if (i < n && is_url_stop((unsigned char)s[i]))
                i++;
            seg = i;
            continue;
        }
        const char *bracket = memchr(s + i, '[', stop - i);
        if (bracket == NULL) {
            i = stop;
            continue;
        }
        i = (size_t)(bracket - s);
        size_t m = redact_marker_len(r, s + i, n - i);
        if (m == 0) {
            i++;
            continue;
        }
        if (push_segment(out, seg, i, n) != 0)
            return -1;
        i = seg = i + m;
    }
    return push_segment(out, seg, n, n);
}

int redact_is_trivial_value(const char *s, size_t n)
{
    static const char *const words[] = {"true", "false", "null", "undefined"};
    if (n == 0)
        return 1;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t len = strlen(words[i]);
        if (n != len)
            continue;
        size_t k = 0;
        while (k < len && (s[k] | 0x20) == words[i][k])
            k++;
        if (k == len)
            return 1;
    }
    return 0;
}

/* ================= replacements ================= */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* PII.md §2.4 normalisation before hashing, into run->normal. */
static int normalize(redact_run *run, unsigned cls, const char *s, size_t n)
{
    redact_buf *b = &run->normal;
    b->len = 0;
    if (redact_buf_reserve(b, n + INET6_ADDRSTRLEN + 1) != 0)
        return -1;
    char *o = b->data;
    size_t m = 0;
    switch (cls) {
    case CLS_EMAIL: {
        size_t a = 0, e = n;
        while (a < e && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t'))
            e--;
        for (size_t i = a; i < e; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '%' && e - i >= 3 && s[i + 1] == '4' && s[i + 2] == '0') {
                o[m++] = '@';
                i += 2;
            } else {
                o[m++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            }
        }
        break;
    }
    case CLS_PHONE:
        for (size_t i = 0; i < n; i++) {
            if (m == 0 && s[i] == '+')
                o[m++] = '+';
            else if (is_digit((unsigned char)s[i]))
                o[m++] = s[i];
        }
        break;
    case CLS_CARD:
    case CLS_SSN:
    case CLS_IMEI:
        for (size_t i = 0; i < n; i++)
            if (is_digit((unsigned char)s[i]))
                o[m++] = s[i];
        break;
    case CLS_IBAN:
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c >= 'a' && c <= 'z')
                o[m++] = (char)(c - 'a' + 'A');
            else if ((c >= 'A' && c <= 'Z') || is_digit(c))
                o[m++] = (char)c;
        }
        break;
    case CLS_MAC:
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c >= 'A' && c <= 'F')
                o[m++] = (char)(c - 'A' + 'a');
            else if (is_lower_hex(c))
                o[m++] = (char)c;
        }
        break;
    case CLS_IP: {
        char text[INET6_ADDRSTRLEN + 1];
        unsigned char addr[16];
        size_t len = n;
        const char *zone = memchr(s, '%', n);
        if (zone != NULL)
            len = (size_t)(zone - s);
        if (len > 0 && len < sizeof text) {
            memcpy(text, s, len);
            text[len] = '\0';
            int family = memchr(text, ':', len) != NULL ? AF_INET6 : AF_INET;
            if (inet_pton(family, text, addr) == 1 &&
                inet_ntop(family, addr, o, INET6_ADDRSTRLEN) != NULL) {
                m = strlen(o);
                break;
            }
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            o[m++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        break;
    }
    default:
        memcpy(o, s, n);
        m = n;
        break;
    }
    if (m == 0) { /* nothing left to normalise on: hash the text itself */
        memcpy(o, s, n);
        m = n;
    }
    b->len = m;
    return 0;
}

static int append_marker(redact_run *run, redact_buf *out, unsigned cls, int hash,
                         const char *text, size_t len)
{
    const char *name = redact_class_names[cls];
    if (redact_buf_append(out, "[", 1) != 0 || redact_buf_append(out, name, strlen(name)) != 0)
        return -1;
    if (hash) {
        if (normalize(run, cls, text, len) != 0)
            return -1;
        unsigned char mac[32];
        static const char separator = 0x1f;
        redact_hmac3(&run->r->hmac, name, strlen(name), &separator, 1, run->normal.data,
                     run->normal.len, mac);
        static const char hex[] = "0123456789abcdef";
        char digest[17];
        digest[0] = ':';
        for (int i = 0; i < 8; i++) {
            digest[1 + 2 * i] = hex[mac[i] >> 4];
            digest[2 + 2 * i] = hex[mac[i] & 15];
        }
        if (redact_buf_append(out, digest, sizeof digest) != 0)
            return -1;
    }
    return redact_buf_append(out, "]", 1);
}

int redact_emit(redact_run *run, redact_buf *out, unsigned cls, const char *text, size_t len,
                unsigned flags)
{
    const herald_redactor *r = run->r;
    unsigned mode = cls < CLS_COUNT ? r->mode[cls] : MODE_MARKER;
    /* Every user whose id this is becomes one: the client warns (§2.1). */
    if ((flags & RF_IDENTITY) && (cls == CLS_SECRET || !r->has_key) && run->stats != NULL)
        run->stats->identity_markers++;
    if (cls == CLS_SECRET)
        return append_marker(run, out, cls, 0, text, len);
    /* Identity fields are pseudonymised whenever there is a key (§2.1):
     * "[email]" as a userId would merge every user into one. */
    if ((flags & RF_IDENTITY) && r->has_key)
        mode = mode == MODE_KEEP_DOMAIN || mode == MODE_KEEP_DOMAIN_HASH ? MODE_KEEP_DOMAIN_HASH
                                                                         : MODE_HASH;
    switch (mode) {
    case MODE_HASH:
        return append_marker(run, out, cls, 1, text, len);
    case MODE_KEEP_DOMAIN:
    case MODE_KEEP_DOMAIN_HASH: {
        long at = cls == CLS_EMAIL && !(flags & RF_PLAIN) ? redact_email_split(text, len) : -1;
        if (at >= 0) {
            /* What is kept must hold nothing another rule would take. */
            size_t d = (size_t)at + (text[at] == '@' ? 1 : 3);
            unsigned found, rule, span_flags;
            size_t a, b;
            if (redact_detect_any(run, text + d, len - d, flags & RF_NO_IP, &found, &rule, &a, &b,
                                  &span_flags) != 0)
                return -1;
            if (found != CLS_NONE)
                at = -1;
        }
        int hash = mode == MODE_KEEP_DOMAIN_HASH;
        if (append_marker(run, out, cls, hash, text, len) != 0)
            return -1;
        return at < 0 ? 0 : redact_buf_append(out, text + at, len - (size_t)at);
    }
    case MODE_TRUNCATE: {
        char truncated[64];
        size_t got = ip_truncate(text, len, truncated);
        if (got == 0 || got >= sizeof truncated)
            return append_marker(run, out, cls, 0, text, len);
        return redact_buf_append(out, "[ip:", 4) != 0 ||
                       redact_buf_append(out, truncated, got) != 0 ||
                       redact_buf_append(out, "]", 1) != 0
                   ? -1
                   : 0;
    }
    default:
        return append_marker(run, out, cls, 0, text, len);
    }
}

/* ================= the string pipeline ================= */

/* Replace the spans (sorted, disjoint, outside the opaque ranges) of s into
 * out, carrying the opaque ranges over to their new offsets. */
static int apply_spans(redact_run *run, const char *s, size_t n, const redact_spans *spans,
                       const redact_spans *opaque_in, redact_buf *out, redact_spans *opaque_out,
                       unsigned flags)
{
    out->len = 0;
    opaque_out->n = 0;
    size_t pos = 0, next_opaque = 0;
    for (size_t k = 0; k <= spans->n; k++) {
        size_t gap_end = k < spans->n ? spans->v[k].start : n;
        while (opaque_in != NULL && next_opaque < opaque_in->n &&
               opaque_in->v[next_opaque].end <= gap_end) {
            const redact_span *o = &opaque_in->v[next_opaque++];
            if (redact_spans_push(opaque_out, out->len + (o->start - pos),
                                  out->len + (o->end - pos), 0, 0) != 0)
                return -1;
        }
        if (redact_buf_append(out, s + pos, gap_end - pos) != 0)
            return -1;
        if (k == spans->n)
            break;
        const redact_span *sp = &spans->v[k];
        redact_count(run, sp->rule);
        if (redact_emit(run, out, sp->cls, s + sp->start, sp->end - sp->start,
                        flags | (sp->flags & RF_PLAIN)) != 0)
            return -1;
        pos = sp->end;
    }
    return 0;
}

/* Stage A: PEM bodies, then URLs in the gaps between them. */
static int stage_structure(redact_run *run, const char *s, size_t n, unsigned flags,
                           redact_buf *out, redact_spans *opaque, int *changed)
{
    const herald_redactor *r = run->r;
    out->len = 0;
    opaque->n = 0;
    *changed = 0;
    if ((flags & RF_URL) && r->rule_on[HERALD_RULE_S2_URL] && redact_url_whole(s, n)) {
        if (redact_url_rewrite(run, s, n, flags, out) != 0 ||
            redact_spans_push(opaque, 0, out->len, 0, 0) != 0)
            return -1;
        *changed = out->len != n || memcmp(out->data, s, n) != 0;
        return 0;
    }
    redact_spans *pem = &run->spans;
    pem->n = 0;
    if (r->rule_on[HERALD_RULE_S1_PEM] && redact_detect_pem(r, s, n, pem) != 0)
        return -1;
    size_t pos = 0;
    for (size_t k = 0; k <= pem->n; k++) {
        size_t gap_end = k < pem->n ? pem->v[k].start : n;
        size_t a, b;
        while (r->rule_on[HERALD_RULE_S2_URL] && pos < gap_end &&
               redact_url_find(r, s, gap_end, pos, &a, &b)) {
            if (redact_buf_append(out, s + pos, a - pos) != 0)
                return -1;
            size_t start = out->len;
            if (redact_url_rewrite(run, s + a, b - a, flags, out) != 0 ||
                redact_spans_push(opaque, start, out->len, 0, 0) != 0)
                return -1;
            if (out->len - start != b - a || memcmp(out->data + start, s + a, b - a) != 0)
                *changed = 1;
            pos = b;
        }
        if (redact_buf_append(out, s + pos, gap_end - pos) != 0)
            return -1;
        if (k == pem->n)
            break;
        redact_count(run, HERALD_RULE_S1_PEM);
        if (redact_emit(run, out, CLS_SECRET, s + pem->v[k].start,
                        pem->v[k].end - pem->v[k].start, flags) != 0)
            return -1;
        *changed = 1;
        pos = pem->v[k].end;
    }
    return 0;
}

/* Stage B (secrets) or C (PII) over the segments of s. */
static int stage_scan(redact_run *run, int pii, const char *s, size_t n,
                      const redact_spans *opaque, unsigned flags, redact_spans *spans)
{
    spans->n = 0;
    if (redact_segments(run->r, s, n, opaque, &run->segments) != 0)
        return -1;
    for (size_t k = 0; k < run->segments.n; k++) {
        size_t a = run->segments.v[k].start, b = run->segments.v[k].end;
        unsigned seg_flags = flags | run->segments.v[k].flags;
        int rc = pii ? redact_detect_pii(run, s + a, b - a, a, seg_flags, spans)
                     : redact_detect_secrets(run, s + a, b - a, a, seg_flags, spans);
        if (rc != 0)
            return -1;
    }
    redact_spans_merge(spans);
    return 0;
}

/* Cheap test for stage A's anchors. */
static int has_structure(const char *s, size_t n)
{
    return redact_find(s, n, "://", 3) != NULL || redact_find(s, n, "-----BEGIN ", 11) != NULL;
}

/* The pipeline on one string. Returns 1 with *out (run-owned until the next
 * call) when something changed, 0 when nothing did, -1 out of memory. */
static int redact_text(redact_run *run, const char *s, size_t n, unsigned flags, const char **out,
                       size_t *outlen)
{
    const char *cur = s;
    size_t len = n;
    const redact_spans *opaque = NULL;
    int changed = 0;
    if (n == 0)
        return 0;

    if (((flags & RF_URL) && redact_url_whole(s, n)) || has_structure(s, n)) {
        int a_changed;
        if (stage_structure(run, s, n, flags, &run->stage[0], &run->opaque[0], &a_changed) != 0)
            return -1;
        if (a_changed) {
            cur = run->stage[0].data;
            len = run->stage[0].len;
            changed = 1;
        }
        opaque = &run->opaque[0];
    }

    for (int pii = 0; pii <= 1; pii++) {
        if (stage_scan(run, pii, cur, len, opaque, flags, &run->spans) != 0)
            return -1;
        if (run->spans.n == 0)
            continue;
        redact_buf *next = &run->stage[1 + pii];
        redact_spans *next_opaque = &run->opaque[pii == 0 ? 1 : 0];
        if (next_opaque == opaque) /* never write the ranges being read */
            next_opaque = &run->opaque[1];
        if (apply_spans(run, cur, len, &run->spans, opaque, next, next_opaque, flags) != 0)
            return -1;
        cur = next->data;
        len = next->len;
        opaque = next_opaque;
        changed = 1;
    }
    *out = cur;
    *outlen = len;
    return changed;
}

int redact_text_changes(redact_run *run, const char *s, size_t n, unsigned flags)
{
    const char *out;
    size_t out_len;
    herald_redact_stats *stats = run->stats;
    run->stats = NULL;
    int rc = redact_text(run, s, n, flags, &out, &out_len);
    run->stats = stats;
    return rc;
}

int redact_detect_any(redact_run *run, const char *s, size_t n, unsigned flags, unsigned *cls,
                      unsigned *rule, size_t *span_start, size_t *span_end, unsigned *span_flags)
{
    *span_flags = 0;
    redact_spans *spans = &run->any_spans;
    *cls = CLS_NONE;
    *rule = 0;
    *span_start = *span_end = 0;
    spans->n = 0;
    if (redact_segments(run->r, s, n, NULL, &run->any_segments) != 0)
        return -1;
    for (size_t k = 0; k < run->any_segments.n; k++) {
        size_t a = run->any_segments.v[k].start, b = run->any_segments.v[k].end;
        unsigned seg_flags = flags | run->any_segments.v[k].flags;
        if (redact_detect_secrets(run, s + a, b - a, a, seg_flags, spans) != 0 ||
            redact_detect_pii(run, s + a, b - a, a, seg_flags, spans) != 0)
            return -1;
    }
    redact_spans_merge(spans);
    for (size_t k = 0; k < spans->n; k++) {
        if (spans->v[k].cls < *cls) {
            *cls = spans->v[k].cls;
            *rule = spans->v[k].rule;
            *span_start = spans->v[k].start;
            *span_end = spans->v[k].end;
            *span_flags = spans->v[k].flags & RF_PLAIN;
        }
    }
    return 0;
}

/* ================= the event walk ================= */

enum frame_kind { FRAME_PLAIN, FRAME_ROOT, FRAME_CONTEXT, FRAME_APP, FRAME_DEVICE, FRAME_SESSION,
                  FRAME_PAGE };

typedef struct frame {
    json_t *node;
    void *iter;   /* objects */
    size_t index; /* arrays */
    uint64_t allow;
    size_t depth;
    uint8_t kind;
    uint8_t cls, rule;
    unsigned flags;
} frame;

typedef struct frame_stack {
    frame *v;
    size_t n, cap;
} frame_stack;

static int push_frame(frame_stack *st, const frame *f)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 32;
        frame *v = realloc(st->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        st->v = v;
        st->cap = cap;
    }
    st->v[st->n++] = *f;
    return 0;
}

/* What to do with one member or element. */
typedef struct member {
    int skip;
    uint64_t allow;
    uint8_t kind;
    uint8_t cls, rule;
    unsigned flags;
} member;

static int name_is(const char *name, size_t len, const char *literal)
{
    return strlen(literal) == len && memcmp(name, literal, len) == 0;
}

static int name_in(const char *name, size_t len, const char *const *list)
{
    for (; *list != NULL; list++)
        if (name_is(name, len, *list))
            return 1;
    return 0;
}

/* Fields herald fills itself (PII.md §2.1). */
static const char *const root_exempt[] = {"messageId",  "timestamp",   "sentAt",
                                          "originalTimestamp", "receivedAt", "type",
                                          "anonymousId", NULL};
static const char *const root_identity[] = {"userId", "groupId", "previousId", NULL};
static const char *const context_exempt[] = {"library", "os", "screen", "locale", "timezone",
                                             NULL};
static const char *const page_urls[] = {"url", "referrer", "path", "search", NULL};

/* The position rules alone: allow paths and herald's own fields. Sets
 * m->skip, m->allow, m->kind and position flags. */
static void place_member(const herald_redactor *r, const frame *f, const char *name, size_t len,
                         member *m)
{
    for (size_t b = 0; b < r->allow_count; b++) {
        uint64_t bit = (uint64_t)1 << b;
        if (!(f->allow & bit))
            continue;
        const redact_allow_path *p = &r->allow[b];
        const char *seg = p->segments[f->depth];
        if (strcmp(seg, "*") == 0 || name_is(name, len, seg)) {
            if (p->count == f->depth + 1) {
                m->skip = 1;
                return;
            }
            m->allow |= bit;
        }
    }
    switch (f->kind) {
    case FRAME_ROOT:
        if (name_in(name, len, root_exempt))
            m->skip = 1;
        else if (name_in(name, len, root_identity))
            m->flags |= RF_IDENTITY;
        else if (name_is(name, len, "context"))
            m->kind = FRAME_CONTEXT;
        break;
    case FRAME_CONTEXT:
        if (name_in(name, len, context_exempt))
            m->skip = 1;
        else if (name_is(name, len, "app"))
            m->kind = FRAME_APP;
        else if (name_is(name, len, "device"))
            m->kind = FRAME_DEVICE;
        else if (name_is(name, len, "session"))
            m->kind = FRAME_SESSION;
        else if (name_is(name, len, "page"))
            m->kind = FRAME_PAGE;
        else if (name_is(name, len, "groupId"))
            m->flags |= RF_IDENTITY;
        break;
    case FRAME_APP:
        m->skip = name_is(name, len, "version") || name_is(name, len, "build");
        break;
    case FRAME_DEVICE:
        m->skip = name_is(name, len, "type");
        break;
    case FRAME_SESSION:
        m->skip = name_is(name, len, "id");
        break;
    case FRAME_PAGE:
        if (name_in(name, len, page_urls))
            m->flags |= RF_URL;
        break;
    default:
        break;
    }
}

/* fastbuild.c mirrors decide() and process_scalar() for plain objects (its
 * member_place, string_stays): a change here needs the same change there;
 * tests/unit/test_fastbuild.c and fuzz_fastbuild compare the two. */
static int decide(redact_run *run, const frame *f, const char *name, size_t len, int keyed,
                  member *m)
{
    memset(m, 0, sizeof *m);
    m->kind = FRAME_PLAIN;
    m->cls = f->cls;
    m->rule = f->rule;
    /* Array elements are what their array's key says; object members
     * inherit only the version/user-agent exemption. */
    m->flags = keyed ? (f->flags & RF_NO_IP) : f->flags;
    place_member(run->r, f, name, len, m);
    if (m->skip || !keyed)
        return 0;
    redact_key_info info;
    if (redact_key_classify(run, name, len, 0, 0, &info) != 0)
        return -1;
    if (info.safe) {
        m->skip = 1;
        return 0;
    }
    if (info.cls != CLS_NONE) {
        m->cls = info.cls;
        m->rule = info.rule;
    }
    if (info.no_ip)
        m->flags |= RF_NO_IP;
    if (info.url)
        m->flags |= RF_URL;
    return 0;
}

/* A JSON string of bytes the pipeline produced. Markers are ASCII and spans
 * never cut a UTF-8 sequence, so a valid input gives a valid output; should
 * that ever fail, fail closed with a whole-value marker. */
static json_t *make_string(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    return v != NULL ? v : json_string("[secret]");
}

/* The replacement of a scalar, or NULL in *out when it stays. */
static int process_scalar(redact_run *run, json_t *value, const member *m, json_t **out)
{
    *out = NULL;
    char number[64];
    const char *text = NULL;
    size_t len = 0;
    if (json_is_string(value)) {
        text = json_string_value(value);
        len = json_string_length(value);
        if (m->cls == CLS_NONE) {
            const char *red;
            size_t red_len;
            int rc = redact_text(run, text, len, m->flags, &red, &red_len);
            if (rc < 0)
                return -1;
            if (rc > 0 && (*out = make_string(red, red_len)) == NULL)
                return -1;
            return 0;
        }
        if (redact_is_trivial_value(text, len) || redact_is_redacted(run->r, text, len))
            return 0;
    } else if (json_is_integer(value)) {
        int w = snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        text = number;
        len = w > 0 ? (size_t)w : 0;
    } else if (json_is_real(value) && m->cls != CLS_NONE) {
        int w = snprintf(number, sizeof number, "%.17g", json_real_value(value));
        text = number;
        len = w > 0 ? (size_t)w : 0;
    } else {
        return 0;
    }

    unsigned cls = m->cls, rule = m->rule;
    if (cls == CLS_NONE) { /* an integer in the value context: V2 */
        cls = redact_number_class(run->r, text, len);
        rule = HERALD_RULE_V2_CARD;
        if (cls == CLS_NONE)
            return 0;
    }
    redact_buf *leaf = &run->leaf;
    leaf->len = 0;
    if (redact_emit(run, leaf, cls, text, len, m->flags) != 0)
        return -1;
    redact_count(run, rule);
    *out = make_string(leaf->data, leaf->len);
    return *out != NULL ? 0 : -1;
}

static const char *iter_key(void *iter, size_t *len)
{
    const char *key = json_object_iter_key(iter);
#if JANSSON_VERSION_HEX >= 0x020e00
    *len = json_object_iter_key_len(iter);
#else
    *len = strlen(key);
#endif
    return key;
}

static int object_set(json_t *object, const char *key, size_t len, json_t *value)
{
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_setn(object, key, len, value);
#else
    (void)len;
    return json_object_set(object, key, value);
#endif
}

/* key must be NUL-terminated at len for jansson before 2.14. */
static json_t *object_get(json_t *object, const char *key, size_t len)
{
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_getn(object, key, len);
#else
    (void)len;
    return json_object_get(object, key);
#endif
}

static int object_has(json_t *object, const char *key, size_t len)
{
    return object_get(object, key, len) != NULL;
}

/* Set name in fresh, suffixing "~2", "~3", ... on a collision so no member
 * is lost (PII.md §2.2). next counts per base name, so n colliding names
 * cost n probes, not n². */
static int set_unique(redact_run *run, json_t *fresh, json_t *next, const char *name, size_t len,
                      json_t *value)
{
    if (!object_has(fresh, name, len))
        return object_set(fresh, name, len, value);
    redact_buf *b = &run->name;
    if (name != b->data) {
        b->len = 0;
        if (redact_buf_append(b, name, len) != 0)
            return -1;
    }
    size_t base = len;
    if (redact_buf_append(b, "\0", 1) != 0)
        return -1;
    b->len = base;
    json_t *counter = object_get(next, b->data, base);
    json_int_t k = counter != NULL ? json_integer_value(counter) : 2;
    for (;; k++) {
        char suffix[32];
        int w = snprintf(suffix, sizeof suffix, "~%" JSON_INTEGER_FORMAT, k);
        b->len = base;
        if (redact_buf_append(b, suffix, (size_t)w) != 0 || redact_buf_append(b, "\0", 1) != 0)
            return -1;
        b->len--;
        if (!object_has(fresh, b->data, b->len))
            break;
    }
    json_t *count = json_integer(k + 1);
    int rc = count != NULL ? object_set(fresh, b->data, b->len, value) : -1;
    if (rc == 0) {
        b->data[base] = '\0'; /* the counter is keyed by the base name */
        rc = object_set(next, b->data, base, count);
    }
    json_decref(count);
    return rc;
}

/* Member names go through the value detectors ({"jane@example.org": …}
 * becomes {"[email]": …}); objects whose names change are rebuilt in order.
 * Runs before the members are visited, so their classification sees the
 * final names, as a second pass would. */
static int rename_members(redact_run *run, json_t *object, const frame *f)
{
    if (f->kind == FRAME_ROOT)
        return 0;
    unsigned flags = f->flags & RF_NO_IP;
    herald_redact_stats *stats = run->stats;
    run->stats = NULL; /* a dry run: counted when rebuilt */
    int need = 0;
    for (void *it = json_object_iter(object); it != NULL && !need;
         it = json_object_iter_next(object, it)) {
        size_t len;
        const char *key = iter_key(it, &len);
        member m;
        memset(&m, 0, sizeof m);
        place_member(run->r, f, key, len, &m);
        if (m.skip)
            continue;
        const char *out;
        size_t out_len;
        int rc = redact_text(run, key, len, flags, &out, &out_len);
        if (rc < 0) {
            run->stats = stats;
            return -1;
        }
        need = rc > 0;
    }
    run->stats = stats;
    if (!need)
        return 0;

    json_t *fresh = json_object(), *next = json_object();
    int status = -1;
    if (fresh == NULL || next == NULL)
        goto done;
    for (void *it = json_object_iter(object); it != NULL; it = json_object_iter_next(object, it)) {
        size_t len;
        const char *key = iter_key(it, &len);
        member m;
        memset(&m, 0, sizeof m);
        place_member(run->r, f, key, len, &m);
        const char *name = key;
        size_t name_len = len;
        if (!m.skip) {
            const char *out;
            size_t out_len;
            int rc = redact_text(run, key, len, flags, &out, &out_len);
            if (rc < 0)
                goto done;
            if (rc > 0) {
                run->name.len = 0;
                if (redact_buf_append(&run->name, out, out_len) != 0 ||
                    redact_buf_append(&run->name, "", 1) != 0)
                    goto done;
                run->name.len = out_len; /* NUL-terminated for older jansson */
                name = run->name.data;
                name_len = out_len;
            }
        }
        if (set_unique(run, fresh, next, name, name_len, json_object_iter_value(it)) != 0)
            goto done;
    }
    /* On failure past this point the object is incomplete: the caller gets
     * HERALD_E_NO_MEMORY and must drop the event. */
    json_object_clear(object);
    status = json_object_update(object, fresh) == 0 ? 0 : -1;
done:
    json_decref(fresh);
    json_decref(next);
    return status;
}

static int visit(redact_run *run, frame_stack *st, size_t parent, const char *name, size_t len,
                 int keyed, json_t *value, void *iter, size_t index)
{
    frame f = st->v[parent]; /* a copy: pushing may move the stack */
    member m;
    if (decide(run, &f, name, len, keyed, &m) != 0)
        return -1;
    if (m.skip)
        return 0;
    if (json_is_object(value) || json_is_array(value)) {
        frame child;
        memset(&child, 0, sizeof child);
        child.node = value;
        child.allow = m.allow;
        child.depth = f.depth + 1;
        child.kind = m.kind;
        child.cls = m.cls;
        child.rule = m.rule;
        child.flags = m.flags;
        if (json_is_object(value)) {
            if (rename_members(run, value, &child) != 0)
                return -1;
            child.iter = json_object_iter(value);
        }
        return push_frame(st, &child);
    }
    json_t *replacement;
    if (process_scalar(run, value, &m, &replacement) != 0)
        return -1;
    if (replacement == NULL)
        return 0;
    if (keyed)
        return json_object_iter_set_new(f.node, iter, replacement);
    return json_array_set_new(f.node, index, replacement);
}

herald_status herald_redact_event(const herald_redactor *r, json_t *event,
                                  herald_redact_stats *stats)
{
    if (r == NULL || !json_is_object(event))
        return HERALD_E_INVALID_ARGUMENT;
    if (!r->enabled)
        return HERALD_OK;
    redact_run run;
    redact_run_init(&run, r, stats);
    frame_stack st = {NULL, 0, 0};
    herald_status status = HERALD_E_NO_MEMORY;

    frame root;
    memset(&root, 0, sizeof root);
    root.node = event;
    root.iter = json_object_iter(event);
    root.allow = r->allow_count >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << r->allow_count) - 1);
    root.kind = FRAME_ROOT;
    root.cls = CLS_NONE;
    if (push_frame(&st, &root) != 0)
        goto done;

    while (st.n > 0) {
        size_t top = st.n - 1;
        frame *f = &st.v[top];
        if (json_is_object(f->node)) {
            if (f->iter == NULL) {
                st.n--;
                continue;
            }
            void *iter = f->iter;
            size_t len;
            const char *key = iter_key(iter, &len);
            json_t *value = json_object_iter_value(iter);
            f->iter = json_object_iter_next(f->node, iter);
            if (visit(&run, &st, top, key, len, 1, value, iter, 0) != 0)
                goto done;
        } else {
            if (f->index >= json_array_size(f->node)) {
                st.n--;
                continue;
            }
            size_t index = f->index++;
            char name[24];
            int w = snprintf(name, sizeof name, "%zu", index);
            if (visit(&run, &st, top, name, (size_t)w, 0, json_array_get(f->node, index), NULL,
                      index) != 0)
                goto done;
        }
    }
    status = HERALD_OK;
done:
    free(st.v);
    redact_run_free(&run);
    return status;
}

/* HERALD_REDACT_KEY treats s as a member name: the value detectors, as the
 * event walk applies them to names (whether the name is a sensitive key is
 * a question about its value, which this call does not have). */
char *herald_redact_string(const herald_redactor *r, const char *s, size_t len,
                           herald_redact_context context, herald_redact_stats *stats,
                           int *out_of_memory)
{
    if (out_of_memory != NULL)
        *out_of_memory = 0;
    if (r == NULL || s == NULL || !r->enabled)
        return NULL;
    redact_run run;
    redact_run_init(&run, r, stats);
    unsigned flags = context == HERALD_REDACT_URL ? RF_URL : 0;
    const char *out;
    size_t out_len;
    char *copy = NULL;
    int rc = redact_text(&run, s, len, flags, &out, &out_len);
    if (rc > 0) {
        copy = malloc(out_len + 1);
        if (copy != NULL) {
            memcpy(copy, out, out_len);
            copy[out_len] = '\0';
        }
    }
    if ((rc < 0 || (rc > 0 && copy == NULL)) && out_of_memory != NULL)
        *out_of_memory = 1;
    redact_run_free(&run);
    return copy;
}

/* ================= configuration ================= */

static herald_status config_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return HERALD_E_CONFIG;
}

static int class_by_name(const char *name)
{
    for (int i = 0; i < CLS_COUNT; i++)
        if (strcmp(redact_class_names[i], name) == 0)
            return i;
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A JSON array of non-empty strings, as a NULL-terminated list of borrowed
 * pointers (valid while the JSON lives). */
static herald_status string_list(json_t *value, const char *what, const char ***out,
                                 size_t *count, char *err, size_t errlen)
{
    if (!json_is_array(value))
        return config_error(err, errlen, "redact.%s must be an array of strings", what);
    size_t n = json_array_size(value);
    const char **list = calloc(n + 1, sizeof *list);
    if (list == NULL)
        return HERALD_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(value, i);
        if (!json_is_string(item) || json_string_length(item) == 0 ||
            strlen(json_string_value(item)) != json_string_length(item)) {
            free(list);
            return config_error(err, errlen, "redact.%s[%zu] must be a non-empty string", what,
                                i);
        }
        list[i] = json_string_value(item);
    }
    *out = list;
    *count = n;
    return HERALD_OK;
}

static herald_status parse_allow_paths(herald_redactor *r, json_t *value, char *err,
                                       size_t errlen)
{
    if (!json_is_array(value))
        return config_error(err, errlen, "redact.allow_paths must be an array of strings");
    size_t n = json_array_size(value);
    if (n > REDACT_MAX_ALLOW_PATHS)
        return config_error(err, errlen, "redact.allow_paths: at most %d paths",
                            REDACT_MAX_ALLOW_PATHS);
    r->allow = calloc(n + 1, sizeof *r->allow);
    if (r->allow == NULL)
        return HERALD_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(value, i);
        const char *path = json_string_value(item);
        if (path == NULL || path[0] != '/' || path[1] == '\0')
            return config_error(err, errlen,
                                "redact.allow_paths[%zu] must be a JSON pointer such as "
                                "\"/traits/email\"",
                                i);
        size_t segments = 0;
        for (const char *p = path; *p; p++)
            segments += *p == '/';
        redact_allow_path *ap = &r->allow[r->allow_count++];
        ap->segments = calloc(segments, sizeof *ap->segments);
        if (ap->segments == NULL)
            return HERALD_E_NO_MEMORY;
        const char *p = path + 1;
        for (;;) {
            const char *end = strchr(p, '/');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
            char *seg = malloc(len + 1);
            if (seg == NULL)
                return HERALD_E_NO_MEMORY;
            size_t m = 0;
            for (size_t k = 0; k < len; k++) {
                if (p[k] == '~' && k + 1 < len && (p[k + 1] == '0' || p[k + 1] == '1')) {
                    seg[m++] = p[k + 1] == '0' ? '~' : '/';
                    k++;
                } else {
                    seg[m++] = p[k];
                }
            }
            seg[m] = '\0';
            ap->segments[ap->count++] = seg;
            if (end == NULL)
                break;
            p = end + 1;
        }
    }
    return HERALD_OK;
}

static herald_status parse_modes(herald_redactor *r, json_t *value, char *err, size_t errlen)
{
    if (!json_is_object(value))
        return config_error(err, errlen, "redact.mode must be an object");
    const char *name;
    json_t *item;
    json_object_foreach(value, name, item) {
        int cls = class_by_name(name);
        const char *mode = json_string_value(item);
        if (cls < 0)
            return config_error(err, errlen, "redact.mode: unknown class \"%s\"", name);
        if (mode == NULL)
            return config_error(err, errlen, "redact.mode.%s must be a string", name);
        if (strcmp(mode, "marker") == 0)
            r->mode[cls] = MODE_MARKER;
        else if (strcmp(mode, "hash") == 0 && cls != CLS_SECRET)
            r->mode[cls] = MODE_HASH;
        else if (strcmp(mode, "keep_domain") == 0 && cls == CLS_EMAIL)
            r->mode[cls] = MODE_KEEP_DOMAIN;
        else if (strcmp(mode, "keep_domain_hash") == 0 && cls == CLS_EMAIL)
            r->mode[cls] = MODE_KEEP_DOMAIN_HASH;
        else if (strcmp(mode, "truncate") == 0 && cls == CLS_IP)
            r->mode[cls] = MODE_TRUNCATE;
        else
            return config_error(err, errlen, "redact.mode.%s: \"%s\" is not available", name,
                                mode);
    }
    return HERALD_OK;
}

static herald_status parse_custom(herald_redactor *r, json_t *value, char *err, size_t errlen)
{
    if (!json_is_array(value))
        return config_error(err, errlen, "redact.custom must be an array of objects");
    size_t n = json_array_size(value);
    r->custom = calloc(n + 1, sizeof *r->custom);
    if (r->custom == NULL)
        return HERALD_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(value, i);
        if (!json_is_object(item))
            return config_error(err, errlen, "redact.custom[%zu] must be an object", i);
        const char *key;
        json_t *field;
        json_object_foreach(item, key, field) {
            if (strcmp(key, "name") != 0 && strcmp(key, "pattern") != 0 &&
                strcmp(key, "class") != 0 && strcmp(key, "icase") != 0 &&
                strcmp(key, "max_bytes") != 0)
                return config_error(err, errlen, "redact.custom[%zu]: unknown key \"%s\"", i,
                                    key);
        }
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *pattern = json_string_value(json_object_get(item, "pattern"));
        json_t *cls_value = json_object_get(item, "class");
        json_t *icase = json_object_get(item, "icase");
        json_t *max_bytes = json_object_get(item, "max_bytes");
        if (name == NULL || name[0] == '\0' || pattern == NULL || pattern[0] == '\0')
            return config_error(err, errlen,
                                "redact.custom[%zu] needs a \"name\" and a \"pattern\"", i);
        int cls = CLS_SECRET;
        if (cls_value != NULL) {
            const char *cname = json_string_value(cls_value);
            cls = cname != NULL ? class_by_name(cname) : -1;
            if (cls < 0)
                return config_error(err, errlen, "redact.custom[%zu]: unknown class", i);
        }
        if (icase != NULL && !json_is_boolean(icase))
            return config_error(err, errlen, "redact.custom[%zu].icase must be a boolean", i);
        json_int_t limit = CUSTOM_MAX_BYTES_DEFAULT;
        if (max_bytes != NULL) {
            if (!json_is_integer(max_bytes) || json_integer_value(max_bytes) < 1 ||
                json_integer_value(max_bytes) > 16 * 1024 * 1024)
                return config_error(err, errlen,
                                    "redact.custom[%zu].max_bytes must be 1 - 16777216", i);
            limit = json_integer_value(max_bytes);
        }
        redact_custom *c = &r->custom[r->custom_count];
        c->name = malloc(strlen(name) + 1);
        if (c->name == NULL)
            return HERALD_E_NO_MEMORY;
        memcpy(c->name, name, strlen(name) + 1);
        int flags = REG_EXTENDED | (json_is_true(icase) ? REG_ICASE : 0);
        int rc = regcomp(&c->regex, pattern, flags);
        if (rc != 0) {
            char message[128];
            regerror(rc, &c->regex, message, sizeof message);
            free(c->name);
            c->name = NULL;
            return config_error(err, errlen, "redact.custom[%zu] (\"%s\"): %s", i, name,
                                message);
        }
        c->cls = (uint8_t)cls;
        c->max_bytes = (size_t)limit;
        r->custom_count++;
    }
    return HERALD_OK;
}

static herald_status apply_profile(herald_redactor *r, const char *profile, int *strict,
                                   char *err, size_t errlen)
{
    *strict = 0;
    if (strcmp(profile, "default") == 0)
        return HERALD_OK;
    if (strcmp(profile, "strict") == 0) {
        *strict = 1;
        r->imei_by_value = 1;
        return HERALD_OK;
    }
    if (strcmp(profile, "secrets-only") == 0) {
        r->rule_on[HERALD_RULE_K2_PII_KEY] = 0;
        for (int rule = HERALD_RULE_V1_EMAIL; rule <= HERALD_RULE_V10_USER_PATH; rule++)
            r->rule_on[rule] = 0;
        return HERALD_OK;
    }
    return config_error(err, errlen,
                        "redact.profile must be \"default\", \"strict\" or \"secrets-only\"");
}

/* Redactor ids start at 1: 0 marks an empty cache slot in fastbuild.c. */
static _Atomic uint64_t next_redactor_id = 1;

herald_status herald_redactor_create(const char *config_json, herald_redactor **out, char *err,
                                     size_t errlen)
{
    if (out == NULL)
        return HERALD_E_INVALID_ARGUMENT;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    herald_redactor *r = calloc(1, sizeof *r);
    if (r == NULL)
        return HERALD_E_NO_MEMORY;
    r->id = atomic_fetch_add(&next_redactor_id, 1);
    r->enabled = 1;
    for (int i = 0; i < HERALD_RULE_COUNT; i++)
        r->rule_on[i] = 1;

    json_t *config = NULL;
    const char **extra = NULL, **safe = NULL;
    size_t extra_count = 0, safe_count = 0;
    herald_status status = HERALD_OK;
    int strict = 0;

    if (config_json != NULL) {
        json_error_t jerr;
        config = json_loads(config_json, JSON_REJECT_DUPLICATES, &jerr);
        if (config == NULL) {
            status = config_error(err, errlen, "redact: invalid JSON at line %d column %d: %s",
                                  jerr.line, jerr.column, jerr.text);
            goto done;
        }
        if (!json_is_object(config)) {
            status = config_error(err, errlen, "redact: expected a JSON object");
            goto done;
        }
    }

    const char *key;
    json_t *value;
    json_object_foreach(config, key, value) {
        static const char *const known[] = {"enabled",    "profile",     "rules",
                                            "extra_keys", "safe_keys",   "allow_paths",
                                            "mode",       "hash_key",    "custom",
                                            NULL};
        if (!name_in(key, strlen(key), known)) {
            status = config_error(err, errlen, "redact: unknown key \"%s\"", key);
            goto done;
        }
    }

    json_t *enabled = json_object_get(config, "enabled");
    if (enabled != NULL) {
        if (!json_is_boolean(enabled)) {
            status = config_error(err, errlen, "redact.enabled must be a boolean");
            goto done;
        }
        r->enabled = json_is_true(enabled);
    }
    json_t *profile = json_object_get(config, "profile");
    if (profile != NULL) {
        if (!json_is_string(profile)) {
            status = config_error(err, errlen, "redact.profile must be a string");
            goto done;
        }
        if ((status = apply_profile(r, json_string_value(profile), &strict, err, errlen)) !=
            HERALD_OK)
            goto done;
    }
    json_t *rules = json_object_get(config, "rules");
    if (rules != NULL) {
        if (!json_is_object(rules)) {
            status = config_error(err, errlen, "redact.rules must be an object");
            goto done;
        }
        json_object_foreach(rules, key, value) {
            int found = -1;
            for (int i = 0; i < HERALD_RULE_COUNT; i++)
                if (strcmp(key, rule_names[i]) == 0)
                    found = i;
            if (found < 0) {
                status = config_error(err, errlen, "redact.rules: unknown rule \"%s\"", key);
                goto done;
            }
            if (!json_is_boolean(value)) {
                status = config_error(err, errlen, "redact.rules.%s must be a boolean", key);
                goto done;
            }
            r->rule_on[found] = json_is_true(value);
        }
    }
    if ((value = json_object_get(config, "extra_keys")) != NULL &&
        (status = string_list(value, "extra_keys", &extra, &extra_count, err, errlen)) !=
            HERALD_OK)
        goto done;
    if ((value = json_object_get(config, "safe_keys")) != NULL &&
        (status = string_list(value, "safe_keys", &safe, &safe_count, err, errlen)) != HERALD_OK)
        goto done;
    if ((value = json_object_get(config, "allow_paths")) != NULL &&
        (status = parse_allow_paths(r, value, err, errlen)) != HERALD_OK)
        goto done;
    if ((value = json_object_get(config, "mode")) != NULL &&
        (status = parse_modes(r, value, err, errlen)) != HERALD_OK)
        goto done;
    if ((value = json_object_get(config, "hash_key")) != NULL) {
        const char *hex = json_string_value(value);
        unsigned char secret[32];
        if (hex == NULL || strlen(hex) != 64) {
            status = config_error(err, errlen, "redact.hash_key must be 64 hex characters");
            goto done;
        }
        for (size_t i = 0; i < 32; i++) {
            int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                redact_wipe(secret, sizeof secret);
                status = config_error(err, errlen, "redact.hash_key must be 64 hex characters");
                goto done;
            }
            secret[i] = (unsigned char)(hi * 16 + lo);
        }
        redact_hmac_key_init(&r->hmac, secret, sizeof secret);
        redact_wipe(secret, sizeof secret);
        r->has_key = 1;
    }
    for (int cls = 0; cls < CLS_COUNT; cls++) {
        if ((r->mode[cls] == MODE_HASH || r->mode[cls] == MODE_KEEP_DOMAIN_HASH) && !r->has_key) {
            status = config_error(err, errlen,
                                  "redact.mode.%s is \"hash\" but redact.hash_key is not set "
                                  "(unkeyed hashes are not offered)",
                                  redact_class_names[cls]);
            goto done;
        }
    }
    if ((value = json_object_get(config, "custom")) != NULL &&
        (status = parse_custom(r, value, err, errlen)) != HERALD_OK)
        goto done;

    int rc = redact_keys_build(r, extra, extra_count, safe, safe_count, strict);
    if (rc == -2)
        status = config_error(err, errlen, "redact.extra_keys/safe_keys: a name has no letters "
                                           "or digits");
    else if (rc != 0)
        status = HERALD_E_NO_MEMORY;

done:
    free(extra);
    free(safe);
    json_decref(config);
    if (status != HERALD_OK) {
        herald_redactor_free(r);
        return status;
    }
    *out = r;
    return HERALD_OK;
}

void herald_redactor_free(herald_redactor *r)
{
    if (r == NULL)
        return;
    redact_keys_free(r);
    for (size_t i = 0; i < r->allow_count; i++) {
        for (size_t k = 0; k < r->allow[i].count; k++)
            free(r->allow[i].segments[k]);
        free(r->allow[i].segments);
    }
    free(r->allow);
    for (size_t i = 0; i < r->custom_count; i++) {
        regfree(&r->custom[i].regex);
        free(r->custom[i].name);
    }
    free(r->custom);
    redact_wipe(&r->hmac, sizeof r->hmac);
    free(r);
}
