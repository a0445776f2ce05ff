/*
 * producer — drives libherald directly for the integration tests.
 *
 *   producer --config JSON_FILE --count N [--start S] [--threads T]
 *            [--pad BYTES] [--flush-ms T] [--close-ms T] [--interval-us U]
 *            [--event NAME]
 *
 * Opens a client with herald_open_json(<file contents>), then calls
 * herald_track(c, "Test Event", {"seq": i, "pad": "xxx..."}) for every i in
 * [S, S+N), split across T threads. After each call it prints, and flushes:
 *
 *   ok <seq>            the call returned HERALD_OK (the event is durable)
 *   err <seq> <code>    the call failed with that herald_status
 *
 * so a test that SIGKILLs the process knows exactly which calls were
 * accepted. Then, if --flush-ms is given, herald_flush(c, T) ("flush <code>"),
 * the stats as one line "stats {json}", and herald_close(c, close-ms)
 * ("close <code>", close-ms defaults to 0).
 *
 * Exit status: 0 when the client opened (whatever the calls returned),
 * 1 when it did not open or stats failed, 2 for bad arguments.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <herald/herald.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct producer_args {
    const char *config_path;
    const char *event_name;
    long long count;
    long long start;
    long threads;
    long pad;
    long long flush_ms;
    int do_flush;
    long long close_ms;
    long long interval_us;
} producer_args;

typedef struct worker {
    herald_client *client;
    const producer_args *args;
    const char *pad;
    long long first;
    long long end;
    long long failures;
} worker;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void usage(void)
{
    fputs("usage: producer --config JSON_FILE --count N [--start S] [--threads T]\n"
          "                [--pad BYTES] [--flush-ms T] [--close-ms T]\n"
          "                [--interval-us U] [--event NAME]\n",
          stderr);
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

static void say(const char *fmt_kind, long long seq, int code)
{
    pthread_mutex_lock(&out_lock);
    if (code == 0)
        printf("%s %lld\n", fmt_kind, seq);
    else
        printf("%s %lld %d\n", fmt_kind, seq, code);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void sleep_us(long long us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1000000);
    ts.tv_nsec = (long)((us % 1000000) * 1000);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    json_t *props = json_object();
    if (props == NULL)
        return NULL;
    json_object_set_new(props, "pad", json_string(w->pad));
    for (long long seq = w->first; seq < w->end; seq++) {
        json_object_set_new(props, "seq", json_integer((json_int_t)seq));
        char *text = json_dumps(props, JSON_COMPACT);
        herald_status st = text != NULL
                               ? herald_track(w->client, w->args->event_name, text)
                               : HERALD_E_NO_MEMORY;
        free(text);
        if (st == HERALD_OK) {
            say("ok", seq, 0);
        } else {
            say("err", seq, (int)st);
            w->failures++;
        }
        if (w->args->interval_us > 0)
            sleep_us(w->args->interval_us);
    }
    json_decref(props);
    return NULL;
}

static int parse_args(int argc, char **argv, producer_args *a)
{
    memset(a, 0, sizeof *a);
    a->event_name = "Test Event";
    a->count = -1;
    a->threads = 1;
    a->close_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "producer: %s needs a value\n", opt);
            return -1;
        }
        const char *val = argv[++i];
        long long v = 0;
        int bad = 0;
        if (strcmp(opt, "--config") == 0) {
            a->config_path = val;
        } else if (strcmp(opt, "--event") == 0) {
            a->event_name = val;
        } else if (strcmp(opt, "--count") == 0) {
            bad = parse_ll(val, 0, INT64_MAX / 2, &a->count);
        } else if (strcmp(opt, "--start") == 0) {
            bad = parse_ll(val, 0, INT64_MAX / 2, &a->start);
        } else if (strcmp(opt, "--threads") == 0) {
            bad = parse_ll(val, 1, 256, &v);
            a->threads = (long)v;
        } else if (strcmp(opt, "--pad") == 0) {
            bad = parse_ll(val, 0, 16 * 1024 * 1024, &v);
            a->pad = (long)v;
        } else if (strcmp(opt, "--flush-ms") == 0) {
            bad = parse_ll(val, -1, INT32_MAX, &a->flush_ms);
            a->do_flush = 1;
        } else if (strcmp(opt, "--close-ms") == 0) {
            bad = parse_ll(val, -1, INT32_MAX, &a->close_ms);
        } else if (strcmp(opt, "--interval-us") == 0) {
            bad = parse_ll(val, 0, 10000000, &a->interval_us);
        } else {
            fprintf(stderr, "producer: unknown option %s\n", opt);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "producer: bad value for %s: %s\n", opt, val);
            return -1;
        }
    }
    if (a->config_path == NULL || a->count < 0) {
        fputs("producer: --config and --count are required\n", stderr);
        return -1;
    }
    return 0;
}

static int print_stats(herald_client *c)
{
    char *stats = NULL;
    herald_status st = herald_stats_json(c, &stats);
    if (st != HERALD_OK || stats == NULL) {
        printf("stats_err %d\n", (int)st);
        fflush(stdout);
        return -1;
    }
    /* Re-encode compactly so the stats are one line whatever the library's
     * formatting. */
    json_error_t jerr;
    json_t *doc = json_loads(stats, 0, &jerr);
    if (doc == NULL) {
        printf("stats_err invalid-json %s\n", jerr.text);
        fflush(stdout);
        herald_free(stats);
        return -1;
    }
    char *line = json_dumps(doc, JSON_COMPACT);
    printf("stats %s\n", line != NULL ? line : "null");
    fflush(stdout);
    free(line);
    json_decref(doc);
    herald_free(stats);
    return 0;
}

int main(int argc, char **argv)
{
    producer_args args;
    if (parse_args(argc, argv, &args) != 0) {
        usage();
        return 2;
    }
    char *config = read_file(args.config_path);
    if (config == NULL) {
        fprintf(stderr, "producer: cannot read %s: %s\n", args.config_path, strerror(errno));
        return 2;
    }
    char *pad = malloc((size_t)args.pad + 1);
    if (pad == NULL) {
        free(config);
        return 1;
    }
    memset(pad, 'x', (size_t)args.pad);
    pad[args.pad] = '\0';

    herald_client *c = NULL;
    herald_status st = herald_open_json(&c, config);
    free(config);
    if (st != HERALD_OK) {
        char msg[512];
        herald_last_error(NULL, msg, sizeof msg);
        fprintf(stderr, "producer: herald_open_json: %s (%d): %s\n", herald_strerror(st),
                (int)st, msg);
        printf("open_err %d\n", (int)st);
        free(pad);
        return 1;
    }
    printf("open 0\n");
    fflush(stdout);

    long nthreads = args.threads;
    if (args.count < nthreads)
        nthreads = args.count > 0 ? (long)args.count : 1;
    worker *workers = calloc((size_t)nthreads, sizeof *workers);
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    if (workers == NULL || tids == NULL) {
        free(workers);
        free(tids);
        free(pad);
        herald_close(c, 0);
        return 1;
    }
    for (long t = 0; t < nthreads; t++) {
        workers[t].client = c;
        workers[t].args = &args;
        workers[t].pad = pad;
        workers[t].first = args.start + args.count * t / nthreads;
        workers[t].end = args.start + args.count * (t + 1) / nthreads;
    }
    if (nthreads == 1) {
        worker_run(&workers[0]);
    } else {
        for (long t = 0; t < nthreads; t++) {
            if (pthread_create(&tids[t], NULL, worker_run, &workers[t]) != 0) {
                fprintf(stderr, "producer: pthread_create failed; running inline\n");
                worker_run(&workers[t]);
                tids[t] = pthread_self();
            }
        }
        for (long t = 0; t < nthreads; t++) {
            if (!pthread_equal(tids[t], pthread_self()))
                pthread_join(tids[t], NULL);
        }
    }

    int rc = 0;
    if (args.do_flush) {
        st = herald_flush(c, (int)args.flush_ms);
        printf("flush %d\n", (int)st);
        fflush(stdout);
    }
    if (print_stats(c) != 0)
        rc = 1;
    st = herald_close(c, (int)args.close_ms);
    printf("close %d\n", (int)st);
    /* Peak resident memory, for the bounded-memory tests. */
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, "VmHWM:", 6) == 0)
            printf("rss_peak_kb %ld\n", strtol(line + 6, NULL, 10));
    if (status)
        fclose(status);
    fflush(stdout);

    free(workers);
    free(tids);
    free(pad);
    return rc;
}
