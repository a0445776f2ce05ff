/*
 * Value scanners of PII.md §4: S1 (PEM), S3 (auth schemes), S4 (prefixed
 * tokens), S5 (inline assignment), V1-V10, and the configured ERE patterns.
 *
 * Every scanner is a forward loop over one segment (text between markers,
 * see redact.c) that looks for its anchor byte, walks a bounded distance
 * forward or back, validates, and pushes a span. Where a walk can be long
 * (a digit chain, a token run, an IPv6 run) the loop resumes after it, and
 * where it cannot resume (S5's identifier, the IPv4 exemptions) the walk is
 * capped, so each byte is visited a bounded number of times whatever the
 * input. No scanner backtracks, recurses or allocates except to push spans.
 *
 * Boundaries: the string's own ends count as non-word bytes ("start or end
 * of string" in PII.md). A segment end at a marker counts as a word byte
 * (see scan.left), so a second pass never accepts what the first refused,
 * and look-backs of the IPv4 exemptions ignore text the same stage replaces:
 * together these make redact(redact(x)) == redact(x) for the built-in rules,
 * which the fuzz target checks.
 */
#include <arpa/inet.h>
#include <string.h>

#include "redact_internal.h"

/* ---- byte classes (ASCII by hand: the process locale is not ours) ---- */

enum { C_DIGIT = 1, C_LOWER = 2, C_UPPER = 4, C_HEX = 8, C_SPACE = 16, C_BLANK = 32,
       C_UNDERSCORE = 64 };

/* The C_* bits of each byte; bytes >= 0x80 have none. Generated. A table,
 * because every scanner asks on every byte. */
static const unsigned char class_table[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x10, 0x10, 0x10, 0x10, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x40,
    0x00, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static int is_digit(unsigned char c)
{
    return (class_table[c] & C_DIGIT) != 0;
}

static int is_lower(unsigned char c)
{
    return (class_table[c] & C_LOWER) != 0;
}

static int is_upper(unsigned char c)
{
    return (class_table[c] & C_UPPER) != 0;
}

static int is_alpha(unsigned char c)
{
    return (class_table[c] & (C_LOWER | C_UPPER)) != 0;
}

static int is_alnum(unsigned char c)
{
    return (class_table[c] & (C_DIGIT | C_LOWER | C_UPPER)) != 0;
}

static int is_word(unsigned char c)
{
    return (class_table[c] & (C_DIGIT | C_LOWER | C_UPPER | C_UNDERSCORE)) != 0;
}

static int is_hex(unsigned char c)
{
    return (class_table[c] & C_HEX) != 0;
}

static int is_lower_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

static int is_blank(unsigned char c)
{
    return (class_table[c] & C_BLANK) != 0;
}

static int is_space(unsigned char c)
{
    return (class_table[c] & C_SPACE) != 0;
}

static unsigned char lower(unsigned char c)
{
    return is_upper(c) ? (unsigned char)(c - 'A' + 'a') : c;
}

/* One segment being scanned: the text between two markers (or opaque URL
 * ranges, or the string's ends). */
typedef struct scan {
    redact_run *run;
    const char *s;
    size_t n;
    size_t base;
    redact_spans *out;
    unsigned flags;
    size_t found, found_count; /* see overlaps_found */
    /* What lies beyond each end: 0 at the string's own ends, which count as
     * non-word bytes; EDGE_MARKER where a marker was cut out. A marker
     * replaced text that, for all a second pass can tell, touched its
     * neighbours, so it reads as a word byte that is also a digit: every
     * "prev/next is not a word byte" check fails against it, and a second
     * pass never accepts what the first refused ("x\"pin\":v" is no
     * assignment, nor is "[secret]\"pin\":v"). */
    unsigned char left, right;
} scan;

#define EDGE_MARKER ((unsigned char)'0')

/* Byte at i, or 0 past the end: for reading structure. */
static unsigned char at(const scan *g, size_t i)
{
    return i < g->n ? (unsigned char)g->s[i] : 0;
}

/* The byte after a candidate that ends at e, for "next is not ..." checks:
 * past the end, what lies beyond the segment. Never used to read on. */
static unsigned char after(const scan *g, size_t e)
{
    return e < g->n ? (unsigned char)g->s[e] : e == g->n ? g->right : 0;
}

/* 1 when i is the end of the segment and a marker lies beyond it: whatever
 * a check looks for there, the first pass may have seen it. */
static int edge_at(const scan *g, size_t i)
{
    return i == g->n && g->right != 0;
}

static unsigned char before(const scan *g, size_t i)
{
    return i > 0 ? (unsigned char)g->s[i - 1] : g->left;
}

static int has_prefix(const char *s, size_t n, size_t i, const char *prefix)
{
    size_t len = strlen(prefix);
    return n - i >= len && memcmp(s + i, prefix, len) == 0;
}

static int has_prefix_nocase(const char *s, size_t n, size_t i, const char *prefix)
{
    size_t len = strlen(prefix);
    if (n - i < len)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (lower((unsigned char)s[i + k]) != (unsigned char)prefix[k])
            return 0;
    return 1;
}

static int equals_nocase(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && has_prefix_nocase(s, n, 0, word);
}

typedef int (*byte_class)(unsigned char);

/* End of the run of class members starting at i (at most cap bytes). */
static size_t run_of(const char *s, size_t n, size_t i, byte_class in, size_t cap)
{
    size_t limit = n - i > cap ? i + cap : n;
    while (i < limit && in((unsigned char)s[i]))
        i++;
    return i;
}

#define UNBOUNDED ((size_t)-1)


static int push(scan *g, size_t start, size_t end, unsigned cls, unsigned rule)
{
    return redact_spans_push(g->out, g->base + start, g->base + end, cls, rule);
}

static int rule_on(const scan *g, unsigned rule)
{
    return g->run->r->rule_on[rule];
}

/* ================= S1 PEM private keys ================= */

/* [A-Z0-9 ]* ending in "PRIVATE KEY" or "PRIVATE KEY BLOCK", then "-----".
 * Returns the end of the closing dashes, or 0. */
static size_t pem_label_end(const char *s, size_t n, size_t i)
{
    size_t j = i;
    while (j < n && j - i <= 64 && (is_upper((unsigned char)s[j]) || is_digit((unsigned char)s[j]) ||
                                    s[j] == ' '))
        j++;
    if (!has_prefix(s, n, j, "-----"))
        return 0;
    size_t len = j - i;
    static const char *const endings[] = {"PRIVATE KEY", "PRIVATE KEY BLOCK"};
    for (size_t k = 0; k < 2; k++) {
        size_t e = strlen(endings[k]);
        if (len >= e && memcmp(s + j - e, endings[k], e) == 0)
            return j + 5;
    }
    return 0;
}

int redact_detect_pem(const herald_redactor *r, const char *s, size_t n, redact_spans *out)
{
    static const char begin[] = "-----BEGIN ", end_tag[] = "-----END ";
    size_t i = 0;
    while (i < n) {
        const char *hit = redact_find(s + i, n - i, begin, sizeof begin - 1);
        if (hit == NULL)
            break;
        size_t header = (size_t)(hit - s);
        size_t body = pem_label_end(s, n, header + sizeof begin - 1);
        if (body == 0) {
            i = header + 1;
            continue;
        }
        /* The body runs to a private-key END line, or to the end: a cut log
         * line must not leak half a key. */
        size_t body_end = n, next = n;
        for (size_t k = body; k < n;) {
            const char *e = redact_find(s + k, n - k, end_tag, sizeof end_tag - 1);
            if (e == NULL)
                break;
            size_t at_end = (size_t)(e - s);
            size_t close = pem_label_end(s, n, at_end + sizeof end_tag - 1);
            if (close != 0) {
                body_end = at_end;
                next = close;
                break;
            }
            k = at_end + 1;
        }
        size_t a = body, b = body_end;
        while (a < b && is_space((unsigned char)s[a]))
            a++;
        while (b > a && is_space((unsigned char)s[b - 1]))
            b--;
        if (b > a && !(s[a] == '[' && redact_marker_len(r, s + a, b - a) == b - a) &&
            redact_spans_push(out, a, b, CLS_SECRET, HERALD_RULE_S1_PEM) != 0)
            return -1;
        i = next;
    }
    return 0;
}

/* ================= S3 auth schemes ================= */

static int is_token68(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '-';
}

static int is_base64(unsigned char c)
{
    return is_alnum(c) || c == '+' || c == '/';
}

static int base64_value(unsigned char c)
{
    if (is_upper(c))
        return c - 'A';
    if (is_lower(c))
        return c - 'a' + 26;
    if (is_digit(c))
        return c - '0' + 52;
    return c == '+' ? 62 : 63;
}

/* Basic credentials: decodes to printable ASCII holding a ':'. */
static int basic_credentials(const char *s, size_t len)
{
    int colon = 0;
    for (size_t i = 0; i + 4 <= len; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            v <<= 6;
            if (c == '=')
                pad++;
            else if (pad > 0)
                return 0;
            else
                v |= (unsigned)base64_value(c);
        }
        if (pad > 2 || (pad > 0 && i + 4 != len))
            return 0;
        unsigned char bytes[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8),
                                  (unsigned char)v};
        for (int k = 0; k < 3 - pad; k++) {
            if (bytes[k] < 0x20 || bytes[k] > 0x7e)
                return 0;
            colon |= bytes[k] == ':';
        }
    }
    return colon;
}

static int detect_auth(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)s[i]) != 'b' || is_word(before(g, i)))
            continue;
        if (has_prefix_nocase(s, n, i, "bearer") && is_blank(at(g, i + 6))) {
            size_t t = i + 6;
            while (t < n && is_blank((unsigned char)s[t]))
                t++;
            size_t e = run_of(s, n, t, is_token68, UNBOUNDED);
            size_t token_len = e - t;
            while (e < n && s[e] == '=')
                e++;
            int telling = 0;
            for (size_t k = t; k < e && !telling; k++)
                telling = !is_alpha((unsigned char)s[k]);
            if (token_len >= 16 && telling) {
                if (push(g, t, e, CLS_SECRET, HERALD_RULE_S3_AUTH) != 0)
                    return -1;
                i = e - 1;
            }
        } else if (has_prefix_nocase(s, n, i, "basic") && is_blank(at(g, i + 5))) {
            size_t t = i + 5;
            while (t < n && is_blank((unsigned char)s[t]))
                t++;
            size_t e = run_of(s, n, t, is_base64, UNBOUNDED);
            size_t chars = e - t;
            for (int pad = 0; pad < 2 && e < n && s[e] == '='; pad++)
                e++;
            unsigned char next = after(g, e);
            if (chars >= 6 && (e - t) % 4 == 0 && !is_base64(next) && next != '=' &&
                basic_credentials(s + t, e - t)) {
                if (push(g, t, e, CLS_SECRET, HERALD_RULE_S3_AUTH) != 0)
                    return -1;
                i = e - 1;
            }
        }
    }
    return 0;
}

/* ================= S4 prefixed tokens ================= */

static int is_alnum_us(unsigned char c)
{
    return is_word(c);
}

static int is_alnum_us_dash(unsigned char c)
{
    return is_word(c) || c == '-';
}

static int is_alnum_dash(unsigned char c)
{
    return is_alnum(c) || c == '-';
}

static int is_base32_upper(unsigned char c)
{
    return is_upper(c) || (c >= '2' && c <= '7');
}

static int is_upper_alnum(unsigned char c)
{
    return is_upper(c) || is_digit(c);
}

static int is_sentry_org(unsigned char c)
{
    return is_alnum(c) || c == '+' || c == '/' || c == '=' || c == '_';
}

static int is_age_char(unsigned char c)
{
    return c != 0 && strchr("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", c) != NULL;
}

/* prefix then a run of class in of at least min bytes: end, or 0. */
static size_t prefixed_run(const scan *g, size_t i, size_t prefix_len, byte_class in,
                           size_t min)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t p = i + prefix_len;
    if (p > n)
        return 0;
    size_t e = run_of(s, n, p, in, UNBOUNDED);
    return e - p >= min ? e : 0;
}

/* The token that starts at i (prev is not a word byte), or 0. *jwt_skip
 * remembers a JWT head that failed: a later start inside it fails the same
 * way, so it is not walked again. */
static size_t prefixed_token(const scan *g, size_t i, size_t *jwt_skip)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t e;
    switch (s[i]) {
    case 'A':
        if (has_prefix(s, n, i, "AKIA") || has_prefix(s, n, i, "ASIA") ||
            has_prefix(s, n, i, "ABIA") || has_prefix(s, n, i, "ACCA") ||
            (has_prefix(s, n, i, "A3T") && is_upper_alnum(at(g, i + 3)))) {
            e = prefixed_run(g, i, 4, is_base32_upper, 16);
            if (e && !is_alnum(after(g, e)))
                return e;
        }
        if (has_prefix(s, n, i, "AIza"))
            return prefixed_run(g, i, 4, is_alnum_us_dash, 35);
        if (has_prefix(s, n, i, "AGE-SECRET-KEY-1"))
            return prefixed_run(g, i, 16, is_age_char, 58);
        return 0;
    case 'g':
        if (has_prefix(s, n, i, "gh") && n - i > 3 && strchr("pousr", s[i + 2]) != NULL &&
            s[i + 2] != 0 && s[i + 3] == '_')
            return prefixed_run(g, i, 4, is_alnum, 36);
        if (has_prefix(s, n, i, "github_pat_"))
            return prefixed_run(g, i, 11, is_alnum_us, 82);
        if (has_prefix(s, n, i, "glpat-"))
            return prefixed_run(g, i, 6, is_alnum_us_dash, 20);
        if (has_prefix(s, n, i, "glptt-"))
            return prefixed_run(g, i, 6, is_lower_hex, 40);
        return 0;
    case 'x':
        if (has_prefix(s, n, i, "xox") && n - i > 4 && s[i + 3] != 0 &&
            strchr("abposre", s[i + 3]) != NULL && s[i + 4] == '-')
            return prefixed_run(g, i, 5, is_alnum_dash, 10);
        if (has_prefix(s, n, i, "xapp-") && is_digit(at(g, i + 5)) && at(g, i + 6) == '-')
            return prefixed_run(g, i, 7, is_alnum_dash, 10);
        return 0;
    case 's':
    case 'r':
        if ((has_prefix(s, n, i, "sk_") || has_prefix(s, n, i, "rk_")) &&
            (has_prefix(s, n, i + 3, "live_") || has_prefix(s, n, i + 3, "test_") ||
             has_prefix(s, n, i + 3, "prod_")))
            return prefixed_run(g, i, 8, is_alnum, 10);
        if (s[i] == 'r')
            return 0;
        if (has_prefix(s, n, i, "sk-ant-")) {
            size_t p = run_of(s, n, i + 7, is_lower, 6);
            size_t q = run_of(s, n, p, is_digit, 3);
            if (p - (i + 7) >= 3 && p - (i + 7) <= 5 && q - p == 2 && at(g, q) == '-')
                return prefixed_run(g, q, 1, is_alnum_us_dash, 20);
            return 0;
        }
        if (has_prefix(s, n, i, "sk-proj-"))
            return prefixed_run(g, i, 8, is_alnum_us_dash, 20);
        if (has_prefix(s, n, i, "sk-svcacct-"))
            return prefixed_run(g, i, 11, is_alnum_us_dash, 20);
        if (has_prefix(s, n, i, "sk-admin-"))
            return prefixed_run(g, i, 9, is_alnum_us_dash, 20);
        if (has_prefix(s, n, i, "sk-")) {
            e = prefixed_run(g, i, 3, is_alnum, 48);
            if (e && memcmp(s + i + 23, "T3BlbkFJ", 8) == 0)
                return e;
            return 0;
        }
        if (has_prefix(s, n, i, "shp") &&
            (has_prefix(s, n, i + 3, "at_") || has_prefix(s, n, i + 3, "ss_") ||
             has_prefix(s, n, i + 3, "ca_") || has_prefix(s, n, i + 3, "pa_")))
            return prefixed_run(g, i, 6, is_hex, 32);
        if (has_prefix(s, n, i, "sntryu_"))
            return prefixed_run(g, i, 7, is_lower_hex, 64);
        if (has_prefix(s, n, i, "sntrys_eyJ"))
            return prefixed_run(g, i, 10, is_sentry_org, 20);
        if (has_prefix(s, n, i, "sq0atp-") || has_prefix(s, n, i, "sq0csp-"))
            return prefixed_run(g, i, 7, is_alnum_us_dash, 22);
        return 0;
    case 'w':
        return has_prefix(s, n, i, "whsec_") ? prefixed_run(g, i, 6, is_alnum, 24) : 0;
    case 'n':
        return has_prefix(s, n, i, "npm_") ? prefixed_run(g, i, 4, is_alnum, 36) : 0;
    case 'p':
        return has_prefix(s, n, i, "pypi-AgEIcHlwaS5vcmc")
                   ? prefixed_run(g, i, 20, is_alnum_us_dash, 50)
                   : 0;
    case 'S':
        if (has_prefix(s, n, i, "SG.")) {
            size_t a = run_of(s, n, i + 3, is_alnum_us_dash, 23);
            if (a - (i + 3) == 22 && at(g, a) == '.')
                return prefixed_run(g, a, 1, is_alnum_us_dash, 43);
            return 0;
        }
        if (has_prefix(s, n, i, "SK")) {
            e = run_of(s, n, i + 2, is_hex, 33);
            if (e - (i + 2) == 32 && !is_alnum(after(g, e)))
                return e;
        }
        return 0;
    case 'd':
        if (has_prefix(s, n, i, "do") && n - i > 2 && s[i + 2] != 0 &&
            strchr("opr", s[i + 2]) != NULL && has_prefix(s, n, i + 3, "_v1_"))
            return prefixed_run(g, i, 7, is_lower_hex, 64);
        if (has_prefix(s, n, i, "dp.pt."))
            return prefixed_run(g, i, 6, is_alnum, 43);
        return 0;
    case 'h':
        return has_prefix(s, n, i, "hf_") ? prefixed_run(g, i, 3, is_alpha, 34) : 0;
    case 'P':
        if (has_prefix(s, n, i, "PMAK-")) {
            size_t a = run_of(s, n, i + 5, is_lower_hex, 25);
            if (a - (i + 5) == 24 && at(g, a) == '-')
                return prefixed_run(g, a, 1, is_lower_hex, 34);
        }
        return 0;
    case 'l':
        return has_prefix(s, n, i, "lin_api_") ? prefixed_run(g, i, 8, is_alnum, 40) : 0;
    case 'e':
        if (i < *jwt_skip || !has_prefix(s, n, i, "eyJ"))
            return 0;
        {
            size_t a = run_of(s, n, i + 3, is_alnum_us_dash, UNBOUNDED);
            if (a - (i + 3) >= 10 && at(g, a) == '.' && has_prefix(s, n, a + 1, "eyJ")) {
                size_t b = run_of(s, n, a + 4, is_alnum_us_dash, UNBOUNDED);
                if (b - (a + 4) >= 10 && at(g, b) == '.')
                    return run_of(s, n, b + 1, is_alnum_us_dash, UNBOUNDED);
                *jwt_skip = b;
                return 0;
            }
            *jwt_skip = a;
        }
        return 0;
    default:
        return 0;
    }
}

static int detect_tokens(scan *g)
{
    size_t n = g->n, jwt_skip = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_word(before(g, i)))
            continue;
        size_t e = prefixed_token(g, i, &jwt_skip);
        if (e > i) {
            if (push(g, i, e, CLS_SECRET, HERALD_RULE_S4_TOKEN) != 0)
                return -1;
            i = e - 1;
        }
    }
    return 0;
}

/* ================= S5 inline assignment ================= */

#define IDENT_MAX 64

static int is_ident(unsigned char c)
{
    return is_word(c) || c == '.' || c == '-';
}

static int is_quote(unsigned char c)
{
    return c == '"' || c == '\'';
}

/* Header-class keys: their unquoted value runs to the end of the line. */
static int header_class(const redact_buf *key)
{
    static const char *const names[] = {"authorization", "proxy_authorization", "cookie",
                                        "set_cookie"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (key->len == strlen(names[i]) && memcmp(key->data, names[i], key->len) == 0)
            return 1;
    return 0;
}

/* The identifier that ends at op (blanks allowed between). Sets [*a, *b) and
 * returns 1, or 0. */
static int identifier_before(const scan *g, size_t op, size_t *a, size_t *b)
{
    const char *s = g->s;
    size_t j = op;
    for (int k = 0; k < IDENT_MAX && j > 0 && is_blank((unsigned char)s[j - 1]); k++)
        j--;
    unsigned char quote = 0;
    int escaped = 0;
    if (j > 0 && is_quote((unsigned char)s[j - 1])) {
        quote = (unsigned char)s[j - 1];
        j--;
        if (j > 0 && s[j - 1] == '\\') {
            escaped = 1;
            j--;
        }
    }
    size_t end = j;
    while (j > 0 && end - j <= IDENT_MAX && is_ident((unsigned char)s[j - 1]))
        j--;
    if (end == j || end - j > IDENT_MAX || !(is_alpha((unsigned char)s[j]) || s[j] == '_'))
        return 0;
    size_t start = j;
    if (quote) {
        if (j == 0 || (unsigned char)s[j - 1] != quote)
            return 0;
        j--;
        if (escaped) {
            if (j == 0 || s[j - 1] != '\\')
                return 0;
            j--;
        }
    }
    if (is_ident(before(g, j)))
        return 0;
    *a = start;
    *b = end;
    return 1;
}

static int is_value_end(unsigned char c)
{
    return is_space(c) || c == '"' || c == '\'' || c == '&' || c == ',' || c == ';' || c == ')' ||
           c == '}' || c == ']' || c == '<' || c == '>';
}

/* Authorization schemes kept in front of a header value's credentials. */
static size_t scheme_word(const char *s, size_t v, size_t end)
{
    static const char *const schemes[] = {"bearer", "basic", "digest", "token", "negotiate",
                                          "ntlm"};
    size_t w = v;
    while (w < end && is_alpha((unsigned char)s[w]))
        w++;
    /* "Bearer [secret]" on a second pass: the value is the scheme alone */
    if (w == v || (w < end && !is_blank((unsigned char)s[w])))
        return v;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        if (equals_nocase(s + v, w - v, schemes[i])) {
            while (w < end && is_blank((unsigned char)s[w]))
                w++;
            return w;
        }
    }
    return v;
}

static int detect_assignment(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        size_t op, op_len;
        if (s[i] == '=') {
            if (i > 0 && s[i - 1] == ':') {
                op = i - 1;
                op_len = 2;
            } else if (at(g, i + 1) == '>') {
                op = i;
                op_len = 2;
            } else {
                op = i;
                op_len = 1;
            }
        } else if (s[i] == ':') {
            if (at(g, i + 1) == '=' || at(g, i + 1) == ':' || before(g, i) == ':')
                continue;
            op = i;
            op_len = 1;
        } else {
            continue;
        }
        size_t id_a, id_b;
        if (!identifier_before(g, op, &id_a, &id_b))
            continue;
        redact_key_info info;
        if (redact_key_classify(g->run, s + id_a, id_b - id_a, 0, 0, &info) != 0)
            return -1;
        if (info.cls != CLS_SECRET)
            continue;
        int header = header_class(&g->run->key);

        size_t v = op + op_len;
        while (v < n && is_blank((unsigned char)s[v]))
            v++;
        size_t va = v, vb;
        if (v < n && (is_quote((unsigned char)s[v]) ||
                      (s[v] == '\\' && is_quote(at(g, v + 1))))) {
            int escaped = s[v] == '\\';
            char quote = s[v + (size_t)escaped];
            va = v + 1 + (size_t)escaped;
            vb = va;
            while (vb < n) {
                if (escaped ? (s[vb] == '\\' && at(g, vb + 1) == (unsigned char)quote)
                            : (s[vb] == quote && before(g, vb) != '\\'))
                    break;
                vb++;
            }
        } else if (v < n && (s[v] == '{' || s[v] == '[')) {
            continue; /* structure: its inner keys get their own matches */
        } else if (header) {
            vb = v;
            while (vb < n && s[vb] != '\r' && s[vb] != '\n' && !is_quote((unsigned char)s[vb]))
                vb++;
            while (vb > va && is_space((unsigned char)s[vb - 1]))
                vb--;
            va = scheme_word(s, va, vb);
        } else {
            vb = v;
            while (vb < n && !is_value_end((unsigned char)s[vb]))
                vb++;
        }
        if (vb > va && !redact_is_trivial_value(s + va, vb - va)) {
            if (push(g, va, vb, CLS_SECRET, HERALD_RULE_S5_ASSIGNMENT) != 0)
                return -1;
        }
        /* Operators inside the value are part of it. */
        if (vb > i + 1)
            i = vb - 1;
    }
    return 0;
}

/* ================= V1 email ================= */

/* Dot-atom bytes: alnum, !#$%&'*+^_`{|}~-. and bytes >= 0x80 (RFC 6531).
 * Generated; a table because it runs on every byte. */
static const unsigned char local_table[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static int is_local(unsigned char c)
{
    return local_table[c];
}

static int is_domain_char(unsigned char c)
{
    return is_alnum(c) || c == '-' || c >= 0x80;
}

/* Percent-escapes of bytes that end a local part in encoded text
 * ("email%3Djane%40…" must not swallow the key). */
static int local_breaker(const char *s, size_t n, size_t i)
{
    if (s[i] != '%' || n - i < 3)
        return 0;
    unsigned char a = (unsigned char)s[i + 1], b = lower((unsigned char)s[i + 2]);
    return (a == '3' && (b == 'd' || b == 'f' || b == 'a' || b == 'b')) ||
           (a == '2' && (b == 'f' || b == '6' || b == '0' || b == 'c'));
}

static int tld_ok(const char *s, size_t len)
{
    static const char *const file_extensions[] = {
        "png", "jpg", "jpeg", "gif", "svg",  "webp", "ico", "bmp",  "tif",  "tiff", "js",  "mjs",
        "cjs", "css", "map",  "json", "txt", "yml",  "yaml", "xml", "html", "htm", "lock"};
    if (len >= 4 && has_prefix_nocase(s, len, 0, "xn--"))
        return 1;
    size_t high = 0;
    int letters = 1;
    for (size_t i = 0; i < len; i++) {
        high += (unsigned char)s[i] >= 0x80;
        letters &= is_alpha((unsigned char)s[i]);
    }
    if (high >= 2)
        return 1;
    if (!letters || len < 2 || len > 63)
        return 0;
    for (size_t i = 0; i < sizeof file_extensions / sizeof *file_extensions; i++)
        if (equals_nocase(s, len, file_extensions[i]))
            return 0;
    return 1;
}

/* End of a valid domain starting at d, or 0. */
static size_t domain_end(const scan *g, size_t d)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t p = d, labels = 0, end = 0, last_start = 0, first_start = d, first_end = d;
    for (;;) {
        size_t ls = p;
        while (p < n && is_domain_char((unsigned char)s[p]))
            p++;
        if (p == ls || s[ls] == '-')
            break; /* empty or bad label: the domain ends at the previous one */
        if (s[p - 1] == '-')
            return 0; /* a label cannot end with '-', and '-' cannot follow */
        if (labels == 0)
            first_end = p;
        labels++;
        last_start = ls;
        end = p;
        if (p < n && s[p] == '.' && p + 1 < n && is_domain_char((unsigned char)s[p + 1]))
            p++;
        else if (p < n && s[p] == '.' && edge_at(g, p + 1))
            return 0; /* the domain may have gone on into the marker */
        else
            break;
    }
    if (labels < 2 || !tld_ok(s + last_start, end - last_start) ||
        is_domain_char(after(g, end)))
        return 0;
    /* Retina assets: logo@2x.png, icon@3x.webp */
    if (labels == 2 && first_end - first_start >= 2 &&
        lower((unsigned char)s[first_end - 1]) == 'x') {
        int digits = 1;
        for (size_t k = first_start; k < first_end - 1; k++)
            digits &= is_digit((unsigned char)s[k]);
        if (digits)
            return 0;
    }
    return end;
}

#define NONE ((size_t)-1)

static int detect_email(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t run = NONE, atom = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int anchor = c == '@' || (c == '%' && n - i >= 3 && s[i + 1] == '4' && s[i + 2] == '0');
        if (anchor && run != NONE) {
            /* Not from a leading quote: "'jane@x.org'" is a quotation, and
             * a quote is where a URL before it ends, so a span from there
             * would let a second pass read the URL further. */
            size_t a = atom;
            while (a < i && (s[a] == '.' || s[a] == '\''))
                a++;
            if (a < i && s[i - 1] != '.') {
                size_t d = i + (c == '@' ? 1 : 3);
                size_t e = domain_end(g, d);
                if (e != 0) {
                    if (push(g, a, e, CLS_EMAIL, HERALD_RULE_V1_EMAIL) != 0)
                        return -1;
                    /* The domain may be the local part of a next address
                     * ("a@b.com@c.org"): keep it as the current run, so the
                     * overlap merges now instead of surfacing on a second
                     * pass after keep-domain left "@b.com@c.org" behind. */
                    run = atom = d;
                    i = e - 1;
                    continue;
                }
            }
        }
        if (!is_local(c)) {
            run = NONE;
            continue;
        }
        if (run == NONE)
            run = atom = i;
        else if (c == '.' && s[i - 1] == '.')
            atom = i + 1;
        if (local_breaker(s, n, i))
            atom = i + 3;
    }
    return 0;
}

/* A whole text has the string's own ends on both sides. */
#define WHOLE_TEXT(name, text, len) const scan name = {NULL, text, len, 0, NULL, 0, 0, 0, 0, 0}

long redact_email_split(const char *s, size_t n)
{
    WHOLE_TEXT(whole, s, n);
    const scan *g = &whole;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '@' || (s[i] == '%' && n - i >= 3 && s[i + 1] == '4' && s[i + 2] == '0')) {
            if (i == 0 || s[0] == '.' || s[i - 1] == '.')
                return -1;
            for (size_t k = 0; k < i; k++)
                if (!is_local((unsigned char)s[k]) || (s[k] == '.' && s[k + 1] == '.'))
                    return -1;
            size_t d = i + (s[i] == '@' ? 1 : 3);
            return domain_end(g, d) == n ? (long)i : -1;
        }
    }
    return -1;
}

/* ================= V2 payment card ================= */

static int luhn(const unsigned char *d, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = d[n - 1 - i];
        if (i & 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* The IIN x length table of PII.md §4.7. */
static int card_iin_ok(const unsigned char *d, size_t n)
{
    unsigned two = d[0] * 10u + d[1], three = two * 10u + d[2], four = three * 10u + d[3];
    if (d[0] == 4)
        return n == 13 || n == 16 || n == 19;
    if (two >= 51 && two <= 55)
        return n == 16;
    if (four >= 2221 && four <= 2720)
        return n == 16;
    if (two == 34 || two == 37)
        return n == 15;
    if (four >= 2200 && four <= 2204)
        return n >= 16;
    if ((three >= 300 && three <= 305) || three == 309 || two == 36 || two == 38 || two == 39)
        return n >= 14;
    if (four >= 3528 && four <= 3589)
        return n >= 16;
    if (d[0] == 5 || d[0] == 6)
        return n >= 14;
    return 0;
}

/* The class of a 13-19 digit number: card, IMEI (strict profile) or none. */
static unsigned digits_class(const herald_redactor *r, const unsigned char *d, size_t n)
{
    if (n < 13 || n > 19)
        return CLS_NONE;
    int valid = luhn(d, n);
    if (valid && card_iin_ok(d, n))
        return CLS_CARD;
    if (valid && n == 15 && r->imei_by_value)
        return CLS_IMEI;
    return CLS_NONE;
}

unsigned redact_number_class(const herald_redactor *r, const char *s, size_t n)
{
    if (!r->rule_on[HERALD_RULE_V2_CARD] || n < 13 || n > 19)
        return CLS_NONE;
    unsigned char d[19];
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return CLS_NONE;
        d[i] = (unsigned char)(s[i] - '0');
    }
    return digits_class(r, d, n);
}

typedef struct digit_group {
    size_t start, end;
    char sep; /* separator before this group; 0 for the first */
} digit_group;

#define CARD_WINDOW 5

/* Layouts: one run; 4-4-..-(1..4); 4-6-5; 4-6-4. One separator kind. */
static unsigned card_subchain(const herald_redactor *r, const char *s, const digit_group *g,
                              size_t k)
{
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        total += g[i].end - g[i].start;
        if (i > 1 && g[i].sep != g[1].sep)
            return CLS_NONE;
    }
    if (total < 13 || total > 19)
        return CLS_NONE;
    if (k == 2)
        return CLS_NONE;
    if (k >= 3) {
        size_t l0 = g[0].end - g[0].start, l1 = g[1].end - g[1].start,
               l2 = g[2].end - g[2].start;
        int fours = 1;
        for (size_t i = 0; i + 1 < k; i++)
            fours &= g[i].end - g[i].start == 4;
        size_t last = g[k - 1].end - g[k - 1].start;
        int grouped = fours && last >= 1 && last <= 4;
        int amex_diners = k == 3 && l0 == 4 && l1 == 6 && (l2 == 4 || l2 == 5);
        if (!grouped && !amex_diners)
            return CLS_NONE;
    }
    unsigned char d[19];
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t p = g[i].start; p < g[i].end; p++)
            d[m++] = (unsigned char)(s[p] - '0');
    unsigned cls = digits_class(r, d, m);
    /* A grouped IMEI is not a thing; only bare runs. */
    return cls == CLS_IMEI && k != 1 ? CLS_NONE : cls;
}

static int detect_card(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    const herald_redactor *r = g->run->r;
    size_t i = 0;
    while (i < n) {
        if (!is_digit((unsigned char)s[i]) || is_word(before(g, i))) {
            i++;
            continue;
        }
        /* A chain of digit groups joined by single ' ' or '-', scanned with a
         * window of the next five groups (the longest layout). */
        digit_group w[CARD_WINDOW];
        size_t count = 0, next = i, scanned = i;
        int done = 0;
        char sep = 0;
        for (;;) {
            while (count < CARD_WINDOW && !done) {
                size_t e = next;
                while (e < n && is_digit((unsigned char)s[e]))
                    e++;
                scanned = e;
                if (is_word(after(g, e))) {
                    done = 1; /* a group glued to a word is no group */
                    break;
                }
                w[count++] = (digit_group){next, e, sep};
                if ((at(g, e) == ' ' || at(g, e) == '-') && is_digit(at(g, e + 1))) {
                    sep = s[e];
                    next = e + 1;
                } else {
                    done = 1;
                }
            }
            if (count == 0)
                break;
            size_t take = 0;
            unsigned cls = CLS_NONE;
            for (size_t k = count; k >= 1 && take == 0; k--) {
                cls = card_subchain(r, s, w, k);
                if (cls != CLS_NONE)
                    take = k;
            }
            if (take > 0) {
                unsigned rule = HERALD_RULE_V2_CARD;
                if (push(g, w[0].start, w[take - 1].end, cls, rule) != 0)
                    return -1;
            } else {
                take = 1;
            }
            memmove(w, w + take, (count - take) * sizeof *w);
            count -= take;
            if (count > 0)
                w[0].sep = 0;
        }
        i = scanned > i ? scanned : i + 1;
    }
    return 0;
}

/* ================= V3 IBAN ================= */

typedef struct iban_country {
    char code[3];
    unsigned char length;
} iban_country;

/* SWIFT IBAN registry lengths (PII.md §4.8), sorted by code. */
static const iban_country iban_registry[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22},
    {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20},
    {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22},
    {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HN", 28}, {"HR", 21},
    {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30},
    {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20},
    {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23},
    {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22},
    {"RU", 33}, {"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24},
    {"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26},
    {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
};

static unsigned iban_length(unsigned char a, unsigned char b)
{
    size_t lo = 0, hi = sizeof iban_registry / sizeof *iban_registry;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *code = iban_registry[mid].code;
        int c = a != (unsigned char)code[0] ? (int)a - (unsigned char)code[0]
                                            : (int)b - (unsigned char)code[1];
        if (c == 0)
            return iban_registry[mid].length;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

static unsigned char upper(unsigned char c)
{
    return is_lower(c) ? (unsigned char)(c - 'a' + 'A') : c;
}

static int iban_checksum_ok(const unsigned char *c, size_t len)
{
    unsigned rem = 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = c[(k + 4) % len];
        if (is_digit(ch))
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return rem == 1;
}

static int detect_iban(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i + 4 <= n; i++) {
        if (!is_alpha((unsigned char)s[i]) || !is_alpha((unsigned char)s[i + 1]) ||
            !is_digit((unsigned char)s[i + 2]) || !is_digit((unsigned char)s[i + 3]) ||
            is_alnum(before(g, i)))
            continue;
        unsigned len = iban_length(upper((unsigned char)s[i]), upper((unsigned char)s[i + 1]));
        if (len == 0)
            continue;
        unsigned char c[34];
        for (size_t k = 0; k < 4; k++)
            c[k] = upper((unsigned char)s[i + k]);
        size_t count = 4, p = i + 4;
        char sep = 0;
        int ok = 1;
        while (count < len) {
            if (count % 4 == 0 && (at(g, p) == ' ' || at(g, p) == '-') &&
                is_alnum(at(g, p + 1))) {
                if (sep != 0 && sep != s[p]) {
                    ok = 0;
                    break;
                }
                sep = s[p];
                p++;
            }
            if (!is_alnum(at(g, p))) {
                ok = 0;
                break;
            }
            c[count++] = upper((unsigned char)s[p++]);
        }
        if (!ok || is_alnum(after(g, p)) || !iban_checksum_ok(c, len))
            continue;
        if (push(g, i, p, CLS_IBAN, HERALD_RULE_V3_IBAN) != 0)
            return -1;
        i = p - 1;
    }
    return 0;
}

/* ================= V4 SSN ================= */

static int digits_at(const scan *g, size_t i, size_t count)
{
    for (size_t k = 0; k < count; k++)
        if (!is_digit(at(g, i + k)))
            return 0;
    return 1;
}

static int all_char(const char *s, size_t count, char c)
{
    for (size_t k = 0; k < count; k++)
        if (s[k] != c)
            return 0;
    return 1;
}

static int detect_ssn(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i + 11 <= n; i++) {
        if (s[i + 3] != '-' || s[i + 6] != '-' || !digits_at(g, i, 3) ||
            !digits_at(g, i + 4, 2) || !digits_at(g, i + 7, 4))
            continue;
        unsigned char prev = before(g, i), next = after(g, i + 11);
        if (is_word(prev) || prev == '-' || is_word(next) ||
            (next == '-' && (is_digit(at(g, i + 12)) || edge_at(g, i + 12))))
            continue;
        if (all_char(s + i, 3, '0') || memcmp(s + i, "666", 3) == 0 ||
            all_char(s + i + 4, 2, '0') || all_char(s + i + 7, 4, '0'))
            continue;
        if (push(g, i, i + 11, CLS_SSN, HERALD_RULE_V4_SSN) != 0)
            return -1;
        i += 10;
    }
    return 0;
}

/* ================= V5 phone ================= */

static int is_phone_sep(unsigned char c)
{
    return c == ' ' || c == '.' || c == '-';
}

/* P2/P3 start: prev is not [A-Za-z0-9_+./-], and the candidate is not the
 * tail of a longer digit-group sequence ("0044 0532 0130 00" in a bad IBAN:
 * PII.md's "not S + digit" rule for next, mirrored for prev). */
static int phone_prev_ok(const scan *g, size_t i)
{
    unsigned char p = before(g, i);
    if (is_word(p) || (p != 0 && strchr("+./-", p) != NULL))
        return 0;
    if (p == ' ' && i >= 1 && is_digit(before(g, i - 1)))
        return 0;
    return 1;
}

static int phone_next_ok(const scan *g, size_t e)
{
    unsigned char c = after(g, e);
    if (is_word(c))
        return 0;
    if ((is_phone_sep(c) || c == '/') && (is_digit(at(g, e + 1)) || edge_at(g, e + 1)))
        return 0;
    return 1;
}

/* P1: +CC ... with 8-15 counted digits; the longest prefix of whole groups
 * that fits. Returns the end or 0. */
static size_t phone_international(const scan *g, size_t i)
{
    const char *s = g->s;
    size_t n = g->n;
    unsigned char p = before(g, i);
    if (is_word(p) || p == '+' || at(g, i + 1) < '1' || at(g, i + 1) > '9')
        return 0;
    size_t e = i + 1;
    while (e < n && is_digit((unsigned char)s[e]) && e - i <= 16)
        e++;
    size_t count = e - i - 1, best = 0;
    if (count > 15)
        return 0;
    if (count >= 8 && !is_word(after(g, e)))
        best = e;
    for (;;) {
        size_t q = e, paren = 0;
        if (is_phone_sep(at(g, q)))
            q++;
        if (at(g, q) == '(') {
            size_t d = q + 1, de = d;
            while (de < n && is_digit((unsigned char)s[de]) && de - d < 5)
                de++;
            if (de == d || de - d > 4 || at(g, de) != ')')
                break;
            if (!(de - d == 1 && s[d] == '0'))
                paren = de - d; /* a (0) trunk group does not count */
            q = de + 1;
            if (is_phone_sep(at(g, q)))
                q++;
        }
        if (!is_digit(at(g, q)))
            break;
        size_t r = q;
        while (r < n && is_digit((unsigned char)s[r]) && r - q <= 16)
            r++;
        count += paren + (r - q);
        if (count > 15)
            break;
        e = r;
        if (count >= 8 && !is_word(after(g, e)))
            best = e;
    }
    return best;
}

/* P2 NANP: (1 )?(NXX) NXX-XXXX or NXX S NXX S XXXX. */
static size_t phone_nanp(const scan *g, size_t i)
{
    const char *s = g->s;
    size_t p = i;
    if (s[p] == '1') {
        if (!is_phone_sep(at(g, p + 1)))
            return 0;
        p += 2;
    }
    int paren = 0;
    unsigned char s1 = 0;
    if (at(g, p) == '(') {
        if (!(at(g, p + 1) >= '2' && at(g, p + 1) <= '9') || !digits_at(g, p + 2, 2) ||
            at(g, p + 4) != ')')
            return 0;
        p += 5;
        if (at(g, p) == ' ')
            p++;
        paren = 1;
    } else {
        if (!(at(g, p) >= '2' && at(g, p) <= '9') || !digits_at(g, p + 1, 2) ||
            !is_phone_sep(at(g, p + 3)))
            return 0;
        s1 = at(g, p + 3);
        p += 4;
    }
    if (!(at(g, p) >= '2' && at(g, p) <= '9') || !digits_at(g, p + 1, 2))
        return 0;
    unsigned char s2 = at(g, p + 3);
    if (!is_phone_sep(s2) || (!paren && s2 != s1))
        return 0;
    p += 4;
    if (!digits_at(g, p, 4))
        return 0;
    p += 4;
    return phone_next_ok(g, p) ? p : 0;
}

/* P3 national with trunk 0: 0AA[A..] then 1-4 groups, 10-12 digits. */
static size_t phone_national(const scan *g, size_t i)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t p = i;
    int paren = s[p] == '(';
    if (paren)
        p++;
    if (at(g, p) != '0' || !(at(g, p + 1) >= '1' && at(g, p + 1) <= '9'))
        return 0;
    size_t e = p;
    while (e < n && is_digit((unsigned char)s[e]) && e - p <= 5)
        e++;
    size_t total = e - p;
    if (total < 2 || total > 5)
        return 0;
    if (paren) {
        if (at(g, e) != ')' || at(g, e + 1) != ' ')
            return 0;
        p = e + 2;
    } else {
        unsigned char c = at(g, e);
        if (!(is_phone_sep(c) || c == '/'))
            return 0;
        p = e + 1;
    }
    size_t groups = 0, end = 0;
    unsigned char later = 0;
    while (groups < 4) {
        size_t r = p;
        while (r < n && is_digit((unsigned char)s[r]) && r - p <= 8)
            r++;
        if (r - p < 2 || r - p > 8)
            break;
        total += r - p;
        groups++;
        end = r;
        unsigned char c = at(g, r);
        if (groups == 4 || !is_phone_sep(c) || !is_digit(at(g, r + 1)))
            break;
        if (later != 0 && later != c)
            break;
        later = c;
        p = r + 1;
    }
    if (groups == 0 || total < 10 || total > 12 || !phone_next_ok(g, end))
        return 0;
    return end;
}

static int detect_phone(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t covered = 0; /* P2/P3 never start inside a found phone */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t e = 0;
        if (c == '+') {
            e = phone_international(g, i);
        } else if (i >= covered && (c == '(' || is_digit(c)) && phone_prev_ok(g, i)) {
            if (c == '1' || c == '(' || (c >= '2' && c <= '9'))
                e = phone_nanp(g, i);
            if (e == 0 && (c == '0' || c == '('))
                e = phone_national(g, i);
        }
        if (e > i) {
            if (push(g, i, e, CLS_PHONE, HERALD_RULE_V5_PHONE) != 0)
                return -1;
            covered = e;
        }
    }
    return 0;
}

/* ================= V6 IPv4 ================= */

/* A dotted quad at i: octets 0-255 without leading zeros. End, or 0. */
static size_t ipv4_at(const scan *g, size_t i)
{
    const char *s = g->s;
    size_t n = g->n;
    size_t p = i;
    for (int k = 0; k < 4; k++) {
        size_t d = p;
        unsigned v = 0;
        while (p < n && is_digit((unsigned char)s[p]) && p - d < 4) {
            v = v * 10 + (unsigned)(s[p] - '0');
            p++;
        }
        if (p == d || p - d > 3 || v > 255 || (p - d > 1 && s[d] == '0'))
            return 0;
        if (k < 3) {
            if (at(g, p) != '.')
                return 0;
            p++;
        }
    }
    return p;
}

/* Spans this stage found in the segment before V6 ran, merged and sorted
 * (redact_detect_pii sets them up). An exemption that leans on bytes inside
 * one of them is not granted: a second pass sees a marker there. */
static int overlaps_found(const scan *g, size_t a, size_t b)
{
    if (g->found_count == 0)
        return 0;
    const redact_span *v = g->out->v + g->found;
    size_t lo = 0, hi = g->found_count;
    a += g->base;
    b += g->base;
    while (lo < hi) { /* the first span that ends after a */
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].end <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->found_count && v[lo].start < b;
}

static int is_product_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

/* "Chrome/120.0.0.0": a product token before the '/' at slash. */
static int product_version(const scan *g, size_t slash)
{
    const char *s = g->s;
    size_t j = slash;
    while (j > 0 && slash - j < 64 && is_product_char((unsigned char)s[j - 1]))
        j--;
    if (j == slash || !is_alpha((unsigned char)s[j]))
        return 0;
    unsigned char p = before(g, j);
    if (!(p == 0 || is_space(p) || p == '(' || p == ';' || p == ','))
        return 0;
    return !overlaps_found(g, j > 0 ? j - 1 : 0, slash + 1);
}

static int is_joiner(unsigned char c)
{
    return is_blank(c) || c == ':' || c == '=' || c == '#' || c == '_' || c == '-';
}

/* "version 1.2.3.4", "fw-1.2.3.4": a version word within 24 bytes. */
static int version_word_before(const scan *g, size_t i)
{
    const char *s = g->s;
    static const char *const words[] = {"version", "ver", "v",  "build",
                                        "release", "rev", "firmware", "fw"};
    size_t limit = i > 24 ? i - 24 : 0;
    size_t j = i;
    while (j > limit && is_joiner((unsigned char)s[j - 1]))
        j--;
    size_t end = j;
    while (j > limit && is_alpha((unsigned char)s[j - 1]))
        j--;
    if (j == end || is_alpha(before(g, j)))
        return 0;
    for (size_t k = 0; k < sizeof words / sizeof *words; k++)
        if (equals_nocase(s + j, end - j, words[k]))
            return !overlaps_found(g, j, i);
    return 0;
}

static int detect_ipv4(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        unsigned char p = before(g, i);
        if (!is_digit((unsigned char)s[i]) || is_word(p) || p == '.')
            continue;
        size_t e = ipv4_at(g, i);
        if (e == 0)
            continue;
        unsigned char next = after(g, e);
        if (is_word(next) ||
            ((next == '.' || next == '-') && edge_at(g, e + 1)) ||
            (next == '.' && is_digit(at(g, e + 1))) || (next == '-' && is_alpha(at(g, e + 1))))
            continue;
        if (p == '@' || (p == '/' && product_version(g, i - 1)) || version_word_before(g, i))
            continue;
        if (push(g, i, e, CLS_IP, HERALD_RULE_V6_IPV4) != 0)
            return -1;
        i = e - 1;
    }
    return 0;
}

/* ================= V7 IPv6 ================= */

static int is_v6_char(unsigned char c)
{
    return is_hex(c) || c == ':' || c == '.';
}

static int ipv6_valid(const char *s, size_t n)
{
    char text[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    if (n == 0 || n > INET6_ADDRSTRLEN - 1)
        return 0;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, addr) == 1;
}

static int detect_ipv6(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i], p = before(g, i);
        if (!(is_hex(c) || c == ':') || is_word(p) || p == ':' || p == '.')
            continue;
        size_t run_end = i;
        while (run_end < n && is_v6_char((unsigned char)s[run_end]))
            run_end++;
        size_t e = run_end;
        if (e - i > 1 && s[e - 1] == '.')
            e--;
        else if (e - i > 1 && s[e - 1] == ':' && s[e - 2] != ':')
            e--;
        size_t colons = 0;
        int decimal = 0;
        for (size_t k = i; k < e && k - i <= INET6_ADDRSTRLEN; k++) {
            colons += s[k] == ':';
            decimal |= is_digit((unsigned char)s[k]);
        }
        if (edge_at(g, run_end)) { /* the run may have gone on */
            i = run_end - 1;
            continue;
        }
        size_t z = e;
        if (e == run_end && at(g, z) == '%' && is_alnum(at(g, z + 1))) {
            z++;
            while (z < n && is_alnum((unsigned char)s[z]))
                z++;
        }
        if (colons >= 2 && decimal && e - i > 2 && !is_word(after(g, z)) &&
            ipv6_valid(s + i, e - i)) {
            if (push(g, i, z, CLS_IP, HERALD_RULE_V7_IPV6) != 0)
                return -1;
            run_end = z > run_end ? z : run_end;
        }
        i = run_end - 1;
    }
    return 0;
}

int redact_is_ip(const char *s, size_t n)
{
    WHOLE_TEXT(whole, s, n);
    const scan *g = &whole;
    if (n > 0 && ipv4_at(g, 0) == n)
        return HERALD_RULE_V6_IPV4;
    size_t addr = n;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '%') {
            addr = i; /* zone, "%25eth0" in a URL */
            break;
        }
    int decimal = 0;
    for (size_t i = 0; i < addr; i++)
        decimal |= is_digit((unsigned char)s[i]);
    if (decimal && memchr(s, ':', addr) != NULL && ipv6_valid(s, addr))
        return HERALD_RULE_V7_IPV6;
    return -1;
}

/* ================= V8 MAC ================= */

static int is_mac_edge(unsigned char c)
{
    return is_word(c) || c == ':' || c == '.' || c == '-';
}

static int detect_mac(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        if (!is_hex((unsigned char)s[i]) || is_mac_edge(before(g, i)))
            continue;
        size_t e = 0;
        unsigned char sep = at(g, i + 2);
        if ((sep == ':' || sep == '-') && n - i >= 17) {
            int ok = 1;
            for (size_t k = 0; k < 6 && ok; k++) {
                ok = is_hex((unsigned char)s[i + 3 * k]) && is_hex((unsigned char)s[i + 3 * k + 1]);
                if (k < 5)
                    ok = ok && (unsigned char)s[i + 3 * k + 2] == sep;
            }
            if (ok)
                e = i + 17;
        } else if (at(g, i + 4) == '.' && n - i >= 14 && s[i + 9] == '.') {
            int ok = 1, letter = 0;
            for (size_t k = 0; k < 14 && ok; k++) {
                if (k == 4 || k == 9)
                    continue;
                ok = is_hex((unsigned char)s[i + k]);
                letter |= !is_digit((unsigned char)s[i + k]);
            }
            if (ok && letter)
                e = i + 14;
        }
        if (e == 0 || is_mac_edge(after(g, e)))
            continue;
        int zero = 1, ones = 1;
        for (size_t k = i; k < e; k++) {
            unsigned char c = lower((unsigned char)s[k]);
            if (is_hex(c)) {
                zero &= c == '0';
                ones &= c == 'f';
            }
        }
        if (zero || ones)
            continue;
        if (push(g, i, e, CLS_MAC, HERALD_RULE_V8_MAC) != 0)
            return -1;
        i = e - 1;
    }
    return 0;
}

/* ================= V9 Bitcoin ================= */

/* Base58 digit of a byte, alphabet 1-9 A-H J-N P-Z a-k m-z (-1: none). Generated. */
static const signed char base58_table[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -1, -1, -1, -1, -1,
    -1, 9, 10, 11, 12, 13, 14, 15, 16, -1, 17, 18, 19, 20, 21, -1,
    22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, -1, -1, -1, -1, -1,
    -1, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, -1, 44, 45, 46,
    47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int base58_value(unsigned char c)
{
    return base58_table[c];
}

static int is_base58(unsigned char c)
{
    return base58_value(c) >= 0;
}

static int base58check_address(const char *s, size_t n)
{
    unsigned char b[25];
    memset(b, 0, sizeof b);
    size_t ones = 0;
    while (ones < n && s[ones] == '1')
        ones++;
    for (size_t i = 0; i < n; i++) {
        unsigned carry = (unsigned)base58_value((unsigned char)s[i]);
        for (size_t k = sizeof b; k-- > 0;) {
            carry += 58u * b[k];
            b[k] = (unsigned char)carry;
            carry >>= 8;
        }
        if (carry != 0)
            return 0;
    }
    size_t zeros = 0;
    while (zeros < sizeof b && b[zeros] == 0)
        zeros++;
    if (zeros != ones || (b[0] != 0x00 && b[0] != 0x05))
        return 0;
    unsigned char h[32];
    redact_sha256_once(b, 21, h);
    redact_sha256_once(h, sizeof h, h);
    return memcmp(h, b + 21, 4) == 0;
}

/* Bech32 value of a byte, charset "qpzry9x8gf2tvdw0s3jn54khce6mua7l" in either case
 * (-1: none). Generated. */
static const signed char bech32_table[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    15, -1, 10, 17, 21, 20, 26, 30, 7, 5, -1, -1, -1, -1, -1, -1,
    -1, 29, -1, 24, 13, 25, 9, 8, 23, -1, 18, 22, 31, 27, 19, -1,
    1, 0, 3, 16, 11, 28, 12, 14, 6, 4, 2, -1, -1, -1, -1, -1,
    -1, 29, -1, 24, 13, 25, 9, 8, 23, -1, 18, 22, 31, 27, 19, -1,
    1, 0, 3, 16, 11, 28, 12, 14, 6, 4, 2, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int bech32_value(unsigned char c)
{
    return bech32_table[c];
}

static int is_bech32_lower(unsigned char c)
{
    return !is_upper(c) && bech32_value(c) >= 0;
}

static int is_bech32_upper(unsigned char c)
{
    return !is_lower(c) && bech32_value(c) >= 0;
}

static uint32_t bech32_step(uint32_t chk, unsigned value)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ value;
    for (int k = 0; k < 5; k++)
        if ((top >> k) & 1)
            chk ^= gen[k];
    return chk;
}

/* data: the part after "bc1", checksum included. */
static int bech32_address(const char *data, size_t n)
{
    uint32_t chk = 1;
    chk = bech32_step(chk, 'b' >> 5);
    chk = bech32_step(chk, 'c' >> 5);
    chk = bech32_step(chk, 0);
    chk = bech32_step(chk, 'b' & 31);
    chk = bech32_step(chk, 'c' & 31);
    for (size_t i = 0; i < n; i++)
        chk = bech32_step(chk, (unsigned)bech32_value((unsigned char)data[i]));
    int version = bech32_value((unsigned char)data[0]);
    return (version == 0 && chk == 1) || (version > 0 && version <= 16 && chk == 0x2bc830a3);
}

static int detect_crypto(scan *g)
{
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_alnum(before(g, i)))
            continue;
        size_t e = 0;
        if (c == '1' || c == '3') {
            size_t r = run_of(s, n, i + 1, is_base58, 35);
            size_t len = r - (i + 1);
            if (len >= 25 && len <= 34 && !is_alnum(after(g, r)) &&
                base58check_address(s + i, r - i))
                e = r;
        } else if (has_prefix(s, n, i, "bc1") || has_prefix(s, n, i, "BC1")) {
            size_t r = run_of(s, n, i + 3, c == 'b' ? is_bech32_lower : is_bech32_upper, 72);
            size_t len = r - (i + 3);
            if (len >= 11 && len <= 71 && !is_alnum(after(g, r)) &&
                bech32_address(s + i + 3, len))
                e = r;
        }
        if (e > i) {
            if (push(g, i, e, CLS_CRYPTO, HERALD_RULE_V9_CRYPTO) != 0)
                return -1;
            i = e - 1;
        }
    }
    return 0;
}

/* ================= V10 user home path ================= */

static int is_path_start(unsigned char c)
{
    return c == 0 || is_space(c) || (strchr("\"'=:([,", c) != NULL);
}

static int is_user_char(unsigned char c)
{
    return !(c == '/' || c == '\\' || is_space(c) || c == '"' || c == '\'' || c == '<' ||
             c == '>' || c == ':');
}

static int detect_user_path(scan *g)
{
    static const char *const homes[] = {"users", "home", "documents and settings"};
    const char *s = g->s;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '/' && s[i] != '\\')
            continue;
        if (!is_path_start(before(g, i)) && !(i >= 7 && has_prefix_nocase(s, n, i - 7, "file://")))
            continue;
        for (size_t k = 0; k < sizeof homes / sizeof *homes; k++) {
            size_t len = strlen(homes[k]);
            if (!has_prefix_nocase(s, n, i + 1, homes[k]))
                continue;
            unsigned char sep = at(g, i + 1 + len);
            if (sep != '/' && sep != '\\')
                continue;
            size_t a = i + 2 + len, b = a;
            while (b < n && is_user_char((unsigned char)s[b]))
                b++;
            if (b > a) {
                if (push(g, a, b, CLS_USER, HERALD_RULE_V10_USER_PATH) != 0)
                    return -1;
                i = b - 1;
            }
            break;
        }
    }
    return 0;
}

/* ================= custom ERE patterns ================= */

static int is_url_stop(unsigned char c)
{
    return is_space(c) || c == '"' || c == '\'' || c == '<' || c == '>';
}

static int detect_custom_piece(scan *g, const redact_custom *c, size_t from, size_t len)
{
    redact_buf *copy = &g->run->custom;
    copy->len = 0;
    if (redact_buf_append(copy, g->s + from, len) != 0 || redact_buf_append(copy, "", 1) != 0)
        return -1;
    const char *text = copy->data;
    size_t off = 0;
    while (off <= len) {
        regmatch_t m;
        if (regexec(&c->regex, text + off, 1, &m, off > 0 ? REG_NOTBOL : 0) != 0)
            break;
        size_t a = off + (size_t)m.rm_so, b = off + (size_t)m.rm_eo;
        size_t end = b;
        /* Spans do not begin or end with the bytes that end a URL in text
         * (white space, quotes, <>): replacing those would move a URL's end
         * on a second pass. */
        while (a < b && is_url_stop((unsigned char)text[a]))
            a++;
        while (b > a && is_url_stop((unsigned char)text[b - 1]))
            b--;
        if (b > a) {
            /* The libc engine may work on bytes: widen to whole UTF-8
             * sequences so the output stays valid. */
            while (a > 0 && ((unsigned char)text[a] & 0xc0) == 0x80)
                a--;
            while (b < len && ((unsigned char)text[b] & 0xc0) == 0x80)
                b++;
            if (push(g, from + a, from + b, c->cls, HERALD_RULE_CUSTOM) != 0)
                return -1;
        }
        off = end > off + (size_t)m.rm_so ? end : off + (size_t)m.rm_so + 1;
    }
    return 0;
}

static int detect_custom(scan *g)
{
    const herald_redactor *r = g->run->r;
    for (size_t k = 0; k < r->custom_count; k++) {
        const redact_custom *c = &r->custom[k];
        if (g->n > c->max_bytes)
            continue;
        /* regexec reads C strings: pieces between NUL bytes. */
        size_t from = 0;
        while (from <= g->n) {
            const char *nul = memchr(g->s + from, '\0', g->n - from);
            size_t to = nul != NULL ? (size_t)(nul - g->s) : g->n;
            if (to > from && detect_custom_piece(g, c, from, to - from) != 0)
                return -1;
            from = to + 1;
        }
    }
    return 0;
}

/* ================= stage entry points ================= */

/* Which anchors a segment holds, from one pass over it, so scanners whose
 * anchor byte is absent are not run at all. */
enum {
    HAS_DIGIT = 1u << 0,
    HAS_AT = 1u << 1,     /* '@' or '%' (for "%40") */
    HAS_SLASH = 1u << 2,  /* '/' or '\\' */
    HAS_COLON = 1u << 3,
    HAS_DOT = 1u << 4,
    HAS_DASH = 1u << 5,
    HAS_ASSIGN = 1u << 6, /* '=' or ':' */
    HAS_B = 1u << 7,      /* 'b' or 'B': bearer, basic, bc1 */
    HAS_TOKEN = 1u << 8,  /* S4: 'A', 'S' (AKIA, AIza, SK) or '_' (every other prefix
                             holds '_', '-' or '.') */
    HAS_LETTER = 1u << 9,
    HAS_BLANK = 1u << 10
};

/* anchor_table[c]: the HAS_* bits byte c contributes (ASCII; bytes >= 0x80
 * are opaque and contribute none). Generated from the definitions above. */
static const unsigned short anchor_table[128] = {
    0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x400, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000,
    0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000,
    0x400, 0x000, 0x000, 0x000, 0x000, 0x002, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x020, 0x010, 0x004,
    0x001, 0x001, 0x001, 0x001, 0x001, 0x001, 0x001, 0x001, 0x001, 0x001, 0x048, 0x000, 0x000, 0x040, 0x000, 0x000,
    0x002, 0x300, 0x280, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200,
    0x200, 0x200, 0x200, 0x300, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x000, 0x004, 0x000, 0x000, 0x100,
    0x000, 0x200, 0x280, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200,
    0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x200, 0x000, 0x000, 0x000, 0x000, 0x000,
};

static unsigned anchors(const char *s, size_t n)
{
    unsigned have = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 128)
            have |= anchor_table[c];
    }
    return have;
}

static unsigned char edge(unsigned flags, unsigned which)
{
    return (flags & which) ? EDGE_MARKER : 0;
}

int redact_detect_secrets(redact_run *run, const char *s, size_t n, size_t base, unsigned flags,
                          redact_spans *out)
{
    scan g = {run, s, n, base, out, flags, 0, 0, edge(flags, RF_LEFT_MARKER),
              edge(flags, RF_RIGHT_MARKER)};
    unsigned have = anchors(s, n);
    int segment = (flags & RF_SEGMENT) != 0; /* URL path segments: S4 only */
    if (!segment && (have & HAS_B) && (have & HAS_BLANK) && n >= 12 &&
        rule_on(&g, HERALD_RULE_S3_AUTH) && detect_auth(&g) != 0)
        return -1;
    if ((have & (HAS_TOKEN | HAS_DASH | HAS_DOT)) && n >= 14 && rule_on(&g, HERALD_RULE_S4_TOKEN) &&
        detect_tokens(&g) != 0)
        return -1;
    if (!segment && (have & HAS_ASSIGN) && rule_on(&g, HERALD_RULE_S5_ASSIGNMENT) &&
        detect_assignment(&g) != 0)
        return -1;
    return 0;
}

int redact_detect_pii(redact_run *run, const char *s, size_t n, size_t base, unsigned flags,
                      redact_spans *out)
{
    scan g = {run, s, n, base, out, flags, 0, 0, edge(flags, RF_LEFT_MARKER),
              edge(flags, RF_RIGHT_MARKER)};
    unsigned have = anchors(s, n);
    int ip = !(flags & RF_NO_IP);
    size_t first = out->n;
    if ((have & HAS_AT) && rule_on(&g, HERALD_RULE_V1_EMAIL) && detect_email(&g) != 0)
        return -1;
    if ((have & HAS_DIGIT) && n >= 13 && rule_on(&g, HERALD_RULE_V2_CARD) && detect_card(&g) != 0)
        return -1;
    if ((have & HAS_DIGIT) && (have & HAS_LETTER) && n >= 15 && rule_on(&g, HERALD_RULE_V3_IBAN) &&
        detect_iban(&g) != 0)
        return -1;
    if ((have & HAS_DIGIT) && (have & HAS_DASH) && n >= 11 && rule_on(&g, HERALD_RULE_V4_SSN) &&
        detect_ssn(&g) != 0)
        return -1;
    if ((have & HAS_DIGIT) && n >= 9 && rule_on(&g, HERALD_RULE_V5_PHONE) && detect_phone(&g) != 0)
        return -1;
    if (ip && (have & HAS_COLON) && rule_on(&g, HERALD_RULE_V7_IPV6) && detect_ipv6(&g) != 0)
        return -1;
    if ((have & (HAS_COLON | HAS_DASH | HAS_DOT)) && n >= 14 && rule_on(&g, HERALD_RULE_V8_MAC) &&
        detect_mac(&g) != 0)
        return -1;
    if ((have & (HAS_DIGIT | HAS_B)) && n >= 14 && rule_on(&g, HERALD_RULE_V9_CRYPTO) &&
        detect_crypto(&g) != 0)
        return -1;
    if ((have & HAS_SLASH) && n >= 7 && rule_on(&g, HERALD_RULE_V10_USER_PATH) &&
        detect_user_path(&g) != 0)
        return -1;
    if (rule_on(&g, HERALD_RULE_CUSTOM) && detect_custom(&g) != 0)
        return -1;
    /* V6 last: its exemptions look back up to 64 bytes and must not lean on
     * text the rules above are about to replace. */
    if (ip && (have & HAS_DIGIT) && (have & HAS_DOT) && n >= 7 && rule_on(&g, HERALD_RULE_V6_IPV4)) {
        if (out->n > first) {
            redact_spans found = {out->v + first, out->n - first, out->n - first};
            redact_spans_merge(&found);
            out->n = first + found.n;
            g.found = first;
            g.found_count = found.n;
        }
        if (detect_ipv4(&g) != 0)
            return -1;
    }
    return 0;
}
