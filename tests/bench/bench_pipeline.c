/*
 * bench_pipeline — herald's side of the performance comparison
 * (tests/bench/compare.sh, docs/performance.md). Public API only.
 *
 *   bench_pipeline latency    --count N [--threads T] [--url URL] [--durability process|power]
 *   bench_pipeline throughput --count N --url URL [--backend rest|segment|posthog]
 *   bench_pipeline offline    --count N
 *   bench_pipeline kill       --count N --url URL [--stall-ms MS]
 *
 * Common options: --backend rest|segment|posthog (default rest), --durability
 * process|power (default process), --redact on|off (default on, herald's
 * default rules), --batch N (batch_max_events, default 100), --no-gzip,
 * --dir DIR (where the queue file goes; default $TMPDIR or /tmp; removed at
 * the end unless --keep), --sink BASE (the sink's base URL for /stats and
 * /reset; default: scheme://host:port of --url), --no-sink (the URL is not
 * tests/bench/sink.js: do not ask it for counts), --client-json '"k":v,...' and
 * --dest-json '"k":v,...' (more members for the herald_open_json() object and
 * for the destination, e.g. --dest-json '"batch_concurrency":4').
 *
 * Every call sends the typical event of the issue:
 *
 *   herald_track(c, "Bench Event",
 *     {"plan":"pro","seats":12,"price":99.5,"trial":false,"source":"bench",
 *      "region":"eu-west-1","tier":3,"ratio":0.25,"seq":<n>})
 *
 * with the full context herald adds by default (library, os, device,
 * timezone, session; app name and version set here) and redaction on. seq
 * runs 0..N-1 over all threads, so that the sink can count distinct events.
 * The property string is formatted before the clock starts; each timed
 * interval is the herald_track() call alone.
 *
 * Modes:
 *   latency     T threads share one client and each call herald_track() N/T
 *               times; every call is timed with CLOCK_MONOTONIC into a
 *               log-linear histogram (1.6% resolution, 18 KiB per thread, so
 *               the samples do not weigh on the RSS measured).  Delivery to
 *               --url during the calls, or off without --url. Reports
 *               p50/p90/p99/p99.9/max in µs, calls/s (N / wall time from the
 *               first call to the last return), CPU µs per event (getrusage
 *               of the whole process, delivery thread included) and peak RSS
 *               (VmHWM).
 *   throughput  burst N calls, then herald_flush() until every event is
 *               acknowledged by the sink. events/s = N / (first call to the
 *               flush's return); checks that herald's stats count N
 *               deliveries and (unless --no-sink) that the sink counted N
 *               distinct events. Reports wire bytes per event as the sink
 *               saw them (gzip on, as herald's default). --rate R paces the
 *               calls at R per second instead of a burst: a sustained
 *               stream; drain_s (last call to the flush's return) stays
 *               short while delivery keeps up with it.
 *   offline     the destination is a closed loopback port: N calls are all
 *               queued (the queue bounds are raised to hold N); reports peak
 *               RSS, the queue file size and calls/s. --count 1000000 is the
 *               issue's case.
 *   kill        a forked child opens the queue with delivery to the sink,
 *               calls herald_track() N times and raise(SIGKILL)s itself as
 *               soon as the last call has returned (some batches delivered or
 *               in flight, most still queued). The parent then opens the
 *               same queue file, delivers and flushes; lost = N - distinct
 *               seqs the sink counted. --stall-ms makes the sink answer that
 *               late while the child runs.
 *
 * Output: human lines, then one line
 *   RESULT mode=<mode> key=value ...
 * Exit status: 0; 1 when a call fails, throughput delivers fewer than N or
 * kill loses an event; 2 on bad usage.
 */
#include <herald/herald.h>

#include <curl/curl.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EVENT_NAME "Bench Event"
#define PROPS_FMT                                                                                  \
    "{\"plan\":\"pro\",\"seats\":12,\"price\":99.5,\"trial\":false,\"source\":\"bench\","        \
    "\"region\":\"eu-west-1\",\"tier\":3,\"ratio\":0.25,\"seq\":%ld}"

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

static struct {
    const char *mode;
    long count;
    long threads;
    const char *url;
    const char *backend;
    const char *durability;
    const char *redact;
    long batch;
    int gzip;
    const char *dir;
    int keep;
    char sink[512];
    int use_sink;
    long stall_ms;
    long flush_timeout_ms;
    double rate;
    const char *client_json;
    const char *dest_json;
} opt = {
    .count = 20000,
    .threads = 1,
    .backend = "rest",
    .durability = "process",
    .redact = "on",
    .batch = 100,
    .gzip = 1,
    .use_sink = 1,
    .flush_timeout_ms = 600000,
};

static void usage(void)
{
    fputs("usage: bench_pipeline latency|throughput|offline|kill --count N [--threads T]\n"
          "         [--url URL] [--backend rest|segment|posthog] [--durability process|power]\n"
          "         [--redact on|off] [--batch N] [--no-gzip] [--dir DIR] [--keep]\n"
          "         [--sink BASE_URL] [--no-sink] [--stall-ms MS] [--flush-timeout-ms MS] [--rate R]\n"
          "         [--client-json '\"key\":value,...'] [--dest-json '\"key\":value,...']\n",
          stderr);
}

/* ------------------------------------------------------------------------ */
/* Clocks, resources                                                         */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Peak RSS in KiB: VmHWM of /proc/self/status, the high-water mark of this
 * process image. Not getrusage()'s ru_maxrss: Linux carries that over execve()
 * from the process that forked us (a 35 MB pytest would be reported). */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f != NULL) {
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

/* Current RSS from /proc/self/statm, in KiB (0 if unreadable). */
static long rss_now_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ------------------------------------------------------------------------ */
/* Latency histogram: log-linear, 64 sub-buckets per power of two.          */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define NBUCKETS (SUB + 40 * SUB)

typedef struct {
    uint64_t n[NBUCKETS];
    uint64_t count;
    uint64_t max_ns;
    double sum_ns;
} histogram;

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB - 1);
    unsigned idx = SUB + (e - SUB_BITS) * SUB + sub;
    return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

/* Midpoint of a bucket, in ns. */
static double bucket_value(unsigned idx)
{
    if (idx < SUB)
        return (double)idx;
    unsigned e = (idx - SUB) / SUB + SUB_BITS;
    unsigned sub = (idx - SUB) % SUB;
    double lo = (double)((uint64_t)(SUB + sub) << (e - SUB_BITS));
    double width = (double)((uint64_t)1 << (e - SUB_BITS));
    return lo + width / 2;
}

static void hist_add(histogram *h, uint64_t v)
{
    h->n[bucket_of(v)]++;
    h->count++;
    h->sum_ns += (double)v;
    if (v > h->max_ns)
        h->max_ns = v;
}

static void hist_merge(histogram *into, const histogram *h)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        into->n[i] += h->n[i];
    into->count += h->count;
    into->sum_ns += h->sum_ns;
    if (h->max_ns > into->max_ns)
        into->max_ns = h->max_ns;
}

/* The q-quantile in µs (q in [0, 1]). */
static double hist_quantile_us(const histogram *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->n[i];
        if (seen > rank) {
            double v = bucket_value(i);
            if (v > (double)h->max_ns)
                v = (double)h->max_ns;
            return v / 1000.0;
        }
    }
    return (double)h->max_ns / 1000.0;
}

/* ------------------------------------------------------------------------ */
/* The sink: GET /stats, POST /reset, POST /config (tests/bench/sink.js).   */

typedef struct {
    char *buf;
    size_t len, cap;
} membuf;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    membuf *m = userdata;
    size_t n = size * nmemb;
    if (m->len + n + 1 > m->cap) {
        size_t cap = (m->cap ? m->cap * 2 : 1024) + n;
        char *p = realloc(m->buf, cap);
        if (p == NULL)
            return 0;
        m->buf = p;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    m->buf[m->len] = '\0';
    return n;
}

/* method "GET" or "POST"; returns the body (malloc'ed) or NULL. */
static char *sink_call(const char *method, const char *path, const char *body)
{
    if (!opt.use_sink || opt.sink[0] == '\0')
        return NULL;
    char url[700];
    snprintf(url, sizeof url, "%s%s", opt.sink, path);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    membuf m = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    long status = 0;
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200) {
        fprintf(stderr, "bench_pipeline: sink %s %s: %s (HTTP %ld)\n", method, url,
                rc == CURLE_OK ? "refused" : curl_easy_strerror(rc), status);
        free(m.buf);
        return NULL;
    }
    return m.buf;
}

/* A number member of a flat JSON object (the sink's stats); -1 if absent. */
static double json_num(const char *json, const char *key)
{
    if (json == NULL)
        return -1;
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (p == NULL)
        return -1;
    return strtod(p + strlen(pat), NULL);
}

typedef struct {
    double distinct, total_events, requests, body_bytes, raw_bytes, header_bytes, wire_bytes;
} sink_stats;

static int sink_get(sink_stats *s)
{
    char *j = sink_call("GET", "/stats", NULL);
    s->distinct = json_num(j, "distinct");
    s->total_events = json_num(j, "total_events");
    s->requests = json_num(j, "requests");
    s->body_bytes = json_num(j, "body_bytes");
    s->raw_bytes = json_num(j, "raw_bytes");
    s->header_bytes = json_num(j, "header_bytes");
    s->wire_bytes = json_num(j, "wire_bytes");
    free(j);
    return j != NULL;
}

static int sink_reset(void)
{
    char *j = sink_call("POST", "/reset", "");
    free(j);
    return j != NULL;
}

static void sink_delay(long ms)
{
    char body[64];
    snprintf(body, sizeof body, "{\"delay_ms\":%ld}", ms);
    free(sink_call("POST", "/config", body));
}

/* ------------------------------------------------------------------------ */
/* The queue file and the client                                             */

static char g_dir[4096];
static char g_db[4200];

static int make_dir(void)
{
    const char *base = opt.dir;
    if (base == NULL) {
        base = getenv("TMPDIR");
        if (base == NULL || base[0] == '\0')
            base = "/tmp";
    }
    snprintf(g_dir, sizeof g_dir, "%s/herald-bench-XXXXXX", base);
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "bench_pipeline: mkdtemp %s: %s\n", g_dir, strerror(errno));
        return -1;
    }
    snprintf(g_db, sizeof g_db, "%s/q.db", g_dir);
    return 0;
}

/* Bytes of every file in the private directory of the queue: the SQLite file
 * and its companions (-wal, -shm, .lock) and herald's staging files
 * (q.db-stage-...). */
static long long queue_bytes_on_disk(void)
{
    long long total = 0;
    DIR *d = opendir(g_dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (long long)sb.st_size;
    }
    closedir(d);
    return total;
}

/* Remove the directory made by make_dir() and whatever herald left in it. */
static void remove_queue(void)
{
    if (opt.keep) {
        printf("queue kept in %s\n", g_dir);
        return;
    }
    DIR *d = opendir(g_dir);
    if (d != NULL) {
        struct dirent *e;
        char path[4400];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(g_dir);
}

/* Build the herald_open_json() config. url NULL: no destination, no delivery.
 * extra: more top-level members (",\"k\":v..." or ""). */
static void build_config(char *out, size_t outlen, const char *url, int deliver,
                         const char *extra)
{
    char dest[4096] = "";
    if (url) {
        char auth[160] = "";
        if (strcmp(opt.backend, "segment") == 0)
            snprintf(auth, sizeof auth, ",\"write_key\":\"bench-write-key\"");
        else if (strcmp(opt.backend, "posthog") == 0)
            snprintf(auth, sizeof auth,
                     ",\"api_key\":\"phc_BenchBenchBenchBenchBenchBenchBenchBench123\"");
        else
            snprintf(auth, sizeof auth, ",\"write_key\":\"bench-write-key\"");
        snprintf(dest, sizeof dest,
                 ",\"destinations\":[{\"name\":\"sink\",\"backend\":\"%s\",\"url\":\"%s\","
                 "\"gzip\":%s,\"batch_max_events\":%ld%s%s%s}]",
                 opt.backend, url, opt.gzip ? "true" : "false", opt.batch, auth,
                 opt.dest_json ? "," : "", opt.dest_json ? opt.dest_json : "");
    }
    snprintf(out, outlen,
             "{\"db_path\":\"%s\",\"durability\":\"%s\",\"deliver\":%s,"
             "\"app_name\":\"herald-bench\",\"app_version\":\"1.0.0\"%s%s%s%s%s}",
             g_db, opt.durability, deliver ? "true" : "false",
             strcmp(opt.redact, "off") == 0 ? ",\"redact\":{\"enabled\":false}" : "", extra,
             opt.client_json ? "," : "", opt.client_json ? opt.client_json : "", dest);
}

static herald_client *open_client(const char *config)
{
    herald_client *c = NULL;
    herald_status st = herald_open_json(&c, config);
    if (st != HERALD_OK) {
        char msg[512];
        herald_last_error(NULL, msg, sizeof msg);
        fprintf(stderr, "bench_pipeline: open: %s: %s\n", herald_strerror(st), msg);
        return NULL;
    }
    return c;
}

static int track(herald_client *c, long seq)
{
    char props[256];
    snprintf(props, sizeof props, PROPS_FMT, seq);
    herald_status st = herald_track(c, EVENT_NAME, props);
    if (st != HERALD_OK) {
        char msg[512];
        herald_last_error(c, msg, sizeof msg);
        fprintf(stderr, "bench_pipeline: call %ld: %s: %s\n", seq, herald_strerror(st), msg);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* latency                                                                   */

typedef struct {
    herald_client *c;
    long first, n;
    pthread_barrier_t *start;
    histogram hist;
    uint64_t t_start, t_end;
    int failed;
} worker;

static void *latency_worker(void *arg)
{
    worker *w = arg;
    char props[256];
    pthread_barrier_wait(w->start);
    w->t_start = now_ns();
    for (long i = 0; i < w->n; i++) {
        snprintf(props, sizeof props, PROPS_FMT, w->first + i);
        uint64_t t0 = now_ns();
        herald_status st = herald_track(w->c, EVENT_NAME, props);
        uint64_t t1 = now_ns();
        if (st != HERALD_OK) {
            char msg[512];
            herald_last_error(w->c, msg, sizeof msg);
            fprintf(stderr, "bench_pipeline: call %ld: %s: %s\n", w->first + i,
                    herald_strerror(st), msg);
            w->failed = 1;
            break;
        }
        hist_add(&w->hist, t1 - t0);
    }
    w->t_end = now_ns();
    return NULL;
}

static int run_latency(void)
{
    char config[16384];
    if (make_dir() != 0)
        return 1;
    build_config(config, sizeof config, opt.url, opt.url != NULL, "");
    long rss_before = rss_now_kb();
    herald_client *c = open_client(config);
    if (c == NULL)
        return 1;
    long rss_open = rss_now_kb();
    long t = opt.threads;
    worker *ws = calloc((size_t)t, sizeof *ws);
    pthread_t *tids = calloc((size_t)t, sizeof *tids);
    histogram *all = calloc(1, sizeof *all);
    if (ws == NULL || tids == NULL || all == NULL)
        return 1;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)t + 1);
    long first = 0;
    for (long i = 0; i < t; i++) {
        ws[i].c = c;
        ws[i].first = first;
        ws[i].n = opt.count / t + (i < opt.count % t ? 1 : 0);
        ws[i].start = &start;
        first += ws[i].n;
        if (pthread_create(&tids[i], NULL, latency_worker, &ws[i]) != 0) {
            fprintf(stderr, "bench_pipeline: pthread_create failed\n");
            return 1;
        }
    }
    double cpu0 = cpu_s();
    pthread_barrier_wait(&start);
    int failed = 0;
    uint64_t t_start = UINT64_MAX, t_end = 0;
    for (long i = 0; i < t; i++) {
        pthread_join(tids[i], NULL);
        failed |= ws[i].failed;
        if (ws[i].t_start < t_start)
            t_start = ws[i].t_start;
        if (ws[i].t_end > t_end)
            t_end = ws[i].t_end;
        hist_merge(all, &ws[i].hist);
    }
    double cpu = cpu_s() - cpu0;
    long rss_peak = peak_rss_kb();
    pthread_barrier_destroy(&start);
    herald_stats hs = {.struct_size = sizeof hs};
    herald_stats_get(c, &hs);
    herald_close(c, 0);
    remove_queue();
    if (failed)
        return 1;

    double wall = (double)(t_end - t_start) / 1e9;
    double rate = (double)all->count / wall;
    double p50 = hist_quantile_us(all, 0.50), p90 = hist_quantile_us(all, 0.90),
           p99 = hist_quantile_us(all, 0.99), p999 = hist_quantile_us(all, 0.999);
    double mean = all->sum_ns / (double)all->count / 1000.0;
    double maxu = (double)all->max_ns / 1000.0;
    printf("latency: %llu calls, %ld thread(s), durability=%s, redact=%s, deliver=%s\n",
           (unsigned long long)all->count, t, opt.durability, opt.redact,
           opt.url ? opt.url : "off");
    printf("  per call (µs): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.1f  mean %.2f\n", p50,
           p90, p99, p999, maxu, mean);
    printf("  %.0f calls/s over %.3f s; CPU %.2f µs/event (process, delivery included)\n", rate,
           wall, cpu * 1e6 / (double)all->count);
    printf("  RSS: %ld KiB before open, %ld KiB after open, peak %ld KiB; %llu sent meanwhile\n",
           rss_before, rss_open, rss_peak, (unsigned long long)hs.sent);
    printf("RESULT mode=latency count=%llu threads=%ld durability=%s redact=%s deliver=%d "
           "p50_us=%.3f p90_us=%.3f p99_us=%.3f p999_us=%.3f max_us=%.1f mean_us=%.3f "
           "calls_per_s=%.0f cpu_us_per_event=%.3f peak_rss_kb=%ld rss_open_kb=%ld "
           "sent=%llu\n",
           (unsigned long long)all->count, t, opt.durability, opt.redact, opt.url != NULL, p50,
           p90, p99, p999, maxu, mean, rate, cpu * 1e6 / (double)all->count, rss_peak, rss_open,
           (unsigned long long)hs.sent);
    free(ws);
    free(tids);
    free(all);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* throughput                                                                */

static int run_throughput(void)
{
    char config[16384];
    if (opt.url == NULL) {
        fprintf(stderr, "bench_pipeline: throughput needs --url\n");
        return 2;
    }
    if (make_dir() != 0)
        return 1;
    if (opt.use_sink && !sink_reset())
        return 1;
    build_config(config, sizeof config, opt.url, 1, "");
    herald_client *c = open_client(config);
    if (c == NULL)
        return 1;
    double cpu0 = cpu_s();
    uint64_t t0 = now_ns();
    for (long i = 0; i < opt.count; i++) {
        if (opt.rate > 0 && i % 64 == 0) {
            /* Paced: call i is due at t0 + i / rate. */
            uint64_t due = t0 + (uint64_t)((double)i * 1e9 / opt.rate);
            uint64_t t;
            while ((t = now_ns()) < due) {
                struct timespec ts = {0, (long)(due - t > 50000 ? due - t - 20000 : 0)};
                if (ts.tv_nsec)
                    nanosleep(&ts, NULL);
            }
        }
        if (track(c, i) != 0)
            return 1;
    }
    uint64_t t_calls = now_ns();
    herald_status fst = herald_flush(c, (int)opt.flush_timeout_ms);
    uint64_t t_end = now_ns();
    double cpu = cpu_s() - cpu0;
    long rss_peak = peak_rss_kb();
    herald_stats hs = {.struct_size = sizeof hs};
    herald_stats_get(c, &hs);
    herald_close(c, 1000);
    remove_queue();
    sink_stats ss = {-1, -1, -1, -1, -1, -1, -1};
    if (opt.use_sink)
        sink_get(&ss);

    double n = (double)opt.count;
    double total = (double)(t_end - t0) / 1e9;
    double calls = (double)(t_calls - t0) / 1e9;
    double rate = n / total;
    printf("throughput: %ld events to %s (backend %s, batch %ld, gzip %s), durability=%s\n",
           opt.count, opt.url, opt.backend, opt.batch, opt.gzip ? "on" : "off", opt.durability);
    printf("  calls %.3f s (%.0f/s), first call to last delivery %.3f s: %.0f events/s; flush: %s\n",
           calls, n / calls, total, rate, herald_strerror(fst));
    printf("  CPU %.2f µs/event (client process); peak RSS %ld KiB\n", cpu * 1e6 / n, rss_peak);
    printf("  herald stats: sent %llu, requests %llu, body bytes %llu raw / %llu sent "
           "(%.1f / %.1f per event), retried %llu, dead %llu\n",
           (unsigned long long)hs.sent, (unsigned long long)hs.requests,
           (unsigned long long)hs.bytes_raw, (unsigned long long)hs.bytes_sent,
           (double)hs.bytes_raw / n, (double)hs.bytes_sent / n, (unsigned long long)hs.retried,
           (unsigned long long)hs.dead);
    if (opt.use_sink)
        printf("  sink: %.0f distinct events (%.0f seen), %.0f requests, %.1f wire bytes/event "
               "(%.1f body, %.1f headers, %.1f body before gzip)\n",
               ss.distinct, ss.total_events, ss.requests, ss.wire_bytes / n, ss.body_bytes / n,
               ss.header_bytes / n, ss.raw_bytes / n);
    printf("RESULT mode=throughput count=%ld backend=%s rate=%.0f events_per_s=%.0f "
           "calls_per_s=%.0f drain_s=%.3f total_s=%.3f cpu_us_per_event=%.3f peak_rss_kb=%ld delivered=%llu requests=%llu "
           "body_bytes_per_event=%.1f raw_bytes_per_event=%.1f sink_distinct=%.0f "
           "sink_events=%.0f sink_requests=%.0f wire_bytes_per_event=%.1f "
           "sink_body_bytes_per_event=%.1f sink_header_bytes_per_event=%.1f\n",
           opt.count, opt.backend, opt.rate, rate, n / calls, (double)(t_end - t_calls) / 1e9,
           total, cpu * 1e6 / n, rss_peak,
           (unsigned long long)hs.sent, (unsigned long long)hs.requests,
           (double)hs.bytes_sent / n, (double)hs.bytes_raw / n, ss.distinct, ss.total_events,
           ss.requests, ss.wire_bytes >= 0 ? ss.wire_bytes / n : -1,
           ss.body_bytes >= 0 ? ss.body_bytes / n : -1,
           ss.header_bytes >= 0 ? ss.header_bytes / n : -1);
    int ok = fst == HERALD_OK && hs.sent == (uint64_t)opt.count &&
             (!opt.use_sink || ss.distinct == n);
    if (!ok)
        fprintf(stderr, "bench_pipeline: delivered %llu of %ld (sink counted %.0f)\n",
                (unsigned long long)hs.sent, opt.count, ss.distinct);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* offline                                                                   */

/* A loopback port nothing listens on: bind an ephemeral port, then close it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return 9; /* discard: not listened on here */
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int run_offline(void)
{
    char config[16384], url[128], extra[256];
    if (make_dir() != 0)
        return 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/batch", closed_port());
    /* Hold all N: the default bounds are 1,000,000 events and 256 MiB. */
    unsigned long long max_events = opt.count > 1000000 ? (unsigned long long)opt.count : 1000000;
    unsigned long long max_bytes = (unsigned long long)opt.count * 2048ull;
    if (max_bytes < 268435456ull)
        max_bytes = 268435456ull;
    snprintf(extra, sizeof extra,
             ",\"max_queue_events\":%llu,\"max_queue_bytes\":%llu,\"overflow_policy\":\"reject_new\"",
             max_events, max_bytes);
    build_config(config, sizeof config, url, 1, extra);
    herald_client *c = open_client(config);
    if (c == NULL)
        return 1;
    long rss_open = rss_now_kb();
    double cpu0 = cpu_s();
    uint64_t t0 = now_ns();
    for (long i = 0; i < opt.count; i++)
        if (track(c, i) != 0)
            return 1;
    uint64_t t1 = now_ns();
    double cpu = cpu_s() - cpu0;
    long rss_peak = peak_rss_kb();
    herald_stats hs = {.struct_size = sizeof hs};
    herald_stats_get(c, &hs);
    long long disk = queue_bytes_on_disk();
    herald_close(c, 0);
    long long disk_closed = queue_bytes_on_disk();
    remove_queue();
    double n = (double)opt.count, secs = (double)(t1 - t0) / 1e9;
    printf("offline: %ld events queued for %s (closed port)\n", opt.count, url);
    printf("  %.3f s, %.0f calls/s, CPU %.2f µs/event\n", secs, n / secs, cpu * 1e6 / n);
    printf("  peak RSS %ld KiB (%ld KiB after open); queue %llu events, %.1f MiB on disk "
           "(%.1f MiB after close, staging files included), %.0f bytes/event\n",
           rss_peak, rss_open, (unsigned long long)hs.queued, (double)disk / 1048576.0,
           (double)disk_closed / 1048576.0, (double)disk_closed / n);
    printf("RESULT mode=offline count=%ld peak_rss_kb=%ld rss_open_kb=%ld queued=%llu "
           "disk_bytes=%lld disk_bytes_closed=%lld calls_per_s=%.0f cpu_us_per_event=%.3f\n",
           opt.count, rss_peak, rss_open, (unsigned long long)hs.queued, disk, disk_closed,
           n / secs, cpu * 1e6 / n);
    return hs.queued == (uint64_t)opt.count ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* kill                                                                      */

static int run_kill(void)
{
    char config[16384];
    if (opt.url == NULL) {
        fprintf(stderr, "bench_pipeline: kill needs --url (the sink)\n");
        return 2;
    }
    if (!opt.use_sink) {
        fprintf(stderr, "bench_pipeline: kill counts at the sink: --no-sink is not possible\n");
        return 2;
    }
    if (make_dir() != 0)
        return 1;
    if (!sink_reset())
        return 1;
    if (opt.stall_ms > 0)
        sink_delay(opt.stall_ms);
    build_config(config, sizeof config, opt.url, 1, "");
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    fflush(stdout);
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        herald_client *c = open_client(config);
        if (c == NULL)
            _exit(1);
        long ok = 0;
        for (long i = 0; i < opt.count; i++) {
            if (track(c, i) != 0)
                break;
            ok++;
        }
        /* Tell the parent how many calls returned HERALD_OK, then die at once:
         * no close, no flush, no atexit. */
        ssize_t w = write(fds[1], &ok, sizeof ok);
        (void)w;
        raise(SIGKILL);
        _exit(3);
    }
    close(fds[1]);
    long ok = -1;
    if (read(fds[0], &ok, sizeof ok) != (ssize_t)sizeof ok)
        ok = -1;
    close(fds[0]);
    int wst = 0;
    waitpid(pid, &wst, 0);
    uint64_t t_dead = now_ns();
    int killed = WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL;
    if (opt.stall_ms > 0)
        sink_delay(0);
    sink_stats before = {-1, -1, -1, -1, -1, -1, -1};
    sink_get(&before);

    /* Recovery: the same file, delivery on. */
    herald_client *c = open_client(config);
    if (c == NULL)
        return 1;
    uint64_t t1 = now_ns();
    herald_status fst = herald_flush(c, (int)opt.flush_timeout_ms);
    uint64_t t2 = now_ns();
    herald_stats hs = {.struct_size = sizeof hs};
    herald_stats_get(c, &hs);
    herald_close(c, 1000);
    remove_queue();
    sink_stats after = {-1, -1, -1, -1, -1, -1, -1};
    sink_get(&after);

    double lost = (double)opt.count - after.distinct;
    double dup = after.total_events - after.distinct;
    printf("kill: child tracked %ld/%ld events in %.3f s and was %s\n", ok, opt.count,
           (double)(t_dead - t0) / 1e9, killed ? "killed by SIGKILL" : "NOT killed by SIGKILL");
    printf("  the sink had %.0f distinct events at the kill; after reopening and a flush "
           "(%s, %.3f s): %.0f distinct, %.0f seen (%.0f duplicates)\n",
           before.distinct, herald_strerror(fst), (double)(t2 - t1) / 1e9, after.distinct,
           after.total_events, dup);
    printf("  lost: %.0f of %ld\n", lost, opt.count);
    printf("RESULT mode=kill count=%ld ok_calls=%ld killed=%d delivered_before_kill=%.0f "
           "delivered=%.0f lost=%.0f duplicates=%.0f recovery_s=%.3f\n",
           opt.count, ok, killed, before.distinct, after.distinct, lost, dup,
           (double)(t2 - t1) / 1e9);
    return killed && ok == opt.count && lost == 0 && fst == HERALD_OK ? 0 : 1;
}

/* ------------------------------------------------------------------------ */

static void derive_sink(void)
{
    if (opt.sink[0] != '\0' || opt.url == NULL)
        return;
    /* scheme://host:port of the URL */
    const char *p = strstr(opt.url, "://");
    if (p == NULL)
        return;
    const char *slash = strchr(p + 3, '/');
    size_t n = slash ? (size_t)(slash - opt.url) : strlen(opt.url);
    if (n >= sizeof opt.sink)
        return;
    memcpy(opt.sink, opt.url, n);
    opt.sink[n] = '\0';
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    opt.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (ARG("--count"))
            opt.count = strtol(v, NULL, 10);
        else if (ARG("--threads"))
            opt.threads = strtol(v, NULL, 10);
        else if (ARG("--url"))
            opt.url = v;
        else if (ARG("--backend"))
            opt.backend = v;
        else if (ARG("--durability"))
            opt.durability = v;
        else if (ARG("--redact"))
            opt.redact = v;
        else if (ARG("--batch"))
            opt.batch = strtol(v, NULL, 10);
        else if (ARG("--dir"))
            opt.dir = v;
        else if (ARG("--sink"))
            snprintf(opt.sink, sizeof opt.sink, "%s", v);
        else if (ARG("--stall-ms"))
            opt.stall_ms = strtol(v, NULL, 10);
        else if (ARG("--rate"))
            opt.rate = strtod(v, NULL);
        else if (ARG("--client-json"))
            opt.client_json = v;
        else if (ARG("--dest-json"))
            opt.dest_json = v;
        else if (ARG("--flush-timeout-ms"))
            opt.flush_timeout_ms = strtol(v, NULL, 10);
        else if (strcmp(a, "--no-gzip") == 0)
            opt.gzip = 0;
        else if (strcmp(a, "--keep") == 0)
            opt.keep = 1;
        else if (strcmp(a, "--no-sink") == 0)
            opt.use_sink = 0;
        else {
            usage();
            return 2;
        }
#undef ARG
    }
    if (opt.count <= 0 || opt.threads <= 0 || opt.threads > 256 || opt.batch <= 0 ||
        opt.flush_timeout_ms <= 0 || opt.flush_timeout_ms > 2000000000L) {
        usage();
        return 2;
    }
    derive_sink();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench_pipeline: herald %s, mode %s\n", herald_version(), opt.mode);
    int rc;
    if (strcmp(opt.mode, "latency") == 0)
        rc = run_latency();
    else if (strcmp(opt.mode, "throughput") == 0)
        rc = run_throughput();
    else if (strcmp(opt.mode, "offline") == 0)
        rc = run_offline();
    else if (strcmp(opt.mode, "kill") == 0)
        rc = run_kill();
    else {
        usage();
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
