/* Benchmark: one track event's body, the fast event builder (herald_fast_scan
 * + herald_fast_assemble, src/fastbuild.c) against the jansson path it
 * stands in for (herald_event_parse_object + herald_event_finish), both with
 * the default redactor and a realistic context snapshot, traits, group and
 * session. Prints the median ns per event over batches, per run, and the
 * median of the runs, for two cases: the same properties every call (the
 * per-thread verdict cache warm, as for events that repeat their values),
 * and properties whose "source" is new in each call (one string per event
 * through the full detector pipeline: a cache miss).
 *
 *   bench_fastbuild [runs] [batches_per_run] [calls_per_batch]   (defaults 7, 400, 100)
 *
 * Not a test: numbers depend on the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "context.h"
#include "event.h"
#include "fastbuild.h"
#include "redact.h"

#define PROPS_FORMAT                                                                             \
    "{\"plan\":\"pro\",\"seats\":12,\"price\":99.5,\"trial\":false,\"source\":\"%s\","       \
    "\"region\":\"eu-west-1\",\"tier\":3,\"ratio\":0.25}"
#define VARIANTS 4096 /* well past the cache's 512 entries */

static char variants[VARIANTS][160];
static const char *props_for_call(int vary, unsigned call)
{
    return variants[vary ? call % VARIANTS : 0];
}
static const char event_name[] = "Bench Event";

static void fixed_id(char out[37], void *ctx)
{
    (void)ctx;
    memcpy(out, "6f1c1b1e-1d2c-4a3b-9c8d-7e6f5a4b3c2d", 37);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static size_t sink;

static int slow_call(const herald_event_env *env, const char *props)
{
    json_t *object = NULL;
    char err[256];
    if (herald_event_parse_object(props, "properties", &object, err, sizeof err) != HERALD_OK)
        return -1;
    json_t *message = json_object();
    json_object_set_new(message, "type", json_string("track"));
    json_object_set_new(message, "event", json_string(event_name));
    json_object_set_new(message, "properties", object);
    char *text = NULL;
    size_t len = 0;
    const char *type;
    if (herald_event_finish(env, message, &text, &len, &type, err, sizeof err) != HERALD_OK)
        return -1;
    sink += len;
    free(text);
    return 0;
}

static int fast_call(const herald_event_env *env, const herald_fast_frame *frame,
                     const char *props, char *dst, size_t cap)
{
    herald_fast_args a;
    herald_fast_args_init(&a);
    int rc = -1;
    if (herald_fast_scan(env->redactor, "track", event_name, props, &a) == 0) {
        char id[37];
        env->new_message_id(id, NULL);
        size_t len = herald_fast_assemble(frame, &a, env->now_ms, id, env->session_id,
                                          env->session_sequence, dst, cap);
        if (len > 0 && herald_fast_fits(&a, len, env->max_event_bytes)) {
            sink += len;
            rc = 0;
        }
    }
    herald_fast_args_free(&a);
    return rc;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    int batches = argc > 2 ? atoi(argv[2]) : 400;
    int calls = argc > 3 ? atoi(argv[3]) : 100;
    if (runs < 1 || batches < 1 || calls < 1)
        return 2;

    herald_host_info host;
    memset(&host, 0, sizeof host);
    strcpy(host.os_name, "Debian GNU/Linux");
    strcpy(host.os_version, "12");
    strcpy(host.arch, "x86_64");
    strcpy(host.locale, "en-US");
    strcpy(host.timezone, "Europe/Berlin");
    strcpy(host.device_type, "server");
    herald_options opts;
    herald_options_init(&opts);
    opts.app_name = "shop";
    opts.app_version = "3.2.1";
    opts.app_build = "321";
    json_t *snapshot = herald_context_snapshot(&host, &opts);
    json_t *traits = json_loads("{\"plan\":\"pro\",\"seats\":12}", 0, NULL);
    herald_redactor *redactor = NULL;
    char err[256];
    if (snapshot == NULL || traits == NULL ||
        herald_redactor_create(NULL, &redactor, err, sizeof err) != HERALD_OK) {
        fprintf(stderr, "bench_fastbuild: setup failed\n");
        return 1;
    }
    herald_event_env env = {
        .now_ms = 1700000000123LL, .anonymous_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        .user_id = "u_8f14e45f", .max_event_bytes = 32768, .context = snapshot,
        .traits = traits, .group_id = "g-42", .session_id = 1700000000000LL,
        .session_sequence = 7, .redactor = redactor, .new_message_id = fixed_id,
    };
    herald_fast_frame *frame = NULL;
    if (herald_fast_frame_build(&env, &frame) != HERALD_OK) {
        fprintf(stderr, "bench_fastbuild: the frame falls back\n");
        return 1;
    }
    snprintf(variants[0], sizeof variants[0], PROPS_FORMAT, "bench");
    for (int i = 1; i < VARIANTS; i++) {
        char source[32];
        snprintf(source, sizeof source, "campaign-%d-b", i * 7919);
        snprintf(variants[i], sizeof variants[i], PROPS_FORMAT, source);
    }
    char dst[4096];
    for (int i = 0; i < VARIANTS; i++)
        if (slow_call(&env, variants[i]) != 0 ||
            fast_call(&env, frame, variants[i], dst, sizeof dst) != 0) {
            fprintf(stderr, "bench_fastbuild: %s does not build (fast path fell back?)\n",
                    variants[i]);
            return 1;
        }

    double *slow_runs = calloc((size_t)runs, sizeof *slow_runs);
    double *fast_runs = calloc((size_t)runs, sizeof *fast_runs);
    double *samples = calloc((size_t)batches, sizeof *samples);
    if (slow_runs == NULL || fast_runs == NULL || samples == NULL)
        return 1;
    printf("ns per event, median of %d batches of %d calls\n", batches, calls);
    for (int vary = 0; vary <= 1; vary++) {
        const char *label = vary ? "a new value per event" : "same values (cache warm)";
        unsigned call = 0;
        for (int run = 0; run < runs; run++) {
            for (int b = 0; b < batches; b++) {
                double t0 = now_ns();
                for (int i = 0; i < calls; i++)
                    if (fast_call(&env, frame, props_for_call(vary, call++), dst, sizeof dst) != 0)
                        return 1;
                samples[b] = (now_ns() - t0) / calls;
            }
            fast_runs[run] = median(samples, (size_t)batches);
            for (int b = 0; b < batches; b++) {
                double t0 = now_ns();
                for (int i = 0; i < calls; i++)
                    if (slow_call(&env, props_for_call(vary, call++)) != 0)
                        return 1;
                samples[b] = (now_ns() - t0) / calls;
            }
            slow_runs[run] = median(samples, (size_t)batches);
            printf("%s, run %d: fast %6.0f  slow %6.0f\n", label, run + 1, fast_runs[run],
                   slow_runs[run]);
        }
        double fast = median(fast_runs, (size_t)runs), slow = median(slow_runs, (size_t)runs);
        printf("%s, median: fast (scan+assemble) %.0f ns, slow (parse+finish) %.0f ns, "
               "%.1fx\n",
               label, fast, slow, slow / fast);
    }

    free(samples);
    free(slow_runs);
    free(fast_runs);
    herald_fast_frame_free(frame);
    herald_redactor_free(redactor);
    json_decref(snapshot);
    json_decref(traits);
    return sink == 0;
}
