/* Benchmark: the cost of PII redaction (src/redact*.c) per event, on
 * realistic Segment-shaped events with and without PII, with the default
 * configuration and with keyed hashing. Prints ns per event and MB/s (of
 * the event's compact JSON), the median of several runs.
 *
 *   bench_redact [runs] [events_per_run] [case]   (defaults 9, 2000, all)
 *
 * Each run redacts fresh deep copies made beforehand, so only
 * herald_redact_event is timed. Not a test: numbers depend on the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "redact.h"

static const char clean_event[] =
    "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u_8f14e45f\","
    "\"anonymousId\":\"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\","
    "\"messageId\":\"6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d\","
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\","
    "\"properties\":{\"order_id\":\"50314b8e9bcf000000000000\",\"affiliation\":\"Google Store\","
    "\"total\":27.5,\"subtotal\":22.5,\"revenue\":25,\"shipping\":3,\"tax\":2,\"discount\":2.5,"
    "\"coupon\":\"hasbros\",\"currency\":\"USD\",\"plan\":\"pro\",\"token_count\":512,"
    "\"products\":[{\"product_id\":\"507f1f77bcf86cd799439011\",\"sku\":\"45790-32\","
    "\"name\":\"Monopoly: 3rd Edition\",\"price\":19,\"quantity\":1,\"category\":\"Games\","
    "\"url\":\"https://www.example.com/product/path\",\"image_url\":\"https://www.example.com/product/path.jpg\"},"
    "{\"product_id\":\"505bd76785ebb509fc183733\",\"sku\":\"46493-32\",\"name\":\"Uno Card Game\","
    "\"price\":3,\"quantity\":2,\"category\":\"Games\"}],"
    "\"note\":\"Delivered to the front desk on 2024-01-15 at 10:30, build 20240115.1030\"},"
    "\"context\":{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
    "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
    "\"device\":{\"type\":\"desktop\",\"arch\":\"x86_64\"},\"locale\":\"en-US\","
    "\"timezone\":\"Europe/Berlin\",\"app\":{\"name\":\"shop\",\"version\":\"3.2.1\",\"build\":\"321\"},"
    "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\","
    "\"page\":{\"url\":\"https://www.example.com/checkout/complete?utm_source=newsletter&utm_medium=email&step=3\","
    "\"path\":\"/checkout/complete\",\"search\":\"?utm_source=newsletter&utm_medium=email&step=3\","
    "\"title\":\"Thank you for your order\",\"referrer\":\"https://www.example.com/cart\"},"
    "\"campaign\":{\"source\":\"newsletter\",\"medium\":\"email\"},"
    "\"session\":{\"id\":1705312800000,\"sequence\":7}}}";

static const char pii_event[] =
    "{\"type\":\"track\",\"event\":\"Support Ticket Created\",\"userId\":\"jane.doe@example.com\","
    "\"anonymousId\":\"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\","
    "\"messageId\":\"6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d\","
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\","
    "\"properties\":{\"ticket_id\":\"T-48213\",\"email\":\"jane.doe@example.com\","
    "\"phone\":\"+44 20 7946 0018\",\"priority\":\"high\",\"token_count\":512,"
    "\"subject\":\"Card 4111 1111 1111 1111 charged twice\","
    "\"body\":\"Hi, I'm Jane (jane.doe@example.com, +1 202-555-0143). My card 4111 1111 1111 1111 "
    "was charged twice; refund to IBAN DE89 3704 0044 0532 0130 00 please. I logged in from "
    "203.0.113.5 and my API key is sk_live_FAKEsYXpbhlSMJLUoTGuIcHk. SSN 078-05-1120.\","
    "\"headers\":{\"Authorization\":\"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.FAKEsig\","
    "\"Accept\":\"application/json\"},"
    "\"callback\":\"https://user:p4ss@hooks.example.com/cb?email=jane.doe%40example.com&code=FAKEauthCODE0123456789\","
    "\"crash\":\"at /Users/jdoe42/Library/Caches/app.db line 12\"},"
    "\"context\":{\"library\":{\"name\":\"herald\",\"version\":\"0.1.0\"},"
    "\"os\":{\"name\":\"Debian GNU/Linux\",\"version\":\"12\"},"
    "\"device\":{\"type\":\"desktop\",\"arch\":\"x86_64\"},\"locale\":\"en-US\","
    "\"timezone\":\"Europe/Berlin\",\"ip\":\"203.0.113.5\","
    "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\","
    "\"page\":{\"url\":\"https://support.example.com/tickets/new?email=jane.doe%40example.com&utm_source=app\","
    "\"path\":\"/tickets/new\",\"search\":\"?email=jane.doe%40example.com&utm_source=app\","
    "\"title\":\"New ticket\",\"referrer\":\"https://support.example.com/\"},"
    "\"traits\":{\"email\":\"jane.doe@example.com\",\"name\":\"Jane Doe\"},"
    "\"session\":{\"id\":1705312800000,\"sequence\":7}}}";

typedef struct bench_case {
    const char *name;
    const char *config;
    json_t *event;
    size_t bytes;
} bench_case;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A 4 KB free-text event: log lines, mostly clean, a few PII items. */
static json_t *text_event(int with_pii)
{
    char text[4200];
    size_t n = 0;
    static const char *const clean_lines[] = {
        "2024-01-15T10:00:00Z INFO request GET /api/v1/orders?page=2 200 12ms build 1.4.2\n",
        "2024-01-15T10:00:01Z WARN retrying upstream after 503, attempt 2 of 5, backoff 400ms\n",
        "2024-01-15T10:00:02Z INFO cache hit ratio 0.93 for key orders:list:page:2 (ttl 60s)\n",
    };
    static const char *const pii_lines[] = {
        "2024-01-15T10:00:03Z INFO login ok for jane.doe@example.com from 203.0.113.5\n",
        "2024-01-15T10:00:04Z DEBUG headers Authorization: Bearer FAKEtoken0123456789abcdef\n",
    };
    for (int i = 0; n < 4000; i++) {
        const char *line = clean_lines[i % 3];
        if (with_pii && i % 8 == 7)
            line = pii_lines[(i / 8) % 2];
        size_t len = strlen(line);
        if (n + len >= sizeof text)
            break;
        memcpy(text + n, line, len);
        n += len;
    }
    return json_pack("{s:s, s:s, s:s, s:{s:s%}}", "type", "track", "event", "Log Batch",
                     "messageId", "6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d", "properties", "log",
                     text, n);
}

static double run_case(const herald_redactor *r, const bench_case *c, int runs, int events,
                       double *ns_per_event)
{
    double *times = malloc((size_t)runs * sizeof *times);
    json_t **copies = malloc((size_t)events * sizeof *copies);
    if (times == NULL || copies == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int k = 0; k < runs; k++) {
        for (int i = 0; i < events; i++)
            copies[i] = json_deep_copy(c->event);
        double start = now_seconds();
        for (int i = 0; i < events; i++) {
            if (herald_redact_event(r, copies[i], NULL) != HERALD_OK) {
                fprintf(stderr, "redaction failed\n");
                exit(1);
            }
        }
        times[k] = now_seconds() - start;
        for (int i = 0; i < events; i++)
            json_decref(copies[i]);
    }
    qsort(times, (size_t)runs, sizeof *times, compare_doubles);
    double median = times[runs / 2];
    free(times);
    free(copies);
    *ns_per_event = median / events * 1e9;
    return (double)c->bytes * events / median / 1e6;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 9;
    int events = argc > 2 ? atoi(argv[2]) : 2000;
    if (runs < 1 || events < 1) {
        fprintf(stderr, "usage: %s [runs] [events_per_run]\n", argv[0]);
        return 2;
    }
    const char *hashed = "{\"mode\": {\"email\": \"hash\", \"phone\": \"hash\", \"card\": \"hash\","
                         " \"ip\": \"hash\"}, \"hash_key\": "
                         "\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"}";
    bench_case cases[] = {
        {"track, no PII", NULL, json_loads(clean_event, 0, NULL), 0},
        {"track, PII", NULL, json_loads(pii_event, 0, NULL), 0},
        {"track, PII, hash", hashed, json_loads(pii_event, 0, NULL), 0},
        {"4 KB log, no PII", NULL, text_event(0), 0},
        {"4 KB log, PII", NULL, text_event(1), 0},
    };
    size_t count = sizeof cases / sizeof *cases;
    printf("redaction, median of %d runs x %d events\n", runs, events);
    printf("%-20s %7s %11s %9s %7s\n", "event", "bytes", "ns/event", "MB/s", "items");
    int only = argc > 3 ? atoi(argv[3]) : -1;
    for (size_t i = 0; i < count; i++) {
        bench_case *c = &cases[i];
        if (only >= 0 && (size_t)only != i) {
            json_decref(c->event);
            continue;
        }
        if (c->event == NULL) {
            fprintf(stderr, "bad benchmark event %s\n", c->name);
            return 1;
        }
        char *text = json_dumps(c->event, JSON_COMPACT);
        c->bytes = text != NULL ? strlen(text) : 0;
        free(text);
        herald_redactor *r;
        char err[256];
        if (herald_redactor_create(c->config, &r, err, sizeof err) != HERALD_OK) {
            fprintf(stderr, "config: %s\n", err);
            return 1;
        }
        /* What one redaction does, for the table. */
        json_t *probe = json_deep_copy(c->event);
        herald_redact_stats stats;
        memset(&stats, 0, sizeof stats);
        herald_redact_event(r, probe, &stats);
        json_decref(probe);
        unsigned long long items = 0;
        for (int k = 0; k < HERALD_RULE_COUNT; k++)
            items += stats.count[k];

        double ns;
        double mbs = run_case(r, c, runs, events, &ns);
        printf("%-20s %7zu %11.0f %9.1f %7llu\n", c->name, c->bytes, ns, mbs, items);
        herald_redactor_free(r);
        json_decref(c->event);
    }
    return 0;
}
