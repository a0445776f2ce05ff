/*
 * Key-name rules K1 (secret) and K2 (PII) of PII.md §3: tokenise a member or
 * parameter name, then decide with the exact, metadata-suffix, token and
 * bigram lists. The lists, the configured extra and safe keys, and the flags
 * that mark URL fields and version/user-agent keys live in one sorted table
 * built per redactor, so classifying a key costs one pass over it plus a
 * binary search per token.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact_internal.h"

/* ---- the default lists (PII.md §3.2, §3.3, §2.2, §4.11) ---- */

typedef struct key_list {
    unsigned kind; /* LIST_EXACT, LIST_TOKEN, LIST_BIGRAM, or a KEY_* flag */
    unsigned cls;
    const char *names; /* space-separated, already normalised */
} key_list;

enum { LIST_EXACT = 0x100, LIST_TOKEN = 0x200, LIST_BIGRAM = 0x400 };

static const key_list default_lists[] = {
    {LIST_EXACT, CLS_SECRET,
     "password passwd pwd pass passphrase passcode secret token auth authorization "
     "proxy_authorization api_key apikey x_api_key access_key secret_key secret_access_key "
     "private_key privatekey client_secret credentials credential mysql_pwd otp totp hotp "
     "mfa_code two_factor pin pincode pin_code sessionid session_token session_key "
     "session_secret phpsessid jsessionid connect_sid sid cookie cookies set_cookie csrf "
     "csrftoken csrf_token xsrf_token x_csrf_token x_xsrf_token jwt id_token access_token "
     "refresh_token auth_token bearer signature sig x_amz_signature x_amz_credential "
     "x_amz_security_token x_goog_signature x_goog_credential"},
    {LIST_TOKEN, CLS_SECRET,
     "password passwords passwd pwd passphrase passcode secret secrets token credential "
     "credentials apikey apikeys privatekey cookie cookies jwt"},
    {LIST_BIGRAM, CLS_SECRET,
     "api_key api_keys access_key secret_key private_key auth_token auth_key session_token "
     "session_key client_secret basic_auth signing_key encryption_key master_key license_key"},
    {LIST_EXACT, CLS_CARD,
     "ccnum cardnum cardnumber creditcard credit_card card_number cc_number cc_num cvv cvc "
     "cvv2 csc cid_code security_code card_cvc card_cvv cc_exp card_expiry card_exp"},
    {LIST_TOKEN, CLS_CARD, "cvv cvc cvv2 csc ccnum cardnum cardnumber creditcard"},
    {LIST_BIGRAM, CLS_CARD, "card_number card_num cc_number credit_card security_code"},
    {LIST_EXACT, CLS_SSN, "ssn social_security_number social_security socsec itin"},
    {LIST_TOKEN, CLS_SSN, "ssn"},
    {LIST_BIGRAM, CLS_SSN, "social_security"},
    {LIST_TOKEN, CLS_IBAN, "iban"},
    {LIST_EXACT, CLS_EMAIL, "email e_mail mail email_address emailaddress"},
    {LIST_TOKEN, CLS_EMAIL, "email emails"},
    {LIST_EXACT, CLS_PHONE,
     "phone phone_number phonenumber mobile mobile_number mobile_phone cellphone cell_phone "
     "tel telephone fax msisdn sms_number"},
    {LIST_TOKEN, CLS_PHONE, "phone phones telephone msisdn cellphone phonenumber"},
    {LIST_EXACT, CLS_IP,
     "ip ip_address ipaddress ip_addr client_ip remote_addr remote_ip x_forwarded_for "
     "x_real_ip true_client_ip cf_connecting_ip forwarded_for"},
    {LIST_BIGRAM, CLS_IP, "ip_address ip_addr"},
    {LIST_EXACT, CLS_IMEI, "imei meid"},
    {LIST_EXACT, CLS_MAC, "mac_address macaddress mac_addr wifi_mac bluetooth_mac"},
    {KEY_META, CLS_NONE,
     "count counts type types kind length len size name names id ids url uri urls endpoint "
     "file path expires expiry expiration exp expired ttl limit limits usage used hint policy "
     "strength score required enabled disabled set changed updated created reset version "
     "format field label placeholder provider method methods status state valid validity "
     "present exists missing min max index rotation rotated age at in on error errors message "
     "attempts sent verified visible header prefix suffix"},
    {KEY_URL_EXACT, CLS_NONE, "url uri urls uris href link links referrer referer"},
    {KEY_URL_LAST, CLS_NONE, "url uri urls uris href link links"},
    {KEY_NOIP_TOKEN, CLS_NONE, "version ver build release firmware ua useragent"},
    {KEY_NOIP_BIGRAM, CLS_NONE, "user_agent"},
};

/* The starred opt-in key rules of PII.md §6, on under profile "strict".
 * There is no marker for personal names or click ids, so they take [user]. */
static const key_list strict_lists[] = {
    {LIST_EXACT, CLS_USER,
     "first_name last_name full_name street address city zip postcode dob birthdate birthday "
     "gender advertising_id advertisingid idfa gaid idfv gclid gclsrc dclid gbraid wbraid "
     "fbclid msclkid twclid li_fat_id igshid ttclid rdt_cid epik qclid sccid irclid kx"},
};

/* ---- byte classes (ASCII only: the process locale is not ours) ---- */

static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_lower(c) || is_upper(c) || is_digit(c);
}

/* A stand-in token for a marker inside a key name: it matches no list, so a
 * key's class does not depend on what was redacted out of it. */
#define MARKER_TOKEN '\x01'

/* Tokenise (PII.md §3.1) into out: lowercase tokens joined by '_'. A
 * collision suffix "~N" that the redactor added is dropped (see redact.c). */
static int normalize(const herald_redactor *r, const char *s, size_t n, redact_buf *out)
{
    out->len = 0;
    /* "[email]~2": the suffix only exists on names that hold a marker. */
    size_t end = n;
    size_t digits = 0;
    while (digits < end && is_digit(s[end - 1 - digits]))
        digits++;
    if (digits > 0 && digits < end && s[end - 1 - digits] == '~') {
        size_t tilde = end - 1 - digits;
        for (size_t i = 0; i < tilde; i++) {
            if (s[i] == '[' && redact_marker_len(r, s + i, tilde - i) > 0) {
                end = tilde;
                break;
            }
        }
    }
    /* Each byte adds itself and perhaps a '_' before it. */
    if (end > (SIZE_MAX - 1) / 2 || redact_buf_reserve(out, 2 * end + 1) != 0)
        return -1;

    int in_token = 0;
    for (size_t i = 0; i < end; i++) {
        char c = s[i];
        if (c == '[') {
            size_t m = redact_marker_len(r, s + i, end - i);
            if (m > 0) {
                if (out->len > 0)
                    out->data[out->len++] = '_';
                out->data[out->len++] = MARKER_TOKEN;
                in_token = 0;
                i += m - 1;
                continue;
            }
        }
        if (!is_alnum(c)) {
            in_token = 0;
            continue;
        }
        int split = 0;
        if (in_token && is_upper(c)) {
            char prev = s[i - 1];
            if (is_lower(prev) || is_digit(prev))
                split = 1; /* apiKey -> api|Key */
            else if (is_upper(prev) && i + 1 < end && is_lower(s[i + 1]))
                split = 1; /* APIKey -> API|Key */
        }
        if ((!in_token || split) && out->len > 0)
            out->data[out->len++] = '_';
        out->data[out->len++] = is_upper(c) ? (char)(c - 'A' + 'a') : c;
        in_token = 1;
    }
    return 0;
}

/* ---- the table ---- */

typedef struct raw_entry {
    const char *name;
    size_t len;
    unsigned kind;
    unsigned cls;
} raw_entry;

static int compare_names(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int compare_raw(const void *pa, const void *pb)
{
    const raw_entry *a = pa, *b = pb;
    return compare_names(a->name, a->len, b->name, b->len);
}

static const redact_key_entry *lookup(const herald_redactor *r, const char *s, size_t n)
{
    size_t lo = 0, hi = r->key_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare_names(s, n, r->keys[mid].name, r->keys[mid].len);
        if (c == 0)
            return &r->keys[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

typedef struct raw_list {
    raw_entry *v;
    size_t n, cap;
} raw_list;

static int raw_push(raw_list *l, const char *name, size_t len, unsigned kind, unsigned cls)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        raw_entry *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (raw_entry){name, len, kind, cls};
    return 0;
}

static int push_list(raw_list *l, const key_list *list)
{
    const char *p = list->names;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        if (p > start && raw_push(l, start, (size_t)(p - start), list->kind, list->cls) != 0)
            return -1;
    }
    return 0;
}

static unsigned better_class(unsigned a, unsigned b)
{
    return a < b ? a : b; /* CLS_NONE is the largest */
}

static size_t count_tokens(const char *s, size_t n)
{
    size_t tokens = n > 0 ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '_')
            tokens++;
    return tokens;
}

/* A configured name, normalised into storage the redactor owns. */
static int add_configured(herald_redactor *r, raw_list *l, redact_buf *scratch, const char *name,
                          int safe)
{
    if (normalize(r, name, strlen(name), scratch) != 0)
        return -1;
    if (scratch->len == 0)
        return -2;
    char *copy = malloc(scratch->len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, scratch->data, scratch->len);
    copy[scratch->len] = '\0';
    r->key_storage[r->key_storage_count++] = copy;
    size_t len = scratch->len;
    if (safe)
        return raw_push(l, copy, len, KEY_SAFE, CLS_NONE);
    /* Extra keys act like the built-in secret lists: the whole name, and a
     * one- or two-word name also as a word (pair) inside longer keys. */
    if (raw_push(l, copy, len, LIST_EXACT, CLS_SECRET) != 0)
        return -1;
    size_t tokens = count_tokens(copy, len);
    if (tokens == 1)
        return raw_push(l, copy, len, LIST_TOKEN, CLS_SECRET);
    if (tokens == 2)
        return raw_push(l, copy, len, LIST_BIGRAM, CLS_SECRET);
    return 0;
}

int redact_keys_build(herald_redactor *r, const char *const *extra, size_t extra_count,
                      const char *const *safe, size_t safe_count, int strict)
{
    raw_list l = {NULL, 0, 0};
    redact_buf scratch = {NULL, 0, 0};
    int rc = -1;

    r->key_storage = calloc(extra_count + safe_count + 1, sizeof *r->key_storage);
    if (r->key_storage == NULL)
        goto done;
    for (size_t i = 0; i < sizeof default_lists / sizeof *default_lists; i++)
        if (push_list(&l, &default_lists[i]) != 0)
            goto done;
    if (strict)
        for (size_t i = 0; i < sizeof strict_lists / sizeof *strict_lists; i++)
            if (push_list(&l, &strict_lists[i]) != 0)
                goto done;
    for (size_t i = 0; i < extra_count; i++)
        if ((rc = add_configured(r, &l, &scratch, extra[i], 0)) != 0)
            goto done;
    for (size_t i = 0; i < safe_count; i++)
        if ((rc = add_configured(r, &l, &scratch, safe[i], 1)) != 0)
            goto done;
    rc = -1;

    qsort(l.v, l.n, sizeof *l.v, compare_raw);
    r->keys = calloc(l.n + 1, sizeof *r->keys);
    if (r->keys == NULL)
        goto done;
    size_t count = 0;
    for (size_t i = 0; i < l.n; i++) {
        const raw_entry *e = &l.v[i];
        if (count == 0 || compare_names(r->keys[count - 1].name, r->keys[count - 1].len, e->name,
                                        e->len) != 0) {
            r->keys[count] = (redact_key_entry){e->name, e->len, CLS_NONE, CLS_NONE, CLS_NONE, 0};
            count++;
        }
        redact_key_entry *k = &r->keys[count - 1];
        if (e->kind == LIST_EXACT)
            k->exact_cls = (uint8_t)better_class(k->exact_cls, e->cls);
        else if (e->kind == LIST_TOKEN)
            k->token_cls = (uint8_t)better_class(k->token_cls, e->cls);
        else if (e->kind == LIST_BIGRAM)
            k->bigram_cls = (uint8_t)better_class(k->bigram_cls, e->cls);
        else
            k->flags |= (uint8_t)e->kind;
    }
    r->key_count = count;
    rc = 0;

done:
    free(l.v);
    redact_buf_free(&scratch);
    return rc;
}

void redact_keys_free(herald_redactor *r)
{
    if (r->key_storage != NULL)
        for (size_t i = 0; i < r->key_storage_count; i++)
            free(r->key_storage[i]);
    free(r->key_storage);
    free(r->keys);
    r->key_storage = NULL;
    r->keys = NULL;
}

/* ---- classification ---- */

int redact_key_classify(redact_run *run, const char *key, size_t len, int url_param,
                        size_t value_len, redact_key_info *info)
{
    const herald_redactor *r = run->r;
    memset(info, 0, sizeof *info);
    info->cls = CLS_NONE;
    if (normalize(r, key, len, &run->key) != 0)
        return -1;
    const char *j = run->key.data;
    size_t n = run->key.len;
    if (n == 0)
        return 0;

    const redact_key_entry *whole = lookup(r, j, n);
    if (whole != NULL) {
        info->safe = (whole->flags & KEY_SAFE) != 0;
        info->url = (whole->flags & KEY_URL_EXACT) != 0;
    }
    info->code = n == 4 && memcmp(j, "code", 4) == 0;

    /* One pass over the tokens: list hits, the last token, flags. */
    unsigned token_cls = CLS_NONE;
    const redact_key_entry *last = NULL;
    size_t prev_start = 0;
    int have_prev = 0;
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && j[end] != '_')
            end++;
        const redact_key_entry *t = lookup(r, j + start, end - start);
        if (t != NULL) {
            token_cls = better_class(token_cls, t->token_cls);
            if (t->flags & KEY_NOIP_TOKEN)
                info->no_ip = 1;
        }
        if (have_prev) {
            const redact_key_entry *pair =
                lookup(r, j + prev_start, end - prev_start);
            if (pair != NULL) {
                token_cls = better_class(token_cls, pair->bigram_cls);
                if (pair->flags & KEY_NOIP_BIGRAM)
                    info->no_ip = 1;
            }
        }
        last = t;
        prev_start = start;
        have_prev = 1;
        start = end + 1;
    }
    if (last != NULL && (last->flags & KEY_URL_LAST))
        info->url = 1;

    unsigned cls = CLS_NONE;
    if (url_param && info->code && value_len >= 16)
        cls = CLS_SECRET; /* rule 3a: OAuth authorization codes */
    else if (whole != NULL && whole->exact_cls != CLS_NONE)
        cls = whole->exact_cls;
    else if (last != NULL && (last->flags & KEY_META))
        cls = CLS_NONE;
    else
        cls = token_cls;

    if (cls == CLS_NONE)
        return 0;
    unsigned rule = cls == CLS_SECRET ? HERALD_RULE_K1_SECRET_KEY : HERALD_RULE_K2_PII_KEY;
    if (!r->rule_on[rule])
        return 0;
    info->cls = (uint8_t)cls;
    info->rule = (uint8_t)rule;
    return 0;
}
