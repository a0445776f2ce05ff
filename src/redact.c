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
    s->v[s->n++] = (redact_span){start, end, (uint8_t)cls, (uint8_t)rule};
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

static void run_init(redact_run *run, const herald_redactor *r, herald_redact_stats *stats)
{
    memset(run, 0, sizeof *run);
    run->r = r;
    run->stats = stats;
}

static void run_free(redact_run *run)
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
            if (i > seg && redact_spans_push(out, seg, i, 0, 0) != 0)
                return -1;
            i = seg = opaque->v[next_opaque++].end;
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
        if (i > seg && redact_spans_push(out, seg, i, 0, 0) != 0)
            return -1;
        i = seg = i + m;
    }
    if (n > seg && redact_spans_push(out, seg, n, 0, 0) != 0)
        return -1;
    return 0;
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
        long at = cls == CLS_EMAIL ? redact_email_split(text, len) : -1;
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
        if (redact_emit(run, out, sp->cls, s + sp->start, sp->end - sp->start, flags) != 0)
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
        int rc = pii ? redact_detect_pii(run, s + a, b - a, a, flags, spans)
                     : redact_detect_secrets(run, s + a, b - a, a, spans);
        if (rc != 0)
            return -1;
    }
    redact_spans_merge(spans);
    return 0;
}

/* Cheap test for stage A's anchors. */
static int has_structure(const char *s, size_t n)
{
    return memmem(s, n, "://", 3) != NULL || memmem(s, n, "-----BEGIN ", 11) != NULL;
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
