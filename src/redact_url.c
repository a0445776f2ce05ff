/*
 * S2, the URL structure rule of PII.md §5: userinfo, webhook secrets, IP
 * hosts, path segments, query and fragment parameters, each judged on its
 * percent-decoded text and replaced whole in the raw URL, so the output is
 * the input byte for byte except for replaced parts.
 *
 * The splitter is herald's own rather than herald_url_parse: it has to take
 * relative URLs, and it has to step over markers ("[ip:198.51.100.0/24]"
 * holds a '/', a hash marker a ':') so a second pass sees the same
 * components as the first. Each byte is visited a constant number of times:
 * once by the splitter, once by the decoder, once by the detectors.
 */
#include <string.h>

#include "redact_internal.h"
#include "url.h"

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_scheme_char(unsigned char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '-';
}

static int is_url_stop(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' ||
           c == '"' || c == '\'' || c == '<' || c == '>';
}

static int equals_nocase(const char *s, size_t n, const char *literal)
{
    size_t len = strlen(literal);
    if (n != len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)literal[i])
            return 0;
    }
    return 1;
}

static int ends_with_nocase(const char *s, size_t n, const char *literal)
{
    size_t len = strlen(literal);
    return n >= len && equals_nocase(s + n - len, len, literal);
}

/* Length of the scheme at s (letters first) followed by "://", or 0. */
static size_t scheme_length(const char *s, size_t n)
{
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (i < n && is_scheme_char((unsigned char)s[i]))
        i++;
    return n - i >= 3 && memcmp(s + i, "://", 3) == 0 ? i : 0;
}

int redact_url_whole(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] == '/' || s[0] == '?' || s[0] == '#')
        return 1;
    return scheme_length(s, n) > 0;
}

/* 1 if s[a, e) ends with a whole marker. */
static int ends_with_marker(const herald_redactor *r, const char *s, size_t a, size_t e)
{
    size_t limit = e - a > 64 ? e - 64 : a;
    for (size_t k = e; k > limit; k--)
        if (s[k - 1] == '[')
            return redact_marker_len(r, s + k - 1, e - (k - 1)) == e - (k - 1);
    return 0;
}

int redact_url_find(const herald_redactor *r, const char *s, size_t n, size_t from, size_t *start,
                    size_t *end)
{
    size_t i = from;
    while (i < n) {
        const char *hit = redact_find(s + i, n - i, "://", 3);
        if (hit == NULL)
            return 0;
        size_t colon = (size_t)(hit - s);
        size_t a = colon;
        while (a > from && is_scheme_char((unsigned char)s[a - 1]))
            a--;
        while (a < colon && !is_alpha((unsigned char)s[a]))
            a++;
        if (a == colon) {
            i = colon + 1;
            continue;
        }
        size_t e = colon + 3;
        while (e < n && !is_url_stop((unsigned char)s[e]))
            e++;
        /* Sentence punctuation after a URL is not part of it; a marker's
         * closing bracket is. */
        while (e > colon + 3 && s[e - 1] != 0 && strchr(".,;:!?)]", s[e - 1]) != NULL) {
            if (s[e - 1] == ']' && ends_with_marker(r, s, colon + 3, e))
                break;
            e--;
        }
        *start = a;
        *end = e;
        return 1;
    }
    return 0;
}

/* The next byte in [i, end) that is one of stops, stepping over markers. */
static size_t scan_to(const herald_redactor *r, const char *s, size_t i, size_t end,
                      const char *stops)
{
    while (i < end) {
        unsigned char c = (unsigned char)s[i];
        if (c == '[') {
            size_t m = redact_marker_len(r, s + i, end - i);
            if (m > 0) {
                i += m;
                continue;
            }
        }
        if (c != 0 && strchr(stops, c) != NULL)
            return i;
        i++;
    }
    return end;
}

static int is_whole_marker(const herald_redactor *r, const char *s, size_t n)
{
    return n > 0 && s[0] == '[' && redact_marker_len(r, s, n) == n;
}

static int decode(redact_buf *out, const char *s, size_t n, int plus_as_space)
{
    out->len = 0;
    if (redact_buf_reserve(out, n + 1) != 0)
        return -1;
    out->len = herald_percent_decode(s, n, out->data, n + 1, plus_as_space);
    return 0;
}

typedef struct url_state {
    redact_run *run;
    unsigned flags;
    redact_buf *out;
    const char *host;
    size_t host_len;
    int file; /* file: scheme */
} url_state;

static int copy(url_state *u, const char *s, size_t n)
{
    return redact_buf_append(u->out, s, n);
}

/* Run the detectors on a decoded part; if any fires, append its replacement
 * instead of the raw text. which: RF_* flags for redact_detect_any. */
static int judge_part(url_state *u, const char *raw, size_t raw_len, int plus_as_space,
                      unsigned which)
{
    redact_run *run = u->run;
    if (raw_len == 0 || is_whole_marker(run->r, raw, raw_len))
        return copy(u, raw, raw_len);
    if (decode(&run->decoded, raw, raw_len, plus_as_space) != 0)
        return -1;
    unsigned cls, rule, span_flags;
    size_t a, b;
    if (redact_detect_any(run, run->decoded.data, run->decoded.len,
                          which | (u->flags & RF_NO_IP), &cls, &rule, &a, &b, &span_flags) != 0)
        return -1;
    if (cls == CLS_NONE)
        return copy(u, raw, raw_len);
    redact_count(run, rule);
    /* The whole part is replaced: keep-domain may show only what the email
     * span itself covered. */
    if (a != 0 || b != run->decoded.len)
        span_flags |= RF_PLAIN;
    return redact_emit(run, u->out, cls, run->decoded.data + a, b - a, u->flags | span_flags);
}

static int rewrite_authority(url_state *u, const char *s, size_t n)
{
    const herald_redactor *r = u->run->r;
    size_t at = n;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == '@') {
            at = i - 1;
            break;
        }
    size_t h = 0;
    if (at < n) {
        if (!r->rule_on[HERALD_RULE_S2_URL] || is_whole_marker(r, s, at)) {
            if (copy(u, s, at) != 0)
                return -1;
        } else {
            redact_count(u->run, HERALD_RULE_S2_URL);
            if (redact_emit(u->run, u->out, CLS_SECRET, s, at, u->flags) != 0)
                return -1;
        }
        if (copy(u, "@", 1) != 0)
            return -1;
        h = at + 1;
    }

    /* host: a marker, a [literal], or up to the port's ':' */
    size_t host_end, lit_a = 0, lit_b = 0;
    size_t m = h < n && s[h] == '[' ? redact_marker_len(r, s + h, n - h) : 0;
    if (m > 0) {
        host_end = h + m;
    } else if (h < n && s[h] == '[') {
        const char *close = memchr(s + h, ']', n - h);
        host_end = close != NULL ? (size_t)(close - s) + 1 : n;
        lit_a = h + 1;
        lit_b = close != NULL ? host_end - 1 : n;
    } else {
        host_end = h;
        while (host_end < n && s[host_end] != ':')
            host_end++;
        lit_a = h;
        lit_b = host_end;
    }
    u->host = s + h;
    u->host_len = host_end - h;
    int rule = lit_b > lit_a ? redact_is_ip(s + lit_a, lit_b - lit_a) : -1;
    if (rule >= 0 && r->rule_on[rule]) {
        redact_count(u->run, (unsigned)rule);
        if (redact_emit(u->run, u->out, CLS_IP, s + lit_a, lit_b - lit_a, u->flags) != 0)
            return -1;
    } else if (copy(u, s + h, host_end - h) != 0) {
        return -1;
    }
    return copy(u, s + host_end, n - host_end);
}

/* Webhook URLs carry their secret in the path (PII.md §5.2). Returns the
 * length of the path prefix to keep before the secret part, or 0. */
static size_t webhook_prefix(const url_state *u, const char *path, size_t n, size_t *secret_end)
{
    if (u->host == NULL)
        return 0;
    if (equals_nocase(u->host, u->host_len, "hooks.slack.com")) {
        static const char *const prefixes[] = {"/services/", "/workflows/", "/triggers/"};
        for (size_t i = 0; i < 3; i++) {
            size_t len = strlen(prefixes[i]);
            if (n > len && equals_nocase(path, len, prefixes[i])) {
                *secret_end = n;
                return len;
            }
        }
        return 0;
    }
    if (equals_nocase(u->host, u->host_len, "discord.com") ||
        equals_nocase(u->host, u->host_len, "discordapp.com") ||
        ends_with_nocase(u->host, u->host_len, ".discord.com")) {
        static const char prefix[] = "/api/webhooks/";
        size_t len = sizeof prefix - 1;
        if (n <= len || !equals_nocase(path, len, prefix))
            return 0;
        const char *slash = memchr(path + len, '/', n - len);
        if (slash == NULL)
            return 0;
        size_t token = (size_t)(slash - path) + 1;
        size_t e = token;
        while (e < n && path[e] != '/')
            e++;
        if (e == token)
            return 0;
        *secret_end = e;
        return token;
    }
    return 0;
}

static int rewrite_path(url_state *u, const char *s, size_t n)
{
    const herald_redactor *r = u->run->r;
    size_t secret_end = 0;
    size_t keep = r->rule_on[HERALD_RULE_S2_URL] ? webhook_prefix(u, s, n, &secret_end) : 0;
    if (keep > 0) {
        if (copy(u, s, keep) != 0)
            return -1;
        if (is_whole_marker(r, s + keep, secret_end - keep)) {
            if (copy(u, s + keep, secret_end - keep) != 0)
                return -1;
        } else {
            redact_count(u->run, HERALD_RULE_S2_URL);
            if (redact_emit(u->run, u->out, CLS_SECRET, s + keep, secret_end - keep, u->flags) !=
                0)
                return -1;
        }
        s += secret_end;
        n -= secret_end;
    }
    /* file:///home/<user>/..., file:///C:/Users/<user>/...: V10 across
     * segments (a web site's /home/ is not a home directory). */
    int file = u->file && keep == 0 && r->rule_on[HERALD_RULE_V10_USER_PATH];
    int user_next = 0, drive = 0;
    size_t i = 0, index = 0;
    while (i <= n) {
        size_t e = scan_to(r, s, i, n, "/");
        if (user_next && e > i && !is_whole_marker(r, s + i, e - i)) {
            redact_count(u->run, HERALD_RULE_V10_USER_PATH);
            if (redact_emit(u->run, u->out, CLS_USER, s + i, e - i, u->flags) != 0)
                return -1;
        } else if (judge_part(u, s + i, e - i, 0, RF_SEGMENT) != 0) {
            return -1;
        }
        user_next = 0;
        if (file && (index == 1 || (index == 2 && drive))) {
            redact_buf *d = &u->run->decoded_name;
            if (decode(d, s + i, e - i, 0) != 0)
                return -1;
            user_next = equals_nocase(d->data, d->len, "users") ||
                        equals_nocase(d->data, d->len, "home") ||
                        equals_nocase(d->data, d->len, "documents and settings");
            drive = index == 1 && d->len == 2 && is_alpha((unsigned char)d->data[0]) &&
                    d->data[1] == ':';
        }
        index++;
        if (e == n)
            break;
        if (copy(u, "/", 1) != 0)
            return -1;
        i = e + 1;
    }
    return 0;
}

/* "k=v&k2=v2;k3" (query, or a fragment holding '='). */
static int rewrite_params(url_state *u, const char *s, size_t n)
{
    redact_run *run = u->run;
    const herald_redactor *r = run->r;
    size_t i = 0;
    while (i <= n) {
        size_t e = scan_to(r, s, i, n, "&;");
        size_t eq = scan_to(r, s, i, e, "=");
        if (judge_part(u, s + i, eq - i, 1, 0) != 0)
            return -1;
        if (eq < e) {
            const char *value = s + eq + 1;
            size_t value_len = e - eq - 1;
            if (copy(u, "=", 1) != 0)
                return -1;
            /* The name, decoded, decides first (§3.5). */
            if (decode(&run->decoded_name, s + i, eq - i, 1) != 0 ||
                decode(&run->decoded, value, value_len, 1) != 0)
                return -1;
            redact_key_info info;
            if (redact_key_classify(run, run->decoded_name.data, run->decoded_name.len, 1,
                                    run->decoded.len, &info) != 0)
                return -1;
            if (info.cls != CLS_NONE && value_len > 0 && !is_whole_marker(r, value, value_len) &&
                !redact_is_trivial_value(run->decoded.data, run->decoded.len) &&
                !redact_is_redacted(r, value, value_len)) {
                redact_count(run, info.rule);
                if (redact_emit(run, u->out, info.cls, run->decoded.data, run->decoded.len,
                                u->flags) != 0)
                    return -1;
            } else if (judge_part(u, value, value_len, 1, 0) != 0) {
                return -1;
            }
        }
        if (e == n)
            break;
        if (copy(u, s + e, 1) != 0)
            return -1;
        i = e + 1;
    }
    return 0;
}

int redact_url_rewrite(redact_run *run, const char *s, size_t n, unsigned flags, redact_buf *out)
{
    const herald_redactor *r = run->r;
    url_state u = {run, flags & ~RF_URL, out, NULL, 0, 0};
    size_t p = 0;
    size_t scheme = scheme_length(s, n);
    u.file = scheme == 4 && equals_nocase(s, 4, "file");
    int authority = 0;
    if (scheme > 0) {
        p = scheme + 3;
        authority = 1;
    } else if (n >= 2 && s[0] == '/' && s[1] == '/') {
        p = 2;
        authority = 1;
    }
    if (copy(&u, s, p) != 0)
        return -1;
    if (authority) {
        size_t e = scan_to(r, s, p, n, "/?#");
        if (rewrite_authority(&u, s + p, e - p) != 0)
            return -1;
        p = e;
    }
    size_t path_end = scan_to(r, s, p, n, "?#");
    if (path_end > p && rewrite_path(&u, s + p, path_end - p) != 0)
        return -1;
    p = path_end;
    if (p < n && s[p] == '?') {
        size_t e = scan_to(r, s, p + 1, n, "#");
        if (copy(&u, "?", 1) != 0 || rewrite_params(&u, s + p + 1, e - p - 1) != 0)
            return -1;
        p = e;
    }
    if (p < n && s[p] == '#') {
        const char *frag = s + p + 1;
        size_t len = n - p - 1;
        if (copy(&u, "#", 1) != 0)
            return -1;
        /* OAuth implicit flow and hash routers: "#access_token=…",
         * "#/profile?email=…". Otherwise the fragment is one segment. */
        int params = scan_to(r, frag, 0, len, "=") < len;
        if ((params ? rewrite_params(&u, frag, len) : judge_part(&u, frag, len, 0, RF_SEGMENT)) !=
            0)
            return -1;
    }
    return 0;
}
