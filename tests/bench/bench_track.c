/*
 * bench_track — calls per second and microseconds per herald_track().
 *
 *   bench_track [--count N] [--runs R] [--url URL] [--durability process|power]
 *               [--dir DIR]
 *
 * Each run opens a fresh queue file in a temporary directory (under --dir,
 * default $TMPDIR or /tmp), times N calls of
 *
 *   herald_track(c, "Bench Event", PROPS)
 *
 * with PROPS a typical event of 8 properties (the same event the Python and
 * Node benchmarks send: tests/bench/bindings.sh), then closes the client and
 * removes the files. Delivery is off (queue only), unless --url gives a sink
 * to deliver to while the calls run. Prints one line per run and, last, the
 * median over the runs as
 *
 *   RESULT c calls_per_s=<n> us_per_call=<x>
 *
 * Exit status: 0, or 1 when a call fails (the failing status is printed).
 */
#include <herald/herald.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROPS                                                                                      \
    "{\"plan\":\"pro\",\"seats\":12,\"price\":99.5,\"trial\":false,\"source\":\"bench\","        \
    "\"region\":\"eu-west-1\",\"tier\":3,\"ratio\":0.25}"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void remove_queue(const char *dir, const char *db)
{
    const char *suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    char path[4200];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void usage(void)
{
    fputs("usage: bench_track [--count N] [--runs R] [--url URL] "
          "[--durability process|power] [--dir DIR]\n",
          stderr);
}

int main(int argc, char **argv)
{
    long count = 20000, runs = 5;
    const char *url = NULL, *durability = "process";
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--count") == 0 && v) {
            count = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--runs") == 0 && v) {
            runs = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--url") == 0 && v) {
            url = v;
            i++;
        } else if (strcmp(a, "--durability") == 0 && v) {
            durability = v;
            i++;
        } else if (strcmp(a, "--dir") == 0 && v) {
            base = v;
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if (count <= 0 || runs <= 0 || runs > 100) {
        usage();
        return 2;
    }

    double *rates = calloc((size_t)runs, sizeof *rates);
    if (rates == NULL)
        return 1;
    printf("bench_track: herald %s, %ld calls x %ld runs, 8 properties, deliver=%s, durability=%s\n",
           herald_version(), count, runs, url ? url : "off", durability);
    for (long r = 0; r < runs; r++) {
        char dir[4096], db[4120], config[8600];
        snprintf(dir, sizeof dir, "%s/herald-bench-XXXXXX", base);
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "bench_track: mkdtemp %s: %s\n", dir, strerror(errno));
            return 1;
        }
        snprintf(db, sizeof db, "%s/q.db", dir);
        if (url)
            snprintf(config, sizeof config,
                     "{\"db_path\":\"%s\",\"durability\":\"%s\",\"destinations\":"
                     "[{\"name\":\"sink\",\"url\":\"%s\"}]}",
                     db, durability, url);
        else
            snprintf(config, sizeof config,
                     "{\"db_path\":\"%s\",\"durability\":\"%s\",\"deliver\":false}", db,
                     durability);
        herald_client *c = NULL;
        herald_status st = herald_open_json(&c, config);
        if (st != HERALD_OK) {
            char msg[512];
            herald_last_error(NULL, msg, sizeof msg);
            fprintf(stderr, "bench_track: open: %s: %s\n", herald_strerror(st), msg);
            return 1;
        }
        double t0 = now_s();
        for (long i = 0; i < count; i++) {
            st = herald_track(c, "Bench Event", PROPS);
            if (st != HERALD_OK) {
                char msg[512];
                herald_last_error(c, msg, sizeof msg);
                fprintf(stderr, "bench_track: call %ld: %s: %s\n", i, herald_strerror(st), msg);
                return 1;
            }
        }
        double elapsed = now_s() - t0;
        herald_close(c, 0);
        remove_queue(dir, db);
        rates[r] = (double)count / elapsed;
        printf("run %ld: %ld calls in %.3f s: %.0f calls/s, %.2f us/call\n", r + 1, count, elapsed,
               rates[r], 1e6 / rates[r]);
        fflush(stdout);
    }
    qsort(rates, (size_t)runs, sizeof *rates, cmp_double);
    double median = runs % 2 ? rates[runs / 2] : (rates[runs / 2 - 1] + rates[runs / 2]) / 2;
    printf("RESULT c calls_per_s=%.0f us_per_call=%.2f\n", median, 1e6 / median);
    free(rates);
    return 0;
}
