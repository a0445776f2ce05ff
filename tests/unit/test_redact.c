/* Unit tests: PII redaction (src/redact*.c) — every rule of PII.md with its
 * traps (§7), the URL rule, key rules, replacement modes, configuration,
 * stats, idempotence, adversarial inputs with a wall-clock bound, and the
 * shared corpus (../shared/pii-corpus.jsonl) run as PII.md §9.3 says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <cmocka.h>
#include <jansson.h>

#include "redact.h"

#define MEGABYTE (1024 * 1024)

/* A hash key for tests: 32 bytes, fixed, so hashes are stable across runs. */
#define TEST_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* ---- helpers ---- */

static herald_redactor *make(const char *config)
{
    herald_redactor *r = NULL;
    char err[256];
    herald_status rc = herald_redactor_create(config, &r, err, sizeof err);
    if (rc != HERALD_OK)
        print_error("config %s: %s\n", config ? config : "(null)", err);
    assert_int_equal(rc, HERALD_OK);
    assert_non_null(r);
    return r;
}

static void assert_config_error(const char *config, const char *expected_text)
{
    herald_redactor *r = NULL;
    char err[256] = "";
    assert_int_equal(herald_redactor_create(config, &r, err, sizeof err), HERALD_E_CONFIG);
    assert_null(r);
    if (strstr(err, expected_text) == NULL) {
        print_error("config %s: error \"%s\" lacks \"%s\"\n", config, err, expected_text);
        fail();
    }
}

/* Value context on a C string; returns a malloc'ed result (the input when
 * nothing changed). */
static char *redact_ctx(const herald_redactor *r, const char *s, herald_redact_context ctx,
                        herald_redact_stats *stats)
{
    int oom = 0;
    char *out = herald_redact_string(r, s, strlen(s), ctx, stats, &oom);
    assert_int_equal(oom, 0);
    if (out == NULL) {
        out = strdup(s);
        assert_non_null(out);
    }
    /* Idempotence, everywhere: a second pass changes nothing. */
    char *again = herald_redact_string(r, out, strlen(out), ctx, NULL, &oom);
    if (again != NULL) {
        print_error("not idempotent:\n  input  %s\n  once   %s\n  twice  %s\n", s, out, again);
        free(again);
        fail();
    }
    return out;
}

static void check_value(const herald_redactor *r, const char *input, const char *expected)
{
    char *out = redact_ctx(r, input, HERALD_REDACT_VALUE, NULL);
    int bad = strcmp(out, expected) != 0;
    if (bad)
        print_error("value  %s\n  got  %s\n  want %s\n", input, out, expected);
    free(out);
    if (bad)
        fail();
}

static void check_url(const herald_redactor *r, const char *input, const char *expected)
{
    char *out = redact_ctx(r, input, HERALD_REDACT_URL, NULL);
    int bad = strcmp(out, expected) != 0;
    if (bad)
        print_error("url    %s\n  got  %s\n  want %s\n", input, out, expected);
    free(out);
    if (bad)
        fail();
}

static void check_kept(const herald_redactor *r, const char *input)
{
    check_value(r, input, input);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (v == NULL)
        print_error("bad test JSON: %s: %s\n", text, jerr.text);
    assert_non_null(v);
    return v;
}

/* A track event in the lead's shape, with fixed ids and clock. */
static json_t *track_event(void)
{
    return parse("{\"type\":\"track\",\"event\":\"Corpus Case\","
                 "\"messageId\":\"6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d\","
                 "\"anonymousId\":\"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\","
                 "\"timestamp\":\"2024-01-15T10:00:00.000Z\",\"properties\":{},"
                 "\"context\":{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
                 "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
                 "\"device\":{\"type\":\"server\",\"arch\":\"x86_64\"},"
                 "\"locale\":\"en-US\",\"timezone\":\"Europe/Berlin\","
                 "\"session\":{\"id\":1705312800000,\"sequence\":1}}}");
}

static void redact_event_ok(const herald_redactor *r, json_t *event, herald_redact_stats *stats)
{
    assert_int_equal(herald_redact_event(r, event, stats), HERALD_OK);
}

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

/* Redact a copy of out again and require no change. */
static int idempotent(const herald_redactor *r, const json_t *out)
{
    json_t *again = json_deep_copy(out);
    assert_non_null(again);
    redact_event_ok(r, again, NULL);
    int same = json_equal(again, out);
    json_decref(again);
    return same;
}

/* ---- the corpus (PII.md §9.3) ---- */

typedef struct strings {
    char **v;
    size_t n, cap;
} strings;

static void strings_add(strings *s, const char *text, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    copy[len] = '\0';
    s->v[s->n++] = copy;
}

static void strings_free(strings *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Every member name and string value, decoded; integers as decimal text. */
static void collect(const json_t *v, strings *out)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) {
            strings_add(out, key, strlen(key));
            collect(member, out);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) collect(item, out);
    } else if (json_is_string(v)) {
        strings_add(out, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        char text[32];
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        strings_add(out, text, strlen(text));
    }
}

static int any_contains(const strings *s, const char *needle)
{
    for (size_t i = 0; i < s->n; i++)
        if (strstr(s->v[i], needle) != NULL)
            return 1;
    return 0;
}

/* One placement of one case; 1 when it passes, else prints why. */
static int run_case(const herald_redactor *r, size_t line, const json_t *c, const char *placement)
{
    const json_t *input = json_object_get(c, "input");
    json_t *event = track_event();
    const char *where;
    if (strcmp(placement, "value") == 0) {
        json_object_set(json_object_get(event, "properties"), "note", (json_t *)input);
        where = "properties";
    } else if (strcmp(placement, "key") == 0) {
        json_object_set(event, "properties", (json_t *)input);
        where = "properties";
    } else if (strcmp(placement, "page.url") == 0) {
        json_t *page = json_object();
        json_object_set(page, "url", (json_t *)input);
        json_object_set_new(json_object_get(event, "context"), "page", page);
        where = "page";
    } else {
        json_object_set(json_object_get(event, "properties"), "url", (json_t *)input);
        where = "properties";
    }
    /* The key case puts the input object itself into the event: work on a
     * copy so the corpus line stays as read. */
    json_t *copy = json_deep_copy(event);
    json_decref(event);
    event = copy;
    redact_event_ok(r, event, NULL);

    const json_t *scope = strcmp(where, "page") == 0
                              ? json_object_get(json_object_get(event, "context"), "page")
                              : json_object_get(event, "properties");
    strings s = {NULL, 0, 0};
    collect(scope, &s);
    int ok = 1;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(c, "expect_redacted"), i, item) {
        if (any_contains(&s, json_string_value(item))) {
            print_error("corpus line %zu (%s): \"%s\" survived\n", line, placement,
                        json_string_value(item));
            ok = 0;
        }
    }
    json_array_foreach(json_object_get(c, "expect_kept"), i, item) {
        if (!any_contains(&s, json_string_value(item))) {
            print_error("corpus line %zu (%s): \"%s\" was not kept\n", line, placement,
                        json_string_value(item));
            ok = 0;
        }
    }
    if (!idempotent(r, event)) {
        print_error("corpus line %zu (%s): redact(out) != out\n", line, placement);
        ok = 0;
    }
    if (!ok) {
        char *in = dump(c), *out = dump(scope);
        print_error("  case: %s\n  out:  %s\n", in, out);
        free(in);
        free(out);
    }
    strings_free(&s);
    json_decref(event);
    return ok;
}

static void test_corpus(void **state)
{
    (void)state;
    const char *path = getenv("HERALD_PII_CORPUS");
    if (path == NULL || path[0] == '\0')
        path = "../shared/pii-corpus.jsonl";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_error("the PII corpus is missing: cannot open \"%s\" (set HERALD_PII_CORPUS to "
                    "shared/pii-corpus.jsonl)\n",
                    path);
        fail();
    }
    herald_redactor *r = make(NULL);
    char *line = NULL;
    size_t cap = 0, number = 0, cases = 0, passed = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        number++;
        if (got <= 1)
            continue;
        json_error_t jerr;
        json_t *c = json_loads(line, 0, &jerr);
        if (c == NULL) {
            print_error("corpus line %zu does not parse: %s\n", number, jerr.text);
            fail();
        }
        const char *context = json_string_value(json_object_get(c, "context"));
        assert_non_null(context);
        int ok;
        if (strcmp(context, "url") == 0)
            ok = run_case(r, number, c, "page.url") & run_case(r, number, c, "properties.url");
        else
            ok = run_case(r, number, c, context);
        cases++;
        passed += (size_t)ok;
        json_decref(c);
    }
    free(line);
    fclose(f);
    herald_redactor_free(r);
    print_message("corpus: %zu/%zu cases passed\n", passed, cases);
    assert_int_equal(cases, 133);
    assert_int_equal(passed, cases);
}

/* ---- configuration ---- */

static void test_rule_names(void **state)
{
    (void)state;
    static const char *const names[] = {"k1", "k2", "s1", "s2", "s3", "s4", "s5", "v1", "v2",
                                        "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10",
                                        "custom"};
    for (int i = 0; i < HERALD_RULE_COUNT; i++)
        assert_string_equal(herald_redact_rule_name((herald_redact_rule)i), names[i]);
}

static void test_config_defaults(void **state)
{
    (void)state;
    herald_redactor *a = make(NULL), *b = make("{}");
    check_value(a, "mail jane@example.com", "mail [email]");
    check_value(b, "mail jane@example.com", "mail [email]");
    herald_redactor_free(a);
    herald_redactor_free(b);
    herald_redactor_free(NULL);
}

static void test_config_errors(void **state)
{
    (void)state;
    assert_config_error("{", "invalid JSON");
    assert_config_error("[]", "expected a JSON object");
    assert_config_error("{\"colour\": 1}", "unknown key \"colour\"");
    assert_config_error("{\"enabled\": \"yes\"}", "enabled must be a boolean");
    assert_config_error("{\"profile\": \"paranoid\"}", "redact.profile");
    assert_config_error("{\"rules\": {\"v11\": true}}", "unknown rule \"v11\"");
    assert_config_error("{\"rules\": {\"v1\": 1}}", "must be a boolean");
    assert_config_error("{\"extra_keys\": [\"\"]}", "non-empty string");
    assert_config_error("{\"extra_keys\": [\"--\"]}", "no letters or digits");
    assert_config_error("{\"safe_keys\": \"token\"}", "array of strings");
    assert_config_error("{\"allow_paths\": [\"traits/email\"]}", "JSON pointer");
    assert_config_error("{\"mode\": {\"email\": \"hash\"}}", "hash_key is not set");
    assert_config_error("{\"mode\": {\"email\": \"keep_domain_hash\"}}", "hash_key is not set");
    assert_config_error("{\"mode\": {\"secret\": \"hash\"}, \"hash_key\": \"" TEST_KEY "\"}",
                        "not available");
    assert_config_error("{\"mode\": {\"phone\": \"keep_domain\"}}", "not available");
    assert_config_error("{\"mode\": {\"email\": \"truncate\"}}", "not available");
    assert_config_error("{\"mode\": {\"name\": \"marker\"}}", "unknown class");
    assert_config_error("{\"hash_key\": \"abcd\"}", "64 hex");
    assert_config_error("{\"hash_key\": \"" "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                        "\"}",
                        "64 hex");
    assert_config_error("{\"custom\": [{\"name\": \"x\", \"pattern\": \"(\"}]}", "custom[0]");
    assert_config_error("{\"custom\": [{\"pattern\": \"x\"}]}", "needs a \"name\"");
    assert_config_error("{\"custom\": [{\"name\": \"x\", \"pattern\": \"x\", \"class\": \"pii\"}]}",
                        "unknown class");
    assert_config_error("{\"custom\": [{\"name\": \"x\", \"pattern\": \"x\", \"flags\": 1}]}",
                        "unknown key \"flags\"");
    assert_config_error("{\"custom\": [{\"name\": \"x\", \"pattern\": \"x\", \"max_bytes\": 0}]}",
                        "max_bytes");

    char many[64 * 8 + 64] = "{\"allow_paths\": [";
    for (int i = 0; i < 65; i++)
        strcat(many, i ? ",\"/a\"" : "\"/a\"");
    strcat(many, "]}");
    assert_config_error(many, "at most 64");
}

static void test_disabled(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"enabled\": false}");
    int oom = 1;
    assert_null(herald_redact_string(r, "jane@example.com", 16, HERALD_REDACT_VALUE, NULL, &oom));
    assert_int_equal(oom, 0);
    json_t *event = track_event();
    json_object_set_new(json_object_get(event, "properties"), "email",
                        json_string("jane@example.com"));
    redact_event_ok(r, event, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(event, "properties"), "email")),
        "jane@example.com");
    json_decref(event);
    herald_redactor_free(r);
}

/* ---- SHA-256 and HMAC (FIPS 180-4, RFC 4231) ---- */

#include "redact_internal.h"

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    unsigned char d[32];
    char text[65];
    redact_sha256_once("abc", 3, d);
    hex(d, 32, text);
    assert_string_equal(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    redact_sha256_once("", 0, d);
    hex(d, 32, text);
    assert_string_equal(text, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    redact_sha256_once(two, strlen(two), d);
    hex(d, 32, text);
    assert_string_equal(text, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a', fed in uneven pieces through the block buffer. */
    redact_sha256 ctx;
    redact_sha256_init(&ctx);
    char as[997];
    memset(as, 'a', sizeof as);
    size_t left = 1000000;
    while (left > 0) {
        size_t take = left < sizeof as ? left : sizeof as;
        redact_sha256_update(&ctx, as, take);
        left -= take;
    }
    redact_sha256_final(&ctx, d);
    hex(d, 32, text);
    assert_string_equal(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac_vectors(void **state)
{
    (void)state;
    unsigned char key[131], d[32];
    char text[65];
    redact_hmac_key k;
    memset(key, 0x0b, 20);
    redact_hmac_key_init(&k, key, 20);
    redact_hmac3(&k, "Hi ", 3, NULL, 0, "There", 5, d);
    hex(d, 32, text);
    assert_string_equal(text, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    redact_hmac_key_init(&k, (const unsigned char *)"Jefe", 4);
    redact_hmac3(&k, "what do ya want ", 16, "for nothing?", 12, NULL, 0, d);
    hex(d, 32, text);
    assert_string_equal(text, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 131);
    redact_hmac_key_init(&k, key, 131);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    redact_hmac3(&k, msg, strlen(msg), NULL, 0, NULL, 0, d);
    hex(d, 32, text);
    assert_string_equal(text, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- S1 PEM ---- */

static void test_s1_pem(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEabc\ndef==\n-----END RSA PRIVATE KEY-----\nok",
                "key: -----BEGIN RSA PRIVATE KEY-----\n[secret]\n-----END RSA PRIVATE KEY-----\nok");
    check_value(r, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
                "-----BEGIN OPENSSH PRIVATE KEY-----\n[secret]\n-----END OPENSSH PRIVATE KEY-----");
    check_value(r, "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n[secret]\n-----END PGP PRIVATE KEY BLOCK-----");
    /* A cut log line must not leak half a key. */
    check_value(r, "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFAKE", "-----BEGIN EC PRIVATE KEY-----\n[secret]");
    /* Public material is not secret. */
    check_kept(r, "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----");
    check_kept(r, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    herald_redactor_free(r);
}

/* ---- S2 URLs ---- */

static void test_s2_userinfo(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_url(r, "https://user:p4ss@app.example.com/x", "https://[secret]@app.example.com/x");
    check_url(r, "https://jane%40example.org:pw@files.example.org/", "https://[secret]@files.example.org/");
    check_url(r, "redis://:FAKEpass@cache.example.com:6379/0", "redis://[secret]@cache.example.com:6379/0");
    check_url(r, "https://ghp_token@github.com/org/repo.git", "https://[secret]@github.com/org/repo.git");
    /* The last '@' separates: a raw '@' in a password stays inside. */
    check_url(r, "ftp://a:b@c@ftp.example.com/", "ftp://[secret]@ftp.example.com/");
    /* In free text too. */
    check_value(r, "connect postgres://app:FAKEdbPass99@db.example.com:5432/app now",
                "connect postgres://[secret]@db.example.com:5432/app now");
    herald_redactor_free(r);
}

static void test_s2_query_and_fragment(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_url(r, "https://x.example.com/cb?code=FAKEauthCODE0123456789&state=xyz",
              "https://x.example.com/cb?code=[secret]&state=xyz");
    check_url(r, "https://x.example.com/promo?code=SPRING24", "https://x.example.com/promo?code=SPRING24");
    check_url(r, "https://x.example.com/?a=1;token=abc;a=1#top", "https://x.example.com/?a=1;token=[secret];a=1#top");
    check_url(r, "https://x.example.com/?email=jane%40example.com&email=bob%40example.org&x",
              "https://x.example.com/?email=[email]&email=[email]&x");
    check_url(r, "https://x.example.com/?Email=jane%40example.com", "https://x.example.com/?Email=[email]");
    check_url(r, "https://x.example.com/?phone=%2B44%207700%20900123", "https://x.example.com/?phone=[phone]");
    check_url(r, "https://x.example.com/?ip=203.0.113.7&mac=00-00-5E-00-53-01",
              "https://x.example.com/?ip=[ip]&mac=[mac]");
    /* A value that a detector recognises, under any name. */
    check_url(r, "https://x.example.com/s?q=call+%2B44+20+7946+0018&x=1", "https://x.example.com/s?q=[phone]&x=1");
    check_url(r, "https://x.example.com/s?next=%2Fhome%2Fjdoe%2Fdocs", "https://x.example.com/s?next=[user]");
    check_url(r, "https://x.example.com/s?auth=Bearer%20abcdefghij0123456789", "https://x.example.com/s?auth=[secret]");
    /* Empty and trivial values stay. */
    check_url(r, "https://x.example.com/?token=&password=true", "https://x.example.com/?token=&password=true");
    /* Fragments: parameters, hash routers, or one segment. */
    check_url(r, "https://x.example.com/#access_token=abc&token_type=bearer",
              "https://x.example.com/#access_token=[secret]&token_type=bearer");
    check_url(r, "https://x.example.com/#/profile?email=jane%40example.com",
              "https://x.example.com/#/profile?email=[email]");
    check_url(r, "https://x.example.com/#jane@example.com", "https://x.example.com/#[email]");
    check_url(r, "https://x.example.com/#section-2", "https://x.example.com/#section-2");
    /* Campaign parameters are kept (herald extracts them). */
    check_url(r, "https://x.example.com/?utm_source=news&gclid=EAIaIQobChMI&fbclid=IwAR0",
              "https://x.example.com/?utm_source=news&gclid=EAIaIQobChMI&fbclid=IwAR0");
    herald_redactor_free(r);
}

static void test_s2_path_host_webhooks(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_url(r, "https://api.example.com/v1/users/jane.doe%40example.com/orders",
              "https://api.example.com/v1/users/[email]/orders");
    check_url(r, "https://x.example.com/u/12345/settings", "https://x.example.com/u/12345/settings");
    check_url(r, "https://x.example.com/t/ghp_000000000000000000000000000000000000/x",
              "https://x.example.com/t/[secret]/x");
    check_url(r, "http://203.0.113.9:8080/status", "http://[ip]:8080/status");
    check_url(r, "http://[2001:db8::9]:8080/status", "http://[ip]:8080/status");
    check_url(r, "http://localhost:8080/status", "http://localhost:8080/status");
    check_url(r, "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
              "https://hooks.slack.com/services/[secret]");
    check_url(r, "https://discord.com/api/webhooks/123456789/FAKEtoken-abc?wait=true",
              "https://discord.com/api/webhooks/123456789/[secret]?wait=true");
    /* The home path of a site is not a user's home. */
    check_url(r, "https://www.example.com/home/pricing", "https://www.example.com/home/pricing");
    /* Relative URLs get the path, query and fragment rules. */
    check_url(r, "/account/reset?token=FAKEreset0123&lang=en", "/account/reset?token=[secret]&lang=en");
    check_url(r, "?email=jane%40example.com", "?email=[email]");
    check_url(r, "//cdn.example.com/u/jane@example.com", "//cdn.example.com/u/[email]");
    /* Not hierarchical: the value rules. */
    check_url(r, "mailto:jane.doe@example.com?subject=Hi", "mailto:[email]?subject=Hi");
    check_url(r, "tel:+44-20-7946-0018", "tel:[phone]");
    herald_redactor_free(r);
}

static void test_s2_in_text(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    /* scheme:// substrings of values are parsed too; trailing punctuation
     * belongs to the sentence. */
    check_value(r, "see https://x.example.com/r?token=abc123, then go.",
                "see https://x.example.com/r?token=[secret], then go.");
    check_value(r, "(https://x.example.com/u/jane@example.com)", "(https://x.example.com/u/[email])");
    check_value(r, "a \"https://x.example.com/?email=a%40example.org\" b",
                "a \"https://x.example.com/?email=[email]\" b");
    /* URLs are judged by component: digits in them are not cards. */
    check_kept(r, "https://app.fullstory.com/ui/1453843029218310/session/4111111111111112");
    herald_redactor_free(r);
}

/* ---- S3 auth schemes ---- */

static void test_s3_auth(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "sent bearer abcdef0123456789XYZ to it", "sent bearer [secret] to it");
    check_value(r, "Bearer\tFAKE.token-value_0123==", "Bearer\t[secret]");
    check_kept(r, "She was the bearer of good news");
    check_kept(r, "Bearer authentication is used");
    check_value(r, "curl -u x -H Basic ZGVtby11c2VyOmRlbW8tcGFzcy0xMjM= now",
                "curl -u x -H Basic [secret] now");
    check_kept(r, "basic information about the basic plan");
    check_kept(r, "Basic YWJjZGVm"); /* decodes to "abcdef": no ':' */
    herald_redactor_free(r);
}

/* ---- S4 prefixed tokens ---- */

static char *token(const char *prefix, char fill, size_t count, const char *suffix)
{
    size_t p = strlen(prefix), s = strlen(suffix);
    char *t = malloc(p + count + s + 1);
    assert_non_null(t);
    memcpy(t, prefix, p);
    memset(t + p, fill, count);
    memcpy(t + p + count, suffix, s + 1);
    return t;
}

static void check_token(const herald_redactor *r, char *t, int secret)
{
    char in[512], want[512];
    snprintf(in, sizeof in, "x %s y", t);
    snprintf(want, sizeof want, "x %s y", secret ? "[secret]" : t);
    check_value(r, in, want);
    free(t);
}

static void test_s4_tokens(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_token(r, token("AKIA", 'Q', 16, ""), 1);
    check_token(r, token("ASIA", 'Q', 16, ""), 1);
    check_token(r, token("A3TX", 'Q', 16, ""), 1);
    check_token(r, token("AKIA", 'Q', 16, "z"), 0); /* next is alphanumeric */
    check_token(r, token("ghp_", 'a', 36, ""), 1);
    check_token(r, token("ghs_", 'a', 36, ""), 1);
    check_token(r, token("ghp_", 'a', 35, ""), 0);
    check_token(r, token("github_pat_", 'a', 82, ""), 1);
    check_token(r, token("glpat-", 'a', 20, ""), 1);
    check_token(r, token("glptt-", 'a', 40, ""), 1);
    check_token(r, token("xoxb-", '1', 10, "-FAKE"), 1);
    check_token(r, token("xapp-1-", 'A', 10, ""), 1);
    check_token(r, token("sk_live_", 'a', 10, ""), 1);
    check_token(r, token("rk_test_", 'a', 10, ""), 1);
    check_token(r, token("whsec_", 'a', 24, ""), 1);
    check_token(r, token("pk_live_", 'a', 24, ""), 0); /* publishable */
    check_token(r, token("AIza", 'a', 35, ""), 1);
    check_token(r, token("sk-proj-", 'a', 20, ""), 1);
    check_token(r, token("sk-ant-api03-", 'a', 20, ""), 1);
    check_token(r, token("sk-aaaaaaaaaaaaaaaaaaaaT3BlbkFJ", 'b', 20, ""), 1);
    check_token(r, token("npm_", 'a', 36, ""), 1);
    check_token(r, token("pypi-AgEIcHlwaS5vcmc", 'a', 50, ""), 1);
    check_token(r, token("SG.aaaaaaaaaaaaaaaaaaaaaa.", 'b', 43, ""), 1);
    check_token(r, token("shpat_", 'a', 32, ""), 1);
    check_token(r, token("dop_v1_", 'a', 64, ""), 1);
    check_token(r, token("hf_", 'a', 34, ""), 1);
    check_token(r, token("sntryu_", 'a', 64, ""), 1);
    check_token(r, token("sntrys_eyJ", 'a', 20, ""), 1);
    check_token(r, token("PMAK-aaaaaaaaaaaaaaaaaaaaaaaa-", 'b', 34, ""), 1);
    check_token(r, token("dp.pt.", 'a', 43, ""), 1);
    check_token(r, token("lin_api_", 'a', 40, ""), 1);
    check_token(r, token("sq0atp-", 'a', 22, ""), 1);
    check_token(r, token("SK", 'a', 32, ""), 1);
    check_token(r, token("SK", 'a', 33, ""), 0);
    check_token(r, token("AGE-SECRET-KEY-1", 'Q', 58, ""), 1);
    check_token(r, token("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0In0.", 'a', 0, ""), 1);
    check_token(r, token("eyJhbGciOiJub25lIn0.eyJz.", 'a', 10, ""), 0);
    /* Inside a word: no. */
    check_token(r, token("xghp_", 'a', 36, ""), 0);
    herald_redactor_free(r);
}

/* ---- S5 inline assignment ---- */

static void test_s5_assignment(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "password=hunter2 user=ada", "password=[secret] user=ada");
    check_value(r, "{\"token\": \"abc def\", \"n\": 1}", "{\"token\": \"[secret]\", \"n\": 1}");
    check_value(r, "{'api_key': 'abc'}", "{'api_key': '[secret]'}");
    check_value(r, "{\\\"password\\\":\\\"s3cr3t\\\"}", "{\\\"password\\\":\\\"[secret]\\\"}");
    check_value(r, "api-key: abc123", "api-key: [secret]");
    check_value(r, "DB_PASSWORD := pw1;", "DB_PASSWORD := [secret];");
    check_value(r, "secret => abc, other", "secret => [secret], other");
    check_value(r, "Authorization: Basic dXNlcjpwYXNz\r\nHost: x", "Authorization: Basic [secret]\r\nHost: x");
    check_value(r, "Authorization: Bearer abc", "Authorization: Bearer [secret]");
    check_value(r, "Cookie: sid=abc; theme=dark\nnext", "Cookie: [secret]\nnext");
    check_value(r, "?access_token=abc&x=1", "?access_token=[secret]&x=1");
    /* Not assignments, or not secret keys, or nothing to hide. */
    check_kept(r, "The password is required and must be 12 characters");
    check_kept(r, "token_count=512 max_tokens=256 tokenizer=bpe password_strength=weak");
    check_kept(r, "password=true token=null secret=\"\"");
    check_kept(r, "Email: please reply");
    check_kept(r, "std::string password; a == b");
    check_kept(r, "{\"credentials\": {\"user\": \"x\"}}");
    check_kept(r, "mypassword=abc"); /* the whole identifier is one token */
    herald_redactor_free(r);
}

/* ---- V1 email ---- */

static void test_v1_email(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "to a.b-c+d@mail.example.co.uk.", "to [email].");
    check_value(r, "email=jane@example.com", "email=[email]");
    check_value(r, "/users/jane@example.com/", "/users/[email]/");
    check_value(r, "?a=b@example.com", "?a=[email]");
    check_value(r, "jane%40example.com", "[email]");
    check_value(r, "email%3Djane%40example.com", "email%3D[email]");
    check_value(r, "'jane@example.org'", "'[email]'");
    check_value(r, "<jane@example.org>", "<[email]>");
    check_value(r, "jürgen@müller.example.de", "[email]");
    check_value(r, "x@xn--mller-kva.example", "[email]");
    check_value(r, "a@b.com@c.org", "[email]");
    check_kept(r, "logo@2x.png icon@3x.webp app@1.2.3 lodash@4.17.21 main@file.js a@b.json");
    check_kept(r, "admin@localhost @jane_doe .@example.com a..@example.com");
    check_kept(r, "user@example.c0m user@example.-com");
    herald_redactor_free(r);
}

/* ---- V2 cards ---- */

static void test_v2_card(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    static const char *const cards[] = {
        "4111 1111 1111 1111", "4242-4242-4242-4242", "4012888888881881", "5555 5555 5555 4444",
        "2223 0031 2200 3222", "3782 822463 10005", "6011 1111 1111 1117", "3056 930902 5904",
        "6205 5000 0000 0000 004", "4222222222222", "2200000000000004", "3530111333300000",
    };
    for (size_t i = 0; i < sizeof cards / sizeof *cards; i++) {
        char in[64];
        snprintf(in, sizeof in, "pay %s now", cards[i]);
        check_value(r, in, "pay [card] now");
    }
    check_value(r, "Ref 12 4111 1111 1111 1111", "Ref 12 [card]");
    /* Traps: ids, timestamps, bad Luhn, wrong length, no IIN, mixed
     * separators, glued to words, ISBNs, dates. */
    check_kept(r, "1453843029218310 150428427078523 8000123456789018 1234567812345670");
    check_kept(r, "412345678901234561 4111111111111112 4111 1111-1111 1111");
    check_kept(r, "x4111111111111111 4111111111111111y 978-3-16-148410-0 2024-01-15");
    check_kept(r, "4111 11111 1111 111");
    herald_redactor_free(r);
}

/* ---- V3 IBAN ---- */

static void test_v3_iban(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "IBAN DE89 3704 0044 0532 0130 00.", "IBAN [iban].");
    check_value(r, "GB29NWBK60161331926819", "[iban]");
    check_value(r, "gb82 west 1234 5698 7654 32", "[iban]");
    check_value(r, "GB82-WEST-1234-5698-7654-32", "[iban]");
    check_value(r, "CH93 0076 2011 6238 5295 7", "[iban]");
    check_value(r, "refund NO9386011117947!", "refund [iban]!");
    check_kept(r, "NO9386011117945 fooNO9386011117947bar FE00 0000 0000 0001");
    check_kept(r, "DE00 3704 0044 0532 0130 00");
    check_kept(r, "QQ12 3456 7890 1234 5678 90");
    check_kept(r, "GB82 WEST-1234 5698 7654 32"); /* mixed separators */
    herald_redactor_free(r);
}

/* ---- V4 SSN ---- */

static void test_v4_ssn(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "SSN 078-05-1120, ITIN 912-70-1234", "SSN [ssn], ITIN [ssn]");
    check_kept(r, "000-12-3456 666-12-3456 123-00-4567 123-45-0000");
    check_kept(r, "94105-1234 123456789 1123-45-6789 123-45-67890 123-45-6789-1 a123-45-6789");
    herald_redactor_free(r);
}

/* ---- V5 phone ---- */

static void test_v5_phone(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "Call +1 202-555-0143 now", "Call [phone] now");
    check_value(r, "+44 (0)20 7946 0402", "[phone]");
    check_value(r, "+49 30 23125 123.", "[phone].");
    check_value(r, "(415) 555-0132", "[phone]");
    check_value(r, "1 (415) 555-0132", "[phone]");
    check_value(r, "fax 212.555.0187", "fax [phone]");
    check_value(r, "07700 900123", "[phone]");
    check_value(r, "(030) 23125 123", "[phone]");
    check_value(r, "040 66969 321", "[phone]");
    check_value(r, "0161 496 0000", "[phone]");
    check_value(r, "030/23125 123", "[phone]");
    /* Traps. */
    check_kept(r, "2025550123 1700000000 16/04/2010 2009/2010 UTC+05:30 10:30");
    check_kept(r, "v10.0.22631.2861 110bcd25-a55d-453a-8046-1297901ea002");
    check_kept(r, "lat -33.8688, lng 151.2093 total 1,234,567.89 ISBN 978-3-16-148410-0");
    check_kept(r, "212-555.0187 212 555-0187x 0044 20 7946 0018 +12345");
    check_kept(r, "DE00 3704 0044 0532 0130 00");
    herald_redactor_free(r);
}

/* ---- V6 / V7 IP ---- */

static void test_v6_ipv4(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "from 203.0.113.5, to 198.51.100.0/24", "from [ip], to [ip]/24");
    check_value(r, "client=198.51.100.23:8443", "client=[ip]:8443");
    check_value(r, "1.2.3.4", "[ip]");
    check_value(r, "see /ip/203.0.113.5", "see /ip/[ip]");
    check_kept(r, "Mozilla/5.0 (X11) Chrome/120.0.0.0 Safari/537.36 (Edge/1.2.3.4;x)");
    check_kept(r, "v2.10.0.1 version 1.2.3.4 build: 4.3.2.1 fw-1.2.3.4 rev=1.1.1.1");
    check_kept(r, "pkg@1.2.3.4 1.3.6.1.4.1.311 999.1.1.1 01.02.03.04 1.2.3.4-beta 1.2.3.4.5");
    herald_redactor_free(r);
}

static void test_v7_ipv6(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "ipv6 2001:db8::1 up", "ipv6 [ip] up");
    check_value(r, "peer [2001:db8::42]:443", "peer [[ip]]:443");
    check_value(r, "mapped ::ffff:192.0.2.128 here", "mapped [ip] here");
    check_value(r, "2001:db8:1::198.51.100.9.", "[ip].");
    check_value(r, "fe80::1%eth0 link", "[ip] link");
    check_value(r, "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[ip]");
    check_kept(r, "std::vector<int> Foo::Bar::baz 12:34:56 foo::1 :: dead::beef a:b:c");
    check_kept(r, "00:00:5e:00:53:01x");
    herald_redactor_free(r);
}

/* ---- V8 MAC, V9 crypto, V10 user paths ---- */

static void test_v8_mac(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "ether 00:00:5e:00:53:01", "ether [mac]");
    check_value(r, "00-00-5E-00-53-AF up", "[mac] up");
    check_value(r, "cisco 0000.5e00.5342", "cisco [mac]");
    check_kept(r, "ff:ff:ff:ff:ff:ff 00:00:00:00:00:00 FF-FF-FF-FF-FF-FF 1234.5678.9012");
    check_kept(r, "00:00:5e:00-53:01 00:00:5e:00:53:01:02");
    herald_redactor_free(r);
}

static void test_v9_crypto(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "send to 16L5yRNPTuciSgXGHqYwn9N6NeoKqopAu", "send to [crypto]");
    check_value(r, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "[crypto]");
    check_value(r, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "[crypto]");
    check_value(r, "wallet bc1q9q5j52ev95hz7vp3xgengdfkxuurjw3mugptfc", "wallet [crypto]");
    check_value(r, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "[crypto]");
    check_value(r, "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "[crypto]");
    check_value(r, "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297", "[crypto]");
    check_kept(r, "16L5yRNPTuciSgXGHqYwn9N6NeoKqoAAu bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5");
    check_kept(r, "x1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2");
    herald_redactor_free(r);
}

static void test_v10_user_path(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_value(r, "crash in /Users/jdoe42/Library/x.db", "crash in /Users/[user]/Library/x.db");
    check_value(r, "C:\\Users\\mmeier7\\AppData", "C:\\Users\\[user]\\AppData");
    check_value(r, "path=/home/ada/.ssh", "path=/home/[user]/.ssh");
    check_value(r, "file:///home/ada/x", "file:///home/[user]/x");
    check_value(r, "(\"/home/ada\")", "(\"/home/[user]\")");
    check_value(r, "C:\\Documents and Settings\\bob\\x", "C:\\Documents and Settings\\[user]\\x");
    check_kept(r, "see https://www.example.com/home/pricing and a/home/b");
    herald_redactor_free(r);
}

/* ---- overlaps, markers, idempotence ---- */

static void test_overlap_and_markers(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    /* One span for the union, the class of highest priority. */
    check_value(r, "::ffff:192.0.2.128", "[ip]");
    check_value(r, "token=jane@example.com", "token=[secret]");
    /* Markers are opaque, wherever they come from. */
    check_kept(r, "[email] [phone] [card] [secret] [ip] [user] [crypto]");
    /* A marker reads as a word byte to its neighbours (what it replaced
     * touched them, as far as a second pass can tell). */
    check_kept(r, "[email]4111111111111111");
    check_value(r, "[email] 4111111111111111", "[email] [card]");
    /* Without a key, a hash-shaped marker is text and gets scanned. */
    check_value(r, "[card:4111111111111111]", "[card:[card]]");
    herald_redactor_free(r);
}

static void test_idempotent_corpus_modes(void **state)
{
    (void)state;
    /* Every corpus line through every mode: redact(redact(x)) == redact(x)
     * is checked inside check_* helpers; here each input in all contexts. */
    static const char *const configs[] = {
        NULL,
        "{\"mode\": {\"email\": \"keep_domain\", \"ip\": \"truncate\"}}",
        "{\"mode\": {\"email\": \"keep_domain_hash\", \"ip\": \"hash\", \"card\": \"hash\","
        " \"phone\": \"hash\", \"iban\": \"hash\"}, \"hash_key\": \"" TEST_KEY "\"}",
        "{\"profile\": \"strict\"}",
        "{\"profile\": \"secrets-only\"}",
    };
    const char *path = getenv("HERALD_PII_CORPUS");
    if (path == NULL || path[0] == '\0')
        path = "../shared/pii-corpus.jsonl";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_error("the PII corpus is missing: \"%s\"\n", path);
        fail();
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 1) {
        json_t *c = json_loads(line, 0, NULL);
        assert_non_null(c);
        const json_t *input = json_object_get(c, "input");
        char *text = json_is_string(input) ? strdup(json_string_value(input)) : dump(input);
        for (size_t k = 0; k < sizeof configs / sizeof *configs; k++) {
            herald_redactor *r = make(configs[k]);
            for (int ctx = 0; ctx < 3; ctx++)
                free(redact_ctx(r, text, (herald_redact_context)ctx, NULL));
            herald_redactor_free(r);
        }
        free(text);
        json_decref(c);
    }
    free(line);
    fclose(f);
}

/* ---- replacement modes ---- */

static void test_hash_mode(void **state)
{
    (void)state;
    const char *config = "{\"mode\": {\"email\": \"hash\", \"phone\": \"hash\", \"card\": \"hash\","
                         " \"ip\": \"hash\", \"mac\": \"hash\", \"iban\": \"hash\"},"
                         " \"hash_key\": \"" TEST_KEY "\"}";
    herald_redactor *a = make(config), *b = make(config);
    char *x = redact_ctx(a, "mail Jane.Doe@Example.com now", HERALD_REDACT_VALUE, NULL);
    char *y = redact_ctx(b, "mail jane.doe@example.com now", HERALD_REDACT_VALUE, NULL);
    /* Stable across redactors (and runs), normalised, marker shaped. */
    assert_string_equal(x, y);
    assert_int_equal(strlen(x), strlen("mail [email:0123456789abcdef] now"));
    assert_memory_equal(x, "mail [email:", 12);
    /* The value is HMAC-SHA-256(key, class 0x1F normalised), 16 hex. */
    unsigned char key[32], mac[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    redact_hmac_key k;
    redact_hmac_key_init(&k, key, sizeof key);
    redact_hmac3(&k, "email", 5, "\x1f", 1, "jane.doe@example.com", 20, mac);
    char expected[17];
    hex(mac, 8, expected);
    assert_memory_equal(x + 12, expected, 16);
    free(x);
    free(y);

    /* Normalisation per class: the same value in other spellings. */
    x = redact_ctx(a, "+44 20 7946 0018", HERALD_REDACT_VALUE, NULL);
    y = redact_ctx(a, "+44-20-7946-0018", HERALD_REDACT_VALUE, NULL);
    assert_string_equal(x, y);
    free(x);
    free(y);
    x = redact_ctx(a, "4111 1111 1111 1111", HERALD_REDACT_VALUE, NULL);
    y = redact_ctx(a, "4111-1111-1111-1111", HERALD_REDACT_VALUE, NULL);
    assert_string_equal(x, y);
    free(x);
    free(y);
    x = redact_ctx(a, "2001:db8::1", HERALD_REDACT_VALUE, NULL);
    y = redact_ctx(a, "2001:0DB8:0:0::1", HERALD_REDACT_VALUE, NULL);
    assert_string_equal(x, y);
    free(x);
    free(y);
    x = redact_ctx(a, "gb82 west 1234 5698 7654 32", HERALD_REDACT_VALUE, NULL);
    y = redact_ctx(a, "GB82WEST12345698765432", HERALD_REDACT_VALUE, NULL);
    assert_string_equal(x, y);
    free(x);
    free(y);

    /* Another key, another hash. */
    herald_redactor *c = make("{\"mode\": {\"email\": \"hash\"}, \"hash_key\": "
                              "\"ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"}");
    x = redact_ctx(a, "jane.doe@example.com", HERALD_REDACT_VALUE, NULL);
    y = redact_ctx(c, "jane.doe@example.com", HERALD_REDACT_VALUE, NULL);
    assert_string_not_equal(x, y);
    free(x);
    free(y);
    /* Secrets are never hashed. */
    check_value(a, "password=hunter2", "password=[secret]");
    herald_redactor_free(a);
    herald_redactor_free(b);
    herald_redactor_free(c);
}

static void test_keep_domain_and_truncate(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"mode\": {\"email\": \"keep_domain\", \"ip\": \"truncate\"}}");
    check_value(r, "from jane.doe@example.com today", "from [email]@example.com today");
    check_value(r, "jane.doe%40example.com", "[email]%40example.com");
    check_value(r, "login from 198.51.100.23", "login from [ip:198.51.100.0/24]");
    check_value(r, "2001:db8:1:2::3", "[ip:2001:db8:1::/48]");
    check_url(r, "http://203.0.113.9:8080/x?ip=198.51.100.7", "http://[ip:203.0.113.0/24]:8080/x?ip=[ip:198.51.100.0/24]");
    check_url(r, "https://x.example.com/u/198.51.100.7/y", "https://x.example.com/u/[ip:198.51.100.0/24]/y");
    herald_redactor_free(r);

    r = make("{\"mode\": {\"email\": \"keep_domain_hash\"}, \"hash_key\": \"" TEST_KEY "\"}");
    char *out = redact_ctx(r, "jane.doe@example.com", HERALD_REDACT_VALUE, NULL);
    assert_int_equal(strlen(out), strlen("[email:0123456789abcdef]@example.com"));
    assert_string_equal(out + 24, "@example.com");
    free(out);
    herald_redactor_free(r);
}

/* ---- keys and the event walk ---- */

static json_t *props_of(json_t *event)
{
    return json_object_get(event, "properties");
}

static void check_event(const herald_redactor *r, const char *properties, const char *expected,
                        herald_redact_stats *stats)
{
    json_t *event = track_event();
    json_object_set_new(event, "properties", parse(properties));
    redact_event_ok(r, event, stats);
    json_t *want = parse(expected);
    if (!json_equal(props_of(event), want)) {
        char *got = dump(props_of(event));
        print_error("properties %s\n  got  %s\n  want %s\n", properties, got, expected);
        free(got);
        fail();
    }
    assert_true(idempotent(r, event));
    json_decref(want);
    json_decref(event);
}

static void test_k_rules(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    check_event(r,
                "{\"password\": \"x\", \"user_password\": \"x\", \"githubToken\": \"x\","
                " \"X-Api-Key\": \"x\", \"AWS_SECRET_ACCESS_KEY\": \"x\", \"connect.sid\": \"x\","
                " \"PHPSESSID\": \"x\", \"basic_auth\": \"x\", \"auth\": \"x\"}",
                "{\"password\": \"[secret]\", \"user_password\": \"[secret]\","
                " \"githubToken\": \"[secret]\", \"X-Api-Key\": \"[secret]\","
                " \"AWS_SECRET_ACCESS_KEY\": \"[secret]\", \"connect.sid\": \"[secret]\","
                " \"PHPSESSID\": \"[secret]\", \"basic_auth\": \"[secret]\", \"auth\": \"[secret]\"}",
                NULL);
    /* Metadata suffixes, plural tokens, analytics names, substrings. */
    check_event(r,
                "{\"token_type\": \"x\", \"token_count\": 5, \"api_key_name\": \"x\","
                " \"password_changed_at\": \"x\", \"max_tokens\": 9, \"session_id\": 7,"
                " \"auth_method\": \"sso\", \"author\": \"x\", \"tokenizer\": \"x\","
                " \"passwordless\": true, \"secretary\": \"x\", \"key\": \"x\", \"code\": \"x\","
                " \"monkey\": \"x\", \"username\": \"ada\"}",
                "{\"token_type\": \"x\", \"token_count\": 5, \"api_key_name\": \"x\","
                " \"password_changed_at\": \"x\", \"max_tokens\": 9, \"session_id\": 7,"
                " \"auth_method\": \"sso\", \"author\": \"x\", \"tokenizer\": \"x\","
                " \"passwordless\": true, \"secretary\": \"x\", \"key\": \"x\", \"code\": \"x\","
                " \"monkey\": \"x\", \"username\": \"ada\"}",
                NULL);
    /* K2 classes; numbers, booleans, null and trivial strings; subtrees. */
    check_event(r,
                "{\"email\": \"a\", \"mobile\": 2025550123, \"cvv\": 123, \"ssn\": \"078051120\","
                " \"iban\": \"x\", \"ip_address\": \"x\", \"imei\": 1, \"mac_address\": \"x\","
                " \"card_number\": 4.5, \"password_reset\": \"True\", \"secret\": true,"
                " \"token\": null, \"pin\": \"\", \"otp\": \"false\","
                " \"cookies\": {\"a\": [\"x\", 1, {\"b\": \"y\"}], \"on\": false}}",
                "{\"email\": \"[email]\", \"mobile\": \"[phone]\", \"cvv\": \"[card]\","
                " \"ssn\": \"[ssn]\", \"iban\": \"[iban]\", \"ip_address\": \"[ip]\","
                " \"imei\": \"[imei]\", \"mac_address\": \"[mac]\", \"card_number\": \"[card]\","
                " \"password_reset\": \"True\", \"secret\": true, \"token\": null, \"pin\": \"\","
                " \"otp\": \"false\","
                " \"cookies\": {\"a\": [\"[secret]\", \"[secret]\", {\"b\": \"[secret]\"}],"
                " \"on\": false}}",
                NULL);
    /* Key names go through the value detectors; collisions get suffixes. */
    check_event(r, "{\"jane@example.org\": 1, \"bob@example.org\": 2, \"[email]\": 3}",
                "{\"[email]\": 1, \"[email]~2\": 2, \"[email]~3\": 3}", NULL);
    /* Version and user-agent keys: no IP rule below them. */
    check_event(r,
                "{\"app_version\": \"1.2.3.4\", \"build\": [\"4.3.2.1\"], \"ua\": \"x 1.2.3.4\","
                " \"userAgent\": \"Foo 10.0.0.1\", \"note\": \"10.0.0.1\"}",
                "{\"app_version\": \"1.2.3.4\", \"build\": [\"4.3.2.1\"], \"ua\": \"x 1.2.3.4\","
                " \"userAgent\": \"Foo 10.0.0.1\", \"note\": \"[ip]\"}",
                NULL);
    /* URL keys; integers that are cards; floats are not. */
    check_event(r,
                "{\"redirect_uri\": \"/cb?token=abc\", \"pageUrl\": \"https://u:p@x.example.com/\","
                " \"links\": [\"?email=a%40example.org\"], \"n\": 4111111111111111,"
                " \"f\": 4111111111111111.0, \"order\": 1234}",
                "{\"redirect_uri\": \"/cb?token=[secret]\","
                " \"pageUrl\": \"https://[secret]@x.example.com/\", \"links\": [\"?email=[email]\"],"
                " \"n\": \"[card]\", \"f\": 4111111111111111.0, \"order\": 1234}",
                NULL);
    herald_redactor_free(r);
}

/* PII.md §2.1: identity fields that get a plain marker are counted (the
 * client warns once); pseudonymised ones are not, a secret always is. */
static void test_identity_markers_counted(void **state)
{
    (void)state;
    const char *event_text =
        "{\"type\": \"identify\", \"userId\": \"jane@example.com\", \"previousId\": \"x\","
        " \"groupId\": \"4111111111111111\", \"traits\": {\"email\": \"jane@example.com\"},"
        " \"context\": {\"groupId\": \"sk_live_abcdefghijklmnopqrstuvwx\"}}";
    herald_redactor *plain = make(NULL);
    herald_redactor *keyed = make("{\"hash_key\": \"" TEST_KEY "\"}");
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    json_t *event = parse(event_text);
    redact_event_ok(plain, event, &stats);
    assert_int_equal(stats.identity_markers, 3); /* userId, groupId, context.groupId */
    json_decref(event);
    memset(&stats, 0, sizeof stats);
    event = parse(event_text);
    redact_event_ok(keyed, event, &stats);
    assert_int_equal(stats.identity_markers, 1); /* the secret: never hashed */
    assert_string_equal(json_string_value(json_object_get(json_object_get(event, "context"),
                                                          "groupId")),
                        "[secret]");
    json_decref(event);
    herald_redactor_free(plain);
    herald_redactor_free(keyed);
}

static void test_event_fields(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    json_t *event = parse(
        "{\"type\": \"identify\", \"messageId\": \"jane@example.com\","
        " \"anonymousId\": \"jane@example.com\", \"timestamp\": \"203.0.113.5\","
        " \"userId\": \"jane@example.com\", \"previousId\": \"x\", \"groupId\": \"4111111111111111\","
        " \"traits\": {\"email\": \"jane@example.com\", \"company\": {\"phone\": \"x\"}},"
        " \"context\": {\"library\": {\"name\": \"203.0.113.5\"}, \"os\": {\"version\": \"1.2.3.4\"},"
        "   \"app\": {\"version\": \"203.0.113.5\", \"name\": \"mail jane@example.com\"},"
        "   \"device\": {\"type\": \"203.0.113.5\", \"id\": \"203.0.113.5\"},"
        "   \"locale\": \"203.0.113.5\", \"timezone\": \"203.0.113.5\", \"ip\": \"203.0.113.5\","
        "   \"userAgent\": \"Mozilla/5.0 Chrome/120.0.0.0 203.0.113.5\","
        "   \"session\": {\"id\": 1705312800000, \"sequence\": 1},"
        "   \"page\": {\"url\": \"https://x.example.com/?email=a%40example.org\","
        "     \"path\": \"/u/jane@example.com\", \"search\": \"?token=abc\","
        "     \"referrer\": \"https://u:p@r.example.com/\", \"title\": \"Hi jane@example.com\"},"
        "   \"campaign\": {\"source\": \"jane@example.com\"},"
        "   \"traits\": {\"phone\": \"x\"}, \"groupId\": \"jane@example.com\"}}");
    redact_event_ok(r, event, NULL);
    json_t *want = parse(
        "{\"type\": \"identify\", \"messageId\": \"jane@example.com\","
        " \"anonymousId\": \"jane@example.com\", \"timestamp\": \"203.0.113.5\","
        " \"userId\": \"[email]\", \"previousId\": \"x\", \"groupId\": \"[card]\","
        " \"traits\": {\"email\": \"[email]\", \"company\": {\"phone\": \"[phone]\"}},"
        " \"context\": {\"library\": {\"name\": \"203.0.113.5\"}, \"os\": {\"version\": \"1.2.3.4\"},"
        "   \"app\": {\"version\": \"203.0.113.5\", \"name\": \"mail [email]\"},"
        "   \"device\": {\"type\": \"203.0.113.5\", \"id\": \"[ip]\"},"
        "   \"locale\": \"203.0.113.5\", \"timezone\": \"203.0.113.5\", \"ip\": \"[ip]\","
        "   \"userAgent\": \"Mozilla/5.0 Chrome/120.0.0.0 203.0.113.5\","
        "   \"session\": {\"id\": 1705312800000, \"sequence\": 1},"
        "   \"page\": {\"url\": \"https://x.example.com/?email=[email]\","
        "     \"path\": \"/u/[email]\", \"search\": \"?token=[secret]\","
        "     \"referrer\": \"https://[secret]@r.example.com/\", \"title\": \"Hi [email]\"},"
        "   \"campaign\": {\"source\": \"[email]\"},"
        "   \"traits\": {\"phone\": \"[phone]\"}, \"groupId\": \"[email]\"}}");
    if (!json_equal(event, want)) {
        char *got = dump(event);
        print_error("got %s\n", got);
        free(got);
        fail();
    }
    assert_true(idempotent(r, event));
    json_decref(want);
    json_decref(event);
    herald_redactor_free(r);

    /* With a key, identity fields are pseudonymised, never merged. */
    r = make("{\"hash_key\": \"" TEST_KEY "\"}");
    event = parse("{\"type\": \"track\", \"userId\": \"jane@example.com\","
                  " \"properties\": {\"e\": \"jane@example.com\"}}");
    redact_event_ok(r, event, NULL);
    const char *user = json_string_value(json_object_get(event, "userId"));
    assert_int_equal(strlen(user), strlen("[email:0123456789abcdef]"));
    assert_string_equal(json_string_value(json_object_get(props_of(event), "e")), "[email]");
    assert_true(idempotent(r, event));
    json_decref(event);
    herald_redactor_free(r);

    assert_int_equal(herald_redact_event(NULL, NULL, NULL), HERALD_E_INVALID_ARGUMENT);
}

static void test_configured_keys_and_paths(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"extra_keys\": [\"customer_ref\", \"Internal-Note\"],"
                              " \"safe_keys\": [\"orderNumber\", \"debug\"],"
                              " \"allow_paths\": [\"/properties/crm/email\", \"/properties/items/*/sku\","
                              "   \"/properties/a~1b\"]}");
    check_event(r,
                "{\"customer_ref\": \"C-1\", \"billing_customer_ref\": \"C-2\","
                " \"customer_ref_count\": 3, \"internal_note\": \"x\","
                " \"order_number\": 4111111111111111, \"debug\": {\"password\": \"x\"},"
                " \"crm\": {\"email\": \"jane@example.com\", \"phone\": \"x\"},"
                " \"items\": [{\"sku\": \"4111111111111111\", \"n\": \"4111111111111111\"}],"
                " \"a/b\": \"jane@example.com\"}",
                "{\"customer_ref\": \"[secret]\", \"billing_customer_ref\": \"[secret]\","
                " \"customer_ref_count\": 3, \"internal_note\": \"[secret]\","
                " \"order_number\": 4111111111111111, \"debug\": {\"password\": \"x\"},"
                " \"crm\": {\"email\": \"jane@example.com\", \"phone\": \"[phone]\"},"
                " \"items\": [{\"sku\": \"4111111111111111\", \"n\": \"[card]\"}],"
                " \"a/b\": \"jane@example.com\"}",
                NULL);
    /* An allowed path under /traits. */
    herald_redactor *t = make("{\"allow_paths\": [\"/traits/email\"]}");
    json_t *event = parse("{\"type\": \"identify\", \"traits\": {\"email\": \"jane@example.com\","
                          " \"backup\": \"jane@example.com\"}}");
    redact_event_ok(t, event, NULL);
    json_t *traits = json_object_get(event, "traits");
    assert_string_equal(json_string_value(json_object_get(traits, "email")), "jane@example.com");
    assert_string_equal(json_string_value(json_object_get(traits, "backup")), "[email]");
    json_decref(event);
    herald_redactor_free(t);
    herald_redactor_free(r);
}

static void test_custom_patterns(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"custom\": [{\"name\": \"order\", \"pattern\": \"ORD-[0-9]{8}\","
                              " \"class\": \"user\"}, {\"name\": \"emp\", \"pattern\": \"emp[0-9]+\","
                              " \"icase\": true, \"max_bytes\": 32}, {\"name\": \"sp\","
                              " \"pattern\": \" zz[a-z]+ \"}]}");
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    char *out = redact_ctx(r, "ORD-12345678,ORD-87654321,EMP42", HERALD_REDACT_VALUE, &stats);
    assert_string_equal(out, "[user],[user],[secret]");
    free(out);
    assert_int_equal(stats.count[HERALD_RULE_CUSTOM], 3);
    out = redact_ctx(r, "orders ORD-12345678 and ORD-87654321", HERALD_REDACT_VALUE, NULL);
    assert_string_equal(out, "orders [user] and [user]");
    free(out);
    /* Strings longer than max_bytes are not given to that pattern. */
    check_kept(r, "a long line that goes well past thirty-two bytes EMP42");
    check_value(r, "short EMP42", "short [secret]");
    /* Matches are trimmed of white space and quotes. */
    check_value(r, "a zzabc b", "a [secret] b");
    /* Custom matches merge with the built-in rules. */
    check_value(r, "ORD-12345678@example.com", "[email]");
    herald_redactor_free(r);
}

static void test_rules_and_profiles(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"rules\": {\"v5\": false, \"v1\": false, \"k2\": false}}");
    check_kept(r, "+44 20 7946 0018 jane@example.com");
    check_event(r, "{\"email\": \"x\", \"password\": \"x\"}", "{\"email\": \"x\", \"password\": \"[secret]\"}", NULL);
    herald_redactor_free(r);

    r = make("{\"profile\": \"secrets-only\"}");
    check_kept(r, "jane@example.com 4111 1111 1111 1111 203.0.113.5 /home/ada/x");
    check_value(r, "token=abc ghp_000000000000000000000000000000000000",
                "token=[secret] [secret]");
    check_url(r, "https://u:p@x.example.com/?email=a%40b.org&token=t", "https://[secret]@x.example.com/?email=a%40b.org&token=[secret]");
    herald_redactor_free(r);

    r = make("{\"profile\": \"strict\"}");
    check_value(r, "imei 490154203237518", "imei [imei]");
    check_event(r, "{\"first_name\": \"Ada\", \"gclid\": \"abc\", \"name\": \"Pro plan\"}",
                "{\"first_name\": \"[user]\", \"gclid\": \"[user]\", \"name\": \"Pro plan\"}", NULL);
    herald_redactor_free(r);

    r = make("{\"profile\": \"strict\", \"rules\": {\"v2\": false}}");
    check_kept(r, "imei 490154203237518 4111 1111 1111 1111");
    herald_redactor_free(r);

    r = make(NULL);
    check_kept(r, "imei 490154203237518"); /* IMEI by value is opt-in */
    herald_redactor_free(r);
}

static void test_stats(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    herald_redact_stats stats;
    memset(&stats, 0, sizeof stats);
    check_event(r,
                "{\"password\": \"x\", \"email\": \"y\", \"note\": \"jane@example.com, a@example.org"
                " 4111 1111 1111 1111 203.0.113.5 token=abc\","
                " \"url\": \"https://u:p@x.example.com/?email=b%40example.org\"}",
                "{\"password\": \"[secret]\", \"email\": \"[email]\", \"note\": \"[email], [email]"
                " [card] [ip] token=[secret]\","
                " \"url\": \"https://[secret]@x.example.com/?email=[email]\"}",
                &stats);
    assert_int_equal(stats.count[HERALD_RULE_K1_SECRET_KEY], 1);
    assert_int_equal(stats.count[HERALD_RULE_K2_PII_KEY], 2); /* email key, email= param */
    assert_int_equal(stats.count[HERALD_RULE_V1_EMAIL], 2);
    assert_int_equal(stats.count[HERALD_RULE_V2_CARD], 1);
    assert_int_equal(stats.count[HERALD_RULE_V6_IPV4], 1);
    assert_int_equal(stats.count[HERALD_RULE_S5_ASSIGNMENT], 1);
    assert_int_equal(stats.count[HERALD_RULE_S2_URL], 1);
    assert_int_equal(stats.count[HERALD_RULE_V5_PHONE], 0);
    herald_redactor_free(r);
}

/* ---- adversarial inputs: linear time, clean return ---- */

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* The wall-clock bound for one megabyte: generous for sanitizers and slow
 * CI, far below what a quadratic scan of 1 MB takes (hours). */
#define MEGABYTE_BUDGET_SECONDS 5.0

static char *repeat(const char *unit, size_t total)
{
    size_t u = strlen(unit);
    char *s = malloc(total + 1);
    assert_non_null(s);
    for (size_t i = 0; i < total; i++)
        s[i] = unit[i % u];
    s[total] = '\0';
    return s;
}

static void time_one(const herald_redactor *r, const char *unit, herald_redact_context ctx)
{
    char *s = repeat(unit, MEGABYTE);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int oom = 0;
    char *out = herald_redact_string(r, s, MEGABYTE, ctx, NULL, &oom);
    double elapsed = seconds_since(&start);
    assert_int_equal(oom, 0);
    if (elapsed > MEGABYTE_BUDGET_SECONDS) {
        print_error("1 MB of \"%s\" (context %d) took %.2f s\n", unit, (int)ctx, elapsed);
        fail();
    }
    free(out);
    free(s);
}

static void test_adversarial_megabytes(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"custom\": [{\"name\": \"x\", \"pattern\": \"(a|aa)*b\"}]}");
    static const char *const units[] = {
        "1", "@", "%40", "a@", "a.", "a@b.", "1 ", "1-", "4111 ", ":", "1:", "1.", "1.1.1.1.",
        "password=", "password=password ", "\"pin\":", "eyJ", "eyJ-", "eyJaaaaaaaaaaa.", "bearer ",
        "basic ", "+1", "+1 ", "(0", "0 ", "DE89 ", "AKIA", "xoxb-", "https://", "http://a/?a=",
        "-----BEGIN ", "-----BEGIN PRIVATE KEY-----", "/home/", "[email]", "[", "bc1", "1a",
        "://", "a://", "%", "ff:", "aa.", "\xff", "\xc3\xa9@",
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        for (int ctx = 0; ctx < 3; ctx++)
            time_one(r, units[i], (herald_redact_context)ctx);
    herald_redactor_free(r);
}

static void test_adversarial_keys_and_nesting(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    /* A megabyte-long key, and ten thousand keys that redact to one name. */
    json_t *event = track_event();
    char *key = repeat("aB_", MEGABYTE);
    json_object_set_new(props_of(event), key, json_string("x"));
    free(key);
    for (int i = 0; i < 10000; i++) {
        char k[64];
        snprintf(k, sizeof k, "user%d@example.com", i);
        json_object_set_new(props_of(event), k, json_integer(i));
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    redact_event_ok(r, event, NULL);
    assert_true(seconds_since(&start) < MEGABYTE_BUDGET_SECONDS);
    assert_non_null(json_object_get(props_of(event), "[email]~10000"));
    assert_int_equal(json_object_size(props_of(event)), 10001);
    json_decref(event);

    /* Nesting at jansson's depth limit (2048), arrays and objects, through
     * the iterative walk; the leaf is still redacted. */
    for (int kind = 0; kind < 2; kind++) {
        size_t depth = 2047; /* plus the "properties" object itself */
        size_t cap = depth * 8 + 64;
        char *text = malloc(cap);
        assert_non_null(text);
        size_t n = 0;
        for (size_t i = 0; i < depth; i++)
            n += (size_t)sprintf(text + n, kind ? "[" : "{\"a\":");
        n += (size_t)sprintf(text + n, "\"jane@example.com\"");
        for (size_t i = 0; i < depth; i++)
            text[n++] = kind ? ']' : '}';
        text[n] = '\0';
        json_error_t jerr;
        json_t *deep = json_loads(text, JSON_DECODE_ANY, &jerr);
        assert_non_null(deep);
        free(text);
        event = track_event();
        json_object_set_new(props_of(event), "deep", deep);
        clock_gettime(CLOCK_MONOTONIC, &start);
        redact_event_ok(r, event, NULL);
        assert_true(seconds_since(&start) < MEGABYTE_BUDGET_SECONDS);
        json_t *v = json_object_get(props_of(event), "deep");
        for (size_t i = 0; i < depth; i++)
            v = kind ? json_array_get(v, 0) : json_object_get(v, "a");
        assert_string_equal(json_string_value(v), "[email]");
        json_decref(event);
    }
    /* Deeper than any parser allows, built by hand: still no recursion. */
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 100000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    json_array_append_new(cur, json_string("203.0.113.5"));
    event = track_event();
    json_object_set_new(props_of(event), "deeper", root);
    redact_event_ok(r, event, NULL);
    json_t *walk = json_object_get(props_of(event), "deeper");
    for (int i = 0; i < 100000; i++)
        walk = json_array_get(walk, 0);
    assert_string_equal(json_string_value(json_array_get(walk, 0)), "[ip]");
    /* jansson frees recursively: unlink level by level first. */
    json_t *holder = json_object_get(props_of(event), "deeper");
    json_incref(holder);
    json_object_del(props_of(event), "deeper");
    while (json_array_size(holder) > 0) {
        json_t *child = json_array_get(holder, 0);
        json_incref(child);
        json_decref(holder);
        holder = child;
        if (!json_is_array(holder))
            break;
    }
    json_decref(holder);
    json_decref(event);
    herald_redactor_free(r);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    /* Bytes >= 0x80 are opaque: invalid sequences pass through unharmed,
     * and PII next to them is still found. */
    const char in[] = "\xff\xfe jane@example.com \xc3\x28 \xed\xa0\x80 4111 1111 1111 1111 \xf4\x90";
    int oom = 0;
    char *out = herald_redact_string(r, in, sizeof in - 1, HERALD_REDACT_VALUE, NULL, &oom);
    assert_non_null(out);
    assert_string_equal(out, "\xff\xfe [email] \xc3\x28 \xed\xa0\x80 [card] \xf4\x90");
    free(out);
    /* Embedded NUL: the scan goes on past it. */
    const char nul[] = "a\0jane@example.com";
    out = herald_redact_string(r, nul, sizeof nul - 1, HERALD_REDACT_VALUE, NULL, &oom);
    assert_non_null(out);
    assert_memory_equal(out, "a\0[email]", 10);
    free(out);
    herald_redactor_free(r);
}

/* ---- one redactor, many threads ---- */

typedef struct thread_job {
    const herald_redactor *r;
    const json_t *input;
    const json_t *expected;
    int ok;
} thread_job;

static void *redact_many(void *arg)
{
    thread_job *job = arg;
    job->ok = 1;
    for (int i = 0; i < 300 && job->ok; i++) {
        json_t *event = json_deep_copy(job->input);
        if (event == NULL || herald_redact_event(job->r, event, NULL) != HERALD_OK ||
            !json_equal(event, job->expected))
            job->ok = 0;
        json_decref(event);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    herald_redactor *r = make("{\"mode\": {\"email\": \"hash\"}, \"hash_key\": \"" TEST_KEY "\","
                              " \"custom\": [{\"name\": \"o\", \"pattern\": \"ORD-[0-9]+\"}]}");
    json_t *input = track_event();
    json_object_set_new(input, "properties",
                        parse("{\"email\": \"jane@example.com\", \"note\": \"ORD-12 from 203.0.113.5,"
                              " card 4111 1111 1111 1111, token=abc\", \"url\":"
                              " \"https://u:p@x.example.com/?phone=%2B44%2020%207946%200018\"}"));
    json_t *expected = json_deep_copy(input);
    redact_event_ok(r, expected, NULL);
    pthread_t threads[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){r, input, expected, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, redact_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_true(jobs[i].ok);
    }
    json_decref(expected);
    json_decref(input);
    herald_redactor_free(r);
}

/* ---- regressions: what the fuzzer found, one line each ---- */

static void test_regressions(void **state)
{
    (void)state;
    herald_redactor *r = make(NULL);
    /* A second pass saw a boundary where the first saw text. */
    check_value(r, "password=abc\"pin\":9876", "password=[secret]\"pin\":9876");
    check_value(r, "call 202-555-0143 24%doe%40example.com", "call 202-555-0143 [email]");
    /* Look-backs into text another rule of the same stage replaces. */
    check_value(r, "/home/ver 1.2.3.4", "/home/[user] [ip]");
    check_value(r, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4/1.2.3.4", "[crypto]/[ip]");
    /* The phone rule's "next is not separator + digit", mirrored. */
    check_kept(r, "1234 0532 0130 00");
    herald_redactor_free(r);

    r = make("{\"mode\": {\"email\": \"keep_domain\", \"ip\": \"truncate\"}}");
    /* The kept domain was the local part of a second address. */
    check_value(r, "fi@st.last@example.org", "[email]");
    /* The kept domain held another rule's find. */
    check_value(r, "jane@host-1.2.3.4.example.com", "[email]");
    check_event(r, "{\"email\": \"jane@xoxb-1234567890-abcdefghij.example.com\"}",
                "{\"email\": \"[email]\"}", NULL);
    /* A quote ends a URL in text; an address may not start with one. */
    check_value(r, "httpc://www.'@xample.coo/l0example.com&next=%2Fhome",
                "httpc://www.'@xample.coo/l0example.com&next=%2Fhome");
    check_value(r, "see https://x.example.com/a.b'c@example.org",
                "see https://x.example.com/a.b'[email]@example.org");
    check_value(r, "https://x.example.com/a!''''o@example.org",
                "https://x.example.com/a!''''[email]@example.org");
    herald_redactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_s1_pem),
        cmocka_unit_test(test_s2_userinfo),
        cmocka_unit_test(test_s2_query_and_fragment),
        cmocka_unit_test(test_s2_path_host_webhooks),
        cmocka_unit_test(test_s2_in_text),
        cmocka_unit_test(test_s3_auth),
        cmocka_unit_test(test_s4_tokens),
        cmocka_unit_test(test_s5_assignment),
        cmocka_unit_test(test_v1_email),
        cmocka_unit_test(test_v2_card),
        cmocka_unit_test(test_v3_iban),
        cmocka_unit_test(test_v4_ssn),
        cmocka_unit_test(test_v5_phone),
        cmocka_unit_test(test_v6_ipv4),
        cmocka_unit_test(test_v7_ipv6),
        cmocka_unit_test(test_v8_mac),
        cmocka_unit_test(test_v9_crypto),
        cmocka_unit_test(test_v10_user_path),
        cmocka_unit_test(test_overlap_and_markers),
        cmocka_unit_test(test_idempotent_corpus_modes),
        cmocka_unit_test(test_hash_mode),
        cmocka_unit_test(test_keep_domain_and_truncate),
        cmocka_unit_test(test_k_rules),
        cmocka_unit_test(test_event_fields),
        cmocka_unit_test(test_identity_markers_counted),
        cmocka_unit_test(test_configured_keys_and_paths),
        cmocka_unit_test(test_custom_patterns),
        cmocka_unit_test(test_rules_and_profiles),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_adversarial_megabytes),
        cmocka_unit_test(test_adversarial_keys_and_nesting),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_regressions),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
